"""MLA701 and MLA704 on large data, side by side with Evidently's DataDriftPreset.

Generates (once, cached in ``--work``) a reference and a current Parquet file of ``--rows``
rows and ``--columns`` columns (four fifths numbers, one fifth categories), with a few columns
shifted in the current file (means, spreads, a category mix, a column that lost values), and a
small model trained on the reference. Then it runs, ``--runs`` times each:

* mlaudit: ``mlaudit scan model.joblib --reference ... --current ... --select MLA701
  --select MLA704``, the whole command (start-up, reading and hashing both files, loading the
  model in its worker, both rules, the report);
* the peer, when ``--peer-python`` names an interpreter with evidently installed (a separate
  virtual environment: evidently is no dependency of mlaudit): reading both files with pandas
  and running ``Report([DataDriftPreset()])`` on them.

Both run pinned to ``--cores`` CPUs. It prints a markdown table: the median wall time, the peak
resident memory of the largest process, the drifted columns each found against the columns
that were shifted, and the time ratio.

    .venv/bin/python bench/data_rules.py --peer-python /tmp/evidently-venv/bin/python
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parent.parent
TARGET = "y"
# Which columns the current file shifts, and how: ground truth for "same drifted columns".
SHIFTS = {
    "num_00": "mean +0.5 sd (a model input)",
    "num_01": "spread x1.6",
    "num_02": "30% of values missing",
    "cat_00": "category mix changed",
    "cat_01": "a category never seen (25%)",
}

PEER_SCRIPT = """
import json, sys, time
started = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
reference = pd.read_parquet(sys.argv[1]).drop(columns=[sys.argv[3]])
current = pd.read_parquet(sys.argv[2])
snapshot = Report([DataDriftPreset()]).run(current, reference)
drifted = []
for metric in snapshot.dict()["metrics"]:
    config = metric["config"]
    if config.get("type", "").endswith("ValueDrift") and metric["value"] >= config["threshold"]:
        drifted.append(config["column"])
print(json.dumps({"drifted": sorted(drifted), "seconds": time.perf_counter() - started}))
"""


@dataclass(frozen=True)
class Run:
    seconds: float
    peak_rss_mb: float
    drifted: tuple[str, ...]


def generate(work: Path, rows: int, columns: int, seed: int) -> tuple[Path, Path, Path]:
    """The two Parquet files and the model, made once per size."""
    folder = work / f"data-{rows}x{columns}"
    reference, current, model = (folder / n for n in
                                 ("reference.parquet", "current.parquet", "model.joblib"))
    if model.exists():
        return reference, current, model
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    categories = max(columns // 5, 2)
    numbers = columns - categories
    for path, drifted in ((reference, False), (current, True)):
        frame = _frame(rng, rows, numbers, categories, drifted=drifted)
        frame.to_parquet(path, row_group_size=100_000)
        if not drifted:
            inputs = ["num_00", "num_03", "num_04", "num_05", "num_06"]
            fit = frame.iloc[:20_000]
            joblib.dump(LogisticRegression().fit(fit[inputs], fit[TARGET]), model)
        del frame
    return reference, current, model


def _frame(
    rng: np.random.Generator, rows: int, numbers: int, categories: int, *, drifted: bool
) -> pd.DataFrame:
    data: dict[str, object] = {}
    for i in range(numbers):
        values = rng.normal(0.0, 1.0, rows) if i % 2 == 0 else rng.lognormal(0.0, 0.5, rows)
        data[f"num_{i:02d}"] = values
    levels = [f"level_{k}" for k in range(12)]
    weights = np.linspace(1.0, 2.0, len(levels))
    for i in range(categories):
        picks = rng.choice(len(levels), rows, p=weights / weights.sum())
        data[f"cat_{i:02d}"] = pd.Categorical.from_codes(picks, levels)
    frame = pd.DataFrame(data)
    if drifted:
        frame["num_00"] += 0.5
        frame["num_01"] = 1.0 + (frame["num_01"] - 1.0) * 1.6
        frame.loc[rng.random(rows) < 0.3, "num_02"] = np.nan
        reversed_weights = weights[::-1] ** 3
        picks = rng.choice(len(levels), rows, p=reversed_weights / reversed_weights.sum())
        frame["cat_00"] = pd.Categorical.from_codes(picks, levels)
        unseen = frame["cat_01"].astype(object)
        unseen[rng.random(rows) < 0.25] = "level_new"
        frame["cat_01"] = unseen.astype("category")
    else:
        score = frame["num_00"] + frame["num_03"] - frame["num_04"]
        frame[TARGET] = (score + rng.normal(0, 0.5, rows) > 0).astype(int)
    return frame


def _pinned(cores: int) -> list[str]:
    taskset = shutil.which("taskset")
    available = len(os.sched_getaffinity(0))
    if taskset is None or cores >= available:
        return []
    return [taskset, "-c", ",".join(str(c) for c in sorted(os.sched_getaffinity(0))[:cores])]


def _measured(command: list[str], env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS (MB) of the largest process of the tree, and stdout."""
    with tempfile.TemporaryFile() as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.PIPE, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        seconds = time.perf_counter() - started
        stderr = process.stderr.read().decode() if process.stderr else ""
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        stdout = out.read().decode()
    if process.returncode not in (0, 1):
        raise SystemExit(f"{command[0]} failed ({process.returncode}): {stderr[-2000:]}")
    return seconds, usage.ru_maxrss / 1024, stdout


def run_mlaudit(
    files: tuple[Path, Path, Path], work: Path, cores: int
) -> tuple[Run, dict[str, float]]:
    reference, current, model = files
    report = work / "mlaudit-report"
    command = [
        *_pinned(cores), str(ROOT / ".venv" / "bin" / "mlaudit"), "scan", str(model),
        "--reference", str(reference), "--current", str(current), "--target", TARGET,
        "--select", "MLA701", "--select", "MLA704", "--exit-zero", "-q",
        "-o", str(report), "--format", "json",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": str(cores), "OPENBLAS_NUM_THREADS": str(cores)}
    seconds, rss, _ = _measured(command, env)
    document = json.loads((report / "report.json").read_text())
    results = {r["rule_id"]: r for r in document["results"]}
    drift = results["MLA704"]
    if drift["status"] in ("error", "skipped"):
        raise SystemExit(f"MLA704 {drift['status']}: {drift['reason']}")
    durations = {rule: float(r["duration_s"] or 0.0) for rule, r in results.items()}
    return Run(seconds, rss, tuple(sorted(drift["metrics"]["drifted_features"]))), durations


def run_peer(python: str, files: tuple[Path, Path, Path], work: Path, cores: int) -> Run:
    script = work / "peer_evidently.py"
    script.write_text(PEER_SCRIPT)
    reference, current, _ = files
    command = [*_pinned(cores), python, str(script), str(reference), str(current), TARGET]
    seconds, rss, stdout = _measured(command)
    return Run(seconds, rss, tuple(json.loads(stdout.strip().splitlines()[-1])["drifted"]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--columns", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "data-bench")
    parser.add_argument("--peer-python", help="interpreter of a venv with evidently installed")
    parser.add_argument("--peer-runs", type=int, help="runs of the peer (default: --runs)")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    files = generate(args.work, args.rows, args.columns, args.seed)
    print(f"data: {args.rows} rows x {args.columns} columns, "
          f"{sum(f.stat().st_size for f in files[:2]) / 1e6:.0f} MB of Parquet; "
          f"shifted: {', '.join(f'{c} ({how})' for c, how in SHIFTS.items())}", file=sys.stderr)
    ours = []
    for number in range(args.runs):
        ours.append(run_mlaudit(files, args.work, args.cores))
        print(f"mlaudit run {number + 1}: {ours[-1][0].seconds:.1f} s", file=sys.stderr)
    peers = []
    for number in range((args.peer_runs or args.runs) if args.peer_python else 0):
        peers.append(run_peer(args.peer_python, files, args.work, args.cores))
        print(f"peer run {number + 1}: {peers[-1].seconds:.1f} s", file=sys.stderr)
    rows = [("mlaudit MLA701+MLA704 (whole scan)", [r for r, _ in ours])]
    if peers:
        rows.append(("Evidently DataDriftPreset", peers))
    expected = set(SHIFTS)
    mlaudit_median = statistics.median(r.seconds for r, _ in ours)
    load = ", ".join(f"{v:.1f}" for v in os.getloadavg())
    print(f"\n{args.rows:,} rows x {args.columns} columns, {args.cores} cores, median of "
          f"{args.runs} runs ({len(peers)} of the peer; load average at the end: {load})\n")
    print("| tool | median s | peak RSS MB | drifted columns found | shifted columns found "
          "| other columns flagged | time vs mlaudit |")
    print("|---|---|---|---|---|---|---|")
    for name, runs in rows:
        median = statistics.median(r.seconds for r in runs)
        found = set(runs[0].drifted)
        print(f"| {name} | {median:.1f} | {max(r.peak_rss_mb for r in runs):.0f} | "
              f"{len(found)} | {len(found & expected)} of {len(expected)} | "
              f"{', '.join(sorted(found - expected)) or '-'} | {median / mlaudit_median:.2f}x |")
    rules = {rule: statistics.median(d[rule] for _, d in ours) for rule in ("MLA701", "MLA704")}
    print(f"\nmlaudit rule time (median): MLA701 {rules['MLA701']:.1f} s, MLA704 "
          f"{rules['MLA704']:.1f} s; the rest is start-up, reading and hashing both files and "
          "loading the model in its worker.")
    if peers:
        same = set(ours[0][0].drifted) == set(peers[0].drifted)
        print(f"Same drifted columns: {'yes' if same else 'no'} (mlaudit: "
              f"{', '.join(ours[0][0].drifted)}; Evidently: {', '.join(peers[0].drifted)}).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
