"""What the PDFs people have demand of signing: form-field names, certification (DocMDP) and
field locks (FieldMDP).

- A new signature field needs a name that no field of the document has, whatever its type
  (ISO 32000-1 §12.7.3.2: fully qualified names are unique); a text field called
  ``Signature1`` made pyHanko refuse the name deep inside signing (issue 10).
- A certified document (ISO 32000-1 §12.8.2.2: a signature whose ``/Reference`` carries a
  DocMDP transform, named by the catalog's /Perms /DocMDP or not, as pyHanko and the service's
  verifier read it) allows later signatures only as its author's permission ``P`` says: P=1
  no change at all; P=2 filling in forms and signing, which means filling an *existing* empty
  signature field, since a new field adds a widget annotation and that is not a permitted
  change (our verifier then marks the certification failed); P=3 also annotations, so a new
  signature field too.
- A signed signature field whose lock dictionary carries ``/P`` (ISO 32000-2 §12.7.5.5, Table
  236) restricts later changes the same way once it is signed.
- A signed field's FieldMDP lock (ISO 32000-1 §12.8.2.4 and Table 233: ``/Action`` ``/All``,
  ``/Include`` or ``/Exclude`` with ``/Fields``; in the signature's ``/Reference`` and in the
  field's ``/Lock``) freezes the fields it covers: filling a covered empty signature field, or
  adding a covered *visible* one, is a change to a locked field and breaks the earlier signature
  (red team issue 10, F3: ``/Action /All`` was ignored, 201, and our verifier then marked the
  earlier signature TOTAL_FAILED). A new invisible field is not a change to a locked field
  (pyHanko's difference analysis, which our verifier uses, allows it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from decimal import Decimal

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec, MDPPerm

# Fields visited when collecting names: a form tree larger than this is refused as malformed
# (a field DAG can make a naive walk exponential; every node here is visited once).
MAX_FORM_FIELDS = 50_000


class CertifiedDocument(Exception):
    """Signing would break the document's certification or a field lock: ``reason`` is
    ``no_changes`` (DocMDP P=1, or a lock with P=1), ``field_required`` (P=2 and no empty
    signature field to sign into) or ``field_locked`` (the field is covered by an earlier
    signature's FieldMDP lock)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TooManyFields(Exception):
    """The form tree has more than :data:`MAX_FORM_FIELDS` fields."""


def _resolved(value: object) -> object:
    """``value`` dereferenced and, in an encrypted document, decrypted: pyHanko hands out the
    arrays, dictionaries and strings inside an object as ``DecryptedObjectProxy``, which no
    ``isinstance`` check here would recognise (a signed encrypted document looked as if it
    had no fields, and its second signature took the first one's name)."""
    if isinstance(value, generic.IndirectObject):
        value = value.get_object()
    if isinstance(value, generic.DecryptedObjectProxy):
        value = value.decrypted
    return value


def _walk_fields(reader: PdfFileReader) -> Iterator[tuple[str, generic.DictionaryObject]]:
    """Every field dictionary of the AcroForm tree with its fully qualified name (a kid without
    ``/T`` is a widget of its parent and takes the parent's name), each object once."""
    try:
        acroform = _resolved(reader.root.get("/AcroForm"))
        roots = _resolved(acroform.get("/Fields")) if isinstance(acroform, dict) else None
    except (KeyError, TypeError, AttributeError):
        return
    if not isinstance(roots, list):
        return
    seen: set[tuple[int, int]] = set()
    # Breadth first: the top-level fields in the form's order come first.
    queue: deque[tuple[list[object], str]] = deque([(roots, "")])
    while queue:
        kids, parent = queue.popleft()
        for entry in kids:
            if isinstance(entry, generic.IndirectObject):
                ref = (entry.idnum, entry.generation)
                if ref in seen:
                    continue
                seen.add(ref)
                if len(seen) > MAX_FORM_FIELDS:
                    raise TooManyFields(f"more than {MAX_FORM_FIELDS} form fields")
            field = _resolved(entry)
            if not isinstance(field, generic.DictionaryObject):
                continue
            partial = _resolved(field.get("/T"))
            name = parent
            if isinstance(partial, str):
                name = f"{parent}.{partial}" if parent else str(partial)
            yield name, field
            children = _resolved(field.get("/Kids"))
            if isinstance(children, list):
                queue.append((children, name))


def field_names(reader: PdfFileReader) -> set[str]:
    """The fully qualified names of every form field of the document, of any type.
    :class:`TooManyFields` beyond :data:`MAX_FORM_FIELDS`."""
    return {name for name, _ in _walk_fields(reader) if name}


def _field_type(field: generic.DictionaryObject) -> object:
    # /FT is inheritable (ISO 32000-1 Table 220); a bounded walk up the parents.
    node: object = field
    for _ in range(64):
        if not isinstance(node, generic.DictionaryObject):
            return None
        if "/FT" in node:
            return node.get("/FT")
        node = _resolved(node.get("/Parent"))
    return None


def signature_fields(reader: PdfFileReader) -> list[tuple[str, generic.DictionaryObject]]:
    """The document's signature fields (``/FT /Sig``), with their fully qualified names."""
    return [(name, f) for name, f in _walk_fields(reader) if name and _field_type(f) == "/Sig"]


def empty_signature_fields(reader: PdfFileReader) -> list[str]:
    """Names of the signature fields that carry no signature yet (no ``/V``)."""
    return [name for name, f in signature_fields(reader) if f.get("/V") is None]


def new_field_name(reader: PdfFileReader) -> str:
    """``SignatureN`` with the smallest ``N`` above the number of signature fields that no
    field of the document (of any type) already has."""
    names = field_names(reader)
    n = len(signature_fields(reader)) + 1
    while f"Signature{n}" in names:
        n += 1
    return f"Signature{n}"


def _permission(value: object) -> MDPPerm | None:
    """``value`` as a permission, read as pyHanko reads it (``MDPPerm(value)``): 1, 2 or 3,
    also written as a real (``1.0``); ``None`` for anything else."""
    value = _resolved(value)
    if isinstance(value, int | Decimal) and not isinstance(value, bool):
        try:
            return MDPPerm(value)
        except (ValueError, ArithmeticError):
            return None
    return None


def _docmdp_of_signature(signature: object) -> MDPPerm | None:
    """The DocMDP permission a signature dictionary declares in its ``/Reference`` (ISO
    32000-1 Tables 252-254): ``None`` when no reference has the DocMDP transform method.

    pyHanko (``EmbeddedPdfSignature.docmdp_level``, hence the service's verifier) reads the
    first DocMDP reference; with several, the strictest is taken here, which is never more
    lenient than the first (red team 17b R17B-6: ``[P=1, P=3]`` was read as P=3). A reference
    whose ``/P`` is absent or not a permission counts as the specification's default, P=2."""
    signature = _resolved(signature)
    if not isinstance(signature, dict):
        return None
    references = _resolved(signature.get("/Reference"))
    if isinstance(references, dict):
        references = [references]
    levels: list[MDPPerm] = []
    for ref in references if isinstance(references, list) else ():
        ref = _resolved(ref)
        if isinstance(ref, dict) and _resolved(ref.get("/TransformMethod")) == "/DocMDP":
            params = _resolved(ref.get("/TransformParams"))
            level = _permission(params.get("/P")) if isinstance(params, dict) else None
            levels.append(level or MDPPerm.FILL_FORMS)
    return min(levels) if levels else None


def docmdp_permission(reader: PdfFileReader) -> MDPPerm | None:
    """The strictest permission in force; ``None`` when nothing restricts changes:

    - the DocMDP ``P`` of every certification: the signature the catalog's ``/Perms
      /DocMDP`` names, and every signed signature whose ``/Reference`` carries a DocMDP
      transform, with or without ``/Perms`` (pyHanko and the service's verifier judge such a
      signature a certification and enforce its P: red team 17b R17B-2);
    - the ``/P`` of the lock of every signed signature field (ISO 32000-2 Table 236)."""
    found: list[MDPPerm] = []
    try:
        perms = _resolved(reader.root.get("/Perms"))
        certification = perms.get("/DocMDP") if isinstance(perms, dict) else None
    except (KeyError, TypeError, AttributeError):
        certification = None
    if isinstance(_resolved(certification), generic.DictionaryObject):
        # Named as the certification: P=2 when its reference does not say otherwise.
        found.append(_docmdp_of_signature(certification) or MDPPerm.FILL_FORMS)
    for _, field in signature_fields(reader):
        signature = _resolved(field.get("/V"))
        if signature is None:
            continue
        level = _docmdp_of_signature(signature)
        if level is not None:
            found.append(level)
        lock = _resolved(field.get("/Lock"))
        if isinstance(lock, dict):
            level = _permission(lock.get("/P"))
            if level is not None:
                found.append(level)
    return min(found) if found else None


def _field_mdp(value: object) -> FieldMDPSpec | None:
    """A FieldMDP spec read from a lock or transform-parameters dictionary; ``None`` when it is
    not one. A malformed one (an unknown ``/Action``, ``/Fields`` not a list of strings) is read
    as ``/All``: what it locks cannot be known, so it is taken to lock everything."""
    value = _resolved(value)
    if not isinstance(value, dict) or "/Action" not in value:
        return None
    action = _resolved(value.get("/Action"))
    if action == "/All":
        return FieldMDPSpec(FieldMDPAction.ALL)
    names = _resolved(value.get("/Fields"))
    if action not in ("/Include", "/Exclude") or not isinstance(names, list):
        return FieldMDPSpec(FieldMDPAction.ALL)
    listed = [_resolved(n) for n in names]
    if not all(isinstance(n, str) for n in listed):
        return FieldMDPSpec(FieldMDPAction.ALL)
    return FieldMDPSpec(FieldMDPAction(action), fields=[str(n) for n in listed])


def field_locks(reader: PdfFileReader) -> list[tuple[str, FieldMDPSpec]]:
    """The FieldMDP locks in force: ``(name of the signed field, spec)`` for every signed
    signature field, from the signature's ``/Reference`` FieldMDP transform parameters (what
    the signature covers and a validator enforces) and from the field's ``/Lock`` (ISO 32000-1
    Tables 233, 252, 253). :class:`TooManyFields` beyond :data:`MAX_FORM_FIELDS`."""
    locks: list[tuple[str, FieldMDPSpec]] = []
    for name, field in signature_fields(reader):
        signature = _resolved(field.get("/V"))
        if signature is None:
            continue
        spec = _field_mdp(field.get("/Lock"))
        if spec is not None:
            locks.append((name, spec))
        references = _resolved(signature.get("/Reference")) if isinstance(signature, dict) else None
        for ref in references if isinstance(references, list) else ():
            ref = _resolved(ref)
            if isinstance(ref, dict) and ref.get("/TransformMethod") == "/FieldMDP":
                spec = _field_mdp(ref.get("/TransformParams"))
                if spec is not None:
                    locks.append((name, spec))
    return locks


def locking_field(reader: PdfFileReader, field_name: str) -> str | None:
    """The name of a signed field whose FieldMDP lock covers ``field_name``, ``None`` when no
    lock does."""
    for locker, spec in field_locks(reader):
        if spec.is_locked(field_name):
            return locker
    return None


def check_certification(reader: PdfFileReader, field_name: str, *, visible: bool = True) -> None:
    """Raise :class:`CertifiedDocument` when signing into ``field_name`` would be a change the
    document's certification or a field lock forbids (see the module docstring): DocMDP first
    (``no_changes``, ``field_required``), then FieldMDP (``field_locked``): an existing empty
    field covered by a lock, or a new ``visible`` one covered by a lock."""
    _check_docmdp(reader, field_name)
    existing = field_name in {name for name, _ in signature_fields(reader)}
    if existing or visible:
        locker = locking_field(reader, field_name)
        if locker is not None:
            raise CertifiedDocument("field_locked", f"{field_name} locked by {locker}")


def _check_docmdp(reader: PdfFileReader, field_name: str) -> None:
    permission = docmdp_permission(reader)
    if permission is None or permission >= MDPPerm.ANNOTATE:
        return
    if permission == MDPPerm.NO_CHANGES:
        raise CertifiedDocument("no_changes", "DocMDP P=1")
    if field_name not in empty_signature_fields(reader):
        raise CertifiedDocument("field_required", "DocMDP P=2: a new signature field")


def field_for_certified(reader: PdfFileReader) -> str | None:
    """Under a P=2 restriction, the empty signature field to sign into (the first in the
    form's order); ``None`` when the document is not so restricted or offers none."""
    if docmdp_permission(reader) != MDPPerm.FILL_FORMS:
        return None
    empty = empty_signature_fields(reader)
    # An empty field a FieldMDP lock covers cannot be filled: another one if there is one.
    unlocked = [name for name in empty if locking_field(reader, name) is None]
    empty = unlocked or empty
    return empty[0] if empty else None
