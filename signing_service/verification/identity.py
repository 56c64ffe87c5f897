"""Placeholder: replaced by the identity module (Vietnamese name labels, certificate profile)."""

from __future__ import annotations

from asn1crypto import x509

LABELS = {
    "common_name": "Tên",
    "organization_name": "Tổ chức",
    "organizational_unit_name": "Đơn vị",
    "title": "Chức danh",
    "country_name": "Quốc gia",
    "state_or_province_name": "Tỉnh/Thành phố",
    "locality_name": "Địa phương",
}


def vietnamese_dn(name: x509.Name) -> str:
    parts = []
    for rdn in name.chosen:
        for atv in rdn:
            key = atv["type"].native
            parts.append(f"{LABELS.get(key, key)}: {atv['value'].native}")
    return ", ".join(parts)


def certificate_profile(cert: x509.Certificate) -> str:
    return "unknown"


PROFILE_LABELS = {"personal": "chữ ký số cá nhân", "organization": "chữ ký số cơ quan, tổ chức"}
