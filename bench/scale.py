"""`make bench`, scale-out: throughput through nginx with one API replica and with two
(issue 13, item 3), on the deployment of tests/support/cluster.py (PostgreSQL, MinIO in
distributed mode behind nginx, the dev PKI in its own process).

For each layout, after a warm-up, for ``--seconds`` each:

- signing: ``CLIENTS`` concurrent clients sign one-page PDFs at B-T (the level a province
  issues at; the TSA is the dev PKI's) with ``result_code=auto`` on the dossier;
- dossiers: each client files whole dossiers: one ~2 MB attachment (``Idempotency-Key``), then
  two signatures (B-T) with the dossier's result codes: the issue's "1–3 signatures, ~2 MB of
  attachments".

Reported: completed operations per second (wall), latency p50/p95, and the CPU seconds used by
each part of the stack (the API replicas, PostgreSQL, MinIO, nginx, the TSA), from /proc, so
that the per-core rates do not depend on how busy the machine was. On a 2-core machine two
replicas cannot double the throughput: both share the same two cores with PostgreSQL, MinIO,
nginx, the TSA and the clients; the per-core figures are the ones to size with (README,
"Sizing"). Writes the ``scale`` section of bench/RESULTS.md. ``--quick``: shorter phases.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import statistics
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.run import machine
from bench.servers import write_results
from tests.support.cluster import Cluster
from tests.support.minio_server import find_binary
from tests.support.pdfs import make_pdf

BEGIN, END = "<!-- scale:begin -->", "<!-- scale:end -->"
CLIENTS = 8
ATTACHMENT_BYTES = 2 * 1024 * 1024
TICK = os.sysconf("SC_CLK_TCK")


def _children() -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.setdefault(ppid, []).append(int(entry.name))
    return out


def tree_cpu_seconds(pids: list[int]) -> float:
    """User + system CPU seconds of ``pids`` and all their live descendants (and the children
    they have reaped)."""
    children = _children()
    total = 0.0
    seen: set[int] = set()
    stack = list(pids)
    while stack:
        pid = stack.pop()
        if pid in seen:
            continue
        seen.add(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime (proc(5) fields 14-17; 12-15 after the name).
        total += sum(int(f) for f in fields[11:15]) / TICK
        stack.extend(children.get(pid, []))
    return total


def parts(cluster: Cluster) -> dict[str, list[int]]:
    """The process ids of each part of the stack."""
    pg_pid = int((cluster.postgres.data / "postmaster.pid").read_text().split()[0])
    return {
        "API replicas": [r.proc.pid for r in cluster.replicas if r.proc is not None],
        "PostgreSQL": [pg_pid],
        "MinIO (4 nodes)": [p.pid for p in cluster.minio.procs if p is not None],
        "nginx": [cluster.nginx.proc.pid] if cluster.nginx and cluster.nginx.proc else [],
        "TSA (dev PKI)": [cluster.pki_proc.pid] if cluster.pki_proc else [],
    }


def cpu_by_part(cluster: Cluster) -> dict[str, float]:
    return {name: tree_cpu_seconds(pids) for name, pids in parts(cluster).items()}


class Phase:
    """``CLIENTS`` threads running ``op(client, i)`` (returns the number of operations it
    completed) for ``seconds``; latencies of each call."""

    def __init__(self, op: Callable[[httpx.Client, int], int], seconds: float) -> None:
        self.op = op
        self.seconds = seconds
        self.latencies: list[float] = []
        self.done = 0
        self.errors: dict[int, int] = {}
        self.lock = threading.Lock()

    def run(self, url: str) -> float:
        deadline = time.monotonic() + self.seconds

        def client_loop(n: int) -> None:
            with httpx.Client(base_url=url, timeout=300) as client:
                i = n * 1_000_000
                while time.monotonic() < deadline:
                    started = time.perf_counter()
                    try:
                        done = self.op(client, i)
                    except StatusError as e:
                        with self.lock:
                            self.errors[e.status] = self.errors.get(e.status, 0) + 1
                        continue
                    with self.lock:
                        self.latencies.append(time.perf_counter() - started)
                        self.done += done
                    i += 1

        started = time.monotonic()
        threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return time.monotonic() - started


class StatusError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


def check(r: httpx.Response, *ok: int) -> httpx.Response:
    if r.status_code not in ok:
        raise StatusError(r.status_code)
    return r


def measure(replicas: int, seconds: float, binary: Path) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    with Cluster(binary, replicas=replicas) as cluster:
        creds = cluster.credentials
        agency = creds["agencies"][0]  # type: ignore[index]
        auth = {"Authorization": f"Bearer {agency['api_key']}"}
        day = time.strftime("%y%m%d")
        pdf_pool = [make_pdf(f"Quyet dinh {n}") for n in range(32)]
        attachment = make_pdf("Ho so", padding_bytes=ATTACHMENT_BYTES)

        def sign(client: httpx.Client, i: int, dossier: str | None = None) -> int:
            fields = {"profile": "agency-a-seal", "level": "B-T"}
            if dossier:
                fields |= {"dossier_code": dossier, "result_code": "auto"}
            r = client.post(
                "/v1/signatures",
                headers=auth,
                data=fields,
                files={"file": ("qd.pdf", random.choice(pdf_pool), "application/pdf")},
            )
            check(r, 201)
            return 1

        def dossier(client: httpx.Client, i: int) -> int:
            code = f"{agency['code']}-{day}-{(i % 9000) + 1000:04d}"
            r = client.post(
                f"/v1/dossiers/{code}/attachments",
                headers={**auth, "Idempotency-Key": f"bench-{i}-{random.getrandbits(32):x}"},
                data={"component": "application"},
                files={"file": ("don.pdf", attachment, "application/pdf")},
            )
            check(r, 200, 201)
            assert r.json()["sha256"] == hashlib.sha256(attachment).hexdigest()
            sign(client, i, code)
            sign(client, i, code)
            return 1

        Phase(sign, 3).run(cluster.url)  # warm-up: connections, caches, JIT of the pools
        for name, op, unit in (
            ("signing, B-T, one-page PDF", sign, "signatures"),
            ("dossier: one 2 MB attachment + 2 signatures B-T", dossier, "dossiers"),
        ):
            before = cpu_by_part(cluster)
            phase = Phase(op, seconds)
            wall = phase.run(cluster.url)
            after = cpu_by_part(cluster)
            cpu = {k: after[k] - before[k] for k in after}
            lat = sorted(phase.latencies)
            rows.append(
                {
                    "replicas": replicas,
                    "what": name,
                    "unit": unit,
                    "rate": phase.done / wall,
                    "p50": statistics.median(lat) if lat else float("nan"),
                    "p95": lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
                    "cpu": cpu,
                    "per_api_cpu": phase.done / cpu["API replicas"],
                    "per_stack_cpu": phase.done / sum(cpu.values()),
                    "errors": dict(phase.errors),
                }
            )
            print(rows[-1], flush=True)
    return rows


def render(rows: list[dict[str, object]], seconds: float) -> str:
    load = os.getloadavg()
    out = [
        BEGIN,
        "## Scale-out: one and two API replicas behind nginx",
        "",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.scale` on: "
        f"{machine()}; load average before the run {load[0]:.1f} (other work shares these "
        "cores: the wall rates are noisy, the per-CPU-second rates much less so).",
        "",
        "Layout (tests/support/cluster.py): nginx on loopback balancing the replicas "
        "(`signing-service serve`, 1 worker process each, production-like settings on the "
        "dev PKI) and the 4 MinIO nodes (distributed mode, one erasure set, EC 2+2), one "
        "PostgreSQL (fsync off: the test server), the TSA in its own process. "
        f"{CLIENTS} concurrent clients, {seconds:.0f} s a phase after a warm-up. CPU from /proc "
        "(user + system of each part's processes).",
        "",
        "| replicas | load | completed/s (wall) | p50 s | p95 s | per API CPU-second | "
        "per stack CPU-second | CPU s: API / PostgreSQL / MinIO / nginx / TSA | refused |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        cpu = r["cpu"]
        assert isinstance(cpu, dict)
        out.append(
            f"| {r['replicas']} | {r['what']} | {r['rate']:.1f} {r['unit']} | {r['p50']:.2f} | "
            f"{r['p95']:.2f} | {r['per_api_cpu']:.1f} | {r['per_stack_cpu']:.1f} | "
            + " / ".join(f"{v:.1f}" for v in cpu.values())
            + f" | {r['errors'] or 'none'} |"
        )
    by = {(r["replicas"], r["unit"]): r for r in rows}
    out.append("")
    for unit in ("signatures", "dossiers"):
        one, two = by.get((1, unit)), by.get((2, unit))
        if one and two:
            out.append(
                f"- {unit}: two replicas ÷ one, wall {two['rate'] / one['rate']:.2f} ×; "  # type: ignore[operator]
                f"per API CPU-second {two['per_api_cpu'] / one['per_api_cpu']:.2f} ×."  # type: ignore[operator]
            )
    out += [
        "",
        "Two replicas on 2 cores cannot go twice as fast: the machine, not the service, is "
        "the limit (the whole stack and the clients share the two cores), so the wall rates "
        "stay where one replica left them. What two replicas must not do is refuse, lose or "
        "slow down work because they share the database, the counters and the object store: "
        "the refused column and p95 say whether they did. The per API CPU-second rate with "
        "two replicas is the one to size with (two Python processes time-sharing two cores "
        "with the rest of the stack is the worse case); the README's sizing model uses it.",
        END,
    ]
    return "\n".join(out) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    seconds = 8 if args.quick else args.seconds
    binary = find_binary()
    if binary is None:
        raise SystemExit("MinIO binary not found (make minio; SIGNING_SERVICE_MINIO_BIN)")
    rows = measure(1, seconds, binary) + measure(2, seconds, binary)
    text = render(rows, seconds)
    print(text)
    write_results(text, BEGIN, END)


if __name__ == "__main__":
    main()
