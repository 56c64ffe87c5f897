"""The images visible signatures show, per agency (issue 10; Nghị định 30/2020, Appendix I):
the agency's seal (``role`` ``seal``) and its officers' handwritten signatures (``signature``).

An agency administrator uploads them (``/v1/admin/appearance-images``); each is screened before
anything is stored (PNG by content, bounded bytes and pixels, transparent background:
signing/stamp_images.py), stored in object storage under a content address
(``appearance/{agency}/{sha256}.png``), recorded in ``appearance_images`` and audited. Profiles
name images; a profile that names an image the agency does not have (or of the wrong role) is
refused when it is saved (``UNKNOWN_IMAGE``), and an image a profile uses is not deleted
(``IMAGE_IN_USE``). Before a signature the images are decoded once per content hash and kept
(:func:`signing_service.signing.stamp_images.stamp_image`).
"""

from __future__ import annotations

import logging
import math
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from signing_service import audit, errors
from signing_service.services.container import Services
from signing_service.signing.stamp_images import (
    ImageRejected,
    StampImage,
    cached_image,
    reencode_png,
    screen_png,
    stamp_image,
)
from signing_service.store.models import Agency, AppearanceImage, SigningProfile
from signing_service.timefmt import api_time
from storage import ObjectLocked, ObjectNotFound, StorageUnavailableError

if TYPE_CHECKING:
    from signing_service.signing.appearance import AppearanceSpec, KindAppearance

log = logging.getLogger(__name__)

IMAGE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
# Matched whole (fullmatch): with re.match, ``$`` also matches before a final newline, and a
# name "abcd\n" was stored and could then be neither used nor deleted (red team 10, F9).
_NAME = re.compile(IMAGE_NAME_PATTERN)
ROLES = ("seal", "signature")
# Printed width in millimetres: a seal is 20-50 mm across (Nghị định 99/2016 sizes), a
# signature a few centimetres; the bounds keep the stamp on an A4 page.
MIN_WIDTH_MM, MAX_WIDTH_MM = 5.0, 120.0
MAX_HEIGHT_MM = 120.0
# The profile fields that name an image, and the role each must have.
IMAGE_FIELDS = {"signature_image": "signature", "seal_image": "seal"}

_REJECTED: dict[str, type[errors.ServiceError]] = {
    "not_png": errors.ImageNotPng,
    "too_large": errors.ImageTooLarge,
    "no_transparency": errors.ImageNotTransparent,
    "empty": errors.ImageEmpty,
}


@dataclass(frozen=True)
class ImageView:
    name: str
    role: str
    officer: str | None
    sha256: str
    size: int
    width_px: int
    height_px: int
    width_mm: float
    height_mm: float
    created_at: str

    @classmethod
    def of(cls, row: AppearanceImage) -> ImageView:
        return cls(
            name=row.name,
            role=row.role,
            officer=row.officer,
            sha256=row.sha256,
            size=row.size,
            width_px=row.width_px,
            height_px=row.height_px,
            width_mm=row.width_mm,
            height_mm=row.height_mm,
            created_at=api_time(row.created_at),
        )


def _storage_key(agency: Agency, sha256: str) -> str:
    return f"appearance/{agency.code}/{sha256}.png"


def _check_fields(name: str, role: str, width_mm: float, officer: str | None) -> str | None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise errors.InvalidImage(
            "Tên ảnh chỉ gồm chữ thường không dấu, số và dấu gạch ngang (2–63 ký tự)."
        )
    if role not in ROLES:
        raise errors.InvalidImage("Loại ảnh (role) phải là seal (con dấu) hoặc signature (chữ ký).")
    if (
        isinstance(width_mm, bool)
        or not isinstance(width_mm, int | float)
        or not math.isfinite(width_mm)
        or not MIN_WIDTH_MM <= width_mm <= MAX_WIDTH_MM
    ):
        raise errors.InvalidImage(
            f"Chiều rộng in (width_mm) phải từ {MIN_WIDTH_MM:g} đến {MAX_WIDTH_MM:g} mm."
        )
    if officer is None or officer == "":
        return None
    from pydantic import TypeAdapter, ValidationError

    from signing_service.services.profile_rules import Text

    try:
        return TypeAdapter(Text).validate_python(unicodedata.normalize("NFC", officer))
    except ValidationError:
        raise errors.InvalidImage("Tên người ký (officer) không hợp lệ.") from None


def upload_image(
    services: Services,
    agency: Agency,
    *,
    name: str,
    role: str,
    width_mm: float,
    data: bytes,
    officer: str | None = None,
    actor: str,
) -> ImageView:
    """Screen ``data`` and store it as image ``name`` of ``agency``.

    ``role``: ``seal`` | ``signature``; ``width_mm``: the printed width (the height follows the
    aspect ratio); ``officer``: whose signature (free text, optional). What is stored (and
    its ``sha256`` / ``size``) is the PNG re-encoded (:func:`reencode_png`), not the upload.
    Codes (nothing stored): 422 ``INVALID_IMAGE`` (name, role, width), ``IMAGE_NOT_PNG``,
    ``IMAGE_TOO_LARGE``, ``IMAGE_NOT_TRANSPARENT``, ``IMAGE_EMPTY``; 409 ``IMAGE_EXISTS``;
    503 ``STORAGE_UNAVAILABLE``.
    """
    officer = _check_fields(name, role, width_mm, officer)
    try:
        screen_png(data)
        # Stored re-encoded: the pixels only, not the upload's other chunks or trailing data.
        data = reencode_png(data)
        screened = screen_png(data)
    except ImageRejected as e:
        # reason: what was measured, for people; check: the stable machine name.
        raise _REJECTED[e.reason](details={"reason": e.detail, "check": e.reason}) from None
    height_mm = round(width_mm * screened.height / screened.width, 2)
    if height_mm > MAX_HEIGHT_MM:
        raise errors.InvalidImage(
            f"Ảnh in ra cao {height_mm:g} mm, quá {MAX_HEIGHT_MM:g} mm: hãy giảm width_mm."
        )
    with services.db.transaction() as session:
        if _find(session, agency, name) is not None:
            raise errors.ImageExists()
    key = _storage_key(agency, screened.sha256)
    # Content-addressed: the same bytes uploaded twice (under two names) are one object.
    try:
        existed = services.store.exists(key)
        if not existed:
            services.store.put(key, data, sha256=screened.sha256)
    except StorageUnavailableError:
        raise errors.StorageUnavailable() from None
    row = AppearanceImage(
        agency_id=agency.id,
        name=name,
        role=role,
        officer=officer,
        sha256=screened.sha256,
        size=len(data),
        width_px=screened.width,
        height_px=screened.height,
        width_mm=float(width_mm),
        height_mm=height_mm,
        storage_key=key,
        created_by=actor,
    )
    try:
        with services.db.transaction() as session:
            session.add(row)
            session.flush()
            audit.append(
                session,
                actor=actor,
                action="appearance_image.uploaded",
                agency_code=agency.code,
                subject=name,
                details={
                    "role": role,
                    "sha256": screened.sha256,
                    "size": len(data),
                    "width_px": screened.width,
                    "height_px": screened.height,
                    "width_mm": float(width_mm),
                },
            )
            return ImageView.of(row)
    except BaseException as e:
        if not existed:
            _remove_if_unused(services, key)
        if isinstance(e, IntegrityError):
            raise errors.ImageExists() from None
        raise


def _find(session: Session, agency: Agency, name: str) -> AppearanceImage | None:
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        return None
    return session.scalars(
        select(AppearanceImage).where(
            AppearanceImage.agency_id == agency.id, AppearanceImage.name == name
        )
    ).first()


def list_images(services: Services, agency: Agency) -> list[ImageView]:
    with services.db.transaction() as session:
        rows = session.scalars(
            select(AppearanceImage)
            .where(AppearanceImage.agency_id == agency.id)
            .order_by(AppearanceImage.name)
        ).all()
        return [ImageView.of(r) for r in rows]


def _users(session: Session, agency_id: int, name: str) -> list[str]:
    """The agency's active profiles whose appearance names image ``name``."""
    profiles = session.scalars(
        select(SigningProfile).where(
            SigningProfile.agency_id == agency_id, SigningProfile.disabled_at.is_(None)
        )
    ).all()
    return sorted(
        p.name
        for p in profiles
        if isinstance(p.appearance, dict)
        and any(p.appearance.get(field) == name for field in IMAGE_FIELDS)
    )


def delete_image(services: Services, agency: Agency, name: str, *, actor: str) -> None:
    """Delete image ``name``: 404 ``IMAGE_NOT_FOUND``; 409 ``IMAGE_IN_USE`` (naming the
    profiles) while an active profile uses it. The object goes when no record refers to it."""
    with services.db.transaction() as session:
        row = _find(session, agency, name)
        if row is None:
            raise errors.ImageNotFound()
        users = _users(session, agency.id, name)
        if users:
            raise errors.ImageInUse(details={"profiles": users})
        key, sha256 = row.storage_key, row.sha256
        session.delete(row)
        audit.append(
            session,
            actor=actor,
            action="appearance_image.deleted",
            agency_code=agency.code,
            subject=name,
            details={"sha256": sha256},
        )
    _remove_if_unused(services, key)


def _remove_if_unused(services: Services, key: str) -> None:
    with services.db.transaction() as session:
        used = session.scalars(
            select(AppearanceImage.id).where(AppearanceImage.storage_key == key)
        ).first()
    if used is not None:
        return
    try:
        services.store.delete(key, bypass_retention=True)
    except (ObjectNotFound, ObjectLocked, StorageUnavailableError, OSError):
        # An object left behind is unreferenced: `storage reconcile` removes it later.
        log.warning("appearance image object %s not removed", key)


def check_image_names(session: Session, agency_id: int, appearance: dict[str, Any] | None) -> None:
    """At profile save: every image the appearance names is one of the agency's, with the
    role the field asks for (``UNKNOWN_IMAGE`` naming the field otherwise)."""
    if not appearance:
        return
    for field, role in IMAGE_FIELDS.items():
        name = appearance.get(field)
        if name is None:
            continue
        found = session.scalars(
            select(AppearanceImage.id).where(
                AppearanceImage.agency_id == agency_id,
                AppearanceImage.name == name,
                AppearanceImage.role == role,
            )
        ).first()
        if found is None:
            # The name is not echoed: the answer is byte-identical for another agency's image
            # and for a name nobody has (tests/test_tenant_isolation.py).
            raise errors.UnknownImage(details={"field": f"appearance.{field}"})


def load_stamp_image(services: Services, agency_id: int, name: str, role: str) -> StampImage:
    """The decoded image ``name`` (of ``role``) for a signature: from the per-process cache by
    content hash, else read from storage, screened again and decoded once. A missing record
    or object is the profile's fault: ``APPEARANCE_INCOMPLETE``."""
    with services.db.transaction() as session:
        row = session.scalars(
            select(AppearanceImage).where(
                AppearanceImage.agency_id == agency_id,
                AppearanceImage.name == name,
                AppearanceImage.role == role,
            )
        ).first()
        if row is None:
            raise errors.AppearanceIncomplete(details={"missing": role, "name": name})
        sha256, key, width_mm, height_mm = row.sha256, row.storage_key, row.width_mm, row.height_mm
    found = cached_image(sha256, width_mm, height_mm)
    if found is not None:
        return found
    try:
        data = services.store.get(key)
    except ObjectNotFound:
        raise errors.AppearanceIncomplete(details={"missing": role, "name": name}) from None
    except StorageUnavailableError:
        raise errors.StorageUnavailable() from None
    try:
        return stamp_image(data, width_mm=width_mm, height_mm=height_mm)
    except ImageRejected:
        # The stored bytes changed behind the record (they were screened at upload).
        raise errors.AppearanceIncomplete(details={"missing": role, "name": name}) from None


@dataclass(frozen=True)
class AppearanceRequest:
    """A sign request's appearance fields: ``appearance_kind`` overrides the profile's kind,
    ``copy_kind`` (SAO Y | SAO LỤC | TRÍCH SAO) and ``document_number`` (annex) its texts."""

    kind: str | None = None
    copy_kind: str | None = None
    document_number: str | None = None


def resolve_appearance(
    services: Services,
    agency_id: int,
    stored: dict[str, Any] | None,
    request: AppearanceRequest | None = None,
) -> AppearanceSpec | KindAppearance | None:
    """What a signature shows: the profile's stored appearance with the request's fields over
    it, its images loaded (``None``: invisible). Codes: 422 ``UNKNOWN_APPEARANCE_KIND`` (a kind
    that does not exist), ``INVALID_DOCUMENT_NUMBER``, ``APPEARANCE_INCOMPLETE``
    (a person without signature image, a seal without seal image, an annex without number),
    ``INVALID_PROFILE`` (a stored appearance that breaks the rules), ``INVALID_COPY_KIND``
    (a copy kind that does not exist; case and missing diacritics are forgiven)."""
    from pydantic import TypeAdapter, ValidationError

    from signing_service.services.profile_rules import (
        APPEARANCE_KINDS,
        LEGACY_FIELDS,
        CopyKind,
        DocumentNumber,
        checked_appearance,
    )
    from signing_service.signing.appearance import AppearanceSpec, KindAppearance

    settings = checked_appearance(stored)
    values = settings.model_dump(exclude_none=True) if settings is not None else {}
    if request is not None:
        if request.kind is not None:
            if request.kind not in APPEARANCE_KINDS:
                raise errors.UnknownAppearanceKind(details={"field": "appearance_kind"})
            values["kind"] = request.kind
        if request.copy_kind is not None:
            try:
                values["copy_kind"] = TypeAdapter(CopyKind).validate_python(request.copy_kind)
            except ValidationError:
                raise errors.InvalidCopyKind(details={"field": "copy_kind"}) from None
        if request.document_number is not None:
            try:
                values["document_number"] = TypeAdapter(DocumentNumber).validate_python(
                    request.document_number
                )
            except ValidationError:
                raise errors.InvalidDocumentNumber(details={"field": "document_number"}) from None
    kind = values.get("kind")
    if kind is None:
        if settings is None:
            return None
        return AppearanceSpec(**{k: v for k, v in values.items() if k in LEGACY_FIELDS})
    if kind == "none":
        return None
    needs = {"person": "signature_image", "seal": "seal_image", "annex": "document_number"}
    if kind in needs and values.get(needs[kind]) is None:
        raise errors.appearance_incomplete(kind, needs[kind])
    signature = seal = None
    if kind == "person":
        signature = load_stamp_image(services, agency_id, values["signature_image"], "signature")
    if kind == "seal":
        seal = load_stamp_image(services, agency_id, values["seal_image"], "seal")
    return KindAppearance(
        kind=kind,
        margin=values.get("margin", 24.0),
        field_name=values.get("field_name"),
        when_full=values.get("when_full", "shrink"),
        title=values.get("title"),
        unit=values.get("unit"),
        copy_kind=values.get("copy_kind"),
        document_number=values.get("document_number"),
        signature=signature,
        seal=seal,
    )
