"""Everything the use cases need, built once at start-up from :class:`Settings`.

The signing and validation machinery (pyHanko and its dependencies, ~30 MB of memory) is
imported and built on first use, so a process that only stores and serves attachments, or a
command that only reconciles storage, does not carry it.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from sqlalchemy import select

from signing_service.audit import AuditNotKeyed, key_chain, mark_keyed
from signing_service.audit.key import AuditKey, load_audit_key
from signing_service.errors import ConfigurationError
from signing_service.settings import Settings
from signing_service.store.db import Database
from signing_service.store.models import Agency, SigningKey, SigningProfile
from signing_service.trust import TrustStore, TrustStoreError, fingerprint, load_certs
from storage import ObjectStore, StorageUnavailableError, open_store

if TYPE_CHECKING:
    from signing_service.pki.dev import DevPki, DevPkiServer
    from signing_service.pki.softhsm import TokenKey
    from signing_service.services.counters import VerificationCounter
    from signing_service.services.verification_pool import TrustConfig, VerificationPool
    from signing_service.signing.certcheck import SignerChecker
    from signing_service.signing.keys import KeyCache
    from signing_service.signing.tsa import PooledHTTPTimeStamper, TokenChecker
    from signing_service.verification.validate import Verifier

log = logging.getLogger(__name__)
T = TypeVar("T")


DEV_HSM_TOKEN = "demo-a-seal"
DEV_HSM_KEY = "seal"


class StartupRefused(Exception):
    """Production mode found development material or default secrets."""


def private_directory(path: Path) -> Path:
    """Create ``path`` (and its parents) for this user only (0700), and take back group and
    other access from it if it exists and is ours: the data directory holds the SQLite
    database, the dev PKI's keys, spooled uploads and the quarantine (issue 9: ``var`` was
    world-readable)."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if info.st_uid == os.getuid() and info.st_mode & 0o077:
        path.chmod(info.st_mode & 0o700)
    return path


def prepare_directories(settings: Settings) -> None:
    """Create the directories the settings name (the data directory private, 0700) before
    anything else writes there; one that cannot be created is a configuration error naming its
    setting (it ended in an OSError traceback), and in development a missing dev PKI
    configuration file too. Raises :class:`ConfigurationError`."""
    from signing_service.oserror import reason_vi

    wanted: list[tuple[str, Path, bool]] = [
        ("SIGNING_SERVICE_DATA_DIR", settings.resolved_data_dir, True),
        (
            "SIGNING_SERVICE_UPLOAD_TMP_DIR"
            if settings.upload_tmp_dir
            else "SIGNING_SERVICE_DATA_DIR",
            settings.upload_tmp_path,
            False,
        ),
    ]
    if not settings.is_production:
        wanted.append(
            (
                "SIGNING_SERVICE_DEV_PKI_DIR"
                if settings.dev_pki_dir
                else "SIGNING_SERVICE_DATA_DIR",
                settings.pki_dir,
                False,
            )
        )
    for setting, path, private in wanted:
        try:
            if private:
                private_directory(path)
            else:
                path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigurationError(
                f"Cấu hình không hợp lệ: {setting}: không tạo được thư mục {path}: {reason_vi(e)}"
            ) from None
    if not settings.is_production and not settings.dev_pki_config.is_file():
        raise ConfigurationError(
            "Cấu hình không hợp lệ: SIGNING_SERVICE_DEV_PKI_CONFIG: không có tệp cấu hình PKI "
            f"thử nghiệm {settings.dev_pki_config}"
        )


def check_database_location(settings: Settings) -> None:
    """An explicitly configured SQLite file must be in an existing directory: a typo in the path
    (``sqlite:////nonexistent/dir/x.db``) created the directories and a new, empty database,
    and in development a new demo world beside the real one (red team F8). Raises
    :class:`ConfigurationError` naming the setting."""
    from sqlalchemy import make_url

    if settings.database_url is None or not settings.database_url.startswith("sqlite"):
        return
    database = make_url(settings.database_url).database
    if not database:
        return
    folder = Path(database).resolve().parent
    data_dir = settings.resolved_data_dir
    # Inside the data directory is fine: the service creates that one.
    if not folder.is_dir() and folder != data_dir and data_dir not in folder.parents:
        raise ConfigurationError(
            "Cấu hình không hợp lệ: SIGNING_SERVICE_DATABASE_URL: thư mục "
            f"{Path(database).parent} của tệp SQLite không tồn tại (gõ nhầm đường dẫn?)"
        )


def dev_root_copies(settings: Settings, trust: TrustStore) -> list[str]:
    """Anchors that are a development root wherever their file lives (a copy outside the dev
    PKI directory passed the path check): the SHA-256 of this machine's dev root, if one was
    ever generated here, or the dev root's subject as ``certs/dev/certomancer.yml`` names it
    (a dev root generated on another machine has other keys but the same name)."""
    fingerprints: set[str] = set()
    local_root = settings.pki_dir / "root.cert.pem"
    if local_root.is_file():
        try:
            fingerprints.update(fingerprint(c) for c in load_certs(local_root))
        except (OSError, ValueError):
            log.warning("unreadable development root %s", local_root)
    names = _dev_root_names(settings.dev_pki_config)
    # Any certificate of the dev PKI carries its organization (red team F10: its intermediate
    # was accepted as an anchor in production).
    organizations = {organization for organization, _ in names if organization}
    found = []
    for anchor in trust.anchors:
        subject = anchor.cert.subject.native
        name = (subject.get("organization_name"), subject.get("common_name"))
        if anchor.sha256 in fingerprints or name in names or name[0] in organizations:
            found.append(f"{anchor.name} (SHA-256 {anchor.sha256})")
    return found


def dev_anchor_problem(settings: Settings, trust: TrustStore) -> str | None:
    """Production: why the trust store must not be used (development material in it), in
    Vietnamese naming the settings, or None. Shared by start-up and ``trust list``."""
    if not settings.is_production:
        return None
    if trust.has_dev_root:
        return "kho chứng thư tin cậy chứa gốc của PKI thử nghiệm"
    copied = dev_root_copies(settings, trust)
    if copied:
        return (
            "chứng thư của PKI thử nghiệm (bản sao) nằm trong kho chứng thư tin cậy "
            "(SIGNING_SERVICE_EXTRA_TRUST_ANCHORS hoặc SIGNING_SERVICE_TRUST_ANCHORS_FILE): "
            + ", ".join(copied)
        )
    return None


def _dev_root_names(config: Path) -> set[tuple[str | None, str | None]]:
    """(organization, common name) of the root entity of the dev PKI configuration."""
    try:
        import yaml

        spec = yaml.safe_load(config.read_text(encoding="utf-8"))
        arch = spec["pki-architectures"]["dev"]
        root = arch["entities"]["root"]
        organization = root.get("organization-name") or arch["entity-defaults"].get(
            "organization-name"
        )
        return {(organization, root.get("common-name"))}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, ImportError):
        log.warning("cannot read the dev PKI configuration %s", config)
        return set()


def quiet_library_loggers() -> None:
    # pyHanko and certvalidator log every failed validation with a traceback; a failed
    # signature is a result we report, not a service error.
    for name in ("pyhanko", "pyhanko_certvalidator", "certomancer", "werkzeug"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _dev_pki_port_error(settings: Settings, error: OSError) -> ConfigurationError:
    """The dev PKI's port cannot be listened on: the CLI prints this and exits 6, as for the
    API's own port (cli.py)."""
    import socket

    from signing_service.oserror import reason_vi

    if isinstance(error, socket.gaierror):
        # Not a port problem: the host name does not resolve (red team 14 F10).
        return ConfigurationError(
            f"Không dùng được địa chỉ {settings.dev_pki_host} của PKI thử nghiệm (TSA/OCSP/CRL) "
            f"({reason_vi(error)}). Sửa SIGNING_SERVICE_DEV_PKI_HOST (ví dụ 127.0.0.1).",
            details={"setting": "SIGNING_SERVICE_DEV_PKI_HOST"},
        )
    return ConfigurationError(
        f"Không mở được cổng {settings.dev_pki_host}:{settings.dev_pki_port} của PKI "
        f"thử nghiệm (TSA/OCSP/CRL) ({reason_vi(error)}). Chọn cổng khác: "
        "SIGNING_SERVICE_DEV_PKI_PORT (đặt cùng giá trị cho mọi lệnh signing-service "
        "khác, để chúng dùng đúng PKI thử nghiệm này), địa chỉ: "
        "SIGNING_SERVICE_DEV_PKI_HOST.",
        details={"setting": "SIGNING_SERVICE_DEV_PKI_PORT"},
    )


@dataclass
class Services:
    settings: Settings
    db: Database
    store: ObjectStore
    trust: TrustStore
    dev_pki: DevPki | None = None
    dev_hsm_key: TokenKey | None = None
    dev_pki_server: DevPkiServer | None = None
    # The audit chain's MAC key (operator configuration; also on every database session).
    audit_key: AuditKey | None = None
    _timestampers: dict[str, PooledHTTPTimeStamper] = field(default_factory=dict)
    _ts_lock: threading.Lock = field(default_factory=threading.Lock)
    _lazy: dict[str, object] = field(default_factory=dict)
    _lazy_lock: threading.Lock = field(default_factory=threading.Lock)

    def _get_or_build(self, name: str, build: Callable[[], T]) -> T:
        with self._lazy_lock:
            if name not in self._lazy:
                self._lazy[name] = build()
            return self._lazy[name]  # type: ignore[return-value]

    @property
    def verifier(self) -> Verifier:
        def build() -> Verifier:
            from signing_service.verification.validate import Verifier

            return Verifier(self.trust)

        return self._get_or_build("verifier", build)

    @property
    def trust_config(self) -> TrustConfig:
        """How to rebuild :attr:`trust` in another process (the verification workers)."""
        from signing_service.services.verification_pool import TrustConfig

        settings = self.settings
        dev = self.dev_pki
        return TrustConfig(
            manifest=settings.trust_anchors_file,
            extra=tuple((str(a.file), a.kind) for a in settings.extra_trust_anchors),
            dev_root=dev.root_cert_path if dev else None,
            dev_intermediates=(dev.cert_path("interm"),) if dev else (),
            fetch_timeout=settings.fetch_timeout_seconds,
        )

    @property
    def verification_pool(self) -> VerificationPool:
        """Worker processes for public verification (started on first use)."""

        def build() -> VerificationPool:
            from signing_service.services.verification_pool import VerificationPool

            settings = self.settings
            return VerificationPool(
                self.trust_config,
                processes=max(1, settings.verification_processes),
                timeout=settings.verification_timeout_seconds,
                max_pending=settings.verification_max_pending,
                memory_limit_bytes=settings.verification_memory_limit_bytes,
                retry_after=settings.retry_after_seconds,
                nice=settings.verification_nice,
                max_rss_bytes=settings.verification_worker_max_rss_bytes,
            )

        return self._get_or_build("verification_pool", build)

    @property
    def verification_counter(self) -> VerificationCounter:
        """Counts of anonymous verifications per day and outcome (flushed periodically)."""

        def build() -> VerificationCounter:
            from signing_service.services.counters import VerificationCounter

            return VerificationCounter(self.db, self.settings.verification_counts_flush_seconds)

        return self._get_or_build("verification_counter", build)

    @property
    def checker(self) -> SignerChecker:
        def build() -> SignerChecker:
            from signing_service.signing.certcheck import SignerChecker

            return SignerChecker(self.trust, self.settings.signer_check_cache_seconds)

        return self._get_or_build("checker", build)

    @property
    def token_checker(self) -> TokenChecker:
        """Checks every timestamp token before it is embedded (signing/tsa.py)."""

        def build() -> TokenChecker:
            from datetime import timedelta

            from signing_service.signing.tsa import TokenChecker

            return TokenChecker(
                self.trust,
                max_skew=timedelta(seconds=self.settings.tsa_max_skew_seconds),
                cache_seconds=self.settings.signer_check_cache_seconds,
            )

        return self._get_or_build("token_checker", build)

    @property
    def keys(self) -> KeyCache:
        def build() -> KeyCache:
            from signing_service.signing.keys import KeyCache

            return KeyCache()

        return self._get_or_build("keys", build)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        serve_dev_pki: bool = False,
        prepare: bool = True,
        migrate: bool | None = None,
    ) -> Services:
        """``prepare``: run migrations and the development bootstrap (once, in the parent
        process; API worker processes skip it)."""
        quiet_library_loggers()
        problems = settings.check_production()
        if problems:
            raise StartupRefused("; ".join(problems))
        check_database_location(settings)
        if prepare and not settings.is_production:
            from signing_service.services.bootstrap import check_new_sqlite_database

            check_new_sqlite_database(settings)
        prepare_directories(settings)
        dev_pki = None
        hsm_key = None
        if not settings.is_production:
            from signing_service.pki.dev import init_dev_pki, probe_listen, reissued_for
            from signing_service.pki.softhsm import SoftHsm

            # Development mode provisions a SoftHSM2 token for the first demo agency when
            # SoftHSM2 is installed, so the demo signs through PKCS#11 as production does.
            hsm = SoftHsm.available(settings.softhsm_dir)
            if hsm is not None:
                hsm_key = hsm.ensure_key(DEV_HSM_TOKEN, DEV_HSM_KEY)
            if (
                serve_dev_pki
                and settings.dev_pki_serve
                and reissued_for(settings.pki_dir, settings.dev_pki_url)
            ):
                # A serve that cannot listen on the dev PKI's new port stops before the PKI is
                # re-issued for it: that would give every certificate a new serial under the
                # instance already serving it. (Same port: nothing is re-issued, and a busy
                # port is said after the other settings are checked, below.)
                try:
                    probe_listen(settings.dev_pki_host, settings.dev_pki_port)
                except OSError as e:
                    raise _dev_pki_port_error(settings, e) from None
            dev_pki = init_dev_pki(
                settings.pki_dir,
                settings.dev_pki_config,
                settings.dev_pki_url,
                settings.key_passphrase.get_secret_value().encode(),
                hsm_public_key=hsm_key.public_key if hsm_key else None,
            )
        try:
            trust = TrustStore.load(
                settings.trust_anchors_file,
                extra=settings.extra_trust_anchors,
                dev_root=dev_pki.root_cert_path if dev_pki else None,
                fetch_timeout=settings.fetch_timeout_seconds,
            )
        except TrustStoreError as e:
            raise ConfigurationError(
                "Cấu hình không hợp lệ: SIGNING_SERVICE_TRUST_ANCHORS_FILE / "
                f"SIGNING_SERVICE_EXTRA_TRUST_ANCHORS: kho chứng thư tin cậy không đọc được ({e})"
            ) from e
        if dev_pki is not None:
            # Chain-building material for signatures whose CMS lacks the intermediate.
            trust.intermediates.append(dev_pki.cert("interm"))
        problem = dev_anchor_problem(settings, trust)
        if problem:
            raise StartupRefused(problem)
        audit_key = load_audit_key(settings)
        db = Database(settings.effective_database_url, audit_key=audit_key)
        if prepare if migrate is None else migrate:
            db.migrate()
        if prepare:
            # A log from before migration 0005 is MACed once, before anything is appended.
            try:
                with db.transaction() as session:
                    key_chain(session, audit_key, settings.audit_seals_path)
                    mark_keyed(session, settings.audit_seals_path)
            except AuditNotKeyed as e:
                raise StartupRefused(str(e)) from None
        try:
            store = open_store(settings.effective_storage_url)
        except ValueError as e:
            raise ConfigurationError(
                f"Cấu hình không hợp lệ: SIGNING_SERVICE_STORAGE_URL: {e}"
            ) from None
        ensure_bucket = getattr(store, "ensure_bucket", None)
        if prepare and ensure_bucket is not None:
            try:
                ensure_bucket()
            except StorageUnavailableError as e:
                # Not fatal: the service starts, answers 503 for storage until it is back.
                log.warning("object store not reachable at start-up: %s", e)
        services = cls(
            settings=settings,
            db=db,
            store=store,
            trust=trust,
            dev_pki=dev_pki,
            dev_hsm_key=hsm_key,
            audit_key=audit_key,
        )
        from signing_service.services import allowlists

        allowlists.check(services)
        # Served before the bootstrap: registering the demo keys checks their revocation status.
        if serve_dev_pki and dev_pki is not None and settings.dev_pki_serve:
            from signing_service.pki.dev import DevPkiServer

            try:
                server = DevPkiServer(dev_pki, settings.dev_pki_host, settings.dev_pki_port)
            except OSError as e:
                services.close()
                raise _dev_pki_port_error(settings, e) from None
            services.dev_pki_server = server.start()
        if settings.is_production:
            services._refuse_dev_material()
            services._check_key_store()
        elif prepare:
            from signing_service.services.bootstrap import bootstrap_dev

            bootstrap_dev(services)
        return services

    def _refuse_dev_material(self) -> None:
        with self.db.transaction() as session:
            dev_agencies = session.scalars(select(Agency.code).where(Agency.dev)).all()
            bad = [
                *session.scalars(select(SigningProfile.name).where(SigningProfile.dev)).all(),
                *session.scalars(select(SigningKey.name).where(SigningKey.dev)).all(),
            ]
        # Dev keys are flagged when the bootstrap registers them; any other key chaining to the
        # dev root is refused at registration, production not trusting that root.
        if dev_agencies or bad:
            raise StartupRefused(
                "cơ sở dữ liệu có cơ quan, cấu hình ký hoặc khóa của chế độ phát triển: "
                + ", ".join([*dev_agencies, *bad])
            )

    def _check_key_store(self) -> None:
        """Every active key the service holds a secret for opens with the configured master
        secret: a missing or wrong SIGNING_SERVICE_KEY_STORE_SECRET stops the start, instead of
        failing each signature later."""
        from signing_service.services.keystore import KeyStore, binding

        with self.db.transaction() as session:
            sealed = session.execute(
                select(SigningKey.uid, SigningKey.kind, SigningKey.wrapped_key, Agency.code)
                .join(Agency, Agency.id == SigningKey.agency_id)
                .where(SigningKey.disabled_at.is_(None), SigningKey.wrapped_key.is_not(None))
            ).all()
        if not sealed:
            return
        if self.settings.key_store_secret is None:
            raise StartupRefused(
                "có khóa ký đã đăng ký được niêm phong trong kho khóa nhưng chưa đặt "
                "SIGNING_SERVICE_KEY_STORE_SECRET"
            )
        store = KeyStore.of(self)
        if not all(store.can_unwrap(binding(u, code, kind), w) for u, kind, w, code in sealed):
            raise StartupRefused(
                "SIGNING_SERVICE_KEY_STORE_SECRET không mở được các khóa ký đã đăng ký (sai bí "
                "mật chính?)"
            )

    def timestamper(self, url: str) -> PooledHTTPTimeStamper:
        with self._ts_lock:
            ts = self._timestampers.get(url)
            if ts is None:
                from signing_service.signing.tsa import PooledHTTPTimeStamper

                ts = self._timestampers[url] = PooledHTTPTimeStamper(url)
            return ts

    def close(self) -> None:
        import sys

        counter = self._lazy.get("verification_counter")
        if counter is not None:
            counter.close()  # type: ignore[attr-defined]
        pool = self._lazy.get("verification_pool")
        if pool is not None:
            pool.close()  # type: ignore[attr-defined]
        layout = sys.modules.get("signing_service.signing.textlayout")
        if layout is not None:  # a no-op when no layout worker was started
            layout.shutdown()
        if self.dev_pki_server is not None:
            self.dev_pki_server.stop()
        self.db.dispose()
        pkcs11_sessions = sys.modules.get("signing_service.signing.keys.pkcs11")
        if pkcs11_sessions is not None:  # only if a PKCS#11 key was ever used
            pkcs11_sessions.SESSIONS.close_all()
