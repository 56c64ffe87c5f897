"""The space reserved for a signature's /Contents fits it: never too small, at most 2 KB more.

Every later verification hashes the whole document except /Contents, and a reservation far above
the signature (14 KB for 6 KB before) is read and skipped by every validator; one too small makes
pyHanko refuse to embed the signature. Sizes are DER bytes (the file holds twice as many hex
digits).
"""

from __future__ import annotations

import asyncio
from io import BytesIO

import pytest
from asn1crypto import cms
from pyhanko.keys import load_private_key_from_pemder
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko_certvalidator import ValidationContext

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import (
    EXTERNAL_MARGIN,
    SignOptions,
    async_finish_external,
    async_prepare_external,
    async_sign_pdf,
)
from signing_service.signing.keys import LoadedKey
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.tsa import PooledHTTPTimeStamper
from tests.support.pdfs import make_pdf

MAX_SLACK = 2048
KEYS = {"rsa": "agency-a-seal", "ecdsa": "agency-b-seal"}


def _key(pki: DevPki, label: str) -> LoadedKey:
    return load_pkcs12_file(pki.p12_path(label), DEV_KEY_PASSPHRASE.encode())


def reserved_and_actual(signed: bytes, index: int = 0) -> tuple[int, int]:
    """(reserved, actual) DER bytes of the ``index``-th signature or document timestamp."""
    embedded = PdfFileReader(BytesIO(signed), strict=False).embedded_signatures[index]
    reserved = len(embedded.pkcs7_content)  # the /Contents string: DER and zero padding
    actual = len(cms.ContentInfo.load(embedded.pkcs7_content, strict=False).dump())
    return reserved, actual


@pytest.mark.parametrize("level", [SignatureLevel.B_B, SignatureLevel.B_T])
@pytest.mark.parametrize("family", sorted(KEYS))
def test_reservation_fits_the_signature(
    dev_pki: tuple[DevPki, int], family: str, level: SignatureLevel
) -> None:
    pki, _ = dev_pki
    key = _key(pki, KEYS[family])
    options = SignOptions(level=level, tsa_url=pki.tsa_url)
    for text in ("first", "second"):  # the second one takes the fast CMS path
        signed = asyncio.run(async_sign_pdf(make_pdf(text=text), key, options))
        reserved, actual = reserved_and_actual(signed)
        print(f"{family} {level}: reserved {reserved}, actual {actual}, slack {reserved - actual}")
        assert 0 < reserved - actual <= MAX_SLACK, (reserved, actual)


def test_document_timestamp_reservation_fits(dev_pki: tuple[DevPki, int]) -> None:
    from signing_service.trust import TrustStore
    from tests.conftest import REPO

    pki, _ = dev_pki
    trust = TrustStore.load(REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path)
    key = _key(pki, "agency-a-seal")
    signed = asyncio.run(
        async_sign_pdf(
            make_pdf(),
            key,
            SignOptions(level=SignatureLevel.B_LTA, tsa_url=pki.tsa_url),
            validation_context=lambda: trust.validation_context(other_certs=key.chain),
        )
    )
    for index in (0, 1):  # the signature, the document timestamp
        reserved, actual = reserved_and_actual(signed, index)
        print(f"B-LTA #{index}: reserved {reserved}, actual {actual}, slack {reserved - actual}")
        assert 0 < reserved - actual <= MAX_SLACK, (index, reserved, actual)


def test_two_step_reservation_fits_with_its_margin(dev_pki: tuple[DevPki, int]) -> None:
    """Two-step signing reserves EXTERNAL_MARGIN more, for a CMS the client may build itself;
    a raw signature completed by the service uses our CMS and the learnt token size."""
    pki, _ = dev_pki
    key = _key(pki, "agency-a-seal")
    options = SignOptions(level=SignatureLevel.B_T, tsa_url=pki.tsa_url)
    timestamper = PooledHTTPTimeStamper(pki.tsa_url)
    prepared = asyncio.run(
        async_prepare_external(
            make_pdf(), key.signing_cert, key.chain, options, timestamper=timestamper
        )
    )
    raw = key.signer.sign_raw(prepared.signed_attrs, prepared.md_algorithm)  # type: ignore[attr-defined]
    signed = asyncio.run(
        async_finish_external(
            prepared, key.signing_cert, key.chain, raw_signature=raw, timestamper=timestamper
        )
    )
    reserved, actual = reserved_and_actual(signed)
    print(f"two-step B-T: reserved {reserved}, actual {actual}, slack {reserved - actual}")
    assert 0 < reserved - actual <= MAX_SLACK + EXTERNAL_MARGIN // 2, (reserved, actual)


class GrowingTimeStamper(DummyTimeStamper):
    """A TSA whose real tokens are larger than its first one (as behind a load balancer whose
    units embed different chains): the learnt size is too small once."""

    def __init__(self, pki: DevPki) -> None:
        super().__init__(
            tsa_cert=pki.cert("tsa"),
            tsa_key=load_private_key_from_pemder(pki.directory / "keys" / "tsa.key.pem", None),
        )
        self.extra = [pki.cert(label) for label in ("root", "interm", "ocsp", "officer")]
        self.calls = 0

    def request_tsa_response(self, req):  # type: ignore[no-untyped-def]
        self.calls += 1
        if self.calls > 1:
            self.certs_to_embed = self.extra
        return super().request_tsa_response(req)


def test_a_token_larger_than_learnt_is_retried_and_signs(dev_pki: tuple[DevPki, int]) -> None:
    pki, _ = dev_pki
    key = _key(pki, "agency-a-seal")
    tsa = GrowingTimeStamper(pki)
    signed = asyncio.run(
        async_sign_pdf(make_pdf(), key, SignOptions(level=SignatureLevel.B_T), timestamper=tsa)
    )
    # The size probe, the attempt whose CMS did not fit, the retry.
    assert tsa.calls == 3
    embedded = PdfFileReader(BytesIO(signed), strict=False).embedded_signatures[0]
    status = validate_pdf_signature(
        embedded, ValidationContext(trust_roots=[pki.cert("root")], allow_fetching=True)
    )
    assert status.intact and status.valid, status
    assert status.timestamp_validity is not None and status.timestamp_validity.intact
