"""``signing-service backup DIR`` / ``restore DIR``: one deployment's state, copied and put back.

What a backup holds (``DIR``, private to the operator's user: 0700 / 0600):

- ``database/<table>.jsonl``: every row of every table of the metadata database, dumped through
  SQLAlchemy inside one transaction (PostgreSQL: ``REPEATABLE READ``, one snapshot; SQLite: the
  write lock), so the same backup restores into SQLite or PostgreSQL; the Alembic revision is
  recorded and the restore builds exactly that schema before loading, then migrates to the
  newest. Chosen over ``pg_dump`` because it serves both databases the service supports and
  needs no server-version-matched client tools on the host.
- ``objects/<key>``: every object of the object store (filesystem or S3/MinIO), copied after
  the database snapshot (objects are written before the rows that name them, never changed,
  so every object a backed-up row names is there), with its retention date and legal hold,
  which the restore puts back (S3 object lock, governance mode; the filesystem store's
  sidecar).
- ``files/key_store/…``: the key store (``<data_dir>/keys``: each registered key sealed under
  its own data key; the database holds those data keys wrapped under the master secret);
  ``files/audit_seals/…``: the audit chain-head seals (RFC 3161 timestamped).
- development only: the dev PKI, the SoftHSM2 token directory, the development audit key and
  the dev credentials file (development material, not secrets; without them the restored demo
  documents would not verify and the demo log could not be checked).
- ``manifest.json``: the format, the schema revision, the audit key's id (never the key), each
  file's size and SHA-256; ``manifest.json.sha256``: the manifest's own SHA-256 (accidental
  damage); ``manifest.json.mac``: HMAC-SHA-256 of the manifest under a key derived from the
  operator's audit secret (:func:`manifest_mac`). A plain digest can be recomputed by whoever
  edits the backup (red team 12 F7: a planted operator API key, a cut audit-log tail restored
  and ``audit verify`` passed); the MAC needs the secret, which the backup never holds.

What a backup never holds, and the operator keeps separately (a vault, not beside the backup):
the audit MAC secret (``SIGNING_SERVICE_AUDIT_KEY`` / ``_FILE``) and the key store's master
secret (``SIGNING_SERVICE_KEY_STORE_SECRET``). The restore checks that the configured audit
key is the one the backed-up log was keyed with (by its id) and refuses otherwise. Keys held in
an HSM stay in the HSM (the database keeps only their reference). Uploads still being
screened (``<data_dir>/tmp``) and the quarantine of infected uploads are not copied.

``restore`` first checks the manifest's MAC with the configured audit key, then every file
against the manifest (a damaged, incomplete or edited backup is refused before anything is
written), then requires an empty target (a database without rows,
an object store without objects: the service stopped, the old state wiped or a new
deployment), then writes the files, the objects and the rows, and appends ``backup.restored``
to the audit log.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from signing_service.settings import Settings

FORMAT = "signing-service-backup"
VERSION = 2  # 2: manifest.json.mac (version 1 had only an unkeyed digest: not restored)
MANIFEST = "manifest.json"
MANIFEST_DIGEST = "manifest.json.sha256"
MANIFEST_MAC = "manifest.json.mac"
_MAC_KEY_LABEL = b"signing-service backup manifest MAC key v1"
CHUNK = 1024 * 1024
BATCH = 500


class BackupRefused(Exception):
    """The backup or restore was refused; ``str()`` is the Vietnamese reason."""


@dataclass
class BackupSummary:
    """What a backup or restore covered: rows per table, objects and bytes, files."""

    directory: Path
    schema_revision: str
    rows: dict[str, int] = field(default_factory=dict)
    objects: int = 0
    object_bytes: int = 0
    files: int = 0
    audit_key_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "directory": str(self.directory),
            "schema_revision": self.schema_revision,
            "rows": self.rows,
            "objects": self.objects,
            "object_bytes": self.object_bytes,
            "files": self.files,
            "audit_key_id": self.audit_key_id,
        }


# --- what is copied from the data directory ------------------------------------------------


def _file_sources(settings: Settings) -> dict[str, Path]:
    """Category -> directory or file of this deployment (module docstring)."""
    sources = {"key_store": settings.key_store_dir, "audit_seals": settings.audit_seals_path}
    if not settings.is_production:
        sources.update(
            {
                "dev_pki": settings.pki_dir,
                "dev_softhsm": settings.softhsm_dir,
                "dev_audit_key": settings.dev_audit_key_path,
                "dev_credentials": settings.dev_credentials_file,
            }
        )
    return sources


def _walk(root: Path) -> Iterator[tuple[str, Path]]:
    """(relative posix path, path) of every regular file under ``root`` (or ``root`` itself)."""
    if root.is_file():
        yield "", root
        return
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink():
            yield path.relative_to(root).as_posix(), path


# --- values of rows ------------------------------------------------------------------------


def _encode(value: Any) -> Any:
    """A column value as JSON: bytes as ``{"b64": …}``, times and dates as ISO 8601."""
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal | uuid.UUID):
        return str(value)  # Numeric and Uuid columns: decoded by the column's type
    return value


def _decode(value: Any, column: Any) -> Any:
    from sqlalchemy import JSON, Date, DateTime, LargeBinary, Numeric, Uuid, null

    kind = column.type
    if value is None:
        # A JSON column's None is SQL NULL (not the JSON literal null).
        return null() if isinstance(kind, JSON) else None
    if isinstance(kind, LargeBinary):
        return base64.b64decode(value["b64"])
    if isinstance(kind, DateTime):
        moment = datetime.fromisoformat(value)
        # Stored times are UTC; SQLite hands them back without their zone.
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
    if isinstance(kind, Date):
        return date.fromisoformat(value)
    if isinstance(kind, Numeric) and isinstance(value, str):
        return Decimal(value)
    if isinstance(kind, Uuid) and kind.as_uuid and isinstance(value, str):
        return uuid.UUID(value)
    return value


# --- hashing and files ---------------------------------------------------------------------


def _sha256_file(path: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _private_dirs(directory: Path) -> None:
    """``directory`` and every missing parent made 0700: ``Path.mkdir(parents=True)`` gives
    the parents it creates the umask's mode (0755), not ``mode`` (README: a backup's folders
    are 0700, its files 0600; new user 12 finding 14)."""
    missing = []
    while not directory.exists():
        missing.append(directory)
        directory = directory.parent
    for path in reversed(missing):
        path.mkdir(mode=0o700, exist_ok=True)
        path.chmod(0o700)  # mkdir's mode is masked by the umask too


def _private_file(path: Path) -> Any:
    _private_dirs(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    return os.fdopen(fd, "wb")


def _copy_in(source: Path, target: Path) -> tuple[int, str]:
    digest = hashlib.sha256()
    size = 0
    with source.open("rb") as src, _private_file(target) as out:
        while chunk := src.read(CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    return size, digest.hexdigest()


def _inside(base: Path, relative: str) -> Path:
    """``base / relative``, refusing a manifest path that leaves ``base`` (a damaged or
    hostile manifest must not write elsewhere)."""
    target = (base / relative).resolve()
    if target != base.resolve() and base.resolve() not in target.parents:
        raise BackupRefused(f"bản sao lưu hỏng: đường dẫn {relative!r} nằm ngoài thư mục")
    return target


def manifest_mac(audit_key: Any, body: bytes) -> str:
    """HMAC-SHA-256 (64 hex digits) of the manifest bytes ``body`` under a key derived from the
    audit secret: ``HMAC(HMAC_audit(label), body)``, so a manifest MAC never equals an audit
    entry's MAC (different key, RFC 2104 used as a PRF for the derivation).

    Proves the manifest (and through its SHA-256s every file of the backup) was written by
    someone holding the operator's audit secret; it proves nothing when the key travels inside
    the backup (a development key generated under the data directory)."""
    derived = bytes.fromhex(audit_key.mac(_MAC_KEY_LABEL))
    return hmac.new(derived, body, hashlib.sha256).hexdigest()


# --- backup --------------------------------------------------------------------------------


def _tables() -> list[Any]:
    from signing_service.store.models import Base

    return list(Base.metadata.sorted_tables)


def backup(settings: Settings, directory: Path) -> BackupSummary:
    """Copy the deployment ``settings`` name into ``directory`` (new, or empty).

    Raises :class:`BackupRefused` (a directory that is not empty, no database schema to back
    up), :class:`errors.ConfigurationError` (the audit key), SQLAlchemy's errors for a database
    that cannot be reached and :class:`storage.StorageUnavailableError`.
    """

    from signing_service import audit
    from signing_service.audit.key import load_audit_key
    from signing_service.store.db import Database, schema_revision
    from storage import ObjectNotFound, open_store

    directory = directory.resolve()
    if directory.exists() and (not directory.is_dir() or any(directory.iterdir())):
        raise BackupRefused(f"thư mục {directory} đã có nội dung: chọn một thư mục mới hoặc rỗng")
    _refuse_inside_deployment(settings, directory)
    url = settings.effective_database_url
    # A development SQLite file that does not exist is not created by looking at it.
    exists = (
        settings.database_url is not None or (settings.resolved_data_dir / "metadata.db").is_file()
    )
    revision = schema_revision(url) if exists else None
    if revision is None:
        raise BackupRefused(f"cơ sở dữ liệu {_shown(url)} chưa có lược đồ: không có gì để sao lưu")
    audit_key = load_audit_key(settings)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    summary = BackupSummary(directory, revision, audit_key_id=audit_key.key_id)
    manifest: dict[str, Any] = {
        "format": FORMAT,
        "version": VERSION,
        "created_at": datetime.now(UTC).isoformat(),
        "mode": settings.mode.value,
        "schema_revision": revision,
        "audit_key_id": audit_key.key_id,
        "database": {},
        "objects": None,
        "files": {},
        "not_included": [
            "SIGNING_SERVICE_AUDIT_KEY / SIGNING_SERVICE_AUDIT_KEY_FILE (bí mật của đơn vị vận "
            "hành: giữ riêng)",
            "SIGNING_SERVICE_KEY_STORE_SECRET (bí mật chính của kho khóa: giữ riêng)",
            "khóa trong HSM (chỉ có tham chiếu trong cơ sở dữ liệu)",
            "tệp tải lên đang kiểm tra (tmp) và khu cách ly (quarantine)",
        ],
    }
    db = Database(url, audit_key=audit_key)
    try:
        # Recorded first, so the backup itself carries the entry saying it was made.
        with db.transaction() as session:
            audit.append(
                session, actor="cli", action="backup.created", details={"revision": revision}
            )
        isolation = {} if url.startswith("sqlite") else {"isolation_level": "REPEATABLE READ"}
        with (
            db.engine.connect().execution_options(**isolation) as connection,
            connection.begin(),
        ):
            _dump_tables(connection, directory, manifest, summary)
    finally:
        db.dispose()
    # Objects after the snapshot: every object a backed-up row names exists by now.
    store = open_store(settings.effective_storage_url)
    index = directory / "objects.jsonl"
    with _private_file(index) as listing:
        for item in store.list_info():
            try:
                lock = store.lock_status(item.key)
                reader = store.open(item.key)
            except ObjectNotFound:
                continue  # deleted since it was listed (README: Backup and restore)
            digest = hashlib.sha256()
            size = 0
            try:
                with _private_file(_inside(directory / "objects", item.key)) as out:
                    for chunk in reader:
                        digest.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
            finally:
                reader.close()
            record = {
                "key": item.key,
                "bytes": size,
                "sha256": digest.hexdigest(),
                "retain_until": lock.retain_until.isoformat() if lock.retain_until else None,
                "legal_hold": lock.legal_hold,
            }
            listing.write((json.dumps(record, ensure_ascii=False) + "\n").encode())
            summary.objects += 1
            summary.object_bytes += size
    size, digest_hex = _sha256_file(index)
    manifest["objects"] = {
        "count": summary.objects,
        "file": "objects.jsonl",
        "bytes": size,
        "sha256": digest_hex,
    }
    for category, source in _file_sources(settings).items():
        entries = []
        for relative, path in _walk(source):
            name = f"files/{category}/{relative}" if relative else f"files/{category}"
            size, digest_hex = _copy_in(path, directory / name)
            entries.append({"path": relative, "bytes": size, "sha256": digest_hex})
            summary.files += 1
        if entries:
            kind = "file" if source.is_file() else "dir"
            manifest["files"][category] = {"kind": kind, "entries": entries}
    body = json.dumps(manifest, ensure_ascii=False, indent=2).encode()
    with _private_file(directory / MANIFEST) as out:
        out.write(body)
    mac = {"algorithm": "HMAC-SHA-256", "key_id": audit_key.key_id}
    mac["mac"] = manifest_mac(audit_key, body)
    with _private_file(directory / MANIFEST_MAC) as out:
        out.write((json.dumps(mac) + "\n").encode())
    # Written last: a backup interrupted before this line has no digest and is refused.
    with _private_file(directory / MANIFEST_DIGEST) as out:
        out.write(f"{hashlib.sha256(body).hexdigest()}  {MANIFEST}\n".encode())
    return summary


def _dump_tables(
    connection: Any, directory: Path, manifest: dict[str, Any], summary: BackupSummary
) -> None:
    """Every row of every table, one JSON object a line, ordered by primary key."""
    from sqlalchemy import select

    for table in _tables():
        target = directory / "database" / f"{table.name}.jsonl"
        digest = hashlib.sha256()
        count = size = 0
        order = list(table.primary_key.columns) or list(table.columns)
        with _private_file(target) as out:
            for row in connection.execute(select(table).order_by(*order)):
                line = (
                    json.dumps(
                        {k: _encode(v) for k, v in row._mapping.items()},
                        ensure_ascii=False,
                        sort_keys=True,
                    )
                    + "\n"
                ).encode()
                out.write(line)
                digest.update(line)
                size += len(line)
                count += 1
        manifest["database"][table.name] = {
            "rows": count,
            "file": f"database/{table.name}.jsonl",
            "bytes": size,
            "sha256": digest.hexdigest(),
        }
        summary.rows[table.name] = count


def _refuse_inside_deployment(settings: Settings, directory: Path) -> None:
    """A backup inside what it copies would copy itself (the filesystem store lists it as
    objects while it is written) and be lost with the deployment it should outlive."""
    roots = [settings.resolved_data_dir, *(p.resolve() for p in _file_sources(settings).values())]
    storage_url = settings.effective_storage_url
    if storage_url.startswith("file://"):
        roots.append(Path(storage_url.removeprefix("file://")).resolve())
    for root in roots:
        if directory == root or root in directory.parents:
            raise BackupRefused(
                f"thư mục {directory} nằm trong dữ liệu của chính bản triển khai ({root}): "
                "chọn một thư mục khác (tốt nhất trên máy hoặc ổ đĩa khác)"
            )


def _shown(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


# --- restore -------------------------------------------------------------------------------


def read_manifest(directory: Path, settings: Settings) -> dict[str, Any]:
    """The manifest of the backup in ``directory``, after checking its MAC (:func:`manifest_mac`)
    with the audit key of ``settings`` (:func:`_backup_audit_key`), then every file it lists
    (sizes and SHA-256) and its own digest. Raises :class:`BackupRefused` naming the first
    problem, :class:`errors.ConfigurationError` for the audit key settings."""
    directory = directory.resolve()
    if not directory.is_dir():
        # New user 14 F7: a mistyped path was reported as an incomplete backup.
        raise BackupRefused(
            f"không có thư mục sao lưu {directory}"
            + (" (đây là tệp)" if directory.exists() else "")
        )
    try:
        body = (directory / MANIFEST).read_bytes()
        recorded = (directory / MANIFEST_DIGEST).read_text(encoding="ascii").split()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        raise BackupRefused(
            f"{directory} không phải bản sao lưu hoàn chỉnh (thiếu {MANIFEST} hoặc "
            f"{MANIFEST_DIGEST})"
        ) from None
    if hashlib.sha256(body).hexdigest() != recorded:
        raise BackupRefused(f"bản sao lưu hỏng: {MANIFEST} không khớp mã băm đã ghi")
    try:
        manifest = json.loads(body)
    except ValueError:
        raise BackupRefused(f"bản sao lưu hỏng: {MANIFEST} không đọc được") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BackupRefused("không phải bản sao lưu của dịch vụ này")
    if manifest.get("version") != VERSION:
        raise BackupRefused(
            f"bản sao lưu định dạng phiên bản {manifest.get('version')!r}, phần mềm này cần "
            f"phiên bản {VERSION} (có mã xác thực {MANIFEST_MAC}): tạo bản sao lưu mới"
        )
    key = _backup_audit_key(settings, directory, manifest)
    if key.key_id != manifest.get("audit_key_id"):
        raise BackupRefused(
            f"khóa nhật ký kiểm toán đang cấu hình ({key.key_id}) không phải khóa của bản "
            f"sao lưu ({manifest.get('audit_key_id')}): đặt SIGNING_SERVICE_AUDIT_KEY (hoặc "
            "SIGNING_SERVICE_AUDIT_KEY_FILE) đúng bí mật cũ"
        )
    try:
        sealed = json.loads((directory / MANIFEST_MAC).read_text(encoding="utf-8"))
        claimed = str(sealed["mac"])
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
        raise BackupRefused(
            f"bản sao lưu thiếu mã xác thực {MANIFEST_MAC}: không khôi phục bản sao lưu không "
            "xác thực được"
        ) from None
    # Constant-time comparison: the MAC is the only thing standing between an edited backup
    # (planted API key, cut audit tail: red team 12 F7) and the restore.
    if not hmac.compare_digest(manifest_mac(key, body), claimed):
        raise BackupRefused(
            f"bản sao lưu đã bị sửa hoặc không do khóa nhật ký kiểm toán này tạo: {MANIFEST} "
            f"không khớp mã xác thực {MANIFEST_MAC}"
        )

    def check(relative: str, size: int, sha256: str) -> None:
        path = _inside(directory, relative)
        try:
            found_size, found = _sha256_file(path)
        except OSError:
            raise BackupRefused(f"bản sao lưu thiếu tệp {relative}") from None
        if found_size != size or found != sha256:
            raise BackupRefused(f"bản sao lưu hỏng: {relative} không khớp mã băm trong manifest")

    try:
        for info in manifest["database"].values():
            check(info["file"], info["bytes"], info["sha256"])
        objects = manifest["objects"]
        check(objects["file"], objects["bytes"], objects["sha256"])
        for record in _object_records(directory):
            check(f"objects/{record['key']}", record["bytes"], record["sha256"])
        for category, group in manifest["files"].items():
            for entry in group["entries"]:
                name = f"files/{category}"
                relative = f"{name}/{entry['path']}" if entry["path"] else name
                check(relative, entry["bytes"], entry["sha256"])
    except (KeyError, TypeError, ValueError) as e:
        raise BackupRefused(f"bản sao lưu hỏng: manifest thiếu mục {e}") from None
    return manifest  # type: ignore[no-any-return]


def _backup_audit_key(settings: Settings, directory: Path, manifest: dict[str, Any]) -> Any:
    """The audit key the backup's MAC is checked with: the configured one (production always;
    development when ``SIGNING_SERVICE_AUDIT_KEY``/``_FILE`` is set), else the development key
    the backup carries (``files/dev_audit_key``: development material, so in that case the MAC
    only detects damage, README "Backup and restore"). Never creates a key file."""
    from signing_service.audit.key import AuditKey, load_audit_key

    explicit = settings.audit_key is not None or settings.audit_key_file is not None
    carried = directory / "files" / "dev_audit_key"
    if settings.is_production or explicit or "dev_audit_key" not in manifest.get("files", {}):
        return load_audit_key(settings)
    try:
        secret = carried.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        raise BackupRefused("bản sao lưu thiếu tệp files/dev_audit_key") from None
    return AuditKey(secret, source="development")


def _object_records(directory: Path) -> Iterator[dict[str, Any]]:
    with (directory / "objects.jsonl").open(encoding="utf-8") as listing:
        for line in listing:
            if line.strip():
                yield json.loads(line)


def restore(settings: Settings, directory: Path) -> BackupSummary:
    """Put the backup in ``directory`` into the (empty) deployment ``settings`` name.

    Order: the whole backup is checked (:func:`read_manifest`: the configured audit key must
    be the backup's and the manifest's MAC must verify under it; development without a
    configured key uses the dev key the backup carries); the target must be
    empty; then the files, the objects, the schema at the backup's revision and the rows (one
    transaction), the newest migrations, and a ``backup.restored`` audit entry. Raises
    :class:`BackupRefused`, :class:`errors.ConfigurationError` (the audit key settings),
    SQLAlchemy's errors for a database that cannot be reached,
    :class:`storage.StorageUnavailableError`.
    """
    from signing_service.audit.key import load_audit_key
    from signing_service.store.db import make_engine, schema_revision
    from storage import open_store

    directory = directory.resolve()
    manifest = read_manifest(directory, settings)
    if manifest["mode"] != settings.mode.value:
        raise BackupRefused(
            f"bản sao lưu của chế độ {manifest['mode']}, không khôi phục vào chế độ "
            f"{settings.mode.value}"
        )
    revision = manifest["schema_revision"]
    _check_revision_known(revision)
    url = settings.effective_database_url
    if settings.database_url is None:
        settings.resolved_data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    current = schema_revision(url)
    engine = make_engine(url)
    store = open_store(settings.effective_storage_url)
    try:
        if current is not None:
            _require_empty_database(engine, url)
        if next(iter(store.list()), None) is not None:
            raise BackupRefused(
                "kho lưu trữ đối tượng đã có dữ liệu: chỉ khôi phục vào kho rỗng (dừng dịch "
                "vụ, xóa dữ liệu cũ hoặc dùng kho mới)"
            )
        ensure_bucket = getattr(store, "ensure_bucket", None)
        if ensure_bucket is not None:
            ensure_bucket()
        summary = BackupSummary(directory, revision, audit_key_id=manifest["audit_key_id"])
        # 1. Files (the dev audit key among them, before the key is loaded below).
        targets = _file_sources(settings)
        for category, group in manifest["files"].items():
            if category not in targets:
                continue  # development material is not restored into production
            target = targets[category]
            if group["kind"] == "dir":
                target.mkdir(parents=True, exist_ok=True, mode=0o700)
            for entry in group["entries"]:
                relative = entry["path"]
                source = (
                    directory / "files" / category / relative
                    if relative
                    else (directory / "files" / category)
                )
                destination = _inside(target, relative) if relative else target
                destination.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
                tmp = destination.with_name(f".restore-{destination.name}")
                tmp.unlink(missing_ok=True)
                shutil.copyfile(source, tmp)
                tmp.chmod(0o600)
                os.replace(tmp, destination)
                summary.files += 1
        key = load_audit_key(settings)
        if key.key_id != manifest["audit_key_id"]:
            raise BackupRefused(
                f"khóa nhật ký kiểm toán ({key.key_id}) không phải khóa của bản sao lưu "
                f"({manifest['audit_key_id']})"
            )
        # 2. Objects, with their retention and legal hold.
        for record in _object_records(directory):
            until = (
                datetime.fromisoformat(record["retain_until"]) if record["retain_until"] else None
            )
            path = directory / "objects" / record["key"]
            with path.open("rb") as stream:
                info = store.put_stream(record["key"], stream, record["bytes"], retain_until=until)
            if info.sha256 != record["sha256"]:
                raise BackupRefused(f"đối tượng {record['key']} ghi vào kho không khớp mã băm")
            if record["legal_hold"]:
                store.set_legal_hold(record["key"], True)
            summary.objects += 1
            summary.object_bytes += record["bytes"]
        # 3. The database: the backup's schema, its rows, then the newest schema.
        if current is not None and current != revision:
            _drop_schema(engine)
        engine.dispose()
        _migrate_to(url, revision)
        engine = make_engine(url)
        _load_rows(engine, url, directory, manifest, summary)
        engine.dispose()
        from signing_service.store.db import migrate

        migrate(url)
        _record_restore(settings, url, key, manifest)
        return summary
    finally:
        engine.dispose()


def _check_revision_known(revision: str) -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from signing_service.store.db import MIGRATIONS

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    try:
        known = ScriptDirectory.from_config(config).get_revision(revision)
    except Exception:  # noqa: BLE001 - alembic raises several kinds for an unknown id
        known = None
    if known is None:
        raise BackupRefused(
            f"bản sao lưu ở phiên bản lược đồ {revision!r} mà phần mềm này không biết (bản sao "
            "lưu của phiên bản mới hơn?)"
        )


def _require_empty_database(engine: Any, url: str) -> None:
    from sqlalchemy import func, inspect, select

    present = set(inspect(engine).get_table_names())
    with engine.connect() as connection:
        for table in _tables():
            if (
                table.name in present
                and connection.execute(select(func.count()).select_from(table)).scalar_one()
            ):
                raise BackupRefused(
                    f"cơ sở dữ liệu {_shown(url)} đã có dữ liệu (bảng {table.name}): chỉ khôi "
                    "phục vào cơ sở dữ liệu rỗng (dừng dịch vụ, xóa dữ liệu cũ hoặc dùng cơ sở "
                    "dữ liệu mới)"
                )


def _drop_schema(engine: Any) -> None:
    """Drop the (empty, checked) schema of another revision, so the backup's is built."""
    from sqlalchemy import text

    from signing_service.store.models import Base

    with engine.begin() as connection:
        Base.metadata.drop_all(connection)
        connection.execute(text("DROP TABLE IF EXISTS alembic_version"))


def _migrate_to(url: str, revision: str) -> None:
    from alembic import command
    from alembic.config import Config

    from signing_service.store.db import MIGRATIONS, private_sqlite_file

    if url.startswith("sqlite"):
        private_sqlite_file(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    command.upgrade(config, revision)


def _load_rows(
    engine: Any, url: str, directory: Path, manifest: dict[str, Any], summary: BackupSummary
) -> None:
    """Insert every row in one transaction, parents before children; a foreign key to a row
    of the same (or a later) table is set after all rows are in (a superseded registry entry
    names its newer version, which comes after it)."""
    from sqlalchemy import inspect, text, update

    tables = _tables()
    position = {t.name: i for i, t in enumerate(tables)}
    present = set(inspect(engine).get_table_names())
    later: list[tuple[Any, dict[str, Any], dict[str, Any]]] = []
    with engine.begin() as connection:
        for table in tables:
            info = manifest["database"].get(table.name)
            if info is None or table.name not in present:
                continue
            deferred = {
                c.name
                for c in table.columns
                for fk in c.foreign_keys
                if position.get(fk.column.table.name, -1) >= position[table.name]
            }
            columns = {c.name: c for c in table.columns}
            batch: list[dict[str, Any]] = []
            count = 0
            with (directory / info["file"]).open(encoding="utf-8") as rows:
                for line in rows:
                    raw = json.loads(line)
                    row = {
                        name: _decode(value, columns[name])
                        for name, value in raw.items()
                        if name in columns
                    }
                    pending = {n: row[n] for n in deferred if row.get(n) is not None}
                    if pending:
                        for name in pending:
                            row[name] = None
                        key = {c.name: row[c.name] for c in table.primary_key.columns}
                        later.append((table, key, pending))
                    batch.append(row)
                    count += 1
                    if len(batch) >= BATCH:
                        connection.execute(table.insert(), batch)
                        batch = []
            if batch:
                connection.execute(table.insert(), batch)
            summary.rows[table.name] = count
        for table, key, values in later:
            where = [table.c[name] == value for name, value in key.items()]
            connection.execute(update(table).where(*where).values(**values))
        if not url.startswith("sqlite"):
            # Integer primary keys were given explicitly: move their sequences past them.
            for table in tables:
                keys = list(table.primary_key.columns)
                if len(keys) != 1 or keys[0].type.python_type is not int:
                    continue
                column = keys[0].name
                sequence = connection.execute(
                    text("SELECT pg_get_serial_sequence(:t, :c)"), {"t": table.name, "c": column}
                ).scalar()
                if sequence:
                    connection.execute(
                        text(
                            f'SELECT setval(:s, COALESCE((SELECT MAX("{column}") FROM '
                            f'"{table.name}"), 1), (SELECT COUNT(*) > 0 FROM "{table.name}"))'
                        ),
                        {"s": sequence},
                    )


def _record_restore(settings: Settings, url: str, key: Any, manifest: dict[str, Any]) -> None:
    from signing_service import audit
    from signing_service.store.db import Database

    db = Database(url, audit_key=key)
    try:
        with db.transaction() as session:
            audit.append(
                session,
                actor="cli",
                action="backup.restored",
                details={
                    "backup_created_at": manifest["created_at"],
                    "revision": manifest["schema_revision"],
                },
            )
    finally:
        db.dispose()


__all__ = ["BackupRefused", "BackupSummary", "backup", "read_manifest", "restore"]
