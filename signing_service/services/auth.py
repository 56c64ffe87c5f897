"""API keys: their form, how a request's key is checked, and when a key counts as usable.

A key is ``ssk_<key id>_<secret>``: the key id (16 hex digits) names the database row, the
secret (256 random bits) is stored only as its SHA-256. A key authenticates while it is neither
revoked nor past its ``expires_at`` (its chosen expiry, or the end of the overlap after it was
rotated); every other case answers the same 401 ``UNAUTHENTICATED``, so a caller cannot tell a
revoked key from an expired or unknown one.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from datetime import UTC, datetime

from sqlalchemy import bindparam, select
from sqlalchemy.orm import Session, joinedload

from signing_service.errors import Unauthenticated
from signing_service.store.models import ApiClient
from signing_service.timefmt import aware_utc

PREFIX = "ssk"
# client: signs and reads its agency's documents; admin: also manages its signing profiles;
# operator: the platform operator's API, bound to no agency.
AGENCY_ROLES = ("client", "admin")
OPERATOR_ROLE = "operator"
ROLES = (*AGENCY_ROLES, OPERATOR_ROLE)
KEY_ID = re.compile(r"[0-9a-f]{16}")
_ZERO_DIGEST = "0" * 64


def new_api_key() -> tuple[str, str, str]:
    """Return (full key shown once, key id, SHA-256 of the secret). Keys have 256 bits of
    entropy, so a plain SHA-256 (not a slow password hash) is the right storage form."""
    key_id = secrets.token_hex(8)
    secret = secrets.token_urlsafe(32)
    return f"{PREFIX}_{key_id}_{secret}", key_id, hashlib.sha256(secret.encode()).hexdigest()


def key_status(client: ApiClient, now: datetime | None = None) -> str:
    """``revoked``, ``expired``, ``overlap`` (rotated, still usable until ``expires_at``) or
    ``active``. Only ``active`` and ``overlap`` keys authenticate."""
    now = now or datetime.now(UTC)
    if client.revoked_at is not None:
        return "revoked"
    if client.expires_at is not None and aware_utc(client.expires_at) <= now:
        return "expired"
    if client.replaced_by is not None:
        return "overlap"
    return "active"


def is_usable(client: ApiClient, now: datetime | None = None) -> bool:
    """Whether ``client``'s key authenticates at ``now`` (default: the current time)."""
    return key_status(client, now) in ("active", "overlap")


# Built once with a bound parameter: building and keying the statement on every request
# cost more CPU than running it.
_BY_KEY_ID = (
    select(ApiClient)
    .options(joinedload(ApiClient.agency))
    .where(ApiClient.key_id == bindparam("key_id"))
)


def authenticate(session: Session, authorization: str | None) -> ApiClient:
    """The API key named by an ``Authorization: Bearer ssk_…`` header value.

    Raises :class:`Unauthenticated` (401) for a missing, malformed, unknown, wrong, revoked or
    expired key, all alike. The secret is compared in constant time, and a digest is computed
    and compared even for an unknown key id, so timing does not reveal which key ids exist."""
    if not authorization:
        raise Unauthenticated()
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        raise Unauthenticated()
    parts = token.strip().split("_", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise Unauthenticated()
    _, key_id, secret = parts
    # Checked before the query: a NUL or an over-long value must not reach PostgreSQL.
    client = (
        # The agency comes in the same query (every agency request needs it): one round trip.
        session.scalars(_BY_KEY_ID, {"key_id": key_id}).first()
        if KEY_ID.fullmatch(key_id)
        else None
    )
    digest = hashlib.sha256(secret.encode(errors="surrogatepass")).hexdigest()
    expected = client.key_hash if client is not None else _ZERO_DIGEST
    if not hmac.compare_digest(digest, expected) or client is None or not is_usable(client):
        raise Unauthenticated()
    return client
