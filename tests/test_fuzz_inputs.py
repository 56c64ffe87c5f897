"""Seeded fuzz test of the sign endpoint with the PDFs people have (issue 10, "What to build"
4): every parse failure is a 422 with its code, never a 500.

Seeds: a plain document, a two-page one, each kind of damage viewers repair
(``tests/support/damaged.py``), a text field named ``Signature1``, certified documents (P=1,
P=2 with and without an empty field, P=3), a signed document, a PDF/A-1b document, a document
with object streams, the unsignable shapes of ``tests/support/unsignable.py``; each mutated by
``tests/support/mutations.py`` (flips, truncations, splices, duplicated and removed ranges,
appended revisions, edited ``/ByteRange`` and ``/Contents``, decompression bombs). Each answer
is 201 or a 422/413 with a known code and a Vietnamese message; a 201 for a damaged input says
``repaired``; after the run the store holds exactly the objects the database refers to and the
audit chain verifies.

``SIGNING_SERVICE_INPUTS_FUZZ_SEED`` and ``SIGNING_SERVICE_INPUTS_FUZZ_INPUTS`` (default 250)
override the seed and the number of mutants; a failure names the seed and the mutant.
"""

from __future__ import annotations

import io
import os
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pikepdf
import pytest
from pyhanko.sign.fields import MDPPerm

from signing_service.pki.dev import DevPki
from signing_service.services.container import Services
from tests.support.damaged import DAMAGES
from tests.support.mutations import MutationEngine, SeedPdf
from tests.support.pdfa import pdfa_pdf
from tests.support.pdfs import make_pdf
from tests.support.unsignable import UNSIGNABLE
from tests.test_fuzz_api import assert_consistent
from tests.test_inputs import VIETNAMESE_LETTERS, certified, with_text_field

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("SIGNING_SERVICE_INPUTS_FUZZ_SEED", "20261129"))
INPUTS = int(os.environ.get("SIGNING_SERVICE_INPUTS_FUZZ_INPUTS", "250"))

# What the sign endpoint may answer for a document (the document's fault, or its size).
DOCUMENT_CODES = {
    "NOT_A_PDF",
    "EMPTY_FILE",
    "MALFORMED_PDF",
    "ENCRYPTED_PDF",
    "DOCUMENT_CERTIFIED_NO_CHANGES",
    "DOCUMENT_CERTIFIED_FIELD_REQUIRED",
    "SIGNED_PDF_DAMAGED",
    # an earlier signature the verifier fails (a mutant of a signed seed)
    "EXISTING_SIGNATURE_INVALID",
    "FILE_TOO_LARGE",
    # more objects, fields or revisions than the verifier would accept back once signed
    "DOCUMENT_TOO_COMPLEX",
}


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    # The answers depend on the document, not on the database; the API fuzz test runs both.
    return f"sqlite:///{tmp_path / 'metadata.db'}"


def object_streams(data: bytes) -> bytes:
    pdf = pikepdf.open(io.BytesIO(data))
    out = io.BytesIO()
    pdf.save(out, object_stream_mode=pikepdf.ObjectStreamMode.generate)
    return out.getvalue()


def seeds(api: Any, credentials: dict[str, Any], pki: DevPki) -> list[tuple[str, bytes]]:
    plain = make_pdf(text="Quyet dinh so 9/QD-UBND")
    signed = api.post(
        "/v1/signatures",
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
        data={"profile": "agency-a-seal", "level": "B-B"},
        files={"file": ("a.pdf", plain, "application/pdf")},
    )
    assert signed.status_code == 201
    signed_pdf = api.get(
        signed.json()["document"]["download_url"],
        headers={"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"},
    ).content
    found = [
        ("plain", plain),
        ("two-pages", make_pdf(pages=2)),
        ("object-streams", object_streams(make_pdf(pages=2))),
        ("text-field-Signature1", with_text_field("Signature1")),
        ("certified-p1", certified(pki, MDPPerm.NO_CHANGES)),
        ("certified-p2", certified(pki, MDPPerm.FILL_FORMS)),
        ("certified-p2-field", certified(pki, MDPPerm.FILL_FORMS, empty_field="ChuKy")),
        ("certified-p3", certified(pki, MDPPerm.ANNOTATE)),
        ("signed", signed_pdf),
        ("pdfa-1b", pdfa_pdf(1)),
    ]
    found += [(f"damaged {name}", damage(plain)) for name, damage in sorted(DAMAGES.items())]
    found += [(f"damaged signed {name}", damage(signed_pdf)) for name, damage in DAMAGES.items()]
    found += [(f"unsignable {name}", build()) for name, build in sorted(UNSIGNABLE.items())]
    return found


def test_fuzz_sign_endpoint(
    api: Any,
    services: Services,
    credentials: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pki = services.dev_pki
    assert pki is not None
    headers = {"Authorization": f"Bearer {credentials['agencies'][0]['api_key']}"}
    rng = random.Random(SEED)
    base = seeds(api, credentials, pki)
    engine = MutationEngine(
        [SeedPdf.of(name, data) for name, data in base], rng.randrange(2**32), 0.01
    )
    cases = [(f"seed {name}", data) for name, data in base]
    cases += [(f"mutant {m.describe()}", m.data) for m in engine.generate(INPUTS)]
    outcomes: Counter[str] = Counter()
    with capsys.disabled():
        print(f"\ninputs fuzz: seed {SEED}, {len(cases)} documents")
    for index, (name, data) in enumerate(cases):
        where = f"seed {SEED}, input {index} ({name})"
        response = api.post(
            "/v1/signatures",
            headers=headers,
            data={"profile": "agency-a-seal", "level": "B-B"},
            files={"file": ("x.pdf", data, "application/pdf")},
        )
        status = response.status_code
        body = response.json()
        assert status in (201, 413, 422), f"{where}: {status} {body}"
        if status == 201:
            outcomes["signed, repaired" if body["repaired"] else "signed"] += 1
            if name.startswith("seed damaged") and "signed" not in name:
                assert body["repaired"] is True, where
            continue
        assert body["code"] in DOCUMENT_CODES, f"{where}: {body}"
        assert any(ch in body["message"] for ch in VIETNAMESE_LETTERS), f"{where}: {body}"
        outcomes[body["code"]] += 1
        if name == "seed certified-p1":
            assert body["code"] == "DOCUMENT_CERTIFIED_NO_CHANGES"
        if name.startswith("seed damaged signed"):
            assert body["code"] == "SIGNED_PDF_DAMAGED", where
    with capsys.disabled():
        print(f"inputs fuzz outcomes: {dict(sorted(outcomes.items()))}")
    assert_consistent(services)
