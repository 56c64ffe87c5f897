"""The images a visible signature shows: an officer's handwritten signature and an agency's seal.

Nghị định 30/2020, Appendix I: both are PNG images with a transparent background, the signature
blue and the seal red, shown as uploaded (no recolouring, no resampling). An upload is screened
here before anything is stored (:func:`screen_png`), and decoded at most once per content hash
(:func:`stamp_image`): a visible signature then costs little more than an invisible one
(``make bench``, row "visible person+seal ÷ invisible").
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import warnings
import zlib
from collections import OrderedDict
from dataclasses import dataclass

import magic
from PIL import Image, UnidentifiedImageError

# Bounds of an upload (issue 10, "bounded dimensions and bytes"). A seal of 40 mm scanned at
# 600 dpi is 945 px; a signature 80 mm wide at 600 dpi is 1890 px.
MAX_IMAGE_BYTES = 1024 * 1024
MAX_IMAGE_SIDE = 2048
MIN_IMAGE_SIDE = 16
# "Transparent background": at least this share of the pixels is (almost) fully transparent.
# A signature or a round seal on a transparent square leaves far more (a circle leaves 21 %).
MIN_TRANSPARENT_SHARE = 0.05
TRANSPARENT_ALPHA = 16
# Points per millimetre (PDF user space: 72 pt per inch, 25.4 mm per inch).
PT_PER_MM = 72.0 / 25.4
# Decoded images kept per process (content-addressed, so never stale).
CACHE_SIZE = 64


class ImageRejected(ValueError):
    """An upload that is not an image the stamp may show. ``reason``: ``not_png`` |
    ``too_large`` | ``no_transparency`` (stable, for machines); ``detail``: what was measured,
    in Vietnamese (the API's ``details.reason``: people read it)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class ScreenedPng:
    """An upload that passed :func:`screen_png`: its pixel size and SHA-256 (hex)."""

    width: int
    height: int
    sha256: str


def screen_png(data: bytes) -> ScreenedPng:
    """Check that ``data`` is a PNG the stamp may show, without trusting any name or header.

    In order: size in bytes (≤ :data:`MAX_IMAGE_BYTES`); the content is PNG (libmagic on the
    bytes, then Pillow's parser; one frame, not an animated PNG); the dimensions read from the
    header are within [:data:`MIN_IMAGE_SIDE`, :data:`MAX_IMAGE_SIDE`] *before* any pixel is
    decoded (a decompression bomb is refused on its header); it decodes completely; it has an
    alpha channel or a ``tRNS`` chunk and at least :data:`MIN_TRANSPARENT_SHARE` of its pixels
    are transparent. Raises :class:`ImageRejected`.
    """
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageRejected("too_large", f"tệp {len(data)} byte, tối đa {MAX_IMAGE_BYTES} byte")
    if not data or magic.from_buffer(data[:4096], mime=True) != "image/png":
        raise ImageRejected("not_png", "nội dung tệp không phải ảnh PNG")
    # The header's dimensions, before Pillow sees the data (which refuses a bomb by its own,
    # higher bound): IHDR is the first chunk (PNG spec §5.6), width and height at bytes 16-24.
    if data[12:16] == b"IHDR" and len(data) >= 24:
        _check_side(*struct.unpack(">II", data[16:24]))
    try:
        with warnings.catch_warnings():
            # Pillow warns (DecompressionBombWarning) before it errors; our bound is lower.
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
                width, height = image.size
                _check_side(width, height)
                if getattr(image, "n_frames", 1) != 1:
                    raise ImageRejected("not_png", "ảnh PNG động (nhiều khung hình)")
                has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
                image.load()
                rgba = image.convert("RGBA")
    except ImageRejected:
        raise
    except Image.DecompressionBombError:
        raise ImageRejected("too_large", "ảnh giải nén ra quá lớn (nghi là bom giải nén)") from None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        # Truncated or corrupt data, a bad CRC, an oversized text chunk (Pillow's own bound).
        raise ImageRejected(
            "not_png", "không giải mã được ảnh PNG (tệp hỏng hoặc bị cắt cụt)"
        ) from None
    if not has_alpha:
        raise ImageRejected(
            "no_transparency", "ảnh không có kênh trong suốt (kênh alpha hoặc khối tRNS)"
        )
    histogram = rgba.getchannel("A").histogram()
    transparent = sum(histogram[: TRANSPARENT_ALPHA + 1])
    if transparent < MIN_TRANSPARENT_SHARE * width * height:
        raise ImageRejected(
            "no_transparency",
            f"chỉ {transparent} trên {width * height} điểm ảnh trong suốt "
            f"(cần ít nhất {MIN_TRANSPARENT_SHARE:.0%})",
        )
    return ScreenedPng(width=width, height=height, sha256=hashlib.sha256(data).hexdigest())


def _check_side(width: int, height: int) -> None:
    if max(width, height) > MAX_IMAGE_SIDE or min(width, height) < MIN_IMAGE_SIDE:
        raise ImageRejected(
            "too_large",
            f"ảnh {width}×{height} điểm ảnh; mỗi chiều phải từ {MIN_IMAGE_SIDE} đến "
            f"{MAX_IMAGE_SIDE} điểm ảnh",
        )


@dataclass(frozen=True)
class StampImage:
    """A screened image, decoded and compressed once, ready to embed in any number of PDFs.

    ``rgb_flate`` / ``alpha_flate``: zlib-compressed 8-bit DeviceRGB samples and the
    DeviceGray soft mask (ISO 32000-1 §11.6.5.3), as an image XObject and its /SMask carry
    them. ``width_mm`` × ``height_mm``: the size it is printed at (a seal's real size).
    """

    sha256: str
    width_px: int
    height_px: int
    width_mm: float
    height_mm: float
    rgb_flate: bytes
    alpha_flate: bytes

    @property
    def width_pt(self) -> float:
        return self.width_mm * PT_PER_MM

    @property
    def height_pt(self) -> float:
        return self.height_mm * PT_PER_MM


_cache: OrderedDict[tuple[str, float, float], StampImage] = OrderedDict()
_cache_lock = threading.Lock()


def cached_image(sha256: str, width_mm: float, height_mm: float) -> StampImage | None:
    """The decoded image of content ``sha256`` at that size, if this process has it."""
    key = (sha256, width_mm, height_mm)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def stamp_image(data: bytes, *, width_mm: float, height_mm: float) -> StampImage:
    """Decode ``data`` (a PNG that passed :func:`screen_png` when it was uploaded; screened
    again here, it comes from storage) into a :class:`StampImage`, cached per content hash and
    size (:data:`CACHE_SIZE` entries). Raises :class:`ImageRejected`."""
    screened = screen_png(data)
    found = cached_image(screened.sha256, width_mm, height_mm)
    if found is not None:
        return found
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        rgba = image.convert("RGBA")
    prepared = StampImage(
        sha256=screened.sha256,
        width_px=rgba.width,
        height_px=rgba.height,
        width_mm=width_mm,
        height_mm=height_mm,
        rgb_flate=zlib.compress(rgba.convert("RGB").tobytes(), 6),
        alpha_flate=zlib.compress(rgba.getchannel("A").tobytes(), 6),
    )
    with _cache_lock:
        _cache[(prepared.sha256, width_mm, height_mm)] = prepared
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return prepared
