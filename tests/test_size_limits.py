"""Limits that fit together (issue 10, "What to build" 8): a document signed at the signing
limit is accepted back for verification and countersigning, and a signed result the service
could not accept back is refused (413) and not stored.

A document of 52,408,800 bytes (20,000 under 50 MiB) signed at B-LTA grew past 50 MiB and was
then refused by the verification and signing endpoints (413): their limits left no room for
what signing adds. Now a document carrying signatures may be ``signing_headroom_bytes`` larger.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.settings import Settings
from signing_service.verification.limits import VerificationLimits
from tests.conftest import make_settings
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

MiB = 1024 * 1024


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # What is checked is sizes; one database is enough.
    return f"sqlite:///{tmp_path / 'metadata.db'}"


def auth(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def sign(api: Any, credentials: dict[str, Any], data: bytes, level: str) -> Any:
    return api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": level},
        files={"file": ("lon.pdf", data, "application/pdf")},
    )


def pdf_of_size(size: int) -> bytes:
    """A one-page PDF of exactly ``size`` bytes: one big incompressible stream (a scan)."""
    overhead = len(make_pdf(padding_bytes=1000)) - 1000
    data = make_pdf(padding_bytes=size - overhead)
    data = make_pdf(padding_bytes=size - overhead - (len(data) - size))
    assert len(data) == size
    return data


def test_the_verifier_default_matches_the_settings() -> None:
    settings = Settings()
    assert VerificationLimits().max_input_bytes == settings.max_document_bytes
    assert settings.max_document_bytes > settings.max_upload_bytes


@pytest.mark.parametrize("size", [52_408_800, 50 * MiB])
def test_a_document_signed_at_the_limit_is_accepted_back(
    api: Any, credentials: dict[str, Any], size: int
) -> None:
    data = pdf_of_size(size)
    response = sign(api, credentials, data, "B-LTA")
    assert response.status_code == 201, response.text
    signed_meta = response.json()["document"]
    assert signed_meta["size"] > 50 * MiB  # what signing added crossed the upload limit
    signed = api.get(signed_meta["download_url"], headers=auth(credentials)).content
    report = api.post("/v1/verifications", files={"file": ("lon.pdf", signed)})
    assert report.status_code == 200, report.text
    assert report.json()["verdict"] == "TOTAL_PASSED"
    # Countersigned: a second signature on what the service produced.
    again = sign(api, credentials, signed, "B-T")
    assert again.status_code == 201, again.text
    # A new document one byte over the upload limit is still refused.
    over = sign(api, credentials, pdf_of_size(50 * MiB + 1), "B-B")
    assert (over.status_code, over.json()["code"]) == (413, "FILE_TOO_LARGE")


@pytest.fixture
def tight(tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app

    built = Services.build(
        make_settings(
            tmp_path, database_url, dev_pki, max_upload_bytes=200_000, signing_headroom_bytes=2_000
        )
    )
    with TestClient(create_app(built), raise_server_exceptions=False) as client:
        yield client, built
    built.close()


def test_a_result_the_service_could_not_accept_back_is_refused(tight: Any) -> None:
    client, built = tight
    credentials = json.loads(built.settings.dev_credentials_file.read_text())
    before = snapshot(built)
    # Within the upload limit, but the signature adds more than the 2,000-byte headroom.
    response = sign(client, credentials, pdf_of_size(199_000), "B-T")
    assert response.status_code == 413, response.text
    body = response.json()
    assert body["code"] == "FILE_TOO_LARGE" and body["details"]["max_bytes"] == 202_000
    assert "sau khi ký" in body["message"]
    assert_nothing_written(before, built)
    # A small one signs, and a signed document over the upload limit (within the headroom) is
    # verified.
    small = sign(client, credentials, pdf_of_size(150_000), "B-B")
    assert small.status_code == 201, small.text
    padded = make_pdf(padding_bytes=201_000 - 1_000)
    report = client.post("/v1/verifications", files={"file": ("x.pdf", padded)})
    assert report.status_code == 200, report.text
    far = make_pdf(padding_bytes=203_000)
    refused = client.post("/v1/verifications", files={"file": ("x.pdf", far)})
    assert (refused.status_code, refused.json()["code"]) == (413, "FILE_TOO_LARGE")
