"""Repair of damaged PDFs that every viewer opens anyway, before signing them.

Documents from scanners, old writers and hand-edited workflows often have a wrong ``startxref``,
shifted object offsets, no cross-reference table at all, or bytes before ``%PDF-``. Viewers
rebuild the cross-reference table by scanning the file (ISO 32000-1 §7.5.4 describes the table,
not what to do when it is wrong; Acrobat, pdf.js and qpdf all reconstruct it). pyHanko, which
appends our signature as an incremental update, needs a correct table; so such an input is
rewritten by qpdf (through pikepdf, its maintained binding) into a clean file, and that file is
signed. The answer and the audit entry say ``repaired: true``: the signed document is no longer
a byte-for-byte extension of the upload.

One story with :mod:`signing_service._pdf_recovery`: damage that can be read around without
changing a byte (a stream whose ``/Length`` is wrong) is read around, in the reader, for
signing and verification alike; damage to the file's structure (where objects are) cannot be,
and only then is the file rewritten, only for signing, and only when unsigned. Two-step signing
does not repair (its step 1 answers ``MALFORMED_PDF`` for such a file).

An input that already carries a signature is never rewritten: a rewrite changes the bytes its
``/ByteRange`` covers and breaks it. It is refused (:class:`SignedDocumentDamaged`).

qpdf runs on client input, so the repair is bounded: it runs in a child process with a
wall-clock limit (:data:`REPAIR_SECONDS`), an address-space limit (:data:`REPAIR_MEMORY_BYTES`),
and a cap on the number of objects (:data:`MAX_REPAIR_OBJECTS`); the input itself is already
bounded by the upload limit. A crash or a hang of the child is a refusal, never the service's.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from pyhanko.pdf_utils.xref import XRefSectionType

from signing_service.pdfnames import name_pattern

if TYPE_CHECKING:
    from pyhanko.pdf_utils.reader import PdfFileReader

# Wall-clock limit of one repair (seconds): qpdf's reconstruction is a linear scan; a 50 MB
# file is rebuilt in well under a second here.
REPAIR_SECONDS = 20.0
# Address space of the repairing child: qpdf holds the objects of the file in memory.
REPAIR_MEMORY_BYTES = 1536 * 1024 * 1024
# More objects than this in a reconstructed file is refused (a flood of tiny objects).
MAX_REPAIR_OBJECTS = 500_000
# The signature-field walk of the child is bounded too.
MAX_FIELDS = 50_000

_EXIT_SIGNED = 3
_EXIT_UNREADABLE = 4
_EXIT_TOO_MANY = 5

# PDF white space (ISO 32000-1 §7.2.2: NUL included) and comments (§7.2.3), as a separator;
# possessive, so that a run of "%" cannot make the search backtrack.
_SEPARATOR = rb"(?:[\x00\t\n\f\r ]|%[^\r\n]*+)*+"
# A character that ends a name (white space or a delimiter), or the end of the data.
_NAME_END = rb"(?![^\x00\t\n\f\r ()<>\[\]{}/%])"


def _name(name: str) -> bytes:
    """:func:`signing_service.pdfnames.name_pattern` (the name in any spelling)."""
    return name_pattern(name)


# What only a signed PDF holds, in any spelling (red team 17b, R17B-3: "/ByteRange<NUL>["
# passed the former pattern rb"/ByteRange\s*\["): a /ByteRange name (required in every
# signature and document timestamp dictionary, ISO 32000-1 §12.8.1; anywhere, whatever
# follows it) or a /Type /Sig or /DocTimeStamp dictionary. A false positive costs only the
# repair of an unsigned file (refused as signed); a miss destroys a signature. SubFilter names
# (adbe.pkcs7.*, ETSI.CAdES.*) are not marks: a signature dictionary has its /ByteRange
# beside them, and an unsigned form's seed values (/SV /SubFilter) list them too. The
# lookahead after "/" keeps the search cheap on a file of slashes.
_SIGNATURE_MARKER = re.compile(
    rb"/(?=[BT#])(?:"
    + b"|".join(
        [
            _name("ByteRange"),
            _name("Type")
            + _SEPARATOR
            + b"/(?:"
            + _name("Sig")
            + b"|"
            + _name("DocTimeStamp")
            + b")"
            + _NAME_END,
        ]
    )
    + b")"
)


# What an in-use cross-reference entry must point at: the object's header "N G obj"
# (ISO 32000-1 §7.5.4), after at most a little white space (which poppler's lexer skips too).
_OBJECT_HEADER = re.compile(
    rb"[\x00\t\n\f\r ]{0,32}(\d{1,10})[\x00\t\n\f\r ]+(\d{1,5})[\x00\t\n\f\r ]+obj\b"
)
_TABLE = re.compile(rb"[\x00\t\n\f\r ]{0,32}xref")


def xref_damage(reader: PdfFileReader) -> str | None:
    """What is wrong with the cross-reference data pyHanko read ``reader``'s file through, or
    ``None`` when every section is where ``startxref``/``/Prev`` says and every in-use entry
    of a table points at its object's header.

    Why: pyHanko reads around a ``startxref`` a few bytes off (it looks for the table nearby)
    where poppler, PDFium and qpdf rebuild the table by scanning the file; when the file
    defines an object twice, the two readings are two documents (red team issue 10, F7: the
    service signed and verified "KHONG DUYET 1.000.000" while every viewer showed "DA DUYET
    1.000.000.000"). Such a file is repaired like any file pyHanko cannot read (then everyone
    reads qpdf's rebuild), or refused when it carries signatures.
    """
    data = reader.stream
    position = data.tell()
    try:
        return next((detail for _, detail in _xref_damage(reader, data)), None)
    finally:
        data.seek(position)


def xref_damages(reader: PdfFileReader) -> list[tuple[int, str]]:
    """Every revision of ``reader``'s file whose bytes hold wrong cross-reference data, as
    ``(revision, detail)`` (0 = the original document), at most one entry per revision, in
    revision order: a ``startxref``/``/Prev`` that does not point at its section (the pointer
    sits in the *next* revision's trailer, the final ``startxref`` in the last revision), a
    ``/XRefStm`` that does not, or an in-use entry that does not point at its own object's
    header ("N G obj" with the entry's number: an object listed under another number is the
    same two readings). Verification uses it per signature: damage written after a signed
    revision means the bytes judged are not the objects a repairing viewer draws."""
    data = reader.stream
    position = data.tell()
    try:
        found: dict[int, str] = {}
        for revision, detail in _xref_damage(reader, data):
            found.setdefault(revision, detail)
        return sorted(found.items())
    finally:
        data.seek(position)


def _xref_damage(reader: PdfFileReader, data: object) -> Iterator[tuple[int, str]]:
    """(revision whose bytes are wrong, detail) for every damage, section by section."""
    xrefs = reader.xrefs
    last = xrefs.total_revisions - 1
    for revision in range(xrefs.total_revisions):
        data_of = xrefs.get_xref_data(revision)
        checks = [(xrefs.get_xref_container_info(revision), data_of)]
        if data_of.hybrid is not None:
            # A hybrid file's /XRefStm (ISO 32000-1 §7.5.8.4): a stream beside the table.
            checks.append((data_of.hybrid.meta_info, data_of.hybrid.xref_data))
        for meta, section in checks:
            declared = meta.declared_startxref
            if meta.xref_section_type == XRefSectionType.STREAM or (
                meta.stream_ref is not None and section is not data_of
            ):
                ref = meta.stream_ref
                found = ref is not None and _object_at(data, declared, ref.idnum, ref.generation)
            else:
                found = _table_at(data, declared)
            if not found:
                # The pointer to a revision's main section is the next revision's /Prev (or
                # the final startxref); a /XRefStm pointer is in the revision's own trailer.
                holder = revision if section is not data_of or revision == last else revision + 1
                yield holder, f"revision {revision}: no cross-reference section at {declared}"
            for idnum, (generation, offset) in section.standard_xrefs.items():
                if not _object_at(data, offset, idnum, generation):
                    yield (
                        revision,
                        f"revision {revision}: object {idnum} {generation} not at {offset}",
                    )
                    break


def _table_at(stream: object, offset: int) -> bool:
    if offset < 0:
        return False
    stream.seek(offset)  # type: ignore[attr-defined]
    return _TABLE.match(stream.read(64)) is not None  # type: ignore[attr-defined]


def _object_at(stream: object, offset: int, idnum: int, generation: int) -> bool:
    if offset < 0:
        return False
    stream.seek(offset)  # type: ignore[attr-defined]
    match = _OBJECT_HEADER.match(stream.read(64))  # type: ignore[attr-defined]
    return match is not None and (int(match.group(1)), int(match.group(2))) == (
        idnum,
        generation,
    )


class RepairFailed(Exception):
    """qpdf could not rebuild the document within its bounds; ``detail`` says why."""


class SignedDocumentDamaged(Exception):
    """The damaged document carries signatures: rewriting it would break them."""


def carries_signatures(pdf: bytes) -> bool:
    """Whether the raw bytes hold a mark of a signature (:data:`_SIGNATURE_MARKER`: a
    ``/ByteRange``, or a ``/Type /Sig`` or ``/DocTimeStamp`` dictionary, in any spelling of
    the names, any white space and comments between): read without parsing, so that it
    also answers for a file no parser can read. The repairing child looks again after
    qpdf's reconstruction (:func:`_signature_found`), for what compression hides here."""
    return _SIGNATURE_MARKER.search(pdf) is not None


def repair(pdf: bytes) -> bytes:
    """A clean rewrite of ``pdf`` by qpdf (recovery mode), same content and objects.

    Raises :class:`SignedDocumentDamaged` when ``pdf`` carries a signature (a mark of one in
    the raw bytes, or a signature found after reconstruction: :func:`_signature_found`), and
    :class:`RepairFailed` when qpdf cannot rebuild it within :data:`REPAIR_SECONDS`,
    :data:`REPAIR_MEMORY_BYTES` and :data:`MAX_REPAIR_OBJECTS`.
    """
    if carries_signatures(pdf):
        raise SignedDocumentDamaged()
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "signing_service.signing.repair",
                str(MAX_REPAIR_OBJECTS),
                str(REPAIR_MEMORY_BYTES),
            ],
            input=pdf,
            capture_output=True,
            timeout=REPAIR_SECONDS,
            check=False,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    except subprocess.TimeoutExpired:
        raise RepairFailed(f"no result within {REPAIR_SECONDS:g} s") from None
    if done.returncode == _EXIT_SIGNED:
        raise SignedDocumentDamaged()
    if done.returncode != 0 or not done.stdout.startswith(b"%PDF-"):
        reason = {
            _EXIT_UNREADABLE: "qpdf could not rebuild it",
            _EXIT_TOO_MANY: f"more than {MAX_REPAIR_OBJECTS} objects",
        }.get(done.returncode, f"exit status {done.returncode}")
        raise RepairFailed(reason)
    return done.stdout


def _is_signature_dictionary(obj: object) -> bool:
    """A signature or document timestamp dictionary: ``/Type /Sig`` or ``/DocTimeStamp``, or
    a ``/ByteRange`` beside a ``/Contents`` (the type is optional, ISO 32000-1 Table 252)."""
    import pikepdf

    if isinstance(obj, pikepdf.Stream):
        obj = obj.stream_dict
    if not isinstance(obj, pikepdf.Dictionary):
        return False
    if obj.get("/Type") in (pikepdf.Name("/Sig"), pikepdf.Name("/DocTimeStamp")):
        return True
    return "/ByteRange" in obj and "/Contents" in obj


def _filled_signature_field(pdf: object) -> bool:
    """Whether the pikepdf document has a signature field with a value (bounded walk). ``/FT``
    is inheritable (ISO 32000-1 §12.7.3.1): a kid without its own ``/FT`` has its parent's,
    as pyHanko, viewers and :func:`signing.inputs.signature_fields` read it. A ``/V`` that is
    a signature dictionary counts whatever the field type says."""
    import pikepdf

    assert isinstance(pdf, pikepdf.Pdf)
    acroform = pdf.Root.get("/AcroForm")
    if not isinstance(acroform, pikepdf.Dictionary):
        return False
    fields = acroform.get("/Fields")
    pending: list[tuple[object, object]] = (
        [(field, None) for field in fields] if isinstance(fields, pikepdf.Array) else []
    )
    seen: set[tuple[int, int]] = set()
    visited = 0
    while pending and visited < MAX_FIELDS:
        field, inherited = pending.pop()
        if not isinstance(field, pikepdf.Dictionary):
            continue
        if field.is_indirect:
            if field.objgen in seen:
                continue
            seen.add(field.objgen)
        visited += 1
        field_type = field.get("/FT", inherited)
        value = field.get("/V")
        if value is not None and (
            field_type == pikepdf.Name.Sig or _is_signature_dictionary(value)
        ):
            return True
        kids = field.get("/Kids")
        if isinstance(kids, pikepdf.Array):
            pending.extend((kid, field_type) for kid in kids)
    return False


def _signature_found(pdf: object) -> bool:
    """Whether the rebuilt document carries a signature anywhere it could be read from: a
    catalog ``/Perms`` (certification, usage rights), a filled signature field, or any
    object that is a signature dictionary (objects in object streams included)."""
    import pikepdf

    assert isinstance(pdf, pikepdf.Pdf)
    if "/Perms" in pdf.Root or _filled_signature_field(pdf):
        return True
    return any(_is_signature_dictionary(obj) for obj in pdf.objects)


def _child(max_objects: int, memory_bytes: int) -> int:
    """The repairing child: the PDF on stdin, the rebuilt PDF on stdout."""
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
    import pikepdf

    data = sys.stdin.buffer.read()
    try:
        with pikepdf.open(io.BytesIO(data), attempt_recovery=True) as pdf:
            if len(pdf.objects) > max_objects:
                return _EXIT_TOO_MANY
            if _signature_found(pdf):
                return _EXIT_SIGNED
            out = io.BytesIO()
            # Streams are copied as they are (no recompression: same content, bounded work);
            # no object streams, so the incremental update that follows is a plain one.
            pdf.save(
                out,
                compress_streams=False,
                stream_decode_level=pikepdf.StreamDecodeLevel.none,
                object_stream_mode=pikepdf.ObjectStreamMode.disable,
                linearize=False,
                deterministic_id=True,
            )
    except (pikepdf.PdfError, RecursionError, ValueError, MemoryError):
        return _EXIT_UNREADABLE
    sys.stdout.buffer.write(out.getvalue())
    return 0


if __name__ == "__main__":
    sys.exit(_child(int(sys.argv[1]), int(sys.argv[2])))
