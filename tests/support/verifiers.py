"""Verifiers over the session's dev PKI, as the verifier tests need them."""

from __future__ import annotations

from pathlib import Path

from signing_service.pki.dev import DevPki
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier

REPO = Path(__file__).resolve().parents[2]


def dev_verifier(pki: DevPki, *, fetching: bool, intermediate: bool = False) -> Verifier:
    """A verifier whose anchors are the pinned ones and ``pki``'s root (3 s fetch timeout).

    ``fetching``: OCSP/CRL answers fetched from the dev PKI's server (else only what the
    document carries counts); ``intermediate``: the dev intermediate offered for chain
    building, as the service adds it in development."""
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )
    if intermediate:
        trust.intermediates.append(pki.cert("interm"))
    return Verifier(trust, allow_fetching=fetching)
