"""``GET /metrics`` (issue 13 item 1): scraped through the real application before and after
real work, every family moves; label values stay bounded; only the operator's key reads it.

Real parts only: the dev PKI's TSA, OCSP responder and CRLs on loopback, the service's own
database and object store. The failures are real too: a TSA address where nothing listens, an
object store whose directory has become a file, a statement the database refuses, revocation
sources where nothing listens.
"""

from __future__ import annotations

import asyncio
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from signing_service import metrics
from signing_service.pki.dev import DevPki
from signing_service.services.accounts import create_operator_key
from signing_service.services.container import Services
from signing_service.verification.revinfo_cache import (
    REVOCATION_CACHE,
    CachingFetcherBackend,
    RevocationCache,
)
from tests.conftest import make_settings
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Any, operator: str) -> Samples:
    """Every sample of ``GET /metrics``, by (sample name, labels)."""
    answer = api.get("/metrics", headers={"Authorization": f"Bearer {operator}"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"].startswith("text/plain")
    samples: Samples = {}
    for family in text_string_to_metric_families(answer.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return total(after, name, **labels) - total(before, name, **labels)


@pytest.fixture
def observed(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]
) -> Iterator[tuple[Services, Any, dict[str, Any], str]]:
    """The service with one extra TSA, ``tat``, at an address where nothing listens (the
    dev PKI's stays the default); its test client, the dev credentials and an operator key."""
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app

    dead = f"http://127.0.0.1:{free_port()}/tsa"
    settings = make_settings(tmp_path, database_url, dev_pki, tsas={"tat": dead}, default_tsa="dev")
    services = Services.build(settings)
    credentials = json.loads(settings.dev_credentials_file.read_text())
    operator = create_operator_key(services, "Trực vận hành", actor="cli").api_key
    try:
        with TestClient(create_app(services), raise_server_exceptions=False) as api:
            yield services, api, credentials, operator
    finally:
        services.close()
        metrics.set_queue_probe(None)


def _client(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def _admin(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['admin_api_key']}"}


def _sign(api: Any, credentials: dict[str, Any], level: str = "B-T") -> Any:
    return api.post(
        "/v1/signatures",
        headers=_client(credentials),
        data={"profile": "agency-a-seal", "level": level},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )


def _dead_revocation_sources_cert() -> Any:
    """A certificate whose CRL distribution point and OCSP responder are loopback addresses
    where nothing listens."""
    from tests.support.revocation_sources import cert_with_revocation_sources

    base = f"http://127.0.0.1:{free_port()}"
    return cert_with_revocation_sources(f"{base}/goc.crl", f"{base}/ocsp", "Không ai trả lời")


def test_every_family_moves(observed: tuple[Services, Any, dict[str, Any], str]) -> None:
    services, api, credentials, operator = observed
    # Revocation answers are cached per process: start from an empty cache so that signing
    # really asks the dev PKI's OCSP responder.
    REVOCATION_CACHE.clear()
    before = scrape(api, operator)

    # Signing (B-T): a TSA request, OCSP fetches for the signer check, one signature.
    signed = _sign(api, credentials)
    assert signed.status_code == 201, signed.text
    pdf = api.get(signed.json()["document"]["download_url"], headers=_client(credentials)).content

    # Verifying: the signed document and an unsigned one.
    report = api.post("/v1/verifications", files={"file": ("s.pdf", pdf, "application/pdf")})
    assert report.status_code == 200 and report.json()["verdict"] == "TOTAL_PASSED"
    assert report.json()["status"]["state"] == "valid"
    unsigned = api.post(
        "/v1/verifications", files={"file": ("u.pdf", make_pdf(), "application/pdf")}
    )
    assert unsigned.status_code == 200 and unsigned.json()["verdict"] == "NO_SIGNATURE"

    # A TSA that does not answer: the agency's administrator picks the operator's "tat".
    chosen = api.patch(
        "/v1/admin/profiles/agency-a-seal", headers=_admin(credentials), json={"tsa": "tat"}
    )
    assert chosen.status_code == 200, chosen.text
    refused = _sign(api, credentials)
    assert (refused.status_code, refused.json()["code"]) == (503, "TIMESTAMP_UNAVAILABLE")
    assert refused.headers["Retry-After"]

    # Revocation sources that do not answer (CRL distribution point, OCSP responder).
    from pyhanko_certvalidator.authority import CertTrustAnchor
    from pyhanko_certvalidator.errors import CRLFetchError, OCSPFetchError

    cert = _dead_revocation_sources_cert()
    fetchers = CachingFetcherBackend(RevocationCache(), per_request_timeout=2).get_fetchers()
    with pytest.raises(CRLFetchError):
        asyncio.run(fetchers.crl_fetcher.fetch(cert))
    with pytest.raises(OCSPFetchError):
        asyncio.run(fetchers.ocsp_fetcher.fetch(cert, CertTrustAnchor(cert).authority))

    # The object store's directory replaced by a file: storing the signed document fails.
    api.patch("/v1/admin/profiles/agency-a-seal", headers=_admin(credentials), json={"tsa": "dev"})
    root: Path = services.store.root  # type: ignore[attr-defined]
    shutil.rmtree(root)
    root.write_bytes(b"khong phai thu muc")
    broken = _sign(api, credentials, level="B-B")
    assert (broken.status_code, broken.json()["code"]) == (503, "STORAGE_UNAVAILABLE")
    root.unlink()
    root.mkdir()

    # A statement the database refuses.
    with pytest.raises(Exception, match="no_such_table"), services.db.transaction() as session:
        session.execute(text("SELECT * FROM no_such_table"))

    # The job queue's probe (the preservation lane registers the real one).
    metrics.set_queue_probe(lambda: (4, 12.5))

    # A path no route serves: counted as "unmatched", never under its own name.
    assert api.get("/khong-co/3f2a9c").status_code == 404

    after = scrape(api, operator)
    requests = "signing_service_http_requests_total"
    assert moved(before, after, requests, route="/v1/signatures", status="201") == 1
    assert moved(before, after, requests, route="/v1/signatures", status="503") == 2
    assert moved(before, after, requests, route="/v1/verifications", status="200") == 2
    assert moved(before, after, requests, route="unmatched", status="404") == 1
    assert (
        moved(
            before,
            after,
            "signing_service_http_request_duration_seconds_count",
            method="POST",
            route="/v1/signatures",
        )
        == 3
    )
    assert not any("khong-co" in str(labels) for _, labels in after)
    agency = credentials["agencies"][0]["code"]
    assert (
        moved(
            before,
            after,
            "signing_service_signatures_total",
            level="B-T",
            key_kind="pkcs12",
            agency=agency,
        )
        == 1
    )
    verdicts = "signing_service_verifications_total"
    assert moved(before, after, verdicts, indication="TOTAL_PASSED", state="valid") == 1
    assert moved(before, after, verdicts, indication="NO_SIGNATURE") == 1
    tsa = "signing_service_tsa_request_duration_seconds_count"
    assert moved(before, after, tsa, outcome="ok") >= 1
    assert moved(before, after, tsa, outcome="error") >= 1
    assert moved(before, after, "signing_service_tsa_failures_total", reason="unreachable") >= 1
    fetches = "signing_service_revocation_fetch_duration_seconds_count"
    assert moved(before, after, fetches, kind="ocsp", outcome="ok") >= 1
    failures = "signing_service_revocation_fetch_failures_total"
    assert moved(before, after, failures, kind="ocsp") >= 1
    assert moved(before, after, failures, kind="crl") >= 1
    assert moved(before, after, "signing_service_storage_errors_total", kind="unavailable") >= 1
    assert moved(before, after, "signing_service_database_errors_total") >= 1
    assert total(after, "signing_service_job_queue_depth") == 4
    assert total(after, "signing_service_job_queue_oldest_age_seconds") == 12.5
    assert total(before, "signing_service_job_queue_depth") == 0


def test_rate_limit_rejections_are_counted(
    observed: tuple[Services, Any, dict[str, Any], str],
) -> None:
    """A client over the public lane's rate gets 429 RATE_LIMITED, and the rejection is in
    ``signing_service_rate_limit_rejections_total`` and under the route it was aimed at."""
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app

    services, api, _credentials, operator = observed
    original = services.settings
    services.settings = original.model_copy(
        update={"public_rate_per_minute": 1, "public_rate_burst": 1}
    )
    try:
        limited_app = create_app(services)
    finally:
        services.settings = original
    before = scrape(api, operator)
    with TestClient(limited_app, raise_server_exceptions=False) as limited:
        answers = [
            limited.post("/v1/verifications", files={"file": ("u.pdf", make_pdf())})
            for _ in range(2)
        ]
    assert [a.status_code for a in answers] == [200, 429]
    assert answers[1].json()["code"] == "RATE_LIMITED"
    after = scrape(api, operator)
    assert moved(before, after, "signing_service_rate_limit_rejections_total", code="RATE_LIMITED")
    assert (
        moved(
            before,
            after,
            "signing_service_http_requests_total",
            route="/v1/verifications",
            status="429",
        )
        == 1
    )


def test_only_the_operator_reads_metrics(
    observed: tuple[Services, Any, dict[str, Any], str],
) -> None:
    _services, api, credentials, operator = observed
    assert api.get("/metrics").status_code == 401
    assert api.get("/metrics", headers={"Authorization": "Bearer ssk_x_y"}).status_code == 401
    for key in ("api_key", "admin_api_key"):
        answer = api.get(
            "/metrics",
            headers={"Authorization": f"Bearer {credentials['agencies'][0][key]}"},
        )
        assert (answer.status_code, answer.json()["code"]) == (403, "FORBIDDEN")
    assert api.get("/metrics", headers={"Authorization": f"Bearer {operator}"}).status_code == 200


def test_probe_failure_leaves_the_scrape_whole(
    observed: tuple[Services, Any, dict[str, Any], str],
) -> None:
    _services, api, _credentials, operator = observed

    def broken() -> tuple[int, float | None]:
        raise RuntimeError("hàng đợi không trả lời")

    metrics.set_queue_probe(broken)
    samples = scrape(api, operator)
    assert total(samples, "signing_service_job_queue_depth") == 0
    assert not any(name == "signing_service_job_queue_depth" for name, _ in samples)
    assert any(name == "signing_service_http_requests_total" for name, _ in samples)
    metrics.set_queue_probe(lambda: (0, None))
    samples = scrape(api, operator)
    assert total(samples, "signing_service_job_queue_oldest_age_seconds") == 0
    assert any(name == "signing_service_job_queue_depth" for name, _ in samples)


def test_a_busy_metrics_address_stops_serve(tmp_path: Path, dev_pki: tuple[DevPki, int]) -> None:
    """``SIGNING_SERVICE_METRICS_ADDRESS`` on a port already in use: exit 6 naming the
    setting, in Vietnamese, before the API listens (no silent server without metrics)."""
    import os
    import socket
    import subprocess
    import sys

    from tests import conftest

    pki, port = dev_pki
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
        env.update(
            {
                "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
                "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{tmp_path / 'metadata.db'}",
                "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
                "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
                "SIGNING_SERVICE_DEV_PKI_SERVE": "false",
                "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(conftest.SOFTHSM_DIR or tmp_path / "x"),
                "SIGNING_SERVICE_METRICS_ADDRESS": f"127.0.0.1:{busy}",
            }
        )
        done = subprocess.run(
            [sys.executable, "-m", "signing_service.cli", "serve", "--port", str(free_port())],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert done.returncode == 6, done.stderr[-2000:]
    assert "SIGNING_SERVICE_METRICS_ADDRESS" in done.stderr
    assert "Cấu hình không hợp lệ" in done.stderr


@pytest.mark.parametrize("multiprocess", [False, True])
def test_alert_families_exist_at_zero_on_a_fresh_scrape(tmp_path: Path, multiprocess: bool) -> None:
    """New user 12 finding 11: the failure families the README's alerts use are on the very
    first scrape, at 0, for every label value known in advance, so ``increase()`` sees the
    first error. A fresh process (this one has moved them already), one process's registry
    and the multiprocess directory ``serve`` uses."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    if multiprocess:
        env[metrics.MULTIPROC_ENV] = str(tmp_path)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from signing_service import metrics; "
            "sys.stdout.write(metrics.exposition()[0].decode())",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    samples: Samples = {}
    for family in text_string_to_metric_families(done.stdout):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    expected = {
        "signing_service_tsa_failures_total": ("reason", sorted(metrics.TSA_REASONS)),
        "signing_service_revocation_fetch_failures_total": ("kind", ["ocsp", "crl"]),
        "signing_service_storage_errors_total": ("kind", ["unavailable", "integrity"]),
        "signing_service_database_errors_total": (
            "kind",
            ["disconnect", "operational", "integrity", "other"],
        ),
        "signing_service_rate_limit_rejections_total": (
            "code",
            ["RATE_LIMITED", "ANONYMOUS_BUSY", "TOO_MANY_CONNECTIONS"],
        ),
    }
    for name, (label, values) in expected.items():
        for value in values:
            assert samples.get((name, frozenset({(label, value)}))) == 0.0, (name, value)
