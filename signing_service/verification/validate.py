"""Verify every signature and document timestamp in a PDF (TT 15/2025 Art. 6, Appendix II).

Checks per signature: ``integrity`` (digest, signature value, ByteRange coverage; bytes after
the last revision are never ignored), ``modifications`` (what changed after signing, and whether
it was allowed), ``trust`` (chain to an anchor), ``revocation`` (OCSP else CRL; unknown is a
warning, never a pass), ``timestamp`` and ``algorithms``. Attacks this is built against
(pdf-insecurity 2019–2021): Universal Signature Forgery, Incremental Saving Attack (also with
an empty xref or no final %%EOF), Signature Wrapping, Shadow attacks, certification attacks.
"""

from __future__ import annotations

import hashlib
import itertools
import logging
import re
from datetime import UTC, datetime
from io import BytesIO

from asn1crypto import x509
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel, SuspiciousModification
from pyhanko.sign.validation.dss import DocumentSecurityStore, NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import (
    EmbeddedPdfSignature,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.status import (
    DocumentTimestampStatus,
    PdfSignatureStatus,
    SignatureCoverageLevel,
    SignatureStatus,
    TimestampSignatureStatus,
)
from pyhanko_certvalidator import ValidationContext

from signing_service.signing.appearance import vietnam_time
from signing_service.signing.policy import cert_policy_problem, digest_policy_problem
from signing_service.trust import TrustStore, fingerprint
from signing_service.verification.diff_policy import DIFF_POLICY
from signing_service.verification.report import (
    Check,
    CheckStatus,
    DocumentReport,
    SignatureReport,
    SignerInfo,
)

log = logging.getLogger(__name__)

PASS, FAIL, UNDECIDED, NA = (
    CheckStatus.PASSED,
    CheckStatus.FAILED,
    CheckStatus.INDETERMINATE,
    CheckStatus.NOT_APPLICABLE,
)

MESSAGES: dict[str, str] = {
    # integrity
    "INTACT": "Giá trị băm và chữ ký số khớp với nội dung được ký.",
    "HASH_MISMATCH": "Nội dung đã bị thay đổi: giá trị băm không khớp với giá trị đã ký.",
    "SIGNATURE_VALUE_INVALID": "Giá trị chữ ký số không hợp lệ đối với chứng thư của người ký.",
    "NONSTANDARD_COVERAGE": (
        "Vùng dữ liệu được ký (ByteRange) bất thường: chữ ký không bao phủ trọn một phiên bản "
        "của tài liệu."
    ),
    "UNCOVERED_TRAILING_BYTES": (
        "Có dữ liệu được nối vào cuối tệp sau phiên bản cuối cùng mà không chữ ký nào bao phủ."
    ),
    "SIGNATURE_UNREADABLE": "Không đọc được chữ ký số (cấu trúc chữ ký bị hỏng hoặc không hợp lệ).",
    # modifications
    "NO_CHANGES": "Tài liệu không bị thay đổi sau khi ký.",
    "LTV_UPDATES_ONLY": (
        "Sau khi ký chỉ bổ sung dữ liệu kiểm tra dài hạn (DSS) hoặc dấu thời gian tài liệu."
    ),
    "ALLOWED_FORM_FILLING": "Sau khi ký chỉ có thay đổi được phép (điền biểu mẫu, thêm chữ ký).",
    "ALLOWED_ANNOTATIONS": (
        "Sau khi ký có thêm chú thích (annotation). Chú thích không thuộc nội dung đã ký và có "
        "thể che khuất nội dung: hãy đối chiếu với phiên bản đã ký."
    ),
    "DISALLOWED_CHANGES": "Tài liệu đã bị sửa đổi sau khi ký theo cách không được phép.",
    "DOCMDP_VIOLATION": (
        "Tài liệu đã chứng thực (DocMDP) bị thay đổi vượt quá quyền mà người chứng thực cho phép."
    ),
    "UNREFERENCED_OBJECTS": (
        "Có đối tượng PDF được thêm sau khi ký nhưng không được khai báo trong bảng xref "
        "(dấu hiệu tấn công nối thêm nội dung)."
    ),
    "MODIFICATIONS_UNKNOWN": "Không phân tích được các thay đổi sau khi ký.",
    # trust
    "CHAIN_TRUSTED": "Chứng thư số chuỗi được tới chứng thư gốc tin cậy.",
    "NO_CHAIN_TO_TRUSTED_ROOT": (
        "Không xây dựng được chuỗi chứng thư tới một chứng thư gốc tin cậy."
    ),
    "CERT_EXPIRED_OR_NOT_YET_VALID": (
        "Chứng thư số không còn hiệu lực (hoặc chưa có hiệu lực) tại thời điểm kiểm tra và "
        "không có bằng chứng thời gian hợp lệ."
    ),
    "CHAIN_CONSTRAINTS_FAILED": "Chuỗi chứng thư vi phạm ràng buộc (mục đích sử dụng khóa, …).",
    "CHAIN_REVOKED": "Một chứng thư trong chuỗi đã bị thu hồi.",
    "TRUST_UNDETERMINED": "Không xác định được độ tin cậy của chứng thư số.",
    # revocation
    "NOT_REVOKED": "Chứng thư số chưa bị thu hồi tại thời điểm ký (đã kiểm tra OCSP/CRL).",
    "REVOKED": "Chứng thư số đã bị thu hồi trước thời điểm ký.",
    "REVOKED_NO_POE": (
        "Chứng thư số đã bị thu hồi và không có dấu thời gian chứng minh chữ ký được tạo "
        "trước thời điểm thu hồi."
    ),
    "REVOKED_AFTER_SIGNING": (
        "Chứng thư số bị thu hồi sau thời điểm ký (dấu thời gian chứng minh chữ ký có trước)."
    ),
    "REVOCATION_UNKNOWN": (
        "Không xác định được trạng thái thu hồi của chứng thư số (không có phản hồi OCSP hay "
        "CRL hợp lệ): cảnh báo, chưa thể kết luận."
    ),
    "REVOCATION_NOT_CHECKED": (
        "Chưa kiểm tra trạng thái thu hồi vì chứng thư không chuỗi được tới gốc tin cậy."
    ),
    # timestamp
    "TIMESTAMP_VALID": "Dấu thời gian hợp lệ và do đơn vị cấp dấu thời gian tin cậy cấp.",
    "NO_TIMESTAMP": (
        "Chữ ký không có dấu thời gian; thời điểm ký là thời điểm do người ký tự khai."
    ),
    "TIMESTAMP_INVALID": "Dấu thời gian không hợp lệ (đã bị thay đổi hoặc hỏng).",
    "TIMESTAMP_UNTRUSTED": "Dấu thời gian không do đơn vị cấp dấu thời gian tin cậy cấp.",
    # algorithms
    "ALGORITHMS_OK": "Thuật toán và độ dài khóa đáp ứng quy định.",
    "WEAK_ALGORITHM": (
        "Thuật toán băm hoặc khóa yếu so với quy định hiện hành (RSA ≥ 2048, ECDSA ≥ 256, "
        "SHA-2/SHA-3)."
    ),
    # document-level
    "UNPARSABLE_SIGNED_PDF": (
        "Tệp PDF có chữ ký nhưng cấu trúc bị hỏng, không đọc được: không thể coi là hợp lệ."
    ),
    "UNREACHABLE_SIGNATURE": (
        "Tệp chứa từ điển chữ ký không gắn với trường chữ ký nào của tài liệu (dấu hiệu giả "
        "mạo chữ ký)."
    ),
}


def _check(status: CheckStatus, code: str, sub: str | None = None, extra: str = "") -> Check:
    message = MESSAGES[code] + (f" ({extra})" if extra else "")
    return Check(status, code, message, sub)


class NotPdfError(Exception):
    pass


class UnreadablePdfError(Exception):
    pass


class EncryptedPdfError(Exception):
    pass


# Any of these means the file claims to carry a signature: if it then cannot be parsed, the
# verdict is TOTAL_FAILED, never "unsigned".
SIGNATURE_MARKERS = re.compile(
    rb"/ByteRange|/SigFlags|/FT\s*/Sig\b|/Type\s*/(?:Sig|DocTimeStamp)\b"
    rb"|adbe\.pkcs7|ETSI\.CAdES|ETSI\.RFC3161"
)
OBJ_HEADER = re.compile(rb"(?<![0-9])(\d{1,10})\s+(\d{1,5})\s+obj\b")


def _looks_signed(data: bytes) -> bool:
    return SIGNATURE_MARKERS.search(data) is not None


def _iso(moment: datetime | None) -> str | None:
    return vietnam_time(moment) if moment else None


def _signer_info(cert: x509.Certificate) -> SignerInfo:
    subject = cert.subject.native

    def first(name: str) -> str | None:
        value = subject.get(name)
        if isinstance(value, list):
            value = value[0] if value else None
        return str(value) if value else None

    validity = cert["tbs_certificate"]["validity"]
    return SignerInfo(
        common_name=first("common_name"),
        organization=first("organization_name"),
        title=first("title"),
        subject=cert.subject.human_friendly,
        issuer=cert.issuer.human_friendly,
        serial_number=format(cert.serial_number, "X"),
        certificate_sha256=fingerprint(cert),
        valid_from=_iso(validity["not_before"].native) or "",
        valid_to=_iso(validity["not_after"].native) or "",
    )


def _trailing_garbage(data: bytes) -> bool:
    """Bytes after the last ``%%EOF`` that are not whitespace: an appended, unterminated
    revision (Incremental Saving Attack without a closing %%EOF) that a reader might use."""
    pos = data.rfind(b"%%EOF")
    if pos < 0:
        return True
    return data[pos + 5 :].strip(b"\x00\t\n\x0c\r ") != b""


def _unreferenced_objects_after(reader: PdfFileReader, data: bytes, offset: int) -> list[str]:
    """Object definitions after ``offset`` that no later xref section points to.

    The Incremental Saving Attack variant with an empty (or partial) xref appends objects that
    a repairing viewer uses but a strict parser never sees as a change.
    """
    known: set[int] = set()
    xrefs = reader.xrefs
    for rev in range(xrefs.total_revisions):
        start = xrefs.get_startxref_for_revision(rev)
        known.add(start)
        for ref in xrefs.explicit_refs_in_revision(rev):
            pos = xrefs.get_historical_ref(ref, rev)
            if isinstance(pos, int):
                known.add(pos)
    stray = []
    for match in OBJ_HEADER.finditer(data, offset):
        at = match.start()
        if not any(at + d in known for d in (-2, -1, 0, 1, 2)):
            stray.append(f"{int(match.group(1))} {int(match.group(2))} obj @{at}")
    return stray


def _revinfo_covers(
    vc: ValidationContext, cert: x509.Certificate, issuer: x509.Certificate
) -> bool:
    for resp in vc.ocsps:
        try:
            data = resp["response_bytes"]["response"].parsed["tbs_response_data"]
            for single in data["responses"]:
                cid = single["cert_id"]
                if cid["serial_number"].native != cert.serial_number:
                    continue
                algo = cid["hash_algorithm"]["algorithm"].native
                key_hash = getattr(issuer.public_key, algo, None)
                if key_hash is None or cid["issuer_key_hash"].native == key_hash:
                    return True
        except (KeyError, ValueError, TypeError, AttributeError):
            continue
    for crl in vc.crls:
        try:
            if crl["tbs_cert_list"]["issuer"] == cert.issuer:
                return True
        except (KeyError, ValueError):
            continue
    return False


def _algorithms_check(status: SignatureStatus) -> Check:
    problems = [
        p
        for p in (
            digest_policy_problem(status.md_algorithm),
            cert_policy_problem(status.signing_cert),
        )
        if p
    ]
    if problems:
        return _check(
            UNDECIDED, "WEAK_ALGORITHM", "CRYPTO_CONSTRAINTS_FAILURE_NO_POE", "; ".join(problems)
        )
    return _check(PASS, "ALGORITHMS_OK")


def _integrity_check(status: SignatureStatus, coverage: SignatureCoverageLevel | None) -> Check:
    if not status.intact:
        return _check(FAIL, "HASH_MISMATCH", "HASH_FAILURE")
    if not status.valid:
        return _check(FAIL, "SIGNATURE_VALUE_INVALID", "SIG_CRYPTO_FAILURE")
    if coverage is None or coverage < SignatureCoverageLevel.ENTIRE_REVISION:
        return _check(
            FAIL, "NONSTANDARD_COVERAGE", "FORMAT_FAILURE", coverage.name if coverage else "UNCLEAR"
        )
    return _check(PASS, "INTACT")


def _modifications_check(status: PdfSignatureStatus | DocumentTimestampStatus) -> Check:
    coverage = status.coverage
    if coverage is SignatureCoverageLevel.ENTIRE_FILE:
        return _check(PASS, "NO_CHANGES")
    diff = status.diff_result
    if diff is None:
        return _check(UNDECIDED, "MODIFICATIONS_UNKNOWN", "FORMAT_FAILURE")
    if isinstance(diff, SuspiciousModification):
        return _check(FAIL, "DISALLOWED_CHANGES", "FORMAT_FAILURE", str(diff)[:200])
    level = diff.modification_level
    if level is ModificationLevel.OTHER:
        return _check(FAIL, "DISALLOWED_CHANGES", "FORMAT_FAILURE")
    if status.docmdp_ok is False:
        return _check(FAIL, "DOCMDP_VIOLATION", "FORMAT_FAILURE", level.name)
    if level in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES):
        return _check(PASS, "LTV_UPDATES_ONLY")
    if level is ModificationLevel.FORM_FILLING:
        return _check(PASS, "ALLOWED_FORM_FILLING")
    return _check(PASS, "ALLOWED_ANNOTATIONS")


def _trust_and_revocation(
    status: SignatureStatus,
    vc: ValidationContext,
    proven_time: datetime | None,
    claimed_time: datetime | None,
) -> tuple[Check, Check]:
    indic = status.trust_problem_indic
    indic_name = indic.name if indic is not None else None
    if status.revoked:
        details = status.revocation_details
        assert details is not None
        revoked_at = details.revocation_date
        chain_check = _check(PASS, "CHAIN_TRUSTED")
        if details.ca_revoked:
            chain_check = _check(FAIL, "CHAIN_REVOKED", "REVOKED")
        if proven_time is not None and revoked_at > proven_time:
            return chain_check, _check(
                PASS, "REVOKED_AFTER_SIGNING", extra=f"thu hồi lúc {_iso(revoked_at)}"
            )
        reference = proven_time or claimed_time
        if reference is not None and revoked_at <= reference:
            return chain_check, _check(
                FAIL, "REVOKED", "REVOKED", f"thu hồi lúc {_iso(revoked_at)}"
            )
        return chain_check, _check(
            UNDECIDED, "REVOKED_NO_POE", "REVOKED_NO_POE", f"thu hồi lúc {_iso(revoked_at)}"
        )

    no_chain = indic_name in (
        None,
        "NO_CERTIFICATE_CHAIN_FOUND",
        "CERTIFICATE_CHAIN_GENERAL_FAILURE",
    )
    if (status.validation_path is None or indic_name == "NO_CERTIFICATE_CHAIN_FOUND") and no_chain:
        return (
            _check(UNDECIDED, "NO_CHAIN_TO_TRUSTED_ROOT", "NO_CERTIFICATE_CHAIN_FOUND"),
            _check(UNDECIDED, "REVOCATION_NOT_CHECKED", "NO_CERTIFICATE_CHAIN_FOUND"),
        )
    if indic_name in (
        "OUT_OF_BOUNDS_NO_POE",
        "OUT_OF_BOUNDS_NOT_REVOKED",
        "EXPIRED",
        "NOT_YET_VALID",
    ):
        trust = _check(UNDECIDED, "CERT_EXPIRED_OR_NOT_YET_VALID", indic_name)
    elif indic_name == "CHAIN_CONSTRAINTS_FAILURE":
        trust = _check(UNDECIDED, "CHAIN_CONSTRAINTS_FAILED", indic_name)
    elif indic_name in ("TRY_LATER", "REVOCATION_OUT_OF_BOUNDS_NO_POE", None):
        trust = _check(PASS, "CHAIN_TRUSTED")
    elif indic_name in ("CRYPTO_CONSTRAINTS_FAILURE", "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"):
        trust = _check(UNDECIDED, "TRUST_UNDETERMINED", indic_name)
    else:
        trust = _check(UNDECIDED, "TRUST_UNDETERMINED", indic_name)

    path = status.validation_path
    if path is None:
        return trust, _check(UNDECIDED, "REVOCATION_UNKNOWN", "TRY_LATER")
    # Every certificate on the path below the anchor needs an OCSP answer or a CRL.
    certs = [c for c in path.iter_certs(include_root=True)]
    missing = []
    for issuer, cert in itertools.pairwise(certs):
        if not _revinfo_covers(vc, cert, issuer):
            missing.append(cert.subject.human_friendly)
    if missing or indic_name in ("TRY_LATER", "REVOCATION_OUT_OF_BOUNDS_NO_POE"):
        return trust, _check(
            UNDECIDED, "REVOCATION_UNKNOWN", indic_name or "TRY_LATER", "; ".join(missing)
        )
    return trust, _check(PASS, "NOT_REVOKED")


def _timestamp_check(ts: TimestampSignatureStatus | None) -> Check:
    if ts is None:
        return _check(NA, "NO_TIMESTAMP")
    if not (ts.intact and ts.valid):
        return _check(FAIL, "TIMESTAMP_INVALID", "FORMAT_FAILURE")
    if not ts.trusted:
        return _check(UNDECIDED, "TIMESTAMP_UNTRUSTED", "NO_POE")
    return _check(PASS, "TIMESTAMP_VALID")


class Verifier:
    def __init__(self, trust: TrustStore, allow_fetching: bool = True) -> None:
        self.trust = trust
        self.allow_fetching = allow_fetching

    def _context(self, dss: DocumentSecurityStore | None) -> ValidationContext:
        other: list[x509.Certificate] = []
        ocsps: list[bytes] = []
        crls: list[bytes] = []
        if dss is not None:
            try:
                # DSS data from the document (B-LT/B-LTA) lets verification work offline.
                ctx = dss.as_validation_context({"trust_roots": self.trust.roots})
                other = list(ctx.certificate_registry)
                ocsps = [o.dump() for o in ctx.ocsps]
                crls = [c.dump() for c in ctx.crls]
            except Exception as e:  # noqa: BLE001 - a broken DSS is ignored, not trusted
                log.info("ignoring unreadable DSS: %s", type(e).__name__)
        return self.trust.validation_context(
            other_certs=other,
            ocsps=ocsps,
            crls=crls,
            allow_fetching=self.allow_fetching,
            revocation_mode="soft-fail",
        )

    async def async_verify(self, data: bytes) -> DocumentReport:
        sha256 = hashlib.sha256(data).hexdigest()
        validated_at = vietnam_time(datetime.now(UTC))
        if b"%PDF-" not in data[:1024]:
            raise NotPdfError()
        signed_looking = _looks_signed(data)
        try:
            reader = PdfFileReader(BytesIO(data), strict=False)
            if reader.encrypted:
                result = reader.decrypt("")
                if result.status == AuthStatus.FAILED:
                    raise EncryptedPdfError()
            embedded = list(reader.embedded_signatures)
        except EncryptedPdfError:
            raise
        except Exception as e:  # noqa: BLE001 - parser errors in a signed file are a verdict
            if signed_looking:
                problem = _check(FAIL, "UNPARSABLE_SIGNED_PDF", "FORMAT_FAILURE", type(e).__name__)
                return DocumentReport.conclude(sha256, len(data), [], [problem], validated_at)
            raise UnreadablePdfError(type(e).__name__) from None

        problems: list[Check] = []
        if signed_looking and not embedded:
            problems.append(_check(FAIL, "UNREACHABLE_SIGNATURE", "FORMAT_FAILURE"))
        trailing = _trailing_garbage(data)
        try:
            dss: DocumentSecurityStore | None = DocumentSecurityStore.read_dss(reader)
        except NoDSSFoundError:
            dss = None
        except Exception:  # noqa: BLE001
            dss = None

        reports = []
        for emb in embedded:
            reports.append(await self._verify_one(reader, data, emb, dss, trailing))
        return DocumentReport.conclude(sha256, len(data), reports, problems, validated_at)

    async def _verify_one(
        self,
        reader: PdfFileReader,
        data: bytes,
        emb: EmbeddedPdfSignature,
        dss: DocumentSecurityStore | None,
        trailing: bool,
    ) -> SignatureReport:
        field = str(emb.field_name)
        is_doc_ts = False
        try:
            is_doc_ts = emb.sig_object_type == "/DocTimeStamp"
            kind = (
                "document_timestamp"
                if is_doc_ts
                else (
                    "certification"
                    if emb.docmdp_level is not None and "/Reference" in emb.sig_object
                    else "signature"
                )
            )
        except Exception:  # noqa: BLE001
            kind = "signature"
        vc = self._context(dss)
        try:
            status: PdfSignatureStatus | DocumentTimestampStatus
            if is_doc_ts:
                status = await async_validate_pdf_timestamp(
                    emb, validation_context=vc, diff_policy=DIFF_POLICY
                )
            else:
                status = await async_validate_pdf_signature(
                    emb,
                    signer_validation_context=vc,
                    ts_validation_context=vc,
                    diff_policy=DIFF_POLICY,
                )
        except Exception as e:  # noqa: BLE001
            # A signature that cannot even be evaluated is broken, never "unsigned".
            checks = {
                "integrity": _check(
                    FAIL, "SIGNATURE_UNREADABLE", "FORMAT_FAILURE", type(e).__name__
                ),
            }
            report = SignatureReport(field=field, type=kind, checks=checks)
            report.conclude()
            return report

        checks: dict[str, Check] = {}
        integrity = _integrity_check(status, status.coverage)
        if integrity.status is PASS and trailing:
            integrity = _check(FAIL, "UNCOVERED_TRAILING_BYTES", "FORMAT_FAILURE")
        checks["integrity"] = integrity

        modifications = _modifications_check(status)
        if (
            modifications.status is PASS
            and status.coverage is not SignatureCoverageLevel.ENTIRE_FILE
        ):
            try:
                end = emb.byte_range[2] + emb.byte_range[3]
                stray = _unreferenced_objects_after(reader, data, end)
            except Exception:  # noqa: BLE001
                stray = []
            if stray:
                modifications = _check(
                    FAIL, "UNREFERENCED_OBJECTS", "FORMAT_FAILURE", ", ".join(stray[:5])
                )
        checks["modifications"] = modifications

        ts_status: TimestampSignatureStatus | None
        claimed: datetime | None = None
        if isinstance(status, DocumentTimestampStatus):
            ts_status = status
            proven: datetime | None = status.timestamp if status.trusted else None
        else:
            ts_status = status.timestamp_validity
            proven = ts_status.timestamp if ts_status is not None and ts_status.trusted else None
            claimed = status.signer_reported_dt
        trust, revocation = _trust_and_revocation(status, vc, proven, claimed)
        checks["trust"] = trust
        checks["revocation"] = revocation
        checks["timestamp"] = _timestamp_check(ts_status)
        checks["algorithms"] = _algorithms_check(status)

        signing_time = proven or claimed
        report = SignatureReport(
            field=field,
            type=kind,
            checks=checks,
            signer=_signer_info(status.signing_cert),
            signing_time=_iso(signing_time),
            signing_time_source="timestamp" if proven else ("claimed" if claimed else None),
            timestamp_time=_iso(ts_status.timestamp) if ts_status is not None else None,
            md_algorithm=status.md_algorithm,
            coverage=status.coverage.name if status.coverage else None,
        )
        report.conclude()
        return report
