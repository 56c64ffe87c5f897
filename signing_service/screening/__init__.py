"""Screening of uploaded files before anyone opens them (dossier attachments).

Content is sniffed with libmagic and checked against an allowlist; the extension must agree
with the content; polyglots are refused (an executable or HTML header in front of ``%PDF``,
another format appended after the last ``%%EOF``, an archive's signatures anywhere outside the
data of the PDF's streams, a ZIP a ZIP reader would open); PDFs are opened with pikepdf to find
a user password and active content (JavaScript, OpenAction/AA, Launch, embedded files, rich media);
office files are checked for zip bombs. python-magic alone misses a PDF with something appended,
and pikepdf opens polyglots happily, so the order matters: sniff first, then open.

Works on a seekable binary file (:func:`screen_file`) so that a 1 GB upload is screened without
being read into memory; :func:`screen` is the same over bytes. No web framework, no storage, no
database.
"""

from __future__ import annotations

import io
import re
import struct
import zipfile
import zlib
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
        "dữ liệu khác nối sau %%EOF, hoặc một tệp nén ZIP/RAR/7z… xen giữa các đối tượng PDF): "
        "bị từ chối."
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


# Archive formats whose readers find them inside another file: ZIP readers look for the end of
# central directory in the last 64 KiB + 22 bytes, RAR/7z/CAB readers scan for their signature
# (self-extracting archives), streaming ZIP readers walk local file headers.
ARCHIVE_SIGNATURES = {
    b"PK\x03\x04": "ZIP local file header",
    b"PK\x01\x02": "ZIP central directory header",
    b"PK\x05\x06": "ZIP end of central directory",
    b"PK\x06\x06": "ZIP64 end of central directory",
    b"PK\x06\x07": "ZIP64 end of central directory locator",
    b"Rar!\x1a\x07": "RAR",
    b"7z\xbc\xaf\x27\x1c": "7z",
    b"MSCF\x00\x00\x00\x00": "CAB",
    b"\xfd7zXZ\x00": "xz",
}
ARCHIVE_RE = re.compile(b"|".join(re.escape(s) for s in ARCHIVE_SIGNATURES))
_OVERLAP = max(len(s) for s in ARCHIVE_SIGNATURES) - 1
# The keyword that opens a stream's data (not the end of "endstream", not part of a name).
_STREAM_KEYWORD = re.compile(rb"(?<![A-Za-z0-9])stream(?:\r\n|\n|\r)")
_DIRECT_LENGTH = re.compile(
    rb"/Length[\x00\t\n\x0c\r ]+(\d+)(?![\d\x00\t\n\x0c\r ]*\d+[\x00\t\n\x0c\r ]*R)"
)
_ENDSTREAM = re.compile(rb"[\x00\t\n\x0c\r ]*endstream")
# The largest ZIP comment plus the end of central directory record, and room for Info-ZIP's
# unzip, which looks further back than that (~72 KB: red team 23c R23C-3).
ZIP_TAIL = 128 * 1024
# How far into a file 7-Zip searches for an archive's signature when it is asked to open a file
# of no archive type (its signature search: 8 MiB, measured with 7-Zip 26.02, red team 23c).
SEARCHED_PREFIX = 8 * 1024 * 1024
_ZIP_METHODS = frozenset({0, 1, 6, 8, 9, 12, 14, 19, 93, 95, 96, 97, 98, 99})


def _read(f: BinaryIO, start: int, length: int) -> bytes:
    f.seek(start)
    return f.read(length)


def _stream_data(
    pdf: pikepdf.Pdf, f: BinaryIO, offset: int, objgen: tuple[int, int]
) -> tuple[int, int] | None:
    """The byte range of the data of the stream object that starts at ``offset``: after the
    ``stream`` keyword's end of line, ``/Length`` bytes, followed by ``endstream``. None for an
    object that is not a stream, and when the file does not lay it out so (the caller then
    treats those bytes as outside any stream). The dictionary's own ``/Length`` is read from the
    text; pikepdf is asked only when that does not fit (an indirect length, a nested /Length)."""
    for window in (1024, 65536):
        text = _read(f, offset, window)
        keyword = _STREAM_KEYWORD.search(text)
        closed = text.find(b"endobj")
        if keyword or closed >= 0:
            break
    if not keyword or 0 <= closed < keyword.start():
        return None
    start = offset + keyword.end()
    direct = _DIRECT_LENGTH.search(text, 0, keyword.start())
    if direct and _ENDSTREAM.match(_read(f, start + int(direct[1]), 64)):
        return start, start + int(direct[1])
    obj = pdf.get_object(objgen)
    length = obj.stream_dict.get("/Length") if isinstance(obj, pikepdf.Stream) else None
    if length is None or int(length) < 0:
        return None
    end = start + int(length)
    return (start, end) if _ENDSTREAM.match(_read(f, end, 64)) else None


def _stream_ranges(pdf: pikepdf.Pdf, f: BinaryIO, size: int) -> list[tuple[int, int]]:
    """The data of every stream object the cross-reference table (as qpdf read or rebuilt it)
    points to, sorted. Object streams hold compressed objects, so those are covered too."""
    # qpdf counts offsets from the %PDF- header: bytes in front of it shift every object (red
    # team 22 R22-3: with a prefix no stream was found, and stream data by chance holding an
    # archive signature refused an ordinary file).
    found = _read(f, 0, 1024).find(b"%PDF-")
    shift = max(found, 0)
    ranges = []
    for objgen, entry in pdf.get_xref_table().items():
        # Only objects written at an offset (type 1): a compressed one (type 2, inside an
        # object stream, every document this service signs) has none (red team 23c R23C-4:
        # None + shift was a TypeError, a 500 for such attachments).
        if entry.type != 1 or entry.offset is None:
            continue
        offset = entry.offset + shift
        if not 0 <= offset < size:
            continue
        try:
            span = _stream_data(pdf, f, offset, objgen)
        except (pikepdf.PdfError, TypeError, ValueError):
            continue
        if span:
            ranges.append(span)
    return sorted(ranges)


def _gaps(ranges: list[tuple[int, int]], size: int) -> list[tuple[int, int]]:
    gaps, position = [], 0
    for start, end in ranges:
        if start > position:
            gaps.append((position, start))
        position = max(position, end)
    if position < size:
        gaps.append((position, size))
    return gaps


def _zip_end_record(f: BinaryIO, size: int, position: int) -> bool:
    """An end of central directory record at ``position`` that a ZIP reader would follow: its
    central directory (or ZIP64 locator) is where it says. Random bytes (a compressed stream)
    pass this with odds of about 2^-64. The disk numbers and entry counts are not looked at:
    Python's zipfile, Java's jar, 7-Zip and Info-ZIP's unzip follow the central directory
    whatever they say, and a record claiming 0 entries, disk 1 or unequal counts let a ZIP
    holding a program through, sealed (red team 23b, R23B-1)."""
    record = _read(f, position, 22)
    if len(record) < 22:
        return False
    _, _, _, _, _, cd_size, cd_offset, _ = struct.unpack("<4s4H2LH", record)
    if position >= 20 and _read(f, position - 20, 4) == b"PK\x06\x07":
        return True
    return any(
        0 <= start < size and _read(f, start, 4) == b"PK\x01\x02"
        for start in (position - cd_size, cd_offset)
    )


def archive_in_pdf(f: BinaryIO, size: int, pdf: pikepdf.Pdf) -> str | None:
    """What makes the PDF ``f`` (opened as ``pdf``) also an archive, or None.

    - an archive's signature (ZIP local/central/end headers, RAR, 7z, CAB, xz) anywhere outside
      the data of the streams the cross-reference table points to: between objects, inside the
      PDF's syntax, after the last ``%%EOF`` or hidden before one (a ZIP comment ending in
      ``%%EOF``). Stream data is left out because compressed data holds such bytes by chance;
    - a ZIP end of central directory a ZIP reader would find (in the last 128 KiB, its
      central directory where it says), even inside stream data;
    - a tar header (the PDF header written into a tar member's name).

    - a RAR, 7z, CAB or xz signature in the first KiB, stream data included (7-Zip finds a 7z
      archive at byte 198 of a PDF, inside an unfiltered stream: red team 23b, R23B-2), and
      what 7-Zip finds by searching the first 8 MiB (:func:`_archive_in_prefix`).

    Only what lies outside stream data is read, the first KiB and the tail: a 1 GB scan costs
    its objects."""
    head = _read(f, 0, 1024)
    if head[257:263] in (b"ustar\x00", b"ustar "):
        return "tar header"
    found_early = _scanned_archive_in_head(head) or _archive_in_prefix(_read(f, 0, SEARCHED_PREFIX))
    if found_early:
        return found_early
    for start, end in _gaps(_stream_ranges(pdf, f, size), size):
        position = start
        while position < end:
            chunk = _read(f, position, min(1 << 20, end - position) + _OVERLAP)
            for match in ARCHIVE_RE.finditer(chunk):
                if position + match.start() < end:
                    found = position + match.start()
                    name = ARCHIVE_SIGNATURES[match.group()]
                    return f"{name} at byte {found}, outside the PDF's stream data"
            position += 1 << 20
    tail_start = max(0, size - ZIP_TAIL)
    tail = _read(f, tail_start, ZIP_TAIL)
    for match in re.finditer(re.escape(b"PK\x05\x06"), tail):
        if _zip_end_record(f, size, tail_start + match.start()):
            return f"ZIP archive (end of central directory at byte {tail_start + match.start()})"
    return None


def _sevenzip_at(data: bytes, at: int) -> bool:
    """A 7z signature header at ``at`` whose start header's CRC-32 holds (7zFormat.txt:
    signature, version, StartHeaderCRC over the next 20 bytes): what 7-Zip opens. By chance
    with odds of 2^-80."""
    header = data[at : at + 32]
    if len(header) < 32:
        return False
    return zlib.crc32(header[12:32]) == int.from_bytes(header[8:12], "little")


def _zip_local_at(data: bytes, at: int) -> bool:
    """A ZIP local file header at ``at`` that a reader would take for one (APPNOTE 4.3.7): a
    known compression method, a version below 10.0, a file name of 1–1024 bytes without NUL.
    By chance with odds of about 2^-52."""
    header = data[at : at + 30]
    if len(header) < 30:
        return False
    version, _, method = struct.unpack_from("<3H", header, 4)
    name_length = struct.unpack_from("<H", header, 26)[0]
    name = data[at + 30 : at + 30 + name_length]
    return (
        (version & 0xFF) < 100
        and method in _ZIP_METHODS
        and 0 < name_length <= 1024
        and len(name) == name_length
        and b"\x00" not in name
    )


def _archive_in_prefix(data: bytes) -> str | None:
    """An archive 7-Zip finds by searching ``data`` (a file's first :data:`SEARCHED_PREFIX`
    bytes), stream data included (red team 23c R23C-1/2: 7-Zip
    extracted a 7z found at byte 1101, and a ZIP inside stream data with more than 64 KiB of
    PDF after it, from sealed documents): a 7z signature header (:func:`_sevenzip_at`), a RAR
    or CAB signature (7 and 8 bytes), a ZIP local file header (:func:`_zip_local_at`). Four
    passes of ``bytes.find``, each about as costly as a SHA-256 of the bytes (~0.8 ms per MB
    on this machine: ``make bench``, the API rows)."""
    # Every member of a ZIP that holds anything has a local file header: 7-Zip's search finds
    # the archive by it (an end record alone lists nothing; readers that start from the end
    # are the tail check's). A 2-byte "PK" pass costs half as much again as a 4-byte one.
    position = data.find(b"PK\x03\x04")
    while position >= 0:
        if _zip_local_at(data, position):
            return f"ZIP local file header at byte {position}"
        position = data.find(b"PK\x03\x04", position + 4)
    position = data.find(b"7z\xbc\xaf\x27\x1c")
    while position >= 0:
        if _sevenzip_at(data, position):
            return f"7z at byte {position}"
        position = data.find(b"7z\xbc\xaf\x27\x1c", position + 6)
    for signature, name in ((b"Rar!\x1a\x07", "RAR"), (b"MSCF\x00\x00\x00\x00", "CAB")):
        at = data.find(signature)
        if at >= 0:
            return f"{name} at byte {at}"
    return None


# Archives whose programs search a file for their signature (self-extracting archives): found
# anywhere in the first KiB, stream data included. The ZIP family is left to the end-record
# check (a ZIP reader starts from the end of the file) and to what lies before %PDF-.
SCANNED_ARCHIVE_SIGNATURES = {
    signature: name
    for signature, name in ARCHIVE_SIGNATURES.items()
    if not signature.startswith(b"PK")
}


def _scanned_archive_in_head(head: bytes) -> str | None:
    """A RAR, 7z, CAB or xz signature anywhere in ``head`` (the first KiB): the reason, or
    ``None``. By chance in compressed data with odds of about 2^-38."""
    for signature, name in SCANNED_ARCHIVE_SIGNATURES.items():
        at = head.find(signature)
        if at >= 0:
            return f"{name} at byte {at}"
    return None


def pdf_archive_polyglot(data: bytes) -> str | None:
    """Whether the PDF ``data`` (the signing flow's input, in memory) is also an archive that
    an archive program opens: a tar header, an archive's header in front of ``%PDF-``, a RAR,
    7z, CAB or xz signature in the first KiB (:func:`_scanned_archive_in_head`), an archive
    7-Zip finds by searching the first 8 MiB (:func:`_archive_in_prefix`), or a ZIP end of
    central directory record a ZIP reader finds (in the last 128 KiB, its central directory
    where it says, :func:`_zip_end_record`). The reason, or ``None``.

    Not the attachments' scan of everything outside stream data (:func:`archive_in_pdf`): a
    search of the document per signature kind cost more CPU than the signature itself
    (``make bench``: the API's signatures per CPU-second fell from 63 to 34 on a 1 MB
    document); what is refused here is what an archive program would open, validated
    (a signature by chance in compressed data is not an archive), in four passes."""
    head = data[:1024]
    if head[257:263] in (b"ustar\x00", b"ustar "):
        return "tar header"
    header = head.find(b"%PDF-")
    before = head[: header if header >= 0 else len(head)]
    for signature, name in ARCHIVE_SIGNATURES.items():
        if signature in before:
            return f"{name} in front of %PDF-"
    found_early = _scanned_archive_in_head(head) or _archive_in_prefix(
        data if len(data) <= SEARCHED_PREFIX else data[:SEARCHED_PREFIX]
    )
    if found_early:
        return found_early
    if len(data) <= SEARCHED_PREFIX:
        return None  # the end records were all looked at above
    tail_start = max(0, len(data) - ZIP_TAIL)
    if b"PK\x05\x06" not in data[tail_start:]:
        return None
    f = io.BytesIO(data)
    for match in re.finditer(re.escape(b"PK\x05\x06"), data[tail_start:]):
        position = tail_start + match.start()
        if _zip_end_record(f, len(data), position):
            return f"ZIP archive (end of central directory at byte {position})"
    return None


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
    if active.dropped_by_qpdf(pdf):
        found.add("TooComplexToInspect")  # qpdf did not read all of it (red team 22 R22-1)
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
            archive = archive_in_pdf(f, size, pdf)
        except (pikepdf.PdfError, ValueError, RuntimeError, OSError) as e:
            return _refuse(PDF, "MALFORMED_FILE", type(e).__name__)
        if archive:
            return _refuse(PDF, "POLYGLOT_FILE", archive)
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
