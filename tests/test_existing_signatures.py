"""Signatures already on a document to sign (red team 17b, R17B-1).

Before a new signature, the document's earlier signatures are verified by the service's own
verifier, in every flow (one document as multipart and as the raw body, each document of a
batch, two-step at step 1 and again at step 2): a failed one (content changed, a broken
document timestamp) or a revoked signer is refused with ``EXISTING_SIGNATURE_INVALID``, nothing
stored and the refusal audited; an undecided one (an expired signer) is signed and the answer
says so. Certifications declared only in the signature's ``/Reference`` (R17B-2, R17B-6) are
tested with the other certified documents (tests/test_inputs.py).

Every input is built here: the service's own signature tampered afterwards, signatures made
with the dev PKI's revoked and expired test keys, a document timestamp from the dev TSA.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import io
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pikepdf
import pytest
from asn1crypto import pem, x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_signer import PdfTBSDocument
from sqlalchemy import func, select, update

from signing_service._async import run_sync
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import SignOptions, async_prepare_external
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.store.models import AuditEntry, ExternalSession
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot
from tests.test_external import Token

VIETNAMESE_LETTERS = "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"
REFUSED = "EXISTING_SIGNATURE_INVALID"


def auth(credentials: dict[str, Any], agency: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][agency]['api_key']}"}


def verify(api: Any, data: bytes) -> dict[str, Any]:
    response = api.post("/v1/verifications", files={"file": ("x.pdf", data, "application/pdf")})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def download(api: Any, credentials: dict[str, Any], body: dict[str, Any], agency: int = 0) -> bytes:
    response = api.get(body["document"]["download_url"], headers=auth(credentials, agency))
    assert response.status_code == 200, response.text
    return response.content  # type: ignore[no-any-return]


# --- the four flows ---------------------------------------------------------------------------


def sign_multipart(
    api: Any, credentials: dict[str, Any], data: bytes, agency: int = 0, **form: str
) -> Any:
    seal = "agency-a-seal" if agency == 0 else "agency-b-seal"
    return api.post(
        "/v1/signatures",
        headers=auth(credentials, agency),
        data={"profile": seal, "level": "B-B", **form},
        files={"file": ("van-ban.pdf", data, "application/pdf")},
    )


def sign_raw(api: Any, credentials: dict[str, Any], data: bytes) -> Any:
    return api.post(
        "/v1/signatures/raw",
        params={"profile": "agency-a-seal", "level": "B-B", "filename": "van-ban.pdf"},
        headers={**auth(credentials), "Content-Type": "application/pdf"},
        content=data,
    )


def sign_batch(api: Any, credentials: dict[str, Any], docs: list[bytes]) -> Any:
    return api.post(
        "/v1/signatures/batch",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B"},
        files=[("files", (f"van-ban-{i}.pdf", d, "application/pdf")) for i, d in enumerate(docs)],
    )


def start_two_step(
    api: Any, credentials: dict[str, Any], data: bytes, headers: dict[str, str] | None = None
) -> Any:
    return api.post(
        "/v1/signatures/external",
        headers={**auth(credentials), **(headers or {})},
        data={"profile": "agency-a-officer", "officer": "nguyen-van-an", "level": "B-B"},
        files={"file": ("van-ban.pdf", data, "application/pdf")},
    )


@pytest.fixture
def officer_token(services: Services) -> Iterator[Token]:
    assert services.dev_pki is not None
    token = Token(str(services.dev_pki.p12_path("officer")))
    yield token
    token.close()


# --- inputs -----------------------------------------------------------------------------------


def signed_by_service(api: Any, credentials: dict[str, Any], agency: int = 0) -> bytes:
    """A decision signed by agency A's (or B's) seal through the API, as downloaded."""
    response = sign_multipart(api, credentials, make_pdf(), agency)
    assert response.status_code == 201, response.text
    return download(api, credentials, response.json(), agency)


def tampered(signed: bytes) -> bytes:
    """``signed`` with the decision's number changed inside the signed bytes."""
    assert signed.count(b"so 123/QD") == 1
    return signed.replace(b"so 123/QD", b"so 999/QD")


def _writer(data: bytes) -> IncrementalPdfFileWriter:
    return IncrementalPdfFileWriter(io.BytesIO(data))


def signed_locally(
    pki: DevPki, label: str, data: bytes | None = None, field_name: str = "Truoc"
) -> bytes:
    """``data`` (default: a decision) signed at B-B by pyHanko with the dev PKI's ``label``
    key (revoked-signer, expired-signer, spare-seal), as another system would have."""
    key = load_pkcs12_file(pki.p12_path(label), DEV_KEY_PASSPHRASE.encode())
    meta = signers.PdfSignatureMetadata(
        field_name=field_name, subfilter=fields.SigSeedSubFilter.PADES
    )
    writer = _writer(data if data is not None else make_pdf())
    out = asyncio.run(signers.PdfSigner(meta, signer=key.signer).async_sign_pdf(writer))
    return out.getvalue()  # type: ignore[no-any-return]


def doc_timestamped(pki: DevPki) -> bytes:
    """A decision carrying only a document timestamp from the dev TSA (field "DauThoiGian")."""
    stamper = signers.PdfTimeStamper(
        timestamps.HTTPTimeStamper(pki.tsa_url), field_name="DauThoiGian"
    )
    out = asyncio.run(stamper.async_timestamp_pdf(_writer(make_pdf()), "sha256"))
    return out.getvalue()  # type: ignore[no-any-return]


def with_stray_signature_dictionary() -> bytes:
    """A decision with a signature dictionary that no signature field reaches (the catalog
    names it): the verifier's UNREACHABLE_SIGNATURE."""
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    pdf.Root.Extra = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Sig,
            Filter=pikepdf.Name("/Adobe.PPKLite"),
            SubFilter=pikepdf.Name("/ETSI.CAdES.detached"),
            ByteRange=[0, 10, 20, 30],
            Contents=pikepdf.String(b"\x00" * 16),
        )
    )
    out = io.BytesIO()
    pdf.save(out, compress_streams=False)
    return out.getvalue()


# --- records ----------------------------------------------------------------------------------


def audit_details(services: Services, action: str) -> list[dict[str, Any]]:
    with services.db.transaction() as session:
        rows = session.scalars(
            select(AuditEntry.details).where(AuditEntry.action == action).order_by(AuditEntry.seq)
        ).all()
    return [json.loads(row) for row in rows]


def sessions(services: Services) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(ExternalSession)) or 0


def assert_refusal(body: dict[str, Any], field: str, sub_indications: set[str]) -> None:
    """The 422 body of a refusal for ``field``'s earlier signature."""
    assert body["code"] == REFUSED, body
    assert any(ch in body["message"] for ch in VIETNAMESE_LETTERS), body
    assert f"“{field}”" in body["message"], body
    details = body["details"]
    assert details["field"] == field, details
    assert details["sub_indication"] in sub_indications, details
    assert details["code"], details


# What refuses: the service's own signature changed afterwards (TOTAL_FAILED, its digest) and a
# signature by a revoked signer without proof of existence before the revocation.
def refused_inputs(api: Any, credentials: dict[str, Any], pki: DevPki) -> list[Any]:
    return [
        (tampered(signed_by_service(api, credentials)), "Signature1", {"HASH_FAILURE"}),
        (signed_locally(pki, "revoked-signer"), "Truoc", {"REVOKED_NO_POE"}),
    ]


Flow = Callable[[Any, dict[str, Any], bytes], dict[str, Any]]


def _one_step(api: Any, credentials: dict[str, Any], data: bytes) -> dict[str, Any]:
    response = sign_multipart(api, credentials, data)
    assert response.status_code == 422, response.text
    return response.json()  # type: ignore[no-any-return]


def _raw(api: Any, credentials: dict[str, Any], data: bytes) -> dict[str, Any]:
    response = sign_raw(api, credentials, data)
    assert response.status_code == 422, response.text
    return response.json()  # type: ignore[no-any-return]


def _two_step(api: Any, credentials: dict[str, Any], data: bytes) -> dict[str, Any]:
    response = start_two_step(api, credentials, data)
    assert response.status_code == 422, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("flow", "name"),
    [(_one_step, "one-step"), (_raw, "one-step"), (_two_step, "two-step")],
    ids=["multipart", "raw", "two-step"],
)
def test_an_invalid_or_revoked_earlier_signature_is_refused(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    dev_pki: tuple[DevPki, int],
    flow: Flow,
    name: str,
) -> None:
    for data, field, subs in refused_inputs(api, credentials, dev_pki[0]):
        before, created = snapshot(services), len(audit_details(services, "signature.created"))
        open_sessions = sessions(services)
        refusals = len(audit_details(services, "signature.refused"))
        body = flow(api, credentials, data)
        assert_refusal(body, field, subs)
        # Nothing stored, registered or opened; the refusal is audited.
        assert_nothing_written(before, services)
        assert len(audit_details(services, "signature.created")) == created
        assert sessions(services) == open_sessions
        entries = audit_details(services, "signature.refused")
        assert len(entries) == refusals + 1
        assert entries[-1]["code"] == REFUSED and entries[-1]["flow"] == name
        assert entries[-1]["existing_signature"]["field"] == field


def test_batch_refuses_the_document_alone(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    refused = refused_inputs(api, credentials, dev_pki[0])
    before = snapshot(services)
    response = sign_batch(api, credentials, [refused[0][0], make_pdf(), refused[1][0]])
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["failed", "signed", "failed"]
    for result, (_, field, subs) in zip([results[0], results[2]], refused, strict=True):
        assert_refusal(result["error"], field, subs)
    # The good document alone is stored (with its original's record).
    after = snapshot(services)
    assert (after.signatures - before.signatures, after.documents - before.documents) == (1, 2)
    assert results[1]["existing_signatures"] == []
    flows = [e["flow"] for e in audit_details(services, "signature.refused")]
    assert flows == ["batch", "batch"]


def test_a_broken_document_timestamp_refuses(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    stamped = doc_timestamped(dev_pki[0])
    before = snapshot(services)
    response = sign_multipart(api, credentials, tampered(stamped))
    assert response.status_code == 422, response.text
    body = response.json()
    assert_refusal(body, "DauThoiGian", {"HASH_FAILURE"})
    assert body["details"]["type"] == "document_timestamp"
    assert body["message"].startswith("Dấu thời gian tài liệu")
    assert_nothing_written(before, services)
    # Intact, the timestamp is no reason to refuse.
    response = sign_multipart(api, credentials, stamped)
    assert response.status_code == 201, response.text
    listed = response.json()["existing_signatures"]
    assert [(s["field"], s["type"], s["indication"]) for s in listed] == [
        ("DauThoiGian", "document_timestamp", "TOTAL_PASSED")
    ]


def test_a_document_the_verifier_cannot_clear_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    """A document-level problem of the verification (here a signature dictionary no field
    reaches) refuses as a failed signature does, with the problem's code."""
    data = signed_locally(dev_pki[0], "spare-seal", with_stray_signature_dictionary())
    before = snapshot(services)
    response = sign_multipart(api, credentials, data)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == REFUSED
    assert body["details"]["field"] is None
    assert body["details"]["code"] == "UNREACHABLE_SIGNATURE"
    assert any(ch in body["message"] for ch in VIETNAMESE_LETTERS)
    assert_nothing_written(before, services)


def test_an_expired_earlier_signer_is_signed_and_said(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    """Undecided for a reason that does not refuse (the earlier signer's certificate has
    expired, no timestamp proves the signature older): signed, and the answer, the audit
    entry and a batch item list the earlier signature as INDETERMINATE."""
    data = signed_locally(dev_pki[0], "expired-signer")
    response = sign_multipart(api, credentials, data)
    assert response.status_code == 201, response.text
    listed = response.json()["existing_signatures"]
    assert len(listed) == 1, listed
    assert listed[0]["field"] == "Truoc"
    assert listed[0]["type"] == "signature"
    assert listed[0]["indication"] == "INDETERMINATE"
    assert listed[0]["sub_indication"] not in ("REVOKED_NO_POE", "REVOKED_CA_NO_POE", None)
    entry = audit_details(services, "signature.created")[-1]
    assert entry["existing_signatures"] == listed
    batch = sign_batch(api, credentials, [data]).json()["results"]
    assert batch[0]["status"] == "signed" and batch[0]["existing_signatures"] == listed


def test_a_genuine_second_signature_signs_and_verifies(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Agency A signs; agency B countersigns A's valid decision: both signatures pass."""
    first = signed_by_service(api, credentials, agency=0)
    response = sign_multipart(api, credentials, first, agency=1)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["existing_signatures"] == [
        {
            "field": "Signature1",
            "type": "signature",
            "indication": "TOTAL_PASSED",
            "sub_indication": None,
            "code": None,
        }
    ]
    report = verify(api, download(api, credentials, body, agency=1))
    assert report["verdict"] == "TOTAL_PASSED", report
    assert [s["indication"] for s in report["signatures"]] == ["TOTAL_PASSED"] * 2
    assert (
        audit_details(services, "signature.created")[-1]["existing_signatures"]
        == (body["existing_signatures"])
    )
    # A document without signatures lists none (and the audit entry carries no list).
    plain = sign_multipart(api, credentials, make_pdf())
    assert plain.json()["existing_signatures"] == []
    assert "existing_signatures" not in audit_details(services, "signature.created")[-1]


def test_two_step_countersigns_a_valid_document(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    first = signed_by_service(api, credentials)
    key = {"Idempotency-Key": "hai-buoc-ky-them-1"}
    started = start_two_step(api, credentials, first, key)
    assert started.status_code == 201, started.text
    session = started.json()
    listed = session["existing_signatures"]
    assert [(s["field"], s["indication"]) for s in listed] == [("Signature1", "TOTAL_PASSED")]
    # Resent: the same session, the same earlier signatures.
    again = start_two_step(api, credentials, first, key)
    assert again.status_code == 200, again.text
    assert again.json()["existing_signatures"] == listed
    done = api.post(
        session["complete_url"],
        headers=auth(credentials),
        json={"signature": officer_token.sign_digest(session["digest"])},
    )
    assert done.status_code == 201, done.text
    assert done.json()["existing_signatures"] == listed
    report = verify(api, download(api, credentials, done.json()))
    assert report["verdict"] == "TOTAL_PASSED", report
    assert len(report["signatures"]) == 2


def prepare_over(services: Services, session_id: str, pdf: bytes) -> str:
    """Session ``session_id`` re-prepared by the engine itself over ``pdf`` (as a session
    prepared before a check existed would be), bypassing step 1's checks; returns the base64
    digest the officer's token signs."""
    with services.db.transaction() as db:
        row = db.get(ExternalSession, session_id)
        assert row is not None
        cert = x509.Certificate.load(row.certificate)
        chain = [x509.Certificate.load(der) for _, _, der in pem.unarmor(row.chain, multiple=True)]
    prepared = run_sync(
        async_prepare_external(pdf, cert, chain, SignOptions(level=SignatureLevel.B_B))
    )
    with services.db.transaction() as db:
        db.execute(
            update(ExternalSession)
            .where(ExternalSession.id == session_id)
            .values(
                prepared_pdf=prepared.prepared_pdf,
                document_digest=prepared.document_digest,
                reserved_start=prepared.reserved_start,
                reserved_end=prepared.reserved_end,
                signed_attrs=prepared.signed_attrs,
                md_algorithm=prepared.md_algorithm,
                input_pdf_sha256=hashlib.sha256(pdf).hexdigest(),
                input_size=len(pdf),
            )
        )
    return base64.b64encode(hashlib.sha256(prepared.signed_attrs).digest()).decode()


def test_step_two_judges_the_earlier_signatures_again(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    """Step 2 does not rely on step 1 alone: a session whose prepared document carries a
    tampered earlier signature (prepared as before the check existed, by the engine itself)
    is refused at completion, and nothing is stored."""
    valid = signed_by_service(api, credentials)
    started = start_two_step(api, credentials, valid)
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]
    digest = prepare_over(services, session_id, tampered(valid))
    before, created = snapshot(services), len(audit_details(services, "signature.created"))
    done = api.post(
        f"/v1/signatures/external/{session_id}/complete",
        headers=auth(credentials),
        json={"signature": officer_token.sign_digest(digest)},
    )
    assert done.status_code == 422, done.text
    assert_refusal(done.json(), "Signature1", {"HASH_FAILURE"})
    assert_nothing_written(before, services)
    assert len(audit_details(services, "signature.created")) == created
    entry = audit_details(services, "signature.refused")[-1]
    assert entry["flow"] == "two-step-complete"
    with services.db.transaction() as db:
        row = db.get(ExternalSession, session_id)
        assert row is not None and row.state == "pending"


def kid_signed_then_damaged(pki: DevPki) -> bytes:
    """A signed decision that a byte search does not see as signed (the signature field is a
    kid whose ``/FT /Sig`` is inherited from its parent, and the signature dictionary writes
    ``/ByteRange<NUL>[``), then an unsigned update whose ``startxref`` points nowhere: damage
    pyHanko cannot read, so the service would rebuild it (red team 17b R17B-3's input)."""
    name = generic.pdf_name
    writer = _writer(make_pdf())
    page_ref = writer.root["/Pages"]["/Kids"][0]
    parent = generic.DictionaryObject(
        {name("/T"): generic.TextStringObject("Ky"), name("/FT"): name("/Sig")}
    )
    parent_ref = writer.add_object(parent)
    kid_ref = writer.add_object(
        generic.DictionaryObject(
            {
                name("/T"): generic.TextStringObject("A"),
                name("/Parent"): parent_ref,
                name("/Type"): name("/Annot"),
                name("/Subtype"): name("/Widget"),
                name("/Rect"): generic.ArrayObject([generic.NumberObject(0)] * 4),
                name("/F"): generic.NumberObject(132),
                name("/P"): page_ref,
            }
        )
    )
    parent[name("/Kids")] = generic.ArrayObject([kid_ref])
    page = page_ref.get_object()
    page[name("/Annots")] = generic.ArrayObject([kid_ref])
    writer.update_container(page)
    writer.root[name("/AcroForm")] = generic.DictionaryObject(
        {
            name("/Fields"): generic.ArrayObject([parent_ref]),
            name("/SigFlags"): generic.NumberObject(3),
        }
    )
    writer.update_root()
    buffer = io.BytesIO()
    writer.write(buffer)
    key = load_pkcs12_file(pki.p12_path("spare-seal"), DEV_KEY_PASSPHRASE.encode())
    meta = signers.PdfSignatureMetadata(field_name="Ky.A", subfilter=fields.SigSeedSubFilter.PADES)
    prepared, _, out = asyncio.run(
        signers.PdfSigner(meta, signer=key.signer).async_digest_doc_for_signing(
            _writer(buffer.getvalue()), existing_fields_only=True
        )
    )
    data = bytearray(out.getvalue())
    at = data.find(b"/ByteRange [")
    data[at : at + 12] = b"/ByteRange\x00["
    start, end = prepared.reserved_region_start, prepared.reserved_region_end
    digest = hashlib.sha256(bytes(data[:start]) + bytes(data[end:])).digest()
    signature = asyncio.run(key.signer.async_sign(digest, "sha256", use_pades=True))
    signed = io.BytesIO(bytes(data))
    PdfTBSDocument.resume_signing(signed, PreparedByteRangeDigest(digest, start, end), signature)
    return signed.getvalue() + b"\n9999 0 obj\n(x)\nendobj\nstartxref\n123456789\n%%EOF\n"


def test_signatures_found_after_a_repair_refuse_it(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    """A damaged input the raw pre-check takes for unsigned is rebuilt; when the rebuilt
    document carries signatures, the rewrite has broken them: SIGNED_PDF_DAMAGED, nothing
    stored (it was signed, 201 "repaired", its earlier signature destroyed)."""
    data = kid_signed_then_damaged(dev_pki[0])
    before = snapshot(services)
    response = sign_multipart(api, credentials, data)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "SIGNED_PDF_DAMAGED"
    assert_nothing_written(before, services)


# --- a signature no form field reaches (red team 19b, R19B-1) ---------------------------------


def unlisted(signed: bytes) -> bytes:
    """``signed`` plus an incremental update that drops ``/AcroForm`` from the catalog: its
    signature dictionary stays in the file and its widget on the page (a viewer still draws
    the stamp), but no form field reaches it."""
    writer = _writer(signed)
    del writer.root["/AcroForm"]
    writer.update_root()
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _refused_unreachable(body: dict[str, Any]) -> None:
    assert body["code"] == REFUSED, body
    assert body["details"]["code"] == "UNREACHABLE_SIGNATURE", body
    assert any(ch in body["message"] for ch in VIETNAMESE_LETTERS), body


@pytest.mark.parametrize("flow", ["multipart", "raw", "batch", "two-step"])
def test_a_signature_no_field_reaches_is_judged_in_every_flow(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    dev_pki: tuple[DevPki, int],
    flow: str,
) -> None:
    """A revoked signer's signature whose field was taken out of the form was countersigned
    (201, registered in force) in every flow: the earlier signatures were judged only when
    form fields were filled. Now a mark of a signature in the bytes is enough to judge them."""
    data = unlisted(signed_locally(dev_pki[0], "revoked-signer"))
    before = snapshot(services)
    if flow == "batch":
        response = sign_batch(api, credentials, [data])
        assert response.status_code == 200, response.text
        (result,) = response.json()["results"]
        assert result["status"] == "failed", result
        _refused_unreachable(result["error"])
    else:
        send = {"multipart": sign_multipart, "raw": sign_raw, "two-step": start_two_step}[flow]
        response = send(api, credentials, data)
        assert response.status_code == 422, response.text
        _refused_unreachable(response.json())
        assert_nothing_written(before, services)


def test_step_two_judges_a_signature_no_field_reaches(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    dev_pki: tuple[DevPki, int],
    officer_token: Token,
) -> None:
    """At step 2 the completed document's document-level problems are judged even with no
    earlier signature in a field (a session prepared by the engine over such a file, as before
    the check): refused, nothing stored."""
    started = start_two_step(api, credentials, make_pdf())
    assert started.status_code == 201, started.text
    session_id = started.json()["session_id"]
    digest = prepare_over(
        services, session_id, unlisted(signed_locally(dev_pki[0], "revoked-signer"))
    )
    before = snapshot(services)
    done = api.post(
        f"/v1/signatures/external/{session_id}/complete",
        headers=auth(credentials),
        json={"signature": officer_token.sign_digest(digest)},
    )
    assert done.status_code == 422, done.text
    _refused_unreachable(done.json())
    assert_nothing_written(before, services)


def _fresh_xref(data: bytes) -> bytes:
    """``data`` (one revision, no object streams) with a classic xref table rebuilt from the
    objects' positions: after names inside objects were respelt (lengths changed)."""
    body = data[: data.rindex(b"\nxref\n") + 1]
    offsets = {int(m.group(1)): m.start() for m in re.finditer(rb"(?m)^(\d+) 0 obj\b", body)}
    size = max(offsets) + 1
    trailer = re.search(rb"trailer\s*<<(.*?)>>\s*startxref", data, re.S)
    assert trailer is not None
    fields_ = re.sub(rb"/Size \d+", b"/Size %d" % size, trailer.group(1))
    table = [b"xref\n0 %d\n" % size, b"0000000000 65535 f \n"]
    table += [
        b"%010d 00000 n \n" % offsets[n] if n in offsets else b"0000000000 00000 f \n"
        for n in range(1, size)
    ]
    return (
        body
        + b"".join(table)
        + b"trailer\n<<"
        + fields_
        + b">>\nstartxref\n%d\n%%%%EOF\n" % len(body)
    )


def test_a_signature_with_escaped_names_and_no_field_is_found(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    """Red team 20 R20-3: a revoked signer's signature whose field was removed and whose names
    were spelt with #XX escapes (/Byte#52ange is /ByteRange to every reader) was not found by
    the verifier's search of the raw bytes, so the service countersigned it. Now it is found
    (UNREACHABLE_SIGNATURE), and the countersignature refused."""
    pdf = pikepdf.open(io.BytesIO(signed_locally(dev_pki[0], "revoked-signer")))
    del pdf.Root["/AcroForm"]
    out = io.BytesIO()
    pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.disable, compress_streams=False)
    data = out.getvalue()
    assert data.count(b"/ByteRange") == 1
    data = _fresh_xref(data.replace(b"/ByteRange", b"/Byte#52ange"))
    report = verify(api, data)
    assert report["verdict"] == "TOTAL_FAILED", report
    assert [p["code"] for p in report["problems"]] == ["UNREACHABLE_SIGNATURE"], report
    before = snapshot(services)
    response = sign_multipart(api, credentials, data)
    assert response.status_code == 422, response.text
    _refused_unreachable(response.json())
    assert_nothing_written(before, services)
