"""Extract a JSON Schema for RayJob manifests from KubeRay's RayJob CRD.

    python extract_rayjob_schema.py CRD_YAML OUT_JSON [--source TEXT]

CRD_YAML is KubeRay's ray-operator/config/crd/bases/ray.io_rayjobs.yaml (or a subset of it with
the same structure). The script takes the openAPIV3Schema of the served `v1` version, prunes the
Kubernetes internals listed below, drops every `x-kubernetes-*` key (jsonschema ignores them) and
writes the result as JSON. See README.md in this folder for the provenance of the committed JSON.

Pruned (each pod template keeps its metadata and the PodSpec fields in KEEP_POD_SPEC, each
container the fields in KEEP_CONTAINER, each volume only its name): the three PodTemplateSpecs
(head group, worker groups, submitter), the head Service's `status`, and the items of the
NetworkPolicy rule lists under `networkIsolation`/`networkPolicy`. Every RayJob- and
RayCluster-level field is kept. Pruning removes `properties` only, never adds
`additionalProperties: false`, so pruned fields are still accepted, just not checked.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from pathlib import Path

import yaml

KEEP_POD_SPEC = {
    "activeDeadlineSeconds",
    "automountServiceAccountToken",
    "containers",
    "dnsPolicy",
    "enableServiceLinks",
    "restartPolicy",
    "runtimeClassName",
    "schedulerName",
    "serviceAccount",
    "serviceAccountName",
    "terminationGracePeriodSeconds",
    "tolerations",
    "volumes",
}
KEEP_CONTAINER = {
    "args",
    "command",
    "env",
    "envFrom",
    "image",
    "imagePullPolicy",
    "name",
    "ports",
    "resources",
    "volumeMounts",
}
KEEP_VOLUME = {"name"}


def _props(node: dict, *path: str) -> dict | None:
    """Follow `properties` (and `items` for "[]") from node along path; None if absent."""
    for key in path:
        if node is None:
            return None
        node = node.get("items") if key == "[]" else node.get("properties", {}).get(key)
    return node


def _keep(node: dict | None, keep: set[str]) -> None:
    if node is not None and "properties" in node:
        node["properties"] = {k: v for k, v in node["properties"].items() if k in keep}


def prune_pod_template(template: dict | None) -> None:
    spec = _props(template, "spec")
    if spec is None:
        return
    _keep(spec, KEEP_POD_SPEC)
    _keep(_props(spec, "containers", "[]"), KEEP_CONTAINER)
    _keep(_props(spec, "volumes", "[]"), KEEP_VOLUME)
    # The PodSpec requires only `containers`, which is kept; filter anyway so no kept
    # `required` ever names a pruned field.
    if "required" in spec:
        spec["required"] = [r for r in spec["required"] if r in KEEP_POD_SPEC]


def prune(schema: dict) -> dict:
    schema = copy.deepcopy(schema)
    cluster = _props(schema, "spec", "rayClusterSpec")
    prune_pod_template(_props(cluster, "headGroupSpec", "template"))
    prune_pod_template(_props(cluster, "workerGroupSpecs", "[]", "template"))
    prune_pod_template(_props(schema, "spec", "submitterPodTemplate"))
    head_service = _props(cluster, "headGroupSpec", "headService")
    if head_service is not None:
        head_service.get("properties", {}).pop("status", None)
    for field in ("networkIsolation", "networkPolicy"):
        for side in ("head", "worker"):
            for rules in ("egressRules", "ingressRules"):
                items = _props(cluster, field, side, rules, "[]")
                if items is not None:
                    items.pop("properties", None)
                    items.pop("required", None)
    return schema


def strip_x_kubernetes(node):
    if isinstance(node, dict):
        return {k: strip_x_kubernetes(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    if isinstance(node, list):
        return [strip_x_kubernetes(v) for v in node]
    return node


def extract(crd_path: Path, source: str | None) -> dict:
    for doc in yaml.safe_load_all(crd_path.read_text()):
        if not doc or doc.get("kind") != "CustomResourceDefinition":
            continue
        if doc["spec"]["names"]["kind"] != "RayJob":
            continue
        for version in doc["spec"]["versions"]:
            if version["name"] == "v1":
                schema = strip_x_kubernetes(prune(version["schema"]["openAPIV3Schema"]))
                head = {"$schema": "http://json-schema.org/draft-07/schema#"}
                if source:
                    head["$comment"] = source
                return {**head, **schema}
    raise SystemExit(f"{crd_path}: no RayJob CRD with a v1 version")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("crd", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--source", help="provenance text stored as the schema's $comment")
    args = parser.parse_args(argv)
    schema = extract(args.crd, args.source)
    args.out.write_text(json.dumps(schema, indent=1, sort_keys=True) + "\n")
    print(f"wrote {args.out} ({args.out.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
