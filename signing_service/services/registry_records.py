"""The registry of issued documents as read (issue 11): its records, public ids and links,
the digests a lookup tries and the sentence for people, without SQLAlchemy.

Why a module of its own: ``signing-service verify`` reads the registry with the standard
library's ``sqlite3`` (or psycopg) and builds its section from these same records
(services/standalone.py), so that the command line does not import SQLAlchemy and its ORM for
one lookup (issue 13: verify ≤ 2 × importing pyHanko's validation) and still answers exactly
what the API answers. :mod:`signing_service.services.registry` re-exports every name here.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from signing_service.timefmt import api_time

IN_FORCE = "in_force"
REVOKED = "revoked"
SUPERSEDED = "superseded"
STATUSES = (IN_FORCE, REVOKED, SUPERSEDED)

# 128 random bits in RFC 4648 base32, lower case, unpadded: 26 characters from a-z and 2-7
# (no 0/1/8/9, no case, no "-"/"_": read aloud or typed from paper without ambiguity, short
# enough for a small QR code). Unguessable: the registry is not an enumerable list.
PUBLIC_ID = re.compile(r"[a-z2-7]{26}")
SHA256_HEX = re.compile(r"[0-9a-f]{64}")
# The longest reason for a status change, in characters (the column holds 500).
MAX_REASON_CHARS = 500
# The link's path under the public base URL: the public page of issue 11 (page lane).
LINK_PATH = "xac-minh/"

# A signature dictionary's /ByteRange [0 b c d] (ISO 32000-1 §12.8.1): the signed revision is
# the file's first c + d bytes. At most this many are looked at (a hostile file may carry
# thousands).
_BYTE_RANGE = re.compile(rb"/ByteRange\s*\[\s*0\s+(\d{1,12})\s+(\d{1,12})\s+(\d{1,12})\s*\]")
MAX_REVISIONS_LOOKED_UP = 32
# A signature's /Contents hole larger than this is not read by a lookup (a CMS with a long
# chain and revocation data is tens of kilobytes; 2 MB of hex is far beyond).
MAX_CONTENTS_BYTES = 2 * 1024 * 1024
# ``matched`` of a registry section whose file is a registered revision followed only by
# validation data and document timestamps (an extended or preserved copy).
VALIDATION_DATA = "validation_data"


def new_public_id() -> str:
    """A fresh public id: 128 bits from :mod:`secrets`, base32 lower case, unpadded."""
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def public_link(base_url: str | None, public_id: str) -> str | None:
    """The public link of a registered document: ``SIGNING_SERVICE_PUBLIC_BASE_URL`` followed
    by ``/xac-minh/{public_id}`` (``None`` when no base URL is configured). A base ending with
    ``=`` is a portal's query parameter: the id is appended to it as it is."""
    if not base_url:
        return None
    if base_url.endswith("="):
        return base_url + public_id
    return f"{base_url.rstrip('/')}/{LINK_PATH}{public_id}"


@dataclass(frozen=True)
class LinkedRecord:
    """Another registered document a record points to: its public id, link and own
    ``status`` (``in_force``, ``revoked``, ``superseded``: a replacement revoked since must not
    be offered as "the new document to use"), and ``document_id`` only for the agency's own
    view."""

    public_id: str
    link: str | None
    document_id: str
    status: str

    def to_public_dict(self) -> dict[str, Any]:
        return {"public_id": self.public_id, "link": self.link, "status": self.status}


@dataclass(frozen=True)
class RegistryRecord:
    """One registered document as read, with its links resolved.

    Public: ``public_id``, ``link``, the agency, ``kind``, the codes, ``issued_at`` (the
    signature's claimed signing time), ``status`` and its change, ``superseded_by`` and
    ``signed_further_by`` (the newer version the service signed from this one). Agency-only:
    ``document_id``, ``sha256``, ``registered_at``, ``signs_further`` (the version this one
    was signed from)."""

    public_id: str
    link: str | None
    agency_code: str
    agency_name: str
    kind: str | None
    dossier_code: str | None
    result_code: str | None
    document_number: str | None
    issued_at: datetime
    status: str
    status_changed_at: datetime | None
    reason: str | None
    superseded_by: LinkedRecord | None
    signed_further_by: LinkedRecord | None
    status_from: LinkedRecord | None
    # Agency-only.
    document_id: str
    agency_id: int
    sha256: str
    registered_at: datetime
    signs_further: LinkedRecord | None
    # Versions (issue 12, services/extension.py): the version of the document that was matched
    # (the record's own, its newest, when looked up by public id), and whether a newer version
    # of it exists (an extension to B-LT/B-LTA or a renewed archive timestamp).
    version: int = 1
    newer_version: bool = False

    def to_public_dict(self) -> dict[str, Any]:
        """The public metadata only (the ``registry`` section of a verification report, the
        anonymous ``GET /v1/registry/{public_id}``); times ISO 8601 at +07:00::

            {"found": true, "public_id", "link", "agency": {"code", "name"}, "kind",
             "dossier_code", "result_code", "document_number", "issued_at", "status",
             "status_changed_at", "reason", "superseded_by": {"public_id", "link"} | null,
             "signed_further_by": {"public_id", "link"} | null,
             "status_from": {"public_id", "link"} | null,
             "version": int, "newer_version": bool}

        ``status``, ``status_changed_at``, ``reason`` and ``superseded_by`` are those of the
        latest version the service signed further from this one when this one is in force
        itself (red team 11 F5: revoking the final version revokes the copies it was signed
        from); ``status_from`` names that version (``null``: the record's own status).
        Times in whole seconds. ``version``: the matched version of the document (1: as
        signed; 2, 3, …: extended or renewed by the service, services/extension.py);
        ``newer_version``: a newer version of it exists (the record stands for the newest).
        """
        return {
            "found": True,
            "public_id": self.public_id,
            "link": self.link,
            "agency": {"code": self.agency_code, "name": self.agency_name},
            "kind": self.kind,
            "dossier_code": self.dossier_code,
            "result_code": self.result_code,
            "document_number": self.document_number,
            "issued_at": _seconds(self.issued_at),
            "status": self.status,
            "status_changed_at": (
                _seconds(self.status_changed_at) if self.status_changed_at else None
            ),
            "reason": self.reason,
            "superseded_by": self.superseded_by.to_public_dict() if self.superseded_by else None,
            "signed_further_by": (
                self.signed_further_by.to_public_dict() if self.signed_further_by else None
            ),
            "status_from": self.status_from.to_public_dict() if self.status_from else None,
            "version": self.version,
            "newer_version": self.newer_version,
        }

    def to_agency_dict(self) -> dict[str, Any]:
        """:meth:`to_public_dict` plus what the issuing agency alone sees: the document's id,
        its SHA-256, when it was registered, and the document ids of the linked records."""

        def linked(record: LinkedRecord | None) -> dict[str, Any] | None:
            if record is None:
                return None
            return {**record.to_public_dict(), "document_id": record.document_id}

        out = self.to_public_dict()
        del out["found"]
        out.update(
            document_id=self.document_id,
            sha256=self.sha256,
            registered_at=_seconds(self.registered_at),
            superseded_by=linked(self.superseded_by),
            signed_further_by=linked(self.signed_further_by),
            status_from=linked(self.status_from),
            signs_further=linked(self.signs_further),
        )
        return out


NOT_FOUND: dict[str, Any] = {"found": False}


def _seconds(moment: datetime) -> str:
    """:func:`api_time` in whole seconds (the API's times, red team 11 F11): stored times may
    carry microseconds."""
    return api_time(moment.replace(microsecond=0))


# How far a chain of versions signed further is followed (officer → seal → … ; a service
# signing the same document 25 times is already unusual). Bounds a lookup's queries.
MAX_VERSION_CHAIN = 64


# How many versions a lookup follows forward (an archive timestamp renewed every few years).
MAX_VERSION_WALK = 1000


def signed_revision_digests(pdf: bytes) -> list[str]:
    """SHA-256 (hex) of each signed revision of ``pdf`` that is not the whole file, newest
    first: for every signature whose /ByteRange starts at 0, the first ``c + d`` bytes (the
    revision it signed, its own signature included). One pass over the file whatever the
    number of revisions (the digest is carried from one revision's end to the next); at most
    :data:`MAX_REVISIONS_LOOKED_UP` of them (the newest)."""
    return [digest for digest, _ in signed_revisions(pdf)]


def signed_revisions(pdf: bytes) -> list[tuple[str, int]]:
    """(SHA-256 hex, end offset) of each signed revision (:func:`signed_revision_digests`)."""
    ends: set[int] = set()
    for match in _BYTE_RANGE.finditer(pdf):
        b, c, d = (int(g) for g in match.groups())
        end = c + d
        if b <= c and 0 < end < len(pdf):
            ends.add(end)
    chosen = sorted(ends)[-MAX_REVISIONS_LOOKED_UP:]
    view = memoryview(pdf)
    running = hashlib.sha256()
    done = 0
    found = []
    for end in chosen:
        running.update(view[done:end])
        done = end
        found.append((running.copy().hexdigest(), end))
    return found[::-1]


# How many of the latest-ending /ByteRange arrays a lookup reads the signature of.
MAX_SIGNATURES_LOOKED_UP = 3


def signature_key(covered_sha256: bytes, signature_cms: bytes) -> str | None:
    """The registry's second key for a signature (:attr:`RegisteredDocument.signature_sha256`):
    SHA-256 (hex) over the SHA-256 of the bytes its /ByteRange covers and the signature value
    of its CMS's first SignerInfo (RFC 5652 §5.3). Both survive a change of the unsigned bytes
    of /Contents (the zero padding, the hex case, the unsigned attributes such as the
    timestamp token); neither survives a change of the signed bytes or another signer's CMS
    over them. Trailing bytes after the DER are ignored. ``None`` for an unreadable CMS."""
    from asn1crypto import cms

    try:
        content = cms.ContentInfo.load(signature_cms, strict=False)["content"]
        value = content["signer_infos"][0]["signature"].native
    except Exception:  # noqa: BLE001 - not a signature this lookup can use
        return None
    if not isinstance(value, bytes) or not value:
        return None
    return hashlib.sha256(covered_sha256 + value).hexdigest()


def signed_sha256(signature_cms: bytes) -> bytes | None:
    """The messageDigest signed attribute of a CMS when its digest algorithm is SHA-256: for a
    PAdES signature, the SHA-256 of the bytes its /ByteRange covers (ETSI EN 319 142-1 §5.1),
    so the signing flow need not hash the document again. ``None`` otherwise."""
    from asn1crypto import cms

    try:
        signer_info = cms.ContentInfo.load(signature_cms, strict=False)["content"]["signer_infos"][
            0
        ]
        if signer_info["digest_algorithm"]["algorithm"].native != "sha256":
            return None
        for attr in signer_info["signed_attrs"]:
            if attr["type"].native == "message_digest":
                digest = attr["values"][0].native
                return bytes(digest) if isinstance(digest, bytes) and len(digest) == 32 else None
    except Exception:  # noqa: BLE001 - the caller hashes the bytes instead
        return None
    return None


def signature_digests(pdf: bytes, limit: int = MAX_SIGNATURES_LOOKED_UP) -> list[tuple[str, int]]:
    """``(signature_key, end offset)`` (:func:`signature_key`) of the ``limit`` standard
    ``/ByteRange [0 b c d]`` arrays of ``pdf`` that end last, the last-ending first: the key a
    registered document is found by when only the unsigned bytes of its last signature's
    ``/Contents`` differ, which anyone can change (new user 22 #1). One pass over the covered
    bytes and one CMS parse per range; a /ByteRange of a fake dictionary only costs those."""
    import binascii

    holes: dict[int, tuple[int, int]] = {}
    for match in _BYTE_RANGE.finditer(pdf):
        b, c, d = (int(g) for g in match.groups())
        end = c + d
        if 0 < b < c and end <= len(pdf) and c - b <= MAX_CONTENTS_BYTES:
            holes.setdefault(end, (b, c))
    found = []
    view = memoryview(pdf)
    for end in sorted(holes, reverse=True)[:limit]:
        b, c = holes[end]
        text = pdf[b:c].strip().removeprefix(b"<").removesuffix(b">")
        text = bytes(ch for ch in text if ch not in b" \t\r\n\x0c")
        try:
            der = binascii.unhexlify(text[: len(text) // 2 * 2])
        except (binascii.Error, ValueError):
            continue
        covered = hashlib.sha256(view[:b])
        covered.update(view[c:end])
        key = signature_key(covered.digest(), der)
        if key is not None:
            found.append((key, end))
    return found


def only_timestamps_after(pdf: bytes, end: int) -> bool:
    """Whether every signature dictionary of ``pdf`` whose signed revision ends after byte
    ``end`` is a document timestamp (/Type /DocTimeStamp, ISO 32000-2 §12.8.5): what the
    service's extension and preservation add after an issued revision (DSS + document
    timestamps, ETSI EN 319 142-1 §5.4/§5.5: validation data, not content). It says nothing
    about unsigned changes (an annotation in the DSS revision): the verifier's modification
    analysis of the last signature decides those (:mod:`signing_service.services.conclusion`).
    A file pyHanko cannot read answers False (red team 12 F5)."""
    from io import BytesIO

    from pyhanko.pdf_utils.reader import PdfFileReader

    try:
        reader = PdfFileReader(BytesIO(pdf), strict=False)
        revision = None
        for embedded in reader.embedded_signatures:
            start, length = embedded.byte_range[2], embedded.byte_range[3]
            if start + length > end and embedded.sig_object_type != "/DocTimeStamp":
                return False
            if start + length == end:
                revision = embedded.signed_revision
        if revision is None:
            return False
        # The document's descriptive metadata (title, author, subject, keywords…) is not
        # validation data either: the modification analysis accepts its changes at every level
        # (pyHanko's MetadataUpdateRule), yet a viewer shows the title in its window, so a
        # title edited after issue is content added. What every incremental writer updates on
        # save (pyHanko's own extension, Adobe, EU DSS: modification date, producer, XMP
        # instance id) is bookkeeping and is left out of the comparison (new user 14 F2).
        issued = reader.get_historical_resolver(revision)
        return _descriptive_metadata(issued.trailer_view, issued.root) == _descriptive_metadata(
            reader.trailer_view, reader.root
        )
    except Exception:  # noqa: BLE001 - a hostile file: never the benign answer
        return False


# Info dictionary entries an incremental save rewrites without the author asking (ISO 32000-2
# §14.3.3: /ModDate "the date and time the document was most recently modified", /Producer
# "the product that converted it"): pyHanko's writer sets both on every write.
_INFO_BOOKKEEPING = frozenset({"/ModDate", "/Producer"})

# The same for the XMP packet (ISO 16684-1; XMP Specification Part 2 §8): xmp:ModifyDate and
# pdf:Producer (pyHanko, Adobe, PDFBox/EU DSS), xmp:MetadataDate and xmpMM:InstanceID (Adobe
# gives each saved instance a new id). Anything else (dc:title, dc:creator, dc:description,
# pdf:Keywords, xmp:CreatorTool, dates of creation, custom schemas) is compared.
_XMP_NS = "http://ns.adobe.com/xap/1.0/"
_XMP_BOOKKEEPING = frozenset(
    {
        (_XMP_NS, "ModifyDate"),
        (_XMP_NS, "MetadataDate"),
        ("http://ns.adobe.com/pdf/1.3/", "Producer"),
        ("http://ns.adobe.com/xap/1.0/mm/", "InstanceID"),
    }
)


def _descriptive_metadata(trailer: Any, root: Any) -> tuple[Any, Any]:
    """The document's metadata without what an incremental save rewrites by itself: the Info
    dictionary's entries (resolved, as text) other than :data:`_INFO_BOOKKEEPING`, and the XMP
    packet's properties (pyHanko's parser; every rdf:Description merged, as pyHanko's writer
    merges them) other than :data:`_XMP_BOOKKEEPING`. An absent Info dictionary or XMP stream
    is the same as one with bookkeeping only (pyHanko adds one to a PDF 2.0 file). An XMP
    packet pyHanko cannot parse is kept as its bytes: compared exactly, never relaxed."""
    info = trailer.get("/Info")
    entries = sorted(
        (str(k), str(v.get_object()))
        for k, v in (info.get_object().items() if info is not None else ())
        if str(k) not in _INFO_BOOKKEEPING
    )
    stream = root.get("/Metadata")
    return entries, (_xmp_properties(stream.get_object().data) if stream is not None else {})


def _xmp_properties(data: bytes) -> Any:
    """The XMP packet's properties ({ExpandedName: XmpValue}, compared by value, nested
    structures and qualifiers included) without :data:`_XMP_BOOKKEEPING`, or ``data`` itself
    when pyHanko's parser refuses it (entities, not XML): an unparseable packet compares
    byte for byte, never relaxed."""
    from io import BytesIO

    from pyhanko.pdf_utils.metadata.xmp_xml import parse_xmp

    try:
        structures = parse_xmp(BytesIO(data))
    except Exception:  # noqa: BLE001 - not XMP pyHanko reads: the bytes themselves
        return data
    merged: dict[Any, Any] = {}
    for structure in structures:
        for name, value in structure:
            if merged.setdefault(name, value) != value:
                # One property given twice with two values (a second rdf:Description): which
                # one a viewer shows is the viewer's choice, so nothing is relaxed.
                return data
    return {
        name: value
        for name, value in merged.items()
        if (name.ns, name.local_name) not in _XMP_BOOKKEEPING
    }


STATUS_LABELS = {
    IN_FORCE: "đang có hiệu lực",
    REVOKED: "đã bị thu hồi",
    SUPERSEDED: "đã được thay thế",
}


def registry_sentence(section: dict[str, Any]) -> str:
    """One Vietnamese sentence for people (CLI, page) from a report's ``registry`` section:
    who issued the document and when, and its status; or that it was not issued through this
    service (not an error: it may have been issued elsewhere)."""
    if not section.get("found"):
        return (
            "Văn bản không được phát hành qua dịch vụ này (không có trong sổ đăng ký); "
            "điều đó không có nghĩa là chữ ký không hợp lệ."
        )
    agency = section["agency"]
    issued = datetime.fromisoformat(section["issued_at"]).strftime("%H:%M ngày %d/%m/%Y")
    text = f"Văn bản do {agency['name']} ({agency['code']}) phát hành lúc {issued}"
    if section.get("matched") == "revision":
        text += " (tệp có thêm nội dung được thêm vào sau khi phát hành)"
    elif section.get("matched") == VALIDATION_DATA:
        text += " (tệp có thêm dữ liệu xác minh dài hạn và dấu thời gian sau khi phát hành)"
    text += f"; trạng thái: {STATUS_LABELS.get(section['status'], section['status'])}"
    if section.get("reason"):
        text += f" — lý do: {section['reason']}"
    newer = section.get("superseded_by") or section.get("signed_further_by")
    if newer is not None:
        label = "văn bản thay thế" if section.get("superseded_by") else "phiên bản ký tiếp"
        text += f"; {label}: {newer.get('link') or newer['public_id']}"
        if newer.get("status") in (REVOKED, SUPERSEDED):
            text += f" ({label} này {STATUS_LABELS[newer['status']]})"
    return text + "."
