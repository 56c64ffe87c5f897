"""Parse shared asn1crypto objects completely before threads share them; read TeletexString
names as their writers meant them (:func:`decode_teletex`).

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

import codecs
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


MAX_DER_DEPTH = 48
"""Deepest nesting of DER values accepted in a fetched revocation answer. A CRL or OCSP
response nests about a dozen deep (its names and extensions included); asn1crypto parses
recursively and keeps a copy of each value's contents per level, so a hostile answer nested
thousands deep cost a RecursionError (a 500 before signing) and memory growing with the square
of the depth (red team 15, F4/F8)."""


def check_der_shape(data: bytes, *, max_depth: int = MAX_DER_DEPTH) -> None:
    """Raise ``ValueError`` when ``data`` is not one well-formed DER value (definite lengths,
    nothing after it) or nests deeper than ``max_depth``. Iterative and linear in the number of
    values, before any of asn1crypto's recursive parsing.

    Octet and bit strings are measured inside too, as far as their contents read as DER:
    asn1crypto parses those by their type (extension values, OCSP's ``response_bytes``) and
    ignores bytes after the first value, so a hostile value followed by one stray byte must
    still be measured (red team 15b, R2). There a malformed part only ends the measuring (a
    signature value is random bytes); depth beyond ``max_depth`` is refused wherever it is."""
    if not data:
        raise ValueError("empty")
    # (buffer, depth of its values, strict: malformed is an error rather than the end)
    stack: list[tuple[memoryview, int, bool]] = [(memoryview(data), 0, True)]
    top = True
    while stack:
        buffer, depth, strict = stack.pop()
        end = len(buffer)
        pos = 0
        while pos < end:
            header = _header(buffer, pos)
            if header is None:
                if strict:
                    raise ValueError("malformed value")
                break
            tag, start, length = header
            if tag & 0x20:  # constructed: its contents are values one level deeper
                if depth + 1 > max_depth:
                    raise ValueError(f"nested deeper than {max_depth}")
                stack.append((buffer[start : start + length], depth + 1, strict))
            elif tag in (0x04, 0x03) and length > 2:
                inner = buffer[start + (1 if tag == 0x03 else 0) : start + length]
                if inner[0] & 0x20:
                    stack.append((inner, depth + 1, False))
            pos = start + length
            if top:
                top = False
                if pos != end:
                    raise ValueError("bytes after the value")


def _header(buffer: memoryview, pos: int) -> tuple[int, int, int] | None:
    """(tag byte, contents start, contents length) of the value at ``pos``; ``None`` when it
    is truncated, has an indefinite or over-long length, or runs past ``buffer``."""
    end = len(buffer)
    tag = buffer[pos]
    pos += 1
    if tag & 0x1F == 0x1F:  # high tag number: base-128, bounded
        for _ in range(5):
            if pos >= end:
                return None
            more = buffer[pos] & 0x80
            pos += 1
            if not more:
                break
        else:
            return None
    if pos >= end:
        return None
    length = buffer[pos]
    pos += 1
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            return None
        length = int.from_bytes(buffer[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        return None
    return tag, pos, length


# The codec name x509 names' TeletexString values decode with (registered below).
NAME_TELETEX_CODEC = "signing-service-name-teletex"


def decode_teletex(data: bytes, errors: str = "strict") -> tuple[str, int]:
    """A TeletexString name value's bytes as text: UTF-8 when they hold non-ASCII bytes that
    are valid UTF-8 (OpenSSL writes T61String holding UTF-8 unless told ``-utf8``, and CAs
    shipped such certificates; Windows-1252 text of a real name is practically never valid
    UTF-8), else Windows-1252 (what asn1crypto reads there: OpenSSL puts ISO-8859-1 in it),
    else ISO-8859-1. Never raises for any bytes: asn1crypto's Windows-1252 raised
    ``UnicodeDecodeError`` on UTF-8 bytes such as 0x9D, and pyHanko's path builder, which
    compares names, failed the whole chain (red team 19 F4: a Vietnamese signer's genuine
    signature read CERTIFICATE_CHAIN_GENERAL_FAILURE, the name garbled). Returns
    ``(text, bytes consumed)`` as a codec's decode does; ``errors`` is accepted and unused."""
    raw = bytes(data)
    if any(b >= 0x80 for b in raw):
        try:
            return raw.decode("utf-8"), len(raw)
        except UnicodeDecodeError:
            pass
    try:
        return raw.decode("cp1252"), len(raw)
    except UnicodeDecodeError:
        return raw.decode("latin-1"), len(raw)


def _encode_latin1(text: str, errors: str = "strict") -> tuple[bytes, int]:
    return text.encode("latin-1", errors), len(text)


def _name_teletex_search(name: str) -> codecs.CodecInfo | None:
    if name != NAME_TELETEX_CODEC.replace("-", "_") and name != NAME_TELETEX_CODEC:
        return None
    return codecs.CodecInfo(name=NAME_TELETEX_CODEC, encode=_encode_latin1, decode=decode_teletex)


codecs.register(_name_teletex_search)
# asn1crypto reads a name's TeletexString through this class only (x509.DirectoryString).
x509.NotReallyTeletexString._decoding_encoding = NAME_TELETEX_CODEC
