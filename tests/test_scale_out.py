"""Two replicas behind nginx on distributed MinIO and one PostgreSQL, under load, while one
replica is SIGKILLed and restarted, one MinIO node is killed and restarted, and PostgreSQL is
restarted (issue 13, item 3 and "Bad input").

Clients drive, through nginx: one-step signing with ``result_code=auto`` on shared dossiers
(the counter is contended across replicas), two-step signing (step 1 on one replica, step 2 on
the other, or through nginx after the first one died), attachment uploads with
``Idempotency-Key`` (re-sent until acknowledged) and public verification. One-step signing
sends an ``Idempotency-Key`` too and is re-sent once after a lost connection or a 503. Then:

- every answer a client saw is in shape: 2xx, 4xx with one of our codes, or 503 with
  ``Retry-After`` and our JSON (nginx's own, ``SERVICE_UNAVAILABLE``, when no replica
  answered); never a 500, never nginx's HTML;
- nothing acknowledged is lost or corrupted: every 201's document downloads with the SHA-256
  it was acknowledged with and verifies; every document and attachment row in the database
  has its object, with its hash (nothing half-written);
- no result code is given twice; one attachment, and one signed document, per idempotency
  key;
- two-step sessions prepared on one replica complete on the other.
"""

from __future__ import annotations

import base64
import hashlib
import os
import random
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.serialization import pkcs12

from signing_service import errors
from signing_service.settings import DEV_KEY_PASSPHRASE
from tests.support.cluster import REPO, Cluster, Nginx
from tests.support.minio_server import find_binary
from tests.support.pdfs import make_pdf
from tests.support.postgres import find_bindir

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

# Our error codes: every 4xx/503 body must carry one of them.
CODES = {
    cls.code
    for cls in vars(errors).values()
    if isinstance(cls, type) and issubclass(cls, errors.ServiceError)
}
LOAD_SECONDS_BEFORE_KILL = 6.0
SIGNERS = 3


def _require(what: str, present: bool, env: str) -> None:
    if not present:
        if os.environ.get(env) == "1":
            pytest.fail(f"{what} is required (make test installs it) but was not found")
        pytest.skip(f"{what} not installed (make test installs it)")


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    binary = find_binary()
    _require("MinIO", binary is not None, "SIGNING_SERVICE_TEST_REQUIRE_MINIO")
    _require("PostgreSQL", find_bindir() is not None, "SIGNING_SERVICE_TEST_REQUIRE_POSTGRES")
    _require("nginx", Nginx.available(), "SIGNING_SERVICE_TEST_REQUIRE_POSTGRES")
    assert binary is not None
    # SIGNING_SERVICE_TEST_KEEP_CLUSTER=1 keeps its directory (logs of every process) after.
    keep = os.environ.get("SIGNING_SERVICE_TEST_KEEP_CLUSTER") == "1"
    with Cluster(binary, replicas=2, keep=keep) as c:
        print(f"\ncluster files: {c.root}")
        yield c


@dataclass
class Seen:
    """What the clients saw, shared by the load threads."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    statuses: Counter[tuple[str, int]] = field(default_factory=Counter)
    out_of_shape: list[str] = field(default_factory=list)
    signed: list[dict[str, Any]] = field(default_factory=list)
    two_step: list[dict[str, Any]] = field(default_factory=list)
    prepared: int = 0
    answer_lost: int = 0
    cross_replica: int = 0
    attachments: dict[str, dict[str, Any]] = field(default_factory=dict)
    verified: Counter[str] = field(default_factory=Counter)
    # One-step signing: the document acknowledged under each Idempotency-Key, and how many
    # requests were re-sent (after a lost connection or a 503) and then acknowledged.
    signed_by_key: dict[str, dict[str, Any]] = field(default_factory=dict)
    sign_resent: int = 0

    def answer(self, what: str, r: httpx.Response) -> bool:
        """Record ``r``; False (and a note) when it is out of shape."""
        with self.lock:
            self.statuses[(what, r.status_code)] += 1
        problem = shape_problem(r)
        if problem:
            with self.lock:
                self.out_of_shape.append(f"{what}: {problem}")
            return False
        return True


def shape_problem(r: httpx.Response) -> str | None:
    """None when ``r`` is an answer a client may get; else what is wrong with it."""
    if r.status_code in (200, 201):
        return None
    try:
        body = r.json()
    except ValueError:
        return f"{r.status_code} not JSON: {r.text[:200]!r}"
    code = body.get("code") if isinstance(body, dict) else None
    if 400 <= r.status_code < 500 and code in CODES:
        return None
    if r.status_code == 503 and code in CODES and r.headers.get("Retry-After", "").isdigit():
        return None
    return f"{r.status_code} {r.text[:200]!r}"


def dossier(credentials: dict[str, Any], n: int) -> str:
    code = credentials["agencies"][0]["code"]
    return f"{code}-{time.strftime('%y%m%d')}-{n:04d}"


class Load:
    """The load threads; :meth:`run` starts them, :meth:`stop` ends them."""

    def __init__(self, cluster: Cluster, seen: Seen) -> None:
        self.c = cluster
        self.seen = seen
        self.stopping = threading.Event()
        creds: dict[str, Any] = cluster.credentials  # type: ignore[assignment]
        self.creds = creds
        self.auth = {"Authorization": f"Bearer {creds['agencies'][0]['api_key']}"}
        key, _cert, _chain = pkcs12.load_key_and_certificates(
            Path(creds["pki"]["officer_p12"]).read_bytes(), DEV_KEY_PASSPHRASE.encode()
        )
        assert isinstance(key, rsa.RSAPrivateKey)
        self.officer_key = key
        self.officer_pem = Path(creds["pki"]["officer_certificate"]).read_bytes()
        self.threads: list[threading.Thread] = []

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.c.url, timeout=120)

    def loop(self, body: Callable[[httpx.Client, int], None]) -> Callable[[], None]:
        def run() -> None:
            with self.client() as client:
                i = 0
                while not self.stopping.is_set():
                    body(client, i)
                    i += 1

        return run

    def sign_once(self, client: httpx.Client, i: int) -> None:
        """One signing request with an ``Idempotency-Key``, re-sent once with the same key
        after a lost connection or a 503 (the client cannot know whether the first one was
        carried out): never a second document for one key."""
        pdf = make_pdf(f"Quyet dinh {random.getrandbits(48)}")
        key = f"sign-{os.getpid()}-{i}-{random.getrandbits(32):x}"
        for attempt in range(2):
            try:
                r = client.post(
                    "/v1/signatures",
                    headers={**self.auth, "Idempotency-Key": key},
                    data={
                        "profile": "agency-a-seal",
                        "level": "B-T" if i % 2 else "B-B",
                        "dossier_code": dossier(self.creds, 1 + i % 2),
                        "result_code": "auto",
                    },
                    files={"file": ("qd.pdf", pdf, "application/pdf")},
                )
            except httpx.TransportError:
                time.sleep(1.0)
                continue
            if not self.seen.answer("sign", r):
                return
            if r.status_code in (200, 201):
                document = r.json()["document"]
                with self.seen.lock:
                    previous = self.seen.signed_by_key.setdefault(key, document)
                    if previous["id"] != document["id"]:
                        self.seen.out_of_shape.append(f"sign {key}: two documents")
                    else:
                        self.seen.signed.append(document)
                    self.seen.sign_resent += attempt
                return
            if r.status_code != 503:
                return
            time.sleep(min(float(r.headers["Retry-After"]), 1.0))

    def prepare(self, url: str) -> dict[str, Any] | None:
        """Step 1 of two-step signing, sent to the replica at ``url`` directly."""
        try:
            r = httpx.post(
                url + "/v1/signatures/external",
                headers=self.auth,
                data={"profile": "agency-a-officer", "level": "B-B"},
                files={
                    "file": ("to-trinh.pdf", make_pdf("To trinh"), "application/pdf"),
                    "certificate": ("officer.pem", self.officer_pem),
                },
                timeout=120,
            )
        except httpx.TransportError:
            return None  # that replica is down: nothing was acknowledged
        if self.seen.answer("prepare", r) and r.status_code == 201:
            return dict(r.json())
        return None

    def complete(self, session: dict[str, Any], base: str) -> httpx.Response | None:
        signature = self.officer_key.sign(
            base64.b64decode(session["digest"]),
            padding.PKCS1v15(),
            utils.Prehashed(hashes.SHA256()),
        )
        try:
            r = httpx.post(
                base + session["complete_url"],
                headers=self.auth,
                json={"signature": base64.b64encode(signature).decode()},
                timeout=120,
            )
        except httpx.TransportError:
            return None
        self.seen.answer("complete", r)
        return r

    def two_step_once(self, _client: httpx.Client, i: int) -> None:
        first, other = self.c.replicas[i % 2], self.c.replicas[(i + 1) % 2]
        session = self.prepare(first.url)
        if session is None:
            time.sleep(0.2)
            return
        with self.seen.lock:
            self.seen.prepared += 1
        # Step 2 on the other replica directly; when it is down (killed, or still starting),
        # through nginx, again after a 503, until it completes: an acknowledged session is
        # never lost with a replica.
        r = self.complete(session, other.url)
        direct = r is not None and r.status_code == 201
        lost = False  # an attempt went unanswered: it may have completed the session
        for _ in range(20):
            if r is not None and r.status_code != 503:
                break
            lost = True
            time.sleep(1.0)
            r = self.complete(session, self.c.url)
        if r is not None and r.status_code == 201:
            with self.seen.lock:
                self.seen.two_step.append(r.json()["document"])
                self.seen.cross_replica += direct
        elif lost and r is not None and r.json().get("code") == "EXTERNAL_SESSION_USED":
            with self.seen.lock:
                self.seen.answer_lost += 1  # completed by the attempt whose answer was lost
        else:
            with self.seen.lock:
                self.seen.out_of_shape.append(f"session {session['session_id']}: not completed")

    def upload_once(self, client: httpx.Client, i: int) -> None:
        data = make_pdf(f"Don de nghi {i}", padding_bytes=256 * 1024 + random.randrange(4096))
        key = f"scale-{os.getpid()}-{i}-{random.getrandbits(32):x}"
        path = f"/v1/dossiers/{dossier(self.creds, 3)}/attachments"
        # The client re-sends with the same key until it has an answer (at most 20 times).
        for _ in range(20):
            r = client.post(
                path,
                headers={**self.auth, "Idempotency-Key": key},
                data={"component": "application"},
                files={"file": ("don.pdf", data, "application/pdf")},
            )
            if not self.seen.answer("upload", r):
                return
            if r.status_code in (200, 201):
                body = r.json()
                with self.seen.lock:
                    previous = self.seen.attachments.setdefault(key, body)
                    if body["sha256"] != hashlib.sha256(data).hexdigest():
                        self.seen.out_of_shape.append(f"upload {key}: acknowledged another hash")
                    if previous["id"] != body["id"]:
                        self.seen.out_of_shape.append(f"upload {key}: two records")
                return
            if r.status_code != 503:
                return
            time.sleep(min(float(r.headers["Retry-After"]), 1.0))

    def verify_once(self, client: httpx.Client, _i: int) -> None:
        with self.seen.lock:
            done = list(self.seen.signed[-5:])
        if not done:
            time.sleep(0.2)
            return
        got = client.get(random.choice(done)["download_url"], headers=self.auth)
        if not self.seen.answer("download", got) or got.status_code != 200:
            return
        r = client.post("/v1/verifications", files={"file": ("s.pdf", got.content)})
        if self.seen.answer("verify", r) and r.status_code == 200:
            with self.seen.lock:
                self.seen.verified[r.json()["verdict"]] += 1

    def run(self) -> None:
        bodies = [self.sign_once] * SIGNERS + [self.two_step_once, self.upload_once]
        bodies.append(self.verify_once)
        for body in bodies:
            thread = threading.Thread(target=self.loop(body), daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(180)
            assert not thread.is_alive(), "a load client hung"


def test_replica_and_storage_node_killed_under_load(cluster: Cluster) -> None:
    seen = Seen()
    load = Load(cluster, seen)
    victim = cluster.replicas[0]
    # Sessions prepared on the replica about to die: step 2 must work on the survivor.
    orphans = [s for s in (load.prepare(victim.url) for _ in range(3)) if s is not None]
    assert len(orphans) == 3
    started = time.monotonic()
    phases: list[str] = []

    def phase(name: str) -> None:
        phases.append(f"{name} at {time.monotonic() - started:.0f} s")

    load.run()
    try:
        time.sleep(LOAD_SECONDS_BEFORE_KILL)
        victim.kill()  # SIGKILL, mid-request
        phase("replica 1 killed")
        completed_orphans = []
        for session in orphans:
            r = load.complete(session, cluster.url)  # nginx: only the survivor is left
            assert r is not None and r.status_code == 201, r and r.text
            completed_orphans.append(r.json()["document"])
        time.sleep(2)
        victim.start()
        phase("replica 1 back")
        time.sleep(2)
        cluster.minio.stop_node(1)  # a storage node dies (SIGKILL), load continues
        phase("MinIO node 2 killed")
        time.sleep(6)
        cluster.minio.restart_node(1)
        phase("MinIO node 2 back")
        time.sleep(2)
        cluster.postgres.halt()  # PostgreSQL restarting: 503 DATABASE_UNAVAILABLE, not 500
        phase("PostgreSQL stopped")
        time.sleep(4)
        cluster.postgres.resume()
        phase("PostgreSQL back")
        time.sleep(3)
    finally:
        load.stop()
        phase("load stopped")
    elapsed = time.monotonic() - started
    print(
        f"\nload {elapsed:.0f} s; answers: {dict(seen.statuses)}; verdicts "
        f"{dict(seen.verified)}; two-step: {seen.prepared} prepared, {seen.cross_replica} "
        "completed directly on the other replica, "
        f"{seen.answer_lost} completed by an attempt whose answer was lost; "
        f"{seen.sign_resent} signing requests acknowledged after a resend; " + ", ".join(phases)
    )

    assert not seen.out_of_shape, seen.out_of_shape[:10]
    assert not [k for k in seen.statuses if k[1] >= 500 and k[1] != 503]
    assert len(seen.signed) >= 10, seen.statuses
    assert seen.cross_replica >= 1, "no two-step session completed on the other replica"
    assert seen.attachments, seen.statuses
    assert seen.verified and set(seen.verified) == {"TOTAL_PASSED"}, seen.verified

    # No result code given twice (the counter is shared by both replicas).
    codes = Counter(d["result_code"] for d in seen.signed)
    assert all(n == 1 for n in codes.values()), [c for c, n in codes.items() if n > 1]
    with psycopg.connect(cluster.postgres.url("signing")) as db:
        duplicated = db.execute(
            "SELECT result_code FROM documents WHERE result_code IS NOT NULL "
            "GROUP BY result_code HAVING count(*) > 1"
        ).fetchall()
        rows = db.execute("SELECT id FROM documents").fetchall()
        per_key = db.execute(
            "SELECT idempotency_key, count(*) FROM attachments GROUP BY idempotency_key"
        ).fetchall()
        signatures_per_key = db.execute(
            "SELECT idempotency_key, count(*) FROM signatures WHERE idempotency_key IS NOT NULL "
            "GROUP BY idempotency_key"
        ).fetchall()
        attachment_rows = db.execute("SELECT id, sha256 FROM attachments").fetchall()
    assert not duplicated
    assert all(n == 1 for _, n in per_key), per_key
    # One document per signing Idempotency-Key, re-sent or not.
    assert all(n == 1 for _, n in signatures_per_key), signatures_per_key
    assert {str(k) for k, _ in signatures_per_key} >= set(seen.signed_by_key)
    assert {str(k) for k, _ in per_key} >= set(seen.attachments)

    with httpx.Client(base_url=cluster.url, headers=load.auth, timeout=120) as client:
        # Every acknowledged document: there, intact (its acknowledged hash), verifying.
        acknowledged = seen.signed + seen.two_step + completed_orphans
        missing = []
        for document in acknowledged:
            got = client.get(document["download_url"])
            if got.status_code != 200:
                missing.append((document, got.text))
                continue
            assert hashlib.sha256(got.content).hexdigest() == document["sha256"]
        assert not missing, diagnose(cluster, missing, phases)
        for document in random.sample(acknowledged, min(12, len(acknowledged))):
            got = client.get(document["download_url"])
            r = client.post("/v1/verifications", files={"file": ("s.pdf", got.content)})
            assert r.json()["verdict"] == "TOTAL_PASSED", r.json()
        # Nothing half-written: every row's object is there and matches (the service checks
        # the SHA-256 before it serves a byte).
        for (document_id,) in rows:
            r = client.get(f"/v1/documents/{document_id}/content")
            assert r.status_code == 200, (document_id, r.text)
        for attachment_id, sha256 in attachment_rows:
            r = client.get(f"/v1/attachments/{attachment_id}/content")
            assert r.status_code == 200, (attachment_id, r.text)
            assert hashlib.sha256(r.content).hexdigest() == sha256
    assert len(seen.two_step) + seen.answer_lost == seen.prepared >= 4


def test_no_replica_answers_with_our_json_503(cluster: Cluster) -> None:
    """Both replicas down: nginx answers the service's JSON 503 with Retry-After, for GET and
    POST alike; back up, the same requests succeed."""
    for replica in cluster.replicas:
        replica.kill()
    try:
        for method, path in (("GET", "/readyz"), ("POST", "/v1/verifications")):
            r = httpx.request(method, cluster.url + path, timeout=30)
            assert r.status_code == 503
            assert r.headers["Retry-After"] == str(cluster.retry_after)
            assert r.headers["Content-Type"].startswith("application/json")
            assert r.json() == errors.ServiceUnavailable().to_dict()
    finally:
        for replica in cluster.replicas:
            replica.start()
    assert httpx.get(cluster.url + "/readyz", timeout=30).status_code == 200


def test_image_healthcheck_probes_readiness(cluster: Cluster) -> None:
    """docker/healthcheck.py (the image's HEALTHCHECK) against a real replica: 0 while it is
    ready, 1 once it is gone."""
    replica = cluster.replicas[1]

    def probe() -> int:
        return subprocess.run(
            [sys.executable, str(REPO / "docker/healthcheck.py")],
            env={**os.environ, "SIGNING_SERVICE_PORT": str(replica.port)},
            timeout=30,
        ).returncode

    assert probe() == 0
    replica.kill()
    try:
        assert probe() == 1
    finally:
        replica.start()


def test_replicas_migrating_at_once_all_succeed(postgres: Any, tmp_path: Path) -> None:
    """Replicas started together on a new database (no separate migration step) each run the
    migrations: they must not race to create the same tables (one of them crashed with
    DuplicateTable). Three `signing-service migrate` at once, each its own process."""
    if postgres is None:
        pytest.skip("PostgreSQL binaries not installed (run `make test`)")
    url = postgres.create_database(f"race_{os.urandom(4).hex()}")
    procs = [
        subprocess.Popen(
            [str(REPO / ".venv/bin/signing-service"), "migrate"],
            env={
                **os.environ,
                "SIGNING_SERVICE_DATABASE_URL": url,
                "SIGNING_SERVICE_DATA_DIR": str(tmp_path / f"var{i}"),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(3)
    ]
    outputs = [(p.wait(120), p.stdout.read() if p.stdout else "") for p in procs]
    assert all(code == 0 for code, _ in outputs), outputs
    with psycopg.connect(url) as db:
        (revision,) = db.execute("SELECT version_num FROM alembic_version").fetchone() or ("",)
    heads = subprocess.run(
        [sys.executable, "-c", "from signing_service.store.db import MIGRATIONS; "
         "from alembic.script import ScriptDirectory; "
         "print(ScriptDirectory(str(MIGRATIONS)).get_current_head())"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout.strip()  # fmt: skip
    assert revision == heads


def diagnose(cluster: Cluster, missing: list[tuple[dict[str, Any], str]], phases: list[str]) -> str:
    """What the object store holds of each acknowledged document that did not download:
    its versions and delete markers (a delete marker: the service removed it)."""
    from minio import Minio

    client = Minio(
        f"127.0.0.1:{cluster.minio_lb_port}",
        access_key=cluster.minio.access_key,
        secret_key=cluster.minio.secret_key,
        secure=False,
    )
    lines = [", ".join(phases)]
    with psycopg.connect(cluster.postgres.url("signing")) as db:
        for document, answer in missing:
            row = db.execute(
                "SELECT storage_key, created_at, kind FROM documents WHERE id = %s",
                (document["id"],),
            ).fetchone()
            versions = []
            if row and row[0]:
                for v in client.list_objects("documents", prefix=row[0], include_version=True):
                    versions.append((v.version_id, v.is_delete_marker, v.last_modified))
            lines.append(f"{document['id']} {document['created_at']} {row} {versions} {answer}")
    return "\n".join(lines)
