"""Screening corpus built by the tests themselves: valid files of every allowed type, and every
kind of hostile file the storage issue names (the API and storage parts come with that issue)."""

from __future__ import annotations

import io
import zipfile

import pytest

from signing_service.screening import ARCHIVE_SIGNATURES, ScreeningPolicy, screen
from tests.support.files import (
    HOSTILE,
    PDF_ZIP_EOF_COMMENT,
    VALID,
    between_objects,
    payload_zip,
    pdf_with,
)
from tests.support.pdfs import make_pdf


@pytest.mark.parametrize(("name", "data", "media_type"), VALID, ids=[v[0] for v in VALID])
def test_valid_files_are_accepted(name: str, data: bytes, media_type: str) -> None:
    result = screen(data, name)
    assert result.accepted, (result.code, result.detail)
    assert result.media_type == media_type


@pytest.mark.parametrize(("name", "data", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_are_refused_with_their_code(name: str, data: bytes, code: str) -> None:
    result = screen(data, name)
    assert result.code == code, (result.code, result.detail)
    assert result.message and not result.message.isascii()


def test_active_pdf_sanitized_copy_when_the_policy_says_so() -> None:
    result = screen(
        pdf_with("javascript"), "js.pdf", ScreeningPolicy(pdf_active_content="sanitize")
    )
    assert result.accepted and result.sanitized is not None
    assert "JavaScript" in result.active_content
    again = screen(result.sanitized, "clean.pdf")
    assert again.accepted and again.active_content == []


def test_signed_pdf_is_never_sanitized(dev_pki) -> None:  # type: ignore[no-untyped-def]
    from tests.test_existing_signatures import signed_locally

    # Signed by another tool: the service itself refuses to sign active content.
    signed = signed_locally(dev_pki[0], "spare-seal", pdf_with("javascript"))
    result = screen(signed, "signed.pdf", ScreeningPolicy(pdf_active_content="sanitize"))
    assert result.signed_pdf
    assert result.code == "SIGNED_PDF_ACTIVE_CONTENT"
    assert result.sanitized is None


def test_pdf_zip_polyglot_ending_in_eof_is_refused() -> None:
    """Red team 21b R21B-4: the ZIP's comment ends in %%EOF, so nothing follows the last
    %%EOF; a ZIP reader still lists the program inside."""
    assert zipfile.ZipFile(io.BytesIO(PDF_ZIP_EOF_COMMENT)).namelist() == ["payload.exe"]
    assert PDF_ZIP_EOF_COMMENT.rstrip().endswith(b"%%EOF")
    result = screen(PDF_ZIP_EOF_COMMENT, "quyet-dinh.pdf")
    assert result.code == "POLYGLOT_FILE", (result.code, result.detail)
    assert "ZIP" in result.detail


ARCHIVES = {
    "zip": payload_zip(),
    "rar": b"Rar!\x1a\x07\x01\x00" + b"\x00" * 40,
    "7z": b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 40,
    "cab": b"MSCF\x00\x00\x00\x00" + b"\x00" * 40,
}


@pytest.mark.parametrize("kind", ARCHIVES)
def test_archive_between_pdf_objects_is_refused(kind: str) -> None:
    data = between_objects(make_pdf(), ARCHIVES[kind])
    result = screen(data, "quyet-dinh.pdf")
    assert result.code == "POLYGLOT_FILE", (result.code, result.detail)


def test_chance_signatures_in_stream_data_after_a_prefix_are_accepted_when_signing() -> None:
    """Bytes before %PDF- (a file signing accepts, field input c15c's kind) shift every offset
    qpdf reads: no stream was found and stream data by chance holding an archive signature was
    refused POLYGLOT_FILE (red team 22 R22-3). A ZIP after the file is still found."""
    from signing_service.screening import pdf_archive_polyglot

    chance = bytes(range(256)) * 4 + b"PK\x03\x04" + bytes(range(256))
    data = b"\x00\x00junk-before-hdr" + make_pdf(extra_stream=chance)
    assert b"PK\x03\x04" in data
    assert pdf_archive_polyglot(data) is None
    assert pdf_archive_polyglot(data + payload_zip()) is not None


def test_zip_inside_stream_data_that_a_zip_reader_opens_is_refused() -> None:
    """Stream data is otherwise left alone, but a ZIP whose end record a ZIP reader finds (in
    the last 64 KiB) is a ZIP wherever it sits."""
    data = make_pdf(extra_stream=payload_zip())
    assert zipfile.ZipFile(io.BytesIO(data)).namelist() == ["payload.exe"]
    result = screen(data, "quyet-dinh.pdf")
    assert result.code == "POLYGLOT_FILE", (result.code, result.detail)
    assert "ZIP" in result.detail


def test_archive_signatures_by_chance_in_stream_data_are_accepted() -> None:
    """Compressed data holds any four bytes by chance: signatures inside a stream's data (here
    every one the check knows, and an end record whose central directory is not there) are not
    a polyglot."""
    noise = bytes(range(256)) * 4
    # Past the first KiB, where a RAR/7z/CAB/xz signature refuses (R23B-2).
    chance = (
        noise
        + noise[:100]
        + b"".join(
            noise[i * 100 : i * 100 + 100] + signature
            for i, signature in enumerate(
                (
                    b"PK\x03\x04",
                    b"PK\x01\x02",
                    b"PK\x05\x06\x00\x00\x00\x00\x01\x00\x01\x00\x10\x00\x00\x00\x99\x00\x00\x00\x00\x00",
                    b"PK\x06\x06",
                    # A 7z signature whose start header's CRC does not hold (RAR's and CAB's 7-
                    # and 8-byte signatures are refused wherever they are: 2^-56 by chance).
                    b"7z\xbc\xaf\x27\x1c",
                )
            )
        )
    )
    data = make_pdf(extra_stream=chance)
    assert b"PK\x03\x04" in data and b"PK\x05\x06" in data
    result = screen(data, "quyet-dinh.pdf")
    assert result.accepted, (result.code, result.detail)


@pytest.mark.parametrize("signature", sorted(ARCHIVE_SIGNATURES), ids=repr)
def test_the_signing_check_refuses_what_an_archive_program_opens(signature: bytes) -> None:
    """Signing refuses an archive's header in front of %PDF-, a RAR/7z/CAB/xz signature in the
    first KiB (7-Zip searches for those: R23B-2) and a ZIP whose end record a ZIP reader finds;
    it does not search the whole document per signature kind (that cost more than the
    signature: make bench), so a ZIP signature by chance inside the file, or any past the
    first KiB, is not a polyglot there (the attachments' screening still scans outside stream
    data)."""
    from signing_service.screening import SCANNED_ARCHIVE_SIGNATURES, pdf_archive_polyglot

    pdf = make_pdf()
    assert pdf_archive_polyglot(signature + b"\x00" * 8 + pdf) is not None
    at = pdf.index(b"2 0 obj")
    assert at < 1000
    early = pdf_archive_polyglot(pdf[:at] + signature + b"\n" + pdf[at:])
    assert (early is not None) == (signature in SCANNED_ARCHIVE_SIGNATURES), early
    late = make_pdf(extra_stream=bytes(2048) + signature + bytes(64))
    assert late.index(signature) > 1024
    searched = signature in (b"Rar!\x1a\x07", b"MSCF\x00\x00\x00\x00")
    assert (pdf_archive_polyglot(late) is not None) == searched
    assert pdf_archive_polyglot(pdf + payload_zip()) is not None


def _zip_end_patched(archive: bytes, **fields: int) -> bytes:
    """``archive`` with fields of its end of central directory record changed (offsets as in
    APPNOTE 4.3.16: disk 4, cd_disk 6, entries_here 8, entries 10)."""
    import struct

    at = archive.rindex(b"PK\x05\x06")
    record = bytearray(archive[at : at + 22])
    offsets = {"disk": 4, "cd_disk": 6, "entries_here": 8, "entries": 10}
    for name, value in fields.items():
        struct.pack_into("<H", record, offsets[name], value)
    return archive[:at] + bytes(record) + archive[at + 22 :]


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"entries_here": 0, "entries": 0},
        {"disk": 1, "cd_disk": 1},
        {"entries_here": 1, "entries": 2},
        {"disk": 7, "cd_disk": 3, "entries_here": 9, "entries": 0},
    ],
    ids=["as-written", "entries-0", "disk-1", "counts-differ", "all-wrong"],
)
def test_a_zip_whose_end_record_lies_is_still_a_zip(fields: dict[str, int]) -> None:
    """Red team 23b, R23B-1: an end record saying 0 entries, disk 1 or unequal counts made the
    check give up, while Python's zipfile (like jar, 7-Zip and unzip) follows the central
    directory regardless: the sealed PDF still gave out the program inside."""
    from signing_service.screening import pdf_archive_polyglot

    data = make_pdf(extra_stream=_zip_end_patched(payload_zip(), **fields))
    assert zipfile.ZipFile(io.BytesIO(data)).read("payload.exe").startswith(b"MZ")
    assert pdf_archive_polyglot(data) is not None
    result = screen(data, "quyet-dinh.pdf")
    assert result.code == "POLYGLOT_FILE", (result.code, result.detail)


def test_a_7z_archive_in_the_first_kib_is_refused() -> None:
    """Red team 23b, R23B-2: a 7z archive in an unfiltered stream at byte ~200; 7-Zip opens
    the PDF as that archive with no option. Refused by signing and by the attachments'
    screening (which otherwise leaves stream data alone)."""
    from signing_service.screening import pdf_archive_polyglot

    archive = b"7z\xbc\xaf\x27\x1c\x00\x04" + bytes(24) + b"MZ" + b"\x90" * 64
    data = make_pdf(extra_stream=archive)
    assert data.index(b"7z\xbc\xaf") < 1024
    assert pdf_archive_polyglot(data) is not None
    result = screen(data, "quyet-dinh.pdf")
    assert result.code == "POLYGLOT_FILE", (result.code, result.detail)


def _sevenzip(valid: bool = True) -> bytes:
    """A 7z signature header (7zFormat.txt) whose start header's CRC-32 holds unless
    ``valid`` is false, followed by a payload."""
    import struct
    import zlib

    start = struct.pack("<QQI", 64, 32, 0)
    crc = zlib.crc32(start) ^ (0 if valid else 1)
    return b"7z\xbc\xaf\x27\x1c\x00\x04" + struct.pack("<I", crc) + start + b"MZ" + bytes(94)


@pytest.mark.parametrize("offset", [1101, 200_000, 3_000_000])
def test_an_archive_7zip_finds_by_searching_is_refused_wherever_it_is(offset: int) -> None:
    """Red team 23c, R23C-1/2: 7-Zip searches the first 8 MiB of a file for an archive: a
    7z (its start header's CRC holding) at byte 1101 or further in, and a whole ZIP inside
    stream data with more than 64 KiB of PDF after it, were sealed and extracted from the
    signed document. A 7z signature whose CRC does not hold is chance."""
    from signing_service.screening import pdf_archive_polyglot

    for archive, refused in (
        (_sevenzip(), True),
        (_sevenzip(valid=False), False),
        (payload_zip(), True),
    ):
        # More than the 128 KiB tail after it: only a search of the file finds it.
        data = make_pdf(extra_stream=bytes(offset) + archive + bytes(200_000))
        assert data.index(archive[:6]) >= offset
        assert len(data) - data.index(archive[:6]) > 128 * 1024
        assert (pdf_archive_polyglot(data) is not None) == refused, archive[:6]
        assert (screen(data, "quyet-dinh.pdf").code == "POLYGLOT_FILE") == refused


def test_a_pdf_with_object_streams_is_screened_not_a_500() -> None:
    """Red team 23c, R23C-4: a compressed object (in an object stream: every document this
    service signs) has no offset, and the stream scan added one to None."""
    import pikepdf

    out = io.BytesIO()
    with pikepdf.open(io.BytesIO(make_pdf())) as pdf:
        pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    result = screen(out.getvalue(), "quyet-dinh.pdf")
    assert result.accepted, (result.code, result.detail)
