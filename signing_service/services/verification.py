from __future__ import annotations

from typing import Any

from signing_service import audit, errors
from signing_service._async import run_sync
from signing_service.services.container import Services
from signing_service.services.documents import check_pdf_upload
from signing_service.verification.validate import (
    EncryptedPdfError,
    NotPdfError,
    UnreadablePdfError,
)


def verify_document(
    services: Services, pdf: bytes, *, actor: str, agency_code: str | None = None
) -> dict[str, Any]:
    check_pdf_upload(pdf, services.settings.max_upload_bytes)
    try:
        report = run_sync(services.verifier.async_verify(pdf))
    except NotPdfError:
        raise errors.NotAPdf() from None
    except UnreadablePdfError:
        raise errors.MalformedPdf() from None
    except EncryptedPdfError:
        raise errors.EncryptedPdf() from None
    result = report.to_dict()
    with services.db.transaction() as session:
        audit.append(
            session,
            actor=actor,
            action="verification.performed",
            agency_code=agency_code,
            subject=report.sha256,
            details={"verdict": result["verdict"], "signatures": len(result["signatures"])},
        )
    return result
