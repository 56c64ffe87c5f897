"""Visible signature appearance in the style of Vietnamese state documents.

Nghị định 30/2020, Appendix I: signatures on electronic copies and attachments carry no image
but a text block at the top right of page 1 (agency, signing time as ISO 8601 in Vietnam time),
Times New Roman 10 pt, black. Liberation Serif is metric-compatible and freely licensed.
pyHanko's default stamp font has no Vietnamese glyphs, so a TrueType font is always embedded.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from fontTools import subset
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign.fields import SigFieldSpec
from pyhanko.stamp import TextStampStyle

from signing_service.signing.pdfa import PdfAGlyphAccumulatorFactory
from signing_service.signing.repertoire import STAMP_RANGES

VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")

FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf"),
    Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf"),
)


class FontMissing(Exception):
    pass


# Latin, Vietnamese (Latin Extended Additional), combining marks, punctuation, ₫: the ranges
# profiles are checked against (signing/repertoire.py), so a saved text is drawable.
STAMP_UNICODES = [code for start, end in STAMP_RANGES for code in range(start, end)]


def _subset_font(source: Path) -> Path:
    """A Latin + Vietnamese subset of ``source``, made once and cached on disk.

    pyHanko subsets the embedded font on every signature; on a full Noto Serif that is ~130 ms
    (most of a signature's cost). On this ~50 KB subset it is a few milliseconds.
    """
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    cache = Path(tempfile.gettempdir()) / "signing-service-fonts"
    target = cache / f"{source.stem}-vi-{digest}.ttf"
    if target.exists():
        return target
    cache.mkdir(parents=True, exist_ok=True)
    options = subset.Options()
    # Vietnamese text arrives precomposed (NFC) and the font has precomposed glyphs, so no
    # shaping tables are needed; dropping them and the hinting makes the subset small.
    options.layout_features = []
    options.hinting = False
    options.name_IDs = ["*"]
    options.notdef_outline = True
    font = subset.load_font(str(source), options)
    subsetter = subset.Subsetter(options)
    subsetter.populate(unicodes=STAMP_UNICODES)
    subsetter.subset(font)
    fd, tmp = tempfile.mkstemp(dir=cache, suffix=".ttf")
    os.close(fd)
    subset.save_font(font, tmp, options)
    os.replace(tmp, target)
    return target


@lru_cache(maxsize=1)
def default_font() -> Path:
    for path in FONT_CANDIDATES:
        if path.exists():
            return _subset_font(path)
    raise FontMissing("no Vietnamese-capable TrueType font found (install fonts-noto-core)")


def vietnam_time(moment: datetime) -> str:
    """``2026-11-27T14:05:09+07:00``: the form the rules ask for on the document."""
    return moment.astimezone(VIETNAM_TZ).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class AppearanceSpec:
    """Where and what to draw. ``None`` in a profile means an invisible signature."""

    heading: str = "Ký bởi"
    width: float = 220.0
    height: float = 52.0
    margin: float = 24.0
    font_size: int = 9

    def stamp(self, signer_name: str, organisation: str | None, moment: datetime) -> TextStampStyle:
        lines = [f"{self.heading}: {signer_name}"]
        if organisation and organisation != signer_name:
            lines.append(f"Cơ quan: {organisation}")
        lines.append(f"Thời gian ký: {vietnam_time(moment)}")
        return TextStampStyle(
            # NFC: the subset font has precomposed Vietnamese glyphs and no shaping tables.
            stamp_text=unicodedata.normalize("NFC", "\n".join(lines)),
            text_box_style=TextBoxStyle(
                font=PdfAGlyphAccumulatorFactory(str(default_font())),  # /CIDSet: pdfa.py
                font_size=self.font_size,
            ),
            border_width=0,
            background=None,
        )

    def field_spec(self, field_name: str, page_width: float, page_height: float) -> SigFieldSpec:
        x2 = page_width - self.margin
        y2 = page_height - self.margin
        return SigFieldSpec(
            sig_field_name=field_name,
            on_page=0,
            box=(int(x2 - self.width), int(y2 - self.height), int(x2), int(y2)),
        )
