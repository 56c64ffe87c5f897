"""``Idempotency-Key`` on ``POST /v1/signatures`` (issue 12 fix): a client that lost the
answer sends the request again and gets the first signature, not a second document (or a
second result code); the same key with another request is a 409; two concurrent requests with
one key store one document; keys are per agency. SQLite and PostgreSQL (``database_url``)."""

from __future__ import annotations

import threading
from typing import Any

from sqlalchemy import func, select

from signing_service import errors
from signing_service.services.container import Services
from signing_service.services.signing import SignResult, sign_document
from signing_service.store.models import Agency, ResultCodeCounter, Signature
from tests.support.keys import AGENCY_A
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

DOSSIER = "000.00.12.H12-261127-0001"
KEY = "mc-2026-000123"


def auth(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['api_key']}"}


def sign(
    api: Any,
    credentials: dict[str, Any],
    pdf: bytes,
    key: str | None = KEY,
    agency: int = 0,
    profile: str = "agency-a-seal",
    **form: str,
) -> Any:
    return post_signing(
        api,
        "/v1/signatures",
        credentials,
        [("file", ("qd.pdf", pdf, "application/pdf"))],
        key,
        agency,
        {"profile": profile, "level": "B-B", **form},
    )


def post_signing(
    api: Any,
    path: str,
    credentials: dict[str, Any],
    files: list[tuple[str, tuple[str, bytes, str]]],
    key: str | None,
    agency: int,
    form: dict[str, str],
) -> Any:
    """POST a signing form as agency ``agency``'s client, with ``key`` as Idempotency-Key."""
    headers = auth(credentials, agency)
    if key is not None:
        headers["Idempotency-Key"] = key
    return api.post(path, headers=headers, data=form, files=files)


def counter(services: Services) -> int | None:
    with services.db.transaction() as session:
        return session.scalar(
            select(ResultCodeCounter.last_number).where(ResultCodeCounter.dossier_code == DOSSIER)
        )


def test_replay_answers_the_first_signature(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    pdf = make_pdf()
    first = sign(api, credentials, pdf, dossier_code=DOSSIER, result_code="auto")
    assert first.status_code == 201, first.text
    before = snapshot(services)
    again = sign(api, credentials, pdf, dossier_code=DOSSIER, result_code="auto")
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"]
    # No second document, no second result code, nothing written (audit included).
    assert_nothing_written(before, services)
    assert snapshot(services).audit == before.audit
    assert counter(services) == 1
    assert first.json()["document"]["result_code"] == f"{DOSSIER}-KQ1"


def test_same_key_other_request_is_a_conflict(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    pdf = make_pdf()
    first = sign(api, credentials, pdf, dossier_code=DOSSIER)
    assert first.status_code == 201, first.text
    before = snapshot(services)
    others = [
        sign(api, credentials, make_pdf(pages=2), dossier_code=DOSSIER),  # another file
        sign(api, credentials, pdf, dossier_code=DOSSIER, profile="agency-a-officer"),
        sign(api, credentials, pdf, dossier_code="000.00.12.H12-261127-0002"),
        sign(api, credentials, pdf, dossier_code=DOSSIER, result_code="auto"),
        sign(api, credentials, pdf, dossier_code=DOSSIER, appearance_kind="none"),
    ]
    for other in others:
        body = other.json()
        assert (other.status_code, body["code"]) == (409, "IDEMPOTENCY_KEY_CONFLICT"), body
        assert "yêu cầu ký khác" in body["message"]
        assert body["details"]["signature_id"] == first.json()["signature_id"]
    assert_nothing_written(before, services)
    # The first request still replays.
    assert sign(api, credentials, pdf, dossier_code=DOSSIER).json() == first.json()


def test_bad_key_is_refused_before_anything(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    before = snapshot(services)
    for bad in ["x" * 129, "a b", "a/b"]:
        response = sign(api, credentials, make_pdf(), key=bad)
        assert (response.status_code, response.json()["code"]) == (
            422,
            "INVALID_IDEMPOTENCY_KEY",
        ), bad
    assert_nothing_written(before, services)


def test_keys_are_per_agency(api: Any, services: Services, credentials: dict[str, Any]) -> None:
    pdf = make_pdf()
    a = sign(api, credentials, pdf)
    assert a.status_code == 201, a.text
    # Agency B sends A's key value (and another request): its own namespace, a new signature.
    b = sign(api, credentials, pdf, agency=1, profile="agency-b-seal")
    assert b.status_code == 201, b.text
    assert b.json()["signature_id"] != a.json()["signature_id"]
    # And B's replay is B's, A's is A's.
    assert sign(api, credentials, pdf, agency=1, profile="agency-b-seal").json() == b.json()
    assert sign(api, credentials, pdf).json() == a.json()


def test_without_a_key_each_request_signs(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    pdf = make_pdf()
    one = sign(api, credentials, pdf, key=None)
    two = sign(api, credentials, pdf, key=None)
    assert (one.status_code, two.status_code) == (201, 201)
    assert one.json()["signature_id"] != two.json()["signature_id"]


def test_concurrent_duplicates_store_one_document(services: Services) -> None:
    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == AGENCY_A)).one()
        session.expunge(agency)
    pdf = make_pdf()
    barrier = threading.Barrier(2)
    results: list[SignResult | BaseException] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(
                sign_document(
                    services,
                    agency,
                    profile_name="agency-a-seal",
                    pdf=pdf,
                    level="B-B",
                    filename="qd.pdf",
                    dossier_code=DOSSIER,
                    result_code="auto",
                    actor="test",
                    idempotency_key=KEY,
                )
            )
        except BaseException as e:  # noqa: BLE001 - asserted below
            results.append(e)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, SignResult) for r in results), results
    first, second = results
    assert isinstance(first, SignResult) and isinstance(second, SignResult)
    assert first.signature_id == second.signature_id
    assert first.document.id == second.document.id
    assert sorted([first.replayed, second.replayed]) == [False, True]
    with services.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1
    assert counter(services) == 1
    # The loser's objects were removed: two documents' worth at most (one signed object,
    # the original is its prefix) plus the evidence.
    keys = [k for k in services.store.list() if k.endswith(".pdf")]
    assert len(keys) == 1, keys


def test_conflict_from_the_service(services: Services) -> None:
    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == AGENCY_A)).one()
        session.expunge(agency)
    common = {"profile_name": "agency-a-seal", "level": "B-B", "actor": "test"}
    sign_document(services, agency, pdf=make_pdf(), idempotency_key="k1", **common)  # type: ignore[arg-type]
    try:
        sign_document(services, agency, pdf=make_pdf(pages=3), idempotency_key="k1", **common)  # type: ignore[arg-type]
    except errors.IdempotencyConflict as e:
        assert e.code == "IDEMPOTENCY_KEY_CONFLICT"
    else:
        raise AssertionError("a second request under the same key was signed")


def start(api: Any, credentials: dict[str, Any], pdf: bytes, key: str | None = KEY) -> Any:
    from pathlib import Path

    headers = auth(credentials)
    if key is not None:
        headers["Idempotency-Key"] = key
    pem = Path(credentials["pki"]["officer_certificate"]).read_bytes()
    return api.post(
        "/v1/signatures/external",
        headers=headers,
        data={"profile": "agency-a-officer", "level": "B-B"},
        files={"file": ("to-trinh.pdf", pdf, "application/pdf"), "certificate": ("o.pem", pem)},
    )


def test_two_step_start_replays_its_session(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    from signing_service.store.models import ExternalSession

    pdf = make_pdf()
    first = start(api, credentials, pdf)
    assert first.status_code == 201, first.text
    again = start(api, credentials, pdf)
    assert again.status_code == 200, again.text
    assert again.json() == first.json()
    other = start(api, credentials, make_pdf(pages=2))
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_KEY_CONFLICT")
    assert other.json()["details"]["session_id"] == first.json()["session_id"]
    # A signing request may use the same key value: another kind of request, another record.
    assert sign(api, credentials, pdf).status_code == 201
    assert start(api, credentials, pdf, key=None).status_code == 201
    with services.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(ExternalSession)) == 2


# --- Batch signing (POST /v1/signatures/batch) with an Idempotency-Key -------------------


def sign_batch_request(
    api: Any,
    credentials: dict[str, Any],
    docs: list[tuple[str, bytes]],
    key: str | None = KEY,
    agency: int = 0,
    profile: str = "agency-a-seal",
    **form: str,
) -> Any:
    files = [("files", (name, data, "application/pdf")) for name, data in docs]
    form = {"profile": profile, "level": "B-B", **form}
    return post_signing(api, "/v1/signatures/batch", credentials, files, key, agency, form)


def _docs() -> list[tuple[str, bytes]]:
    return [
        ("qd-1.pdf", make_pdf(text="Quyet dinh 1")),
        ("hong.pdf", make_pdf(padding_bytes=5000)[:2500]),  # refused alone: MALFORMED_PDF
        ("qd-3.pdf", make_pdf(text="Quyet dinh 3")),
    ]


def test_a_resent_batch_replays_what_was_signed_and_tries_the_rest_again(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    docs = _docs()
    first = sign_batch_request(api, credentials, docs)
    assert first.status_code == 200, first.text
    body = first.json()
    assert (body["signed"], body["failed"]) == (2, 1)
    assert [r.get("replayed") for r in body["results"]] == [None, None, None]
    before = snapshot(services)
    again = sign_batch_request(api, credentials, docs)
    assert again.status_code == 200, again.text
    replay = again.json()
    assert (replay["signed"], replay["failed"]) == (2, 1)
    for old, new in zip(body["results"], replay["results"], strict=True):
        assert new["status"] == old["status"]
        assert new.get("signature_id") == old.get("signature_id")
        assert new.get("document") == old.get("document")
    assert [r.get("replayed") for r in replay["results"]] == [True, None, True]
    # The broken document was tried again (and refused again); nothing was signed or stored.
    assert replay["results"][1]["error"]["code"] == "MALFORMED_PDF"
    assert_nothing_written(before, services)


def test_a_fully_signed_batch_resent_writes_nothing_not_even_audit(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    docs = [(f"qd-{i}.pdf", make_pdf(text=f"Quyet dinh {i}")) for i in range(3)]
    first = sign_batch_request(api, credentials, docs, key="lo-2026-7")
    assert first.status_code == 200 and first.json()["signed"] == 3, first.text
    before = snapshot(services)
    again = sign_batch_request(api, credentials, docs, key="lo-2026-7")
    assert again.status_code == 200
    assert [r["replayed"] for r in again.json()["results"]] == [True, True, True]
    assert_nothing_written(before, services)
    assert snapshot(services).audit == before.audit


def test_the_same_key_with_another_batch_is_a_conflict_and_signs_nothing(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    docs = _docs()
    first = sign_batch_request(api, credentials, docs, key="lo-conflict")
    assert first.status_code == 200, first.text
    first_id = first.json()["results"][0]["signature_id"]
    before = snapshot(services)
    others = [
        docs[:2],  # fewer documents
        [*docs, ("qd-4.pdf", make_pdf(text="Quyet dinh 4"))],  # one more
        [docs[0], docs[1], ("qd-3.pdf", make_pdf(text="Quyet dinh khac"))],  # one changed
        list(reversed(docs)),  # another order
    ]
    for other in others:
        response = sign_batch_request(api, credentials, other, key="lo-conflict")
        assert (response.status_code, response.json()["code"]) == (
            409,
            "IDEMPOTENCY_KEY_CONFLICT",
        ), response.text
    changed_level = sign_batch_request(api, credentials, docs, key="lo-conflict", level="B-T")
    assert changed_level.status_code == 409
    assert changed_level.json()["details"]["signature_id"] == first_id
    assert_nothing_written(before, services)


def test_batch_keys_are_checked_per_agency_and_never_meet_single_requests(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    before = snapshot(services)
    # Too long for a batch (each document is kept under "{key}#{n}"), malformed: refused first.
    for bad in ["k" * 123, "a b", "lo#1"]:
        response = sign_batch_request(api, credentials, _docs(), key=bad)
        assert (response.status_code, response.json()["code"]) == (
            422,
            "INVALID_IDEMPOTENCY_KEY",
        ), bad
    assert_nothing_written(before, services)
    assert sign_batch_request(api, credentials, _docs()[:1], key="k" * 122).status_code == 200
    # A single request under the batch's key value is its own request ("#" keeps them apart).
    single = sign(api, credentials, make_pdf(text="Quyet dinh 1"), key="lo-shared")
    assert single.status_code == 201, single.text
    batch_a = sign_batch_request(api, credentials, _docs()[:1], key="lo-shared")
    assert batch_a.status_code == 200 and batch_a.json()["results"][0].get("replayed") is None
    # Agency B's identical key is B's own.
    batch_b = sign_batch_request(
        api, credentials, _docs()[:1], key="lo-shared", agency=1, profile="agency-b-seal"
    )
    assert batch_b.status_code == 200 and batch_b.json()["signed"] == 1
    assert (
        batch_b.json()["results"][0]["signature_id"] != batch_a.json()["results"][0]["signature_id"]
    )


def test_concurrent_duplicate_batches_store_each_document_once(services: Services) -> None:
    from signing_service.services.signing import sign_batch

    with services.db.transaction() as session:
        agency = session.scalars(select(Agency).where(Agency.code == AGENCY_A)).one()
        session.expunge(agency)
    items: list[tuple[str | None, bytes]] = [
        (f"qd-{i}.pdf", make_pdf(text=f"Quyet dinh {i}")) for i in range(3)
    ]
    barrier = threading.Barrier(2)
    results: list[Any] = []

    def run() -> None:
        barrier.wait()
        try:
            results.append(
                sign_batch(
                    services,
                    agency,
                    profile_name="agency-a-seal",
                    items=items,
                    level="B-B",
                    actor="test",
                    idempotency_key="lo-dong-thoi",
                )
            )
        except BaseException as e:  # noqa: BLE001 - asserted below
            results.append(e)

    with services.db.transaction() as session:
        signatures_before = session.scalar(select(func.count()).select_from(Signature))
    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert all(isinstance(r, list) for r in results), results
    one, two = results
    assert all(isinstance(r, SignResult) for r in [*one, *two]), results
    assert [r.signature_id for r in one] == [r.signature_id for r in two]
    with services.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) - signatures_before == 3


def test_a_batch_whose_first_sending_stored_only_later_places_still_conflicts(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """[broken, good] under K stores only K#2; [other] under K then looked only at K#1, found
    nothing and signed (red team 15, F1). Every K#n the agency has is compared."""
    first = sign_batch_request(
        api, credentials, [_docs()[1], ("qd-2.pdf", make_pdf(text="Quyet dinh 2"))], key="lo-f1"
    )
    assert first.status_code == 200 and first.json()["signed"] == 1, first.text
    before = snapshot(services)
    other = sign_batch_request(
        api, credentials, [("khac.pdf", make_pdf(text="Van ban khac"))], key="lo-f1"
    )
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_KEY_CONFLICT")
    assert other.json()["details"]["signature_id"] == first.json()["results"][1]["signature_id"]
    assert_nothing_written(before, services)
    # Keys are exact: another case is another key (SQLite's LIKE ignores case).
    upper = sign_batch_request(
        api, credentials, [("khac.pdf", make_pdf(text="Van ban khac"))], key="LO-F1"
    )
    assert upper.status_code == 200 and upper.json()["signed"] == 1, upper.text


def test_a_partly_signed_batch_resent_after_its_profile_went_keeps_its_answers(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The resend of a batch whose first sending signed some documents, after the profile was
    disabled: the signed ones still answer (replayed), the others carry the refusal; a
    whole-request 404/422 hid the signed documents' ids (red team 15, F2)."""
    from datetime import UTC, datetime

    from signing_service.store.models import SigningProfile

    docs = _docs()
    first = sign_batch_request(api, credentials, docs, key="lo-f2")
    assert first.status_code == 200 and first.json()["signed"] == 2, first.text
    with services.db.transaction() as session:
        profile = session.scalars(
            select(SigningProfile).where(SigningProfile.name == "agency-a-seal")
        ).one()
        profile.disabled_at = datetime.now(UTC)
    try:
        before = snapshot(services)
        again = sign_batch_request(api, credentials, docs, key="lo-f2")
        assert again.status_code == 200, again.text
        results = again.json()["results"]
        assert [r["status"] for r in results] == ["signed", "failed", "signed"]
        assert [r.get("replayed") for r in results] == [True, None, True]
        assert results[0]["signature_id"] == first.json()["results"][0]["signature_id"]
        assert results[1]["error"]["code"] in ("PROFILE_NOT_FOUND", "PROFILE_DISABLED")
        assert_nothing_written(before, services)
        # Nothing signed before: the whole request is refused as without a key.
        fresh = sign_batch_request(api, credentials, docs, key="lo-f2-moi")
        assert fresh.status_code in (404, 422), fresh.text
    finally:
        with services.db.transaction() as session:
            profile = session.scalars(
                select(SigningProfile).where(SigningProfile.name == "agency-a-seal")
            ).one()
            profile.disabled_at = None


def test_a_repeated_idempotency_key_header_is_refused_everywhere(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Two Idempotency-Key headers: the first silently won (red team 15, F6). Each route that
    takes the header refuses the request (422 INVALID_REQUEST naming it), nothing written."""
    from tests.support.multipart import multipart

    before = snapshot(services)
    pdf = make_pdf()
    requests = [
        ("/v1/signatures", {"profile": "agency-a-seal"}, [("file", "qd.pdf", pdf)]),
        ("/v1/signatures/batch", {"profile": "agency-a-seal"}, [("files", "qd.pdf", pdf)]),
        (
            f"/v1/dossiers/{DOSSIER}/attachments",
            {"component": "application"},
            [("file", "don.pdf", pdf)],
        ),
    ]
    for path, fields, files in requests:
        body, content_type = multipart([*fields.items(), *files])
        headers = [
            ("Authorization", auth(credentials)["Authorization"]),
            ("Content-Type", content_type),
            ("Idempotency-Key", "mot"),
            ("Idempotency-Key", "hai"),
        ]
        response = api.post(path, headers=headers, content=body)
        assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST"), (
            path,
            response.text,
        )
        assert "Idempotency-Key" in response.text
    raw = api.post(
        "/v1/signatures/raw?profile=agency-a-seal",
        headers=[
            ("Authorization", auth(credentials)["Authorization"]),
            ("Content-Type", "application/pdf"),
            ("Idempotency-Key", "mot"),
            ("Idempotency-Key", "hai"),
        ],
        content=pdf,
    )
    assert (raw.status_code, raw.json()["code"]) == (422, "INVALID_REQUEST"), raw.text
    assert_nothing_written(before, services)
