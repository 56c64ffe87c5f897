"""The re-assembled CMS is the same structure pyHanko builds, with only the per-document values
changed, and it verifies (our verifier and poppler's pdfsig as an independent cross-check)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from asn1crypto import cms
from pyhanko.pdf_utils.reader import PdfFileReader

from signing_service._async import run_sync
from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.fastcms import CmsTemplate, tlv
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier
from tests.conftest import REPO
from tests.support.pdfs import make_pdf


def _signed_data(pdf: bytes) -> cms.SignedData:
    from io import BytesIO

    return PdfFileReader(BytesIO(pdf)).embedded_signatures[0].signed_data


@pytest.mark.parametrize("key_label", ["agency-a-seal", "agency-b-seal"])  # RSA and ECDSA
@pytest.mark.parametrize("level", ["B-B", "B-T"])
def test_fast_path_matches_pyhanko_structure_and_verifies(
    tmp_path: Path, dev_pki: tuple[DevPki, int], key_label: str, level: str
) -> None:
    pki, _ = dev_pki
    key = load_pkcs12_file(pki.p12_path(key_label), DEV_KEY_PASSPHRASE.encode())
    options = SignOptions(level=SignatureLevel(level), tsa_url=pki.tsa_url)
    slow = run_sync(async_sign_pdf(make_pdf(text="first"), key, options))  # learns the template
    assert any(t is not None for t in key.signer._templates.values())  # type: ignore[attr-defined]
    fast = run_sync(async_sign_pdf(make_pdf(text="second"), key, options))

    a, b = _signed_data(slow), _signed_data(fast)
    for name in ("version", "digest_algorithms", "encap_content_info", "certificates"):
        assert a[name].dump() == b[name].dump(), name
    sa, sb = a["signer_infos"][0], b["signer_infos"][0]
    for name in ("version", "sid", "digest_algorithm", "signature_algorithm"):
        assert sa[name].dump() == sb[name].dump(), name
    attrs_a = [attr["type"].native for attr in sa["signed_attrs"]]
    attrs_b = [attr["type"].native for attr in sb["signed_attrs"]]
    assert attrs_a == attrs_b
    assert "signing_time" not in attrs_b  # PAdES: the time is in the signature dictionary
    assert (sb["unsigned_attrs"].native is not None) == (level == "B-T")

    trust = TrustStore.load(REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path)
    report = run_sync(Verifier(trust).async_verify(fast)).to_dict()
    assert report["verdict"] == "TOTAL_PASSED", report
    if shutil.which("pdfsig"):
        path = tmp_path / "fast.pdf"
        path.write_bytes(fast)
        out = subprocess.run(["pdfsig", str(path)], capture_output=True, text=True).stdout
        assert "Signature is Valid" in out


def test_template_refuses_layouts_it_cannot_rebuild(dev_pki: tuple[DevPki, int]) -> None:
    pki, _ = dev_pki
    key = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    # A CMS with a signing-time attribute (non-PAdES) must not become a template.
    from datetime import UTC, datetime

    from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes

    ci = run_sync(
        key.signer.async_sign(
            b"\x00" * 32,
            "sha256",
            use_pades=False,
            signed_attr_settings=PdfCMSSignedAttributes(signing_time=datetime.now(UTC)),
        )
    )
    attrs = [a["type"].native for a in ci["content"]["signer_infos"][0]["signed_attrs"]]
    assert "signing_time" in attrs
    assert CmsTemplate.learn(ci) is None


def test_der_length_encoding() -> None:
    assert tlv(0x04, b"a" * 5)[:2] == b"\x04\x05"
    assert tlv(0x04, b"a" * 200)[:3] == b"\x04\x81\xc8"
    assert tlv(0x04, b"a" * 70000)[:5] == b"\x04\x83\x01\x11\x70"
