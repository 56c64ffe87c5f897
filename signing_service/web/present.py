"""A verification report in plain Vietnamese for citizens (issue 11 item 1).

:func:`present` turns the report JSON the verifier produces (``docs/verification-report.md``,
plus the ``registry`` section of :mod:`signing_service.services.registry`) into a
:class:`ResultView`: one lead sentence, an overall state that is never told by colour alone
(``valid`` / ``invalid`` / ``indeterminate`` with the labels Hợp lệ / Không hợp lệ / Chưa xác
định được and an icon name), and per signature who signed (a person, an agency seal, a
timestamp), when and what proves the time, the certificate's issuer and validity, what was
checked and every warning with a "why this matters" line. The codes and raw data sit in a
``technical`` part (the page shows it behind a disclosure).

The report's own ``message`` fields are precise but written for specialists ("ByteRange", "DSS",
"OCSP"); the citizen texts here are a second rendering of the same codes, kept next to them so a
new code cannot be added without one (``tests/test_web_present.py`` checks every code the
verifier can emit). The view is built only from the report: it never reads the document, and the
report holds no file content and no applicant identity.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass
from dataclasses import field as dc_field
from datetime import datetime
from typing import Any

from signing_service.services.conclusion import (
    IN_FORCE,
    NOT_QR_DOCUMENT,
    SIGNATURE_INDETERMINATE,
    SIGNATURE_INVALID,
    STATE_LABELS,  # one set of words for the page, the PDF report and the CLI
    document_status,
    newer_version_note,
)
from signing_service.timefmt import VIETNAM_TZ, vietnam_date
from signing_service.verification.messages import display_text

# The icon names the page draws (inline SVG): the state is told by icon and text too.
STATE_ICONS = {"valid": "check", "invalid": "cross", "indeterminate": "question"}

KIND_LABELS = {
    "person": "Chữ ký số của cá nhân",
    "seal": "Chữ ký số của cơ quan, tổ chức (con dấu số)",
    "timestamp": "Dấu thời gian",
    "unknown": "Chữ ký số (không xác định được là của cá nhân hay cơ quan)",
}

CHECK_LABELS = {
    "integrity": "Nội dung còn nguyên vẹn",
    "modifications": "Thay đổi sau khi ký",
    "trust": "Chứng thư số do đơn vị được công nhận cấp",
    "revocation": "Chứng thư số chưa bị thu hồi",
    "timestamp": "Thời điểm ký được chứng minh",
    "algorithms": "Thuật toán đủ an toàn",
}
# The same checks of a document timestamp: what they mean for a timestamp (its "time proven"
# check is the timestamp itself; "the signing time is proven" about itself said nothing).
TIMESTAMP_CHECK_LABELS = {
    "integrity": "Dấu thời gian còn nguyên vẹn, khớp với tài liệu",
    "modifications": "Thay đổi sau dấu thời gian",
    "trust": "Đơn vị cấp dấu thời gian được công nhận",
    "revocation": "Chứng thư của đơn vị cấp dấu thời gian chưa bị thu hồi",
    "timestamp": "Dấu thời gian hợp lệ",
    "algorithms": "Thuật toán đủ an toàn",
}
CHECK_STATUS_LABELS = {
    "PASSED": "Đạt",
    "FAILED": "Không đạt",
    "INDETERMINATE": "Chưa xác định",
    "NOT_APPLICABLE": "Không áp dụng",
}

# The technical detail's codes, each explained in words (the codes stay: a specialist or the
# help desk searches by them).
INDICATION_TEXTS = {
    "TOTAL_PASSED": "hợp lệ",
    "TOTAL_FAILED": "không hợp lệ",
    "INDETERMINATE": "chưa xác định được",
    "NO_SIGNATURE": "không có chữ ký số",
}
COVERAGE_TEXTS = {
    "ENTIRE_FILE": "toàn bộ tệp",
    "ENTIRE_REVISION": "toàn bộ tài liệu như lúc ký",
    "CONTIGUOUS_BLOCK_FROM_START": "chỉ một phần đầu tệp",
    "UNCLEAR": "không xác định được",
}
REVOCATION_STATUS_TEXTS = {
    "good": "chưa bị thu hồi",
    "revoked": "đã bị thu hồi",
    # A CRL that does not list the certificate: not revoked as of that CRL (new user 18 #3).
    "not_listed": "không có trong danh sách thu hồi (chưa bị thu hồi)",
    "unknown": "không rõ",
}
TIMESTAMP_TYPE_TEXTS = {
    "signature": "Dấu thời gian của chữ ký",
    "document": "Dấu thời gian tài liệu",
    "content": "Dấu thời gian nội dung",
}
TIMESTAMP_CODE_TEXTS = {
    "TIMESTAMP_VALID": "hợp lệ",
    "TIMESTAMP_INVALID": "không hợp lệ",
    "TIMESTAMP_UNTRUSTED": "đơn vị cấp không được công nhận",
    "SIGNATURE_TIMESTAMP_BROKEN": "hỏng, không dùng",
    "TIMESTAMP_STATUS_UNKNOWN": "chưa kiểm tra được",
}

REGISTRY_STATUS_LABELS = {
    "in_force": "Đang có hiệu lực",
    "revoked": "Đã bị thu hồi",
    "superseded": "Đã được thay thế bằng văn bản khác",
}
REGISTRY_KIND_LABELS = {
    "person": "Văn bản có chữ ký của người có thẩm quyền",
    "seal": "Văn bản có con dấu số của cơ quan",
    "copy": "Bản sao điện tử",
    "annex": "Phụ lục",
    "digitised": "Bản số hóa từ bản giấy",
    "none": "Văn bản ký số (không có hình chữ ký)",
}

# Why a citizen should care, shared by codes that mean the same thing to them.
_WHY_CHANGED = (
    "Nội dung bạn đang xem có thể khác với nội dung người ký đã duyệt; đừng dựa vào tài liệu "
    "này. Hãy xin lại bản gốc từ cơ quan ban hành."
)
_WHY_FORGED = (
    "Không chứng minh được ai đã ký tài liệu này; tài liệu có thể bị giả mạo. Đừng dựa vào nó và "
    "hãy liên hệ cơ quan ban hành."
)
_WHY_TRUST = (
    "Chỉ chữ ký bằng chứng thư số do đơn vị được Nhà nước công nhận cấp mới có giá trị pháp lý; "
    "ai cũng có thể tự tạo một chứng thư mang tên bất kỳ."
)
_WHY_REVOCATION = (
    "Chứng thư bị thu hồi (ví dụ vì khóa bị lộ, người ký thôi giữ chức vụ) thì chữ ký tạo sau "
    "thời điểm thu hồi không còn giá trị."
)
_WHY_TIME = (
    "Thời điểm ký quyết định chứng thư lúc đó còn hiệu lực hay không; không có bằng chứng về "
    "thời gian thì không thể loại trừ việc ký lùi ngày."
)
_WHY_RETRY = (
    "Kết quả này có thể thay đổi khi tra cứu được dữ liệu: hãy thử lại sau, hoặc hỏi cơ quan ban "
    "hành."
)
_WHY_ALGORITHM = (
    "Thuật toán yếu hoặc không được phép có thể bị làm giả; pháp luật chỉ công nhận chữ ký dùng "
    "thuật toán trong danh mục cho phép."
)
_WHY_HOSTILE = (
    "Tệp có cấu trúc bất thường hoặc vượt giới hạn an toàn nên không được kiểm tra hết; tệp có "
    "thể bị hỏng hoặc được tạo ra để đánh lừa. Hãy xin lại bản gốc từ cơ quan ban hành."
)
_WHY_ANNOTATION = (
    "Chú thích (ghi chú, hình vẽ, ô chữ) không thuộc phần đã ký nhưng hiện ra trên trang và có "
    "thể che hoặc làm sai lệch nội dung; hãy đối chiếu với bản đã ký."
)


@dataclass(frozen=True)
class CitizenText:
    """A code in plain words: ``text`` (what was found) and ``why`` (why it matters)."""

    text: str
    why: str = ""


CITIZEN_TEXTS: dict[str, CitizenText] = {
    # integrity
    "INTACT": CitizenText("Nội dung không bị thay đổi kể từ khi ký."),
    "HASH_MISMATCH": CitizenText("Nội dung đã bị thay đổi sau khi ký.", _WHY_CHANGED),
    "SIGNATURE_VALUE_INVALID": CitizenText(
        "Chữ ký số không khớp với chứng thư số của người ký.", _WHY_FORGED
    ),
    "SIGNATURE_NOT_CHECKED": CitizenText(
        "Không kiểm tra được chữ ký vì nó dùng thuật toán mà hệ thống không hỗ trợ.", _WHY_ALGORITHM
    ),
    "NONSTANDARD_COVERAGE": CitizenText(
        "Chữ ký không bao phủ trọn tài liệu: có phần không được ký.",
        "Phần không được ký có thể bị sửa mà chữ ký không phát hiện được.",
    ),
    "SIGNATURE_UNREADABLE": CitizenText("Không đọc được chữ ký số (chữ ký bị hỏng).", _WHY_FORGED),
    "SIGNING_CERTIFICATE_MISMATCH": CitizenText(
        "Chứng thư số đi kèm không phải chứng thư người ký đã dùng.", _WHY_FORGED
    ),
    # modifications
    "NO_CHANGES": CitizenText("Tài liệu không bị sửa sau khi ký."),
    "LTV_UPDATES_ONLY": CitizenText(
        "Sau khi ký chỉ có thêm dữ liệu để kiểm tra chữ ký lâu dài; nội dung không đổi."
    ),
    "ALLOWED_FORM_FILLING": CitizenText(
        "Sau khi ký chỉ có thay đổi được phép (điền biểu mẫu, thêm chữ ký hoặc dấu thời gian, "
        "thêm ô chữ ký); các cảnh báo bên dưới, nếu có, nói rõ đó là gì."
    ),
    "ALLOWED_ANNOTATIONS": CitizenText(
        "Sau khi ký có thêm, sửa hoặc xóa chú thích; nội dung đã ký không đổi.", _WHY_ANNOTATION
    ),
    "DISALLOWED_CHANGES": CitizenText(
        "Tài liệu đã bị sửa sau khi ký theo cách không được phép.", _WHY_CHANGED
    ),
    "DOCMDP_VIOLATION": CitizenText(
        "Người ký đã khóa tài liệu nhưng tài liệu vẫn bị sửa sau đó.", _WHY_CHANGED
    ),
    "LOCKED_FIELD_CHANGED": CitizenText(
        "Một ô biểu mẫu đã được chữ ký khóa lại bị sửa sau khi ký.", _WHY_CHANGED
    ),
    "UNREFERENCED_OBJECTS": CitizenText(
        "Có nội dung được lén nối thêm vào tệp sau khi ký.", _WHY_CHANGED
    ),
    "XREF_DAMAGED": CitizenText(
        "Tệp đã bị sửa cấu trúc sau khi ký: phần mềm đọc PDF có thể hiển thị nội dung khác với "
        "nội dung đã ký.",
        _WHY_CHANGED,
    ),
    "UNCOVERED_TRAILING_BYTES": CitizenText(
        "Có dữ liệu được nối vào cuối tệp sau khi ký mà không chữ ký nào bao phủ.", _WHY_CHANGED
    ),
    "DUPLICATE_KEYS": CitizenText(
        "Sau khi ký, tệp bị thêm dữ liệu mà mỗi phần mềm xem có thể hiển thị khác nhau.",
        _WHY_CHANGED,
    ),
    "MODIFICATIONS_UNKNOWN": CitizenText(
        "Không phân tích được những thay đổi sau khi ký.",
        "Không thể khẳng định nội dung bạn thấy là nội dung đã ký.",
    ),
    # trust
    "CHAIN_TRUSTED": CitizenText("Chứng thư số do đơn vị cung cấp dịch vụ được công nhận cấp."),
    "CHAIN_TRUSTED_AT_SIGNING_TIME": CitizenText(
        "Vào lúc ký, chứng thư số còn hiệu lực và do đơn vị được công nhận cấp."
    ),
    "NO_CHAIN_TO_TRUSTED_ROOT": CitizenText(
        "Chứng thư số không do đơn vị cung cấp dịch vụ được công nhận cấp.", _WHY_TRUST
    ),
    "CERT_EXPIRED_NO_POE": CitizenText(
        "Chứng thư số đã hết hạn và không có dấu thời gian chứng minh tài liệu được ký khi "
        "chứng thư còn hạn.",
        _WHY_TIME,
    ),
    "CERT_EXPIRED_BEFORE_SIGNING": CitizenText(
        "Chứng thư số đã hết hạn trước khi ký.",
        "Chữ ký tạo bằng chứng thư đã hết hạn không có giá trị pháp lý.",
    ),
    "CERT_NOT_YET_VALID": CitizenText(
        "Tài liệu được ký trước ngày chứng thư số bắt đầu có hiệu lực.",
        "Chữ ký tạo ngoài thời hạn của chứng thư không có giá trị pháp lý; ngày ký có thể bị "
        "ghi sai hoặc giả mạo.",
    ),
    "CHAIN_CONSTRAINTS_FAILED": CitizenText(
        "Chứng thư số không được cấp cho mục đích ký văn bản này.", _WHY_TRUST
    ),
    "CHAIN_REVOKED": CitizenText(
        "Chứng thư của đơn vị cấp chứng thư cho người ký đã bị thu hồi.", _WHY_REVOCATION
    ),
    "CHAIN_WEAK_ALGORITHM": CitizenText(
        "Chứng thư số dùng thuật toán yếu hoặc không được phép.", _WHY_ALGORITHM
    ),
    "TRUST_UNDETERMINED": CitizenText(
        "Không xác định được chứng thư số có đáng tin cậy hay không.", _WHY_TRUST
    ),
    # revocation
    "NOT_REVOKED": CitizenText("Chứng thư số chưa bị thu hồi."),
    "NOT_REVOKED_AT_SIGNING_TIME": CitizenText("Vào lúc ký, chứng thư số chưa bị thu hồi."),
    "REVOKED": CitizenText(
        "Chứng thư số đã bị thu hồi trước khi ký.",
        "Chữ ký tạo bằng chứng thư đã bị thu hồi không có giá trị pháp lý.",
    ),
    "REVOKED_NO_POE": CitizenText(
        "Chứng thư số đã bị thu hồi, và không có bằng chứng tài liệu được ký trước lúc đó.",
        _WHY_REVOCATION,
    ),
    "REVOKED_AFTER_SIGNING": CitizenText(
        "Chứng thư số bị thu hồi sau khi ký; chữ ký đã tạo trước đó vẫn có giá trị.",
        "Dấu thời gian chứng minh tài liệu được ký trước khi thu hồi, nên chữ ký vẫn có giá trị; "
        "chữ ký mới bằng chứng thư này thì không.",
    ),
    "REVOCATION_UNKNOWN": CitizenText(
        "Chưa tra cứu được chứng thư số có bị thu hồi hay không.", _WHY_RETRY
    ),
    "REVOCATION_NOT_CHECKED": CitizenText(
        "Chưa kiểm tra việc thu hồi vì chứng thư số chưa được xác nhận.",
        "Chỉ kiểm tra được việc thu hồi khi đã xác nhận được chứng thư số; lý do chưa xác nhận "
        "được ghi ở dòng \u201cChứng thư số do đơn vị được công nhận cấp\u201d.",
    ),
    # timestamp
    "TIMESTAMP_VALID": CitizenText(
        "Thời điểm ký được chứng minh bằng dấu thời gian của đơn vị được công nhận."
    ),
    "NO_TIMESTAMP": CitizenText(
        "Không có dấu thời gian: thời điểm ký là do máy của người ký tự ghi.", _WHY_TIME
    ),
    "TIMESTAMP_INVALID": CitizenText(
        "Dấu thời gian không hợp lệ (bị sửa, bị hỏng hoặc không khớp chữ ký).", _WHY_TIME
    ),
    "TIMESTAMP_UNTRUSTED": CitizenText(
        "Dấu thời gian không do đơn vị được công nhận cấp.", _WHY_TIME
    ),
    "SIGNATURE_TIMESTAMP_BROKEN": CitizenText(
        "Dấu thời gian đi kèm chữ ký bị hỏng hoặc không khớp chữ ký, nên không được dùng.",
        "Nội dung được ký không bị ảnh hưởng, nhưng thời điểm ký hiển thị chỉ là thời điểm người "
        "ký tự khai; dấu thời gian có thể đã bị thay sau khi ký.",
    ),
    "TIMESTAMP_STATUS_UNKNOWN": CitizenText(
        "Chưa kiểm tra được đơn vị cấp dấu thời gian, nên dấu thời gian chưa được dùng làm bằng "
        "chứng.",
        _WHY_RETRY,
    ),
    "TIMESTAMP_TSA_CERT_EXPIRED": CitizenText(
        "Chứng thư của đơn vị cấp dấu thời gian đã hết hạn và không có bằng chứng nào muộn hơn.",
        _WHY_TIME,
    ),
    "TIMESTAMP_TSA_REVOKED": CitizenText(
        "Chứng thư của đơn vị cấp dấu thời gian đã bị thu hồi.", _WHY_TIME
    ),
    "TIMESTAMP_AFTER_VALIDATION_TIME": CitizenText(
        "Dấu thời gian ghi một thời điểm muộn hơn thời điểm kiểm tra.", _WHY_TIME
    ),
    "TIMESTAMP_OUTSIDE_TSA_VALIDITY": CitizenText(
        "Dấu thời gian ghi một thời điểm ngoài thời hạn chứng thư của chính đơn vị cấp.",
        _WHY_TIME,
    ),
    "TIMESTAMP_WEAK_ALGORITHM": CitizenText(
        "Dấu thời gian dùng thuật toán yếu nên không được dùng làm bằng chứng.", _WHY_TIME
    ),
    # algorithms
    "ALGORITHMS_OK": CitizenText("Thuật toán và độ dài khóa đáp ứng quy định."),
    "WEAK_DIGEST": CitizenText("Chữ ký dùng hàm băm yếu (MD5, SHA-1).", _WHY_ALGORITHM),
    "KEY_TOO_SHORT": CitizenText("Khóa của người ký ngắn hơn mức quy định.", _WHY_ALGORITHM),
    "ALGORITHM_NOT_ALLOWED": CitizenText(
        "Chữ ký dùng thuật toán không thuộc danh mục được phép.", _WHY_ALGORITHM
    ),
    # document-level problems
    "UNPARSABLE_SIGNED_PDF": CitizenText(
        "Tệp có chữ ký nhưng bị hỏng, không đọc được.", _WHY_HOSTILE
    ),
    "UNREACHABLE_SIGNATURE": CitizenText(
        "Tệp chứa một chữ ký không gắn với chỗ ký nào trong tài liệu (dấu hiệu giả mạo).",
        _WHY_FORGED,
    ),
    "INCOMPLETE_REVISION": CitizenText(
        "Tệp bị cắt cụt: phần cuối của tệp bị thiếu.",
        "Phần bị thiếu có thể chứa chữ ký hoặc thay đổi; hãy xin lại bản đầy đủ.",
    ),
    "FILE_TOO_LARGE": CitizenText("Tệp lớn hơn mức tối đa được kiểm tra.", _WHY_HOSTILE),
    "NOT_PDF": CitizenText("Tệp không phải tài liệu PDF.", _WHY_HOSTILE),
    "MALFORMED_PDF": CitizenText("Tệp PDF bị hỏng, không đọc được.", _WHY_HOSTILE),
    "MALFORMED_XREF": CitizenText("Cấu trúc bên trong tệp PDF bất thường.", _WHY_HOSTILE),
    "DECOMPRESSION_LIMIT": CitizenText(
        "Tệp chứa dữ liệu nén bất thường (dấu hiệu tệp được tạo ra để tấn công).", _WHY_HOSTILE
    ),
    "TOO_MANY_OBJECTS": CitizenText("Tệp có cấu trúc quá lớn so với giới hạn.", _WHY_HOSTILE),
    "TOO_MANY_REVISIONS": CitizenText("Tệp bị sửa quá nhiều lần so với giới hạn.", _WHY_HOSTILE),
    "TOO_MANY_SIGNATURES": CitizenText("Tệp có quá nhiều chữ ký so với giới hạn.", _WHY_HOSTILE),
    "TOO_MANY_FIELDS": CitizenText("Tệp có quá nhiều ô biểu mẫu hoặc ô bất thường.", _WHY_HOSTILE),
    "NESTING_TOO_DEEP": CitizenText(
        "Cấu trúc tệp lồng nhau quá sâu (dấu hiệu tệp được tạo ra để tấn công).", _WHY_HOSTILE
    ),
    "MEMORY_LIMIT": CitizenText("Kiểm tra tệp cần quá nhiều bộ nhớ.", _WHY_HOSTILE),
    "TIME_BUDGET_EXCEEDED": CitizenText("Kiểm tra tệp mất quá nhiều thời gian.", _WHY_HOSTILE),
    # notes
    "VALIDATED_AT_PROVEN_TIME": CitizenText(
        "Chứng thư số được kiểm tra tại thời điểm ký đã được dấu thời gian chứng minh.",
        "Chữ ký vẫn có giá trị dù sau đó chứng thư hết hạn hoặc bị thu hồi, vì đã chứng minh "
        "được tài liệu được ký khi chứng thư còn hiệu lực.",
    ),
    "REVOKED_AFTER_PROVEN_TIME": CitizenText(
        "Chứng thư số bị thu hồi sau thời điểm ký đã được chứng minh; chữ ký vẫn có giá trị.",
        "Chữ ký tạo trước khi thu hồi vẫn có giá trị; chữ ký mới bằng chứng thư này thì không.",
    ),
    # document warnings
    "ANNOTATION_ADDED_AFTER_SIGNING": CitizenText(
        "Có chú thích được thêm vào sau khi ký.", _WHY_ANNOTATION
    ),
    "ANNOTATION_CHANGED_AFTER_SIGNING": CitizenText(
        "Có chú thích bị sửa sau khi ký.", _WHY_ANNOTATION
    ),
    "ANNOTATION_REMOVED_AFTER_SIGNING": CitizenText(
        "Có chú thích bị xóa sau khi ký; tài liệu hiện ra khác với lúc ký.", _WHY_ANNOTATION
    ),
    "UNSIGNED_FIELD_ADDED_AFTER_SIGNING": CitizenText(
        "Có một ô chữ ký được thêm vào sau khi ký nhưng chưa ai ký.",
        "Hình trong ô đó do người thêm tự vẽ, không phải chữ ký số, và có thể che nội dung đã "
        "ký; đừng coi đó là chữ ký.",
    ),
    "TIMESTAMP_APPEARANCE_ADDED": CitizenText(
        "Có một dấu thời gian được thêm vào sau khi ký, kèm hình hiển thị trên trang.",
        "Dấu thời gian chỉ chứng minh thời điểm, không xác nhận người ký; hình của nó do người "
        "thêm tự vẽ và có thể che nội dung đã ký; đừng coi đó là chữ ký.",
    ),
    "ANNOTATIONS_UNREADABLE": CitizenText(
        "Có chú thích thêm sau khi ký không đọc được, nên cảnh báo về chú thích có thể chưa đủ.",
        "Chú thích có thể che nội dung đã ký; một chú thích có giá trị bất thường thường là dấu "
        "hiệu tệp được sửa có chủ đích. Hãy xem kỹ toàn bộ tài liệu hoặc xin lại bản gốc.",
    ),
    "ANNOTATIONS_NOT_REVIEWED": CitizenText(
        "Tài liệu rất nhiều trang: chú thích thêm sau khi ký chỉ được rà soát ở các trang đầu.",
        "Các trang sau có thể có chú thích che nội dung mà trang này không cảnh báo; hãy xem "
        "kỹ toàn bộ tài liệu.",
    ),
    "ANNOTATION_OVER_SIGNATURE": CitizenText(
        "Có chú thích được thêm sau khi ký nằm đè lên hình chữ ký.",
        "Hình bạn thấy ở chỗ chữ ký có thể không phải hình người ký đã đặt; hãy dựa vào kết quả "
        "kiểm tra này, không dựa vào hình.",
    ),
    "XREF_DAMAGED_IN_SIGNED_REVISION": CitizenText(
        "Tệp có lỗi cấu trúc ngay trong phần đã ký (do phần mềm tạo tệp).",
        "Một số phần mềm đọc PDF có thể hiển thị tài liệu khác với nội dung đã ký; hãy dựa "
        "vào kết quả kiểm tra này và đối chiếu với bản gốc nếu nghi ngờ.",
    ),
    "BYTES_BEFORE_HEADER": CitizenText(
        "Có dữ liệu lạ đứng trước phần đầu của tệp PDF mà không chữ ký nào bao phủ.",
        "Một số phần mềm có thể hiển thị dữ liệu này thay cho nội dung đã ký.",
    ),
    "SIGNED_AFTER_VALIDATION_TIME": CitizenText(
        "Thời điểm kiểm tra được yêu cầu sớm hơn thời điểm ký: lúc đó chữ ký chưa tồn tại."
    ),
    "CLAIMED_SIGNED_AFTER_VALIDATION_TIME": CitizenText(
        "Thời điểm kiểm tra được yêu cầu sớm hơn thời điểm ký do người ký tự ghi: theo đó, lúc "
        "ấy chữ ký chưa tồn tại.",
        "Kết quả tại thời điểm đó không nói được gì về chữ ký này.",
    ),
    "ACTIVE_CONTENT_PRESENT": CitizenText(
        "Tài liệu có chứa mã chạy tự động hoặc tệp đính kèm nhúng.",
        "Khi mở bằng phần mềm đọc PDF, tài liệu có thể chạy mã hoặc mở tệp khác. Chữ ký số "
        "không bảo đảm các nội dung này an toàn; không mở tệp đính kèm hay cho phép chạy mã "
        "nếu không chắc chắn.",
    ),
    "ACTIVE_CONTENT_NOT_CHECKED": CitizenText(
        "Không kiểm tra được hết tệp để tìm mã chạy tự động hoặc tệp đính kèm nhúng.",
        "Tệp có thể chứa các nội dung này; không nên cho phép chạy mã hay mở tệp đính kèm.",
    ),
    "CLAIMED_TIME_ZONE_UNKNOWN": CitizenText(
        "Thời điểm ký do người ký tự ghi không có múi giờ.",
        "Thời điểm hiển thị coi đó là giờ UTC; nếu phần mềm ký đã ghi giờ Việt Nam, thời điểm "
        "thực có thể sớm hơn 7 giờ. Chữ ký không có dấu thời gian để xác định chính xác.",
    ),
    "EXISTENCE_ASSUMED_AT_VALIDATION_TIME": CitizenText(
        "Kết quả kiểm tra tại thời điểm được yêu cầu giả định chữ ký đã có vào lúc đó.",
        "Chữ ký không có dấu thời gian chứng minh điều này.",
    ),
    "REVOCATION_NOT_REFRESHED": CitizenText(
        "Chưa tra cứu được tình trạng thu hồi mới nhất của chứng thư số người ký.",
        "Kết luận dựa trên dữ liệu lưu trong tài liệu; nếu chứng thư bị thu hồi sau đó, kết quả "
        "này chưa thể hiện. Hãy kiểm tra lại sau.",
    ),
    "SIGNING_CERTIFICATE_SHA1": CitizenText(
        "Chữ ký gắn với chứng thư số của người ký bằng thuật toán cũ (SHA-1).",
        "SHA-1 không còn đủ an toàn: về lý thuyết có thể gắn chữ ký này với một chứng thư khác.",
    ),
    "CLAIMED_SIGNING_TIME_BEFORE_CERTIFICATE": CitizenText(
        "Thời điểm ký người ký tự ghi sớm hơn ngày chứng thư số của họ có hiệu lực.",
        "Thời điểm tự ghi đó không thể đúng: đừng dựa vào nó để biết văn bản được ký khi nào.",
    ),
    "TIMESTAMP_BEFORE_CLAIMED_SIGNING_TIME": CitizenText(
        "Dấu thời gian sớm hơn thời điểm ký do người ký tự ghi.",
        "Đồng hồ của máy ký có thể sai; thời điểm ký được tính theo dấu thời gian.",
    ),
    "CERTIFICATE_EXPIRED_SINCE": CitizenText(
        "Chứng thư số của người ký đã hết hạn sau khi ký.",
        "Không sao: chữ ký được kiểm tra tại thời điểm ký đã được chứng minh; nhưng chứng thư "
        "này không còn dùng để ký văn bản mới được.",
    ),
    # what the page adds
    "DEVELOPMENT_CERTIFICATE": CitizenText(
        "Chữ ký dùng chứng thư số của môi trường thử nghiệm.",
        "Chứng thư thử nghiệm chỉ dùng để thử phần mềm, không có giá trị pháp lý.",
    ),
    "UNSIGNED_FIELDS": CitizenText(
        "Tài liệu có ô chữ ký chưa ai ký.",
        "Ô chưa ký không phải là lỗi, nhưng có thể văn bản còn chờ người khác ký.",
    ),
}

# Codes of checks that passed but that a citizen must still read.
_NOTABLE_WHEN_PASSED = frozenset({"ALLOWED_ANNOTATIONS", "REVOKED_AFTER_SIGNING"})
# Informational notes that are good news: shown with what was checked, not as warnings.
_GOOD_NOTES = frozenset({"VALIDATED_AT_PROVEN_TIME"})

_GENERIC_WHY = (
    "Kết quả kiểm tra này ảnh hưởng đến việc tài liệu có đáng tin hay không; chi tiết kỹ thuật ở "
    "phần bên dưới."
)


def citizen_text(code: str, fallback: str = "") -> CitizenText:
    """The plain-Vietnamese :class:`CitizenText` of a report code; an unknown code keeps the
    report's own ``fallback`` message with a generic "why" (never an error: a newer verifier
    may emit a code this page does not know yet)."""
    found = CITIZEN_TEXTS.get(code)
    if found is not None:
        return found
    return CitizenText(fallback or "Có một kết quả kiểm tra cần chú ý.", _GENERIC_WHY)


def format_time(value: str | None) -> str | None:
    """An ISO 8601 time as a person in Vietnam reads it: ``10:00:05 ngày 15/03/2025 (giờ Việt
    Nam)``; ``None`` stays ``None``; a value that is not ISO 8601 is returned unchanged."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return value
    if moment.tzinfo is not None:
        moment = moment.astimezone(VIETNAM_TZ)
    return moment.strftime("%H:%M:%S ngày %d/%m/%Y") + " (giờ Việt Nam)"


def format_date(value: str | None) -> str | None:
    """An ISO 8601 time as a Vietnam date ``dd/mm/yyyy``; ``None`` stays ``None``, an
    unreadable value is shown as it is."""
    return (vietnam_date(value) or value) if value else None


_DN_NAME = re.compile(r"(?:^|;\s*)Tên:\s*([^;]+)")
_DN_ORG = re.compile(r"(?:^|;\s*)Tổ chức:\s*([^;]+)")


def _dn_name(dn: str | None) -> str | None:
    """The ``Tên`` (CN) of a name rendered with Vietnamese labels, else its ``Tổ chức``, else
    the whole rendering."""
    if not dn:
        return None
    for pattern in (_DN_NAME, _DN_ORG):
        found = pattern.search(dn)
        if found:
            return found.group(1).strip()
    return dn


@dataclass
class WarningView:
    """A finding in plain words: ``text``, ``why`` (why this matters), the report ``code``;
    ``page`` (1-based) when it concerns a place on a page."""

    code: str
    text: str
    why: str
    page: int | None = None


@dataclass
class CheckView:
    """One check: ``label`` (what was checked), ``status`` (PASSED / FAILED / INDETERMINATE /
    NOT_APPLICABLE) with ``status_label``, ``text`` (what was found) and the ``code``."""

    name: str
    label: str
    status: str
    status_label: str
    text: str
    code: str


@dataclass
class SignatureView:
    """One signature or timestamp as a citizen reads it.

    ``kind``: ``person`` | ``seal`` | ``timestamp`` | ``unknown`` with ``kind_label``;
    ``state``: ``valid`` | ``invalid`` | ``indeterminate`` with ``state_label`` and ``icon``;
    ``signed_at`` in Vietnam time and ``time_proof`` (what proves it); ``issuer`` and the
    certificate's validity (``valid_from`` / ``valid_to``, dd/mm/yyyy); ``checks``;
    ``warnings``; ``technical`` (codes, chain, revocation data, timestamps, algorithms)."""

    field: str
    kind: str
    kind_label: str
    state: str
    state_label: str
    icon: str
    summary: str
    name: str | None
    title: str | None
    organisation: str | None
    unit: str | None
    certification: bool
    signed_at: str | None
    signed_at_iso: str | None
    time_proof: str
    time_proven: bool
    issuer: str | None
    certificate_type: str | None
    valid_from: str | None
    valid_to: str | None
    checks: list[CheckView] = dc_field(default_factory=list)
    good_notes: list[WarningView] = dc_field(default_factory=list)
    warnings: list[WarningView] = dc_field(default_factory=list)
    technical: dict[str, Any] = dc_field(default_factory=dict)


@dataclass
class RegistryView:
    """The registry section in plain words.

    ``found`` false: ``text`` says the file was not issued through this service and ``why``
    that this is not an error but what it means. Found: ``status`` (``in_force`` | ``revoked``
    | ``superseded``) with ``status_label``, ``text``, the public metadata (agency, kind, codes,
    dates in Vietnam time) and links (``link``, ``superseded_by_link``,
    ``signed_further_by_link``)."""

    found: bool
    text: str
    why: str = ""
    status: str | None = None
    status_label: str | None = None
    state: str | None = None  # valid (in force) | invalid (revoked, superseded)
    public_id: str | None = None
    link: str | None = None
    agency_name: str | None = None
    agency_code: str | None = None
    kind_label: str | None = None
    dossier_code: str | None = None
    result_code: str | None = None
    document_number: str | None = None
    issued_at: str | None = None
    status_changed_at: str | None = None
    reason: str | None = None
    superseded_by_link: str | None = None
    superseded_by_id: str | None = None
    # The replacement's own status when it is no longer in force ("đã bị thu hồi").
    superseded_by_status_label: str | None = None
    signed_further_by_link: str | None = None
    signed_further_by_id: str | None = None
    # "file": this very file is registered; "revision": a signed revision inside it is (content
    # was appended after the agency issued it); ``matched_text`` says so in words.
    matched: str | None = None
    matched_text: str | None = None
    # The record alone (the QR link's page, no file compared yet): what the registry says,
    # without claiming anything about a file.
    record_text: str | None = None
    # An earlier version of the document (registry ``newer_version``, issue 12 versions): the
    # file's version and the sentence saying a newer one exists (new user 12 item 8).
    version: int | None = None
    newer_version_text: str | None = None


@dataclass(frozen=True)
class Comparison:
    """The uploaded file against the registry record a QR link named: ``matches`` and a
    sentence saying so."""

    matches: bool
    text: str


def compare(expected_public_id: str, registry: RegistryView | None) -> Comparison:
    """Whether the verified file is the registered document ``expected_public_id`` (the whole
    file, not only a revision inside it)."""
    if registry is not None and registry.found and registry.public_id == expected_public_id:
        if registry.matched == "revision":
            return Comparison(
                False,
                "Tệp bạn tải lên chứa văn bản của mã QR này nhưng đã được thêm nội dung sau khi "
                "cấp.",
            )
        return Comparison(True, "Tệp bạn tải lên đúng là văn bản mà mã QR này chỉ tới.")
    return Comparison(
        False,
        "Tệp bạn tải lên KHÔNG phải văn bản mà mã QR này chỉ tới: hãy đối chiếu lại với cơ quan "
        "ban hành.",
    )


@dataclass
class ResultView:
    """The verification result as the page (and the PDF report) shows it.

    ``lead``: one sentence answering the citizen's question; ``state`` (``valid`` |
    ``invalid`` | ``indeterminate``) with ``state_label`` and ``icon``, from the signatures
    and the registry together (a validly signed document its agency revoked or replaced is
    ``invalid``: it is no longer in force); ``signatures_state``: the signatures alone;
    ``signatures``; document-level ``warnings`` and ``problems``; ``registry`` (``None`` when
    the report has no registry section); ``document`` (SHA-256 and size in bytes);
    ``comparison`` (only with ``expected_public_id``: the file against the record a QR link
    named); ``validated_at`` in Vietnam time; ``technical`` (verdict, sub-indication, the report's
    own message)."""

    state: str
    state_label: str
    icon: str
    lead: str
    signatures_state: str
    signatures: list[SignatureView]
    warnings: list[WarningView]
    problems: list[WarningView]
    registry: RegistryView | None
    comparison: Comparison | None
    document: dict[str, Any]
    validated_at: str | None
    validated_at_iso: str | None
    signature_count: int
    timestamp_count: int
    technical: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The view as plain JSON-ready data (dataclasses to dicts, lists kept in order)."""
        return asdict(self)


_INDICATION_STATE = {
    "TOTAL_PASSED": "valid",
    "TOTAL_FAILED": "invalid",
    "INDETERMINATE": "indeterminate",
}


def _signature_kind(sig: dict[str, Any]) -> str:
    if sig.get("type") == "document_timestamp":
        return "timestamp"
    profile = (sig.get("signer") or {}).get("profile")
    return {"personal": "person", "organization": "seal"}.get(str(profile), "unknown")


def _time_proof(sig: dict[str, Any]) -> tuple[str, bool]:
    """What proves the signing time, in words, and whether it is proven."""
    source = sig.get("signing_time_source")
    proof = sig.get("best_signature_time_proof")
    authority = next(
        (
            t.get("authority")
            for t in sig.get("timestamps") or []
            if t.get("status") == "PASSED" and t.get("authority")
        ),
        None,
    )
    by = f" do {_dn_name(authority)} cấp" if authority else ""
    if sig.get("type") == "document_timestamp":
        if sig.get("indication") == "TOTAL_PASSED":
            issuer = _dn_name(authority) or "đơn vị cấp dấu thời gian"
            return f"Thời điểm do {issuer} ghi và ký trong dấu thời gian.", True
        return "Dấu thời gian này chưa được xác nhận.", False
    if source == "timestamp" or proof == "signature_timestamp":
        return f"Được chứng minh bằng dấu thời gian{by}.", True
    if proof == "document_timestamp":
        return (
            f"Được chứng minh bằng dấu thời gian tài liệu{by} (tài liệu đã tồn tại vào lúc đó).",
            True,
        )
    if source == "timestamp_unverified":
        return (
            "Thời điểm ghi trong dấu thời gian, nhưng dấu thời gian chưa được xác nhận.",
            False,
        )
    return (
        "Do máy tính của người ký tự ghi; không có dấu thời gian chứng minh.",
        False,
    )


def _warning(code: str, fallback: str = "", page: int | None = None) -> WarningView:
    found = citizen_text(code, fallback)
    return WarningView(code, found.text, found.why or _GENERIC_WHY, page)


def _signature_view(sig: dict[str, Any], doc_warnings: list[dict[str, Any]]) -> SignatureView:
    kind = _signature_kind(sig)
    state = _INDICATION_STATE.get(str(sig.get("indication")), "indeterminate")
    signer = sig.get("signer") or {}
    checks: list[CheckView] = []
    warnings: list[WarningView] = []
    raw_checks: dict[str, Any] = sig.get("checks") or {}
    labels = TIMESTAMP_CHECK_LABELS if kind == "timestamp" else CHECK_LABELS
    development = sig.get("category") == "development"
    integrity_failed = (raw_checks.get("integrity") or {}).get("status") == "FAILED"
    for name, check in raw_checks.items():
        code = str(check.get("code"))
        status = str(check.get("status"))
        text = citizen_text(code, str(check.get("message") or ""))
        shown_status, status_label, shown_text = (
            status,
            CHECK_STATUS_LABELS.get(status, status),
            text.text,
        )
        if name == "modifications" and integrity_failed and status == "PASSED":
            # The modification analysis reads the updates appended after signing; the signed
            # content itself changed (integrity), so "nothing changed" would contradict it.
            shown_status, status_label = "NOT_APPLICABLE", "Không đánh giá"
            shown_text = (
                "Nội dung đã ký đã bị thay đổi (dòng trên), nên việc xét các phần thêm vào "
                "sau khi ký không còn ý nghĩa."
            )
        elif (
            kind == "timestamp"
            and name == "timestamp"
            and code == (raw_checks.get("integrity") or {}).get("code")
        ):
            continue  # the same finding as the integrity line just above: said once
        elif kind == "timestamp" and name == "timestamp" and status == "PASSED":
            shown_text = "Dấu thời gian đúng chuẩn và khớp với tài liệu."
        elif name == "trust" and development and status == "PASSED":
            # A test certificate chains to the dev PKI's root: technically trusted here,
            # legally worthless; "passed" alone next to "no legal value" was contradictory.
            status_label = "Đạt (môi trường thử nghiệm)"
            shown_text = (
                "Chứng thư số của môi trường thử nghiệm: chỉ để thử phần mềm, không có giá trị "
                "pháp lý."
            )
        checks.append(
            CheckView(
                name,
                labels.get(name, name),
                shown_status,
                status_label,
                shown_text,
                code,
            )
        )
        if integrity_failed and name != "integrity" and status == "INDETERMINATE":
            # A consequence of the failed integrity (an altered timestamp cannot be traced
            # to its issuer): the line above says it; a second warning would only repeat it.
            pass
        elif status != "PASSED" or code in _NOTABLE_WHEN_PASSED:
            # NOT_APPLICABLE is the timestamp check of a signature without one: its time is
            # the signer's claim, which a citizen must be told.
            warnings.append(_warning(code, str(check.get("message") or "")))
    good_notes: list[WarningView] = []
    for note in sig.get("notes") or []:
        view = _warning(str(note.get("code")), str(note.get("message") or ""), note.get("page"))
        (good_notes if view.code in _GOOD_NOTES else warnings).append(view)
    for note in doc_warnings:
        if note.get("signature") == sig.get("field"):
            warnings.append(
                _warning(str(note.get("code")), str(note.get("message") or ""), note.get("page"))
            )
    if sig.get("category") == "development":
        warnings.append(_warning("DEVELOPMENT_CERTIFICATE"))
    # One line per finding: a code the checks and the notes both carry is said once.
    unique: list[WarningView] = []
    for warning in warnings:
        if all(w.code != warning.code for w in unique):
            unique.append(warning)
    time_proof, proven = _time_proof(sig)
    signed_at_iso = sig.get("best_signature_time") if proven else None
    signed_at_iso = signed_at_iso or sig.get("signing_time") or sig.get("timestamp_time")
    what = "dấu thời gian" if kind == "timestamp" else "chữ ký số"
    summary = {
        "valid": f"{what.capitalize()} hợp lệ.",
        "invalid": f"{what.capitalize()} không hợp lệ.",
        "indeterminate": f"Chưa đủ căn cứ để kết luận {what} hợp lệ.",
    }[state]
    deciding = _deciding_check(sig)
    if deciding is not None and state != "valid":
        reason = citizen_text(deciding[0], deciding[1]).text
        # "Dấu thời gian không hợp lệ. Dấu thời gian không hợp lệ (…)": the reason alone.
        summary = reason if reason.startswith(summary.rstrip(".")) else f"{summary} {reason}"
    timestamps_authority = next(
        (_dn_name(t.get("authority")) for t in sig.get("timestamps") or [] if t.get("authority")),
        None,
    )
    return SignatureView(
        field=str(sig.get("field") or ""),
        kind=kind,
        kind_label=KIND_LABELS[kind],
        state=state,
        state_label=STATE_LABELS[state],
        icon=STATE_ICONS[state],
        summary=summary,
        name=(signer.get("common_name") or timestamps_authority)
        if kind == "timestamp"
        else signer.get("common_name"),
        title=signer.get("title"),
        organisation=signer.get("organization"),
        unit=signer.get("organizational_unit"),
        certification=sig.get("type") == "certification",
        signed_at=format_time(signed_at_iso),
        signed_at_iso=signed_at_iso,
        time_proof=time_proof,
        time_proven=proven,
        issuer=_dn_name(signer.get("issuer")),
        # The trust list's category of the issuing hierarchy; nothing when the chain reached no
        # anchor (the certificate's own type there read as a category: new user 20 #10).
        certificate_type=sig.get("category_label") or None,
        valid_from=format_date(signer.get("valid_from")),
        valid_to=format_date(signer.get("valid_to")),
        checks=checks,
        good_notes=good_notes,
        warnings=unique,
        technical={
            "field": sig.get("field"),
            "type": sig.get("type"),
            "level": sig.get("level"),
            "indication": sig.get("indication"),
            "sub_indication": sig.get("sub_indication"),
            "summary": sig.get("summary"),
            "subject": signer.get("subject"),
            "issuer": signer.get("issuer"),
            "serial_number": signer.get("serial_number"),
            "certificate_sha256": signer.get("certificate_sha256"),
            "trust_anchor": sig.get("trust_anchor"),
            "md_algorithm": sig.get("md_algorithm"),
            "signature_algorithm": sig.get("signature_algorithm"),
            "coverage": sig.get("coverage"),
            "coverage_text": COVERAGE_TEXTS.get(str(sig.get("coverage"))),
            "indication_text": INDICATION_TEXTS.get(str(sig.get("indication"))),
            "validation_time": sig.get("validation_time"),
            "validation_time_text": format_time(sig.get("validation_time")),
            "anchor_label": _anchor_label(sig.get("trust_anchor")),
            "chain": [
                {
                    **c,
                    "valid_from_text": format_date(c.get("valid_from")),
                    "valid_to_text": format_date(c.get("valid_to")),
                }
                for c in sig.get("chain") or []
                if isinstance(c, dict)
            ],
            "revocation_data": [
                {
                    **r,
                    "status_text": REVOCATION_STATUS_TEXTS.get(str(r.get("status")), "không rõ"),
                    "issued_at_text": format_time(r.get("issued_at")),
                    "revoked_at_text": format_time(r.get("revoked_at")),
                }
                for r in sig.get("revocation_data") or []
                if isinstance(r, dict)
            ],
            "timestamps": [
                {
                    **t,
                    "type_text": TIMESTAMP_TYPE_TEXTS.get(str(t.get("type")), "Dấu thời gian"),
                    "time_text": format_time(t.get("time")),
                    "code_text": TIMESTAMP_CODE_TEXTS.get(str(t.get("code"))),
                }
                for t in sig.get("timestamps") or []
                if isinstance(t, dict)
            ],
            "checks": {
                name: {
                    "label": labels.get(name, name),
                    "status": c.get("status"),
                    "status_label": CHECK_STATUS_LABELS.get(str(c.get("status")), c.get("status")),
                    "code": c.get("code"),
                    "message": c.get("message"),
                }
                for name, c in raw_checks.items()
            },
        },
    )


def _anchor_label(anchor: Any) -> str | None:
    """The trust anchor's name with its kind in words, the kind said once ("Dev Root CA (chỉ
    dùng thử nghiệm)" already says it: no second "(thử nghiệm)")."""
    if not isinstance(anchor, dict) or not anchor.get("name"):
        return None
    name = str(anchor["name"])
    kind = anchor.get("kind_label")
    if not kind or str(kind).lower() in name.lower():
        return name
    return f"{name} ({kind})"


_CHECK_ORDER = ("integrity", "modifications", "trust", "revocation", "timestamp", "algorithms")


def _deciding_check(sig: dict[str, Any]) -> tuple[str, str] | None:
    """The code and message of the check that decided a signature that did not pass (the
    report's own rule: the first FAILED, else the first INDETERMINATE, in check order)."""
    checks = sig.get("checks") or {}
    for wanted in ("FAILED", "INDETERMINATE"):
        for name in _CHECK_ORDER:
            check = checks.get(name)
            if check is not None and check.get("status") == wanted:
                return str(check.get("code")), str(check.get("message") or "")
    return None


def present_registry(section: dict[str, Any] | None) -> RegistryView | None:
    """The registry section (``RegistryRecord.to_public_dict()`` or ``{"found": false}``) in
    plain words; ``None`` for no section."""
    if not isinstance(section, dict):
        return None
    recognised = section.get("service_report")
    if not section.get("found") and isinstance(recognised, dict):
        # The service's own sealed verification report (reporting/recognise.py, F13).
        seal = f" ({recognised['seal']})" if recognised.get("seal") else ""
        return RegistryView(
            found=False,
            text=(
                f"Đây là báo cáo kết quả xác minh do {recognised.get('system')} lập và đóng "
                f"con dấu số của dịch vụ{seal}."
            ),
            why=(
                "Báo cáo không phải văn bản của cơ quan ban hành nên không có trong sổ đăng ký. "
                "Con dấu số hợp lệ cho biết nội dung báo cáo không bị sửa đổi sau khi dịch vụ "
                "lập; kết quả ghi trong báo cáo là của tệp có mã băm SHA-256 ghi trong đó, tại "
                "thời điểm xác minh ghi trong đó."
            ),
        )
    if not section.get("found"):
        return RegistryView(
            found=False,
            text="Văn bản này không được cấp qua dịch vụ này.",
            why=(
                "Đó không phải là lỗi: nhiều cơ quan ký văn bản bằng hệ thống khác. Nhưng trang "
                "này không xác nhận được đây đúng là bản cơ quan đã ban hành và còn hiệu lực; "
                "nếu cần chắc chắn, hãy hỏi cơ quan ban hành."
            ),
        )
    status = str(section.get("status") or "in_force")
    agency = section.get("agency") or {}
    agency_name = agency.get("name") or agency.get("code") or "cơ quan ban hành"
    issued = format_date(section.get("issued_at"))
    changed = format_date(section.get("status_changed_at"))
    superseded = section.get("superseded_by") or {}
    further = section.get("signed_further_by") or {}
    if status == "revoked":
        text = f"{agency_name} đã thu hồi văn bản này" + (f" ngày {changed}" if changed else "")
        text += ": văn bản không còn hiệu lực."
        why = (
            "Chữ ký số vẫn có thể hợp lệ, nhưng văn bản đã bị cơ quan ban hành hủy bỏ; đừng dùng "
            "nó để làm thủ tục."
        )
    elif status == "superseded" and superseded.get("status") in ("revoked", "superseded"):
        # The replacement is itself no longer in force: never "use the new one".
        text = "Văn bản này đã được thay thế bằng một văn bản khác" + (
            f" từ ngày {changed}" if changed else ""
        )
        text += (
            ", và văn bản thay thế đó "
            + ("cũng đã bị thu hồi" if superseded["status"] == "revoked" else "đã được thay thế")
            + ": hãy liên hệ cơ quan ban hành để biết văn bản nào đang có hiệu lực."
        )
        why = (
            "Văn bản cũ không còn hiệu lực, và văn bản thay thế nó cũng không còn hiệu lực; liên "
            "kết bên dưới cho biết tình trạng của văn bản thay thế."
        )
    elif status == "superseded":
        text = "Văn bản này đã được thay thế bằng một văn bản khác" + (
            f" từ ngày {changed}" if changed else ""
        )
        text += ": hãy dùng văn bản mới."
        why = (
            "Văn bản cũ không còn hiệu lực (thường vì đã được đính chính); thông tin của văn bản "
            "mới có ở liên kết bên dưới."
        )
    elif section.get("matched") == "revision":
        text = f"Tệp chứa văn bản {agency_name} đã cấp qua dịch vụ này" + (
            f" ngày {issued}" if issued else ""
        )
        text += " (đang có hiệu lực), nhưng đã được thêm nội dung sau khi cấp."
        why = "Chỉ phần văn bản đã cấp là của cơ quan ban hành; phần thêm vào thì không."
    else:
        text = f"Đây đúng là văn bản {agency_name} đã cấp qua dịch vụ này" + (
            f" ngày {issued}" if issued else ""
        )
        text += ", đang có hiệu lực."
        why = ""
    return RegistryView(
        found=True,
        text=text,
        why=why,
        status=status,
        status_label=REGISTRY_STATUS_LABELS.get(status, status),
        state="valid" if status == "in_force" else "invalid",
        public_id=section.get("public_id"),
        link=section.get("link"),
        agency_name=agency.get("name"),
        agency_code=agency.get("code"),
        kind_label=REGISTRY_KIND_LABELS.get(str(section.get("kind")), section.get("kind")),
        dossier_code=section.get("dossier_code"),
        result_code=section.get("result_code"),
        document_number=section.get("document_number"),
        issued_at=format_time(section.get("issued_at")),
        status_changed_at=format_time(section.get("status_changed_at")),
        # An agency's free text: bidirectional overrides and zero-width characters shown as
        # escapes, never interpreted (red team F11: "\u202eevil" displayed as "live").
        reason=display_text(str(section["reason"]), 2000) if section.get("reason") else None,
        superseded_by_link=superseded.get("link"),
        superseded_by_id=superseded.get("public_id"),
        superseded_by_status_label=(
            REGISTRY_STATUS_LABELS.get(str(superseded["status"]), str(superseded["status"]))
            if superseded.get("status") not in (None, "in_force")
            else None
        ),
        signed_further_by_link=further.get("link"),
        signed_further_by_id=further.get("public_id"),
        record_text=_record_text(status, agency_name, issued, changed),
        version=section.get("version") if isinstance(section.get("version"), int) else None,
        newer_version_text=(
            f"Tệp này là phiên bản {section.get('version') or 1} của văn bản. Đã có phiên bản "
            "mới hơn của cùng văn bản (cùng nội dung, bổ sung dữ liệu để kiểm tra lâu dài)."
            if section.get("newer_version")
            else None
        ),
        matched=section.get("matched"),
        matched_text=(
            "Tệp bạn có chứa văn bản này, nhưng đã được thêm nội dung sau khi cơ quan cấp: phần "
            "thêm vào không phải của cơ quan ban hành (xem kết quả \u201cThay đổi sau khi ký\u201d "
            "của từng chữ ký)."
            if section.get("matched") == "revision"
            else None
        ),
    )


def _record_text(status: str, agency: str, issued: str | None, changed: str | None) -> str:
    """What a registry record says, with no file compared (the QR link's page)."""
    text = f"Văn bản do {agency} cấp qua dịch vụ này" + (f" ngày {issued}" if issued else "")
    if status == "revoked":
        return text + ", đã bị thu hồi" + (f" ngày {changed}" if changed else "") + "."
    if status == "superseded":
        return (
            text
            + ", đã được thay thế bằng văn bản khác"
            + (f" từ ngày {changed}" if changed else "")
            + "."
        )
    return text + ", đang có hiệu lực."


def present(report: dict[str, Any], *, expected_public_id: str | None = None) -> ResultView:
    """The plain-Vietnamese view of a verification report (``docs/verification-report.md``
    shape, optionally with the top-level ``registry`` section).

    The overall state and the lead sentence: :func:`signing_service.services.conclusion.
    document_status` (the signatures, the registry and the QR comparison together; without
    ``expected_public_id`` the report's own ``expected_public_id`` key, kept by the page with
    a QR comparison's report, is compared). Never raises for a well-formed report; unknown
    codes keep the report's own message."""
    verdict = str(report.get("verdict") or "INDETERMINATE")
    doc_warnings = [w for w in report.get("warnings") or [] if isinstance(w, dict)]
    signatures = [
        _signature_view(s, doc_warnings)
        for s in report.get("signatures") or []
        if isinstance(s, dict)
    ]
    fields = {s.field for s in signatures}
    warnings = [
        _warning(str(w.get("code")), str(w.get("message") or ""), w.get("page"))
        for w in doc_warnings
        if w.get("signature") not in fields or not w.get("signature")
    ]
    if report.get("unsigned_fields"):
        warnings.append(_warning("UNSIGNED_FIELDS"))
    problems = [
        _warning(str(p.get("code")), str(p.get("message") or ""))
        for p in report.get("problems") or []
        if isinstance(p, dict)
    ]
    registry = present_registry(report.get("registry"))
    if registry is not None and not registry.found and verdict != "TOTAL_PASSED":
        # "Not an error: many agencies sign elsewhere" reassures about a validly signed file
        # only; on a forged, altered or unsigned one it read as comfort (new user 4).
        registry.text = "Không tìm thấy tệp này trong sổ đăng ký của dịch vụ."
        registry.why = {
            "TOTAL_FAILED": (
                "Tệp đã bị sửa hoặc chữ ký không hợp lệ thì không còn khớp với bản cơ quan đã "
                "cấp, dù trên tệp vẫn có tên cơ quan. Hãy xin lại bản gốc từ cơ quan ban hành."
            ),
            "NO_SIGNATURE": (
                "Văn bản cấp qua dịch vụ này luôn có chữ ký số; tệp không có chữ ký số thì không "
                "chứng minh được ai đã ban hành. Hãy xin bản có chữ ký số từ cơ quan ban hành."
            ),
        }.get(
            verdict,
            "Trang này chưa xác nhận được đây là bản cơ quan đã ban hành; nếu cần chắc chắn, hãy "
            "hỏi cơ quan ban hành.",
        )
    signature_count = sum(1 for s in signatures if s.kind != "timestamp")
    timestamp_count = len(signatures) - signature_count

    signatures_state = {
        "TOTAL_PASSED": "valid",
        "TOTAL_FAILED": "invalid",
    }.get(verdict, "indeterminate")
    # The document's one state and its sentence (signatures, registry and the QR comparison
    # together) come from services/conclusion.py: the same for the page, the API, the CLI and
    # the PDF report. The page keeps its own, more precise sentence for a failed or undecided
    # signature (which check decided).
    conclusion = document_status(report, expected_public_id)
    state = conclusion.state
    lead = conclusion.message
    if conclusion.code in (SIGNATURE_INVALID, SIGNATURE_INDETERMINATE):
        deciding = _document_deciding(report)
        reason = _continued(citizen_text(*deciding).text) if deciding else ""
        if conclusion.code == SIGNATURE_INVALID:
            lead = "Không được tin vào tài liệu này: " + (reason or "chữ ký số không hợp lệ.")
        else:
            lead = "Chưa đủ căn cứ để kết luận tài liệu hợp lệ: " + (
                reason or "một số kiểm tra chưa có kết quả."
            )
        section = report.get("registry")
        if isinstance(section, dict) and section.get("found") and section.get("newer_version"):
            # The newer version's sentence document_status added (new user 12 item 8).
            lead += newer_version_note(section)
    if (
        conclusion.code == IN_FORCE
        and registry is not None
        and registry.text.startswith("Đây đúng là văn bản")
        and "Đây đúng là văn bản" not in lead
    ):
        # The signature's certificate names another organisation than the issuing agency:
        # the lead says both; the registry card must not vouch for the agency's own
        # signature either (new user 12 item 2).
        registry.text = (
            f"Văn bản được {registry.agency_name or registry.agency_code} cấp qua dịch vụ này"
            + (f" ngày {registry.issued_at}" if registry.issued_at else "")
            + ", đang có hiệu lực; chữ ký số mang tên tổ chức khác (xem phần chữ ký)."
        )
    comparison = None
    if expected_public_id is None:
        kept = report.get("expected_public_id")
        expected_public_id = kept if isinstance(kept, str) and kept else None
    if expected_public_id is not None:
        comparison = compare(expected_public_id, registry)
    if conclusion.code == NOT_QR_DOCUMENT:
        # The uploaded file's own findings follow below, after the record the QR code names
        # (new user 3: the QR's record had vanished from the page).
        lead += (
            " Bên dưới là thông tin của văn bản mà mã QR chỉ tới, rồi kết quả kiểm tra tệp bạn "
            "tải lên."
        )
    elif state == "valid" and any(
        s.get("category") == "development" for s in report.get("signatures") or []
    ):
        # Said in the lead, not only in a warning further down: a green "Hợp lệ" on a test
        # certificate must not read as legally valid (new user 6).
        lead += " Lưu ý: chữ ký dùng chứng thư số thử nghiệm nên không có giá trị pháp lý."
    # Distinct findings: the test-certificate note of a seal and of its document timestamp
    # is one thing to look at, not two (new user 22 #8).
    notable = len(
        {(w.code, w.text, w.page) for w in warnings}
        | {(w.code, w.text, w.page) for s in signatures for w in s.warnings}
    )
    if state == "valid" and notable:
        lead += f" Có {notable} điều cần lưu ý bên dưới."
    return ResultView(
        state=state,
        state_label=STATE_LABELS[state],
        icon=STATE_ICONS[state],
        lead=lead,
        signatures_state=signatures_state,
        signatures=signatures,
        warnings=warnings,
        problems=problems,
        registry=registry,
        comparison=comparison,
        document=dict(report.get("document") or {}),
        validated_at=format_time(report.get("validated_at")),
        validated_at_iso=report.get("validated_at"),
        signature_count=signature_count,
        timestamp_count=timestamp_count,
        technical={
            "verdict": verdict,
            "verdict_text": INDICATION_TEXTS.get(verdict),
            "sub_indication": report.get("sub_indication"),
            "message": report.get("message"),
            "validation_time": report.get("validation_time"),
            "validation_time_text": format_time(report.get("validation_time")),
            "unsigned_fields": report.get("unsigned_fields") or [],
        },
    )


def _continued(sentence: str) -> str:
    """``sentence`` continued after a colon: its first letter lower-cased unless it starts an
    acronym or a name ("OCSP", "Sở …" stay)."""
    if len(sentence) > 1 and sentence[0].isupper() and sentence[1].islower():
        first = sentence.split(" ", 1)[0]
        if first in ("Nội", "Chữ", "Chứng", "Tài", "Tệp", "Dấu", "Thời", "Không", "Có", "Sau"):
            return sentence[0].lower() + sentence[1:]
    return sentence


def _clause(sentence: str) -> str:
    """``sentence`` continued after a comma: "Văn bản …" lower-cased, a proper noun (an
    agency's name) kept."""
    if sentence.startswith("Văn bản"):
        return "v" + sentence[1:]
    return sentence


def _document_deciding(report: dict[str, Any]) -> tuple[str, str] | None:
    """What decided a document that did not pass: the first failed document-level problem,
    else the deciding check of the first signature with the verdict's indication."""
    for problem in report.get("problems") or []:
        if isinstance(problem, dict) and problem.get("status") == "FAILED":
            return str(problem.get("code")), str(problem.get("message") or "")
    wanted = str(report.get("verdict"))
    for sig in report.get("signatures") or []:
        if isinstance(sig, dict) and sig.get("indication") == wanted:
            return _deciding_check(sig)
    return None
