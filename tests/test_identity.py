"""Names with Vietnamese labels and the personal / agency-seal profile, on certificates built
here with the attributes Vietnamese CAs use (UID prefixes, titles, diacritics, multi-valued
RDNs)."""

from __future__ import annotations

from pathlib import Path

import pytest
from asn1crypto import x509
from cryptography import x509 as cx
from cryptography.x509.oid import NameOID, ObjectIdentifier

from signing_service.trust import load_certs
from signing_service.verification.identity import (
    ATTRIBUTE_LABELS_VI,
    PROFILE_LABELS_VI,
    CertificateProfile,
    certificate_profile,
    describe_name,
    identifiers,
    profile_label,
    vietnamese_dn,
)
from tests.support.testpki import issue_chain

REPO = Path(__file__).resolve().parent.parent

A = cx.NameAttribute
C, ST, L = NameOID.COUNTRY_NAME, NameOID.STATE_OR_PROVINCE_NAME, NameOID.LOCALITY_NAME
ORG, OU, CN = NameOID.ORGANIZATION_NAME, NameOID.ORGANIZATIONAL_UNIT_NAME, NameOID.COMMON_NAME
T, UID, EMAIL = NameOID.TITLE, NameOID.USER_ID, NameOID.EMAIL_ADDRESS
SERIAL = NameOID.SERIAL_NUMBER


def name(*rdns: A | list[A]) -> cx.Name:
    """A name from attributes in order; a list is one multi-valued RDN."""
    return cx.Name([cx.RelativeDistinguishedName(r if isinstance(r, list) else [r]) for r in rdns])


def cert_for(subject: cx.Name) -> x509.Certificate:
    # A real certificate, issued by a test CA, so the subject is read back from DER exactly as
    # the verifier reads a signer's certificate.
    return issue_chain(leaf_name=subject, leaf_key_kind="ec").leaf


def test_labels_in_certificate_order_with_diacritics() -> None:
    subject = name(
        A(C, "VN"),
        A(ST, "Hà Nội"),
        A(L, "Phường Ba Đình"),
        A(ORG, "Sở Tư pháp thành phố Hà Nội"),
        A(OU, "Phòng Hành chính tư pháp"),
        A(T, "Phó Giám đốc"),
        A(CN, "Nguyễn Thị Ánh Tuyết"),
        A(UID, "CCCD:001099000001"),
        A(EMAIL, "tuyet.nt@hanoi.gov.vn"),
        A(SERIAL, "VN-0123-DK"),
    )
    described = describe_name(cert_for(subject).subject)
    assert described == [
        ("Quốc gia", "VN"),
        ("Tỉnh/Thành phố", "Hà Nội"),
        ("Địa phương", "Phường Ba Đình"),
        ("Tổ chức", "Sở Tư pháp thành phố Hà Nội"),
        ("Đơn vị", "Phòng Hành chính tư pháp"),
        ("Chức danh", "Phó Giám đốc"),
        ("Tên", "Nguyễn Thị Ánh Tuyết"),
        ("Mã định danh", "CCCD:001099000001"),
        ("Email", "tuyet.nt@hanoi.gov.vn"),
        ("Số serial", "VN-0123-DK"),
    ]
    line = vietnamese_dn(cert_for(subject).subject)
    assert line.startswith("Quốc gia: VN; Tỉnh/Thành phố: Hà Nội; Địa phương: Phường Ba Đình;")
    assert "Chức danh: Phó Giám đốc; Tên: Nguyễn Thị Ánh Tuyết" in line


def test_order_follows_the_certificate_not_a_canonical_order() -> None:
    # Many Vietnamese CAs encode CN first and C last.
    subject = name(A(CN, "CÔNG TY TNHH ABC"), A(ORG, "CÔNG TY TNHH ABC"), A(C, "VN"))
    assert [label for label, _ in describe_name(cert_for(subject).subject)] == [
        "Tên",
        "Tổ chức",
        "Quốc gia",
    ]


def test_multi_valued_rdn_keeps_every_value() -> None:
    subject = name(
        A(C, "VN"),
        [A(UID, "MST:0100686209-199"), A(UID, "CCCD:025199009534")],
        [A(CN, "Nguyễn Hồng Nhung"), A(ORG, "MobiFone IT")],
    )
    described = describe_name(cert_for(subject).subject)
    assert len(described) == 5
    assert described[0] == ("Quốc gia", "VN")
    # Inside one RDN, DER sorts the SET OF: compare as sets, but each RDN stays in place.
    assert set(described[1:3]) == {
        ("Mã định danh", "MST:0100686209-199"),
        ("Mã định danh", "CCCD:025199009534"),
    }
    assert set(described[3:]) == {("Tên", "Nguyễn Hồng Nhung"), ("Tổ chức", "MobiFone IT")}
    assert sorted(identifiers(cert_for(subject).subject)) == [
        ("CCCD", "025199009534"),
        ("MST", "0100686209-199"),
    ]


def test_unknown_attributes_fall_back_to_the_dotted_oid() -> None:
    subject = name(
        A(ObjectIdentifier("2.5.4.20"), "0901790767"),  # telephoneNumber
        A(ObjectIdentifier("1.3.6.1.4.1.99999.1"), "giá trị lạ"),
        A(CN, "Trần Văn Bình"),
    )
    assert describe_name(cert_for(subject).subject) == [
        ("Điện thoại", "0901790767"),
        ("1.3.6.1.4.1.99999.1", "giá trị lạ"),
        ("Tên", "Trần Văn Bình"),
    ]


def test_values_that_do_not_decode_are_shown_not_raised() -> None:
    from asn1crypto import core

    octets = x509.NameTypeAndValue(
        {"type": "1.3.6.1.4.1.99999.2", "value": core.OctetString(b"\x01\x02")}
    )
    cn = x509.NameTypeAndValue(
        {"type": "common_name", "value": x509.DirectoryString(name="utf8_string", value="x")}
    )
    rdns = [x509.RelativeDistinguishedName([octets]), x509.RelativeDistinguishedName([cn])]
    der = x509.Name({"": x509.RDNSequence(rdns)}).dump()
    assert der.endswith(b"\x0c\x01x")
    hostile = x509.Name.load(der[:-1] + b"\xff")  # a UTF8String that is not UTF-8
    assert describe_name(hostile) == [("1.3.6.1.4.1.99999.2", "0102"), ("Tên", "FF")]


def test_no_english_labels_on_the_pinned_government_ca_root() -> None:
    (root,) = load_certs(REPO / "certs/trust/vn/vgca-rootca-g2.pem")
    assert vietnamese_dn(root.subject) == (
        "Quốc gia: VN; Tổ chức: Ban Cơ yếu Chính phủ; Tên: RootCA chuyên dùng Chính phủ G2"
    )
    for path in sorted((REPO / "certs/trust/vn").glob("*.pem")):
        (cert,) = load_certs(path)
        line = vietnamese_dn(cert.subject)
        for english in ("Common Name", "Organization", "Country", "Organizational Unit"):
            assert english not in line, (path.name, line)


def test_control_characters_cannot_forge_report_lines() -> None:
    subject = name(A(CN, "Nguyễn Văn A\nKết luận: HỢP LỆ"), A(ORG, "Tổ chức \u202eABC"))
    line = vietnamese_dn(cert_for(subject).subject)
    assert "\n" not in line and "\u202e" not in line
    assert "Nguyễn Văn A\\u000aKết luận: HỢP LỆ" in line
    assert "\\u202e" in line


def test_every_label_is_vietnamese() -> None:
    english = {"Common Name", "Organization", "Title", "Country", "Locality", "Serial Number"}
    assert not english & set(ATTRIBUTE_LABELS_VI.values())


PERSONAL, ORGANIZATION, UNKNOWN = (
    CertificateProfile.PERSONAL,
    CertificateProfile.ORGANIZATION,
    CertificateProfile.UNKNOWN,
)


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        # VNPT SmartCA-style personal certificate.
        (
            name(A(C, "VN"), A(ST, "Quảng Nam"), A(CN, "Bùi Sĩ Tuấn"), A(UID, "CCCD:038093015572")),
            PERSONAL,
        ),
        (name(A(CN, "Lê Văn Cường"), A(UID, "CMND:079073009568")), PERSONAL),
        (name(A(CN, "Trần Thị Hoa"), A(UID, "HC:B1234567")), PERSONAL),
        # A person inside an organisation: the organisation's tax code does not make it a seal.
        (
            name(
                A(C, "VN"),
                A(ORG, "MobiFone IT"),
                [A(UID, "MST:0100686209-199"), A(UID, "CCCD:025199009534")],
                A(CN, "NGUYEN HONG NHUNG"),
            ),
            PERSONAL,
        ),
        # An official named by title only (the Government CA pattern, and the dev officer).
        (
            name(A(ORG, "Sở Tư pháp tỉnh Demo A"), A(T, "Phó Giám đốc"), A(CN, "Nguyễn Văn An")),
            PERSONAL,
        ),
        (name(A(NameOID.SURNAME, "Phạm"), A(NameOID.GIVEN_NAME, "Quốc Bảo")), PERSONAL),
        (name(A(NameOID.PSEUDONYM, "Bảo P."), A(ORG, "Bảo P.")), PERSONAL),
        # Company certificate: CN equal to O, tax code.
        (
            name(
                A(UID, "MST:0319303270"),
                A(CN, "CÔNG TY TNHH ANSTAR SOLUTIONS"),
                A(ORG, "CÔNG TY TNHH ANSTAR SOLUTIONS"),
            ),
            ORGANIZATION,
        ),
        # An agency seal whose CN is not its O: tax and budget-relation codes decide.
        (
            name(
                A(EMAIL, "syt@danang.gov.vn"),
                A(UID, "MST:0400260612"),
                A(UID, "MNS:1047665"),
                A(CN, "Sở Y tế"),
                A(ORG, "Ủy ban nhân dân thành phố Đà Nẵng"),
                A(L, "Đà Nẵng"),
                A(C, "VN"),
            ),
            ORGANIZATION,
        ),
        (name(A(CN, "Trường Tiểu học Thử nghiệm"), A(UID, "QĐ:123/QĐ-UBND")), ORGANIZATION),
        # CN equal to O, differing only in Unicode normalisation and case.
        (name(A(ORG, "UBND xã Demo B"), A(CN, "ubnd  xa\u0303 demo b")), ORGANIZATION),
        # The dev HSM seal: CN is the agency name plus a qualifier.
        (
            name(A(ORG, "Sở Tư pháp tỉnh Demo A"), A(CN, "Sở Tư pháp tỉnh Demo A (HSM)")),
            ORGANIZATION,
        ),
        # Nothing decides.
        (
            name(A(ORG, "Sở Tư pháp tỉnh Demo A"), A(CN, "Chứng thư đã hết hạn (thử nghiệm)")),
            UNKNOWN,
        ),
        (name(A(ORG, "Sở Tư pháp tỉnh Demo A"), A(CN, "Sở Tư pháp tỉnh Demo AB")), UNKNOWN),
        # A 12-digit tax code is an individual's personal number (TT 86/2024): not a seal.
        (name(A(CN, "Hoàng Văn Em"), A(UID, "MST:001099000001")), UNKNOWN),
        # Social insurance codes are used by people and units alike.
        (name(A(CN, "Đơn vị X"), A(UID, "BHXH:0123456789")), UNKNOWN),
        (name(A(C, "VN")), UNKNOWN),
    ],
)
def test_certificate_profile(subject: cx.Name, expected: CertificateProfile) -> None:
    profile = certificate_profile(cert_for(subject))
    assert profile is expected
    assert profile == expected.value  # a plain string for JSON reports
    assert profile_label(profile) == PROFILE_LABELS_VI[expected]


def test_profile_labels() -> None:
    assert profile_label("personal") == "chữ ký số cá nhân"
    assert profile_label("organization") == "chữ ký số của cơ quan, tổ chức"
    assert profile_label("something else") == PROFILE_LABELS_VI[CertificateProfile.UNKNOWN]
