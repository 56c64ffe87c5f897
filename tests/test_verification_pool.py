"""Public verification runs in its own worker processes, within a time and memory budget."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signing_service import errors
from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.services.verification import verify_document
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from tests.conftest import make_settings
from tests.support.pdfs import make_pdf


@pytest.fixture(scope="module")
def many_signatures(dev_pki: tuple[DevPki, int]) -> bytes:
    pki, _ = dev_pki
    key = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    pdf = make_pdf()
    for _ in range(12):
        pdf = asyncio.run(async_sign_pdf(pdf, key, SignOptions(level=SignatureLevel.B_B)))
    return pdf


def build(tmp_path: Path, dev_pki: tuple[DevPki, int], **overrides: Any) -> Services:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", dev_pki, **overrides)
    return Services.build(settings)


@pytest.fixture
def pooled(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> Iterator[Services]:
    services = build(tmp_path, dev_pki)
    yield services
    services.close()


def test_pool_gives_the_same_report_as_in_process(pooled: Services, many_signatures: bytes) -> None:
    isolated = verify_document(pooled, many_signatures, actor="t", isolated=True)
    local = verify_document(pooled, many_signatures, actor="t")
    assert isolated["verdict"] == local["verdict"] == "TOTAL_PASSED"
    assert len(isolated["signatures"]) == 12
    assert _timeless(isolated) == _timeless(local)


def _timeless(report: dict[str, Any]) -> dict[str, Any]:
    """The report without what the two runs may legitimately differ in: the moments, and the
    revocation answers each process fetched (a fresh OCSP answer has its own time)."""
    drop = ("validated_at", "validation_time", "revocation_data")
    out = {k: v for k, v in report.items() if k not in drop}
    out["signatures"] = [
        {k: v for k, v in sig.items() if k not in drop} for sig in report["signatures"]
    ]
    return out


def test_over_the_time_budget_is_refused_and_the_pool_recovers(
    tmp_path: Path, dev_pki: tuple[DevPki, int], many_signatures: bytes
) -> None:
    services = build(tmp_path, dev_pki, verification_timeout_seconds=0.001)
    try:
        with pytest.raises(errors.ServiceError) as info:
            verify_document(services, many_signatures, actor="t", isolated=True)
        assert info.value.code == "VERIFICATION_TIME_LIMIT"
        assert info.value.status == 422
        services.settings.__dict__["verification_timeout_seconds"] = 60.0
        services.verification_pool._timeout = 60.0  # the replacement worker serves the next one
        assert verify_document(services, make_pdf(), actor="t", isolated=True)["verdict"] == (
            "NO_SIGNATURE"
        )
    finally:
        services.close()


def test_over_the_memory_budget_is_refused(
    tmp_path: Path, dev_pki: tuple[DevPki, int], many_signatures: bytes
) -> None:
    services = build(tmp_path, dev_pki, verification_memory_limit_bytes=64 * 1024**2)
    try:
        with pytest.raises(errors.ServiceError) as info:
            verify_document(services, many_signatures, actor="t", isolated=True)
        assert info.value.code == "VERIFICATION_RESOURCE_LIMIT"
    finally:
        services.close()


def test_too_many_waiting_requests_get_503_with_retry_after(
    tmp_path: Path, dev_pki: tuple[DevPki, int], many_signatures: bytes
) -> None:
    services = build(tmp_path, dev_pki, verification_processes=1, verification_max_pending=0)
    try:
        pool = services.verification_pool
        verify_document(services, make_pdf(), actor="t", isolated=True)  # worker is up
        slow = threading.Thread(
            target=verify_document,
            args=(services, many_signatures * 1),
            kwargs={"actor": "t", "isolated": True},
        )
        slow.start()
        deadline = time.monotonic() + 30
        while pool.in_flight == 0 and time.monotonic() < deadline:
            time.sleep(0.001)
        with pytest.raises(errors.ServiceError) as info:
            verify_document(services, make_pdf(), actor="t", isolated=True)
        slow.join()
        assert info.value.code == "VERIFICATION_BUSY"
        assert info.value.status == 503
        assert info.value.headers["Retry-After"] == str(services.settings.retry_after_seconds)
    finally:
        services.close()


def test_a_worker_over_its_resident_memory_bound_is_replaced_after_answering(
    tmp_path: Path, dev_pki: tuple[DevPki, int], many_signatures: bytes
) -> None:
    """Issue 9 (server under 500 MB): what a verification leaves in a worker's heap does not
    stay for good; the request that pushed it over still gets its report, and so does the
    next one (served by the replacement)."""
    services = build(tmp_path, dev_pki, verification_worker_max_rss_bytes=1024**2)
    try:
        pool = services.verification_pool
        first = pool.worker_pids
        assert verify_document(services, many_signatures, actor="t", isolated=True)["verdict"] == (
            "TOTAL_PASSED"
        )
        second = pool.worker_pids
        assert len(second) == 1 and second != first
        assert pool.recycled == 1
        assert verify_document(services, many_signatures, actor="t", isolated=True)["verdict"] == (
            "TOTAL_PASSED"
        )
        assert pool.worker_pids != second
    finally:
        services.close()


def test_a_worker_within_its_resident_memory_bound_is_kept(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    services = build(tmp_path, dev_pki)  # the default bound
    try:
        pool = services.verification_pool
        first = pool.worker_pids
        for _ in range(3):
            verify_document(services, make_pdf(), actor="t", isolated=True)
        assert pool.worker_pids == first
        assert pool.recycled == 0
    finally:
        services.close()


def test_ctrl_c_stops_serve_without_a_worker_traceback(
    tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """New user 14 F6: Ctrl-C on `make run` (SIGINT to the terminal's process group) printed
    a KeyboardInterrupt traceback from the verification worker's ``conn.recv()``. The worker
    leaves SIGINT to the parent, which stops it."""
    import os
    import signal
    import subprocess
    import sys

    import requests

    from tests import conftest
    from tests.support.postgres import free_port

    pki, port = dev_pki
    data_dir = tmp_path / "var"
    data_dir.mkdir()
    env = {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(data_dir),
        "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'metadata.db'}",
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
        "SIGNING_SERVICE_DEV_PKI_SERVE": "false",  # the session's server answers there
        "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(conftest.SOFTHSM_DIR or tmp_path / "no-hsm"),
        "SIGNING_SERVICE_VERIFICATION_PROCESSES": "1",
    }
    api_port = free_port()
    url = f"http://127.0.0.1:{api_port}"
    err = tmp_path / "stderr.log"
    with err.open("wb") as stderr:
        # A session of its own: its process group is what a terminal sends Ctrl-C to.
        proc = subprocess.Popen(
            [sys.executable, "-m", "signing_service.cli", "serve", "--port", str(api_port)],
            env=env,
            cwd=conftest.REPO,
            stdout=stderr,
            stderr=stderr,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, err.read_text()[-3000:]
            assert time.monotonic() < deadline, err.read_text()[-3000:]
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.2)
        # The verification worker is started and has answered: it waits in conn.recv().
        answer = requests.post(
            url + "/v1/verifications",
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
            timeout=60,
        )
        assert answer.status_code == 200, answer.text
        time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    written = err.read_text()
    assert "Shutting down" in written or "Finished server process" in written, written[-3000:]
    assert "Traceback" not in written and "KeyboardInterrupt" not in written, written[-3000:]


def test_the_workers_start_with_the_server(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    """New user 18 #11: the first public verification after a start waited 7.5 s for its
    worker. With ``verification_prewarm`` (the default outside the tests) the worker starts
    with the server, before any verification; without it, on first use."""
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app

    for prewarm in (True, False):
        (tmp_path / str(prewarm)).mkdir()
        services = build(tmp_path / str(prewarm), dev_pki, verification_prewarm=prewarm)
        try:
            with TestClient(create_app(services)) as client:
                assert client.get("/healthz").status_code == 200
                deadline = time.monotonic() + 60
                while prewarm and "verification_pool" not in services._lazy:
                    assert time.monotonic() < deadline, "the workers did not start"
                    time.sleep(0.05)
                if prewarm:
                    pids = services.verification_pool.worker_pids
                    assert pids and all(pid is not None for pid in pids)
                else:
                    time.sleep(0.5)
                    assert "verification_pool" not in services._lazy
        finally:
            services.close()
