"""Production mode refuses development keys, development roots and default secrets."""

from __future__ import annotations

from pathlib import Path

import pytest

from signing_service.errors import ConfigurationError
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services, StartupRefused
from signing_service.settings import Settings
from signing_service.trust import TrustStore, TrustStoreError
from tests.conftest import REPO, make_settings
from tests.support.pdfs import make_pdf

# Production needs the operator's audit MAC secret (tests/test_audit.py: refused without it).
AUDIT_KEY = "operator-audit-secret-0123456789abcdef0123456789"


def test_production_does_not_need_the_dev_p12_passphrase(tmp_path: Path) -> None:
    """Newuser finding 14: production required SIGNING_SERVICE_KEY_PASSPHRASE, which only
    opens the dev PKI's PKCS#12 exports (never read in production: registered keys are sealed
    under SIGNING_SERVICE_KEY_STORE_SECRET)."""
    settings = Settings(
        mode="production",
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path}/m.db",
        audit_key=AUDIT_KEY,
    )
    assert settings.check_production() == []
    services = Services.build(settings)
    try:
        assert services.dev_pki is None
    finally:
        services.close()


def test_implicit_database_refused(tmp_path: Path) -> None:
    settings = Settings(mode="production", data_dir=tmp_path, key_passphrase="s3cret-prod")
    with pytest.raises(StartupRefused, match="DATABASE_URL"):
        Services.build(settings)


def test_dev_root_as_extra_anchor_refused(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    pki, _ = dev_pki
    settings = Settings(
        mode="production",
        data_dir=tmp_path,
        key_passphrase="s3cret-prod",
        database_url=f"sqlite:///{tmp_path}/m.db",
        dev_pki_dir=pki.directory,
        extra_trust_anchors=[pki.root_cert_path],
    )
    with pytest.raises(StartupRefused, match="PKI thử nghiệm"):
        Services.build(settings)


def test_database_with_dev_agencies_refused(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    url = f"sqlite:///{tmp_path}/m.db"
    Services.build(make_settings(tmp_path, url, dev_pki)).close()  # dev bootstrap ran
    settings = Settings(
        mode="production",
        data_dir=tmp_path,
        key_passphrase="s3cret-prod",
        database_url=url,
        audit_key=AUDIT_KEY,
    )
    with pytest.raises(StartupRefused, match="khóa của chế độ phát triển"):
        Services.build(settings)


def test_clean_production_starts_without_dev_root(tmp_path: Path) -> None:
    settings = Settings(
        mode="production",
        data_dir=tmp_path,
        key_passphrase="s3cret-prod",
        database_url=f"sqlite:///{tmp_path}/m.db",
        audit_key=AUDIT_KEY,
    )
    services = Services.build(settings)
    try:
        assert services.dev_pki is None
        assert not services.trust.has_dev_root
        assert not settings.dev_credentials_file.exists()
    finally:
        services.close()


def test_pinned_fingerprint_mismatch_refused(tmp_path: Path) -> None:
    manifest = (REPO / "certs/trust/anchors.json").read_text()
    (tmp_path / "vn").mkdir()
    (tmp_path / "vn/neac-mic-national-root-ca-2008.pem").write_text(
        (REPO / "certs/trust/vn/neac-mic-national-root-ca-2008.pem").read_text()
    )
    broken = manifest.replace(
        "CA918D635BB130BEC97639E6AABF7EDBC4EB1310F8058B9419F467AE0230AD8C", "00" * 32
    )
    (tmp_path / "anchors.json").write_text(broken)
    with pytest.raises(TrustStoreError, match="khác giá trị đã ghim"):
        TrustStore.load(tmp_path / "anchors.json")


def test_shipped_anchors_load() -> None:
    store = TrustStore.load(REPO / "certs/trust/anchors.json")
    assert "MIC National Root CA" in [a.name for a in store.anchors]  # all: tests/test_trust.py


def test_secrets_never_reach_logs(
    tmp_path: Path, dev_pki: tuple[DevPki, int], caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    caplog.set_level(logging.DEBUG)
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path}/m.db", dev_pki)
    services = Services.build(settings)
    services.close()
    secret = settings.key_passphrase.get_secret_value()
    assert secret not in caplog.text
    assert secret not in repr(settings)
    credentials = settings.dev_credentials_file.read_text()
    assert oct(settings.dev_credentials_file.stat().st_mode)[-3:] == "600"
    import json

    for agency in json.loads(credentials)["agencies"]:
        assert agency["api_key"] not in caplog.text


def test_production_deployment_from_the_command_line(tmp_path: Path) -> None:
    """An operator's first steps: migrate, add an agency and a client key, serve; the key
    stores an attachment. Also refuses the crash-test fault injection."""
    import json
    import os
    import subprocess
    import sys

    import requests

    from tests.support.server import ServiceProcess

    env = {
        "SIGNING_SERVICE_MODE": "production",
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'metadata.db'}",
        "SIGNING_SERVICE_KEY_PASSPHRASE": "a-real-secret-from-the-vault",
        "SIGNING_SERVICE_AUDIT_KEY": AUDIT_KEY,
    }

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signing_service.cli", *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )

    assert cli("migrate").returncode == 0
    added = cli("agency", "add", "000.00.12.H12", "Sở Tư pháp tỉnh Thử nghiệm")
    assert added.returncode == 0, added.stderr
    again = cli("agency", "add", "000.00.12.H12", "Trùng")
    assert again.returncode == 5 and "AGENCY_EXISTS" in again.stderr
    assert cli("agency", "add", "12.H12", "Sai mã").returncode == 5
    assert (
        "AGENCY_NOT_FOUND"
        in cli("client", "add", "--agency", "000.00.99.H99", "--name", "X").stderr
    )
    made = cli("client", "add", "--agency", "000.00.12.H12", "--name", "Một cửa", "--json")
    assert made.returncode == 0, made.stderr
    key = json.loads(made.stdout)["api_key"]

    env_crash = {**env, "SIGNING_SERVICE_CRASH_AT": "screened"}
    crash = subprocess.run(
        [sys.executable, "-m", "signing_service.cli", "migrate"],
        env={**os.environ, **env_crash},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )
    assert crash.returncode == 6 and "CRASH_AT" in crash.stderr

    server = ServiceProcess(env, tmp_path / "server.log").start()
    try:
        r = requests.post(
            f"{server.url}/v1/dossiers/000.00.12.H12-261127-0007/attachments",
            headers={"Authorization": f"Bearer {key}"},
            files={"file": ("don.pdf", make_pdf())},
            data={"component": "application"},
            timeout=60,
        )
        assert r.status_code == 201, r.text
        assert r.json()["retain_until"] is not None
    finally:
        server.stop()


def _production(tmp_path: Path, **values: object) -> Settings:
    return Settings(
        mode="production",
        data_dir=tmp_path / "prod",
        key_passphrase="s3cret-prod",
        database_url=f"sqlite:///{tmp_path}/prod.db",
        audit_key=AUDIT_KEY,
        **values,  # type: ignore[arg-type]
    )


def test_a_copy_of_this_machines_dev_root_is_refused(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """Issue 9: production started with the dev root as an anchor when it was a copied file
    (the path check only saw files inside the dev PKI directory)."""
    pki, _ = dev_pki
    copy = tmp_path / "etc" / "goc-tin-cay.pem"
    copy.parent.mkdir()
    copy.write_bytes(pki.root_cert_path.read_bytes())
    settings = _production(tmp_path, dev_pki_dir=pki.directory, extra_trust_anchors=[copy])
    assert settings.check_production() == []  # the path check does not see it
    with pytest.raises(StartupRefused, match="PKI thử nghiệm") as refused:
        Services.build(settings)
    from signing_service.trust import fingerprint, load_certs

    assert fingerprint(load_certs(pki.root_cert_path)[0]) in str(refused.value)


def test_another_machines_dev_root_is_refused_by_its_name(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """A dev root generated elsewhere has other keys (another fingerprint) but the name the
    dev PKI configuration gives it; no dev PKI exists on this production host."""
    from signing_service.pki.dev import init_dev_pki
    from signing_service.settings import DEV_KEY_PASSPHRASE

    elsewhere = init_dev_pki(
        tmp_path / "other-machine",
        REPO / "certs/dev/certomancer.yml",
        "http://127.0.0.1:1",
        DEV_KEY_PASSPHRASE.encode(),
    )
    copy = tmp_path / "goc.pem"
    copy.write_bytes(elsewhere.root_cert_path.read_bytes())
    pki, _ = dev_pki
    assert copy.read_bytes() != pki.root_cert_path.read_bytes()
    settings = _production(
        tmp_path, dev_pki_dir=tmp_path / "no-pki-here", extra_trust_anchors=[copy]
    )
    with pytest.raises(StartupRefused, match="PKI thử nghiệm"):
        Services.build(settings)


def test_data_directory_and_sqlite_file_are_private(tmp_path: Path) -> None:
    """Issue 9: var/metadata.db was world-readable."""
    import os
    import stat
    import subprocess
    import sys

    data = tmp_path / "var"
    env = {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(data),
        "SIGNING_SERVICE_DATABASE_URL": "",
    }
    env.pop("SIGNING_SERVICE_DATABASE_URL")
    # As `make run` creates them: the default database under the default data directory,
    # by `migrate` (serve runs it first), with the usual umask.
    result = subprocess.run(
        [sys.executable, "-m", "signing_service.cli", "migrate"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    assert stat.S_IMODE((data / "metadata.db").stat().st_mode) == 0o600
    # Existing ones are taken back.
    data.chmod(0o755)
    (data / "metadata.db").chmod(0o644)
    from tests import conftest

    # The session's SoftHSM2 directory: a second one in this process would re-initialise the
    # PKCS#11 library under the other tests' open sessions.
    settings = Settings(
        data_dir=data,
        dev_pki_dir=tmp_path / "pki",
        dev_softhsm_dir=conftest.SOFTHSM_DIR or tmp_path / "h",
    )
    services = Services.build(settings)
    try:
        with services.db.transaction() as session:
            from sqlalchemy import text

            session.execute(text("SELECT 1"))
    finally:
        services.close()
    assert stat.S_IMODE(data.stat().st_mode) == 0o700
    for name in ("metadata.db", "metadata.db-wal", "metadata.db-shm"):
        path = data / name
        if path.exists():
            assert stat.S_IMODE(path.stat().st_mode) == 0o600, name


def test_an_intermediate_is_never_an_anchor(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    """Red team F10: production accepted the dev PKI's intermediate CA as an extra anchor.
    Only a self-issued root is an anchor, in any mode; in production a self-signed certificate
    of the dev PKI's organization is refused as well."""
    pki, _ = dev_pki
    interm = tmp_path / "trung-gian.pem"
    interm.write_bytes(pki.cert_path("interm").read_bytes())
    with pytest.raises(TrustStoreError, match="không phải chứng thư gốc"):
        TrustStore.load(REPO / "certs/trust/anchors.json", extra=[interm])
    settings = _production(tmp_path, dev_pki_dir=tmp_path / "no-pki", extra_trust_anchors=[interm])
    with pytest.raises(ConfigurationError, match="không phải chứng thư gốc"):
        Services.build(settings)


def test_trust_list_refuses_what_serve_refuses(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    """Newuser finding 17: `trust list` listed the dev root as a public anchor (rc 0) in
    production while `serve` refused the same configuration."""
    import os
    import subprocess
    import sys

    pki, _ = dev_pki
    copy = tmp_path / "goc.pem"
    copy.write_bytes(pki.root_cert_path.read_bytes())
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
    env.update(
        {
            "SIGNING_SERVICE_MODE": "production",
            "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "prod"),
            "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS": str(copy),
        }
    )
    cmd = [sys.executable, "-m", "signing_service.cli", "trust", "list"]
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 6, result.stdout + result.stderr
    assert "PKI thử nghiệm" in result.stderr and "Traceback" not in result.stderr
    env.pop("SIGNING_SERVICE_EXTRA_TRUST_ANCHORS")
    result = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr  # nothing else needs setting up to list


def test_a_trust_catalog_that_is_not_json_is_named_in_vietnamese(tmp_path: Path) -> None:
    """Red team F10: the English JSON decoder message leaked into the refusal."""
    catalog = tmp_path / "anchors.pem"
    catalog.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(TrustStoreError) as refused:
        TrustStore.load(catalog)
    message = str(refused.value)
    assert "không phải JSON hợp lệ" in message and "anchors.json" in message
    assert "Expecting" not in message
    catalog.write_text('{"goc": []}')
    with pytest.raises(TrustStoreError, match="cần JSON dạng"):
        TrustStore.load(catalog)
