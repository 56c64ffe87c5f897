"""Our CMS integrity check gives exactly pyHanko's answer on every signature we can find:
the third-party corpus, our own signatures (RSA, ECDSA), their timestamp tokens, and tampered
copies."""

from __future__ import annotations

import asyncio
from io import BytesIO
from pathlib import Path

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import generic_cms

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.verification.cms import signature_integrity
from tests.conftest import CORPUS
from tests.support.pdfs import make_pdf


def _outcome(fn, *args):  # type: ignore[no-untyped-def]
    try:
        return fn(*args)
    except Exception as e:  # noqa: BLE001 - the kind of failure is what we compare
        return type(e).__name__


def _compare(data: bytes) -> int:
    compared = 0
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        signatures = list(reader.embedded_signatures)
    except Exception:  # noqa: BLE001 - unparsable inputs have nothing to compare
        return 0
    for emb in signatures:
        try:
            cert = generic_cms.extract_certs_for_validation(emb.signed_data).signer_cert
            digest = emb.compute_digest()
        except Exception:  # noqa: BLE001
            continue
        content_type = emb.signed_data["encap_content_info"]["content_type"].native
        pieces = [(emb.signer_info, cert, content_type, digest)]
        for token in generic_cms.extract_tst_data_iter(emb.signer_info, signed=False):
            tsa = generic_cms.extract_certs_for_validation(token).signer_cert
            si = token["signer_infos"][0]
            import hashlib

            md = si["digest_algorithm"]["algorithm"].native
            content = bytes(token["encap_content_info"]["content"])
            pieces.append((si, tsa, "tst_info", hashlib.new(md, content).digest()))
        for args in pieces:
            for variant in (args, (*args[:3], b"\x00" * len(args[3]))):
                ours = _outcome(signature_integrity, *variant)
                theirs = _outcome(generic_cms.validate_sig_integrity, *variant)
                assert ours == theirs, (variant[2], ours, theirs)
                compared += 1
    return compared


@pytest.mark.corpus
@pytest.mark.skipif(not CORPUS.exists(), reason=f"{CORPUS} is absent (a user's clone has none)")
def test_same_answer_as_pyhanko_on_the_corpus() -> None:
    compared = sum(_compare(path.read_bytes()) for path in sorted(Path(CORPUS).rglob("*.pdf")))
    assert compared > 100


@pytest.mark.parametrize("label", ["agency-a-seal", "agency-b-seal"])
def test_same_answer_as_pyhanko_on_our_signatures(dev_pki: tuple[DevPki, int], label: str) -> None:
    pki, _ = dev_pki
    key = load_pkcs12_file(pki.p12_path(label), DEV_KEY_PASSPHRASE.encode())
    signed = asyncio.run(
        async_sign_pdf(make_pdf(), key, SignOptions(level=SignatureLevel.B_T, tsa_url=pki.tsa_url))
    )
    assert _compare(signed) == 4
    # A byte changed inside the CMS signed attributes: both must agree it is broken.
    at = signed.index(b"/Contents <") + 11 + 2 * 600
    flipped = signed[:at] + (b"0" if signed[at : at + 1] != b"0" else b"1") + signed[at + 1 :]
    _compare(flipped)
