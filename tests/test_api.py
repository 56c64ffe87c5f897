"""The HTTP API: the README's round trip, agency isolation and every bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from signing_service.services.container import Services
from tests.support.files import PDF_ZIP_EOF_COMMENT, between_objects, payload_zip
from tests.support.pdfs import encrypted_pdf, make_pdf
from tests.support.state import assert_nothing_written, snapshot
from tests.support.unsignable import UNSIGNABLE


def auth(credentials: dict[str, Any], index: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][index]['api_key']}"}


def sign(api: Any, headers: dict[str, str], data: bytes, **form: str) -> Any:
    fields = {"profile": "agency-a-seal", **form}
    return api.post(
        "/v1/signatures",
        headers=headers,
        data=fields,
        files={"file": ("quyet-dinh.pdf", data, "application/pdf")},
    )


def test_health_and_readiness(api: Any) -> None:
    assert api.get("/healthz").json() == {"status": "ok"}
    assert api.get("/readyz").json() == {"status": "ready"}


def test_round_trip_sign_download_verify(api: Any, credentials: dict[str, Any]) -> None:
    headers = auth(credentials)
    response = sign(api, headers, make_pdf(), level="B-T", dossier_code="000.00.12.H12-261127-0001")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["level"] == "B-T"
    assert body["document"]["dossier_code"] == "000.00.12.H12-261127-0001"
    assert response.headers["Location"] == f"/v1/documents/{body['document']['id']}"

    meta = api.get(f"/v1/documents/{body['document']['id']}", headers=headers)
    assert meta.status_code == 200 and meta.json()["kind"] == "signed"
    content = api.get(body["document"]["download_url"], headers=headers)
    assert content.status_code == 200
    assert content.headers["content-type"] == "application/pdf"
    import hashlib

    assert hashlib.sha256(content.content).hexdigest() == body["document"]["sha256"]

    report = api.post(
        "/v1/verifications", files={"file": ("signed.pdf", content.content, "application/pdf")}
    )
    assert report.status_code == 200
    assert report.headers["content-type"] == "application/json"
    assert report.json()["verdict"] == "TOTAL_PASSED"
    _matches_its_documented_schema(report.json())


def _matches_its_documented_schema(report: dict[str, Any]) -> None:
    """The verification answer is serialised by the worker (not by FastAPI): it must still be
    exactly what the OpenAPI description documents, field for field."""
    from signing_service.api import schemas

    parsed = schemas.VerificationReport.model_validate(report)
    assert set(report) == set(schemas.VerificationReport.model_fields)
    for signature in report["signatures"]:
        assert set(signature) == set(schemas.SignatureReportOut.model_fields)
    assert parsed.model_dump(mode="json")["verdict"] == report["verdict"]


def test_agencies_are_isolated(api: Any, credentials: dict[str, Any]) -> None:
    a, b = auth(credentials, 0), auth(credentials, 1)
    created = sign(api, a, make_pdf(), level="B-B").json()
    doc = created["document"]["id"]
    for path in (f"/v1/documents/{doc}", f"/v1/documents/{doc}/content"):
        response = api.get(path, headers=b)
        assert response.status_code == 404
        assert response.json()["code"] == "DOCUMENT_NOT_FOUND"
    own = api.get(f"/v1/documents/{doc}/content", headers=a)
    assert own.status_code == 200
    # Never sniffed as HTML by a browser (red team 23b, R23B-9), like attachments' content.
    assert own.headers["x-content-type-options"] == "nosniff"
    # Agency B cannot use agency A's profile: it does not exist for B.
    response = sign(api, b, make_pdf(), profile="agency-a-seal")
    assert response.status_code == 404
    assert response.json()["code"] == "PROFILE_NOT_FOUND"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer ssk_0000000000000000_wrong"}, 401),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401),
        ({"Authorization": "Bearer garbage"}, 401),
    ],
)
def test_missing_or_wrong_api_key(
    api: Any, services: Services, headers: dict[str, str], status: int
) -> None:
    before = snapshot(services)
    response = sign(api, headers, make_pdf())
    assert response.status_code == status
    assert response.json()["code"] == "UNAUTHENTICATED"
    assert response.json()["message"].startswith("Thiếu khóa API")
    assert_nothing_written(before, services)


def test_wrong_secret_for_existing_key_id(api: Any, credentials: dict[str, Any]) -> None:
    key = credentials["agencies"][0]["api_key"]
    forged = key.rsplit("_", 1)[0] + "_" + "A" * 43
    response = sign(api, {"Authorization": f"Bearer {forged}"}, make_pdf())
    assert response.status_code == 401


BAD_INPUTS = [
    ("not-a-pdf", b"MZ\x90\x00 this is an executable", {}, 422, "NOT_A_PDF"),
    ("empty", b"", {}, 422, "EMPTY_FILE"),
    ("truncated", make_pdf(padding_bytes=5000)[:2500], {}, 422, "MALFORMED_PDF"),
    ("encrypted", encrypted_pdf(), {}, 422, "ENCRYPTED_PDF"),
    # Signing screens its input for archives as the attachments do (red team 21b R21B-4): the
    # agency's signature would vouch for the ZIP's program as well.
    ("pdf-zip-eof-comment", PDF_ZIP_EOF_COMMENT, {}, 422, "POLYGLOT_FILE"),
    ("zip-between-objects", between_objects(make_pdf(), payload_zip()), {}, 422, "POLYGLOT_FILE"),
    ("unknown-profile", make_pdf(), {"profile": "khong-ton-tai"}, 404, "PROFILE_NOT_FOUND"),
    ("bad-level", make_pdf(), {"level": "B-X"}, 422, "INVALID_SIGNATURE_LEVEL"),
    ("bad-dossier", make_pdf(), {"dossier_code": "HS-1"}, 422, "INVALID_DOSSIER_CODE"),
    (
        "other-agency-dossier",
        make_pdf(),
        {"dossier_code": "000.00.31.H26-261127-0001"},
        422,
        "INVALID_DOSSIER_CODE",
    ),
    # Matched whole: a trailing newline was accepted (issue 9).
    (
        "dossier-trailing-newline",
        make_pdf(),
        {"dossier_code": "000.00.12.H12-261127-0001\n"},
        422,
        "INVALID_DOSSIER_CODE",
    ),
    (
        "dossier-nul",
        make_pdf(),
        {"dossier_code": "000.00.12.H12-261127-0001\x00"},
        422,
        "INVALID_DOSSIER_CODE",
    ),
]


@pytest.mark.parametrize(
    ("name", "data", "form", "status", "code"), BAD_INPUTS, ids=[b[0] for b in BAD_INPUTS]
)
def test_bad_input_is_refused_and_nothing_written(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    name: str,
    data: bytes,
    form: dict[str, str],
    status: int,
    code: str,
) -> None:
    before = snapshot(services)
    response = sign(api, auth(credentials), data, **form)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["message"] and body["message"].isascii() is False  # Vietnamese text
    assert_nothing_written(before, services)


def test_missing_fields(api: Any, credentials: dict[str, Any]) -> None:
    response = api.post("/v1/signatures", headers=auth(credentials), data={})
    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_REQUEST"


@pytest.fixture
def small_limit_api(tmp_path: Any, database_url: str, dev_pki: Any) -> Any:
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app
    from tests.conftest import make_settings

    built = Services.build(
        make_settings(
            tmp_path, database_url, dev_pki, max_upload_bytes=100_000, signing_headroom_bytes=50_000
        )
    )
    with TestClient(create_app(built), raise_server_exceptions=False) as client:
        yield client, built
    built.close()


def test_over_the_size_limit(small_limit_api: Any) -> None:
    import json

    client, built = small_limit_api
    credentials = json.loads(built.settings.dev_credentials_file.read_text())
    before = snapshot(built)
    # Just over the limit: refused by the service after reading (multipart overhead allowed).
    response = sign(client, auth(credentials), make_pdf(padding_bytes=110_000))
    assert response.status_code == 413
    assert response.json()["code"] == "FILE_TOO_LARGE"
    # Far over the limit: refused from Content-Length before the body is read.
    response = sign(client, auth(credentials), make_pdf(padding_bytes=400_000))
    assert response.status_code == 413
    assert response.json()["code"] == "FILE_TOO_LARGE"
    response = client.post(
        "/v1/verifications", files={"file": ("x.pdf", make_pdf(padding_bytes=400_000))}
    )
    assert response.status_code == 413
    assert_nothing_written(before, built)


def test_a_chunked_body_over_the_limit_is_413(small_limit_api: Any) -> None:
    """Red team F9: a body sent with Transfer-Encoding: chunked (no Content-Length) past the
    limit answered 400 INVALID_REQUEST; it is 413 FILE_TOO_LARGE like a declared one."""
    import json

    client, built = small_limit_api
    credentials = json.loads(built.settings.dev_credentials_file.read_text())
    before = snapshot(built)
    boundary = "ranh-gioi"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="profile"\r\n\r\n'
        f'agency-a-seal\r\n--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="x.pdf"\r\nContent-Type: application/pdf\r\n\r\n'
    ).encode()

    def chunks() -> Any:
        yield head
        for _ in range(40):  # 40 × 16 KiB: past the 100 kB limit (+ 64 KiB framing)
            yield b"0" * 16384
        yield f"\r\n--{boundary}--\r\n".encode()

    content_type = {"Content-Type": f"multipart/form-data; boundary={boundary}"}
    for path, headers in (
        ("/v1/signatures", {**auth(credentials), **content_type}),
        ("/v1/verifications", content_type),
    ):
        response = client.post(path, headers=headers, content=chunks())
        assert "content-length" not in response.request.headers
        assert (response.status_code, response.json()["code"]) == (413, "FILE_TOO_LARGE")
    assert_nothing_written(before, built)


def test_every_sha256_shown_is_lower_case_hex(api: Any, credentials: dict[str, Any]) -> None:
    """Newuser finding 6: certificate_sha256 was upper-case beside the document's lower-case
    sha256 in the same answer (signing, admin keys and profiles, verification reports)."""
    import re

    lower = re.compile(r"^[0-9a-f]{64}$")
    signed = sign(api, auth(credentials), make_pdf())
    assert signed.status_code == 201, signed.text
    body = signed.json()
    found = [body["certificate_sha256"], body["document"]["sha256"]]
    admin = {"Authorization": f"Bearer {credentials['agencies'][0]['admin_api_key']}"}
    found += [k["certificate_sha256"] for k in api.get("/v1/admin/keys", headers=admin).json()]
    found += [
        p["certificate_sha256"]
        for p in api.get("/v1/admin/profiles", headers=admin).json()
        if p["certificate_sha256"] is not None
    ]
    download = api.get(body["document"]["download_url"], headers=auth(credentials))
    report = api.post("/v1/verifications", files={"file": ("x.pdf", download.content)}).json()
    found += [s["signer"]["certificate_sha256"] for s in report["signatures"]]
    assert len(found) >= 5 and all(lower.match(value) for value in found), found


def test_verification_bad_inputs(api: Any) -> None:
    response = api.post("/v1/verifications", files={"file": ("x.txt", b"hello")})
    assert (response.status_code, response.json()["code"]) == (422, "NOT_A_PDF")
    response = api.post("/v1/verifications", files={"file": ("x.pdf", b"")})
    assert (response.status_code, response.json()["code"]) == (422, "EMPTY_FILE")
    response = api.post("/v1/verifications", files={"file": ("x.pdf", encrypted_pdf())})
    assert (response.status_code, response.json()["code"]) == (422, "ENCRYPTED_PDF")
    response = api.post("/v1/verifications", files={"file": ("x.pdf", make_pdf())})
    assert response.json()["verdict"] == "NO_SIGNATURE"


def test_unknown_route_and_method(api: Any) -> None:
    assert api.get("/v1/khong-co").json()["code"] == "NOT_FOUND"
    response = api.delete("/v1/verifications")
    assert (response.status_code, response.json()["code"]) == (405, "METHOD_NOT_ALLOWED")


def test_storage_failure_leaves_nothing(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Fault injection at the storage adapter: the object write fails."""
    import storage

    def failing_put(key: str, data: bytes, **_options: Any) -> Any:
        raise storage.StorageUnavailableError("disk gone")

    before = snapshot(services)
    original = services.store.put
    services.store.put = failing_put  # type: ignore[method-assign]
    try:
        response = sign(api, auth(credentials), make_pdf(), level="B-B")
    finally:
        services.store.put = original  # type: ignore[method-assign]
    assert response.status_code == 503
    assert response.json()["code"] == "STORAGE_UNAVAILABLE"
    assert response.headers["Retry-After"] == str(services.settings.retry_after_seconds)
    assert_nothing_written(before, services)


def test_failed_commit_removes_the_stored_object(
    api: Any, services: Services, credentials: dict[str, Any], monkeypatch: Any
) -> None:
    """Fault injection in the transaction: the object was written, the records were not, so
    the object is removed again (no object without its record)."""
    from signing_service import audit

    def broken_append(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("database went away")

    before = snapshot(services)
    monkeypatch.setattr(audit, "append", broken_append)
    response = sign(api, auth(credentials), make_pdf(), level="B-B")
    assert response.status_code == 500
    assert response.json() == {"code": "INTERNAL_ERROR", "message": "Lỗi nội bộ của dịch vụ."}
    assert_nothing_written(before, services)


def test_original_document_is_served_from_the_signed_object(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    headers = auth(credentials)
    original = make_pdf(text="Ban goc")
    body = sign(api, headers, original, level="B-B").json()
    response = api.get(body["input_document"]["download_url"], headers=headers)
    assert response.status_code == 200
    assert response.content == original
    # One object holds both documents (the signature's evidence is kept beside, under
    # evidence/: services/evidence.py).
    documents = [k for k in services.store.list() if not k.startswith("evidence/")]
    assert len(documents) == 1


def test_corrupted_object_is_reported_not_served(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    headers = auth(credentials)
    body = sign(api, headers, make_pdf(), level="B-B").json()
    from signing_service.services.documents import get_document

    doc = get_document(services, 1, body["document"]["id"])
    path = services.store.root / doc.storage_key  # type: ignore[attr-defined]
    raw = bytearray(path.read_bytes())
    raw[100] ^= 0xFF
    path.write_bytes(bytes(raw))
    response = api.get(body["document"]["download_url"], headers=headers)
    assert response.status_code == 500
    assert response.json()["code"] == "STORAGE_INTEGRITY_ERROR"


def test_openapi_documents_the_endpoints(api: Any) -> None:
    spec = api.get("/openapi.json").json()
    for path in (
        "/v1/signatures",
        "/v1/verifications",
        "/v1/documents/{document_id}",
        "/v1/documents/{document_id}/content",
        "/healthz",
        "/readyz",
        "/v1/dossiers/{dossier_code}/attachments",
        "/v1/attachments/{attachment_id}",
        "/v1/attachments/{attachment_id}/content",
        "/v1/attachments/{attachment_id}/legal-hold",
    ):
        assert path in spec["paths"]
    upload = spec["paths"]["/v1/dossiers/{dossier_code}/attachments"]["post"]
    form = upload["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert form["required"] == ["file", "component"]
    assert "Idempotency-Key" in [p["name"] for p in upload["parameters"]]


def _profile(services: Services, name: str, key_label: str, **fields: Any) -> None:
    """A profile whose key passed its checks when registered and has gone bad since."""
    from tests.support.keys import profile, store_without_checks

    pki = services.dev_pki
    assert pki is not None
    store_without_checks(services, key_label, pki.p12_path(key_label))
    profile(services, name, key_label, **fields)


@pytest.mark.parametrize(
    ("key_label", "code"),
    [
        ("revoked-signer", "SIGNER_CERT_REVOKED"),
        ("expired-signer", "SIGNER_CERT_EXPIRED"),
        ("wrong-usage", "SIGNER_CERT_KEY_USAGE"),
        ("weak-key", "ALGORITHM_NOT_ALLOWED"),
    ],
)
def test_bad_signer_certificates_refused(
    api: Any, services: Services, credentials: dict[str, Any], key_label: str, code: str
) -> None:
    _profile(services, f"p-{key_label}", key_label)
    before = snapshot(services)
    response = sign(api, auth(credentials), make_pdf(), profile=f"p-{key_label}")
    assert response.status_code == 422
    assert response.json()["code"] == code
    assert_nothing_written(before, services)


def test_tsa_down_is_503_and_nothing_written(
    tmp_path: Any, database_url: str, dev_pki: Any
) -> None:
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app
    from tests.conftest import make_settings
    from tests.support.keys import profile
    from tests.support.postgres import free_port

    down = f"http://127.0.0.1:{free_port()}/tsa"
    built = Services.build(make_settings(tmp_path, database_url, dev_pki, tsas={"down": down}))
    try:
        credentials = json.loads(built.settings.dev_credentials_file.read_text())
        profile(built, "no-tsa", "agency-a-seal", tsa="down")
        before = snapshot(built)
        with TestClient(create_app(built), raise_server_exceptions=False) as api:
            response = sign(api, auth(credentials), make_pdf(), profile="no-tsa", level="B-T")
        assert response.status_code == 503
        assert response.json()["code"] == "TIMESTAMP_UNAVAILABLE"
        assert_nothing_written(before, built)
    finally:
        built.close()


def test_missing_key_material_is_503(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The key store lost a key's sealed file: 503, and no internal path in the answer."""
    from tests.support.keys import profile, store_without_checks

    assert services.dev_pki is not None
    store_without_checks(services, "lost-key", services.dev_pki.p12_path("agency-a-seal"))
    profile(services, "lost-key", "lost-key")
    for sealed in services.settings.key_store_dir.glob("*.sealed"):
        sealed.unlink()
    before = snapshot(services)
    response = sign(api, auth(credentials), make_pdf(), profile="lost-key")
    assert response.status_code == 503
    assert response.json()["code"] == "SIGNING_KEY_UNAVAILABLE"
    assert str(services.settings.key_store_dir) not in response.text
    assert response.headers["Retry-After"] == str(services.settings.retry_after_seconds)
    assert_nothing_written(before, services)


@pytest.mark.parametrize("kind", sorted(UNSIGNABLE))
def test_a_pdf_pyhanko_cannot_sign_is_malformed_not_500(
    api: Any, services: Services, credentials: dict[str, Any], kind: str
) -> None:
    before = snapshot(services)
    response = sign(api, auth(credentials), UNSIGNABLE[kind](), level="B-B")
    assert (response.status_code, response.json()["code"]) == (422, "MALFORMED_PDF")
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "filename",
    [b"qd\x00.pdf", "q" * 300 + ".pdf", "qd\x1b.pdf"],
    ids=["nul", "300-characters", "escape"],
)
@pytest.mark.parametrize("path", ["/v1/signatures", "/v1/signatures/external"])
def test_bad_file_names_are_refused_at_the_edge(
    api: Any, services: Services, credentials: dict[str, Any], filename: bytes | str, path: str
) -> None:
    """Issue 9: on PostgreSQL a file name over ~250 characters or with a NUL answered 500."""
    from tests.support.multipart import multipart

    parts: list[Any] = [("profile", "agency-a-seal"), ("file", filename, make_pdf())]
    if path.endswith("external"):
        pki = services.dev_pki
        assert pki is not None
        parts = [("profile", "agency-a-officer"), ("file", filename, make_pdf())]
        parts.append(("certificate", "officer.pem", pki.cert("officer").dump()))
    body, content_type = multipart(parts)
    before = snapshot(services)
    response = api.post(
        path, headers={**auth(credentials), "Content-Type": content_type}, content=body
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_FILENAME")
    assert not response.json()["message"].isascii()
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    ("path", "parts", "named"),
    [
        (
            "/v1/signatures",
            [("profile", "khong-co"), ("profile", "agency-a-seal"), ("file", "a.pdf")],
            "profile",
        ),
        (
            "/v1/signatures",
            [("profile", "agency-a-seal"), ("level", "B-B"), ("level", "B-T"), ("file", "a.pdf")],
            "level",
        ),
        (
            "/v1/signatures",
            [("profile", "agency-a-seal"), ("file", "a.pdf"), ("file", "b.pdf")],
            "file",
        ),
        (
            "/v1/signatures/batch",
            [
                ("profile", "agency-a-seal"),
                ("profile", "x"),
                ("files", "a.pdf"),
                ("files", "b.pdf"),
            ],
            "profile",
        ),
    ],
    ids=["profile", "level", "file", "batch-profile"],
)
def test_a_repeated_field_is_refused_not_the_last_one_taken(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    path: str,
    parts: list[tuple[str, str]],
    named: str,
) -> None:
    """Red team (issue 9): the last of two values silently won (a proxy reading the first saw
    another request); two documents in /v1/signatures dropped the first. The batch's
    ``files`` may repeat."""
    from tests.support.multipart import multipart

    fields: list[Any] = [
        (name, value, make_pdf()) if name in ("file", "files") else (name, value)
        for name, value in parts
    ]
    body, content_type = multipart(fields)
    before = snapshot(services)
    response = api.post(
        path, headers={**auth(credentials), "Content-Type": content_type}, content=body
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert named in response.json()["details"]["fields"]
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    ("parts", "named"),
    [
        ([("file", "a.pdf"), ("validation_tim", "2026-12-01T02:14:00+07:00")], "validation_tim"),
        ([("file", "a.pdf"), ("file", "b.pdf")], "file"),
    ],
    ids=["misspelt", "repeated"],
)
def test_a_verification_refuses_a_field_it_does_not_take(
    api: Any, parts: list[tuple[str, str]], named: str
) -> None:
    """New user 18 #5: a misspelt ``validation_time`` was ignored and the report validated
    now, the auditor none the wiser; the README promises a field the endpoint does not take
    is refused, as the signing routes do."""
    from tests.support.multipart import multipart

    fields: list[Any] = [
        (name, value, make_pdf()) if name == "file" else (name, value) for name, value in parts
    ]
    body, content_type = multipart(fields)
    response = api.post("/v1/verifications", headers={"Content-Type": content_type}, content=body)
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert named in response.json()["details"]["fields"]
