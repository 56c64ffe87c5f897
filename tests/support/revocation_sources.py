"""A self-signed certificate whose revocation sources (CRL distribution point, OCSP
responder) are the URLs a test chooses: a dead loopback port, or a server it runs."""

from __future__ import annotations

import datetime

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import AuthorityInformationAccessOID, NameOID


def cert_with_revocation_sources(
    crl_url: str, ocsp_url: str, common_name: str
) -> asn1_x509.Certificate:
    """A one-day EC certificate named ``common_name`` with ``crl_url`` as its CRL distribution
    point and ``ocsp_url`` as its OCSP responder (AIA)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    crl = x509.UniformResourceIdentifier(crl_url)
    ocsp = x509.UniformResourceIdentifier(ocsp_url)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.CRLDistributionPoints([x509.DistributionPoint([crl], None, None, None)]), False
        )
        .add_extension(
            x509.AuthorityInformationAccess(
                [x509.AccessDescription(AuthorityInformationAccessOID.OCSP, ocsp)]
            ),
            False,
        )
        .sign(key, hashes.SHA256())
    )
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER))
