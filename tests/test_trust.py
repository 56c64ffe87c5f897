"""The trust store: the eleven pinned Vietnamese certificates, anchors by kind (public-duty
Government CA, public NEAC, development), extra anchors from the settings, ``trust list``."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from asn1crypto import x509
from pydantic import ValidationError
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.errors import PathBuildingError

from signing_service.pki.dev import DevPki
from signing_service.settings import Settings
from signing_service.trust import (
    AnchorKind,
    TrustStore,
    TrustStoreError,
    fingerprint,
    load_certs,
)
from tests.support.testpki import IssuedChain, issue_chain

REPO = Path(__file__).resolve().parent.parent
MANIFEST = REPO / "certs" / "trust" / "anchors.json"
SHARED_TRUST = REPO.parent / "shared" / "trust" / "vn"
VGCA_ROOT_CN = "RootCA chuyên dùng Chính phủ G2"
VGCA_INTERMEDIATE_CN = "CA phục vụ các cơ quan Nhà nước G2"
VGCA_ROOT_SHA256 = "F04BA4B459A7C9A1B971AD9B1CB833E695A80C79AEA63B174B66A70EDFE2FDB8".lower()
# A moment inside every pinned certificate's validity (VNPT-CA SHA2 ends 2029-08-30).
MOMENT = datetime(2026, 1, 1, tzinfo=UTC)


def manifest_entries() -> list[dict[str, str]]:
    entries: list[dict[str, str]] = json.loads(MANIFEST.read_text())["anchors"]
    return entries


def validate(store: TrustStore, cert: x509.Certificate, *others: x509.Certificate, **kw):  # type: ignore[no-untyped-def]
    context = store.validation_context(revocation_mode="soft-fail", allow_fetching=False, **kw)
    validator = CertificateValidator(
        cert, intermediate_certs=list(others), validation_context=context
    )
    return asyncio.run(validator.async_validate_path())


def test_all_eleven_pinned_and_loaded() -> None:
    entries = manifest_entries()
    assert len(entries) == 11
    assert len({e["file"] for e in entries}) == 11
    store = TrustStore.load(MANIFEST)
    assert len(store.anchors) == 9 and len(store.chain_certificates) == 2
    assert len(store.intermediates) == 2
    kinds = [a.kind for a in store.anchors]
    assert kinds.count(AnchorKind.PUBLIC) == 8 and kinds.count(AnchorKind.PUBLIC_DUTY) == 1
    by_name = {c.name: c for c in [*store.anchors, *store.chain_certificates]}
    assert by_name[VGCA_ROOT_CN].kind is AnchorKind.PUBLIC_DUTY
    assert by_name[VGCA_ROOT_CN].authority == "Ban Cơ yếu Chính phủ"
    assert by_name[VGCA_INTERMEDIATE_CN].kind is AnchorKind.PUBLIC_DUTY
    assert by_name[VGCA_INTERMEDIATE_CN].role == "intermediate"
    assert by_name["VNPT-CA SHA2"].kind is AnchorKind.PUBLIC
    for entry in entries:
        item = by_name[entry["subject_cn"]]
        # The manifest's descriptive fields agree with the certificate it pins.
        assert item.sha256 == entry["sha256"].lower()  # shown lower-case
        assert item.not_after == datetime.fromisoformat(entry["valid_until"])
        assert item.kind.value == entry["kind"]
        assert item.provenance and item.authority
        cert = item.cert
        assert (cert.subject == cert.issuer) == (entry["role"] == "root"), entry["file"]
        if entry["kind"] == "public":
            assert entry["authority"].startswith(("NEAC", "VNPT-CA"))
    # The human-readable table lists every pinned fingerprint.
    documented = (REPO / "certs/trust/README.md").read_text()
    assert all(f"`{e['sha256']}`" in documented for e in entries)


def test_pinned_copies_are_the_shared_folder_files() -> None:
    if not SHARED_TRUST.is_dir():
        pytest.skip(f"{SHARED_TRUST} is not present (shared reference data)")
    shared = sorted(SHARED_TRUST.glob("*.pem"))
    pinned = {Path(e["file"]).name: e["sha256"] for e in manifest_entries()}
    assert sorted(p.name for p in shared) == sorted(pinned)
    readme = (SHARED_TRUST / "README.md").read_text()
    for path in shared:
        (cert,) = load_certs(path)
        assert fingerprint(cert) == pinned[path.name].lower()
        assert pinned[path.name] in readme
        assert (REPO / "certs/trust/vn" / path.name).read_bytes() == path.read_bytes()


def _copy_trust(tmp_path: Path) -> Path:
    shutil.copytree(REPO / "certs/trust", tmp_path / "trust")
    return tmp_path / "trust" / "anchors.json"


def test_changed_file_refuses_to_load(tmp_path: Path) -> None:
    manifest = _copy_trust(tmp_path)
    target = manifest.parent / "vn/vgca-rootca-g2.pem"
    (cert,) = load_certs(target)
    der = bytearray(cert.dump())
    der[-1] ^= 0x01  # a bit of the signature: still a parseable certificate, another file
    pem = base64.encodebytes(bytes(der)).decode()
    target.write_text(f"-----BEGIN CERTIFICATE-----\n{pem}-----END CERTIFICATE-----\n")
    with pytest.raises(TrustStoreError, match="khác giá trị đã ghim"):
        TrustStore.load(manifest)


def test_other_certificate_under_a_pinned_name_refuses_to_load(tmp_path: Path) -> None:
    manifest = _copy_trust(tmp_path)
    issue_chain().write_root(manifest.parent / "vn/vgca-rootca-g2.pem")
    with pytest.raises(TrustStoreError, match="khác giá trị đã ghim"):
        TrustStore.load(manifest)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda e: e.update(kind="development"), "không thể ghim"),
        (lambda e: e.update(kind="private"), "loại không biết"),
        (lambda e: e.update(role="anchor"), "vai trò không biết"),
        (lambda e: e.pop("sha256"), "thiếu"),
    ],
)
def test_malformed_manifest_entry_refused(tmp_path: Path, change, message: str) -> None:  # type: ignore[no-untyped-def]
    manifest = _copy_trust(tmp_path)
    spec = json.loads(manifest.read_text())
    change(spec["anchors"][0])
    manifest.write_text(json.dumps(spec))
    with pytest.raises(TrustStoreError, match=message):
        TrustStore.load(manifest)


def test_anchor_for_a_path_ending_in_the_government_ca_root() -> None:
    """The real "CA phục vụ các cơ quan Nhà nước G2" validates to the real G2 root, which the
    store names and reports as public-duty; the VNPT-CA path ends in a public NEAC root."""
    store = TrustStore.load(MANIFEST)
    vgca = next(c for c in store.chain_certificates if c.name == VGCA_INTERMEDIATE_CN)
    path = validate(store, vgca.cert, moment=MOMENT)
    anchor = store.anchor_for_path(path)
    assert anchor is not None
    assert anchor.name == VGCA_ROOT_CN and anchor.sha256 == VGCA_ROOT_SHA256
    assert anchor.kind is AnchorKind.PUBLIC_DUTY and anchor.is_public_duty
    assert anchor.kind_label == "chuyên dùng công vụ (Ban Cơ yếu Chính phủ)"
    assert store.anchor_for(path.first) is anchor

    vnpt = next(c for c in store.chain_certificates if c.name == "VNPT-CA SHA2")
    anchor = store.anchor_for_path(validate(store, vnpt.cert, moment=MOMENT))
    assert anchor is not None and anchor.name == "Vietnam National Root CA"
    assert anchor.kind is AnchorKind.PUBLIC and not anchor.is_public_duty
    assert anchor.kind_label == "công cộng (NEAC)"


def test_intermediates_are_never_anchors() -> None:
    store = TrustStore.load(MANIFEST)
    for chain_cert in store.chain_certificates:
        assert store.anchor_for(chain_cert.cert) is None
        assert not store.is_anchor(chain_cert.cert)
        assert chain_cert.cert not in store.roots
        assert store.chain_certificate_for(chain_cert.cert) is chain_cert
    # Without its root, the Government CA intermediate leads nowhere.
    without_root = TrustStore(
        anchors=[a for a in store.anchors if not a.is_public_duty],
        intermediates=store.intermediates,
    )
    vgca = store.chain_certificates[0].cert
    with pytest.raises(PathBuildingError):
        validate(without_root, vgca, moment=MOMENT)


def test_dev_root_is_kind_development(tmp_path: Path) -> None:
    root = issue_chain().write_root(tmp_path / "root.cert.pem")
    store = TrustStore.load(MANIFEST, dev_root=root)
    assert store.has_dev_root
    (dev,) = [a for a in store.anchors if a.dev]
    assert dev.kind is AnchorKind.DEVELOPMENT and dev.kind_label == "thử nghiệm"
    assert not TrustStore.load(MANIFEST).has_dev_root


def _validated_leaf_path(store: TrustStore, chain: IssuedChain):  # type: ignore[no-untyped-def]
    context = store.validation_context(revocation_mode="soft-fail", allow_fetching=False)
    validator = CertificateValidator(
        chain.leaf, intermediate_certs=[chain.intermediate], validation_context=context
    )
    return asyncio.run(validator.async_validate_usage({"non_repudiation"}))


def test_test_government_chain_configured_as_public_duty(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Government-CA-shaped chain under a fresh root configured (like the G2 root) as a
    public-duty extra anchor: the validated path ends in that anchor, reported public-duty."""
    chain = issue_chain()
    root = chain.write_root(tmp_path / "test-g2-root.pem")
    monkeypatch.setenv(
        "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS",
        json.dumps([{"file": str(root), "kind": "public_duty"}]),
    )
    settings = Settings()
    store = TrustStore.load(MANIFEST, extra=settings.extra_trust_anchors)
    path = _validated_leaf_path(store, chain)
    assert len(path) == 3
    anchor = store.anchor_for_path(path)
    assert anchor is not None
    assert anchor.name == "Thử nghiệm RootCA chuyên dùng Chính phủ G2"
    assert anchor.kind is AnchorKind.PUBLIC_DUTY and anchor.is_public_duty
    assert anchor.source == f"configured:{root}"
    assert anchor.sha256 == fingerprint(chain.root)
    # The kind comes from the configuration: the same root given as a plain path is public.
    public = TrustStore.load(MANIFEST, extra=[root])
    anchor = public.anchor_for_path(_validated_leaf_path(public, chain))
    assert anchor is not None and anchor.kind is AnchorKind.PUBLIC
    # And without the root configured the chain is not trusted at all.
    with pytest.raises(PathBuildingError):
        _validated_leaf_path(TrustStore.load(MANIFEST), chain)


def test_extra_anchor_forms(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a = issue_chain().write_root(tmp_path / "a.pem")
    b = issue_chain().write_root(tmp_path / "b.pem")
    env = "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS"

    def loaded(value: str) -> list[tuple[str, AnchorKind]]:
        monkeypatch.setenv(env, value)
        store = TrustStore.load(MANIFEST, extra=Settings().extra_trust_anchors)
        return [(x.source, x.kind) for x in store.anchors if x.source.startswith("configured")]

    public, duty = AnchorKind.PUBLIC, AnchorKind.PUBLIC_DUTY
    # The comma-separated form certs/trust/README.md used to document: paths, kind public.
    assert loaded(f"{a}, {b}") == [(f"configured:{a}", public), (f"configured:{b}", public)]
    assert loaded(f"{a}") == [(f"configured:{a}", public)]
    assert loaded(json.dumps([str(a), {"file": str(b), "kind": "public_duty"}])) == [
        (f"configured:{a}", public),
        (f"configured:{b}", duty),
    ]
    assert loaded(json.dumps({"file": str(b), "kind": "public_duty"})) == [
        (f"configured:{b}", duty)
    ]
    assert loaded("") == []
    monkeypatch.setenv(env, "[not json")
    with pytest.raises(ValidationError, match="JSON"):
        Settings()
    monkeypatch.setenv(env, json.dumps([{"file": str(a), "kind": "development"}]))
    with pytest.raises(ValidationError, match="public_duty"):
        Settings()
    monkeypatch.setenv(env, str(tmp_path / "missing.pem"))
    with pytest.raises(TrustStoreError, match=r"missing\.pem"):
        TrustStore.load(MANIFEST, extra=Settings().extra_trust_anchors)


def test_load_does_not_import_pyhanko() -> None:
    """Start-up stays cheap: loading the store parses with asn1crypto only."""
    code = (
        "import sys; from pathlib import Path; from signing_service.trust import TrustStore; "
        f"s = TrustStore.load(Path({str(MANIFEST)!r})); "
        "print(len(s.anchors), sorted(m for m in sys.modules if m.startswith('pyhanko')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert out.stdout.strip() == "9 []"


def _cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signing_service.cli", "trust", "list", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO,
    )


def test_trust_list_in_production_without_a_database(tmp_path: Path) -> None:
    root = issue_chain().write_root(tmp_path / "test-g2-root.pem")
    env = {
        "SIGNING_SERVICE_MODE": "production",
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS": json.dumps(
            [{"file": str(root), "kind": "public_duty"}]
        ),
    }
    text = _cli(env)
    assert text.returncode == 0, text.stderr
    out = text.stdout
    assert "Traceback" not in out + text.stderr
    anchors_part, _, chain_part = out.partition("Chứng thư trung gian")
    assert "Chứng thư gốc tin cậy (điểm tin cậy): 10" in anchors_part
    assert VGCA_ROOT_CN in anchors_part and VGCA_ROOT_SHA256 in anchors_part
    assert "Hết hạn: 2048-08-14 (giờ Việt Nam, +07:00)" in anchors_part
    assert "chuyên dùng công vụ (Ban Cơ yếu Chính phủ)" in anchors_part
    assert "công cộng (NEAC)" in anchors_part
    assert "Thử nghiệm RootCA chuyên dùng Chính phủ G2" in anchors_part
    assert "chỉ dùng để dựng chuỗi" in chain_part
    assert VGCA_INTERMEDIATE_CN in chain_part and "VNPT-CA SHA2" in chain_part
    # The MIC root ends 2040-05-16 01:20 UTC: still the 16th in Vietnam time.
    assert "Hết hạn: 2040-05-16" in anchors_part
    # Vietnamese output only.
    assert "Common Name" not in out and "public_duty" not in out

    listed = _cli(env, "--json")
    assert listed.returncode == 0, listed.stderr
    report = json.loads(listed.stdout)
    assert report["mode"] == "production"
    assert len(report["anchors"]) == 10 and len(report["intermediates"]) == 2
    by_name = {a["name"]: a for a in report["anchors"]}
    assert by_name[VGCA_ROOT_CN]["kind"] == "public_duty"
    assert by_name[VGCA_ROOT_CN]["not_after"] == "2048-08-14T14:36:39+07:00"
    assert by_name["Thử nghiệm RootCA chuyên dùng Chính phủ G2"]["kind"] == "public_duty"
    assert {i["role"] for i in report["intermediates"]} == {"intermediate"}
    assert not (tmp_path / "var").exists()  # no database, no data directory created


def test_trust_list_development_shows_the_dev_root(tmp_path: Path) -> None:
    pki = tmp_path / "pki"
    pki.mkdir()
    issue_chain().write_root(pki / "root.cert.pem")
    env = {
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki),
    }
    result = _cli(env)
    assert result.returncode == 0, result.stderr
    assert "Loại chữ ký số: thử nghiệm" in result.stdout
    assert "PKI thử nghiệm (chỉ ở chế độ phát triển)" in result.stdout


def test_trust_list_malformed_settings_exit_6_without_traceback(tmp_path: Path) -> None:
    env = {
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS": '["/tmp/a.pem",',
    }
    result = _cli(env)
    assert result.returncode == 6
    assert "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS" in result.stderr
    assert "Traceback" not in result.stderr
    env["SIGNING_SERVICE_EXTRA_TRUST_ANCHORS"] = str(tmp_path / "missing.pem")
    result = _cli(env)
    assert result.returncode == 6 and "kho chứng thư tin cậy" in result.stderr
    assert "không có tệp hoặc thư mục này" in result.stderr
    assert "Traceback" not in result.stderr and "No such file" not in result.stderr


def test_a_freshly_loaded_trust_store_serves_many_threads_at_once(
    dev_pki: tuple[DevPki, int],
) -> None:
    """A 500 seen under `serve --workers 2` with 4 concurrent signing clients: each process's
    first requests built path-validation contexts at the same moment over the same, freshly
    loaded anchors, and asn1crypto's lazy, unlocked parsing showed one thread a half-parsed
    certificate (KeyError: No field numbered 2 is present in this Extension). Anchors are
    parsed completely when loaded. Before the fix most rounds failed; 20 rounds."""
    import threading

    from pyhanko_certvalidator import ValidationContext

    pki, _ = dev_pki
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible: the race shows
    try:
        for _ in range(20):
            trust = TrustStore.load(MANIFEST, dev_root=pki.root_cert_path)
            trust.intermediates.extend(load_certs(pki.cert_path("interm")))
            start = threading.Barrier(8)
            failures: list[BaseException] = []

            def build(
                trust: TrustStore = trust,
                start: threading.Barrier = start,
                failures: list[BaseException] = failures,
            ) -> None:
                start.wait()
                try:
                    ValidationContext(trust_roots=trust.roots, other_certs=trust.intermediates)
                except Exception as e:  # noqa: BLE001 - collected, asserted below
                    failures.append(e)

            threads = [threading.Thread(target=build) for _ in range(8)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            assert failures == []
    finally:
        sys.setswitchinterval(interval)
