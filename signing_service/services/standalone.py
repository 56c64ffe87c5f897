"""``signing-service verify`` without a service: a file verified from the settings alone.

The command line verifies the way the API does (the same :class:`~signing_service.verification.
validate.Verifier`, the same trust store, the same report and conclusion) but builds nothing
it does not need and writes nothing (issue 13, item 6): no data directory, no database
migration or bootstrap, no development PKI generation, no audit entry. What it reads:

- the trust store (``anchors.json`` and the configured extra anchors);
- in development, the development PKI when one was generated (its root as an anchor, its
  intermediate for chain building, and its OCSP responder and CRLs answered in this process,
  :func:`signing_service.pki.dev.in_process_fetcher_backend`), so that a B-T document signed by
  ``signing-service sign`` verifies as ``make run``'s server answers whether or not that
  server is running;
- the deployment's database, read only, for the registry section (was this file issued
  through the service, is it still in force), when the deployment has one: a configured
  ``SIGNING_SERVICE_DATABASE_URL``, or in development the SQLite file of the anchored data
  directory when it exists. Without one the report has no registry section and says so.

Importing this module is cheap; pyHanko, certomancer and SQLAlchemy are imported when used.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signing_service import errors

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from signing_service.settings import Settings


@dataclass
class StandaloneResult:
    """The report (``docs/verification-report.md``) and where its parts came from: the
    development PKI directory read (or None), and the database the registry was looked up in
    (password hidden; None: not looked up)."""

    report: dict[str, Any]
    dev_pki_dir: Path | None
    registry_database: str | None


def _registry_database_url(settings: Settings) -> str | None:
    """The deployment's database when there is one to read: configured, or the development
    SQLite file of the (anchored) data directory when it exists. Never creates one."""
    if settings.database_url is not None:
        if settings.database_url.startswith("sqlite"):
            # Looked at, never created: no file, nothing was ever issued there. (The URL's
            # shape was checked by the settings: sqlite:///path; SQLAlchemy is not loaded
            # here, see _ParallelLookup.)
            database = settings.database_url.split(":///", 1)[-1].split("?", 1)[0]
            return settings.database_url if Path(database).is_file() else None
        return settings.database_url
    if settings.is_production:
        return None
    path = settings.resolved_data_dir / "metadata.db"
    return f"sqlite:///{path}" if path.is_file() else None


@dataclass
class _RegistryServices:
    """What :func:`signing_service.services.registry.registry_section` reads of a
    :class:`~signing_service.services.container.Services`: the settings and the database."""

    settings: Settings
    db: _ReadOnlyDatabase


class _ReadOnlyDatabase:
    """The deployment's database opened for reading only: SQLite in ``mode=ro`` (no lock
    taken, no file created), PostgreSQL with ``default_transaction_read_only``. Offers
    :meth:`transaction` as :class:`signing_service.store.db.Database` does."""

    def __init__(self, url: str) -> None:
        from sqlalchemy import create_engine, make_url
        from sqlalchemy.orm import sessionmaker

        parsed = make_url(url)
        if parsed.drivername.startswith("sqlite"):
            # The URI form lets SQLite open the file read-only (https://sqlite.org/uri.html).
            path = Path(parsed.database or "").resolve()
            self.engine = create_engine(
                f"sqlite:///file:{path}?mode=ro&uri=true",
                connect_args={"check_same_thread": False, "timeout": 30},
            )
        else:
            self.engine = create_engine(
                parsed.set(drivername="postgresql+psycopg"),
                connect_args={"options": "-c default_transaction_read_only=on"},
            )
        self._sessions = sessionmaker(self.engine)

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with self._sessions() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()


def _registry(settings: Settings, url: str, pdf: bytes, sha256_hex: str) -> dict[str, Any] | None:
    """The registry section, looked up read-only; None when the database has no schema yet
    (nothing was ever issued there: not migrated). A database that cannot be reached raises
    as SQLAlchemy does (cli.py reports it as a configuration error naming the setting)."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from signing_service.services.registry import registry_section

    db = _ReadOnlyDatabase(url)
    try:
        return registry_section(_RegistryServices(settings, db), pdf, sha256_hex)  # type: ignore[arg-type]
    except (OperationalError, ProgrammingError) as e:
        text = str(getattr(e, "orig", e))
        if "no such table" in text or "does not exist" in text:
            return None
        raise
    finally:
        db.dispose()


def _registry_lookup(
    settings: Settings, url: str, pdf: bytes, sha256_hex: str
) -> tuple[dict[str, Any] | None, str]:
    """(:func:`_registry`, the database URL with its password hidden)."""
    from sqlalchemy import make_url

    shown = make_url(url).render_as_string(hide_password=True)
    return _registry(settings, url, pdf, sha256_hex), shown


class _ParallelLookup:
    """The registry lookup run in a forked child while this process verifies.

    Why: the lookup needs SQLAlchemy, its ORM and the models (~0.3 s of imports), the
    verification needs pyHanko (~0.5 s); one after the other they doubled what ``verify``
    costs, and ``verify`` should cost no more than twice importing pyHanko's validation
    (issue 13). Forked before anything heavy is imported and before any thread exists (so the
    child inherits no lock held by another thread); the child sends back its result, or the
    exception it raised, pickled, and leaves with ``os._exit`` (no atexit handlers, no
    flushing of the parent's buffers). Where ``fork`` is missing, the lookup runs inline."""

    def __init__(self, settings: Settings, url: str, pdf: bytes) -> None:
        import gc
        import hashlib
        import os
        import pickle

        self._result: Any = None
        self._pid = 0
        digest = hashlib.sha256(pdf).hexdigest()
        if not hasattr(os, "fork"):
            self._result = ("ok", _registry_lookup(settings, url, pdf, digest))
            return
        read, write = os.pipe()
        # Objects that exist now go to the permanent generation: neither process's collector
        # walks them again, so their pages stay shared instead of being copied (the gc module's
        # documentation advises this before fork).
        gc.freeze()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read)
            try:
                try:
                    outcome: Any = ("ok", _registry_lookup(settings, url, pdf, digest))
                except BaseException as e:  # noqa: BLE001 - handed to the parent as is
                    outcome = ("error", e)
                try:
                    body = pickle.dumps(outcome)
                except Exception:  # noqa: BLE001 - an exception that does not pickle
                    body = pickle.dumps(("error", RuntimeError(str(outcome[1]))))
                with os.fdopen(write, "wb") as out:
                    out.write(body)
            finally:
                os._exit(0)
        os.close(write)
        self._pid, self._read = pid, read

    def result(self) -> tuple[dict[str, Any] | None, str]:
        """The child's answer; raises what the lookup raised there."""
        import os
        import pickle

        if self._pid:
            with os.fdopen(self._read, "rb") as answer:
                body = answer.read()
            os.waitpid(self._pid, 0)
            self._pid = 0
            try:
                self._result = pickle.loads(body)
            except Exception:  # noqa: BLE001 - the child died before answering
                raise RuntimeError("registry lookup process ended without an answer") from None
        kind, value = self._result
        if kind == "error":
            raise value
        return value  # type: ignore[no-any-return]

    def close(self) -> None:
        """Collect the child when the verification itself failed (no zombie left)."""
        import os

        if self._pid:
            os.close(self._read)
            os.waitpid(self._pid, 0)
            self._pid = 0


def verify_standalone(
    settings: Settings, pdf: bytes, *, validation_time: datetime | None = None
) -> StandaloneResult:
    """Verify ``pdf`` as the API would for this deployment, writing nothing (module docstring).

    ``validation_time``: validate as of that moment (aware) instead of now.
    Raises the upload errors of :func:`signing_service.services.verification.verify_document`
    (``EMPTY_FILE``, ``FILE_TOO_LARGE``, ``NOT_A_PDF``, ``MALFORMED_PDF``, ``ENCRYPTED_PDF``)
    as :class:`errors.ServiceError`, and :class:`errors.ConfigurationError` for an unreadable
    trust store (naming the settings).
    """
    from signing_service.services.pdf_upload import check_pdf_upload

    check_pdf_upload(pdf, settings.max_document_bytes)
    url = _registry_database_url(settings)
    lookup = None
    if url is not None:
        # What both sides need (certificates, hashes: the trust store, the audit key's HKDF)
        # is imported once, before the fork, instead of once in each process. Not the audit
        # package itself: it brings SQLAlchemy, which only the child needs.
        import cryptography.hazmat.primitives.kdf.hkdf  # noqa: F401

        import signing_service.trust  # noqa: F401

        lookup = _ParallelLookup(settings, url, pdf)
    try:
        report, dev_pki = _verify(settings, pdf, validation_time)
        shown = None
        if lookup is not None:
            section, shown = lookup.result()
            if section is not None:
                report["registry"] = section
            else:
                shown = None
    finally:
        if lookup is not None:
            lookup.close()
    from signing_service.services.conclusion import conclude

    conclude(report)
    return StandaloneResult(report, dev_pki.directory if dev_pki else None, shown)


def _verify(
    settings: Settings, pdf: bytes, validation_time: datetime | None
) -> tuple[dict[str, Any], Any]:
    """The verification report of ``pdf`` and the dev PKI read (or None)."""
    from signing_service._async import run_sync
    from signing_service.verification.validate import (
        EncryptedPdfError,
        NotPdfError,
        UnreadablePdfError,
        Verifier,
    )

    trust, dev_pki = _trust(settings)
    backend = None
    if dev_pki is not None:
        from signing_service.pki.dev import in_process_fetcher_backend

        backend = in_process_fetcher_backend(dev_pki, settings.fetch_timeout_seconds)
    verifier = Verifier(trust, fetcher_backend=backend)
    try:
        report = run_sync(verifier.async_verify(pdf, validation_time=validation_time)).to_dict()
    except NotPdfError:
        raise errors.NotAPdf() from None
    except UnreadablePdfError:
        raise errors.MalformedPdf() from None
    except EncryptedPdfError:
        raise errors.EncryptedPdf() from None
    return report, dev_pki


def _trust(settings: Settings) -> tuple[Any, Any]:
    """The trust store from the settings (and in development the dev PKI when one was
    generated, read, never created): ``(TrustStore, DevPki | None)``. Raises
    ``ConfigurationError`` naming the settings when the store cannot be read."""
    from signing_service.trust import TrustStore, TrustStoreError, load_certs

    dev_pki = None
    if not settings.is_production:
        from signing_service.pki.dev import load_dev_pki

        dev_pki = load_dev_pki(settings.pki_dir, settings.dev_pki_config)
    try:
        trust = TrustStore.load(
            settings.trust_anchors_file,
            extra=settings.extra_trust_anchors,
            dev_root=dev_pki.root_cert_path if dev_pki else None,
            fetch_timeout=settings.fetch_timeout_seconds,
        )
        if dev_pki is not None:
            # As Services.build: chain-building material for signatures without it.
            trust.intermediates.extend(load_certs(dev_pki.cert_path("interm")))
    except (TrustStoreError, OSError, ValueError) as e:
        raise errors.ConfigurationError(
            "Cấu hình không hợp lệ: SIGNING_SERVICE_TRUST_ANCHORS_FILE / "
            f"SIGNING_SERVICE_EXTRA_TRUST_ANCHORS: kho chứng thư tin cậy không đọc được ({e})"
        ) from e
    return trust, dev_pki


def _registered_seal_sha256(settings: Settings, url: str) -> str | None:
    """SHA-256 of the certificate registered for ``SIGNING_SERVICE_REPORT_SEAL_KEY`` in the
    deployment's database (read only; None when absent or the schema is missing)."""
    import hashlib

    from sqlalchemy import select
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from signing_service.store.models import Agency, SigningKey

    agency_code, _, name = (settings.report_seal_key or "").partition("/")
    db = _ReadOnlyDatabase(url)
    try:
        with db.transaction() as session:
            der = session.scalars(
                select(SigningKey.certificate)
                .join(Agency, Agency.id == SigningKey.agency_id)
                .where(Agency.code == agency_code, SigningKey.name == name)
            ).first()
    except (OperationalError, ProgrammingError):
        return None
    finally:
        db.dispose()
    return hashlib.sha256(der).hexdigest() if der is not None else None


def verify_evidence_standalone(settings: Settings, data: bytes) -> Any:
    """``signing-service evidence verify`` from the settings alone (red team 12 F8): the
    trust store, the seal certificates the operator lists
    (``SIGNING_SERVICE_EVIDENCE_SEAL_CERTIFICATES``), the current seal's certificate (in
    development the dev PKI's ``service-seal`` when generated; otherwise the registered
    ``SIGNING_SERVICE_REPORT_SEAL_KEY`` read from the database when there is one). No data
    directory, nothing written. Returns :class:`signing_service.services.evidence.ZipCheck`;
    raises ``ConfigurationError`` (trust store unreadable)."""
    from signing_service.services.evidence import certificate_sha256, check_zip

    trust, dev_pki = _trust(settings)
    allowed = set(settings.evidence_seal_certificates)
    backend = None
    if settings.report_seal_key:
        url = _registry_database_url(settings)
        found = _registered_seal_sha256(settings, url) if url else None
        if found:
            allowed.add(found)
    elif dev_pki is not None:
        from signing_service.pki.dev import SERVICE_SEAL, in_process_fetcher_backend

        allowed.add(certificate_sha256(dev_pki.cert(SERVICE_SEAL)))
        backend = in_process_fetcher_backend(dev_pki, settings.fetch_timeout_seconds)
    return check_zip(data, trust=trust, seal_certificates=allowed, fetcher_backend=backend)
