"""Key sources behind one abstraction: a dispatch table from a registered key's kind to the
module that opens it (securesystemslib's signer table, by kind instead of by URI scheme).

``pkcs12`` (keys the service holds, sealed in its key store), ``pkcs11`` (HSMs, SoftHSM2 in
development), ``csc`` (remote signing providers, CSC API v2). Each source module has
``open_key(spec: KeySpec) -> LoadedKey`` and imports only :mod:`.base`, never this package's
table, so no source imports another and none imports back. Modules are imported on first use:
a process that never opens an HSM key never loads the PKCS#11 wrapper.

Officers' own certificates (two-step signing) are registered too, but the service never holds
their keys: they have no source here.
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable
from typing import cast

from signing_service.signing.keys.base import (
    KeySourceError,
    KeySpec,
    LoadedKey,
    is_ca_certificate,
    sha256_fingerprint,
    with_authorization,
)

__all__ = [
    "SOURCES",
    "KeyCache",
    "KeySourceError",
    "KeySpec",
    "LoadedKey",
    "is_ca_certificate",
    "open_key",
    "sha256_fingerprint",
    "with_authorization",
]

# kind -> module with ``open_key(spec) -> LoadedKey``.
SOURCES: dict[str, str] = {
    "pkcs12": "signing_service.signing.keys.pkcs12",
    "pkcs11": "signing_service.signing.keys.pkcs11",
    "csc": "signing_service.signing.keys.csc",
}


def open_key(spec: KeySpec) -> LoadedKey:
    """Open ``spec`` with its kind's source; :class:`KeySourceError` for an unknown kind or
    when the source cannot open it."""
    module_name = SOURCES.get(spec.kind)
    if module_name is None:
        raise KeySourceError(f"no key source for kind {spec.kind!r}")
    opener = cast(Callable[[KeySpec], LoadedKey], importlib.import_module(module_name).open_key)
    return opener(spec)


class KeyCache:
    """Opened keys by registry id, so that a key is unsealed, parsed or logged in once per
    process, not per signature (the fast CMS templates live on the cached signer too)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, LoadedKey] = {}

    def get(self, spec: KeySpec) -> LoadedKey:
        """The opened key for ``spec.key_id``, opening it on first use."""
        with self._lock:
            hit = self._keys.get(spec.key_id)
        if hit is not None:
            return hit
        loaded = open_key(spec)
        with self._lock:
            return self._keys.setdefault(spec.key_id, loaded)

    def cached(self, key_id: str) -> LoadedKey | None:
        """The key already opened for ``key_id``, or None: lets a caller skip building the
        spec (parsing the registered certificates) on every signature."""
        with self._lock:
            return self._keys.get(key_id)

    def forget(self, key_id: str) -> None:
        """Drop an opened key (it was disabled)."""
        with self._lock:
            self._keys.pop(key_id, None)
