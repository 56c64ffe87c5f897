"""Apply a PAdES signature (B-B, B-T, B-LT, B-LTA) to a PDF.

The pipeline follows pyHanko's: open → prepare field and appearance → digest → sign → (LT)
embed validation data → (LTA) document timestamp. The caller has already checked the signer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from io import BytesIO

from asn1crypto import cms, x509
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.generic import NameObject
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError, PdfReadError
from pyhanko.sign import fields
from pyhanko.sign.signers.pdf_byterange import PreparedByteRangeDigest
from pyhanko.sign.signers.pdf_cms import ExternalSigner, Signer
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner, PdfTBSDocument
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service import _pdf_speedups
from signing_service.signing.appearance import AppearanceSpec
from signing_service.signing.keys import LoadedKey
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.tsa import PooledHTTPTimeStamper

_pdf_speedups.install()


class PdfInputError(Exception):
    """The input is not a PDF we can sign: ``reason`` is malformed | encrypted."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class TimestampError(Exception):
    pass


@dataclass(frozen=True)
class SignOptions:
    level: SignatureLevel
    reason: str | None = None
    location: str | None = None
    contact_info: str | None = None
    md_algorithm: str = "sha256"
    appearance: AppearanceSpec | None = None
    tsa_url: str | None = None


def _subject_attr(cert: x509.Certificate, name: str) -> str | None:
    value = cert.subject.native.get(name)
    if isinstance(value, list):
        value = value[0]
    return str(value) if value else None


def _estimate_reserved(
    signing_cert: x509.Certificate, chain: Sequence[x509.Certificate], with_timestamp: bool
) -> int:
    # Reserving the signature's size up front skips pyHanko's sizing pass (a second full
    # signature). CMS = signer cert + chain + signed attributes + signature value (+ TST).
    certs = len(signing_cert.dump()) + sum(len(c.dump()) for c in chain)
    size = certs + 2048 + (8192 if with_timestamp else 0)
    # pyHanko counts the reservation in hex digits: two per DER byte.
    return 2 * ((size + 1023) // 1024 * 1024)


def open_for_signing(pdf: bytes) -> IncrementalPdfFileWriter:
    try:
        writer = IncrementalPdfFileWriter(BytesIO(pdf), strict=False)
    except (PdfReadError, PdfError, ValueError, KeyError, IndexError, TypeError) as e:
        raise PdfInputError("malformed", type(e).__name__) from None
    if writer.prev.encrypted:
        # An owner-only password (empty user password) still lets us open the document.
        try:
            result = writer.encrypt("")
        except Exception:  # noqa: BLE001 - any failure here means "locked"
            raise PdfInputError("encrypted") from None
        if result is None or result.status == AuthStatus.FAILED:
            raise PdfInputError("encrypted")
    try:
        writer.root.get("/Pages")
        writer.prev.root["/Pages"]["/Count"]
    except Exception as e:  # noqa: BLE001
        raise PdfInputError("malformed", type(e).__name__) from None
    return writer


def _next_field_name(writer: IncrementalPdfFileWriter) -> str:
    existing = {name for name, _, _ in fields.enumerate_sig_fields(writer.prev)}
    n = len(existing) + 1
    while f"Signature{n}" in existing:
        n += 1
    return f"Signature{n}"


def _pdf_signer(
    writer: IncrementalPdfFileWriter,
    signer: Signer,
    signing_cert: x509.Certificate,
    options: SignOptions,
    *,
    validation_context: ValidationContext | None,
    timestamper: TimeStamper | None,
    now: datetime,
) -> PdfSigner:
    level = options.level
    field_name = _next_field_name(writer)
    signer_name = _subject_attr(signing_cert, "common_name") or "?"
    organisation = _subject_attr(signing_cert, "organization_name")
    stamp_style = None
    new_field_spec = None
    if options.appearance is not None:
        try:
            page = writer.prev.find_page_for_modification(0)[0]
            media_box = [float(v) for v in page.get_object()[NameObject("/MediaBox")]]
        except Exception:  # noqa: BLE001 - inherited or odd MediaBox: fall back to A4
            media_box = [0.0, 0.0, 595.0, 842.0]
        stamp_style = options.appearance.stamp(signer_name, organisation, now)
        new_field_spec = options.appearance.field_spec(
            field_name, media_box[2] - media_box[0], media_box[3] - media_box[1]
        )
    meta = PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm=options.md_algorithm,
        subfilter=fields.SigSeedSubFilter.PADES,
        reason=options.reason,
        location=options.location,
        contact_info=options.contact_info,
        name=signer_name,
        embed_validation_info=level.needs_revocation_info,
        use_pades_lta=level is SignatureLevel.B_LTA,
        validation_context=validation_context if level.needs_revocation_info else None,
        signer_key_usage={"non_repudiation", "digital_signature"},
    )
    return PdfSigner(
        meta,
        signer=signer,
        timestamper=timestamper if level.needs_timestamp else None,
        stamp_style=stamp_style,
        new_field_spec=new_field_spec,
    )


def _timestamper(options: SignOptions, timestamper: TimeStamper | None) -> TimeStamper | None:
    if options.level.needs_timestamp and timestamper is None:
        if not options.tsa_url:
            raise TimestampError("no TSA configured for a timestamped level")
        return PooledHTTPTimeStamper(options.tsa_url)
    return timestamper


async def async_sign_pdf(
    pdf: bytes,
    key: LoadedKey,
    options: SignOptions,
    *,
    validation_context: ValidationContext | None = None,
    timestamper: TimeStamper | None = None,
    now: datetime | None = None,
) -> bytes:
    level = options.level
    timestamper = _timestamper(options, timestamper)
    if level.needs_revocation_info and validation_context is None:
        raise ValueError("B-LT and B-LTA need a validation context")
    writer = open_for_signing(pdf)
    signer = _pdf_signer(
        writer,
        key.signer,
        key.signing_cert,
        options,
        validation_context=validation_context,
        timestamper=timestamper,
        now=now or datetime.now(UTC),
    )
    out = BytesIO()
    try:
        await signer.async_sign_pdf(
            writer,
            bytes_reserved=_estimate_reserved(key.signing_cert, key.chain, level.needs_timestamp),
            output=out,
        )
    except PdfReadError as e:
        raise PdfInputError("malformed", str(e)) from None
    return out.getvalue()


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
    now: datetime | None = None,
) -> PreparedExternal:
    if options.level not in EXTERNAL_LEVELS:
        raise ValueError("two-step signing supports B-B and B-T")
    writer = open_for_signing(pdf)
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
        validation_context=None,
        timestamper=None,
        now=now or datetime.now(UTC),
    )
    reserved = _estimate_reserved(signing_cert, chain, options.level.needs_timestamp)
    try:
        prepared, _tbs, output = await pdf_signer.async_digest_doc_for_signing(
            writer, bytes_reserved=reserved + EXTERNAL_MARGIN, output=BytesIO()
        )
    except PdfReadError as e:
        raise PdfInputError("malformed", str(e)) from None
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
