"""Active content a viewer runs or opens from a PDF: what an agency's seal must not vouch for.

The dossier attachments route refuses such files (screening: ``ACTIVE_PDF_CONTENT``, a scan of
every object with pikepdf). Signing did not look at all: a document with a JavaScript open
action, a page action and an embedded ``.exe`` was sealed, registered in force and verified
``TOTAL_PASSED`` without a word (red team 19b, R19B-2). Signing now refuses it and the verifier
warns about it, from what this module finds.

What is looked at is what a viewer executes or offers to open, read with pikepdf (qpdf: a
300-page document in ~7 ms, where walking its pages through pyHanko's reader took ~100 ms; a
one-page 1 MB document in under 0.1 ms):

- the catalog: ``/OpenAction`` with a dangerous action, document actions ``/AA``, the name
  trees ``/JavaScript`` (run on opening) and ``/EmbeddedFiles``, an XFA form (``/XFA``);
- each page: its ``/AA``; each annotation's ``/A`` (and its ``/Next`` chain), ``/AA``, and
  file attachment or multimedia annotations (``/FileAttachment``, ``/RichMedia``, ``/Screen``,
  ``/Movie``, ``/Sound``);
- the outline (bookmarks): each item's ``/A``.

Dangerous actions (ISO 32000-1 §12.6.4): ``/JavaScript``, ``/Launch``, ``/SubmitForm``,
``/ImportData``, ``/RichMediaExecute`` (the screening's list). Everything is bounded
(:data:`MAX_NODES` dictionaries); a document over the bound is reported as
``TooComplexToInspect``, which the signing path refuses like active content.
"""

from __future__ import annotations

import io
from collections.abc import Iterator

import pikepdf

DANGEROUS_ACTIONS = {"/JavaScript", "/Launch", "/SubmitForm", "/ImportData", "/RichMediaExecute"}
MEDIA_ANNOTATIONS = {"/RichMedia", "/Screen", "/Movie", "/Sound"}
# Dictionaries looked at, at most (pages, annotations, actions, outline items together).
MAX_NODES = 200_000
# Actions followed along one /Next chain.
MAX_CHAIN = 100


class _Exhausted(Exception):
    pass


class _Budget:
    def __init__(self, nodes: int) -> None:
        self.left = nodes

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise _Exhausted


def _dict(value: object) -> pikepdf.Dictionary | None:
    return value if isinstance(value, pikepdf.Dictionary) else None


def _action_kinds(action: object, budget: _Budget) -> Iterator[str]:
    """The dangerous kinds in an action and its ``/Next`` actions (a dictionary or an array)."""
    queue = [action]
    steps = 0
    while queue and steps < MAX_CHAIN:
        steps += 1
        budget.spend()
        item = _dict(queue.pop())
        if item is None:
            continue
        kind = str(item.get("/S", ""))
        if kind in DANGEROUS_ACTIONS:
            yield kind[1:]
        following = item.get("/Next")
        if isinstance(following, pikepdf.Array):
            queue.extend(following)
        elif following is not None:
            queue.append(following)


def _scan(pdf: pikepdf.Pdf, found: set[str], budget: _Budget) -> None:
    root = pdf.Root
    opening = root.get("/OpenAction")
    kinds = list(_action_kinds(opening, budget)) if opening is not None else []
    if kinds:
        found.update(kinds)
        found.add("OpenAction")
    if "/AA" in root:
        found.add("AA")
    names = _dict(root.get("/Names"))
    if names is not None:
        if "/JavaScript" in names:
            found.add("JavaScript")
        if "/EmbeddedFiles" in names:
            found.add("EmbeddedFile")
    acroform = _dict(root.get("/AcroForm"))
    if acroform is not None and "/XFA" in acroform:
        found.add("XFA")
    for page in pdf.pages:
        budget.spend()
        obj = page.obj
        if "/AA" in obj:
            found.add("AA")
        annots = obj.get("/Annots")
        if not isinstance(annots, pikepdf.Array):
            continue
        for raw in annots:
            budget.spend()
            annot = _dict(raw)
            if annot is None:
                continue
            subtype = str(annot.get("/Subtype", ""))
            if subtype == "/FileAttachment":
                found.add("EmbeddedFile")
            elif subtype in MEDIA_ANNOTATIONS:
                found.add("RichMedia")
            if "/AA" in annot:
                found.add("AA")
            if "/A" in annot:
                found.update(_action_kinds(annot.get("/A"), budget))
    outlines = _dict(root.get("/Outlines"))
    stack = [outlines.get("/First")] if outlines is not None else []
    seen: set[tuple[int, int]] = set()
    while stack:
        budget.spend()
        item = _dict(stack.pop())
        if item is None:
            continue
        if item.is_indirect:
            if item.objgen in seen:
                continue
            seen.add(item.objgen)
        if "/A" in item:
            found.update(_action_kinds(item.get("/A"), budget))
        for key in ("/Next", "/First"):
            if key in item:
                stack.append(item.get(key))


def active_content(data: bytes, max_nodes: int = MAX_NODES) -> list[str]:
    """The kinds of active content in the PDF ``data`` (sorted, distinct): ``JavaScript``,
    ``Launch``, ``SubmitForm``, ``ImportData``, ``RichMediaExecute`` (actions), ``OpenAction``
    (a dangerous action run on opening), ``AA`` (additional actions: run on events),
    ``EmbeddedFile``, ``RichMedia``, ``XFA``; ``TooComplexToInspect`` when over ``max_nodes``
    dictionaries. ``[]`` for a document with none, and for one qpdf cannot open or read (the
    caller's own parser judges the structure: this never raises)."""
    found: set[str] = set()
    try:
        with pikepdf.open(io.BytesIO(data)) as pdf:
            _scan(pdf, found, _Budget(max_nodes))
    except _Exhausted:
        found.add("TooComplexToInspect")
    except (Exception, RecursionError):  # noqa: BLE001 - unreadable: judged by the caller
        pass
    return sorted(found)
