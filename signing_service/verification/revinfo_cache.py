"""Revocation answers (OCSP responses, CRLs) fetched once and reused across requests.

pyhanko-certvalidator's fetchers cache what they fetch for the life of one fetcher object, i.e.
one validation. A public verifier that builds a fresh context per request (or per signature)
asks the responder again for every signature of every upload: 50 fetches for a 25-signature
file, and a slow or unreachable responder then costs its timeout each time. This module keeps
each answer for as long as it is valid (until its ``nextUpdate``, capped by ``max_age``), shares it
between requests and threads of one process, and remembers failures for a short while
(``failure_age``) so an unreachable responder cannot be used to slow every request down.

Only the fetching is cached, never the judgement: every validation still checks the answer's
signature, its freshness against the validation time, and what it says.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import requests
from asn1crypto import crl, ocsp, pem
from asn1crypto.core import Asn1Value
from pyhanko_certvalidator import errors as cv_errors
from pyhanko_certvalidator.fetchers.api import Fetchers, FetchLimits
from pyhanko_certvalidator.fetchers.common_utils import FetchBudget
from pyhanko_certvalidator.fetchers.requests_fetchers import RequestsFetcherBackend
from pyhanko_certvalidator.fetchers.requests_fetchers.cert_fetch_client import (
    RequestsCertificateFetcher,
)
from pyhanko_certvalidator.fetchers.requests_fetchers.crl_client import RequestsCRLFetcher
from pyhanko_certvalidator.fetchers.requests_fetchers.ocsp_client import RequestsOCSPFetcher
from pyhanko_certvalidator.util import issuer_serial

from signing_service import metrics
from signing_service._asn1 import check_der_shape, parse_completely

log = logging.getLogger(__name__)


@dataclass
class _Entry:
    value: Any  # a response, or the exception a fetch raised
    expires: float  # time.monotonic()


# Seconds an answer WITHOUT nextUpdate is reused. RFC 6960 §2.4: without it, "newer
# revocation information is available all the time" — reusing it for an hour let a signer
# check pass for ~35 minutes after a revocation was published, and then served a stale answer
# that certvalidator refuses (30 min freshness) for the rest of the hour (red team 19b,
# R19B-3). A minute still spares a responder one request per verification.
NO_NEXT_UPDATE_SECONDS = 60.0


@dataclass
class RevocationCache:
    """Fetched revocation answers by key, each kept until it stops being valid.

    ``max_age``: seconds an answer is reused at most, even when its ``nextUpdate`` is later.
    ``failure_age``: seconds a failed fetch is remembered (the error is re-raised meanwhile).
    """

    max_age: float = 3600.0
    failure_age: float = 30.0
    _entries: dict[Any, _Entry] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    hits: int = 0
    misses: int = 0

    def get(self, key: Any) -> Any:
        """The cached answer, raising the cached failure; ``KeyError`` when absent/expired."""
        now = time.monotonic()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or entry.expires <= now:
                self._entries.pop(key, None)
                self.misses += 1
                raise KeyError(key)
            self.hits += 1
        if isinstance(entry.value, BaseException):
            raise entry.value
        return entry.value

    def put(self, key: Any, value: Any, valid_until: datetime | None) -> None:
        """Keep ``value`` until ``valid_until`` (its nextUpdate), at most ``max_age`` seconds;
        without a nextUpdate (``None``), at most :data:`NO_NEXT_UPDATE_SECONDS`."""
        if valid_until is None:
            ttl = min(self.max_age, NO_NEXT_UPDATE_SECONDS)
        else:
            ttl = min(self.max_age, (valid_until - datetime.now(UTC)).total_seconds())
        if ttl <= 0:
            return
        # Shared with every concurrent request from now on: parsed whole here, on the thread
        # that fetched it, so that no two threads fill in asn1crypto's lazy parts at once.
        if isinstance(value, Asn1Value):
            parse_completely(value)
        with self._lock:
            self._entries[key] = _Entry(value, time.monotonic() + ttl)
            if len(self._entries) > 10_000:  # bounded: drop the oldest half
                for stale in sorted(self._entries, key=lambda k: self._entries[k].expires)[:5_000]:
                    del self._entries[stale]

    def put_failure(self, key: Any, error: BaseException) -> None:
        with self._lock:
            self._entries[key] = _Entry(error, time.monotonic() + self.failure_age)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def _crl_next_update(value: crl.CertificateList) -> datetime | None:
    try:
        next_update = value["tbs_cert_list"]["next_update"].native
    except (KeyError, ValueError):
        return None
    return next_update if isinstance(next_update, datetime) else None


def _ocsp_next_update(value: ocsp.OCSPResponse) -> datetime | None:
    try:
        data = value["response_bytes"]["response"].parsed["tbs_response_data"]
        updates = [r["next_update"].native for r in data["responses"]]
    except (KeyError, ValueError, TypeError):
        return None
    dated = [u for u in updates if isinstance(u, datetime)]
    return min(dated) if dated else None


MAX_CRL_BYTES = 16 * 1024 * 1024
"""Largest CRL accepted from a distribution point. A CA's CRL is usually well under this; one
of 3.4 MB already costs about 2 s of CPU and 120 MB to read and check (red team 15b, R5)."""
MAX_OCSP_BYTES = 1024 * 1024
"""Largest OCSP response accepted (a real one is a few KB)."""


class _BoundedBodies:
    """pyhanko-certvalidator's ``_get``/``_post`` (requests_fetchers/util.py) with bounds: the
    whole exchange within ``2 × per_request_timeout`` (a server dripping a byte every two
    seconds held a signing thread for minutes: requests' timeout is per read, red team 15b R3),
    at most ``max_bytes``, and the answer's DER shape checked
    (:func:`signing_service._asn1.check_der_shape`) before anything parses it (a hostile
    answer nested thousands deep made asn1crypto recurse until RecursionError, a 500 before
    every signature with that CA's keys, and grow the process by gigabytes: red team 15,
    F4/F8). A refusal is a ``requests.RequestException``, which certvalidator's fetchers turn
    into their fetch error: an unreachable source, revocation unknown, remembered for
    ``failure_age``. Asynchronous (httpx): a cancelled wait closes the connection, no thread
    is left blocked on a socket."""

    max_bytes: int
    per_request_timeout: float
    user_agent: str
    follow_redirects: bool = True

    def _charge(self, kind: Any) -> None:
        """The request budget of one verification (FetchLimits), as certvalidator charges it,
        with its refusal marked: a refusal by this verification's budget says nothing about
        the responder and is never remembered as its failure in the shared cache — else one
        upload that used up its budget would stop every verification of the next
        ``failure_age`` seconds from fetching that CA's CRL (red team 18 R18-2)."""
        try:
            super()._charge(kind)  # type: ignore[misc]
        except Exception as e:
            e.budget_refusal = True  # type: ignore[attr-defined]
            raise

    async def _bounded(
        self, method: str, url: str, headers: dict[str, str], data: bytes | None
    ) -> httpx.Response:
        try:
            async with asyncio.timeout(2 * self.per_request_timeout):
                async with (
                    httpx.AsyncClient(
                        timeout=self.per_request_timeout,
                        follow_redirects=self.follow_redirects,
                        max_redirects=3,
                    ) as client,
                    client.stream(method, url, headers=headers, content=data) as response,
                ):
                    if response.status_code != 200:
                        raise requests.RequestException(f"status code {response.status_code}")
                    body = bytearray()
                    async for chunk in response.aiter_bytes():
                        body += chunk
                        if len(body) > self.max_bytes:
                            raise requests.RequestException(
                                f"answer from {url} larger than {self.max_bytes} bytes"
                            )
        except TimeoutError:
            raise requests.RequestException(f"answer from {url} took too long") from None
        except httpx.HTTPError as e:
            raise requests.RequestException(f"fetching {url} failed: {e!r}") from None
        content = bytes(body)
        try:
            # A CRL may come PEM-armoured (certvalidator unarmours it): the DER inside.
            check_der_shape(pem.unarmor(content)[2] if pem.detect(content) else content)
        except ValueError as e:
            log.warning("revocation answer from %s refused: %s", url, e)
            raise requests.RequestException(f"answer from {url} cannot be used: {e}") from None
        response._content = content
        return response

    async def _get(self, url: str, *, acceptable_content_types: Any) -> httpx.Response:
        headers = {"Accept": ",".join(acceptable_content_types), "User-Agent": self.user_agent}
        return await self._bounded("GET", url, headers, None)

    async def _post(
        self, url: str, data: bytes, *, content_type: str, acceptable_content_types: Any
    ) -> httpx.Response:
        headers = {
            "Accept": ",".join(acceptable_content_types),
            "User-Agent": self.user_agent,
            "Content-Type": content_type,
        }
        return await self._bounded("POST", url, headers, data)


def _library_error(error: Exception) -> bool:
    """An error of pyhanko-certvalidator's own (e.g. ``OCSPValidationError`` for a responder
    answering "unauthorized"): the library handles it as it decides, never re-labelled."""
    return type(error).__module__.startswith("pyhanko_certvalidator")


def _as_fetch_error(kind: type[Exception], source: str, error: Exception) -> Exception:
    """A failure of a fetch that is not one of the library's own (pyhanko-certvalidator's
    requests fetchers turn only ``ValueError`` and ``requests.RequestException`` into
    ``CRLFetchError`` / ``OCSPFetchError``): any other exception escaped validation and was
    reported as an unreadable signature, a false "forged" verdict for a genuine document
    (red team 14 F1). A revocation source that fails is an unreachable one: revocation
    unknown (ETSI EN 319 102-1 INDETERMINATE / TRY_LATER), whatever the backend. Not cached:
    the fault is ours, not the responder's answer."""
    log.warning("revocation fetch from %s failed: %r", source, error)
    return kind(f"Fetching from {source} failed: {error!r}")


class _CachingCRLFetcher(_BoundedBodies, RequestsCRLFetcher):
    max_bytes = MAX_CRL_BYTES

    def __init__(self, cache: RevocationCache, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache = cache

    async def _fetch_single(self, url: str) -> crl.CertificateList:  # type: ignore[override]
        key = ("crl", url)

        async def fetch_or_reuse() -> crl.CertificateList:
            try:
                return self._cache.get(key)  # type: ignore[no-any-return]
            except KeyError:
                pass
            began = time.perf_counter()
            try:
                fetched = await super(_CachingCRLFetcher, self)._fetch_single(url)
            except cv_errors.CRLFetchError as e:
                if getattr(e, "budget_refusal", False):
                    raise
                metrics.observe_revocation_fetch("crl", time.perf_counter() - began, False)
                self._cache.put_failure(key, e)
                raise
            except Exception as e:  # see _as_fetch_error
                if _library_error(e):
                    raise
                metrics.observe_revocation_fetch("crl", time.perf_counter() - began, False)
                raise _as_fetch_error(cv_errors.CRLFetchError, url, e) from e
            metrics.observe_revocation_fetch("crl", time.perf_counter() - began, True)
            self._cache.put(key, fetched, _crl_next_update(fetched))
            return fetched

        # Registered under its own tag so that a reused answer, like a fetched one, counts
        # among this fetcher's results (``fetched_crls``), which later validations reuse.
        return await self._perform_fetch(key, fetch_or_reuse)  # type: ignore[no-any-return]


class _CachingOCSPFetcher(_BoundedBodies, RequestsOCSPFetcher):
    max_bytes = MAX_OCSP_BYTES

    def __init__(self, cache: RevocationCache, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cache = cache

    async def fetch(self, cert, authority):  # type: ignore[no-untyped-def]
        tag = (issuer_serial(cert), authority.hashable)  # the parent's tag: results are read by it
        key = ("ocsp", *tag)

        async def fetch_or_reuse() -> ocsp.OCSPResponse:
            try:
                return self._cache.get(key)  # type: ignore[no-any-return]
            except KeyError:
                pass
            began = time.perf_counter()
            try:
                fetched = await self._fetch(cert, authority)
            except cv_errors.OCSPFetchError as e:
                if getattr(e, "budget_refusal", False):
                    raise
                metrics.observe_revocation_fetch("ocsp", time.perf_counter() - began, False)
                self._cache.put_failure(key, e)
                raise
            except Exception as e:  # see _as_fetch_error
                if _library_error(e):
                    raise
                metrics.observe_revocation_fetch("ocsp", time.perf_counter() - began, False)
                raise _as_fetch_error(cv_errors.OCSPFetchError, "OCSP", e) from e
            metrics.observe_revocation_fetch("ocsp", time.perf_counter() - began, True)
            self._cache.put(key, fetched, _ocsp_next_update(fetched))
            return fetched

        return await self._perform_fetch(tag, fetch_or_reuse)


MAX_ISSUER_CERT_BYTES = 64 * 1024
"""Largest answer accepted from a caIssuers URL (a CA certificate, or a certs-only PKCS#7 of a
few: a few KB)."""
MAX_ISSUER_CERT_REQUESTS = 4
"""caIssuers requests one validation may make (cached answers are not counted): two missing
levels of a chain, two URLs each."""


def _normalised(url: str) -> tuple[str, str, int, str] | None:
    """``(scheme, host, port, path)`` of an http(s) URL, lower-cased scheme and host, the
    port made explicit; ``None`` for anything else: another scheme, user information, no
    host, a malformed port, a ``..`` segment, a backslash, whitespace or a control
    character."""
    from urllib.parse import unquote, urlsplit

    # Brackets too: urlsplit reads "http://evil.com[ca.vn]/" as the host "ca.vn", httpx as
    # another (red team 23c, R23C-6); an IPv6 literal is not a CA's publication point.
    if any(c.isspace() or ord(c) < 0x20 or c in "\\[]" for c in url):
        return None
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname or parts.username is not None:
        return None
    if parts.password is not None or parts.fragment:
        return None
    path = parts.path or "/"
    if ".." in unquote(path).split("/"):
        return None
    return scheme, parts.hostname.lower(), port or (443 if scheme == "https" else 80), path


def issuer_url_allowed(url: str, allowed_prefixes: tuple[str, ...]) -> bool:
    """Whether ``url`` (an AIA caIssuers URL read from a certificate) lies under one of the
    operator's ``allowed_prefixes`` (``SIGNING_SERVICE_CA_ISSUER_URLS``): same scheme, host
    and port, and its path starts with the prefix's path (compared after normalising both,
    :func:`_normalised`; a prefix path that does not end in ``/`` matches only that path or
    what follows a ``/`` after it)."""
    target = _normalised(url)
    if target is None:
        return False
    for prefix in allowed_prefixes:
        allowed = _normalised(prefix)
        if allowed is None or allowed[:3] != target[:3]:
            continue
        base = allowed[3]
        if base.endswith("/"):
            if target[3].startswith(base):
                return True
        elif target[3] == base or target[3].startswith(base + "/"):
            return True
    return False


class _AllowlistedCertificateFetcher(_BoundedBodies, RequestsCertificateFetcher):
    """Issuer certificates fetched from AIA caIssuers URLs, only those under the operator's
    allowlist (:func:`issuer_url_allowed`; anything else is never requested), bounded like the
    revocation fetches (:class:`_BoundedBodies`: total time, :data:`MAX_ISSUER_CERT_BYTES`, DER
    shape), redirects not followed (a listed server must not send the service elsewhere), and
    kept in ``cache`` (an hour; a failure for ``failure_age``). What is fetched is only
    material for building a path: it is trusted only if it chains to an anchor like any
    certificate a document carries (RFC 5280 §4.2.2.1, ETSI EN 319 102-1 §5.2.3)."""

    max_bytes = MAX_ISSUER_CERT_BYTES
    follow_redirects = False

    def __init__(
        self, cache: RevocationCache, allowed: tuple[str, ...], *args: Any, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self._cache = cache
        self._allowed = allowed

    def _listed(self, urls: Any) -> list[str]:
        listed = [u for u in urls if issuer_url_allowed(u, self._allowed)]
        for url in urls:
            if url not in listed:
                log.warning("caIssuers URL %r is not under SIGNING_SERVICE_CA_ISSUER_URLS", url)
        return listed

    def fetch_cert_issuers(self, cert: Any) -> Any:
        from pyhanko_certvalidator.fetchers.common_utils import (
            cap_aia_urls,
            complete_certificate_fetch_jobs,
            gather_aia_issuer_urls,
        )

        urls = self._listed(cap_aia_urls(self._budget, gather_aia_issuer_urls(cert)))
        return complete_certificate_fetch_jobs(
            [self.fetch_certs(url, url_origin_type="certificate") for url in urls]
        )

    def fetch_crl_issuers(self, certificate_list: Any) -> Any:
        from pyhanko_certvalidator.fetchers.common_utils import (
            cap_aia_urls,
            complete_certificate_fetch_jobs,
        )

        urls = self._listed(cap_aia_urls(self._budget, certificate_list.issuer_cert_urls))
        return complete_certificate_fetch_jobs(
            [self.fetch_certs(url, url_origin_type="CRL") for url in urls]
        )

    async def fetch_certs(self, url: str, url_origin_type: str) -> Any:
        if not issuer_url_allowed(url, self._allowed):
            raise cv_errors.CertificateFetchError(f"{url} is not an allowed caIssuers URL")
        key = ("cert", url)
        try:
            return self._cache.get(key)
        except KeyError:
            pass
        except cv_errors.CertificateFetchError:
            raise
        try:
            certs = await super().fetch_certs(url, url_origin_type)
        except cv_errors.CertificateFetchError as e:
            if not getattr(e, "budget_refusal", False):
                # Said in the log: the report can only say "no chain" (new user 23 #6).
                log.warning("caIssuers fetch from %s failed: %s", url, e)
                self._cache.put_failure(key, e)
            raise
        except Exception as e:  # see _as_fetch_error: an unreachable source, not a crash
            if _library_error(e):
                raise
            raise _as_fetch_error(cv_errors.CertificateFetchError, url, e) from e
        certs = list(certs)
        self._cache.put(key, certs, datetime.now(UTC) + timedelta(hours=1))
        return certs


class CachingFetcherBackend(RequestsFetcherBackend):
    """A certvalidator fetcher backend whose OCSP and CRL answers come from ``cache``.

    Issuer certificates are fetched only from AIA caIssuers URLs under the operator's
    ``ca_issuer_urls`` (``SIGNING_SERVICE_CA_ISSUER_URLS``), at most
    :data:`MAX_ISSUER_CERT_REQUESTS` a validation (:class:`_AllowlistedCertificateFetcher`);
    with no allowlist, never (``max_cert_requests=0``). The URLs come from the uploaded,
    untrusted document: followed freely, they would let anyone make the service fetch
    arbitrary addresses. Revocation sources are only consulted by certvalidator for
    certificates on a path that already chains to a trust anchor.
    """

    def __init__(
        self,
        cache: RevocationCache,
        per_request_timeout: float = 5.0,
        *,
        ca_issuer_urls: tuple[str, ...] = (),
    ) -> None:
        self.ca_issuer_urls = tuple(ca_issuer_urls)
        super().__init__(
            per_request_timeout=per_request_timeout,
            limits=FetchLimits(
                max_requests=20,
                max_cert_requests=MAX_ISSUER_CERT_REQUESTS if self.ca_issuer_urls else 0,
                max_aia_urls_per_object=2,
            ),
        )
        self.cache = cache

    def get_fetchers(self) -> Fetchers:
        budget = FetchBudget(self.limits)
        timeout = self.per_request_timeout
        return Fetchers(
            ocsp_fetcher=_CachingOCSPFetcher(
                self.cache, per_request_timeout=timeout, budget=budget
            ),
            crl_fetcher=_CachingCRLFetcher(self.cache, per_request_timeout=timeout, budget=budget),
            cert_fetcher=_AllowlistedCertificateFetcher(
                self.cache, self.ca_issuer_urls, per_request_timeout=timeout, budget=budget
            ),
        )


REVOCATION_CACHE = RevocationCache()
"""The process-wide cache: verification and the checks before signing share it."""
