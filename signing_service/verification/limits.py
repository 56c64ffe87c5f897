"""Parsing limits a hostile PDF cannot exceed (issue 8, item 3: "a verifier that cannot crash").

A file sent to the public verification endpoint is untrusted. Each limit below bounds one way a
small file can make the parser do unbounded work, and each is reported with its own reason code
and Vietnamese message (``MESSAGES``), so the verifier can answer ``FORMAT_FAILURE`` with a
reason instead of running out of time or memory:

================================  ==========================================================
attack                            bound (code)
================================  ==========================================================
Flate bomb in any stream,         pyHanko 0.38's decode limits, per stream, per purpose and
stacked filters                   per document (``DECOMPRESSION_LIMIT``)
cross-reference stream bomb       the xref stream's own tight decode limit, and the number of
(``/Size``, ``/Index`` claims)    entries it declares, checked *before* pyHanko expands them
                                  (``TOO_MANY_OBJECTS``): a 257-byte file declaring 3 million
                                  entries in a short stream costs pyHanko 7 s and 836 MB
overlong xref field widths        ``/W`` entries wider than 8 bytes (``MALFORMED_XREF``):
                                  pyHanko converts wider ones with quadratic big-int arithmetic
incremental-update flood          number of xref sections (``TOO_MANY_REVISIONS``)
signature-field flood             filled signature fields (``TOO_MANY_SIGNATURES``) and form
                                  field visits (``TOO_MANY_FIELDS``: a field tree whose
                                  ``/Kids`` share nodes is enumerated by pyHanko once per path,
                                  i.e. exponentially)
depth bomb                        nesting of arrays/dictionaries and of the field tree
                                  (``NESTING_TOO_DEEP``); pyHanko's object parser is recursive,
                                  so deeper bombs end in ``RecursionError``, translated here
oversized upload                  input bytes (``FILE_TOO_LARGE``)
================================  ==========================================================

Entry points: :func:`open_reader` (bytes → ``PdfFileReader`` with every limit applied while the
cross-reference sections are read), :func:`check_structure` (counts on an open reader) and
:func:`classify_exception` (maps an exception raised anywhere later — e.g. during pyHanko's
signature validation or difference analysis — to the same codes).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.decode_limits import (
    DecodeContext,
    DecodeLimits,
    DecodePurpose,
    DocumentDecodeBudget,
    StreamDecodeLimits,
)
from pyhanko.pdf_utils.reader import PdfFileReader, _read_header_version, process_data_at_eof
from pyhanko.pdf_utils.xref import XRefBuilder, XRefCache

MiB = 1024 * 1024

# Reason codes. The verifier reports each as a FORMAT_FAILURE with this code.
FILE_TOO_LARGE = "FILE_TOO_LARGE"
NOT_PDF = "NOT_PDF"
MALFORMED_PDF = "MALFORMED_PDF"
MALFORMED_XREF = "MALFORMED_XREF"
DECOMPRESSION_LIMIT = "DECOMPRESSION_LIMIT"
TOO_MANY_OBJECTS = "TOO_MANY_OBJECTS"
TOO_MANY_REVISIONS = "TOO_MANY_REVISIONS"
TOO_MANY_SIGNATURES = "TOO_MANY_SIGNATURES"
TOO_MANY_FIELDS = "TOO_MANY_FIELDS"
NESTING_TOO_DEEP = "NESTING_TOO_DEEP"
MEMORY_LIMIT = "MEMORY_LIMIT"
TIME_BUDGET_EXCEEDED = "TIME_BUDGET_EXCEEDED"

MESSAGES: dict[str, str] = {
    FILE_TOO_LARGE: "Tệp vượt quá dung lượng tối đa được phép xác minh.",
    NOT_PDF: "Tệp không phải là tài liệu PDF (không tìm thấy phần đầu %PDF-).",
    MALFORMED_PDF: "Cấu trúc tệp PDF bị hỏng, không đọc được.",
    MALFORMED_XREF: (
        "Bảng tham chiếu chéo (xref) của tệp PDF có giá trị bất thường, không thể đọc an toàn."
    ),
    DECOMPRESSION_LIMIT: (
        "Tệp chứa luồng dữ liệu nén giải nén ra quá lớn (dấu hiệu tệp \u201cbom nén\u201d): "
        "đã dừng xử lý để bảo vệ hệ thống."
    ),
    TOO_MANY_OBJECTS: "Tệp khai báo quá nhiều đối tượng PDF so với giới hạn xác minh.",
    TOO_MANY_REVISIONS: (
        "Tệp có quá nhiều phiên bản cập nhật (incremental update) so với giới hạn xác minh."
    ),
    TOO_MANY_SIGNATURES: "Tệp có quá nhiều chữ ký số so với giới hạn xác minh.",
    TOO_MANY_FIELDS: (
        "Cây trường biểu mẫu (AcroForm) quá lớn hoặc có nút dùng chung (không phải cây hợp lệ)."
    ),
    NESTING_TOO_DEEP: "Cấu trúc PDF lồng nhau quá sâu (dấu hiệu tệp được tạo ra để tấn công).",
    MEMORY_LIMIT: "Xử lý tệp cần quá nhiều bộ nhớ: đã dừng để bảo vệ hệ thống.",
    TIME_BUDGET_EXCEEDED: "Xác minh vượt quá thời gian cho phép đối với một yêu cầu.",
}


@dataclass(frozen=True)
class VerificationLimits:
    """Every bound applied to one verification. Sizes in bytes, durations in seconds.

    The defaults admit every legitimate document we know of (the public corpus, files with 100
    signatures and their B-LTA updates, scans of a few hundred pages) and stop each hostile
    construction within about a second and a few hundred megabytes at most.
    """

    max_input_bytes: int = 58 * MiB
    """Largest file accepted: ``Settings.max_document_bytes``, the 50 MiB upload limit plus
    the 8 MiB that signing may add, so that a document the service signed is verified."""

    max_stream_bytes: int = 64 * MiB
    """Decoded size of any single stream."""

    max_stream_ratio: float = 1100
    """Decoded/encoded ratio of a stream decoding to more than 1 MiB. 1100 sits just above the
    ~1032:1 ceiling of one Deflate layer, so only stacked filters trip it (pyHanko's default)."""

    max_document_decoded_bytes: int = 128 * MiB
    """Decoded bytes for the whole document, every decoding counted (also re-decoding a stream
    for an earlier revision) — the budget is ``max(this, ratio × input size)``. Decoded streams
    stay cached on the reader, so this also bounds the memory one verification holds."""

    max_document_decoded_ratio: float = 20
    """Per-document decoded bytes allowed per input byte, for large files."""

    max_xref_stream_bytes: int = 4 * MiB
    """Decoded size of one cross-reference stream: 500,000 entries of 7 bytes plus the PNG
    predictor byte, a generous ceiling for real files (a 4.7 MB file with 100 signatures has
    fewer than 2,000 objects)."""

    max_object_stream_bytes: int = 16 * MiB
    """Decoded size of one object stream (``/Type /ObjStm``); real ones hold ~100 objects."""

    max_metadata_bytes: int = 4 * MiB
    """Decoded size of an XMP metadata stream."""

    max_objects: int = 500_000
    """Cross-reference entries declared across all sections (every revision's entries count)."""

    max_revisions: int = 1_000
    """Cross-reference sections, i.e. the original plus incremental updates. A B-LTA signature
    adds up to three (signature, DSS, document timestamp), so this admits 300+ signatures' worth
    of updates; ``max_signatures`` is the tighter bound."""

    max_signatures: int = 200
    """Filled signature fields (signatures and document timestamps). Each one costs a CMS
    validation; the issue's benchmark goes up to 100."""

    max_form_fields: int = 10_000
    """Form-field visits while enumerating the AcroForm tree the way pyHanko does (once per
    path: a tree whose ``/Kids`` share nodes explodes here first)."""

    max_nesting_depth: int = 64
    """Nesting of arrays/dictionaries inside one object, and depth of the form-field tree.
    pdfium uses the same bound (``kParserMaxRecursionDepth``); real files stay below 20."""

    time_budget_seconds: float = 60.0
    """Wall-clock budget for one verification request. Enforced by the verifier engine (code
    ``TIME_BUDGET_EXCEEDED``), not by this module."""

    def decode_limits(self) -> DecodeLimits:
        """pyHanko ``DecodeLimits`` equivalent to these bounds (pyHanko ≥ 0.38)."""
        ratio_floor = MiB
        return DecodeLimits(
            per_stream=StreamDecodeLimits(
                max_ratio=self.max_stream_ratio,
                ratio_floor=ratio_floor,
                max_output_size=self.max_stream_bytes,
            ),
            per_purpose={
                # The expected size of an xref stream is derived from the claims of the
                # attacker's own dictionary, so it is capped here independently of them.
                DecodePurpose.XREF_STREAM: StreamDecodeLimits(
                    max_ratio=None, max_output_size=self.max_xref_stream_bytes
                ),
                DecodePurpose.OBJECT_STREAM: StreamDecodeLimits(
                    max_ratio=100,
                    ratio_floor=ratio_floor,
                    max_output_size=self.max_object_stream_bytes,
                ),
                DecodePurpose.XMP_METADATA: StreamDecodeLimits(
                    max_ratio=100, ratio_floor=ratio_floor, max_output_size=self.max_metadata_bytes
                ),
                DecodePurpose.CERTIFICATE: StreamDecodeLimits(max_ratio=None, max_output_size=MiB),
                DecodePurpose.OCSP_RESPONSE: StreamDecodeLimits(
                    max_ratio=None, max_output_size=4 * MiB
                ),
                # CRLs may be large but do not compress well.
                DecodePurpose.CRL: StreamDecodeLimits(
                    max_ratio=50, ratio_floor=4 * MiB, max_output_size=self.max_stream_bytes
                ),
            },
            expected_size_slack=4096,
            document_budget=DocumentDecodeBudget(
                base_allowance=self.max_document_decoded_bytes,
                max_ratio=self.max_document_decoded_ratio,
            ),
        )


DEFAULT_LIMITS = VerificationLimits()


class StructureError(Exception):
    """A PDF that cannot be read safely or at all, with a reason code from ``MESSAGES``."""

    def __init__(self, code: str, detail: str = "") -> None:
        super().__init__(f"{code}: {detail}" if detail else code)
        self.code = code
        self.detail = detail

    @property
    def message(self) -> str:
        """The Vietnamese explanation for this code."""
        return MESSAGES[self.code]


class LimitExceeded(StructureError):
    """The file exceeds one of the :class:`VerificationLimits` (a hostile or absurd file).

    ``code`` is one of ``FILE_TOO_LARGE``, ``DECOMPRESSION_LIMIT``, ``TOO_MANY_OBJECTS``,
    ``TOO_MANY_REVISIONS``, ``TOO_MANY_SIGNATURES``, ``TOO_MANY_FIELDS``, ``NESTING_TOO_DEEP``,
    ``MALFORMED_XREF``, ``MEMORY_LIMIT``; ``detail`` says which value broke which bound.
    """


class MalformedPdf(StructureError):
    """The file is not a PDF (``NOT_PDF``) or its structure cannot be parsed
    (``MALFORMED_PDF``, detail: the parser's exception). Not a limit: an ordinary broken file."""


def classify_exception(exc: BaseException) -> LimitExceeded | None:
    """The limit an exception raised while reading or validating a PDF stands for, if any.

    pyHanko signals the bounds it enforces with ``PdfDecodeLimitError``; its recursive parser
    hits Python's recursion limit on depth bombs (``RecursionError``, sometimes wrapped by
    pyHanko into a ``PdfReadError`` whose ``__cause__`` is the ``RecursionError``); exhausted
    memory is ``MemoryError``. The whole cause/context chain is searched. ``None`` for any
    other exception (an ordinary malformed file or a bug).
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, LimitExceeded):
            return current
        if isinstance(current, misc.PdfDecodeLimitError):
            return LimitExceeded(DECOMPRESSION_LIMIT, str(current))
        if isinstance(current, RecursionError):
            return LimitExceeded(NESTING_TOO_DEEP, "Python recursion limit reached while parsing")
        if isinstance(current, MemoryError):
            return LimitExceeded(MEMORY_LIMIT, "out of memory")
        current = current.__cause__ or current.__context__
    return None


def pdf_header_offset(data: bytes) -> int | None:
    """Where ``%PDF-`` starts within the first 1024 bytes, or ``None`` (ISO 32000-2 Annex H:
    readers accept a header within the first 1024 bytes; offsets then count from it)."""
    at = data.find(b"%PDF-", 0, 1024 + 5)
    return at if 0 <= at <= 1024 else None


class _LimitedXRefBuilder(XRefBuilder):
    """pyHanko's cross-reference reader with the limits checked before each section is
    expanded. Hooks internal methods of pyHanko 0.38 (pinned <0.39); ``tests/test_verifier_limits``
    compares its result with pyHanko's own reader so an upgrade that changes them is noticed."""

    def __init__(self, limits: VerificationLimits, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.limits = limits
        self.sections_read = 0
        self.entries_declared = 0

    def _count_section(self) -> None:
        self.sections_read += 1
        if self.sections_read > self.limits.max_revisions:
            raise LimitExceeded(
                TOO_MANY_REVISIONS,
                f"more than {self.limits.max_revisions} cross-reference sections",
            )

    def _add_entries(self, count: int) -> None:
        self.entries_declared += count
        if self.entries_declared > self.limits.max_objects:
            raise LimitExceeded(
                TOO_MANY_OBJECTS,
                f"{self.entries_declared} cross-reference entries declared "
                f"(limit {self.limits.max_objects})",
            )

    def _read_xref_stream_object(self) -> tuple[generic.Reference, generic.StreamObject]:
        ref, stream = super()._read_xref_stream_object()
        # Checked before pyHanko iterates the entries: it yields one entry per declared index,
        # with default values when the data runs short, so a 257-byte file can declare
        # millions of entries; and it converts fields wider than 8 bytes with big-int
        # arithmetic that is quadratic in the width.
        self._add_entries(_declared_xref_stream_entries(stream))
        return ref, stream

    def _read_xref_stream(self, declared_startxref: int) -> Any:
        self._count_section()
        return super()._read_xref_stream(declared_startxref)

    def _read_xref_table(self, declared_startxref: int) -> Any:
        self._count_section()
        result = super()._read_xref_table(declared_startxref)
        # A classic table costs 20 bytes of file per entry, so its parse is already bounded
        # by the input size; its entries still count towards the total.
        section = self.sections[-1].xref_data
        self._add_entries(len(section.explicit_refs_in_revision))
        return result


def _int(value: object) -> int | None:
    return int(value) if isinstance(value, generic.NumberObject) else None


def _declared_xref_stream_entries(stream: generic.StreamObject) -> int:
    """Entries pyHanko will iterate for this xref stream (ISO 32000-1 §7.5.8.2, Table 17)."""
    widths = stream.raw_get("/W") if "/W" in stream else None
    if isinstance(widths, generic.ArrayObject):
        for w in widths:
            value = _int(w)
            if value is not None and not 0 <= value <= 8:
                raise LimitExceeded(MALFORMED_XREF, f"/W field width {value} (at most 8 bytes)")
    index = stream.raw_get("/Index") if "/Index" in stream else None
    if isinstance(index, generic.ArrayObject):
        total = 0
        for n, value in enumerate(index):
            count = _int(value)
            if n % 2 == 1 and count is not None and count > 0:
                total += count
        return total
    size = _int(stream.raw_get("/Size")) if "/Size" in stream else None
    return max(size or 0, 0)


def _limited_reader(
    stream: BytesIO, limits: VerificationLimits, strict: bool = False
) -> PdfFileReader:
    """``PdfFileReader.__init__`` of pyHanko 0.38 with :class:`_LimitedXRefBuilder`."""
    reader = PdfFileReader.__new__(PdfFileReader)
    reader._security_handler = None
    reader.strict = strict
    stream.seek(0, os.SEEK_END)
    reader._decode_context = DecodeContext(limits.decode_limits(), input_size=stream.tell())
    reader.resolved_objects = {}
    reader._header_version = None
    reader._input_version = None
    reader._historical_resolver_cache = {}
    reader.stream = stream
    reader._header_version = _read_header_version(stream)
    stream.seek(-1, os.SEEK_END)
    last_startxref = process_data_at_eof(stream)
    builder = _LimitedXRefBuilder(
        limits, handler=reader, stream=stream, strict=strict, last_startxref=last_startxref
    )
    reader.xrefs = XRefCache(reader, builder.read_xrefs())
    reader.last_startxref = builder.last_startxref
    reader.trailer = builder.trailer
    reader.has_xref_stream = builder.has_xref_stream
    reader._embedded_signatures = None
    return reader


def open_reader(data: bytes, limits: VerificationLimits = DEFAULT_LIMITS) -> PdfFileReader:
    """Open untrusted PDF bytes with every limit applied while the cross-reference is read.

    Non-strict, as viewers read (``strict=False``). A prefix before ``%PDF-`` (within the first
    1024 bytes) is dropped and offsets count from the header, as viewers do; the prefix is
    covered by no signature, so a caller that cares reports it (see :func:`pdf_header_offset`).
    Streams are decoded lazily later, under ``limits.decode_limits()``, so a decompression
    bomb elsewhere in the file surfaces at first use as ``PdfDecodeLimitError``: pass whatever
    is raised then to :func:`classify_exception`.

    :raises LimitExceeded: ``FILE_TOO_LARGE``, ``TOO_MANY_REVISIONS``, ``TOO_MANY_OBJECTS``,
        ``MALFORMED_XREF``, ``DECOMPRESSION_LIMIT`` (xref or object stream), ``NESTING_TOO_DEEP``
        or ``MEMORY_LIMIT``.
    :raises MalformedPdf: ``NOT_PDF`` (no header in the first 1024 bytes) or ``MALFORMED_PDF``
        (anything else the parser rejects; ``detail`` names its exception).
    """
    if len(data) > limits.max_input_bytes:
        raise LimitExceeded(FILE_TOO_LARGE, f"{len(data)} bytes (limit {limits.max_input_bytes})")
    start = pdf_header_offset(data)
    if start is None:
        raise MalformedPdf(NOT_PDF, "no %PDF- header in the first 1024 bytes")
    try:
        return _limited_reader(BytesIO(data[start:] if start else data), limits)
    except LimitExceeded:
        raise
    except Exception as exc:  # noqa: BLE001 - every parser failure becomes a coded result
        limit = classify_exception(exc)
        if limit is not None:
            raise limit from None
        raise MalformedPdf(MALFORMED_PDF, f"{type(exc).__name__}: {exc}"[:300]) from None


@dataclass(frozen=True)
class StructureSummary:
    """What :func:`check_structure` counted."""

    revisions: int
    objects: int
    signatures: int
    form_fields: int


def _nesting_depth(obj: generic.PdfObject, limit: int) -> int:
    """Depth of directly nested arrays/dictionaries in ``obj`` (references are not followed);
    stops as soon as ``limit`` is exceeded. Iterative: the object may be hostile."""
    deepest = 0
    stack: list[tuple[object, int]] = [(obj, 1)]
    while stack:
        current, depth = stack.pop()
        if isinstance(current, generic.DecryptedObjectProxy):
            # An encrypted document's nested values come wrapped (decrypted on access); the
            # structure is the raw object's, measured without decrypting anything.
            current = current.raw_object
        if isinstance(current, generic.DictionaryObject):
            children: Iterator[object] = iter(dict.values(current))
        elif isinstance(current, generic.ArrayObject):
            children = iter(list.__iter__(current))
        else:
            continue
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        stack.extend((child, depth + 1) for child in children)
    return deepest


def _check_depth(obj: generic.PdfObject, limits: VerificationLimits, where: str) -> None:
    depth = _nesting_depth(obj, limits.max_nesting_depth)
    if depth > limits.max_nesting_depth:
        raise LimitExceeded(
            NESTING_TOO_DEEP, f"{where}: nesting deeper than {limits.max_nesting_depth}"
        )


def _resolve(value: object) -> object:
    """``value`` dereferenced and decrypted (see :func:`_nesting_depth`): an encrypted
    document's fields are counted like a plain one's."""
    if isinstance(value, generic.IndirectObject):
        value = value.get_object()
    if isinstance(value, generic.DecryptedObjectProxy):
        value = value.decrypted
    return value


def _count_fields(root: generic.DictionaryObject, limits: VerificationLimits) -> tuple[int, int]:
    """(field visits, filled signature fields) of the AcroForm tree, enumerated the way
    pyHanko's ``enumerate_sig_fields`` does (once per path, ``/FT`` inherited, a field needs
    ``/T``), but iteratively and bounded."""
    acroform = _resolve(root.raw_get("/AcroForm")) if "/AcroForm" in root else None
    if not isinstance(acroform, generic.DictionaryObject) or "/Fields" not in acroform:
        return 0, 0
    visits = 0
    signatures = 0
    # (field list, inherited /FT, depth, references on the path)
    stack: list[tuple[object, object, int, frozenset[object]]] = [
        (_resolve(acroform.raw_get("/Fields")), None, 1, frozenset())
    ]
    while stack:
        field_list, inherited_type, depth, path = stack.pop()
        if not isinstance(field_list, generic.ArrayObject):
            continue
        if depth > limits.max_nesting_depth:
            raise LimitExceeded(
                NESTING_TOO_DEEP, f"form field tree deeper than {limits.max_nesting_depth}"
            )
        for entry in list.__iter__(field_list):
            if not isinstance(entry, generic.IndirectObject):
                continue
            ref = entry.reference
            if ref in path:
                # pyHanko raises PdfReadError("Circular reference in form tree"); not a limit.
                continue
            visits += 1
            if visits > limits.max_form_fields:
                raise LimitExceeded(
                    TOO_MANY_FIELDS, f"more than {limits.max_form_fields} form field visits"
                )
            field = entry.get_object()
            if not isinstance(field, generic.DictionaryObject) or "/T" not in field:
                continue
            _check_depth(field, limits, f"form field {ref.idnum} {ref.generation}")
            field_type = field.raw_get("/FT") if "/FT" in field else inherited_type
            if field_type == "/Sig" and "/V" in field and _resolve(field.raw_get("/V")):
                signatures += 1
                if signatures > limits.max_signatures:
                    raise LimitExceeded(
                        TOO_MANY_SIGNATURES,
                        f"more than {limits.max_signatures} filled signature fields",
                    )
            if "/Kids" in field:
                stack.append(
                    (_resolve(field.raw_get("/Kids")), field_type, depth + 1, path | {ref})
                )
    return visits, signatures


def check_structure(
    reader: PdfFileReader, limits: VerificationLimits = DEFAULT_LIMITS
) -> StructureSummary:
    """Check the counts of an open document against ``limits`` before any signature is
    validated: revisions (xref sections), cross-reference entries, filled signature fields
    (the fields pyHanko's ``embedded_signatures`` will validate), form-field visits, and the
    nesting depth of the trailer, catalog, AcroForm and field dictionaries.

    Cheap: it reads the xref data already in memory and the form-field dictionaries only
    (which the verifier reads next anyway; they stay cached on the reader).

    :raises LimitExceeded: ``TOO_MANY_REVISIONS``, ``TOO_MANY_OBJECTS``,
        ``TOO_MANY_SIGNATURES``, ``TOO_MANY_FIELDS``, ``NESTING_TOO_DEEP``,
        ``DECOMPRESSION_LIMIT`` (a field in a bombed object stream) or ``MEMORY_LIMIT``.
    :raises MalformedPdf: ``MALFORMED_PDF`` when the catalog or form tree cannot be parsed.
    """
    try:
        xrefs = reader.xrefs
        revisions = xrefs.total_revisions
        if revisions > limits.max_revisions:
            raise LimitExceeded(
                TOO_MANY_REVISIONS, f"{revisions} revisions (limit {limits.max_revisions})"
            )
        objects = sum(
            len(xrefs.get_xref_data(rev).explicit_refs_in_revision) for rev in range(revisions)
        )
        if objects > limits.max_objects:
            raise LimitExceeded(
                TOO_MANY_OBJECTS, f"{objects} cross-reference entries (limit {limits.max_objects})"
            )
        trailer = reader.trailer.flatten()
        _check_depth(trailer, limits, "trailer")
        root = _resolve(trailer.raw_get("/Root")) if "/Root" in trailer else None
        if not isinstance(root, generic.DictionaryObject):
            raise MalformedPdf(MALFORMED_PDF, "no document catalog (/Root)")
        _check_depth(root, limits, "document catalog")
        fields, signatures = _count_fields(root, limits)
    except StructureError:
        raise
    except Exception as exc:  # noqa: BLE001 - every parser failure becomes a coded result
        limit = classify_exception(exc)
        if limit is not None:
            raise limit from None
        raise MalformedPdf(MALFORMED_PDF, f"{type(exc).__name__}: {exc}"[:300]) from None
    return StructureSummary(revisions, objects, signatures, fields)
