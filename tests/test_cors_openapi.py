"""For other portals (issue 11 item 5): CORS on the public verification API for the configured
origins only, the OpenAPI description (bearer scheme, each operation's error codes) and a
``/docs`` that works without internet."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import threading
import time
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signing_service import errors
from signing_service.api.app import create_app
from signing_service.api.openapi import SWAGGER_DIR
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from tests.conftest import make_settings
from tests.support.pdfs import encrypted_pdf, make_pdf
from tests.support.postgres import free_port

PORTAL = "https://cong.example.gov.vn"
OTHER = "https://gia-mao.example.com"


def _client(tmp_path: Path, dev_pki: tuple[DevPki, int], **overrides: Any) -> Iterator[Any]:
    services = Services.build(
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'metadata.db'}", dev_pki, **overrides)
    )
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            yield client
    finally:
        services.close()


@pytest.fixture
def api(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> Iterator[Any]:
    yield from _client(tmp_path, dev_pki, cors_origins=[PORTAL], verification_processes=0)


def _preflight(api: Any, path: str, origin: str, **headers: str) -> Any:
    return api.options(
        path,
        headers={"Origin": origin, "Access-Control-Request-Method": "POST", **headers},
    )


# --- CORS -----------------------------------------------------------------------------------


def test_a_configured_origin_may_call_the_verification_api(api: Any) -> None:
    preflight = _preflight(api, "/v1/verifications", PORTAL)
    assert preflight.status_code == 200
    assert preflight.headers["access-control-allow-origin"] == PORTAL
    assert "POST" in preflight.headers["access-control-allow-methods"]
    # Never credentials: a portal's page cannot act with a cookie or an API key.
    assert "access-control-allow-credentials" not in preflight.headers

    answer = api.post(
        "/v1/verifications",
        headers={"Origin": PORTAL},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["access-control-allow-origin"] == PORTAL
    assert "Content-Disposition" in answer.headers["access-control-expose-headers"]
    # An error is readable by the portal too (it must tell the citizen why).
    refused = api.post(
        "/v1/verifications",
        headers={"Origin": PORTAL},
        files={"file": ("a.pdf", b"khong phai pdf", "application/pdf")},
    )
    assert refused.status_code == 422 and refused.json()["code"] == "NOT_A_PDF"
    assert refused.headers["access-control-allow-origin"] == PORTAL


def test_the_public_registry_record_answers_a_configured_origin(api: Any) -> None:
    answer = api.get("/v1/registry/khong-co-ma-nay", headers={"Origin": PORTAL})
    assert answer.status_code == 404 and answer.json()["code"] == "REGISTRY_RECORD_NOT_FOUND"
    assert answer.headers["access-control-allow-origin"] == PORTAL
    other = api.get("/v1/registry/khong-co-ma-nay", headers={"Origin": OTHER})
    assert "access-control-allow-origin" not in other.headers
    # The agencies' registry API is not a CORS path.
    agency = api.get("/v1/registered-documents/khong-co-ma-nay", headers={"Origin": PORTAL})
    assert "access-control-allow-origin" not in agency.headers


def test_an_origin_not_configured_gets_no_cors_headers(api: Any) -> None:
    preflight = _preflight(api, "/v1/verifications", OTHER)
    assert "access-control-allow-origin" not in preflight.headers
    # Answered as any OPTIONS: the route takes POST only.
    assert preflight.status_code == 405 and preflight.json()["code"] == "METHOD_NOT_ALLOWED"
    answer = api.post(
        "/v1/verifications",
        headers={"Origin": OTHER},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )
    assert answer.status_code == 200  # answered; the browser keeps it from that page
    assert not any(h.startswith("access-control-") for h in answer.headers)
    assert "Origin" in answer.headers["vary"]  # caches keep the two answers apart
    # A look-alike origin is not the configured one (exact match, no prefix or suffix).
    for near in (PORTAL + ".evil.example", "http://cong.example.gov.vn", PORTAL + ":8443"):
        preflight = _preflight(api, "/v1/verifications", near)
        assert "access-control-allow-origin" not in preflight.headers


def test_no_cross_origin_request_may_carry_an_api_key(api: Any) -> None:
    preflight = _preflight(
        api, "/v1/verifications", PORTAL, **{"Access-Control-Request-Headers": "authorization"}
    )
    assert preflight.status_code == 400
    assert "authorization" not in preflight.headers.get("access-control-allow-headers", "").lower()


def test_a_refused_preflight_answers_in_the_service_error_shape(api: Any) -> None:
    """newuser 18 / red team F7: not Starlette's English text/plain "Disallowed CORS headers"."""
    asked = {
        "headers": {"Access-Control-Request-Headers": "authorization"},
        "method": {"Access-Control-Request-Method": "DELETE"},
        "private-network": {"Access-Control-Request-Private-Network": "true"},
    }
    for refused, headers in asked.items():
        for path in ("/v1/verifications", "/v1/registry/khong-co-ma-nay"):
            preflight = _preflight(api, path, PORTAL, **headers)
            assert preflight.status_code == 400, (refused, preflight.text)
            assert preflight.headers["content-type"].startswith("application/json")
            body = preflight.json()
            assert body["code"] == errors.CorsNotAllowed.code == "CORS_NOT_ALLOWED"
            assert body["details"] == {"refused": [refused]}
            assert "Disallowed" not in body["message"] and "không được phép" in body["message"]
            # Still Starlette's CORS answer otherwise: the browser reads why it was refused.
            assert preflight.headers["access-control-allow-origin"] == PORTAL
    both = _preflight(
        api,
        "/v1/verifications",
        PORTAL,
        **{"Access-Control-Request-Method": "PUT", "Access-Control-Request-Headers": "x-api-key"},
    )
    assert both.json()["details"] == {"refused": ["method", "headers"]}
    # A preflight the API allows is unchanged.
    allowed = _preflight(
        api, "/v1/verifications", PORTAL, **{"Access-Control-Request-Headers": "content-type"}
    )
    assert allowed.status_code == 200


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/signatures"),
        ("GET", "/v1/admin/profiles"),
        ("GET", "/v1/documents/00000000-0000-0000-0000-000000000000"),
        ("POST", "/v1/operator/api-keys"),
        ("GET", "/openapi.json"),
    ],
)
def test_agency_and_operator_apis_never_answer_cors(api: Any, method: str, path: str) -> None:
    preflight = api.options(
        path, headers={"Origin": PORTAL, "Access-Control-Request-Method": method}
    )
    assert "access-control-allow-origin" not in preflight.headers
    answer = api.request(method, path, headers={"Origin": PORTAL})
    assert "access-control-allow-origin" not in answer.headers


def test_without_configured_origins_there_is_no_cors(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    for client in _client(tmp_path, dev_pki, verification_processes=0):
        preflight = _preflight(client, "/v1/verifications", PORTAL)
        assert "access-control-allow-origin" not in preflight.headers
        answer = client.post(
            "/v1/verifications",
            headers={"Origin": PORTAL},
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        )
        assert answer.status_code == 200
        assert "access-control-allow-origin" not in answer.headers


# --- OpenAPI ----------------------------------------------------------------------------------

CODES = re.compile(r"`([A-Z0-9_]+)`")


def _codes(operation: dict[str, Any], status: int) -> set[str]:
    return set(CODES.findall(operation["responses"][str(status)]["description"]))


def test_openapi_declares_the_bearer_scheme_on_authenticated_operations(api: Any) -> None:
    schema = api.get("/openapi.json").json()
    scheme = schema["components"]["securitySchemes"]["bearerAuth"]
    assert scheme == {**scheme, "type": "http", "scheme": "bearer"}
    sign = schema["paths"]["/v1/signatures"]["post"]
    assert sign["security"] == [{"bearerAuth": []}]
    # The header is the scheme's, not a parameter Swagger UI would ignore.
    assert all(p["name"].lower() != "authorization" for p in sign.get("parameters", []))
    assert schema["paths"]["/v1/operator/api-keys"]["post"]["security"] == [{"bearerAuth": []}]
    verify = schema["paths"]["/v1/verifications"]["post"]
    assert "security" not in verify
    assert "security" not in schema["paths"]["/healthz"]["get"]


def test_every_listed_code_exists_and_uses_the_error_body(api: Any) -> None:
    schema = api.get("/openapi.json").json()
    known = {
        value.code
        for value in vars(errors).values()
        if isinstance(value, type) and issubclass(value, errors.ServiceError)
    }
    seen = 0
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                codes = CODES.findall(response["description"])
                assert codes, (path, method, status)
                for code in codes:
                    assert code in known, (path, method, status, code)
                    # The status a code is listed under is the one it is answered with.
                    assert any(
                        isinstance(v, type)
                        and issubclass(v, errors.ServiceError)
                        and v.code == code
                        and v.status == int(status)
                        for v in vars(errors).values()
                    ), (path, method, status, code)
                schema_ref = response["content"]["application/json"]["schema"]["$ref"]
                assert schema_ref.endswith("/ErrorBody")
                seen += 1
    assert seen > 50
    assert "ErrorBody" in schema["components"]["schemas"]


def test_the_codes_the_api_answers_are_the_ones_it_lists(api: Any) -> None:
    """Real answers, each found under its status in the operation's description."""
    schema = api.get("/openapi.json").json()
    verify = schema["paths"]["/v1/verifications"]["post"]
    sign = schema["paths"]["/v1/signatures"]["post"]
    answers = [
        (verify, api.post("/v1/verifications", files={"file": ("a.pdf", b"", "x/y")})),
        (
            verify,
            api.post(
                "/v1/verifications?format=xml",
                files={"file": ("a.pdf", make_pdf(), "application/pdf")},
            ),
        ),
        (
            verify,
            api.post(
                "/v1/verifications",
                data={"validation_time": "hôm qua"},
                files={"file": ("a.pdf", make_pdf(), "application/pdf")},
            ),
        ),
        (sign, api.post("/v1/signatures", files={"file": ("a.pdf", make_pdf(), "x/y")})),
    ]
    for operation, answer in answers:
        body = answer.json()
        assert body["code"] in _codes(operation, answer.status_code), body
    assert {"UNSUPPORTED_REPORT_FORMAT"} <= _codes(verify, 406)
    assert {"REPORT_NOT_CONFIGURED", "REPORT_BUSY", "VERIFICATION_BUSY"} <= _codes(verify, 503)
    assert {"SIGNER_CERT_REVOKED", "NO_SPACE_FOR_SIGNATURE"} <= _codes(sign, 422)
    assert "UNAUTHENTICATED" not in _codes(verify, 422) and "401" not in verify["responses"]


def test_authorize_hint_says_paste_the_key_without_bearer(api: Any) -> None:
    """newuser 19: Swagger UI puts "Bearer " in front of the value; the hint showed the whole
    header and developers pasted "Bearer ssk_…" (then 401). Authentication stays strict."""
    scheme = api.get("/openapi.json").json()["components"]["securitySchemes"]["bearerAuth"]
    assert "ssk_" in scheme["description"] and "không gõ chữ Bearer" in scheme["description"]
    services = api.app.state.services
    admin = json.loads(services.settings.dev_credentials_file.read_text())["agencies"][0][
        "admin_api_key"
    ]
    ok = api.get("/v1/admin/profiles", headers={"Authorization": f"Bearer {admin}"})
    assert ok.status_code == 200, ok.text
    doubled = api.get("/v1/admin/profiles", headers={"Authorization": f"Bearer Bearer {admin}"})
    assert doubled.status_code == 401 and doubled.json()["code"] == "UNAUTHENTICATED"


def test_admin_reads_list_their_own_codes(api: Any) -> None:
    """A listing or a read does not list the codes of a profile's or an image's creation
    (IMAGE_NOT_PNG under GET /v1/admin/keys, newuser 21); what they answer is listed."""
    schema = api.get("/openapi.json").json()
    admin = json.loads(api.app.state.services.settings.dev_credentials_file.read_text())[
        "agencies"
    ][0]["admin_api_key"]
    headers = {"Authorization": f"Bearer {admin}"}
    for path in ("/v1/admin/keys", "/v1/admin/profiles", "/v1/admin/appearance-images"):
        listing = schema["paths"][path]["get"]
        assert {"404", "409", "422"}.isdisjoint(listing["responses"]), path
        assert api.get(path, headers=headers).status_code == 200
    for method, path in (
        ("GET", "/v1/admin/profiles/khong-co"),
        ("DELETE", "/v1/admin/profiles/khong-co"),
        ("DELETE", "/v1/admin/appearance-images/khong-co"),
    ):
        operation = schema["paths"][re.sub(r"/khong-co$", "/{name}", path)][method.lower()]
        answer = api.request(method, path, headers=headers)
        assert answer.json()["code"] in _codes(operation, answer.status_code), answer.text
        assert "422" not in operation["responses"] and "IMAGE_NOT_PNG" not in json.dumps(operation)


def _classes_by_code() -> dict[tuple[int, str], list[type[errors.ServiceError]]]:
    out: dict[tuple[int, str], list[type[errors.ServiceError]]] = {}
    for value in vars(errors).values():
        if isinstance(value, type) and issubclass(value, errors.ServiceError):
            out.setdefault((value.status, value.code), []).append(value)
    return out


def test_each_status_shows_its_own_codes_as_examples(api: Any) -> None:
    """newuser 20: every error example was PROFILE_NOT_FOUND, under every status of every
    operation; now one example per listed code, with that code's own message."""
    schema = api.get("/openapi.json").json()
    classes = _classes_by_code()
    body = schema["components"]["schemas"]["ErrorBody"]
    assert "PROFILE_NOT_FOUND" not in json.dumps(body)
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if not status.startswith(("4", "5")):
                    continue
                examples = response["content"]["application/json"]["examples"]
                assert set(examples) == set(CODES.findall(response["description"])), (
                    path,
                    method,
                    status,
                )
                for code, example in examples.items():
                    assert example["value"]["code"] == code
                    messages = {c.message for c in classes[(int(status), code)]}
                    assert example["value"]["message"] in messages, (path, status, code)
    verify = schema["paths"]["/v1/verifications"]["post"]
    assert "PROFILE_NOT_FOUND" not in json.dumps(verify)


def test_no_english_left_in_the_openapi_document(api: Any) -> None:
    """newuser 22: FastAPI's "Successful Response" / "Validation Error" and summaries made of
    function names ("Healthz") are replaced by Vietnamese."""
    schema = api.get("/openapi.json").json()
    text = json.dumps(schema, ensure_ascii=False)
    assert "Successful Response" not in text and "Validation Error" not in text
    vietnamese = re.compile(r"[À-ỹ]")
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            assert vietnamese.search(operation.get("summary", "")), (path, method)
            for status, response in operation["responses"].items():
                assert vietnamese.search(response["description"]), (path, method, status)
    assert schema["paths"]["/healthz"]["get"]["summary"] != "Healthz"


# --- What each public operation can return (newuser 21, red team F10) -----------------------


async def _asgi(
    app: Any,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    client: str = "198.51.100.7",
    query: str = "",
    body: bytes = b"",
    hold: Any = None,
    holding: Any = None,
) -> tuple[int, dict[str, Any]]:
    """One request straight into the ASGI application (the whole middleware stack, as a
    server hands it over); ``hold``: an event the body waits for after its first bytes (a
    client still uploading), ``holding``: an event set once it waits. The status and the JSON
    body."""
    import anyio

    raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": raw,
        "client": (client, 40000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }
    sent = False
    answer: dict[str, Any] = {"status": 0, "body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": hold is not None}
        if hold is not None:
            if holding is not None:
                holding.set()
            await hold.wait()
        else:
            await anyio.sleep_forever()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            answer["status"] = message["status"]
        elif message["type"] == "http.response.body":
            answer["body"] += message.get("body", b"")

    await app(scope, receive, send)
    try:
        parsed = json.loads(answer["body"] or b"{}")
    except ValueError:
        parsed = {}
    return answer["status"], parsed


def _pairs(description: str, pdf_only: bool) -> set[str]:
    always, _, pdf = description.partition("Chỉ khi yêu cầu báo cáo PDF")
    return set(CODES.findall(pdf if pdf_only else always))


def _listed(operation: dict[str, Any], *, pdf_only: bool = False) -> set[tuple[int, str]]:
    return {
        (int(status), code)
        for status, response in operation["responses"].items()
        if status.startswith(("4", "5"))
        for code in _pairs(response["description"], pdf_only)
    }


@pytest.fixture
def edge_app(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> Iterator[Any]:
    """The application with a small anonymous lane: two requests at a time, one per client;
    a one-second body timeout; a report seal key that does not exist."""
    services = Services.build(
        make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'metadata.db'}",
            dev_pki,
            verification_processes=0,
            max_anonymous_requests=2,
            max_anonymous_requests_per_client=1,
            body_timeout_seconds=1,
            body_min_rate_bytes=1_000_000,
            report_seal_key="000.00.00.Z99/khong-co",
        )
    )
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            yield client
    finally:
        services.close()


def _multipart(content: bytes, **fields: str) -> tuple[bytes, dict[str, str]]:
    boundary = "ranh-gioi-7d1f"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    data = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return data, {
        "content-type": f"multipart/form-data; boundary={boundary}",
        "content-length": str(len(data)),
    }


def test_public_operations_list_only_codes_they_answer(edge_app: Any) -> None:
    """Each code the public registry lookup lists is answered by a real request (listed ⊆
    seen; INTERNAL_ERROR, a bug, excepted); each answer of the public verification is listed,
    the PDF report's seal codes apart, under "only with the PDF report"."""
    import anyio

    schema = edge_app.get("/openapi.json").json()
    lookup = schema["paths"]["/v1/registry/{public_id}"]["get"]
    verify = schema["paths"]["/v1/verifications"]["post"]
    app = edge_app.app
    registry_seen: set[tuple[int, str]] = {(500, "INTERNAL_ERROR")}
    verify_seen: set[tuple[int, str]] = set()
    pdf_seen: set[tuple[int, str]] = set()

    def seen(into: set[tuple[int, str]], answer: tuple[int, dict[str, Any]]) -> None:
        status, body = answer
        assert "code" in body, answer
        into.add((status, body["code"]))

    async def scenario() -> None:
        lookup_path = "/v1/registry/khong-co-ma-nay"
        seen(registry_seen, await _asgi(app, "GET", lookup_path))
        seen(registry_seen, await _asgi(app, "GET", lookup_path, headers={"x-a": "a\x00b"}))
        doc, head = _multipart(make_pdf())
        for content, fields in (
            (b"", {}),
            (b"khong phai pdf", {}),
            (make_pdf()[:300], {}),
            (encrypted_pdf(), {}),
            (make_pdf(), {"validation_time": "hôm qua"}),
            (make_pdf(), {"validation_time": "9" * 100}),
        ):
            data, multipart = _multipart(content, **fields)
            seen(
                verify_seen,
                await _asgi(
                    app, "POST", "/v1/verifications", headers=multipart, body=data, client="a"
                ),
            )
        for query, into in (("format=xml", verify_seen), ("format=pdf", pdf_seen)):
            seen(
                into,
                await _asgi(
                    app,
                    "POST",
                    "/v1/verifications",
                    query=query,
                    headers=head,
                    body=doc,
                    client="b",
                ),
            )
        broken = {"content-type": "multipart/form-data", "content-length": "3"}
        seen(
            verify_seen,
            await _asgi(app, "POST", "/v1/verifications", headers=broken, body=b"abc"),
        )
        too_big = {**head, "content-length": str(10**12)}
        seen(verify_seen, await _asgi(app, "POST", "/v1/verifications", headers=too_big))
        # A client still uploading holds its place in the anonymous lane.
        release = anyio.Event()
        async with anyio.create_task_group() as group:
            results: list[tuple[int, dict[str, Any]]] = []

            async def upload(client: str, holding: Any) -> None:
                results.append(
                    await _asgi(
                        app,
                        "POST",
                        "/v1/verifications",
                        headers=head,
                        body=doc[:100],
                        client=client,
                        hold=release,
                        holding=holding,
                    )
                )

            first, second = anyio.Event(), anyio.Event()
            group.start_soon(upload, "192.0.2.1", first)
            with anyio.fail_after(10):
                await first.wait()
            # The same client again: its one place is taken.
            seen(registry_seen, await _asgi(app, "GET", lookup_path, client="192.0.2.1"))
            seen(verify_seen, await _asgi(app, "POST", "/v1/verifications", client="192.0.2.1"))
            group.start_soon(upload, "192.0.2.2", second)
            with anyio.fail_after(10):
                await second.wait()
            # Two places in all, both taken.
            seen(registry_seen, await _asgi(app, "GET", lookup_path, client="192.0.2.3"))
            seen(verify_seen, await _asgi(app, "POST", "/v1/verifications", client="192.0.2.3"))
            # The uploads stall past the body timeout (one second): both answered 408.
            with anyio.fail_after(20):
                while len(results) < 2:
                    await anyio.sleep(0.1)
            release.set()
        for answer in results:
            seen(verify_seen, answer)

    anyio.run(scenario)

    assert _listed(lookup, pdf_only=True) == set()
    assert _listed(lookup) <= registry_seen, _listed(lookup) - registry_seen
    # The registry's write codes are revoke's and supersede's, not the lookup's (F10).
    assert {c for _, c in _listed(lookup)}.isdisjoint(
        {"REGISTRY_STATUS_FINAL", "INVALID_REGISTRY_REASON", "INVALID_SUPERSEDING_DOCUMENT"}
    )
    assert verify_seen <= _listed(verify), verify_seen - _listed(verify)
    assert pdf_seen == {(503, "REPORT_NOT_CONFIGURED")}
    assert pdf_seen <= _listed(verify, pdf_only=True)
    # The seal's codes are listed only as the PDF report's (a portal asking for JSON never
    # sees them).
    seal_codes = {"KEY_PIN_INCORRECT", "SIGNER_CERT_REVOKED", "REMOTE_SIGNING_UNAVAILABLE"}
    assert seal_codes <= {c for _, c in _listed(verify, pdf_only=True)}
    assert seal_codes.isdisjoint({c for _, c in _listed(verify)})
    # What the real answers covered of the JSON list; the rest is the verifier's own limits,
    # answered in test_verification_pool.py and test_edge.py.
    assert {c for _, c in _listed(verify) - verify_seen} <= {
        "INTERNAL_ERROR",
        "VERIFICATION_BUSY",
        "VERIFICATION_TIME_LIMIT",
        "VERIFICATION_RESOURCE_LIMIT",
    }


# --- /docs without internet -------------------------------------------------------------------


class _Links(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._in_script = tag == "script"
        for name, value in attrs:
            if name in ("src", "href") and value:
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.scripts.append(data)


def test_docs_reference_only_the_service_own_assets(api: Any) -> None:
    page = api.get("/docs")
    assert page.status_code == 200
    parser = _Links()
    parser.feed(page.text)
    # No inline script (the CSP allows scripts from the service's files only); the OpenAPI
    # document's URL, same origin, is an attribute the start-up script reads.
    assert "".join(parser.scripts).strip() == ""
    urls = parser.urls + re.findall(r'data-openapi-url="([^"]+)"', page.text)
    assert len(urls) >= 5, urls
    assert "://" not in page.text  # no absolute URL anywhere: no CDN, no validator
    for url in urls:
        assert url.startswith("/") and not url.startswith("//"), url
        answer = api.get(url)
        assert answer.status_code == 200, url
        assert len(answer.content) > 0
    js = api.get("/docs/assets/swagger-ui-bundle.js")
    assert "javascript" in js.headers["content-type"]
    assert api.get("/docs/assets/LICENSE").status_code == 200
    # FastAPI's ReDoc page loads its bundle from a CDN: not served.
    assert api.get("/redoc").status_code == 404


def test_docs_carry_security_headers_and_are_compressed(api: Any) -> None:
    """Red team F8: /docs (where an agency pastes its API key) could be framed by any site and
    carried none of the page's headers; Swagger UI's 1.7 MB bundle went uncompressed."""
    for path in ("/docs", "/openapi.json", "/docs/assets/swagger-ui-bundle.js"):
        answer = api.get(path, headers={"Accept-Encoding": "gzip"})
        assert answer.status_code == 200, path
        csp = answer.headers["content-security-policy"]
        directives = dict(d.strip().split(" ", 1) for d in csp.split(";"))
        assert directives["frame-ancestors"] == "'none'"
        assert directives["default-src"] == "'none'"
        # Scripts and connections: the service only (no inline script, no third party).
        assert directives["script-src"] == "'self'"
        assert directives["connect-src"] == "'self'"
        assert answer.headers["x-frame-options"] == "DENY"
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert "cache-control" in answer.headers
    size = (SWAGGER_DIR / "swagger-ui-bundle.js").stat().st_size
    with api.stream(
        "GET", "/docs/assets/swagger-ui-bundle.js", headers={"Accept-Encoding": "gzip"}
    ) as bundle:
        assert bundle.headers["content-encoding"] == "gzip"
        assert "max-age" in bundle.headers["cache-control"]
        sent = b"".join(bundle.iter_raw())  # the bytes on the wire, compressed
    assert len(sent) < size // 2, len(sent)
    assert gzip.decompress(sent) == (SWAGGER_DIR / "swagger-ui-bundle.js").read_bytes()
    plain = api.get("/docs/assets/swagger-ui-bundle.js", headers={"Accept-Encoding": "identity"})
    assert "content-encoding" not in plain.headers and len(plain.content) == size
    page = api.get("/docs", headers={"Accept-Encoding": "gzip"})
    assert page.headers.get("content-encoding") is None  # under the 1 KiB worth compressing
    # The OpenAPI document is an API answer: left as it is.
    spec = api.get("/openapi.json", headers={"Accept-Encoding": "gzip"})
    assert "content-encoding" not in spec.headers
    page = api.get("/docs")
    assert '<html lang="vi">' in page.text
    # The API's answers are not touched by the docs' shell.
    other = api.get("/healthz", headers={"Accept-Encoding": "gzip"})
    assert "content-security-policy" not in other.headers


# --- In a real browser (Debian's Chromium driven by Playwright) --------------------------------

CHROMIUM = shutil.which("chromium")


@pytest.fixture
def live(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> Iterator[str]:
    """The app served by uvicorn on loopback; its own ``http://localhost:<port>`` is the one
    configured CORS origin (another origin than ``http://127.0.0.1:<port>`` for a browser)."""
    import uvicorn

    port = free_port()
    services = Services.build(
        make_settings(
            tmp_path,
            f"sqlite:///{tmp_path / 'metadata.db'}",
            dev_pki,
            # The second: a public portal's page (test_local_network_access_…).
            cors_origins=[f"http://localhost:{port}", PORTAL],
            verification_processes=0,
        )
    )
    server = uvicorn.Server(
        uvicorn.Config(create_app(services), host="127.0.0.1", port=port, log_level="warning")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert server.started
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
        services.close()


@pytest.mark.skipif(
    not CHROMIUM, reason="Debian's chromium not installed (apt-get install chromium)"
)
def test_docs_work_offline_and_cors_holds_in_chromium(live: str) -> None:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    port = live.rsplit(":", 1)[1]
    outside: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-dev-shm-usage",
                "--disable-background-networking",
            ],
        )
        try:
            page = browser.new_page()

            def only_loopback(route: Any) -> None:
                url = route.request.url
                if url.startswith((live + "/", f"http://localhost:{port}/")):
                    route.continue_()
                else:  # a CDN or any third party: recorded and refused, as offline
                    outside.append(url)
                    route.abort()

            page.route("**/*", only_loopback)
            # Whatever /docs' Content-Security-Policy blocks is reported to the page.
            page.add_init_script(
                "window.cspBlocked = []; document.addEventListener('securitypolicyviolation',"
                " e => window.cspBlocked.push(e.violatedDirective + ' ' + e.blockedURI));"
            )
            page.goto(live + "/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            assert "xác minh chữ ký số" in page.inner_text(".swagger-ui .info .title")
            assert page.evaluate("document.documentElement.lang") == "vi"
            assert page.locator("button.authorize").count() == 1  # the bearer scheme
            # The dialog says to paste the key alone (newuser 19: not "Bearer ssk_…").
            page.click("button.authorize")
            dialog = page.locator(".dialog-ux .modal-ux")
            dialog.wait_for(timeout=10_000)
            assert "không gõ chữ Bearer" in dialog.inner_text()
            page.keyboard.press("Escape")
            # An operation opens, with its own error examples (newuser 20).
            page.click("#operations-sổ_đăng_ký-public_record_v1_registry__public_id__get")
            page.wait_for_selector(".responses-table", timeout=10_000)
            responses = page.inner_text(".opblock.is-open .responses-wrapper")
            assert "REGISTRY_RECORD_NOT_FOUND" in responses
            assert "PROFILE_NOT_FOUND" not in responses
            # "Try it out" calls the service from the page (connect-src 'self').
            page.click(".opblock.is-open button.try-out__btn")
            page.fill(".opblock.is-open input[placeholder=public_id]", "khong-co-ma-nay")
            page.click(".opblock.is-open button.execute")
            page.wait_for_selector(".opblock.is-open .live-responses-table", timeout=10_000)
            live_answer = page.inner_text(".opblock.is-open .live-responses-table")
            assert "REGISTRY_RECORD_NOT_FOUND" in live_answer, live_answer
            assert page.evaluate("window.cspBlocked") == []
            assert outside == []

            fetch = """async (url) => {
                const form = new FormData();
                const file = new Blob(["khong phai pdf"], {type: "application/pdf"});
                form.append("file", file, "a.pdf");
                try {
                    const r = await fetch(url, {method: "POST", body: form});
                    return {status: r.status, body: await r.json()};
                } catch (e) { return {error: String(e)}; }
            }"""
            # From the configured origin (localhost) to the API: the answer is readable. (From
            # a page without a CSP of its own: /docs may connect to its own origin only.)
            page.goto(f"http://localhost:{port}/healthz")
            allowed = page.evaluate(fetch, live + "/v1/verifications")
            assert allowed.get("status") == 422, allowed
            assert allowed["body"]["code"] == "NOT_A_PDF"
            # From an origin not configured (127.0.0.1): the browser refuses to hand it over.
            page.goto(live + "/healthz")
            target = f"http://localhost:{port}/v1/verifications"
            refused = page.evaluate(fetch, target)
            assert "error" in refused, refused
            # The server is reachable from there (an opaque no-cors answer, not a network
            # error): the refusal above is CORS's.
            opaque = page.evaluate(
                """async (url) => {
                    const r = await fetch(url, {method: "POST", mode: "no-cors", body: "x"});
                    return r.type;
                }""",
                target,
            )
            assert opaque == "opaque"
        finally:
            browser.close()


@pytest.mark.skipif(
    not CHROMIUM, reason="Debian's chromium not installed (apt-get install chromium)"
)
def test_local_network_access_blocks_a_public_portal_before_cors(live: str) -> None:
    """newuser 17 (README "For other portals"): Chromium's Local Network Access (formerly
    Private Network Access) stops a page of a public site from calling a service on a
    loopback or private address, whatever CORS allows; the tests' Chromium runs with
    ``--disable-features=LocalNetworkAccessChecks`` where a public origin is simulated."""
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright not installed")
    fetch = """async (url) => {
        const form = new FormData();
        form.append("file", new Blob(["khong phai pdf"]), "a.pdf");
        try {
            const r = await fetch(url, {method: "POST", body: form});
            return {status: r.status, body: await r.json()};
        } catch (e) { return {error: String(e)}; }
    }"""

    def from_portal(extra_args: list[str]) -> tuple[dict[str, Any], list[str]]:
        with playwright.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", *extra_args],
            )
            try:
                page = browser.new_page()
                console: list[str] = []
                page.on("console", lambda m: console.append(m.text))
                # The portal's page, as served by its public site.
                page.route(
                    PORTAL + "/**",
                    lambda route: route.fulfill(
                        status=200,
                        content_type="text/html; charset=utf-8",
                        body='<!doctype html><html lang="vi"><title>Cổng</title></html>',
                    ),
                )
                page.goto(PORTAL + "/kiem-tra")
                return page.evaluate(fetch, live + "/v1/verifications"), console
            finally:
                browser.close()

    blocked, console = from_portal([])
    assert "error" in blocked, blocked
    assert any("address space" in line for line in console), console
    allowed, _ = from_portal(["--disable-features=LocalNetworkAccessChecks"])
    assert allowed.get("status") == 422 and allowed["body"]["code"] == "NOT_A_PDF", allowed
