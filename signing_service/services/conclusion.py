"""One answer to "is this the document in force?" for the page, the API, the CLI and the report.

A verification report (``docs/verification-report.md``) answers two questions separately: are
the signatures valid (``verdict``, the ETSI EN 319 102-1 indication of the signatures only),
and was the file issued through this service and is it still in force (``registry``, issue 11).
A citizen, and a portal showing a result to one, needs the two combined into one state.
:func:`document_status` is that combination, the only place it is made: the web page
(:func:`signing_service.web.present.present`), the sealed PDF report (which is built from the
same view), the JSON API and ``signing-service verify --json`` (the top-level ``status``
object, :func:`status_section`) all call it, so one file gets one state whichever way it is
uploaded.

The rules, in order (the first that applies decides):

1. A QR link's comparison (``expected_public_id``) with a file that is not the QR's document
   (not found in the registry, or another record): ``invalid`` ``NOT_QR_DOCUMENT``. The message
   says only that; it never describes the uploaded file as the QR's document (red team 11 F9,
   new user 11 item 3).
2. The registry says the document (or the latest version the service signed further from it,
   :mod:`signing_service.services.registry`) was revoked or superseded: ``invalid``
   ``REVOKED`` / ``SUPERSEDED``, whatever the signatures (validly signed, no longer in force).
   The same when the file is registered and in force but a registered document inside it
   (``registry.contains``: what another agency countersigned or sealed) was revoked or
   superseded by its issuer.
3. Signatures that failed: ``invalid`` ``SIGNATURE_INVALID``; not decided: ``indeterminate``
   ``SIGNATURE_INDETERMINATE``; no signature at all: ``indeterminate`` ``NO_SIGNATURE`` (an
   unsigned file cannot show who issued it). A failed file that is not registered is never
   reassured as "not an error" (new user 11 item 4).
4. Valid signatures and a registered *revision* inside the file (``registry.matched ==
   "revision"``: a comment, a citizen's own signature added after issue):
   ``indeterminate`` ``CONTENT_ADDED_AFTER_ISSUE``, on ``/`` and through the QR link alike (red
   team 11 F1): the issued document is inside and in force, but the file is not only that
   document, and what was added is not the agency's.
5. Valid signatures and the registered file itself, in force: ``valid`` ``IN_FORCE``; also
   a registered revision followed only by long-term validation data (``matched ==
   "validation_data"``: DSS and document timestamps, what extension and preservation add,
   ETSI EN 319 142-1 §5.4–5.5) when the last signature's modification analysis agrees, the
   message saying validation data was added (red team 12 F5).
6. Valid signatures, not issued through this service (or no registry section): ``valid``
   ``SIGNATURES_VALID``, or ``SIGNATURES_VALID_CONTENT_ADDED`` when content was added after
   the last signature (annotations, unsigned fields): then the message never says "không bị
   sửa đổi sau khi ký".

The page may show a longer explanation for the failure codes (which check decided); the state
and code are these.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any

from signing_service.timefmt import report_time, vietnam_date
from signing_service.verification.identity import same_organisation

VALID = "valid"
INVALID = "invalid"
INDETERMINATE = "indeterminate"
STATES = (VALID, INVALID, INDETERMINATE)

# The stable reason codes (README "Kết luận về văn bản"; docs/verification-report.md).
IN_FORCE = "IN_FORCE"
SIGNATURES_VALID = "SIGNATURES_VALID"
SIGNATURES_VALID_CONTENT_ADDED = "SIGNATURES_VALID_CONTENT_ADDED"
CONTENT_ADDED_AFTER_ISSUE = "CONTENT_ADDED_AFTER_ISSUE"
REVOKED = "REVOKED"
SUPERSEDED = "SUPERSEDED"
SIGNATURE_INVALID = "SIGNATURE_INVALID"
SIGNATURE_INDETERMINATE = "SIGNATURE_INDETERMINATE"
NO_SIGNATURE = "NO_SIGNATURE"
NOT_QR_DOCUMENT = "NOT_QR_DOCUMENT"
CODES = (
    IN_FORCE,
    SIGNATURES_VALID,
    SIGNATURES_VALID_CONTENT_ADDED,
    CONTENT_ADDED_AFTER_ISSUE,
    REVOKED,
    SUPERSEDED,
    SIGNATURE_INVALID,
    SIGNATURE_INDETERMINATE,
    NO_SIGNATURE,
    NOT_QR_DOCUMENT,
)

# The words for each state, the same on the page, in the PDF report and in the CLI's headline
# (new user 14 F10: the CLI said "HỢP LỆ" where the page said "Không hợp lệ").
STATE_LABELS = {
    VALID: "Hợp lệ",
    INVALID: "Không hợp lệ",
    INDETERMINATE: "Chưa xác định được",
}

# The codes by which the registry overrides signatures that all passed (rule 2 and rule 4):
# what people are told differs from ``verdict``.
REGISTRY_OVERRIDES = frozenset({REVOKED, SUPERSEDED, CONTENT_ADDED_AFTER_ISSUE})


def shown_outcome(report: dict[str, Any]) -> str:
    """The outcome a person was shown for a concluded ``report`` (:func:`conclude` run): its
    status code when the registry overrode a passing verdict (``REVOKED``, ``SUPERSEDED``,
    ``CONTENT_ADDED_AFTER_ISSUE``), else the ``verdict`` (``TOTAL_PASSED``, ``TOTAL_FAILED``,
    ``INDETERMINATE``, ``NO_SIGNATURE``). What the anonymous verification counters count
    (``signing-service verification stats``, new user 14 F10)."""
    status = report.get("status")
    code = status.get("code") if isinstance(status, dict) else None
    if report.get("verdict") == "TOTAL_PASSED" and code in REGISTRY_OVERRIDES:
        return str(code)
    return str(report.get("verdict"))


# The registry section's ``matched`` for an issued revision followed only by validation data
# and document timestamps (signing_service.services.registry.VALIDATION_DATA; not imported:
# this module stays free of the database layer).
VALIDATION_DATA = "validation_data"
# A signature's modification-analysis codes meaning "nothing but validation data after it".
_UNCHANGED = frozenset({"NO_CHANGES", "LTV_UPDATES_ONLY"})
# Document warnings meaning something visible was added or changed after signing.
_ADDED_WARNINGS = frozenset(
    {
        "ANNOTATION_ADDED_AFTER_SIGNING",
        "ANNOTATION_CHANGED_AFTER_SIGNING",
        "ANNOTATION_REMOVED_AFTER_SIGNING",
        "ANNOTATION_OVER_SIGNATURE",
        "UNSIGNED_FIELD_ADDED_AFTER_SIGNING",
        "TIMESTAMP_APPEARANCE_ADDED",
    }
)


# Said in the status message of a valid document whose file runs or opens something when
# viewed (the verifier's ACTIVE_CONTENT_PRESENT warning).
ACTIVE_CONTENT_NOTE = (
    "Lưu ý: tệp có chứa mã chạy tự động hoặc tệp đính kèm nhúng; chữ ký số không bảo đảm các "
    "nội dung này an toàn, không nên cho phép chạy mã hay mở tệp đính kèm."
)


# Said in the status message of a valid document whose signature timestamp was set aside (the
# verifier's SIGNATURE_TIMESTAMP_BROKEN warning).
BROKEN_TIMESTAMP_NOTE = (
    "Lưu ý: dấu thời gian đi kèm chữ ký bị hỏng hoặc không khớp nên không được dùng; thời điểm "
    "ký chỉ là thời điểm người ký tự khai."
)


def _has_warning(report: dict[str, Any], code: str) -> bool:
    return any(isinstance(w, dict) and w.get("code") == code for w in report.get("warnings") or [])


def _has_active_content(report: dict[str, Any]) -> bool:
    return any(
        isinstance(w, dict) and w.get("code") == "ACTIVE_CONTENT_PRESENT"
        for w in report.get("warnings") or []
    )


@dataclass(frozen=True)
class Conclusion:
    """The document's state: ``state`` (``valid`` | ``invalid`` | ``indeterminate``), a
    stable reason ``code`` (:data:`CODES`) and one Vietnamese ``message`` for people."""

    state: str
    code: str
    message: str

    def to_dict(self) -> dict[str, str]:
        """``{"state", "code", "message"}``: the report's top-level ``status`` object."""
        return asdict(self)


def content_added_after_signing(report: dict[str, Any]) -> bool:
    """Whether something other than validation data was added to the file after its last
    signature: a document warning about annotations or unsigned fields added after signing,
    or a last signature whose modification analysis is not ``NO_CHANGES`` /
    ``LTV_UPDATES_ONLY``. Earlier signatures followed by later ones are not counted: the later
    signature covers what was added before it."""
    for warning in report.get("warnings") or []:
        if isinstance(warning, dict) and warning.get("code") in _ADDED_WARNINGS:
            return True
    signatures = [
        s
        for s in report.get("signatures") or []
        if isinstance(s, dict) and s.get("type") != "document_timestamp"
    ]
    if not signatures:
        return False
    last = signatures[-1]
    check = (last.get("checks") or {}).get("modifications") or {}
    code = check.get("code")
    return code is not None and code not in _UNCHANGED


def _effective_match(report: dict[str, Any], registry: dict[str, Any] | None) -> str | None:
    """The registry section's ``matched``, except that ``validation_data`` (only document
    timestamps after the issued revision, :func:`signing_service.services.registry.
    only_timestamps_after`) counts as ``revision`` unless the verifier's modification analysis
    of the last signature says nothing but validation data came after it (red team 12 F5: the
    service's own extension is not "content added after issue"; an annotation slipped into
    the DSS revision still is)."""
    matched = registry.get("matched") if registry is not None else None
    if matched == VALIDATION_DATA and content_added_after_signing(report):
        return "revision"
    return matched if isinstance(matched, str) else None


def _agency(section: dict[str, Any]) -> str:
    agency = section.get("agency") or {}
    return str(agency.get("name") or agency.get("code") or "cơ quan ban hành")


def _signer_organisation(report: dict[str, Any]) -> str | None:
    """The organisation (O) named by the last signature's certificate (the one the registering
    agency made: earlier ones may be other agencies' the document was signed further from),
    or None when it names none."""
    signatures = [
        s
        for s in report.get("signatures") or []
        if isinstance(s, dict) and s.get("type") != "document_timestamp"
    ]
    if not signatures:
        return None
    signer = signatures[-1].get("signer") or {}
    organisation = signer.get("organization") if isinstance(signer, dict) else None
    return organisation if isinstance(organisation, str) and organisation.strip() else None


def _issued_by(report: dict[str, Any], registry: dict[str, Any], issued: str | None) -> str:
    """ "Đây đúng là văn bản <agency> đã cấp…" — unless the signature's certificate names
    another organisation: then both are said, and never that the agency's own seal signed it
    (new user 12 item 2: a commune's seal registered to a department)."""
    agency = _agency(registry)
    when = f" ngày {issued}" if issued else ""
    organisation = _signer_organisation(report)
    if organisation is None or same_organisation(organisation, agency):
        return f"Đây đúng là văn bản {agency} đã cấp qua dịch vụ này{when}, đang có hiệu lực."
    return (
        f"Văn bản được {agency} cấp qua dịch vụ này{when} và đang có hiệu lực, nhưng chứng thư "
        f"ký mang tên tổ chức khác: {organisation} (không phải {agency}). Hãy hỏi {agency} nếu "
        "cần chắc chắn."
    )


def newer_version_note(registry: dict[str, Any]) -> str:
    """The sentence saying a newer version of the same document exists (new user 12 item 8:
    an earlier version verified with no hint of the newer one), with the registry link."""
    link = registry.get("link")
    where = (
        f": {link}"
        if isinstance(link, str) and link
        else f" (mã tra cứu {registry.get('public_id')})"
    )
    return (
        " Đã có phiên bản mới hơn của văn bản này (cùng nội dung, bổ sung dữ liệu để kiểm tra "
        f"lâu dài); tệp này là phiên bản {registry.get('version') or 1}. Xem phiên bản mới "
        f"nhất{where}."
    )


def document_status(report: dict[str, Any], expected_public_id: str | None = None) -> Conclusion:
    """The one state of the verified document (the module's rules 1 to 6), plus, for an
    earlier version of a registered document (``registry.newer_version``), a sentence naming
    the newer version and its link; the state and code stay the rules' (new user 12 item 8).
    Parameters and errors as :func:`_document_status`."""
    as_of, later = _as_of_validation_time(report)
    conclusion = _document_status(as_of, expected_public_id)
    if later:
        conclusion = Conclusion(conclusion.state, conclusion.code, f"{conclusion.message} {later}")
    if conclusion.state == VALID and _has_warning(report, "SIGNATURE_TIMESTAMP_BROKEN"):
        # Judged as if unstamped: the time shown is the signer's own claim (new user 22 #5).
        conclusion = Conclusion(
            conclusion.state, conclusion.code, f"{conclusion.message} {BROKEN_TIMESTAMP_NOTE}"
        )
    if conclusion.state == VALID and _has_active_content(report):
        # The state stays the signatures' and the registry's; the one message a portal shows
        # must not read as a clean bill for a file that runs code (new user 20 #1).
        conclusion = Conclusion(
            conclusion.state,
            conclusion.code,
            f"{conclusion.message} {ACTIVE_CONTENT_NOTE}",
        )
    section = report.get("registry")
    if (
        isinstance(section, dict)
        and section.get("found")
        and section.get("newer_version")
        and conclusion.code != NOT_QR_DOCUMENT
    ):
        return Conclusion(
            conclusion.state, conclusion.code, conclusion.message + newer_version_note(section)
        )
    return conclusion


def _moment(value: object) -> datetime | None:
    """A report's time with its offset (timefmt.report_time); ``None`` without one."""
    moment = report_time(value)
    return moment if moment is not None and moment.tzinfo is not None else None


def _use_the_replacement(section: dict[str, Any]) -> str:
    """The end of a "superseded" sentence: use the replacement, unless it is itself no longer
    in force (revoked or superseded since: new user 22 #3 was sent to a revoked decision)."""
    newer = section.get("superseded_by")
    if isinstance(newer, dict) and newer.get("status") not in (None, "in_force"):
        return (
            ", và văn bản thay thế cũng không còn hiệu lực: hãy liên hệ cơ quan ban hành để biết "
            "văn bản đang có hiệu lực."
        )
    return ": hãy dùng văn bản mới."


def _as_of_validation_time(report: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """``report`` as the registry stood at its validation time, and a sentence on what changed
    since (empty when nothing did).

    A verification as of a past moment (``validation_time`` earlier than ``validated_at``,
    ``--at``, the API's ``validation_time``) asks "was it valid then?": a revocation or
    replacement made after that moment did not yet apply (new user 18 #2: asked about 02:14
    for a decision revoked at 02:15, the answer was REVOKED). The registry section itself keeps
    today's status; the message says what happened after."""
    section = report.get("registry")
    asked, now = _moment(report.get("validation_time")), _moment(report.get("validated_at"))
    if (
        not isinstance(section, dict)
        or asked is None
        or now is None
        or asked >= now - timedelta(seconds=1)
    ):
        return report, ""
    issued = _moment(section.get("issued_at"))
    if section.get("found") and issued is not None and issued > asked + timedelta(seconds=1):
        # Not yet in the registry at that moment (new user 20 #5b: "đang có hiệu lực" was said
        # of 05:00 for a decision issued at 05:50): read as not issued then, and said so.
        note = (
            f"Vào thời điểm được hỏi, văn bản chưa được phát hành: {_agency(section)} phát hành"
            f" văn bản ngày {vietnam_date(section.get('issued_at'))}."
        )
        return {**report, "registry": {"found": False}}, note
    notes: list[str] = []
    adjusted = dict(section)
    for key, holder in (("status", adjusted), ("contains", adjusted.get("contains"))):
        if not isinstance(holder, dict):
            continue
        changed = _moment(holder.get("status_changed_at"))
        if holder.get("status") in ("revoked", "superseded") and changed and changed > asked:
            what = "thu hồi" if holder.get("status") == "revoked" else "thay thế"
            notes.append(
                f"Sau thời điểm được hỏi, {_agency(holder)} đã {what} văn bản"
                f" ngày {vietnam_date(holder.get('status_changed_at'))}."
            )
            if key == "status":
                adjusted.update(status="in_force", status_changed_at=None)
            else:
                adjusted.pop("contains")
    if not notes:
        return report, ""
    return {**report, "registry": adjusted}, " ".join(notes)


def _document_status(report: dict[str, Any], expected_public_id: str | None = None) -> Conclusion:
    """The one state of the verified document (the module's rules 1 to 6).

    ``report``: the verification report as a dict (``verdict``, ``signatures``, ``warnings``,
    optionally the ``registry`` section). ``expected_public_id``: the public id a QR link
    named (the page's QR route), compared with the file's registry record; when not given,
    the report's own ``expected_public_id`` key is used (the page stores it with the report,
    so that the PDF report of a QR comparison carries the same state). Never raises for a
    well-formed report; an unknown verdict counts as ``INDETERMINATE``."""
    if expected_public_id is None:
        kept = report.get("expected_public_id")
        expected_public_id = kept if isinstance(kept, str) and kept else None
    verdict = str(report.get("verdict") or "INDETERMINATE")
    section = report.get("registry")
    registry = section if isinstance(section, dict) and section.get("found") else None
    signature_count = sum(
        1
        for s in report.get("signatures") or []
        if isinstance(s, dict) and s.get("type") != "document_timestamp"
    )
    matched = _effective_match(report, registry)

    # 1. The QR comparison: a different file is not described as the QR's document.
    prefix = ""
    if expected_public_id is not None:
        if registry is None or registry.get("public_id") != expected_public_id:
            return Conclusion(
                INVALID,
                NOT_QR_DOCUMENT,
                "Tệp bạn tải lên KHÔNG phải văn bản mà mã QR này chỉ tới: hãy đối chiếu lại "
                "với cơ quan ban hành.",
            )
        if matched != "revision":
            prefix = "Tệp bạn tải lên đúng là văn bản mà mã QR này chỉ tới. "

    # 2. Revoked or superseded (the latest version's status answers for earlier versions).
    if registry is not None and registry.get("status") in ("revoked", "superseded"):
        agency = _agency(registry)
        changed = vietnam_date(registry.get("status_changed_at"))
        signed = "Chữ ký số hợp lệ, nhưng " if verdict == "TOTAL_PASSED" else ""
        if registry.get("status") == "revoked":
            text = f"{agency} đã thu hồi văn bản này" + (f" ngày {changed}" if changed else "")
            text += ": văn bản không còn hiệu lực."
            return Conclusion(INVALID, REVOKED, prefix + signed + text)
        text = "văn bản này đã được thay thế bằng một văn bản khác" + (
            f" từ ngày {changed}" if changed else ""
        )
        text += _use_the_replacement(registry)
        if not signed:
            text = text[0].upper() + text[1:]
        return Conclusion(INVALID, SUPERSEDED, prefix + signed + text)

    # 2b. The file is registered and in force, but a registered document inside it (the one
    # another agency signed further: countersigned, sealed) was revoked or superseded by its
    # issuer: that withdrawal answers for the copy (new user 18 #1).
    inner = registry.get("contains") if registry is not None else None
    if isinstance(inner, dict) and inner.get("status") in ("revoked", "superseded"):
        agency = _agency(inner)
        changed = vietnam_date(inner.get("status_changed_at"))
        signed = "Chữ ký số hợp lệ, nhưng " if verdict == "TOTAL_PASSED" else ""
        if inner.get("status") == "revoked":
            text = f"văn bản do {agency} ban hành có trong tệp này đã bị thu hồi" + (
                f" ngày {changed}" if changed else ""
            )
            text += ": văn bản không còn hiệu lực."
            code = REVOKED
        else:
            text = f"văn bản do {agency} ban hành có trong tệp này đã được thay thế" + (
                f" từ ngày {changed}" if changed else ""
            )
            text += _use_the_replacement(inner)
            code = SUPERSEDED
        if not signed:
            text = text[0].upper() + text[1:]
        return Conclusion(INVALID, code, prefix + signed + text)

    # 3. The signatures did not pass: what the registry says cannot make the file valid.
    if verdict == "TOTAL_FAILED":
        return Conclusion(
            INVALID,
            SIGNATURE_INVALID,
            "Không được tin vào tài liệu này: chữ ký số không hợp lệ hoặc tài liệu đã bị sửa "
            "đổi sau khi ký.",
        )
    if verdict == "NO_SIGNATURE":
        return Conclusion(
            INDETERMINATE,
            NO_SIGNATURE,
            "Tài liệu này không có chữ ký số nào, nên không xác định được ai đã ban hành nó.",
        )
    if verdict != "TOTAL_PASSED":
        return Conclusion(
            INDETERMINATE,
            SIGNATURE_INDETERMINATE,
            "Chưa đủ căn cứ để kết luận tài liệu hợp lệ: một số kiểm tra chưa có kết quả.",
        )

    # 4. The issued document is inside, with content added after issue.
    if registry is not None:
        agency = _agency(registry)
        issued = vietnam_date(registry.get("issued_at"))
        if matched == "revision":
            lead = (
                "Tệp bạn tải lên chứa văn bản của mã QR này"
                if expected_public_id is not None
                else f"Tệp chứa văn bản {agency} đã cấp qua dịch vụ này"
                + (f" ngày {issued}" if issued else "")
            )
            return Conclusion(
                INDETERMINATE,
                CONTENT_ADDED_AFTER_ISSUE,
                f"{lead} (đang có hiệu lực), nhưng có nội dung được thêm vào sau khi cấp: "
                "phần thêm vào không phải của cơ quan ban hành.",
            )
        # 5. The registered file itself, in force.
        signed = (
            f"Tài liệu có {signature_count} chữ ký số hợp lệ"
            if signature_count > 1
            else "Chữ ký số trên tài liệu hợp lệ"
        )
        if content_added_after_signing(report):
            # Registered bytes carry nothing unsigned in practice; said honestly if they do.
            signed += ", nhưng có nội dung được thêm vào sau khi ký"
        else:
            signed += " và tài liệu không bị sửa đổi sau khi ký"
        added = (
            " Sau khi cấp, tệp chỉ được bổ sung dữ liệu xác minh dài hạn (thông tin trạng "
            "thái chứng thư, dấu thời gian tài liệu), không có nội dung mới."
            if matched == VALIDATION_DATA
            else ""
        )
        return Conclusion(
            VALID, IN_FORCE, f"{prefix}{signed}. {_issued_by(report, registry, issued)}{added}"
        )

    # 6. Validly signed elsewhere.
    signed = (
        f"Tài liệu có {signature_count} chữ ký số hợp lệ"
        if signature_count > 1
        else "Chữ ký số trên tài liệu hợp lệ"
    )
    if content_added_after_signing(report):
        return Conclusion(
            VALID,
            SIGNATURES_VALID_CONTENT_ADDED,
            f"{signed}, nhưng có nội dung (chú thích, ô biểu mẫu) được thêm vào sau khi ký: "
            "phần thêm vào không được chữ ký bảo đảm.",
        )
    return Conclusion(VALID, SIGNATURES_VALID, f"{signed} và tài liệu không bị sửa đổi sau khi ký.")


def status_section(report: dict[str, Any]) -> dict[str, str]:
    """The report's top-level ``status`` object, ``{"state", "code", "message"}``
    (:func:`document_status` without a QR comparison)."""
    return document_status(report).to_dict()


def conclude(report: dict[str, Any]) -> dict[str, Any]:
    """Add the document's one state to ``report`` (in place; returned): the top-level
    ``status`` object :func:`signing_service.services.conclusion.status_section` (the
    signatures and the registry together, what a portal shows a citizen), next to
    ``verdict`` (the ETSI indication of the signatures alone). When the registry makes the
    document invalid or undecided although every signature passed (revoked, superseded,
    content added after issue), the report's ``message`` is that status message: a portal
    showing ``message`` never tells a citizen a revoked decision is valid (new user 11)."""
    section = report.get("registry")
    if isinstance(section, dict) and section.get("found"):
        # The page, the PDF report and the CLI read ``matched``: the same answer as the status.
        effective = _effective_match(report, section)
        if effective is not None:
            section["matched"] = effective
    status = status_section(report)
    report["status"] = status
    if report.get("verdict") == "TOTAL_PASSED" and status["code"] in (
        REVOKED,
        SUPERSEDED,
        CONTENT_ADDED_AFTER_ISSUE,
    ):
        report["message"] = status["message"]
    return report
