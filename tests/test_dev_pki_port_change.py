"""A used development deployment restarted on another dev PKI port (new user 14 F9, F8, F4).

The dev PKI is re-issued for the new port (new serials, pki/dev.py). Before, the key registry
kept the previous generation's certificates, whose OCSP responder (the old port) no longer
answered: every signature was refused 503 SIGNER_CERT_STATUS_UNKNOWN; the evidence ZIPs
handed out before were refused (the seal certificate had changed); the log said nothing.

Real parts: a copy of the session dev PKI (the session's own must stay as issued), served on
loopback by the deployment itself on each port in turn, SoftHSM2 when installed, SQLite.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from signing_service.api.app import create_app
from signing_service.pki.dev import SERVICE_SEAL, DevPki
from signing_service.services import evidence
from signing_service.services.container import Services
from signing_service.services.standalone import verify_evidence_standalone
from signing_service.store.models import AuditEntry, SigningKey
from tests.conftest import make_settings
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port


def _client(credentials: dict[str, Any], index: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][index]['api_key']}"}


def _sign(api: TestClient, credentials: dict[str, Any], profile: str, index: int = 0) -> Any:
    return api.post(
        "/v1/signatures",
        headers=_client(credentials, index),
        data={"profile": profile, "level": "B-T"},
        files={"file": ("quyet-dinh.pdf", make_pdf(text=profile), "application/pdf")},
    )


def test_restart_on_another_dev_pki_port_keeps_signing_and_earlier_evidence(
    tmp_path: Path, dev_pki: tuple[DevPki, int], caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    session_pki, _ = dev_pki
    copy = tmp_path / "pki"
    shutil.copytree(session_pki.directory, copy)
    database_url = f"sqlite:///{tmp_path / 'metadata.db'}"
    first_port, second_port = free_port(), free_port()

    def build(port: int) -> Services:
        settings = make_settings(
            tmp_path, database_url, (session_pki, port), dev_pki_dir=copy, dev_pki_port=port
        )
        # As `serve`: the deployment serves its own dev PKI on its port.
        return Services.build(settings, serve_dev_pki=True, allow_reissue=True)

    # Used on port P1: signs, hands out an evidence ZIP.
    first = build(first_port)
    try:
        assert first.dev_pki is not None
        old_seal = evidence.certificate_sha256(first.dev_pki.cert(SERVICE_SEAL))
        credentials = json.loads(first.settings.dev_credentials_file.read_text())
        with TestClient(create_app(first), raise_server_exceptions=False) as api:
            signed = _sign(api, credentials, "agency-a-seal")
            assert signed.status_code == 201, signed.text
            signature_id = signed.json()["signature_id"]
            exported = api.get(
                f"/v1/signatures/{signature_id}/evidence", headers=_client(credentials)
            )
            assert exported.status_code == 200, exported.text
            zip_from_first = exported.content
        with first.db.transaction() as session:
            before = {k.name: k.certificate_sha256 for k in session.scalars(select(SigningKey))}
    finally:
        first.close()  # P1's dev PKI stops answering, as when the old instance is gone

    # Restarted on port P2: the dev PKI is re-issued, said once in Vietnamese in the log.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="signing_service.pki.dev"):
        second = build(second_port)
    try:
        pki = second.dev_pki
        assert pki is not None and pki.url_prefix.endswith(f":{second_port}")
        reissued = [r.getMessage() for r in caplog.records if "được cấp lại" in r.getMessage()]
        assert len(reissued) == 1, [r.getMessage() for r in caplog.records]
        assert str(second_port) in reissued[0] and str(first_port) in reissued[0]
        assert "INDETERMINATE" in reissued[0] and "cổng cũ" in reissued[0]
        state = json.loads((copy / "state.json").read_text())
        assert old_seal in state["previous_seal_certificates"]
        assert old_seal in pki.previous_seals

        # The demo keys carry the new generation's certificates, audited as the bootstrap's.
        with second.db.transaction() as session:
            rows = {k.name: k for k in session.scalars(select(SigningKey))}
            renewed = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "key.certificate_renewed")
            ).all()
        labels = {"agency-a-seal": "agency-a-seal", "agency-b-seal": "agency-b-seal"}
        labels["nguyen-van-an"] = "officer"
        if "agency-a-hsm-seal" in rows:
            labels["agency-a-hsm-seal"] = "agency-a-hsm"
        for name, label in labels.items():
            assert rows[name].certificate == pki.cert(label).dump(), name
            assert rows[name].certificate_sha256 != before[name], name
        assert sorted(e.subject for e in renewed) == sorted(labels)
        assert {e.actor for e in renewed} == {"bootstrap"}

        credentials = json.loads(second.settings.dev_credentials_file.read_text())
        with TestClient(create_app(second), raise_server_exceptions=False) as api:
            for profile, index in [("agency-a-seal", 0), ("agency-b-seal", 1)] + (
                [("agency-a-hsm-seal", 0)] if "agency-a-hsm-seal" in rows else []
            ):
                answer = _sign(api, credentials, profile, index)
                assert answer.status_code == 201, (profile, answer.text)
                record = api.get(
                    f"/v1/signatures/{answer.json()['signature_id']}",
                    headers=_client(credentials, index),
                )
                assert record.json()["level"] == "B-T", record.text

        # The evidence ZIP from P1 is still the deployment's own (service and CLI paths).
        checked = evidence.verify_zip(second, zip_from_first)
        assert checked.ok, checked.problems
        assert checked.seal_certificate_sha256 == old_seal
        standalone = verify_evidence_standalone(second.settings, zip_from_first)
        assert standalone.ok, standalone.problems
    finally:
        second.close()

    # A third start on P2 re-issues nothing and renews nothing.
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="signing_service.pki.dev"):
        third = build(second_port)
    try:
        assert not [r for r in caplog.records if "được cấp lại" in r.getMessage()]
        with third.db.transaction() as session:
            count = len(
                session.scalars(
                    select(AuditEntry).where(AuditEntry.action == "key.certificate_renewed")
                ).all()
            )
        assert count == len(labels)
    finally:
        third.close()
