"""Small PDFs and the incremental updates that PDF writers and attackers append to them.

Each builder returns the bytes of a whole file. Base documents are made with pikepdf; updates
are appended with pyHanko's ``IncrementalPdfFileWriter`` (as Acrobat and other writers append
them), or, where pyHanko cannot express the update (free entries in a cross-reference
section), by :func:`append_raw_update`, which writes the section by hand.

The updates imitate what the named writer does, not how it does it byte for byte: what matters
to the difference analysis is which objects change and how.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from io import BytesIO

import pikepdf
from asn1crypto import x509
from pikepdf import Array, Dictionary, Name
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.generic import pdf_name
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields
from pyhanko.sign.fields import MDPPerm, SigFieldSpec
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.validation.dss import DocumentSecurityStore

from signing_service.signing.keys import LoadedKey

FIELD_NAME = "so_tien"
FIELD_VALUE = "1.000.000 VND"
FIELD_RECT = (150, 700, 400, 724)


def _appearance_content(text: str) -> bytes:
    return f"/Tx BMC q BT /Helv 12 Tf 0 g 4 7 Td ({text}) Tj ET Q EMC".encode()


def base_pdf(
    *,
    tagged: bool = False,
    text_field: bool = False,
    comment: bool = False,
    empty_signature_field: bool = False,
    outline: bool = False,
    comment_icon_on_page: bool = False,
) -> bytes:
    """A one-page A4 document with the parts a test needs.

    ``tagged``: a structure tree (Document > P, the page text marked as MCID 0, a ParentTree),
    as an accessible (PDF/UA) document has. ``text_field``: a text field ``so_tien`` whose value
    and appearance both read ``1.000.000 VND`` and whose font is also in ``/AcroForm /DR``.
    ``comment``: a sticky note (``/Text`` annotation) with a popup. ``empty_signature_field``:
    an unsigned, visible signature field ``ChuaKy``. ``outline``: one bookmark to page 1.
    ``comment_icon_on_page``: the page content also draws the note's appearance stream (one
    object used in two places).
    """
    pdf = pikepdf.new()
    page = pdf.add_blank_page(page_size=(595, 842))
    font = pdf.make_indirect(
        Dictionary(
            Type=Name.Font,
            Subtype=Name.Type1,
            BaseFont=Name.Helvetica,
            Encoding=Name.WinAnsiEncoding,
        )
    )
    page.Resources = Dictionary(Font=Dictionary(F1=font))
    text = b"BT /F1 14 Tf 72 760 Td (Quyet dinh so 123/QD-UBND) Tj ET"
    if tagged:
        text = b"/P <</MCID 0>> BDC " + text + b" EMC"
    page.Contents = pdf.make_stream(text)
    annots = Array()
    acro_fields = Array()
    if text_field:
        appearance = pdf.make_stream(
            _appearance_content(FIELD_VALUE),
            Type=Name.XObject,
            Subtype=Name.Form,
            BBox=Array([0, 0, FIELD_RECT[2] - FIELD_RECT[0], FIELD_RECT[3] - FIELD_RECT[1]]),
            Resources=Dictionary(Font=Dictionary(Helv=font)),
        )
        widget = pdf.make_indirect(
            Dictionary(
                Type=Name.Annot,
                Subtype=Name.Widget,
                FT=Name.Tx,
                T=FIELD_NAME,
                V=FIELD_VALUE,
                DA="/Helv 12 Tf 0 g",
                Rect=Array(list(FIELD_RECT)),
                F=4,
                P=page.obj,
                AP=Dictionary(N=appearance),
            )
        )
        annots.append(widget)
        acro_fields.append(widget)
    if empty_signature_field:
        sig_widget = pdf.make_indirect(
            Dictionary(
                Type=Name.Annot,
                Subtype=Name.Widget,
                FT=Name.Sig,
                T="ChuaKy",
                Rect=Array([350, 80, 545, 150]),
                F=4,
                P=page.obj,
            )
        )
        annots.append(sig_widget)
        acro_fields.append(sig_widget)
    if comment:
        note = pdf.make_indirect(
            Dictionary(
                Type=Name.Annot,
                Subtype=Name.Text,
                Rect=Array([72, 600, 92, 620]),
                Contents="Da kiem tra",
                F=4,
                P=page.obj,
            )
        )
        icon = pdf.make_stream(
            b"1 1 0 rg 0 0 20 20 re f",
            Type=Name.XObject,
            Subtype=Name.Form,
            BBox=Array([0, 0, 20, 20]),
        )
        note.AP = Dictionary(N=icon)
        if comment_icon_on_page:
            page.Resources.XObject = Dictionary(Icon=icon)
            page.Contents = pdf.make_stream(page.Contents.read_bytes() + b" q /Icon Do Q")
        popup = pdf.make_indirect(
            Dictionary(
                Type=Name.Annot,
                Subtype=Name.Popup,
                Rect=Array([100, 500, 300, 600]),
                Parent=note,
                P=page.obj,
            )
        )
        note.Popup = popup
        annots.append(note)
        annots.append(popup)
    if len(annots):
        page.Annots = pdf.make_indirect(annots)
    if len(acro_fields):
        pdf.Root.AcroForm = Dictionary(
            Fields=acro_fields,
            DR=Dictionary(Font=Dictionary(Helv=font)),
            DA="/Helv 0 Tf 0 g",
        )
    if tagged:
        page.StructParents = 0
        struct_root = pdf.make_indirect(Dictionary(Type=Name.StructTreeRoot))
        document = pdf.make_indirect(
            Dictionary(Type=Name.StructElem, S=Name.Document, P=struct_root)
        )
        paragraph = pdf.make_indirect(
            Dictionary(Type=Name.StructElem, S=Name.P, P=document, Pg=page.obj, K=0)
        )
        document.K = Array([paragraph])
        nums = Array([0, Array([paragraph])])
        if comment:
            # The signed comment is tagged too, as Acrobat tags comments in tagged documents.
            note_element = pdf.make_indirect(
                Dictionary(
                    Type=Name.StructElem,
                    S=Name.Annot,
                    P=document,
                    Pg=page.obj,
                    K=Dictionary(Type=Name.OBJR, Obj=note, Pg=page.obj),
                )
            )
            note.StructParent = 1
            document.K.append(note_element)
            nums.extend([1, note_element])
        struct_root.K = document
        struct_root.ParentTree = pdf.make_indirect(Dictionary(Nums=nums))
        struct_root.ParentTreeNextKey = len(nums) // 2
        pdf.Root.StructTreeRoot = struct_root
        pdf.Root.MarkInfo = Dictionary(Marked=True)
    if outline:
        outlines = pdf.make_indirect(Dictionary(Type=Name.Outlines, Count=1))
        item = pdf.make_indirect(
            Dictionary(
                Title="Quyet dinh",
                Parent=outlines,
                Dest=Array([page.obj, Name.Fit]),
            )
        )
        outlines.First = item
        outlines.Last = item
        pdf.Root.Outlines = outlines
    out = BytesIO()
    pdf.save(out, compress_streams=False, object_stream_mode=pikepdf.ObjectStreamMode.disable)
    return out.getvalue()


async def sign(
    data: bytes,
    key: LoadedKey,
    *,
    field_name: str = "Signature1",
    certify: MDPPerm | None = None,
    visible: bool = False,
) -> bytes:
    """Sign (approval) or, with ``certify``, certify with that DocMDP permission (B-B).

    A new field is created unless ``field_name`` names an existing empty one.
    """
    meta = PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
        certify=certify is not None,
        docmdp_permissions=certify or MDPPerm.FILL_FORMS,
    )
    spec = SigFieldSpec(field_name, box=(72, 80, 272, 140)) if visible else None
    writer = writer_over(data)
    out = BytesIO()
    await PdfSigner(meta, signer=key.signer, new_field_spec=spec).async_sign_pdf(writer, output=out)
    return out.getvalue()


def writer_over(data: bytes) -> IncrementalPdfFileWriter:
    """An incremental writer over ``data``; an encrypted document (owner password only) is
    opened with the empty user password, as the service and viewers do."""
    writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
    if writer.prev.encrypted:
        writer.encrypt("")
    return writer


@contextmanager
def update(data: bytes, result: list[bytes]) -> Iterator[IncrementalPdfFileWriter]:
    """One incremental update: edit the writer inside the block; the new file is appended to
    ``result`` when the block ends."""
    writer = writer_over(data)
    yield writer
    out = BytesIO()
    writer.write(out)
    result.append(out.getvalue())


def edit(data: bytes, change: Callable[[IncrementalPdfFileWriter], None]) -> bytes:
    """Apply ``change`` to a writer over ``data`` and return the file with the new revision."""
    result: list[bytes] = []
    with update(data, result) as writer:
        change(writer)
    return result[0]


def first_page(
    writer: IncrementalPdfFileWriter,
) -> tuple[generic.IndirectObject, generic.DictionaryObject]:
    page_ref = writer.root["/Pages"]["/Kids"].raw_get(0)
    return page_ref, page_ref.get_object()


def _annots(
    writer: IncrementalPdfFileWriter, page: generic.DictionaryObject
) -> generic.ArrayObject:
    """The page's /Annots array, marked for writing wherever it lives."""
    if "/Annots" not in page:
        page["/Annots"] = generic.ArrayObject()
        writer.update_container(page)
        return page["/Annots"]
    raw = page.raw_get("/Annots")
    annots = raw.get_object()
    if isinstance(raw, generic.IndirectObject):
        writer.mark_update(raw)
    else:
        writer.update_container(page)
    return annots


def _name(s: str) -> generic.NameObject:
    return pdf_name(s)


def _form_xobject(
    writer: IncrementalPdfFileWriter, content: bytes, bbox: tuple[float, float, float, float]
) -> generic.IndirectObject:
    stream = generic.StreamObject(
        {
            _name("/Type"): _name("/XObject"),
            _name("/Subtype"): _name("/Form"),
            _name("/BBox"): generic.ArrayObject(generic.FloatObject(v) for v in bbox),
        },
        stream_data=content,
    )
    return writer.add_object(stream)


# --- what writers do ----------------------------------------------------------------------------


def add_comment(writer: IncrementalPdfFileWriter, *, tag: bool = False) -> generic.IndirectObject:
    """A reader adds a sticky note (Acrobat "Add comment"). With ``tag``, Acrobat's way in a
    tagged document: a new /Annot structure element holding an OBJR to the note, appended to the
    Document element, and a ParentTree entry for the note's /StructParent."""
    page_ref, page = first_page(writer)
    note = generic.DictionaryObject(
        {
            _name("/Type"): _name("/Annot"),
            _name("/Subtype"): _name("/Text"),
            _name("/Rect"): generic.ArrayObject(map(generic.NumberObject, (400, 600, 420, 620))),
            _name("/Contents"): generic.TextStringObject("Can bo sung ho so"),
            _name("/P"): page_ref,
        }
    )
    note_ref = writer.add_object(note)
    note[_name("/AP")] = generic.DictionaryObject(
        {_name("/N"): _form_xobject(writer, b"1 1 0 rg 0 0 20 20 re f", (0, 0, 20, 20))}
    )
    _annots(writer, page).append(note_ref)
    if tag:
        tag_annotation(writer, note_ref, page_ref, "/Annot")
    return note_ref


def tag_annotation(
    writer: IncrementalPdfFileWriter,
    annot_ref: generic.IndirectObject,
    page_ref: generic.IndirectObject,
    role: str,
) -> generic.IndirectObject:
    """Give a new annotation or widget its structure element, as Acrobat does in a tagged PDF."""
    struct_root = writer.root["/StructTreeRoot"]
    document_ref = struct_root.raw_get("/K")
    document = document_ref.get_object()
    key = int(struct_root["/ParentTreeNextKey"])
    element = writer.add_object(
        generic.DictionaryObject(
            {
                _name("/Type"): _name("/StructElem"),
                _name("/S"): _name(role),
                _name("/P"): document_ref,
                _name("/Pg"): page_ref,
                _name("/K"): generic.DictionaryObject(
                    {
                        _name("/Type"): _name("/OBJR"),
                        _name("/Obj"): annot_ref,
                        _name("/Pg"): page_ref,
                    }
                ),
            }
        )
    )
    document["/K"].append(element)
    writer.update_container(document)
    annot_ref.get_object()[_name("/StructParent")] = generic.NumberObject(key)
    writer.update_container(annot_ref.get_object())
    parent_tree = struct_root["/ParentTree"]
    parent_tree["/Nums"].extend([generic.NumberObject(key), element])
    writer.update_container(parent_tree)
    struct_root[_name("/ParentTreeNextKey")] = generic.NumberObject(key + 1)
    writer.update_container(struct_root)
    return element


def edit_comment(writer: IncrementalPdfFileWriter, text: str, *, action: bool = False) -> None:
    """A reader edits the text of the first sticky note (with ``action``, also gives it a
    JavaScript action: no longer a plain comment)."""
    _, page = first_page(writer)
    for ref in page["/Annots"]:
        note = ref.get_object()
        if note.get("/Subtype") == "/Text":
            note[_name("/Contents")] = generic.TextStringObject(text)
            if action:
                note[_name("/A")] = javascript_action()
            writer.mark_update(ref)
            return
    raise LookupError("no sticky note")


def add_signature_field(
    writer: IncrementalPdfFileWriter,
    name: str = "Signature2",
    *,
    tabs: bool = True,
    tag: bool = False,
    visible: bool = True,
) -> None:
    """Acrobat "Prepare form > add a digital signature field": an empty signature field and
    widget; Acrobat also sets the page's tab order (``/Tabs /S``) and, in a tagged document,
    tags the widget as a /Form element."""
    box = (350, 80, 545, 150) if visible else (0, 0, 0, 0)
    fields.append_signature_field(writer, SigFieldSpec(name, box=box, on_page=0))
    page_ref, page = first_page(writer)
    if tabs:
        page[_name("/Tabs")] = _name("/S")
        writer.update_container(page)
    if tag:
        for ref in page["/Annots"]:
            widget = ref.get_object()
            if widget.get("/T") == name:
                tag_annotation(writer, ref, page_ref, "/Form")


def fill_text_field(
    writer: IncrementalPdfFileWriter, value: str, *, in_place: bool = False
) -> None:
    """Form filling: a new value and an appearance regenerated for it (a new stream, or with
    ``in_place`` the old stream object rewritten, as some writers do)."""
    widget = _text_field(writer)
    widget[_name("/V")] = generic.TextStringObject(value)
    _set_appearance(writer, widget, value, in_place=in_place)
    writer.update_container(widget)


def _text_field(writer: IncrementalPdfFileWriter) -> generic.DictionaryObject:
    for ref in writer.root["/AcroForm"]["/Fields"]:
        field = ref.get_object()
        # [] decrypts in an encrypted document (.get() would give pyHanko's proxy).
        if "/T" in field and field["/T"] == FIELD_NAME:
            return field
    raise LookupError(FIELD_NAME)


def _set_appearance(
    writer: IncrementalPdfFileWriter, widget: generic.DictionaryObject, text: str, *, in_place: bool
) -> None:
    old_stream_ref = widget["/AP"].raw_get("/N")
    old_stream = old_stream_ref.get_object()
    if in_place:
        new_stream = generic.StreamObject(
            {k: v for k, v in old_stream.items() if k != "/Length"},
            stream_data=_appearance_content(text),
        )
        writer.objects[(old_stream_ref.generation, old_stream_ref.idnum)] = new_stream
        return
    stream = generic.StreamObject(
        {k: v for k, v in old_stream.items() if k != "/Length"},
        stream_data=_appearance_content(text),
    )
    widget[_name("/AP")] = generic.DictionaryObject({_name("/N"): writer.add_object(stream)})


# --- what attackers do --------------------------------------------------------------------------


def replace_field_appearance(
    writer: IncrementalPdfFileWriter, text: str = "9.000.000 VND", *, in_place: bool = False
) -> None:
    """Shadow attack "replace" (Mainka et al., NDSS 2021): the field's appearance now reads
    ``text`` while its value ``/V`` stays as signed."""
    widget = _text_field(writer)
    _set_appearance(writer, widget, text, in_place=in_place)
    writer.update_container(widget)


def replace_form_font(writer: IncrementalPdfFileWriter) -> None:
    """Shadow attack "replace" through the form's default resources: ``/AcroForm /DR /Font
    /Helv`` now points at another font (one whose glyphs could draw other digits)."""
    acroform = writer.root["/AcroForm"]
    other = writer.add_object(
        generic.DictionaryObject(
            {
                _name("/Type"): _name("/Font"),
                _name("/Subtype"): _name("/Type1"),
                _name("/BaseFont"): _name("/Courier"),
            }
        )
    )
    dr = acroform["/DR"]
    dr["/Font"][_name("/Helv")] = other
    writer.update_container(acroform)


def add_form_font(writer: IncrementalPdfFileWriter) -> None:
    """What Acrobat does when a field is filled with a font the form did not list: a new entry
    in ``/AcroForm /DR /Font`` (existing entries untouched)."""
    acroform = writer.root["/AcroForm"]
    zadb = writer.add_object(
        generic.DictionaryObject(
            {
                _name("/Type"): _name("/Font"),
                _name("/Subtype"): _name("/Type1"),
                _name("/BaseFont"): _name("/ZapfDingbats"),
            }
        )
    )
    acroform["/DR"]["/Font"][_name("/ZaDb")] = zadb
    writer.update_container(acroform)


def set_need_appearances(writer: IncrementalPdfFileWriter) -> None:
    """Ask viewers to rebuild every field's appearance from its value: what was signed as the
    appearance is replaced on screen without any appearance stream changing."""
    acroform = writer.root["/AcroForm"]
    acroform[_name("/NeedAppearances")] = generic.BooleanObject(True)
    writer.update_container(acroform)


def hide_field(writer: IncrementalPdfFileWriter) -> None:
    """Set the Hidden flag on the filled field's widget (a "hide" variant on a form)."""
    widget = _text_field(writer)
    widget[_name("/F")] = generic.NumberObject(4 | 2)
    writer.update_container(widget)


def remove_annotations(
    writer: IncrementalPdfFileWriter,
    predicate: Callable[[generic.DictionaryObject], bool],
    *,
    from_fields: bool = True,
) -> list[generic.IndirectObject]:
    """Drop every annotation for which ``predicate`` holds from the first page's /Annots (and,
    with ``from_fields``, a removed widget's field from /AcroForm /Fields). Returns the removed
    references."""
    _, page = first_page(writer)
    annots = _annots(writer, page)
    removed = [ref for ref in annots if predicate(ref.get_object())]
    for ref in removed:
        annots.remove(ref)
    if from_fields and "/AcroForm" in writer.root:
        acroform = writer.root["/AcroForm"]
        fields_arr = acroform["/Fields"]
        kept = [ref for ref in fields_arr if ref not in removed]
        if len(kept) != len(fields_arr):
            acroform[_name("/Fields")] = generic.ArrayObject(kept)
            writer.update_container(acroform)
    return removed


def is_comment(annot: generic.DictionaryObject) -> bool:
    return annot.get("/Subtype") in ("/Text", "/Popup")


def is_field(name: str) -> Callable[[generic.DictionaryObject], bool]:
    return lambda annot: "/T" in annot and annot["/T"] == name


def untag_annotations(
    writer: IncrementalPdfFileWriter, annots: list[generic.IndirectObject]
) -> None:
    """Acrobat's side of deleting tagged annotations: their structure elements leave the
    Document element and their ParentTree entries go."""
    struct_root = writer.root["/StructTreeRoot"]
    document = struct_root["/K"]
    kids = document["/K"]
    gone = []
    for i in range(len(kids)):
        element = kids[i]
        objr = element.get("/K")
        if isinstance(objr, generic.DictionaryObject) and objr.raw_get("/Obj") in annots:
            gone.append(kids.raw_get(i))
    for ref in gone:
        kids.remove(ref)
    writer.update_container(document)
    parent_tree = struct_root["/ParentTree"]
    nums = parent_tree["/Nums"]
    kept = generic.ArrayObject()
    for i in range(0, len(nums), 2):
        if nums.raw_get(i + 1) not in gone:
            kept.extend([nums.raw_get(i), nums.raw_get(i + 1)])
    parent_tree[_name("/Nums")] = kept
    writer.update_container(parent_tree)


def remove_comment(writer: IncrementalPdfFileWriter) -> None:
    """A reader deletes the sticky note and its popup (Acrobat "Delete comment"), untagging it
    in a tagged document."""
    removed = remove_annotations(writer, is_comment)
    if "/StructTreeRoot" in writer.root:
        untag_annotations(writer, removed)


def add_outline(
    writer: IncrementalPdfFileWriter, action: generic.DictionaryObject | None = None
) -> None:
    """A reader adds a bookmark to page 1 (with ``action``, a bookmark that runs that action
    instead of going to a destination)."""
    page_ref, _ = first_page(writer)
    root = writer.root
    if "/Outlines" in root:
        outlines_ref = root.raw_get("/Outlines")
        outlines = outlines_ref.get_object()
    else:
        outlines = generic.DictionaryObject(
            {_name("/Type"): _name("/Outlines"), _name("/Count"): generic.NumberObject(0)}
        )
        outlines_ref = writer.add_object(outlines)
        root[_name("/Outlines")] = outlines_ref
        writer.update_root()
    item = generic.DictionaryObject(
        {
            _name("/Title"): generic.TextStringObject("Trang ky"),
            _name("/Parent"): outlines_ref,
        }
    )
    if action is None:
        item[_name("/Dest")] = generic.ArrayObject([page_ref, _name("/Fit")])
    else:
        item[_name("/A")] = action
    item_ref = writer.add_object(item)
    last = outlines.raw_get("/Last") if "/Last" in outlines else None
    if last is None:
        outlines[_name("/First")] = item_ref
    else:
        last.get_object()[_name("/Next")] = item_ref
        item[_name("/Prev")] = last
        writer.mark_update(last)
    outlines[_name("/Last")] = item_ref
    outlines[_name("/Count")] = generic.NumberObject(int(outlines.get("/Count", 0)) + 1)
    writer.mark_update(outlines_ref)


def rename_first_bookmark(writer: IncrementalPdfFileWriter, title: str) -> None:
    outlines = writer.root["/Outlines"]
    item_ref = outlines.raw_get("/First")
    item_ref.get_object()[_name("/Title")] = generic.TextStringObject(title)
    writer.mark_update(item_ref)


def javascript_action() -> generic.DictionaryObject:
    return generic.DictionaryObject(
        {
            _name("/S"): _name("/JavaScript"),
            _name("/JS"): generic.TextStringObject("app.alert('x')"),
        }
    )


def reparent_page_text(writer: IncrementalPdfFileWriter) -> None:
    """A structure change that is not about annotations: a new element claims the page text
    (MCID 0) with its own /ActualText, so what assistive technology and text extraction read
    differs from what was signed."""
    page_ref, _ = first_page(writer)
    struct_root = writer.root["/StructTreeRoot"]
    document_ref = struct_root.raw_get("/K")
    document = document_ref.get_object()
    element = writer.add_object(
        generic.DictionaryObject(
            {
                _name("/Type"): _name("/StructElem"),
                _name("/S"): _name("/Span"),
                _name("/P"): document_ref,
                _name("/Pg"): page_ref,
                _name("/ActualText"): generic.TextStringObject("Quyet dinh so 999/QD-UBND"),
                _name("/K"): generic.NumberObject(0),
            }
        )
    )
    document["/K"].append(element)
    writer.update_container(document)


def change_actual_text(writer: IncrementalPdfFileWriter) -> None:
    """Rewrite the /ActualText of the signed paragraph element."""
    document = writer.root["/StructTreeRoot"]["/K"]
    paragraph_ref = document["/K"].raw_get(0)
    paragraph_ref.get_object()[_name("/ActualText")] = generic.TextStringObject("So 999")
    writer.mark_update(paragraph_ref)


# --- hand-written cross-reference sections (free entries) ---------------------------------------


def _trailer_info(
    data: bytes,
) -> tuple[int, int, generic.PdfObject, generic.PdfObject | None, bytes]:
    reader = PdfFileReader(BytesIO(data), strict=False)
    trailer = reader.trailer_view
    size = int(trailer["/Size"])
    root = trailer.raw_get("/Root")
    info = trailer.raw_get("/Info") if "/Info" in trailer else None
    ids = trailer["/ID"]
    id_bytes = (
        b"[<"
        + ids[0].original_bytes.hex().encode()
        + b"><"
        + ids[1].original_bytes.hex().encode()
        + b">]"
    )
    startxref = int(re.findall(rb"startxref\s+(\d+)", data)[-1])
    return size, startxref, root, info, id_bytes


def append_raw_update(
    data: bytes,
    objects: dict[int, bytes] | None = None,
    free: dict[int, int] | None = None,
    trailer_extra: bytes = b"",
) -> bytes:
    """Append a revision written by hand: ``objects`` (object number → body, generation 0) and
    ``free`` (object number → the generation its free entry carries, i.e. the next generation
    the number may be used with). pyHanko's writer never writes free entries; other writers do
    (Acrobat frees the objects of what it deletes; some writers repeat the whole free list in
    every section). ``trailer_extra``: bytes written at the end of the trailer dictionary."""
    objects = objects or {}
    free = free or {}
    size, prev, root, info, id_bytes = _trailer_info(data)
    out = bytearray(data)
    if not out.endswith(b"\n"):
        out += b"\n"
    offsets: dict[int, int] = {}
    for num, body in sorted(objects.items()):
        offsets[num] = len(out)
        out += b"%d 0 obj\n" % num + body + b"\nendobj\n"
    xref_at = len(out)
    entries: dict[int, bytes] = {n: b"%010d 00000 n \n" % off for n, off in offsets.items()}
    for num, gen in free.items():
        entries[num] = b"%010d %05d f \n" % (0, gen)
    out += b"xref\n"
    for num in sorted(entries):
        out += b"%d 1\n" % num + entries[num]
    new_size = max([size, *(n + 1 for n in entries)])
    trailer = b"<< /Size %d /Root %d %d R /Prev %d /ID %s" % (
        new_size,
        root.idnum,
        root.generation,
        prev,
        id_bytes,
    )
    if info is not None and isinstance(info, generic.IndirectObject):
        trailer += b" /Info %d %d R" % (info.idnum, info.generation)
    trailer += trailer_extra
    out += b"trailer\n" + trailer + b" >>\nstartxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def append_shifted_update(
    data: bytes,
    objects: dict[int, bytes],
    *,
    header: Callable[[int], bytes] = lambda n: b"%d 0 obj\n" % n,
    listed: dict[int, int] | None = None,
    startxref_shift: int = 0,
    prev_shift: int = 0,
) -> bytes:
    """An update written by hand the way an Incremental Saving Attack writes one: ``objects``
    (number → body) appended, each opened by ``header(number)`` (any lexical spelling of
    "N 0 obj"), and an xref section that lists only the numbers in ``listed`` (appended
    object number → the number its entry is listed under: another number is a mislabel);
    the final ``startxref`` moved ``startxref_shift`` bytes off the section and ``/Prev``
    ``prev_shift`` bytes off the previous one (pyHanko reads around both; poppler and qpdf
    rebuild the table by scanning and take the appended objects)."""
    listed = listed or {}
    size, prev, root, _info, id_bytes = _trailer_info(data)
    out = bytearray(data)
    if not out.endswith(b"\n"):
        out += b"\n"
    offsets: dict[int, int] = {}
    for num, body in objects.items():
        offsets[num] = len(out)
        out += header(num) + body + b"\nendobj\n"
    xref_at = len(out)
    entries = {listed[n]: offsets[n] for n in objects if n in listed}
    out += b"xref\n0 1\n0000000000 65535 f \n"
    for num in sorted(entries):
        out += b"%d 1\n%010d 00000 n \n" % (num, entries[num])
    new_size = max([size, *(n + 1 for n in entries)])
    out += b"trailer\n<< /Size %d /Root %d %d R /Prev %d /ID %s >>\n" % (
        new_size,
        root.idnum,
        root.generation,
        prev + prev_shift,
        id_bytes,
    )
    out += b"startxref\n%d\n%%%%EOF\n" % (xref_at + startxref_shift)
    return bytes(out)


def object_number(data: bytes, predicate: Callable[[generic.PdfObject], bool]) -> int:
    """The number of the first object in the current revision for which ``predicate`` holds."""
    reader = PdfFileReader(BytesIO(data), strict=False)
    for ref in sorted(
        {
            r
            for rev in range(reader.xrefs.total_revisions)
            for r in reader.xrefs.explicit_refs_in_revision(rev)
            if r.generation >= 0
        },
        key=lambda r: r.idnum,
    ):
        try:
            obj = reader.get_object(ref)
        except Exception:  # noqa: BLE001 - freed or unreadable: not what we look for
            continue
        if predicate(obj):
            return ref.idnum
    raise LookupError("no such object")


def _annots_array_update(
    data: bytes, keep: Callable[[generic.DictionaryObject], bool]
) -> tuple[int, bytes, list[int]]:
    """The first page's (indirect) /Annots array rewritten without the annotations ``keep``
    rejects: (array object number, new body, numbers of the dropped annotations)."""
    reader = PdfFileReader(BytesIO(data), strict=False)
    page = reader.root["/Pages"]["/Kids"][0]
    raw = page.raw_get("/Annots")
    annots = raw.get_object()
    kept, dropped = [], []
    for i in range(len(annots)):
        ref = annots.raw_get(i)
        (kept if keep(ref.get_object()) else dropped).append(ref)
    body = b"[" + b" ".join(b"%d %d R" % (r.idnum, r.generation) for r in kept) + b"]"
    return raw.idnum, body, [r.idnum for r in dropped]


def delete_comment_freeing(data: bytes, *, also_free: list[int] | None = None) -> bytes:
    """Acrobat deleting a comment in one incremental save: the /Annots array rewritten without
    the note and its popup, whose objects (and the note's appearance stream) get free entries.
    ``also_free``: more object numbers freed in the same section."""
    array_num, body, dropped = _annots_array_update(data, lambda a: not is_comment(a))
    reader = PdfFileReader(BytesIO(data), strict=False)
    frees = {n: 1 for n in dropped}
    for num in dropped:
        annot = reader.get_object(generic.Reference(num, 0, reader))
        ap = annot.get("/AP")
        if isinstance(ap, generic.DictionaryObject) and isinstance(
            ap.raw_get("/N"), generic.IndirectObject
        ):
            frees[ap.raw_get("/N").idnum] = 1
    for num in also_free or ():
        frees[num] = 1
    return append_raw_update(data, objects={array_num: body}, free=frees)


def add_orphan_then_free(data: bytes) -> tuple[bytes, int]:
    """Two revisions (before signing): an unused object is written, then freed. Returns the
    file and the object number, which is free from then on."""
    size = int(PdfFileReader(BytesIO(data), strict=False).trailer_view["/Size"])
    with_orphan = append_raw_update(data, objects={size: b"<< /Orphan true >>"})
    return append_raw_update(with_orphan, free={size: 1}), size


def relist_free_entry(data: bytes, number: int, next_generation: int = 1) -> bytes:
    """A revision whose cross-reference section repeats the free entry of an object that is
    already free (as writers that re-emit their whole free list do)."""
    return append_raw_update(data, free={number: next_generation})


# --- validation data (DSS) updates --------------------------------------------------------------


def _signature_contents(data: bytes) -> list[bytes]:
    reader = PdfFileReader(BytesIO(data), strict=False)
    return [
        bytes(s.sig_object.raw_get("/Contents").original_bytes) for s in reader.embedded_signatures
    ]


def add_validation_data(data: bytes, certs: list[bytes]) -> bytes:
    """pyHanko's LT update: certificates into /DSS /Certs, with a /VRI entry (an indirect
    dictionary, as pyHanko writes it) for every signature."""
    loaded = [x509.Certificate.load(c) for c in certs]
    for contents in _signature_contents(data):
        writer = IncrementalPdfFileWriter(BytesIO(data), strict=False)
        DocumentSecurityStore.supply_dss_in_writer(writer, contents, certs=loaded)
        out = BytesIO()
        writer.write(out)
        data = out.getvalue()
    return data


def rewrite_dss_like_eu_dss(
    data: bytes,
    extra_certs: Sequence[bytes] = (),
    *,
    keep_vri: bool = True,
    drop_first_cert: bool = False,
) -> bytes:
    """What EU DSS (PdfBoxSignatureService.buildDSSDictionary) writes when it extends the
    signatures of a document to LT/LTA: a *new* /DSS dictionary whose /Certs, /OCSPs and /CRLs
    are new direct arrays (existing validation objects reused by reference, new ones as new
    streams) and, with ``keep_vri``, a new direct /VRI dictionary whose entries are new direct
    dictionaries listing each signature's data, /TU included; without it (DSS 6's default), no
    /VRI at all. ``drop_first_cert`` loses one certificate that was there (not what DSS does)."""

    def change(writer: IncrementalPdfFileWriter) -> None:
        old_dss = writer.root["/DSS"]
        old_certs = old_dss["/Certs"]
        certs = [old_certs.raw_get(i) for i in range(len(old_certs))]
        if drop_first_cert:
            certs = certs[1:]
        certs += [writer.add_object(generic.StreamObject(stream_data=c)) for c in extra_certs]
        new_dss = generic.DictionaryObject({_name("/Certs"): generic.ArrayObject(certs)})
        for key in ("/OCSPs", "/CRLs"):
            if key in old_dss:
                arr = old_dss[key]
                new_dss[_name(key)] = generic.ArrayObject(arr.raw_get(i) for i in range(len(arr)))
        if keep_vri and "/VRI" in old_dss:
            vri = generic.DictionaryObject()
            for sig_key in old_dss["/VRI"]:
                vri[_name(sig_key)] = generic.DictionaryObject(
                    {
                        _name("/Cert"): generic.ArrayObject(certs),
                        _name("/TU"): generic.pdf_date(datetime(2025, 3, 1, tzinfo=UTC)),
                    }
                )
            new_dss[_name("/VRI")] = vri
        writer.root[_name("/DSS")] = writer.add_object(new_dss)
        writer.update_root()

    return edit(data, change)


def rewrite_validation_stream_in_place(data: bytes, new_bytes: bytes) -> bytes:
    """Overwrite the first /DSS certificate stream object with other bytes (same object
    number): validation data changed where it was, not added."""

    def change(writer: IncrementalPdfFileWriter) -> None:
        ref = writer.root["/DSS"]["/Certs"].raw_get(0)
        writer.objects[(ref.generation, ref.idnum)] = generic.StreamObject(stream_data=new_bytes)

    return edit(data, change)


def add_dss_entry(data: bytes, key: str, value: generic.PdfObject) -> bytes:
    """Give the /DSS dictionary an entry the DSS shape does not have."""

    def change(writer: IncrementalPdfFileWriter) -> None:
        dss = writer.root["/DSS"]
        dss[_name(key)] = value
        writer.update_container(dss)

    return edit(data, change)


def reverse_annotations(writer: IncrementalPdfFileWriter) -> None:
    """Reverse the first page's /Annots: annotations are drawn in that order, so which one
    covers which changes."""
    _, page = first_page(writer)
    annots = _annots(writer, page)
    annots.reverse()


# --- repeated dictionary keys (red team 16 F8) ---------------------------------------------------


class RawObject(generic.PdfObject):
    """An object written as the bytes given: what a hostile writer puts in a file and pyHanko's
    objects cannot hold (a dictionary with a repeated key). The bytes hold no string, so an
    encrypted document needs nothing encrypted in them (names are never encrypted)."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def write_to_stream(self, stream, handler=None, container_ref=None) -> None:  # type: ignore[no-untyped-def]
        stream.write(self.data)


FORGED_TEXT = b"BT /F1 40 Tf 100 500 Td (FORGED 999.999.999 VND) Tj ET"


def _raw_bytes(obj: generic.PdfObject) -> bytes:
    out = BytesIO()
    obj.write_to_stream(out, None)
    return out.getvalue()


def repeated_page_key(
    *, key: str = "contents", spelling: bytes | None = None, object_stream: bool = False
) -> Callable[[IncrementalPdfFileWriter], None]:
    """A change that rewrites page 1 with its dictionary as it was plus a second, last entry
    under a key it already has (poppler and qpdf use the last one; pyHanko the first, so it sees
    the page unchanged). ``key``: ``contents`` (a second /Contents: a new stream drawing
    FORGED_TEXT), ``annots`` (a second /Annots: the old annotations and a FreeText whose
    appearance is a white box with FORGED_TEXT; the page must have /Annots), ``font`` (inside
    the page's direct /Resources /Font, a second /F1: ZapfDingbats, so the signed text is drawn
    as other glyphs). ``spelling``: how the repeated key is written (e.g. ``/Cont#65nts``, the
    same name, ISO 32000-1 §7.3.5). ``object_stream``: the page written into an object stream
    of the update (with a cross-reference stream)."""

    def change(writer: IncrementalPdfFileWriter) -> None:
        page_ref, page = first_page(writer)
        body = _raw_bytes(page)
        assert body.endswith(b">>")
        if key == "contents":
            forged = writer.add_object(generic.StreamObject(stream_data=FORGED_TEXT))
            extra = (spelling or b"/Contents") + b" %d 0 R" % forged.idnum
            body = body[:-2] + b" " + extra + b" >>"
        elif key == "annots":
            box = b"1 1 1 rg 0 0 480 40 re f 0 0 0 rg " + FORGED_TEXT.replace(b"40 Tf", b"14 Tf")
            freetext = generic.DictionaryObject(
                {
                    _name("/Type"): _name("/Annot"),
                    _name("/Subtype"): _name("/FreeText"),
                    _name("/Rect"): generic.ArrayObject(
                        map(generic.NumberObject, (60, 740, 540, 780))
                    ),
                    _name("/DA"): generic.TextStringObject("/Helv 14 Tf 0 g"),
                    _name("/F"): generic.NumberObject(4),
                    _name("/AP"): generic.DictionaryObject(
                        {_name("/N"): _form_xobject(writer, box, (0, 0, 480, 40))}
                    ),
                }
            )
            added = writer.add_object(freetext)
            old = page["/Annots"]
            refs = [old.raw_get(i) for i in range(len(old))] + [added]
            extra = (
                (spelling or b"/Annots")
                + b" ["
                + b" ".join(b"%d %d R" % (r.idnum, r.generation) for r in refs)
                + b"]"
            )
            body = body[:-2] + b" " + extra + b" >>"
        elif key == "font":
            dingbats = writer.add_object(
                generic.DictionaryObject(
                    {
                        _name("/Type"): _name("/Font"),
                        _name("/Subtype"): _name("/Type1"),
                        _name("/BaseFont"): _name("/ZapfDingbats"),
                    }
                )
            )
            found = re.search(rb"/F1 (\d+ \d+ R)", body)
            assert found, body
            extra = (spelling or b"/F1") + b" %d 0 R" % dingbats.idnum
            body = body[: found.end()] + b" " + extra + body[found.end() :]
        else:
            raise ValueError(key)
        raw = RawObject(body)
        if object_stream:
            writer.stream_xrefs = True
            stream = writer.prepare_object_stream()
            stream.add_object(page_ref.idnum, raw)
            writer.objs_in_streams[page_ref.idnum] = raw
            writer.objects.pop((page_ref.generation, page_ref.idnum), None)
        else:
            writer.objects[(page_ref.generation, page_ref.idnum)] = raw

    return change


def page_listed_twice_in_object_stream(data: bytes) -> bytes:
    """An update written by hand (red team 16b, P1): page 1 moved into a new object stream that
    lists its number twice, entry 0 the page exactly as signed, entry 1 the page with a new
    /Contents drawing FORGED_TEXT; the cross-reference stream points at index 1. pyHanko reads
    the first entry for a number (the page unchanged), poppler and qpdf the entry at the index
    (the forged page)."""
    import re
    import struct
    import zlib

    reader = PdfFileReader(BytesIO(data), strict=False)
    page_ref = reader.root.raw_get("/Pages").get_object()["/Kids"].raw_get(0)
    body = _raw_bytes(page_ref.get_object())
    size = int(reader.trailer["/Size"])
    prev = int(list(re.finditer(rb"startxref\s+(\d+)", data))[-1].group(1))
    root = reader.trailer.raw_get("/Root")
    page, forged_stream, objstm, xref = page_ref.idnum, size, size + 1, size + 2
    contents = re.search(rb"/Contents\s+(\d+\s+\d+\s+R|\[[^\]]*\])", body)
    assert contents is not None
    forged = body.replace(contents.group(0), b"/Contents %d 0 R" % forged_stream, 1)
    first, second = body + b"\n", forged + b"\n"
    header = b"%d 0 %d %d  " % (page, page, len(first))
    stream = header + first + second
    out = bytearray(data if data.endswith(b"\n") else data + b"\n")
    at_forged = len(out)
    out += b"%d 0 obj\n<</Length %d>>stream\n" % (forged_stream, len(FORGED_TEXT))
    out += FORGED_TEXT + b"\nendstream\nendobj\n"
    at_objstm = len(out)
    out += b"%d 0 obj\n<</Type /ObjStm /N 2 /First %d /Length %d>>stream\n" % (
        objstm,
        len(header),
        len(stream),
    )
    out += stream + b"\nendstream\nendobj\n"
    at_xref = len(out)
    rows = {page: (2, objstm, 1), forged_stream: (1, at_forged, 0)}
    rows.update({objstm: (1, at_objstm, 0), xref: (1, at_xref, 0)})
    index: list[int] = []
    raw = b""
    for number in sorted(rows):
        index += [number, 1]
        kind, a, b = rows[number]
        raw += struct.pack(">BIH", kind, a, b)
    packed = zlib.compress(raw)
    out += b"%d 0 obj\n<</Type /XRef /Size %d /Root %d %d R /Prev %d /W [1 4 2] " % (
        xref,
        xref + 1,
        root.idnum,
        root.generation,
        prev,
    )
    out += b"/Index [%s] /Filter /FlateDecode /Length %d>>stream\n" % (
        b" ".join(b"%d" % i for i in index),
        len(packed),
    )
    out += packed + b"\nendstream\nendobj\nstartxref\n%d\n%%%%EOF\n" % at_xref
    return bytes(out)
