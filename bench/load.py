"""`make bench`, public load: does anonymous verification slow an agency's signing down?

One `signing-service serve` process (its default lanes: signing threads, the verification worker
process), the dev PKI in its own process. Measured, in the same run:

- the latency of signing a one-page PDF (B-B, agency A's seal, one client, sequential requests)
  with nothing else running (each phase lasts ``--seconds`` at least, so that the p95 rests
  on many signatures);
- the same while 16 anonymous clients verify a 25-signature PDF in a loop (each a separate
  connection, as separate citizens would be);
- the server's resident memory (all its processes), sampled every 50 ms throughout.

All 16 clients come from 127.0.0.1, so the per-client limits are raised for the bench
(SIGNING_SERVICE_PUBLIC_RATE_PER_MINUTE, SIGNING_SERVICE_PUBLIC_RATE_BURST,
SIGNING_SERVICE_MAX_ANONYMOUS_REQUESTS): it measures the lanes, not the rate limiter. The
verification lane keeps its defaults (worker processes, queue bound): when its queue is full
it answers 503 VERIFICATION_BUSY, and a client then waits its Retry-After, at most
BUSY_BACKOFF_SECONDS (an impatient client, so the queue stays full). The answers to the
anonymous clients during the measured window are counted and printed.

Targets (issue 9): p95 with the anonymous load ≤ 1.5 × p95 alone; server RSS < 500 MB.
`--quick`: fewer signatures and shorter phases, for development (noisier).
"""

from __future__ import annotations

import argparse
import http.client
import shutil
import statistics
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.run import PUBLIC_LIMITS, machine, multipart
from bench.servers import BenchServers, write_results
from bench.verification import make_documents
from tests.support.pdfs import make_pdf

BEGIN, END = "<!-- load:begin -->", "<!-- load:end -->"
ANONYMOUS_CLIENTS = 16
# A refused anonymous client retries after min(Retry-After, this), in seconds.
BUSY_BACKOFF_SECONDS = 1.0
# The server settings the bench overrides (settings.py): every anonymous client is 127.0.0.1.
BENCH_LIMITS = PUBLIC_LIMITS
assert int(BENCH_LIMITS["SIGNING_SERVICE_MAX_ANONYMOUS_REQUESTS"]) >= ANONYMOUS_CLIENTS


def tree_rss_mb(pid: int) -> dict[int, float]:
    """Resident memory (MB) of a process and of each of its descendants, by process id."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    sizes: dict[int, float] = {}
    stack = [pid]
    while stack:
        current = stack.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes[current] = int(line.split()[1]) / 1024
        except OSError:
            continue
        stack.extend(children.get(current, []))
    return sizes


class Sampler(threading.Thread):
    """Samples the server's RSS every 50 ms: the peak of the total, and each process's peak
    (the API process is ``pid``; the others are its verification workers)."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0.0
        self.peaks: dict[int, float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.sample()
            time.sleep(0.05)

    def sample(self) -> float:
        sizes = tree_rss_mb(self.pid)
        for pid, size in sizes.items():
            self.peaks[pid] = max(self.peaks.get(pid, 0.0), size)
        total = sum(sizes.values())
        self.peak = max(self.peak, total)
        return total

    def breakdown(self) -> str:
        """'API process N MB, <role> N MB, …': each process's own peak."""
        parts = [f"API process {self.peaks.get(self.pid, 0.0):.0f} MB"]
        for pid, size in self.peaks.items():
            if pid != self.pid:
                parts.append(f"{process_role(pid)} {size:.0f} MB")
        return ", ".join(parts)


def process_role(pid: int) -> str:
    """A short name for one of the server's child processes (multiprocessing's helpers or a
    worker), from its command line; 'exited' when it is gone. A process forked by the fork
    server inherits its command line: it is told apart by its parent."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        parent = Path(f"/proc/{ppid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, IndexError, ValueError):
        return "exited process"
    if "forkserver" in parent:
        return "verification worker"
    for marker, role in (
        ("resource_tracker", "multiprocessing resource tracker"),
        ("forkserver", "multiprocessing fork server"),
        ("spawn_main", "worker process"),
    ):
        if marker in cmdline:
            return role
    return "worker process"


def sign_latencies(url: str, key: str, pdf: bytes, n: int, min_seconds: float = 0) -> list[float]:
    """Latencies (seconds) of sequential one-page B-B signatures: ``n`` of them, and more until
    ``min_seconds`` have passed."""
    host, port = url.removeprefix("http://").split(":")
    body, ctype = multipart({"profile": "agency-a-seal", "level": "B-B"}, "qd.pdf", pdf)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": ctype}
    conn = http.client.HTTPConnection(host, int(port), timeout=300)
    times: list[float] = []
    deadline = time.perf_counter() + min_seconds
    try:
        while len(times) < n or time.perf_counter() < deadline:
            started = time.perf_counter()
            conn.request("POST", "/v1/signatures", body=body, headers=headers)
            response = conn.getresponse()
            payload = response.read()
            times.append(time.perf_counter() - started)
            if response.status != 201:
                raise RuntimeError(payload.decode(errors="replace")[:500])
    finally:
        conn.close()
    return times


def anonymous_load(
    url: str, pdf: bytes, stop: threading.Event, counts: dict[int, int], lock: threading.Lock
) -> None:
    """ANONYMOUS_CLIENTS clients verifying ``pdf`` in a loop until ``stop``; ``counts`` (guarded
    by ``lock``): answers by HTTP status."""
    host, port = url.removeprefix("http://").split(":")
    body, ctype = multipart({}, "v.pdf", pdf)

    def client() -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=300)
        try:
            while not stop.is_set():
                conn.request(
                    "POST", "/v1/verifications", body=body, headers={"Content-Type": ctype}
                )
                response = conn.getresponse()
                response.read()
                with lock:
                    counts[response.status] = counts.get(response.status, 0) + 1
                if response.status in (429, 503):
                    retry_after = float(response.getheader("Retry-After") or 1)
                    stop.wait(min(retry_after, BUSY_BACKOFF_SECONDS))
        except OSError:
            return
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(ANONYMOUS_CLIENTS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))] * 1000


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer signatures, shorter phases")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    parser.add_argument(
        "--seconds",
        type=float,
        default=None,
        help="each phase at least this long (default 30, 8 with --quick)",
    )
    args = parser.parse_args()
    n = 30 if args.quick else 100
    min_seconds = args.seconds if args.seconds is not None else (8.0 if args.quick else 30.0)
    work = Path(tempfile.mkdtemp(prefix="bench-load-"))
    try:
        with BenchServers(work) as servers:
            servers.start_pki()
            heavy = make_documents(work / "pki", servers.tsa_url, 1)[25][0]
            # The bench's 16 clients all come from 127.0.0.1: measure the lanes, not the limiter.
            api = servers.start_api(BENCH_LIMITS)
            url = servers.url
            import json

            credentials = json.loads((work / "var/dev-credentials.json").read_text())
            key = credentials["agencies"][0]["api_key"]
            pdf = make_pdf()
            sampler = Sampler(api.pid)
            sampler.start()
            sign_latencies(url, key, pdf, 5)  # warm-up
            started_mb = sampler.sample()
            alone = sign_latencies(url, key, pdf, n, min_seconds)
            alone_mb = sampler.sample()
            stop = threading.Event()
            counts: dict[int, int] = {}
            counts_lock = threading.Lock()
            load = threading.Thread(
                target=anonymous_load, args=(url, heavy, stop, counts, counts_lock)
            )
            load.start()
            time.sleep(3)  # the anonymous clients are running and the queue is full
            with counts_lock:
                before = dict(counts)
            started = time.perf_counter()
            loaded = sign_latencies(url, key, pdf, n, min_seconds)
            window = time.perf_counter() - started
            with counts_lock:
                during = {status: count - before.get(status, 0) for status, count in counts.items()}
            stop.set()
            load.join(120)
            sampler.stop.set()
            sampler.join()
            rss = (started_mb, alone_mb, sampler.sample(), sampler.breakdown())
        text, ok = report(alone, loaded, sampler.peak, during, window, rss)
        print(text)
        if not args.no_write:
            write_results(text, BEGIN, END)
        print("targets met" if ok else "TARGETS NOT MET", file=sys.stderr)
        return 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(
    alone: list[float],
    loaded: list[float],
    peak_mb: float,
    counts: dict[int, int],
    window: float,
    rss: tuple[float, float, float, str],
) -> tuple[str, bool]:
    """The RESULTS.md section. ``counts``: answers to the anonymous clients by HTTP status while
    the loaded signatures were measured (``window`` seconds). The load counts only if some
    verifications succeeded in that window. ``rss``: total MB after the warm-up, after signing
    alone, at the end; each process's peak (text)."""
    ratio = p95(loaded) / p95(alone)
    verified = counts.get(200, 0)
    ok = ratio <= 1.5 and peak_mb < 500 and verified > 0
    answered = ", ".join(f"{status}: {count}" for status, count in sorted(counts.items()))
    lines = [
        BEGIN,
        "## Signing while anonymous clients verify (same run)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` on: {machine()}. "
        "One `signing-service serve` process with its default lanes (signing threads, one "
        f"verification worker process, queue bound); {len(alone)} sequential one-page B-B "
        f"signatures by one agency client alone, then {len(loaded)} over {window:.0f} s while "
        f"{ANONYMOUS_CLIENTS} anonymous clients verify a 25-signature PDF in a loop. Answers "
        f"to the anonymous clients in that window, by HTTP status: {answered or 'none'} "
        f"(503: the verification queue is full; the client retries after at most "
        f"{BUSY_BACKOFF_SECONDS:.0f} s). The per-client rate "
        "limit and the anonymous-request bound are raised for the bench, since every client "
        "is 127.0.0.1 (" + ", ".join(f"{k}={v}" for k, v in BENCH_LIMITS.items()) + "). "
        "Server RSS: all its processes, sampled every 50 ms.\n",
        "| | p50 ms | p95 ms |",
        "|---|---|---|",
        f"| signing alone | {statistics.median(alone) * 1000:.0f} | {p95(alone):.0f} |",
        f"| signing with {ANONYMOUS_CLIENTS} anonymous clients verifying | "
        f"{statistics.median(loaded) * 1000:.0f} | {p95(loaded):.0f} |",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| p95 with anonymous load ÷ p95 alone | {ratio:.2f} | ≤ 1.5 |",
        f"| server peak RSS (all processes) | {peak_mb:.0f} MB (total after the warm-up "
        f"{rss[0]:.0f} MB, after signing alone {rss[1]:.0f} MB, at the end {rss[2]:.0f} MB; "
        f"each process's peak: {rss[3]}) | < 500 MB |",
        f"| anonymous verifications answered 200 while signing was measured | {verified} "
        f"({verified / window:.1f}/s) | > 0 (the load was there) |",
        "",
        END,
    ]
    return "\n".join(lines) + "\n", ok


if __name__ == "__main__":
    sys.exit(main())
