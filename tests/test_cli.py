"""The command line, run as a user runs it: a real process, its exit codes and output."""

from __future__ import annotations

import json
import os
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
    result = run(env, "verify", str(tmp_path / "khong-co.pdf"))
    assert result.returncode == 4
    assert "Không đọc được tệp" in result.stderr
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
