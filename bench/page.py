"""`make bench`, the citizen's page (issue 11): the bytes each page transfers on a first visit,
and the time to answer a 1 MB two-signature upload through the page (``POST /xac-minh``)
against ``POST /v1/verifications`` for the same file, in the same run.

Document: a one-page PDF padded to about 1 MB (incompressible, like a scan) signed twice at B-T
by agency A's seal with the dev PKI's TSA. The dev PKI runs in its own process on loopback; the
service is `signing-service serve` (its verification worker process, SQLite). Both endpoints
verify files of the same making, alternately: *first time*, each file new to the service (a
different one per request); *again*, one file verified again and again after a warm-up (the
service keeps what depends only on the bytes, memo.py, for both alike). The difference is what
the page adds (its form parsing, the plain-Vietnamese view, the template, the kept report for
"Tải báo cáo PDF").

First-visit bytes: the page's HTML plus each stylesheet, script and icon it references, bodies
as transferred (gzip, which the page uses for browsers that accept it) and response headers; the
browser tests measure the same in Chromium (tests/test_web_browser.py).

Targets (issue 11): every page ≤ 60 KB on a first visit; the page's median time ≤ 1.2 × the
API's.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from bench.run import PUBLIC_LIMITS, machine
from bench.servers import BenchServers, write_results
from signing_service.settings import DEV_KEY_PASSPHRASE
from tests.support.pdfs import make_pdf

BEGIN, END = "<!-- page:begin -->", "<!-- page:end -->"
BUDGET = 60 * 1024
TARGET_RATIO = 1.2
ASSET = re.compile(r'(?:href|src)="(/static/[^"]+)"')


def two_signatures(pki_dir: Path, tsa_url: str) -> bytes:
    """About 1 MB, signed twice at B-T by agency A's seal (each call a different file: the
    padding is random)."""
    from signing_service.signing.engine import SignOptions, async_sign_pdf
    from signing_service.signing.keys.pkcs12 import load_pkcs12_file
    from signing_service.signing.levels import SignatureLevel

    key = load_pkcs12_file(pki_dir / "agency-a-seal.p12", DEV_KEY_PASSPHRASE.encode())
    options = SignOptions(level=SignatureLevel.B_T, tsa_url=tsa_url)
    pdf = make_pdf("Quyet dinh so 11/QD-UBND", padding_bytes=1_000_000)
    for _ in range(2):
        pdf = asyncio.run(async_sign_pdf(pdf, key, options))
    return pdf


def _bytes(response: httpx.Response) -> int:
    head = sum(len(k) + len(v) + 4 for k, v in response.headers.raw)
    # Bytes on the wire: the body as sent (gzip when the page compresses it), not decoded.
    return response.num_bytes_downloaded + head + len(b"HTTP/1.1 200 OK\r\n\r\n")


def first_visit(client: httpx.Client, response: httpx.Response) -> int:
    """``response``'s page and every asset it references, in bytes."""
    total = _bytes(response)
    for asset in sorted(set(ASSET.findall(response.text))):
        total += _bytes(client.get(asset))
    return total


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    rounds = 3 if args.quick else 9
    work = Path(tempfile.mkdtemp(prefix="bench-page-"))
    with BenchServers(work) as servers:
        servers.start_pki()
        pdf = two_signatures(work / "pki", servers.tsa_url)
        fresh = [two_signatures(work / "pki", servers.tsa_url) for _ in range(2 * rounds)]
        servers.start_api(PUBLIC_LIMITS)
        files = {"file": ("quyet-dinh.pdf", pdf, "application/pdf")}
        with httpx.Client(base_url=servers.url, timeout=300) as client:
            weights = {"form (`/xac-minh`)": first_visit(client, client.get("/xac-minh"))}
            result = client.post("/xac-minh", files=files)
            if result.status_code != 200 or 'state-label">Hợp lệ<' not in result.text:
                raise RuntimeError(result.text[:2000])
            weights["result of this file"] = first_visit(client, result)
            api = client.post("/v1/verifications", files=files)
            if api.json().get("verdict") != "TOTAL_PASSED":
                raise RuntimeError(api.text[:2000])
            first = _alternate(client, list(zip(fresh[0::2], fresh[1::2], strict=True)))
            again = _alternate(client, [(pdf, pdf)] * rounds)
    text, ok = report(weights, first, again, len(pdf), rounds)
    print(text)
    if not args.no_write:
        write_results(text, BEGIN, END)
    print("targets met" if ok else "TARGETS NOT MET", file=sys.stderr)
    return 0


def _alternate(client: httpx.Client, pairs: list[tuple[bytes, bytes]]) -> dict[str, float]:
    """Median ms per endpoint: for pair i, the page and the API each get one file of it (the
    same one twice, or two different ones), which goes first alternating with i."""
    times: dict[str, list[float]] = {"page": [], "api": []}
    endpoints = [("page", "/xac-minh"), ("api", "/v1/verifications")]
    for i, (one, other) in enumerate(pairs):
        order = endpoints if i % 2 == 0 else endpoints[::-1]
        for (name, path), data in zip(order, (one, other), strict=True):
            started = time.perf_counter()
            answer = client.post(path, files={"file": ("quyet-dinh.pdf", data, "application/pdf")})
            elapsed = time.perf_counter() - started
            valid = (
                'state-label">Hợp lệ<' in answer.text
                if name == "page"
                else answer.json().get("verdict") == "TOTAL_PASSED"
            )
            if answer.status_code != 200 or not valid:
                raise RuntimeError(answer.text[:2000])
            times[name].append(elapsed)
    return {name: statistics.median(t) * 1000 for name, t in times.items()}


def report(
    weights: dict[str, int],
    first: dict[str, float],
    again: dict[str, float],
    size: int,
    rounds: int,
) -> tuple[str, bool]:
    ratios = {k: t["page"] / t["api"] for k, t in (("first", first), ("again", again))}
    ok = all(w <= BUDGET for w in weights.values()) and all(
        r <= TARGET_RATIO for r in ratios.values()
    )
    lines = [
        BEGIN,
        "## The citizen's page: first-visit bytes, page against API (same run)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` on: {machine()}. "
        "`signing-service serve` (its verification worker process, SQLite), the dev PKI on "
        "loopback. First-visit bytes: the page's HTML and every stylesheet, script and icon it "
        "references, bodies as transferred (gzip) and headers. Timing: PDFs of "
        f"{size / 1_000_000:.2f} MB with two B-T signatures, through each endpoint "
        f"alternately; *first time*: {rounds} different files each, new to the service; "
        f"*again*: one file {rounds} times each after a warm-up; medians.\n",
        "| page | first-visit bytes | budget |",
        "|---|---:|---:|",
        *[f"| {name} | {w:,} | {BUDGET:,} |" for name, w in weights.items()],
        "",
        "| 1 MB, 2 signatures | first time, median ms | again, median ms |",
        "|---|---:|---:|",
        f"| `POST /xac-minh` (the page) | {first['page']:.0f} | {again['page']:.0f} |",
        f"| `POST /v1/verifications` (the API) | {first['api']:.0f} | {again['api']:.0f} |",
        f"| page ÷ API (target ≤ {TARGET_RATIO}) | {ratios['first']:.2f} | {ratios['again']:.2f} |",
        "",
        END,
    ]
    return "\n".join(lines), ok


if __name__ == "__main__":
    raise SystemExit(main())
