"""The ``Content-Disposition`` of a file the API hands back under the name it was uploaded
with."""

from __future__ import annotations

import unicodedata
from urllib.parse import quote

FALLBACK_NAME = "tai-lieu.pdf"


def attachment_disposition(name: str | None) -> str:
    """``attachment`` with the file's own name (RFC 6266): ``filename*`` in UTF-8 (RFC 8187)
    so that "quyết-định.pdf" downloads under that name, and an ASCII ``filename`` for old
    clients with the Vietnamese letters' accents dropped ("quyet-dinh.pdf"; it read
    "quy?t-??nh.pdf", red team 15b R7). Only the last path part is kept, whatever the
    separator, and quotes, backslashes and control characters never reach the header."""
    name = (name or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if c.isprintable() and c not in '"\\') or FALLBACK_NAME
    plain = unicodedata.normalize("NFKD", name.replace("đ", "d").replace("Đ", "D"))
    fallback = plain.encode("ascii", "ignore").decode().strip() or FALLBACK_NAME
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
