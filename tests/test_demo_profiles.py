"""The README's Try-it profiles (new user 11): a profile with an appearance kind answers only
what that kind draws (the ``sao-y`` copy profile no longer carries the text stamp's heading,
width, height and font size). The application in-process, SQLite, the dev PKI on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from signing_service.api.app import create_app
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from tests.conftest import make_settings


def test_copy_profile_answers_no_text_stamp_fields(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    services = Services.build(
        make_settings(tmp_path, f"sqlite:///{tmp_path / 'metadata.db'}", dev_pki)
    )
    try:
        credentials = json.loads(services.settings.dev_credentials_file.read_text())
        admin = {"Authorization": f"Bearer {credentials['agencies'][0]['admin_api_key']}"}
        with TestClient(create_app(services), raise_server_exceptions=False) as client:
            # The README's request, as written.
            created = client.post(
                "/v1/admin/profiles",
                headers=admin,
                json={
                    "name": "sao-y",
                    "key": "agency-a-seal",
                    "level": "B-T",
                    "reason": "Sao y bản chính",
                    "appearance": {"kind": "copy", "copy_kind": "SAO Y"},
                },
            )
            assert created.status_code == 201, created.text
            appearance: dict[str, Any] = created.json()["appearance"]
            assert appearance["kind"] == "copy" and appearance["copy_kind"] == "SAO Y"
            for unused in ("heading", "width", "height", "font_size"):
                assert unused not in appearance, appearance
            read = client.get("/v1/admin/profiles/sao-y", headers=admin)
            assert read.status_code == 200, read.text
            assert read.json()["appearance"] == appearance
            # A text-stamp profile (no kind) keeps its fields.
            legacy = client.post(
                "/v1/admin/profiles",
                headers=admin,
                json={
                    "name": "con-dau-chu",
                    "key": "agency-a-seal",
                    "level": "B-T",
                    "appearance": {"heading": "SAO Y"},
                },
            )
            assert legacy.status_code == 201, legacy.text
            assert legacy.json()["appearance"]["heading"] == "SAO Y"
            assert legacy.json()["appearance"]["width"] == 220.0
            # Signing with the copy profile still draws the copy block.
            signed = client.post(
                "/v1/signatures",
                headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
                data={"profile": "sao-y", "level": "B-T"},
                files={"file": ("a.pdf", _pdf(), "application/pdf")},
            )
            assert signed.status_code == 201, signed.text
    finally:
        services.close()


def _pdf() -> bytes:
    from tests.support.pdfs import make_pdf

    return make_pdf("Ban chinh")
