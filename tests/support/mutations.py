"""Seeded mutations of signed PDFs for the verification fuzz tests (issue 8, item 3).

Each mutant records which seeds it came from, so the test knows whether the bytes some
signature covers were changed: the issue's rule is that such a file is never reported
``TOTAL_PASSED`` nor ``NO_SIGNATURE``. The generator is deterministic for a given seed of the
random generator and list of seed files.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tests.support import hostile


@dataclass(frozen=True)
class SeedPdf:
    name: str
    data: bytes
    spans: tuple[tuple[int, int], ...] = ()

    @classmethod
    def of(cls, name: str, data: bytes) -> SeedPdf:
        return cls(name, data, tuple(hostile.signed_ranges(data)))


@dataclass
class Mutant:
    index: int
    kind: str
    data: bytes
    parents: list[SeedPdf] = field(default_factory=list)

    @property
    def signed_bytes_changed(self) -> bool:
        """True when, for every seed this mutant came from, some byte that one of the seed's
        signatures covers is different (or gone). A parent without signatures protects
        nothing, so it never counts as changed."""
        if not self.parents:
            return False
        return all(self._changed(parent) for parent in self.parents)

    def _changed(self, parent: SeedPdf) -> bool:
        if not parent.spans:
            return False
        if parent.data.startswith(self.data) and self.data.rstrip().endswith(b"%%EOF"):
            # Cut exactly after an earlier revision: a complete earlier version of the file,
            # which may truthfully be unsigned (its signatures came in the part cut off).
            return False
        return any(self.data[s:e] != parent.data[s:e] for s, e in parent.spans)

    def describe(self) -> str:
        names = "+".join(p.name for p in self.parents)
        return f"#{self.index} {self.kind} of {names} ({len(self.data)} bytes)"


LANDMARKS = (
    b"obj",
    b"endobj",
    b"xref",
    b"trailer",
    b"startxref",
    b"%%EOF",
    b"/ByteRange",
    b"/Contents",
    b"stream",
    b"/Root",
    b"/AcroForm",
    b"/FT",
    b"/Sig",
    b"/Length",
    b"/Prev",
    b"/Size",
    b"/Type",
    b"/Annots",
    b"/Kids",
    b"/DSS",
)
INTERESTING = b"0123456789 \n\r<>[]()/%-.RtfnobjxeEOF"
_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")
_CONTENTS = re.compile(rb"/Contents\s*<([0-9A-Fa-f]*)>")
_STARTXREF = re.compile(rb"startxref\s+(\d+)")
_ROOT = re.compile(rb"/Root\s+(\d+)\s+(\d+)\s+R")


class MutationEngine:
    """Makes ``Mutant`` s from ``seeds`` with ``random.Random(seed)``.

    ``bomb_rate`` is the share of mutants that carry a decompression or cross-reference bomb
    (they are the slowest for a verifier without limits).
    """

    def __init__(self, seeds: list[SeedPdf], seed: int, bomb_rate: float = 0.006) -> None:
        if not seeds:
            raise ValueError("no seed PDFs")
        self.seeds = seeds
        self.rng = random.Random(seed)
        self.bomb_rate = bomb_rate
        self._landmarks: dict[str, list[int]] = {}
        self.kinds: list[tuple[str, Callable[[SeedPdf], tuple[bytes, list[SeedPdf]]]]] = [
            ("flip", self.flip),
            ("flip-landmark", self.flip_landmark),
            ("interesting-byte", self.interesting_byte),
            ("truncate", self.truncate),
            ("truncate-tail", self.truncate_tail),
            ("splice", self.splice),
            ("splice-aligned", self.splice_aligned),
            ("duplicate-range", self.duplicate_range),
            ("remove-range", self.remove_range),
            ("append-revision", self.append_revision),
            ("byterange-edit", self.byterange_edit),
            ("contents-edit", self.contents_edit),
            ("contents-digit", self.contents_digit),
            ("contents-digit", self.contents_digit),
            ("multi", self.multi),
        ]
        self.bombs: list[tuple[str, Callable[[SeedPdf], tuple[bytes, list[SeedPdf]]]]] = [
            ("bomb-xref-update", self.bomb_xref_update),
            ("bomb-stream-update", self.bomb_stream_update),
            ("bomb-inserted", self.bomb_inserted),
        ]

    # -- driver ---------------------------------------------------------------------------

    def generate(self, count: int) -> Iterator[Mutant]:
        for index in range(count):
            seed = self.rng.choice(self.seeds)
            table = self.bombs if self.rng.random() < self.bomb_rate else self.kinds
            kind, mutate = self.rng.choice(table)
            data, parents = mutate(seed)
            yield Mutant(index, kind, data, parents)

    # -- helpers --------------------------------------------------------------------------

    def _position(self, data: bytes) -> int:
        return self.rng.randrange(len(data)) if data else 0

    def _landmark_positions(self, seed: SeedPdf) -> list[int]:
        if seed.name not in self._landmarks:
            found: list[int] = []
            for mark in LANDMARKS:
                found.extend(m.start() for m in re.finditer(re.escape(mark), seed.data))
            self._landmarks[seed.name] = sorted(found) or [0]
        return self._landmarks[seed.name]

    def _near_landmark(self, seed: SeedPdf) -> int:
        at = self.rng.choice(self._landmark_positions(seed)) + self.rng.randint(-16, 48)
        return min(max(at, 0), max(len(seed.data) - 1, 0))

    @staticmethod
    def _set(data: bytes, at: int, value: int) -> bytes:
        return data[:at] + bytes([value]) + data[at + 1 :]

    # -- mutations ------------------------------------------------------------------------

    def flip(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        data = seed.data
        for _ in range(self.rng.randint(1, 4)):
            at = self._position(data)
            data = self._set(data, at, data[at] ^ self.rng.randint(1, 255))
        return data, [seed]

    def flip_landmark(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        at = self._near_landmark(seed)
        return self._set(seed.data, at, seed.data[at] ^ self.rng.randint(1, 255)), [seed]

    def interesting_byte(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        at = self._near_landmark(seed) if self.rng.random() < 0.7 else self._position(seed.data)
        return self._set(seed.data, at, self.rng.choice(INTERESTING)), [seed]

    def truncate(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        return seed.data[: self._position(seed.data)], [seed]

    def truncate_tail(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        cut = len(seed.data) - self.rng.randint(1, min(4096, len(seed.data)))
        return seed.data[:cut], [seed]

    def splice(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        other = self.rng.choice(self.seeds)
        i, j = self._position(seed.data), self._position(other.data)
        return seed.data[:i] + other.data[j:], [seed, other]

    def splice_aligned(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        other = self.rng.choice(self.seeds)
        i = self._position(seed.data[: len(other.data)])
        return seed.data[:i] + other.data[i:], [seed, other]

    def duplicate_range(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        data = seed.data
        i = self._position(data)
        j = min(len(data), i + self.rng.randint(1, 4096))
        k = i if self.rng.random() < 0.5 else self._position(data)
        return data[:k] + data[i:j] + data[k:], [seed]

    def remove_range(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        data = seed.data
        i = self._position(data)
        j = min(len(data), i + self.rng.randint(1, 4096))
        return data[:i] + data[j:], [seed]

    def _random_body(self, depth: int = 0) -> bytes:
        choice = self.rng.randrange(9)
        if depth > 3 or choice == 0:
            return self.rng.choice(
                [b"null", b"true", b"42", b"-1", b"3.5", b"(text)", b"<00ff>", b"/Name", b"1 0 R"]
            )
        if choice in (1, 2, 3):
            keys = [b"/Type", b"/Annots", b"/AcroForm", b"/Pages", b"/Kids", b"/V", b"/FT", b"/P"]
            items = b" ".join(
                self.rng.choice(keys) + b" " + self._random_body(depth + 1)
                for _ in range(self.rng.randint(0, 4))
            )
            return b"<< " + items + b" >>"
        if choice in (4, 5):
            return b"[" + b" ".join(self._random_body(depth + 1) for _ in range(3)) + b"]"
        if choice == 6:
            return b"<< /Type /Annot /Subtype /FreeText /Rect [0 0 100 100] /Contents (x) >>"
        if choice == 7:
            return hostile.stream(b"", self.rng.randbytes(self.rng.randint(0, 64)))
        return self.rng.randbytes(self.rng.randint(1, 40))

    def _append(self, data: bytes, objects: dict[int, bytes], extra: bytes = b"") -> bytes:
        """An incremental update appended without parsing (the file may be damaged)."""
        prev, root = _tail_facts(data)
        size = max(objects) + 1 + self.rng.choice([0, 0, 10, 100000])
        return hostile._append_raw(data, objects, prev, size, root, extra)

    def append_revision(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        data = seed.data
        for _ in range(self.rng.randint(1, 3)):
            objects = {
                self.rng.randint(1, 60): self._random_body() for _ in range(self.rng.randint(1, 3))
            }
            data = self._append(data, objects)
        return data, [seed]

    def byterange_edit(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        matches = list(_BYTE_RANGE.finditer(seed.data))
        if not matches:
            return self.flip(seed)
        m = self.rng.choice(matches)
        group = self.rng.randint(1, 4)
        old = int(m.group(group))
        new = self.rng.choice(
            [0, old + 1, max(old - 1, 0), old * 2, len(seed.data), 10**12, old + 4096]
        )
        start, end = m.span(group)
        text = str(new).encode()
        if self.rng.random() < 0.5 and len(text) < end - start:
            text = text.rjust(end - start, b"0")  # keep every offset after it unchanged
        return seed.data[:start] + text + seed.data[end:], [seed]

    def contents_edit(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        matches = list(_CONTENTS.finditer(seed.data))
        if not matches:
            return self.flip(seed)
        m = self.rng.choice(matches)
        start, end = m.span(1)
        length = end - start
        how = self.rng.randrange(4)
        if how == 0:
            new = b"0" * length
        elif how == 1:
            new = self.rng.randbytes(length // 2).hex().encode().ljust(length, b"0")
        elif how == 2:
            donors = [
                d.group(1) for s in self.seeds for d in _CONTENTS.finditer(s.data) if d.group(1)
            ]
            donor = self.rng.choice(donors) if donors else b""
            new = donor[:length].ljust(length, b"0")
        else:
            new = seed.data[start : start + self.rng.randrange(max(length, 1))]
        return seed.data[:start] + new + seed.data[end:], [seed]

    def contents_digit(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        """One to three hex digits of a signature value changed to other hex digits: the CMS
        still decodes, with a damaged certificate, attribute or signature inside (the DER
        parsers of asn1crypto and pyHanko, and our report code reading the certificate)."""
        matches = [m for m in _CONTENTS.finditer(seed.data) if m.group(1).strip(b"0")]
        if not matches:
            return self.flip(seed)
        m = self.rng.choice(matches)
        start = m.start(1)
        used = len(m.group(1).rstrip(b"0")) or 1  # the DER, not the zero padding
        data = seed.data
        for _ in range(self.rng.randint(1, 3)):
            at = start + self.rng.randrange(used)
            digit = self.rng.choice([d for d in b"0123456789abcdef" if d != data[at] | 0x20])
            data = self._set(data, at, digit)
        return data, [seed]

    def multi(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        data, parents = seed.data, [seed]
        simple = [m for name, m in self.kinds if name != "multi"]
        for _ in range(self.rng.randint(2, 3)):
            current = SeedPdf(seed.name, data, seed.spans)
            data, more = self.rng.choice(simple)(current)
            # Any other seed spliced in joins the parents; the original stays first.
            parents.extend(p for p in more if p.name != seed.name and p not in parents)
        return data, parents

    # -- bombs ----------------------------------------------------------------------------

    XREF_BOMB_ENTRIES = 600_000

    def bomb_xref_update(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        """An appended update whose xref stream is a Flate bomb declaring 600,000 entries."""
        data = seed.data if seed.data.endswith(b"\n") else seed.data + b"\n"
        prev, root = _tail_facts(data)
        entries = self.XREF_BOMB_ENTRIES
        payload = hostile.deflated_zeros(entries * 7)
        at = len(data)
        body = hostile.stream(
            b"/Type /XRef /Root %s /Prev %d /Size %d /Index [1000 %d] /W [1 4 2] "
            b"/Filter /FlateDecode" % (root, prev, 1000 + entries, entries),
            payload,
        )
        out = data + b"999 0 obj\n" + body + b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % at
        return out, [seed]

    def bomb_stream_update(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        """An appended update defining a bombed stream (one or two Flate layers) and pointing
        a random object number at it."""
        payload = hostile.deflated_zeros(64 * hostile.MiB)
        filters = b"/FlateDecode"
        if self.rng.random() < 0.5:
            payload = _stacked(payload)
            filters = b"[/FlateDecode /FlateDecode]"
        kind = self.rng.choice(
            [b"/Type /Metadata /Subtype /XML ", b"/Type /ObjStm /N 1 /First 0 ", b""]
        )
        bomb = hostile.stream(kind + b"/Filter " + filters, payload)
        number = self.rng.randint(1, 40)
        return self._append(seed.data, {number: bomb}), [seed]

    def bomb_inserted(self, seed: SeedPdf) -> tuple[bytes, list[SeedPdf]]:
        """A bombed stream object spliced into the middle of the file."""
        bomb = (
            b"\n77 0 obj\n"
            + hostile.stream(
                b"/Filter [/FlateDecode /FlateDecode]",
                _stacked(hostile.deflated_zeros(64 * hostile.MiB)),
            )
            + b"\nendobj\n"
        )
        at = self._near_landmark(seed)
        return seed.data[:at] + bomb + seed.data[at:], [seed]


def _tail_facts(data: bytes) -> tuple[int, bytes]:
    """(last startxref, last ``/Root`` reference) found textually: the file may be damaged."""
    prev_matches = list(_STARTXREF.finditer(data[-2048:]))
    prev = int(prev_matches[-1].group(1)) if prev_matches else 0
    roots = list(_ROOT.finditer(data))
    root = roots[-1].group(0)[len(b"/Root") :].strip() if roots else b"1 0 R"
    return prev, root


_STACKED: dict[int, bytes] = {}


def _stacked(payload: bytes) -> bytes:
    key = hash(payload)
    if key not in _STACKED:
        _STACKED[key] = zlib.compress(payload, 9)
    return _STACKED[key]
