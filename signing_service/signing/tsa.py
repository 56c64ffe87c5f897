"""RFC 3161 client for signing (signature timestamps and B-LTA document timestamps).

pyHanko's default HTTP timestamper (aiohttp) opens a new client session for every event loop,
and the service runs one short event loop per request in a worker thread: ~13 ms of CPU per
timestamp spent on session set-up alone. This client keeps one pooled ``requests`` session per
worker thread and blocks that thread, which is what the worker thread is for.
"""

from __future__ import annotations

import threading

import requests
from asn1crypto import tsp
from pyhanko.sign.timestamps.api import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError, set_tsp_headers


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
        return tsp.TimeStampResp.load(response.content)
