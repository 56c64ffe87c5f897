from __future__ import annotations

import hashlib
import json
import re
import time
import unicodedata
from dataclasses import dataclass

from sqlalchemy import case, select, update
from sqlalchemy.orm import Session

from signing_service import errors
from signing_service.screening import MESSAGES as SCREENING_MESSAGES
from signing_service.screening import pdf_archive_polyglot
from signing_service.services.container import Services
from signing_service.services.pdf_upload import check_pdf_upload  # noqa: F401 - re-exported
from signing_service.store.models import Document, ResultCodeCounter
from signing_service.timefmt import api_time
from storage import ObjectNotFound, StorageUnavailableError


def check_signing_input(pdf: bytes) -> None:
    """A PDF that an archive program also opens (a ZIP whose end record a ZIP reader finds,
    even behind a comment ending in ``%%EOF``; an archive's header in front of ``%PDF-``) is
    refused ``POLYGLOT_FILE`` before it is signed: the agency's signature would vouch for the
    archive's bytes as well (:func:`signing_service.screening.pdf_archive_polyglot`)."""
    reason = pdf_archive_polyglot(pdf)
    if reason:
        raise errors.ScreeningRefused(
            "POLYGLOT_FILE", SCREENING_MESSAGES["POLYGLOT_FILE"], details={"reason": reason}
        )


# {agency_code}-{yyMMdd}-{4-digit daily sequence}, e.g. 000.00.12.H12-261127-0001. Matched
# whole (fullmatch): with match() and "$", "…-0001\n" passed (issue 9), and \d also matches
# non-ASCII digits, hence the explicit [0-9].
DOSSIER_CODE = re.compile(
    r"(?P<agency>[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[0-9A-Z]{3})-"
    r"(?P<yy>[0-9]{2})(?P<mm>0[1-9]|1[0-2])(?P<dd>0[1-9]|[12][0-9]|3[01])-(?P<seq>[0-9]{4})"
)

# {dossier_code}-KQ{n}: a result (kết quả) of a dossier, Nghị định 45/2020 Art. 14.3. ``n``
# from 1, no leading zero (KQ01 and KQ1 would be two spellings of one result), at most 6
# digits (the code then fits the 64-character column with room to spare).
RESULT_CODE = re.compile(r"(?P<dossier>.+)-KQ(?P<n>[1-9][0-9]{0,5})")
# The highest ``n`` (six digits): ``auto`` never assigns beyond it (red team issue 10, F8:
# after KQ999999 it handed out KQ1000000, a code the service itself refuses everywhere).
MAX_RESULT_NUMBER = 999_999
# A procedure's code in the national database of administrative procedures (CSDL quốc gia về
# TTHC), e.g. 1.001234, optionally followed by the code of the agency that applies it.
PROCEDURE_CODE = re.compile(
    r"[0-9]\.[0-9]{6}(?:\.(?P<agency>[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[0-9A-Z]{3}))?"
)


# The applicant's identifier: a personal identification number (12 digits, Luật Căn cước
# 2023), an old identity card number (9 digits) or an enterprise/tax code (10 digits, a
# dependent unit's with -NNN).
APPLICANT_ID = re.compile(r"[0-9]{12}|[0-9]{9}|[0-9]{10}(?:-[0-9]{3})?")


def check_applicant_id(value: str | None) -> str | None:
    """``value`` when it is an applicant identifier (matched whole), ``None`` when absent;
    :class:`errors.InvalidApplicantId` (422) otherwise."""
    if value is None or value == "":
        return None
    if APPLICANT_ID.fullmatch(value) is None:
        raise errors.InvalidApplicantId()
    return value


def check_procedure_code(code: str | None, agency_code: str | None = None) -> str | None:
    """``code`` when it is a procedure code (matched whole), ``None`` when absent;
    :class:`errors.InvalidProcedureCode` (422) otherwise, also when it carries an agency
    suffix other than ``agency_code`` (the caller's): a QR printed on agency A's document must
    not say agency B applies the procedure (red team issue 10, F11)."""
    if code is None or code == "":
        return None
    match = PROCEDURE_CODE.fullmatch(code)
    if match is None or (
        agency_code is not None
        and match.group("agency") is not None
        and match.group("agency") != agency_code
    ):
        raise errors.InvalidProcedureCode(details={"procedure_code": printable(code)})
    return code


# The ``result_code`` form value that asks the service for the dossier's next number.
AUTO = "auto"

# Longest file name kept with a document or an attachment, in characters. The columns hold
# 255 (PostgreSQL counts characters and refuses longer values, which answered 500); a signed
# copy's name gains ".signed.pdf".
MAX_FILENAME_CHARS = 240
# C0 controls (NUL among them: PostgreSQL refuses it in text, which answered 500) and DEL.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def printable(value: str, limit: int = 64) -> str:
    """``value`` cut to ``limit`` characters with control characters and lone surrogates
    escaped (``\\x00``), for audit entries and error details about refused input."""
    cut = value[:limit]
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", cut)
    return escaped.encode("utf-8", "backslashreplace").decode("utf-8")


def is_clean_text(value: str, max_chars: int) -> bool:
    """True when ``value`` has at most ``max_chars`` characters, no control character and no
    lone surrogate (so both databases store it as it is)."""
    if len(value) > max_chars or _CONTROL.search(value):
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# Zero-width (non-)joiners: format characters Vietnamese text may carry (kept, as
# verification.messages.display_text keeps them); every other one is dropped from file names.
_KEPT_FORMAT = frozenset("\u200c\u200d")


def _has_control(name: str) -> bool:
    """A Unicode control character (Cc: C0, DEL, C1)."""
    return any(unicodedata.category(ch) == "Cc" for ch in name)


def base_filename(name: str | None) -> str | None:
    """The name an uploaded file is kept under (red team 17b, R17B-9): its last path part
    (after the last ``/`` or ``\\``: ``../../../../etc/passwd.pdf`` is ``passwd.pdf``),
    without format characters (Unicode Cf: the right-to-left override U+202E made
    ``a``, U+202E, ``fdp.exe`` read ``aexe.pdf``; zero-width joiners kept), white space trimmed.
    ``None`` when nothing is left (``../``, ``.``, a name of format characters): the document
    then has no name, as when none is sent, and the service names it by its id. A name with a
    control character is returned whole, for :func:`check_filename` to refuse: a NUL never
    cuts a name, and a control character in a directory part is not dropped with it."""
    if not name:
        return None
    if _has_control(name):
        return name
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    base = "".join(
        ch for ch in base if unicodedata.category(ch) != "Cf" or ch in _KEPT_FORMAT
    ).strip()
    if base.strip(".") == "":
        return None
    return base


def check_filename(name: str | None) -> str | None:
    """An uploaded file's name, checked at the edge and returned as it is kept
    (:func:`base_filename`): at most :data:`MAX_FILENAME_CHARS` characters, no control
    character (Unicode Cc: NUL, newline, ESC, DEL, C1), valid Unicode. Raises
    :class:`errors.InvalidFilename` (422) otherwise; ``None`` and ``""`` mean no name."""
    if not name:
        return None
    if _has_control(name):
        raise errors.InvalidFilename(
            details={"max_chars": MAX_FILENAME_CHARS, "filename": printable(name)}
        )
    base = base_filename(name)
    if base is None:
        return None
    if not is_clean_text(base, MAX_FILENAME_CHARS):
        raise errors.InvalidFilename(
            details={"max_chars": MAX_FILENAME_CHARS, "filename": printable(name)}
        )
    return base


def check_dossier_code(code: str | None, agency_code: str) -> str | None:
    """``code`` when it is a dossier code of the caller's agency (matched whole), ``None``
    when absent; :class:`errors.InvalidDossierCode` (422) otherwise."""
    if code is None or code == "":
        return None
    match = DOSSIER_CODE.fullmatch(code)
    if match is None:
        raise errors.InvalidDossierCode(
            "Mã hồ sơ không đúng định dạng {mã cơ quan}-{yyMMdd}-{số thứ tự 4 chữ số}, "
            "ví dụ 000.00.12.H12-261127-0001."
        )
    if match.group("agency") != agency_code:
        raise errors.InvalidDossierCode("Mã hồ sơ không thuộc cơ quan của bên gọi.")
    return code


@dataclass(frozen=True)
class DocumentCodes:
    """The codes a signed document carries: its dossier's code and its result code, given
    (``{dossier_code}-KQ{n}``) or :data:`AUTO` (assigned when the document is stored)."""

    dossier_code: str | None = None
    result_code: str | None = None


NO_CODES = DocumentCodes()


def check_result_code(code: str, agency_code: str) -> tuple[str, int]:
    """``(dossier_code, n)`` of the result code ``code`` of the caller's agency (matched
    whole); :class:`errors.InvalidResultCode` (422) otherwise, with the dossier part checked
    as :func:`check_dossier_code` does (its message then says what is wrong with it)."""
    match = RESULT_CODE.fullmatch(code)
    if match is None:
        raise errors.InvalidResultCode()
    try:
        check_dossier_code(match.group("dossier"), agency_code)
    except errors.InvalidDossierCode as e:
        raise errors.InvalidResultCode(e.message) from None
    return match.group("dossier"), int(match.group("n"))


def check_codes(
    dossier_code: str | None, result_code: str | None, agency_code: str
) -> DocumentCodes:
    """The codes of one signing request, checked (Nghị định 45/2020 Art. 14.3).

    ``dossier_code``: a dossier code, or a result code ``{dossier_code}-KQ{n}`` (accepted
    where dossier codes are: the document then carries both). ``result_code``: a result code,
    or ``auto`` for the dossier's next number. Empty strings mean absent. Raises (422)
    :class:`errors.InvalidDossierCode`, :class:`errors.InvalidResultCode` (bad form, another
    agency's, or not of ``dossier_code``'s dossier), :class:`errors.ResultCodeNeedsDossier`
    (``auto`` without a dossier code).
    """
    dossier_code = dossier_code or None
    result_code = result_code or None
    if (
        dossier_code is not None
        and DOSSIER_CODE.fullmatch(dossier_code) is None
        and RESULT_CODE.fullmatch(dossier_code) is not None
    ):
        # A result code where a dossier code goes: it names its dossier.
        given = dossier_code
        dossier_code, _ = check_result_code(given, agency_code)
        if result_code is not None and result_code != given:
            raise errors.InvalidResultCode(
                "Mã kết quả gửi trong dossier_code và result_code khác nhau.",
                details={"dossier_code": printable(given)},
            )
        result_code = given
    dossier_code = check_dossier_code(dossier_code, agency_code)
    if result_code is None:
        return DocumentCodes(dossier_code, None)
    if result_code == AUTO:
        if dossier_code is None:
            raise errors.ResultCodeNeedsDossier()
        return DocumentCodes(dossier_code, AUTO)
    of_dossier, _ = check_result_code(result_code, agency_code)
    if dossier_code is not None and of_dossier != dossier_code:
        raise errors.InvalidResultCode(
            "Mã kết quả không thuộc hồ sơ đã gửi trong dossier_code.",
            details={"result_code": printable(result_code)},
        )
    return DocumentCodes(of_dossier, result_code)


_CODE_KEYS = frozenset({"dossier_code", "result_code"})


# Room for one element of ``codes``: {"dossier_code": 64 characters, "result_code": 64
# characters} with generous white space and \u escapes.
MAX_CODES_CHARS_PER_DOCUMENT = 2048


def _nesting(raw: str) -> int:
    """The deepest nesting of arrays and objects in the JSON text ``raw`` (brackets inside
    strings do not count), read without parsing; stops counting past 3."""
    depth = deepest = 0
    in_string = escaped = False
    for char in raw:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > deepest:
                deepest = depth
                if deepest > 3:
                    return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def batch_codes(raw: str | None, documents: int, agency_code: str) -> list[DocumentCodes] | None:
    """The batch's per-document codes from its ``codes`` form field: a JSON array in file
    order with exactly one element per file, each ``null`` or an object with the optional
    keys ``dossier_code`` and ``result_code`` (strings or ``null``; as for one document, see
    :func:`check_codes`). File order, not file names: a batch may carry two files of the same
    name. ``None`` when the field is absent.

    Checked whole before any document is signed: 422 ``INVALID_DOCUMENT_CODES`` (not JSON,
    not such an array, another key, a length other than the number of files), or the code's
    own error with ``details.index`` (the file's position, from 0). A caller's mistake in one
    element refuses the batch instead of signing the others with codes it did not mean.
    """
    if raw is None or raw == "":
        return None
    # Bounded before it is parsed (red team 17b, R17B-5: "[" * 5000 was a RecursionError, a
    # 500): the value is at most an array of flat objects of two short codes per file.
    if len(raw) > MAX_CODES_CHARS_PER_DOCUMENT * max(documents, 1) + 64:
        raise errors.InvalidDocumentCodes(details={"reason": "too long"})
    if _nesting(raw) > 2:
        raise errors.InvalidDocumentCodes(details={"reason": "too deep"})
    try:
        parsed = json.loads(raw)
    except (ValueError, RecursionError):
        raise errors.InvalidDocumentCodes(details={"reason": "not JSON"}) from None
    if not isinstance(parsed, list) or len(parsed) != documents:
        raise errors.InvalidDocumentCodes(
            details={"files": documents, "codes": len(parsed) if isinstance(parsed, list) else None}
        )
    out = []
    for index, item in enumerate(parsed):
        if item is None:
            out.append(NO_CODES)
            continue
        if (
            not isinstance(item, dict)
            or not set(item) <= _CODE_KEYS
            or not all(v is None or isinstance(v, str) for v in item.values())
        ):
            raise errors.InvalidDocumentCodes(details={"index": index})
        dossier, result = item.get("dossier_code"), item.get("result_code")
        if any(v is not None and len(v) > 64 for v in (dossier, result)):
            raise errors.InvalidDocumentCodes(details={"index": index})
        try:
            out.append(check_codes(dossier, result, agency_code))
        except errors.ServiceError as e:
            e.details = {**e.details, "index": index}
            raise
    return out


def resolve_result_code(session: Session, agency_id: int, codes: DocumentCodes) -> str | None:
    """The result code to store with a signed document, inside the transaction that stores
    it: a given code as it is, :data:`AUTO` as ``{dossier_code}-KQ{n}`` with ``n`` the
    dossier's next number.

    Unique under concurrency: the dossier's :class:`ResultCodeCounter` row is created if
    missing (``INSERT … ON CONFLICT DO NOTHING``) and incremented by one ``UPDATE …
    RETURNING``; PostgreSQL holds that row's lock until commit (a second request for the same
    dossier waits, then reads the incremented value) and SQLite's BEGIN IMMEDIATE serialises
    writers. A rolled-back store rolls the increment back: numbers have no gaps from failed
    signatures. A given code raises the counter to at least its number, so ``auto`` never
    assigns a number the caller already used. ``auto`` beyond :data:`MAX_RESULT_NUMBER` is
    :class:`errors.ResultCodeExhausted` (422): raised inside the transaction, which then rolls
    back (nothing stored, the counter unchanged). Take this before the audit head (as
    :func:`signing_service.services.signing.store_signed` does): every writer takes the two
    locks in that order.
    """
    if codes.result_code is None:
        return None
    dossier_code = codes.dossier_code
    assert dossier_code is not None
    # The dialect's own INSERT … ON CONFLICT, imported for the database in use (importing
    # both cost every process that merely reads documents ~0.1 s: the CLI's verify).
    if session.get_bind().dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:
        from sqlalchemy.dialects.postgresql import insert
    session.execute(
        insert(ResultCodeCounter)
        .values(agency_id=agency_id, dossier_code=dossier_code, last_number=0)
        .on_conflict_do_nothing()
    )
    counter = ResultCodeCounter.last_number
    if codes.result_code == AUTO:
        new_value: object = counter + 1
    else:
        given = int(RESULT_CODE.fullmatch(codes.result_code).group("n"))  # type: ignore[union-attr]
        new_value = case((counter < given, given), else_=counter)
    number = session.execute(
        update(ResultCodeCounter)
        .where(
            ResultCodeCounter.agency_id == agency_id,
            ResultCodeCounter.dossier_code == dossier_code,
        )
        .values(last_number=new_value)
        .returning(counter)
    ).scalar_one()
    if codes.result_code == AUTO:
        if number > MAX_RESULT_NUMBER:
            raise errors.ResultCodeExhausted(details={"dossier_code": dossier_code})
        return f"{dossier_code}-KQ{number}"
    return codes.result_code


def check_result_code_available(services: Services, agency_id: int, codes: DocumentCodes) -> None:
    """:class:`errors.ResultCodeExhausted` (422) before anything is signed when ``codes`` asks
    ``auto`` of a dossier whose counter is at :data:`MAX_RESULT_NUMBER` already: a signature
    made (an HSM operation, an officer's one-time code) only to be refused at storing is
    avoided. Read without a lock: :func:`resolve_result_code` is what decides at storing."""
    if codes.result_code != AUTO or codes.dossier_code is None:
        return
    with services.db.transaction() as session:
        last = session.scalars(
            select(ResultCodeCounter.last_number).where(
                ResultCodeCounter.agency_id == agency_id,
                ResultCodeCounter.dossier_code == codes.dossier_code,
            )
        ).first()
    if last is not None and last >= MAX_RESULT_NUMBER:
        raise errors.ResultCodeExhausted(details={"dossier_code": codes.dossier_code})


@dataclass(frozen=True)
class DocumentView:
    id: str
    kind: str
    sha256: str
    size: int
    media_type: str
    filename: str | None
    dossier_code: str | None
    result_code: str | None
    created_at: str

    @classmethod
    def of(cls, doc: Document) -> DocumentView:
        return cls(
            doc.id,
            doc.kind,
            doc.sha256,
            doc.size,
            doc.media_type,
            doc.filename,
            doc.dossier_code,
            doc.result_code,
            api_time(doc.created_at),
        )


# How long to wait before reading an object the store said was missing once more.
READ_AGAIN_SECONDS = 0.5


def get_document(services: Services, agency_id: int, document_id: str) -> Document:
    with services.db.transaction() as session:
        doc = session.scalars(
            select(Document).where(Document.id == document_id, Document.agency_id == agency_id)
        ).first()
    if doc is None:
        # Another agency's document is indistinguishable from a missing one.
        raise errors.DocumentNotFound()
    return doc


def read_content(services: Services, doc: Document) -> bytes:
    key = doc.storage_key
    if key is None and doc.content_of is not None:
        with services.db.transaction() as session:
            parent = session.get(Document, doc.content_of)
        key = parent.storage_key if parent is not None else None
    if key is None:
        raise errors.StorageIntegrity("Không tìm thấy nội dung văn bản trong kho lưu trữ.")
    try:
        try:
            data = services.store.get(key)
        except ObjectNotFound:
            # The row says the object exists. A distributed MinIO node that has just rejoined
            # can answer 404 for an object written while it was away, before it reconnects
            # to its peers (seen under load, tests/test_scale_out.py: PUT 200, GET 404, GET
            # 200 a moment later): read once more before calling it lost.
            time.sleep(READ_AGAIN_SECONDS)
            data = services.store.get(key)
        if doc.storage_key is None:
            data = data[: doc.size]
    except ObjectNotFound:
        raise errors.StorageIntegrity(
            "Không tìm thấy nội dung văn bản trong kho lưu trữ."
        ) from None
    except StorageUnavailableError:
        raise errors.StorageUnavailable() from None
    if hashlib.sha256(data).hexdigest() != doc.sha256:
        raise errors.StorageIntegrity()
    return data
