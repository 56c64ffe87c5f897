"""PKCS#11 key source: seal keys in an HSM (SoftHSM2 in development and tests).

URI (RFC 7512 style): ``pkcs11:token=<label>;object=<key label>`` or ``…;id=<hex>``, with query
attributes ``module-path=<library>`` (default: the ``SIGNING_SERVICE_PKCS11_MODULE``
environment variable) and ``pin-source=env:<NAME>`` or ``pin-source=file:<path>``. The PIN is a
secret: it is read from there, never from the URI itself, and never logged. One logged-in
session per token is opened once and reused; signing operations on it are serialised, since
a PKCS#11 session must not run two operations at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlparse

from asn1crypto import x509
from pyhanko.keys import load_cert_from_pemder, load_certs_from_pemder
from pyhanko.sign.pkcs11 import PKCS11Signer

from signing_service.signing.fastcms import FastCmsMixin
from signing_service.signing.keys import KeySourceError, LoadedKey
from signing_service.signing.rawsig import raw_signature_valid


@dataclass(frozen=True)
class Pkcs11Uri:
    token: str
    object: str | None
    id: bytes | None
    module: str
    pin_source: str | None
    cert: str | None
    chain: tuple[str, ...]

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Uri:
        parsed = urlparse(uri)
        if parsed.scheme != "pkcs11":
            raise KeySourceError("not a pkcs11: URI")
        attrs: dict[str, str] = {}
        for part in parsed.path.split(";"):
            if part:
                name, _, value = part.partition("=")
                attrs[name] = unquote(value)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        if "pin-value" in query:
            raise KeySourceError("pin-value is not accepted: use pin-source=env:NAME or file:PATH")
        module = query.get("module-path") or os.environ.get("SIGNING_SERVICE_PKCS11_MODULE")
        if not attrs.get("token") or not module:
            raise KeySourceError("pkcs11 URI needs token= and a module path")
        if not attrs.get("object") and not attrs.get("id"):
            raise KeySourceError("pkcs11 URI needs object= or id=")
        return cls(
            token=attrs["token"],
            object=attrs.get("object"),
            id=bytes.fromhex(attrs["id"].replace("%", "")) if attrs.get("id") else None,
            module=module,
            pin_source=query.get("pin-source"),
            cert=query.get("cert"),
            chain=tuple(parse_qs(parsed.query).get("chain", [])),
        )

    def pin(self) -> str:
        source = self.pin_source or ""
        kind, _, where = source.partition(":")
        if kind == "env" and where in os.environ:
            return os.environ[where]
        if kind == "file":
            try:
                return Path(where).read_text().strip()
            except OSError:
                raise KeySourceError("cannot read the PIN file") from None
        raise KeySourceError("no PIN available (pin-source=env:NAME or file:PATH)")


class Pkcs11KeySigner(FastCmsMixin, PKCS11Signer):
    """pyHanko's PKCS#11 signer with one lock per session and no per-call thread pool: the
    service already signs in a worker thread, and its event loops are short-lived."""

    def __init__(self, *args: object, session_lock: threading.Lock, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._session_lock = session_lock

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if dry_run:
            return self.estimate_raw_signature_size_bytes() * b"0"
        self._load_objects()
        spec = self._select_pkcs11_signing_params(digest_algorithm, self.sign_kwargs(data))
        if spec.pre_sign_transform is not None:
            data = spec.pre_sign_transform(data)
        assert self._key_handle is not None
        with self._session_lock:
            signature: bytes = self._key_handle.sign(data, **spec.sign_kwargs)
        if spec.post_sign_transform is not None:
            signature = spec.post_sign_transform(signature)
        return signature


class _Sessions:
    """One logged-in session per (module, token), opened on first use.

    PKCS#11 login is per application: once one session is logged in, C_Login on the same token
    answers "already logged in" whatever the PIN. So the registry remembers a digest of the PIN
    that logged in and refuses any other PIN for that token.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._sessions: dict[tuple[str, str], tuple[object, threading.Lock, bytes]] = {}

    def get(self, ref: Pkcs11Uri) -> tuple[object, threading.Lock]:
        import pkcs11
        from pkcs11.exceptions import PKCS11Error, UserAlreadyLoggedIn

        key = (ref.module, ref.token)
        pin = ref.pin()
        pin_digest = hashlib.sha256(pin.encode()).digest()
        with self._lock:
            hit = self._sessions.get(key)
            if hit is not None:
                if not hmac.compare_digest(hit[2], pin_digest):
                    raise KeySourceError("PKCS#11 token unavailable: PinIncorrect", "pin_incorrect")
                return hit[0], hit[1]
            try:
                lib = pkcs11.lib(ref.module)
                token = lib.get_token(token_label=ref.token)
                try:
                    session = token.open(user_pin=pin)
                except UserAlreadyLoggedIn:
                    # Logged in by a session this registry does not own (provisioning).
                    session = token.open()
            except (PKCS11Error, RuntimeError, OSError) as e:
                # Never include the PIN: only the error's class.
                reason = {
                    "PinIncorrect": "pin_incorrect",
                    "PinLenRange": "pin_incorrect",
                    "NoSuchToken": "token_not_found",
                }.get(type(e).__name__, "unavailable")
                raise KeySourceError(
                    f"PKCS#11 token unavailable: {type(e).__name__}", reason
                ) from None
            lock = threading.Lock()
            self._sessions[key] = (session, lock, pin_digest)
            return session, lock

    def close_all(self) -> None:
        with self._lock:
            for session, _, _ in self._sessions.values():
                # Closing on shutdown is best effort.
                with contextlib.suppress(Exception):
                    session.close()  # type: ignore[attr-defined]
            self._sessions.clear()


SESSIONS = _Sessions()


def load_pkcs11_key(uri: str) -> LoadedKey:
    from pkcs11.exceptions import PKCS11Error

    ref = Pkcs11Uri.parse(uri)
    session, lock = SESSIONS.get(ref)
    cert: x509.Certificate | None = load_cert_from_pemder(ref.cert) if ref.cert else None
    chain = list(load_certs_from_pemder(list(ref.chain))) if ref.chain else []
    signer = Pkcs11KeySigner(
        session,
        key_label=ref.object,
        key_id=ref.id,
        cert_label=None if cert is not None else ref.object,
        signing_cert=cert,
        ca_chain=chain,
        session_lock=lock,
    )
    try:
        with lock:
            signer._load_objects()
    except (PKCS11Error, Exception) as e:  # noqa: BLE001 - missing key/cert on the token
        raise KeySourceError(
            f"key or certificate not found on the token: {type(e).__name__}", "key_not_found"
        ) from None
    if cert is not None:
        _check_key_matches(signer, cert)
    return LoadedKey(signer=signer, signing_cert=signer.signing_cert, chain=tuple(chain))


def _check_key_matches(signer: Pkcs11KeySigner, cert: x509.Certificate) -> None:
    """The token's key must be the certificate's key: sign a probe and verify it."""
    from signing_service._async import run_sync

    probe = b"signing-service key/certificate match probe"
    signature = run_sync(signer.async_sign_raw(probe, "sha256"))
    if not raw_signature_valid(cert, probe, signature):
        raise KeySourceError(
            "the token's key does not match the certificate", "certificate_mismatch"
        )
