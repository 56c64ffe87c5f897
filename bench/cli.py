"""`make bench`, the command line (issue 13, item 6): ``signing-service verify`` of a one-page
PDF against ``python -c "import pyhanko.sign.validation"``, in the same run.

The document: a one-page PDF signed at B-T by ``signing-service sign`` (agency A's seal, the dev
PKI's TSA) into a fresh development deployment in a temporary folder. Then, alternately, each a
new process as a person runs it:

- *import*: ``python -c "import pyhanko.sign.validation"`` (the floor: any verification
  imports at least this);
- *verify*: ``signing-service verify signed.pdf`` against that deployment, no server running:
  the dev PKI's OCSP/CRL answered in-process, the registry read from its database (the
  deployment's world, what ``make run`` answers);
- *verify, no database*: the same file with only the dev PKI (a data directory without a
  database): the signatures alone.

Every process runs with Python's bytecode cache as an installed program has it: one warm-up run
of each writes the ``.pyc`` files first (this machine's shells set PYTHONDONTWRITEBYTECODE,
which would otherwise make every run compile every module from source, the floor included).
Wall time (what a person waits) and CPU time (user + system, children included) per run;
medians. The load average is reported: on a
machine shared with other work the wall times stretch, the ratio much less.

Target (issue 13): verify ÷ import ≤ 2 (median wall time).
"""

from __future__ import annotations

import argparse
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from bench.run import machine
from bench.servers import write_results
from tests.support.pdfs import make_pdf

BEGIN, END = "<!-- cli:begin -->", "<!-- cli:end -->"
TARGET_RATIO = 2.0
BIN = Path(sys.executable).parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _timed(command: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the process and its children, exit code)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=cwd, capture_output=True, check=False)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--quick", action="store_true", help="3 rounds")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args()
    rounds = 3 if args.quick else args.rounds
    with tempfile.TemporaryDirectory(prefix="bench-cli-") as tmp:
        root = Path(tmp)
        base = {k: v for k, v in os.environ.items() if not k.startswith("SIGNING_SERVICE_")}
        base.pop("PYTHONDONTWRITEBYTECODE", None)
        deployment = {
            **base,
            "SIGNING_SERVICE_DATA_DIR": str(root / "var"),
            "SIGNING_SERVICE_DEV_PKI_PORT": str(_free_port()),
        }
        no_database = {
            **base,
            "SIGNING_SERVICE_DATA_DIR": str(root / "empty"),
            "SIGNING_SERVICE_DEV_PKI_DIR": str(root / "var" / "pki"),
        }
        src, signed = root / "in.pdf", root / "signed.pdf"
        src.write_bytes(make_pdf("Quyet dinh so 13/QD-UBND"))
        # The deployment is made explicitly: `sign` refuses a missing data directory.
        subprocess.run(
            [str(BIN / "signing-service"), "pki", "init"],
            env=deployment,
            cwd=root,
            capture_output=True,
            check=True,
        )
        made = subprocess.run(
            [
                *(str(BIN / "signing-service"), "sign", str(src), str(signed)),
                *("--profile", "agency-a-seal", "--level", "B-T"),
            ],
            env=deployment,
            cwd=root,
            capture_output=True,
            text=True,
            check=False,
        )
        if made.returncode != 0:
            print(made.stderr, file=sys.stderr)
            return 1
        runs = {
            "import": ([sys.executable, "-c", "import pyhanko.sign.validation"], base),
            "verify": ([str(BIN / "signing-service"), "verify", str(signed)], deployment),
            "verify, no database": (
                [str(BIN / "signing-service"), "verify", str(signed)],
                no_database,
            ),
        }
        expected = {"import": 0, "verify": 0, "verify, no database": 0}
        for command, env in runs.values():  # warm-up: writes the bytecode caches
            subprocess.run(command, env=env, cwd=root, capture_output=True, check=False)
        load_before = os.getloadavg()[0]
        walls: dict[str, list[float]] = {name: [] for name in runs}
        cpus: dict[str, list[float]] = {name: [] for name in runs}
        for _ in range(rounds):
            for name, (command, env) in runs.items():
                wall, cpu, code = _timed(command, env, root)
                if code != expected[name]:
                    print(f"{name}: exit {code}, expected {expected[name]}", file=sys.stderr)
                    return 1
                walls[name].append(wall)
                cpus[name].append(cpu)
        load_after = os.getloadavg()[0]
    wall = {name: statistics.median(v) for name, v in walls.items()}
    cpu = {name: statistics.median(v) for name, v in cpus.items()}
    ratio = wall["verify"] / wall["import"]
    ratio_bare = wall["verify, no database"] / wall["import"]
    for name in runs:
        print(f"{name:>22}: wall {wall[name] * 1000:7.0f} ms  cpu {cpu[name] * 1000:7.0f} ms")
    print(f"verify ÷ import: {ratio:.2f} (no database: {ratio_bare:.2f}); target ≤ {TARGET_RATIO}")
    print(f"load average: {load_before:.1f} → {load_after:.1f}")
    text = "\n".join(
        [
            BEGIN,
            "## Command line: `verify` of a one-page PDF against importing pyHanko (same run)",
            "",
            f"Measured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC by `python -m bench.cli` (in "
            f"`make bench`) on: {machine()}. "
            "A one-page PDF signed at B-T by `signing-service sign` into a fresh development "
            "deployment; no server running (the dev PKI's OCSP/CRL answered in-process). Each "
            f"a new process, alternately, {rounds} rounds after a warm-up that writes the "
            "bytecode caches; medians. *verify*: the deployment's registry read from its "
            "database as well; *no database*: the signatures alone. CPU: user + system, "
            f"children included. Load average {load_before:.1f} → {load_after:.1f} "
            "(2 cores shared with other work stretch the wall times).",
            "",
            "| process | wall, median ms | CPU, median ms |",
            "|---|---:|---:|",
            *(f"| {name} | {wall[name] * 1000:.0f} | {cpu[name] * 1000:.0f} |" for name in runs),
            f"| verify ÷ import (target ≤ {TARGET_RATIO:g}) | {ratio:.2f} | "
            f"{cpu['verify'] / cpu['import']:.2f} |",
            f"| verify, no database ÷ import | {ratio_bare:.2f} | "
            f"{cpu['verify, no database'] / cpu['import']:.2f} |",
            "",
            END,
        ]
    )
    if not args.no_write:
        write_results(text, BEGIN, END)
    # Like the other bench scripts: the figures are the result, a missed target is read in
    # them (a failing exit would stop `make bench` before the scripts after this one).
    return 0


if __name__ == "__main__":
    sys.exit(main())
