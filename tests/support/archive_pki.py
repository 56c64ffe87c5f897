"""The dev PKI with a short-lived first TSA and a long-lived archive TSA, for preservation
(tests/test_preservation.py, bench/preservation.py).

The shipped dev configuration (certs/dev/certomancer.yml) with two changes: its TSA's
certificate ends on 2029-01-01 (the TSA that signs), and a second TSA, ``tsa-archive``, has a
certificate until 2045 (the operator's preservation TSA, served at ``/dev/tsa/tsa-archive``).
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from pathlib import Path

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from signing_service.settings import CERTS_DIR

FIRST_TSA_END = datetime(2029, 1, 1, tzinfo=UTC)
ARCHIVE_TSA_END = datetime(2045, 1, 1, tzinfo=UTC)
ARCHIVE_KEY = "tsa-archive"


def archive_config(directory: Path) -> Path:
    """Write the configuration into ``directory`` and return its path."""
    spec = yaml.safe_load((CERTS_DIR / "dev/certomancer.yml").read_text(encoding="utf-8"))
    arch = spec["pki-architectures"]["dev"]
    spec["keysets"]["dev"]["keys"][ARCHIVE_KEY] = {"path": f"{ARCHIVE_KEY}.key.pem"}
    arch["entities"][ARCHIVE_KEY] = {"common-name": "Dev Archive Time Stamping Authority"}
    certs = arch["certs"]
    certs["tsa"]["validity"]["valid-to"] = FIRST_TSA_END.strftime("%Y-%m-%dT%H:%M:%S+0000")
    archive = copy.deepcopy(certs["tsa"])
    archive["subject"] = ARCHIVE_KEY
    archive["subject-key"] = ARCHIVE_KEY
    archive["validity"] = {
        "valid-from": "2025-01-01T00:00:00+0000",
        "valid-to": ARCHIVE_TSA_END.strftime("%Y-%m-%dT%H:%M:%S+0000"),
    }
    certs[ARCHIVE_KEY] = archive
    arch["services"]["time-stamping"][ARCHIVE_KEY] = {
        "signing-key": ARCHIVE_KEY,
        "signing-cert": ARCHIVE_KEY,
    }
    path = directory / "certomancer-archive.yml"
    # Order matters: a certificate template must come before its users.
    path.write_text(yaml.safe_dump(spec, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


def archive_key(pki_dir: Path) -> None:
    """The archive TSA's key, which ``init_dev_pki`` does not know to generate."""
    keys = pki_dir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    path = keys / f"{ARCHIVE_KEY}.key.pem"
    if path.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


def archive_tsa_url(url_prefix: str) -> str:
    return f"{url_prefix}/dev/tsa/{ARCHIVE_KEY}"
