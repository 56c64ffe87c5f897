"""RFC 3161 client for signing (signature timestamps and B-LTA document timestamps).

pyHanko's default HTTP timestamper (aiohttp) opens a new client session for every event loop,
and the service runs one short event loop per request in a worker thread: ~13 ms of CPU per
timestamp spent on session set-up alone. This client keeps one pooled ``requests`` session per
worker thread and blocks that thread, which is what the worker thread is for.

It also remembers the size of the tokens each TSA returns (:func:`token_size`), so that the
space reserved for a timestamped signature fits the token instead of a fixed guess.

Every token is checked before it is used (TT 15/2025 Art. 5; RFC 3161 § 2.4.2; issue 9: a SHA-1
or self-signed timestamp server yielded a stored "B-T"): :class:`CheckedTimeStamper` wraps any
:class:`TimeStamper` and hands each token to :class:`TokenChecker` before pyHanko embeds it —
signature timestamps, B-LTA document timestamps, the tokens of two-step completion. The checks
are the verifier's building blocks (ESS certificate selection, :func:`signature_integrity`,
:func:`verification_algorithm_problem`, :class:`ChainValidator` for the ``tsa`` usage), so a
token the service embeds is one its verifier accepts.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import requests
from asn1crypto import cms, core, tsp, x509
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError, set_tsp_headers
from pyhanko_certvalidator.fetchers.api import FetcherBackend

from signing_service import metrics
from signing_service._asn1 import check_der_shape
from signing_service.signing.certcheck import ChainJudge, SignerCheckFailure
from signing_service.signing.policy import digest_policy_problem, verification_algorithm_problem
from signing_service.trust import VIETNAM_TZ, TrustStore
from signing_service.verification.cms import signature_integrity
from signing_service.verification.validate import SignerCertificates

# Largest token (DER bytes) received per (TSA URL, message-imprint digest algorithm), for the
# life of the process. A TSA's tokens differ by a few bytes (serial, nonce, genTime fraction);
# a new TSA certificate or chain changes them more, and the largest one seen is kept.
_TOKEN_SIZES: dict[tuple[str, str], int] = {}
_TOKEN_SIZES_LOCK = threading.Lock()


def _record_token_size(url: str, md_algorithm: str, size: int) -> None:
    key = (url, md_algorithm.lower())
    with _TOKEN_SIZES_LOCK:
        if size > _TOKEN_SIZES.get(key, 0):
            _TOKEN_SIZES[key] = size


def learnt_token_size(url: str, md_algorithm: str) -> int | None:
    """The largest token (DER bytes) received from ``url`` for ``md_algorithm``, if any."""
    with _TOKEN_SIZES_LOCK:
        return _TOKEN_SIZES.get((url, md_algorithm.lower()))


async def token_size(timestamper: TimeStamper, md_algorithm: str) -> int:
    """Size in DER bytes of the RFC 3161 token that ``timestamper`` will return.

    For a :class:`PooledHTTPTimeStamper`: the largest token received from its URL so far, by
    any instance (one request for a dummy digest the first time, then none). For any other
    :class:`TimeStamper`: the size of its dummy token (pyHanko requests it once per instance and
    digest algorithm). Raises :class:`TimestampRequestError` when the TSA cannot be reached,
    :class:`TimestampCheckFailure` when the token of a :class:`CheckedTimeStamper` is refused.
    """
    pooled = timestamper.inner if isinstance(timestamper, CheckedTimeStamper) else timestamper
    if isinstance(pooled, PooledHTTPTimeStamper):
        known = learnt_token_size(pooled.url, md_algorithm)
        if known is not None:
            return known
        # pyHanko caches the dummy per instance, and the request records its size. Through a
        # CheckedTimeStamper the dummy is checked too: a bad TSA is refused before signing.
        token = await timestamper.async_dummy_response(md_algorithm)
        return learnt_token_size(pooled.url, md_algorithm) or len(token.dump())
    token = await timestamper.async_dummy_response(md_algorithm)
    return len(token.dump())


MAX_TSA_RESPONSE_BYTES = 256 * 1024
"""Largest timestamp response read from a TSA. A token with its TSA's certificate chain is a few
KB (the dev TSA's: about 3 KB); a TSA that sends more is broken or not a TSA."""


class PooledHTTPTimeStamper(TimeStamper):
    """An RFC 3161 client over a pooled ``requests`` session per thread (see the module's
    docstring). The exchange is bounded as revocation fetches are (verification/revinfo_cache.py
    ``_BoundedBodies``): the whole answer within ``2 × timeout`` seconds (requests' timeout is
    per read: a server dripping a byte a second held a signing thread for as long as it liked,
    red team 15b), at most :data:`MAX_TSA_RESPONSE_BYTES`, and its DER shape checked
    (:func:`signing_service._asn1.check_der_shape`) before asn1crypto parses it. An answer too
    slow or too large is ``TimestampRequestError`` (the TSA is unavailable: 503 with
    ``Retry-After``); one whose shape is refused is a ``ValueError``, as one that does not
    parse."""

    max_bytes = MAX_TSA_RESPONSE_BYTES

    def __init__(self, url: str, timeout: float = 10.0) -> None:
        super().__init__()
        self.url = url
        self.timeout = timeout
        self._local = threading.local()

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = self._local.session = requests.Session()
        return session

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        began = time.perf_counter()
        deadline = began + 2 * self.timeout
        try:
            with self._session().post(
                self.url,
                req.dump(),
                headers=set_tsp_headers({}),
                timeout=self.timeout,
                stream=True,
            ) as response:
                if response.headers.get("Content-Type") != "application/timestamp-reply":
                    metrics.observe_tsa(time.perf_counter() - began, False, "malformed")
                    raise TimestampRequestError("Timestamp server response is malformed.", response)
                body = bytearray()
                # read1: what one read of the socket gives (iter_content waits for a full
                # chunk, so a dripping server was never timed out), decoded as requests would.
                while chunk := response.raw.read1(16384, decode_content=True):
                    body += chunk
                    if len(body) > self.max_bytes or time.perf_counter() > deadline:
                        metrics.observe_tsa(time.perf_counter() - began, False, "malformed")
                        raise TimestampRequestError(
                            "Timestamp server response is too large or too slow."
                        )
        except TimestampRequestError:
            raise  # counted above (TimestampRequestError is an OSError)
        except (OSError, requests.RequestException) as e:
            metrics.observe_tsa(time.perf_counter() - began, False, "unreachable")
            raise TimestampRequestError("Error in communication with timestamp server") from e
        metrics.observe_tsa(time.perf_counter() - began, True)
        content = bytes(body)
        # Before asn1crypto parses it (recursively): an answer nested thousands deep is refused
        # as one that does not parse (ValueError; CheckedTimeStamper: TIMESTAMP_INVALID).
        check_der_shape(content)
        answer = tsp.TimeStampResp.load(content)
        try:
            token = answer["time_stamp_token"]  # absent (Void) when the TSA refuses
            if isinstance(token, cms.ContentInfo):
                md = req["message_imprint"]["hash_algorithm"]["algorithm"].native
                _record_token_size(self.url, md, len(token.dump()))
        except (ValueError, KeyError, TypeError):
            pass  # a malformed answer is pyHanko's to reject (TimestampRequestError)
        return answer


class TimestampCheckFailure(Exception):
    """A timestamp token refused before use; ``reason`` is one of the constants below,
    ``detail`` a short Vietnamese explanation."""

    INVALID = "invalid"  # unreadable, not granted with a token, or its signature fails
    UNTRUSTED = "untrusted"  # the TSA's chain: no anchor, revoked, expired
    KEY_PURPOSE = "key_purpose"  # no critical id-kp-timeStamping extended key usage
    WEAK_ALGORITHM = "weak_algorithm"  # SHA-1 imprint or signature, short key, …
    IMPRINT_MISMATCH = "imprint_mismatch"  # not a token over what was sent
    NONCE_MISMATCH = "nonce_mismatch"  # not the answer to this request (replay)
    TIME_SKEW = "time_skew"  # genTime too far from the server's clock
    STATUS_UNKNOWN = "status_unknown"  # the TSA certificate's revocation status unknown

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


_CHAIN_REASONS = {
    SignerCheckFailure.STATUS_UNKNOWN: TimestampCheckFailure.STATUS_UNKNOWN,
    SignerCheckFailure.ALGORITHM: TimestampCheckFailure.WEAK_ALGORITHM,
}


def _has_timestamping_purpose(cert: x509.Certificate) -> bool:
    """RFC 3161 § 2.3: the TSA certificate carries the extended key usage id-kp-timeStamping,
    and the extension is critical."""
    try:
        purposes = cert.extended_key_usage_value
        critical = "extended_key_usage" in cert.critical_extensions
    except (ValueError, TypeError, KeyError):
        return False
    return purposes is not None and critical and "time_stamping" in purposes.native


@dataclass(frozen=True)
class CheckedToken:
    """What a checked token says: ``gen_time`` (aware), the TSA's certificate."""

    gen_time: datetime
    tsa_cert: x509.Certificate


class TokenChecker:
    """Checks a timestamp token before the service embeds and stores it.

    In this order (cheap and local first): the token's structure; the nonce equals the
    request's (RFC 3161 § 2.4.2: a replayed or foreign answer); the imprint's digest algorithm
    is allowed (SHA-2/SHA-3) and the imprint is the digest that was sent; the TSA certificate is
    the one the ESS signing-certificate attribute names, the token's signature algorithms
    comply (no SHA-1, RSA ≥ 2048, ECDSA ≥ 256) and the signature verifies over the TSTInfo;
    the TSA certificate carries a critical id-kp-timeStamping extended key usage; genTime is
    within ``max_skew`` of this server's clock; the TSA's chain reaches a trust anchor, for the
    timestamping purpose, and no certificate on it is revoked (OCSP, else CRL), judged now by
    :class:`~signing_service.signing.certcheck.ChainJudge` (reused per TSA certificate until
    its revocation answers' ``nextUpdate``, at most ``cache_seconds``).

    Raises :class:`TimestampCheckFailure`; thread-safe.
    """

    def __init__(
        self,
        trust: TrustStore,
        *,
        max_skew: timedelta = timedelta(minutes=5),
        cache_seconds: float = 300.0,
        backend: FetcherBackend | None = None,
    ) -> None:
        self.max_skew = max_skew
        self.chains = ChainJudge(trust, "tsa", max_age=cache_seconds, backend=backend)
        # TSA certificate selection (ESS attribute check) memoised: one TSA, one entry.
        self._certs = SignerCertificates()

    async def async_check(
        self,
        token: cms.ContentInfo,
        *,
        imprint: bytes,
        md_algorithm: str,
        nonce: int | None,
        now: datetime | None = None,
    ) -> CheckedToken:
        """Check ``token`` obtained for the digest ``imprint`` (computed with
        ``md_algorithm``) with ``nonce`` in the request (``None``: none was sent, e.g. a
        client's own token). ``now``: the server's clock (default: the present)."""
        fail = TimestampCheckFailure
        try:
            signed_data = token["content"]
            if token["content_type"].native != "signed_data":
                raise ValueError("not a SignedData")
            if len(signed_data["signer_infos"]) != 1:
                raise ValueError("not exactly one signer")
            encap = signed_data["encap_content_info"]
            if encap["content_type"].native != "tst_info":
                raise ValueError("not a TSTInfo")
            tst_info = encap["content"].parsed
            if not isinstance(tst_info, tsp.TSTInfo):
                raise ValueError("not a TSTInfo")
            gen_time = tst_info["gen_time"].native
            token_nonce = tst_info["nonce"].native
            imprint_algorithm = str(
                tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
            ).lower()
            token_imprint = tst_info["message_imprint"]["hashed_message"].native
            signer_info = signed_data["signer_infos"][0]
            digest_algorithm = str(signer_info["digest_algorithm"]["algorithm"].native).lower()
            signature_algorithm = signer_info["signature_algorithm"]
            content = bytes(encap["content"])
        except (ValueError, TypeError, KeyError, IndexError, AttributeError):
            raise fail(fail.INVALID, "dấu thời gian không đúng cấu trúc RFC 3161") from None
        if nonce is not None and token_nonce != nonce:
            raise fail(fail.NONCE_MISMATCH, "số ngẫu nhiên (nonce) không khớp yêu cầu đã gửi")
        problem = digest_policy_problem(imprint_algorithm)
        if problem:
            raise fail(fail.WEAK_ALGORITHM, f"dấu băm của dấu thời gian: {problem}")
        if imprint_algorithm != md_algorithm.lower() or token_imprint != imprint:
            raise fail(fail.IMPRINT_MISMATCH, "dấu thời gian không được cấp cho dữ liệu đã gửi")
        try:
            tsa_cert = self._certs.signer_cert(signed_data)
        except Exception:  # noqa: BLE001 - pyHanko's errors for a missing/mismatching cert
            raise fail(
                fail.INVALID, "không xác định được chứng thư của máy chủ dấu thời gian"
            ) from None
        algorithm_problem = verification_algorithm_problem(
            digest_algorithm, signature_algorithm, tsa_cert.public_key
        )
        if algorithm_problem is not None:
            raise fail(fail.WEAK_ALGORITHM, algorithm_problem.detail)
        try:
            digest = hashlib.new(digest_algorithm, content).digest()
            intact, valid = signature_integrity(signer_info, tsa_cert, "tst_info", digest)
        except Exception:  # noqa: BLE001 - pyHanko's SignatureValidationError and the like
            intact = valid = False
        if not (intact and valid):
            raise fail(fail.INVALID, "chữ ký của máy chủ dấu thời gian không hợp lệ")
        if not _has_timestamping_purpose(tsa_cert):
            raise fail(
                fail.KEY_PURPOSE,
                "chứng thư của máy chủ không có mục đích id-kp-timeStamping (critical)",
            )
        if not isinstance(gen_time, datetime) or gen_time.tzinfo is None:
            # RFC 3161 § 2.4.2: genTime is UTC ("Z"); a local time without offset proves nothing.
            raise fail(fail.INVALID, "thời điểm của dấu thời gian không ghi múi giờ UTC")
        now = now or datetime.now(UTC)
        if abs(gen_time - now) > self.max_skew:
            shown = gen_time.astimezone(VIETNAM_TZ).isoformat()
            raise fail(
                fail.TIME_SKEW,
                f"thời điểm {shown} lệch quá {int(self.max_skew.total_seconds())} giây "
                "so với đồng hồ máy chủ",
            )
        others = tuple(c.chosen for c in signed_data["certificates"] or ())
        chain_failure = await self.chains.async_judge(tsa_cert, others)
        if chain_failure is not None:
            reason = _CHAIN_REASONS.get(chain_failure.reason, fail.UNTRUSTED)
            raise fail(reason, f"máy chủ dấu thời gian: {chain_failure.detail}")
        return CheckedToken(gen_time, tsa_cert)

    async def async_check_over(
        self, token: cms.ContentInfo, data: bytes, now: datetime | None = None
    ) -> CheckedToken:
        """Check a token that someone else obtained over ``data`` (the signature value of a
        client-built CMS): the imprint is recomputed with the token's own digest algorithm,
        and there is no nonce to compare."""
        try:
            tst_info = token["content"]["encap_content_info"]["content"].parsed
            algorithm = str(tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native)
        except (ValueError, TypeError, KeyError, AttributeError):
            raise TimestampCheckFailure(
                TimestampCheckFailure.INVALID, "dấu thời gian không đúng cấu trúc RFC 3161"
            ) from None
        problem = digest_policy_problem(algorithm)
        if problem:
            raise TimestampCheckFailure(
                TimestampCheckFailure.WEAK_ALGORITHM, f"dấu băm của dấu thời gian: {problem}"
            )
        imprint = hashlib.new(algorithm, data).digest()
        return await self.async_check(
            token, imprint=imprint, md_algorithm=algorithm, nonce=None, now=now
        )


class _TimeStampResp(core.Sequence):
    """RFC 3161 § 2.4.2 TimeStampResp. asn1crypto's ``tsp.TimeStampResp`` declares the token
    mandatory, so a TSA's refusal (a status without a token) would not even parse."""

    _fields = [  # noqa: RUF012 - asn1crypto's declaration style
        ("status", tsp.PKIStatusInfo),
        ("time_stamp_token", cms.ContentInfo, {"optional": True}),
    ]


def granted_token(response: tsp.TimeStampResp) -> cms.ContentInfo:
    """The token of a TSA's answer. Raises :class:`TimestampRequestError` when the TSA refused
    (it may be temporary: a 503), :class:`TimestampCheckFailure` when the answer cannot be read
    or a granted answer has no token."""
    try:
        answer = _TimeStampResp.load(response.dump())
        status = answer["status"]["status"].native
        token = answer["time_stamp_token"]
    except (ValueError, TypeError, KeyError):
        raise TimestampCheckFailure(
            TimestampCheckFailure.INVALID, "phản hồi của máy chủ dấu thời gian không đọc được"
        ) from None
    if status not in ("granted", "granted_with_mods"):
        raise TimestampRequestError(f"Timestamp server refused the request: {status}")
    if not isinstance(token, cms.ContentInfo):
        raise TimestampCheckFailure(
            TimestampCheckFailure.INVALID, "máy chủ dấu thời gian không gửi kèm dấu thời gian"
        )
    return token


class CheckedTimeStamper(TimeStamper):
    """Any :class:`TimeStamper` (``inner``: the pooled HTTP client, a test TSA) whose every token
    — real or pyHanko's dummy for sizing — passes :class:`TokenChecker` before it is returned,
    with a nonce always in the request. pyHanko obtains all tokens through
    :meth:`async_timestamp` (signature timestamps, document timestamps), so nothing unchecked
    reaches a document."""

    def __init__(self, inner: TimeStamper, checker: TokenChecker) -> None:
        super().__init__(include_nonce=True)
        self.inner = inner
        self.checker = checker

    async def async_request_tsa_response(self, req: tsp.TimeStampReq) -> tsp.TimeStampResp:
        try:
            return await self.inner.async_request_tsa_response(req)
        except (ValueError, TypeError, KeyError) as e:  # an answer that does not parse
            raise TimestampCheckFailure(
                TimestampCheckFailure.INVALID, "phản hồi của máy chủ dấu thời gian không đọc được"
            ) from e

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        nonce, req = self.request_cms(message_digest, md_algorithm)
        try:
            token = granted_token(await self.async_request_tsa_response(req))
            await self.checker.async_check(
                token, imprint=message_digest, md_algorithm=md_algorithm, nonce=nonce
            )
        except TimestampCheckFailure as e:
            metrics.tsa_failure(e.reason)
            raise
        except TimestampRequestError as e:
            if e.__cause__ is None and "refused" in str(e):
                metrics.tsa_failure("refused")  # the TSA answered, without a token
            raise
        return token
