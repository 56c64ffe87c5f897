"""Fuzz the verifier with thousands of mutated signed PDFs (issue 8, item 3).

Seeds: documents signed by our own engine at B-B, B-T, B-LT and B-LTA with the dev PKI, one
with two signatures, one signed with Ed25519, and a few files of ``../shared/pdf-corpus`` when
present. Mutations (``tests/support/mutations.py``): byte flips, truncations, splices of two
files, duplicated and removed ranges, appended revisions, ByteRange and Contents edits,
inserted bombs. Every mutant goes through ``Verifier.async_verify``; the test asserts

- no exception other than the three that mean "not a PDF", "unreadable and unsigned" and
  "encrypted" (answered 4xx by the API);
- a well-formed report: a verdict of the enum, every signature with an indication and checks
  of the enum, each with a code and a message;
- the issue's rule: a file whose signed bytes were changed is never ``TOTAL_PASSED`` nor
  ``NO_SIGNATURE``;
- each input inside a per-input time bound.

The random seed is fixed and printed; ``SIGNING_SERVICE_FUZZ_SEED`` and
``SIGNING_SERVICE_FUZZ_COUNT`` override it and the number of inputs (at least 5,000 by
default). Failing inputs are written to a temporary directory named in the failure message;
the seed and the mutant's index reproduce each one.
"""

from __future__ import annotations

import asyncio
import csv
import os
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from signing_service.pki.dev import DevPki
from signing_service.settings import DEV_KEY_PASSPHRASE
from signing_service.signing.engine import SignOptions, async_sign_pdf
from signing_service.signing.keys.pkcs12 import load_pkcs12_file
from signing_service.signing.levels import SignatureLevel
from signing_service.trust import TrustStore
from signing_service.verification.report import CheckStatus, Indication, Verdict
from signing_service.verification.validate import (
    EncryptedPdfError,
    NotPdfError,
    UnreadablePdfError,
    Verifier,
)
from tests.conftest import CORPUS, REPO
from tests.support import hostile
from tests.support.mutations import Mutant, MutationEngine, SeedPdf
from tests.support.pdfs import make_pdf

pytestmark = pytest.mark.slow

FUZZ_SEED = int(os.environ.get("SIGNING_SERVICE_FUZZ_SEED", "20261129"))
FUZZ_COUNT = int(os.environ.get("SIGNING_SERVICE_FUZZ_COUNT", "5000"))
API_FUZZ_COUNT = int(os.environ.get("SIGNING_SERVICE_API_FUZZ_COUNT", "300"))
# A hostile input must be answered within this (the request time budget is larger; a
# mutant of a small signed file has no reason to come near it).
PER_INPUT_SECONDS = 10.0
ALLOWED_EXCEPTIONS = (NotPdfError, UnreadablePdfError, EncryptedPdfError)
CORPUS_SEEDS = 6
CORPUS_MAX_BYTES = 300_000


def _trust(pki: DevPki) -> TrustStore:
    return TrustStore.load(
        REPO / "certs/trust/anchors.json", dev_root=pki.root_cert_path, fetch_timeout=2
    )


def _corpus_seeds() -> list[SeedPdf]:
    manifest = CORPUS / "MANIFEST.tsv"
    if not manifest.exists():
        return []
    with manifest.open() as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    picked: list[SeedPdf] = []
    # One of each expected verdict first, then the smallest others.
    rows.sort(key=lambda r: ((CORPUS / r["file"]).stat().st_size, r["file"]))
    by_kind: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_kind.setdefault(row["expected"], []).append(row)
    order = [r for kind in sorted(by_kind) for r in by_kind[kind][:2]] + rows
    for row in order:
        path = CORPUS / row["file"]
        if len(picked) >= CORPUS_SEEDS:
            break
        if path.stat().st_size > CORPUS_MAX_BYTES or any(s.name == row["file"] for s in picked):
            continue
        picked.append(SeedPdf.of(row["file"], path.read_bytes()))
    return picked


@pytest.fixture(scope="module")
def fuzz_seeds(dev_pki: tuple[DevPki, int]) -> list[SeedPdf]:
    pki, _ = dev_pki
    seal = load_pkcs12_file(pki.p12_path("agency-a-seal"), DEV_KEY_PASSPHRASE.encode())
    other = load_pkcs12_file(pki.p12_path("agency-b-seal"), DEV_KEY_PASSPHRASE.encode())
    trust = _trust(pki)
    seeds = []
    base = make_pdf(text="Quyet dinh so 42/QD-UBND", pages=2)
    for level in SignatureLevel:
        vc = (
            trust.validation_context(other_certs=seal.chain)
            if level.needs_revocation_info
            else None
        )
        signed = asyncio.run(
            async_sign_pdf(
                base,
                seal,
                SignOptions(level=level, tsa_url=pki.tsa_url),
                validation_context=vc,
            )
        )
        seeds.append(SeedPdf.of(f"own-{level.value}", signed))
    twice = asyncio.run(async_sign_pdf(seeds[1].data, other, SignOptions(level=SignatureLevel.B_B)))
    seeds.append(SeedPdf.of("own-two-signatures", twice))
    seeds.append(SeedPdf.of("own-ed25519", hostile.signed_with(pki, "ed25519")))
    seeds.extend(_corpus_seeds())
    return seeds


@dataclass
class Finding:
    kind: str  # crash | malformed-report | rule | slow
    key: str
    detail: str
    mutant: str
    saved: Path | None = None


@dataclass
class FuzzRun:
    seed: int
    findings: dict[str, list[Finding]] = field(default_factory=dict)
    outcomes: Counter[str] = field(default_factory=Counter)
    kinds: Counter[str] = field(default_factory=Counter)
    slowest: list[tuple[float, str]] = field(default_factory=list)
    elapsed: float = 0.0

    def add(self, finding: Finding) -> None:
        self.findings.setdefault(finding.key, []).append(finding)

    def summary(self) -> str:
        lines = [
            f"fuzz seed {self.seed} (SIGNING_SERVICE_FUZZ_SEED), {sum(self.kinds.values())} "
            f"inputs in {self.elapsed:.1f} s",
            "outcomes: " + ", ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items())),
            "slowest: " + ", ".join(f"{t:.2f}s {d}" for t, d in sorted(self.slowest)[-5:]),
        ]
        for key, found in sorted(self.findings.items(), key=lambda kv: -len(kv[1])):
            first = found[0]
            lines.append(
                f"- [{first.kind}] {key}: {len(found)} inputs, e.g. {first.mutant}"
                + (f", saved as {first.saved}" if first.saved else "")
                + f"\n    {first.detail}"
            )
        return "\n".join(lines)


def _crash_key(exc: BaseException) -> str:
    """Exception type and the innermost frame in our code or pyHanko (where it happened)."""
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [f for f in frames if "signing_service" in f.filename or "pyhanko" in f.filename]
    where = ours[-1] if ours else (frames[-1] if frames else None)
    place = f"{Path(where.filename).name}:{where.lineno} {where.name}" if where else "?"
    return f"{type(exc).__name__} at {place}"


def report_problems(report: dict[str, Any]) -> list[str]:
    """What is wrong with the shape of a report dict (empty when well-formed)."""
    problems = []
    if report.get("verdict") not in {v.value for v in Verdict}:
        problems.append(f"verdict {report.get('verdict')!r}")
    if not isinstance(report.get("message"), str) or not report["message"]:
        problems.append("no document message")
    statuses = {s.value for s in CheckStatus}
    for sig in report.get("signatures", []):
        if sig.get("indication") not in {i.value for i in Indication}:
            problems.append(f"signature {sig.get('field')!r} indication {sig.get('indication')!r}")
        if not sig.get("checks"):
            problems.append(f"signature {sig.get('field')!r} without checks")
        for name, check in sig.get("checks", {}).items():
            if check.get("status") not in statuses or not check.get("code"):
                problems.append(f"check {name} {check}")
            if not isinstance(check.get("message"), str) or not check["message"]:
                problems.append(f"check {name} without message")
    for problem in report.get("problems", []):
        if problem.get("status") not in statuses or not problem.get("code"):
            problems.append(f"problem {problem}")
    if report.get("verdict") == Verdict.NO_SIGNATURE.value and any(
        sig.get("type") != "document_timestamp" or sig.get("indication") == "TOTAL_FAILED"
        for sig in report.get("signatures", [])
    ):
        problems.append("NO_SIGNATURE with a signature, or with a failed timestamp")
    return problems


def check_mutant(
    verifier: Verifier, mutant: Mutant, run: FuzzRun, save_dir: Path, *, api: Any = None
) -> None:
    """Verify one mutant (in process, or through the API when ``api`` is a test client) and
    record what is wrong with the outcome."""
    started = time.perf_counter()
    outcome: str
    report: dict[str, Any] | None = None
    finding: Finding | None = None
    try:
        if api is None:
            report = asyncio.run(verifier.async_verify(mutant.data)).to_dict()
            outcome = report["verdict"]
        else:
            response = api.post(
                "/v1/verifications", files={"file": ("fuzz.pdf", mutant.data, "application/pdf")}
            )
            body = (
                response.json()
                if response.headers.get("content-type", "").startswith("application/json")
                else None
            )
            if response.status_code >= 500:
                outcome = f"HTTP {response.status_code}"
                finding = Finding(
                    "crash", f"HTTP {response.status_code}", str(body)[:300], mutant.describe()
                )
            elif response.status_code == 200 and isinstance(body, dict):
                report = body
                outcome = report.get("verdict", "?")
            else:
                outcome = f"HTTP {response.status_code} {(body or {}).get('code')}"
                if not isinstance(body, dict) or not body.get("code") or not body.get("message"):
                    finding = Finding(
                        "malformed-report", "4xx without code", str(body)[:300], mutant.describe()
                    )
    except ALLOWED_EXCEPTIONS as exc:
        outcome = type(exc).__name__
    except Exception as exc:  # noqa: BLE001 - every other exception is a finding
        outcome = "EXCEPTION"
        finding = Finding(
            "crash", _crash_key(exc), f"{type(exc).__name__}: {exc}"[:300], mutant.describe()
        )
    elapsed = time.perf_counter() - started
    run.outcomes[outcome] += 1
    run.kinds[mutant.kind] += 1
    run.slowest.append((elapsed, mutant.describe()))
    run.slowest = sorted(run.slowest)[-5:]
    if report is not None and finding is None:
        shape = report_problems(report)
        if shape:
            finding = Finding(
                "malformed-report", "malformed report", "; ".join(shape)[:300], mutant.describe()
            )
        elif mutant.signed_bytes_changed and report["verdict"] in (
            Verdict.TOTAL_PASSED.value,
            Verdict.NO_SIGNATURE.value,
        ):
            finding = Finding(
                "rule",
                f"{report['verdict']} for changed signed bytes ({mutant.kind})",
                f"signatures: {[s.get('indication') for s in report.get('signatures', [])]}",
                mutant.describe(),
            )
    if finding is None and elapsed > PER_INPUT_SECONDS:
        finding = Finding(
            "slow", f"slower than {PER_INPUT_SECONDS} s", f"{elapsed:.1f} s", mutant.describe()
        )
    if finding is not None:
        if finding.key not in run.findings:
            path = save_dir / f"mutant-{mutant.index:05d}-{mutant.kind}.pdf"
            path.write_bytes(mutant.data)
            finding.saved = path
        run.add(finding)


def test_fuzz_verifier(
    dev_pki: tuple[DevPki, int],
    fuzz_seeds: list[SeedPdf],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pki, _ = dev_pki
    verifier = Verifier(_trust(pki), allow_fetching=False)
    run = FuzzRun(FUZZ_SEED)
    with capsys.disabled():
        print(f"\nfuzz: seed {FUZZ_SEED}, {FUZZ_COUNT} inputs from {len(fuzz_seeds)} seed files")
    started = time.perf_counter()
    for mutant in MutationEngine(fuzz_seeds, FUZZ_SEED).generate(FUZZ_COUNT):
        check_mutant(verifier, mutant, run, tmp_path)
    run.elapsed = time.perf_counter() - started
    with capsys.disabled():
        print(run.summary())
    assert sum(run.kinds.values()) >= min(FUZZ_COUNT, 5000)
    assert not run.findings, run.summary()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_fuzz_verification_api(
    api: Any,
    fuzz_seeds: list[SeedPdf],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same kind of inputs through ``POST /v1/verifications``: never a 5xx, always JSON
    with a verdict (200) or an error code and message (4xx)."""
    run = FuzzRun(FUZZ_SEED + 1)
    started = time.perf_counter()
    for mutant in MutationEngine(fuzz_seeds, FUZZ_SEED + 1).generate(API_FUZZ_COUNT):
        check_mutant(None, mutant, run, tmp_path, api=api)  # type: ignore[arg-type]
    run.elapsed = time.perf_counter() - started
    with capsys.disabled():
        print("\napi " + run.summary())
    assert not run.findings, run.summary()


# Hostile inputs that today's verifier answers in seconds (the slow ones — Flate bombs, the
# field DAG, an over-wide xref field — are measured in a bounded child process by
# tests/test_verifier_limits.py).
API_HOSTILE = {
    "deep_nesting": hostile.deep_nesting,
    "reference_chain": lambda: hostile.reference_chain(5_000),
    "deep_field_tree": hostile.deep_field_tree,
    "many_revisions": lambda: hostile.many_revisions(count=1_500),
    "xref_stream_data_bomb": hostile.xref_stream_data_bomb,
    "object_stream_bomb": hostile.object_stream_bomb,
    "stacked_filter_bomb": hostile.stacked_filter_bomb,
}


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_hostile_inputs_through_api(api: Any, dev_pki: tuple[DevPki, int]) -> None:
    """Every crash reproducer and the faster hostile builders, posted to the API: a JSON
    answer with a verdict or an error code, never a 5xx."""
    pki, _ = dev_pki
    inputs = {name: build() for name, build in API_HOSTILE.items()}
    inputs.update({name: build(pki) for name, build in hostile.CRASH_REPRODUCERS.items()})
    failures = []
    for name, data in inputs.items():
        response = api.post(
            "/v1/verifications", files={"file": ("hostile.pdf", data, "application/pdf")}
        )
        body = response.json()
        if response.status_code >= 500:
            failures.append(f"{name}: HTTP {response.status_code} {body}")
        elif response.status_code == 200:
            if report_problems(body):
                failures.append(f"{name}: {report_problems(body)}")
        elif not body.get("code"):
            failures.append(f"{name}: HTTP {response.status_code} without code")
    assert not failures, "\n".join(failures)
