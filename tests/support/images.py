"""PNG images the tests (and the bench) build: a blue handwritten signature, a red seal."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image, ImageDraw


def png_bytes(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def blue_scribble() -> bytes:
    """A handwritten-looking blue signature on a transparent background, 400 × 160 px."""
    image = Image.new("RGBA", (400, 160), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    points = [(20, 120), (70, 30), (120, 135), (170, 35), (220, 125), (300, 50), (380, 70)]
    draw.line(points, fill=(20, 50, 200, 255), width=9, joint="curve")
    draw.line([(60, 140), (360, 110)], fill=(20, 50, 200, 255), width=5)
    return png_bytes(image)


def red_seal() -> bytes:
    """A round red seal (two rings and a star) on a transparent background, 300 × 300 px."""
    image = Image.new("RGBA", (300, 300), (0, 0, 0, 0))
    draw = ImageDraw.Draw(image)
    red = (215, 25, 30, 255)
    draw.ellipse([6, 6, 294, 294], outline=red, width=14)
    draw.ellipse([48, 48, 252, 252], outline=red, width=5)
    draw.regular_polygon((150, 150, 45), 5, fill=red)
    return png_bytes(image)


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bomb(side: int = 60000) -> bytes:
    """A few hundred bytes whose header claims ``side`` × ``side`` RGBA pixels (14 GB)."""
    header = struct.pack(">IIBBBBB", side, side, 8, 6, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (side * 4 + 1) * 4)
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", rows)
        + png_chunk(b"IEND", b"")
    )
