"""What an agency administrator can save (issue 9, items 2 and 4): nothing that makes the server
read a file, an environment variable, a library or a URL the operator did not configure, and
nothing that breaks signing. Each case of the issue's "Signing as another agency", "Reading the
server's secrets", "Taking the server down" and "Settings that break signing" asserts its code,
its HTTP status and that nothing was written.

"Nothing read" is shown two ways: by construction (the OpenAPI schema of the admin API has no
field that could name a path, module, URL or secret source, and every retired field is refused)
and by observation (hostile values in every field while Python's audit hooks record every file
opened, socket connected and process started, the environment records every variable read, a
TCP listener counts connections, and /proc/self/maps shows every library loaded).
"""

from __future__ import annotations

import collections.abc
import os
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select, update

from signing_service.services.container import Services
from signing_service.store.models import SigningProfile
from tests.support.pdfs import make_pdf
from tests.support.postgres import free_port
from tests.support.state import assert_nothing_written, snapshot

RETIRED_FIELDS = ("key_uri", "tsa_url", "check_revocation")
PROFILE_FIELDS = {"name", "key", "two_step", "level", "tsa", "reason", "location", "appearance"}
APPEARANCE_FIELDS = {
    "heading",
    "width",
    "height",
    "margin",
    "font_size",
    # Issue 10: the kind and its texts, images by registered name, a prepared field by name.
    "kind",
    "title",
    "unit",
    "copy_kind",
    "document_number",
    "signature_image",
    "seal_image",
    "field_name",
    "when_full",
}
# Words that would betray a field able to name a location, a library or a secret.
SUSPECT = ("uri", "url", "path", "file", "module", "pin", "token", "source", "secret", "env")
CANARY_VARIABLE = "SIGNING_SERVICE_TEST_CANARY_SECRET"
# Set beside the canary and named nowhere: libraries that scan the whole environment (requests
# looking for proxy settings) read both equally often; a lookup of the canary reads it alone.
CONTROL_VARIABLE = "SIGNING_SERVICE_TEST_CANARY_CONTROL"


def admin(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['admin_api_key']}"}


def client(credentials: dict[str, Any], i: int = 0) -> dict[str, str]:
    return {"Authorization": f"Bearer {credentials['agencies'][i]['api_key']}"}


def _profiles(services: Services) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(SigningProfile)) or 0)


# By construction.


def test_openapi_admin_schema_names_no_location_library_url_or_secret(api: Any) -> None:
    spec = api.get("/openapi.json").json()
    schemas = spec["components"]["schemas"]
    for name in ("ProfileIn", "ProfileChange"):
        schema = schemas[name]
        assert schema.get("additionalProperties") is False, name
        expected = PROFILE_FIELDS if name == "ProfileIn" else PROFILE_FIELDS - {"name"}
        assert set(schema["properties"]) == expected, name
    appearance = schemas["AppearanceSettings"]
    assert appearance.get("additionalProperties") is False
    assert set(appearance["properties"]) == APPEARANCE_FIELDS
    for field_name in PROFILE_FIELDS | APPEARANCE_FIELDS:
        assert not any(word in field_name for word in SUSPECT), field_name
    # Every string is bounded; the names are patterns that cannot hold ':' or '/'.
    profile = schemas["ProfileIn"]["properties"]
    for key in ("name", "key", "tsa"):
        options = profile[key].get("anyOf", [profile[key]])
        text = next(o for o in options if o.get("type") == "string")
        assert ":" not in text["pattern"] and "/" not in text["pattern"]
        assert text["maxLength"] <= 63
    for key in ("reason", "location"):
        text = next(o for o in profile[key]["anyOf"] if o.get("type") == "string")
        assert text["maxLength"] == 255
    # The key registry has no route: only the operator's command line registers keys.
    # (``/v1/operator/api-keys`` is the operator's API-key lifecycle, not signing keys.)
    registry = [path for path in spec["paths"] if "keys" in path.split("/")]
    assert registry == ["/v1/admin/keys"]
    for path in registry:
        assert set(spec["paths"][path]) == {"get"}, path


@pytest.mark.parametrize("retired", RETIRED_FIELDS)
@pytest.mark.parametrize("method", ["POST", "PATCH"])
def test_retired_fields_are_refused(
    api: Any, services: Services, credentials: dict[str, Any], retired: str, method: str
) -> None:
    assert services.dev_pki is not None
    value: Any = {
        "key_uri": f"file:{services.dev_pki.p12_path('agency-b-seal')}",
        "tsa_url": "http://127.0.0.1:9/tsa",
        "check_revocation": False,
    }[retired]
    before, profiles = snapshot(services), _profiles(services)
    if method == "POST":
        body = {"name": "cu", "key": "agency-a-seal", "level": "B-B", retired: value}
        response = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    else:
        response = api.patch(
            "/v1/admin/profiles/agency-a-seal", headers=admin(credentials), json={retired: value}
        )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert retired in response.json()["details"]["fields"]
    assert _profiles(services) == profiles
    assert_nothing_written(before, services)
    view = api.get("/v1/admin/profiles/agency-a-seal", headers=admin(credentials)).json()
    assert view["key"] == "agency-a-seal" and view["level"] == "B-T"  # unchanged


# By observation.


class RecordingEnviron(collections.abc.MutableMapping[str, str]):
    """``os.environ`` that records the names looked up."""

    def __init__(self, real: Any) -> None:
        self.real = real
        self.read: list[str] = []

    def __getitem__(self, key: str) -> str:
        if OBSERVED.active:
            self.read.append(key)
        return self.real[key]  # type: ignore[no-any-return]

    def __contains__(self, key: object) -> bool:
        if OBSERVED.active:
            self.read.append(str(key))
        return key in self.real

    def __setitem__(self, key: str, value: str) -> None:
        self.real[key] = value

    def __delitem__(self, key: str) -> None:
        del self.real[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.real)

    def __len__(self) -> int:
        return len(self.real)

    def copy(self) -> dict[str, str]:
        return dict(self.real)


@dataclass
class Observed:
    """What the process did while ``active``: files opened, sockets connected, processes
    started (Python's audit events)."""

    active: bool = False
    opened: list[str] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)
    started: list[str] = field(default_factory=list)


OBSERVED = Observed()
_HOOKED = False


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if not OBSERVED.active:
        return
    if event == "open" and args and isinstance(args[0], str | bytes | os.PathLike):
        OBSERVED.opened.append(os.fsdecode(args[0]))
    elif event == "socket.connect":
        OBSERVED.connected.append(repr(args[1]))
    elif event == "subprocess.Popen" and _service_helper(args[1]):
        # The service's own fixed helper processes (the PDFium text-layout worker, the qpdf
        # repair child): this interpreter with one of our modules, nothing a tenant chose.
        return
    elif event in ("subprocess.Popen", "os.system", "os.exec", "os.posix_spawn", "ctypes.dlopen"):
        OBSERVED.started.append(f"{event} {args[0]!r}")


_SERVICE_HELPERS = ("signing_service.signing.textlayout", "signing_service.signing.repair")


def _service_helper(argv: Any) -> bool:
    """``argv`` is exactly ``python -m <one of our helper modules> …`` (numbers only after)."""
    try:
        items = [os.fsdecode(a) for a in argv]
    except TypeError:
        return False
    return (
        len(items) >= 3
        and items[0] == sys.executable
        and items[1] == "-m"
        and items[2] in _SERVICE_HELPERS
        and all(a.isdigit() for a in items[3:])
    )


@pytest.fixture
def observed(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Observed, RecordingEnviron]]:
    global _HOOKED
    if not _HOOKED:
        sys.addaudithook(_hook)  # audit hooks cannot be removed: this one records when active
        _HOOKED = True
    environ = RecordingEnviron(os.environ)
    monkeypatch.setattr(os, "environ", environ)
    OBSERVED.opened.clear()
    OBSERVED.connected.clear()
    OBSERVED.started.clear()
    yield OBSERVED, environ
    OBSERVED.active = False


@pytest.fixture
def listener() -> Iterator[tuple[int, list[Any]]]:
    """A TCP server the hostile URLs point at; records every connection it accepts."""
    server = socket.socket()
    server.bind(("127.0.0.1", free_port()))
    server.listen(16)
    server.settimeout(0.2)
    accepted: list[Any] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                continue
            accepted.append(peer)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join(2)
    server.close()


def _maps() -> str:
    return Path("/proc/self/maps").read_text()


def test_no_setting_an_admin_can_save_reads_anything_unconfigured(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    tmp_path: Path,
    observed: tuple[Observed, RecordingEnviron],
    listener: tuple[int, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    record, environ = observed
    port, accepted = listener
    pki = services.dev_pki
    assert pki is not None
    canary_file = tmp_path / "bi-mat.txt"
    canary_file.write_text("mat-khau-bi-mat")
    evil_library = tmp_path / "libevil.so"
    module = services.dev_hsm_key.module if services.dev_hsm_key else "/usr/lib/libc.so.6"
    shutil.copy(module, evil_library)  # a real library: loading it would map it
    monkeypatch.setitem(environ.real, CANARY_VARIABLE, "gia-tri-bi-mat")
    monkeypatch.setitem(environ.real, CONTROL_VARIABLE, "khong-ai-doc")
    url = f"http://127.0.0.1:{port}/tsa"
    hostile_paths = [
        str(canary_file),
        str(evil_library),
        "/dev/zero",
        "/etc/passwd",
        str(pki.p12_path("agency-b-seal")),
        str(pki.directory / "keys" / "agency-b-seal.key.pem"),
    ]
    hostile_strings = [
        *hostile_paths,
        *(f"file:{p}" for p in hostile_paths),
        f"env:{CANARY_VARIABLE}",
        CANARY_VARIABLE,
        url,
        f"csc:{url}?credential=x&token-source=file:{canary_file}",
        f"csc:{url}?credential=x&token-source=env:{CANARY_VARIABLE}",
        f"pkcs11:token=demo-a-seal;object=seal?module-path={evil_library}"
        f"&pin-source=file:{canary_file}",
        "external:",
        "../../../../etc/passwd",
        "agency-b-seal",  # another agency's key
        "dev\x00",
        "x" * 300,
    ]
    # Every field, every hostile value, to create and to change a profile, and what signing and
    # two-step signing take as names; numbers and flags get the wrong types.
    bodies: list[dict[str, Any]] = []
    for value in hostile_strings:
        for name in ("key", "tsa", "reason", "location", "name", *RETIRED_FIELDS):
            bodies.append(
                {"name": "thu-nghiem", "key": "agency-a-seal", "level": "B-B", name: value}
            )
        bodies.append({"name": "thu-nghiem", "key": "agency-a-seal", "level": value})
        bodies.append({"name": "thu-nghiem", "key": "agency-a-seal", "two_step": value})
        for name in sorted(APPEARANCE_FIELDS):  # one order every run (a set's varies)
            bodies.append(
                {"name": "thu-nghiem", "key": "agency-a-seal", "appearance": {name: value}}
            )
        bodies.append({"name": "thu-nghiem", "key": "agency-a-seal", "appearance": value})
        bodies.append({"name": "thu-nghiem", "key": "agency-a-seal", "appearance": {value: 1}})
    before, maps = snapshot(services), _maps()
    record.active = True
    # Hostile names where signing takes names, before any of them could be a saved name.
    answers = []
    for value in hostile_strings:
        for path in ("/v1/signatures", "/v1/signatures/batch"):
            files: Any = {"file": ("a.pdf", make_pdf())}
            if path.endswith("batch"):
                files = [("files", ("a.pdf", make_pdf()))]
            answers.append(
                api.post(
                    path,
                    headers=client(credentials),
                    files=files,
                    data={"profile": value, "level": "B-B"},
                )
            )
        answers.append(
            api.post(
                "/v1/signatures/external",
                headers=client(credentials),
                files={"file": ("a.pdf", make_pdf())},
                data={"profile": "agency-a-officer", "officer": value},
            )
        )
    for body in bodies:
        answers.append(api.post("/v1/admin/profiles", headers=admin(credentials), json=body))
        changes = {k: v for k, v in body.items() if k != "name"}
        answers.append(
            api.patch("/v1/admin/profiles/agency-a-seal", headers=admin(credentials), json=changes)
        )
    record.active = False
    # Free text (reason, location, heading) is saved as text; everything else is refused.
    statuses = {a.status_code for a in answers}
    assert statuses <= {200, 201, 404, 409, 422}, sorted(statuses)
    assert sum(1 for a in answers if a.status_code == 422) > len(bodies)
    assert_nothing_written(before, services)
    keys_opened = [
        p
        for p in record.opened
        if Path(p).resolve().is_relative_to(services.settings.key_store_dir)
    ]
    assert not keys_opened, keys_opened  # saving a profile opens no key
    # Then every profile the administrator now has signs: with whatever text was saved in it,
    # signing too reads nothing it was not configured to.
    saved = api.get("/v1/admin/profiles", headers=admin(credentials)).json()
    record.active = True
    for profile in saved:
        if profile["two_step"]:
            continue
        signed = api.post(
            "/v1/signatures",
            headers=client(credentials),
            data={"profile": profile["name"]},
            files={"file": ("a.pdf", make_pdf())},
        )
        answers.append(signed)
        if (profile.get("appearance") or {}).get("field_name"):
            # A profile that names a prepared field signs only documents that have it: the
            # hostile text saved as a field name is looked up as a name, nothing more.
            assert signed.status_code == 422, (profile, signed.text)
            assert signed.json()["code"] == "SIGNATURE_FIELD_NOT_FOUND"
            continue
        assert signed.status_code == 201, (profile, signed.text)
    record.active = False
    leaked = [a.text for a in answers if "gia-tri-bi-mat" in a.text or "mat-khau" in a.text]
    assert not leaked
    opened_hostile = [
        p
        for p in record.opened
        if any(Path(p).resolve() == Path(h).resolve() for h in hostile_paths)
    ]
    assert not opened_hostile, opened_hostile
    assert not [c for c in record.connected if f", {port})" in c], record.connected
    assert not accepted
    assert not record.started, record.started
    assert environ.read.count(CANARY_VARIABLE) == environ.read.count(CONTROL_VARIABLE)
    assert str(evil_library) not in _maps() and str(evil_library) not in maps
    view = api.get("/v1/admin/profiles/agency-a-seal", headers=admin(credentials)).json()
    assert view["key"] == "agency-a-seal"


# The cases, one by one.


def test_signing_as_another_agency(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """Agency B's admin names agency A's seal, HSM key or officer: refused exactly as a key that
    does not exist; B's client cannot use A's profile."""
    before = snapshot(services)
    for key, two_step in (
        ("agency-a-seal", False),
        ("agency-a-hsm-seal", False),
        ("nguyen-van-an", True),
    ):
        for name in (key, "khong-co-khoa"):
            body = {"name": "muon", "key": name, "two_step": two_step, "level": "B-B"}
            response = api.post("/v1/admin/profiles", headers=admin(credentials, 1), json=body)
            assert (response.status_code, response.json()) == (
                422,
                {
                    "code": "UNKNOWN_KEY",
                    "message": "Không có khóa ký nào với tên này trong các khóa đã đăng ký "
                    "của cơ quan.",
                },
            )
    for profile in ("agency-a-seal", "agency-a-hsm-seal"):
        response = api.post(
            "/v1/signatures",
            headers=client(credentials, 1),
            data={"profile": profile},
            files={"file": ("a.pdf", make_pdf())},
        )
        assert (response.status_code, response.json()["code"]) == (404, "PROFILE_NOT_FOUND")
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "body",
    [
        {"key_uri": "csc:http://127.0.0.1:9/csc/v2?credential=x&token-source=file:/etc/shadow"},
        {"key_uri": "csc:http://127.0.0.1:9/csc/v2?credential=x&token-source=env:HOME"},
        {"key": "csc:http://127.0.0.1:9/csc/v2?credential=x&token-source=env:HOME"},
        {"tsa": "env:SIGNING_SERVICE_KEY_STORE_SECRET"},
    ],
    ids=["csc-token-file", "csc-token-env", "as-key-name", "as-tsa"],
)
def test_reading_the_servers_secrets(
    api: Any, services: Services, credentials: dict[str, Any], body: dict[str, str]
) -> None:
    before, profiles = snapshot(services), _profiles(services)
    response = api.post(
        "/v1/admin/profiles",
        headers=admin(credentials, 1),
        json={"name": "doc-bi-mat", "key": "agency-b-seal", "level": "B-B", **body},
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert _profiles(services) == profiles
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    "body",
    [
        {"key_uri": "file:/dev/zero"},
        {"key": "file:/dev/zero"},
        {"key_uri": "pkcs11:token=t;object=k?module-path=/tmp/evil.so&pin-source=env:X"},
        {"tsa_url": "http://169.254.169.254/latest/meta-data"},
        {"tsa": "http://169.254.169.254/latest/meta-data"},
        {"key_uri": "csc:http://169.254.169.254/csc/v2?credential=x"},
    ],
    ids=["dev-zero", "dev-zero-as-key", "module-path", "tsa-url", "tsa-as-url", "csc-url"],
)
def test_taking_the_server_down(
    api: Any, services: Services, credentials: dict[str, Any], body: dict[str, str]
) -> None:
    before, profiles = snapshot(services), _profiles(services)
    response = api.post(
        "/v1/admin/profiles",
        headers=admin(credentials, 1),
        json={"name": "sap-may", "key": "agency-b-seal", "level": "B-T", **body},
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_REQUEST")
    assert _profiles(services) == profiles
    assert_nothing_written(before, services)


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({"appearance": {"width": "abc"}}, "INVALID_REQUEST"),
        ({"appearance": {"width": -220}}, "INVALID_REQUEST"),
        ({"appearance": {"height": -52}}, "INVALID_REQUEST"),
        ({"appearance": {"margin": -24}}, "INVALID_REQUEST"),
        ({"appearance": {"width": 0}}, "INVALID_REQUEST"),
        ({"appearance": {"width": 590, "margin": 24}}, "INVALID_REQUEST"),  # off an A4 page
        ({"appearance": {"height": 800}}, "INVALID_REQUEST"),  # off a Letter page
        ({"appearance": {"font_size": 0}}, "INVALID_REQUEST"),
        ({"appearance": {"font_size": 9.5}}, "INVALID_REQUEST"),
        ({"appearance": {"width": 1e308}}, "INVALID_REQUEST"),
        ({"appearance": {"heading": "Ký\x00bởi"}}, "INVALID_REQUEST"),
        ({"appearance": {"heading": "Ký\nbởi"}}, "INVALID_REQUEST"),
        ({"appearance": {"heading": "x" * 65}}, "INVALID_REQUEST"),
        ({"appearance": {"colour": "red"}}, "INVALID_REQUEST"),
        ({"appearance": "to"}, "INVALID_REQUEST"),
        ({"reason": "Ký\x00"}, "INVALID_REQUEST"),
        ({"reason": "ý" * 256}, "INVALID_REQUEST"),
        ({"location": "x" * 256}, "INVALID_REQUEST"),
        ({"reason": "   "}, "INVALID_REQUEST"),
        ({"name": "a" * 64}, "INVALID_REQUEST"),
        ({"name": "co\x00dau"}, "INVALID_REQUEST"),
        ({"level": "B-Q"}, "INVALID_REQUEST"),
        ({"level": None}, "INVALID_REQUEST"),
        ({"two_step": "yes"}, "INVALID_REQUEST"),
        ({"key": 42}, "INVALID_REQUEST"),
        ({"tsa": "khong-co"}, "UNKNOWN_TSA"),
    ],
)
def test_settings_that_would_break_signing_are_refused(
    api: Any, services: Services, credentials: dict[str, Any], fields: dict[str, Any], code: str
) -> None:
    """Issue 9: ``{"width": "abc"}`` was saved and every signature then answered 500; negative
    sizes put the stamp off the page; NULs and overlong text answered 500 on PostgreSQL."""
    before, profiles = snapshot(services), _profiles(services)
    body = {"name": "hong", "key": "agency-a-seal", "level": "B-B", **fields}
    created = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert (created.status_code, created.json()["code"]) == (422, code), created.text
    changes = {k: v for k, v in fields.items() if k != "name"}
    if changes:
        changed = api.patch(
            "/v1/admin/profiles/agency-a-seal", headers=admin(credentials), json=changes
        )
        assert (changed.status_code, changed.json()["code"]) == (422, code), changed.text
    assert _profiles(services) == profiles
    assert_nothing_written(before, services)
    signed = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert signed.status_code == 201, signed.text  # the saved profile still signs


@pytest.mark.parametrize(
    "appearance",
    [
        {"width": 40, "height": 20, "margin": 0, "font_size": 24},
        {"width": 595, "height": 792, "margin": 0, "font_size": 6},
        {"width": 395, "height": 592, "margin": 200},
        {"heading": "Người ký thay mặt Chủ tịch Ủy ban nhân dân tỉnh, thừa ủy quyền ký"[:64]},
        {},
    ],
)
def test_a_profile_that_saves_signs(
    api: Any, services: Services, credentials: dict[str, Any], appearance: dict[str, Any]
) -> None:
    """The extremes of every range: saved, then signed and verified intact."""
    body = {
        "name": "bien",
        "key": "agency-a-seal",
        "level": "B-B",
        "reason": "Lý do ký số " + "ữ" * 243,
        "location": "Ủy ban nhân dân xã Đắk Ơ, huyện Bù Gia Mập, tỉnh Bình Phước",
        "appearance": appearance,
    }
    assert len(body["reason"]) == 255
    created = api.post("/v1/admin/profiles", headers=admin(credentials), json=body)
    assert created.status_code == 201, created.text
    signed = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "bien"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert signed.status_code == 201, signed.text
    content = api.get(signed.json()["document"]["download_url"], headers=client(credentials))
    report = api.post("/v1/verifications", files={"file": ("s.pdf", content.content)}).json()
    assert report["signatures"][0]["checks"]["integrity"]["status"] == "PASSED", report


def test_a_stored_profile_broken_before_these_rules_is_refused_not_500(
    api: Any, services: Services, credentials: dict[str, Any]
) -> None:
    """A row written before validation existed (or by hand): signing answers 422."""
    with services.db.transaction() as session:
        session.execute(
            update(SigningProfile)
            .where(SigningProfile.name == "agency-a-seal")
            .values(appearance={"width": "abc"})
        )
    before = snapshot(services)
    response = api.post(
        "/v1/signatures",
        headers=client(credentials),
        data={"profile": "agency-a-seal"},
        files={"file": ("a.pdf", make_pdf())},
    )
    assert (response.status_code, response.json()["code"]) == (422, "INVALID_PROFILE")
    assert_nothing_written(before, services)
    # The administrator repairs it with a valid stamp.
    fixed = api.patch(
        "/v1/admin/profiles/agency-a-seal",
        headers=admin(credentials),
        json={"appearance": {"width": 200}},
    )
    assert fixed.status_code == 200, fixed.text
