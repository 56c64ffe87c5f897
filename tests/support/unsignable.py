"""PDFs that parse far enough to look like PDFs but that pyHanko cannot sign: each made the
signing engine raise something other than its own errors (``TypeError``, ``AssertionError``,
``PdfError`` "page index out of range", …), which answered 500 — and, in a batch, after the
documents before it had been signed and stored (issue 9)."""

from __future__ import annotations

from collections.abc import Callable

from tests.support.hostile import EMPTY_PAGES, ONE_PAGE, assemble

_CATALOG_WITH = b"<< /Type /Catalog /Pages 2 0 R %s >>"


def _catalog(extra: bytes, pages: bytes = EMPTY_PAGES, **more: bytes) -> bytes:
    objects = {1: _CATALOG_WITH % extra, 2: pages}
    objects.update({int(k.removeprefix("obj")): v for k, v in more.items()})
    return assemble(objects)


UNSIGNABLE: dict[str, Callable[[], bytes]] = {
    # No page to put the signature widget on (pyHanko: PdfError "Page index out of range").
    "empty page tree": lambda: _catalog(b""),
    # /AcroForm is a number, not a dictionary (TypeError: not subscriptable).
    "AcroForm is a number": lambda: _catalog(b"/AcroForm 7"),
    # /Count is a string: pyHanko compares it with an int (TypeError).
    "page count is a string": lambda: _catalog(b"", b"<< /Type /Pages /Kids 4 /Count (x) >>"),
    # The only kid points to a missing object (TypeError on NullObject).
    "page kid is missing": lambda: _catalog(b"", b"<< /Type /Pages /Kids [5 0 R] /Count 1 >>"),
    # The catalog is a number (AssertionError inside pyHanko).
    "catalog is a number": lambda: assemble({1: b"5", 2: EMPTY_PAGES}),
    # The page's /Annots is a number: pyHanko appends the widget to it (AttributeError).
    "page annotations are a number": lambda: _catalog(
        b"",
        ONE_PAGE,
        obj3=b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Annots 5 >>",
    ),
}
