"""Plain pyHanko validation of every signature of PDFs, as a baseline (`make bench`).

Runs in its own process so that nothing of this service is loaded into it (in particular not
its faster hex-string reader): pyHanko 0.38 as shipped. "Plain" means what the library offers
for the job used well: one reader per file, one validation context per file (trust roots, the
chain-building certificates, revocation fetched online from the loopback PKI), and
``validate_pdf_signature`` with pyHanko's default difference policy for each signature
(``validate_pdf_timestamp`` for document timestamps).

Usage: ``python -m bench.pyhanko_verify ROUNDS ROOT.pem INTERMEDIATE.pem FILE...``; prints one
JSON object: file → list of seconds per round.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from io import BytesIO
from pathlib import Path

from pyhanko.keys import load_cert_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature, async_validate_pdf_timestamp
from pyhanko_certvalidator import ValidationContext


async def validate(data: bytes, root: object, interm: object) -> None:
    reader = PdfFileReader(BytesIO(data))
    vc = ValidationContext(
        trust_roots=[root], other_certs=[interm], allow_fetching=True, revocation_mode="require"
    )
    for sig in reader.embedded_signatures:
        if sig.sig_object_type == "/DocTimeStamp":
            await async_validate_pdf_timestamp(sig, validation_context=vc)
        else:
            status = await async_validate_pdf_signature(
                sig, signer_validation_context=vc, ts_validation_context=vc
            )
            if not status.bottom_line:
                raise RuntimeError(f"baseline did not validate: {status.summary()}")


def main() -> None:
    logging.disable(logging.CRITICAL)
    rounds = int(sys.argv[1])
    root = load_cert_from_pemder(sys.argv[2])
    interm = load_cert_from_pemder(sys.argv[3])
    out: dict[str, list[float]] = {}
    for name in sys.argv[4:]:
        data = Path(name).read_bytes()
        asyncio.run(validate(data, root, interm))  # warm-up (imports, first fetch)
        times = []
        for _ in range(rounds):
            started = time.perf_counter()
            asyncio.run(validate(data, root, interm))
            times.append(time.perf_counter() - started)
        out[name] = times
    print(json.dumps(out))


if __name__ == "__main__":
    main()
