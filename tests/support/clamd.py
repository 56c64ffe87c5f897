"""A real clamd for the tests, with a signature database the tests write themselves: the EICAR
test signature (the public database cannot be downloaded here)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

# The EICAR anti-virus test file (harmless by design, detected by every scanner).
EICAR = b"X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*"


def find_clamd() -> str | None:
    return shutil.which("clamd") or (
        "/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None
    )


class Clamd:
    def __init__(self, binary: str) -> None:
        self.binary = binary
        self.root = Path(tempfile.mkdtemp(prefix="clamd-"))
        self.socket = str(self.root / "clamd.sock")
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Clamd:
        db = self.root / "db"
        db.mkdir()
        (db / "eicar.ndb").write_text(f"Eicar-Test-Signature:0:*:{EICAR.hex()}\n")
        conf = self.root / "clamd.conf"
        user = "User root\n" if os.geteuid() == 0 else ""
        conf.write_text(
            f"LocalSocket {self.socket}\nDatabaseDirectory {db}\nForeground yes\n"
            f"LogFile {self.root / 'clamd.log'}\nStreamMaxLength 60M\n{user}"
        )
        self.proc = subprocess.Popen(
            [self.binary, f"--config-file={conf}"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if Path(self.socket).exists():
                return self
            if self.proc.poll() is not None:
                raise RuntimeError("clamd exited: " + (self.root / "clamd.log").read_text())
            time.sleep(0.1)
        raise RuntimeError("clamd did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(30)
        shutil.rmtree(self.root, ignore_errors=True)
