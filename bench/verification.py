"""`make bench`, verification: one PDF with 1, 5, 10 and 25 signatures, this service's verifier
(through the API, and in-process) against plain pyHanko validating each signature, in one run.

Documents: a one-page PDF signed n times at B-T by agency A's seal (RSA-2048) with the dev PKI's
TSA; three different documents per n. The dev PKI (TSA, OCSP, CRLs) runs in its own process on
loopback; the API server is `signing-service serve` (one process, its verification worker
process, SQLite). pyHanko runs in a separate process without anything of this service loaded
(bench/pyhanko_verify.py). Latencies are medians over every document and round.

Targets (issue 8): 25 signatures through the API at least 4 × faster than plain pyHanko on the
same files, and at most 6 × the one-signature time through the API.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.run import PUBLIC_LIMITS, REPO, machine
from bench.servers import BenchServers, write_results
from signing_service.settings import DEV_KEY_PASSPHRASE
from tests.support.pdfs import make_pdf

COUNTS = (1, 5, 10, 25)
BEGIN, END = "<!-- verification:begin -->", "<!-- verification:end -->"


def make_documents(pki_dir: Path, tsa_url: str, per_count: int) -> dict[int, list[bytes]]:
    """``per_count`` different documents for each number of signatures."""
    import asyncio

    from signing_service.signing.engine import SignOptions, async_sign_pdf
    from signing_service.signing.keys.pkcs12 import load_pkcs12_file
    from signing_service.signing.levels import SignatureLevel

    key = load_pkcs12_file(pki_dir / "agency-a-seal.p12", DEV_KEY_PASSPHRASE.encode())
    options = SignOptions(level=SignatureLevel.B_T, tsa_url=tsa_url)
    docs: dict[int, list[bytes]] = {}
    for n in COUNTS:
        docs[n] = []
        for copy in range(per_count):
            pdf = make_pdf(text=f"Quyet dinh so {n}{copy}/QD-UBND")
            for _ in range(n):
                pdf = asyncio.run(async_sign_pdf(pdf, key, options))
            docs[n].append(pdf)
    return docs


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    return run(quick=args.quick, write=not args.no_write)


def run(*, quick: bool = False, write: bool = True) -> int:
    """Measure and print the table; ``write``: also put it into bench/RESULTS.md."""
    rounds = 3 if quick else 7
    per_count = 2 if quick else 3
    work = Path(tempfile.mkdtemp(prefix="bench-verify-"))
    with BenchServers(work) as servers:
        servers.start_pki()
        tsa_url = servers.tsa_url
        docs = make_documents(work / "pki", tsa_url, per_count)
        warmup = work / "warm-up.pdf"
        warmup.write_bytes(make_documents(work / "pki", tsa_url, 1)[1][0])
        files: dict[int, list[Path]] = {}
        for n, items in docs.items():
            files[n] = []
            for i, data in enumerate(items):
                path = work / f"signed-{n}-{i}.pdf"
                path.write_bytes(data)
                files[n].append(path)
        # Every request comes from 127.0.0.1: past the per-client burst they would be 429s.
        servers.start_api(PUBLIC_LIMITS)
        url = servers.url

        # "First time": every measurement on a document the service has not seen before (its
        # per-document results cannot help); "again": the same documents verified again, as
        # a published decision is by every citizen who checks it (memo.py keeps what depends
        # only on the bytes; chains and revocation are judged every time).
        first_ms: dict[int, float] = {}
        again_ms: dict[int, float] = {}
        with httpx.Client(timeout=300) as client:
            warm = client.post(url + "/v1/verifications", files={"file": warmup.open("rb")})
            if warm.json().get("verdict") != "TOTAL_PASSED":
                raise RuntimeError(warm.text[:2000])
            # The counts take turns (document 1 of each count, then document 2, …), so that a
            # change in the machine's load during the run weighs on every count alike: the
            # targets are ratios between counts.
            first_times: dict[int, list[float]] = {n: [] for n in COUNTS}
            for copy in range(per_count):
                for n in COUNTS:
                    data = files[n][copy].read_bytes()
                    started = time.perf_counter()
                    answer = client.post(url + "/v1/verifications", files={"file": ("v.pdf", data)})
                    first_times[n].append(time.perf_counter() - started)
                    if answer.json().get("verdict") != "TOTAL_PASSED":
                        raise RuntimeError(answer.text[:2000])
            for n in COUNTS:
                first_ms[n] = statistics.median(first_times[n]) * 1000
                times = []
                for _ in range(rounds):
                    for path in files[n][:3]:
                        data = path.read_bytes()
                        started = time.perf_counter()
                        answer = client.post(
                            url + "/v1/verifications", files={"file": ("v.pdf", data)}
                        )
                        times.append(time.perf_counter() - started)
                        if answer.status_code != 200:
                            raise RuntimeError(answer.text[:2000])
                again_ms[n] = statistics.median(times) * 1000

        from signing_service._async import run_sync
        from signing_service.trust import TrustStore
        from signing_service.verification.validate import Verifier

        trust = TrustStore.load(
            REPO / "certs/trust/anchors.json", dev_root=work / "pki/root.cert.pem"
        )
        trust.intermediates.append(_load(work / "pki/interm.cert.pem"))
        verifier = Verifier(trust)
        run_sync(verifier.async_verify(warmup.read_bytes()))
        ours_times: dict[int, list[float]] = {n: [] for n in COUNTS}
        for copy in range(per_count):  # first time in this process too; counts take turns
            for n in COUNTS:
                data = files[n][copy].read_bytes()
                started = time.perf_counter()
                run_sync(verifier.async_verify(data))
                ours_times[n].append(time.perf_counter() - started)
        ours_ms = {n: statistics.median(ours_times[n]) * 1000 for n in COUNTS}

        baseline = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.pyhanko_verify",
                str(max(2, rounds // 2)),
                str(work / "pki/root.cert.pem"),
                str(work / "pki/interm.cert.pem"),
                *[str(p) for n in COUNTS for p in files[n][:3]],
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        measured = json.loads(baseline.stdout)
        plain_ms = {
            n: statistics.median(t for p in files[n][:3] for t in measured[str(p)]) * 1000
            for n in COUNTS
        }
        sizes = {n: len(docs[n][0]) // 1024 for n in COUNTS}
        text, ok = report(first_ms, again_ms, ours_ms, plain_ms, sizes, rounds, per_count)
        print(text)
        if write:
            write_results(text, BEGIN, END)
        print("targets met" if ok else "TARGETS NOT MET", file=sys.stderr)
        return 0


def _load(path: Path):  # type: ignore[no-untyped-def]
    from signing_service.trust import load_certs

    return load_certs(path)[0]


def report(
    first_ms: dict[int, float],
    again_ms: dict[int, float],
    ours_ms: dict[int, float],
    plain_ms: dict[int, float],
    sizes: dict[int, int],
    rounds: int,
    per_count: int,
) -> tuple[str, bool]:
    ratios = {
        "first": (plain_ms[25] / first_ms[25], first_ms[25] / first_ms[1]),
        "again": (plain_ms[25] / again_ms[25], again_ms[25] / again_ms[1]),
    }
    ok = all(vs >= 4 and scale <= 6 for vs, scale in ratios.values())
    lines = [
        BEGIN,
        "## Verification: one PDF with 1–25 signatures (same run)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` on: {machine()}. "
        f"A one-page PDF signed n times at B-T (agency A's RSA-2048 seal, the dev TSA); "
        f"{per_count} different documents per n. The API is `signing-service serve` (its "
        "verification worker process, SQLite; anonymous verifications are counted, not "
        "audited one by one). *First time*: each document is "
        "new to the service (median over the documents). *Again*: three of them verified "
        f"again, {rounds} rounds (the service keeps what depends only on the bytes; chains and "
        "revocation are judged every time). Plain pyHanko validates each signature with one "
        "validation context per file, in a process of its own (bench/pyhanko_verify.py), on "
        "the same three files. OCSP/CRL from the dev PKI on loopback, cached within their "
        "validity by the service.\n",
        "| signatures | file KB | API, first time ms | API, again ms | verifier in-process, "
        "first time ms | plain pyHanko ms |",
        "|---|---|---|---|---|---|",
    ]
    for n in COUNTS:
        lines.append(
            f"| {n} | {sizes[n]} | {first_ms[n]:.0f} | {again_ms[n]:.0f} | {ours_ms[n]:.0f} | "
            f"{plain_ms[n]:.0f} |"
        )
    lines += [
        "",
        "| ratio (25 signatures) | first time | again | target |",
        "|---|---|---|---|",
        f"| plain pyHanko ÷ API | {ratios['first'][0]:.1f} | {ratios['again'][0]:.1f} | ≥ 4 |",
        f"| API 25 signatures ÷ API 1 signature | {ratios['first'][1]:.1f} | "
        f"{ratios['again'][1]:.1f} | ≤ 6 |",
        "",
        END,
    ]
    return "\n".join(lines) + "\n", ok


if __name__ == "__main__":
    sys.exit(main())
