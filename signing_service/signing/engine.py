"""Apply a PAdES signature (B-B, B-T, B-LT, B-LTA) to a PDF.

The pipeline: open → prepare field and appearance → digest → sign (with the signature
timestamp for B-T and above) → (B-LT) fetch the revocation data and add it to the DSS in the
next incremental update → (B-LTA) document timestamp in that same update, then the document
timestamp's own validation data in one more. The caller has already checked the signer.

Why the revocation data is fetched *after* the signature: ETSI EN 319 102-1 judges it against
the best signature time (the signature timestamp), and EU DSS warns when no revocation data of a
certificate is later than that time. pyHanko's own B-LT flow fetches it in a validation before
signing, so every answer predated the timestamp (by 22-162 ms in our measurements).
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import zlib
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from io import BytesIO
from typing import BinaryIO

from asn1crypto import cms, core, x509
from pyhanko.pdf_utils import misc
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError, PdfReadError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import ExternalSigner, PdfCMSSignedAttributes, Signer
from pyhanko.sign.signers.pdf_signer import (
    PdfSignatureMetadata,
    PdfSigner,
    PdfTBSDocument,
    PdfTimeStamper,
)
from pyhanko.sign.timestamps import TimeStamper, TimestampRequestError
from pyhanko.sign.validation.dss import DocumentSecurityStore, collect_validation_info
from pyhanko.stamp import BaseStampStyle
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import PathError, ValidationError
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service import _pdf_recovery, _pdf_speedups
from signing_service.signing import inputs, pdfa, prefix_digest, repair
from signing_service.signing.appearance import (
    AppearanceSpec,
    KindAppearance,
    SealTarget,
    seal_target,
)
from signing_service.signing.keys import LoadedKey
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.placement import (
    GAP,
    TOP_BAND_MARGIN,
    LastPageRequest,
    PageTexts,
    Placement,
    place,
    place_in_gap,
    prepared_field,
    request_last_page,
    signer_gap,
    upright,
)
from signing_service.signing.qr import QrContent, add_qr
from signing_service.signing.tsa import PooledHTTPTimeStamper, token_size
from signing_service.verification import active, limits

_pdf_speedups.install()
_pdf_recovery.install()
prefix_digest.install()


class PdfInputError(Exception):
    """The input is not a PDF we can sign: ``reason`` is unreadable (its structure could not
    be read: repairable) | malformed | encrypted | certified_no_changes |
    certified_field_required | certified_field_locked (signing/inputs.py) | too_complex (over
    :data:`SIGNING_LIMITS`; ``detail``: the limit's code) | active_content (JavaScript, an open
    action, an embedded file…: verification/active.py; ``detail``: the kinds found)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class TimestampError(Exception):
    pass


# What pyHanko raises when a document parses but its structure is not what the PDF
# specification requires (a number where a dictionary belongs, no page for the widget, a
# missing kid, a structure nested deeper than the parser's recursion): the document's fault,
# answered MALFORMED_PDF, never a 500. SigningError (a ValueError) is pyHanko's own signing
# failure and is re-raised as it is; our key sources raise KeySourceError, the TSA client
# TimestampRequestError / requests errors (OSError), none of which is caught here.
_STRUCTURE_ERRORS = (
    PdfError,
    TypeError,
    AttributeError,
    AssertionError,
    KeyError,
    IndexError,
    ValueError,
    ArithmeticError,  # decimal.InvalidOperation on a malformed number
    RecursionError,
    zlib.error,  # a corrupt Flate stream (an xref or object stream: issue 10's fuzz test)
)


def _input_error(error: BaseException) -> PdfInputError:
    """``unreadable`` when the file's structure could not be read (cross-reference table,
    offsets, header: what viewers repair, and the service too, signing/repair.py), else
    ``malformed`` (it reads, but is not what the PDF specification says)."""
    reason = "unreadable" if isinstance(error, PdfReadError | zlib.error) else "malformed"
    return PdfInputError(reason, type(error).__name__)


@contextlib.contextmanager
def _document_structure() -> Iterator[None]:
    """Map pyHanko's failures on a malformed document to :class:`PdfInputError`."""
    try:
        yield
    except SigningError:
        raise
    except _STRUCTURE_ERRORS as e:
        raise _input_error(e) from None


@dataclass(frozen=True)
class SignOptions:
    level: SignatureLevel
    reason: str | None = None
    location: str | None = None
    contact_info: str | None = None
    md_algorithm: str = "sha256"
    # AppearanceSpec: the text stamp of profiles without a kind; KindAppearance: issue 10's kinds.
    appearance: AppearanceSpec | KindAppearance | None = None
    tsa_url: str | None = None
    # A prepared empty signature field to fill (the request's, else the profile's).
    field_name: str | None = None
    # A QR code at the top left of page 1, in the signing revision (signing/qr.py).
    qr: QrContent | None = None


@dataclass
class SignedFacts:
    """Filled by :func:`async_sign_pdf` when passed: what it embedded in the signing revision.
    ``field_name``: the signature field's name; ``signature_cms``: the DER of the CMS
    ContentInfo in its /Contents (with the signature timestamp token at B-T and above)."""

    field_name: str | None = None
    signature_cms: bytes | None = None


def _subject_attr(cert: x509.Certificate, name: str) -> str | None:
    value = cert.subject.native.get(name)
    if isinstance(value, list):
        value = value[0]
    return str(value) if value else None


# Sizing the signature's /Contents. Reserving it up front skips pyHanko's sizing pass (a second
# full signature); reserving it close to the real size keeps every later hash of the document
# short (verifying 10 signatures was 18 % faster with 8 KB than with 14 KB reserved). The CMS
# SignedData (RFC 5652) that our signers build (pyHanko's, PAdES attributes) is: the
# certificates, the signer's issuer name and serial twice (sid and ESS signing-certificate-v2),
# the message digest, the ESS SHA-256 certificate hash, the signature value, the signature
# timestamp token (B-T and above) and structure. Measured structure: 190 bytes (RSA) and 185
# (ECDSA); CMS_OVERHEAD leaves room for longer length prefixes and algorithm parameters.
CMS_OVERHEAD = 256
# Attribute wrapping of the signature timestamp token: [1] SET, Attribute, OID (25 measured).
TIMESTAMP_ATTR_OVERHEAD = 32
# A TSA's tokens differ by a few bytes (serial, nonce, genTime fraction digits).
TIMESTAMP_MARGIN = 256
# Slack for what the estimate does not model; reserved - actual stays under ~1 KB.
SIGNATURE_MARGIN = 512
# When the TSA cannot be asked for its token size (two-step signing whose TSA is down at
# preparation): the former fixed allowance.
DEFAULT_TIMESTAMP_SIZE = 8192
# A reservation that still proved too small is retried once with this much more room.
RETRY_EXTRA = 8192


def _max_signature_value_size(cert: x509.Certificate) -> int:
    """Largest DER value of the signature by ``cert``'s key (bytes, without the OCTET STRING
    header): RSA, the modulus length; ECDSA, SEQUENCE of two INTEGERs each with a possible
    leading zero (Ecdsa-Sig-Value, RFC 3279 §2.2.3); EdDSA, RFC 8032 sizes."""
    public_key = cert.public_key
    algorithm = public_key.algorithm
    if algorithm in ("rsa", "rsassa_pss"):
        return (public_key.bit_size + 7) // 8 + (256 if algorithm == "rsassa_pss" else 0)
    if algorithm == "ec":
        coordinate = (public_key.bit_size + 7) // 8
        return 2 * (coordinate + 3) + 3
    return {"ed25519": 64, "ed448": 114}.get(algorithm, 1024)


def estimate_signature_size(
    signing_cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    md_algorithm: str,
    timestamp_size: int | None,
) -> int:
    """Upper bound, in DER bytes, of the CMS of one of our PAdES signatures.

    ``chain``: the certificates embedded besides the signer's (the key's chain);
    ``timestamp_size``: DER size of the signature timestamp token (see
    :func:`signing_service.signing.tsa.token_size`), ``None`` for B-B. The bound exceeds the real
    size by about 0.6 KB (B-B) to 0.9 KB (B-T); tests/test_signature_size.py checks both sides.
    """
    certs = len(signing_cert.dump()) + sum(len(c.dump()) for c in chain)
    issuer_serial = len(signing_cert.issuer.dump()) + len(
        signing_cert["tbs_certificate"]["serial_number"].dump()
    )
    size = (
        certs
        + 2 * issuer_serial
        + hashlib.new(md_algorithm).digest_size
        + 32  # the ESS certificate hash (SHA-256)
        + _max_signature_value_size(signing_cert)
        + CMS_OVERHEAD
        + SIGNATURE_MARGIN
    )
    if timestamp_size is not None:
        size += timestamp_size + TIMESTAMP_ATTR_OVERHEAD + TIMESTAMP_MARGIN
    return size


async def _reservation(
    signing_cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    md_algorithm: str,
    timestamper: TimeStamper | None,
) -> int:
    """``bytes_reserved`` for pyHanko: hex digits, two per DER byte."""
    tst = await token_size(timestamper, md_algorithm) if timestamper is not None else None
    return 2 * estimate_signature_size(signing_cert, chain, md_algorithm, tst)


def _reservation_too_small(error: SigningError) -> bool:
    # pyHanko (pdf_byterange.PreparedByteRangeDigest.fill_with_cms, pinned <0.39).
    return "larger than expected" in str(error)


def _open_writer(stream: BinaryIO) -> IncrementalPdfFileWriter:
    try:
        writer = IncrementalPdfFileWriter(stream, strict=False)
    except _STRUCTURE_ERRORS as e:
        raise _input_error(e) from None
    if writer.prev.encrypted:
        # An owner-only password (empty user password) still lets us open the document.
        try:
            result = writer.encrypt("")
        except Exception:  # noqa: BLE001 - any failure here means "locked"
            raise PdfInputError("encrypted") from None
        if result is None or result.status == AuthStatus.FAILED:
            raise PdfInputError("encrypted")
    return writer


def open_for_signing(pdf: bytes) -> IncrementalPdfFileWriter:
    """An incremental writer over ``pdf``; :class:`PdfInputError` when it is malformed or
    encrypted with a user password."""
    return _open_checked(pdf)[0]


def _carries(pdf: bytes, fields: int) -> bool:
    """Whether ``pdf`` holds signatures to judge before signing over them: filled signature
    fields (``fields``, from :func:`_open_checked`), or, with none, a mark of a signature in
    its raw bytes in any spelling (repair ``carries_signatures``): a signature dictionary no
    form field reaches still shows its stamp on the page and is judged (the verifier reports
    it ``UNREACHABLE_SIGNATURE``; red team 19b, R19B-1: a revoked signer's signature was
    countersigned once ``/AcroForm`` was removed). One linear scan of the input (about 1 ms a
    megabyte here) on unsigned documents."""
    return bool(fields) or repair.carries_signatures(pdf)


def _open_checked(pdf: bytes) -> tuple[IncrementalPdfFileWriter, int]:
    """:func:`open_for_signing`, with the number of filled signature fields of ``pdf``
    (document timestamps included), counted as the verifier counts them (limits.py
    ``check_structure``: pyHanko's field enumeration, ``/FT`` inherited)."""
    writer = _open_writer(BytesIO(pdf))
    try:
        writer.root.get("/Pages")
        writer.prev.root["/Pages"]["/Count"]
    except Exception as e:  # noqa: BLE001
        raise _input_error(e) from None
    # A table pyHanko found only by looking around a wrong offset is read differently by
    # viewers (signing/repair.py, xref_damage): repaired like a table it cannot read.
    damage = repair.xref_damage(writer.prev)
    if damage is not None:
        raise PdfInputError("unreadable", damage)
    # What the service's verifier would refuse once signed (issue 10, item 8: a file the
    # service produced is always accepted back): 10,001 form fields were signed, then
    # verified as TOTAL_FAILED (red team 15, F3).
    try:
        summary = limits.check_structure(writer.prev, SIGNING_LIMITS)
    except limits.LimitExceeded as e:
        raise PdfInputError("too_complex", e.code) from None
    except limits.MalformedPdf as e:
        raise PdfInputError("malformed", e.detail) from None
    # What a viewer runs or opens from the document: the seal must not vouch for it (red
    # team 19b, R19B-2; verification/active.py).
    found = active.active_content(pdf)
    if active.UNINSPECTABLE in found:
        # pyHanko reads it, qpdf does not: two readers disagree about the file.
        raise PdfInputError("malformed", "unreadable to qpdf")
    if found == [active.TOO_COMPLEX]:
        raise PdfInputError("too_complex", limits.TOO_MANY_OBJECTS)
    if found:
        raise PdfInputError("active_content", ", ".join(found))
    return writer, summary.signatures


# What the caller runs when the document to sign already carries signatures (filled signature
# fields, document timestamps included), after the document's own checks (certification,
# field locks, placement, QR code) and before the document is signed: it raises to
# refuse (the service verifies the earlier signatures, services/existing.py). Not called for a
# document without signatures, which costs nothing more: the count comes from the parse that
# signing makes anyway.
BeforeCountersigning = Callable[[], Awaitable[None]]


SIGNING_LIMITS = replace(
    limits.DEFAULT_LIMITS,
    max_revisions=limits.DEFAULT_LIMITS.max_revisions - 4,
    max_signatures=limits.DEFAULT_LIMITS.max_signatures - 2,
    max_form_fields=limits.DEFAULT_LIMITS.max_form_fields - 2,
    max_objects=limits.DEFAULT_LIMITS.max_objects - 1_000,
)
"""The verifier's structure limits (verification/limits.py) less what one signature adds at
B-LTA, the most: up to four revisions (the signature, its validation data, the document
timestamp, the timestamp's validation data), two signatures and two fields (the signature's
and the document timestamp's), and at most a few hundred objects (a stamp, a QR code, the
validation data). With one revision and one field of margin, a document at the edge signed at
B-LTA was refused by the service's own verifier (red team 15b, R4)."""


def _check_appearance(spec: AppearanceSpec) -> None:
    """A profile's stamp settings of the wrong type or out of range are the profile's fault,
    not the document's: ``SigningError`` (SIGNING_FAILED), before pyHanko fails on them deep
    inside its layout code (issue 9: ``{"width": "abc"}`` answered 500)."""
    sizes = (spec.width, spec.height, spec.margin, spec.font_size)
    if (
        not isinstance(spec.heading, str)
        or any(isinstance(v, bool) or not isinstance(v, int | float) for v in sizes)
        or not all(math.isfinite(v) for v in sizes)
        or min(spec.width, spec.height, spec.font_size) <= 0
    ):
        raise SigningError("the profile's appearance settings are not valid")


def _next_field_name(writer: IncrementalPdfFileWriter) -> str:
    """A new field name unique among ALL field names (a text field named ``Signature1`` is not
    ours to take)."""
    try:
        return inputs.new_field_name(writer.prev)
    except inputs.TooManyFields as e:
        raise PdfInputError("malformed", str(e)) from None


def _certified_field(writer: IncrementalPdfFileWriter) -> str | None:
    """Under a DocMDP P=2 certification, the document's first empty signature field."""
    try:
        return inputs.field_for_certified(writer.prev)
    except inputs.TooManyFields as e:
        raise PdfInputError("malformed", str(e)) from None


def _check_certification(
    writer: IncrementalPdfFileWriter, field_name: str, *, visible: bool
) -> None:
    try:
        inputs.check_certification(writer.prev, field_name, visible=visible)
    except inputs.CertifiedDocument as e:
        raise PdfInputError(f"certified_{e.reason}", e.detail) from None


def signing_moment(moment: datetime | None = None) -> datetime:
    """The claimed signing time of a signature made at ``moment`` (default: now), in UTC
    whole seconds: a PDF date (/M, ISO 32000-1 §7.9.4) and the stamp's ISO 8601 text both
    have whole seconds, so a time with a fraction would print one second on the stamp and
    record another in /M whenever the two roundings fell on either side of a second."""
    return (moment or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)


class _FixedTimePdfSigner(PdfSigner):
    """A :class:`PdfSigner` whose signature dictionary's /M (the claimed signing time of a
    PAdES signature, ETSI EN 319 142-1 §5.3: the CMS carries no signing-time attribute) is
    the time the caller chose, the one printed on the stamp. pyHanko takes its own
    ``datetime.now()`` for /M when the signing session starts, after the stamp was drawn,
    and offers no parameter for it (pinned 0.38: ``PdfSigningSession.system_time``)."""

    def __init__(
        self,
        *args: object,
        signing_time: datetime,
        covered_prefix: prefix_digest.CoveredPrefix | None = None,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._signing_time = signing_time
        # The document's first bytes, already hashed by the seal's check (appearance.py
        # seal_target): the signature's digest continues from there (prefix_digest.py).
        self.covered_prefix = covered_prefix

    def init_signing_session(self, pdf_out, existing_fields_only=False):  # type: ignore[no-untyped-def]
        session = super().init_signing_session(pdf_out, existing_fields_only)
        session.system_time = self._signing_time
        return session

    async def async_sign_pdf_recording(
        self, pdf_out: IncrementalPdfFileWriter, *, bytes_reserved: int, output: BytesIO
    ) -> bytes:
        """pyHanko's ``PdfSigner.async_sign_pdf`` (pinned 0.38) with its documented steps
        called one by one, so that the CMS written into /Contents is kept: returns its DER
        (the /Contents value without the reservation's zero padding). The evidence of the
        signature needs it and the field name; reading them back from the signed PDF costs
        a full parse of it (~1.2 ms for 1 MB)."""
        session = self.init_signing_session(pdf_out)
        validation_info = await session.perform_presign_validation(pdf_out)
        tbs_document = session.prepare_tbs_document(
            validation_info=validation_info, bytes_reserved=bytes_reserved
        )
        prepared, res_output = tbs_document.digest_tbs_document(output=output)
        post = await tbs_document.perform_signature(
            document_digest=prepared.document_digest,
            pdf_cms_signed_attrs=PdfCMSSignedAttributes(
                signing_time=session.system_time,
                adobe_revinfo_attr=(
                    None if validation_info is None else validation_info.adobe_revinfo_attr
                ),
                cades_signed_attrs=self.signature_meta.cades_signed_attr_spec,
            ),
        )
        await post.post_signature_processing(res_output)
        misc.finalise_output(output, res_output)
        # The DER followed by zero bytes (pdf_byterange.fill_reserved_region): cut at the
        # outer TLV's own length.
        return cms.ContentInfo.load(post.sig_contents, strict=False).dump()


def _in_signer_block(
    reader: PdfFileReader,
    spec: KindAppearance,
    signer_name: str,
    now: datetime,
    field_to_fill: str | None,
    texts: PageTexts,
) -> tuple[Placement | None, BaseStampStyle | None]:
    """The person's image in the space between the title and the name the last page already
    prints (signing/placement.py :func:`signer_gap`), or ``(None, None)``. ``texts``: the
    page texts, measured once for this and the placement by rule."""
    if spec.kind != "person" or prepared_field(reader, field_to_fill) is not None:
        return None, None
    gap = signer_gap(reader, signer_name, texts)
    if gap is None:
        return None, None
    # Whole points: the plan rounds its size up, and must still fit.
    plan = spec.plan_in_gap(now, math.floor(gap.box[3] - gap.box[1] - GAP))
    placement = place_in_gap(gap, plan.width, plan.height) if plan is not None else None
    if plan is None or placement is None:
        return None, None
    return placement, plan.style


def _pdf_signer(
    writer: IncrementalPdfFileWriter,
    signer: Signer,
    signing_cert: x509.Certificate,
    options: SignOptions,
    *,
    timestamper: TimeStamper | None,
    now: datetime,
    requested: LastPageRequest | None = None,
) -> _FixedTimePdfSigner:
    level = options.level
    now = signing_moment(now)
    with _document_structure():
        field_name = _next_field_name(writer)
        if options.qr is not None:
            # Before the signature field: page content of the same revision, covered by
            # the signature (QrOnSignedDocument when one already exists).
            add_qr(writer, options.qr)
        # Under a DocMDP P=2 certification, the document's empty field (the only change it
        # allows) when the request or profile names none.
        certified_field = _certified_field(writer)
    signer_name = _subject_attr(signing_cert, "common_name") or "?"
    organisation = _subject_attr(signing_cert, "organization_name")
    stamp_style = None
    new_field_spec = None
    spec = options.appearance
    field_to_fill = (
        options.field_name or (spec.field_name if spec is not None else None) or certified_field
    )
    # Placement (signing/placement.py): a prepared empty field, else a free box by rule.
    # PlacementError carries its own 422 code to the caller.
    placement: Placement | None
    style: BaseStampStyle | None = None
    target: SealTarget | None = None
    with _document_structure():
        plan = (
            spec.plan(
                signer_name, organisation, now, cert_title=_subject_attr(signing_cert, "title")
            )
            if isinstance(spec, KindAppearance)
            else None
        )
        if isinstance(spec, KindAppearance) and plan is not None:
            if plan.style.image is not None and pdfa.claims_pdfa1(writer.prev):
                # The image kinds (person, seal) need a soft mask, which PDF/A-1 forbids
                # (ISO 19005-1 §6.4, veraPDF 6.4-2): refused rather than break conformance.
                raise PdfInputError("pdfa1_no_transparency")
            # A person on a page that already prints the signer block (title, space, name):
            # the image only, in that space (Nghị định 30/2020, Appendix I), unless a prepared
            # field is to be filled.
            # The last page's text is read once, for the signer block and the free space.
            texts = PageTexts(writer.prev, requested)
            placement, style = _in_signer_block(
                writer.prev, spec, signer_name, now, field_to_fill, texts
            )
            if placement is None:
                # An appearance kind (issue 10): the size and region its plan asks for; a
                # seal over the last visible signature of the same agency (appearance.py).
                if plan.over_signature:
                    target = seal_target(writer.prev, organisation)
                placement = place(
                    writer.prev,
                    width=plan.width,
                    height=plan.height,
                    region=plan.region,
                    field_name=field_to_fill,
                    over_signature=target.name if target is not None else None,
                    when_full=spec.when_full,
                    margin=spec.margin,
                    # Copies, annexes, digitised: first in the top margin above the motto.
                    top_margin=TOP_BAND_MARGIN if plan.region == "top-right" else None,
                    texts=texts,
                )
                style = plan.style
        elif isinstance(spec, AppearanceSpec):
            _check_appearance(spec)
            placement = place(
                writer.prev,
                width=spec.width,
                height=spec.height,
                region="top-right",
                field_name=field_to_fill,
                when_full=spec.when_full,
                margin=spec.margin,
            )
        else:
            # Invisible (no appearance, or kind "none").
            placement = prepared_field(writer.prev, field_to_fill)
    if placement is not None:
        if style is None:
            # An invisible profile filling a prepared visible field: our stamp (Vietnamese
            # glyphs) rather than pyHanko's default one in a font without them.
            text = spec if isinstance(spec, AppearanceSpec) else AppearanceSpec()
            style = text.stamp(signer_name, organisation, now)
        stamp_style = upright(style, placement.rotate)
        if placement.existing_field is not None:
            field_name = placement.existing_field
        else:
            new_field_spec = fields.SigFieldSpec(
                sig_field_name=field_name,
                on_page=placement.page_index,
                # pyHanko annotates ints but writes any number (FloatObject): the box is to
                # 1/100 pt so that it stays clear of the text it was measured against.
                box=placement.box,  # type: ignore[arg-type]
            )
    with _document_structure():
        if placement is None:
            # pyHanko's invisible field has no appearance: PDF/A-1 §6.9 (pdfa.py).
            pdfa.invisible_field_for_pdfa1(writer, field_name)
        # DocMDP P=1 / P=2 (signing/inputs.py): after placement chose the field.
        _check_certification(writer, field_name, visible=placement is not None)
    # The signature itself is B-B or B-T: the validation data of B-LT/B-LTA is fetched and
    # added after it (module docstring), so pyHanko's pre-signing validation is not used.
    meta = PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm=options.md_algorithm,
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=options.reason,
        location=options.location,
        contact_info=options.contact_info,
        name=signer_name,
        signer_key_usage={"non_repudiation", "digital_signature"},
    )
    return _FixedTimePdfSigner(
        meta,
        signer=signer,
        timestamper=timestamper if level.needs_timestamp else None,
        stamp_style=stamp_style,
        new_field_spec=new_field_spec,
        signing_time=now,
        covered_prefix=target.prefix if target is not None else None,
    )


def _timestamper(options: SignOptions, timestamper: TimeStamper | None) -> TimeStamper | None:
    if options.level.needs_timestamp and timestamper is None:
        if not options.tsa_url:
            raise TimestampError("no TSA configured for a timestamped level")
        return PooledHTTPTimeStamper(options.tsa_url)
    return timestamper


# A validation context, or a factory of fresh ones. With a factory, each context is built when
# it is needed, after the timestamp it must follow: its validation time and every answer it
# fetches are then later than that timestamp.
ContextSource = ValidationContext | Callable[[], ValidationContext]


async def async_sign_pdf(
    pdf: bytes,
    key: LoadedKey,
    options: SignOptions,
    *,
    validation_context: ContextSource | None = None,
    timestamper: TimeStamper | None = None,
    now: datetime | None = None,
    facts: SignedFacts | None = None,
    input_prefix: prefix_digest.CoveredPrefix | None = None,
    countersigning: BeforeCountersigning | None = None,
) -> bytes:
    """Sign ``pdf`` at ``options.level`` (PAdES baseline, ETSI EN 319 142-1) and return it.

    ``validation_context`` (B-LT, B-LTA; ``ValueError`` without it): where the revocation data
    comes from. Pass a factory (the service does); a context built before signing has a
    validation time before the signature timestamp, and for B-LTA it is reused for the document
    timestamp's data. ``timestamper``: the TSA client, else one for ``options.tsa_url``.
    Errors: :class:`PdfInputError`, :class:`TimestampError`, pyHanko's
    ``TimestampRequestError`` (TSA unreachable) and ``SigningError`` (signing failed, or the
    signer's chain could not be validated for the LT data). ``facts``: filled with the
    signature's field name and CMS (:class:`SignedFacts`). ``input_prefix``: the caller's
    hash of ``pdf`` (:func:`prefix_digest.covering`); the signature's digest continues from it
    when the written revision starts with exactly those bytes (prefix_digest.py).
    ``countersigning``: awaited before signing when ``pdf`` already carries signatures
    (:data:`BeforeCountersigning`); what it raises goes to the caller as it is.
    """
    level = options.level
    timestamper = _timestamper(options, timestamper)
    if level.needs_revocation_info and validation_context is None:
        raise ValueError("B-LT and B-LTA need a validation context")
    out = await _sign(
        pdf,
        key,
        options,
        timestamper if level.needs_timestamp else None,
        now,
        facts,
        input_prefix,
        countersigning,
    )
    if level.needs_revocation_info:
        assert validation_context is not None and timestamper is not None
        # The next revision: the DSS with data fetched now, after the signature timestamp;
        # for B-LTA the document timestamp in the same revision (pyHanko's layout).
        await _append_validation_data(
            out,
            validation_context,
            then_timestamp=timestamper if level is SignatureLevel.B_LTA else None,
            md_algorithm=options.md_algorithm,
        )
        if level is SignatureLevel.B_LTA:
            # The document timestamp's own validation data, fetched after it: without it a
            # validator that works offline cannot cover that timestamp (EU DSS "uncovered POE").
            await _append_validation_data(
                out, validation_context, then_timestamp=None, md_algorithm=options.md_algorithm
            )
    return out.getvalue()


async def _sign(
    pdf: bytes,
    key: LoadedKey,
    options: SignOptions,
    timestamper: TimeStamper | None,
    now: datetime | None,
    facts: SignedFacts | None = None,
    input_prefix: prefix_digest.CoveredPrefix | None = None,
    countersigning: BeforeCountersigning | None = None,
) -> BytesIO:
    """The signature revision (B-B, or B-T with ``timestamper``), in a reservation sized by
    :func:`estimate_signature_size`; retried once, larger, if the CMS did not fit."""
    spec = options.appearance
    # A person stamp reads the last page's text (signer block, free space): asked for now,
    # the layout worker measures it while this thread parses the document (placement.py).
    requested = (
        request_last_page(pdf)
        if isinstance(spec, KindAppearance)
        and spec.kind == "person"
        and not (options.field_name or spec.field_name)
        else None
    )
    reserved = await _reservation(key.signing_cert, key.chain, options.md_algorithm, timestamper)
    for attempt in (1, 2):
        writer, carried = _open_checked(pdf)
        signer = _pdf_signer(
            writer,
            key.signer,
            key.signing_cert,
            options,
            timestamper=timestamper,
            now=now or datetime.now(UTC),
            requested=requested if attempt == 1 else None,
        )
        if countersigning is not None and attempt == 1 and _carries(pdf, carried):
            await countersigning()
        out = BytesIO()
        try:
            # The whole input (the caller's hash) is the longer prefix; the seal's covered
            # prefix is a part of the same bytes.
            covered = input_prefix if input_prefix is not None else signer.covered_prefix
            with _document_structure(), prefix_digest.continuing(covered):
                embedded = await signer.async_sign_pdf_recording(
                    writer, bytes_reserved=reserved, output=out
                )
        except SigningError as e:
            if attempt == 2 or not _reservation_too_small(e):
                raise
            # A token larger than learnt (a TSA with several certificates, a renewed one):
            # the pooled client has recorded it by now, and the extra room covers the rest.
            reserved = RETRY_EXTRA * 2 + await _reservation(
                key.signing_cert, key.chain, options.md_algorithm, timestamper
            )
            continue
        if facts is not None:
            facts.field_name = signer.signature_meta.field_name
            facts.signature_cms = embedded
        return out
    raise AssertionError("unreachable")


async def _append_validation_data(
    out: BytesIO,
    source: ContextSource,
    *,
    then_timestamp: TimeStamper | None,
    md_algorithm: str,
) -> None:
    """Append to ``out`` one incremental update with a DSS holding the certificates and
    revocation data of the last signature (or document timestamp) in it, and of its
    timestamps, with a VRI entry (ISO 32000-2 §12.8.4.3); then, with ``then_timestamp``, a
    document timestamp in the same update (PAdES B-LTA)."""
    writer = _open_writer(out)
    embedded = writer.prev.embedded_signatures[-1]
    context = source() if callable(source) else source
    try:
        paths = await collect_validation_info(embedded, context)
    except (PathError, ValidationError) as e:
        raise SigningError(f"validation data unavailable: {type(e).__name__}: {e}") from e
    DocumentSecurityStore.supply_dss_in_writer(
        writer, embedded.pkcs7_content, paths=paths, validation_context=context
    )
    if then_timestamp is None:
        writer.write_in_place()
        return
    size = await token_size(then_timestamp, md_algorithm)
    await PdfTimeStamper(
        then_timestamp, field_name=pdfa.invisible_field_for_pdfa1(writer)
    ).async_timestamp_pdf(
        writer,
        md_algorithm,
        bytes_reserved=2 * (size + TIMESTAMP_MARGIN + SIGNATURE_MARGIN),
        in_place=True,
    )


# Two-step ("interrupted") signing for keys the service never holds: an officer's USB token in
# the browser. Step 1 prepares the document and the signed attributes; the client signs their
# digest; step 2 checks that signature and embeds it. Levels B-B and B-T.
EXTERNAL_LEVELS = (SignatureLevel.B_B, SignatureLevel.B_T)
# Room for a client-built CMS that carries more than ours (its own chain, attributes).
EXTERNAL_MARGIN = 2 * 4096


@dataclass(frozen=True)
class PreparedExternal:
    prepared_pdf: bytes
    document_digest: bytes
    reserved_start: int
    reserved_end: int
    signed_attrs: bytes  # DER of the SET that the client signs (RFC 5652 §5.4)
    md_algorithm: str


async def async_prepare_external(
    pdf: bytes,
    signing_cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    options: SignOptions,
    *,
    timestamper: TimeStamper | None = None,
    now: datetime | None = None,
    countersigning: BeforeCountersigning | None = None,
) -> PreparedExternal:
    """Step 1 of two-step signing: the prepared PDF and the signed attributes to sign.

    The reservation is our estimate (B-T: with the token size of ``timestamper``, else of
    ``options.tsa_url``'s TSA, else :data:`DEFAULT_TIMESTAMP_SIZE`) plus
    :data:`EXTERNAL_MARGIN` for a CMS that the client builds itself.

    ``now`` (default: the present) is the claimed signing time, fixed here at step 1: the stamp
    prints it and the signature dictionary's /M records it (see :func:`signing_moment`);
    step 2 changes neither (the B-T signature timestamp, taken at step 2, is later).
    ``countersigning``: as for :func:`async_sign_pdf`, before the TSA is asked or the
    document digested.
    """
    if options.level not in EXTERNAL_LEVELS:
        raise ValueError("two-step signing supports B-B and B-T")
    writer, carried = _open_checked(pdf)
    signer = ExternalSigner(
        signing_cert=signing_cert,
        cert_registry=SimpleCertificateStore.from_certs(list(chain)),
        signature_value=bytes(512),
    )
    pdf_signer = _pdf_signer(
        writer,
        signer,
        signing_cert,
        replace(options, level=SignatureLevel.B_B),
        timestamper=None,
        now=now or datetime.now(UTC),
    )
    if countersigning is not None and _carries(pdf, carried):
        await countersigning()
    tst: int | None = None
    if options.level.needs_timestamp:
        tst = DEFAULT_TIMESTAMP_SIZE
        source = timestamper or (
            PooledHTTPTimeStamper(options.tsa_url) if options.tsa_url else None
        )
        if source is not None:
            # If the TSA is down now, it is asked again at step 2, which fails if still down.
            with contextlib.suppress(TimestampRequestError):
                tst = await token_size(source, options.md_algorithm)
    reserved = 2 * estimate_signature_size(signing_cert, chain, options.md_algorithm, tst)
    with _document_structure():
        prepared, _tbs, output = await pdf_signer.async_digest_doc_for_signing(
            writer, bytes_reserved=reserved + EXTERNAL_MARGIN, output=BytesIO()
        )
    attrs = await signer.signed_attrs(
        prepared.document_digest, options.md_algorithm, use_pades=True
    )
    output.seek(0)
    return PreparedExternal(
        prepared_pdf=output.read(),
        document_digest=prepared.document_digest,
        reserved_start=prepared.reserved_region_start,
        reserved_end=prepared.reserved_region_end,
        signed_attrs=attrs.dump(),
        md_algorithm=options.md_algorithm,
    )


def signature_timestamp_tokens(signature_cms: cms.ContentInfo) -> list[cms.ContentInfo]:
    """The signature timestamp tokens (unsigned ``signature_time_stamp_token`` attributes,
    RFC 3161 Appendix A) of the first signer of a client-built CMS. ``ValueError`` when the
    structure cannot be read."""
    try:
        signer_info = signature_cms["content"]["signer_infos"][0]
        unsigned = signer_info["unsigned_attrs"]
        if isinstance(unsigned, core.Void):
            return []
        return [
            value
            for attr in unsigned
            if attr["type"].native == "signature_time_stamp_token"
            for value in attr["values"]
        ]
    except (KeyError, IndexError, TypeError, AttributeError) as e:
        raise ValueError(f"unreadable CMS: {type(e).__name__}") from e


def _with_fields(value: core.Sequence, **changes: core.Asn1Value) -> core.Sequence:
    """A new ``value`` of the same type with ``changes``; the other fields keep their exact
    encoding (asn1crypto reuses the bytes of fields it has not modified)."""
    fields = {}
    for name, *_ in type(value)._fields:
        field_value = changes.get(name, value[name])
        if not isinstance(field_value, core.Void):
            fields[name] = field_value
    return type(value)(fields)


async def async_add_signature_timestamp(
    signature_cms: cms.ContentInfo, timestamper: TimeStamper, md_algorithm: str
) -> cms.ContentInfo:
    """A copy of ``signature_cms`` whose signer carries a signature timestamp from
    ``timestamper`` over its signature value (PAdES B-T for a CMS the client built without
    one). Only unsigned attributes change: the signature covers the same bytes as before."""
    signed_data = signature_cms["content"]
    signer_info = signed_data["signer_infos"][0]
    digest = hashlib.new(md_algorithm, signer_info["signature"].native).digest()
    token = await timestamper.async_timestamp(digest, md_algorithm)
    unsigned = signer_info["unsigned_attrs"]
    attrs = [] if isinstance(unsigned, core.Void) else list(unsigned)
    attrs.append(cms.CMSAttribute({"type": "signature_time_stamp_token", "values": [token]}))
    new_signer = _with_fields(signer_info, unsigned_attrs=cms.CMSAttributes(attrs))
    new_signed = _with_fields(signed_data, signer_infos=cms.SignerInfos([new_signer]))
    return cms.ContentInfo({"content_type": "signed_data", "content": new_signed})


async def async_finish_external(
    prepared: PreparedExternal,
    signing_cert: x509.Certificate,
    chain: Sequence[x509.Certificate],
    signature_cms: cms.ContentInfo | None = None,
    raw_signature: bytes | None = None,
    timestamper: TimeStamper | None = None,
) -> bytes:
    """Embed the client's signature (already checked by the caller) and return the PDF."""
    if signature_cms is None:
        assert raw_signature is not None
        signer = ExternalSigner(
            signing_cert=signing_cert,
            cert_registry=SimpleCertificateStore.from_certs(list(chain)),
            signature_value=raw_signature,
        )
        signature_cms = await signer.async_sign_prescribed_attributes(
            prepared.md_algorithm,
            signed_attrs=cms.CMSAttributes.load(prepared.signed_attrs),
            timestamper=timestamper,
        )
    output = BytesIO(prepared.prepared_pdf)
    digest = PreparedByteRangeDigest(
        document_digest=prepared.document_digest,
        reserved_region_start=prepared.reserved_start,
        reserved_region_end=prepared.reserved_end,
    )
    await PdfTBSDocument.async_finish_signing(output, digest, signature_cms)
    return output.getvalue()
