"""The development PKI: a certomancer architecture with locally served TSA, OCSP and CRLs.

Keys are generated on first start under ``<data_dir>/pki/keys`` (never committed). The
certificates are derived from ``certs/dev/certomancer.yml`` and those keys, then exported as
PKCS#12 files (with their chains) for the signing profiles and as PEM files for trust.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import algos, keys, x509
from certomancer import crypto_utils
from certomancer.integrations.animator import Animator, AnimatorArchStore
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig, KeyLabel, ServiceLabel
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from werkzeug.serving import BaseWSGIServer, make_server

log = logging.getLogger(__name__)

ARCH = ArchLabel("dev")
# Key label -> algorithm. Agency B's seal uses ECDSA P-256 so both families are exercised.
KEYS: dict[str, str] = {
    "root": "rsa3072",
    "interm": "rsa2048",
    "ocsp": "rsa2048",
    "tsa": "rsa2048",
    "agency-a-seal": "rsa2048",
    "agency-b-seal": "ec256",
    "officer": "rsa2048",
    "revoked-signer": "rsa2048",
    "expired-signer": "rsa2048",
    "wrong-usage": "rsa2048",  # keyEncipherment only: refused for signing
    "weak-key": "rsa1024",  # below the algorithm policy: refused for signing
}
# Certificates exported as PKCS#12 (key + certificate + chain) for signing.
SIGNERS = (
    "agency-a-seal",
    "agency-b-seal",
    "officer",
    "revoked-signer",
    "expired-signer",
    "wrong-usage",
    "weak-key",
)
TSA_LABEL = "tsa"


@dataclass(frozen=True)
class DevPki:
    directory: Path
    url_prefix: str
    config: CertomancerConfig

    @property
    def arch(self):  # type: ignore[no-untyped-def]
        return self.config.get_pki_arch(ARCH)

    @property
    def root_cert_path(self) -> Path:
        return self.directory / "root.cert.pem"

    def p12_path(self, label: str) -> Path:
        return self.directory / f"{label}.p12"

    def cert_path(self, label: str) -> Path:
        return self.directory / f"{label}.cert.pem"

    @property
    def tsa_url(self) -> str:
        return f"{self.url_prefix}/{ARCH}/tsa/{TSA_LABEL}"

    def cert(self, label: str) -> x509.Certificate:
        return self.arch.get_cert(CertLabel(label))

    def animator(self) -> Animator:
        return Animator(AnimatorArchStore(self.config.pki_archs), with_web_ui=False)


class _CachingBackend(crypto_utils.PycaCryptographyBackend):
    """certomancer re-parses the private key for every OCSP response, CRL and timestamp
    (~28 ms for RSA-2048 here): cache the parsed key so the dev TSA and OCSP responder answer
    in a few milliseconds, as a real one would."""

    def __init__(self) -> None:
        self._keys: dict[bytes, object] = {}
        self._lock = threading.Lock()

    def generic_sign(
        self,
        private_key: keys.PrivateKeyInfo,
        tbs_bytes: bytes,
        sd_algo: algos.SignedDigestAlgorithm,
    ) -> bytes:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

        der = private_key.dump()
        with self._lock:
            key = self._keys.get(der)
        if key is None:
            key = serialization.load_der_private_key(der, password=None)
            with self._lock:
                self._keys[der] = key
        algo = sd_algo.signature_algo
        hash_algo = getattr(hashes, sd_algo.hash_algo.upper())()
        if algo == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPrivateKey):
            return key.sign(tbs_bytes, padding.PKCS1v15(), hash_algo)
        if algo == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(tbs_bytes, ec.ECDSA(hash_algo))
        return super().generic_sign(private_key, tbs_bytes, sd_algo)


crypto_utils.CRYPTO_BACKEND = _CachingBackend()


def _generate_key(path: Path, kind: str) -> None:
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind.startswith("rsa"):
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _pem(cert: x509.Certificate) -> bytes:
    from asn1crypto import pem

    return pem.armor("CERTIFICATE", cert.dump())


HSM_KEY = "agency-a-hsm"
# The officer's key held by the remote-signing (CSC) provider stand-in used in the tests.
REMOTE_KEY = "officer-remote"
PUBLIC_ONLY_KEYS = (HSM_KEY, REMOTE_KEY)


def init_dev_pki(
    pki_dir: Path,
    config_path: Path,
    url_prefix: str,
    passphrase: bytes,
    hsm_public_key: keys.PublicKeyInfo | None = None,
    remote_public_key: keys.PublicKeyInfo | None = None,
) -> DevPki:
    """Create keys if missing and (re-)export certificates. Idempotent.

    ``hsm_public_key`` / ``remote_public_key``: public halves of keys that live on a SoftHSM2
    token (the demo seal; the remote-signing stand-in's officer key). Without one, a placeholder
    public key (whose private half is discarded) keeps the configuration loadable and that
    certificate unusable.
    """
    keys_dir = pki_dir / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(keys_dir, 0o700)
    from signing_service.pki.softhsm import write_public_key

    hsm_changed = False
    for label, public in ((HSM_KEY, hsm_public_key), (REMOTE_KEY, remote_public_key)):
        path = keys_dir / f"{label}.pub.pem"
        if public is not None:
            hsm_changed |= write_public_key(path, public)
        elif not path.exists():
            placeholder = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            path.write_bytes(
                placeholder.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )
            hsm_changed = True
    created = []
    for label, kind in KEYS.items():
        path = keys_dir / f"{label}.key.pem"
        if not path.exists():
            _generate_key(path, kind)
            created.append(label)
    if created:
        log.info("development PKI: generated keys %s", ", ".join(created))

    config = CertomancerConfig.from_file(
        str(config_path), key_search_dir=str(keys_dir), external_url_prefix=url_prefix
    )
    pki = DevPki(directory=pki_dir, url_prefix=url_prefix, config=config)
    arch = pki.arch
    state_file = pki_dir / "state.json"
    state = {"url_prefix": url_prefix, "keys": sorted(KEYS)}
    if (
        not created
        and not hsm_changed
        and state_file.exists()
        and json.loads(state_file.read_text()) == state
    ):
        return pki

    for label in ("root", "interm", "tsa", "ocsp", *PUBLIC_ONLY_KEYS, *SIGNERS):
        pki.cert_path(label).write_bytes(_pem(arch.get_cert(CertLabel(label))))
    for label in SIGNERS:
        data = arch.package_pkcs12(CertLabel(label), password=passphrase)
        path = pki.p12_path(label)
        path.write_bytes(data)
        os.chmod(path, 0o600)
    state_file.write_text(json.dumps(state))
    return pki


class DevPkiServer:
    """Serves the dev PKI's TSA, OCSP responder and CRLs over HTTP on loopback."""

    def __init__(self, pki: DevPki, host: str, port: int) -> None:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self._server: BaseWSGIServer = make_server(host, port, pki.animator(), threaded=True)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="dev-pki", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._server.server_port)

    def start(self) -> DevPkiServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


__all__ = ["ARCH", "SIGNERS", "DevPki", "DevPkiServer", "KeyLabel", "ServiceLabel", "init_dev_pki"]
