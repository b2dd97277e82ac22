"""The deploy files in cluster/deploy, checked against the schemas and tools they are written for; what can be
started here is started in tests/test_cluster.py."""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml

from cluster.cli import build_parser

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "cluster" / "deploy"


def launcher() -> dict:
    return yaml.safe_load((DEPLOY / "aws-gpu.yaml").read_text())


def test_cluster_launcher_config_validates_against_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = launcher()
    jsonschema.validate(config, schema)
    broken = {**config, "max_workers": "eight"}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    assert config["provider"]["type"] == "aws"
    assert any("g5" in t["node_config"]["InstanceType"] for t in config["available_node_types"].values())


def test_every_node_starts_with_the_token_and_a_private_dashboard():
    config = launcher()
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ray start") for c in starts)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the token `ray start` looks for
    head = next(c for c in starts if "--head" in c)
    assert "--dashboard-host=$(hostname -I" in head  # the private address: reachable in the cluster, not from outside
    assert "127.0.0.1" not in head and "0.0.0.0" not in head


def test_the_head_may_launch_workers_and_workers_only_reach_s3():
    config = launcher()
    profiles = {name: t["node_config"]["IamInstanceProfile"]["Arn"] for name, t in config["available_node_types"].items()}
    assert profiles["head"].endswith("painsearch-head") and profiles["gpu_worker"].endswith("painsearch-worker")
    head = json.loads((DEPLOY / "iam-head-policy.json").read_text())
    worker = json.loads((DEPLOY / "iam-worker-policy.json").read_text())
    head_actions = {a for s in head["Statement"] for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])}
    worker_actions = {a for s in worker["Statement"] for a in s["Action"]}
    assert {"ec2:RunInstances", "ec2:TerminateInstances", "iam:PassRole", "s3:PutObject"} <= head_actions
    assert worker_actions == {"s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    passrole = next(s for s in head["Statement"] if s["Action"] == "iam:PassRole")
    assert passrole["Resource"].endswith("role/painsearch-worker")


def rayjob() -> dict:
    return yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())


def test_rayjob_manifest_validates_against_the_kuberay_crd():
    schema = json.loads((DEPLOY / "schemas" / "rayjob-crd-openapi.json").read_text())
    job = rayjob()
    jsonschema.validate(job, schema)
    broken = json.loads(json.dumps(job))
    broken["spec"]["backoffLimit"] = "twice"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_rayjob_manifest_runs_the_study_with_a_token_and_cost_aware_lifetimes():
    job = rayjob()
    spec = job["spec"]
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    argv = shlex.split(spec["entrypoint"])
    args = build_parser().parse_args(argv[1:])  # the entrypoint is a valid painsearch command line
    assert argv[0] == "painsearch" and args.command == "search" and args.resume and args.storage.startswith("s3://")
    cluster = spec["rayClusterSpec"]
    assert cluster["authOptions"]["mode"] == "token"
    assert spec["ttlSecondsAfterFinished"] <= 600 and spec["shutdownAfterJobFinishes"] is True
    assert cluster["enableInTreeAutoscaling"] is True
    group = cluster["workerGroupSpecs"][0]
    assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1
    containers = [cluster["headGroupSpec"]["template"]["spec"]["containers"][0],
                  group["template"]["spec"]["containers"][0]]
    assert containers[1]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert all(not any(e.get("name", "").startswith("AWS_SECRET") for e in c.get("env", [])) for c in containers)
    assert all(":latest" not in c["image"] for c in containers)
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["TF_USE_LEGACY_KERAS"] == "1"
    assert "KubeRay operator >= 1.6" in (DEPLOY / "rayjob.yaml").read_text()


def test_dockerfile_has_one_cuda_stack_a_dependency_layer_and_passes_hadolint():
    lines = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if not line.startswith("#")]
    text = "\n".join(lines)
    assert "FROM python:3.11" in text and "nvidia/cuda" not in text and ":latest" not in text
    # the CUDA libraries come once, with TensorFlow's wheels from the gpu extra; torch is its CPU build
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert any(d.startswith("tensorflow[and-cuda]") for d in gpu) and "['gpu']" in text
    assert "download.pytorch.org/whl/cpu" in text and "cuda" not in text.replace("painsearch:0.1.0-cuda12", "")
    sys.path.insert(0, str(DEPLOY))
    from image_size import BASE_SIZES, dockerfile

    base, _, wheels = dockerfile()  # the CPU wheels are the very versions the project pins
    assert base in BASE_SIZES and set(wheels) <= set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    first_code = min(i for i, line in enumerate(lines) if line.startswith("COPY pipelines"))
    deps = min(i for i, line in enumerate(lines) if "pip install -r" in line)
    assert deps < first_code  # a code change does not rebuild the dependencies
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    lint = subprocess.run([hadolint, str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=120)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert {".git", ".venv", "results", "phantom", "report", "*.parquet"} <= set(ignored)


def test_a_job_upload_carries_code_and_configs_only(tmp_path):
    """Ray's own packaging of a checkout that holds what the README's quick start writes (phantom/, results/,
    report/, and more): those stay behind, and the package is small."""
    from ray._private.runtime_env.packaging import create_package

    from conftest import copy_checkout

    checkout = copy_checkout(tmp_path / "checkout")
    for folder in ("phantom/unbc", "results/searches", "report/figures", "shards", "demo-out", "smoke-out"):
        (checkout / folder).mkdir(parents=True, exist_ok=True)
        (checkout / folder / "big.bin").write_bytes(b"\0" * 2_000_000)
    (checkout / "phantom" / "prepare_report.json").write_text("{}")
    (checkout / "phantom" / "x.parquet").write_bytes(b"\0" * 10)
    package = tmp_path / "package.zip"
    create_package(str(checkout), package, include_gitignore=True)  # what `ray job submit --working-dir` does
    import zipfile

    names = zipfile.ZipFile(package).namelist()
    assert any(n.endswith("pipelines/bootstrap.py") for n in names) and any(n.endswith("configs/paper.yaml") for n in names)
    leaked = [n for n in names if n.split("/")[0] in ("phantom", "results", "report", "shards", "demo-out", "smoke-out")
              or n.endswith((".parquet", "prepare_report.json"))]
    assert not leaked, leaked
    assert package.stat().st_size < 5_000_000
