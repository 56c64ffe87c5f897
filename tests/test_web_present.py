"""The citizen's view of a verification report (signing_service/web/present.py): built from
reports of real documents signed and verified here with the dev PKI, and every code the verifier
can emit has a plain-Vietnamese sentence and a "why this matters" line."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest

from signing_service.pki.dev import DevPki
from signing_service.signing.policy import ALGORITHM_MESSAGES
from signing_service.trust import TrustStore
from signing_service.verification import limits
from signing_service.verification.messages import MESSAGES
from signing_service.verification.validate import Verifier
from signing_service.web.present import CITIZEN_TEXTS, REVOCATION_STATUS_TEXTS, present
from tests.conftest import REPO
from tests.support.pdfs import make_pdf
from tests.test_verification_report import dev_sign

# Codes whose meaning is good news: a sentence, no warning.
GOOD = {
    "INTACT",
    "NO_CHANGES",
    "LTV_UPDATES_ONLY",
    "ALLOWED_FORM_FILLING",
    "CHAIN_TRUSTED",
    "CHAIN_TRUSTED_AT_SIGNING_TIME",
    "NOT_REVOKED",
    "NOT_REVOKED_AT_SIGNING_TIME",
    "TIMESTAMP_VALID",
    "ALGORITHMS_OK",
    "SIGNED_AFTER_VALIDATION_TIME",
}


@pytest.fixture(scope="module")
def verifier(dev_pki: tuple[DevPki, int]) -> Verifier:
    pki, _ = dev_pki
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )
    return Verifier(trust)


@pytest.fixture(scope="module")
def signed(dev_pki: tuple[DevPki, int]) -> bytes:
    return dev_sign(dev_pki[0], make_pdf("Giay xac nhan so 42/GXN"), "B-T")


def verify(verifier: Verifier, data: bytes) -> dict[str, Any]:
    # Through JSON, as the page receives it from the verification workers.
    return json.loads(json.dumps(asyncio.run(verifier.async_verify(data)).to_dict()))


def test_every_code_the_verifier_emits_has_citizen_words() -> None:
    codes = set(MESSAGES) | set(limits.MESSAGES) | set(ALGORITHM_MESSAGES)
    missing = sorted(codes - set(CITIZEN_TEXTS))
    assert not missing, missing
    for code in codes - GOOD:
        assert CITIZEN_TEXTS[code].why, f"{code} has no 'why this matters' line"
    for text in CITIZEN_TEXTS.values():
        assert text.text.endswith((".", "…")), text.text


def test_every_revocation_status_the_report_gives_has_words() -> None:
    """The statuses a report's revocation_data carries (verification/report.py
    RevocationDataInfo: good | revoked | not_listed | unknown) each read in Vietnamese: a CRL
    that does not list the certificate was shown as "không rõ" (new user 18 #3)."""
    for status in ("good", "revoked", "not_listed", "unknown"):
        assert status in REVOCATION_STATUS_TEXTS, status
    assert "chưa bị thu hồi" in REVOCATION_STATUS_TEXTS["not_listed"]


def test_valid_signature(verifier: Verifier, signed: bytes) -> None:
    view = present(verify(verifier, signed))
    assert view.state == "valid"
    assert view.state_label == "Hợp lệ"
    assert view.icon == "check"
    assert view.lead.startswith("Chữ ký số trên tài liệu hợp lệ")
    (sig,) = view.signatures
    assert sig.kind == "seal"  # the dev agency's seal certificate
    assert sig.name and "Demo" in sig.name
    assert sig.time_proven and "dấu thời gian" in sig.time_proof
    assert sig.signed_at and sig.signed_at.endswith("(giờ Việt Nam)")
    assert sig.valid_from and sig.valid_to
    assert {c.name for c in sig.checks} >= {"integrity", "trust", "revocation", "timestamp"}
    assert all(c.status == "PASSED" for c in sig.checks)
    # The dev PKI is a test PKI: the citizen is told, with why.
    codes = [w.code for w in sig.warnings]
    assert codes == ["DEVELOPMENT_CERTIFICATE"]
    assert sig.warnings[0].why
    assert sig.technical["chain"] and sig.technical["checks"]["integrity"]["code"] == "INTACT"
    assert view.registry is None
    as_dict = view.to_dict()
    assert json.loads(json.dumps(as_dict, ensure_ascii=False))["state"] == "valid"


def test_tampered(verifier: Verifier, signed: bytes) -> None:
    marker = b"Giay xac nhan so 42"
    assert marker in signed
    tampered = signed.replace(marker, b"Giay xac nhan so 99", 1)
    view = present(verify(verifier, tampered))
    assert view.state == "invalid"
    assert view.state_label == "Không hợp lệ"
    assert view.icon == "cross"
    assert view.lead == "Không được tin vào tài liệu này: nội dung đã bị thay đổi sau khi ký."
    (sig,) = view.signatures
    assert sig.state == "invalid"
    hash_warning = next(w for w in sig.warnings if w.code == "HASH_MISMATCH")
    assert "bản gốc" in hash_warning.why


def test_unsigned(verifier: Verifier) -> None:
    view = present(verify(verifier, make_pdf()))
    assert view.state == "indeterminate"
    assert view.state_label == "Chưa xác định được"
    assert "không có chữ ký số" in view.lead
    assert view.signatures == []


def _registry(status: str, **extra: Any) -> dict[str, Any]:
    return {
        "found": True,
        "public_id": "AbC123",
        "link": "http://127.0.0.1:8000/xac-minh/AbC123",
        "agency": {"code": "000.00.00.H01", "name": "Sở Tư pháp tỉnh Demo A"},
        "kind": "seal",
        "dossier_code": "000.00.00.H01-251231-0001",
        "result_code": None,
        "document_number": "42/GXN",
        "issued_at": "2026-11-29T09:00:00+07:00",
        "status": status,
        "status_changed_at": None if status == "in_force" else "2026-11-30T08:00:00+07:00",
        "reason": None,
        "superseded_by": None,
        "signed_further_by": None,
        **extra,
    }


def test_registry_states(verifier: Verifier, signed: bytes) -> None:
    report = verify(verifier, signed)
    in_force = present({**report, "registry": _registry("in_force")})
    assert in_force.state == "valid"
    assert "Sở Tư pháp tỉnh Demo A" in in_force.lead and "đang có hiệu lực" in in_force.lead
    assert (
        in_force.registry
        and in_force.registry.issued_at == "09:00:00 ngày 29/11/2026 (giờ Việt Nam)"
    )

    revoked = present({**report, "registry": _registry("revoked", reason="Cấp nhầm người nhận")})
    assert revoked.state == "invalid" and revoked.signatures_state == "valid"
    assert revoked.lead.startswith("Chữ ký số hợp lệ, nhưng Sở Tư pháp tỉnh Demo A đã thu hồi")
    assert "thu hồi" in revoked.lead and "30/11/2026" in revoked.lead
    assert revoked.registry and revoked.registry.reason == "Cấp nhầm người nhận"

    newer = {"public_id": "XyZ789", "link": "http://127.0.0.1:8000/xac-minh/XyZ789"}
    superseded = present({**report, "registry": _registry("superseded", superseded_by=newer)})
    assert superseded.state == "invalid"
    assert "thay thế" in superseded.lead
    assert superseded.registry and superseded.registry.superseded_by_link == newer["link"]

    unknown = present({**report, "registry": {"found": False}})
    assert unknown.state == "valid"
    assert unknown.registry and not unknown.registry.found
    assert "không phải là lỗi" in unknown.registry.why


def test_unknown_code_keeps_the_reports_message() -> None:
    report = {
        "verdict": "TOTAL_PASSED",
        "signatures": [],
        "warnings": [{"code": "SOMETHING_NEW", "message": "Một cảnh báo mới."}],
    }
    view = present(report)
    assert view.warnings[0].text == "Một cảnh báo mới."
    assert view.warnings[0].why


def test_registry_never_vouches_for_another_organisations_signature(
    verifier: Verifier, signed: bytes
) -> None:
    """New user 12 item 2: a file signed with one organisation's seal, registered under
    another agency: neither the lead nor the registry card says "Đây đúng là văn bản <agency>
    đã cấp"; both names are said."""
    report = verify(verifier, signed)
    signer = next(s for s in report["signatures"] if s["type"] != "document_timestamp")
    organisation = signer["signer"]["organization"]
    other = _registry("in_force", agency={"code": "000.00.31.H26", "name": "UBND xã Thử"})
    view = present({**report, "registry": other})
    assert view.state == "valid"
    assert "Đây đúng là" not in view.lead
    assert "UBND xã Thử" in view.lead and organisation in view.lead
    assert view.registry and "Đây đúng là" not in view.registry.text
    # The agency's own seal: vouched for as before.
    same = present({**report, "registry": _registry("in_force")})
    assert "Đây đúng là văn bản Sở Tư pháp tỉnh Demo A" in same.lead


def test_the_issuer_category_is_said_only_for_a_trusted_hierarchy(
    verifier: Verifier, signed: bytes, dev_pki: tuple[DevPki, int]
) -> None:
    """Under "Đơn vị cấp chứng thư số", "Loại:" is the trust list's category of the issuing
    hierarchy; a chain that reaches no anchor has none (it showed the certificate's own type,
    "chữ ký số cá nhân", as if it were a category: new user 20 #10)."""
    trusted = present(verify(verifier, signed)).signatures[0]
    assert trusted.certificate_type  # the dev root's category
    untrusting = Verifier(TrustStore.load(REPO / "certs/trust/anchors.json"), allow_fetching=False)
    (untrusted,) = present(verify(untrusting, signed)).signatures
    assert untrusted.issuer  # the issuer is still named
    assert untrusted.certificate_type is None


def test_the_same_note_on_two_signatures_is_counted_once(verifier: Verifier, signed: bytes) -> None:
    """A seal and its document timestamp both on the dev PKI carry the same test-certificate
    note: the lead counted it twice ("Có 2 điều cần lưu ý"; new user 22 #8)."""
    import copy

    report = verify(verifier, signed)
    twice = copy.deepcopy(report)
    twice["signatures"].append(copy.deepcopy(report["signatures"][0]))
    one, two = present(report), present(twice)
    assert len(two.signatures) == 2
    assert "Có 1 điều cần lưu ý" in one.lead
    assert "Có 1 điều cần lưu ý" in two.lead, two.lead
