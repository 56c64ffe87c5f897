"""Who a certificate names, for people: Vietnamese labels for distinguished names, and whether a
certificate is a person's (chữ ký số cá nhân) or an agency's seal (chữ ký số của cơ quan, tổ
chức). Pure functions over asn1crypto objects: no I/O, no exceptions on hostile input.

TT 15/2025/TT-BKHCN Appendix II asks verification reports, in Vietnamese, to name the signer and
the certificate's issuer; issue 8 item 5 asks for Vietnamese labels (Tên, Tổ chức, Đơn vị,
Chức danh, Quốc gia) instead of "Common Name: …, Organization: …", and for the personal/agency
distinction the domain glossary draws (ký số cá nhân / ký số cơ quan, con dấu).
"""

from __future__ import annotations

import re
import unicodedata
from enum import StrEnum

from asn1crypto import core, x509

from signing_service.verification.messages import display_text

# Labels by asn1crypto's attribute names (x509.NameType). Anything else is shown by its
# dotted OID, never by an English name.
ATTRIBUTE_LABELS_VI: dict[str, str] = {
    "common_name": "Tên",
    "organization_name": "Tổ chức",
    "organizational_unit_name": "Đơn vị",
    "title": "Chức danh",
    "country_name": "Quốc gia",
    "state_or_province_name": "Tỉnh/Thành phố",
    # L holds a district before the 2025 reorganisation and a commune/ward after it: "Địa
    # phương" fits both.
    "locality_name": "Địa phương",
    "email_address": "Email",
    # Vietnamese CAs put the subscriber's identifier here: "CCCD:…", "CMND:…", "HC:…",
    # "MST:…", "MNS:…" (see certificate_profile).
    "user_id": "Mã định danh",
    "serial_number": "Số serial",
    "street_address": "Địa chỉ",
    "postal_code": "Mã bưu chính",
    "telephone_number": "Điện thoại",
    "surname": "Họ",
    "given_name": "Tên riêng",
    "name": "Họ và tên",
    "initials": "Chữ viết tắt",
    "pseudonym": "Bí danh",
    "organization_identifier": "Mã số tổ chức",
    "business_category": "Loại hình tổ chức",
    "unique_identifier": "Mã định danh duy nhất",
    "domain_component": "Thành phần tên miền",
}

# Shown between the attributes of a name by vietnamese_dn. Not ", ": organisation names often
# contain commas ("CÔNG TY TNHH A, CHI NHÁNH B").
SEPARATOR = "; "


def _safe_text(text: str) -> str:
    # Certificate names are attacker-chosen: shown escaped (messages.display_text), never cut
    # (a name is compared by people against the certificate).
    return display_text(text, limit=len(text))


def _value_text(value: object) -> str:
    # Unknown attribute types arrive as asn1crypto Any; decoding may fail on hostile input,
    # and a name that cannot be decoded must still be shown, so any failure falls back to hex.
    try:
        native = value.native  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001 - any decoding failure: show the raw bytes instead
        native = None
    if isinstance(native, str):
        return _safe_text(native)
    if isinstance(native, bytes):
        return native.hex().upper()
    if native is not None and isinstance(native, int | float | bool):
        return str(native)
    try:
        return bytes(value.contents or b"").hex().upper()  # type: ignore[attr-defined]
    except Exception:  # noqa: BLE001
        return "?"


class _LooseAttribute(core.Sequence):  # type: ignore[misc]
    # AttributeTypeAndValue with the value left as whatever string type it was written in.
    # asn1crypto insists on the RFC's type for known attributes (PrintableString for
    # telephoneNumber, serialNumber, C); CAs also write UTF8String there.
    _fields = [("type", core.ObjectIdentifier), ("value", core.Any)]  # noqa: RUF012


def _attribute_pair(attribute: x509.NameTypeAndValue) -> tuple[str, str]:
    label = _attribute_label(attribute["type"])
    try:
        return label, _value_text(attribute["value"])
    except Exception:  # noqa: BLE001 - value not in its expected type: read it loosely
        return label, _value_text(_LooseAttribute.load(attribute.dump())["value"])


def _attribute_label(attribute_type: x509.NameType) -> str:
    try:
        key = attribute_type.native
    except Exception:  # noqa: BLE001
        return "?"
    return ATTRIBUTE_LABELS_VI.get(key) or str(attribute_type.dotted)


def describe_name(name: x509.Name) -> list[tuple[str, str]]:
    """The attributes of a distinguished name as ``(Vietnamese label, value)`` pairs.

    Order as encoded in the certificate (RDN sequence order; inside a multi-valued RDN the
    SET OF order, which DER sorts). Every value is a string: control and bidi-override
    characters escaped as ``\\uXXXX``, undecodable values in hex. Labels: Tên (CN), Tổ chức
    (O), Đơn vị (OU), Chức danh (title), Quốc gia (C), Tỉnh/Thành phố (ST), Địa phương (L),
    Email, Mã định danh (UID), Số serial (serialNumber), … (:data:`ATTRIBUTE_LABELS_VI`);
    any other attribute is labelled by its dotted OID. Never raises for a parsed ``Name``.
    """
    pairs: list[tuple[str, str]] = []
    try:
        rdns = list(name.chosen)
    except Exception:  # noqa: BLE001 - a malformed name describes as empty, not a crash
        return pairs
    for rdn in rdns:
        try:
            attributes = list(rdn)
        except Exception:  # noqa: BLE001
            continue
        for attribute in attributes:
            try:
                pairs.append(_attribute_pair(attribute))
            except Exception:  # noqa: BLE001 - undecodable attribute: shown, never a crash
                pairs.append(("?", "?"))
    return pairs


def vietnamese_dn(name: x509.Name) -> str:
    """A distinguished name as one line with Vietnamese labels, in certificate order, e.g.
    ``"Quốc gia: VN; Tổ chức: Ban Cơ yếu Chính phủ; Tên: RootCA chuyên dùng Chính phủ G2"``
    (see :func:`describe_name`). Empty string for an empty name."""
    return SEPARATOR.join(f"{label}: {value}" for label, value in describe_name(name))


class CertificateProfile(StrEnum):
    PERSONAL = "personal"  # chữ ký số cá nhân
    ORGANIZATION = "organization"  # chữ ký số của cơ quan, tổ chức (con dấu)
    UNKNOWN = "unknown"


PROFILE_LABELS_VI: dict[CertificateProfile, str] = {
    CertificateProfile.PERSONAL: "chữ ký số cá nhân",
    CertificateProfile.ORGANIZATION: "chữ ký số của cơ quan, tổ chức",
    CertificateProfile.UNKNOWN: "chưa xác định được chứng thư của cá nhân hay tổ chức",
}

# Identifier prefixes in UID ("PREFIX:value"); keys are upper case with Đ folded to D.
PERSONAL_ID_PREFIXES = frozenset(
    {
        "CMND",  # chứng minh nhân dân (old identity card)
        "CCCD",  # căn cước công dân / căn cước (citizen identity card)
        "HC",  # hộ chiếu (passport)
        "PID",  # personal identification number (assumption: seen with CCCD in CA tooling)
    }
)
ORGANIZATION_ID_PREFIXES = frozenset(
    {
        "MST",  # mã số thuế (tax code) — unless it is a 12-digit personal number, see below
        "MNS",  # mã số đơn vị có quan hệ với ngân sách (budget-relation unit code)
        "QD",  # số quyết định thành lập (establishment decision), written "QĐ:"
        "MDV",  # mã đơn vị (unit code)
    }
)
_PREFIXED = re.compile(r"^\s*([A-Za-zĐđ]{1,10})\s*:\s*(.*?)\s*$", re.DOTALL)
# Since 1 July 2025 an individual's tax code is their 12-digit personal identification number
# (TT 86/2024/TT-BTC); organisations keep 10-digit codes and 13-digit branch codes ("-NNN").
_PERSONAL_NUMBER = re.compile(r"^\d{12}$")


def identifiers(name: x509.Name) -> list[tuple[str, str]]:
    """The prefixed identifiers of a name's UID attributes as ``(PREFIX, value)``, e.g.
    ``[("MST", "0100686209-199"), ("CCCD", "025199009534")]``; the prefix upper-cased with
    "Đ" folded to "D" ("QĐ" → "QD"). UID values without a ``PREFIX:`` are left out."""
    found: list[tuple[str, str]] = []
    for label, value in describe_name(name):
        if label != ATTRIBUTE_LABELS_VI["user_id"]:
            continue
        match = _PREFIXED.match(value)
        if match:
            prefix = match.group(1).upper().replace("Đ", "D")
            found.append((prefix, match.group(2)))
    return found


def _norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def certificate_profile(cert: x509.Certificate) -> CertificateProfile:
    """Whether ``cert`` identifies a person or an agency/organisation (its seal).

    Returns :class:`CertificateProfile` (a ``str``: "personal", "organization", "unknown");
    :func:`profile_label` gives the Vietnamese label. Looks at the subject only; never raises.

    Rule, first match wins:

    1. **personal** when the subject identifies a person: a UID with a personal identifier
       prefix (``CMND:``, ``CCCD:``, ``HC:`` passport, ``PID:``), or a ``title`` (chức danh),
       ``pseudonym``, ``givenName`` or ``surname`` attribute. A person's certificate issued
       within an organisation also carries the organisation's ``MST:`` and ``O``; the personal
       identifier decides (e.g. "O=MobiFone IT, UID=MST:0100686209-199,
       UID=CCCD:025199009534, CN=NGUYEN HONG NHUNG" is personal).
    2. **organization** when the subject identifies the body: a UID with an organisation
       prefix (``MST:`` tax code, ``MNS:`` budget-relation code, ``QĐ:`` establishment
       decision, ``MDV:`` unit code), or a CN equal to O (after Unicode NFC normalisation,
       case folding and whitespace collapsing), or a CN that begins with the whole O followed
       by more text (e.g. "Sở Tư pháp tỉnh A (HSM)" under O "Sở Tư pháp tỉnh A").
       An ``MST:`` of exactly 12 digits is an individual's personal number used as tax code
       (TT 86/2024/TT-BTC, from 1 July 2025) and does not count as organisation evidence.
    3. **unknown** otherwise (nothing above decides it; such a certificate is reported as
       undetermined, not guessed).

    Sources and assumptions:

    - The personal/agency distinction is the glossary's (ký số cá nhân / ký số cơ quan, con
      dấu; Nghị định 30/2020 Appendix I for how each looks on a document) and TT 15/2025.
    - The UID prefixes are what Vietnamese public CAs write in issued certificates, as seen in
      subjects quoted in public code: VNPT SmartCA personal certificates ("CN=…,
      UID=CCCD:…"), FPT-CA and NC-CA company certificates ("UID=MST:…, CN=<company>,
      O=<company>"), a provincial department's seal ("UID=MST:…, UID=MNS:…, CN=Sở Y tế,
      O=Ủy ban nhân dân thành phố …"), hospital staff ("UID=CMND:…, UID=MST:…, T=…"), and a
      CA client SDK's identifier types (PERSONAL-ID, CITIZEN-IDENTITY-CARD, PASSPORT-ID,
      TAX-CODE, BUDGET-CODE, DECISION-CODE "QĐ:", UNIT-CODE "MDV:"). *Assumption*: no
      normative certificate-profile text was available to check them against; ``PID:`` is
      included on the same footing.
    - ``BHXH:`` (social insurance code) is used for persons and units alike and decides nothing.
    - *Assumption*: the Government CA (Ban Cơ yếu Chính phủ) profiles follow the same pattern
      (officials named with a title, agencies with CN equal to, or beginning with, O); no
      Government CA end-entity certificate was available to check.
    - *Assumption*: the CN-begins-with-O rule; it classifies seals whose CN adds a qualifier
      to the agency name.
    """
    try:
        subject = cert.subject
        pairs = describe_name(subject)
        ids = identifiers(subject)
    except Exception:  # noqa: BLE001 - an unreadable subject decides nothing
        return CertificateProfile.UNKNOWN
    labels = ATTRIBUTE_LABELS_VI
    personal_attributes = {labels[k] for k in ("title", "pseudonym", "given_name", "surname")}
    if any(prefix in PERSONAL_ID_PREFIXES for prefix, _ in ids) or any(
        label in personal_attributes and value.strip() for label, value in pairs
    ):
        return CertificateProfile.PERSONAL
    if any(
        prefix in ORGANIZATION_ID_PREFIXES
        and not (prefix == "MST" and _PERSONAL_NUMBER.match(value))
        for prefix, value in ids
    ):
        return CertificateProfile.ORGANIZATION
    common_names = [_norm(v) for label, v in pairs if label == labels["common_name"]]
    organizations = [_norm(v) for label, v in pairs if label == labels["organization_name"]]
    for cn in common_names:
        for org in organizations:
            if org and (cn == org or (cn.startswith(org) and not cn[len(org)].isalnum())):
                return CertificateProfile.ORGANIZATION
    return CertificateProfile.UNKNOWN


def profile_label(profile: str) -> str:
    """The Vietnamese label of a profile ("chữ ký số cá nhân", "chữ ký số của cơ quan, tổ
    chức", or the undetermined label for anything else)."""
    try:
        return PROFILE_LABELS_VI[CertificateProfile(profile)]
    except ValueError:
        return PROFILE_LABELS_VI[CertificateProfile.UNKNOWN]


def organisation_key(name: str) -> str:
    """``name`` as organisation names are compared (new user 12 item 2): Unicode NFC (a name
    typed with combining accents equals the precomposed one), case folded, whitespace runs
    collapsed to one space, trimmed. Two names are the same organisation's when their keys
    are equal; nothing fuzzier (a commune is not its province's department)."""
    return " ".join(unicodedata.normalize("NFC", name).casefold().split())


def organisation_names(name: x509.Name) -> list[str]:
    """Every organisation (O) value of ``name``, as text, in order; ``[]`` when none or
    unreadable. Never raises on a parsed name."""
    found: list[str] = []
    try:
        for rdn in name.chosen:
            for attribute in rdn:
                if attribute["type"].native == "organization_name":
                    found.append(_value_text(attribute["value"]))
    except Exception:  # noqa: BLE001 - hostile names are described, never fatal
        return found
    return [f for f in found if f.strip()]


def same_organisation(a: str, b: str) -> bool:
    """Whether ``a`` and ``b`` name the same organisation (:func:`organisation_key`)."""
    return organisation_key(a) == organisation_key(b)
