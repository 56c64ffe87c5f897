"""Verification catches tampering; the third-party corpus gets the verdicts it must."""

from __future__ import annotations

import asyncio
import csv
from io import BytesIO
from pathlib import Path

import pytest
from certomancer.registry import KeyLabel
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.signers.pdf_signer import PdfTimeStamper
from pyhanko.sign.timestamps.dummy_client import DummyTimeStamper

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.trust import TrustStore
from signing_service.verification.validate import UnreadablePdfError, Verifier
from tests.conftest import CORPUS, REPO
from tests.support.pdfs import make_pdf


@pytest.fixture(scope="module")
def verifier(dev_pki: tuple[DevPki, int]) -> Verifier:
    pki, _ = dev_pki
    trust = TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=3
    )
    return Verifier(trust)


@pytest.fixture(scope="module")
def signed(dev_pki: tuple[DevPki, int]) -> bytes:
    pki, _ = dev_pki
    key = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    return asyncio.run(
        async_sign_pdf(
            make_pdf(pages=2), key, SignOptions(level=SignatureLevel.B_T, tsa_url=pki.tsa_url)
        )
    )


def verify(verifier: Verifier, data: bytes) -> dict:  # type: ignore[type-arg]
    return asyncio.run(verifier.async_verify(data)).to_dict()


def test_intact_document_passes(verifier: Verifier, signed: bytes) -> None:
    assert verify(verifier, signed)["verdict"] == "TOTAL_PASSED"


def test_one_changed_byte_fails(verifier: Verifier, signed: bytes) -> None:
    # Change one byte of the page content ("trang 1" -> "trang 2"), inside the signed range.
    at = signed.index(b"trang 1")
    tampered = signed[: at + 6] + b"2" + signed[at + 7 :]
    report = verify(verifier, tampered)
    assert report["verdict"] == "TOTAL_FAILED"
    sig = report["signatures"][0]
    assert sig["checks"]["integrity"]["status"] == "FAILED"
    assert sig["sub_indication"] == "HASH_FAILURE"


def test_content_added_by_incremental_update_fails_modifications(
    verifier: Verifier, signed: bytes
) -> None:
    writer = IncrementalPdfFileWriter(BytesIO(signed))
    page_ref = writer.root["/Pages"]["/Kids"][0]
    page = page_ref.get_object()
    extra = writer.add_object(
        generic.StreamObject(stream_data=b"BT /F1 14 Tf 72 700 Td (SO TIEN: 9.000.000 VND) Tj ET")
    )
    page["/Contents"] = generic.ArrayObject([page.raw_get("/Contents"), extra])
    writer.update_container(page)
    out = BytesIO()
    writer.write(out)
    report = verify(verifier, out.getvalue())
    assert report["verdict"] == "TOTAL_FAILED"
    sig = report["signatures"][0]
    assert sig["checks"]["integrity"]["status"] == "PASSED"
    assert sig["checks"]["modifications"]["status"] == "FAILED"
    assert sig["checks"]["modifications"]["code"] == "DISALLOWED_CHANGES"


def test_appended_bytes_without_eof_fail(verifier: Verifier, signed: bytes) -> None:
    """Incremental Saving Attack variant: an appended revision with no closing %%EOF."""
    appended = signed + b"\n99 0 obj\n<< /Type /Annot /Subtype /FreeText >>\nendobj\n"
    report = verify(verifier, appended)
    assert report["verdict"] == "TOTAL_FAILED"
    sig = report["signatures"][0]
    # The signed revision is intact; what follows it is not allowed.
    assert sig["checks"]["integrity"]["code"] == "INTACT"
    assert sig["checks"]["modifications"]["code"] == "UNCOVERED_TRAILING_BYTES"
    assert report["message"].startswith("Chữ ký hợp lệ nhưng tài liệu đã bị sửa sau khi ký")


def test_appended_objects_with_empty_xref_fail(verifier: Verifier, signed: bytes) -> None:
    """Incremental Saving Attack variant: objects appended behind an empty xref section."""
    start = len(signed) + 1
    appended = (
        signed
        + b"\n99 0 obj\n<< /Type /Annot /Subtype /FreeText >>\nendobj\n"
        + b"xref\n0 0\ntrailer\n<< /Size 100 /Root 1 0 R /Prev "
        + str(signed.rindex(b"startxref")).encode()
        + b" >>\nstartxref\n"
        + str(start + 49).encode()
        + b"\n%%EOF\n"
    )
    report = verify(verifier, appended)
    assert report["verdict"] == "TOTAL_FAILED", report


def _behind_empty_xref(data: bytes, body: bytes) -> bytes:
    """An update redefining the first page's content stream whose xref section lists nothing."""
    prev = int(data[data.rindex(b"startxref") + 9 :].split()[0])
    reader = PdfFileReader(BytesIO(data), strict=False)
    contents = reader.root["/Pages"]["/Kids"][0].raw_get("/Contents")
    number = contents.idnum if isinstance(contents, generic.IndirectObject) else 99
    out = data + b"\n%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    size = reader.trailer["/Size"]
    root = reader.trailer.raw_get("/Root")
    return out + (
        b"xref\n0 0\ntrailer\n<< /Size %d /Root %d %d R /Prev %d >>\nstartxref\n%d\n%%%%EOF\n"
        % (size, root.idnum, root.generation, prev, xref_at)
    )


@pytest.mark.parametrize("timestamps", [1, 2])
def test_stray_objects_stay_found_behind_document_timestamps(
    verifier: Verifier, signed: bytes, dev_pki: tuple[DevPki, int], timestamps: int
) -> None:
    """Anyone can have a trusted TSA timestamp the file after hiding a changed page behind an
    empty xref: whichever is checked first (the older of two timestamps is not whole-file and
    scans too), the signature's own scan must still see the object: it starts at the
    signature's end, not a timestamp's."""
    pki, _ = dev_pki
    text = b"BT /F1 14 Tf 72 760 Td (SO TIEN: 9.000.000 VND) Tj ET"
    hidden = _behind_empty_xref(
        signed, b"<< /Length %d >>\nstream\n%s\nendstream" % (len(text), text)
    )
    assert verify(verifier, hidden)["verdict"] == "TOTAL_FAILED"
    tsa = DummyTimeStamper(pki.cert("tsa"), pki.arch.key_set.get_private_key(KeyLabel("tsa")))
    data = hidden
    for n in range(timestamps):
        out = BytesIO()
        PdfTimeStamper(tsa, field_name=f"DocTS{n}").timestamp_pdf(
            IncrementalPdfFileWriter(BytesIO(data), strict=False), "sha256", output=out
        )
        data = out.getvalue()
    report = verify(verifier, data)
    assert report["verdict"] == "TOTAL_FAILED", report
    first = report["signatures"][0]
    assert first["type"] == "signature"
    assert first["checks"]["modifications"]["code"] == "UNREFERENCED_OBJECTS", first["checks"]


def test_unsigned_pdf_has_its_own_verdict(verifier: Verifier) -> None:
    report = verify(verifier, make_pdf())
    assert report["verdict"] == "NO_SIGNATURE"
    assert report["signatures"] == []


def test_truncated_signed_pdf_is_failed_not_unsigned(verifier: Verifier, signed: bytes) -> None:
    report = verify(verifier, signed[: len(signed) * 2 // 3])
    assert report["verdict"] == "TOTAL_FAILED"
    assert report["sub_indication"] == "FORMAT_FAILURE"


def test_truncated_unsigned_pdf_is_an_error(verifier: Verifier) -> None:
    data = make_pdf(padding_bytes=4000)
    with pytest.raises(UnreadablePdfError):
        verify(verifier, data[:300])


def test_untrusted_signer_is_indeterminate(signed: bytes) -> None:
    trust = TrustStore.load(REPO / "certs/trust/anchors.json")  # no dev root
    report = verify(Verifier(trust), signed)
    assert report["verdict"] == "INDETERMINATE"
    assert report["sub_indication"] == "NO_CERTIFICATE_CHAIN_FOUND"


def _manifest() -> list[dict[str, str]]:
    path = CORPUS / "MANIFEST.tsv"
    if not path.exists():
        return []
    with path.open() as f:
        return list(csv.DictReader(f, delimiter="\t"))


CASES = _manifest()


@pytest.mark.corpus
@pytest.mark.skipif(not CASES, reason=f"{CORPUS} is absent (a user's clone has no ../shared)")
@pytest.mark.parametrize("case", CASES, ids=[c["file"] for c in CASES])
def test_corpus_verdict(verifier: Verifier, case: dict[str, str]) -> None:
    data = (CORPUS / case["file"]).read_bytes()
    report = verify(verifier, data)
    expected = case["expected"]
    statuses = [c["status"] for s in report["signatures"] for c in s["checks"].values()]
    if expected == "INVALID":
        assert report["verdict"] == "TOTAL_FAILED", report
    elif expected == "VALID":
        assert report["signatures"], "a signed file must never be reported unsigned"
        assert "FAILED" not in statuses, report
        assert report["verdict"] == "INDETERMINATE"  # signers are not in our trust store
    else:  # MIXED: one signature intact, one broken
        indications = sorted(s["indication"] for s in report["signatures"])
        assert indications == ["INDETERMINATE", "TOTAL_FAILED"], report
        assert report["verdict"] == "TOTAL_FAILED"


def test_corpus_manifest_covers_every_file() -> None:
    if not CASES:
        pytest.skip(f"{CORPUS} is absent")
    listed = {c["file"] for c in CASES}
    present = {str(p.relative_to(CORPUS)) for p in Path(CORPUS).rglob("*.pdf")}
    assert present == listed


def test_service_verification_report_is_audited(services: Services, signed: bytes) -> None:
    from signing_service.services.verification import verify_document
    from tests.support.state import snapshot

    before = snapshot(services).audit
    report = verify_document(services, signed, actor="test")
    assert report["verdict"] == "TOTAL_PASSED"
    assert snapshot(services).audit == before + 1


def test_a_document_verified_again_gets_the_same_report(verifier: Verifier, signed: bytes) -> None:
    """Byte-determined results are kept per document (signing_service/verification/memo.py):
    the second verification must say exactly what the first said."""
    from signing_service.verification.memo import FACTS

    FACTS.clear()
    first = verify(verifier, signed)
    second = verify(verifier, signed)
    for report in (first, second):
        report.pop("validated_at")
        report.pop("validation_time")
        for sig in report["signatures"]:
            sig.pop("validation_time")
    assert first == second


def test_kept_results_never_cover_a_changed_document(verifier: Verifier, signed: bytes) -> None:
    from signing_service.verification.memo import FACTS

    FACTS.clear()
    assert verify(verifier, signed)["verdict"] == "TOTAL_PASSED"
    at = signed.index(b"trang 1")
    tampered = signed[: at + 6] + b"2" + signed[at + 7 :]
    assert verify(verifier, tampered)["verdict"] == "TOTAL_FAILED"
    assert verify(verifier, signed)["verdict"] == "TOTAL_PASSED"


def _live_readers() -> int:
    import gc

    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, PdfFileReader))


def test_verified_documents_do_not_stay_in_memory(
    verifier: Verifier, signed: bytes, dev_pki: tuple[DevPki, int]
) -> None:
    """Issue 9 (the server under 500 MB): after its answer, nothing of a verified document's
    parsed form stays in the process — not through the per-revision page cache, not through the
    per-document memo (which keeps results, never pyHanko objects). Once leaked, every public
    verification of a 25-signature file kept ~1 MB for good."""
    from signing_service.verification.memo import FACTS

    pki, _ = dev_pki
    key = load_pkcs12_file(pki.p12_path("agency-b-seal"), DEV_KEY_PASSPHRASE.encode())
    # A second signature changes a form field: the memo keeps that field's name.
    twice = asyncio.run(async_sign_pdf(signed, key, SignOptions(level=SignatureLevel.B_B)))
    FACTS.clear()
    before = _live_readers()
    for _ in range(3):
        assert verify(verifier, twice)["verdict"] == "TOTAL_PASSED"
    assert _live_readers() == before
