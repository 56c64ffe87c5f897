"""Modification analysis: what PDF writers do after a signature passes, what attackers do fails.

Every case is checked twice: through the verifier as it runs today (pyHanko compares the signed
revision with each later one, ``review_file``) and the way the per-revision engine will run the
policy (each revision against the one before it, ``DIFF_POLICY.apply``), so the rules hold in
both. Inputs are built here (tests/support/modifications.py) and signed with the dev PKI.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Callable
from io import BytesIO
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import (
    DEFAULT_DIFF_POLICY,
    ModificationLevel,
    SuspiciousModification,
)
from pyhanko.sign.fields import MDPPerm

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.keys import LoadedKey
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.trust import TrustStore
from signing_service.verification.diff_policy import DIFF_POLICY
from signing_service.verification.validate import Verifier
from tests.conftest import CORPUS, REPO
from tests.support import modifications as m

LTA = ModificationLevel.LTA_UPDATES
FILL = ModificationLevel.FORM_FILLING
ANNOT = ModificationLevel.ANNOTATIONS


@pytest.fixture(scope="module")
def verifier(dev_pki: tuple[DevPki, int]) -> Verifier:
    pki, _ = dev_pki
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )
    return Verifier(trust)


@pytest.fixture(scope="module")
def key(dev_pki: tuple[DevPki, int]) -> LoadedKey:
    pki, _ = dev_pki
    return load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())


def sign(data: bytes, key: LoadedKey, **kwargs: Any) -> bytes:
    return asyncio.run(m.sign(data, key, **kwargs))


def _reader(data: bytes) -> PdfFileReader:
    """A reader as the verifier makes it (diff_speedups installed; an encrypted document
    opened with the empty user password)."""
    from signing_service.verification.diff_speedups import speed_up_reader

    reader = PdfFileReader(BytesIO(data), strict=False)
    speed_up_reader(reader)
    if reader.encrypted:
        reader.decrypt("")
    return reader


def per_revision(data: bytes) -> tuple[ModificationLevel, MDPPerm | None]:
    """The per-revision engine's view: the highest level over the revisions after the first
    signature, and the certification's DocMDP permission. Raises SuspiciousModification."""
    reader = _reader(data)
    signatures = list(reader.embedded_signatures)
    assert signatures, "the test document must be signed"
    doc_mdp = next((s.docmdp_level for s in signatures if s.docmdp_level is not None), None)
    first = min(s.signed_revision for s in signatures)
    level = ModificationLevel.NONE
    for revision in range(first + 1, reader.xrefs.total_revisions):
        result = DIFF_POLICY.apply(
            old=reader.get_historical_resolver(revision - 1),
            new=reader.get_historical_resolver(revision),
            field_mdp_spec=None,
            doc_mdp=doc_mdp,
        )
        level = max(level, result.modification_level)
    return level, doc_mdp


def last_revision_level(data: bytes) -> ModificationLevel:
    """The level of the newest revision alone, against the one before it."""
    reader = _reader(data)
    last = reader.xrefs.total_revisions - 1
    return DIFF_POLICY.apply(
        reader.get_historical_resolver(last - 1), reader.get_historical_resolver(last)
    ).modification_level


def report_of(verifier: Verifier, data: bytes) -> dict:  # type: ignore[type-arg]
    return asyncio.run(verifier.async_verify(data)).to_dict()


def assert_accepted(verifier: Verifier, data: bytes, level: ModificationLevel) -> None:
    report = report_of(verifier, data)
    assert report["signatures"], report
    for sig in report["signatures"]:
        assert sig["checks"]["modifications"]["status"] == "PASSED", sig["checks"]
        assert all(c["status"] != "FAILED" for c in sig["checks"].values()), sig["checks"]
    assert report["verdict"] != "TOTAL_FAILED", report
    got, doc_mdp = per_revision(data)
    assert got == level
    assert doc_mdp is None or got.value <= doc_mdp.value


def assert_refused(verifier: Verifier, data: bytes, code: str = "DISALLOWED_CHANGES") -> None:
    report = report_of(verifier, data)
    assert report["verdict"] == "TOTAL_FAILED", report
    first = report["signatures"][0]["checks"]["modifications"]
    assert first["status"] == "FAILED", report
    assert first["code"] == code, first
    if code == "DOCMDP_VIOLATION":
        level, doc_mdp = per_revision(data)
        assert doc_mdp is not None and level.value > doc_mdp.value
    else:
        with pytest.raises(SuspiciousModification):
            per_revision(data)


def set_page_entries(**entries: generic.PdfObject) -> Any:
    def change(writer: Any) -> None:
        _, page = m.first_page(writer)
        for name, value in entries.items():
            page[generic.NameObject("/" + name)] = value
        writer.update_container(page)

    return change


# --- a. free entries -----------------------------------------------------------------------------


def test_relisted_free_entry_is_not_a_freeing(verifier: Verifier, key: LoadedKey) -> None:
    """A later section repeating the free entry of an object freed before signing."""
    unsigned, number = m.add_orphan_then_free(m.base_pdf())
    signed = sign(unsigned, key)
    assert_accepted(verifier, m.relist_free_entry(signed, number), LTA)


def test_freeing_an_object_in_use_fails(verifier: Verifier, key: LoadedKey) -> None:
    """Freeing the page's content stream blanks the page in other readers."""
    signed = sign(m.base_pdf(), key)
    content = m.object_number(
        signed, lambda o: isinstance(o, generic.StreamObject) and b"Quyet dinh" in o.data
    )
    assert_refused(verifier, m.append_raw_update(signed, free={content: 1}))


# --- b. /Tabs ------------------------------------------------------------------------------------


def test_signature_field_with_tab_order_after_approval(verifier: Verifier, key: LoadedKey) -> None:
    """Acrobat adds a signature field and sets /Tabs /S; then someone signs it."""
    signed = sign(m.base_pdf(), key)
    with_field = m.edit(signed, m.add_signature_field)
    assert_accepted(verifier, with_field, FILL)
    assert_accepted(verifier, sign(with_field, key, field_name="Signature2"), FILL)


def test_tab_order_alone_after_approval(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(), key)
    assert_accepted(verifier, m.edit(signed, set_page_entries(Tabs=generic.NameObject("/S"))), FILL)


def test_tab_order_under_no_changes_certification_fails(verifier: Verifier, key: LoadedKey) -> None:
    certified = sign(m.base_pdf(), key, certify=MDPPerm.NO_CHANGES)
    changed = m.edit(certified, set_page_entries(Tabs=generic.NameObject("/S")))
    assert_refused(verifier, changed, "DOCMDP_VIOLATION")


def test_other_page_change_with_tab_order_fails(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(), key)
    changed = m.edit(
        signed,
        set_page_entries(Tabs=generic.NameObject("/S"), Rotate=generic.NumberObject(90)),
    )
    assert_refused(verifier, changed)


# --- c. annotation removal -----------------------------------------------------------------------


def test_comment_removed_after_approval(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(comment=True), key)
    assert_accepted(verifier, m.edit(signed, m.remove_comment), ANNOT)


def test_comment_deleted_and_its_objects_freed(verifier: Verifier, key: LoadedKey) -> None:
    """Acrobat's way: one save rewrites /Annots and frees the note, its popup and its icon."""
    signed = sign(m.base_pdf(comment=True), key)
    assert_accepted(verifier, m.delete_comment_freeing(signed), ANNOT)


def test_comment_added_then_edited(verifier: Verifier, key: LoadedKey) -> None:
    """Compared revision by revision, the edit touches an existing comment."""
    signed = sign(m.base_pdf(), key)
    commented = m.edit(signed, m.add_comment)
    assert_accepted(verifier, m.edit(commented, lambda w: m.edit_comment(w, "Da bo sung")), ANNOT)


def test_comment_edited_into_an_action_fails(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(comment=True), key)
    changed = m.edit(signed, lambda w: m.edit_comment(w, "Bam vao day", action=True))
    assert_refused(verifier, changed)


def test_signed_comment_edited_under_form_filling_certification_fails(
    verifier: Verifier, key: LoadedKey
) -> None:
    certified = sign(m.base_pdf(comment=True), key, certify=MDPPerm.FILL_FORMS)
    changed = m.edit(certified, lambda w: m.edit_comment(w, "Chua kiem tra"))
    assert_refused(verifier, changed, "DOCMDP_VIOLATION")


def test_freeing_what_the_page_still_draws_fails(verifier: Verifier, key: LoadedKey) -> None:
    """The removed note's icon is also drawn by the page content: freeing it is not part of
    removing the note."""
    signed = sign(m.base_pdf(comment=True, comment_icon_on_page=True), key)
    assert_refused(verifier, m.delete_comment_freeing(signed))


def test_freeing_more_than_the_removed_comment_fails(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(comment=True), key)
    content = m.object_number(
        signed, lambda o: isinstance(o, generic.StreamObject) and b"Quyet dinh" in o.data
    )
    assert_refused(verifier, m.delete_comment_freeing(signed, also_free=[content]))


def test_annotation_drawing_order_changed_fails(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(comment=True, text_field=True), key)
    assert_refused(verifier, m.edit(signed, m.reverse_annotations))


def test_removals_under_certification_permitting_annotations(
    verifier: Verifier, key: LoadedKey
) -> None:
    """P=3: a comment, and an unsigned signature field with its widget, may be deleted."""
    certified = sign(
        m.base_pdf(comment=True, empty_signature_field=True), key, certify=MDPPerm.ANNOTATE
    )
    assert_accepted(verifier, m.edit(certified, m.remove_comment), ANNOT)
    without_field = m.edit(certified, lambda w: m.remove_annotations(w, m.is_field("ChuaKy")))
    assert_accepted(verifier, without_field, ANNOT)


def test_removals_under_form_filling_certification_fail(verifier: Verifier, key: LoadedKey) -> None:
    certified = sign(
        m.base_pdf(comment=True, empty_signature_field=True), key, certify=MDPPerm.FILL_FORMS
    )
    assert_refused(verifier, m.edit(certified, m.remove_comment), "DOCMDP_VIOLATION")
    without_field = m.edit(certified, lambda w: m.remove_annotations(w, m.is_field("ChuaKy")))
    assert_refused(verifier, without_field, "DOCMDP_VIOLATION")


def test_removing_a_signed_signature_widget_fails(verifier: Verifier, key: LoadedKey) -> None:
    """The visible signature disappears from the page while the field stays signed."""
    signed = sign(m.base_pdf(), key, visible=True)
    hidden = m.edit(
        signed, lambda w: m.remove_annotations(w, m.is_field("Signature1"), from_fields=False)
    )
    assert_refused(verifier, hidden)


def test_removing_a_signed_signature_field_fails(verifier: Verifier, key: LoadedKey) -> None:
    """Field and widget removed after a second signature: the first one must fail."""
    signed = sign(sign(m.base_pdf(), key, visible=True), key, field_name="Signature2")
    removed = m.edit(signed, lambda w: m.remove_annotations(w, m.is_field("Signature1")))
    report = report_of(verifier, removed)
    assert report["verdict"] == "TOTAL_FAILED", report
    assert report["signatures"][0]["checks"]["modifications"]["status"] == "FAILED"
    with pytest.raises(SuspiciousModification):
        per_revision(removed)


def test_removing_a_filled_field_widget_fails(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(text_field=True), key)
    removed = m.edit(
        signed, lambda w: m.remove_annotations(w, m.is_field(m.FIELD_NAME), from_fields=False)
    )
    assert_refused(verifier, removed)


# --- d. structure tree and outline ---------------------------------------------------------------


def test_tagged_comment_added(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(tagged=True), key)
    assert_accepted(verifier, m.edit(signed, lambda w: m.add_comment(w, tag=True)), ANNOT)


def test_tagged_comment_removed(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(tagged=True, comment=True), key)
    assert_accepted(verifier, m.edit(signed, m.remove_comment), ANNOT)


def test_tagged_signature_field_under_form_filling_certification(
    verifier: Verifier, key: LoadedKey
) -> None:
    """Adding a signature field to a tagged P=2 document tags its widget; that is part of
    form filling and signing, which P=2 permits."""
    certified = sign(m.base_pdf(tagged=True), key, certify=MDPPerm.FILL_FORMS)
    with_field = m.edit(certified, lambda w: m.add_signature_field(w, tag=True, visible=False))
    assert_accepted(verifier, with_field, FILL)
    assert_accepted(verifier, sign(with_field, key, field_name="Signature2"), FILL)


def test_tagged_comment_under_form_filling_certification_fails(
    verifier: Verifier, key: LoadedKey
) -> None:
    certified = sign(m.base_pdf(tagged=True), key, certify=MDPPerm.FILL_FORMS)
    changed = m.edit(certified, lambda w: m.add_comment(w, tag=True))
    assert_refused(verifier, changed, "DOCMDP_VIOLATION")


def test_structure_element_claiming_page_content_fails(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(tagged=True), key)
    assert_refused(verifier, m.edit(signed, m.reparent_page_text))


def test_actual_text_of_signed_element_changed_fails(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(tagged=True), key)
    assert_refused(verifier, m.edit(signed, m.change_actual_text))


def test_tagging_an_existing_annotation_fails(verifier: Verifier, key: LoadedKey) -> None:
    """An added element may only tag annotations added with it."""
    signed = sign(m.base_pdf(tagged=True, text_field=True), key)

    def tag_signed_widget(writer: Any) -> None:
        page_ref, page = m.first_page(writer)
        m.tag_annotation(writer, page["/Annots"].raw_get(0), page_ref, "/Form")

    assert_refused(verifier, m.edit(signed, tag_signed_widget))


def test_bookmark_added_after_approval(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(), key)
    assert_accepted(verifier, m.edit(signed, m.add_outline), ANNOT)


def test_bookmarks_added_and_renamed(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(outline=True), key)
    assert_accepted(verifier, m.edit(signed, m.add_outline), ANNOT)
    renamed = m.edit(signed, lambda w: m.rename_first_bookmark(w, "Quyet dinh (ban chinh)"))
    assert_accepted(verifier, renamed, ANNOT)


def test_bookmark_under_form_filling_certification_fails(
    verifier: Verifier, key: LoadedKey
) -> None:
    certified = sign(m.base_pdf(), key, certify=MDPPerm.FILL_FORMS)
    assert_refused(verifier, m.edit(certified, m.add_outline), "DOCMDP_VIOLATION")


@pytest.mark.parametrize("action", ["/JavaScript", "/URI", "/Launch"])
def test_bookmark_with_an_action_fails(verifier: Verifier, key: LoadedKey, action: str) -> None:
    signed = sign(m.base_pdf(outline=True), key)
    act = generic.DictionaryObject({generic.NameObject("/S"): generic.NameObject(action)})
    act[generic.NameObject("/JS" if action == "/JavaScript" else "/URI")] = (
        generic.TextStringObject("app.launchURL('http://example.invalid')")
    )
    assert_refused(verifier, m.edit(signed, lambda w: m.add_outline(w, act)))


# --- the "replace" shadow attack, and form filling -----------------------------------------------


@pytest.mark.parametrize("in_place", [False, True], ids=["new-stream", "stream-rewritten"])
def test_form_filling_stays_allowed(verifier: Verifier, key: LoadedKey, in_place: bool) -> None:
    signed = sign(m.base_pdf(text_field=True), key)
    filled = m.edit(signed, lambda w: m.fill_text_field(w, "2.000.000 VND", in_place=in_place))
    assert_accepted(verifier, filled, FILL)


def test_form_filling_under_form_filling_certification(verifier: Verifier, key: LoadedKey) -> None:
    certified = sign(m.base_pdf(text_field=True), key, certify=MDPPerm.FILL_FORMS)
    filled = m.edit(certified, lambda w: m.fill_text_field(w, "2.000.000 VND"))
    assert_accepted(verifier, filled, FILL)


def test_new_font_in_form_resources_is_allowed(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(text_field=True), key)
    assert_accepted(verifier, m.edit(signed, m.add_form_font), FILL)


REPLACE_ATTACKS = {
    "appearance-new-stream": lambda w: m.replace_field_appearance(w),
    "appearance-stream-rewritten": lambda w: m.replace_field_appearance(w, in_place=True),
    "form-font-replaced": m.replace_form_font,
    "need-appearances-on": m.set_need_appearances,
    "field-hidden": m.hide_field,
}


@pytest.mark.parametrize("attack", list(REPLACE_ATTACKS), ids=list(REPLACE_ATTACKS))
@pytest.mark.parametrize("certify", [None, MDPPerm.FILL_FORMS], ids=["approval", "certified-P2"])
def test_replace_shadow_attack_fails(
    verifier: Verifier, key: LoadedKey, attack: str, certify: MDPPerm | None
) -> None:
    """The value stays "1.000.000 VND" as signed; what viewers show does not."""
    signed = sign(m.base_pdf(text_field=True), key, certify=certify)
    attacked = m.edit(signed, REPLACE_ATTACKS[attack])
    assert_refused(verifier, attacked)


def test_replace_after_a_legitimate_fill_fails(verifier: Verifier, key: LoadedKey) -> None:
    """Each revision is judged on its own: a fill, then an appearance swap without a value."""
    signed = sign(m.base_pdf(text_field=True), key)
    filled = m.edit(signed, lambda w: m.fill_text_field(w, "2.000.000 VND"))
    assert_refused(verifier, m.edit(filled, lambda w: m.replace_field_appearance(w)))


# --- validation data (DSS) updates ---------------------------------------------------------------


@pytest.fixture(scope="module")
def with_validation_data(key: LoadedKey) -> bytes:
    """Two signatures, then pyHanko's LT update for each (certificates, VRI entries)."""
    twice = sign(sign(m.base_pdf(), key), key, field_name="Signature2")
    return m.add_validation_data(twice, [key.signing_cert.dump(), key.chain[0].dump()])


@pytest.mark.parametrize("keep_vri", [True, False], ids=["vri-rewritten", "vri-dropped"])
def test_validation_data_restructured_like_eu_dss(
    verifier: Verifier, key: LoadedKey, with_validation_data: bytes, keep_vri: bool
) -> None:
    """EU DSS's LT extension: a new /DSS, arrays re-created, VRI entries rewritten (or gone)."""
    extended = m.rewrite_dss_like_eu_dss(
        with_validation_data, [c.dump() for c in key.chain], keep_vri=keep_vri
    )
    assert_accepted(verifier, extended, FILL)  # FORM_FILLING: the second signature
    assert last_revision_level(extended) == LTA


def test_validation_data_lost_fails(
    verifier: Verifier, key: LoadedKey, with_validation_data: bytes
) -> None:
    extended = m.rewrite_dss_like_eu_dss(
        with_validation_data, [c.dump() for c in key.chain], drop_first_cert=True
    )
    assert_refused(verifier, extended)


def test_validation_data_rewritten_in_place_fails(
    verifier: Verifier, key: LoadedKey, with_validation_data: bytes
) -> None:
    changed = m.rewrite_validation_stream_in_place(with_validation_data, key.chain[-1].dump())
    assert_refused(verifier, changed)


def test_unexpected_entry_in_validation_data_fails(
    verifier: Verifier, with_validation_data: bytes
) -> None:
    changed = m.add_dss_entry(with_validation_data, "/JS", generic.TextStringObject("app.alert(1)"))
    assert_refused(verifier, changed)


DSS_HARNESS = CORPUS.parent / "tools" / "dss-validate"


def _build_dss_extender(workdir: Path) -> Path:
    """Compile tests/support/dss_extend/Extend.java into a copy of the EU DSS harness."""
    if not DSS_HARNESS.exists():
        pytest.skip(f"{DSS_HARNESS} is absent (a user's clone has no ../shared)")
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("Java and Maven are needed to run EU DSS (apt-get install maven)")
    project = workdir / "dss-validate"
    shutil.copytree(DSS_HARNESS, project)
    for path in project.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    target = project / "src/main/java/vn/signing/dss/Extend.java"
    shutil.copy(Path(__file__).parent / "support/dss_extend/Extend.java", target)
    for offline in (["-o"], []):  # the local Maven repository first, then Maven Central
        built = subprocess.run(
            ["mvn", "-q", "-B", *offline, "package"],
            cwd=project,
            capture_output=True,
            timeout=600,
        )
        if built.returncode == 0:
            return project / "target" / "dss-validate.jar"
    pytest.skip(f"the EU DSS harness did not build: {built.stdout.decode()[-500:]}")


def test_multi_signature_document_written_by_eu_dss(
    verifier: Verifier, dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    """Three signatures made and extended to B-LTA by EU DSS 6.4 with VRI entries: DSS rewrites
    the /DSS of the whole document each time. pyHanko's default rule refuses that and fails
    every earlier signature; ours accepts it."""
    pki, _ = dev_pki
    jar = _build_dss_extender(tmp_path)
    base = tmp_path / "base.pdf"
    base.write_bytes(m.base_pdf())
    run = subprocess.run(
        [
            "java",
            "-Dorg.slf4j.simpleLogger.defaultLogLevel=error",
            "-cp",
            str(jar),
            "vn.signing.dss.Extend",
            str(base),
            str(tmp_path / "out"),
            str(pki.p12_path("agency-a-seal")),
            DEV_KEY_PASSPHRASE,
            str(pki.root_cert_path),
            pki.tsa_url,
            "3",
            "LTA",
            "true",
        ],
        capture_output=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr.decode()[-2000:]
    data = Path(run.stdout.decode().split()[-1]).read_bytes()
    reader = PdfFileReader(BytesIO(data), strict=False)
    first = min(s.signed_revision for s in reader.embedded_signatures)
    refused = 0
    for revision in range(first + 1, reader.xrefs.total_revisions):
        try:
            DEFAULT_DIFF_POLICY.apply(
                reader.get_historical_resolver(revision - 1),
                reader.get_historical_resolver(revision),
            )
        except SuspiciousModification:
            refused += 1
    assert refused, "pyHanko's default policy accepts this file: the test no longer tests"
    report = report_of(verifier, data)
    assert len(report["signatures"]) >= 3
    for sig in report["signatures"]:
        assert sig["checks"]["modifications"]["status"] == "PASSED", sig
    level, _ = per_revision(data)
    assert level == FILL


# --- page parts disguised as comments ------------------------------------------------------------


def _disguised_as_comment(where: str) -> bytes:
    """The base document with a page part carrying a markup ``/Subtype /Text`` (viewers ignore
    it there: a content stream or a resource dictionary is no annotation), prepared before
    signing so that a later rewrite could pass as "a comment edited"."""
    pdf = pikepdf.open(BytesIO(m.base_pdf()))
    page = pdf.pages[0].obj
    if where == "content":
        page.Contents.Subtype = pikepdf.Name.Text
    else:
        page.Resources = pdf.make_indirect(
            pikepdf.Dictionary(Subtype=pikepdf.Name.Text, Font=page.Resources.Font)
        )
    out = BytesIO()
    pdf.save(out)
    return out.getvalue()


def test_content_stream_disguised_as_comment_rewritten_fails(
    verifier: Verifier, key: LoadedKey
) -> None:
    """The signed page text is replaced by a stream that still says /Subtype /Text."""
    signed = sign(_disguised_as_comment("content"), key)
    number = m.object_number(
        signed, lambda o: isinstance(o, generic.StreamObject) and o.get("/Subtype") == "/Text"
    )
    text = b"BT /F1 14 Tf 72 760 Td (Quyet dinh so 999/QD-UBND: CHAP THUAN) Tj ET"
    body = b"<< /Length %d /Subtype /Text >>\nstream\n%s\nendstream" % (len(text), text)
    assert_refused(verifier, m.append_raw_update(signed, {number: body}))


def test_resources_disguised_as_comment_rewritten_fails(verifier: Verifier, key: LoadedKey) -> None:
    """The page's font is swapped through a resource dictionary that says /Subtype /Text."""
    signed = sign(_disguised_as_comment("resources"), key)
    number = m.object_number(
        signed,
        lambda o: (
            isinstance(o, generic.DictionaryObject)
            and not isinstance(o, generic.StreamObject)
            and o.get("/Subtype") == "/Text"
            and "/Font" in o
        ),
    )
    symbol = b"<< /Type /Font /Subtype /Type1 /BaseFont /Symbol >>"
    body = b"<< /Subtype /Text /Font << /F1 " + symbol + b" >> >>"
    assert_refused(verifier, m.append_raw_update(signed, {number: body}))


# --- what a reader must be told even when the changes are allowed -------------------------------


def warning_codes(verifier: Verifier, data: bytes) -> list[str]:
    report = report_of(verifier, data)
    assert report["verdict"] == "TOTAL_PASSED", report
    return [w["code"] for w in report["warnings"]]


def test_unsigned_visible_signature_field_added_after_signing_is_named(
    verifier: Verifier, key: LoadedKey
) -> None:
    """An empty signature field is allowed after an approval signature, but its widget shows
    whatever its author drew: named, so that a reader does not take it for a signature."""
    signed = sign(m.base_pdf(), key)
    added = m.edit(signed, lambda w: m.add_signature_field(w, "ChuKyGia"))
    assert "UNSIGNED_FIELD_ADDED_AFTER_SIGNING" in warning_codes(verifier, added)
    hidden = m.edit(signed, lambda w: m.add_signature_field(w, "ChuKyAn", visible=False))
    assert "UNSIGNED_FIELD_ADDED_AFTER_SIGNING" not in warning_codes(verifier, hidden)


def test_field_added_then_signed_is_no_warning(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(), key)
    added = m.edit(signed, lambda w: m.add_signature_field(w, "Signature2"))
    twice = sign(added, key, field_name="Signature2")
    assert "UNSIGNED_FIELD_ADDED_AFTER_SIGNING" not in warning_codes(verifier, twice)


def test_comment_edited_after_signing_is_named(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(comment=True), key)
    edited = m.edit(signed, lambda w: m.edit_comment(w, "Đã duyệt 9.000.000 VND"))
    assert "ANNOTATION_CHANGED_AFTER_SIGNING" in warning_codes(verifier, edited)


def test_comment_removed_after_signing_is_named(verifier: Verifier, key: LoadedKey) -> None:
    signed = sign(m.base_pdf(comment=True), key)
    removed = m.edit(signed, m.remove_comment)
    assert "ANNOTATION_REMOVED_AFTER_SIGNING" in warning_codes(verifier, removed)


@pytest.mark.slow
def test_annotations_past_the_reviewed_pages_are_said_to_be_unreviewed(
    verifier: Verifier, key: LoadedKey
) -> None:
    """Warnings look at the first 2,000 pages; a comment on page 2,001 is allowed (the
    modification check still judges every page), and the report says what was not reviewed."""
    pdf = pikepdf.open(BytesIO(m.base_pdf()))
    for _ in range(2_000):
        pdf.pages.append(pdf.pages[0])
    out = BytesIO()
    pdf.save(out)
    signed = sign(out.getvalue(), key)

    def comment_on_last_page(writer: Any) -> None:
        pages = writer.root["/Pages"]["/Kids"]
        page_ref = pages.raw_get(len(pages) - 1)
        page = page_ref.get_object()
        note = writer.add_object(
            generic.DictionaryObject(
                {
                    generic.NameObject("/Type"): generic.NameObject("/Annot"),
                    generic.NameObject("/Subtype"): generic.NameObject("/Text"),
                    generic.NameObject("/Rect"): generic.ArrayObject(
                        [generic.NumberObject(v) for v in (72, 700, 92, 720)]
                    ),
                    generic.NameObject("/Contents"): generic.TextStringObject("Ghi chú"),
                }
            )
        )
        page[generic.NameObject("/Annots")] = generic.ArrayObject([note])
        writer.update_container(page)

    codes = warning_codes(verifier, m.edit(signed, comment_on_last_page))
    assert "ANNOTATIONS_NOT_REVIEWED" in codes


def _with_content_length(pdf: bytes, change: int | None) -> bytes:
    """``pdf`` with its first stream's ``/Length`` off by ``change`` bytes (``None``: 0),
    the file otherwise byte for byte the same (the number keeps its width)."""
    import re

    found = re.search(rb"/Length (\d+)", pdf)
    assert found
    value = 0 if change is None else int(found.group(1)) + change
    digits = str(value).encode().rjust(len(found.group(1)))
    assert len(digits) == len(found.group(1))
    return pdf[: found.start(1)] + digits + pdf[found.end(1) :]


@pytest.mark.parametrize("change", [-5, 1, 40, None], ids=["short", "one-long", "long", "zero"])
def test_a_wrong_stream_length_is_not_a_modification(
    verifier: Verifier, key: LoadedKey, change: int | None
) -> None:
    """Writers often get ``/Length`` wrong; viewers read to ``endstream``. pyHanko tolerated
    only one byte too many, so once a second signature was added the first one was reported
    modified after signing (the earlier revision could not be read)."""
    from tests.support.pdfs import make_pdf

    original = _with_content_length(make_pdf(padding_bytes=200), change)
    twice = sign(sign(original, key, field_name="Sig1"), key, field_name="Sig2")
    report = report_of(verifier, twice)
    assert [s["checks"]["modifications"]["status"] for s in report["signatures"]] == [
        "PASSED",
        "PASSED",
    ], report
    assert report["verdict"] == "TOTAL_PASSED", report


def test_a_stream_without_an_end_is_still_unreadable(verifier: Verifier, key: LoadedKey) -> None:
    """Recovery looks for ``endstream``; without one the revision stays unreadable (refused,
    not a crash, not accepted)."""
    from tests.support.pdfs import make_pdf

    broken = _with_content_length(make_pdf(), -5).replace(b"endstream", b"endstrXam", 1)
    twice = sign(sign(broken, key, field_name="Sig1"), key, field_name="Sig2")
    report = report_of(verifier, twice)
    assert report["signatures"][0]["checks"]["modifications"]["status"] != "PASSED", report


# --- encrypted documents -------------------------------------------------------------------------


def _owner_encrypted(data: bytes) -> bytes:
    import pikepdf

    out = BytesIO()
    pikepdf.open(BytesIO(data)).save(
        out, encryption=pikepdf.Encryption(user="", owner="chu-so-huu")
    )
    return out.getvalue()


ENCRYPTED_CASES: dict[str, Any] = {
    "second signature": lambda signed, key: sign(signed, key, field_name="Signature2"),
    "second visible signature": lambda signed, key: sign(
        signed, key, field_name="Signature2", visible=True
    ),
    "comment added": lambda signed, key: m.edit(signed, m.add_comment),
    "bookmark added": lambda signed, key: m.edit(signed, lambda w: m.add_outline(w)),
    "page rotated": lambda signed, key: m.edit(
        signed, set_page_entries(Rotate=generic.NumberObject(90))
    ),
    "tab order and rotation": lambda signed, key: m.edit(
        signed,
        set_page_entries(Tabs=generic.NameObject("/S"), Rotate=generic.NumberObject(90)),
    ),
}


@pytest.mark.parametrize("case", list(ENCRYPTED_CASES))
def test_encrypted_documents_are_judged_as_plain_ones(
    verifier: Verifier, key: LoadedKey, case: str
) -> None:
    """The same change after the same signature gets the same judgement whether the document
    is encrypted (owner password only) or not. In an encrypted document pyHanko hands out
    nested values as ``DecryptedObjectProxy``; read as they came, equal values looked changed
    and a second signature was judged an unpermitted modification of the first."""
    change = ENCRYPTED_CASES[case]
    outcomes = []
    for encrypt in (False, True):
        base = m.base_pdf()
        if encrypt:
            base = _owner_encrypted(base)
        changed = change(sign(base, key), key)
        report = report_of(verifier, changed)
        first = report["signatures"][0]["checks"]["modifications"]
        try:
            level: Any = per_revision(changed)[0]
        except SuspiciousModification:
            level = "suspicious"
        outcomes.append((first["status"], first.get("code"), level))
    assert outcomes[1] == outcomes[0], outcomes


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
def test_signature_added_under_no_changes_certification_fails_even_encrypted(
    verifier: Verifier, key: LoadedKey, encrypt: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An attacker's tool adds a signature to a document certified with DocMDP P=1 (pyHanko's
    signer refuses to; the attacker's does not). Encrypted, the new signature's value
    dictionary was reached only through pyHanko's decrypting proxies, was taken for an
    orphan, and the change passed as an LTA update that P=1 allows."""
    from pyhanko.sign.signers import pdf_signer

    base = m.base_pdf()
    if encrypt:
        base = _owner_encrypted(base)
    certified = sign(base, key, certify=MDPPerm.NO_CHANGES)
    monkeypatch.setattr(
        pdf_signer.PdfSigner, "_enforce_certification_constraints", lambda self, reader: None
    )
    attacked = sign(certified, key, field_name="Signature2")
    assert_refused(verifier, attacked, "DOCMDP_VIOLATION")


# --- references filled after signing (red team 16, F9) -----------------------------------------

DANGLING = 500  # past the /Size of every revision the tests sign


def _prepare_dangling(where: str) -> Any:
    """Before signing: page 1 refers to object DANGLING, which does not exist (a shadow
    attacker's preparation): in /Annots, or as a second /Contents stream."""

    def change(writer: Any) -> None:
        _, page = m.first_page(writer)
        ghost = generic.IndirectObject(DANGLING, 0, writer)
        if where == "annots":
            kept = list(page["/Annots"]) if "/Annots" in page else []
            page[generic.NameObject("/Annots")] = generic.ArrayObject([*kept, ghost])
        else:
            contents = page.raw_get("/Contents")
            first = list(contents) if isinstance(contents, generic.ArrayObject) else [contents]
            page[generic.NameObject("/Contents")] = generic.ArrayObject([*first, ghost])
        writer.update_container(page)

    return change


def _fill_dangling(where: str) -> Any:
    """After signing: an update that only defines object DANGLING (an overlay annotation or a
    content stream drawing new text) and writes nothing else."""

    def change(writer: Any) -> None:
        if where == "annots":
            obj: generic.PdfObject = generic.DictionaryObject(
                {
                    generic.NameObject("/Type"): generic.NameObject("/Annot"),
                    generic.NameObject("/Subtype"): generic.NameObject("/FreeText"),
                    generic.NameObject("/Rect"): generic.ArrayObject(
                        [generic.NumberObject(v) for v in (50, 700, 500, 760)]
                    ),
                    generic.NameObject("/Contents"): generic.TextStringObject("DA DUYET"),
                    generic.NameObject("/DA"): generic.TextStringObject("/Helv 24 Tf 0 g"),
                }
            )
        else:
            obj = generic.StreamObject(stream_data=b"BT /F1 24 Tf 50 700 Td (DA DUYET) Tj ET")
        writer._lastobj_id = DANGLING - 1  # the writer's next number: the dangling one
        assert writer.add_object(obj).idnum == DANGLING

    return change


@pytest.mark.parametrize("certify", [None, MDPPerm.NO_CHANGES], ids=["signed", "certified-P1"])
@pytest.mark.parametrize("where", ["annots", "contents"])
def test_a_reference_filled_after_signing_is_not_an_lta_update(
    verifier: Verifier, key: LoadedKey, where: str, certify: MDPPerm | None
) -> None:
    """pyHanko's orphan search assumes no revision refers to an object a later one defines,
    and approved the filling update as LTA data: an overlay or new page content after signing
    read TOTAL_PASSED, even under a P=1 certification. The same document without the filling
    update passes, so the refusal is the update's."""
    prepared = m.edit(m.base_pdf(), _prepare_dangling(where))
    signed = sign(prepared, key, **({"certify": certify} if certify else {}))
    assert (
        report_of(verifier, signed)["signatures"][0]["checks"]["modifications"]["status"]
        == "PASSED"
    )
    filled = m.edit(signed, _fill_dangling(where))
    assert_refused(verifier, filled, "DISALLOWED_CHANGES")


def test_the_time_budget_running_out_in_the_comparison_is_named(
    verifier: Verifier, key: LoadedKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Red team 16, F3: the time budget expiring between two revision comparisons was reported
    as DISALLOWED_CHANGES for a genuine document, without naming the bound. Now the document's
    problem is TIME_BUDGET_EXCEEDED (the comparisons' clock is moved past the deadline)."""
    from types import SimpleNamespace

    from signing_service.verification import modifications

    commented = m.edit(sign(m.base_pdf(), key), m.add_comment)
    monkeypatch.setattr(modifications, "time", SimpleNamespace(monotonic=lambda: 1e15))
    report = report_of(verifier, commented)
    codes = [p["code"] for p in report["problems"]]
    assert report["verdict"] == "TOTAL_FAILED", report
    assert "TIME_BUDGET_EXCEEDED" in codes, report
    for sig in report["signatures"]:
        assert sig["checks"]["modifications"]["code"] != "DISALLOWED_CHANGES", sig


def test_a_reference_no_revision_defines_is_null_not_a_failure(
    verifier: Verifier, key: LoadedKey
) -> None:
    """Red team 16, F7: a signed revision holding a reference to an object that no revision
    defines (LibreOffice writes such; ISO 32000-1 §7.3.10: it is null) made pyHanko's orphan
    search raise KeyError at every later update of that page, so a genuine document plus one
    reader's comment read TOTAL_FAILED. Now the comment is judged as on any document."""
    prepared = m.edit(m.base_pdf(), _prepare_dangling("annots"))
    commented = m.edit(sign(prepared, key), m.add_comment)
    assert_accepted(verifier, commented, ModificationLevel.ANNOTATIONS)


# --- Incremental Saving Attack past the byte scan (red team 16 F6) ------------------------------
# Every lexical spelling of an object header a PDF lexer accepts (ISO 32000-1 §7.2: a comment
# is white space; integers may carry leading zeros); the red team's files used the second and
# fourth: TOTAL_PASSED while poppler and qpdf drew the appended page.
HEADERS: dict[str, Callable[[int], bytes]] = {
    "plain": lambda n: b"%d 0 obj\n" % n,
    "comment right after obj": lambda n: b"%d 0 obj%%x\n" % n,
    "comment between the tokens": lambda n: b"%d 0 %%x\nobj\n" % n,
    "long comment between the tokens": lambda n: b"%d %%%s\n0 obj\n" % (n, b"x" * 3000),
    "leading zeros": lambda n: b"%011d 0 obj\n" % n,
    "5000 leading zeros": lambda n: b"0" * 5000 + b"%d 0 obj\n" % n,
    "no white space before obj": lambda n: b"%d 0obj\n" % n,
}
FORGED_TEXT = b"BT /F1 14 Tf 72 760 Td (SO TIEN: 999.999.999 VND) Tj ET"
FORGED_CONTENT = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(FORGED_TEXT), FORGED_TEXT)


@pytest.fixture(scope="module")
def signed_plain(key: LoadedKey) -> bytes:
    return sign(m.base_pdf(), key)


def _page_content_number(data: bytes) -> int:
    reader = PdfFileReader(BytesIO(data), strict=False)
    contents = reader.root["/Pages"]["/Kids"][0].raw_get("/Contents")
    assert isinstance(contents, generic.IndirectObject)
    return int(contents.idnum)


def modification_check(verifier: Verifier, data: bytes) -> dict[str, Any]:
    report = report_of(verifier, data)
    assert report["signatures"], report
    if report["signatures"][0]["checks"]["modifications"]["status"] == "FAILED":
        assert report["verdict"] == "TOTAL_FAILED", report
    return report["signatures"][0]["checks"]["modifications"]  # type: ignore[no-any-return]


@pytest.mark.parametrize("shift", [0, 3, -2], ids=["exact startxref", "startxref+3", "startxref-2"])
@pytest.mark.parametrize("spelling", list(HEADERS))
def test_page_content_behind_an_empty_xref_fails_whatever_its_spelling(
    verifier: Verifier, signed_plain: bytes, spelling: str, shift: int
) -> None:
    """The page's content stream redefined after signing, listed in no xref section: a
    repairing viewer takes it (with a startxref a few bytes off, poppler and qpdf do), pyHanko
    never sees it. The byte scan must recognise every spelling of its header."""
    number = _page_content_number(signed_plain)
    data = m.append_shifted_update(
        signed_plain, {number: FORGED_CONTENT}, header=HEADERS[spelling], startxref_shift=shift
    )
    found = modification_check(verifier, data)
    assert (found["status"], found["code"]) == ("FAILED", "UNREFERENCED_OBJECTS"), found


@pytest.mark.parametrize("shift", [0, 3])
def test_object_listed_under_another_number_fails(
    verifier: Verifier, signed_plain: bytes, shift: int
) -> None:
    """Red team 16 c9-mislabel: the forged content stream is declared, but the entry that
    points at its header is another (unused) number's; pyHanko accepts the mismatch and sees
    an unreferenced new object, viewers rebuilding the table see the page's content."""
    number = _page_content_number(signed_plain)
    decoy = int(PdfFileReader(BytesIO(signed_plain), strict=False).trailer["/Size"]) + 5
    data = m.append_shifted_update(
        signed_plain, {number: FORGED_CONTENT}, listed={number: decoy}, startxref_shift=shift
    )
    found = modification_check(verifier, data)
    assert (found["status"], found["code"]) == ("FAILED", "UNREFERENCED_OBJECTS"), found


@pytest.mark.parametrize("startxref_shift", [3, -2, 1], ids=["+3", "-2", "+1"])
def test_cross_reference_data_a_viewer_would_rebuild_fails(
    verifier: Verifier, signed_plain: bytes, startxref_shift: int
) -> None:
    """An update whose own objects are all declared, but whose startxref misses its section by
    a few bytes: pyHanko reads around it, poppler and qpdf rebuild the table from the objects
    in the file. The bytes judged are then not the objects drawn: XREF_DAMAGED (the same
    update with an exact startxref is an allowed one). (A /Prev off by a few bytes already
    fails as NONSTANDARD_COVERAGE: the signed revision no longer ends where its bytes do.)"""
    size = int(PdfFileReader(BytesIO(signed_plain), strict=False).trailer["/Size"])
    objects = {size: b"<< /Producer (viewer) >>"}
    exact = m.append_shifted_update(signed_plain, objects, listed={size: size})
    assert modification_check(verifier, exact)["status"] == "PASSED"
    data = m.append_shifted_update(
        signed_plain,
        objects,
        listed={size: size},
        startxref_shift=startxref_shift,
    )
    found = modification_check(verifier, data)
    assert (found["status"], found["code"]) == ("FAILED", "XREF_DAMAGED"), found


def test_damaged_xref_inside_the_signed_revision_is_a_warning(
    verifier: Verifier, key: LoadedKey
) -> None:
    """A writer's wrong entry (the corpus's rub-shadow *-signed.pdf list an object at another
    object's header) signed as it is: the signature covers it and keeps its verdict, and the
    reader is told."""
    base = m.base_pdf()
    size = int(PdfFileReader(BytesIO(base), strict=False).trailer["/Size"])
    damaged = m.append_shifted_update(base, {size: b"<< /Unused true >>"}, listed={size: size + 3})
    report = report_of(verifier, sign(damaged, key))
    assert report["verdict"] == "TOTAL_PASSED", report
    assert "XREF_DAMAGED_IN_SIGNED_REVISION" in [w["code"] for w in report["warnings"]]


def test_the_header_scan_is_linear_on_hostile_updates(
    verifier: Verifier, signed_plain: bytes
) -> None:
    """4 MB after the signature of what makes a header scan quadratic: digits each followed by
    a comment running to the end of one long line, and long digit runs. One pass."""
    size = int(PdfFileReader(BytesIO(signed_plain), strict=False).trailer["/Size"])
    flood = b"1 %" * 700_000 + b"\n" + b"7" * 1_000_000 + b" " + b"1 2 " * 300_000
    body = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(flood), flood)
    data = m.append_shifted_update(signed_plain, {size: body}, listed={size: size})
    started = time.monotonic()
    found = modification_check(verifier, data)
    assert time.monotonic() - started < 20, "quadratic scan"
    assert found["status"] == "PASSED", found
