"""The PDFs people have (issue 10, "What to build" 3 and 4): certified documents, damaged
documents that viewers repair, form fields whose names collide, signed documents that must not
be rewritten. Each input is built here; the field inputs of ../shared are used when present.

Signing goes through the API (real dev PKI, SQLite or PostgreSQL, object store) and every
signed result is verified by our own verifier through the API.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.fields import MDPPerm, SigFieldSpec
from pyhanko.sign.signers import cms_embedder
from sqlalchemy import select

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing import inputs, repair
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.store.models import AuditEntry
from tests.support.damaged import DAMAGES, shadowed
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

VIETNAMESE_LETTERS = "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"
FIELD_INPUTS = Path(__file__).resolve().parent.parent.parent / "shared" / "field-inputs"


def auth(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def sign(api: Any, credentials: dict[str, Any], data: bytes, **form: str) -> Any:
    return api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", **form},
        files={"file": ("van-ban.pdf", data, "application/pdf")},
    )


def verify(api: Any, data: bytes) -> dict[str, Any]:
    response = api.post("/v1/verifications", files={"file": ("x.pdf", data, "application/pdf")})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def download(api: Any, credentials: dict[str, Any], body: dict[str, Any]) -> bytes:
    response = api.get(body["document"]["download_url"], headers=auth(credentials))
    assert response.status_code == 200
    return response.content  # type: ignore[no-any-return]


def field_input(name: str) -> bytes:
    path = FIELD_INPUTS / name
    if not path.is_file():
        pytest.skip(f"{path} is absent (the shared field inputs are not beside the repository)")
    return path.read_bytes()


def signed_entries(services: Services) -> int:
    with services.db.transaction() as session:
        return len(
            session.scalars(
                select(AuditEntry.seq).where(AuditEntry.action == "signature.created")
            ).all()
        )


def assert_refused(
    api: Any, services: Services, credentials: dict[str, Any], data: bytes, code: str
) -> None:
    """422 with ``code`` and a Vietnamese message; no document, object or "signed" entry."""
    before, entries = snapshot(services), signed_entries(services)
    response = sign(api, credentials, data)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["code"] == code, body
    assert any(ch in body["message"] for ch in VIETNAMESE_LETTERS), body
    assert_nothing_written(before, services)
    assert signed_entries(services) == entries


# --- inputs built here ----------------------------------------------------------------------


def with_text_field(name: str, *, nested_under: str | None = None) -> bytes:
    """A one-page PDF with a text field called ``name`` (optionally a kid of a parent field,
    whose fully qualified name is then ``parent.name``)."""
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    page = pdf.pages[0]
    widget = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Annot,
            Subtype=pikepdf.Name.Widget,
            FT=pikepdf.Name.Tx,
            T=pikepdf.String(name),
            V=pikepdf.String("Nguyen Van A"),
            Rect=[72, 600, 272, 620],
            P=page.obj,
        )
    )
    page.obj.Annots = pdf.make_indirect(pikepdf.Array([widget]))
    top = widget
    if nested_under is not None:
        top = pdf.make_indirect(
            pikepdf.Dictionary(T=pikepdf.String(nested_under), Kids=pikepdf.Array([widget]))
        )
        widget.Parent = top
    pdf.Root.AcroForm = pdf.make_indirect(pikepdf.Dictionary(Fields=pikepdf.Array([top])))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def owner_encrypted(data: bytes) -> bytes:
    """``data`` encrypted with an owner password only: every viewer opens it, and the
    service signs it (its objects come through pyHanko's decrypting proxies)."""
    out = io.BytesIO()
    pikepdf.open(io.BytesIO(data)).save(
        out, encryption=pikepdf.Encryption(user="", owner="chu-so-huu")
    )
    return out.getvalue()


def _writer(data: bytes) -> IncrementalPdfFileWriter:
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    if writer.prev.encrypted:
        writer.encrypt("")
    return writer


@contextlib.contextmanager
def _certification_shape(*, perms: bool, second_reference: int | None) -> Iterator[None]:
    """pyHanko's (a third-party library's) certification writer altered while it writes one
    document: ``perms=False`` leaves out the catalog's /Perms (the certification is then
    declared only in the signature's /Reference: red team 17b R17B-2); ``second_reference``
    appends a second DocMDP reference with that P after pyHanko's (R17B-6)."""
    original = cms_embedder.SigMDPSetup.apply

    def apply(self: Any, sig_obj_ref: Any, writer: Any) -> None:
        original(self, sig_obj_ref, writer)
        if second_reference is not None:
            ref = cms_embedder.docmdp_reference_dictionary(MDPPerm.ANNOTATE)
            ref["/TransformParams"]["/P"] = generic.NumberObject(second_reference)
            sig_obj_ref.get_object()["/Reference"].append(ref)
        if not perms:
            del writer.root["/Perms"]
            writer.update_root()

    cms_embedder.SigMDPSetup.apply = apply  # type: ignore[method-assign]
    try:
        yield
    finally:
        cms_embedder.SigMDPSetup.apply = original  # type: ignore[method-assign]


def certified(
    pki: DevPki,
    permission: MDPPerm,
    *,
    empty_field: str | None = None,
    encrypted: bool = False,
    perms: bool = True,
    second_reference: int | None = None,
) -> bytes:
    """A PDF certified (DocMDP ``permission``) with a dev key by pyHanko; with
    ``empty_field``, a prepared empty signature field is added before the certification;
    ``encrypted``: the document is encrypted (owner password only) first; ``perms``,
    ``second_reference``: the certification's shape (:func:`_certification_shape`)."""
    data = make_pdf(text="Quyet dinh da chung thuc")
    if encrypted:
        data = owner_encrypted(data)
    if empty_field is not None:
        writer = _writer(data)
        fields.append_signature_field(
            writer, SigFieldSpec(sig_field_name=empty_field, on_page=0, box=(330, 80, 550, 160))
        )
        buffer = io.BytesIO()
        writer.write(buffer)
        data = buffer.getvalue()
    key = load_pkcs12_file(pki.p12_path("agency-b-seal"), DEV_KEY_PASSPHRASE.encode())
    meta = signers.PdfSignatureMetadata(
        field_name="ChungThuc",
        certify=True,
        docmdp_permissions=permission,
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    with _certification_shape(perms=perms, second_reference=second_reference):
        out = asyncio.run(signers.PdfSigner(meta, signer=key.signer).async_sign_pdf(_writer(data)))
    return out.getvalue()  # type: ignore[no-any-return]


def signed_fields(data: bytes) -> dict[str, bool]:
    """Signature field name → filled, as pyHanko reads the document."""
    reader = PdfFileReader(io.BytesIO(data))
    if reader.encrypted:
        reader.decrypt("")
    return {name: value is not None for name, value, _ in fields.enumerate_sig_fields(reader)}


def certification_intact(report: dict[str, Any]) -> None:
    assert report["verdict"] == "TOTAL_PASSED", report
    kinds = [s["type"] for s in report["signatures"]]
    assert kinds.count("certification") == 1 and kinds.count("signature") == 1, kinds


# --- form fields whose names collide --------------------------------------------------------


def test_new_field_name_is_unique_among_all_fields() -> None:
    for data, taken in (
        (with_text_field("Signature1"), {"Signature1"}),
        (with_text_field("Signature1", nested_under="Signature2"), {"Signature2"}),
    ):
        reader = PdfFileReader(io.BytesIO(data))
        names = inputs.field_names(reader)
        assert taken <= names
        chosen = inputs.new_field_name(reader)
        assert chosen not in names and chosen.startswith("Signature")


def test_field_walk_is_bounded_and_visits_each_field_once() -> None:
    from tests.support import hostile

    reader = PdfFileReader(io.BytesIO(hostile.field_dag_bomb(30)))
    # A DAG whose paths number 2**30: each node is visited once.
    assert len(inputs.field_names(reader)) < 200


@pytest.mark.parametrize("nested", [None, "Signature2"])
def test_text_field_named_like_a_signature_gets_a_fresh_name(
    api: Any, credentials: dict[str, Any], nested: str | None
) -> None:
    data = with_text_field("Signature1", nested_under=nested)
    before = inputs.field_names(PdfFileReader(io.BytesIO(data)))
    response = sign(api, credentials, data)
    assert response.status_code == 201, response.text
    signed = download(api, credentials, response.json())
    new = [name for name, filled in signed_fields(signed).items() if filled]
    assert len(new) == 1 and new[0] not in before
    # Every field of the input is still there.
    assert before < inputs.field_names(PdfFileReader(io.BytesIO(signed)))
    assert verify(api, signed)["verdict"] == "TOTAL_PASSED"


def test_field_input_c05c(api: Any, credentials: dict[str, Any]) -> None:
    response = sign(api, credentials, field_input("c05c-textfield-named-Signature1.pdf"))
    assert response.status_code == 201, response.text
    assert verify(api, download(api, credentials, response.json()))["verdict"] == "TOTAL_PASSED"


# --- certified documents (DocMDP) -----------------------------------------------------------


def test_certified_no_changes_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    data = certified(dev_pki[0], MDPPerm.NO_CHANGES)
    assert_refused(api, services, credentials, data, "DOCUMENT_CERTIFIED_NO_CHANGES")
    # An empty field does not change P=1.
    data = certified(dev_pki[0], MDPPerm.NO_CHANGES, empty_field="ChuKyLanhDao")
    assert_refused(api, services, credentials, data, "DOCUMENT_CERTIFIED_NO_CHANGES")


def test_encrypted_certified_documents_are_honoured_as_plain_ones(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    """In an encrypted document the certification's /Perms and the fields come through
    pyHanko's decrypting proxies; read as if absent, a P=1 document was signed (breaking its
    certification) and a P=2 one got a new field."""
    data = certified(dev_pki[0], MDPPerm.NO_CHANGES, encrypted=True)
    assert_refused(api, services, credentials, data, "DOCUMENT_CERTIFIED_NO_CHANGES")
    data = certified(dev_pki[0], MDPPerm.FILL_FORMS, encrypted=True)
    assert_refused(api, services, credentials, data, "DOCUMENT_CERTIFIED_FIELD_REQUIRED")
    data = certified(dev_pki[0], MDPPerm.FILL_FORMS, empty_field="ChuKyLanhDao", encrypted=True)
    response = sign(api, credentials, data)
    assert response.status_code == 201, response.text
    signed = download(api, credentials, response.json())
    assert signed_fields(signed) == {"ChungThuc": True, "ChuKyLanhDao": True}


def test_a_signed_encrypted_document_takes_a_second_signature(
    api: Any, credentials: dict[str, Any]
) -> None:
    """The second signature on an encrypted, already signed document gets a new field (it
    took ``Signature1`` again, which pyHanko refused as filled: SIGNING_FAILED), and a text
    field named like a signature field is not taken either."""
    first = sign(api, credentials, owner_encrypted(with_text_field("Signature1")))
    assert first.status_code == 201, first.text
    once = download(api, credentials, first.json())
    second = sign(api, credentials, once)
    assert second.status_code == 201, second.text
    twice = download(api, credentials, second.json())
    assert signed_fields(twice) == {"Signature2": True, "Signature3": True}
    report = verify(api, twice)
    assert report["verdict"] == "TOTAL_PASSED", report
    assert len(report["signatures"]) == 2


def test_certified_fill_forms_without_an_empty_field_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    data = certified(dev_pki[0], MDPPerm.FILL_FORMS)
    assert_refused(api, services, credentials, data, "DOCUMENT_CERTIFIED_FIELD_REQUIRED")


@pytest.mark.parametrize(
    ("permission", "code", "docmdp"),
    [
        (MDPPerm.NO_CHANGES, "DOCUMENT_CERTIFIED_NO_CHANGES", "DocMDP P=1"),
        (MDPPerm.FILL_FORMS, "DOCUMENT_CERTIFIED_FIELD_REQUIRED", "DocMDP P=2"),
    ],
)
def test_certified_refusal_speaks_of_a_locked_document(
    api: Any,
    credentials: dict[str, Any],
    dev_pki: tuple[DevPki, int],
    permission: MDPPerm,
    code: str,
    docmdp: str,
) -> None:
    """The word "chứng thực" reads as notarisation to an officer, and "DocMDP P=1" is jargon: the
    message says the document was certified and locked; the technical term is in details."""
    body = sign(api, credentials, certified(dev_pki[0], permission)).json()
    assert body["code"] == code
    assert "ký chứng nhận và khóa thay đổi" in body["message"]
    assert "chứng thực" not in body["message"] and "DocMDP" not in body["message"]
    assert body["details"]["docmdp"].startswith(docmdp)


@pytest.mark.parametrize("level", ["B-B", "B-LTA"])
def test_certified_fill_forms_is_signed_into_the_empty_field(
    api: Any, credentials: dict[str, Any], dev_pki: tuple[DevPki, int], level: str
) -> None:
    data = certified(dev_pki[0], MDPPerm.FILL_FORMS, empty_field="ChuKyLanhDao")
    response = sign(api, credentials, data, level=level)
    assert response.status_code == 201, response.text
    signed = download(api, credentials, response.json())
    filled = {k: v for k, v in signed_fields(signed).items() if not k.startswith("Timestamp")}
    assert filled == {"ChuKyLanhDao": True, "ChungThuc": True}
    certification_intact(verify(api, signed))


def test_certified_annotations_allowed_gets_a_new_field(
    api: Any, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    data = certified(dev_pki[0], MDPPerm.ANNOTATE)
    response = sign(api, credentials, data)
    assert response.status_code == 201, response.text
    signed = download(api, credentials, response.json())
    assert len(signed_fields(signed)) == 2
    certification_intact(verify(api, signed))


def test_certification_is_read_as_the_verifier_reads_it(dev_pki: tuple[DevPki, int]) -> None:
    """A signature whose /Reference carries a DocMDP transform certifies, with or without the
    catalog's /Perms (pyHanko's docmdp_level, hence our verifier); of several DocMDP
    references the strictest counts, never more lenient than pyHanko's first."""
    pki = dev_pki[0]

    def permission(data: bytes) -> MDPPerm | None:
        return inputs.docmdp_permission(PdfFileReader(io.BytesIO(data)))

    data = certified(pki, MDPPerm.NO_CHANGES, perms=False)
    assert "/Perms" not in PdfFileReader(io.BytesIO(data)).root
    assert permission(data) == MDPPerm.NO_CHANGES
    assert permission(certified(pki, MDPPerm.FILL_FORMS, perms=False)) == MDPPerm.FILL_FORMS
    assert permission(certified(pki, MDPPerm.NO_CHANGES, second_reference=3)) == (
        MDPPerm.NO_CHANGES
    )
    assert permission(certified(pki, MDPPerm.ANNOTATE, second_reference=1)) == (MDPPerm.NO_CHANGES)


@pytest.mark.parametrize(
    "shape", [{"perms": False}, {"second_reference": 3}], ids=["no-perms", "two-references"]
)
def test_a_p1_certification_of_every_shape_is_refused(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    dev_pki: tuple[DevPki, int],
    shape: dict[str, Any],
) -> None:
    """Red team 17b R17B-2 (no /Perms: 201, and the certification then failed DOCMDP_VIOLATION)
    and R17B-6 (/Reference [P=1, P=3]: refused only by pyHanko, SIGNING_FAILED): P=1 refused
    with its own code, one-step and two-step."""
    data = certified(dev_pki[0], MDPPerm.NO_CHANGES, **shape)
    # The service's verifier reads it as a P=1 certification, intact.
    report = verify(api, data)
    assert report["verdict"] == "TOTAL_PASSED", report
    assert [s["type"] for s in report["signatures"]] == ["certification"]
    assert_refused(api, services, credentials, data, "DOCUMENT_CERTIFIED_NO_CHANGES")
    before = snapshot(services)
    response = api.post(
        "/v1/signatures/external",
        headers=auth(credentials),
        data={"profile": "agency-a-officer", "officer": "nguyen-van-an"},
        files={"file": ("van-ban.pdf", data, "application/pdf")},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "DOCUMENT_CERTIFIED_NO_CHANGES"
    assert response.json()["details"]["docmdp"].startswith("DocMDP P=1")
    assert_nothing_written(before, services)


def test_a_p2_certification_without_perms_takes_only_its_empty_field(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    data = certified(dev_pki[0], MDPPerm.FILL_FORMS, perms=False)
    assert_refused(api, services, credentials, data, "DOCUMENT_CERTIFIED_FIELD_REQUIRED")
    data = certified(dev_pki[0], MDPPerm.FILL_FORMS, perms=False, empty_field="ChuKyLanhDao")
    response = sign(api, credentials, data)
    assert response.status_code == 201, response.text
    signed = download(api, credentials, response.json())
    assert signed_fields(signed) == {"ChungThuc": True, "ChuKyLanhDao": True}
    certification_intact(verify(api, signed))


def test_signed_field_lock_with_no_changes_is_honoured(dev_pki: tuple[DevPki, int]) -> None:
    """A signed field whose lock dictionary says P=1 (ISO 32000-2 Table 236) forbids later
    signatures as a P=1 certification does."""
    data = make_pdf()
    writer = IncrementalPdfFileWriter(io.BytesIO(data))
    fields.append_signature_field(
        writer,
        SigFieldSpec(
            sig_field_name="Khoa",
            on_page=0,
            box=(330, 80, 550, 160),
            field_mdp_spec=fields.FieldMDPSpec(fields.FieldMDPAction.ALL),
            doc_mdp_update_value=MDPPerm.NO_CHANGES,
        ),
    )
    buffer = io.BytesIO()
    writer.write(buffer)
    key = load_pkcs12_file(dev_pki[0].p12_path("agency-b-seal"), DEV_KEY_PASSPHRASE.encode())
    out = asyncio.run(
        signers.PdfSigner(
            signers.PdfSignatureMetadata(field_name="Khoa"), signer=key.signer
        ).async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(buffer.getvalue())))
    )
    reader = PdfFileReader(io.BytesIO(out.getvalue()))
    assert inputs.docmdp_permission(reader) == MDPPerm.NO_CHANGES
    with pytest.raises(inputs.CertifiedDocument):
        inputs.check_certification(reader, "Signature2")


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("c06-certified-p1.pdf", "DOCUMENT_CERTIFIED_NO_CHANGES"),
        ("c06-certified-p2.pdf", "DOCUMENT_CERTIFIED_FIELD_REQUIRED"),
    ],
)
def test_field_inputs_c06(
    api: Any, services: Services, credentials: dict[str, Any], name: str, code: str
) -> None:
    assert_refused(api, services, credentials, field_input(name), code)


# --- damaged documents: repaired, or refused when signed ------------------------------------


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_damaged_input_is_repaired_then_signed(
    api: Any, services: Services, credentials: dict[str, Any], damage: str
) -> None:
    data = DAMAGES[damage](make_pdf(pages=2))
    response = sign(api, credentials, data, level="B-T")
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["repaired"] is True
    signed = download(api, credentials, body)
    assert verify(api, signed)["verdict"] == "TOTAL_PASSED"
    # The same two pages.
    assert len(pikepdf.open(io.BytesIO(signed)).pages) == 2
    with services.db.transaction() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.subject == body["signature_id"])
        ).one()
    assert json.loads(entry.details)["repaired"] is True


def test_clean_input_is_not_repaired(api: Any, credentials: dict[str, Any]) -> None:
    data = make_pdf()
    response = sign(api, credentials, data)
    assert response.status_code == 201, response.text
    assert response.json()["repaired"] is False
    assert download(api, credentials, response.json()).startswith(data)


@pytest.mark.parametrize("name", ["c07a-startxref-off-by-7.pdf", "c15c-prefix-before-header.pdf"])
def test_field_inputs_repaired(api: Any, credentials: dict[str, Any], name: str) -> None:
    response = sign(api, credentials, field_input(name))
    assert response.status_code == 201, response.text
    assert response.json()["repaired"] is True
    assert verify(api, download(api, credentials, response.json()))["verdict"] == "TOTAL_PASSED"


@pytest.mark.parametrize(
    "damage", ["startxref-off-by-3", "startxref-off-by-7", "prefix-before-header"]
)
def test_damaged_signed_input_is_never_rewritten(
    api: Any, services: Services, credentials: dict[str, Any], damage: str
) -> None:
    first = sign(api, credentials, make_pdf())
    assert first.status_code == 201
    signed = download(api, credentials, first.json())
    assert_refused(api, services, credentials, DAMAGES[damage](signed), "SIGNED_PDF_DAMAGED")


def page_text_as_pyhanko_reads(data: bytes) -> bytes:
    """The first page's content as pyHanko (and so our verifier) reads the file."""
    reader = PdfFileReader(io.BytesIO(data), strict=False)
    return reader.root["/Pages"]["/Kids"][0]["/Contents"].data  # type: ignore[no-any-return]


@pytest.mark.skipif(shutil.which("pdftotext") is None, reason="poppler-utils not installed")
def test_shadowed_content_behind_a_wrong_startxref_is_repaired(
    api: Any, credentials: dict[str, Any]
) -> None:
    """Red team issue 10, F7: pyHanko read around a ``startxref`` 3 bytes off and signed
    "KHONG DUYET" unrepaired while poppler showed "DA DUYET". Now the file takes the repair
    path: the signed document is qpdf's rebuild, which poppler and pyHanko read alike."""
    data = shadowed()
    assert b"KHONG DUYET" in page_text_as_pyhanko_reads(data)
    assert "DA DUYET 1.000.000.000" in poppler_text(data)
    response = sign(api, credentials, data, level="B-B")
    assert response.status_code == 201, response.text
    assert response.json()["repaired"] is True
    signed = download(api, credentials, response.json())
    assert b"(DA DUYET 1.000.000.000)" in page_text_as_pyhanko_reads(signed)
    assert "DA DUYET 1.000.000.000" in poppler_text(signed)
    assert "KHONG" not in poppler_text(signed)
    assert verify(api, signed)["verdict"] == "TOTAL_PASSED"
    # And the signed file's own structure is what every reader finds.
    assert repair.xref_damage(PdfFileReader(io.BytesIO(signed), strict=False)) is None


def poppler_text(data: bytes) -> str:
    done = subprocess.run(
        ["pdftotext", "-", "-"], input=data, capture_output=True, check=True, timeout=30
    )
    return done.stdout.decode()


def test_unrepairable_input_is_malformed(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    data = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n" + b"garbage " * 400 + b"\n%%EOF\n"
    assert_refused(api, services, credentials, data, "MALFORMED_PDF")


def test_repair_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    # Many small objects beyond the cap: refused, not rebuilt.
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    pdf.Root.Many = pikepdf.Array(
        [pdf.make_indirect(pikepdf.Dictionary(N=n)) for n in range(2_000)]
    )
    out = io.BytesIO()
    pdf.save(out)
    monkeypatch.setattr(repair, "MAX_REPAIR_OBJECTS", 1_000)
    with pytest.raises(repair.RepairFailed):
        repair.repair(DAMAGES["startxref-off-by-7"](out.getvalue()))
    monkeypatch.setattr(repair, "REPAIR_SECONDS", 0.001)
    with pytest.raises(repair.RepairFailed):
        repair.repair(DAMAGES["startxref-off-by-7"](make_pdf()))


def test_corrupt_compressed_cross_reference_stream_is_not_a_500(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """A Flate error in the xref stream (zlib.error, found by tests/test_fuzz_inputs.py)
    answered 500: it is a document that cannot be read, repaired when qpdf can rebuild it."""
    pdf = pikepdf.open(io.BytesIO(make_pdf(pages=2)))
    out = io.BytesIO()
    pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    data = bytearray(out.getvalue())
    xref = data.rindex(b"/XRef")
    start = data.index(b"stream", xref) + len(b"stream\n")
    end = data.index(b"endstream", start)
    for at in range(start + 2, end - 4, 3):
        data[at] ^= 0x5A
    before = snapshot(services)
    response = sign(api, credentials, bytes(data))
    # qpdf cannot rebuild this one (the xref stream locates the compressed objects).
    assert (response.status_code, response.json()["code"]) == (422, "MALFORMED_PDF")
    assert_nothing_written(before, services)


def test_batch_repairs_each_damaged_document_and_says_so(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    plain = make_pdf(text="Quyet dinh 1")
    docs = [
        ("lanh.pdf", plain),
        ("hong-xref.pdf", DAMAGES["startxref-off-by-7"](make_pdf(text="Quyet dinh 2"))),
        ("da-ky-hong.pdf", DAMAGES["prefix-before-header"](signed_by_us(api, credentials))),
    ]
    response = api.post(
        "/v1/signatures/batch",
        headers=auth(credentials),
        data={"profile": "agency-a-seal"},
        files=[("files", (name, data, "application/pdf")) for name, data in docs],
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["signed", "signed", "failed"]
    assert [r["repaired"] for r in results[:2]] == [False, True]
    assert results[2]["error"]["code"] == "SIGNED_PDF_DAMAGED"


def signed_by_us(api: Any, credentials: dict[str, Any]) -> bytes:
    """A document the service signed."""
    response = sign(api, credentials, make_pdf(text="Da ky"))
    assert response.status_code == 201
    return download(api, credentials, response.json())


# --- field locks (FieldMDP): red team issue 10, F3 ------------------------------------------


def locked_by_earlier_signature(pki: DevPki, lock: fields.FieldMDPSpec) -> bytes:
    """``Khoa`` signed (by agency B's seal) with the FieldMDP ``lock``; ``ChuKy`` a visible
    empty signature field beside it, as a form prepared for two signers is."""
    writer = IncrementalPdfFileWriter(io.BytesIO(make_pdf()))
    fields.append_signature_field(
        writer,
        SigFieldSpec(sig_field_name="Khoa", on_page=0, box=(60, 80, 280, 160), field_mdp_spec=lock),
    )
    fields.append_signature_field(
        writer, SigFieldSpec(sig_field_name="ChuKy", on_page=0, box=(330, 80, 550, 160))
    )
    buffer = io.BytesIO()
    writer.write(buffer)
    key = load_pkcs12_file(pki.p12_path("agency-b-seal"), DEV_KEY_PASSPHRASE.encode())
    out = asyncio.run(
        signers.PdfSigner(
            signers.PdfSignatureMetadata(
                field_name="Khoa", subfilter=fields.SigSeedSubFilter.PADES
            ),
            signer=key.signer,
        ).async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(buffer.getvalue())))
    )
    return out.getvalue()  # type: ignore[no-any-return]


LOCK_ALL = fields.FieldMDPSpec(fields.FieldMDPAction.ALL)


def test_filling_a_locked_field_breaks_the_earlier_signature(
    api: Any, dev_pki: tuple[DevPki, int]
) -> None:
    """Why the refusal: a signature in the locked field, made without our check, is judged by
    our verifier as breaking the earlier signature (what the service answered 201 for)."""
    data = locked_by_earlier_signature(dev_pki[0], LOCK_ALL)
    assert verify(api, data)["verdict"] == "TOTAL_PASSED"
    key = load_pkcs12_file(dev_pki[0].p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    out = asyncio.run(
        signers.PdfSigner(
            signers.PdfSignatureMetadata(
                field_name="ChuKy", subfilter=fields.SigSeedSubFilter.PADES
            ),
            signer=key.signer,
        ).async_sign_pdf(IncrementalPdfFileWriter(io.BytesIO(data)))
    )
    assert verify(api, out.getvalue())["verdict"] == "TOTAL_FAILED"


@pytest.mark.parametrize(
    "lock",
    [
        LOCK_ALL,
        fields.FieldMDPSpec(fields.FieldMDPAction.INCLUDE, fields=["ChuKy"]),
        fields.FieldMDPSpec(fields.FieldMDPAction.EXCLUDE, fields=["Khac"]),
    ],
    ids=["all", "include", "exclude"],
)
@pytest.mark.parametrize("named", [False, True], ids=["auto", "named"])
def test_locked_field_is_refused(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    dev_pki: tuple[DevPki, int],
    lock: fields.FieldMDPSpec,
    named: bool,
) -> None:
    data = locked_by_earlier_signature(dev_pki[0], lock)
    before, entries = snapshot(services), signed_entries(services)
    response = sign(api, credentials, data, **({"field_name": "ChuKy"} if named else {}))
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "SIGNATURE_FIELD_LOCKED"
    assert any(ch in response.json()["message"] for ch in VIETNAMESE_LETTERS)
    assert_nothing_written(before, services)
    assert signed_entries(services) == entries


@pytest.mark.parametrize(
    "lock",
    [
        fields.FieldMDPSpec(fields.FieldMDPAction.INCLUDE, fields=["Khac"]),
        fields.FieldMDPSpec(fields.FieldMDPAction.EXCLUDE, fields=["ChuKy"]),
    ],
    ids=["include-other", "exclude-it"],
)
def test_lock_that_does_not_cover_the_field_still_signs(
    api: Any, credentials: dict[str, Any], dev_pki: tuple[DevPki, int], lock: fields.FieldMDPSpec
) -> None:
    data = locked_by_earlier_signature(dev_pki[0], lock)
    response = sign(api, credentials, data, field_name="ChuKy")
    assert response.status_code == 201, response.text
    signed = download(api, credentials, response.json())
    assert signed_fields(signed) == {"Khoa": True, "ChuKy": True}
    report = verify(api, signed)
    assert report["verdict"] == "TOTAL_PASSED", report


def test_new_field_under_a_lock() -> None:
    """A new visible field covered by a lock is refused; a new invisible one is not a change
    to a locked field (pyHanko's difference analysis), nor is a field the lock leaves out."""
    from pyhanko.pdf_utils import generic
    from pyhanko.sign.fields import FieldMDPAction, FieldMDPSpec

    def reader_with(lock: FieldMDPSpec) -> PdfFileReader:
        pdf = pikepdf.open(io.BytesIO(make_pdf()))
        field = pdf.make_indirect(
            pikepdf.Dictionary(
                FT=pikepdf.Name.Sig,
                T=pikepdf.String("Khoa"),
                V=pdf.make_indirect(pikepdf.Dictionary(Type=pikepdf.Name.Sig)),
                Lock=pikepdf.Dictionary(Action=pikepdf.Name(lock.action.value)),
            )
        )
        if lock.fields is not None:
            field.Lock.Fields = pikepdf.Array([pikepdf.String(f) for f in lock.fields])
        pdf.Root.AcroForm = pdf.make_indirect(pikepdf.Dictionary(Fields=pikepdf.Array([field])))
        out = io.BytesIO()
        pdf.save(out)
        return PdfFileReader(io.BytesIO(out.getvalue()))

    everything = reader_with(FieldMDPSpec(FieldMDPAction.ALL))
    with pytest.raises(inputs.CertifiedDocument) as refused:
        inputs.check_certification(everything, "Signature2", visible=True)
    assert refused.value.reason == "field_locked"
    inputs.check_certification(everything, "Signature2", visible=False)
    others = reader_with(FieldMDPSpec(FieldMDPAction.INCLUDE, fields=["Khac"]))
    inputs.check_certification(others, "Signature2", visible=True)
    # An /Action no reader knows locks everything (what it covers cannot be known).
    unknown = reader_with(FieldMDPSpec(FieldMDPAction.ALL))
    lock = unknown.root["/AcroForm"]["/Fields"][0].get_object()["/Lock"]
    lock["/Action"] = generic.NameObject("/Sometimes")
    with pytest.raises(inputs.CertifiedDocument):
        inputs.check_certification(unknown, "Signature2", visible=True)


def _with_text_fields(count: int) -> bytes:
    """One page with ``count`` text fields (widgets stacked in one corner)."""
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    page = pdf.pages[0]
    widgets = [
        pdf.make_indirect(
            pikepdf.Dictionary(
                Type=pikepdf.Name.Annot,
                Subtype=pikepdf.Name.Widget,
                FT=pikepdf.Name.Tx,
                T=pikepdf.String(f"o{i}"),
                Rect=[10, 10, 20, 20],
                P=page.obj,
            )
        )
        for i in range(count)
    ]
    page.obj.Annots = pdf.make_indirect(pikepdf.Array(widgets))
    pdf.Root.AcroForm = pdf.make_indirect(pikepdf.Dictionary(Fields=pikepdf.Array(widgets)))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


@pytest.mark.slow
def test_a_document_the_verifier_would_refuse_once_signed_is_not_signed(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Issue 10, item 8: a file the service produced is always accepted back. The verifier
    visits at most 10,000 form fields; a document with as many was signed (201) and its
    signed file verified as TOTAL_FAILED (red team 15, F3). Now it is refused before signing,
    and one with room for what B-LTA adds is signed at B-LTA and verifies."""
    from signing_service.verification.limits import DEFAULT_LIMITS

    limit = DEFAULT_LIMITS.max_form_fields
    before, entries = snapshot(services), signed_entries(services)
    response = sign(api, credentials, _with_text_fields(limit))
    assert (response.status_code, response.json()["code"]) == (422, "DOCUMENT_TOO_COMPLEX")
    assert response.json()["details"]["limit"] == "TOO_MANY_FIELDS"
    assert any(ch in response.json()["message"] for ch in VIETNAMESE_LETTERS)
    assert_nothing_written(before, services)
    assert signed_entries(services) == entries
    # B-LTA adds two fields (the signature's, the document timestamp's): one short of the
    # limit is refused too, two short signs at B-LTA and verifies.
    response = sign(api, credentials, _with_text_fields(limit - 1), level="B-LTA")
    assert (response.status_code, response.json()["code"]) == (422, "DOCUMENT_TOO_COMPLEX")
    response = sign(api, credentials, _with_text_fields(limit - 2), level="B-LTA")
    assert response.status_code == 201, response.text
    report = verify(api, download(api, credentials, response.json()))
    assert report["verdict"] == "TOTAL_PASSED", report
