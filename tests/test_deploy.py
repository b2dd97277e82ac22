"""The deploy files in cluster/deploy, checked against the schemas and tools they are written for; what can be
started here is started in tests/test_cluster.py."""

from __future__ import annotations

import json
import re
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


def test_every_node_starts_with_the_token():
    config = launcher()
    starts = [c for c in config["head_start_ray_commands"] + config["worker_start_ray_commands"] if "ray start" in c]
    assert len(starts) == 2 and all(c.startswith("RAY_AUTH_MODE=token ray start") for c in starts)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # the token `ray start` looks for


def test_the_dashboard_answers_the_ssh_tunnel_on_the_head():
    """`ray dashboard` forwards a local port to the head's 127.0.0.1:8265, and the cluster's workers call the same
    port at the head's private address: the head's own start line must bind both. The address it names is bound
    here as the head binds it, and the tunnel's end connects to 127.0.0.1."""
    import socket

    head = next(c for c in launcher()["head_start_ray_commands"] if "ray start" in c)
    host_expr = re.search(r"--dashboard-host=(\S+(?:\s[^-]\S*)*)", head).group(1)
    host = subprocess.run(["bash", "-c", f"echo {host_expr}"], capture_output=True, text=True, timeout=30).stdout.strip()
    assert host in ("0.0.0.0", "::"), f"the dashboard binds {host}: the SSH tunnel to 127.0.0.1 would be refused"
    with socket.socket() as server:
        server.bind((host, 0))
        server.listen(1)
        with socket.create_connection(("127.0.0.1", server.getsockname()[1]), timeout=5):
            pass  # the tunnel's end reaches it


def docker_run(as_head: bool) -> str:
    from pipelines.ray_compat import launcher_docker_run

    return launcher_docker_run(launcher()["docker"], as_head=as_head, nvidia_runtime=not as_head)


def image_env() -> dict[str, str]:
    """The environment the Dockerfile's ENV lines give every process of the image."""
    text = (DEPLOY / "Dockerfile").read_text().replace("\\\n", " ")
    env: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("ENV "):
            env.update(dict(pair.split("=", 1) for pair in shlex.split(line[4:])))
    return env


def test_gpu_containers_see_their_cards_and_share_a_compute_cache():
    """Ray's launcher adds only `--runtime=nvidia` on a GPU host; NVIDIA's runtime then exposes no card unless the
    container asks (`--gpus`) or its image sets NVIDIA_VISIBLE_DEVICES (python:slim does not). The worker's rendered
    `docker run` line asks, the image lets CUDA compute, every process grows its GPU memory, and CUDA's compute cache
    is a per-node folder."""
    worker, head = shlex.split(docker_run(as_head=False)), shlex.split(docker_run(as_head=True))
    assert worker[:2] == ["docker", "run"] and worker[worker.index("--gpus") + 1] == "all"
    assert "--gpus" not in head  # the head is a CPU instance: `--gpus` would fail its container's start
    env = image_env()
    assert "compute" in env["NVIDIA_DRIVER_CAPABILITIES"].split(",")
    assert "NVIDIA_VISIBLE_DEVICES" not in env  # which cards a container sees is said where it starts
    assert env["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    mounts = [worker[i + 1] for i, a in enumerate(worker) if a == "-v"]
    assert any(m.split(":")[1] == env["CUDA_CACHE_PATH"] for m in mounts), mounts
    assert int(env["CUDA_CACHE_MAXSIZE"]) >= 2**32 - 1  # CUDA's largest: every network's kernels for sm_90
    host = next(m.split(":")[0] for m in mounts if m.split(":")[1] == env["CUDA_CACHE_PATH"])
    init = " ".join(launcher()["available_node_types"]["gpu_worker"]["initialization_commands"])
    assert f"chown 1000:1000 {host}" in init  # the image's user writes it
    # the job environment sets the same, for processes that start outside the image
    from cluster.local import RUNTIME_ENV_VARS

    assert RUNTIME_ENV_VARS["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"
    assert yaml.safe_load(rayjob()["spec"]["runtimeEnvYAML"])["env_vars"]["TF_FORCE_GPU_ALLOW_GROWTH"] == "true"


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


# Parts of the CRD that schemas/README.md says were pruned (properties removed, nothing forbidden): left open
PRUNED = {"template", "submitterPodTemplate", "status"}


def strict(schema: dict, name: str = "") -> dict:
    """The CRD's schema with unknown keys refused, as `kubectl apply --validate=strict` refuses them, except under
    the parts that were pruned from the stored copy (pod templates, status)."""
    if not isinstance(schema, dict) or name in PRUNED:
        return schema
    out = {k: strict(v) if k in ("items", "additionalProperties") else v for k, v in schema.items()}
    if "properties" in schema:
        out["properties"] = {k: strict(v, k) for k, v in schema["properties"].items()}
        out.setdefault("additionalProperties", False)
    return out


def test_rayjob_manifest_validates_against_the_kuberay_crd_and_a_misspelt_key_is_refused():
    schema = strict(json.loads((DEPLOY / "schemas" / "rayjob-crd-openapi.json").read_text()))
    job = rayjob()
    jsonschema.validate(job, schema)
    broken = json.loads(json.dumps(job))
    broken["spec"]["backoffLimit"] = "twice"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)
    for where in (lambda j: j["spec"], lambda j: j["spec"]["rayClusterSpec"]["workerGroupSpecs"][0]):
        misspelt = json.loads(json.dumps(job))
        where(misspelt)["backofLimit"] = 2
        with pytest.raises(jsonschema.ValidationError, match="backofLimit"):
            jsonschema.validate(misspelt, schema)


def pods() -> list[tuple[str, dict]]:
    cluster = rayjob()["spec"]["rayClusterSpec"]
    groups = [cluster["headGroupSpec"], *cluster["workerGroupSpecs"]]
    return [(c["name"], g["template"]["spec"]) for g in groups for c in g["template"]["spec"]["containers"]]


def quantity(value: str) -> float:
    """A Kubernetes quantity in millicores (CPU) or MiB (memory)."""
    units = {"m": 1, "Mi": 1, "Gi": 1024, "Ti": 1024**2}
    for unit, factor in units.items():
        if value.endswith(unit):
            return float(value[: -len(unit)]) * factor
    return float(value) * 1000


def test_every_kuberay_pod_fits_the_node_type_it_selects():
    """A pod that asks for more than its node type's allocatable share stays Pending for good (8 CPUs and 32 GiB
    on a g5.2xlarge); each pod selects one of the node types in node-types.yaml and fits it, DaemonSets included."""
    sys.path.insert(0, str(DEPLOY))
    from node_types import allocatable, known

    assert len(pods()) == 2
    for name, spec in pods():
        node_type = spec["nodeSelector"]["node.kubernetes.io/instance-type"]
        assert node_type in known(), node_type
        room = allocatable(node_type)
        container = next(c for c in spec["containers"] if c["name"] == name)
        requests = container["resources"]["requests"]
        assert quantity(requests["cpu"]) <= room.cpu_m and quantity(requests["memory"]) <= room.memory_mi, (name, room)
        assert int(requests.get("nvidia.com/gpu", 0)) <= room.gpus
        assert container["resources"]["limits"] == requests  # Guaranteed QoS: evicted last
    assert allocatable("g5.2xlarge").cpu_m < 8000  # the whole instance never fits


def test_each_gpu_pod_runs_as_many_paper_trials_as_its_card_takes():
    """KubeRay gives Ray a pod's CPU limit as its CPU count unless told otherwise: a card shared by trials of
    `configs/paper.yaml` must also offer each of them its CPUs, or half the card idles."""
    from search.config import load_study_config

    resources = load_study_config(ROOT / "configs" / "paper.yaml").resources
    for group in rayjob()["spec"]["rayClusterSpec"]["workerGroupSpecs"]:
        container = group["template"]["spec"]["containers"][0]
        gpus = int(container["resources"]["limits"].get("nvidia.com/gpu", 0))
        cpus = float(group["rayStartParams"].get("num-cpus", quantity(container["resources"]["limits"]["cpu"]) / 1000))
        trials = int(gpus / resources.gpus_per_worker) if resources.gpus_per_worker else 0
        assert trials >= 1 and cpus >= trials * resources.cpus_per_worker, (group["groupName"], cpus, trials)


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
    # the S3 keys are a file in every pod, from the Secret, readable by the image's group only; no container has
    # them in its environment (Ray Tune copies AWS variables into every trial's runtime env, which Ray logs)
    for pod, container in zip((cluster["headGroupSpec"]["template"]["spec"], group["template"]["spec"]), containers):
        assert "envFrom" not in container and all("valueFrom" not in e for e in container["env"]), container
        env = {e["name"]: e["value"] for e in container["env"]}
        assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(env)
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "s3-credentials"]
        assert mount["readOnly"] and env["AWS_SHARED_CREDENTIALS_FILE"] == mount["mountPath"] + "/credentials"
        (volume,) = [v for v in pod["volumes"] if v["name"] == "s3-credentials"]
        assert volume["secret"]["defaultMode"] & 0o007 == 0 and pod["securityContext"]["fsGroup"] == 1000
    gpu_pod = group["template"]["spec"]
    cache = next(v for v in gpu_pod["volumes"] if v["name"] == "cuda-cache")["hostPath"]["path"]
    assert cache == "/var/cache/painsearch-cuda"  # shared by every pod on the node, as the launcher's workers share it
    assert {"name": "cuda-cache", "mountPath": image_env()["CUDA_CACHE_PATH"]} in containers[1]["volumeMounts"]
    (owner,) = gpu_pod["initContainers"]  # the host folder is made root's; the image's user must write it
    assert owner["command"] == ["chown", "1000:1000", image_env()["CUDA_CACHE_PATH"]]
    assert owner["securityContext"]["runAsUser"] == 0 and owner["volumeMounts"][0]["name"] == "cuda-cache"
    assert all(":latest" not in c["image"] for c in containers)
    assert yaml.safe_load(spec["runtimeEnvYAML"])["env_vars"]["TF_USE_LEGACY_KERAS"] == "1"
    assert "KubeRay operator >= 1.6" in (DEPLOY / "rayjob.yaml").read_text()
    assert 0 < spec["activeDeadlineSeconds"] <= 24 * 3600  # a runaway job's cost is bounded
    text = (DEPLOY / "rayjob.yaml").read_text()
    assert "painsearch-study-head-svc" not in text and "{.status.rayClusterName}" in text


def test_dockerfile_has_one_cuda_stack_a_dependency_layer_and_passes_hadolint():
    lines = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if not line.startswith("#")]
    text = "\n".join(lines)
    assert "FROM python:3.11" in text and "nvidia/cuda" not in text and ":latest" not in text
    # the CUDA libraries come once, with TensorFlow's wheels from the gpu extra; torch is its CPU build
    gpu = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["gpu"]
    assert any(d.startswith("tensorflow[and-cuda]") for d in gpu) and "['gpu']" in text
    others = text.replace("painsearch:0.1.0-cuda12", "").replace("/cuda-cache", "")  # the image's tag, the kernel cache
    assert "download.pytorch.org/whl/cpu" in text and "cuda" not in others
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
