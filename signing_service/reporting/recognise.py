"""Recognising the service's own sealed verification report when it is verified (red team F13).

A citizen files the PDF report; whoever receives it checks it on the page. The report is
not a document an agency issued through the registry, so the registry has no record of it,
and the page used to answer "Văn bản này không được cấp qua dịch vụ này … hãy hỏi cơ quan ban
hành". Chosen rule (rather than registering every report in the registry: reports are
anonymous, made on request, and would fill the registry with no agency behind them): a file
whose last signature is valid, covers the entire file and was made with the certificate
of the report seal configured now (``SIGNING_SERVICE_REPORT_SEAL_KEY``'s certificate, or the
dev PKI's ``service-seal`` in development) is a verification report sealed by this service.
A report sealed with an earlier seal certificate (a key replaced since) is not recognised: it
shows as any other validly sealed file. Development alone also recognises the dev seals of the
dev PKI's earlier generations (re-issued for another port; ``DevPki.previous_seals``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from signing_service.services.container import Services


def report_seal_sha256(services: Services) -> str | None:
    """The SHA-256 (hex) of the report seal's certificate configured now, or ``None`` when
    there is none. Reads the key registry's row (its stored certificate), never opens the key."""
    settings = services.settings
    if settings.report_seal_key:
        from sqlalchemy import select

        from signing_service.store.models import Agency, SigningKey

        agency_code, _, name = settings.report_seal_key.partition("/")
        with services.db.transaction() as session:
            found = session.execute(
                select(SigningKey.certificate_sha256)
                .join(Agency, Agency.id == SigningKey.agency_id)
                .where(
                    Agency.code == agency_code,
                    SigningKey.name == name,
                    SigningKey.disabled_at.is_(None),
                )
            ).scalar()
        return str(found) if found else None
    pki = services.dev_pki
    if settings.is_production or pki is None:
        return None
    from signing_service.pki.dev import SERVICE_SEAL

    return pki.cert(SERVICE_SEAL).sha256.hex()


def service_report(services: Services, report: dict[str, Any]) -> dict[str, Any] | None:
    """``{"system": <the report's system name>, "seal": <the seal certificate's subject
    name>}`` when the verified file (``report``: the verifier's JSON) is a verification report
    sealed by this service (the module's rule), else ``None``."""
    from signing_service.reporting.pdf import system_name

    signatures = [s for s in report.get("signatures") or [] if isinstance(s, dict)]
    if report.get("verdict") != "TOTAL_PASSED" or not signatures:
        return None
    last = signatures[-1]
    signer = last.get("signer") or {}
    if last.get("indication") != "TOTAL_PASSED" or last.get("coverage") != "ENTIRE_FILE":
        return None
    wanted = {report_seal_sha256(services)} - {None}
    pki = services.dev_pki
    if (
        pki is not None
        and not services.settings.is_production
        and not services.settings.report_seal_key
    ):
        # Development: the dev seals of earlier generations too (a port change re-issued the
        # dev PKI; new user 14 F4): the reports this deployment sealed before it.
        wanted.update(pki.previous_seals)
    if signer.get("certificate_sha256") not in wanted:
        return None
    return {"system": system_name(services), "seal": signer.get("common_name")}
