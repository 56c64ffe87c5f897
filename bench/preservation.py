"""`make bench`, preservation (issue 12): renewals per second of stored B-LTA documents against
B-LTA signatures per second, same run, same service.

N documents (default 1,000, distinct bytes) are signed at B-LTA and stored by the service
(``sign_document``: agency A's seal, the first TSA); that phase gives the signing rate. Then
``preservation run`` renews them all in-process (``run_inline``: the plan with its first look
at each document, then per document the verification, the newest timestamp's validation data,
a new document timestamp from the archive TSA and the new version); that phase gives the
renewal rate. The dev PKI with the archive TSA (tests/support/archive_pki.py) runs in its own
process on loopback; SQLite and the file store under a temporary directory. The documents are
due because the horizon is set past the first TSA certificate's end (1,000 days) and before
the archive TSA's: no clock is moved.

Target (issue 12): renewal rate ÷ signing rate ≥ 0.8 (a renewal does less work than a
signature).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.run import machine
from bench.servers import write_results
from tests.support.archive_pki import archive_config, archive_key, archive_tsa_url
from tests.support.pdfs import make_pdf

BEGIN, END = "<!-- preservation:begin -->", "<!-- preservation:end -->"
TARGET = 0.8
PKI_PORT = 18391


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--documents", type=int, default=1000)
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()

    from sqlalchemy import select

    from signing_service import errors
    from signing_service.services import preservation
    from signing_service.services.container import Services
    from signing_service.services.signing import sign_document
    from signing_service.settings import Settings
    from signing_service.store.models import Agency

    with tempfile.TemporaryDirectory(prefix="bench-preservation-") as tmp:
        work = Path(tmp)
        config = archive_config(work)
        archive_key(work / "pki")
        prefix = f"http://127.0.0.1:{PKI_PORT}"
        pki = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "bench.pki_server",
                str(work / "pki"),
                str(PKI_PORT),
                str(config),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert pki.stdout is not None and pki.stdout.readline().strip() == "ready"
            settings = Settings(
                mode="development",
                data_dir=work / "var",
                dev_pki_dir=work / "pki",
                dev_pki_port=PKI_PORT,
                dev_pki_config=config,
                tsas={"archive": archive_tsa_url(prefix)},
                default_tsa="dev",
                preservation_tsa="archive",
                preservation_horizon_days=1000,
                fetch_timeout_seconds=20.0,
            )
            sign_retries = 0
            services = Services.build(settings)
            try:
                with services.db.transaction() as session:
                    agency = session.scalars(
                        select(Agency).where(Agency.code == "000.00.12.H12")
                    ).one()
                pdfs = [make_pdf(f"Quyet dinh so {i}/QD-UBND") for i in range(args.documents)]
                # One warm-up signature (key loading, first connections), not counted.
                sign_document(
                    services,
                    agency,
                    profile_name="agency-a-seal",
                    pdf=make_pdf("warm-up"),
                    level="B-LTA",
                    actor="bench",
                )
                started = time.perf_counter()
                for i, pdf in enumerate(pdfs):
                    # A loaded machine can time out one revocation fetch: try once more (the
                    # time stays counted), and say how often it happened.
                    for attempt in (1, 2):
                        try:
                            sign_document(
                                services,
                                agency,
                                profile_name="agency-a-seal",
                                pdf=pdf,
                                level="B-LTA",
                                actor="bench",
                            )
                            break
                        except errors.ServiceError as e:
                            sign_retries += 1
                            print(f"signing {i} attempt {attempt}: {e.code}", file=sys.stderr)
                            if attempt == 2:
                                raise
                    if i % 100 == 99:
                        print(f"signed {i + 1}", file=sys.stderr, flush=True)
                signing_seconds = time.perf_counter() - started
                started = time.perf_counter()
                summary = preservation.run_inline(services)
                renewal_seconds = time.perf_counter() - started
            finally:
                services.close()
        finally:
            pki.terminate()
            pki.wait(timeout=30)

    renewed = summary.count("renewed")
    # The warm-up document is due too and renewed in the same run.
    expected = args.documents + 1
    signing_rate = args.documents / signing_seconds
    renewal_rate = renewed / renewal_seconds
    ratio = renewal_rate / signing_rate
    ok = renewed == expected and ratio >= TARGET
    lines = [
        BEGIN,
        "## Preservation: renewals of stored B-LTA documents against B-LTA signing (same run)",
        "",
        f"{datetime.now(UTC):%Y-%m-%d}, {machine()}. `python -m bench.preservation "
        f"--documents {args.documents}`: {args.documents} documents signed at B-LTA and stored "
        "by the service (agency A's seal, file key, SQLite, file store), then "
        "`preservation run` in-process renewing every one (plan, verification, validation data "
        "of the newest timestamp, a new document timestamp from the archive TSA, the new "
        "version). Dev PKI in its own process on loopback.",
        "",
        "| phase | documents | seconds | per second |",
        "|---|---|---|---|",
        f"| sign and store at B-LTA | {args.documents} | {signing_seconds:.1f} | "
        f"{signing_rate:.2f} |",
        f"| renew (`preservation run`) | {renewed} of {expected} | {renewal_seconds:.1f} | "
        f"{renewal_rate:.2f} |",
        "",
        f"Renewal rate ÷ B-LTA signing rate: **{ratio:.2f}** (target ≥ {TARGET}); "
        f"failed {summary.count('failed')}, skipped {summary.count('skipped')}; signatures "
        f"tried again after a failure: {sign_retries}.",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        write_results(section + "\n", BEGIN, END)
    print("targets met" if ok else "TARGETS MISSED", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
