"""Printable reports: the verification result as an A4 PDF sealed by the service (issue 11)."""
