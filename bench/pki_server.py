"""Run the dev PKI (TSA, OCSP, CRLs) in its own process, so that neither side of a benchmark
pays for timestamping on its own cores."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from signing_service.pki.dev import DevPkiServer, init_dev_pki
from signing_service.settings import CERTS_DIR, DEV_KEY_PASSPHRASE

if __name__ == "__main__":
    directory, port = Path(sys.argv[1]), int(sys.argv[2])
    # An optional third argument: another configuration (bench/preservation.py's archive TSA).
    config = Path(sys.argv[3]) if len(sys.argv) > 3 else CERTS_DIR / "dev/certomancer.yml"
    pki = init_dev_pki(
        directory,
        config,
        f"http://127.0.0.1:{port}",
        DEV_KEY_PASSPHRASE.encode(),
    )
    DevPkiServer(pki, "127.0.0.1", port).start()
    print("ready", flush=True)
    while True:
        time.sleep(3600)
