"""Trust anchors with pinned fingerprints, and validation contexts built from them.

Roots are pinned by SHA-256 in ``certs/trust/anchors.json``; intermediates are chain-building
material only, never anchors. The development root is added only in development mode.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from asn1crypto import pem, x509

if TYPE_CHECKING:
    from pyhanko_certvalidator import ValidationContext


class TrustStoreError(Exception):
    pass


def fingerprint(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.dump()).hexdigest().upper()


def load_certs(path: Path) -> list[x509.Certificate]:
    """Certificates from a PEM (one or more) or DER file."""
    data = path.read_bytes()
    if pem.detect(data):
        return [x509.Certificate.load(der) for _, _, der in pem.unarmor(data, multiple=True)]
    return [x509.Certificate.load(data)]


@dataclass(frozen=True)
class Anchor:
    cert: x509.Certificate
    source: str
    dev: bool = False


@dataclass
class TrustStore:
    anchors: list[Anchor] = field(default_factory=list)
    intermediates: list[x509.Certificate] = field(default_factory=list)
    fetch_timeout: float = 5.0

    @property
    def roots(self) -> list[x509.Certificate]:
        return [a.cert for a in self.anchors]

    @property
    def has_dev_root(self) -> bool:
        return any(a.dev for a in self.anchors)

    def is_anchor(self, cert: x509.Certificate) -> bool:
        fp = fingerprint(cert)
        return any(fingerprint(a.cert) == fp for a in self.anchors)

    @classmethod
    def load(
        cls,
        manifest: Path,
        extra: list[Path] | None = None,
        dev_root: Path | None = None,
        fetch_timeout: float = 5.0,
    ) -> TrustStore:
        store = cls(fetch_timeout=fetch_timeout)
        try:
            spec = json.loads(manifest.read_text())
        except (OSError, ValueError) as e:
            raise TrustStoreError(f"cannot read trust manifest {manifest}: {e}") from e
        for entry in spec["anchors"]:
            path = manifest.parent / entry["file"]
            certs = list(load_certs(path))
            if len(certs) != 1:
                raise TrustStoreError(f"{path}: expected exactly one certificate")
            cert = certs[0]
            actual = fingerprint(cert)
            if actual != entry["sha256"].replace(":", "").upper():
                raise TrustStoreError(
                    f"{path}: SHA-256 {actual} differs from the pinned {entry['sha256']}"
                )
            if entry["role"] == "root":
                store.anchors.append(Anchor(cert, f"pinned:{entry['file']}"))
            else:
                store.intermediates.append(cert)
        for path in extra or []:
            for cert in load_certs(path):
                store.anchors.append(Anchor(cert, f"configured:{path}"))
        if dev_root is not None:
            for cert in load_certs(dev_root):
                store.anchors.append(Anchor(cert, "development", dev=True))
        return store

    def validation_context(
        self,
        *,
        other_certs: list[x509.Certificate] | tuple[x509.Certificate, ...] = (),
        moment: datetime | None = None,
        allow_fetching: bool = True,
        revocation_mode: str = "soft-fail",
        crls: list[bytes] | None = None,
        ocsps: list[bytes] | None = None,
    ) -> ValidationContext:
        # pyHanko's validation machinery is imported when a context is first needed.
        from pyhanko_certvalidator import ValidationContext
        from pyhanko_certvalidator.fetchers.api import FetchLimits
        from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend

        # Issuer certificates are never chased through AIA caIssuers URLs: those URLs come from
        # the (untrusted, attacker-supplied) signed document, so following them would let anyone
        # make the service fetch arbitrary addresses. Revocation sources are only consulted for
        # certificates on a path that already chains to an anchor.
        backend = RequestsFetcherBackend(
            per_request_timeout=self.fetch_timeout,
            limits=FetchLimits(max_requests=20, max_cert_requests=0),
        )
        return ValidationContext(
            trust_roots=self.roots,
            other_certs=[*self.intermediates, *other_certs],
            moment=moment,
            allow_fetching=allow_fetching,
            revocation_mode=revocation_mode,
            fetcher_backend=backend,
            crls=crls or (),
            ocsps=ocsps or (),
        )
