"""JSON log lines and request ids (issue 13 item 2).

One JSON object per line on standard error, through python-json-logger: it is a formatter for
the standard library's ``logging``, so every existing ``logging.getLogger(__name__)`` call,
uvicorn's own lines and the libraries' warnings become JSON with no change at their call
sites (structlog would have meant a second logging API beside the one the code uses).

Every line carries ``time`` (ISO 8601, +07:00), ``level``, ``logger``, ``message`` and, inside
a request, ``request_id`` and ``agency`` (the authenticated agency's code): a
:class:`contextvars.ContextVar` holds the request's :class:`RequestContext`, and worker
threads (anyio copies the context into them) see the same object.

The access line (logger ``signing_service.access``, one per request, written by
:class:`signing_service.api.observe.RequestObserver`) has ``method``, ``route`` (the route
*template*), ``status`` and ``duration_ms``. Never in a line: request headers (API keys,
Authorization), bodies (documents, PINs, passphrases), file names (personal data in
dossiers), query strings. As a last guard :class:`JsonFormatter` masks anything shaped like
one of the service's API keys or a bearer credential wherever it appears.
"""

from __future__ import annotations

import logging
import logging.config
import re
import uuid
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pythonjsonlogger.json import JsonFormatter as _BaseJsonFormatter

from signing_service.timefmt import VIETNAM_TZ

ACCESS_LOGGER = "signing_service.access"
REQUEST_ID_HEADER = "X-Request-ID"
# A client's request id is kept when it is short and printable (visible ASCII, no spaces):
# anything else is replaced, never echoed (header and log injection, unbounded lines).
MAX_REQUEST_ID = 64
_REQUEST_ID = re.compile(rb"[\x21-\x7e]{1,%d}" % MAX_REQUEST_ID)

# The service's API keys (services/auth.py: ssk_<key id>_<secret>) and bearer credentials.
_SECRETS = re.compile(r"ssk_[A-Za-z0-9]+_[A-Za-z0-9_\-]+|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]+")


@dataclass
class RequestContext:
    """What every log line of one request carries: its id and, once the API key is
    authenticated, the agency's code (``None`` for anonymous and operator requests)."""

    request_id: str
    agency: str | None = None


_CURRENT: ContextVar[RequestContext | None] = ContextVar("signing_service_request", default=None)


def current() -> RequestContext | None:
    """The request being served in this context (``None`` outside a request)."""
    return _CURRENT.get()


def begin(context: RequestContext) -> Any:
    """Bind ``context`` to this context; returns the token for :func:`end`."""
    return _CURRENT.set(context)


def end(token: Any) -> None:
    """Unbind what :func:`begin` bound."""
    _CURRENT.reset(token)


def set_agency(code: str | None) -> None:
    """Record the authenticated agency's code on the current request (no-op outside one)."""
    context = _CURRENT.get()
    if context is not None:
        context.agency = code


def request_id_from(value: bytes | None) -> str:
    """The request id for a request whose ``X-Request-ID`` header is ``value``: kept when it is
    1 to :data:`MAX_REQUEST_ID` visible ASCII characters and not shaped like a credential
    (:func:`mask_secrets` would change it), else (absent, too long, spaces, control or
    non-ASCII characters, an API key's shape) a new random one (32 hex digits)."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        kept = value.decode("ascii")
        # An id shaped like an API key would be masked in the logs (``***``): the caller could
        # not find the id it was given back, and a key pasted there would be echoed. Replaced,
        # never echoed nor masked (red team 12 F11).
        if mask_secrets(kept) == kept:
            return kept
    return uuid.uuid4().hex


def mask_secrets(text: str) -> str:
    """``text`` with every API-key-shaped or bearer credential replaced by ``***``."""
    return _SECRETS.sub("***", text)


class ContextFilter(logging.Filter):
    """Adds ``request_id`` and ``agency`` of the current request to every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _CURRENT.get()
        if not hasattr(record, "request_id"):
            record.request_id = context.request_id if context else None
        if not hasattr(record, "agency"):
            record.agency = context.agency if context else None
        return True


class JsonFormatter(_BaseJsonFormatter):
    """One JSON object per record: ``time`` (+07:00), ``level``, ``logger``, ``message``,
    ``request_id``, ``agency`` and the record's extra fields; Vietnamese kept as is
    (``ensure_ascii`` off); secrets masked (:func:`mask_secrets`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("json_ensure_ascii", False)
        # uvicorn's coloured duplicate of its message, and the raw call arguments.
        kwargs.setdefault("reserved_attrs", [*_RESERVED, "color_message"])
        super().__init__(*args, **kwargs)

    def add_fields(
        self, log_data: dict[str, Any], record: logging.LogRecord, message_dict: dict[str, Any]
    ) -> None:
        log_data["time"] = datetime.fromtimestamp(record.created, VIETNAM_TZ).isoformat(
            timespec="milliseconds"
        )
        log_data["level"] = record.levelname
        log_data["logger"] = record.name
        log_data["message"] = record.getMessage()
        super().add_fields(log_data, record, message_dict)

    def format(self, record: logging.LogRecord) -> str:
        return mask_secrets(super().format(record))


_RESERVED = [
    "args",
    "asctime",
    "created",
    "exc_info",
    "exc_text",
    "filename",
    "funcName",
    "levelname",
    "levelno",
    "lineno",
    "module",
    "msecs",
    "message",
    "msg",
    "name",
    "pathname",
    "process",
    "processName",
    "relativeCreated",
    "stack_info",
    "thread",
    "threadName",
    "taskName",
]


def logging_config(level: str = "INFO") -> dict[str, Any]:
    """A :func:`logging.config.dictConfig` dictionary: everything (the service, uvicorn,
    libraries) as JSON lines on standard error; the service's own loggers and uvicorn's at
    ``level``, other libraries at WARNING; uvicorn's access log off (the service writes its
    own, :data:`ACCESS_LOGGER`). Given to ``uvicorn.run(log_config=...)`` so that each worker
    process of ``serve --workers N`` configures itself the same way."""
    handler = {
        "class": "logging.StreamHandler",
        "stream": "ext://sys.stderr",
        "formatter": "json",
        "filters": ["request"],
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request": {"()": ContextFilter}},
        "formatters": {"json": {"()": JsonFormatter}},
        "handlers": {"stderr": handler},
        "root": {"level": "WARNING", "handlers": ["stderr"]},
        "loggers": {
            "signing_service": {"level": level},
            "uvicorn": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.error": {"level": level, "handlers": [], "propagate": True},
            "uvicorn.access": {"level": "WARNING", "handlers": [], "propagate": False},
        },
    }


def configure(level: str = "INFO") -> None:
    """Apply :func:`logging_config` to this process."""
    logging.config.dictConfig(logging_config(level))
