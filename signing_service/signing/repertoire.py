"""The characters a signature stamp can draw: what its embedded font subset carries.

Light on imports (the API's profile models use it at start-up); signing/appearance.py builds
the font subset from :data:`STAMP_RANGES`, services/profile_rules.py refuses anything else.
"""

from __future__ import annotations

import unicodedata

# What the stamp's font carries (signing/appearance.py embeds this subset): Latin, Vietnamese
# (Latin Extended Additional), combining marks, general punctuation, ₫. Code point ranges,
# end excluded.
STAMP_RANGES = (
    (0x20, 0x7F),
    (0xA0, 0x250),
    (0x300, 0x370),
    (0x1E00, 0x1F00),
    (0x2000, 0x2070),
    (0x20AB, 0x20AC),
)
# Characters that show nothing or reorder what follows (C0/C1 controls, format characters such
# as bidi overrides, zero-width spaces and the soft hyphen, line and paragraph separators,
# surrogates, private use, unassigned): a viewer may show the text other than it was saved.
_HIDDEN_CATEGORIES = frozenset({"Cc", "Cf", "Zl", "Zp", "Cs", "Co", "Cn"})


def drawable(char: str) -> bool:
    """True when ``char`` is visible and in the stamp font."""
    code = ord(char)
    return unicodedata.category(char) not in _HIDDEN_CATEGORIES and any(
        start <= code < end for start, end in STAMP_RANGES
    )
