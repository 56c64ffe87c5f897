from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from signing_service.pki.dev import DevPki, DevPkiServer, init_dev_pki
from signing_service.pki.softhsm import SoftHsm, TokenKey
from signing_service.services.container import DEV_HSM_KEY, DEV_HSM_TOKEN, Services
from signing_service.settings import DEV_KEY_PASSPHRASE, Settings
from tests.support.clamd import Clamd, find_clamd
from tests.support.minio_server import MinioServer, find_binary
from tests.support.postgres import PostgresServer, find_bindir, free_port

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "pdf-corpus"


# The servers the tests start (hundreds, in-process and as `serve`) do not start their
# verification workers ahead of use (~2 s of CPU each); tests/test_verification_pool.py turns
# it on where the start itself is tested. Set before any Settings is read; inherited by the
# `serve` processes.
os.environ.setdefault("SIGNING_SERVICE_VERIFICATION_PREWARM", "0")

SOFTHSM_DIR: Path | None = None


@pytest.fixture(scope="session")
def softhsm(tmp_path_factory: pytest.TempPathFactory) -> SoftHsm | None:
    """Real SoftHSM2 tokens (Debian's softhsm2) for the tests."""
    global SOFTHSM_DIR
    directory = tmp_path_factory.mktemp("softhsm")
    hsm = SoftHsm.available(directory)
    if hsm is None:
        if os.environ.get("SIGNING_SERVICE_TEST_REQUIRE_SOFTHSM") == "1":
            pytest.fail("SoftHSM2 is required (make test installs it) but was not found")
        return None
    SOFTHSM_DIR = directory
    return hsm


@pytest.fixture(scope="session")
def hsm_key(softhsm: SoftHsm | None) -> TokenKey | None:
    """The demo seal key, generated on its token."""
    return softhsm.ensure_key(DEV_HSM_TOKEN, DEV_HSM_KEY) if softhsm else None


@pytest.fixture(scope="session")
def remote_key(softhsm: SoftHsm | None) -> TokenKey | None:
    """The officer's key inside the remote-signing provider stand-in (its own token)."""
    return softhsm.ensure_key("csc-provider", "officer") if softhsm else None


@pytest.fixture(scope="session")
def dev_pki(
    tmp_path_factory: pytest.TempPathFactory,
    hsm_key: TokenKey | None,
    remote_key: TokenKey | None,
) -> Iterator[tuple[DevPki, int]]:
    """The certomancer dev PKI, serving real TSA/OCSP/CRL responses on loopback."""
    port = free_port()
    directory = tmp_path_factory.mktemp("pki")
    pki = init_dev_pki(
        directory,
        REPO / "certs/dev/certomancer.yml",
        f"http://127.0.0.1:{port}",
        DEV_KEY_PASSPHRASE.encode(),
        hsm_public_key=hsm_key.public_key if hsm_key else None,
        remote_public_key=remote_key.public_key if remote_key else None,
    )
    server = DevPkiServer(pki, "127.0.0.1", port).start()
    _SESSION_PKI_STATE.append((directory / "state.json", (directory / "state.json").read_bytes()))
    yield pki, port
    server.stop()


# The session dev PKI's state.json as issued. A test that runs the CLI against the session PKI
# with another port re-issues it (new serials): every later test in the run then fails on
# revocation and certificate comparisons, far from the cause (CI, serial order, 2026-11-30).
_SESSION_PKI_STATE: list[tuple[Path, bytes]] = []


@pytest.fixture(autouse=True)
def _session_pki_left_as_issued() -> Iterator[None]:
    """Fails the test that re-issued the session dev PKI, at its own teardown."""
    yield
    for i, (state, issued) in enumerate(_SESSION_PKI_STATE):
        now = state.read_bytes()
        if now != issued:
            _SESSION_PKI_STATE[i] = (state, now)  # blamed once, here
            pytest.fail(
                "this test re-issued the session dev PKI (state.json changed): give the CLI "
                "a copy of the PKI (or the session port) when it runs against another port"
            )


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresServer | None]:
    bindir = find_bindir()
    if bindir is None:
        if os.environ.get("SIGNING_SERVICE_TEST_REQUIRE_POSTGRES") == "1":
            pytest.fail("PostgreSQL is required (make test installs it) but was not found")
        yield None
        return
    server = PostgresServer(bindir).start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def minio_server() -> Iterator[MinioServer | None]:
    """A real MinIO (built by ``make minio``), four erasure-coded drives on loopback."""
    binary = find_binary()
    if binary is None:
        if os.environ.get("SIGNING_SERVICE_TEST_REQUIRE_MINIO") == "1":
            pytest.fail("MinIO is required but its binary was not found (run `make minio`)")
        yield None
        return
    server = MinioServer(binary).start()
    yield server
    server.stop()


def minio_or_skip(request: pytest.FixtureRequest) -> MinioServer:
    server: MinioServer | None = request.getfixturevalue("minio_server")
    if server is None:
        pytest.skip("MinIO binary not built (make test builds it with `make minio`)")
    return server


@pytest.fixture(scope="session")
def clamd() -> Iterator[Clamd]:
    """A real clamd (Debian's clamav-daemon) with a database holding the EICAR signature."""
    binary = find_clamd()
    if binary is None:
        if os.environ.get("SIGNING_SERVICE_TEST_REQUIRE_CLAMD") == "1":
            pytest.fail("clamd is required (make test installs clamav-daemon) but was not found")
        pytest.skip("clamd not installed (make test installs clamav-daemon)")
    server = Clamd(binary).start()
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metadata.db'}"
    server: PostgresServer | None = request.getfixturevalue("postgres")
    if server is None:
        pytest.skip("PostgreSQL binaries not installed (run `make test`, which installs them)")
    return server.create_database(f"t_{uuid.uuid4().hex[:12]}")


def make_settings(
    tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int], **overrides: Any
) -> Settings:
    pki, port = dev_pki
    values: dict[str, Any] = {
        "mode": "development",
        "data_dir": tmp_path / "var",
        "database_url": database_url,
        "dev_pki_dir": pki.directory,
        "dev_pki_port": port,
        # The session's token; without SoftHSM2, an empty per-test directory (no HSM profile).
        "dev_softhsm_dir": SOFTHSM_DIR or tmp_path / "no-softhsm",
        "fetch_timeout_seconds": 3.0,
        # The in-process client is one "client": tests that verify many files would meet the
        # public rate limit; the tests of the limit itself set it (tests/test_public_lane.py).
        "public_rate_per_minute": 0,
        "max_anonymous_requests_per_client": 0,
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def services(tmp_path: Path, database_url: str, dev_pki: tuple[DevPki, int]) -> Iterator[Services]:
    built = Services.build(make_settings(tmp_path, database_url, dev_pki))
    yield built
    built.close()


@pytest.fixture
def credentials(services: Services) -> dict[str, Any]:
    return json.loads(services.settings.dev_credentials_file.read_text())


@pytest.fixture
def api(services: Services) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from signing_service.api.app import create_app

    with TestClient(create_app(services), raise_server_exceptions=False) as client:
        yield client


CSC_TOKEN_ENV = "CSC_TEST_SERVICE_TOKEN"
CSC_OFFICER_PIN = "246810"


@pytest.fixture(scope="session")
def csc_provider(
    dev_pki: tuple[DevPki, int], remote_key: TokenKey | None
) -> Iterator[dict[str, str]]:
    """The CSC API v2 provider stand-in on loopback; yields its entry for the operator's
    ``SIGNING_SERVICE_CSC_PROVIDERS`` (base URL, token source). Its one credential is
    ``officer-1`` (Trần Thị Bình, PIN ``CSC_OFFICER_PIN``)."""
    import secrets
    import threading

    import pkcs11
    from pkcs11 import Attribute, Mechanism, ObjectClass

    from tests.support.csc_provider import ProviderServer, make_app

    if remote_key is None:
        pytest.skip("SoftHSM2 is not installed (make test installs it)")
    pki, _ = dev_pki
    lib = pkcs11.lib(remote_key.module)
    session = lib.get_token(token_label=remote_key.token).open(
        user_pin=remote_key.pin_file.read_text().strip()
    )
    private = next(
        session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: remote_key.key_label}
        )
    )
    lock = threading.Lock()

    def sign(digest_info: bytes) -> bytes:
        with lock:
            return bytes(private.sign(digest_info, mechanism=Mechanism.RSA_PKCS))

    token = secrets.token_urlsafe(16)
    os.environ[CSC_TOKEN_ENV] = token
    app = make_app(
        service_token=token,
        credential_id="officer-1",
        officer_pin=CSC_OFFICER_PIN,
        certificates=[pki.cert("officer-remote").dump(), pki.cert("interm").dump()],
        sign=sign,
    )
    server = ProviderServer(app, free_port()).start()
    yield {"url": f"http://127.0.0.1:{server.port}/csc/v2", "token_source": f"env:{CSC_TOKEN_ENV}"}
    server.stop()
    session.close()
