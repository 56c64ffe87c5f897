"""The OpenAPI description for other portals (issue 11 item 5) and the offline ``/docs``.

- The bearer security scheme (``Authorization: Bearer ssk_…``, read by :mod:`.deps`) is declared
  and required on exactly the operations whose dependencies authenticate the caller, so
  Swagger UI's "Authorize" button works; authentication itself is unchanged (``deps``).
- Each operation lists the error codes it can return, by HTTP status, with the
  :class:`~signing_service.api.schemas.ErrorBody` schema. The codes are derived, not written per
  route: from the error classes of :mod:`signing_service.errors` and the tables that map
  failures to them (``PLACEMENT_ERRORS``, ``services.signing.CHECK_ERRORS`` /
  ``TIMESTAMP_ERRORS`` / ``PDF_INPUT_ERRORS``, ``services.keys.KEY_ERRORS``), grouped by domain
  and chosen by the operation's path; authentication and the public lane add theirs.
- Swagger UI's assets (swagger-ui-dist 5.35.0 from npm, Apache-2.0, ``docs_assets/swagger-ui``
  with its LICENSE and NOTICE) are served by the service: ``/docs`` works without internet and
  makes no third-party request (its validator badge, which calls validator.swagger.io, is off).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.openapi.utils import get_openapi
from fastapi.responses import HTMLResponse
from fastapi.routing import APIRoute
from fastapi.staticfiles import StaticFiles

from signing_service import errors
from signing_service.api import deps

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
            errors.RateLimited,
            # The PDF report (?format=pdf): sealed by the service's key, timestamped.
            errors.UnsupportedReportFormat,
            errors.ReportNotConfigured,
            errors.ReportBusy,
            *signer_checks,
            *keys,
        ],
        "documents": [errors.DocumentNotFound, errors.StorageUnavailable, errors.StorageIntegrity],
        # The registry of issued documents: its own codes (REGISTRY_…, INVALID_REGISTRY_…,
        # INVALID_SUPERSEDING_…).
        "registry": _by_prefix("REGISTRY_", "INVALID_REGISTRY_", "INVALID_SUPERSEDING_"),
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


# Which groups an operation's path belongs to (first match).
PATH_GROUPS: tuple[tuple[re.Pattern[str], tuple[str, ...]], ...] = (
    (re.compile(r"^/v1/signatures/batch$"), ("pdf_input", "signing", "batch")),
    (re.compile(r"^/v1/signatures/external"), ("pdf_input", "signing", "external")),
    (re.compile(r"^/v1/signatures"), ("pdf_input", "signing")),
    (re.compile(r"^/v1/verifications"), ("pdf_input", "verification")),
    (re.compile(r"^/v1/documents"), ("documents",)),
    (re.compile(r"^/v1/(registry|registered-documents)/"), ("registry",)),
    (re.compile(r"^/v1/(dossiers|attachments)"), ("attachments",)),
    (re.compile(r"^/v1/admin"), ("admin",)),
    (re.compile(r"^/v1/operator"), ("operator",)),
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


def operation_errors(route: APIRoute, path: str | None = None) -> dict[int, list[str]]:
    """The error codes ``route`` can return, by HTTP status (sorted, unique): every
    operation's (``INVALID_REQUEST``, ``INTERNAL_ERROR``; with a body ``FILE_TOO_LARGE`` and
    ``REQUEST_TIMEOUT``), authentication's, the anonymous
    lane's, and its domain groups' (:data:`PATH_GROUPS`, by ``path``: the route's own when
    not given)."""
    found: list[type[errors.ServiceError]] = [errors.InvalidRequest, errors.MalformedRequest]
    if (route.methods or set()) & {"POST", "PUT", "PATCH"}:
        # Any body is bounded in size and time at the edge (api/app.py BodyLimit, edge.py).
        found += [errors.PayloadTooLarge, errors.RequestTimeout]
    auth = _auth_errors(route)
    if auth is not None:
        found += auth
    else:
        # Anonymous requests share a bounded lane, a few at a time per client (api/edge.py
        # PublicLane).
        found += [errors.AnonymousBusy, errors.RateLimited]
    groups = _groups()
    for pattern, names in PATH_GROUPS:
        if pattern.match(path or route.path_format):
            for name in names:
                found += groups[name]
            break
    by_status: dict[int, set[str]] = {500: {"INTERNAL_ERROR"}}
    for error in found:
        by_status.setdefault(error.status, set()).add(error.code)
    return {status: sorted(codes) for status, codes in sorted(by_status.items())}


def _describe(codes: list[str]) -> str:
    return "Mã lỗi (`code`) có thể trả về: " + ", ".join(f"`{c}`" for c in codes) + "."


def build_openapi(app: FastAPI) -> dict[str, Any]:
    """FastAPI's OpenAPI document of ``app`` with the bearer scheme and the error codes of
    every operation (module docstring); built once, then cached on ``app.openapi_schema``."""
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
        "description": "Khóa API do đơn vị vận hành cấp: `Authorization: Bearer ssk_…`.",
    }
    error_ref = {"$ref": "#/components/schemas/ErrorBody"}
    for path, route in api_routes(app):
        if not route.include_in_schema:
            continue
        path_item = schema.get("paths", {}).get(path, {})
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
            for status, codes in operation_errors(route, path).items():
                entry = responses.setdefault(str(status), {})
                entry["description"] = _describe(codes)
                entry["content"] = {"application/json": {"schema": error_ref}}
    schema.setdefault("components", {}).setdefault("schemas", {}).setdefault(
        "ErrorBody", _error_body_schema()
    )
    app.openapi_schema = schema
    return schema


def _error_body_schema() -> dict[str, Any]:
    from signing_service.api.schemas import ErrorBody

    return ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")


def mount_docs(app: FastAPI) -> None:
    """``/docs`` (Swagger UI) from the service's own assets under ``/docs/assets``, and the
    OpenAPI builder of :func:`build_openapi`. Create ``app`` with ``docs_url=None`` and
    ``redoc_url=None`` (FastAPI's pages load their scripts from a CDN)."""
    app.openapi = lambda: build_openapi(app)  # type: ignore[method-assign]
    app.mount(ASSETS_PATH, StaticFiles(directory=SWAGGER_DIR), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} — tài liệu API",
            swagger_js_url=f"{ASSETS_PATH}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS_PATH}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS_PATH}/favicon-32x32.png",
            oauth2_redirect_url=None,
            # No third-party request: the validator badge would call validator.swagger.io.
            swagger_ui_parameters={"validatorUrl": None, "persistAuthorization": False},
        )
