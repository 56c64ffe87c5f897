"""Apply a PAdES signature (B-B, B-T, B-LT, B-LTA) to a PDF.

The pipeline follows pyHanko's: open → prepare field and appearance → digest → sign → (LT)
embed validation data → (LTA) document timestamp. The caller has already checked the signer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from io import BytesIO

from asn1crypto import x509
from pyhanko.pdf_utils.crypt import AuthStatus
from pyhanko.pdf_utils.generic import NameObject
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError, PdfReadError
from pyhanko.sign import fields
from pyhanko.sign.signers.pdf_signer import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator import ValidationContext

from signing_service.signing.appearance import AppearanceSpec
from signing_service.signing.keys import LoadedKey
from signing_service.signing.levels import SignatureLevel
from signing_service.signing.tsa import PooledHTTPTimeStamper


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


def _estimate_reserved(key: LoadedKey, with_timestamp: bool) -> int:
    # Reserving the signature's size up front skips pyHanko's sizing pass (a second full
    # signature). CMS = signer cert + chain + signed attributes + signature value (+ TST).
    certs = len(key.signing_cert.dump()) + sum(len(c.dump()) for c in key.chain)
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
    if level.needs_timestamp and timestamper is None:
        if not options.tsa_url:
            raise TimestampError("no TSA configured for a timestamped level")
        timestamper = PooledHTTPTimeStamper(options.tsa_url)
    if level.needs_revocation_info and validation_context is None:
        raise ValueError("B-LT and B-LTA need a validation context")

    writer = open_for_signing(pdf)
    field_name = _next_field_name(writer)
    now = now or datetime.now(UTC)

    signer_name = _subject_attr(key.signing_cert, "common_name") or "?"
    organisation = _subject_attr(key.signing_cert, "organization_name")
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
    signer = PdfSigner(
        meta,
        signer=key.signer,
        timestamper=timestamper if level.needs_timestamp else None,
        stamp_style=stamp_style,
        new_field_spec=new_field_spec,
    )
    out = BytesIO()
    try:
        await signer.async_sign_pdf(
            writer,
            bytes_reserved=_estimate_reserved(key, level.needs_timestamp),
            output=out,
        )
    except PdfReadError as e:
        raise PdfInputError("malformed", str(e)) from None
    return out.getvalue()
