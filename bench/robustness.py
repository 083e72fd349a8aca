"""Benchmark MLA201's batched attack against ART's HopSkipJump, and MLA203's verifier.

Run from the repository root::

    .venv/bin/python bench/robustness.py [--samples 20] [--runs 3]

One run, printed as Markdown tables (progress on stderr):

1. **MLA201 vs ART HopSkipJump** on a 100-tree RandomForest (``load_breast_cancer``) and a
   GradientBoostingClassifier (``load_digits``), each trained on two thirds of the data. Both
   attack the same correctly classified test rows in the same space (features in units of
   their robust spread, constant features frozen; integer rounding off, since ART does not
   round), with the L2 norm. ART runs with ``max_iter=10, max_eval=200, init_eval=100`` (the issue's
   setting); its queries per row are counted, and MLA201 gets exactly that budget. Columns:
   wall seconds, success rate, median smallest L2 perturbation (root mean square, in robust
   spreads), queries per row. ART runs once (it is slow); mlaudit's time is the median of
   ``--runs``.
2. **The physical floor**: the time the model needs to answer MLA201's queries itself, sent
   in batches of 4,096 rows (median of ``--runs``); the goal is MLA201 ≤ 3x that. Measured at
   the benchmark's row count and at 200 rows (the standard profile).
3. **MLA203**: certified L∞ radius per row (seconds per row, median radius) beside the attack's
   radius for the same rows.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mlaudit.loaders.sklearn import wrap_estimator  # noqa: E402
from mlaudit.robustness.hopskipjump import AttackSettings, hop_skip_jump  # noqa: E402
from mlaudit.robustness.oracle import Oracle  # noqa: E402
from mlaudit.robustness.space import FeatureSpace, distance  # noqa: E402
from mlaudit.robustness.trees import Verifier, leaf_table  # noqa: E402
from mlaudit.subject.model_info import LoadedModel  # noqa: E402

BATCH = 4096


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Target:
    name: str
    estimator: Any
    test: pd.DataFrame
    labels: np.ndarray
    space: FeatureSpace
    model: LoadedModel


def _targets() -> list[Target]:
    from sklearn.datasets import load_breast_cancer, load_digits
    from sklearn.ensemble import GradientBoostingClassifier, RandomForestClassifier
    from sklearn.model_selection import train_test_split

    made = []
    for name, loader, estimator in [
        (
            "RandomForest(100), breast cancer",
            load_breast_cancer,
            RandomForestClassifier(n_estimators=100, random_state=0),
        ),
        ("GradientBoosting, digits", load_digits, GradientBoostingClassifier(random_state=0)),
    ]:
        features, labels = loader(return_X_y=True, as_frame=True)
        features.columns = [str(c).replace(" ", "_") for c in features.columns]
        train, test, y_train, y_test = train_test_split(
            features, labels, test_size=1 / 3, random_state=0, stratify=labels
        )
        _progress(f"training {name}")
        estimator.fit(train, y_train)
        space = FeatureSpace.from_data([features])
        # ART cannot round integers; both attacks get the same continuous space.
        space = dataclasses.replace(space, integer=np.zeros(space.dimensions, dtype=bool))
        made.append(
            Target(
                name,
                estimator,
                test.reset_index(drop=True),
                y_test.to_numpy(),
                space,
                wrap_estimator(estimator, "sklearn", name),
            )
        )
    return made


def _correct_rows(target: Target, count: int) -> np.ndarray:
    predictions = target.estimator.predict(target.test)
    return np.flatnonzero(predictions == target.labels)[:count]


def run_art(target: Target, rows: np.ndarray) -> dict[str, Any]:
    from art.attacks.evasion import HopSkipJump
    from art.estimators.classification import BlackBoxClassifier

    queried = [0]
    classes = list(target.estimator.classes_)
    # ART's predictions must come from the row's own frozen features: attack one row at a time
    # (which is what HopSkipJump does anyway), each with its row as the base.
    started = time.perf_counter()
    adversarial = []
    for row in rows:
        base = target.test.iloc[[row]].reset_index(drop=True)

        def predict_row(unit: np.ndarray, base: pd.DataFrame = base) -> np.ndarray:
            queried[0] += len(unit)
            frame = target.space.frame(base, np.zeros(len(unit), dtype=int), unit)
            labels = target.estimator.predict(frame)
            return np.eye(len(classes))[[classes.index(v) for v in labels]]

        classifier = BlackBoxClassifier(
            predict_row,
            input_shape=(target.space.dimensions,),
            nb_classes=len(classes),
            clip_values=(np.zeros(target.space.dimensions), target.space.extent),
        )
        attack = HopSkipJump(
            classifier, norm=2, max_iter=10, max_eval=200, init_eval=100, verbose=False
        )
        origin = target.space.to_unit(base)
        label = np.eye(len(classes))[[classes.index(target.labels[row])]]
        adversarial.append(attack.generate(origin.astype(np.float32), y=label)[0])
    elapsed = time.perf_counter() - started
    points = np.array(adversarial, dtype=np.float64)
    origin = target.space.to_unit(target.test.iloc[rows])
    flipped = (
        target.estimator.predict(target.space.frame(target.test, rows, points))
        != (target.labels[rows])
    )
    sizes = np.where(flipped, distance(points - origin, "l2"), np.inf)
    return {"seconds": elapsed, "sizes": sizes, "queries": queried[0] / len(rows)}


def run_mlaudit(target: Target, rows: np.ndarray, budget: int) -> tuple[dict[str, Any], int]:
    oracle = Oracle(target.model, target.space, target.test, target.labels)
    clean = target.estimator.predict(target.test)
    started = time.perf_counter()
    outcome = hop_skip_jump(
        oracle,
        rows,
        AttackSettings("l2", budget),
        np.random.default_rng(0),
        donors=target.space.to_unit(target.test),
        donor_outputs=clean,
    )
    elapsed = time.perf_counter() - started
    return {
        "seconds": elapsed,
        "sizes": outcome.distance,
        "queries": float(oracle.queries[rows].mean()),
    }, int(oracle.queries.sum())


def floor_seconds(target: Target, queries: int) -> float:
    """The model answering ``queries`` rows in batches of BATCH, with no attack around it."""
    frame = target.test.sample(n=BATCH, replace=True, random_state=0).reset_index(drop=True)
    started = time.perf_counter()
    left = queries
    while left > 0:
        target.estimator.predict(frame.iloc[: min(BATCH, left)])
        left -= BATCH
    return time.perf_counter() - started


def _median(runs: int, measure: Callable[[], float]) -> float:
    return statistics.median(measure() for _ in range(runs))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    comparison, floors, verification = [], [], []
    for target in _targets():
        rows = _correct_rows(target, args.samples)
        _progress(f"ART HopSkipJump on {len(rows)} rows of {target.name}")
        art = run_art(target, rows)
        budget = round(art["queries"])
        _progress(f"mlaudit MLA201 with {budget} queries per row")
        ours_runs = [run_mlaudit(target, rows, budget) for _ in range(args.runs)]
        ours = dict(ours_runs[0][0], seconds=statistics.median(r[0]["seconds"] for r in ours_runs))
        comparison.append((target.name, art, ours))
        for count in (len(rows), 200):
            many = _correct_rows(target, count)
            timed = [run_mlaudit(target, many, budget) for _ in range(args.runs)]
            attack_s = statistics.median(t[0]["seconds"] for t in timed)
            total = timed[0][1]
            floor = _median(
                args.runs, lambda total=total, target=target: floor_seconds(target, total)
            )
            floors.append((target.name, len(many), total, attack_s, floor))
        _progress(f"MLA203 on {target.name}")
        many = _correct_rows(target, 200)
        table = leaf_table(target.estimator, target.test)
        verifier = Verifier(table, FeatureSpace.from_data([target.test]), "linf")
        raw = target.test.to_numpy(dtype=np.float64)
        classes = list(table.classes or ())
        started = time.perf_counter()
        radii = np.array([verifier.radius(raw[r], classes.index(target.labels[r])) for r in many])
        per_row = (time.perf_counter() - started) / len(many)
        oracle = Oracle(target.model, verifier.space, target.test, target.labels)
        attack = hop_skip_jump(
            oracle,
            many,
            AttackSettings("linf", 2000),
            np.random.default_rng(0),
            donors=verifier.space.to_unit(target.test),
            donor_outputs=target.estimator.predict(target.test),
        )
        verification.append(
            (
                target.name,
                len(many),
                len(table.values),
                per_row,
                float(np.median(radii)),
                float(np.median(attack.distance)),
            )
        )

    print(
        f"\n### MLA201 vs ART HopSkipJump (L2, same rows, same queries per row; "
        f"mlaudit median of {args.runs})\n"
    )
    print(
        "| model | rows | tool | wall s | success | median L2, all rows (failure = inf) | "
        "median L2, rows both flipped | queries/row | ART / mlaudit time |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for name, art, ours in comparison:
        ratio = art["seconds"] / ours["seconds"]
        both = np.isfinite(art["sizes"]) & np.isfinite(ours["sizes"])
        for tool, result in (("ART HopSkipJump", art), ("mlaudit MLA201", ours)):
            shown = "" if tool.startswith("ART") else f"**{ratio:.0f}x**"
            sizes = result["sizes"]
            print(
                f"| {name} | {len(sizes)} | {tool} | {result['seconds']:.2f} | "
                f"{np.isfinite(sizes).mean():.0%} | {np.median(sizes):.4f} | "
                f"{np.median(sizes[both]):.4f} | {result['queries']:.0f} | {shown} |"
            )
    print(
        "\n### MLA201 against the physical floor (the model answering the same queries in "
        f"batches of {BATCH})\n"
    )
    print("| model | rows | queries | MLA201 s | model alone s | MLA201 / floor |")
    print("|---|---|---|---|---|---|")
    for name, count, total, attack_s, floor in floors:
        print(
            f"| {name} | {count} | {total:,} | {attack_s:.2f} | {floor:.2f} | "
            f"**{attack_s / floor:.2f}x** |"
        )
    print("\n### MLA203 certified L∞ radius beside the attack's\n")
    print("| model | rows | leaves | s / row | median certified radius | median attack radius |")
    print("|---|---|---|---|---|---|")
    for name, count, leaves, per_row, certified, attacked in verification:
        print(
            f"| {name} | {count} | {leaves:,} | {per_row:.4f} | {certified:.4f} | {attacked:.4f} |"
        )


if __name__ == "__main__":
    main()
