"""Stamp fonts that keep a PDF/A document PDF/A.

pyHanko embeds the stamp's TrueType font as a subset CIDFontType2 (``GlyphAccumulator``) with
no ``/CIDSet`` in its font descriptor. ISO 19005-1 (PDF/A-1) §6.3.5 requires one for every
embedded CIDFont subset, listing all CIDs present in the font program (veraPDF rule 6.3.5-3):
signing a PDF/A-1b document with a visible stamp made it non-conformant. ISO 19005-2/-3
(PDF/A-2, -3) §6.2.11.4.2 make it optional but require it complete when present, so the same
``/CIDSet`` serves every part; ISO 32000-1 Table 124 defines it (a bit per CID, high-order bit
first, CID 0 the first bit).

The font program is pyHanko's subset with glyph ids retained (``CIDToGIDMap /Identity``): the
glyphs asked for, ``.notdef`` and the components of composite glyphs (Vietnamese letters are
often composites) keep their ids, the others up to the last kept id stay as empty glyphs. Every
id of the program is "present in the font program" as veraPDF reads PDF/A-2 §6.2.11.4.2
("regardless of whether a CID in the font is referenced or used"; rule 6.2.11.4.2-2 failed with
only the kept glyphs listed), so the set lists them all: ``0 … numGlyphs - 1``.

PDF/A-1 also wants an appearance dictionary on every widget (ISO 19005-1 §6.9, veraPDF rule
6.9-2; PDF/A-2 and -3 exempt zero-size widgets): pyHanko's invisible fields (the document
timestamp of B-LTA, an invisible signature) have none. For a document that claims PDF/A-1, such
a field is created here first, with an empty appearance, and pyHanko fills it. Our verifier
then rates the revision that adds it at form filling (the appearance stream is a new object of
the field), not at validation-data updates, which is why this is done for PDF/A-1 only.
"""

from __future__ import annotations

import io
import re
import uuid
from dataclasses import dataclass
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.font.opentype import GlyphAccumulator, GlyphAccumulatorFactory
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import BasePdfFileWriter
from pyhanko.sign import fields


def cid_set(cids: set[int]) -> bytes:
    """The ``/CIDSet`` bytes for ``cids`` (ISO 32000-1 Table 124: bit ``cid`` set, counting
    from the high-order bit of the first byte)."""
    data = bytearray(max(cids) // 8 + 1 if cids else 1)
    for cid in cids:
        data[cid // 8] |= 0x80 >> (cid % 8)
    return bytes(data)


class PdfAGlyphAccumulator(GlyphAccumulator):
    """pyHanko's glyph accumulator whose subset CIDFont carries a complete ``/CIDSet``."""

    def prepare_write(self) -> None:
        already = self._write_prepared
        super().prepare_write()
        if already or not self.use_raw_gids:
            # A CID-keyed CFF font maps CIDs through its charset: not the fonts we embed
            # (TrueType), and left as pyHanko writes it.
            return
        descriptor = self.cidfont_obj["/FontDescriptor"]
        # After super().prepare_write() self.tt is the subset that is embedded.
        glyphs = len(self.tt.getGlyphOrder())
        stream = generic.StreamObject(stream_data=cid_set(set(range(glyphs))))
        stream.compress()
        descriptor[generic.NameObject("/CIDSet")] = self.writer.add_object(stream)


@dataclass(frozen=True)
class PdfAGlyphAccumulatorFactory(GlyphAccumulatorFactory):
    """:class:`GlyphAccumulatorFactory` making :class:`PdfAGlyphAccumulator` engines: pass it
    as the ``font`` of a stamp's ``TextBoxStyle``."""

    def create_font_engine(
        self, writer: BasePdfFileWriter, obj_stream: Any = None
    ) -> GlyphAccumulator:
        if obj_stream is None and writer.stream_xrefs and self.create_objstream_if_needed:
            obj_stream = writer.prepare_object_stream()
        with open(self.font_file, "rb") as handle:
            font = handle.read()
        return PdfAGlyphAccumulator(
            writer=writer,
            font_handle=io.BytesIO(font),
            font_size=self.font_size,
            ot_script_tag=self.ot_script_tag,
            ot_language_tag=self.ot_language_tag,
            writing_direction=self.writing_direction,
            bcp47_lang_code=self.bcp47_lang_code,
            obj_stream=obj_stream,
        )


# XMP identification schema (ISO 19005-1 §6.7.11): pdfaid:part as an attribute or an element.
_PART_ONE = re.compile(rb"pdfaid:part(?:\s*=\s*[\"']\s*1\s*[\"']|(?:\s[^<>]{0,500})?>\s*1\s*<)")
# Metadata larger than this is not searched (a claim sits in the first kilobytes).
MAX_METADATA_BYTES = 4 * 1024 * 1024


def claims_pdfa1(reader: PdfFileReader) -> bool:
    """Whether the document's XMP metadata says PDF/A-1 (``pdfaid:part`` 1)."""
    try:
        root = reader.root
        # Through __getitem__: pyHanko then reads (and caches) it as an XMP MetadataStream,
        # which its writer updates in place; read as a plain stream first, the writer would
        # replace the document's XMP (and its PDF/A claim) by a new one.
        if "/Metadata" not in root:
            return False
        stream = root["/Metadata"]
        if not isinstance(stream, generic.StreamObject):
            return False
        length = stream.get("/Length", 0)
        if isinstance(length, int) and length > MAX_METADATA_BYTES:
            return False
        data = stream.data
    except Exception:  # noqa: BLE001 - unreadable metadata claims nothing
        return False
    return _PART_ONE.search(data[:MAX_METADATA_BYTES]) is not None


def invisible_field_for_pdfa1(
    writer: IncrementalPdfFileWriter, name: str | None = None
) -> str | None:
    """For a document that claims PDF/A-1: create an invisible signature field (``name``, by
    default ``Timestamp-<uuid>`` as pyHanko names document timestamps) whose widget has an
    empty appearance, and return its name for pyHanko to fill; ``None`` (nothing done) for
    any other document."""
    if not claims_pdfa1(writer.prev):
        return None
    name = name or f"Timestamp-{uuid.uuid4()}"
    if any(True for _ in fields.enumerate_sig_fields(writer.prev, with_name=name)):
        return name  # a prepared field of the document: its own widget is used
    fields.append_signature_field(writer, fields.SigFieldSpec(sig_field_name=name, on_page=0))
    ((_, _, ref),) = fields.enumerate_sig_fields(writer, with_name=name)
    appearance = generic.StreamObject(
        {
            generic.NameObject("/Type"): generic.NameObject("/XObject"),
            generic.NameObject("/Subtype"): generic.NameObject("/Form"),
            generic.NameObject("/BBox"): generic.ArrayObject(
                [generic.NumberObject(v) for v in (0, 0, 1, 1)]
            ),
            generic.NameObject("/Resources"): generic.DictionaryObject(),
        },
        stream_data=b"q Q",
    )
    ref.get_object()[generic.NameObject("/AP")] = generic.DictionaryObject(
        {generic.NameObject("/N"): writer.add_object(appearance)}
    )
    return name
