"""Every time the API answers is ISO 8601 with an offset, on both databases (SQLite hands
stored times back without their zone: they used to go out as ``2026-11-29T09:15:02``)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from typing import Any

from signing_service.services.container import Services
from tests.support.pdfs import make_pdf

ISO_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")


def _times(value: Any, path: str = "") -> list[tuple[str, str]]:
    """(path, text) of every string in ``value`` that is a date-time."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _times(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [t for i, v in enumerate(value) for t in _times(v, f"{path}[{i}]")]
    if isinstance(value, str) and ISO_TIME.match(value):
        return [(path, value)]
    return []


def test_every_api_time_has_an_offset(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    agency = credentials["agencies"][0]
    client = {"Authorization": f"Bearer {agency['api_key']}"}
    admin = {"Authorization": f"Bearer {agency['admin_api_key']}"}
    pki = services.dev_pki
    assert pki is not None
    answers: dict[str, Any] = {}

    signed = api.post(
        "/v1/signatures",
        headers=client,
        data={"profile": "agency-a-seal", "dossier_code": "000.00.12.H12-261129-0001"},
        files={"file": ("qd.pdf", make_pdf(), "application/pdf")},
    )
    assert signed.status_code == 201, signed.text
    answers["signature"] = signed.json()
    document_id = answers["signature"]["document"]["id"]
    answers["document"] = api.get(f"/v1/documents/{document_id}", headers=client).json()
    started = api.post(
        "/v1/signatures/external",
        headers=client,
        data={"profile": "agency-a-officer"},
        files={
            "file": ("qd.pdf", make_pdf(), "application/pdf"),
            "certificate": ("officer.pem", pki.cert("officer").dump()),
        },
    )
    assert started.status_code == 201, started.text
    answers["two-step"] = started.json()
    stored = api.post(
        "/v1/dossiers/000.00.12.H12-261129-0001/attachments",
        headers=client,
        data={"component": "application"},
        files={"file": ("don.pdf", make_pdf())},
    )
    assert stored.status_code == 201, stored.text
    answers["attachment"] = stored.json()
    answers["attachments"] = api.get(
        "/v1/dossiers/000.00.12.H12-261129-0001/attachments", headers=client
    ).json()
    answers["profiles"] = api.get("/v1/admin/profiles", headers=admin).json()
    answers["keys"] = api.get("/v1/admin/keys", headers=admin).json()
    answers["report"] = api.post(
        "/v1/verifications",
        files={
            "file": (
                "qd.pdf",
                api.get(f"/v1/documents/{document_id}/content", headers=client).content,
            )
        },
    ).json()

    found = [(name + path, text) for name, body in answers.items() for path, text in _times(body)]
    for must in (
        "signature.signed_at",
        "document.created_at",
        "two-step.expires_at",
        "attachment.created_at",
        "keys",
    ):
        assert any(where.startswith(must) for where, _ in found), (must, answers)
    for where, text in found:
        moment = datetime.fromisoformat(text)
        assert moment.utcoffset() is not None, (where, text)
    # Agencies' own times are given in Vietnam time.
    signed_at = datetime.fromisoformat(answers["signature"]["signed_at"])
    assert signed_at.utcoffset() == timedelta(hours=7)
