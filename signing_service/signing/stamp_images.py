"""The images a visible signature shows: an officer's handwritten signature and an agency's seal.

Nghị định 30/2020, Appendix I: both are PNG images with a transparent background, the signature
blue and the seal red, shown as uploaded (no recolouring; downscaled to what the printed size
needs). An upload is screened here before anything is stored (:func:`screen_png`), stored
re-encoded (:func:`reencode_png`), and decoded at most once per content hash and size
(:func:`stamp_image`): a visible signature then costs little more than an invisible one
(``make bench``, row "visible person+seal ÷ invisible").
"""

from __future__ import annotations

import hashlib
import io
import struct
import threading
import warnings
from collections import OrderedDict
from dataclasses import dataclass

import magic
from PIL import Image, UnidentifiedImageError

# Bounds of an upload (issue 10, "bounded dimensions and bytes"). A seal of 40 mm scanned at
# 600 dpi is 945 px; a signature 80 mm wide at 600 dpi is 1890 px.
MAX_IMAGE_BYTES = 1024 * 1024
MAX_IMAGE_SIDE = 2048
MIN_IMAGE_SIDE = 16
# "Transparent background": at least this share of the pixels is (almost) fully transparent
# (alpha below TRANSPARENT_ALPHA). A handwritten signature leaves ~90 %, a round seal (rings,
# text, star on a transparent square) well over half. 5 % let a 94.5 %-opaque white "seal" pass,
# which blanked another agency's signature under it (red team 10, F1).
MIN_TRANSPARENT_SHARE = 0.40
TRANSPARENT_ALPHA = 32
# ... and some ink: at least this share of the pixels is (almost) opaque (alpha at least
# OPAQUE_ALPHA). A fully transparent "seal" shows nothing where a seal is required (F10).
MIN_OPAQUE_SHARE = 0.01
OPAQUE_ALPHA = 128
# The stamp needs no more than this: 300 dpi at the printed size, at most 600 px a side
# (a 50 mm seal at 300 dpi is 591 px). A larger upload is downscaled once, at cache time:
# a 30 kB PNG of 2048² px made every signature 16.8 MB (red team 10, F4).
STAMP_DPI = 300
MAX_STAMP_SIDE = 600
# ... and at most this many compressed bytes (image and mask): noise compresses badly, so an
# image that is still larger is downscaled further until it fits. A real seal or signature at
# 600 px is a few tens of kB; this bounds what every signature with the image adds.
MAX_STAMP_BYTES = 200 * 1024
# Points per millimetre (PDF user space: 72 pt per inch, 25.4 mm per inch).
PT_PER_MM = 72.0 / 25.4
# Decoded images kept per process (content-addressed, so never stale), bounded by the bytes
# they hold, not by their number: the same content at other sizes is another entry.
CACHE_BYTES = 32 * 1024 * 1024


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
    alpha channel or a ``tRNS`` chunk, at least :data:`MIN_TRANSPARENT_SHARE` of its pixels
    are transparent (alpha < :data:`TRANSPARENT_ALPHA`: ``no_transparency``) and at least
    :data:`MIN_OPAQUE_SHARE` are ink (alpha ≥ :data:`OPAQUE_ALPHA`: ``empty``). Raises
    :class:`ImageRejected`.
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
    transparent = sum(histogram[:TRANSPARENT_ALPHA])
    if transparent < MIN_TRANSPARENT_SHARE * width * height:
        raise ImageRejected(
            "no_transparency",
            f"chỉ {transparent} trên {width * height} điểm ảnh trong suốt "
            f"(cần ít nhất {MIN_TRANSPARENT_SHARE:.0%})",
        )
    opaque = sum(histogram[OPAQUE_ALPHA:])
    if opaque < MIN_OPAQUE_SHARE * width * height:
        raise ImageRejected("empty", f"{opaque} of {width * height} pixels are opaque")
    return ScreenedPng(width=width, height=height, sha256=hashlib.sha256(data).hexdigest())


def reencode_png(data: bytes) -> bytes:
    """``data`` (a PNG that passed :func:`screen_png`) re-encoded by Pillow: the same pixels
    (8-bit RGBA, as the stamp uses them), none of the upload's other content. What is stored is
    this, not the upload: text chunks (HTML in a tEXt chunk) and data after IEND (a PDF appended
    to the image) are dropped (red team 10, F10). Raises :class:`ImageRejected` (``too_large``)
    when the re-encoding would be over :data:`MAX_IMAGE_BYTES` (it is screened again on use)."""
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        rgba = image.convert("RGBA")
    out = io.BytesIO()
    rgba.save(out, "PNG", compress_level=9)
    encoded = out.getvalue()
    if len(encoded) > MAX_IMAGE_BYTES:
        raise ImageRejected("too_large", f"{len(encoded)} bytes once re-encoded")
    return encoded


def _check_side(width: int, height: int) -> None:
    if max(width, height) > MAX_IMAGE_SIDE or min(width, height) < MIN_IMAGE_SIDE:
        raise ImageRejected(
            "too_large",
            f"ảnh {width}×{height} điểm ảnh; mỗi chiều phải từ {MIN_IMAGE_SIDE} đến "
            f"{MAX_IMAGE_SIDE} điểm ảnh",
        )


@dataclass(frozen=True)
class StampImage:
    """A screened image, downscaled and compressed once, ready to embed in any number of PDFs.

    ``rgb_flate`` / ``alpha_flate``: zlib streams of 8-bit DeviceRGB samples and of the
    DeviceGray soft mask (ISO 32000-1 §11.6.5.3), each row prefixed by its PNG filter type: the
    image XObject decodes them with ``/DecodeParms << /Predictor 15 /Colors 3|1
    /BitsPerComponent 8 /Columns width_px >>`` (ISO 32000-1 §7.4.4.4). ``width_px`` ×
    ``height_px``: the pixels embedded (at most :data:`STAMP_DPI` at the printed size and
    :data:`MAX_STAMP_SIDE` a side, less when the compressed samples would be over
    :data:`MAX_STAMP_BYTES`). ``width_mm`` × ``height_mm``: the size it is printed at.
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

    @property
    def nbytes(self) -> int:
        """The bytes this entry holds in the cache (and adds to each signed document)."""
        return len(self.rgb_flate) + len(self.alpha_flate)


_cache: OrderedDict[tuple[str, float, float], StampImage] = OrderedDict()
_cache_bytes = 0
_cache_lock = threading.Lock()


def cache_bytes() -> int:
    """The bytes the per-process image cache holds now (≤ :data:`CACHE_BYTES`)."""
    with _cache_lock:
        return _cache_bytes


def cached_image(sha256: str, width_mm: float, height_mm: float) -> StampImage | None:
    """The decoded image of content ``sha256`` at that size, if this process has it."""
    key = (sha256, width_mm, height_mm)
    with _cache_lock:
        found = _cache.get(key)
        if found is not None:
            _cache.move_to_end(key)
        return found


def stamp_size(width: int, height: int, width_mm: float, height_mm: float) -> tuple[int, int]:
    """The pixel size an image of ``width`` × ``height`` px is embedded at when printed at
    ``width_mm`` × ``height_mm``: never larger than it is, at most :data:`STAMP_DPI` at the
    printed size and :data:`MAX_STAMP_SIDE` a side; aspect kept, at least 1 px a side."""
    scale = min(
        1.0,
        (width_mm / 25.4 * STAMP_DPI) / width,
        (height_mm / 25.4 * STAMP_DPI) / height,
        MAX_STAMP_SIDE / max(width, height),
    )
    return max(1, round(width * scale)), max(1, round(height * scale))


def _png_idat(image: Image.Image) -> bytes:
    """The zlib stream of ``image`` as a PNG encoder writes it (rows prefixed by their PNG
    filter type, the encoder choosing the filter per row): what a PDF decodes with
    ``/Predictor 15``. Pillow's encoder over home-made filtering."""
    out = io.BytesIO()
    image.save(out, "PNG", compress_level=6)
    data = out.getvalue()
    chunks = []
    pos = 8  # PNG signature
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        if kind == b"IDAT":
            chunks.append(data[pos + 8 : pos + 8 + length])
        pos += 12 + length
    return b"".join(chunks)


def stamp_image(data: bytes, *, width_mm: float, height_mm: float) -> StampImage:
    """Decode ``data`` (a PNG that passed :func:`screen_png` when it was uploaded; screened
    again here, it comes from storage) into a :class:`StampImage`: downscaled to
    :func:`stamp_size` (Lanczos on premultiplied alpha, Pillow), and further while the
    compressed samples are over :data:`MAX_STAMP_BYTES`, compressed with PNG predictors,
    and cached per content hash and size, the cache bounded by :data:`CACHE_BYTES`. Raises
    :class:`ImageRejected`."""
    global _cache_bytes
    screened = screen_png(data)
    found = cached_image(screened.sha256, width_mm, height_mm)
    if found is not None:
        return found
    with Image.open(io.BytesIO(data), formats=["PNG"]) as image:
        rgba = image.convert("RGBA")
    size = stamp_size(rgba.width, rgba.height, width_mm, height_mm)
    while True:
        scaled = rgba if size == rgba.size else rgba.resize(size, Image.Resampling.LANCZOS)
        prepared = StampImage(
            sha256=screened.sha256,
            width_px=scaled.width,
            height_px=scaled.height,
            width_mm=width_mm,
            height_mm=height_mm,
            rgb_flate=_png_idat(scaled.convert("RGB")),
            alpha_flate=_png_idat(scaled.getchannel("A")),
        )
        if prepared.nbytes <= MAX_STAMP_BYTES or max(size) <= MIN_IMAGE_SIDE:
            break
        # Bytes grow with the pixel count: shrink both sides by the square root, a bit more.
        factor = 0.9 * (MAX_STAMP_BYTES / prepared.nbytes) ** 0.5
        size = (
            max(MIN_IMAGE_SIDE, round(size[0] * factor)),
            max(MIN_IMAGE_SIDE, round(size[1] * factor)),
        )
    key = (prepared.sha256, width_mm, height_mm)
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        _cache[key] = prepared
        _cache_bytes += prepared.nbytes
        while _cache_bytes > CACHE_BYTES and len(_cache) > 1:
            _, evicted = _cache.popitem(last=False)
            _cache_bytes -= evicted.nbytes
    return prepared
