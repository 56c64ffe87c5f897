"""Seals: the audit chain's head, timestamped (RFC 3161) and kept outside the database.

A MAC chain proves that the entries it covers are unaltered, but not that none were cut off
at the end: whoever writes the database can delete the newest entries and rewind
``audit_head``. A seal is evidence that lives elsewhere: a JSON file under the seal directory
(``SIGNING_SERVICE_AUDIT_SEAL_DIR``, default ``<data_dir>/audit-seals``) holding

- ``seq``, ``head_hash``, ``head_mac``: the newest entry when sealed;
- ``key_id``: which audit key MACed it (a replaced key is named as such);
- ``previous_seal``: the previous seal's imprint, so a deleted seal breaks the seal chain;
- ``imprint``: SHA-256 of the canonical statement of the four values above and the format;
- ``token``: an RFC 3161 timestamp token over ``imprint`` from the operator's TSA
  (``SIGNING_SERVICE_AUDIT_TSA_URL``; the dev PKI's TSA in development mode).

:func:`seal_head` writes one (``signing-service audit seal``, e.g. from cron), after checking
that the entries since the previous seal still chain to it under the key; :func:`verify_log`
checks the whole log against every seal: the statement matches the token's imprint, the token's
signature is valid and its TSA chains to a trust anchor with the timeStamping key purpose (at
the token's time; the TSA's revocation status is not checked, as no revocation data is kept
with a seal), the sealed entry is still there with the same hash and MAC, the seals chain and
their times increase, and the log is not shorter than the last seal.

What a seal cannot show: entries appended after the newest seal and then cut off. Seal often,
and copy the seal files off the host (they are not secret): seals deleted from the newest end
cannot be noticed by the seals that remain.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from asn1crypto import cms, tsp
from sqlalchemy import select
from sqlalchemy.orm import Session

from signing_service.audit import AuditProblem, ChainReport, verify
from signing_service.audit.key import AuditKey
from signing_service.store.models import AuditEntry, AuditHead
from signing_service.timefmt import VIETNAM_TZ

if TYPE_CHECKING:
    from signing_service.store.db import Database
    from signing_service.trust import TrustStore

SEAL_FORMAT = "signing-service-audit-seal/1"
# Digest algorithms accepted for the token's own signature (TT 15/2025 and ETSI TS 119 312:
# no SHA-1 or MD5).
_ALLOWED_DIGESTS = frozenset({"sha256", "sha384", "sha512", "sha3_256", "sha3_384", "sha3_512"})
_MAX_SEAL_BYTES = 1024 * 1024


class SealRefused(Exception):
    """``audit seal`` did not seal: ``problems`` say why (Vietnamese messages)."""

    def __init__(self, problems: list[AuditProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(p.message for p in problems))


class SealUnavailable(Exception):
    """The timestamp server could not be reached or refused the request."""


def _canonical(fields: dict[str, Any]) -> bytes:
    return json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def statement(
    seq: int, head_hash: str, head_mac: str, key_id: str, previous_seal: str | None
) -> bytes:
    """The bytes a seal's timestamp covers (through their SHA-256, the imprint)."""
    return _canonical(
        {
            "format": SEAL_FORMAT,
            "seq": seq,
            "head_hash": head_hash,
            "head_mac": head_mac,
            "key_id": key_id,
            "previous_seal": previous_seal,
        }
    )


@dataclass(frozen=True)
class Seal:
    """One seal file's content (see the module docstring); ``token`` is DER."""

    path: Path
    seq: int
    head_hash: str
    head_mac: str
    key_id: str
    previous_seal: str | None
    imprint: str
    tsa_url: str
    gen_time: str
    token: bytes

    def expected_imprint(self) -> str:
        data = statement(self.seq, self.head_hash, self.head_mac, self.key_id, self.previous_seal)
        return hashlib.sha256(data).hexdigest()

    def to_json(self) -> dict[str, Any]:
        return {
            "format": SEAL_FORMAT,
            "seq": self.seq,
            "head_hash": self.head_hash,
            "head_mac": self.head_mac,
            "key_id": self.key_id,
            "previous_seal": self.previous_seal,
            "imprint": self.imprint,
            "tsa_url": self.tsa_url,
            "gen_time": self.gen_time,
            "token": base64.b64encode(self.token).decode(),
        }

    @classmethod
    def load(cls, path: Path) -> Seal:
        """Read a seal file; ``ValueError`` (with the reason) when it is not one."""
        if path.stat().st_size > _MAX_SEAL_BYTES:
            raise ValueError("tệp quá lớn")
        raw = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(raw, dict) or raw.get("format") != SEAL_FORMAT:
            raise ValueError("không đúng định dạng niêm phong")
        seq = raw["seq"]
        if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
            raise ValueError("vị trí niêm phong không hợp lệ")
        text_fields = ("head_hash", "head_mac", "key_id", "imprint", "tsa_url", "gen_time")
        if not all(isinstance(raw.get(f), str) for f in text_fields):
            raise ValueError("thiếu trường")
        previous = raw.get("previous_seal")
        if previous is not None and not isinstance(previous, str):
            raise ValueError("trường previous_seal không hợp lệ")
        return cls(
            path=path,
            seq=seq,
            head_hash=raw["head_hash"],
            head_mac=raw["head_mac"],
            key_id=raw["key_id"],
            previous_seal=previous,
            imprint=raw["imprint"],
            tsa_url=raw["tsa_url"],
            gen_time=raw["gen_time"],
            token=base64.b64decode(raw["token"], validate=True),
        )


def newest_seal_key_id(directory: Path) -> str | None:
    """The audit key id the newest readable seal under ``directory`` was made with, or
    ``None`` (no seal): what a refusal for a wrong audit key names."""
    seals, _ = load_seals(directory)
    return seals[-1].key_id if seals else None


def load_seals(directory: Path) -> tuple[list[Seal], list[AuditProblem]]:
    """The seals under ``directory`` (``seal-*.json``) ordered by position then time, and a
    ``SEAL_MALFORMED`` problem for each file that is not a readable seal."""
    seals: list[Seal] = []
    problems: list[AuditProblem] = []
    if not directory.is_dir():
        return seals, problems
    for path in sorted(directory.glob("seal-*.json")):
        try:
            seals.append(Seal.load(path))
        except (OSError, ValueError, KeyError, TypeError) as e:
            problems.append(
                AuditProblem("SEAL_MALFORMED", f"Niêm phong {path.name} không đọc được: {e}.")
            )
    seals.sort(key=lambda s: (s.seq, s.gen_time, s.path.name))
    return seals, problems


def _token_time(token: bytes) -> datetime | None:
    try:
        info = cms.ContentInfo.load(token)["content"]["encap_content_info"]["content"].parsed
        moment: datetime = info["gen_time"].native
        return moment
    except (ValueError, TypeError, KeyError, AttributeError):
        return None


def check_token(seal: Seal, trust: TrustStore) -> tuple[list[AuditProblem], datetime | None]:
    """Check a seal's timestamp token: the statement's imprint, the token's imprint, its
    signature (no SHA-1/MD5), and its TSA's chain to an anchor of ``trust`` with the
    timeStamping extended key usage (RFC 3161 §2.3), at the token's time. Returns the problems
    and the token's time (None when unreadable). Runs pyHanko's validation in an event loop of
    its own: call it from a thread that has none (the command line, a worker thread)."""
    from pyhanko.sign.validation.generic_cms import validate_tst_signed_data

    # A seal being made has no file yet: name it by what it covers (newuser finding 16: the
    # refusal read "Niêm phong : …").
    name = seal.path.name or f"mới (đến bản ghi {seal.seq}, từ {seal.tsa_url})"
    problems: list[AuditProblem] = []
    if seal.expected_imprint() != seal.imprint:
        problems.append(
            AuditProblem(
                "SEAL_FORGED",
                f"Niêm phong {name}: nội dung (vị trí, mã băm, MAC, khóa) không khớp dấu "
                "thời gian đã cấp cho nó: niêm phong đã bị sửa hoặc giả mạo.",
                seal.seq,
            )
        )
    try:
        content = cms.ContentInfo.load(seal.token)
        signed_data = content["content"]
        info = signed_data["encap_content_info"]["content"].parsed
        if not isinstance(info, tsp.TSTInfo):
            raise ValueError("not a TSTInfo")
        gen_time: datetime = info["gen_time"].native
        imprint_algo = info["message_imprint"]["hash_algorithm"]["algorithm"].native
        hashed = info["message_imprint"]["hashed_message"].native
    except (ValueError, TypeError, KeyError, AttributeError):
        problems.append(
            AuditProblem(
                "SEAL_TOKEN_INVALID",
                f"Niêm phong {name}: dấu thời gian không đọc được.",
                seal.seq,
            )
        )
        return problems, None
    if imprint_algo != "sha256" or hashed != bytes.fromhex(seal.expected_imprint()):
        problems.append(
            AuditProblem(
                "SEAL_FORGED",
                f"Niêm phong {name}: dấu thời gian được cấp cho dữ liệu khác (sai message "
                "imprint).",
                seal.seq,
            )
        )
    context = trust.validation_context(
        moment=gen_time, allow_fetching=False, revocation_mode="soft-fail"
    )
    try:
        status = asyncio.run(validate_tst_signed_data(signed_data, context, lambda _algo: hashed))
    # A hostile seal file must end in a finding, never a crash: pyHanko raises a variety of
    # errors (structure, algorithms, certificates) on crafted tokens.
    except Exception:  # noqa: BLE001
        status = {"intact": False, "valid": False}
    if not (status.get("intact") and status.get("valid")):
        problems.append(
            AuditProblem(
                "SEAL_TOKEN_INVALID",
                f"Niêm phong {name}: chữ ký của dấu thời gian không hợp lệ.",
                seal.seq,
            )
        )
    elif status.get("md_algorithm") not in _ALLOWED_DIGESTS:
        problems.append(
            AuditProblem(
                "SEAL_TOKEN_INVALID",
                f"Niêm phong {name}: dấu thời gian dùng thuật toán băm không được chấp nhận "
                f"({status.get('md_algorithm')}).",
                seal.seq,
            )
        )
    elif status.get("trust_problem_indic") is not None:
        problems.append(
            AuditProblem(
                "SEAL_TSA_UNTRUSTED",
                f"Niêm phong {name}: máy chủ cấp dấu thời gian không chuỗi được tới chứng thư "
                "gốc tin cậy (hoặc chứng thư không dành cho cấp dấu thời gian).",
                seal.seq,
            )
        )
    return problems, gen_time


def _people_time(moment: datetime | None, fallback: str) -> str:
    return moment.astimezone(VIETNAM_TZ).isoformat() if moment else fallback


def _records_before_log(session: Session, report: ChainReport) -> None:
    """``RECORDS_BEFORE_LOG``: signatures recorded before the log's first entry (or any, when
    the log is empty). Every signature is audited in its own transaction, so its entry is
    never earlier than the log's start: a log whose beginning (or whole) was deleted, or that
    was replaced by a new chain from genesis, shows here even without a seal (red team 23b,
    R23B-6: the whole log deleted read "intact: 0 entries")."""
    from datetime import timedelta

    from sqlalchemy import func, select

    from signing_service.store.models import AuditEntry, Signature

    first = session.scalar(select(AuditEntry.at).order_by(AuditEntry.seq).limit(1))
    query = select(func.count()).select_from(Signature)
    if first is not None:
        try:
            start = datetime.fromisoformat(first)
        except ValueError:
            return  # a damaged entry: verify() reports it
        # A signature's time is taken before its transaction writes the entry (a two-step
        # signature's at step 1, minutes before step 2 writes it): an hour's room.
        query = query.where(Signature.signed_at < start - timedelta(hours=1))
    count = int(session.scalar(query) or 0)
    if count:
        report.add(
            AuditProblem(
                "RECORDS_BEFORE_LOG",
                f"Có {count} chữ ký được ghi trước bản ghi đầu tiên của nhật ký: phần đầu (hoặc "
                "toàn bộ) nhật ký đã bị xóa, hoặc nhật ký đã bị thay bằng một chuỗi mới.",
            )
        )


def verify_log(
    session: Session, key: AuditKey, *, seal_dir: Path, trust: TrustStore
) -> ChainReport:
    """The whole check behind ``audit verify``: the log (:func:`signing_service.audit.verify`)
    and every seal under ``seal_dir`` (:func:`check_token`, the key id, the seal chain and
    times, the sealed entry's hash and MAC, and truncation: a log shorter than a seal says).

    Seal codes: ``SEAL_MALFORMED``, ``SEAL_FORGED``, ``SEAL_TOKEN_INVALID``,
    ``SEAL_TSA_UNTRUSTED``, ``SEAL_KEY_MISMATCH``, ``SEAL_CHAIN_BROKEN``, ``SEAL_ORDER``,
    ``SEAL_HEAD_MISSING``, ``SEAL_HEAD_MISMATCH``, ``TRUNCATED``. With no seal, or entries
    after the last one, ``warnings`` say so (truncation there cannot be detected)."""
    seals, load_problems = load_seals(seal_dir)
    report = verify(session, key, positions=[s.seq for s in seals])
    for problem in load_problems:
        report.add(problem)
    previous: Seal | None = None
    previous_time: datetime | None = None
    for seal in seals:
        name = seal.path.name
        token_problems, moment = check_token(seal, trust)
        for problem in token_problems:
            report.add(problem)
        when = _people_time(moment, seal.gen_time)
        if seal.key_id != key.key_id:
            report.add(
                AuditProblem(
                    "SEAL_KEY_MISMATCH",
                    f"Niêm phong {name} được tạo với khóa nhật ký {seal.key_id}, khóa đang cấu "
                    f"hình là {key.key_id}: khóa MAC đã bị thay.",
                    seal.seq,
                )
            )
        expected_previous = previous.imprint if previous is not None else None
        if seal.previous_seal != expected_previous:
            report.add(
                AuditProblem(
                    "SEAL_CHAIN_BROKEN",
                    f"Niêm phong {name} không nối tiếp niêm phong liền trước: có niêm phong đã "
                    "bị xóa, thêm hoặc thay.",
                    seal.seq,
                )
            )
        if moment is not None and previous_time is not None and moment < previous_time:
            report.add(
                AuditProblem(
                    "SEAL_ORDER",
                    f"Niêm phong {name} có thời điểm ({when}) sớm hơn niêm phong ở vị trí trước.",
                    seal.seq,
                )
            )
        if seal.seq > report.last_seq:
            report.add(
                AuditProblem(
                    "TRUNCATED",
                    f"Niêm phong {name} (lúc {when}) xác nhận {seal.seq} bản ghi nhưng nhật ký "
                    f"chỉ còn đến bản ghi {report.last_seq}: phần cuối nhật ký đã bị cắt.",
                    seal.seq,
                )
            )
        elif seal.seq not in report.positions:
            report.add(
                AuditProblem(
                    "SEAL_HEAD_MISSING",
                    f"Bản ghi {seal.seq} được niêm phong {name} xác nhận đã bị xóa.",
                    seal.seq,
                )
            )
        elif report.positions[seal.seq] != (seal.head_hash, seal.head_mac):
            report.add(
                AuditProblem(
                    "SEAL_HEAD_MISMATCH",
                    f"Bản ghi {seal.seq} không còn khớp mã băm/MAC mà niêm phong {name} (lúc "
                    f"{when}) đã xác nhận.",
                    seal.seq,
                )
            )
        previous, previous_time = seal, moment or previous_time
    report.seals = len(seals)
    _records_before_log(session, report)
    if previous is None:
        report.warnings.append(
            "Chưa có niêm phong nào: không phát hiện được việc cắt phần cuối nhật ký. Chạy "
            "`signing-service audit seal` định kỳ."
        )
    else:
        report.last_sealed_seq = previous.seq
        report.last_sealed_at = _people_time(previous_time, previous.gen_time)
        if report.last_seq > previous.seq:
            report.warnings.append(
                f"{report.last_seq - previous.seq} bản ghi sau niêm phong cuối (vị trí "
                f"{previous.seq}, lúc {report.last_sealed_at}) chưa được niêm phong."
            )
    return report


def _request_token(tsa_url: str, digest: bytes, timeout: float) -> bytes:
    """An RFC 3161 token over ``digest`` (SHA-256) from ``tsa_url``, with a nonce that pyHanko
    checks in the answer. Raises :class:`SealUnavailable`."""
    from pyhanko.sign.timestamps.requests_client import RequestsHTTPTimeStamper

    stamper = RequestsHTTPTimeStamper(tsa_url, timeout=timeout)
    try:
        token = asyncio.run(stamper.async_timestamp(digest, "sha256"))
    # Network errors, HTTP errors, a refusal (PKIStatus) and a malformed answer all mean the
    # same thing here: no seal now, try again.
    except Exception as e:  # noqa: BLE001
        raise SealUnavailable(_unavailable_reason(e, timeout)) from None
    return bytes(token.dump())


def _unavailable_reason(error: BaseException, timeout: float) -> str:
    """Why no token came, in Vietnamese for the operator (newuser finding 13: pyHanko's
    "Error in communication with timestamp server"); the cause is found on the chain of
    exceptions pyHanko wraps."""
    import requests

    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    if any(isinstance(e, requests.Timeout) for e in chain):
        return f"máy chủ không trả lời trong {timeout:g} giây"
    if any(isinstance(e, requests.ConnectionError) for e in chain):
        return "không kết nối được tới máy chủ"
    for e in chain:
        if isinstance(e, requests.HTTPError) and e.response is not None:
            return f"máy chủ trả lời lỗi HTTP {e.response.status_code}"
    return "máy chủ không cấp dấu thời gian hoặc câu trả lời không đọc được"


def _write(seal_dir: Path, seal: Seal, moment: datetime) -> Path:
    seal_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    stamp = moment.strftime("%Y%m%dT%H%M%S%fZ")
    path = seal_dir / f"seal-{seal.seq:012d}-{stamp}.json"
    tmp = seal_dir / f".{path.name}.{secrets.token_hex(4)}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(seal.to_json(), f, indent=2)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def seal_head(
    db: Database,
    key: AuditKey,
    *,
    seal_dir: Path,
    tsa_url: str,
    trust: TrustStore,
    timeout: float = 10.0,
    force: bool = False,
) -> Seal | None:
    """Seal the chain's current head; None when there is nothing new since the last seal
    (``force``: seal again anyway) or the log is empty.

    Before sealing it checks the last seal (token, key) and the entries since it (sequence,
    hashes, MACs from the sealed head on): a seal never vouches for a log that has already
    been tampered with. The new token is checked like :func:`verify_log` checks it before the
    file is written (atomically, mode 0600, directory 0700). Raises :class:`SealRefused` with
    the problems, :class:`SealUnavailable` when the TSA does not answer."""
    seals, load_problems = load_seals(seal_dir)
    if load_problems:
        raise SealRefused(load_problems)
    last = seals[-1] if seals else None
    if last is not None:
        problems, _ = check_token(last, trust)
        if last.key_id != key.key_id:
            problems.append(
                AuditProblem(
                    "SEAL_KEY_MISMATCH",
                    f"Niêm phong cuối {last.path.name} được tạo với khóa nhật ký {last.key_id}, "
                    f"khóa đang cấu hình là {key.key_id}.",
                    last.seq,
                )
            )
        if problems:
            raise SealRefused(problems)
    with db.transaction() as session:
        head = session.get(AuditHead, 1)
        if head is None or head.seq == 0 or head.mac is None:
            return None
        if last is not None and head.seq < last.seq:
            raise SealRefused(
                [
                    AuditProblem(
                        "TRUNCATED",
                        f"Niêm phong cuối xác nhận {last.seq} bản ghi nhưng nhật ký chỉ còn "
                        f"{head.seq}: phần cuối nhật ký đã bị cắt.",
                    )
                ]
            )
        seq, head_hash, head_mac = head.seq, head.hash, head.mac
        report = _check_since(session, key, last)
    if not report.ok:
        raise SealRefused(report.problems)
    if last is not None and seq == last.seq and not force:
        return None
    previous = last.imprint if last is not None else None
    imprint = hashlib.sha256(statement(seq, head_hash, head_mac, key.key_id, previous)).digest()
    token = _request_token(tsa_url, imprint, timeout)
    moment = _token_time(token)
    seal = Seal(
        path=Path(),
        seq=seq,
        head_hash=head_hash,
        head_mac=head_mac,
        key_id=key.key_id,
        previous_seal=previous,
        imprint=imprint.hex(),
        tsa_url=tsa_url,
        gen_time=_people_time(moment, ""),
        token=token,
    )
    problems, _ = check_token(seal, trust)
    if problems or moment is None:
        raise SealRefused(problems)
    path = _write(seal_dir, seal, moment)
    return Seal(**{**seal.__dict__, "path": path})


def _check_since(session: Session, key: AuditKey, last: Seal | None) -> ChainReport:
    """The log from the last seal's head on (the whole log without a seal)."""
    if last is None:
        return verify(session, key)
    anchor = session.execute(
        select(AuditEntry.hash, AuditEntry.mac).where(AuditEntry.seq == last.seq)
    ).first()
    report = verify(session, key, since=(last.seq, last.head_hash, last.head_mac))
    if anchor is None or (anchor.hash, anchor.mac) != (last.head_hash, last.head_mac):
        report.add(
            AuditProblem(
                "SEAL_HEAD_MISMATCH",
                f"Bản ghi {last.seq} không còn khớp niêm phong cuối {last.path.name}.",
                last.seq,
            )
        )
    return report
