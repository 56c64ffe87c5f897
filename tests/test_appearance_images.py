"""Seals and handwritten signatures uploaded per agency through the admin API, named by
profiles, and the appearance fields of a sign request (issue 10): every bad input a 422 with its
own code and nothing stored."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from typing import Any

import pytest
from PIL import Image
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import select

from signing_service.services.container import Services
from signing_service.store.models import AppearanceImage, AuditEntry
from tests.support.images import blue_scribble, png_bomb, red_seal
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

IMAGES = "/v1/admin/appearance-images"


def admin(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['admin_api_key']}"}


def client(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['api_key']}"}


def upload(
    api: Any,
    credentials: dict[str, Any],
    name: str,
    role: str,
    data: bytes,
    width_mm: float = 34.0,
    i: int = 0,
    filename: str = "anh.png",
) -> Any:
    return api.post(
        IMAGES,
        headers=admin(credentials, i),
        data={"name": name, "role": role, "width_mm": str(width_mm), "officer": "Nguyễn Văn An"},
        files={"file": (filename, data, "image/png")},
    )


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def person_profile(name: str = "giam-doc-ky") -> dict[str, Any]:
    return {
        "name": name,
        "key": "agency-a-seal",
        "level": "B-T",
        "tsa": "dev",
        "appearance": {
            "kind": "person",
            "title": "GIÁM ĐỐC",
            "signature_image": "chu-ky-giam-doc",
            "seal_image": "con-dau",
        },
    }


def test_upload_profile_sign_delete(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    sig = upload(api, credentials, "chu-ky-giam-doc", "signature", blue_scribble(), 45.0)
    assert sig.status_code == 201, sig.text
    assert sig.json()["width_mm"] == 45.0 and sig.json()["height_mm"] == 18.0
    seal = upload(api, credentials, "con-dau", "seal", red_seal(), 34.0)
    assert seal.status_code == 201, seal.text
    listed = api.get(IMAGES, headers=admin(credentials)).json()
    assert [i["name"] for i in listed] == ["chu-ky-giam-doc", "con-dau"]
    # Content-addressed objects; another agency sees none of them.
    assert services.store.exists(
        f"appearance/{credentials['agencies'][0]['code']}/{seal.json()['sha256']}.png"
    )
    assert api.get(IMAGES, headers=admin(credentials, 1)).json() == []
    # Only an agency administrator manages them.
    assert upload(api, credentials, "x-y", "seal", red_seal(), i=0).status_code == 201
    refused = api.post(
        IMAGES,
        headers=client(credentials),
        data={"name": "z-z", "role": "seal", "width_mm": "30"},
        files={"file": ("a.png", red_seal())},
    )
    assert refused.status_code == 403

    created = api.post("/v1/admin/profiles", headers=admin(credentials), json=person_profile())
    assert created.status_code == 201, created.text
    signed = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "giam-doc-ky"},
        files={"file": ("qd.pdf", make_pdf())},
    )
    assert signed.status_code == 201, signed.text
    content = api.get(signed.json()["document"]["download_url"], headers=client(credentials))
    # The agency's seal over the person's signature: the same profile, kind from the request.
    sealed = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "giam-doc-ky", "appearance_kind": "seal"},
        files={"file": ("qd.pdf", content.content)},
    )
    assert sealed.status_code == 201, sealed.text
    final = api.get(sealed.json()["document"]["download_url"], headers=client(credentials))
    reader = PdfFileReader(io.BytesIO(final.content))
    rects = [[float(v) for v in s.sig_field["/Rect"]] for s in reader.embedded_signatures]
    person, seal_rect = rects
    # Both signatures verify; the seal's new widget over the person's is an allowed change.
    report = api.post(
        "/v1/verifications", files={"file": ("signed.pdf", final.content, "application/pdf")}
    )
    assert report.status_code == 200 and report.json()["verdict"] == "TOTAL_PASSED", report.text
    # The seal centred on the left third of the person's stamp (placement's over_signature).
    centre = person[0] + (person[2] - person[0]) / 6
    assert abs((seal_rect[0] + seal_rect[2]) / 2 - centre) <= 1, (person, seal_rect)

    # In use: not deleted; once the profile is gone, deleted with its object.
    busy = api.delete(f"{IMAGES}/con-dau", headers=admin(credentials))
    assert (busy.status_code, busy.json()["code"]) == (409, "IMAGE_IN_USE")
    assert busy.json()["details"]["profiles"] == ["giam-doc-ky"]
    assert (
        api.delete("/v1/admin/profiles/giam-doc-ky", headers=admin(credentials)).status_code == 204
    )
    key = f"appearance/{credentials['agencies'][0]['code']}/{seal.json()['sha256']}.png"
    assert api.delete(f"{IMAGES}/con-dau", headers=admin(credentials)).status_code == 204
    # "x-y" has the same bytes: the object stays until no record names it.
    assert services.store.exists(key)
    assert api.delete(f"{IMAGES}/x-y", headers=admin(credentials)).status_code == 204
    assert not services.store.exists(key)
    missing = api.delete(f"{IMAGES}/con-dau", headers=admin(credentials))
    assert (missing.status_code, missing.json()["code"]) == (404, "IMAGE_NOT_FOUND")

    with services.db.transaction() as session:
        actions = [
            (e.action, e.subject)
            for e in session.scalars(select(AuditEntry).order_by(AuditEntry.seq))
            if e.action.startswith("appearance_image.")
        ]
    assert ("appearance_image.uploaded", "con-dau") in actions
    assert ("appearance_image.deleted", "con-dau") in actions


@pytest.mark.parametrize(
    ("data", "filename", "code"),
    [
        (b"GIF89a" + bytes(200), "seal.png", "IMAGE_NOT_PNG"),
        (b"%PDF-1.7\n" + bytes(200), "seal.png", "IMAGE_NOT_PNG"),
        (bytes(1024 * 1024 + 10), "seal.png", "IMAGE_TOO_LARGE"),
        (png_bomb(), "seal.png", "IMAGE_TOO_LARGE"),
        (_png(Image.new("RGB", (100, 100), (200, 0, 0))), "seal.png", "IMAGE_NOT_TRANSPARENT"),
        (
            _png(Image.new("RGBA", (100, 100), (200, 0, 0, 255))),
            "seal.png",
            "IMAGE_NOT_TRANSPARENT",
        ),
    ],
    ids=["gif-named-png", "pdf", "over-1mb", "bomb", "rgb", "opaque"],
)
def test_bad_images_store_nothing(
    api: Any, services: Services, credentials: dict[str, Any], data: bytes, filename: str, code: str
) -> None:
    before = snapshot(services)
    refused = upload(api, credentials, "con-dau", "seal", data, filename=filename)
    assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text
    assert refused.json()["message"]  # Vietnamese, from errors.py
    # What was measured is for people too: Vietnamese (not "content is not PNG"); the stable
    # machine name of the failed check beside it.
    details = refused.json()["details"]
    assert any(ch in details["reason"] for ch in "ảểđệầ"), details
    assert "pixel" not in details["reason"] and " is " not in details["reason"], details
    assert details["check"] in ("not_png", "too_large", "no_transparency"), details
    assert_nothing_written(before, services)
    with services.db.transaction() as session:
        assert session.scalars(select(AppearanceImage)).all() == []


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"role": "stamp"}, "INVALID_IMAGE"),
        ({"width_mm": "0.5"}, "INVALID_IMAGE"),
        ({"width_mm": "nan"}, "INVALID_IMAGE"),
        ({"name": "Con Dau"}, "INVALID_IMAGE"),
    ],
)
def test_bad_image_fields(
    api: Any, services: Services, credentials: dict[str, Any], fields: dict[str, str], code: str
) -> None:
    before = snapshot(services)
    data = {"name": "con-dau", "role": "seal", "width_mm": "34", **fields}
    refused = api.post(
        IMAGES, headers=admin(credentials), data=data, files={"file": ("a.png", red_seal())}
    )
    assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text
    assert_nothing_written(before, services)


def test_profile_names_only_its_agency_images(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    assert (
        upload(api, credentials, "chu-ky-giam-doc", "signature", blue_scribble()).status_code == 201
    )
    assert upload(api, credentials, "con-dau", "seal", red_seal()).status_code == 201
    duplicate = upload(api, credentials, "con-dau", "seal", red_seal())
    assert (duplicate.status_code, duplicate.json()["code"]) == (409, "IMAGE_EXISTS")

    def create(body: dict[str, Any], i: int = 0) -> Any:
        return api.post("/v1/admin/profiles", headers=admin(credentials, i), json=body)

    unknown = person_profile()
    unknown["appearance"]["signature_image"] = "khong-co"
    answer = create(unknown)
    assert (answer.status_code, answer.json()["code"]) == (422, "UNKNOWN_IMAGE")
    wrong_role = person_profile()
    wrong_role["appearance"]["signature_image"] = "con-dau"
    assert create(wrong_role).json()["code"] == "UNKNOWN_IMAGE"
    bad_kind = person_profile()
    bad_kind["appearance"]["kind"] = "stamp"
    answer = create(bad_kind)
    assert (answer.status_code, answer.json()["code"]) == (422, "UNKNOWN_APPEARANCE_KIND")
    incomplete = {"name": "ca-nhan", "key": "agency-a-seal", "appearance": {"kind": "person"}}
    answer = create(incomplete)
    assert (answer.status_code, answer.json()["code"]) == (422, "APPEARANCE_INCOMPLETE")
    assert answer.json()["details"]["missing"] == "signature_image"
    assert "ảnh chữ ký" in answer.json()["message"]
    no_seal = {"name": "dau", "key": "agency-a-seal", "appearance": {"kind": "seal"}}
    answer = create(no_seal)
    assert (answer.status_code, answer.json()["code"]) == (422, "APPEARANCE_INCOMPLETE")
    assert answer.json()["details"]["missing"] == "seal_image"
    assert "ảnh con dấu" in answer.json()["message"]
    wrong_copy = {"name": "sao", "key": "agency-a-seal"}
    wrong_copy["appearance"] = {"kind": "copy", "copy_kind": "BẢN CHÍNH"}
    answer = create(wrong_copy)
    assert (answer.status_code, answer.json()["code"]) == (422, "INVALID_COPY_KIND")
    # The same kind in other case or without diacritics is the kind, stored as printed.
    spelled = {"name": "sao-luc", "key": "agency-a-seal"}
    spelled["appearance"] = {"kind": "copy", "copy_kind": "sao luc"}
    answer = create(spelled)
    assert answer.status_code == 201, answer.text
    assert answer.json()["appearance"]["copy_kind"] == "SAO LỤC"
    # Agency B names agency A's image: as unknown as one that does not exist.
    other = person_profile("ky-b")
    other["key"] = "agency-b-seal"
    other["appearance"].pop("seal_image")
    assert create(other, 1).json()["code"] == "UNKNOWN_IMAGE"
    # A patch is checked the same way.
    assert create(person_profile()).status_code == 201
    # Ký thay: a two-line title is kept as given; a third line is refused.
    acting = person_profile("pho-giam-doc")
    acting["appearance"]["title"] = "KT. GIÁM ĐỐC\nPHÓ GIÁM ĐỐC"
    answer = create(acting)
    assert answer.status_code == 201, answer.text
    assert answer.json()["appearance"]["title"] == "KT. GIÁM ĐỐC\nPHÓ GIÁM ĐỐC"
    acting = person_profile("ba-dong")
    acting["appearance"]["title"] = "KT. GIÁM ĐỐC\nPHÓ GIÁM ĐỐC\nTHỨ BA"
    assert create(acting).json()["code"] == "INVALID_REQUEST"
    patched = api.patch(
        "/v1/admin/profiles/giam-doc-ky",
        headers=admin(credentials),
        json={"appearance": {"kind": "seal", "seal_image": "khong-co"}},
    )
    assert patched.json()["code"] == "UNKNOWN_IMAGE"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"appearance_kind": "stamp"}, "UNKNOWN_APPEARANCE_KIND"),
        ({"appearance_kind": "copy", "copy_kind": "BẢN CHÍNH"}, "INVALID_COPY_KIND"),
        ({"appearance_kind": "copy", "copy_kind": "SÁO Y"}, "INVALID_COPY_KIND"),
        ({"appearance_kind": "annex"}, "APPEARANCE_INCOMPLETE"),
        ({"appearance_kind": "annex", "document_number": "abc"}, "INVALID_DOCUMENT_NUMBER"),
        ({"appearance_kind": "annex", "document_number": "123/QĐ STP"}, "INVALID_DOCUMENT_NUMBER"),
        ({"appearance_kind": "person"}, "APPEARANCE_INCOMPLETE"),
        ({"appearance_kind": "seal"}, "APPEARANCE_INCOMPLETE"),
    ],
)
def test_bad_request_fields_sign_nothing(
    api: Any, services: Services, credentials: dict[str, Any], fields: dict[str, str], code: str
) -> None:
    before = snapshot(services)
    answer = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "agency-a-seal", **fields},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (answer.status_code, answer.json()["code"]) == (422, code), answer.text
    if code == "APPEARANCE_INCOMPLETE":
        # The message names what is missing, not a list of everything that could be.
        missing = answer.json()["details"]["missing"]
        assert f"({missing}" in answer.json()["message"]
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "fields",
    [
        {"appearance_kind": "copy", "copy_kind": "TRÍCH SAO"},
        {"appearance_kind": "copy", "copy_kind": "Sao y"},
        {"appearance_kind": "copy", "copy_kind": "trich sao"},
        {"appearance_kind": "annex", "document_number": "45/2020/NĐ-CP"},
        {"appearance_kind": "digitised"},
        {"appearance_kind": "none"},
    ],
)
def test_request_kinds_sign(api: Any, credentials: dict[str, Any], fields: dict[str, str]) -> None:
    answer = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "agency-a-seal", "level": "B-B", **fields},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert answer.status_code == 201, answer.text
    content = api.get(answer.json()["document"]["download_url"], headers=client(credentials))
    (signature,) = PdfFileReader(io.BytesIO(content.content)).embedded_signatures
    rect = [float(v) for v in signature.sig_field.get("/Rect", [0, 0, 0, 0])]
    visible = rect[2] - rect[0] > 0
    assert visible == (fields["appearance_kind"] != "none"), json.dumps(rect)


def test_reconcile_keeps_images_and_removes_orphans(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """`storage reconcile` removes objects no record names: an image's object is named by its
    record and kept; one whose record never committed (a crash) is removed."""
    from datetime import timedelta

    from signing_service.services.attachments import reconcile

    seal = upload(api, credentials, "con-dau", "seal", red_seal())
    assert seal.status_code == 201
    code = credentials["agencies"][0]["code"]
    kept = f"appearance/{code}/{seal.json()['sha256']}.png"
    orphan = f"appearance/{code}/{'0' * 64}.png"
    services.store.put(orphan, red_seal())
    report = reconcile(services, min_age=timedelta(0))
    assert orphan in report.removed_objects and kept not in report.orphan_objects
    assert services.store.exists(kept) and not services.store.exists(orphan)


def test_batch_takes_the_appearance_fields(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """A batch's appearance fields apply to every document; a bad one refuses the whole batch
    before any document is signed."""
    files = [("files", (f"{n}.pdf", make_pdf(), "application/pdf")) for n in range(2)]
    before = snapshot(services)
    refused = api.post(
        "/v1/signatures/batch",
        headers=client(credentials),
        data={"profile": "agency-a-seal", "appearance_kind": "annex", "document_number": "x"},
        files=files,
    )
    assert (refused.status_code, refused.json()["code"]) == (422, "INVALID_DOCUMENT_NUMBER")
    assert_nothing_written(before, services)
    signed = api.post(
        "/v1/signatures/batch",
        headers=client(credentials),
        data={
            "profile": "agency-a-seal",
            "level": "B-B",
            "appearance_kind": "annex",
            "document_number": "123/QĐ-STP",
        },
        files=files,
    )
    assert signed.status_code == 200 and signed.json()["signed"] == 2, signed.text
    for item in signed.json()["results"]:
        content = api.get(item["document"]["download_url"], headers=client(credentials)).content
        if shutil.which("pdftotext"):
            text = subprocess.run(
                ["pdftotext", "-", "-"], input=content, capture_output=True, check=True
            ).stdout.decode()
            assert "Kèm theo văn bản số 123/QĐ-STP" in text
        (signature,) = PdfFileReader(io.BytesIO(content)).embedded_signatures
        assert float(signature.sig_field["/Rect"][2]) > 0
