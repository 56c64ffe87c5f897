"""Two-step signing: the key stays in a separate process that only ever sees the digest."""

from __future__ import annotations

import base64
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import update

from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.store.models import ExternalSession
from tests.conftest import REPO
from tests.support.keys import store_officer_without_checks
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot


class Token:
    def __init__(self, p12: str, form: str = "der") -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.usb_token", p12, DEV_KEY_PASSPHRASE, form],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def sign_digest(self, digest_b64: str) -> str:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(digest_b64 + "\n")
        self.proc.stdin.flush()
        return self.proc.stdout.readline().strip()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def officer_token(services: Services) -> Iterator[Token]:
    assert services.dev_pki is not None
    token = Token(str(services.dev_pki.p12_path("officer")))
    yield token
    token.close()


def headers(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['api_key']}"}


def start(
    api: Any, services: Services, credentials: dict[str, Any], cert: str = "officer", **form: str
) -> Any:
    assert services.dev_pki is not None
    pem = services.dev_pki.cert_path(cert).read_bytes()
    fields = {"profile": "agency-a-officer", **form}
    return api.post(
        "/v1/signatures/external",
        headers=headers(credentials),
        data=fields,
        files={
            "file": ("to-trinh.pdf", make_pdf(), "application/pdf"),
            "certificate": ("officer.pem", pem),
        },
    )


def complete(api: Any, credentials: dict[str, Any], session: dict[str, Any], **body: str) -> Any:
    return api.post(session["complete_url"], headers=headers(credentials), json=body)


@pytest.mark.parametrize("level", ["B-B", "B-T"])
def test_two_step_signature_verifies(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token, level: str
) -> None:
    started = start(api, services, credentials, level=level)
    assert started.status_code == 201, started.text
    session = started.json()
    assert session["digest_algorithm"] == "sha256"
    signature = officer_token.sign_digest(session["digest"])
    done = complete(api, credentials, session, signature=signature)
    assert done.status_code == 201, done.text
    signed = api.get(done.json()["document"]["download_url"], headers=headers(credentials))
    report = api.post("/v1/verifications", files={"file": ("s.pdf", signed.content)}).json()
    assert report["verdict"] == "TOTAL_PASSED", report
    assert report["signatures"][0]["signer"]["common_name"] == "Nguyễn Văn An"
    assert report["signatures"][0]["signer"]["title"] == "Phó Giám đốc"

    # Replayed: the session completes at most once.
    before = snapshot(services)
    again = complete(api, credentials, session, signature=signature)
    assert (again.status_code, again.json()["code"]) == (409, "EXTERNAL_SESSION_USED")
    # A client whose first answer was lost learns which document it signed (new user 22 #4).
    assert again.json()["details"] == {
        "state": "completed",
        "document_id": done.json()["document"]["id"],
    }
    assert_nothing_written(before, services)


def test_signature_from_another_key_is_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    assert services.dev_pki is not None
    other = Token(str(services.dev_pki.p12_path("agency-a-seal")))  # a different private key
    try:
        session = start(api, services, credentials).json()
        before = snapshot(services)
        done = complete(api, credentials, session, signature=other.sign_digest(session["digest"]))
    finally:
        other.close()
    assert (done.status_code, done.json()["code"]) == (422, "EXTERNAL_SIGNATURE_INVALID")
    assert_nothing_written(before, services)


def test_garbage_and_wrong_shape_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    session = start(api, services, credentials).json()
    before = snapshot(services)
    bad = complete(api, credentials, session, signature=base64.b64encode(b"x" * 256).decode())
    assert bad.json()["code"] == "EXTERNAL_SIGNATURE_INVALID"
    bad = complete(api, credentials, session, signature="khong-phai-base64!")
    assert (bad.status_code, bad.json()["code"]) == (422, "INVALID_REQUEST")
    bad = complete(api, credentials, session)
    assert bad.json()["code"] == "INVALID_REQUEST"
    bad = complete(
        api, credentials, session, cms=base64.b64encode(b"\x30\x03\x02\x01\x01").decode()
    )
    assert bad.json()["code"] == "EXTERNAL_CMS_INVALID"
    assert_nothing_written(before, services)


def test_cms_for_another_document_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    """A complete CMS made for session A, sent to complete session B."""
    from signing_service._async import run_sync
    from signing_service.signing.keys.pkcs12 import load_pkcs12_file

    first = start(api, services, credentials).json()
    second = start(api, services, credentials).json()
    assert services.dev_pki is not None
    key = load_pkcs12_file(services.dev_pki.p12_path("officer"), DEV_KEY_PASSPHRASE.encode())
    from asn1crypto import cms

    attrs = cms.CMSAttributes.load(base64.b64decode(first["data_to_sign"]))
    ci = run_sync(key.signer.async_sign_prescribed_attributes("sha256", attrs))
    before = snapshot(services)
    done = complete(api, credentials, second, cms=base64.b64encode(ci.dump()).decode())
    assert (done.status_code, done.json()["code"]) == (422, "EXTERNAL_CMS_WRONG_DOCUMENT")
    assert_nothing_written(before, services)
    # The same CMS completes its own session.
    done = complete(api, credentials, first, cms=base64.b64encode(ci.dump()).decode())
    assert done.status_code == 201, done.text


def test_expired_session_refused(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    session = start(api, services, credentials).json()
    with services.db.transaction() as db:
        db.execute(
            update(ExternalSession)
            .where(ExternalSession.id == session["session_id"])
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    before = snapshot(services)
    done = complete(
        api, credentials, session, signature=officer_token.sign_digest(session["digest"])
    )
    assert (done.status_code, done.json()["code"]) == (410, "EXTERNAL_SESSION_EXPIRED")
    assert_nothing_written(before, services)


def test_other_agency_cannot_complete(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    session = start(api, services, credentials).json()
    done = api.post(
        session["complete_url"], headers=headers(credentials, 1), json={"signature": "AAAA"}
    )
    assert (done.status_code, done.json()["code"]) == (404, "EXTERNAL_SESSION_NOT_FOUND")


@pytest.mark.parametrize(
    ("cert", "form", "status", "code"),
    [
        ("revoked-signer", {}, 422, "SIGNER_CERT_REVOKED"),
        ("expired-signer", {}, 422, "SIGNER_CERT_EXPIRED"),
        ("officer", {"profile": "agency-a-seal"}, 422, "PROFILE_NOT_EXTERNAL"),
        ("officer", {"level": "B-LTA"}, 422, "INVALID_SIGNATURE_LEVEL"),
    ],
)
def test_start_refusals(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    cert: str,
    form: dict[str, str],
    status: int,
    code: str,
) -> None:
    """Officers whose certificates were fine when registered and have gone bad since, and
    requests that do not fit the profile."""
    assert services.dev_pki is not None
    if cert != "officer":
        store_officer_without_checks(services, cert, services.dev_pki.cert_path(cert).read_bytes())
    before = snapshot(services)
    response = start(api, services, credentials, cert=cert, **form)
    assert (response.status_code, response.json()["code"]) == (status, code)
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "cert",
    ["interm", "root", "agency-a-seal", "revoked-signer", "officer-remote"],
    ids=["ca-certificate", "root", "agency-seal", "unregistered-revoked", "unregistered"],
)
def test_unregistered_certificates_refused(
    api: Any, services: Services, credentials: dict[str, Any], cert: str
) -> None:
    """Issue 9: a CA certificate was accepted as an officer's certificate. Only the
    certificates the operator registered for the agency start a session."""
    before = snapshot(services)
    response = start(api, services, credentials, cert=cert)
    assert (response.status_code, response.json()["code"]) == (422, "OFFICER_NOT_REGISTERED")
    assert_nothing_written(before, services)


def test_officer_chosen_by_name(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    assert services.dev_pki is not None
    started = api.post(
        "/v1/signatures/external",
        headers=headers(credentials),
        data={"profile": "agency-a-officer", "officer": "nguyen-van-an", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )
    assert started.status_code == 201, started.text
    session = started.json()
    done = complete(
        api, credentials, session, signature=officer_token.sign_digest(session["digest"])
    )
    assert done.status_code == 201, done.text
    for officer, code in (("khong-co", "OFFICER_NOT_REGISTERED"), (None, "OFFICER_REQUIRED")):
        before = snapshot(services)
        refused = api.post(
            "/v1/signatures/external",
            headers=headers(credentials),
            data={"profile": "agency-a-officer", **({"officer": officer} if officer else {})},
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        )
        assert (refused.status_code, refused.json()["code"]) == (422, code)
        assert_nothing_written(before, services)


def test_officer_disabled_before_completion(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    from signing_service.services.keys import disable_key

    session = start(api, services, credentials, level="B-B").json()
    disable_key(services, agency_code="000.00.12.H12", name="nguyen-van-an", actor="test")
    before = snapshot(services)
    done = complete(
        api, credentials, session, signature=officer_token.sign_digest(session["digest"])
    )
    assert (done.status_code, done.json()["code"]) == (422, "OFFICER_NOT_REGISTERED")
    assert_nothing_written(before, services)


def test_unreadable_certificate(api: Any, credentials: dict[str, Any]) -> None:
    response = api.post(
        "/v1/signatures/external",
        headers=headers(credentials),
        data={"profile": "agency-a-officer"},
        files={"file": ("a.pdf", make_pdf()), "certificate": ("c.pem", b"rac")},
    )
    assert (response.status_code, response.json()["code"]) == (422, "EXTERNAL_CERTIFICATE_INVALID")


def test_external_profile_cannot_be_used_for_one_step_signing(
    api: Any, credentials: dict[str, Any]
) -> None:
    response = api.post(
        "/v1/signatures",
        headers=headers(credentials),
        data={"profile": "agency-a-officer"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (422, "PROFILE_NEEDS_TWO_STEP")


# -- red team 21b: concurrent completions, the profile changed between the steps ------------


def _agency(services: Services, code: str = "000.00.12.H12") -> Any:
    from sqlalchemy import select

    from signing_service.store.models import Agency

    with services.db.transaction() as db:
        agency = db.scalars(select(Agency).where(Agency.code == code)).one()
        db.expunge(agency)
    return agency


@pytest.mark.parametrize("attempts", [2, 3])
def test_concurrent_completions_one_wins_and_the_document_survives(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    officer_token: Token,
    attempts: int,
) -> None:
    """Red team 21b, R21B-1: a client retrying step 2 (timeout, dropped connection) sends
    the same signature twice at once. Both requests passed the "pending" check and wrote the
    same object key; the loser's transaction failed (500) and its cleanup deleted the object
    of the winner's committed, registered document. Exactly one completes; the others are 409
    EXTERNAL_SESSION_USED, and the stored document is intact."""
    import hashlib
    import threading

    from signing_service import errors
    from signing_service.services.external import complete_external
    from signing_service.services.signing import SignResult

    session = start(api, services, credentials, level="B-B").json()
    signature = base64.b64decode(officer_token.sign_digest(session["digest"]))
    agency = _agency(services)
    barrier = threading.Barrier(attempts)
    results: list[Any] = []

    def attempt() -> None:
        barrier.wait()
        try:
            results.append(
                complete_external(
                    services, agency, session["session_id"], signature=signature, actor="t"
                )
            )
        except BaseException as e:  # noqa: BLE001 - asserted below
            results.append(e)

    threads = [threading.Thread(target=attempt) for _ in range(attempts)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    done = [r for r in results if isinstance(r, SignResult)]
    refused = [r for r in results if not isinstance(r, SignResult)]
    assert len(done) == 1, results
    assert all(
        isinstance(r, errors.ServiceError) and (r.status, r.code) == (409, "EXTERNAL_SESSION_USED")
        for r in refused
    ), refused
    assert len(refused) == attempts - 1
    got = api.get(f"/v1/documents/{done[0].document.id}/content", headers=headers(credentials))
    assert got.status_code == 200, got.text
    assert hashlib.sha256(got.content).hexdigest() == done[0].document.sha256
    # One signed object in the store, no orphan of a refused attempt.
    assert len([k for k in services.store.list() if k.endswith(".pdf")]) == 1
    # The session is completed, once, by the winner.
    with services.db.transaction() as db:
        row = db.get(ExternalSession, session["session_id"])
        assert row is not None
        assert (row.state, row.signature_id) == ("completed", done[0].signature_id)


def test_a_failed_completion_leaves_the_session_usable(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    """The session is claimed before the signature is embedded and put back when that
    attempt fails: a refused step 2 (here a client CMS, correctly signed, too large for the
    prepared reservation: refused while embedding) does not use the session up."""
    from asn1crypto import cms

    from signing_service._async import run_sync
    from signing_service.signing.keys.pkcs12 import load_pkcs12_file

    assert services.dev_pki is not None
    session = start(api, services, credentials, level="B-B").json()
    key = load_pkcs12_file(services.dev_pki.p12_path("officer"), DEV_KEY_PASSPHRASE.encode())
    attrs = cms.CMSAttributes.load(base64.b64decode(session["data_to_sign"]))
    ci = run_sync(key.signer.async_sign_prescribed_attributes("sha256", attrs))
    signed_data = ci["content"]
    extra = [c for c in signed_data["certificates"]] * 60
    signed_data["certificates"] = cms.CertificateSet([*signed_data["certificates"], *extra])
    oversized = cms.ContentInfo.load(ci.dump(force=True))
    before = snapshot(services)
    refused = complete(api, credentials, session, cms=base64.b64encode(oversized.dump()).decode())
    assert (refused.status_code, refused.json()["code"]) == (422, "EXTERNAL_CMS_INVALID")
    assert_nothing_written(before, services)
    with services.db.transaction() as db:
        row = db.get(ExternalSession, session["session_id"])
        assert row is not None and row.state == "pending"
    done = complete(
        api, credentials, session, signature=officer_token.sign_digest(session["digest"])
    )
    assert done.status_code == 201, done.text


def test_a_claim_left_by_a_dead_process_lapses(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    """A step 2 whose process died after claiming the session left it "completing": every
    retry was 409 EXTERNAL_SESSION_USED until the session expired, and the officer had to sign
    again. A claim older than the lease is taken over; one within it still refuses (another
    request may be at work); the attempt that lost its claim can complete nothing."""
    import datetime as dt

    from sqlalchemy import update

    from signing_service import errors
    from signing_service.services import external

    session = start(api, services, credentials, level="B-B").json()
    signature = officer_token.sign_digest(session["digest"])
    sid = session["session_id"]
    # What a dead step 2 leaves: the session claimed (under its token), nothing stored.
    token = external._claim(services, sid)

    def claimed_ago(seconds: float) -> None:
        with services.db.transaction() as db:
            db.execute(
                update(ExternalSession)
                .where(ExternalSession.id == sid)
                .values(claimed_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=seconds))
            )

    claimed_ago(external.claim_lease(services) / 2)
    before = snapshot(services)
    held = complete(api, credentials, session, signature=signature)
    assert (held.status_code, held.json()["code"]) == (409, "EXTERNAL_SESSION_USED")
    assert held.json()["details"]["state"] == "completing"
    # The time left on the claim, not the whole lease (new user 23 #9).
    left = held.json()["details"]["retry_after_seconds"]
    assert 0 < left <= external.claim_lease(services) / 2 + 1
    assert held.headers["retry-after"] == str(left)
    assert_nothing_written(before, services)
    claimed_ago(external.claim_lease(services) + 5)
    done = complete(api, credentials, session, signature=signature)
    assert done.status_code == 201, done.text
    # The dead attempt's token releases nothing and completes nothing.
    external._release(services, sid, token)
    with services.db.transaction() as db:
        row = db.get(ExternalSession, sid)
        assert row is not None and row.state == "completed"
    with pytest.raises(errors.ServiceError) as used:
        external._claim(services, sid)
    assert used.value.code == "EXTERNAL_SESSION_USED"


def _disable_profile(services: Services) -> None:
    from signing_service.services.profiles import disable_profile

    disable_profile(services, _agency(services), "agency-a-officer", actor="test")


def _profile_names_another_officer(services: Services) -> None:
    from signing_service.services.profiles import update_profile

    assert services.dev_pki is not None
    store_officer_without_checks(
        services, "tran-thi-binh", services.dev_pki.cert_path("officer-remote").read_bytes()
    )
    update_profile(
        services, _agency(services), "agency-a-officer", {"key": "tran-thi-binh"}, actor="test"
    )


def _profile_made_one_step(services: Services) -> None:
    from signing_service.services.profiles import update_profile

    update_profile(
        services,
        _agency(services),
        "agency-a-officer",
        {"two_step": False, "key": "agency-a-seal"},
        actor="test",
    )


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (_disable_profile, 404, "PROFILE_NOT_FOUND"),
        (_profile_names_another_officer, 422, "OFFICER_NOT_REGISTERED"),
        (_profile_made_one_step, 422, "PROFILE_NOT_EXTERNAL"),
    ],
    ids=["disabled", "another-officer", "one-step"],
)
def test_profile_changed_between_the_steps(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    officer_token: Token,
    change: Any,
    status: int,
    code: str,
) -> None:
    """Red team 21b, R21B-5: the agency's administrator withdrew the profile (or changed it)
    after step 1; step 2 completed anyway, registered in force under the withdrawn profile.
    Step 2 answers as step 1 would now, and the session stays unused."""
    session = start(api, services, credentials, level="B-B").json()
    signature = officer_token.sign_digest(session["digest"])
    change(services)
    before = snapshot(services)
    done = complete(api, credentials, session, signature=signature)
    assert (done.status_code, done.json()["code"]) == (status, code), done.text
    assert not done.json()["message"].isascii()
    assert_nothing_written(before, services)
    with services.db.transaction() as db:
        row = db.get(ExternalSession, session["session_id"])
        assert row is not None and (row.state, row.signature_id) == ("pending", None)


def test_named_officer_disabled_between_the_steps(
    api: Any, services: Services, credentials: dict[str, Any], officer_token: Token
) -> None:
    """A profile naming one officer, whose certificate the operator disabled after step 1:
    step 2 answers as step 1 would now (PROFILE_KEY_MISSING), nothing written."""
    from signing_service.services.keys import disable_key
    from tests.support.keys import profile

    profile(services, "ky-duyet-an", "nguyen-van-an", two_step=True)
    session = start(api, services, credentials, profile="ky-duyet-an").json()
    signature = officer_token.sign_digest(session["digest"])
    disable_key(services, agency_code="000.00.12.H12", name="nguyen-van-an", actor="test")
    before = snapshot(services)
    done = complete(api, credentials, session, signature=signature)
    assert (done.status_code, done.json()["code"]) == (422, "PROFILE_KEY_MISSING"), done.text
    assert_nothing_written(before, services)
