"""PKCS#11 key source: seal keys in an HSM (SoftHSM2 in development and tests).

The operator registers a key with a reference (RFC 7512 path attributes only):
``pkcs11:token=<label>;object=<key label>`` or ``…;id=<hex or %-encoded bytes>``, a PKCS#11
module *named* in the operator's configuration (``SIGNING_SERVICE_PKCS11_MODULES``), and the
token's PIN, given once at ``key add`` and kept sealed in the key store. A reference carries no
module path, PIN source or certificate path: those are exactly what let a tenant load any
library into the server and read any file (issue 9), so :meth:`Pkcs11Reference.parse` refuses
every query attribute.

One logged-in session per (module, token) is opened once and reused; signing operations on it
are serialised, since a PKCS#11 session must not run two operations at once.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote, unquote_to_bytes

from asn1crypto import x509
from pyhanko.sign.pkcs11 import PKCS11Signer
from pyhanko_certvalidator.registry import CertificateStore, SimpleCertificateStore

from signing_service.signing.fastcms import FastCmsMixin
from signing_service.signing.keys.base import KeySourceError, KeySpec, LoadedKey
from signing_service.signing.rawsig import raw_signature_valid

# PKCS#11 token labels are 32 bytes; object labels are free text (bounded here).
MAX_TOKEN_LABEL = 32
MAX_OBJECT_LABEL = 128
MAX_ID_BYTES = 64
_HEX = re.compile(r"^(?:[0-9a-fA-F]{2})+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Pkcs11Reference:
    """Which key on which token: ``token`` label, and the key's ``object`` label or ``id``."""

    token: str
    object: str | None
    id: bytes | None

    @classmethod
    def parse(cls, uri: str) -> Pkcs11Reference:
        """Parse ``pkcs11:token=…;object=…`` (or ``id=…``). Raises :class:`KeySourceError`
        ``invalid_reference`` for anything else: query attributes (``module-path``,
        ``pin-source``, ``pin-value``…), unknown attributes, a non-hex id, control characters,
        overlong labels."""
        if not uri.startswith("pkcs11:") or "?" in uri:
            raise KeySourceError(
                "a PKCS#11 reference is pkcs11:token=…;object=… (no query attributes: the "
                "module and the PIN come from the operator's configuration)",
                "invalid_reference",
            )
        attrs: dict[str, str] = {}
        for part in uri[len("pkcs11:") :].split(";"):
            if not part:
                continue
            name, sep, value = part.partition("=")
            if not sep or name not in ("token", "object", "id") or name in attrs:
                raise KeySourceError(f"unexpected PKCS#11 attribute {name!r}", "invalid_reference")
            attrs[name] = value
        token = unquote(attrs.get("token", ""))
        label = unquote(attrs["object"]) if "object" in attrs else None
        key_id = _parse_id(attrs["id"]) if "id" in attrs else None
        if not token or len(token.encode()) > MAX_TOKEN_LABEL or _CONTROL.search(token):
            raise KeySourceError("the token label is missing or invalid", "invalid_reference")
        if label is not None and (
            not label or len(label) > MAX_OBJECT_LABEL or _CONTROL.search(label)
        ):
            raise KeySourceError("the object label is invalid", "invalid_reference")
        if label is None and key_id is None:
            raise KeySourceError("a PKCS#11 reference needs object= or id=", "invalid_reference")
        return cls(token=token, object=label, id=key_id)

    def params(self) -> dict[str, str]:
        """The reference as :attr:`KeySpec.params` entries (``token``, ``object``, ``id``)."""
        out = {"token": self.token}
        if self.object is not None:
            out["object"] = self.object
        if self.id is not None:
            out["id"] = self.id.hex()
        return out

    @classmethod
    def of(cls, params: Mapping[str, str]) -> Pkcs11Reference:
        """The reference back from :meth:`params`."""
        key_id = params.get("id")
        return cls(
            token=params["token"],
            object=params.get("object"),
            id=bytes.fromhex(key_id) if key_id else None,
        )


def _parse_id(value: str) -> bytes:
    """An id as hex (``01ab``) or RFC 7512 percent-encoding (``%01%ab``)."""
    if "%" in value:
        if not re.fullmatch(r"(?:%[0-9a-fA-F]{2})+", value):
            raise KeySourceError("the PKCS#11 id is not percent-encoded bytes", "invalid_reference")
        raw = unquote_to_bytes(value)
    elif _HEX.match(value):
        raw = bytes.fromhex(value)
    else:
        raise KeySourceError("the PKCS#11 id is not hexadecimal", "invalid_reference")
    if len(raw) > MAX_ID_BYTES:
        raise KeySourceError("the PKCS#11 id is too long", "invalid_reference")
    return raw


# PKCS#11 errors meaning the session is gone (the HSM restarted, the library was
# re-initialised, the token was re-inserted): the session is opened again, once.
SESSION_LOST = frozenset(
    {"SessionHandleInvalid", "SessionClosed", "DeviceRemoved", "TokenNotPresent"}
)


def _session_lost(e: BaseException) -> bool:
    return type(e).__name__ in SESSION_LOST


class Pkcs11KeySigner(FastCmsMixin, PKCS11Signer):
    """pyHanko's PKCS#11 signer with one lock per session and no per-call thread pool: the
    service already signs in a worker thread, and its event loops are short-lived. When the
    session is lost (an HSM restart), it logs in again and retries the operation once, instead
    of failing every signature until the service restarts."""

    def __init__(
        self,
        *args: object,
        session_lock: threading.Lock,
        reopen: Callable[[], tuple[object, threading.Lock]] | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._session_lock = session_lock
        self._reopen = reopen

    @property
    def cert_registry(self) -> CertificateStore:
        """The certificates embedded besides the signer's: the configured chain (and any the
        token supplies), without the signing certificate. pyHanko 0.38's PKCS11Signer
        registers the signing certificate in this store and its CMS builder adds it once more
        (a set of asn1crypto objects, which compare by identity), so every CMS carried the
        signer's certificate twice: ~1.1 KB more than the /Contents reservation
        (engine.estimate_signature_size) allows, and each PKCS#11 signature was made twice,
        the second time in a larger reservation (seen in the bench: 2.3 × a file key)."""
        store = super().cert_registry
        cached = getattr(self, "_embedded_registry", None)
        if cached is not None and cached[0] is store and cached[1] == len(list(store)):
            return cached[2]
        signer_der = self.signing_cert.dump() if self.signing_cert is not None else None
        seen: set[bytes] = set()
        others = SimpleCertificateStore()
        for cert in store:
            der = cert.dump()
            if der != signer_der and der not in seen:
                seen.add(der)
                others.register(cert)
        self._embedded_registry = (store, len(list(store)), others)
        return others

    def reconnect(self) -> None:
        """A fresh logged-in session, and the key's handle found again on it."""
        if self._reopen is None:
            raise KeySourceError("PKCS#11 session lost")
        self.pkcs11_session, self._session_lock = self._reopen()  # type: ignore[assignment]
        self._loaded = False
        self._key_handle = None
        with self._session_lock:
            self._load_objects()

    async def async_sign_raw(
        self, data: bytes, digest_algorithm: str, dry_run: bool = False
    ) -> bytes:
        if dry_run:
            return self.estimate_raw_signature_size_bytes() * b"0"
        self._load_objects()
        spec = self._select_pkcs11_signing_params(digest_algorithm, self.sign_kwargs(data))
        if spec.pre_sign_transform is not None:
            data = spec.pre_sign_transform(data)
        try:
            signature = self._sign(data, spec.sign_kwargs)
        except Exception as e:
            if not _session_lost(e):
                raise
            self.reconnect()
            signature = self._sign(data, spec.sign_kwargs)
        if spec.post_sign_transform is not None:
            signature = spec.post_sign_transform(signature)
        return signature

    def _sign(self, data: bytes, kwargs: dict[str, object]) -> bytes:
        assert self._key_handle is not None
        with self._session_lock:
            signature: bytes = self._key_handle.sign(data, **kwargs)
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

    def get(self, module: str, token_label: str, pin: str) -> tuple[object, threading.Lock]:
        import pkcs11
        from pkcs11.exceptions import PKCS11Error, UserAlreadyLoggedIn

        key = (module, token_label)
        pin_digest = hashlib.sha256(pin.encode()).digest()
        with self._lock:
            hit = self._sessions.get(key)
            if hit is not None:
                if not hmac.compare_digest(hit[2], pin_digest):
                    raise KeySourceError("PKCS#11 token unavailable: PinIncorrect", "pin_incorrect")
                return hit[0], hit[1]
            try:
                lib = pkcs11.lib(module)
                token = lib.get_token(token_label=token_label)
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

    def drop(self, module: str, token_label: str) -> None:
        """Forget a session that is gone (it is opened again on next use)."""
        with self._lock:
            hit = self._sessions.pop((module, token_label), None)
        if hit is not None:
            with contextlib.suppress(Exception):  # already invalid: closing is best effort
                hit[0].close()  # type: ignore[attr-defined]

    def close_all(self) -> None:
        with self._lock:
            for session, _, _ in self._sessions.values():
                # Closing on shutdown is best effort.
                with contextlib.suppress(Exception):
                    session.close()  # type: ignore[attr-defined]
            self._sessions.clear()


SESSIONS = _Sessions()


def open_reference(
    module: str,
    ref: Pkcs11Reference,
    pin: str,
    certificate: x509.Certificate | None,
    chain: tuple[x509.Certificate, ...],
) -> LoadedKey:
    """Open ``ref`` on the token through the library at ``module`` (a path from the operator's
    configuration), logged in with ``pin``.

    ``certificate``: the key's certificate; ``None`` reads it from the token (the certificate
    object with the key's label or id). A probe signature is checked against the certificate,
    so a key that is not the certificate's key is refused (``certificate_mismatch``).
    """

    def reopen() -> tuple[object, threading.Lock]:
        SESSIONS.drop(module, ref.token)
        return SESSIONS.get(module, ref.token, pin)

    session, lock = SESSIONS.get(module, ref.token, pin)
    signer = Pkcs11KeySigner(
        session,
        # Without a certificate, pyHanko reads the one with the key's label (or id).
        key_label=ref.object,
        key_id=ref.id,
        signing_cert=certificate,
        ca_chain=list(chain),
        session_lock=lock,
        reopen=reopen,
    )
    try:
        try:
            with lock:
                signer._load_objects()
        except Exception as e:
            if not _session_lost(e):
                raise
            signer.reconnect()
    except KeySourceError:
        raise
    except Exception as e:  # noqa: BLE001 - missing key/cert on the token
        raise KeySourceError(
            f"key or certificate not found on the token: {type(e).__name__}", "key_not_found"
        ) from None
    cert = signer.signing_cert
    _check_key_matches(signer, cert)
    return LoadedKey(signer=signer, signing_cert=cert, chain=chain)


def open_key(spec: KeySpec) -> LoadedKey:
    """Open a registered PKCS#11 key: ``params`` ``module`` (library path from the operator's
    configuration), ``token``, ``object`` and/or ``id``; the secret is the PIN."""
    ref = Pkcs11Reference.of(spec.params)
    pin = spec.read_secret().decode()
    return open_reference(spec.params["module"], ref, pin, spec.certificate, spec.chain)


def _check_key_matches(signer: Pkcs11KeySigner, cert: x509.Certificate) -> None:
    """The token's key must be the certificate's key: sign a probe and verify it."""
    from signing_service._async import run_sync

    probe = b"signing-service key/certificate match probe"
    signature = run_sync(signer.async_sign_raw(probe, "sha256"))
    if not raw_signature_valid(cert, probe, signature):
        raise KeySourceError(
            "the token's key does not match the certificate", "certificate_mismatch"
        )
