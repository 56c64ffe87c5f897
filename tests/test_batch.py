"""Batch signing ("ký hàng loạt"): one profile, one authorisation, per-document results."""

from __future__ import annotations

from typing import Any

import pytest

from signing_service.services.container import Services
from tests.support.multipart import multipart
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot
from tests.support.unsignable import UNSIGNABLE


def batch(api: Any, credentials: dict[str, Any], docs: list[tuple[str, bytes]], **form: str) -> Any:
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    fields = {"profile": "agency-a-seal", **form}
    files = [("files", (name, data, "application/pdf")) for name, data in docs]
    return api.post("/v1/signatures/batch", headers=headers, data=fields, files=files)


def documents(services: Services) -> list[str]:
    """The stored objects that are documents (not the evidence kept per signature)."""
    return [k for k in services.store.list() if not k.startswith("evidence/")]


def test_batch_signs_each_document_and_one_broken_fails_alone(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    docs = [(f"qd-{i}.pdf", make_pdf(text=f"Quyet dinh {i}")) for i in range(4)]
    docs.insert(2, ("hong.pdf", make_pdf(padding_bytes=5000)[:2500]))
    before = snapshot(services)
    documents_before = documents(services)
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
    # One object per signed document; the evidence (services/evidence.py) beside it.
    assert len(documents(services)) - len(documents_before) == 4

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
    from tests.support.keys import profile, store_without_checks

    pki = services.dev_pki
    assert pki is not None
    store_without_checks(services, "revoked-signer", pki.p12_path("revoked-signer"))
    profile(services, "revoked", "revoked-signer")
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


@pytest.mark.parametrize("kind", sorted(UNSIGNABLE))
def test_an_unsignable_pdf_fails_alone_and_every_signed_document_is_returned(
    api: Any, services: Services, credentials: dict[str, Any], kind: str
) -> None:
    """Issue 9: "a batch with one unparsable PDF answers 500 after the documents before it
    were signed and stored, with no ids returned"."""
    docs = [(f"qd-{i}.pdf", make_pdf(text=f"Quyet dinh {i}")) for i in range(3)]
    docs.insert(1, ("khong-ky-duoc.pdf", UNSIGNABLE[kind]()))
    before = snapshot(services)
    objects_before = len(documents(services))
    response = batch(api, credentials, docs, level="B-B")
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["signed"], body["failed"]) == (3, 1)
    failed = body["results"][1]
    assert (failed["status"], failed["error"]["code"]) == ("failed", "MALFORMED_PDF")
    # Every stored signature is one the client was told about, and nothing else was stored.
    returned = {r["signature_id"] for r in body["results"] if r["status"] == "signed"}
    with services.db.transaction() as session:
        from sqlalchemy import select

        from signing_service.store.models import Signature

        stored = set(session.scalars(select(Signature.id)).all())
    assert returned == stored
    after = snapshot(services)
    # One document object per signature (the evidence kept beside them is not counted).
    assert (after.signatures - before.signatures, len(documents(services)) - objects_before) == (
        3,
        3,
    )


def test_a_bad_file_name_fails_alone(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    body, content_type = multipart(
        [
            ("profile", "agency-a-seal"),
            ("level", "B-B"),
            ("files", "a.pdf", make_pdf(text="A")),
            # A raw NUL (HTTP clients percent-encode it; a hostile one does not).
            ("files", b"b\x00.pdf", make_pdf()),
            ("files", "x" * 300, make_pdf()),
        ]
    )
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    before = snapshot(services)
    response = api.post(
        "/v1/signatures/batch",
        headers={**headers, "Content-Type": content_type},
        content=body,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["signed", "failed", "failed"]
    assert {r["error"]["code"] for r in results[1:]} == {"INVALID_FILENAME"}
    assert results[1]["filename"] == "b\\x00.pdf"  # echoed escaped, never raw
    after = snapshot(services)
    assert (after.signatures, after.documents) == (before.signatures + 1, before.documents + 2)


def test_a_dependency_down_stops_the_batch_and_nothing_is_written(
    tmp_path: Any, database_url: str, dev_pki: Any
) -> None:
    """The TSA does not answer: the first document fails TIMESTAMP_UNAVAILABLE, the others are
    not attempted (each would wait for the same time-out), nothing is stored."""
    import json

    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app
    from tests.conftest import make_settings
    from tests.support.keys import profile
    from tests.support.postgres import free_port

    # The operator configured a TSA that is down; the profile names it.
    settings = make_settings(
        tmp_path, database_url, dev_pki, tsas={"hong": f"http://127.0.0.1:{free_port()}/tsa"}
    )
    services = Services.build(settings)
    api = TestClient(create_app(services), raise_server_exceptions=False)
    credentials = json.loads(services.settings.dev_credentials_file.read_text())
    profile(services, "tsa-down", "agency-a-seal", level="B-T", tsa="hong")
    before = snapshot(services)
    docs = [(f"{i}.pdf", make_pdf(text=str(i))) for i in range(3)]
    response = batch(api, credentials, docs, profile="tsa-down")
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["error"]["code"] for r in results] == ["TIMESTAMP_UNAVAILABLE"] * 3
    assert [(r["error"].get("details") or {}).get("attempted") for r in results] == [
        None,
        False,
        False,
    ]
    assert_nothing_written(before, services)
    services.close()


def test_a_batch_in_flight_stops_when_its_api_key_is_revoked_or_its_key_disabled(
    tmp_path: Any, database_url: str, dev_pki: Any
) -> None:
    """Red team 23b, R23B-3: an operator's `client revoke` (the key leaked) or `key disable`
    while a batch was being signed: the batch went on signing, registering and auditing the
    rest under the revoked key / with the disabled seal key. Between documents both are read
    again; what remains is refused (attempted: false) and nothing of it is written."""
    import json
    import threading
    import time

    from sqlalchemy import func, select

    from signing_service.services.accounts import revoke_api_key
    from signing_service.services.keys import disable_key
    from signing_service.services.signing import SignResult, sign_batch
    from signing_service.store.models import Agency, ApiClient, Signature
    from tests.conftest import make_settings

    services = Services.build(make_settings(tmp_path, database_url, dev_pki))
    credentials = json.loads(services.settings.dev_credentials_file.read_text())
    docs = [(f"{i}.pdf", make_pdf(text=str(i))) for i in range(40)]

    def signed_count() -> int:
        with services.db.transaction() as db:
            return int(db.scalar(select(func.count()).select_from(Signature)) or 0)

    def run_with(which: int, profile_name: str, withdraw: Any) -> list[Any]:
        entry = credentials["agencies"][which]
        with services.db.transaction() as db:
            agency = db.scalars(select(Agency).where(Agency.code == entry["code"])).one()
            client = db.scalars(
                select(ApiClient).where(ApiClient.key_id == entry["api_key"].split("_")[1])
            ).one()
            db.expunge_all()
        results: list[Any] = []
        start = signed_count()
        worker = threading.Thread(
            target=lambda: results.extend(
                sign_batch(
                    services,
                    agency,
                    profile_name=profile_name,
                    items=docs,
                    actor=f"api-client:{client.key_id}",
                    client_id=client.id,
                )
            )
        )
        worker.start()
        deadline = time.monotonic() + 120
        while signed_count() - start < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        withdraw(agency, client)
        at_withdrawal = signed_count()
        worker.join(300)
        done = [r for r in results if isinstance(r, SignResult)]
        refused = [r for r in results if not isinstance(r, SignResult)]
        assert len(results) == len(docs)
        assert refused, "the batch finished before the withdrawal: make it longer"
        # At most the document in flight at the withdrawal was signed after it.
        assert signed_count() - at_withdrawal <= 1
        assert len(done) == signed_count() - start
        assert all(r.details.get("attempted") is False for r in refused), refused
        # Signed documents first, then only refusals.
        assert results == done + refused
        return refused

    refused = run_with(
        0,
        "agency-a-seal",
        lambda agency, _: disable_key(
            services, agency_code=agency.code, name="agency-a-seal", actor="op"
        ),
    )
    assert {r.code for r in refused} == {"PROFILE_KEY_MISSING"}
    refused = run_with(
        1, "agency-b-seal", lambda _, client: revoke_api_key(services, client.key_id, actor="op")
    )
    assert {r.code for r in refused} == {"UNAUTHENTICATED"}
    services.close()
