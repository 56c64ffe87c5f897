"""Parse shared asn1crypto objects completely before threads share them.

asn1crypto parses lazily and without locks: the first access to a child, an extension or a
cached property (``key_identifier``, ``issuer_serial``, …) fills the object in, step by step.
Two threads touching a freshly loaded certificate at once can see it half filled in — a
``KeyError: No field numbered 2 is present in this Extension`` from pyHanko's path builder,
i.e. a 500 for a signature request (seen under ``serve --workers 2`` with 4 concurrent
clients: each worker process's first requests ran the signer check at the same moment on the
same trust roots). Objects that live for the whole process (trust anchors, intermediates, the
signing keys' certificates) are parsed here once, on the thread that loads them; afterwards
every access only reads.
"""

from __future__ import annotations

from collections.abc import Iterable

from asn1crypto import x509


def parse_certificates(certs: Iterable[x509.Certificate]) -> None:
    """Parse every part of each certificate now: all children recursively (``.native``) and
    the values asn1crypto caches on first use (extensions, key identifiers, names, digests).
    Idempotent; a certificate with an undecodable part keeps it lazy (the error surfaces where
    it is used, as before)."""
    for cert in certs:
        try:
            cert.native  # noqa: B018 - parses every child, the extensions' values included
            cert.key_identifier  # noqa: B018 - runs _set_extensions (critical set, values)
            for name in (
                "issuer_serial",
                "authority_issuer_serial",
                "sha1",
                "sha256",
                "self_issued",
                "self_signed",
                "valid_domains",
                "valid_ips",
            ):
                getattr(cert, name)
            cert.subject.hashable  # noqa: B018
            cert.issuer.hashable  # noqa: B018
            cert.public_key.native  # noqa: B018
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
