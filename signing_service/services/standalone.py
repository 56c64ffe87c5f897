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

Importing this module is cheap; pyHanko and certomancer are imported when used, SQLAlchemy
never (the registry is read through the database driver alone, :class:`_ReadOnlyRows`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signing_service import errors

if TYPE_CHECKING:
    from signing_service.settings import Settings


class ProductionRefused(Exception):
    """Production settings that every command refuses (development anchors in the trust
    store: :func:`signing_service.trust.dev_anchor_problem`); the message is that function's,
    in Vietnamese."""


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
            # here, see _ReadOnlyRows.)
            database = settings.database_url.split(":///", 1)[-1].split("?", 1)[0]
            return settings.database_url if Path(database).is_file() else None
        return settings.database_url
    if settings.is_production:
        return None
    path = settings.resolved_data_dir / "metadata.db"
    return f"sqlite:///{path}" if path.is_file() else None


class _ReadOnlyRows:
    """The deployment's database opened for reading only, through its driver alone (no
    SQLAlchemy): SQLite with the standard library's ``sqlite3`` in ``mode=ro`` (no lock
    taken, no file created, https://sqlite.org/uri.html), PostgreSQL with psycopg and
    ``default_transaction_read_only``. :meth:`all` runs one parameterised SELECT (``?``
    placeholders) and returns its rows as dicts.

    Why not SQLAlchemy: importing it, its ORM and the models costs ~0.3 s (more than the
    lookup by far), and ``verify`` should cost no more than twice importing pyHanko's
    validation (issue 13): the bench measured 3.37 × with SQLAlchemy (bench/cli.py). The
    table and column names are those of store/models.py (RegisteredDocument, Document,
    Agency); tests/test_cli_world.py and tests/test_registry_readonly.py compare the section
    with the API's."""

    def __init__(self, url: str) -> None:
        self._pg = not url.startswith("sqlite")
        if not self._pg:
            import sqlite3
            from urllib.parse import quote

            path = Path(url.split(":///", 1)[-1].split("?", 1)[0]).resolve()
            self._connection: Any = sqlite3.connect(
                f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30
            )
            self._connection.row_factory = sqlite3.Row
        else:
            import psycopg
            from psycopg.rows import dict_row

            scheme, rest = url.split("://", 1)
            # SQLAlchemy's driver suffix (postgresql+psycopg://) is not libpq's.
            conninfo = f"{scheme.split('+', 1)[0]}://{rest}"
            self._connection = psycopg.connect(
                conninfo,
                options="-c default_transaction_read_only=on",
                row_factory=dict_row,
                connect_timeout=30,
            )

    def all(self, sql: str, params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        if self._pg:
            sql = sql.replace("?", "%s")
        return [dict(row) for row in self._connection.execute(sql, params).fetchall()]

    def one(self, sql: str, params: tuple[Any, ...] = ()) -> dict[str, Any] | None:
        rows = self.all(sql, params)
        return rows[0] if rows else None

    def close(self) -> None:
        self._connection.close()


def _time(value: Any) -> Any:
    """A stored time as the ORM reads it: SQLite keeps ``YYYY-MM-DD HH:MM:SS.ffffff`` text
    (naive UTC), PostgreSQL gives an aware datetime."""
    return datetime.fromisoformat(value) if isinstance(value, str) else value


class _PlainRegistry:
    """:func:`signing_service.services.registry.registry_section` over :class:`_ReadOnlyRows`:
    the same queries, the same order, the same :class:`RegistryRecord` (its
    ``to_public_dict``), so the command line's section is the API's. Keep the two in step
    (tests/test_registry_readonly.py runs both over the same registries)."""

    def __init__(self, rows: _ReadOnlyRows, base_url: str | None) -> None:
        self.rows, self.base = rows, base_url

    def _registered(self, row_id: int | None) -> dict[str, Any] | None:
        if row_id is None:
            return None
        return self.rows.one("SELECT * FROM registered_documents WHERE id = ?", (row_id,))

    def _linked(self, row_id: int | None) -> Any:
        from signing_service.services.registry_records import LinkedRecord, public_link

        row = self._registered(row_id)
        if row is None:
            return None
        return LinkedRecord(
            row["public_id"],
            public_link(self.base, row["public_id"]),
            row["document_id"],
            row["status"],
        )

    def _newer_version(self, row_id: int) -> int | None:
        row = self.rows.one(
            "SELECT id FROM registered_documents WHERE previous_id = ? ORDER BY id DESC LIMIT 1",
            (row_id,),
        )
        return row["id"] if row is not None else None

    def _latest_version(self, row: dict[str, Any]) -> dict[str, Any]:
        from signing_service.services.registry_records import IN_FORCE, MAX_VERSION_CHAIN

        current, seen = row, {row["id"]}
        for _ in range(MAX_VERSION_CHAIN):
            if current["status"] != IN_FORCE:
                break
            newer_id = self._newer_version(current["id"])
            if newer_id is None or newer_id in seen:
                break
            newer = self._registered(newer_id)
            if newer is None:
                break
            seen.add(newer_id)
            current = newer
        return current

    def _record(self, row: dict[str, Any], matched: dict[str, Any] | None = None) -> Any:
        from signing_service.services.registry_records import (
            IN_FORCE,
            LinkedRecord,
            RegistryRecord,
            public_link,
        )

        newest = self.rows.one("SELECT version FROM documents WHERE id = ?", (row["document_id"],))
        newest_version = newest["version"] if newest is not None and newest["version"] else 1
        agency = self.rows.one("SELECT code, name FROM agencies WHERE id = ?", (row["agency_id"],))
        assert agency is not None
        further = self._newer_version(row["id"])
        governing = row
        if row["status"] == IN_FORCE:
            latest = self._latest_version(row)
            if latest["status"] != IN_FORCE:
                governing = latest
        return RegistryRecord(
            public_id=row["public_id"],
            link=public_link(self.base, row["public_id"]),
            agency_code=agency["code"],
            agency_name=agency["name"],
            kind=row["kind"],
            dossier_code=row["dossier_code"],
            result_code=row["result_code"],
            document_number=row["document_number"],
            issued_at=_time(row["signed_at"]),
            status=governing["status"],
            status_changed_at=_time(governing["status_changed_at"]),
            reason=governing["reason"],
            superseded_by=self._linked(governing["superseded_by_id"]),
            signed_further_by=self._linked(further),
            status_from=(
                LinkedRecord(
                    governing["public_id"],
                    public_link(self.base, governing["public_id"]),
                    governing["document_id"],
                    governing["status"],
                )
                if governing["id"] != row["id"]
                else None
            ),
            document_id=row["document_id"],
            agency_id=row["agency_id"],
            sha256=row["sha256"],
            registered_at=_time(row["registered_at"]),
            signs_further=self._linked(row["previous_id"]),
            version=(matched["version"] or 1) if matched is not None else newest_version,
            newer_version=matched is not None and matched["id"] != row["document_id"],
        )

    def _by_earlier_versions(
        self, digests: list[str]
    ) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        from signing_service.services.registry_records import MAX_VERSION_WALK

        marks = ", ".join("?" for _ in digests)
        documents = self.rows.all(
            "SELECT d.id, d.sha256, d.version FROM documents d "
            "JOIN documents n ON n.previous_version_id = d.id "
            f"WHERE d.sha256 IN ({marks}) ORDER BY d.created_at DESC",
            tuple(digests),
        )
        out: list[tuple[dict[str, Any], dict[str, Any]]] = []
        seen: set[str] = set()
        for document in documents:
            if document["sha256"] in seen:
                continue
            current = document
            for _ in range(MAX_VERSION_WALK):
                following = self.rows.one(
                    "SELECT id, sha256, version FROM documents WHERE previous_version_id = ? "
                    "LIMIT 1",
                    (current["id"],),
                )
                if following is None:
                    break
                current = following
            row = self.rows.one(
                "SELECT * FROM registered_documents WHERE document_id = ? LIMIT 1",
                (current["id"],),
            )
            if row is not None:
                seen.add(document["sha256"])
                out.append((document, row))
        return out

    def _withdrawn_inside(self, revisions: list[str], own: str) -> dict[str, Any] | None:
        """As services/registry.py ``_withdrawn_inside``: the public record of a registered
        document among the file's signed revisions that its issuer revoked or superseded."""
        if not revisions:
            return None
        marks = ", ".join("?" for _ in revisions)
        rows = self.rows.all(
            f"SELECT * FROM registered_documents WHERE sha256 IN ({marks})", tuple(revisions)
        )
        order = {d: i for i, d in enumerate(revisions)}
        for row in sorted(rows, key=lambda r: (order[r["sha256"]], -r["id"])):
            record = self._record(row)
            governed = record.status_from.public_id if record.status_from else record.public_id
            if record.status in ("revoked", "superseded") and governed != own:
                return record.to_public_dict()  # type: ignore[no-any-return]
        return None

    def section(self, pdf: bytes, digest: str) -> dict[str, Any]:
        from signing_service.services.registry_records import (
            NOT_FOUND,
            VALIDATION_DATA,
            only_timestamps_after,
            signature_digests,
            signed_revisions,
        )

        row = self.rows.one(
            "SELECT * FROM registered_documents WHERE sha256 = ? ORDER BY id DESC LIMIT 1",
            (digest,),
        )
        found = None
        if row is not None:
            found = self._record(row)
        else:
            earlier = self._by_earlier_versions([digest])
            if earlier:
                document, row = earlier[0]
                found = self._record(row, document)
        signed = signed_revisions(pdf)
        if found is not None:
            section = {**found.to_public_dict(), "matched": "file"}
            inner = self._withdrawn_inside([d for d, _ in signed if d != digest], found.public_id)
            if inner is not None:
                section["contains"] = inner
            return section
        revisions = [d for d, _ in signed]
        # As the API's registry_section: the furthest of a registered revision (by its bytes)
        # and a registered last signature (by what it covers, new user 22 #1).
        candidates: list[tuple[int, int, dict[str, Any], dict[str, Any] | None]] = []
        if revisions:
            marks = ", ".join("?" for _ in revisions)
            rows = self.rows.all(
                f"SELECT * FROM registered_documents WHERE sha256 IN ({marks})", tuple(revisions)
            )
            ends = dict(signed)
            candidates += [(ends[r["sha256"]], r["id"], r, None) for r in rows]
            candidates += [
                (ends[d["sha256"]], r["id"], r, d) for d, r in self._by_earlier_versions(revisions)
            ]
        covered = dict(signature_digests(pdf))
        if covered:
            marks = ", ".join("?" for _ in covered)
            rows = self.rows.all(
                f"SELECT * FROM registered_documents WHERE signature_sha256 IN ({marks})",
                tuple(covered),
            )
            candidates += [(covered[r["signature_sha256"]], r["id"], r, None) for r in rows]
        if candidates:
            end, _, row, matched = max(candidates, key=lambda c: (c[0], c[1]))
            record = self._record(row, matched)
            if end == len(pdf):
                section = {**record.to_public_dict(), "matched": "file"}
                inner = self._withdrawn_inside([d for d, _ in signed], record.public_id)
                if inner is not None:
                    section["contains"] = inner
                return section
            # Only document timestamps after the issued revision is validation data (red
            # team 12 F5), else content was added.
            how = VALIDATION_DATA if only_timestamps_after(pdf, end) else "revision"
            return {**record.to_public_dict(), "matched": how}
        return dict(NOT_FOUND)


def _shown_url(url: str) -> str:
    """``url`` with its password hidden (``***``, as SQLAlchemy renders it)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))


def _missing_schema(error: BaseException) -> bool:
    text = str(error)
    return "no such table" in text or "does not exist" in text


def registry_lookup(
    settings: Settings, url: str, pdf: bytes, sha256_hex: str
) -> tuple[dict[str, Any] | None, str]:
    """(the registry section of ``pdf`` as the API's report has it, the database URL with its
    password hidden), read-only and without SQLAlchemy (:class:`_ReadOnlyRows`). The section
    is ``None`` when the database has no schema yet (never migrated: nothing was issued
    there). A database that cannot be opened raises :class:`errors.ConfigurationError`
    naming ``SIGNING_SERVICE_DATABASE_URL`` (password hidden, the driver's reason kept)."""
    shown = _shown_url(url)
    try:
        rows = _ReadOnlyRows(url)
    except Exception as e:
        reason = str(e).strip().splitlines()
        raise errors.ConfigurationError(
            "Cấu hình không hợp lệ: SIGNING_SERVICE_DATABASE_URL: không kết nối được cơ sở dữ "
            f"liệu {shown} (sai địa chỉ, tên người dùng hoặc mật khẩu?)"
            + (f": {reason[0]}" if reason else "")
        ) from e
    try:
        return _PlainRegistry(rows, settings.public_base_url).section(pdf, sha256_hex), shown
    except Exception as e:
        if _missing_schema(e):
            return None, shown
        raise
    finally:
        rows.close()


# What verify_standalone imports as it runs (import_verification).
_VERIFICATION_MODULES = (
    "signing_service.services.conclusion",
    "signing_service.services.pdf_upload",
    "signing_service.services.registry_records",
    "signing_service.verification.validate",
)


def import_verification(settings: Settings) -> None:
    """Import now what :func:`verify_standalone` will import when it runs: the verifier
    (pyHanko's validation and ours), the conclusion and registry code, and in development
    the development PKI's module. Nothing is read or built. The command line calls it while
    it pauses Python's cyclic garbage collector (``signing_service.cli._loading``): the
    ~900 modules' objects live as long as the process, so the collections that importing
    them triggers find nothing to free (bench/cli.py)."""
    from importlib import import_module

    for name in _VERIFICATION_MODULES:
        import_module(name)
    if _may_have_dev_pki(settings):
        import_module("signing_service.pki.dev")


def _may_have_dev_pki(settings: Settings) -> bool:
    """Development with a development PKI generated where the settings say (its
    ``state.json``, written last by ``init_dev_pki``): only then is its module, and with it
    certomancer and werkzeug (~70 ms), imported; :func:`signing_service.pki.dev.load_dev_pki`
    decides whether the PKI is complete."""
    return not settings.is_production and (settings.pki_dir / "state.json").is_file()


def verify_standalone(
    settings: Settings, pdf: bytes, *, validation_time: datetime | None = None
) -> StandaloneResult:
    """Verify ``pdf`` as the API would for this deployment, writing nothing (module docstring).

    ``validation_time``: validate as of that moment (aware) instead of now.
    Raises the upload errors of :func:`signing_service.services.verification.verify_document`
    (``EMPTY_FILE``, ``FILE_TOO_LARGE``, ``NOT_A_PDF``, ``MALFORMED_PDF``, ``ENCRYPTED_PDF``)
    as :class:`errors.ServiceError`, :class:`errors.ConfigurationError` for an unreadable
    trust store (naming the settings) or a damaged development PKI (naming its directory),
    and :class:`ProductionRefused` for development anchors in production.
    """
    from signing_service.services.pdf_upload import check_pdf_upload

    check_pdf_upload(pdf, settings.max_document_bytes)
    url = _registry_database_url(settings)
    report, dev_pki = _verify(settings, pdf, validation_time)
    shown = None
    if url is not None:
        # The file's SHA-256 as the verifier computed it (the API's registry lookup uses the
        # same, services/verification.py): not hashed a second time.
        section, shown = registry_lookup(settings, url, pdf, report["document"]["sha256"])
        if section is not None:
            report["registry"] = section
        else:
            shown = None
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

        backend = in_process_fetcher_backend(
            dev_pki, settings.fetch_timeout_seconds, tuple(settings.ca_issuer_urls)
        )
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
    from signing_service.oserror import reason_vi
    from signing_service.trust import (
        TrustStore,
        TrustStoreError,
        dev_anchor_problem,
        load_certs,
    )

    dev_pki = None
    if _may_have_dev_pki(settings):
        from signing_service.pki.dev import load_dev_pki

        # Raises ConfigurationError naming the dev PKI directory when it is damaged.
        dev_pki = load_dev_pki(settings.pki_dir, settings.dev_pki_config)
    try:
        trust = TrustStore.load(
            settings.trust_anchors_file,
            extra=settings.extra_trust_anchors,
            dev_root=dev_pki.root_cert_path if dev_pki else None,
            fetch_timeout=settings.fetch_timeout_seconds,
            ca_issuer_urls=settings.ca_issuer_urls,
        )
    except (TrustStoreError, OSError, ValueError) as e:
        raise errors.ConfigurationError(
            "Cấu hình không hợp lệ: SIGNING_SERVICE_TRUST_ANCHORS_FILE / "
            f"SIGNING_SERVICE_EXTRA_TRUST_ANCHORS: kho chứng thư tin cậy không đọc được ({e})"
        ) from e
    if dev_pki is not None:
        # As Services.build: chain-building material for signatures without it. A fault
        # here is the dev PKI's, not the trust-anchor settings' (red team 14 F9).
        interm = dev_pki.cert_path("interm")
        try:
            trust.intermediates.extend(load_certs(interm))
        except (OSError, ValueError) as e:
            reason = reason_vi(e) if isinstance(e, OSError) else "không phải chứng thư PEM"
            raise errors.ConfigurationError(
                f"Cấu hình không hợp lệ: PKI thử nghiệm {dev_pki.directory} bị hỏng: tệp "
                f"{interm} không đọc được ({reason}). Chạy `signing-service pki init` để xuất "
                "lại các tệp chứng thư."
            ) from None
    # Production: the refusal start-up applies (red team 14 F8: verify trusted a dev-PKI
    # anchor that every other command refuses).
    problem = dev_anchor_problem(settings, trust)
    if problem:
        raise ProductionRefused(problem)
    return trust, dev_pki


def _registered_seal_sha256(settings: Settings, url: str) -> str | None:
    """SHA-256 of the certificate registered for ``SIGNING_SERVICE_REPORT_SEAL_KEY`` in the
    deployment's database (read only, through :class:`_ReadOnlyRows`: the table and column
    names of store/models.py ``SigningKey`` and ``Agency``; None when absent or the schema is
    missing)."""
    import hashlib
    import sqlite3

    import psycopg

    agency_code, _, name = (settings.report_seal_key or "").partition("/")
    try:
        rows = _ReadOnlyRows(url)
    except (sqlite3.Error, psycopg.Error):
        return None
    try:
        row = rows.one(
            "SELECT k.certificate AS certificate FROM signing_keys k "
            "JOIN agencies a ON a.id = k.agency_id WHERE a.code = ? AND k.name = ?",
            (agency_code, name),
        )
    except (sqlite3.Error, psycopg.Error):
        return None
    finally:
        rows.close()
    return hashlib.sha256(bytes(row["certificate"])).hexdigest() if row is not None else None


def verify_evidence_standalone(settings: Settings, data: bytes) -> Any:
    """``signing-service evidence verify`` from the settings alone (red team 12 F8): the
    trust store, the seal certificates the operator lists
    (``SIGNING_SERVICE_EVIDENCE_SEAL_CERTIFICATES``), the current seal's certificate (in
    development the dev PKI's ``service-seal`` when generated, and those of its earlier
    generations, recorded at a re-issue; otherwise the registered
    ``SIGNING_SERVICE_REPORT_SEAL_KEY`` read from the database when there is one). No data
    directory, nothing written. Returns :class:`signing_service.services.evidence.ZipCheck`;
    raises ``ConfigurationError`` (trust store unreadable, dev PKI damaged) and
    :class:`ProductionRefused` (as :func:`verify_standalone`)."""
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
        allowed.update(dev_pki.previous_seals)  # earlier generations' (new user 14 F4)
        backend = in_process_fetcher_backend(dev_pki, settings.fetch_timeout_seconds)
    return check_zip(data, trust=trust, seal_certificates=allowed, fetcher_backend=backend)
