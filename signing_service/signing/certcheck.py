"""Checks on the signer's certificate before anything is signed.

Nghị định 23/2025 and TT 15/2025: signing with an expired or revoked certificate must be refused,
with the reason. pyHanko signs B-B with a revoked certificate without complaint, so we check
first: validity period, key usage, algorithm policy, and (for B-LT/B-LTA or when the profile
asks) the chain to a trust anchor and revocation status from OCSP or CRL.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import x509
from pyhanko_certvalidator import CertificateValidator
from pyhanko_certvalidator.errors import (
    InsufficientRevinfoError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
)

from signing_service._async import run_sync
from signing_service.signing.policy import cert_policy_problem
from signing_service.trust import TrustStore, fingerprint


class SignerCheckFailure(Exception):
    """Refusal to sign; ``reason`` is one of the constants below."""

    EXPIRED = "expired"
    KEY_USAGE = "key_usage"
    ALGORITHM = "algorithm"
    UNTRUSTED = "untrusted"
    REVOKED = "revoked"
    STATUS_UNKNOWN = "status_unknown"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


SIGNING_KEY_USAGES = frozenset({"digital_signature", "non_repudiation"})


def check_static(cert: x509.Certificate, now: datetime | None = None) -> None:
    now = now or datetime.now(UTC)
    validity = cert["tbs_certificate"]["validity"]
    not_before = validity["not_before"].native
    not_after = validity["not_after"].native
    if not (not_before <= now <= not_after):
        raise SignerCheckFailure(
            SignerCheckFailure.EXPIRED,
            f"hiệu lực từ {not_before.isoformat()} đến {not_after.isoformat()}",
        )
    usages = cert.key_usage_value.native if cert.key_usage_value is not None else []
    if not SIGNING_KEY_USAGES.intersection(usages or []):
        raise SignerCheckFailure(SignerCheckFailure.KEY_USAGE, ",".join(usages or []))
    problem = cert_policy_problem(cert)
    if problem:
        raise SignerCheckFailure(SignerCheckFailure.ALGORITHM, problem)


@dataclass
class _Cached:
    until: float
    failure: SignerCheckFailure | None


class SignerChecker:
    """Revocation checks, cached per certificate for a short while (OCSP answers are too)."""

    def __init__(self, trust: TrustStore, cache_seconds: int = 300) -> None:
        self._trust = trust
        self._cache_seconds = cache_seconds
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    async def async_check(
        self,
        cert: x509.Certificate,
        chain: tuple[x509.Certificate, ...],
        check_revocation: bool,
    ) -> None:
        check_static(cert)
        if not check_revocation:
            return
        key = fingerprint(cert)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit.until > now:
            if hit.failure is not None:
                raise hit.failure
            return
        failure = await self._check_chain(cert, chain)
        # Failures caused by an unreachable responder are not cached: try again next time.
        if failure is None or failure.reason != SignerCheckFailure.STATUS_UNKNOWN:
            with self._lock:
                self._cache[key] = _Cached(now + self._cache_seconds, failure)
        if failure is not None:
            raise failure

    async def _check_chain(
        self, cert: x509.Certificate, chain: tuple[x509.Certificate, ...]
    ) -> SignerCheckFailure | None:
        vc = self._trust.validation_context(other_certs=chain, revocation_mode="require")
        validator = CertificateValidator(
            cert, intermediate_certs=list(chain), validation_context=vc
        )
        try:
            await validator.async_validate_usage(set())
        except RevokedError as e:
            return SignerCheckFailure(SignerCheckFailure.REVOKED, str(e))
        except InsufficientRevinfoError as e:
            return SignerCheckFailure(SignerCheckFailure.STATUS_UNKNOWN, str(e))
        except PathBuildingError as e:
            return SignerCheckFailure(SignerCheckFailure.UNTRUSTED, str(e))
        except PathValidationError as e:
            return SignerCheckFailure(SignerCheckFailure.UNTRUSTED, str(e))
        return None

    def check(
        self, cert: x509.Certificate, chain: tuple[x509.Certificate, ...], check_revocation: bool
    ) -> None:
        run_sync(self.async_check(cert, chain, check_revocation))
