"""Extension of signed documents (PAdES B-T → B-LT → B-LTA, archive timestamp renewal) and
document versions (issue 12 items 2 and 4): through the API, with the dev PKI's real
TSA/OCSP/CRL on loopback, on SQLite and PostgreSQL.

Every extended version is checked with the service's own verifier (verdict and level); the
bad inputs each have their code and leave nothing written; a process killed between writing
a version's object and committing its row leaves the previous version current and no orphan
after ``storage reconcile``."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from signing_service import errors
from signing_service.pki.dev import DevPki
from signing_service.services.allowlists import DEV_TSA
from signing_service.services.container import Services
from signing_service.services.documents import get_document, read_content
from signing_service.services.extension import (
    extend_pdf,
    newest_timestamp_expiry,
    store_version,
)
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.store.models import Agency, AuditEntry, Document, RegisteredDocument
from tests.conftest import REPO, make_settings
from tests.support.duties import (
    BadTsa,
    WsgiServer,
    add_profile,
    issue_under_dev,
    tsa_app,
    write_p12,
)
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.support.state import assert_nothing_written, snapshot

TEST_TSA = "thu-nghiem"


@pytest.fixture
def tsa_server(dev_pki: tuple[DevPki, int]) -> Iterator[dict[str, Any]]:
    """A timestamp server on loopback that the operator configures as :data:`TEST_TSA`;
    answers as ``state["tsa"]`` (a :class:`BadTsa`), or ``state["app"]`` when set."""
    pki, _ = dev_pki
    state: dict[str, Any] = {"tsa": BadTsa(pki, "good"), "app": None}
    answer_as_tsa = tsa_app(lambda: state["tsa"])

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return (state["app"] or answer_as_tsa)(environ, start_response)

    with WsgiServer(app) as server:
        state["url"] = f"{server.url}/tsa"
        yield state


@pytest.fixture
def services(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    dev_pki: tuple[DevPki, int],
) -> Iterator[Services]:
    """As tests/conftest.py builds them; with :func:`tsa_server`, the operator also configures
    it as TSA :data:`TEST_TSA` (the dev PKI's TSA stays the default). Indirect parameters:
    more settings."""
    overrides: dict[str, Any] = {"default_tsa": DEV_TSA, **getattr(request, "param", {})}
    if "tsa_server" in request.fixturenames:
        overrides["tsas"] = {TEST_TSA: request.getfixturevalue("tsa_server")["url"]}
    built = Services.build(make_settings(tmp_path, database_url, dev_pki, **overrides))
    yield built
    built.close()


def auth(credentials: dict[str, Any], index: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][index]['api_key']}"}


def sign(
    api: Any, headers: dict[str, str], level: str = "B-T", profile: str = "agency-a-seal"
) -> dict[str, Any]:
    response = api.post(
        "/v1/signatures",
        headers=headers,
        data={"profile": profile, "level": level},
        files={"file": ("quyet-dinh.pdf", make_pdf(), "application/pdf")},
    )
    assert response.status_code == 201, response.text
    return response.json()


def content(api: Any, headers: dict[str, str], document_id: str) -> bytes:
    response = api.get(f"/v1/documents/{document_id}/content", headers=headers)
    assert response.status_code == 200, response.text
    assert hashlib.sha256(response.content).hexdigest() == response.headers["X-Content-SHA256"]
    return response.content


def verify(services: Services, pdf: bytes) -> dict[str, Any]:
    from signing_service.services.verification import verify_document

    return verify_document(services, pdf, actor="test")


def api_verify(api: Any, pdf: bytes) -> dict[str, Any]:
    response = api.post("/v1/verifications", files={"file": ("v.pdf", pdf, "application/pdf")})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def levels(report: dict[str, Any]) -> list[str]:
    return [s["level"] for s in report["signatures"] if s["type"] != "document_timestamp"]


def extend(api: Any, headers: dict[str, str], document_id: str, level: Any) -> Any:
    return api.post(
        f"/v1/documents/{document_id}/extensions", headers=headers, json={"level": level}
    )


def refused(response: Any, status: int, code: str) -> dict[str, Any]:
    assert (response.status_code, response.json().get("code")) == (status, code), response.text
    body: dict[str, Any] = response.json()
    assert not body["message"].isascii()  # Vietnamese, with its diacritics
    return body


def first_agency(services: Services) -> Agency:
    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).order_by(Agency.id)).first()
        assert agency is not None
        session.expunge(agency)
    return agency


def stored_expiry(services: Services, agency: Agency, document_id: str) -> datetime | None:
    """The stored ``archive_tsa_not_after``, aware (SQLite hands it back without offset)."""
    from signing_service.timefmt import aware_utc

    value = get_document(services, agency.id, document_id).archive_tsa_not_after
    return aware_utc(value) if value is not None else None


def sign_outside(pdf: bytes, p12: Path, tsa_url: str) -> bytes:
    """``pdf`` signed at B-T by pyHanko directly with the PKCS#12 ``p12`` (a signer the
    service itself refuses to sign with), timestamped by ``tsa_url``."""
    from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
    from pyhanko.sign import fields, signers, timestamps

    signer = signers.SimpleSigner.load_pkcs12(p12, passphrase=DEV_KEY_PASSPHRASE.encode())
    assert signer is not None
    out = BytesIO()
    signers.PdfSigner(
        signers.PdfSignatureMetadata(field_name="Sig1", subfilter=fields.SigSeedSubFilter.PADES),
        signer=signer,
        timestamper=timestamps.HTTPTimeStamper(tsa_url),
    ).sign_pdf(IncrementalPdfFileWriter(BytesIO(pdf)), output=out)
    return out.getvalue()


# -- extend_pdf and store_version (the interface preservation uses) -----------------------------
def test_extend_pdf_b_t_to_b_lt_to_b_lta_and_renewal(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    headers = auth(credentials)
    signed = content(api, headers, sign(api, headers)["document"]["id"])
    expiry = newest_timestamp_expiry(signed)
    pki = services.dev_pki
    assert pki is not None and expiry is not None
    tsa_not_after = pki.cert("tsa")["tbs_certificate"]["validity"]["not_after"].native
    assert expiry == tsa_not_after
    lt = extend_pdf(services, signed, "B-LT")
    assert lt.startswith(signed)  # incremental: the signed bytes stay untouched
    report = verify(services, lt)
    assert report["verdict"] == "TOTAL_PASSED", report["message"]
    assert levels(report) == ["B-LT"]
    lta = extend_pdf(services, lt, "B-LTA")
    report = verify(services, lta)
    assert report["verdict"] == "TOTAL_PASSED", report["message"]
    assert levels(report) == ["B-LTA"]
    renewed = extend_pdf(services, lta, "lta")
    assert renewed.startswith(lta)
    report = verify(services, renewed)
    assert report["verdict"] == "TOTAL_PASSED", report["message"]
    assert levels(report) == ["B-LTA"]
    stamps = [s for s in report["signatures"] if s["type"] == "document_timestamp"]
    assert len(stamps) == 2 and all(s["indication"] == "TOTAL_PASSED" for s in stamps)
    assert newest_timestamp_expiry(renewed) == tsa_not_after
    assert newest_timestamp_expiry(make_pdf()) is None
    assert newest_timestamp_expiry(b"not a pdf") is None


def test_store_version_writes_once_and_moves_the_registry(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    headers = auth(credentials)
    first_id = sign(api, headers)["document"]["id"]
    agency = first_agency(services)
    with services.db.transaction() as session:
        public_id = session.scalars(
            select(RegisteredDocument.public_id).where(RegisteredDocument.document_id == first_id)
        ).one()
    first = get_document(services, agency.id, first_id)
    data = read_content(services, first)
    lt = extend_pdf(services, data, "B-LT")
    before = snapshot(services)
    version = store_version(services, agency, first, lt, reason="extension", level="B-LT")
    after = snapshot(services)
    assert (after.documents, after.objects, after.audit) == (
        before.documents + 1,
        before.objects + 1,
        before.audit + 1,
    )
    assert version.version == 2 and version.previous_version_id == first_id
    assert version.archive_tsa_not_after == newest_timestamp_expiry(lt)
    assert read_content(services, get_document(services, agency.id, version.id)) == lt
    # The previous version stays, and stays readable.
    assert read_content(services, get_document(services, agency.id, first_id)) == data
    with services.db.transaction() as session:
        record = session.scalars(
            select(RegisteredDocument).where(RegisteredDocument.public_id == public_id)
        ).one()
        assert (record.document_id, record.sha256) == (version.id, version.sha256)
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "document.version_created")
        ).one()
        assert entry.subject == version.id
        assert json.loads(entry.details)["previous_document"] == first_id
    # The object is locked where the store supports it (the filesystem store's sidecar lock).
    assert services.store.lock_status(version.storage_key or "").locked(
        version.created_at + timedelta(days=1)
    )
    # A second version of the same previous is refused, and leaves nothing behind.
    before = snapshot(services)
    with pytest.raises(errors.DocumentNotLatestVersion) as caught:
        store_version(services, agency, first, lt, reason="extension")
    assert caught.value.details["latest_document_id"] == version.id
    assert_nothing_written(before, services)


def test_concurrent_versions_of_one_document_one_wins(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Two renewals of the same version at once (two workers): the unique
    ``previous_version_id`` lets one commit; the other is refused and removes its object."""
    headers = auth(credentials)
    first_id = sign(api, headers)["document"]["id"]
    agency = first_agency(services)
    first = get_document(services, agency.id, first_id)
    lt = extend_pdf(services, read_content(services, first), "B-LT")
    before = snapshot(services)
    outcomes: list[object] = []
    barrier = threading.Barrier(2)

    def run() -> None:
        barrier.wait()
        try:
            outcomes.append(store_version(services, agency, first, lt, reason="preservation"))
        except errors.ServiceError as e:
            outcomes.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stored = [o for o in outcomes if isinstance(o, Document)]
    refused_ = [o for o in outcomes if isinstance(o, errors.DocumentNotLatestVersion)]
    assert (len(stored), len(refused_)) == (1, 1), outcomes
    after = snapshot(services)
    assert (after.documents, after.objects) == (before.documents + 1, before.objects + 1)


# -- the API: B-T → B-LT → B-LTA → renewal, versions, registry -----------------------------------
# The dev TSA's certificate ends on 2035-01-01: with a ten-year horizon its timestamps are due,
# so the API renews them (red team 12 F14: only what is due is renewed).
@pytest.mark.parametrize("services", [{"preservation_horizon_days": 3650}], indirect=True)
def test_api_extension_chain_versions_and_registry(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    headers = auth(credentials)
    signed = sign(api, headers)
    v1 = signed["document"]["id"]
    v1_bytes = content(api, headers, v1)

    made = extend(api, headers, v1, "B-LT")
    assert made.status_code == 201, made.text
    body = made.json()
    v2 = body["document"]["id"]
    assert made.headers["Location"] == f"/v1/documents/{v2}"
    assert (body["version"], body["level"], body["previous_level"]) == (2, "B-LT", "B-T")
    assert (body["previous_document_id"], body["renewed"]) == (v1, False)
    public_id = body["registry"]["public_id"]
    v2_bytes = content(api, headers, v2)
    report = api_verify(api, v2_bytes)
    assert (report["verdict"], levels(report)) == ("TOTAL_PASSED", ["B-LT"]), report["message"]
    assert report["registry"]["found"] and report["registry"]["matched"] == "file"
    assert (report["registry"]["version"], report["registry"]["newer_version"]) == (2, False)

    made = extend(api, headers, v2, "B-LTA")
    assert made.status_code == 201, made.text
    v3 = made.json()["document"]["id"]
    assert (made.json()["version"], made.json()["previous_level"]) == (3, "B-LT")
    v3_bytes = content(api, headers, v3)
    report = api_verify(api, v3_bytes)
    assert (report["verdict"], levels(report)) == ("TOTAL_PASSED", ["B-LTA"]), report["message"]

    # Renewal: B-LTA on a B-LTA version adds a new archive timestamp.
    made = extend(api, headers, v3, "B-LTA")
    assert made.status_code == 201, made.text
    assert (made.json()["version"], made.json()["renewed"]) == (4, True)
    v4 = made.json()["document"]["id"]
    v4_bytes = content(api, headers, v4)
    report = api_verify(api, v4_bytes)
    assert (report["verdict"], levels(report)) == ("TOTAL_PASSED", ["B-LTA"]), report["message"]
    assert sum(s["type"] == "document_timestamp" for s in report["signatures"]) == 2

    # Every version is kept and downloadable, each with its own bytes.
    for doc, data in ((v1, v1_bytes), (v2, v2_bytes), (v3, v3_bytes)):
        assert content(api, headers, doc) == data
    assert v4_bytes.startswith(v3_bytes) and v3_bytes.startswith(v2_bytes)
    assert v2_bytes.startswith(v1_bytes)

    listing = api.get(f"/v1/documents/{v2}/versions", headers=headers)
    assert listing.status_code == 200, listing.text
    versions = listing.json()["versions"]
    assert [v["id"] for v in versions] == [v1, v2, v3, v4]
    assert [v["version"] for v in versions] == [1, 2, 3, 4]
    assert [v["level"] for v in versions] == ["B-T", "B-LT", "B-LTA", "B-LTA"]
    assert [v["latest"] for v in versions] == [False, False, False, True]
    assert listing.json()["latest_document_id"] == v4
    assert all(v["archive_tsa_not_after"] for v in versions[1:])

    # The registry points to the newest version and still recognises the earlier ones.
    record = api.get(f"/v1/registry/{public_id}").json()
    assert (record["version"], record["newer_version"], record["status"]) == (4, False, "in_force")
    for data, number in ((v1_bytes, 1), (v2_bytes, 2), (v3_bytes, 3)):
        section = api_verify(api, data)["registry"]
        assert section["found"] and section["public_id"] == public_id, section
        assert (section["matched"], section["version"], section["newer_version"]) == (
            "file",
            number,
            True,
        )
    newest = api_verify(api, v4_bytes)["registry"]
    assert (newest["version"], newest["newer_version"]) == (4, False)
    full = api.get(f"/v1/registered-documents/{public_id}", headers=headers).json()
    assert full["document_id"] == v4

    # An earlier version is not extended again: its line already goes further.
    before = snapshot(services)
    body = refused(extend(api, headers, v2, "B-LTA"), 409, "DOCUMENT_NOT_LATEST_VERSION")
    assert body["details"]["latest_document_id"] == v4
    assert_nothing_written(before, services)


def test_renewal_through_the_api_only_when_due(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Red team 12 F14: a client key renewed a B-LTA document without limit (a whole new
    version under a ten-year lock, a TSA request each time). Not due (the TSA certificate ends
    beyond the preservation horizon, the digest is not retiring): 409 EXTENSION_NOT_DUE,
    nothing written, stored or uploaded; extension to a higher level is unaffected."""
    headers = auth(credentials)
    lta = sign(api, headers, level="B-LTA")["document"]["id"]
    data = content(api, headers, lta)
    before = snapshot(services)
    for _ in range(3):
        body = refused(extend(api, headers, lta, "B-LTA"), 409, "EXTENSION_NOT_DUE")
    assert body["details"]["tsa_not_after"].startswith("2035-01-01")
    assert body["details"]["digest_algorithm"] == "sha256"
    uploaded = api.post(
        "/v1/extensions",
        headers=headers,
        data={"level": "B-LTA"},
        files={"file": ("a.pdf", data, "application/pdf")},
    )
    refused(uploaded, 409, "EXTENSION_NOT_DUE")
    assert_nothing_written(before, services)
    listing = api.get(f"/v1/documents/{lta}/versions", headers=headers).json()
    assert [v["id"] for v in listing["versions"]] == [lta]
    # A higher level is still reached.
    bt = sign(api, headers)["document"]["id"]
    made = extend(api, headers, bt, "B-LTA")
    assert made.status_code == 201, made.text


@pytest.mark.parametrize("services", [{"preservation_retiring_digests": ["sha256"]}], indirect=True)
def test_renewal_with_a_retiring_digest_is_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Red team 12 F9 through the API: the document is due (its timestamp's SHA-256 is
    retiring), but the new timestamp would be SHA-256 again and due at once: refused before
    anything is stored, however often it is asked."""
    headers = auth(credentials)
    lta = sign(api, headers, level="B-LTA")["document"]["id"]
    before = snapshot(services)
    for _ in range(2):
        body = refused(extend(api, headers, lta, "B-LTA"), 409, "PRESERVATION_DIGEST_RETIRING")
    assert body["details"]["digest_algorithm"] == "sha256"
    assert_nothing_written(before, services)


def test_bad_levels_targets_and_documents(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    headers = auth(credentials)
    signed = sign(api, headers)
    doc = signed["document"]["id"]
    before = snapshot(services)
    for level in ("B-T", "B-B", "X", "", "B-LTAA"):
        refused(extend(api, headers, doc, level), 422, "INVALID_EXTENSION_LEVEL")
    refused(extend(api, headers, doc, 3), 422, "INVALID_REQUEST")
    refused(
        api.post(f"/v1/documents/{doc}/extensions", headers=headers, json={}),
        422,
        "INVALID_REQUEST",
    )
    # The unsigned original is not a signed document.
    original = signed["input_document"]["id"]
    refused(extend(api, headers, original, "B-LT"), 422, "EXTENSION_NO_SIGNATURE")
    # A signature without a timestamp (B-B) cannot become B-LT.
    bb = sign(api, headers, level="B-B")["document"]["id"]
    before = snapshot(services)
    body = refused(extend(api, headers, bb, "B-LTA"), 422, "EXTENSION_NOT_TIMESTAMPED")
    assert body["details"]["current"] == "B-B"
    assert_nothing_written(before, services)
    # Lower or equal targets.
    lta = sign(api, headers, level="B-LTA")["document"]["id"]
    lt = sign(api, headers, level="B-LT")["document"]["id"]
    before = snapshot(services)
    body = refused(extend(api, headers, lta, "B-LT"), 422, "EXTENSION_TARGET_LOWER")
    assert (body["details"]["current"], body["details"]["target"]) == ("B-LTA", "B-LT")
    refused(extend(api, headers, lt, "B-LT"), 422, "EXTENSION_TARGET_LOWER")
    # Unknown and another agency's documents: the same answer.
    missing = refused(extend(api, headers, "khong-co", "B-LT"), 404, "DOCUMENT_NOT_FOUND")
    other = api.post(
        f"/v1/documents/{doc}/extensions", headers=auth(credentials, 1), json={"level": "B-LT"}
    )
    assert (other.status_code, other.json()) == (404, missing)
    versions = api.get(f"/v1/documents/{doc}/versions", headers=auth(credentials, 1))
    assert (versions.status_code, versions.json()) == (404, missing)
    assert_nothing_written(before, services)


# -- refusals: invalid signatures, a TSA that refuses or answers with an untrusted token ---------
def test_invalid_signatures_are_not_extended(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    from signing_service.services import allowlists

    pki = services.dev_pki
    assert pki is not None
    headers = auth(credentials)
    signed = content(api, headers, sign(api, headers)["document"]["id"])
    # Content changed under the signature.
    marker = b"Quyet dinh so 123"
    assert marker in signed
    tampered = signed.replace(marker, b"Quyet dinh so 999", 1)
    tsa_url = allowlists.tsa_url(services, None)
    # A signer whose certificate the CA revoked (pyHanko signs with it; the service won't).
    revoked = sign_outside(make_pdf(), pki.p12_path("revoked-signer"), tsa_url)
    before = snapshot(services)
    for data in (tampered, revoked):
        response = api.post(
            "/v1/extensions",
            headers=headers,
            data={"level": "B-LTA"},
            files={"file": ("a.pdf", data, "application/pdf")},
        )
        body = refused(response, 422, "EXTENSION_SIGNATURE_INVALID")
        assert body["details"]["verdict"] in ("TOTAL_FAILED", "INDETERMINATE")
    assert_nothing_written(before, services)


def test_unknown_revocation_status_is_503_and_nothing_is_returned(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """A signer whose OCSP responder and CRL cannot be reached: its signature is undecided
    (TRY_LATER), which extension would settle, but the data cannot be had: 503 with
    Retry-After, not a "B-LT" without its validation data."""
    from signing_service.services import allowlists

    pki = services.dev_pki
    assert pki is not None
    closed = f"http://127.0.0.1:{free_port()}"
    cert, private = issue_under_dev(
        pki, "Không rõ trạng thái", crl_url=f"{closed}/crl", ocsp_url=f"{closed}/ocsp"
    )
    p12 = write_p12(tmp_path / "unknown.p12", private, cert, [pki.cert("interm")])
    signed = sign_outside(make_pdf(), p12, allowlists.tsa_url(services, None))
    response = api.post(
        "/v1/extensions",
        headers=auth(credentials),
        data={"level": "B-LT"},
        files={"file": ("a.pdf", signed, "application/pdf")},
    )
    refused(response, 503, "EXTENSION_VALIDATION_DATA_UNAVAILABLE")
    assert response.headers["Retry-After"] == str(services.settings.retry_after_seconds)


@pytest.mark.parametrize(
    ("mode", "status", "code"),
    [
        ("self_signed", 502, "TIMESTAMP_UNTRUSTED"),
        ("refuses", 503, "TIMESTAMP_UNAVAILABLE"),
    ],
)
def test_tsa_refusing_or_untrusted_during_extension(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    tsa_server: dict[str, Any],
    mode: str,
    status: int,
    code: str,
) -> None:
    """The stored document's TSA is its signing profile's (the operator's TSA by name): when
    that TSA answers with a self-signed token, or refuses, the extension to B-LTA is refused
    with the signing's codes and nothing is written."""
    pki = services.dev_pki
    assert pki is not None
    add_profile(services, "tsa-thu-nghiem", key="agency-a-seal", tsa=TEST_TSA)
    headers = auth(credentials)
    doc = sign(api, headers, profile="tsa-thu-nghiem")["document"]["id"]
    if mode == "refuses":
        # PKIStatusInfo "rejection" (2), no token.
        answer = bytes.fromhex("3005300302010" + "2")

        def app(_environ: dict[str, Any], start_response: Any) -> list[bytes]:
            start_response("200 OK", [("Content-Type", "application/timestamp-reply")])
            return [answer]

        tsa_server["app"] = app
    else:
        tsa_server["tsa"] = BadTsa(pki, mode)
    before = snapshot(services)
    response = extend(api, headers, doc, "B-LTA")
    refused(response, status, code)
    if status == 503:
        assert response.headers["Retry-After"] == str(services.settings.retry_after_seconds)
    assert_nothing_written(before, services)
    # B-LT needs no timestamp: the same document extends to B-LT.
    assert extend(api, headers, doc, "B-LT").status_code == 201


# -- upload extension -----------------------------------------------------------------------------
def test_upload_extension(api: Any, services: Services, credentials: dict[str, Any]) -> None:
    headers = auth(credentials)
    signed = content(api, headers, sign(api, headers)["document"]["id"])
    before = snapshot(services)
    response = api.post(
        "/v1/extensions",
        headers=headers,
        data={"level": "B-LTA"},
        files={"file": ("quyet-dinh.signed.pdf", signed, "application/pdf")},
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    assert response.headers["X-Signature-Level"] == "B-LTA"
    assert response.headers["X-Previous-Signature-Level"] == "B-T"
    assert "quyet-dinh.signed.b-lta.pdf" in response.headers["Content-Disposition"]
    extended = response.content
    assert hashlib.sha256(extended).hexdigest() == response.headers["X-Content-SHA256"]
    assert extended.startswith(signed)
    report = api_verify(api, extended)
    assert (report["verdict"], levels(report)) == ("TOTAL_PASSED", ["B-LTA"]), report["message"]
    # Not stored: only the audit entry.
    after = snapshot(services)
    assert (after.documents, after.objects, after.audit) == (
        before.documents,
        before.objects,
        before.audit + 1,
    )
    with services.db.transaction() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "extension.upload")
        ).one()
        assert entry.subject == hashlib.sha256(extended).hexdigest()
    # Bad uploads.
    for data, status, code in (
        (b"", 422, "EMPTY_FILE"),
        (b"hello", 422, "NOT_A_PDF"),
        (make_pdf(), 422, "EXTENSION_NO_SIGNATURE"),
    ):
        response = api.post(
            "/v1/extensions",
            headers=headers,
            data={"level": "B-LT"},
            files={"file": ("a.pdf", data, "application/pdf")},
        )
        refused(response, status, code)
    response = api.post(
        "/v1/extensions",
        headers=headers,
        data={"level": "B-T"},
        files={"file": ("a.pdf", signed, "application/pdf")},
    )
    refused(response, 422, "INVALID_EXTENSION_LEVEL")
    response = api.post(
        "/v1/extensions",
        data={"level": "B-LT"},
        files={"file": ("a.pdf", signed, "application/pdf")},
    )
    assert response.status_code == 401


# -- a crash between the object and the commit ----------------------------------------------------
CRASH_SCRIPT = """
import sys, json
from signing_service.services.container import Services
from signing_service.services.documents import get_document
from signing_service.services.extension import store_version
from signing_service.settings import Settings
from signing_service.store.models import Agency

settings = Settings.model_validate_json(open(sys.argv[1]).read())
services = Services.build(settings)
with services.db.transaction() as session:
    agency = session.get(Agency, int(sys.argv[2]))
    session.expunge(agency)
previous = get_document(services, agency.id, sys.argv[3])
data = open(sys.argv[4], "rb").read()
print("ready", flush=True)
sys.stdin.readline()  # the test holds the database now
store_version(services, agency, previous, data, reason="preservation")
print("committed", flush=True)
"""


def _hold_database(services: Services) -> Any:
    """Hold the write lock (SQLite) or the audit head's row lock (PostgreSQL) from another
    connection, so that a writer blocks inside its transaction: after its object was written,
    before its commit."""
    engine = services.db.engine
    connection = engine.raw_connection()
    cursor = connection.cursor()
    if engine.dialect.name == "sqlite":
        cursor.execute("BEGIN IMMEDIATE")
    else:
        cursor.execute("LOCK TABLE audit_head IN ACCESS EXCLUSIVE MODE")
    return connection


@pytest.mark.slow
def test_sigkill_between_object_and_commit_leaves_no_orphan(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    from signing_service.services.attachments import reconcile
    from signing_service.services.registry import lookup_sha256

    headers = auth(credentials)
    first_id = sign(api, headers)["document"]["id"]
    agency = first_agency(services)
    first = get_document(services, agency.id, first_id)
    lt = extend_pdf(services, read_content(services, first), "B-LT")
    before = snapshot(services)
    settings_file = tmp_path / "settings.json"
    settings_file.write_text(services.settings.model_dump_json())
    data_file = tmp_path / "lt.pdf"
    data_file.write_bytes(lt)
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CRASH_SCRIPT,
            str(settings_file),
            str(agency.id),
            first_id,
            str(data_file),
        ],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert process.stdin is not None and process.stdout is not None
    ready = process.stdout.readline()
    assert ready == b"ready\n", process.stderr.read() if process.stderr else ready
    held = _hold_database(services)
    try:
        process.stdin.write(b"go\n")
        process.stdin.flush()
        # The version's object appears: the process is now inside its transaction, blocked.
        deadline = time.monotonic() + 60
        while len(list(services.store.list())) == before.objects:
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "the version's object was never written"
            time.sleep(0.05)
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        assert b"committed" not in process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=30)
        held.rollback()
        held.close()
    # The previous version is still current; the registry still names it.
    with services.db.transaction() as session:
        assert (
            session.scalars(
                select(Document).where(Document.previous_version_id == first_id)
            ).first()
            is None
        )
    record = lookup_sha256(services, first.sha256)
    assert record is not None and record.document_id == first_id and not record.newer_version
    assert len(list(services.store.list())) == before.objects + 1  # the orphan
    report = reconcile(services, min_age=timedelta(0))
    assert len(report.removed_objects) == 1, report
    assert_nothing_written(before, services)
    # And the extension can be made again, once.
    version = store_version(services, agency, first, lt, reason="extension")
    assert version.version == 2


# -- EU DSS agrees -------------------------------------------------------------------------------
@pytest.mark.slow
# The PDF bytes do not depend on the database: validated once, on SQLite.
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_eu_dss_passes_the_extended_and_renewed_versions_at_b_lta(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path
) -> None:
    """EU DSS (``../shared/tools/dss-validate``) validates the B-T → B-LTA extension and its
    renewal as PAdES-BASELINE-LTA, TOTAL_PASSED, online and offline (the validation data the
    extension embedded is enough on its own)."""
    import shutil

    from tests.support.dss_validate import harness_jar, validate

    tool = REPO.parent / "shared" / "tools" / "dss-validate"
    if shutil.which("java") is None or shutil.which("mvn") is None:
        pytest.skip("EU DSS interop needs Java 17 and Maven")
    if not (tool / "pom.xml").is_file():
        pytest.skip(f"the EU DSS harness is absent ({tool}); it ships in ../shared/tools")
    jar = harness_jar(tool)
    pki = services.dev_pki
    assert pki is not None
    headers = auth(credentials)
    signed = content(api, headers, sign(api, headers)["document"]["id"])
    lta = extend_pdf(services, signed, "B-LTA")
    renewed = extend_pdf(services, lta, "B-LTA")
    files = [tmp_path / "lta.pdf", tmp_path / "renewed.pdf"]
    files[0].write_bytes(lta)
    files[1].write_bytes(renewed)
    for offline in (False, True):
        for validation in validate(jar, files, trust=pki.root_cert_path, offline=offline):
            report = validation.report
            assert report["result"] == "TOTAL_PASSED", report
            (signature,) = report["signatures"]
            assert signature["indication"] == "TOTAL_PASSED", signature
            assert signature["format"] == "PAdES-BASELINE-LTA", signature
            if offline:
                assert report["fetched_urls"] == [], report


# -- object lock on MinIO ------------------------------------------------------------------------
def test_versions_are_object_locked_on_minio(
    request: pytest.FixtureRequest, tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """On MinIO (object lock on its bucket) a version's object is under governance-mode
    retention: an ordinary delete is refused; a crash's orphan is still removed by
    ``storage reconcile`` (which bypasses governance retention)."""
    import uuid

    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app
    from signing_service.services.attachments import reconcile
    from storage import ObjectLocked
    from tests.conftest import minio_or_skip

    server = minio_or_skip(request)
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'metadata.db'}",
        dev_pki,
        storage_url=server.url(f"t-{uuid.uuid4().hex[:12]}"),
        default_tsa=DEV_TSA,
    )
    services = Services.build(settings)
    try:
        credentials = json.loads(services.settings.dev_credentials_file.read_text())
        headers = auth(credentials)
        with TestClient(create_app(services), raise_server_exceptions=False) as api:
            body = extend(api, headers, sign(api, headers)["document"]["id"], "B-LT")
            assert body.status_code == 201, body.text
            version = body.json()["document"]
            assert content(api, headers, version["id"]) != b""
        agency = first_agency(services)
        stored = get_document(services, agency.id, version["id"])
        key = stored.storage_key
        assert key is not None
        status = services.store.lock_status(key)
        assert status.retain_until is not None
        assert status.locked(datetime.now(UTC) + timedelta(days=365))
        with pytest.raises(ObjectLocked):
            services.store.delete(key)
        # An orphan version object (a crash before the commit) is locked too, and reconcile
        # still removes it.
        orphan = f"{agency.code}/orphan/{uuid.uuid4()}.pdf"
        services.store.put(
            orphan, b"%PDF-1.7 orphan", retain_until=datetime.now(UTC) + timedelta(days=3650)
        )
        report = reconcile(services, min_age=timedelta(0))
        assert report.removed_objects == [orphan], report
        assert services.store.exists(key)
    finally:
        services.close()


def test_b_lta_signing_records_the_archive_expiry_and_backfill_fills_older_rows(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Preservation plans with a query on ``archive_tsa_not_after``: a B-LTA signature records
    it at signing; rows from before migration 0013 get it from the backfill."""
    from sqlalchemy import update

    from signing_service.services.extension import backfill_archive_expiry

    headers = auth(credentials)
    lta = sign(api, headers, level="B-LTA")["document"]["id"]
    bt = sign(api, headers, level="B-T")["document"]["id"]
    agency = first_agency(services)
    expected = newest_timestamp_expiry(
        read_content(services, get_document(services, agency.id, lta))
    )
    assert expected is not None
    assert stored_expiry(services, agency, lta) == expected
    assert stored_expiry(services, agency, bt) is None
    # As a row signed before migration 0013 would be.
    with services.db.transaction() as session:
        session.execute(
            update(Document).where(Document.id == lta).values(archive_tsa_not_after=None)
        )
    assert backfill_archive_expiry(services) == 1
    assert stored_expiry(services, agency, lta) == expected
    assert stored_expiry(services, agency, bt) is None  # not B-LTA
    assert backfill_archive_expiry(services) == 0


# -- documents signed years ago (tests/support/past_pki.py) --------------------------------------
@pytest.fixture(scope="module")
def past(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from tests.support.past_pki import PastPki
    from tests.support.past_pki import free_port as past_port

    return PastPki.create(tmp_path_factory.mktemp("past-pki"), past_port())


def test_renewal_of_a_document_whose_signer_expired_years_ago(
    past: Any, tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """A B-LTA document signed in March 2025 by a certificate that ended in June 2025, its
    archive timestamp by a TSA still in force: the renewal adds that timestamp's validation
    data (fetched now from the CA, which still answers) and a new archive timestamp from the
    service's TSA, and the result still passes at B-LTA. Extending the B-T copy instead is
    refused: the signer's status can no longer be had."""
    from datetime import datetime as dt

    signed_at = dt(2025, 3, 15, 3, 0, tzinfo=UTC)
    lta = past.sign(make_pdf(), "expired", "B-LTA", signed_at)
    bt = past.sign(make_pdf(), "expired", "B-T", signed_at)
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'metadata.db'}",
        dev_pki,
        default_tsa=DEV_TSA,
        extra_trust_anchors=[past.root_path],
    )
    services = Services.build(settings)
    try:
        with past.serve():
            before = verify(services, lta)
            assert (before["verdict"], levels(before)) == ("TOTAL_PASSED", ["B-LTA"])
            renewed = extend_pdf(services, lta, "B-LTA")
            report = verify(services, renewed)
            assert (report["verdict"], levels(report)) == ("TOTAL_PASSED", ["B-LTA"]), report[
                "message"
            ]
            stamps = [s for s in report["signatures"] if s["type"] == "document_timestamp"]
            assert len(stamps) == 2
            # The new archive timestamp is the service's TSA's: its expiry is the one recorded.
            dev = services.dev_pki
            assert dev is not None
            assert newest_timestamp_expiry(renewed) == (
                dev.cert("tsa")["tbs_certificate"]["validity"]["not_after"].native
            )
            # Its B-T copy: the signer's status is no longer published, and no retry helps.
            with pytest.raises(errors.ExtensionCertificateExpired) as caught:
                extend_pdf(services, bt, "B-LTA")
            assert caught.value.status == 422
    finally:
        services.close()
