"""One driver per study: a lease in the results store (`lease.json`: holder, host, process, heartbeat).

A driver takes the lease when it starts and renews it every `HEARTBEAT_S` while it runs. A second driver
finds it held and is refused in one sentence. A lease whose heartbeat is older than `STALE_S`, or whose
holder's process is gone from this very host, is stale: its driver was killed, and the next one takes
it over. The store has no atomic create, so a taker writes, waits a moment and reads back that it holds it.
Each renewal reads the lease first: a driver whose heartbeats could not reach the store for `STALE_S` (an
outage) and whose lease was taken over meanwhile finds another holder there, and stops instead of renewing,
so that one driver goes on. A renewal gives up after `BEAT_PATIENCE_S`, well inside `STALE_S`.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from typing import Any

from pipelines import retries
from pipelines.errors import PainsearchError
from pipelines.storage import Store
from search.layout import LEASE

HEARTBEAT_S = 10.0
STALE_S = 60.0
SETTLE_S = 1.0
BEAT_PATIENCE_S = STALE_S - 3 * HEARTBEAT_S


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale(lease: dict[str, Any], now: float) -> bool:
    """A lease nobody renews: no heartbeat for `STALE_S`, or its process is gone from this host."""
    if now - float(lease["heartbeat"]) > STALE_S:
        return True
    return lease["host"] == socket.gethostname() and not _alive(int(lease["pid"]))


class Lease:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.holder = uuid.uuid4().hex
        self._stop = threading.Event()
        self._lost = threading.Event()
        self.taken_by: dict[str, Any] | None = None
        self._thread: threading.Thread | None = None

    def _record(self) -> dict[str, Any]:
        return {"holder": self.holder, "host": socket.gethostname(), "pid": os.getpid(), "heartbeat": time.time()}

    def _read(self, patience: float = retries.STORE_PATIENCE_S) -> dict[str, Any] | None:
        if not self.store.exists(LEASE, patience=patience):
            return None
        return json.loads(self.store.read_bytes(LEASE, patience=patience))

    def acquire(self) -> None:
        """Take the lease, or refuse in one sentence while another driver holds it."""
        held = self._read()
        if held and held["holder"] != self.holder and not stale(held, time.time()):
            raise PainsearchError(
                f"The study at {self.store.uri} is being run by another driver (on {held['host']}, process "
                f"{held['pid']}, heartbeat {time.time() - float(held['heartbeat']):.0f} s ago); wait for it to end or "
                f"stop it: a driver whose heartbeat stops for {STALE_S:.0f} s is taken over by the next --resume."
            )
        self.store.write_bytes(json.dumps(self._record()).encode(), LEASE)
        time.sleep(SETTLE_S)  # another driver that read the same stale lease may have written too: the last one wins
        now = self._read()
        if not now or now["holder"] != self.holder:
            raise PainsearchError(
                f"Another driver took the study at {self.store.uri} at the same moment (on {now and now['host']}); "
                f"leave it to that one, or rerun with --resume once it has ended."
            )
        self._thread = threading.Thread(target=self._beat, name="painsearch-lease", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            try:
                held = self._read(BEAT_PATIENCE_S)
                if held and held["holder"] != self.holder:
                    self.taken_by = held
                    self._lost.set()
                    return
                self.store.write_bytes(json.dumps(self._record()).encode(), LEASE, patience=BEAT_PATIENCE_S)
            except PainsearchError:  # the store is away: the next beat tries again
                pass

    def check(self) -> None:
        """Refuse to go on, in one sentence, once another driver has taken the lease over."""
        if self._lost.is_set():
            other = self.taken_by or {}
            raise PainsearchError(
                f"This driver lost the study at {self.store.uri} to another one (on {other.get('host')}, process "
                f"{other.get('pid')}), which took it over while this one could not renew its lease for {STALE_S:.0f} "
                f"s; this driver stops and the other goes on (its searches resume where this one's stopped).")

    def release(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        held = self._read()
        if held and held["holder"] == self.holder:
            self.store.delete(LEASE)

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
