"""A province's deployment in miniature, on loopback (issue 13, item 3): one PostgreSQL, MinIO in
distributed mode (four server processes, one drive each, forming one erasure set), the dev PKI
served once, two `signing-service serve` replicas sharing the database, the object store, the
key store and the audit key, and nginx (Debian's package) load-balancing them.

nginx also balances the four MinIO nodes (the service is given one S3 endpoint; a real
deployment puts MinIO behind a load balancer the same way), so a stopped MinIO node is routed
around. For the API, nginx retries the next replica only for requests it may repeat (GET, HEAD,
PUT, DELETE…: ``proxy_next_upstream`` never repeats POST unless told, and it is not told: a
signature posted twice is two documents). When no replica answers (or one dies mid-request),
nginx answers 503 ``SERVICE_UNAVAILABLE`` with ``Retry-After`` in the service's JSON shape
(:func:`nginx_unavailable_body`), never its own HTML 502.

Ports come from this lane's range (186xx) when free, so the processes are easy to tell apart
on a shared machine; everything runs as the current user with its own files under a temporary
directory, and :meth:`Cluster.stop` ends every process it started (by process group).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import TracebackType

import httpx

from signing_service import errors
from tests.support.postgres import PostgresServer, find_bindir

REPO = Path(__file__).resolve().parents[2]
LANE_PORTS = range(18600, 18700)
_taken: set[int] = set()


def _worker_ports() -> range:
    """This test process's share of LANE_PORTS: under pytest-xdist each worker (gw0, gw1, …)
    gets its own slice of 25, so two workers never both find 18600 free and bind it (each
    process checks only its own handed-out ports; a full run with -n 2 failed so)."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return LANE_PORTS
    start = LANE_PORTS.start + (int(worker[2:]) % 4) * 25
    return range(start, start + 25)


def lane_port() -> int:
    """A free loopback port in 18600–18699 (this lane's range; under pytest-xdist, this
    worker's slice of it), never handed out twice by this process; any free port when the
    range is used up."""
    for port in _worker_ports():
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: object, timeout: float, what: str) -> None:
    """Call ``check()`` every 0.2 s until it returns true; RuntimeError naming ``what`` after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():  # type: ignore[operator]
                return
        except (httpx.HTTPError, OSError):
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not come up within {timeout:.0f} s")


def _stop_group(proc: subprocess.Popen[bytes] | None, sig: int = signal.SIGTERM) -> None:
    """Signal the process group ``proc`` leads (it was started with ``start_new_session``),
    then wait for it; SIGKILL after 20 s."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)
        proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    except ProcessLookupError:
        pass


def _kill_leftovers(proc: subprocess.Popen[bytes]) -> None:
    """SIGKILL whatever is left of ``proc``'s process group (children of a killed leader)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


class DistributedMinio:
    """``nodes`` MinIO server processes on loopback, one drive each, forming one erasure set
    (4 drives: 2 data + 2 parity; writes need 3 drives, reads 2, so one node may be down)."""

    def __init__(self, binary: Path, root: Path, nodes: int = 4) -> None:
        self.binary = binary
        self.root = root
        self.ports = [lane_port() for _ in range(nodes)]
        self.console_ports = [lane_port() for _ in range(nodes)]
        self.access_key = "scale-" + secrets.token_hex(4)
        self.secret_key = secrets.token_hex(16)
        self.procs: list[subprocess.Popen[bytes] | None] = [None] * nodes

    @property
    def endpoints(self) -> list[str]:
        return [f"http://127.0.0.1:{port}{self.root}/n{i}" for i, port in enumerate(self.ports)]

    def start_node(self, i: int) -> None:
        (self.root / f"n{i}").mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            "MINIO_ROOT_USER": self.access_key,
            "MINIO_ROOT_PASSWORD": self.secret_key,
            "MINIO_BROWSER": "off",
            "MINIO_UPDATE": "off",
            "MINIO_CI_CD": "1",  # drives on the root filesystem (temporary directories)
            # MinIO takes a machine with /.dockerenv (these test machines) for an orchestrated
            # deployment and then waits for loopback hosts to "resolve to a valid IP" forever
            # (cmd/endpoint.go, PoolEndpointList.UpdateIsLocal); this names the node's own
            # endpoint, which it then accepts as local.
            "_MINIO_SERVER_LOCAL": f"127.0.0.1:{self.ports[i]}",
        }
        self.procs[i] = subprocess.Popen(
            [
                str(self.binary),
                "server",
                "--address",
                f"127.0.0.1:{self.ports[i]}",
                "--console-address",
                f"127.0.0.1:{self.console_ports[i]}",
                *self.endpoints,
            ],
            env=env,
            stdout=(self.root / f"n{i}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def healthy(self, i: int) -> bool:
        """Node ``i`` answers and the erasure set has write quorum."""
        url = f"http://127.0.0.1:{self.ports[i]}/minio/health/cluster"
        return httpx.get(url, timeout=1).status_code == 200

    def start(self) -> DistributedMinio:
        for i in range(len(self.ports)):
            self.start_node(i)
        wait_until(lambda: all(self.healthy(i) for i in range(len(self.ports))), 120, "MinIO")
        return self

    def stop_node(self, i: int) -> None:
        """SIGKILL node ``i`` (its drive is kept): a storage node that dies."""
        proc = self.procs[i]
        if proc is not None:
            _stop_group(proc, signal.SIGKILL)
        self.procs[i] = None

    def restart_node(self, i: int) -> None:
        self.start_node(i)
        wait_until(lambda: self.healthy(i), 120, f"MinIO node {i}")

    def stop(self) -> None:
        for proc in self.procs:
            _stop_group(proc)
        self.procs = [None] * len(self.procs)


class Replica:
    """One `signing-service serve` process on a fixed port (kept across restarts), in its own
    process group so that a SIGKILL takes its verification workers with it, as when a
    container or a machine dies."""

    def __init__(self, name: str, env: dict[str, str], log: Path) -> None:
        self.name = name
        self.env = env
        self.log = log
        self.port = lane_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Replica:
        self.proc = subprocess.Popen(
            [str(REPO / ".venv/bin/signing-service"), "serve", "--port", str(self.port)],
            env={**os.environ, **self.env},
            cwd=REPO,
            stdout=self.log.open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        proc = self.proc

        def ready() -> bool:
            if proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited: " + self.log.read_text()[-3000:])
            return httpx.get(self.url + "/readyz", timeout=2).status_code == 200

        wait_until(ready, 180, self.name)
        return self

    def kill(self) -> None:
        """SIGKILL the replica and its children, mid-request if it is serving."""
        if self.proc is not None:
            _kill_leftovers(self.proc)
            self.proc.wait(10)
        self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            _stop_group(self.proc)
            _kill_leftovers(self.proc)
        self.proc = None


def nginx_unavailable_body() -> str:
    """The JSON nginx answers with when no replica can take a request: the service's error shape,
    code ``SERVICE_UNAVAILABLE`` (errors.ServiceUnavailable)."""
    return json.dumps(errors.ServiceUnavailable().to_dict(), ensure_ascii=False)


def nginx_conf(
    *,
    root: Path,
    listen: int,
    replicas: list[int],
    minio_listen: int | None,
    minio_nodes: list[int],
    retry_after: int,
    as_root: bool,
) -> str:
    """nginx.conf for the API replicas on ``replicas`` ports (and, when ``minio_listen`` is
    set, the MinIO nodes), every file under ``root``. The same template as docker/nginx.conf."""
    body = nginx_unavailable_body().replace("'", "\\'")
    api_servers = "".join(
        f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n" for p in replicas
    )
    minio_block = ""
    if minio_listen is not None:
        minio_servers = "".join(
            f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;\n" for p in minio_nodes
        )
        minio_block = f"""
  upstream minio {{
{minio_servers}  }}
  server {{
    listen 127.0.0.1:{minio_listen};
    client_max_body_size 0;
    location / {{
      proxy_pass http://minio;
      # S3 signs the Host header: pass the client's unchanged.
      proxy_set_header Host $http_host;
      proxy_http_version 1.1;
      proxy_connect_timeout 2s;
      proxy_read_timeout 120s;
      # PUT and GET of an object may be repeated on another node; POST (multipart) may not.
      proxy_next_upstream error timeout http_502 http_503;
      proxy_next_upstream_tries 4;
    }}
  }}
"""
    user = "user root root;\n" if as_root else ""
    return f"""{user}worker_processes 1;
daemon off;
error_log {root}/error.log warn;
pid {root}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
  access_log {root}/access.log;
  client_body_temp_path {root}/body;
  proxy_temp_path {root}/proxy;
  fastcgi_temp_path {root}/fastcgi;
  uwsgi_temp_path {root}/uwsgi;
  scgi_temp_path {root}/scgi;
  upstream signing_api {{
{api_servers}  }}
  server {{
    listen 127.0.0.1:{listen};
    client_max_body_size 64m;
    location / {{
      proxy_pass http://signing_api;
      proxy_http_version 1.1;
      proxy_set_header Host $http_host;
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
      proxy_set_header X-Request-ID $request_id;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_connect_timeout 2s;
      proxy_read_timeout 300s;
      # Only requests nginx may repeat go to the next replica (not POST: no non_idempotent).
      proxy_next_upstream error timeout;
      proxy_next_upstream_tries 2;
      # A replica that died mid-request, or none answering: the service's JSON 503, not HTML.
      error_page 502 504 = @unavailable;
    }}
    location @unavailable {{
      default_type application/json;
      add_header Retry-After {retry_after} always;
      return 503 '{body}';
    }}
  }}
{minio_block}}}
"""


class Nginx:
    """nginx from Debian, as the current user, its configuration, pid and logs under ``root``."""

    BINARY = "/usr/sbin/nginx"

    def __init__(self, root: Path, conf: str) -> None:
        self.root = root
        self.conf_path = root / "nginx.conf"
        root.mkdir(parents=True, exist_ok=True)
        self.conf_path.write_text(conf)
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def available(cls) -> bool:
        return Path(cls.BINARY).exists()

    def check(self) -> None:
        subprocess.run(
            [self.BINARY, "-t", "-q", "-p", str(self.root), "-c", str(self.conf_path)],
            check=True,
            capture_output=True,
            timeout=30,
        )

    def start(self, port: int) -> Nginx:
        self.check()
        self.proc = subprocess.Popen(
            [self.BINARY, "-p", str(self.root), "-c", str(self.conf_path)],
            stdout=(self.root / "stdout.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

        def up() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        wait_until(up, 30, "nginx")
        return self

    def stop(self) -> None:
        _stop_group(self.proc, signal.SIGQUIT)
        self.proc = None


class Cluster:
    """The whole deployment; ``with Cluster(minio_binary, replicas=2) as c:`` starts it (``c.url``
    is nginx, ``c.replicas`` the API processes, ``c.minio`` the storage nodes, ``c.credentials``
    the dev agencies' API keys) and stops every process on exit, however the block ends."""

    def __init__(
        self,
        minio_binary: Path,
        replicas: int = 2,
        *,
        extra_env: dict[str, str] | None = None,
        keep: bool = False,
    ) -> None:
        bindir = find_bindir()
        if bindir is None:
            raise RuntimeError("PostgreSQL binaries not installed")
        if not Nginx.available():
            raise RuntimeError("nginx not installed (make test-deps installs it)")
        self.root = Path(tempfile.mkdtemp(prefix="scale13-"))
        self.keep = keep
        self.postgres = PostgresServer(bindir)
        self.minio = DistributedMinio(minio_binary, self.root / "minio")
        self.pki_port = lane_port()
        self.pki_proc: subprocess.Popen[bytes] | None = None
        self.nginx_port = lane_port()
        self.minio_lb_port = lane_port()
        self.retry_after = 5
        self.n_replicas = replicas
        self.extra_env = extra_env or {}
        self.replicas: list[Replica] = []
        self.nginx: Nginx | None = None
        self.credentials: dict[str, object] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.nginx_port}"

    def replica_env(self, database_url: str) -> dict[str, str]:
        """What every replica shares: database, object store (through nginx's MinIO
        balancer), key store and audit key (explicit secrets, as production sets them), the
        dev PKI served once, the data directory (the key store's sealed files live there)."""
        storage = (
            f"s3://{self.minio.access_key}:{self.minio.secret_key}@127.0.0.1:"
            f"{self.minio_lb_port}/documents?secure=false"
        )
        (self.root / "no-softhsm").mkdir(exist_ok=True)
        return {
            "SIGNING_SERVICE_MODE": "development",
            "SIGNING_SERVICE_DATA_DIR": str(self.root / "var"),
            "SIGNING_SERVICE_DATABASE_URL": database_url,
            "SIGNING_SERVICE_STORAGE_URL": storage,
            "SIGNING_SERVICE_DEV_PKI_DIR": str(self.root / "pki"),
            "SIGNING_SERVICE_DEV_PKI_PORT": str(self.pki_port),
            "SIGNING_SERVICE_DEV_PKI_SERVE": "false",
            "SIGNING_SERVICE_DEV_SOFTHSM_DIR": str(self.root / "no-softhsm"),
            "SIGNING_SERVICE_AUDIT_KEY": secrets.token_hex(32),
            "SIGNING_SERVICE_KEY_STORE_SECRET": secrets.token_hex(32),
            "SIGNING_SERVICE_TRUSTED_PROXIES": "127.0.0.1",
            "SIGNING_SERVICE_PUBLIC_BASE_URL": self.url,
            "SIGNING_SERVICE_RETRY_AFTER_SECONDS": str(self.retry_after),
            # Every load client is 127.0.0.1: the per-client limits are lifted (the bench's).
            "SIGNING_SERVICE_PUBLIC_RATE_PER_MINUTE": "1000000",
            "SIGNING_SERVICE_PUBLIC_RATE_BURST": "100000",
            "SIGNING_SERVICE_MAX_ANONYMOUS_REQUESTS": "64",
            "SIGNING_SERVICE_MAX_ANONYMOUS_REQUESTS_PER_CLIENT": "0",
            **self.extra_env,
        }

    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        _type: type[BaseException] | None,
        _value: BaseException | None,
        _tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        self.postgres.start()
        database_url = self.postgres.create_database("signing")
        self.minio.start()
        self.pki_proc = subprocess.Popen(
            [sys.executable, "-m", "bench.pki_server", str(self.root / "pki"), str(self.pki_port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            start_new_session=True,
        )
        assert self.pki_proc.stdout is not None
        self.pki_proc.stdout.readline()  # "ready"
        env = self.replica_env(database_url)
        self.replicas = [
            Replica(f"replica-{i + 1}", env, self.root / f"replica-{i + 1}.log")
            for i in range(self.n_replicas)
        ]
        self.nginx = Nginx(
            self.root / "nginx",
            nginx_conf(
                root=self.root / "nginx",
                listen=self.nginx_port,
                replicas=[r.port for r in self.replicas],
                minio_listen=self.minio_lb_port,
                minio_nodes=self.minio.ports,
                retry_after=self.retry_after,
                as_root=os.geteuid() == 0,
            ),
        ).start(self.nginx_port)
        # The first replica creates the schema, the demo agencies and their keys; the others
        # start on what it made (concurrent first starts would race to create them).
        for replica in self.replicas:
            replica.start()
        self.credentials = json.loads((self.root / "var" / "dev-credentials.json").read_text())

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()
        if self.nginx is not None:
            self.nginx.stop()
        _stop_group(self.pki_proc)
        self.minio.stop()
        with contextlib.suppress(subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError):
            self.postgres.stop()
        if not self.keep:
            shutil.rmtree(self.root, ignore_errors=True)
