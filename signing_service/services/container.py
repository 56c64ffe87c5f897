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

from signing_service.audit import AuditNotKeyed, check_key, key_chain, mark_keyed
from signing_service.audit.key import AuditKey, load_audit_key
from signing_service.errors import ConfigurationError
from signing_service.settings import Settings
from signing_service.store.db import Database, schema_revision
from signing_service.store.models import Agency, SigningKey, SigningProfile
from signing_service.trust import (  # noqa: F401 - dev_root_copies: re-exported
    TrustStore,
    TrustStoreError,
    dev_anchor_problem,
    dev_root_copies,
)
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


def _reissue_check(settings: Settings, allow_reissue: bool) -> bool:
    """Whether this build re-issues the dev PKI for another address; raises
    :class:`ConfigurationError` when that is not allowed (red team 14 F5: ``audit verify``
    or a ``storage reconcile --dry-run`` with another SIGNING_SERVICE_DEV_PKI_PORT gave every
    dev certificate a new serial under the running instance)."""
    import json

    from signing_service.pki.dev import reissued_for

    if not reissued_for(settings.pki_dir, settings.dev_pki_url):
        return False
    if allow_reissue:
        return True
    try:
        recorded = json.loads((settings.pki_dir / "state.json").read_text(encoding="utf-8"))
        recorded_url = str(recorded.get("url_prefix"))
    except (OSError, ValueError, AttributeError):
        recorded_url = "(không đọc được)"
    raise ConfigurationError(
        "Cấu hình không hợp lệ: SIGNING_SERVICE_DEV_PKI_PORT: PKI thử nghiệm của thư mục dữ "
        f"liệu này ({settings.pki_dir}) được cấp cho {recorded_url}, không phải "
        f"{settings.dev_pki_url}; lệnh này không cấp lại PKI thử nghiệm (mọi chứng thư thử "
        "nghiệm sẽ đổi số hiệu dưới phiên bản đang chạy). Bỏ SIGNING_SERVICE_DEV_PKI_PORT để "
        "dùng cổng đã ghi, hoặc cấp lại có chủ đích bằng `signing-service pki init` hay "
        "`signing-service serve` với cổng mới.",
        details={"setting": "SIGNING_SERVICE_DEV_PKI_PORT"},
    )


def _pki_files(pki_dir: Path) -> dict[Path, tuple[bytes, int]]:
    """Every file under ``pki_dir`` (the exported certificates, PKCS#12 files, state.json,
    keys) with its bytes and mode: what :func:`_restore_pki_files` puts back."""
    kept: dict[Path, tuple[bytes, int]] = {}
    for path in pki_dir.rglob("*"):
        if path.is_file() and not path.is_symlink():
            kept[path] = (path.read_bytes(), path.stat().st_mode & 0o777)
    return kept


def _restore_pki_files(pki_dir: Path, kept: dict[Path, tuple[bytes, int]]) -> None:
    """Put the files of :func:`_pki_files` back (each replaced atomically, state.json last:
    a reader sees the old address only with the old certificates) and remove the ones
    created since. Best effort: a failure is logged, the original error is what is said."""
    try:
        for path in pki_dir.rglob("*"):
            if path.is_file() and path not in kept:
                path.unlink()
        for path, (data, mode) in sorted(
            kept.items(), key=lambda item: item[0].name == "state.json"
        ):
            try:
                if path.read_bytes() == data:
                    continue
            except OSError:
                pass
            temporary = path.with_name(path.name + ".restore")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.chmod(temporary, mode)
            os.replace(temporary, path)
        log.warning("development PKI %s left as it was: the start-up was refused", pki_dir)
    except OSError:
        log.exception("could not restore the development PKI %s", pki_dir)


def quiet_library_loggers() -> None:
    # pyHanko and certvalidator log every failed validation with a traceback; a failed
    # signature is a result we report, not a service error. qpdf (pikepdf) logs each damage it
    # works around in an uploaded file at ERROR: the file's problem, reported as a result.
    for name in ("pyhanko", "pyhanko_certvalidator", "certomancer", "werkzeug", "pikepdf"):
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
            ca_issuer_urls=tuple(settings.ca_issuer_urls),
        )

    def _build_verification_pool(self) -> VerificationPool:
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

    @property
    def verification_pool(self) -> VerificationPool:
        """Worker processes for public verification (started on first use, or ahead of it by
        :meth:`prewarm_verification_pool`)."""
        return self._get_or_build("verification_pool", self._build_verification_pool)

    def prewarm_verification_pool(self) -> None:
        """Start the verification workers now, so that the first public verification after a
        start does not wait for them (new user 18 #11: 7.5 s; a portal with a short timeout
        failed its first call after each restart). Built outside the services' lock: starting
        the workers takes seconds, and no other service waits for it meanwhile (a request
        that needs the pool first builds its own; the spare one is closed)."""
        with self._lazy_lock:
            if "verification_pool" in self._lazy:
                return
        pool = self._build_verification_pool()
        with self._lazy_lock:
            if "verification_pool" not in self._lazy:
                self._lazy["verification_pool"] = pool
                return
        pool.close()

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
        allow_reissue: bool = False,
    ) -> Services:
        """``prepare``: run migrations and the development bootstrap (once, in the parent
        process; API worker processes skip it). ``allow_reissue``: in development, the dev
        PKI recorded for another address (``state.json``) may be re-issued for this one
        (``serve`` and ``pki init`` only); otherwise such settings raise
        :class:`ConfigurationError` naming the recorded address, nothing changed. A re-issue
        is undone when the build fails afterwards (any exception: the PKI's files as
        before)."""
        quiet_library_loggers()
        problems = settings.check_production()
        if problems:
            raise StartupRefused("; ".join(problems))
        check_database_location(settings)
        if prepare and not settings.is_production:
            from signing_service.services.bootstrap import check_new_sqlite_database

            check_new_sqlite_database(settings)
        prepare_directories(settings)
        reissue = not settings.is_production and _reissue_check(settings, allow_reissue)
        # Red team 14 F5: a start-up refused after the dev PKI was re-issued (a bad trust
        # anchor, a busy port, the bootstrap…) left every dev certificate re-issued under the
        # instance already serving it. The files a re-issue rewrites are kept and put back
        # unless the whole build succeeds.
        kept = _pki_files(settings.pki_dir) if reissue else None
        try:
            return cls._build_after_checks(
                settings, serve_dev_pki=serve_dev_pki, prepare=prepare, migrate=migrate,
                reissue=reissue,
            )  # fmt: skip
        except BaseException:
            if kept is not None:
                _restore_pki_files(settings.pki_dir, kept)
            raise

    @classmethod
    def _build_after_checks(
        cls,
        settings: Settings,
        *,
        serve_dev_pki: bool,
        prepare: bool,
        migrate: bool | None,
        reissue: bool,
    ) -> Services:
        """:meth:`build` from the dev PKI on (``reissue``: the PKI is issued anew for
        ``settings.dev_pki_url``)."""
        dev_pki = None
        hsm_key = None
        if not settings.is_production:
            from signing_service.pki.dev import init_dev_pki, probe_listen
            from signing_service.pki.softhsm import SoftHsm

            # Development mode provisions a SoftHSM2 token for the first demo agency when
            # SoftHSM2 is installed, so the demo signs through PKCS#11 as production does.
            hsm = SoftHsm.available(settings.softhsm_dir)
            if hsm is not None:
                hsm_key = hsm.ensure_key(DEV_HSM_TOKEN, DEV_HSM_KEY)
            if serve_dev_pki and settings.dev_pki_serve and reissue:
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
                ca_issuer_urls=settings.ca_issuer_urls,
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
        schema_before = None
        if prepare if migrate is None else migrate:
            schema_before = schema_revision(settings.effective_database_url)
            db.migrate()
        if prepare:
            # A log from before migration 0005 is MACed once, before anything is appended,
            # by the run whose migration crossed 0005 (red team 23b, R23B-4).
            try:
                with db.transaction() as session:
                    key_chain(
                        session,
                        audit_key,
                        settings.audit_seals_path,
                        schema_before=schema_before,
                    )
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
        if prepare:
            # After the refusals that name their own cause (production's dev material), before
            # anything is appended (the dev bootstrap): the configured key must be the log's
            # (red team 23b, R23B-7).
            try:
                with db.transaction() as session:
                    check_key(session, audit_key, lambda: _sealed_with(settings.audit_seals_path))
            except AuditNotKeyed as e:
                services.close()
                raise StartupRefused(str(e)) from None
        if prepare and not settings.is_production:
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


def _sealed_with(seal_dir: Path) -> str | None:
    """The key id of the newest audit seal (imported here: seals pulls in pyHanko's TSA
    machinery, which the API processes otherwise load only when sealing)."""
    from signing_service.audit.seals import newest_seal_key_id

    return newest_seal_key_id(seal_dir)
