"""Signatures already on a document the service is asked to sign (red team 17b, R17B-1).

A document that already carries signatures (document timestamps included) is verified with the
service's own verifier (:attr:`Services.verifier`, live revocation as the public verifier) before
a new signature is added, in every flow: one document (multipart and raw body), each document
of a batch, and two-step signing at step 1 (and again at step 2, on the document as completed).
Countersigning a forged or revoked signature would lend the agency's seal to it, and the
registry would list the result as in force.

- Refused, 422 ``EXISTING_SIGNATURE_INVALID`` (nothing stored, registered or half-written; the
  refusal is audited, ``signature.refused``): an earlier signature TOTAL_FAILED (content changed,
  a broken document timestamp, a disallowed change after it, ...); INDETERMINATE because its
  signer or a CA of its chain is revoked and nothing proves it signed before
  (``REVOKED_NO_POE``, ``REVOKED_CA_NO_POE``); or a document-level problem of the verification,
  a bound reached (``TIME_BUDGET_EXCEEDED``, ``TOO_MANY_REVISIONS``, ...) or a signature the
  form does not reach: a document the service could not check is not signed blindly.
  ``details``: the ``field`` (``null`` for a document-level problem), its ``type``,
  ``indication``, ``sub_indication`` and the deciding check's ``code``.
- Signed, and said: any other INDETERMINATE (unknown trust anchor, revocation status unknown,
  certificate expired without proof of existence). The answer (``existing_signatures``) and the
  ``signature.created`` audit entry list every earlier signature with its indication.

A document without signatures costs nothing more: the engine counts filled signature fields in
the parse it makes anyway and calls the check only when there are some
(engine.BeforeCountersigning).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from signing_service import audit, errors
from signing_service.services.container import Services
from signing_service.verification.report import (
    CHECK_NAMES,
    Check,
    CheckStatus,
    DocumentReport,
    SignatureReport,
)
from signing_service.verification.validate import (
    EncryptedPdfError,
    NotPdfError,
    UnreadablePdfError,
)

# INDETERMINATE sub-indications that refuse like a failure: the signer's certificate (or a CA
# certificate of its chain) is revoked and no proof of existence puts the signature before it.
REFUSED_UNDECIDED = frozenset({"REVOKED_NO_POE", "REVOKED_CA_NO_POE"})


@dataclass(frozen=True)
class ExistingSignature:
    """An earlier signature as the verifier judged it before the new one was added."""

    field: str
    type: str  # signature | certification | document_timestamp
    indication: str  # TOTAL_PASSED | INDETERMINATE | TOTAL_FAILED
    sub_indication: str | None
    code: str | None  # the deciding check's code (None when it passed)

    @classmethod
    def of(cls, report: SignatureReport) -> ExistingSignature:
        deciding = _deciding(report)
        return cls(
            report.field,
            report.type,
            report.indication.value,
            report.sub_indication,
            deciding.code if deciding is not None else None,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "type": self.type,
            "indication": self.indication,
            "sub_indication": self.sub_indication,
            "code": self.code,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ExistingSignature:
        return cls(
            str(data.get("field", "")),
            str(data.get("type", "")),
            str(data.get("indication", "")),
            data.get("sub_indication"),
            data.get("code"),
        )


def _deciding(report: SignatureReport) -> Check | None:
    """The check that decided ``report``'s indication (SignatureReport.conclude's order)."""
    for status in (CheckStatus.FAILED, CheckStatus.INDETERMINATE):
        for name in CHECK_NAMES:
            check = report.checks.get(name)
            if check is not None and check.status is status:
                return check
    return None


def judge(
    signatures: Sequence[SignatureReport], problems: Sequence[Check]
) -> list[ExistingSignature]:
    """The earlier signatures, or 422 ``EXISTING_SIGNATURE_INVALID`` for the first that
    refuses (module docstring): a document-level problem first, then the signatures in the
    document's order."""
    for problem in problems:
        if problem.status is not CheckStatus.PASSED:
            raise errors.ExistingSignatureInvalid(
                "Không kiểm tra được các chữ ký số đã có trên tài liệu: "
                f"{problem.message} Dịch vụ không ký thêm lên tài liệu khi chưa kiểm tra được "
                "các chữ ký trước.",
                details={
                    "field": None,
                    "type": None,
                    "indication": "TOTAL_FAILED"
                    if problem.status is CheckStatus.FAILED
                    else "INDETERMINATE",
                    "sub_indication": problem.sub_indication,
                    "code": problem.code,
                },
            )
    found = [ExistingSignature.of(report) for report in signatures]
    for report, existing in zip(signatures, found, strict=True):
        refused = existing.indication == "TOTAL_FAILED" or (
            existing.indication == "INDETERMINATE" and existing.sub_indication in REFUSED_UNDECIDED
        )
        if refused:
            what = "Dấu thời gian tài liệu" if report.type == "document_timestamp" else "Chữ ký số"
            raise errors.ExistingSignatureInvalid(
                f"{what} “{report.field}” đã có trên tài liệu không hợp lệ: {report.summary} "
                "Dịch vụ không ký thêm lên tài liệu này; vui lòng lấy lại bản gốc hợp lệ từ "
                "người ký.",
                details=existing.to_dict(),
            )
    return found


async def async_check(services: Services, pdf: bytes) -> list[ExistingSignature]:
    """Verify the signatures ``pdf`` carries (now, live revocation) and :func:`judge` them.
    A signed document the verifier cannot even open is refused as well."""
    try:
        report: DocumentReport = await services.verifier.async_verify(pdf)
    except (NotPdfError, UnreadablePdfError, EncryptedPdfError) as e:
        # The engine has opened it and found signatures: refused, never signed unchecked.
        raise errors.ExistingSignatureInvalid(
            details={
                "field": None,
                "type": None,
                "indication": "TOTAL_FAILED",
                "sub_indication": "FORMAT_FAILURE",
                "code": type(e).__name__,
            }
        ) from None
    return judge(report.signatures, report.problems)


@dataclass
class Countersigning:
    """The engine's hook (engine.BeforeCountersigning) for one document: verifies it when
    called and keeps what it found (``found`` stays ``None`` for a document without
    signatures, for which the engine never calls it)."""

    services: Services
    pdf: bytes
    found: list[ExistingSignature] | None = field(default=None)

    async def __call__(self) -> None:
        self.found = await async_check(self.services, self.pdf)

    def listed(self) -> list[dict[str, Any]]:
        """The earlier signatures for an answer or an audit entry (empty without any)."""
        return [s.to_dict() for s in self.found or ()]


def audit_refusal(
    services: Services,
    *,
    actor: str,
    agency_code: str,
    subject: str,
    refusal: errors.ServiceError,
    flow: str,
    profile: str | None = None,
) -> None:
    """The ``signature.refused`` audit entry of a refusal for the document's earlier
    signatures (``subject``: the input's SHA-256, or the two-step session's id at step 2)."""
    with services.db.transaction() as session:
        audit.append(
            session,
            actor=actor,
            action="signature.refused",
            agency_code=agency_code,
            subject=subject,
            details={
                "code": refusal.code,
                "flow": flow,
                "profile": profile,
                "existing_signature": dict(refusal.details),
            },
        )
