"""`make test`: the whole suite in two lanes side by side, one pytest session each.

Much of the suite keeps one core busy at a time (a search of one trial, a single-threaded render, a job waiting
for its cluster), so the second core would idle. The `servers` lane holds every test that needs the S3 server or
a Ray cluster started with `ray start` (their ports and clusters belong to one session); the other lane holds the
rest, the fast tier among them. Each lane prints its own report; this exits non-zero when either lane failed.

Usage: python tests/lanes.py [pytest options passed to both lanes]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LANES = {"servers": "servers", "the rest": "not servers"}
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--durations=25"]


def main(extra: list[str]) -> int:
    logs = Path(tempfile.mkdtemp(prefix="painsearch-lanes-"))
    started = time.time()
    procs = {}
    for lane, expr in LANES.items():
        log = open(logs / f"{lane.replace(' ', '-')}.log", "wb")
        procs[lane] = (subprocess.Popen([*PYTEST, "-m", expr, *extra, "tests"], cwd=ROOT, stdout=log,
                                        stderr=subprocess.STDOUT), log)
    print(f"make test: two lanes ({', '.join(LANES)}), their output in {logs} until both end", flush=True)
    codes = {}
    try:
        while len(codes) < len(procs):
            for lane, (proc, _) in procs.items():
                if lane not in codes and proc.poll() is not None:
                    codes[lane] = proc.returncode
                    print(f"make test: lane '{lane}' ended ({_outcome(proc.returncode)}) after "
                          f"{time.time() - started:.0f} s", flush=True)
            time.sleep(2)
    except KeyboardInterrupt:  # pytest tears its fixtures down on SIGINT: each lane stops its own servers
        for proc, _ in procs.values():
            proc.send_signal(2)
        for proc, _ in procs.values():
            proc.wait()
        raise
    for lane, (_, log) in procs.items():
        log.close()
        print(f"\n======== lane '{lane}' (pytest -m \"{LANES[lane]}\") ========", flush=True)
        sys.stdout.write((logs / f"{lane.replace(' ', '-')}.log").read_text(errors="replace"))
    failed = [lane for lane, code in codes.items() if code != 0]
    print(f"\nmake test: {time.time() - started:.0f} s; " +
          (f"lane(s) {', '.join(failed)} failed" if failed else "both lanes passed"), flush=True)
    if not failed:
        for path in logs.iterdir():
            path.unlink()
        logs.rmdir()
    return 1 if failed else 0


def _outcome(code: int) -> str:
    return "passed" if code == 0 else f"exit {code}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
