"""The first check of any PDF the service is given (light: the CLI's ``verify`` uses it without
the service container)."""

from __future__ import annotations

from signing_service import errors


def check_pdf_upload(data: bytes, limit: int) -> None:
    """Refuse an empty file (``EMPTY_FILE``), one over ``limit`` bytes (``FILE_TOO_LARGE``) or
    one without a PDF header in its first KiB (``NOT_A_PDF``): :class:`errors.ServiceError`."""
    if not data:
        raise errors.EmptyFile()
    if len(data) > limit:
        raise errors.PayloadTooLarge(
            f"Tệp vượt quá dung lượng cho phép ({limit // (1024 * 1024)} MB).",
            details={"max_bytes": limit},
        )
    if b"%PDF-" not in data[:1024]:
        raise errors.NotAPdf()
