"""An annotation's ``/Rect`` read as viewers draw it, and whether it was written plainly.

Why (red team 21, R21-1 to R21-3): ``/Rect`` is an array of four numbers (ISO 32000-1
§12.5.2), but any of them may be written as a reference to another object
(``/Rect [70 692 14 0 R 722]``). Viewers resolve it (poppler, PDFium and pdf.js resolve array
elements); poppler and PDFium read a reference to something that is not a number as 0. pyHanko's
visibility test (``form_field_rules.is_annot_visible``) subtracted the raw references, failed,
and called the widget invisible: a new widget drawing a prepared "9.000.000 VND" over the signed
amount was approved as validation data only ("nội dung không đổi"), and the warnings, which read
the same rectangle, were dropped. Here a reference is resolved; an element that is not a finite
number reads as 0, as those viewers draw it; and any such element (or a reference at all) makes
the rectangle "not plain": the difference policy counts the widget as visible whatever its area
(:func:`annotation_visible`), and the warnings name it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from pyhanko.pdf_utils import generic

Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class ReadRect:
    """``box``: (x1, y1, x2, y2) with x1 ≤ x2 and y1 ≤ y2, in points, as a viewer draws it;
    ``None`` when there is no ``/Rect`` or it is not an array of four. ``plain``: four direct,
    finite numbers (or no ``/Rect`` at all)."""

    box: Box | None
    plain: bool

    @property
    def shows_something(self) -> bool:
        """Whether the rectangle has an area (a viewer draws the appearance in it)."""
        return self.box is not None and self.box[2] > self.box[0] and self.box[3] > self.box[1]


def _plain(value: object) -> object:
    # pyHanko's DecryptedObjectProxy (an encrypted document's direct array or number).
    return value.decrypted if isinstance(value, generic.DecryptedObjectProxy) else value


def _number(value: object) -> float | None:
    """A finite number, or ``None`` for anything else (bool is not a number in PDF)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        return None
    try:
        number = float(value)
    except (OverflowError, ValueError, ArithmeticError):
        return None  # a 400-digit integer (red team 16 F5)
    return number if math.isfinite(number) else None


def read_rect(value: object) -> ReadRect:
    """``value`` (an annotation's ``/Rect`` entry, raw or resolved; ``None`` when absent) read
    as viewers draw it (module docstring). Never raises."""
    if value is None:
        return ReadRect(None, True)
    plain = True
    try:
        value = _plain(value)
        if isinstance(value, generic.IndirectObject):
            value, plain = _plain(value.get_object()), False
        if not isinstance(value, list) or len(value) != 4:
            return ReadRect(None, False)
        items: list[float] = []
        for index in range(4):
            item = _plain(list.__getitem__(value, index))
            if isinstance(item, generic.IndirectObject):
                item, plain = _plain(item.get_object()), False
            number = _number(item)
            if number is None:
                number, plain = 0.0, False
            items.append(number)
    except Exception:  # noqa: BLE001 - a reference that cannot be resolved: not a rectangle
        return ReadRect(None, False)
    x1, y1, x2, y2 = items
    return ReadRect((min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)), plain)


def annotation_visible(annot: object) -> bool:
    """Whether a widget may show something: its ``/Rect`` has an area, or is not written as
    four plain numbers (then counted as visible whatever it reads as: a viewer may draw it).
    No ``/Rect``: not visible (pyHanko's reading). Replaces pyHanko's ``is_annot_visible`` in
    the difference analysis (:func:`install`)."""
    if not isinstance(annot, generic.DictionaryObject):
        return False
    rect = read_rect(annot.raw_get("/Rect") if "/Rect" in annot else None)
    return rect.shows_something or not rect.plain


def install() -> None:
    """Make pyHanko's form-field rules (``is_field_visible``, which decides whether a new
    signature field is validation data or form filling) use :func:`annotation_visible`.
    Idempotent."""
    from pyhanko.sign.diff_analysis.rules import form_field_rules

    form_field_rules.is_annot_visible = annotation_visible
