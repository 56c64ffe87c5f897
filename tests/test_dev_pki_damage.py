"""A damaged development environment is said as such, never as a verdict (red team 14).

- F1: a dev PKI key that no longer loads made ``verify`` call a genuine document forged
  (TOTAL_FAILED / SIGNATURE_UNREADABLE); now the PKI is checked when it is read (exit 6
  naming the directory and the file), and a responder that fails anyway is an unreachable
  one (revocation unknown, INDETERMINATE);
- F2, F7, F9: a damaged state.json, a bad SIGNING_SERVICE_DEV_PKI_CONFIG, a missing
  certificate or key file: exit 6 in Vietnamese naming the dev PKI directory or the setting,
  never a traceback, never the trust-anchor settings;
- F5: a refused ``serve`` leaves the dev PKI as it was; other commands never re-issue it;
- F6: ``verify`` reads at most the size limit + 1 bytes, and only regular files;
- F8: production ``verify`` refuses dev-PKI anchors as production start-up does.

Every test works on a copy of the session dev PKI (tests/conftest.py fails a test that
changes the session PKI's state.json) and runs the real command line.
"""

from __future__ import annotations

import asyncio
import json
import os
import resource
import shutil
import subprocess
import sys
from collections.abc import Callable
from io import BytesIO
from pathlib import Path

import pytest

from signing_service.pki.dev import DevPki
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.test_settings_errors import ENGLISH

REPO = Path(__file__).resolve().parent.parent


def run(
    env: dict[str, str], *args: str, limit_memory: bool = False
) -> subprocess.CompletedProcess[str]:
    def two_gigabytes() -> None:
        # As the red team measured (ulimit -v 2000000): reading a 3 GB file fails under it.
        resource.setrlimit(resource.RLIMIT_AS, (2 * 1024**3, 2 * 1024**3))

    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=two_gigabytes if limit_memory else None,
    )


def _copy(dev_pki: tuple[DevPki, int], tmp_path: Path) -> Path:
    """A data directory whose pki/ is a copy of the session dev PKI (same address)."""
    pki, _ = dev_pki
    data_dir = tmp_path / "var"
    shutil.copytree(pki.directory, data_dir / "pki")
    return data_dir


def _env(data_dir: Path, **values: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
    env.update(
        {
            "SIGNING_SERVICE_DATA_DIR": str(data_dir),
            "SIGNING_SERVICE_FETCH_TIMEOUT_SECONDS": "3",
            **{f"SIGNING_SERVICE_{k.upper()}": v for k, v in values.items()},
        }
    )
    return env


def _files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def _exported(pki_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(pki_dir.iterdir()) if p.is_file()}


def _signed(pki_dir: Path) -> bytes:
    """A B-B PDF signed with the dev PKI's agency-a-seal (pyHanko, no service)."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers

    from signing_service.settings import DEV_KEY_PASSPHRASE

    signer = signers.SimpleSigner.load_pkcs12(
        pki_dir / "agency-a-seal.p12", passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert signer is not None
    return asyncio.run(
        signers.async_sign_pdf(
            IncrementalPdfFileWriter(BytesIO(make_pdf())),
            signers.PdfSignatureMetadata(field_name="Sig", subfilter=fields.SigSeedSubFilter.PADES),
            signer=signer,
        )
    ).getvalue()


def _ed25519_pem() -> bytes:
    """A well-formed private key of another algorithm than its certificate's."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    return ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _state(pki_dir: Path, **changes: object) -> None:
    state_file = pki_dir / "state.json"
    state = json.loads(state_file.read_text())
    state.update(changes)
    state_file.write_text(json.dumps(state))


# (row id, damage done to the PKI copy, file or text the message names)
DAMAGES: list[tuple[str, Callable[[Path], None], str]] = [
    ("generation-text", lambda d: _state(d, generation="abc"), "generation"),
    ("generation-null", lambda d: _state(d, generation=None), "generation"),
    ("generation-negative", lambda d: _state(d, generation=-1), "generation"),
    ("state-not-json", lambda d: (d / "state.json").write_text("[1"), "state.json"),
    ("state-no-address", lambda d: (d / "state.json").write_text("{}"), "state.json"),
    ("interm-cert-missing", lambda d: (d / "interm.cert.pem").unlink(), "interm.cert.pem"),
    ("root-cert-missing", lambda d: (d / "root.cert.pem").unlink(), "root.cert.pem"),
    ("unused-key-missing", lambda d: (d / "keys/tsa.key.pem").unlink(), "tsa.key.pem"),
    (
        "ocsp-key-garbage",
        lambda d: (d / "keys/ocsp.key.pem").write_text("garbage\n"),
        "ocsp.key.pem",
    ),
    (
        "interm-key-garbage",
        lambda d: (d / "keys/interm.key.pem").write_text("garbage\n"),
        "interm.key.pem",
    ),
    (
        "ocsp-key-of-another-algorithm",
        lambda d: (d / "keys/ocsp.key.pem").write_bytes(_ed25519_pem()),
        "ocsp.key.pem",
    ),
    (
        # Unreadable: a directory where the key was (a mode-000 file is read by root, which
        # CI runs as: this row would skip there).
        "ocsp-key-unreadable",
        lambda d: ((d / "keys/ocsp.key.pem").unlink(), (d / "keys/ocsp.key.pem").mkdir()),
        "ocsp.key.pem",
    ),
]


@pytest.mark.parametrize(("row", "damage", "names"), DAMAGES, ids=[d[0] for d in DAMAGES])
def test_a_damaged_dev_pki_is_exit_6_naming_it(
    tmp_path: Path,
    dev_pki: tuple[DevPki, int],
    row: str,
    damage: Callable[[Path], None],
    names: str,
) -> None:
    """F1/F2/F9: ``verify`` of the service's own kind of document with a damaged PKI copy:
    exit 6, the PKI directory and the file named, in Vietnamese; never a verdict (exit 1
    "forged" or exit 2 "no dev PKI"), never the trust-anchor settings."""
    data_dir = _copy(dev_pki, tmp_path)
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(_signed(data_dir / "pki"))
    intact = run(_env(data_dir), "verify", str(pdf), "--json")
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert json.loads(intact.stdout)["verdict"] == "TOTAL_PASSED"

    damage(data_dir / "pki")
    result = run(_env(data_dir), "verify", str(pdf))
    assert result.returncode == 6, result.stdout + result.stderr
    assert result.stderr.startswith("Cấu hình không hợp lệ: "), result.stderr
    assert f"PKI thử nghiệm {data_dir / 'pki'}" in result.stderr
    assert names in result.stderr
    assert "TRUST_ANCHORS" not in result.stderr
    assert "Traceback" not in result.stderr and "Errno" not in result.stderr
    assert result.stdout == ""
    # evidence verify reads the same PKI (its service-seal and responders): the same refusal,
    # not "the ZIP is invalid".
    (tmp_path / "x.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    evidence = run(_env(data_dir), "evidence", "verify", str(tmp_path / "x.zip"))
    assert evidence.returncode == 6, evidence.stdout + evidence.stderr
    assert f"PKI thử nghiệm {data_dir / 'pki'}" in evidence.stderr


BAD_CONFIGS = [
    # (row id, YAML text): a refused tag, a syntax error, wrong shapes (red team 14 F7).
    ("python-tag", "!!python/object/apply:os.system [true]\n"),
    ("syntax", "a: [\n"),
    ("a-list", "- 1\n"),
    ("no-keysets", "pki-architectures: 5\n"),
]


@pytest.mark.parametrize(("row", "text"), BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
@pytest.mark.parametrize("command", [("verify",), ("audit", "verify")])
def test_a_bad_dev_pki_config_is_exit_6_naming_the_setting(
    tmp_path: Path, dev_pki: tuple[DevPki, int], row: str, text: str, command: tuple[str, ...]
) -> None:
    """F7: exit 6 naming SIGNING_SERVICE_DEV_PKI_CONFIG, for ``verify`` (the PKI read) and a
    command that builds the services (the PKI ensured); nothing executed, no traceback."""
    data_dir = _copy(dev_pki, tmp_path)
    config = tmp_path / "bad.yml"
    config.write_text(text)
    # The certificates and state (keys/*.pub.pem follow this data directory's SoftHSM2 token,
    # written before the configuration is read, as on every start).
    before = _exported(data_dir / "pki")
    args = [*command, str(tmp_path / "x.pdf")] if command == ("verify",) else [*command]
    (tmp_path / "x.pdf").write_bytes(make_pdf())
    result = run(_env(data_dir, dev_pki_config=str(config)), *args)
    assert result.returncode == 6, result.stdout + result.stderr
    assert result.stderr.startswith("Cấu hình không hợp lệ: SIGNING_SERVICE_DEV_PKI_CONFIG: ")
    assert str(config) in result.stderr
    assert "Traceback" not in result.stderr
    assert _exported(data_dir / "pki") == before


@pytest.mark.parametrize("generation", ["abc", None, "not-json"])
def test_a_damaged_state_is_exit_6_for_other_commands(
    tmp_path: Path, dev_pki: tuple[DevPki, int], generation: object
) -> None:
    """F2: ``audit verify`` (Services.build → init_dev_pki) ended in the same traceback; an
    unreadable state.json was taken for "never issued" (generation 0 again, old serials)."""
    data_dir = _copy(dev_pki, tmp_path)
    if generation == "not-json":
        (data_dir / "pki" / "state.json").write_text("[1")
    else:
        _state(data_dir / "pki", generation=generation)
    before = _exported(data_dir / "pki")
    result = run(_env(data_dir, dev_pki_port=str(dev_pki[1])), "audit", "verify")
    assert result.returncode == 6, result.stdout + result.stderr
    assert f"PKI thử nghiệm {data_dir / 'pki'}" in result.stderr
    assert "state.json" in result.stderr and "Traceback" not in result.stderr
    assert not ENGLISH.search(result.stderr.replace("generation", "")), result.stderr
    assert _exported(data_dir / "pki") == before


@pytest.mark.parametrize("bad_key", ["garbage", "another-algorithm"])
def test_a_failing_responder_is_revocation_unknown_never_a_broken_signature(
    tmp_path: Path, dev_pki: tuple[DevPki, int], bad_key: str
) -> None:
    """F1, the verifier's side: the PKI read when it was intact, its OCSP responder's and CRL
    issuer's keys damaged afterwards (lazy keys: read when the in-process responder first
    signs). The answer is INDETERMINATE with the signature intact, never TOTAL_FAILED /
    SIGNATURE_UNREADABLE: an exception inside a responder is a failed fetch, and a CRL of
    another algorithm than its issuer's key (which certvalidator asserts on) a chain that
    cannot be validated."""
    from signing_service._async import run_sync
    from signing_service.pki.dev import in_process_fetcher_backend, load_dev_pki
    from signing_service.trust import TrustStore, load_certs
    from signing_service.verification.revinfo_cache import REVOCATION_CACHE
    from signing_service.verification.validate import Verifier

    data_dir = _copy(dev_pki, tmp_path)
    pki_dir = data_dir / "pki"
    pdf = _signed(pki_dir)
    pki = load_dev_pki(pki_dir, REPO / "certs/dev/certomancer.yml")
    assert pki is not None
    trust = TrustStore.load(REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path)
    trust.intermediates.extend(load_certs(pki.cert_path("interm")))
    for label in ("ocsp", "interm"):
        key = pki_dir / "keys" / f"{label}.key.pem"
        key.write_bytes(b"garbage\n" if bad_key == "garbage" else _ed25519_pem())
    # The copy answers at the session PKI's address: its answers (and failures) must not
    # be taken from, nor left in, the process-wide cache other tests read.
    REVOCATION_CACHE.clear()
    try:
        verifier = Verifier(trust, fetcher_backend=in_process_fetcher_backend(pki, 3))
        report = run_sync(verifier.async_verify(pdf)).to_dict()
    finally:
        REVOCATION_CACHE.clear()
    assert report["verdict"] == "INDETERMINATE", report
    checks = report["signatures"][0]["checks"]
    assert checks["integrity"]["status"] == "PASSED", checks
    assert report["signatures"][0]["indication"] == "INDETERMINATE"


def test_a_refused_serve_leaves_the_dev_pki_as_it_was(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """F5: ``serve`` for another dev PKI port with a bad trust anchor: exit 6 naming the
    anchor setting, and every file of the dev PKI (state.json, certificates, PKCS#12,
    keys) as before: the re-issue it began is undone."""
    data_dir = _copy(dev_pki, tmp_path)
    before = _files(data_dir / "pki")
    env = _env(
        data_dir,
        port=str(free_port()),
        dev_pki_port=str(free_port()),
        extra_trust_anchors=json.dumps([str(tmp_path / "khong-co.pem")]),
    )
    result = run(env, "serve")
    assert result.returncode == 6, result.stdout + result.stderr
    assert "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS" in result.stdout + result.stderr
    assert _files(data_dir / "pki") == before


@pytest.mark.parametrize(
    "command", [("audit", "verify"), ("storage", "reconcile", "--dry-run"), ("key", "list")]
)
def test_other_commands_never_reissue_the_dev_pki(
    tmp_path: Path, dev_pki: tuple[DevPki, int], command: tuple[str, ...]
) -> None:
    """F5: read-only commands and dry runs with another SIGNING_SERVICE_DEV_PKI_PORT refuse
    (exit 6, naming the address the PKI is recorded for) and change nothing."""
    _, port = dev_pki
    data_dir = _copy(dev_pki, tmp_path)
    before = _files(data_dir / "pki")
    other = free_port()
    result = run(_env(data_dir, dev_pki_port=str(other)), *command)
    assert result.returncode == 6, result.stdout + result.stderr
    assert result.stderr.startswith("Cấu hình không hợp lệ: SIGNING_SERVICE_DEV_PKI_PORT: ")
    assert f"http://127.0.0.1:{port}" in result.stderr  # the recorded address
    assert f"http://127.0.0.1:{other}" in result.stderr
    assert _files(data_dir / "pki") == before
    assert not (data_dir / "metadata.db").exists()


def test_verify_reads_no_more_than_the_limit(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    """F6: a 3 GB sparse file is FILE_TOO_LARGE (exit 5), under a 2 GB address-space limit
    (the whole file was read first: MemoryError); a device and a FIFO are refused (exit 4,
    Vietnamese) instead of being read until memory runs out or forever."""
    data_dir = _copy(dev_pki, tmp_path)
    env = _env(data_dir)
    big = tmp_path / "sparse.pdf"
    with big.open("wb") as f:
        f.write(b"%PDF-1.7\n")
        f.truncate(3 * 1024**3)
    result = run(env, "verify", str(big), limit_memory=True)
    assert result.returncode == 5, result.stdout + result.stderr
    assert result.stderr.startswith("FILE_TOO_LARGE: Tệp vượt quá dung lượng cho phép")
    assert "Traceback" not in result.stderr
    fifo = tmp_path / "fifo.pdf"
    os.mkfifo(fifo)
    for path in ("/dev/zero", str(fifo)):
        result = run(env, "verify", path, limit_memory=True)
        assert result.returncode == 4, result.stdout + result.stderr
        assert "không phải tệp thông thường" in result.stderr, result.stderr
        assert "Traceback" not in result.stderr


@pytest.mark.parametrize("where", ["in-the-pki", "copied-elsewhere"])
def test_production_verify_refuses_dev_anchors(
    tmp_path: Path, dev_pki: tuple[DevPki, int], where: str
) -> None:
    """F8: production ``verify`` (and ``evidence verify``) with the dev root as an extra
    anchor: exit 6 with production start-up's refusal, no verdict."""
    data_dir = _copy(dev_pki, tmp_path)
    root = data_dir / "pki" / "root.cert.pem"
    if where == "copied-elsewhere":
        root = Path(shutil.copy(root, tmp_path / "goc.pem"))
    pdf = tmp_path / "signed.pdf"
    pdf.write_bytes(_signed(data_dir / "pki"))
    env = _env(data_dir, mode="production", extra_trust_anchors=json.dumps([str(root)]))
    result = run(env, "verify", str(pdf))
    assert result.returncode == 6, result.stdout + result.stderr
    assert result.stderr.startswith("Từ chối ở chế độ production: "), result.stderr
    assert "PKI thử nghiệm" in result.stderr and result.stdout == ""
    (tmp_path / "x.zip").write_bytes(b"PK\x05\x06" + bytes(18))
    evidence = run(env, "evidence", "verify", str(tmp_path / "x.zip"))
    assert evidence.returncode == 6, evidence.stdout + evidence.stderr
    assert "PKI thử nghiệm" in evidence.stderr


def test_the_0016_downgrade_refusal_says_what_to_do(tmp_path: Path) -> None:
    """F4: below 0016 with evidence kept in rows: refused in Vietnamese, naming no command
    that does not exist, and the rows kept (the schema stops at 0016: migrations after it,
    0017's index, are undone first, each in its own step)."""
    import sqlite3

    from alembic import command
    from alembic.config import Config

    from signing_service.store.db import MIGRATIONS, migrate, schema_revision

    url = f"sqlite:///{tmp_path / 'metadata.db'}"
    migrate(url)
    head = schema_revision(url)
    with sqlite3.connect(tmp_path / "metadata.db") as db:  # foreign keys off: one row alone
        db.execute(
            "INSERT INTO signature_evidence_items (signature_id, name, role, sha256, size, "
            "content) VALUES ('s', 'manifest.json', 'manifest', ?, 2, ?)",
            ("0" * 64, b"{}"),
        )
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", url)
    with pytest.raises(RuntimeError) as refused:
        command.downgrade(cfg, "0015")
    message = str(refused.value)
    assert message.startswith("Không hạ lược đồ xuống 0015: 1 tệp bằng chứng ký"), message
    assert "Chưa có lệnh nào chép" in message and "signing-service restore" in message
    assert head is not None and head >= "0016"
    assert schema_revision(url) == "0016"
    with sqlite3.connect(tmp_path / "metadata.db") as db:
        assert db.execute("SELECT content FROM signature_evidence_items").fetchall() == [(b"{}",)]
