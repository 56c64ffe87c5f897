"""Extension of signed documents (PAdES B-T → B-LT → B-LTA, renewal) and document versions
(issue 12 items 2 and 4): through the API, with the dev PKI's real TSA/OCSP/CRL on loopback,
on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
from typing import Any

from signing_service.services.container import Services
from signing_service.services.extension import extend_pdf, newest_timestamp_expiry
from tests.support.pdfs import make_pdf


def auth(credentials: dict[str, Any], index: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][index]['api_key']}"}


def sign(api: Any, headers: dict[str, str], level: str = "B-T") -> dict[str, Any]:
    response = api.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": "agency-a-seal", "level": level},
        files={"file": ("quyet-dinh.pdf", make_pdf(), "application/pdf")},
    )
    assert response.status_code == 201, response.text
    return response.json()


def content(api: Any, headers: dict[str, str], document_id: str) -> bytes:
    response = api.get(f"/v1/documents/{document_id}/content", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def verify(services: Services, pdf: bytes) -> dict[str, Any]:
    from signing_service.services.verification import verify_document

    return verify_document(services, pdf, actor="test")


def levels(report: dict[str, Any]) -> list[str]:
    return [s["level"] for s in report["signatures"] if s["type"] != "document_timestamp"]


def test_extend_pdf_b_t_to_b_lt_to_b_lta_and_renewal(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    headers = auth(credentials)
    signed = content(api, headers, sign(api, headers)["document"]["id"])
    assert newest_timestamp_expiry(signed) is not None
    lt = extend_pdf(services, signed, "B-LT")
    assert lt.startswith(signed)
    report = verify(services, lt)
    assert report["verdict"] == "TOTAL_PASSED", report["message"]
    assert levels(report) == ["B-LT"]
    lta = extend_pdf(services, lt, "B-LTA")
    report = verify(services, lta)
    assert report["verdict"] == "TOTAL_PASSED", report["message"]
    assert levels(report) == ["B-LTA"]
    renewed = extend_pdf(services, lta, "B-LTA")
    assert renewed.startswith(lta)
    report = verify(services, renewed)
    assert report["verdict"] == "TOTAL_PASSED", report["message"]
    assert levels(report) == ["B-LTA"]
    stamps = [s for s in report["signatures"] if s["type"] == "document_timestamp"]
    assert len(stamps) == 2
    assert hashlib.sha256(renewed).hexdigest() != hashlib.sha256(lta).hexdigest()


def test_store_version_writes_a_new_row_and_moves_the_registry(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    from sqlalchemy import select

    from signing_service.services.documents import get_document, read_content
    from signing_service.services.extension import store_version
    from signing_service.services.registry import lookup_sha256
    from signing_service.store.models import Agency, RegisteredDocument

    headers = auth(credentials)
    created = sign(api, headers)
    first_id = created["document"]["id"]
    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).order_by(Agency.id)).first()
        session.expunge(agency)
    with services.db.transaction() as session:
        public_id = session.scalars(
            select(RegisteredDocument.public_id).where(RegisteredDocument.document_id == first_id)
        ).one()
    first = get_document(services, agency.id, first_id)
    data = read_content(services, first)
    lt = extend_pdf(services, data, "B-LT")
    version = store_version(services, agency, first, lt, reason="extension", level="B-LT")
    assert version.version == 2 and version.previous_version_id == first_id
    assert version.archive_tsa_not_after == newest_timestamp_expiry(lt)
    assert read_content(services, get_document(services, agency.id, version.id)) == lt
    # The previous version stays, and stays readable.
    assert read_content(services, get_document(services, agency.id, first_id)) == data
    with services.db.transaction() as session:
        record = session.scalars(
            select(RegisteredDocument).where(RegisteredDocument.public_id == public_id)
        ).one()
        assert record.document_id == version.id
    assert lookup_sha256(services, hashlib.sha256(lt).hexdigest()) is not None
