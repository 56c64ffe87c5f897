from __future__ import annotations

import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.orm import Session

from signing_service.errors import Unauthenticated
from signing_service.store.models import ApiClient

PREFIX = "ssk"


def new_api_key() -> tuple[str, str, str]:
    """Return (full key shown once, key id, SHA-256 of the secret). Keys have 256 bits of
    entropy, so a plain SHA-256 (not a slow password hash) is the right storage form."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}_{key_id}_{secret}", key_id, hashlib.sha256(secret.encode()).hexdigest()


def authenticate(session: Session, authorization: str | None) -> ApiClient:
    if not authorization:
        raise Unauthenticated()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated()
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise Unauthenticated()
    _, key_id, secret = parts
    client = session.scalars(select(ApiClient).where(ApiClient.key_id == key_id)).first()
    digest = hashlib.sha256(secret.encode()).hexdigest()
    expected = client.key_hash if client is not None else "0" * 64
    if not hmac.compare_digest(digest, expected) or client is None or client.revoked_at:
        raise Unauthenticated()
    return client
