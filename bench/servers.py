"""What the public-lane benches (bench/load.py, bench/verification.py) share: the dev PKI in a
process of its own, one `signing-service serve` against it, both stopped however the bench
ends; and the replacement of a bench's section of bench/RESULTS.md."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import TracebackType

from bench.run import REPO, wait_http
from tests.support.postgres import free_port


class BenchServers:
    """Processes a bench starts under ``work`` (a temporary directory), stopped on exit:

    ``with BenchServers(work) as servers:`` then :meth:`start_pki` (its TSA at ``tsa_url``,
    keys under ``work/pki``), then, once the bench has made its documents, :meth:`start_api`
    (dev mode, data under ``work/var``, the PKI not served again); the API's base URL is
    ``url`` and its process ``api``."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.pki_port = free_port()
        self.api_port = free_port()
        self.tsa_url = f"http://127.0.0.1:{self.pki_port}/dev/tsa/tsa"
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.api: subprocess.Popen[bytes] | None = None
        self._procs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> BenchServers:
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        for proc in self._procs:
            proc.terminate()
        for proc in self._procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()

    def start_pki(self) -> None:
        """The dev PKI (TSA, OCSP, CRLs) on loopback; returns once it answers."""
        pki = subprocess.Popen(
            [sys.executable, "-m", "bench.pki_server", str(self.work / "pki"), str(self.pki_port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
        )
        self._procs.append(pki)
        assert pki.stdout is not None
        pki.stdout.readline()  # "ready"

    def start_api(self, limits: dict[str, str]) -> subprocess.Popen[bytes]:
        """`signing-service serve` with ``limits`` (settings: every bench client comes from
        127.0.0.1, so the per-client limits are lifted); returns once ``/readyz`` answers."""
        env = {
            **os.environ,
            "SIGNING_SERVICE_DATA_DIR": str(self.work / "var"),
            "SIGNING_SERVICE_DEV_PKI_DIR": str(self.work / "pki"),
            "SIGNING_SERVICE_DEV_PKI_PORT": str(self.pki_port),
            "SIGNING_SERVICE_DEV_PKI_SERVE": "false",
            # Measured rows start right after the server: the verification workers starting
            # in the background (seconds of CPU, once per start) are not the steady state
            # being measured; they start on first use, as before the prewarm existed.
            "SIGNING_SERVICE_VERIFICATION_PREWARM": "false",
            **limits,
        }
        self.api = subprocess.Popen(
            [str(REPO / ".venv/bin/signing-service"), "serve", "--port", str(self.api_port)],
            cwd=REPO,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._procs.append(self.api)
        wait_http(self.url + "/readyz")
        return self.api


def write_results(text: str, begin: str, end: str) -> None:
    """Replace the section between the ``begin`` and ``end`` markers of bench/RESULTS.md with
    ``text`` (which carries the markers), or append it when the file has no such section."""
    results = REPO / "bench/RESULTS.md"
    old = results.read_text() if results.exists() else ""
    if begin in old and end in old:
        new = old[: old.index(begin)] + text + old[old.index(end) + len(end) :]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    results.write_text(new)
