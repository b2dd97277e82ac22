"""`painsearch gpu-check`, reduced to fit this CPU machine: what it reports, and when it says a machine is not ready."""

from __future__ import annotations

import json

import pytest

from cluster.cli.main import main

pytestmark = pytest.mark.slow  # each check trains a network for a few steps

SMALL = ["--models", "weinet", "vgg16", "--size", "32", "--steps", "2", "--batch", "4"]


def test_gpu_check_times_each_network_and_writes_its_report(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["gpu-check", "--cpu", *SMALL, "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["ready"] and report["deterministic"] is True and report["mixed_precision"] is False
    assert report["tensorflow"]["is_cuda_build"] and "compute_90" in report["tensorflow"]["cuda_compute_capabilities"]
    assert [r["network"] for r in report["networks"]] == ["weinet", "vgg16"]
    for row in report["networks"]:
        assert row["refused_ops"] == []
        for part in ("build_s", "trace_s", "step_s", "images_per_s", "host_epoch_s", "checkpoint_s", "checkpoint_mb"):
            assert row[part] > 0, (row["network"], part)
    assert report["networks"][1]["finetune_depth"] == 0.5  # vgg16's backbone half frozen, as the search draws it
    printed = capsys.readouterr().out
    assert "weinet" in printed and "vgg16" in printed and printed.rstrip().endswith(str(out))


def test_gpu_check_stops_with_a_sentence_where_a_gpu_is_expected_and_missing(tmp_path, capsys):
    out = tmp_path / "report.json"
    assert main(["gpu-check", *SMALL, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("painsearch: error: gpu-check: TensorFlow sees no GPU") and err.count("\n") == 0
    assert "--cpu" in err and "nvidia-smi" in err
    assert json.loads(out.read_text())["ready"] is False  # the report is written all the same


def test_gpu_check_fails_on_a_network_holding_an_op_a_gpu_refuses(tmp_path, capsys, monkeypatch):
    from tf_keras import layers

    import pipelines.models.build as build

    monkeypatch.setattr(build, "Contrast", layers.RandomContrast)  # the augmentation as it was
    assert main(["gpu-check", "--cpu", "--models", "weinet", "--size", "32", "--steps", "1", "--batch", "2",
                 "--out", str(tmp_path / "r.json")]) == 2
    assert "AdjustContrastv2" in capsys.readouterr().err
