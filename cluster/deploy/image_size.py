"""The cluster image's size, computed: the base image plus every wheel the Dockerfile installs.

Resolves the Dockerfile's two installs with pip (`--dry-run --report`, nothing installed), looks up each
chosen file's size in the package index, and adds the base image's size as its registry states it. Run
where PyPI and download.pytorch.org are reachable:

    .venv/bin/python cluster/deploy/image_size.py
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
import tomllib
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = Path(__file__).resolve().parent / "Dockerfile"
# the compressed size of the base image's linux/amd64 layers as Docker Hub lists them, by tag (the registry
# itself cannot be asked from here)
BASE_SIZES = {"python:3.11.10-slim-bookworm": 45_500_000}


def dockerfile() -> tuple[str, str, list[str]]:
    """What the Dockerfile pins, read from it (its one home): the base image, and torch's index and CPU wheels."""
    text = DOCKERFILE.read_text()
    base = re.search(r"^FROM (\S+)", text, re.M).group(1)
    torch = re.search(r"pip install --index-url (\S+) ((?:\S+==\S+ ?)+)", text)
    return base, torch.group(1), torch.group(2).split()


def resolve(args: list[str]) -> list[dict]:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
                        "--retries", "1", "--timeout", "15", "--report", str(report), *args], check=True,
                       stderr=subprocess.DEVNULL)
        return json.loads(report.read_text())["install"]


def size_of(url: str) -> int:
    request = urllib.request.Request(url, method="HEAD")
    with urllib.request.urlopen(request, timeout=60) as response:
        return int(response.headers["Content-Length"])


def main() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    base, index, wheels = dockerfile()
    if base not in BASE_SIZES:
        sys.exit(f"The Dockerfile's base image {base} has no size here; add it to BASE_SIZES from Docker Hub's listing.")
    names = {w.split("==")[0] for w in wheels}
    deps = [*project["dependencies"], *project["optional-dependencies"]["gpu"]]
    # everything but torch's own wheels from PyPI (what needs torch gets it from the CPU install before it)
    needs_torch = [d for d in deps if d.split("==")[0] in names or "pytorch" in d]
    files = {item["download_info"]["url"] for item in resolve([d for d in deps if d not in needs_torch])}
    files |= {item["download_info"]["url"] for item in resolve(["--no-deps", *[d for d in needs_torch if d not in wheels]])}
    try:
        files |= {item["download_info"]["url"] for item in resolve(["--index-url", index, *wheels])}
        missing = ""
    except subprocess.CalledProcessError:
        missing = f" + {', '.join(wheels)} and what they need, from {index}, which cannot be reached from here"
    sizes = {url.rsplit("/", 1)[-1]: size_of(url) for url in sorted(files)}
    total = sum(sizes.values()) + BASE_SIZES[base]
    for name, size in sorted(sizes.items(), key=lambda kv: -kv[1])[:12]:
        print(f"{size / 1e6:9.1f} MB  {name}")
    print(f"{len(sizes)} wheels {sum(sizes.values()) / 1e9:.2f} GB + {base} {BASE_SIZES[base] / 1e9:.2f} GB "
          f"= {total / 1e9:.2f} GB to download{missing} (compressed; installed, wheels take about twice that)")


if __name__ == "__main__":
    main()
