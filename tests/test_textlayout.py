"""Text boxes by PDFium in a worker process (signing/textlayout.py, issue 10).

The boxes are checked against poppler's ``pdftotext -bbox`` word boxes (an independent tool) on
pages built here: plain, turned by ``/Rotate``, cropped, with a shifted or negative origin. The
worker's budget is checked with a real slow page (a few kilobytes of compressed content stream
that expand to a million text operators), not a hook.
"""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess
import sys
import threading
import time
import zlib
from pathlib import Path

import pikepdf
import pytest

from signing_service import errors
from signing_service.services.signing import placement_error
from signing_service.signing import textlayout
from signing_service.signing.placement import (
    PlacementError,
    _pages,
    text_lines,
    user_to_view,
    view_to_user,
)
from signing_service.signing.textlayout import LayoutUnavailable, TextLayout
from tests.support.pdfs import make_pdf

A4 = (0.0, 0.0, 595.0, 842.0)
Box = tuple[float, float, float, float]
_WORD = re.compile(r'<word xMin="([-\d.]+)" yMin="([-\d.]+)" xMax="([-\d.]+)" yMax="([-\d.]+)"')

needs_poppler = pytest.mark.skipif(
    shutil.which("pdftotext") is None, reason="poppler-utils (pdftotext) not installed"
)


def page_pdf(
    texts: list[tuple[float, float, float, str]],
    *,
    media: Box = A4,
    rotate: int = 0,
    crop: Box | None = None,
    pages: int = 1,
    upwards: bool = False,
    font: str = "Helvetica",
) -> bytes:
    """``pages`` equal pages with ``texts`` (x, baseline y, size, ASCII text) in ``font``,
    each its own text object; ``upwards``: the text runs up the page (turned 90°
    counter-clockwise: upright on a page displayed with ``/Rotate 90``)."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font,
            Subtype=pikepdf.Name.Type1,
            BaseFont=pikepdf.Name("/" + font),
            Encoding=pikepdf.Name.WinAnsiEncoding,
        )
    )
    matrix = "0 1 -1 0" if upwards else "1 0 0 1"
    ops = "\n".join(f"BT /F1 {s} Tf {matrix} {x} {y} Tm ({t}) Tj ET" for x, y, s, t in texts)
    for _ in range(pages):
        page = pikepdf.Dictionary(
            Type=pikepdf.Name.Page,
            MediaBox=pikepdf.Array(media),
            Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
            Contents=pdf.make_stream(ops.encode()),
        )
        if rotate:
            page.Rotate = rotate
        if crop is not None:
            page.CropBox = pikepdf.Array(crop)
        pdf.pages.append(pikepdf.Page(page))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def slow_pdf(operators: int) -> bytes:
    """One page whose compressed content stream (a few kB) shows ``operators`` characters."""
    pdf = pikepdf.new()
    font = pdf.make_indirect(
        pikepdf.Dictionary(
            Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica
        )
    )
    content = pikepdf.Stream(pdf, zlib.compress(b"BT /F1 1 Tf " + b"1 0 Td (x) Tj " * operators))
    content.Filter = pikepdf.Name.FlateDecode
    page = pikepdf.Dictionary(
        Type=pikepdf.Name.Page,
        MediaBox=pikepdf.Array(A4),
        Resources=pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=font)),
        Contents=pdf.make_indirect(content),
    )
    pdf.pages.append(pikepdf.Page(page))
    out = io.BytesIO()
    pdf.save(out)
    return out.getvalue()


def poppler_words(pdf: bytes, media: Box, rotate: int) -> list[Box]:
    """pdftotext's word boxes (the MediaBox as displayed, v downwards) in user space."""
    out = subprocess.run(
        ["pdftotext", "-bbox", "-f", "1", "-l", "1", "-", "-"],
        input=pdf,
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout.decode()
    return [
        view_to_user(tuple(float(v) for v in m.groups()), media, rotate)  # type: ignore[arg-type]
        for m in _WORD.finditer(out)
    ]


def assert_boxes_match_words(boxes: list[Box], words: list[Box]) -> None:
    """Every PDFium run lies inside the line of poppler words it spans (glyph boxes inside the
    font's ascent/descent box), begins at a word's start and ends at a word's end; every word
    lies in a run."""
    tol = 1.0
    assert boxes and words
    for x1, y1, x2, y2 in boxes:
        line = [w for w in words if w[1] - tol <= y1 and y2 <= w[3] + tol]
        assert line, f"run {(x1, y1, x2, y2)} is on no poppler line"
        assert any(abs(w[0] - x1) <= tol for w in line), f"run starts at {x1}, no word does"
        assert any(abs(w[2] - x2) <= tol for w in line), f"run ends at {x2}, no word does"
    for w in words:
        assert any(
            b[0] - tol <= w[0] and w[2] <= b[2] + tol and w[1] - tol <= b[1] and b[3] <= w[3] + tol
            for b in boxes
        ), f"word {w} is in no run"


TEXTS = [
    (60.0, 790.0, 11.0, "UY BAN NHAN DAN"),
    (300.0, 790.0, 11.0, "CONG HOA XA HOI CHU NGHIA VIET NAM"),
    (250.0, 705.0, 13.0, "QUYET DINH"),
    (70.0, 650.0, 11.0, "Can cu Luat To chuc chinh quyen dia phuong"),
    (360.0, 150.0, 11.0, "Nguyen Van A"),
]


@pytest.fixture
def layout() -> TextLayout:
    layout = TextLayout()
    yield layout
    layout.close()


def test_lines_with_their_text(layout: TextLayout) -> None:
    """The text of each line comes back with its box (signer block search, issue 10), the
    same boxes as :meth:`page_lines`, Vietnamese marks intact (an embedded font)."""
    from tests.support import nd30

    pdf = page_pdf(TEXTS)
    found = layout.page_text_lines(pdf, 0)
    assert sorted(box for box, _ in found) == sorted(layout.page_lines(pdf, 0))
    assert {text.strip() for _, text in found} == {t[3] for t in TEXTS}
    page = nd30.Page()
    page.text(13, 400, 300, "KT. GIÁM ĐỐC", "c")
    page.text(13, 400, 220, "Nguyễn Thị Ánh", "c")
    texts = {text.strip() for _, text in layout.page_text_lines(nd30.build([page]), 0)}
    assert texts == {"KT. GIÁM ĐỐC", "Nguyễn Thị Ánh"}


@needs_poppler
def test_boxes_match_the_text_position(layout: TextLayout) -> None:
    pdf = page_pdf(TEXTS)
    boxes = layout.page_lines(pdf, 0)
    assert len(boxes) == len(TEXTS)
    assert_boxes_match_words(boxes, poppler_words(pdf, A4, 0))
    # Where the content stream put it: "Nguyen Van A" at x 360 on the baseline y 150, 11 pt
    # (the g descends ~0.2 em below it, the capitals rise ~0.72 em above it).
    x1, y1, _x2, y2 = min(boxes, key=lambda b: abs(b[1] - 150))
    assert abs(x1 - 360) < 2 and 147 < y1 < 148.5 and 7 < y2 - 150 < 9


@needs_poppler
@pytest.mark.parametrize(
    ("media", "rotate", "crop"),
    [
        (A4, 90, None),
        (A4, 180, None),
        (A4, 270, None),
        (A4, 0, (100.0, 150.0, 450.0, 700.0)),
        ((100.0, 100.0, 695.0, 942.0), 0, None),
        ((-300.0, -400.0, 295.0, 442.0), 90, (-250.0, -300.0, 200.0, 400.0)),
    ],
    ids=["rotate90", "rotate180", "rotate270", "cropbox", "origin100", "negative-origin-rot90"],
)
def test_boxes_are_in_user_space(
    layout: TextLayout, media: Box, rotate: int, crop: Box | None
) -> None:
    """Whatever /Rotate, CropBox or origin: the same user-space boxes as on the plain page,
    and poppler's (displayed) word boxes brought back to user space agree."""
    dx, dy = media[0], media[1]
    texts = [(x + dx, y + dy, s, t) for x, y, s, t in TEXTS]
    plain = layout.page_lines(page_pdf(texts, media=media), 0)
    pdf = page_pdf(texts, media=media, rotate=rotate, crop=crop)
    boxes = layout.page_lines(pdf, 0)
    assert sorted(boxes) == sorted(plain)  # the order may follow the reading direction
    assert_boxes_match_words(boxes, poppler_words(pdf, media, rotate))


@needs_poppler
@pytest.mark.parametrize("upwards", [False, True], ids=["across", "upwards-rotate90"])
def test_words_drawn_one_by_one_are_one_line(layout: TextLayout, upwards: bool) -> None:
    """PDFium gives one run per text object: a line whose words are separate objects (as
    some producers write them) is still one line box, from its first word's start to its last
    word's end; the next line and a column ~4.5 em away stay apart."""
    words = ["Can", "cu", "Luat", "To", "chuc", "chinh", "quyen", "dia", "phuong"]
    texts, x = [], 70.0
    for word in words:
        texts.append((x, 650.0, 11.0, word))
        # Courier: 0.6 em a character; word spaces of 1.5 characters (0.9 em), a stretched
        # justified line's.
        x += 6.6 * (len(word) + 1.5)
    texts += [(70.0, 634.0, 11.0, "dong tiep theo"), (x + 40, 650.0, 11.0, "cot khac")]
    if upwards:  # the same layout turned to run up the page (user space)
        texts = [(650.0 - y + 500, x - 50, s, t) for x, y, s, t in texts]
    rotate = 90 if upwards else 0
    pdf = page_pdf(texts, rotate=rotate, upwards=upwards, font="Courier")
    boxes = layout.page_lines(pdf, 0)
    assert len(boxes) == 3, boxes
    words_boxes = poppler_words(pdf, A4, rotate)
    view = sorted(user_to_view(b, A4, rotate) for b in boxes)
    first_line = min(view, key=lambda b: (b[1], b[0]))
    view_words = [user_to_view(w, A4, rotate) for w in words_boxes]
    line_words = [w for w in view_words if abs(w[1] - first_line[1]) < 3]
    assert abs(first_line[0] - min(w[0] for w in line_words)) < 1
    # the main line ends at "phuong"; "cot khac" is its own box
    assert len([b for b in view if abs(b[1] - first_line[1]) < 3]) == 2
    assert_boxes_match_words(view, view_words)  # as displayed: the lines run across


def test_placement_text_lines_through_the_shared_worker() -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader

    pdf = page_pdf(TEXTS, rotate=90, pages=2)
    pages = list(_pages(PdfFileReader(io.BytesIO(pdf))))
    lines = text_lines(pdf, pages[1])
    assert lines == [tuple(b) for b in textlayout.default().page_lines(pdf, 1)]
    assert len(lines) == len(TEXTS)


def test_a_large_input_goes_through_a_file() -> None:
    """At or over ``file_threshold`` the worker reads the memory file it shares with the
    server process: same boxes."""
    pdf = page_pdf(TEXTS)
    by_pipe, by_file = TextLayout(), TextLayout(file_threshold=0)
    try:
        assert by_file.page_lines(pdf, 0) == by_pipe.page_lines(pdf, 0)
    finally:
        by_pipe.close()
        by_file.close()


def test_the_shared_file_holds_only_the_current_input(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long input, then a short one: the worker reads the short one's length only (the long
    one's tail still in the file is not part of it), the answers are each document's own;
    past ``KEEP_SHARED`` the file is emptied before the next input (its pages freed)."""
    short = page_pdf(TEXTS)
    long = make_pdf(pages=3, padding_bytes=300_000)
    shared = TextLayout(file_threshold=0)
    piped = TextLayout()
    try:
        assert shared.page_lines(long, 2) == piped.page_lines(long, 2)
        assert len(shared.page_lines(long, 0)) == 1  # "Quyet dinh so … - trang 1"
        assert shared.page_lines(short, 0) == piped.page_lines(short, 0)
        assert len(shared.page_lines(short, 0)) == len(TEXTS)
        worker = shared._worker
        assert worker is not None and worker.shared_size == len(long)
        monkeypatch.setattr(textlayout, "KEEP_SHARED", 1000)
        assert shared.page_lines(short, 0) == piped.page_lines(short, 0)
        assert worker.shared_size == len(short)
        assert os.fstat(worker.shared_fd).st_size == len(short)
    finally:
        shared.close()
        piped.close()


def _mapping_permissions(address: int) -> str:
    """The permissions (``r--s``: read-only, shared) of this process's mapping at ``address``."""
    with open("/proc/self/maps") as maps:
        for line in maps:
            span, permissions = line.split()[:2]
            start, end = (int(part, 16) for part in span.split("-"))
            if start <= address < end:
                return permissions
    raise AssertionError(f"no mapping at {address:#x}")


def test_the_worker_reads_the_shared_file_in_place_and_cannot_change_it() -> None:
    """The worker's view of the shared file (textlayout._SharedInput): exactly the input's
    first ``length`` bytes, read-only (a write through it could only fault, never reach the
    server's file), kept between requests and following the file when it is rewritten in
    place, grown or cut back; an empty input is empty; a length past the file is refused."""
    fd = os.memfd_create("test-layout", os.MFD_CLOEXEC)
    shared = textlayout._SharedInput(fd)
    try:
        os.pwrite(fd, b"%PDF-1.7 current" + b"stale tail of a longer input", 0)
        view = shared.view(16)
        assert bytes(view) == b"%PDF-1.7 current"
        address = shared.address
        assert address is not None
        assert _mapping_permissions(address) == "r--s"
        # The next input written in place (the server's mapping): the same mapping sees it.
        os.pwrite(fd, b"%PDF-2.0 next one", 0)
        assert bytes(shared.view(17)) == b"%PDF-2.0 next one"
        assert shared.address == address
        # Grown for a larger input, then cut back: mapped again at the file's new size.
        os.pwrite(fd, b"x" * 100_000, 0)
        assert bytes(shared.view(100_000)) == b"x" * 100_000
        assert shared.size == 100_000
        os.ftruncate(fd, 20)
        assert bytes(shared.view(20)) == b"x" * 20
        assert shared.size == 20
        with pytest.raises(OSError):
            shared.view(21)
        assert shared.view(0) == b""
    finally:
        shared.close()
        os.close(fd)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


def test_timeout_kills_and_replaces_the_worker() -> None:
    slow = slow_pdf(1_500_000)
    assert len(slow) < 100_000
    layout = TextLayout(timeout=0.3)
    try:
        assert layout.page_lines(page_pdf(TEXTS), 0)
        first = layout.worker_pid
        assert first is not None
        started = time.monotonic()
        with pytest.raises(LayoutUnavailable, match=r"over 0\.3 s"):
            layout.page_lines(slow, 0)
        assert time.monotonic() - started < 5
        assert layout.worker_pid is None and _gone(first)
        # The next call gets a fresh worker and a correct answer.
        assert len(layout.page_lines(page_pdf(TEXTS), 0)) == len(TEXTS)
        assert layout.worker_pid not in (None, first)
    finally:
        layout.close()


def test_a_request_sent_ahead_is_answered_in_turn() -> None:
    """``submit_last_page`` returns before the answer; another call in between first reads
    that answer (the pipe stays in step: each gets its own document's lines), and the
    pending answer is the last page's, with its index, as ``page_text_lines`` gives it."""
    three = page_pdf(TEXTS, pages=3)
    other = page_pdf(TEXTS[:1])
    layout = TextLayout()
    try:
        pending = layout.submit_last_page(three)
        assert layout.page_lines(other, 0) == layout.page_lines(other, 0)
        assert len(layout.page_lines(other, 0)) == 1
        index, lines = pending.result()
        assert index == 2
        assert lines == layout.page_text_lines(three, 2)
        assert pending.result() == (index, lines)
        # Read by its own result() when nothing came in between; through shared memory too.
        layout.file_threshold = 0
        index, lines = layout.submit_last_page(other).result()
        assert (index, lines) == (0, layout.page_text_lines(other, 0))
        with pytest.raises(LayoutUnavailable):
            layout.page_lines(other, -1)
    finally:
        layout.close()


def test_a_request_sent_ahead_keeps_the_budget_and_fails_alone() -> None:
    """A slow page sent ahead: its result is over the budget (counted from the request) and
    the worker replaced; a stopped worker fails the pending answer; later calls work."""
    slow = slow_pdf(1_500_000)
    layout = TextLayout(timeout=0.3)
    try:
        pending = layout.submit_last_page(slow)
        time.sleep(0.4)
        started = time.monotonic()
        with pytest.raises(LayoutUnavailable, match=r"over 0\.3 s"):
            pending.result()
        assert time.monotonic() - started < 0.2  # the budget was spent before result()
        assert layout.worker_pid is None
        assert len(layout.page_lines(page_pdf(TEXTS), 0)) == len(TEXTS)
        stopped = layout.submit_last_page(page_pdf(TEXTS))
        layout.close()
        with pytest.raises(LayoutUnavailable, match="stopped"):
            stopped.result()
        assert len(layout.page_lines(page_pdf(TEXTS), 0)) == len(TEXTS)
    finally:
        layout.close()


def test_the_memory_limit_ends_the_worker_not_the_service() -> None:
    """A page whose text page outgrows the worker's address space: unavailable, replaced."""
    layout = TextLayout(timeout=60, memory_limit_bytes=300 * 1024**2)
    try:
        with pytest.raises(LayoutUnavailable):
            layout.page_lines(slow_pdf(3_000_000), 0)
        assert len(layout.page_lines(page_pdf(TEXTS), 0)) == len(TEXTS)
    finally:
        layout.close()


def test_concurrent_callers_are_served_by_one_worker(layout: TextLayout) -> None:
    documents = [page_pdf(TEXTS[: n + 1], rotate=90 * (n % 4)) for n in range(len(TEXTS))]
    expected = [layout.page_lines(pdf, 0) for pdf in documents]
    pid = layout.worker_pid
    failures: list[str] = []

    def caller(k: int) -> None:
        for i in range(20):
            n = (k + i) % len(documents)
            got = layout.page_lines(documents[n], 0)
            if got != expected[n]:
                failures.append(f"thread {k} call {i}: {got} != {expected[n]}")

    threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert layout.worker_pid == pid


@pytest.mark.parametrize(
    "pdf",
    [b"not a pdf at all", b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\n%%EOF\n", b""],
    ids=["garbage", "no-pages", "empty"],
)
def test_malformed_pdf_is_page_layout_unavailable(layout: TextLayout, pdf: bytes) -> None:
    with pytest.raises(LayoutUnavailable):
        layout.page_lines(pdf, 0)
    # The worker survives a document it cannot read.
    pid = layout.worker_pid
    assert len(layout.page_lines(page_pdf(TEXTS), 0)) == len(TEXTS)
    assert layout.worker_pid == pid


def test_malformed_pdf_through_placement_is_a_422() -> None:
    from pyhanko.pdf_utils.reader import PdfFileReader

    page = next(_pages(PdfFileReader(io.BytesIO(page_pdf(TEXTS)))))
    with pytest.raises(PlacementError) as raised:
        text_lines(b"%PDF-1.7\ngarbage", page)
    assert raised.value.code == "PAGE_LAYOUT_UNAVAILABLE"
    error = placement_error(raised.value)
    assert isinstance(error, errors.PageLayoutUnavailable) and error.status == 422


def test_page_out_of_range(layout: TextLayout) -> None:
    with pytest.raises(LayoutUnavailable, match="page 3 of 1"):
        layout.page_lines(page_pdf(TEXTS), 3)


def test_no_worker_outlives_its_process(tmp_path: Path) -> None:
    """The shared worker is stopped at interpreter exit; and when the parent dies without
    cleaning up (SIGKILL, os._exit), the worker sees its socket close and exits."""
    pdf_path = tmp_path / "page.pdf"
    pdf_path.write_bytes(page_pdf(TEXTS))
    for ending in ("pass", "os._exit(0)"):
        script = (
            "import os, sys\n"
            "from signing_service.signing import textlayout\n"
            "layout = textlayout.default()\n"
            f"layout.page_lines(open({str(pdf_path)!r}, 'rb').read(), 0)\n"
            "print(layout.worker_pid, flush=True)\n"
            f"{ending}\n"
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True
        )
        pid = int(done.stdout)
        deadline = time.monotonic() + 5
        while not _gone(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(pid), f"worker {pid} left running ({ending})"


def test_shutdown_stops_the_shared_worker() -> None:
    layout = textlayout.default()
    layout.page_lines(page_pdf(TEXTS), 0)
    pid = layout.worker_pid
    assert pid is not None
    textlayout.shutdown()
    assert layout.worker_pid is None and _gone(pid)
    os.kill(os.getpid(), 0)  # and this process is unaffected
