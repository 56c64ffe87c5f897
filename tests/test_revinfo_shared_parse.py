"""Revocation answers shared between threads are parsed whole before they are shared.

asn1crypto parses lazily and without locks. The process-wide revocation cache hands one CRL or
OCSP response object to every concurrent request until its nextUpdate; if two threads are the
first to touch a part of it at once, one can see a half-built list of children or half-set
extension attributes (the race seen on trust anchors: ``KeyError: No field numbered 2 is
present in this Extension``, i.e. a 500 or a wrong verdict). The cache therefore parses an
answer completely on the fetching thread (signing_service._asn1.parse_completely). These tests
look inside the objects: without that step they find lazy parts and fail.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from asn1crypto import crl as asn1_crl
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto.core import (
    Any as Asn1Any,
)
from asn1crypto.core import (
    Asn1Value,
    Choice,
    ParsableOctetBitString,
    ParsableOctetString,
    Sequence,
    SequenceOf,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from signing_service.verification.revinfo_cache import RevocationCache

NOW = datetime.now(UTC).replace(microsecond=0)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _ca() -> tuple[Any, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("CA kiểm thử"))
        .issuer_name(_name("CA kiểm thử"))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _crl_der(entries: int) -> bytes:
    key, ca = _ca()
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.subject)
        .last_update(NOW)
        .next_update(NOW + timedelta(days=1))
        .add_extension(x509.CRLNumber(7), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False
        )
    )
    for serial in range(1, entries + 1):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(NOW - timedelta(hours=1))
            .add_extension(x509.CRLReason(x509.ReasonFlags.key_compromise), critical=False)
            .build()
        )
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _ocsp_der(next_update: timedelta | None = timedelta(hours=4)) -> bytes:
    """A good OCSP answer; ``next_update`` after now, or none (RFC 6960 §2.4 allows it:
    newer information is available at any time)."""
    key, ca = _ca()
    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(_name("Cán bộ kiểm thử"))
        .issuer_name(ca.subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - timedelta(days=1))
        .not_valid_after(NOW + timedelta(days=10))
        .sign(key, hashes.SHA256())
    )
    response = (
        ocsp.OCSPResponseBuilder()
        .add_response(
            cert=leaf,
            issuer=ca,
            algorithm=hashes.SHA256(),
            cert_status=ocsp.OCSPCertStatus.GOOD,
            this_update=NOW,
            next_update=NOW + next_update if next_update is not None else None,
            revocation_time=None,
            revocation_reason=None,
        )
        .responder_id(ocsp.OCSPResponderEncoding.HASH, ca)
        .certificates([ca])
        .add_extension(x509.OCSPNonce(b"\x01" * 16), critical=False)
        .sign(key, hashes.SHA256())
    )
    return response.public_bytes(serialization.Encoding.DER)


def _lazy_parts(value: Asn1Value) -> list[str]:
    """Every part of ``value`` asn1crypto has not built yet: constructed values whose children
    are unparsed (``None``) or still raw tuples, typed octet strings not yet parsed, and
    objects whose extension attributes are not set."""
    found: list[str] = []
    stack: list[Asn1Value] = [value]
    while stack:
        item = stack.pop()
        kind = type(item).__name__
        if getattr(item, "_processed_extensions", True) is False:
            found.append(f"{kind}: extensions not set")
        if isinstance(item, Asn1Any | ParsableOctetString | ParsableOctetBitString):
            parsed = getattr(item, "_parsed", None)
            if parsed is not None:
                stack.append(parsed[0])
            elif isinstance(item, Asn1Any):
                found.append(f"{kind}: not parsed")
        elif isinstance(item, Choice):
            if getattr(item, "_parsed", None) is None and item.contents:
                found.append(f"{kind}: choice not parsed")
            else:
                stack.append(item.chosen)
        elif isinstance(item, Sequence | SequenceOf) and item.contents:
            if item.children is None:
                found.append(f"{kind}: children not parsed")
                continue
            for child in item.children:
                if child.__class__ is tuple:
                    found.append(f"{kind}: child not built")
                else:
                    stack.append(child)
    return found


def test_a_cached_crl_is_parsed_whole_before_it_is_shared() -> None:
    fresh = asn1_crl.CertificateList.load(_crl_der(200))
    assert _lazy_parts(fresh), "the probe must see a freshly loaded CRL as lazy"
    cache = RevocationCache()
    cache.put(("crl", "http://ca.example/crl"), fresh, NOW + timedelta(days=1))
    shared = cache.get(("crl", "http://ca.example/crl"))
    assert shared is fresh
    assert _lazy_parts(shared) == []
    # and what certvalidator reads from it is there
    entries = shared["tbs_cert_list"]["revoked_certificates"]
    assert len(entries) == 200
    assert entries[199].crl_reason_value.native == "key_compromise"
    assert shared.crl_number_value.native == 7


def test_a_cached_ocsp_response_is_parsed_whole_with_its_certificates() -> None:
    fresh = asn1_ocsp.OCSPResponse.load(_ocsp_der())
    assert _lazy_parts(fresh), "the probe must see a freshly loaded OCSP response as lazy"
    cache = RevocationCache()
    cache.put(("ocsp", "k"), fresh, NOW + timedelta(hours=4))
    shared = cache.get(("ocsp", "k"))
    assert _lazy_parts(shared) == []
    basic = shared["response_bytes"]["response"].parsed
    assert basic["tbs_response_data"]["responses"][0]["cert_status"].name == "good"
    responder = basic["certs"][0]
    # the responder certificate's cached values are filled in too (parse_certificates)
    assert responder.__dict__.get("_key_identifier") is not None or responder.key_identifier


def test_threads_reading_one_cached_crl_all_see_every_entry() -> None:
    """Smoke test of the shared object under concurrent first reads (the race itself is a
    matter of thread switches, so this cannot prove its absence; the tests above do)."""
    cache = RevocationCache()
    cache.put(("crl", "u"), asn1_crl.CertificateList.load(_crl_der(500)), NOW + timedelta(days=1))
    seen: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def read() -> None:
        try:
            start.wait()
            shared = cache.get(("crl", "u"))
            serials = [
                e["user_certificate"].native
                for e in shared["tbs_cert_list"]["revoked_certificates"]
                if e.crl_reason_value is not None
            ]
            seen.append(len(serials))
        except BaseException as e:  # noqa: BLE001 - collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=read) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and seen == [500] * 8


def test_an_answer_without_next_update_is_reused_a_minute_at_most() -> None:
    """Red team 19b R19B-3: such an answer was kept an hour, so a signer check passed on a
    stale "good" for half an hour after a revocation; the chain judgement built on it is
    bounded the same way."""
    import time

    from signing_service.signing.certcheck import _earliest_next_update
    from signing_service.verification.revinfo_cache import (
        NO_NEXT_UPDATE_SECONDS,
        _ocsp_next_update,
    )

    answer = asn1_ocsp.OCSPResponse.load(_ocsp_der(next_update=None))
    assert _ocsp_next_update(answer) is None
    cache = RevocationCache()
    cache.put(("ocsp", "k"), answer, _ocsp_next_update(answer))
    left = cache._entries[("ocsp", "k")].expires - time.monotonic()
    assert 0 < left <= NO_NEXT_UPDATE_SECONDS <= 60
    # With a nextUpdate in 4 hours the hour cap applies, as before.
    dated = asn1_ocsp.OCSPResponse.load(_ocsp_der())
    cache.put(("ocsp", "d"), dated, _ocsp_next_update(dated))
    assert cache._entries[("ocsp", "d")].expires - time.monotonic() > 3000
    # The signer check's judgement: valid until the earliest nextUpdate, an undated answer
    # counting as a minute from now.
    earliest = _earliest_next_update([], [dated, answer])
    assert earliest is not None
    assert (earliest - datetime.now(UTC)).total_seconds() <= NO_NEXT_UPDATE_SECONDS
