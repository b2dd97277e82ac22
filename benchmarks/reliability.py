"""Reliability in figures: a long fuzz run of `prepare` and a long fault run of the study, on a real S3 server.

Fuzz: seeded broken and odd inputs (pipelines/phantom/fuzz.py) through `painsearch data prepare` on both
engines; counted: inputs tried, crashes (an exit other than 0, or 2 with one sentence), inputs that ended
as neither a row nor a listed rejection, or as both.

Faults: the smoke study with multi-epoch trials on SeaweedFS S3, its driver SIGKILLed at seeded moments
(tests/faults.py) and resumed each time, the S3 server stopped and started again under the running study
between kills; then `prepare` under the Ray engine writing to S3, killed half way and run again, against
an uninterrupted run. Counted: faults injected, survived, searches sealed twice, trials lost or run twice,
trials that continued from their checkpoint, shard rows lost or doubled.

Scans, after the fault run: the secret key of the S3 server's canary credentials, searched for in every object
the study wrote to S3 and every file Ray wrote for the runs (logs, runtime envs); and the raw identities of the
phantom's sources (subject ids and file names, as the adapters read them) searched for in everything that may
leave the machine: the shards, the results store, the report (`analyze`), `predict`'s output and an exported
model. Parquet files are searched by their values (their bytes are compressed); the places documented to hold
raw names (`prepare_report.json`'s rejected inputs, `predict`'s mapping beside its inputs) are not outputs.

    .venv/bin/python benchmarks/reliability.py [--inputs 400] [--kills 8] [--seed 0]
"""

from __future__ import annotations

import argparse
import atexit
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from benchmarks.report import machine, write_block  # noqa: E402
from faults import fault_run, study_command  # noqa: E402
from seaweed import Seaweed, free_port  # noqa: E402

SMOKE = ROOT / "configs" / "smoke.yaml"
RAY_DIR = Path(tempfile.mkdtemp(prefix="rl-", dir="/tmp"))
atexit.register(shutil.rmtree, RAY_DIR, True)
PICTURES = (".png", ".jpg", ".jpeg", ".h5")  # and weights: binary, no text a reader could take a name from


def fuzz(work: Path, phantom: Path, inputs: int, seed: int) -> dict:
    from pipelines.phantom.fuzz import fuzz_manifest
    from test_fuzz import check_prepare

    faces = [p.read_bytes() for p in sorted((phantom / "delaware" / "images").glob("*.jpg"))[:12]]
    env = {**os.environ, "PAINSEARCH_SUBJECT_KEY": "f" * 32}
    out = {"inputs": 0, "rows": 0, "rejected": 0, "crashes": 0, "violations": 0}
    for i, engine in enumerate(("local", "ray")):
        root = work / f"fuzz-{engine}"
        manifest = fuzz_manifest(root, seed=seed + i, n=inputs // 2, faces=faces)
        try:
            counts = check_prepare(manifest, root / "out", engine, env)
            for k in ("inputs", "rows", "rejected"):
                out[k] += counts[k]
        except AssertionError as exc:
            out["crashes" if "Traceback" in str(exc) or "returncode" in str(exc) else "violations"] += 1
            print(f"fuzz {engine}: {str(exc)[:500]}", flush=True)
    return out


def faults(work: Path, shards: Path, kills: int, seed: int) -> dict:
    from search.config import load_study_config

    server = Seaweed(work / "weed", {name: free_port() for name in ("master", "volume", "filer", "s3")})
    server.start()
    try:
        # the runs' Ray writes in a folder of its own, where the secrets scan reads every file it wrote (short: Ray's
        # socket paths under it must fit in 107 bytes)
        ray_dir = RAY_DIR
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **server.env(),
               "RAY_TMPDIR": str(ray_dir)}
        for k, v in server.env().items():
            os.environ[k] = v
        uri = "s3://painsearch/fault-run"
        sets = ["models=[weinet,vgg16]", "scenarios=[subject_kfold,external]", "search.space.epochs=[3,3]",
                "search.scheduler=none"]
        cfg = load_study_config(SMOKE, {"shards": str(shards), "storage": uri, "models": ["weinet", "vgg16"],
                                        "scenarios": ["subject_kfold", "external"],
                                        "search": {"space": {"epochs": [3, 3]}, "scheduler": "none"}})
        outages, called_off, down = [], threading.Event(), threading.Event()

        log = work / "fault.log"

        def outage(i: int) -> None:
            """After every other kill, the S3 server stops under the next run once that run is going (it has said
            it resumes the study: past its start-up check, which tries the store once, by design), and comes back
            20 s later."""
            while down.is_set():  # a run killed during an outage: the next one starts when the server is back
                time.sleep(0.5)
            if i % 2 == 0:
                outages.append(i)
                seen = log.read_text().count("resuming the study") if log.exists() else 0

                def stop_when_running() -> None:
                    while log.read_text().count("resuming the study") <= seen and not called_off.is_set():
                        time.sleep(0.5)
                    down.set()  # from here to the server's return, a killed run is not started again
                    if not called_off.wait(3):
                        server.stop()
                        called_off.wait(20)
                        server.start()
                    down.clear()

                threading.Thread(target=stop_when_running, daemon=True).start()

        try:
            record = fault_run(study_command(SMOKE, uri, str(shards), sets), env, cfg, kills=kills, seed=seed,
                               log=log, between=outage, timeout=3600)
        finally:
            called_off.set()  # an outage still pending when the run ended (or failed) is called off
            while down.is_set():
                time.sleep(0.5)
        if not server.running():
            server.start()
        record["outages"] = len(outages)
        record["prepare"] = prepare_kill(work, shards, server)
        record["identities"] = identity_scan(work, shards, uri, server)
        record["secrets"] = secrets_scan(ray_dir, server, ["fault-run/", "prepare-clean/", "prepare-killed/"])
        return record
    finally:
        server.stop()


def texts(path: Path | str, data: bytes) -> bytes:
    """What a file says: a Parquet file's values (its bytes are compressed), any other file's bytes."""
    if str(path).endswith(".parquet"):
        import io

        import pyarrow.parquet as pq

        import pyarrow as pa

        table = pq.read_table(io.BytesIO(data))
        text = [table.column(n) for n in table.column_names if not (pa.types.is_binary(table.schema.field(n).type) or pa.types.is_large_binary(table.schema.field(n).type))]
        return "\n".join(str(v) for column in text for v in column.to_pylist()).encode()  # not the images' bytes
    return data


def scan_files(folders: list[Path], needles: list[bytes], skip: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    """(files scanned, files that hold any needle) under `folders`."""
    scanned, hits = 0, []
    for folder in folders:
        for f in folder.rglob("*"):
            # pictures hold no text a reader could take a name from, and their bytes can match a short id by chance
            if f.is_file() and not f.is_symlink() and f.name not in skip and f.suffix.lower() not in PICTURES:
                scanned += 1
                data = texts(f, f.read_bytes())
                if any(n in data for n in needles):
                    hits.append(str(f))
    return scanned, hits


def scan_bucket(server: Seaweed, prefix: str, needles: list[bytes], skip: tuple[str, ...] = ()) -> tuple[int, list[str]]:
    client, scanned, hits = server.client(), 0, []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="painsearch", Prefix=prefix):
        for obj in page.get("Contents", []):
            name = obj["Key"].rsplit("/", 1)[-1]
            if name in skip or Path(name).suffix.lower() in PICTURES:
                continue
            scanned += 1
            data = texts(obj["Key"], client.get_object(Bucket="painsearch", Key=obj["Key"])["Body"].read())
            if any(n in data for n in needles):
                hits.append(obj["Key"])
    return scanned, hits


def raw_identities(phantom: Path) -> list[bytes]:
    """The sources' raw subject ids and file names, as the adapters read them (long enough to be told from chance)."""
    from pipelines.config import prepare_config
    from pipelines.phantom.synth import sources
    from pipelines.shards.prepare import read_sources

    _, listings = read_sources(prepare_config({"sources": sources(phantom), "out": str(phantom / "unused")}))
    records = [r for listing in listings for r in listing.records]
    names = {r.subject for r in records} | {r.sequence for r in records} | {Path(r.rel).stem for r in records}
    return sorted(n.encode() for n in names if len(n) >= 4)


def identity_scan(work: Path, shards: Path, uri: str, server: Seaweed) -> dict:
    """`analyze`, `predict` and `export` on the fault run's study, then every output searched for the raw ids."""
    from analysis.chosen_model import from_results
    from analysis.config import LimeConfig, ReportConfig
    from analysis.export import export
    from analysis.predict import predict
    from analysis.report import analyze

    from cluster.local import ensure_ray

    os.environ["RAY_TMPDIR"] = str(RAY_DIR)  # this process's Ray too: the secrets scan reads what it writes
    ensure_ray()
    needles = raw_identities(work / "phantom")
    report, exported, predicted = work / "report", work / "exported", work / "predicted"
    analyze(uri, report, config=ReportConfig(bootstrap=50, lime=LimeConfig(num_samples=20, images_per_class=1,
                                                                                n_segments=8, null_seeds=2)),
            log=lambda m: None)
    inputs = work / "inputs"
    inputs.mkdir()
    for f in sorted((work / "phantom" / "delaware" / "images").glob("*.jpg"))[:4]:
        shutil.copy(f, inputs)
    predict(from_results(uri, "weinet", "external"), [str(inputs)], predicted)
    export(uri, "weinet", "external", exported)
    documented = ("prepare_report.json",)
    files = scan_files([shards, report, predicted, exported], needles, skip=documented)
    objects = scan_bucket(server, uri.split("/", 3)[3] + "/", needles)
    return {"identities": len(needles), "scanned": files[0] + objects[0], "hits": files[1] + objects[1]}


def secrets_scan(ray_dir: Path, server: Seaweed, prefixes: list[str]) -> dict:
    from seaweed import SECRET

    needle = [SECRET.encode()]
    files = scan_files([ray_dir], needle)
    objects = [scan_bucket(server, p, needle) for p in prefixes]
    return {"scanned": files[0] + sum(o[0] for o in objects), "hits": files[1] + [h for o in objects for h in o[1]]}


def prepare_kill(work: Path, shards: Path, server: Seaweed) -> dict:
    """`prepare` under the Ray engine writing to S3, killed half way and run again, against an uninterrupted run."""
    from pipelines.shards.read import read_table
    from pipelines.storage import open_store

    phantom = work / "phantom"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("RAY_")}, **server.env(),
           "RAY_TMPDIR": str(RAY_DIR)}
    base = [sys.executable, "-m", "cluster.cli", "data", "prepare", "--config", str(phantom / "prepare.yaml"),
            "--engine", "ray", "--size", "32", "--background", "grabcut", "--chunk-size", "8", "--frames", "4"]
    clean = subprocess.run(base + ["--out", "s3://painsearch/prepare-clean"], env=env, capture_output=True, text=True,
                           timeout=1800, cwd=ROOT)
    assert clean.returncode == 0, clean.stderr[-2000:]
    store = open_store("s3://painsearch/prepare-killed")
    proc = subprocess.Popen(base + ["--out", store.uri], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True, cwd=ROOT)
    while proc.poll() is None and len(store.list("_chunks")) < 3:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    chunks_at_kill = len(store.list("_chunks"))
    again = subprocess.run(base + ["--out", store.uri], env=env, capture_output=True, text=True, timeout=1800, cwd=ROOT)
    assert again.returncode == 0, again.stderr[-2000:]
    a = read_table("s3://painsearch/prepare-clean", columns=["source_sha256"]).column("source_sha256").to_pylist()
    b = read_table(store.uri, columns=["source_sha256"]).column("source_sha256").to_pylist()
    return {"chunks_done_at_kill": chunks_at_kill, "rows_clean": len(a), "rows_killed": len(b),
            "rows_lost": len(set(a) - set(b)), "rows_doubled": len(b) - len(set(b))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--inputs", type=int, default=400, help="fuzz inputs, split over the two engines")
    ap.add_argument("--kills", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "BENCHMARKS.md")
    args = ap.parse_args()

    from pipelines.bootstrap import torch_first

    torch_first()
    from pipelines.config import prepare_config
    from pipelines.phantom.synth import sources, synth
    from pipelines.shards.prepare import prepare

    work = Path(tempfile.mkdtemp(prefix="painsearch-reliability-"))

    atexit.register(shutil.rmtree, work, True)  # what the benchmark wrote goes with it
    synth(work / "phantom", scale="tiny", seed=0)
    shards = work / "shards"
    prepare(prepare_config({"sources": sources(work / "phantom"), "out": str(shards), "frames_per_subject_class": 4,
                            "engine": "local", "chunk_size": 16, "preprocess": {"size": 32, "background": "grabcut"}}),
            log=lambda m: None)
    t0 = time.time()
    f = fuzz(work, work / "phantom", args.inputs, args.seed)
    fuzz_s = time.time() - t0
    r = faults(work, shards, args.kills, args.seed)
    p = r["prepare"]

    lines = [
        machine(),
        f"Command: `.venv/bin/python benchmarks/reliability.py --inputs {args.inputs} --kills {args.kills} --seed {args.seed}`.",
        "",
        "| run | tried | survived | crashes or losses |",
        "|---|---|---|---|",
        f"| fuzz: `prepare` over broken and odd inputs, both engines | {f['inputs']} inputs | {f['rows']} rows + "
        f"{f['rejected']} listed rejections | {f['crashes']} crashes, {f['violations']} inputs neither or both |",
        f"| faults: the study SIGKILLed and resumed ({', '.join(sorted(set(r['triggers'])))}), the S3 server "
        f"stopped under a resumed run (3 s after it resumed) and back 20 s later | {r['kills']} kills, "
        f"{r['outages']} outages, 1 prepare kill "
        f"| every resume ran to the end (the run stops at the first that does not) | checked after every resume: no "
        f"search sealed twice, no trial lost or run twice (of {r['trials']}); {p['rows_lost']} shard rows lost, "
        f"{p['rows_doubled']} doubled |",
        f"| secrets: the S3 server's canary secret key, searched for in every object the runs wrote to S3 and every "
        f"file Ray wrote for them | {r['secrets']['scanned']} files and objects | | {len(r['secrets']['hits'])} hits |",
        f"| identities: the sources' raw subject ids and file names ({r['identities']['identities']}), searched for "
        f"in the shards, the results store, the report, `predict`'s output and an exported model (Parquet by value) "
        f"| {r['identities']['scanned']} files and objects | | {len(r['identities']['hits'])} hits outside the "
        f"documented places |",
        "",
        f"The fault run's study ({r['searches']} searches, trials of 3 epochs, results on SeaweedFS S3) took "
        f"{r['seconds']:.0f} s with its kills; {r['continued_from_checkpoint']} trials cut short by a kill continued "
        f"from their last epoch's checkpoint (their earlier epochs were not trained again). The killed `prepare` had "
        f"{p['chunks_done_at_kill']} chunks done; run again, it wrote {p['rows_killed']} rows against "
        f"{p['rows_clean']} for an uninterrupted run. The fuzz run took {fuzz_s:.0f} s.",
    ]
    block = "\n".join(lines)
    print(block)
    for kind in ("secrets", "identities"):  # what a hit is, for whoever reads the run's output
        for hit in r[kind]["hits"]:
            print(f"{kind} hit: {hit}")
    write_block(args.out, "reliability", "Reliability", block)


if __name__ == "__main__":
    main()
