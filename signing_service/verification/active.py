"""Active content a viewer runs or opens from a PDF: what an agency's seal must not vouch for.

The dossier attachments route refuses such files (screening: ``ACTIVE_PDF_CONTENT``, a scan of
every object with pikepdf). Signing did not look at all: a document with a JavaScript open
action, a page action and an embedded ``.exe`` was sealed, registered in force and verified
``TOTAL_PASSED`` without a word (red team 19b, R19B-2). Signing now refuses it and the verifier
warns about it, from what this module finds.

What is looked at: every dictionary of the file, as the attachments' screening does, read with
pikepdf (stream data is not read; a one-page 1 MB document in ~0.5 ms, 300 pages in ~40 ms).
An earlier version looked only where viewers usually find actions (catalog, pages, annotations,
outline) and red team 20 found scripts elsewhere: a form field's own ``/AA``, a ``/Rendition``
action's ``/JS``, a 3D annotation's ``/OnInstantiate``, an action past a long ``/Next`` chain.
Found: script keys (``/JS``, ``/JavaScript``, ``/OnInstantiate``), additional actions (``/AA``),
embedded files (a file specification with ``/EF``, unless every name it gives ends in ``.xml``,
``.json``, ``.csv`` or ``.txt``: data, as PDF/A-3 attaches), multimedia and 3D
annotations, XFA forms, ``javascript:`` and file or network-share addresses, and the actions below.
A file qpdf cannot read counts as ``TooComplexToInspect`` (never as clean: red team 20 R20-1).

Dangerous actions (ISO 32000-1 §12.6.4): ``/JavaScript``, ``/Launch``, ``/SubmitForm``,
``/ImportData``, ``/RichMediaExecute`` (the screening's list), ``/GoToR`` and ``/GoToE`` (another
file opened); on opening, any action but ``/GoTo`` (a web address, a menu command). Everything
is bounded (:data:`MAX_NODES` dictionaries); a document over the bound is reported as
``TooComplexToInspect``, which the signing path refuses like active content.
"""

from __future__ import annotations

import io
import itertools
from collections.abc import Iterable, Iterator

import pikepdf

DANGEROUS_ACTIONS = {
    "/JavaScript",
    "/Launch",
    "/SubmitForm",
    "/ImportData",
    "/RichMediaExecute",
    # Opening another file, on disk, on a network share (a UNC path leaks the reader's
    # Windows credentials) or embedded (new user 20 #7).
    "/GoToR",
    "/GoToE",
}
# On opening, anything but a jump inside the document runs unasked: a web address opened
# (phishing), the print dialog, a menu command (new user 20 #7).
HARMLESS_ON_OPEN = {"/GoTo"}
# How people read each kind (Vietnamese), for messages and warnings.
KIND_TEXTS = {
    "JavaScript": "mã JavaScript",
    "OpenAction": "hành động tự chạy khi mở tệp",
    "AA": "hành động tự chạy theo sự kiện",
    "Launch": "lệnh mở chương trình",
    "SubmitForm": "lệnh gửi dữ liệu biểu mẫu đi nơi khác",
    "ImportData": "lệnh nhập dữ liệu từ tệp khác",
    "RichMediaExecute": "lệnh điều khiển nội dung đa phương tiện",
    "GoToR": "lệnh mở tệp khác",
    "GoToE": "lệnh mở tệp nhúng",
    "URI": "lệnh mở địa chỉ web khi mở tệp",
    "Named": "lệnh của phần mềm đọc khi mở tệp",
    "EmbeddedFile": "tệp đính kèm nhúng",
    "RichMedia": "nội dung đa phương tiện",
    "XFA": "biểu mẫu XFA",
    "TooComplexToInspect": "cấu trúc quá phức tạp để kiểm tra hết",
    "Uninspectable": "cấu trúc tệp không đọc được để kiểm tra",
}


def describe(kinds: list[str]) -> str:
    """``kinds`` (from :func:`active_content`) in Vietnamese, comma-separated."""
    return ", ".join(KIND_TEXTS.get(kind, kind) for kind in kinds)


MEDIA_ANNOTATIONS = {"/RichMedia", "/Screen", "/Movie", "/Sound", "/3D"}
# The kinds for a file that could not be looked at whole: over the budget, or unreadable to
# qpdf. Never "clean"; the signing path refuses them as too complex or malformed.
TOO_COMPLEX = "TooComplexToInspect"
UNINSPECTABLE = "Uninspectable"
# Attachments that are data, not programs or documents that run code: PDF/A-3 and e-invoice
# attachments (XML), tables, plain text.
DATA_FILE_EXTENSIONS = {"xml", "json", "csv", "txt"}
# Keys whose presence means something runs or is embedded (ISO 32000-1/2): scripts (/JS, the
# /JavaScript name tree, a 3D stream's /OnInstantiate), additional actions on events (/AA),
# embedded files, multimedia, XFA forms.
ACTIVE_KEYS = {
    "/JS": "JavaScript",
    "/JavaScript": "JavaScript",
    "/OnInstantiate": "JavaScript",
    "/AA": "AA",
    "/RichMedia": "RichMedia",
    "/RichMediaContent": "RichMedia",
    "/XFA": "XFA",
}
# Dictionaries looked at, at most (pages, annotations, actions, outline items together).
MAX_NODES = 200_000
# Actions followed along one /Next chain.
MAX_CHAIN = 100


class Exhausted(Exception):
    """More dictionaries than the :class:`Budget` allows."""


class Budget:
    """At most ``nodes`` dictionaries (and actions) looked at; :class:`Exhausted` past it."""

    def __init__(self, nodes: int) -> None:
        self.left = nodes

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise Exhausted


# Font width arrays (ISO 32000-1 §9.6.2.1 /Widths, §9.7.4.3 /W and /W2): numbers and arrays
# of numbers, often a thousand of them per font, each of which costs a Python object when the
# array is walked item by item (~0.4 ms for a CID font's whole /W here). Their serialised form
# (qpdf, C++; one pass per array, so the work stays linear in the file) tells whether a
# dictionary hides inside; only then are they walked like any other array.
_NUMBER_ARRAYS = frozenset({"/W", "/W2", "/Widths"})


def dictionaries(
    pdf: pikepdf.Pdf, budget: Budget, containing: frozenset[bytes] | None = None
) -> Iterator[pikepdf.Dictionary]:
    """Every dictionary of ``pdf``, indirect or nested directly in another (a stream's own
    dictionary included; stream data is not read, so the cost is the object count's), each
    spending one of ``budget``. Shared with the attachments' screening
    (``signing_service.screening``).

    ``containing``: only the dictionaries of the top-level objects (the trailer and each
    indirect object, with what is nested in them directly) whose serialised form holds one of
    these byte strings; each top-level object then spends one of ``budget`` whether looked
    into or not. qpdf serialises names in their canonical spelling (``/J#53`` as ``/JS``), so a
    name written any way is found; a false match (the bytes inside a string) only costs the
    walk. Why: most objects of a document (fonts, images, page trees) hold none of the names
    the active-content scan looks for, and walking them key by key from Python was most of
    its cost (the person-signed document of ``python -m bench.run --appearance-only``: 0.95 →
    0.3 ms; qpdf's serialisation is C++)."""
    tops: Iterable[object] = itertools.chain((pdf.trailer,), pdf.objects)
    for top in tops:
        if containing is not None:
            budget.spend()
            target = top.stream_dict if isinstance(top, pikepdf.Stream) else top
            if not isinstance(target, pikepdf.Dictionary | pikepdf.Array):
                continue
            text = target.unparse(resolved=True)
            if not any(token in text for token in containing):
                continue
        # (object, whether a width array in it may be judged by its serialised form): inside a
        # width array that held a dictionary, nested width arrays are walked without the test,
        # so each byte is serialised at most once (red team 22 R22-2: nested /W arrays made it
        # depth × size).
        stack: list[tuple[object, bool]] = [(top, True)]
        while stack:
            budget.spend()
            obj, shortcut = stack.pop()
            if isinstance(obj, pikepdf.Stream):
                obj = obj.stream_dict
            if isinstance(obj, pikepdf.Array):
                stack.extend(
                    (item, shortcut)
                    for item in obj
                    if isinstance(item, pikepdf.Object) and not item.is_indirect
                )
                continue
            if not isinstance(obj, pikepdf.Dictionary):
                continue
            yield obj
            for key in obj.keys():  # noqa: SIM118 - pikepdf Dictionary iteration
                value = obj.get(key)
                if isinstance(value, pikepdf.Dictionary | pikepdf.Array) and not value.is_indirect:
                    inner = shortcut
                    if shortcut and key in _NUMBER_ARRAYS:
                        if b"<<" not in value.unparse():
                            continue  # glyph widths: numbers, no dictionary inside (see above)
                        inner = False
                    stack.append((value, inner))


def dropped_by_qpdf(pdf: pikepdf.Pdf) -> bool:
    """Whether qpdf replaced something it read with null (an object nested past its parser's
    limit of 500 arrays or dictionaries, or another of its limits): what it then shows is not
    what the file holds, and another reader (poppler keeps the outer dictionary) may run a
    script the scan never saw (red team 22 R22-1). Call after reading the objects."""
    return any(
        "limits error" in warning or "excessively deeply nested" in warning
        for warning in pdf.get_warnings()
    )


def _dict(value: object) -> pikepdf.Dictionary | None:
    return value if isinstance(value, pikepdf.Dictionary) else None


def _action_kinds(action: object, budget: Budget, on_open: bool = False) -> Iterator[str]:
    """The dangerous kinds in an action and its ``/Next`` actions (a dictionary or an array);
    ``on_open``: run on opening, where every kind but a jump inside the document counts."""
    queue = [action]
    steps = 0
    while queue:
        steps += 1
        if steps > MAX_CHAIN:
            # Never "clean" past the bound (red team 20 R20-2 c).
            yield "TooComplexToInspect"
            return
        budget.spend()
        item = _dict(queue.pop())
        if item is None:
            continue
        kind = str(item.get("/S", ""))
        if kind in DANGEROUS_ACTIONS or (on_open and kind not in HARMLESS_ON_OPEN):
            yield kind[1:] or "?"
        following = item.get("/Next")
        if isinstance(following, pikepdf.Array):
            queue.extend(following)
        elif following is not None:
            queue.append(following)


def _kinds_of(obj: pikepdf.Dictionary, found: set[str]) -> None:
    """What one dictionary holds that runs or opens something."""
    for key in obj.keys():  # noqa: SIM118 - pikepdf Dictionary iteration
        kind = ACTIVE_KEYS.get(key)
        if kind is not None:
            found.add(kind)
    action = str(obj.get("/S", ""))
    if action in DANGEROUS_ACTIONS:
        found.add(action[1:])
    if action == "/URI":
        uri = obj.get("/URI")
        text = bytes(uri).lstrip(b"\x00\t\n\x0c\r ").lower() if uri is not None else b""
        if text.startswith((b"javascript:", b"vbscript:", b"file:", b"\\\\")):
            found.add("JavaScript" if text.startswith((b"javascript:", b"vbscript:")) else "GoToR")
    if "/EF" in obj and not _data_file(obj):
        found.add("EmbeddedFile")
    if str(obj.get("/Subtype", "")) in MEDIA_ANNOTATIONS:
        found.add("RichMedia")


# Every name :func:`_kinds_of` looks for, as a key or a value: an object whose serialised form
# holds none of them has nothing it would find (:func:`dictionaries`, ``containing``).
_LOOKED_FOR = frozenset(
    name.encode() for name in {*ACTIVE_KEYS, *DANGEROUS_ACTIONS, *MEDIA_ANNOTATIONS, "/URI", "/EF"}
)


def _data_file(spec: pikepdf.Dictionary) -> bool:
    """Whether an embedded file's specification names only data files (every file name it
    gives ends in one of :data:`DATA_FILE_EXTENSIONS`): a viewer opens an attachment with the
    program the name's extension selects, so an XML invoice attached to a PDF/A-3 opens in an
    XML viewer whatever its bytes (red team 20 R20-4: such a document was refused)."""
    names = [spec.get(key) for key in ("/UF", "/F", "/Unix", "/Mac", "/DOS")]
    texts = [str(name) for name in names if isinstance(name, pikepdf.String)]
    if not texts:
        return False
    for text in texts:
        _, dot, extension = text.strip().lower().rpartition(".")
        if not dot or extension not in DATA_FILE_EXTENSIONS:
            return False
    return True


def _scan(pdf: pikepdf.Pdf, found: set[str], budget: Budget) -> None:
    """Every dictionary of the file, indirect or nested directly in another (stream data is
    not read, so the cost is the object count's), as the attachments' screening does: what
    runs does not have to be where this module would have looked for it (red team 20 R20-2:
    a form field's own /AA, a /Rendition action carrying /JS, a 3D annotation's script, an
    action past a long /Next chain). Then the open action, where any action but a jump runs."""
    for obj in dictionaries(pdf, budget, containing=_LOOKED_FOR):
        _kinds_of(obj, found)
    opening = pdf.Root.get("/OpenAction")
    kinds = list(_action_kinds(opening, budget, on_open=True)) if opening is not None else []
    if kinds:
        found.update(kinds)
        found.add("OpenAction")


def active_content(data: bytes, max_nodes: int = MAX_NODES) -> list[str]:
    """The kinds of active content in the PDF ``data`` (sorted, distinct): ``JavaScript``,
    ``Launch``, ``SubmitForm``, ``ImportData``, ``RichMediaExecute`` (actions), ``OpenAction``
    (a dangerous action run on opening), ``AA`` (additional actions: run on events),
    ``EmbeddedFile``, ``RichMedia``, ``XFA``; ``TooComplexToInspect`` when over ``max_nodes``
    dictionaries, ``Uninspectable`` when qpdf cannot open or read the file (never "clean" by
    failing). ``[]``
    for a document with none. Never raises."""
    found: set[str] = set()
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            _scan(pdf, found, Budget(max_nodes))
            if dropped_by_qpdf(pdf):
                found.add(UNINSPECTABLE)
    except Exhausted:
        found.add("TooComplexToInspect")
    except (Exception, RecursionError):  # noqa: BLE001 - what qpdf cannot read is not "clean"
        # A file pyHanko reads and qpdf refuses (a page tree looping back on itself) hid a
        # script this way (red team 20 R20-1): what cannot be inspected counts as found.
        found.add(UNINSPECTABLE)
    return sorted(found)
