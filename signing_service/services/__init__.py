"""Use cases: documents, signing, verification. The API, web page and CLI call these."""
