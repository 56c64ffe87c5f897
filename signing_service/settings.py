"""Typed settings, built once at start-up and injected.

Every setting can be given as an environment variable prefixed ``SIGNING_SERVICE_``.
Production mode refuses development keys, the development root and default secrets
(see :func:`Settings.check_production`).
"""

from __future__ import annotations

import json
import re
from enum import StrEnum
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
CERTS_DIR = REPO_ROOT / "certs"

# The passphrase of the development PKCS#12 files. It is public (it is in this file), so
# production mode refuses any profile that still uses it.
DEV_KEY_PASSPHRASE = "dev-only-passphrase"
# Development mode generates the audit MAC secret with this prefix (a copied development key is
# recognisable), in <data_dir>/audit-dev.key; production refuses both. Secrets are at least
# AUDIT_KEY_MIN_CHARS characters (e.g. `openssl rand -hex 32`).
DEV_AUDIT_KEY_PREFIX = "dev-audit-key:"
DEV_AUDIT_KEY_FILE = "audit-dev.key"
AUDIT_KEY_MIN_CHARS = 32


# pydantic's error types in Vietnamese: a malformed setting is reported naming the variable and
# the reason in the operator's language (issue 9: "SIGNING_SERVICE_PORT=abc" showed pydantic's
# English text). A type not listed here gets the generic reason.
_PYDANTIC_VI = {
    "int_parsing": "cần một số nguyên",
    "int_type": "cần một số nguyên",
    "int_from_float": "cần một số nguyên (không có phần thập phân)",
    "float_parsing": "cần một số",
    "float_type": "cần một số",
    "finite_number": "cần một số hữu hạn (không phải inf hay nan)",
    "bool_parsing": "cần true hoặc false",
    "bool_type": "cần true hoặc false",
    "string_type": "cần một chuỗi ký tự",
    "path_type": "cần một đường dẫn",
    "dict_type": "cần một đối tượng JSON {…}",
    "list_type": "cần một danh sách JSON […]",
    "model_type": "cần một đối tượng JSON {…}",
    "model_attributes_type": "cần một đối tượng JSON {…}",
    "json_invalid": "không phải JSON hợp lệ",
    "json_type": "không phải JSON hợp lệ",
    "missing": "thiếu giá trị bắt buộc",
    "extra_forbidden": "mục không được hỗ trợ",
    "enum": "giá trị không được hỗ trợ",
    "literal_error": "giá trị không được hỗ trợ",
}


def settings_error_vi(problem: Any) -> str:
    """The Vietnamese reason for one of pydantic's validation errors (an ``ErrorDetails``
    dict): a validator's own message (already Vietnamese), else the translation of the
    error type, with the allowed values or bounds when pydantic gives them."""
    kind = problem["type"]
    ctx = problem.get("ctx") or {}
    if kind in ("value_error", "assertion_error") and ctx.get("error") is not None:
        return str(ctx["error"])
    bounds = {
        "greater_than": "phải lớn hơn {gt}",
        "greater_than_equal": "phải lớn hơn hoặc bằng {ge}",
        "less_than": "phải nhỏ hơn {lt}",
        "less_than_equal": "phải nhỏ hơn hoặc bằng {le}",
        "string_too_short": "quá ngắn (ít nhất {min_length} ký tự)",
        "string_too_long": "quá dài (nhiều nhất {max_length} ký tự)",
        "string_pattern_mismatch": "không đúng dạng {pattern}",
    }
    if kind in bounds:
        try:
            return bounds[kind].format(**ctx)
        except (KeyError, IndexError):
            pass
    reason = _PYDANTIC_VI.get(kind, "giá trị không hợp lệ")
    if kind in ("enum", "literal_error") and ctx.get("expected"):
        # pydantic joins the last choice with an English "or".
        choices = str(ctx["expected"]).replace(" or ", ", ")
        reason += f" (chọn một trong {choices})"
    return reason


def _string_list(value: Any, shape: str) -> list[str]:
    """A list setting given as a JSON array or comma-separated text (empty or unset: ``[]``).
    Raises ``ValueError`` with the Vietnamese reason (``shape``: what the list must be)."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                raise ValueError("không đọc được danh sách (JSON không hợp lệ)") from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(shape)
    return value


def parse_retiring_digests(value: Any) -> list[str]:
    """``SIGNING_SERVICE_PRESERVATION_RETIRING_DIGESTS``: digest algorithm names (as
    asn1crypto gives them: ``sha1``, ``sha256``, ``sha3_256`` …), comma-separated or a JSON
    array; lower-cased. Raises ``ValueError`` with the Vietnamese reason for a name the
    algorithm policy does not know (a typo would silently retire nothing)."""
    from signing_service.signing.policy import ALLOWED_DIGESTS, WEAK_DIGESTS

    value = _string_list(value, "phải là danh sách tên thuật toán băm, ví dụ sha1,sha224")
    known = ALLOWED_DIGESTS | WEAK_DIGESTS
    names = [v.strip().lower() for v in value]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(
            f"thuật toán băm không có trong chính sách: {', '.join(unknown)} (dùng tên như "
            "sha1, sha224, sha256, sha3_256)"
        )
    return sorted(set(names))


def check_cron(value: str) -> str:
    """A five-field cron expression (minute hour day month weekday), as procrastinate's
    periodic tasks take it (croniter). Raises ``ValueError`` with the Vietnamese reason."""
    from croniter import croniter

    fields = value.split()
    if len(fields) != 5 or not croniter.is_valid(value):
        raise ValueError(
            "lịch cron phải có 5 trường hợp lệ (phút giờ ngày tháng thứ), ví dụ '17 2 * * *'"
        )
    return " ".join(fields)


def check_database_url(url: str) -> str:
    """``SIGNING_SERVICE_DATABASE_URL``: ``sqlite:///path`` (the directory must exist: a typo
    in the path is not silently created) or ``postgresql://…`` (``postgresql+psycopg://``).
    Raises ``ValueError`` with the Vietnamese reason."""
    from sqlalchemy import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise ValueError(
            "không phải địa chỉ cơ sở dữ liệu (dạng sqlite:////đường/dẫn/metadata.db hoặc "
            "postgresql://người-dùng:mật-khẩu@máy-chủ/tên-csdl)"
        ) from None
    if parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        database = parsed.database or ""
        if not database or database == ":memory:" or database.startswith("file:"):
            raise ValueError("SQLite cần đường dẫn tệp: sqlite:////đường/dẫn/metadata.db")
        return url
    if parsed.drivername in ("postgresql", "postgresql+psycopg"):
        if not parsed.host and not parsed.query.get("host"):
            raise ValueError("địa chỉ PostgreSQL thiếu tên máy chủ")
        if not parsed.database:
            raise ValueError("địa chỉ PostgreSQL thiếu tên cơ sở dữ liệu")
        return url
    raise ValueError(
        f"loại cơ sở dữ liệu {parsed.drivername!r} không được hỗ trợ (chỉ sqlite:// và "
        "postgresql://)"
    )


def check_listen_address(value: str) -> str:
    """``SIGNING_SERVICE_METRICS_ADDRESS``: ``HOST:PORT`` where HOST is an IP address
    (``127.0.0.1``, ``[::1]``) or ``localhost`` and PORT 1–65535; returned as given.
    A name that needs DNS is refused (the listener must bind where the operator said).
    Raises ``ValueError`` with a Vietnamese message."""
    import ipaddress

    text = value.strip()
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    valid_host = host == "localhost"
    if not valid_host:
        try:
            ipaddress.ip_address(host)
            valid_host = True
        except ValueError:
            valid_host = False
    if not sep or not valid_host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"{value!r} không phải địa chỉ lắng nghe hợp lệ: cần dạng ĐỊA_CHỈ_IP:CỔNG, ví dụ "
            "127.0.0.1:9464 hoặc [::1]:9464 (cổng 1–65535)"
        )
    return text


def check_storage_url(url: str) -> str:
    """``SIGNING_SERVICE_STORAGE_URL``: ``file:///absolute/path`` or
    ``s3://ACCESS:SECRET@host[:port]/bucket[?secure=false]`` with an S3-valid bucket name.
    Raises ``ValueError`` with the Vietnamese reason (the secret never in it)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        raise ValueError("địa chỉ kho lưu trữ không hợp lệ (cổng?)") from None
    if parts.scheme == "file":
        if not (parts.netloc + parts.path).startswith("/"):
            raise ValueError("file:// cần đường dẫn tuyệt đối: file:///đường/dẫn/objects")
        return url
    if parts.scheme == "s3":
        bucket = parts.path.strip("/")
        if not (parts.hostname and bucket and parts.username and parts.password):
            raise ValueError(
                "s3:// cần khóa truy cập, bí mật, máy chủ và bucket: "
                "s3://KHÓA:BÍ-MẬT@máy-chủ:cổng/bucket"
            )
        # S3's bucket naming rules (3–63 lower-case letters, digits, '.', '-'; not an address).
        if (
            not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket)
            or ".." in bucket
            or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket)
        ):
            raise ValueError(
                f"tên bucket {bucket!r} không hợp lệ (3–63 ký tự: chữ thường, số, '.', '-')"
            )
        return url
    raise ValueError(f"loại kho lưu trữ {parts.scheme!r} không được hỗ trợ (chỉ file:// và s3://)")


def source_checkout() -> Path | None:
    """The project checkout this code runs from (an editable install, ``make run``), or None
    when installed as a package (a wheel in site-packages, the container image)."""
    if (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "Makefile").is_file():
        return REPO_ROOT
    return None


def default_data_dir() -> Path:
    """Where development keeps its data when ``SIGNING_SERVICE_DATA_DIR`` is not set: the
    checkout's ``var`` (the folder ``make run`` uses, whatever the current folder), else the
    per-user data directory (``$XDG_DATA_HOME/signing-service``, by default
    ``~/.local/share/signing-service``, the XDG Base Directory specification)."""
    import os

    checkout = source_checkout()
    if checkout is not None:
        return checkout / "var"
    base = os.environ.get("XDG_DATA_HOME", "").strip()
    root = Path(base) if base and Path(base).is_absolute() else Path.home() / ".local" / "share"
    return (root / "signing-service").resolve()


class Mode(StrEnum):
    DEVELOPMENT = "development"
    PRODUCTION = "production"


class ExtraTrustAnchor(BaseModel):
    """A trust anchor configured beside the pinned ones: a PEM/DER file and the kind of
    signature its hierarchy vouches for (``public_duty``: Government CA; ``public``: NEAC)."""

    file: Path
    kind: Literal["public_duty", "public"] = "public"


def json_error_vi(error: json.JSONDecodeError) -> str:
    """``not valid JSON`` in Vietnamese, with where the decoder stopped (1-based)."""
    return f"không phải JSON hợp lệ (lỗi ở dòng {error.lineno}, cột {error.colno})"


def parse_certificate_fingerprints(value: Any) -> list[str]:
    """``SIGNING_SERVICE_EVIDENCE_SEAL_CERTIFICATES``: SHA-256 fingerprints of certificates
    (64 hex digits, colons and case ignored), comma-separated or a JSON array; returned
    lower-case without colons. Raises ``ValueError`` with the Vietnamese reason."""
    value = _string_list(
        value, "phải là danh sách dấu vân tay SHA-256 của chứng thư (64 chữ số hex)"
    )
    out: list[str] = []
    for item in value:
        digest = item.replace(":", "").strip().lower()
        if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
            raise ValueError(
                f"{item[:80]!r} không phải dấu vân tay SHA-256 của chứng thư (64 chữ số hex)"
            )
        out.append(digest)
    return out


def parse_extra_trust_anchors(value: Any) -> list[Any]:
    """``SIGNING_SERVICE_EXTRA_TRUST_ANCHORS`` in either documented form.

    A JSON list whose items are a path (kind ``public``) or ``{"file": path, "kind":
    "public_duty"|"public"}``; or paths separated by commas (kind ``public``); empty: none.
    Raises ``ValueError`` with the reason for malformed JSON (pydantic reports it as a
    configuration error naming the variable).
    """
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return []
        if text[0] in "[{":
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(json_error_vi(e)) from None
            if isinstance(value, dict):
                value = [value]
        else:
            return [{"file": part.strip()} for part in text.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError("cần một danh sách đường dẫn hoặc đối tượng {file, kind}")
    return [{"file": item} if isinstance(item, str | Path) else item for item in value]


# Names of the operator's allowlist entries (PKCS#11 modules, TSAs, remote signing providers):
# what an agency administrator's profile or the operator's `key add` refers to.
ALLOWLIST_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,62}$")
_SECRET_SOURCE = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+)$")


def _check_names(value: dict[str, Any]) -> dict[str, Any]:
    for name in value:
        if not ALLOWLIST_NAME.match(name):
            raise ValueError(
                f"tên {name!r} không hợp lệ (chữ thường không dấu, số, '.', '_', '-'; tối đa 63)"
            )
    return value


def check_http_url(url: str) -> str:
    """An operator-configured ``http(s)://host/…`` URL; ``ValueError`` (Vietnamese) otherwise."""
    return _check_http_url(url)


def _check_http_url(url: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError as e:
        raise ValueError(f"địa chỉ {url!r} không hợp lệ ({e})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.fragment:
        raise ValueError(f"địa chỉ {url!r} phải là http(s)://máy-chủ/…")
    return url


class CscProvider(BaseModel):
    """A remote signing provider (CSC API v2) the operator has a contract with: its base URL
    and where the service's own access token at the provider is read from (``env:NAME`` or
    ``file:/absolute/path``; refreshed by the operator's OAuth tooling)."""

    model_config = ConfigDict(extra="forbid")
    url: str
    token_source: str
    timeout_seconds: float = Field(default=10.0, gt=0, le=120)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        return _check_http_url(value).rstrip("/")

    @field_validator("token_source")
    @classmethod
    def _token_source(cls, value: str) -> str:
        if not _SECRET_SOURCE.match(value):
            raise ValueError("token_source phải có dạng env:TÊN_BIẾN hoặc file:/đường/dẫn")
        return value


def parse_trusted_proxies(value: Any) -> list[str]:
    """``SIGNING_SERVICE_TRUSTED_PROXIES``: a JSON list or comma-separated addresses and
    networks (``10.0.0.5``, ``10.0.0.0/24``, ``fd00::/8``). Raises ``ValueError`` naming a
    malformed entry (a configuration error naming the variable)."""
    import ipaddress

    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(json_error_vi(e)) from None
        else:
            value = [part for part in text.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError("cần một danh sách địa chỉ IP hoặc dải mạng")
    out = []
    for item in value:
        try:
            out.append(str(ipaddress.ip_network(str(item).strip(), strict=False)))
        except ValueError:
            raise ValueError(f"không phải địa chỉ IP hoặc dải mạng: {item!r}") from None
    return out


# A registered key's agency code (accounts.AGENCY_CODE) and name (keys.KEY_NAME).
REPORT_SEAL_KEY = re.compile(
    r"^(?P<agency>[0-9A-Z]{3}\.[0-9A-Z]{2}\.[0-9A-Z]{2}\.[0-9A-Z]{3})/(?P<name>[a-z0-9][a-z0-9-]{1,62})$"
)


def check_report_seal_key(value: str) -> str:
    """``SIGNING_SERVICE_REPORT_SEAL_KEY``: ``<agency code>/<key name>`` of the key registry,
    e.g. ``000.00.00.A01/con-dau-bao-cao``. Raises ``ValueError`` (Vietnamese) otherwise."""
    if not REPORT_SEAL_KEY.match(value.strip()):
        raise ValueError(
            "cần dạng <mã cơ quan>/<tên khóa> của một khóa đã đăng ký, ví dụ "
            "000.00.00.A01/con-dau-bao-cao"
        )
    return value.strip()


def parse_cors_origins(value: Any) -> list[str]:
    """``SIGNING_SERVICE_CORS_ORIGINS``: a JSON list or comma-separated exact origins
    (``https://cong.example.gov.vn``, ``http://127.0.0.1:3000``): scheme http(s), a host, an
    optional port, nothing else (no path, no trailing slash, no wildcard). ``*`` is refused:
    each portal is named (the Fetch standard's origin match is exact). Raises ``ValueError``."""
    from urllib.parse import urlsplit

    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except json.JSONDecodeError as e:
                raise ValueError(json_error_vi(e)) from None
        else:
            value = [part.strip() for part in text.split(",") if part.strip()]
    if not isinstance(value, list | tuple):
        raise ValueError("cần một danh sách nguồn gốc (origin) dạng https://máy-chủ[:cổng]")
    out: list[str] = []
    for item in value:
        origin = str(item).strip()
        if origin == "*":
            raise ValueError(
                "không chấp nhận '*': liệt kê chính xác từng nguồn gốc được phép, ví dụ "
                "https://cong.example.gov.vn"
            )
        try:
            parts = urlsplit(origin)
            parts.port  # noqa: B018 - raises ValueError for a malformed port
        except ValueError:
            parts = None
        if (
            parts is None
            or parts.scheme not in ("http", "https")
            or not parts.hostname
            or "*" in origin
            or parts.username is not None
            or parts.path
            or parts.query
            or parts.fragment
            or origin != origin.lower()
        ):
            raise ValueError(
                f"{origin!r} không phải nguồn gốc (origin) hợp lệ: cần đúng dạng "
                "http(s)://máy-chủ[:cổng], chữ thường, không có đường dẫn hay dấu '/' ở cuối"
            )
        out.append(origin)
    return out


class Settings(BaseSettings):
    # No inf/nan in any number: SIGNING_SERVICE_PUBLIC_RATE_PER_MINUTE=1e999 was accepted.
    model_config = SettingsConfigDict(
        env_prefix="SIGNING_SERVICE_", extra="ignore", allow_inf_nan=False
    )

    mode: Mode = Mode.DEVELOPMENT
    data_dir: Path = Path("var")
    database_url: str | None = None
    storage_url: str | None = None
    host: str = Field(default="127.0.0.1", min_length=1)
    port: int = Field(default=8000, ge=1, le=65535)
    # The public address of the service (or of the portal page that looks a document up): a
    # QR code's verification link is this followed by the signed document's id. Without it,
    # a request for a QR code is refused (QR_LINK_NOT_CONFIGURED).
    public_base_url: str | None = None
    # The issuing system named in QR codes (Thông tư 01/2023/TT-VPCP).
    issuing_system: str = Field(default="signing-service", min_length=1, max_length=128)

    # The service's own seal for the printable PDF verification reports (issue 11): a key of
    # the key registry, as ``<agency code>/<key name>`` (the operator registers it with
    # ``signing-service key add`` under the agency that operates the service). Unset: development
    # seals with the dev PKI's service seal; production answers REPORT_NOT_CONFIGURED (503).
    report_seal_key: str | None = None
    # The TSA (a name of SIGNING_SERVICE_TSAS) whose timestamp the sealed report carries
    # (default: the default TSA).
    report_tsa: str | None = None
    # Browser origins (exact scheme://host[:port]) allowed to call the public verification API
    # from their own pages (CORS). Empty: none. "*" is refused: an operator names each portal.
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # National document exchange limit: 50 MB a file. The limit of a document to sign that
    # carries no signature yet.
    max_upload_bytes: int = Field(default=50 * 1024 * 1024, ge=1)
    # What signing may add to a document (the signature's reservation, the B-LT/B-LTA
    # validation data and document timestamp: certificates, OCSP answers, CRLs). A document
    # that carries signatures (to verify, or to countersign) may be this much larger than
    # max_upload_bytes, so that every file the service produced is accepted back; a signed
    # result larger than that is refused (413) and not stored.
    signing_headroom_bytes: int = Field(default=8 * 1024 * 1024, ge=0)
    # Two-step (external) signing sessions expire after this many seconds.
    external_session_seconds: int = Field(default=600, ge=1, le=86_400)
    # Batch signing ("ký hàng loạt"): documents per request and total request size.
    max_batch_documents: int = Field(default=50, ge=1, le=10_000)
    max_batch_bytes: int = Field(default=200 * 1024 * 1024, ge=1)
    # Uploads up to this size are kept in memory while the request is parsed.
    upload_spool_bytes: int = Field(default=8 * 1024 * 1024, ge=0)

    # Dossier attachments: largest accepted file (streamed to storage, never held in memory).
    max_attachment_bytes: int = Field(default=2 * 1024 * 1024 * 1024, ge=1)
    # Dossier components (thành phần hồ sơ) accepted, each with its retention in days (0: none).
    # Objects are written with S3 object lock (governance mode) until then. The periods are
    # defaults to adjust to the agency's records schedule, not legal advice.
    attachment_components: dict[str, int] = Field(
        default_factory=lambda: {
            "application": 3650,  # đơn, tờ khai
            "supporting_document": 3650,  # giấy tờ kèm theo
            "scanned_copy": 3650,  # bản sao, bản số hóa
            "certificate": 3650,  # giấy chứng nhận, giấy phép
            "result": 7300,  # kết quả giải quyết TTHC
            "other": 1825,
        }
    )
    # Media types accepted for attachments (None: PDF, JPEG, PNG, TIFF, DOCX, XLSX, ODT, XML).
    attachment_media_types: list[str] | None = None
    # "reject" PDFs with active content, or "sanitize": keep a cleaned copy beside the original.
    pdf_active_content: Literal["reject", "sanitize"] = "reject"
    # clamd socket (path, unix:///path or tcp://127.0.0.1:3310); when set every upload is scanned.
    clamd_address: str | None = None
    clamd_timeout_seconds: float = Field(default=120.0, gt=0, le=3600)
    # Where infected uploads are kept for the security officer (default: <data_dir>/quarantine).
    quarantine_dir: Path | None = None
    # Where uploads are spooled while they are screened (default: <data_dir>/tmp).
    upload_tmp_dir: Path | None = None
    # > 0: attachment downloads answer with a presigned URL valid this many seconds (S3 only).
    # (S3 presigned URLs are valid at most 7 days.)
    presigned_download_seconds: int = Field(default=0, ge=0, le=7 * 86_400)
    # Retry-After sent with 503 answers when storage or a dependency is down.
    retry_after_seconds: int = Field(default=15, ge=1, le=86_400)
    # storage reconcile leaves objects younger than this alone (uploads in flight).
    reconcile_min_age_seconds: int = Field(default=3600, ge=0)
    # Evidence kept per signature (TT 15/2025 Art. 5–6, issue 12): years after the signing time
    # before `evidence purge` may remove it, unless an agency administrator set its own per
    # document kind (within the same bounds) or a legal hold keeps it. A default to adjust to
    # the agency's records schedule, not legal advice.
    # The operator's floor (red team 12 F6): no agency retention, no default and no purge goes
    # below it, whatever an agency administrator key asks for. Declared before
    # evidence_retention_years so that field's validator can compare the two.
    evidence_retention_min_years: int = Field(default=5, ge=1, le=100)
    evidence_retention_years: int = Field(default=10, ge=1, le=100)
    # Earlier certificates of the service's own seal (SHA-256 of the DER, hex, comma-separated
    # or a JSON array): `evidence verify` accepts a ZIP sealed by the current seal key's
    # certificate or by one of these, never by any other certificate that chains to the trust
    # store (red team 12 F1: an agency's own seal re-sealing a forged manifest).
    evidence_seal_certificates: Annotated[list[str], NoDecode] = Field(default_factory=list)

    # Fault injection for the crash-consistency test: kill the process at this upload step
    # ("screened", "object_written", "committed"). Refused in production mode.
    crash_at: Literal["received", "screened", "object_written", "committed"] | None = None

    trust_anchors_file: Path = CERTS_DIR / "trust" / "anchors.json"
    # Extra anchors (e.g. a test Government CA): see parse_extra_trust_anchors for the forms.
    extra_trust_anchors: Annotated[list[ExtraTrustAnchor], NoDecode] = Field(default_factory=list)

    dev_pki_config: Path = CERTS_DIR / "dev" / "certomancer.yml"
    # Where the development PKI's keys and exports live (default: <data_dir>/pki).
    dev_pki_dir: Path | None = None
    # SoftHSM2 token store of the development HSM (default: <data_dir>/softhsm).
    dev_softhsm_dir: Path | None = None
    dev_pki_host: str = Field(default="127.0.0.1", min_length=1)
    dev_pki_port: int = Field(default=8001, ge=1, le=65535)
    dev_pki_serve: bool = True

    # Passphrase of the development PKI's PKCS#12 exports (var/pki); development mode only
    # (production neither reads nor requires it).
    key_passphrase: SecretStr = SecretStr(DEV_KEY_PASSPHRASE)
    # The key store's master secret: it wraps each registered key's own random data key
    # (signing_service/signing/keys/sealing.py). Required in production as soon as a key the
    # service holds (PKCS#12, an HSM PIN) is registered; development generates one under
    # <data_dir>/keys when unset.
    key_store_secret: SecretStr | None = None

    # The operator's allowlists (JSON objects: name -> value). Agency administrators pick
    # among these by name; nothing they write names a library, a URL or a secret source.
    # PKCS#11 libraries that may be loaded into the server: {"softhsm": "/usr/lib/…/x.so"}.
    pkcs11_modules: dict[str, str] = Field(default_factory=dict)
    # RFC 3161 timestamp servers: {"dev": "http://127.0.0.1:8001/dev/tsa/tsa"}.
    tsas: dict[str, str] = Field(default_factory=dict)
    # The TSA of profiles that name none (default: the first of `tsas`).
    default_tsa: str | None = None
    # Remote signing providers: {"smartca": {"url": …, "token_source": "env:SMARTCA_TOKEN"}}.
    csc_providers: dict[str, CscProvider] = Field(default_factory=dict)

    # The audit chain's MAC secret, held by the operator and never by the database: the value
    # itself, or a file holding it (one of the two). Production refuses to start without one;
    # development generates <data_dir>/audit-dev.key (mode 0600) when neither is set.
    audit_key: SecretStr | None = None
    audit_key_file: Path | None = None
    # Where `audit seal` writes the chain-head seals (default: <data_dir>/audit-seals).
    audit_seal_dir: Path | None = None
    # RFC 3161 timestamp server for the seals (development default: the dev PKI's TSA).
    audit_tsa_url: str | None = None

    # Preservation of B-LTA documents (issue 12, services/preservation.py). A stored B-LTA
    # document is due for renewal when the TSA certificate of its newest timestamp ends within
    # this many days (default two years), or when that timestamp uses a digest algorithm listed
    # in `preservation_retiring_digests` (those the algorithm policy calls weak always are).
    preservation_horizon_days: int = Field(default=730, ge=1, le=36_500)
    preservation_retiring_digests: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # The TSA (a name of SIGNING_SERVICE_TSAS) that stamps renewals (default: the default TSA).
    preservation_tsa: str | None = None
    # `preservation worker` defers the renewals due on this cron schedule (five fields, server
    # time) when the schedule is on.
    preservation_schedule: bool = False
    preservation_cron: str = "17 2 * * *"
    # A failed renewal is retried at most this many times in all, waiting
    # `retry_base_seconds` ** (attempt + 1) seconds before each new try (exponential back-off).
    preservation_max_attempts: int = Field(default=6, ge=1, le=50)
    preservation_retry_base_seconds: int = Field(default=8, ge=2, le=3600)
    # A renewal whose worker sent no heartbeat for this long is handed to another worker.
    preservation_stalled_seconds: int = Field(default=60, ge=10, le=86_400)

    # The signer's (and a TSA's) chain judgement before signing is reused at most this long
    # (seconds), and never past the nextUpdate of the OCSP/CRL answers it relied on.
    signer_check_cache_seconds: int = Field(default=300, ge=0, le=86_400)
    # A timestamp token whose genTime differs from this server's clock by more is refused
    # (TIMESTAMP_TIME_SKEW).
    tsa_max_skew_seconds: int = Field(default=300, ge=1, le=86_400)
    fetch_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    # AIA caIssuers URL prefixes the verifier may fetch a missing issuer certificate from (a
    # document whose CMS carries only the signer's certificate): JSON list of http(s) URL
    # prefixes, e.g. ["http://ca.example.vn/certs/"]. Empty: never fetched (README
    # "Verification": what is fetched).
    ca_issuer_urls: list[str] = Field(default_factory=list, max_length=100)
    # Worker threads doing CPU-heavy signing/verification inside the API server.
    worker_threads: int = Field(default=4, ge=1, le=1024)
    # API server processes (uvicorn workers). One per core is the usual choice.
    workers: int = Field(default=1, ge=1, le=1024)
    # Optional second listener for Prometheus (HOST:PORT), served by `serve`'s own process
    # without authentication and without the database: bind it to loopback or an internal
    # network only. Unset: /metrics on the API port, for the operator key.
    metrics_address: str | None = None
    # Public verification runs in its own worker processes (0: in the API's threads), each
    # request within a time and address-space budget; at most this many requests wait.
    verification_processes: int = Field(default=1, ge=0, le=64)
    # Start those processes when the server starts (in the background), not on the first
    # verification; the test suite turns it off for its many short-lived servers.
    verification_prewarm: bool = True
    verification_timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    verification_max_pending: int = Field(default=8, ge=0, le=10_000)
    verification_memory_limit_bytes: int = Field(default=2 * 1024**3, ge=0)
    # A worker whose resident memory passed this after answering is replaced (0: never): what
    # a large verification leaves behind (glibc arenas, fragmentation) does not stay for good.
    verification_worker_max_rss_bytes: int = Field(default=200 * 1024**2, ge=0)
    # The verification workers run at this nice value: signing gets the CPU first.
    verification_nice: int = Field(default=10, ge=0, le=19)

    @field_validator(
        "data_dir",
        "quarantine_dir",
        "upload_tmp_dir",
        "dev_pki_dir",
        "dev_softhsm_dir",
        "audit_seal_dir",
    )
    @classmethod
    def _directories(cls, value: Path | None) -> Path | None:
        # Created on first use; an existing file in the way would fail later with OSError.
        if value is not None and value.exists() and not value.is_dir():
            raise ValueError(f"{value} đã có nhưng không phải thư mục")
        return value

    @model_validator(mode="after")
    def _recorded_dev_pki_port(self) -> Settings:
        """Development, SIGNING_SERVICE_DEV_PKI_PORT not given: the port the dev PKI under
        :attr:`pki_dir` was issued for (its ``state.json``), so a CLI command run without the
        variable beside ``make run`` on another port uses that PKI instead of re-issuing every
        certificate for 8001 (new user 12 finding 3: a stored document the CLI then called
        INDETERMINATE). Given: that port (the dev PKI is re-issued for it, new serials)."""
        if self.is_production or "dev_pki_port" in self.model_fields_set:
            return self
        try:
            state = json.loads((self.pki_dir / "state.json").read_text(encoding="utf-8"))
            port = urlsplit(str(state["url_prefix"])).port
        except (OSError, ValueError, KeyError, TypeError):
            return self
        if port is not None:
            # Not an assignment through pydantic: the port stays "not given".
            object.__setattr__(self, "dev_pki_port", port)
        return self

    @field_validator("trust_anchors_file", "dev_pki_config", "audit_key_file")
    @classmethod
    def _files(cls, value: Path | None) -> Path | None:
        # Read when the services are built (a missing file is reported there, naming it).
        if value is not None and value.is_dir():
            raise ValueError(f"{value} là thư mục, cần một tệp")
        return value

    @field_validator("key_passphrase", "key_store_secret", "audit_key")
    @classmethod
    def _secrets(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("giá trị rỗng (bỏ biến này đi nếu không dùng)")
        return value

    @field_validator("report_seal_key")
    @classmethod
    def _report_seal_key(cls, value: str | None) -> str | None:
        return check_report_seal_key(value) if value is not None else None

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _cors_origins(cls, value: Any) -> list[str]:
        return parse_cors_origins(value)

    @field_validator("default_tsa", "report_tsa")
    @classmethod
    def _default_tsa(cls, value: str | None) -> str | None:
        if value is not None:
            _check_names({value: None})
        return value

    @field_validator("preservation_tsa")
    @classmethod
    def _preservation_tsa(cls, value: str | None) -> str | None:
        if value is not None:
            _check_names({value: None})
        return value

    @field_validator("preservation_retiring_digests", mode="before")
    @classmethod
    def _retiring_digests(cls, value: Any) -> list[str]:
        return parse_retiring_digests(value)

    @field_validator("evidence_retention_years")
    @classmethod
    def _retention_above_minimum(cls, value: int, info: ValidationInfo) -> int:
        minimum = info.data.get("evidence_retention_min_years")
        if isinstance(minimum, int) and value < minimum:
            raise ValueError(
                f"thời hạn lưu trữ mặc định {value} năm thấp hơn mức tối thiểu {minimum} năm "
                "(SIGNING_SERVICE_EVIDENCE_RETENTION_MIN_YEARS)"
            )
        return value

    @field_validator("evidence_seal_certificates", mode="before")
    @classmethod
    def _seal_certificates(cls, value: Any) -> list[str]:
        return parse_certificate_fingerprints(value)

    @field_validator("preservation_cron")
    @classmethod
    def _preservation_cron(cls, value: str) -> str:
        return check_cron(value)

    @field_validator("metrics_address")
    @classmethod
    def _metrics_address(cls, value: str | None) -> str | None:
        return check_listen_address(value) if value is not None else None

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str | None) -> str | None:
        return check_database_url(value) if value is not None else None

    @field_validator("storage_url")
    @classmethod
    def _storage_url(cls, value: str | None) -> str | None:
        return check_storage_url(value) if value is not None else None

    @field_validator("public_base_url", "audit_tsa_url")
    @classmethod
    def _urls(cls, value: str | None) -> str | None:
        return _check_http_url(value) if value is not None else None

    @field_validator("clamd_address")
    @classmethod
    def _clamd_address(cls, value: str | None) -> str | None:
        # The forms screening/clamav.py connects to: a socket path or tcp://host:port.
        if value is None:
            return None
        if value.startswith("tcp://"):
            host, _, port = value.removeprefix("tcp://").rpartition(":")
            if not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ValueError("cần dạng tcp://máy-chủ:cổng")
        elif not value.removeprefix("unix://").startswith("/"):
            raise ValueError("cần đường dẫn socket tuyệt đối (unix:///đường/dẫn) hoặc tcp://…")
        return value

    @field_validator("attachment_components")
    @classmethod
    def _attachment_components(cls, value: dict[str, int]) -> dict[str, int]:
        if not value:
            raise ValueError("cần ít nhất một thành phần hồ sơ")
        for name, days in value.items():
            if not re.fullmatch(r"[a-z0-9_]{1,64}", name):
                raise ValueError(f"tên thành phần {name!r} không hợp lệ (chữ thường, số, '_')")
            if not 0 <= days <= 36_500:
                raise ValueError(f"thời hạn lưu của {name!r} phải trong khoảng 0–36500 ngày")
        return value

    @field_validator("attachment_media_types")
    @classmethod
    def _attachment_media_types(cls, value: list[str] | None) -> list[str] | None:
        for media_type in value or ():
            if not re.fullmatch(r"[a-z0-9][a-z0-9.+-]*/[a-z0-9][a-z0-9.+-]*", media_type):
                raise ValueError(f"{media_type!r} không phải kiểu nội dung (dạng loại/kiểu)")
        return value

    @field_validator("pkcs11_modules")
    @classmethod
    def _pkcs11_modules(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in _check_names(value).items():
            if not Path(path).is_absolute():
                raise ValueError(f"thư viện PKCS#11 {name!r} phải là đường dẫn tuyệt đối")
        return value

    @field_validator("tsas")
    @classmethod
    def _tsas(cls, value: dict[str, str]) -> dict[str, str]:
        for url in _check_names(value).values():
            _check_http_url(url)
        return value

    @field_validator("ca_issuer_urls")
    @classmethod
    def _ca_issuer_urls(cls, value: list[str]) -> list[str]:
        from signing_service.verification.revinfo_cache import _normalised

        for url in value:
            _check_http_url(url)
            if _normalised(url) is None:
                raise ValueError(
                    f"địa chỉ {url!r} phải là http(s)://máy-chủ[:cổng]/đường-dẫn/, không có "
                    "tên người dùng, '..' hay ký tự trắng"
                )
        return value

    @field_validator("csc_providers")
    @classmethod
    def _csc_providers(cls, value: dict[str, CscProvider]) -> dict[str, CscProvider]:
        return _check_names(value)

    # The edge (README "Limits"). Anonymous requests (no Authorization header, or the public
    # verification endpoint): at most this many at a time per server process (0: no limit).
    max_anonymous_requests: int = Field(default=16, ge=0, le=100_000)
    # ... and at most this many from one client (IPv4 address, IPv6 /64) (0: no limit).
    max_anonymous_requests_per_client: int = Field(default=4, ge=0, le=100_000)
    # POST /v1/verifications per client (IPv4 address, IPv6 /64): a token bucket of `burst`
    # refilled at `rate_per_minute` (0: no rate limit). Per server process.
    public_rate_per_minute: float = Field(default=30.0, ge=0)
    public_rate_burst: int = Field(default=10, ge=1, le=100_000)
    # Proxies whose X-Forwarded-For is believed (addresses or networks, JSON list or
    # comma-separated). Empty: the header is ignored and the TCP peer is the client.
    trusted_proxies: Annotated[list[str], NoDecode] = Field(default_factory=list)
    # HTTP: request line + headers at most this many bytes (431 beyond); they must arrive
    # within header_timeout_seconds of the connection opening (or of the previous answer).
    max_header_bytes: int = Field(default=32 * 1024, ge=1024, le=1024 * 1024)
    header_timeout_seconds: float = Field(default=10.0, gt=0, le=3600)
    # A request body may take body_timeout_seconds of waiting, plus one second for every
    # body_min_rate_bytes received (Apache mod_reqtimeout's model): 408 beyond.
    body_timeout_seconds: float = Field(default=30.0, ge=0, le=3600)
    body_min_rate_bytes: int = Field(default=16 * 1024, ge=1)
    # Idle keep-alive connections are closed after this many seconds.
    keep_alive_seconds: int = Field(default=5, ge=1, le=3600)
    # Open connections per server process (further ones are answered 503 and closed); also
    # kept below the process's open-file limit.
    max_connections: int = Field(default=4096, ge=16, le=1_000_000)
    # Anonymous verification counters are written to the database at most this often.
    verification_counts_flush_seconds: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("extra_trust_anchors", mode="before")
    @classmethod
    def _extra_trust_anchors(cls, value: Any) -> list[Any]:
        return parse_extra_trust_anchors(value)

    @field_validator("trusted_proxies", mode="before")
    @classmethod
    def _trusted_proxies(cls, value: Any) -> list[str]:
        return parse_trusted_proxies(value)

    @property
    def max_document_bytes(self) -> int:
        """Largest document with signatures accepted (verification, countersigning) and largest
        signed result stored: ``max_upload_bytes + signing_headroom_bytes``."""
        return self.max_upload_bytes + self.signing_headroom_bytes

    @property
    def is_production(self) -> bool:
        return self.mode is Mode.PRODUCTION

    @property
    def data_dir_configured(self) -> bool:
        """Whether ``SIGNING_SERVICE_DATA_DIR`` (or ``data_dir=``) was given."""
        return "data_dir" in self.model_fields_set

    @cached_property
    def resolved_data_dir(self) -> Path:
        """The data directory, absolute. Given: that one. Not given (development): ONE place
        whatever the current folder (:func:`default_data_dir`), so that a command run from
        another folder never creates a second ``./var`` with its own dev PKI, agencies and keys
        (issue 13: the same file verified TOTAL_PASSED in one folder and INDETERMINATE in
        another). Production requires it (:meth:`check_production`)."""
        if self.data_dir_configured:
            return self.data_dir.resolve()
        return default_data_dir()

    @property
    def pki_dir(self) -> Path:
        return (self.dev_pki_dir or self.resolved_data_dir / "pki").resolve()

    @property
    def softhsm_dir(self) -> Path:
        return (self.dev_softhsm_dir or self.resolved_data_dir / "softhsm").resolve()

    @property
    def quarantine_path(self) -> Path:
        return (self.quarantine_dir or self.resolved_data_dir / "quarantine").resolve()

    @property
    def upload_tmp_path(self) -> Path:
        return (self.upload_tmp_dir or self.resolved_data_dir / "tmp").resolve()

    @property
    def key_store_dir(self) -> Path:
        """Where registered keys' sealed material lives (mode 0700, files 0600)."""
        return self.resolved_data_dir / "keys"

    @property
    def audit_seals_path(self) -> Path:
        return (self.audit_seal_dir or self.resolved_data_dir / "audit-seals").resolve()

    @property
    def dev_audit_key_path(self) -> Path:
        return self.resolved_data_dir / DEV_AUDIT_KEY_FILE

    @property
    def dev_credentials_file(self) -> Path:
        return self.resolved_data_dir / "dev-credentials.json"

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.resolved_data_dir / 'metadata.db'}"

    @property
    def effective_storage_url(self) -> str:
        return self.storage_url or f"file://{self.resolved_data_dir / 'objects'}"

    @property
    def dev_pki_url(self) -> str:
        return f"http://{self.dev_pki_host}:{self.dev_pki_port}"

    def check_production(self) -> list[str]:
        """Problems that forbid starting in production mode (empty when fine)."""
        problems: list[str] = []
        if not self.is_production:
            return problems
        # SIGNING_SERVICE_KEY_PASSPHRASE is not required: it only opens the dev PKI's PKCS#12
        # exports, which production never reads (registered keys are sealed under
        # SIGNING_SERVICE_KEY_STORE_SECRET; `key add` takes each file's own passphrase).
        if not self.data_dir_configured:
            problems.append(
                "SIGNING_SERVICE_DATA_DIR phải được khai báo rõ ràng (thư mục dữ liệu của bản "
                "triển khai: kho khóa, niêm phong nhật ký, tệp tạm)"
            )
        if self.database_url is None:
            problems.append("SIGNING_SERVICE_DATABASE_URL phải được khai báo rõ ràng")
        if self.crash_at:
            problems.append("SIGNING_SERVICE_CRASH_AT chỉ dùng để kiểm thử (gây lỗi có chủ đích)")
        if self.key_store_secret is not None:
            master = self.key_store_secret.get_secret_value()
            if master == DEV_KEY_PASSPHRASE or len(master) < 32:
                problems.append(
                    "SIGNING_SERVICE_KEY_STORE_SECRET phải dài ít nhất 32 ký tự và không phải "
                    "giá trị mặc định dùng cho phát triển"
                )
        problems.extend(self._audit_key_problems())
        for anchor in self.extra_trust_anchors:
            if self.pki_dir in anchor.file.resolve().parents:
                problems.append(
                    f"SIGNING_SERVICE_EXTRA_TRUST_ANCHORS: {anchor.file} thuộc PKI thử nghiệm"
                )
        return problems

    def _audit_key_problems(self) -> list[str]:
        """Production: the audit chain must be keyed with the operator's own secret (the file
        itself is read, and checked again, when the services are built)."""
        value = self.audit_key.get_secret_value() if self.audit_key is not None else ""
        if value and self.audit_key_file is not None:
            return ["chỉ đặt một trong SIGNING_SERVICE_AUDIT_KEY và SIGNING_SERVICE_AUDIT_KEY_FILE"]
        if self.audit_key_file is not None:
            if self.audit_key_file.resolve() == self.dev_audit_key_path:
                return ["SIGNING_SERVICE_AUDIT_KEY_FILE trỏ tới khóa nhật ký của chế độ phát triển"]
            return []
        if not value:
            return [
                "chưa đặt SIGNING_SERVICE_AUDIT_KEY (hoặc SIGNING_SERVICE_AUDIT_KEY_FILE): nhật ký "
                "kiểm tra phải được khóa (HMAC) bằng bí mật do đơn vị vận hành giữ, ngoài cơ sở "
                "dữ liệu"
            ]
        if value.startswith(DEV_AUDIT_KEY_PREFIX):
            return ["SIGNING_SERVICE_AUDIT_KEY là khóa nhật ký của chế độ phát triển"]
        if len(value.strip()) < AUDIT_KEY_MIN_CHARS:
            return [
                f"SIGNING_SERVICE_AUDIT_KEY quá ngắn (cần ít nhất {AUDIT_KEY_MIN_CHARS} ký tự, "
                "ví dụ `openssl rand -hex 32`)"
            ]
        return []
