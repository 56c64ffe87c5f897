"""Verification core: bytes in, a report out. No web framework, ORM or storage SDK."""

# TeletexString names decode leniently before any certificate is read (signing_service._asn1).
import signing_service._asn1  # noqa: F401
