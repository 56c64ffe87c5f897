"""The PAdES level a signature is reported at (ETSI EN 319 142-1 §6): decided by what the
document holds for THAT signature, not by what it holds for others (new user 18 #4: agency
B's B-T countersignature on a document agency A had extended to B-LTA read B-LT, because the
DSS held revocation data about A's certificate)."""

from __future__ import annotations

from sqlalchemy import select

from signing_service.services.container import Services
from signing_service.services.documents import get_document, read_content
from signing_service.services.signing import sign_document
from signing_service.services.verification import verify_document
from signing_service.store.models import Agency
from tests.support.keys import AGENCY_A, AGENCY_B
from tests.support.pdfs import make_pdf


def _agency(services: Services, code: str) -> Agency:
    with services.db.transaction() as session:
        return session.scalars(select(Agency).where(Agency.code == code)).one()


def _sign(services: Services, code: str, profile: str, pdf: bytes, level: str) -> bytes:
    a = _agency(services, code)
    result = sign_document(services, a, profile_name=profile, pdf=pdf, level=level, actor="test")
    return read_content(services, get_document(services, a.id, result.document.id))


def test_countersignature_level_is_its_own(services: Services) -> None:
    first = _sign(services, AGENCY_A, "agency-a-seal", make_pdf(), "B-LTA")
    second = _sign(services, AGENCY_B, "agency-b-seal", first, "B-T")
    report = verify_document(services, second, actor="test")
    levels = [
        (s["signer"]["common_name"], s["level"])
        for s in report["signatures"]
        if s["type"] == "signature"
    ]
    assert levels == [
        ("Sở Tư pháp tỉnh Demo A", "B-LTA"),
        ("UBND xã Demo B", "B-T"),
    ], levels
