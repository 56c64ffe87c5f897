"""The command line's registry lookup (services/standalone.py: the driver alone, no
SQLAlchemy) answers exactly what the API's (services/registry.py) answers, over the same
registry: in force, signed further, revoked through a later version, superseded, a revision
with content appended, a file never issued. SQLite and PostgreSQL (``database_url``)."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from io import BytesIO
from typing import Any

from signing_service.services.container import Services
from signing_service.services.registry import registry_section
from signing_service.services.standalone import registry_lookup
from tests.support.pdfs import make_pdf

BASE = "http://127.0.0.1:8000"
DOSSIER = "000.00.12.H12-261127-0001"


def auth(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def sign(
    api: Any, credentials: dict[str, Any], pdf: bytes, **form: str
) -> tuple[dict[str, Any], bytes]:
    done = api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B", "dossier_code": DOSSIER, **form},
        files={"file": ("qd.pdf", pdf, "application/pdf")},
    )
    assert done.status_code == 201, done.text
    body: dict[str, Any] = done.json()
    got = api.get(body["document"]["download_url"], headers=auth(credentials))
    assert got.status_code == 200
    return body, bytes(got.content)


def change(api: Any, credentials: dict[str, Any], public_id: str, action: str, **body: Any) -> None:
    done = api.post(
        f"/v1/registered-documents/{public_id}/{action}", headers=auth(credentials), json=body
    )
    assert done.status_code == 200, done.text


def appended(pdf: bytes) -> bytes:
    from pyhanko.pdf_utils import generic
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter

    writer = IncrementalPdfFileWriter(BytesIO(pdf))
    writer.set_info(
        generic.DictionaryObject({generic.NameObject("/Title"): generic.TextStringObject("sửa")})
    )
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


def test_plain_lookup_answers_as_the_api(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    services.settings.public_base_url = BASE
    url = services.settings.effective_database_url
    _, first_pdf = sign(api, credentials, make_pdf())
    further, further_pdf = sign(api, credentials, first_pdf)  # signed further from first
    old, old_pdf = sign(api, credentials, make_pdf(pages=2), result_code="auto")
    new, new_pdf = sign(api, credentials, make_pdf(pages=3), result_code="auto")
    change(
        api, credentials, old["registry"]["public_id"], "supersede",
        superseded_by=new["registry"]["public_id"], reason="Đính chính",
    )  # fmt: skip
    # Revoking the version signed further is the earlier one's status too (status_from).
    change(api, credentials, further["registry"]["public_id"], "revoke", reason="Cấp nhầm")
    files = {
        "first": first_pdf,
        "further": further_pdf,
        "old": old_pdf,
        "new": new_pdf,
        "appended": appended(new_pdf),
        "never issued": make_pdf(pages=4),
    }
    seen = set()
    for name, pdf in files.items():
        digest = hashlib.sha256(pdf).hexdigest()
        expected = registry_section(services, pdf, digest)
        got, shown = registry_lookup(services.settings, url, pdf, digest)
        assert got == expected, name
        assert shown == url  # no password in the test databases' URLs
        seen.add((expected.get("status"), expected.get("matched")))
    # The cases above are the ones meant.
    assert {("revoked", "file"), ("superseded", "file"), ("in_force", "revision")} <= seen
    assert (None, None) in seen  # never issued
    assert registry_section(services, first_pdf)["status_from"] is not None


def test_the_shown_url_hides_the_password() -> None:
    from signing_service.services.standalone import _shown_url

    assert _shown_url("postgresql+psycopg://app:s3cret@db:5432/signing") == (
        "postgresql+psycopg://app:***@db:5432/signing"
    )
    assert _shown_url("sqlite:////var/lib/x/metadata.db") == "sqlite:////var/lib/x/metadata.db"


def test_the_lookup_imports_no_sqlalchemy() -> None:
    code = (
        "import sys, signing_service.services.standalone, signing_service.cli;"
        "import signing_service.services.registry_records;"
        "print(any(m.split('.')[0] == 'sqlalchemy' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
