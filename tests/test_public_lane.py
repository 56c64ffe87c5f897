"""The public endpoint in its own lane (issue 9, item 7): per-client rate limits that trust
X-Forwarded-For only from the operator's proxies, and anonymous verifications counted per day
and outcome instead of audited one by one; on SQLite and PostgreSQL.

The connection-level limits (header size and time, body time, concurrent anonymous requests,
half-open connections) are measured against a real server in tests/test_server_limits.py."""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signing_service.api.app import create_app
from signing_service.api.edge import TokenBuckets, bucket_key, client_address
from signing_service.services.container import Services
from signing_service.services.counters import VerificationCounter, verification_counts
from tests.conftest import REPO, make_settings
from tests.support.pdfs import make_pdf
from tests.support.state import snapshot

# --- token buckets and client addresses --------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_token_bucket_burst_then_rate() -> None:
    clock = Clock()
    buckets = TokenBuckets(rate_per_minute=6, burst=3, clock=clock)  # one token per 10 s
    assert [buckets.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert buckets.take("a") == pytest.approx(10.0)
    assert buckets.take("b") == 0.0  # another client has its own bucket
    clock.now += 5
    assert buckets.take("a") == pytest.approx(5.0)
    clock.now += 5
    assert buckets.take("a") == 0.0
    clock.now += 3600  # refilled up to the burst, not beyond
    assert [buckets.take("a") for _ in range(4)][-1] > 0


def test_token_buckets_are_bounded() -> None:
    buckets = TokenBuckets(rate_per_minute=1, burst=1, max_clients=100, clock=Clock())
    for n in range(1000):
        buckets.take(f"10.0.{n // 256}.{n % 256}")
    assert len(buckets._buckets) == 100


def scope(peer: str | None, forwarded: str | None = None) -> dict[str, Any]:
    headers = [(b"x-forwarded-for", forwarded.encode())] if forwarded else []
    return {"type": "http", "client": (peer, 5000) if peer else None, "headers": headers}


PROXIES = [ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "client"),
    [
        # No proxy configured: the header is anyone's to write and is ignored.
        ("203.0.113.9", "198.51.100.1", [], "203.0.113.9"),
        ("10.0.0.5", "198.51.100.1", [], "10.0.0.5"),
        # The peer is a trusted proxy: the address it saw.
        ("10.0.0.5", "198.51.100.1", PROXIES, "198.51.100.1"),
        # A client that writes its own header behind the proxy cannot choose its address.
        ("10.0.0.5", "1.2.3.4, 198.51.100.1", PROXIES, "198.51.100.1"),
        # Two trusted proxies in a row.
        ("10.0.0.5", "198.51.100.1, 10.0.0.7", PROXIES, "198.51.100.1"),
        # An untrusted peer's header is ignored even when it names a trusted proxy.
        ("203.0.113.9", "10.0.0.7", PROXIES, "203.0.113.9"),
        # A malformed hop stops the chain at the last believable address.
        ("10.0.0.5", "198.51.100.1, khong-phai-ip", PROXIES, "10.0.0.5"),
        ("fd00::1", "2001:db8::5", PROXIES, "2001:db8::5"),
        ("testclient", None, PROXIES, None),
    ],
)
def test_client_address(
    peer: str, forwarded: str | None, trusted: list[Any], client: str | None
) -> None:
    found = client_address(scope(peer, forwarded), trusted)
    assert (str(found) if found else None) == client


def test_ipv6_clients_share_a_bucket_per_64() -> None:
    a, b = ipaddress.ip_address("2001:db8:1:2::1"), ipaddress.ip_address("2001:db8:1:2:ffff::9")
    assert bucket_key(a) == bucket_key(b) == "2001:db8:1:2::/64"
    assert bucket_key(ipaddress.ip_address("::ffff:192.0.2.1")) == "192.0.2.1"


# --- through the API ---------------------------------------------------------------------


@pytest.fixture
def limited(tmp_path: Path, database_url: str, dev_pki: Any) -> Iterator[tuple[Services, Any]]:
    settings = make_settings(
        tmp_path,
        database_url,
        dev_pki,
        public_rate_per_minute=6,
        public_rate_burst=2,
        trusted_proxies=["10.0.0.0/24"],
    )
    services = Services.build(settings)
    # The worker process is started before the clock matters: a cold start on a loaded machine
    # can outlast a token's refill (10 s at 6 a minute) and let a third request through.
    services.verification_pool.verify(make_pdf(), None)
    app = create_app(services)

    def client(peer: str) -> TestClient:
        return TestClient(app, raise_server_exceptions=False, client=(peer, 40000))

    yield services, client
    services.close()


def verify(client: TestClient, headers: dict[str, str] | None = None) -> Any:
    return client.post(
        "/v1/verifications", files={"file": ("a.pdf", make_pdf())}, headers=headers or {}
    )


def test_rate_limit_answers_429_with_retry_after_and_writes_nothing(
    limited: tuple[Services, Any],
) -> None:
    services, client = limited
    citizen = client("203.0.113.9")
    before = snapshot(services)
    assert [verify(citizen).status_code for _ in range(2)] == [200, 200]
    refused = verify(citizen)
    assert refused.status_code == 429
    body = refused.json()
    assert body["code"] == "RATE_LIMITED" and not body["message"].isascii()
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    assert refused.headers["connection"] == "close"
    # Another client is not affected; an agency's signing is not rate-limited at all.
    assert verify(client("198.51.100.7")).status_code == 200
    after = snapshot(services)
    assert after == before  # counted, not audited: not even an audit entry
    services.verification_counter.flush()
    outcomes = {r["outcome"]: r["count"] for r in verification_counts(services)}
    assert outcomes == {"NO_SIGNATURE": 3, "RATE_LIMITED": 1}


def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    limited: tuple[Services, Any],
) -> None:
    _services, client = limited
    # A client that is not a proxy rotates the header: still one client.
    direct = client("203.0.113.50")
    codes = [verify(direct, {"X-Forwarded-For": f"198.51.100.{n}"}).status_code for n in range(3)]
    assert codes == [200, 200, 429]
    # Behind the operator's proxy, each forwarded client has its own bucket...
    proxy = client("10.0.0.5")
    codes = [
        verify(proxy, {"X-Forwarded-For": f"192.0.2.{n}"}).status_code
        for n in range(3)
        for _ in range(2)
    ]
    assert codes == [200] * 6
    # ...and one of them is limited on its own, whatever it prepends.
    codes = [
        verify(proxy, {"X-Forwarded-For": f"1.1.1.{n}, 192.0.2.0"}).status_code for n in range(2)
    ]
    assert codes == [429, 429]


def test_counter_flushes_periodically_and_adds_up(services: Services) -> None:
    from datetime import datetime, timedelta, timezone

    clock = Clock()
    counter = VerificationCounter(services.db, flush_seconds=60, clock=clock)
    day = datetime(2026, 11, 29, 23, 30, tzinfo=timezone(timedelta(hours=7)))
    counter.add("TOTAL_PASSED", day)
    counter.add("TOTAL_PASSED", day)
    counter.add("TOTAL_FAILED", day + timedelta(hours=1))  # the next day in Vietnam
    clock.now += 61
    counter.add("TOTAL_PASSED", day)  # due: this one flushes all four
    assert counter.pending() == {}
    other_process = VerificationCounter(services.db, flush_seconds=60, clock=clock)
    other_process.add("TOTAL_PASSED", day)
    other_process.flush()
    rows = verification_counts(services)
    assert rows == [
        {"day": "2026-11-30", "outcome": "TOTAL_FAILED", "count": 1},
        {"day": "2026-11-29", "outcome": "TOTAL_PASSED", "count": 4},
    ]


def test_counts_reach_the_table_on_a_quiet_server(services: Services) -> None:
    """Newuser finding 4: counts were written only at the next verification after the flush
    period (or at shutdown), so `verification stats` stayed empty on a quiet server."""
    import time

    from signing_service.services.counters import VerificationCounter, verification_counts

    counter = VerificationCounter(services.db, flush_seconds=0.2)
    try:
        counter.add("NOT_A_PDF")
        deadline = time.monotonic() + 10
        while not verification_counts(services) and time.monotonic() < deadline:
            time.sleep(0.1)  # read as the CLI does: another process, the table only
        assert [r["count"] for r in verification_counts(services)] == [1]
        assert counter.pending() == {}
    finally:
        counter.close()
    assert counter._timer is not None and not counter._timer.is_alive()


def test_anonymous_verifications_are_counted_not_audited(api: Any, services: Services) -> None:
    before = snapshot(services)
    assert api.post("/v1/verifications", files={"file": ("a.pdf", make_pdf())}).status_code == 200
    refused = api.post("/v1/verifications", files={"file": ("a.pdf", b"not a pdf")})
    assert refused.json()["code"] == "NOT_A_PDF"
    assert snapshot(services).audit == before.audit
    services.verification_counter.flush()
    outcomes = {(r["outcome"], r["count"]) for r in verification_counts(services)}
    assert outcomes == {("NO_SIGNATURE", 1), ("NOT_A_PDF", 1)}


def test_verification_stats_command(services: Services, tmp_path: Path) -> None:
    services.verification_counter.add("TOTAL_PASSED")
    services.verification_counter.add("RATE_LIMITED")
    services.verification_counter.add("NOT_A_PDF")
    services.verification_counter.flush()
    settings = services.settings
    env = {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(settings.data_dir),
        "SIGNING_SERVICE_DATABASE_URL": settings.effective_database_url,
        "SIGNING_SERVICE_DEV_PKI_DIR": str(settings.pki_dir),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(settings.dev_pki_port),
    }

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "signing_service.cli", "verification", "stats", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )

    result = run("--json", "--days", "1")
    assert result.returncode == 0, result.stderr
    assert {(r["outcome"], r["count"]) for r in json.loads(result.stdout)} == {
        ("TOTAL_PASSED", 1),
        ("RATE_LIMITED", 1),
        ("NOT_A_PDF", 1),
    }
    result = run()
    assert result.returncode == 0, result.stderr
    assert "HỢP LỆ" in result.stdout and "vượt giới hạn tần suất" in result.stdout
    # Every refusal code in Vietnamese too (newuser finding 5: "NOT_A_PDF (NOT_A_PDF)").
    assert "NOT_A_PDF (bị từ chối: Tệp không phải là tài liệu PDF)" in result.stdout


def test_one_client_holds_at_most_its_share_of_the_anonymous_lane() -> None:
    """Red team (issue 9): slow uploads from two addresses held all 16 anonymous places, and
    everyone else got ANONYMOUS_BUSY. One client (address, IPv6 /64) now has at most
    ``max_per_client`` requests in flight; the next is 429 with Retry-After, others go on."""
    import asyncio

    from signing_service.api.edge import PublicLane

    release = asyncio.Event()

    async def slow_app(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    refused: list[str] = []
    lane = PublicLane(
        slow_app,
        rate_limited=lambda scope: scope["path"] == "/v1/verifications",
        buckets=None,
        max_concurrent=16,
        trusted_proxies=[],
        retry_after=7,
        max_per_client=2,
        on_refused=refused.append,
    )

    async def request(peer: str) -> tuple[int, dict[bytes, bytes]]:
        scope = {
            "type": "http",
            "method": "POST",
            "path": "/v1/verifications",
            "headers": [],
            "client": (peer, 40000),
        }
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await lane(scope, receive, send)
        start = next(m for m in sent if m["type"] == "http.response.start")
        return start["status"], dict(start.get("headers", []))

    async def scenario() -> list[tuple[int, dict[bytes, bytes]]]:
        held = [asyncio.create_task(request("203.0.113.9")) for _ in range(2)]
        await asyncio.sleep(0.05)
        third = await asyncio.wait_for(request("203.0.113.9"), 5)  # answered at once
        other = asyncio.create_task(request("198.51.100.7"))
        await asyncio.sleep(0.05)
        assert not other.done()  # admitted, waiting like the first two
        release.set()
        return [third, *[await t for t in held], await other]

    third, first, second, other = asyncio.run(scenario())
    assert third[0] == 429 and third[1][b"retry-after"] == b"7"
    assert (first[0], second[0], other[0]) == (200, 200, 200)
    assert refused == ["RATE_LIMITED"]
    assert lane.per_client == {} and lane.in_flight == 0


def test_public_registry_lookup_spends_a_rate_token(limited: tuple[Services, Any]) -> None:
    """Red team 11 F10: the anonymous ``GET /v1/registry/{id}`` is in the public rate bucket,
    as the page's uploads are (its OpenAPI lists 429)."""
    _services, client = limited
    citizen = client("203.0.113.77")
    codes = [citizen.get(f"/v1/registry/{'a' * 26}").status_code for _ in range(3)]
    assert codes == [404, 404, 429]
