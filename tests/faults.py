"""The fault run: a study killed again and again (SIGKILL of the driver's process group) at seeded moments, each
time resumed, until it ends; then the store is checked for lost, doubled or restarted work.

Kill moments, in turn: mid-trial (a multi-epoch trial has some of its epochs logged), just after a search was
sealed (its post-search writes under way), and after a seeded random delay. Used by tests/test_faults.py
(short) and benchmarks/reliability.py (long, on S3, with the S3 server stopped and started under the study).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from search.layout import DONE, TRIALS

ROOT = Path(__file__).resolve().parent.parent
TRIGGERS = ("mid-trial", "after a search", "random delay")


def _snapshot(store, keys, train_dir: str) -> dict:
    """What the store holds now: done.json bytes; per trial, its logged epochs' bytes and its latest checkpoint."""
    from search.runners import kept_states

    out = {"done": {}, "epochs": {}, "checkpoint": {}}
    for key in keys:
        if store.exists(key.path, DONE):
            out["done"][key] = store.read_bytes(key.path, DONE)
        for trial in store.dirs(key.path, train_dir):
            run = key.of(train_dir, trial)
            out["epochs"][(key, trial)] = {f: store.read_bytes(run, "epochs", f) for f in store.list(run, "epochs")}
            states = kept_states(store, run)
            if states:
                out["checkpoint"][(key, trial)] = max(int(s["epoch"]) for s in states.values())
    return out


def _mid_trial(snapshot: dict, epochs: int) -> bool:
    return any(0 < len(e) < epochs for e in snapshot["epochs"].values())


def _early_in_a_trial(snapshot: dict, epochs: int) -> bool:
    return any(0 < len(e) <= max(1, epochs // 2) for e in snapshot["epochs"].values())


def fault_run(cmd: list[str], env: dict, cfg, kills: int, seed: int, log: Path,
              between: Callable[[int], None] | None = None, timeout: float = 1200) -> dict:
    """Run `cmd` (a `painsearch search run ... --resume`), killing it `kills` times, then to its end; check the
    store and return the counts. `between(i)` runs after the i-th kill (an outage, for instance)."""
    from pipelines.storage import open_store
    from search.layout import TRAIN_DIR
    from search.study import searches

    rng = random.Random(seed)
    store, keys = open_store(cfg.storage, cfg.s3_endpoint), searches(cfg)
    epochs = cfg.search.space.epochs[1] if cfg.search.space.epochs else None
    first_done: dict = {}
    frozen: dict = {}  # (key, trial) -> {epoch file: bytes} of epochs a checkpoint covered at a kill
    record = {"kills": 0, "mid_trial_kills": 0, "resumed_trials": 0, "triggers": []}
    started = time.time()
    for i in range(kills + 1):
        with open(log, "ab") as out:
            proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT)
        if i == kills:
            assert proc.wait(timeout=timeout) == 0, log.read_text()[-4000:]
            break
        trigger = TRIGGERS[i % len(TRIGGERS)]
        delay = rng.uniform(3, 25)
        t0, sealed = time.time(), len(_snapshot(store, keys, TRAIN_DIR)["done"])
        while proc.poll() is None and time.time() - started < timeout:
            time.sleep(0.3)
            if trigger == "random delay" and time.time() - t0 > delay:
                break
            snap = _snapshot(store, keys, TRAIN_DIR)
            # a trial in the first half of its epochs: killed a moment later, in a later epoch's fit or its writes
            # (an epoch of weinet on the tiny phantom takes a fifth of a second, so the moment stays short)
            if trigger == "mid-trial" and epochs and _early_in_a_trial(snap, epochs):
                time.sleep(rng.uniform(0, 0.2))
                break
            if trigger == "after a search" and len(snap["done"]) > sealed:
                time.sleep(rng.uniform(0, 0.5))
                break
        if proc.poll() is not None:  # the study ended before this kill: nothing left to break
            assert proc.returncode == 0, log.read_text()[-4000:]
            break
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        record["kills"] += 1
        record["triggers"].append(trigger)
        snap = _snapshot(store, keys, TRAIN_DIR)
        for key, data in snap["done"].items():
            first_done.setdefault(key, data)
        if _mid_trial(snap, epochs or 0):
            record["mid_trial_kills"] += 1
        for run, last in snap["checkpoint"].items():
            if last + 1 < (epochs or 0):  # a trial cut short after its checkpoint of epoch `last`
                frozen[run] = {f: b for f, b in snap["epochs"][run].items() if int(f.split(".")[0]) <= last}
        if between:
            between(i)
    record["seconds"] = time.time() - started
    record.update(check_store(store, cfg, first_done, frozen))
    return record


def check_store(store, cfg, first_done: dict, frozen: dict) -> dict:
    """Every search sealed once and never again; every trial run to its end once; trials cut short at a kill
    continued from their last checkpoint (the epochs it covered were not trained again)."""
    from search.layout import TIMING_DIR, TRAIN_DIR, read_csv
    from search.study import searches

    trials_total = 0
    for key in searches(cfg):
        done = json.loads(store.read_bytes(key.path, DONE))
        assert done["status"] == "ok", done
        if key in first_done:
            assert store.read_bytes(key.path, DONE) == first_done[key], f"{key} was sealed twice"
        trials = read_csv(store.read_bytes(key.path, TRIALS))
        assert len(trials) == cfg.search.trials and trials["trial_id"].is_unique, trials
        assert (trials["status"] == "ok").all(), trials
        timing = store.list(key.path, TIMING_DIR)
        for t in trials["trial_id"]:
            assert len([f for f in timing if f.startswith(f"{t}-")]) == 1, f"trial {t} of {key} ended twice or never"
            trials_total += 1
    continued = 0
    for (key, trial), files in frozen.items():
        run = key.of(TRAIN_DIR, trial)
        for f, data in files.items():
            assert store.read_bytes(run, "epochs", f) == data, f"{key} trial {trial} trained epoch {f} again"
        continued += 1
    return {"searches": len(searches(cfg)), "trials": trials_total, "continued_from_checkpoint": continued}


def study_command(config: Path, storage: str, shards: str, sets: list[str]) -> list[str]:
    return [sys.executable, "-m", "cluster.cli", "search", "run", "--config", str(config), "--storage", storage,
            "--set", f"shards={shards}", "--resume", *[a for s in sets for a in ("--set", s)]]
