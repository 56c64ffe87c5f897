"""The registry of issued documents (issue 11): every signed output is registered in the
transaction that stores it, verification answers "issued by whom, still in force?", agencies
revoke or supersede their own documents (audited, final), and nothing of another agency's can
be read or changed. On SQLite and PostgreSQL (the ``database_url`` fixture's parameters).

Real parts only: the dev PKI on loopback signs and timestamps, the API runs in-process, the
never-issued document is signed by pyHanko directly with a dev PKI key."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import re
from io import BytesIO
from typing import Any

import pytest
from asn1crypto import cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import func, select

from signing_service.services import registry
from signing_service.services.container import Services
from signing_service.services.verification import verify_document, with_registry
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.store.models import AuditEntry, RegisteredDocument
from tests.support.pdfs import make_pdf

BASE = "http://127.0.0.1:8000"
DOSSIER = "000.00.12.H12-261127-0001"


def client(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['api_key']}"}


@pytest.fixture
def public(services: Services) -> Services:
    services.settings.public_base_url = BASE
    return services


def sign(
    api: Any, credentials: dict[str, Any], pdf: bytes, *, agency: int = 0, **form: str
) -> dict[str, Any]:
    profile = "agency-a-seal" if agency == 0 else "agency-b-seal"
    done = api.post(
        "/v1/signatures",
        headers=client(credentials, agency),
        data={"profile": profile, "level": "B-T", **form},
        files={"file": ("quyet-dinh-123.pdf", pdf, "application/pdf")},
    )
    assert done.status_code == 201, done.text
    body: dict[str, Any] = done.json()
    return body


def content(api: Any, credentials: dict[str, Any], body: dict[str, Any], agency: int = 0) -> bytes:
    got = api.get(body["document"]["download_url"], headers=client(credentials, agency))
    assert got.status_code == 200, got.text
    return bytes(got.content)


def verify(api: Any, pdf: bytes) -> dict[str, Any]:
    answer = api.post("/v1/verifications", files={"file": ("x.pdf", pdf, "application/pdf")})
    assert answer.status_code == 200, answer.text
    report: dict[str, Any] = answer.json()
    return report


def change(
    api: Any, credentials: dict[str, Any], public_id: str, action: str, agency: int = 0, **body: Any
) -> Any:
    return api.post(
        f"/v1/registered-documents/{public_id}/{action}",
        headers=client(credentials, agency),
        json=body,
    )


def audit_entries(services: Services, action: str) -> list[AuditEntry]:
    with services.db.transaction() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def registered_count(services: Services) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(RegisteredDocument)) or 0


# -- registration ---------------------------------------------------------------------------


def test_signed_document_is_registered_in_force_with_its_codes(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    body = sign(
        api,
        credentials,
        make_pdf(),
        dossier_code=DOSSIER,
        result_code="auto",
        appearance_kind="annex",
        document_number="123/QĐ-STP",
    )
    ref = body["registry"]
    public_id = ref["public_id"]
    assert registry.PUBLIC_ID.fullmatch(public_id), public_id
    assert ref["link"] == f"{BASE}/xac-minh/{public_id}"

    record = api.get(f"/v1/registry/{public_id}")  # anonymous
    assert record.status_code == 200, record.text
    got = record.json()
    assert got == {
        "found": True,
        "public_id": public_id,
        "link": ref["link"],
        "agency": {"code": "000.00.12.H12", "name": got["agency"]["name"]},
        "kind": "annex",
        "dossier_code": DOSSIER,
        "result_code": f"{DOSSIER}-KQ1",
        "document_number": "123/QĐ-STP",
        "issued_at": body["signed_at"],
        "status": "in_force",
        "status_changed_at": None,
        "reason": None,
        "superseded_by": None,
        "signed_further_by": None,
        "status_from": None,
        "version": 1,
        "newer_version": False,
    }
    assert got["agency"]["name"]  # the agency's name as registered
    # Public metadata only: not the file's name, not its hash, not the document's id.
    assert "quyet-dinh" not in record.text
    assert body["document"]["id"] not in record.text
    assert body["document"]["sha256"] not in record.text

    # The verification of the signed bytes carries the same record, and the signature passes.
    signed = content(api, credentials, body)
    assert hashlib.sha256(signed).hexdigest() == body["document"]["sha256"]
    report = verify(api, signed)
    assert report["verdict"] == "TOTAL_PASSED", report["message"]
    assert report["registry"] == {**got, "matched": "file"}

    # The agency's full view adds the document's id and hash.
    full = api.get(f"/v1/registered-documents/{public_id}", headers=client(credentials))
    assert full.status_code == 200, full.text
    assert full.json()["document_id"] == body["document"]["id"]
    assert full.json()["sha256"] == body["document"]["sha256"]
    assert full.json()["signs_further"] is None

    # The signature's audit entry names the registration.
    created = audit_entries(public, "signature.created")[-1]
    assert json.loads(created.details)["public_id"] == public_id


def test_invisible_batch_and_unconfigured_link(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Batch signing registers each document; without a public base URL the link is null
    (the record exists all the same)."""
    assert services.settings.public_base_url is None
    done = api.post(
        "/v1/signatures/batch",
        headers=client(credentials),
        data={"profile": "agency-a-seal", "level": "B-B", "appearance_kind": "none"},
        files=[("files", ("a.pdf", make_pdf())), ("files", ("b.pdf", make_pdf(pages=2)))],
    )
    assert done.status_code == 200, done.text
    results = done.json()["results"]
    assert [r["status"] for r in results] == ["signed", "signed"]
    ids = [r["registry"]["public_id"] for r in results]
    assert len(set(ids)) == 2 and all(r["registry"]["link"] is None for r in results)
    for public_id in ids:
        got = api.get(f"/v1/registry/{public_id}").json()
        assert (got["kind"], got["link"], got["status"]) == ("none", None, "in_force")
    assert registered_count(services) == 2


def test_registered_in_the_same_transaction_as_the_document(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """A signing refused at storing (a given result code the counter already passed is fine,
    but an exhausted ``auto`` is refused in the transaction) leaves no registration behind."""
    from signing_service.services.documents import MAX_RESULT_NUMBER

    sign(api, credentials, make_pdf(), dossier_code=DOSSIER, result_code=f"{DOSSIER}-KQ1")
    before = registered_count(services)
    assert before == 1
    sign(
        api,
        credentials,
        make_pdf(),
        dossier_code=DOSSIER,
        result_code=f"{DOSSIER}-KQ{MAX_RESULT_NUMBER}",
    )
    refused = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={
            "profile": "agency-a-seal",
            "level": "B-B",
            "dossier_code": DOSSIER,
            "result_code": "auto",
        },
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "RESULT_CODE_EXHAUSTED")
    assert registered_count(services) == 2


# -- status changes -------------------------------------------------------------------------


def test_revoke_is_audited_final_and_shown_by_verification(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    body = sign(api, credentials, make_pdf(), dossier_code=DOSSIER)
    public_id = body["registry"]["public_id"]
    reason = "Quyết định bị hủy bỏ theo Quyết định số 45/QĐ-STP ngày 28/11/2026"
    revoked = change(api, credentials, public_id, "revoke", reason=reason)
    assert revoked.status_code == 200, revoked.text
    record = revoked.json()
    assert (record["status"], record["reason"]) == ("revoked", reason)
    assert record["status_changed_at"].endswith("+07:00")

    report = verify(api, content(api, credentials, body))
    # Still a valid signature: the registry says the document is no longer in force.
    assert report["verdict"] == "TOTAL_PASSED"
    assert report["registry"]["status"] == "revoked"
    assert report["registry"]["reason"] == reason
    assert report["registry"]["matched"] == "file"

    entries = audit_entries(public, "registry.revoked")
    assert len(entries) == 1
    assert entries[0].subject == public_id
    assert entries[0].agency_code == "000.00.12.H12"
    assert json.loads(entries[0].details) == {
        "document_id": body["document"]["id"],
        "reason": reason,
        "superseded_by": None,
    }

    # Final: neither a second revocation nor a supersession changes it (409, not audited).
    other = sign(api, credentials, make_pdf())["registry"]["public_id"]
    for action, extra in (("revoke", {}), ("supersede", {"superseded_by": other})):
        again = change(api, credentials, public_id, action, reason="Lần hai", **extra)
        assert (again.status_code, again.json()["code"]) == (409, "REGISTRY_STATUS_FINAL")
    assert len(audit_entries(public, "registry.revoked")) == 1
    assert audit_entries(public, "registry.superseded") == []
    assert api.get(f"/v1/registry/{public_id}").json()["reason"] == reason


def test_supersede_links_to_the_newer_document(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    old = sign(api, credentials, make_pdf(), dossier_code=DOSSIER, result_code="auto")
    new = sign(api, credentials, make_pdf(pages=2), dossier_code=DOSSIER, result_code="auto")
    old_id, new_id = old["registry"]["public_id"], new["registry"]["public_id"]
    done = change(
        api,
        credentials,
        old_id,
        "supersede",
        superseded_by=new_id,
        reason="Đính chính sai sót về tên người nộp hồ sơ",
    )
    assert done.status_code == 200, done.text
    assert done.json()["superseded_by"] == {
        "public_id": new_id,
        "link": f"{BASE}/xac-minh/{new_id}",
        "document_id": new["document"]["id"],
        "status": "in_force",
    }
    report = verify(api, content(api, credentials, old))
    assert report["registry"]["status"] == "superseded"
    assert report["registry"]["superseded_by"] == {
        "public_id": new_id,
        "link": f"{BASE}/xac-minh/{new_id}",
        "status": "in_force",
    }
    assert report["registry"]["result_code"] == f"{DOSSIER}-KQ1"
    newer = verify(api, content(api, credentials, new))["registry"]
    assert (newer["status"], newer["result_code"]) == ("in_force", f"{DOSSIER}-KQ2")
    entries = audit_entries(public, "registry.superseded")
    assert [e.subject for e in entries] == [old_id]
    assert json.loads(entries[0].details)["superseded_by"] == new_id


def test_a_revoked_replacement_is_never_offered_as_the_document_to_use(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """A superseded by B, then B revoked: A's record, report, sentence, page and PDF report
    name B with its status, and never say "use the new document" (left from session 15: A's
    page pointed to B as the one to use)."""
    from dataclasses import asdict

    from signing_service.reporting.pdf import _registry_rows
    from signing_service.services.registry_records import registry_sentence
    from signing_service.web.present import present

    old = sign(api, credentials, make_pdf(), dossier_code=DOSSIER, result_code="auto")
    new = sign(api, credentials, make_pdf(pages=2), dossier_code=DOSSIER, result_code="auto")
    old_id, new_id = old["registry"]["public_id"], new["registry"]["public_id"]
    reason = "Đính chính sai sót"
    done = change(api, credentials, old_id, "supersede", superseded_by=new_id, reason=reason)
    assert done.status_code == 200, done.text
    before = present(verify(api, content(api, credentials, old))).registry
    assert before is not None and "hãy dùng văn bản mới" in before.text
    assert (
        change(api, credentials, new_id, "revoke", reason="Ban hành sai thẩm quyền").status_code
        == 200
    )
    assert api.get(f"/v1/registry/{old_id}").json()["superseded_by"]["status"] == "revoked"
    report = verify(api, content(api, credentials, old))
    assert report["registry"]["status"] == "superseded"
    assert report["registry"]["superseded_by"]["status"] == "revoked"
    assert "văn bản thay thế này đã bị thu hồi" in registry_sentence(report["registry"])
    # The one message a portal shows, too (new user 22 #3).
    assert report["status"]["code"] == "SUPERSEDED"
    assert "hãy dùng văn bản mới" not in report["status"]["message"], report["status"]
    assert "không còn hiệu lực" in report["status"]["message"]
    view = present(report).registry
    assert view is not None
    assert "hãy dùng văn bản mới" not in view.text
    assert "cũng đã bị thu hồi" in view.text
    assert view.superseded_by_status_label == "Đã bị thu hồi"
    rows = {label: value for label, value in _registry_rows(asdict(view))}
    assert rows["Được thay thế bởi"].endswith("(Đã bị thu hồi)")


def _officer_signs(api: Any, services: Services, credentials: dict[str, Any]) -> dict[str, Any]:
    """Two-step signing with the dev officer's key (the key stays in this test)."""
    assert services.dev_pki is not None
    key, _, _ = pkcs12.load_key_and_certificates(
        services.dev_pki.p12_path("officer").read_bytes(), DEV_KEY_PASSPHRASE.encode()
    )
    started = api.post(
        "/v1/signatures/external",
        headers=client(credentials),
        data={"profile": "agency-a-officer", "level": "B-T", "dossier_code": DOSSIER},
        files={
            "file": ("to-trinh.pdf", make_pdf(), "application/pdf"),
            "certificate": ("officer.pem", services.dev_pki.cert_path("officer").read_bytes()),
        },
    )
    assert started.status_code == 201, started.text
    session = started.json()
    signature = key.sign(  # type: ignore[union-attr, call-arg]
        base64.b64decode(session["digest"]),
        padding.PKCS1v15(),  # type: ignore[arg-type]
        utils.Prehashed(hashes.SHA256()),  # type: ignore[arg-type]
    )
    done = api.post(
        session["complete_url"],
        headers=client(credentials),
        json={"signature": base64.b64encode(signature).decode()},
    )
    assert done.status_code == 201, done.text
    body: dict[str, Any] = done.json()
    return body


def test_officer_then_seal_is_signed_further_not_revoked(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    officer = _officer_signs(api, public, credentials)
    first = officer["registry"]["public_id"]
    by_officer = content(api, credentials, officer)
    sealed = sign(api, credentials, by_officer, dossier_code=DOSSIER)
    second = sealed["registry"]["public_id"]
    assert first != second

    earlier = verify(api, by_officer)["registry"]
    assert earlier["status"] == "in_force"
    assert earlier["signed_further_by"] == {
        "public_id": second,
        "link": f"{BASE}/xac-minh/{second}",
        "status": "in_force",
    }
    final = verify(api, content(api, credentials, sealed))
    assert final["verdict"] == "TOTAL_PASSED", final["message"]
    assert len(final["signatures"]) == 2
    assert final["registry"]["public_id"] == second
    assert final["registry"]["signed_further_by"] is None
    full = api.get(f"/v1/registered-documents/{second}", headers=client(credentials)).json()
    assert full["signs_further"]["public_id"] == first


def test_an_earlier_version_is_not_changed_alone(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """New user 22 #2: superseding (or revoking) the officer's version while the sealed
    version signed further from it stayed in force left the sealed file reading "thay thế" in
    its headline over an "in force" record. The newest version answers for the line: the
    earlier one is refused 409 REGISTRY_HAS_NEWER_VERSION naming it, nothing changed; changing
    the newest one changes both."""
    officer = _officer_signs(api, public, credentials)
    first = officer["registry"]["public_id"]
    sealed = sign(api, credentials, content(api, credentials, officer), dossier_code=DOSSIER)
    second = sealed["registry"]["public_id"]
    replacement = sign(api, credentials, make_pdf(pages=2))["registry"]["public_id"]
    for action, body in (("revoke", {}), ("supersede", {"superseded_by": replacement})):
        refused = change(api, credentials, first, action, reason="R", **body)
        assert refused.status_code == 409, refused.text
        assert refused.json()["code"] == "REGISTRY_HAS_NEWER_VERSION"
        assert refused.json()["details"]["newer_version"] == second
        assert api.get(f"/v1/registry/{first}").json()["status"] == "in_force"
    done = change(api, credentials, second, "revoke", reason="R")
    assert done.status_code == 200, done.text
    assert api.get(f"/v1/registry/{first}").json()["status"] == "revoked"


def test_another_agency_signing_further_is_not_linked(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """Agency B countersigning agency A's document registers B's version, but A's record does
    not point at B's (a record links only to its own agency's)."""
    first = sign(api, credentials, make_pdf())
    countersigned = sign(api, credentials, content(api, credentials, first), agency=1)
    record = api.get(f"/v1/registry/{first['registry']['public_id']}").json()
    assert record["signed_further_by"] is None
    other = api.get(f"/v1/registry/{countersigned['registry']['public_id']}").json()
    assert other["agency"]["code"] == "000.00.31.H26"


@pytest.mark.parametrize("action", ["revoke", "supersede"])
def test_a_countersigned_copy_answers_for_the_issuers_withdrawal(
    api: Any, public: Services, credentials: dict[str, Any], action: str
) -> None:
    """New user 18 #1: agency B countersigned agency A's decision, then A revoked it; B's copy
    (its own record, in force) still read "đang có hiệu lực". The decision inside it, the one
    that has legal force, was withdrawn: the copy is REVOKED (or SUPERSEDED) too, naming A."""
    first = sign(api, credentials, make_pdf())
    countersigned = content(
        api, credentials, sign(api, credentials, content(api, credentials, first), agency=1), 1
    )
    before = verify(api, countersigned)
    assert before["status"]["state"] == "valid", [
        (x["field"], x["sub_indication"], {k: v["code"] for k, v in x["checks"].items()})
        for x in before["signatures"]
    ]
    assert "contains" not in before["registry"]
    body: dict[str, Any] = {"reason": "Sai thẩm quyền"}
    if action == "supersede":
        replacement = sign(api, credentials, make_pdf(pages=2))
        body["superseded_by"] = replacement["registry"]["public_id"]
    changed = change(api, credentials, first["registry"]["public_id"], action, **body)
    assert changed.status_code == 200, changed.text
    after = verify(api, countersigned)
    assert after["registry"]["matched"] == "file"
    assert after["registry"]["status"] == "in_force"  # B's own record
    inner = after["registry"]["contains"]
    assert inner["public_id"] == first["registry"]["public_id"]
    expected = "REVOKED" if action == "revoke" else "SUPERSEDED"
    assert (after["status"]["state"], after["status"]["code"]) == ("invalid", expected)
    assert "Sở Tư pháp tỉnh Demo A" in after["status"]["message"]


def test_a_past_validation_time_reads_the_registry_as_it_stood_then(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """New user 18 #2: asked about a moment before the decision was revoked, the answer was
    REVOKED. As of that moment it was in force; the message says it was revoked since, and the
    registry section keeps today's status."""
    import time
    from datetime import UTC, datetime

    signed = sign(api, credentials, make_pdf(), level="B-LT")
    pdf = content(api, credentials, signed)
    time.sleep(1.5)
    asked = datetime.now(UTC).isoformat(timespec="seconds")
    time.sleep(1.5)
    changed = change(api, credentials, signed["registry"]["public_id"], "revoke", reason="R")
    assert changed.status_code == 200, changed.text
    then = api.post(
        "/v1/verifications",
        files={"file": ("x.pdf", pdf, "application/pdf")},
        data={"validation_time": asked},
    ).json()
    assert then["registry"]["status"] == "revoked"
    assert (then["status"]["state"], then["status"]["code"]) == ("valid", "IN_FORCE"), then
    assert "Sau thời điểm được hỏi" in then["status"]["message"]
    now = verify(api, pdf)
    assert now["status"]["code"] == "REVOKED"
    assert "Sau thời điểm được hỏi" not in now["status"]["message"]


def test_a_validation_time_before_issue_finds_no_issued_document(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """New user 20 #5b: asked about a moment before the decision was issued, the registry
    answered "đang có hiệu lực". As of that moment nothing was issued: the conclusion reads the
    registry as not found then and says when the agency issued it; the section keeps today's."""
    from datetime import UTC, datetime, timedelta

    signed = sign(api, credentials, make_pdf(), level="B-B")
    pdf = content(api, credentials, signed)
    asked = (datetime.now(UTC) - timedelta(minutes=30)).isoformat(timespec="seconds")
    then = api.post(
        "/v1/verifications",
        files={"file": ("x.pdf", pdf, "application/pdf")},
        data={"validation_time": asked},
    ).json()
    assert then["registry"]["status"] == "in_force"  # today's record, unchanged
    assert then["status"]["code"] != "IN_FORCE", then["status"]
    assert "chưa được phát hành" in then["status"]["message"]
    assert verify(api, pdf)["status"]["code"] == "IN_FORCE"


def test_changing_the_unsigned_contents_bytes_does_not_hide_a_revoked_document(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """New user 22 #1: the registry looked a document up by its file's SHA-256, which the
    unsigned bytes of the last signature's /Contents (padding, the hex case, the timestamp
    token) change: a revoked decision so altered read "Hợp lệ", not issued through the
    service. It is found by its signature's value (registered_documents.signature_sha256)."""
    signed = sign(api, credentials, make_pdf(), level="B-T")
    pdf = content(api, credentials, signed)
    changed = change(api, credentials, signed["registry"]["public_id"], "revoke", reason="R")
    assert changed.status_code == 200, changed.text
    hole = list(re.finditer(rb"/Contents\s*<([0-9A-Fa-f]+)>", pdf))[-1]
    padding = hole.end(1) - 1
    assert pdf[padding : padding + 1] == b"0"
    der = bytes.fromhex(hole.group(1).decode())
    content_info = cms.ContentInfo.load(der, strict=False)
    content_info["content"]["signer_infos"][0]["unsigned_attrs"] = None  # token removed
    stripped = content_info.dump().hex().encode()
    room = len(hole.group(1))
    variants = {
        "padding": pdf[:padding] + b"1" + pdf[padding + 1 :],
        "case": pdf[: hole.start(1)] + hole.group(1).swapcase() + pdf[hole.end(1) :],
        "token-removed": pdf[: hole.start(1)]
        + stripped
        + b"0" * (room - len(stripped))
        + pdf[hole.end(1) :],
    }
    for name, altered in variants.items():
        assert altered != pdf and len(altered) == len(pdf)
        report = verify(api, altered)
        assert report["registry"].get("found") is True, (name, report["registry"])
        assert report["registry"]["matched"] == "file", name
        assert report["status"]["code"] == "REVOKED", (name, report["status"])
    # Another signer's CMS over the same bytes is another signature: not this record.
    pki = public.dev_pki
    assert pki is not None
    other = load_pkcs12_file(pki.p12_path("officer"), DEV_KEY_PASSPHRASE.encode()).signer
    _, b, c, d = (int(v) for v in re.findall(rb"/ByteRange\s*\[([^\]]*)\]", pdf)[-1].split())
    digest = hashlib.sha256(pdf[:b] + pdf[c : c + d]).digest()
    forged = asyncio.run(other.async_sign(digest, "sha256", use_pades=True)).dump().hex().encode()
    assert len(forged) <= room
    swapped = pdf[: hole.start(1)] + forged + b"0" * (room - len(forged)) + pdf[hole.end(1) :]
    assert verify(api, swapped)["registry"] == {"found": False}


# -- documents the service did not issue ------------------------------------------------------


def test_validly_signed_document_never_issued_is_not_found_and_still_passes(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers, timestamps
    from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner

    pki = services.dev_pki
    assert pki is not None
    signer = signers.SimpleSigner.load_pkcs12(
        pki.p12_path("agency-a-seal"), passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert signer is not None
    from signing_service.services.allowlists import tsa_url

    tsa = timestamps.HTTPTimeStamper(tsa_url(services, None))
    out = BytesIO()
    PdfSigner(
        PdfSignatureMetadata(field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES),
        signer=signer,
        timestamper=tsa,
    ).sign_pdf(IncrementalPdfFileWriter(BytesIO(make_pdf())), output=out)
    report = verify(api, out.getvalue())
    assert report["verdict"] == "TOTAL_PASSED", report["message"]
    assert report["registry"] == {"found": False}
    # The CLI's use case (in this thread, no worker process) says the same.
    direct = verify_document(services, out.getvalue(), actor="cli")
    assert direct["registry"] == {"found": False}
    # And so do an unsigned PDF and a tampered copy of a registered one.
    assert verify(api, make_pdf())["registry"] == {"found": False}
    body = sign(api, credentials, make_pdf())
    tampered = bytearray(content(api, credentials, body))
    at = bytes(tampered).index(b"trang 1")
    tampered[at + 6] = ord("9")
    report = verify(api, bytes(tampered))
    assert report["verdict"] == "TOTAL_FAILED"
    assert report["registry"] == {"found": False}


def test_registered_revision_with_content_appended_after_issue(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """The file is not registered, but the revision its signature covers is: the registry
    names the issued document and says what was matched."""
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    body = sign(api, credentials, make_pdf(), dossier_code=DOSSIER)
    issued = content(api, credentials, body)
    writer = IncrementalPdfFileWriter(BytesIO(issued))
    writer.set_info(
        generic.DictionaryObject({generic.NameObject("/Title"): generic.TextStringObject("sửa")})
    )
    out = BytesIO()
    writer.write(out)
    appended = out.getvalue()
    assert appended.startswith(issued) and len(appended) > len(issued)
    report = verify(api, appended)
    assert report["registry"]["found"] is True
    assert report["registry"]["matched"] == "revision"
    assert report["registry"]["public_id"] == body["registry"]["public_id"]


def test_with_registry_adds_registry_and_status_to_the_serialised_report() -> None:
    got = json.loads(with_registry(b'{"verdict": "NO_SIGNATURE"}', {"found": False}))
    assert got["registry"] == {"found": False}
    assert got["status"]["state"] == "indeterminate"
    assert got["status"]["code"] == "NO_SIGNATURE"
    with pytest.raises(ValueError):
        with_registry(b"[]", {"found": False})


def test_cli_text_report_names_the_registry_status(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    body = sign(api, credentials, make_pdf())
    report = verify_document(public, content(api, credentials, body), actor="cli")
    sentence = registry.registry_sentence(report["registry"])
    assert "đang có hiệu lực" in sentence and "000.00.12.H12" in sentence
    assert "không được phát hành qua dịch vụ này" in registry.registry_sentence({"found": False})


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bad",
    [
        "abc",
        "A" * 26,  # upper case: not an id the service hands out
        "k5q3w2xv7m4hzp6r2tyc3n5dq0",  # 0 is not base32
        "k5q3w2xv7m4hzp6r2tyc3n5dqaa",  # 27 characters
        "k5q3w2xv7m4hzp6r2tyc3n5dq%00",
        "x" * 300,
        "' OR 1=1 --",
    ],
)
def test_malformed_public_id_is_the_unknown_404(api: Any, services: Services, bad: str) -> None:
    unknown = api.get(f"/v1/registry/{registry.new_public_id()}")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "REGISTRY_RECORD_NOT_FOUND")
    got = api.get(f"/v1/registry/{bad}")
    assert got.status_code == 404
    assert got.json()["code"] in ("REGISTRY_RECORD_NOT_FOUND", "NOT_FOUND")
    if got.json()["code"] == "REGISTRY_RECORD_NOT_FOUND":
        assert got.content == unknown.content
    assert registry.lookup_public_id(services, bad) is None
    assert registry.lookup_sha256(services, bad) is None


def test_status_change_refusals(api: Any, public: Services, credentials: dict[str, Any]) -> None:
    a1 = sign(api, credentials, make_pdf())["registry"]["public_id"]
    a2 = sign(api, credentials, make_pdf(pages=2))["registry"]["public_id"]
    b1 = sign(api, credentials, make_pdf(), agency=1)["registry"]["public_id"]
    unknown = registry.new_public_id()
    audited = len(audit_entries(public, "registry.revoked")) + len(
        audit_entries(public, "registry.superseded")
    )

    def refused(target: str, action: str, status: int, code: str, **body: Any) -> Any:
        got = change(api, credentials, target, action, **body)
        assert (got.status_code, got.json()["code"]) == (status, code), got.text
        return got

    for reason in ("", "   ", "x" * 501, "lý do\x00", "dòng một\ndòng hai"):
        refused(a1, "revoke", 422, "INVALID_REGISTRY_REASON", reason=reason)
    refused(a1, "revoke", 422, "INVALID_REQUEST")  # no reason at all
    refused(a1, "revoke", 422, "INVALID_REQUEST", reason="Lý do", extra="x")
    # Supersede by itself, by an unknown id, by another agency's document (the same answer
    # as unknown, byte for byte), by a malformed id.
    refused(a1, "supersede", 422, "INVALID_SUPERSEDING_DOCUMENT", superseded_by=a1, reason="R")
    by_unknown = refused(
        a1, "supersede", 422, "INVALID_SUPERSEDING_DOCUMENT", superseded_by=unknown, reason="R"
    )
    by_other = refused(
        a1, "supersede", 422, "INVALID_SUPERSEDING_DOCUMENT", superseded_by=b1, reason="R"
    )
    assert by_other.content == by_unknown.content
    refused(a1, "supersede", 422, "INVALID_SUPERSEDING_DOCUMENT", superseded_by="../x", reason="R")
    # Another agency's document, and an unknown one: the same 404, byte for byte.
    for action, body in (("revoke", {}), ("supersede", {"superseded_by": a2})):
        theirs = refused(b1, action, 404, "REGISTRY_RECORD_NOT_FOUND", reason="R", **body)
        missing = refused(unknown, action, 404, "REGISTRY_RECORD_NOT_FOUND", reason="R", **body)
        assert theirs.content == missing.content
    theirs = api.get(f"/v1/registered-documents/{b1}", headers=client(credentials))
    missing = api.get(f"/v1/registered-documents/{unknown}", headers=client(credentials))
    assert theirs.status_code == 404 and theirs.content == missing.content
    # A revoked document cannot supersede another.
    assert change(api, credentials, a2, "revoke", reason="Thu hồi").status_code == 200
    refused(a1, "supersede", 422, "INVALID_SUPERSEDING_DOCUMENT", superseded_by=a2, reason="R")
    # Nothing else changed; only the one revocation was audited.
    for public_id in (a1, b1):
        assert api.get(f"/v1/registry/{public_id}").json()["status"] == "in_force"
    after = len(audit_entries(public, "registry.revoked")) + len(
        audit_entries(public, "registry.superseded")
    )
    assert after == audited + 1
    # Unauthenticated and the operator's key cannot change anything.
    anonymous = api.post(f"/v1/registered-documents/{a1}/revoke", json={"reason": "R"})
    assert anonymous.status_code == 401


def test_reason_bound_is_characters_not_bytes(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """500 Vietnamese characters (1,000+ UTF-8 bytes) are accepted on both databases."""
    public_id = sign(api, credentials, make_pdf())["registry"]["public_id"]
    reason = ("Thu hồi do sai thẩm quyền ban hành. " * 20)[:500]
    done = change(api, credentials, public_id, "revoke", reason=reason)
    assert done.status_code == 200, done.text
    assert done.json()["reason"] == reason.strip()


def test_public_link_forms() -> None:
    assert registry.public_link(None, "abc") is None
    assert registry.public_link("", "abc") is None
    assert (
        registry.public_link("http://127.0.0.1:8000", "abc") == "http://127.0.0.1:8000/xac-minh/abc"
    )
    assert registry.public_link("https://x.gov.vn/", "abc") == "https://x.gov.vn/xac-minh/abc"
    assert registry.public_link("https://portal.gov.vn/tra-cuu?ma=", "abc") == (
        "https://portal.gov.vn/tra-cuu?ma=abc"
    )
    ids = {registry.new_public_id() for _ in range(1000)}
    assert len(ids) == 1000 and all(registry.PUBLIC_ID.fullmatch(i) for i in ids)


def test_concurrent_status_changes_one_wins(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Two agencies' systems (or two retries) change the same document at once: exactly one
    change is applied and audited, the other is REGISTRY_STATUS_FINAL (row lock on
    PostgreSQL, the write lock on SQLite; one conditional UPDATE decides)."""
    import threading

    from signing_service import errors
    from signing_service.store.models import Agency

    public_id = sign(api, credentials, make_pdf())["registry"]["public_id"]
    newer = sign(api, credentials, make_pdf(pages=2))["registry"]["public_id"]
    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == "000.00.12.H12")).one()
        session.expunge(agency)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def attempt(kind: str) -> None:
        barrier.wait()
        try:
            if kind == "revoke":
                registry.revoke(services, agency, public_id, reason="Thu hồi", actor="t")
            else:
                registry.supersede(
                    services, agency, public_id, superseded_by=newer, reason="Thay", actor="t"
                )
            outcomes.append("ok")
        except errors.ServiceError as e:
            outcomes.append(e.code)

    threads = [threading.Thread(target=attempt, args=(k,)) for k in ("revoke", "supersede")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["REGISTRY_STATUS_FINAL", "ok"], outcomes
    changes = audit_entries(services, "registry.revoked") + audit_entries(
        services, "registry.superseded"
    )
    assert [e.subject for e in changes] == [public_id]


# -- fix lane A: versions, times, malformed ids, the public lookup's rate -------------------


def test_revoking_the_final_version_answers_for_earlier_versions(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """Red team 11 F5: the officer-signed copy of a document the service then sealed is
    revoked with it (derived at lookup, named by ``status_from``); its own record is
    untouched, and an earlier version cannot supersede anything once its final one is
    revoked."""
    officer = _officer_signs(api, public, credentials)
    first = officer["registry"]["public_id"]
    by_officer = content(api, credentials, officer)
    sealed = sign(api, credentials, by_officer, dossier_code=DOSSIER)
    second = sealed["registry"]["public_id"]
    assert api.get(f"/v1/registry/{first}").json()["status_from"] is None

    other = sign(api, credentials, make_pdf())["registry"]["public_id"]
    done = change(api, credentials, second, "revoke", reason="Quyết định bị hủy bỏ")
    assert done.status_code == 200, done.text

    earlier = api.get(f"/v1/registry/{first}").json()
    assert earlier["status"] == "revoked"
    assert earlier["reason"] == "Quyết định bị hủy bỏ"
    assert earlier["status_from"] == {
        "public_id": second,
        "link": f"{BASE}/xac-minh/{second}",
        "status": "revoked",
    }
    report = verify(api, by_officer)
    assert report["verdict"] == "TOTAL_PASSED"
    assert report["registry"]["public_id"] == first
    assert report["registry"]["status"] == "revoked"
    assert report["status"]["code"] == "REVOKED" and report["status"]["state"] == "invalid"
    full = api.get(f"/v1/registered-documents/{first}", headers=client(credentials)).json()
    assert full["status_from"]["document_id"] == sealed["document"]["id"]
    with public.db.transaction() as session:
        row = session.scalars(
            select(RegisteredDocument).where(RegisteredDocument.public_id == first)
        ).one()
        assert row.status == "in_force"  # derived, not written
    # An earlier version of a revoked document is no longer in force: it supersedes nothing.
    refused = change(api, credentials, other, "supersede", superseded_by=first, reason="Đính chính")
    assert refused.status_code == 422, refused.text
    assert refused.json()["details"]["problem"] == "not_in_force"


def test_registry_times_are_whole_seconds(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    public_id = sign(api, credentials, make_pdf())["registry"]["public_id"]
    done = change(api, credentials, public_id, "revoke", reason="Cấp nhầm")
    assert done.status_code == 200, done.text
    record = done.json()
    for key in ("issued_at", "status_changed_at", "registered_at"):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+07:00", record[key]), record[key]
    public_record = api.get(f"/v1/registry/{public_id}").json()
    assert public_record["status_changed_at"] == record["status_changed_at"]


@pytest.mark.parametrize("bad", ["", "   ", "KHONG-PHAI-MA", "a" * 27, "0" * 26])
def test_malformed_superseding_id_is_its_own_problem(
    api: Any, public: Services, credentials: dict[str, Any], bad: str
) -> None:
    public_id = sign(api, credentials, make_pdf())["registry"]["public_id"]
    refused = change(
        api, credentials, public_id, "supersede", superseded_by=bad, reason="Đính chính"
    )
    assert refused.status_code == 422, refused.text
    body = refused.json()
    assert body["code"] == "INVALID_SUPERSEDING_DOCUMENT"
    assert body["details"] == {"problem": "malformed"}
    assert not body["message"].isascii()
    # A well-formed unknown id stays "not_found".
    unknown = change(
        api, credentials, public_id, "supersede", superseded_by="a" * 26, reason="Đính chính"
    )
    assert unknown.json()["details"] == {"problem": "not_found"}


# -- red team 21b: supersession inside one version chain, and concurrent supersessions -----


def _raw_status(services: Services, public_id: str) -> tuple[str, int | None]:
    with services.db.transaction() as session:
        row = session.scalars(
            select(RegisteredDocument).where(RegisteredDocument.public_id == public_id)
        ).one()
        return row.status, row.superseded_by_id


def test_a_record_is_not_superseded_by_its_own_version_chain(
    api: Any, public: Services, credentials: dict[str, Any]
) -> None:
    """Red team 21b, R21B-2: P2 signed further from P1, then P2 "superseded by" P1 answered
    200; P1 took P2's status, so P1 read "superseded by itself" and neither was in force.
    Any record of the same version chain (previous_id / signed_further_by, either direction,
    any distance) is refused as ``self``, and nothing is written."""
    p1 = sign(api, credentials, make_pdf())
    p2 = sign(api, credentials, content(api, credentials, p1))
    p3 = sign(api, credentials, content(api, credentials, p2))
    ids = [p["registry"]["public_id"] for p in (p1, p2, p3)]
    assert api.get(f"/v1/registry/{ids[1]}").json()["signed_further_by"]["public_id"] == ids[2]
    pairs = [(a, b) for a in ids for b in ids if a != b]
    for changed, by in pairs:
        refused = change(
            api, credentials, changed, "supersede", superseded_by=by, reason="Thay thế"
        )
        assert refused.status_code == 422, (changed, by, refused.text)
        body = refused.json()
        assert body["code"] == "INVALID_SUPERSEDING_DOCUMENT"
        assert body["details"] == {"problem": "self"}
        assert not body["message"].isascii()
    assert [_raw_status(public, i) for i in ids] == [("in_force", None)] * 3
    assert audit_entries(public, "registry.superseded") == []
    for public_id in ids:
        assert api.get(f"/v1/registry/{public_id}").json()["status"] == "in_force"
    # Another document still supersedes the chain's final version (and so the whole chain).
    other = sign(api, credentials, make_pdf(pages=2))["registry"]["public_id"]
    done = change(api, credentials, ids[2], "supersede", superseded_by=other, reason="Thay thế")
    assert done.status_code == 200, done.text
    assert api.get(f"/v1/registry/{ids[0]}").json()["superseded_by"]["public_id"] == other


ROUNDS = 8


def _race(services: Services, *calls: Any) -> list[Any]:
    import threading

    from signing_service import errors

    barrier = threading.Barrier(len(calls))
    outcomes: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait()
        try:
            outcomes[i] = calls[i]()
        except errors.ServiceError as e:
            outcomes[i] = e
        except BaseException as e:  # noqa: BLE001 - asserted below (a 500)
            outcomes[i] = e

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return outcomes


def _agency_a(services: Services) -> Any:
    from signing_service.store.models import Agency

    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == "000.00.12.H12")).one()
        session.expunge(agency)
    return agency


def test_opposite_concurrent_supersessions_never_both_apply(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Red team 21b, R21B-3: X superseded by Y at the same moment as Y by X. On PostgreSQL
    (READ COMMITTED) each transaction saw the other record still in force and both
    committed: a cycle, neither in force. One applies; the other is 422 ``not_in_force``."""
    from signing_service import errors
    from signing_service.services.registry_records import RegistryRecord

    agency = _agency_a(services)
    for n in range(ROUNDS):
        x = sign(api, credentials, make_pdf(text=f"X {n}"), level="B-B")["registry"]["public_id"]
        y = sign(api, credentials, make_pdf(text=f"Y {n}"), level="B-B")["registry"]["public_id"]
        outcomes = _race(
            services,
            lambda x=x, y=y: registry.supersede(
                services, agency, x, superseded_by=y, reason="Thay thế", actor="t"
            ),
            lambda x=x, y=y: registry.supersede(
                services, agency, y, superseded_by=x, reason="Thay thế", actor="t"
            ),
        )
        applied = [o for o in outcomes if isinstance(o, RegistryRecord)]
        refused = [o for o in outcomes if not isinstance(o, RegistryRecord)]
        assert len(applied) == 1, (n, outcomes)
        assert isinstance(refused[0], errors.InvalidSupersedingDocument), (n, outcomes)
        assert refused[0].details == {"problem": "not_in_force"}
        statuses = sorted(_raw_status(services, i)[0] for i in (x, y))
        assert statuses == ["in_force", "superseded"], (n, statuses)


def test_supersession_and_revocation_of_the_replacement_are_serialised(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Red team 21b, R21B-3: X superseded by Y at the same moment as Y revoked. On
    PostgreSQL the supersession checked "Y in force" before the revocation committed and
    committed after it: X "superseded by" a document already revoked. Now the two are
    serialised: either the revocation comes first and the supersession is refused
    (``not_in_force``), or the supersession comes first (Y in force when it committed, in
    its answer and in the audit chain's order) and the revocation after it."""
    from signing_service import errors
    from signing_service.services.registry_records import RegistryRecord

    agency = _agency_a(services)
    for n in range(ROUNDS):
        x = sign(api, credentials, make_pdf(text=f"X {n}"), level="B-B")["registry"]["public_id"]
        y = sign(api, credentials, make_pdf(text=f"Y {n}"), level="B-B")["registry"]["public_id"]
        superseded, revoked = _race(
            services,
            lambda x=x, y=y: registry.supersede(
                services, agency, x, superseded_by=y, reason="Thay thế", actor="t"
            ),
            lambda y=y: registry.revoke(services, agency, y, reason="Thu hồi", actor="t"),
        )
        assert isinstance(revoked, RegistryRecord), (n, revoked)
        if isinstance(superseded, RegistryRecord):
            assert superseded.superseded_by is not None
            assert superseded.superseded_by.status == "in_force", n
            seqs = {
                e.subject: e.seq
                for action in ("registry.superseded", "registry.revoked")
                for e in audit_entries(services, action)
                if e.subject in (x, y)
            }
            assert len(seqs) == 2 and seqs[x] < seqs[y], (n, seqs)
        else:
            assert isinstance(superseded, errors.InvalidSupersedingDocument), (n, superseded)
            assert superseded.details == {"problem": "not_in_force"}
            assert _raw_status(services, x) == ("in_force", None)
