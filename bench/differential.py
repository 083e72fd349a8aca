"""Differential benchmark: the static scan against the real loaders on generated cases.

Runs ``--cases`` seeded cases (opcode pickles, joblib streams, torch zip layouts; see
``tests/differential/strategies.py``) in ``--workers`` parallel processes, each with its own
long-lived oracle child (``tests/differential/oracle.py``), and prints a Markdown table. A
mismatch is a case the load gate allows although the real loader resolved a global the scan
did not report (a bypass), or a real-loader crash on an allowed file; each one's bytes are
written to ``--out``. Every dangerous call in the cases would create a canary file; the run
fails if it exists at the end.

    .venv/bin/python bench/differential.py --cases 1000000 --workers 2 --out /tmp/mismatches
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, fields
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.differential.oracle import Oracle
from tests.differential.property import evaluate
from tests.differential.strategies import seeded_cases, torch_available


@dataclass
class Tally:
    cases: int = 0
    accepted: int = 0
    refused: int = 0
    checked: int = 0
    mismatches: int = 0
    crashes: int = 0

    def add(self, other: Tally) -> None:
        for field in fields(self):
            setattr(self, field.name, getattr(self, field.name) + getattr(other, field.name))


_WORKER_ORACLE: list[Oracle] = []


def _chunk(seed: int, size: int, canary: Path, out: Path, with_torch: bool) -> Tally:
    """One seeded chunk through this worker's oracle; mismatching cases are written to ``out``."""
    if not _WORKER_ORACLE:
        _WORKER_ORACLE.append(Oracle())
    cases = seeded_cases(seed, size, canary, with_torch)
    outcomes = evaluate(cases, _WORKER_ORACLE[0], fast=True, directory=out)
    tally = Tally(cases=len(cases))
    for case, outcome in zip(cases, outcomes, strict=True):
        tally.accepted += outcome.accepted
        tally.refused += not outcome.accepted
        tally.checked += outcome.checked
        tally.crashes += outcome.accepted and outcome.crashed
        if outcome.failed:
            tally.mismatches += 1
            digest = hashlib.sha256(case.data).hexdigest()[:16]
            (out / f"{case.kind}-{digest}.bin").write_bytes(case.data)
            (out / f"{case.kind}-{digest}.txt").write_text(
                f"{case.label}\nmissing: {', '.join(outcome.missing)}\n"
                f"crashed: {outcome.crashed}\n"
            )
    return tally


def table(tally: Tally, seconds: float) -> str:
    rate = tally.cases / seconds if seconds else 0.0
    rows = [
        ("cases", f"{tally.cases:,}"),
        ("accepted by the scan (gate ALLOWED)", f"{tally.accepted:,}"),
        ("refused by the scan", f"{tally.refused:,}"),
        ("real-loader resolutions checked", f"{tally.checked:,}"),
        ("mismatches (bypasses)", f"{tally.mismatches:,}"),
        ("real-loader crashes or hangs on accepted files", f"{tally.crashes:,}"),
        ("cases/s", f"{rate:,.0f}"),
        ("wall time (s)", f"{seconds:,.0f}"),
    ]
    return "\n".join(["| measure | value |", "|---|---:|", *(f"| {k} | {v} |" for k, v in rows)])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=2_000, help="cases per seeded chunk")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0, help="first chunk's seed")
    parser.add_argument("--out", type=Path, required=True, help="folder for mismatching cases")
    parser.add_argument("--no-torch", action="store_true", help="leave out torch zip cases")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with_torch = torch_available() and not args.no_torch
    canary = Path(tempfile.mkdtemp(prefix="mlaudit-diff-")) / "canary"
    chunks = [
        (args.seed + i, min(args.chunk, args.cases - start))
        for i, start in enumerate(range(0, args.cases, args.chunk))
    ]
    total = Tally()
    started = time.monotonic()
    with ProcessPoolExecutor(args.workers) as pool:
        futures = [
            pool.submit(_chunk, seed, size, canary, args.out, with_torch) for seed, size in chunks
        ]
        for done, future in enumerate(as_completed(futures), 1):
            total.add(future.result())
            print(
                f"{done}/{len(chunks)} chunks: {total.cases:,} cases, {total.mismatches} "
                f"mismatches, {total.cases / (time.monotonic() - started):,.0f} cases/s",
                file=sys.stderr, flush=True,
            )
    print(table(total, time.monotonic() - started))
    if canary.exists():
        print(f"CANARY CREATED: {canary}: a real dangerous callable ran", file=sys.stderr)
        return 2
    return 1 if total.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
