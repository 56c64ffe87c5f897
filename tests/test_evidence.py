"""Evidence per signature (issue 12 item 1; TT 15/2025 Art. 5–6): what the pre-signing check
relied on is kept, read back sealed by the service, kept for its retention and purged after it,
never under a legal hold. Real parts: the dev PKI's OCSP/CRL/TSA on loopback, the service's
own seal key, SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from asn1crypto import cms, ocsp, x509
from cryptography import x509 as cx509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import delete, select, update

from signing_service import audit
from signing_service.services import evidence
from signing_service.services.container import Services
from signing_service.store.models import (
    AuditEntry,
    Signature,
    SignatureEvidence,
    SignatureEvidenceItem,
    SigningKey,
)
from signing_service.verification.identity import vietnamese_dn
from signing_service.verification.revinfo_cache import REVOCATION_CACHE
from tests.support.pdfs import make_pdf

REPO = Path(__file__).resolve().parent.parent


def _client(credentials: dict[str, Any], index: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][index]['api_key']}"}


def _admin(credentials: dict[str, Any], index: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][index]['admin_api_key']}"}


def _sign(api: Any, credentials: dict[str, Any], level: str = "B-T", index: int = 0) -> Any:
    profile = "agency-a-seal" if index == 0 else "agency-b-seal"
    response = api.post(
        "/v1/signatures",
        headers=_client(credentials, index),
        data={"profile": profile, "level": level},
        files={"file": ("quyet-dinh.pdf", make_pdf(), "application/pdf")},
    )
    assert response.status_code == 201, response.text
    return response.json()


def _zip(data: bytes) -> dict[str, bytes]:
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def _rezip(contents: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for name, data in contents.items():
            archive.writestr(name, data)
    return out.getvalue()


def _rezip_with_folders(
    folders: list[str], contents: dict[str, bytes], folder_bytes: bytes = b""
) -> bytes:
    """``contents`` with a directory entry for each of ``folders`` first (``zip -r``)."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        for folder in folders:
            info = zipfile.ZipInfo(folder)
            info.external_attr = 0o40755 << 16 | 0x10
            archive.writestr(info, folder_bytes)
        for name, data in contents.items():
            archive.writestr(name, data)
    return out.getvalue()


def _cached_answers() -> set[bytes]:
    """The DER of every OCSP response and CRL the process-wide revocation cache holds: what
    the fetchers actually obtained from the dev PKI's responders."""
    found: set[bytes] = set()
    for entry in list(REVOCATION_CACHE._entries.values()):
        value = getattr(entry, "value", None)
        values = value if isinstance(value, list | tuple) else [value]
        for v in values:
            if hasattr(v, "dump"):
                found.add(v.dump())
    return found


def test_b_t_signature_keeps_what_the_check_relied_on_and_reads_back_sealed(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    pki = services.dev_pki
    assert pki is not None
    # A fresh check: no judgement and no revocation answer reused from another test.
    services.checker.chains.clear()
    REVOCATION_CACHE.clear()
    signed = _sign(api, credentials)
    signature_id = signed["signature_id"]
    headers = _client(credentials)

    record = api.get(f"/v1/signatures/{signature_id}", headers=headers)
    assert record.status_code == 200, record.text
    body = record.json()
    assert body["level"] == "B-T"
    assert body["output_document_id"] == signed["document"]["id"]
    assert body["input_document_id"] == signed["input_document"]["id"]
    assert body["signed_at"].endswith("+07:00")
    assert body["check"]["status"] == "good"
    assert body["check"]["checked_at"].endswith("+07:00")
    assert body["check"]["sources"]  # ocsp and/or crl
    assert body["evidence"]["kept"] is True
    assert body["retention"]["years"] == services.settings.evidence_retention_years
    assert body["legal_hold"] is False

    # The field name is the one the signed PDF carries (it was always empty before).
    pdf = api.get(signed["document"]["download_url"], headers=headers).content
    reader = PdfFileReader(io.BytesIO(pdf))
    (embedded,) = reader.embedded_regular_signatures
    assert body["field_name"] == embedded.field_name

    response = api.get(f"/v1/signatures/{signature_id}/evidence", headers=headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/zip"
    files = _zip(response.content)
    manifest = json.loads(files["manifest.json"])
    assert manifest["signature"]["id"] == signature_id
    assert manifest["signature"]["field_name"] == embedded.field_name

    # The certificate and chain: the registered key's certificate, the dev PKI's CA and root.
    with services.db.transaction() as session:
        key_cert = session.scalars(
            select(SigningKey.certificate).where(SigningKey.name == "agency-a-seal")
        ).one()
    assert files["certificates/0-signer.der"] == key_cert
    assert embedded.signer_cert.dump() == key_cert
    assert files["certificates/1-ca.der"] == pki.cert("interm").dump()
    assert files["certificates/2-anchor.der"] == pki.cert("root").dump()
    assert body["signer"]["serial"] == format(x509.Certificate.load(key_cert).serial_number, "x")

    # The OCSP answers: the very ones the fetchers obtained for the check, signed by the dev
    # PKI's responder, and saying "good" for the signer's certificate.
    answers = [name for name in files if name.startswith(("ocsp/", "crl/"))]
    assert answers, manifest["files"]
    fetched = _cached_answers()
    for name in answers:
        assert files[name] in fetched, f"{name} is not an answer the check obtained"
    ocsp_names = [n for n in answers if n.startswith("ocsp/")]
    assert ocsp_names, "the dev PKI answers OCSP: the check relied on it"
    signer = x509.Certificate.load(key_cert)
    signer_serial = signer.serial_number
    # The dev PKI's two responders: "ocsp" answers for the CA's certificates, the root for
    # its own subordinates (certs/dev/certomancer.yml).
    responders = {
        label: cx509.load_der_x509_certificate(pki.cert(label).dump()).public_key()
        for label in ("ocsp", "root")
    }
    about_signer = []
    for name in ocsp_names:
        parsed = ocsp.OCSPResponse.load(files[name])
        assert parsed["response_status"].native == "successful"
        basic = parsed["response_bytes"]["response"].parsed
        digest = getattr(hashes, basic["signature_algorithm"].hash_algo.upper())()
        signed_by = []
        for label, key in responders.items():
            assert isinstance(key, rsa.RSAPublicKey)
            try:
                key.verify(
                    basic["signature"].native,
                    basic["tbs_response_data"].dump(),
                    padding.PKCS1v15(),
                    digest,
                )
                signed_by.append(label)
            except InvalidSignature:
                continue
        assert signed_by, f"{name} is not signed by a dev PKI responder"
        for single in basic["tbs_response_data"]["responses"]:
            cert_id = single["cert_id"]
            if (
                cert_id["serial_number"].native == signer_serial
                and cert_id["issuer_name_hash"].native == signer.issuer.sha1
            ):
                assert signed_by == ["ocsp"]
                about_signer.append(single["cert_status"].name)
    assert about_signer == ["good"]
    assert manifest["check"]["signer_status"] == "good"
    # Each file is listed with its hash; the manifest says what it is.
    listed = {f["name"]: f for f in manifest["files"]}
    assert set(listed) == set(files) - {"manifest.json", "manifest.json.p7s"}

    # The timestamp token is the signature's own (CMS unsigned attribute).
    token = next(
        attr["values"][0].dump()
        for attr in embedded.signer_info["unsigned_attrs"]
        if attr["type"].native == "signature_time_stamp_token"
    )
    assert files["timestamp/signature-timestamp.tst"] == token
    assert cms.ContentInfo.load(token)["content_type"].native == "signed_data"

    # Sealed by the service: intact and trusted; one changed byte anywhere is caught.
    checked = evidence.verify_zip(services, response.content)
    assert checked.ok, checked.problems
    assert checked.signature_id == signature_id
    from signing_service.pki.dev import SERVICE_SEAL

    # Named with the verification report's Vietnamese labels (new user 12 item 13).
    assert checked.sealed_by == vietnamese_dn(pki.cert(SERVICE_SEAL).subject)
    assert checked.sealed_by.startswith("Quốc gia: VN") or "Tên: " in checked.sealed_by
    assert "Common Name" not in json.dumps(manifest, ensure_ascii=False)
    assert manifest["signer"]["subject"] == vietnamese_dn(signer.subject)
    assert checked.timestamped
    der_name = answers[0]
    for name in (der_name, "certificates/0-signer.der", "manifest.json"):
        changed = dict(files)
        data = bytearray(changed[name])
        data[len(data) // 2] ^= 0x01
        changed[name] = bytes(data)
        bad = evidence.verify_zip(services, _rezip(changed))
        assert not bad.ok, name
        assert bad.problems, name
    # A file added that the manifest does not list, a file removed.
    extra = evidence.verify_zip(services, _rezip({**files, "ocsp/9.der": b"x"}))
    assert not extra.ok
    missing = dict(files)
    del missing[der_name]
    assert not evidence.verify_zip(services, _rezip(missing)).ok
    # Unpacked and re-zipped unchanged, as `zip -r` does (new user 12 item 10): the
    # directory entries are not files; the package stays valid. A "directory" entry with
    # bytes in it is still an unlisted file.
    folders = sorted({n.rsplit("/", 1)[0] + "/" for n in files if "/" in n})
    rezipped = evidence.verify_zip(services, _rezip_with_folders(folders, files))
    assert rezipped.ok, rezipped.problems
    stuffed = _rezip_with_folders(folders, files, folder_bytes=b"x")
    assert not evidence.verify_zip(services, stuffed).ok

    # The CLI checks the same, as a user runs it.
    good_zip, bad_zip = tmp_path / "good.zip", tmp_path / "bad.zip"
    good_zip.write_bytes(response.content)
    changed = dict(files)
    changed[der_name] = changed[der_name][:-1] + bytes([changed[der_name][-1] ^ 1])
    bad_zip.write_bytes(_rezip(changed))
    env = _env(services)
    ok = _cli(env, "evidence", "verify", str(good_zip))
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "hợp lệ" in ok.stdout
    # Both counts, so the record's evidence.files (with manifest.json) is not one "missing".
    assert f"{checked.files} tệp khớp" in ok.stdout
    assert f"cùng manifest.json: {checked.files + 1} tệp" in ok.stdout
    refused = _cli(env, "evidence", "verify", str(bad_zip))
    assert refused.returncode == 1
    assert der_name in refused.stderr

    # The export is audited.
    with services.db.transaction() as session:
        assert audit.verify(session).ok


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
        cwd=REPO,
    )


def test_every_flow_keeps_evidence(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """One-step at each level, and a batch: each stored signature has its evidence."""
    ids = [_sign(api, credentials, level)["signature_id"] for level in ("B-B", "B-LT")]
    batch = api.post(
        "/v1/signatures/batch",
        headers=_client(credentials),
        data={"profile": "agency-a-seal", "level": "B-T"},
        files=[
            ("files", (f"{i}.pdf", make_pdf(text=f"so {i}"), "application/pdf")) for i in (1, 2)
        ],
    )
    assert batch.status_code == 200, batch.text
    ids += [r["signature_id"] for r in batch.json()["results"]]
    with services.db.transaction() as session:
        for signature_id in ids:
            row = session.get(SignatureEvidence, signature_id)
            assert row is not None and row.check_status == "good", signature_id
            sig = session.get(Signature, signature_id)
            assert sig is not None and sig.field_name
            roles = set(
                session.scalars(
                    select(SignatureEvidenceItem.role).where(
                        SignatureEvidenceItem.signature_id == signature_id
                    )
                )
            )
            assert {"manifest", "certificate"} <= roles
    # The second signature was checked within the first one's judgement (cached until the
    # answers' nextUpdate): its evidence says so and carries the answers that judgement
    # relied on, the same bytes.
    first = _zip(api.get(f"/v1/signatures/{ids[0]}/evidence", headers=_client(credentials)).content)
    second = _zip(
        api.get(f"/v1/signatures/{ids[1]}/evidence", headers=_client(credentials)).content
    )
    assert json.loads(second["manifest.json"])["check"]["reused_judgement"] is True
    answers = sorted(n for n in first if n.startswith(("ocsp/", "crl/")))
    assert answers and [first[n] for n in answers] == [second.get(n) for n in answers]
    # B-B has no signature timestamp; the others do.
    record = api.get(f"/v1/signatures/{ids[0]}/evidence", headers=_client(credentials))
    assert not any(n.startswith("timestamp/") for n in _zip(record.content))
    record = api.get(f"/v1/signatures/{ids[1]}/evidence", headers=_client(credentials))
    assert "timestamp/signature-timestamp.tst" in _zip(record.content)


def test_bad_ids_and_another_agency(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    signed = _sign(api, credentials, "B-B")
    own = f"/v1/signatures/{signed['signature_id']}"
    other = _client(credentials, 1)
    missing = f"/v1/signatures/{uuid.uuid4()}"
    for suffix in ("", "/evidence"):
        got = api.get(own + suffix, headers=other)
        control = api.get(missing + suffix, headers=other)
        assert got.status_code == 404
        assert (got.status_code, got.content) == (control.status_code, control.content)
        assert got.json()["code"] == "SIGNATURE_NOT_FOUND"
        for malformed in ("x", "../../etc", "A" * 36, "%00"):
            bad = api.get(f"/v1/signatures/{malformed}{suffix}", headers=_client(credentials))
            assert bad.status_code == 404, malformed
    hold = {"enabled": True, "reason": "Vụ án số 12/2026"}
    got = api.put(own + "/legal-hold", headers=_admin(credentials, 1), json=hold)
    control = api.put(missing + "/legal-hold", headers=_admin(credentials, 1), json=hold)
    assert (got.status_code, got.content) == (control.status_code, control.content) != 200
    # A client key (not admin) cannot set holds.
    assert api.put(own + "/legal-hold", headers=_client(credentials), json=hold).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {"document_kind": "seal", "years": 0},
        {"document_kind": "seal", "years": 101},
        {"document_kind": "seal", "years": -5},
        {"document_kind": "hop-dong", "years": 5},
        {"document_kind": "../seal", "years": 5},
    ],
)
def test_bad_retention_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], body: dict[str, Any]
) -> None:
    response = api.put("/v1/admin/evidence-retention", headers=_admin(credentials), json=body)
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "INVALID_RETENTION"
    assert response.json()["message"].startswith("Thời hạn lưu trữ")
    for wrong in ({"document_kind": "seal", "years": "muoi"}, {"document_kind": "seal"}):
        answer = api.put("/v1/admin/evidence-retention", headers=_admin(credentials), json=wrong)
        assert answer.status_code == 422


def _purge_setup(api: Any, services: Services, credentials: dict[str, Any]) -> dict[str, Any]:
    """Four signatures: one plain, one held itself, one whose signed document is held, one
    under a longer agency retention."""
    made = {k: _sign(api, credentials, "B-T") for k in ("plain", "held", "doc_held", "long")}
    admin = _admin(credentials)
    hold = {"enabled": True, "reason": "Thanh tra"}
    sig_hold = api.put(
        f"/v1/signatures/{made['held']['signature_id']}/legal-hold", headers=admin, json=hold
    )
    assert sig_hold.status_code == 200, sig_hold.text
    assert sig_hold.json()["legal_hold"] is True
    doc_hold = api.put(
        f"/v1/documents/{made['doc_held']['document']['id']}/legal-hold", headers=admin, json=hold
    )
    assert doc_hold.status_code == 200, doc_hold.text
    return made


def _evidence_objects(services: Services) -> set[str]:
    return set(services.store.list(evidence.PREFIX))


def test_purge_removes_expired_evidence_only(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    made = _purge_setup(api, services, credentials)
    # "long": 30 years for every kind of this agency… except the default kind rows below.
    admin = _admin(credentials)
    set_all = api.put(
        "/v1/admin/evidence-retention", headers=admin, json={"document_kind": "*", "years": 30}
    )
    assert set_all.status_code == 200, set_all.text
    with services.db.transaction() as session:
        kind = session.get(SignatureEvidence, made["plain"]["signature_id"]).document_kind
        # The others are of the same kind: give the three short ones their own (agency)
        # retention by moving "long" to another kind.
        session.execute(
            update(SignatureEvidence)
            .where(SignatureEvidence.signature_id == made["long"]["signature_id"])
            .values(document_kind="annex" if kind != "annex" else "copy")
        )
    short = api.put(
        "/v1/admin/evidence-retention", headers=admin, json={"document_kind": kind, "years": 5}
    )
    assert short.status_code == 200, short.text
    record = api.get(
        f"/v1/signatures/{made['plain']['signature_id']}", headers=_client(credentials)
    )
    assert record.json()["retention"]["years"] == 5
    assert record.json()["retention"]["source"] == "agency_kind"

    before = _evidence_objects(services)
    with services.db.transaction() as session:
        own = session.scalars(
            select(SignatureEvidenceItem).where(
                SignatureEvidenceItem.signature_id == made["plain"]["signature_id"],
                SignatureEvidenceItem.role.in_(("manifest", "timestamp")),
            )
        ).all()
    # The signature's own files are in their rows (checked against their hashes), not objects.
    assert {i.role for i in own} == {"manifest", "timestamp"}
    for item in own:
        assert item.content is not None
        assert hashlib.sha256(item.content).hexdigest() == item.sha256
        assert evidence.object_key(item.sha256) not in before
    # Nothing has expired today.
    today = evidence.purge(services, dry_run=False, actor="test")
    assert (today.purged, today.held, today.kept) == ([], [], 4)
    # The two holds are counted while in term (new user 12 item 9: "held" showed 0 right
    # after a hold was set).
    assert today.kept_held == 2

    # Six years on (the clock moved): "plain" expired; the two held ones expired but stay.
    with time_machine.travel(datetime.now(UTC) + timedelta(days=6 * 366), tick=False):
        dry = evidence.purge(services, actor="test")
        assert dry.dry_run
        assert [p["signature_id"] for p in dry.purged] == [made["plain"]["signature_id"]]
        assert sorted(h["signature_id"] for h in dry.held) == sorted(
            made[k]["signature_id"] for k in ("held", "doc_held")
        )
        assert dry.kept == 1 and dry.kept_held == 0
        assert _evidence_objects(services) == before  # a dry run deletes nothing

        done = evidence.purge(services, dry_run=False, actor="test")
        assert [p["signature_id"] for p in done.purged] == [made["plain"]["signature_id"]]
    headers = _client(credentials)
    gone = api.get(f"/v1/signatures/{made['plain']['signature_id']}/evidence", headers=headers)
    assert gone.status_code == 410
    assert gone.json()["code"] == "EVIDENCE_PURGED"
    record = api.get(f"/v1/signatures/{made['plain']['signature_id']}", headers=headers).json()
    assert record["evidence"]["kept"] is False and record["evidence"]["purged_at"]
    # What the others rely on is still there and still verifies; only "plain"'s own files
    # (its manifest, its timestamp token) left the store.
    for key in ("held", "doc_held", "long"):
        kept = api.get(f"/v1/signatures/{made[key]['signature_id']}/evidence", headers=headers)
        assert kept.status_code == 200, kept.text
        assert evidence.verify_zip(services, kept.content).ok
    after = _evidence_objects(services)
    # "plain"'s own files (manifest.json, its timestamp token) were kept in its rows, not as
    # objects: its rows are gone with them; every object it used is shared with the others.
    assert after == before
    assert done.removed_objects == []
    with services.db.transaction() as session:
        left = session.scalars(
            select(SignatureEvidenceItem).where(
                SignatureEvidenceItem.signature_id == made["plain"]["signature_id"]
            )
        ).all()
    assert left == []
    with services.db.transaction() as session:
        referenced = evidence.referenced_keys(session)
        assert after == referenced  # nothing referenced was deleted, no orphan left
        chain = audit.verify(session)
    assert chain.ok, chain.problems

    # Holds cleared: thirty-one years on, everything goes, and the store is empty of evidence.
    admin = _admin(credentials)
    off = {"enabled": False}
    assert (
        api.put(
            f"/v1/signatures/{made['held']['signature_id']}/legal-hold", headers=admin, json=off
        ).json()["legal_hold"]
        is False
    )
    api.put(
        f"/v1/documents/{made['doc_held']['document']['id']}/legal-hold", headers=admin, json=off
    )
    with time_machine.travel(datetime.now(UTC) + timedelta(days=31 * 366), tick=False):
        last = evidence.purge(services, dry_run=False, actor="test")
    assert len(last.purged) == 3 and not last.held
    assert _evidence_objects(services) == set()
    with services.db.transaction() as session:
        chain = audit.verify(session)
    assert chain.ok, chain.problems


def test_purge_cli_dry_run_then_yes(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The operator's command: dry run by default (says what it would remove and what is
    held), ``--yes`` removes, audited once; a signature made long ago (its signing time set
    back in the database, as after years of operation) is what expires."""
    made = _purge_setup(api, services, credentials)
    old = datetime.now(UTC) - timedelta(days=11 * 366)
    with services.db.transaction() as session:
        session.execute(update(Signature).values(signed_at=old))
    env = _env(services)
    dry = _cli(env, "evidence", "purge")
    assert dry.returncode == 0, dry.stderr
    assert "chạy thử" in dry.stdout
    assert made["plain"]["signature_id"] in dry.stdout
    assert "phong tỏa" in dry.stdout
    with services.db.transaction() as session:
        assert session.get(SignatureEvidence, made["plain"]["signature_id"]).purged_at is None
    done = _cli(env, "evidence", "purge", "--yes", "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert {p["signature_id"] for p in report["purged"]} == {
        made[k]["signature_id"] for k in ("plain", "long")
    }
    assert {h["signature_id"] for h in report["held"]} == {
        made[k]["signature_id"] for k in ("held", "doc_held")
    }
    with services.db.transaction() as session:
        purges = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "evidence.purged")
        ).all()
        chain = audit.verify(session)
    assert chain.ok, chain.problems
    assert len(purges) == 1
    assert json.loads(purges[0].details)["purged"] == 2
    # storage reconcile finds nothing to remove: no orphan, nothing referenced missing.
    reconcile = _cli(env, "storage", "reconcile", "--min-age", "0", "--json")
    assert reconcile.returncode == 0, reconcile.stderr
    assert json.loads(reconcile.stdout)["orphan_objects"] == []


def test_storage_reconcile_keeps_evidence_and_removes_its_orphans(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    from signing_service.services.attachments import reconcile

    _sign(api, credentials, "B-T")
    before = _evidence_objects(services)
    orphan = evidence.object_key("ab" * 32)
    services.store.put(orphan, b"left by a crash")
    report = reconcile(services, min_age=timedelta(0))
    assert report.orphan_objects == [orphan]
    assert _evidence_objects(services) == before


def test_two_step_completion_keeps_the_officers_evidence(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The two-step flow: the officer's certificate, checked again at completion, is the one
    whose evidence is kept."""
    import base64

    from cryptography.hazmat.primitives.asymmetric import utils
    from cryptography.hazmat.primitives.serialization import pkcs12

    from signing_service.settings import DEV_KEY_PASSPHRASE

    pki = services.dev_pki
    assert pki is not None
    key, cert, _ = pkcs12.load_key_and_certificates(
        pki.p12_path("officer").read_bytes(), DEV_KEY_PASSPHRASE.encode()
    )
    assert isinstance(key, rsa.RSAPrivateKey) and cert is not None
    started = api.post(
        "/v1/signatures/external",
        headers=_client(credentials),
        data={"profile": "agency-a-officer", "level": "B-T"},
        files={
            "file": ("to-trinh.pdf", make_pdf(), "application/pdf"),
            "certificate": ("officer.pem", pki.cert_path("officer").read_bytes()),
        },
    )
    assert started.status_code == 201, started.text
    session = started.json()
    digest = base64.b64decode(session["digest"])
    value = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    done = api.post(
        session["complete_url"],
        headers=_client(credentials),
        json={"signature": base64.b64encode(value).decode()},
    )
    assert done.status_code == 201, done.text
    signature_id = done.json()["signature_id"]
    files = _zip(
        api.get(f"/v1/signatures/{signature_id}/evidence", headers=_client(credentials)).content
    )
    assert files["certificates/0-signer.der"] == pki.cert("officer").dump()
    assert "timestamp/signature-timestamp.tst" in files
    manifest = json.loads(files["manifest.json"])
    assert manifest["check"]["status"] == "good"
    assert manifest["signature"]["field_name"]


def test_hold_reason_is_checked_and_the_seal_must_be_configured(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    tmp_path: Path,
    database_url: str,
) -> None:
    """A reason with a control character or over 500 characters is refused (422, nothing
    held); a seal key naming no active key answers REPORT_NOT_CONFIGURED for the evidence
    ZIP, while the record still answers."""
    from signing_service import errors
    from signing_service.store.models import Agency, LegalHold
    from tests.conftest import make_settings

    signed = _sign(api, credentials, "B-B")
    url = f"/v1/signatures/{signed['signature_id']}/legal-hold"
    for reason in ("Thanh tra\x00", "x" * 501, "dòng 1\ndòng 2"):
        answer = api.put(url, headers=_admin(credentials), json={"enabled": True, "reason": reason})
        assert answer.status_code == 422, reason
    with services.db.transaction() as session:
        assert session.scalars(select(LegalHold)).first() is None

    assert services.dev_pki is not None
    pki_port = services.settings.dev_pki_port
    other = Services.build(
        make_settings(
            tmp_path,
            database_url,
            (services.dev_pki, pki_port),
            report_seal_key="000.00.12.H12/khong-co-khoa",
        )
    )
    try:
        with other.db.transaction() as session:
            agency = session.scalars(select(Agency).where(Agency.code == "000.00.12.H12")).one()
        with pytest.raises(errors.ReportNotConfigured) as refused:
            evidence.evidence_zip(other, agency, signed["signature_id"], actor="test")
        assert "bằng chứng" in refused.value.message
        record = evidence.signature_record(other, agency.id, signed["signature_id"])
        assert record["evidence"]["kept"] is True
    finally:
        other.close()


@pytest.mark.slow
def test_purge_racing_signatures_never_loses_a_referenced_object(
    services: Services, credentials: dict[str, Any]
) -> None:
    """Signatures stored while purges remove the (shared) evidence objects of older ones: the
    chain's certificates are the same objects for all of them. Afterwards every object a row
    refers to is in the store, and the newest evidence verifies (the lock protocol of
    services/evidence.py: release_objects and _ensure_shared)."""
    import threading

    from signing_service.services.signing import sign_document
    from signing_service.store.models import Agency

    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == "000.00.12.H12")).one()
    made: list[str] = []
    failures: list[BaseException] = []
    signing_done = threading.Event()

    def signer() -> None:
        try:
            for i in range(8):
                result = sign_document(
                    services,
                    agency,
                    profile_name="agency-a-seal",
                    pdf=make_pdf(text=f"Quyet dinh {i}"),
                    level="B-B",
                    actor="test",
                )
                made.append(result.signature_id)
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            failures.append(e)
        finally:
            signing_done.set()

    def purger() -> None:
        try:
            while not signing_done.is_set():
                # Everything signed so far is made old: the purge removes it all, and with it
                # every object no newer row refers to.
                with services.db.transaction() as session:
                    session.execute(
                        update(Signature).values(
                            signed_at=datetime.now(UTC) - timedelta(days=20 * 366)
                        )
                    )
                evidence.purge(services, dry_run=False, actor="test")
        except BaseException as e:  # noqa: BLE001 - reported by the test below
            failures.append(e)

    threads = [threading.Thread(target=signer), threading.Thread(target=purger)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    assert not failures, failures
    assert len(made) == 8
    with services.db.transaction() as session:
        referenced = evidence.referenced_keys(session)
        chain = audit.verify(session)
    assert chain.ok, chain.problems
    stored = set(services.store.list(evidence.PREFIX))
    assert referenced <= stored, sorted(referenced - stored)
    newest = sign_document(
        services,
        agency,
        profile_name="agency-a-seal",
        pdf=make_pdf(text="Sau cung"),
        level="B-B",
        actor="test",
    )
    data = evidence.evidence_zip(services, agency, newest.signature_id, actor="test")
    assert evidence.verify_zip(services, data).ok


# PostgreSQL only: SQLite takes its write lock for every transaction, reads included, so the
# signature cannot get past its first read while the lock is held and the interleaving cannot
# be forced there.
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_an_object_purged_while_a_signature_relies_on_it_is_written_again(
    services: Services, database_url: str
) -> None:
    """The interleaving the lock protocol exists for, forced: a signature finds the CA's
    certificate already stored (shared), then waits for the audit chain's lock while a purge
    removes the last row referring to that object and the object itself. The signature's
    transaction writes it again (evidence._ensure_shared): its evidence is complete."""
    import threading
    import time

    from signing_service.services.signing import sign_document
    from signing_service.store.models import Agency, AuditHead

    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == "000.00.12.H12")).one()

    def sign(text: str) -> str:
        return sign_document(
            services,
            agency,
            profile_name="agency-a-seal",
            pdf=make_pdf(text=text),
            level="B-B",
            actor="test",
        ).signature_id

    first = sign("Truoc")
    with services.db.transaction() as session:
        ca = session.scalars(
            select(SignatureEvidenceItem.sha256).where(
                SignatureEvidenceItem.signature_id == first,
                SignatureEvidenceItem.name == "certificates/1-ca.der",
            )
        ).one()
    key = evidence.object_key(ca)
    assert services.store.exists(key)
    result: list[str] = []
    failures: list[BaseException] = []

    def second() -> None:
        try:
            result.append(sign("Sau"))
        except BaseException as e:  # noqa: BLE001 - reported below
            failures.append(e)

    with services.db.transaction() as session:
        # The chain's lock, as purge's object removal holds it.
        session.execute(select(AuditHead).where(AuditHead.id == 1).with_for_update()).first()
        worker = threading.Thread(target=second)
        worker.start()
        # The signature runs up to its audit entry (its objects checked: the CA's is there)
        # and waits for the lock.
        time.sleep(3)
        assert worker.is_alive() and not failures
        # The purge: the last row referring to the CA's certificate goes, then the object.
        session.execute(
            delete(SignatureEvidenceItem).where(SignatureEvidenceItem.signature_id == first)
        )
        session.execute(
            update(SignatureEvidence)
            .where(SignatureEvidence.signature_id == first)
            .values(purged_at=datetime.now(UTC), manifest_sha256=None)
        )
        services.store.delete(key)
    worker.join(120)
    assert not failures, failures
    assert services.store.exists(key), "the signature committed a reference to a lost object"
    data = evidence.evidence_zip(services, agency, result[0], actor="test")
    assert evidence.verify_zip(services, data).ok


def test_own_files_in_rows_and_files_of_older_rows_as_objects_read_back_alike(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The signature's own files (manifest.json, its timestamp token) are kept in their rows
    (revision 0016); rows from before keep them as objects: both give the same ZIP contents,
    and a file changed in its row is refused as one changed in the store is."""
    signed = _sign(api, credentials)
    signature_id = signed["signature_id"]
    headers = _client(credentials)
    url = f"/v1/signatures/{signature_id}/evidence"
    first = api.get(url, headers=headers)
    assert first.status_code == 200, first.text
    inline = _zip(first.content)
    assert {"manifest.json", "timestamp/signature-timestamp.tst"} <= set(inline)

    # As a row from before 0016 stores it: the file an object, the row without content.
    with services.db.transaction() as session:
        own = session.scalars(
            select(SignatureEvidenceItem).where(
                SignatureEvidenceItem.signature_id == signature_id,
                SignatureEvidenceItem.content.is_not(None),
            )
        ).all()
        assert {i.role for i in own} == {"manifest", "timestamp"}
        for item in own:
            services.store.put(evidence.object_key(item.sha256), item.content)
            item.content = None
    legacy = api.get(url, headers=headers)
    assert legacy.status_code == 200, legacy.text
    as_objects = _zip(legacy.content)
    assert {n: d for n, d in as_objects.items() if n != "manifest.json.p7s"} == {
        n: d for n, d in inline.items() if n != "manifest.json.p7s"
    }
    assert evidence.verify_zip(services, legacy.content).ok
    with services.db.transaction() as session:
        referenced = evidence.referenced_keys(session)
    assert {evidence.object_key(i.sha256) for i in own} <= referenced

    # Back in the row, changed: the hash check refuses it (500 STORAGE_INTEGRITY_ERROR).
    with services.db.transaction() as session:
        item = session.get(SignatureEvidenceItem, (signature_id, "manifest.json"))
        assert item is not None
        assert b'"good"' in inline["manifest.json"]
        item.content = inline["manifest.json"].replace(b'"good"', b'"gooD"')
    changed = api.get(url, headers=headers)
    assert changed.status_code == 500
    assert changed.json()["code"] == "STORAGE_INTEGRITY_ERROR"
    # Left as found for the other tests: the genuine file in its row, no orphan object.
    with services.db.transaction() as session:
        item = session.get(SignatureEvidenceItem, (signature_id, "manifest.json"))
        assert item is not None
        item.content = inline["manifest.json"]
        services.store.delete(evidence.object_key(item.sha256))
    assert api.get(url, headers=headers).status_code == 200


def test_a_manifest_rewritten_in_the_database_alone_is_not_sealed(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Red team 14 F3: manifest.json lives in its row with its hash beside it, so a
    database-only writer can rewrite content, item hash and the signature's manifest_sha256
    together. The export compares the manifest with the keyed ``signature.created`` audit
    entry and refuses (500 STORAGE_INTEGRITY_ERROR) instead of sealing the forgery; an audit
    entry edited to match (its MAC not recomputable without the key) is refused too."""
    signed = _sign(api, credentials)
    signature_id = signed["signature_id"]
    headers = _client(credentials)
    url = f"/v1/signatures/{signature_id}/evidence"
    genuine = _zip(api.get(url, headers=headers).content)["manifest.json"]
    forged = genuine.replace(b'"good"', b'"gooD"')
    assert forged != genuine
    forged_sha = hashlib.sha256(forged).hexdigest()
    genuine_sha = hashlib.sha256(genuine).hexdigest()

    def rewrite(manifest: bytes, digest: str) -> None:
        with services.db.transaction() as session:
            item = session.get(SignatureEvidenceItem, (signature_id, "manifest.json"))
            assert item is not None
            item.content, item.sha256 = manifest, digest
            session.execute(
                update(SignatureEvidence)
                .where(SignatureEvidence.signature_id == signature_id)
                .values(manifest_sha256=digest)
            )

    rewrite(forged, forged_sha)
    answer = api.get(url, headers=headers)
    assert answer.status_code == 500, answer.text
    assert answer.json()["code"] == "STORAGE_INTEGRITY_ERROR"

    # The audit entry edited to agree (plain hash left; the MAC cannot be recomputed).
    with services.db.transaction() as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.subject == signature_id, AuditEntry.action == "signature.created"
            )
        ).one()
        original_details = entry.details
        entry.details = original_details.replace(genuine_sha, forged_sha)
        assert entry.details != original_details
    answer = api.get(url, headers=headers)
    assert answer.status_code == 500, answer.text
    assert answer.json()["code"] == "STORAGE_INTEGRITY_ERROR"

    # Put back: the genuine manifest is sealed again.
    with services.db.transaction() as session:
        entry = session.get(AuditEntry, entry.seq)
        assert entry is not None
        entry.details = original_details
    rewrite(genuine, genuine_sha)
    assert api.get(url, headers=headers).status_code == 200


def test_the_signers_signature_is_found_by_its_sid_bytes(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The evidence finds the new signature by its SignerInfo's issuer and serial compared as
    bytes, with the certificate itself in the SignedData; another certificate (the issuer's,
    a certificate with the signer's issuer and serial but other bytes) is not taken for it."""
    signed = _sign(api, credentials, level="B-B")
    pdf = api.get(signed["document"]["download_url"], headers=_client(credentials)).content
    (embedded,) = PdfFileReader(io.BytesIO(pdf)).embedded_regular_signatures
    signer = embedded.signer_cert
    assert evidence._names_certificate(embedded.signed_data, embedded.signer_info, signer)
    others = [
        c.chosen for c in embedded.signed_data["certificates"] if c.chosen.dump() != signer.dump()
    ]
    assert others  # the chain travels with the signature
    for other in others:
        assert not evidence._names_certificate(embedded.signed_data, embedded.signer_info, other)
    # Same issuer and serial, other bytes (another validity): named, but not the one carried.
    tbs = signer["tbs_certificate"].copy()
    tbs["validity"] = x509.Validity(
        {
            "not_before": x509.Time({"utc_time": datetime(2020, 1, 1, tzinfo=UTC)}),
            "not_after": x509.Time({"utc_time": datetime(2021, 1, 1, tzinfo=UTC)}),
        }
    )
    lookalike = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": signer["signature_algorithm"],
            "signature_value": signer["signature_value"],
        }
    )
    assert lookalike.serial_number == signer.serial_number
    assert lookalike.issuer.dump() == signer.issuer.dump()
    assert not evidence._names_certificate(embedded.signed_data, embedded.signer_info, lookalike)
    # And the facts the evidence keeps are the signature's.
    assert evidence.signature_facts(pdf, signer) == (embedded.field_name, None)


@pytest.mark.parametrize(
    ("level", "prepared"),
    [("B-B", False), ("B-T", False), ("B-LT", False), ("B-T", True)],
)
def test_what_the_engine_embedded_is_what_a_fresh_read_finds(
    services: Services, level: str, prepared: bool
) -> None:
    """The evidence takes the new signature's field name and CMS from the signing engine
    (engine.SignedFacts) instead of parsing the signed PDF again: they must be exactly what
    pyHanko reads from the stored document (the CMS byte for byte, the signature timestamp
    token, the field name), also when a later revision follows (B-LT's DSS) and when a
    prepared field is filled."""
    import functools

    from signing_service._async import run_sync
    from signing_service.settings import DEV_KEY_PASSPHRASE
    from signing_service.signing.engine import SignedFacts, SignOptions, async_sign_pdf
    from signing_service.signing.keys.pkcs12 import load_pkcs12_file
    from signing_service.signing.levels import SignatureLevel
    from signing_service.signing.tsa import PooledHTTPTimeStamper
    from tests.support.modifications import base_pdf

    pki = services.dev_pki
    assert pki is not None
    key = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    chosen = SignatureLevel.parse(level)
    pdf = base_pdf(empty_signature_field=True) if prepared else make_pdf()
    facts = SignedFacts()
    signed = run_sync(
        async_sign_pdf(
            pdf,
            key,
            SignOptions(level=chosen, field_name="ChuaKy" if prepared else None),
            timestamper=PooledHTTPTimeStamper(pki.tsa_url) if chosen.needs_timestamp else None,
            validation_context=(
                functools.partial(services.trust.validation_context, other_certs=key.chain)
                if chosen.needs_revocation_info
                else None
            ),
            facts=facts,
        )
    )
    (embedded,) = PdfFileReader(io.BytesIO(signed)).embedded_regular_signatures
    # /Contents holds the CMS DER, then the reservation's zero padding.
    contents = bytes(embedded.pkcs7_content)
    assert facts.signature_cms is not None
    assert contents.startswith(facts.signature_cms)
    assert not any(contents[len(facts.signature_cms) :])
    assert (
        cms.ContentInfo.load(facts.signature_cms)["content"].dump() == embedded.signed_data.dump()
    )
    assert facts.field_name == embedded.field_name
    if prepared:
        assert facts.field_name == "ChuaKy"
    shortcut = evidence.embedded_facts(facts.field_name, facts.signature_cms, key.signing_cert)
    read_back = evidence.signature_facts(signed, key.signing_cert)
    assert shortcut == read_back
    assert (shortcut[1] is not None) == chosen.needs_timestamp
    # Another certificate's: not taken for the signer's (the read-back decides instead).
    issuer = pki.cert("interm")
    assert evidence.embedded_facts(facts.field_name, facts.signature_cms, issuer) == (None, None)
