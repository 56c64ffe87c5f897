"""Command line: ``signing-service serve | migrate | agency add | client add/list/revoke/rotate |
operator-key add | key add/list/disable | sign | verify | pki init | audit verify/seal |
storage reconcile | trust list | verification stats | preservation plan/run/worker |
evidence verify/purge | backup | restore``.

Exit codes: ``verify`` → 0 TOTAL_PASSED, 1 TOTAL_FAILED, 2 INDETERMINATE or no signature;
3 usage error, 4 input/output error, 5 refused by the service (its code is printed),
6 configuration refused: a malformed or unusable setting (named in the message), a database
that cannot be reached, production checks.
"""

from __future__ import annotations

import argparse
import errno
import json
import logging
import os
import re
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import IO, TYPE_CHECKING, TypeVar

from signing_service import errors

if TYPE_CHECKING:
    from signing_service.services.accounts import IssuedKey
    from signing_service.services.container import Services
    from signing_service.services.keys import KeyView
    from signing_service.settings import Settings

T = TypeVar("T")

EXIT_PASSED, EXIT_FAILED, EXIT_UNDECIDED = 0, 1, 2
EXIT_USAGE, EXIT_IO, EXIT_REFUSED, EXIT_CONFIG = 3, 4, 5, 6
# verify only, signatures passed but the registry says otherwise (new user 14 F10): the
# document was revoked or superseded (the page: "Không hợp lệ"), or the file holds content
# added after issue by someone else (the page: "Chưa xác định được"). Distinct from 1 ("the
# signatures fail": a forgery or a damaged file) so that a script tells them apart, and not 0.
EXIT_NOT_IN_FORCE, EXIT_CONTENT_ADDED = 7, 8
# Every configuration refusal (exit 6) starts so, then names the setting.
CONFIG_PREFIX = "Cấu hình không hợp lệ"

VERDICT_EXIT = {
    "TOTAL_PASSED": EXIT_PASSED,
    "TOTAL_FAILED": EXIT_FAILED,
    "INDETERMINATE": EXIT_UNDECIDED,
    "NO_SIGNATURE": EXIT_UNDECIDED,
}
VERDICT_VI = {
    "TOTAL_PASSED": "HỢP LỆ",
    "TOTAL_FAILED": "KHÔNG HỢP LỆ",
    "INDETERMINATE": "CHƯA XÁC ĐỊNH",
    "NO_SIGNATURE": "KHÔNG CÓ CHỮ KÝ SỐ",
}
STATUS_VI = {
    "PASSED": "đạt",
    "FAILED": "KHÔNG ĐẠT",
    "INDETERMINATE": "chưa xác định",
    "NOT_APPLICABLE": "không áp dụng",
}


# argparse's own texts (usage, section titles, its error messages) in Vietnamese. argparse
# looks them up through gettext at call time, so its module-level ``_``/``ngettext`` are
# replaced; a text without a translation stays as it was.
_ARGPARSE_VI = {
    "usage: ": "cách dùng: ",
    "positional arguments": "tham số",
    "options": "tùy chọn",
    "show this help message and exit": "hiện hướng dẫn này rồi thoát",
    "the following arguments are required: %s": "thiếu tham số bắt buộc: %s",
    "unrecognized arguments: %s": "tham số không nhận ra: %s",
    "invalid choice: %(value)r (choose from %(choices)s)": (
        "giá trị không hợp lệ: %(value)r (chọn một trong %(choices)s)"
    ),
    "expected one argument": "cần đúng một giá trị",
    "expected at least one argument": "cần ít nhất một giá trị",
    "expected at most one argument": "cần nhiều nhất một giá trị",
    "argument %(argument_name)s: %(message)s": "tham số %(argument_name)s: %(message)s",
    "invalid %(type)s value: %(value)r": "giá trị %(type)s không hợp lệ: %(value)r",
    "not allowed with argument %s": "không dùng cùng tham số %s",
    "one of the arguments %s is required": "cần một trong các tham số %s",
    "ambiguous option: %(option)s could match %(matches)s": (
        "tùy chọn mơ hồ: %(option)s có thể là %(matches)s"
    ),
    "ignored explicit argument %r": "bỏ qua giá trị %r",
}


def _vi(text: str) -> str:
    return _ARGPARSE_VI.get(text, text)


def _vi_plural(singular: str, plural: str, n: int) -> str:
    if singular == "expected %s argument":
        return "cần %s giá trị"
    return singular if n == 1 else plural


argparse._ = _vi  # type: ignore[attr-defined]
argparse.ngettext = _vi_plural  # type: ignore[attr-defined]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        self.print_usage(sys.stderr)
        print(f"Lỗi cú pháp lệnh: {message}", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _shown_time(value: object) -> str:
    """A time for people: ISO 8601 at +07:00 in whole seconds (new user 14 F11: stored times
    carry microseconds, ``…15:31:31.170325+07:00``). A ``datetime`` (naive: UTC, how times are
    stored) or an ISO 8601 string (without an offset: kept as given); anything else is shown
    as it is. The ``--json`` outputs keep the full value."""
    from signing_service.timefmt import aware_utc, vietnam_time

    moment = value
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return value
        if moment.tzinfo is None:
            # A report's time without an offset is shown as it was given, in whole seconds.
            return moment.replace(microsecond=0).isoformat()
    if not isinstance(moment, datetime):
        return str(value)
    return vietnam_time(aware_utc(moment))


def _settings() -> Settings:
    """Settings from the environment; a malformed variable is a configuration error (exit 6)
    with the variable named, not a traceback."""
    from pydantic import ValidationError
    from pydantic_settings import SettingsError

    from signing_service.settings import Settings, settings_error_vi

    try:
        return Settings()
    except ValidationError as e:
        for problem in e.errors():
            field = str(problem["loc"][0]) if problem["loc"] else ""
            where = ".".join(str(part) for part in problem["loc"][1:])
            _say(
                f"{CONFIG_PREFIX}: SIGNING_SERVICE_{field.upper()}"
                + (f" (mục {where})" if where else "")
                + f": {settings_error_vi(problem)}",
                problem=True,
            )
    except SettingsError as e:
        # pydantic-settings: 'error parsing value for field "x" from source "…"' (bad JSON).
        found = re.search(r'field "([a-z0-9_]+)"', str(e))
        variable = f"SIGNING_SERVICE_{found.group(1).upper()}" if found else "SIGNING_SERVICE_*"
        _say(
            f"{CONFIG_PREFIX}: {variable}: giá trị không đọc được (JSON không hợp lệ?)",
            problem=True,
        )
    sys.exit(EXIT_CONFIG)


@contextmanager
def _loading() -> Iterator[None]:
    """Python's cyclic garbage collector paused while a one-shot command imports its modules,
    then those objects frozen (``gc.freeze``) and collection resumed for the work itself.

    Why: importing is allocation (functions, classes, dicts of ~900 modules, all alive until
    the process exits), and CPython collects every few hundred allocations, repeatedly walking
    the growing heap for garbage it cannot find; the interpreter's collection at exit walks it
    all once more. Together that was ~30 % of ``verify``'s CPU time (bench/cli.py). Frozen
    objects are skipped by both; what the command allocates afterwards (the document, the
    report) is collected as usual, so a large or hostile PDF is not verified without the
    collector. Frozen objects are never collected again: meant for the command's own process
    (``main`` as the program), where they live until exit anyway.
    https://docs.python.org/3/library/gc.html#gc.freeze"""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if enabled:
            gc.enable()


def _config_message(message: str) -> str:
    """One prefix for every configuration refusal (the message names the setting)."""
    return message if message.startswith(CONFIG_PREFIX) else f"{CONFIG_PREFIX}: {message}"


def _database_problem(error: BaseException) -> str:
    """The Vietnamese message for a database that cannot be reached or a malformed URL,
    naming the setting, with the password masked and the driver's own reason kept."""
    from sqlalchemy import make_url

    settings = _settings()
    try:
        shown = make_url(settings.effective_database_url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - the URL itself is what is malformed
        shown = "(không đọc được)"
    reason = str(getattr(error, "orig", None) or error).strip().splitlines()
    return (
        "Cấu hình không hợp lệ: SIGNING_SERVICE_DATABASE_URL: không kết nối được cơ sở dữ liệu "
        f"{shown} (sai địa chỉ, tên người dùng hoặc mật khẩu?)"
        + (f": {reason[0]}" if reason else "")
    )


def _configuration_problem(error: BaseException) -> str | None:
    """The message when ``error`` means the configuration is wrong (exit 6), else None."""
    from sqlalchemy.exc import (
        ArgumentError,
        InterfaceError,
        NoSuchModuleError,
        OperationalError,
        ProgrammingError,
    )

    if isinstance(error, OperationalError | InterfaceError | ArgumentError | NoSuchModuleError):
        return _database_problem(error)
    if isinstance(error, ProgrammingError) and getattr(error.orig, "sqlstate", "") == "42501":
        # insufficient_privilege: the configured database user may not create or use tables.
        return (
            "Cấu hình không hợp lệ: SIGNING_SERVICE_DATABASE_URL: người dùng cơ sở dữ liệu "
            "không đủ quyền (tạo bảng, đọc hoặc ghi): " + str(error.orig).strip().splitlines()[0]
        )
    return None


# Set by ``serve`` once logging writes JSON lines (logs.py): from then on the messages the
# shared helpers below print go through logging instead, so that everything ``serve`` writes
# is one JSON object per line and ``jq`` over its log works (new user 12 finding 6).
_json_lines = False
_SERVE_LOGGER = "signing_service.serve"


def _say(text: str, *, problem: bool = False, stream: IO[str] | None = None) -> None:
    """Print ``text`` for a person (``stream``; default stderr for a problem, else stdout),
    or, inside ``serve``, log it as one JSON line (level ERROR for a problem, else INFO)."""
    if _json_lines:
        logging.getLogger(_SERVE_LOGGER).log(logging.ERROR if problem else logging.INFO, text)
    else:
        print(text, file=stream or (sys.stderr if problem else sys.stdout))


def announce_data_dir(settings: Settings) -> None:
    """Development: say on stderr, in one line, which data directory this command uses (issue
    13: a command run from another folder quietly made a new world there). Production names
    its own (required) and is silent."""
    from signing_service.settings import source_checkout

    if settings.is_production:
        return
    checkout = source_checkout()
    if settings.data_dir_configured:
        origin = "SIGNING_SERVICE_DATA_DIR"
    elif checkout is not None and settings.resolved_data_dir == checkout / "var":
        origin = "mặc định: thư mục var của mã nguồn, như make run"
    else:
        origin = "mặc định: thư mục dữ liệu của người dùng"
    _say(
        f"Chế độ phát triển: thư mục dữ liệu {settings.resolved_data_dir} ({origin}).",
        stream=sys.stderr,
    )


def _services(  # type: ignore[no-untyped-def]
    serve_dev_pki: bool = False,
    migrate: bool = True,
    prepare: bool = True,
    announce: bool = True,
    allow_reissue: bool = False,
):
    """The built services, or exit 6 with the refusal said. ``allow_reissue``: only ``serve``
    and ``pki init`` re-issue the dev PKI for another SIGNING_SERVICE_DEV_PKI_PORT (red team
    14 F5); every other command refuses such settings (Services.build)."""
    from signing_service.services.container import Services, StartupRefused

    settings = _settings()
    try:
        services = Services.build(
            settings,
            serve_dev_pki=serve_dev_pki,
            migrate=migrate,
            prepare=prepare,
            allow_reissue=allow_reissue,
        )
        # Said once the deployment is open (a refusal's message comes first, alone).
        if announce:
            announce_data_dir(settings)
        return services
    except StartupRefused as e:
        # Production's refusals (dev material) and the audit log's (any mode: new user 23 #4).
        where = "ở chế độ production" if settings.is_production else "(chế độ phát triển)"
        _say(f"Từ chối mở dịch vụ {where}: {e}", problem=True)
        sys.exit(EXIT_CONFIG)
    except errors.ConfigurationError as e:
        _say(_config_message(e.message), problem=True)
        sys.exit(EXIT_CONFIG)
    except errors.ServiceError as e:
        _say(f"{e.code}: {e.message}", problem=True)
        sys.exit(EXIT_CONFIG)
    except Exception as e:
        problem = _configuration_problem(e)
        if problem is None:
            raise
        _say(problem, problem=True)
        sys.exit(EXIT_CONFIG)


def _dev_pki_missing() -> bool:
    """In development mode, serve the dev TSA/OCSP for this command when nothing else does."""
    import socket

    settings = _settings()
    if settings.is_production:
        return False
    try:
        socket.create_connection((settings.dev_pki_host, settings.dev_pki_port), timeout=1).close()
    except OSError:
        return True
    return False


def _os_reason(e: OSError) -> str:
    from signing_service.oserror import reason_vi

    return reason_vi(e)


def _read(path: str, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``: at most ``limit + 1`` of them when ``limit`` is
    given (the caller's size check then refuses it as the API does, FILE_TOO_LARGE), so a huge
    file is never read into memory (red team 14 F6: a 3 GB file or /dev/zero ended in a
    MemoryError). A device, FIFO, socket or directory is refused (exit 4, Vietnamese): it
    has no size to check and may never end. Opened non-blocking, so a FIFO without a writer
    does not hang the command."""
    import stat

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
        try:
            mode = os.fstat(fd).st_mode
            if stat.S_ISDIR(mode):
                raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
            regular = stat.S_ISREG(mode)
            if regular:
                chunks, left = [], limit + 1 if limit is not None else -1
                while left:
                    chunk = os.read(fd, left if left > 0 else 1 << 20)
                    if not chunk:
                        break
                    chunks.append(chunk)
                    left = left - len(chunk) if left > 0 else left
                data = b"".join(chunks)
        finally:
            os.close(fd)
    except OSError as e:
        print(f"Không đọc được tệp {path}: {_os_reason(e)}", file=sys.stderr)
        sys.exit(EXIT_IO)
    if not regular:
        print(
            f"Không đọc tệp {path}: đây không phải tệp thông thường (thiết bị, FIFO hoặc "
            "socket); hãy chỉ ra một tệp trên đĩa.",
            file=sys.stderr,
        )
        sys.exit(EXIT_IO)
    return data


def _listen_problem(host: str, port: int) -> str | None:
    """Why the API could not listen on ``host:port`` (a Vietnamese message naming the setting),
    or None. Tried before anything starts: uvicorn logs a busy port in English and exits 0."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, address = infos[0]
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            # As uvicorn binds: a port in TIME_WAIT is free, one with a listener is not.
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except OSError as e:
        reason = "không phân giải được tên máy" if isinstance(e, socket.gaierror) else _os_reason(e)
        return (
            f"Không mở được cổng {host}:{port} ({reason}). Chọn cổng khác: "
            "SIGNING_SERVICE_PORT (hoặc --port), địa chỉ: SIGNING_SERVICE_HOST (hoặc --host)."
        )
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    import subprocess

    import uvicorn

    from signing_service.api.server import (
        metrics_directory,
        prepare_metrics_directory,
        settle_heap,
        uvicorn_options,
    )

    global _json_lines
    from signing_service import logs

    # JSON lines from the first message on (logs.py); the workers configure themselves with
    # the same. logs imports nothing of prometheus-client (see prepare_metrics_directory).
    logs.configure()
    _json_lines = True
    settings = _settings()
    host, port = args.host or settings.host, args.port or settings.port
    problem = _listen_problem(host, port)
    if problem:
        _say(problem, problem=True)
        return EXIT_CONFIG
    # Metrics of every process this server starts, in one directory of this instance's own
    # (host-port), emptied only now that the port is known free: set before anything imports
    # prometheus-client (signing_service.metrics, api/server.py).
    try:
        prepare_metrics_directory(settings, host, port)
    except OSError as e:
        _say(
            f"{CONFIG_PREFIX}: SIGNING_SERVICE_DATA_DIR: không tạo được thư mục số đo "
            f"{metrics_directory(settings, host, port)}: {_os_reason(e)}",
            problem=True,
        )
        return EXIT_CONFIG
    from signing_service.api.app import create_app

    log_config = logs.logging_config()
    metrics_server = None
    if settings.metrics_address:
        from signing_service import metrics

        metrics_host, _, metrics_port = settings.metrics_address.rpartition(":")
        try:
            metrics_server = metrics.serve_separately(metrics_host.strip("[]"), int(metrics_port))
        except OSError as e:
            _say(
                f"{CONFIG_PREFIX}: SIGNING_SERVICE_METRICS_ADDRESS: không mở được "
                f"{settings.metrics_address} ({_os_reason(e)})",
                problem=True,
            )
            return EXIT_CONFIG
    # Migrations run in a short-lived child process: Alembic (~15 MB) never enters the server.
    # Its messages (plain lines) are logged here as JSON lines, one per line it wrote.
    migrated = subprocess.run(
        [sys.executable, "-m", "signing_service.cli", "migrate"],
        check=False,
        capture_output=True,
        text=True,
    )
    for line in (migrated.stdout + migrated.stderr).splitlines():
        if line.strip():
            _say(line, problem=migrated.returncode != 0)
    if migrated.returncode != 0:
        return migrated.returncode
    # The migration child has said which data directory is used.
    services = _services(serve_dev_pki=True, migrate=False, announce=False, allow_reissue=True)
    settings = services.settings
    if services.dev_pki is not None:
        _say(f"Chế độ phát triển: PKI thử nghiệm phục vụ TSA/OCSP/CRL tại {settings.dev_pki_url}")
        _say(f"Khóa API và cấu hình ký thử nghiệm: {settings.dev_credentials_file}")
    workers = args.workers or settings.workers
    # Header size and time, connections, keep-alive, no proxy headers (api/server.py).
    limits = uvicorn_options(settings)
    try:
        if workers > 1:
            # Migrations and the bootstrap ran here, once; each worker builds its own services.
            uvicorn.run(
                "signing_service.api.main:app_factory",
                factory=True,
                host=host,
                port=port,
                workers=workers,
                log_level="info",
                log_config=log_config,
                access_log=False,
                **limits,
            )
        else:
            app = create_app(services)
            settle_heap()
            uvicorn.run(
                app,
                host=host,
                port=port,
                log_level="info",
                log_config=log_config,
                access_log=False,
                **limits,
            )
    finally:
        services.close()
        if metrics_server is not None:
            metrics_server.shutdown()
    return 0


def cmd_sign(args: argparse.Namespace) -> int:
    data = _read(args.input)
    # The output must be writable BEFORE anything is signed (new user 12 finding 4): a
    # signature made, stored and registered for a file that cannot be written is an issued
    # document nobody received, and the natural retry issues a second one. The temporary file
    # is made in the target directory now and renamed over the output at the end (atomic on
    # one file system).
    target = Path(args.output)
    try:
        if target.is_dir():
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
        # Closed in the finally below (not a with: the name outlives the handle's scope).
        pending = tempfile.NamedTemporaryFile(  # noqa: SIM115
            dir=target.absolute().parent, prefix=f".{target.name}.", suffix=".tmp", delete=False
        )
    except OSError as e:
        print(
            f"Không ghi được tệp {args.output}: {_os_reason(e)}. Chưa ký, chưa lưu gì.",
            file=sys.stderr,
        )
        return EXIT_IO
    try:
        return _sign_into(args, data, pending)
    finally:
        pending.close()
        Path(pending.name).unlink(missing_ok=True)


def _sign_into(args: argparse.Namespace, data: bytes, pending: IO[bytes]) -> int:
    """``sign``'s work once the output's temporary file exists: sign, store, write the
    signed bytes to ``pending`` and rename it to ``args.output``."""
    from sqlalchemy import select

    from signing_service.services.appearance_images import AppearanceRequest
    from signing_service.services.signing import sign_document
    from signing_service.store.models import Agency, SigningProfile

    services = _services(serve_dev_pki=_dev_pki_missing())
    try:
        with services.db.transaction() as session:
            query = select(SigningProfile).where(
                SigningProfile.name == args.profile, SigningProfile.disabled_at.is_(None)
            )
            if args.agency:
                query = query.join(Agency, Agency.id == SigningProfile.agency_id).where(
                    Agency.code == args.agency
                )
            profiles = session.scalars(query).all()
            # Profile names are unique per agency: a name two agencies use needs --agency.
            if len(profiles) > 1:
                print(
                    f"Nhiều cơ quan có cấu hình {args.profile!r}: chỉ rõ --agency.",
                    file=sys.stderr,
                )
                return EXIT_USAGE
            profile = profiles[0] if profiles else None
            agency = profile.agency if profile is not None else None
        if profile is None or agency is None:
            raise errors.ProfileNotFound()
        result = sign_document(
            services,
            agency,
            profile_name=args.profile,
            pdf=data,
            level=args.level,
            filename=Path(args.input).name,
            dossier_code=args.dossier_code,
            result_code=args.result_code,
            field_name=args.field_name,
            # The same appearance fields as the API's form (appearance_kind, copy_kind, ...).
            appearance=AppearanceRequest(
                kind=args.appearance_kind,
                copy_kind=args.copy_kind,
                document_number=args.document_number,
            ),
            actor="cli",
        )
        from signing_service.services.documents import get_document, read_content

        signed = read_content(services, get_document(services, agency.id, result.document.id))
        try:
            pending.write(signed)
            pending.flush()
            os.fsync(pending.fileno())
            # The temporary file is 0600; the output gets what a plain write would (umask).
            mask = os.umask(0)
            os.umask(mask)
            os.chmod(pending.name, 0o666 & ~mask)
            os.replace(pending.name, args.output)
        except OSError as e:
            # Rare now (checked before signing: a full disk, a directory removed meanwhile):
            # the signature exists, so say where to fetch it instead of inviting a re-sign.
            print(
                f"Không ghi được tệp {args.output}: {_os_reason(e)}. Văn bản đã được ký và "
                f"lưu: mã văn bản {result.document.id}, mã chữ ký {result.signature_id} "
                f"(tải lại bằng GET /v1/documents/{result.document.id}/content; đừng ký lại).",
                file=sys.stderr,
            )
            return EXIT_IO
    except errors.ServiceError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        services.close()
    if result.repaired:
        # As the API's "repaired": true: the input was rebuilt before signing (qpdf), so the
        # signed file is not an incremental update of the bytes given.
        print(
            "Tệp đầu vào bị hỏng cấu trúc và đã được sửa (dựng lại) trước khi ký; bản đã ký "
            "dựa trên bản đã sửa, không phải bản gốc từng byte."
        )
    undecided = [s for s in result.existing_signatures if s.indication != "TOTAL_PASSED"]
    if undecided:
        # As the API's existing_signatures: an earlier signature the verifier could not
        # conclude on (services/existing.py) does not refuse, but the signer is told.
        print(
            "Lưu ý: chữ ký có sẵn trên tài liệu chưa đủ căn cứ kết luận là hợp lệ: "
            + ", ".join(f"“{s.field}” ({s.sub_indication or s.code})" for s in undecided)
        )
    print(f"Đã ký ({result.level}) bằng cấu hình {result.profile}: {args.output}")
    print(f"Mã văn bản: {result.document.id}  SHA-256: {result.document.sha256}")
    print(f"Mã chữ ký: {result.signature_id} (GET /v1/signatures/{result.signature_id})")
    if result.document.result_code:
        print(f"Mã kết quả: {result.document.result_code}")
    if result.public_id:
        print(f"Mã tra cứu trong sổ đăng ký: {result.public_id}")
        if result.link:
            print(f"Liên kết tra cứu: {result.link}")
    return 0


TYPE_VI = {
    "signature": "chữ ký",
    "certification": "chữ ký chứng nhận (khóa thay đổi)",
    "document_timestamp": "dấu thời gian tài liệu",
}
SOURCE_VI = {
    "timestamp": "dấu thời gian",
    "timestamp_unverified": "dấu thời gian chưa xác minh được",
    "claimed": "tự khai",
}
TIMESTAMP_KIND_VI = {
    "signature": "của chữ ký",
    "content": "của nội dung",
    "document": "của tài liệu",
}
PROOF_VI = {
    "signature_timestamp": "dấu thời gian của chữ ký",
    "document_timestamp": "dấu thời gian tài liệu",
}


def verify_exit(report: dict) -> int:  # type: ignore[type-arg]
    """``verify``'s exit code for a concluded report: 7 (:data:`EXIT_NOT_IN_FORCE`) for a
    document the registry says was revoked or superseded, 8 (:data:`EXIT_CONTENT_ADDED`) for
    content added after issue, else the verdict's (0 TOTAL_PASSED, 1 TOTAL_FAILED, 2
    INDETERMINATE or unsigned). README "The same from the command line"; ``verify --help``."""
    from signing_service.services.conclusion import (
        CONTENT_ADDED_AFTER_ISSUE,
        REVOKED,
        SUPERSEDED,
        shown_outcome,
    )

    outcome = shown_outcome(report)
    if outcome in (REVOKED, SUPERSEDED):
        return EXIT_NOT_IN_FORCE
    if outcome == CONTENT_ADDED_AFTER_ISSUE:
        return EXIT_CONTENT_ADDED
    return VERDICT_EXIT[report["verdict"]]


def _print_report(report: dict) -> None:  # type: ignore[type-arg]
    """The report for people: Vietnamese labels and check names, times in +07:00. The headline
    is the document's state in the page's words (signatures and registry together: a revoked
    decision is "Không hợp lệ" whatever its signatures, new user 14 F10); the signatures' own
    ETSI indication follows on its own line."""
    from signing_service.services.conclusion import STATE_LABELS
    from signing_service.verification.messages import CHECK_LABELS

    status = report.get("status")
    if isinstance(status, dict):
        print(f"Kết luận: {STATE_LABELS[status['state']]} ({status['code']})")
        print(status["message"])
        if report["message"] != status["message"]:
            print(report["message"])
    else:
        print(report["message"])
    print(
        f"Chữ ký số (ETSI EN 319 102-1): {VERDICT_VI[report['verdict']]} ({report['verdict']}"
        + (f" / {report['sub_indication']}" if report["sub_indication"] else "")
        + ")"
    )
    print(f"Xác minh tại thời điểm: {_shown_time(report['validation_time'])}")
    if report["validation_time"] != report["validated_at"]:
        print(f"(thực hiện lúc {_shown_time(report['validated_at'])})")
    for problem in report["problems"]:
        print(f"  ! {problem['message']}")
    for warning in report.get("warnings", []):
        places = []
        if warning.get("signature"):
            places.append(f"chữ ký {warning['signature']}")
        if warning.get("page"):
            places.append(f"trang {warning['page']}")
        where = f" ({', '.join(places)})" if places else ""
        print(f"  ! Cảnh báo{where}: {warning['message']}")
    if report.get("unsigned_fields"):
        print(f"Trường chữ ký chưa ký: {', '.join(report['unsigned_fields'])}")
    if "registry" in report:
        from signing_service.services.registry_records import registry_sentence

        print(f"Sổ đăng ký: {registry_sentence(report['registry'])}")
    for position, sig in enumerate(report["signatures"], start=1):
        signer = sig.get("signer") or {}
        level = f", {sig['level']}" if sig.get("level") else ""
        is_stamp = sig["type"] == "document_timestamp"
        # Numbered as the page numbers them (every signature and timestamp in file order). A
        # document timestamp's field name is generated ("Timestamp-8b1f…", a UUID): not shown
        # to people (new user 12 item 13, new user 14 F11; --json keeps it).
        named = "" if is_stamp else f" {sig['field']}"
        print(
            f"\n{position}. {TYPE_VI.get(sig['type'], sig['type']).capitalize()}{named}{level}: "
            f"{VERDICT_VI.get(sig['indication'], sig['indication'])} ({sig['indication']}"
            + (f" / {sig['sub_indication']}" if sig["sub_indication"] else "")
            + ")"
        )
        print(f"  {sig.get('summary', '')}")
        if signer:
            print(
                ("  Đơn vị cấp dấu thời gian: " if is_stamp else "  Người ký: ")
                + f"{signer.get('common_name')}"
                + (f", {signer['title']}" if signer.get("title") else "")
                + (
                    f" — {signer['organization']}"
                    if signer.get("organization")
                    and signer["organization"] != signer.get("common_name")
                    else ""
                )
            )
            if signer.get("profile_label") and not is_stamp:
                # A TSA's certificate is neither a person's nor a seal's: no "could not
                # determine" line that reads like a problem.
                print(f"  Loại chứng thư: {signer['profile_label']}")
            print(f"  Đơn vị cấp chứng thư: {signer.get('issuer')}")
            print(f"  Hiệu lực chứng thư: {signer.get('valid_from')} → {signer.get('valid_to')}")
        if sig.get("trust_anchor"):
            anchor = sig["trust_anchor"]
            print(f"  Gốc tin cậy: {anchor['name']} — {anchor['kind_label']}")
        if sig.get("signing_time"):
            source = SOURCE_VI.get(sig["signing_time_source"] or "", "tự khai")
            print(f"  Thời điểm ký: {_shown_time(sig['signing_time'])} ({source})")
        if sig.get("best_signature_time"):
            proof = PROOF_VI.get(sig.get("best_signature_time_proof") or "", "")
            print(
                f"  Chữ ký tồn tại muộn nhất lúc: {_shown_time(sig['best_signature_time'])} "
                f"(theo {proof})"
            )
        if sig.get("validation_time") and sig["validation_time"] != report["validation_time"]:
            print(f"  Chứng thư được kiểm tra tại thời điểm: {_shown_time(sig['validation_time'])}")
        for ts in sig.get("timestamps", []):
            kind = TIMESTAMP_KIND_VI.get(ts["type"], ts["type"])
            print(f"  Dấu thời gian {kind}: {_shown_time(ts['time'])} — {ts['authority']}")
        for name, check in sig["checks"].items():
            label = CHECK_LABELS.get(name, name)
            print(f"  - {label}: {STATUS_VI[check['status']]} — {check['message']}")
        for note in sig.get("notes", []):
            print(f"  * {note['message']}")


def _standalone_refused(e: Exception) -> int:
    """``verify`` / ``evidence verify`` without a deployment refused by their settings
    (``ProductionRefused`` or a configuration error): the message on stderr, exit 6."""
    from signing_service.services.standalone import ProductionRefused

    if isinstance(e, errors.ConfigurationError):
        print(_config_message(e.message), file=sys.stderr)
    else:
        assert isinstance(e, ProductionRefused), e
        print(f"Từ chối ở chế độ production: {e}", file=sys.stderr)
    return EXIT_CONFIG


# The exit code a command has decided before printing its answer, returned by main() when the
# output pipe closes under it (0 when nothing was decided).
_broken_pipe_exit = [0]


def cmd_verify(args: argparse.Namespace) -> int:
    """Verify as the API would, from the settings alone: no data directory, no database
    written, no dev PKI generated, no audit entry (services/standalone.py)."""
    from signing_service.services.standalone import (
        ProductionRefused,
        import_verification,
        verify_standalone,
    )
    from signing_service.services.verification_time import parse_validation_time

    moment = None
    if args.at:
        try:
            moment = parse_validation_time(args.at, assume_vietnam=True)
        except errors.ServiceError as e:
            print(f"Lỗi cú pháp lệnh: --at {args.at!r}: {e.message}", file=sys.stderr)
            return EXIT_USAGE
    # What could not be evaluated is in the report itself; parser tracebacks and pyHanko's
    # warnings about a hostile file are for server logs, not for the person verifying.
    for name in ("signing_service.verification", "pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    with _loading():
        settings = _settings()
    # At most the limit + 1 bytes: verify_standalone refuses more (FILE_TOO_LARGE, exit 5).
    data = _read(args.file, settings.max_document_bytes)
    with _loading():
        import_verification(settings)
    try:
        result = verify_standalone(settings, data, validation_time=moment)
    except (ProductionRefused, errors.ConfigurationError) as e:
        return _standalone_refused(e)
    except errors.ServiceError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED
    report = result.report
    if not settings.is_production:
        # Where this answer's world comes from (issue 13: never a silently invented one).
        pki = (
            f"PKI thử nghiệm {result.dev_pki_dir}"
            if result.dev_pki_dir
            else "chưa có PKI thử nghiệm"
        )
        registry = (
            f"sổ đăng ký trong {result.registry_database}"
            if result.registry_database
            else "không tra sổ đăng ký (chưa có cơ sở dữ liệu đã tạo lược đồ)"
        )
        print(f"Chế độ phát triển: {pki}; {registry}.", file=sys.stderr)
    code = verify_exit(report)
    # Known before printing: a reader that goes away (``| head -1``) must not turn a
    # superseded or undecided document into exit 0 (new user 20 #2; main's BrokenPipeError).
    _broken_pipe_exit[0] = code
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _print_report(report)
    return code


def cmd_pki_init(_args: argparse.Namespace) -> int:
    services = _services(allow_reissue=True)
    try:
        if services.dev_pki is None:
            print("PKI thử nghiệm chỉ dùng ở chế độ phát triển.", file=sys.stderr)
            return EXIT_CONFIG
        print(f"PKI thử nghiệm: {services.dev_pki.directory}")
        for path in sorted(services.dev_pki.directory.glob("*")):
            print(f"  {path.name}")
    finally:
        services.close()
    return 0


def cmd_audit_verify(args: argparse.Namespace) -> int:
    """Exit 0: log and seals intact; 1: a problem (each named, in Vietnamese, on stderr)."""
    from signing_service.audit import problems_summary
    from signing_service.audit.seals import verify_log

    # Not "prepared": verifying never writes (no bootstrap, no keying of an old log).
    services = _services(prepare=False)
    try:
        assert services.audit_key is not None
        with services.db.transaction() as session:
            report = verify_log(
                session,
                services.audit_key,
                seal_dir=services.settings.audit_seals_path,
                trust=services.trust,
            )
        key_id = services.audit_key.key_id
        seal_dir = services.settings.audit_seals_path
    finally:
        services.close()
    if args.json:
        print(
            json.dumps(
                {
                    "ok": report.ok,
                    "entries": report.entries,
                    "last_seq": report.last_seq,
                    "keyed_from": report.keyed_from,
                    "key_id": key_id,
                    "seal_dir": str(seal_dir),
                    "seals": report.seals,
                    "last_sealed_seq": report.last_sealed_seq,
                    "last_sealed_at": report.last_sealed_at,
                    "problems": [p.__dict__ for p in report.problems],
                    "more_problems": report.more_problems,
                    "warnings": report.warnings,
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0 if report.ok else EXIT_FAILED
    sealed = (
        f"khớp {report.seals} niêm phong (cuối: bản ghi {report.last_sealed_seq}, lúc "
        f"{_shown_time(report.last_sealed_at)})"
        if report.seals
        else "chưa có niêm phong"
    )
    if report.ok:
        print(
            f"Nhật ký kiểm toán toàn vẹn: {report.entries} bản ghi; chuỗi băm hợp lệ, mã xác "
            f"thực (MAC, khóa {key_id}) hợp lệ; {sealed}."
        )
    else:
        print(
            f"Nhật ký kiểm toán BỊ SỬA ĐỔI hoặc KHÔNG ĐẦY ĐỦ ({report.entries} bản ghi, khóa "
            f"{key_id}, {sealed}):",
            file=sys.stderr,
        )
        for line in problems_summary(report.problems, report.more_problems):
            print(f"  - {line}", file=sys.stderr)
    if report.keyed_from and report.keyed_from > 1:
        print(
            f"Bản ghi 1–{report.keyed_from - 1} có từ trước khi nhật ký được khóa: MAC của chúng "
            "được tính một lần khi nâng cấp (xem bản ghi audit.keyed)."
        )
    for warning in report.warnings:
        print(f"Cảnh báo: {warning}")
    return 0 if report.ok else EXIT_FAILED


def cmd_audit_seal(args: argparse.Namespace) -> int:
    """Exit 0: sealed (or nothing new); 1: refused (the log or the last seal has a problem);
    4: the timestamp server did not answer; 6: no timestamp server configured."""
    from signing_service.audit import problems_summary
    from signing_service.audit.seals import SealRefused, SealUnavailable, seal_head

    services = _services(serve_dev_pki=_dev_pki_missing(), prepare=False)
    try:
        settings = services.settings
        tsa_url = settings.audit_tsa_url or (
            services.dev_pki.tsa_url if services.dev_pki is not None else None
        )
        if not tsa_url:
            print(
                "Cấu hình không hợp lệ: chưa đặt SIGNING_SERVICE_AUDIT_TSA_URL (máy chủ cấp dấu "
                "thời gian dùng để niêm phong nhật ký).",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        assert services.audit_key is not None
        try:
            seal = seal_head(
                services.db,
                services.audit_key,
                seal_dir=settings.audit_seals_path,
                tsa_url=tsa_url,
                trust=services.trust,
                timeout=settings.fetch_timeout_seconds,
                force=args.force,
            )
        except SealRefused as e:
            print("Không niêm phong nhật ký kiểm toán:", file=sys.stderr)
            for line in problems_summary(e.problems):
                print(f"  - {line}", file=sys.stderr)
            return EXIT_FAILED
        except SealUnavailable as e:
            print(
                f"TIMESTAMP_UNAVAILABLE: không lấy được dấu thời gian từ {tsa_url} ({e}).",
                file=sys.stderr,
            )
            return EXIT_IO
    finally:
        services.close()
    if seal is None:
        print("Không có bản ghi mới kể từ lần niêm phong trước; không tạo niêm phong.")
    else:
        print(
            f"Đã niêm phong nhật ký kiểm toán đến bản ghi {seal.seq} (dấu thời gian lúc "
            f"{_shown_time(seal.gen_time)}): {seal.path}"
        )
    return 0


def cmd_storage_reconcile(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from signing_service.services.attachments import reconcile
    from storage import StorageUnavailableError

    services = _services()
    min_age = (
        args.min_age if args.min_age is not None else services.settings.reconcile_min_age_seconds
    )
    try:
        report = reconcile(
            services, min_age=timedelta(seconds=min_age), dry_run=args.dry_run, actor="cli"
        )
    except StorageUnavailableError as e:
        print(f"STORAGE_UNAVAILABLE: kho lưu trữ không sẵn sàng ({e})", file=sys.stderr)
        return EXIT_IO
    finally:
        services.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return 0
    verb = "sẽ xóa" if args.dry_run else "đã xóa"
    print(f"Đối soát kho lưu trữ (bỏ qua đối tượng mới hơn {min_age} giây):")
    print(
        f"  Đối tượng mồ côi (không có bản ghi): {len(report.orphan_objects)}, {verb} "
        f"{len(report.orphan_objects) if args.dry_run else len(report.removed_objects)}"
    )
    for key in report.orphan_objects:
        print(f"    {key}")
    if report.held_objects:
        print(
            f"  Đối tượng mồ côi đang bị phong tỏa (legal hold), giữ lại: "
            f"{len(report.held_objects)}"
        )
    print(
        f"  Bản ghi tệp đính kèm mất nội dung trong kho: {len(report.missing_objects)}, {verb} "
        f"{len(report.missing_objects) if args.dry_run else len(report.removed_records)}"
    )
    for item in report.missing_objects:
        print(f"    {item['attachment_id']} ({item['key']})")
    # removed_temporary lists what a dry run would remove too (services/attachments.py).
    print(
        f"  Tệp tạm còn sót: {len(report.removed_temporary)}, {verb} "
        f"{len(report.removed_temporary)}"
    )
    return 0


def cmd_evidence_verify(args: argparse.Namespace) -> int:
    """Exit 0: the evidence ZIP is sealed by a trusted certificate and every file matches its
    manifest; 1: a problem (each named, in Vietnamese); 4: the file cannot be read."""
    from signing_service.services.standalone import (
        ProductionRefused,
        verify_evidence_standalone,
    )

    # Like `verify`: the settings alone, no deployment needed, nothing written (red team 12 F8).
    for name in ("pyhanko", "pyhanko_certvalidator"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    data = _read(args.zip)
    settings = _settings()
    try:
        result = verify_evidence_standalone(settings, data)
    except (ProductionRefused, errors.ConfigurationError) as e:
        return _standalone_refused(e)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, indent=2))
        return EXIT_PASSED if result.ok else EXIT_FAILED
    if result.ok:
        print(f"Gói bằng chứng của chữ ký {result.signature_id}: hợp lệ.")
        print(f"  Niêm phong bởi: {result.sealed_by}")
        if result.timestamped:
            print(f"  Dấu thời gian niêm phong: {_shown_time(result.seal_time)}")
        else:
            # Red team 12 F1: nothing in the ZIP says why (a forger's seal has none either).
            print(
                "  Niêm phong không có dấu thời gian: chỉ kiểm tra được khi chứng thư niêm phong "
                "còn hiệu lực."
            )
        # The record's evidence.files counts manifest.json too (one more): both said here so
        # the two numbers do not look like a missing file (new user 12 item 14).
        print(
            f"  {result.files} tệp khớp mã băm SHA-256 trong manifest.json (cùng manifest.json: "
            f"{result.files + 1} tệp, như evidence.files của bản ghi chữ ký; chữ ký niêm phong "
            "manifest.json.p7s không tính)."
        )
        return EXIT_PASSED
    print("Gói bằng chứng KHÔNG hợp lệ:", file=sys.stderr)
    for problem in result.problems:
        print(f"  - {problem}", file=sys.stderr)
    return EXIT_FAILED


def cmd_evidence_purge(args: argparse.Namespace) -> int:
    """Dry run unless ``--yes``: lists the evidence whose retention ended (and that held by a
    legal hold, never deleted); with ``--yes`` removes it (one audit entry)."""
    from signing_service.services.evidence import purge
    from storage import StorageUnavailableError

    services = _services()
    try:
        report = purge(services, dry_run=not args.yes, actor="cli")
    except StorageUnavailableError as e:
        print(f"STORAGE_UNAVAILABLE: kho lưu trữ không sẵn sàng ({e})", file=sys.stderr)
        return EXIT_IO
    finally:
        services.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
        return 0
    verb = "Sẽ xóa (chạy thử, thêm --yes để xóa)" if report.dry_run else "Đã xóa"
    print(f"Bằng chứng ký hết thời hạn lưu trữ tại {report.at}:")

    def line(item: dict[str, str]) -> str:
        until = item["retained_until"]
        return f"    {item['signature_id']} ({item['agency_code']}, hết hạn {until})"

    print(f"  {verb}: {len(report.purged)} chữ ký")
    for item in report.purged:
        print(line(item))
    print(
        "  Đã hết thời hạn nhưng đang bị phong tỏa pháp lý, giữ lại (không bao giờ xóa): "
        f"{len(report.held)} chữ ký"
    )
    for item in report.held:
        print(line(item))
    print(
        f"  Còn trong thời hạn: {report.kept} chữ ký (trong đó {report.kept_held} đang bị "
        "phong tỏa pháp lý)"
    )
    if not report.dry_run:
        print(
            f"  Đối tượng đã xóa khỏi kho: {len(report.removed_objects)}; còn dùng chung với "
            f"chữ ký khác, giữ lại: {report.shared_objects}"
        )
    return 0


OUTCOME_VI = {
    **VERDICT_VI,
    "RATE_LIMITED": "bị từ chối: vượt giới hạn tần suất",
    "ANONYMOUS_BUSY": "bị từ chối: quá nhiều yêu cầu đồng thời",
    "VERIFICATION_BUSY": "bị từ chối: hàng đợi xác minh đầy",
    "VERIFICATION_TIME_LIMIT": "quá thời gian xác minh",
    "VERIFICATION_RESOURCE_LIMIT": "vượt giới hạn tài nguyên",
    # What the person was shown when the registry overrode valid signatures (new user 14 F10).
    "REVOKED": "KHÔNG HỢP LỆ: văn bản đã bị thu hồi (chữ ký số hợp lệ)",
    "SUPERSEDED": "KHÔNG HỢP LỆ: văn bản đã được thay thế (chữ ký số hợp lệ)",
    "CONTENT_ADDED_AFTER_ISSUE": (
        "CHƯA XÁC ĐỊNH ĐƯỢC: có nội dung được thêm vào sau khi cấp (chữ ký số hợp lệ)"
    ),
}


def cmd_verification_stats(args: argparse.Namespace) -> int:
    """Anonymous verifications per day and outcome (the counters; not in the audit log)."""
    from datetime import timedelta

    from signing_service.services.counters import verification_counts
    from signing_service.timefmt import VIETNAM_TZ

    services = _services()
    try:
        since = None
        if args.days is not None:
            since = (datetime.now(VIETNAM_TZ) - timedelta(days=max(args.days, 1) - 1)).date()
        rows = verification_counts(services, since)
    finally:
        services.close()
    if args.json:
        print(json.dumps(rows, ensure_ascii=False, indent=2))
        return 0
    if not rows:
        print("Chưa có lượt xác minh công khai nào được ghi nhận.")
        return 0
    print(
        "Lượt xác minh công khai (ẩn danh) theo ngày (giờ Việt Nam) và kết quả đã báo cho người "
        "xác minh (văn bản bị thu hồi, bị thay thế hay có nội dung thêm sau khi cấp được đếm "
        "riêng, không vào HỢP LỆ):"
    )
    for row in rows:
        print(
            f"  {row['day']}  {row['count']:>8}  {row['outcome']} ({_outcome_vi(row['outcome'])})"
        )
    return 0


def _outcome_vi(outcome: str) -> str:
    """A verdict or refusal code in Vietnamese: the short label, else the error's own message
    (every refusal code is one of errors.py's; newuser finding 5: ``NOT_A_PDF (NOT_A_PDF)``)."""
    if outcome in OUTCOME_VI:
        return OUTCOME_VI[outcome]
    for value in vars(errors).values():
        if (
            isinstance(value, type)
            and issubclass(value, errors.ServiceError)
            and value.code == outcome
        ):
            return "bị từ chối: " + value.message.rstrip(".")
    return "bị từ chối"


def cmd_migrate(args: argparse.Namespace) -> int:
    from signing_service.services.bootstrap import check_new_sqlite_database
    from signing_service.services.container import check_database_location, prepare_directories
    from signing_service.store.db import migrate, schema_revision

    settings = _settings()
    problems = settings.check_production()
    if problems:
        print(f"Từ chối ở chế độ production: {'; '.join(problems)}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        check_database_location(settings)
        check_new_sqlite_database(settings)
        prepare_directories(settings)
    except errors.ConfigurationError as e:
        print(_config_message(e.message), file=sys.stderr)
        return EXIT_CONFIG
    url = settings.effective_database_url
    try:
        before = schema_revision(url)
        migrate(url)
        after = schema_revision(url)
    except Exception as e:
        problem = _configuration_problem(e)
        if problem is None:
            raise
        print(problem, file=sys.stderr)
        return EXIT_CONFIG
    # Say what was done (newuser finding 19: silent on success).
    announce_data_dir(settings)
    shown = _shown_database(url)
    if before is None:
        print(f"Đã tạo lược đồ cơ sở dữ liệu {shown} (phiên bản {after}).")
    elif before != after:
        print(f"Đã nâng cấp lược đồ cơ sở dữ liệu {shown} từ phiên bản {before} lên {after}.")
    else:
        print(f"Lược đồ cơ sở dữ liệu {shown} đã ở phiên bản mới nhất ({after}); không thay đổi.")
    return _key_audit_chain(settings, before, force=bool(getattr(args, "key_audit_log", False)))


def _shown_database(url: str) -> str:
    from sqlalchemy import make_url

    return make_url(url).render_as_string(hide_password=True)


def _key_audit_chain(settings: Settings, schema_before: str | None, force: bool = False) -> int:
    """After migrating: MAC an audit log from before migration 0005, once (needs the audit
    key, which the migration itself never reads): when this run's migration crossed 0005
    (``schema_before``), or ``force`` (`migrate --key-audit-log`)."""
    from signing_service.audit import AuditNotKeyed, check_key, key_chain, mark_keyed
    from signing_service.audit.key import load_audit_key
    from signing_service.store.db import Database

    try:
        key = load_audit_key(settings)
    except errors.ConfigurationError as e:
        print(_config_message(e.message), file=sys.stderr)
        return EXIT_CONFIG
    db = Database(settings.effective_database_url, audit_key=key)
    try:
        with db.transaction() as session:
            keyed = key_chain(
                session, key, settings.audit_seals_path, schema_before=schema_before, force=force
            )
            mark_keyed(session, settings.audit_seals_path)
            # Another key than the log's is said here, not only by the next start (new user 23
            # #16: "không thay đổi", exit 0).
            check_key(session, key)
    except AuditNotKeyed as e:
        print(f"AUDIT_NOT_KEYED: {e}", file=sys.stderr)
        return EXIT_CONFIG
    finally:
        db.dispose()
    if keyed is not None:
        print(f"Đã khóa nhật ký kiểm toán (MAC, khóa {key.key_id}): {keyed} bản ghi có từ trước.")
    return 0


def cmd_agency_add(args: argparse.Namespace) -> int:
    from signing_service.services.accounts import create_agency

    services = _services()
    try:
        agency = create_agency(services, args.code, args.name, actor="cli")
    except errors.ServiceError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        services.close()
    print(f"Đã tạo cơ quan {agency.code} ({agency.name}).")
    return 0


STATUS_KEY_VI = {
    "active": "đang dùng",
    "overlap": "chuyển tiếp",
    "expired": "hết hạn",
    "revoked": "đã thu hồi",
}


def _print_issued(issued: IssuedKey, as_json: bool) -> None:
    """A newly issued key: the full key is printed here and never again."""
    key = issued.key
    if as_json:
        print(json.dumps({**key.__dict__, "api_key": issued.api_key}, ensure_ascii=False))
        return
    owner = key.agency_code or "đơn vị vận hành"
    expiry = f", hết hạn lúc {_shown_time(key.expires_at)}" if key.expires_at else ""
    print(f"Khóa API {key.key_id} ({key.role}, {owner}) cho {key.name}{expiry}.")
    print("Khóa chỉ hiển thị một lần; chỉ mã băm của khóa được lưu:")
    print(issued.api_key)


def _account_command(action: Callable[[Services], T]) -> T | None:
    """``action(services)``, or None after printing a refusal's code (the caller exits 5)."""
    services = _services()
    try:
        return action(services)
    except errors.ServiceError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return None
    finally:
        services.close()


def cmd_client_add(args: argparse.Namespace) -> int:
    from signing_service.services.accounts import issue_api_key

    operator = args.role == "operator"
    if operator == (args.agency is not None):
        print(
            "Lỗi cú pháp lệnh: khóa client/admin cần --agency; khóa operator không thuộc cơ "
            "quan nào (bỏ --agency).",
            file=sys.stderr,
        )
        return EXIT_USAGE
    issued = _account_command(
        lambda services: issue_api_key(
            services,
            agency_code=args.agency,
            name=args.name,
            role=args.role,
            actor="cli",
            expires_in_days=args.expires,
        ),
    )
    if issued is None:
        return EXIT_REFUSED
    _print_issued(issued, args.json)
    return 0


def cmd_operator_key_add(args: argparse.Namespace) -> int:
    from signing_service.services.accounts import create_operator_key

    issued = _account_command(
        lambda services: create_operator_key(
            services, args.name, actor="cli", expires_in_days=args.expires
        ),
    )
    if issued is None:
        return EXIT_REFUSED
    _print_issued(issued, args.json)
    return 0


def cmd_client_list(args: argparse.Namespace) -> int:
    from signing_service.services.accounts import list_api_keys

    views = _account_command(lambda services: list_api_keys(services, agency_code=args.agency))
    if views is None:
        return EXIT_REFUSED
    if args.json:
        print(json.dumps([v.__dict__ for v in views], ensure_ascii=False, indent=2))
        return 0
    if not views:
        print("Chưa có khóa API nào.")
        return 0
    for v in views:
        notes = [f"tạo {_shown_time(v.created_at)}"]
        if v.expires_at:
            notes.append(f"hết hạn {_shown_time(v.expires_at)}")
        if v.revoked_at:
            notes.append(f"thu hồi {_shown_time(v.revoked_at)}")
        if v.replaced_by:
            notes.append(f"thay bằng {v.replaced_by}")
        print(
            f"{v.key_id}  {v.role:<8}  {v.agency_code or '(vận hành)':<13}  "
            f"{STATUS_KEY_VI.get(v.status, v.status):<11}  {v.name}  ({'; '.join(notes)})"
        )
    return 0


def cmd_client_revoke(args: argparse.Namespace) -> int:
    from signing_service.services.accounts import revoke_api_key

    view = _account_command(lambda services: revoke_api_key(services, args.key_id, actor="cli"))
    if view is None:
        return EXIT_REFUSED
    if args.json:
        print(json.dumps(view.__dict__, ensure_ascii=False))
    else:
        print(
            f"Đã thu hồi khóa API {view.key_id} ({view.name}) lúc {_shown_time(view.revoked_at)}."
        )
    return 0


def cmd_client_rotate(args: argparse.Namespace) -> int:
    from signing_service.services.accounts import rotate_api_key

    result = _account_command(
        lambda services: rotate_api_key(
            services, args.key_id, actor="cli", overlap_hours=args.overlap
        ),
    )
    if result is None:
        return EXIT_REFUSED
    issued, previous = result
    if args.json:
        print(
            json.dumps(
                {
                    "new_key": {**issued.key.__dict__, "api_key": issued.api_key},
                    "previous": previous.__dict__,
                },
                ensure_ascii=False,
            )
        )
        return 0
    print(
        f"Khóa cũ {previous.key_id} còn hiệu lực đến {_shown_time(previous.expires_at)} (thời gian "
        "chuyển tiếp), sau đó bị từ chối."
    )
    _print_issued(issued, False)
    return 0


KIND_VI = {
    "pkcs12": "tệp PKCS#12 (kho khóa của dịch vụ)",
    "pkcs11": "HSM (PKCS#11)",
    "csc": "ký số từ xa (CSC)",
    "officer": "chứng thư người ký (ký hai bước)",
}


def _key_secret(args: argparse.Namespace) -> str | None:
    """The PKCS#12 passphrase or the PKCS#11 PIN: from the variable the operator names, from
    the first line of stdin, or typed at a prompt. Never from the command line itself (it
    would stay in the shell history and the process list)."""
    import getpass
    import os

    if args.secret_env:
        value = os.environ.get(args.secret_env)
        if value is None:
            print(f"Biến môi trường {args.secret_env} chưa được đặt.", file=sys.stderr)
            return None
        return value
    if args.secret_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    if sys.stdin.isatty():
        label = "Mật khẩu tệp PKCS#12" if args.pkcs12 else "Mã PIN của token/HSM"
        return getpass.getpass(f"{label}: ")
    print("Cần --secret-env TÊN_BIẾN hoặc --secret-stdin.", file=sys.stderr)
    return None


def _print_key(view: KeyView, verb: str) -> None:
    from datetime import datetime

    from signing_service.timefmt import VIETNAM_TZ

    expiry = datetime.fromisoformat(view.not_after).astimezone(VIETNAM_TZ)
    print(f"{verb} khóa {view.name} của cơ quan {view.agency_code}:")
    print(
        f"  Loại: {KIND_VI.get(view.kind, view.kind)}"
        + (f" — {view.source}" if view.source else "")
    )
    print(f"  Chứng thư: {view.subject}")
    print(f"  Hết hạn: {expiry.isoformat()} (giờ Việt Nam)")
    print(f"  SHA-256: {view.certificate_sha256}")


def cmd_key_add(args: argparse.Namespace) -> int:
    """Register key material for one agency (the operator only)."""
    import dataclasses

    from signing_service.services import keys

    material: keys.Material
    if args.pkcs12 or args.pkcs11:
        secret = _key_secret(args)
        if secret is None:
            return EXIT_USAGE
        if args.pkcs12:
            material = keys.Pkcs12Material(_read(args.pkcs12), secret.encode())
        else:
            material = keys.Pkcs11Material(
                uri=args.pkcs11,
                module=args.module,
                pin=secret,
                certificate=_read(args.certificate) if args.certificate else None,
                chain=_read(args.chain) if args.chain else None,
            )
    elif args.csc:
        provider, sep, credential = args.csc.partition(",")
        if not sep:
            print(
                f"{errors.InvalidKeyReference.code}: {errors.InvalidKeyReference.message}",
                file=sys.stderr,
            )
            return EXIT_REFUSED
        material = keys.CscMaterial(provider.strip(), credential.strip())
    else:
        material = keys.OfficerMaterial(_read(args.officer_cert))
    services = _services()
    try:
        view = keys.register_key(
            services,
            agency_code=args.agency,
            name=args.name,
            material=material,
            actor="cli",
            other_organisation_reason=args.allow_other_organization,
        )
    except errors.ConfigurationError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return EXIT_CONFIG
    except errors.ServiceError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        services.close()
    if args.json:
        print(json.dumps(dataclasses.asdict(view), ensure_ascii=False))
    else:
        _print_key(view, "Đã đăng ký")
    return 0


def cmd_key_list(args: argparse.Namespace) -> int:
    import dataclasses
    from datetime import datetime

    from signing_service.services.keys import list_keys
    from signing_service.timefmt import VIETNAM_TZ

    services = _services()
    try:
        views = list_keys(services, args.agency)
    except errors.ServiceError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        services.close()
    if args.json:
        print(json.dumps([dataclasses.asdict(v) for v in views], ensure_ascii=False, indent=2))
        return 0
    if not views:
        print("Chưa có khóa nào được đăng ký.")
    for v in views:
        status = "đã vô hiệu hóa" if v.disabled_at else "đang dùng"
        expiry = datetime.fromisoformat(v.not_after).astimezone(VIETNAM_TZ).date().isoformat()
        print(
            f"{v.agency_code}  {v.name}  [{status}]  {KIND_VI.get(v.kind, v.kind)}"
            + (f" — {v.source}" if v.source else "")
        )
        print(f"    {v.subject}; hết hạn {expiry}; SHA-256 {v.certificate_sha256}")
    return 0


def cmd_key_disable(args: argparse.Namespace) -> int:
    from signing_service.services.keys import disable_key

    services = _services()
    try:
        view = disable_key(services, agency_code=args.agency, name=args.name, actor="cli")
    except errors.ServiceError as e:
        print(f"{e.code}: {e.message}", file=sys.stderr)
        return EXIT_REFUSED
    finally:
        services.close()
    print(
        f"Đã vô hiệu hóa khóa {view.name} của cơ quan {view.agency_code}; các cấu hình ký số "
        "dùng khóa này sẽ từ chối ký cho đến khi quản trị viên cơ quan chọn khóa khác."
    )
    return 0


def _source_vi(source: str) -> str:
    kind, _, where = source.partition(":")
    if kind == "pinned":
        return f"ghim trong anchors.json ({where})"
    if kind == "configured":
        return f"cấu hình thêm ({where})"
    return "PKI thử nghiệm (chỉ ở chế độ phát triển)"


def cmd_trust_list(args: argparse.Namespace) -> int:
    """The trust store as the verifier sees it, loaded from the settings alone (no database,
    no object store): works on a production host before anything else is set up."""
    from datetime import UTC, datetime

    from signing_service.services.container import dev_anchor_problem
    from signing_service.timefmt import VIETNAM_TZ
    from signing_service.trust import TrustedCertificate, TrustStore, TrustStoreError

    settings = _settings()
    dev_root = None
    if not settings.is_production:
        # Same file as DevPki.root_cert_path; listed when the dev PKI has been generated.
        candidate = settings.pki_dir / "root.cert.pem"
        dev_root = candidate if candidate.is_file() else None
    try:
        store = TrustStore.load(
            settings.trust_anchors_file, extra=settings.extra_trust_anchors, dev_root=dev_root
        )
    except TrustStoreError as e:
        print(
            "Cấu hình không hợp lệ: SIGNING_SERVICE_TRUST_ANCHORS_FILE / "
            f"SIGNING_SERVICE_EXTRA_TRUST_ANCHORS: kho chứng thư tin cậy không đọc được ({e})",
            file=sys.stderr,
        )
        return EXIT_CONFIG
    # The anchors `serve` would refuse are not listed as fine (newuser finding 17).
    problem = dev_anchor_problem(settings, store)
    if problem:
        print(f"Từ chối ở chế độ production: {problem}", file=sys.stderr)
        return EXIT_CONFIG
    if args.json:
        print(
            json.dumps(
                {
                    "mode": settings.mode.value,
                    "manifest": str(settings.trust_anchors_file),
                    "anchors": [a.to_dict() for a in store.anchors],
                    "intermediates": [c.to_dict() for c in store.chain_certificates],
                },
                ensure_ascii=False,
                indent=2,
            )
        )
        return 0
    now = datetime.now(UTC)

    def show(item: TrustedCertificate) -> None:
        expiry = item.not_after.astimezone(VIETNAM_TZ).date().isoformat()
        print(f"  {item.name}")
        print(f"    Loại chữ ký số: {item.kind_label}")
        if item.authority:
            print(f"    Đơn vị quản lý: {item.authority}")
        print(
            f"    Hết hạn: {expiry} (giờ Việt Nam, +07:00)"
            + (" — ĐÃ HẾT HẠN" if item.not_after < now else "")
        )
        print(f"    SHA-256: {item.sha256}")
        print(f"    Nguồn: {_source_vi(item.source)}")

    print(f"Kho chứng thư tin cậy: {settings.trust_anchors_file}")
    print(f"\nChứng thư gốc tin cậy (điểm tin cậy): {len(store.anchors)}")
    for anchor in store.anchors:
        show(anchor)
    print(
        f"\nChứng thư trung gian (chỉ dùng để dựng chuỗi, không phải điểm tin cậy): "
        f"{len(store.chain_certificates)}"
    )
    for chain_cert in store.chain_certificates:
        show(chain_cert)
    if not settings.is_production and dev_root is None:
        print("\nGốc thử nghiệm chưa được tạo (tạo khi chạy ở chế độ phát triển: pki init).")
    return 0


def _print_due(items: list) -> None:  # type: ignore[type-arg]
    from signing_service.timefmt import api_time_or_none

    if not items:
        print("Không có văn bản B-LTA nào cần gia hạn lưu trữ.")
        return
    print(f"Văn bản cần gia hạn lưu trữ (dấu thời gian mới): {len(items)}")
    for item in items:
        expiry = api_time_or_none(item.tsa_not_after) or "không rõ"
        print(
            f"  {item.document_id}  {item.agency_code}  chứng thư TSA hết hạn {expiry}  "
            f"({item.digest_algorithm or '?'}): {item.to_dict()['reason_message']}"
        )


def cmd_preservation_plan(args: argparse.Namespace) -> int:
    """What is due for renewal (services/preservation.py); writes only the archive facts of
    versions not looked at yet."""
    from signing_service.services.preservation import plan

    services = _services()
    try:
        items = plan(services)
    finally:
        services.close()
    if args.json:
        print(json.dumps([i.to_dict() for i in items], ensure_ascii=False, indent=2))
    else:
        _print_due(items)
    return 0


def cmd_preservation_run(args: argparse.Namespace) -> int:
    """Renew what is due once: through the queue on PostgreSQL (defers, then works it until
    no job is ready), in this process on SQLite. Exit 0 when nothing failed, else 5."""
    from signing_service.services.preservation import run_inline, run_queue, uses_queue

    services = _services(serve_dev_pki=_dev_pki_missing())
    queued = uses_queue(services)
    try:
        summary = run_queue(services) if queued else run_inline(services)
    finally:
        services.close()
    if args.json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
    else:
        where = "hàng đợi PostgreSQL" if queued else "tại chỗ, SQLite"
        print(
            f"Gia hạn lưu trữ ({where}): cần gia hạn {summary.due}, đã gia hạn "
            f"{summary.count('renewed')}, bỏ qua {summary.count('skipped')}, lỗi "
            f"{summary.count('failed')}"
            + (f", giao lại từ tiến trình đã dừng {summary.recovered}" if summary.recovered else "")
        )
        for outcome in summary.outcomes:
            if outcome.status == "renewed":
                print(f"  {outcome.document_id} → phiên bản mới {outcome.new_document_id}")
            elif outcome.status == "failed":
                print(f"  ! {outcome.document_id}: {outcome.code}: {outcome.message}")
    return EXIT_REFUSED if summary.count("failed") else 0


def cmd_preservation_worker(_args: argparse.Namespace) -> int:
    """Work the preservation queue until stopped (PostgreSQL only)."""
    from signing_service.services.preservation import run_worker, uses_queue

    services = _services(serve_dev_pki=_dev_pki_missing())
    try:
        if not uses_queue(services):
            print(
                "Cấu hình không hợp lệ: SIGNING_SERVICE_DATABASE_URL: hàng đợi gia hạn lưu trữ "
                "cần PostgreSQL; với SQLite dùng `signing-service preservation run`.",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        schedule = services.settings
        print(
            "Tiến trình gia hạn lưu trữ đang chạy"
            + (
                f" (lịch: {schedule.preservation_cron})"
                if schedule.preservation_schedule
                else " (không có lịch; chỉ làm việc đã xếp hàng)"
            )
            + ". Dừng: Ctrl+C.",
            flush=True,
        )
        run_worker(services)
    finally:
        services.close()
    return 0


def _deployment_settings() -> Settings:
    """The settings of a command that needs the deployment: production refuses (exit 6) when
    it is not configured; development says which data directory it uses."""
    settings = _settings()
    problems = settings.check_production()
    if problems:
        print(f"Từ chối ở chế độ production: {'; '.join(problems)}", file=sys.stderr)
        sys.exit(EXIT_CONFIG)
    announce_data_dir(settings)
    return settings


def _print_backup(
    summary: object, verb: str, as_json: bool, settings: Settings | None = None
) -> None:
    from signing_service.backup import BackupSummary

    assert isinstance(summary, BackupSummary)
    if as_json:
        print(json.dumps(summary.to_dict(), ensure_ascii=False, indent=2))
        return
    rows = sum(summary.rows.values())
    print(
        f"{verb} {summary.directory}: {rows} bản ghi cơ sở dữ liệu ({len(summary.rows)} bảng, "
        f"lược đồ {summary.schema_revision}), {summary.objects} đối tượng "
        f"({summary.object_bytes} byte), {summary.files} tệp (kho khóa, niêm phong nhật ký)."
    )
    dev_key = (
        settings is not None
        and not settings.is_production
        and settings.audit_key is None
        and settings.audit_key_file is None
    )
    if dev_key:
        from signing_service.settings import DEV_AUDIT_KEY_FILE

        # Development keeps its audit key in <data_dir>/audit-dev.key, which the backup
        # copies (backup.py, "dev_audit_key"): saying it is missing was wrong there.
        print(
            f"Khóa nhật ký kiểm toán: {summary.audit_key_id}. Chế độ phát triển: khóa này (tệp "
            f"{DEV_AUDIT_KEY_FILE}) có trong bản sao lưu. Ở production, bí mật của khóa "
            "(SIGNING_SERVICE_AUDIT_KEY) và bí mật chính của kho khóa "
            "(SIGNING_SERVICE_KEY_STORE_SECRET) KHÔNG có trong bản sao lưu: giữ riêng."
        )
        return
    print(
        f"Khóa nhật ký kiểm toán: {summary.audit_key_id}. Bí mật của khóa này "
        "(SIGNING_SERVICE_AUDIT_KEY) và bí mật chính của kho khóa "
        "(SIGNING_SERVICE_KEY_STORE_SECRET) KHÔNG có trong bản sao lưu: giữ riêng."
    )


# `backup --help` / `restore --help`, which the runbook sends the operator to (new user 14 F7).
BACKUP_DESCRIPTION = """\
Sao lưu bản triển khai đang cấu hình (SIGNING_SERVICE_DATA_DIR, SIGNING_SERVICE_DATABASE_URL,
SIGNING_SERVICE_STORAGE_URL; hai biến sau mặc định nằm trong thư mục dữ liệu) vào THƯ_MỤC:
cơ sở dữ liệu (mọi bảng), kho đối tượng (kèm hạn lưu giữ và phong tỏa pháp lý), kho khóa
(khóa ký đã niêm phong) và niêm phong nhật ký kiểm toán; ở chế độ phát triển thêm PKI thử
nghiệm, token SoftHSM2, khóa nhật ký thử nghiệm và tệp dev-credentials.json.

THƯ_MỤC phải mới hoặc rỗng và không nằm trong dữ liệu của chính bản triển khai; được tạo chỉ
cho người dùng hiện tại (0700, tệp 0600). Có thể chạy khi dịch vụ đang phục vụ.

KHÔNG có trong bản sao lưu, giữ riêng (cần đúng giá trị này khi khôi phục): bí mật khóa nhật
ký kiểm toán (SIGNING_SERVICE_AUDIT_KEY / SIGNING_SERVICE_AUDIT_KEY_FILE) và bí mật chính của
kho khóa (SIGNING_SERVICE_KEY_STORE_SECRET).

Mã thoát: 0 xong; 4 không đọc/ghi được (thư mục, cơ sở dữ liệu, kho); 5 từ chối (thư mục
không rỗng…); 6 cấu hình."""

RESTORE_DESCRIPTION = """\
Khôi phục bản sao lưu trong THƯ_MỤC vào bản triển khai mà các biến môi trường chỉ tới:
SIGNING_SERVICE_DATA_DIR (thư mục dữ liệu; cơ sở dữ liệu SQLite và kho tệp mặc định nằm trong
đó), SIGNING_SERVICE_DATABASE_URL và SIGNING_SERVICE_STORAGE_URL khi đặt riêng.

Đích phải RỖNG: cơ sở dữ liệu không có bản ghi, kho đối tượng không có đối tượng (dừng dịch vụ,
xóa trạng thái cũ hoặc dùng bản triển khai mới, ví dụ
SIGNING_SERVICE_DATA_DIR=/srv/khoi-phuc signing-service restore THƯ_MỤC). Bản triển khai đang
dùng không bao giờ bị ghi đè.

Trước khi ghi bất cứ gì: kiểm tra khóa nhật ký kiểm toán đang cấu hình đúng là khóa của bản sao
lưu và mã xác thực (MAC) của danh mục, rồi từng tệp theo danh mục; bản sao lưu hỏng, thiếu hoặc
bị sửa bị từ chối. Sau khi khôi phục: chạy signing-service audit verify với cùng các biến môi
trường (lệnh in sẵn dòng đó).

Mã thoát: 0 xong; 4 không đọc/ghi được; 5 từ chối (bản sao lưu hỏng, đích không rỗng, khóa
nhật ký khác); 6 cấu hình."""


def _restored_check_hint(settings: Settings) -> str:
    """The command that checks the deployment just restored into, carrying its data directory
    (new user 14 F7: the printed ``signing-service audit verify``, typed as shown, checked the
    checkout's own var/ instead); a database or store URL set apart is named, not printed (it
    may hold a password)."""
    import shlex

    hint = (
        f"SIGNING_SERVICE_DATA_DIR={shlex.quote(str(settings.resolved_data_dir))} "
        "signing-service audit verify"
    )
    apart = [
        name
        for name in ("SIGNING_SERVICE_DATABASE_URL", "SIGNING_SERVICE_STORAGE_URL")
        if os.environ.get(name)
    ]
    if apart:
        hint += f" (cùng {', '.join(apart)} như khi khôi phục)"
    return hint


def cmd_backup(args: argparse.Namespace) -> int:
    """Exit 0: backed up; 4: the directory, database or store could not be read or written;
    5: refused (a directory that is not empty, nothing to back up); 6: configuration."""
    from signing_service.backup import BackupRefused, backup
    from storage import StorageUnavailableError

    settings = _deployment_settings()
    try:
        summary = backup(settings, Path(args.directory))
    except BackupRefused as e:
        print(f"Không sao lưu: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except errors.ConfigurationError as e:
        print(_config_message(e.message), file=sys.stderr)
        return EXIT_CONFIG
    except StorageUnavailableError as e:
        print(f"STORAGE_UNAVAILABLE: kho lưu trữ không sẵn sàng ({e})", file=sys.stderr)
        return EXIT_IO
    except OSError as e:
        print(f"Không ghi được bản sao lưu {args.directory}: {_os_reason(e)}", file=sys.stderr)
        return EXIT_IO
    _print_backup(summary, "Đã sao lưu vào", args.json, settings)
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    """Exit 0: restored; 4: unreadable backup files or storage; 5: refused (a damaged
    backup, a target that is not empty, another audit key); 6: configuration."""
    from signing_service.backup import BackupRefused, restore
    from storage import StorageUnavailableError

    settings = _deployment_settings()
    try:
        summary = restore(settings, Path(args.directory))
    except BackupRefused as e:
        print(f"Không khôi phục: {e}", file=sys.stderr)
        return EXIT_REFUSED
    except errors.ConfigurationError as e:
        print(_config_message(e.message), file=sys.stderr)
        return EXIT_CONFIG
    except StorageUnavailableError as e:
        print(f"STORAGE_UNAVAILABLE: kho lưu trữ không sẵn sàng ({e})", file=sys.stderr)
        return EXIT_IO
    except OSError as e:
        print(f"Không đọc/ghi được khi khôi phục: {_os_reason(e)}", file=sys.stderr)
        return EXIT_IO
    _print_backup(summary, "Đã khôi phục từ", args.json, settings)
    if not args.json:
        print(f"Kiểm tra lại: {_restored_check_hint(settings)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="signing-service", description="Dịch vụ ký số và xác minh chữ ký số")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    serve = sub.add_parser("serve", help="chạy API")
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int, help="số tiến trình phục vụ (mặc định 1)")
    serve.set_defaults(func=cmd_serve)
    sign = sub.add_parser("sign", help="ký một tệp PDF")
    sign.add_argument("input")
    sign.add_argument("output")
    sign.add_argument("--profile", required=True)
    sign.add_argument(
        "--agency", help="mã định danh cơ quan (khi tên cấu hình trùng giữa các cơ quan)"
    )
    sign.add_argument("--level", choices=["B-B", "B-T", "B-LT", "B-LTA"])
    sign.add_argument("--dossier-code")
    sign.add_argument(
        "--result-code", help="mã kết quả: {mã hồ sơ}-KQ{n}, hoặc auto (cần --dossier-code)"
    )
    sign.add_argument(
        "--appearance-kind",
        help="hình thức chữ ký thay cho của cấu hình: person, seal, copy, annex, digitised, none",
    )
    sign.add_argument("--copy-kind", help="với copy: SAO Y, SAO LỤC hoặc TRÍCH SAO")
    sign.add_argument("--document-number", help="với annex: số, ký hiệu văn bản chính")
    sign.add_argument("--field-name", help="ô chữ ký trống có sẵn trong tài liệu cần điền")
    sign.set_defaults(func=cmd_sign)
    verify = sub.add_parser(
        "verify",
        help="xác minh chữ ký số trong tệp PDF",
        description=(
            "Xác minh như trang tra cứu: kết luận ở dòng đầu là tình trạng văn bản (chữ ký "
            "số và sổ đăng ký cùng xét), dòng sau là kết luận riêng về chữ ký số."
        ),
        epilog=(
            "Mã thoát: 0 hợp lệ; 1 chữ ký số không hợp lệ; 2 chưa xác định được hoặc không có "
            "chữ ký số; 3 sai cú pháp lệnh; 4 lỗi đọc tệp; 5 bị từ chối (in mã lỗi); 6 cấu "
            "hình không hợp lệ; 7 chữ ký số hợp lệ nhưng văn bản đã bị thu hồi hoặc đã được "
            "thay thế (sổ đăng ký); 8 chữ ký số hợp lệ nhưng tệp có nội dung được thêm vào "
            "sau khi cấp, không phải của cơ quan ban hành."
        ),
    )
    verify.add_argument("file")
    verify.add_argument("--json", action="store_true", help="in báo cáo dạng JSON")
    verify.add_argument(
        "--at",
        metavar="THOI_DIEM",
        help=(
            "xác minh tại một thời điểm (ISO 8601, ví dụ 2030-01-01T00:00:00+07:00; "
            "không ghi múi giờ thì hiểu là giờ Việt Nam)"
        ),
    )
    verify.set_defaults(func=cmd_verify)
    pki = sub.add_parser("pki", help="PKI thử nghiệm")
    pki_sub = pki.add_subparsers(dest="pki_command", required=True, parser_class=_Parser)
    pki_sub.add_parser("init", help="tạo khóa và chứng thư thử nghiệm").set_defaults(
        func=cmd_pki_init
    )
    aud = sub.add_parser("audit", help="nhật ký kiểm toán")
    aud_sub = aud.add_subparsers(dest="audit_command", required=True, parser_class=_Parser)
    aud_verify = aud_sub.add_parser(
        "verify",
        help="kiểm tra chuỗi băm, mã xác thực (MAC) và các niêm phong của nhật ký",
    )
    aud_verify.add_argument("--json", action="store_true")
    aud_verify.set_defaults(func=cmd_audit_verify)
    aud_seal = aud_sub.add_parser(
        "seal",
        help="niêm phong đầu chuỗi nhật ký bằng dấu thời gian RFC 3161 (chạy định kỳ, ví dụ cron)",
    )
    aud_seal.add_argument(
        "--force", action="store_true", help="niêm phong cả khi không có bản ghi mới"
    )
    aud_seal.set_defaults(func=cmd_audit_seal)
    migrate_parser = sub.add_parser("migrate", help="cập nhật lược đồ cơ sở dữ liệu")
    migrate_parser.add_argument(
        "--key-audit-log",
        action="store_true",
        help="khóa (MAC) nhật ký kiểm toán chưa từng được khóa dù lược đồ đã từ 0005 trở đi "
        "(chỉ khi chắc chắn; được ghi vào nhật ký)",
    )
    migrate_parser.set_defaults(func=cmd_migrate)
    ag = sub.add_parser("agency", help="cơ quan")
    ag_sub = ag.add_subparsers(dest="agency_command", required=True, parser_class=_Parser)
    ag_add = ag_sub.add_parser("add", help="thêm cơ quan")
    ag_add.add_argument("code", help="mã định danh cơ quan, ví dụ 000.00.12.H12")
    ag_add.add_argument("name", help="tên cơ quan")
    ag_add.set_defaults(func=cmd_agency_add)
    cl = sub.add_parser("client", help="hệ thống gọi API")
    cl_sub = cl.add_subparsers(dest="client_command", required=True, parser_class=_Parser)
    cl_add = cl_sub.add_parser("add", help="cấp khóa API cho một hệ thống của cơ quan")
    cl_add.add_argument("--agency", help="mã định danh cơ quan (không dùng với --role operator)")
    cl_add.add_argument("--name", required=True, help="tên hệ thống, ví dụ Một cửa điện tử")
    cl_add.add_argument("--role", choices=["client", "admin", "operator"], default="client")
    cl_add.add_argument(
        "--expires", type=float, metavar="NGAY", help="khóa hết hạn sau số ngày này"
    )
    cl_add.add_argument("--json", action="store_true")
    cl_add.set_defaults(func=cmd_client_add)
    cl_list = cl_sub.add_parser("list", help="liệt kê khóa API (không bao giờ kèm bí mật)")
    cl_list.add_argument("--agency", help="chỉ khóa của cơ quan này")
    cl_list.add_argument("--json", action="store_true")
    cl_list.set_defaults(func=cmd_client_list)
    cl_revoke = cl_sub.add_parser("revoke", help="thu hồi khóa API (ngừng hiệu lực ngay)")
    cl_revoke.add_argument("key_id", help="mã khóa (16 chữ số hex, xem client list)")
    cl_revoke.add_argument("--json", action="store_true")
    cl_revoke.set_defaults(func=cmd_client_revoke)
    cl_rotate = cl_sub.add_parser(
        "rotate", help="xoay vòng khóa API: cấp khóa mới, khóa cũ còn hiệu lực một thời gian"
    )
    cl_rotate.add_argument("key_id", help="mã khóa (16 chữ số hex, xem client list)")
    cl_rotate.add_argument(
        "--overlap",
        type=float,
        default=24.0,
        metavar="GIO",
        help="khóa cũ còn hiệu lực thêm số giờ này (mặc định 24; 0: ngừng ngay)",
    )
    cl_rotate.add_argument("--json", action="store_true")
    cl_rotate.set_defaults(func=cmd_client_rotate)
    opk = sub.add_parser("operator-key", help="khóa API của đơn vị vận hành")
    opk_sub = opk.add_subparsers(dest="operator_key_command", required=True, parser_class=_Parser)
    opk_add = opk_sub.add_parser(
        "add", help="cấp khóa API cho đơn vị vận hành (API /v1/operator/…; không thuộc cơ quan)"
    )
    opk_add.add_argument("--name", required=True, help="tên người/hệ thống vận hành")
    opk_add.add_argument(
        "--expires", type=float, metavar="NGAY", help="khóa hết hạn sau số ngày này"
    )
    opk_add.add_argument("--json", action="store_true")
    opk_add.set_defaults(func=cmd_operator_key_add)
    ky = sub.add_parser("key", help="khóa ký đã đăng ký cho cơ quan (chỉ đơn vị vận hành)")
    ky_sub = ky.add_subparsers(dest="key_command", required=True, parser_class=_Parser)
    ky_add = ky_sub.add_parser(
        "add",
        help="đăng ký khóa ký hoặc chứng thư người ký cho một cơ quan (được kiểm tra trước)",
    )
    ky_add.add_argument("--agency", required=True, help="mã định danh cơ quan")
    ky_add.add_argument("--name", required=True, help="tên khóa, ví dụ so-tu-phap-con-dau")
    source = ky_add.add_mutually_exclusive_group(required=True)
    source.add_argument("--pkcs12", metavar="TỆP", help="tệp PKCS#12: được chép vào kho khóa")
    source.add_argument(
        "--pkcs11", metavar="URI", help="khóa trên HSM: pkcs11:token=NHÃN;object=NHÃN_KHÓA"
    )
    source.add_argument(
        "--csc",
        metavar="NHÀ_CUNG_CẤP,MÃ_CHỨNG_THƯ",
        help="ký số từ xa: tên nhà cung cấp trong SIGNING_SERVICE_CSC_PROVIDERS và credentialID",
    )
    source.add_argument(
        "--officer-cert", metavar="TỆP", help="chứng thư của người ký (ký hai bước), PEM/DER"
    )
    ky_add.add_argument(
        "--module", help="PKCS#11: tên thư viện trong SIGNING_SERVICE_PKCS11_MODULES"
    )
    ky_add.add_argument("--certificate", metavar="TỆP", help="PKCS#11: chứng thư của khóa")
    ky_add.add_argument("--chain", metavar="TỆP", help="PKCS#11: chứng thư trung gian")
    secret = ky_add.add_mutually_exclusive_group()
    secret.add_argument(
        "--secret-env",
        metavar="TÊN_BIẾN",
        help="biến môi trường chứa mật khẩu PKCS#12 hoặc mã PIN PKCS#11",
    )
    secret.add_argument(
        "--secret-stdin", action="store_true", help="đọc mật khẩu/mã PIN từ dòng đầu của stdin"
    )
    ky_add.add_argument(
        "--allow-other-organization",
        metavar="LÝ_DO",
        help="đăng ký dù trường Tổ chức của chứng thư khác tên cơ quan (đã xác minh); lý do "
        "được ghi vào nhật ký kiểm toán",
    )
    ky_add.add_argument("--json", action="store_true", help="in kết quả dạng JSON")
    ky_add.set_defaults(func=cmd_key_add)
    ky_list = ky_sub.add_parser("list", help="liệt kê khóa đã đăng ký")
    ky_list.add_argument("--agency", help="chỉ các khóa của cơ quan này")
    ky_list.add_argument("--json", action="store_true")
    ky_list.set_defaults(func=cmd_key_list)
    ky_dis = ky_sub.add_parser("disable", help="vô hiệu hóa một khóa đã đăng ký")
    ky_dis.add_argument("--agency", required=True, help="mã định danh cơ quan")
    ky_dis.add_argument("--name", required=True, help="tên khóa")
    ky_dis.set_defaults(func=cmd_key_disable)
    st = sub.add_parser("storage", help="kho lưu trữ đối tượng")
    st_sub = st.add_subparsers(dest="storage_command", required=True, parser_class=_Parser)
    rec = st_sub.add_parser(
        "reconcile",
        help="đối soát: xóa đối tượng mồ côi, bản ghi mất nội dung và tệp tạm còn sót",
    )
    rec.add_argument("--dry-run", action="store_true", help="chỉ báo cáo, không xóa")
    rec.add_argument(
        "--min-age", type=int, help="bỏ qua đối tượng mới hơn số giây này (mặc định 3600)"
    )
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(func=cmd_storage_reconcile)
    ev = sub.add_parser("evidence", help="bằng chứng ký (TT 15/2025 Điều 5–6)")
    ev_sub = ev.add_subparsers(dest="evidence_command", required=True, parser_class=_Parser)
    ev_verify = ev_sub.add_parser(
        "verify", help="kiểm tra gói bằng chứng ZIP: niêm phong của dịch vụ và mã băm từng tệp"
    )
    ev_verify.add_argument("zip", help="tệp ZIP tải từ /v1/signatures/{id}/evidence")
    ev_verify.add_argument("--json", action="store_true")
    ev_verify.set_defaults(func=cmd_evidence_verify)
    ev_purge = ev_sub.add_parser(
        "purge",
        help="xóa bằng chứng đã hết thời hạn lưu trữ (mặc định chỉ chạy thử; --yes để xóa)",
    )
    ev_purge.add_argument("--yes", action="store_true", help="xóa thật (mặc định: chạy thử)")
    ev_purge.add_argument("--json", action="store_true")
    ev_purge.set_defaults(func=cmd_evidence_purge)
    ver = sub.add_parser("verification", help="xác minh công khai")
    ver_sub = ver.add_subparsers(dest="verification_command", required=True, parser_class=_Parser)
    stats = ver_sub.add_parser(
        "stats", help="số lượt xác minh công khai theo ngày và kết quả (bộ đếm, không ghi nhật ký)"
    )
    stats.add_argument("--days", type=int, help="chỉ N ngày gần nhất")
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(func=cmd_verification_stats)
    bk = sub.add_parser(
        "backup",
        help="sao lưu cơ sở dữ liệu, kho đối tượng, kho khóa và niêm phong nhật ký vào THƯ_MỤC",
        description=BACKUP_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bk.add_argument(
        "directory",
        metavar="THƯ_MỤC",
        help="thư mục mới hoặc rỗng, ngoài dữ liệu của bản triển khai (nên ở ổ đĩa/máy khác)",
    )
    bk.add_argument("--json", action="store_true", help="in bản tóm tắt dạng JSON")
    bk.set_defaults(func=cmd_backup)
    rs = sub.add_parser(
        "restore",
        help="khôi phục bản sao lưu trong THƯ_MỤC vào bản triển khai rỗng (dừng dịch vụ trước)",
        description=RESTORE_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    rs.add_argument(
        "directory", metavar="THƯ_MỤC", help="thư mục của bản sao lưu (do lệnh backup tạo)"
    )
    rs.add_argument("--json", action="store_true", help="in bản tóm tắt dạng JSON")
    rs.set_defaults(func=cmd_restore)
    tr = sub.add_parser("trust", help="kho chứng thư tin cậy")
    tr_sub = tr.add_subparsers(dest="trust_command", required=True, parser_class=_Parser)
    tr_list = tr_sub.add_parser(
        "list", help="liệt kê chứng thư gốc tin cậy và chứng thư trung gian, kèm hạn và SHA-256"
    )
    tr_list.add_argument("--json", action="store_true")
    tr_list.set_defaults(func=cmd_trust_list)
    pres = sub.add_parser("preservation", help="gia hạn lưu trữ dài hạn văn bản B-LTA")
    pres_sub = pres.add_subparsers(dest="preservation_command", required=True, parser_class=_Parser)
    pres_plan = pres_sub.add_parser(
        "plan", help="liệt kê văn bản cần gia hạn (chứng thư TSA sắp hết hạn, thuật toán bị loại)"
    )
    pres_plan.add_argument("--json", action="store_true")
    pres_plan.set_defaults(func=cmd_preservation_plan)
    pres_run = pres_sub.add_parser("run", help="gia hạn một lần mọi văn bản đến hạn")
    pres_run.add_argument("--json", action="store_true")
    pres_run.set_defaults(func=cmd_preservation_run)
    pres_sub.add_parser(
        "worker", help="tiến trình làm việc của hàng đợi gia hạn (PostgreSQL), chạy theo lịch"
    ).set_defaults(func=cmd_preservation_worker)
    return parser


# Commands that may start from a data directory that does not exist yet: those that create a
# deployment (serve, migrate, pki init), restore (into a new, empty one) and the checks that
# need no deployment at all (verify, evidence verify). Every other command refuses a missing
# data directory (red team 12 F10: a mistyped SIGNING_SERVICE_DATA_DIR made even dry runs
# build a whole new development world there, then fail with an unrelated code).
_MAY_START_WITHOUT_A_DEPLOYMENT = frozenset(
    {
        "cmd_serve",
        "cmd_migrate",
        "cmd_pki_init",
        "cmd_restore",
        "cmd_verify",
        "cmd_evidence_verify",
        "cmd_trust_list",
    }
)


def _missing_deployment(func: object) -> str | None:
    """The Vietnamese refusal (exit 6) when ``func`` needs a deployment and the data directory
    does not exist; None otherwise. Development only: there a missing directory is filled with
    a whole invented world (PKI, database, SoftHSM token, audit key); production invents none
    and has its own refusals naming every missing setting. Nothing is created by looking."""
    if getattr(func, "__name__", "") in _MAY_START_WITHOUT_A_DEPLOYMENT:
        return None
    settings = _settings()
    if settings.is_production:
        return None
    where = settings.resolved_data_dir
    if where.exists():
        return None
    origin = (
        "SIGNING_SERVICE_DATA_DIR" if settings.data_dir_configured else "thư mục dữ liệu mặc định"
    )
    return (
        f"{CONFIG_PREFIX}: không có bản triển khai ở {where} ({origin}): thư mục dữ liệu không "
        "tồn tại (gõ sai đường dẫn?). Lệnh này không tạo gì; tạo bản triển khai bằng "
        "`signing-service migrate`, `signing-service pki init` hoặc `signing-service serve`, "
        "hoặc đặt SIGNING_SERVICE_DATA_DIR đúng thư mục đang dùng."
    )


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        refusal = _missing_deployment(getattr(args, "func", None))
        if refusal is not None:
            print(refusal, file=sys.stderr)
            return EXIT_CONFIG
        return int(args.func(args))
    except BrokenPipeError:
        # The reader went away (``… | head``): what Python's documentation advises, so that
        # flushing at exit does not print a traceback either.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return _broken_pipe_exit[0]
    except Exception as e:
        # Any command (those added later included): a database that cannot be reached is a
        # configuration error with a message, never a traceback.
        problem = _configuration_problem(e)
        if problem is None:
            raise
        print(problem, file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
