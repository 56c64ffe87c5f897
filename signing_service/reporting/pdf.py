"""The printable verification report: an A4 PDF in Vietnamese, sealed by the service (issue 11).

:func:`render_report_pdf` turns a verification report (the JSON of
:func:`signing_service.services.verification.verify_document_json`, with the ``registry``
section when there is one) into the plain-Vietnamese view of
:func:`signing_service.web.present.present`, typesets it with typst (fonts embedded: Liberation
Serif, metric-compatible with the Times New Roman of administrative documents, else typst's own
Libertinus Serif), then seals it with the service's own key as a PAdES B-T signature (ETSI EN
319 142-1): a citizen can file the report as evidence of what was checked, when and by whom,
and anyone can check that the report itself was not altered (the EU DSS demonstration gives an
unsigned report).

The seal key is ``SIGNING_SERVICE_REPORT_SEAL_KEY`` (``<agency code>/<key name>`` of the key
registry, opened like any registered key); development without it seals with the dev PKI's
``service-seal``; production without it answers ``REPORT_NOT_CONFIGURED`` (503). The timestamp
comes from ``SIGNING_SERVICE_REPORT_TSA`` (a name of the operator's TSA allowlist), else the
default TSA.

Injection: every string of the report that came from the verified PDF (signer names, field
names, messages quoting them) is attacker-controlled. The template (``report.typ``) is fixed;
the data reaches it only as JSON through ``sys.inputs``, and typst shows a string value
verbatim, never as markup: nothing a signer writes can add text, links or code to the report.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from signing_service import errors
from signing_service._async import run_sync
from signing_service.web.present import (
    COVERAGE_TEXTS,
    INDICATION_TEXTS,
    REVOCATION_STATUS_TEXTS,
)

if TYPE_CHECKING:
    from signing_service.services.container import Services
    from signing_service.signing.keys.base import LoadedKey

log = logging.getLogger(__name__)

TEMPLATE = Path(__file__).with_name("report.typ")
# Liberation Serif/Mono (Debian fonts-liberation2, which `make system-deps` installs; the
# stamps use the same family, signing/appearance.py). Without it: typst's embedded fonts.
FONT_DIRS = (
    Path("/usr/share/fonts/truetype/liberation2"),
    Path("/usr/share/fonts/truetype/liberation"),
)
SERIF_FONTS = ("Liberation Serif", "Libertinus Serif")
MONO_FONTS = ("Liberation Mono", "DejaVu Sans Mono")

TITLE = "BÁO CÁO KẾT QUẢ XÁC MINH CHỮ KÝ SỐ"
MAX_FILE_NAME = 200  # characters of the uploaded file's name shown
SEAL_REASON = "Báo cáo kết quả xác minh chữ ký số"
# The box around the overall state: its colour repeats what the words say.
STATE_COLOURS = {
    "valid": ("#1b6e20", "#eef7ee"),
    "invalid": ("#b3261e", "#fdeeee"),
    "indeterminate": ("#8a5a00", "#fff6e0"),
}
LABELS = {
    "checked": "Thông tin kiểm tra",
    "comparison": "Đối chiếu với mã QR",
    "registry": "Đối chiếu với sổ đăng ký văn bản đã ban hành",
    "problems": "Vấn đề của tệp",
    "warnings": "Điều cần lưu ý",
    "checks": "Những gì đã được kiểm tra",
    "technical": "Chi tiết kỹ thuật",
    "why": "Vì sao điều này quan trọng:",
}


def report_file_name(report: dict[str, Any]) -> str:
    """The report's file name, the same on the page's link and on ``format=pdf``:
    ``bao-cao-xac-minh-<first 16 hex of the file's SHA-256>.pdf`` (ours, never the uploaded
    name: nothing of the caller's reaches the header)."""
    digest = str((report.get("document") or {}).get("sha256") or "")[:16]
    if not all(c in "0123456789abcdef" for c in digest):
        digest = ""
    return f"bao-cao-xac-minh-{digest}.pdf" if digest else "bao-cao-xac-minh.pdf"


def _fonts() -> list[str]:
    return [str(d) for d in FONT_DIRS if d.is_dir()]


def _registry_rows(registry: dict[str, Any]) -> list[list[Any]]:
    rows: list[list[Any]] = []
    if not registry.get("found"):
        return rows
    agency = registry.get("agency_name")
    if registry.get("agency_code"):
        agency = f"{agency or ''} ({registry['agency_code']})".strip()
    rows += [
        ["Cơ quan ban hành", agency],
        ["Loại văn bản", registry.get("kind_label")],
        ["Số, ký hiệu văn bản", registry.get("document_number")],
        ["Mã hồ sơ", registry.get("dossier_code")],
        ["Mã kết quả", registry.get("result_code")],
        ["Ngày ban hành", registry.get("issued_at")],
        ["Tình trạng", registry.get("status_label")],
    ]
    if registry.get("status_changed_at"):
        rows.append(["Thời điểm thay đổi tình trạng", registry.get("status_changed_at")])
    if registry.get("reason"):
        rows.append(["Lý do", registry.get("reason")])
    if registry.get("superseded_by_link") or registry.get("superseded_by_id"):
        replacement = registry.get("superseded_by_link") or registry["superseded_by_id"]
        if registry.get("superseded_by_status_label"):
            replacement += f" ({registry['superseded_by_status_label']})"
        rows.append(["Được thay thế bởi", replacement])
    if registry.get("signed_further_by_link") or registry.get("signed_further_by_id"):
        rows.append(
            [
                "Đã được ký tiếp trong văn bản",
                registry.get("signed_further_by_link") or registry["signed_further_by_id"],
            ]
        )
    rows.append(["Mã tra cứu", registry.get("public_id")])
    rows.append(["Địa chỉ tra cứu", registry.get("link")])
    return rows


# The technical appendix: Vietnamese labels, the verifier's codes kept in brackets for an
# expert (docs/verification-report.md) — never an English word as the value (new user 14).
REVOCATION_SOURCES = {"document": "có sẵn trong tài liệu", "fetched": "tra cứu trực tuyến"}
# The codes' words are the page's (web/present.py), so the report and the page never
# explain one code two ways.
INDICATIONS = INDICATION_TEXTS
COVERAGES = COVERAGE_TEXTS
REVOCATION_STATUSES = REVOCATION_STATUS_TEXTS
TIMESTAMP_TYPES = {"signature": "gắn với chữ ký", "document": "gắn với tài liệu"}
CHECK_NAMES = {
    "integrity": "Toàn vẹn nội dung",
    "modifications": "Thay đổi sau khi ký",
    "trust": "Chuỗi chứng thư tin cậy",
    "revocation": "Tình trạng thu hồi",
    "timestamp": "Dấu thời gian",
    "algorithms": "Thuật toán",
}
CHECK_STATUSES = {"PASSED": "đạt", "FAILED": "không đạt", "INDETERMINATE": "chưa xác định"}


def _coded(words: dict[str, str], code: Any) -> str | None:
    """``code`` in words, the code itself in brackets (unknown codes shown as they are)."""
    if code is None or code == "":
        return None
    said = words.get(str(code))
    return f"{said} ({code})" if said else str(code)


def _level_text(level: str | None) -> str | None:
    """``B-T`` → "PAdES B-T"; ``PKCS7-T`` (an adbe.pkcs7.* signature) says it is not PAdES;
    ``E-T`` (extended profile) says it is not a baseline level."""
    if not level:
        return level
    if level.startswith("PKCS7-"):
        return f"{level} (định dạng PKCS#7 của Adobe, không thuộc các mức PAdES)"
    if level.startswith("E-"):
        return f"{level} (PAdES mở rộng, không đạt yêu cầu của các mức PAdES cơ bản)"
    return f"PAdES {level}"


def _technical_rows(technical: dict[str, Any]) -> list[list[Any]]:
    indication = _coded(INDICATIONS, technical.get("indication"))
    if indication and technical.get("sub_indication"):
        indication += f" / {technical['sub_indication']}"
    rows: list[list[Any]] = [
        ["Tên trường chữ ký trong tệp", technical.get("field")],
        ["Mức chữ ký", _level_text(technical.get("level"))],
        ["Kết luận (ETSI EN 319 102-1)", indication],
        ["Chủ thể chứng thư", technical.get("subject")],
        ["Tổ chức cấp chứng thư", technical.get("issuer")],
        ["Số hiệu chứng thư", technical.get("serial_number")],
        ["SHA-256 của chứng thư", technical.get("certificate_sha256")],
        [
            "Thuật toán",
            " / ".join(
                str(x)
                for x in (technical.get("md_algorithm"), technical.get("signature_algorithm"))
                if x
            ),
        ],
        ["Phạm vi được ký", _coded(COVERAGES, technical.get("coverage"))],
        ["Thời điểm kiểm tra chứng thư", technical.get("validation_time")],
    ]
    anchor = technical.get("trust_anchor")
    if isinstance(anchor, dict):
        rows.append(["Chứng thư gốc tin cậy", f"{anchor.get('name')} ({anchor.get('kind_label')})"])
    chain = [e.get("subject") for e in technical.get("chain") or [] if isinstance(e, dict)]
    if chain:
        rows.append(["Chuỗi chứng thư", " → ".join(str(x) for x in chain if x)])
    for entry in technical.get("revocation_data") or []:
        if isinstance(entry, dict):
            source = REVOCATION_SOURCES.get(str(entry.get("source")), entry.get("source"))
            rows.append(
                [
                    f"Dữ liệu thu hồi {entry.get('type')} ({source})",
                    "; ".join(
                        str(x)
                        for x in (
                            _coded(REVOCATION_STATUSES, entry.get("status")),
                            entry.get("issuer"),
                            entry.get("issued_at"),
                        )
                        if x
                    ),
                ]
            )
    for entry in technical.get("timestamps") or []:
        if isinstance(entry, dict):
            kind = TIMESTAMP_TYPES.get(str(entry.get("type")), entry.get("type"))
            rows.append(
                [
                    f"Dấu thời gian ({kind})",
                    "; ".join(
                        str(x)
                        for x in (entry.get("time"), entry.get("authority"), entry.get("code"))
                        if x
                    ),
                ]
            )
    checks = [
        f"{CHECK_NAMES.get(name, name)}: "
        f"{CHECK_STATUSES.get(str(c.get('status')), c.get('status'))} ({c.get('code')})"
        for name, c in (technical.get("checks") or {}).items()
        if isinstance(c, dict)
    ]
    if checks:
        rows.append(["Kết quả từng kiểm tra (mã)", "; ".join(checks)])
    return [row for row in rows if row[1] not in (None, "")]


def _for_report(text: Any) -> Any:
    """A sentence of the page made for the PDF: the page says "trang này" (this web page); the
    report is not a page (new user 13)."""
    if not isinstance(text, str):
        return text
    return text.replace("Trang này", "Báo cáo này").replace("trang này", "báo cáo này")


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


# The system's name when SIGNING_SERVICE_ISSUING_SYSTEM keeps its default (the project's
# English name, meant for QR codes' machine field): the report names it in Vietnamese.
DEFAULT_SYSTEM_NAME = "Dịch vụ xác minh chữ ký số"


def system_name(services: Services) -> str:
    """The verifying system's name as the report shows it: ``SIGNING_SERVICE_ISSUING_SYSTEM``
    when the operator set it, else :data:`DEFAULT_SYSTEM_NAME`."""
    from signing_service.settings import Settings

    configured = services.settings.issuing_system
    default = Settings.model_fields["issuing_system"].default
    return DEFAULT_SYSTEM_NAME if configured == default else configured


def _rows(pairs: list[list[Any]]) -> list[list[str | None]]:
    # Rows without a value are left out: a report of what is known, not of empty fields.
    return [[label, _text(value)] for label, value in pairs if value not in (None, "")]


def _verdict_note(view: dict[str, Any]) -> str | None:
    """Why the overall state differs from the signatures' technical verdict (new user 16)."""
    if view["state"] == view["signatures_state"]:
        return None
    reasons = []
    registry = view.get("registry") or {}
    if registry.get("found") and registry.get("status") in ("revoked", "superseded"):
        reasons.append("văn bản đã bị cơ quan ban hành thu hồi hoặc thay thế (sổ đăng ký)")
    elif registry.get("found") and registry.get("matched") == "revision":
        reasons.append("tệp đã được thêm nội dung sau khi cơ quan ban hành cấp (sổ đăng ký)")
    comparison = view.get("comparison") or {}
    if comparison and not comparison.get("matches"):
        reasons.append("tệp không khớp với văn bản mà mã QR chỉ tới")
    return (
        "Kết luận kỹ thuật chỉ xét chữ ký số; kết quả chung ở đầu báo cáo còn xét "
        + (" và ".join(reasons) if reasons else "sổ đăng ký văn bản và mã QR")
        + "."
    )


def report_data(
    services: Services,
    report: dict[str, Any],
    *,
    filename: str | None = None,
    seal_name: str | None = None,
    expected_public_id: str | None = None,
) -> dict[str, Any]:
    """What the template shows, as JSON-ready data: the plain-Vietnamese view of ``report``
    (:func:`signing_service.web.present.present`, with the QR comparison when the file was
    uploaded from a QR link's page, ``expected_public_id``: the same state and lead as the
    page, red team F9) plus what was checked (the file's name and SHA-256, when, by which
    system) and the seal's note. Only strings, lists and dicts: the template inserts each
    string verbatim."""
    from signing_service.verification.messages import display_text
    from signing_service.web.present import present

    view = present(report, expected_public_id=expected_public_id).to_dict()
    system = system_name(services)
    # The uploaded name is the caller's: control and bidi characters shown escaped, bounded.
    filename = display_text(filename, MAX_FILE_NAME) if filename else None
    document = view.get("document") or {}
    colour, fill = STATE_COLOURS.get(view["state"], STATE_COLOURS["indeterminate"])
    technical = view.get("technical") or {}
    verdict = technical.get("verdict")
    checked: list[list[Any]] = [
        ["Tên tệp", filename],
        ["Mã băm SHA-256 của tệp", document.get("sha256")],
        [
            "Dung lượng",
            f"{document['size']:,} byte".replace(",", ".") if document.get("size") else None,
        ],
        ["Thời điểm xác minh", view.get("validated_at")],
        ["Hệ thống xác minh", system],
        ["Số chữ ký / dấu thời gian", f"{view['signature_count']} / {view['timestamp_count']}"],
        ["Kết luận kỹ thuật về chữ ký số", _coded(INDICATIONS, verdict)],
        ["Vì sao khác kết quả chung", _verdict_note(view)],
    ]
    registry = view.get("registry")
    comparison = view.get("comparison")
    signatures = []
    for i, sig in enumerate(view.get("signatures") or [], 1):
        rows = [
            ["Loại", sig.get("kind_label")],
            ["Tên", sig.get("name")],
            ["Chức danh", sig.get("title")],
            ["Cơ quan, tổ chức", sig.get("organisation")],
            ["Đơn vị", sig.get("unit")],
            ["Thời điểm ký", sig.get("signed_at")],
            ["Căn cứ thời điểm ký", sig.get("time_proof")],
            ["Tổ chức cấp chứng thư", sig.get("issuer")],
            ["Loại chứng thư", sig.get("certificate_type")],
            [
                "Hiệu lực chứng thư",
                f"{sig.get('valid_from') or '?'} – {sig.get('valid_to') or '?'}"
                if sig.get("valid_from") or sig.get("valid_to")
                else None,
            ],
        ]
        signatures.append(
            {
                "heading": f"{i}. {sig.get('kind_label')}",
                "state_word": "Kết quả",
                "state_label": _text(sig.get("state_label")),
                "summary": _for_report(_text(sig.get("summary"))) or "",
                "rows": _rows(rows),
                "checks": [
                    {
                        "label": _text(c.get("label")),
                        "status_label": _text(c.get("status_label")),
                        "text": _for_report(_text(c.get("text"))) or "",
                    }
                    for c in sig.get("checks") or []
                ],
                "warnings": [
                    {
                        "text": _for_report(_text(w.get("text"))) or "",
                        "why": _for_report(_text(w.get("why"))) or "",
                    }
                    for w in sig.get("warnings") or []
                ],
                "technical": _rows(_technical_rows(sig.get("technical") or {})),
            }
        )
    return {
        "title": TITLE,
        "issuer": system,
        "fonts": list(SERIF_FONTS),
        "mono_fonts": list(MONO_FONTS),
        "state_word": "Kết quả",
        "state_label": view["state_label"],
        "state_colour": colour,
        "state_fill": fill,
        "lead": _for_report(view["lead"]),
        "labels": LABELS,
        "checked": _rows(checked),
        "comparison": {
            "text": _text(comparison.get("text")) or "",
            "rows": _rows(
                [
                    ["Mã tra cứu của mã QR", expected_public_id],
                    ["Kết quả đối chiếu", "Khớp" if comparison.get("matches") else "Không khớp"],
                ]
            ),
        }
        if comparison
        else None,
        "registry": {
            "text": _for_report(_text(registry.get("text"))) or "",
            "why": _for_report(_text(registry.get("why"))) or "",
            "rows": _rows(_registry_rows(registry)),
        }
        if registry
        else None,
        "problems": [
            {
                "text": _for_report(_text(w.get("text"))) or "",
                "why": _for_report(_text(w.get("why"))) or "",
            }
            for w in view.get("problems") or []
        ],
        "warnings": [
            {
                "text": _for_report(_text(w.get("text"))) or "",
                "why": _for_report(_text(w.get("why"))) or "",
            }
            for w in view.get("warnings") or []
        ],
        "signatures": signatures,
        "footer": f"{system} — báo cáo xác minh tệp SHA-256 "
        f"{str(document.get('sha256') or '')[:16]}…",
        "page_word": "Trang",
        "seal_note": (
            f"Báo cáo này do {system} lập tự động"
            + (f" lúc {view['validated_at']}" if view.get("validated_at") else "")
            + (f" và được ký số bằng con dấu số của dịch vụ ({seal_name})" if seal_name else "")
            + ", có dấu thời gian. Mọi thay đổi nội dung báo cáo sau khi ký sẽ làm chữ ký "
            "không còn hợp lệ: có thể kiểm tra lại báo cáo bằng chính dịch vụ xác minh này. "
            "Báo cáo xác nhận kết quả kiểm tra tệp có mã băm SHA-256 ghi ở trên tại thời điểm "
            "xác minh; nó không thay thế văn bản được xác minh."
        ),
    }


def typeset(data: dict[str, Any]) -> bytes:
    """The unsealed A4 PDF of ``data`` (from :func:`report_data`), fonts embedded (PDF/A-2b:
    an archival format for a report meant to be filed). Raises :class:`RuntimeError` when
    typst fails (a bug of the template, never of the data)."""
    import typst

    try:
        pdf = typst.compile(
            str(TEMPLATE),
            font_paths=_fonts(),
            ignore_system_fonts=True,
            sys_inputs={"data": json.dumps(data, ensure_ascii=False)},
            pdf_standards=["a-2b"],
        )
    except Exception as e:  # noqa: BLE001 - typst raises its own types, or RuntimeError
        raise RuntimeError(f"typst failed: {e}") from None
    assert isinstance(pdf, bytes)
    return _without_suspects(pdf)


def _without_suspects(pdf: bytes) -> bytes:
    """``pdf`` with ``/Suspects`` dropped from the catalog's ``/MarkInfo``: typst writes
    ``/Suspects false`` (the default, ISO 32000-1 §14.7.1) and poppler reports "Syntax Error:
    Suspects object is wrong type" on every report, alarming for evidence (new user 12)."""
    import io

    import pikepdf

    with pikepdf.open(io.BytesIO(pdf)) as document:
        mark_info = document.Root.get("/MarkInfo")
        if not isinstance(mark_info, pikepdf.Dictionary) or "/Suspects" not in mark_info:
            return pdf
        del mark_info["/Suspects"]
        out = io.BytesIO()
        # No object streams: the file stays readable by PDF/A-2b tools as typst wrote it.
        document.save(out, object_stream_mode=pikepdf.ObjectStreamMode.preserve)
        return out.getvalue()


@dataclass(frozen=True)
class ReportSeal:
    """The service's seal for reports: the opened key and the URL of its TSA."""

    key: LoadedKey
    tsa_url: str


_dev_lock = threading.Lock()


def report_seal(services: Services) -> ReportSeal:
    """The key the service seals reports with, and its TSA.

    ``SIGNING_SERVICE_REPORT_SEAL_KEY`` names an active signing key of the key registry
    (PKCS#12, PKCS#11 or remote); development without it uses the dev PKI's ``service-seal``.
    Raises :class:`errors.ReportNotConfigured` (503) when neither exists or the named key is
    not an active signing key, the key source's error (``SIGNING_KEY_UNAVAILABLE``…) when it
    cannot be opened, :class:`errors.TimestampUnavailable` when no TSA is configured."""
    from signing_service.services import allowlists

    settings = services.settings
    key = seal_key(services)
    try:
        tsa_url = allowlists.tsa_url(services, settings.report_tsa)
    except errors.TimestampUnavailable:
        raise errors.TimestampUnavailable(
            "Không có máy chủ dấu thời gian nào được cấu hình cho báo cáo xác minh "
            "(SIGNING_SERVICE_REPORT_TSA hoặc SIGNING_SERVICE_TSAS)."
        ) from None
    return ReportSeal(key=key, tsa_url=tsa_url)


def seal_key(services: Services) -> LoadedKey:
    """The service's own seal key (reports, evidence packages): the registered key
    ``SIGNING_SERVICE_REPORT_SEAL_KEY`` names, or in development the dev PKI's
    ``service-seal``. Raises :class:`errors.ReportNotConfigured` (503) as :func:`report_seal`."""
    if services.settings.report_seal_key:
        return _registered_seal(services)
    return _dev_seal(services)


def _registered_seal(services: Services) -> LoadedKey:
    from sqlalchemy import select

    from signing_service.services.keys import SIGNING_KINDS, open_signing_key
    from signing_service.store.models import Agency, SigningKey

    reference = services.settings.report_seal_key or ""
    agency_code, _, name = reference.partition("/")
    with services.db.transaction() as session:
        found = session.execute(
            select(SigningKey, Agency)
            .join(Agency, Agency.id == SigningKey.agency_id)
            .where(
                Agency.code == agency_code,
                SigningKey.name == name,
                SigningKey.disabled_at.is_(None),
            )
        ).first()
    if found is None or found[0].kind not in SIGNING_KINDS:
        log.error("report seal key %s is not an active signing key", reference)
        raise errors.ReportNotConfigured(
            f"Khóa con dấu báo cáo {reference} (SIGNING_SERVICE_REPORT_SEAL_KEY) không có trong "
            "các khóa ký đang hoạt động; báo cáo PDF tạm thời không lập được, kết quả xác minh "
            "vẫn có ở dạng JSON."
        )
    row, agency = found
    return open_signing_key(services, agency, row)


def _dev_seal(services: Services) -> LoadedKey:
    pki = services.dev_pki
    if services.settings.is_production or pki is None:
        raise errors.ReportNotConfigured()
    from signing_service.pki.dev import SERVICE_SEAL
    from signing_service.signing.keys.pkcs12 import load_pkcs12_file

    # Opened once per process (a PKCS#12 parse costs tens of milliseconds).
    with _dev_lock:
        cached = services._lazy.get("report_dev_seal")
        if cached is None:
            passphrase = services.settings.key_passphrase.get_secret_value().encode()
            cached = load_pkcs12_file(pki.p12_path(SERVICE_SEAL), passphrase)
            services._lazy["report_dev_seal"] = cached
    return cached  # type: ignore[return-value]


def seal_pdf(services: Services, pdf: bytes, seal: ReportSeal) -> bytes:
    """``pdf`` signed with the service's seal at PAdES B-T (invisible signature, the TSA's
    token checked before it is embedded), after the checks every signature of the service
    passes (TT 15/2025 Art. 5: validity, key usage, algorithm, chain, revocation). Raises the
    signing flow's own errors (``SIGNER_CERT_REVOKED``, ``TIMESTAMP_UNAVAILABLE``…)."""
    import requests
    from pyhanko.sign.general import SigningError
    from pyhanko.sign.timestamps import TimestampRequestError

    from signing_service.services.signing import (
        check_signer,
        checked_timestamper,
        timestamp_error,
        timestamp_unavailable,
    )
    from signing_service.signing.engine import SignOptions, TimestampError, async_sign_pdf
    from signing_service.signing.keys.base import KeySourceError
    from signing_service.signing.levels import SignatureLevel
    from signing_service.signing.tsa import TimestampCheckFailure

    options = SignOptions(level=SignatureLevel.B_T, reason=SEAL_REASON)
    timestamper = checked_timestamper(services, seal.tsa_url)

    async def sign() -> bytes:
        await check_signer(services, seal.key.signing_cert, seal.key.chain)
        return await async_sign_pdf(pdf, seal.key, options, timestamper=timestamper)

    try:
        return run_sync(sign())
    except TimestampCheckFailure as failure:
        raise timestamp_error(services, failure) from None
    except (TimestampError, TimestampRequestError, requests.RequestException):
        raise timestamp_unavailable(services) from None
    except KeySourceError as e:
        from signing_service.services.keys import key_error

        raise key_error(e) from None
    except SigningError as e:
        log.warning("report seal failed: %s", type(e).__name__)
        raise errors.SigningFailed("Không ký được báo cáo xác minh.") from None


def render_report_pdf(
    services: Services,
    report: dict[str, Any],
    *,
    filename: str | None = None,
    expected_public_id: str | None = None,
) -> bytes:
    """The sealed A4 PDF report of verification ``report`` (the verifier's JSON as a dict,
    with its ``registry`` section when present), in Vietnamese, fonts embedded, signed PAdES
    B-T with the service's seal and timestamped. ``filename``: the verified file's name as
    uploaded (shown, never interpreted). ``expected_public_id``: the registry id of the QR
    link the file was uploaded from (the page's comparison, shown in the report).

    Blocking (typesetting ~0.1 s, a signature and a TSA round trip): call it from a worker
    thread. Raises :class:`errors.ReportNotConfigured` (503) when the service has no report
    seal, and the seal's own errors (:func:`report_seal`, :func:`seal_pdf`)."""
    seal = report_seal(services)
    seal_name = seal.key.signing_cert.subject.native.get("common_name")
    if isinstance(seal_name, list):
        seal_name = seal_name[0]
    data = report_data(
        services,
        report,
        filename=filename,
        seal_name=_text(seal_name),
        expected_public_id=expected_public_id,
    )
    return seal_pdf(services, typeset(data), seal)
