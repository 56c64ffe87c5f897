"""Verify every signature and document timestamp in a PDF (TT 15/2025 Art. 6, Appendix II;
ETSI EN 319 102-1 with proofs of existence; PAdES, ETSI EN 319 142).

Per signature, separate checks: ``integrity`` (digest, signature value, ByteRange coverage),
``modifications`` (what changed after signing, and whether it was allowed), ``trust`` (chain to
an anchor, certificate in force), ``revocation`` (OCSP else CRL, judged at the time that
matters; unknown is a warning, never a pass), ``timestamp`` and ``algorithms``.

**Validation at the time that matters.** Each signature is first validated at the validation
time (now, or the moment an auditor asks for). When that cannot conclude because of time — the
certificate has expired since, or has been revoked, or today's revocation data cannot be had —
and a trusted timestamp proves the signature existed earlier (its signature timestamp, or a
document timestamp over its revision: the *best signature time*), the chain is validated again
at that proven time, with the revocation data the document carries (DSS, VRI, CMS attributes)
and any fetched, as ETSI EN 319 102-1 § 5.5/5.6 prescribe. A revocation before the proven time
with a content timestamp showing the document was signed after it fails (REVOKED); without such
proof it stays INDETERMINATE (REVOKED_NO_POE); a revocation after the proven time does not
affect the signature and is reported as a note. Timestamp tokens themselves are validated the
same way: at the validation time, else at the time a later document timestamp proves.

pyHanko's ``ades_lta_validation`` is not used as a whole: it stops at
CERTIFICATE_CHAIN_GENERAL_FAILURE as soon as a CA's current revocation data is stale (which is
every archived document offline), and it re-reads the whole timestamp chain for each signature.
Its building blocks are: CMS integrity (``validate_sig_integrity``), the signing-certificate
check, pyhanko-certvalidator's point-in-time path validation and pyHanko's mapping of its errors
to AdES sub-indications (:mod:`.chain`).

Attacks this is built against (pdf-insecurity 2019–2021): Universal Signature Forgery,
Incremental Saving Attack (also with an empty xref or no final %%EOF), Signature Wrapping,
Shadow attacks, certification attacks. Every signature is evaluated in isolation: a broken one
gets its own FAILED result and never stops the others from being checked.
"""

from __future__ import annotations

import bisect
import dataclasses
import hashlib
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

from asn1crypto import cms, core, crl, ocsp, tsp, x509
from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.decode_limits import DecodePurpose
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.general import find_cms_attribute_iter
from pyhanko.sign.validation import generic_cms
from pyhanko.sign.validation.dss import DocumentSecurityStore, NoDSSFoundError
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator.fetchers.api import FetcherBackend

from signing_service import _pdf_recovery, _pdf_speedups
from signing_service.pdfnames import name_pattern
from signing_service.signing.policy import (
    ALGORITHM_MESSAGES,
    digest_policy_problem,
    verification_algorithm_problem,
)
from signing_service.timefmt import vietnam_time
from signing_service.trust import TrustStore, fingerprint
from signing_service.verification.active import TOO_COMPLEX as ACTIVE_TOO_COMPLEX
from signing_service.verification.active import UNINSPECTABLE as ACTIVE_UNINSPECTABLE
from signing_service.verification.active import active_content
from signing_service.verification.active import describe as describe_active
from signing_service.verification.chain import ChainResult, ChainValidator, Evidence
from signing_service.verification.cms import signature_integrity, signature_value_valid
from signing_service.verification.diff_policy import DIFF_POLICY, page_refs
from signing_service.verification.diff_speedups import speed_up_reader
from signing_service.verification.identity import (
    certificate_profile,
    describe_name,
    profile_label,
    vietnamese_dn,
)
from signing_service.verification.limits import (
    DEFAULT_LIMITS,
    NOT_PDF,
    TIME_BUDGET_EXCEEDED,
    LimitExceeded,
    MalformedPdf,
    VerificationLimits,
    check_structure,
    classify_exception,
    open_reader,
    pdf_header_offset,
)
from signing_service.verification.memo import FACTS, DocumentFacts
from signing_service.verification.messages import message
from signing_service.verification.modifications import (
    MAX_PAGES_FOR_ANNOTATION_REVIEW,
    AddedAnnotation,
    RevisionAnalysis,
)
from signing_service.verification.report import (
    ChainEntry,
    Check,
    CheckStatus,
    DocumentReport,
    Indication,
    Note,
    RevocationDataInfo,
    SignatureReport,
    SignerInfo,
    TimestampInfo,
    TrustAnchorInfo,
)
from signing_service.verification.revinfo_cache import REVOCATION_CACHE, CachingFetcherBackend
from signing_service.verification.vouching import issuers_of, vouches_for

log = logging.getLogger(__name__)
_pdf_speedups.install()
_pdf_recovery.install()

PASS, FAIL, UNDECIDED, NA = (
    CheckStatus.PASSED,
    CheckStatus.FAILED,
    CheckStatus.INDETERMINATE,
    CheckStatus.NOT_APPLICABLE,
)
check = Check.of

# A validation time within this much of the present is "now": revocation data may be fetched.
LIVE_TOLERANCE = timedelta(minutes=5)
# How far a timestamp's time may run ahead of the validation time (clocks differ).
CLOCK_SKEW = timedelta(minutes=5)


class NotPdfError(Exception):
    pass


class UnreadablePdfError(Exception):
    pass


class EncryptedPdfError(Exception):
    pass


def _iso(moment: datetime | None) -> str | None:
    return vietnam_time(moment) if moment else None


# -- signature dictionaries in the raw bytes -------------------------------------------------
_OBJ_HEADER = re.compile(rb"(\d{1,10})[\x00\t\n\x0c\r ]+(\d{1,5})[\x00\t\n\x0c\r ]+obj")


@dataclass(frozen=True)
class RawSignatureDict:
    """A ``/ByteRange`` key inside an uncompressed object's dictionary (not stream data)."""

    offset: int
    idnum: int
    generation: int


_OBJ_WINDOW = 1_000_000  # how far back an object header may be from a key inside it


def _dict_positions(data: bytes, key: bytes, limit: int) -> list[RawSignatureDict]:
    """Occurrences of ``key`` inside an uncompressed object's dictionary (not stream data), at
    most ``limit``. One forward pass: the last ``obj``/``endobj`` keyword before each hit is
    carried along, the search for ``stream`` resumes where it stopped inside the same object,
    and the hits inside a stream are skipped to its ``endstream`` at once, so a file made of
    the key (in a stream, a dictionary or loose bytes) costs time linear in its size."""
    found: list[RawSignatureDict] = []
    last_obj = -1  # position of the last "obj" (possibly of "endobj") before the cursor
    cursor = 0
    header: re.Match[bytes] | None = None
    header_for = -1  # the last_obj value ``header`` was looked up for
    stream_checked = -1  # inside the object at last_obj: no "stream" keyword before this
    pos = data.find(key)
    while pos >= 0 and len(found) < limit:
        recent = data.rfind(b"obj", cursor, pos)
        if recent >= 0:
            last_obj = recent
        cursor = pos
        start = last_obj if last_obj >= pos - _OBJ_WINDOW else -1
        if start >= 3 and data[start - 3 : start] != b"end":
            if header_for != start:
                header_for, stream_checked = start, start
                header = _OBJ_HEADER.search(data, max(0, start - 24), start + 3)
            if header is not None:
                stream_at = data.find(b"stream", stream_checked, pos)
                if stream_at >= 0:
                    # Stream data up to its endstream: every hit there is page text or the like.
                    end = data.find(b"endstream", pos)
                    if end < 0:
                        break
                    cursor = end
                    pos = data.find(key, end)
                    continue
                stream_checked = max(start, pos - 6)
                found.append(RawSignatureDict(pos, int(header.group(1)), int(header.group(2))))
        pos = data.find(key, pos + len(key))
    return found


class _Unresolved(generic.Dereferenceable):
    """The container of objects parsed from raw bytes outside any reader: references inside
    them are kept as numbers, never followed. Strict: a duplicate key stops the parse (no
    warning logged per key of a hostile dictionary); the caller keeps such an object."""

    strict = True

    def get_pdf_handler(self) -> Any:
        return self

    def get_object(self) -> generic.PdfObject:
        return generic.NullObject()


_UNRESOLVED = _Unresolved()
_MAX_CONFIRMED = 1_000  # objects parsed to confirm a key; beyond that, taken as they stand


def _keyed(
    data: bytes,
    hits: list[RawSignatureDict],
    key: str,
    judged: list[tuple[int, int]] | None = None,
) -> list[RawSignatureDict]:
    """The ``hits`` whose object, parsed with pyHanko's object parser, is a dictionary with
    ``key`` among its keys: text that merely mentions it (a comment, a document title, a
    bookmark) is dropped. Objects that do not parse, and those past ``_MAX_CONFIRMED``, are
    kept: a damaged dictionary that names the key still claims it. ``judged`` receives the
    byte spans (start, end) of the objects parsed."""
    stream = BytesIO(data)
    verdicts: dict[tuple[int, int, int], bool] = {}
    kept: list[RawSignatureDict] = []
    for hit in hits:
        header = None
        start = data.rfind(b"obj", max(0, hit.offset - _OBJ_WINDOW), hit.offset)
        if start >= 0:
            header = _OBJ_HEADER.search(data, max(0, start - 24), start + 3)
        if header is None:
            kept.append(hit)
            continue
        ident = (header.start(), hit.idnum, hit.generation)
        if ident not in verdicts:
            if len(verdicts) >= _MAX_CONFIRMED:
                kept.append(hit)
                continue
            try:
                stream.seek(header.end())
                generic.read_non_whitespace(stream)
                stream.seek(-1, 1)
                obj = generic.read_object(
                    stream, _UNRESOLVED, in_content_stream=generic.ContentOpReading.IN_OBJECT
                )
                verdicts[ident] = not isinstance(obj, generic.DictionaryObject) or key in obj
                if judged is not None:
                    judged.append((header.start(), stream.tell()))
            except (Exception, RecursionError):  # noqa: BLE001 - damaged: keep the claim
                verdicts[ident] = True
        if verdicts[ident]:
            kept.append(hit)
    return kept


def find_signature_dictionaries(data: bytes, limit: int = 10_000) -> list[RawSignatureDict]:
    """Every dictionary in the file's uncompressed objects that carries ``/ByteRange``.

    A signature's ``/Contents`` must sit at a byte offset its ByteRange names, so a working
    signature dictionary is never inside a compressed object stream: a search of the raw bytes
    (at memchr speed, no regular expression over the file) finds them all. Occurrences inside
    stream data (page text that happens to mention the key) are skipped, and so are those
    inside a string of a dictionary (a comment explaining signatures): a candidate's object is
    parsed to see the key among its keys. Time linear in the file's size.
    """
    hits = _dict_positions(data, b"/ByteRange", limit)
    # The key spelt with #XX escapes is the same key to every reader (red team 20 R20-3: a
    # signature whose field was removed and whose names were escaped was not found, so not
    # reported, and the service countersigned it). Each distinct spelling is searched like the
    # plain one; a file holding many spellings is one to distrust anyway.
    spellings: set[bytes] = set()
    for match in _ANY_BYTE_RANGE.finditer(data):
        if match.group() != b"/ByteRange":
            spellings.add(match.group())
            if len(spellings) >= 16:
                break
    for spelling in spellings:
        hits += _dict_positions(data, spelling, limit)
    hits.sort(key=lambda hit: hit.offset)
    return _keyed(data, hits[:limit], "/ByteRange")


# /ByteRange in any spelling; the lookahead keeps the search cheap on a file of slashes.
_ANY_BYTE_RANGE = re.compile(b"/(?=[B#])" + name_pattern("ByteRange"))


_WS = b"\x00\t\n\x0c\r "
_CMS_SUBFILTERS = (b"adbe.pkcs7", b"ETSI.CAdES", b"ETSI.RFC3161", b"adbe.x509")
# A signature container: /Contents as a long hex string (a page's /Contents is a reference or
# an array; an annotation's is short text).
_BYTE_RANGE = re.compile(rb"/ByteRange[\x00\t\n\x0c\r ]*\[(?:[\x00\t\n\x0c\r ]*\d{1,12}){4}")
_SIG_FIELD_VALUE = re.compile(
    rb"/V[\x00\t\n\x0c\r ]*(?:\d{1,10}[\x00\t\n\x0c\r ]+\d{1,5}[\x00\t\n\x0c\r ]+R|<<)"
)
_CMS_CONTENTS = re.compile(rb"/Contents[\x00\t\n\x0c\r ]*<[0-9A-Fa-f\x00\t\n\x0c\r ]{2048}")


_LENGTH = re.compile(
    rb"/Length[\x00\t\n\x0c\r ]+(\d{1,12})(?![\x00\t\n\x0c\r ]+\d+[\x00\t\n\x0c\r ]+R)"
)


def _inside_stream(data: bytes, pos: int) -> bool:
    """Whether ``pos`` lies inside stream data: after a ``stream`` keyword, before its
    ``endstream``, and within its declared direct ``/Length`` when it has one (a damaged file
    may have lost the ``endstream``)."""
    start = data.rfind(b"stream", 0, pos)
    while start >= 3 and data[start - 3 : start] == b"end":
        start = data.rfind(b"stream", 0, start - 3)
    if start < 0 or data.rfind(b"endstream", start, pos) >= 0:
        return False
    lengths = list(_LENGTH.finditer(data, max(0, start - 2048), start))
    if lengths:
        return pos <= start + 8 + int(lengths[-1].group(1))
    return True


def _trailer_auth_codes(data: bytes) -> list[tuple[int, int]]:
    """The byte spans (``trailer`` to ``startxref``) of classic trailers that carry an ISO
    32004 ``/AuthCode`` dictionary; at most 32, newest last."""
    spans: list[tuple[int, int]] = []
    pos = data.find(b"/AuthCode")
    while pos >= 0 and len(spans) < 32:
        start = data.rfind(b"trailer", 0, pos)
        end = data.find(b"startxref", pos)
        if start >= 0 and end >= 0 and data.find(b"obj", start, pos) < 0:
            spans.append((start, end))
            pos = data.find(b"/AuthCode", end)
        else:
            pos = data.find(b"/AuthCode", pos + 9)
    return spans


def _within(spans: list[tuple[int, int]], offset: int) -> bool:
    return any(start <= offset < end for start, end in spans)


def claims_signature(data: bytes) -> bool:
    """Whether a file claims to carry a signature: a signature dictionary's ``/ByteRange``, a
    ``/SubFilter`` naming a signature format, a CMS-sized hex ``/Contents``, or a signature
    field with a value, each as a key of a dictionary (the object is parsed to tell a key from
    text in a string) and never inside a content stream; or, where no parsable object holds
    it (a damaged file, a dictionary spliced into another object), a ``/ByteRange`` with its
    four offsets outside stream data. A file that claims a signature is TOTAL_FAILED, never
    "unsigned". Time linear in the file's size."""
    judged: list[tuple[int, int]] = []
    # ISO 32004 integrity protection (PDF 2.0 encryption, as pyHanko writes it) puts a
    # /ByteRange in the trailer's /AuthCode dictionary: a MAC over the file, not a signature
    # (red team 11 F4: an owner-password-only unsigned PDF was "signed but broken").
    macs = _trailer_auth_codes(data)
    hits = [h for h in _dict_positions(data, b"/ByteRange", 1_000) if not _within(macs, h.offset)]
    if _keyed(data, hits, "/ByteRange", judged):
        return True
    judged.extend(macs)
    # The object header may be gone: a /ByteRange with its four offsets outside stream data
    # and outside the objects judged above still claims a signature. Hits inside a stream or
    # a judged object skip to its end.
    judged.sort()
    starts = [start for start, _ in judged]
    pos = data.find(b"/ByteRange")
    while pos >= 0:
        at = bisect.bisect_right(starts, pos) - 1
        if at >= 0 and pos < judged[at][1]:
            pos = data.find(b"/ByteRange", judged[at][1])
            continue
        if _BYTE_RANGE.match(data, pos):
            if not _inside_stream(data, pos):
                return True
            end = data.find(b"endstream", pos)
            if end < 0:
                break
            pos = data.find(b"/ByteRange", end)
            continue
        pos = data.find(b"/ByteRange", pos + 10)
    for hit in _keyed(data, _dict_positions(data, b"/SubFilter", 1_000), "/SubFilter"):
        value = data[hit.offset + 10 : hit.offset + 40]
        if any(name in value for name in _CMS_SUBFILTERS):
            return True
    contents = [
        hit
        for hit in _dict_positions(data, b"/Contents", 1_000)
        if _CMS_CONTENTS.match(data, hit.offset)
    ]
    if _keyed(data, contents, "/Contents"):
        return True
    # A signature field with a value (/FT /Sig … /V n 0 R): a signed field, even if its
    # signature dictionary is gone (an empty field has no /V and claims nothing).
    for hit in _keyed(data, _dict_positions(data, b"/FT", 1_000), "/FT"):
        if not data[hit.offset + 3 : hit.offset + 12].lstrip(_WS).startswith(b"/Sig"):
            continue
        end = data.find(b"endobj", hit.offset)
        start = data.rfind(b"obj", 0, hit.offset)
        window = data[max(start, 0) : end if end >= 0 else hit.offset + 4096]
        if _SIG_FIELD_VALUE.search(window):
            return True
    return False


# -- per-document memos -------------------------------------------------------------------------
_ESS_OIDS = frozenset({"1.2.840.113549.1.9.16.2.12", "1.2.840.113549.1.9.16.2.47"})


class SignerCertificates:
    """``extract_certs_for_validation`` (the signer's certificate, checked against its ESS
    signing-certificate attribute) memoised per document: every signature of one seal carries
    the same certificates, and asn1crypto's name comparison inside it costs ~5 ms each time."""

    def __init__(self) -> None:
        self._memo: dict[tuple[bytes, bytes, bytes], x509.Certificate | Exception] = {}

    def signer_cert(self, signed_data: cms.SignedData) -> x509.Certificate:
        """Raises what pyHanko raises for a missing or mismatching signer certificate."""
        signer_info = signed_data["signer_infos"][0]
        ess = b"".join(
            attr.contents
            for attr in signer_info["signed_attrs"] or ()
            if attr["type"].dotted in _ESS_OIDS
        )
        key = (signed_data["certificates"].contents or b"", signer_info["sid"].dump(), ess)
        found = self._memo.get(key)
        if found is None:
            try:
                found = generic_cms.extract_certs_for_validation(signed_data).signer_cert
            except Exception as e:  # noqa: BLE001 - remembered and re-raised
                found = e
            self._memo[key] = found
        if isinstance(found, Exception):
            raise found
        return found


# -- evidence ----------------------------------------------------------------------------------
def _tst_tokens(signer_info: cms.SignerInfo, signed: bool) -> list[cms.SignedData]:
    try:
        return list(generic_cms.extract_tst_data_iter(signer_info, signed=signed))
    except Exception:  # noqa: BLE001 - a malformed attribute is reported by the timestamp check
        return []


def _usable_certificate(cert: x509.Certificate) -> x509.Certificate:
    """``cert`` after reading every part the chain builder indexes or compares (key, names as
    hashable values, serial, key identifiers, validity), so that a well-formed certificate it
    would choke on (a name attribute of an unknown type holding an OCTET STRING, say) is
    dropped here instead of breaking the validation of every signature sharing the evidence.

    :raises Exception: whatever asn1crypto raises for a part it cannot read.
    """
    cert.public_key  # noqa: B018
    cert.subject.hashable  # noqa: B018
    cert.issuer.hashable  # noqa: B018
    cert.serial_number  # noqa: B018
    cert.key_identifier  # noqa: B018
    cert.authority_key_identifier  # noqa: B018
    cert.issuer_serial  # noqa: B018
    cert.not_valid_before  # noqa: B018
    cert.not_valid_after  # noqa: B018
    cert.sha256  # noqa: B018
    return cert


def _collect_evidence(
    reader: PdfFileReader, signatures: Iterable[EmbeddedPdfSignature]
) -> Evidence:
    certs: dict[bytes, x509.Certificate] = {}
    crls: dict[bytes, crl.CertificateList] = {}
    ocsps: dict[bytes, ocsp.OCSPResponse] = {}
    source: dict[bytes, str] = {}
    written: dict[bytes, int] = {}

    def add(kind: str, der: bytes, where: str, ref: Any = None) -> None:
        digest = hashlib.sha256(der).digest()
        if ref is not None and kind != "cert":
            try:
                revision = reader.xrefs.get_last_change(ref.reference)
            except Exception:  # noqa: BLE001 - not an indirect object of this file
                revision = None
            if revision is not None:
                written[digest] = min(revision, written.get(digest, revision))
        if digest in source:
            return
        try:
            if kind == "cert":
                certs[digest] = _usable_certificate(x509.Certificate.load(der))
            elif kind == "crl":
                crls[digest] = crl.CertificateList.load(der)
                crls[digest]["tbs_cert_list"]["this_update"].native  # noqa: B018
            else:
                ocsps[digest] = ocsp.OCSPResponse.load(der)
                ocsps[digest]["response_status"].native  # noqa: B018
        except Exception:  # noqa: BLE001 - unreadable evidence is ignored, never trusted
            certs.pop(digest, None)
            crls.pop(digest, None)
            ocsps.pop(digest, None)
            return
        source[digest] = where

    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except NoDSSFoundError:
        dss = None
    except Exception:  # noqa: BLE001 - a broken DSS is ignored, not trusted
        dss = None
    if dss is not None:
        for kind, purpose, refs in (
            ("cert", DecodePurpose.CERTIFICATE, list(dss.certs.values())),
            ("crl", DecodePurpose.CRL, list(dss.crls)),
            ("ocsp", DecodePurpose.OCSP_RESPONSE, list(dss.ocsps)),
        ):
            for ref in refs[:5_000]:
                try:
                    add(kind, ref.get_object().read_data(purpose), "document", ref)
                except Exception:  # noqa: BLE001
                    continue
        vri_keys = (("/Cert", "cert"), ("/CRL", "crl"), ("/OCSP", "ocsp"))
        purposes = {
            "cert": DecodePurpose.CERTIFICATE,
            "crl": DecodePurpose.CRL,
            "ocsp": DecodePurpose.OCSP_RESPONSE,
        }
        for entry in list(dss.vri_entries.values())[:5_000]:
            try:
                vri = entry.get_object()
                for key, kind in vri_keys:
                    # list(): a pyHanko ArrayObject cannot be sliced (red team 19 F3: every
                    # VRI entry was dropped, and a VRI-only DSS read as none).
                    for ref in list(vri.get(key, ()))[:1_000]:
                        add(kind, ref.get_object().read_data(purposes[kind]), "document", ref)
            except Exception:  # noqa: BLE001
                continue
    # Signatures by one seal carry the same certificate sets: read each distinct set once.
    seen_sets: set[bytes] = set()

    def add_certificates(sd: cms.SignedData) -> None:
        certificates = sd["certificates"]
        raw = certificates.contents or b""
        if raw in seen_sets:
            return
        seen_sets.add(raw)
        for choice in certificates or ():
            if choice.name == "certificate":
                add("cert", choice.chosen.dump(), "document")

    for emb in signatures:
        try:
            add_certificates(emb.signed_data)
            for token in (
                *_tst_tokens(emb.signer_info, signed=False),
                *_tst_tokens(emb.signer_info, signed=True),
            ):
                add_certificates(token)
            archival = find_cms_attribute_iter(
                emb.signer_info["signed_attrs"], "adobe_revocation_info_archival"
            )
            for value in archival:
                for item in value["crl"] or ():
                    add("crl", item.dump(), "document")
                for item in value["ocsp"] or ():
                    add("ocsp", item.dump(), "document")
        except Exception:  # noqa: BLE001 - nothing usable in this one
            continue
    return Evidence(
        tuple(certs.values()), tuple(crls.values()), tuple(ocsps.values()), source, written
    )


# -- report pieces -----------------------------------------------------------------------------
_LABEL_OF = {
    "common_name": "Tên",
    "organization_name": "Tổ chức",
    "organizational_unit_name": "Đơn vị",
    "title": "Chức danh",
}


def _first(name: x509.Name, attr: str) -> str | None:
    """The first value of ``attr`` in ``name`` (decoded leniently: Vietnamese certificates
    sometimes encode attributes with string types asn1crypto refuses in ``.native``)."""
    label = _LABEL_OF[attr]
    return next((value for key, value in describe_name(name) if key == label), None)


def _validity(cert: x509.Certificate) -> tuple[str, str]:
    try:
        validity = cert["tbs_certificate"]["validity"]
        return (
            _iso(validity["not_before"].native) or "",
            _iso(validity["not_after"].native) or "",
        )
    except Exception:  # noqa: BLE001 - a damaged certificate is described, not a crash
        return "", ""


def _signer_info(cert: x509.Certificate) -> SignerInfo:
    """The signer as a person reads it (Vietnamese labels); never raises for a parsed
    certificate, however damaged its fields."""
    valid_from, valid_to = _validity(cert)
    try:
        serial = format(cert.serial_number, "X")
    except Exception:  # noqa: BLE001
        serial = "?"
    try:
        profile = certificate_profile(cert)
    except Exception:  # noqa: BLE001
        profile = "unknown"  # type: ignore[assignment]
    return SignerInfo(
        common_name=_first(cert.subject, "common_name"),
        organization=_first(cert.subject, "organization_name"),
        title=_first(cert.subject, "title"),
        subject=vietnamese_dn(cert.subject),
        issuer=vietnamese_dn(cert.issuer),
        serial_number=serial,
        certificate_sha256=fingerprint(cert),
        valid_from=valid_from,
        valid_to=valid_to,
        organizational_unit=_first(cert.subject, "organizational_unit_name"),
        profile=str(profile),
        profile_label=profile_label(profile),
    )


def _chain_entries(result: ChainResult | None) -> list[ChainEntry]:
    if result is None or result.path is None:
        return []
    entries = []
    try:
        for cert in reversed(list(result.path.iter_certs(include_root=True))):
            validity = cert["tbs_certificate"]["validity"]
            entries.append(
                ChainEntry(
                    subject=vietnamese_dn(cert.subject),
                    serial_number=format(cert.serial_number, "X"),
                    certificate_sha256=fingerprint(cert),
                    valid_from=_iso(validity["not_before"].native) or "",
                    valid_to=_iso(validity["not_after"].native) or "",
                )
            )
    except Exception:  # noqa: BLE001
        return entries
    return entries


def _anchor_info(trust: TrustStore, result: ChainResult | None) -> TrustAnchorInfo | None:
    """The trust anchor a valid chain ends in, and what kind of signature it vouches for
    (public-duty: the Government CA; public: NEAC)."""
    if result is None or result.path is None or not result.ok:
        return None
    anchor = trust.anchor_for_path(result.path)
    if anchor is None:
        return None
    return TrustAnchorInfo(anchor.name, str(anchor.kind), anchor.kind_label, anchor.sha256)


def _issued_at(value: crl.CertificateList | ocsp.OCSPResponse) -> datetime | None:
    try:
        if isinstance(value, crl.CertificateList):
            return value["tbs_cert_list"]["this_update"].native  # type: ignore[no-any-return]
        return (
            value["response_bytes"]["response"]
            .parsed["tbs_response_data"][  # type: ignore[no-any-return]
                "produced_at"
            ]
            .native
        )
    except Exception:  # noqa: BLE001
        return None


def _ocsp_responder_name(basic: Any, evidence: Evidence) -> str:
    """Who signed an OCSP answer: named in it, or found by its key among the certificates the
    answer or the document carries."""
    responder = basic["tbs_response_data"]["responder_id"]
    if responder.name == "by_name":
        return vietnamese_dn(responder.chosen)
    key_hash = responder.chosen.native
    for cert in (*(basic["certs"] or ()), *evidence.certs):
        try:
            if cert.public_key.sha1 == key_hash:
                return vietnamese_dn(cert.subject)
        except Exception:  # noqa: BLE001
            continue
    return "Máy chủ OCSP (nhận diện theo khóa)"


def _ocsp_about(single: Any, cert: x509.Certificate) -> bool:
    """Whether an OCSP single response is about ``cert`` (serial and issuer name hash: serial
    numbers are unique per issuer only)."""
    cert_id = single["cert_id"]
    if cert_id["serial_number"].native != cert.serial_number:
        return False
    try:
        algo = cert_id["hash_algorithm"]["algorithm"].native
        return bool(
            hashlib.new(algo, cert.issuer.dump()).digest() == cert_id["issuer_name_hash"].native
        )
    except (ValueError, TypeError):
        return False


def _revocation_used(
    result: ChainResult | None, evidence: Evidence, chains: ChainValidator
) -> list[RevocationDataInfo]:
    """The OCSP answers and CRLs that speak about the certificates of the validated path."""
    if result is None or result.path is None:
        return []
    fetched_crls, fetched_ocsps = chains.fetched()
    items: list[RevocationDataInfo] = []
    try:
        certs = list(result.path.iter_certs(include_root=False))
        on_path = list(result.path.iter_certs(include_root=True))
    except Exception:  # noqa: BLE001
        return []
    for cert in certs:
        # Only what the certificate's issuer signed is its revocation data (red team 21c
        # R21C-1: a forged answer under the CA's name was listed as the CA's).
        issuers = issuers_of(cert, [*on_path, *evidence.certs])
        for origin, ocsps in (("document", evidence.ocsps), ("fetched", fetched_ocsps)):
            for resp in ocsps:
                if not vouches_for(resp, cert, issuers, evidence.certs):
                    continue
                try:
                    basic = resp["response_bytes"]["response"].parsed
                    data = basic["tbs_response_data"]
                    for single in data["responses"]:
                        if not _ocsp_about(single, cert):
                            continue
                        status = single["cert_status"]
                        revoked_at = None
                        if status.name == "revoked":
                            revoked_at = _iso(status.chosen["revocation_time"].native)
                        items.append(
                            RevocationDataInfo(
                                "OCSP",
                                origin,
                                _ocsp_responder_name(basic, evidence),
                                vietnamese_dn(cert.subject),
                                _iso(data["produced_at"].native),
                                status.name if status.name in ("good", "revoked") else "unknown",
                                revoked_at,
                            )
                        )
                except Exception:  # noqa: BLE001
                    continue
        for origin, crl_list in (("document", evidence.crls), ("fetched", fetched_crls)):
            for value in crl_list:
                if not vouches_for(value, cert, issuers):
                    continue
                try:
                    tbs = value["tbs_cert_list"]
                    revoked_at = None
                    for entry in tbs["revoked_certificates"] or ():
                        if entry["user_certificate"].native == cert.serial_number:
                            revoked_at = _iso(entry["revocation_date"].native)
                            break
                    items.append(
                        RevocationDataInfo(
                            "CRL",
                            origin,
                            vietnamese_dn(tbs["issuer"]),
                            vietnamese_dn(cert.subject),
                            _iso(tbs["this_update"].native),
                            "revoked" if revoked_at else "not_listed",
                            revoked_at,
                        )
                    )
                except Exception:  # noqa: BLE001
                    continue
    return items[:20]


def _algorithms_check(
    md_algorithm: str | None, signature_algorithm: object, cert: x509.Certificate | None
) -> Check:
    """The national algorithm policy (RSA ≥ 2048, ECDSA ≥ 256 on NIST curves, SHA-2/SHA-3):
    anything outside it — Ed25519, Ed448, DSA, SHA-1, short keys — is that signature's own
    INDETERMINATE result, never an error (issue 8: an Ed25519 signature crashed the verifier)."""
    problem = verification_algorithm_problem(
        md_algorithm, signature_algorithm, cert.public_key if cert is not None else None
    )
    if problem is None:
        return check(PASS, "ALGORITHMS_OK")
    # A weak digest or a short key may have been acceptable when the signature was made
    # (a proof of existence from then could save it); an algorithm outside the policy never.
    sub = (
        "CRYPTO_CONSTRAINTS_FAILURE"
        if problem.code == "ALGORITHM_NOT_ALLOWED"
        else "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"
    )
    return Check(
        UNDECIDED, problem.code, f"{ALGORITHM_MESSAGES[problem.code]} ({problem.detail})", sub
    )


# -- timestamps ----------------------------------------------------------------------------------
def _broken(ts: TimestampResult) -> bool:
    """A token that failed its own integrity (signature or imprint): nothing it says counts."""
    return ts.check.status is FAIL and ts.check.code == "TIMESTAMP_INVALID"


@dataclass
class TimestampResult:
    """A validated (or not) timestamp token: ``time`` is its genTime."""

    kind: str  # signature | content | document
    time: datetime | None
    authority: str | None
    check: Check
    chain: ChainResult | None = None
    weak: bool = False

    @property
    def proves(self) -> bool:
        return self.check.status is PASS and self.time is not None

    def info(self) -> TimestampInfo:
        return TimestampInfo(
            self.kind, _iso(self.time), self.authority, self.check.status.value, self.check.code
        )


Imprint = Callable[[str], bytes | None]
"""What a token's message imprint must be, given the imprint's hash algorithm."""


def imprint_of(data: bytes) -> Imprint:
    """The imprint is a hash of ``data`` (a signature timestamp: of the signature value)."""

    def expected(algorithm: str) -> bytes | None:
        try:
            return hashlib.new(algorithm, data).digest()
        except (ValueError, TypeError):
            return None

    return expected


def imprint_is(value: bytes) -> Imprint:
    """The imprint is ``value`` itself (a document timestamp: the ByteRange digest; a content
    timestamp: the signed message digest, both computed with the same algorithm)."""
    return lambda _algorithm: value


def _token_integrity(
    token: cms.SignedData,
    expected: Imprint,
    certs: SignerCertificates,
    facts: DocumentFacts | None = None,
) -> tuple[Check | None, datetime | None, x509.Certificate | None, str | None, bool]:
    """Integrity of a timestamp token (RFC 3161): (failing check | None, genTime, TSA cert, TSA
    name, weak algorithm); kept in ``facts`` for the next verification of the same document."""
    try:
        algorithm = (
            token["encap_content_info"]["content"]
            .parsed["message_imprint"]["hash_algorithm"]["algorithm"]
            .native
        )
        want = expected(algorithm)
    except Exception:  # noqa: BLE001 - judged (and failed) below
        want = None
    if facts is None:
        return _compute_token_integrity(token, want, certs)
    key = (hashlib.sha256(token.contents or b"").digest(), want)
    found = facts.tokens.get(key)
    if found is None:
        found = facts.tokens[key] = _compute_token_integrity(token, want, certs)
    return found  # type: ignore[no-any-return]


def _compute_token_integrity(
    token: cms.SignedData, want: bytes | None, certs: SignerCertificates
) -> tuple[Check | None, datetime | None, x509.Certificate | None, str | None, bool]:
    try:
        tst_info = token["encap_content_info"]["content"].parsed
        if not isinstance(tst_info, tsp.TSTInfo):
            return check(FAIL, "TIMESTAMP_INVALID", "FORMAT_FAILURE"), None, None, None, False
        gen_time = tst_info["gen_time"].native
        imprint_algo = tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
        imprint = tst_info["message_imprint"]["hashed_message"].native
        tsa_cert = certs.signer_cert(token)
        tsa_name = _first(tsa_cert.subject, "common_name") or vietnamese_dn(tsa_cert.subject)
        signer_info = token["signer_infos"][0]
        md_algo = signer_info["digest_algorithm"]["algorithm"].native
        content = bytes(token["encap_content_info"]["content"])
        digest = hashlib.new(md_algo, content).digest()
        intact, valid = signature_integrity(signer_info, tsa_cert, "tst_info", digest)
    except Exception:  # noqa: BLE001 - a token we cannot read proves nothing
        return check(FAIL, "TIMESTAMP_INVALID", "FORMAT_FAILURE"), None, None, None, False
    if not (intact and valid):
        return check(FAIL, "TIMESTAMP_INVALID", "HASH_FAILURE"), gen_time, tsa_cert, tsa_name, False
    if want is None or want != imprint:
        mismatch = check(FAIL, "TIMESTAMP_INVALID", "HASH_FAILURE", "dấu thời gian không khớp")
        return mismatch, gen_time, tsa_cert, tsa_name, False
    weak = bool(
        digest_policy_problem(imprint_algo)
        or verification_algorithm_problem(
            md_algo, signer_info["signature_algorithm"], tsa_cert.public_key
        )
    )
    return None, gen_time, tsa_cert, tsa_name, weak


def _implausible_time(
    gen_time: datetime | None, tsa_cert: x509.Certificate, validation_time: datetime
) -> Check | None:
    """Why a timestamp's genTime cannot be taken as proof, or ``None``: later than the
    validation time (beyond ``CLOCK_SKEW``: it did not exist then, or the TSA's clock lies), or
    outside its own TSA certificate's validity period (RFC 3161 §2.1: a TSA stamps only with a
    valid certificate, so the time is backdated or the key misused). Either way the token is
    INDETERMINATE and proves nothing; the signature under it is judged without it."""
    if gen_time is None:
        return check(UNDECIDED, "TIMESTAMP_INVALID", "FORMAT_FAILURE", "không có thời điểm")
    if gen_time > validation_time + CLOCK_SKEW:
        return check(UNDECIDED, "TIMESTAMP_AFTER_VALIDATION_TIME", "GENERIC", _iso(gen_time) or "")
    try:
        not_before, not_after = tsa_cert.not_valid_before, tsa_cert.not_valid_after
    except Exception:  # noqa: BLE001 - the chain check reports an unreadable certificate
        return None
    if gen_time < not_before:
        return check(
            UNDECIDED,
            "TIMESTAMP_OUTSIDE_TSA_VALIDITY",
            "NOT_YET_VALID",
            f"{_iso(gen_time)}, chứng thư có hiệu lực từ {_iso(not_before)}",
        )
    if gen_time > not_after:
        return check(
            UNDECIDED,
            "TIMESTAMP_OUTSIDE_TSA_VALIDITY",
            "OUT_OF_BOUNDS_NO_POE",
            f"{_iso(gen_time)}, chứng thư hết hạn {_iso(not_after)}",
        )
    return None


def _timestamp_chain_check(result: ChainResult) -> Check:
    """The timestamp check from its TSA's chain judgement, each cause with its own code."""
    status = result.status
    if result.ok:
        return check(PASS, "TIMESTAMP_VALID")
    name = status.name if status is not None else "NO_POE"
    if result.revocation is not None:
        when = f"thu hồi lúc {_iso(result.revocation.revocation_date)}"
        return check(UNDECIDED, "TIMESTAMP_TSA_REVOKED", name, when)
    if status in (
        AdESIndeterminate.TRY_LATER,
        AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE,
    ) or (status is AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE and result.revinfo_problem):
        return check(UNDECIDED, "TIMESTAMP_STATUS_UNKNOWN", "TRY_LATER")
    if status in (
        AdESIndeterminate.OUT_OF_BOUNDS_NO_POE,
        AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED,
        AdESIndeterminate.EXPIRED,
    ):
        return check(UNDECIDED, "TIMESTAMP_TSA_CERT_EXPIRED", "OUT_OF_BOUNDS_NO_POE")
    return check(UNDECIDED, "TIMESTAMP_UNTRUSTED", name)


# -- the verifier ---------------------------------------------------------------------------------
@dataclass
class _Doc:
    """What one verification knows about the document."""

    reader: PdfFileReader
    data: bytes
    chains: ChainValidator
    evidence: Evidence
    analysis: RevisionAnalysis
    validation_time: datetime
    # Validation as of a moment in the past (``validation_time`` asked for, e.g. ``--at``).
    past_requested: bool = False
    doc_timestamps: dict[int, TimestampResult] = field(default_factory=dict)  # by revision
    certs: SignerCertificates = field(default_factory=SignerCertificates)
    facts: DocumentFacts = field(default_factory=DocumentFacts)
    limits_hit: list[LimitExceeded] = field(default_factory=list)
    warnings: list[Note] = field(default_factory=list)
    described: dict[Any, Any] = field(default_factory=dict)  # per chain result / certificate


def _time_notes(
    doc: _Doc,
    field_name: str,
    first_ts: TimestampResult | None,
    claimed: datetime | None,
    poe: datetime | None,
) -> list[Note]:
    """Warnings about a signature's times that the checks themselves do not decide.

    - ``SIGNED_AFTER_VALIDATION_TIME``: the signature timestamp is later than the validation
      time asked for: at that moment the signature did not exist.
    - ``CLAIMED_SIGNED_AFTER_VALIDATION_TIME``: no timestamp, and the signer's own signing time
      is later than the validation time asked for (red team 17 F2).
    - ``EXISTENCE_ASSUMED_AT_VALIDATION_TIME``: validated as of a past moment with nothing
      proving the signature existed then (no timestamp or document timestamp at or before it):
      the result assumes it did. ETSI EN 319 102-1 § 5.6.2.4 (past signature validation)
      needs a proof of existence; a key revoked since can sign today with an earlier claimed
      time (red team 17 F2).
    - ``TIMESTAMP_BEFORE_CLAIMED_SIGNING_TIME``: the timestamp's time is earlier than the
      signing time the signer states inside what the timestamp covers, which an honest signer
      cannot produce: a wrong clock or a wrong claim (red team 17 F5).
    Each compared with :data:`CLOCK_SKEW` of tolerance."""
    notes: list[Note] = []
    stamped = first_ts.time if first_ts is not None else None
    later = doc.validation_time + CLOCK_SKEW
    if stamped is not None and stamped > later:
        notes.append(Note.of("SIGNED_AFTER_VALIDATION_TIME", signature=field_name))
    elif stamped is None and claimed is not None and claimed > later:
        notes.append(Note.of("CLAIMED_SIGNED_AFTER_VALIDATION_TIME", signature=field_name))
    elif doc.past_requested and (poe is None or poe > later):
        notes.append(Note.of("EXISTENCE_ASSUMED_AT_VALIDATION_TIME", signature=field_name))
    if stamped is not None and claimed is not None and stamped + CLOCK_SKEW < claimed:
        notes.append(Note.of("TIMESTAMP_BEFORE_CLAIMED_SIGNING_TIME", signature=field_name))
    return notes


class Verifier:
    """Verifies PDFs against ``trust``. ``allow_fetching``: fetch OCSP/CRL answers online (through
    ``revocation_cache``, shared by all verifications of the process) when validating at the
    present time."""

    def __init__(
        self,
        trust: TrustStore,
        allow_fetching: bool = True,
        *,
        fetcher_backend: FetcherBackend | None = None,
        limits: VerificationLimits = DEFAULT_LIMITS,
    ) -> None:
        self.trust = trust
        self.allow_fetching = allow_fetching
        self.limits = limits
        self._backend = fetcher_backend or (
            CachingFetcherBackend(
                REVOCATION_CACHE,
                per_request_timeout=trust.fetch_timeout,
                ca_issuer_urls=trust.ca_issuer_urls,
            )
            if allow_fetching
            else None
        )

    async def async_verify(
        self, data: bytes, *, validation_time: datetime | None = None
    ) -> DocumentReport:
        """Verify ``data`` (a PDF) and return the report.

        ``validation_time``: validate as of that moment (aware datetime) instead of now, as EU DSS
        allows for audits; revocation data is then only what the document carries.
        Raises :class:`NotPdfError`, :class:`UnreadablePdfError` (an unsigned file that cannot
        be parsed) or :class:`EncryptedPdfError`; every other problem is part of the report:
        a file over a parsing limit (:mod:`.limits`) or the time budget is TOTAL_FAILED /
        FORMAT_FAILURE with the limit's code, a signature that cannot be evaluated gets its own
        FAILED result.
        """
        now = datetime.now(UTC)
        moment = validation_time or now
        if moment.tzinfo is None:
            raise ValueError("validation_time must carry a time zone")
        validated_at = vietnam_time(now)
        deadline = time.monotonic() + self.limits.time_budget_seconds
        sha256 = hashlib.sha256(data).hexdigest()

        def failed(problem: Check) -> DocumentReport:
            return DocumentReport.conclude(
                sha256, len(data), [], [problem], validated_at, validation_time=_iso(moment)
            )

        try:
            return await self._verify(data, sha256, moment, now, validated_at, deadline)
        except LimitExceeded as e:
            return failed(_limit_problem(e))
        except (NotPdfError, UnreadablePdfError, EncryptedPdfError):
            raise
        except (Exception, RecursionError) as e:
            limit = classify_exception(e)
            if limit is not None:
                return failed(_limit_problem(limit))
            log.warning("verification failed unexpectedly", exc_info=True)
            return failed(check(FAIL, "UNPARSABLE_SIGNED_PDF", "FORMAT_FAILURE"))

    async def _verify(
        self,
        data: bytes,
        sha256: str,
        moment: datetime,
        now: datetime,
        validated_at: str,
        deadline: float,
    ) -> DocumentReport:
        live = self.allow_fetching and abs(moment - now) <= LIVE_TOLERANCE
        size = len(data)

        def unparsable() -> DocumentReport:
            problem = check(FAIL, "UNPARSABLE_SIGNED_PDF", "FORMAT_FAILURE")
            return DocumentReport.conclude(
                sha256, size, [], [problem], validated_at, validation_time=_iso(moment)
            )

        try:
            reader = open_reader(data, self.limits)
        except MalformedPdf as e:
            if e.code == NOT_PDF:
                raise NotPdfError() from None
            if find_signature_dictionaries(data) or claims_signature(data):
                return unparsable()
            raise UnreadablePdfError(e.detail) from None
        # Faster equivalents of pyHanko's per-revision bookkeeping (see diff_speedups).
        speed_up_reader(reader)
        warnings: list[Note] = []
        offset = pdf_header_offset(data) or 0
        if offset:
            # Viewers read from the header; the bytes before it are covered by no signature.
            data = data[offset:]
            warnings.append(Note.of("BYTES_BEFORE_HEADER", f"{offset} byte"))
        raw_sigs = find_signature_dictionaries(data)
        try:
            if reader.encrypted:
                result = reader.decrypt("")
                if result.status == AuthStatus.FAILED:
                    raise EncryptedPdfError()
            check_structure(reader, self.limits)
            fields = list(enumerate_sig_fields(reader))
        except (EncryptedPdfError, LimitExceeded):
            raise
        except (Exception, RecursionError) as e:  # noqa: BLE001 - parser errors are a verdict
            limit = classify_exception(e)
            if limit is not None:
                raise limit from None
            if raw_sigs or claims_signature(data):
                return unparsable()
            raise UnreadablePdfError(type(e).__name__) from None
        # What a viewer runs or opens from the file: no signature vouches for it (red team
        # 19b, R19B-2: a sealed document with a JavaScript open action read TOTAL_PASSED
        # without a word). After the structure limits: a file of 300,000 pages is refused by
        # them before this scan spends seconds on it (red team 20 R20-5).
        active = active_content(data)
        unchecked = [k for k in active if k in (ACTIVE_UNINSPECTABLE, ACTIVE_TOO_COMPLEX)]
        found = [k for k in active if k not in unchecked]
        if found:
            warnings.append(Note.of("ACTIVE_CONTENT_PRESENT", describe_active(found)))
        if unchecked:
            warnings.append(Note.of("ACTIVE_CONTENT_NOT_CHECKED", describe_active(unchecked)))

        embedded: list[EmbeddedPdfSignature] = []
        broken: list[SignatureReport] = []
        unsigned: list[str] = []
        for name, value, sig_field in fields:
            if value is None:
                unsigned.append(str(name))
                continue
            try:
                emb = EmbeddedPdfSignature(reader, sig_field, name)
                emb.signed_revision  # noqa: B018 - locate its revision now, fail here
                embedded.append(emb)
            except (Exception, RecursionError) as e:  # noqa: BLE001
                limit = classify_exception(e)
                if limit is not None:
                    raise limit from None
                # A filled signature field whose signature cannot even be read is broken,
                # never "unsigned".
                broken.append(_broken_signature(str(name), "signature", e))
        embedded.sort(key=lambda e: e.signed_revision)

        problems: list[Check] = []
        known_ids = set()
        for emb in embedded:
            ref = getattr(emb.sig_object, "container_ref", None)
            if ref is not None:
                known_ids.add(ref.idnum)
        for _name, value, _ in fields:
            if isinstance(value, generic.IndirectObject):
                known_ids.add(value.idnum)
        stray_sigs = [r for r in raw_sigs if r.idnum not in known_ids]
        if stray_sigs:
            problems.append(
                check(
                    FAIL,
                    "UNREACHABLE_SIGNATURE",
                    "FORMAT_FAILURE",
                    ", ".join(f"{s.idnum} {s.generation} obj" for s in stray_sigs[:5]),
                )
            )
        elif not fields_signed(fields) and claims_signature(data):
            # The readable part is unsigned, but the file carries (the remains of) a signature
            # the parser never reached — a damaged or truncated signed file: never "unsigned".
            problems.append(check(FAIL, "UNPARSABLE_SIGNED_PDF", "FORMAT_FAILURE"))
        elif not fields_signed(fields) and _incomplete_update(data):
            # An update that never ends (no %%EOF) after the readable document: a truncated
            # file, which may well have been signed — it cannot be called unsigned.
            problems.append(check(FAIL, "INCOMPLETE_REVISION", "FORMAT_FAILURE"))

        evidence = _collect_evidence(reader, embedded)
        facts = FACTS.facts(sha256)
        doc = _Doc(
            reader=reader,
            data=data,
            chains=ChainValidator(
                self.trust,
                evidence,
                validation_time=moment,
                live=live,
                fetcher_backend=self._backend,
            ),
            evidence=evidence,
            analysis=RevisionAnalysis(reader, data, DIFF_POLICY, facts.revisions, deadline),
            facts=facts,
            validation_time=moment,
            past_requested=moment < now - LIVE_TOLERANCE,
        )
        reports: list[SignatureReport] = list(broken)
        # Document timestamps first, newest first: each one proves when the older ones existed.
        ordered = [e for e in sorted(embedded, key=lambda e: -e.signed_revision)]
        ordered = [e for e in ordered if _is_doc_timestamp(e)] + [
            e for e in embedded if not _is_doc_timestamp(e)
        ]
        for emb in ordered:
            if time.monotonic() > deadline:
                raise LimitExceeded(TIME_BUDGET_EXCEEDED, f"{self.limits.time_budget_seconds} s")
            reports.append(await self._isolated(doc, emb))
        order = {str(e.field_name): e.signed_revision for e in embedded}
        reports.sort(key=lambda r: order.get(r.field, -1))
        warnings += self._warnings(doc, embedded, reports) + doc.warnings
        if embedded:
            # Damage inside signed bytes (a writer's wrong offsets, corpus rub-shadow files):
            # signed as it is, so no signature fails for it, but a repairing viewer may
            # show that revision differently: the reader is told. After every signature it
            # fails them (_modifications).
            last_signed = max(e.signed_revision for e in embedded)
            try:
                signed_damage = [d for r, d in doc.analysis.xref_damage() if r <= last_signed]
            except Exception:  # noqa: BLE001
                signed_damage = []
            if signed_damage:
                warnings.append(
                    Note.of("XREF_DAMAGED_IN_SIGNED_REVISION", _xref_detail(signed_damage[0]))
                )
        for code in dict.fromkeys(limit.code for limit in doc.limits_hit):
            problems.append(_limit_problem(next(x for x in doc.limits_hit if x.code == code)))
        return DocumentReport.conclude(
            sha256,
            size,
            reports,
            problems,
            validated_at,
            validation_time=_iso(moment),
            warnings=warnings,
            unsigned_fields=unsigned,
        )

    async def _isolated(self, doc: _Doc, emb: EmbeddedPdfSignature) -> SignatureReport:
        """One signature's (or document timestamp's) report; whatever goes wrong inside stays
        inside: a limit hit becomes a document-level problem, anything else that signature's
        FAILED result."""
        kind = "document_timestamp" if _is_doc_timestamp(emb) else "signature"
        try:
            if kind == "document_timestamp":
                return await self._verify_doc_timestamp(doc, emb)
            return await self._verify_signature(doc, emb)
        except LimitExceeded:
            raise
        except (Exception, RecursionError) as e:
            limit = classify_exception(e)
            if limit is not None:
                doc.limits_hit.append(limit)
            else:
                log.warning("signature %s could not be evaluated", emb.field_name, exc_info=True)
            return _broken_signature(str(emb.field_name), kind, e)

    # -- shared per-signature pieces --------------------------------------------------------
    def _integrity(
        self, doc: _Doc, emb: EmbeddedPdfSignature
    ) -> tuple[Check, x509.Certificate | None]:
        key = (str(emb.field_name), emb.signed_revision)
        found = doc.facts.integrity.get(key)
        if found is None:
            found = doc.facts.integrity[key] = self._compute_integrity(doc, emb)
        return found  # type: ignore[no-any-return]

    def _compute_integrity(
        self, doc: _Doc, emb: EmbeddedPdfSignature
    ) -> tuple[Check, x509.Certificate | None]:
        try:
            coverage = emb.evaluate_signature_coverage()
        except Exception:  # noqa: BLE001
            coverage = None
        try:
            cert = doc.certs.signer_cert(emb.signed_data)
        except Exception as e:  # noqa: BLE001
            if "SigningCert" in type(e).__name__ or "signing certificate" in str(e).lower():
                return check(FAIL, "SIGNING_CERTIFICATE_MISMATCH", "FORMAT_FAILURE"), None
            return check(FAIL, "SIGNATURE_UNREADABLE", "FORMAT_FAILURE"), None
        if _is_pkcs7_sha1(emb):
            return self._pkcs7_sha1_integrity(emb, cert, coverage)
        try:
            md_algorithm = emb.signer_info["digest_algorithm"]["algorithm"].native
        except Exception:  # noqa: BLE001 - malformed: the digest below fails the same way
            md_algorithm = "sha256"
        try:
            digest = emb.compute_digest()
            content_type = emb.signed_data["encap_content_info"]["content_type"].native
            intact, valid = signature_integrity(emb.signer_info, cert, content_type, digest)
        except SignatureValidationError:
            # Malformed signed attributes (content type missing or not the encapsulated one,
            # algorithm protection contradicting the algorithms): a format failure of the
            # signer's own making, or someone else's attributes under the signer's value
            # (red team 23a, R23A-1: "undetermined" for a forgery made without the key).
            if signature_value_valid(emb.signer_info, cert, md_algorithm) is False:
                return check(FAIL, "SIGNATURE_VALUE_INVALID", "SIG_CRYPTO_FAILURE"), cert
            return check(FAIL, "SIGNATURE_UNREADABLE", "FORMAT_FAILURE"), cert
        except Exception:  # noqa: BLE001
            # An algorithm pyHanko cannot verify (or a malformed value): the digest can still
            # be compared with the signed messageDigest attribute, and the value tried with
            # what the signer's key type allows (the algorithm field is not signed).
            try:
                attr = generic_cms.find_unique_cms_attribute(
                    emb.signer_info["signed_attrs"], "message_digest"
                ).native
                if attr != emb.compute_digest():
                    return check(FAIL, "HASH_MISMATCH", "HASH_FAILURE"), cert
            except Exception:  # noqa: BLE001
                return check(FAIL, "SIGNATURE_UNREADABLE", "FORMAT_FAILURE"), cert
            if signature_value_valid(emb.signer_info, cert, md_algorithm) is False:
                return check(FAIL, "SIGNATURE_VALUE_INVALID", "SIG_CRYPTO_FAILURE"), cert
            return (
                check(UNDECIDED, "SIGNATURE_NOT_CHECKED", "CRYPTO_CONSTRAINTS_FAILURE"),
                cert,
            )
        if not intact:
            return check(FAIL, "HASH_MISMATCH", "HASH_FAILURE"), cert
        if not valid:
            return check(FAIL, "SIGNATURE_VALUE_INVALID", "SIG_CRYPTO_FAILURE"), cert
        if coverage is None or coverage < SignatureCoverageLevel.ENTIRE_REVISION:
            return (
                check(
                    FAIL,
                    "NONSTANDARD_COVERAGE",
                    "FORMAT_FAILURE",
                    coverage.name if coverage else "UNCLEAR",
                ),
                cert,
            )
        return check(PASS, "INTACT"), cert

    @staticmethod
    def _pkcs7_sha1_integrity(
        emb: EmbeddedPdfSignature,
        cert: x509.Certificate,
        coverage: SignatureCoverageLevel | None,
    ) -> tuple[Check, x509.Certificate | None]:
        """Integrity of an ``adbe.pkcs7.sha1`` signature (ISO 32000-1 §12.8.3.3.1, as older
        tools and Acrobat 6 wrote them): the CMS encapsulates the SHA-1 digest of the byte
        range, and its signer info signs that content. Both links are checked; SHA-1 itself is
        then the algorithm policy's verdict (:func:`_algorithms_check`), never "changed"
        (red team 19 F2: such a signature read HASH_MISMATCH on an intact document)."""
        try:
            encap = emb.signed_data["encap_content_info"]
            content = encap["content"]
            if content is None or isinstance(content, core.Void):
                return check(FAIL, "SIGNATURE_UNREADABLE", "FORMAT_FAILURE"), cert
            econtent = bytes(content.native)
            if econtent != emb.compute_digest("sha1"):
                return check(FAIL, "HASH_MISMATCH", "HASH_FAILURE"), cert
            md_algo = emb.signer_info["digest_algorithm"]["algorithm"].native
            digest = hashlib.new(md_algo, econtent).digest()
            intact, valid = signature_integrity(
                emb.signer_info, cert, encap["content_type"].native, digest
            )
        except Exception:  # noqa: BLE001 - malformed, or an algorithm pyHanko cannot check
            return check(FAIL, "SIGNATURE_UNREADABLE", "FORMAT_FAILURE"), cert
        if not intact:
            return check(FAIL, "HASH_MISMATCH", "HASH_FAILURE"), cert
        if not valid:
            return check(FAIL, "SIGNATURE_VALUE_INVALID", "SIG_CRYPTO_FAILURE"), cert
        if coverage is None or coverage < SignatureCoverageLevel.ENTIRE_REVISION:
            name = coverage.name if coverage else "UNCLEAR"
            return check(FAIL, "NONSTANDARD_COVERAGE", "FORMAT_FAILURE", name), cert
        return check(PASS, "INTACT"), cert

    def _modifications(
        self, doc: _Doc, emb: EmbeddedPdfSignature, *, certifies: bool
    ) -> tuple[Check, tuple[Any, ...]]:
        analysis = doc.analysis
        try:
            coverage = emb.evaluate_signature_coverage()
        except Exception:  # noqa: BLE001
            return check(UNDECIDED, "MODIFICATIONS_UNKNOWN", "FORMAT_FAILURE"), ()
        if analysis.trailing_garbage():
            return check(FAIL, "UNCOVERED_TRAILING_BYTES", "FORMAT_FAILURE"), ()
        if coverage is SignatureCoverageLevel.ENTIRE_FILE:
            return check(PASS, "NO_CHANGES"), ()
        if coverage is None or coverage < SignatureCoverageLevel.ENTIRE_REVISION:
            return check(FAIL, "NONSTANDARD_COVERAGE", "FORMAT_FAILURE"), ()
        try:
            end = emb.byte_range[2] + emb.byte_range[3]
            stray = analysis.stray_objects(end)
        except Exception:  # noqa: BLE001
            stray = []
        if stray:
            detail = ", ".join(s for _, s in stray[:5])
            return check(FAIL, "UNREFERENCED_OBJECTS", "FORMAT_FAILURE", detail), ()
        # Cross-reference data written after this signature that points elsewhere than its
        # section or object (red team 16 F6): viewers rebuild the table and draw objects
        # this analysis never compared. A failure to check is a failure, not a pass.
        try:
            damage = [d for r, d in analysis.xref_damage() if r > emb.signed_revision]
        except Exception:  # noqa: BLE001
            damage = ["không kiểm tra được bảng xref"]
        if damage:
            return check(FAIL, "XREF_DAMAGED", "FORMAT_FAILURE", _xref_detail(damage[0])), ()
        # A repeated dictionary key after the signed revision: viewers disagree on which value
        # counts, so the comparison below would judge another document than they show (ISO
        # 32000-2 §7.3.7; red team 16 F8). An unreadable object is the diff's; the time budget
        # running out here is the document's bound (LimitExceeded, like the comparison's).
        duplicate = analysis.duplicate_key(emb.signed_revision)
        if duplicate is not None:
            return check(FAIL, "DUPLICATE_KEYS", "FORMAT_FAILURE", duplicate.detail), ()
        try:
            docmdp = emb.docmdp_level if certifies else None
            field_lock = emb.fieldmdp
        except Exception:  # noqa: BLE001
            docmdp, field_lock = None, None
        try:
            verdict = analysis.after(emb.signed_revision, doc_mdp=docmdp, field_lock=field_lock)
        except LimitExceeded:
            # The time budget ran out between two comparisons (RevisionAnalysis.change): the
            # document's bound, named as such, not "disallowed changes" (red team 16, F3).
            raise
        except (Exception, RecursionError):  # noqa: BLE001
            return check(FAIL, "DISALLOWED_CHANGES", "FORMAT_FAILURE"), ()
        if verdict.locked_field_changed is not None:
            return (
                check(FAIL, "LOCKED_FIELD_CHANGED", "FORMAT_FAILURE", verdict.locked_field_changed),
                verdict.added_annotations,
            )
        if verdict.limit is not None:
            doc.limits_hit.append(LimitExceeded(*verdict.limit))
        if verdict.level is None:
            extra = f"phiên bản {verdict.problem_revision}" if verdict.problem_revision else ""
            return (
                check(FAIL, "DISALLOWED_CHANGES", "FORMAT_FAILURE", extra),
                verdict.added_annotations,
            )
        if verdict.docmdp_ok is False:
            return (
                check(FAIL, "DOCMDP_VIOLATION", "FORMAT_FAILURE", verdict.level.name),
                verdict.added_annotations,
            )
        level = verdict.level
        if level in (ModificationLevel.NONE, ModificationLevel.LTA_UPDATES):
            code = "LTV_UPDATES_ONLY"
        elif level is ModificationLevel.FORM_FILLING:
            code = "ALLOWED_FORM_FILLING"
        else:
            code = "ALLOWED_ANNOTATIONS"
        return check(PASS, code), verdict.added_annotations

    async def _timestamp(
        self,
        doc: _Doc,
        token: cms.SignedData,
        kind: str,
        expected: Imprint,
        proven_by: datetime | None,
    ) -> TimestampResult:
        """Validate one timestamp token (``kind``: signature | content | document): integrity
        and imprint, algorithms, then the TSA's chain at the validation time, or else at
        ``proven_by`` (the time a later document timestamp proves)."""
        failed, gen_time, tsa_cert, tsa_name, weak = _token_integrity(
            token, expected, doc.certs, doc.facts
        )
        if failed is not None:
            return TimestampResult(kind, gen_time, tsa_name, failed)
        assert tsa_cert is not None
        if weak:
            return TimestampResult(
                kind,
                gen_time,
                tsa_name,
                check(UNDECIDED, "TIMESTAMP_WEAK_ALGORITHM", "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"),
                weak=True,
            )
        implausible = _implausible_time(gen_time, tsa_cert, doc.validation_time)
        if implausible is not None:
            return TimestampResult(kind, gen_time, tsa_name, implausible)
        result = await doc.chains.validate(tsa_cert, "tsa")
        if (
            not result.ok
            and proven_by is not None
            and result.status is not AdESIndeterminate.NO_CERTIFICATE_CHAIN_FOUND
        ):
            past = await doc.chains.validate(tsa_cert, "tsa", at=proven_by)
            if past.ok:
                result = past
        return TimestampResult(kind, gen_time, tsa_name, _timestamp_chain_check(result), result)

    def _proof_by_doc_timestamp(self, doc: _Doc, revision: int) -> datetime | None:
        """The earliest valid document timestamp over ``revision`` (in a later revision)."""
        times = [
            ts.time
            for rev, ts in doc.doc_timestamps.items()
            if rev > revision and ts.proves and ts.time is not None
        ]
        return min(times) if times else None

    async def _verify_doc_timestamp(self, doc: _Doc, emb: EmbeddedPdfSignature) -> SignatureReport:
        field_name = str(emb.field_name)
        checks: dict[str, Check] = {}
        try:
            digest = emb.compute_digest()
            coverage = emb.evaluate_signature_coverage()
        except Exception:  # noqa: BLE001
            checks["integrity"] = check(FAIL, "SIGNATURE_UNREADABLE", "FORMAT_FAILURE")
            report = SignatureReport(field=field_name, type="document_timestamp", checks=checks)
            report.conclude()
            doc.doc_timestamps[emb.signed_revision] = TimestampResult(
                "document", None, None, checks["integrity"]
            )
            return report
        proven_by = self._proof_by_doc_timestamp(doc, emb.signed_revision)
        # The token's imprint is the document digest itself (not a hash of it).
        ts = await self._timestamp(doc, emb.signed_data, "document", imprint_is(digest), proven_by)
        doc.doc_timestamps[emb.signed_revision] = ts
        integrity = check(PASS, "INTACT")
        if ts.check.status is FAIL:
            integrity = ts.check
        elif coverage < SignatureCoverageLevel.ENTIRE_REVISION:
            integrity = check(FAIL, "NONSTANDARD_COVERAGE", "FORMAT_FAILURE", coverage.name)
        checks["integrity"] = integrity
        modifications, _ = self._modifications(doc, emb, certifies=False)
        checks["modifications"] = modifications
        trust, revocation = _chain_checks(
            ts.chain, proven=ts.chain is not None and ts.chain.historical
        )
        if ts.check.code == "TIMESTAMP_WEAK_ALGORITHM":
            trust = check(
                UNDECIDED, "TIMESTAMP_WEAK_ALGORITHM", "CRYPTO_CONSTRAINTS_FAILURE_NO_POE"
            )
        checks["trust"] = trust
        checks["revocation"] = revocation
        checks["timestamp"] = ts.check
        tsa_cert = _token_signer(emb.signed_data)
        anchor = _anchor_info(self.trust, ts.chain)
        checks["algorithms"] = _algorithms_check(
            emb.md_algorithm, _signature_algorithm(emb), tsa_cert
        )
        report = SignatureReport(
            field=field_name,
            type="document_timestamp",
            checks=checks,
            signer=_signer_info_of(doc, tsa_cert) if tsa_cert is not None else None,
            signing_time=_iso(ts.time),
            signing_time_source="timestamp" if ts.time else None,
            timestamp_time=_iso(ts.time),
            md_algorithm=emb.md_algorithm,
            coverage=coverage.name,
            validation_time=_iso(
                ts.chain.moment
                if ts.chain is not None and ts.chain.historical
                else doc.validation_time
            ),
            trust_anchor=anchor,
            category=anchor.kind if anchor else None,
            category_label=anchor.kind_label if anchor else None,
            chain=_described(doc, ts.chain)[0],
            timestamps=[ts.info()],
            revocation_data=_described(doc, ts.chain)[1],
        )
        report.conclude()
        if _made_after_validation_time(report, doc, ts.time):
            doc.warnings.append(Note.of("SIGNED_AFTER_VALIDATION_TIME", signature=field_name))
        return report

    async def _verify_signature(self, doc: _Doc, emb: EmbeddedPdfSignature) -> SignatureReport:
        field_name = str(emb.field_name)
        try:
            certifies = emb.docmdp_level is not None and "/Reference" in emb.sig_object
        except Exception:  # noqa: BLE001
            certifies = False
        kind = "certification" if certifies else "signature"
        checks: dict[str, Check] = {}
        integrity, cert = self._integrity(doc, emb)
        checks["integrity"] = integrity
        modifications, _annotations = self._modifications(doc, emb, certifies=certifies)
        checks["modifications"] = modifications
        if cert is None:
            report = SignatureReport(field=field_name, type=kind, checks=checks)
            report.conclude()
            return report

        # Timestamps: signature timestamps prove when the signature existed; content
        # timestamps prove it was made after their time.
        proven_by_doc = self._proof_by_doc_timestamp(doc, emb.signed_revision)
        try:
            signature_value = emb.signer_info["signature"].native
        except Exception:  # noqa: BLE001
            signature_value = b""
        timestamps: list[TimestampResult] = []
        for token in _tst_tokens(emb.signer_info, signed=False)[:5]:
            timestamps.append(
                await self._timestamp(
                    doc, token, "signature", imprint_of(signature_value), proven_by_doc
                )
            )
        for token in _tst_tokens(emb.signer_info, signed=True)[:5]:
            timestamps.append(
                await self._timestamp(doc, token, "content", _content_imprint(emb), proven_by_doc)
            )
        proofs: list[tuple[datetime, str]] = [
            (t.time, "signature_timestamp")
            for t in timestamps
            if t.kind == "signature" and t.proves and t.time is not None
        ]
        if proven_by_doc is not None:
            proofs.append((proven_by_doc, "document_timestamp"))
        best = min(proofs) if proofs else None
        poe, poe_proof = (best[0], best[1]) if best else (None, None)
        not_before_times = [
            t.time for t in timestamps if t.kind == "content" and t.proves and t.time is not None
        ]
        not_before = max(not_before_times) if not_before_times else None

        notes: list[Note] = []
        trust, revocation, chain_result = await self._judge_signer(
            doc, cert, poe, not_before, notes
        )
        checks["trust"] = trust
        checks["revocation"] = revocation
        # A signature timestamp whose token is broken (its own signature fails, or its imprint
        # is not this signature's value) is set aside, as ETSI EN 319 102-1 §5.5.4 removes a
        # time-stamp that failed validation: the token sits in an unsigned attribute anyone can
        # replace, so the document is judged as if it had none (red team 21c R21C-2: a token
        # swapped for another signature's read "tài liệu đã bị sửa đổi" on an intact document;
        # removing it gave B-B and a pass). A warning names it.
        broken = [t for t in timestamps if t.kind == "signature" and _broken(t)]
        sig_ts = [t for t in timestamps if t.kind == "signature" and not _broken(t)]
        if broken:
            doc.warnings.append(Note.of("SIGNATURE_TIMESTAMP_BROKEN", signature=field_name))
        if sig_ts:
            good = next((t for t in sig_ts if t.proves), None)
            checks["timestamp"] = (good or sig_ts[0]).check
        elif broken and proven_by_doc is None:
            checks["timestamp"] = check(NA, "SIGNATURE_TIMESTAMP_BROKEN")
        elif proven_by_doc is not None:
            checks["timestamp"] = check(PASS, "TIMESTAMP_VALID", extra="dấu thời gian tài liệu")
        else:
            checks["timestamp"] = check(NA, "NO_TIMESTAMP")
        # adbe.pkcs7.sha1: the document is bound by SHA-1 whatever the signer info uses.
        document_md = "sha1" if _is_pkcs7_sha1(emb) else emb.md_algorithm
        checks["algorithms"] = _algorithms_check(document_md, _signature_algorithm(emb), cert)

        try:
            claimed = emb.self_reported_timestamp
        except Exception:  # noqa: BLE001
            claimed = None
        # A /M date without its offset (older tools write local time so; "D:2026" alone is
        # valid too): ISO 32000-1 §7.9.4 leaves its relation to UTC unknown. It is read as UTC,
        # as EU DSS reads it (red team 19 F1: comparing it as it was crashed the signature's
        # evaluation, and a genuine signature read "unreadable"); the time warnings compare
        # the earliest instant it can mean (local time at UTC+14), so that they fire only when
        # certain (new user 20 #9: a claimed time hours in the future went unremarked).
        zoned_claim = claimed
        naive_claim = claimed is not None and claimed.tzinfo is None
        if claimed is not None and claimed.tzinfo is None:
            claimed = claimed.replace(tzinfo=UTC)
            zoned_claim = claimed - timedelta(hours=14)
        first_ts = next((t for t in sig_ts if t.time is not None), None)
        # The signing time people read: proven by a timestamp; else the time a timestamp
        # states even though it could not be verified; else the signer's own claim.
        if poe is not None:
            signing_time, source = poe, "timestamp"
        elif first_ts is not None:
            signing_time, source = first_ts.time, "timestamp_unverified"
        elif claimed is not None:
            signing_time, source = claimed, "claimed"
        else:
            signing_time, source = None, None
        doc.warnings += _time_notes(doc, field_name, first_ts, zoned_claim, poe)
        # The only link to the signer's certificate a SHA-1 hash (ESS signing-certificate v1
        # without v2): EU DSS warns, the national algorithm policy excludes SHA-1 (red team
        # 23a, R23A-5: "algorithms: PASSED" and no word).
        try:
            attr_types = {a["type"].native for a in emb.signer_info["signed_attrs"]}
        except Exception:  # noqa: BLE001
            attr_types = set()
        if "signing_certificate" in attr_types and "signing_certificate_v2" not in attr_types:
            doc.warnings.append(Note.of("SIGNING_CERTIFICATE_SHA1", signature=field_name))
        # A claimed time before the signer's certificate existed (red team 23a, R23A-4: "Hợp lệ"
        # with a signing time of 28/11 beside "certificate valid from 30/11", no word): the
        # latest instant the claim can mean (a time without offset: local time at UTC-12).
        latest_claim = claimed + timedelta(hours=12) if naive_claim and claimed else claimed
        try:
            not_before = cert.not_valid_before if cert is not None else None
        except Exception:  # noqa: BLE001
            not_before = None
        if (
            latest_claim is not None
            and not_before is not None
            and latest_claim + CLOCK_SKEW < not_before
        ):
            doc.warnings.append(
                Note.of("CLAIMED_SIGNING_TIME_BEFORE_CERTIFICATE", signature=field_name)
            )
        if source == "claimed" and naive_claim:
            doc.warnings.append(Note.of("CLAIMED_TIME_ZONE_UNKNOWN", signature=field_name))
        if (
            chain_result is not None
            and checks["revocation"].status == PASS
            and doc.chains.not_refreshed(chain_result)
        ):
            doc.warnings.append(Note.of("REVOCATION_NOT_REFRESHED", signature=field_name))
        try:
            mechanism = emb.signer_info["signature_algorithm"]["algorithm"].native
        except Exception:  # noqa: BLE001
            mechanism = None
        anchor = _anchor_info(self.trust, chain_result)
        report = SignatureReport(
            field=field_name,
            type=kind,
            checks=checks,
            signer=_signer_info_of(doc, cert),
            signing_time=_iso(signing_time),
            signing_time_source=source,
            timestamp_time=_iso(first_ts.time) if first_ts else None,
            md_algorithm=emb.md_algorithm,
            signature_algorithm=mechanism,
            coverage=_coverage_name(emb),
            level=self._level(doc, emb, cert, bool(sig_ts) or proven_by_doc is not None),
            # The past moment a proof of existence let the chain be judged at; otherwise the
            # document's validation time (a live context's own "now" is a few ms later).
            validation_time=_iso(
                chain_result.moment
                if chain_result is not None and chain_result.historical
                else doc.validation_time
            ),
            best_signature_time=_iso(poe),
            best_signature_time_proof=poe_proof,
            trust_anchor=anchor,
            category=anchor.kind if anchor else None,
            category_label=anchor.kind_label if anchor else None,
            chain=_described(doc, chain_result)[0],
            timestamps=[t.info() for t in timestamps],
            revocation_data=_described(doc, chain_result)[1],
            notes=notes,
        )
        report.conclude()
        _made_after_validation_time(report, doc, first_ts.time if first_ts else None)
        return report

    async def _judge_signer(
        self,
        doc: _Doc,
        cert: x509.Certificate,
        poe: datetime | None,
        not_before: datetime | None,
        notes: list[Note],
    ) -> tuple[Check, Check, ChainResult | None]:
        """The trust and revocation checks of a signer, at the validation time and, when that
        cannot conclude and a proof of existence allows, at the proven time."""
        chains = doc.chains
        current = await chains.validate(cert, "signer")
        if poe is not None and poe < cert.not_valid_before:
            return (
                check(FAIL, "CERT_NOT_YET_VALID", "NOT_YET_VALID"),
                check(UNDECIDED, "REVOCATION_NOT_CHECKED", "NOT_YET_VALID"),
                current,
            )
        if current.ok:
            return (*_chain_checks(current, proven=False), current)
        status = current.status
        if status is AdESIndeterminate.NO_CERTIFICATE_CHAIN_FOUND:
            return (*_chain_checks(current, proven=False), current)

        if current.revocation is not None:
            past = await self._past(doc, cert, poe)
            trust, revocation = self._revoked(current, poe, not_before, notes, past)
            return trust, revocation, (past if past is not None and past.ok else current)

        time_related = status in (
            AdESIndeterminate.OUT_OF_BOUNDS_NO_POE,
            AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED,
            AdESIndeterminate.TRY_LATER,
            AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE,
            AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
            AdESIndeterminate.EXPIRED,
        ) or (
            status is AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE
            and current.revinfo_problem
        )
        if time_related and poe is not None:
            past = await self._past(doc, cert, poe)
            assert past is not None
            if past.ok:
                notes.append(Note.of("VALIDATED_AT_PROVEN_TIME", _iso(poe) or ""))
                return (*_chain_checks(past, proven=True), past)
            if past.revocation is not None:
                return (*self._revoked(past, poe, not_before, notes, past), past)
            return (*_chain_checks(past, proven=True), past)
        if time_related:
            # Stale or missing revocation data and no proof of time: if anything we hold shows
            # the certificate revoked, say so (REVOKED_NO_POE), never "not revoked".
            revoked = await chains.find_revocation(cert, "signer")
            if revoked is not None:
                return (*self._revoked(revoked, None, not_before, notes, None), revoked)
        return (*_chain_checks(current, proven=False), current)

    async def _past(
        self, doc: _Doc, cert: x509.Certificate, poe: datetime | None
    ) -> ChainResult | None:
        if poe is None:
            return None
        return await doc.chains.validate(cert, "signer", at=poe)

    def _revoked(
        self,
        result: ChainResult,
        poe: datetime | None,
        not_before: datetime | None,
        notes: list[Note],
        past: ChainResult | None,
    ) -> tuple[Check, Check]:
        details = result.revocation
        assert details is not None
        revoked_at = details.revocation_date
        when = f"thu hồi lúc {_iso(revoked_at)}"
        ca = details.ca_revoked
        if not_before is not None and not_before >= revoked_at:
            # A content timestamp proves the signature was made after the revocation.
            if ca:
                return (
                    check(FAIL, "CHAIN_REVOKED", "REVOKED", when),
                    check(FAIL, "REVOKED", "REVOKED", when),
                )
            return check(PASS, "CHAIN_TRUSTED"), check(FAIL, "REVOKED", "REVOKED", when)
        if poe is not None and poe < revoked_at and past is not None and past.ok:
            notes.append(Note.of("REVOKED_AFTER_PROVEN_TIME", when))
            return (
                check(PASS, "CHAIN_TRUSTED_AT_SIGNING_TIME"),
                check(PASS, "REVOKED_AFTER_SIGNING", extra=when),
            )
        if poe is not None and poe < revoked_at and past is not None:
            return _chain_checks(past, proven=True)
        sub = "REVOKED_CA_NO_POE" if ca else "REVOKED_NO_POE"
        trust = check(UNDECIDED, "CHAIN_REVOKED", sub, when) if ca else check(PASS, "CHAIN_TRUSTED")
        return trust, check(UNDECIDED, "REVOKED_NO_POE", sub, when)

    def _level(
        self, doc: _Doc, emb: EmbeddedPdfSignature, cert: x509.Certificate, timestamped: bool
    ) -> str | None:
        """PAdES baseline level (ETSI EN 319 142-1 §6): B-B; B-T with a signature or document
        timestamp; B-LT with revocation data about the signer's certificate added for this
        signature to the DSS: written by the signature's revision or a later one (data written
        before the signature existed was gathered for another signature: new user 18 #4);
        B-LTA with a document timestamp over a later revision that holds the DSS. The levels
        are defined for ``ETSI.CAdES.detached`` signatures; an ``adbe.pkcs7.*`` signature gets
        the same steps named ``PKCS7-B`` … ``PKCS7-LTA``, as EU DSS names them (red team 19
        F7: an Adobe-style signature read "PAdES B-LT" from its own revocation attribute,
        which no baseline level counts)."""
        level = self._baseline(doc, emb, cert, timestamped)
        if str(emb.sig_object.get("/SubFilter")) != "/ETSI.CAdES.detached":
            return "PKCS7-" + level[2:]
        if not _baseline_attributes(emb.signer_info):
            return "E-" + level[2:]
        return level

    def _baseline(
        self, doc: _Doc, emb: EmbeddedPdfSignature, cert: x509.Certificate, timestamped: bool
    ) -> str:
        """The baseline step the signature's data reaches (:meth:`_level` names it)."""
        if not timestamped:
            return "B-B"
        written = doc.evidence.written
        later = [
            item
            for item in (*doc.evidence.ocsps, *doc.evidence.crls)
            if _speaks_about(item, cert)
            and written.get(hashlib.sha256(item.dump()).digest(), -1) >= emb.signed_revision
        ]
        # Only the issuer's own word counts (red team 21c R21C-1: a CRL or OCSP answer signed
        # by anyone under the CA's name made a B-T document "B-LT").
        issuers = _issuers(doc, cert, emb) if later else []
        vouched = [
            written.get(hashlib.sha256(item.dump()).digest(), -1)
            for item in later
            if vouches_for(item, cert, issuers, doc.evidence.certs)
        ]
        if not vouched:
            return "B-T"
        # B-LTA: a document timestamp over the validation data (ETSI EN 319 142-1 §6.4): in
        # the revision holding it (a document timestamp covers its whole revision) or a later
        # one. Any DSS before the timestamp was enough, and revocation data appended after it
        # (a DSS of certificates only, timestamped) read "B-LTA" where EU DSS says LT (red
        # team 23a, R23A-3).
        first_written = min(vouched)
        for revision in doc.doc_timestamps:
            if revision > emb.signed_revision and revision >= first_written:
                return "B-LTA"
        return "B-LT"

    def _warnings(
        self,
        doc: _Doc,
        embedded: list[EmbeddedPdfSignature],
        reports: list[SignatureReport],
    ) -> list[Note]:
        """What a reader must see even when every signature passes: annotations added after
        the first signature (they can cover signed content: the Evil Annotation Attack), in
        particular over a signature's appearance, and certificates that expired since."""
        warnings: list[Note] = []
        signatures = [e for e in embedded if not _is_doc_timestamp(e)]
        if signatures:
            first = signatures[0]
            signed_names = {str(e.field_name) for e in embedded}
            signed_refs = {ref for e in embedded for ref in _widget_refs(e)}
            stamps = {ref for e in embedded if _is_doc_timestamp(e) for ref in _widget_refs(e)}
            widgets: list[
                tuple[
                    int | None, tuple[float, float, float, float] | None, str, set[tuple[int, int]]
                ]
            ] = []
            for emb in signatures:
                widgets.append(
                    (
                        _widget_page(doc, emb),
                        _widget_rect(emb),
                        str(emb.field_name),
                        _widget_refs(emb),
                    )
                )
            seen: set[tuple[int, int, str, tuple[float, ...] | None, tuple[int, int] | None]] = (
                set()
            )
            unreviewed = 0
            unreadable: list[int] = []
            for revision in range(first.signed_revision + 1, doc.analysis.revisions):
                try:
                    change = doc.analysis.change(revision)
                except Exception:  # noqa: BLE001
                    continue
                unreviewed = max(unreviewed, change.annotations_unreviewed_pages)
                if change.annotations_unreadable:
                    unreadable.append(revision)
                for annot in change.added_annotations:
                    code = _annotation_warning(annot, signed_names, signed_refs, stamps)
                    if code is None:
                        continue
                    key = (annot.revision, annot.page, annot.change, annot.rect, annot.ref)
                    if key in seen:
                        continue
                    seen.add(key)
                    # A signature's own widget is told by its object, never by a name: a
                    # comment's /T is its author's name, anything its author types (red
                    # team 19 F5: a comment "by" Signature1 over that stamp went unnamed).
                    covered = [
                        name
                        for page, rect, name, refs in widgets
                        if page == annot.page
                        and not _is_own_widget(annot, name, refs)
                        and (
                            _overlaps(rect, annot.rect)
                            # No rectangle to read: it may be anywhere on the page (R21-3).
                            or (annot.rect is None and not annot.rect_plain and rect is not None)
                        )
                    ]
                    if covered and annot.change != "removed":
                        code = "ANNOTATION_OVER_SIGNATURE"
                    detail = f"trang {annot.page}, {annotation_kind(annot.subtype)}"
                    if annot.field is not None:
                        detail += f", trường {annot.field}"
                    elif annot.author is not None:
                        detail += f", tác giả {annot.author}"
                    warnings.append(
                        Note.of(
                            code,
                            detail,
                            signature=covered[0] if covered else None,
                            page=annot.page,
                            rect=annot.rect,
                        )
                    )
                    if len(warnings) >= 50:
                        return warnings
            if unreviewed:
                warnings.append(
                    Note.of(
                        "ANNOTATIONS_NOT_REVIEWED",
                        f"{unreviewed} trang sau trang {MAX_PAGES_FOR_ANNOTATION_REVIEW}",
                    )
                )
            if unreadable:
                warnings.append(
                    Note.of(
                        "ANNOTATIONS_UNREADABLE",
                        "phiên bản " + ", ".join(str(r) for r in unreadable[:10]),
                    )
                )
        for report in reports:
            if any(n.code == "VALIDATED_AT_PROVEN_TIME" for n in report.notes) and report.signer:
                try:
                    expired = datetime.fromisoformat(report.signer.valid_to) < doc.validation_time
                except ValueError:
                    expired = False
                if expired:
                    warnings.append(Note.of("CERTIFICATE_EXPIRED_SINCE", signature=report.field))
        return warnings


_XREF_DETAIL = (
    (
        re.compile(r"revision (\d+): no cross-reference section at (-?\d+)"),
        r"phiên bản \1: không có bảng xref tại byte \2",
    ),
    (
        re.compile(r"revision (\d+): object (\d+) (\d+) not at (-?\d+)"),
        r"phiên bản \1: đối tượng \2 \3 không nằm tại byte \4",
    ),
)


def _xref_detail(detail: str) -> str:
    """A :func:`signing.repair.xref_damages` detail (English, shared with the signer's logs)
    in the report's words."""
    for pattern, words in _XREF_DETAIL:
        detail = pattern.sub(words, detail)
    return detail


def _widget_refs(emb: EmbeddedPdfSignature) -> set[tuple[int, int]]:
    """The objects ``(number, generation)`` of ``emb``'s widget annotations: its field
    dictionary (a field merged with its widget) and its /Kids."""
    refs: set[tuple[int, int]] = set()
    try:
        field_dict = emb.sig_field
        ref = getattr(field_dict, "container_ref", None)
        if ref is not None:
            refs.add((ref.idnum, ref.generation))
        kids = field_dict.raw_get("/Kids") if "/Kids" in field_dict else None
        if isinstance(kids, generic.IndirectObject):
            kids = kids.get_object()
        if isinstance(kids, generic.ArrayObject):
            for i in range(min(len(kids), 1_000)):
                kid = kids.raw_get(i)
                if isinstance(kid, generic.IndirectObject):
                    refs.add((kid.idnum, kid.generation))
    except Exception:  # noqa: BLE001 - no widget known: nothing is its own
        return refs
    return refs


def _is_own_widget(annot: AddedAnnotation, name: str, refs: set[tuple[int, int]]) -> bool:
    """Whether ``annot`` is the signature ``name``'s own widget (by object when known)."""
    if annot.ref is not None:
        return annot.ref in refs
    return annot.field == name


def _annotation_warning(
    annot: AddedAnnotation,
    signed_names: set[str],
    signed_refs: set[tuple[int, int]],
    timestamp_refs: frozenset[tuple[int, int]] | set[tuple[int, int]] = frozenset(),
) -> str | None:
    """The warning an annotation change after the first signature deserves, or ``None``.

    A signature widget of a field signed later is that signature's own appearance; one of an
    unsigned field is a picture anyone can paint (over the signed text) without signing, and is
    named as such when visible; so is a document timestamp's (``timestamp_refs``: its widgets):
    a timestamp names no signer, and ISO 32000-2 §12.8.5 gives it no appearance, yet a visible
    one can paint anything, a "Ký bởi" stamp or a new amount (red team 21). Widgets of form
    fields changing are form filling, which the modification check judges. Comments added,
    edited or removed after signing are named."""
    if annot.subtype == "Widget":
        if not annot.is_signature_widget or annot.change != "added":
            return None
        if annot.rect_plain and (
            annot.rect is None or annot.rect[2] <= annot.rect[0] or annot.rect[3] <= annot.rect[1]
        ):
            return None  # invisible: shows nothing
        # (A /Rect not written as four numbers may show wherever a viewer reads it: R21-3.)
        if annot.ref is not None and annot.ref in timestamp_refs:
            return "TIMESTAMP_APPEARANCE_ADDED"
        if annot.ref is not None and annot.ref in signed_refs:
            return None
        if annot.ref is None and annot.field is not None and annot.field in signed_names:
            return None
        return "UNSIGNED_FIELD_ADDED_AFTER_SIGNING"
    return {
        "added": "ANNOTATION_ADDED_AFTER_SIGNING",
        "changed": "ANNOTATION_CHANGED_AFTER_SIGNING",
        "removed": "ANNOTATION_REMOVED_AFTER_SIGNING",
    }.get(annot.change)


def _signer_info_of(doc: _Doc, cert: x509.Certificate) -> SignerInfo:
    """The signer's description, once per certificate and document."""
    key = ("signer", fingerprint(cert))
    found = doc.described.get(key)  # type: ignore[call-overload]
    if found is None:
        found = doc.described[key] = _signer_info(cert)  # type: ignore[index]
    return dataclasses.replace(found)  # each report owns its copy


def _described(
    doc: _Doc, result: ChainResult | None
) -> tuple[list[ChainEntry], list[RevocationDataInfo]]:
    """The chain and the revocation data of a chain judgement, described once per document."""
    key = id(result)
    found = doc.described.get(key)
    if found is None:
        found = (_chain_entries(result), _revocation_used(result, doc.evidence, doc.chains))
        doc.described[key] = (found, result)  # keep ``result`` alive: ids stay unique
        return found
    return found[0]  # type: ignore[no-any-return]


def _incomplete_update(data: bytes) -> bool:
    """Object definitions after the last ``%%EOF``: an incremental update cut short."""
    end = data.rfind(b"%%EOF")
    tail = data[end + 5 :] if end >= 0 else data
    return _OBJ_HEADER.search(tail) is not None


def fields_signed(fields: list[Any]) -> bool:
    """Whether any signature field has a value."""
    return any(value is not None for _, value, _ in fields)


def _limit_problem(limit: LimitExceeded) -> Check:
    # The code names the bound; the detail (English, technical) goes to the log, not to people.
    log.info("verification limit %s: %s", limit.code, limit.detail)
    return Check(FAIL, limit.code, limit.message, "FORMAT_FAILURE")


def _broken_signature(name: str, kind: str, error: BaseException) -> SignatureReport:
    report = SignatureReport(
        field=name,
        type=kind,
        checks={"integrity": check(FAIL, "SIGNATURE_UNREADABLE", "FORMAT_FAILURE")},
    )
    report.conclude()
    return report


def _content_imprint(emb: EmbeddedPdfSignature) -> Imprint:
    """A content timestamp's imprint is over the signed content: the messageDigest attribute
    when both use the same algorithm (pyHanko makes the same assumption)."""
    try:
        digest = generic_cms.find_unique_cms_attribute(
            emb.signer_info["signed_attrs"], "message_digest"
        ).native
    except Exception:  # noqa: BLE001 - no digest: nothing can match
        return lambda _algorithm: None
    return imprint_is(digest)


def _signature_algorithm(emb: EmbeddedPdfSignature) -> object:
    try:
        return emb.signer_info["signature_algorithm"]
    except Exception:  # noqa: BLE001 - unreadable: the policy calls it not allowed
        return None


def _is_doc_timestamp(emb: EmbeddedPdfSignature) -> bool:
    try:
        return emb.sig_object_type == "/DocTimeStamp"
    except Exception:  # noqa: BLE001
        return False


def _coverage_name(emb: EmbeddedPdfSignature) -> str | None:
    try:
        return emb.evaluate_signature_coverage().name
    except Exception:  # noqa: BLE001
        return None


def _token_signer(token: cms.SignedData) -> x509.Certificate | None:
    try:
        return generic_cms.extract_certs_for_validation(token).signer_cert
    except Exception:  # noqa: BLE001
        return None


def _issuers(
    doc: _Doc, cert: x509.Certificate, emb: EmbeddedPdfSignature | None = None
) -> list[x509.Certificate]:
    """The certificates that issued ``cert`` among the trust store's, the document's and (with
    ``emb``) that signature's own (:func:`.vouching.issuers_of`)."""
    own: list[x509.Certificate] = []
    if emb is not None:
        try:
            own = [
                c.chosen for c in emb.signed_data["certificates"] or () if c.name == "certificate"
            ]
        except Exception:  # noqa: BLE001
            own = []
    trust = doc.chains.trust
    return issuers_of(cert, [*trust.roots, *trust.intermediates, *doc.evidence.certs, *own])


def _speaks_about(item: crl.CertificateList | ocsp.OCSPResponse, cert: x509.Certificate) -> bool:
    """Whether a CRL (issued by ``cert``'s issuer) or an OCSP response (a single response whose
    CertID names ``cert``: serial number AND issuer name hash, RFC 6960 §4.1.1; serial numbers
    are unique only per issuer, and the dev PKI's root and issuing CA both count from 4097)
    gives ``cert``'s status."""
    try:
        if isinstance(item, crl.CertificateList):
            return bool(item["tbs_cert_list"]["issuer"] == cert.issuer)
        data = item["response_bytes"]["response"].parsed["tbs_response_data"]
        issuer = cert.issuer.dump()
        for single in data["responses"]:
            cert_id = single["cert_id"]
            if cert_id["serial_number"].native != cert.serial_number:
                continue
            algorithm = cert_id["hash_algorithm"]["algorithm"].native
            if hashlib.new(algorithm, issuer).digest() == cert_id["issuer_name_hash"].native:
                return True
        return False
    except Exception:  # noqa: BLE001
        return False


def _made_after_validation_time(
    report: SignatureReport, doc: _Doc, stamped: datetime | None
) -> bool:
    """When a signature's (or document timestamp's) own timestamp ``stamped`` is later than
    the validation time: at that moment there was nothing to judge, which is the reason to
    give (the checks left undecided follow from it: a timestamp "from the future", no status
    as of then), not "try later" (new user 18 #7, new user 20 #4). ETSI EN 319 102-1
    §5.6.2.4: no proof of existence at the validation time. An INDETERMINATE ``report``
    becomes ``NO_POE`` with that summary. Returns whether it was made after."""
    if stamped is None or stamped <= doc.validation_time + CLOCK_SKEW:
        return False
    if report.indication is Indication.INDETERMINATE:
        report.sub_indication = "NO_POE"
        report.summary = message("SIGNED_AFTER_VALIDATION_TIME")
    return True


def _baseline_attributes(signer_info: cms.SignerInfo) -> bool:
    """Whether the signed attributes are those of a PAdES baseline signature (ETSI EN 319 142-1
    §6.3): an ESS signing-certificate-v2 attribute (or the v1 one, which the standard allows
    with SHA-1) binds the signer's certificate, and no CMS signing-time attribute (the claimed
    time is the dictionary's /M). Without them an ``ETSI.CAdES.detached`` signature is of the
    extended profiles (EN 319 142-2; EU DSS: PAdES-BES or PDF-NOT-ETSI), and its level is
    named ``E-B`` … ``E-LTA`` (red team 23a, R23A-2: such a signature read "PAdES B-LT")."""
    try:
        types = {a["type"].native for a in signer_info["signed_attrs"]}
    except Exception:  # noqa: BLE001 - unreadable attributes fail integrity anyway
        return False
    has_ess = bool({"signing_certificate_v2", "signing_certificate"} & types)
    return has_ess and "signing_time" not in types


def _is_pkcs7_sha1(emb: EmbeddedPdfSignature) -> bool:
    """Whether ``emb`` is an ``adbe.pkcs7.sha1`` signature (ISO 32000-1 §12.8.3.3.1)."""
    try:
        return str(emb.sig_object.get("/SubFilter")) == "/adbe.pkcs7.sha1"
    except Exception:  # noqa: BLE001
        return False


def _widget_rect(emb: EmbeddedPdfSignature) -> tuple[float, float, float, float] | None:
    from signing_service.verification.modifications import _rect

    try:
        return _rect(emb.sig_field.get("/Rect"))
    except Exception:  # noqa: BLE001
        return None


def _widget_page(doc: _Doc, emb: EmbeddedPdfSignature) -> int | None:
    try:
        page_ref = emb.sig_field.raw_get("/P")
        if not isinstance(page_ref, generic.IndirectObject):
            return None
        pages = page_refs(doc.reader.get_historical_resolver(doc.analysis.revisions - 1))
        return pages.index(page_ref.reference) + 1
    except Exception:  # noqa: BLE001
        return None


# Annotation subtypes (ISO 32000-1 §12.5.6) as people name them (new user 22 #7: "loại Widget"
# reached portals); another subtype keeps its PDF name.
ANNOTATION_KINDS = {
    "Widget": "ô biểu mẫu hoặc ô chữ ký",
    "Text": "ghi chú",
    "FreeText": "hộp chữ",
    "Square": "hình chữ nhật",
    "Circle": "hình tròn",
    "Line": "đường kẻ",
    "Polygon": "hình đa giác",
    "PolyLine": "đường gấp khúc",
    "Ink": "nét vẽ tay",
    "Highlight": "tô sáng",
    "Underline": "gạch chân",
    "StrikeOut": "gạch ngang",
    "Squiggly": "gạch lượn sóng",
    "Stamp": "dấu chú thích",
    "Caret": "dấu chèn",
    "Link": "liên kết",
    "FileAttachment": "tệp đính kèm",
    "Popup": "cửa sổ ghi chú",
    "Redact": "vùng che",
}


def annotation_kind(subtype: str) -> str:
    """``subtype`` (without the slash) in Vietnamese: "loại …" for one without a name here."""
    return ANNOTATION_KINDS.get(subtype, f"loại {subtype}")


def _overlaps(
    a: tuple[float, float, float, float] | None, b: tuple[float, float, float, float] | None
) -> bool:
    if a is None or b is None:
        return False
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _chain_checks(result: ChainResult | None, *, proven: bool) -> tuple[Check, Check]:
    """Trust and revocation checks from one chain judgement."""
    if result is None:
        return (
            check(UNDECIDED, "TRUST_UNDETERMINED", "NO_CERTIFICATE_CHAIN_FOUND"),
            check(UNDECIDED, "REVOCATION_NOT_CHECKED", "NO_CERTIFICATE_CHAIN_FOUND"),
        )
    when = f"tại {_iso(result.moment)}" if result.historical else ""
    if result.ok:
        if proven or result.historical:
            return (
                check(PASS, "CHAIN_TRUSTED_AT_SIGNING_TIME", extra=when),
                check(PASS, "NOT_REVOKED_AT_SIGNING_TIME", extra=when),
            )
        return check(PASS, "CHAIN_TRUSTED"), check(PASS, "NOT_REVOKED")
    status = result.status
    name = status.name if status is not None else "GENERIC"
    if status is AdESIndeterminate.NO_CERTIFICATE_CHAIN_FOUND:
        return (
            check(UNDECIDED, "NO_CHAIN_TO_TRUSTED_ROOT", name),
            check(UNDECIDED, "REVOCATION_NOT_CHECKED", name),
        )
    if status in (
        AdESIndeterminate.OUT_OF_BOUNDS_NO_POE,
        AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED,
        AdESIndeterminate.EXPIRED,
    ):
        code = "CERT_EXPIRED_BEFORE_SIGNING" if result.historical else "CERT_EXPIRED_NO_POE"
        return (
            check(UNDECIDED, code, "OUT_OF_BOUNDS_NO_POE", when),
            check(UNDECIDED, "REVOCATION_NOT_CHECKED", "OUT_OF_BOUNDS_NO_POE"),
        )
    if status in (AdESFailure.NOT_YET_VALID, AdESIndeterminate.NOT_YET_VALID):
        return (
            check(FAIL, "CERT_NOT_YET_VALID", "NOT_YET_VALID"),
            check(UNDECIDED, "REVOCATION_NOT_CHECKED", "NOT_YET_VALID"),
        )
    if status is AdESIndeterminate.CHAIN_CONSTRAINTS_FAILURE:
        return (
            check(UNDECIDED, "CHAIN_CONSTRAINTS_FAILED", name),
            check(UNDECIDED, "REVOCATION_NOT_CHECKED", name),
        )
    if status in (
        AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE,
        AdESIndeterminate.CRYPTO_CONSTRAINTS_FAILURE_NO_POE,
    ):
        return (
            check(UNDECIDED, "CHAIN_WEAK_ALGORITHM", name),
            check(UNDECIDED, "REVOCATION_NOT_CHECKED", name),
        )
    if status in (
        AdESIndeterminate.TRY_LATER,
        AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE,
    ) or (status is AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE and result.revinfo_problem):
        sub = (
            "TRY_LATER" if status is not AdESIndeterminate.REVOCATION_OUT_OF_BOUNDS_NO_POE else name
        )
        return (
            check(
                PASS,
                "CHAIN_TRUSTED_AT_SIGNING_TIME" if result.historical else "CHAIN_TRUSTED",
                extra=when,
            ),
            check(UNDECIDED, "REVOCATION_UNKNOWN", sub, when),
        )
    return (
        check(UNDECIDED, "TRUST_UNDETERMINED", name),
        check(UNDECIDED, "REVOCATION_NOT_CHECKED", name),
    )
