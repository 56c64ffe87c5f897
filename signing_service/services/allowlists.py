"""The operator's allowlists: PKCS#11 modules, timestamp servers and remote signing providers.

They come from the operator's configuration only (``SIGNING_SERVICE_PKCS11_MODULES``,
``SIGNING_SERVICE_TSAS``, ``SIGNING_SERVICE_CSC_PROVIDERS``). Agency administrators and the
operator's ``key add`` refer to entries by name; no library path, URL or secret source a tenant
writes reaches the server (issue 9: a tenant-written ``module-path`` loaded any library into the
server, ``tsa_url`` and ``csc:`` URLs made it post anywhere, ``token-source``/``pin-source``
read any file or variable). Development mode adds its own entries (``dev`` TSA, ``softhsm``
module) unless the operator configured those names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from signing_service import errors

if TYPE_CHECKING:
    from signing_service.services.container import Services
    from signing_service.settings import CscProvider

DEV_TSA = "dev"
DEV_PKCS11_MODULE = "softhsm"


def tsas(services: Services) -> dict[str, str]:
    """Configured TSAs by name (plus the dev PKI's TSA as ``dev`` in development)."""
    configured = dict(services.settings.tsas)
    if services.dev_pki is not None:
        configured.setdefault(DEV_TSA, services.dev_pki.tsa_url)
    return configured


def default_tsa(services: Services) -> str | None:
    """The TSA of profiles that name none: ``SIGNING_SERVICE_DEFAULT_TSA``, else the first
    configured one; ``None`` when the operator configured none."""
    configured = tsas(services)
    chosen = services.settings.default_tsa
    if chosen is not None:
        return chosen if chosen in configured else None
    return next(iter(configured), None)


def tsa_url(services: Services, name: str | None) -> str:
    """The URL of TSA ``name`` (``None``: the default). Raises
    :class:`errors.TimestampUnavailable` when there is no such TSA (any more)."""
    chosen = name or default_tsa(services)
    url = tsas(services).get(chosen) if chosen is not None else None
    if url is None:
        raise errors.TimestampUnavailable(
            "Không có máy chủ dấu thời gian nào được cấu hình cho cấu hình ký số này."
        )
    return url


def pkcs11_modules(services: Services) -> dict[str, str]:
    """Configured PKCS#11 libraries by name (plus SoftHSM2 as ``softhsm`` in development)."""
    configured = dict(services.settings.pkcs11_modules)
    if services.dev_hsm_key is not None:
        configured.setdefault(DEV_PKCS11_MODULE, services.dev_hsm_key.module)
    return configured


def csc_providers(services: Services) -> dict[str, CscProvider]:
    """Configured remote signing providers by name."""
    return dict(services.settings.csc_providers)


def read_secret_source(source: str) -> bytes:
    """A secret from an operator-configured source: ``env:NAME`` or ``file:/absolute/path``
    (settings validate the form). Raises ``KeySourceError`` when it is not there; the message
    names the source, never the secret."""
    from signing_service.signing.keys.base import KeySourceError

    kind, _, where = source.partition(":")
    if kind == "env":
        value = os.environ.get(where)
        if value:
            return value.encode()
    elif kind == "file":
        try:
            value = Path(where).read_text().strip()
        except OSError:
            value = ""
        if value:
            return value.encode()
    raise KeySourceError(f"the configured secret source {kind}:… has no value")


def check(services: Services) -> None:
    """Configuration errors found at start-up (:class:`errors.ConfigurationError`)."""
    chosen = services.settings.default_tsa
    if chosen is not None and chosen not in tsas(services):
        raise errors.ConfigurationError(
            f"SIGNING_SERVICE_DEFAULT_TSA={chosen!r} không có trong SIGNING_SERVICE_TSAS."
        )
    report_tsa = services.settings.report_tsa
    if report_tsa is not None and report_tsa not in tsas(services):
        raise errors.ConfigurationError(
            f"SIGNING_SERVICE_REPORT_TSA={report_tsa!r} không có trong SIGNING_SERVICE_TSAS."
        )
    preservation_tsa = services.settings.preservation_tsa
    if preservation_tsa is not None and preservation_tsa not in tsas(services):
        raise errors.ConfigurationError(
            f"SIGNING_SERVICE_PRESERVATION_TSA={preservation_tsa!r} không có trong "
            "SIGNING_SERVICE_TSAS."
        )
