"""Duties before every signature that nothing can switch off (TT 15/2025 Art. 5; issue 9).

Signers: revoked (the dev PKI's revoked certificate, OCSP), untrusted (a throw-away root that is
not in the trust store), unknown status (a certificate of the dev intermediate whose OCSP
responder and CRL are on a closed port) are refused at B-B, B-T, B-LT and B-LTA, in one-step,
batch, two-step and remote (CSC) signing, PKCS#11 and the CLI, and nothing is written.

Timestamp servers (pyHanko's DummyTimeStamper made to misbehave, on loopback): self-signed,
SHA-1 signature, SHA-1 imprint, wrong imprint, wrong nonce, skewed clock, non-critical
timeStamping purpose, unknown revocation status: each refused with its own code, for signature
timestamps, B-LTA document timestamps and two-step completion, and nothing is written.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from asn1crypto import pem
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from signing_service import errors
from signing_service.services.container import Services
from signing_service.services.signing import sign_document
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.store.models import Agency
from tests.support.duties import (
    WsgiServer,
    add_profile,
    crl_app,
    dev_crl,
    issue_under_dev,
    write_p12,
)
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.support.state import assert_nothing_written, snapshot
from tests.support.testpki import issue_chain, to_asn1

LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
EXPECTED = {
    "revoked": (422, "SIGNER_CERT_REVOKED"),
    "untrusted": (422, "SIGNER_CERT_UNTRUSTED"),
    "unknown": (503, "SIGNER_CERT_STATUS_UNKNOWN"),
}


def auth(credentials: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}


def assert_refused(response: Any, services: Services, status: int, code: str) -> None:
    assert (response.status_code, response.json()["code"]) == (status, code), response.text
    if status == 503:
        assert response.headers["Retry-After"] == str(services.settings.retry_after_seconds)
    message = response.json()["message"]
    assert message and message.isascii() is False  # Vietnamese, with its diacritics


def closed_url(path: str) -> str:
    return f"http://127.0.0.1:{free_port()}/{path}"


class Signer:
    """A bad signer: its certificate chain (signer first) and private key."""

    def __init__(self, certs: list[Any], key: Any, key_uri: str) -> None:
        self.certs = certs
        self.key = key
        self.key_uri = key_uri

    def pem(self) -> bytes:
        return b"".join(pem.armor("CERTIFICATE", c.dump()) for c in self.certs)

    def sign_digest_info(self, digest_info: bytes) -> bytes:
        # The CSC stand-in hands over a DER DigestInfo (SHA-256): its last 32 bytes.
        return bytes(
            self.key.sign(digest_info[-32:], padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
        )


def make_signer(services: Services, kind: str, directory: Path) -> Signer:
    pki = services.dev_pki
    assert pki is not None
    if kind == "revoked":
        path = pki.p12_path("revoked-signer")
        private, cert, extra = pkcs12.load_key_and_certificates(
            path.read_bytes(), DEV_KEY_PASSPHRASE.encode()
        )
        assert cert is not None
        return Signer([to_asn1(c) for c in (cert, *extra)], private, f"file:{path}")
    if kind == "untrusted":
        chain = issue_chain()
        uri = write_p12(
            directory / "untrusted.p12", chain.leaf_private_key, chain.leaf, [chain.intermediate]
        )
        return Signer([chain.leaf, chain.intermediate], chain.leaf_private_key, uri)
    assert kind == "unknown"
    cert, private = issue_under_dev(
        pki,
        "Trạng thái không rõ (thử nghiệm)",
        crl_url=closed_url("crl"),
        ocsp_url=closed_url("ocsp"),
    )
    uri = write_p12(directory / "unknown.p12", private, cert, [pki.cert("interm")])
    return Signer([cert, pki.cert("interm")], private, uri)


# -- signers, one-step and batch ----------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_signer_refused_at_every_level_one_step_and_batch(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    assert services.dev_pki is not None
    signer = make_signer(services, kind, tmp_path)
    add_profile(services, "bad", key_uri=signer.key_uri, tsa_url=services.dev_pki.tsa_url)
    status, code = EXPECTED[kind]
    for level in LEVELS:
        before = snapshot(services)
        response = api.post(
            "/v1/signatures",
            headers=auth(credentials),
            data={"profile": "bad", "level": level},
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        )
        assert_refused(response, services, status, code)
        assert_nothing_written(before, services)

        response = api.post(
            "/v1/signatures/batch",
            headers=auth(credentials),
            data={"profile": "bad", "level": level},
            files=[("files", (f"{i}.pdf", make_pdf(), "application/pdf")) for i in range(2)],
        )
        assert_refused(response, services, status, code)
        assert_nothing_written(before, services)


def test_good_signer_signs_at_every_level_through_the_same_path(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The control: the refusals above come from the signer, not from the profile shape."""
    assert services.dev_pki is not None
    add_profile(
        services,
        "good",
        key_uri=f"file:{services.dev_pki.p12_path('agency-b-seal')}",
        tsa_url=services.dev_pki.tsa_url,
    )
    for level in LEVELS:
        response = api.post(
            "/v1/signatures",
            headers=auth(credentials),
            data={"profile": "good", "level": level},
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        )
        assert response.status_code == 201, response.text


def test_a_ca_certificate_never_signs(services: Services, tmp_path: Path) -> None:
    """The dev root has digitalSignature in its key usage; it is still a CA (issue 9)."""
    from signing_service.signing.certcheck import SignerCheckFailure, check_static
    from tests.support.duties import dev_key

    pki = services.dev_pki
    assert pki is not None
    uri = write_p12(tmp_path / "root.p12", dev_key(pki, "root"), pki.cert("root"))
    add_profile(services, "ca", key_uri=uri, tsa_url=pki.tsa_url)
    a = _agency(services)
    for level in LEVELS:
        before = snapshot(services)
        with pytest.raises(errors.ServiceError) as info:
            sign_document(services, a, profile_name="ca", pdf=make_pdf(), level=level, actor="t")
        assert (info.value.status, info.value.code) == (422, "SIGNER_CERT_IS_CA")
        assert_nothing_written(before, services)
    with pytest.raises(SignerCheckFailure) as failure:
        check_static(pki.cert("interm"))
    assert failure.value.reason == SignerCheckFailure.CA_CERTIFICATE


def _agency(services: Services, code: str = "000.00.12.H12") -> Agency:
    with services.db.transaction() as session:
        return session.scalars(select(Agency).where(Agency.code == code)).one()


# -- signers, two-step ---------------------------------------------------------------------------
def _start(
    api: Any, credentials: dict[str, Any], certificate: bytes, level: str, pdf: bytes | None = None
) -> Any:
    return api.post(
        "/v1/signatures/external",
        headers=auth(credentials),
        data={"profile": "agency-a-officer", "level": level},
        files={
            "file": ("to-trinh.pdf", pdf or make_pdf(), "application/pdf"),
            "certificate": ("cert.pem", certificate),
        },
    )


def _complete(api: Any, credentials: dict[str, Any], session: dict[str, Any], **body: str) -> Any:
    return api.post(session["complete_url"], headers=auth(credentials), json=body)


def _raw_signature(key: Any, session: dict[str, Any]) -> str:
    data = base64.b64decode(session["data_to_sign"])
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_signer_refused_when_two_step_signing_starts(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    signer = make_signer(services, kind, tmp_path)
    status, code = EXPECTED[kind]
    for level in ("B-B", "B-T"):
        before = snapshot(services)
        response = _start(api, credentials, signer.pem(), level)
        assert_refused(response, services, status, code)
        assert_nothing_written(before, services)


def test_signer_revoked_between_start_and_completion_is_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """The signer is checked again at completion. Its CRL (nextUpdate 2 s ahead) said "good" at
    the start; once that answer has expired, the new CRL lists it: neither the revocation
    cache nor the chain judgement may keep the old answer past its nextUpdate."""
    pki = services.dev_pki
    assert pki is not None
    revoked: list[int] = []
    served: list[datetime] = []

    def current_crl() -> bytes:
        served.append(datetime.now(UTC))
        return dev_crl(pki, revoked, next_update=timedelta(seconds=2))

    with WsgiServer(crl_app(current_crl)) as crls:
        cert, key = issue_under_dev(pki, "Cán bộ thử nghiệm", crl_url=f"{crls.url}/interm.crl")
        certificate = pem.armor("CERTIFICATE", cert.dump())
        started = _start(api, credentials, certificate, "B-B")
        assert started.status_code == 201, started.text
        session = started.json()
        assert len(served) == 1
        revoked.append(cert.serial_number)
        time.sleep(2.5)  # past the first CRL's nextUpdate
        before = snapshot(services)
        done = _complete(api, credentials, session, signature=_raw_signature(key, session))
        assert_refused(done, services, 422, "SIGNER_CERT_REVOKED")
        assert_nothing_written(before, services)
        assert len(served) == 2  # fetched again once the first answer had expired


# -- signers, remote signing (CSC), PKCS#11, the CLI, production ----------------------------------
@pytest.fixture
def csc_for(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Starts CSC provider stand-ins holding a given signer; yields a factory of key URIs."""
    from tests.support.csc_provider import ProviderServer, make_app

    servers: list[ProviderServer] = []
    monkeypatch.setenv("DUTIES_CSC_TOKEN", "duties-service-token")

    def start(signer: Signer) -> str:
        lock = threading.Lock()

        def sign(digest_info: bytes) -> bytes:
            with lock:
                return signer.sign_digest_info(digest_info)

        app = make_app(
            service_token="duties-service-token",
            credential_id="officer-1",
            officer_pin="135790",
            certificates=[c.dump() for c in signer.certs],
            sign=sign,
        )
        server = ProviderServer(app, free_port()).start()
        servers.append(server)
        return (
            f"csc:http://127.0.0.1:{server.port}/csc/v2?credential=officer-1"
            "&token-source=env:DUTIES_CSC_TOKEN"
        )

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_remote_signer_refused_at_every_level(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    tmp_path: Path,
    csc_for: Any,
    kind: str,
) -> None:
    assert services.dev_pki is not None
    signer = make_signer(services, kind, tmp_path)
    add_profile(services, "remote-bad", key_uri=csc_for(signer), tsa_url=services.dev_pki.tsa_url)
    status, code = EXPECTED[kind]
    for level in LEVELS:
        before = snapshot(services)
        response = api.post(
            "/v1/signatures",
            headers=auth(credentials),
            data={"profile": "remote-bad", "level": level, "authorization": "135790"},
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        )
        assert_refused(response, services, status, code)
        assert_nothing_written(before, services)


def test_remote_signer_control_signs(
    api: Any, services: Services, credentials: dict[str, Any], csc_for: Any
) -> None:
    """The same stand-in with a good certificate (of the dev intermediate, with a CRL) signs."""
    pki = services.dev_pki
    assert pki is not None
    crl = dev_crl(pki, next_update=timedelta(hours=1))
    with WsgiServer(crl_app(lambda: crl)) as crls:
        cert, key = issue_under_dev(pki, "Cán bộ ký từ xa", crl_url=f"{crls.url}/interm.crl")
        signer = Signer([cert, pki.cert("interm")], key, "")
        add_profile(services, "remote-good", key_uri=csc_for(signer), tsa_url=pki.tsa_url)
        response = api.post(
            "/v1/signatures",
            headers=auth(credentials),
            data={"profile": "remote-good", "level": "B-LTA", "authorization": "135790"},
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        )
    assert response.status_code == 201, response.text


def test_pkcs11_key_with_unknown_status_refused(
    services: Services, tmp_path: Path, hsm_key: Any
) -> None:
    """The HSM's key, certified by the dev intermediate with revocation sources on a closed
    port: signing through PKCS#11 is refused like any other key source."""
    if hsm_key is None or services.dev_hsm_key is None:
        pytest.skip("SoftHSM2 is not installed (make test installs it)")
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    pki = services.dev_pki
    assert pki is not None
    public = load_der_public_key(services.dev_hsm_key.public_key.dump())
    cert, _ = issue_under_dev(
        pki,
        "Sở Tư pháp tỉnh Demo A (HSM, không rõ trạng thái)",
        public_key=public,
        crl_url=closed_url("crl"),
        ocsp_url=closed_url("ocsp"),
    )
    cert_path = tmp_path / "hsm-unknown.cert.pem"
    cert_path.write_bytes(pem.armor("CERTIFICATE", cert.dump()))
    uri = services.dev_hsm_key.uri(cert_path, pki.cert_path("interm"))
    add_profile(services, "hsm-unknown", key_uri=uri, tsa_url=pki.tsa_url)
    a = _agency(services)
    for level in LEVELS:
        before = snapshot(services)
        with pytest.raises(errors.ServiceError) as info:
            sign_document(
                services, a, profile_name="hsm-unknown", pdf=make_pdf(), level=level, actor="t"
            )
        assert (info.value.status, info.value.code) == (503, "SIGNER_CERT_STATUS_UNKNOWN")
        assert info.value.headers["Retry-After"] == str(services.settings.retry_after_seconds)
        assert_nothing_written(before, services)


def test_cli_sign_refuses_a_revoked_signer(
    services: Services, tmp_path: Path, dev_pki: Any
) -> None:
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    pki, port = dev_pki
    add_profile(
        services, "cli-revoked", key_uri=f"file:{pki.p12_path('revoked-signer')}", level="B-B"
    )
    before = snapshot(services)
    src, out = tmp_path / "in.pdf", tmp_path / "out.pdf"
    src.write_bytes(make_pdf())
    env = {
        **os.environ,
        "SIGNING_SERVICE_DATA_DIR": str(services.settings.data_dir),
        "SIGNING_SERVICE_DATABASE_URL": services.settings.effective_database_url,
        "SIGNING_SERVICE_DEV_PKI_DIR": str(pki.directory),
        "SIGNING_SERVICE_DEV_PKI_PORT": str(port),
        "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(services.settings.softhsm_dir),
    }
    for level in LEVELS:
        result = subprocess.run(
            [
                *(sys.executable, "-m", "signing_service.cli", "sign", str(src), str(out)),
                *("--profile", "cli-revoked", "--level", level),
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=REPO,
        )
        assert result.returncode == 5, result.stderr
        assert "SIGNER_CERT_REVOKED" in result.stderr and "thu hồi" in result.stderr
        assert not out.exists()
        assert_nothing_written(before, services)


def test_production_refuses_a_signer_that_chains_to_nothing(tmp_path: Path) -> None:
    from signing_service.settings import Settings
    from signing_service.store.models import SigningProfile

    settings = Settings(
        mode="production",
        data_dir=tmp_path / "var",
        key_passphrase="s3cret-prod",
        database_url=f"sqlite:///{tmp_path}/m.db",
    )
    services = Services.build(settings)
    try:
        chain = issue_chain()
        uri = write_p12(
            tmp_path / "seal.p12",
            chain.leaf_private_key,
            chain.leaf,
            [chain.intermediate, chain.root],
            passphrase="s3cret-prod",
        )
        with services.db.transaction() as session:
            agency = Agency(code="000.00.12.H12", name="Sở Tư pháp")
            session.add(agency)
            session.flush()
            session.add(SigningProfile(agency_id=agency.id, name="seal", key_uri=uri, level="B-B"))
        a = _agency(services)
        before = snapshot(services)
        with pytest.raises(errors.ServiceError) as info:
            sign_document(services, a, profile_name="seal", pdf=make_pdf(), actor="t")
        assert (info.value.status, info.value.code) == (422, "SIGNER_CERT_UNTRUSTED")
        assert_nothing_written(before, services)
    finally:
        services.close()
