"""Scale: wall time, peak memory and the per-rule split of scans of large generated models.

Run from the repository root::

    .venv/bin/python bench/scale.py --sizes 10000,100000          # RandomForest, ~10 min
    .venv/bin/python bench/scale.py --models rf,hgb --sizes 10000 --select MLA302
    .venv/bin/python bench/scale.py --sizes 1000000 --modes 2      # the 1M-row file (memory)

Each target is ``make_classification`` with 20 features, ``--sizes`` rows of training data
and as many holdout rows, a ``RandomForestClassifier()`` (``rf``, 100 trees, one core, as
users save it) or ``HistGradientBoostingClassifier()`` (``hgb``), saved with joblib next to
its CSV files (cached in ``$TMPDIR/mlaudit-scale-cache``). Every configuration is one
``mlaudit scan`` process (the CLI, as a user runs it), pinned to its cores with
``sched_setaffinity``; its peak memory is the largest resident set of the scan and its
workers (``RUSAGE_CHILDREN``). Modes: ``1`` / ``2`` / ``all`` local cores, ``cluster-N``
a local Dask cluster of N one-thread worker processes (``--workers N``) on every core.

Columns: wall seconds (median of ``--repeat`` runs), peak MB, the three most expensive rules,
MLA302's seconds, references fitted and seconds per reference, and the floor: one fit of the
audited estimator on as many rows as a reference trains on, on every core (what a reference
costs at best). For ``cluster-N`` the ideal is the one-core run's MLA302 time divided by N;
``vs ideal`` is the cluster's MLA302 time over it; ``vs 1 worker`` is the same against the
``cluster-1`` run's MLA302 time divided by N (the split of the same cluster work, whose
per-worker model load both pay). ``cluster start`` is the time to start and
open and close the cluster alone (start N workers, import what a task runs on them, stop):
the fixed overhead paid once per scan, outside every rule.
Markdown to stdout, progress to stderr, with the load average (the machine may be shared).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
MLAUDIT = [sys.executable, "-m", "mlaudit"]
FEATURES = 20
TARGET = "label"


_PEAK_WRAPPER = (
    "import resource, subprocess, sys; done = subprocess.run(sys.argv[1:]); "
    "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
)


@dataclass(frozen=True)
class Run:
    wall_s: float
    peak_mb: float
    rules: dict[str, float]
    reference_metrics: dict[str, Any]
    exit_code: int
    # Rules that ended in error (a profile must have none: it scales down instead).
    errors: tuple[str, ...] = ()


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def make_target(kind: str, rows: int, cache: Path) -> tuple[Path, float]:
    """The model and data files for ``kind`` on ``rows`` rows, and the model's fit seconds."""
    import joblib
    import pandas as pd
    from sklearn.datasets import make_classification

    folder = cache / f"{kind}-{rows}"
    stamp = folder / "fit_seconds.txt"
    if stamp.exists():
        return folder, float(stamp.read_text())
    folder.mkdir(parents=True, exist_ok=True)
    x, y = make_classification(
        n_samples=2 * rows, n_features=FEATURES, n_informative=10, random_state=0
    )
    columns = [f"f{i}" for i in range(FEATURES)]
    train = pd.DataFrame(x[:rows], columns=columns).assign(**{TARGET: y[:rows]})
    holdout = pd.DataFrame(x[rows:], columns=columns).assign(**{TARGET: y[rows:]})
    model = estimator(kind)
    started = time.perf_counter()
    model.fit(train[columns], train[TARGET])
    fit_s = time.perf_counter() - started
    joblib.dump(model, folder / "model.joblib")
    train.to_csv(folder / "train.csv", index=False)
    holdout.to_csv(folder / "holdout.csv", index=False)
    stamp.write_text(f"{fit_s:.3f}")
    return folder, fit_s


def estimator(kind: str) -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier

    return RandomForestClassifier(random_state=0) if kind == "rf" else (
        HistGradientBoostingClassifier(random_state=0)
    )


def floor_seconds(kind: str, folder: Path, rows: int) -> float:
    """One fit of the audited estimator on ``rows`` rows, on every core: a reference's floor."""
    import pandas as pd

    train = pd.read_csv(folder / "train.csv", nrows=rows)
    model = estimator(kind)
    if "n_jobs" in model.get_params():
        model.set_params(n_jobs=-1)
    started = time.perf_counter()
    model.fit(train.drop(columns=[TARGET]), train[TARGET])
    return time.perf_counter() - started


def cores_for(mode: str) -> set[int]:
    available = sorted(os.sched_getaffinity(0))
    if mode in {"1", "2"}:
        return set(available[: int(mode)])
    return set(available)


def scan(folder: Path, mode: str, args: argparse.Namespace, out: Path) -> Run:
    command = [
        *MLAUDIT, "scan", str(folder / "model.joblib"), "--train", str(folder / "train.csv"),
        "--holdout", str(folder / "holdout.csv"), "--target", TARGET, "--profile",
        args.profile, "--exit-zero", "-q", "-o", str(out), "--format", "json",
    ]
    for rule in args.select:
        command += ["--select", rule]
    if mode.startswith("cluster-"):
        command += ["--workers", mode.split("-", 1)[1]]
    cores = cores_for(mode)
    started = time.perf_counter()
    # A fresh wrapper per scan, so its RUSAGE_CHILDREN peak (the largest resident set of the
    # scan and every worker it waited for, in KiB) is this scan's alone.
    done = subprocess.run(
        [sys.executable, "-c", _PEAK_WRAPPER, *command], cwd=REPO_ROOT, capture_output=True,
        text=True, check=False, preexec_fn=lambda: os.sched_setaffinity(0, cores),
    )
    wall = time.perf_counter() - started
    *_, peak_line = done.stdout.strip().splitlines() or ["0 0"]
    code, peak_kib = (int(v) for v in peak_line.split())
    peak = peak_kib / 1024
    if code not in {0, 1}:
        log(f"scan failed ({code}): {done.stderr.strip()[-400:]}")
    report = json.loads((out / "report.json").read_text())
    rules = {r["rule_id"]: float(r.get("duration_s") or 0.0) for r in report["results"]}
    reference = next(
        (r.get("metrics", {}) for r in report["results"] if r["rule_id"] == "MLA302"), {}
    )
    errors = tuple(r["rule_id"] for r in report["results"] if r["status"] == "error")
    return Run(wall, peak, rules, reference, code, errors)


def cluster_start_seconds(workers: int) -> float:
    from mlaudit.distributed import ClusterSettings, open_cluster

    started = time.perf_counter()
    with open_cluster(ClusterSettings(workers=workers)):
        pass
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="10000,100000",
                        help="training rows per target, comma-separated (1000000 for 1M)")
    parser.add_argument("--models", default="rf", help="rf, hgb or rf,hgb")
    parser.add_argument("--modes", default="1,2,all,cluster-2",
                        help="1, 2, all (local cores) and cluster-N, comma-separated")
    parser.add_argument("--profile", default="standard")
    parser.add_argument("--select", action="append", default=[],
                        help="rules to run (repeatable; default: every rule)")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mlaudit-scale-cache")
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    modes = args.modes.split(",")
    log(f"load average at start: {os.getloadavg()}")
    rows_out: list[str] = []
    starts: dict[int, float] = {}
    for kind in args.models.split(","):
        for size in sizes:
            log(f"target {kind} on {size} rows")
            folder, fit_s = make_target(kind, size, args.cache_dir)
            runs: dict[str, Run] = {}
            for mode in modes:
                measured = []
                for repeat in range(args.repeat):
                    with tempfile.TemporaryDirectory() as out:
                        log(f"  {kind} {size} mode {mode} run {repeat + 1}")
                        measured.append(scan(folder, mode, args, Path(out)))
                runs[mode] = min(measured, key=lambda r: r.wall_s)  # kept for the split
                runs[mode] = Run(
                    statistics.median(r.wall_s for r in measured),
                    max(r.peak_mb for r in measured), runs[mode].rules,
                    runs[mode].reference_metrics, runs[mode].exit_code,
                    tuple(sorted({e for r in measured for e in r.errors})),
                )
            training_rows = int(
                next(iter(runs.values())).reference_metrics.get("reference_training_rows") or 0
            )
            floor = floor_seconds(kind, folder, training_rows) if training_rows else None
            for mode, run in runs.items():
                rows_out.append(
                    row(kind, size, fit_s, mode, run=run, runs=runs, floor=floor, starts=starts)
                )
    print(f"load average at end: {os.getloadavg()}; cores: {len(os.sched_getaffinity(0))}\n")
    print("| model | rows | target fit s | mode | wall s | peak MB | top rules (s) | MLA302 s "
          "| refs | s/ref | floor s/ref | vs ideal | vs 1 worker | cluster start s | errors |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows_out))


def row(
    kind: str, size: int, fit_s: float, mode: str, *, run: Run, runs: dict[str, Run],
    floor: float | None, starts: dict[int, float],
) -> str:
    top = sorted(run.rules.items(), key=lambda item: -item[1])[:3]
    split = ", ".join(f"{rule} {seconds:.1f}" for rule, seconds in top)
    mla302 = run.rules.get("MLA302")
    refs = run.reference_metrics.get("references")
    per_ref = f"{mla302 / refs:.2f}" if mla302 and refs else "-"
    ideal = one_worker = start = "-"
    if mode.startswith("cluster-") and mla302:
        workers = int(mode.split("-", 1)[1])
        local = runs["1"].rules.get("MLA302") if "1" in runs else None
        if local:
            ideal = f"{mla302 / (local / workers):.2f}"
        alone = runs["cluster-1"].rules.get("MLA302") if "cluster-1" in runs else None
        if alone and workers > 1:
            one_worker = f"{mla302 / (alone / workers):.2f}"
        if workers not in starts:
            starts[workers] = cluster_start_seconds(workers)
        start = f"{starts[workers]:.1f}"
    return (
        f"| {kind} | {size:,} | {fit_s:.1f} | {mode} | {run.wall_s:.1f} | {run.peak_mb:.0f} "
        f"| {split} | {mla302 if mla302 is None else round(mla302, 1)} | {refs} | {per_ref} "
        f"| {'-' if floor is None else f'{floor:.2f}'} | {ideal} | {one_worker} | {start} "
        f"| {', '.join(run.errors) or 'none'} |"
    )


if __name__ == "__main__":
    main()
