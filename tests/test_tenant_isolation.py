"""Cross-agency matrix (issue 9, "Done means"): over every agency-scoped route and every key kind
(file, PKCS#11, remote signing, officer certificate), in both directions, agency X cannot sign
with, read, name or learn about anything of agency Y's. Each attempt is sent twice, once naming
Y's resource and once naming one that does not exist: the two answers must be byte-identical
(status, body), a 4xx, and nothing may be written. The test also fails when the API gains a
route it does not cover."""

from __future__ import annotations

import base64
import os
import re
import secrets
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from cryptography.hazmat.primitives.serialization import pkcs12

from signing_service.pki.dev import DevPki
from signing_service.pki.softhsm import SoftHsm
from signing_service.services.container import Services
from signing_service.services.keys import CscMaterial, OfficerMaterial, Pkcs11Material
from signing_service.settings import DEV_KEY_PASSPHRASE
from tests.conftest import CSC_OFFICER_PIN, make_settings
from tests.support.images import red_seal
from tests.support.keys import AGENCY_A, AGENCY_B, issue_dev_certificate, register
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.support.state import snapshot

B_PROVIDER_PIN = "135790"
B_TOKEN_ENV = "CSC_TEST_SERVICE_TOKEN_B"
DIGEST_INFO_PREFIX = bytes.fromhex("3031300d060960864801650304020105000420")
# Routes that hold no agency's data (health, public verification).
PUBLIC_ROUTES = {
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/v1/verifications"),
    # The registry's public record: anyone holding the link sees its public metadata.
    ("GET", "/v1/registry/{public_id}"),
}
# The platform operator's API (no agency's key may use it).
OPERATOR_PREFIX = "/v1/operator"
# The operator's routes outside that prefix: the Prometheus metrics (api/observe.py).
OPERATOR_ROUTES = {("GET", "/metrics")}


@pytest.fixture(scope="module")
def b_provider(dev_pki: tuple[DevPki, int]) -> Iterator[tuple[dict[str, str], bytes]]:
    """Agency B's remote signing provider (a second stand-in) with credential ``officer-b``;
    yields its configuration entry and the officer's certificate (PEM)."""
    from tests.support.csc_provider import ProviderServer, make_app

    pki, _ = dev_pki
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    cert_pem = issue_dev_certificate(
        pki, key.public_key(), "Phạm Thị Dung", "UBND xã Demo B", title="Phó Chủ tịch"
    )
    cert_der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)

    def sign(digest_info: bytes) -> bytes:
        digest = digest_info[len(DIGEST_INFO_PREFIX) :]
        return key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))

    token = secrets.token_urlsafe(16)
    os.environ[B_TOKEN_ENV] = token
    app = make_app(
        service_token=token,
        credential_id="officer-b",
        officer_pin=B_PROVIDER_PIN,
        certificates=[cert_der, pki.cert("interm").dump()],
        sign=sign,
    )
    server = ProviderServer(app, free_port()).start()
    yield (
        {"url": f"http://127.0.0.1:{server.port}/csc/v2", "token_source": f"env:{B_TOKEN_ENV}"},
        cert_pem,
    )
    server.stop()


@pytest.fixture
def services(
    tmp_path: Path,
    database_url: str,
    dev_pki: tuple[DevPki, int],
    csc_provider: dict[str, str],
    b_provider: tuple[dict[str, str], bytes],
) -> Iterator[Services]:
    settings = make_settings(
        tmp_path,
        database_url,
        dev_pki,
        csc_providers={"stand-in": csc_provider, "stand-in-b": b_provider[0]},
    )
    built = Services.build(settings)
    yield built
    built.close()


@dataclass
class Tenant:
    """One agency's keys, profiles and data, and how it signs for itself."""

    index: int
    code: str
    prefix: str
    keys: dict[str, str]  # kind -> key name
    officer_cert: bytes
    officer_key: Any
    remote_pin: str
    profiles: dict[str, str] = field(default_factory=dict)  # kind -> profile name
    documents: list[str] = field(default_factory=list)
    session_id: str = ""
    attachment_id: str = ""
    dossier_code: str = ""
    fingerprints: list[str] = field(default_factory=list)
    image: str = ""  # an appearance image (seal) the agency uploaded
    registered: list[str] = field(default_factory=list)  # registry public ids of its documents
    signatures: list[str] = field(default_factory=list)  # its signatures' ids (evidence)


def _client(credentials: dict[str, Any], t: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][t.index]['api_key']}"}


def _admin(credentials: dict[str, Any], t: Tenant) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][t.index]['admin_api_key']}"}


def _sign_digest(key: Any, digest_b64: str) -> str:
    digest = base64.b64decode(digest_b64)
    signature = key.sign(digest, padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))
    return base64.b64encode(signature).decode()


def _setup(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    softhsm: SoftHsm,
    b_provider: tuple[dict[str, str], bytes],
) -> tuple[Tenant, Tenant]:
    pki = services.dev_pki
    assert pki is not None
    # Agency A: the demo keys, and the tests' remote-signing officer.
    register(services, "tran-thi-binh", CscMaterial("stand-in", "officer-1"), AGENCY_A)
    officer_a, _, _ = pkcs12.load_key_and_certificates(
        pki.p12_path("officer").read_bytes(), DEV_KEY_PASSPHRASE.encode()
    )
    a = Tenant(
        index=0,
        code=AGENCY_A,
        prefix="a",
        keys={
            "file": "agency-a-seal",
            "pkcs11": "agency-a-hsm-seal",
            "csc": "tran-thi-binh",
            "officer": "nguyen-van-an",
        },
        officer_cert=pki.cert_path("officer").read_bytes(),
        officer_key=officer_a,
        remote_pin=CSC_OFFICER_PIN,
    )
    # Agency B: a seal of its own on the same HSM token (an operator's HSM holds several
    # agencies' keys), its own provider's officer and its own officer. (A second token would
    # re-initialise the PKCS#11 library in this process and drop every open session.)
    token = softhsm.ensure_key("demo-a-seal", "b-seal", key_id=b"\x02")
    token_public = serialization.load_der_public_key(token.public_key.dump())
    register(
        services,
        "b-hsm-seal",
        Pkcs11Material(
            uri="pkcs11:token=demo-a-seal;object=b-seal",
            module="softhsm",
            pin=token.pin_file.read_text().strip(),
            certificate=issue_dev_certificate(
                pki, token_public, "UBND xã Demo B (HSM)", "UBND xã Demo B"
            ),
            chain=pki.cert_path("interm").read_bytes(),
        ),
        AGENCY_B,
    )
    register(services, "b-remote", CscMaterial("stand-in-b", "officer-b"), AGENCY_B)
    officer_b = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    officer_b_pem = issue_dev_certificate(
        pki, officer_b.public_key(), "Lê Văn Cường", "UBND xã Demo B", title="Chủ tịch"
    )
    register(services, "le-van-cuong", OfficerMaterial(officer_b_pem), AGENCY_B)
    b = Tenant(
        index=1,
        code=AGENCY_B,
        prefix="b",
        keys={
            "file": "agency-b-seal",
            "pkcs11": "b-hsm-seal",
            "csc": "b-remote",
            "officer": "le-van-cuong",
        },
        officer_cert=officer_b_pem,
        officer_key=officer_b,
        remote_pin=B_PROVIDER_PIN,
    )
    for t in (a, b):
        admin = _admin(credentials, t)
        for kind, key in t.keys.items():
            name = f"{t.prefix}-{kind}"
            body: dict[str, Any] = {"name": name, "key": key, "level": "B-B"}
            if kind == "officer":
                body["two_step"] = True
            made = api.post("/v1/admin/profiles", headers=admin, json=body)
            assert made.status_code == 201, made.text
            t.profiles[kind] = name
            t.fingerprints.append(made.json()["certificate_sha256"])
        generic = {"name": f"{t.prefix}-two-step", "two_step": True, "level": "B-B"}
        assert api.post("/v1/admin/profiles", headers=admin, json=generic).status_code == 201
        t.profiles["two-step"] = f"{t.prefix}-two-step"
        # Each of Y's profiles signs for Y: the targets are real.
        client = _client(credentials, t)
        for kind in ("file", "pkcs11", "csc"):
            signed = api.post(
                "/v1/signatures",
                headers=client,
                data={"profile": t.profiles[kind], "authorization": t.remote_pin},
                files={"file": ("a.pdf", make_pdf())},
            )
            assert signed.status_code == 201, (kind, signed.text)
            t.documents += [signed.json()["document"]["id"], signed.json()["input_document"]["id"]]
            t.signatures.append(signed.json()["signature_id"])
            t.registered.append(signed.json()["registry"]["public_id"])
        started = api.post(
            "/v1/signatures/external",
            headers=client,
            data={"profile": t.profiles["officer"]},
            files={"file": ("a.pdf", make_pdf())},
        ).json()
        done = api.post(
            started["complete_url"],
            headers=client,
            json={"signature": _sign_digest(t.officer_key, started["digest"])},
        )
        assert done.status_code == 201, done.text
        t.documents.append(done.json()["document"]["id"])
        t.signatures.append(done.json()["signature_id"])
        t.registered.append(done.json()["registry"]["public_id"])
        pending = api.post(
            "/v1/signatures/external",
            headers=client,
            data={"profile": t.profiles["two-step"], "officer": t.keys["officer"]},
            files={"file": ("a.pdf", make_pdf())},
        )
        assert pending.status_code == 201, pending.text
        t.session_id = pending.json()["session_id"]
        t.dossier_code = f"{t.code}-261127-0001"
        stored = api.post(
            f"/v1/dossiers/{t.dossier_code}/attachments",
            headers=client,
            files={"file": ("don.pdf", make_pdf())},
            data={"component": "application"},
        )
        assert stored.status_code == 201, stored.text
        t.attachment_id = stored.json()["id"]
        t.image = f"con-dau-{t.prefix.lower()}"
        uploaded = api.post(
            "/v1/admin/appearance-images",
            headers=_admin(credentials, t),
            data={"name": t.image, "role": "seal", "width_mm": "34"},
            files={"file": ("seal.png", red_seal(), "image/png")},
        )
        assert uploaded.status_code == 201, uploaded.text
    return a, b


@dataclass(frozen=True)
class Attempt:
    """One request naming Y's resource and its control naming one that does not exist."""

    route: tuple[str, str]
    what: str
    method: str
    target: dict[str, Any]
    control: dict[str, Any]
    admin: bool = False


def _attempts(x: Tenant, y: Tenant, unregistered_cert: bytes) -> list[Attempt]:
    missing_id = str(uuid.uuid4())
    missing_profile = "khong-co-cau-hinh"
    missing_key = "khong-co-khoa"
    other_dossier = "000.00.99.H99-261127-0001"
    pdf = ("a.pdf", make_pdf())
    out: list[Attempt] = []

    def add(
        route: tuple[str, str],
        what: str,
        target: dict[str, Any],
        control: dict[str, Any],
        admin: bool = False,
    ) -> None:
        out.append(Attempt(route, what, route[0], target, control, admin))

    sign_route = ("POST", "/v1/signatures")
    raw_route = ("POST", "/v1/signatures/raw")
    batch_route = ("POST", "/v1/signatures/batch")
    start_route = ("POST", "/v1/signatures/external")
    for kind, name in y.profiles.items():
        # The raw-body form: the profile in the query string, the PIN in a header.
        raw_headers = {"Content-Type": "application/pdf", "X-Signer-Authorization": y.remote_pin}
        add(
            raw_route,
            f"sign with Y's {kind} profile (raw body)",
            {"url": f"{raw_route[1]}?profile={name}", "content": pdf[1], "headers": raw_headers},
            {
                "url": f"{raw_route[1]}?profile={missing_profile}",
                "content": pdf[1],
                "headers": raw_headers,
            },
        )
        for route, files in ((sign_route, {"file": pdf}), (batch_route, [("files", pdf)])):
            add(
                route,
                f"sign with Y's {kind} profile",
                {
                    "url": route[1],
                    "data": {"profile": name, "authorization": y.remote_pin},
                    "files": files,
                },
                {
                    "url": route[1],
                    "data": {"profile": missing_profile, "authorization": y.remote_pin},
                    "files": files,
                },
            )
        add(
            start_route,
            f"two-step with Y's {kind} profile",
            {
                "url": start_route[1],
                "data": {"profile": name, "officer": x.keys["officer"]},
                "files": {"file": pdf},
            },
            {
                "url": start_route[1],
                "data": {"profile": missing_profile, "officer": x.keys["officer"]},
                "files": {"file": pdf},
            },
        )
    for profile_kind in ("two-step", "officer"):
        own = x.profiles[profile_kind]
        add(
            start_route,
            f"X's {profile_kind} profile with Y's officer by name",
            {
                "url": start_route[1],
                "data": {"profile": own, "officer": y.keys["officer"]},
                "files": {"file": pdf},
            },
            {
                "url": start_route[1],
                "data": {"profile": own, "officer": missing_key},
                "files": {"file": pdf},
            },
        )
        add(
            start_route,
            f"X's {profile_kind} profile with Y's officer certificate",
            {
                "url": start_route[1],
                "data": {"profile": own},
                "files": {"file": pdf, "certificate": ("c.pem", y.officer_cert)},
            },
            {
                "url": start_route[1],
                "data": {"profile": own},
                "files": {"file": pdf, "certificate": ("c.pem", unregistered_cert)},
            },
        )
    complete = ("POST", "/v1/signatures/external/{session_id}/complete")
    add(
        complete,
        "complete Y's session",
        {"url": f"/v1/signatures/external/{y.session_id}/complete", "json": {"signature": "AAAA"}},
        {"url": f"/v1/signatures/external/{missing_id}/complete", "json": {"signature": "AAAA"}},
    )
    for doc in y.documents:
        for suffix, route in (
            ("", ("GET", "/v1/documents/{document_id}")),
            ("/content", ("GET", "/v1/documents/{document_id}/content")),
        ):
            add(
                route,
                "read Y's document",
                {"url": f"/v1/documents/{doc}{suffix}"},
                {"url": f"/v1/documents/{missing_id}{suffix}"},
            )
        # Extension and versions (issue 12): Y's document can neither be extended nor have
        # its versions listed; the level is a valid one, so only the document decides.
        add(
            ("GET", "/v1/documents/{document_id}/versions"),
            "list Y's document versions",
            {"url": f"/v1/documents/{doc}/versions"},
            {"url": f"/v1/documents/{missing_id}/versions"},
        )
        add(
            ("POST", "/v1/documents/{document_id}/extensions"),
            "extend Y's document",
            {"url": f"/v1/documents/{doc}/extensions", "json": {"level": "B-LTA"}},
            {"url": f"/v1/documents/{missing_id}/extensions", "json": {"level": "B-LTA"}},
        )
    # Evidence per signature (issue 12): Y's signature records and evidence cannot be read,
    # nor Y's signatures or documents put under (or released from) a legal hold.
    signature_route = "/v1/signatures/{signature_id}"
    for sig in y.signatures:
        for suffix in ("", "/evidence"):
            add(
                ("GET", signature_route + suffix),
                f"read Y's signature{suffix}",
                {"url": f"/v1/signatures/{sig}{suffix}"},
                {"url": f"/v1/signatures/{missing_id}{suffix}"},
            )
        for enabled in (True, False):
            add(
                ("PUT", signature_route + "/legal-hold"),
                f"legal hold {enabled} on Y's signature",
                {"url": f"/v1/signatures/{sig}/legal-hold", "json": {"enabled": enabled}},
                {"url": f"/v1/signatures/{missing_id}/legal-hold", "json": {"enabled": enabled}},
                admin=True,
            )
    for doc in y.documents:
        add(
            ("PUT", "/v1/documents/{document_id}/legal-hold"),
            "legal hold on Y's document",
            {"url": f"/v1/documents/{doc}/legal-hold", "json": {"enabled": True}},
            {"url": f"/v1/documents/{missing_id}/legal-hold", "json": {"enabled": True}},
            admin=True,
        )
    one = ("/v1/admin/profiles/{name}",)
    for name in y.profiles.values():
        add(
            ("GET", one[0]),
            "read Y's profile",
            {"url": f"/v1/admin/profiles/{name}"},
            {"url": f"/v1/admin/profiles/{missing_profile}"},
            admin=True,
        )
        add(
            ("PATCH", one[0]),
            "change Y's profile",
            {"url": f"/v1/admin/profiles/{name}", "json": {"reason": "Chiếm quyền"}},
            {"url": f"/v1/admin/profiles/{missing_profile}", "json": {"reason": "Chiếm quyền"}},
            admin=True,
        )
        add(
            ("DELETE", one[0]),
            "disable Y's profile",
            {"url": f"/v1/admin/profiles/{name}"},
            {"url": f"/v1/admin/profiles/{missing_profile}"},
            admin=True,
        )
    for kind, key in y.keys.items():
        two_step = kind == "officer"
        body = {"name": "muon-khoa", "key": key, "level": "B-B", "two_step": two_step}
        add(
            ("POST", "/v1/admin/profiles"),
            f"a profile naming Y's {kind} key",
            {"url": "/v1/admin/profiles", "json": body},
            {"url": "/v1/admin/profiles", "json": {**body, "key": missing_key}},
            admin=True,
        )
        own = x.profiles["officer" if two_step else "file"]
        add(
            ("PATCH", one[0]),
            f"X's profile switched to Y's {kind} key",
            {"url": f"/v1/admin/profiles/{own}", "json": {"key": key}},
            {"url": f"/v1/admin/profiles/{own}", "json": {"key": missing_key}},
            admin=True,
        )
    images = "/v1/admin/appearance-images"
    add(
        ("DELETE", images + "/{name}"),
        "delete Y's appearance image",
        {"url": f"{images}/{y.image}"},
        {"url": f"{images}/khong-co-anh"},
        admin=True,
    )
    seal_profile = {"name": "muon-dau", "level": "B-B", "key": x.keys["file"]}
    add(
        ("POST", "/v1/admin/profiles"),
        "a profile naming Y's seal image",
        {
            "url": "/v1/admin/profiles",
            "json": {**seal_profile, "appearance": {"kind": "seal", "seal_image": y.image}},
        },
        {
            "url": "/v1/admin/profiles",
            "json": {**seal_profile, "appearance": {"kind": "seal", "seal_image": "khong-co-anh"}},
        },
        admin=True,
    )
    # The registry of issued documents: Y's records cannot be read or changed, nor named as
    # the document that supersedes one of X's.
    missing_public_id = "a" * 26
    registered = "/v1/registered-documents/{public_id}"
    for public_id in y.registered:
        for method, suffix, body in (
            ("GET", "", None),
            ("POST", "/revoke", {"reason": "Chiếm quyền"}),
            ("POST", "/supersede", {"superseded_by": x.registered[0], "reason": "Chiếm quyền"}),
        ):
            extra = {"json": body} if body is not None else {}
            add(
                (method, registered + suffix),
                f"{method} Y's registered document{suffix}",
                {"url": f"/v1/registered-documents/{public_id}{suffix}", **extra},
                {"url": f"/v1/registered-documents/{missing_public_id}{suffix}", **extra},
            )
        add(
            ("POST", registered + "/supersede"),
            "X's document superseded by Y's",
            {
                "url": f"/v1/registered-documents/{x.registered[0]}/supersede",
                "json": {"superseded_by": public_id, "reason": "Chiếm quyền"},
            },
            {
                "url": f"/v1/registered-documents/{x.registered[0]}/supersede",
                "json": {"superseded_by": missing_public_id, "reason": "Chiếm quyền"},
            },
        )
    attachments = "/v1/dossiers/{dossier_code}/attachments"
    add(
        ("POST", attachments),
        "store into Y's dossier",
        {
            "url": f"/v1/dossiers/{y.dossier_code}/attachments",
            "data": {"component": "other"},
            "files": {"file": pdf},
        },
        {
            "url": f"/v1/dossiers/{other_dossier}/attachments",
            "data": {"component": "other"},
            "files": {"file": pdf},
        },
    )
    add(
        ("GET", attachments),
        "list Y's dossier",
        {"url": f"/v1/dossiers/{y.dossier_code}/attachments"},
        {"url": f"/v1/dossiers/{other_dossier}/attachments"},
    )
    att = "/v1/attachments/{attachment_id}"
    for method, suffix, kwargs, admin in (
        ("GET", "", {}, False),
        ("GET", "/content", {}, False),
        ("PUT", "/legal-hold", {"json": {"enabled": True}}, True),
        ("DELETE", "", {}, False),
    ):
        add(
            (method, att + suffix),
            f"{method} Y's attachment{suffix}",
            {"url": f"/v1/attachments/{y.attachment_id}{suffix}", **kwargs},
            {"url": f"/v1/attachments/{missing_id}{suffix}", **kwargs},
            admin=admin,
        )
    return out


def test_cross_agency_matrix(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    softhsm: SoftHsm | None,
    b_provider: tuple[dict[str, str], bytes],
) -> None:
    if softhsm is None:
        pytest.skip("SoftHSM2 is not installed (make test installs it)")
    pki = services.dev_pki
    assert pki is not None
    a, b = _setup(api, services, credentials, softhsm, b_provider)
    stranger = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    unregistered = issue_dev_certificate(pki, stranger.public_key(), "Người lạ", "Không rõ")

    covered: set[tuple[str, str]] = {
        ("GET", "/v1/admin/profiles"),
        ("GET", "/v1/admin/keys"),
        ("GET", "/v1/admin/appearance-images"),
        # Uploading names nothing of another agency's: the name space is per agency (an upload
        # under Y's image name is X's own image; tests/test_appearance_images.py).
        ("POST", "/v1/admin/appearance-images"),
        # Extending an uploaded file names nothing of another agency's and stores nothing
        # (tests/test_extension.py).
        ("POST", "/v1/extensions"),
        # The caller's own agency's evidence retention: no other agency's is named or reached
        # (services/evidence.py keys every row by the caller's agency).
        ("GET", "/v1/admin/evidence-retention"),
        ("PUT", "/v1/admin/evidence-retention"),
    }
    problems: list[str] = []
    before = snapshot(services)
    for x, y in ((b, a), (a, b)):
        # What X's administrator can list names nothing of Y's.
        y_strings = [*y.profiles.values(), *y.keys.values(), *y.fingerprints, y.code, y.image]
        listings = (
            "/v1/admin/profiles",
            "/v1/admin/keys",
            "/v1/admin/appearance-images",
            "/v1/admin/evidence-retention",
        )
        for listing in listings:
            text = api.get(listing, headers=_admin(credentials, x)).text
            problems += [f"{x.prefix} lists {s} at {listing}" for s in y_strings if s in text]
        for attempt in _attempts(x, y, unregistered):
            covered.add(attempt.route)
            headers = (_admin if attempt.admin else _client)(credentials, x)
            answers = []
            for request in (attempt.target, attempt.control):
                kwargs = dict(request)
                url = kwargs.pop("url")
                sent = {**headers, **kwargs.pop("headers", {})}
                answers.append(api.request(attempt.method, url, headers=sent, **kwargs))
            got, control = answers
            label = f"{x.prefix}→{y.prefix}: {attempt.what} ({attempt.method} {attempt.route[1]})"
            if (got.status_code, got.content) != (control.status_code, control.content):
                problems.append(f"{label}: {got.status_code} {got.text} ≠ {control.text}")
            elif not 400 <= got.status_code < 500:
                problems.append(f"{label}: answered {got.status_code}")
            for s in y_strings:
                if s in got.text:
                    problems.append(f"{label}: the answer names {s}")
    after = snapshot(services)
    assert (after.documents, after.signatures, after.attachments, after.objects) == (
        before.documents,
        before.signatures,
        before.attachments,
        before.objects,
    )
    assert not problems, "\n".join(problems)
    # Every registered document is still in force: no status change went through.
    for t in (a, b):
        for public_id in t.registered:
            assert api.get(f"/v1/registry/{public_id}").json()["status"] == "in_force"
    # Y's resources are untouched: each agency still signs with each of its profiles.
    for t in (a, b):
        for kind in ("file", "pkcs11", "csc"):
            again = api.post(
                "/v1/signatures",
                headers=_client(credentials, t),
                data={"profile": t.profiles[kind], "authorization": t.remote_pin},
                files={"file": ("a.pdf", make_pdf())},
            )
            assert again.status_code == 201, again.text
    # Every agency-scoped route of the API is in the matrix. The operator's routes are for no
    # agency at all: an agency's keys (client or admin) are refused there.
    spec = api.get("/openapi.json").json()
    routes = {(m.upper(), p) for p, item in spec["paths"].items() for m in item}
    for method, path in sorted(routes - covered - PUBLIC_ROUTES):
        if not path.startswith(OPERATOR_PREFIX) and (method, path) not in OPERATOR_ROUTES:
            continue
        url = re.sub(r"\{[^}]+\}", "x", path)
        for t in (a, b):
            for headers in (_client(credentials, t), _admin(credentials, t)):
                answer = api.request(method, url, headers=headers, json={})
                assert answer.status_code in (401, 403), (method, path, answer.text)
        covered.add((method, path))
    uncovered = routes - covered - PUBLIC_ROUTES
    assert not uncovered, f"routes missing from the cross-agency matrix: {sorted(uncovered)}"
