"""A real MinIO server on loopback for the tests: four drives (erasure-coded), temporary data.

The binary is built from MinIO's Go module (see the Makefile's ``minio`` target) and cached
outside the repository; ``SIGNING_SERVICE_MINIO_BIN`` points elsewhere if needed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import urllib3

from tests.support.postgres import free_port

CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "signing-service"


def find_binary() -> Path | None:
    explicit = os.environ.get("SIGNING_SERVICE_MINIO_BIN")
    for candidate in (explicit, CACHE / "minio" / "minio", shutil.which("minio")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


class MinioServer:
    def __init__(self, binary: Path) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="minio-"))
        self.port = free_port()
        self.access_key = "test-" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> MinioServer:
        drives = [str(self.root / f"d{i}") for i in range(4)]
        for drive in drives:
            Path(drive).mkdir(exist_ok=True)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            # Lets MinIO use drives on the root filesystem (temporary test directories).
            "MINIO_CI_CD": "1",
        }
        self.proc = subprocess.Popen(
            [
                str(self.binary),
                "server",
                "--address",
                self.endpoint,
                "--console-address",
                f"127.0.0.1:{free_port()}",
                *drives,
            ],
            env=env,
            stdout=(self.root / "log").open("ab"),
            stderr=subprocess.STDOUT,
        )
        http = urllib3.PoolManager()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if (
                    http.request(
                        "GET",
                        # "cluster" answers 200 once the erasure set has write quorum.
                        f"http://{self.endpoint}/minio/health/cluster",
                        timeout=1,
                        retries=False,
                    ).status
                    == 200
                ):
                    return self
            except urllib3.exceptions.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError("MinIO did not start")

    def url(self, bucket: str) -> str:
        return f"s3://{self.access_key}:{self.secret_key}@{self.endpoint}/{bucket}?secure=false"

    def halt(self) -> None:
        """Stop the server and keep its data: :meth:`start` brings it back on the same port."""
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
            self.proc = None

    def stop(self) -> None:
        self.halt()
        shutil.rmtree(self.root, ignore_errors=True)
