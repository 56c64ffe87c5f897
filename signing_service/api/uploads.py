"""Streaming multipart reception for large uploads (dossier attachments).

The file part is written to a temporary file as it arrives and hashed on the way, so a 1 GB
upload never sits in memory; text fields are small and bounded. A client that disconnects
halfway, a body that ends before its closing boundary or a file over the limit leaves nothing
behind: the temporary file is removed before the error is raised.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from signing_service import errors
from signing_service.services.attachments import SpooledUpload
from signing_service.services.documents import check_filename

MAX_FIELD_BYTES = 4096
MAX_BOUNDARY_BYTES = 70
BATCH_BYTES = 1024 * 1024
MAX_FIELDS = 16


class Sink(Protocol):
    """Where the file's bytes go while they arrive, besides the spool file (a store upload)."""

    def put_nowait(self, chunks: list[bytes]) -> bool: ...

    def put(self, chunks: list[bytes]) -> None: ...

    def abort(self, error: BaseException) -> None: ...


def _write_all(fd: int, chunks: list[bytes]) -> None:
    """One writev for the whole batch (retried for the rest if the kernel takes less)."""
    views = [memoryview(c) for c in chunks if c]
    while views:
        written = os.writev(fd, views[:1024])
        while views and written >= len(views[0]):
            written -= len(views[0])
            views.pop(0)
        if views and written:
            views[0] = views[0][written:]


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    headers: dict[bytes, bytes] = field(default_factory=dict)
    value: bytearray = field(default_factory=bytearray)


@dataclass
class Received:
    """``upload.sha256`` is empty when a sink took the bytes: the sink's digest is the one."""

    fields: dict[str, str]
    upload: SpooledUpload | None
    sink: Sink | None = None


class _Receiver:
    def __init__(
        self,
        tmp_dir: Path,
        file_field: str,
        max_file_bytes: int,
        check_field: Callable[[str, str], None],
        sink_factory: Callable[[], Sink] | None,
    ) -> None:
        self.sink_factory = sink_factory
        self.sink: Sink | None = None
        # File bytes received but not yet written: written (one writev) and handed to the sink
        # as one item per ~1 MiB, not per network read.
        self.batch: list[bytes] = []
        self.batch_bytes = 0
        self.tmp_dir = tmp_dir
        self.file_field = file_field
        self.max_file_bytes = max_file_bytes
        self.check_field = check_field
        self.fields: dict[str, str] = {}
        self.part = _Part()
        self._header_field = bytearray()
        self._header_value = bytearray()
        self.fd: int | None = None
        self.path: Path | None = None
        self.filename: str | None = None
        self.size = 0
        self.hash = hashlib.sha256()
        self.file_done = False
        self.ended = False
        self.error: errors.ServiceError | None = None

    # python-multipart callbacks (errors are kept and raised after ``write`` returns)
    def on_part_begin(self) -> None:
        self.part = _Part()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self.part.headers[bytes(self._header_field).lower()] = bytes(self._header_value)
        self._header_field.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self.part.headers.get(b"content-disposition", b""))
        self.part.name = options.get(b"name", b"").decode("utf-8", "replace")
        raw_filename = options.get(b"filename")
        if raw_filename is not None:
            self.part.filename = raw_filename.decode("utf-8", "replace")
        if self.part.name == self.file_field and raw_filename is not None:
            if self.path is not None:
                self._fail(errors.InvalidRequest("Chỉ gửi một tệp trong mỗi yêu cầu."))
                return
            self.tmp_dir.mkdir(parents=True, exist_ok=True)
            self.fd, name = tempfile.mkstemp(dir=self.tmp_dir, prefix="upload-")
            self.path = Path(name)
            if self.sink_factory is not None:
                self.sink = self.sink_factory()
            try:
                # Refused before the file's bytes arrive (a NUL or a 300-character name
                # answered 500 from PostgreSQL); kept as its base name (a control character
                # in a directory part refuses it too: documents.base_filename).
                self.filename = check_filename(self.part.filename)
            except errors.ServiceError as e:
                self._fail(e)

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self.error is not None:
            return
        if self.part.name == self.file_field and self.receiving_file:
            chunk = data[start:end]
            self.size += len(chunk)
            if self.size > self.max_file_bytes:
                self._fail(
                    errors.PayloadTooLarge(
                        f"Tệp vượt quá dung lượng cho phép "
                        f"({self.max_file_bytes // (1024 * 1024)} MB).",
                        details={"max_bytes": self.max_file_bytes},
                    )
                )
                return
            if self.sink is None:
                # With a sink (a store upload), the store hashes what it writes: one pass.
                self.hash.update(chunk)
            self.batch.append(chunk)
            self.batch_bytes += len(chunk)
            return
        self.part.value += data[start:end]
        if len(self.part.value) > MAX_FIELD_BYTES:
            self._fail(errors.InvalidRequest("Trường văn bản trong yêu cầu quá dài."))

    def on_part_end(self) -> None:
        if self.error is not None:
            return
        if self.part.name == self.file_field and self.receiving_file:
            self.file_done = True
            return
        if len(self.fields) >= MAX_FIELDS:
            self._fail(errors.InvalidRequest("Yêu cầu có quá nhiều trường."))
            return
        value = self.part.value.decode("utf-8", "replace")
        self.fields[self.part.name] = value
        try:
            # Checked as soon as the field arrives: a wrong component is refused before a
            # large file that follows it is received.
            self.check_field(self.part.name, value)
        except errors.ServiceError as e:
            self._fail(e)

    def on_end(self) -> None:
        self.ended = True

    def _fail(self, error: errors.ServiceError) -> None:
        if self.error is None:
            self.error = error

    @property
    def receiving_file(self) -> bool:
        return self.fd is not None and not self.file_done

    def drain(self, final: bool = False) -> list[bytes]:
        """Write the pending bytes to the spool file once there is enough of them (or at the
        end) and return them for the sink; close the file after its last bytes."""
        if self.fd is None or not (final or self.file_done or self.batch_bytes >= BATCH_BYTES):
            return []
        batch, self.batch, self.batch_bytes = self.batch, [], 0
        _write_all(self.fd, batch)
        if self.file_done:
            os.close(self.fd)
            self.fd = None
        return batch

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


async def receive_multipart(
    request: Request,
    *,
    tmp_dir: Path,
    file_field: str,
    max_file_bytes: int,
    check_field: Callable[[str, str], None] = lambda _n, _v: None,
    sink_factory: Callable[[], Sink] | None = None,
) -> Received:
    """Receive a multipart/form-data body. The caller owns (and must remove) the spooled file
    of a successful result; on any error nothing is left behind. With ``sink_factory``, the
    file's bytes are also handed to a sink (a store upload running in another thread) as they
    arrive; on error the sink is aborted."""
    content_type = request.headers.get("content-type", "")
    kind, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise errors.MalformedRequest("Yêu cầu phải là multipart/form-data.")
    if len(boundary) > MAX_BOUNDARY_BYTES:
        # RFC 2046 §5.1.1: at most 70 characters (python-multipart raised past 256: a 500).
        raise errors.MalformedRequest("Dữ liệu multipart không hợp lệ (boundary quá dài).")
    receiver = _Receiver(tmp_dir, file_field, max_file_bytes, check_field, sink_factory)
    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": receiver.on_part_begin,
            "on_part_data": receiver.on_part_data,
            "on_part_end": receiver.on_part_end,
            "on_header_field": receiver.on_header_field,
            "on_header_value": receiver.on_header_value,
            "on_header_end": receiver.on_header_end,
            "on_headers_finished": receiver.on_headers_finished,
            "on_end": receiver.on_end,
        },
    )
    try:

        async def feed(batch: list[bytes]) -> None:
            sink = receiver.sink
            if batch and sink is not None and not sink.put_nowait(batch):
                await anyio.to_thread.run_sync(sink.put, batch)

        async for chunk in request.stream():
            parser.write(chunk)
            if receiver.error is not None:
                raise receiver.error
            await feed(receiver.drain())
        parser.finalize()
        if receiver.error is not None:
            raise receiver.error
        if not receiver.ended or receiver.receiving_file:
            raise errors.UploadIncomplete()
        await feed(receiver.drain(final=True))
    except BaseException as e:
        receiver.discard()
        error: BaseException = e
        if isinstance(e, ClientDisconnect):
            error = errors.UploadIncomplete()
        elif isinstance(e, FormParserError):
            error = errors.MalformedRequest("Dữ liệu multipart không hợp lệ.")
        if receiver.sink is not None:
            await anyio.to_thread.run_sync(receiver.sink.abort, error)
        if error is e:
            raise
        raise error from None
    upload = None
    if receiver.path is not None:
        upload = SpooledUpload(
            path=receiver.path,
            size=receiver.size,
            sha256="" if receiver.sink is not None else receiver.hash.hexdigest(),
            filename=receiver.filename,
        )
    return Received(receiver.fields, upload, receiver.sink)
