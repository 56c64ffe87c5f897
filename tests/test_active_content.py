"""Active content on the signing path (red team 19b, R19B-2).

A document that runs or opens something when viewed (a JavaScript open action, document
scripts, page or annotation actions, a program to launch, embedded files, multimedia, an XFA
form) is refused before signing with ``ACTIVE_PDF_CONTENT`` (the code the attachments'
screening gives), nothing stored; the verifier names it in a warning. Each kind is built here
with pikepdf on the same decision; harmless actions (a web link, a jump to a page) sign.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pikepdf
import pytest

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.verification.active import active_content
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
    "page-action": (_page_action, {"AA"}),
    "launch-link": (_launch_link, {"Launch"}),
    "file-attachment": (_file_attachment, {"EmbeddedFile"}),
    "embedded-files": (_embedded_files, {"EmbeddedFile"}),
    "outline-script": (_outline_script, {"JavaScript"}),
    "xfa": (_xfa, {"XFA"}),
}


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "object-streams"])
@pytest.mark.parametrize("kind", sorted(ACTIVE))
def test_each_kind_is_found(kind: str, compress: bool) -> None:
    change, expected = ACTIVE[kind]
    assert set(active_content(build(change, compress=compress))) == expected


@pytest.mark.parametrize("change", [_web_link, _jump_on_open], ids=["web-link", "jump-on-open"])
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
        assert_nothing_written(before, services)
    # A web link and a jump to the first page are no reason to refuse.
    for change in (_web_link, _jump_on_open):
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
    assert "JavaScript" in warning["message"]
    before = snapshot(services)
    response = _sign(api, credentials, signed)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "ACTIVE_PDF_CONTENT"
    assert_nothing_written(before, services)
    # An ordinary signed document carries no such warning.
    plain = verify(api, signed_locally(dev_pki[0], "spare-seal"))
    assert "ACTIVE_CONTENT_PRESENT" not in [w["code"] for w in plain["warnings"]]
