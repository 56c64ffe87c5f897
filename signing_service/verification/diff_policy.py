"""Difference analysis: which changes after a signature are allowed, and at what level.

pyHanko compares two revisions and must *explain* every object the newer one writes: a rule
approves it at a :class:`ModificationLevel` (LTA_UPDATES < FORM_FILLING < ANNOTATIONS), anything
left unexplained — or any rule raising :class:`SuspiciousModification` — fails the signatures
before it. A certification signature's DocMDP permission P caps the level (P=1 → LTA_UPDATES,
P=2 → FORM_FILLING, P=3 → ANNOTATIONS; ISO 32000-1 12.8.2.2, Table 254); the caller compares.

How it is used. The verifier runs :data:`DIFF_POLICY` once per pair of consecutive revisions,
``DIFF_POLICY.apply(old=<revision r-1>, new=<revision r>, doc_mdp=<the certification's P or
None>)``, and combines the results per signature (highest level, union of changed fields, any
``SuspiciousModification`` fails every earlier signature). Every rule is written to be right
when ``old`` is simply the previous revision. :meth:`ServiceDiffPolicy.review_file` (what
pyHanko's ``validate_pdf_signature`` calls) does the same from the signed revision on, instead
of pyHanko's comparison of the signed revision with each later one: against the signed
revision, two steps that are each refused can merge into one that passes (a field filled in one
revision and its appearance swapped in the next look like filling).

pyHanko's default policy is kept for everything below except where a rule here replaces it.
Each rule exists for a writer behaviour that the default refuses (a false alarm) or for an
attack that the default accepts:

* :class:`CatalogRule` — pyHanko's catalog rule, with ``/Names`` (see next), ``/Outlines``
  (see :class:`OutlineRule`) and ``/PageMode`` (``/UseNone`` or ``/UseOutlines`` only, at
  ANNOTATIONS: Acrobat opens the bookmarks panel when bookmarks are added) left to other rules.
  ``/StructTreeRoot`` must keep pointing at the same object (tagging or untagging a signed
  document is refused); its contents are :class:`StructureTreeRule`'s.
* :class:`AppearanceNameTreeRule` — Acrobat adds a ``/Names /AP`` tree (named appearance
  streams for comment icons) when an officer comments on a signed PDF; EU DSS accepts it
  (PAdESLevelBWithAnnotAddedTest). Allowed at ANNOTATIONS when every object in it is new and
  every value is a Form XObject; any other ``/Names`` change (``/JavaScript``,
  ``/EmbeddedFiles``, …) is refused.
* :class:`RelistedFreeEntryRule` — some writers repeat free entries in every cross-reference
  section they append. pyHanko reads each one as "object freed" and fails the document. Only an
  object that was in use in the previous revision and is free now counts as freed (and must be
  explained by the rule that removed it — see annotation removal); a free entry for a number
  that was already free changes nothing and is accepted at LTA_UPDATES. A free entry whose
  generation does not match the object in use still counts as freeing it (other readers free it
  whatever the generation).
* :class:`PageAnnotationRule` — changes to a page's ``/Annots`` and ``/Tabs`` (the page must be
  otherwise unchanged, keep its place in the page tree, and keep the order of the annotations
  it still has, since that order is their drawing order):

  - a new signature field's widget joins ``/Annots``: LTA_UPDATES (pyHanko's rule; the field
    itself is vetted by the form rules);
  - a plain comment (markup annotation, or its popup) is added: ANNOTATIONS, as ISO 32000 and
    EU DSS allow after an approval signature and under P=3. Comments can still hide what was
    signed (Evil Annotation Attack), so the report warns, P=1/P=2 certified documents fail, and
    nothing with an action, a file, media or a form widget passes;
  - ``/Tabs`` (tab order) is added or changed: Acrobat sets ``/Tabs /S`` when it adds a field.
    Tab order is keyboard navigation only, nothing is drawn differently; FORM_FILLING, so a
    P=1 certification (no changes at all) still fails;
  - an annotation is removed: ISO 32000-1 Table 254 permits "annotation creation, deletion,
    and modification" at P=3; ANNOTATIONS. A widget may go only if its field carries no value:
    removing the widget of a *signed* signature field (the visible proof of a signature) or of a
    filled field is refused outright. Objects the writer frees with the removed annotation
    (Acrobat frees them) are explained only along the paths that pass through a removed
    annotation: freeing something the page content still uses is not.
* :class:`MarkupEditRule` — an existing comment is edited (text, colour, position, its own
  appearance): "annotation modification", ANNOTATIONS (Table 254, P=3). Needed once revisions
  are compared one by one (a comment added in one revision and edited in the next); it must
  stay a plain comment of the same kind, and an appearance stream it rewrites in place is
  approved only along the paths through the comment.
* :class:`StructureTreeRule` — Acrobat tags what it adds to a tagged (accessible, PDF/UA)
  document: a new structure element with an object reference (OBJR) to the new comment or
  widget, appended to an existing element's ``/K``, a ``/ParentTree`` entry for the
  annotation's ``/StructParent``, a new ``/ParentTreeNextKey``. pyHanko refuses all of it.
  Accepted when the change consists of exactly that: existing elements keep every other key and
  the order of their kids; added kids are *new* elements whose content is nothing but OBJRs to
  *new* annotations (no marked-content IDs, no existing element moved: re-parenting the signed
  page content, or giving it a new ``/ActualText``, changes what assistive technology and text
  extraction read and is refused); ParentTree entries that existed keep their values, new ones
  point at the new elements. Removing the element of an annotation removed in the same revision
  is accepted too. The level is the level of what is tagged: FORM_FILLING when only widgets are
  tagged (adding a signature field to a tagged P=2 document must not fail it), ANNOTATIONS
  otherwise. EU DSS 6.4 (checked with ../shared/tools/dss-validate on these tests' files)
  reports a comment added or deleted with its tagging as an annotation change only, and the
  tagging of an annotation changes no rendering.
* :class:`OutlineRule` — bookmarks added, renamed, reordered or removed: ANNOTATIONS. ISO
  32000-1 lists no outline change among the P=1/P=2 permissions, and outline items are
  navigation aids like link annotations, so they take the annotation level: an approval
  signature or P=3 accepts them (with the report's warning), P=1 and P=2 fail. A new or changed
  bookmark may only go to a destination in this document (``/Dest``, or a ``/GoTo`` action);
  any other action (JavaScript, URI, Launch, SubmitForm, …) is refused: it would run on click
  in a document presented as signed.
  EU DSS 6.4 files bookmark changes under "undefined changes" (a warning in its default policy)
  and, after a P=2 certification, warns that they are restricted by DocMDP: the same reading.
* :class:`ValidationDataRule` — replaces pyHanko's DSSCompareRule, which demands that every
  existing ``/VRI`` entry stay as it was. EU DSS rewrites the whole ``/DSS`` on each LT/LTA
  extension (new dictionary and arrays; VRI entries rewritten for every signature, or no VRI
  at all, its current default), so pyHanko failed every earlier signature of a document
  extended by DSS with VRI entries (the issue's 22 of 25), and of one whose VRI entries (from
  pyHanko or an older DSS) a later DSS extension drops. Accepted at LTA_UPDATES when the DSS
  keeps its shape (ISO 32000-2 12.8.4.3), no validation object that was there is lost (by
  reference or identical content), no existing stream is rewritten in place, and nothing
  outside the DSS changes.
* :class:`SignatureFieldRule` — pyHanko's rule for signature fields, plus: an *unsigned*
  signature field may be deleted (with its widget, see above) at ANNOTATIONS; a signed one may
  not (pyHanko's refusal stands). Widget bindings are left to :class:`PageAnnotationRule`.
* :class:`FieldValueRule` — the "replace" shadow attack (Mainka, Mladenov, Rohlmann, Schwenk:
  "Shadow Attacks", NDSS 2021): after signing, a field's appearance stream (``/AP``, the stream
  in place, or an XObject or font it uses) is replaced while its value ``/V`` stays as signed,
  so viewers show new content that pyHanko's default accepts as form filling. Here the
  appearance may change only together with the value (ordinary filling regenerates it): an
  appearance, appearance state (``/AS``) or visibility flag (``/F`` Invisible/Hidden/NoView/
  ToggleNoView, or Print removed) changed without a value change is refused. The same holds for
  the form's default resources: an existing ``/AcroForm /DR`` entry (the fonts viewers use to
  draw field values) must keep its content — adding new entries is fine, as Acrobat does — and
  ``/NeedAppearances`` must not be switched on after signing (it makes viewers redraw every
  field from its value, replacing the signed appearances without touching a stream). When
  ``/NeedAppearances`` is already on, ``/DA`` and ``/Q`` (how the value is drawn) count as
  appearance too. pyHanko's default also marked a field "changed" in every revision when its
  appearance stream predates the signed revision (it tested the stream's last change in the
  whole file); here a field counts as changed only if something of it changed, so FieldMDP
  locks are not tripped by unrelated revisions.

* :class:`SignatureFieldStateRule` — pyHanko's rule for changes inside signature fields, not
  run on a field the revision does not write (for such a field pyHanko's rule only approves the
  field's own, unwritten reference, which changes nothing; it ran on every field at every
  revision, the largest share of a many-signature file's analysis). Speed only: the outcome is
  pyHanko's (tests/test_diff_speedups.py compares them revision by revision).

Rules raise the revision's level through :func:`require_level` when what they approve deserves
more than the objects it touches would show (a removal writes no new object).
"""

from __future__ import annotations

import dataclasses
import functools
import weakref
from collections.abc import Callable, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.reader import HistoricalResolver, PdfFileReader, RawPdfPath
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    DiffResult,
    FieldComparisonContext,
    FieldComparisonSpec,
    FormUpdate,
    FormUpdatingRule,
    ModificationLevel,
    StandardDiffPolicy,
    SuspiciousModification,
)
from pyhanko.sign.diff_analysis.commons import compare_dicts, qualify, qualify_transforming
from pyhanko.sign.diff_analysis.constants import ROOT_EXEMPT_STRICT_COMPARISON, VRI_KEY_PATTERN
from pyhanko.sign.diff_analysis.rules.file_structure_rules import CatalogModificationRule
from pyhanko.sign.diff_analysis.rules.form_field_rules import (
    DSSCompareRule,
    GenericFieldModificationRule,
    SigFieldCreationRule,
    SigFieldModificationRule,
    _allow_appearance_update,
    _allow_in_place_appearance_update,
)
from pyhanko.sign.diff_analysis.rules_api import (
    Context,
    QualifiedWhitelistRule,
    ReferenceUpdate,
    RelativeContext,
)
from pyhanko.sign.fields import FieldMDPSpec, MDPPerm

from signing_service.verification import rects
from signing_service.verification.diff_speedups import load_reverse_xref_cache, usage_steps

# A new widget whose /Rect holds references is visible to viewers (red team 21, R21-1).
rects.install()

ANNOT = ModificationLevel.ANNOTATIONS
FILL = ModificationLevel.FORM_FILLING
LTA = ModificationLevel.LTA_UPDATES

# Work limits per revision pair: a hostile file cannot make one rule walk more nodes than this.
MAX_TREE_NODES = 10_000
MAX_COMPARED_NODES = 20_000
# A tagged document has a few structure nodes per paragraph; walked only when a revision writes
# to the structure tree.
MAX_STRUCTURE_NODES = 200_000

# --- the revision's level floor ------------------------------------------------------------------

_LEVEL_FLOOR: ContextVar[list[ModificationLevel] | None] = ContextVar(
    "signing_service_diff_level_floor", default=None
)


# The DocMDP permission of the certification the revision pair is judged against (None: an
# approval signature), for the rules whose answer depends on it.
_CERTIFICATION: ContextVar[MDPPerm | None] = ContextVar(
    "signing_service_diff_certification", default=None
)


def require_level(level: ModificationLevel) -> None:
    """Raise the level of the revision pair being analysed to at least ``level``.

    pyHanko rates a revision by the objects it writes; a rule that approves a *removal* (which
    writes no new object) or a change to an object another rule also approves at a lower level
    states the level here. No effect outside :meth:`ServiceDiffPolicy.apply`.
    """
    floor = _LEVEL_FLOOR.get()
    if floor is not None and level > floor[0]:
        floor[0] = level


# --- helpers --------------------------------------------------------------------------------------

_Gen = TypeVar("_Gen", bound=Callable[..., Iterator[Any]])


def _refuse_malformed(method: _Gen) -> _Gen:
    """Turn a structural surprise in the new revision (a wrong type or a missing object where a
    rule expects one) into a refusal instead of an exception: what cannot be analysed is not
    allowed. pyHanko's own read errors (``PdfError``) pass through unchanged."""

    @functools.wraps(method)
    def guarded(*args: Any, **kwargs: Any) -> Iterator[Any]:
        try:
            yield from method(*args, **kwargs)
        except (SuspiciousModification, misc.PdfError):
            raise
        except (KeyError, TypeError, AttributeError, ValueError, IndexError, RecursionError) as e:
            raise SuspiciousModification(
                f"a structure changed after signing could not be analysed ({type(e).__name__})"
            ) from e

    return guarded  # type: ignore[return-value]


def _name_in(value: object, names: frozenset[str]) -> bool:
    """``value`` is one of ``names`` (and a name: other types, arrays say, are not hashable)."""
    return isinstance(value, generic.NameObject) and value in names


class _Budget:
    def __init__(self, limit: int, what: str) -> None:
        self.left = limit
        self.what = what

    def spend(self) -> None:
        self.left -= 1
        if self.left < 0:
            raise SuspiciousModification(f"{self.what} is too large to analyse")


def _resolve(obj: generic.PdfObject | None) -> generic.PdfObject | None:
    """``obj`` dereferenced and, in an encrypted document, decrypted (pyHanko hands out the
    arrays, dictionaries and strings inside an object as ``DecryptedObjectProxy``: compared
    as they come, two equal values looked changed, and a second signature on an encrypted
    signed document was judged an unpermitted modification of the first)."""
    if isinstance(obj, generic.IndirectObject):
        obj = obj.get_object()
    if isinstance(obj, generic.DecryptedObjectProxy):
        obj = obj.decrypted
    return obj


def _get(container: generic.DictionaryObject, key: str, default: object = None) -> Any:
    """``container.get(key, default)`` (not dereferenced), decrypted in an encrypted document:
    ``dict.get`` returns pyHanko's ``DecryptedObjectProxy`` for a direct array, dictionary or
    string, which every ``isinstance`` check here would take for something else."""
    if key not in container:
        return default
    raw_get = getattr(container, "raw_get", None)
    return raw_get(key) if raw_get is not None else container.get(key, default)


def _raw(container: generic.DictionaryObject, key: str) -> generic.PdfObject | None:
    return container.raw_get(key) if key in container else None


def _data(stream: generic.PdfObject) -> bytes | None:
    return stream.encoded_data if isinstance(stream, generic.StreamObject) else None


def _same(a: generic.PdfObject | None, b: generic.PdfObject | None, budget: _Budget) -> bool:
    """Whether two objects (each read through its own revision's resolver) have the same
    content, following indirect references on both sides. Streams compare by their dictionary
    and encoded bytes; strings by their bytes."""
    stack: list[tuple[generic.PdfObject | None, generic.PdfObject | None]] = [(a, b)]
    seen: set[tuple[int, int, int, int]] = set()
    while stack:
        budget.spend()
        x, y = stack.pop()
        if isinstance(x, generic.IndirectObject) and isinstance(y, generic.IndirectObject):
            key = (x.idnum, x.generation, y.idnum, y.generation)
            if key in seen:
                continue
            seen.add(key)
        x, y = _resolve(x), _resolve(y)
        if x is None or y is None:
            if x is not y:
                return False
            continue
        x_stream = isinstance(x, generic.StreamObject)
        y_stream = isinstance(y, generic.StreamObject)
        if (x_stream or y_stream) and not (x_stream and y_stream and _data(x) == _data(y)):
            return False
        if isinstance(x, generic.DictionaryObject):
            if not isinstance(y, generic.DictionaryObject):
                return False
            keys = set(x) - {"/Length"}
            if keys != set(y) - {"/Length"}:
                return False
            stack.extend((x.raw_get(k), y.raw_get(k)) for k in keys)
        elif isinstance(x, generic.ArrayObject):
            if not (isinstance(y, generic.ArrayObject) and len(x) == len(y)):
                return False
            stack.extend((x.raw_get(i), y.raw_get(i)) for i in range(len(x)))
        elif isinstance(x, generic.TextStringObject | generic.ByteStringObject):
            if not (
                isinstance(y, generic.TextStringObject | generic.ByteStringObject)
                and x.original_bytes == y.original_bytes
            ):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


def _new_refs_below(
    old: HistoricalResolver,
    obj: generic.PdfObject,
    budget: _Budget,
    skip: frozenset[str] = frozenset(),
) -> Iterator[generic.Reference]:
    """Every new indirect object reachable from ``obj`` (``skip``: keys not followed). Objects
    that already existed in ``old`` are not followed and not approved: if they changed, another
    rule must explain it."""
    stack: list[generic.PdfObject] = [obj]
    seen: set[generic.Reference] = set()
    while stack:
        budget.spend()
        item = stack.pop()
        if isinstance(item, generic.IndirectObject):
            ref = item.reference
            if ref in seen:
                continue
            seen.add(ref)
            if not old.is_ref_unassignable(ref):
                continue
            yield ref
            item = item.get_object()
        if isinstance(item, generic.DictionaryObject):
            stack.extend(item.raw_get(k) for k in item if k not in skip)
        elif isinstance(item, generic.ArrayObject):
            stack.extend(item.raw_get(i) for i in range(len(item)))


# Keyed weakly by the revision's resolver, so the entry goes with the document. The values are
# (object number, generation) pairs, not ``Reference`` objects: a Reference holds its resolver
# (``.pdf``), and a value that refers to its own key keeps it alive forever — every verified
# document's whole parsed reader would then stay in the worker (measured: ~1 MB per verification
# of a 25-signature file, growing without bound under public load).
_PAGES: weakref.WeakKeyDictionary[HistoricalResolver, tuple[tuple[int, int], ...]] = (
    weakref.WeakKeyDictionary()
)


def page_refs(resolver: HistoricalResolver) -> list[generic.Reference]:
    """The page objects of a revision, in page-tree order (worked out once per revision: the
    rules and the report's warnings all need them). Raises ``SuspiciousModification`` for a
    page tree over the size limit."""
    found = _PAGES.get(resolver)
    if found is None:
        found = _PAGES[resolver] = tuple((r.idnum, r.generation) for r in _walk_pages(resolver))
    return [generic.Reference(idnum, generation, resolver) for idnum, generation in found]


def _walk_pages(resolver: HistoricalResolver) -> list[generic.Reference]:
    pages: list[generic.Reference] = []
    stack = [resolver.root.raw_get("/Pages")]
    seen: set[generic.Reference] = set()
    while stack:
        item = stack.pop()
        if not isinstance(item, generic.IndirectObject) or item.reference in seen:
            continue
        seen.add(item.reference)
        if len(seen) > MAX_TREE_NODES * 10:
            raise SuspiciousModification("page tree is too large")
        node = item.get_object()
        if not isinstance(node, generic.DictionaryObject):
            continue
        if _get(node, "/Type") == "/Pages" or ("/Kids" in node and "/Contents" not in node):
            kids = _get(node, "/Kids")
            if isinstance(kids, generic.ArrayObject):
                stack.extend(reversed([kids.raw_get(i) for i in range(len(kids))]))
        else:
            pages.append(item.reference)
    return pages


def _annotation_list(page: generic.DictionaryObject) -> list[generic.PdfObject] | None:
    """The page's /Annots entries (raw), or None if /Annots is not an array."""
    if "/Annots" not in page:
        return []
    annots = page["/Annots"]
    if not isinstance(annots, generic.ArrayObject):
        return None
    return [annots.raw_get(i) for i in range(len(annots))]


def _freed_refs(new: HistoricalResolver) -> set[generic.Reference]:
    """Every reference the newest revision's cross-reference section marks free."""
    data = new.reader.xrefs.get_xref_data(new.revision)
    sections = [data] + ([data.hybrid.xref_data] if data.hybrid is not None else [])
    return {
        generic.Reference(idnum, gen - 1, pdf=new)
        for section in sections
        for idnum, gen in section.freed.items()
    }


def _in_use(old: HistoricalResolver, idnum: int) -> bool:
    """Whether object number ``idnum`` (any generation) was in use in revision ``old``."""
    xrefs = old.reader.xrefs
    for rev in range(old.revision, -1, -1):
        data = xrefs.get_xref_data(rev)
        for section in (data, data.hybrid.xref_data if data.hybrid is not None else None):
            if section is None:
                continue
            if idnum in section.xrefs_in_objstm or idnum in section.standard_xrefs:
                return True
            if idnum in section.freed:
                return False
    return False


def _approve_existing(
    old: HistoricalResolver,
    ref: generic.Reference,
    level: ModificationLevel,
    under: tuple[str | int, ...],
    through: set[generic.Reference] | None = None,
) -> Iterator[tuple[ModificationLevel, ReferenceUpdate]]:
    """Approve an existing object only along its usage paths that start with ``under``
    (e.g. ``("/Root", "/StructTreeRoot")``) or, with ``through``, that pass through one of
    those objects. A use elsewhere (the same object also drawn on a page, say) stays
    unexplained, so the change fails."""
    if old.is_ref_unassignable(ref):
        yield level, ReferenceUpdate(ref)
        return
    old._load_reverse_xref_cache()
    paths = old._get_usages_of_ref(ref)
    if not paths:
        yield level, ReferenceUpdate(ref)
        return
    for path in paths:
        ok = bool(under) and tuple(path.path[: len(under)]) == under
        if not ok and through:
            ok = _passes_through(old, path, through)
        if ok:
            yield level, ReferenceUpdate(ref, context_checked=Context.from_absolute(old, path))


def _annotation_usages(
    old: HistoricalResolver, ref: generic.Reference
) -> Iterator[tuple[ModificationLevel, ReferenceUpdate]]:
    """Approvals of ``ref`` along its usage paths in ``old`` that make it an annotation (the
    path ends ``…/Annots/<index>``); nothing when it is not used as one."""
    old._load_reverse_xref_cache()
    for path in old._get_usages_of_ref(ref):
        steps = tuple(path.path)
        if len(steps) >= 2 and steps[-2] == "/Annots" and isinstance(steps[-1], int):
            yield ANNOT, ReferenceUpdate(ref, context_checked=Context.from_absolute(old, path))


def _passes_through(
    old: HistoricalResolver, path: RawPdfPath, refs: set[generic.Reference]
) -> bool:
    """Whether the usage ``path`` (from the trailer) goes through one of ``refs`` before its
    end. Resolved in ``old`` step by step (the trailer's own references point at the newest
    revision)."""
    node: generic.PdfObject = old.trailer_view
    for entry in path.path:
        if isinstance(node, generic.IndirectObject):
            if node.reference in refs:
                return True
            node = old(node.reference)
        in_dict = isinstance(node, generic.DictionaryObject) and entry in node
        in_array = (
            isinstance(entry, int) and isinstance(node, generic.ArrayObject) and entry < len(node)
        )
        if not (in_dict or in_array):
            return False
        node = node.raw_get(entry)  # type: ignore[union-attr]
    return False


def _inherited(obj: generic.DictionaryObject, key: str) -> generic.PdfObject | None:
    """A form field attribute, looked up the /Parent chain (ISO 32000-1 12.7.3.1)."""
    node: generic.PdfObject | None = obj
    for _ in range(32):
        if not isinstance(node, generic.DictionaryObject):
            return None
        if key in node:
            return node.raw_get(key)
        node = _get(node, "/Parent")
    return None


def _new_signature_widgets(
    old: HistoricalResolver, new: HistoricalResolver
) -> set[generic.Reference]:
    """Widgets of signature fields that are new objects in ``new``'s form."""
    if "/AcroForm" not in new.root:
        return set()
    acroform = new.root["/AcroForm"]
    if not isinstance(acroform, generic.DictionaryObject):
        return set()
    fields = _get(acroform, "/Fields")
    if not isinstance(fields, generic.ArrayObject):
        return set()
    budget = _Budget(MAX_TREE_NODES, "form field tree")
    widgets: set[generic.Reference] = set()
    stack = [fields.raw_get(i) for i in range(len(fields))]
    while stack:
        budget.spend()
        raw = stack.pop()
        if not isinstance(raw, generic.IndirectObject):
            continue
        field_dict = raw.get_object()
        if not isinstance(field_dict, generic.DictionaryObject):
            continue
        kids = _get(field_dict, "/Kids")
        kid_refs = (
            [kids.raw_get(i) for i in range(len(kids))]
            if isinstance(kids, generic.ArrayObject)
            else []
        )
        sub_fields = [k for k in kid_refs if "/T" in _resolve(k)]  # type: ignore[operator]
        stack.extend(sub_fields)
        # (cheapest test first; neither reads anything)
        if not old.is_ref_unassignable(raw.reference) or _inherited(field_dict, "/FT") != "/Sig":
            continue
        widget_kids = [k for k in kid_refs if k not in sub_fields]
        if widget_kids:
            widgets.update(
                k.reference for k in widget_kids if isinstance(k, generic.IndirectObject)
            )
        else:
            widgets.add(raw.reference)
    return widgets


MARKUP_SUBTYPES = frozenset(
    {
        "/Text",
        "/FreeText",
        "/Line",
        "/Square",
        "/Circle",
        "/Polygon",
        "/PolyLine",
        "/Highlight",
        "/Underline",
        "/Squiggly",
        "/StrikeOut",
        "/Caret",
        "/Ink",
        "/Popup",
        "/Stamp",
    }
)
# An added comment must not act (actions, additional actions), carry files or media, or be
# a widget: that is no longer a comment.
FORBIDDEN_ANNOT_KEYS = frozenset({"/A", "/AA", "/FS", "/RichMediaContent", "/Movie", "/Sound"})
TAB_ORDERS = frozenset({"/R", "/C", "/S", "/A", "/W"})  # ISO 32000-2 12.5.1, Table 30


@dataclass
class _PageChange:
    page: generic.Reference
    old_page: generic.DictionaryObject
    new_page: generic.DictionaryObject
    old_annots: list[generic.PdfObject]
    new_annots: list[generic.PdfObject]

    @property
    def added(self) -> list[generic.PdfObject]:
        return _missing_from(self.new_annots, self.old_annots)

    @property
    def removed(self) -> list[generic.PdfObject]:
        return _missing_from(self.old_annots, self.new_annots)

    @property
    def order_kept(self) -> bool:
        """Whether the annotations in both lists keep their relative (drawing) order."""
        return _same_order(self.old_annots, self.new_annots)


def _missing_from(
    items: list[generic.PdfObject], other: list[generic.PdfObject]
) -> list[generic.PdfObject]:
    """The entries of ``items`` that are not in ``other`` (references by set lookup: pages can
    carry thousands of annotations)."""
    keys = {_entry_key(o) for o in other if isinstance(o, _HASHABLE_ENTRIES)}
    direct = [o for o in other if not isinstance(o, _HASHABLE_ENTRIES)]
    return [
        i
        for i in items
        if (_entry_key(i) not in keys if isinstance(i, _HASHABLE_ENTRIES) else i not in direct)
    ]


_HASHABLE_ENTRIES = (generic.IndirectObject, generic.NumberObject)


def _entry_key(entry: generic.PdfObject) -> tuple[int, int, int] | tuple[int, generic.PdfObject]:
    """A set key equal exactly when the entries are equal: a reference by its object number and
    generation (as ``IndirectObject.__eq__``; built here, not by its hash method in Python), a
    number by its value; a reference never equals a number."""
    if isinstance(entry, generic.IndirectObject):
        ref = entry.reference
        return (0, ref.idnum, ref.generation)
    return (1, entry)


def _same_order(old: list[generic.PdfObject], new: list[generic.PdfObject]) -> bool:
    """Whether the entries present in both lists appear in the same relative order."""
    return _missing_from(old, _missing_from(old, new)) == _missing_from(
        new, _missing_from(new, old)
    )


@dataclass
class _AnnotationChanges:
    pages: list[_PageChange] = field(default_factory=list)
    removed: set[generic.Reference] = field(default_factory=set)


def _annotation_changes(old: HistoricalResolver, new: HistoricalResolver) -> _AnnotationChanges:
    """Pages whose dictionary or /Annots array this revision writes, with their annotation
    lists before and after. Empty when the page tree itself changed (pages added, removed or
    moved): nothing here explains that, so it fails."""
    result = _AnnotationChanges()
    old_pages = page_refs(old)
    new_pages = page_refs(new)
    if old_pages != new_pages:
        return result
    written = new.explicit_refs_in_revision()
    for page_ref in new_pages:
        new_page = new(page_ref)
        old_page = old(page_ref)
        if not (
            isinstance(new_page, generic.DictionaryObject)
            and isinstance(old_page, generic.DictionaryObject)
        ):
            continue
        raw_annots = _raw(new_page, "/Annots")
        touched = page_ref in written or (
            isinstance(raw_annots, generic.IndirectObject) and raw_annots.reference in written
        )
        if not touched:
            continue
        old_annots = _annotation_list(old_page)
        new_annots = _annotation_list(new_page)
        if old_annots is None or new_annots is None:
            continue
        change = _PageChange(page_ref, old_page, new_page, old_annots, new_annots)
        result.pages.append(change)
        result.removed.update(
            a.reference for a in change.removed if isinstance(a, generic.IndirectObject)
        )
    return result


# --- rules ----------------------------------------------------------------------------------------


class CatalogRule(CatalogModificationRule):
    """pyHanko's catalog rule; ``/Names``, ``/Outlines`` and ``/PageMode`` are vetted here or by
    :class:`AppearanceNameTreeRule` and :class:`OutlineRule`."""

    PAGE_MODES = frozenset({"/UseNone", "/UseOutlines"})

    def __init__(self) -> None:
        super().__init__(
            ignored_keys=ROOT_EXEMPT_STRICT_COMPARISON | {"/Names", "/Outlines", "/PageMode"}
        )

    @_refuse_malformed
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        old_mode = _get(old.root, "/PageMode")
        new_mode = _get(new.root, "/PageMode")
        if old_mode != new_mode:
            if new_mode is not None and not _name_in(new_mode, self.PAGE_MODES):
                raise SuspiciousModification(f"/PageMode set to {new_mode} after signing")
            require_level(ANNOT)
        yield from super().apply_qualified(old, new)


ALLOWED_NEW_NAME_TREES = frozenset({"/AP"})


def _check_ap_values(tree: generic.DictionaryObject, budget: _Budget) -> None:
    nodes = [tree]
    while nodes:
        budget.spend()
        node = nodes.pop()
        for kid in _get(node, "/Kids", ()):
            nodes.append(kid.get_object())
        names = _get(node, "/Names", generic.ArrayObject())
        for value in list(names)[1::2]:
            stream = value.get_object()
            if not (
                isinstance(stream, generic.StreamObject) and _get(stream, "/Subtype") == "/Form"
            ):
                raise SuspiciousModification("/Names /AP value is not a Form XObject")


class AppearanceNameTreeRule(QualifiedWhitelistRule):
    """A new ``/Names /AP`` tree of new Form XObjects (Acrobat, when comments are added)."""

    @_refuse_malformed
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        old_raw = _raw(old.root, "/Names")
        new_raw = _raw(new.root, "/Names")
        if new_raw is None:
            if old_raw is not None:
                raise SuspiciousModification("/Names removed from the catalog")
            return
        old_names = old_raw.get_object() if old_raw is not None else generic.DictionaryObject()
        new_names = new_raw.get_object()
        if not isinstance(new_names, generic.DictionaryObject):
            raise SuspiciousModification("/Names is not a dictionary")
        for key in old_names:
            if key not in new_names or new_names.raw_get(key) != old_names.raw_get(key):
                raise SuspiciousModification(f"/Names {key} changed after signing")
        added = set(new_names) - set(old_names)
        if not added:
            if isinstance(new_raw, generic.IndirectObject) and (
                old_raw is None or new_raw.reference != getattr(old_raw, "reference", None)
            ):
                raise SuspiciousModification("/Names replaced after signing")
            return
        if added - ALLOWED_NEW_NAME_TREES:
            raise SuspiciousModification(f"/Names gained {sorted(added)} after signing")
        require_level(ANNOT)
        budget = _Budget(MAX_TREE_NODES, "/Names /AP tree")
        if isinstance(new_raw, generic.IndirectObject):
            ref = new_raw.reference
            if isinstance(old_raw, generic.IndirectObject) and old_raw.reference == ref:
                # The signed /Names dictionary object itself was overwritten.
                raise SuspiciousModification("/Names dictionary overwritten after signing")
            if not old.is_ref_unassignable(ref):
                raise SuspiciousModification("/Names update reuses an existing object")
            yield ANNOT, ReferenceUpdate(ref)
        for key in added:
            tree = new_names.raw_get(key)
            _check_ap_values(tree.get_object(), budget)
            for ref in _new_refs_below(old, tree, budget):
                yield ANNOT, ReferenceUpdate(ref)


class RelistedFreeEntryRule(QualifiedWhitelistRule):
    """A free entry for an object number that was already free in ``old`` (a writer repeating
    its free list) changes nothing: approved at LTA_UPDATES. Freeing an object that was in use is
    left for the rule that removed it to explain."""

    @_refuse_malformed
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        for ref in _freed_refs(new):
            if not _in_use(old, ref.idnum):
                yield LTA, ReferenceUpdate(ref)


class PageAnnotationRule(QualifiedWhitelistRule):
    """Annotations added to or removed from a page, and its tab order (see the module text)."""

    @_refuse_malformed
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        changes = _annotation_changes(old, new)
        if not changes.pages:
            return
        sig_widgets = _new_signature_widgets(old, new)
        freed = _freed_refs(new)
        budget = _Budget(MAX_TREE_NODES, "annotations")
        for change in changes.pages:
            yield from self._page(old, new, change, changes, sig_widgets, freed, budget)

    @staticmethod
    def _is_plain_markup(
        old: HistoricalResolver, new: HistoricalResolver, ref: generic.Reference
    ) -> bool:
        if not old.is_ref_unassignable(ref):
            return False
        annot = new(ref)
        return (
            isinstance(annot, generic.DictionaryObject)
            and _name_in(_get(annot, "/Subtype"), MARKUP_SUBTYPES)
            and not FORBIDDEN_ANNOT_KEYS & set(annot)
        )

    @staticmethod
    def _removal_level(old: HistoricalResolver, ref: generic.Reference) -> ModificationLevel:
        annot = old(ref)
        if not isinstance(annot, generic.DictionaryObject):
            return ANNOT
        if _get(annot, "/Subtype") != "/Widget":
            return ANNOT
        if _inherited(annot, "/V") is not None:
            kind = (
                "signed signature field" if _inherited(annot, "/FT") == "/Sig" else "filled field"
            )
            raise SuspiciousModification(f"the widget of a {kind} was removed ({ref})")
        return ANNOT

    def _page(
        self,
        old: HistoricalResolver,
        new: HistoricalResolver,
        change: _PageChange,
        changes: _AnnotationChanges,
        sig_widgets: set[generic.Reference],
        freed: set[generic.Reference],
        budget: _Budget,
    ) -> Iterator[tuple[ModificationLevel, ReferenceUpdate]]:
        old_page, new_page = change.old_page, change.new_page
        if not compare_dicts(old_page, new_page, frozenset({"/Annots", "/Tabs"}), raise_exc=False):
            return  # the page changed otherwise: unexplained
        level = LTA
        if _get(old_page, "/Tabs") != _get(new_page, "/Tabs"):
            if "/Tabs" in new_page and not _name_in(_get(new_page, "/Tabs"), TAB_ORDERS):
                return
            level = max(level, FILL)
        if not change.order_kept:
            return  # drawing order of the signed annotations changed
        added_markup: list[generic.Reference] = []
        for item in change.added:
            if not isinstance(item, generic.IndirectObject):
                return
            ref = item.reference
            if ref in sig_widgets:
                continue
            if not self._is_plain_markup(old, new, ref):
                return  # unknown annotation: unexplained
            added_markup.append(ref)
            level = max(level, ANNOT)
        removed = [a.reference for a in change.removed if isinstance(a, generic.IndirectObject)]
        if len(removed) != len(change.removed):
            return
        for ref in removed:
            level = max(level, self._removal_level(old, ref))
        raw_annots = _raw(new_page, "/Annots")
        old_raw_annots = _raw(old_page, "/Annots")
        if isinstance(raw_annots, generic.IndirectObject):
            annots_ref = raw_annots.reference
            same = (
                isinstance(old_raw_annots, generic.IndirectObject)
                and old_raw_annots.reference == annots_ref
            )
            if not (same or old.is_ref_unassignable(annots_ref)):
                return  # /Annots now reuses some other existing object
            yield (
                level,
                ReferenceUpdate(
                    annots_ref,
                    context_checked=RelativeContext(change.page, RawPdfPath("/Annots"))
                    if same
                    else None,
                ),
            )
        require_level(level)
        # Page objects are referenced from many places (destinations, /P, /Pg): the rest of the
        # page is equal, so approve it everywhere, as pyHanko does for widget bindings.
        yield level, ReferenceUpdate(change.page)
        for ref in added_markup:
            item = generic.IndirectObject(ref.idnum, ref.generation, new)
            for sub in _new_refs_below(old, item, budget, skip=frozenset({"/P", "/Parent"})):
                yield ANNOT, ReferenceUpdate(sub)
        yield from self._freed_with(old, removed, changes.removed, freed, budget)

    @staticmethod
    def _freed_with(
        old: HistoricalResolver,
        removed: list[generic.Reference],
        all_removed: set[generic.Reference],
        freed: set[generic.Reference],
        budget: _Budget,
    ) -> Iterator[tuple[ModificationLevel, ReferenceUpdate]]:
        """Objects freed together with removed annotations (their appearance streams, popups):
        approved along the paths through a removed annotation only."""
        if not freed:
            return
        stack: list[generic.PdfObject] = [
            generic.IndirectObject(r.idnum, r.generation, old) for r in removed
        ]
        seen: set[generic.Reference] = set()
        while stack:
            budget.spend()
            item = stack.pop()
            if isinstance(item, generic.IndirectObject):
                ref = item.reference
                if ref in seen:
                    continue
                seen.add(ref)
                if ref in freed:
                    if ref in all_removed:
                        yield ANNOT, ReferenceUpdate(ref)
                    else:
                        yield from _approve_existing(old, ref, ANNOT, (), through=all_removed)
                item = item.get_object()
            if isinstance(item, generic.DictionaryObject):
                stack.extend(item.raw_get(k) for k in item if k not in ("/P", "/Parent"))
            elif isinstance(item, generic.ArrayObject):
                stack.extend(item.raw_get(i) for i in range(len(item)))


class MarkupEditRule(QualifiedWhitelistRule):
    """A comment that already exists is edited (its text, colour, position, appearance):
    "annotation modification", at ANNOTATIONS (ISO 32000-1 Table 254, P=3). Needed as soon as
    revisions are compared one by one: a comment added in one revision and edited in the next
    is an existing object in the second. It must stay a plain comment of the same kind (no
    action, file, media); an appearance stream it rewrites in place is approved only along the
    paths through the comment, so a stream also drawn elsewhere cannot change this way."""

    @_refuse_malformed
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        written = new.explicit_refs_in_revision()
        budget = _Budget(MAX_TREE_NODES, "edited annotations")
        for ref in written:
            if old.is_ref_unassignable(ref):
                continue
            try:
                before, after = old(ref), new(ref)
            except Exception:  # noqa: BLE001 - unreadable: not an annotation we can judge
                continue
            if not (
                isinstance(before, generic.DictionaryObject)
                and isinstance(after, generic.DictionaryObject)
                # A stream is never an annotation: a page's content stream that carries a
                # markup /Subtype (shadow prepared before signing) must not pass as a comment.
                and not isinstance(before, generic.StreamObject)
                and not isinstance(after, generic.StreamObject)
                and _name_in(_get(before, "/Subtype"), MARKUP_SUBTYPES)
                and _get(after, "/Subtype") == _get(before, "/Subtype")
                and not FORBIDDEN_ANNOT_KEYS & set(after)
                and _raw(before, "/P") == _raw(after, "/P")
            ):
                continue
            # Approved only where it is used as an annotation (an entry of a page's /Annots):
            # the same dictionary also used as a page's /Resources, say, stays unexplained.
            approvals = list(_annotation_usages(old, ref))
            if not approvals:
                continue
            require_level(ANNOT)
            yield from approvals
            item = generic.IndirectObject(ref.idnum, ref.generation, new)
            for sub in _new_refs_below(old, item, budget, skip=frozenset({"/P", "/Parent"})):
                yield ANNOT, ReferenceUpdate(sub)
            appearance = _get(after, "/AP")
            if isinstance(appearance, generic.DictionaryObject):
                for key in ("/N", "/R", "/D"):
                    stream = _raw(appearance, key)
                    if isinstance(stream, generic.IndirectObject) and stream.reference in written:
                        yield from _approve_existing(
                            old, stream.reference, ANNOT, (), through={ref}
                        )


# Keys a structure element added for an annotation may have (ISO 32000-1 14.7.2, Table 323).
STRUCT_ELEMENT_KEYS = frozenset(
    {
        "/Type",
        "/S",
        "/P",
        "/K",
        "/Pg",
        "/Alt",
        "/ActualText",
        "/E",
        "/Lang",
        "/T",
        "/A",
        "/C",
        "/ID",
        "/R",
    }
)


def _kids(container: generic.DictionaryObject) -> list[generic.PdfObject]:
    if "/K" not in container:
        return []
    raw = container.raw_get("/K")
    value = _resolve(raw)
    if isinstance(value, generic.ArrayObject):
        return [value.raw_get(i) for i in range(len(value))]
    return [raw]


def _is_objr(obj: generic.PdfObject | None) -> bool:
    return isinstance(obj, generic.DictionaryObject) and (
        _get(obj, "/Type") == "/OBJR" or ("/Obj" in obj and "/S" not in obj)
    )


class _StructureChangeRefused(Exception):
    """The structure tree changed in a way the rule does not explain."""


def _number_tree(
    raw: generic.PdfObject | None, budget: _Budget
) -> tuple[dict[int, generic.PdfObject], list[generic.Reference]]:
    """A number tree (ISO 32000-1 7.9.7) flattened: key → raw value, and its indirect nodes
    (node dictionaries and their /Nums and /Kids arrays)."""
    entries: dict[int, generic.PdfObject] = {}
    nodes: list[generic.Reference] = []
    stack = [raw] if raw is not None else []
    seen: set[generic.Reference] = set()
    while stack:
        budget.spend()
        item = stack.pop()
        if isinstance(item, generic.IndirectObject):
            if item.reference in seen:
                raise _StructureChangeRefused()
            seen.add(item.reference)
            nodes.append(item.reference)
        node = _resolve(item)
        if not isinstance(node, generic.DictionaryObject):
            raise _StructureChangeRefused()
        for key in ("/Nums", "/Kids"):
            sub = _raw(node, key)
            if isinstance(sub, generic.IndirectObject):
                nodes.append(sub.reference)
        nums = _get(node, "/Nums")
        if isinstance(nums, generic.ArrayObject):
            for i in range(0, len(nums) - 1, 2):
                k = nums.raw_get(i)
                if not isinstance(k, generic.NumberObject):
                    raise _StructureChangeRefused()
                entries[int(k)] = nums.raw_get(i + 1)
        kids = _get(node, "/Kids")
        if isinstance(kids, generic.ArrayObject):
            stack.extend(kids.raw_get(i) for i in range(len(kids)))
    return entries, nodes


class StructureTreeRule(QualifiedWhitelistRule):
    """The tagging of added (or removed) annotations in a tagged document (see the module
    text). All or nothing: if any part of the structure change is not of that kind, nothing is
    approved and the revision fails."""

    UNDER = ("/Root", "/StructTreeRoot")

    @_refuse_malformed
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        raw_old = _raw(old.root, "/StructTreeRoot")
        raw_new = _raw(new.root, "/StructTreeRoot")
        if not (
            isinstance(raw_old, generic.IndirectObject)
            and isinstance(raw_new, generic.IndirectObject)
            and raw_old.reference == raw_new.reference
        ):
            return  # absent, direct, or replaced: the catalog comparison decides
        root_ref = raw_new.reference
        written = new.explicit_refs_in_revision()
        if root_ref not in written and not any(
            self._was_element(old, ref) for ref in written if not old.is_ref_unassignable(ref)
        ):
            return
        try:
            approvals, level = self._analyse(old, new, root_ref, written)
        except _StructureChangeRefused:
            return
        require_level(level)
        for ref in approvals:
            yield from _approve_existing(old, ref, level, self.UNDER)

    @staticmethod
    def _was_element(old: HistoricalResolver, ref: generic.Reference) -> bool:
        try:
            obj = old(ref)
        except Exception:  # noqa: BLE001 - unreadable in the old revision: not an element
            return False
        return isinstance(obj, generic.DictionaryObject) and (
            _get(obj, "/Type") == "/StructElem" or ("/S" in obj and "/P" in obj)
        )

    def _analyse(
        self,
        old: HistoricalResolver,
        new: HistoricalResolver,
        root_ref: generic.Reference,
        written: set[generic.Reference],
    ) -> tuple[list[generic.Reference], ModificationLevel]:
        budget = _Budget(MAX_STRUCTURE_NODES, "structure tree")
        old_root = old(root_ref)
        new_root = new(root_ref)
        if not (
            isinstance(old_root, generic.DictionaryObject)
            and isinstance(new_root, generic.DictionaryObject)
        ):
            raise _StructureChangeRefused()
        if not compare_dicts(
            old_root, new_root, frozenset({"/K", "/ParentTree", "/ParentTreeNextKey"}), False
        ):
            raise _StructureChangeRefused()
        next_key = _get(new_root, "/ParentTreeNextKey")
        if next_key is not None and not isinstance(next_key, generic.NumberObject):
            raise _StructureChangeRefused()
        removed_annots = _annotation_changes(old, new).removed
        old_elements = self._elements(old_root, budget)
        approvals: list[generic.Reference] = [root_ref]
        new_elements: set[generic.Reference] = set()
        removed_elements: set[generic.Reference] = set()
        only_widgets = True
        containers: list[tuple[generic.Reference, bool]] = [(root_ref, True)]
        containers += [(ref, False) for ref in old_elements]
        for ref, is_root in containers:
            old_c, new_c = old(ref), new(ref)
            raw_k = _raw(new_c, "/K") if isinstance(new_c, generic.DictionaryObject) else None
            k_written = isinstance(raw_k, generic.IndirectObject) and raw_k.reference in written
            if not is_root and ref not in written and not k_written:
                continue
            if not isinstance(new_c, generic.DictionaryObject):
                # the element is gone (freed): its parent must have dropped it, checked there
                continue
            if not is_root and not compare_dicts(old_c, new_c, frozenset({"/K"}), False):
                raise _StructureChangeRefused()
            old_kids, new_kids = _kids(old_c), _kids(new_c)
            if not _same_order(old_kids, new_kids):
                raise _StructureChangeRefused()  # reading order of signed content changed
            for kid in _missing_from(old_kids, new_kids):
                removed_elements |= self._removable(old, kid, removed_annots, budget)
            for kid in _missing_from(new_kids, old_kids):
                widgets_only = self._added(old, new, kid, new_elements, budget)
                only_widgets = only_widgets and widgets_only
            if not is_root:
                approvals.append(ref)
            if isinstance(raw_k, generic.IndirectObject):
                approvals.append(raw_k.reference)
        old_map, _ = _number_tree(_raw(old_root, "/ParentTree"), budget)
        new_map, new_nodes = _number_tree(_raw(new_root, "/ParentTree"), budget)
        for key, value in old_map.items():
            if key in new_map:
                if new_map[key] != value:
                    raise _StructureChangeRefused()
            elif not (
                isinstance(value, generic.IndirectObject) and value.reference in removed_elements
            ):
                raise _StructureChangeRefused()
        for key, value in new_map.items():
            if key not in old_map and not (
                isinstance(value, generic.IndirectObject) and value.reference in new_elements
            ):
                raise _StructureChangeRefused()
        approvals += [r for r in new_nodes if r in written]
        approvals += sorted(new_elements, key=lambda r: r.idnum)
        approvals += [r for r in removed_elements if r in written]  # freed with their annotation
        level = FILL if only_widgets and not removed_elements else ANNOT
        return approvals, level

    @staticmethod
    def _elements(root: generic.DictionaryObject, budget: _Budget) -> list[generic.Reference]:
        found: list[generic.Reference] = []
        seen: set[generic.Reference] = set()
        stack = _kids(root)
        while stack:
            budget.spend()
            kid = stack.pop()
            if not isinstance(kid, generic.IndirectObject) or kid.reference in seen:
                continue
            seen.add(kid.reference)
            obj = kid.get_object()
            if isinstance(obj, generic.DictionaryObject) and not _is_objr(obj) and "/S" in obj:
                found.append(kid.reference)
                stack.extend(_kids(obj))
        return found

    @staticmethod
    def _removable(
        old: HistoricalResolver,
        kid: generic.PdfObject,
        removed_annots: set[generic.Reference],
        budget: _Budget,
    ) -> set[generic.Reference]:
        """The elements under a dropped kid, if all it tagged were annotations removed in this
        revision; else refuse."""
        elements: set[generic.Reference] = set()
        stack = [kid]
        tagged = 0
        while stack:
            budget.spend()
            item = stack.pop()
            obj = _resolve(item)
            if _is_objr(obj):
                target = obj.raw_get("/Obj")  # type: ignore[union-attr]
                if not (
                    isinstance(target, generic.IndirectObject)
                    and target.reference in removed_annots
                ):
                    raise _StructureChangeRefused()
                tagged += 1
                continue
            if not isinstance(obj, generic.DictionaryObject) or "/S" not in obj:
                raise _StructureChangeRefused()  # marked content: page content lost its tag
            if isinstance(item, generic.IndirectObject):
                elements.add(item.reference)
            stack.extend(_kids(obj))
        if not tagged:
            raise _StructureChangeRefused()
        return elements

    @staticmethod
    def _added(
        old: HistoricalResolver,
        new: HistoricalResolver,
        kid: generic.PdfObject,
        new_elements: set[generic.Reference],
        budget: _Budget,
    ) -> bool:
        """Check an added kid: new elements tagging new annotations only. Collects the new
        objects to approve; returns whether every tagged annotation is a widget."""
        only_widgets = True
        tagged = 0
        stack = [kid]
        while stack:
            budget.spend()
            item = stack.pop()
            if isinstance(item, generic.IndirectObject):
                if not old.is_ref_unassignable(item.reference):
                    raise _StructureChangeRefused()  # an existing object moved into the tree
                new_elements.add(item.reference)
            obj = _resolve(item)
            if _is_objr(obj):
                target = obj.raw_get("/Obj")  # type: ignore[union-attr]
                if not (
                    isinstance(target, generic.IndirectObject)
                    and old.is_ref_unassignable(target.reference)
                ):
                    raise _StructureChangeRefused()
                annot = target.get_object()
                if not (isinstance(annot, generic.DictionaryObject) and "/Subtype" in annot):
                    raise _StructureChangeRefused()
                only_widgets = only_widgets and _get(annot, "/Subtype") == "/Widget"
                tagged += 1
                continue
            if not (isinstance(obj, generic.DictionaryObject) and "/S" in obj):
                raise _StructureChangeRefused()  # marked content (MCID/MCR): page content
            if set(obj) - STRUCT_ELEMENT_KEYS:
                raise _StructureChangeRefused()
            attrs = _raw(obj, "/A")
            if isinstance(attrs, generic.IndirectObject):
                if not old.is_ref_unassignable(attrs.reference):
                    raise _StructureChangeRefused()
                new_elements.add(attrs.reference)
            stack.extend(_kids(obj))
        if not tagged:
            raise _StructureChangeRefused()
        return only_widgets


# Outline item keys (ISO 32000-1 12.3.3, Table 153).
OUTLINE_ROOT_KEYS = frozenset({"/Type", "/First", "/Last", "/Count"})
OUTLINE_ITEM_KEYS = frozenset(
    {
        "/Title",
        "/Parent",
        "/Prev",
        "/Next",
        "/First",
        "/Last",
        "/Count",
        "/Dest",
        "/A",
        "/SE",
        "/C",
        "/F",
    }
)


class OutlineRule(QualifiedWhitelistRule):
    """Bookmarks added, changed or removed, at ANNOTATIONS; new bookmarks only go somewhere in
    this document (see the module text)."""

    UNDER = ("/Root", "/Outlines")

    @_refuse_malformed
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        old_raw = _raw(old.root, "/Outlines")
        new_raw = _raw(new.root, "/Outlines")
        written = new.explicit_refs_in_revision()
        touched = (
            old_raw != new_raw
            or (isinstance(new_raw, generic.IndirectObject) and new_raw.reference in written)
            or any(self._was_item(old, ref) for ref in written if not old.is_ref_unassignable(ref))
        )
        if not touched:
            return  # cheap exit: the outline is walked only when this revision writes to it
        require_level(ANNOT)
        budget = _Budget(MAX_TREE_NODES, "outline")
        old_items = self._items(old_raw, budget, strict=False) if old_raw is not None else {}
        if new_raw is not None:
            new_items = self._items(new_raw, budget, strict=True)
            pages = set(page_refs(new))
            for ref, is_root in new_items.items():
                obj = new(ref)
                if ref in old_items and not old.is_ref_unassignable(ref) and obj == old(ref):
                    continue  # unchanged
                if is_root:
                    self._check_root(obj)
                else:
                    self._check_item(obj, pages)
                yield from _approve_existing(old, ref, ANNOT, self.UNDER)
                for sub in _new_refs_below(
                    old,
                    generic.IndirectObject(ref.idnum, ref.generation, new),
                    budget,
                    skip=frozenset({"/Parent", "/Prev", "/Next", "/First", "/Last", "/SE"}),
                ):
                    if sub != ref:
                        yield ANNOT, ReferenceUpdate(sub)
        else:
            new_items = {}
        freed = _freed_refs(new)
        for ref in old_items:
            if ref not in new_items and ref in freed:
                yield from _approve_existing(old, ref, ANNOT, self.UNDER)

    @staticmethod
    def _was_item(old: HistoricalResolver, ref: generic.Reference) -> bool:
        try:
            obj = old(ref)
        except Exception:  # noqa: BLE001 - unreadable in the old revision: not an item
            return False
        return isinstance(obj, generic.DictionaryObject) and (
            _get(obj, "/Type") == "/Outlines" or ("/Title" in obj and "/Parent" in obj)
        )

    @staticmethod
    def _items(
        raw: generic.PdfObject, budget: _Budget, *, strict: bool
    ) -> dict[generic.Reference, bool]:
        """The outline's indirect objects (ref → is the root). ``strict``: refuse loops and
        direct items (in the new revision); lenient for the signed one."""
        items: dict[generic.Reference, bool] = {}
        if not isinstance(raw, generic.IndirectObject):
            if strict:
                raise SuspiciousModification("the outline must be an indirect dictionary")
            return items
        items[raw.reference] = True
        stack = [raw]
        while stack:
            budget.spend()
            node = stack.pop().get_object()
            if not isinstance(node, generic.DictionaryObject):
                if strict:
                    raise SuspiciousModification("outline item is not a dictionary")
                continue
            for key in ("/First", "/Next"):
                nxt = _raw(node, key)
                if nxt is None:
                    continue
                if not isinstance(nxt, generic.IndirectObject):
                    if strict:
                        raise SuspiciousModification("outline items must be indirect")
                    continue
                if nxt.reference in items:
                    if strict:
                        raise SuspiciousModification("the outline contains a loop")
                    continue
                items[nxt.reference] = False
                stack.append(nxt)
        return items

    @staticmethod
    def _check_root(obj: generic.PdfObject) -> None:
        if not isinstance(obj, generic.DictionaryObject) or set(obj) - OUTLINE_ROOT_KEYS:
            raise SuspiciousModification("unexpected entries in the outline dictionary")

    @classmethod
    def _check_item(cls, obj: generic.PdfObject, pages: set[generic.Reference]) -> None:
        if not isinstance(obj, generic.DictionaryObject):
            raise SuspiciousModification("outline item is not a dictionary")
        unexpected = set(obj) - OUTLINE_ITEM_KEYS
        if unexpected:
            raise SuspiciousModification(f"outline item has {sorted(unexpected)}")
        if "/Dest" in obj:
            cls._check_destination(obj["/Dest"], pages)
        if "/A" in obj:
            action = obj["/A"]
            if not (
                isinstance(action, generic.DictionaryObject)
                and _get(action, "/S") == "/GoTo"
                and "/D" in action
                and "/Next" not in action
            ):
                kind = _get(action, "/S") if isinstance(action, generic.DictionaryObject) else "?"
                raise SuspiciousModification(f"a bookmark added after signing runs {kind}")
            cls._check_destination(action["/D"], pages)

    @staticmethod
    def _check_destination(dest: generic.PdfObject, pages: set[generic.Reference]) -> None:
        if isinstance(
            dest, generic.NameObject | generic.TextStringObject | generic.ByteStringObject
        ):
            return  # a named destination: the name dictionaries cannot change (catalog rules)
        if not (isinstance(dest, generic.ArrayObject) and len(dest) >= 2):
            raise SuspiciousModification("malformed bookmark destination")
        target = dest.raw_get(0)
        if not (isinstance(target, generic.IndirectObject) and target.reference in pages):
            raise SuspiciousModification("bookmark destination is not a page of this document")


DSS_KEYS = frozenset({"/Type", "/VRI", "/Certs", "/CRLs", "/OCSPs"})  # ISO 32000-2 12.8.4.3
DSS_ARRAYS = ("/Certs", "/CRLs", "/OCSPs")
VRI_KEYS = frozenset({"/Type", "/TU", "/TS", "/Cert", "/CRL", "/OCSP"})  # Table 262
VRI_ARRAYS = ("/Cert", "/CRL", "/OCSP")


@dataclass
class _ValidationData:
    """What a /DSS holds: its container objects (dictionaries and arrays that are indirect) and
    its validation objects (certificate, CRL, OCSP and timestamp streams)."""

    containers: list[generic.Reference] = field(default_factory=list)
    streams: list[generic.Reference] = field(default_factory=list)


class ValidationDataRule(QualifiedWhitelistRule):
    """Updates of the document security store (``/DSS``), at LTA_UPDATES; replaces pyHanko's
    DSSCompareRule.

    pyHanko demands that every existing ``/VRI`` entry stay exactly as it was. EU DSS, when it
    extends signatures to LT/LTA, writes a new ``/DSS`` dictionary: new arrays (existing
    validation objects reused by reference, new ones as new streams) and either a new ``/VRI``
    whose entries are rewritten for every signature (with more data) or, by default in current
    versions (``includeVRIDictionary`` false), no ``/VRI`` at all
    (PdfBoxSignatureService.buildDSSDictionary). With VRI entries, pyHanko reads each extension
    as a forbidden change and fails every earlier signature (the issue's 22 of 25 on EU DSS's
    own test document; reproduced with DSS 6.4 in tests/test_modifications.py), and so is a
    later extension that drops the VRI entries an earlier tool wrote. Here the DSS may be
    restructured freely as long as

    * it keeps the DSS shape (ISO 32000-2 12.8.4.3: only ``/Type /VRI /Certs /CRLs /OCSPs``;
      VRI entries only ``/Type /TU /TS /Cert /CRL /OCSP``, keys 40 hex digits; arrays of
      indirect streams),
    * no validation object that was there is lost (each old stream is still referenced, or one
      with the same content is — a validator a decade from now needs them),
    * existing streams are never rewritten in place (only new objects carry new data), and
    * nothing outside the DSS changes (other rules still judge every other object).
    """

    UNDER = ("/Root", "/DSS")

    @_refuse_malformed
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        old_raw = _raw(old.root, "/DSS")
        new_raw = _raw(new.root, "/DSS")
        if new_raw is None:
            if old_raw is not None:
                raise SuspiciousModification("the document security store (/DSS) was removed")
            return
        budget = _Budget(MAX_TREE_NODES * 10, "/DSS")
        after = self._collect(new_raw, budget, strict=True)
        before = (
            self._collect(old_raw, budget, strict=False)
            if old_raw is not None
            else _ValidationData()
        )
        written = new.explicit_refs_in_revision()
        self._check_nothing_lost(before, after, written, budget)
        if isinstance(new_raw, generic.IndirectObject):
            yield from _approve_existing(old, new_raw.reference, LTA, self.UNDER)
        for ref in after.containers:
            yield from _approve_existing(old, ref, LTA, self.UNDER)
        for ref in after.streams:
            if old.is_ref_unassignable(ref):
                yield LTA, ReferenceUpdate(ref)
            # An existing stream stays as it was: if this revision rewrote it, nothing here
            # explains that, and the revision fails.

    @staticmethod
    def _collect(raw: generic.PdfObject, budget: _Budget, *, strict: bool) -> _ValidationData:
        """Walk a /DSS. ``strict`` (the new revision): refuse anything outside the DSS shape;
        otherwise (the signed revision) collect what is there."""
        found = _ValidationData()

        def refuse(what: str) -> None:
            if strict:
                raise SuspiciousModification(f"/DSS: {what}")

        def container(value: generic.PdfObject) -> generic.PdfObject:
            if isinstance(value, generic.IndirectObject):
                found.containers.append(value.reference)
                return value.get_object()
            return value

        def streams(value: generic.PdfObject, where: str) -> None:
            array = container(value)
            if not isinstance(array, generic.ArrayObject):
                refuse(f"{where} is not an array")
                return
            for i in range(len(array)):
                budget.spend()
                item = array.raw_get(i)
                if isinstance(item, generic.IndirectObject) and isinstance(
                    item.get_object(), generic.StreamObject
                ):
                    found.streams.append(item.reference)
                else:
                    refuse(f"{where} holds something other than indirect streams")

        dss = container(raw)
        if not isinstance(dss, generic.DictionaryObject):
            refuse("not a dictionary")
            return found
        if set(dss) - DSS_KEYS:
            refuse(f"unexpected entries {sorted(set(dss) - DSS_KEYS)}")
        if "/Type" in dss and _get(dss, "/Type") != "/DSS":
            refuse("wrong /Type")
        for key in DSS_ARRAYS:
            if key in dss:
                streams(dss.raw_get(key), key)
        if "/VRI" not in dss:
            return found
        vri = container(dss.raw_get("/VRI"))
        if not isinstance(vri, generic.DictionaryObject):
            refuse("/VRI is not a dictionary")
            return found
        for sig_key in vri:
            budget.spend()
            if not VRI_KEY_PATTERN.fullmatch(sig_key):
                refuse(f"VRI key {sig_key} is not a signature hash")
            entry = container(vri.raw_get(sig_key))
            if not isinstance(entry, generic.DictionaryObject) or isinstance(
                entry, generic.StreamObject
            ):
                refuse("VRI entries must be dictionaries")
                continue
            if set(entry) - VRI_KEYS:
                refuse(f"unexpected VRI entries {sorted(set(entry) - VRI_KEYS)}")
            for key in VRI_ARRAYS:
                if key in entry:
                    streams(entry.raw_get(key), f"VRI {key}")
            if "/TS" in entry:
                stamp = entry.raw_get("/TS")
                if isinstance(stamp, generic.IndirectObject) and isinstance(
                    stamp.get_object(), generic.StreamObject
                ):
                    found.streams.append(stamp.reference)
                else:
                    refuse("VRI /TS is not an indirect stream")
            if "/TU" in entry and not isinstance(
                _get(entry, "/TU"), generic.TextStringObject | generic.ByteStringObject
            ):
                refuse("VRI /TU is not a date")
        return found

    @staticmethod
    def _content(ref: generic.Reference) -> bytes:
        stream = ref.get_object()
        assert isinstance(stream, generic.StreamObject)
        try:
            return stream.data
        except Exception:  # noqa: BLE001 - undecodable: compare the stored bytes
            return b"raw:" + stream.encoded_data

    @classmethod
    def _check_nothing_lost(
        cls,
        before: _ValidationData,
        after: _ValidationData,
        written: set[generic.Reference],
        budget: _Budget,
    ) -> None:
        kept = {ref for ref in after.streams if ref not in written}
        missing = [ref for ref in dict.fromkeys(before.streams) if ref not in kept]
        if not missing:
            return
        available = set()
        for ref in after.streams:
            budget.spend()
            available.add(cls._content(ref))
        for ref in missing:
            if cls._content(ref) not in available:
                raise SuspiciousModification(
                    f"validation data {ref} was removed from /DSS (it is needed to validate "
                    "the signatures later)"
                )


class SignatureFieldRule(SigFieldCreationRule):
    """pyHanko's signature field rule; an unsigned signature field may also be deleted, and
    under a P=3 certification a new *visible* signature field is allowed (at ANNOTATIONS).

    pyHanko refuses a new visible signature field after any certification. ISO 32000-1 Table
    254 permits "annotation creation" and signing at P=3, and a visible signature field is a
    widget annotation plus a signature: refusing it failed the certification of every document
    certified "annotations allowed" that anyone then signed with a visible stamp. Under P=2
    (forms and signing, no new annotation) it stays refused: signing there means filling an
    existing empty field.
    """

    def __init__(self) -> None:
        # Widget bindings are approved (with /Tabs and comments) by PageAnnotationRule.
        super().__init__(approve_widget_bindings=False)

    @_refuse_malformed
    def apply(
        self, context: FieldComparisonContext
    ) -> Iterable[tuple[ModificationLevel, FormUpdate]]:
        deleted = {
            name: spec
            for name, spec in context.field_specs.items()
            if spec.old_field_ref is not None and spec.new_field_ref is None
        }
        removable = {
            name: spec
            for name, spec in deleted.items()
            if spec.field_type == "/Sig" and _inherited(spec.old_field, "/V") is None  # type: ignore[arg-type]
        }
        if removable:
            require_level(ANNOT)
            specs = {n: s for n, s in context.field_specs.items() if n not in removable}
            context = FieldComparisonContext(field_specs=specs, old=context.old, new=context.new)
            for name, spec in removable.items():
                assert spec.old_field_ref is not None
                # Reported as a changed field, so a FieldMDP lock on it still holds.
                yield (
                    ANNOT,
                    FormUpdate(
                        updated_ref=spec.old_field_ref, field_name=name, valid_when_locked=False
                    ),
                )
        annotations_allowed = _CERTIFICATION.get() is MDPPerm.ANNOTATE
        for level, update in super().apply(context):
            if annotations_allowed and not update.valid_when_certifying:
                # Only the new visible signature field itself is marked so by pyHanko.
                yield max(level, ANNOT), dataclasses.replace(update, valid_when_certifying=True)
            else:
                yield level, update


# Widget annotation flags that decide whether a field is seen or printed (ISO 32000-1 12.5.3).
VISIBILITY_FLAGS = 1 | 2 | 4 | 32 | 256  # Invisible, Hidden, Print, NoView, ToggleNoView
PRINT_FLAG = 4


class SignatureFieldStateRule(SigFieldModificationRule):
    """pyHanko's rule for changes inside signature fields, not run on a field the revision
    did not touch.

    pyHanko runs it on every field of the form at every revision, so a document with n
    signatures costs n·(n−1)/2 field checks (the largest share of its difference analysis).
    For a field that is the same object in both revisions and that the newer revision does not
    write (its dictionary therefore identical), pyHanko's rule only yields approvals of the
    field's own reference (at LTA_UPDATES, valid when locked or certified): the policy uses an
    approval only for the objects the revision writes, so these change nothing. The field is
    still checked when its dictionary is a stream (pyHanko refuses that) or when one of its
    usage paths is one on which pyHanko's annotation-path test itself fails
    (:func:`_annotation_path_test_fails`): those keep pyHanko's outcome exactly.
    """

    def apply(
        self, context: FieldComparisonContext
    ) -> Iterable[tuple[ModificationLevel, FormUpdate]]:
        written = context.new.explicit_refs_in_revision()
        for fq_name, spec in context.field_specs.items():
            if self._untouched(spec, written, context.old):
                continue
            yield from self.check_form_field(fq_name, spec, context)

    @staticmethod
    def _untouched(
        spec: FieldComparisonSpec, written: set[generic.Reference], old: HistoricalResolver
    ) -> bool:
        ref = spec.new_field_ref
        if ref is None or spec.old_field_ref is None or spec.old_field_ref != ref:
            return False
        if ref in written:
            return False
        old_field, new_field = spec.old_field, spec.new_field
        if isinstance(old_field, generic.StreamObject) or isinstance(
            new_field, generic.StreamObject
        ):
            return False
        if old_field != new_field:  # cannot differ when unwritten; checked, not assumed
            return False
        steps = usage_steps(old, ref)
        return steps is not None and not any(_annotation_path_test_fails(p) for p in steps)


def _annotation_path_test_fails(steps: tuple[str | int, ...]) -> bool:
    """Whether pyHanko 0.38's test of a field's usage path ("is it ``/Root /Pages (/Kids i)+
    /Annots j``?", ``FieldComparisonSpec._old_annotation_paths``) raises ``ValueError`` on
    ``steps`` (it unpacks past the end of a path that ends in ``/Kids i``), which fails the
    revision."""
    if len(steps) < 6 or steps[0] != "/Root" or steps[1] != "/Pages":
        return False
    rest = list(steps[2:])
    try:
        nxt, nxt_ix, *rest = rest
        while nxt == "/Kids" and isinstance(nxt_ix, int):
            nxt, nxt_ix, *rest = rest
    except ValueError:
        return True
    return False


def _flags(obj: generic.DictionaryObject) -> int:
    value = _get(obj, "/F", 0)
    return int(value) if isinstance(value, generic.NumberObject) else 0


class FieldValueRule(GenericFieldModificationRule):
    """pyHanko's rule for filling non-signature fields, refusing appearance changes that come
    without a value change (the "replace" shadow attack; see the module text)."""

    @_refuse_malformed
    def apply(
        self, context: FieldComparisonContext
    ) -> Iterable[tuple[ModificationLevel, FormUpdate]]:
        self._check_form_resources(context)
        yield from super().apply(context)

    @staticmethod
    def _check_form_resources(context: FieldComparisonContext) -> None:
        old_form = _get(context.old.root, "/AcroForm")
        new_form = _get(context.new.root, "/AcroForm")
        if not (
            isinstance(old_form, generic.DictionaryObject)
            and isinstance(new_form, generic.DictionaryObject)
        ):
            return
        if _get(new_form, "/NeedAppearances") and not _get(old_form, "/NeedAppearances"):
            raise SuspiciousModification(
                "/NeedAppearances was switched on after signing: viewers would redraw the "
                "signed field appearances"
            )
        old_dr = _get(old_form, "/DR")
        if not isinstance(old_dr, generic.DictionaryObject):
            return
        new_dr = _get(new_form, "/DR")
        if not isinstance(new_dr, generic.DictionaryObject):
            raise SuspiciousModification("/AcroForm /DR was removed after signing")
        budget = _Budget(MAX_COMPARED_NODES, "/AcroForm /DR")
        for category in old_dr:
            if category not in new_dr:
                raise SuspiciousModification(f"/AcroForm /DR {category} was removed after signing")
            old_cat, new_cat = old_dr[category], new_dr[category]
            if isinstance(old_cat, generic.DictionaryObject) and isinstance(
                new_cat, generic.DictionaryObject
            ):
                for name in old_cat:
                    if name not in new_cat or not _same(
                        old_cat.raw_get(name), new_cat.raw_get(name), budget
                    ):
                        raise SuspiciousModification(
                            f"/AcroForm /DR {category} {name} was replaced after signing "
                            "(shadow attack 'replace')"
                        )
            elif not _same(old_dr.raw_get(category), new_dr.raw_get(category), budget):
                raise SuspiciousModification(f"/AcroForm /DR {category} was replaced after signing")

    @staticmethod
    def _widgets(field_dict: generic.DictionaryObject) -> list[generic.DictionaryObject]:
        kids = _get(field_dict, "/Kids")
        if isinstance(kids, generic.ArrayObject):
            found = [
                k
                for k in (kids[i] for i in range(len(kids)))
                if isinstance(k, generic.DictionaryObject) and "/T" not in k
            ]
            if found:
                return found
        return [field_dict]

    @classmethod
    def _appearance_change(
        cls, spec: FieldComparisonSpec, context: FieldComparisonContext
    ) -> str | None:
        """What of the field's look changed between the revisions, or None."""
        old_field, new_field = spec.old_field, spec.new_field
        assert old_field is not None and new_field is not None
        budget = _Budget(MAX_COMPARED_NODES, f"appearance of {spec.field_type} field")
        new_form = _get(context.new.root, "/AcroForm")
        need_appearances = isinstance(new_form, generic.DictionaryObject) and bool(
            _get(new_form, "/NeedAppearances")
        )
        keys = ("/AP", "/AS") + (("/DA", "/Q") if need_appearances else ())
        old_widgets, new_widgets = cls._widgets(old_field), cls._widgets(new_field)
        pairs = list(zip(old_widgets, new_widgets, strict=False))
        if len(old_widgets) != len(new_widgets):
            return "/Kids"
        for old_w, new_w in [(old_field, new_field), *pairs]:
            for key in keys:
                if not _same(_raw(old_w, key), _raw(new_w, key), budget):
                    return key
            flags_changed = (_flags(old_w) ^ _flags(new_w)) & VISIBILITY_FLAGS
            if flags_changed and not (flags_changed == PRINT_FLAG and _flags(new_w) & PRINT_FLAG):
                return "/F"
        return None

    @_refuse_malformed
    def check_form_field(
        self,
        fq_name: str,
        spec: FieldComparisonSpec,
        context: FieldComparisonContext,
    ) -> Iterable[tuple[ModificationLevel, FormUpdate]]:
        if spec.field_type == "/Sig" or not spec.new_field_ref or not spec.old_field_ref:
            return
        old_field, new_field = spec.old_field, spec.new_field
        assert old_field is not None and new_field is not None
        changed = self._appearance_change(spec, context)
        value_budget = _Budget(MAX_COMPARED_NODES, f"value of field {fq_name}")
        value_changed = not _same(
            _inherited(old_field, "/V"), _inherited(new_field, "/V"), value_budget
        )
        if changed and not value_changed:
            raise SuspiciousModification(
                f"the appearance of form field {fq_name!r} changed ({changed}) while its value "
                "stayed as signed (shadow attack 'replace')"
            )
        valid_when_locked = self.compare_fields(spec)
        yield from qualify(
            FILL,
            (
                FormUpdate(
                    updated_ref=spec.new_field_ref,
                    field_name=fq_name,
                    valid_when_locked=valid_when_locked,
                    context_checked=expected,
                )
                for expected in spec.expected_contexts()
            ),
        )
        yield from qualify_transforming(
            FILL,
            _allow_appearance_update(old_field, new_field, context.old, context.new),
            transform=FormUpdate.curry_ref(field_name=fq_name),
        )
        if changed:
            # Only when the appearance did change: pyHanko's helper would otherwise report every
            # field whose stream predates the signed revision as changed (FieldMDP false alarm).
            yield from qualify(
                FILL,
                _allow_in_place_appearance_update(
                    old_field, new_field, context.old, context.new, fq_name=fq_name
                ),
            )
        if value_changed and "/V" in new_field:
            deps = context.new.collect_dependencies(
                new_field.raw_get("/V"), since_revision=context.old.revision + 1
            )
            for ref in deps:
                yield FILL, FormUpdate(ref, field_name=fq_name)


def _refuse_late_definitions(old: HistoricalResolver, new: HistoricalResolver) -> None:
    """Refuse a revision that defines an object the older revision already referred to while
    it did not exist there (a reference past the older revision's /Size).

    pyHanko's orphan search assumes no revision refers to objects a later one defines
    (policies._find_orphans: "no shady behaviour"), and takes such an object for an unused one,
    approved as an LTA update. A document prepared with ``/Annots [… 99 0 R]`` or
    ``/Contents [4 0 R 99 0 R]`` before signing then got its overlay or its new page content
    afterwards by an update that only defines object 99: TOTAL_PASSED, also under a P=1
    certification (red team 16, F9). Filling such a reference changes what the signed revision
    shows, so it is never an LTA update. ``old``'s table of paths must be loaded."""
    for ref in new.explicit_refs_in_revision():
        if old.is_ref_unassignable(ref) and old._get_usages_of_ref(ref):
            raise SuspiciousModification(
                f"object {ref.idnum} {ref.generation} R was referred to in revision "
                f"{old.revision} before revision {new.revision} defined it"
            )


class ServiceDiffPolicy(StandardDiffPolicy):
    """pyHanko's :class:`StandardDiffPolicy` with this module's rules.

    Object freeing is judged by the rules (:class:`RelistedFreeEntryRule`, annotation removal)
    instead of being refused wholesale, and each revision's level is at least what the rules
    asked for through :func:`require_level`.
    """

    def apply(
        self,
        old: HistoricalResolver,
        new: HistoricalResolver,
        field_mdp_spec: FieldMDPSpec | None = None,
        doc_mdp: MDPPerm | None = None,
    ) -> DiffResult:
        """Compare revision ``new`` with revision ``old`` (normally the one just before it).

        Returns the level the changes need and the fully qualified names of the form fields
        they change; raises :class:`SuspiciousModification` for a change that is never allowed,
        that no rule explains or whose structure cannot be analysed, and pyHanko's
        ``PdfError`` when an object cannot be read at all. ``doc_mdp`` only matters as
        "certified or not" (pyHanko refuses some form updates after a certification); comparing
        the level with the DocMDP permission is the caller's job.
        """
        floor = [ModificationLevel.NONE]
        token = _LEVEL_FLOOR.set(floor)
        certification = _CERTIFICATION.set(doc_mdp)
        try:
            # The same table pyHanko would build first (paths to every object of ``old``),
            # without deep-copying the revision (see diff_speedups).
            load_reverse_xref_cache(old)
            _refuse_late_definitions(old, new)
            # pyHanko only tests doc_mdp against None; passing P=2 for P=3 avoids its warning
            # that P=3 is unsupported (this policy supports it).
            result = super().apply(
                old,
                new,
                field_mdp_spec,
                MDPPerm.FILL_FORMS if doc_mdp is MDPPerm.ANNOTATE else doc_mdp,
            )
        except (SuspiciousModification, misc.PdfError):
            raise
        except (KeyError, TypeError, AttributeError, ValueError, IndexError, RecursionError) as e:
            # pyHanko's own bookkeeping tripping over a malformed revision.
            raise SuspiciousModification(
                f"revision {new.revision} could not be analysed ({type(e).__name__})"
            ) from e
        finally:
            _LEVEL_FLOOR.reset(token)
            _CERTIFICATION.reset(certification)
        if floor[0] > result.modification_level:
            result = DiffResult(floor[0], result.changed_form_fields)
        return result

    def review_file(
        self,
        reader: PdfFileReader,
        base_revision: int | HistoricalResolver,
        field_mdp_spec: FieldMDPSpec | None = None,
        doc_mdp: MDPPerm | None = None,
    ) -> DiffResult | SuspiciousModification:
        """Judge every revision after ``base_revision`` against the revision just before it
        (pyHanko compares each with the base revision instead).

        The rules are written for consecutive revisions, as the per-revision engine runs them;
        against the base, two steps that are each refused can merge into one that passes (a
        field filled in one revision, its appearance swapped in the next, looks like filling).
        Returns the highest level and all changed fields, or the first refusal.
        """
        base = base_revision if isinstance(base_revision, int) else base_revision.revision
        previous = reader.get_historical_resolver(base)
        level = ModificationLevel.NONE
        changed: set[str] = set()
        for revision in range(base + 1, reader.xrefs.total_revisions):
            current = reader.get_historical_resolver(revision)
            try:
                result = self.apply(previous, current, field_mdp_spec, doc_mdp)
            except SuspiciousModification as e:
                return e
            level = max(level, result.modification_level)
            changed |= result.changed_form_fields
            previous = current
        return DiffResult(level, changed)


def build_diff_policy() -> ServiceDiffPolicy:
    """The policy: pyHanko's default rules with the replacements described in the module text."""

    def replaced(rule: QualifiedWhitelistRule) -> bool:
        wrapped = getattr(rule, "rule", rule)  # WhitelistRule.as_qualified wrappers
        return isinstance(rule, CatalogModificationRule) or isinstance(wrapped, DSSCompareRule)

    default_rules = [r for r in DEFAULT_DIFF_POLICY.global_rules if not replaced(r)]
    return ServiceDiffPolicy(
        global_rules=[
            CatalogRule(),
            AppearanceNameTreeRule(),
            RelistedFreeEntryRule(),
            PageAnnotationRule(),
            MarkupEditRule(),
            StructureTreeRule(),
            OutlineRule(),
            ValidationDataRule(),
            *default_rules,
        ],
        form_rule=FormUpdatingRule(
            field_rules=[SignatureFieldRule(), SignatureFieldStateRule(), FieldValueRule()]
        ),
        reject_object_freeing=False,
    )


DIFF_POLICY = build_diff_policy()
