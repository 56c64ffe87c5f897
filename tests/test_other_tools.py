"""Genuine signatures as other tools and archives make them (red team 19): each input is built
here with the dev PKI, the way the red team's files were (pyHanko, with its output bent where
another tool writes differently), and verified in process. Every signature here is genuine and
its document unchanged unless a test changes it: the verdict must say so.

- F1: a /M date without UTC offset (local time as older tools write it, or the year alone).
- F2: ``adbe.pkcs7.sha1`` (ISO 32000-1 §12.8.3.3.1): intact, refused for SHA-1 only.
- F3: revocation data kept only in the DSS's /VRI entry of the signature.
- F4: a signer's name in TeletexString holding UTF-8 bytes (OpenSSL without ``-utf8``).
- F5/F8: a comment over the signature stamp whose author (/T) is the field's name; the
  warning names a comment's author as the author, a widget's field as a field.
- F7: ``adbe.pkcs7.detached`` signatures get EU DSS's PKCS7-* levels, never PAdES B-*.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import json
import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import pikepdf
import pytest
from asn1crypto import cms, keys, x509
from cryptography import x509 as cx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.name import _ASN1Type
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.signers import pdf_byterange
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner, PdfTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
from pyhanko.stamp import TextStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier
from tests.conftest import REPO
from tests.support.keys import issue_dev_certificate
from tests.support.pdfs import make_pdf

BASE = make_pdf("Quyet dinh so 19/QD-UBND", pages=2)
FIELD = "Signature1"
NAME_OFFICER = "Nguyễn Văn An"  # the dev PKI's officer
VN = "+07:00"


# -- fixtures ----------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pki(dev_pki: tuple[DevPki, int]) -> DevPki:
    return dev_pki[0]


@pytest.fixture(scope="module")
def trust(pki: DevPki) -> TrustStore:
    return TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )


@pytest.fixture(scope="module")
def verifier(trust: TrustStore) -> Verifier:
    """Fetches current OCSP/CRL answers from the dev PKI server, as the service does."""
    return Verifier(trust)


@pytest.fixture(scope="module")
def offline(trust: TrustStore) -> Verifier:
    """Fetches nothing: only what the document carries counts."""
    return Verifier(trust, allow_fetching=False)


def verify(verifier: Verifier, data: bytes) -> dict[str, Any]:
    return json.loads(json.dumps(asyncio.run(verifier.async_verify(data)).to_dict()))


def only_signature(report: dict[str, Any]) -> dict[str, Any]:
    sigs = [s for s in report["signatures"] if s["type"] == "signature"]
    assert len(sigs) == 1, report["signatures"]
    return sigs[0]


def brief(sig: dict[str, Any]) -> str:
    """A signature's result in one line, for assertion messages."""
    checks = " ".join(f"{name}={c['status']}/{c['code']}" for name, c in sig["checks"].items())
    return f"{sig['indication']}/{sig['sub_indication']} level={sig['level']} {checks}"


def codes(report: dict[str, Any]) -> list[str]:
    return [w["code"] for w in report["warnings"]] + [
        n["code"] for s in report["signatures"] for n in s["notes"]
    ]


# -- signing as another tool -------------------------------------------------------------------
def simple_signer(pki: DevPki, label: str = "officer") -> signers.SimpleSigner:
    signer = signers.SimpleSigner.load_pkcs12(
        str(pki.p12_path(label)), passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert signer is not None
    return signer


def sign(
    pki: DevPki,
    pdf: bytes,
    *,
    subfilter: fields.SigSeedSubFilter = fields.SigSeedSubFilter.PADES,
    timestamp: bool = True,
    signer: signers.Signer | None = None,
    embed_validation_info: bool = False,
    name: str | None = None,
    **kwargs: Any,
) -> bytes:
    """``pdf`` signed by pyHanko (field Signature1), with a signature timestamp from the dev
    TSA unless ``timestamp`` is false; ``embed_validation_info`` (adbe.pkcs7.detached): the
    revocation data in Adobe's signed attribute; ``name``: the signature's /Name (else
    pyHanko reads it from the certificate's subject)."""
    meta = PdfSignatureMetadata(
        field_name=FIELD,
        name=name,
        subfilter=subfilter,
        md_algorithm="sha256",
        embed_validation_info=embed_validation_info,
        validation_context=validation_context(pki) if embed_validation_info else None,
    )
    out = io.BytesIO()
    PdfSigner(
        meta,
        signer=signer or simple_signer(pki),
        timestamper=timestamps.HTTPTimeStamper(pki.tsa_url) if timestamp else None,
        **kwargs,
    ).sign_pdf(IncrementalPdfFileWriter(io.BytesIO(pdf)), output=out)
    return out.getvalue()


def validation_context(pki: DevPki) -> ValidationContext:
    return ValidationContext(
        trust_roots=[pki.cert("root")], allow_fetching=True, other_certs=[pki.cert("interm")]
    )


def document_timestamp(pki: DevPki, pdf: bytes) -> bytes:
    out = io.BytesIO()
    PdfTimeStamper(timestamps.HTTPTimeStamper(pki.tsa_url), field_name="DocTS").timestamp_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)), "sha256", output=out
    )
    return out.getvalue()


def with_dss(pki: DevPki, pdf: bytes, *, vri_only: bool) -> bytes:
    """``pdf`` with a DSS update holding the certificates and revocation data (OCSP answers,
    any CRLs) that validate its signature and its signature timestamp now, as pyHanko
    collects them from the dev PKI. ``vri_only``:
    all of it only in the signature's /VRI entry, no top-level /Certs /OCSPs /CRLs (both are
    optional, ISO 32000-2 §12.8.4.3); else where pyHanko puts it (top level and /VRI)."""
    emb = PdfFileReader(io.BytesIO(pdf)).embedded_signatures[0]
    context = validation_context(pki)
    paths = asyncio.run(collect_validation_info(emb, context))
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    if not vri_only:
        DocumentSecurityStore.supply_dss_in_writer(
            writer,
            emb.pkcs7_content.hex().encode("ascii"),
            validation_context=context,
            paths=paths,
        )
    else:
        certs = {c.dump(): c for path in paths for c in path}
        assert context.ocsps

        def streams(items: Any) -> generic.ArrayObject:
            return generic.ArrayObject(
                [writer.add_object(generic.StreamObject(stream_data=i.dump())) for i in items]
            )

        vri = generic.DictionaryObject(
            {
                generic.NameObject("/Cert"): streams(certs.values()),
                generic.NameObject("/OCSP"): streams(context.ocsps),
                generic.NameObject("/CRL"): streams(context.crls),
            }
        )
        key = hashlib.sha1(emb.pkcs7_content).hexdigest().upper()
        writer.root[generic.NameObject("/DSS")] = writer.add_object(
            generic.DictionaryObject(
                {
                    generic.NameObject("/Type"): generic.NameObject("/DSS"),
                    generic.NameObject("/VRI"): generic.DictionaryObject(
                        {generic.NameObject("/" + key): writer.add_object(vri)}
                    ),
                }
            )
        )
        writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# -- F1: /M without UTC offset -----------------------------------------------------------------
@contextmanager
def m_written_as(text: Any) -> Iterator[None]:
    """pyHanko writes /M as ``text(moment)`` (a str), as another tool would."""
    original = pdf_byterange.pdf_date
    pdf_byterange.pdf_date = lambda moment: generic.TextStringObject(text(moment))
    try:
        yield
    finally:
        pdf_byterange.pdf_date = original


def _local_without_offset(moment: datetime) -> str:
    """Vietnam's local time, no offset: ``D:YYYYMMDDHHmmSS``."""
    return "D:" + (moment.astimezone(UTC) + timedelta(hours=7)).strftime("%Y%m%d%H%M%S")


@pytest.mark.parametrize(
    ("m_text", "timestamp"),
    [
        pytest.param(_local_without_offset, True, id="B-T-local-time"),
        pytest.param(_local_without_offset, False, id="B-B-local-time"),
        pytest.param(lambda _: "D:2026", False, id="B-B-year-only"),
    ],
)
def test_signing_time_without_utc_offset_is_read_not_a_broken_signature(
    pki: DevPki, verifier: Verifier, m_text: Any, timestamp: bool
) -> None:
    with m_written_as(m_text):
        data = sign(pki, BASE, timestamp=timestamp)
    m = str(PdfFileReader(io.BytesIO(data)).embedded_signatures[0].sig_object["/M"])
    assert re.fullmatch(r"D:\d{4}(\d{10})?", m), m  # really no offset
    report = verify(verifier, data)
    sig = only_signature(report)
    assert (report["verdict"], sig["indication"]) == ("TOTAL_PASSED", "TOTAL_PASSED"), brief(sig)
    assert sig["checks"]["integrity"]["code"] == "INTACT"
    assert sig["signer"]["common_name"] == NAME_OFFICER
    assert sig["level"] == ("B-T" if timestamp else "B-B")
    if timestamp:
        # The timestamp decides the signing time; the claim's zone does not matter.
        assert sig["signing_time_source"] == "timestamp"
        assert "CLAIMED_TIME_ZONE_UNKNOWN" not in codes(report)
    else:
        # The claim is the signing time, read as UTC and said to be of unknown zone.
        assert sig["signing_time_source"] == "claimed"
        digits = (m[2:] + "0101000000")[:14]
        as_utc = datetime.strptime(digits, "%Y%m%d%H%M%S").replace(tzinfo=UTC)
        assert datetime.fromisoformat(sig["signing_time"]) == as_utc
        assert sig["signing_time"].endswith(VN)
        notes = [w for w in report["warnings"] if w["code"] == "CLAIMED_TIME_ZONE_UNKNOWN"]
        assert [w.get("signature") for w in notes] == [FIELD], report["warnings"]
    # Vietnam's time read as UTC looks 7 hours ahead: never called "signed after" for that.
    assert "CLAIMED_SIGNED_AFTER_VALIDATION_TIME" not in codes(report)


def test_a_claimed_time_without_offset_far_in_the_future_is_said(
    pki: DevPki, verifier: Verifier
) -> None:
    """New user 20 #9: a claimed signing time without offset a day ahead of now (no zone can
    bring it back to now: UTC+14 is the earliest it can mean) is CLAIMED_SIGNED_AFTER..."""
    with m_written_as(lambda moment: _local_without_offset(moment + timedelta(hours=24))):
        data = sign(pki, BASE, timestamp=False)
    report = verify(verifier, data)
    assert "CLAIMED_SIGNED_AFTER_VALIDATION_TIME" in codes(report), report["warnings"]


# -- F2: adbe.pkcs7.sha1 -----------------------------------------------------------------------
def pkcs7_sha1(pki: DevPki, pdf: bytes, signer_md: str) -> bytes:
    """``pdf`` signed ``adbe.pkcs7.sha1`` as older tools (and Acrobat 6) do: the CMS
    encapsulates the SHA-1 digest of the byte range, and its signer info (digest
    ``signer_md``) signs that content. Made by pyHanko as adbe.pkcs7.detached with room to
    spare, the SubFilter renamed in place, then the CMS replaced."""
    signer = simple_signer(pki)
    meta = PdfSignatureMetadata(
        field_name=FIELD,
        subfilter=fields.SigSeedSubFilter.ADOBE_PKCS7_DETACHED,
        md_algorithm="sha256",
    )
    out = io.BytesIO()
    PdfSigner(meta, signer=signer).sign_pdf(
        IncrementalPdfFileWriter(io.BytesIO(pdf)), output=out, bytes_reserved=16384
    )
    data = bytearray(out.getvalue())
    at = data.rindex(b"/adbe.pkcs7.detached")
    data[at : at + 20] = b"/adbe.pkcs7.sha1    "
    found = re.search(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]", bytes(data))
    assert found is not None
    a, b, c, d = (int(x) for x in found.groups())
    econtent = hashlib.sha1(bytes(data[a : a + b]) + bytes(data[c : c + d])).digest()
    content = cms.ContentInfo({"content_type": "data", "content": econtent})
    signed = asyncio.run(signer.async_sign_general_data(content, signer_md, detached=False))
    hexed = signed.dump().hex().encode()
    room = c - (a + b) - 2
    assert len(hexed) <= room
    data[a + b + 1 : a + b + 1 + room] = hexed + b"0" * (room - len(hexed))
    return bytes(data)


@pytest.mark.parametrize("signer_md", ["sha1", "sha256"])
def test_adbe_pkcs7_sha1_is_intact_and_refused_for_sha1_not_called_changed(
    pki: DevPki, verifier: Verifier, signer_md: str
) -> None:
    data = pkcs7_sha1(pki, BASE, signer_md)
    with pikepdf.open(io.BytesIO(data)) as pdf:
        value = pdf.Root.AcroForm.Fields[0].V
        assert value.SubFilter == "/adbe.pkcs7.sha1"
        signed_data = cms.ContentInfo.load(bytes(value.Contents))["content"]
    assert signed_data["signer_infos"][0]["digest_algorithm"]["algorithm"].native == signer_md
    assert signed_data["encap_content_info"]["content"].native is not None  # not detached
    report = verify(verifier, data)
    sig = only_signature(report)
    assert sig["checks"]["integrity"]["code"] == "INTACT", brief(sig)
    assert (report["verdict"], sig["sub_indication"]) == (
        "INDETERMINATE",
        "CRYPTO_CONSTRAINTS_FAILURE_NO_POE",
    ), brief(sig)
    algorithms = sig["checks"]["algorithms"]
    assert (algorithms["status"], algorithms["code"]) == ("INDETERMINATE", "WEAK_DIGEST")
    assert "SHA1" in algorithms["message"], algorithms
    assert sig["level"] == "PKCS7-B"
    assert sig["signer"]["common_name"] == NAME_OFFICER

    # The same signature over a changed document: changed, as ever.
    first = data.index(b"so 19/QD")
    changed = data[:first] + b"so 91/QD" + data[first + 8 :]
    report = verify(verifier, changed)
    sig = only_signature(report)
    assert (report["verdict"], sig["checks"]["integrity"]["code"]) == (
        "TOTAL_FAILED",
        "HASH_MISMATCH",
    ), brief(sig)


# -- F3: revocation data only in /VRI ----------------------------------------------------------
def test_revocation_data_only_in_the_vri_entry_counts(pki: DevPki, offline: Verifier) -> None:
    data = document_timestamp(pki, with_dss(pki, sign(pki, BASE), vri_only=True))
    dss = PdfFileReader(io.BytesIO(data)).root["/DSS"]
    assert sorted(dss.keys()) == ["/Type", "/VRI"]  # nothing at the top level
    report = verify(offline, data)
    sig = only_signature(report)
    assert (report["verdict"], sig["indication"]) == ("TOTAL_PASSED", "TOTAL_PASSED"), brief(sig)
    assert sig["checks"]["revocation"]["status"] == "PASSED", brief(sig)
    # Read from the document's /VRI entry: nothing was fetched.
    assert {r["source"] for r in sig["revocation_data"]} == {"document"}, sig["revocation_data"]
    assert any(
        r["type"] == "OCSP" and r["status"] == "good" and NAME_OFFICER in r["certificate"]
        for r in sig["revocation_data"]
    ), sig["revocation_data"]
    assert sig["level"] == "B-LTA"


# -- F4: TeletexString holding UTF-8 -----------------------------------------------------------
NAME = "Nguyễn Thị Thu Hà"
ORG = "Ủy ban nhân dân phường Bến Thành"
TITLE = "Chủ tịch"


def teletex_utf8_signer(pki: DevPki) -> signers.SimpleSigner:
    """A signer whose certificate, issued by the dev intermediate CA (the dev signers' CRL
    distribution point), names its subject in T61String values holding UTF-8 bytes, as
    OpenSSL writes them when its tooling forgets ``-utf8``."""

    t61 = _ASN1Type.T61String
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = cx.Name(
        [
            cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            cx.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "Thành phố Hồ Chí Minh", t61),
            cx.NameAttribute(NameOID.ORGANIZATION_NAME, ORG, t61),
            cx.NameAttribute(NameOID.TITLE, TITLE, t61),
            cx.NameAttribute(NameOID.COMMON_NAME, NAME, t61),
        ]
    )
    pem = issue_dev_certificate(pki, key.public_key(), NAME, ORG, subject=subject)
    cert = x509.Certificate.load(
        cx.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    )
    der = cert.dump()
    # The input is what it claims: T61String (tag 0x14) with the name's UTF-8 bytes.
    utf8 = NAME.encode()
    assert bytes([0x14, len(utf8)]) + utf8 in der
    return signers.SimpleSigner(
        signing_cert=cert,
        signing_key=keys.PrivateKeyInfo.load(
            key.private_bytes(
                serialization.Encoding.DER,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        ),
        cert_registry=SimpleCertificateStore.from_certs([pki.cert("interm"), pki.cert("root")]),
    )


def test_teletex_name_with_utf8_bytes_validates_and_reads_right(
    pki: DevPki, verifier: Verifier
) -> None:
    data = sign(
        pki,
        BASE,
        signer=teletex_utf8_signer(pki),
        # Given, as the tools that make such certificates write it: pyHanko would read the
        # subject, which asn1crypto alone cannot decode (Windows-1252, byte 0x9D).
        name=NAME,
    )
    report = verify(verifier, data)
    sig = only_signature(report)
    assert (report["verdict"], sig["indication"]) == ("TOTAL_PASSED", "TOTAL_PASSED"), brief(sig)
    assert sig["checks"]["trust"]["code"] == "CHAIN_TRUSTED", brief(sig)
    signer = sig["signer"]
    assert (signer["common_name"], signer["organization"], signer["title"]) == (
        NAME,
        ORG,
        TITLE,
    ), signer
    assert f"Tên: {NAME}" in signer["subject"]
    assert "Thành phố Hồ Chí Minh" in signer["subject"]
    assert sig["level"] == "B-T"


# -- F5, F8: a comment over the stamp, its author the field's name -----------------------------
STAMP = (72, 600, 272, 660)
WIDGET = (150, 620, 350, 680)  # over a part of the stamp


def visible_signed(pki: DevPki) -> bytes:
    return sign(
        pki,
        BASE,
        stamp_style=TextStampStyle(stamp_text="Da ky so"),
        new_field_spec=fields.SigFieldSpec(FIELD, box=STAMP, on_page=0),
    )


def _numbers(values: tuple[float, ...]) -> generic.ArrayObject:
    return generic.ArrayObject([generic.NumberObject(v) for v in values])


def cover_stamp(pdf: bytes, author: str, field: str) -> bytes:
    """An update adding, on page 1, a white Square comment by ``author`` exactly over the
    signature's stamp, and an empty signature field ``field`` whose widget covers a part of it."""
    writer = IncrementalPdfFileWriter(io.BytesIO(pdf))
    page_ref = writer.root["/Pages"]["/Kids"].raw_get(0)
    page = page_ref.get_object()
    appearance = writer.add_object(
        generic.StreamObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/XObject"),
                generic.NameObject("/Subtype"): generic.NameObject("/Form"),
                generic.NameObject("/BBox"): _numbers((0, 0, 200, 60)),
            },
            stream_data=b"1 1 1 rg 0 0 200 60 re f",
        )
    )
    comment = writer.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Annot"),
                generic.NameObject("/Subtype"): generic.NameObject("/Square"),
                generic.NameObject("/Rect"): _numbers(STAMP),
                generic.NameObject("/T"): generic.TextStringObject(author),
                generic.NameObject("/IC"): _numbers((1, 1, 1)),
                generic.NameObject("/F"): generic.NumberObject(4),
                generic.NameObject("/AP"): generic.DictionaryObject(
                    {generic.NameObject("/N"): appearance}
                ),
            }
        )
    )
    widget = writer.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Annot"),
                generic.NameObject("/Subtype"): generic.NameObject("/Widget"),
                generic.NameObject("/FT"): generic.NameObject("/Sig"),
                generic.NameObject("/T"): generic.TextStringObject(field),
                generic.NameObject("/Rect"): _numbers(WIDGET),
                generic.NameObject("/F"): generic.NumberObject(4),
                generic.NameObject("/P"): page_ref,
            }
        )
    )
    annots = page["/Annots"]
    annots.append(comment)
    annots.append(widget)
    if isinstance(page.raw_get("/Annots"), generic.IndirectObject):
        writer.update_container(annots)
    writer.update_container(page)
    form = writer.root["/AcroForm"]
    form["/Fields"].append(widget)
    writer.update_container(form)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("author", [FIELD, "Văn thư"])
def test_comment_over_the_stamp_is_caught_whatever_its_author_is_called(
    pki: DevPki, verifier: Verifier, author: str
) -> None:
    data = cover_stamp(visible_signed(pki), author, "KyDuyet")
    report = verify(verifier, data)
    assert report["verdict"] == "TOTAL_PASSED", report
    over = [w for w in report["warnings"] if w["code"] == "ANNOTATION_OVER_SIGNATURE"]
    square = [w for w in over if "hình chữ nhật" in w["message"]]
    assert len(square) == 1, report["warnings"]
    assert square[0]["signature"] == FIELD
    assert f"tác giả {author}" in square[0]["message"]
    assert f"trường {author}" not in square[0]["message"]
    widget = [w for w in report["warnings"] if "ô biểu mẫu hoặc ô chữ ký" in w["message"]]
    assert len(widget) == 1, report["warnings"]
    assert "trường KyDuyet" in widget[0]["message"]


# -- F7: adbe.pkcs7.detached levels ------------------------------------------------------------
ADOBE = fields.SigSeedSubFilter.ADOBE_PKCS7_DETACHED


def adobe_b(pki: DevPki) -> bytes:
    return sign(pki, BASE, subfilter=ADOBE, timestamp=False)


def adobe_t(pki: DevPki) -> bytes:
    return sign(pki, BASE, subfilter=ADOBE)


def adobe_t_revinfo_attribute(pki: DevPki) -> bytes:
    return sign(pki, BASE, subfilter=ADOBE, embed_validation_info=True)


def adobe_lt(pki: DevPki) -> bytes:
    return with_dss(pki, adobe_t(pki), vri_only=False)


def adobe_lta(pki: DevPki) -> bytes:
    return document_timestamp(pki, adobe_lt(pki))


@pytest.mark.parametrize(
    ("build", "level"),
    [
        (adobe_b, "PKCS7-B"),
        (adobe_t, "PKCS7-T"),
        (adobe_t_revinfo_attribute, "PKCS7-T"),
        (adobe_lt, "PKCS7-LT"),
        (adobe_lta, "PKCS7-LTA"),
    ],
    ids=["B", "T", "T-adobe-revinfo", "LT", "LTA"],
)
def test_adbe_pkcs7_detached_levels_are_not_pades(
    pki: DevPki, verifier: Verifier, build: Any, level: str
) -> None:
    data = build(pki)
    reader = PdfFileReader(io.BytesIO(data))
    emb = reader.embedded_signatures[0]
    assert emb.sig_object["/SubFilter"] == "/adbe.pkcs7.detached"
    attrs = {a["type"].native for a in emb.signer_info["signed_attrs"]}
    assert ("adobe_revocation_info_archival" in attrs) == (build is adobe_t_revinfo_attribute)
    assert ("/DSS" in reader.root) == (build in (adobe_lt, adobe_lta))
    report = verify(verifier, data)
    sig = only_signature(report)
    assert (report["verdict"], sig["indication"]) == ("TOTAL_PASSED", "TOTAL_PASSED"), brief(sig)
    assert sig["level"] == level
