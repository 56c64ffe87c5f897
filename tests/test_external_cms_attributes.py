"""Two-step completion with a client CMS: only the session's signed attributes, no timestamp
on a B-B session (red team 17b, R17B-4 and R17B-9's second point).

A client CMS used to be checked for its ``sid``, ``message-digest`` and signature only; every
other signed attribute was embedded as sent. A ``signing-time`` (forbidden in PAdES, ETSI EN
319 142-1: the claimed time is ``/M``) then made the citizen's page print 01/01/2019 for a
document signed today. A client's own signature timestamp on a B-B session made a B-T
document the service recorded as B-B.
"""

from __future__ import annotations

import base64
from datetime import UTC, datetime
from typing import Any

import pytest
from asn1crypto import algos, cms, x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.serialization import Encoding, pkcs12
from pyhanko.sign.ades.cades_asn1 import CommitmentTypeIndication
from pyhanko.sign.signers import SimpleSigner
from pyhanko.sign.timestamps import HTTPTimeStamper

from signing_service._async import run_sync
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from tests.support.pdfs import make_pdf
from tests.support.state import assert_nothing_written, snapshot


def auth(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def start(api: Any, services: Services, credentials: dict[str, Any], level: str) -> Any:
    assert services.dev_pki is not None
    response = api.post(
        "/v1/signatures/external",
        headers=auth(credentials),
        data={"profile": "agency-a-officer", "level": level},
        files={
            "file": ("to-trinh.pdf", make_pdf(), "application/pdf"),
            "certificate": ("officer.pem", services.dev_pki.cert_path("officer").read_bytes()),
        },
    )
    assert response.status_code == 201, response.text
    return response.json()


def complete(api: Any, credentials: dict[str, Any], session: dict[str, Any], cms_der: bytes) -> Any:
    return api.post(
        session["complete_url"],
        headers=auth(credentials),
        json={"cms": base64.b64encode(cms_der).decode()},
    )


def officer_cms(
    services: Services, session: dict[str, Any], change: Any = lambda attrs: attrs
) -> bytes:
    """A detached CMS by the officer's own key over the session's signed attributes, as
    ``change`` leaves them (a list of ``CMSAttribute``), built by hand as a client would."""
    assert services.dev_pki is not None
    key, cert, _ = pkcs12.load_key_and_certificates(
        services.dev_pki.p12_path("officer").read_bytes(), DEV_KEY_PASSPHRASE.encode()
    )
    assert key is not None and cert is not None
    certificate = x509.Certificate.load(cert.public_bytes(Encoding.DER))
    prescribed = cms.CMSAttributes.load(base64.b64decode(session["data_to_sign"]))
    signed_attrs = cms.CMSAttributes(change(list(prescribed)))
    data = signed_attrs.dump(force=True)
    if isinstance(key, ec.EllipticCurvePrivateKey):
        signature = key.sign(data, ec.ECDSA(hashes.SHA256()))
        algorithm = "sha256_ecdsa"
    else:
        signature = key.sign(data, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[union-attr]
        algorithm = "sha256_rsa"
    signer_info = cms.SignerInfo(
        {
            "version": "v1",
            "sid": cms.SignerIdentifier(
                {
                    "issuer_and_serial_number": cms.IssuerAndSerialNumber(
                        {"issuer": certificate.issuer, "serial_number": certificate.serial_number}
                    )
                }
            ),
            "digest_algorithm": algos.DigestAlgorithm({"algorithm": "sha256"}),
            "signed_attrs": signed_attrs,
            "signature_algorithm": algos.SignedDigestAlgorithm({"algorithm": algorithm}),
            "signature": signature,
        }
    )
    signed_data = cms.SignedData(
        {
            "version": "v1",
            "digest_algorithms": [algos.DigestAlgorithm({"algorithm": "sha256"})],
            "encap_content_info": {"content_type": "data"},
            "certificates": [certificate],
            "signer_infos": [signer_info],
        }
    )
    return cms.ContentInfo({"content_type": "signed_data", "content": signed_data}).dump()


def with_signing_time(attrs: list[Any]) -> list[Any]:
    when = datetime(2019, 1, 1, tzinfo=UTC)
    return [
        *attrs,
        cms.CMSAttribute({"type": "signing_time", "values": [cms.Time({"utc_time": when})]}),
    ]


def with_commitment_type(attrs: list[Any]) -> list[Any]:
    commitment = CommitmentTypeIndication({"commitment_type_id": "proof_of_origin"})
    return [*attrs, cms.CMSAttribute({"type": "commitment_type", "values": [commitment]})]


def without_signing_certificate(attrs: list[Any]) -> list[Any]:
    return [a for a in attrs if a["type"].native != "signing_certificate_v2"]


def with_other_content_type(attrs: list[Any]) -> list[Any]:
    return [
        cms.CMSAttribute({"type": "content_type", "values": ["signed_data"]})
        if a["type"].native == "content_type"
        else a
        for a in attrs
    ]


@pytest.mark.parametrize(
    ("change", "attribute", "problem"),
    [
        (with_signing_time, "signing_time", "unexpected"),
        (with_commitment_type, "commitment_type", "unexpected"),
        (without_signing_certificate, "signing_certificate_v2", "missing"),
        (with_other_content_type, "content_type", "different"),
    ],
)
def test_signed_attributes_other_than_the_sessions_are_refused(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    change: Any,
    attribute: str,
    problem: str,
) -> None:
    session = start(api, services, credentials, "B-B")
    before = snapshot(services)
    done = complete(api, credentials, session, officer_cms(services, session, change))
    assert (done.status_code, done.json()["code"]) == (422, "EXTERNAL_CMS_INVALID"), done.text
    body = done.json()
    assert "thuộc tính được ký" in body["message"]
    assert [(a["attribute"], a["problem"]) for a in body["details"]["signed_attributes"]] == [
        (attribute, problem)
    ]
    assert_nothing_written(before, services)
    # The session is still open: the CMS over its own attributes completes it.
    done = complete(api, credentials, session, officer_cms(services, session))
    assert done.status_code == 201, done.text


def test_a_backdated_signing_time_never_reaches_the_report(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The red team's case end to end: a B-B session, a CMS claiming 2019-01-01."""
    session = start(api, services, credentials, "B-B")
    done = complete(api, credentials, session, officer_cms(services, session, with_signing_time))
    assert done.status_code == 422, done.text
    assert done.json()["details"]["signed_attributes"][0]["oid"] == "1.2.840.113549.1.9.5"


def client_cms_with_timestamp(services: Services, session: dict[str, Any]) -> bytes:
    """The client's own CMS (pyHanko's signer over the session's attributes) with a good
    signature timestamp from the dev TSA."""
    assert services.dev_pki is not None
    signer = SimpleSigner.load_pkcs12(
        services.dev_pki.p12_path("officer"), passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert signer is not None
    attrs = cms.CMSAttributes.load(base64.b64decode(session["data_to_sign"]))
    timestamper = HTTPTimeStamper(services.dev_pki.tsa_url)
    ci = run_sync(signer.async_sign_prescribed_attributes("sha256", attrs, timestamper=timestamper))
    return ci.dump()  # type: ignore[no-any-return]


def test_client_timestamp_on_a_b_b_session_is_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    session = start(api, services, credentials, "B-B")
    before = snapshot(services)
    done = complete(api, credentials, session, client_cms_with_timestamp(services, session))
    assert (done.status_code, done.json()["code"]) == (422, "EXTERNAL_CMS_INVALID"), done.text
    assert done.json()["details"] == {
        "unsigned_attributes": ["1.2.840.113549.1.9.16.2.14"],
        "level": "B-B",
    }
    assert "B-B" in done.json()["message"]
    assert_nothing_written(before, services)
    # The same client CMS is welcome on a B-T session, and recorded B-T.
    session = start(api, services, credentials, "B-T")
    done = complete(api, credentials, session, client_cms_with_timestamp(services, session))
    assert done.status_code == 201, done.text
    assert done.json()["level"] == "B-T"


def test_session_attributes_without_timestamp_complete_a_b_b_session(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The control: the CMS over exactly the session's attributes completes, level B-B."""
    session = start(api, services, credentials, "B-B")
    done = complete(api, credentials, session, officer_cms(services, session))
    assert done.status_code == 201, done.text
    assert done.json()["level"] == "B-B"
    signed = api.get(done.json()["document"]["download_url"], headers=auth(credentials))
    report = api.post("/v1/verifications", files={"file": ("s.pdf", signed.content)}).json()
    assert report["verdict"] == "TOTAL_PASSED", report
    assert report["signatures"][0]["level"] == "B-B"
