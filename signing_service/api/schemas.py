from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from signing_service.services.documents import is_clean_text
from signing_service.services.profile_rules import NewProfile, ProfileChanges
from signing_service.verification.report import (
    ChainEntry,
    RevocationDataInfo,
    SignerInfo,
    TimestampInfo,
    TrustAnchorInfo,
)


class ErrorBody(BaseModel):
    code: str = Field(examples=["PROFILE_NOT_FOUND"])
    message: str = Field(examples=["Không tìm thấy cấu hình ký số."])
    details: dict[str, Any] | None = None


# Every SHA-256 in an answer is lower-case hex (newuser finding 6: a certificate's was
# upper-case beside the document's lower-case one in the same answer).
Sha256Hex = Annotated[str, AfterValidator(str.lower)]


class Health(BaseModel):
    status: str


class DocumentOut(BaseModel):
    id: str
    kind: str = Field(description="original | signed")
    sha256: str
    size: int
    media_type: str
    filename: str | None
    dossier_code: str | None
    result_code: str | None = Field(
        None,
        description="Mã kết quả {mã hồ sơ}-KQ{n} (Nghị định 45/2020, Điều 14.3)",
        examples=["000.00.12.H12-261127-0001-KQ1"],
    )
    created_at: str
    download_url: str


class RegistryRefOut(BaseModel):
    """Where the signed document is registered (sổ đăng ký văn bản đã phát hành)."""

    public_id: str = Field(
        description="mã tra cứu công khai của văn bản trong sổ đăng ký (26 ký tự a-z, 2-7)",
        examples=["k5q3w2xv7m4hzp6r2tyc3n5dqa"],
    )
    link: str | None = Field(
        description="liên kết tra cứu công khai ({SIGNING_SERVICE_PUBLIC_BASE_URL}/xac-minh/"
        "{public_id}); null khi chưa cấu hình địa chỉ công khai"
    )


class ExistingSignatureOut(BaseModel):
    """A signature the document carried before this one, as the service's verifier judged it
    before signing. A document whose earlier signature fails (or whose signer is revoked) is
    not signed: 422 ``EXISTING_SIGNATURE_INVALID``."""

    field: str = Field(description="tên trường chữ ký (từ tài liệu)")
    type: str = Field(description="signature | certification | document_timestamp")
    indication: str = Field(
        description="TOTAL_PASSED, hoặc INDETERMINATE: chưa đủ căn cứ kết luận (chứng thư gốc "
        "không tin cậy, chưa xác định được trạng thái thu hồi, chứng thư hết hạn không có dấu "
        "thời gian chứng minh)"
    )
    sub_indication: str | None = Field(examples=["NO_CERTIFICATE_CHAIN_FOUND"])
    code: str | None = Field(
        description="mã của bước kiểm tra quyết định kết quả (như trong báo cáo xác minh)",
        examples=["CERT_EXPIRED_NO_POE"],
    )


EXISTING_SIGNATURES_DESCRIPTION = (
    "Các chữ ký số đã có trên tài liệu trước khi ký, theo kết quả xác minh của dịch vụ ngay "
    "trước khi ký (rỗng khi tài liệu chưa có chữ ký)."
)


class SignatureOut(BaseModel):
    signature_id: str
    level: str = Field(examples=["B-T"])
    profile: str
    signed_at: str
    certificate_sha256: Sha256Hex
    document: DocumentOut
    input_document: DocumentOut
    repaired: bool = Field(
        default=False,
        description=(
            "True when the upload was damaged (a wrong startxref, shifted offsets, no xref, bytes "
            "before %PDF-) and was rebuilt with qpdf before signing: the signed document is then "
            "not an incremental update of the upload."
        ),
    )
    registry: RegistryRefOut | None = None
    existing_signatures: list[ExistingSignatureOut] = Field(
        default_factory=list, description=EXISTING_SIGNATURES_DESCRIPTION
    )


class CheckOut(BaseModel):
    status: str = Field(description="PASSED | FAILED | INDETERMINATE | NOT_APPLICABLE")
    code: str
    message: str


class NoteOut(BaseModel):
    code: str
    message: str
    signature: str | None = Field(None, description="the signature field it concerns")
    page: int | None = Field(None, description="1-based page number")
    rect: list[float] | None = Field(None, description="[x1, y1, x2, y2] in points")


class SignatureReportOut(BaseModel):
    field: str
    type: str = Field(description="signature | certification | document_timestamp")
    level: str | None = Field(description="PAdES baseline level: B-B | B-T | B-LT | B-LTA")
    indication: str = Field(description="TOTAL_PASSED | TOTAL_FAILED | INDETERMINATE")
    sub_indication: str | None
    summary: str = Field(description="what decided the indication, in Vietnamese")
    signer: SignerInfo | None
    category: str | None = Field(
        description="public_duty (Government CA) | public (NEAC) | development"
    )
    category_label: str | None
    trust_anchor: TrustAnchorInfo | None
    signing_time: str | None
    signing_time_source: str | None = Field(
        description="timestamp (proven) | timestamp_unverified | claimed"
    )
    timestamp_time: str | None
    validation_time: str | None = Field(
        description="the moment the chain was judged: the validation time, or the proven time"
    )
    best_signature_time: str | None = Field(
        description="the earliest time a trusted timestamp proves the signature existed"
    )
    best_signature_time_proof: str | None = Field(
        description="signature_timestamp | document_timestamp"
    )
    md_algorithm: str | None
    signature_algorithm: str | None
    coverage: str | None
    chain: list[ChainEntry]
    timestamps: list[TimestampInfo]
    revocation_data: list[RevocationDataInfo]
    notes: list[NoteOut]
    checks: dict[str, CheckOut]


class DocumentStatusOut(BaseModel):
    """The document's one state (services/conclusion.py): the signatures and the registry
    together, what a portal shows a citizen."""

    state: str = Field(description="valid | invalid | indeterminate")
    code: str = Field(
        description="IN_FORCE | SIGNATURES_VALID | SIGNATURES_VALID_CONTENT_ADDED | "
        "CONTENT_ADDED_AFTER_ISSUE | REVOKED | SUPERSEDED | SIGNATURE_INVALID | "
        "SIGNATURE_INDETERMINATE | NO_SIGNATURE"
    )
    message: str = Field(description="một câu tiếng Việt cho người dân")


class VerificationReport(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "status": {
                        "state": "valid",
                        "code": "IN_FORCE",
                        "message": "Chữ ký số trên tài liệu hợp lệ và tài liệu không bị sửa "
                        "đổi sau khi ký. Đây đúng là văn bản Sở Tư pháp tỉnh Demo A đã cấp qua "
                        "dịch vụ này ngày 27/11/2026, đang có hiệu lực.",
                    },
                    "verdict": "TOTAL_PASSED",
                    "sub_indication": None,
                    "message": "Tất cả chữ ký số hợp lệ.",
                    "document": {"sha256": "…", "size": 23953},
                    "validated_at": "2026-11-27T14:05:09+07:00",
                    "validation_time": "2026-11-27T14:05:09+07:00",
                    "signatures": [],
                    "unsigned_fields": [],
                    "warnings": [],
                    "problems": [],
                }
            ]
        }
    )
    status: DocumentStatusOut = Field(
        description="the document's one state, signatures and registry together: show this "
        "to people, not verdict alone (a revoked document's signatures still pass)"
    )
    verdict: str = Field(
        description="the signatures' ETSI EN 319 102-1 indication only: TOTAL_PASSED | "
        "TOTAL_FAILED | INDETERMINATE | NO_SIGNATURE"
    )
    sub_indication: str | None
    message: str = Field(
        description="the verdict in Vietnamese; status.message when the registry overrides "
        "a passing verdict (revoked, superseded, content added after issue)"
    )
    document: dict[str, Any]
    validated_at: str = Field(description="when the verification ran (+07:00)")
    validation_time: str = Field(description="the moment validated as of (+07:00)")
    signatures: list[SignatureReportOut]
    unsigned_fields: list[str] = Field(description="signature fields nobody has signed")
    warnings: list[NoteOut] = Field(
        description="findings a reader must see even when every signature passes"
    )
    problems: list[dict[str, Any]]
    registry: dict[str, Any] = Field(
        description="the registry of issued documents: the public record of the registered "
        "document whose hash is the file's (matched: file) or one of its signed revisions' "
        "(matched: revision; matched: validation_data when only DSS and document timestamps "
        'follow it), or {"found": false}: not issued through this service '
        "(README, Sổ đăng ký văn bản đã phát hành); with matched: file, contains: the public "
        "record of a registered document inside the file (what another agency signed "
        "further) that its issuer revoked or superseded"
    )


class BatchItemOut(BaseModel):
    index: int
    filename: str | None
    status: str = Field(description="signed | failed")
    signature_id: str | None = None
    document: DocumentOut | None = None
    repaired: bool | None = Field(
        default=None, description="signed documents: rebuilt with qpdf before signing"
    )
    registry: RegistryRefOut | None = None
    replayed: bool | None = Field(
        default=None,
        description="true: signed by an earlier sending of this batch (same Idempotency-Key)",
    )
    existing_signatures: list[ExistingSignatureOut] | None = Field(
        default=None, description="signed documents: " + EXISTING_SIGNATURES_DESCRIPTION
    )
    error: ErrorBody | None = None


class BatchOut(BaseModel):
    profile: str
    signed: int
    failed: int
    results: list[BatchItemOut]


class ExternalStartOut(BaseModel):
    session_id: str
    level: str
    digest_algorithm: str = Field(examples=["sha256"])
    signature_algorithm: str = Field(examples=["rsassa_pkcs1v15"])
    data_to_sign: str = Field(description="base64: DER of the CMS signed attributes")
    digest: str = Field(description="base64: digest of data_to_sign (for tokens that sign a hash)")
    expires_at: str
    complete_url: str
    existing_signatures: list[ExistingSignatureOut] = Field(
        default_factory=list, description=EXISTING_SIGNATURES_DESCRIPTION
    )


class ExternalCompleteIn(BaseModel):
    signature: str | None = Field(
        default=None, description="base64 raw signature value over data_to_sign"
    )
    cms: str | None = Field(default=None, description="base64 complete CMS SignedData (detached)")


class ProfileOut(BaseModel):
    name: str
    key: str | None = Field(description="tên khóa đã đăng ký của cơ quan")
    key_source: str = Field(description="file | pkcs11 | csc | external | none")
    two_step: bool
    level: str
    tsa: str | None = Field(description="máy chủ dấu thời gian (tên); null: mặc định")
    reason: str | None
    location: str | None
    appearance: dict[str, Any] | None
    certificate_sha256: Sha256Hex | None
    created_at: str


def clean_text(value: str) -> str:
    """``value`` unless it holds a control character or a lone surrogate (``ValueError``)."""
    # Checked at the edge, the same on both databases: PostgreSQL refuses NUL in text and
    # values longer than their column (both answered 500, issue 9); SQLite took them.
    if not is_clean_text(value, len(value)):
        raise ValueError("chứa ký tự điều khiển (như NUL) hoặc ký tự Unicode không hợp lệ")
    return value


# ``str`` of at most N characters without control characters: 422 INVALID_REQUEST otherwise.
Text8 = Annotated[str, Field(max_length=8), AfterValidator(clean_text)]
Text128 = Annotated[str, Field(max_length=128), AfterValidator(clean_text)]
Text255 = Annotated[str, Field(max_length=255), AfterValidator(clean_text)]
Text2048 = Annotated[str, Field(max_length=2048), AfterValidator(clean_text)]


class ProfileIn(NewProfile):
    """A signing profile: one of the agency's registered keys by name, the level, a TSA the
    operator configured (by name) and the stamp. No path, module, URL or secret source."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "so-tu-phap-sao-y",
                    "key": "agency-a-seal",
                    "level": "B-T",
                    "reason": "Sao y bản chính",
                    "appearance": {"heading": "SAO Y", "width": 220, "height": 52},
                }
            ]
        }
    )


class ProfileChange(ProfileChanges):
    """The fields to change; the profile is validated whole afterwards."""


class AppearanceImageOut(BaseModel):
    """An image visible signatures show (a seal or an officer's handwritten signature)."""

    name: str = Field(examples=["con-dau-so-tu-phap"])
    role: str = Field(description="seal (con dấu) | signature (chữ ký tay)")
    officer: str | None = Field(description="người ký (với ảnh chữ ký)")
    sha256: str
    size: int = Field(description="byte")
    width_px: int
    height_px: int
    width_mm: float = Field(description="chiều rộng khi in (mm)")
    height_mm: float = Field(description="chiều cao khi in (mm), theo tỷ lệ ảnh")
    created_at: str


class AgencyKeyOut(BaseModel):
    name: str = Field(examples=["agency-a-seal"])
    kind: str = Field(description="pkcs12 | pkcs11 | csc | officer")
    subject: str = Field(description="chủ thể của chứng thư số")
    certificate_sha256: Sha256Hex
    not_after: str = Field(description="hết hạn (ISO 8601)")
    created_at: str


class AttachmentOut(BaseModel):
    id: str
    dossier_code: str = Field(examples=["000.00.12.H12-261127-0001"])
    component: str = Field(examples=["application"], description="Thành phần hồ sơ")
    filename: str | None
    media_type: str = Field(description="Loại nội dung nhận diện từ chính nội dung tệp")
    size: int
    sha256: str
    sanitized: bool = Field(description="Có bản đã làm sạch nội dung chủ động (PDF)")
    sanitized_sha256: str | None
    screening: dict[str, Any]
    retain_until: str | None
    legal_hold: bool
    created_at: str
    content_url: str


class LegalHoldIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    enabled: bool


# Operator API: API keys (never a secret, except once in ApiKeyIssued.api_key)
class ApiKeyOut(BaseModel):
    key_id: str = Field(examples=["3f9c0a1b2c3d4e5f"])
    name: str = Field(examples=["Một cửa điện tử"])
    role: str = Field(description="client | admin | operator")
    agency_code: str | None = Field(description="None for operator keys")
    status: str = Field(
        description="active | overlap (rotated, works until expires_at) | expired | revoked"
    )
    created_at: str
    expires_at: str | None
    revoked_at: str | None
    replaced_by: str | None = Field(description="key id of the key that replaced this one")


class ApiKeyIssued(ApiKeyOut):
    api_key: str = Field(description="the full key: shown in this answer only, never again")


class ApiKeyRotated(BaseModel):
    new_key: ApiKeyIssued
    previous: ApiKeyOut


class ApiKeyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Optional here so that an operator key requested without one (operator keys belong to no
    # agency) is answered OPERATOR_KEY_CLI_ONLY, not a missing field; required otherwise.
    agency_code: str | None = Field(default=None, max_length=64, examples=["000.00.12.H12"])
    name: str = Field(min_length=1, max_length=255, examples=["Một cửa điện tử"])
    role: str = Field(default="client", description="client | admin (operator keys: CLI only)")
    # Strict: "3" or true were read as days (red team 23b, R23B-9); a JSON number only.
    expires_in_days: float | None = Field(
        default=None,
        gt=0,
        le=3650,
        allow_inf_nan=False,
        strict=True,
        description="None: until revoked",
    )


class ApiKeyRotateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    overlap_hours: float = Field(
        default=24.0,
        ge=0,
        le=720,
        allow_inf_nan=False,
        strict=True,
        description="how long the old key keeps working (0: it stops at once)",
    )


# The registry of issued documents (api/registry.py).


class LinkedRecordOut(BaseModel):
    public_id: str
    link: str | None
    status: str = Field(
        description="trạng thái của chính văn bản được trỏ tới: in_force, revoked, superseded "
        "(văn bản thay thế đã bị thu hồi sau đó thì không còn là văn bản để dùng)"
    )


class AgencyOut(BaseModel):
    code: str
    name: str


class PublicRecordOut(BaseModel):
    """A registered document's public metadata: never its content, file name or applicant."""

    found: bool = True
    public_id: str
    link: str | None
    agency: AgencyOut
    kind: str | None = Field(description="person | seal | copy | annex | digitised | none | null")
    dossier_code: str | None
    result_code: str | None
    document_number: str | None = Field(description="số, ký hiệu (phụ lục: của văn bản chính)")
    issued_at: str = Field(description="thời điểm ký (+07:00)")
    status: str = Field(description="in_force | revoked | superseded")
    status_changed_at: str | None
    reason: str | None
    superseded_by: LinkedRecordOut | None
    signed_further_by: LinkedRecordOut | None = Field(
        description="phiên bản được ký tiếp từ văn bản này (ví dụ: đóng dấu sau khi lãnh đạo ký)"
    )
    status_from: LinkedRecordOut | None = Field(
        default=None,
        description="phiên bản mới nhất được ký tiếp từ văn bản này mà trạng thái (thu hồi, "
        "thay thế) áp dụng cho cả văn bản này; null: trạng thái của chính văn bản",
    )
    version: int = Field(
        default=1,
        description="phiên bản của văn bản được tìm thấy: 1 là bản đã ký; 2, 3, … là bản đã "
        "được dịch vụ nâng cấp (B-LT, B-LTA) hoặc gia hạn dấu thời gian lưu trữ",
    )
    newer_version: bool = Field(
        default=False,
        description="true: văn bản đã có phiên bản mới hơn (bản ghi đại diện cho phiên bản mới "
        "nhất)",
    )


class AgencyLinkedRecordOut(LinkedRecordOut):
    document_id: str


class AgencyRecordOut(PublicRecordOut):
    """The issuing agency's view: the public record plus the document's id and hash."""

    document_id: str
    sha256: Sha256Hex
    registered_at: str
    superseded_by: AgencyLinkedRecordOut | None  # type: ignore[assignment]
    signed_further_by: AgencyLinkedRecordOut | None  # type: ignore[assignment]
    status_from: AgencyLinkedRecordOut | None = None  # type: ignore[assignment]
    signs_further: AgencyLinkedRecordOut | None = Field(
        description="phiên bản mà văn bản này được ký tiếp từ đó"
    )


RegistryReason = Annotated[
    str,
    Field(
        description="lý do (tiếng Việt, 1-500 ký tự)",
        examples=["Quyết định bị hủy bỏ theo Quyết định số 45/QĐ-STP"],
    ),
]


class RevokeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: RegistryReason


class SupersedeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    superseded_by: str = Field(
        description="mã tra cứu (public_id) của văn bản thay thế, do cùng cơ quan phát hành",
        max_length=64,
    )
    reason: RegistryReason


# Extension of signed documents and document versions (issue 12, api/extensions.py).
class ExtensionIn(BaseModel):
    level: str = Field(
        description="mức cần nâng lên: B-LT (thêm dữ liệu kiểm tra trạng thái chứng thư) hoặc "
        "B-LTA (thêm cả dấu thời gian tài liệu); B-LTA trên văn bản đã ở B-LTA: gia hạn dấu "
        "thời gian lưu trữ",
        examples=["B-LTA"],
        max_length=16,
    )


class VersionOut(BaseModel):
    """One version of a stored signed document."""

    id: str
    version: int = Field(description="1: bản đã ký; 2, 3, …: bản nâng cấp/gia hạn")
    level: str | None = Field(description="mức PAdES của phiên bản: B-B | B-T | B-LT | B-LTA")
    previous_version_id: str | None
    sha256: Sha256Hex
    size: int
    created_at: str
    archive_tsa_not_after: str | None = Field(
        description="hạn chứng thư của máy chủ dấu thời gian của dấu thời gian mới nhất (+07:00)"
    )
    latest: bool = Field(description="true: phiên bản mới nhất")
    download_url: str


class VersionsOut(BaseModel):
    document_id: str
    latest_document_id: str
    versions: list[VersionOut] = Field(description="các phiên bản, cũ nhất trước")


class ExtensionOut(BaseModel):
    document: DocumentOut = Field(description="phiên bản mới")
    version: int
    level: str = Field(examples=["B-LTA"])
    previous_level: str = Field(description="mức thấp nhất của các chữ ký trước khi nâng cấp")
    previous_document_id: str
    renewed: bool = Field(description="true: gia hạn dấu thời gian lưu trữ của bản B-LTA")
    archive_tsa_not_after: str | None
    registry: RegistryRefOut | None = None
