"""Screening corpus built by the tests themselves: valid files of every allowed type, and every
kind of hostile file the storage issue names (the API and storage parts come with that issue)."""

from __future__ import annotations

import pytest

from signing_service.screening import ScreeningPolicy, screen
from tests.support.files import HOSTILE, VALID, pdf_with


@pytest.mark.parametrize(("name", "data", "media_type"), VALID, ids=[v[0] for v in VALID])
def test_valid_files_are_accepted(name: str, data: bytes, media_type: str) -> None:
    result = screen(data, name)
    assert result.accepted, (result.code, result.detail)
    assert result.media_type == media_type


@pytest.mark.parametrize(("name", "data", "code"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_files_are_refused_with_their_code(name: str, data: bytes, code: str) -> None:
    result = screen(data, name)
    assert result.code == code, (result.code, result.detail)
    assert result.message and not result.message.isascii()


def test_active_pdf_sanitized_copy_when_the_policy_says_so() -> None:
    result = screen(
        pdf_with("javascript"), "js.pdf", ScreeningPolicy(pdf_active_content="sanitize")
    )
    assert result.accepted and result.sanitized is not None
    assert "JavaScript" in result.active_content
    again = screen(result.sanitized, "clean.pdf")
    assert again.accepted and again.active_content == []


def test_signed_pdf_is_never_sanitized(dev_pki) -> None:  # type: ignore[no-untyped-def]
    from tests.test_existing_signatures import signed_locally

    # Signed by another tool: the service itself refuses to sign active content.
    signed = signed_locally(dev_pki[0], "spare-seal", pdf_with("javascript"))
    result = screen(signed, "signed.pdf", ScreeningPolicy(pdf_active_content="sanitize"))
    assert result.signed_pdf
    assert result.code == "SIGNED_PDF_ACTIVE_CONTENT"
    assert result.sanitized is None
