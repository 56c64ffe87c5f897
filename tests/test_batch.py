"""Batch signing ("ký hàng loạt"): one profile, one authorisation, per-document results."""

from __future__ import annotations

from typing import Any

import pytest

from signing_service.services.container import Services
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot


def batch(api: Any, credentials: dict[str, Any], docs: list[tuple[str, bytes]], **form: str) -> Any:
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    fields = {"profile": "agency-a-seal", **form}
    files = [("files", (name, data, "application/pdf")) for name, data in docs]
    return api.post("/v1/signatures/batch", headers=headers, data=fields, files=files)


def test_batch_signs_each_document_and_one_broken_fails_alone(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    docs = [(f"qd-{i}.pdf", make_pdf(text=f"Quyet dinh {i}")) for i in range(4)]
    docs.insert(2, ("hong.pdf", make_pdf(padding_bytes=5000)[:2500]))
    before = snapshot(services)
    response = batch(api, credentials, docs, level="B-T")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["signed"], body["failed"]) == (4, 1)
    statuses = [(r["filename"], r["status"]) for r in body["results"]]
    assert statuses[2] == ("hong.pdf", "failed")
    assert body["results"][2]["error"]["code"] == "MALFORMED_PDF"
    after = snapshot(services)
    # Four signed documents (each with its original record), nothing for the broken one.
    assert after.signatures - before.signatures == 4
    assert after.documents - before.documents == 8
    assert after.objects - before.objects == 4

    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    for result in body["results"]:
        if result["status"] == "signed":
            signed = api.get(result["document"]["download_url"], headers=headers).content
            report = api.post("/v1/verifications", files={"file": ("s.pdf", signed)}).json()
            assert report["verdict"] == "TOTAL_PASSED"


def test_batch_over_the_limit_is_refused_whole(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    limit = services.settings.max_batch_documents
    before = snapshot(services)
    response = batch(api, credentials, [(f"{i}.pdf", make_pdf()) for i in range(limit + 1)])
    assert response.status_code == 422
    assert response.json()["code"] == "BATCH_TOO_LARGE"
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    ("form", "status", "code"),
    [
        ({"profile": "khong-co"}, 404, "PROFILE_NOT_FOUND"),
        ({"level": "B-Z"}, 422, "INVALID_SIGNATURE_LEVEL"),
    ],
)
def test_batch_level_problems_refuse_the_whole_batch(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    form: dict[str, str],
    status: int,
    code: str,
) -> None:
    before = snapshot(services)
    response = batch(api, credentials, [("a.pdf", make_pdf()), ("b.pdf", make_pdf())], **form)
    assert response.status_code == status
    assert response.json()["code"] == code
    assert_nothing_written(before, services)


def test_batch_with_a_revoked_signer_is_refused_whole(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    from signing_service.store.models import SigningProfile

    pki = services.dev_pki
    assert pki is not None
    with services.db.transaction() as session:
        session.add(
            SigningProfile(
                agency_id=1,
                name="revoked",
                level="B-B",
                key_uri=f"file:{pki.p12_path('revoked-signer')}",
            )
        )
    before = snapshot(services)
    response = batch(api, credentials, [("a.pdf", make_pdf())], profile="revoked")
    assert response.status_code == 422
    assert response.json()["code"] == "SIGNER_CERT_REVOKED"
    assert_nothing_written(before, services)


def test_batch_needs_an_api_key(api: Any) -> None:
    response = api.post(
        "/v1/signatures/batch",
        data={"profile": "agency-a-seal"},
        files=[("files", ("a.pdf", make_pdf()))],
    )
    assert response.status_code == 401
