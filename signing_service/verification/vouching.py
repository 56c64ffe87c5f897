"""Whether a CRL or an OCSP answer a document carries really speaks for a certificate.

Why (red team 21c, R21C-1): the PAdES level (B-LT: "the DSS holds the revocation data for the
signer's certificate", ETSI EN 319 142-1 §6.3) and the report's list of revocation data counted
any CRL whose issuer *name* was the signer's CA's, and any OCSP answer naming the signer's serial
and CA *name*. Anyone could append a CRL or an OCSP answer signed by a key of their own under
that name: a B-T document read "B-LT", and with one public document timestamp "B-LTA", with the
forged answer listed as the CA's. The checks themselves never used such data as proof
(certvalidator validates what it uses); the label and the list did.

An item vouches for ``cert`` here when it is signed by ``cert``'s issuer (a certificate among
the candidates whose subject is ``cert``'s issuer name and whose key verifies ``cert``'s
signature):
- a CRL: issuer name equal to ``cert``'s issuer, signature by the issuer's key (RFC 5280 §6.3;
  indirect CRLs are not counted);
- an OCSP answer: a single response whose CertID has ``cert``'s serial, the issuer's name hash
  AND key hash (RFC 6960 §4.1.1), signed by the issuer itself or by a responder certificate
  the answer carries, issued by the issuer, with the OCSPSigning key purpose (RFC 6960 §4.2.2.2).
No time or revocation check of the responder: what this decides is whose data it is, not whether
it proves the status (the chain validation decides that).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from asn1crypto import crl, ocsp, x509
from pyhanko_certvalidator.sig_validate import DefaultSignatureValidator

_VALIDATOR = DefaultSignatureValidator()


def _signed_by(signature: bytes, data: bytes, algorithm: object, signer: x509.Certificate) -> bool:
    try:
        _VALIDATOR.validate_signature(
            signature,
            data,
            signer["tbs_certificate"]["subject_public_key_info"],
            algorithm,  # type: ignore[arg-type]
        )
    except Exception:  # noqa: BLE001 - any failure: not signed by that key
        return False
    return True


def issuers_of(
    cert: x509.Certificate, candidates: Iterable[x509.Certificate]
) -> list[x509.Certificate]:
    """The certificates among ``candidates`` that issued ``cert`` (subject = its issuer name,
    key verifies its signature), each once."""
    found: list[x509.Certificate] = []
    seen: set[bytes] = set()
    for candidate in candidates:
        try:
            if candidate.subject != cert.issuer:
                continue
            digest = hashlib.sha256(candidate.dump()).digest()
            if digest in seen:
                continue
            seen.add(digest)
            if _signed_by(
                cert["signature_value"].native,
                cert["tbs_certificate"].dump(),
                cert["signature_algorithm"],
                candidate,
            ):
                found.append(candidate)
        except Exception:  # noqa: BLE001 - a malformed candidate issues nothing
            continue
    return found


def _key_hash(issuer: x509.Certificate, algorithm: str) -> bytes:
    # The hash of the subjectPublicKey BIT STRING's value (without the unused-bits byte).
    bits = issuer["tbs_certificate"]["subject_public_key_info"]["public_key"].contents
    return hashlib.new(algorithm, bits[1:]).digest()


def _is_ocsp_responder(candidate: x509.Certificate, issuer: x509.Certificate) -> bool:
    usage = candidate.extended_key_usage_value
    if usage is None or "ocsp_signing" not in usage.native:
        return False
    return candidate.issuer == issuer.subject and _signed_by(
        candidate["signature_value"].native,
        candidate["tbs_certificate"].dump(),
        candidate["signature_algorithm"],
        issuer,
    )


def vouches_for(
    item: crl.CertificateList | ocsp.OCSPResponse,
    cert: x509.Certificate,
    issuers: list[x509.Certificate],
    responders: Iterable[x509.Certificate] = (),
) -> bool:
    """Whether ``item`` is ``cert``'s issuer's word on ``cert`` (module docstring);
    ``issuers``: :func:`issuers_of` ``cert``; ``responders``: certificates besides those an
    OCSP answer carries that may be its delegated responder's (the document's: some
    responders leave theirs out of the answer). Never raises."""
    try:
        if isinstance(item, crl.CertificateList):
            tbs = item["tbs_cert_list"]
            if tbs["issuer"] != cert.issuer:
                return False
            return any(
                _signed_by(
                    item["signature"].native, tbs.dump(), item["signature_algorithm"], issuer
                )
                for issuer in issuers
            )
        if item["response_status"].native != "successful":
            return False
        basic = item["response_bytes"]["response"].parsed
        data = basic["tbs_response_data"]
        for issuer in issuers:
            about = False
            for single in data["responses"]:
                cert_id = single["cert_id"]
                if cert_id["serial_number"].native != cert.serial_number:
                    continue
                algorithm = cert_id["hash_algorithm"]["algorithm"].native
                if (
                    hashlib.new(algorithm, cert.issuer.dump()).digest()
                    == cert_id["issuer_name_hash"].native
                    and _key_hash(issuer, algorithm) == cert_id["issuer_key_hash"].native
                ):
                    about = True
                    break
            if not about:
                continue
            signature = basic["signature"].native
            signed = data.dump()
            algo = basic["signature_algorithm"]
            if _signed_by(signature, signed, algo, issuer):
                return True
            for responder in (*(basic["certs"] or ()), *responders):
                if _is_ocsp_responder(responder, issuer) and _signed_by(
                    signature, signed, algo, responder
                ):
                    return True
        return False
    except Exception:  # noqa: BLE001 - malformed data vouches for nothing
        return False
