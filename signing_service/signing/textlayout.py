"""Text boxes of a PDF page, measured by PDFium in one worker process of its own (issue 10).

A visible signature must not cover the page's text (signing/placement.py), so the page's text
has to be located on every visible signature. Running poppler's ``pdftotext`` per signature
cost 6-13 ms (a process start and an XML parse) against a 4-5 ms invisible signature; PDFium
(pypdfium2) gives the text rectangles of a loaded page in about half a millisecond.

PDFium does not run in the server process: it is not thread-safe (signing runs in threads),
and a hostile page can make it loop or crash (a few kilobytes of compressed content stream
expand to millions of text operators). So it runs in ONE persistent worker process, started
on first use and kept: callers are serialised by a lock, each request has a wall-clock budget
(``timeout``) after which the worker is killed (the next call starts a fresh one), and the
worker lives within an address-space limit (``memory_limit_bytes``). Any failure is
:class:`LayoutUnavailable`; placement turns it into ``PAGE_LAYOUT_UNAVAILABLE`` (422).

The worker is a fresh interpreter (``python -m signing_service.signing.textlayout``) talking
over a socket pair with multiprocessing's message framing. Not ``fork`` (the server is
multi-threaded), not the ``forkserver`` (the verification pool's, preloaded with the verifier:
a second preload list would be ignored or replace that one), and not multiprocessing's
``spawn`` (it re-runs the parent's main script, which fails in any script without a
``__main__`` guard). Starting costs ~0.1 s once, and again only after a worker was killed.
It is in a session of its own (a terminal's Ctrl-C is for the parent, which stops it); when
the parent dies, its end of the socket closes and the worker exits.

Rectangles are PDFium's ``FPDFText_GetRect``: the glyph boxes of runs of characters, in the
page's default user space (not turned by ``/Rotate``, not shifted by the CropBox; checked on
rotated, cropped and shifted-origin pages in tests/test_textlayout.py), merged into lines in
the worker (:func:`lines`).
"""

from __future__ import annotations

import atexit
import ctypes
import logging
import mmap
import os
import resource
import socket
import subprocess
import sys
import threading
import time
from multiprocessing.connection import Connection
from typing import Any

log = logging.getLogger(__name__)

Rect = tuple[float, float, float, float]

# Seconds one page may take (PDFium on an ordinary page: under 10 ms). Callers share one
# worker, so this bounds how long one hostile page holds up every agency's visible signing
# (red team, issue 10: 10 s per page let a 5-page document hold a request for 40 s).
TIMEOUT = 2.0
# Seconds a fresh worker may take to start (a new interpreter importing pypdfium2).
START_TIMEOUT = 60.0
# Address space of the worker (bytes): PDFium's text page of a hostile page grows with its
# text operators; over this it fails (MemoryError or a crash), not the server.
MEMORY_LIMIT = 1024**3
# Inputs of at least this size go to the worker through a memory file shared with it (an
# anonymous memfd, no path: only this process and its worker hold it), not through the pipe.
# Measured (one A4 page plus a filler stream, median of 7): 100 kB pipe 0.94 ms / file
# 1.11 ms; 1 MB 2.75 / 1.31; 10 MB 14.0 / 3.9; 50 MB 75 / 28. The file was a private temporary
# file on disk until the memfd: writing 1 MB there cost the signing thread ~0.25 ms of a
# ~0.7 ms round trip, writing it to the memfd ~0.07 ms (``python -m bench.run
# --appearance-only``, "of which placing it").
FILE_THRESHOLD = 256 * 1024
# More text runs than this on one page is a hostile page, not a document (a dense A4 table
# has a few thousand); placement over it would cost seconds.
MAX_BOXES = 100_000
# Line texts are returned for at most this many lines of a page (a signer block is found on
# an ordinary last page; a page of more lines gets boxes only), each cut to this many
# characters: the answer stays bounded whatever the page holds.
MAX_TEXT_LINES = 2_000
MAX_LINE_CHARS = 200
# A page index meaning "the document's last page" (TextLayout.submit_last_page).
LAST_PAGE = -1
# The shared memory file keeps its pages up to this size between requests (the largest
# ordinary inputs); grown past it by a large input, it is emptied before the next one.
KEEP_SHARED = 16 * 1024 * 1024


class LayoutUnavailable(Exception):
    """The page's text layout could not be measured (unreadable document or page, over the
    time or memory budget, worker crash). ``reason``: a short English description for logs."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _merge_rows(rects: list[Rect]) -> list[Rect]:
    """Runs of horizontal text merged into lines: runs whose vertical centres lie within the
    first run's height form a row; in a row, runs less than about an em apart are one line.
    The em is estimated as the row's tallest glyph box (capitals, ascenders and Vietnamese
    diacritics are ~0.7-0.9 em): a gap under 1.5× that is at most ~1.3 em; a justified line's
    widest word spaces are about an em, table columns are further apart."""
    out: list[Rect] = []
    row: list[Rect] = []
    band = (0.0, 0.0)
    for rect in sorted(rects, key=lambda r: (r[1] + r[3]) / 2):
        centre = (rect[1] + rect[3]) / 2
        if row and band[0] <= centre <= band[1] and rect[1] <= (band[0] + band[1]) / 2:
            row.append(rect)
            continue
        out.extend(_merge_row(row))
        row, band = [rect], (rect[1], rect[3])
    out.extend(_merge_row(row))
    return out


def _merge_row(row: list[Rect]) -> list[Rect]:
    if not row:
        return []
    gap = 1.5 * max(r[3] - r[1] for r in row)
    out: list[Rect] = []
    for x1, y1, x2, y2 in sorted(row):
        if out:
            a1, b1, a2, b2 = out[-1]
            if x1 - a2 <= gap:
                out[-1] = (a1, min(b1, y1), max(a2, x2), max(b2, y2))
                continue
        out.append((x1, y1, x2, y2))
    return out


def lines(rects: list[Rect]) -> list[Rect]:
    """PDFium's text runs (``FPDFText_GetRect``: one per text object and line, so a line whose
    words are separate text objects is many runs) merged into line boxes, as placement needs
    them (a body line is told by its width). Runs taller than wide by 1.5× are vertical text
    (user space of a page drawn for ``/Rotate``) and are merged top to bottom. Shapes:
    ``(x1, y1, x2, y2)`` user-space points; the result covers every run."""
    flat = [(r[0], r[1], r[2], r[3]) for r in rects]
    horizontal = [r for r in flat if r[3] - r[1] <= 1.5 * (r[2] - r[0])]
    vertical = [(r[1], r[0], r[3], r[2]) for r in flat if r[3] - r[1] > 1.5 * (r[2] - r[0])]
    return _merge_rows(horizontal) + [(r[1], r[0], r[3], r[2]) for r in _merge_rows(vertical)]


def _measure(
    pdfium: Any, source: bytes | str, page_index: int, with_text: bool = False
) -> tuple[int, list[Any]]:
    """``(index, lines)`` of page ``page_index`` (0-based; :data:`LAST_PAGE`: the document's
    last page, whose index is then returned)."""
    document = pdfium.PdfDocument(source)
    try:
        if page_index == LAST_PAGE:
            page_index = len(document) - 1
        if not 0 <= page_index < len(document):
            raise LayoutUnavailable(f"page {page_index} of {len(document)}")
        page = document[page_index]
        try:
            text = page.get_textpage()
            try:
                count = text.count_rects()
                if count > MAX_BOXES:
                    raise LayoutUnavailable(f"{count} text boxes on the page")
                boxes = lines([text.get_rect(i) for i in range(count)])
                if not with_text:
                    return page_index, boxes
                if len(boxes) > MAX_TEXT_LINES:
                    return page_index, [(box, "") for box in boxes]
                return page_index, [
                    (box, text.get_text_bounded(*box)[:MAX_LINE_CHARS].replace("\r\n", " "))
                    for box in boxes
                ]
            finally:
                text.close()
        finally:
            page.close()
    finally:
        document.close()


class _SharedInput:
    """The worker's view of the memory file it shares with the server process: one read-only
    shared mapping (``MAP_SHARED``, ``PROT_READ``) of the whole file, kept between requests and
    mapped again only when the file's size changed (the server grew it for a larger input, or
    cut it back past :data:`KEEP_SHARED`).

    Why kept: mapping the file for each request (``mmap`` and ``munmap``, and a page fault on
    every page PDFium touched, each time) cost the worker ~0.06 ms of its ~0.3 ms per page
    (``python -m bench.run --appearance-only``, the person column: the worker's time is the
    signing thread's when the other core is busy). Read-only: PDFium cannot change the file
    (a write through the view faults, the worker dies, the call is ``LayoutUnavailable``).
    The server writes the next input only after it has read this request's answer (one request
    at a time, ``TextLayout``'s lock), so the view never changes under PDFium."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.size = 0
        self.address: int | None = None

    def _unmap(self) -> None:
        if self.address is not None:
            _libc().munmap(ctypes.c_void_p(self.address), ctypes.c_size_t(self.size))
            self.address, self.size = None, 0

    def view(self, length: int) -> Any:
        """The first ``length`` bytes of the file, in place (a ctypes array PDFium reads;
        ``b""`` when empty). ``OSError`` when the file is shorter or cannot be mapped."""
        if length == 0:
            return b""
        size = os.fstat(self.fd).st_size
        if size < length:
            raise OSError(f"the shared file has {size} bytes, not {length}")
        if self.address is None or size != self.size:
            self._unmap()
            libc = _libc()
            address = libc.mmap(
                None, ctypes.c_size_t(size), mmap.PROT_READ, mmap.MAP_SHARED, self.fd, 0
            )
            if address is None or address == ctypes.c_void_p(-1).value:
                raise OSError(ctypes.get_errno(), "mmap of the shared file failed")
            self.address, self.size = address, size
        return (ctypes.c_char * length).from_address(self.address)

    def close(self) -> None:
        self._unmap()


_LIBC: Any = None


def _libc() -> Any:
    """libc's ``mmap`` and ``munmap`` (Python's ``mmap`` module exposes no address of a
    read-only mapping, which PDFium needs as a buffer)."""
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = (
            ctypes.c_void_p,
            ctypes.c_size_t,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_long,
        )
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = (ctypes.c_void_p, ctypes.c_size_t)
        _LIBC = libc
    return _LIBC


def _worker_main(conn: Connection, memory_limit: int, shared_fd: int) -> None:
    if memory_limit > 0:
        resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))
    import pypdfium2 as pdfium  # type: ignore[import-untyped]

    shared_input = _SharedInput(shared_fd)
    conn.send("ready")
    while True:
        try:
            # ``shared``: the input's length in the shared memory file, else it follows.
            page_index, shared, with_text = conn.recv()
            inline = conn.recv_bytes() if shared is None else None
        except (EOFError, OSError):
            return  # the parent closed the pipe or died
        try:
            source = shared_input.view(shared) if inline is None else inline
            answer = _measure(pdfium, source, page_index, with_text)
            conn.send(("ok", answer))
        except LayoutUnavailable as e:
            conn.send(("error", e.reason))
        except pdfium.PdfiumError as e:
            conn.send(("error", f"PDFium: {e}"))
        except MemoryError:
            conn.send(("error", "out of memory"))
            return  # the heap may be in any state: the next call starts afresh
        except Exception as e:  # noqa: BLE001 - reported to the caller, which logs it
            # Only the document can get here (a page PDFium's bindings trip on): a result for
            # this request, the worker stays.
            conn.send(("error", f"{type(e).__name__}: {e}"))


class _Worker:
    def __init__(self, memory_limit: int) -> None:
        parent, child = socket.socketpair()
        # The large inputs' way in (FILE_THRESHOLD): anonymous, closed with the worker.
        self.shared_fd = os.memfd_create("signing-service-layout", os.MFD_CLOEXEC)
        self.shared_size = 0
        # The file mapped here for writing (share); None until the first large input.
        self._shared_map: mmap.mmap | None = None
        try:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    __name__,
                    str(child.fileno()),
                    str(memory_limit),
                    str(self.shared_fd),
                ],
                pass_fds=(child.fileno(), self.shared_fd),
                stdin=subprocess.DEVNULL,
                # Its own session: a Ctrl-C at a terminal is for the parent, which stops it.
                start_new_session=True,
            )
        except BaseException:
            os.close(self.shared_fd)
            raise
        finally:
            child.close()
        self.conn = Connection(parent.detach())
        try:
            if not self.conn.poll(START_TIMEOUT):
                raise LayoutUnavailable("the layout worker did not start")
            self.conn.recv()  # "ready"
        except (EOFError, OSError):
            self.kill()
            raise LayoutUnavailable("the layout worker did not start") from None
        except LayoutUnavailable:
            self.kill()
            raise

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def share(self, pdf: bytes) -> int:
        """Put ``pdf`` at the start of the shared memory file; its length. The file is
        ``pdf``'s size when it has to grow, and is cut back to it when it had grown past
        :data:`KEEP_SHARED` (its pages freed); otherwise a shorter input leaves the tail of an
        earlier one after it, which the worker does not read.

        Written through a mapping kept between requests (a copy into pages already mapped):
        ``os.pwrite`` of 1 MB into the file cost the signing thread ~0.07-0.17 ms, the copy
        ~0.02 ms (``python -m bench.run --appearance-only``, the person column)."""
        length = len(pdf)
        if length > self.shared_size or (
            self.shared_size > KEEP_SHARED and length < self.shared_size
        ):
            self._unmap()
            os.ftruncate(self.shared_fd, length)
            self.shared_size = length
        if length == 0:
            return 0
        if self._shared_map is None:
            self._shared_map = mmap.mmap(
                self.shared_fd,
                self.shared_size,
                flags=mmap.MAP_SHARED,
                prot=mmap.PROT_READ | mmap.PROT_WRITE,
            )
        self._shared_map[:length] = pdf
        return length

    def _unmap(self) -> None:
        shared_map, self._shared_map = self._shared_map, None
        if shared_map is not None:
            shared_map.close()

    def kill(self) -> None:
        try:
            if self.alive():
                self.process.kill()
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            log.error("text layout worker %d did not exit", self.process.pid)
        finally:
            self.conn.close()
            self._unmap()
            os.close(self.shared_fd)


def _with_texts(measured: list[Any]) -> list[tuple[Rect, str]]:
    return [(tuple(box), text) for box, text in measured]  # type: ignore[misc]


class PendingLayout:
    """The answer to come of :meth:`TextLayout.submit_last_page`."""

    def __init__(self, layout: TextLayout) -> None:
        self._layout = layout
        self._worker: _Worker | None = None
        self._deadline = 0.0
        self._done = False
        self._value: tuple[int, list[tuple[Rect, str]]] | None = None
        self._error: LayoutUnavailable | None = None

    def _finish(
        self, value: tuple[int, list[tuple[Rect, str]]] | None, error: LayoutUnavailable | None
    ) -> None:
        self._done, self._value, self._error = True, value, error

    def result(self) -> tuple[int, list[tuple[Rect, str]]]:
        """``(index, lines)`` of the last page (blocking, within the layout's ``timeout``
        from the request). Errors: :class:`LayoutUnavailable`, as the synchronous calls."""
        with self._layout._lock:
            if self._layout._pending is self:
                self._layout._drain()
        if self._error is not None:
            raise self._error
        assert self._value is not None
        return self._value


class TextLayout:
    """PDFium text boxes through one worker process (started on first use, kept, killed and
    replaced after a failure). Thread-safe: callers are serialised.

    ``timeout``: seconds per page; ``memory_limit_bytes``: the worker's address space (0: no
    limit); ``file_threshold``: inputs of at least this many bytes are passed through a
    memory file shared with the worker instead of through the pipe.
    """

    def __init__(
        self,
        *,
        timeout: float = TIMEOUT,
        memory_limit_bytes: int = MEMORY_LIMIT,
        file_threshold: int = FILE_THRESHOLD,
    ) -> None:
        self.timeout = timeout
        self.memory_limit = memory_limit_bytes
        self.file_threshold = file_threshold
        self._lock = threading.Lock()
        self._worker: _Worker | None = None
        # A request sent whose answer is still to be read (submit_last_page).
        self._pending: PendingLayout | None = None

    @property
    def worker_pid(self) -> int | None:
        """The current worker's process id (None: not started)."""
        with self._lock:
            return self._worker.pid if self._worker is not None else None

    def page_lines(self, pdf: bytes, page_index: int) -> list[Rect]:
        """Rectangles ``(x1, y1, x2, y2)`` of the text lines on page ``page_index`` (0-based)
        of ``pdf`` (PDFium's glyph runs merged by :func:`lines`), in the page's default user
        space (points), in no particular order.

        Blocking (up to ``timeout`` seconds plus, on first use, the worker's start).
        Errors: :class:`LayoutUnavailable` (unreadable document, no such page, too many text
        boxes, over time or memory: the worker is then killed).
        """
        if page_index < 0:
            raise LayoutUnavailable(f"page {page_index}")
        return self._page(pdf, page_index, False)[1]  # type: ignore[no-any-return]

    def page_text_lines(self, pdf: bytes, page_index: int) -> list[tuple[Rect, str]]:
        """As :meth:`page_lines`, each line with its text (PDFium's ``FPDFText_GetBoundedText``
        over the line's box; at most :data:`MAX_LINE_CHARS` characters, and ``""`` for every
        line on a page of more than :data:`MAX_TEXT_LINES` lines). Same budget and errors."""
        if page_index < 0:
            raise LayoutUnavailable(f"page {page_index}")
        return _with_texts(self._page(pdf, page_index, True)[1])

    def submit_last_page(self, pdf: bytes) -> PendingLayout:
        """Send the worker :meth:`page_text_lines` of ``pdf``'s last page (as PDFium counts
        the pages) and return at once; :meth:`PendingLayout.result` reads the answer,
        ``(index, lines)``. The worker measures while the caller does other work (it is
        another process). The lock is not held in between: the next request of any caller
        reads this answer first, and the budget (``timeout``) runs from now."""
        with self._lock:
            self._drain()
            pending = PendingLayout(self)
            try:
                worker = self._send(pdf, LAST_PAGE, True)
            except LayoutUnavailable as e:
                pending._finish(None, e)
                return pending
            pending._worker = worker
            pending._deadline = time.monotonic() + self.timeout
            self._pending = pending
            return pending

    def _page(self, pdf: bytes, page_index: int, with_text: bool) -> Any:
        with self._lock:
            self._drain()
            worker = self._send(pdf, page_index, with_text)
            return self._receive(worker, self.timeout)

    def _drain(self) -> None:
        """Read the answer of a request sent and not yet read (lock held)."""
        pending, self._pending = self._pending, None
        if pending is None or pending._done or pending._worker is None:
            return
        try:
            remaining = max(0.0, pending._deadline - time.monotonic())
            value = self._receive(pending._worker, remaining)
        except LayoutUnavailable as e:
            pending._finish(None, e)
        else:
            pending._finish((value[0], _with_texts(value[1])), None)

    def _send(self, pdf: bytes, page_index: int, with_text: bool) -> _Worker:
        """Send one request (lock held, nothing pending); the worker it went to."""
        if self._worker is None or not self._worker.alive():
            if self._worker is not None:
                self._discard()
            self._worker = _Worker(self.memory_limit)
        worker = self._worker
        try:
            if len(pdf) >= self.file_threshold:
                worker.conn.send((page_index, worker.share(pdf), with_text))
            else:
                worker.conn.send((page_index, None, with_text))
                worker.conn.send_bytes(pdf)
        except OSError:
            # Dead (crashed, killed), or the shared memory could not take the input.
            self._discard()
            raise LayoutUnavailable("the layout worker died") from None
        return worker

    def _receive(self, worker: _Worker, timeout: float) -> Any:
        """The answer to the request sent to ``worker`` (lock held), within ``timeout``."""
        try:
            if not worker.conn.poll(timeout):
                self._discard()
                log.warning("text layout over %.1f s: worker killed", self.timeout)
                raise LayoutUnavailable(f"over {self.timeout:g} s")
            kind, value = worker.conn.recv()
        except (EOFError, OSError):
            # Crashed (PDFium fault, address-space limit) or killed.
            self._discard()
            raise LayoutUnavailable("the layout worker died") from None
        if kind != "ok":
            if not worker.alive() or value == "out of memory":
                self._discard()
            raise LayoutUnavailable(value)
        return value

    def _discard(self) -> None:
        worker, self._worker = self._worker, None
        pending, self._pending = self._pending, None
        if pending is not None:
            pending._finish(None, LayoutUnavailable("the layout worker was stopped"))
        if worker is not None:
            worker.kill()

    def close(self) -> None:
        """Stop the worker (a later call starts a new one)."""
        with self._lock:
            self._discard()


_DEFAULT: TextLayout | None = None
_DEFAULT_LOCK = threading.Lock()


def default() -> TextLayout:
    """The process's shared :class:`TextLayout` (default budgets), stopped at exit."""
    global _DEFAULT
    with _DEFAULT_LOCK:
        if _DEFAULT is None:
            _DEFAULT = TextLayout()
            atexit.register(_DEFAULT.close)
        return _DEFAULT


def shutdown() -> None:
    """Stop the shared worker, if one was started (service shutdown)."""
    with _DEFAULT_LOCK:
        layout = _DEFAULT
    if layout is not None:
        layout.close()


if __name__ == "__main__":
    # The worker: ``python -m signing_service.signing.textlayout FD MEMORY_LIMIT``.
    _worker_main(Connection(int(sys.argv[1])), int(sys.argv[2]), int(sys.argv[3]))
