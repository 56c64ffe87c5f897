"""Screening of uploaded files before anyone opens them (dossier attachments).

Content is sniffed with libmagic and checked against an allowlist; the extension must agree
with the content; polyglots are refused (an executable or HTML header in front of ``%PDF``,
another format appended after the last ``%%EOF``); PDFs are opened with pikepdf to find a user
password and active content (JavaScript, OpenAction/AA, Launch, embedded files, rich media);
office files are checked for zip bombs. python-magic alone misses a PDF with something appended,
and pikepdf opens polyglots happily, so the order matters: sniff first, then open.

Works on a seekable binary file (:func:`screen_file`) so that a 1 GB upload is screened without
being read into memory; :func:`screen` is the same over bytes. No web framework, no storage, no
database.
"""

from __future__ import annotations

import io
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import BinaryIO

import magic
import pikepdf

from signing_service.verification import active

PDF = "application/pdf"
JPEG = "image/jpeg"
PNG = "image/png"
TIFF = "image/tiff"
DOCX = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
ODT = "application/vnd.oasis.opendocument.text"
XML = "application/xml"

EXTENSIONS: dict[str, frozenset[str]] = {
    PDF: frozenset({".pdf"}),
    JPEG: frozenset({".jpg", ".jpeg"}),
    PNG: frozenset({".png"}),
    TIFF: frozenset({".tif", ".tiff"}),
    DOCX: frozenset({".docx"}),
    XLSX: frozenset({".xlsx"}),
    ODT: frozenset({".odt"}),
    XML: frozenset({".xml"}),
}
DEFAULT_ALLOWED = frozenset(EXTENSIONS)

# Headers that make a file something to run or render, wherever it claims to be a PDF.
ACTIVE_HEADERS = re.compile(
    rb"^\s*(?:MZ|\x7fELF|#!|<\s*(?:!doctype\s+html|html|script|svg|\?php))", re.IGNORECASE
)

MESSAGES = {
    "EMPTY_FILE": "Tệp rỗng.",
    "CONTENT_TYPE_NOT_ALLOWED": "Loại nội dung của tệp không nằm trong danh sách được phép.",
    "EXTENSION_MISMATCH": "Phần mở rộng của tên tệp không khớp với nội dung thực của tệp.",
    "POLYGLOT_FILE": (
        "Tệp chứa nhiều định dạng cùng lúc (ví dụ mã thực thi hoặc HTML trước phần PDF, hoặc "
        "dữ liệu khác nối sau %%EOF): bị từ chối."
    ),
    "ENCRYPTED_PDF": "Tệp PDF được bảo vệ bằng mật khẩu; không thể kiểm tra nội dung.",
    "MALFORMED_FILE": "Tệp bị hỏng hoặc không đọc được.",
    "ACTIVE_PDF_CONTENT": (
        "Tệp PDF chứa nội dung chủ động (JavaScript, hành động tự chạy, mở chương trình, tệp "
        "đính kèm nhúng): bị từ chối."
    ),
    "SIGNED_PDF_ACTIVE_CONTENT": (
        "Tệp PDF đã ký số chứa nội dung chủ động. Không thể làm sạch vì sẽ phá vỡ chữ ký số: "
        "bị từ chối."
    ),
    "ZIP_BOMB": "Tệp nén có tỷ lệ hoặc dung lượng giải nén bất thường (zip bomb): bị từ chối.",
}


@dataclass(frozen=True)
class ScreeningPolicy:
    allowed: frozenset[str] = DEFAULT_ALLOWED
    # "reject" refuses PDFs with active content; "sanitize" stores a cleaned copy beside the
    # untouched original (never for signed PDFs).
    pdf_active_content: str = "reject"
    max_zip_ratio: float = 100.0
    max_zip_total: int = 512 * 1024 * 1024
    max_zip_entries: int = 10_000


@dataclass
class ScreeningResult:
    media_type: str | None
    code: str | None = None  # None: accepted
    detail: str = ""
    active_content: list[str] = field(default_factory=list)
    signed_pdf: bool = False
    # A sanitized copy was written to ``sanitized_out`` (screen_file) / is here (screen).
    sanitized_written: bool = False
    sanitized: bytes | None = None

    @property
    def accepted(self) -> bool:
        return self.code is None

    @property
    def message(self) -> str | None:
        return MESSAGES.get(self.code) if self.code else None


def _refuse(media_type: str | None, code: str, detail: str = "") -> ScreeningResult:
    return ScreeningResult(media_type=media_type, code=code, detail=detail)


def _office_type(f: BinaryIO) -> str | None:
    try:
        f.seek(0)
        with zipfile.ZipFile(f) as archive:
            names = set(archive.namelist())
            if "mimetype" in names and archive.read("mimetype").strip() == ODT.encode():
                return ODT
            if "[Content_Types].xml" in names:
                if any(n.startswith("word/") for n in names):
                    return DOCX
                if any(n.startswith("xl/") for n in names):
                    return XLSX
    except (zipfile.BadZipFile, KeyError, OSError, ValueError):
        return None
    return None


def sniff(head: bytes, f: BinaryIO) -> str | None:
    mime = magic.from_buffer(head[:8192], mime=True)
    if (
        mime in ("application/zip", DOCX, XLSX, ODT, "application/octet-stream")
        and head[:2] == b"PK"
    ):
        return _office_type(f)
    if mime in ("text/xml", XML):
        return XML
    return mime


def _zip_bomb(f: BinaryIO, policy: ScreeningPolicy) -> str | None:
    try:
        f.seek(0)
        with zipfile.ZipFile(f) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "unreadable archive"
    if len(infos) > policy.max_zip_entries:
        return f"{len(infos)} entries"
    total = sum(i.file_size for i in infos)
    if total > policy.max_zip_total:
        return f"{total} bytes uncompressed"
    for info in infos:
        if info.compress_size and info.file_size / info.compress_size > policy.max_zip_ratio:
            return f"{info.filename}: ratio {info.file_size / info.compress_size:.0f}"
        if info.filename.lower().endswith((".zip", ".docx", ".xlsx", ".odt", ".jar")):
            return f"nested archive {info.filename}"
    return None


TAIL = 64 * 1024


def _trailing_data(f: BinaryIO, size: int) -> bool:
    """Anything but whitespace after the last %%EOF. Only the tail is read: more than 64 KiB of
    anything after the last %%EOF means no %%EOF in the tail, which is refused as well."""
    f.seek(max(0, size - TAIL))
    tail = f.read(TAIL)
    end = tail.rfind(b"%%EOF")
    return end < 0 or tail[end + 5 :].strip(b"\x00\t\n\x0c\r ") != b""


ACTIVE_KEYS = {
    "/JS": "JavaScript",
    "/JavaScript": "JavaScript",
    "/Launch": "Launch",
    "/EmbeddedFile": "EmbeddedFile",
    "/EmbeddedFiles": "EmbeddedFile",
    "/RichMedia": "RichMedia",
    "/AA": "AdditionalActions",
    "/SubmitForm": "SubmitForm",
    "/ImportData": "ImportData",
    "/XFA": "XFA",
}
DANGEROUS_ACTIONS = {"/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/RichMediaExecute"}


def _pdf_active_content(pdf: pikepdf.Pdf, budget: int = 200_000) -> list[str]:
    """Every dictionary of the file, indirect or nested directly in another, is looked at
    (stream data is not read, so a 1 GB scan costs what its object count costs). The result
    also names "Signature" when a signature dictionary is found."""
    found: set[str] = set()
    try:
        for obj in active.dictionaries(pdf, active.Budget(budget)):
            for key in obj.keys():  # noqa: SIM118 - pikepdf Dictionary iteration
                if key in ACTIVE_KEYS:
                    found.add(ACTIVE_KEYS[key])
            if str(obj.get("/S", "")) in DANGEROUS_ACTIONS:
                found.add(str(obj.get("/S"))[1:])
            if str(obj.get("/Type", "")) == "/EmbeddedFile" or "/EF" in obj:
                found.add("EmbeddedFile")
            if "/ByteRange" in obj or str(obj.get("/FT", "")) == "/Sig":
                found.add("Signature")  # not active content: tells that the PDF is signed
    except active.Exhausted:
        found.add("TooComplexToInspect")
    root = pdf.Root
    if "/OpenAction" in root:
        action = root.OpenAction
        if (
            isinstance(action, pikepdf.Dictionary)
            and str(action.get("/S", "")) in DANGEROUS_ACTIONS
        ):
            found.add("OpenAction")
    return sorted(found)


def _sanitize(pdf: pikepdf.Pdf, out: BinaryIO) -> None:
    for obj in pdf.objects:
        target = obj.stream_dict if isinstance(obj, pikepdf.Stream) else obj
        if not isinstance(target, pikepdf.Dictionary):
            continue
        for key in ("/JS", "/AA", "/RichMedia"):
            if key in target:
                del target[key]
        if str(target.get("/S", "")) in DANGEROUS_ACTIONS:
            target["/S"] = pikepdf.Name("/GoTo")  # inert: no destination
            for key in ("/JS", "/F", "/Win", "/Mac", "/Unix"):
                if key in target:
                    del target[key]
    root = pdf.Root
    if "/OpenAction" in root:
        del root["/OpenAction"]
    if "/Names" in root:
        for key in ("/JavaScript", "/EmbeddedFiles"):
            if key in root.Names:
                del root.Names[key]
    pdf.save(out)


def _screen_pdf(
    f: BinaryIO, head: bytes, size: int, policy: ScreeningPolicy, sanitized_out: BinaryIO | None
) -> ScreeningResult:
    # %PDF must open the file: anything in front of it is another format riding along.
    if not head.lstrip(b"\xef\xbb\xbf\t\n\r ").startswith(b"%PDF-"):
        return _refuse(PDF, "POLYGLOT_FILE", "data before %PDF")
    if _trailing_data(f, size):
        return _refuse(PDF, "POLYGLOT_FILE", "data after the last %%EOF")
    f.seek(0)
    try:
        pdf = pikepdf.open(f)
    except pikepdf.PasswordError:
        return _refuse(PDF, "ENCRYPTED_PDF")
    except (pikepdf.PdfError, ValueError, RuntimeError) as e:
        return _refuse(PDF, "MALFORMED_FILE", type(e).__name__)
    with pdf:
        try:
            found = _pdf_active_content(pdf)
            signed = (
                "Signature" in found or int(pdf.Root.get("/AcroForm", {}).get("/SigFlags", 0)) > 0
            )
        except (
            pikepdf.PdfError,
            TypeError,
            ValueError,
            AttributeError,
            KeyError,
            RuntimeError,
        ) as e:
            # pikepdf opened it, but its objects are not what they claim (a name that is not a
            # name, /AcroForm an array): what cannot be inspected is refused, never a 500.
            return _refuse(PDF, "MALFORMED_FILE", type(e).__name__)
        active = [item for item in found if item != "Signature"]
        result = ScreeningResult(media_type=PDF, active_content=active, signed_pdf=signed)
        if not active:
            return result
        if signed:
            result.code = "SIGNED_PDF_ACTIVE_CONTENT"
        elif policy.pdf_active_content == "sanitize" and sanitized_out is not None:
            _sanitize(pdf, sanitized_out)
            result.sanitized_written = True
        else:
            result.code = "ACTIVE_PDF_CONTENT"
        result.detail = ", ".join(active)
        return result


def screen_file(
    f: BinaryIO,
    filename: str | None,
    policy: ScreeningPolicy | None = None,
    *,
    sanitized_out: BinaryIO | None = None,
) -> ScreeningResult:
    """Screen the seekable file ``f``. Under the "sanitize" policy a PDF with active content is
    accepted when ``sanitized_out`` is given, and its cleaned copy is written there."""
    policy = policy or ScreeningPolicy()
    size = f.seek(0, io.SEEK_END)
    if size == 0:
        return _refuse(None, "EMPTY_FILE")
    f.seek(0)
    head = f.read(8192)
    if ACTIVE_HEADERS.match(head[:512]):
        return _refuse(None, "POLYGLOT_FILE", "executable or HTML header")
    media_type = sniff(head, f)
    if b"%PDF-" in head[:1024]:
        media_type = PDF  # libmagic also says PDF for "<html>…%PDF"; the PDF check decides
    if media_type not in policy.allowed:
        return _refuse(media_type, "CONTENT_TYPE_NOT_ALLOWED", str(media_type))
    suffix = PurePosixPath((filename or "").replace("\\", "/")).suffix.lower()
    if suffix not in EXTENSIONS[media_type]:
        return _refuse(media_type, "EXTENSION_MISMATCH", f"{suffix or '(none)'} vs {media_type}")
    if media_type == PDF:
        return _screen_pdf(f, head, size, policy, sanitized_out)
    if media_type in (DOCX, XLSX, ODT):
        bomb = _zip_bomb(f, policy)
        if bomb:
            return _refuse(media_type, "ZIP_BOMB", bomb)
    return ScreeningResult(media_type=media_type)


def screen(
    data: bytes, filename: str | None, policy: ScreeningPolicy | None = None
) -> ScreeningResult:
    out = io.BytesIO()
    result = screen_file(io.BytesIO(data), filename, policy, sanitized_out=out)
    if result.sanitized_written:
        result.sanitized = out.getvalue()
    return result
