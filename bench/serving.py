"""MLA801's p99 stability across runs, against a plain ``timeit`` loop over the same model.

    .venv/bin/python bench/serving.py [--runs 5] [--budget 10] [--trees 100]

One run, one Markdown table on stdout (progress on stderr). Two scikit-learn models fitted on
the bundled breast-cancer data (offline): a RandomForest (``--trees`` trees) and a
StandardScaler + LogisticRegression pipeline, saved with joblib.

- **mlaudit**: MLA801 through ``mlaudit.testing.run_rule`` (the real engine: load gate,
  isolated worker, the model loaded there), default options (``p99_tolerance`` 0.02),
  ``latency_budget_s`` = ``--budget``; the p50 and p99 are its single-row estimates.
- **timeit**: the model loaded here with joblib, ``timeit.repeat(number=1)`` calling
  ``model.predict`` on one-row DataFrames cycled from the same data, as many calls as MLA801's
  median run made (so both estimate the p99 from as many timings); p50 and p99 by
  ``numpy.percentile``. Both time with the garbage collector off.

Runs alternate (mlaudit, timeit, mlaudit, ...) so both see the same machine. The **spread**
of the p99 is (max - min) / median over the runs; the goal is within 10% on an idle machine.
The load average (1, 5, 15 min) is printed before and after: on a shared machine, the tail of
a latency distribution is the first thing other work moves.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import timeit
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlaudit.rules.serving import ServingProfile
from mlaudit.testing import make_subject, run_rule

TARGET = "target"


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_average() -> str:
    return " / ".join(f"{v:.2f}" for v in os.getloadavg())


def build(folder: Path, trees: int) -> tuple[Path, dict[str, Path]]:
    frame = load_breast_cancer(as_frame=True).frame
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    data = folder / "data.csv"
    frame.to_csv(data, index=False)
    features, labels = frame.drop(columns=TARGET), frame[TARGET]
    models = {
        f"RandomForest ({trees} trees)": RandomForestClassifier(
            n_estimators=trees, random_state=0
        ),
        "LogisticRegression pipeline": make_pipeline(
            StandardScaler(), LogisticRegression(max_iter=1000)
        ),
    }
    paths = {}
    for index, (name, model) in enumerate(models.items()):
        model.fit(features, labels)
        paths[name] = folder / f"model{index}.joblib"
        joblib.dump(model, paths[name])
    return data, paths


def mlaudit_run(model: Path, data: Path, budget: float, seed: int) -> tuple[float, float, int]:
    subject = make_subject(model, data=data, target=TARGET)
    result = run_rule(
        ServingProfile, subject, options={"latency_budget_s": budget}, seed=seed,
        profile="standard",
    )
    if result.status.value != "passed":
        raise SystemExit(f"MLA801 did not pass: {result.status.value} {result.reason}")
    metrics = result.metrics
    p50, p99, latency = metrics["p50_ms"], metrics["p99_ms"], metrics["latency"]
    assert isinstance(p50, dict)
    assert isinstance(p99, dict)
    assert isinstance(latency, dict)
    return float(p50["estimate"]), float(p99["estimate"]), int(latency["calls"])


def timeit_run(model: object, rows: list[pd.DataFrame], calls: int) -> tuple[float, float]:
    cycle = itertools.cycle(rows)
    predict = model.predict  # type: ignore[attr-defined]
    timings = np.asarray(timeit.repeat(lambda: predict(next(cycle)), number=1, repeat=calls))
    p50, p99 = np.percentile(timings * 1e3, [50, 99])
    return float(p50), float(p99)


def spread(values: list[float]) -> float:
    return (max(values) - min(values)) / float(np.median(values)) * 100


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--budget", type=float, default=10.0,
                        help="MLA801's latency_budget_s per run (seconds)")
    parser.add_argument("--trees", type=int, default=100)
    args = parser.parse_args()
    before = load_average()
    rows_table = []
    with tempfile.TemporaryDirectory() as folder:
        data, models = build(Path(folder), args.trees)
        features = pd.read_csv(data).drop(columns=TARGET)
        rng = np.random.default_rng(0)
        picks = rng.choice(len(features), min(len(features), 512), replace=False)
        one_rows = [features.iloc[[int(i)]] for i in picks]
        for name, path in models.items():
            loaded = joblib.load(path)
            ours: list[tuple[float, float, int]] = []
            theirs: list[tuple[float, float]] = []
            for run in range(args.runs):
                ours.append(mlaudit_run(path, data, args.budget, seed=run))
                calls = int(np.median([c for _, _, c in ours]))
                theirs.append(timeit_run(loaded, one_rows, calls))
                log(f"{name} run {run + 1}: MLA801 p99 {ours[-1][1]:.3f} ms "
                    f"({ours[-1][2]} calls), timeit p99 {theirs[-1][1]:.3f} ms")
            p99_ours = [p for _, p, _ in ours]
            p99_theirs = [p for _, p in theirs]
            rows_table.append((
                name,
                float(np.median([p for p, _, _ in ours])), float(np.median(p99_ours)),
                spread(p99_ours), int(np.median([c for _, _, c in ours])),
                float(np.median([p for p, _ in theirs])), float(np.median(p99_theirs)),
                spread(p99_theirs),
            ))
    after = load_average()
    print(f"Load average (1/5/15 min): before {before}, after {after}; "
          f"{os.cpu_count()} CPUs; {args.runs} runs; MLA801 latency budget {args.budget:g} s.\n")
    print("| model | MLA801 p50 ms | MLA801 p99 ms | MLA801 p99 spread | calls | "
          "timeit p50 ms | timeit p99 ms | timeit p99 spread | p99 ratio MLA801/timeit |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, p50, p99, ours_spread, calls, t50, t99, theirs_spread in rows_table:
        print(f"| {name} | {p50:.3f} | {p99:.3f} | {ours_spread:.1f}% | {calls} | {t50:.3f} | "
              f"{t99:.3f} | {theirs_spread:.1f}% | {p99 / t99:.2f} |")


if __name__ == "__main__":
    main()
