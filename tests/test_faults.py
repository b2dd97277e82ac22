"""Faults that used to lose work: writes cut short, a storage outage, two drivers, a worker killed for memory;
and a short fault run (tests/faults.py) that kills a study at seeded moments and checks nothing is lost."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from pipelines.errors import PainsearchError, StoreUnreachable
from pipelines.storage import open_store

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"


def test_a_write_cut_short_is_never_listed(tmp_path):
    """A killed local write leaves its temporary file behind: listings never show it, so the attempt records a
    search reads back are all whole."""
    from search.layout import SearchKey
    from search.tuner import _attempts

    store = open_store(str(tmp_path / "results"))
    key = SearchKey("weinet", "external", 0)
    store.write_bytes(json.dumps({"trial_id": "t1", "kind": "error"}).encode(), key.path, "attempts", "t1-0.json")
    folder = tmp_path / "results" / key.path / "attempts"
    (folder / ".tmp-0123456789abcdef").write_bytes(b'{"trial_id": "t1", "ki')  # a write a kill cut short
    (folder / ".tmp-dir").mkdir()
    assert store.list(key.path, "attempts") == ["t1-0.json"] and store.dirs(key.path, "attempts") == []
    assert list(_attempts(store, key)) == ["t1"]


def test_a_second_driver_is_refused_and_a_dead_ones_lease_taken_over(tmp_path, monkeypatch):
    from search import lease as leases

    store = open_store(str(tmp_path / "results"))
    monkeypatch.setattr(leases, "SETTLE_S", 0.0)
    first = leases.Lease(store)
    first.acquire()
    with pytest.raises(PainsearchError, match="being run by another driver") as err:
        leases.Lease(store).acquire()
    assert "\n" not in str(err.value) and f"{leases.STALE_S:.0f} s" in str(err.value)
    first.release()
    assert not store.exists("lease.json")
    # a driver killed on this host: its process is gone, so its lease is stale at once
    dead = subprocess.Popen(["true"])
    dead.wait()
    store.write_bytes(json.dumps({"holder": "x", "host": os.uname().nodename, "pid": dead.pid,
                                  "heartbeat": time.time()}).encode(), "lease.json")
    with leases.Lease(store):
        pass
    # a driver on another host whose heartbeat stopped
    store.write_bytes(json.dumps({"holder": "y", "host": "elsewhere", "pid": 1,
                                  "heartbeat": time.time() - leases.STALE_S - 1}).encode(), "lease.json")
    with leases.Lease(store):
        pass
    store.write_bytes(json.dumps({"holder": "z", "host": "elsewhere", "pid": 1, "heartbeat": time.time()}).encode(),
                      "lease.json")
    with pytest.raises(PainsearchError, match="on elsewhere, process 1"):
        leases.Lease(store).acquire()


def test_a_driver_whose_lease_was_taken_over_stops_instead_of_renewing_it(tmp_path, monkeypatch):
    """A driver cut off from the store for longer than STALE_S has been taken over when the store comes back:
    its next heartbeat finds the other holder, leaves the lease to it, and the driver stops in one sentence."""
    from search import lease as leases

    store = open_store(str(tmp_path / "results"))
    monkeypatch.setattr(leases, "SETTLE_S", 0.0)
    monkeypatch.setattr(leases, "HEARTBEAT_S", 0.05)
    first = leases.Lease(store)
    first.acquire()
    first.check()  # holds it: goes on
    taker = {"holder": "other", "host": "elsewhere", "pid": 7, "heartbeat": time.time()}
    store.write_bytes(json.dumps(taker).encode(), "lease.json")  # taken over while the first could not beat
    for _ in range(100):
        try:
            first.check()
        except PainsearchError as err:
            assert "lost the study" in str(err) and "on elsewhere, process 7" in str(err) and "\n" not in str(err)
            break
        time.sleep(0.05)
    else:
        pytest.fail("the driver never noticed that its lease was taken over")
    time.sleep(0.2)
    assert json.loads(store.read_bytes("lease.json"))["holder"] == "other"  # its heartbeats stopped
    first.release()
    assert json.loads(store.read_bytes("lease.json"))["holder"] == "other"


def test_a_store_that_never_answers_ends_in_one_sentence_after_its_retries(monkeypatch):
    """Transient failures are tried again with growing waits, then end in one sentence."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "k")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "s")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
    store = open_store("s3://painsearch/x")
    t0 = time.monotonic()
    with pytest.raises(PainsearchError, match="could not be reached"):
        store.write_bytes(b"x", "a.json", patience=2.5)
    assert 2.0 < time.monotonic() - t0 < 30  # tried for its patience, not once
    with pytest.raises(PainsearchError, match="could not be reached"):
        store.check_writable()  # the check at a command's start tries once


@pytest.mark.slow
def test_a_write_during_an_outage_succeeds_when_the_server_is_back(tmp_path, monkeypatch):
    """SeaweedFS stopped under a write, started again a few seconds later: the write goes through."""
    from conftest import free_port
    from seaweed import Seaweed

    server = Seaweed(tmp_path / "weed", {name: free_port() for name in ("master", "volume", "filer", "s3")})
    server.start()
    try:
        for k, v in server.env().items():
            monkeypatch.setenv(k, v)
        store = open_store("s3://painsearch/outage")
        store.write_bytes(b"before", "a.json")
        server.stop()
        result: dict = {}

        def write() -> None:
            t0 = time.monotonic()
            try:
                store.write_bytes(b"during", "b.json")
                result["seconds"] = time.monotonic() - t0
            except Exception as exc:  # noqa: BLE001
                result["error"] = exc

        writer = threading.Thread(target=write)
        writer.start()
        time.sleep(4)
        assert writer.is_alive(), result  # still trying, not failed
        server.start()
        writer.join(timeout=120)
        assert "error" not in result and result["seconds"] > 4, result
        assert store.read_bytes("b.json") == b"during" and store.read_bytes("a.json") == b"before"
    finally:
        server.stop()


@pytest.mark.slow
def test_a_worker_killed_for_memory_is_recorded_as_out_of_memory(ray_local):
    """From Ray's own errors: the memory monitor's OutOfMemoryError, and an actor the kernel kills (SIGKILL)."""
    import ray
    from ray.exceptions import OutOfMemoryError
    from ray.train.v2.api.exceptions import WorkerGroupError

    from search.trial import error_kind

    @ray.remote(num_cpus=0)
    class Doomed:
        def die(self) -> None:
            os.kill(os.getpid(), 9)

    with pytest.raises(ray.exceptions.RayActorError) as err:
        ray.get(Doomed.remote().die.remote())
    assert error_kind(err.value) == "out_of_memory"
    assert error_kind(OutOfMemoryError("Task was killed due to the node running low on memory.")) == "out_of_memory"
    assert error_kind(ValueError("bad")) == "error"
    # a Ray Train run's error carries its workers' own: one that ran out of memory is classed so
    assert error_kind(WorkerGroupError("[Rank 0 Error Snippet]: Traceback ...", {0: MemoryError("x")})) == "out_of_memory"
    assert error_kind(StoreUnreachable("Could not write s3://b/x: the S3 endpoint (x) could not be reached; check")) == "storage"


@pytest.mark.slow
def test_a_study_killed_at_seeded_moments_loses_nothing(tiny_shards, tmp_path):
    """Three kills (mid-trial of a multi-epoch trial, just after a search was sealed, after a random delay), each
    followed by --resume; at the end every search is sealed once, every trial ended once, and the trials cut
    short continued from their last checkpoint."""
    from faults import fault_run, study_command

    from search.config import load_study_config

    uri = str(tmp_path / "results")
    # ten epochs a trial: a window of about a second to land a kill in
    sets = ["models=[weinet]", "scenarios=[subject_kfold,external]", "search.space.epochs=[10,10]",
            "search.scheduler=none", "search.concurrent_searches=1"]
    cfg = load_study_config(SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                    "scenarios": ["subject_kfold", "external"],
                                    "search": {"space": {"epochs": [10, 10]}, "scheduler": "none",
                                               "concurrent_searches": 1}})
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    record = fault_run(study_command(SMOKE, uri, str(tiny_shards), sets), env, cfg, kills=3, seed=1,
                       log=tmp_path / "fault.log")
    assert record["kills"] == 3 and record["mid_trial_kills"] >= 1, record
    assert record["searches"] == 4 and record["trials"] == 8 and record["continued_from_checkpoint"] >= 1, record


def command_of(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
    except OSError:
        return ""


def descendants(pid: int) -> list[int]:
    """The processes `pid` started, and theirs (Linux's /proc)."""
    parents = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, todo = [], [pid]
    while todo:
        parent = todo.pop()
        children = [c for c, p in parents.items() if p == parent]
        found += children
        todo += children
    return found


@pytest.mark.slow  # a Ray cluster of its own: the full suite's, not the fast tier's
def test_a_search_whose_process_dies_is_run_again_and_continues_by_itself(tiny_shards, tmp_path):
    """A search's own task dies with its node (here its worker process is killed, as a lost spot node takes it, with
    the trials it owns): Ray runs the task again, it continues from what the store holds, and the study ends by
    itself, without --resume, every search sealed once and no logged epoch trained again."""
    import signal

    from faults import _mid_trial, _snapshot, check_store, study_command

    from search.config import load_study_config
    from search.layout import TRAIN_DIR
    from search.study import searches

    uri = str(tmp_path / "results")
    sets = ["models=[weinet]", "scenarios=[subject_kfold]", "search.space.epochs=[10,10]", "search.scheduler=none",
            "search.concurrent_searches=1", "search.trials=1"]
    cfg = load_study_config(SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                    "scenarios": ["subject_kfold"], "search": {
                                        "space": {"epochs": [10, 10]}, "scheduler": "none", "concurrent_searches": 1,
                                        "trials": 1}})
    cmd = [a for a in study_command(SMOKE, uri, str(tiny_shards), sets) if a != "--resume"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    log = tmp_path / "study.log"
    store = open_store(uri)
    with open(log, "w") as out:
        study = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.time() + 600
            while not _mid_trial(snap := _snapshot(store, searches(cfg), TRAIN_DIR), 10):
                assert study.poll() is None and time.time() < deadline, log.read_text()[-3000:]
                time.sleep(0.2)
            # the search's own worker, among the processes this study started
            (victim,) = [pid for pid in descendants(study.pid) if command_of(pid).startswith("ray::run_search")]
            os.kill(victim, signal.SIGKILL)
            assert study.wait(timeout=600) == 0, log.read_text()[-3000:]
        finally:
            if study.poll() is None:
                os.killpg(study.pid, signal.SIGKILL)
    assert "2 searches done (0 failed)" in log.read_text(), log.read_text()[-3000:]
    frozen = {run: {f: b for f, b in snap["epochs"][run].items() if int(f.split(".")[0]) <= last}
              for run, last in snap["checkpoint"].items()}
    record = check_store(store, cfg, snap["done"], frozen)
    assert record["searches"] == 2 and record["trials"] == 2 and record["continued_from_checkpoint"] >= 1, record


def test_shards_are_read_through_the_stores_retry(tiny_shards, monkeypatch):
    """A trial's shard reads go through the store (its retry and its errors), not around it."""
    from pipelines.shards.read import read_table, shard_files
    from pipelines.storage.store import Store

    read = []
    real = Store.read_parquet
    monkeypatch.setattr(Store, "read_parquet", lambda self, path, columns=None: read.append(path) or real(self, path, columns))
    table = read_table(str(tiny_shards), columns=["label"])
    assert table.num_rows > 0 and read == shard_files(str(tiny_shards))[1]


def test_an_outage_is_classed_storage_by_its_type_not_its_words(monkeypatch):
    """An S3 store that keeps failing for a passing reason raises `StoreUnreachable` once its patience is spent,
    which an attempt records as `storage` (its search is not sealed as failed); a refusal raises an ordinary
    one-sentence error; an error that merely says the same words is an `error`."""
    from pipelines import retries
    from pipelines.errors import PainsearchError, StoreUnreachable
    from pipelines.storage.store import Store
    from search.trial import error_kind

    monkeypatch.setattr(retries, "STORE_FIRST_WAIT_S", 0.1)
    from pipelines.storage.s3 import s3_filesystem

    store = Store(uri="s3://bucket/results", fs=s3_filesystem("http://127.0.0.1:9"), root="bucket/results")

    def failing(message: str):
        def call():
            raise OSError(message)
        return call

    with pytest.raises(StoreUnreachable) as err:
        store._call(failing("AWS Error NETWORK_CONNECTION: curlCode: 7, Couldn't connect to server"), "read", 0.3)
    assert error_kind(err.value) == "storage"
    with pytest.raises(PainsearchError) as refused:
        store._call(failing("AWS Error ACCESS_DENIED: Access Denied"), "read", 0.3)
    assert not isinstance(refused.value, StoreUnreachable) and error_kind(refused.value) == "error"
    assert error_kind(PainsearchError("Could not read s3://b: the S3 endpoint could not be reached")) == "error"


def test_an_endpoint_whose_host_name_does_not_resolve_fails_at_once(monkeypatch):
    """A mistyped endpoint host is refused on its first error with a sentence naming the host, instead of being
    retried for the store's whole patience as an outage (pyarrow's own words for it, as it gives them)."""
    from pipelines.errors import PainsearchError, StoreUnreachable
    from pipelines.storage.store import Store
    from pipelines.storage.s3 import s3_filesystem

    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://minio.lcoal:9000")
    store = Store(uri="s3://bucket/results", fs=s3_filesystem("http://127.0.0.1:9"), root="bucket/results")
    calls = []

    def unresolved():
        calls.append(1)
        raise OSError("When getting information for key 'results/x' in bucket 'bucket': AWS Error NETWORK_CONNECTION "
                      "during HeadObject operation: curlCode: 6, Could not resolve hostname; Details: Could not "
                      "resolve host: minio.lcoal")

    t = time.time()
    with pytest.raises(PainsearchError) as err:
        store._call(unresolved, "read", 300)
    assert time.time() - t < 5 and len(calls) == 1 and not isinstance(err.value, StoreUnreachable)
    assert "host name (minio.lcoal) does not resolve; check AWS_ENDPOINT_URL for a typo" in str(err.value)
