"""One error type for every request the service cannot serve.

Each error has a stable machine ``code``, an HTTP status and a Vietnamese ``message``. An
invalid signature is *not* an error: it is a verification result.
"""

from __future__ import annotations

from typing import Any


class ServiceError(Exception):
    code: str = "INTERNAL_ERROR"
    status: int = 500
    message: str = "Lỗi nội bộ của dịch vụ."

    def __init__(
        self,
        message: str | None = None,
        *,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        if message is not None:
            self.message = message
        self.details = details or {}
        self.headers = headers or {}
        super().__init__(f"{self.code}: {self.message}")

    def to_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


def _error(code: str, status: int, message: str) -> type[ServiceError]:
    return type(
        code.title().replace("_", "") + "Error",
        (ServiceError,),
        {
            "code": code,
            "status": status,
            "message": message,
        },
    )


# Requests and authentication
# A well-formed request whose content is invalid: 422 (RFC 9110 §15.5.21), as for every
# malformed field FastAPI finds. MalformedRequest: the body or a header cannot be parsed at all
# (not multipart, broken framing, a header with CR/LF/NUL): 400 (RFC 9110 §15.5.1). Same code.
InvalidRequest = _error("INVALID_REQUEST", 422, "Yêu cầu không hợp lệ.")


class MalformedRequest(InvalidRequest):  # type: ignore[misc, valid-type]
    status = 400


class UnsupportedMediaType(InvalidRequest):  # type: ignore[misc, valid-type]
    """A body of another type than the endpoint takes (RFC 9110 §15.5.16): the raw-body form
    of a signing request takes only ``application/pdf``."""

    status = 415
    message = "Nội dung yêu cầu phải là tài liệu PDF (Content-Type: application/pdf)."


# The same code for well-formed requests whose fields do not fit together (a field sent without
# the one it depends on).
InvalidRequestFields = _error(
    "INVALID_REQUEST", 422, "Yêu cầu thiếu trường bắt buộc hoặc có trường không hợp lệ."
)
Unauthenticated = _error("UNAUTHENTICATED", 401, "Thiếu khóa API hoặc khóa API không hợp lệ.")
Forbidden = _error("FORBIDDEN", 403, "Khóa API không có quyền thực hiện thao tác này.")
NotFound = _error("NOT_FOUND", 404, "Không tìm thấy tài nguyên được yêu cầu.")
DocumentNotFound = _error("DOCUMENT_NOT_FOUND", 404, "Không tìm thấy văn bản.")
ProfileNotFound = _error("PROFILE_NOT_FOUND", 404, "Không tìm thấy cấu hình ký số.")
PayloadTooLarge = _error("FILE_TOO_LARGE", 413, "Tệp vượt quá dung lượng cho phép.")
# The edge: request shaping before any route runs (api/edge.py, api/server.py).
RequestTimeout = _error(
    "REQUEST_TIMEOUT",
    408,
    "Yêu cầu được gửi quá chậm: dữ liệu không đến kịp trong thời gian cho phép.",
)
RequestHeadersTooLarge = _error(
    "REQUEST_HEADERS_TOO_LARGE", 431, "Phần tiêu đề (header) của yêu cầu quá lớn."
)
MalformedHttpRequest = _error(
    "MALFORMED_HTTP_REQUEST",
    400,
    "Yêu cầu không đúng cú pháp HTTP nên không đọc được; hãy kiểm tra phần mềm gửi yêu cầu.",
)
RateLimited = _error(
    "RATE_LIMITED",
    429,
    "Quá nhiều yêu cầu từ cùng một địa chỉ; vui lòng thử lại sau thời gian ghi trong Retry-After.",
)
AnonymousBusy = _error(
    "ANONYMOUS_BUSY",
    503,
    "Dịch vụ đang nhận quá nhiều yêu cầu không xác thực; vui lòng thử lại sau ít phút.",
)
# /readyz: the database or the storage does not answer (api/health.py).
NotReady = _error(
    "NOT_READY",
    503,
    "Dịch vụ chưa sẵn sàng: cơ sở dữ liệu hoặc kho lưu trữ không trả lời.",
)
# The database stopped answering mid-request (PostgreSQL restarting or failing over): was a 500
# (issue 13, "PostgreSQL restarting"). Nothing of the request was committed unless it answered.
DatabaseUnavailable = _error(
    "DATABASE_UNAVAILABLE",
    503,
    "Cơ sở dữ liệu tạm thời không trả lời; vui lòng thử lại sau thời gian ghi trong Retry-After.",
)
# Answered by the load balancer in front of the replicas (docker/nginx.conf,
# tests/support/cluster.py), never by the service itself: no replica answered, or the one
# serving the request died before answering. Nothing was acknowledged; a POST may or may not
# have been carried out (look the document up before sending it again).
ServiceUnavailable = _error(
    "SERVICE_UNAVAILABLE",
    503,
    "Dịch vụ tạm thời không trả lời (không máy chủ nào nhận yêu cầu, hoặc máy chủ dừng "
    "giữa chừng); vui lòng thử lại sau thời gian ghi trong Retry-After.",
)
# A CORS preflight (OPTIONS) from a configured origin asking for a method or a request header
# the public API does not allow (api/cors.py): no cross-origin request may carry an API key.
CorsNotAllowed = _error(
    "CORS_NOT_ALLOWED",
    400,
    "Yêu cầu từ trang web khác (CORS) dùng phương thức hoặc tiêu đề (header) không được phép: "
    "chỉ cho phép GET và POST với các tiêu đề cơ bản, không kèm khóa API.",
)
TooManyConnections = _error(
    "TOO_MANY_CONNECTIONS",
    503,
    "Máy chủ đang giữ quá nhiều kết nối; vui lòng thử lại sau ít phút.",
)
EmptyFile = _error("EMPTY_FILE", 422, "Tệp rỗng.")
NotAPdf = _error("NOT_A_PDF", 422, "Tệp không phải là tài liệu PDF.")
MalformedPdf = _error(
    "MALFORMED_PDF", 422, "Tệp PDF bị hỏng hoặc không đọc được (có thể bị cắt cụt)."
)
EncryptedPdf = _error("ENCRYPTED_PDF", 422, "Tệp PDF được bảo vệ bằng mật khẩu; không thể xử lý.")
DocumentCertifiedNoChanges = _error(
    "DOCUMENT_CERTIFIED_NO_CHANGES",
    422,
    "Tài liệu đã được ký chứng nhận và khóa thay đổi: người ký chứng nhận không cho phép bất kỳ "
    "thay đổi nào, kể cả thêm chữ ký. Vui lòng ký trên bản chưa khóa.",
)
DocumentCertifiedFieldRequired = _error(
    "DOCUMENT_CERTIFIED_FIELD_REQUIRED",
    422,
    "Tài liệu đã được ký chứng nhận và khóa thay đổi: chỉ được ký vào ô chữ ký trống có sẵn, "
    "không được thêm ô chữ ký mới; tài liệu này không có ô chữ ký trống. Người ký chứng nhận "
    "cần tạo ô chữ ký trống trước khi ký chứng nhận.",
)
SignatureFieldLocked = _error(
    "SIGNATURE_FIELD_LOCKED",
    422,
    "Trường chữ ký đã bị khóa bởi chữ ký trước đó (FieldMDP); ký vào đó sẽ làm mất hiệu lực "
    "chữ ký trước. Tài liệu chưa được ký.",
)
DocumentTooComplex = _error(
    "DOCUMENT_TOO_COMPLEX",
    422,
    "Tài liệu có quá nhiều trường biểu mẫu, chữ ký, phiên bản hoặc đối tượng: sau khi ký, "
    "dịch vụ sẽ không xác minh lại được. Vui lòng làm phẳng biểu mẫu hoặc lưu lại tài liệu "
    "thành bản mới.",
)
# A document to sign that runs or opens something (JavaScript, an open action, a program to
# launch, an embedded file): the agency's seal would vouch for it (red team 19b, R19B-2). Same
# code as the attachments' screening refusal.
SigningActiveContent = _error(
    "ACTIVE_PDF_CONTENT",
    422,
    "Tệp PDF chứa nội dung chủ động (mã chạy tự động, lệnh mở chương trình hay tệp khác, tệp "
    "đính kèm nhúng không phải tệp dữ liệu .xml, .json, .csv, .txt, hoặc biểu mẫu XFA): dịch "
    "vụ không ký tài liệu này. Vui lòng tạo lại tệp không có các nội dung đó rồi gửi ký; với "
    "tài liệu đã có chữ ký, cần bản không chứa chúng từ người ký trước (sửa tệp sẽ làm mất "
    "hiệu lực chữ ký đó).",
)
SignedPdfDamaged = _error(
    "SIGNED_PDF_DAMAGED",
    422,
    "Tệp PDF đã có chữ ký nhưng bị hỏng cấu trúc; không thể sửa mà không làm mất hiệu lực "
    "các chữ ký đã có. Vui lòng lấy lại bản gốc từ người ký.",
)
# A document whose earlier signature the service's verifier fails (or finds revoked), or could
# not check within its bounds: countersigning it would lend the new seal to a forged or revoked
# one (red team 17b, R17B-1; services/existing.py). The message names the field when one does.
ExistingSignatureInvalid = _error(
    "EXISTING_SIGNATURE_INVALID",
    422,
    "Tài liệu đã có chữ ký số không hợp lệ hoặc của người ký đã bị thu hồi chứng thư; dịch vụ "
    "không ký thêm lên tài liệu này. Vui lòng lấy lại bản gốc hợp lệ từ người ký.",
)
InvalidLevel = _error(
    "INVALID_SIGNATURE_LEVEL",
    422,
    "Mức chữ ký không hợp lệ; chỉ chấp nhận B-B, B-T, B-LT hoặc B-LTA.",
)
BatchTooLarge = _error("BATCH_TOO_LARGE", 422, "Lô ký vượt quá số tài liệu cho phép.")
InvalidDossierCode = _error("INVALID_DOSSIER_CODE", 422, "Mã hồ sơ không đúng định dạng.")
# Result codes {dossier_code}-KQ{n} (Nghị định 45/2020 Art. 14.3) and codes on documents.
InvalidResultCode = _error(
    "INVALID_RESULT_CODE",
    422,
    "Mã kết quả không đúng định dạng {mã hồ sơ}-KQ{số thứ tự}, ví dụ "
    "000.00.12.H12-261127-0001-KQ1, hoặc không thuộc hồ sơ đã gửi.",
)
ResultCodeExhausted = _error(
    "RESULT_CODE_EXHAUSTED",
    422,
    "Hồ sơ đã dùng hết số thứ tự mã kết quả (KQ1–KQ999999); không cấp được mã tự động.",
)
ResultCodeNeedsDossier = _error(
    "RESULT_CODE_NEEDS_DOSSIER",
    422,
    "Cấp mã kết quả tự động (result_code=auto) cần mã hồ sơ (dossier_code).",
)
InvalidProcedureCode = _error(
    "INVALID_PROCEDURE_CODE",
    422,
    "Mã thủ tục hành chính không đúng định dạng của Cơ sở dữ liệu quốc gia về thủ tục hành "
    "chính, ví dụ 1.001234 hoặc 1.001234.000.00.12.H12.",
)
InvalidApplicantId = _error(
    "INVALID_APPLICANT_ID",
    422,
    "Mã định danh người nộp hồ sơ không hợp lệ: số định danh cá nhân (12 chữ số), số CMND "
    "(9 chữ số) hoặc mã số doanh nghiệp (10 chữ số, có thể kèm -NNN của đơn vị phụ thuộc).",
)
QrLinkNotConfigured = _error(
    "QR_LINK_NOT_CONFIGURED",
    422,
    "Dịch vụ chưa được cấu hình địa chỉ tra cứu công khai (SIGNING_SERVICE_PUBLIC_BASE_URL) "
    "nên không thể thêm mã QR.",
)
QrOnSignedDocument = _error(
    "QR_ON_SIGNED_DOCUMENT",
    422,
    "Văn bản đã có chữ ký số: thêm mã QR vào trang sẽ làm mất hiệu lực chữ ký đã có.",
)
InvalidDocumentCodes = _error(
    "INVALID_DOCUMENT_CODES",
    422,
    "Trường codes phải là một mảng JSON theo thứ tự tệp, mỗi phần tử là null hoặc một đối "
    'tượng {"dossier_code": ..., "result_code": ...}, có đúng một phần tử cho mỗi tệp.',
)
InvalidFilename = _error(
    "INVALID_FILENAME",
    422,
    "Tên tệp không hợp lệ: tối đa 240 ký tự và không chứa ký tự điều khiển (như NUL).",
)
VerificationTimeLimit = _error(
    "VERIFICATION_TIME_LIMIT",
    422,
    "Tệp quá phức tạp: không xác minh xong trong thời gian cho phép. Tệp có thể bị hỏng hoặc "
    "được tạo để gây quá tải.",
)
VerificationResourceLimit = _error(
    "VERIFICATION_RESOURCE_LIMIT",
    422,
    "Tệp vượt giới hạn tài nguyên (bộ nhớ, độ sâu cấu trúc) của dịch vụ xác minh.",
)
VerificationBusy = _error(
    "VERIFICATION_BUSY",
    503,
    "Dịch vụ xác minh đang quá tải; vui lòng thử lại sau ít phút.",
)
InvalidValidationTime = _error(
    "INVALID_VALIDATION_TIME",
    422,
    "Thời điểm xác minh không hợp lệ; dùng ISO 8601 có múi giờ, ví dụ 2025-03-16T00:00:00+07:00.",
)

# The printable verification report (issue 11, reporting/pdf.py)
ReportNotConfigured = _error(
    "REPORT_NOT_CONFIGURED",
    503,
    "Dịch vụ chưa được cấu hình con dấu cho báo cáo xác minh dạng PDF "
    "(SIGNING_SERVICE_REPORT_SEAL_KEY); kết quả xác minh vẫn có ở dạng JSON.",
)
# More report renders asked for than the bounded render lane holds (reporting/lane.py).
ReportBusy = _error(
    "REPORT_BUSY",
    503,
    "Dịch vụ đang lập nhiều báo cáo PDF cùng lúc; vui lòng thử lại sau ít phút.",
)
UnsupportedReportFormat = _error(
    "UNSUPPORTED_REPORT_FORMAT",
    406,
    "Định dạng kết quả không được hỗ trợ; chỉ dùng json (mặc định) hoặc pdf.",
)

# Signer certificate and key checks before signing
SignerCertExpired = _error(
    "SIGNER_CERT_EXPIRED", 422, "Chứng thư số của người ký đã hết hạn hoặc chưa có hiệu lực."
)
SignerCertRevoked = _error(
    "SIGNER_CERT_REVOKED", 422, "Chứng thư số của người ký đã bị thu hồi; không được phép ký."
)
SignerCertStatusUnknown = _error(
    "SIGNER_CERT_STATUS_UNKNOWN",
    503,
    "Không xác định được trạng thái thu hồi của chứng thư số người ký; vui lòng thử lại sau.",
)
SignerCertUntrusted = _error(
    "SIGNER_CERT_UNTRUSTED",
    422,
    "Chứng thư số của người ký không chuỗi được tới một chứng thư gốc tin cậy.",
)
SignerKeyUsage = _error(
    "SIGNER_CERT_KEY_USAGE",
    422,
    "Chứng thư số của người ký không cho phép ký số (thiếu digitalSignature/nonRepudiation).",
)
SignerCertIsCa = _error(
    "SIGNER_CERT_IS_CA",
    422,
    "Chứng thư số của người ký là chứng thư của tổ chức cấp chứng thư (CA); không dùng để ký "
    "văn bản.",
)
AlgorithmPolicy = _error(
    "ALGORITHM_NOT_ALLOWED",
    422,
    "Thuật toán hoặc độ dài khóa không đáp ứng quy định (RSA ≥ 2048, ECDSA ≥ 256, SHA-2/SHA-3).",
)
KeyUnavailable = _error(
    "SIGNING_KEY_UNAVAILABLE", 503, "Không truy cập được khóa ký của cấu hình ký số."
)
KeyPinIncorrect = _error(
    "KEY_PIN_INCORRECT",
    503,
    "Mã PIN của thiết bị lưu khóa (HSM/token) không đúng; kiểm tra bí mật của cấu hình ký.",
)
KeyTokenNotFound = _error(
    "KEY_TOKEN_NOT_FOUND", 503, "Không tìm thấy thiết bị lưu khóa (HSM/token) của cấu hình ký số."
)
KeyNotFound = _error(
    "KEY_NOT_FOUND", 503, "Không tìm thấy khóa ký hoặc chứng thư trên thiết bị lưu khóa."
)
KeyCertificateMismatch = _error(
    "KEY_CERTIFICATE_MISMATCH", 422, "Khóa ký không khớp với chứng thư số của cấu hình ký số."
)
RemoteAuthorizationRequired = _error(
    "REMOTE_AUTHORIZATION_REQUIRED",
    422,
    "Ký từ xa cần xác thực của người ký (mã PIN/OTP) trong trường authorization.",
)
RemoteAuthorizationFailed = _error(
    "REMOTE_AUTHORIZATION_FAILED",
    422,
    "Nhà cung cấp dịch vụ ký số từ xa từ chối xác thực của người ký (PIN/OTP sai hoặc bị khóa).",
)
RemoteSigningUnavailable = _error(
    "REMOTE_SIGNING_UNAVAILABLE",
    503,
    "Nhà cung cấp dịch vụ ký số từ xa không kết nối được hoặc trả lời không hợp lệ; vui lòng thử "
    "lại sau.",
)
TimestampUnavailable = _error(
    "TIMESTAMP_UNAVAILABLE", 503, "Không lấy được dấu thời gian từ máy chủ cấp dấu thời gian."
)
# A timestamp token that fails its checks (signing/tsa.py TokenChecker): the configured
# timestamp server answered with something the service must not embed. 502: the request was
# fine, the upstream server's answer was not; nothing is stored. The TSA certificate's unknown
# revocation status may pass: 503 with Retry-After, like the signer's.
TimestampInvalid = _error(
    "TIMESTAMP_INVALID",
    502,
    "Máy chủ dấu thời gian trả về dấu thời gian không hợp lệ (sai cấu trúc hoặc chữ ký); "
    "tài liệu chưa được ký.",
)
TimestampUntrusted = _error(
    "TIMESTAMP_UNTRUSTED",
    502,
    "Chứng thư của máy chủ dấu thời gian không chuỗi được tới chứng thư gốc tin cậy, đã hết hạn "
    "hoặc bị thu hồi; tài liệu chưa được ký.",
)
TimestampKeyPurpose = _error(
    "TIMESTAMP_KEY_PURPOSE",
    502,
    "Chứng thư của máy chủ dấu thời gian không dành cho cấp dấu thời gian (thiếu mục đích "
    "id-kp-timeStamping đánh dấu critical); tài liệu chưa được ký.",
)
TimestampWeakAlgorithm = _error(
    "TIMESTAMP_WEAK_ALGORITHM",
    502,
    "Dấu thời gian dùng thuật toán không được phép (SHA-1, khóa RSA < 2048 bit, ECDSA < 256 bit); "
    "tài liệu chưa được ký.",
)
TimestampImprintMismatch = _error(
    "TIMESTAMP_IMPRINT_MISMATCH",
    502,
    "Dấu thời gian nhận được không được cấp cho chữ ký này (dấu băm không khớp); tài liệu chưa "
    "được ký.",
)
TimestampNonceMismatch = _error(
    "TIMESTAMP_NONCE_MISMATCH",
    502,
    "Dấu thời gian nhận được không phải trả lời cho yêu cầu vừa gửi (nonce không khớp); tài liệu "
    "chưa được ký.",
)
TimestampTimeSkew = _error(
    "TIMESTAMP_TIME_SKEW",
    502,
    "Thời điểm trong dấu thời gian lệch quá mức cho phép so với đồng hồ của dịch vụ; tài liệu "
    "chưa được ký.",
)
TimestampStatusUnknown = _error(
    "TIMESTAMP_TSA_STATUS_UNKNOWN",
    503,
    "Không xác định được trạng thái thu hồi của chứng thư máy chủ dấu thời gian; vui lòng thử "
    "lại sau.",
)
SigningFailed = _error("SIGNING_FAILED", 422, "Không ký được tài liệu này.")
# Where the visible signature goes (signing/placement.py).
SignatureFieldNotFound = _error(
    "SIGNATURE_FIELD_NOT_FOUND",
    422,
    "Tài liệu không có trường chữ ký với tên đã chỉ định; tài liệu chưa được ký.",
)
SignatureFieldAlreadySigned = _error(
    "SIGNATURE_FIELD_ALREADY_SIGNED",
    422,
    "Trường chữ ký đã chỉ định đã được ký; tài liệu chưa được ký lại.",
)
SignatureFieldNotVisible = _error(
    "SIGNATURE_FIELD_NOT_VISIBLE",
    422,
    "Trường chữ ký đã chỉ định không hiển thị được (nằm ngoài trang, bị ẩn, hoặc kích thước "
    "bằng không hay bất thường); tài liệu chưa được ký.",
)
NoSpaceForSignature = _error(
    "NO_SPACE_FOR_SIGNATURE",
    422,
    "Trang không còn chỗ trống cho chữ ký hiển thị (chữ ký không được đè lên nội dung văn bản "
    "hay chữ ký khác); tài liệu chưa được ký.",
)
PageLayoutUnavailable = _error(
    "PAGE_LAYOUT_UNAVAILABLE",
    422,
    "Không phân tích được bố cục trang để đặt chữ ký hiển thị (trang quá phức tạp hoặc bị hỏng); "
    "tài liệu chưa được ký.",
)
PLACEMENT_ERRORS: dict[str, type[ServiceError]] = {
    cls.code: cls
    for cls in (
        SignatureFieldNotFound,
        SignatureFieldAlreadySigned,
        SignatureFieldNotVisible,
        NoSpaceForSignature,
        PageLayoutUnavailable,
    )
}

# Signing profiles (admin)
ProfileExists = _error("PROFILE_EXISTS", 409, "Tên cấu hình ký số đã được dùng.")
InvalidProfile = _error("INVALID_PROFILE", 422, "Cấu hình ký số không hợp lệ.")
# The same answer for a key of another agency as for a key that does not exist.
UnknownKey = _error(
    "UNKNOWN_KEY", 422, "Không có khóa ký nào với tên này trong các khóa đã đăng ký của cơ quan."
)
UnknownTsa = _error(
    "UNKNOWN_TSA",
    422,
    "Không có máy chủ dấu thời gian nào với tên này trong cấu hình của đơn vị vận hành.",
)
ProfileKeyMissing = _error(
    "PROFILE_KEY_MISSING",
    422,
    "Cấu hình ký số chưa có khóa ký đang hoạt động (chưa chọn, hoặc khóa đã bị vô hiệu hóa); "
    "quản trị viên cơ quan cần chọn một khóa đã đăng ký.",
)
# Appearance kinds and their images (issue 10; Nghị định 30/2020, Appendix I)
UnknownAppearanceKind = _error(
    "UNKNOWN_APPEARANCE_KIND",
    422,
    "Hình thức chữ ký không hợp lệ; chỉ dùng: person, seal, copy, annex, digitised, none.",
)
InvalidCopyKind = _error(
    "INVALID_COPY_KIND",
    422,
    "Loại bản sao (copy_kind) không hợp lệ; chỉ dùng: SAO Y, SAO LỤC, TRÍCH SAO.",
)
AppearanceIncomplete = _error(
    "APPEARANCE_INCOMPLETE",
    422,
    "Hình thức chữ ký này thiếu thông tin cần thể hiện (ảnh chữ ký, ảnh con dấu hoặc số, ký "
    "hiệu văn bản chính).",
)
InvalidDocumentNumber = _error(
    "INVALID_DOCUMENT_NUMBER",
    422,
    "Số, ký hiệu văn bản chính không hợp lệ (ví dụ đúng: 123/QĐ-STP hoặc 45/2020/NĐ-CP).",
)
# What each kind cannot be drawn without, as people call it (details.missing names the field).
APPEARANCE_MISSING_VI = {
    "signature_image": "ảnh chữ ký của người ký (signature_image)",
    "seal_image": "ảnh con dấu của cơ quan (seal_image)",
    "document_number": "số, ký hiệu văn bản chính (document_number, ví dụ 123/QĐ-STP)",
}


def appearance_incomplete(kind: str, missing: str, **details: Any) -> ServiceError:
    """422 ``APPEARANCE_INCOMPLETE`` for appearance ``kind`` without field ``missing``
    (``signature_image`` | ``seal_image`` | ``document_number``): the message names what is
    missing in Vietnamese; ``details`` carries ``kind`` and ``missing`` (the field name)."""
    what = APPEARANCE_MISSING_VI.get(missing, missing)
    return AppearanceIncomplete(
        f"Hình thức chữ ký {kind} thiếu {what}.",
        details={"kind": kind, "missing": missing, **details},
    )


ImageNotPng = _error(
    "IMAGE_NOT_PNG",
    422,
    "Ảnh phải là tệp PNG hợp lệ (nội dung được kiểm tra, không dựa vào tên tệp).",
)
ImageTooLarge = _error(
    "IMAGE_TOO_LARGE",
    422,
    "Ảnh vượt quá giới hạn: tối đa 1 MB và 2048 điểm ảnh mỗi chiều (tối thiểu 16 điểm ảnh).",
)
ImageNotTransparent = _error(
    "IMAGE_NOT_TRANSPARENT",
    422,
    "Ảnh phải có nền trong suốt (kênh alpha hoặc tRNS, và phần nền thực sự trong suốt).",
)
ImageEmpty = _error(
    "IMAGE_EMPTY",
    422,
    "Ảnh gần như trong suốt hoàn toàn, không có nét chữ ký hoặc hình con dấu.",
)
Pdfa1NoTransparency = _error(
    "PDFA1_NO_TRANSPARENCY",
    422,
    "Tài liệu theo chuẩn PDF/A-1 không cho phép ảnh trong suốt: không thể đóng dấu hoặc thêm ảnh "
    "chữ ký mà vẫn giữ chuẩn; hãy dùng kiểu hiển thị dạng chữ (copy, annex, digitised) hoặc "
    "chữ ký không hiển thị.",
)
InvalidImage = _error(
    "INVALID_IMAGE",
    422,
    "Thông tin ảnh không hợp lệ (tên, loại ảnh seal/signature hoặc kích thước theo mm).",
)
UnknownImage = _error(
    "UNKNOWN_IMAGE",
    422,
    "Không có ảnh nào với tên này (và đúng loại) trong các ảnh đã tải lên của cơ quan.",
)
ImageExists = _error("IMAGE_EXISTS", 409, "Tên ảnh đã được dùng trong cơ quan.")
ImageNotFound = _error("IMAGE_NOT_FOUND", 404, "Không tìm thấy ảnh.")
ImageInUse = _error(
    "IMAGE_IN_USE",
    409,
    "Ảnh đang được cấu hình ký số sử dụng; hãy đổi cấu hình trước khi xóa ảnh.",
)
OfficerNotRegistered = _error(
    "OFFICER_NOT_REGISTERED",
    422,
    "Chứng thư số của người ký chưa được đơn vị vận hành đăng ký cho cơ quan.",
)
OfficerRequired = _error(
    "OFFICER_REQUIRED",
    422,
    "Ký hai bước cần tên chứng thư người ký đã đăng ký (officer) hoặc chứng thư số (certificate).",
)

# Key registry (operator commands)
InvalidKeyName = _error(
    "INVALID_KEY_NAME",
    422,
    "Tên khóa chỉ gồm chữ thường không dấu, số và dấu gạch ngang (2–63 ký tự).",
)
KeyExists = _error("KEY_EXISTS", 409, "Cơ quan đã có khóa với tên này.")
KeyAlreadyRegistered = _error(
    "KEY_ALREADY_REGISTERED", 409, "Chứng thư số này đã được đăng ký cho một khóa đang hoạt động."
)
# New user 12 item 2: a certificate naming another organisation than the agency would make the
# registry vouch ("Đây đúng là văn bản <agency> đã cấp") for a document another body signed.
KeyOrganizationMismatch = _error(
    "KEY_ORGANIZATION_MISMATCH",
    422,
    "Chứng thư số không mang tên cơ quan (trường Tổ chức khác tên cơ quan). Chỉ đăng ký khi đã "
    "xác minh đây đúng là khóa của cơ quan, với --allow-other-organization và lý do.",
)
KeyNotRegistered = _error("KEY_NOT_REGISTERED", 404, "Không tìm thấy khóa đã đăng ký.")
KeyUnreadable = _error(
    "KEY_UNREADABLE",
    422,
    "Không đọc được khóa hoặc chứng thư (sai mật khẩu, tệp hỏng hoặc không đúng định dạng).",
)
InvalidKeyReference = _error(
    "INVALID_KEY_REFERENCE",
    422,
    "Tham chiếu khóa không hợp lệ (PKCS#11: pkcs11:token=…;object=… hoặc id=<hex>; "
    "ký từ xa: NHÀ_CUNG_CẤP,MÃ_CHỨNG_THƯ).",
)
CertificateIsCa = _error(
    "CERTIFICATE_IS_CA",
    422,
    "Chứng thư số là chứng thư của tổ chức cấp chứng thư (CA), không dùng để ký văn bản.",
)
UnknownPkcs11Module = _error(
    "UNKNOWN_PKCS11_MODULE",
    422,
    "Thư viện PKCS#11 không có trong SIGNING_SERVICE_PKCS11_MODULES (hoặc cần chỉ rõ --module).",
)
UnknownCscProvider = _error(
    "UNKNOWN_CSC_PROVIDER",
    422,
    "Nhà cung cấp ký số từ xa không có trong SIGNING_SERVICE_CSC_PROVIDERS.",
)

# Two-step (external) signing
ProfileNotExternal = _error(
    "PROFILE_NOT_EXTERNAL",
    422,
    "Cấu hình ký số này không dành cho ký hai bước (khóa do người ký giữ).",
)
ProfileNeedsTwoStep = _error(
    "PROFILE_NEEDS_TWO_STEP",
    422,
    "Cấu hình ký số này dùng khóa do người ký giữ: hãy dùng ký hai bước (/v1/signatures/external).",
)
ExternalCertificateInvalid = _error(
    "EXTERNAL_CERTIFICATE_INVALID", 422, "Không đọc được chứng thư số của người ký (PEM hoặc DER)."
)
ExternalSessionNotFound = _error(
    "EXTERNAL_SESSION_NOT_FOUND", 404, "Không tìm thấy phiên ký hai bước."
)
ExternalSessionExpired = _error(
    "EXTERNAL_SESSION_EXPIRED", 410, "Phiên ký hai bước đã hết hạn; hãy bắt đầu lại."
)
ExternalSessionUsed = _error(
    "EXTERNAL_SESSION_USED", 409, "Phiên ký hai bước này đã được dùng; không thể dùng lại."
)
ExternalSignatureInvalid = _error(
    "EXTERNAL_SIGNATURE_INVALID",
    422,
    "Chữ ký gửi lên không hợp lệ với chứng thư số và dữ liệu cần ký của phiên này.",
)
ExternalCertificateMismatch = _error(
    "EXTERNAL_CERTIFICATE_MISMATCH",
    422,
    "Chữ ký được tạo bằng chứng thư số khác với chứng thư đã khai báo khi bắt đầu phiên.",
)
ExternalCmsInvalid = _error("EXTERNAL_CMS_INVALID", 422, "Không đọc được gói chữ ký CMS gửi lên.")
ExternalCmsWrongDocument = _error(
    "EXTERNAL_CMS_WRONG_DOCUMENT", 422, "Gói chữ ký CMS gửi lên được tạo cho một tài liệu khác."
)
ExternalTimestampRefused = _error(
    "EXTERNAL_TIMESTAMP_REFUSED",
    422,
    "Dấu thời gian trong gói chữ ký CMS gửi lên không được chấp nhận (xem details.code).",
)

# The registry of issued documents (issue 11). Another agency's record answers exactly as a
# missing one: a public id must not tell who holds it.
RegistryRecordNotFound = _error(
    "REGISTRY_RECORD_NOT_FOUND",
    404,
    "Không tìm thấy văn bản trong sổ đăng ký văn bản đã phát hành (mã tra cứu không đúng hoặc "
    "không tồn tại).",
)
RegistryStatusFinal = _error(
    "REGISTRY_STATUS_FINAL",
    409,
    "Văn bản đã bị thu hồi hoặc đã được thay thế; trạng thái này là cuối cùng, không thể thay "
    "đổi nữa.",
)
RegistryHasNewerVersion = _error(
    "REGISTRY_HAS_NEWER_VERSION",
    409,
    "Văn bản này đã được ký tiếp thành một phiên bản mới; trạng thái của phiên bản mới nhất áp "
    "dụng cho cả văn bản này: hãy thu hồi hoặc thay thế phiên bản mới nhất (mã tra cứu trong "
    "details.newer_version).",
)
InvalidRegistryReason = _error(
    "INVALID_REGISTRY_REASON",
    422,
    "Lý do phải có từ 1 đến 500 ký tự và không chứa ký tự điều khiển.",
)
InvalidSupersedingDocument = _error(
    "INVALID_SUPERSEDING_DOCUMENT",
    422,
    "Văn bản thay thế phải là một văn bản khác, đang có hiệu lực, do chính cơ quan của bên gọi "
    "phát hành qua dịch vụ này.",
)

# Agencies and API clients (operator commands)
InvalidAgency = _error(
    "INVALID_AGENCY", 422, "Mã định danh cơ quan không hợp lệ (ví dụ 000.00.12.H12)."
)
AgencyExists = _error("AGENCY_EXISTS", 409, "Cơ quan này đã tồn tại.")
AgencyNotFound = _error("AGENCY_NOT_FOUND", 404, "Không tìm thấy cơ quan.")
ApiKeyNotFound = _error("API_KEY_NOT_FOUND", 404, "Không tìm thấy khóa API.")
ApiKeyRevoked = _error("API_KEY_REVOKED", 409, "Khóa API này đã bị thu hồi.")
ApiKeyInactive = _error(
    "API_KEY_INACTIVE",
    409,
    "Khóa API này đã hết hạn hoặc đã được thay bằng khóa khác; không thể xoay vòng lại.",
)
InvalidApiKeyRequest = _error(
    "INVALID_API_KEY_REQUEST",
    422,
    "Yêu cầu về khóa API không hợp lệ (vai trò, tên, cơ quan, thời hạn hoặc thời gian chuyển "
    "tiếp).",
)
OperatorKeyNotAgency = _error(
    "OPERATOR_KEY_NOT_AGENCY",
    403,
    "Khóa API của đơn vị vận hành không thuộc cơ quan nào: không dùng được để ký, đọc văn bản "
    "hay hồ sơ của cơ quan.",
)
OperatorKeyCliOnly = _error(
    "OPERATOR_KEY_CLI_ONLY",
    403,
    "Khóa API của đơn vị vận hành chỉ được tạo và xoay vòng bằng dòng lệnh trên máy chủ.",
)

# Dossier attachments
InvalidComponent = _error("INVALID_COMPONENT", 422, "Thành phần hồ sơ không hợp lệ.")
AttachmentNotFound = _error("ATTACHMENT_NOT_FOUND", 404, "Không tìm thấy tệp đính kèm hồ sơ.")
AttachmentRetained = _error(
    "ATTACHMENT_RETAINED",
    409,
    "Tệp đang trong thời hạn lưu trữ bắt buộc hoặc bị phong tỏa (legal hold); không thể xóa.",
)
IdempotencyConflict = _error(
    "IDEMPOTENCY_KEY_CONFLICT",
    409,
    "Idempotency-Key này đã được dùng cho một yêu cầu khác (hồ sơ, thành phần hồ sơ hoặc nội "
    "dung tệp khác).",
)
InvalidIdempotencyKey = _error(
    "INVALID_IDEMPOTENCY_KEY",
    422,
    "Idempotency-Key không hợp lệ (tối đa 128 ký tự chữ, số, '-', '_', '.', ':').",
)
UploadIncomplete = _error(
    "UPLOAD_INCOMPLETE", 400, "Tệp tải lên bị gián đoạn giữa chừng; không có gì được lưu."
)
MalwareFound = _error(
    "MALWARE_FOUND", 422, "Phát hiện mã độc trong tệp; tệp đã bị cách ly và không được lưu."
)
MalwareScanUnavailable = _error(
    "MALWARE_SCAN_UNAVAILABLE",
    503,
    "Không quét được mã độc (ClamAV không sẵn sàng); tệp chưa được nhận, vui lòng thử lại sau.",
)


class ScreeningRefused(ServiceError):
    """A file refused by screening; the code is the screening result's (POLYGLOT_FILE, …)."""

    status = 422

    def __init__(self, code: str, message: str, *, details: dict[str, Any] | None = None) -> None:
        self.code = code
        super().__init__(message, details=details)


# Infrastructure
StorageUnavailable = _error(
    "STORAGE_UNAVAILABLE", 503, "Kho lưu trữ tạm thời không sẵn sàng; vui lòng thử lại sau."
)
StorageIntegrity = _error(
    "STORAGE_INTEGRITY_ERROR",
    500,
    "Nội dung lưu trữ không khớp mã băm đã ghi nhận; tệp có thể đã bị hỏng.",
)
ConfigurationError = _error("CONFIGURATION_ERROR", 500, "Cấu hình dịch vụ không hợp lệ.")


# Extension of signed documents and document versions (issue 12, services/extension.py)
InvalidExtensionLevel = _error(
    "INVALID_EXTENSION_LEVEL",
    422,
    "Mức nâng cấp chữ ký không hợp lệ: chỉ nhận B-LT hoặc B-LTA.",
)
ExtensionNoSignature = _error(
    "EXTENSION_NO_SIGNATURE",
    422,
    "Tài liệu không có chữ ký số nào để nâng cấp (dấu thời gian tài liệu không phải chữ ký).",
)
ExtensionNotTimestamped = _error(
    "EXTENSION_NOT_TIMESTAMPED",
    422,
    "Chữ ký không có dấu thời gian (mức B-B): không thể nâng lên B-LT hoặc B-LTA; "
    "cần ký lại ở mức B-T trở lên.",
)
ExtensionTargetLower = _error(
    "EXTENSION_TARGET_LOWER",
    422,
    "Mức yêu cầu không cao hơn mức hiện tại của tài liệu; không có gì để nâng cấp.",
)
ExtensionSignatureInvalid = _error(
    "EXTENSION_SIGNATURE_INVALID",
    422,
    "Chữ ký trong tài liệu không hợp lệ (chứng thư bị thu hồi, không tin cậy hoặc tài liệu "
    "bị sửa); dịch vụ không nâng cấp chữ ký không hợp lệ.",
)
ExtensionCertificateExpired = _error(
    "EXTENSION_CERTIFICATE_EXPIRED",
    422,
    "Chứng thư số của chữ ký hoặc dấu thời gian đã hết hạn nên không còn lấy được dữ liệu trạng "
    "thái của nó; không thể nâng cấp (cần nâng cấp trước khi chứng thư hết hạn).",
)
ExtensionValidationDataUnavailable = _error(
    "EXTENSION_VALIDATION_DATA_UNAVAILABLE",
    503,
    "Chưa lấy được dữ liệu kiểm tra trạng thái chứng thư (OCSP/CRL) để nâng cấp chữ ký; "
    "vui lòng thử lại sau.",
)
DocumentNotLatestVersion = _error(
    "DOCUMENT_NOT_LATEST_VERSION",
    409,
    "Văn bản đã có phiên bản mới hơn; hãy nâng cấp phiên bản mới nhất.",
)


# Preservation of B-LTA documents (issue 12, services/preservation.py). Raised by the job, never
# answered over HTTP; the audit entry and `preservation run` show it.
PreservationTsaTooShort = _error(
    "PRESERVATION_TSA_TOO_SHORT",
    409,
    "Chứng thư của đơn vị cấp dấu thời gian dùng để gia hạn lưu trữ cũng hết hạn trong khoảng "
    "thời gian cảnh báo (SIGNING_SERVICE_PRESERVATION_HORIZON_DAYS): gia hạn bằng dấu thời "
    "gian này không giúp văn bản kiểm chứng được lâu hơn; chọn SIGNING_SERVICE_PRESERVATION_TSA "
    "khác. Chưa lưu gì.",
)

# Red team 12 F9/F14: a renewal whose new document timestamp would itself use a digest the
# operator is retiring would leave the document due at once (a new version every run).
PreservationDigestRetiring = _error(
    "PRESERVATION_DIGEST_RETIRING",
    409,
    "Dấu thời gian mới dùng thuật toán băm đang được loại bỏ "
    "(SIGNING_SERVICE_PRESERVATION_RETIRING_DIGESTS): gia hạn bằng nó không giúp văn bản kiểm "
    "chứng được lâu hơn; sửa danh sách thuật toán hoặc đơn vị cấp dấu thời gian. Chưa lưu gì.",
)
# Red team 12 F14: a B-LTA document is renewed through the API only when its newest archive
# timestamp is due (each renewal stores a whole new version under retention).
ExtensionNotDue = _error(
    "EXTENSION_NOT_DUE",
    409,
    "Tài liệu đã ở mức B-LTA và dấu thời gian lưu trữ mới nhất chưa đến hạn gia hạn (chứng thư "
    "của đơn vị cấp dấu thời gian chưa sắp hết hạn, thuật toán băm chưa bị loại bỏ): chưa gia "
    "hạn, không lưu gì. Dịch vụ tự gia hạn khi đến hạn.",
)


# Evidence per signature (issue 12, services/evidence.py). Another agency's signature answers
# exactly as one that does not exist.
SignatureNotFound = _error("SIGNATURE_NOT_FOUND", 404, "Không tìm thấy chữ ký.")
EvidenceNotKept = _error(
    "EVIDENCE_NOT_KEPT",
    404,
    "Chữ ký này không có bằng chứng lưu trữ (được tạo trước khi dịch vụ lưu bằng chứng cho "
    "từng chữ ký).",
)
EvidencePurged = _error(
    "EVIDENCE_PURGED",
    410,
    "Bằng chứng của chữ ký này đã hết thời hạn lưu trữ và đã được xóa.",
)
InvalidRetention = _error(
    "INVALID_RETENTION",
    422,
    "Thời hạn lưu trữ bằng chứng không hợp lệ: số năm phải là số nguyên từ 1 đến 100, loại văn "
    "bản là một trong person, seal, copy, annex, digitised, none, unspecified hoặc *.",
)
