"""Duties before every signature that nothing can switch off (TT 15/2025 Art. 5; issue 9).

Signers: revoked (the dev PKI's revoked certificate, OCSP), untrusted (a throw-away root that is
not in the trust store), unknown status (a certificate of the dev intermediate whose OCSP
responder and CRL are on a closed port) are refused at B-B, B-T, B-LT and B-LTA, in one-step,
batch, two-step and remote (CSC) signing, PKCS#11 and the CLI, and nothing is written. Each is
registered the way the registry stores keys but without its checks: a key that passed them at
registration and has gone bad since, which is what the checks before every signature are for.

Timestamp servers (pyHanko's DummyTimeStamper made to misbehave, on loopback): self-signed,
SHA-1 signature, SHA-1 imprint, wrong imprint, wrong nonce, skewed clock, non-critical
timeStamping purpose, unknown revocation status: each refused with its own code, for signature
timestamps, B-LTA document timestamps and two-step completion, and nothing is written. The
operator configures that server by name (``SIGNING_SERVICE_TSAS``); profiles name it.
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
from asn1crypto import cms, pem
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, utils
from cryptography.hazmat.primitives.serialization import pkcs12
from sqlalchemy import select

from signing_service import errors
from signing_service._async import run_sync
from signing_service.pki.dev import DevPki
from signing_service.services.allowlists import DEV_PKCS11_MODULE, DEV_TSA
from signing_service.services.container import Services
from signing_service.services.keys import CscMaterial
from signing_service.services.signing import sign_document
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.store.models import Agency
from tests.conftest import make_settings
from tests.support.duties import (
    BAD_TSA_CODES,
    UNKNOWN_STATUS_TSA,
    BadTsa,
    WsgiServer,
    add_profile,
    crl_app,
    dev_crl,
    issue_under_dev,
    tsa_app,
    write_p12,
)
from tests.support.keys import (
    register,
    store_officer_without_checks,
    store_reference_without_checks,
    store_without_checks,
)
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.support.state import assert_nothing_written, snapshot
from tests.support.testpki import issue_chain, to_asn1

LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
# The operator's names for the misbehaving servers the tests run (SIGNING_SERVICE_TSAS,
# SIGNING_SERVICE_CSC_PROVIDERS).
TEST_TSA = "thu-nghiem"
PROVIDER = "tu-xa-thu-nghiem"
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
    """A bad signer: its certificate chain (signer first), private key and PKCS#12 file."""

    def __init__(self, certs: list[Any], key: Any, p12: Path | None = None) -> None:
        self.certs = certs
        self.key = key
        self.p12 = p12

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
        return Signer([to_asn1(c) for c in (cert, *extra)], private, path)
    if kind == "untrusted":
        chain = issue_chain()
        path = write_p12(
            directory / "untrusted.p12", chain.leaf_private_key, chain.leaf, [chain.intermediate]
        )
        return Signer([chain.leaf, chain.intermediate], chain.leaf_private_key, path)
    assert kind == "unknown"
    cert, private = issue_under_dev(
        pki,
        "Trạng thái không rõ (thử nghiệm)",
        crl_url=closed_url("crl"),
        ocsp_url=closed_url("ocsp"),
    )
    path = write_p12(directory / "unknown.p12", private, cert, [pki.cert("interm")])
    return Signer([cert, pki.cert("interm")], private, path)


def register_p12(services: Services, name: str, signer: Signer) -> str:
    """Register the signer's PKCS#12 for agency A as the registry stores it (without checks)."""
    assert signer.p12 is not None
    store_without_checks(services, name, signer.p12)
    return name


# -- the operator's configuration: the tests' own TSA and remote signing provider ---------------
@pytest.fixture
def tsa_server(dev_pki: tuple[DevPki, int]) -> Iterator[dict[str, Any]]:
    """A timestamp server on loopback, configured by the operator as TSA :data:`TEST_TSA` (see
    :func:`services`). It answers as ``state["tsa"]`` (a :class:`BadTsa` the test sets) and
    counts those requests (``state["requests"]``), or as ``state["app"]`` (any WSGI app) when
    the test sets one."""
    pki, _ = dev_pki
    state: dict[str, Any] = {"tsa": BadTsa(pki, "good"), "requests": 0, "app": None}

    def current() -> BadTsa:
        state["requests"] += 1
        tsa: BadTsa = state["tsa"]
        return tsa

    answer_as_tsa = tsa_app(current)

    def app(environ: dict[str, Any], start_response: Any) -> Any:
        return (state["app"] or answer_as_tsa)(environ, start_response)

    with WsgiServer(app) as server:
        state["url"] = f"{server.url}/tsa"
        yield state


@pytest.fixture
def remote(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A CSC provider stand-in on loopback, configured by the operator as :data:`PROVIDER`;
    its one credential ``officer-1`` holds the signer given to ``state["hold"]`` (its
    certificates and key)."""
    from tests.support.csc_provider import ProviderServer, make_app

    monkeypatch.setenv("DUTIES_CSC_TOKEN", "duties-service-token")
    held: list[Signer] = []
    certificates: list[bytes] = []
    lock = threading.Lock()

    def sign(digest_info: bytes) -> bytes:
        with lock:
            return held[0].sign_digest_info(digest_info)

    def hold(signer: Signer) -> None:
        held[:] = [signer]
        certificates[:] = [c.dump() for c in signer.certs]  # what credentials/info lists

    app = make_app(
        service_token="duties-service-token",
        credential_id="officer-1",
        officer_pin="135790",
        certificates=certificates,
        sign=sign,
    )
    server = ProviderServer(app, free_port()).start()
    try:
        yield {
            "entry": {
                "url": f"http://127.0.0.1:{server.port}/csc/v2",
                "token_source": "env:DUTIES_CSC_TOKEN",
            },
            "hold": hold,
        }
    finally:
        server.stop()


@pytest.fixture
def services(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    database_url: str,
    dev_pki: tuple[DevPki, int],
) -> Iterator[Services]:
    """The services as tests/conftest.py builds them, with what the operator configures for
    the servers the test runs: TSA :data:`TEST_TSA` when it uses :func:`tsa_server`, provider
    :data:`PROVIDER` when it uses :func:`remote`. The dev PKI's TSA stays the default."""
    overrides: dict[str, Any] = {"default_tsa": DEV_TSA}
    if "tsa_server" in request.fixturenames:
        overrides["tsas"] = {TEST_TSA: request.getfixturevalue("tsa_server")["url"]}
    if "remote" in request.fixturenames:
        overrides["csc_providers"] = {PROVIDER: request.getfixturevalue("remote")["entry"]}
    built = Services.build(make_settings(tmp_path, database_url, dev_pki, **overrides))
    yield built
    built.close()


# -- signers, one-step and batch ----------------------------------------------------------------
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_signer_refused_at_every_level_one_step_and_batch(
    api: Any, services: Services, credentials: dict[str, Any], tmp_path: Path, kind: str
) -> None:
    assert services.dev_pki is not None
    signer = make_signer(services, kind, tmp_path)
    add_profile(services, "bad", key=register_p12(services, f"xau-{kind}", signer), tsa=DEV_TSA)
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
    add_profile(services, "good", key="agency-a-seal", tsa=DEV_TSA)
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
    store_without_checks(
        services, "ca", write_p12(tmp_path / "root.p12", dev_key(pki, "root"), pki.cert("root"))
    )
    add_profile(services, "ca", key="ca", tsa=DEV_TSA)
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
    # The agency's officer (any registered officer may use the profile), gone bad since.
    store_officer_without_checks(services, f"can-bo-{kind}", signer.pem())
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
        store_officer_without_checks(services, "can-bo-thu-nghiem", certificate)
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
@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_bad_remote_signer_refused_at_every_level(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    tmp_path: Path,
    remote: dict[str, Any],
    kind: str,
) -> None:
    signer = make_signer(services, kind, tmp_path)
    remote["hold"](signer)
    store_reference_without_checks(
        services,
        "tu-xa-xau",
        "csc",
        signer.pem(),
        {"provider": PROVIDER, "credential": "officer-1"},
    )
    add_profile(services, "remote-bad", key="tu-xa-xau", tsa=DEV_TSA)
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
    api: Any, services: Services, credentials: dict[str, Any], remote: dict[str, Any]
) -> None:
    """The same stand-in with a good certificate (of the dev intermediate, with a CRL),
    registered with every check, signs."""
    pki = services.dev_pki
    assert pki is not None
    crl = dev_crl(pki, next_update=timedelta(hours=1))
    with WsgiServer(crl_app(lambda: crl)) as crls:
        cert, key = issue_under_dev(pki, "Cán bộ ký từ xa", crl_url=f"{crls.url}/interm.crl")
        remote["hold"](Signer([cert, pki.cert("interm")], key))
        register(services, "tu-xa-tot", CscMaterial(PROVIDER, "officer-1"))
        add_profile(services, "remote-good", key="tu-xa-tot", tsa=DEV_TSA)
        response = api.post(
            "/v1/signatures",
            headers=auth(credentials),
            data={"profile": "remote-good", "level": "B-LTA", "authorization": "135790"},
            files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        )
    assert response.status_code == 201, response.text


def test_pkcs11_key_with_unknown_status_refused(services: Services, hsm_key: Any) -> None:
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
    hsm = services.dev_hsm_key
    store_reference_without_checks(
        services,
        "hsm-unknown",
        "pkcs11",
        pem.armor("CERTIFICATE", cert.dump()) + pki.cert_path("interm").read_bytes(),
        {"module": DEV_PKCS11_MODULE, "token": hsm.token, "object": hsm.key_label},
        secret=hsm.pin_file.read_text().strip().encode(),
    )
    add_profile(services, "hsm-unknown", key="hsm-unknown", tsa=DEV_TSA)
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
    store_without_checks(services, "cli-revoked", pki.p12_path("revoked-signer"))
    add_profile(services, "cli-revoked", key="cli-revoked", level="B-B")
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
    """No dev PKI, no trust anchor the seal chains to: refused before it signs."""
    from signing_service.settings import Settings

    settings = Settings(
        mode="production",
        data_dir=tmp_path / "var",
        key_passphrase="s3cret-prod",
        key_store_secret="s3cret-prod-key-store-" + "k" * 16,
        audit_key="s3cret-prod-audit-key-" + "a" * 16,
        database_url=f"sqlite:///{tmp_path}/m.db",
    )
    services = Services.build(settings)
    try:
        chain = issue_chain()
        path = write_p12(
            tmp_path / "seal.p12",
            chain.leaf_private_key,
            chain.leaf,
            [chain.intermediate, chain.root],
        )
        with services.db.transaction() as session:
            session.add(Agency(code="000.00.12.H12", name="Sở Tư pháp"))
        store_without_checks(services, "seal", path)
        add_profile(services, "seal", key="seal")
        a = _agency(services)
        before = snapshot(services)
        with pytest.raises(errors.ServiceError) as info:
            sign_document(services, a, profile_name="seal", pdf=make_pdf(), actor="t")
        assert (info.value.status, info.value.code) == (422, "SIGNER_CERT_UNTRUSTED")
        assert_nothing_written(before, services)
    finally:
        services.close()


# -- timestamp tokens (the TSA: tsa_server, configured by the operator as TEST_TSA) ------------
def _sign_api(api: Any, credentials: dict[str, Any], profile: str, level: str) -> Any:
    return api.post(
        "/v1/signatures",
        headers=auth(credentials),
        data={"profile": profile, "level": level},
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
    )


@pytest.mark.parametrize("mode", sorted(BAD_TSA_CODES))
def test_bad_timestamp_refused_at_every_timestamped_level(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    tsa_server: dict[str, Any],
    mode: str,
) -> None:
    """The issue's cases: a SHA-1 or self-signed TSA gave 201 "B-T"; B-LTA with an untrusted
    TSA gave 500. Each bad answer has its code (502: the upstream server answered wrongly)."""
    assert services.dev_pki is not None
    tsa_server["tsa"] = BadTsa(services.dev_pki, mode)
    add_profile(services, "tsa-bad", key="agency-a-seal", tsa=TEST_TSA)
    for level in ("B-T", "B-LT", "B-LTA"):
        before = snapshot(services)
        response = _sign_api(api, credentials, "tsa-bad", level)
        assert_refused(response, services, 502, BAD_TSA_CODES[mode])
        assert_nothing_written(before, services)
    assert tsa_server["requests"] >= 3
    # Batch: the same refusal for each document, none stored.
    before = snapshot(services)
    response = api.post(
        "/v1/signatures/batch",
        headers=auth(credentials),
        data={"profile": "tsa-bad", "level": "B-T"},
        files=[("files", (f"{i}.pdf", make_pdf(), "application/pdf")) for i in range(2)],
    )
    if response.status_code == 200:  # per-document results
        body = response.json()
        assert body["signed"] == 0
        assert {r["error"]["code"] for r in body["results"]} == {BAD_TSA_CODES[mode]}
    else:  # all-or-nothing batches refuse the request whole
        assert_refused(response, services, 502, BAD_TSA_CODES[mode])
    assert_nothing_written(before, services)


def test_good_test_tsa_is_accepted(
    api: Any, services: Services, credentials: dict[str, Any], tsa_server: dict[str, Any]
) -> None:
    """The control: the same test TSA answering correctly (dev TSA key) gives signatures."""
    add_profile(services, "tsa-good", key="agency-a-seal", tsa=TEST_TSA)
    for level in ("B-T", "B-LTA"):
        response = _sign_api(api, credentials, "tsa-good", level)
        assert response.status_code == 201, response.text


def test_tsa_with_unknown_revocation_status_is_503(
    api: Any, services: Services, credentials: dict[str, Any], tsa_server: dict[str, Any]
) -> None:
    assert services.dev_pki is not None
    tsa_server["tsa"] = BadTsa(services.dev_pki, UNKNOWN_STATUS_TSA)
    add_profile(services, "tsa-unknown", key="agency-a-seal", tsa=TEST_TSA)
    for level in ("B-T", "B-LTA"):
        before = snapshot(services)
        response = _sign_api(api, credentials, "tsa-unknown", level)
        assert_refused(response, services, 503, "TIMESTAMP_TSA_STATUS_UNKNOWN")
        assert_nothing_written(before, services)


def _raw_tsa(body: bytes) -> Any:
    def app(_environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "application/timestamp-reply")])
        return [body]

    return app


def _deep_answer(depth: int = 5_000) -> bytes:
    """A TimeStampResp-shaped answer nested ``depth`` SEQUENCEs deep (asn1crypto parses
    recursively: a RecursionError, or gigabytes, before the shape check)."""
    from tests.test_revinfo_hostile import _nested, _tlv

    return _tlv(0x30, _nested(depth))


@pytest.mark.parametrize(
    ("answer", "status", "code"),
    [
        (b"\x30\x03\x02\x01", 502, "TIMESTAMP_INVALID"),  # truncated DER
        (b"<html>rac</html>", 502, "TIMESTAMP_INVALID"),
        (_deep_answer(), 502, "TIMESTAMP_INVALID"),
        # PKIStatusInfo "rejection" (2), no token: the server declined; perhaps temporarily.
        (bytes.fromhex("300530030201 02".replace(" ", "")), 503, "TIMESTAMP_UNAVAILABLE"),
        # "granted" (0) without a token.
        (bytes.fromhex("3005300302 0100".replace(" ", "")), 502, "TIMESTAMP_INVALID"),
    ],
)
def test_unreadable_or_refused_timestamp_answers(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    tsa_server: dict[str, Any],
    answer: bytes,
    status: int,
    code: str,
) -> None:
    tsa_server["app"] = _raw_tsa(answer)
    add_profile(services, "tsa-raw", key="agency-a-seal", tsa=TEST_TSA)
    before = snapshot(services)
    response = _sign_api(api, credentials, "tsa-raw", "B-T")
    assert_refused(response, services, status, code)
    assert_nothing_written(before, services)


def test_bad_document_timestamp_refused(
    api: Any, services: Services, credentials: dict[str, Any], tsa_server: dict[str, Any]
) -> None:
    """B-LTA whose signature timestamp is good but whose document timestamp comes from a
    self-signed TSA: refused (the issue: 500), nothing stored."""
    pki = services.dev_pki
    assert pki is not None
    good, bad = BadTsa(pki, "good"), BadTsa(pki, "self_signed")
    answered = {"n": 0}

    def switch_after_signature_timestamp() -> BadTsa:
        # 1: the sizing request, 2: the signature timestamp; then the document timestamp.
        answered["n"] += 1
        return good if answered["n"] <= 2 else bad

    tsa_server["app"] = tsa_app(switch_after_signature_timestamp)
    add_profile(services, "lta", key="agency-a-seal", tsa=TEST_TSA)
    before = snapshot(services)
    response = _sign_api(api, credentials, "lta", "B-LTA")
    assert answered["n"] == 3
    assert_refused(response, services, 502, "TIMESTAMP_UNTRUSTED")
    assert_nothing_written(before, services)


# -- timestamp tokens, two-step ------------------------------------------------------------------
def _officer(services: Services) -> tuple[bytes, Any]:
    pki = services.dev_pki
    assert pki is not None
    private, _, _ = pkcs12.load_key_and_certificates(
        pki.p12_path("officer").read_bytes(), DEV_KEY_PASSPHRASE.encode()
    )
    return pki.cert_path("officer").read_bytes(), private


def _officer_profile_tsa(services: Services, name: str) -> None:
    """The demo officer profile uses the operator's TSA ``name`` (as its administrator may
    choose)."""
    from sqlalchemy import update

    from signing_service.store.models import SigningProfile

    with services.db.transaction() as session:
        session.execute(
            update(SigningProfile).where(SigningProfile.name == "agency-a-officer").values(tsa=name)
        )


@pytest.mark.parametrize("mode", ["self_signed", "sha1_signature", "wrong_imprint", "skewed"])
def test_bad_timestamp_refused_at_two_step_completion(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    tsa_server: dict[str, Any],
    mode: str,
) -> None:
    """The TSA answers well while the session is prepared, badly when the signature is
    completed: refused, nothing stored; the session stays usable once the TSA is fixed."""
    assert services.dev_pki is not None
    _officer_profile_tsa(services, TEST_TSA)
    certificate, key = _officer(services)
    started = _start(api, credentials, certificate, "B-T")
    assert started.status_code == 201, started.text
    session = started.json()
    tsa_server["tsa"] = BadTsa(services.dev_pki, mode)
    before = snapshot(services)
    signature = _raw_signature(key, session)
    done = _complete(api, credentials, session, signature=signature)
    assert_refused(done, services, 502, BAD_TSA_CODES[mode])
    assert_nothing_written(before, services)
    tsa_server["tsa"] = BadTsa(services.dev_pki, "good")
    done = _complete(api, credentials, session, signature=signature)
    assert done.status_code == 201, done.text


def test_bad_tsa_refused_when_two_step_signing_starts(
    api: Any, services: Services, credentials: dict[str, Any], tsa_server: dict[str, Any]
) -> None:
    """Its first token (sizing the reservation) is checked too: no session for a bad TSA."""
    assert services.dev_pki is not None
    _officer_profile_tsa(services, TEST_TSA)
    tsa_server["tsa"] = BadTsa(services.dev_pki, "sha1_imprint")
    certificate, _ = _officer(services)
    before = snapshot(services)
    response = _start(api, credentials, certificate, "B-T")
    assert_refused(response, services, 502, "TIMESTAMP_WEAK_ALGORITHM")
    assert_nothing_written(before, services)


def _client_cms(services: Services, session: dict[str, Any], timestamper: Any = None) -> str:
    """A complete CMS built by the client (with its own timestamp from ``timestamper``), with
    the officer's own key (pyHanko's signer, as client software would use)."""
    from pyhanko.sign.signers import SimpleSigner

    assert services.dev_pki is not None
    signer = SimpleSigner.load_pkcs12(
        services.dev_pki.p12_path("officer"), passphrase=DEV_KEY_PASSPHRASE.encode()
    )
    assert signer is not None
    attrs = cms.CMSAttributes.load(base64.b64decode(session["data_to_sign"]))
    ci = run_sync(signer.async_sign_prescribed_attributes("sha256", attrs, timestamper=timestamper))
    return base64.b64encode(ci.dump()).decode()


@pytest.mark.parametrize("mode", ["self_signed", "sha1_signature", "skewed"])
def test_client_cms_with_a_bad_timestamp_is_refused(
    api: Any, services: Services, credentials: dict[str, Any], mode: str
) -> None:
    """A client's own signature timestamp is checked like ours before it is stored (422: the
    client sent it; ``details.code`` says which check failed)."""
    assert services.dev_pki is not None
    certificate, _ = _officer(services)
    session = _start(api, credentials, certificate, "B-T").json()
    signature_cms = _client_cms(services, session, BadTsa(services.dev_pki, mode))
    before = snapshot(services)
    done = _complete(api, credentials, session, cms=signature_cms)
    assert_refused(done, services, 422, "EXTERNAL_TIMESTAMP_REFUSED")
    assert done.json()["details"]["code"] == BAD_TSA_CODES[mode]
    assert_nothing_written(before, services)


def test_client_cms_with_a_good_timestamp_or_none_is_b_t(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """A client CMS with a good token keeps it; one without gets the service's (checked), so a
    "B-T" document always has a signature timestamp."""
    assert services.dev_pki is not None
    certificate, _ = _officer(services)
    for timestamper in (BadTsa(services.dev_pki, "good"), None):
        session = _start(api, credentials, certificate, "B-T").json()
        done = _complete(api, credentials, session, cms=_client_cms(services, session, timestamper))
        assert done.status_code == 201, done.text
        signed = api.get(done.json()["document"]["download_url"], headers=auth(credentials))
        report = api.post("/v1/verifications", files={"file": ("s.pdf", signed.content)}).json()
        assert report["verdict"] == "TOTAL_PASSED", report
        signature = report["signatures"][0]
        assert signature["level"] == "B-T"
        assert signature["checks"]["timestamp"]["status"] == "PASSED"


# -- the fast path -------------------------------------------------------------------------------
def test_chains_are_judged_once_per_certificate_while_their_answers_are_valid(
    services: Services,
) -> None:
    """Ten B-T signatures: the seal's chain and the TSA's chain are each validated once (their
    OCSP/CRL answers are valid for longer than the test), every token is still checked."""
    a = _agency(services)
    # Registering the demo keys judged their chains already: start from nothing judged.
    signers, tsas = services.checker.chains, services.token_checker.chains
    signers.clear()
    tsas.clear()
    before = (signers.validations, tsas.validations)
    for _ in range(10):
        sign_document(
            services, a, profile_name="agency-a-seal", pdf=make_pdf(), level="B-T", actor="t"
        )
    assert (signers.validations - before[0], tsas.validations - before[1]) == (1, 1)


def test_client_cms_with_a_token_in_another_unsigned_attribute_is_refused(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Red team: a good signature timestamp plus a self-signed token in an archive-timestamp
    attribute (id-aa-ets-archiveTimestampV2) was stored unchecked. Only the signature
    timestamp (checked) may be carried unsigned."""
    assert services.dev_pki is not None
    certificate, _ = _officer(services)
    session = _start(api, credentials, certificate, "B-T").json()
    good = cms.ContentInfo.load(
        base64.b64decode(_client_cms(services, session, BadTsa(services.dev_pki, "good")))
    )
    bad = cms.ContentInfo.load(
        base64.b64decode(_client_cms(services, session, BadTsa(services.dev_pki, "self_signed")))
    )
    bad_token = bad["content"]["signer_infos"][0]["unsigned_attrs"][0]["values"][0]
    info = good["content"]["signer_infos"][0]
    attrs = list(info["unsigned_attrs"])
    attrs.append(
        cms.CMSAttribute(
            {"type": cms.CMSAttributeType("1.2.840.113549.1.9.16.2.48"), "values": [bad_token]}
        )
    )
    info["unsigned_attrs"] = cms.CMSAttributes(attrs)
    forged = base64.b64encode(good.dump(force=True)).decode()
    before = snapshot(services)
    done = _complete(api, credentials, session, cms=forged)
    assert (done.status_code, done.json()["code"]) == (422, "EXTERNAL_CMS_INVALID"), done.text
    assert done.json()["details"]["unsigned_attributes"] == ["1.2.840.113549.1.9.16.2.48"]
    assert_nothing_written(before, services)
