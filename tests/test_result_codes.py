"""Result codes {dossier_code}-KQ{n} (Nghị định 45/2020 Art. 14.3) and codes in batches.

Issue 10: result codes were refused as INVALID_DOSSIER_CODE and the batch endpoint dropped a
``dossier_code`` field silently. Result codes are accepted where dossier codes are, assigned on
request (``result_code=auto``: the dossier's next number, unique under concurrency, on SQLite
and PostgreSQL), stored on the signed document and returned; the batch takes codes per
document and refuses fields it does not take.
"""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import select

from signing_service import errors
from signing_service.services.container import Services
from signing_service.services.documents import (
    AUTO,
    DocumentCodes,
    check_codes,
    resolve_result_code,
)
from signing_service.services.signing import sign_document
from signing_service.store.models import Agency, AuditEntry, ResultCodeCounter
from tests.support.keys import AGENCY_A
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot

DOSSIER = "000.00.12.H12-261127-0001"
OTHER_DOSSIER = "000.00.12.H12-261127-0002"
B_DOSSIER = "000.00.31.H26-261127-0001"


def auth(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['api_key']}"}


@pytest.mark.parametrize(
    ("dossier", "result", "expected"),
    [
        (DOSSIER, None, DocumentCodes(DOSSIER, None)),
        (f"{DOSSIER}-KQ1", None, DocumentCodes(DOSSIER, f"{DOSSIER}-KQ1")),
        (f"{DOSSIER}-KQ12", f"{DOSSIER}-KQ12", DocumentCodes(DOSSIER, f"{DOSSIER}-KQ12")),
        (None, f"{DOSSIER}-KQ3", DocumentCodes(DOSSIER, f"{DOSSIER}-KQ3")),
        (DOSSIER, f"{DOSSIER}-KQ3", DocumentCodes(DOSSIER, f"{DOSSIER}-KQ3")),
        (DOSSIER, "auto", DocumentCodes(DOSSIER, AUTO)),
        ("", "", DocumentCodes(None, None)),
    ],
)
def test_codes_accepted(dossier: str | None, result: str | None, expected: DocumentCodes) -> None:
    assert check_codes(dossier, result, AGENCY_A) == expected


@pytest.mark.parametrize(
    ("dossier", "result", "code"),
    [
        (f"{DOSSIER}-KQ0", None, "INVALID_DOSSIER_CODE"),  # n starts at 1
        (f"{DOSSIER}-KQ01", None, "INVALID_DOSSIER_CODE"),  # one spelling per number
        (f"{DOSSIER}-KQ1\n", None, "INVALID_DOSSIER_CODE"),
        (None, f"{DOSSIER}-KQ01", "INVALID_RESULT_CODE"),
        (None, f"{DOSSIER}-KQ1234567", "INVALID_RESULT_CODE"),
        (None, f"{DOSSIER}-kq1", "INVALID_RESULT_CODE"),
        (None, f"{DOSSIER}-KQ١", "INVALID_RESULT_CODE"),  # a non-ASCII digit
        (None, f"{B_DOSSIER}-KQ1", "INVALID_RESULT_CODE"),  # another agency's
        (None, "000.00.12.H12-261327-0001-KQ1", "INVALID_RESULT_CODE"),  # month 13
        (OTHER_DOSSIER, f"{DOSSIER}-KQ1", "INVALID_RESULT_CODE"),  # another dossier's
        (f"{DOSSIER}-KQ1", f"{DOSSIER}-KQ2", "INVALID_RESULT_CODE"),  # two different results
        (None, "auto", "RESULT_CODE_NEEDS_DOSSIER"),
        (None, "AUTO", "INVALID_RESULT_CODE"),
        # Strict: white space around "auto" is not "auto" (red team issue 10, F8).
        (DOSSIER, " auto", "INVALID_RESULT_CODE"),
        (DOSSIER, "auto ", "INVALID_RESULT_CODE"),
        (DOSSIER, "auto\n", "INVALID_RESULT_CODE"),
    ],
)
def test_codes_refused(dossier: str | None, result: str | None, code: str) -> None:
    with pytest.raises(errors.ServiceError) as refused:
        check_codes(dossier, result, AGENCY_A)
    assert (refused.value.status, refused.value.code) == (422, code)


def _sign(api: Any, credentials: dict[str, Any], **form: str) -> Any:
    return api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B", **form},
        files={"file": ("kq.pdf", make_pdf(), "application/pdf")},
    )


def test_result_codes_given_and_assigned(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    # A result code where a dossier code goes (issue 10: refused as INVALID_DOSSIER_CODE).
    given = _sign(api, credentials, dossier_code=f"{DOSSIER}-KQ2")
    assert given.status_code == 201, given.text
    document = given.json()["document"]
    assert (document["dossier_code"], document["result_code"]) == (DOSSIER, f"{DOSSIER}-KQ2")
    assert given.json()["input_document"]["result_code"] is None  # the unsigned draft
    shown = api.get(f"/v1/documents/{document['id']}", headers=auth(credentials)).json()
    assert shown["result_code"] == f"{DOSSIER}-KQ2"

    # auto: the dossier's next number, after the highest one used (2, given above).
    assigned = [
        _sign(api, credentials, dossier_code=DOSSIER, result_code="auto").json()["document"]
        for _ in range(2)
    ]
    assert [d["result_code"] for d in assigned] == [f"{DOSSIER}-KQ3", f"{DOSSIER}-KQ4"]
    # A given number beyond the counter moves it; a lower one does not.
    assert _sign(api, credentials, result_code=f"{DOSSIER}-KQ9").status_code == 201
    assert _sign(api, credentials, result_code=f"{DOSSIER}-KQ1").status_code == 201
    after = _sign(api, credentials, dossier_code=DOSSIER, result_code="auto").json()
    assert after["document"]["result_code"] == f"{DOSSIER}-KQ10"
    # Numbers are per dossier, and per agency.
    other = _sign(api, credentials, dossier_code=OTHER_DOSSIER, result_code="auto").json()
    assert other["document"]["result_code"] == f"{OTHER_DOSSIER}-KQ1"
    # The audit entry records the code.
    with services.db.transaction() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.subject == other["signature_id"])
        ).one()
    assert json.loads(entry.details)["result_code"] == f"{OTHER_DOSSIER}-KQ1"


@pytest.mark.parametrize(
    ("form", "code"),
    [
        ({"result_code": "auto"}, "RESULT_CODE_NEEDS_DOSSIER"),
        ({"dossier_code": OTHER_DOSSIER, "result_code": f"{DOSSIER}-KQ1"}, "INVALID_RESULT_CODE"),
        ({"result_code": f"{B_DOSSIER}-KQ1"}, "INVALID_RESULT_CODE"),
        ({"dossier_code": f"{DOSSIER}-KQ01"}, "INVALID_DOSSIER_CODE"),
        ({"result_codes": "auto"}, "INVALID_REQUEST"),  # misspelt: refused, not ignored
    ],
)
def test_result_code_refusals_write_nothing(
    api: Any, services: Services, credentials: dict[str, Any], form: dict[str, str], code: str
) -> None:
    before = snapshot(services)
    refused = _sign(api, credentials, **form)
    assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text
    assert_nothing_written(before, services)


@pytest.mark.parametrize("value", [" auto", "auto ", "\tauto"])
def test_auto_with_white_space_is_refused_through_the_api(
    api: Any, services: Services, credentials: dict[str, Any], value: str
) -> None:
    before = snapshot(services)
    refused = _sign(api, credentials, dossier_code=DOSSIER, result_code=value)
    assert (refused.status_code, refused.json()["code"]) == (422, "INVALID_RESULT_CODE")
    assert_nothing_written(before, services)


def test_auto_never_assigns_beyond_the_last_number(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Red team issue 10, F8: after KQ999999 ``auto`` answered KQ1000000, a code refused
    everywhere else. Now 422 RESULT_CODE_EXHAUSTED, nothing stored, counter unchanged."""
    last = _sign(api, credentials, result_code=f"{DOSSIER}-KQ999999")
    assert last.status_code == 201, last.text
    before = snapshot(services)
    for _ in range(2):
        refused = _sign(api, credentials, dossier_code=DOSSIER, result_code="auto")
        assert refused.status_code == 422, refused.text
        assert refused.json()["code"] == "RESULT_CODE_EXHAUSTED"
        assert refused.json()["details"] == {"dossier_code": DOSSIER}
    assert_nothing_written(before, services)
    agency = _agency(services, AGENCY_A)
    with services.db.transaction() as session:
        counter = session.scalars(
            select(ResultCodeCounter).where(
                ResultCodeCounter.agency_id == agency.id,
                ResultCodeCounter.dossier_code == DOSSIER,
            )
        ).one()
        assert counter.last_number == 999_999
    # Given codes of the dossier, and other dossiers, still work.
    assert _sign(api, credentials, result_code=f"{DOSSIER}-KQ5").status_code == 201
    other = _sign(api, credentials, dossier_code=OTHER_DOSSIER, result_code="auto")
    assert other.json()["document"]["result_code"] == f"{OTHER_DOSSIER}-KQ1"


def _agency(services: Services, code: str) -> Agency:
    with services.db.transaction() as session:
        return session.scalars(select(Agency).where(Agency.code == code)).one()


def test_concurrent_assignment_is_unique(services: Services) -> None:
    """Eight transactions ask for the same dossier's next number at once (a barrier lines
    them up); each gets its own, 1 to 8, on SQLite and PostgreSQL alike."""
    agency = _agency(services, AGENCY_A)
    workers = 8
    barrier = threading.Barrier(workers)

    def assign() -> str:
        barrier.wait(timeout=30)
        with services.db.transaction() as session:
            code = resolve_result_code(session, agency.id, DocumentCodes(DOSSIER, AUTO))
        assert code is not None
        return code

    with ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(lambda _: assign(), range(workers)))
    assert sorted(codes, key=lambda c: int(c.rsplit("KQ", 1)[1])) == [
        f"{DOSSIER}-KQ{n}" for n in range(1, workers + 1)
    ]


def test_rolled_back_store_leaves_no_gap(services: Services) -> None:
    agency = _agency(services, AGENCY_A)

    class Abort(Exception):
        pass

    with pytest.raises(Abort), services.db.transaction() as session:
        assert resolve_result_code(session, agency.id, DocumentCodes(DOSSIER, AUTO)) == (
            f"{DOSSIER}-KQ1"
        )
        raise Abort
    with services.db.transaction() as session:
        assert resolve_result_code(session, agency.id, DocumentCodes(DOSSIER, AUTO)) == (
            f"{DOSSIER}-KQ1"
        )


def test_exhausted_counter_refuses_auto_at_storing_too(services: Services) -> None:
    """The decision at storing (the check before signing reads without a lock): the
    transaction that would assign KQ1000000 raises and rolls the increment back."""
    agency = _agency(services, AGENCY_A)
    with services.db.transaction() as session:
        given = DocumentCodes(DOSSIER, f"{DOSSIER}-KQ999999")
        assert resolve_result_code(session, agency.id, given) == f"{DOSSIER}-KQ999999"
    for _ in range(2):
        with pytest.raises(errors.ServiceError) as refused, services.db.transaction() as session:
            resolve_result_code(session, agency.id, DocumentCodes(DOSSIER, AUTO))
        assert (refused.value.status, refused.value.code) == (422, "RESULT_CODE_EXHAUSTED")
    with services.db.transaction() as session:
        last = session.scalars(
            select(ResultCodeCounter.last_number).where(
                ResultCodeCounter.agency_id == agency.id,
                ResultCodeCounter.dossier_code == DOSSIER,
            )
        ).one()
    assert last == 999_999


def test_exhausted_counter_refuses_two_step_before_step_one(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    from tests.test_external import start

    agency = _agency(services, AGENCY_A)
    with services.db.transaction() as session:
        resolve_result_code(session, agency.id, DocumentCodes(DOSSIER, f"{DOSSIER}-KQ999999"))
    before = snapshot(services)
    refused = start(api, services, credentials, dossier_code=DOSSIER, result_code="auto")
    assert (refused.status_code, refused.json()["code"]) == (422, "RESULT_CODE_EXHAUSTED")
    assert_nothing_written(before, services)


def test_concurrent_signatures_get_distinct_codes(services: Services) -> None:
    """End to end: signatures of one dossier signed and stored concurrently."""
    agency = _agency(services, AGENCY_A)
    workers = 4
    barrier = threading.Barrier(workers)

    def sign(i: int) -> str:
        barrier.wait(timeout=30)
        result = sign_document(
            services,
            agency,
            profile_name="agency-a-seal",
            pdf=make_pdf(f"Ket qua {i}"),
            level="B-B",
            dossier_code=DOSSIER,
            result_code="auto",
            actor="test",
        )
        assert result.document.result_code is not None
        return result.document.result_code

    with ThreadPoolExecutor(workers) as pool:
        codes = list(pool.map(sign, range(workers)))
    assert sorted(codes) == [f"{DOSSIER}-KQ{n}" for n in range(1, workers + 1)]


def _batch(api: Any, credentials: dict[str, Any], count: int, **form: str) -> Any:
    return api.post(
        "/v1/signatures/batch",
        headers=auth(credentials),
        data={"profile": "agency-a-seal", "level": "B-B", **form},
        files=[
            ("files", ("same.pdf", make_pdf(f"Van ban {i}"), "application/pdf"))
            for i in range(count)
        ],
    )


def test_batch_takes_codes_per_document(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    codes = [
        {"dossier_code": DOSSIER, "result_code": "auto"},
        None,
        {"dossier_code": f"{OTHER_DOSSIER}-KQ4"},
        {"dossier_code": DOSSIER, "result_code": "auto"},
    ]
    done = _batch(api, credentials, 4, codes=json.dumps(codes))
    assert done.status_code == 200, done.text
    results = done.json()["results"]
    assert [r["status"] for r in results] == ["signed"] * 4
    got = [(r["document"]["dossier_code"], r["document"]["result_code"]) for r in results]
    assert got == [
        (DOSSIER, f"{DOSSIER}-KQ1"),
        (None, None),
        (OTHER_DOSSIER, f"{OTHER_DOSSIER}-KQ4"),
        (DOSSIER, f"{DOSSIER}-KQ2"),
    ]
    stored = api.get(f"/v1/documents/{results[3]['document']['id']}", headers=auth(credentials))
    assert stored.json()["result_code"] == f"{DOSSIER}-KQ2"


@pytest.mark.parametrize(
    ("form", "code", "details"),
    [
        # Issue 10: a batch-level dossier_code was dropped silently.
        ({"dossier_code": DOSSIER}, "INVALID_REQUEST", None),
        ({"codes": "[{"}, "INVALID_DOCUMENT_CODES", None),
        ({"codes": json.dumps([None])}, "INVALID_DOCUMENT_CODES", {"files": 2, "codes": 1}),
        ({"codes": json.dumps({"0": DOSSIER})}, "INVALID_DOCUMENT_CODES", None),
        (
            {"codes": json.dumps([None, {"dossier": DOSSIER}])},
            "INVALID_DOCUMENT_CODES",
            {"index": 1},
        ),
        (
            {"codes": json.dumps([None, {"dossier_code": 5}])},
            "INVALID_DOCUMENT_CODES",
            {"index": 1},
        ),
        (
            {"codes": json.dumps([{"dossier_code": DOSSIER}, {"dossier_code": B_DOSSIER}])},
            "INVALID_DOSSIER_CODE",
            {"index": 1},
        ),
        (
            {"codes": json.dumps([{"result_code": "auto"}, None])},
            "RESULT_CODE_NEEDS_DOSSIER",
            {"index": 0},
        ),
    ],
)
def test_batch_code_refusals_sign_nothing(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    form: dict[str, str],
    code: str,
    details: dict[str, Any] | None,
) -> None:
    before = snapshot(services)
    refused = _batch(api, credentials, 2, **form)
    assert (refused.status_code, refused.json()["code"]) == (422, code), refused.text
    if details is not None:
        assert details.items() <= refused.json()["details"].items()
    if code == "INVALID_REQUEST":
        assert "dossier_code" in refused.json()["details"]["fields"]
    assert_nothing_written(before, services)
