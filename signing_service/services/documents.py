from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass

from sqlalchemy import select

from signing_service import errors
from signing_service.services.container import Services
from signing_service.store.models import Document
from signing_service.timefmt import api_time
from storage import ObjectNotFound, StorageUnavailableError

# {agency_code}-{yyMMdd}-{4-digit daily sequence}, e.g. 000.00.12.H12-261127-0001. Matched
# whole (fullmatch): with match() and "$", "…-0001\n" passed (issue 9), and \d also matches
# non-ASCII digits, hence the explicit [0-9].
DOSSIER_CODE = re.compile(
    r"(?P<agency>[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[0-9A-Z]{3})-"
    r"(?P<yy>[0-9]{2})(?P<mm>0[1-9]|1[0-2])(?P<dd>0[1-9]|[12][0-9]|3[01])-(?P<seq>[0-9]{4})"
)

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


def check_filename(name: str | None) -> str | None:
    """An uploaded file's name, checked at the edge: at most :data:`MAX_FILENAME_CHARS`
    characters, no control character (NUL included), valid Unicode. Raises
    :class:`errors.InvalidFilename` (422) otherwise; ``None`` and ``""`` mean no name."""
    if not name:
        return None
    if not is_clean_text(name, MAX_FILENAME_CHARS):
        raise errors.InvalidFilename(
            details={"max_chars": MAX_FILENAME_CHARS, "filename": printable(name)}
        )
    return name


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


def check_pdf_upload(data: bytes, limit: int) -> None:
    if not data:
        raise errors.EmptyFile()
    if len(data) > limit:
        raise errors.PayloadTooLarge(
            f"Tệp vượt quá dung lượng cho phép ({limit // (1024 * 1024)} MB).",
            details={"max_bytes": limit},
        )
    if b"%PDF-" not in data[:1024]:
        raise errors.NotAPdf()


@dataclass(frozen=True)
class DocumentView:
    id: str
    kind: str
    sha256: str
    size: int
    media_type: str
    filename: str | None
    dossier_code: str | None
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
            api_time(doc.created_at),
        )


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
