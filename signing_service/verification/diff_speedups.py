"""Faster equivalents of pyHanko pieces that the difference analysis runs for every revision.

The analysis compares each revision with the one before it (:mod:`.modifications`), so a
25-signature file means 25 comparisons, each over the whole document as it stood; these pieces
were most of the time of a first-time verification of such a file (bench/RESULTS.md,
"verification"). Each replacement computes exactly what pyHanko 0.38 computes
(``tests/test_diff_speedups.py`` compares them, and the judgement of every revision, on the
shared corpus and on files built there) and is installed only on the readers and resolvers of
this verifier (:func:`speed_up_reader`, :func:`load_reverse_xref_cache`), never globally.
Encrypted documents (owner password only) get :class:`_EncryptedResolver` and the same walk over
their raw objects (``tests/test_diff_speedups.py`` compares it with pyHanko's walk as that
resolver runs it); their copies and lookups stay pyHanko's.

* **Paths to every object** (:func:`load_reverse_xref_cache`). pyHanko's analysis needs, for the
  older revision of each comparison, every path from the trailer to every indirect object
  (``HistoricalResolver._load_reverse_xref_cache``): an object that the newer revision
  overwrites is approved only once every path to it is explained. pyHanko builds the table by
  reading each object of the revision through the ``HistoricalResolver``, which deep-copies it
  (``_subsume_object``) so that its references resolve in that revision; the walk never follows
  a reference through the copy, only reads it, so the copies are wasted. Here the same walk
  reads the objects as parsed and resolves each reference itself, exactly as the resolver does
  (the version of the object current at that revision). The rules of the walk are pyHanko's,
  unchanged: a path never visits an object twice; page tree nodes are entered only along
  their canonical path (``/Root /Pages /Kids i …``); structure elements only from
  ``/Root /StructTreeRoot /K``; ``/Parent`` (and ``/P`` inside the structure tree) is not
  followed. The paths of an object become pyHanko's ``RawPdfPath`` objects when a rule asks for
  them (a handful per comparison), not for every object, and keep their hash key instead of
  rebuilding it at every set lookup.
* **In which revision an object last changed** (:func:`memoize_xref_history`).
  ``XRefCache.get_last_change`` / ``get_introducing_revision`` scan every cross-reference
  section on each call, and the resolver calls the first for every object it reads: quadratic
  in the number of revisions. The sections never change once the file is read, so the answers
  are kept per reader.
* **Copying an object into a revision** (the resolvers' ``_subsume_object``). pyHanko copies
  each object a revision reads, recursing into every value, and for every value — a number, a
  name, a string — first builds a ``Reference`` it needs only for dictionaries, arrays and
  streams, then returns the value itself; each copied dictionary is built twice. Here the same
  copy is made in one pass (streams still by pyHanko's code).
* **Facts of a revision asked again and again** (:class:`_Resolver`): its catalog and the set of
  objects it writes, kept instead of recomputed at each of the hundreds of calls per document.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.reader import HistoricalResolver, PdfFileReader, RawPdfPath

_Steps = tuple[str | int, ...]


def load_reverse_xref_cache(resolver: HistoricalResolver) -> None:
    """Fill ``resolver``'s table of paths to each object (``{Reference: {RawPdfPath}}``, what
    ``HistoricalResolver._load_reverse_xref_cache`` computes), unless it is already there.

    Raises what reading an object of the revision raises (``PdfError``, ``RecursionError`` on
    absurd nesting), as pyHanko's walk does.
    """
    if resolver._indirect_object_access_cache is not None:
        return
    try:
        encrypted = resolver.reader.encrypted
    except Exception:  # noqa: BLE001 - a broken /Encrypt: pyHanko's walk reports it
        encrypted = True
    if encrypted and not isinstance(resolver, _EncryptedResolver):
        resolver._load_reverse_xref_cache()
        return
    if encrypted:
        # An encrypted document (red team 15, F7: its verification took 4 x as long as the
        # same plain document's, all in pyHanko's walk): the same walk over the raw objects,
        # as _EncryptedResolver makes pyHanko's see them (references are never encrypted).
        resolver._raw_view = True  # type: ignore[attr-defined]
        try:
            page_tree_refs, struct_tree_refs = _special_trees(resolver)
        finally:
            resolver._raw_view = False  # type: ignore[attr-defined]
    else:
        page_tree_refs, struct_tree_refs = _special_trees(resolver)
    # Object numbers as (idnum, generation) tuples: a Reference hashes in Python code.
    page_tree_nodes = {(r.idnum, r.generation): p for r, p in page_tree_refs.items()}
    struct_tree_nodes = {(r.idnum, r.generation) for r in struct_tree_refs}
    fetch = _fetcher(resolver, raw=encrypted)
    collected: dict[tuple[int, int], set[_Steps]] = {}
    on_path: set[tuple[int, int]] = set()  # the objects on the current path (DFS stack)
    struct_entry: _Steps = ("/Root", "/StructTreeRoot")
    dictionary, array, indirect = (
        generic.DictionaryObject,
        generic.ArrayObject,
        generic.IndirectObject,
    )
    containers = (dictionary, array, indirect)

    def walk(obj: generic.PdfObject, path: _Steps, in_struct: bool) -> None:
        key = None
        if isinstance(obj, indirect):
            ref = obj.reference
            key = (ref.idnum, ref.generation)
            if key in on_path:
                return
            paths = collected.get(key)
            if paths is None:
                collected[key] = {path}
            else:
                paths.add(path)
            obj = fetch(ref, key)
            # Page tree nodes only along their canonical path, structure elements only from
            # the structure tree (pyHanko: avoids a combinatorial number of paths).
            canonical = page_tree_nodes.get(key)
            if canonical is not None and canonical != path:
                return
            if not in_struct and key in struct_tree_nodes:
                return
            on_path.add(key)
        if isinstance(obj, dictionary):
            for name, value in dict.items(obj):
                if name == "/Parent" or (in_struct and name == "/P"):
                    continue
                if isinstance(value, containers):
                    walk(
                        value,
                        (*path, name),
                        in_struct or (name == "/K" and path == struct_entry),
                    )
        elif isinstance(obj, array):
            for index, value in enumerate(list.__iter__(obj)):
                if isinstance(value, containers):
                    walk(value, (*path, index), in_struct)
        if key is not None:
            on_path.discard(key)

    walk(resolver.trailer_view, (), False)
    resolver._indirect_object_access_cache = _PathTable(collected, resolver)  # type: ignore[assignment]


def usage_steps(
    resolver: HistoricalResolver, ref: generic.Reference
) -> list[tuple[str | int, ...]] | None:
    """The paths from the trailer to ``ref`` in ``resolver``'s revision as plain tuples, or
    ``None`` when the table was not built by :func:`load_reverse_xref_cache`."""
    table = resolver._indirect_object_access_cache
    return table.steps(ref) if isinstance(table, _PathTable) else None


class _PathTable(Mapping[generic.Reference, set[RawPdfPath]]):
    """``{Reference: {RawPdfPath}}`` as pyHanko's table, kept by (idnum, generation) and with
    each set of paths made of ``RawPdfPath`` objects on first access (pyHanko reads the table
    only through ``table[ref]``, in ``HistoricalResolver._get_usages_of_ref``)."""

    def __init__(
        self, paths: dict[tuple[int, int], set[_Steps]], resolver: HistoricalResolver
    ) -> None:
        self._paths: dict[tuple[int, int], set[_Steps] | _Converted] = dict(paths)
        self._resolver = resolver

    def __getitem__(self, ref: generic.Reference) -> set[RawPdfPath]:
        key = (ref.idnum, ref.generation)
        paths = self._paths[key]
        if not isinstance(paths, _Converted):
            paths = self._paths[key] = _Converted(_Path(*p) for p in paths)
        return paths

    def __iter__(self) -> Iterator[generic.Reference]:
        for idnum, generation in self._paths:
            yield generic.Reference(idnum, generation, self._resolver)

    def __len__(self) -> int:
        return len(self._paths)

    def __contains__(self, ref: object) -> bool:
        return isinstance(ref, generic.Reference) and (ref.idnum, ref.generation) in self._paths

    def steps(self, ref: generic.Reference) -> list[_Steps]:
        """The paths to ``ref`` as plain tuples of keys and indices (none: ``[]``)."""
        paths = self._paths.get((ref.idnum, ref.generation))
        if paths is None:
            return []
        return [tuple(p.path) if isinstance(p, RawPdfPath) else p for p in paths]


class _Converted(set):  # type: ignore[type-arg]
    """A path set already made of ``RawPdfPath`` objects."""


class _Path(RawPdfPath):
    """A ``RawPdfPath`` that works out its comparison key once: pyHanko's rebuilds it, a tuple
    of pairs, every time the path is hashed or compared (each time a rule looks a path up in
    a set). Same key, so it hashes and compares equal with pyHanko's own paths."""

    def __init__(self, *path: str | int) -> None:
        super().__init__(*path)
        self._key = tuple([(isinstance(x, int), x) for x in path])

    def _tag(self) -> tuple[tuple[bool, str | int], ...]:
        return self._key


def speed_up_reader(reader: PdfFileReader) -> None:
    """Install :func:`memoize_xref_history`, the fast copy into revisions and the revision
    facts kept by :class:`_Resolver` on ``reader`` and every ``HistoricalResolver`` it makes
    from now on (idempotent). An encrypted document gets :class:`_EncryptedResolver`
    (pyHanko's own, seeing through its decrypting proxies) instead."""
    memoize_xref_history(reader)
    try:
        encrypted = reader.encrypted
    except Exception:  # noqa: BLE001 - a broken /Encrypt: pyHanko's resolvers report it
        encrypted = True
    if "get_historical_resolver" in vars(reader):
        return
    cache = reader._historical_resolver_cache
    kind = _EncryptedResolver if encrypted else _Resolver

    def get_historical_resolver(revision: int) -> HistoricalResolver:
        # pyHanko's method, making a _Resolver (one per revision, kept by the reader)
        found = cache.get(revision)
        if found is None:
            found = cache[revision] = kind(reader, revision)
        return found

    reader.get_historical_resolver = get_historical_resolver  # type: ignore[method-assign]


class _EncryptedResolver(HistoricalResolver):
    """pyHanko's view of one revision of an encrypted document, with its two walks over the
    object graph made to see through ``DecryptedObjectProxy``.

    pyHanko hands out the arrays and dictionaries inside an object of an encrypted document
    as proxies (decrypted on access), and neither walk enters them: the references reached
    only through one were missed. ``collect_dependencies`` then took a new signature's value
    dictionary (reached via the field's ``/V`` inside the proxied ``/Fields``) for an orphan,
    which the policy waves through as an LTA update, so a signature added under a DocMDP P=1
    certification passed; the map of where each old object is used
    (``_load_reverse_xref_cache``) lacked every use inside a proxy. References are never
    encrypted, so both walks read the raw (still encrypted) objects: the structure and the
    references are all there, and nothing is decrypted that must not be (ISO 32000-1
    §7.6.1: a signature's /Contents, the /Encrypt dictionary)."""

    _raw_view = False

    def __call__(self, ref: generic.Reference) -> generic.PdfObject:
        obj = super().__call__(ref)
        if not self._raw_view or not isinstance(
            obj, generic.DictionaryObject | generic.ArrayObject
        ):
            return obj
        # The object itself is decrypted; its values are proxies over raw objects, whose own
        # values are raw: one level to unwrap.
        if isinstance(obj, generic.DictionaryObject):
            view: generic.PdfObject = generic.DictionaryObject(
                {k: _raw(v) for k, v in dict.items(obj)}
            )
        else:
            view = generic.ArrayObject([_raw(v) for v in list.__iter__(obj)])
        view.container_ref = obj.container_ref
        return view

    def _load_reverse_xref_cache(self) -> None:
        self._raw_view = True
        try:
            super()._load_reverse_xref_cache()
        finally:
            self._raw_view = False

    def _collect_indirect_references(  # type: ignore[no-untyped-def]
        self, obj, seen, since_revision=None
    ):
        obj = _raw(obj)
        if _undefined(self, obj, since_revision):
            return
        super()._collect_indirect_references(obj, seen, since_revision)


def _raw(value: Any) -> Any:
    return value.raw_object if isinstance(value, generic.DecryptedObjectProxy) else value


class _Resolver(HistoricalResolver):
    """pyHanko's view of one revision, with the fast copy (:func:`_subsumer`) and two answers
    kept instead of recomputed on every call (rules ask them hundreds of times per document):
    the catalog (``root``: pyHanko returns the same cached object each time, after looking up
    the trailer and building a reference), and the objects the revision writes
    (``explicit_refs_in_revision``: a fresh set on each call, as pyHanko gives)."""

    def __init__(self, reader: PdfFileReader, revision: int) -> None:
        super().__init__(reader, revision)
        self._subsume_object = _subsumer(self)  # type: ignore[method-assign]
        self._root: generic.DictionaryObject | None = None
        self._written: frozenset[generic.Reference] | None = None

    @property
    def root(self) -> generic.DictionaryObject:
        if self._root is None:
            self._root = super().root
        return self._root

    def explicit_refs_in_revision(self) -> set[generic.Reference]:  # type: ignore[override]
        if self._written is None:
            self._written = frozenset(super().explicit_refs_in_revision())
        return set(self._written)

    def _collect_indirect_references(  # type: ignore[no-untyped-def]
        self, obj, seen, since_revision=None
    ):
        if _undefined(self, obj, since_revision):
            return
        super()._collect_indirect_references(obj, seen, since_revision)


def _undefined(resolver: HistoricalResolver, obj: object, since_revision: int | None) -> bool:
    """Whether ``obj`` is a reference to an object no revision of the file defines. ISO
    32000-1 §7.3.10: such a reference is null, legal, and depends on nothing. pyHanko's
    dependency walk (the orphan search of each comparison) asks in which revision it was
    introduced and raises KeyError, which failed every later update to a page holding one
    (LibreOffice's documents, red team 16 F7: a genuine document plus one comment read
    TOTAL_FAILED). A reference a LATER revision defines is not this case (see
    diff_policy._refuse_late_definitions)."""
    if since_revision is None or not isinstance(obj, generic.IndirectObject):
        return False
    try:
        resolver.reader.xrefs.get_introducing_revision(obj.reference)
    except KeyError:
        return True
    return False


_CONTAINERS = (
    generic.DecryptedObjectProxy,
    generic.IndirectObject,
    generic.DictionaryObject,  # and streams
    generic.ArrayObject,
)


def _subsumer(resolver: HistoricalResolver):  # type: ignore[no-untyped-def]
    """``resolver``'s copy of an object, as pyHanko's ``_subsume_object`` makes it: plain
    values shared (pyHanko's error for one that was not read from a file), references
    re-pointed at the resolver, dictionaries and arrays copied with their container
    reference re-pointed. Without pyHanko's per-value detours: the reference it builds and
    discards for every plain value, a second pass over each dictionary to re-check keys that
    the parser already made names, a call per plain value. Anything else (streams, encrypted
    objects, subclasses) goes through pyHanko's own code."""
    subsume = HistoricalResolver._subsume_object
    dictionary, array = generic.DictionaryObject, generic.ArrayObject
    indirect, reference = generic.IndirectObject, generic.Reference
    containers = _CONTAINERS

    def subsume_object(obj: generic.PdfObject) -> generic.PdfObject:
        kind = type(obj)
        if kind is indirect:
            ref = obj.reference  # type: ignore[attr-defined]
            return indirect(ref.idnum, ref.generation, resolver)
        if kind is dictionary or kind is array:
            container = obj.get_container_ref()
            container_ref = reference(container.idnum, container.generation, resolver)  # type: ignore[attr-defined]
            if kind is dictionary:
                result = dictionary()
                # Keys as parsed: always names (the parser refuses anything else).
                dict.update(
                    result,
                    {
                        key: value
                        if not isinstance(value, containers) and value.container_ref is not None
                        else subsume_object(value)
                        for key, value in dict.items(obj)  # type: ignore[arg-type]
                    },
                )
            else:
                result = array(
                    [
                        value
                        if not isinstance(value, containers) and value.container_ref is not None
                        else subsume_object(value)
                        for value in list.__iter__(obj)  # type: ignore[arg-type]
                    ]
                )
            result.container_ref = container_ref
            return result
        if isinstance(obj, containers):
            # pyHanko's code; it copies the values through resolver._subsume_object, i.e. here.
            return subsume(resolver, obj)  # type: ignore[no-any-return]
        if obj.container_ref is None:
            obj.get_container_ref()  # raises PdfReadError, as pyHanko's copy does
        return obj

    return subsume_object


def memoize_xref_history(reader: PdfFileReader) -> None:
    """Make ``reader.xrefs.get_last_change`` and ``get_introducing_revision`` answer from a
    per-reader table (same results, same ``KeyError`` for an object no section has). Only for
    a reader that is done reading its cross-reference sections (any ``PdfFileReader``)."""
    xrefs = reader.xrefs
    if "get_last_change" in vars(xrefs):
        return
    last_change = xrefs.get_last_change
    introducing = xrefs.get_introducing_revision
    missing = object()

    def memoized(lookup):  # type: ignore[no-untyped-def]
        known: dict[tuple[int, int], object] = {}

        def answer(ref: generic.Reference) -> int:
            key = (ref.idnum, ref.generation)  # all try_resolve looks at
            found = known.get(key)
            if found is None:
                try:
                    found = lookup(ref)
                except KeyError:
                    found = missing
                known[key] = found
            if found is missing:
                raise KeyError(ref)
            return found  # type: ignore[return-value]

        return answer

    xrefs.get_last_change = memoized(last_change)  # type: ignore[method-assign]
    xrefs.get_introducing_revision = memoized(introducing)  # type: ignore[method-assign]


def _fetcher(resolver: HistoricalResolver, raw: bool = False):  # type: ignore[no-untyped-def]
    """``(ref, (idnum, generation))`` → the object as the revision has it, as parsed (not
    copied): what ``HistoricalResolver.get_object`` returns before it copies. ``raw`` (an
    encrypted document): the object as stored, not decrypted (``DecryptedObjectProxy``'s raw
    object, whose values are plain objects), and nothing taken from the resolver's cache
    (decrypted copies, whose values are proxies the walk would not enter)."""
    reader = resolver.reader
    revision = resolver.revision
    xrefs = reader.xrefs
    known: dict[tuple[int, int], generic.PdfObject] = (
        {} if raw else {(ref.idnum, ref.generation): obj for ref, obj in resolver.cache.items()}
    )
    unwrap = _raw if raw else (lambda value: value)

    def fetch(ref: generic.Reference, key: tuple[int, int]) -> generic.PdfObject:
        found = known.get(key)
        if found is not None:
            return found
        try:
            last_change = xrefs.get_last_change(ref)
        except KeyError:
            last_change = None
        if last_change is not None and last_change <= revision:
            # The reader keeps these parsed; shared, never modified here.
            return unwrap(reader.get_object(ref, transparent_decrypt=False))  # type: ignore[no-any-return]
        # Changed after this revision: the reader re-parses these on every call.
        found = known[key] = unwrap(reader.get_object(ref, revision, transparent_decrypt=False))
        return found

    return fetch


def _special_trees(
    resolver: HistoricalResolver,
) -> tuple[dict[generic.Reference, _Steps], set[generic.Reference]]:
    """The page tree nodes with their canonical paths and the structure elements, read through
    the resolver exactly as pyHanko does (same errors for circular trees)."""

    def page_tree_refs(
        pages_obj: generic.DictionaryObject, path: _Steps
    ) -> Iterator[tuple[generic.Reference, _Steps]]:
        for ix, kid in enumerate(pages_obj["/Kids"]):
            kid_path = (*path, "/Kids", ix)
            if isinstance(kid, generic.IndirectObject):
                yield kid.reference, kid_path
            kid = kid.get_object()
            if kid.get("/Type", None) == "/Pages":
                yield from page_tree_refs(kid, kid_path)

    def struct_tree_refs(struct_elem: generic.DictionaryObject) -> Iterator[generic.Reference]:
        try:
            children = struct_elem["/K"]
        except KeyError:
            return
        if not isinstance(children, generic.ArrayObject):
            children = (children,)
        for child in children:
            child_ref = None
            if isinstance(child, generic.IndirectObject):
                child_ref = child.reference
                child = child.get_object()
            if not isinstance(child, generic.DictionaryObject):
                continue
            try:
                if child["/Type"] != "/StructElem":
                    continue
            except KeyError:
                pass
            if child_ref is not None:
                yield child_ref
            yield from struct_tree_refs(child)

    root = resolver.root
    pages_ref = root.raw_get("/Pages")
    pages_path: _Steps = ("/Root", "/Pages")
    page_tree_nodes: dict[generic.Reference, _Steps] = {}
    if isinstance(pages_ref, generic.IndirectObject):
        page_tree_nodes[pages_ref.reference] = pages_path
    for ref, path in page_tree_refs(pages_ref.get_object(), pages_path):
        if ref in page_tree_nodes:
            raise misc.PdfReadError("Circular reference in page tree in mapping stage")
        page_tree_nodes[ref] = path
    struct_tree_nodes: set[generic.Reference] = set()
    try:
        struct_tree_root = root.raw_get("/StructTreeRoot").get_object()
        for ref in struct_tree_refs(struct_tree_root):
            if ref in struct_tree_nodes:
                raise misc.PdfReadError("Circular reference in structure tree in mapping stage")
            struct_tree_nodes.add(ref)
    except KeyError:
        pass
    return page_tree_nodes, struct_tree_nodes
