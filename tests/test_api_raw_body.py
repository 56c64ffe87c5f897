"""POST /v1/signatures/raw: the signing request with the PDF as the whole body
(Content-Type: application/pdf) and the fields as query parameters (issue 9, the API's cost
per signature: no multipart framing to parse). The same checks, codes and records as the
multipart form (tests/test_api.py); hostile forms of the raw body refused with nothing written."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from signing_service.services.container import Services
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot
from tests.test_api import BAD_INPUTS, auth, sign, small_limit_api  # noqa: F401 - fixture

RAW = "/v1/signatures/raw"


def sign_raw(
    api: Any,
    headers: dict[str, str],
    data: Any,
    content_type: str | None = "application/pdf",
    **params: str,
) -> Any:
    query = {"profile": "agency-a-seal", "filename": "quyet-dinh.pdf", **params}
    sent = dict(headers)
    if content_type is not None:
        sent["Content-Type"] = content_type
    return api.post(RAW, headers=sent, params=query, content=data)


def test_raw_body_signs_like_the_multipart_form(api: Any, credentials: dict[str, Any]) -> None:
    headers = auth(credentials)
    pdf = make_pdf()
    raw = sign_raw(api, headers, pdf, level="B-T", dossier_code="000.00.12.H12-261127-0001")
    assert raw.status_code == 201, raw.text
    body = raw.json()
    assert body["level"] == "B-T" and body["profile"] == "agency-a-seal"
    assert body["document"]["dossier_code"] == "000.00.12.H12-261127-0001"
    assert body["document"]["filename"]
    assert body["input_document"]["sha256"] == hashlib.sha256(pdf).hexdigest()
    assert body["input_document"]["filename"] == "quyet-dinh.pdf"
    assert raw.headers["Location"] == f"/v1/documents/{body['document']['id']}"
    content = api.get(body["document"]["download_url"], headers=headers)
    assert content.status_code == 200
    assert hashlib.sha256(content.content).hexdigest() == body["document"]["sha256"]
    report = api.post(
        "/v1/verifications", files={"file": ("signed.pdf", content.content, "application/pdf")}
    )
    assert report.json()["verdict"] == "TOTAL_PASSED"
    # The multipart form's answer has the same shape.
    form = sign(api, headers, pdf, level="B-T")
    assert form.status_code == 201, form.text
    assert form.json().keys() == body.keys()
    assert form.json()["input_document"]["sha256"] == body["input_document"]["sha256"]


def test_content_type_parameters_are_accepted(api: Any, credentials: dict[str, Any]) -> None:
    response = sign_raw(api, auth(credentials), make_pdf(), content_type="Application/PDF; x=1")
    assert response.status_code == 201, response.text


EMPTY_FIELDS = [
    "appearance_kind",
    "copy_kind",
    "document_number",
    "qr",
    "level",
    "field_name",
    "dossier_code",
    "result_code",
    "procedure_code",
    "document_name",
    "applicant_id",
    "profile",
]


@pytest.mark.parametrize("field", EMPTY_FIELDS)
def test_an_empty_field_is_an_absent_one_on_both_forms(
    api: Any, services: Services, credentials: dict[str, Any], field: str
) -> None:
    """Red team 15b, R6: a client that sends every parameter, empty when unset, got 201 from
    the multipart form and 422 (or 404 for ``profile``) from the raw form. An empty value is an
    absent field on both: the same status and code from each."""
    headers = auth(credentials)
    answers = []
    for send in (sign, sign_raw):
        before = snapshot(services)
        response = send(api, headers, make_pdf(), **{field: ""})
        body = response.json()
        answers.append((response.status_code, body.get("code")))
        if response.status_code != 201:
            assert_nothing_written(before, services)
    assert answers[0] == answers[1], (field, answers)
    expected = (422, "INVALID_REQUEST") if field == "profile" else (201, None)
    assert answers[0] == expected, (field, answers)


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
    """The multipart form's bad inputs (tests/test_api.py), sent as a raw body: same codes."""
    before = snapshot(services)
    response = sign_raw(api, auth(credentials), data, **form)
    assert response.status_code == status, response.text
    body = response.json()
    assert body["code"] == code
    assert body["message"] and body["message"].isascii() is False  # Vietnamese text
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "content_type",
    [None, "application/json", "multipart/form-data; boundary=x", "text/plain", "application/pdfx"],
)
def test_a_body_not_declared_pdf_is_415(
    api: Any, services: Services, credentials: dict[str, Any], content_type: str | None
) -> None:
    before = snapshot(services)
    response = sign_raw(api, auth(credentials), make_pdf(), content_type=content_type)
    assert (response.status_code, response.json()["code"]) == (415, "INVALID_REQUEST")
    assert "application/pdf" in response.json()["message"]
    assert_nothing_written(before, services)


def test_refusals_before_the_body(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    before = snapshot(services)
    pdf = make_pdf()
    # No credentials.
    response = sign_raw(api, {}, pdf)
    assert (response.status_code, response.json()["code"]) == (401, "UNAUTHENTICATED")
    # No profile.
    response = api.post(
        RAW, headers={**auth(credentials), "Content-Type": "application/pdf"}, content=pdf
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    # A field sent twice, a field the endpoint does not take (a misspelt one was ignored).
    for query in (
        [("profile", "agency-a-seal"), ("profile", "agency-b-seal")],
        [("profile", "agency-a-seal"), ("dossier", "000.00.12.H12-261127-0001")],
    ):
        response = api.post(
            RAW,
            headers={**auth(credentials), "Content-Type": "application/pdf"},
            params=query,
            content=pdf,
        )
        assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
        assert query[1][0] in json.dumps(response.json()["details"])
    # Over-long and control-character fields, a bad file name, a malformed Idempotency-Key.
    for params, code in (
        ({"profile": "p" * 129}, "INVALID_REQUEST"),
        ({"field_name": "Sig\x00"}, "INVALID_REQUEST"),
        ({"filename": "a\x00.pdf"}, "INVALID_FILENAME"),
        ({"filename": "a" * 300 + ".pdf"}, "INVALID_FILENAME"),
        ({"procedure_code": "1.001234"}, "INVALID_REQUEST"),  # without qr=true
    ):
        response = sign_raw(api, auth(credentials), pdf, **params)
        assert (response.status_code, response.json()["code"]) == (422, code), params
    response = sign_raw(api, {**auth(credentials), "Idempotency-Key": "bad key!"}, pdf)
    assert response.status_code == 422
    assert response.json()["code"] == "INVALID_IDEMPOTENCY_KEY"
    # Another agency's profile names nothing.
    response = sign_raw(api, auth(credentials, 1), pdf)
    assert (response.status_code, response.json()["code"]) == (404, "PROFILE_NOT_FOUND")
    assert_nothing_written(before, services)


def test_an_idempotency_key_spans_both_forms(api: Any, credentials: dict[str, Any]) -> None:
    """One request, whichever form carried it: the same key and request again (the other
    form) answer with the first signature; the same key with another document is 409."""
    headers = {**auth(credentials), "Idempotency-Key": "raw-form-1"}
    pdf = make_pdf()
    first = sign_raw(api, headers, pdf)
    assert first.status_code == 201, first.text
    again = sign(api, headers, pdf)
    assert again.status_code == 200, again.text
    assert again.json()["signature_id"] == first.json()["signature_id"]
    replay = sign_raw(api, headers, pdf)
    assert replay.status_code == 200
    assert replay.json()["signature_id"] == first.json()["signature_id"]
    other = sign_raw(api, headers, make_pdf(padding_bytes=10))
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_KEY_CONFLICT")


def test_over_the_size_limit(small_limit_api: Any) -> None:  # noqa: F811 - the fixture
    client, built = small_limit_api
    credentials = json.loads(built.settings.dev_credentials_file.read_text())
    before = snapshot(built)
    # Just over the limit: read to one byte past it, then refused by the service.
    response = sign_raw(client, auth(credentials), make_pdf(padding_bytes=110_000))
    assert (response.status_code, response.json()["code"]) == (413, "FILE_TOO_LARGE")
    # Far over: refused at the edge from Content-Length; sent chunked, while it arrives.
    response = sign_raw(client, auth(credentials), make_pdf(padding_bytes=400_000))
    assert (response.status_code, response.json()["code"]) == (413, "FILE_TOO_LARGE")

    def chunks() -> Any:
        yield b"%PDF-1.7\n"
        for _ in range(40):  # 40 × 16 KiB: past the 100 kB limit (+ 64 KiB framing)
            yield b"0" * 16384

    response = sign_raw(client, auth(credentials), chunks())
    assert "content-length" not in response.request.headers
    assert (response.status_code, response.json()["code"]) == (413, "FILE_TOO_LARGE")
    assert_nothing_written(before, built)


def test_openapi_documents_the_raw_form(api: Any) -> None:
    spec = api.get("/openapi.json").json()
    operation = spec["paths"][RAW]["post"]
    body = operation["requestBody"]
    assert body["required"] is True
    assert body["content"]["application/pdf"]["schema"]["format"] == "binary"
    params = {p["name"]: p for p in operation["parameters"]}
    assert params["profile"]["in"] == "query" and params["profile"]["required"] is True
    assert params["X-Signer-Authorization"]["in"] == "header"
    assert params["Idempotency-Key"]["in"] == "header"
    assert {"201", "413", "415", "422"} <= operation["responses"].keys()


def test_a_body_cut_off_is_an_incomplete_upload_not_a_500(
    api: Any, services: Services, credentials: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    """The client hangs up (or the body read times out) half-way: 400 UPLOAD_INCOMPLETE as for
    a multipart upload, no error logged, nothing written (red team 15b, R1). Driven at the
    ASGI level: an HTTP client cannot send half a body and then disconnect on purpose."""
    import asyncio

    pdf = make_pdf(padding_bytes=200_000)
    key = auth(credentials)["Authorization"].encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/signatures/raw",
        "raw_path": b"/v1/signatures/raw",
        "query_string": b"profile=agency-a-seal",
        "headers": [
            (b"host", b"testserver"),
            (b"authorization", key),
            (b"content-type", b"application/pdf"),
            (b"content-length", str(len(pdf)).encode()),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
    }
    events = [
        {"type": "http.request", "body": pdf[:65536], "more_body": True},
        {"type": "http.disconnect"},
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return events.pop(0) if events else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    before = snapshot(services)
    with caplog.at_level("ERROR"):
        asyncio.run(api.app(scope, receive, send))
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 400, body
    assert json.loads(body)["code"] == "UPLOAD_INCOMPLETE"
    assert not [r for r in caplog.records if r.levelname == "ERROR"], caplog.text
    assert_nothing_written(before, services)
