"""The key registry (issue 9, items 1-2): only the operator registers key material, each key is
checked before it is stored and bound to one agency, and keys the service holds are sealed in
its key store under a secret of their own."""

from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
import unicodedata
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from signing_service import errors
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.services.keys import (
    CscMaterial,
    OfficerMaterial,
    Pkcs12Material,
    list_keys,
    register_key,
)
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.store.models import AuditEntry, SigningKey, SigningProfile
from signing_service.verification.identity import same_organisation
from tests.conftest import REPO
from tests.support.keys import AGENCY_A, AGENCY_B, agency_id, key_id, officer_cert, p12
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.support.state import assert_nothing_written, snapshot
from tests.support.testpki import ROOT_NAME, SEAL_NAME, issue_certificate, new_key


def _rows(services: Services) -> list[tuple[str, str]]:
    with services.db.transaction() as session:
        return [(r.name, r.kind) for r in session.scalars(select(SigningKey)).all()]


def _sealed(services: Services) -> list[Path]:
    return sorted(services.settings.key_store_dir.glob("*.sealed"))


def _refusals(services: Services) -> list[dict[str, Any]]:
    with services.db.transaction() as session:
        rows = session.scalars(select(AuditEntry).where(AuditEntry.action == "key.refused"))
        return [json.loads(r.details) for r in rows]


def _p12_of(services: Services, label: str, passphrase: bytes = DEV_KEY_PASSPHRASE.encode()):
    assert services.dev_pki is not None
    return Pkcs12Material(services.dev_pki.p12_path(label).read_bytes(), passphrase)


def _ca_as_p12(services: Services) -> Pkcs12Material:
    """The dev intermediate CA's own key and certificate as a PKCS#12 (a CA posing as a seal)."""
    pki = services.dev_pki
    assert pki is not None
    key = serialization.load_pem_private_key(
        (pki.directory / "keys/interm.key.pem").read_bytes(), None
    )
    cert = cx.load_pem_x509_certificate(pki.cert_path("interm").read_bytes())
    data = pkcs12.serialize_key_and_certificates(
        b"ca",
        key,
        cert,
        None,
        serialization.BestAvailableEncryption(b"pw"),  # type: ignore[arg-type]
    )
    return Pkcs12Material(data, b"pw")


@pytest.mark.parametrize(
    ("make", "agency", "name", "code"),
    [
        (
            lambda s: OfficerMaterial(s.dev_pki.cert_path("interm").read_bytes()),
            AGENCY_A,
            "can-bo-ca",
            "CERTIFICATE_IS_CA",
        ),
        (
            lambda s: OfficerMaterial(s.dev_pki.cert_path("root").read_bytes()),
            AGENCY_A,
            "can-bo-goc",
            "CERTIFICATE_IS_CA",
        ),
        (_ca_as_p12, AGENCY_A, "con-dau-ca", "CERTIFICATE_IS_CA"),
        (lambda s: _p12_of(s, "revoked-signer"), AGENCY_A, "thu-hoi", "SIGNER_CERT_REVOKED"),
        (lambda s: _p12_of(s, "expired-signer"), AGENCY_A, "het-han", "SIGNER_CERT_EXPIRED"),
        (lambda s: _p12_of(s, "wrong-usage"), AGENCY_A, "ma-hoa", "SIGNER_CERT_KEY_USAGE"),
        # Extended key usage for timestamping only (RFC 3161): not a document signer (red team:
        # the TSA's certificate was accepted as an officer's and its signatures passed).
        (
            lambda s: OfficerMaterial(s.dev_pki.cert_path("tsa").read_bytes()),
            AGENCY_A,
            "can-bo-tsa",
            "SIGNER_CERT_KEY_USAGE",
        ),
        (lambda s: _p12_of(s, "weak-key"), AGENCY_A, "khoa-yeu", "ALGORITHM_NOT_ALLOWED"),
        (
            lambda s: OfficerMaterial(s.dev_pki.cert_path("revoked-signer").read_bytes()),
            AGENCY_A,
            "can-bo-thu-hoi",
            "SIGNER_CERT_REVOKED",
        ),
        (lambda s: _p12_of(s, "officer", b"sai-mat-khau"), AGENCY_A, "sai-mk", "KEY_UNREADABLE"),
        (lambda s: Pkcs12Material(b"khong phai pkcs12", b"x"), AGENCY_A, "rac", "KEY_UNREADABLE"),
        (
            lambda s: OfficerMaterial(b"-----BEGIN CERTIFICATE-----\nrac\n"),
            AGENCY_A,
            "rac-2",
            "KEY_UNREADABLE",
        ),
        (lambda s: _p12_of(s, "officer"), AGENCY_A, "Ten Sai", "INVALID_KEY_NAME"),
        (lambda s: _p12_of(s, "officer"), AGENCY_A, "agency-a-seal", "KEY_EXISTS"),
        # The same certificate (and key) for another agency, or twice for one.
        (lambda s: _p12_of(s, "agency-a-seal"), AGENCY_B, "con-dau-a", "KEY_ALREADY_REGISTERED"),
        (lambda s: officer_cert(s, "officer"), AGENCY_B, "an", "KEY_ALREADY_REGISTERED"),
        (lambda s: _p12_of(s, "officer"), "000.00.99.H99", "khac", "AGENCY_NOT_FOUND"),
        (lambda s: CscMaterial("khong-co", "x"), AGENCY_A, "tu-xa", "UNKNOWN_CSC_PROVIDER"),
        # New user 12 item 2: a commune's seal (O = UBND xã Demo B) for the department.
        (lambda s: _p12_of(s, "spare-seal"), AGENCY_A, "con-dau-xa", "KEY_ORGANIZATION_MISMATCH"),
    ],
    ids=[
        "ca-as-officer",
        "root-as-officer",
        "ca-as-seal",
        "revoked",
        "expired",
        "wrong-usage",
        "tsa-as-officer",
        "weak-key",
        "revoked-officer",
        "wrong-passphrase",
        "not-pkcs12",
        "not-a-certificate",
        "bad-name",
        "name-taken",
        "another-agencys-key",
        "another-agencys-officer",
        "unknown-agency",
        "unconfigured-provider",
        "another-organisations-seal",
    ],
)
def test_key_add_checks_before_storing(
    services: Services, make: Any, agency: str, name: str, code: str
) -> None:
    before, rows, sealed = snapshot(services), _rows(services), _sealed(services)
    with pytest.raises(errors.ServiceError) as info:
        register_key(services, agency_code=agency, name=name, material=make(services), actor="t")
    assert info.value.code == code
    assert DEV_KEY_PASSPHRASE not in info.value.message
    assert (_rows(services), _sealed(services)) == (rows, sealed)
    assert_nothing_written(before, services)
    if code != "AGENCY_NOT_FOUND":
        assert _refusals(services)[-1]["code"] == code  # audited


def test_keys_are_sealed_each_under_its_own_secret(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """No global passphrase: each key has its own data key; a sealed file opens only as the key
    (and agency) it was sealed for; the store is private to the service's user."""
    pki = services.dev_pki
    assert pki is not None
    store = services.settings.key_store_dir
    assert oct(store.stat().st_mode)[-3:] == "700"
    sealed = {p.stem: p for p in _sealed(services)}
    with services.db.transaction() as session:
        rows = {
            r.name: (r.uid, r.wrapped_key)
            for r in session.scalars(select(SigningKey).where(SigningKey.wrapped_key.is_not(None)))
        }
    assert {"agency-a-seal", "agency-b-seal"} <= set(rows)
    assert len({w for _, w in rows.values()}) == len(rows)  # one data key each
    for uid, _ in rows.values():
        assert oct(sealed[uid].stat().st_mode)[-3:] == "600"
    # Neither the private key nor the operator's passphrase is in clear anywhere in the store.
    key, _, _ = pkcs12.load_key_and_certificates(
        pki.p12_path("agency-a-seal").read_bytes(), DEV_KEY_PASSPHRASE.encode()
    )
    assert key is not None
    private = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for path in store.iterdir():
        data = path.read_bytes()
        assert private[-64:] not in data and DEV_KEY_PASSPHRASE.encode() not in data

    # Agency B's sealed file replaced by agency A's: B's profile does not open A's key.
    a_uid, b_uid = rows["agency-a-seal"][0], rows["agency-b-seal"][0]
    sealed[b_uid].write_bytes(sealed[a_uid].read_bytes())
    services.keys.forget(b_uid)
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][1]['api_key']}"},
        data={"profile": "agency-b-seal", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (503, "SIGNING_KEY_UNAVAILABLE")
    assert_nothing_written(before, services)

    # Another master secret opens nothing.
    (store / "dev-master.secret").write_bytes(b"another-master-secret")
    services.keys.forget(a_uid)
    response = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (503, "SIGNING_KEY_UNAVAILABLE")
    assert_nothing_written(before, services)


def test_a_profile_can_only_point_at_its_own_agencys_key(services: Services) -> None:
    """Enforced by the database itself (a composite foreign key), whatever writes the row."""
    a_key = key_id(services, "agency-a-seal", AGENCY_A)
    b = agency_id(services, AGENCY_B)
    with pytest.raises(IntegrityError), services.db.transaction() as session:
        session.add(SigningProfile(agency_id=b, name="muon-khoa-a", key_id=a_key))
    with pytest.raises(IntegrityError), services.db.transaction() as session:
        row = session.get(SigningKey, a_key)
        assert row is not None
        row.agency_id = b


def test_disabled_key_stops_its_profiles(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    from signing_service.services.keys import disable_key

    # Signed with first: the opened key is cached; the disabled row must still refuse the
    # very next request (the registry row is the authority, read on every signature).
    first = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert first.status_code == 201, first.text
    view = disable_key(services, agency_code=AGENCY_A, name="agency-a-seal", actor="test")
    assert view.disabled_at is not None
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "agency-a-seal"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (422, "PROFILE_KEY_MISSING")
    assert_nothing_written(before, services)
    names = [
        k["name"]
        for k in api.get(
            "/v1/admin/keys",
            headers={"Authorization": f"Bearer {credentials['agencies'][0]['admin_api_key']}"},
        ).json()
    ]
    assert "agency-a-seal" not in names
    # The name stays taken; the certificate may be registered again under a new name.
    with pytest.raises(errors.KeyExists):
        register_key(
            services,
            agency_code=AGENCY_A,
            name="agency-a-seal",
            material=p12(services, "agency-a-seal"),
            actor="test",
        )
    register_key(
        services,
        agency_code=AGENCY_A,
        name="con-dau-moi",
        material=p12(services, "agency-a-seal"),
        actor="test",
    )
    listed = {(k.name, k.disabled_at is None) for k in list_keys(services, AGENCY_A)}
    assert {("agency-a-seal", False), ("con-dau-moi", True)} <= listed
    with pytest.raises(errors.KeyNotRegistered):
        disable_key(services, agency_code=AGENCY_B, name="con-dau-moi", actor="test")


# The command line, as the operator runs it.


@pytest.fixture
def dev_env(tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]) -> dict[str, str]:
    pki, port = dev_pki
    (tmp_path / "var").mkdir(exist_ok=True)  # commands refuse a missing one (red team 12 F10)
    from tests.conftest import SOFTHSM_DIR

    return {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": database_url,
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
        "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(SOFTHSM_DIR or tmp_path / "no-softhsm"),
    }


def run(
    env: dict[str, str], *args: str, stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=180,
        cwd=REPO,
    )


def test_key_commands(dev_env: dict[str, str], dev_pki: tuple[DevPki, int]) -> None:
    pki, _ = dev_pki
    listed = run(dev_env, "key", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    names = {(k["agency_code"], k["name"]) for k in json.loads(listed.stdout)}
    assert {
        (AGENCY_A, "agency-a-seal"),
        (AGENCY_A, "nguyen-van-an"),
        (AGENCY_B, "agency-b-seal"),
    } <= names

    # The certificate's O is Sở Tư pháp tỉnh Demo A, the agency UBND xã Demo B (new user 12
    # item 2): refused, then registered with the operator's audited reason.
    officer_b = ("--name", "tran-thi-binh", "--officer-cert", str(pki.cert_path("officer-remote")))
    other = run(dev_env, "key", "add", "--agency", AGENCY_B, *officer_b)
    assert other.returncode == 5 and "KEY_ORGANIZATION_MISMATCH" in other.stderr
    assert "Sở Tư pháp tỉnh Demo A" in other.stderr and "UBND xã Demo B" in other.stderr
    added = run(
        dev_env,
        "key",
        "add",
        "--agency",
        AGENCY_B,
        *officer_b,
        "--allow-other-organization",
        "Cán bộ biệt phái sang xã",
    )
    assert added.returncode == 0, added.stderr
    assert "Đã đăng ký khóa tran-thi-binh" in added.stdout and "+07:00" in added.stdout

    refused = [
        (("--officer-cert", str(pki.cert_path("interm"))), "CERTIFICATE_IS_CA"),
        (
            ("--pkcs12", str(pki.p12_path("revoked-signer")), "--secret-stdin"),
            "SIGNER_CERT_REVOKED",
        ),
        (("--pkcs11", "pkcs11:token=demo-a-seal;id=zz", "--secret-stdin"), "INVALID_KEY_REFERENCE"),
        (
            ("--pkcs11", "pkcs11:token=t;object=k?module-path=/tmp/x.so", "--secret-stdin"),
            "INVALID_KEY_REFERENCE",
        ),
        (("--csc", "chi-mot-phan"), "INVALID_KEY_REFERENCE"),
        (("--csc", "khong-co,officer-1"), "UNKNOWN_CSC_PROVIDER"),
    ]
    for source, code in refused:
        result = run(
            dev_env,
            "key",
            "add",
            "--agency",
            AGENCY_A,
            "--name",
            "thu",
            *source,
            stdin=DEV_KEY_PASSPHRASE + "\n",
        )
        # The refusal is the last line (a development command first says which data
        # directory it uses).
        last = result.stderr.strip().splitlines()[-1]
        assert (result.returncode, last.split(":")[0]) == (5, code), result.stderr
        assert "Traceback" not in result.stderr
    # No secret given and no terminal to ask at: a usage error, nothing read.
    result = run(
        dev_env,
        "key",
        "add",
        "--agency",
        AGENCY_A,
        "--name",
        "thu",
        "--pkcs12",
        str(pki.p12_path("officer")),
        stdin="",
    )
    assert result.returncode == 3 and "--secret-env" in result.stderr
    assert run(dev_env, "key", "add", "--agency", AGENCY_A, "--name", "x").returncode == 3
    missing = run(
        dev_env,
        "key",
        "add",
        "--agency",
        AGENCY_A,
        "--name",
        "thu",
        "--officer-cert",
        "/khong/co.pem",
    )
    assert missing.returncode == 4

    disabled = run(dev_env, "key", "disable", "--agency", AGENCY_A, "--name", "agency-a-seal")
    assert disabled.returncode == 0, disabled.stderr
    # The seal again, under a new name, its passphrase from a variable the operator names.
    again = run(
        {**dev_env, "SEAL_PASSPHRASE": DEV_KEY_PASSPHRASE},
        "key",
        "add",
        "--agency",
        AGENCY_A,
        "--name",
        "con-dau-2026",
        "--pkcs12",
        str(pki.p12_path("agency-a-seal")),
        "--secret-env",
        "SEAL_PASSPHRASE",
    )
    assert again.returncode == 0, again.stderr
    assert DEV_KEY_PASSPHRASE not in again.stdout + again.stderr
    text = run(dev_env, "key", "list", "--agency", AGENCY_A)
    assert "agency-a-seal  [đã vô hiệu hóa]" in text.stdout
    assert "con-dau-2026  [đang dùng]" in text.stdout
    assert (
        run(dev_env, "key", "disable", "--agency", AGENCY_B, "--name", "con-dau-2026").returncode
        == 5
    )
    audit = run(dev_env, "audit", "verify")
    assert audit.returncode == 0, audit.stderr


# Production: an operator's own PKI, the key store's master secret, the whole flow.


@pytest.fixture
def crl_server() -> Iterator[tuple[str, dict[str, bytes]]]:
    """A CRL distribution point on loopback: serves ``files[path]``."""
    files: dict[str, bytes] = {}

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            self.send_header("Content-Type", "application/pkix-crl")
            self.end_headers()
            self.wfile.write(body or b"")

        def log_message(self, *_: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", files
    server.shutdown()
    server.server_close()


def test_production_registration_and_signing(
    tmp_path: Path, database_url: str, crl_server: tuple[str, dict[str, bytes]]
) -> None:
    from tests.support.server import ServiceProcess

    base_url, files = crl_server
    now = datetime.now(UTC)
    root_key, seal_key = new_key("rsa"), new_key("rsa")
    root = issue_certificate(
        ROOT_NAME,
        root_key,
        ROOT_NAME,
        root_key,
        ca=True,
        not_before=now - timedelta(days=30),
        not_after=now + timedelta(days=3650),
    )
    seal = issue_certificate(
        SEAL_NAME,
        seal_key,
        ROOT_NAME,
        root_key,
        issuer_cert=root,
        crl_url=f"{base_url}/root.crl",
        not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=365),
    )
    crl = (
        cx.CertificateRevocationListBuilder()
        .issuer_name(root.subject)
        .last_update(now - timedelta(minutes=1))
        .next_update(now + timedelta(days=7))
        .add_extension(
            cx.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()), False
        )  # type: ignore[arg-type]
        .add_extension(cx.CRLNumber(1), False)
        .sign(root_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    files["/root.crl"] = crl.public_bytes(serialization.Encoding.DER)
    root_pem = tmp_path / "root.pem"
    root_pem.write_bytes(root.public_bytes(serialization.Encoding.PEM))
    p12_file = tmp_path / "con-dau.p12"
    p12_file.write_bytes(
        pkcs12.serialize_key_and_certificates(
            b"con-dau",
            seal_key,
            seal,
            None,  # type: ignore[arg-type]
            serialization.BestAvailableEncryption(b"mat-khau-tep-p12"),
        )
    )
    env = {
        **os.environ,
        "SIGNING_SERVICE_MODE": "production",
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": database_url,
        "SIGNING_SERVICE_KEY_PASSPHRASE": "a-real-secret-from-the-vault",
        # Production keys the audit chain with the operator's secret (accounts lane).
        "SIGNING_SERVICE_AUDIT_KEY": "khoa-nhat-ky-cua-don-vi-van-hanh-" + "a" * 16,
        "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS": json.dumps(
            [{"file": str(root_pem), "kind": "public_duty"}]
        ),
        "P12_PASS": "mat-khau-tep-p12",
    }
    assert run(env, "migrate").returncode == 0
    assert run(env, "agency", "add", "000.00.12.H12", "Sở Tư pháp tỉnh Thử nghiệm").returncode == 0
    add = (
        "key",
        "add",
        "--agency",
        "000.00.12.H12",
        "--name",
        "con-dau",
        "--pkcs12",
        str(p12_file),
        "--secret-env",
        "P12_PASS",
    )
    no_master = run(env, *add)
    assert no_master.returncode == 6 and "SIGNING_SERVICE_KEY_STORE_SECRET" in no_master.stderr
    short = run({**env, "SIGNING_SERVICE_KEY_STORE_SECRET": "ngan"}, *add)
    assert short.returncode == 6 and "KEY_STORE_SECRET" in short.stderr
    master = "m" * 20 + "-bi-mat-chinh-cua-kho-khoa-2026"
    env["SIGNING_SERVICE_KEY_STORE_SECRET"] = master
    added = run(env, *add)
    assert added.returncode == 0, added.stderr
    ca = run(
        env,
        "key",
        "add",
        "--agency",
        "000.00.12.H12",
        "--name",
        "goc",
        "--officer-cert",
        str(root_pem),
    )
    assert ca.returncode == 5 and "CERTIFICATE_IS_CA" in ca.stderr
    store = tmp_path / "var" / "keys"
    assert oct(store.stat().st_mode)[-3:] == "700"
    assert all(oct(p.stat().st_mode)[-3:] == "600" for p in store.iterdir())
    admin = json.loads(
        run(
            env,
            "client",
            "add",
            "--agency",
            "000.00.12.H12",
            "--name",
            "QT",
            "--role",
            "admin",
            "--json",
        ).stdout
    )["api_key"]
    client = json.loads(
        run(env, "client", "add", "--agency", "000.00.12.H12", "--name", "MC", "--json").stdout
    )["api_key"]

    server = ServiceProcess(env, tmp_path / "server.log").start()
    try:
        made = requests.post(
            f"{server.url}/v1/admin/profiles",
            headers={"Authorization": f"Bearer {admin}"},
            json={"name": "con-dau-so", "key": "con-dau", "level": "B-B", "appearance": {}},
            timeout=60,
        )
        assert made.status_code == 201, made.text
        signed = requests.post(
            f"{server.url}/v1/signatures",
            headers={"Authorization": f"Bearer {client}"},
            data={"profile": "con-dau-so"},
            files={"file": ("qd.pdf", make_pdf())},
            timeout=60,
        )
        assert signed.status_code == 201, signed.text
        content = requests.get(
            server.url + signed.json()["document"]["download_url"],
            headers={"Authorization": f"Bearer {client}"},
            timeout=60,
        ).content
        report = requests.post(
            f"{server.url}/v1/verifications", files={"file": ("s.pdf", content)}, timeout=60
        ).json()
        assert report["verdict"] == "TOTAL_PASSED", report
        assert report["signatures"][0]["category"] == "public_duty"
    finally:
        server.stop()
    # The sealed key does not open with another master secret, or none: refused at start.
    for changed in ({"SIGNING_SERVICE_KEY_STORE_SECRET": "x" * 40}, {}):
        start_env = {k: v for k, v in env.items() if k != "SIGNING_SERVICE_KEY_STORE_SECRET"}
        refused = run({**start_env, **changed}, "key", "list")
        assert refused.returncode == 6, refused.stdout + refused.stderr
        assert "KEY_STORE_SECRET" in refused.stderr


# Migration 0006.


def _alembic(url: str) -> Any:
    from alembic.config import Config

    from signing_service.store.db import MIGRATIONS

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def test_migration_moves_profiles_and_the_bootstrap_rebinds_demo_keys(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    """Rows written before the registry: an ``external:`` profile becomes two-step; a profile
    with a key URI keeps its name and settings but no key (its URI is not followed); the dev
    bootstrap registers the demo keys and binds the demo profiles again."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import text

    from signing_service.store.db import make_engine
    from signing_service.store.models import Base
    from tests.conftest import make_settings

    command.upgrade(_alembic(database_url), "0004")
    engine = make_engine(database_url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO agencies (id, code, name, dev, created_at) VALUES "
                "(1, '000.00.12.H12', 'Sở Tư pháp tỉnh Demo A', :t, :now), "
                "(2, '000.00.77.H77', 'Cơ quan khác', :f, :now)"
            ),
            {"t": True, "f": False, "now": datetime.now(UTC)},
        )
        for agency, name, uri, dev in (
            (1, "agency-a-seal", "file:/var/pki/agency-a-seal.p12", True),
            (1, "agency-a-officer", "external:", True),
            (
                2,
                "hsm-cu",
                "pkcs11:token=x;object=y?module-path=/tmp/evil.so&pin-source=env:P",
                False,
            ),
        ):
            conn.execute(
                text(
                    "INSERT INTO signing_profiles (agency_id, name, key_uri, level, tsa_url, "
                    "reason, location, appearance, check_revocation, dev, created_at) VALUES "
                    "(:a, :n, :u, 'B-T', 'http://tsa.example/', 'Ký', 'Hà Nội', NULL, :f, :d, "
                    ":now)"
                ),
                {"a": agency, "n": name, "u": uri, "f": False, "d": dev, "now": datetime.now(UTC)},
            )
    engine.dispose()
    command.upgrade(_alembic(database_url), "head")
    engine = make_engine(database_url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        rows = conn.execute(
            text("SELECT name, key_id, two_step, tsa, reason FROM signing_profiles ORDER BY name")
        ).all()
    engine.dispose()
    assert diff == [], diff  # the migrations build exactly what the models describe
    assert [tuple(r) for r in rows] == [
        ("agency-a-officer", None, True, None, "Ký"),
        ("agency-a-seal", None, False, None, "Ký"),
        ("hsm-cu", None, False, None, "Ký"),
    ]
    # A profile without a key is listed and refuses to sign with its own code.
    services = Services.build(make_settings(tmp_path, database_url, dev_pki))
    try:
        with services.db.transaction() as session:
            bound = {p.name: p.key_id for p in session.scalars(select(SigningProfile)).all()}
        assert bound["agency-a-seal"] == key_id(services, "agency-a-seal", AGENCY_A)
        assert bound["hsm-cu"] is None and bound["agency-a-officer"] is None
        from signing_service.services.signing import sign_document
        from signing_service.store.models import Agency

        with services.db.transaction() as session:
            other = session.get(Agency, 2)
        assert other is not None
        with pytest.raises(errors.ProfileKeyMissing):
            sign_document(services, other, profile_name="hsm-cu", pdf=make_pdf(), actor="t")
    finally:
        services.close()


def test_other_organisation_needs_an_audited_reason(services: Services) -> None:
    """New user 12 item 2: a certificate whose subject O is not the agency's name is refused
    unless the operator gives a reason; the registration's audit entry keeps it and both
    names. The comparison ignores case, spacing and Unicode normalisation."""
    with pytest.raises(errors.ServiceError) as info:
        register_key(
            services,
            agency_code=AGENCY_A,
            name="con-dau-xa",
            material=_p12_of(services, "spare-seal"),
            actor="t",
            other_organisation_reason="   ",
        )
    assert info.value.code == "KEY_ORGANIZATION_MISMATCH"
    with pytest.raises(errors.ServiceError) as info:
        register_key(
            services,
            agency_code=AGENCY_A,
            name="con-dau-xa",
            material=_p12_of(services, "spare-seal"),
            actor="t",
        )
    assert "UBND xã Demo B" in info.value.message and "Sở Tư pháp tỉnh Demo A" in info.value.message
    view = register_key(
        services,
        agency_code=AGENCY_A,
        name="con-dau-xa",
        material=_p12_of(services, "spare-seal"),
        actor="t",
        other_organisation_reason="Xã sáp nhập vào Sở theo Quyết định 12/2026",
    )
    assert view.name == "con-dau-xa"
    with services.db.transaction() as session:
        entry = session.scalars(
            select(AuditEntry).where(
                AuditEntry.action == "key.registered", AuditEntry.subject == "con-dau-xa"
            )
        ).one()
        details = json.loads(entry.details)
    assert details["organization_override"] == {
        "reason": "Xã sáp nhập vào Sở theo Quyết định 12/2026",
        "certificate_organization": ["UBND xã Demo B"],
        "agency_name": "Sở Tư pháp tỉnh Demo A",
    }


def test_organisation_names_compare_normalised() -> None:
    assert same_organisation("Sở Tư pháp tỉnh Demo A", "  SỞ  TƯ PHÁP tỉnh demo a")
    assert same_organisation(
        unicodedata.normalize("NFD", "Sở Tư pháp tỉnh Demo A"), "Sở Tư pháp tỉnh Demo A"
    )
    assert not same_organisation("UBND xã Demo B", "Sở Tư pháp tỉnh Demo A")
