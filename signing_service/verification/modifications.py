"""What changed after each signature, analysed once per document.

pyHanko's ``review_file`` compares every revision after a signature with that signature's own
revision, for each signature: N signatures cost N·(N−1)/2 comparisons, each of which walks every
form field (cubic in practice: 300 comparisons and 1.7 s for a 25-signature file). Here each
revision is compared once with the revision before it (:meth:`DiffPolicy.apply` on consecutive
revisions), and a signature's verdict combines the comparisons of every revision after it:

- the modification level is the highest of them;
- any disallowed change after a signature fails that signature (the change happened after it was
  signed, whichever revision made it);
- form fields changed after it are checked against its field lock (/FieldMDP);
- a certification signature's DocMDP permission is checked against the level, and the updates a
  certification forbids (``valid_when_certifying``) are judged with the document's permission.

Stepwise comparison is at least as strict as pyHanko's: a change that is acceptable relative to
the signed revision but rewrites something a later signature already covered (re-signing a
field, say) is caught here for the earlier signatures too.

Three byte-level checks of the Incremental Saving Attack are done once per document: object
definitions that no cross-reference section declares under their number (the variant with an
empty, partial or mislabelled xref, which repairing viewers use but a strict parser never
sees), cross-reference pointers that miss their section or object (viewers then rebuild the
table from the file's objects; pyHanko reads around them), and bytes after the last ``%%EOF``
(an unterminated revision).

A dictionary with a repeated key in a revision after a signature (:meth:`RevisionAnalysis.
duplicate_key`) is two documents: ISO 32000-2 §7.3.7 says keys shall be unique, and readers
disagree on which value counts (pyHanko keeps the first, poppler and qpdf the last), so the
comparison above would judge a page other viewers do not show (red team 16 F8).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from io import BytesIO
from typing import Any, BinaryIO

from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import HistoricalResolver, PdfFileReader
from pyhanko.pdf_utils.xref import ObjStreamRef, XRefSectionType, read_object_header
from pyhanko.sign.diff_analysis import (
    DiffPolicy,
    DiffResult,
    ModificationLevel,
    SuspiciousModification,
)
from pyhanko.sign.fields import FieldMDPSpec, MDPPerm

from signing_service.signing.repair import xref_damages
from signing_service.verification.diff_policy import page_refs
from signing_service.verification.diff_speedups import speed_up_reader
from signing_service.verification.limits import (
    TIME_BUDGET_EXCEEDED,
    LimitExceeded,
    classify_exception,
)
from signing_service.verification.memo import RevisionMemo
from signing_service.verification.rects import read_rect

MAX_PAGES_FOR_ANNOTATION_REVIEW = 2_000
# An object header as a PDF lexer reads it (ISO 32000-1 §7.2, §7.3.10): two integers of any
# length (leading zeros too) and the keyword ``obj``, separated by white space and comments
# (a comment is white space), ``obj`` followed by anything (a delimiter, ``%``). Comments are
# an alternative of their own so that the scan steps over each one whole: digits inside a
# comment never start a header, and every byte is looked at a bounded number of times (linear
# on hostile input; possessive quantifiers, no backtracking). Red team 16 F6: ``N 0 obj%x``
# and ``00000000003 0 obj`` were not seen by the earlier pattern.
_SEPARATOR = rb"(?:[\x00\t\n\x0c\r ]|%[^\r\n]*+)"
_COMMENT_OR_HEADER = re.compile(
    rb"%[^\r\n]*+|(?<![0-9])([0-9]++)" + _SEPARATOR + rb"++([0-9]++)" + _SEPARATOR + rb"*+obj"
    # ``obj`` a whole token: followed by white space, a delimiter, a comment or the end, not
    # by a regular character (red team 16b G2: "3 2 objections" in a reader's note was taken
    # for an object header, a genuine comment for an attack).
    rb"(?![^\x00\t\n\x0c\r ()<>\[\]{}/%])"
)
_MAX_STRAY = 100
_WHITESPACE = b"\x00\t\n\x0c\r "


def _integer(digits: bytes) -> int:
    """The value of a header's digit run; -1 for a number no xref entry can declare (int()
    of more than 4,300 digits raises, and a raising scan must not be a silent one)."""
    digits = digits.lstrip(b"0") or b"0"
    return int(digits) if len(digits) <= 20 else -1


@dataclass(frozen=True)
class AddedAnnotation:
    """An annotation that a revision added to a page, changed in place, or removed from it
    (``change``: added | changed | removed; 1-based ``page``, ``rect`` in points). ``field``:
    the field name of a widget (its /T or its parent's), else ``None``; ``author``: a markup
    annotation's /T (ISO 32000-1 §12.5.6.2: the author's name, not a field); ``ref``: the
    annotation's object ``(number, generation)``, which identifies it where names can lie."""

    revision: int
    page: int
    subtype: str
    rect: tuple[float, float, float, float] | None
    is_signature_widget: bool
    change: str = "added"
    field: str | None = None
    author: str | None = None
    ref: tuple[int, int] | None = None
    # False when /Rect was not four direct numbers (a reference, a non-number): ``rect`` is
    # then what viewers draw, and the widget may show something wherever it reads
    # (verification/rects.py, red team 21 R21-3).
    rect_plain: bool = True


@dataclass(frozen=True)
class RevisionChange:
    """Revision ``revision`` compared with the one before it."""

    revision: int
    level: ModificationLevel | None  # None when the change is disallowed
    problem: str | None  # why it is disallowed
    changed_fields: frozenset[str] = frozenset()
    added_annotations: tuple[AddedAnnotation, ...] = ()
    limit: tuple[str, str] | None = None  # (code, detail) when a parsing limit stopped it
    # Pages past MAX_PAGES_FOR_ANNOTATION_REVIEW were not looked at for annotation warnings
    # (the modification policy itself still judged them).
    annotations_unreviewed_pages: int = 0
    # Some annotation or page of this revision could not be read for the warnings (a hostile
    # value): the review is incomplete, and the report says so.
    annotations_unreadable: bool = False


@dataclass(frozen=True)
class ModificationVerdict:
    """What happened after one signature. ``level`` is ``None`` when something disallowed did."""

    level: ModificationLevel | None
    problem: str | None = None
    problem_revision: int | None = None
    docmdp_ok: bool | None = None
    locked_field_changed: str | None = None
    added_annotations: tuple[AddedAnnotation, ...] = field(default=())
    limit: tuple[str, str] | None = None


@dataclass(frozen=True)
class DuplicateKey:
    """A dictionary with a repeated key (names compared decoded: ``/Cont#65nts`` is
    ``/Contents``) in an object, or the trailer, that revision ``revision`` writes.
    ``obj``: ``(number, generation)`` of the object, ``None`` for the trailer or the
    cross-reference stream dictionary of that revision."""

    revision: int
    obj: tuple[int, int] | None
    key: str

    @property
    def detail(self) -> str:
        """Where, for people (Vietnamese). ``key``: a PDF name, or (an object stream that
        names one object twice, or another object at the index the xref gives) the words."""
        where = "trailer" if self.obj is None else f"đối tượng {self.obj[0]} {self.obj[1]}"
        what = f"khóa {self.key}" if self.key.startswith("/") else self.key
        return f"phiên bản {self.revision}, {where}, {what}"


_REPEATED_KEY = "Multiple definitions in dictionary"
_REPEATED_KEY_NAME = re.compile(r"for key (\S{1,60})")


class _StrictKeys:
    """The reader, as pyHanko's object parser sees it through the references it is given,
    made strict: the dictionary parser (``DictionaryObject.read_from_stream``) then raises
    ``PdfStrictReadError`` at the first repeated key instead of logging it and keeping the
    first value. Nothing else in the object parser reads ``strict`` (the object header and
    object streams are read here, non-strict, as the reader does); everything else — an
    indirect ``/Length``, the security handler — is the reader's own, unchanged."""

    strict = True

    def __init__(self, reader: PdfFileReader) -> None:
        self._reader = reader

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reader, name)


def _repeated_key(exc: BaseException) -> str | None:
    """The key named by pyHanko's repeated-key error in ``exc``'s chain, if that is what it
    is (any other read error is not a repeated key: the comparison meets it too)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, misc.PdfStrictReadError) and _REPEATED_KEY in str(current):
            found = _REPEATED_KEY_NAME.search(str(current))
            return found.group(1) if found else "?"
        current = current.__cause__ or current.__context__
    return None


# A PDF name token (ISO 32000-1 §7.3.5): "/" and the regular characters after it.
_NAME_TOKEN = re.compile(rb"/[^\x00\t\n\x0c\r ()<>\[\]{}/%]*")
_NAME_ESCAPE = re.compile(rb"#([0-9A-Fa-f]{2})")
_MAX_PREFILTER = 1 << 20


def _no_repeated_name(data: bytes, at: int) -> bool:
    """Whether the object written at ``at`` (``N G obj … endobj``, not a stream) certainly has
    no dictionary with a repeated key: no name occurs twice in its bytes at all, names compared
    decoded (``#xx``). A repeated key is a name written twice, so this never clears one; it
    may miss a clearance (a name in a string, or one used in two dictionaries), and the full
    parse then decides. Why: the parse of a signature dictionary, most of what a revision after
    a signature writes, reads its /Contents hex string byte by byte (+15 ms on a 25-signature
    document's first verification, bench/RESULTS.md "verification")."""
    end = data.find(b"endobj", at, at + _MAX_PREFILTER)
    if end < 0:
        return False
    body = data[at:end]
    if b"stream" in body:
        return False  # stream data may hold anything: parse
    seen: set[bytes] = set()
    for match in _NAME_TOKEN.finditer(body):
        name = _NAME_ESCAPE.sub(lambda m: bytes([int(m.group(1), 16)]), match.group(0))
        if name in seen:
            return False
        seen.add(name)
    return True


def _parse_for_repeated_key(
    stream: BinaryIO, at: int, probe: _StrictKeys, kind: str, ref: generic.Reference | None = None
) -> str | None:
    """Parse what starts at ``at`` with ``probe`` as its handler and return its repeated key,
    or ``None``. ``kind``: ``object`` (an ``N G obj`` header, then the object), ``embedded``
    (an object in an object stream, ``ref`` its number: no header) or ``trailer`` (a bare
    dictionary)."""
    try:
        stream.seek(at)
        if kind == "object":
            idnum, generation = read_object_header(stream, strict=False)
            generic.read_object(stream, generic.Reference(idnum, generation, probe))
        elif kind == "embedded":
            assert ref is not None
            generic.read_object(stream, generic.Reference(ref.idnum, 0, probe))
        else:
            generic.read_non_whitespace(stream, seek_back=True)
            generic.DictionaryObject.read_from_stream(stream, generic.TrailerReference(probe))
    except (Exception, RecursionError) as e:  # noqa: BLE001 - unreadable: the diff decides
        return _repeated_key(e)
    return None


@dataclass(frozen=True)
class _ObjectStreamIndex:
    """An object stream as read: its decoded ``data``, where each object number starts
    (``starts``: the first entry for a number, as pyHanko reads it), the numbers in index
    order (``order``: what a reader that follows the xref entry's index reads) and the numbers
    listed more than once (``repeated``)."""

    data: bytes
    starts: dict[int, int]
    order: tuple[int, ...]
    repeated: frozenset[int]


def _object_stream_index(reader: PdfFileReader, number: int) -> _ObjectStreamIndex:
    """The decoded object stream ``number`` and its index, read as pyHanko's reader reads it
    (``PdfFileReader._get_object_from_stream``: the stream's current version, decrypted)."""
    stream = generic.Reference(number, 0, reader).get_object()
    if not isinstance(stream, generic.StreamObject):
        return _ObjectStreamIndex(b"", {}, (), frozenset())
    data = stream.read_data(DecodePurpose.OBJECT_STREAM)
    first = int(stream["/First"])
    count = int(stream["/N"])
    header = BytesIO(data)
    starts: dict[int, int] = {}
    order: list[int] = []
    repeated: set[int] = set()
    # Each entry takes at least four bytes: a hostile /N cannot make this loop longer.
    for _ in range(min(count, len(data) // 4 + 1)):
        try:
            generic.read_non_whitespace(header, seek_back=True)
            objnum = generic.NumberObject.read_from_stream(header)
            generic.read_non_whitespace(header, seek_back=True)
            offset = generic.NumberObject.read_from_stream(header)
        except (ValueError, misc.PdfReadError):
            break
        if int(objnum) in starts:
            repeated.add(int(objnum))
        starts.setdefault(int(objnum), first + int(offset))
        order.append(int(objnum))
    return _ObjectStreamIndex(data, starts, tuple(order), frozenset(repeated))


def _plain(value: object) -> object:
    """``value`` decrypted when it is pyHanko's ``DecryptedObjectProxy`` (what ``dict.get``
    returns for a direct array, dictionary or string in an encrypted document)."""
    return value.decrypted if isinstance(value, generic.DecryptedObjectProxy) else value


def _rect(value: object) -> tuple[float, float, float, float] | None:
    """The rectangle a viewer draws ``value`` (a ``/Rect``) in (:func:`.rects.read_rect`)."""
    return read_rect(value).box


def _annotation_item(
    annot: generic.PdfObject,
    revision: int,
    page: int,
    change: str,
    ref: tuple[int, int] | None = None,
) -> AddedAnnotation | None:
    """``annot`` (object ``ref``) described for the warnings, or ``None`` when it is no
    dictionary."""
    if not isinstance(annot, generic.DictionaryObject):
        return None
    subtype = str(annot.get("/Subtype", "?"))
    parent = _plain(annot.get("/Parent"))
    if isinstance(parent, generic.IndirectObject):
        parent = parent.get_object()
    parent = parent if isinstance(parent, generic.DictionaryObject) else None
    is_sig = subtype == "/Widget" and (
        annot.get("/FT") == "/Sig" or (parent is not None and parent.get("/FT") == "/Sig")
    )
    name = _plain(annot.get("/T", parent.get("/T") if parent is not None else None))
    widget = subtype == "/Widget"
    rect = read_rect(annot.raw_get("/Rect") if "/Rect" in annot else None)
    return AddedAnnotation(
        revision,
        page,
        subtype.lstrip("/"),
        rect.box,
        is_sig,
        change,
        str(name) if name is not None and widget else None,
        str(name) if name is not None and not widget else None,
        ref,
        rect_plain=rect.plain,
    )


def _annots(page: generic.PdfObject) -> list[generic.Reference]:
    if not isinstance(page, generic.DictionaryObject) or "/Annots" not in page:
        return []
    annots = page["/Annots"]
    if not isinstance(annots, generic.ArrayObject):
        return []
    return [
        annots.raw_get(i).reference
        for i in range(len(annots))
        if isinstance(annots.raw_get(i), generic.IndirectObject)
    ]


class RevisionAnalysis:
    """Difference analysis of a document, each pair of consecutive revisions at most once.

    ``policy``: the pyHanko difference policy (our rules in :mod:`.diff_policy`).
    """

    def __init__(
        self,
        reader: PdfFileReader,
        data: bytes,
        policy: DiffPolicy,
        memo: RevisionMemo | None = None,
        deadline: float | None = None,
    ) -> None:
        """``memo``: results kept from an earlier verification of the same bytes.
        ``deadline``: ``time.monotonic()`` value after which comparing another revision raises
        ``LimitExceeded(TIME_BUDGET_EXCEEDED)``."""
        # Faster equivalents of pyHanko's per-revision bookkeeping (idempotent; see
        # diff_speedups).
        speed_up_reader(reader)
        self.reader = reader
        self.data = data
        self.policy = policy
        self.revisions = reader.xrefs.total_revisions
        self._memo = memo or RevisionMemo()
        self._deadline = deadline
        self._changes: dict[tuple[int, MDPPerm | None], RevisionChange] = self._memo.changes
        # Object streams read by the repeated-key scan, by number: their current version is
        # what every revision reads, so each is decoded and indexed once per document.
        self._object_streams: dict[int, tuple[BytesIO, _ObjectStreamIndex]] = {}

    def _check_deadline(self, revision: int) -> None:
        """``LimitExceeded(TIME_BUDGET_EXCEEDED)`` once the verification's time is up."""
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise LimitExceeded(TIME_BUDGET_EXCEEDED, f"at revision {revision}")

    # -- per revision -----------------------------------------------------------------------
    def change(self, revision: int, doc_mdp: MDPPerm | None = None) -> RevisionChange:
        """Revision ``revision`` (≥ 1) compared with ``revision - 1``."""
        key = (revision, doc_mdp)
        cached = self._changes.get(key)
        if cached is not None:
            return cached
        if self._deadline is not None and time.monotonic() > self._deadline:
            raise LimitExceeded(TIME_BUDGET_EXCEEDED, f"at revision {revision}")
        old = self.reader.get_historical_resolver(revision - 1)
        new = self.reader.get_historical_resolver(revision)
        try:
            result = self.policy.apply(old, new, field_mdp_spec=None, doc_mdp=doc_mdp)
        except (Exception, RecursionError) as e:  # noqa: BLE001 - unreadable is not allowed
            # A refusal (SuspiciousModification) or a read error; either may stand for a
            # parsing limit that was hit underneath (decompression bomb, nesting).
            limit = classify_exception(e)
            if limit is not None:
                change = RevisionChange(
                    revision, None, limit.message, limit=(limit.code, limit.detail)
                )
            elif isinstance(e, SuspiciousModification):
                change = RevisionChange(revision, None, str(e)[:300])
            else:
                change = RevisionChange(
                    revision, None, f"không đọc được phiên bản: {type(e).__name__}"
                )
        else:
            assert isinstance(result, DiffResult)
            annotations, unreviewed, unreadable = self._annotation_changes(old, new, revision)
            change = RevisionChange(
                revision,
                result.modification_level,
                None,
                # Plain strings: pyHanko's string objects keep their container (and through
                # it the whole parsed document) alive, and this result outlives the request
                # in the per-document memo.
                frozenset(str(name) for name in result.changed_form_fields),
                annotations,
                annotations_unreviewed_pages=unreviewed,
                annotations_unreadable=unreadable,
            )
        self._changes[key] = change
        return change

    def _annotation_changes(
        self, old: HistoricalResolver, new: HistoricalResolver, revision: int
    ) -> tuple[tuple[AddedAnnotation, ...], int, bool]:
        """The annotations ``revision`` added, changed in place or removed, page by page (the
        first MAX_PAGES_FOR_ANNOTATION_REVIEW pages), how many pages were left out, and whether
        something could not be read. Best effort: the modification policy, not this, decides
        what is allowed; but an annotation that cannot be described is still listed (subtype
        "?", no rectangle), and a page that cannot be read makes the review "unreadable",
        never silently shorter (red team 16, F5: one hostile annotation first on the page
        hid the overlay after it)."""
        found: list[AddedAnnotation] = []
        unreviewed = 0
        unreadable = False

        def describe(
            annot_ref: generic.Reference, resolver: HistoricalResolver, page: int, kind: str
        ) -> None:
            nonlocal unreadable
            try:
                item = _annotation_item(
                    resolver(annot_ref),
                    revision,
                    page,
                    kind,
                    (annot_ref.idnum, annot_ref.generation),
                )
            except Exception:  # noqa: BLE001 - a hostile annotation is still an annotation
                unreadable = True
                item = AddedAnnotation(
                    revision,
                    page,
                    "?",
                    None,
                    False,
                    kind,
                    ref=(annot_ref.idnum, annot_ref.generation),
                )
            if item is not None:
                found.append(item)

        try:
            updated = set(self.reader.xrefs.explicit_refs_in_revision(revision))
            pages = page_refs(new)
            unreviewed = max(0, len(pages) - MAX_PAGES_FOR_ANNOTATION_REVIEW)
            for number, page_ref in enumerate(pages[:MAX_PAGES_FOR_ANNOTATION_REVIEW], start=1):
                new_annots = _annots(new(page_ref))
                if old.is_ref_unassignable(page_ref):
                    old_annots: list[generic.Reference] = []
                else:
                    old_annots = _annots(old(page_ref))
                if not new_annots and not old_annots:
                    continue
                before, after = set(old_annots), set(new_annots)
                for ref in new_annots:
                    if ref not in before:
                        kind = "added"
                    elif ref in updated:
                        kind = "changed"
                    else:
                        continue
                    describe(ref, new, number, kind)
                for ref in old_annots:
                    if ref not in after:
                        describe(ref, old, number, "removed")
        except Exception:  # noqa: BLE001 - warnings are best effort; the diff itself decides
            return tuple(found), unreviewed, True
        return tuple(found), unreviewed, unreadable

    # -- byte level -------------------------------------------------------------------------
    def stray_objects(self, start: int) -> list[tuple[int, str]]:
        """Object definitions at or after ``start`` that no xref section declares, as
        (offset, "N G obj"), at most ``_MAX_STRAY`` of them. One scan serves every signature:
        it is redone only for a ``start`` before the one it was made from, or past the last
        finding of a scan that stopped at the limit, so the order in which signatures and
        document timestamps ask never hides an object from an earlier signature."""
        memo = self._memo
        if (
            memo.stray is None
            or start < memo.stray_from
            or (len(memo.stray) >= _MAX_STRAY and start > memo.stray[-1][0])
        ):
            known: dict[int, set[tuple[int, int]]] = {}
            sections: set[int] = set()  # where xref streams start (their own number varies)
            xrefs = self.reader.xrefs
            for rev in range(self.revisions):
                try:
                    sections.add(xrefs.get_startxref_for_revision(rev))
                    hybrid = xrefs.get_xref_data(rev).hybrid
                    if hybrid is not None:
                        sections.add(hybrid.meta_info.declared_startxref)
                    for ref in xrefs.explicit_refs_in_revision(rev):
                        pos = xrefs.get_historical_ref(ref, rev)
                        if isinstance(pos, int):
                            known.setdefault(pos, set()).add((ref.idnum, ref.generation))
                except Exception:  # noqa: BLE001
                    continue
            found: list[tuple[int, str]] = []
            for match in _COMMENT_OR_HEADER.finditer(self.data, start):
                if match.group(1) is None:
                    continue  # a comment
                at = match.start(1)
                number, generation = _integer(match.group(1)), _integer(match.group(2))
                # Declared: an xref entry (a writer's offset may be a byte or two off) of
                # this very object, or a revision's xref stream. Declared under another
                # number is no declaration (c9-mislabel: the page listed as object size+5).
                declared = any(
                    (number, generation) in known.get(at + d, ()) or at + d in sections
                    for d in (-2, -1, 0, 1, 2)
                )
                if not declared:
                    found.append((at, f"{number} {generation} obj @{at}"))
                    if len(found) >= _MAX_STRAY:
                        break
            memo.stray, memo.stray_from = found, start
        return [s for s in memo.stray if s[0] >= start]

    def duplicate_key(self, signed_revision: int) -> DuplicateKey | None:
        """The first dictionary with a repeated key in what the revisions after
        ``signed_revision`` write: every object their cross-reference sections declare (in
        object streams too; nested dictionaries included, since the whole object is parsed)
        and their trailers or cross-reference stream dictionaries. Each revision is read once
        per document (memo). Names are compared decoded (pyHanko's parser decodes ``#xx``).

        ISO 32000-2 §7.3.7: keys shall be unique; a repeated one is read as its first value by
        pyHanko and as its last by poppler and qpdf, so what the comparison approved is not
        what those viewers show (red team 16 F8: a second ``/Contents`` or ``/Annots`` on a
        rewritten page drew a forged page over a "no changes" verdict). An object that cannot
        be read at all is left to the comparison, which reads it too. Also an object stream that
        lists an object twice, or another object at the index its xref entry gives (pyHanko
        reads the first entry for a number, poppler and qpdf the entry at the index: red team
        16b P1). Raises ``LimitExceeded(TIME_BUDGET_EXCEEDED)`` once the time is up."""
        for revision in range(signed_revision + 1, self.revisions):
            found = self._duplicate_key_in(revision)
            if found is not None:
                return found
        return None

    def _duplicate_key_in(self, revision: int) -> DuplicateKey | None:
        memo = self._memo.duplicates
        if revision in memo:
            return memo[revision]  # type: ignore[no-any-return]
        reader = self.reader
        xrefs = reader.xrefs
        stream = reader.stream
        probe = _StrictKeys(reader)
        found: DuplicateKey | None = None
        objects: list[tuple[int, generic.Reference, int | ObjStreamRef]] = []
        try:
            refs = xrefs.explicit_refs_in_revision(revision)
        except Exception:  # noqa: BLE001 - no such section: nothing it writes
            refs = set()
        for ref in refs:
            try:
                marker = xrefs.get_historical_ref(ref, revision)
            except Exception:  # noqa: BLE001
                continue
            if isinstance(marker, int):
                objects.append((marker, ref, marker))
            elif isinstance(marker, ObjStreamRef):
                objects.append((-1, ref, marker))
        indexes = self._object_streams
        # The bytes the reader reads (its offsets), for the cheap pre-check: BytesIO.getvalue
        # of a buffer made from bytes and never written is that very object, no copy.
        getvalue = getattr(stream, "getvalue", None)
        value = getvalue() if getvalue is not None else None
        raw = value if isinstance(value, bytes) else None
        # File order, so the first repeated key reported is the first one written.
        for count, (_, ref, marker) in enumerate(sorted(objects, key=lambda o: (o[0], o[1].idnum))):
            if count % 256 == 0:
                self._check_deadline(revision)
            if isinstance(marker, int):
                if raw is not None and _no_repeated_name(raw, marker):
                    continue
                key = _parse_for_repeated_key(stream, marker, probe, "object")
            else:
                if marker.obj_stream_id not in indexes:
                    # Once per document (an object stream's current version is what every
                    # revision reads): red team 16b C1, 100,000 entries walked per revision.
                    try:
                        index = _object_stream_index(reader, marker.obj_stream_id)
                    except (Exception, RecursionError):  # noqa: BLE001 - the diff meets it too
                        index = _ObjectStreamIndex(b"", {}, (), frozenset())
                    indexes[marker.obj_stream_id] = (BytesIO(index.data), index)
                decoded, index = indexes[marker.obj_stream_id]
                starts = index.starts
                ix = marker.ix_in_stream
                if ref.idnum in index.repeated or (
                    0 <= ix < len(index.order) and index.order[ix] != ref.idnum
                ):
                    # pyHanko reads an object stream's first entry for a number and ignores
                    # the index the xref gives; poppler and qpdf follow the index. A stream
                    # that lists the number twice (or another one at that index) is two
                    # documents: the page as signed for us, a forged one for them (red team
                    # 16b P1).
                    found = DuplicateKey(
                        revision,
                        (marker.obj_stream_id, 0),
                        f"đối tượng {ref.idnum} được liệt kê hai lần hoặc sai vị trí trong "
                        "luồng đối tượng",
                    )
                    break
                if ref.idnum not in starts:
                    continue  # pyHanko reads it as null
                key = _parse_for_repeated_key(decoded, starts[ref.idnum], probe, "embedded", ref)
            if key is not None:
                found = DuplicateKey(revision, (ref.idnum, ref.generation), key)
                break
        if found is None:
            found = self._duplicate_key_in_trailer(revision, probe)
        memo[revision] = found
        return found

    def _duplicate_key_in_trailer(self, revision: int, probe: _StrictKeys) -> DuplicateKey | None:
        """The trailer dictionary (after an xref table) or the cross-reference stream's
        dictionary of ``revision``: a repeated ``/Root`` or ``/Prev`` is two documents too."""
        stream = self.reader.stream
        try:
            section = self.reader.xrefs.get_xref_container_info(revision)
            hybrid = self.reader.xrefs.get_xref_data(revision).hybrid
        except Exception:  # noqa: BLE001
            return None
        places: list[tuple[int, str]] = []
        if section.xref_section_type is XRefSectionType.STREAM:
            places.append((section.start_location, "object"))
        else:
            places.append((section.end_location, "trailer"))
        if hybrid is not None:
            places.append((hybrid.meta_info.start_location, "object"))
        for at, kind in places:
            key = _parse_for_repeated_key(stream, at, probe, kind)
            if key is not None:
                return DuplicateKey(revision, None, key)
        return None

    def xref_damage(self) -> list[tuple[int, str]]:
        """Cross-reference data pointing elsewhere than its section or object, as
        ``(revision whose bytes hold it, detail)`` (:func:`signing.repair.xref_damages`, the
        check the signer runs before signing). pyHanko reads around a ``startxref`` a few bytes
        off and accepts an entry whose object carries another number; poppler and qpdf then
        rebuild the table by scanning the file and draw other objects (red team 16 F6: a page
        appended behind an empty xref, startxref +3: "no change" here, the forged page there).
        Computed once per document."""
        memo = self._memo
        if memo.xref_damage is None:
            memo.xref_damage = xref_damages(self.reader)
        return memo.xref_damage

    def trailing_garbage(self) -> bool:
        """Bytes after the last ``%%EOF`` that are not whitespace: an appended, unterminated
        revision (Incremental Saving Attack without a closing %%EOF) a reader might use."""
        pos = self.data.rfind(b"%%EOF")
        if pos < 0:
            return True
        return self.data[pos + 5 :].strip(_WHITESPACE) != b""

    # -- per signature ----------------------------------------------------------------------
    def after(
        self,
        signed_revision: int,
        *,
        doc_mdp: MDPPerm | None,
        field_lock: FieldMDPSpec | None,
    ) -> ModificationVerdict:
        """Combine the comparisons of every revision after ``signed_revision``.

        ``doc_mdp``: the permission of this signature when it certifies the document (its
        updates are then judged as after a certification), else ``None``.
        """
        level = ModificationLevel.NONE
        changed: set[str] = set()
        annotations: list[AddedAnnotation] = []
        for revision in range(signed_revision + 1, self.revisions):
            change = self.change(revision, doc_mdp)
            if change.level is None:
                return ModificationVerdict(
                    None, change.problem, revision, False, None, tuple(annotations), change.limit
                )
            level = max(level, change.level)
            changed |= change.changed_fields
            annotations.extend(change.added_annotations)
        if field_lock is not None:
            for name in sorted(changed):
                if field_lock.is_locked(name):
                    return ModificationVerdict(
                        None, f"trường {name} đã bị khóa", None, False, name, tuple(annotations)
                    )
        docmdp_ok = None
        if doc_mdp is not None:
            docmdp_ok = level.value <= doc_mdp.value
        return ModificationVerdict(level, None, None, docmdp_ok, None, tuple(annotations))
