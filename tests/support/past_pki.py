"""Documents signed in the past, with a certomancer PKI whose signers end before its TSA.

``PastPki`` signs at a chosen moment: the timestamp tokens carry that time (a fixed-time
timestamper), the revocation data embedded for B-LT/B-LTA is what the PKI's OCSP responder and
CRL repositories answered a minute after it, and a B-LTA document timestamp follows a minute
later. Signing goes straight through pyHanko without its signer check, so the tests can make
signatures a correct signing service would refuse (a revoked certificate).

``serve()`` runs the same PKI's OCSP responder and CRL repositories on loopback *now*, as a CA
keeps doing for years: today's status of the TSA and the CAs is then reachable, and the revoked
certificates appear on today's CRLs.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from io import BytesIO
from pathlib import Path

from asn1crypto import keys, ocsp, x509
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig, KeyLabel, ServiceLabel
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko.sign.ades.api import CAdESSignedAttrSpec
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner, PdfTimeStamper
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.pki.dev import DevPkiServer
from signing_service.trust import TrustStore

CONFIG = Path(__file__).parent / "pki" / "past.yml"
KEYS = ("root", "interm", "ocsp", "tsa", "signer")
ARCH = ArchLabel("past")


def _key(path: Path) -> None:
    if path.exists():
        return
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )


@dataclass
class PastPki:
    directory: Path
    url_prefix: str
    config: CertomancerConfig

    @classmethod
    def create(cls, directory: Path, port: int) -> PastPki:
        directory.mkdir(parents=True, exist_ok=True)
        for label in KEYS:
            _key(directory / f"{label}.key.pem")
        prefix = f"http://127.0.0.1:{port}"
        config = CertomancerConfig.from_file(
            str(CONFIG), key_search_dir=str(directory), external_url_prefix=prefix
        )
        pki = cls(directory, prefix, config)
        (directory / "root.cert.pem").write_bytes(_pem(pki.cert("root")))
        return pki

    @property
    def arch(self):  # type: ignore[no-untyped-def]
        return self.config.get_pki_arch(ARCH)

    def cert(self, label: str) -> x509.Certificate:
        return self.arch.get_cert(CertLabel(label))

    def key(self, label: str) -> keys.PrivateKeyInfo:
        return self.arch.key_set.get_private_key(KeyLabel(label))

    @property
    def root_path(self) -> Path:
        return self.directory / "root.cert.pem"

    def trust(self, anchors: Path) -> TrustStore:
        """The repository's anchors plus this PKI's root (as an operator would add one)."""
        return TrustStore.load(anchors, extra=[self.root_path], fetch_timeout=2)

    @contextmanager
    def serve(self) -> Iterator[None]:
        """Serve this PKI's OCSP responder and CRLs now, on the port its certificates name."""
        port = int(self.url_prefix.rsplit(":", 1)[1])
        server = DevPkiServer(self, "127.0.0.1", port).start()  # type: ignore[arg-type]
        try:
            yield
        finally:
            server.stop()

    def animator(self):  # type: ignore[no-untyped-def]
        from certomancer.integrations.animator import Animator, AnimatorArchStore

        return Animator(AnimatorArchStore(self.config.pki_archs), with_web_ui=False)

    # -- revocation data as it was at a moment ----------------------------------------------
    def ocsp_at(self, label: str, when: datetime) -> ocsp.OCSPResponse:
        cert = self.cert(label)
        issuer = self.cert("interm")
        request = ocsp.OCSPRequest(
            {
                "tbs_request": {
                    "request_list": [
                        {
                            "req_cert": {
                                "hash_algorithm": {"algorithm": "sha256"},
                                "issuer_name_hash": hashlib.sha256(issuer.subject.dump()).digest(),
                                "issuer_key_hash": issuer.public_key.sha256,
                                "serial_number": cert.serial_number,
                            }
                        }
                    ]
                }
            }
        )
        responder = self.arch.service_registry.summon_responder(ServiceLabel("interm"), when)
        return responder.build_ocsp_response(request)

    def crls_at(self, when: datetime) -> list:  # type: ignore[type-arg]
        registry = self.arch.service_registry
        return [registry.get_crl(ServiceLabel(name), at_time=when) for name in ("interm", "root")]

    # -- signing ----------------------------------------------------------------------------
    def sign(
        self,
        pdf: bytes,
        signer: str,
        level: str,
        at: datetime,
        *,
        content_timestamp: bool = False,
        field_name: str = "Signature1",
    ) -> bytes:
        """Sign ``pdf`` with ``signer``'s certificate as of ``at`` at ``level`` (B-B, B-T, B-LT,
        B-LTA). Revocation data for B-LT is issued a minute after ``at``; a B-LTA document
        timestamp two minutes after."""
        chain = [self.cert("interm"), self.cert("root")]
        pdf_signer = signers.SimpleSigner(
            signing_cert=self.cert(signer),
            signing_key=self.key("signer"),
            cert_registry=SimpleCertificateStore.from_certs(chain),
        )
        timestamper = DummyTimeStamper(self.cert("tsa"), self.key("tsa"), fixed_dt=at)
        meta = PdfSignatureMetadata(
            field_name=field_name,
            subfilter=fields.SigSeedSubFilter.PADES,
            md_algorithm="sha256",
            cades_signed_attr_spec=CAdESSignedAttrSpec(timestamp_content=content_timestamp),
        )
        out = BytesIO()
        PdfSigner(
            meta, signer=pdf_signer, timestamper=None if level == "B-B" else timestamper
        ).sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), output=out)
        signed = out.getvalue()
        if level in ("B-LT", "B-LTA"):
            signed = self.add_validation_data(signed, signer, at + timedelta(minutes=1))
        if level == "B-LTA":
            signed = self.add_document_timestamp(signed, at + timedelta(minutes=2))
        return signed

    def add_validation_data(self, pdf: bytes, signer: str, when: datetime) -> bytes:
        """A DSS update with the certificates and the revocation data of ``when``."""
        writer = IncrementalPdfFileWriter(BytesIO(pdf))
        DocumentSecurityStore.supply_dss_in_writer(
            writer,
            None,
            certs=[self.cert(label) for label in (signer, "interm", "root", "tsa", "ocsp")],
            ocsps=[self.ocsp_at(signer, when)],
            crls=self.crls_at(when),
        )
        out = BytesIO()
        writer.write(out)
        return out.getvalue()

    def add_document_timestamp(self, pdf: bytes, when: datetime) -> bytes:
        timestamper = DummyTimeStamper(self.cert("tsa"), self.key("tsa"), fixed_dt=when)
        out = BytesIO()
        PdfTimeStamper(timestamper, field_name=f"DocTS{when:%H%M%S}").timestamp_pdf(
            IncrementalPdfFileWriter(BytesIO(pdf)), "sha256", output=out
        )
        return out.getvalue()


def _pem(cert: x509.Certificate) -> bytes:
    from asn1crypto import pem

    return pem.armor("CERTIFICATE", cert.dump())


def free_port() -> int:
    """A loopback port for a PKI whose certificates name it, chosen BELOW the kernel's ephemeral
    range: the port is baked into the AIA/CRL URLs when the PKI is made, and the responder is
    started and stopped around each test, so between tests the port must stay free. A port from
    the ephemeral range (what binding port 0 returns) can be taken meanwhile as the local end of
    any outgoing connection (seen once in CI: EADDRINUSE when the responder restarted); ports
    below the range are only ever taken by a listener that asks for them by number."""
    import random
    import socket

    low = 32768
    with suppress(OSError, ValueError, IndexError):
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.SystemRandom()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free loopback port below the ephemeral range")


__all__ = ["PastPki", "free_port", "os"]
