"""Cryptographic integrity of one CMS signer info, once its signer certificate is known.

pyHanko's ``validate_sig_integrity`` re-checks the ESS signing-certificate attribute that the
certificate selection (``extract_certs_for_validation``, ETSI EN 319 102-1 § 5.2.3.4) has just
checked — its own comment says the check runs twice "for compatibility". With asn1crypto's RFC 4518
name comparison that second check is ~1 ms per signature; the verifier selects each signer's
certificate through a per-document memo that includes the attribute, so it calls this instead.
Everything else is pyHanko's, step for step: the CMS algorithm-protection attribute, the
content type, the message digest, and the signature value through pyhanko-certvalidator's
signature validator.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import cms, core, x509
from cryptography.exceptions import InvalidSignature
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
from pyhanko.sign.general import (
    CMSStructuralError,
    MultivaluedAttributeError,
    NonexistentAttributeError,
    find_unique_cms_attribute,
)
from pyhanko.sign.validation import errors
from pyhanko.sign.validation.generic_cms import validate_algorithm_protection
from pyhanko.sign.validation.utils import extract_message_digest
from pyhanko_certvalidator.sig_validate import (
    DefaultSignatureValidator,
    SignatureValidationContext,
)

_VALIDATOR = DefaultSignatureValidator()


def signature_integrity(
    signer_info: cms.SignerInfo,
    cert: x509.Certificate,
    expected_content_type: str,
    actual_digest: bytes,
) -> tuple[bool, bool]:
    """(intact, valid): whether ``actual_digest`` is the signed message digest, and whether the
    signature value verifies with ``cert``'s public key (RFC 5652 § 5.4, 5.6).

    ``cert`` must already have been selected as the signer's certificate and checked against
    the signing-certificate attribute. Raises pyHanko's ``SignatureValidationError`` for a
    malformed structure (FORMAT_FAILURE), and whatever the signature validator raises for an
    algorithm it does not support.
    """
    signature_algorithm = signer_info["signature_algorithm"]
    digest_algorithm = signer_info["digest_algorithm"]
    md_algorithm = digest_algorithm["algorithm"].native
    signature = signer_info["signature"].native
    if signer_info["signed_attrs"] is core.VOID:
        embedded_digest = None
        prehashed = True
        signed_data = actual_digest
    else:
        signed_attrs = signer_info["signed_attrs"].untag()
        signed_data = signed_attrs.dump()
        prehashed = False
        try:
            validate_algorithm_protection(
                signed_attrs,
                claimed_digest_algorithm_obj=digest_algorithm,
                claimed_signature_algorithm_obj=signature_algorithm,
                claimed_mac_algorithm_obj=None,
            )
        except CMSStructuralError as e:
            raise errors.SignatureValidationError(
                e.failure_message, ades_subindication=AdESFailure.FORMAT_FAILURE
            ) from e
        except errors.CMSAlgorithmProtectionError as e:
            raise errors.SignatureValidationError(
                e.failure_message, ades_subindication=AdESIndeterminate.GENERIC
            ) from e
        try:
            content_type = find_unique_cms_attribute(signed_attrs, "content_type").native
        except (NonexistentAttributeError, MultivaluedAttributeError) as e:
            raise errors.SignatureValidationError(
                "Content type not found in signature, or multiple content-type attributes.",
                ades_subindication=AdESFailure.FORMAT_FAILURE,
            ) from e
        if content_type != expected_content_type:
            raise errors.SignatureValidationError(
                f"Content type {content_type} did not match {expected_content_type}",
                ades_subindication=AdESFailure.FORMAT_FAILURE,
            )
        embedded_digest = extract_message_digest(signer_info)
    try:
        _VALIDATOR.validate_signature(
            signature,
            signed_data,
            cert.public_key,
            signature_algorithm,
            context=SignatureValidationContext(
                contextual_md_algorithm=md_algorithm, prehashed=prehashed
            ),
        )
        valid = True
    except InvalidSignature:
        valid = False
    intact = actual_digest == embedded_digest if embedded_digest is not None else valid
    return intact, valid


def signature_value_valid(
    signer_info: cms.SignerInfo, cert: x509.Certificate, md_algorithm: str
) -> bool | None:
    """Whether the signature value of ``signer_info`` verifies over its signed attributes with
    ``cert``'s key: ``True``/``False``, ``None`` when that cannot be decided (no signed
    attributes, a key type or digest the service does not know).

    The declared signature algorithm first; when it cannot be used (an unknown or malformed
    identifier: the field is not covered by the signature, so anyone can change it), every
    algorithm the key type allows with ``md_algorithm`` (RSA: PKCS #1 v1.5 and PSS; EC: ECDSA).
    Used when the signed attributes are malformed or the declared algorithm is not supported,
    so that a value nobody with the key made reads as what it is (red team 23a, R23A-1: a
    real agency's CMS moved onto another document, its message digest replaced and its
    content-type attribute broken, read "undetermined", never checked). Never raises."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

    try:
        if signer_info["signed_attrs"] is core.VOID:
            return None
        data = signer_info["signed_attrs"].untag().dump()
        signature = signer_info["signature"].native
    except Exception:  # noqa: BLE001 - malformed: nothing to decide on
        return None
    try:
        _VALIDATOR.validate_signature(
            signature,
            data,
            cert.public_key,
            signer_info["signature_algorithm"],
            context=SignatureValidationContext(contextual_md_algorithm=md_algorithm),
        )
        return True
    except InvalidSignature:
        return False
    except Exception:  # noqa: BLE001 - the declared algorithm cannot be used: try the key's
        pass
    try:
        from pyhanko.sign.general import get_pyca_cryptography_hash

        digest = get_pyca_cryptography_hash(md_algorithm)
        key = serialization.load_der_public_key(cert.public_key.dump())
    except Exception:  # noqa: BLE001
        return None
    attempts: list[Any] = []
    if isinstance(key, rsa.RSAPublicKey):
        attempts = [
            lambda: key.verify(signature, data, padding.PKCS1v15(), digest),
            lambda: key.verify(
                signature,
                data,
                padding.PSS(mgf=padding.MGF1(digest), salt_length=padding.PSS.AUTO),
                digest,
            ),
        ]
    elif isinstance(key, ec.EllipticCurvePublicKey):
        attempts = [lambda: key.verify(signature, data, ec.ECDSA(digest))]
    else:
        return None
    for attempt in attempts:
        try:
            attempt()
            return True
        except InvalidSignature:
            continue
        except Exception:  # noqa: BLE001 - e.g. a value of the wrong size for the key
            continue
    return False
