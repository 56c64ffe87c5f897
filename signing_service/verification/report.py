"""The verification report (JSON schema in docs/verification-report.md).

Per signature, separate checks, each PASSED / FAILED / INDETERMINATE (or NOT_APPLICABLE for a
timestamp check on a signature that carries none) with a reason code and a Vietnamese message;
an ETSI EN 319 102-1 indication and sub-indication per signature and for the document; what the
result rests on (the time validated at and what proves it, the chain and its anchor, the
revocation data used, the timestamps); and document-level warnings a reader must see even when
every signature passes.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any

from signing_service.verification.messages import VERDICT_MESSAGES, display_text, message


class CheckStatus(StrEnum):
    PASSED = "PASSED"
    FAILED = "FAILED"
    INDETERMINATE = "INDETERMINATE"
    NOT_APPLICABLE = "NOT_APPLICABLE"


class Indication(StrEnum):
    TOTAL_PASSED = "TOTAL_PASSED"
    TOTAL_FAILED = "TOTAL_FAILED"
    INDETERMINATE = "INDETERMINATE"


class Verdict(StrEnum):
    TOTAL_PASSED = "TOTAL_PASSED"
    TOTAL_FAILED = "TOTAL_FAILED"
    INDETERMINATE = "INDETERMINATE"
    # A PDF without any signature: never TOTAL_PASSED.
    NO_SIGNATURE = "NO_SIGNATURE"


CHECK_NAMES = ("integrity", "modifications", "trust", "revocation", "timestamp", "algorithms")


@dataclass
class Check:
    status: CheckStatus
    code: str
    message: str
    sub_indication: str | None = None

    @classmethod
    def of(cls, status: CheckStatus, code: str, sub: str | None = None, extra: str = "") -> Check:
        """A check with ``code``'s Vietnamese message (``extra`` appended in parentheses)."""
        return cls(status, code, message(code, extra), sub)

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "code": self.code, "message": self.message}


@dataclass(frozen=True)
class Note:
    """A finding attached to a signature or the document: ``code`` + Vietnamese ``message``;
    for warnings about page content, the 1-based ``page`` and ``rect`` [x1, y1, x2, y2] in
    points, and the ``signature`` (field name) it concerns."""

    code: str
    message: str
    signature: str | None = None
    page: int | None = None
    rect: tuple[float, float, float, float] | None = None

    def __post_init__(self) -> None:
        # From the document: the field name escaped, the rectangle finite (JSON has no
        # Infinity; a hostile /Rect of 1e400 reads as one).
        if self.signature is not None:
            object.__setattr__(self, "signature", display_text(str(self.signature)))
        if self.rect is not None and not all(math.isfinite(v) for v in self.rect):
            object.__setattr__(self, "rect", None)

    @classmethod
    def of(cls, code: str, extra: str = "", **where: Any) -> Note:
        return cls(code, message(code, extra), **where)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.signature is not None:
            out["signature"] = self.signature
        if self.page is not None:
            out["page"] = self.page
        if self.rect is not None:
            out["rect"] = [round(v, 2) for v in self.rect]
        return out


@dataclass
class SignerInfo:
    common_name: str | None
    organization: str | None
    title: str | None
    subject: str  # Vietnamese labels: "Tên: …, Tổ chức: …"
    issuer: str
    serial_number: str
    certificate_sha256: str
    valid_from: str
    valid_to: str
    organizational_unit: str | None = None
    profile: str = "unknown"  # personal | organization | unknown
    profile_label: str = ""


@dataclass(frozen=True)
class ChainEntry:
    subject: str
    serial_number: str
    certificate_sha256: str
    valid_from: str
    valid_to: str


@dataclass(frozen=True)
class TrustAnchorInfo:
    name: str
    kind: str  # public_duty | public | development | configured
    kind_label: str
    certificate_sha256: str


@dataclass(frozen=True)
class TimestampInfo:
    type: str  # signature | content | document
    time: str | None
    authority: str | None
    status: str
    code: str


@dataclass(frozen=True)
class RevocationDataInfo:
    type: str  # OCSP | CRL
    source: str  # document | fetched
    issuer: str
    certificate: str
    issued_at: str | None
    status: str  # good | revoked | not_listed | unknown
    revoked_at: str | None = None


@dataclass
class SignatureReport:
    field: str
    type: str  # signature | certification | document_timestamp
    checks: dict[str, Check]
    signer: SignerInfo | None = None
    signing_time: str | None = None
    signing_time_source: str | None = None  # timestamp | timestamp_unverified | claimed
    timestamp_time: str | None = None
    md_algorithm: str | None = None
    signature_algorithm: str | None = None
    coverage: str | None = None
    level: str | None = None  # B-B | B-T | B-LT | B-LTA (PAdES baseline)
    validation_time: str | None = None
    best_signature_time: str | None = None
    best_signature_time_proof: str | None = None  # signature_timestamp | document_timestamp
    trust_anchor: TrustAnchorInfo | None = None
    category: str | None = None  # public_duty | public | development
    category_label: str | None = None
    chain: list[ChainEntry] = field(default_factory=list)
    timestamps: list[TimestampInfo] = field(default_factory=list)
    revocation_data: list[RevocationDataInfo] = field(default_factory=list)
    notes: list[Note] = field(default_factory=list)
    indication: Indication = Indication.INDETERMINATE
    sub_indication: str | None = None
    summary: str = ""

    def __post_init__(self) -> None:
        # The field name comes from the document: escaped once here, so that every message
        # quoting it (the document's verdict included) is safe to print.
        self.field = display_text(str(self.field))

    def conclude(self) -> None:
        """ETSI indication from the checks: any FAILED → TOTAL_FAILED, any INDETERMINATE →
        INDETERMINATE, otherwise TOTAL_PASSED; sub-indication from the first deciding check;
        a one-sentence Vietnamese ``summary`` naming what decided it."""
        for name in CHECK_NAMES:
            check = self.checks.get(name)
            if check is not None and check.status is CheckStatus.FAILED:
                self.indication = Indication.TOTAL_FAILED
                self.sub_indication = check.sub_indication or "FORMAT_FAILURE"
                self.summary = check.message
                return
        for name in CHECK_NAMES:
            check = self.checks.get(name)
            if check is not None and check.status is CheckStatus.INDETERMINATE:
                self.indication = Indication.INDETERMINATE
                self.sub_indication = check.sub_indication
                self.summary = check.message
                return
        self.indication = Indication.TOTAL_PASSED
        self.sub_indication = None
        self.summary = (
            "Dấu thời gian tài liệu hợp lệ."
            if self.type == "document_timestamp"
            else "Chữ ký số hợp lệ."
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "type": self.type,
            "level": self.level,
            "indication": self.indication.value,
            "sub_indication": self.sub_indication,
            "summary": self.summary,
            "signer": asdict(self.signer) if self.signer else None,
            "category": self.category,
            "category_label": self.category_label,
            "trust_anchor": asdict(self.trust_anchor) if self.trust_anchor else None,
            "signing_time": self.signing_time,
            "signing_time_source": self.signing_time_source,
            "timestamp_time": self.timestamp_time,
            "validation_time": self.validation_time,
            "best_signature_time": self.best_signature_time,
            "best_signature_time_proof": self.best_signature_time_proof,
            "md_algorithm": self.md_algorithm,
            "signature_algorithm": self.signature_algorithm,
            "coverage": self.coverage,
            "chain": [asdict(c) for c in self.chain],
            "timestamps": [asdict(t) for t in self.timestamps],
            "revocation_data": [asdict(r) for r in self.revocation_data],
            "notes": [n.to_dict() for n in self.notes],
            "checks": {name: check.to_dict() for name, check in self.checks.items()},
        }


@dataclass
class DocumentReport:
    sha256: str
    size: int
    verdict: Verdict
    sub_indication: str | None
    signatures: list[SignatureReport] = field(default_factory=list)
    problems: list[Check] = field(default_factory=list)
    validated_at: str = ""
    validation_time: str = ""
    warnings: list[Note] = field(default_factory=list)
    unsigned_fields: list[str] = field(default_factory=list)
    message: str = ""

    @classmethod
    def conclude(
        cls,
        sha256: str,
        size: int,
        signatures: list[SignatureReport],
        problems: list[Check],
        validated_at: str,
        *,
        validation_time: str | None = None,
        warnings: list[Note] | None = None,
        unsigned_fields: list[str] | None = None,
    ) -> DocumentReport:
        """The document's verdict: TOTAL_FAILED if any signature or document-level problem
        failed, else INDETERMINATE if any signature is undecided, else TOTAL_PASSED;
        NO_SIGNATURE without signatures, and also when only document timestamps are present
        and none failed (a timestamp proves existence at a time, not approval). The
        ``message`` says what decided it and, when the verdict passes with warnings, that
        there are warnings a reader must look at."""
        verdict = Verdict.NO_SIGNATURE
        sub: str | None = None
        text: str
        warnings = list(warnings or [])
        failed_problem = next((p for p in problems if p.status is CheckStatus.FAILED), None)
        failed = [s for s in signatures if s.indication is Indication.TOTAL_FAILED]
        undecided = [s for s in signatures if s.indication is Indication.INDETERMINATE]
        if failed_problem is not None:
            verdict, sub = Verdict.TOTAL_FAILED, failed_problem.sub_indication
            text = f"{VERDICT_MESSAGES[verdict]} {failed_problem.message}"
        elif failed:
            verdict, sub = Verdict.TOTAL_FAILED, failed[0].sub_indication
            first = failed[0]
            integrity = first.checks.get("integrity")
            modifications = first.checks.get("modifications")
            if (
                integrity is not None
                and integrity.status is CheckStatus.PASSED
                and modifications is not None
                and modifications.status is CheckStatus.FAILED
            ):
                # The signed revision is intact; what came after it is not allowed.
                text = (
                    "Chữ ký hợp lệ nhưng tài liệu đã bị sửa sau khi ký "
                    f"(chữ ký {first.field}): {modifications.message}"
                )
            else:
                text = f"{VERDICT_MESSAGES[verdict]} Chữ ký {first.field}: {first.summary}"
        elif not any(s.type != "document_timestamp" for s in signatures):
            # Only document timestamps (or nothing): anyone can have a TSA timestamp a file,
            # which shows when it existed, never who approved it. Not a signed document.
            text = VERDICT_MESSAGES[verdict]
            if signatures:
                text += (
                    f" Tài liệu chỉ có {len(signatures)} dấu thời gian tài liệu: dấu thời gian "
                    "chứng minh tài liệu đã tồn tại vào thời điểm đó, không cho biết ai đã ký "
                    "hay phê duyệt."
                )
            if unsigned_fields:
                text += f" (có {len(unsigned_fields)} trường chữ ký chưa ký)"
        elif undecided:
            verdict, sub = Verdict.INDETERMINATE, undecided[0].sub_indication
            text = (
                f"{VERDICT_MESSAGES[verdict]} Chữ ký {undecided[0].field}: {undecided[0].summary}"
            )
        else:
            verdict = Verdict.TOTAL_PASSED
            text = VERDICT_MESSAGES[verdict]
            if warnings:
                text = (
                    f"Các chữ ký số hợp lệ, nhưng có {len(warnings)} cảnh báo cần xem: "
                    + "; ".join(w.message for w in warnings[:3])
                )
        return cls(
            sha256,
            size,
            verdict,
            sub,
            signatures,
            problems,
            validated_at,
            validation_time or validated_at,
            warnings,
            [display_text(str(name)) for name in unsigned_fields or []],
            text,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "sub_indication": self.sub_indication,
            "message": self.message,
            "document": {"sha256": self.sha256, "size": self.size},
            "validated_at": self.validated_at,
            "validation_time": self.validation_time,
            "signatures": [s.to_dict() for s in self.signatures],
            "unsigned_fields": self.unsigned_fields,
            "warnings": [w.to_dict() for w in self.warnings],
            "problems": [
                {**p.to_dict(), "sub_indication": p.sub_indication} for p in self.problems
            ],
        }
