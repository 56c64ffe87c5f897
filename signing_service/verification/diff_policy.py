"""Difference analysis policy: pyHanko's default, plus comments added after signing.

When an officer adds a comment to a signed PDF in Acrobat, Acrobat also adds a ``/Names /AP``
name tree to the catalog (named appearance streams for the comment icons). pyHanko's default
policy refuses any new catalog key, so a harmless comment would fail the document (EU DSS
accepts it: PAdESLevelBWithAnnotAddedTest). We allow exactly that, at the ANNOTATIONS level (so
a certified document whose DocMDP forbids annotations still fails), and only when every object
in the new tree is new (nothing signed is overwritten) and each value is a Form XObject.
Any other change to ``/Names`` (``/JavaScript``, ``/EmbeddedFiles``, …) is refused.

Comments (markup annotations) added to pages after an approval signature are allowed at the
ANNOTATIONS level, as ISO 32000 and EU DSS allow them; the report says so. They can still change
what a reader sees (the Evil Annotation Attack), so a certified document whose DocMDP
permission is 1 or 2 fails, and no annotation with an action, a file, media or a form widget
passes here.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import HistoricalResolver
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    ModificationLevel,
    StandardDiffPolicy,
    SuspiciousModification,
)
from pyhanko.sign.diff_analysis.constants import ROOT_EXEMPT_STRICT_COMPARISON
from pyhanko.sign.diff_analysis.rules.file_structure_rules import CatalogModificationRule
from pyhanko.sign.diff_analysis.rules_api import QualifiedWhitelistRule, ReferenceUpdate

ALLOWED_NEW_NAME_TREES = frozenset({"/AP"})
MAX_TREE_NODES = 10_000


def _new_refs_below(
    old: HistoricalResolver, obj: generic.PdfObject, budget: list[int]
) -> Iterator[generic.Reference]:
    """Every new indirect object reachable from ``obj``. Objects that already existed in
    ``old`` are not followed and not approved: if they changed, another rule must explain it."""
    stack: list[generic.PdfObject] = [obj]
    seen: set[generic.Reference] = set()
    while stack:
        budget[0] -= 1
        if budget[0] < 0:
            raise SuspiciousModification("/Names /AP tree is too large")
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
            stack.extend(item.raw_get(k) for k in item)
        elif isinstance(item, generic.ArrayObject):
            stack.extend(item.raw_get(i) for i in range(len(item)))


def _check_ap_values(tree: generic.DictionaryObject, budget: list[int]) -> None:
    nodes = [tree]
    while nodes:
        budget[0] -= 1
        if budget[0] < 0:
            raise SuspiciousModification("/Names /AP tree is too large")
        node = nodes.pop()
        for kid in node.get("/Kids", ()):
            nodes.append(kid.get_object())
        names = node.get("/Names", generic.ArrayObject())
        for value in list(names)[1::2]:
            stream = value.get_object()
            if not (isinstance(stream, generic.StreamObject) and stream.get("/Subtype") == "/Form"):
                raise SuspiciousModification("/Names /AP value is not a Form XObject")


class AppearanceNameTreeRule(QualifiedWhitelistRule):
    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        old_raw = old.root.raw_get("/Names") if "/Names" in old.root else None
        new_raw = new.root.raw_get("/Names") if "/Names" in new.root else None
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
        budget = [MAX_TREE_NODES]
        if isinstance(new_raw, generic.IndirectObject):
            ref = new_raw.reference
            if isinstance(old_raw, generic.IndirectObject) and old_raw.reference == ref:
                # The signed /Names dictionary object itself was overwritten.
                raise SuspiciousModification("/Names dictionary overwritten after signing")
            if not old.is_ref_unassignable(ref):
                raise SuspiciousModification("/Names update reuses an existing object")
            yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(ref)
        for key in added:
            tree = new_names.raw_get(key)
            _check_ap_values(tree.get_object(), budget)
            for ref in _new_refs_below(old, tree, budget):
                yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(ref)


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
FORBIDDEN_ANNOT_KEYS = frozenset({"/A", "/AA", "/FS", "/RichMediaContent", "/Movie", "/Sound"})


def _page_refs(resolver: HistoricalResolver) -> Iterator[generic.Reference]:
    stack = [resolver.root.raw_get("/Pages")]
    seen: set[generic.Reference] = set()
    while stack:
        item = stack.pop()
        if not isinstance(item, generic.IndirectObject) or item.reference in seen:
            continue
        seen.add(item.reference)
        node = item.get_object()
        if node.get("/Type") == "/Pages":
            stack.extend(node.raw_get("/Kids"))
        else:
            yield item.reference
        if len(seen) > MAX_TREE_NODES:
            raise SuspiciousModification("page tree is too large")


def _annot_refs(page: generic.DictionaryObject) -> list[generic.Reference]:
    if "/Annots" not in page:
        return []
    annots = page["/Annots"]
    return [a.reference for a in annots if isinstance(a, generic.IndirectObject)]


class MarkupAnnotationRule(QualifiedWhitelistRule):
    @staticmethod
    def _is_plain_markup(
        old: HistoricalResolver, new: HistoricalResolver, ref: generic.Reference
    ) -> bool:
        if not old.is_ref_unassignable(ref):
            return False
        annot = new(ref)
        return (
            isinstance(annot, generic.DictionaryObject)
            and annot.get("/Subtype") in MARKUP_SUBTYPES
            and not FORBIDDEN_ANNOT_KEYS & set(annot)
        )

    def apply_qualified(
        self, old: HistoricalResolver, new: HistoricalResolver
    ) -> Iterable[tuple[ModificationLevel, ReferenceUpdate]]:
        budget = [MAX_TREE_NODES]
        for page_ref in _page_refs(new):
            if old.is_ref_unassignable(page_ref):
                continue  # a new page: not ours to approve
            old_page = old(page_ref)
            new_page = new(page_ref)
            if not isinstance(new_page, generic.DictionaryObject):
                continue
            old_annots = _annot_refs(old_page)
            new_annots = _annot_refs(new_page)
            added = [ref for ref in new_annots if ref not in old_annots]
            if not added or any(ref not in new_annots for ref in old_annots):
                continue  # nothing added, or annotations removed: leave it to other rules
            compare = set(old_page) | set(new_page)
            if any(
                new_page.raw_get(k) != old_page.raw_get(k)
                for k in compare - {"/Annots"}
                if k in old_page and k in new_page
            ) or (set(old_page) ^ set(new_page)) - {"/Annots"}:
                continue
            if not all(self._is_plain_markup(old, new, ref) for ref in added):
                # Widgets (new signature fields) are the form rules' business; anything else
                # stays unexplained and therefore fails.
                continue
            yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(page_ref)
            raw_annots = new_page.raw_get("/Annots")
            if isinstance(raw_annots, generic.IndirectObject):
                yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(raw_annots.reference)
            for ref in added:
                for sub in _new_refs_below(
                    old, generic.IndirectObject(ref.idnum, ref.generation, new), budget
                ):
                    yield ModificationLevel.ANNOTATIONS, ReferenceUpdate(sub)


def build_diff_policy() -> StandardDiffPolicy:
    default_rules = list(DEFAULT_DIFF_POLICY.global_rules)
    rules = [
        CatalogModificationRule(ignored_keys=ROOT_EXEMPT_STRICT_COMPARISON | {"/Names"}),
        AppearanceNameTreeRule(),
        MarkupAnnotationRule(),
        *[r for r in default_rules if not isinstance(r, CatalogModificationRule)],
    ]
    return StandardDiffPolicy(global_rules=rules, form_rule=DEFAULT_DIFF_POLICY.form_rule)


DIFF_POLICY = build_diff_policy()
