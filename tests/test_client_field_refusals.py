"""Small refusals of what clients send (red team 17b): a nested batch ``codes`` value
(R17B-5), two ``Authorization`` headers (R17B-7), JSON bodies with a repeated key (R17B-8),
and uploaded file names with a path, a right-to-left override or a control character
(R17B-9). Every request goes through the API; nothing refused is stored."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.serialization import pkcs12

from signing_service import errors
from signing_service.services import documents
from signing_service.services.container import Services
from signing_service.services.documents import batch_codes, check_filename
from signing_service.settings import DEV_KEY_PASSPHRASE
from tests.support.multipart import multipart
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

VIETNAMESE_LETTERS = "ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ"
DOSSIER = "000.00.12.H12-261127-0001"


def key(credentials: dict[str, Any], kind: str = "api_key", agency: int = 0) -> str:
    return str(credentials["agencies"][agency][kind])


def auth(credentials: dict[str, Any], kind: str = "api_key") -> dict[str, str]:
    return {"Authorization": f"Bearer {key(credentials, kind)}"}


def vietnamese(message: str) -> bool:
    return any(ch in message for ch in VIETNAMESE_LETTERS)


# --- R17B-5: a nested batch `codes` -------------------------------------------------------


@pytest.mark.parametrize(
    ("codes", "reason"),
    [
        ("[" * 5000 + "]" * 5000, "too long"),  # the red team's value
        ("[" * 20 + "]" * 20, "too deep"),
        ('[{"a":' * 10 + "null" + "}]" * 10, "too deep"),
        ("[[{}]]", "too deep"),
        ("[" + " " * 100_000 + "null]", "too long"),
    ],
    ids=["arrays-5000", "arrays-20", "objects-10", "three-levels", "long"],
)
def test_nested_or_long_batch_codes_are_refused_not_a_500(
    api: Any, services: Services, credentials: dict[str, Any], codes: str, reason: str
) -> None:
    before = snapshot(services)
    response = api.post(
        "/v1/signatures/batch",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "codes": codes},
        files=[("files", ("a.pdf", make_pdf(), "application/pdf"))],
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_DOCUMENT_CODES")
    assert response.json()["details"]["reason"] == reason
    assert vietnamese(response.json()["message"])
    assert_nothing_written(before, services)


def test_brackets_inside_code_strings_are_not_nesting() -> None:
    """The depth is counted outside strings: a bracket in a code is the code's problem."""
    with pytest.raises(errors.ServiceError) as refused:
        batch_codes('[{"dossier_code": "[[[[{{{{\\"]]]"}]', 1, "000.00.12.H12")
    assert refused.value.code == "INVALID_DOSSIER_CODE"
    codes = batch_codes(f'[{{"dossier_code": "{DOSSIER}"}}, null]', 2, "000.00.12.H12")
    assert codes is not None and codes[0].dossier_code == DOSSIER


@pytest.mark.parametrize(
    "path", ["/v1/admin/profiles", "/v1/signatures/external/khong-co/complete"]
)
def test_deep_json_bodies_are_4xx(api: Any, credentials: dict[str, Any], path: str) -> None:
    body = b'{"name": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    kind = "admin_api_key" if "admin" in path else "api_key"
    response = api.post(
        path,
        headers={**auth(credentials, kind), "Content-Type": "application/json"},
        content=body,
    )
    assert 400 <= response.status_code < 500, response.text
    assert vietnamese(response.json()["message"])


# --- R17B-7: two Authorization headers ----------------------------------------------------


@pytest.mark.parametrize("order", ["a-then-b", "b-then-a", "same-twice"])
def test_two_authorization_headers_are_refused(
    api: Any, credentials: dict[str, Any], order: str
) -> None:
    a = f"Bearer {key(credentials, 'admin_api_key', 0)}"
    b = f"Bearer {key(credentials, 'admin_api_key', 1)}"
    pair = {"a-then-b": [a, b], "b-then-a": [b, a], "same-twice": [a, a]}[order]
    response = api.get("/v1/admin/keys", headers=[("Authorization", value) for value in pair])
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
    assert response.json()["details"] == {"fields": ["Authorization"]}
    assert "Authorization" in response.json()["message"]
    assert vietnamese(response.json()["message"])


def test_two_authorization_headers_sign_nothing(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers=[
            ("Authorization", f"Bearer {key(credentials)}"),
            ("Authorization", f"Bearer {key(credentials, agency=1)}"),
        ],
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )
    assert (response.status_code, response.json()["code"]) == (400, "INVALID_REQUEST")
    assert_nothing_written(before, services)
    # One header: the same request signs (the control).
    response = api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )
    assert response.status_code == 201, response.text


# --- R17B-8: JSON bodies with a repeated key ----------------------------------------------


@pytest.mark.parametrize(
    ("body", "repeated"),
    [
        (b'{"name": "dup", "name": "dup2", "key": "agency-a-seal"}', ["name"]),
        (
            b'{"name": "dup", "key": "agency-a-seal", "key": "agency-a-hsm-seal"}',
            ["key"],
        ),
        (
            b'{"name": "dup", "key": "agency-a-seal", "appearance": '
            b'{"kind": "none", "kind": "copy", "copy_kind": "SAO Y"}}',
            ["kind"],
        ),
    ],
    ids=["name", "key", "nested"],
)
def test_admin_body_with_a_repeated_key_is_refused(
    api: Any, credentials: dict[str, Any], body: bytes, repeated: list[str]
) -> None:
    headers = {**auth(credentials, "admin_api_key"), "Content-Type": "application/json"}
    before = api.get("/v1/admin/profiles", headers=headers).json()
    response = api.post("/v1/admin/profiles", headers=headers, content=body)
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert response.json()["details"]["fields"] == repeated
    assert api.get("/v1/admin/profiles", headers=headers).json() == before
    # The same body without the repetition is saved (the control).
    fixed = json.dumps(json.loads(body)).encode()
    assert api.post("/v1/admin/profiles", headers=headers, content=fixed).status_code == 201


def test_admin_patch_with_a_repeated_key_is_refused(api: Any, credentials: dict[str, Any]) -> None:
    headers = {**auth(credentials, "admin_api_key"), "Content-Type": "application/json"}
    response = api.patch(
        "/v1/admin/profiles/agency-a-seal",
        headers=headers,
        content=b'{"reason": "Phe duyet", "reason": "Khong phe duyet"}',
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert response.json()["details"]["fields"] == ["reason"]
    profile = api.get("/v1/admin/profiles/agency-a-seal", headers=headers).json()
    assert profile["reason"] not in ("Phe duyet", "Khong phe duyet")


def officer_raw_signature(services: Services, session: dict[str, Any]) -> str:
    assert services.dev_pki is not None
    private, _, _ = pkcs12.load_key_and_certificates(
        services.dev_pki.p12_path("officer").read_bytes(), DEV_KEY_PASSPHRASE.encode()
    )
    data = base64.b64decode(session["data_to_sign"])
    return base64.b64encode(
        private.sign(data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
    ).decode()


def start_external(
    api: Any, services: Services, credentials: dict[str, Any], filename: str
) -> dict[str, Any]:
    assert services.dev_pki is not None
    response = api.post(
        "/v1/signatures/external",
        headers=auth(credentials),
        data={"profile": "agency-a-officer", "level": "B-B"},
        files={
            "file": (filename, make_pdf(), "application/pdf"),
            "certificate": ("officer.pem", services.dev_pki.cert_path("officer").read_bytes()),
        },
    )
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


def test_two_step_completion_with_a_repeated_key_is_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    session = start_external(api, services, credentials, "to-trinh.pdf")
    good = officer_raw_signature(services, session)
    headers = {**auth(credentials), "Content-Type": "application/json"}
    before = snapshot(services)
    body = f'{{"signature": "{good}", "signature": "AAAA"}}'.encode()
    response = api.post(session["complete_url"], headers=headers, content=body)
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert response.json()["details"]["fields"] == ["signature"]
    assert_nothing_written(before, services)
    body = f'{{"signature": "{good}"}}'.encode()
    assert api.post(session["complete_url"], headers=headers, content=body).status_code == 201


# --- R17B-9: uploaded file names ----------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("quyet-dinh.pdf", "quyet-dinh.pdf"),
        ("../../../../etc/passwd.pdf", "passwd.pdf"),
        ("..\\..\\Windows\\quyet-dinh.pdf", "quyet-dinh.pdf"),
        ("C:\\Users\\An\\Tờ trình.pdf", "Tờ trình.pdf"),
        ("hop-dong\u202efdp.exe", "hop-dongfdp.exe"),
        ("\u2066quyet\u2069-dinh\ufeff.pdf", "quyet-dinh.pdf"),
        ("  quyet-dinh.pdf  ", "quyet-dinh.pdf"),
        ("ng\u200cuoi.pdf", "ng\u200cuoi.pdf"),  # a zero-width non-joiner is kept
        ("../", None),
        ("a/..", None),
        ("\u202e", None),
        ("", None),
        (None, None),
    ],
)
def test_base_filename(given: str | None, kept: str | None) -> None:
    assert documents.base_filename(given) == kept
    assert check_filename(given) == kept


@pytest.mark.parametrize(
    "given", ["a\x00b.pdf", "a\x00/b.pdf", "dir\n/x.pdf", "a\x85b.pdf", "q" * 300 + ".pdf"]
)
def test_control_characters_and_long_names_are_refused(given: str) -> None:
    """A NUL never cuts a name, and one in a directory part is not dropped with the part."""
    with pytest.raises(errors.ServiceError) as refused:
        check_filename(given)
    assert refused.value.code == "INVALID_FILENAME"


def sign(api: Any, credentials: dict[str, Any], filename: str, **form: str) -> Any:
    return api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B", **form},
        files={"file": (filename, make_pdf(), "application/pdf")},
    )


@pytest.mark.parametrize(
    ("given", "original", "signed"),
    [
        ("../../../../etc/passwd.pdf", "passwd.pdf", "passwd.signed.pdf"),
        ("a\u202eb.pdf", "ab.pdf", "ab.signed.pdf"),
        ("../", None, None),
    ],
)
def test_signing_keeps_the_base_name(
    api: Any, credentials: dict[str, Any], given: str, original: str | None, signed: str | None
) -> None:
    response = sign(api, credentials, given)
    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["input_document"]["filename"], body["document"]["filename"]) == (
        original,
        signed,
    )
    stored = api.get(f"/v1/documents/{body['input_document']['id']}", headers=auth(credentials))
    assert stored.json()["filename"] == original


def test_raw_body_filename_keeps_the_base_name(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    headers = {**auth(credentials), "Content-Type": "application/pdf"}
    response = api.post(
        "/v1/signatures/raw",
        params={"profile": "agency-a-seal", "level": "B-B", "filename": "..\\..\\a\u202eb.pdf"},
        headers=headers,
        content=make_pdf(),
    )
    assert response.status_code == 201, response.text
    assert response.json()["input_document"]["filename"] == "ab.pdf"
    before = snapshot(services)
    response = api.post(
        "/v1/signatures/raw",
        params={"profile": "agency-a-seal", "level": "B-B", "filename": "a\x00b.pdf"},
        headers=headers,
        content=make_pdf(),
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_FILENAME")
    assert_nothing_written(before, services)


def test_batch_keeps_base_names_and_refuses_a_nul_in_its_place(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    body, content_type = multipart(
        [
            ("profile", "agency-a-seal"),
            ("level", "B-B"),
            ("files", "../../etc/mot.pdf", make_pdf(text="Mot")),
            ("files", b"h\x00ai.pdf", make_pdf(text="Hai")),
            ("files", "ba\u202e.pdf", make_pdf(text="Ba")),
        ]
    )
    response = api.post(
        "/v1/signatures/batch",
        headers={**auth(credentials), "Content-Type": content_type},
        content=body,
    )
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [r["status"] for r in results] == ["signed", "failed", "signed"]
    assert results[1]["error"]["code"] == "INVALID_FILENAME"
    names = [
        api.get(r["document"]["download_url"].rsplit("/", 1)[0], headers=auth(credentials)).json()[
            "filename"
        ]
        for r in (results[0], results[2])
    ]
    assert names == ["mot.signed.pdf", "ba.signed.pdf"]


def test_two_step_keeps_the_base_name(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    session = start_external(api, services, credentials, "../../x/to\u202etrinh.pdf")
    done = api.post(
        session["complete_url"],
        headers=auth(credentials),
        json={"signature": officer_raw_signature(services, session)},
    )
    assert done.status_code == 201, done.text
    assert done.json()["input_document"]["filename"] == "totrinh.pdf"
    assert done.json()["document"]["filename"] == "totrinh.signed.pdf"


def test_attachment_keeps_the_base_name(api: Any, credentials: dict[str, Any]) -> None:
    response = api.post(
        f"/v1/dossiers/{DOSSIER}/attachments",
        headers=auth(credentials),
        data={"component": "application"},
        files={"file": ("..\\..\\don\u202e-de-nghi.pdf", make_pdf(), "application/pdf")},
    )
    assert response.status_code == 201, response.text
    assert response.json()["filename"] == "don-de-nghi.pdf"


def test_attachment_with_a_nul_in_a_directory_part_is_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The base name alone would have no NUL: the whole name is judged first."""
    body, content_type = multipart(
        [("component", "application"), ("file", b"ho\x00so/don.pdf", make_pdf())]
    )
    before = snapshot(services)
    response = api.post(
        f"/v1/dossiers/{DOSSIER}/attachments",
        headers={**auth(credentials), "Content-Type": content_type},
        content=body,
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_FILENAME")
    assert_nothing_written(before, services)
