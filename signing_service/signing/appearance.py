"""Visible signature appearance in the style of Vietnamese state documents.

Nghị định 30/2020, Appendix I: signatures on electronic copies and attachments carry no image
but a text block at the top right of page 1 (agency, signing time as ISO 8601 in Vietnam time),
Times New Roman 10 pt, black. Liberation Serif is metric-compatible and freely licensed.
pyHanko's default stamp font has no Vietnamese glyphs, so a TrueType font is always embedded.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path

from pyhanko.pdf_utils.font.opentype import GlyphAccumulatorFactory
from pyhanko.pdf_utils.text import TextBoxStyle
from pyhanko.sign.fields import SigFieldSpec
from pyhanko.stamp import TextStampStyle

VIETNAM_TZ = timezone(timedelta(hours=7), "ICT")

FONT_CANDIDATES = (
    Path("/usr/share/fonts/truetype/noto/NotoSerif-Regular.ttf"),
    Path("/usr/share/fonts/truetype/liberation2/LiberationSerif-Regular.ttf"),
)


class FontMissing(Exception):
    pass


@lru_cache(maxsize=1)
def default_font() -> Path:
    for path in FONT_CANDIDATES:
        if path.exists():
            return path
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
            stamp_text="\n".join(lines),
            text_box_style=TextBoxStyle(
                font=GlyphAccumulatorFactory(str(default_font())),
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
