"""For other portals (issue 11 item 5): CORS on the public verification API for the configured
origins only, the OpenAPI description (bearer scheme, each operation's error codes) and a
``/docs`` that works without internet."""

from __future__ import annotations

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
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from tests.conftest import make_settings
from tests.support.pdfs import make_pdf
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
    # Inline script: the OpenAPI document's URL, same origin.
    urls = parser.urls + re.findall(r"url:\s*'([^']+)'", "".join(parser.scripts))
    assert len(urls) >= 4, urls
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
            cors_origins=[f"http://localhost:{port}"],
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
            page.goto(live + "/docs")
            page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
            assert "xác minh chữ ký số" in page.inner_text(".swagger-ui .info .title")
            assert page.locator("button.authorize").count() == 1  # the bearer scheme
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
            # From the configured origin (localhost) to the API: the answer is readable.
            page.goto(f"http://localhost:{port}/docs")
            allowed = page.evaluate(fetch, live + "/v1/verifications")
            assert allowed.get("status") == 422, allowed
            assert allowed["body"]["code"] == "NOT_A_PDF"
            # From an origin not configured (127.0.0.1): the browser refuses to hand it over.
            page.goto(live + "/docs")
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
