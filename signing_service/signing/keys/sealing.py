"""Sealing key material at rest: AES-256-GCM with a key of its own per registered key.

Every registered key that the service holds a secret for (a PKCS#12 key, an HSM PIN) gets a
fresh random 256-bit *data key*. The material is sealed under the data key; the data key is
sealed ("wrapped") under the *master key*, derived with HKDF-SHA256 from the operator's master
secret. Both seals carry the key's binding (registry id, agency, kind) as associated data, so a
sealed file or wrapped key moved to another key or agency does not open. There is no global
passphrase that opens every key (issue 9: all file keys opened with one passphrase).
"""

from __future__ import annotations

import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from signing_service.signing.keys.base import KeySourceError

NONCE_BYTES = 12
KEY_BYTES = 32
_FORMAT = b"SSK1"  # format tag of a sealed blob: version 1, nonce, ciphertext and tag


def master_key(secret: bytes) -> bytes:
    """The 256-bit master key derived from the operator's master secret (HKDF-SHA256)."""
    return HKDF(
        algorithm=hashes.SHA256(),
        length=KEY_BYTES,
        salt=b"signing-service key store",
        info=b"master key v1",
    ).derive(secret)


def new_data_key() -> bytes:
    """A fresh random 256-bit key for one registered key's material."""
    return AESGCM.generate_key(bit_length=KEY_BYTES * 8)


def seal(key: bytes, plaintext: bytes, binding: bytes) -> bytes:
    """``plaintext`` encrypted and authenticated under ``key``, bound to ``binding``."""
    nonce = os.urandom(NONCE_BYTES)
    return _FORMAT + nonce + AESGCM(key).encrypt(nonce, plaintext, binding)


def unseal(key: bytes, sealed: bytes, binding: bytes) -> bytes:
    """The plaintext of :func:`seal`. Raises :class:`KeySourceError` ``unavailable`` when the
    key, the binding or the bytes are not those it was sealed with."""
    if not sealed.startswith(_FORMAT) or len(sealed) < len(_FORMAT) + NONCE_BYTES + 16:
        raise KeySourceError("sealed key material is malformed")
    nonce = sealed[len(_FORMAT) : len(_FORMAT) + NONCE_BYTES]
    try:
        return AESGCM(key).decrypt(nonce, sealed[len(_FORMAT) + NONCE_BYTES :], binding)
    except InvalidTag:
        raise KeySourceError(
            "sealed key material does not open with this master secret and binding"
        ) from None
