"""A dictionary with a repeated key written after a signature fails that signature (red team 16
F8, ISO 32000-2 §7.3.7: keys shall be unique).

pyHanko's parser keeps the first of two entries with the same key, poppler and qpdf the last: a
page rewritten as it was plus a second ``/Contents`` (or ``/Annots``, or a second font under the
same resource name) was judged "unchanged" while viewers drew the forged one. Names are compared
decoded (``/Cont#65nts`` is ``/Contents``); nested dictionaries, object streams, the trailer and
encrypted documents (owner password only) are included. Each case also checks, with qpdf
(pikepdf), that the file really shows the forgery to a last-key reader.
"""

from __future__ import annotations

import asyncio
from io import BytesIO
from typing import Any

import pikepdf
import pytest

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.keys import LoadedKey
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier
from tests.conftest import REPO
from tests.support import modifications as m


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


def report_of(verifier: Verifier, data: bytes) -> dict:  # type: ignore[type-arg]
    return asyncio.run(verifier.async_verify(data)).to_dict()


def owner_encrypted(data: bytes) -> bytes:
    out = BytesIO()
    pikepdf.open(BytesIO(data)).save(
        out, encryption=pikepdf.Encryption(user="", owner="chu-so-huu")
    )
    return out.getvalue()


def what_qpdf_shows(data: bytes, key: str) -> bool:
    """Whether qpdf (the last key wins) reads the forged value of page 1's repeated ``key``."""
    with pikepdf.open(BytesIO(data)) as pdf:
        page = pdf.pages[0].obj
        if key == "contents":
            return bool(page.Contents.read_bytes() == m.FORGED_TEXT)
        if key == "annots":
            return any(a.get("/Subtype") == "/FreeText" for a in page.Annots)
        return bool(page.Resources.Font.F1.BaseFont == "/ZapfDingbats")


CASES: dict[str, dict[str, Any]] = {
    "contents": {"key": "contents"},
    "contents, #-escaped name": {"key": "contents", "spelling": b"/Cont#65nts"},
    "annots": {"key": "annots"},
    "font in the page's resources (nested)": {"key": "font"},
    "contents, in an object stream": {"key": "contents", "object_stream": True},
}


@pytest.mark.parametrize("encrypt", [False, True], ids=["plain", "encrypted"])
@pytest.mark.parametrize("case", list(CASES))
def test_repeated_key_after_signing_fails(
    verifier: Verifier, key: LoadedKey, case: str, encrypt: bool
) -> None:
    spec = CASES[case]
    base = m.base_pdf(comment=spec["key"] == "annots")
    if encrypt:
        base = owner_encrypted(base)
    signed = sign(base, key)
    forged = m.edit(signed, m.repeated_page_key(**spec))
    assert what_qpdf_shows(forged, spec["key"]), "the forgery must be what qpdf reads"
    report = report_of(verifier, forged)
    assert report["verdict"] == "TOTAL_FAILED", report
    check = report["signatures"][0]["checks"]["modifications"]
    assert (check["status"], check["code"]) == ("FAILED", "DUPLICATE_KEYS"), check
    page = m.object_number(signed, lambda o: getattr(o, "get", lambda _: None)("/Type") == "/Page")
    name = {"contents": "/Contents", "annots": "/Annots", "font": "/F1"}[spec["key"]]
    assert f"phiên bản 2, đối tượng {page} 0, khóa {name}" in check["message"], check


@pytest.mark.parametrize("object_stream", [False, True], ids=["plain", "object stream"])
def test_page_rewritten_as_it_was_still_passes(
    verifier: Verifier, key: LoadedKey, object_stream: bool
) -> None:
    """The same page rewritten by hand without a repeated key (and, in an object stream, with a
    cross-reference stream after a table): no false alarm from the re-read."""

    def rewrite(writer: Any) -> None:
        page_ref, page = m.first_page(writer)
        raw = m.RawObject(m._raw_bytes(page))
        if object_stream:
            writer.stream_xrefs = True
            writer.prepare_object_stream().add_object(page_ref.idnum, raw)
            writer.objs_in_streams[page_ref.idnum] = raw
        else:
            writer.objects[(page_ref.generation, page_ref.idnum)] = raw

    report = report_of(verifier, m.edit(sign(m.base_pdf(), key), rewrite))
    check = report["signatures"][0]["checks"]["modifications"]
    assert check["status"] == "PASSED", check
    assert report["verdict"] != "TOTAL_FAILED", report


def test_repeated_key_fails_only_the_signatures_before_it(
    verifier: Verifier, key: LoadedKey
) -> None:
    """A signature made over the repeated key signed what it saw: only the earlier one fails."""
    forged = m.edit(sign(m.base_pdf(), key), m.repeated_page_key())
    twice = sign(forged, key, field_name="Signature2")
    report = report_of(verifier, twice)
    codes = {s["field"]: s["checks"]["modifications"]["code"] for s in report["signatures"]}
    assert codes["Signature1"] == "DUPLICATE_KEYS", report
    assert report["signatures"][1]["checks"]["modifications"]["status"] == "PASSED", report


def test_repeated_root_in_the_trailer_fails(verifier: Verifier, key: LoadedKey) -> None:
    """An update adding a second catalog and a second /Root entry (the last) in its trailer:
    pyHanko reads the signed catalog and an unreferenced new object, qpdf the new catalog."""
    signed = sign(m.base_pdf(), key)
    with pikepdf.open(BytesIO(signed)) as pdf:
        size = int(pdf.trailer.Size)
        pages = pdf.Root.Pages.objgen[0]
    catalog = b"<< /Type /Catalog /Pages %d 0 R /PageMode /FullScreen >>" % pages
    forged = m.append_raw_update(signed, {size: catalog}, trailer_extra=b" /Root %d 0 R" % size)
    with pikepdf.open(BytesIO(forged)) as pdf:
        assert pdf.Root.PageMode == "/FullScreen", "the forgery must be what qpdf reads"
    report = report_of(verifier, forged)
    check = report["signatures"][0]["checks"]["modifications"]
    assert check["code"] == "DUPLICATE_KEYS", check
    assert "phiên bản 2, trailer, khóa /Root" in check["message"], check


def test_repeated_root_in_a_cross_reference_stream_fails(
    verifier: Verifier, key: LoadedKey
) -> None:
    """The same in an update whose trailer is a cross-reference stream's dictionary (after a
    signed revision with an xref table). Written by pyHanko under another name of the same
    length, renamed in the bytes: the offsets stay right."""
    signed = sign(m.base_pdf(), key)

    def second_root(writer: Any) -> None:
        writer.stream_xrefs = True
        writer.trailer[m._name("/Xoot")] = writer.trailer.raw_get("/Root")
        writer.update_root()

    written = m.edit(signed, second_root)
    forged = signed + written[len(signed) :].replace(b"/Xoot", b"/Root")
    assert forged.count(b"/Root") == written.count(b"/Root") + 1
    report = report_of(verifier, forged)
    check = report["signatures"][0]["checks"]["modifications"]
    assert check["code"] == "DUPLICATE_KEYS", check
    assert "phiên bản 2, đối tượng" in check["message"] and "khóa /Root" in check["message"]


def test_an_object_listed_twice_in_an_object_stream_fails(
    verifier: Verifier, key: LoadedKey
) -> None:
    """Red team 16b, P1: the page moved into an object stream that lists its number twice, the
    xref pointing at the second (forged) entry. pyHanko reads the first (the page as signed):
    TOTAL_PASSED while poppler and qpdf show the forged page. Now the signature fails."""
    signed = sign(m.base_pdf(), key)
    forged = m.page_listed_twice_in_object_stream(signed)
    with pikepdf.open(BytesIO(forged)) as pdf:  # what an index-following reader draws
        contents = pdf.pages[0].obj.Contents
        drawn = b"".join(
            c.read_bytes()
            for c in (contents if isinstance(contents, pikepdf.Array) else [contents])
        )
        assert m.FORGED_TEXT in drawn
    report = report_of(verifier, forged)
    assert report["verdict"] == "TOTAL_FAILED", report
    check = report["signatures"][0]["checks"]["modifications"]
    assert (check["status"], check["code"]) == ("FAILED", "DUPLICATE_KEYS"), check
    assert "luồng đối tượng" in check["message"], check


def test_a_note_whose_text_reads_like_an_object_header_is_a_note(
    verifier: Verifier, key: LoadedKey
) -> None:
    """Red team 16b, G2: a reader's note "Checked: 3 2 objections noted" after signing was
    taken for an appended object header (UNREFERENCED_OBJECTS, "dấu hiệu tấn công"). `obj`
    must be a whole token."""
    from pyhanko.pdf_utils import generic

    def note(writer: Any) -> None:
        ref = m.add_comment(writer)
        ref.get_object()[generic.NameObject("/Contents")] = generic.TextStringObject(
            "Checked: 3 2 objections noted"
        )

    commented = m.edit(sign(m.base_pdf(), key), note)
    assert b"3 2 objections" in commented
    report = report_of(verifier, commented)
    check = report["signatures"][0]["checks"]["modifications"]
    assert check["code"] == "ALLOWED_ANNOTATIONS", check


def test_the_quick_pre_check_never_clears_a_repeated_key() -> None:
    """The byte-level pre-check that spares the full parse of most objects (a signature
    dictionary's /Contents hex string) clears only objects in which no name occurs twice:
    a repeated key, also written with a #-escape, always goes to the parse."""
    from signing_service.verification.modifications import _no_repeated_name

    def obj(body: bytes) -> bytes:
        return b"%PDF-1.7\n" + b"7 0 obj\n" + body + b"\nendobj\n"

    at = len(b"%PDF-1.7\n")
    assert _no_repeated_name(obj(b"<< /Type /Sig /Contents <00ff> /M (D:2026) >>"), at)
    assert not _no_repeated_name(obj(b"<< /Contents 4 0 R /Contents 18 0 R >>"), at)
    assert not _no_repeated_name(obj(b"<< /Contents 4 0 R /Cont#65nts 18 0 R >>"), at)
    assert not _no_repeated_name(obj(b"<< /A << /Type /X >> /B << /Type /Y >> >>"), at)
    assert not _no_repeated_name(obj(b"<< /Length 3 >>\nstream\nabc\nendstream"), at)
    assert not _no_repeated_name(b"%PDF-1.7\n7 0 obj << /A 1 >>", at)  # no endobj: parse
