"""Red team 17: what a signature's revocation data and times may prove.

- F1: a CRL the document carries, issued before the signer's certificate was revoked, is still
  within its nextUpdate: certvalidator used it and never asked the CA, so a signature made today
  with a stolen key read TOTAL_PASSED. Validating now, the CA's current CRL is fetched beside it.
- F3: a CA certificate (basicConstraints cA=TRUE), or a trust anchor itself, signing a document.
- F4: revocation data dated after the validation time cannot exist yet and proves nothing.
- F2 / F5: times the checks do not decide are said: a past validation time that only holds by
  assuming the signature existed then, a signer's own time later than the one asked for, a
  timestamp earlier than the signer's own time.

Each input is built here: a fresh Government-CA-shaped chain (tests/support/testpki.py) under a
root configured as an extra anchor, its CRL served on loopback, the dev PKI's TSA.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import crl as asn1_crl
from cryptography import x509 as cx
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers
from pyhanko.sign.timestamps import HTTPTimeStamper
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko_certvalidator.errors import CRLFetchError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.pki.dev import DevPki
from signing_service.trust import TrustStore
from signing_service.verification.validate import Verifier
from tests.conftest import REPO
from tests.support.duties import WsgiServer
from tests.support.pdfs import make_pdf
from tests.support.testpki import (
    INTERMEDIATE_NAME,
    OFFICER_NAME,
    IssuedChain,
    issue_certificate,
    issue_chain,
    key_info,
    new_key,
    to_asn1,
)

NOW = datetime.now(UTC)


@dataclass
class CrlSource:
    """The intermediate's CRL on loopback: ``body`` is served, ``hits`` counts requests."""

    body: bytes = b""
    hits: list[str] = field(default_factory=list)

    def app(self, environ: dict[str, Any], start_response: Any) -> list[bytes]:
        self.hits.append(environ.get("PATH_INFO", ""))
        start_response("200 OK", [("Content-Type", "application/pkix-crl")])
        return [self.body]


@pytest.fixture
def crls() -> Iterator[tuple[CrlSource, str]]:
    source = CrlSource()
    with WsgiServer(source.app) as server:
        yield source, f"{server.url}/interm.crl"


def _trust(dev_pki: tuple[DevPki, int], chain: IssuedChain, tmp_path: Path) -> TrustStore:
    pki, _ = dev_pki
    return TrustStore.load(
        REPO / "certs/trust/anchors.json",
        dev_root=pki.root_cert_path,
        extra=[chain.write_root(tmp_path / "root.pem")],
        fetch_timeout=3,
    )


class _ClaimedTime(signers.PdfSigner):
    """pyHanko's signer with the claimed signing time (/M) the test chooses."""

    claimed: datetime | None = None

    def init_signing_session(self, pdf_out, existing_fields_only=False):  # type: ignore[no-untyped-def]
        session = super().init_signing_session(pdf_out, existing_fields_only)
        if self.claimed is not None:
            session.system_time = self.claimed
        return session


def _sign(
    pdf: bytes,
    signer: signers.Signer,
    *,
    tsa_url: str | None = None,
    claimed: datetime | None = None,
    crls: list[bytes] = (),  # type: ignore[assignment]
) -> bytes:
    meta = signers.PdfSignatureMetadata(
        field_name="Signature1", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES
    )
    pdf_signer = _ClaimedTime(
        meta, signer=signer, timestamper=HTTPTimeStamper(tsa_url) if tsa_url else None
    )
    pdf_signer.claimed = claimed
    out = BytesIO()
    pdf_signer.sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), output=out)
    if crls:
        contents = PdfFileReader(BytesIO(out.getvalue())).embedded_signatures[0].pkcs7_content
        DocumentSecurityStore.add_dss(
            out, contents, crls=[asn1_crl.CertificateList.load(c) for c in crls]
        )
    return out.getvalue()


def _verify(
    trust: TrustStore, data: bytes, *, live: bool = True, at: datetime | None = None
) -> dict[str, Any]:
    report = asyncio.run(
        Verifier(trust, allow_fetching=live).async_verify(data, validation_time=at)
    )
    return report.to_dict()


def _warnings(report: dict[str, Any]) -> set[str]:
    return {w["code"] for w in report.get("warnings") or []}


def _stale_crls(chain: IssuedChain) -> list[bytes]:
    """The intermediate's and the root's CRLs of two days ago, valid four more weeks."""
    then, until = NOW - timedelta(days=2), NOW + timedelta(days=28)
    return [
        chain.crl(this_update=then, next_update=until),
        chain.crl(this_update=then, next_update=until, issuer_label="root"),
    ]


def _revoked_yesterday(chain: IssuedChain) -> list[tuple[int, datetime]]:
    return [(chain.leaf.serial_number, NOW - timedelta(days=1))]


# -- F1: the CA's current CRL counts, not only the one the document carries -------------------


def test_stale_crl_in_the_document_cannot_hide_a_revocation(
    dev_pki: tuple[DevPki, int], crls: tuple[CrlSource, str], tmp_path: Path
) -> None:
    source, url = crls
    chain = issue_chain(crl_url=url)
    # The CA revoked the certificate yesterday and publishes it; the document carries the CRL
    # of the day before (nextUpdate in four weeks), signed today with the stolen key.
    source.body = chain.crl(_revoked_yesterday(chain))
    before = _stale_crls(chain)
    signed = _sign(make_pdf(), chain.signer(), crls=before)
    report = _verify(_trust(dev_pki, chain, tmp_path), signed)
    signature = report["signatures"][0]
    assert report["verdict"] == "INDETERMINATE", signature["checks"]
    assert signature["sub_indication"] == "REVOKED_NO_POE"
    assert source.hits, "the CA's CRL was never asked for"
    fetched = [r for r in signature["revocation_data"] if r["source"] == "fetched"]
    assert [r["status"] for r in fetched] == ["revoked"]


def test_current_crl_not_listing_the_signer_passes(
    dev_pki: tuple[DevPki, int], crls: tuple[CrlSource, str], tmp_path: Path
) -> None:
    """The control: the same document when the CA's current CRL does not list the signer."""
    source, url = crls
    chain = issue_chain(crl_url=url)
    source.body = chain.crl()
    before = _stale_crls(chain)
    signed = _sign(make_pdf(), chain.signer(), crls=before)
    report = _verify(_trust(dev_pki, chain, tmp_path), signed)
    assert report["verdict"] == "TOTAL_PASSED", report["signatures"][0]["checks"]
    assert source.hits
    assert "REVOCATION_NOT_REFRESHED" not in _warnings(report)


def test_a_ca_that_does_not_answer_leaves_the_document_data_deciding_and_says_so(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    """The CA's CRL address does not answer: the document's own CRLs decide (still valid
    evidence), and the report says that a later revocation could not be seen (red team 18
    R18-4)."""
    chain = issue_chain(crl_url="http://127.0.0.1:9/interm.crl")
    signed = _sign(make_pdf(), chain.signer(), crls=_stale_crls(chain))
    report = _verify(_trust(dev_pki, chain, tmp_path), signed)
    assert report["verdict"] == "TOTAL_PASSED", report["signatures"][0]["checks"]
    assert "REVOCATION_NOT_REFRESHED" in _warnings(report)


def test_a_used_up_request_budget_is_not_remembered_as_the_ca_failing() -> None:
    """One verification's request budget (FetchLimits) running out is not an answer from the
    CA: remembered as the CA's failure in the shared cache, one upload that used up its budget
    stopped every verification of the next 30 s from fetching that CRL (red team 18 R18-2)."""
    from signing_service.verification.revinfo_cache import CachingFetcherBackend, RevocationCache

    cache = RevocationCache()
    backend = CachingFetcherBackend(cache, per_request_timeout=2)
    fetchers = backend.get_fetchers()
    limit = backend.limits.max_requests
    assert limit is not None

    async def spend() -> None:
        for n in range(limit):
            with pytest.raises(CRLFetchError):  # a closed port: a real failure
                await fetchers.crl_fetcher._fetch_single(f"http://127.0.0.1:9/{n}.crl")
        with pytest.raises(CRLFetchError, match="limit"):
            await fetchers.crl_fetcher._fetch_single("http://127.0.0.1:9/the-ca.crl")

    asyncio.run(spend())
    with pytest.raises(CRLFetchError, match=re.escape("127.0.0.1:9/0.crl")):  # remembered
        cache.get(("crl", "http://127.0.0.1:9/0.crl"))
    with pytest.raises(KeyError):  # never asked: nothing remembered
        cache.get(("crl", "http://127.0.0.1:9/the-ca.crl"))


def test_timestamped_before_the_revocation_still_passes(
    dev_pki: tuple[DevPki, int], crls: tuple[CrlSource, str], tmp_path: Path
) -> None:
    """A revocation after the proven signing time does not undo the signature (the fetched
    CRL is judged at the timestamp's time): B-T signed, then revoked a minute later."""
    pki, _ = dev_pki
    source, url = crls
    chain = issue_chain(crl_url=url)
    signed = _sign(
        make_pdf(), chain.signer(), tsa_url=pki.tsa_url, crls=[chain.crl(issuer_label="root")]
    )
    later = datetime.now(UTC) + timedelta(seconds=1)
    source.body = chain.crl(
        [(chain.leaf.serial_number, later)], this_update=later + timedelta(seconds=1)
    )
    time.sleep(3)
    report = _verify(_trust(dev_pki, chain, tmp_path), signed)
    assert report["verdict"] == "TOTAL_PASSED", report["signatures"][0]["checks"]
    assert source.hits


def test_no_address_of_an_unvouched_certificate_is_fetched(
    dev_pki: tuple[DevPki, int], crls: tuple[CrlSource, str], tmp_path: Path
) -> None:
    """A forged certificate naming the real intermediate as its issuer (and its key
    identifier), signed with another key, whose CRL address is the forger's: the chain fails,
    and the address is never asked (the fetching follows a path only as far as each
    signature verifies)."""
    source, url = crls
    chain = issue_chain()
    forged_key = new_key("rsa")
    forged = issue_certificate(
        OFFICER_NAME,
        forged_key,
        INTERMEDIATE_NAME,
        new_key("rsa"),
        not_before=NOW - timedelta(days=30),
        not_after=NOW + timedelta(days=365),
        issuer_cert=cx.load_der_x509_certificate(chain.intermediate.dump()),
        crl_url=url,
    )
    signer = signers.SimpleSigner(
        signing_cert=to_asn1(forged),
        signing_key=key_info(forged_key),
        cert_registry=SimpleCertificateStore.from_certs([chain.intermediate, chain.root]),
    )
    signed = _sign(make_pdf(), signer, crls=_stale_crls(chain))
    report = _verify(_trust(dev_pki, chain, tmp_path), signed)
    assert report["verdict"] != "TOTAL_PASSED"
    assert source.hits == []


# -- F3: a CA does not sign documents ---------------------------------------------------------


def _ca_signer(chain: IssuedChain) -> signers.SimpleSigner:
    """A certificate under the chain's intermediate with cA=TRUE and every signing key usage."""
    key = new_key("rsa")
    subject = cx.Name(
        [
            cx.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
            cx.NameAttribute(NameOID.ORGANIZATION_NAME, "Sở Tư pháp tỉnh Thử nghiệm"),
            cx.NameAttribute(NameOID.COMMON_NAME, "CA ký văn bản (thử nghiệm)"),
        ]
    )
    intermediate = cx.load_der_x509_certificate(chain.intermediate.dump())
    public = key.public_key()
    cert = (
        cx.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(INTERMEDIATE_NAME)
        .public_key(public)
        .serial_number(cx.random_serial_number())
        .not_valid_before(NOW - timedelta(days=30))
        .not_valid_after(NOW + timedelta(days=365))
        .add_extension(cx.BasicConstraints(ca=True, path_length=None), True)
        .add_extension(cx.SubjectKeyIdentifier.from_public_key(public), False)
        .add_extension(
            cx.AuthorityKeyIdentifier.from_issuer_public_key(intermediate.public_key()),  # type: ignore[arg-type]
            False,
        )
        .add_extension(cx.KeyUsage(True, True, False, False, False, True, True, False, False), True)
        .sign(chain.intermediate_key, hashes.SHA256())  # type: ignore[arg-type]
    )
    return signers.SimpleSigner(
        signing_cert=to_asn1(cert),
        signing_key=key_info(key),
        cert_registry=SimpleCertificateStore.from_certs([chain.intermediate, chain.root]),
    )


def test_a_ca_certificate_does_not_sign_documents(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    chain = issue_chain()
    # The CA's status is known (the intermediate's CRL, the root's for the intermediate): the
    # only thing wrong is that a CA signed.
    signed = _sign(
        make_pdf(), _ca_signer(chain), crls=[chain.crl(), chain.crl(issuer_label="root")]
    )
    report = _verify(_trust(dev_pki, chain, tmp_path), signed, live=False)
    signature = report["signatures"][0]
    assert report["verdict"] != "TOTAL_PASSED"
    assert signature["sub_indication"] == "CHAIN_CONSTRAINTS_FAILURE", signature["checks"]


def test_a_trust_anchor_signing_directly_is_held_to_the_key_usages(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    """pyHanko trusts an anchor that signs for any purpose; a root (keyCertSign, cRLSign, a
    CA) does not sign documents."""
    chain = issue_chain()
    root_signer = signers.SimpleSigner(
        signing_cert=chain.root,
        signing_key=key_info(chain.root_key),
        cert_registry=SimpleCertificateStore.from_certs([]),
    )
    signed = _sign(make_pdf(), root_signer)
    report = _verify(_trust(dev_pki, chain, tmp_path), signed, live=False)
    assert report["verdict"] != "TOTAL_PASSED"
    assert report["signatures"][0]["sub_indication"] == "CHAIN_CONSTRAINTS_FAILURE"


def test_an_end_entity_under_the_same_chain_signs(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    """The control for the two above: the chain's ordinary end entity passes offline with the
    CRLs in the document."""
    chain = issue_chain(crl_url="http://127.0.0.1:9/never-asked.crl")
    signed = _sign(make_pdf(), chain.signer(), crls=[chain.crl(), chain.crl(issuer_label="root")])
    report = _verify(_trust(dev_pki, chain, tmp_path), signed, live=False)
    assert report["verdict"] == "TOTAL_PASSED", report["signatures"][0]["checks"]


# -- F4: revocation data from the future ------------------------------------------------------


def test_revocation_data_dated_after_the_validation_time_proves_nothing(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    """B-T signed now; the only "not listed" CRL, in the document, says it was issued in
    three days: a wrong clock or an answer made in advance, which cannot speak for today. At
    the present it is too new; at the proven signing time it was accepted retroactively
    (TOTAL_PASSED) until red team 17 F4. The certificate's own CRL address does not answer."""
    pki, _ = dev_pki
    chain = issue_chain(crl_url="http://127.0.0.1:9/unreachable.crl")
    future = chain.crl(this_update=NOW + timedelta(days=3), next_update=NOW + timedelta(days=30))
    signed = _sign(
        make_pdf(),
        chain.signer(),
        tsa_url=pki.tsa_url,
        crls=[future, chain.crl(issuer_label="root")],
    )
    # Live, so that the TSA's status (dev PKI) is fetched and the timestamp proves the time;
    # the signer's own CRL address answers nothing.
    report = _verify(_trust(dev_pki, chain, tmp_path), signed)
    assert report["verdict"] == "INDETERMINATE", report["signatures"][0]["checks"]
    assert report["signatures"][0]["checks"]["timestamp"]["status"] == "PASSED"
    assert report["signatures"][0]["checks"]["revocation"]["status"] != "PASSED"


# -- F2 / F5: times the checks do not decide ---------------------------------------------------


def test_validating_before_the_signers_own_time_says_so(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    chain = issue_chain()
    signed = _sign(make_pdf(), chain.signer(), crls=[chain.crl(), chain.crl(issuer_label="root")])
    trust = _trust(dev_pki, chain, tmp_path)
    report = _verify(trust, signed, live=False, at=NOW - timedelta(hours=36))
    assert "CLAIMED_SIGNED_AFTER_VALIDATION_TIME" in _warnings(report)
    # Now: nothing to say.
    assert not _warnings(_verify(trust, signed, live=False)) & {
        "CLAIMED_SIGNED_AFTER_VALIDATION_TIME",
        "EXISTENCE_ASSUMED_AT_VALIDATION_TIME",
    }


def test_a_past_validation_time_without_a_timestamp_is_an_assumption(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    """A backdated claimed time (what a holder of a key revoked since would write) earns no
    "signed after" warning, but the answer as of that past moment says what it assumes."""
    chain = issue_chain()
    crl_then = chain.crl(this_update=NOW - timedelta(days=3), next_update=NOW + timedelta(days=20))
    signed = _sign(
        make_pdf(),
        chain.signer(),
        claimed=NOW - timedelta(days=3),
        crls=[crl_then, chain.crl(issuer_label="root", this_update=NOW - timedelta(days=3))],
    )
    report = _verify(
        _trust(dev_pki, chain, tmp_path), signed, live=False, at=NOW - timedelta(days=2)
    )
    warnings = _warnings(report)
    assert "EXISTENCE_ASSUMED_AT_VALIDATION_TIME" in warnings, report
    assert "CLAIMED_SIGNED_AFTER_VALIDATION_TIME" not in warnings


def test_a_timestamp_earlier_than_the_signers_own_time_is_a_warning(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    pki, _ = dev_pki
    chain = issue_chain()
    trust = _trust(dev_pki, chain, tmp_path)
    crls = [chain.crl(), chain.crl(issuer_label="root")]
    ahead = _sign(
        make_pdf(),
        chain.signer(),
        tsa_url=pki.tsa_url,
        claimed=NOW + timedelta(days=2),
        crls=crls,
    )
    assert "TIMESTAMP_BEFORE_CLAIMED_SIGNING_TIME" in _warnings(_verify(trust, ahead))
    honest = _sign(make_pdf(), chain.signer(), tsa_url=pki.tsa_url, crls=crls)
    assert "TIMESTAMP_BEFORE_CLAIMED_SIGNING_TIME" not in _warnings(_verify(trust, honest))


def test_a_claimed_time_before_the_certificate_existed_is_a_warning(
    dev_pki: tuple[DevPki, int], tmp_path: Path
) -> None:
    """Red team 23a, R23A-4: a signing time (/M) claimed before the signer's certificate was
    issued read "Hợp lệ" with that time beside "certificate valid from" a later day, and no
    warning; with a timestamp the verdict itself uses the proven time."""
    pki, _ = dev_pki
    chain = issue_chain(leaf_not_before=NOW - timedelta(days=1))
    trust = _trust(dev_pki, chain, tmp_path)
    crls = [chain.crl(), chain.crl(issuer_label="root")]
    early = _sign(
        make_pdf(),
        chain.signer(),
        tsa_url=pki.tsa_url,
        claimed=NOW - timedelta(days=3),
        crls=crls,
    )
    assert "CLAIMED_SIGNING_TIME_BEFORE_CERTIFICATE" in _warnings(_verify(trust, early))
    honest = _sign(make_pdf(), chain.signer(), tsa_url=pki.tsa_url, crls=crls)
    assert "CLAIMED_SIGNING_TIME_BEFORE_CERTIFICATE" not in _warnings(_verify(trust, honest))
