"""Reason codes of the verification report and their Vietnamese messages.

Codes are stable identifiers (English, for machines); each has one Vietnamese message (for
people). ``docs/verification-report.md`` lists which check can carry which code.
"""

from __future__ import annotations

import unicodedata

MAX_SHOWN_TEXT = 200  # characters of a name from a document shown in a report


def display_text(text: str, limit: int = MAX_SHOWN_TEXT) -> str:
    """``text`` from a document (a field name, a certificate name) made safe to print: control
    characters (a newline could forge a line of the CLI report: "…\nKết luận: HỢP LỆ") and
    format characters such as bidirectional overrides (U+202E reverses what follows on screen)
    are shown as ``\\uXXXX`` escapes, never interpreted; zero-width (non-)joiners, which
    Vietnamese text may carry, are kept. Longer than ``limit`` characters: cut, ending "…"."""
    out = []
    for ch in text[: limit + 1]:
        category = unicodedata.category(ch)
        if category == "Cc" or (category == "Cf" and ch not in "\u200c\u200d"):
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    shown = "".join(out)
    return shown if len(text) <= limit else shown[:limit] + "…"


CHECK_LABELS: dict[str, str] = {
    "integrity": "Toàn vẹn của chữ ký",
    "modifications": "Thay đổi sau khi ký",
    "trust": "Chuỗi chứng thư tới gốc tin cậy",
    "revocation": "Tình trạng thu hồi chứng thư",
    "timestamp": "Dấu thời gian",
    "algorithms": "Thuật toán và độ dài khóa",
}

MESSAGES: dict[str, str] = {
    # integrity
    "INTACT": "Giá trị băm và chữ ký số khớp với nội dung được ký.",
    "HASH_MISMATCH": "Nội dung đã bị thay đổi: giá trị băm không khớp với giá trị đã ký.",
    "SIGNATURE_VALUE_INVALID": "Giá trị chữ ký số không hợp lệ đối với chứng thư của người ký.",
    "SIGNATURE_NOT_CHECKED": (
        "Không kiểm tra được giá trị chữ ký số vì thuật toán chữ ký không được hỗ trợ."
    ),
    "NONSTANDARD_COVERAGE": (
        "Vùng dữ liệu được ký (ByteRange) bất thường: chữ ký không bao phủ trọn một phiên bản "
        "của tài liệu."
    ),
    "SIGNATURE_UNREADABLE": "Không đọc được chữ ký số (cấu trúc chữ ký bị hỏng hoặc không hợp lệ).",
    "SIGNING_CERTIFICATE_MISMATCH": (
        "Chứng thư đi kèm không phải chứng thư mà người ký đã cam kết trong chữ ký "
        "(thuộc tính signing-certificate không khớp)."
    ),
    # modifications
    "NO_CHANGES": "Tài liệu không bị thay đổi sau khi ký.",
    "LTV_UPDATES_ONLY": (
        "Sau khi ký chỉ bổ sung dữ liệu kiểm tra dài hạn (DSS) hoặc dấu thời gian tài liệu."
    ),
    "ALLOWED_FORM_FILLING": (
        "Sau khi ký chỉ có thay đổi được phép (điền biểu mẫu, thêm chữ ký hoặc dấu thời gian, "
        "thêm ô chữ ký)."
    ),
    "ALLOWED_ANNOTATIONS": (
        "Sau khi ký chỉ có thay đổi ở chú thích (thêm, sửa hoặc xóa), dấu trang (mục lục) hoặc "
        "thẻ cấu trúc của chúng — được phép, không thuộc nội dung đã ký. Chú thích có thể che "
        "khuất nội dung: hãy đối chiếu với phiên bản đã ký."
    ),
    "DISALLOWED_CHANGES": (
        "Chữ ký hợp lệ nhưng tài liệu đã bị sửa sau khi ký theo cách không được phép."
    ),
    "DOCMDP_VIOLATION": (
        "Tài liệu đã được ký chứng nhận và khóa thay đổi nhưng bị thay đổi vượt quá quyền mà người "
        "ký chứng nhận cho phép."
    ),
    "LOCKED_FIELD_CHANGED": (
        "Trường biểu mẫu đã bị khóa bởi chữ ký này lại bị thay đổi sau khi ký."
    ),
    "UNREFERENCED_OBJECTS": (
        "Có đối tượng PDF được thêm sau khi ký nhưng không được khai báo trong bảng xref "
        "(dấu hiệu tấn công nối thêm nội dung)."
    ),
    "XREF_DAMAGED": (
        "Bảng tham chiếu chéo (xref) được ghi sau khi ký trỏ sai vị trí: phần mềm đọc PDF sẽ "
        "dựng lại bảng và có thể hiển thị nội dung khác với nội dung đã được kiểm tra (dấu "
        "hiệu tấn công nối thêm nội dung)."
    ),
    "UNCOVERED_TRAILING_BYTES": (
        "Có dữ liệu được nối vào cuối tệp sau phiên bản cuối cùng mà không chữ ký nào bao phủ."
    ),
    "DUPLICATE_KEYS": (
        "Sau khi ký, tệp được bổ sung một từ điển PDF có khóa bị lặp lại: mỗi phần mềm đọc có thể "
        "hiển thị một nội dung khác nhau (dấu hiệu tấn công nối thêm nội dung)."
    ),
    "MODIFICATIONS_UNKNOWN": "Không phân tích được các thay đổi sau khi ký.",
    # trust
    "CHAIN_TRUSTED": "Chuỗi chứng thư số dẫn tới một chứng thư gốc tin cậy.",
    "CHAIN_TRUSTED_AT_SIGNING_TIME": (
        "Tại thời điểm ký đã được chứng minh bằng dấu thời gian, chứng thư số còn hiệu lực và "
        "chuỗi chứng thư dẫn tới một chứng thư gốc tin cậy."
    ),
    "NO_CHAIN_TO_TRUSTED_ROOT": (
        "Không xây dựng được chuỗi chứng thư tới một chứng thư gốc tin cậy."
    ),
    "CERT_EXPIRED_NO_POE": (
        "Chứng thư số đã hết hạn (hoặc chưa có hiệu lực) tại thời điểm kiểm tra và không có dấu "
        "thời gian tin cậy chứng minh chữ ký được tạo khi chứng thư còn hiệu lực."
    ),
    "CERT_EXPIRED_BEFORE_SIGNING": (
        "Chứng thư số đã hết hạn trước thời điểm chữ ký được chứng minh là đã tồn tại."
    ),
    "CERT_NOT_YET_VALID": "Chữ ký được tạo trước khi chứng thư số có hiệu lực.",
    "CHAIN_CONSTRAINTS_FAILED": "Chuỗi chứng thư vi phạm ràng buộc (mục đích sử dụng khóa, …).",
    "CHAIN_REVOKED": "Một chứng thư của đơn vị cấp trong chuỗi đã bị thu hồi.",
    "CHAIN_WEAK_ALGORITHM": "Chuỗi chứng thư dùng thuật toán yếu hoặc không được phép.",
    "TRUST_UNDETERMINED": "Không xác định được độ tin cậy của chứng thư số.",
    # revocation
    "NOT_REVOKED": "Chứng thư số chưa bị thu hồi (đã kiểm tra OCSP/CRL).",
    "NOT_REVOKED_AT_SIGNING_TIME": (
        "Chứng thư số chưa bị thu hồi tại thời điểm ký đã được chứng minh (theo dữ liệu OCSP/CRL "
        "lưu trong tài liệu hoặc tra cứu được)."
    ),
    "REVOKED": "Chứng thư số đã bị thu hồi trước thời điểm ký.",
    "REVOKED_NO_POE": (
        "Chứng thư số đã bị thu hồi và không có bằng chứng thời gian cho thấy chữ ký được tạo "
        "trước thời điểm thu hồi."
    ),
    "REVOKED_AFTER_SIGNING": (
        "Chứng thư số bị thu hồi sau thời điểm ký (dấu thời gian chứng minh chữ ký có trước)."
    ),
    "REVOCATION_UNKNOWN": (
        "Không xác định được trạng thái thu hồi của chứng thư số (không có phản hồi OCSP hay "
        "CRL hợp lệ): cảnh báo, chưa thể kết luận."
    ),
    "REVOCATION_NOT_CHECKED": (
        "Chưa kiểm tra được trạng thái thu hồi vì chuỗi chứng thư chưa được xác nhận (xem kết "
        "quả kiểm tra chuỗi chứng thư)."
    ),
    # timestamp
    "TIMESTAMP_VALID": "Dấu thời gian hợp lệ và do đơn vị cấp dấu thời gian tin cậy cấp.",
    "NO_TIMESTAMP": (
        "Chữ ký không có dấu thời gian; thời điểm ký là thời điểm do người ký tự khai."
    ),
    "TIMESTAMP_INVALID": (
        "Dấu thời gian không hợp lệ (đã bị thay đổi, hỏng hoặc không khớp chữ ký)."
    ),
    "TIMESTAMP_UNTRUSTED": "Dấu thời gian không do đơn vị cấp dấu thời gian tin cậy cấp.",
    "SIGNATURE_TIMESTAMP_BROKEN": (
        "Dấu thời gian đi kèm chữ ký bị hỏng hoặc không khớp chữ ký (phần này nằm ngoài nội dung "
        "được ký, ai cũng có thể thay): dấu thời gian bị bỏ qua, chữ ký được xác minh như chữ ký "
        "không có dấu thời gian; nội dung được ký không bị ảnh hưởng."
    ),
    "TIMESTAMP_STATUS_UNKNOWN": (
        "Chưa xác định được tình trạng thu hồi chứng thư của đơn vị cấp dấu thời gian tại thời "
        "điểm xác minh (không có hoặc hết hạn dữ liệu OCSP/CRL): dấu thời gian chưa được dùng "
        "làm bằng chứng về thời điểm ký."
    ),
    "TIMESTAMP_TSA_CERT_EXPIRED": (
        "Chứng thư của đơn vị cấp dấu thời gian đã hết hạn tại thời điểm xác minh và không có "
        "dấu thời gian muộn hơn chứng minh dấu thời gian này có trước đó."
    ),
    "TIMESTAMP_TSA_REVOKED": "Chứng thư của đơn vị cấp dấu thời gian đã bị thu hồi.",
    "TIMESTAMP_AFTER_VALIDATION_TIME": (
        "Dấu thời gian ghi một thời điểm sau thời điểm xác minh: dấu thời gian này chưa tồn tại "
        "vào thời điểm xác minh (hoặc đồng hồ của đơn vị cấp sai), không được dùng làm bằng chứng."
    ),
    "TIMESTAMP_OUTSIDE_TSA_VALIDITY": (
        "Dấu thời gian ghi một thời điểm ngoài thời hạn hiệu lực chứng thư của chính đơn vị cấp "
        "dấu thời gian (ghi lùi thời gian hoặc khóa bị dùng sai): không được dùng làm bằng chứng."
    ),
    "TIMESTAMP_WEAK_ALGORITHM": (
        "Dấu thời gian dùng thuật toán băm hoặc khóa yếu (ví dụ SHA-1) nên không được dùng làm "
        "bằng chứng thời gian."
    ),
    # algorithms
    "ALGORITHMS_OK": "Thuật toán và độ dài khóa đáp ứng quy định.",
    # document-level problems
    "UNPARSABLE_SIGNED_PDF": (
        "Tệp PDF có chữ ký nhưng cấu trúc bị hỏng, không đọc được: không thể coi là hợp lệ."
    ),
    "UNREACHABLE_SIGNATURE": (
        "Tệp chứa từ điển chữ ký không gắn với trường chữ ký nào của tài liệu (dấu hiệu giả "
        "mạo chữ ký)."
    ),
    "INCOMPLETE_REVISION": (
        "Tệp có một lần cập nhật cuối chưa hoàn chỉnh (bị cắt cụt, thiếu %%EOF): phần đọc được "
        "không có chữ ký, nhưng không thể kết luận tệp chưa từng được ký."
    ),
    # notes (informational, per signature)
    "VALIDATED_AT_PROVEN_TIME": (
        "Chứng thư đã được kiểm tra tại thời điểm ký được chứng minh bằng dấu thời gian."
    ),
    "REVOKED_AFTER_PROVEN_TIME": (
        "Chứng thư số đã bị thu hồi sau thời điểm ký được chứng minh; chữ ký tạo trước đó vẫn "
        "có giá trị."
    ),
    # warnings (document level)
    "ANNOTATION_ADDED_AFTER_SIGNING": (
        "Có chú thích được thêm sau khi ký; chú thích có thể che khuất nội dung đã ký."
    ),
    "ANNOTATION_CHANGED_AFTER_SIGNING": (
        "Có chú thích đã có từ trước bị sửa sau khi ký; nội dung hiển thị có thể khác lúc ký."
    ),
    "ANNOTATION_REMOVED_AFTER_SIGNING": (
        "Có chú thích đã có lúc ký bị xóa sau khi ký; tài liệu hiển thị khác với lúc ký."
    ),
    "UNSIGNED_FIELD_ADDED_AFTER_SIGNING": (
        "Có trường chữ ký hiển thị được thêm sau khi ký nhưng chưa ký: hình thể hiện của nó do "
        "người thêm tự vẽ, không phải chữ ký số, và có thể che nội dung đã ký."
    ),
    "TIMESTAMP_APPEARANCE_ADDED": (
        "Có dấu thời gian tài liệu được thêm sau khi ký có hình hiển thị trên trang: dấu thời "
        "gian không xác nhận người ký nào, hình đó do người thêm tự vẽ và có thể che nội dung "
        "đã ký."
    ),
    "ANNOTATIONS_UNREADABLE": (
        "Có chú thích được thêm hoặc sửa sau khi ký không đọc được (giá trị bất thường), nên "
        "danh sách cảnh báo về chú thích có thể chưa đủ: hãy xem kỹ toàn bộ tài liệu."
    ),
    "ANNOTATIONS_NOT_REVIEWED": (
        "Tài liệu quá nhiều trang: chú thích thêm sau khi ký chỉ được rà soát để cảnh báo trên "
        "các trang đầu (các thay đổi vẫn được kiểm tra theo quy tắc)."
    ),
    "ANNOTATION_OVER_SIGNATURE": (
        "Có chú thích được thêm sau khi ký nằm đè lên hình thể hiện của một chữ ký."
    ),
    "XREF_DAMAGED_IN_SIGNED_REVISION": (
        "Bảng tham chiếu chéo (xref) trong phần đã ký trỏ sai vị trí (lỗi của phần mềm tạo "
        "tệp): một số phần mềm đọc PDF có thể hiển thị phần đó khác với nội dung đã ký."
    ),
    "BYTES_BEFORE_HEADER": (
        "Có dữ liệu đứng trước phần đầu %PDF- của tệp mà không chữ ký nào bao phủ."
    ),
    "SIGNED_AFTER_VALIDATION_TIME": (
        "Thời điểm xác minh được yêu cầu sớm hơn thời điểm ký ghi trong dấu thời gian: vào lúc "
        "đó chữ ký chưa tồn tại."
    ),
    "CERTIFICATE_EXPIRED_SINCE": (
        "Chứng thư số của người ký đã hết hạn sau khi ký; chữ ký được kiểm tra tại thời điểm ký."
    ),
    "CLAIMED_SIGNED_AFTER_VALIDATION_TIME": (
        "Thời điểm xác minh được yêu cầu sớm hơn thời điểm ký do chính người ký tự khai (chữ ký "
        "không có dấu thời gian): theo lời khai đó, vào lúc ấy chữ ký chưa tồn tại."
    ),
    "ACTIVE_CONTENT_PRESENT": (
        "Tài liệu chứa nội dung chủ động (JavaScript, hành động tự chạy, mở chương trình, tệp "
        "đính kèm nhúng hoặc biểu mẫu XFA): khi mở tài liệu, phần mềm đọc PDF có thể chạy mã "
        "hoặc mở tệp. Chữ ký số không bảo đảm các nội dung này an toàn."
    ),
    "ACTIVE_CONTENT_NOT_CHECKED": (
        "Không kiểm tra được hết tệp để tìm nội dung chủ động (mã chạy tự động, tệp đính kèm "
        "nhúng): tệp có thể chứa các nội dung này."
    ),
    "CLAIMED_TIME_ZONE_UNKNOWN": (
        "Thời điểm ký do người ký tự khai (/M) không ghi múi giờ; được hiểu là giờ UTC và hiển "
        "thị theo giờ Việt Nam, nên có thể lệch nếu phần mềm ký đã ghi giờ địa phương."
    ),
    "EXISTENCE_ASSUMED_AT_VALIDATION_TIME": (
        "Kết quả xác minh tại thời điểm được yêu cầu giả định chữ ký đã tồn tại vào lúc đó: "
        "không có dấu thời gian nào chứng minh điều này (thời điểm ký tự khai có thể bị ghi lùi)."
    ),
    "REVOCATION_NOT_REFRESHED": (
        "Không lấy được danh sách thu hồi (CRL) hiện hành của CA: tình trạng thu hồi được kết "
        "luận theo dữ liệu lưu trong tài liệu, không thể hiện việc thu hồi công bố sau thời "
        "điểm dữ liệu đó được phát hành."
    ),
    "SIGNING_CERTIFICATE_SHA1": (
        "Chữ ký chỉ gắn với chứng thư của người ký bằng giá trị băm SHA-1 (thuộc tính ESS "
        "signing-certificate phiên bản 1): SHA-1 không còn đủ an toàn cho việc này."
    ),
    "CLAIMED_SIGNING_TIME_BEFORE_CERTIFICATE": (
        "Thời điểm ký do người ký tự khai sớm hơn ngày chứng thư số của người ký bắt đầu có hiệu "
        "lực: thời điểm đó không thể đúng (đồng hồ của máy ký sai hoặc thời điểm bị ghi lùi)."
    ),
    "TIMESTAMP_BEFORE_CLAIMED_SIGNING_TIME": (
        "Thời gian trong dấu thời gian sớm hơn thời điểm ký do người ký tự khai: đồng hồ của máy "
        "ký sai hoặc thời điểm tự khai không đúng. Thời điểm ký được tính theo dấu thời gian."
    ),
}

VERDICT_MESSAGES = {
    "TOTAL_PASSED": "Tất cả chữ ký số hợp lệ.",
    "TOTAL_FAILED": "Có chữ ký số không hợp lệ hoặc tài liệu đã bị thay đổi sau khi ký.",
    "INDETERMINATE": "Chưa đủ căn cứ để kết luận chữ ký số hợp lệ.",
    "NO_SIGNATURE": "Tài liệu không có chữ ký số.",
}


def message(code: str, extra: str = "") -> str:
    """The Vietnamese message of ``code``, with ``extra`` detail in parentheses (escaped with
    :func:`display_text`: details may quote the document)."""
    text = MESSAGES[code]
    return f"{text} ({display_text(extra, limit=500)})" if extra else text
