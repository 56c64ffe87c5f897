"""The difference analysis with its speedups (verification/diff_speedups.py and
``SignatureFieldStateRule``) gives exactly what pyHanko's own pieces give.

Each speedup is compared with the pyHanko code it replaces on the third-party corpus
(../shared/pdf-corpus, skipped when absent) and on documents built here with the dev PKI: a
25-signature file, a tagged one with comments, one whose page content is replaced between two
signatures. Then the verifier's per-signature verdicts on a 25-signature file changed
illegitimately in revision 10: every signature before the change fails, every one after passes,
the first time and again from the per-document memo.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from io import BytesIO

import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader, RawPdfPath
from pyhanko.sign.diff_analysis import (
    DiffResult,
    FieldComparisonSpec,
    FormUpdatingRule,
    SuspiciousModification,
)
from pyhanko.sign.diff_analysis.rules.form_field_rules import SigFieldModificationRule
from pyhanko.sign.fields import MDPPerm

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.keys import LoadedKey
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.trust import TrustStore
from signing_service.verification.diff_policy import (
    DIFF_POLICY,
    ServiceDiffPolicy,
    SignatureFieldStateRule,
    _annotation_path_test_fails,
    build_diff_policy,
)
from signing_service.verification.diff_speedups import (
    _EncryptedResolver,
    _PathTable,
    load_reverse_xref_cache,
    memoize_xref_history,
    speed_up_reader,
)
from signing_service.verification.memo import FACTS
from signing_service.verification.validate import Verifier
from tests.conftest import CORPUS, REPO
from tests.support import modifications as m

CORPUS_FILES = sorted(CORPUS.rglob("*.pdf")) if CORPUS.is_dir() else []


@pytest.fixture(scope="module")
def key(dev_pki: tuple[DevPki, int]) -> LoadedKey:
    pki, _ = dev_pki
    return load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())


@pytest.fixture(scope="module")
def verifier(dev_pki: tuple[DevPki, int]) -> Verifier:
    pki, _ = dev_pki
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )
    return Verifier(trust)


def sign_times(data: bytes, key: LoadedKey, first: int, count: int) -> bytes:
    for number in range(first, first + count):
        data = asyncio.run(m.sign(data, key, field_name=f"Signature{number}"))
    return data


def replace_page_content(writer: object) -> None:
    """The signed page now shows other text: never allowed after a signature."""
    _, page = m.first_page(writer)  # type: ignore[arg-type]
    stream = generic.StreamObject(stream_data=b"BT /F1 24 Tf 72 700 Td (Da sua) Tj ET")
    page[generic.NameObject("/Contents")] = writer.add_object(stream)  # type: ignore[attr-defined]
    writer.update_container(page)  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def changed_in_revision_10(key: LoadedKey) -> bytes:
    """Signatures 1–9 (revisions 1–9), the page content replaced (revision 10), signatures
    10–25 (revisions 11–26)."""
    data = sign_times(m.base_pdf(), key, 1, 9)
    data = m.edit(data, replace_page_content)
    return sign_times(data, key, 10, 16)


@pytest.fixture(scope="module")
def built_documents(key: LoadedKey, changed_in_revision_10: bytes) -> dict[str, bytes]:
    def comment(writer: object) -> None:
        m.add_comment(writer, tag=True)  # type: ignore[arg-type]

    tagged = sign_times(m.base_pdf(tagged=True, text_field=True, comment=True), key, 1, 2)
    return {
        "25 signatures": sign_times(m.base_pdf(), key, 1, 25),
        "tagged, commented between signatures": sign_times(m.edit(tagged, comment), key, 3, 2),
        "page content replaced in revision 10": changed_in_revision_10,
    }


def _documents(built: dict[str, bytes]) -> Iterator[tuple[str, bytes]]:
    yield from built.items()
    for path in CORPUS_FILES:
        yield str(path.relative_to(CORPUS)), path.read_bytes()


def _reader(data: bytes) -> PdfFileReader | None:
    try:
        return PdfFileReader(BytesIO(data), strict=False)
    except Exception:  # noqa: BLE001 - unreadable corpus files are other tests' business
        return None


def _outcome(call: object) -> object:
    try:
        return call()  # type: ignore[operator]
    except Exception as e:  # noqa: BLE001 - the error is the outcome compared
        return type(e)


def test_path_table_is_pyhankos(built_documents: dict[str, bytes]) -> None:
    """Every revision's table of paths to every object equals pyHanko's own."""
    compared = 0
    for name, data in _documents(built_documents):
        ours, theirs = _reader(data), _reader(data)
        if ours is None or theirs is None:
            continue
        speed_up_reader(ours)
        for revision in range(theirs.xrefs.total_revisions):
            expected_resolver = theirs.get_historical_resolver(revision)
            resolver = ours.get_historical_resolver(revision)
            expected = _outcome(expected_resolver._load_reverse_xref_cache)
            got = _outcome(lambda r=resolver: load_reverse_xref_cache(r))
            assert got == expected, (name, revision)
            if expected is not None:
                continue  # both raised the same error
            table = resolver._indirect_object_access_cache
            expected_table = expected_resolver._indirect_object_access_cache
            assert table is not None and expected_table is not None
            assert set(table) == set(expected_table), (name, revision)
            for ref, paths in expected_table.items():
                assert resolver._get_usages_of_ref(ref) == paths, (name, revision, ref)
            compared += 1
    assert compared >= 30  # the built documents alone have 56 revisions


def test_path_table_of_an_encrypted_document_is_pyhankos_raw_walk(
    built_documents: dict[str, bytes], key: LoadedKey
) -> None:
    """An encrypted document's table (red team 15, F7: pyHanko's walk made its verification
    4 x slower) equals pyHanko's own walk as _EncryptedResolver runs it (over the raw objects,
    seeing through the decrypting proxies): every revision of the built documents encrypted
    (owner password only, AES-256 and RC4), and of documents signed and changed encrypted."""
    from tests.test_modifications import _owner_encrypted

    def encrypted(data: bytes, **options: object) -> bytes:
        import pikepdf

        out = BytesIO()
        pikepdf.open(BytesIO(data)).save(
            out, encryption=pikepdf.Encryption(user="", owner="o", **options)
        )
        return out.getvalue()

    documents = {f"{name}, encrypted": encrypted(data) for name, data in built_documents.items()}
    documents["25 signatures, RC4"] = encrypted(
        built_documents["25 signatures"], R=3, metadata=False, aes=False
    )
    tagged = _owner_encrypted(m.base_pdf(tagged=True, text_field=True, comment=True))
    documents["signed encrypted, commented, signed"] = sign_times(
        m.edit(sign_times(tagged, key, 1, 2), m.add_comment), key, 3, 2
    )
    documents["12 signatures on an encrypted document"] = sign_times(
        _owner_encrypted(m.base_pdf()), key, 1, 12
    )
    compared = 0
    for name, data in documents.items():
        ours, theirs = _reader(data), _reader(data)
        assert ours is not None and theirs is not None and ours.encrypted, name
        ours.decrypt("")  # as the verifier does (validate.py): owner password only
        theirs.decrypt("")
        speed_up_reader(ours)
        speed_up_reader(theirs)
        for revision in range(theirs.xrefs.total_revisions):
            expected_resolver = theirs.get_historical_resolver(revision)
            assert isinstance(expected_resolver, _EncryptedResolver)
            resolver = ours.get_historical_resolver(revision)
            expected = _outcome(expected_resolver._load_reverse_xref_cache)
            got = _outcome(lambda r=resolver: load_reverse_xref_cache(r))
            assert got == expected, (name, revision)
            if expected is not None:
                continue
            table = resolver._indirect_object_access_cache
            expected_table = expected_resolver._indirect_object_access_cache
            assert isinstance(table, _PathTable), (name, revision)
            assert expected_table is not None and not isinstance(expected_table, _PathTable)
            assert set(table) == set(expected_table), (name, revision)
            for ref, paths in expected_table.items():
                assert resolver._get_usages_of_ref(ref) == paths, (name, revision, ref)
            compared += 1
    assert compared >= 20  # pikepdf's re-saves are one revision each; the signed ones 18


def test_history_lookups_are_pyhankos(built_documents: dict[str, bytes]) -> None:
    """Memoised last-change and introducing-revision lookups answer as pyHanko's scans do,
    KeyError included, for every object number and generation the file declares or frees."""
    for name, data in _documents(built_documents):
        ours, theirs = _reader(data), _reader(data)
        if ours is None or theirs is None:
            continue
        memoize_xref_history(ours)
        refs: set[generic.Reference] = set()
        for revision in range(theirs.xrefs.total_revisions):
            refs |= theirs.xrefs.explicit_refs_in_revision(revision)
            section = theirs.xrefs.get_xref_data(revision)
            refs |= {generic.Reference(n, g - 1) for n, g in section.freed.items()}
        refs |= {generic.Reference(r.idnum, r.generation + 1) for r in list(refs)}
        for ref in refs:
            for _ in range(2):  # computed, then memoised
                for lookup in ("get_last_change", "get_introducing_revision"):
                    got = _outcome(lambda f=getattr(ours.xrefs, lookup), r=ref: f(r))
                    want = _outcome(lambda f=getattr(theirs.xrefs, lookup), r=ref: f(r))
                    assert got == want, (name, ref, lookup)


def _same_copy(ours: object, theirs: object, ours_pdf: object, theirs_pdf: object) -> bool:
    """Same type, value and container reference, references re-pointed at each resolver."""
    if type(ours) is not type(theirs):
        return False
    if isinstance(ours, generic.IndirectObject):
        return (
            ours.reference == theirs.reference  # type: ignore[attr-defined]
            and ours.reference.pdf is ours_pdf
            and theirs.reference.pdf is theirs_pdf  # type: ignore[attr-defined]
        )
    ours_ref, theirs_ref = ours.container_ref, theirs.container_ref  # type: ignore[attr-defined]
    if (ours_ref is None) != (theirs_ref is None):
        return False
    if isinstance(ours_ref, generic.Reference) and (
        ours_ref != theirs_ref or (theirs_ref.pdf is theirs_pdf) != (ours_ref.pdf is ours_pdf)
    ):
        return False
    if isinstance(ours, generic.StreamObject) and ours.encoded_data != theirs.encoded_data:  # type: ignore[attr-defined]
        return False
    if isinstance(ours, dict):
        return set(ours) == set(theirs) and all(  # type: ignore[arg-type]
            _same_copy(dict.__getitem__(ours, k), dict.__getitem__(theirs, k), ours_pdf, theirs_pdf)  # type: ignore[arg-type]
            for k in ours
        )
    if isinstance(ours, list):
        return len(ours) == len(theirs) and all(  # type: ignore[arg-type]
            _same_copy(a, b, ours_pdf, theirs_pdf)
            for a, b in zip(list.__iter__(ours), list.__iter__(theirs), strict=True)  # type: ignore[arg-type]
        )
    return bool(ours == theirs)


def test_copies_into_a_revision_are_pyhankos(built_documents: dict[str, bytes]) -> None:
    """Every object of every revision, as the resolver hands it out, is the copy pyHanko
    makes: same types, values and container references, references pointing into the
    revision (or the same error)."""
    compared = 0
    for name, data in _documents(built_documents):
        ours, theirs = _reader(data), _reader(data)
        if ours is None or theirs is None:
            continue
        speed_up_reader(ours)
        refs: set[generic.Reference] = set()
        for revision in range(theirs.xrefs.total_revisions):
            refs |= theirs.xrefs.explicit_refs_in_revision(revision)
        for revision in range(theirs.xrefs.total_revisions):
            mine = ours.get_historical_resolver(revision)
            pyhanko = theirs.get_historical_resolver(revision)
            for ref in sorted(refs, key=lambda r: (r.idnum, r.generation)):
                got = _outcome(lambda r=ref, h=mine: h(generic.Reference(r.idnum, r.generation, h)))
                want = _outcome(
                    lambda r=ref, h=pyhanko: h(generic.Reference(r.idnum, r.generation, h))
                )
                if isinstance(want, type) and issubclass(want, Exception):
                    assert got == want, (name, revision, ref)
                    continue
                assert _same_copy(got, want, mine, pyhanko), (name, revision, ref)
                compared += 1
    assert compared > 1000


def _reference_policy() -> ServiceDiffPolicy:
    """The policy with pyHanko's own signature-field rule instead of SignatureFieldStateRule."""
    policy = build_diff_policy()
    assert policy.form_rule is not None
    rules = [
        SigFieldModificationRule() if isinstance(r, SignatureFieldStateRule) else r
        for r in policy.form_rule.field_rules
    ]
    assert rules != policy.form_rule.field_rules
    policy.form_rule = FormUpdatingRule(field_rules=rules)
    return policy


# The references and paths a refusal names, in the order pyHanko met them: that order follows
# set iteration (object ids hashed), which differs between processes and, seen once in a full
# run, between two readers of one file. The text around them and the multiset are compared.
_NAMED = re.compile(r"Reference\(idnum=\d+, generation=\d+\)|PathInRevision\('[^']*'\)")


def _message_parts(message: str) -> tuple[str, tuple[str, ...]]:
    """A refusal message as (its text with every named reference and path replaced by ``·``,
    the sorted names)."""
    return _NAMED.sub("·", message), tuple(sorted(_NAMED.findall(message)))


def _step(
    policy: ServiceDiffPolicy, reader: PdfFileReader, revision: int, doc_mdp: object
) -> object:
    old = reader.get_historical_resolver(revision - 1)
    new = reader.get_historical_resolver(revision)
    try:
        result = policy.apply(old, new, doc_mdp=doc_mdp)  # type: ignore[arg-type]
    except SuspiciousModification as e:
        return ("refused", *_message_parts(str(e)))
    except Exception as e:  # noqa: BLE001 - an unreadable revision is an outcome too
        return ("error", type(e).__name__)
    assert isinstance(result, DiffResult)
    return (result.modification_level, frozenset(result.changed_form_fields))


@pytest.mark.parametrize("doc_mdp", [None, MDPPerm.FILL_FORMS])
def test_each_revision_judged_as_by_pyhankos_pieces(
    built_documents: dict[str, bytes], doc_mdp: MDPPerm | None
) -> None:
    """Each revision compared with the one before it: the same level, changed fields and
    refusal (message included) with the speedups as with pyHanko's table, lookups, copies
    and signature-field rule."""
    reference = _reference_policy()
    steps = 0
    for name, data in _documents(built_documents):
        ours, theirs = _reader(data), _reader(data)
        if ours is None or theirs is None:
            continue
        speed_up_reader(ours)
        for revision in range(1, theirs.xrefs.total_revisions):
            # pyHanko's own table first, so that the reference run never uses ours
            _outcome(theirs.get_historical_resolver(revision - 1)._load_reverse_xref_cache)
            want = _step(reference, theirs, revision, doc_mdp)
            got = _step(DIFF_POLICY, ours, revision, doc_mdp)
            if want[0] == "refused" and "(KeyError)" in str(want[1]) and got != want:
                # Deliberately not pyHanko's: a reference to an object no revision defines is
                # null (ISO 32000-1 §7.3.10), not an analysis failure (red team 16, F7;
                # tests/test_modifications.py). Anything but an approval of the same level.
                continue
            assert got == want, (name, revision)
            steps += 1
    assert steps >= 50


@pytest.mark.parametrize(
    "steps",
    [
        ("/Root", "/Pages", "/Kids", 0, "/Annots", 3),
        ("/Root", "/Pages", "/Kids", 0, "/Kids", 1, "/Annots", 0),
        ("/Root", "/Pages", "/Kids", 0, "/Kids", 1),
        ("/Root", "/Pages", "/Kids", 0, "/Kids", 1, "/Kids"),
        ("/Root", "/Pages", "/Kids", 0, "/Kids", "/x"),
        ("/Root", "/Pages", "/Annots", 0, "/Kids", 1),
        ("/Root", "/AcroForm", "/Fields", 0, "/Kids", 1),
        ("/Root", "/Pages", "/Kids", 2),
        ("/Root", "/Pages", "/Kids", 0, "/Annots", 3, "/Kids", 0),
    ],
)
def test_annotation_path_test_failure_predicted(steps: tuple[str | int, ...]) -> None:
    """``_annotation_path_test_fails`` says exactly when pyHanko's test of a field's usage
    path raises (a field there is then left to pyHanko, which fails the revision)."""
    reader = PdfFileReader(BytesIO(m.base_pdf()), strict=False)
    old = reader.get_historical_resolver(0)
    ref = generic.Reference(1, 0, old)
    old._indirect_object_access_cache = {ref: {RawPdfPath(*steps)}}
    spec = FieldComparisonSpec(
        field_type="/Sig", old_field_ref=ref, new_field_ref=ref, old_canonical_path=None
    )
    raised = _outcome(spec._old_annotation_paths) is ValueError
    assert _annotation_path_test_fails(steps) is raised


def _modification_statuses(verifier: Verifier, data: bytes) -> dict[str, str]:
    report = asyncio.run(verifier.async_verify(data)).to_dict()
    return {s["field"]: s["checks"]["modifications"]["status"] for s in report["signatures"]}


def test_change_in_revision_10_fails_only_the_signatures_before_it(
    verifier: Verifier, changed_in_revision_10: bytes
) -> None:
    """Per-revision results are shared by all signatures, each verdict is its own: the page
    replaced in revision 10 fails signatures 1–9 and none of 10–25, the first time (nothing
    known about the file) and again (from the per-document memo)."""
    FACTS.clear()
    first = _modification_statuses(verifier, changed_in_revision_10)
    again = _modification_statuses(verifier, changed_in_revision_10)
    expected = {f"Signature{n}": "FAILED" if n <= 9 else "PASSED" for n in range(1, 26)}
    assert first == expected
    assert again == expected
    report = asyncio.run(verifier.async_verify(changed_in_revision_10)).to_dict()
    assert report["verdict"] == "TOTAL_FAILED"
    for sig in report["signatures"]:
        if sig["field"] in {"Signature1", "Signature9"}:
            assert sig["checks"]["modifications"]["code"] == "DISALLOWED_CHANGES", sig
