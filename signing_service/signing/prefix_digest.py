"""A signature's document digest continued from a hash of the document's first bytes that an
earlier step of the same signing already computed, instead of hashing them again.

Why: a seal goes over the person signature of the same agency only when that signature is
intact (signing/appearance.py, :func:`~signing_service.signing.appearance.seal_target`), which
hashes the bytes that signature covers: the document from its start to that signature's
``/Contents``, then the rest of its revision. The seal's own signature then hashes the whole
document again from its start (pyHanko, ``PdfByteRangeDigest.fill``): on a 1 MB document the
same ~1 MB prefix was hashed twice, ~0.5 ms of a ~5 ms seal (``python -m bench.run
--appearance-only``, the seal column). SHA-2 is a Merkle–Damgård hash: the state after the
common prefix is the same for both, so the check keeps a copy of it (:class:`CoveredPrefix`)
and the seal's digest continues from that copy.

Safety: the continuation is used only when the digest algorithm is the same, the prefix lies
before the new signature's ``/Contents``, and the first ``length`` bytes of what pyHanko wrote
are, byte for byte, the bytes that were hashed (compared in place, ~0.02 ms per MB); otherwise the
digest is computed from the start, as pyHanko does. The resulting signature is an ordinary
one: its digest is SHA-2 of its /ByteRange, which every test verifies independently.

The same holds for a signing request's input (:func:`covering`): the service hashes the
uploaded document for its records (the original's SHA-256, the Idempotency-Key's request
digest, the signed document's SHA-256 continued from it), and an incremental signature's
/ByteRange starts with that whole document; the signature's digest continues from that hash
(``python -m bench.run``, the API rows: one ~0.5 ms pass over a 1 MB upload less).
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from cryptography.hazmat.primitives import hashes
from pyhanko.pdf_utils import misc
from pyhanko.sign.general import get_pyca_cryptography_hash
from pyhanko.sign.signers.pdf_byterange import PdfByteRangeDigest, PreparedByteRangeDigest


@dataclass(frozen=True)
class CoveredPrefix:
    """The running hash (``md_algorithm``, a ``cryptography`` ``Hash``, never finalised: use
    :meth:`continued`) of ``data[:length]``; ``data``: the document bytes that were hashed."""

    md_algorithm: str
    length: int
    state: hashes.Hash
    data: bytes

    def continued(self) -> hashes.Hash:
        """A fresh copy of the state, to be updated with what follows the prefix."""
        return self.state.copy()

    def hasher(self) -> HexHash:
        """A ``hashlib``-like copy of the state (:class:`HexHash`), for the records."""
        return HexHash(self.state.copy())

    def applies_to(self, buffer: memoryview, sig_start: int, md_algorithm: str) -> bool:
        """Whether a digest of ``buffer[:sig_start]`` (and more) by ``md_algorithm`` may start
        from this state: same algorithm, the prefix inside that range, the same bytes."""
        return (
            md_algorithm.lower() == self.md_algorithm.lower()
            and 0 < self.length <= sig_start
            # No copy: bytes.startswith compares the buffer in place (memcmp).
            and len(self.data) >= self.length
            and self.data.startswith(buffer[: self.length])
        )


class HexHash:
    """A running hash with the ``hashlib`` methods the service's records use (``copy``,
    ``update``, ``hexdigest``) over a ``cryptography`` ``Hash``, whose state a signature's
    digest can continue (:class:`CoveredPrefix`). ``hexdigest`` does not finalise it."""

    __slots__ = ("_state",)

    def __init__(self, state: hashes.Hash) -> None:
        self._state = state

    def copy(self) -> HexHash:
        return HexHash(self._state.copy())

    def update(self, data: bytes | memoryview) -> None:
        self._state.update(data)

    def hexdigest(self) -> str:
        return self._state.copy().finalize().hex()


def covering(data: bytes, md_algorithm: str = "sha256") -> CoveredPrefix:
    """The hash state over the whole of ``data`` (one pass): the prefix an incremental
    signature of ``data`` continues (:func:`continuing`), and, via :meth:`CoveredPrefix.hasher`,
    the document's own digest. ``md_algorithm``: a pyHanko digest name (``sha256``)."""
    md = hashes.Hash(get_pyca_cryptography_hash(md_algorithm))
    md.update(data)
    return CoveredPrefix(md_algorithm, len(data), md, data)


def hash_with_prefix(
    data: bytes, byte_range: list[int], md_algorithm: str
) -> tuple[bytes, CoveredPrefix]:
    """The digest of a standard /ByteRange ``[0, a, b, n]`` over ``data`` (``data[:a]`` then
    ``data[b:b+n]``, cut at the end of ``data`` as pyHanko's ``byte_range_digest`` reads
    it), with the hash state after ``data[:a]``. ``ValueError`` for another shape."""
    if len(byte_range) != 4 or byte_range[0] != 0 or any(v < 0 for v in byte_range):
        raise ValueError("not a /ByteRange [0 a b n]")
    _, a, b, n = byte_range
    md = hashes.Hash(get_pyca_cryptography_hash(md_algorithm))
    view = memoryview(data)
    try:
        md.update(view[:a])
        prefix = CoveredPrefix(md_algorithm, min(a, len(data)), md.copy(), data)
        md.update(view[b : b + n])
    finally:
        view.release()
    return md.finalize(), prefix


_PREFIX: contextvars.ContextVar[CoveredPrefix | None] = contextvars.ContextVar(
    "signing_prefix_digest", default=None
)


@contextlib.contextmanager
def continuing(prefix: CoveredPrefix | None) -> Iterator[None]:
    """Within this block, a signature written by pyHanko to a ``BytesIO`` computes its
    document digest from ``prefix`` when it applies (:meth:`CoveredPrefix.applies_to`)."""
    token = _PREFIX.set(prefix)
    try:
        yield
    finally:
        _PREFIX.reset(token)


_original_fill = PdfByteRangeDigest.fill


def _fill(
    self: PdfByteRangeDigest,
    writer: Any,
    md_algorithm: str,
    in_place: bool = False,
    output: Any = None,
    chunk_size: int = misc.DEFAULT_CHUNK_SIZE,
) -> Generator[Any, Any, Any]:
    """pyHanko 0.38's ``PdfByteRangeDigest.fill`` (write, fix the /ByteRange, digest, then
    receive the CMS) with the digest continued from the current :class:`CoveredPrefix`."""
    prefix = _PREFIX.get()
    if prefix is None or in_place or not isinstance(output, BytesIO):
        return (yield from _original_fill(self, writer, md_algorithm, in_place, output, chunk_size))
    writer.digest_aware_write = True
    writer.write(output)
    eof = output.tell()
    sig_start, sig_end = self.contents.offsets
    self.byte_range.fill_offsets(output, sig_start, sig_end, eof)
    buffer = output.getbuffer()
    try:
        if prefix.applies_to(buffer, sig_start, md_algorithm):
            md = prefix.continued()
            md.update(buffer[prefix.length : sig_start])
        else:
            md = hashes.Hash(get_pyca_cryptography_hash(md_algorithm))
            md.update(buffer[:sig_start])
        md.update(buffer[sig_end:eof])
    finally:
        buffer.release()
    prepared = PreparedByteRangeDigest(
        document_digest=md.finalize(),
        reserved_region_start=sig_start,
        reserved_region_end=sig_end,
    )
    cms_data = yield prepared, output
    yield prepared.fill_with_cms(output, cms_data)


def install() -> None:
    """Make pyHanko's byte-range signatures honour :func:`continuing` (idempotent; without a
    prefix set, pyHanko's own code runs)."""
    PdfByteRangeDigest.fill = _fill  # type: ignore[method-assign]
