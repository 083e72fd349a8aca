"""Benchmark what the isolated model worker costs: the same scans with and without isolation.

Run from the repository root::

    .venv/bin/python bench/isolation.py               # standard profile, 3 runs each
    .venv/bin/python bench/isolation.py --runs 1 --profile quick

The target is the benchmarks' random forest on the breast-cancer data (``rf-breast-cancer`` of
``bench/membership.py``, the same forest ``bench/robustness.py`` attacks), half of its rows as
members (``--train``) and half as non-members (``--holdout``). Each measurement is a fresh
``python -m mlaudit scan`` process, as a user runs it (a worker imports what its rules need,
so timing repeated scans inside one process would flatter the in-process mode), once with
``--isolation auto`` (a forked worker in every layer this machine has) and once with
``--isolation none``, interleaved. The table gives medians of ``--runs`` runs: the scan's wall
time, the rule's own time from the report (``duration_s``), and the ratios isolated /
in-process:

* MLA201 (black-box evasion) alone: goal at most 1.3x;
* MLA302 (reference-model membership inference, its reference fits on threads) alone;
* a whole scan (every installed rule);
* start-up: MLA702 alone, a rule that costs almost nothing beyond loading the model, so the
  wall-time difference is the price of the worker itself (fork, confinement, messages): goal
  at most 1 s.

Markdown goes to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
for entry in (REPO_ROOT, REPO_ROOT / "bench"):
    if str(entry) not in sys.path:
        sys.path.insert(0, str(entry))

from membership import TARGET, targets, write  # noqa: E402

TARGET_NAME = "rf-breast-cancer"
MODES = ("auto", "none")


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Timing:
    wall_s: float
    rule_s: float | None  # the selected rule's duration_s, for single-rule scans


def _scan(folder: Path, rule: str | None, profile: str, mode: str) -> Timing:
    """One fresh ``mlaudit scan`` process; refuses a run where any rule ended in error."""
    with tempfile.TemporaryDirectory() as output:
        command = [
            sys.executable, "-m", "mlaudit", "scan", str(folder / "model.joblib"),
            "--train", str(folder / "train.csv"), "--holdout", str(folder / "holdout.csv"),
            "--target", TARGET, "--profile", profile, "--isolation", mode, "--exit-zero",
            "-q", "-o", output, "--format", "json", *(["--select", rule] if rule else []),
        ]
        started = time.perf_counter()
        subprocess.run(command, check=True, cwd=REPO_ROOT, env=os.environ.copy())
        wall = time.perf_counter() - started
        report = json.loads((Path(output) / "report.json").read_text())
    broken = [r for r in report["results"] if r["status"] == "error"]
    if broken:
        raise RuntimeError(f"{broken[0]['rule_id']} error ({mode}): {broken[0]['reason']}")
    durations = {r["rule_id"]: r["duration_s"] for r in report["results"]}
    return Timing(wall, durations.get(rule) if rule else None)


def measure(
    folder: Path, rule: str | None, profile: str, runs: int
) -> dict[str, list[Timing]]:
    """Timings per mode; the modes alternate so drift in machine load hits both."""
    timings: dict[str, list[Timing]] = {mode: [] for mode in MODES}
    for _ in range(runs):
        for mode in MODES:
            timings[mode].append(_scan(folder, rule, profile, mode))
    return timings


def _median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _cells(isolated: float | None, direct: float | None) -> list[str]:
    if isolated is None or direct is None:
        return ["", "", ""]
    ratio = f"{isolated / direct:.2f}x" if direct > 0 else ""
    return [f"{isolated:.2f}", f"{direct:.2f}", ratio]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--profile", default="standard", choices=("quick", "standard"))
    args = parser.parse_args(argv)
    target = next(t for t in targets() if t.name == TARGET_NAME)
    cases = [
        ("MLA201 black-box evasion", "MLA201", "rule <= 1.3x"),
        ("MLA302 reference-model membership", "MLA302", ""),
        ("whole scan (every installed rule)", None, ""),
        ("start-up: MLA702 alone", "MLA702", "wall +<= 1 s"),
    ]
    lines = [
        f"Target: {target.description}; profile {args.profile}; median of {args.runs} runs, "
        f"each a fresh process; Python {platform.python_version()} on "
        f"{platform.platform(terse=True)}, {os.cpu_count()} cores.",
        "",
        "| scan | wall isolated (s) | wall in-process (s) | wall ratio | wall difference (s) "
        "| rule isolated (s) | rule in-process (s) | rule ratio | goal |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as root:
        write(target, Path(root))
        folder = Path(root) / target.name
        for name, rule, goal in cases:
            _progress(f"{name}: {args.runs} runs per mode")
            timings = measure(folder, rule, args.profile, args.runs)
            walls = {m: _median([t.wall_s for t in timings[m]]) for m in MODES}
            rules = {m: _median([t.rule_s for t in timings[m]]) for m in MODES}
            wall_cells = _cells(walls["auto"], walls["none"])
            difference = (walls["auto"] or 0.0) - (walls["none"] or 0.0)
            lines.append(
                f"| {name} | {' | '.join(wall_cells)} | {difference:+.2f} | "
                f"{' | '.join(_cells(rules['auto'], rules['none']))} | {goal} |"
            )
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
