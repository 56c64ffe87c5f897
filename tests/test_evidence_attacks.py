"""Red team 12 findings on the evidence ZIP, each attack rebuilt: F1 (a ZIP re-sealed by
another agency's seal), F2 (duplicate and path-like names), F3 (a zip bomb), F12 (a seal
whose certificate has expired since, proven by its timestamp), F8 (`evidence verify` from the
settings alone). Real parts: the dev PKI on loopback, the service's own seal key."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

from signing_service.services import evidence
from signing_service.services.container import Services
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from tests.support.pdfs import make_pdf


def _download(api: Any, credentials: dict[str, Any]) -> bytes:
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    signed = api.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": "agency-a-seal", "level": "B-T"},
        files={"file": ("quyet-dinh.pdf", make_pdf(), "application/pdf")},
    )
    assert signed.status_code == 201, signed.text
    response = api.get(f"/v1/signatures/{signed.json()['signature_id']}/evidence", headers=headers)
    assert response.status_code == 200, response.text
    return response.content


def _files(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {i.filename: archive.read(i) for i in archive.infolist()}


def _zip(entries: list[tuple[str, bytes]]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            archive.writestr(name, data)
    return out.getvalue()


def _forged_manifest(files: dict[str, bytes]) -> bytes:
    manifest = json.loads(files["manifest.json"])
    manifest["check"]["signer_status"] = "revoked"
    return json.dumps(manifest, ensure_ascii=False, indent=2).encode()


def test_a_zip_sealed_by_another_agencys_seal_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """F1: agency B's seal chains to the trust store too; it must not vouch for A's evidence."""
    genuine = _download(api, credentials)
    assert evidence.verify_zip(services, genuine).ok
    files = _files(genuine)
    forged = _forged_manifest(files)
    pki = services.dev_pki
    assert pki is not None
    passphrase = services.settings.key_passphrase.get_secret_value().encode()
    agency_b = load_pkcs12_file(pki.p12_path("agency-b-seal"), passphrase)
    seal = asyncio.run(
        agency_b.signer.async_sign_general_data(forged, "sha256", detached=True, use_cades=True)
    )
    files["manifest.json"] = forged
    files["manifest.json.p7s"] = seal.dump()
    data = _zip(list(files.items()))
    checked = evidence.verify_zip(services, data)
    assert not checked.ok
    assert any("không được niêm phong bởi con dấu của dịch vụ" in p for p in checked.problems)

    # The CLI says so, exit 1 (and accepts the genuine one).
    forged_zip, good_zip = tmp_path / "forged.zip", tmp_path / "good.zip"
    forged_zip.write_bytes(data)
    good_zip.write_bytes(genuine)
    env = _env(services)
    refused = _cli(env, "evidence", "verify", str(forged_zip))
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "không được niêm phong bởi con dấu của dịch vụ" in refused.stderr
    ok = _cli(env, "evidence", "verify", str(good_zip))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    # The export's audit entry names the seal certificate (what the operator lists later).
    from sqlalchemy import select

    from signing_service.store.models import AuditEntry

    with services.db.transaction() as session:
        exported = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "evidence.exported")
        ).all()
    assert exported
    assert (
        json.loads(exported[-1].details)["seal_certificate_sha256"]
        == evidence.verify_zip(services, genuine).seal_certificate_sha256
    )

    # An earlier seal certificate the operator lists is accepted (here: agency B's, as if it
    # had been the service's seal once).
    b_cert = evidence.certificate_sha256(agency_b.signing_cert)
    listed = _cli(
        {**env, "SIGNING_SERVICE_EVIDENCE_SEAL_CERTIFICATES": b_cert},
        "evidence",
        "verify",
        "--json",
        str(forged_zip),
    )
    body = json.loads(listed.stdout)
    assert body["seal_certificate_sha256"] == b_cert
    assert not any("con dấu của dịch vụ" in p for p in body["problems"]), body


def test_duplicate_and_path_like_names_are_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """F2: a forged manifest.json placed before the genuine one (unzip shows the first,
    Python reads the last); a forged OCSP answer likewise; '..', absolute, backslash names."""
    genuine = _download(api, credentials)
    files = _files(genuine)
    forged = _forged_manifest(files)
    dup_manifest = _zip([("manifest.json", forged), *files.items()])
    ocsp_name = next(n for n in files if n.startswith("ocsp/"))
    dup_ocsp = _zip([(ocsp_name, b"invented"), *files.items()])
    for data in (dup_manifest, dup_ocsp):
        checked = evidence.verify_zip(services, data)
        assert not checked.ok
        assert any("xuất hiện nhiều lần" in p for p in checked.problems), checked.problems
    for bad in ("../manifest.json", "/etc/x", "ocsp\\0.der", "a/../../b", "certificates/"):
        checked = evidence.verify_zip(services, _zip([*files.items(), (bad, b"x")]))
        assert not checked.ok, bad
        assert any("không hợp lệ" in p for p in checked.problems), (bad, checked.problems)


def test_a_zip_bomb_is_refused_before_it_is_decompressed(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """F3: entries of zeros that inflate to far more than any evidence; too many entries; a
    header that lies about an entry's size is read with a cap anyway."""
    import resource

    genuine = _download(api, credentials)
    files = _files(genuine)
    zeros = b"\0" * (evidence.MAX_ENTRY_BYTES + 1)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    bomb = _zip([*files.items(), *((f"ocsp/{9 + i}.der", zeros) for i in range(3))])
    del zeros
    assert len(bomb) < 1024 * 1024
    checked = evidence.verify_zip(services, bomb)
    assert not checked.ok
    assert checked.problems
    # Refused from the headers: no entry inflated (RSS grows far less than one entry).
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200 * 1024, grown_kb

    many = _zip([*files.items(), *((f"x/{i}", b"") for i in range(evidence.MAX_ZIP_ENTRIES))])
    assert any("tệp" in p for p in evidence.verify_zip(services, many).problems)

    # A lying header: the manifest's entry claims 10 bytes but inflates to 40 MB.
    big = b"{" + b" " * (evidence.MAX_ENTRY_BYTES + 10)
    lying = bytearray(
        _zip([("manifest.json", big), ("manifest.json.p7s", files["manifest.json.p7s"])])
    )
    with zipfile.ZipFile(io.BytesIO(bytes(lying))) as archive:
        info = archive.getinfo("manifest.json")
    size_bytes = len(big).to_bytes(4, "little")
    small = (10).to_bytes(4, "little")
    # Patch the uncompressed size in the local header and the central directory.
    for offset in _all(bytes(lying), size_bytes):
        lying[offset : offset + 4] = small
    assert info.file_size == len(big)
    checked = evidence.verify_zip(services, bytes(lying))
    assert not checked.ok
    assert checked.problems


def _all(data: bytes, needle: bytes) -> list[int]:
    found, start = [], 0
    while (at := data.find(needle, start)) != -1:
        found.append(at)
        start = at + 1
    return found


def _env(services: Services) -> dict[str, str]:
    settings = services.settings
    return {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(settings.data_dir),
        "SIGNING_SERVICE_DATABASE_URL": settings.database_url,
        "SIGNING_SERVICE_DEV_PKI_DIR": str(settings.dev_pki_dir),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(settings.dev_pki_port),
    }


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_hold_on_a_newer_version_keeps_the_signatures_evidence(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """F4: sign B-T, extend to B-LT then B-LTA (versions 2 and 3), hold version 3 (the one the
    registry and /versions point to): the signature shows the hold and purge keeps it."""
    from datetime import UTC, datetime, timedelta

    client = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    admin = {"Authorization": f"Bearer {credentials['agencies'][0]['admin_api_key']}"}
    signed = api.post(
        "/v1/signatures",
        headers=client,
        data={"profile": "agency-a-seal", "level": "B-T"},
        files={"file": ("quyet-dinh.pdf", make_pdf(), "application/pdf")},
    )
    assert signed.status_code == 201, signed.text
    signature_id = signed.json()["signature_id"]
    latest = signed.json()["document"]["id"]
    for level in ("B-LT", "B-LTA"):
        extended = api.post(
            f"/v1/documents/{latest}/extensions", headers=client, json={"level": level}
        )
        assert extended.status_code == 201, extended.text
        latest = extended.json()["document"]["id"]
    assert latest != signed.json()["document"]["id"]
    held = api.put(
        f"/v1/documents/{latest}/legal-hold",
        headers=admin,
        json={"enabled": True, "reason": "Thanh tra số 12/2026"},
    )
    assert held.status_code == 200, held.text
    record = api.get(f"/v1/signatures/{signature_id}", headers=client).json()
    assert record["legal_hold"] is True
    assert [h["id"] for h in record["legal_holds"]] == [latest]
    later = datetime.now(UTC) + timedelta(days=101 * 366)
    report = evidence.purge(services, dry_run=False, now=later, actor="test")
    assert signature_id not in [p["signature_id"] for p in report.purged]
    assert signature_id in [h["signature_id"] for h in report.held]
    kept = api.get(f"/v1/signatures/{signature_id}/evidence", headers=client)
    assert kept.status_code == 200, kept.text


def _short_lived_seal(services: Services, hours: int) -> Any:
    """A seal certificate issued by the dev PKI's intermediate, valid for ``hours``, without
    revocation pointers: the service's seal of an earlier year, now expired."""
    from datetime import UTC, datetime, timedelta

    from asn1crypto import keys as asn1_keys
    from asn1crypto import x509 as asn1_x509
    from cryptography import x509 as cx509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID
    from pyhanko.sign import signers
    from pyhanko_certvalidator.registry import SimpleCertificateStore

    pki = services.dev_pki
    assert pki is not None
    issuer_key = serialization.load_pem_private_key(
        (pki.directory / "keys" / "interm.key.pem").read_bytes(), password=None
    )
    issuer = cx509.load_der_x509_certificate(pki.cert("interm").dump())
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        cx509.CertificateBuilder()
        .subject_name(
            cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Con dấu dịch vụ (năm trước)")])
        )
        .issuer_name(issuer.subject)
        .public_key(key.public_key())
        .serial_number(cx509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(hours=hours))
        .add_extension(
            cx509.KeyUsage(True, True, False, False, False, False, False, False, False),
            critical=True,
        )
        .add_extension(
            cx509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.public_key()),  # type: ignore[arg-type]
            critical=False,
        )
        .sign(issuer_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    asn1_cert = asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
    asn1_key = asn1_keys.PrivateKeyInfo.load(
        key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return signers.SimpleSigner(
        signing_cert=asn1_cert,
        signing_key=asn1_key,
        cert_registry=SimpleCertificateStore.from_certs([pki.cert("interm"), pki.cert("root")]),
    )


def test_an_expired_seal_still_verifies_when_its_timestamp_proves_it(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """F12: a ZIP sealed (and timestamped by the dev TSA) while the seal certificate was valid
    verifies after that certificate expired; one sealed without a timestamp says it cannot be
    proven."""
    from datetime import UTC, datetime, timedelta

    import time_machine
    from pyhanko.sign.timestamps import HTTPTimeStamper

    pki = services.dev_pki
    assert pki is not None
    files = _files(_download(api, credentials))
    old_seal = _short_lived_seal(services, hours=2)
    allowed = {evidence.certificate_sha256(old_seal.signing_cert)}

    def sealed(timestamper: Any) -> bytes:
        seal = asyncio.run(
            old_seal.async_sign_general_data(
                files["manifest.json"],
                "sha256",
                detached=True,
                use_cades=True,
                timestamper=timestamper,
            )
        )
        entries = {**files, "manifest.json.p7s": seal.dump()}
        return _zip(list(entries.items()))

    with_ts = sealed(HTTPTimeStamper(pki.tsa_url))
    without_ts = sealed(None)
    now_ok = evidence.check_zip(with_ts, trust=services.trust, seal_certificates=allowed)
    assert now_ok.ok, now_ok.problems
    with time_machine.travel(datetime.now(UTC) + timedelta(days=2), tick=False):
        later = evidence.check_zip(with_ts, trust=services.trust, seal_certificates=allowed)
        unproven = evidence.check_zip(without_ts, trust=services.trust, seal_certificates=allowed)
    assert later.ok, later.problems
    assert later.validated_at == later.seal_time
    assert not unproven.ok
    assert any("không có dấu thời gian" in p for p in unproven.problems), unproven.problems


def test_an_agency_admin_cannot_go_below_the_operators_minimum(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """F6: `"years": 1` for `*` by an agency admin key → 422 naming the minimum; a row saved
    below the minimum (before the operator raised it) is never what purge uses."""
    from datetime import UTC, datetime, timedelta

    from signing_service.store.models import EvidenceRetention

    minimum = services.settings.evidence_retention_min_years
    assert minimum == 5  # the default
    admin = {"Authorization": f"Bearer {credentials['agencies'][0]['admin_api_key']}"}
    client = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    refused = api.put(
        "/v1/admin/evidence-retention", headers=admin, json={"document_kind": "*", "years": 1}
    )
    assert refused.status_code == 422, refused.text
    assert refused.json()["code"] == "INVALID_RETENTION"
    assert f"tối thiểu {minimum} năm" in refused.json()["message"]
    at_minimum = api.put(
        "/v1/admin/evidence-retention",
        headers=admin,
        json={"document_kind": "*", "years": minimum},
    )
    assert at_minimum.status_code == 200, at_minimum.text

    signed = api.post(
        "/v1/signatures",
        headers=client,
        data={"profile": "agency-a-seal", "level": "B-T"},
        files={"file": ("quyet-dinh.pdf", make_pdf(), "application/pdf")},
    )
    assert signed.status_code == 201, signed.text
    signature_id = signed.json()["signature_id"]
    # A row of 1 year written before the floor existed (straight into the database).
    with services.db.transaction() as session:
        for row in session.query(EvidenceRetention).all():
            row.years = 1
    record = api.get(f"/v1/signatures/{signature_id}", headers=client).json()
    assert record["retention"]["years"] == minimum
    two_years_on = datetime.now(UTC) + timedelta(days=2 * 366)
    report = evidence.purge(services, dry_run=True, now=two_years_on, actor="test")
    assert signature_id not in [p["signature_id"] for p in report.purged]
    after_minimum = datetime.now(UTC) + timedelta(days=(minimum + 1) * 366)
    report = evidence.purge(services, dry_run=True, now=after_minimum, actor="test")
    assert signature_id in [p["signature_id"] for p in report.purged]


def test_evidence_verify_needs_no_deployment(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """F8: no data directory, database or audit key (an inspector's laptop): `evidence
    verify` runs from the settings alone (trust anchors, the service's seal certificate) and
    writes nothing. In production the dev root as an anchor is refused first (red team 14
    F8, as serve refuses it); the laptop trusting the dev PKI runs in development mode."""
    from signing_service.pki.dev import SERVICE_SEAL

    pki = services.dev_pki
    assert pki is not None
    genuine = tmp_path / "bang-chung.zip"
    genuine.write_bytes(_download(api, credentials))
    laptop = tmp_path / "laptop"
    laptop.mkdir()
    root = laptop / "root.pem"
    root.write_bytes(pki.root_cert_path.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
    env.update(
        {
            "HOME": str(laptop),
            # Development: production refuses the dev root as an anchor (red team 14 F8), and
            # this laptop trusts the dev PKI the evidence was sealed under.
            "SIGNING_SERVICE_MODE": "development",
            "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS": str(root),
            "SIGNING_SERVICE_EVIDENCE_SEAL_CERTIFICATES": evidence.certificate_sha256(
                pki.cert(SERVICE_SEAL)
            ),
        }
    )
    before = sorted(p.name for p in laptop.rglob("*"))

    def on_laptop(environment: dict[str, str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signing_service.cli", "evidence", "verify", str(genuine)],
            env=environment,
            cwd=laptop,
            capture_output=True,
            text=True,
            timeout=120,
        )

    production = on_laptop({**env, "SIGNING_SERVICE_MODE": "production"})
    assert production.returncode == 6, production.stdout + production.stderr
    assert "Từ chối ở chế độ production" in production.stderr
    assert "Traceback" not in production.stderr
    assert sorted(p.name for p in laptop.rglob("*")) == before
    done = on_laptop(env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "hợp lệ" in done.stdout
    assert sorted(p.name for p in laptop.rglob("*")) == before
    # Without the service's seal certificate listed (and no database to read it from): refused.
    del env["SIGNING_SERVICE_EVIDENCE_SEAL_CERTIFICATES"]
    unknown = on_laptop(env)
    assert unknown.returncode == 1, unknown.stdout + unknown.stderr
    assert "SIGNING_SERVICE_EVIDENCE_SEAL_CERTIFICATES" in unknown.stderr
