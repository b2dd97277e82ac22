"""`painsearch data prepare`: plan from the labels, preprocess in chunks, write shards, then the manifest.

Planning reads only labels and file bytes (for hashes and duplicates), so frames are sampled before
anything is decoded. Each chunk is one unit of resumable work: a Ray Data actor (detector loaded once)
turns it into one Parquet shard and a marker. The manifest and report come last.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipelines.config import PrepareConfig
from pipelines.errors import PainsearchError, Rejection
from pipelines.phantom.synth import is_verified_phantom
from pipelines.preprocess.preprocessor import Preprocessor, settings
from pipelines.privacy import DEMO_KEY, load_key, pseudonym
from pipelines.progress import Progress, say
from pipelines.shards.schema import CHUNKS, FORMAT, FORMAT_VERSION, MANIFEST, REPORT, shard_path, to_parquet
from pipelines.sources import read_source
from pipelines.sources.base import Listing, Rejected, SourceRecord
from pipelines.sources.sampling import sample_frames
from pipelines.storage import open_store, s3_env


@dataclass
class Plan:
    chunks: list[dict[str, Any]]
    rejected: list[Rejected]
    listed: dict[str, int]
    sampled: dict[str, int]
    levels: dict[str, list[float]] = field(default_factory=dict)


def _is_phantom(kind: str, location: str) -> bool:
    return is_verified_phantom(Path(location).parent if kind == "manifest" else Path(location))


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_sources(cfg: PrepareConfig) -> tuple[bytes, list[Listing]]:
    """The HMAC key and every source's listing: all the user's input is checked before any work."""
    sources = cfg.sources.given()
    if not sources:
        raise PainsearchError(
            "No source was given to prepare; pass at least one of --unbc DIR, --mintpain DIR, --manifest CSV, "
            "--cppain DIR, or a config with a `sources` section."
        )
    listings = [read_source(kind, location, allow_outside=cfg.allow_outside_paths) for kind, location in sources.items()]
    key = load_key(cfg.subject_key_file, demo=all(_is_phantom(k, v) for k, v in sources.items()))
    return key, listings


def plan(cfg: PrepareConfig, key: bytes, listings: list[Listing]) -> Plan:
    """Sampling -> hashes and duplicates -> pseudonyms -> chunks of work."""
    rejected: list[Rejected] = []
    chosen: list[SourceRecord] = []
    listed: dict[str, int] = {}
    for listing in listings:
        rejected.extend(listing.rejected)
        listed[listing.dataset] = listed.get(listing.dataset, 0) + len(listing.records)
        per = cfg.frames_per_subject_class if listing.video else None
        chosen.extend(sample_frames(listing.records, per, cfg.seed))
    seen: dict[str, SourceRecord] = {}
    items_by_dataset: dict[str, list[dict[str, Any]]] = defaultdict(list)
    levels: dict[str, set[float]] = defaultdict(set)
    for r in chosen:
        digest = _sha256(r.path)
        if digest in seen and Path(r.path).stat().st_size > 0:
            first = seen[digest]
            rejected.append(Rejected(r.dataset, r.rel, f"duplicate file: same bytes as {first.dataset}:{first.rel}"))
            continue
        seen.setdefault(digest, r)
        items_by_dataset[r.dataset].append({
            "path": r.path, "rel": r.rel, "dataset": r.dataset, "label": r.label, "pain_level": r.pain_level,
            "subject": pseudonym(key, r.dataset, r.subject),
            "sequence": pseudonym(key, r.dataset, f"{r.subject}/{r.sequence}", prefix="q"),
            "frame": r.frame, "sha256": digest,
        })
        levels[r.dataset].add(r.pain_level)
    prep = settings(cfg.preprocess)
    chunks = []
    for dataset in sorted(items_by_dataset):
        items = items_by_dataset[dataset]
        for start in range(0, len(items), cfg.chunk_size):
            part = items[start : start + cfg.chunk_size]
            # a chunk is what its rows will hold: every field but the absolute path (the folder may move), so a
            # corrected row (a pain level, a sequence) makes its chunk new and a rerun redoes it
            ident = hashlib.sha256(json.dumps([prep, [{k: v for k, v in i.items() if k != "path"} for i in part]],
                                              sort_keys=True).encode())
            chunks.append({"id": ident.hexdigest()[:20], "dataset": dataset, "items": part})
    sampled = Counter(c["dataset"] for c in chunks for _ in c["items"])
    return Plan(chunks, rejected, listed, dict(sampled), {k: sorted(v) for k, v in levels.items()})


class ChunkWorker:
    """Turns chunks into shards. A Ray Data actor holds one; the local engine uses one in-process."""

    def __init__(self, cfg: dict[str, Any], out: str, endpoint: str | None, threads: int) -> None:
        from pipelines.config import PreprocessConfig

        self.cfg = PreprocessConfig.model_validate(cfg)
        self.settings = settings(self.cfg)
        self.store = open_store(out, endpoint)
        self.pre = Preprocessor(self.cfg, threads, endpoint)

    def run(self, chunk: dict[str, Any]) -> dict[str, Any]:
        rows, rejected = [], []
        for item in chunk["items"]:
            try:
                with open(item["path"], "rb") as f:
                    data = f.read()
                if hashlib.sha256(data).hexdigest() != item["sha256"]:
                    raise Rejection("file changed while prepare was running; run prepare again")
                done = self.pre(data)
            except Rejection as exc:
                rejected.append({"dataset": item["dataset"], "input": item["rel"], "reason": str(exc)})
                continue
            except OSError as exc:
                rejected.append({"dataset": item["dataset"], "input": item["rel"], "reason": f"could not read the file ({exc.strerror or exc})"})
                continue
            except Exception as exc:  # one odd input must not end the run: it is listed like any other refusal
                rejected.append({"dataset": item["dataset"], "input": item["rel"],
                                 "reason": f"could not be processed ({type(exc).__name__}: {str(exc)[:200]})"})
                continue
            rows.append({
                "image": done.image, "label": item["label"], "pain_level": item["pain_level"],
                "dataset": item["dataset"], "subject": item["subject"], "sequence": item["sequence"],
                "frame": item["frame"], "landmarks": done.landmarks, "face_confidence": done.confidence,
                "source_sha256": item["sha256"], "preprocess": self.settings,
                "background_removed": done.background_removed,
            })
        path = None
        if rows:
            path = shard_path(chunk["dataset"], chunk["id"])
            self.store.write_bytes(to_parquet(rows, {"painsearch.preprocess": self.settings}), path)
        marker = {
            "id": chunk["id"], "dataset": chunk["dataset"], "file": path, "rows": len(rows),
            "counts": [[r["subject"], int(r["label"])] for r in rows], "rejected": rejected,
            "background_kept": sum(not r["background_removed"] for r in rows),
        }
        self.store.write_bytes(json.dumps(marker).encode(), CHUNKS, f"{chunk['id']}.json")
        return marker

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Ray Data entry point: a batch of JSON-encoded chunks -> their markers."""
        markers = [self.run(json.loads(c)) for c in batch["chunk"]]
        return {"marker": np.array([json.dumps(m) for m in markers], dtype=object)}


def _run_ray(cfg: PrepareConfig, pending: list[dict[str, Any]], progress: Progress) -> list[dict[str, Any]]:
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    env = s3_env()
    ds = ray.data.from_items([{"chunk": json.dumps(c)} for c in pending], override_num_blocks=len(pending))
    ds = ds.map_batches(
        ChunkWorker,
        fn_constructor_kwargs={
            "cfg": cfg.preprocess.model_dump(), "out": cfg.out, "endpoint": cfg.s3_endpoint,
            "threads": cfg.threads_per_worker,
        },
        batch_size=1,
        compute=ray.data.ActorPoolStrategy(size=min(cfg.workers, len(pending))),
        num_cpus=cfg.threads_per_worker,
        # a runtime env of its own costs a fresh worker process, so only when S3 settings must travel
        **({"runtime_env": {"env_vars": env}} if env else {}),
    )
    markers = []
    for row in ds.iter_rows():  # as the chunks finish
        markers.append(json.loads(row["marker"]))
        progress.update(progress.first + len(markers))
    return markers


def _run_local(cfg: PrepareConfig, pending: list[dict[str, Any]], progress: Progress) -> list[dict[str, Any]]:
    worker = ChunkWorker(cfg.preprocess.model_dump(), cfg.out, cfg.s3_endpoint, cfg.threads_per_worker)
    markers = []
    for c in pending:
        markers.append(worker.run(c))
        progress.update(progress.first + len(markers))
    return markers


def check_inputs(cfg: PrepareConfig) -> tuple[bytes, list[Listing]]:
    """Everything a user can get wrong, checked before any work (and before Ray starts): the sources and their
    layouts, the subject key, the background model's weights, the destination. Returns the key and listings."""
    key, listings = read_sources(cfg)
    if cfg.preprocess.background == "u2net_human_seg":
        from pipelines.preprocess.background import u2net_weights

        u2net_weights(cfg.preprocess.u2net_dir, cfg.s3_endpoint)
    open_store(cfg.out, cfg.s3_endpoint).check_writable()
    return key, listings


def prepare(cfg: PrepareConfig, log=say, checked: tuple[bytes, list[Listing]] | None = None) -> dict[str, Any]:
    """Run (or resume) a prepare; returns the report that is also written to `prepare_report.json`.
    `checked` is what `check_inputs` returned, when the caller checked before starting Ray."""
    t0 = time.time()
    key, listings = checked or check_inputs(cfg)
    if key == DEMO_KEY:
        log("prepare: every source holds exactly what `data synth` rendered there (checked file by file), so "
            "subject pseudonyms use the public demo key; real data needs PAINSEARCH_SUBJECT_KEY or subject_key_file")
    store = open_store(cfg.out, cfg.s3_endpoint)
    work = plan(cfg, key, listings)
    done_ids = {name[: -len(".json")] for name in store.list(CHUNKS) if name.endswith(".json")}
    # a chunk counts as done when its marker is there and its shard reads back whole (a file cut short by a full
    # disk or a copy is redone)
    pending = [c for c in work.chunks if c["id"] not in done_ids or not _whole(store, c["id"])]
    log(f"prepare: {sum(work.sampled.values())} images in {len(work.chunks)} chunks; "
        f"{len(work.chunks) - len(pending)} already done, {len(pending)} to do ({cfg.engine}, {cfg.workers} worker(s))")
    progress = Progress("prepare", len(work.chunks), "chunks", log, first=len(work.chunks) - len(pending))
    fresh = {m["id"]: m for m in (_run_ray if cfg.engine == "ray" else _run_local)(cfg, pending, progress)} if pending else {}
    # markers of chunks finished by an earlier run are read back; this run's come from the workers
    markers = [fresh.get(c["id"]) or json.loads(store.read_bytes(CHUNKS, f"{c['id']}.json")) for c in work.chunks]
    report = _report(cfg, work, markers, time.time() - t0)
    manifest = {
        "format": FORMAT, "version": FORMAT_VERSION, "created": report["created"],
        "preprocess": json.loads(settings(cfg.preprocess)), "seed": cfg.seed,
        "frames_per_subject_class": cfg.frames_per_subject_class,
        "phantom": key == DEMO_KEY,  # every source is what `data synth` rendered: no real person's face
        "files": [{"path": m["file"], "dataset": m["dataset"], "rows": m["rows"]} for m in markers if m["file"]],
        "datasets": {ds: {**c, "levels": work.levels.get(ds, [])} for ds, c in report["datasets"].items()},
    }
    store.write_bytes(json.dumps(report, indent=2).encode(), REPORT)
    store.write_bytes(json.dumps(manifest, indent=2).encode(), MANIFEST)
    log(f"prepare: {report['rows']} rows, {len(report['rejected'])} rejected, written to {store.uri}")
    return report


def _whole(store, chunk_id: str) -> bool:
    from pipelines.shards.read import shard_problem

    marker = json.loads(store.read_bytes(CHUNKS, f"{chunk_id}.json"))
    return not marker["file"] or shard_problem(store, store.path(marker["file"]), int(marker["rows"])) is None


def _report(cfg: PrepareConfig, work: Plan, markers: list[dict[str, Any]], seconds: float) -> dict[str, Any]:
    subjects: dict[str, dict[str, dict[str, int]]] = defaultdict(lambda: defaultdict(lambda: {"no_pain": 0, "pain": 0}))
    for m in markers:
        for subject, label in m["counts"]:
            subjects[m["dataset"]][subject]["pain" if label else "no_pain"] += 1
    datasets = {}
    for ds in sorted(set(work.listed) | set(subjects)):
        per = subjects.get(ds, {})
        datasets[ds] = {
            "subjects": len(per), "no_pain": sum(v["no_pain"] for v in per.values()),
            "pain": sum(v["pain"] for v in per.values()), "listed": work.listed.get(ds, 0),
            "sampled": work.sampled.get(ds, 0),
        }
        datasets[ds]["rows"] = datasets[ds]["no_pain"] + datasets[ds]["pain"]
    rejected = [asdict(r) | {"input": r.rel} for r in work.rejected]
    for r in rejected:
        r.pop("rel")
    rejected += [r for m in markers for r in m["rejected"]]
    config = cfg.model_dump()
    config.pop("subject_key_file", None)
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(seconds, 1),
        "rows": sum(d["rows"] for d in datasets.values()),
        # rows whose background stayed: the remover found nothing to separate (or `background: none`)
        "background_kept": sum(m.get("background_kept", 0) for m in markers),
        "datasets": datasets,
        "subjects": {ds: dict(v) for ds, v in subjects.items()},
        "rejected": sorted(rejected, key=lambda r: (r["dataset"], r["input"])),
        "config": config,
    }
