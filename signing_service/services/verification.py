"""Verify a PDF's signatures (the public use case behind ``POST /v1/verifications`` and
``signing-service verify``)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from signing_service import audit, errors, metrics
from signing_service._async import run_sync
from signing_service.services.conclusion import conclude as _conclude
from signing_service.services.conclusion import shown_outcome
from signing_service.services.container import Services
from signing_service.services.documents import check_pdf_upload
from signing_service.services.registry import registry_section
from signing_service.services.verification_time import parse_validation_time  # noqa: F401 - re-exported
from signing_service.verification.validate import (
    EncryptedPdfError,
    NotPdfError,
    UnreadablePdfError,
)


def conclude(report: dict[str, Any]) -> dict[str, Any]:
    """:func:`signing_service.services.conclusion.conclude` (the document's one state, in
    place), counted in ``signing_service_verifications_total`` by verdict and state. The
    service's verifications come through here; the CLI's ``verify`` (no deployment, no
    metrics) calls the conclusion module directly."""
    _conclude(report)
    metrics.observe_verification(report.get("verdict"), report.get("status", {}).get("state"))
    return report


def verify_document_json(
    services: Services,
    pdf: bytes,
    *,
    actor: str,
    validation_time: datetime | None = None,
    anonymous: bool = False,
) -> bytes:
    """The public endpoint's use case: the report as JSON bytes, verified in the verification
    worker processes (when configured) and serialised there, so that the API process only
    forwards bytes. ``anonymous``: counted, not audited, as :func:`verify_document` says. Same
    errors as :func:`verify_document` with ``isolated=True``. The report carries the
    ``registry`` section (:func:`signing_service.services.registry.registry_section`), looked
    up here, in the API process, by the file's hash: the workers hold no database."""
    if services.settings.verification_processes <= 0:
        report = verify_document(
            services, pdf, actor=actor, validation_time=validation_time, anonymous=anonymous
        )
        return json.dumps(report, ensure_ascii=False).encode()
    counter = services.verification_counter if anonymous else None
    try:
        # A document the service signed is accepted back (Settings.signing_headroom_bytes).
        check_pdf_upload(pdf, services.settings.max_document_bytes)
        body, summary = services.verification_pool.verify_json(pdf, validation_time)
    except errors.ServiceError as e:
        if counter is not None:
            counter.add(e.code)
        raise
    if counter is None:
        _record(services, actor, None, summary)
    report = _concluded(body, registry_section(services, pdf, summary["sha256"]))
    if counter is not None:
        # What the person was shown: "revoked" is not counted as "valid" (new user 14 F10).
        counter.add(shown_outcome(report))
    return json.dumps(report, ensure_ascii=False).encode()


def with_registry(body: bytes, section: dict[str, Any]) -> bytes:
    """The serialised report ``body`` (a JSON object) with the top-level ``registry`` section
    and the document's ``status`` (:func:`conclude`) added. Raises :class:`ValueError` when
    ``body`` is not a JSON object."""
    return json.dumps(_concluded(body, section), ensure_ascii=False).encode()


def _concluded(body: bytes, section: dict[str, Any]) -> dict[str, Any]:
    """:func:`with_registry`, not serialised again."""
    report = json.loads(body)
    if not isinstance(report, dict):
        raise ValueError("not a JSON object")
    report["registry"] = section
    return conclude(report)


def _record(
    services: Services, actor: str, agency_code: str | None, summary: dict[str, Any]
) -> None:
    with services.db.transaction() as session:
        audit.append(
            session,
            actor=actor,
            action="verification.performed",
            agency_code=agency_code,
            subject=summary["sha256"],
            details={"verdict": summary["verdict"], "signatures": summary["signatures"]},
        )


def verify_document(
    services: Services,
    pdf: bytes,
    *,
    actor: str,
    agency_code: str | None = None,
    validation_time: datetime | None = None,
    isolated: bool = False,
    anonymous: bool = False,
) -> dict[str, Any]:
    """Verify ``pdf`` and return the report (docs/verification-report.md).

    ``validation_time``: validate as of that moment instead of now (audits, tests).
    ``isolated``: run in the verification worker processes (time and memory budget; the public
    endpoint) unless ``verification_processes`` is 0; otherwise in this thread (the CLI).
    ``anonymous`` (the public endpoint): the outcome, verdict or error code, is counted
    (:class:`~signing_service.services.counters.VerificationCounter`) instead of written to
    the audit log; otherwise (the CLI) the verification is an audit entry of ``actor``.
    Raises the upload errors (``EMPTY_FILE``, ``FILE_TOO_LARGE``, ``NOT_A_PDF``,
    ``MALFORMED_PDF`` for an unsigned file that cannot be parsed, ``ENCRYPTED_PDF``) and, when
    isolated, ``VERIFICATION_TIME_LIMIT``, ``VERIFICATION_RESOURCE_LIMIT``, ``VERIFICATION_BUSY``.
    """
    if not anonymous:
        return _verify(services, pdf, actor, agency_code, validation_time, isolated)
    counter = services.verification_counter
    try:
        result = _verify(services, pdf, None, agency_code, validation_time, isolated)
    except errors.ServiceError as e:
        counter.add(e.code)
        raise
    counter.add(shown_outcome(result))
    return result


def _verify(
    services: Services,
    pdf: bytes,
    actor: str | None,
    agency_code: str | None,
    validation_time: datetime | None,
    isolated: bool,
) -> dict[str, Any]:
    check_pdf_upload(pdf, services.settings.max_document_bytes)
    if isolated and services.settings.verification_processes > 0:
        result = services.verification_pool.verify(pdf, validation_time)
    else:
        try:
            report = run_sync(services.verifier.async_verify(pdf, validation_time=validation_time))
        except NotPdfError:
            raise errors.NotAPdf() from None
        except UnreadablePdfError:
            raise errors.MalformedPdf() from None
        except EncryptedPdfError:
            raise errors.EncryptedPdf() from None
        result = report.to_dict()
    # Issued through this service, and still in force? (issue 11; README, Sổ đăng ký văn bản
    # đã phát hành). Not an error when it was not.
    result["registry"] = registry_section(services, pdf, result["document"]["sha256"])
    conclude(result)
    if actor is not None:
        _record(
            services,
            actor,
            agency_code,
            {
                "verdict": result["verdict"],
                "signatures": len(result["signatures"]),
                "sha256": result["document"]["sha256"],
            },
        )
    return result
