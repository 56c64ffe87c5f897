"""Hostile and unusual PDFs for the verifier's robustness tests (issue 8, item 3).

Everything is built here from scratch, byte by byte where the attack needs a malformed file and
with pyHanko or our own signing engine where it needs a genuine signature:

- decompression bombs: in the cross-reference stream (the issue's 68 KB file), in an object
  stream, in a content or XMP metadata stream, stacked filters;
- cross-reference claims: millions of entries declared by a 257-byte file, over-wide fields;
- deep nesting (arrays, dictionaries, reference chains, form-field trees, a field DAG);
- floods: thousands of revisions, thousands of filled signature fields;
- genuine signatures with algorithms outside the national policy (Ed25519, Ed448, DSA,
  SHA-1), issued under the dev PKI's intermediate CA;
- damage to signed files: truncation, one byte changed inside or outside the signed ranges;
- minimal reproducers of the crashes the fuzz test found (``CRASH_REPRODUCERS``).
"""

from __future__ import annotations

import asyncio
import functools
import re
import zlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from io import BytesIO

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from pyhanko.sign.signers import SimpleSigner
from pyhanko_certvalidator.registry import SimpleCertificateStore

from signing_service.pki.dev import DevPki
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys import LoadedKey
from signing_service.signing.levels import SignatureLevel
from tests.support.pdfs import make_pdf

MiB = 1024 * 1024
HEADER = b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n"
CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
EMPTY_PAGES = b"<< /Type /Pages /Kids [] /Count 0 >>"
ONE_PAGE = b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>"


# --- raw PDF assembly ------------------------------------------------------------------------


def stream(dictionary: bytes, data: bytes) -> bytes:
    """The body of a stream object: ``dictionary`` (without ``<< >>``) plus ``/Length``."""
    return b"<< " + dictionary + b" /Length %d >>\nstream\n" % len(data) + data + b"\nendstream"


def assemble(
    objects: dict[int, bytes], *, root: int = 1, trailer_extra: bytes = b"", header: bytes = HEADER
) -> bytes:
    """A complete PDF with a classic xref table; ``objects`` maps object number → body."""
    out = bytearray(header)
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    size = max(objects) + 1
    xref_at = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        if number in offsets:
            out += b"%010d 00000 n \n" % offsets[number]
        else:
            out += b"0000000000 00000 f \n"
    out += b"trailer\n<< /Size %d /Root %d 0 R %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root,
        trailer_extra,
        xref_at,
    )
    return bytes(out)


_STARTXREF = re.compile(rb"startxref\s+(\d+)\s+%%EOF\s*$")


def _trailer_facts(pdf: bytes) -> tuple[int, int, bytes]:
    """(last startxref, /Size, /Root reference) of a PDF, read by pyHanko."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(BytesIO(pdf), strict=False)
    root = reader.trailer.raw_get("/Root")
    size = int(reader.trailer["/Size"])
    return int(reader.last_startxref), size, b"%d %d R" % (root.idnum, root.generation)


def append_update(pdf: bytes, objects: dict[int, bytes], *, trailer_extra: bytes = b"") -> bytes:
    """``pdf`` plus one incremental update (ISO 32000-1 §7.5.6) defining ``objects``."""
    prev, size, root = _trailer_facts(pdf)
    return _append_raw(pdf, objects, prev, max(size, max(objects) + 1), root, trailer_extra)


def _append_raw(
    pdf: bytes, objects: dict[int, bytes], prev: int, size: int, root: bytes, extra: bytes = b""
) -> bytes:
    out = bytearray(pdf)
    if not out.endswith(b"\n"):
        out += b"\n"
    offsets = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + objects[number] + b"\nendobj\n"
    xref_at = len(out)
    out += b"xref\n"
    for number in sorted(offsets):
        out += b"%d 1\n%010d 00000 n \n" % (number, offsets[number])
    out += b"trailer\n<< /Size %d /Root %s /Prev %d %s>>\nstartxref\n%d\n%%%%EOF\n" % (
        size,
        root,
        prev,
        extra,
        xref_at,
    )
    return bytes(out)


# --- decompression bombs -----------------------------------------------------------------------


@functools.lru_cache(maxsize=16)
def deflated_zeros(decoded_size: int, prefix: bytes = b"") -> bytes:
    """``prefix`` followed by zeros up to ``decoded_size`` bytes, Deflate-compressed (~1030:1)."""
    compressor = zlib.compressobj(9)
    parts = [compressor.compress(prefix)]
    zero = bytes(MiB)
    remaining = decoded_size - len(prefix)
    while remaining > 0:
        chunk = min(remaining, MiB)
        parts.append(compressor.compress(zero[:chunk]))
        remaining -= chunk
    parts.append(compressor.flush())
    return b"".join(parts)


def _xref_stream_pdf(
    entries_raw: bytes, declared: bytes, filtered: bytes | None = None, filters: bytes = b""
) -> bytes:
    """Catalog (1), pages (2) and an xref stream (3) whose dictionary says ``declared``."""
    out = bytearray(HEADER)
    offsets = []
    for number, body in ((1, CATALOG), (2, EMPTY_PAGES)):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref_at = len(out)
    raw = b"\x00\x00\x00\x00\x00\xff\xff"  # object 0, free
    raw += b"".join(b"\x01" + o.to_bytes(4, "big") + b"\x00\x00" for o in offsets)
    raw += b"\x01" + xref_at.to_bytes(4, "big") + b"\x00\x00"
    data = filtered if filtered is not None else raw + entries_raw
    out += b"3 0 obj\n" + stream(b"/Type /XRef /Root 1 0 R " + declared + filters, data)
    out += b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def xref_stream_flate_bomb(declared_entries: int = 10_000_000) -> bytes:
    """The issue's file: a ~68 KB PDF whose cross-reference stream is a Flate bomb declaring
    ``declared_entries`` 7-byte entries (70 MB decoded; pyHanko 0.38 alone spends ~40 s and
    1.6 GB expanding them into entry objects)."""
    first = b"\x00\x00\x00\x00\x00\xff\xff"
    # The real entries come first so that the catalog resolves; then zeros (free entries).
    head = bytearray(first)
    offsets = [len(HEADER), len(HEADER) + len(b"1 0 obj\n" + CATALOG + b"\nendobj\n")]
    xref_at = offsets[1] + len(b"2 0 obj\n" + EMPTY_PAGES + b"\nendobj\n")
    for offset in (*offsets, xref_at):
        head += b"\x01" + offset.to_bytes(4, "big") + b"\x00\x00"
    data = deflated_zeros(declared_entries * 7, bytes(head))
    return _xref_stream_pdf(
        b"", b"/Size %d /W [1 4 2]" % declared_entries, data, b" /Filter /FlateDecode"
    )


def xref_stream_data_bomb(decoded_size: int = 256 * MiB) -> bytes:
    """An xref stream declaring 4 entries whose Flate data decodes to ``decoded_size`` bytes."""
    return _xref_stream_pdf(
        b"", b"/Size 4 /W [1 4 2]", deflated_zeros(decoded_size), b" /Filter /FlateDecode"
    )


def xref_entry_count_bomb(declared_entries: int = 3_000_000) -> bytes:
    """257 bytes, no compression: pyHanko yields a default entry for every declared index
    once the data runs short (non-strict), so ``/Size`` alone sets the work."""
    return _xref_stream_pdf(b"", b"/Size %d /W [1 4 2]" % declared_entries)


def xref_wide_field(width: int = 200_000) -> bytes:
    """An xref stream whose ``/W`` gives a field ``width`` bytes: pyHanko converts it with
    big-integer arithmetic quadratic in the width."""
    entries = b"\x01" + b"\x07" * width + b"\x00"
    out = bytearray(HEADER)
    out += b"1 0 obj\n" + CATALOG + b"\nendobj\n2 0 obj\n" + EMPTY_PAGES + b"\nendobj\n"
    xref_at = len(out)
    out += b"3 0 obj\n" + stream(
        b"/Type /XRef /Root 1 0 R /Size 4 /Index [3 1] /W [1 %d 1]" % width, entries
    )
    out += b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def object_stream_bomb(decoded_size: int = 256 * MiB) -> bytes:
    """The catalog lives in an object stream (``/Type /ObjStm``) that is a Flate bomb."""
    body = b"1 0 " + CATALOG
    objstm = stream(
        b"/Type /ObjStm /N 1 /First 4 /Filter /FlateDecode",
        deflated_zeros(decoded_size, body + b" "),
    )
    out = bytearray(HEADER)
    offsets = {}
    for number, obj in ((2, EMPTY_PAGES), (4, objstm)):
        offsets[number] = len(out)
        out += b"%d 0 obj\n" % number + obj + b"\nendobj\n"
    xref_at = len(out)
    rows = [
        b"\x00\x00\x00\x00\x00\xff\xff",
        b"\x02\x00\x00\x00\x04\x00\x00",  # object 1: in object stream 4, index 0
        b"\x01" + offsets[2].to_bytes(4, "big") + b"\x00\x00",
        b"\x01" + xref_at.to_bytes(4, "big") + b"\x00\x00",
        b"\x01" + offsets[4].to_bytes(4, "big") + b"\x00\x00",
    ]
    out += b"3 0 obj\n" + stream(b"/Type /XRef /Root 1 0 R /Size 5 /W [1 4 2]", b"".join(rows))
    out += b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def content_stream_bomb(decoded_size: int = 256 * MiB) -> bytes:
    """A page whose content stream decodes to ``decoded_size`` bytes."""
    return assemble(
        {
            1: CATALOG,
            2: ONE_PAGE,
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
            4: stream(b"/Filter /FlateDecode", deflated_zeros(decoded_size)),
        }
    )


def metadata_stream_bomb(decoded_size: int = 256 * MiB) -> bytes:
    """The catalog's XMP metadata stream decodes to ``decoded_size`` bytes."""
    return assemble(
        {
            1: b"<< /Type /Catalog /Pages 2 0 R /Metadata 3 0 R >>",
            2: EMPTY_PAGES,
            3: stream(
                b"/Type /Metadata /Subtype /XML /Filter /FlateDecode",
                deflated_zeros(decoded_size, b"<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>"),
            ),
        }
    )


@functools.lru_cache(maxsize=4)
def stacked_filter_bomb(decoded_size: int = 256 * MiB, layers: int = 2) -> bytes:
    """A content stream Deflated ``layers`` times: each layer multiplies the ratio (~1000:1,
    then ~500:1), so a few hundred bytes stand for ``decoded_size``."""
    data = deflated_zeros(decoded_size)
    for _ in range(layers - 1):
        data = zlib.compress(data, 9)
    filters = b"[" + b" ".join([b"/FlateDecode"] * layers) + b"]"
    return assemble(
        {
            1: CATALOG,
            2: ONE_PAGE,
            3: b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents 4 0 R >>",
            4: stream(b"/Filter " + filters, data),
        }
    )


def signed_with_xref_bomb_update(signed: bytes, declared_entries: int = 10_000_000) -> bytes:
    """A signed PDF followed by an incremental update whose cross-reference *stream* is a
    Flate bomb declaring ``declared_entries`` entries (the signed revision stays intact)."""
    prev, size, root = _trailer_facts(signed)
    out = bytearray(signed)
    if not out.endswith(b"\n"):
        out += b"\n"
    xref_number = max(size, 1)
    xref_at = len(out)
    first = b"\x01" + xref_at.to_bytes(4, "big") + b"\x00\x00"
    data = deflated_zeros(declared_entries * 7, first)
    out += b"%d 0 obj\n" % xref_number
    out += stream(
        b"/Type /XRef /Root %s /Prev %d /Size %d /Index [%d %d] /W [1 4 2] /Filter /FlateDecode"
        % (root, prev, xref_number + declared_entries, xref_number, declared_entries),
        data,
    )
    out += b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at
    return bytes(out)


def signed_with_bomb_update(signed: bytes, kind: str = "metadata") -> bytes:
    """A signed PDF followed by an update that adds a bomb where pyHanko's difference
    analysis reads it: ``metadata`` (a new XMP stream in the catalog, which the metadata rule
    parses), ``content`` (a page content stream), ``stacked`` (content with two Flate layers)
    or ``objstm`` (the new catalog inside a bombed object stream)."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(BytesIO(signed), strict=False)
    catalog_ref = reader.trailer.raw_get("/Root")
    catalog = bytes(_serialise(reader.root))
    prev, size, root = _trailer_facts(signed)
    bomb_number = size
    if kind == "metadata":
        bomb = stream(
            b"/Type /Metadata /Subtype /XML /Filter /FlateDecode",
            deflated_zeros(256 * MiB, b"<?xpacket begin='' id='W5M0MpCehiHzreSzNTczkc9d'?>"),
        )
        new_catalog = catalog[:-2] + b" /Metadata %d 0 R >>" % bomb_number
        return _append_raw(
            signed, {catalog_ref.idnum: new_catalog, bomb_number: bomb}, prev, size + 1, root
        )
    if kind in ("content", "stacked"):
        page_ref = reader.root["/Pages"]["/Kids"].raw_get(0)
        page = bytes(_serialise(page_ref.get_object()))
        data = deflated_zeros(256 * MiB)
        filters = b"/FlateDecode"
        if kind == "stacked":
            data = zlib.compress(data, 9)
            filters = b"[/FlateDecode /FlateDecode]"
        bomb = stream(b"/Filter " + filters, data)
        old = re.search(rb"/Contents\s+\d+\s+\d+\s+R", page)
        assert old is not None
        new_page = page.replace(old.group(0), b"/Contents %d 0 R" % bomb_number)
        return _append_raw(
            signed, {page_ref.idnum: new_page, bomb_number: bomb}, prev, size + 1, root
        )
    if kind == "objstm":
        body = b"%d 0 " % catalog_ref.idnum + catalog[:-2] + b" /Bombed true >>"
        objstm_number = size
        objstm = stream(
            b"/Type /ObjStm /N 1 /First %d /Filter /FlateDecode"
            % len(b"%d 0 " % catalog_ref.idnum),
            deflated_zeros(256 * MiB, body + b" "),
        )
        out = bytearray(signed)
        if not out.endswith(b"\n"):
            out += b"\n"
        objstm_at = len(out)
        out += b"%d 0 obj\n" % objstm_number + objstm + b"\nendobj\n"
        xref_number = objstm_number + 1
        xref_at = len(out)
        rows = (
            b"\x02" + objstm_number.to_bytes(4, "big") + b"\x00\x00",  # the catalog
            b"\x01" + objstm_at.to_bytes(4, "big") + b"\x00\x00",
            b"\x01" + xref_at.to_bytes(4, "big") + b"\x00\x00",
        )
        index = b"[%d 1 %d 2]" % (catalog_ref.idnum, objstm_number)
        out += b"%d 0 obj\n" % xref_number + stream(
            b"/Type /XRef /Root %s /Prev %d /Size %d /Index %s /W [1 4 2]"
            % (root, prev, xref_number + 1, index),
            b"".join(rows),
        )
        out += b"\nendobj\nstartxref\n%d\n%%%%EOF\n" % xref_at
        return bytes(out)
    raise ValueError(kind)


def signed_with_deep_update(signed: bytes, depth: int = 100_000) -> bytes:
    """A signed PDF followed by an update whose new catalog holds a ``depth``-deep array."""
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(BytesIO(signed), strict=False)
    catalog_ref = reader.trailer.raw_get("/Root")
    catalog = bytes(_serialise(reader.root))
    new_catalog = catalog[:-2] + b" /Deep " + nested(depth) + b" >>"
    return append_update(signed, {catalog_ref.idnum: new_catalog})


def _serialise(obj: object) -> bytes:
    out = BytesIO()
    obj.write_to_stream(out)  # type: ignore[attr-defined]
    return out.getvalue()


# --- nesting -------------------------------------------------------------------------------


def nested(depth: int, kind: str = "array") -> bytes:
    """``depth`` directly nested arrays (``[[[…]]]``) or dictionaries (``<< /A << … >> >>``)."""
    if kind == "array":
        return b"[" * depth + b"]" * depth
    return b"<< /A " * depth + b"1" + b" >>" * depth


def deep_nesting(depth: int = 100_000, kind: str = "array") -> bytes:
    """The catalog holds a ``depth``-deep direct object (pyHanko's parser recurses on it)."""
    return assemble(
        {1: b"<< /Type /Catalog /Pages 2 0 R /Deep " + nested(depth, kind) + b" >>", 2: EMPTY_PAGES}
    )


def reference_chain(length: int = 50_000) -> bytes:
    """The catalog's ``/Next`` points to an object that is only a reference to the next one,
    ``length`` times (resolution of indirect objects is recursive in pyHanko)."""
    objects = {1: b"<< /Type /Catalog /Pages 2 0 R /Next 3 0 R >>", 2: EMPTY_PAGES}
    for number in range(3, 3 + length):
        objects[number] = b"%d 0 R" % (number + 1)
    objects[3 + length] = b"null"
    return assemble(objects)


def deep_field_tree(depth: int = 5_000) -> bytes:
    """An AcroForm field tree ``depth`` levels deep (pyHanko enumerates it recursively)."""
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [3 0 R] >> >>",
        2: EMPTY_PAGES,
    }
    for level in range(depth):
        number = 3 + level
        kids = b" /Kids [%d 0 R]" % (number + 1) if level < depth - 1 else b" /FT /Sig"
        objects[number] = b"<< /T (f%d)%s >>" % (level, kids)
    return assemble(objects)


def field_dag_bomb(levels: int = 40) -> bytes:
    """A field "tree" in which every node lists the same child twice: pyHanko enumerates it
    once per path, 2**levels times."""
    objects = {
        1: b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /Fields [3 0 R] >> >>",
        2: EMPTY_PAGES,
    }
    for level in range(levels):
        number = 3 + level
        objects[number] = b"<< /T (n%d) /Kids [%d 0 R %d 0 R] >>" % (level, number + 1, number + 1)
    objects[3 + levels] = b"<< /T (leaf) /FT /Sig >>"
    return assemble(objects)


# --- floods --------------------------------------------------------------------------------


def many_revisions(base: bytes | None = None, count: int = 5_000) -> bytes:
    """``base`` (default: a small unsigned PDF) plus ``count`` incremental updates, each
    re-defining one small object."""
    pdf = base if base is not None else make_pdf()
    prev, size, root = _trailer_facts(pdf)
    number = size
    size += 1
    out = bytearray(pdf)
    for n in range(count):
        if not out.endswith(b"\n"):
            out += b"\n"
        at = len(out)
        out += b"%d 0 obj\n<< /Revision %d >>\nendobj\n" % (number, n)
        xref_at = len(out)
        out += b"xref\n%d 1\n%010d 00000 n \n" % (number, at)
        out += b"trailer\n<< /Size %d /Root %s /Prev %d >>\nstartxref\n%d\n%%%%EOF\n" % (
            size,
            root,
            prev,
            xref_at,
        )
        prev = xref_at
    return bytes(out)


def many_signature_fields(count: int = 5_000, signed: bytes | None = None) -> bytes:
    """``count`` filled signature fields.

    Without ``signed``: a fresh file whose fields share one bogus signature dictionary.
    With ``signed``: an update to that file adding ``count`` fields whose value is the file's
    own (genuine) first signature, so each costs a full CMS validation.
    """
    if signed is None:
        objects = {
            2: EMPTY_PAGES,
            3: b"<< /Type /Sig /Filter /Adobe.PPKLite /SubFilter /ETSI.CAdES.detached "
            b"/ByteRange [0 10 20 10] /Contents <3000> >>",
        }
        refs = []
        for n in range(count):
            number = 4 + n
            objects[number] = b"<< /FT /Sig /T (S%d) /V 3 0 R >>" % n
            refs.append(b"%d 0 R" % number)
        objects[1] = (
            b"<< /Type /Catalog /Pages 2 0 R /AcroForm << /SigFlags 3 /Fields ["
            + b" ".join(refs)
            + b"] >> >>"
        )
        return assemble(objects)
    from pyhanko.pdf_utils.reader import PdfFileReader

    reader = PdfFileReader(BytesIO(signed), strict=False)
    catalog_ref = reader.trailer.raw_get("/Root")
    form = reader.root["/AcroForm"]
    existing = list(form.raw_get("/Fields"))
    sig_value = existing[0].get_object().raw_get("/V")
    prev, size, root = _trailer_facts(signed)
    objects: dict[int, bytes] = {}
    refs = [b"%d %d R" % (r.idnum, r.generation) for r in existing]
    for n in range(count):
        number = size + n
        objects[number] = b"<< /FT /Sig /T (Copy%d) /V %d %d R >>" % (
            n,
            sig_value.idnum,
            sig_value.generation,
        )
        refs.append(b"%d 0 R" % number)
    root_obj = reader.root
    pages = root_obj.raw_get("/Pages")
    objects[catalog_ref.idnum] = (
        b"<< /Type /Catalog /Pages %d %d R /AcroForm << /SigFlags 3 /Fields ["
        % (pages.idnum, pages.generation)
        + b" ".join(refs)
        + b"] >> >>"
    )
    return _append_raw(signed, objects, prev, size + count, root)


# --- genuine signatures outside the policy -------------------------------------------------


def _throwaway_ca() -> tuple[asn1_x509.Certificate, rsa.RSAPrivateKey]:
    """A self-signed CA that no trust store knows."""
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "CA không rõ nguồn gốc")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)), key


def _issue_certificate(
    pki: DevPki, public_key: object, common_name: str, *, untrusted: bool = False
) -> tuple[asn1_x509.Certificate, tuple[asn1_x509.Certificate, ...]]:
    """A signing certificate for ``public_key`` issued by the dev intermediate CA (RSA-2048,
    SHA-256), with the intermediate's CRL distribution point, or (``untrusted``) by a
    throw-away CA no trust store knows; (cert, chain)."""
    interm_key: object
    if untrusted:
        interm, interm_key = _throwaway_ca()
        chain: tuple[asn1_x509.Certificate, ...] = (interm,)
    else:
        interm = pki.cert("interm")
        interm_key = serialization.load_pem_private_key(
            (pki.directory / "keys" / "interm.key.pem").read_bytes(), password=None
        )
        chain = (interm, pki.cert("root"))
    assert isinstance(interm_key, rsa.RSAPrivateKey)
    issuer = x509.load_der_x509_certificate(interm.dump())
    template = x509.load_der_x509_certificate(pki.cert("agency-a-seal").dump())
    crl_dp = template.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.COUNTRY_NAME, "VN"),
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Sở Tư pháp tỉnh Demo A"),
                    x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                ]
            )
        )
        .issuer_name(issuer.subject)
        .public_key(public_key)  # type: ignore[arg-type]
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(crl_dp, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(interm_key.public_key()),
            critical=False,
        )
    )
    cert = builder.sign(interm_key, hashes.SHA256())
    return asn1_x509.Certificate.load(cert.public_bytes(serialization.Encoding.DER)), chain


KEY_GENERATORS: dict[str, Callable[[], object]] = {
    "ed25519": ed25519.Ed25519PrivateKey.generate,
    "ed448": ed448.Ed448PrivateKey.generate,
    "dsa": lambda: dsa.generate_private_key(2048),
    "rsa1024": lambda: rsa.generate_private_key(65537, 1024),
    "rsa2048": lambda: rsa.generate_private_key(65537, 2048),
}
# The digest pyHanko pairs with each key (RFC 8419: Ed25519 with SHA-512, Ed448 with SHAKE256).
DEFAULT_DIGEST = {"ed25519": "sha512", "ed448": "shake256"}


def loaded_key(
    pki: DevPki, algorithm: str, *, untrusted: bool = False, ess_certificate: bool = True
) -> LoadedKey:
    """A fresh key of ``algorithm`` (see ``KEY_GENERATORS``) with a certificate under the dev
    intermediate (or an unknown CA), as a signing-engine key. ``ess_certificate=False``
    leaves out the ESS signing-certificate-v2 attribute, as older signers (adbe.pkcs7) do."""
    private = KEY_GENERATORS[algorithm]()
    cert, chain = _issue_certificate(
        pki,
        private.public_key(),  # type: ignore[attr-defined]
        f"Ký thử {algorithm} (thử nghiệm)",
        untrusted=untrusted,
    )
    der = private.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    signer = SimpleSigner(
        signing_cert=cert,
        signing_key=asn1_keys.PrivateKeyInfo.load(der),
        cert_registry=SimpleCertificateStore.from_certs(list(chain)),
    )
    if not ess_certificate:
        from pyhanko.sign.signers.pdf_cms import (
            CMSSignedAttributes,
            GenericCMSSignedAttributeProviderSpec,
        )

        signer.signed_attr_prov_spec = GenericCMSSignedAttributeProviderSpec(
            attr_settings=CMSSignedAttributes(),
            signing_cert=None,
            signature_mechanism=None,
            timestamper=None,
        )
    return LoadedKey(signer=signer, signing_cert=cert, chain=chain)


def signed_with(
    pki: DevPki,
    algorithm: str,
    *,
    md_algorithm: str | None = None,
    level: SignatureLevel = SignatureLevel.B_B,
    pdf: bytes | None = None,
    untrusted: bool = False,
    ess_certificate: bool = True,
) -> bytes:
    """A PDF signed (PAdES, by our engine over pyHanko) with a fresh ``algorithm`` key:
    ``ed25519``, ``ed448``, ``dsa``, ``rsa1024`` or ``rsa2048``; ``md_algorithm`` e.g.
    ``"sha1"`` for a SHA-1 signature. B-T uses the dev TSA. ``untrusted``: the certificate
    comes from a CA no trust store knows (as in every file of the public corpus);
    ``ess_certificate=False``: no ESS signing-certificate attribute (see ``loaded_key``)."""
    key = loaded_key(pki, algorithm, untrusted=untrusted, ess_certificate=ess_certificate)
    options = SignOptions(
        level=level,
        md_algorithm=md_algorithm or DEFAULT_DIGEST.get(algorithm, "sha256"),
        tsa_url=pki.tsa_url if level.needs_timestamp else None,
    )
    return asyncio.run(async_sign_pdf(pdf if pdf is not None else make_pdf(), key, options))


# --- damage to signed files ----------------------------------------------------------------

_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]")


def signed_ranges(pdf: bytes) -> list[tuple[int, int]]:
    """Every ``[start, end)`` span some ``/ByteRange`` in the file declares as signed (merged).

    Read textually, as the fuzz test needs to know which bytes a signature claims to cover
    even in a file no parser can open.
    """
    spans = []
    for m in _BYTE_RANGE.finditer(pdf):
        a, b, c, d = (int(g) for g in m.groups())
        spans.append((a, a + b))
        spans.append((c, c + d))
    spans.sort()
    merged: list[tuple[int, int]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def in_signed_range(pdf: bytes, position: int) -> bool:
    return any(start <= position < end for start, end in signed_ranges(pdf))


def truncated(pdf: bytes, fraction: float = 0.66) -> bytes:
    return pdf[: int(len(pdf) * fraction)]


def byte_changed_in_signed_range(pdf: bytes) -> bytes:
    """One byte of the first page's content changed (inside the signed range)."""
    at = pdf.index(b"trang 1") + 6
    assert in_signed_range(pdf, at)
    return pdf[:at] + b"2" + pdf[at + 1 :]


def byte_changed_outside_signed_range(pdf: bytes) -> bytes:
    """One hex digit of the signature value changed: the only bytes of a one-signature file
    that no ByteRange covers. The CMS no longer parses or no longer verifies."""
    start = pdf.index(b"/Contents <") + len(b"/Contents <")
    at = start + 40
    assert not in_signed_range(pdf, at)
    replacement = b"0" if pdf[at : at + 1] != b"0" else b"1"
    return pdf[:at] + replacement + pdf[at + 1 :]


# --- minimal reproducers of crashes found by the fuzz test ---------------------------------


def signer_certificate_damaged(signed: bytes, part: str = "validity") -> bytes:
    """A signed PDF whose signer certificate, inside ``/Contents`` (outside the signed
    range), is damaged so that it still decodes as DER but one field does not parse:
    ``validity`` (notAfter is no longer a valid UTCTime) or ``subject`` (the common name is
    no longer valid UTF-8). The signed bytes and the signature value stay intact; only code
    that reads the certificate's fields fails.

    Crash found by the fuzz test (one hex digit of ``/Contents`` changed in corpus files):
    ``validate._signer_info`` reads ``cert.subject.native`` and the validity outside the
    per-signature error handling → ``ValueError`` / ``UnicodeDecodeError`` → HTTP 500.
    """
    from asn1crypto import cms

    match = re.search(rb"/Contents\s*<([0-9A-Fa-f]+)>", signed)
    assert match is not None
    start, end = match.span(1)
    der = bytearray(bytes.fromhex(match.group(1).decode()))
    # The CMS is followed by the reservation's zero padding: read the first DER element and
    # ignore what follows (rstrip would also eat a genuine last zero byte of the signature
    # value, about one run in 256).
    content = cms.ContentInfo.load(bytes(der), strict=False)
    signed_data = content["content"]
    sid = signed_data["signer_infos"][0]["sid"].chosen
    cert = next(
        c.chosen
        for c in signed_data["certificates"]
        if c.chosen.serial_number == sid["serial_number"].native
    )
    cert_der = cert.dump()
    cert_at = bytes(der).index(cert_der)
    if part == "validity":
        # notAfter: the second UTCTime (tag 0x17, length 13) of the certificate. (pyHanko
        # reads notBefore itself and reports a damaged one as an unreadable signature.)
        first = cert_der.index(b"\x17\x0d")
        at = cert_at + cert_der.index(b"\x17\x0d", first + 15) + 4
        der[at] = ord("A")
    elif part == "subject":
        common_name = cert.subject.chosen[-1][0]["value"].chosen.contents
        at = cert_at + cert_der.rindex(common_name)
        der[at + len(common_name) - 1] = 0xDE  # a lone UTF-8 lead byte
    else:
        raise ValueError(part)
    new_hex = der.hex().encode()
    assert len(new_hex) == end - start
    return signed[:start] + new_hex + signed[end:]


def _unprotected_certificate(pki: DevPki) -> bytes:
    # Untrusted (no path is built, so pyHanko never reads the certificate's validity) and
    # without the ESS attribute that would bind the certificate's hash: as the corpus files
    # where the fuzz test found the crash.
    return signed_with(pki, "rsa2048", untrusted=True, ess_certificate=False)


# Each: the crash (exception and where) → a builder taking the dev PKI and returning the input.
CRASH_REPRODUCERS: dict[str, Callable[[DevPki], bytes]] = {
    # Fixed on this branch by making signing.policy total (asn1crypto's bit_size raises
    # UnboundLocalError for EdDSA keys); kept as a regression input.
    "UnboundLocalError at policy.py key_policy_problem (Ed25519 key)": lambda pki: signed_with(
        pki, "ed25519"
    ),
    "ValueError at validate.py _signer_info (certificate validity)": lambda pki: (
        signer_certificate_damaged(_unprotected_certificate(pki), "validity")
    ),
    "UnicodeDecodeError at validate.py _signer_info (certificate subject)": lambda pki: (
        signer_certificate_damaged(_unprotected_certificate(pki), "subject")
    ),
}


# --- key floods: the raw scans for signature dictionaries --------------------------------------


def key_flood(where: str, size: int = 4 * MiB, key: bytes = b"/ByteRange [0 1 2 3] ") -> bytes:
    """An unsigned one-page PDF of about ``size`` bytes made of ``key`` repeated: inside a
    stream's data (``stream``), as keys of one dictionary (``dict``, each a duplicate), inside a
    string of a dictionary (``string``), or loose between objects (``loose``). The raw scans
    that look for signature dictionaries must stay linear in the file's size on all four."""
    payload = key * (size // len(key))
    page = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] >>"
    objects = {1: CATALOG, 2: ONE_PAGE, 3: page}
    if where == "stream":
        objects[4] = stream(b"", payload)
    elif where == "dict":
        objects[4] = b"<< " + payload.replace(b"[0 1 2 3]", b"1") + b">>"
    elif where == "string":
        objects[4] = b"<< /Title (" + payload + b") >>"
    pdf = assemble(objects)
    if where == "loose":
        at = pdf.rindex(b"xref\n")
        head, tail = pdf[:at] + payload + b"\n", pdf[at:]
        old = b"startxref\n%d\n" % at
        return head + tail.replace(old, b"startxref\n%d\n" % len(head))
    return pdf
