"""Every setting, given a bad value, is a configuration error: exit code 6 and one Vietnamese
line naming the variable, never a traceback or pydantic's English (issue 9, newuser and red-team
findings: ``SIGNING_SERVICE_PORT=abc``, ``DATABASE_URL=mysql://…``, an invalid S3 bucket name,
``PUBLIC_RATE_PER_MINUTE=1e999``, a negative retention)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from signing_service import cli
from signing_service.pki.dev import DevPki
from signing_service.settings import Settings

# Bad values for every setting, checked when the settings are read (before anything starts).
# A new setting must get a line here (test_every_setting_has_a_bad_value).
PARSE_ERRORS: dict[str, list[str]] = {
    "mode": ["prod"],
    "data_dir": ["/etc/hostname"],  # an existing file, not a directory
    "database_url": [
        "mysql://u:p@127.0.0.1/x",
        "khong-phai-dia-chi",
        "sqlite://",
        "postgresql://u:p@/x",
    ],
    "storage_url": [
        "s3://A:B@127.0.0.1:9/b?secure=false",  # bucket names are 3–63 characters
        "s3://A:B@127.0.0.1:9/Hoa_Don",
        "s3://127.0.0.1:9/kho",
        "ftp://kho/luu-tru",
        "file://tuong-doi",
        "s3://A:B@127.0.0.1:port/kho",
    ],
    "host": [""],
    "port": ["abc", "0", "70000", "1.5"],
    "public_base_url": ["ftp://x", "khong-phai-url"],
    "max_upload_bytes": ["0", "nhieu"],
    "signing_headroom_bytes": ["-1", "nhieu"],
    "issuing_system": [""],
    "report_seal_key": ["con-dau-bao-cao", "000.00.12.H12/Khoa Sai", "000.00.12.H12/"],
    "report_tsa": ["Tên Sai"],
    "preservation_horizon_days": ["0", "hai-nam", "40000"],
    "preservation_retiring_digests": ["sha999", '["sha1"', "[1]"],
    "preservation_tsa": ["Tên Sai"],
    "preservation_schedule": ["co-le"],
    "preservation_cron": ["hằng ngày", "61 2 * * *", "* * * *"],
    "preservation_max_attempts": ["0", "nhieu"],
    "preservation_retry_base_seconds": ["1", "nhanh"],
    "preservation_stalled_seconds": ["5", "lau"],
    "evidence_retention_years": ["0", "101", "muoi", "-3", "4"],  # 4: below the minimum 5
    "evidence_retention_min_years": ["0", "101", "nam"],
    "evidence_seal_certificates": ["abcd", '["ab"]', "[1]", "zz" * 32],
    "cors_origins": [
        "*",
        "https://cong.example.gov.vn/",
        "https://*.example.gov.vn",
        "ftp://cong.example.gov.vn",
        '["https://cong.example.gov.vn"',
    ],
    "external_session_seconds": ["0", "-1"],
    "max_batch_documents": ["0"],
    "max_batch_bytes": ["0"],
    "upload_spool_bytes": ["-1"],
    "max_attachment_bytes": ["0"],
    "attachment_components": ['{"application": -1}', '{"a b": 1}', "{}", '{"x": "y"}', "[1]"],
    "attachment_media_types": ['["application/pdf", "pdf"]', '"application/pdf"'],
    "pdf_active_content": ["delete"],
    "clamd_address": ["tcp://clamd", "clamd.sock"],
    "clamd_timeout_seconds": ["0", "inf"],
    "quarantine_dir": ["/etc/hostname"],
    "upload_tmp_dir": ["/etc/hostname"],
    "presigned_download_seconds": ["-1", "604801"],
    "retry_after_seconds": ["0"],
    "reconcile_min_age_seconds": ["-1"],
    "crash_at": ["somewhere"],
    "trust_anchors_file": ["/etc"],  # a directory, not a file
    "extra_trust_anchors": ["[not json", '[{"file": "/x.pem", "kind": "sai"}]'],
    "dev_pki_config": ["/etc"],
    "dev_pki_dir": ["/etc/hostname"],
    "dev_softhsm_dir": ["/etc/hostname"],
    "dev_pki_host": [""],
    "dev_pki_port": ["cổng", "0"],
    "dev_pki_serve": ["co-le"],
    "key_passphrase": [""],
    "key_store_secret": [""],
    "pkcs11_modules": ['{"softhsm": "libsofthsm2.so"}', '{"Tên Sai": "/x.so"}', "["],
    "tsas": ['{"dev": "ftp://tsa"}', '{"dev": 5}'],
    "default_tsa": ["Tên Sai"],
    "csc_providers": ['{"p": {"url": "http://x", "token_source": "bi-mat"}}', '{"p": 1}'],
    "ca_issuer_urls": ['["ftp://ca.example.vn/"]', '["http://ca.example.vn/a/../b"]', '{"a": 1}'],
    "audit_key": [""],
    "audit_key_file": ["/etc"],
    "audit_seal_dir": ["/etc/hostname"],
    "audit_tsa_url": ["tsa.example"],
    "signer_check_cache_seconds": ["-1", "86401"],
    "tsa_max_skew_seconds": ["0"],
    "fetch_timeout_seconds": ["0", "nan"],
    "worker_threads": ["0"],
    "workers": ["0", "hai"],
    "verification_processes": ["-1", "65"],
    "verification_prewarm": ["co-le"],
    "verification_timeout_seconds": ["0"],
    "verification_max_pending": ["-1"],
    "verification_memory_limit_bytes": ["-1"],
    "verification_worker_max_rss_bytes": ["-1"],
    "verification_nice": ["20"],
    "max_anonymous_requests": ["-1"],
    "max_anonymous_requests_per_client": ["-1"],
    "public_rate_per_minute": ["1e999", "-1", "nan"],
    "public_rate_burst": ["0"],
    "trusted_proxies": ["10.0.0.1, may-chu-proxy"],
    "metrics_address": [
        "9464",
        "may-chu-giam-sat:9464",
        "127.0.0.1:0",
        "127.0.0.1:70000",
        "http://127.0.0.1:9464",
        "127.0.0.1:",
    ],
    "max_header_bytes": ["nhieu", "100"],
    "header_timeout_seconds": ["0"],
    "body_timeout_seconds": ["-1"],
    "body_min_rate_bytes": ["0"],
    "keep_alive_seconds": ["0"],
    "max_connections": ["1"],
    "verification_counts_flush_seconds": ["0"],
}

CASES = [(name, value) for name, values in PARSE_ERRORS.items() for value in values]

# What pydantic and the standard library say in English; none of it may reach the operator.
ENGLISH = re.compile(
    r"Input should|Value error|unable to parse|Field required|validation error|"
    r"unsupported|invalid|Expecting value|No such file|Traceback|\bor\b",
    re.IGNORECASE,
)


def test_every_setting_has_a_bad_value() -> None:
    assert sorted(PARSE_ERRORS) == sorted(Settings.model_fields)


@pytest.mark.parametrize(("name", "value"), CASES)
def test_a_bad_value_is_exit_6_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], name: str, value: str
) -> None:
    for variable in list(os.environ):
        if variable.startswith("SIGNING_SERVICE_"):
            monkeypatch.delenv(variable)
    variable = f"SIGNING_SERVICE_{name.upper()}"
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_:
        cli._settings()
    assert exit_.value.code == cli.EXIT_CONFIG
    err = capsys.readouterr().err
    assert err.startswith(f"Cấu hình không hợp lệ: {variable}"), err
    assert not ENGLISH.search(err), err
    if "B@" in value:
        assert "B@" not in err  # an S3 secret is never shown


def test_good_values_still_parse(monkeypatch: pytest.MonkeyPatch) -> None:
    """The forms the README documents are accepted (the checks above are not too strict)."""
    for variable in list(os.environ):
        if variable.startswith("SIGNING_SERVICE_"):
            monkeypatch.delenv(variable)
    for name, value in {
        "DATABASE_URL": "postgresql://signing:secret@db.internal:5432/signing",
        "STORAGE_URL": "s3://ACCESS:SECRET@minio.internal:9000/signed-documents?secure=false",
        "PORT": "8443",
        "CLAMD_ADDRESS": "tcp://127.0.0.1:3310",
        "ATTACHMENT_COMPONENTS": '{"application": 3650, "other": 0}',
        "ATTACHMENT_MEDIA_TYPES": '["application/pdf", "image/png"]',
        "PUBLIC_RATE_PER_MINUTE": "0.5",
        "CRASH_AT": "committed",
        "REPORT_SEAL_KEY": "000.00.00.A01/con-dau-bao-cao",
        "CORS_ORIGINS": "https://cong.example.gov.vn, http://127.0.0.1:3000",
        "PRESERVATION_RETIRING_DIGESTS": "SHA1, sha224",
        "PRESERVATION_CRON": "30 1 * * 0",
        "METRICS_ADDRESS": "[::1]:9464",
    }.items():
        monkeypatch.setenv(f"SIGNING_SERVICE_{name}", value)
    settings = Settings()
    assert settings.port == 8443 and settings.public_rate_per_minute == 0.5
    assert settings.preservation_retiring_digests == ["sha1", "sha224"]
    assert settings.preservation_cron == "30 1 * * 0"
    assert settings.cors_origins == ["https://cong.example.gov.vn", "http://127.0.0.1:3000"]
    monkeypatch.setenv("SIGNING_SERVICE_CORS_ORIGINS", '["https://cong.example.gov.vn"]')
    assert Settings().cors_origins == ["https://cong.example.gov.vn"]
    monkeypatch.setenv("SIGNING_SERVICE_DATABASE_URL", "sqlite:////var/lib/signing/metadata.db")
    monkeypatch.setenv("SIGNING_SERVICE_STORAGE_URL", "file:///var/lib/signing/objects")
    monkeypatch.setenv("SIGNING_SERVICE_CLAMD_ADDRESS", "/run/clamav/clamd.ctl")
    assert Settings().database_url == "sqlite:////var/lib/signing/metadata.db"


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )


def _env(tmp_path: Path, dev_pki: tuple[DevPki, int], **values: str) -> dict[str, str]:
    pki, port = dev_pki
    # An existing data directory: commands refuse a missing one (red team 12 F10).
    (tmp_path / "var").mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
    env.update(
        {
            "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
            "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
            "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
            **{f"SIGNING_SERVICE_{k.upper()}": v for k, v in values.items()},
        }
    )
    return env


def test_a_mistyped_sqlite_directory_is_not_created(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """A typo in the database path (``sqlite:////khong-co/thu-muc/x.db``) used to create the
    directory and a new, empty database; now exit 6 naming the setting, nothing created."""
    missing = tmp_path / "khong-co" / "thu-muc"
    for command in (("migrate",), ("client", "list")):
        result = run(_env(tmp_path, dev_pki, database_url=f"sqlite:///{missing}/x.db"), *command)
        assert result.returncode == 6, result.stderr
        assert "SIGNING_SERVICE_DATABASE_URL" in result.stderr
        assert "Traceback" not in result.stderr
        assert not missing.parent.exists()


LATE_ERRORS = [
    # (setting, value, what the message says)
    ("trust_anchors_file", "{pem}", "JSON"),
    ("trust_anchors_file", "{tmp}/khong-co.json", "không có tệp"),
    ("audit_key_file", "{tmp}/khong-co.key", "không có tệp"),
    ("default_tsa", "khong-co", "SIGNING_SERVICE_TSAS"),
    ("report_tsa", "khong-co", "SIGNING_SERVICE_TSAS"),
    ("preservation_tsa", "khong-co", "SIGNING_SERVICE_TSAS"),
    # Directories that cannot be created ({file} is a regular file): an OSError traceback before.
    # A data directory that does not exist: no deployment there (red team 12 F10).
    ("data_dir", "{file}/var", "không có bản triển khai"),
    ("upload_tmp_dir", "{file}/tmp", "không tạo được thư mục"),
    ("dev_pki_dir", "{file}/pki", "không tạo được thư mục"),
    ("dev_pki_config", "{tmp}/khong-co.yml", "không có tệp cấu hình"),
]


@pytest.mark.parametrize(("name", "value", "says"), LATE_ERRORS)
def test_a_setting_checked_at_start_is_exit_6_in_vietnamese(
    tmp_path: Path, dev_pki: tuple[DevPki, int], name: str, value: str, says: str
) -> None:
    pki, _ = dev_pki
    (tmp_path / "tep").write_text("một tệp, không phải thư mục")
    value = value.format(pem=pki.root_cert_path, tmp=tmp_path, file=tmp_path / "tep")
    env = _env(tmp_path, dev_pki, **{name: value})
    if name == "dev_pki_config":
        env.pop("SIGNING_SERVICE_DEV_PKI_DIR")  # a fresh dev PKI would be made from it
    result = run(env, "client", "list")
    assert result.returncode == 6, result.stderr
    assert result.stderr.startswith("Cấu hình không hợp lệ: "), result.stderr
    assert f"SIGNING_SERVICE_{name.upper()}" in result.stderr
    assert says in result.stderr
    assert not ENGLISH.search(result.stderr), result.stderr


def test_an_audit_key_file_others_can_read_is_refused(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """Newuser finding 18: a 0644 audit key file was accepted silently (ssh refuses such a
    private key file; so does the service)."""
    key_file = tmp_path / "audit.key"
    key_file.write_text("k" * 64)
    key_file.chmod(0o644)
    env = _env(tmp_path, dev_pki, audit_key_file=str(key_file))
    result = run(env, "client", "list")
    assert result.returncode == 6, result.stderr
    assert "SIGNING_SERVICE_AUDIT_KEY_FILE" in result.stderr and "chmod 600" in result.stderr
    key_file.chmod(0o600)
    assert run(env, "client", "list").returncode == 0


def test_a_second_database_never_overwrites_the_dev_credentials(
    tmp_path: Path, dev_pki: tuple[DevPki, int], database_url: str
) -> None:
    """Red team F8: a CLI command with a mistyped SIGNING_SERVICE_DATABASE_URL bootstrapped a
    new demo world and rewrote var/dev-credentials.json: the running instance's API keys
    (kept nowhere else in clear) were lost, and orphan sealed keys were written. Now: exit 6
    naming the setting, the file and the key store untouched."""
    import json

    first = f"sqlite:///{tmp_path / 'dang-chay.db'}"
    env = _env(tmp_path, dev_pki, database_url=first)
    assert run(env, "client", "list").returncode == 0
    credentials = tmp_path / "var" / "dev-credentials.json"
    before = credentials.read_bytes()
    assert json.loads(before)["database"] == first
    sealed = sorted((tmp_path / "var" / "keys").iterdir())
    typo = f"sqlite:///{tmp_path / 'dang-chya.db'}"
    for url in (typo, database_url):  # a new SQLite file; a new (empty) database
        for command in (("client", "list"), ("migrate",), ("key", "list")):
            result = run({**env, "SIGNING_SERVICE_DATABASE_URL": url}, *command)
            if command == ("migrate",) and url.startswith("postgresql"):
                # An existing PostgreSQL database only gets the schema (no demo world).
                assert result.returncode == 0, result.stderr
            else:
                assert result.returncode == 6, (command, result.stdout, result.stderr)
                assert "SIGNING_SERVICE_DATABASE_URL" in result.stderr
                assert str(credentials) in result.stderr and "Traceback" not in result.stderr
            assert credentials.read_bytes() == before
            assert sorted((tmp_path / "var" / "keys").iterdir()) == sealed
            if url == typo:
                assert not (tmp_path / "dang-chya.db").exists()
    # The database the credentials belong to still starts, and its keys still work.
    assert run(env, "client", "list").returncode == 0
    assert credentials.read_bytes() == before
