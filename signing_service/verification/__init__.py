"""Verification core: bytes in, a report out. No web framework, ORM or storage SDK."""
