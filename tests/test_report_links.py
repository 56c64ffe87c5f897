"""The page's "Tải báo cáo PDF" links (issue 11 fixes, red team F2, F3, F9, F12; new user 11):
kept in the database so every worker process serves them, never evicted by a flood (a full
store shows no button, with a sentence why), rendered, sealed and timestamped once per link
(later GETs serve the same bytes), in a bounded lane (one render at a time, a few waiting, then
503 ``REPORT_BUSY``), and saying what the page said (the QR comparison included)."""

from __future__ import annotations

import asyncio
import hashlib
import re
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient
from sqlalchemy import select

from signing_service import errors
from signing_service.api.app import create_app
from signing_service.pki.dev import DevPki
from signing_service.reporting.lane import RenderLane
from signing_service.services.container import Services
from signing_service.store.models import ReportLink
from signing_service.web.routes import STORE_FULL_NOTE
from signing_service.web.store import ReportStore
from tests import conftest
from tests.support.pdfs import make_pdf
from tests.support.server import ServiceProcess
from tests.test_web_page import build, post, signed_pdf

LINK = re.compile(r'href="(/xac-minh/bao-cao/[A-Za-z0-9_-]{32}\.pdf)"')
needs_poppler = pytest.mark.skipif(
    not shutil.which("pdftotext"), reason="poppler-utils not installed (make test installs it)"
)


@pytest.fixture
def site(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> Iterator[tuple[TestClient, Services]]:
    services = build(tmp_path, dev_pki, public_rate_per_minute=0)
    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client, services
    services.close()


def _text(pdf: bytes, tmp_path: Path) -> str:
    path = tmp_path / "r.pdf"
    path.write_bytes(pdf)
    out = subprocess.run(
        ["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True, timeout=60
    )
    return re.sub(r"\s+", " ", out.stdout.decode())


def test_store_bounds_never_evict_a_live_link(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    services = build(tmp_path, dev_pki)
    try:
        store = ReportStore(services.db, max_items=3, max_bytes=100, ttl_seconds=60)
        tokens = [store.put(b"x" * 10) for _ in range(5)]
        # Full: the later ones get no link; the earlier ones stay (F3).
        assert all(tokens[:3]) and tokens[3:] == [None, None]
        assert len(store) == 3
        for token in tokens[:3]:
            found = store.get(token or "")
            assert found is not None and found.entry == b"x" * 10 and found.pdf is None
        # The byte bound: 30 held, 71 more do not fit.
        roomy = ReportStore(services.db, max_items=10, max_bytes=100, ttl_seconds=60)
        assert roomy.put(b"y" * 71) is None and roomy.put(b"y" * 70)
        assert store.get("../../etc/passwd") is None
        # The table holds the token's hash only.
        with services.db.transaction() as session:
            digests = set(session.scalars(select(ReportLink.token_sha256)))
        assert tokens[0] not in digests
        assert hashlib.sha256((tokens[0] or "").encode()).hexdigest() in digests
        # Expired links are gone for readers at once and deleted by the next put.
        short = ReportStore(services.db, max_items=10, max_bytes=10_000, ttl_seconds=0)
        gone = short.put(b"{}")
        time.sleep(0.01)
        assert gone and short.get(gone) is None
        assert short.put(b"{}")
        with services.db.transaction() as session:
            left = set(session.scalars(select(ReportLink.token_sha256)))
        assert hashlib.sha256(gone.encode()).hexdigest() not in left
        # The live ones were kept.
        assert short.get(tokens[0] or "") is not None
    finally:
        services.close()


def test_the_render_lane_refuses_beyond_its_queue() -> None:
    """One job at a time, ``queue`` waiting, the next refused at once with REPORT_BUSY."""
    lane = RenderLane(concurrency=1, queue=1)

    async def scenario() -> list[str]:
        release = asyncio.Event()
        order: list[str] = []

        async def job(name: str) -> str:
            order.append(f"start {name}")
            await release.wait()
            order.append(f"end {name}")
            return name

        first = asyncio.create_task(lane.run(lambda: job("a")))
        second = asyncio.create_task(lane.run(lambda: job("b")))
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        with pytest.raises(errors.ReportBusy) as refused:
            await lane.run(lambda: job("c"))
        assert refused.value.status == 503
        assert "thử lại" in refused.value.message
        release.set()
        assert await first == "a" and await second == "b"
        return order

    # "b" starts only after "a" ended: one render at a time.
    assert asyncio.run(scenario()) == ["start a", "end a", "start b", "end b"]


@needs_poppler
def test_a_link_is_rendered_once_and_says_what_the_page_said(
    site: tuple[TestClient, Services], tmp_path: Path
) -> None:
    client, services = site
    document, _ = signed_pdf(client, services, "Giay xac nhan so 51")
    _, other_id = signed_pdf(client, services, "Giay xac nhan so 52")
    # Uploaded from another document's QR page: the page says Không hợp lệ (F9).
    page = post(client, document, ma=other_id)
    assert page.status_code == 200 and "Không hợp lệ" in page.text
    link = LINK.search(page.text)
    assert link, page.text[:2000]
    first = client.get(link.group(1))
    assert first.status_code == 200, first.text[:500]
    digest = hashlib.sha256(document).hexdigest()
    # One name on both paths (new user 11).
    assert first.headers["content-disposition"] == (
        f'attachment; filename="bao-cao-xac-minh-{digest[:16]}.pdf"'
    )
    # Sealed and timestamped once: a second render would carry another signature and another
    # TSA token, so other bytes (F2).
    for _ in range(3):
        again = client.get(link.group(1))
        assert again.status_code == 200 and again.content == first.content
    text = _text(first.content, tmp_path)
    assert "Kết quả: Không hợp lệ" in text
    assert "Đối chiếu với mã QR" in text and other_id in text
    assert "KHÔNG phải văn bản mà mã QR này chỉ tới" in text
    assert "tệp không khớp với văn bản mà mã QR chỉ tới" in text


def test_a_full_store_shows_no_button_and_keeps_the_others(
    site: tuple[TestClient, Services],
) -> None:
    client, services = site
    # The application's store, with a small count bound (the same class, its own table).
    client.app.state.web_reports = ReportStore(services.db, max_items=2)  # type: ignore[attr-defined]
    victim = LINK.search(post(client, make_pdf("victim")).text)
    assert victim
    assert LINK.search(post(client, make_pdf("second")).text)
    flood = [post(client, make_pdf(f"flood {i}")) for i in range(3)]
    for page in flood:
        assert page.status_code == 200
        assert not LINK.search(page.text) and "Tải báo cáo PDF" not in page.text
        assert STORE_FULL_NOTE.split(";")[0][:40] in page.text
    answer = client.get(victim.group(1))
    assert answer.status_code == 200 and answer.content.startswith(b"%PDF-")


def test_links_work_across_two_worker_processes(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """README's production ``serve --workers 2``: every link works on a new connection (F12:
    8/8 answered "Báo cáo đã hết hạn" when the store was in one process's memory)."""
    pki, port = dev_pki
    env = {
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'metadata.db'}",
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
        "SIGNING_SERVICE_DEV_PKI_SERVE": "false",
        "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(conftest.SOFTHSM_DIR or tmp_path / "no-hsm"),
        "SIGNING_SERVICE_PUBLIC_RATE_PER_MINUTE": "0",
        "SIGNING_SERVICE_MAX_ANONYMOUS_REQUESTS_PER_CLIENT": "0",
        "SIGNING_SERVICE_VERIFICATION_PROCESSES": "0",
    }
    server = ServiceProcess(env, tmp_path / "server.log").start(SIGNING_SERVICE_WORKERS="2")
    try:
        served: list[bytes] = []
        for i in range(6):
            # requests without a Session: a new connection for every request.
            page = requests.post(
                server.url + "/xac-minh",
                files={"file": ("t.pdf", make_pdf(f"citizen {i}"), "application/pdf")},
                timeout=60,
            )
            assert page.status_code == 200, page.text[:500]
            link = LINK.search(page.text)
            assert link, page.text[:2000]
            answers = [requests.get(server.url + link.group(1), timeout=60) for _ in range(2)]
            for answer in answers:
                assert answer.status_code == 200, answer.text[:500]
                assert answer.headers["content-type"] == "application/pdf"
            # Whichever worker answered, the same sealed bytes.
            assert answers[0].content == answers[1].content
            served.append(answers[0].content)
        assert len(set(served)) == len(served)
        # Two worker processes really served (one would pass the checks above trivially).
        log = (tmp_path / "server.log").read_text()
        assert len(set(re.findall(r"Started server process \[(\d+)\]", log))) == 2, log[-2000:]
    finally:
        server.stop()


def test_the_services_own_report_is_recognised_on_the_page(
    site: tuple[TestClient, Services],
) -> None:
    """F13: the sealed report, checked on the page, is named a verification report sealed by
    this service (not "không được cấp qua dịch vụ này … hãy hỏi cơ quan ban hành"), its seal an
    organisation's seal."""
    client, services = site
    document, _ = signed_pdf(client, services, "Giay xac nhan so 61")
    report = client.post(
        "/v1/verifications",
        params={"format": "pdf"},
        files={"file": ("giay.pdf", document, "application/pdf")},
    )
    assert report.status_code == 200, report.text[:500]
    page = post(client, report.content, "bao-cao.pdf")
    assert page.status_code == 200
    html = re.sub(r"\s+", " ", page.text)
    assert "Đây là báo cáo kết quả xác minh do Dịch vụ xác minh chữ ký số lập" in html, html
    assert "không được cấp qua dịch vụ này" not in html
    assert "Chữ ký số của cơ quan, tổ chức (con dấu số)" in html
    assert "không xác định được là của cá nhân hay cơ quan" not in html
    # Another file sealed validly is not taken for a report: the document itself.
    html = re.sub(r"\s+", " ", post(client, document).text)
    assert "báo cáo kết quả xác minh do" not in html
