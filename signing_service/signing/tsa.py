"""RFC 3161 client for signing (signature timestamps and B-LTA document timestamps).

pyHanko's default HTTP timestamper (aiohttp) opens a new client session for every event loop,
and the service runs one short event loop per request in a worker thread: ~13 ms of CPU per
timestamp spent on session set-up alone. This client keeps one pooled ``requests`` session per
worker thread and blocks that thread, which is what the worker thread is for.

It also remembers the size of the tokens each TSA returns (:func:`token_size`), so that the
space reserved for a timestamped signature fits the token instead of a fixed guess.
"""

from __future__ import annotations

import threading

import requests
from asn1crypto import cms, tsp
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError, set_tsp_headers

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
    digest algorithm). Raises :class:`TimestampRequestError` when the TSA cannot be reached.
    """
    if isinstance(timestamper, PooledHTTPTimeStamper):
        known = learnt_token_size(timestamper.url, md_algorithm)
        if known is not None:
            return known
        # pyHanko caches the dummy per instance, and the request records its size.
        token = await timestamper.async_dummy_response(md_algorithm)
        return learnt_token_size(timestamper.url, md_algorithm) or len(token.dump())
    token = await timestamper.async_dummy_response(md_algorithm)
    return len(token.dump())


class PooledHTTPTimeStamper(TimeStamper):
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
        try:
            response = self._session().post(
                self.url, req.dump(), headers=set_tsp_headers({}), timeout=self.timeout
            )
        except (OSError, requests.RequestException) as e:
            raise TimestampRequestError("Error in communication with timestamp server") from e
        if response.headers.get("Content-Type") != "application/timestamp-reply":
            raise TimestampRequestError("Timestamp server response is malformed.", response)
        answer = tsp.TimeStampResp.load(response.content)
        try:
            token = answer["time_stamp_token"]  # absent (Void) when the TSA refuses
            if isinstance(token, cms.ContentInfo):
                md = req["message_imprint"]["hash_algorithm"]["algorithm"].native
                _record_token_size(self.url, md, len(token.dump()))
        except (ValueError, KeyError, TypeError):
            pass  # a malformed answer is pyHanko's to reject (TimestampRequestError)
        return answer
