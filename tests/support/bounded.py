"""Run one verification (or one limits check) in a child process with hard resource limits.

A regression in the verifier's limits must fail a test, not take the machine down: the child
gets an address-space limit (``RLIMIT_AS``), a CPU-time limit and a wall-clock timeout, and
reports what happened as JSON — outcome, verdict, every reason code in the report, wall and
CPU seconds, and peak resident memory (``ru_maxrss``).

Usage from a test::

    result = run_bounded(path_to_pdf, mode="verify", dev_root=pki.root_cert_path)
    assert result.wall < 10 and result.max_rss_mb < 1024
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass
class BoundedResult:
    outcome: str  # report | exception | limit | malformed | killed | timeout
    wall: float = 0.0
    cpu: float = 0.0
    max_rss_mb: float = 0.0
    verdict: str | None = None
    sub_indication: str | None = None
    codes: list[str] = field(default_factory=list)
    exception: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)


def run_bounded(
    pdf_path: Path,
    *,
    mode: str = "verify",
    dev_root: Path | None = None,
    memory_bytes: int = 2 << 30,
    cpu_seconds: int = 60,
    timeout: float = 90.0,
) -> BoundedResult:
    """Verify (``mode="verify"``, today's ``Verifier.async_verify`` without network fetches)
    or open and check (``mode="limits"``: ``open_reader`` + ``check_structure`` + decoding
    every stream) the PDF at ``pdf_path`` in a child process limited to ``memory_bytes`` of
    address space and ``cpu_seconds`` of CPU, killed after ``timeout`` seconds."""
    command = [sys.executable, "-m", "tests.support.bounded", mode, str(pdf_path)]
    if dev_root is not None:
        command.append(str(dev_root))
    env = {
        **os.environ,
        "BOUNDED_MEMORY": str(memory_bytes),
        "BOUNDED_CPU": str(cpu_seconds),
    }
    try:
        proc = subprocess.run(
            command, cwd=REPO, env=env, capture_output=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        return BoundedResult("timeout", wall=timeout)
    lines = [line for line in proc.stdout.decode().splitlines() if line.startswith("{")]
    if not lines:
        return BoundedResult(
            "killed",
            exception=f"exit {proc.returncode}: {proc.stderr.decode()[-800:]}",
        )
    data = json.loads(lines[-1])
    return BoundedResult(
        outcome=data["outcome"],
        wall=data["wall"],
        cpu=data["cpu"],
        max_rss_mb=data["max_rss_mb"],
        verdict=data.get("verdict"),
        sub_indication=data.get("sub_indication"),
        codes=data.get("codes", []),
        exception=data.get("exception"),
        raw=data,
    )


def report_codes(report: dict[str, Any]) -> list[str]:
    """Every reason code in a report dict: document problems and every signature check."""
    codes = [p["code"] for p in report.get("problems", [])]
    for signature in report.get("signatures", []):
        codes.extend(check["code"] for check in signature.get("checks", {}).values())
        if signature.get("sub_indication"):
            codes.append(signature["sub_indication"])
    if report.get("sub_indication"):
        codes.append(report["sub_indication"])
    return codes


def _child(mode: str, pdf_path: str, dev_root: str | None) -> dict[str, Any]:
    import asyncio
    import resource
    import time

    memory = int(os.environ.get("BOUNDED_MEMORY", str(2 << 30)))
    cpu = int(os.environ.get("BOUNDED_CPU", "60"))
    data = Path(pdf_path).read_bytes()
    verifier = None
    if mode == "verify":
        from signing_service.trust import TrustStore
        from signing_service.verification.validate import Verifier

        trust = TrustStore.load(
            REPO / "certs/trust/anchors.json",
            dev_root=Path(dev_root) if dev_root else None,
            fetch_timeout=2,
        )
        verifier = Verifier(trust, allow_fetching=False)
    else:
        from pyhanko.pdf_utils import generic

        from signing_service.verification import limits
    # ru_maxrss survives exec: a child of a large test process would report the parent's
    # size. Reset the peak (Linux: "5" to clear_refs) and read VmHWM at the end instead.
    _reset_peak_rss()
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 5))
    started, cpu_started = time.perf_counter(), time.process_time()
    result: dict[str, Any] = {}
    try:
        if verifier is not None:
            report = asyncio.run(verifier.async_verify(data)).to_dict()
            result = {
                "outcome": "report",
                "verdict": report["verdict"],
                "sub_indication": report["sub_indication"],
                "codes": report_codes(report),
            }
        else:
            try:
                reader = limits.open_reader(data)
                summary = limits.check_structure(reader)
                # Decode every stream of every revision, as a worst-case consumer would.
                refs: set[generic.Reference] = set()
                for revision in range(reader.xrefs.total_revisions):
                    refs |= set(reader.xrefs.explicit_refs_in_revision(revision))
                for ref in sorted(refs, key=lambda r: (r.idnum, r.generation)):
                    obj = generic.Reference(ref.idnum, ref.generation, reader).get_object()
                    if isinstance(obj, generic.StreamObject):
                        obj.data  # noqa: B018 - decoding is the point
                result = {"outcome": "report", "codes": [], "summary": summary.__dict__}
            except limits.LimitExceeded as exc:
                result = {"outcome": "limit", "codes": [exc.code]}
            except limits.MalformedPdf as exc:
                result = {"outcome": "malformed", "codes": [exc.code]}
            except Exception as exc:
                limit = limits.classify_exception(exc)
                if limit is None:
                    raise
                result = {"outcome": "limit", "codes": [limit.code]}
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        result = {"outcome": "exception", "exception": f"{type(exc).__name__}: {exc}"[:500]}
    result["wall"] = round(time.perf_counter() - started, 3)
    result["cpu"] = round(time.process_time() - cpu_started, 3)
    result["max_rss_mb"] = _peak_rss_mb()
    return result


def _reset_peak_rss() -> None:
    with contextlib.suppress(OSError):
        Path("/proc/self/clear_refs").write_text("5")


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM) in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


if __name__ == "__main__":
    arguments = sys.argv[1:]
    print(
        json.dumps(_child(arguments[0], arguments[1], arguments[2] if len(arguments) > 2 else None))
    )
