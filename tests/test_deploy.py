"""The cluster configs in cluster/deploy: valid against what Ray and KubeRay expect, and consistent with the CLI."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import jsonschema
import ray
import yaml

from cluster.cli import build_parser

DEPLOY = Path(__file__).resolve().parent.parent / "cluster" / "deploy"


def test_cluster_launcher_config_validates_against_rays_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((DEPLOY / "aws-gpu.yaml").read_text())
    jsonschema.validate(config, schema)
    assert config["provider"]["type"] == "aws"
    assert any("g5" in t["node_config"]["InstanceType"] for t in config["available_node_types"].values())
    # the job API is never opened to the network: the head binds its dashboard to localhost, with token auth
    assert all("--dashboard-host=127.0.0.1" in c and "RAY_AUTH_MODE=token" in c
               for c in config["head_start_ray_commands"] if "--head" in c)


def test_broken_launcher_config_is_caught_by_the_schema():
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    config = yaml.safe_load((DEPLOY / "aws-gpu.yaml").read_text())
    config["max_workers"] = "eight"
    try:
        jsonschema.validate(config, schema)
    except jsonschema.ValidationError:
        return
    raise AssertionError("the schema accepted a string for max_workers")


def test_rayjob_manifest_runs_the_study_command():
    job = yaml.safe_load((DEPLOY / "rayjob.yaml").read_text())
    assert job["apiVersion"] == "ray.io/v1" and job["kind"] == "RayJob"
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[0] == "painsearch"
    args = build_parser().parse_args(argv[1:])  # the entrypoint is a valid painsearch command line
    assert args.command == "search" and args.resume and args.storage.startswith("s3://")
    assert yaml.safe_load(job["spec"]["runtimeEnvYAML"])["env_vars"]["TF_USE_LEGACY_KERAS"] == "1"
    assert job["spec"]["rayClusterSpec"]["headGroupSpec"]["serviceType"] == "ClusterIP"
    workers = job["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]
    assert workers["resources"]["limits"]["nvidia.com/gpu"] == "1"


def test_dockerfile_installs_every_package_and_the_legacy_keras_switch():
    text = (DEPLOY / "Dockerfile").read_text()
    for pkg in ("pipelines", "search", "analysis", "cluster", "configs"):
        assert f"COPY {pkg} ./{pkg}" in text
    assert "TF_USE_LEGACY_KERAS=1" in text and 'pip install ".[gpu]"' in text
