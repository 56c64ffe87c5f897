"""The command line, run as a user runs it: a real process, its exit codes and output."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from signing_service.pki.dev import DevPki
from tests.support.pdfs import make_pdf

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]) -> dict[str, str]:
    pki, port = dev_pki
    # A data directory that exists: commands other than serve/migrate/pki init refuse a
    # missing one (red team 12 F10).
    (tmp_path / "var").mkdir(exist_ok=True)
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


def test_sign_then_verify(tmp_path: Path, env: dict[str, str]) -> None:
    src, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    src.write_bytes(make_pdf())
    result = run(env, "sign", str(src), str(out), "--profile", "agency-a-seal", "--level", "B-T")
    assert result.returncode == 0, result.stderr
    assert "Đã ký (B-T)" in result.stdout
    result = run(env, "verify", str(out))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "HỢP LỆ" in result.stdout
    assert "Sở Tư pháp tỉnh Demo A" in result.stdout
    result = run(env, "verify", str(out), "--json")
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["verdict"] == "TOTAL_PASSED"

    tampered = bytearray(out.read_bytes())
    at = bytes(tampered).index(b"trang 1")
    tampered[at + 6] = ord("9")
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(bytes(tampered))
    result = run(env, "verify", str(bad))
    assert result.returncode == 1
    assert "KHÔNG HỢP LỆ" in result.stdout

    unsigned = tmp_path / "unsigned.pdf"
    unsigned.write_bytes(make_pdf())
    assert run(env, "verify", str(unsigned)).returncode == 2

    result = run(env, "audit", "verify")
    assert result.returncode == 0, result.stderr
    assert "chuỗi băm hợp lệ" in result.stdout


def test_usage_and_io_errors(tmp_path: Path, env: dict[str, str]) -> None:
    result = run(env, "sign", "only-one-arg")
    assert result.returncode == 3
    assert "Lỗi cú pháp lệnh" in result.stderr
    # argparse's own texts are Vietnamese too: usage, sections, its error messages.
    assert "cách dùng:" in result.stderr and "thiếu tham số bắt buộc" in result.stderr
    assert "usage:" not in result.stderr and "required" not in result.stderr
    choice = run(env, "sign", "a.pdf", "b.pdf", "--profile", "x", "--level", "B-X")
    assert choice.returncode == 3 and "giá trị không hợp lệ" in choice.stderr
    helped = run(env, "verify", "--help")
    assert helped.returncode == 0
    assert "tùy chọn:" in helped.stdout and "hiện hướng dẫn này rồi thoát" in helped.stdout
    assert "options" not in helped.stdout and "show this help" not in helped.stdout
    result = run(env, "verify", str(tmp_path / "khong-co.pdf"))
    assert result.returncode == 4
    assert "Không đọc được tệp" in result.stderr
    assert "không có tệp hoặc thư mục này" in result.stderr
    assert "No such file" not in result.stderr
    result = run(env, "verify", str(tmp_path))
    assert result.returncode == 4 and "là một thư mục" in result.stderr
    notpdf = tmp_path / "x.pdf"
    notpdf.write_bytes(b"hello")
    result = run(env, "verify", str(notpdf))
    assert result.returncode == 5
    assert "NOT_A_PDF" in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_profile(tmp_path: Path, env: dict[str, str]) -> None:
    src = tmp_path / "in.pdf"
    src.write_bytes(make_pdf())
    result = run(env, "sign", str(src), str(tmp_path / "o.pdf"), "--profile", "khong-co")
    assert result.returncode == 5
    assert "PROFILE_NOT_FOUND" in result.stderr
    assert not (tmp_path / "o.pdf").exists()


def test_pki_init_lists_files(env: dict[str, str]) -> None:
    result = run(env, "pki", "init")
    assert result.returncode == 0, result.stderr
    assert "officer.p12" in result.stdout and "root.cert.pem" in result.stdout


def _password_role(postgres: Any) -> str:
    """A role that must give its password (scram-sha-256), on the tests' server whose other
    roles are trusted: the first matching pg_hba line wins, so this one goes first."""
    import psycopg

    hba = postgres.data / "pg_hba.conf"
    line = "host all edge_pw 127.0.0.1/32 scram-sha-256\n"
    if line not in hba.read_text():
        hba.write_text(line + hba.read_text())
    with psycopg.connect(postgres.url(), autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = 'edge_pw'").fetchone()
        if not exists:
            conn.execute("CREATE ROLE edge_pw LOGIN PASSWORD 'dung-mat-khau'")
        conn.execute("SELECT pg_reload_conf()")
    return f"postgresql://edge_pw:sai-mat-khau@127.0.0.1:{postgres.port}/postgres"


COMMANDS = [
    ("migrate",),
    ("serve", "--port", "1"),
    ("audit", "verify"),
    ("storage", "reconcile", "--dry-run"),
    ("agency", "add", "000.00.99.H99", "Cơ quan thử"),
]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_a_database_that_refuses_is_exit_6_with_a_message(
    tmp_path: Path, dev_pki: tuple[DevPki, int], request: pytest.FixtureRequest, command: tuple
) -> None:
    """Issue 9: a wrong database password ended in a traceback instead of exit code 6."""
    from tests.support.postgres import free_port

    postgres = request.getfixturevalue("postgres")
    pki, port = dev_pki
    urls = [f"postgresql://ai:bi-mat@127.0.0.1:{free_port()}/khong_co"]  # nothing listens
    if postgres is not None:
        urls.append(_password_role(postgres))  # a real server, the wrong password
    (tmp_path / "var").mkdir(exist_ok=True)
    for url in urls:
        env = {
            **os.environ,
            "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
            "SIGNING_SERVICE_DATABASE_URL": url,
            "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
            "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
        }
        result = run(env, *command)
        assert result.returncode == 6, result.stderr
        assert "SIGNING_SERVICE_DATABASE_URL" in result.stderr
        assert "không kết nối được cơ sở dữ liệu" in result.stderr
        assert "Traceback" not in result.stderr
        assert "bi-mat" not in result.stderr and "sai-mat-khau" not in result.stderr

    if postgres is not None:
        # The right password, a role without the right to create tables: exit 6 as well.
        url = urls[-1].replace("sai-mat-khau", "dung-mat-khau")
        result = run({**env, "SIGNING_SERVICE_DATABASE_URL": url}, *command)
        assert result.returncode == 6, result.stderr
        assert "không đủ quyền" in result.stderr and "Traceback" not in result.stderr


BAD_SETTINGS = [
    ("SIGNING_SERVICE_ATTACHMENT_COMPONENTS", '{"application": 3650,'),
    ("SIGNING_SERVICE_EXTRA_TRUST_ANCHORS", "/khong-co/goc.pem"),
    ("SIGNING_SERVICE_EXTRA_TRUST_ANCHORS", '[{"file": "/khong-co.pem", "kind": "sai"}]'),
    ("SIGNING_SERVICE_EXTRA_TRUST_ANCHORS", "[not json"),
    ("SIGNING_SERVICE_TRUSTED_PROXIES", "10.0.0.1, may-chu-proxy"),
    ("SIGNING_SERVICE_STORAGE_URL", "ftp://kho/lưu-trữ"),
    ("SIGNING_SERVICE_MAX_HEADER_BYTES", "nhieu"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_SETTINGS)
@pytest.mark.parametrize("command", [("migrate",), ("serve", "--port", "1"), ("audit", "verify")])
def test_a_bad_setting_is_exit_6_naming_it(
    tmp_path: Path, dev_pki: tuple[DevPki, int], variable: str, value: str, command: tuple
) -> None:
    pki, port = dev_pki
    (tmp_path / "var").mkdir(exist_ok=True)
    env = {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'm.db'}",
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
        variable: value,
    }
    result = run(env, *command)
    if command[0] == "migrate" and value == "/khong-co/goc.pem":
        # migrate does not open the anchor files: nothing to refuse there (a malformed
        # storage URL is refused when the settings are read, by every command).
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 6, result.stderr
    assert variable in result.stderr
    assert "Cấu hình không hợp lệ" in result.stderr
    assert "Traceback" not in result.stderr


def test_comma_separated_trust_anchors_as_the_trust_readme_documents(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Issue 9: the comma-separated form certs/trust/README.md documents ended in a
    traceback."""
    anchors = sorted((REPO / "certs/trust/vn").glob("*.pem"))[:2]
    result = run(
        {**env, "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS": ", ".join(str(a) for a in anchors)},
        "trust",
        "list",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    sources = [a["source"] for a in json.loads(result.stdout)["anchors"]]
    assert sum(s.startswith("configured:") for s in sources) == 2


def test_names_from_the_document_cannot_forge_report_lines(
    tmp_path: Path, env: dict[str, str], dev_pki: tuple[DevPki, int]
) -> None:
    """A tampered file whose signature field is named "X⏎⏎Kết luận: HỢP LỆ …⏎U+202E": the
    report shows the name escaped on its own line, and only the real verdict line."""
    import asyncio
    from io import BytesIO

    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    from signing_service.settings import DEV_KEY_PASSPHRASE

    pki, _ = dev_pki
    name = "X\n\nKết luận: HỢP LỆ (TOTAL_PASSED)\nTất cả chữ ký số hợp lệ.\n\u202e"
    signer = signers.SimpleSigner.load_pkcs12(
        pki.p12_path("agency-a-seal"), passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert signer is not None
    signed = asyncio.run(
        signers.async_sign_pdf(
            IncrementalPdfFileWriter(BytesIO(make_pdf())),
            signers.PdfSignatureMetadata(field_name=name, subfilter=fields.SigSeedSubFilter.PADES),
            signer=signer,
        )
    ).getvalue()
    at = signed.index(b"trang 1")
    bad = tmp_path / "forged-name.pdf"
    bad.write_bytes(signed[: at + 6] + b"9" + signed[at + 7 :])
    result = run(env, "verify", str(bad))
    assert result.returncode == 1, result.stdout + result.stderr
    assert "KHÔNG HỢP LỆ" in result.stdout
    assert "\u202e" not in result.stdout
    lines = result.stdout.splitlines()
    assert not any(line.startswith("Kết luận: HỢP LỆ") for line in lines), result.stdout
    assert not any(line.startswith("Tất cả chữ ký số hợp lệ") for line in lines), result.stdout
    assert "X\\u000a\\u000aKết luận" in result.stdout
    report = json.loads(run(env, "verify", str(bad), "--json").stdout)
    assert report["signatures"][0]["field"].startswith("X\\u000a")


def test_sign_takes_the_apis_appearance_and_code_options(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """Issue 10: the CLI could make neither a copy, an annex nor a result code, and said
    nothing when it repaired its input (the API answers "repaired": true)."""
    import shutil

    from tests.support.damaged import DAMAGES

    src, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    src.write_bytes(DAMAGES[sorted(DAMAGES)[0]](make_pdf(pages=2)))
    args = ["sign", str(src), str(out), "--profile", "agency-a-seal", "--level", "B-B"]
    result = run(
        env,
        *args,
        "--appearance-kind",
        "copy",
        "--copy-kind",
        "Sao y",  # the same kind as SAO Y, normalised
        "--dossier-code",
        "000.00.12.H12-261127-0001",
        "--result-code",
        "auto",
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "đã được sửa" in result.stdout
    assert "Mã kết quả: 000.00.12.H12-261127-0001-KQ" in result.stdout
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", str(out), "-"], capture_output=True, text=True, check=True
        ).stdout
        assert "SAO Y" in text
    assert run(env, "verify", str(out)).returncode == 0

    clean = tmp_path / "clean.pdf"
    clean.write_bytes(make_pdf())
    args = ["sign", str(clean), str(out), "--profile", "agency-a-seal", "--level", "B-B"]
    result = run(env, *args, "--appearance-kind", "annex", "--document-number", "123/QĐ-STP")
    assert result.returncode == 0, result.stderr
    assert "đã được sửa" not in result.stdout
    refused = run(env, *args, "--appearance-kind", "copy", "--copy-kind", "BẢN CHÍNH")
    assert refused.returncode == 5 and "INVALID_COPY_KIND" in refused.stderr
    missing = run(env, *args, "--field-name", "ChuKyLanhDao")
    assert missing.returncode == 5 and "SIGNATURE_FIELD_NOT_FOUND" in missing.stderr


def test_serve_on_a_busy_port_is_exit_6_naming_the_setting(env: dict[str, str]) -> None:
    """uvicorn logged "address already in use" in English and exited 0; now nothing starts
    (no migration either) and the message names the setting."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run(env, "serve", "--port", str(port))
    assert result.returncode == 6, result.stdout + result.stderr
    assert "SIGNING_SERVICE_PORT" in result.stderr
    assert "đang được một chương trình khác dùng" in result.stderr
    assert "Traceback" not in result.stderr and "address already in use" not in result.stderr


def test_migrate_says_what_it_did(env: dict[str, str]) -> None:
    """Newuser finding 19: `migrate` printed nothing on success."""
    from sqlalchemy import make_url

    from signing_service.store.db import schema_revision

    first = run(env, "migrate")
    assert first.returncode == 0, first.stderr
    head = schema_revision(env["SIGNING_SERVICE_DATABASE_URL"])
    assert head is not None
    assert "Đã tạo lược đồ cơ sở dữ liệu" in first.stdout and f"(phiên bản {head})" in first.stdout
    again = run(env, "migrate")
    assert again.returncode == 0, again.stderr
    assert f"đã ở phiên bản mới nhất ({head}); không thay đổi" in again.stdout
    # The password of a PostgreSQL URL is never printed.
    password = make_url(env["SIGNING_SERVICE_DATABASE_URL"]).password
    assert not password or str(password) not in first.stdout + again.stdout


def test_the_spare_dev_p12_can_be_registered(
    env: dict[str, str], dev_pki: tuple[DevPki, int]
) -> None:
    """Newuser finding 1: every usable dev p12 was registered by the bootstrap, so `key add
    --pkcs12` could only be refused in development; spare-seal.p12 is left for trying it."""
    import json

    from signing_service.settings import DEV_KEY_PASSPHRASE

    pki, _ = dev_pki
    assert run(env, "key", "list").returncode == 0  # the bootstrap ran
    credentials = json.loads(
        (Path(env["SIGNING_SERVICE_DATA_DIR"]) / "dev-credentials.json").read_text()
    )
    spare = credentials["pki"]["unregistered_p12"]
    assert spare == str(pki.p12_path("spare-seal"))
    added = subprocess.run(
        [
            *(sys.executable, "-m", "signing_service.cli", "key", "add"),
            *("--agency", "000.00.31.H26", "--name", "con-dau-du-phong"),
            *("--pkcs12", spare, "--secret-stdin"),
        ],
        env=env,
        input=DEV_KEY_PASSPHRASE + "\n",
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert added.returncode == 0, added.stdout + added.stderr
    listed = run(env, "key", "list", "--agency", "000.00.31.H26")
    assert "con-dau-du-phong" in listed.stdout, listed.stdout + listed.stderr


def test_serve_with_the_dev_pki_port_busy_is_exit_6_naming_the_setting(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Development mode serves the dev PKI on its own port: a busy one answered uvicorn's
    English text and exit 1 (make run); now exit 6 naming SIGNING_SERVICE_DEV_PKI_PORT."""
    import shutil
    import socket

    # Another port re-issues the dev PKI for it (new serials, pki/dev.py): on a copy, never
    # on the session's PKI the other tests' certificates and responder belong to.
    copy = tmp_path / "pki-copy"
    shutil.copytree(env["SIGNING_SERVICE_DEV_PKI_DIR"], copy)
    env = {**env, "SIGNING_SERVICE_DEV_PKI_DIR": str(copy)}

    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        api_port = free.getsockname()[1]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        result = run(
            {**env, "SIGNING_SERVICE_DEV_PKI_PORT": str(busy)}, "serve", "--port", str(api_port)
        )
    assert result.returncode == 6, result.stdout + result.stderr
    assert "SIGNING_SERVICE_DEV_PKI_PORT" in result.stderr
    assert "PKI thử nghiệm" in result.stderr and str(busy) in result.stderr
    assert "Traceback" not in result.stderr and "already in use" not in result.stderr


def test_serve_with_an_unresolvable_dev_pki_host_names_the_host_setting(
    env: dict[str, str], tmp_path: Path
) -> None:
    """Red team 14 F10: a dev PKI host name that does not resolve was told in English ("Name
    or service not known") with advice to change the port; now Vietnamese, naming
    SIGNING_SERVICE_DEV_PKI_HOST, and the PKI is left as it was."""
    import shutil

    copy = tmp_path / "pki-copy"
    shutil.copytree(env["SIGNING_SERVICE_DEV_PKI_DIR"], copy)
    state = (copy / "state.json").read_bytes()
    result = run(
        {
            **env,
            "SIGNING_SERVICE_DEV_PKI_DIR": str(copy),
            "SIGNING_SERVICE_DEV_PKI_HOST": "khong-co.invalid",
        },
        "serve",
        "--port",
        "1",
    )
    assert result.returncode == 6, result.stdout + result.stderr
    assert "SIGNING_SERVICE_DEV_PKI_HOST" in result.stderr
    assert "không phân giải được tên máy" in result.stderr
    assert "Name or service" not in result.stderr and "Traceback" not in result.stderr
    assert (copy / "state.json").read_bytes() == state


def test_document_timestamp_is_named_in_vietnamese(capsys: pytest.CaptureFixture[str]) -> None:
    """New user 12 item 13: `verify` named a B-LTA file's document timestamp by its generated
    field ("Dấu thời gian tài liệu Timestamp-8b1f…"), its TSA as "Người ký" with "could not
    determine person or organisation". The report shape is verify --json's."""
    from signing_service.cli import _print_report

    tsa = {
        "common_name": "Dev Time Stamping Authority",
        "organization": "Dev PKI",
        "issuer": "Tên: Dev CA",
        "valid_from": "2025-01-01T07:00:00+07:00",
        "valid_to": "2035-01-01T07:00:00+07:00",
        "profile_label": "chưa xác định được chứng thư của cá nhân hay tổ chức",
    }
    stamp = {
        "type": "document_timestamp",
        "field": "Timestamp-8b1ff1bd",
        "level": None,
        "indication": "TOTAL_PASSED",
        "sub_indication": None,
        "summary": "Hợp lệ.",
        "signer": tsa,
        "checks": {},
    }
    report = {
        "verdict": "TOTAL_PASSED",
        "sub_indication": None,
        "message": "Hợp lệ.",
        "validation_time": "2026-11-30T12:00:00+07:00",
        "validated_at": "2026-11-30T12:00:00+07:00",
        "problems": [],
        "signatures": [stamp, {**stamp, "field": "Timestamp-2"}],
    }
    _print_report(report)
    out = capsys.readouterr().out
    # Numbered as the page numbers them; the generated field name (a UUID) is not shown.
    assert "\n1. Dấu thời gian tài liệu: HỢP LỆ (TOTAL_PASSED)" in out
    assert "\n2. Dấu thời gian tài liệu: HỢP LỆ (TOTAL_PASSED)" in out
    assert "Timestamp-" not in out
    assert "Đơn vị cấp dấu thời gian: Dev Time Stamping Authority" in out
    assert "Người ký" not in out and "chưa xác định được chứng thư" not in out


def test_verify_says_what_the_page_says_for_revoked_superseded_and_added(
    tmp_path: Path, env: dict[str, str], database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    """New user 14 F10: README's registry flow (supersede A by B, revoke B) through the API,
    then `verify`: the headline is the page's state ("Không hợp lệ", "Chưa xác định được"),
    never "Kết luận: HỢP LỆ"; the exit code is 7 for a revoked or superseded document, 8 for
    content added after issue, 0 for the one in force; --json carries the API's ``status``.
    `verification stats` counts what the page showed (REVOKED), not TOTAL_PASSED."""
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app
    from signing_service.services.container import Services
    from tests.conftest import make_settings
    from tests.test_conclusion import with_comment

    services = Services.build(make_settings(tmp_path, database_url, dev_pki))
    credentials = json.loads(services.settings.dev_credentials_file.read_text())
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    files: dict[str, Path] = {}
    ids: dict[str, str] = {}
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        for name in ("a", "b", "c"):
            done = client.post(
                "/v1/signatures",
                headers=headers,
                data={"profile": "agency-a-seal", "level": "B-T"},
                files={"file": (f"{name}.pdf", make_pdf(f"Quyet dinh {name}"), "application/pdf")},
            )
            assert done.status_code == 201, done.text
            body = done.json()
            got = client.get(body["document"]["download_url"], headers=headers)
            files[name] = tmp_path / f"{name}.pdf"
            files[name].write_bytes(got.content)
            ids[name] = body["registry"]["public_id"]
        reason = {"reason": "Quyết định bị hủy bỏ"}
        answer = client.post(
            f"/v1/registered-documents/{ids['a']}/supersede",
            headers=headers,
            json={"superseded_by": ids["b"], **reason},
        )
        assert answer.status_code == 200, answer.text
        answer = client.post(
            f"/v1/registered-documents/{ids['b']}/revoke", headers=headers, json=reason
        )
        assert answer.status_code == 200, answer.text
        files["c+comment"] = tmp_path / "c-comment.pdf"
        files["c+comment"].write_bytes(with_comment(files["c"].read_bytes()))
        # The public page's answer for each file, to compare the CLI with.
        labels = {}
        for name, path in files.items():
            page = client.post(
                "/xac-minh", files={"file": ("t.pdf", path.read_bytes(), "application/pdf")}
            )
            assert page.status_code == 200
            found = re.search(r'class="state-label">([^<]*)<', page.text)
            assert found is not None
            labels[name] = found.group(1)
    services.close()
    assert labels == {
        "a": "Không hợp lệ",
        "b": "Không hợp lệ",
        "c": "Hợp lệ",
        "c+comment": "Chưa xác định được",
    }

    expected = {
        "a": (7, "SUPERSEDED"),
        "b": (7, "REVOKED"),
        "c": (0, "IN_FORCE"),
        "c+comment": (8, "CONTENT_ADDED_AFTER_ISSUE"),
    }
    for name, (code, status) in expected.items():
        result = run(env, "verify", str(files[name]))
        assert result.returncode == code, (name, result.stdout + result.stderr)
        lines = result.stdout.splitlines()
        assert lines[0] == f"Kết luận: {labels[name]} ({status})", (name, lines[:3])
        assert "Chữ ký số (ETSI EN 319 102-1): HỢP LỆ (TOTAL_PASSED)" in lines, name
        # F11: times for people in whole seconds.
        assert not re.search(r"\d\d:\d\d:\d\d\.\d", result.stdout), result.stdout
        as_json = run(env, "verify", str(files[name]), "--json")
        assert as_json.returncode == code, name
        report = json.loads(as_json.stdout)
        assert report["verdict"] == "TOTAL_PASSED"
        assert report["status"]["code"] == status and set(report["status"]) == {
            "state",
            "code",
            "message",
        }
    assert "thu hồi" in run(env, "verify", str(files["b"])).stdout.splitlines()[1]

    helped = run(env, "verify", "--help")
    assert "7 chữ ký số hợp lệ nhưng văn bản đã bị thu hồi" in " ".join(helped.stdout.split())
    assert "8 chữ ký số hợp lệ nhưng tệp có nội dung được thêm vào" in " ".join(
        helped.stdout.split()
    )


def test_verification_stats_count_what_people_were_shown(
    tmp_path: Path, env: dict[str, str], database_url: str, dev_pki: tuple[DevPki, int]
) -> None:
    """New user 14 F10: a revoked document verified on the public page is counted as
    REVOKED (what the page showed), not under TOTAL_PASSED (HỢP LỆ)."""
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app
    from signing_service.services.container import Services
    from tests.conftest import make_settings

    services = Services.build(
        make_settings(tmp_path, database_url, dev_pki, verification_counts_flush_seconds=0.01)
    )
    credentials = json.loads(services.settings.dev_credentials_file.read_text())
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        done = client.post(
            "/v1/signatures",
            headers=headers,
            data={"profile": "agency-a-seal", "level": "B-T"},
            files={"file": ("a.pdf", make_pdf("Quyet dinh bi thu hoi"), "application/pdf")},
        )
        assert done.status_code == 201, done.text
        body = done.json()
        signed = client.get(body["document"]["download_url"], headers=headers).content
        public = body["registry"]["public_id"]
        in_force = client.post("/xac-minh", files={"file": ("a.pdf", signed, "application/pdf")})
        assert in_force.status_code == 200
        revoked = client.post(
            f"/v1/registered-documents/{public}/revoke",
            headers=headers,
            json={"reason": "Quyết định bị hủy bỏ"},
        )
        assert revoked.status_code == 200, revoked.text
        for _ in range(2):
            answer = client.post(
                "/v1/verifications", files={"file": ("a.pdf", signed, "application/pdf")}
            )
            assert answer.json()["status"]["code"] == "REVOKED"
        services.verification_counter.flush()
    services.close()
    result = run(env, "verification", "stats", "--json")
    assert result.returncode == 0, result.stderr
    counts = {row["outcome"]: row["count"] for row in json.loads(result.stdout)}
    assert counts == {"TOTAL_PASSED": 1, "REVOKED": 2}, counts
    shown = run(env, "verification", "stats")
    assert "REVOKED (KHÔNG HỢP LỆ: văn bản đã bị thu hồi" in shown.stdout, shown.stdout


def test_times_for_people_are_whole_seconds_at_plus_7() -> None:
    """New user 14 F11: `evidence verify`, `audit seal`/`verify`, `client list` showed stored
    times with microseconds ("…15:31:31.170325+07:00")."""
    from datetime import UTC, datetime

    from signing_service.cli import _shown_time

    assert _shown_time("2026-11-30T15:31:31.170325+07:00") == "2026-11-30T15:31:31+07:00"
    assert _shown_time("2026-11-30T08:31:31.5Z") == "2026-11-30T15:31:31+07:00"
    assert _shown_time(datetime(2026, 11, 30, 8, 31, 31, 999999)) == "2026-11-30T15:31:31+07:00"
    assert _shown_time(datetime(2026, 11, 30, 8, 31, 31, tzinfo=UTC)) == "2026-11-30T15:31:31+07:00"
    assert _shown_time("2026-11-30T15:31:31.25") == "2026-11-30T15:31:31"
    assert _shown_time("không phải thời gian") == "không phải thời gian"


def test_verify_keeps_its_exit_code_when_the_reader_goes_away(
    tmp_path: Path, env: dict[str, str]
) -> None:
    """New user 20 #2: ``verify … | head -1`` exited 0 whatever the verdict (a closed pipe
    was answered with 0). An unsigned file is NO_SIGNATURE: exit 2, reader or not."""
    src = tmp_path / "unsigned.pdf"
    src.write_bytes(make_pdf())
    read, write = os.pipe()
    os.close(read)  # nobody reads: the first write fails with EPIPE
    try:
        process = subprocess.run(
            [sys.executable, "-m", "signing_service.cli", "verify", str(src), "--json"],
            env=env,
            stdout=write,
            stderr=subprocess.PIPE,
            timeout=120,
            cwd=REPO,
        )
    finally:
        os.close(write)
    assert process.returncode == 2, process.stderr
    assert b"Traceback" not in process.stderr
