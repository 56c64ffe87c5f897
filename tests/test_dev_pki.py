"""The development PKI as a validator sees it: issuer links, fresh CRLs, a SHA-256 TSA.

These are the dev-PKI halves of the EU DSS findings of issue 8 (item 6); tests/test_dss_interop.py
checks the result in DSS itself when Java is installed.
"""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta

import requests
from asn1crypto import crl, x509
from pyhanko.sign.general import check_ess_certid, find_unique_cms_attribute
from pyhanko.sign.timestamps.common_utils import dummy_digest

from signing_service.pki.dev import DevPki
from signing_service.signing.tsa import PooledHTTPTimeStamper

BELOW_ROOT = ("interm", "tsa", "ocsp", "agency-a-seal", "agency-b-seal", "officer", "wrong-usage")


def test_every_certificate_below_the_root_links_to_its_issuer(dev_pki: tuple[DevPki, int]) -> None:
    """RFC 5280 §4.2.2.1 caIssuers: the URL serves the issuer's certificate (DER)."""
    pki, _ = dev_pki
    for label in BELOW_ROOT:
        cert = pki.cert(label)
        urls = [
            d["access_location"].native
            for d in cert.authority_information_access_value or []
            if d["access_method"].native == "ca_issuers"
        ]
        assert urls, f"{label} has no caIssuers URL"
        for url in urls:
            response = requests.get(url, timeout=5)
            assert response.status_code == 200, (label, url)
            issuer = x509.Certificate.load(response.content)
            assert issuer.subject == cert.issuer, (label, url)
            assert cert.authority_key_identifier == issuer.key_identifier, (label, url)


def test_certificates_issued_by_the_root_have_an_ocsp_responder(
    dev_pki: tuple[DevPki, int],
) -> None:
    """OCSP times have sub-second precision, so an answer fetched after a timestamp is provably
    later than it; a CRL's are whole seconds."""
    pki, _ = dev_pki
    for label in ("interm", "tsa"):
        assert pki.cert(label).ocsp_urls == [f"{pki.url_prefix}/dev/ocsp/root"], label


def test_latest_crl_is_issued_at_request_time(dev_pki: tuple[DevPki, int]) -> None:
    pki, _ = dev_pki
    periods = {"root": timedelta(days=30), "interm": timedelta(days=7)}
    for repo, period in periods.items():
        before = datetime.now(UTC).replace(microsecond=0)
        response = requests.get(f"{pki.url_prefix}/dev/crls/{repo}/latest.crl", timeout=5)
        after = datetime.now(UTC)
        assert response.headers["Content-Type"] == "application/pkix-crl"
        tbs = crl.CertificateList.load(response.content)["tbs_cert_list"]
        this_update = tbs["this_update"].native
        assert before <= this_update <= after, (repo, this_update)
        assert tbs["next_update"].native - this_update == period, repo
    revoked = crl.CertificateList.load(
        requests.get(f"{pki.url_prefix}/dev/crls/interm/latest.crl", timeout=5).content
    )
    serials = {
        r["user_certificate"].native for r in revoked["tbs_cert_list"]["revoked_certificates"]
    }
    assert pki.cert("revoked-signer").serial_number in serials


def test_tsa_tokens_carry_ess_signing_certificate_v2_sha256(dev_pki: tuple[DevPki, int]) -> None:
    """RFC 5816: SigningCertificateV2 with a SHA-256 hash, and no SHA-1 SigningCertificate."""
    pki, _ = dev_pki
    token = asyncio.run(
        PooledHTTPTimeStamper(pki.tsa_url).async_timestamp(dummy_digest("sha256"), "sha256")
    )
    (signer_info,) = token["content"]["signer_infos"]
    attrs = signer_info["signed_attrs"]
    assert "signing_certificate" not in [a["type"].native for a in attrs]
    (cert_id,) = find_unique_cms_attribute(attrs, "signing_certificate_v2")["certs"]
    assert cert_id["hash_algorithm"]["algorithm"].native == "sha256"
    tsa = pki.cert("tsa")
    assert cert_id["cert_hash"].native == hashlib.sha256(tsa.dump()).digest()
    assert check_ess_certid(tsa, cert_id)
