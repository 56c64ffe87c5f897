"""Test material for the duties before signing: bad signers and bad timestamp servers.

- :func:`add_profile`: a signing profile row naming a registered key and one of the operator's
  TSAs by name (the bad signers are registered with ``tests.support.keys``' ``*_without_checks``
  helpers: a key that passed the checks when registered and has since gone bad).
- :func:`issue_under_dev` / :func:`write_p12`: a certificate from the dev intermediate (trusted)
  whose OCSP responder and CRL are wherever the test says (a closed port: status unknown; a
  :func:`crl_app` server: a CRL the test controls), and a PKCS#12 file for it.
- :class:`BadTsa`: pyHanko's ``DummyTimeStamper`` answering wrongly on purpose (self-signed, SHA-1
  signature or imprint, wrong imprint, wrong nonce, skewed time, non-critical timeStamping EKU),
  and :class:`WsgiServer` to serve it (or a CRL) on loopback; the operator's configuration
  (``SIGNING_SERVICE_TSAS``) names it, never a profile.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from asn1crypto import core, tsp, x509
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import AuthorityInformationAccessOID, ExtendedKeyUsageOID, NameOID
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from werkzeug.serving import BaseWSGIServer, make_server

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from tests.support.keys import AGENCY_A, profile
from tests.support.postgres import free_port
from tests.support.testpki import key_info, new_key, to_asn1

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def add_profile(
    services: Services,
    name: str,
    *,
    key: str,
    level: str = "B-B",
    tsa: str | None = None,
    agency_code: str = AGENCY_A,
) -> None:
    """A signing profile of agency ``agency_code`` (the first demo agency) using its registered
    key ``key`` and the operator's TSA named ``tsa`` (``None``: the default TSA), written
    directly: the admin API would refuse a bad signer at creation, and these tests need the
    refusal at signing time."""
    profile(services, name, key, agency_code, level=level, tsa=tsa)


def dev_key(pki: DevPki, label: str) -> rsa.RSAPrivateKey:
    """The dev PKI's private key ``label`` (``root``, ``interm``, ``tsa``…)."""
    data = (pki.directory / "keys" / f"{label}.key.pem").read_bytes()
    key = serialization.load_pem_private_key(data, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    return key


def _cx(cert: x509.Certificate) -> cx.Certificate:
    return cx.load_der_x509_certificate(cert.dump())


def issue_under_dev(
    pki: DevPki,
    common_name: str,
    *,
    public_key: Any = None,
    crl_url: str | None = None,
    ocsp_url: str | None = None,
    issuer: str = "interm",
    extended_key_usage: tuple[Any, bool] | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey | None]:
    """A fresh end-entity certificate issued by the dev PKI's ``issuer`` (``interm`` or
    ``root``): digitalSignature + nonRepudiation, the given CRL distribution point and OCSP
    responder. ``public_key``: a cryptography public key to certify (else a new RSA-2048 key,
    returned). ``extended_key_usage``: ``(oids, critical)``."""
    private = None
    if public_key is None:
        private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public_key = private.public_key()
    issuer_cert = _cx(pki.cert(issuer))
    now = datetime.now(UTC)
    builder = (
        cx.CertificateBuilder()
        .subject_name(
            cx.Name(
                [
                    cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                    cx.NameAttribute(NameOID.ORGANIZATION_NAME, "Sở Tư pháp tỉnh Demo A"),
                    cx.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(issuer_cert.subject)
        .public_key(public_key)
        .serial_number(cx.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(cx.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(
            cx.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            True,
        )
        .add_extension(cx.SubjectKeyIdentifier.from_public_key(public_key), False)
        .add_extension(
            cx.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer_cert.public_key()  # type: ignore[arg-type]
            ),
            False,
        )
    )
    if crl_url is not None:
        point = cx.DistributionPoint([cx.UniformResourceIdentifier(crl_url)], None, None, None)
        builder = builder.add_extension(cx.CRLDistributionPoints([point]), False)
    if ocsp_url is not None:
        access = cx.AccessDescription(
            AuthorityInformationAccessOID.OCSP, cx.UniformResourceIdentifier(ocsp_url)
        )
        builder = builder.add_extension(cx.AuthorityInformationAccess([access]), False)
    if extended_key_usage is not None:
        oids, critical = extended_key_usage
        builder = builder.add_extension(cx.ExtendedKeyUsage(list(oids)), critical)
    cert = builder.sign(dev_key(pki, issuer), hashes.SHA256())
    return to_asn1(cert), private


def write_p12(
    path: Path,
    key: Any,
    cert: x509.Certificate,
    chain: Iterable[x509.Certificate] = (),
    passphrase: str = DEV_KEY_PASSPHRASE,
) -> Path:
    """A PKCS#12 file under the dev key passphrase (what ``store_without_checks`` reads);
    returns its path."""
    data = pkcs12.serialize_key_and_certificates(
        b"signer",
        key,
        _cx(cert),
        [_cx(c) for c in chain] or None,
        serialization.BestAvailableEncryption(passphrase.encode()),
    )
    path.write_bytes(data)
    return path


def dev_crl(
    pki: DevPki, revoked: Iterable[int] = (), *, next_update: timedelta = timedelta(seconds=3)
) -> bytes:
    """A CRL of the dev intermediate listing the serials ``revoked``, valid ``next_update``."""
    issuer = _cx(pki.cert("interm"))
    now = datetime.now(UTC)
    builder = (
        cx.CertificateRevocationListBuilder()
        .issuer_name(issuer.subject)
        .last_update(now - timedelta(seconds=5))
        .next_update(now + next_update)
        .add_extension(
            cx.AuthorityKeyIdentifier.from_issuer_public_key(
                issuer.public_key()  # type: ignore[arg-type]
            ),
            False,
        )
        .add_extension(cx.CRLNumber(int(now.timestamp() * 1000)), False)
    )
    for serial in revoked:
        builder = builder.add_revoked_certificate(
            cx.RevokedCertificateBuilder()
            .serial_number(serial)
            .revocation_date(now - timedelta(seconds=5))
            .build()
        )
    return builder.sign(dev_key(pki, "interm"), hashes.SHA256()).public_bytes(
        serialization.Encoding.DER
    )


class WsgiServer:
    """A WSGI app on a free loopback port, in a thread."""

    def __init__(self, app: WsgiApp) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server: BaseWSGIServer = make_server("127.0.0.1", 0, app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def __enter__(self) -> WsgiServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)


def crl_app(get_crl: Callable[[], bytes]) -> WsgiApp:
    def app(_environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        body = get_crl()
        start_response("200 OK", [("Content-Type", "application/pkix-crl")])
        return [body]

    return app


def tsa_app(get_tsa: Callable[[], DummyTimeStamper]) -> WsgiApp:
    """RFC 3161 over HTTP: the answer of ``get_tsa()`` (looked up per request, so a test can
    switch the TSA's behaviour between two requests)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> list[bytes]:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        request = tsp.TimeStampReq.load(environ["wsgi.input"].read(length))
        body = get_tsa().request_tsa_response(request).dump()
        start_response("200 OK", [("Content-Type", "application/timestamp-reply")])
        return [body]

    return app


# The ways a timestamp server can answer wrongly, and the code the service refuses it with.
BAD_TSA_CODES = {
    "self_signed": "TIMESTAMP_UNTRUSTED",
    "sha1_signature": "TIMESTAMP_WEAK_ALGORITHM",
    "sha1_imprint": "TIMESTAMP_WEAK_ALGORITHM",
    "wrong_imprint": "TIMESTAMP_IMPRINT_MISMATCH",
    "wrong_nonce": "TIMESTAMP_NONCE_MISMATCH",
    "skewed": "TIMESTAMP_TIME_SKEW",
    "eku_not_critical": "TIMESTAMP_KEY_PURPOSE",
}
# Not the TSA's fault alone: its certificate's revocation status cannot be established now.
UNKNOWN_STATUS_TSA = "status_unknown"


class BadTsa(DummyTimeStamper):
    """pyHanko's test TSA, answering in one of the ways of :data:`BAD_TSA_CODES` (or ``good``:
    the dev TSA's key and certificate, chaining to the dev root, answering correctly)."""

    def __init__(self, pki: DevPki, mode: str = "good") -> None:
        tsa_cert = pki.cert("tsa")
        tsa_key = key_info(dev_key(pki, "tsa"))
        if mode == "self_signed":
            private = new_key("rsa")
            tsa_cert = _self_signed_tsa(private)
            tsa_key = key_info(private)
        elif mode == "eku_not_critical":
            public = dev_key(pki, "tsa").public_key()
            tsa_cert, _ = issue_under_dev(
                pki,
                "TSA thử nghiệm: EKU không critical",
                public_key=public,
                issuer="root",
                extended_key_usage=([ExtendedKeyUsageOID.TIME_STAMPING], False),
            )
        elif mode == "status_unknown":
            # Chains to the dev root, but its CRL is on a port where nothing listens.
            tsa_cert, _ = issue_under_dev(
                pki,
                "TSA thử nghiệm: không rõ trạng thái thu hồi",
                public_key=dev_key(pki, "tsa").public_key(),
                issuer="root",
                crl_url=f"http://127.0.0.1:{free_port()}/crl",
                extended_key_usage=([ExtendedKeyUsageOID.TIME_STAMPING], True),
            )
        super().__init__(
            tsa_cert=tsa_cert,
            tsa_key=tsa_key,
            fixed_dt=datetime.now(UTC) - timedelta(hours=1) if mode == "skewed" else None,
            override_md="sha1" if mode == "sha1_signature" else None,
        )
        self.mode = mode

    def _build_tst_info(
        self, message_imprint: tsp.MessageImprint, dt: datetime, req: tsp.TimeStampReq
    ) -> tsp.TSTInfo:
        import hashlib

        if self.mode == "wrong_imprint":
            digest = bytearray(message_imprint["hashed_message"].native)
            digest[0] ^= 0xFF
            message_imprint = tsp.MessageImprint(
                {
                    "hash_algorithm": message_imprint["hash_algorithm"],
                    "hashed_message": bytes(digest),
                }
            )
        elif self.mode == "sha1_imprint":
            message_imprint = tsp.MessageImprint(
                {
                    "hash_algorithm": {"algorithm": "sha1"},
                    "hashed_message": hashlib.sha1(
                        message_imprint["hashed_message"].native
                    ).digest(),
                }
            )
        info = super()._build_tst_info(message_imprint, dt, req)
        if self.mode == "wrong_nonce" and req["nonce"].native is not None:
            info["nonce"] = core.Integer(req["nonce"].native + 1)
        return info


def _self_signed_tsa(private: Any) -> x509.Certificate:
    """A self-signed TSA certificate, otherwise well-formed (RSA-2048, SHA-256, critical
    id-kp-timeStamping): only its chain is wrong."""
    name = cx.Name(
        [
            cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            cx.NameAttribute(NameOID.COMMON_NAME, "TSA tự ký (thử nghiệm)"),
        ]
    )
    now = datetime.now(UTC)
    cert = (
        cx.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(cx.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(cx.ExtendedKeyUsage([ExtendedKeyUsageOID.TIME_STAMPING]), True)
        .sign(private, hashes.SHA256())
    )
    return to_asn1(cert)
