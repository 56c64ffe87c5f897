"""The image and the compose file (issue 13, item 4).

Checked always: docker/compose.yaml against the compose-spec JSON schema (compose-go v2.16.2's
``schema/compose-spec.json``, from the Go module proxy, kept as docker/compose-spec.json) and
what the issue found wrong with the old one (the service started before PostgreSQL was ready,
``trust`` authentication, no MinIO or clamd, no migration step); the Dockerfile's user, data
directory, HEALTHCHECK and CMD against what exists (the healthcheck script against a real
replica is in tests/test_scale_out.py).

Built and run when podman works here (slow): no registry is reachable, so the base is Debian 12
made with debootstrap from the Debian mirror (cached), imported into podman; the image is built
from docker/Dockerfile, started in production mode against the session's PostgreSQL, and
checked: ready, healthy by its own HEALTHCHECK, running as its non-root user, the CLI on PATH,
its data directory its own and the application read-only to it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import yaml

from tests.support.cluster import lane_port
from tests.support.postgres import PostgresServer

REPO = Path(__file__).resolve().parent.parent
DOCKER = REPO / "docker"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "signing-service"
BASE_TAR = CACHE / "debian-bookworm-minbase.tar"
BASE_IMAGE = "localhost/signing-service-base:bookworm"
IMAGE = "localhost/signing-service:test"


def compose() -> dict[str, Any]:
    return dict(yaml.safe_load((DOCKER / "compose.yaml").read_text()))


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of docker/Dockerfile, continuation lines joined, comments out."""
    lines: list[str] = []
    current = ""
    for raw in (DOCKER / "Dockerfile").read_text().splitlines():
        if raw.lstrip().startswith("#") or not raw.strip():
            continue
        current += raw.rstrip().removesuffix("\\") + " "
        if not raw.rstrip().endswith("\\"):
            lines.append(current.strip())
            current = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_compose_matches_the_compose_spec_schema() -> None:
    schema = json.loads((DOCKER / "compose-spec.json").read_text())
    jsonschema.validate(compose(), schema)
    # The schema is not a formality: a misspelt key is refused.
    broken = compose()
    broken["services"]["postgres"]["healthcheck"]["intervall"] = "5s"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(broken, schema)


def test_compose_starts_things_in_order_with_passwords() -> None:
    services = compose()["services"]
    assert {"postgres", "minio", "clamd", "migrate", "signing-service"} <= set(services)
    pg = services["postgres"]
    assert "healthcheck" in pg
    assert "POSTGRES_HOST_AUTH_METHOD" not in pg["environment"]  # was "trust"
    assert pg["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    assert "scram-sha-256" in pg["environment"]["POSTGRES_INITDB_ARGS"]
    assert services["migrate"]["command"] == ["signing-service", "migrate"]
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["signing-service"]["depends_on"] == {
        "postgres": {"condition": "service_healthy"},
        "minio": {"condition": "service_healthy"},
        "clamd": {"condition": "service_healthy"},
        "migrate": {"condition": "service_completed_successfully"},
    }
    env = services["signing-service"]["environment"]
    # Every secret from the environment, refused when unset; none written in the file.
    for name in ("SIGNING_SERVICE_AUDIT_KEY", "SIGNING_SERVICE_KEY_STORE_SECRET"):
        assert env[name] == f"${{{name}:?set {name}}}"
    assert "${POSTGRES_PASSWORD:?" in env["SIGNING_SERVICE_DATABASE_URL"]
    assert "${MINIO_ROOT_PASSWORD:?" in env["SIGNING_SERVICE_STORAGE_URL"]
    assert env["SIGNING_SERVICE_CLAMD_ADDRESS"] == "tcp://clamd:3310"
    # What the service waits for says when it is healthy (the service's is in its image).
    for name in ("postgres", "minio", "clamd"):
        assert services[name]["healthcheck"]["test"][0] == "CMD"


def test_compose_values_are_settings_the_service_accepts() -> None:
    """The compose environment, its variables filled in, passes the service's own settings
    check in production mode (so `docker compose up` does not exit 6)."""
    env = dict(compose()["services"]["signing-service"]["environment"])
    filled = {
        "POSTGRES_PASSWORD": secrets.token_hex(12),
        "MINIO_ROOT_USER": "minio-" + secrets.token_hex(4),
        "MINIO_ROOT_PASSWORD": secrets.token_hex(16),
        "SIGNING_SERVICE_AUDIT_KEY": secrets.token_hex(32),
        "SIGNING_SERVICE_KEY_STORE_SECRET": secrets.token_hex(32),
    }

    def fill(value: str) -> str:
        return re.sub(
            r"\$\{(\w+)(?::[?-]([^}]*))?\}",
            lambda m: filled.get(m.group(1), m.group(2) if "-" in m.group(0) else ""),
            value,
        )

    settings_env = {k: fill(str(v)) for k, v in env.items()}
    settings_env["SIGNING_SERVICE_MODE"] = "production"
    code = (
        "import sys; from signing_service.settings import Settings; "
        "problems = Settings().check_production(); print(problems, file=sys.stderr); "
        "sys.exit(1 if problems else 0)"
    )
    result = subprocess.run(
        [str(REPO / ".venv/bin/python"), "-c", code],
        env={"PATH": os.environ["PATH"], **settings_env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_dockerfile_user_data_dir_healthcheck_and_cmd() -> None:
    steps = dockerfile_instructions()
    users = [args for op, args in steps if op == "USER"]
    assert users == ["signing"]
    run = " ".join(args for op, args in steps if op == "RUN")
    # The user exists, is not root, and owns its data directory (the old image could not
    # create it); the data directory is the one the service is told to use.
    assert re.search(r"useradd [^&]*--uid 10001 [^&]*signing", run)
    assert "install -d -o signing -g signing -m 0700 /srv/data" in run
    env = " ".join(args for op, args in steps if op == "ENV")
    assert "SIGNING_SERVICE_DATA_DIR=/srv/data" in env
    assert "SIGNING_SERVICE_MODE=production" in env
    assert "PATH=/srv/app/.venv/bin:$PATH" in env
    # CMD runs the console script the project declares, found on PATH.
    cmd = json.loads(next(args for op, args in steps if op == "CMD"))
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    assert cmd == ["signing-service", "serve"] and "signing-service" in scripts
    # HEALTHCHECK runs a file the image copies, which probes /readyz.
    health = next(args for op, args in steps if op == "HEALTHCHECK")
    probe = json.loads(health.split("CMD", 1)[1])
    assert probe == ["/srv/app/.venv/bin/python", "/srv/app/healthcheck.py"]
    assert "docker/healthcheck.py ./healthcheck.py" in [a for op, a in steps if op == "COPY"]
    assert "/readyz" in (DOCKER / "healthcheck.py").read_text()
    for op, args in steps:
        if op == "COPY":
            for source in args.split()[:-1]:
                assert (REPO / source).exists(), source


def _podman() -> list[str] | None:
    """The podman command line that works on this machine, or None. Two things these machines
    need (found out here, README "The image"): runc instead of crun (crun refuses the hybrid
    cgroup v1/v2 hierarchy), and rlimits no higher than ours (no CAP_SYS_RESOURCE)."""
    if not (shutil.which("podman") and shutil.which("runc")):
        return None
    return ["podman", "--runtime", shutil.which("runc") or "runc"]


def _ulimits() -> list[str]:
    import resource

    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nproc = min(resource.getrlimit(resource.RLIMIT_NPROC)[1], 4096)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", f"nproc={nproc}:{nproc}"]


def _base_image(podman: list[str]) -> None:
    """Debian 12 (minbase, python3) from the Debian mirror with debootstrap, cached as a tar."""
    if subprocess.run([*podman, "image", "exists", BASE_IMAGE]).returncode == 0:
        return
    if not BASE_TAR.exists():
        if not shutil.which("debootstrap"):
            pytest.skip("debootstrap not installed (make test-deps installs it)")
        root = Path(subprocess.check_output(["mktemp", "-d"], text=True).strip())
        try:
            subprocess.run(
                ["debootstrap", "--variant=minbase", "bookworm", str(root / "rootfs"),
                 "http://deb.debian.org/debian"],
                check=True, capture_output=True, timeout=1200,
            )  # fmt: skip
            BASE_TAR.parent.mkdir(parents=True, exist_ok=True)
            subprocess.run(
                ["tar", "-C", str(root / "rootfs"), "-cf", f"{BASE_TAR}.tmp", "."], check=True
            )
            os.replace(f"{BASE_TAR}.tmp", BASE_TAR)
        finally:
            shutil.rmtree(root, ignore_errors=True)
    subprocess.run([*podman, "import", str(BASE_TAR), BASE_IMAGE], check=True, capture_output=True)


@pytest.fixture(scope="module")
def image() -> Iterator[list[str]]:
    podman = _podman()
    if podman is None or os.geteuid() != 0:
        pytest.skip("podman and runc (as root) not available: README, 'The image'")
    _base_image(podman)
    build = [*podman, "build", "--format", "docker", "--network=host", *_ulimits()]
    # Behind a TLS-intercepting proxy the build needs this machine's CA bundle (mounted for
    # the build only; see the Dockerfile's ARGs).
    bundle = os.environ.get("SSL_CERT_FILE") or os.environ.get("PIP_CERT")
    if bundle and Path(bundle).is_file():
        build += [
            "-v", f"{bundle}:/run/build-ca.crt:ro",
            "--build-arg", "PIP_CERT=/run/build-ca.crt",
            "--build-arg", "SSL_CERT_FILE=/run/build-ca.crt",
        ]  # fmt: skip
    result = subprocess.run(
        [*build, "--build-arg", f"BASE={BASE_IMAGE}", "-f", str(DOCKER / "Dockerfile"),
         "-t", IMAGE, str(REPO)],
        capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    yield podman


@pytest.mark.slow
@pytest.mark.postgres
def test_image_builds_starts_and_is_healthy(
    image: list[str], postgres: PostgresServer | None
) -> None:
    if postgres is None:
        pytest.skip("PostgreSQL binaries not installed (run `make test`)")
    podman = image
    database_url = postgres.create_database(f"image_{secrets.token_hex(4)}")
    port = lane_port()
    name = f"signing-service-test-{secrets.token_hex(4)}"
    env = {
        "SIGNING_SERVICE_DATABASE_URL": database_url,
        "SIGNING_SERVICE_AUDIT_KEY": secrets.token_hex(32),
        "SIGNING_SERVICE_KEY_STORE_SECRET": secrets.token_hex(32),
        "SIGNING_SERVICE_HOST": "127.0.0.1",
        "SIGNING_SERVICE_PORT": str(port),
    }
    run = [*podman, "run", "-d", "--name", name, "--network=host", *_ulimits()]
    for key, value in env.items():
        run += ["-e", f"{key}={value}"]
    subprocess.run([*run, IMAGE], check=True, capture_output=True, timeout=120)
    try:
        deadline = time.monotonic() + 120
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code
                if status == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(1)
        logs = subprocess.run([*podman, "logs", name], capture_output=True, text=True).stderr
        assert status == 200, logs[-3000:]
        # Its own HEALTHCHECK, run inside the container.
        health = subprocess.run([*podman, "healthcheck", "run", name], capture_output=True)
        assert health.returncode == 0, health.stderr

        def inside(*cmd: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*podman, "exec", name, *cmd], capture_output=True, text=True, timeout=120
            )

        assert inside("id", "-u").stdout.strip() == "10001"
        assert inside("sh", "-c", "command -v signing-service").stdout.strip() == (
            "/srv/app/.venv/bin/signing-service"
        )
        assert inside("signing-service", "--help").returncode == 0
        # The data directory is the service's (it wrote its files there); the code is not.
        assert inside("stat", "-c", "%U %a", "/srv/data").stdout.split() == ["signing", "700"]
        assert inside("touch", "/srv/data/probe").returncode == 0
        assert inside("touch", "/srv/app/signing_service/probe").returncode != 0
    finally:
        subprocess.run([*podman, "rm", "-f", name], capture_output=True, timeout=120)
