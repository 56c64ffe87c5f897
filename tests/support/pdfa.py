"""PDF/A inputs built here, and veraPDF (``tools/verapdf-check``, built from Maven Central
once per machine and cached beside the EU DSS harness, see ``tests/support/dss_validate.py``)."""

from __future__ import annotations

import io
import json
import subprocess
from importlib import resources
from pathlib import Path
from typing import Any

import pikepdf

from tests.support.dss_validate import harness_jar

TOOL = Path(__file__).resolve().parent.parent.parent / "tools" / "verapdf-check"
RUN_TIMEOUT_SECONDS = 600


def srgb_profile() -> bytes:
    """The sRGB ICC profile (version 2.1, as PDF/A-1 requires: ISO 19005-1 §6.2.2) that
    pikepdf ships for its own PDF/A support."""
    return (resources.files("pikepdf") / "pdfa" / "data" / "sRGB.icc").read_bytes()


def pdfa_pdf(part: int, pages: int = 1) -> bytes:
    """A PDF/A-``part``b document (1, 2 or 3): XMP identification, an sRGB output intent and
    vector-only content (a letterhead rule and text-like bars), so no font has to be
    embedded; PDF 1.4 for part 1, 1.7 otherwise, no object streams."""
    pdf = pikepdf.new()
    for n in range(pages):
        page = pdf.add_blank_page(page_size=(595, 842))
        page.Contents = pdf.make_stream(
            b"q 0 0 0 RG 1 w 72 770 m 523 770 l S "
            + b" ".join(b"0.2 0.2 0.2 rg 72 %d 400 6 re f" % (700 - 14 * i) for i in range(20))
            + b" Q"
        )
        page.Resources = pikepdf.Dictionary()
        del n
    icc = pdf.make_stream(srgb_profile())
    icc.N = 3
    pdf.Root.OutputIntents = pikepdf.Array(
        [
            pikepdf.Dictionary(
                Type=pikepdf.Name.OutputIntent,
                S=pikepdf.Name.GTS_PDFA1,
                OutputConditionIdentifier=pikepdf.String("sRGB IEC61966-2.1"),
                Info=pikepdf.String("sRGB IEC61966-2.1"),
                DestOutputProfile=icc,
            )
        ]
    )
    with pdf.open_metadata(set_pikepdf_as_editor=False) as meta:
        meta["dc:title"] = "Quyết định thử nghiệm PDF/A"
        meta["pdfaid:part"] = str(part)
        meta["pdfaid:conformance"] = "B"
    out = io.BytesIO()
    pdf.save(
        out,
        force_version="1.4" if part == 1 else "1.7",
        object_stream_mode=pikepdf.ObjectStreamMode.disable,
        compress_streams=True,
        fix_metadata_version=False,
    )
    return out.getvalue()


def verapdf_jar() -> Path:
    return harness_jar(TOOL, "verapdf-check")


def verapdf(jar: Path, files: list[Path]) -> list[dict[str, Any]]:
    """veraPDF's verdict per file, in order: ``{"file", "flavour", "compliant", "failed"}``
    (failed rules as ``clause-test``), the flavour being the one the file's XMP claims."""
    done = subprocess.run(
        ["java", "-jar", str(jar), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_SECONDS,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if len(lines) != len(files):
        raise AssertionError(
            f"verapdf-check exit {done.returncode}, {len(lines)} reports for {len(files)} files:"
            f"\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
        )
    return [json.loads(line) for line in lines]
