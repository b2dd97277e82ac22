"""Shared fixtures: the tiny phantom, prepared shards, one local Ray cluster, one SeaweedFS server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import functools
import http.server
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.pop("PAINSEARCH_SUBJECT_KEY", None)
os.environ.pop("RAY_ADDRESS", None)

import cluster.local  # noqa: E402,F401  (before Ray is imported: the test cluster listens on 127.0.0.1)
from pipelines.bootstrap import torch_first  # noqa: E402

torch_first()  # this process detects faces and trains
from pipelines.config import prepare_config  # noqa: E402

from seaweed import KEY as S3_KEY, SECRET as S3_SECRET, free_port  # noqa: E402,F401  (free_port: for the tests)
# A test that uses one of these needs a Ray cluster, an S3 server or real training: the whole suite
# (`make test`) runs it, the fast tier (`make check`, `-m "not slow"`) does not.
STANDIN_SEED = 20241  # stand-in ImageNet weights: network i of the registry draws with STANDIN_SEED + i
SLOW_FIXTURES = {"ray_local", "ray_head", "seaweed", "s3_env", "smoke_study", "smoke_report", "learn_shards", "arrays",
                 "paper_mini", "paper_mini_report", "refit_study"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def tiny_phantom(tmp_path_factory) -> Path:
    from pipelines.phantom.synth import synth

    out = tmp_path_factory.mktemp("phantom") / "tiny"
    synth(out, scale="tiny", seed=0)
    return out


def tiny_prepare_config(root: Path, out: str, **overrides):
    from pipelines.phantom.synth import sources

    data = {"sources": sources(root), "out": out, "frames_per_subject_class": 4, "engine": "local",
            "chunk_size": 16, "preprocess": {"size": 32, "background": "grabcut"}}
    data.update(overrides)
    return prepare_config(data)


@pytest.fixture(scope="session")
def tiny_shards(tiny_phantom, tmp_path_factory) -> Path:
    from pipelines.shards.prepare import prepare

    out = tmp_path_factory.mktemp("shards") / "tiny"
    prepare(tiny_prepare_config(tiny_phantom, str(out)), log=lambda m: None)
    return out


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray cluster (2 CPUs, 127.0.0.1 only) shared by every test that needs Ray."""
    import ray

    from cluster.local import ensure_ray

    # the node's own credentials for the test S3 server, as a cluster node has them (env or instance role):
    # nothing painsearch sends to a worker carries them
    for k, v in {"AWS_ACCESS_KEY_ID": S3_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET}.items():
        os.environ.setdefault(k, v)
    ensure_ray(num_cpus=2)
    yield
    ray.shutdown()


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory):
    """A real S3 server: SeaweedFS `weed mini` on 127.0.0.1, started here and stopped by its pid."""
    from seaweed import Seaweed

    server = Seaweed(tmp_path_factory.mktemp("seaweed"), {"master": 19333, "volume": 18080, "filer": 18888, "s3": 18333})
    server.start()
    yield {"endpoint": server.endpoint, "key": S3_KEY, "secret": S3_SECRET, "client": server.client(), "server": server}
    server.stop()


@pytest.fixture
def s3_env(seaweed, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweed["endpoint"])
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", seaweed["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", seaweed["secret"])
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    return seaweed


@pytest.fixture(scope="session")
def standin_weights(tmp_path_factory) -> Path:
    """A weights folder as `painsearch models fetch-weights` fills it, for every pretrained network of the registry:
    Keras's own architecture with seeded random weights, saved under the file name Keras publishes (the real files
    cannot be fetched here); the same draw every run, so what trains on them is repeatable."""
    from pipelines.models.weights import write_standins

    return write_standins(tmp_path_factory.mktemp("imagenet-standins"), seed=STANDIN_SEED)


@pytest.fixture
def weights_mirror(tmp_path):
    """A local HTTP mirror holding real (randomly initialised) VGG16 no-top weights."""
    import tf_keras as keras

    from pipelines.models import get_spec

    root = tmp_path / "mirror"
    target = root / get_spec("vgg16").weights_file
    target.parent.mkdir(parents=True)
    source = keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3))
    source.save_weights(str(target))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    import hashlib

    yield f"http://127.0.0.1:{server.server_address[1]}/", source.get_weights(), hashlib.md5(target.read_bytes()).hexdigest()
    server.shutdown()


ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "configs" / "smoke.yaml"


VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="session")
def ray_head():
    """`ray start --head` on 127.0.0.1 with token auth: a cluster of its own, stopped by its process ids afterwards."""
    import secrets
    import tempfile

    from pipelines.ray_compat import node_env

    # the job API runs whatever reaches it: this cluster takes only requests that carry its own token
    # the nodes' own S3 credentials (as an instance role gives them): no job or runtime env carries them
    env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}", "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
           "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32), "AWS_ACCESS_KEY_ID": S3_KEY,
           "AWS_SECRET_ACCESS_KEY": S3_SECRET, **node_env()}  # Ray's settings for a node painsearch starts
    env.pop("RAY_ADDRESS", None)
    temp = Path(tempfile.mkdtemp(prefix="rh-", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    # every port its own: the session's in-process Ray already holds Ray's default agent ports
    port, dash, agent, grpc, metrics, runtime_env, client = (free_port() for _ in range(7))
    cmd = [str(VENV_BIN / "ray"), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
           "--dashboard-host=127.0.0.1", f"--dashboard-port={dash}", f"--dashboard-agent-listen-port={agent}",
           f"--dashboard-agent-grpc-port={grpc}", f"--metrics-export-port={metrics}",
           f"--runtime-env-agent-port={runtime_env}", f"--ray-client-server-port={client}",
           "--num-cpus=2", "--disable-usage-stats", f"--temp-dir={temp}", "--include-dashboard=true"]
    # a session of its own: every process of the cluster shares its process group, whatever it names
    started = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180, start_new_session=True)
    assert started.returncode == 0, started.stdout + started.stderr
    yield {"address": f"http://127.0.0.1:{dash}", "env": env}

    stop_processes_naming(temp)
    shutil.rmtree(temp, ignore_errors=True)


def stop_processes_naming(temp: Path) -> None:
    """Stop exactly the processes of a cluster these tests started: those whose command line names its temp dir,
    the rest of their process groups (a `ray start` runs in a session of its own; its client server's arguments
    do not name the dir), and their descendants (the dashboard agent renames itself). By process id."""
    def table() -> dict[int, tuple[int, int, str]]:
        # -ww: full command lines (ps cuts them to the terminal's width otherwise, and the temp dir is far in)
        out = subprocess.run(["ps", "-ww", "-eo", "pid=,ppid=,pgid=,args="], capture_output=True, text=True).stdout
        rows = [line.split(None, 3) for line in out.splitlines()]
        return {int(r[0]): (int(r[1]), int(r[2]), r[3] if len(r) > 3 else "") for r in rows if len(r) >= 3}

    procs = table()
    ours = {pid for pid, (_, _, args) in procs.items() if str(temp) in args and "ps -ww" not in args}
    groups = {procs[pid][1] for pid in ours} - {os.getpgrp()}  # never this test session's own group
    ours |= {pid for pid, (_, pgid, _) in procs.items() if pgid in groups}
    grew = True
    while grew:
        children = {pid for pid, (ppid, _, _) in procs.items() if ppid in ours} - ours
        ours |= children
        grew = bool(children)
    ours.discard(os.getpid())
    for sig in (signal.SIGTERM, signal.SIGKILL, signal.SIGKILL, signal.SIGKILL):
        for pid in sorted(ours & set(table())):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        time.sleep(2)
        if not ours & set(table()):
            break


def copy_checkout(dest: Path) -> Path:
    """A copy of the repository's tracked files, as a clone would hold them."""
    tracked = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    for rel in tracked:
        if (ROOT / rel).is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / rel, dest / rel)
    return dest


def s3_vars(seaweed) -> dict[str, str]:
    return seaweed["server"].env()


@pytest.fixture(scope="session")
def smoke_study(tiny_shards, ray_head, seaweed):
    """The whole smoke study (configs/smoke.yaml: 2 networks x 3 scenarios x 2 folds x 2 trials, 1 epoch, 32 px)
    submitted with the real `ray job submit` to the `ray start --head` cluster on 127.0.0.1, results on S3
    (SeaweedFS). The session keeps the S3 settings, so the tests can read the store."""
    from search.config import load_study_config

    uri = "s3://painsearch/smoke-study"
    env = {**ray_head["env"], **s3_vars(seaweed)}
    runtime_env = {"env_vars": {"AWS_ENDPOINT_URL": seaweed["endpoint"]}}  # where the store is, not who may use it
    cmd = [str(VENV_BIN / "ray"), "job", "submit", "--address", ray_head["address"], "--working-dir", str(ROOT),
           "--runtime-env-json", json.dumps(runtime_env), "--",
           "painsearch", "search", "run", "--config", "configs/smoke.yaml", "--storage", uri, "--set", f"shards={tiny_shards}"]
    t0 = time.time()
    deadline = time.time() + 120
    while True:  # the head's job agent needs a few seconds after `ray start` returns
        job = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500, cwd=ROOT)
        if job.returncode == 0 or "No available agent" not in job.stderr + job.stdout or time.time() > deadline:
            break
        time.sleep(3)
    assert job.returncode == 0, job.stdout[-4000:] + job.stderr[-4000:]
    mp = pytest.MonkeyPatch()
    for k, v in s3_vars(seaweed).items():
        mp.setenv(k, v)
    yield {"uri": uri, "seconds": time.time() - t0, "job_output": job.stdout, "runtime_env": runtime_env,
           "cfg": load_study_config(SMOKE, {"shards": str(tiny_shards), "storage": uri})}
    mp.undo()
