"""What a pod may request on each node type of `node-types.yaml`: EKS's reservations taken off the machine's size.

EKS's node bootstrap reserves for the kubelet and the system (kube-reserved) CPU by a sliding share of the cores
(6 % of the first, 1 % of the second, 0.5 % of the next two, 0.25 % of the rest) and 255 MiB plus 11 MiB per
pod the node may run, and evicts pods below 100 MiB free. The memory the kernel reports is below the nominal
size (firmware, the kernel, the NVIDIA driver's reservation on GPU types): 5 % is taken off for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
EVICTION_MI = 100
KERNEL_SHARE = 0.05


@dataclass(frozen=True)
class Allocatable:
    cpu_m: int
    memory_mi: int
    gpus: int


def _reserved_cpu_m(vcpus: int) -> float:
    shares = [60.0, 10.0, 5.0, 5.0]  # millicores reserved for the first, second, third and fourth core
    return sum(shares[:vcpus]) + max(0, vcpus - 4) * 2.5


def allocatable(name: str) -> Allocatable:
    """What pods may request on a node of type `name`, less the DaemonSets' headroom."""
    data = yaml.safe_load((HERE / "node-types.yaml").read_text())
    node, headroom = data["node_types"][name], data["daemonset_headroom"]
    memory = node["memory_gib"] * 1024 * (1 - KERNEL_SHARE) - (255 + 11 * node["max_pods"]) - EVICTION_MI
    cpu = node["vcpus"] * 1000 - _reserved_cpu_m(node["vcpus"])
    return Allocatable(int(cpu - headroom["cpu_m"]), int(memory - headroom["memory_mi"]), int(node["gpus"]))


def known() -> list[str]:
    return list(yaml.safe_load((HERE / "node-types.yaml").read_text())["node_types"])
