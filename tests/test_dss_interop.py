"""EU DSS (``../shared/tools/dss-validate``) on our own signatures: passed at the level we claim,
without the warnings that a correct signer and PKI avoid (issue 8, item 6).

One signature per PAdES level and per key family (the RSA and the ECDSA seal), made by the
service's signing path with the dev PKI served on loopback, validated by the harness online
(it may fetch from the dev PKI) and, for B-LT and B-LTA, also offline: a long-term signature
must carry its own validation data, and an online validator would hide stale embedded answers by
fetching fresh ones.

How the four warnings that DSS raised before are matched, robustly (on identifiers, not on
English sentences):

1. revocation data older than the signature timestamp, and
3. the root's CRL dated a week before the signature: DSS reports both through the certificate
   verifier's status alerts, which the harness records by *its own* names in ``alerts`` as
   ``"<name>: <DSS message>"``. The names ``no_revocation_after_best_signature_time`` (the
   signer's chain) and ``uncovered_poe`` (a timestamp's chain) are matched on that prefix.
2. no AIA caIssuers: DSS's message key ``BBB_XCV_AIA_PRES_ANS``, written by the harness as
   ``"KEY: text"`` in the ``warnings``/``errors``/``infos`` of each signature and timestamp, and
   present per certificate in the detailed report.
4. the TSA's SHA-1 ESS signing-certificate: only in the detailed report (``--dump``): the
   ``SignedAttributesValidation`` block of a timestamp names the digest algorithm of its
   signing-certificate reference; SHA1 there, or DSS's key ``ASCCM_AR_ANS_ANR`` (algorithm no
   longer reliable) anywhere, is the warning.

Beyond the four, the test asks for no alert and no warning at all: each would be a new finding.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from signing_service.services.documents import get_document, read_content
from signing_service.services.signing import sign_document
from signing_service.store.models import Agency
from tests.conftest import REPO, make_settings
from tests.support.dss_validate import Validation, harness_jar, validate
from tests.support.pdfs import make_pdf

pytestmark = pytest.mark.slow

TOOL = REPO.parent / "shared" / "tools" / "dss-validate"
LEVELS = ("B-B", "B-T", "B-LT", "B-LTA")
# Profile (bootstrap_dev) -> agency code: the RSA-2048 and the ECDSA P-256 seals.
SEALS = {"agency-a-seal": "000.00.12.H12", "agency-b-seal": "000.00.31.H26"}
FORMATS = {level: f"PAdES-BASELINE-{level[2:]}" for level in LEVELS}

STALE_REVOCATION_ALERTS = ("no_revocation_after_best_signature_time", "uncovered_poe")
AIA_KEY = "BBB_XCV_AIA_PRES_ANS"
WEAK_ALGORITHM_KEY = "ASCCM_AR_ANS_ANR"


@pytest.fixture(scope="module")
def jar() -> Path:
    missing = [tool for tool in ("java", "mvn") if shutil.which(tool) is None]
    if missing:
        message = f"EU DSS interop needs Java 17 and Maven: {', '.join(missing)} not found"
        if os.environ.get("SIGNING_SERVICE_TEST_REQUIRE_JAVA") == "1":
            pytest.fail(message + " (make test installs them)")
        pytest.skip(message)
    if not (TOOL / "pom.xml").is_file():
        pytest.skip(f"the EU DSS harness is absent ({TOOL}); it ships in ../shared/tools")
    started = time.monotonic()
    built = harness_jar(TOOL)
    print(f"dss-validate ready in {time.monotonic() - started:.1f} s: {built}")
    return built


@pytest.fixture(scope="module")
def signed(
    jar: Path, tmp_path_factory: pytest.TempPathFactory, dev_pki: tuple[DevPki, int]
) -> dict[tuple[str, str], Path]:
    """(profile, level) -> a PDF signed through ``sign_document`` (SQLite, local files)."""
    tmp = tmp_path_factory.mktemp("dss-interop")
    services = Services.build(make_settings(tmp, f"sqlite:///{tmp / 'metadata.db'}", dev_pki))
    out: dict[tuple[str, str], Path] = {}
    try:
        for profile, code in SEALS.items():
            with services.db.transaction() as session:
                agency = session.scalars(select(Agency).where(Agency.code == code)).one()
            for level in LEVELS:
                result = sign_document(
                    services, agency, profile_name=profile, pdf=make_pdf(), level=level, actor="t"
                )
                path = tmp / f"{profile}-{level}.pdf"
                path.write_bytes(
                    read_content(services, get_document(services, agency.id, result.document.id))
                )
                out[(profile, level)] = path
    finally:
        services.close()
    return out


@pytest.fixture(scope="module")
def reports(
    jar: Path,
    signed: dict[tuple[str, str], Path],
    dev_pki: tuple[DevPki, int],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[tuple[str, str, bool], Validation]:
    """(profile, level, offline) -> the harness's validation; one JVM per mode."""
    pki, _ = dev_pki
    dumps = tmp_path_factory.mktemp("dss-reports")
    keys = list(signed)
    online = validate(
        jar, [signed[k] for k in keys], trust=pki.root_cert_path, dump=dumps / "online"
    )
    long_term = [k for k in keys if k[1] in ("B-LT", "B-LTA")]
    offline = validate(
        jar,
        [signed[k] for k in long_term],
        trust=pki.root_cert_path,
        offline=True,
        dump=dumps / "offline",
    )
    result = {(*k, False): v for k, v in zip(keys, online, strict=True)}
    result.update({(*k, True): v for k, v in zip(long_term, offline, strict=True)})
    return result


def _messages(report: dict[str, Any]) -> list[str]:
    """Every "KEY: text" message of the report: signatures, their timestamps, and timestamps."""
    out: list[str] = []
    tokens = [*report.get("signatures", []), *report.get("timestamps", [])]
    for sig in report.get("signatures", []):
        tokens.extend(sig.get("timestamps", []))
    for token in tokens:
        for field in ("errors", "warnings", "infos"):
            out.extend(token.get(field, []))
    return out


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _detailed_findings(xml: str) -> list[str]:
    """SHA-1 signing-certificate references, weak-algorithm and missing-AIA messages."""
    findings: list[str] = []
    for element in ET.fromstring(xml).iter():
        name = _local(element.tag)
        key = element.get("Key")
        if key in (WEAK_ALGORITHM_KEY, AIA_KEY):
            findings.append(f"{key}: {(element.text or '').strip()}")
        if name == "SignedAttributesValidation":
            for algorithm in element.iter():
                if _local(algorithm.tag) == "Name" and (algorithm.text or "").upper() in (
                    "SHA1",
                    "SHA-1",
                ):
                    findings.append(
                        f"SHA-1 signing-certificate reference ({element.get('TokenId')})"
                    )
    return findings


CASES = [
    (profile, level, offline)
    for profile in SEALS
    for level in LEVELS
    for offline in ((False, True) if level in ("B-LT", "B-LTA") else (False,))
]


@pytest.mark.parametrize(
    ("profile", "level", "offline"),
    CASES,
    ids=[f"{p}-{lv}{'-offline' if o else ''}" for p, lv, o in CASES],
)
def test_dss_passes_at_the_level_without_avoidable_warnings(
    reports: dict[tuple[str, str, bool], Validation], profile: str, level: str, offline: bool
) -> None:
    validation = reports[(profile, level, offline)]
    report = validation.report
    assert report["result"] == "TOTAL_PASSED", report
    (signature,) = report["signatures"]
    assert signature["indication"] == "TOTAL_PASSED", signature
    assert signature["format"] == FORMATS[level], signature
    if offline:
        assert report["fetched_urls"] == [], report

    alerts = report["alerts"]
    stale = [a for a in alerts if a.split(":", 1)[0] in STALE_REVOCATION_ALERTS]
    assert not stale, f"revocation data not later than the timestamps (warnings 1 and 3): {stale}"
    messages = _messages(report)
    aia = [m for m in messages if m.split(":", 1)[0] == AIA_KEY]
    assert not aia, f"certificates without AIA caIssuers (warning 2): {aia}"
    assert validation.detailed_xml is not None
    findings = _detailed_findings(validation.detailed_xml)
    assert not findings, f"SHA-1 ESS or missing AIA in the detailed report (2, 4): {findings}"

    # No other alert or warning either: each would be a new, avoidable, finding.
    assert alerts == [], alerts
    warnings = [
        w
        for token in (signature, *signature["timestamps"], *report["timestamps"])
        for w in token["warnings"]
    ]
    assert warnings == [], warnings


def test_dss_agrees_on_a_twice_signed_encrypted_document(
    jar: Path, tmp_path: Path, dev_pki: tuple[DevPki, int]
) -> None:
    """An encrypted document (owner password only, as agencies publish to restrict editing)
    signed by one agency and then by another through the service: both signatures pass in
    EU DSS and in our verifier, and DSS sees no unpermitted change. (Before the service read
    encrypted documents through pyHanko's decrypting proxies, the second signature could not
    be made, and our verifier judged such a document modified.)"""
    import io

    import pikepdf

    out = io.BytesIO()
    pikepdf.open(io.BytesIO(make_pdf())).save(
        out, encryption=pikepdf.Encryption(user="", owner="chu-so-huu")
    )
    data = out.getvalue()
    services = Services.build(make_settings(tmp_path, f"sqlite:///{tmp_path / 'm.db'}", dev_pki))
    try:
        for profile, code in SEALS.items():
            with services.db.transaction() as session:
                agency = session.scalars(select(Agency).where(Agency.code == code)).one()
            result = sign_document(
                services, agency, profile_name=profile, pdf=data, level="B-T", actor="t"
            )
            data = read_content(services, get_document(services, agency.id, result.document.id))
        ours = asyncio.run(services.verifier.async_verify(data)).to_dict()
    finally:
        services.close()
    assert ours["verdict"] == "TOTAL_PASSED", ours
    path = tmp_path / "encrypted-twice.pdf"
    path.write_bytes(data)
    (validation,) = validate(jar, [path], trust=dev_pki[0].root_cert_path)
    report = validation.report
    assert report["result"] == "TOTAL_PASSED", report
    assert [s["indication"] for s in report["signatures"]] == ["TOTAL_PASSED"] * 2, report
