"""What a signing profile may contain, checked whole whenever it is saved and again before it
is used: types, ranges, page positions, levels, names and lengths.

A profile that saves signs (issue 9: ``appearance: {"width": "abc"}`` was saved, then every
signature with it answered 500; negative sizes put the stamp off the page; a field over 255
characters or with a NUL answered 500 on PostgreSQL). The models are strict (a number is a JSON
number, a flag a JSON boolean) and refuse unknown fields, so the retired ``key_uri``,
``tsa_url`` and ``check_revocation`` are refused with 422 rather than ignored. Light on imports:
the API's schemas use these models at start-up.
"""

from __future__ import annotations

import re
import unicodedata
from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from signing_service.signing.repertoire import drawable

if TYPE_CHECKING:
    from signing_service.signing.appearance import AppearanceSpec

PROFILE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
KEY_NAME_PATTERN = PROFILE_NAME_PATTERN
ALLOWLIST_NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,62}$"
# The stamp must fit on the smaller of A4 (595 × 842 pt) and US Letter (612 × 792 pt): the
# stamp is drawn at the top right of page 1, ``margin`` from both edges.
PAGE_WIDTH = 595.0
PAGE_HEIGHT = 792.0
# Smallest stamp that stays readable (points), and the font sizes allowed.
MIN_STAMP_WIDTH = 40.0
MIN_STAMP_HEIGHT = 20.0
MAX_MARGIN = 200.0
MIN_FONT_SIZE, MAX_FONT_SIZE = 6, 24
# Column sizes (VARCHAR(255) on PostgreSQL counts characters).
MAX_TEXT = 255
MAX_HEADING = 64

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _printable(value: str) -> str:
    """Refuse what cannot be shown as written: control characters (a NUL fails on PostgreSQL,
    a newline breaks the stamp), invisible or reordering characters (bidi overrides), and
    characters the stamp's font lacks (they were dropped silently); an empty text."""
    if _CONTROL.search(value):
        raise ValueError("không được chứa ký tự điều khiển")
    bad = sorted({c for c in unicodedata.normalize("NFC", value) if not drawable(c)})
    if bad:
        shown = ", ".join(f"U+{ord(c):04X}" for c in bad[:5])
        raise ValueError(
            "chỉ dùng chữ Việt/Latinh, số và dấu câu (không có ký tự ẩn, ký tự đảo chiều hay "
            f"ký tự phông chữ con dấu không có): {shown}"
        )
    if not value.strip():
        raise ValueError("không được để trống")
    return value


Text = Annotated[str, Field(min_length=1, max_length=MAX_TEXT), AfterValidator(_printable)]
Heading = Annotated[str, Field(min_length=1, max_length=MAX_HEADING), AfterValidator(_printable)]


def _title_lines(value: str) -> str:
    """A title of one or two printable lines: "KT. GIÁM ĐỐC\nPHÓ GIÁM ĐỐC" (ký thay,
    Nghị định 30/2020 Art. 13) is drawn as two lines."""
    lines = value.split("\n")
    if len(lines) > 2:
        raise ValueError("chức danh tối đa hai dòng (ví dụ: KT. GIÁM ĐỐC / PHÓ GIÁM ĐỐC)")
    for line in lines:
        _printable(line)
    return value


Title = Annotated[str, Field(min_length=1, max_length=MAX_HEADING), AfterValidator(_title_lines)]
ProfileName = Annotated[
    str, Field(min_length=2, max_length=63, pattern=PROFILE_NAME_PATTERN, examples=["so-tu-phap"])
]
KeyName = Annotated[
    str,
    Field(
        min_length=2,
        max_length=63,
        pattern=KEY_NAME_PATTERN,
        description="tên một khóa đã đăng ký của cơ quan (GET /v1/admin/keys)",
        examples=["agency-a-seal"],
    ),
]
TsaName = Annotated[
    str,
    Field(
        min_length=1,
        max_length=63,
        pattern=ALLOWLIST_NAME_PATTERN,
        description="tên một máy chủ dấu thời gian do đơn vị vận hành cấu hình",
        examples=["dev"],
    ),
]
Level = Literal["B-B", "B-T", "B-LT", "B-LTA"]
FieldName = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_printable)]
Points = Annotated[float, Field(allow_inf_nan=False)]


# Appearance kinds (issue 10; Nghị định 30/2020, Appendix I; signing/appearance.py draws them).
APPEARANCE_KINDS = ("person", "seal", "copy", "annex", "digitised", "none")
AppearanceKind = Literal["person", "seal", "copy", "annex", "digitised", "none"]
IMAGE_NAME_PATTERN = r"^[a-z0-9][a-z0-9-]{1,62}$"
# The main document's number and symbol (Nghị định 30/2020 Art. 15): a number, optionally the
# year, then the symbol: letters (Đ included), digits and hyphen-separated parts, e.g.
# 123/QĐ-STP, 45/2020/NĐ-CP, 12/TTr-UBND.
DOCUMENT_NUMBER_PATTERN = r"^[0-9]{1,7}(/[0-9]{4})?/[A-Za-zĐđ0-9]{1,20}(-[A-Za-zĐđ0-9]{1,20}){0,5}$"


def _nfc(value: object) -> object:
    return unicodedata.normalize("NFC", value) if isinstance(value, str) else value


COPY_KINDS = ("SAO Y", "SAO LỤC", "TRÍCH SAO")
# Without any diacritic (typed on a keyboard without Vietnamese input): the one kind it spells.
_COPY_KIND_ASCII = {"SAO Y": "SAO Y", "SAO LUC": "SAO LỤC", "TRICH SAO": "TRÍCH SAO"}


def normalise_copy_kind(value: object) -> object:
    """A copy kind as Nghị định 30/2020 (Art. 25, App. I) prints it: "Sao y", "sao  lục" or
    "TRICH SAO" (no diacritics at all) name the same kind and become "SAO Y", "SAO LỤC",
    "TRÍCH SAO". Anything else is returned as given (NFC), for the validator to refuse: a
    word with *other* diacritics ("SÁO Y") is not read as a kind."""
    if not isinstance(value, str):
        return value
    text = " ".join(unicodedata.normalize("NFC", value).split()).upper()
    if text in COPY_KINDS:
        return text
    if text.isascii() and text in _COPY_KIND_ASCII:
        return _COPY_KIND_ASCII[text]
    return unicodedata.normalize("NFC", value)


CopyKind = Annotated[Literal["SAO Y", "SAO LỤC", "TRÍCH SAO"], BeforeValidator(normalise_copy_kind)]
ImageName = Annotated[
    str,
    Field(
        min_length=2,
        max_length=63,
        pattern=IMAGE_NAME_PATTERN,
        description="tên một ảnh đã tải lên của cơ quan (GET /v1/admin/appearance-images)",
    ),
]
DocumentNumber = Annotated[
    str,
    BeforeValidator(_nfc),
    Field(min_length=3, max_length=64, pattern=DOCUMENT_NUMBER_PATTERN, examples=["123/QĐ-STP"]),
]


class AppearanceSettings(BaseModel):
    """The visible stamp. Without ``kind``: the text block at the top right of page 1 that
    profiles had before kinds (``heading``, ``width``, ``height``, ``font_size``). With a
    ``kind`` (Nghị định 30/2020, Appendix I): ``person`` (``signature_image``, ``title``),
    ``seal`` (``seal_image``), ``copy`` (``copy_kind``, ``unit``), ``annex``
    (``document_number``, usually per request), ``digitised`` (``unit``), ``none``; kinds are
    drawn in Liberation Serif 10 pt and size themselves; ``margin`` places them."""

    model_config = ConfigDict(extra="forbid", strict=True)

    kind: AppearanceKind | None = None
    title: Title | None = Field(
        default=None,
        description=(
            "dòng chức danh, được dùng thay chức danh trong chứng thư (ví dụ GIÁM ĐỐC; hai dòng "
            "cách nhau bởi \\n: KT. GIÁM ĐỐC\\nPHÓ GIÁM ĐỐC)"
        ),
    )
    unit: Text | None = Field(
        default=None, description="cơ quan sao / đơn vị số hóa; để trống: tổ chức trong chứng thư"
    )
    copy_kind: CopyKind | None = None
    document_number: DocumentNumber | None = None
    signature_image: ImageName | None = None
    seal_image: ImageName | None = None
    heading: Heading = "Ký bởi"
    width: Points = Field(default=220.0, ge=MIN_STAMP_WIDTH, le=PAGE_WIDTH)
    height: Points = Field(default=52.0, ge=MIN_STAMP_HEIGHT, le=PAGE_HEIGHT)
    margin: Points = Field(default=24.0, ge=0.0, le=MAX_MARGIN)
    font_size: int = Field(default=9, ge=MIN_FONT_SIZE, le=MAX_FONT_SIZE)
    field_name: FieldName | None = Field(
        default=None,
        description="trường chữ ký trống có sẵn trong tài liệu cần điền (vd. ChuKyLanhDao)",
    )
    when_full: Literal["shrink", "next-page", "refuse"] = Field(
        default="shrink",
        description=(
            "khi trang không còn chỗ trống: thu nhỏ (tối thiểu một nửa), sang trang sau, "
            "hoặc từ chối (NO_SPACE_FOR_SIGNATURE)"
        ),
    )

    @model_validator(mode="after")
    def _kind_has_what_it_draws(self) -> AppearanceSettings:
        # Its own error type: the API answers APPEARANCE_INCOMPLETE naming what is missing
        # (api/app.py), as signing does, rather than a generic INVALID_REQUEST.
        needs = {"person": "signature_image", "seal": "seal_image"}
        if self.kind in needs and getattr(self, needs[self.kind]) is None:
            missing = needs[self.kind]
            raise PydanticCustomError(
                "appearance_incomplete",
                "hình thức {kind} cần {missing}",
                {"kind": self.kind, "missing": missing},
            )
        return self

    @model_validator(mode="after")
    def _inside_the_page(self) -> AppearanceSettings:
        if self.width + self.margin > PAGE_WIDTH or self.height + self.margin > PAGE_HEIGHT:
            raise ValueError(
                f"khung chữ ký và lề phải nằm trong trang A4/Letter "
                f"(rộng + lề ≤ {PAGE_WIDTH:g}, cao + lề ≤ {PAGE_HEIGHT:g} điểm)"
            )
        return self


class ProfileSettings(BaseModel):
    """Everything a profile says, except its name."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: KeyName | None = Field(
        default=None,
        description=(
            "khóa ký đã đăng ký của cơ quan; với ký hai bước: một chứng thư người ký đã đăng "
            "ký, hoặc để trống để nhận mọi người ký đã đăng ký của cơ quan"
        ),
    )
    two_step: bool = Field(
        default=False, description="ký hai bước: khóa do người ký giữ (USB token)"
    )
    level: Level = "B-T"
    tsa: TsaName | None = Field(
        default=None, description="máy chủ dấu thời gian; để trống: máy chủ mặc định"
    )
    reason: Text | None = None
    location: Text | None = None
    appearance: AppearanceSettings | None = Field(
        default=None, description="hình thức chữ ký hiển thị; để trống: chữ ký ẩn"
    )


class NewProfile(ProfileSettings):
    """A profile to create: its name (unique within the agency) and its settings."""

    name: ProfileName


class ProfileChanges(BaseModel):
    """A partial update: only the fields sent change; the result is validated whole."""

    model_config = ConfigDict(extra="forbid", strict=True)

    key: KeyName | None = None
    # Not nullable: a flag or a level is changed to a value, never to null.
    two_step: bool = None  # type: ignore[assignment]
    level: Level = None  # type: ignore[assignment]
    tsa: TsaName | None = None
    reason: Text | None = None
    location: Text | None = None
    appearance: AppearanceSettings | None = None


def checked_appearance(stored: dict[str, Any] | None) -> AppearanceSettings | None:
    """A stored profile's appearance, validated again before use: a row written before these
    rules (or by hand) that breaks them is refused with ``INVALID_PROFILE``, never a 500."""
    from signing_service import errors

    if stored is None:
        return None
    try:
        return AppearanceSettings.model_validate(stored)
    except ValidationError:
        raise errors.InvalidProfile(
            "Thiết lập hình thức chữ ký (appearance) đã lưu không hợp lệ; quản trị viên cơ quan "
            "cần sửa cấu hình ký số."
        ) from None


# What AppearanceSpec (the text stamp of profiles without a kind) takes.
LEGACY_FIELDS = ("heading", "width", "height", "margin", "font_size", "field_name", "when_full")


def appearance_spec(stored: dict[str, Any] | None) -> AppearanceSpec | None:
    """The text stamp of a stored profile without a ``kind`` (checked as
    :func:`checked_appearance`); profiles with a kind: services/appearance_images.py."""
    from signing_service.signing.appearance import AppearanceSpec

    checked = checked_appearance(stored)
    if checked is None:
        return None
    return AppearanceSpec(**checked.model_dump(include=set(LEGACY_FIELDS)))
