"""The verification report (JSON schema in docs/verification-report.md).

Per signature, separate checks, each PASSED / FAILED / INDETERMINATE (or NOT_APPLICABLE for a
timestamp check on a signature that carries none) with a reason code and a Vietnamese message;
an ETSI EN 319 102-1 indication and sub-indication per signature and for the document.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


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

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "code": self.code, "message": self.message}


@dataclass
class SignerInfo:
    common_name: str | None
    organization: str | None
    title: str | None
    subject: str
    issuer: str
    serial_number: str
    certificate_sha256: str
    valid_from: str
    valid_to: str


@dataclass
class SignatureReport:
    field: str
    type: str  # signature | certification | document_timestamp
    checks: dict[str, Check]
    signer: SignerInfo | None = None
    signing_time: str | None = None
    signing_time_source: str | None = None  # timestamp | claimed
    timestamp_time: str | None = None
    md_algorithm: str | None = None
    coverage: str | None = None
    indication: Indication = Indication.INDETERMINATE
    sub_indication: str | None = None

    def conclude(self) -> None:
        """ETSI indication from the checks: any FAILED → TOTAL_FAILED, any INDETERMINATE →
        INDETERMINATE, otherwise TOTAL_PASSED; sub-indication from the first deciding check."""
        for name in CHECK_NAMES:
            check = self.checks.get(name)
            if check is not None and check.status is CheckStatus.FAILED:
                self.indication = Indication.TOTAL_FAILED
                self.sub_indication = check.sub_indication or "FORMAT_FAILURE"
                return
        for name in CHECK_NAMES:
            check = self.checks.get(name)
            if check is not None and check.status is CheckStatus.INDETERMINATE:
                self.indication = Indication.INDETERMINATE
                self.sub_indication = check.sub_indication
                return
        self.indication = Indication.TOTAL_PASSED
        self.sub_indication = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "field": self.field,
            "type": self.type,
            "indication": self.indication.value,
            "sub_indication": self.sub_indication,
            "signer": asdict(self.signer) if self.signer else None,
            "signing_time": self.signing_time,
            "signing_time_source": self.signing_time_source,
            "timestamp_time": self.timestamp_time,
            "md_algorithm": self.md_algorithm,
            "coverage": self.coverage,
            "checks": {name: check.to_dict() for name, check in self.checks.items()},
        }


VERDICT_MESSAGES = {
    Verdict.TOTAL_PASSED: "Tất cả chữ ký số hợp lệ.",
    Verdict.TOTAL_FAILED: "Có chữ ký số không hợp lệ hoặc tài liệu đã bị thay đổi sau khi ký.",
    Verdict.INDETERMINATE: "Chưa đủ căn cứ để kết luận chữ ký số hợp lệ.",
    Verdict.NO_SIGNATURE: "Tài liệu không có chữ ký số.",
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

    @classmethod
    def conclude(
        cls,
        sha256: str,
        size: int,
        signatures: list[SignatureReport],
        problems: list[Check],
        validated_at: str,
    ) -> DocumentReport:
        verdict = Verdict.NO_SIGNATURE
        sub: str | None = None
        failed_problem = next((p for p in problems if p.status is CheckStatus.FAILED), None)
        if failed_problem is not None:
            verdict, sub = Verdict.TOTAL_FAILED, failed_problem.sub_indication
        elif signatures:
            failed = [s for s in signatures if s.indication is Indication.TOTAL_FAILED]
            undecided = [s for s in signatures if s.indication is Indication.INDETERMINATE]
            if failed:
                verdict, sub = Verdict.TOTAL_FAILED, failed[0].sub_indication
            elif undecided:
                verdict, sub = Verdict.INDETERMINATE, undecided[0].sub_indication
            else:
                verdict = Verdict.TOTAL_PASSED
        return cls(sha256, size, verdict, sub, signatures, problems, validated_at)

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "sub_indication": self.sub_indication,
            "message": VERDICT_MESSAGES[self.verdict],
            "document": {"sha256": self.sha256, "size": self.size},
            "validated_at": self.validated_at,
            "signatures": [s.to_dict() for s in self.signatures],
            "problems": [
                {**p.to_dict(), "sub_indication": p.sub_indication} for p in self.problems
            ],
        }
