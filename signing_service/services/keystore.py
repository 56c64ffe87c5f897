"""The service's key store: sealed key material under ``<data_dir>/keys``, private to the
service's user (directory 0700, files 0600).

One file per registered key that the service holds a secret for (a PKCS#12 key, an HSM PIN),
named by the key's registry id; never a path that a tenant, or anyone but this module, names.
The file holds the material sealed under the key's own random data key; the database holds that
data key wrapped under the master key (see :mod:`signing_service.signing.keys.sealing`). A copy
of the directory without the database and the master secret, or of the database without the
directory, opens nothing.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from signing_service import errors
from signing_service.signing.keys.sealing import master_key, new_data_key, seal, unseal

if TYPE_CHECKING:
    from signing_service.services.container import Services

DEV_MASTER_FILE = "dev-master.secret"
_UID = re.compile(r"^[0-9a-f-]{36}$")


def binding(uid: str, agency_code: str, kind: str) -> bytes:
    """What a sealed key is bound to (associated data of both seals)."""
    return f"signing-service key {uid} agency {agency_code} kind {kind}".encode()


class KeyStore:
    """Sealed material by key id in ``directory``, under ``master_secret``."""

    def __init__(self, directory: Path, master_secret: bytes) -> None:
        self.directory = directory
        self._master = master_key(master_secret)

    @classmethod
    def of(cls, services: Services) -> KeyStore:
        """The store of ``services``: the master secret is ``SIGNING_SERVICE_KEY_STORE_SECRET``;
        development mode generates one (kept in the store directory) when it is unset;
        production without it raises :class:`errors.ConfigurationError`."""
        settings = services.settings
        directory = settings.key_store_dir
        if settings.key_store_secret is not None:
            return cls(directory, settings.key_store_secret.get_secret_value().encode())
        if settings.is_production:
            raise errors.ConfigurationError(
                "Chưa cấu hình SIGNING_SERVICE_KEY_STORE_SECRET (bí mật chính của kho khóa): "
                "không thể lưu hay mở khóa ký do dịch vụ giữ."
            )
        _private_dir(directory)
        path = directory / DEV_MASTER_FILE
        if not path.exists():
            _write_private(path, base64.b64encode(secrets.token_bytes(32)))
        return cls(directory, path.read_bytes().strip())

    def _path(self, uid: str) -> Path:
        if not _UID.match(uid):  # ids are ours (uuid4); anything else is a bug, not a path
            raise ValueError("not a key id")
        return self.directory / f"{uid}.sealed"

    def put(self, uid: str, bound_to: bytes, material: bytes) -> bytes:
        """Seal ``material`` for key ``uid`` in its file; return its wrapped data key (what the
        registry row keeps)."""
        data_key = new_data_key()
        _private_dir(self.directory)
        _write_private(self._path(uid), seal(data_key, material, bound_to))
        return seal(self._master, data_key, bound_to)

    def get(self, uid: str, bound_to: bytes, wrapped_key: bytes) -> bytes:
        """The material of key ``uid``. Raises ``KeySourceError`` when the master secret, the
        binding or the file is not the one it was sealed with, ``OSError`` when unreadable."""
        data_key = unseal(self._master, wrapped_key, bound_to)
        return unseal(data_key, self._path(uid).read_bytes(), bound_to)

    def can_unwrap(self, bound_to: bytes, wrapped_key: bytes) -> bool:
        """The master secret opens this wrapped data key (a start-up check, no file read)."""
        from signing_service.signing.keys.base import KeySourceError

        try:
            unseal(self._master, wrapped_key, bound_to)
        except KeySourceError:
            return False
        return True

    def remove(self, uid: str) -> None:
        """Delete key ``uid``'s file (a registration that did not commit)."""
        self._path(uid).unlink(missing_ok=True)


def _private_dir(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    os.chmod(directory, 0o700)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600 from the start, atomically."""
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
