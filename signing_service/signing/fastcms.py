"""Assemble the CMS of a PAdES signature from DER pieces instead of asn1crypto objects.

Building a SignedData with asn1crypto (pure Python) costs ~8 ms per signature, a third of the
service's CPU per request. For one key, everything in that structure is constant except the
message digest, the signature value and the signature timestamp. So the first signature of a
key is built by pyHanko as usual; its DER is split into pieces (a *template*), and later
signatures re-assemble the same structure around the new values with a few length prefixes.

Safety: the fast path is used only for exactly the attribute layout it learnt (content type,
message digest, ESS signing-certificate-v2, CMS algorithm protection; no signing time, which
PAdES forbids) and for the same call parameters; anything else goes the normal way. The result
is parsed back and compared field by field with the template in the tests, and every test
signature is verified cryptographically.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms

OID_MESSAGE_DIGEST = bytes.fromhex("06092a864886f70d010904")
# Attributes whose value does not depend on the document: content type, ESS
# signing-certificate-v2, CMS algorithm protection.
CONSTANT_ATTRS = (
    bytes.fromhex("06092a864886f70d010903"),  # content-type
    bytes.fromhex("060b2a864886f70d010910022f"),  # signing-certificate-v2
    bytes.fromhex("06092a864886f70d010934"),  # cms-algorithm-protection
)


def _length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    raw = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(raw)]) + raw


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + _length(len(content)) + content


def _read_tlv(data: bytes, pos: int) -> tuple[int, int, int]:
    """(tag, start of content, end) of the DER element at ``pos`` (single-byte tags only)."""
    tag = data[pos]
    if tag & 0x1F == 0x1F:
        raise ValueError("multi-byte tags are not used in CMS SignedData")
    first = data[pos + 1]
    if first < 0x80:
        return tag, pos + 2, pos + 2 + first
    count = first & 0x7F
    length = int.from_bytes(data[pos + 2 : pos + 2 + count], "big")
    start = pos + 2 + count
    return tag, start, start + length


def children(data: bytes, start: int, end: int) -> list[bytes]:
    out, pos = [], start
    while pos < end:
        _, _, stop = _read_tlv(data, pos)
        out.append(data[pos:stop])
        pos = stop
    if pos != end:
        raise ValueError("trailing bytes in DER element")
    return out


def content_of(element: bytes) -> bytes:
    _, start, end = _read_tlv(element, 0)
    return element[start:end]


@dataclass(frozen=True)
class CmsTemplate:
    signed_data_head: bytes  # version, digestAlgorithms, encapContentInfo, [0] certificates
    signer_version_sid_digest: bytes  # version, sid, digestAlgorithm
    attrs_before_digest: tuple[bytes, ...]
    attrs_after_digest: tuple[bytes, ...]
    digest_attr_prefix: bytes  # SEQ{ OID, SET{ OCTET STRING header } } up to the value
    signature_algorithm: bytes
    digest_size: int

    @classmethod
    def learn(cls, ci: cms.ContentInfo) -> CmsTemplate | None:
        """Split a CMS pyHanko built; ``None`` when its layout is not one we can re-assemble."""
        der = ci.dump()
        try:
            (outer,) = [der]
            _, s, e = _read_tlv(outer, 0)
            oid, explicit = children(outer, s, e)
            if oid != bytes.fromhex("06092a864886f70d010702"):
                return None
            sd = content_of(explicit)
            _, s, e = _read_tlv(sd, 0)
            parts = children(sd, s, e)
            if len(parts) != 5 or parts[3][0] != 0xA0 or parts[4][0] != 0x31:
                return None  # CRLs inside, or no certificates: not our layout
            signer_infos = children(parts[4], *_read_tlv(parts[4], 0)[1:])
            if len(signer_infos) != 1:
                return None
            si = signer_infos[0]
            fields = children(si, *_read_tlv(si, 0)[1:])
            if len(fields) not in (6, 7) or fields[3][0] != 0xA0 or fields[5][0] != 0x04:
                return None
            attrs = children(fields[3], *_read_tlv(fields[3], 0)[1:])
            before: list[bytes] = []
            after: list[bytes] = []
            digest_attr: bytes | None = None
            for attr in attrs:
                oid_tlv = children(attr, *_read_tlv(attr, 0)[1:])[0]
                if oid_tlv == OID_MESSAGE_DIGEST:
                    digest_attr = attr
                elif oid_tlv in CONSTANT_ATTRS:
                    (after if digest_attr is not None else before).append(attr)
                else:
                    return None  # e.g. signing time: it would change every time
            if digest_attr is None:
                return None
            value = content_of(content_of(children(digest_attr, *_read_tlv(digest_attr, 0)[1:])[1]))
            prefix = digest_attr[: len(digest_attr) - len(value)]
            return cls(
                signed_data_head=b"".join(parts[:4]),
                signer_version_sid_digest=b"".join(fields[:3]),
                attrs_before_digest=tuple(before),
                attrs_after_digest=tuple(after),
                digest_attr_prefix=prefix,
                signature_algorithm=fields[4],
                digest_size=len(value),
            )
        except (ValueError, IndexError):
            return None

    def signed_attrs(self, message_digest: bytes) -> bytes:
        """The signed attributes as the SET that is hashed and signed (RFC 5652 §5.4)."""
        if len(message_digest) != self.digest_size:
            raise ValueError("digest size differs from the template")
        attrs = (
            *self.attrs_before_digest,
            self.digest_attr_prefix + message_digest,
            *self.attrs_after_digest,
        )
        return tlv(0x31, b"".join(attrs))

    def assemble(
        self, signed_attrs_set: bytes, signature: bytes, unsigned_attrs: bytes | None
    ) -> bytes:
        signer_info = (
            self.signer_version_sid_digest
            + b"\xa0"
            + signed_attrs_set[1:]  # [0] IMPLICIT instead of SET
            + self.signature_algorithm
            + tlv(0x04, signature)
        )
        if unsigned_attrs is not None:
            signer_info += b"\xa1" + unsigned_attrs[1:]  # [1] IMPLICIT SET
        signed_data = tlv(0x30, self.signed_data_head + tlv(0x31, tlv(0x30, signer_info)))
        return tlv(0x30, bytes.fromhex("06092a864886f70d010702") + tlv(0xA0, signed_data))


class FastCmsMixin:
    """Mix into a pyHanko ``Signer``: learn a template from the first PAdES signature, then
    re-assemble later ones around the new digest, signature value and timestamp."""

    _templates: dict[tuple[object, ...], CmsTemplate | None]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._templates = {}
        self._template_lock = threading.Lock()

    async def async_sign(  # type: ignore[no-untyped-def]
        self,
        data_digest: bytes,
        digest_algorithm: str,
        dry_run: bool = False,
        use_pades: bool = False,
        timestamper=None,
        signed_attr_settings=None,
        is_pdf_sig: bool = True,
        encap_content_info=None,
    ) -> cms.ContentInfo:
        settings_ok = signed_attr_settings is None or (
            getattr(signed_attr_settings, "adobe_revinfo_attr", None) is None
            and getattr(signed_attr_settings, "cades_signed_attrs", None) is None
        )
        shape = (digest_algorithm.lower(), use_pades, is_pdf_sig)
        fast = not dry_run and encap_content_info is None and settings_ok and use_pades
        template = self._templates.get(shape) if fast else None
        if template is None:
            result: cms.ContentInfo = await super().async_sign(  # type: ignore[misc]
                data_digest,
                digest_algorithm,
                dry_run=dry_run,
                use_pades=use_pades,
                timestamper=timestamper,
                signed_attr_settings=signed_attr_settings,
                is_pdf_sig=is_pdf_sig,
                encap_content_info=encap_content_info,
            )
            if fast and shape not in self._templates:
                with self._template_lock:
                    self._templates[shape] = CmsTemplate.learn(result)
            return result
        algorithm = digest_algorithm.lower()
        signed_attrs = template.signed_attrs(data_digest)
        signature: bytes = await self.async_sign_raw(signed_attrs, algorithm)  # type: ignore[attr-defined]
        unsigned = None
        if timestamper is not None:
            attrs = await self.unsigned_attrs(  # type: ignore[attr-defined]
                algorithm,
                signature,
                signed_attrs=cms.CMSAttributes.load(signed_attrs),
                timestamper=timestamper,
            )
            unsigned = attrs.dump() if attrs is not None else None
        return cms.ContentInfo.load(template.assemble(signed_attrs, signature, unsigned))
