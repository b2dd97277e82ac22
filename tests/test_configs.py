"""Every shipped config validates; the smoke config drives a real prepare of the tiny phantom."""

from pathlib import Path

import pytest

from pipelines.config import load_prepare_config
from pipelines.shards.prepare import prepare
from pipelines.shards.read import read_table

from pipelines.phantom.synth import sources as phantom_sources

CONFIGS = sorted((Path(__file__).resolve().parent.parent / "configs").glob("*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_validates(path):
    cfg = load_prepare_config(path)
    assert cfg.out and cfg.preprocess.size >= 16


def test_smoke_config_prepares_the_tiny_phantom(tiny_phantom, tmp_path):
    smoke = next(p for p in CONFIGS if p.stem == "smoke")
    cfg = load_prepare_config(smoke, {"out": str(tmp_path / "smoke"), "engine": "local", "sources": phantom_sources(tiny_phantom)})
    report = prepare(cfg, log=lambda m: None)
    table = read_table(cfg.out)
    assert report["rows"] == table.num_rows > 0
    assert set(table.column("dataset").to_pylist()) == {"unbc", "mintpain", "delaware", "cppain"}
