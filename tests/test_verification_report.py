"""What the report says: anchors and kinds, names, warnings a reader must see, unsigned fields,
forged signature dictionaries, weak timestamps. Inputs are built here; the field inputs of
../shared are checked when present."""

from __future__ import annotations

import asyncio
import csv
import json
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from asn1crypto import algos, core
from asn1crypto import x509 as asn1_x509
from certomancer.registry import KeyLabel
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner, PdfTimeStamper
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE, ExtraTrustAnchor
from signing_service.signing.appearance import AppearanceSpec
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier
from tests.conftest import REPO
from tests.support.pdfs import make_pdf
from tests.support.testpki import SEAL_NAME, issue_chain

SHARED = REPO.parent / "shared"
FIELD_INPUTS = SHARED / "field-inputs"


@pytest.fixture(scope="module")
def verifier(dev_pki: tuple[DevPki, int]) -> Verifier:
    pki, _ = dev_pki
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )
    return Verifier(trust)


def verify(verifier: Verifier, data: bytes) -> dict[str, Any]:
    return asyncio.run(verifier.async_verify(data)).to_dict()


def dev_sign(pki: DevPki, pdf: bytes, level: str = "B-T", **options: Any) -> bytes:
    key = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    return asyncio.run(
        async_sign_pdf(
            pdf,
            key,
            SignOptions(level=SignatureLevel.parse(level), tsa_url=pki.tsa_url, **options),
        )
    )


# -- kinds of anchor ---------------------------------------------------------------------------
def _sign_with_chain(chain: Any, pdf: bytes) -> bytes:
    """B-B with the chain's leaf, then a DSS carrying both CRLs (the intermediate's, the
    root's): verifiable offline."""
    out = BytesIO()
    PdfSigner(
        PdfSignatureMetadata(field_name="ChuKy1", subfilter=fields.SigSeedSubFilter.PADES),
        signer=chain.signer(),
    ).sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), output=out)
    writer = IncrementalPdfFileWriter(BytesIO(out.getvalue()))
    from asn1crypto import crl

    DocumentSecurityStore.supply_dss_in_writer(
        writer,
        None,
        certs=[chain.leaf, chain.intermediate, chain.root],
        crls=[
            crl.CertificateList.load(chain.crl()),
            crl.CertificateList.load(chain.crl(issuer_label="root")),
        ],
    )
    final = BytesIO()
    writer.write(final)
    return final.getvalue()


@pytest.mark.parametrize("kind", ["public_duty", "public"])
def test_chain_ending_in_a_government_ca_shaped_root_is_public_duty(
    tmp_path: Path, kind: str
) -> None:
    """A test root configured the way the Government CA G2 root is (kind public_duty) —
    or as a NEAC-style public root — and a personal certificate under it."""
    chain = issue_chain()
    root = chain.write_root(tmp_path / "root.pem")
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", extra=[ExtraTrustAnchor(file=root, kind=kind)]
    )
    report = asyncio.run(
        Verifier(trust, allow_fetching=False).async_verify(_sign_with_chain(chain, make_pdf()))
    ).to_dict()
    assert report["verdict"] == "TOTAL_PASSED", report
    sig = report["signatures"][0]
    assert sig["category"] == kind
    assert sig["trust_anchor"]["name"] == "Thử nghiệm RootCA chuyên dùng Chính phủ G2"
    assert sig["trust_anchor"]["kind"] == kind
    expected_label = "Ban Cơ yếu Chính phủ" if kind == "public_duty" else "NEAC"
    assert expected_label in sig["category_label"]
    assert sig["signer"]["profile"] == "personal"  # a title: a person, not a seal
    assert sig["signer"]["title"] == "Phó Giám đốc"
    assert "Chức danh: Phó Giám đốc" in sig["signer"]["subject"]
    assert "Common Name" not in sig["signer"]["subject"] + sig["signer"]["issuer"]
    assert sig["level"] == "B-B"


def test_agency_seal_profile_is_reported(tmp_path: Path) -> None:
    chain = issue_chain(leaf_name=SEAL_NAME)
    root = chain.write_root(tmp_path / "root.pem")
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", extra=[ExtraTrustAnchor(file=root, kind="public")]
    )
    report = asyncio.run(
        Verifier(trust, allow_fetching=False).async_verify(_sign_with_chain(chain, make_pdf()))
    ).to_dict()
    assert report["signatures"][0]["signer"]["profile"] == "organization"


# -- warnings ------------------------------------------------------------------------------------
def _add_annotation(pdf: bytes, rect: list[float | str], subtype: str = "/FreeText") -> bytes:
    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    if writer.prev.encrypted:
        writer.encrypt("")
    page = writer.root["/Pages"]["/Kids"][0].get_object()
    annot = writer.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Annot"),
                generic.NameObject("/Subtype"): generic.NameObject(subtype),
                generic.NameObject("/Rect"): generic.ArrayObject(
                    [generic.FloatObject(v) for v in rect]
                ),
                generic.NameObject("/Contents"): generic.TextStringObject("9.000.000 đồng"),
                generic.NameObject("/DA"): generic.TextStringObject("/Helv 12 Tf 0 g"),
            }
        )
    )
    annots = page["/Annots"] if "/Annots" in page else generic.ArrayObject()
    page[generic.NameObject("/Annots")] = generic.ArrayObject([*annots.iterate(), annot])
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_annotation_after_signing_passes_with_a_visible_warning(
    verifier: Verifier, dev_pki: tuple[DevPki, int]
) -> None:
    """Drawn over the amount after signing: allowed (ISO 32000, EU DSS), but the reader must
    be told in the summary, with the page and the rectangle — not only inside one check."""
    signed = dev_sign(dev_pki[0], make_pdf())
    report = verify(verifier, _add_annotation(signed, [70, 750, 300, 780]))
    assert report["verdict"] == "TOTAL_PASSED", report
    assert report["signatures"][0]["checks"]["modifications"]["code"] == "ALLOWED_ANNOTATIONS"
    [warning] = report["warnings"]
    assert warning["code"] == "ANNOTATION_ADDED_AFTER_SIGNING"
    assert warning["page"] == 1
    assert warning["rect"] == [70, 750, 300, 780]
    assert "cảnh báo" in report["message"]
    assert report["message"] != "Tất cả chữ ký số hợp lệ."


def test_annotation_with_an_infinite_rectangle_gives_valid_json(
    verifier: Verifier, dev_pki: tuple[DevPki, int]
) -> None:
    """A /Rect number of 401 digits reads as infinity: the warning stays, without a
    rectangle, and the report is strict JSON (no Infinity, which JSON clients reject)."""
    pki, _ = dev_pki
    huge = "1" + "0" * 400 + ".5"
    report = verify(verifier, _add_annotation(dev_sign(pki, make_pdf()), [100, 100, huge, 200]))
    json.dumps(report, allow_nan=False)
    notes = [w for w in report["warnings"] if w["code"].startswith("ANNOTATION")]
    assert notes, report["warnings"]


def test_an_unreadable_annotation_does_not_hide_the_ones_after_it(
    verifier: Verifier, dev_pki: tuple[DevPki, int]
) -> None:
    """Red team 16, F5: a throw-away annotation first on the page whose /Rect holds a 400-digit
    integer (float() overflows) ended the annotation review, and the FreeText overlay after it
    went unmentioned ("Tất cả chữ ký số hợp lệ."). Now the overlay is warned about with its
    rectangle, and the throw-away one too."""
    signed = dev_sign(dev_pki[0], make_pdf())
    writer = IncrementalPdfFileWriter(BytesIO(signed))
    page = writer.root["/Pages"]["/Kids"][0].get_object()

    def annotation(rect: list[generic.PdfObject]) -> generic.IndirectObject:
        return writer.add_object(
            generic.DictionaryObject(
                {
                    generic.NameObject("/Type"): generic.NameObject("/Annot"),
                    generic.NameObject("/Subtype"): generic.NameObject("/FreeText"),
                    generic.NameObject("/Rect"): generic.ArrayObject(rect),
                    generic.NameObject("/Contents"): generic.TextStringObject("DA DUYET"),
                    generic.NameObject("/DA"): generic.TextStringObject("/Helv 12 Tf 0 g"),
                }
            )
        )

    numbers = [generic.NumberObject(v) for v in (0, 0, 1, 10**400)]
    overlay = annotation([generic.NumberObject(v) for v in (70, 750, 300, 780)])
    kept = list(page["/Annots"].iterate()) if "/Annots" in page else []
    added = [annotation(numbers), overlay]
    page[generic.NameObject("/Annots")] = generic.ArrayObject([*kept, *added])
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    report = verify(verifier, out.getvalue())
    assert report["verdict"] == "TOTAL_PASSED", report
    assert report["message"] != "Tất cả chữ ký số hợp lệ.", report
    annotations = [w for w in report["warnings"] if w["code"] == "ANNOTATION_ADDED_AFTER_SIGNING"]
    assert [70, 750, 300, 780] in [w.get("rect") for w in annotations], report["warnings"]
    assert len(annotations) == 2, report["warnings"]


@pytest.mark.parametrize("encrypted", [False, True], ids=["plain", "encrypted"])
def test_annotation_over_a_signature_appearance_is_named(
    verifier: Verifier, dev_pki: tuple[DevPki, int], encrypted: bool
) -> None:
    """Also in an encrypted document (owner password only), where the rectangles come
    through pyHanko's decrypting proxies: read as they came, no rectangle was found and
    the overlay went unnamed."""
    pdf = make_pdf()
    if encrypted:
        out = BytesIO()
        pikepdf.open(BytesIO(pdf)).save(
            out, encryption=pikepdf.Encryption(user="", owner="chu-so-huu")
        )
        pdf = out.getvalue()
    signed = dev_sign(dev_pki[0], pdf, appearance=AppearanceSpec())
    with pikepdf.open(BytesIO(signed)) as doc:
        widget = next(a for a in doc.pages[0].Annots if a.get("/FT") == "/Sig")
        x1, y1, x2, y2 = (float(v) for v in widget.Rect)
    report = verify(verifier, _add_annotation(signed, [x1 + 5, y1 + 5, x2 - 5, y2 - 5]))
    codes = [w["code"] for w in report["warnings"]]
    assert codes == ["ANNOTATION_OVER_SIGNATURE"], report["warnings"]
    assert report["warnings"][0]["signature"] == "Signature1"


# -- unsigned and forged -------------------------------------------------------------------------
def _with_empty_signature_field(name: str = "ChuKyLanhDao") -> bytes:
    writer = IncrementalPdfFileWriter(BytesIO(make_pdf()))
    fields.append_signature_field(
        writer, fields.SigFieldSpec(name, box=(350, 700, 550, 780), on_page=0)
    )
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_empty_signature_field_is_an_unsigned_field_not_a_forgery(verifier: Verifier) -> None:
    report = verify(verifier, _with_empty_signature_field())
    assert report["verdict"] == "NO_SIGNATURE"
    assert report["unsigned_fields"] == ["ChuKyLanhDao"]
    assert report["problems"] == []
    assert "1 trường chữ ký chưa ký" in report["message"]


@pytest.mark.parametrize("compress", [False, True])
def test_page_text_mentioning_signature_keywords_is_not_a_forgery(
    verifier: Verifier, compress: bool
) -> None:
    text = (
        b"BT /F1 9 Tf 40 700 Td (Huong dan: /ByteRange [0 1 2 3] /Contents <0A0B> "
        b"/SubFilter /adbe.pkcs7.detached /ETSI.CAdES.detached /ETSI.RFC3161 "
        b"/Type /Sig /FT /Sig) Tj ET"
    )
    pdf = pikepdf.open(BytesIO(make_pdf()))
    pdf.pages[0].Contents = pdf.make_stream(text)
    out = BytesIO()
    pdf.save(out, compress_streams=compress)
    report = verify(verifier, out.getvalue())
    assert report["verdict"] == "NO_SIGNATURE", report
    assert report["problems"] == []


MENTION = "Huong dan: /ByteRange [0 100 200 300] /SubFilter /adbe.pkcs7.detached /FT /Sig /V 9 0 R"


def _mentioning_in_strings(where: str) -> bytes:
    """A document whose dictionaries mention signature keys in text strings: a comment's text
    (``comment``) or the document's title and subject (``info``), as guides about PDF
    signatures do. Written uncompressed, so the raw scans see every byte."""
    pdf = pikepdf.open(BytesIO(make_pdf()))
    if where == "comment":
        note = pdf.make_indirect(
            pikepdf.Dictionary(
                Type=pikepdf.Name.Annot,
                Subtype=pikepdf.Name.Text,
                Rect=[500, 800, 520, 820],
                Contents=pikepdf.String(MENTION),
            )
        )
        pdf.pages[0].Annots = pdf.make_indirect(pikepdf.Array([note]))
    else:
        pdf.docinfo["/Title"] = pikepdf.String("Chu ky so /ByteRange")
        pdf.docinfo["/Subject"] = pikepdf.String(MENTION)
    out = BytesIO()
    pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.disable, compress_streams=False)
    return out.getvalue()


@pytest.mark.parametrize("where", ["comment", "info"])
def test_signature_keys_in_text_strings_are_not_signatures(
    verifier: Verifier, dev_pki: tuple[DevPki, int], where: str
) -> None:
    """Text in a string is not a key of a dictionary: unsigned stays NO_SIGNATURE without a
    problem, signed stays TOTAL_PASSED (no "unreachable signature")."""
    pki, _ = dev_pki
    unsigned = _mentioning_in_strings(where)
    assert b"/ByteRange [0 100 200 300]" in unsigned
    report = verify(verifier, unsigned)
    assert report["verdict"] == "NO_SIGNATURE", report
    assert report["problems"] == []
    report = verify(verifier, dev_sign(pki, unsigned))
    assert report["verdict"] == "TOTAL_PASSED", report
    assert report["problems"] == []


def test_signature_dictionary_no_field_points_to_is_a_forgery(verifier: Verifier) -> None:
    """Universal Signature Forgery: a signature dictionary that no field references."""
    writer = IncrementalPdfFileWriter(BytesIO(make_pdf()))
    writer.add_object(
        generic.DictionaryObject(
            {
                generic.NameObject("/Type"): generic.NameObject("/Sig"),
                generic.NameObject("/Filter"): generic.NameObject("/Adobe.PPKLite"),
                generic.NameObject("/SubFilter"): generic.NameObject("/ETSI.CAdES.detached"),
                generic.NameObject("/ByteRange"): generic.ArrayObject(
                    [generic.NumberObject(v) for v in (0, 10, 20, 30)]
                ),
                generic.NameObject("/Contents"): generic.ByteStringObject(b"\x30\x00" * 64),
            }
        )
    )
    out = BytesIO()
    writer.write(out)
    report = verify(verifier, out.getvalue())
    assert report["verdict"] == "TOTAL_FAILED"
    assert [p["code"] for p in report["problems"]] == ["UNREACHABLE_SIGNATURE"]


# -- timestamps with a weak algorithm ------------------------------------------------------------
def test_sha1_timestamp_has_its_own_code(verifier: Verifier, dev_pki: tuple[DevPki, int]) -> None:
    pki, _ = dev_pki
    key = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    tsa = DummyTimeStamper(
        pki.cert("tsa"), pki.arch.key_set.get_private_key(KeyLabel("tsa")), override_md="sha1"
    )
    out = BytesIO()
    PdfSigner(
        PdfSignatureMetadata(field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES),
        signer=key.signer,
        timestamper=tsa,
    ).sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf())), output=out)
    report = verify(verifier, out.getvalue())
    sig = report["signatures"][0]
    assert sig["checks"]["timestamp"]["code"] == "TIMESTAMP_WEAK_ALGORITHM", sig["checks"]
    assert sig["checks"]["timestamp"]["status"] == "INDETERMINATE"
    assert sig["best_signature_time"] is None  # a weak timestamp proves nothing
    assert report["verdict"] == "INDETERMINATE"


def _document_timestamp(pki: DevPki, pdf: bytes) -> bytes:
    tsa = DummyTimeStamper(pki.cert("tsa"), pki.arch.key_set.get_private_key(KeyLabel("tsa")))
    out = BytesIO()
    PdfTimeStamper(tsa, field_name="DocTS").timestamp_pdf(
        IncrementalPdfFileWriter(BytesIO(pdf)), "sha256", output=out
    )
    return out.getvalue()


def test_document_timestamp_alone_is_no_signature(
    verifier: Verifier, dev_pki: tuple[DevPki, int]
) -> None:
    """Anyone can have a trusted TSA timestamp a file: that proves when it existed, not that
    anyone approved it. The timestamp is reported, the document is not called signed."""
    pki, _ = dev_pki
    report = verify(verifier, _document_timestamp(pki, make_pdf()))
    assert report["verdict"] == "NO_SIGNATURE", report
    assert [s["type"] for s in report["signatures"]] == ["document_timestamp"]
    assert report["signatures"][0]["indication"] == "TOTAL_PASSED"
    assert "dấu thời gian tài liệu" in report["message"]


def test_document_timestamp_after_a_signature_still_passes(
    verifier: Verifier, dev_pki: tuple[DevPki, int]
) -> None:
    pki, _ = dev_pki
    report = verify(verifier, _document_timestamp(pki, dev_sign(pki, make_pdf())))
    assert report["verdict"] == "TOTAL_PASSED", report
    assert [s["type"] for s in report["signatures"]] == ["signature", "document_timestamp"]


def _pss(digest: str) -> algos.SignedDigestAlgorithm:
    return algos.SignedDigestAlgorithm(
        {
            "algorithm": "rsassa_pss",
            "parameters": algos.RSASSAPSSParams(
                {
                    "hash_algorithm": {"algorithm": digest},
                    "mask_gen_algorithm": {
                        "algorithm": "mgf1",
                        "parameters": {"algorithm": digest},
                    },
                    "salt_length": 20 if digest in ("sha1", "md5") else 32,
                }
            ),
        }
    )


@pytest.mark.parametrize("pss_digest", ["sha1", "md5"])
def test_pss_parameters_naming_a_weak_hash_are_weak(
    verifier: Verifier, dev_pki: tuple[DevPki, int], pss_digest: str
) -> None:
    """The CMS digest algorithm says SHA-256, the RSASSA-PSS parameters say SHA-1 (or MD5):
    the signature value covers the weak hash. (Absent parameters: test_algorithm_policy.)"""
    pki, _ = dev_pki
    loaded = signers.SimpleSigner.load_pkcs12(
        pki.p12_path("agency-a-seal"), passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert loaded is not None

    class PssSigner(signers.SimpleSigner):
        def _check_digest_algorithm(self, digest_algorithm: str) -> None:
            return None

    signer = PssSigner(
        signing_cert=loaded.signing_cert,
        signing_key=loaded.signing_key,
        cert_registry=loaded.cert_registry,
        signature_mechanism=_pss(pss_digest),
    )
    out = BytesIO()
    PdfSigner(
        PdfSignatureMetadata(
            field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES, md_algorithm="sha256"
        ),
        signer=signer,
    ).sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf())), output=out)
    sig = verify(verifier, out.getvalue())["signatures"][0]
    assert sig["checks"]["integrity"]["status"] == "PASSED", sig["checks"]
    assert sig["checks"]["algorithms"]["code"] == "WEAK_DIGEST", sig["checks"]
    assert sig["indication"] != "TOTAL_PASSED"


def _der(tag: int, payload: bytes) -> bytes:
    n = len(payload)
    if n < 128:
        return bytes([tag, n]) + payload
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + payload


def _certificate_with_odd_name(pki: DevPki) -> asn1_x509.Certificate:
    """Well-formed DER that X.509 allows (a subject attribute of an unknown type whose value is
    an OCTET STRING) and that asn1crypto cannot turn into a comparable name."""
    cert = asn1_x509.Certificate.load(pki.cert("agency-a-seal").dump())
    tbs = asn1_x509.TbsCertificate.load(cert["tbs_certificate"].dump())
    attribute = _der(0x30, core.ObjectIdentifier("1.2.3.4.5.6.7.8.9").dump() + _der(0x04, b"\0\1"))
    tbs["subject"] = asn1_x509.Name.load(_der(0x30, _der(0x31, attribute)))
    return asn1_x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": cert["signature_algorithm"],
            "signature_value": cert["signature_value"],
        }
    )


def test_unusable_certificate_in_validation_data_harms_no_signature(
    verifier: Verifier, dev_pki: tuple[DevPki, int]
) -> None:
    """Anyone may append validation data after signing (an allowed update): one certificate
    the chain builder cannot use is ignored, the two genuine signatures still pass."""
    pki, _ = dev_pki
    signed = dev_sign(pki, dev_sign(pki, make_pdf()))
    out = BytesIO(signed)
    DocumentSecurityStore.add_dss(
        out, sig_contents=None, certs=[_certificate_with_odd_name(pki)], strict=False
    )
    report = verify(verifier, out.getvalue())
    assert report["verdict"] == "TOTAL_PASSED", report
    assert [s["indication"] for s in report["signatures"]] == ["TOTAL_PASSED"] * 2


@pytest.mark.parametrize("when", ["future", "before-tsa-certificate", "after-tsa-certificate"])
def test_timestamp_with_an_impossible_time_proves_nothing(
    verifier: Verifier, dev_pki: tuple[DevPki, int], when: str
) -> None:
    """A trusted TSA's key stamping a time it could not have (tomorrow; before or after its own
    certificate's validity): the token is INDETERMINATE with its own code and the signature
    gets no proof of existence from it."""
    pki, _ = dev_pki
    tsa_cert = pki.cert("tsa")
    moment = {
        "future": datetime.now(UTC) + timedelta(days=1),
        "before-tsa-certificate": tsa_cert.not_valid_before - timedelta(days=1),
        "after-tsa-certificate": tsa_cert.not_valid_after + timedelta(days=1),
    }[when]
    tsa = DummyTimeStamper(
        tsa_cert, pki.arch.key_set.get_private_key(KeyLabel("tsa")), fixed_dt=moment
    )
    signer = signers.SimpleSigner.load_pkcs12(
        pki.p12_path("agency-a-seal"), passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert signer is not None
    out = BytesIO()
    PdfSigner(
        PdfSignatureMetadata(field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES),
        signer=signer,
        timestamper=tsa,
    ).sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf())), output=out)
    if when == "after-tsa-certificate":  # validated later still, or the time is the future
        at = moment + timedelta(days=1)
        report = asyncio.run(verifier.async_verify(out.getvalue(), validation_time=at)).to_dict()
    else:
        report = verify(verifier, out.getvalue())
    sig = report["signatures"][0]
    code = (
        "TIMESTAMP_AFTER_VALIDATION_TIME" if when == "future" else "TIMESTAMP_OUTSIDE_TSA_VALIDITY"
    )
    assert sig["checks"]["timestamp"]["code"] == code, sig["checks"]
    assert sig["checks"]["timestamp"]["status"] == "INDETERMINATE"
    assert sig["best_signature_time"] is None
    assert sig["signing_time_source"] != "timestamp"
    assert report["verdict"] == "INDETERMINATE", report


# -- the shared field inputs -------------------------------------------------------------------
def _field_cases() -> list[dict[str, str]]:
    path = FIELD_INPUTS / "MANIFEST.tsv"
    if not path.exists():
        return []
    with path.open() as f:
        return [row for row in csv.DictReader(f, delimiter="\t") if row["action"] == "verify"]


FIELD_CASES = _field_cases()


@pytest.mark.skipif(not FIELD_CASES, reason=f"{FIELD_INPUTS} is absent (a user's clone has none)")
@pytest.mark.parametrize("case", FIELD_CASES, ids=[c["file"] for c in FIELD_CASES])
def test_field_inputs_to_verify(verifier: Verifier, case: dict[str, str]) -> None:
    report = verify(verifier, (FIELD_INPUTS / case["file"]).read_bytes())
    assert report["verdict"] == "NO_SIGNATURE", report
    assert report["problems"] == []
    statuses = [c["status"] for s in report["signatures"] for c in s["checks"].values()]
    assert "FAILED" not in statuses


def test_a_timestamping_certificate_does_not_sign_documents(
    verifier: Verifier, dev_pki: tuple[DevPki, int]
) -> None:
    """Red team (issue 9): a document signed with the TSA's key and certificate (extended key
    usage: timestamping only, RFC 3161 §2.3) verified TOTAL_PASSED. It is not a document
    signer: the signature is not passed, and the report says why."""
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    pki, _ = dev_pki
    signer = signers.SimpleSigner(
        signing_cert=pki.cert("tsa"),
        signing_key=pki.arch.key_set.get_private_key(KeyLabel("tsa")),
        cert_registry=SimpleCertificateStore.from_certs([pki.cert("root")]),
    )
    out = BytesIO()
    PdfSigner(
        PdfSignatureMetadata(field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES),
        signer=signer,
    ).sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf())), output=out)
    report = verify(verifier, out.getvalue())
    assert report["verdict"] != "TOTAL_PASSED", report
    sig = report["signatures"][0]
    assert sig["indication"] != "TOTAL_PASSED"
    assert sig["checks"]["trust"]["status"] != "PASSED", sig["checks"]
