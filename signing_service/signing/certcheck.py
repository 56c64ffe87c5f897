"""Checks on the signer's certificate before every signature (TT 15/2025 Art. 5).

Nghị định 23/2025 and TT 15/2025 Art. 5: before signing, the signer's certificate must be
checked — in force, fit for signing, not revoked — and signing refused, with the reason, when it
is not. pyHanko signs with a revoked certificate without complaint, so every flow (one-step,
batch, two-step prepare and completion, remote signing, PKCS#11, the CLI) calls
:meth:`SignerChecker.async_check` first, at every level from B-B to B-LTA. Nothing switches the
checks off:

- the validity period, at the present time;
- key usage: digitalSignature or nonRepudiation, and not a CA certificate (a CA key signs
  certificates and CRLs, never documents; issue 9: a CA certificate was accepted as an
  officer's);
- the algorithm policy (RSA ≥ 2048, ECDSA ≥ 256);
- the chain to a trust anchor and the revocation status of every certificate on it, at the
  present time, from OCSP or else the CRL (:class:`ChainJudge`, the verifier's
  :class:`~signing_service.verification.chain.ChainValidator`). Status that cannot be
  established (responder unreachable, no CRL) refuses: unknown is never "good".

Cost: revocation answers come through the verifier's process-wide cache
(:data:`~signing_service.verification.revinfo_cache.REVOCATION_CACHE`, kept until their
``nextUpdate`` and capped; failed fetches are remembered briefly as failures, never as answers),
and a certificate's chain judgement is reused until the earliest ``nextUpdate`` of the answers it
relied on, capped by ``max_age``. The validity period, key usage and policy are re-checked on
every call (microseconds).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from asn1crypto import crl, ocsp, x509
from pyhanko.sign.ades.report import AdESIndeterminate, AdESSubIndic
from pyhanko_certvalidator.fetchers.api import FetcherBackend

from signing_service._async import run_sync
from signing_service.signing.policy import cert_policy_problem
from signing_service.trust import VIETNAM_TZ, TrustStore, fingerprint
from signing_service.verification.chain import (
    SIGNING_EXTENDED_KEY_USAGES,
    ChainResult,
    ChainValidator,
    Evidence,
    Usage,
)
from signing_service.verification.revinfo_cache import (
    NO_NEXT_UPDATE_SECONDS,
    REVOCATION_CACHE,
    CachingFetcherBackend,
    _crl_next_update,
    _ocsp_next_update,
)


class SignerCheckFailure(Exception):
    """Refusal to sign; ``reason`` is one of the constants below, ``detail`` a short Vietnamese
    explanation (shown to the client in ``details.reason``)."""

    EXPIRED = "expired"
    KEY_USAGE = "key_usage"
    CA_CERTIFICATE = "ca_certificate"
    ALGORITHM = "algorithm"
    UNTRUSTED = "untrusted"
    REVOKED = "revoked"
    STATUS_UNKNOWN = "status_unknown"

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


SIGNING_KEY_USAGES = frozenset({"digital_signature", "non_repudiation"})


def extended_key_usage_problem(cert: x509.Certificate) -> str | None:
    """Why ``cert``'s extended key usage forbids signing documents, or ``None``."""
    value = cert.extended_key_usage_value
    if value is None:
        return None
    purposes = set(value.native or [])
    if purposes & SIGNING_EXTENDED_KEY_USAGES:
        return None
    return "mục đích sử dụng khóa mở rộng không cho phép ký văn bản: " + (
        ", ".join(sorted(purposes)) or "trống"
    )


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.basic_constraints_value
        return bool(constraints is not None and constraints["ca"].native)
    except (ValueError, TypeError, KeyError):
        return True  # unreadable basic constraints: not provably an end entity


def check_static(cert: x509.Certificate, now: datetime | None = None) -> None:
    """The checks that need no network: validity at ``now`` (default: the present), key usage
    (digitalSignature or nonRepudiation), an end-entity certificate (no ``cA`` basic
    constraint), the algorithm policy. Raises :class:`SignerCheckFailure`."""
    now = now or datetime.now(UTC)
    validity = cert["tbs_certificate"]["validity"]
    not_before = validity["not_before"].native
    not_after = validity["not_after"].native
    if not (not_before <= now <= not_after):
        raise SignerCheckFailure(
            SignerCheckFailure.EXPIRED,
            f"hiệu lực từ {not_before.astimezone(VIETNAM_TZ).isoformat()} "
            f"đến {not_after.astimezone(VIETNAM_TZ).isoformat()}",
        )
    if _is_ca(cert):
        raise SignerCheckFailure(
            SignerCheckFailure.CA_CERTIFICATE,
            "chứng thư có thuộc tính cA (chứng thư của tổ chức cấp chứng thư số)",
        )
    usages = cert.key_usage_value.native if cert.key_usage_value is not None else []
    if not SIGNING_KEY_USAGES.intersection(usages or []):
        raise SignerCheckFailure(
            SignerCheckFailure.KEY_USAGE,
            "mục đích sử dụng khóa: " + (", ".join(usages or []) or "không khai báo"),
        )
    eku = extended_key_usage_problem(cert)
    if eku:
        raise SignerCheckFailure(SignerCheckFailure.KEY_USAGE, eku)
    problem = cert_policy_problem(cert)
    if problem:
        raise SignerCheckFailure(SignerCheckFailure.ALGORITHM, problem)


def _revocation_text(result: ChainResult) -> str:
    details = result.revocation
    assert details is not None
    whom = "chứng thư của tổ chức cấp trong chuỗi" if details.ca_revoked else "chứng thư"
    when = details.revocation_date.astimezone(VIETNAM_TZ).isoformat()
    reason = getattr(details.revocation_reason, "native", None) or "không nêu"
    return f"{whom} bị thu hồi từ {when} (lý do: {reason})"


def _failure_of(result: ChainResult, found_revoked: ChainResult | None) -> SignerCheckFailure:
    """Map a failed chain judgement to a refusal (ETSI EN 319 102-1 sub-indication kept in the
    detail for operators)."""
    status: AdESSubIndic | None = result.status
    code = status.name if status is not None else "UNKNOWN"
    if result.revocation is not None:
        return SignerCheckFailure(SignerCheckFailure.REVOKED, _revocation_text(result))
    if found_revoked is not None:
        return SignerCheckFailure(SignerCheckFailure.REVOKED, _revocation_text(found_revoked))
    if result.revinfo_problem:
        return SignerCheckFailure(
            SignerCheckFailure.STATUS_UNKNOWN,
            "không lấy được thông tin thu hồi (OCSP/CRL) còn hiệu lực cho chứng thư trong chuỗi",
        )
    if status in (AdESIndeterminate.OUT_OF_BOUNDS_NO_POE, AdESIndeterminate.EXPIRED):
        return SignerCheckFailure(
            SignerCheckFailure.EXPIRED, f"một chứng thư trong chuỗi hết hiệu lực ({code})"
        )
    if status is AdESIndeterminate.NOT_YET_VALID:
        return SignerCheckFailure(
            SignerCheckFailure.EXPIRED, f"một chứng thư trong chuỗi chưa có hiệu lực ({code})"
        )
    if status in (
        AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE,
        AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
    ):
        return SignerCheckFailure(
            SignerCheckFailure.ALGORITHM,
            f"chuỗi chứng thư dùng thuật toán không được phép ({code})",
        )
    return SignerCheckFailure(
        SignerCheckFailure.UNTRUSTED,
        f"không xây dựng được chuỗi hợp lệ tới chứng thư gốc tin cậy ({code})",
    )


def _earliest_next_update(
    crls: list[crl.CertificateList], ocsps: list[ocsp.OCSPResponse]
) -> datetime | None:
    """The earliest nextUpdate of the answers; an answer without one counts as valid for
    :data:`NO_NEXT_UPDATE_SECONDS` from now (RFC 6960 §2.4; red team 19b, R19B-3)."""
    soon = datetime.now(UTC) + timedelta(seconds=NO_NEXT_UPDATE_SECONDS)
    moments = [m or soon for m in (*map(_crl_next_update, crls), *map(_ocsp_next_update, ocsps))]
    return min(moments) if moments else None


@dataclass(frozen=True)
class SignerCheck:
    """What a successful pre-signing check relied on (TT 15/2025 Art. 5–6: the evidence kept
    per signature): ``path`` — the validated chain, signer first, trust anchor last (DER);
    ``ocsps`` / ``crls`` — the revocation answers obtained for it (DER, as the responder
    signed them); ``checked_at`` — when the chain was judged (UTC); ``status`` — ``good``
    (a check that fails raises instead); ``reused`` — the judgement came from the judge's
    cache (made at ``checked_at``, still within the answers' ``nextUpdate``)."""

    checked_at: datetime
    path: tuple[bytes, ...] = ()
    ocsps: tuple[bytes, ...] = ()
    crls: tuple[bytes, ...] = ()
    status: str = "good"
    reused: bool = False


@dataclass(frozen=True)
class _Judgement:
    failure: SignerCheckFailure | None
    until: float  # time.monotonic()
    # A successful judgement keeps what it relied on: a signature made while it is reused
    # must still carry the answers that showed the chain good (its evidence).
    record: SignerCheck | None = None


class ChainJudge:
    """Chains of certificates used for one purpose (``usage``: ``"signer"`` or ``"tsa"``),
    judged at the present time against ``trust`` with revocation required for every certificate
    on the path (OCSP, else CRL; TT 15/2025 Art. 5–6), as the verifier judges them.

    A judgement is reused for the same certificate until the earliest ``nextUpdate`` of the
    revocation answers it relied on, at most ``max_age`` seconds; a revocation for ``max_age``;
    an unknown status or a broken chain is never reused (judged again on the next call).
    ``backend``: where revocation answers come from (default: the process-wide cache).
    """

    def __init__(
        self,
        trust: TrustStore,
        usage: Usage,
        *,
        max_age: float = 300.0,
        backend: FetcherBackend | None = None,
    ) -> None:
        self._trust = trust
        self._usage = usage
        self._max_age = max_age
        self._backend = backend or CachingFetcherBackend(
            REVOCATION_CACHE,
            per_request_timeout=trust.fetch_timeout,
            ca_issuer_urls=trust.ca_issuer_urls,
        )
        self._cache: dict[str, _Judgement] = {}
        self._lock = threading.Lock()
        self.validations = 0  # chain validations actually run (not served from the cache)

    def clear(self) -> None:
        with self._lock:
            self._cache.clear()

    async def async_judge(
        self, cert: x509.Certificate, others: tuple[x509.Certificate, ...] = ()
    ) -> SignerCheckFailure | None:
        """``None`` when ``cert``'s chain is valid now and no certificate on it is revoked;
        else the refusal (UNTRUSTED, REVOKED, STATUS_UNKNOWN, EXPIRED, ALGORITHM).
        ``others``: certificates offered for path building (the key's or the token's chain)."""
        failure, _ = await self.async_judge_with_record(cert, others)
        return failure

    async def async_judge_with_record(
        self, cert: x509.Certificate, others: tuple[x509.Certificate, ...] = ()
    ) -> tuple[SignerCheckFailure | None, SignerCheck | None]:
        """:meth:`async_judge`, and on success what the judgement relied on (the chain, the
        revocation answers, when it was made; ``reused`` when served from the cache)."""
        key = fingerprint(cert)
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit.until > now:
            reused = replace(hit.record, reused=True) if hit.record is not None else None
            return hit.failure, reused
        self.validations += 1
        checked_at = datetime.now(UTC)
        validator = ChainValidator(
            self._trust,
            Evidence(certs=others),
            validation_time=checked_at,
            live=True,
            fetcher_backend=self._backend,
        )
        result = await validator.validate(cert, self._usage)
        if result.ok:
            crls, ocsps = validator.fetched()
            record = SignerCheck(
                checked_at=checked_at,
                # certvalidator iterates from the anchor down: the evidence lists the signer
                # first.
                path=(
                    tuple(reversed([c.dump() for c in result.path.iter_certs(include_root=True)]))
                    if result.path is not None
                    else (cert.dump(),)
                ),
                ocsps=tuple(o.dump() for o in ocsps),
                crls=tuple(c.dump() for c in crls),
            )
            next_update = _earliest_next_update(crls, ocsps)
            ttl = self._max_age
            if next_update is not None:
                ttl = min(ttl, (next_update - datetime.now(UTC)).total_seconds())
            if ttl > 0:
                with self._lock:
                    self._cache[key] = _Judgement(None, now + ttl, record)
            return None, record
        found = None
        if result.revinfo_problem:
            # Current status unknown: does any answer we hold (however old) show a revocation?
            found = await validator.find_revocation(cert, self._usage)
        failure = _failure_of(result, found)
        if failure.reason == SignerCheckFailure.REVOKED:
            with self._lock:
                self._cache[key] = _Judgement(failure, now + self._max_age)
        return failure, None


class SignerChecker:
    """Every check before a signature (module docstring), for every flow and level."""

    def __init__(
        self,
        trust: TrustStore,
        cache_seconds: int = 300,
        *,
        backend: FetcherBackend | None = None,
    ) -> None:
        self.chains = ChainJudge(trust, "signer", max_age=cache_seconds, backend=backend)

    async def async_check(
        self, cert: x509.Certificate, chain: tuple[x509.Certificate, ...] = ()
    ) -> SignerCheck:
        """Raise :class:`SignerCheckFailure` unless ``cert`` may sign now. ``chain``: the
        intermediates that come with the key (offered for path building, not trusted).
        Returns what the check relied on (:class:`SignerCheck`: the signature's evidence)."""
        check_static(cert)
        failure, record = await self.chains.async_judge_with_record(cert, tuple(chain))
        if failure is not None:
            raise failure
        assert record is not None  # a judgement without failure always has its record
        return record

    def check(
        self, cert: x509.Certificate, chain: tuple[x509.Certificate, ...] = ()
    ) -> SignerCheck:
        """Synchronous :meth:`async_check` (worker threads, the CLI)."""
        return run_sync(self.async_check(cert, chain))
