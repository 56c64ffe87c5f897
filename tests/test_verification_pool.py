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
