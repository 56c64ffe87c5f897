"""`make bench` (storage part): dossier attachments through the API against the `minio` SDK.

One run, one MinIO (four erasure-coded drives on loopback, object lock on), one API server
process (uvicorn, one worker) storing into it. Compared for the same 100 MB PDF:
  - upload: `POST /v1/dossiers/{code}/attachments` (multipart, streamed: spooled to disk while
    hashed, screened, written to MinIO as a multipart upload, recorded, audited) against the
    SDK's own `put_object` of the same file;
  - download: `GET /v1/attachments/{id}/content` (streamed from MinIO, SHA-256 checked) against
    the SDK's `get_object`.
Then the server's resident memory is sampled every 20 ms while a 1 GB PDF is uploaded.
The section it writes into RESULTS.md sits between markers, so `bench.run` keeps it.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench.run import REPO, machine, wait_http
from tests.support.minio_server import MinioServer, find_binary
from tests.support.postgres import free_port

BEGIN, END = "<!-- storage:begin -->", "<!-- storage:end -->"
MB = 1024 * 1024
DOSSIER = "000.00.12.H12-261127-0100"
BOUNDARY = "bench-boundary-7d1c"


def write_big_pdf(path: Path, payload_bytes: int) -> None:
    """A valid PDF with one page and an incompressible stream of ``payload_bytes``, written
    chunk by chunk (never whole in memory)."""
    offsets: list[int] = []
    with path.open("wb") as f:

        def obj(body: bytes) -> None:
            offsets.append(f.tell())
            f.write(body)

        f.write(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
        obj(b"1 0 obj\n<< /Type /Catalog /Pages 2 0 R /Payload 4 0 R >>\nendobj\n")
        obj(b"2 0 obj\n<< /Type /Pages /Kids [3 0 R] /Count 1 >>\nendobj\n")
        obj(b"3 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>\nendobj\n")
        offsets.append(f.tell())
        f.write(f"4 0 obj\n<< /Length {payload_bytes} >>\nstream\n".encode())
        left = payload_bytes
        block = os.urandom(MB)
        while left > 0:
            # Vary the block cheaply so nothing downstream can deduplicate or compress it.
            block = block[1:] + block[:1]
            f.write(block[: min(MB, left)])
            left -= min(MB, left)
        f.write(b"\nendstream\nendobj\n")
        xref = f.tell()
        f.write(f"xref\n0 {len(offsets) + 1}\n0000000000 65535 f \n".encode())
        for off in offsets:
            f.write(f"{off:010d} 00000 n \n".encode())
        trailer = f"trailer\n<< /Size {len(offsets) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n"
        f.write(trailer.encode() + b"%%EOF\n")


def api_upload(base: str, headers: dict[str, str], path: Path, component: str) -> dict:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="component"\r\n\r\n'
        f'{component}\r\n--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{path.name}"\r\nContent-Type: application/pdf\r\n\r\n'
    ).encode()
    tail = f"\r\n--{BOUNDARY}--\r\n".encode()
    size = path.stat().st_size
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    conn.putrequest("POST", f"/v1/dossiers/{DOSSIER}/attachments")
    for k, v in headers.items():
        conn.putheader(k, v)
    conn.putheader("Content-Type", f"multipart/form-data; boundary={BOUNDARY}")
    conn.putheader("Content-Length", str(len(head) + size + len(tail)))
    conn.endheaders()
    conn.send(head)
    with path.open("rb") as f:
        while chunk := f.read(MB):
            conn.send(chunk)
    conn.send(tail)
    response = conn.getresponse()
    body = json.loads(response.read())
    conn.close()
    if response.status != 201:
        raise RuntimeError(f"upload failed: {response.status} {body}")
    return body


def api_download(base: str, headers: dict[str, str], url: str, follow: bool = False) -> int:
    host, port = base.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=600)
    conn.request("GET", url, headers=headers)
    response = conn.getresponse()
    if follow and response.status == 307:
        location = response.getheader("Location") or ""
        response.read()
        conn.close()
        target = urllib.parse.urlsplit(location)
        conn = http.client.HTTPConnection(target.hostname, target.port, timeout=600)
        conn.request("GET", f"{target.path}?{target.query}")
        response = conn.getresponse()
    n = 0
    while chunk := response.read(MB):
        n += len(chunk)
    conn.close()
    if response.status != 200:
        raise RuntimeError(f"download failed: {response.status}")
    return n


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer rounds, 256 MB instead of 1 GB")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    rounds = 2 if args.quick else 9
    big_size = (256 if args.quick else 1024) * MB

    binary = find_binary()
    if binary is None:
        print("MinIO binary not found: run `make minio` first", file=sys.stderr)
        return 1
    work = Path(tempfile.mkdtemp(prefix="bench-storage-"))
    minio = MinioServer(binary).start()
    server: subprocess.Popen[bytes] | None = None
    try:
        bucket = f"bench-{uuid.uuid4().hex[:8]}"
        # A production-mode server set up the way an operator does it (README): migrate, add
        # the agency and a client key from the command line, then serve.
        env = {
            **os.environ,
            "SIGNING_SERVICE_MODE": "production",
            "SIGNING_SERVICE_DATA_DIR": str(work / "var"),
            "SIGNING_SERVICE_DATABASE_URL": f"sqlite:///{work / 'metadata.db'}",
            "SIGNING_SERVICE_KEY_PASSPHRASE": "bench-" + uuid.uuid4().hex,
            "SIGNING_SERVICE_AUDIT_KEY": "bench-audit-" + uuid.uuid4().hex,
            "SIGNING_SERVICE_STORAGE_URL": minio.url(bucket),
        }
        cli = [str(REPO / ".venv/bin/signing-service")]
        subprocess.run([*cli, "migrate"], env=env, check=True)
        subprocess.run(
            [*cli, "agency", "add", DOSSIER.rsplit("-", 2)[0], "Cơ quan đo hiệu năng"],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        made = subprocess.run(
            [
                *cli,
                "client",
                "add",
                "--agency",
                DOSSIER.rsplit("-", 2)[0],
                "--name",
                "bench",
                "--json",
            ],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        headers = {"Authorization": f"Bearer {json.loads(made.stdout)['api_key']}"}

        def start(extra: dict[str, str]) -> tuple[subprocess.Popen[bytes], str]:
            port = free_port()
            proc = subprocess.Popen(
                [*cli, "serve", "--port", str(port)],
                cwd=REPO,
                env={**env, **extra},
                stdout=(work / "server.log").open("ab"),
                stderr=subprocess.STDOUT,
            )
            base = f"http://127.0.0.1:{port}"
            wait_http(base + "/readyz", timeout=120)
            return proc, base

        server, base = start({})
        idle = rss_kib(server.pid)

        from minio import Minio

        sdk = Minio(minio.endpoint, minio.access_key, minio.secret_key, secure=False)
        medium = work / "tep-100mb.pdf"
        write_big_pdf(medium, 100 * MB)
        size = medium.stat().st_size

        def sdk_put() -> None:
            sdk.fput_object(bucket, f"sdk/{uuid.uuid4()}", str(medium))

        def sdk_get() -> None:
            response = sdk.get_object(bucket, "sdk/read")
            try:
                for _chunk in response.stream(MB):
                    pass
            finally:
                response.close()
                response.release_conn()

        sdk.fput_object(bucket, "sdk/read", str(medium))
        uploaded = api_upload(base, headers, medium, "other")  # warm-up, and the file to read
        put_sdk, put_api, get_sdk, get_api = [], [], [], []
        for _ in range(rounds):
            put_sdk.append(timed(sdk_put))
            put_api.append(timed(lambda: api_upload(base, headers, medium, "other")))
            get_sdk.append(timed(sdk_get))
            get_api.append(timed(lambda: api_download(base, headers, uploaded["content_url"])))

        # Downloads through a short-lived presigned URL (SIGNING_SERVICE_PRESIGNED_DOWNLOAD_
        # SECONDS): the service answers 307 and MinIO serves the bytes.
        presigning, presigned_base = start({"SIGNING_SERVICE_PRESIGNED_DOWNLOAD_SECONDS": "60"})
        get_presigned = []
        try:
            for _ in range(rounds):
                get_presigned.append(
                    timed(
                        lambda: api_download(
                            presigned_base, headers, uploaded["content_url"], follow=True
                        )
                    )
                )
        finally:
            presigning.terminate()
            presigning.wait(30)

        big = work / "tep-1gb.pdf"
        write_big_pdf(big, big_size)
        baseline = rss_kib(server.pid)
        samples: list[int] = []
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                samples.append(rss_kib(server.pid))
                time.sleep(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        big_time = timed(lambda: api_upload(base, headers, big, "other"))
        done.set()
        sampler.join()
        hwm = 0
        for line in Path(f"/proc/{server.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)
        minio.stop()

    def mbps(seconds: list[float]) -> float:
        return size / MB / statistics.median(seconds)

    up_ratio = mbps(put_api) / mbps(put_sdk)
    down_ratio = mbps(get_api) / mbps(get_sdk)
    presigned_ratio = mbps(get_presigned) / mbps(get_sdk)
    peak = max(samples) / 1024
    ok = up_ratio >= 0.8 and presigned_ratio >= 0.8 and peak < 150
    lines = [
        BEGIN,
        "## Dossier attachments: API against the `minio` SDK (same run)\n",
        f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `make bench` on: {machine()}. "
        "MinIO built from its pinned Go module, four erasure-coded drives on loopback, object "
        "lock on; one API server process in production mode (uvicorn, 1 worker, SQLite), set "
        "up with `signing-service migrate / agency add / client add`. The upload path spools "
        "the multipart body to disk while the same bytes go to MinIO as a multipart upload "
        "(hashed once), then screens the file (libmagic, PDF structure, active content), "
        "applies retention and commits the record and its audit entry. Streamed downloads "
        "read from MinIO and check the SHA-256 before the last chunk leaves; presigned "
        "downloads leave the bytes to MinIO (the client checks `X-Content-SHA256`). "
        f"Median of {rounds} rounds, a {size / MB:.0f} MB PDF (incompressible stream).\n",
        "| operation | API MB/s | `minio` SDK MB/s | API ÷ SDK (target ≥ 0.8) |",
        "|---|---|---|---|",
        f"| upload (`POST …/attachments` vs `fput_object`) | {mbps(put_api):.0f} | "
        f"{mbps(put_sdk):.0f} | {up_ratio:.2f} |",
        f"| download, presigned (`GET …/content` → 307 → MinIO, vs `get_object`) | "
        f"{mbps(get_presigned):.0f} | {mbps(get_sdk):.0f} | {presigned_ratio:.2f} |",
        f"| download, streamed by the service with its SHA-256 check (vs `get_object`) | "
        f"{mbps(get_api):.0f} | {mbps(get_sdk):.0f} | {down_ratio:.2f} |",
        "",
        f"Server memory during one {big_size / MB / 1024:.2f} GB upload "
        f"({big_size / MB / big_time:.0f} MB/s end to end), sampled every 20 ms:\n",
        "| resident memory of the server process | MB |",
        "|---|---|",
        f"| idle, just started | {idle / 1024:.0f} |",
        f"| before the upload (after the 100 MB rounds) | {baseline / 1024:.0f} |",
        f"| peak during the upload (target < 150) | {peak:.0f} |",
        f"| growth during the upload | {peak - baseline / 1024:.0f} |",
        f"| process lifetime peak (VmHWM) | {hwm / 1024:.0f} |",
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if not args.no_write:
        results = REPO / "bench/RESULTS.md"
        text = results.read_text() if results.exists() else "# Benchmark results\n"
        if BEGIN in text and END in text:
            text = text[: text.index(BEGIN)] + section + text[text.index(END) + len(END) :]
        else:
            text = text.rstrip() + "\n\n" + section + "\n"
        results.write_text(text)
    print("targets met" if ok else "TARGETS MISSED", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
