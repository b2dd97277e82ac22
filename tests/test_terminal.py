"""What a user sees: painsearch's own progress lines and nothing else (Ray's, Tune's and TensorFlow's messages
stay in their log files unless --verbose)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"

# every line painsearch prints on these runs
OURS = [
    r"prepare: \d+ images in \d+ chunks; \d+ already done, \d+ to do \(\w+, \d+ worker\(s\)\)",
    r"prepare: every source holds exactly what `data synth` rendered there .* PAINSEARCH_SUBJECT_KEY or subject_key_file",
    r"prepare: \d+ rows, \d+ rejected, written to \S+",
    r"dataset\s+subjects\s+no pain\s+pain\s+total", r"\w+(-\w+)?(\+\w+)?\s+\d+\s+\d+\s+\d+\s+\d+",
    r"\[\d+/\d+\] \w+ \w+ fold \d+: best val_f1_macro [\d.]+ after \d+ trials \(\d+ failed\), \d+ s "
    r"\(\d+ s so far(, about \d+ s left)?\)",
    r"search: \d+ searches done \(\d+ failed\) in \S+; read it with `painsearch analyze \S+ --out report`",
    r"analyze: \d+ test predictions from \d+ of \d+ searches", r"analyze: LIME explanations as Ray tasks",
    r"analyze: report at \S+index\.html",
    r"(prepare|analyze: LIME|search: trials) \[[#.]+\] \d+/\d+ [\w ]+, \d+ s so far(, about \d+ s left)?",
    r"\s*model\s+scenario\s+accuracy\s+f1_pain\s+f1_macro \[95% CI\]",
    r"\s*\w+\s+\w+\s+[\d.]+ ± [\d.]+\s+[\d.]+ ± [\d.]+\s+[\d.]+ \[[\d.]+, [\d.]+\]",
]


def strangers(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.strip() and not any(re.fullmatch(p, line) for p in OURS)]


@pytest.mark.slow  # a whole search on a local Ray cluster of its own
def test_prepare_search_and_analyze_print_only_their_own_lines(tiny_phantom, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "cluster.cli", *args], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=900)
    prepared = run("data", "prepare", "--config", str(tiny_phantom / "prepare.yaml"), "--out", str(tmp_path / "shards"),
                   "--background", "grabcut", "--size", "32", "--frames", "2")
    searched = run("search", "run", "--config", str(SMOKE), "--set", f"shards={tmp_path / 'shards'}",
                   "--storage", str(tmp_path / "results"), "--set", "models=[weinet]", "--set", "scenarios=[external]",
                   "--set", "search.trials=1")
    analyzed = run("analyze", str(tmp_path / "results"), "--out", str(tmp_path / "report"), "--bootstrap", "50",
                   "--lime-samples", "20", "--lime-images", "1", "--lime-null-seeds", "1")
    for r in (prepared, searched, analyzed):
        assert r.returncode == 0, r.stderr[-3000:]
        assert not strangers(r.stdout + r.stderr), strangers(r.stdout + r.stderr)
    assert "searches done" in searched.stdout and "report at" in analyzed.stdout
    loud = run("--verbose", "analyze", str(tmp_path / "results"), "--out", str(tmp_path / "report2"), "--no-lime",
               "--bootstrap", "50")
    assert loud.returncode == 0 and strangers(loud.stdout + loud.stderr)  # --verbose brings TensorFlow's back
