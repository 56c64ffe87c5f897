"""Signing core: takes bytes and collaborators, returns bytes. No web framework, ORM or SDK."""
