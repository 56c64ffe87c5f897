"""Seeded fuzz test of the API's signing, batch, two-step, attachment, document and admin
endpoints (issue 9, "Bad input"), on SQLite and PostgreSQL.

Each input is one request built by :class:`RequestFuzzer` from a ``random.Random(seed)``:
malformed multipart (random bytes, a wrong or missing boundary, cut short, duplicated and
missing parts, odd part headers), huge and odd field values (NUL and other control
characters, Vietnamese and other Unicode, lone surrogates in JSON, 10,000-character strings,
newline-terminated valid values, path traversal), wrong JSON types and nesting, hostile PDFs
(``tests/support/hostile.py``: nesting, reference chains, field trees, revision floods; PDFs
pyHanko cannot sign, ``tests/support/unsignable.py``; mutants of signed and unsigned PDFs,
``tests/support/mutations.py``), hostile profile JSON, bad and foreign credentials, odd ids.

Every answer must be in shape: no 5xx (a 503 only with ``Retry-After``: a dependency that is
genuinely unavailable), and every error a JSON body with a ``code`` and a Vietnamese
``message``. After the run, the store holds exactly the objects the database refers to (no
half-written request) and the audit chain verifies.

The seed is printed; ``SIGNING_SERVICE_API_FUZZ_SEED`` and ``SIGNING_SERVICE_API_FUZZ_INPUTS``
override it and the number of inputs per database (default 2,000: 4,000 per run of
``make test``). A failure names the seed and the input's index, which rebuild it.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import string
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from sqlalchemy import select

from signing_service import audit
from signing_service.pki.dev import DevPki
from signing_service.services import evidence
from signing_service.services.container import Services
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.store.models import Attachment, Document
from tests.support import hostile
from tests.support.multipart import multipart
from tests.support.mutations import MutationEngine, SeedPdf
from tests.support.pdfs import encrypted_pdf, make_pdf
from tests.support.unsignable import UNSIGNABLE

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("SIGNING_SERVICE_API_FUZZ_SEED", "20261130"))
INPUTS = int(os.environ.get("SIGNING_SERVICE_API_FUZZ_INPUTS", "2000"))
DOSSIER_A = "000.00.12.H12-261129-0001"
DOSSIER_B = "000.00.31.H26-261129-0001"


# --- the inputs' building blocks -----------------------------------------------------------


@dataclass
class Pools:
    """What the fuzzer draws from: PDFs, ids seen in earlier answers, credentials."""

    pdfs: list[tuple[str, bytes]]
    keys: dict[str, str]
    officer_pem: bytes
    key_names: list[str]
    document_ids: list[str] = field(default_factory=list)
    attachment_ids: list[str] = field(default_factory=list)
    session_ids: list[str] = field(default_factory=list)
    profile_names: list[str] = field(
        default_factory=lambda: ["agency-a-seal", "agency-a-hsm-seal", "agency-a-officer"]
    )


def build_pdfs(pki: DevPki, rng: random.Random) -> list[tuple[str, bytes]]:
    seal = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    plain = make_pdf(text="Quyet dinh so 7/QD-UBND")
    signed = asyncio.run(
        async_sign_pdf(plain, seal, SignOptions(level=SignatureLevel.B_B, tsa_url=pki.tsa_url))
    )
    pdfs: list[tuple[str, bytes]] = [
        ("valid", plain),
        ("valid-2-pages", make_pdf(pages=2)),
        ("signed", signed),
        ("encrypted", encrypted_pdf()),
        ("empty", b""),
        ("not-a-pdf", b"MZ\x90\x00" + bytes(rng.randrange(256) for _ in range(200))),
        ("header-only", b"%PDF-1.7\n"),
        ("truncated", plain[: len(plain) // 2]),
        ("deep-nesting", hostile.deep_nesting(3_000)),
        ("deep-nesting-dict", hostile.deep_nesting(3_000, "dict")),
        ("reference-chain", hostile.reference_chain(3_000)),
        ("deep-field-tree", hostile.deep_field_tree(2_000)),
        ("field-dag", hostile.field_dag_bomb(12)),
        ("many-revisions", hostile.many_revisions(count=300)),
        ("many-signature-fields", hostile.many_signature_fields(300)),
        ("byte-changed-in-signed-range", hostile.byte_changed_in_signed_range(signed)),
        ("content-bomb", hostile.content_stream_bomb(8 * hostile.MiB)),
    ]
    pdfs += [(f"unsignable: {name}", build()) for name, build in sorted(UNSIGNABLE.items())]
    engine = MutationEngine(
        [SeedPdf.of("plain", plain), SeedPdf.of("signed", signed)], rng.randrange(2**32), 0.0
    )
    pdfs += [(f"mutant {m.describe()}", m.data) for m in engine.generate(60)]
    return pdfs


ODD_TEXT: list[str] = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\n",
    "\r\n",
    "\t",
    "\x1b[31m",
    "\x7f",
    "x" * 256,
    "y" * 10_000,
    "Quyết định số 123/QĐ-UBND",
    "Nguyễn Văn An — Phó Giám đốc",
    "ا" * 40,
    "\u202eevil.pdf",
    "😀" * 30,
    "e\u0301" * 100,
    "../../../etc/passwd",
    "..\\..\\windows",
    "' OR 1=1 --",
    "%s%s%n%x",
    "{{7*7}}",
    "${jndi:ldap://x}",
    "<script>alert(1)</script>",
    "-1",
    "0",
    "99999999999999999999999",
    "1e309",
    "NaN",
    "null",
    "true",
    "B-T",
    "B-LTA",
    "B-B\n",
    "b-t",
    DOSSIER_A,
    DOSSIER_A + "\n",
    DOSSIER_A + "\x00",
    DOSSIER_B,
    "agency-a-seal",
    "agency-a-seal\n",
    "agency-b-seal",
    "application",
    "application\x00",
    "result",
]


def odd_text(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.7:
        return rng.choice(ODD_TEXT)
    if roll < 0.85:
        alphabet = string.printable + "ạăâđêôơưẠĂÂĐÊÔƠƯ\x00\x01\u2028\ufeff"
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 300)))
    return rng.choice(ODD_TEXT) + rng.choice(ODD_TEXT)


def odd_json(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.randrange(12)
    if roll == 0:
        return None
    if roll == 1:
        return rng.choice([True, False])
    if roll == 2:
        return rng.choice([0, -1, 2**63, -(2**64), 10**30])
    if roll == 3:
        return rng.choice([0.5, -1e308, 1e-320, float("inf")])
    if roll == 4 and depth < 3:
        return [odd_json(rng, depth + 1) for _ in range(rng.randrange(4))]
    if roll == 5 and depth < 3:
        return {odd_text(rng)[:40]: odd_json(rng, depth + 1) for _ in range(rng.randrange(4))}
    if roll == 6:
        return "\ud800" + odd_text(rng)  # a lone surrogate (valid JSON, invalid Unicode)
    return odd_text(rng)


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def latin1(value: str) -> bytes:
    return value.encode("latin-1", "replace")


# --- the requests --------------------------------------------------------------------------


@dataclass
class Request:
    kind: str
    method: str
    path: str
    headers: dict[str, Any] = field(default_factory=dict)
    content: bytes | None = None

    def describe(self) -> str:
        size = len(self.content) if self.content is not None else 0
        return f"{self.kind}: {self.method} {self.path[:120]!r} ({size} bytes)"


class RequestFuzzer:
    def __init__(self, rng: random.Random, pools: Pools) -> None:
        self.rng = rng
        self.pools = pools
        self.makers: list[tuple[int, Callable[[], Request]]] = [
            (14, self.sign),
            (6, self.batch),
            (4, self.external_start),
            (3, self.external_complete),
            (12, self.attachment_upload),
            (5, self.attachment_reads),
            (3, self.legal_hold),
            (8, self.admin),
            (3, self.documents),
            (6, self.malformed_multipart),
            (2, self.odd_route),
        ]
        self.weights = [w for w, _ in self.makers]

    def next(self) -> Request:
        maker = self.rng.choices([m for _, m in self.makers], self.weights)[0]
        return maker()

    # -- pieces ---------------------------------------------------------------------------

    def auth(self, role: str = "client") -> dict[str, Any]:
        roll = self.rng.random()
        if roll < 0.85:
            key = self.pools.keys["admin" if role == "admin" else "client"]
        elif roll < 0.9:
            key = self.pools.keys["other"]  # another agency's key
        elif roll < 0.95:
            return {}
        else:
            key = latin1(odd_text(self.rng)).decode("latin-1")
        return {"Authorization": ("Bearer " + key).encode("latin-1", "replace")}

    def pdf(self) -> tuple[str, bytes]:
        return self.rng.choice(self.pools.pdfs)

    def filename(self) -> bytes | str | None:
        roll = self.rng.random()
        if roll < 0.5:
            return "quyet-dinh.pdf"
        if roll < 0.6:
            return None
        return odd_text(self.rng) + self.rng.choice(["", ".pdf", ".PDF", ".docx"])

    def value(self, good: str) -> str:
        return good if self.rng.random() < 0.6 else odd_text(self.rng)

    def parts(self, parts: list[Any]) -> list[Any]:
        """Sometimes drop, duplicate or reorder parts; sometimes add a stranger."""
        parts = list(parts)
        if self.rng.random() < 0.15 and parts:
            parts.pop(self.rng.randrange(len(parts)))
        if self.rng.random() < 0.1 and parts:
            parts.append(self.rng.choice(parts))
        if self.rng.random() < 0.1:
            parts.append((odd_text(self.rng)[:50] or "x", odd_text(self.rng)))
        if self.rng.random() < 0.2:
            self.rng.shuffle(parts)
        return parts

    def form(self, kind: str, path: str, parts: list[Any], role: str = "client") -> Request:
        body, content_type = multipart(self.parts(parts))
        headers = {**self.auth(role), "Content-Type": content_type}
        return Request(kind, "POST", path, headers, body)

    def json_request(self, kind: str, method: str, path: str, body: Any, role: str) -> Request:
        roll = self.rng.random()
        if roll < 0.8:
            content = json.dumps(body).encode()  # lone surrogates escaped, as JSON allows
        elif roll < 0.85:
            content = deep_json(self.rng.choice([50, 5_000, 100_000])).encode()
        elif roll < 0.9:
            content = json.dumps(body).encode()[: self.rng.randrange(1, 30)]
        elif roll < 0.95:
            content = b"\xff\xfe" + os.urandom(self.rng.randrange(1, 200))
        else:
            content = b""
        content_type = self.rng.choice(
            ["application/json"] * 8 + ["text/plain", "application/x-www-form-urlencoded"]
        )
        headers = {**self.auth(role), "Content-Type": content_type}
        return Request(kind, method, path, headers, content)

    def id_for(self, pool: list[str]) -> str:
        roll = self.rng.random()
        if roll < 0.5 and pool:
            return self.rng.choice(pool)
        if roll < 0.7:
            return "00000000-0000-0000-0000-000000000000"
        return odd_text(self.rng) or "x"

    @staticmethod
    def quote(value: str) -> str:
        from urllib.parse import quote

        return quote(value, safe="") or "%20"

    # -- endpoints ------------------------------------------------------------------------

    def sign(self) -> Request:
        name, data = self.pdf()
        # Profiles the fuzz itself created (hostile settings that were saved) sign too.
        profile = self.rng.choice(self.pools.profile_names[3:] or ["agency-a-seal"])
        if self.rng.random() < 0.6:
            profile = "agency-a-seal"
        parts: list[Any] = [
            ("profile", self.value(profile)),
            ("file", self.filename(), data),
        ]
        if self.rng.random() < 0.5:
            parts.append(("level", self.value("B-B")))
        if self.rng.random() < 0.3:
            parts.append(("dossier_code", self.value(DOSSIER_A)))
        if self.rng.random() < 0.1:
            parts.append(("authorization", odd_text(self.rng)))
        if self.rng.random() < 0.3:
            return self.raw_sign(name, parts)
        request = self.form(f"sign {name}", "/v1/signatures", parts)
        if self.rng.random() < 0.2:
            request.headers["Idempotency-Key"] = latin1(self.value("lo-2026-0001"))
        return request

    def raw_sign(self, name: str, parts: list[Any]) -> Request:
        """The same request in the raw-body form (POST /v1/signatures/raw): the fields in the
        query string (now and then repeated, or one the endpoint does not take), the file as
        the body under a Content-Type that is mostly application/pdf."""
        from urllib.parse import quote

        query = []
        body = b""
        headers = dict(self.auth())
        for part in parts:
            if part[0] == "file":
                body = part[2]
                filename = part[1]
                if isinstance(filename, bytes):
                    filename = filename.decode("utf-8", "surrogateescape")
                if filename is not None:
                    query.append(("filename", filename))
            elif part[0] == "authorization":
                headers["X-Signer-Authorization"] = latin1(
                    part[1].replace("\r", "").replace("\n", "")
                )
            else:
                query.append((part[0], part[1]))
        if self.rng.random() < 0.1:
            query.append(self.rng.choice(query))
        if self.rng.random() < 0.05:
            query.append((odd_text(self.rng)[:20] or "x", "1"))
        headers["Content-Type"] = latin1(
            self.rng.choice(
                ["application/pdf"] * 8
                + ["application/pdf; charset=binary", "text/plain", odd_text(self.rng)]
            )
            .replace("\r", "")
            .replace("\n", "")
        )
        encoded = "&".join(
            f"{quote(str(k), safe='', errors='surrogatepass')}="
            f"{quote(str(v), safe='', errors='surrogatepass')}"
            for k, v in query
        )
        return Request(f"raw sign {name}", "POST", f"/v1/signatures/raw?{encoded}", headers, body)

    def batch(self) -> Request:
        count = self.rng.choice([0, 1, 2, 3, 5, 51])
        parts: list[Any] = [("profile", self.value("agency-a-seal")), ("level", "B-B")]
        names = []
        for _ in range(count):
            name, data = self.pdf() if self.rng.random() < 0.5 else self.pools.pdfs[0]
            names.append(name)
            parts.append(("files", self.filename(), data))
        request = self.form(f"batch of {count}", "/v1/signatures/batch", parts)
        if self.rng.random() < 0.3:
            # resends of one batch, another batch under a used key, hostile key values
            key = self.value("lo-2026-0001") if self.rng.random() < 0.7 else "x" * 123
            request.headers["Idempotency-Key"] = latin1(key)
        return request

    def external_start(self) -> Request:
        name, data = self.pdf()
        certificate = self.pools.officer_pem if self.rng.random() < 0.6 else os.urandom(300)
        parts: list[Any] = [
            ("profile", self.value("agency-a-officer")),
            ("file", self.filename(), data),
            ("certificate", "officer.pem", certificate),
            ("level", self.value("B-B")),
        ]
        return self.form(f"external start {name}", "/v1/signatures/external", parts)

    def external_complete(self) -> Request:
        session = self.id_for(self.pools.session_ids)
        body: Any = self.rng.choice(
            [
                {"signature": "AAAA"},
                {"cms": "MIIB"},
                {"signature": odd_json(self.rng)},
                {"signature": "AAAA", "cms": "AAAA"},
                {},
                odd_json(self.rng),
            ]
        )
        path = f"/v1/signatures/external/{self.quote(session)}/complete"
        return self.json_request("external complete", "POST", path, body, "client")

    def attachment_upload(self) -> Request:
        name, data = self.pdf()
        dossier = self.value(DOSSIER_A)
        parts: list[Any] = [
            ("component", self.value("application")),
            ("file", self.filename(), data),
        ]
        request = self.form(
            f"attachment {name}", f"/v1/dossiers/{self.quote(dossier)}/attachments", parts
        )
        if self.rng.random() < 0.4:
            key = self.value("mc-2026-0001") if self.rng.random() < 0.7 else "mc-2026-0002"
            request.headers["Idempotency-Key"] = latin1(key)
        return request

    def attachment_reads(self) -> Request:
        attachment = self.quote(self.id_for(self.pools.attachment_ids))
        choice = self.rng.randrange(5)
        if choice == 0:
            dossier = self.quote(self.value(DOSSIER_A))
            return Request(
                "attachment list", "GET", f"/v1/dossiers/{dossier}/attachments", self.auth()
            )
        if choice == 1:
            return Request("attachment meta", "GET", f"/v1/attachments/{attachment}", self.auth())
        if choice == 2:
            variant = self.rng.choice(["original", "sanitized", odd_text(self.rng)])
            path = f"/v1/attachments/{attachment}/content?variant={self.quote(variant)}"
            return Request("attachment content", "GET", path, self.auth())
        return Request("attachment delete", "DELETE", f"/v1/attachments/{attachment}", self.auth())

    def legal_hold(self) -> Request:
        attachment = self.quote(self.id_for(self.pools.attachment_ids))
        body = self.rng.choice(
            [
                {"enabled": True},
                {"enabled": False},
                {"enabled": odd_json(self.rng)},
                odd_json(self.rng),
            ]
        )
        return self.json_request(
            "legal hold", "PUT", f"/v1/attachments/{attachment}/legal-hold", body, "admin"
        )

    def profile_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.value(f"fuzz-{self.rng.randrange(10_000)}"),
            "key": self.rng.choice(self.pools.key_names)
            if self.rng.random() < 0.7
            else odd_text(self.rng),
            "level": self.value("B-B"),
        }
        if self.rng.random() < 0.3:
            body["tsa"] = self.rng.choice(["dev", "khong-co", odd_json(self.rng)])
        if self.rng.random() < 0.2:
            body["two_step"] = odd_json(self.rng) if self.rng.random() < 0.5 else True
        # The retired tenant-written fields (key URIs, TSA URLs, the revocation switch) and
        # the free-text ones.
        for name in ("key_uri", "tsa_url", "check_revocation", "reason", "location"):
            if self.rng.random() < 0.2:
                body[name] = odd_json(self.rng)
        if self.rng.random() < 0.3:
            body["appearance"] = self.rng.choice(
                [
                    odd_json(self.rng),
                    {"width": odd_json(self.rng)},
                    {"page": odd_json(self.rng), "x": odd_json(self.rng)},
                ]
            )
        if self.rng.random() < 0.1:
            body[odd_text(self.rng)[:30] or "k"] = odd_json(self.rng)
        return body

    def admin(self) -> Request:
        name = self.quote(self.value(self.rng.choice(self.pools.profile_names)))
        choice = self.rng.randrange(6)
        if choice == 0:
            return Request("profiles list", "GET", "/v1/admin/profiles", self.auth("admin"))
        if choice in (1, 2):
            body: Any = self.profile_body() if self.rng.random() < 0.85 else odd_json(self.rng)
            return self.json_request("profile create", "POST", "/v1/admin/profiles", body, "admin")
        if choice == 3:
            return Request("profile get", "GET", f"/v1/admin/profiles/{name}", self.auth("admin"))
        if choice == 4:
            body = {k: v for k, v in self.profile_body().items() if k != "name"}
            return self.json_request(
                "profile change", "PATCH", f"/v1/admin/profiles/{name}", body, "admin"
            )
        # Disabling the seeded profiles would starve the rest of the run: fuzz names only.
        target = self.quote(f"fuzz-{odd_text(self.rng)[:20]}")
        return Request(
            "profile disable", "DELETE", f"/v1/admin/profiles/{target}", self.auth("admin")
        )

    def documents(self) -> Request:
        document = self.quote(self.id_for(self.pools.document_ids))
        suffix = self.rng.choice(["", "/content"])
        return Request("document", "GET", f"/v1/documents/{document}{suffix}", self.auth())

    def malformed_multipart(self) -> Request:
        path = self.rng.choice(
            [
                "/v1/signatures",
                "/v1/signatures/batch",
                "/v1/signatures/external",
                f"/v1/dossiers/{DOSSIER_A}/attachments",
            ]
        )
        _name, data = self.pools.pdfs[0]
        good, content_type = multipart(
            [("profile", "agency-a-seal"), ("component", "application"), ("file", "a.pdf", data)]
        )
        boundary = content_type.split("boundary=")[1]
        choice = self.rng.randrange(9)
        if choice == 0:
            body = os.urandom(self.rng.randrange(0, 5_000))
        elif choice == 1:
            body = good[: self.rng.randrange(len(good))]
        elif choice == 2:
            body = good.replace(b"\r\n", b"\n")
        elif choice == 3:
            content_type = "multipart/form-data"  # no boundary
            body = good
        elif choice == 4:
            content_type = "multipart/form-data; boundary=" + "b" * 2_000
            body = good
        elif choice == 5:
            body = good.replace(b"Content-Disposition", b"Content-Disposition" + b"\x00" * 3)
        elif choice == 6:
            body = good.replace(b'name="file"', b"name=\"file\"; filename*=UTF-8''%00%ff.pdf")
        elif choice == 7:
            # A part header far longer than any field.
            body = good.replace(b"Content-Type: application/octet-stream", b"X: " + b"h" * 20_000)
        else:
            content_type = self.rng.choice(
                ["application/json", "text/plain", "application/pdf", odd_text(self.rng)]
            )
            body = good
        headers = {
            **self.auth(),
            "Content-Type": latin1(content_type.replace("\r", "").replace("\n", "")),
        }
        kind = f"malformed multipart #{choice} (boundary {boundary[:8]})"
        return Request(kind, "POST", path, headers, body)

    def odd_route(self) -> Request:
        method = self.rng.choice(["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"])
        path = self.rng.choice(
            [
                "/v1/signatures",
                "/v1/signatures/batch",
                "/v1/admin/profiles",
                f"/v1/dossiers/{self.quote(odd_text(self.rng))}/attachments",
                f"/v1/{self.quote(odd_text(self.rng))}",
                "/v1/dossiers//attachments",
            ]
        )
        return Request("odd route", method, path, self.auth(), os.urandom(self.rng.randrange(64)))


# --- the run -------------------------------------------------------------------------------


@dataclass
class Outcomes:
    statuses: Counter[int] = field(default_factory=Counter)
    codes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    findings: list[str] = field(default_factory=list)
    slowest: tuple[float, str] = (0.0, "")


def problem(request: Request, response: Any) -> str | None:
    """Why ``response`` is not in shape, or None."""
    status = response.status_code
    if status >= 500 and not (status == 503 and response.headers.get("Retry-After")):
        return f"HTTP {status}: {response.text[:300]}"
    if status < 400 or request.method == "HEAD":
        body = json_or_none(response)
        # A batch answers 200 with per-document errors: each in shape, none a hidden 500.
        for item in body.get("results", []) if isinstance(body, dict) else []:
            error = item.get("error") if isinstance(item, dict) else None
            if error is None:
                continue
            if error.get("code") == "INTERNAL_ERROR":
                return f"batch document {item.get('index')}: INTERNAL_ERROR"
            if not isinstance(error.get("message"), str) or error["message"].isascii():
                return f"batch document {item.get('index')}: {error} without a Vietnamese message"
        return None
    try:
        body = response.json()
    except ValueError:
        return f"HTTP {status} without a JSON body: {response.text[:200]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("code"), str) or not body["code"]:
        return f"HTTP {status} without a code: {str(body)[:200]}"
    message = body.get("message")
    if not isinstance(message, str) or message.isascii():
        return f"HTTP {status} {body['code']} without a Vietnamese message: {message!r}"
    return None


def json_or_none(response: Any) -> Any:
    if "json" not in response.headers.get("content-type", ""):
        return None
    try:
        return response.json()
    except ValueError:
        return None


def remember(pools: Pools, response: Any) -> None:
    """Ids from successful answers feed later requests (reads, deletes, completions)."""
    body = json_or_none(response) if response.status_code < 300 else None
    if not isinstance(body, dict):
        return
    if isinstance(body.get("document"), dict) and body["document"].get("id"):
        pools.document_ids.append(body["document"]["id"])
    if body.get("content_url", "").startswith("/v1/attachments/"):
        pools.attachment_ids.append(body["id"])
    if body.get("session_id"):
        pools.session_ids.append(body["session_id"])
    if body.get("key_source") and body.get("name"):
        pools.profile_names.append(body["name"])


def assert_consistent(services: Services) -> None:
    """No half-written request: the store holds exactly the objects the rows refer to, and
    the audit chain verifies."""
    with services.db.transaction() as session:
        keys = set(session.scalars(select(Document.storage_key)).all()) - {None}
        for row in session.scalars(select(Attachment)).all():
            keys.add(row.storage_key)
            if row.sanitized_key:
                keys.add(row.sanitized_key)
        # The evidence kept per signature (services/evidence.py).
        keys |= evidence.referenced_keys(session)
        chain = audit.verify(session)
    stored = set(services.store.list())
    assert stored == keys, (sorted(stored - keys)[:5], sorted(keys - stored)[:5])
    assert chain.ok, chain.problems


def test_fuzz_api(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pki = services.dev_pki
    assert pki is not None
    rng = random.Random(SEED)
    agencies = credentials["agencies"]
    pools = Pools(
        pdfs=build_pdfs(pki, rng),
        keys={
            "client": agencies[0]["api_key"],
            "admin": agencies[0]["admin_api_key"],
            "other": agencies[1]["api_key"],
        },
        officer_pem=pki.cert_path("officer").read_bytes(),
        # Agency A's registered keys, agency B's (must answer as unknown), none, hostile.
        key_names=[
            "agency-a-seal",
            "agency-a-hsm-seal",
            "nguyen-van-an",
            "agency-b-seal",
            "khong-co",
            "agency-a-seal\x00",
            f"file:{pki.p12_path('agency-a-seal')}",
        ],
    )
    fuzzer = RequestFuzzer(rng, pools)
    outcomes = Outcomes()
    started = time.perf_counter()
    for index in range(INPUTS):
        request = fuzzer.next()
        began = time.perf_counter()
        response = api.request(
            request.method, request.path, headers=request.headers, content=request.content
        )
        took = time.perf_counter() - began
        outcomes.statuses[response.status_code] += 1
        outcomes.kinds[request.kind.split(" ")[0]] += 1
        body = json_or_none(response)
        if response.status_code >= 400 and isinstance(body, dict):
            outcomes.codes[str(body.get("code"))] += 1
        if took > outcomes.slowest[0]:
            outcomes.slowest = (took, request.describe())
        found = problem(request, response)
        if found:
            outcomes.findings.append(f"seed {SEED} input #{index} {request.describe()}: {found}")
        remember(pools, response)
    elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(
            f"\nAPI fuzz ({services.settings.effective_database_url.split(':')[0]}): seed {SEED} "
            f"(SIGNING_SERVICE_API_FUZZ_SEED), {INPUTS} inputs in {elapsed:.1f} s "
            f"({1000 * elapsed / INPUTS:.0f} ms each; slowest {outcomes.slowest[0]:.2f} s: "
            f"{outcomes.slowest[1]})\n  statuses {dict(sorted(outcomes.statuses.items()))}\n"
            f"  kinds {dict(sorted(outcomes.kinds.items()))}\n"
            f"  codes {dict(outcomes.codes.most_common(25))}"
        )
    assert INPUTS >= 1000 or "SIGNING_SERVICE_API_FUZZ_INPUTS" in os.environ
    assert not outcomes.findings, "\n".join(outcomes.findings[:40])
    assert_consistent(services)
