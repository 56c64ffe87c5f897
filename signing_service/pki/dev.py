"""The development PKI: a certomancer architecture with locally served TSA, OCSP and CRLs.

Keys are generated on first start under ``<data_dir>/pki/keys`` (never committed). The
certificates are derived from ``certs/dev/certomancer.yml`` and those keys, then exported as
PKCS#12 files (with their chains) for the signing profiles and as PEM files for trust.

The server is certomancer's Animator with two services replaced so that our signatures validate
without avoidable warnings in EU DSS (issue 8, item 6):

- the TSA signs its tokens with the ESS signing-certificate-v2 attribute and a SHA-256
  certificate hash (RFC 5816), where certomancer's TimeStamper uses SHA-1 signing-certificate;
- the latest CRL of a repository is issued at the moment it is requested (valid for the
  repository's ``simulated-update-schedule``), where certomancer dates it at the last tick of
  that schedule, up to a whole period before the signature that it is fetched for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from asn1crypto import algos, cms, core, crl, keys, pem, tsp, x509
from certomancer import crypto_utils
from certomancer.integrations.animator import Animator, AnimatorArchStore
from certomancer.registry import (
    ArchLabel,
    CertLabel,
    CertomancerConfig,
    KeyLabel,
    PKIArchitecture,
    ServiceLabel,
)
from certomancer.registry.svc_config.crl import CRLType
from certomancer.services import CRLBuilder, TimeStamper, choose_signed_digest, get_nonce
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from pyhanko.sign.general import as_signing_certificate_v2, simple_cms_attribute
from werkzeug.serving import BaseWSGIServer, make_server
from werkzeug.wrappers import Request, Response

from signing_service import errors

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
    # Agency B's second seal, never registered by the bootstrap: what `key add --pkcs12` can be
    # tried with in development (every other usable p12 is already registered).
    "spare-seal": "rsa2048",
    # The service's own seal (issue 11): development seals its PDF verification reports with
    # it when SIGNING_SERVICE_REPORT_SEAL_KEY is unset. Never registered for an agency.
    "service-seal": "rsa2048",
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
    "spare-seal",
    "service-seal",
)
# The certificate development seals its verification reports with (reporting/pdf.py).
SERVICE_SEAL = "service-seal"
TSA_LABEL = "tsa"


@dataclass(frozen=True)
class DevPki:
    directory: Path
    url_prefix: str
    config: CertomancerConfig
    # Re-issues for another address so far (state.json; serials, see _config).
    generation: int = 0
    # SHA-256 (lower-case hex) of the ``service-seal`` certificates of earlier generations
    # (state.json ``previous_seal_certificates``): evidence ZIPs and reports sealed before a
    # re-issue stay the service's own in development (new user 14 F4).
    previous_seals: tuple[str, ...] = ()
    # The address the PKI was issued for before this start re-issued it, else None.
    reissued_from: str | None = None

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
        return DevAnimator(AnimatorArchStore(self.config.pki_archs), with_web_ui=False)


class _CachingBackend(crypto_utils.PycaCryptographyBackend):
    """certomancer re-parses the private key for every OCSP response, CRL and timestamp
    (~28 ms for RSA-2048 here): cache the parsed key so the dev TSA and OCSP responder answer
    in a few milliseconds, as a real one would."""

    def __init__(self) -> None:
        self._keys: dict[bytes, object] = {}
        self._lock = threading.Lock()

    def load_private_key(
        self, key_bytes: bytes, password: bytes | None
    ) -> tuple[keys.PrivateKeyInfo, keys.PublicKeyInfo]:
        """As certomancer's, parsing each key once and without OpenSSL's RSA consistency check
        (~40 ms for each of the dev PKI's keys, every command): these are the keys
        :func:`_generate_key` wrote on this machine (0600), not keys from elsewhere."""
        load = (
            serialization.load_pem_private_key
            if pem.detect(key_bytes)
            else serialization.load_der_private_key
        )
        key = load(key_bytes, password=password, unsafe_skip_rsa_key_validation=True)
        der = key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with self._lock:
            self._keys[der] = key
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return keys.PrivateKeyInfo.load(der), keys.PublicKeyInfo.load(public)

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
    return pem.armor("CERTIFICATE", cert.dump())


class EssV2TimeStamper(TimeStamper):
    """certomancer's TSA, identifying its certificate with ESS signing-certificate-v2.

    RFC 5816 updates RFC 3161 so that a TSA may use ``SigningCertificateV2`` (RFC 5035) with a
    hash other than SHA-1; EU DSS reports the SHA-1 ``SigningCertificate`` attribute that
    certomancer writes as an algorithm no longer reliable for a signing-certificate reference.
    Everything else (policy, serial, accuracy-less genTime with microseconds, the embedded TSA
    certificate) is certomancer's.
    """

    @classmethod
    def summon(cls, arch: PKIArchitecture, label: ServiceLabel, at_time: datetime) -> TimeStamper:
        base = arch.service_registry.summon_timestamper(label, at_time)
        return cls(
            tsa_cert=base.tsa_cert,
            tsa_key=base.tsa_key,
            signature_algo=base.signature_algo,
            certs_to_embed=base.certs_to_embed,
            fixed_dt=base.fixed_dt,
            policy=base.policy,
            md_algorithm=base.md_algorithm,
        )

    def request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        """A granted response for ``req`` (certReq is assumed true, as certomancer does)."""
        gen_time = self.fixed_dt or datetime.now(UTC)
        tst_info = {
            "version": "v1",
            "policy": self.policy,
            "message_imprint": req["message_imprint"],
            "serial_number": get_nonce(),
            "gen_time": gen_time,
            "tsa": x509.GeneralName(name="directory_name", value=self.tsa_cert.subject),
        }
        if isinstance(req["nonce"], core.Integer):
            tst_info["nonce"] = req["nonce"]
        tst_info_data = tsp.TSTInfo(tst_info).dump()
        digest_algorithm = algos.DigestAlgorithm({"algorithm": self.md_algorithm})
        signed_attrs = cms.CMSAttributes(
            [
                simple_cms_attribute("content_type", "tst_info"),
                simple_cms_attribute("signing_time", cms.Time({"utc_time": gen_time})),
                simple_cms_attribute(
                    "signing_certificate_v2", as_signing_certificate_v2(self.tsa_cert, "sha256")
                ),
                simple_cms_attribute(
                    "message_digest", hashlib.new(self.md_algorithm, tst_info_data).digest()
                ),
            ]
        )
        signer_info = cms.SignerInfo(
            {
                "version": "v1",
                "sid": cms.SignerIdentifier(
                    {
                        "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                            {
                                "issuer": self.tsa_cert.issuer,
                                "serial_number": self.tsa_cert.serial_number,
                            }
                        )
                    }
                ),
                "digest_algorithm": digest_algorithm,
                "signature_algorithm": self.signature_algo,
                "signed_attrs": signed_attrs,
                "signature": crypto_utils.generic_sign(
                    self.tsa_key, signed_attrs.dump(), self.signature_algo
                ),
            }
        )
        certs = {self.tsa_cert, *self.certs_to_embed}
        token = cms.ContentInfo(
            {
                "content_type": "signed_data",
                "content": cms.SignedData(
                    {
                        "version": "v3",
                        "digest_algorithms": [digest_algorithm],
                        "encap_content_info": {
                            "content_type": "tst_info",
                            "content": cms.ParsableOctetString(tst_info_data),
                        },
                        "certificates": list(certs),
                        "signer_infos": [signer_info],
                    }
                ),
            }
        )
        return tsp.TimeStampResp({"status": {"status": "granted"}, "time_stamp_token": token})


def current_crl(
    arch: PKIArchitecture, label: ServiceLabel, at_time: datetime
) -> crl.CertificateList:
    """The CRL of repository ``label`` issued at ``at_time`` (to the second).

    thisUpdate is ``at_time`` without its fraction, nextUpdate one ``simulated-update-schedule``
    later, the CRL number the seconds since the issuer's notBefore (so it only grows, RFC 5280
    §5.2.3). A validator that fetches it right after a signature gets a CRL of that moment, as
    from a CA that issues CRLs on demand, instead of one dated up to a period earlier.
    """
    info = arch.service_registry.get_crl_repo_info(label)
    key_pair = arch.key_set.get_asym_key(info.signing_key)
    issuer_cert = arch.get_cert(info.issuer_cert or info.resolve_issuer_cert(arch))
    this_update = at_time.astimezone(UTC).replace(microsecond=0)
    number = int((this_update - issuer_cert.not_valid_before).total_seconds())
    if number < 0:
        raise ValueError("CRL requested before its issuer's validity")
    revoked = []
    if info.crl_type != CRLType.AC_ONLY:
        revoked.extend(arch.get_revoked_certs_at_time(at_time=this_update, crl_info=info))
    if info.crl_type not in (CRLType.CA_ONLY, CRLType.USER_ONLY):
        revoked.extend(arch.get_revoked_attr_certs_at_time(at_time=this_update, crl_info=info))
    builder = CRLBuilder(
        issuer_name=arch.entities[info.crl_issuer or info.for_issuer],
        issuer_key=key_pair.private,
        signature_algo=choose_signed_digest(
            info.digest_algo, key_pair.public, signature_algo=info.signature_algo
        ),
        authority_key_identifier=issuer_cert.key_identifier_value,
        extra_crl_extensions=[
            ext.to_asn1(arch, crl.TBSCertListExtension) for ext in info.crl_extensions
        ],
    )
    return builder.build_crl(
        crl_number=number,
        this_update=this_update,
        next_update=this_update + info.simulated_update_schedule,
        revoked_certs=revoked,
        distpoint=info.format_idp(arch.entities),
    )


class DevAnimator(Animator):
    """certomancer's Animator with the dev TSA and the on-demand latest CRL (module docstring);
    the URLs are certomancer's, so ``DevPki.tsa_url`` and the certificates' CRL distribution
    points are unchanged. Archived CRLs (``archive-N.crl``) stay certomancer's."""

    def serve_timestamp_response(self, request: Request, *, label: str, arch: str) -> Response:
        pki_arch = self.architectures[ArchLabel(arch)]
        tsa = EssV2TimeStamper.summon(pki_arch, ServiceLabel(label), self.at_time(request))
        req = tsp.TimeStampReq.load(request.stream.read())
        return Response(
            tsa.request_tsa_response(req).dump(), mimetype="application/timestamp-reply"
        )

    def serve_crl(  # type: ignore[no-untyped-def]
        self, request: Request, *, label: ServiceLabel, arch: str, crl_no, use_pem
    ) -> Response:
        if crl_no is not None:
            return super().serve_crl(
                request, label=label, arch=arch, crl_no=crl_no, use_pem=use_pem
            )
        pki_arch = self.architectures[ArchLabel(arch)]
        data = current_crl(pki_arch, ServiceLabel(label), self.at_time(request)).dump()
        if use_pem:
            return Response(pem.armor("X509 CRL", data), mimetype="application/x-pem-file")
        return Response(data, mimetype="application/pkix-crl")


HSM_KEY = "agency-a-hsm"
# The officer's key held by the remote-signing (CSC) provider stand-in used in the tests.
REMOTE_KEY = "officer-remote"
PUBLIC_ONLY_KEYS = (HSM_KEY, REMOTE_KEY)


# Serial numbers of a re-issue (issue 13, new user 12 finding 3): certomancer numbers each
# issuer's certificates from 0x1000; a PKI re-issued for another address (another
# SIGNING_SERVICE_DEV_PKI_PORT) gets serials GENERATION_STRIDE * generation + that, so two
# different certificates of one issuer never share a serial (RFC 5280 4.1.2.2), which would
# make an OCSP answer about one apply to the other.
GENERATION_STRIDE = 0x100000
FIRST_SERIAL = 0x1000


def _config(
    config_path: Path, keys_dir: Path, url_prefix: str, generation: int, *, lazy_keys: bool = False
) -> CertomancerConfig:
    """The certomancer configuration of generation ``generation`` (0: certomancer's own
    serials, the PKI as first made; n > 0: every certificate gets an explicit serial
    ``n * GENERATION_STRIDE + FIRST_SERIAL + i``, unique in the architecture).

    The YAML is read with libyaml's safe loader when PyYAML has it (the same safe schema
    as ``CertomancerConfig.from_file``'s ``yaml.safe_load``, ~6 × faster for this file: every
    ``verify`` in development reads it). ``lazy_keys``: read each private key when it is
    first used (what a reader of the PKI answers with: the OCSP responder's and the CRL
    issuers' keys), not all of them now."""
    import yaml
    from certomancer.config_utils import ConfigurationError as CertomancerConfigError

    from signing_service.oserror import reason_vi

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        config_dict = yaml.load(config_path.read_text(encoding="utf-8"), Loader=loader)
        if generation:
            for arch in config_dict["pki-architectures"].values():
                for index, spec in enumerate(arch.get("certs", {}).values()):
                    spec["serial"] = generation * GENERATION_STRIDE + FIRST_SERIAL + index
        return CertomancerConfig(
            config_dict,
            key_search_dir=str(keys_dir),
            lazy_load_keys=lazy_keys,
            config_search_dir=str(config_path.parent),
            external_url_prefix=url_prefix,
        )
    except OSError as e:
        reason = reason_vi(e)
    except yaml.YAMLError as e:
        # Also a refused tag (``!!python/...``: the safe loader never constructs it).
        mark = getattr(e, "problem_mark", None)
        where = f" (dòng {mark.line + 1})" if mark is not None else ""
        reason = f"không phải YAML hợp lệ hoặc dùng thẻ không được phép{where}"
    except (CertomancerConfigError, KeyError, TypeError, AttributeError, ValueError) as e:
        # Red team 14 F7: a config of the wrong shape ended in a traceback (the library's
        # English reason is kept after ours: it names the missing or wrong entry).
        reason = f"không đúng cấu trúc cấu hình certomancer ({type(e).__name__}: {e})"
    raise errors.ConfigurationError(
        f"Cấu hình không hợp lệ: SIGNING_SERVICE_DEV_PKI_CONFIG: tệp cấu hình PKI thử nghiệm "
        f"{config_path} {reason}."
    ) from None


def _read_state(state_file: Path) -> dict[str, Any] | None:
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def _damaged(pki_dir: Path, what: str, remedy: str) -> errors.ConfigurationError:
    """The refusal for a development PKI whose files are damaged or missing (red team 14
    F1/F2/F9): an environment fault, told as such (exit 6), never as a verdict on a document
    nor as a problem of the trust-anchor settings."""
    return errors.ConfigurationError(
        f"Cấu hình không hợp lệ: PKI thử nghiệm {pki_dir} (SIGNING_SERVICE_DEV_PKI_DIR, mặc "
        f"định <SIGNING_SERVICE_DATA_DIR>/pki) bị hỏng: {what}. {remedy}"
    )


_REEXPORT = "Chạy `signing-service pki init` để xuất lại các tệp chứng thư (khóa giữ nguyên)."
_KEY_LOST = (
    "Khôi phục tệp khóa từ bản sao lưu; nếu không còn, chuyển thư mục PKI thử nghiệm đi và "
    "chạy `signing-service pki init` để tạo PKI mới (mọi chứng thư thử nghiệm sẽ đổi)."
)


def _generation(pki_dir: Path, state: dict[str, Any]) -> int:
    """The ``generation`` recorded in ``state.json`` (absent: 0). Raises
    :class:`errors.ConfigurationError` when it is not a non-negative integer (red team 14 F2:
    a traceback before)."""
    value = state.get("generation", 0)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _damaged(
            pki_dir,
            f"trường generation của {pki_dir / 'state.json'} không phải số nguyên không âm "
            f"({json.dumps(value, ensure_ascii=False)[:40]})",
            "Khôi phục tệp từ bản sao lưu, hoặc sửa lại số lần cấp lại (thường là 0).",
        )
    return value


def _check_private_keys(
    pki_dir: Path, labels: tuple[str, ...] | list[str], *, certificates: bool = False
) -> None:
    """Parse each ``keys/<label>.key.pem`` (without OpenSSL's slow RSA consistency check:
    a damaged file does not parse at all); ``certificates``: also compare its public key
    with the exported ``<label>.cert.pem``. Raises :class:`errors.ConfigurationError` naming
    the file: with the keys read lazily, a damaged responder key otherwise failed inside the
    validator and a genuine document was reported unreadable (red team 14 F1)."""
    from signing_service.oserror import reason_vi

    for label in labels:
        path = pki_dir / "keys" / f"{label}.key.pem"
        try:
            data = path.read_bytes()
        except OSError as e:
            raise _damaged(
                pki_dir, f"không đọc được tệp khóa {path} ({reason_vi(e)})", _KEY_LOST
            ) from None
        try:
            load = (
                serialization.load_pem_private_key
                if pem.detect(data)
                else serialization.load_der_private_key
            )
            key = load(data, password=None, unsafe_skip_rsa_key_validation=True)
        except (ValueError, TypeError, UnsupportedAlgorithm):
            raise _damaged(
                pki_dir, f"tệp khóa {path} không phải khóa riêng đọc được", _KEY_LOST
            ) from None
        cert_path = pki_dir / f"{label}.cert.pem"
        if not certificates or not cert_path.is_file():
            continue
        # The key must be the one its certificate certifies: answers signed with another
        # key fail validation in ways certvalidator does not always report as such.
        public = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        try:
            _, _, der = pem.unarmor(cert_path.read_bytes())
            certified = x509.Certificate.load(der).public_key.dump()
        except (OSError, ValueError) as e:
            raise _damaged(
                pki_dir, f"tệp chứng thư {cert_path} không đọc được ({e})", _REEXPORT
            ) from None
        if certified != public:
            raise _damaged(
                pki_dir,
                f"tệp khóa {path} không khớp với chứng thư {cert_path}",
                _KEY_LOST,
            )


# Files init_dev_pki exports: the certificates of every label, the PKCS#12 of the signers.
def _exported_files(pki_dir: Path) -> list[Path]:
    labels = ("root", "interm", "tsa", "ocsp", *PUBLIC_ONLY_KEYS, *SIGNERS)
    return [pki_dir / f"{label}.cert.pem" for label in labels] + [
        pki_dir / f"{label}.p12" for label in SIGNERS
    ]


# The keys the in-process OCSP responders and CRL issuers sign with (certs/dev/certomancer.yml
# services): what a reader of the PKI (``verify``, ``evidence verify``) uses.
RESPONDER_KEYS = ("root", "interm", "ocsp")


def reissued_for(pki_dir: Path, url_prefix: str) -> bool:
    """True when :func:`init_dev_pki` would re-issue the PKI under ``pki_dir`` (recorded in
    its ``state.json``) for another address, giving every certificate a new serial."""
    previous = _read_state(pki_dir / "state.json")
    return bool(previous) and previous.get("url_prefix") != url_prefix  # type: ignore[union-attr]


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

    Issued before for another ``url_prefix`` (another SIGNING_SERVICE_DEV_PKI_PORT): every
    certificate is re-issued (generation + 1, new serials); the replaced ``service-seal``
    certificate's SHA-256 is added to ``previous_seal_certificates`` in ``state.json``
    (:attr:`DevPki.previous_seals`, what development still accepts as its own seal), the
    result's ``reissued_from`` is the old prefix, and one Vietnamese warning is logged.
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
        log.info("PKI thử nghiệm: đã tạo khóa %s", ", ".join(created))

    state_file = pki_dir / "state.json"
    previous = _read_state(state_file)
    if previous is None and state_file.exists():
        # Unreadable, it was taken for "never issued": generation 0 again, so serials that
        # certificates of an earlier generation already had (red team 14 F2).
        raise _damaged(
            pki_dir,
            f"tệp {state_file} không đọc được hoặc không phải đối tượng JSON",
            "Khôi phục tệp từ bản sao lưu (nó ghi địa chỉ và số lần cấp lại của PKI).",
        )
    generation = _generation(pki_dir, previous) if previous else 0
    _check_private_keys(pki_dir, list(KEYS))
    previous_seals = _previous_seals(previous)
    reissued_from = None
    if previous and previous.get("url_prefix") != url_prefix:
        # Issued for another address: new certificates, so new serials.
        generation += 1
        reissued_from = str(previous.get("url_prefix"))
        # The seal certificate about to be replaced: what sealed the evidence ZIPs and reports
        # handed out so far (new user 14 F4: they were refused after a port change).
        old_seal = _seal_sha256(pki_dir / f"{SERVICE_SEAL}.cert.pem")
        if old_seal and old_seal not in previous_seals:
            previous_seals = (*previous_seals, old_seal)
    config = _config(config_path, keys_dir, url_prefix, generation)
    pki = DevPki(
        directory=pki_dir,
        url_prefix=url_prefix,
        config=config,
        generation=generation,
        previous_seals=previous_seals,
        reissued_from=reissued_from,
    )
    arch = pki.arch
    # The exported certificates follow the configuration: re-export when it changes.
    config_sha256 = hashlib.sha256(config_path.read_bytes()).hexdigest()
    state: dict[str, Any] = {
        "url_prefix": url_prefix,
        "keys": sorted(KEYS),
        "config_sha256": config_sha256,
        "generation": generation,
    }
    if previous_seals:
        state["previous_seal_certificates"] = list(previous_seals)
    if (
        not created
        and not hsm_changed
        and previous is not None
        and {**previous, "generation": generation} == state
        # A missing certificate or PKCS#12 file is exported again (the same certificates:
        # same keys, configuration and serials).
        and all(path.is_file() for path in _exported_files(pki_dir))
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
    if reissued_from is not None:
        # New user 14 F8: the re-issue was silent, and what it means for earlier documents
        # (their embedded OCSP/TSA addresses name the old port) was nowhere in the log.
        log.warning(
            "PKI thử nghiệm đã được cấp lại cho địa chỉ mới %s (trước đây %s): mọi chứng thư thử "
            "nghiệm có số sê-ri mới; khóa của các cơ quan demo được đăng ký lại với chứng thư "
            "mới; gói bằng chứng và báo cáo niêm phong trước đó vẫn được chấp nhận. Văn bản ký "
            "trước đó mang địa chỉ OCSP/TSA ở cổng cũ: xác minh chúng khi PKI thử nghiệm chạy ở "
            "cổng cũ (SIGNING_SERVICE_DEV_PKI_PORT cũ), nếu không kết quả là CHƯA XÁC ĐỊNH "
            "(INDETERMINATE).",
            url_prefix,
            reissued_from,
        )
    return pki


def _previous_seals(state: dict[str, Any] | None) -> tuple[str, ...]:
    """The earlier seal certificates a ``state.json`` records (lower-case hex SHA-256)."""
    found = (state or {}).get("previous_seal_certificates") or []
    if not isinstance(found, list):
        return ()
    return tuple(str(h).lower() for h in found if isinstance(h, str) and len(h) == 64)


def _seal_sha256(path: Path) -> str | None:
    """SHA-256 (lower-case hex) of the DER of the PEM certificate at ``path``, or None."""
    try:
        data = path.read_bytes()
        der = pem.unarmor(data)[2] if pem.detect(data) else data
        return hashlib.sha256(x509.Certificate.load(der).dump()).hexdigest()
    except (OSError, ValueError, TypeError):
        return None


def load_dev_pki(pki_dir: Path, config_path: Path) -> DevPki | None:
    """The development PKI generated under ``pki_dir`` by :func:`init_dev_pki`, read and never
    written (the CLI's ``verify`` creates nothing), or None when none was generated there (no
    ``state.json``). Raises :class:`errors.ConfigurationError` (exit 6 in the CLI) naming the
    directory and the file when the PKI is damaged: state.json unreadable or malformed, a
    key or exported file missing, a responder key (:data:`RESPONDER_KEYS`) that does not
    parse, or a bad ``config_path``. The URL prefix is the one its certificates were issued
    with (their OCSP and CRL addresses), from its ``state.json``."""
    keys_dir = pki_dir / "keys"
    state_file = pki_dir / "state.json"
    try:
        state = json.loads(state_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        state = None
    # state.json is written last by init_dev_pki: present, the PKI was made here, so
    # anything missing or damaged now is a damaged PKI, said as such (red team 14 F2/F9),
    # never "no dev PKI" (a genuine document then looked untrusted) nor a traceback.
    url_prefix = state.get("url_prefix") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not isinstance(url_prefix, str):
        raise _damaged(
            pki_dir,
            f"tệp {state_file} không đọc được hoặc thiếu url_prefix",
            "Khôi phục tệp từ bản sao lưu, hoặc chạy `signing-service pki init` với đúng "
            "SIGNING_SERVICE_DEV_PKI_PORT.",
        )
    generation = _generation(pki_dir, state)
    missing = [
        path
        for path in (
            *(keys_dir / f"{label}.key.pem" for label in KEYS),
            *(keys_dir / f"{label}.pub.pem" for label in PUBLIC_ONLY_KEYS),
            *_exported_files(pki_dir),
        )
        if not path.is_file()
    ]
    if missing:
        is_key = missing[0].parent == keys_dir
        raise _damaged(
            pki_dir,
            "thiếu tệp " + ", ".join(str(p) for p in missing[:3]) + (" …" if missing[3:] else ""),
            _KEY_LOST if is_key else _REEXPORT,
        )
    _check_private_keys(pki_dir, RESPONDER_KEYS, certificates=True)
    config = _config(config_path, keys_dir, url_prefix, generation, lazy_keys=True)
    return DevPki(
        directory=pki_dir,
        url_prefix=url_prefix,
        config=config,
        generation=generation,
        previous_seals=_previous_seals(state if isinstance(state, dict) else None),
    )


class _InProcessResponse:
    """What pyhanko-certvalidator's fetchers read from a ``requests`` response."""

    def __init__(self, content: bytes, headers: dict[str, str] | None = None) -> None:
        self.content = content
        self.status_code = 200
        # The certificate fetcher reads Content-Type (a KeyError when absent, as requests').
        self.headers = headers or {}


class _InProcessMixin:
    """Answers requests to the dev PKI's URLs (its OCSP responder and CRLs) by calling its
    WSGI application in this process, through werkzeug's test client: no socket, no port to
    hold (a ``make run`` started meanwhile still gets its own), the same answers as the
    server that ``make run`` serves (the same keys, the same :class:`DevAnimator`). Other
    URLs go to the network as usual."""

    _dev_prefix: str
    _dev_client: Any

    def _in_process(self, url: str) -> bool:
        return url.startswith(self._dev_prefix + "/")

    def _answer(self, response: Any) -> _InProcessResponse:
        import requests

        if response.status_code != 200:
            raise requests.RequestException(f"status code {response.status_code}")
        content_type = response.headers.get("Content-Type")
        return _InProcessResponse(
            response.get_data(), {"Content-Type": content_type} if content_type else None
        )

    def _call(self, method: Any, path: str, **kwargs: Any) -> Any:
        """The in-process responder's answer; any failure inside it (a key that no longer
        loads, a bug) is what an unreachable responder is to the validator, a failed fetch
        (revocation unknown), never an exception that reads as an unreadable signature (red
        team 14 F1)."""
        import requests

        try:
            return method(path, **kwargs)
        except Exception as e:  # whatever failed, the fetch failed
            log.warning("in-process dev PKI responder failed for %s: %r", path, e)
            raise requests.RequestException(f"in-process responder failed: {e!r}") from e

    def _get(self, url, *, acceptable_content_types):  # type: ignore[no-untyped-def]
        if not self._in_process(url):
            return super()._get(url, acceptable_content_types=acceptable_content_types)  # type: ignore[misc]

        async def answer() -> _InProcessResponse:
            path = url[len(self._dev_prefix) :]
            return self._answer(
                self._call(
                    self._dev_client.get,
                    path,
                    headers={"Accept": ",".join(acceptable_content_types)},
                )
            )

        return answer()

    def _post(self, url, data, *, content_type, acceptable_content_types):  # type: ignore[no-untyped-def]
        if not self._in_process(url):
            return super()._post(  # type: ignore[misc]
                url,
                data,
                content_type=content_type,
                acceptable_content_types=acceptable_content_types,
            )

        async def answer() -> _InProcessResponse:
            path = url[len(self._dev_prefix) :]
            return self._answer(
                self._call(
                    self._dev_client.post, path, data=data, headers={"Content-Type": content_type}
                )
            )

        return answer()


def in_process_fetcher_backend(
    pki: DevPki, per_request_timeout: float = 5.0, ca_issuer_urls: tuple[str, ...] = ()
) -> Any:
    """A revocation fetcher backend (the verifier's :class:`CachingFetcherBackend`, with its
    limits: no certificate fetching) whose requests to ``pki``'s URLs are answered in this
    process (:class:`_InProcessMixin`). What ``signing-service verify`` uses in development,
    so that it answers as ``make run`` would whether or not the server is running."""
    from pyhanko_certvalidator.fetchers.api import Fetchers
    from pyhanko_certvalidator.fetchers.common_utils import FetchBudget
    from werkzeug.test import Client

    from signing_service.verification.revinfo_cache import (
        REVOCATION_CACHE,
        CachingFetcherBackend,
        _AllowlistedCertificateFetcher,
        _CachingCRLFetcher,
        _CachingOCSPFetcher,
    )

    client = Client(pki.animator())
    prefix = pki.url_prefix.rstrip("/")

    class _CRLFetcher(_InProcessMixin, _CachingCRLFetcher):
        _dev_prefix, _dev_client = prefix, client

    class _OCSPFetcher(_InProcessMixin, _CachingOCSPFetcher):
        _dev_prefix, _dev_client = prefix, client

    class _CertFetcher(_InProcessMixin, _AllowlistedCertificateFetcher):
        _dev_prefix, _dev_client = prefix, client

    class _Backend(CachingFetcherBackend):
        def get_fetchers(self) -> Fetchers:
            budget = FetchBudget(self.limits)
            timeout = self.per_request_timeout
            return Fetchers(
                ocsp_fetcher=_OCSPFetcher(self.cache, per_request_timeout=timeout, budget=budget),
                crl_fetcher=_CRLFetcher(self.cache, per_request_timeout=timeout, budget=budget),
                # caIssuers under the operator's prefixes, as the server (new user 23 #5: the
                # CLI ignored SIGNING_SERVICE_CA_ISSUER_URLS).
                cert_fetcher=_CertFetcher(
                    self.cache, self.ca_issuer_urls, per_request_timeout=timeout, budget=budget
                ),
            )

    return _Backend(
        REVOCATION_CACHE, per_request_timeout=per_request_timeout, ca_issuer_urls=ca_issuer_urls
    )


def probe_listen(host: str, port: int) -> None:
    """Bind ``host:port`` as the server will (SO_REUSEADDR: a port in TIME_WAIT is free, one
    with a listener is not), then release it; raises :class:`OSError`."""
    import socket

    family, _, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)


class DevPkiServer:
    """Serves the dev PKI's TSA, OCSP responder and CRLs over HTTP on loopback."""

    def __init__(self, pki: DevPki, host: str, port: int) -> None:
        """Raises :class:`OSError` when ``host:port`` cannot be listened on (a busy port)."""
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        # werkzeug's make_server prints English ("Port … is in use by another program") and
        # calls sys.exit(1) on a busy port: probe first, so the caller can say it in Vietnamese.
        probe_listen(host, port)
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


__all__ = [
    "ARCH",
    "SERVICE_SEAL",
    "SIGNERS",
    "DevPki",
    "DevPkiServer",
    "KeyLabel",
    "ServiceLabel",
    "in_process_fetcher_backend",
    "init_dev_pki",
    "load_dev_pki",
    "probe_listen",
    "reissued_for",
]
