"""The cluster image's size, computed: the base image plus every wheel the Dockerfile installs.

Resolves the Dockerfile's two installs with pip (`--dry-run --report`, nothing installed), looks up each
chosen file's size in the package index, and adds the base image's size as its registry states it. Run
where PyPI and download.pytorch.org are reachable:

    .venv/bin/python cluster/deploy/image_size.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
# python:3.11.10-slim-bookworm, linux/amd64, as Docker Hub lists it (compressed layers)
BASE_IMAGE = ("python:3.11.10-slim-bookworm", 45_500_000)
TORCH_CPU = ("https://download.pytorch.org/whl/cpu", ["torch==2.14.1", "torchvision==0.29.1"])


def resolve(args: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--report", str(report), *args], check=True)
        return json.loads(report.read_text())["install"]


def size_of(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.headers["Content-Length"])


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    torch = resolve(["--index-url", TORCH_CPU[0], *TORCH_CPU[1]])
    rest = resolve([*project["dependencies"], *project["optional-dependencies"]["gpu"], *TORCH_CPU[1],
                    "--extra-index-url", TORCH_CPU[0]])
    files = {item["download_info"]["url"] for item in torch + rest if "torch" not in item["metadata"]["name"]
             or item in torch}
    sizes = {url.rsplit("/", 1)[-1]: size_of(url) for url in sorted(files)}
    total = sum(sizes.values()) + BASE_IMAGE[1]
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{size / 1e6:9.1f} MB  {name}")
    print(f"{len(sizes)} wheels {sum(sizes.values()) / 1e9:.2f} GB + {BASE_IMAGE[0]} {BASE_IMAGE[1] / 1e9:.2f} GB "
          f"= {total / 1e9:.2f} GB to download (compressed; installed, wheels take about twice that)")


if __name__ == "__main__":
    main()
