"""The OpenAPI description for other portals (issue 11 item 5) and the offline ``/docs``.

- The bearer security scheme (``Authorization: Bearer ssk_…``, read by :mod:`.deps`) is declared
  and required on exactly the operations whose dependencies authenticate the caller, so
  Swagger UI's "Authorize" button works; authentication itself is unchanged (``deps``).
- Each operation lists the error codes it can return, by HTTP status, with the
  :class:`~signing_service.api.schemas.ErrorBody` schema and one example per code (its own
  message). The codes are derived, not written per route: from the error classes of
  :mod:`signing_service.errors` and the tables that map failures to them
  (``PLACEMENT_ERRORS``, ``services.signing.CHECK_ERRORS`` / ``TIMESTAMP_ERRORS`` /
  ``PDF_INPUT_ERRORS``, ``services.keys.KEY_ERRORS``), grouped by domain and chosen by the
  operation's path and method; authentication, the public lane and FastAPI's validation (only
  where it can refuse the input) add theirs. The PDF report's seal codes are listed apart on
  ``POST /v1/verifications``, as answered only when the PDF report is asked for.
- Swagger UI's assets (swagger-ui-dist 5.35.0 from npm, Apache-2.0, ``docs_assets/swagger-ui``
  with its LICENSE and NOTICE; ``docs-init.js`` there is ours) are served by the service:
  ``/docs`` works without internet and makes no third-party request (its validator badge,
  which calls validator.swagger.io, is off). :class:`DocsShell` gives ``/docs``, its assets and
  the OpenAPI document their security headers, and ``/docs`` and its assets gzip.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from html import escape
from http import HTTPStatus
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signing_service import errors
from signing_service.api import deps
from signing_service.api.edge import PROBES
from signing_service.web.middleware import security_headers

SWAGGER_DIR = Path(__file__).with_name("docs_assets") / "swagger-ui"
ASSETS_PATH = "/docs/assets"
BEARER = "bearerAuth"


def _all_errors() -> list[type[errors.ServiceError]]:
    return [
        value
        for value in vars(errors).values()
        if isinstance(value, type)
        and issubclass(value, errors.ServiceError)
        and value is not errors.ServiceError
        and value is not errors.ScreeningRefused  # its code is the screening result's
    ]


def _by_prefix(*prefixes: str) -> list[type[errors.ServiceError]]:
    return [e for e in _all_errors() if e.code.startswith(prefixes)]


def _groups() -> dict[str, list[type[errors.ServiceError]]]:
    """Error classes by domain, from the tables that map failures to codes."""
    from signing_service.services.keys import KEY_ERRORS
    from signing_service.services.signing import (
        CHECK_ERRORS,
        PDF_INPUT_ERRORS,
        TIMESTAMP_ERRORS,
    )

    pdf_input = [
        errors.EmptyFile,
        errors.NotAPdf,
        errors.MalformedPdf,
        errors.EncryptedPdf,
        errors.PayloadTooLarge,
    ]
    signer_checks = [*CHECK_ERRORS.values(), *TIMESTAMP_ERRORS.values()]
    keys = [*KEY_ERRORS.values(), errors.KeyUnavailable, errors.TimestampUnavailable]
    return {
        "pdf_input": pdf_input,
        # The raw-body form of a signing request takes only a PDF body (415).
        "raw_pdf": [errors.UnsupportedMediaType],
        "signing": [
            *PDF_INPUT_ERRORS.values(),
            *errors.PLACEMENT_ERRORS.values(),
            *signer_checks,
            *keys,
            *_by_prefix("PROFILE_", "RESULT_CODE_", "QR_"),
            errors.InvalidLevel,
            errors.InvalidDossierCode,
            errors.InvalidResultCode,
            errors.InvalidProcedureCode,
            errors.InvalidApplicantId,
            errors.InvalidDocumentNumber,
            errors.InvalidFilename,
            errors.SigningFailed,
            errors.StorageUnavailable,
            # The document's earlier signatures, verified before signing (services/existing.py).
            errors.ExistingSignatureInvalid,
        ],
        "batch": [errors.BatchTooLarge, errors.InvalidDocumentCodes],
        "external": [
            *_by_prefix("EXTERNAL_", "OFFICER_"),
            errors.ProfileNotExternal,
        ],
        "verification": [
            errors.VerificationTimeLimit,
            errors.VerificationResourceLimit,
            errors.VerificationBusy,
            errors.InvalidValidationTime,
            errors.UnsupportedReportFormat,
        ],
        # Only when the PDF report is asked for (?format=pdf, Accept: application/pdf): it is
        # sealed with the service's key and timestamped (reporting/pdf.py seal_pdf), so the
        # seal's key and certificate checks can fail; a portal asking for JSON never sees them.
        "report_pdf": [
            errors.ReportNotConfigured,
            errors.SigningFailed,
            errors.ReportBusy,
            *signer_checks,
            *keys,
        ],
        "documents": [errors.DocumentNotFound, errors.StorageUnavailable, errors.StorageIntegrity],
        # Extension of signed documents (services/extension.py): the verification before it,
        # the revocation data and the document timestamp it fetches.
        "extension": [
            *_by_prefix("EXTENSION_"),
            *TIMESTAMP_ERRORS.values(),
            errors.InvalidExtensionLevel,
            errors.TimestampUnavailable,
            errors.SigningFailed,
        ],
        "extension_stored": [errors.DocumentNotLatestVersion],
        # The registry of issued documents (services/registry.py): a lookup can only miss;
        # revoke and supersede also refuse a reason, a final status, a successor.
        "registry_read": [errors.RegistryRecordNotFound],
        "registry_revoke": [
            errors.RegistryRecordNotFound,
            errors.InvalidRegistryReason,
            errors.RegistryStatusFinal,
            errors.RegistryHasNewerVersion,
        ],
        "registry_supersede": [
            errors.RegistryRecordNotFound,
            errors.InvalidRegistryReason,
            errors.RegistryStatusFinal,
            errors.RegistryHasNewerVersion,
            errors.InvalidSupersedingDocument,
        ],
        # Evidence per signature (services/evidence.py): the record, the sealed ZIP (sealed
        # with the service's key and timestamped, as the PDF report), holds and retention.
        "evidence_record": [errors.SignatureNotFound],
        "evidence_zip": [
            errors.SignatureNotFound,
            errors.EvidenceNotKept,
            errors.EvidencePurged,
            errors.ReportNotConfigured,
            errors.SigningFailed,
            errors.StorageUnavailable,
            errors.StorageIntegrity,
            *signer_checks,
            *keys,
        ],
        "legal_hold": [errors.SignatureNotFound, errors.DocumentNotFound],
        "retention": [errors.InvalidRetention],
        "probe": [errors.NotReady],
        # The admin API's reads and deletions (services/profiles.py _get,
        # services/appearance_images.py delete_image): a listing refuses nothing of its own.
        "admin_list": [],
        "admin_profile": [errors.ProfileNotFound],
        "admin_image_delete": [errors.ImageNotFound, errors.ImageInUse],
        "attachments": [
            *_by_prefix("ATTACHMENT_", "IDEMPOTENCY_", "MALWARE_", "UPLOAD_"),
            errors.InvalidIdempotencyKey,
            errors.InvalidComponent,
            errors.InvalidDossierCode,
            errors.InvalidFilename,
            errors.StorageUnavailable,
        ],
        "admin": [
            *_by_prefix("PROFILE_", "IMAGE_", "UNKNOWN_", "APPEARANCE_", "INVALID_COPY"),
            errors.InvalidProfile,
            errors.InvalidImage,
            errors.Pdfa1NoTransparency,
        ],
        "operator": [
            *_by_prefix("API_KEY_", "OPERATOR_KEY_CLI"),
            errors.InvalidApiKeyRequest,
            errors.AgencyNotFound,
        ],
    }


# Which groups an operation belongs to, by its path or "METHOD path" (first match).
PATH_GROUPS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"^GET /v1/signatures/[^/]+$"), ("evidence_record",)),
    (re.compile(r"^GET /v1/signatures/[^/]+/evidence$"), ("evidence_zip",)),
    (re.compile(r"^PUT /v1/(signatures|documents)/[^/]+/legal-hold$"), ("legal_hold",)),
    (re.compile(r"^/v1/admin/evidence-retention$"), ("retention",)),
    (re.compile(r"^/v1/signatures/batch$"), ("pdf_input", "signing", "batch")),
    (re.compile(r"^/v1/signatures/external"), ("pdf_input", "signing", "external")),
    (re.compile(r"^/v1/signatures/raw$"), ("pdf_input", "signing", "raw_pdf")),
    (re.compile(r"^/v1/signatures"), ("pdf_input", "signing")),
    (re.compile(r"^/v1/verifications"), ("pdf_input", "verification")),
    (
        re.compile(r"^/v1/documents/[^/]+/extensions$"),
        ("documents", "pdf_input", "extension", "extension_stored"),
    ),
    (re.compile(r"^/v1/extensions$"), ("pdf_input", "extension")),
    (re.compile(r"^/v1/documents"), ("documents",)),
    (re.compile(r"^/v1/registered-documents/[^/]+/revoke$"), ("registry_revoke",)),
    (re.compile(r"^/v1/registered-documents/[^/]+/supersede$"), ("registry_supersede",)),
    (re.compile(r"^/v1/(registry|registered-documents)/[^/]+$"), ("registry_read",)),
    (re.compile(r"^/readyz$"), ("probe",)),
    (re.compile(r"^/v1/(dossiers|attachments)"), ("attachments",)),
    (re.compile(r"^GET /v1/admin/(profiles|keys|appearance-images)$"), ("admin_list",)),
    (re.compile(r"^(GET|DELETE) /v1/admin/profiles/[^/]+$"), ("admin_profile",)),
    (re.compile(r"^DELETE /v1/admin/appearance-images/[^/]+$"), ("admin_image_delete",)),
    (re.compile(r"^/v1/admin"), ("admin",)),
    (re.compile(r"^/v1/operator"), ("operator",)),
)
# Groups an operation returns only when the PDF report is asked for, by path.
PDF_ONLY_GROUPS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"^/v1/verifications$"), ("report_pdf",)),
)

_CLIENT_AUTH = (deps.current_client, deps.current_admin)
_OPERATOR_AUTH = (deps.current_operator,)


def _calls(dependant: Dependant) -> Iterable[Callable[..., Any]]:
    for sub in dependant.dependencies:
        if sub.call is not None:
            yield sub.call
        yield from _calls(sub)


def _auth_errors(route: APIRoute) -> list[type[errors.ServiceError]] | None:
    """The authentication errors of ``route``, ``None`` when it is anonymous."""
    calls = set(_calls(route.dependant))
    if calls & set(_CLIENT_AUTH):
        return [errors.Unauthenticated, errors.OperatorKeyNotAgency, errors.Forbidden]
    if calls & set(_OPERATOR_AUTH):
        return [errors.Unauthenticated, errors.Forbidden]
    return None


def api_routes(app: FastAPI) -> list[tuple[str, APIRoute]]:
    """The application's API routes with their full paths, through included routers (FastAPI
    0.165 keeps an included router as one entry of ``app.routes``)."""
    from fastapi import routing

    iterate = getattr(routing, "iter_route_contexts", None)
    if iterate is None:
        return [(r.path_format, r) for r in app.routes if isinstance(r, APIRoute)]
    return [
        (str(context.path_format), context.original_route)
        for context in iterate(app.routes)
        if isinstance(context.original_route, APIRoute)
    ]


def _may_fail_validation(route: APIRoute) -> bool:
    """Whether FastAPI can refuse a request to ``route`` before it runs (422
    ``INVALID_REQUEST``): a body, a required parameter, a parameter of another type than
    ``str`` or with constraints. A route taking only free-text path parameters (the public
    registry lookup) never answers 422."""

    def fields(dependant: Dependant) -> Iterable[tuple[Any, bool]]:
        # (field, may be missing): a path parameter is there whenever the route matches.
        yield from ((f, False) for f in dependant.path_params)
        yield from (
            (f, True)
            for f in (*dependant.query_params, *dependant.header_params, *dependant.cookie_params)
        )
        for sub in dependant.dependencies:
            yield from fields(sub)

    def has_body(dependant: Dependant) -> bool:
        return bool(dependant.body_params) or any(has_body(d) for d in dependant.dependencies)

    if has_body(route.dependant):
        return True
    for param, may_be_missing in fields(route.dependant):
        info = param.field_info
        if (
            (may_be_missing and info.is_required())
            or info.metadata
            or info.annotation not in (str, str | None)
        ):
            return True
    return False


def _collect(
    route: APIRoute, path: str | None
) -> tuple[list[type[errors.ServiceError]], list[type[errors.ServiceError]]]:
    """The error classes of ``route``: (always possible, only with the PDF report)."""
    path = path or route.path_format
    found: list[type[errors.ServiceError]] = [errors.MalformedRequest]
    if _may_fail_validation(route):
        found.append(errors.InvalidRequest)
    if (route.methods or set()) & {"POST", "PUT", "PATCH"}:
        # Any body is bounded in size and time at the edge (api/app.py BodyLimit, edge.py).
        found += [errors.PayloadTooLarge, errors.RequestTimeout]
    auth = _auth_errors(route)
    if auth is not None:
        found += auth
    elif path not in PROBES:
        # Anonymous requests share a bounded lane, a few at a time per client (api/edge.py
        # PublicLane; the probes pass by it).
        found += [errors.AnonymousBusy, errors.RateLimited]
    groups = _groups()
    methods = sorted(route.methods or ())
    for pattern, names in PATH_GROUPS:
        # A pattern names a path, or a method and a path ("GET /v1/admin/keys").
        if pattern.match(path) or any(pattern.match(f"{m} {path}") for m in methods):
            for name in names:
                found += groups[name]
            break
    pdf_only: list[type[errors.ServiceError]] = []
    for pattern, names in PDF_ONLY_GROUPS:
        if pattern.match(path):
            for name in names:
                pdf_only += groups[name]
    codes = {(e.status, e.code) for e in found}
    return found, [e for e in pdf_only if (e.status, e.code) not in codes]


def _by_status(found: Iterable[type[errors.ServiceError]]) -> dict[int, list[str]]:
    by_status: dict[int, set[str]] = {}
    for error in found:
        by_status.setdefault(error.status, set()).add(error.code)
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def operation_errors(route: APIRoute, path: str | None = None) -> dict[int, list[str]]:
    """The error codes ``route`` can return, by HTTP status (sorted, unique), with the PDF
    report's when it has one: every operation's (``INVALID_REQUEST`` 400, ``INTERNAL_ERROR``;
    ``INVALID_REQUEST`` 422 when FastAPI can refuse its input; with a body ``FILE_TOO_LARGE``
    and ``REQUEST_TIMEOUT``), authentication's, the anonymous lane's, and its domain groups'
    (:data:`PATH_GROUPS` and :data:`PDF_ONLY_GROUPS`, by ``path``: the route's own when not
    given)."""
    found, pdf_only = _collect(route, path)
    return _by_status([*found, *pdf_only, errors.ServiceError])


def operation_pdf_only_errors(route: APIRoute, path: str | None = None) -> dict[int, list[str]]:
    """The codes of :func:`operation_errors` that ``route`` returns only when the PDF report
    is asked for (``?format=pdf`` or ``Accept: application/pdf``), by HTTP status."""
    return _by_status(_collect(route, path)[1])


def _describe(codes: list[str], pdf_only: list[str]) -> str:
    text = ""
    if codes:
        text = "Mã lỗi (`code`) có thể trả về: " + ", ".join(f"`{c}`" for c in codes) + "."
    if pdf_only:
        text += (
            (" " if text else "")
            + "Chỉ khi yêu cầu báo cáo PDF (`format=pdf` hoặc `Accept: application/pdf`), "
            "do dịch vụ ký số báo cáo bằng con dấu của mình: "
            + ", ".join(f"`{c}`" for c in pdf_only)
            + "."
        )
    return text


def _examples(found: Iterable[type[errors.ServiceError]], status: int) -> dict[str, Any]:
    """One example per code under ``status``: the code and its own Vietnamese message."""
    examples: dict[str, Any] = {}
    for error in found:
        if error.status == status and error.code not in examples:
            examples[error.code] = {
                "summary": error.code,
                "value": {"code": error.code, "message": error.message},
            }
    return dict(sorted(examples.items()))


SUCCESS = {
    "200": "Thành công: nội dung trả về theo lược đồ bên dưới.",
    "201": "Đã tạo: nội dung trả về theo lược đồ bên dưới.",
    "202": "Đã nhận yêu cầu.",
    "204": "Thành công, không có nội dung trả về.",
}
# FastAPI's English defaults, replaced (the /docs page is Vietnamese, newuser 22).
FASTAPI_DEFAULTS = ("Successful Response", "Validation Error")


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document of ``app`` with the bearer scheme and the error codes of
    every operation (module docstring), each status with one example per code; built once,
    then cached on ``app.openapi_schema``."""
    if app.openapi_schema:
        return app.openapi_schema
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[BEARER] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "ssk_…",
        # Swagger UI puts "Bearer " in front of what is pasted: a hint showing the whole header
        # made developers paste "Bearer ssk_…" and get 401 (newuser 19). Auth stays strict.
        "description": (
            "Dán khóa API do đơn vị vận hành cấp (dạng `ssk_…`) vào ô *Value*, **không gõ chữ "
            "Bearer**: trang tự gửi tiêu đề `Authorization: Bearer ssk_…`."
        ),
    }
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, route in api_routes(app):
        if not route.include_in_schema:
            continue
        path_item = schema.get("paths", {}).get(path, {})
        found, pdf_only = _collect(route, path)
        every = [*found, *pdf_only, errors.ServiceError]
        listed = _by_status(found)
        listed_pdf = _by_status(pdf_only)
        for method in route.methods or ():
            operation = path_item.get(method.lower())
            if operation is None:
                continue
            if _auth_errors(route) is not None:
                operation["security"] = [{BEARER: []}]
                # The header is the scheme's (Swagger UI ignores an "Authorization" parameter).
                operation["parameters"] = [
                    p
                    for p in operation.get("parameters", [])
                    if (p.get("in"), p.get("name", "").lower()) != ("header", "authorization")
                ]
                if not operation["parameters"]:
                    del operation["parameters"]
            responses = operation.setdefault("responses", {})
            statuses = _by_status(every)
            for status in list(responses):
                # A status the route declared (or FastAPI's 422) that it cannot answer.
                if status.startswith(("4", "5")) and int(status) not in statuses:
                    del responses[status]
            for status in statuses:
                entry = responses.setdefault(str(status), {})
                entry["description"] = _describe(
                    listed.get(status, []) + (["INTERNAL_ERROR"] if status == 500 else []),
                    listed_pdf.get(status, []),
                )
                entry["content"] = {
                    "application/json": {
                        "schema": error_ref,
                        "examples": _examples(every, status),
                    }
                }
            for status, entry in responses.items():
                # FastAPI's English defaults, or the status's reason phrase ("OK").
                if entry.get("description") in (*FASTAPI_DEFAULTS, _phrase(status), "", None):
                    entry["description"] = SUCCESS.get(status, "Thành công.")
            operation["responses"] = dict(sorted(responses.items()))
    schemas = components.setdefault("schemas", {})
    schemas["ErrorBody"] = _error_body_schema()
    # FastAPI's validation error models are never answered (api/app.py turns them into
    # INVALID_REQUEST): not shown.
    for name in ("HTTPValidationError", "ValidationError"):
        if not _referenced(schema, name):
            schemas.pop(name, None)
    app.openapi_schema = schema
    return schema


def _phrase(status: str) -> str | None:
    try:
        return HTTPStatus(int(status)).phrase
    except ValueError:
        return None


def _referenced(schema: dict[str, Any], name: str) -> bool:
    import json

    return f'"#/components/schemas/{name}"' in json.dumps(schema)


def _error_body_schema() -> dict[str, Any]:
    """``ErrorBody`` described in Vietnamese, without the model's one example (a single code
    shown under every operation misled readers, newuser 20: each status has its own)."""
    from signing_service.api.schemas import ErrorBody

    body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
    body["description"] = "Mọi lỗi của dịch vụ có cùng một dạng."
    descriptions = {
        "code": "Mã lỗi ổn định (bảng mã lỗi trong README)",
        "message": "Thông báo tiếng Việt cho người dùng",
        "details": "Chi tiết theo từng mã lỗi (không bắt buộc)",
    }
    for name, prop in body.get("properties", {}).items():
        prop.pop("examples", None)
        prop.pop("example", None)
        if name in descriptions:
            prop["description"] = descriptions[name]
    return body


DOCS_PATH = "/docs"
OPENAPI_PATH = "/openapi.json"
# /docs, its assets and the OpenAPI document: the page where an agency pastes its API key.
# Scripts and styles only from the service's own files (the start-up script is a file, not
# inline; Swagger UI sets styles through the DOM, which a CSP allows); its CSS draws icons as
# data: SVG images; it calls only the service (the OpenAPI document, "Try it out"). Never
# framed (clickjacking of the Authorize dialog, red team F8). Checked in Chromium with no
# violation (tests/test_cors_openapi.py).
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; "
    "img-src 'self' data:; connect-src 'self'; form-action 'self'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
DOCS_HEADERS = security_headers(DOCS_CSP)
# The vendored assets change only with the service's version; the page and the document are
# revalidated (ETag from StaticFiles for the assets).
ASSET_CACHE = b"public, max-age=86400"
DOCS_CACHE = b"no-cache"


def is_docs_path(path: str) -> bool:
    """Whether ``path`` is ``/docs``, one of its assets or the OpenAPI document."""
    return path in (DOCS_PATH, OPENAPI_PATH) or path.startswith(ASSETS_PATH + "/")


class DocsShell:
    """ASGI middleware for :func:`is_docs_path` paths only: the security headers of
    :data:`DOCS_HEADERS`, cache headers, and, for ``/docs`` and its assets, gzip for browsers
    that accept it (Swagger UI's bundle is 1.7 MB, 0.46 MB compressed: red team F8). Other
    paths pass untouched."""

    def __init__(self, app: ASGIApp) -> None:
        from starlette.middleware.gzip import GZipMiddleware

        self.app = app
        self.gzip = GZipMiddleware(app, minimum_size=1024, compresslevel=6)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] == "http" else ""
        if not is_docs_path(path):
            await self.app(scope, receive, send)
            return
        asset = path.startswith(ASSETS_PATH + "/")
        # The OpenAPI document is an API answer (tools fetch it): left uncompressed, as the
        # API's answers are (web/middleware.py PageCompression).
        compress = path != OPENAPI_PATH

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                names = {k.lower() for k, _ in headers}
                headers += [(k, v) for k, v in DOCS_HEADERS if k not in names]
                if b"cache-control" not in names:
                    ok = message["status"] < 400
                    headers.append((b"cache-control", ASSET_CACHE if asset and ok else DOCS_CACHE))
                message = {**message, "headers": headers}
            await send(message)

        await (self.gzip if compress else self.app)(scope, receive, with_headers)


def docs_html(title: str, openapi_url: str) -> str:
    """The ``/docs`` page: Vietnamese (``lang="vi"``), Swagger UI from the service's assets,
    started by ``docs-init.js`` (no inline script: :data:`DOCS_CSP`), which reads the OpenAPI
    document's URL from ``data-openapi-url``."""
    return (
        "<!DOCTYPE html>\n"
        '<html lang="vi">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{escape(title)}</title>\n"
        f'<link rel="stylesheet" href="{ASSETS_PATH}/swagger-ui.css">\n'
        f'<link rel="icon" type="image/png" href="{ASSETS_PATH}/favicon-32x32.png">\n'
        "</head>\n<body>\n"
        f'<div id="swagger-ui" data-openapi-url="{escape(openapi_url)}"></div>\n'
        f'<script src="{ASSETS_PATH}/swagger-ui-bundle.js"></script>\n'
        f'<script src="{ASSETS_PATH}/docs-init.js"></script>\n'
        "</body>\n</html>\n"
    )


def mount_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) from the service's own assets under ``/docs/assets``, and the
    OpenAPI builder of :func:`build_openapi`. Create ``app`` with ``docs_url=None`` and
    ``redoc_url=None`` (FastAPI's pages load their scripts from a CDN), and wrap it in
    :class:`DocsShell` (headers, compression)."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    app.mount(ASSETS_PATH, StaticFiles(directory=SWAGGER_DIR), name="docs-assets")
    page = docs_html(f"{app.title} — tài liệu API", app.openapi_url or OPENAPI_PATH)

    @app.get(DOCS_PATH, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return HTMLResponse(page)
