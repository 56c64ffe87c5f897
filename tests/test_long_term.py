"""Verdicts that hold for decades: signatures made in the past, validated at the time that matters.

Documents are signed in March 2025 by a test PKI (tests/support/pki/past.yml) whose signer
certificates end before its TSA's: one expired in June 2025, one was revoked in May 2025 (after
signing), one in February 2025 (before signing). The PKI's responders answer *now* on loopback
when a test serves them (a CA keeps publishing status for years); otherwise nothing is reachable.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from signing_service.verification.validate import Verifier
from tests.conftest import REPO
from tests.support.past_pki import PastPki, free_port
from tests.support.pdfs import make_pdf

SIGNED_AT = datetime(2025, 3, 15, 3, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def past(tmp_path_factory: pytest.TempPathFactory) -> PastPki:
    return PastPki.create(tmp_path_factory.mktemp("past-pki"), free_port())


@pytest.fixture
def served(past: PastPki) -> Iterator[PastPki]:
    with past.serve():
        yield past


@pytest.fixture(scope="module")
def documents(past: PastPki) -> dict[tuple[str, str], bytes]:
    pdf = make_pdf(pages=1)
    out = {}
    for signer in ("expired", "revoked-after", "revoked-before", "valid"):
        for level in ("B-B", "B-T", "B-LT", "B-LTA"):
            out[(signer, level)] = past.sign(pdf, signer, level, SIGNED_AT)
    out[("revoked-before", "B-T+content")] = past.sign(
        pdf, "revoked-before", "B-T", SIGNED_AT, content_timestamp=True
    )
    return out


def verify(pki: PastPki, data: bytes, **kwargs: Any) -> dict[str, Any]:
    verifier = Verifier(pki.trust(REPO / "certs/trust/anchors.json"))
    return asyncio.run(verifier.async_verify(data, **kwargs)).to_dict()


def only(report: dict[str, Any]) -> dict[str, Any]:
    sigs = [s for s in report["signatures"] if s["type"] != "document_timestamp"]
    assert len(sigs) == 1, report
    return sigs[0]


@pytest.mark.parametrize("level", ["B-LT", "B-LTA"])
def test_expired_since_signing_passes_with_embedded_evidence(
    served: PastPki, documents: dict[tuple[str, str], bytes], level: str
) -> None:
    report = verify(served, documents[("expired", level)])
    assert report["verdict"] == "TOTAL_PASSED", json.dumps(report, ensure_ascii=False)[:3000]
    sig = only(report)
    assert sig["level"] == level
    assert sig["best_signature_time"] == "2025-03-15T10:00:00+07:00"
    assert sig["best_signature_time_proof"] in ("signature_timestamp", "document_timestamp")
    assert sig["validation_time"] == "2025-03-15T10:00:00+07:00"  # judged at the proven time
    assert sig["checks"]["trust"]["code"] == "CHAIN_TRUSTED_AT_SIGNING_TIME"
    assert sig["checks"]["revocation"]["code"] == "NOT_REVOKED_AT_SIGNING_TIME"
    # The revocation data used is the signing day's, from the document.
    assert any(
        r["source"] == "document" and r["type"] == "OCSP" and r["status"] == "good"
        for r in sig["revocation_data"]
    ), sig["revocation_data"]
    assert any(w["code"] == "CERTIFICATE_EXPIRED_SINCE" for w in report["warnings"])


@pytest.mark.parametrize("level", ["B-T", "B-LT", "B-LTA"])
def test_revoked_after_the_proven_time_passes_with_a_note(
    served: PastPki, documents: dict[tuple[str, str], bytes], level: str
) -> None:
    report = verify(served, documents[("revoked-after", level)])
    assert report["verdict"] == "TOTAL_PASSED", json.dumps(report, ensure_ascii=False)[:3000]
    sig = only(report)
    assert sig["checks"]["revocation"]["code"] == "REVOKED_AFTER_SIGNING"
    assert [n["code"] for n in sig["notes"]] == ["REVOKED_AFTER_PROVEN_TIME"]
    assert "2025-05-01" in sig["notes"][0]["message"]


def test_revoked_before_a_content_timestamp_fails(
    served: PastPki, documents: dict[tuple[str, str], bytes]
) -> None:
    """The content timestamp proves the document was signed after the revocation."""
    report = verify(served, documents[("revoked-before", "B-T+content")])
    assert report["verdict"] == "TOTAL_FAILED"
    sig = only(report)
    assert sig["sub_indication"] == "REVOKED"
    assert sig["checks"]["revocation"]["code"] == "REVOKED"
    assert {t["type"] for t in sig["timestamps"]} == {"signature", "content"}


@pytest.mark.parametrize("level", ["B-B", "B-T"])
def test_revoked_before_the_timestamp_without_proof_of_signing_time_is_indeterminate(
    served: PastPki, documents: dict[tuple[str, str], bytes], level: str
) -> None:
    report = verify(served, documents[("revoked-before", level)])
    assert report["verdict"] == "INDETERMINATE", json.dumps(report, ensure_ascii=False)[:3000]
    assert only(report)["sub_indication"] == "REVOKED_NO_POE"


def test_revoked_signer_with_embedded_crls_never_passes_offline(
    past: PastPki, documents: dict[tuple[str, str], bytes]
) -> None:
    """The issue's first case: B-LTA by a certificate revoked before it signed, every embedded
    CRL listing it, the CRL URL unreachable. Built by hand: pyHanko would refuse to sign."""
    signed = past.sign(make_pdf(), "revoked-before", "B-T", SIGNED_AT)
    signed = past.add_validation_data(signed, "revoked-before", SIGNED_AT.replace(minute=1))
    signed = past.add_document_timestamp(signed, SIGNED_AT.replace(minute=2))
    report = verify(past, signed)  # nothing served: every responder is unreachable
    assert report["verdict"] == "INDETERMINATE", json.dumps(report, ensure_ascii=False)[:3000]
    sig = only(report)
    assert sig["checks"]["revocation"]["code"] == "REVOKED_NO_POE"
    assert sig["checks"]["revocation"]["status"] != "PASSED"


def test_b_b_with_an_expired_certificate_has_no_proof_of_existence(
    past: PastPki, documents: dict[tuple[str, str], bytes]
) -> None:
    report = verify(past, documents[("expired", "B-B")])
    assert report["verdict"] == "INDETERMINATE"
    assert only(report)["sub_indication"] == "OUT_OF_BOUNDS_NO_POE"


@pytest.mark.parametrize("serve", [False, True], ids=["offline", "responders-up"])
def test_b_t_with_an_expired_certificate_and_no_revocation_evidence_is_indeterminate(
    past: PastPki, documents: dict[tuple[str, str], bytes], serve: bool
) -> None:
    """Today's CRLs no longer speak about a certificate that expired: only the signing day's
    data could, and a B-T signature carries none."""
    data = documents[("expired", "B-T")]
    if serve:
        with past.serve():
            report = verify(past, data)
    else:
        report = verify(past, data)
    assert report["verdict"] == "INDETERMINATE", json.dumps(report, ensure_ascii=False)[:3000]
    assert only(report)["checks"]["revocation"]["status"] == "INDETERMINATE"


def test_valid_certificate_at_b_lta_passes_at_the_validation_time(
    served: PastPki, documents: dict[tuple[str, str], bytes]
) -> None:
    report = verify(served, documents[("valid", "B-LTA")])
    assert report["verdict"] == "TOTAL_PASSED", json.dumps(report, ensure_ascii=False)[:3000]
    sig = only(report)
    assert sig["level"] == "B-LTA"
    assert sig["checks"]["trust"]["code"] == "CHAIN_TRUSTED"
    assert [s["type"] for s in report["signatures"]].count("document_timestamp") == 1


def test_validation_time_in_the_past_uses_the_evidence_of_that_time(
    past: PastPki, documents: dict[tuple[str, str], bytes]
) -> None:
    """As EU DSS allows: validate as of a moment. A week after signing, the expired-since
    certificate was in force and the embedded revocation data was fresh: no network needed."""
    at = datetime(2025, 3, 16, tzinfo=UTC)
    report = verify(past, documents[("expired", "B-LT")], validation_time=at)
    assert report["verdict"] == "TOTAL_PASSED", json.dumps(report, ensure_ascii=False)[:3000]
    assert report["validation_time"] == "2025-03-16T07:00:00+07:00"
    sig = only(report)
    assert sig["checks"]["trust"]["code"] == "CHAIN_TRUSTED"
    # Before the certificate was issued, nothing can pass.
    early = verify(
        past, documents[("expired", "B-LT")], validation_time=datetime(2024, 1, 1, tzinfo=UTC)
    )
    assert early["verdict"] != "TOTAL_PASSED"


def test_cli_verify_at(
    past: PastPki, documents: dict[tuple[str, str], bytes], tmp_path: Path
) -> None:
    pdf = tmp_path / "da-ky.pdf"
    pdf.write_bytes(documents[("expired", "B-LT")])
    env_anchor = json.dumps([str(past.root_path)])
    common = {
        "SIGNING_SERVICE_DATA_DIR": str(tmp_path / "var"),
        "SIGNING_SERVICE_EXTRA_TRUST_ANCHORS": env_anchor,
    }
    import os

    env = {**os.environ, **common}
    run = subprocess.run(
        [
            str(REPO / ".venv/bin/signing-service"),
            "verify",
            str(pdf),
            "--json",
            "--at",
            "2025-03-16T00:00:00+07:00",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    report = json.loads(run.stdout)
    assert report["verdict"] == "TOTAL_PASSED"
    assert report["validation_time"] == "2025-03-16T00:00:00+07:00"
    bad = subprocess.run(
        [str(REPO / ".venv/bin/signing-service"), "verify", str(pdf), "--at", "hôm qua"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 3
    assert "--at" in bad.stderr
