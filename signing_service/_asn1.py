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
from asn1crypto.core import (
    Any,
    Asn1Value,
    Choice,
    ParsableOctetBitString,
    ParsableOctetString,
    Sequence,
    SequenceOf,
    Set,
    SetOf,
)


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


def parse_completely(value: Asn1Value) -> None:
    """Parse every part of ``value`` now, so that threads sharing it afterwards only read it.

    For revocation answers kept in the process-wide cache
    (:mod:`signing_service.verification.revinfo_cache`): a CRL or OCSP response fetched by
    one request is handed to every concurrent request until its nextUpdate, and
    pyhanko-certvalidator reads it through asn1crypto's lazy parsing (children built on first
    access, extension values set by ``_set_extensions``) — the same race as
    :func:`parse_certificates` fixes for trust anchors. This walks the whole tree once:
    every constructed value's children, every value with a parse spec (OCSP's
    ``response_bytes``, extension values), every extension set (CRL, CRL entries, OCSP single
    responses and response data) and every embedded certificate (OCSP responder
    certificates). Idempotent. Cost: about what certvalidator's first walk of the same CRL
    costs (1.9 s for 50,000 entries), paid once per fetched answer. A part that cannot be
    decoded stays lazy (its error surfaces where it is used, as before)."""
    stack: list[Asn1Value] = [value]
    while stack:
        item = stack.pop()
        try:
            if isinstance(item, x509.Certificate):
                parse_certificates([item])
            if getattr(item, "_processed_extensions", True) is False:
                item._set_extensions()  # type: ignore[attr-defined]
            if isinstance(item, Any) or (
                isinstance(item, ParsableOctetString | ParsableOctetBitString)
                and item._parsed is not None
            ):
                stack.append(item.parsed)
            elif isinstance(item, Choice):
                stack.append(item.chosen)
            elif isinstance(item, Sequence | SequenceOf | Set | SetOf) and item.contents:
                if item.children is None:
                    item._parse_children()
                # the same call asn1crypto's own accessors make on first access
                stack.extend(item._lazy_child(i) for i in range(len(item.children or ())))
        except (ValueError, TypeError, KeyError, AttributeError):
            continue
