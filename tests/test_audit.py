"""The audit log is hash-chained, keyed (HMAC with a secret the database does not hold) and
sealed with RFC 3161 timestamps kept outside the database.

Every attack here is made the way someone with write access to the database (but not the
operator's audit key) would make it: rows edited, deleted, renumbered or swapped, and the
plain SHA-256 chain and the head recomputed so that the old, unkeyed check would pass. Each
test asserts that the plain chain alone is satisfied, and that the keyed check or the seals
are not."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, select, text, update
from sqlalchemy.orm import Session

from signing_service import audit
from signing_service.audit import GENESIS, AuditKey
from signing_service.audit.seals import Seal, load_seals, seal_head, statement, verify_log
from signing_service.pki.dev import DevPki
from signing_service.services.auth import authenticate, new_api_key
from signing_service.services.container import Services, StartupRefused
from signing_service.settings import Settings
from signing_service.store.models import AuditEntry, AuditHead, Signature
from tests.conftest import REPO, make_settings
from tests.support.pdfs import make_pdf

PLAIN_CODES = {"ENTRY_MISSING", "LINK_BROKEN", "HASH_MISMATCH", "HEAD_MISMATCH", "TRUNCATED"}


def _fill(services: Services, n: int = 6) -> None:
    with services.db.transaction() as session:
        for i in range(n):
            audit.append(
                session, actor="test", action="test.event", subject=f"s{i}", details={"i": i}
            )


def _report(services: Services, key: AuditKey | None = None) -> audit.ChainReport:
    assert services.audit_key is not None
    with services.db.transaction() as session:
        return verify_log(
            session,
            key or services.audit_key,
            seal_dir=services.settings.audit_seals_path,
            trust=services.trust,
        )


def _seal(services: Services, *, force: bool = False) -> Seal | None:
    assert services.audit_key is not None and services.dev_pki is not None
    return seal_head(
        services.db,
        services.audit_key,
        seal_dir=services.settings.audit_seals_path,
        tsa_url=services.dev_pki.tsa_url,
        trust=services.trust,
        force=force,
    )


def _last_seq(session: Session) -> int:
    return int(session.scalar(select(AuditEntry.seq).order_by(AuditEntry.seq.desc()).limit(1)))


def _rechain(session: Session, key: AuditKey | None = None) -> None:
    """What an attacker does after editing rows: recompute every plain hash (and, with a key
    of their own, every MAC) in order, and rewrite the head to match."""
    prev_hash, prev_mac, last = GENESIS, GENESIS, None
    for row in session.scalars(select(AuditEntry).order_by(AuditEntry.seq)).all():
        row.prev_hash = prev_hash
        row.hash = audit.entry_hash(
            row.seq,
            row.at,
            row.actor,
            row.agency_code,
            row.action,
            row.subject,
            row.details,
            prev_hash,
        )
        if key is not None:
            row.mac = audit.entry_mac(
                key,
                seq=row.seq,
                at=row.at,
                actor=row.actor,
                agency_code=row.agency_code,
                action=row.action,
                subject=row.subject,
                details=row.details,
                prev_hash=prev_hash,
                hash=row.hash,
                prev_mac=prev_mac,
            )
        session.flush()
        prev_hash, prev_mac, last = row.hash, row.mac or GENESIS, row
    head = session.get(AuditHead, 1)
    assert head is not None and last is not None
    head.seq, head.hash, head.mac = last.seq, last.hash, last.mac


def _plain_chain_passes(report: audit.ChainReport) -> bool:
    return not (report.codes() & PLAIN_CODES)


# -- intact ------------------------------------------------------------------------------------
def test_intact_chain_and_seals_verify(services: Services) -> None:
    _fill(services)
    first = _seal(services)
    assert first is not None and first.path.is_file()
    assert oct(first.path.stat().st_mode)[-3:] == "600"
    assert _seal(services) is None  # nothing new since
    _fill(services, 2)
    second = _seal(services)
    assert second is not None and second.previous_seal == first.imprint
    report = _report(services)
    assert report.ok, report.problems
    assert report.seals == 2 and report.last_sealed_seq == second.seq == report.last_seq
    assert report.keyed_from == 1 and not report.warnings
    with services.db.transaction() as session:
        macs = session.scalars(select(AuditEntry.mac)).all()
    assert macs and all(m and len(m) == 64 for m in macs)


def test_unsealed_tail_is_reported_as_a_warning(services: Services) -> None:
    _fill(services, 2)
    report = _report(services)
    assert report.ok and report.seals == 0
    assert any("Chưa có niêm phong" in w for w in report.warnings)
    _seal(services)
    _fill(services, 3)
    report = _report(services)
    assert report.ok
    assert any("3 bản ghi sau niêm phong cuối" in w for w in report.warnings)


# -- edited, deleted, reordered, truncated -----------------------------------------------------
def test_edited_entry_with_recomputed_hashes_is_detected(services: Services) -> None:
    _fill(services)
    with services.db.transaction() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(details='{"i":99}'))
        _rechain(session)
    report = _report(services)
    assert not report.ok
    assert _plain_chain_passes(report), report.problems  # the old check would have passed
    mismatches = [p for p in report.problems if p.code == "MAC_MISMATCH"]
    assert mismatches and mismatches[0].seq == 3
    assert "Bản ghi 3: mã xác thực (MAC) không khớp" in mismatches[0].message


def test_edited_entry_without_recomputation_is_detected_by_both_chains(
    services: Services,
) -> None:
    _fill(services)
    with services.db.transaction() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 3).values(actor="someone"))
    report = _report(services)
    assert {"HASH_MISMATCH", "MAC_MISMATCH"} <= report.codes()
    assert {p.seq for p in report.problems} == {3}


def test_deleted_entry_is_detected(services: Services) -> None:
    _fill(services)
    with services.db.transaction() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
    report = _report(services)
    assert "ENTRY_MISSING" in report.codes()


def test_deleted_and_renumbered_entry_with_recomputed_hashes_is_detected(
    services: Services,
) -> None:
    _fill(services)
    with services.db.transaction() as session:
        last = _last_seq(session)
        session.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
        for seq in range(4, last + 1):
            session.execute(update(AuditEntry).where(AuditEntry.seq == seq).values(seq=seq - 1))
        _rechain(session)
    report = _report(services)
    assert not report.ok and _plain_chain_passes(report), report.problems
    assert next(p.seq for p in report.problems if p.code == "MAC_MISMATCH") == 3


def test_reordered_pair_with_recomputed_hashes_is_detected(services: Services) -> None:
    _fill(services)
    fields = ("at", "actor", "action", "subject", "details", "mac")
    with services.db.transaction() as session:
        a, b = session.get(AuditEntry, 2), session.get(AuditEntry, 4)
        assert a is not None and b is not None
        va = {f: getattr(a, f) for f in fields}
        vb = {f: getattr(b, f) for f in fields}
        for f in fields:  # whole rows swapped, their MACs with them
            setattr(a, f, vb[f])
            setattr(b, f, va[f])
        session.flush()
        _rechain(session)
    report = _report(services)
    assert not report.ok and _plain_chain_passes(report), report.problems
    assert next(p.seq for p in report.problems if p.code == "MAC_MISMATCH") == 2


def test_truncated_tail_after_a_seal_is_detected(services: Services) -> None:
    _fill(services)
    sealed = _seal(services)
    assert sealed is not None
    with services.db.transaction() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq > sealed.seq - 2))
        # The head rewound to the new last entry: the database alone is consistent again.
        last = session.get(AuditEntry, sealed.seq - 2)
        assert last is not None
        session.execute(update(AuditHead).values(seq=last.seq, hash=last.hash, mac=last.mac))
    report = _report(services)
    assert report.codes() == {"TRUNCATED"}, report.problems
    assert f"xác nhận {sealed.seq} bản ghi" in report.problems[0].message
    assert f"chỉ còn đến bản ghi {sealed.seq - 2}" in report.problems[0].message


def test_truncated_tail_with_the_head_left_behind_is_detected(services: Services) -> None:
    _fill(services)
    with services.db.transaction() as session:
        session.execute(delete(AuditEntry).where(AuditEntry.seq == _last_seq(session)))
    assert "TRUNCATED" in _report(services).codes()


def test_sealing_refuses_a_log_tampered_since_the_last_seal(services: Services) -> None:
    from signing_service.audit.seals import SealRefused

    _fill(services)
    _seal(services)
    _fill(services, 2)
    with services.db.transaction() as session:
        last = _last_seq(session)
        session.execute(update(AuditEntry).where(AuditEntry.seq == last).values(actor="x"))
        _rechain(session)
    before = load_seals(services.settings.audit_seals_path)[0]
    with pytest.raises(SealRefused) as refused:
        _seal(services)
    assert "MAC_MISMATCH" in {p.code for p in refused.value.problems}
    assert len(load_seals(services.settings.audit_seals_path)[0]) == len(before)


# -- seals -------------------------------------------------------------------------------------
def _rewrite(seal: Seal, **changes: Any) -> None:
    data = json.loads(seal.path.read_text())
    data.update(changes)
    seal.path.write_text(json.dumps(data))


def test_edited_seal_is_detected(services: Services) -> None:
    _fill(services)
    sealed = _seal(services)
    assert sealed is not None
    # Point the seal at an earlier position, and make its own imprint consistent with that:
    # the timestamp was issued for the real statement, so it no longer matches.
    with services.db.transaction() as session:
        row = session.get(AuditEntry, 2)
        assert row is not None
        forged = statement(2, row.hash, str(row.mac), sealed.key_id, None)
    _rewrite(
        sealed,
        seq=2,
        head_hash=row.hash,
        head_mac=row.mac,
        imprint=hashlib.sha256(forged).hexdigest(),
    )
    report = _report(services)
    assert "SEAL_FORGED" in report.codes(), report.problems


def test_forged_seal_with_a_genuine_timestamp_is_detected(services: Services) -> None:
    """The TSA is a public service: anyone can timestamp a statement of their own. Without the
    audit key the statement's head MAC matches no entry."""
    _fill(services)
    sealed = _seal(services)
    assert sealed is not None
    _fill(services, 2)
    with services.db.transaction() as session:
        last = session.get(AuditEntry, _last_seq(session))
        assert last is not None
        seq, head_hash = last.seq, last.hash
    fake_mac = "ab" * 32
    digest = hashlib.sha256(
        statement(seq, head_hash, fake_mac, sealed.key_id, sealed.imprint)
    ).digest()
    import asyncio

    from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper

    assert services.dev_pki is not None
    token = asyncio.run(
        RequestsHTTPTimeStamper(services.dev_pki.tsa_url).async_timestamp(digest, "sha256")
    )
    path = services.settings.audit_seals_path / f"seal-{seq:012d}-forged.json"
    path.write_text(
        json.dumps(
            {
                "format": "signing-service-audit-seal/1",
                "seq": seq,
                "head_hash": head_hash,
                "head_mac": fake_mac,
                "key_id": sealed.key_id,
                "previous_seal": sealed.imprint,
                "imprint": digest.hex(),
                "tsa_url": services.dev_pki.tsa_url,
                "gen_time": sealed.gen_time,
                "token": base64.b64encode(token.dump()).decode(),
            }
        )
    )
    report = _report(services)
    assert report.codes() == {"SEAL_HEAD_MISMATCH"}, report.problems


def _self_made_tsa() -> tuple[Any, Any]:
    """A TSA certificate (timeStamping purpose) that chains to no trust anchor."""
    from asn1crypto import keys, x509
    from cryptography import x509 as cx
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = cx.Name([cx.NameAttribute(NameOID.COMMON_NAME, "TSA tự lập")])
    now = datetime.now(UTC)
    cert = (
        cx.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(cx.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(cx.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), critical=True)
        .sign(key, hashes.SHA256())
    )
    der_key = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return (
        x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)),
        keys.PrivateKeyInfo.load(der_key),
    )


def test_seal_from_an_untrusted_timestamp_server_is_detected(services: Services) -> None:
    import asyncio

    from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

    _fill(services)
    sealed = _seal(services)
    assert sealed is not None
    _fill(services, 1)
    assert services.audit_key is not None
    with services.db.transaction() as session:
        last = session.get(AuditEntry, _last_seq(session))
        assert last is not None and last.mac is not None
        seq, head_hash, head_mac = last.seq, last.hash, last.mac
    digest = hashlib.sha256(
        statement(seq, head_hash, head_mac, services.audit_key.key_id, sealed.imprint)
    ).digest()
    cert, key = _self_made_tsa()
    token = asyncio.run(DummyTimeStamper(cert, key).async_timestamp(digest, "sha256"))
    path = services.settings.audit_seals_path / f"seal-{seq:012d}-untrusted.json"
    path.write_text(
        json.dumps(
            {
                "format": "signing-service-audit-seal/1",
                "seq": seq,
                "head_hash": head_hash,
                "head_mac": head_mac,
                "key_id": services.audit_key.key_id,
                "previous_seal": sealed.imprint,
                "imprint": digest.hex(),
                "tsa_url": "http://tsa.example.invalid/",
                "gen_time": sealed.gen_time,
                "token": base64.b64encode(token.dump()).decode(),
            }
        )
    )
    report = _report(services)
    assert report.codes() == {"SEAL_TSA_UNTRUSTED"}, report.problems


def test_a_refused_new_seal_names_what_it_would_have_sealed(services: Services) -> None:
    """Newuser finding 16: sealing with a timestamp server that chains to no anchor was
    refused as "Niêm phong : …" (an empty name: the seal has no file yet)."""
    from signing_service.audit.seals import SealRefused
    from signing_service.trust import TrustStore

    assert services.audit_key is not None and services.dev_pki is not None
    _fill(services)
    with services.db.transaction() as session:
        seq = _last_seq(session)
    production_trust = TrustStore.load(services.settings.trust_anchors_file)  # no dev root
    with pytest.raises(SealRefused) as refused:
        seal_head(
            services.db,
            services.audit_key,
            seal_dir=services.settings.audit_seals_path,
            tsa_url=services.dev_pki.tsa_url,
            trust=production_trust,
        )
    (problem,) = refused.value.problems
    assert problem.code == "SEAL_TSA_UNTRUSTED"
    assert problem.message.startswith(
        f"Niêm phong mới (đến bản ghi {seq}, từ {services.dev_pki.tsa_url}): "
    ), problem.message
    assert load_seals(services.settings.audit_seals_path)[0] == []


def test_deleted_seal_and_garbage_seal_are_detected(services: Services) -> None:
    _fill(services, 2)
    first = _seal(services)
    _fill(services, 2)
    _seal(services)
    assert first is not None
    first.path.unlink()
    report = _report(services)
    assert report.codes() == {"SEAL_CHAIN_BROKEN"}, report.problems
    (services.settings.audit_seals_path / "seal-999-garbage.json").write_text("{not json")
    assert "SEAL_MALFORMED" in _report(services).codes()


def test_replaced_mac_secret_is_detected(services: Services) -> None:
    """The attacker re-MACs the whole log with a secret of their own and configures it."""
    _fill(services)
    assert _seal(services) is not None
    theirs = AuditKey("a-secret-the-attacker-chose-0123456789abcdef", source="test")
    with services.db.transaction() as session:
        session.execute(update(AuditEntry).where(AuditEntry.seq == 2).values(actor="someone"))
        _rechain(session, key=theirs)
    with_their_key = _report(services, key=theirs)
    # Under their key the chain itself is consistent; the seals are not.
    assert with_their_key.codes() == {"SEAL_KEY_MISMATCH", "SEAL_HEAD_MISMATCH"}, (
        with_their_key.problems
    )
    assert "khóa MAC đã bị thay" in " ".join(p.message for p in with_their_key.problems)
    with_ours = _report(services)
    assert "MAC_MISMATCH" in with_ours.codes()


# -- what the log accepts ----------------------------------------------------------------------
def test_secrets_and_contents_are_refused_in_details(services: Services) -> None:
    with services.db.transaction() as session, pytest.raises(ValueError):
        audit.append(session, actor="test", action="x", details={"passphrase": "p"})


def test_a_session_without_the_audit_key_cannot_append(services: Services) -> None:
    from signing_service.store.db import Database

    db = Database(services.settings.effective_database_url)
    try:
        with db.transaction() as session, pytest.raises(audit.AuditKeyMissing):
            audit.append(session, actor="test", action="x")
    finally:
        db.dispose()


def test_rolled_back_change_leaves_no_audit_entry(services: Services) -> None:
    _fill(services, 1)
    before = _report(services).entries
    with pytest.raises(RuntimeError), services.db.transaction() as session:
        audit.append(session, actor="test", action="x")
        raise RuntimeError("the change failed")
    report = _report(services)
    assert report.ok and report.entries == before


def test_concurrent_appends_keep_one_chain(services: Services) -> None:
    from concurrent.futures import ThreadPoolExecutor

    def worker(i: int) -> None:
        with services.db.transaction() as session:
            audit.append(session, actor="test", action="concurrent", details={"i": i})

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(worker, range(40)))
    report = _report(services)
    assert report.ok, report.problems


# -- upgrade: a log written before migration 0005 ----------------------------------------------
OLD_KEY, OLD_KEY_ID, OLD_KEY_HASH = new_api_key()


def _old_log(url: str, entries: int, *, edit: int | None = None) -> None:
    """A database at revision 0004 with a plain hash chain written the way 0004 wrote it."""
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import insert

    from signing_service.store.db import MIGRATIONS, make_engine

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(cfg, "0004")
    engine = make_engine(url)
    prev = GENESIS
    with engine.begin() as conn:
        for seq in range(1, entries + 1):
            at = datetime.now(UTC).isoformat(timespec="microseconds")
            details = json.dumps({"i": seq})
            digest = audit.entry_hash(seq, at, "old", None, "old.event", None, details, prev)
            row = {
                "seq": seq,
                "at": at,
                "actor": "old",
                "agency_code": None,
                "action": "old.event",
                "subject": None,
                "details": details,
                "prev_hash": prev,
                "hash": digest,
            }
            conn.execute(insert(AuditEntry.__table__).values(**row))  # type: ignore[arg-type]
            prev = digest
        conn.execute(insert(AuditHead.__table__).values(id=1, seq=entries, hash=prev))  # type: ignore[arg-type]
        if edit is not None:
            conn.execute(
                text("UPDATE audit_log SET actor = 'edited' WHERE seq = :seq"), {"seq": edit}
            )
        # An agency with a client key, as 0004 stored them (agency_id NOT NULL then).
        conn.execute(
            text(
                "INSERT INTO agencies (id, code, name, dev, created_at) "
                "VALUES (1, '000.00.55.H55', 'Cơ quan cũ', false, :now)"
            ),
            {"now": datetime.now(UTC)},
        )
        conn.execute(
            text(
                "INSERT INTO api_clients (agency_id, name, key_id, key_hash, role, created_at) "
                "VALUES (1, 'old client', :key_id, :key_hash, 'client', :now)"
            ),
            {"key_id": OLD_KEY_ID, "key_hash": OLD_KEY_HASH, "now": datetime.now(UTC)},
        )
    engine.dispose()


def test_old_log_is_keyed_once_at_upgrade(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    _old_log(database_url, 4)
    services = Services.build(make_settings(tmp_path, database_url, dev_pki))
    try:
        report = _report(services)
        assert report.ok, report.problems
        assert report.keyed_from == 5
        with services.db.transaction() as session:
            keyed = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "audit.keyed")
            ).one()
            assert keyed.seq == 5
            assert json.loads(keyed.details)["entries_keyed_after_the_fact"] == 4
            assert json.loads(keyed.details)["plain_chain_intact"] is True
            # Keyed once: building again changes nothing.
            assert audit.key_chain(session) is None
            # The agency key from before the upgrade still authenticates, and is listed.
            client = authenticate(session, f"Bearer {OLD_KEY}")
            assert (client.key_id, client.agency_id, client.expires_at) == (OLD_KEY_ID, 1, None)
    finally:
        services.close()


def test_keying_does_not_launder_an_earlier_edit(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    _old_log(database_url, 4, edit=2)
    services = Services.build(make_settings(tmp_path, database_url, dev_pki))
    try:
        report = _report(services)
        assert report.codes() == {"HASH_MISMATCH"} and report.problems[0].seq == 2
        with services.db.transaction() as session:
            keyed = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "audit.keyed")
            ).one()
        assert json.loads(keyed.details)["plain_chain_intact"] is False
    finally:
        services.close()


# -- the command line ----------------------------------------------------------------------------
@pytest.fixture
def env(tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]) -> dict[str, str]:
    pki, port = dev_pki
    return {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": database_url,
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
    }


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_audit_seal_and_verify_from_the_command_line(env: dict[str, str]) -> None:
    assert run(env, "migrate").returncode == 0
    made = run(env, "agency", "add", "000.00.77.H77", "Cơ quan kiểm thử nhật ký")
    assert made.returncode == 0, made.stderr
    sealed = run(env, "audit", "seal")
    assert sealed.returncode == 0, sealed.stderr
    assert "Đã niêm phong nhật ký kiểm toán đến bản ghi" in sealed.stdout
    again = run(env, "audit", "seal")
    assert again.returncode == 0 and "Không có bản ghi mới" in again.stdout
    verified = run(env, "audit", "verify")
    assert verified.returncode == 0, verified.stderr
    assert "chuỗi băm hợp lệ" in verified.stdout and "khớp 1 niêm phong" in verified.stdout

    from signing_service.store.db import Database

    db = Database(env["SIGNING_SERVICE_DATABASE_URL"])
    try:
        with db.transaction() as session:
            session.execute(update(AuditEntry).where(AuditEntry.seq == 1).values(actor="x"))
            _rechain(session)
    finally:
        db.dispose()
    broken = run(env, "audit", "verify")
    assert broken.returncode == 1
    assert "BỊ SỬA ĐỔI" in broken.stderr
    assert "Bản ghi 1: mã xác thực (MAC) không khớp" in broken.stderr
    assert "Traceback" not in broken.stderr
    as_json = json.loads(run(env, "audit", "verify", "--json").stdout)
    assert not as_json["ok"] and "MAC_MISMATCH" in {p["code"] for p in as_json["problems"]}
    refused = run(env, "audit", "seal")
    assert refused.returncode == 1 and "Không niêm phong" in refused.stderr


# -- production needs the operator's audit key ---------------------------------------------------
def _production(tmp_path: Path, **values: Any) -> Settings:
    return Settings(
        mode="production",
        data_dir=tmp_path,
        key_passphrase="s3cret-prod",
        database_url=f"sqlite:///{tmp_path}/m.db",
        **values,
    )


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({}, "SIGNING_SERVICE_AUDIT_KEY"),
        ({"audit_key": "too-short"}, "SIGNING_SERVICE_AUDIT_KEY quá ngắn"),
        (
            {"audit_key": "dev-audit-key:" + "0" * 64},
            "SIGNING_SERVICE_AUDIT_KEY là khóa nhật ký của chế độ phát triển",
        ),
    ],
    ids=["missing", "short", "development"],
)
def test_production_refuses_without_an_operator_audit_key(
    tmp_path: Path, values: dict[str, Any], named: str
) -> None:
    with pytest.raises(StartupRefused, match=named):
        Services.build(_production(tmp_path, **values))


def test_production_refuses_a_copied_development_key_file(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    dev = Services.build(make_settings(tmp_path, f"sqlite:///{tmp_path}/dev.db", dev_pki))
    dev.close()
    copied = tmp_path / "copied.key"
    copied.write_text(dev.settings.dev_audit_key_path.read_text())
    copied.chmod(0o600)  # private, as the operator's key file must be (else refused for that)
    from signing_service.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="khóa nhật ký của chế độ phát triển"):
        Services.build(_production(tmp_path / "prod", audit_key_file=copied))
    with pytest.raises(StartupRefused, match="SIGNING_SERVICE_AUDIT_KEY_FILE"):
        Services.build(
            _production(dev.settings.data_dir, audit_key_file=dev.settings.dev_audit_key_path)
        )


def test_production_without_an_audit_key_exits_6_naming_the_setting(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "SIGNING_SERVICE_MODE": "production",
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'metadata.db'}",
        "SIGNING_SERVICE_KEY_PASSPHRASE": "a-real-secret-from-the-vault",
    }
    env.pop("SIGNING_SERVICE_AUDIT_KEY", None)
    env.pop("SIGNING_SERVICE_AUDIT_KEY_FILE", None)
    for command in (("migrate",), ("serve", "--port", "1"), ("audit", "verify")):
        result = run(env, *command)
        assert result.returncode == 6, (command, result.stderr)
        assert "chưa đặt SIGNING_SERVICE_AUDIT_KEY" in result.stderr
        assert "Traceback" not in result.stderr
    key_file = tmp_path / "audit.key"
    key_file.write_text(hashlib.sha256(b"operator secret").hexdigest())
    key_file.chmod(0o600)
    env["SIGNING_SERVICE_AUDIT_KEY_FILE"] = str(key_file)
    assert run(env, "migrate").returncode == 0
    no_tsa = run(env, "audit", "seal")
    assert no_tsa.returncode == 6 and "SIGNING_SERVICE_AUDIT_TSA_URL" in no_tsa.stderr
    assert run(env, "audit", "verify").returncode == 0


def _migrate(
    settings: Settings,
    database_url: str,
    dev_pki: tuple[DevPki, int],
    *extra: str,
    audit_key: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`signing-service migrate` on ``settings``' deployment, as the operator runs it
    (``audit_key``: SIGNING_SERVICE_AUDIT_KEY for it)."""
    env = {
        **os.environ,
        **({"SIGNING_SERVICE_AUDIT_KEY": audit_key} if audit_key else {}),
        "SIGNING_SERVICE_DATA_DIR": str(settings.data_dir),
        "SIGNING_SERVICE_DATABASE_URL": database_url,
        "SIGNING_SERVICE_DEV_PKI_DIR": str(dev_pki[0].directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(dev_pki[1]),
    }
    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", "migrate", *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )


def test_a_log_stripped_of_its_macs_is_refused_not_keyed_again(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    """Red team (issue 9): delete an entry, recompute the plain chain, set every MAC and the
    head's MAC to NULL: the log looked like one from before keying, and the next append (or
    `migrate`, or the next start) MACed it as it stood; `audit verify` then passed. Now the
    marker beside the seals says the log was keyed: nothing keys it again, appends refuse,
    the service refuses to start and `audit verify` fails."""
    settings = make_settings(tmp_path, database_url, dev_pki)
    services = Services.build(settings)
    try:
        _fill(services)
        assert audit.keyed_marker(settings.audit_seals_path).exists()
        with services.db.transaction() as session:
            last = _last_seq(session)
            session.execute(delete(AuditEntry).where(AuditEntry.seq == 3))
            for seq in range(4, last + 1):
                session.execute(update(AuditEntry).where(AuditEntry.seq == seq).values(seq=seq - 1))
            _rechain(session)
            session.execute(update(AuditEntry).values(mac=None))
            session.execute(update(AuditHead).values(mac=None, keyed_from=None))
        with pytest.raises(audit.AuditNotKeyed), services.db.transaction() as session:
            audit.append(session, actor="test", action="test.trigger")
        report = _report(services)
        assert not report.ok
    finally:
        services.close()
    with pytest.raises(StartupRefused, match="đã từng được khóa"):
        Services.build(settings)
    migrated = _migrate(settings, database_url, dev_pki)
    assert migrated.returncode == 6 and "AUDIT_NOT_KEYED" in migrated.stderr, migrated.stderr
    with Services.build(settings, prepare=False).db.transaction() as session:
        assert session.scalar(select(AuditHead.mac)) is None  # still not keyed again


def test_a_stripped_log_is_refused_even_with_the_marker_file_deleted(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    """Red team 23b, R23B-4: as above, and the marker beside the seals deleted too: the next
    start or `migrate` keyed the edited log as one from before 0005, and `audit verify` said it
    was intact. Only the run whose migration crosses 0005 keys a log after the fact; past it,
    a log without MACs is refused, unless the operator says otherwise (`migrate
    --key-audit-log`, recorded in the log)."""
    settings = make_settings(tmp_path, database_url, dev_pki)
    services = Services.build(settings)
    try:
        _fill(services)
        with services.db.transaction() as session:
            session.execute(
                update(AuditEntry).where(AuditEntry.seq == 2).values(actor="client:000000")
            )
            _rechain(session)
            session.execute(update(AuditEntry).values(mac=None))
            session.execute(update(AuditHead).values(mac=None, keyed_from=None))
    finally:
        services.close()
    audit.keyed_marker(settings.audit_seals_path).unlink()
    with pytest.raises(StartupRefused, match="không có MAC"):
        Services.build(settings)
    refused = _migrate(settings, database_url, dev_pki)
    assert refused.returncode == 6 and "AUDIT_NOT_KEYED" in refused.stderr, refused.stderr
    with Services.build(settings, prepare=False).db.transaction() as session:
        assert session.scalar(select(AuditHead.mac)) is None
    # The operator's explicit choice keys it, and the log says so.
    forced = _migrate(settings, database_url, dev_pki, "--key-audit-log")
    assert forced.returncode == 0, forced.stderr
    services = Services.build(settings)
    try:
        with services.db.transaction() as session:
            keyed = session.scalars(
                select(AuditEntry).where(AuditEntry.action == "audit.keyed")
            ).one()
        assert json.loads(keyed.details)["forced_by_operator"] is True
    finally:
        services.close()


def test_an_unreachable_seal_tsa_is_told_in_vietnamese(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """Newuser finding 13: `audit seal` with a TSA that does not answer printed pyHanko's
    "Error in communication with timestamp server"."""
    from tests.support.postgres import free_port

    pki, port = dev_pki
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")},
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
        "SIGNING_SERVICE_AUDIT_TSA_URL": f"http://127.0.0.1:{free_port()}/",
    }
    # `pki init` makes the deployment (a log with entries to seal); other commands refuse a
    # missing data directory (red team 12 F10).
    assert run(env, "pki", "init").returncode == 0
    result = run(env, "audit", "seal")
    assert result.returncode == 4, result.stdout + result.stderr
    assert "TIMESTAMP_UNAVAILABLE" in result.stderr
    assert "không kết nối được tới máy chủ" in result.stderr
    assert "Error" not in result.stderr and "Traceback" not in result.stderr


def test_a_wiped_log_is_reported_and_refused_at_start(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    """Red team 23b, R23B-6: every audit row and the head deleted, no seal yet: `audit verify`
    said "intact: 0 entries", the next start began a new chain from genesis, and verify called
    that intact too. The signatures recorded before the log's first entry give it away; a start
    with the keyed marker present and no head refuses."""
    from signing_service.services.signing import sign_batch
    from signing_service.store.models import Agency

    settings = make_settings(tmp_path, database_url, dev_pki)
    services = Services.build(settings)
    try:
        with services.db.transaction() as session:
            agency = session.scalars(select(Agency).where(Agency.code == "000.00.12.H12")).one()
            session.expunge_all()
        signed = sign_batch(
            services,
            agency,
            profile_name="agency-a-seal",
            items=[("a.pdf", make_pdf())],
            actor="test",
        )
        assert not isinstance(signed[0], Exception), signed
        # Time passes: the log began days ago, the signature was made hours before the wipe
        # (the log rewritten with the service's own key, as it would have been written then).
        with services.db.transaction() as session:
            session.execute(
                update(AuditEntry).values(
                    at=(datetime.now(UTC) - timedelta(days=2)).isoformat(timespec="microseconds")
                )
            )
            _rechain(session, services.audit_key)
            session.execute(
                update(Signature).values(signed_at=datetime.now(UTC) - timedelta(hours=3))
            )
        intact = _report(services)
        assert intact.ok, intact.problems
        with services.db.transaction() as session:
            session.execute(delete(AuditEntry))
            session.execute(delete(AuditHead))
        assert "RECORDS_BEFORE_LOG" in _report(services).codes()
    finally:
        services.close()
    with pytest.raises(StartupRefused, match="không còn đầu chuỗi"):
        Services.build(settings)
    # The service left running through the wipe starts a new chain: still found.
    with Services.build(settings, prepare=False).db.transaction() as session:
        audit.append(session, actor="test", action="test.after-wipe")
    services = Services.build(settings)
    try:
        report = _report(services)
        assert "RECORDS_BEFORE_LOG" in report.codes() and not report.ok
    finally:
        services.close()


def test_a_replaced_audit_key_is_refused_at_start(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    """Red team 23b, R23B-7: with another audit key (a new server with another key file, a
    development key deleted and regenerated) the service went on appending entries MACed with
    it onto the old key's chain, so that no key verified the log any more. It refuses to
    start; the right key starts it again."""
    settings = make_settings(tmp_path, database_url, dev_pki, audit_key="a" * 64)
    services = Services.build(settings)
    try:
        _fill(services)
    finally:
        services.close()
    other = make_settings(tmp_path, database_url, dev_pki, audit_key="b" * 64)
    with pytest.raises(StartupRefused, match="không phải khóa đã ký"):
        Services.build(other)
    # `migrate` says it too (new user 23 #16: "không thay đổi", exit 0).
    migrated = _migrate(settings, database_url, dev_pki, audit_key="b" * 64)
    assert migrated.returncode == 6 and "không phải khóa đã ký" in migrated.stderr, migrated.stderr
    Services.build(settings).close()
