"""The cluster path, started for real: two Ray nodes on 127.0.0.1 brought up with the launcher YAML's own start
commands (ports and temp dirs substituted, token auth on, the worker declaring two fake GPUs), the README's
`ray job submit --working-dir .` from a checkout that holds what its quick start writes, trials sharing the GPUs
half a card each, and a Ray Train search whose two workers sit on different nodes."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import S3_KEY, S3_SECRET, copy_checkout, free_port, stop_processes_naming

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
SMOKE = "configs/smoke.yaml"


# each node's worker processes take ports from a range of their own, below the ephemeral ports free_port hands
# out and above the range a default Ray cluster (the session's) uses
WORKER_PORTS = {"head": 21000, "worker": 22000}


def _ports(node: str) -> list[str]:
    names = ("node-manager-port", "object-manager-port", "metrics-export-port", "dashboard-agent-listen-port",
             "dashboard-agent-grpc-port", "runtime-env-agent-port")
    lo = WORKER_PORTS[node]
    return [f"--{n}={free_port()}" for n in names] + [f"--min-worker-port={lo}", f"--max-worker-port={lo + 299}"]


def launcher_commands(port: int, dashboard: int, client: int, temp: Path, worker_temp: Path) -> tuple[str, str]:
    """The launcher YAML's head and worker `ray start` lines, as a cluster runs them, made to fit one machine."""
    cfg = yaml.safe_load((ROOT / "cluster" / "deploy" / "aws-gpu.yaml").read_text())
    head = next(c for c in cfg["head_start_ray_commands"] if "ray start" in c)
    worker = next(c for c in cfg["worker_start_ray_commands"] if "ray start" in c)
    # every address of a real head is this machine's loopback here: the tests listen on 127.0.0.1 only
    head = head.replace("--port=6379", f"--port={port}").replace("--dashboard-host=0.0.0.0", "--dashboard-host=127.0.0.1")
    assert "--dashboard-host=127.0.0.1" in head
    head = re.sub(r"--autoscaling-config=\S+", "", head)
    head += (f" --node-ip-address=127.0.0.1 --num-cpus=2 --num-gpus=0 --temp-dir={temp} --dashboard-port={dashboard}"
             f" --ray-client-server-port={client} " + " ".join(_ports("head")))
    worker = worker.replace("$RAY_HEAD_IP:6379", f"127.0.0.1:{port}")
    # a folder of its own, as on a machine of its own: a node started anew there leaves the head's files alone
    worker += f" --node-ip-address=127.0.0.1 --num-cpus=2 --num-gpus=2 --temp-dir={worker_temp} " + " ".join(
        _ports("worker"))
    return head, worker


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory, ray_local):
    """The two nodes, with the tests' local cluster running beside them: a second Ray instance on the machine,
    as in the whole suite, where Ray's state API cannot pick a cluster by itself."""
    home = tmp_path_factory.mktemp("home")
    temp = Path(f"/tmp/tn-{os.getpid()}")  # short: Ray's socket paths must fit in 107 bytes
    worker_temp = Path(f"/tmp/tw-{os.getpid()}")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "AWS_"))}, "HOME": str(home),
           "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1",
           # the nodes' own S3 credentials, as an instance profile gives them
           "AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}
    # what the README says to run once: the token the launcher's file_mounts copy to every node
    token = subprocess.run([str(VENV_BIN / "ray"), "get-auth-token", "--generate"], env=env, capture_output=True,
                           text=True, timeout=60)
    assert token.returncode == 0 and (home / ".ray" / "auth_token").is_file(), token.stderr
    port, dashboard, client = free_port(), free_port(), free_port()
    head, _ = launcher_commands(port, dashboard, client, temp, worker_temp)
    start_node(head, env)
    nodes = {"address": f"http://127.0.0.1:{dashboard}", "gcs": f"127.0.0.1:{port}", "env": env, "temp": temp,
             "worker_temp": worker_temp, "home": home}
    # the worker node's daemons share the process group of its `ray start` (Ray starts them without a session of
    # their own): that group, and what its processes start, is the node a test can take away
    nodes["worker_group"] = start_node(launcher_commands(port, dashboard, client, temp, worker_temp)[1], env)
    nodes["start_worker"] = lambda: start_node(launcher_commands(port, dashboard, client, temp, worker_temp)[1], env)
    yield nodes
    for folder in (temp, worker_temp):
        stop_processes_naming(folder)
        shutil.rmtree(folder, ignore_errors=True)


def start_node(command: str, env: dict) -> int:
    """Run a node's `ray start` line in a session of its own; the session's id (its process group)."""
    proc = subprocess.Popen(["bash", "-c", command], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0, command + "\n" + out[-4000:]
    return proc.pid


def processes_of_group(group: int) -> dict[int, str]:
    """The processes of a process group and their descendants, with their command lines."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True, text=True).stdout
    rows = [line.split(None, 3) for line in out.splitlines()]
    procs = {int(r[0]): (int(r[1]), int(r[2]), r[3] if len(r) > 3 else "") for r in rows if len(r) >= 3}
    ours = {pid for pid, (_, pgid, _) in procs.items() if pgid == group}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in procs.items() if ppid in ours} - ours
        ours |= children
        grew = bool(children)
    return {pid: procs[pid][2] for pid in ours}


def quick_start_checkout(tmp: Path) -> Path:
    """A copy of the repository holding what the README's quick start writes there: more than Ray's 100 MiB upload
    limit of phantom images, shards, results and a report, none of which may travel with a job."""
    checkout = copy_checkout(tmp / "checkout")
    for folder in ("phantom/unbc/Images", "phantom/shards", "results/searches", "report/figures"):
        (checkout / folder).mkdir(parents=True, exist_ok=True)
        (checkout / folder / "data.bin").write_bytes(os.urandom(30 * 2**20))
    (checkout / "phantom" / "shards" / "prepare_report.json").write_text('{"rejected": [{"input": "Jane Doe.png"}]}')
    return checkout


JOB_TIMEOUT_S = 600  # under pytest's 900 s, so a job that hangs still reports


def _text(out: bytes | str | None) -> str:
    return out.decode(errors="replace") if isinstance(out, bytes) else out or ""


def submit(cluster, cwd: Path, storage: str, seaweed, sets: list[str]) -> subprocess.CompletedProcess:
    """The README's command: `ray job submit --address ... --working-dir . --runtime-env-json ... -- painsearch ...`."""
    return submit_entrypoint(cluster, cwd, seaweed, study_entrypoint(storage, sets))


def submit_command(cluster, seaweed, entrypoint: list[str]) -> tuple[list[str], dict[str, str]]:
    """The `ray job submit` line and its environment."""
    runtime_env = {"env_vars": {"AWS_ENDPOINT_URL": seaweed["endpoint"]}}  # where the store is; no credentials
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", cluster["address"], "--working-dir", ".",
           "--runtime-env-json", json.dumps(runtime_env), "--", *entrypoint]
    return cmd, {**cluster["env"], "AWS_ENDPOINT_URL": seaweed["endpoint"], "RAY_AUTH_MODE": "token"}


def study_entrypoint(storage: str, sets: list[str]) -> list[str]:
    return ["painsearch", "search", "run", "--config", SMOKE, "--storage", storage,
            *[a for s in sets for a in ("--set", s)]]


def submit_entrypoint(cluster, cwd: Path, seaweed, entrypoint: list[str]) -> subprocess.CompletedProcess:
    cmd, env = submit_command(cluster, seaweed, entrypoint)
    deadline = time.time() + 120
    while True:  # the head's job agent needs a few seconds after `ray start` returns
        try:
            job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=JOB_TIMEOUT_S, cwd=cwd)
        except subprocess.TimeoutExpired as exc:  # say what the cluster was doing, within pytest's own timeout
            status = subprocess.run([str(VENV_BIN / "ray"), "status", "--address", cluster["gcs"]], env=env,
                                    capture_output=True, text=True, timeout=60)
            for job_id in set(re.findall(r"raysubmit_\w+", _text(exc.stdout))):  # free the cluster for the next test
                subprocess.run([str(VENV_BIN / "ray"), "job", "stop", "--address", cluster["address"], job_id],
                               env=env, capture_output=True, timeout=120)
            raise AssertionError(f"the job ran over {JOB_TIMEOUT_S} s\n{_text(exc.stdout)[-4000:]}\n"
                                 f"{_text(exc.stderr)[-2000:]}\n{status.stdout}{status.stderr}") from None
        if job.returncode == 0 or "No available agent" not in job.stderr + job.stdout or time.time() > deadline:
            return job
        time.sleep(3)


def read_the_store_here(monkeypatch, seaweed) -> None:
    """This process reads what a job wrote to the S3 store, with the nodes' own credentials."""
    for k, v in {"AWS_ENDPOINT_URL": seaweed["endpoint"], "AWS_ACCESS_KEY_ID": S3_KEY,
                 "AWS_SECRET_ACCESS_KEY": S3_SECRET}.items():
        monkeypatch.setenv(k, v)


def epochs_of(store, key, trial: str) -> list[dict]:
    return [json.loads(store.read_bytes(key.of("train", trial, "epochs"), f))
            for f in store.list(key.of("train", trial, "epochs"))]


PROBE = """
import ray
from cluster.local import ensure_ray

ensure_ray()

@ray.remote(num_cpus=0)
def nodes_seen_by_the_state_api():
    from ray.util.state import list_nodes

    return len(list_nodes())

print("nodes:", ray.get(nodes_seen_by_the_state_api.remote()))
"""


def test_a_joined_clusters_workers_reach_its_state_api(two_nodes, seaweed):
    """Ray Train's placement-group cleaner asks Ray's state API, from a worker, whether a run's controller lives;
    with another Ray instance on the node (here the tests' local cluster) the API cannot tell which cluster is
    meant unless painsearch names it. Unnamed, the cleaner's thread dies and every run that Tune stops (ASHA)
    keeps its GPU share for good, until no trial can start."""
    job = submit_entrypoint(two_nodes, ROOT, seaweed, ["python", "-c", PROBE])
    assert job.returncode == 0 and "nodes: 2" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]


@pytest.mark.parametrize("runner", ["inline", "ray_train"])
def test_trials_share_two_fake_gpus_half_a_card_each(two_nodes, seaweed, tiny_shards, tmp_path, monkeypatch, runner):
    from pipelines.storage import open_store
    from search.config import load_study_config
    from search.study import searches
    from search.tuner import read_trials

    checkout = quick_start_checkout(tmp_path)
    uri = f"s3://painsearch/gpu-{runner}"
    sets = [f"shards={tiny_shards}", "models=[weinet]", "scenarios=[subject_kfold]", "search.trials=3",
            "search.max_concurrent_trials=2", "search.concurrent_searches=2", "search.space.epochs=[2,3]",
            "search.grace_period=1", "search.reduction_factor=2", "search.startup_trials=1",
            "resources.gpus_per_worker=0.5", "resources.cpus_per_worker=0.2", f"resources.runner={runner}",
            "train.allow_cpu_fallback=true"]  # the worker's GPUs are declared, not real: TensorFlow sees none
    job = submit(two_nodes, checkout, uri, seaweed, sets)
    assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
    assert "2 searches done (0 failed)" in job.stdout
    read_the_store_here(monkeypatch, seaweed)
    store = open_store(uri)
    cfg = load_study_config(ROOT / SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                           "scenarios": ["subject_kfold"]})
    spans, nodes, shares = [], set(), set()
    for key in searches(cfg):
        assert len(read_trials(store, key)) == 3
        for trial in store.dirs(key.of("train")):
            epochs = epochs_of(store, key, trial)
            spans.append((epochs[0]["time"] - epochs[0]["time_since_start_s"], epochs[-1]["time"]))
            nodes |= {e["node"] for e in epochs}
            shares |= {tuple(e["gpu_ids"]) for e in epochs}
    assert len(spans) == 6 and len(nodes) == 1  # every trial on the GPU node
    assert shares <= {("0",), ("1",)} and len(shares) == 2  # half a card each, on both cards
    peak = max(sum(1 for a, b in spans if a <= t < b) for t, _ in spans)
    assert peak == 4, spans  # four trials at once on two GPUs
    # a share freed by a trial that ended (trained out, or stopped by ASHA) went to a later trial. Which trials ASHA
    # stops depends on their scores; a stopped run that kept its share would leave later trials waiting for good,
    # and the job would run over its time (test_study.py stops every trial, with a fixed scheduler)
    assert any(a >= min(b for _, b in spans) for a, _ in spans), spans
    # nothing the job carried, nor anything the store holds, has the S3 secret; the upload left the data behind
    listing = subprocess.run([str(VENV_BIN / "ray"), "job", "list", "--address", two_nodes["address"]],
                             env={**two_nodes["env"], "RAY_AUTH_MODE": "token"}, capture_output=True, text=True,
                             timeout=120)
    assert S3_SECRET not in listing.stdout and seaweed["endpoint"] in listing.stdout
    # nor any file Ray wrote on either node: its runtime-env agent logs every runtime env it creates, and Tune
    # copies the AWS variables of the process it runs in into each trial's
    leaked = [str(f) for folder in (two_nodes["temp"], two_nodes["worker_temp"]) for f in Path(folder).rglob("*")
              if f.is_file() and not f.is_symlink() and S3_SECRET.encode() in f.read_bytes()]
    assert not leaked, leaked
    client = seaweed["client"]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket="painsearch", Prefix=f"gpu-{runner}/"):
        for obj in page.get("Contents", []):
            assert S3_SECRET.encode() not in client.get_object(Bucket="painsearch", Key=obj["Key"])["Body"].read()
    # the upload was neither refused by the dashboard (HTTP 413) nor by Ray's own size check; Ray's logs hold hex ids
    # and timings, so the refusal is matched by its words, not by the bare number
    assert "Jane Doe" not in job.stdout
    assert not re.search(r"status code 413|exceeds the maximum size", job.stdout + job.stderr)


@pytest.mark.parametrize("runner", ["inline", "ray_train"])
def test_a_trial_given_a_gpu_tensorflow_cannot_see_stops_at_once(two_nodes, seaweed, tiny_shards, monkeypatch, runner):
    """The worker node offers two GPUs that do not exist (TensorFlow sees none there, as on a node whose driver is
    too old): without the explicit opt-out every trial stops before its first epoch and says why, instead of
    training on the CPU while holding half a card."""
    from pipelines.storage import open_store
    from search.config import load_study_config
    from search.study import searches
    from search.tuner import read_trials

    uri = f"s3://painsearch/no-gpu-{runner}"
    sets = [f"shards={tiny_shards}", "models=[weinet]", "scenarios=[subject_kfold]", "search.trials=1",
            "search.retries=0", "search.concurrent_searches=2", "resources.gpus_per_worker=0.5",
            "resources.cpus_per_worker=0.2", f"resources.runner={runner}"]
    job = submit(two_nodes, ROOT, uri, seaweed, sets)
    assert "2 searches done (2 failed)" in job.stdout, job.stdout[-3000:] + job.stderr[-3000:]
    read_the_store_here(monkeypatch, seaweed)
    store = open_store(uri)
    cfg = load_study_config(ROOT / SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                           "scenarios": ["subject_kfold"]})
    for key in searches(cfg):
        (error,) = read_trials(store, key)["error"]
        assert error.startswith("GpuMissingError: A ") and "was given GPU" in error, error
        assert "TensorFlow (a CUDA" in error and "sees no GPU" in error and "nvidia-smi" in error, error
        for trial in store.dirs(key.of("train")):
            assert not store.list(key.of("train", trial, "epochs")), "a trial trained before it stopped"


def test_two_workers_on_two_nodes_train_like_two_on_one(two_nodes, seaweed, tiny_shards, tmp_path, monkeypatch):
    """MultiWorkerMirroredStrategy across nodes (STRICT_SPREAD) gives what the same seed gives on one node."""
    from pipelines.storage import open_store
    from search.config import load_study_config
    from search.study import searches

    read_the_store_here(monkeypatch, seaweed)
    runs = {}
    for placement in ("STRICT_SPREAD", "STRICT_PACK"):
        uri = f"s3://painsearch/spread-{placement.lower()}"
        sets = [f"shards={tiny_shards}", "models=[weinet]", "scenarios=[subject_kfold]", "search.trials=1",
                "search.space.epochs=[2,2]", "search.concurrent_searches=1", "resources.runner=ray_train",
                "resources.workers_per_trial=2", "resources.cpus_per_worker=0.4", f"resources.placement={placement}",
                "train.augment=false"]
        job = submit(two_nodes, ROOT, uri, seaweed, sets)
        assert job.returncode == 0, job.stdout[-3000:] + job.stderr[-3000:]
        cfg = load_study_config(ROOT / SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                               "scenarios": ["subject_kfold"]})
        store, key = open_store(uri), searches(cfg)[0]
        (trial,) = store.dirs(key.of("train"))
        runs[placement] = epochs_of(store, key, trial)
    spread, pack = runs["STRICT_SPREAD"], runs["STRICT_PACK"]
    assert all(len(set(e["worker_nodes"])) == 2 for e in spread) and all(len(set(e["worker_nodes"])) == 1 for e in pack)
    assert len(spread) == len(pack) == 2
    for a, b in zip(spread, pack):
        assert abs(a["train_loss"] - b["train_loss"]) < 1e-4 and abs(a["val_loss"] - b["val_loss"]) < 1e-4, (a, b)


def test_a_study_that_loses_a_node_carries_on_by_itself(two_nodes, seaweed, tiny_shards, monkeypatch):
    """The GPU node is lost mid-trial (every process of its `ray start` killed, as when a spot instance is taken
    back) and a new one joins: the searches, which run beside the driver, keep going; the trials the node took are
    run again from their last checkpoints; the study ends by itself, every search sealed once and no epoch that a
    checkpoint covered trained again."""
    import signal

    from faults import _mid_trial, _snapshot, check_store

    from pipelines.storage import open_store
    from search.config import load_study_config
    from search.layout import TRAIN_DIR
    from search.study import searches

    epochs = 12  # a few seconds a trial: the kill lands mid-trial
    uri = "s3://painsearch/lost-node"
    sets = [f"shards={tiny_shards}", "models=[weinet]", "scenarios=[subject_kfold]", "search.trials=1",
            f"search.space.epochs=[{epochs},{epochs}]", "search.scheduler=none", "search.concurrent_searches=2",
            "resources.gpus_per_worker=0.5", "resources.cpus_per_worker=0.2", "train.allow_cpu_fallback=true"]
    read_the_store_here(monkeypatch, seaweed)
    store = open_store(uri)
    cfg = load_study_config(ROOT / SMOKE, {"shards": str(tiny_shards), "storage": uri, "models": ["weinet"],
                                           "scenarios": ["subject_kfold"], "search": {
                                               "trials": 1, "space": {"epochs": [epochs, epochs]},
                                               "scheduler": "none", "concurrent_searches": 2}})
    cmd, env = submit_command(two_nodes, seaweed, study_entrypoint(uri, sets))
    def start():
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    job = start()
    try:
        deadline = time.time() + JOB_TIMEOUT_S
        # mid-trial, once a checkpoint of that trial is in the store (its epoch's record can be there first)
        while not ((snap := _snapshot(store, searches(cfg), TRAIN_DIR))["checkpoint"] and _mid_trial(snap, epochs)):
            if job.poll() is not None:
                early = job.stdout.read()
                # the head's job agent needs a few seconds after `ray start` returns
                assert "No available agent" in early and time.time() < deadline, early[-4000:]
                job = start()
            assert time.time() < deadline, "no trial reached its second epoch in time"
            time.sleep(0.2)
        node = processes_of_group(two_nodes["worker_group"])
        assert any("ray::" in args and "run_search" not in args for args in node.values()), node  # the trials
        assert not any("run_search" in args for args in node.values()), node  # the searches stay with the driver
        for pid in node:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        two_nodes["worker_group"] = two_nodes["start_worker"]()
        out, _ = job.communicate(timeout=JOB_TIMEOUT_S)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 0 and "2 searches done (0 failed)" in out, out[-4000:]
    frozen = {run: {f: b for f, b in snap["epochs"][run].items() if int(f.split(".")[0]) <= last}
              for run, last in snap["checkpoint"].items()}
    record = check_store(store, cfg, {}, frozen)
    assert record["searches"] == 2 and record["trials"] == 2 and record["continued_from_checkpoint"] >= 1, record
