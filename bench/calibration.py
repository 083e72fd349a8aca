"""Calibrate the default gate on a panel of well-built and deliberately bad models.

Run from the repository root::

    .venv/bin/python bench/calibration.py [--profiles quick,standard,thorough]
        [--seeds 0,1,2,3,4] [--models NAME,...] [--jobs 2] [--work DIR [--reuse]]

Every model of the panel is trained here, offline, on scikit-learn's bundled data sets or
generated data (at most 2,000 rows, so the whole panel runs on a laptop), saved with joblib
beside its train and holdout CSVs, and scanned through the real CLI::

    mlaudit scan MODEL --train T --holdout H --target y --profile P --seed S -o DIR

with the default gate, at every profile and seed asked for. "Well built" is decided before any
scan, by how the model was trained: regularised or early stopped, validated, and (classifiers)
within 5 accuracy points of its training score on the holdout. "Bad" models memorise (fully
grown trees and forests, 1-NN, unregularised networks on noisy labels) or are evaluated on a
tiny holdout.
Printed as Markdown (progress on stderr):

0. **The panel**: each model, how it was built, its train and holdout score and their gap.
1. **Gate per model and profile**: the pass rate over seeds, whether the verdict flipped
   between seeds, and the rules that failed it (with how many seeds each). Goal: every
   well-built model passes, every bad one fails at standard, no flips unless the metric sits
   within its interval of the threshold.
2. **Coverage**: for the binary linear models without integer features, the exact robust
   accuracy of the whole holdout at every ε of the grid (the closed-form radii of
   ``mlaudit.robustness.linear``, computed here on every holdout row) against the 95%
   intervals that MLA201 (attack) and MLA202 (PGD) report from their sample, per norm. Goal:
   the intervals contain the exact value in >= 93% of cases.
3. **Default ε**: for each well-built classifier the share of its correct decisions that
   survives MLA201's attack at each ε of the grid (standard profile, median over seeds), and
   the largest ε at which every one of them keeps the medium threshold (0.8): the basis of
   ``DEFAULT_EPSILON``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_classification,
    make_regression,
)
from sklearn.ensemble import (
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV, Ridge
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC
from sklearn.tree import DecisionTreeClassifier

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from mlaudit.robustness.linear import NotLinear, hyperplane, linear_radii  # noqa: E402
from mlaudit.robustness.space import FeatureSpace  # noqa: E402

TARGET = "y"
MLAUDIT = REPO_ROOT / ".venv" / "bin" / "mlaudit"
MEDIUM_BELOW = 0.8


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Built:
    estimator: Any
    train: pd.DataFrame
    holdout: pd.DataFrame


@dataclass(frozen=True)
class Entry:
    name: str
    good: bool
    what: str
    build: Callable[[], Built]


def _split(features: pd.DataFrame, target: np.ndarray, holdout: float | int = 0.3) -> Built:
    frame = features.assign(**{TARGET: target})
    train, test = train_test_split(frame, test_size=holdout, random_state=0)
    return Built(None, train.reset_index(drop=True), test.reset_index(drop=True))


def _fit(estimator: Any, data: Built) -> Built:
    estimator.fit(data.train.drop(columns=TARGET), data.train[TARGET])
    return Built(estimator, data.train, data.holdout)


def _sklearn(loader: Callable[..., Any]) -> tuple[pd.DataFrame, np.ndarray]:
    features, target = loader(return_X_y=True, as_frame=True)
    features.columns = [str(c).replace(" ", "_") for c in features.columns]
    return features, target.to_numpy()


def _generated(
    rows: int = 1500, classes: int = 2, seed: int = 0, separation: float = 1.0
) -> tuple[pd.DataFrame, np.ndarray]:
    features, target = make_classification(
        rows, 10, n_informative=5, n_classes=classes, class_sep=separation, random_state=seed
    )
    return pd.DataFrame(features, columns=[f"x{i}" for i in range(10)]), target


def _noisy(rows: int = 1800, seed: int = 1) -> tuple[pd.DataFrame, np.ndarray]:
    """Overlapping classes with a fifth of the labels flipped: only memorising fits them."""
    features, target = make_classification(
        rows, 8, n_informative=4, flip_y=0.2, class_sep=0.6, random_state=seed
    )
    return pd.DataFrame(features, columns=[f"x{i}" for i in range(8)]), target


def _text(rows: int = 1200) -> tuple[pd.DataFrame, np.ndarray]:
    """Short generated reviews: class words mixed with shared filler."""
    rng = np.random.default_rng(3)
    good, bad = ["great", "fine", "tasty", "quick", "friendly"], ["slow", "cold", "rude", "bland"]
    filler = ["the", "food", "service", "was", "and", "place", "staff", "table", "menu", "we"]
    target = rng.integers(0, 2, rows)
    texts = []
    for label in target:
        words = list(rng.choice(filler, 8))
        own = good if label else bad
        other = bad if label else good
        words += list(rng.choice(own, 2)) + list(rng.choice(other, int(rng.random() < 0.3)))
        rng.shuffle(words)
        texts.append(" ".join(words))
    return pd.DataFrame({"text": texts}), target


def _tfidf_logistic() -> Any:
    return make_pipeline(
        ColumnTransformer([("words", TfidfVectorizer(), "text")]), LogisticRegression(C=1.0)
    )


def _digits_subset() -> tuple[pd.DataFrame, np.ndarray]:
    features, target = _sklearn(load_digits)
    return features.iloc[:1500], target[:1500]


PANEL: tuple[Entry, ...] = (
    # Well built: regularised, validated, enough data.
    Entry(
        "logreg-cv-cancer",
        True,
        "StandardScaler + LogisticRegressionCV, breast cancer",
        lambda: _fit(
            make_pipeline(StandardScaler(), LogisticRegressionCV(max_iter=2000)),
            _split(*_sklearn(load_breast_cancer)),
        ),
    ),
    Entry(
        "logreg-generated",
        True,
        "LogisticRegression, 1,500 generated rows",
        lambda: _fit(LogisticRegression(), _split(*_generated())),
    ),
    Entry(
        "linearsvc-generated",
        True,
        "StandardScaler + LinearSVC, generated",
        lambda: _fit(
            make_pipeline(StandardScaler(), LinearSVC(C=0.1)), _split(*_generated(seed=4))
        ),
    ),
    Entry(
        "mlp-cancer",
        True,
        "StandardScaler + MLP(16), early stopping, breast cancer",
        lambda: _fit(
            make_pipeline(
                StandardScaler(),
                MLPClassifier((16,), alpha=1e-2, early_stopping=True, max_iter=500, random_state=0),
            ),
            _split(*_sklearn(load_breast_cancer)),
        ),
    ),
    Entry(
        "forest-generated",
        True,
        "RandomForest(min_samples_leaf=20, max_samples=0.5), generated",
        lambda: _fit(
            RandomForestClassifier(100, min_samples_leaf=20, max_samples=0.5, random_state=0),
            _split(*_generated(seed=5)),
        ),
    ),
    Entry(
        "gboost-generated",
        True,
        "GradientBoosting(depth 2), generated",
        lambda: _fit(
            GradientBoostingClassifier(max_depth=2, random_state=0), _split(*_generated(seed=6))
        ),
    ),
    Entry(
        "hgb-3class",
        True,
        "HistGradientBoosting(8 leaves, min_samples_leaf=40, l2=1), early stopping, 3 classes",
        lambda: _fit(
            HistGradientBoostingClassifier(
                max_leaf_nodes=8,
                min_samples_leaf=40,
                l2_regularization=1.0,
                early_stopping=True,
                random_state=0,
            ),
            _split(*_generated(rows=2000, classes=3, seed=7, separation=2.0)),
        ),
    ),
    Entry(
        "knn-generated",
        True,
        "StandardScaler + 25-NN, generated",
        lambda: _fit(
            make_pipeline(StandardScaler(), KNeighborsClassifier(25)), _split(*_generated(seed=8))
        ),
    ),
    Entry(
        "logreg-digits",
        True,
        "StandardScaler + LogisticRegression(C=0.05), digits",
        lambda: _fit(
            make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000)),
            _split(*_digits_subset()),
        ),
    ),
    Entry(
        "forest-wine",
        True,
        "RandomForest(min_samples_leaf=8, max_samples=0.5), wine",
        lambda: _fit(
            RandomForestClassifier(100, min_samples_leaf=8, max_samples=0.5, random_state=0),
            _split(*_sklearn(load_wine), holdout=0.4),
        ),
    ),
    Entry(
        "tfidf-text",
        True,
        "TF-IDF + LogisticRegression, generated reviews (text)",
        lambda: _fit(_tfidf_logistic(), _split(*_text())),
    ),
    Entry(
        "ridge-diabetes",
        True,
        "Ridge, diabetes (regressor)",
        lambda: _fit(Ridge(alpha=1.0), _split(*_sklearn(load_diabetes))),
    ),
    Entry(
        "gboost-diabetes",
        True,
        "GradientBoosting, early stopped, diabetes (regressor)",
        lambda: _fit(
            GradientBoostingRegressor(max_depth=2, n_iter_no_change=5, random_state=0),
            _split(*_sklearn(load_diabetes)),
        ),
    ),
    Entry(
        "forest-regression",
        True,
        "RandomForestRegressor(min_samples_leaf=5), generated",
        lambda: _fit(
            RandomForestRegressor(100, min_samples_leaf=5, random_state=0), _split(*_regression())
        ),
    ),
    # Deliberately bad.
    Entry(
        "overfit-forest",
        False,
        "fully grown RandomForest, noisy labels, 600 holdout rows",
        lambda: _fit(RandomForestClassifier(100, random_state=0), _split(*_noisy(), 600)),
    ),
    Entry(
        "tiny-holdout",
        False,
        "fully grown RandomForest, noisy labels, 60 holdout rows",
        lambda: _fit(RandomForestClassifier(100, random_state=0), _split(*_noisy(rows=1260), 60)),
    ),
    Entry(
        "one-nn",
        False,
        "1-NN (tied scores), noisy labels",
        lambda: _fit(KNeighborsClassifier(1), _split(*_noisy(seed=3), 600)),
    ),
    Entry(
        "deep-tree",
        False,
        "one unpruned DecisionTree (tied scores), noisy labels",
        lambda: _fit(DecisionTreeClassifier(random_state=0), _split(*_noisy(seed=4), 600)),
    ),
    Entry(
        "overfit-gboost",
        False,
        "GradientBoosting depth 8 x 300, noisy labels",
        lambda: _fit(
            GradientBoostingClassifier(max_depth=8, n_estimators=300, random_state=0),
            _split(*_noisy(seed=5), 600),
        ),
    ),
    Entry(
        "overfit-mlp",
        False,
        "MLP(256, 256) without regularisation, noisy labels",
        lambda: _fit(
            MLPClassifier((256, 256), alpha=0.0, max_iter=2000, random_state=0),
            _split(*_noisy(rows=900, seed=6), 300),
        ),
    ),
)


def _regression() -> tuple[pd.DataFrame, np.ndarray]:
    features, target = make_regression(1500, 8, n_informative=5, noise=20.0, random_state=0)
    return pd.DataFrame(features, columns=[f"x{i}" for i in range(8)]), target


@dataclass(frozen=True)
class Scan:
    model: str
    profile: str
    seed: int
    report: dict[str, Any] | None
    error: str | None


def _materialise(entry: Entry, root: Path) -> Path:
    folder = root / entry.name
    if (folder / "model.joblib").exists():
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    built = entry.build()
    built.train.to_csv(folder / "train.csv", index=False)
    built.holdout.to_csv(folder / "holdout.csv", index=False)
    # The model appears last and whole: a concurrent run on the same folder never scans a
    # half-written file.
    partial = folder / "model.joblib.partial"
    joblib.dump(built.estimator, partial)
    partial.replace(folder / "model.joblib")
    return folder


def _panel_table(panel: dict[str, Entry], folders: dict[str, Path]) -> list[str]:
    """What each model is and how well it generalises (accuracy, or R² for regressors)."""
    lines = [
        "| model | kind | what | train score | holdout score | gap |",
        "|---|---|---|---|---|---|",
    ]
    for name, folder in folders.items():
        estimator = joblib.load(folder / "model.joblib")  # built by this script, trusted
        fit = {}
        for split in ("train", "holdout"):
            frame = pd.read_csv(folder / f"{split}.csv")
            fit[split] = float(estimator.score(frame.drop(columns=TARGET), frame[TARGET]))
        kind = "good" if panel[name].good else "bad"
        lines.append(
            f"| {name} | {kind} | {panel[name].what} | {fit['train']:.3f} | "
            f"{fit['holdout']:.3f} | {fit['train'] - fit['holdout']:.3f} |"
        )
    return lines


def _scan(folder: Path, name: str, profile: str, seed: int, *, reuse: bool) -> Scan:
    out = folder / f"out-{profile}-{seed}"
    if reuse and (out / "report.json").exists():
        return Scan(name, profile, seed, json.loads((out / "report.json").read_text()), None)
    command = [
        str(MLAUDIT),
        "scan",
        str(folder / "model.joblib"),
        "--train",
        str(folder / "train.csv"),
        "--holdout",
        str(folder / "holdout.csv"),
        "--target",
        TARGET,
        "--profile",
        profile,
        "--seed",
        str(seed),
        "-o",
        str(out),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    report = out / "report.json"
    if done.returncode not in (0, 1) or not report.exists():
        return Scan(
            name,
            profile,
            seed,
            None,
            done.stderr.strip().splitlines()[-1:][0]
            if done.stderr.strip()
            else f"exit {done.returncode}",
        )
    return Scan(name, profile, seed, json.loads(report.read_text()), None)


_ORDER = ("info", "low", "medium", "high", "critical")


def _failing_rules(report: dict[str, Any]) -> list[str]:
    threshold = _ORDER.index(report["gate"]["fail_on"])
    failing = []
    for result in report["results"]:
        if result["status"] == "error" or any(
            _ORDER.index(f["severity"]) >= threshold for f in result["findings"]
        ):
            failing.append(result["rule_id"])
    return failing


def _gate_table(scans: list[Scan], panel: dict[str, Entry]) -> list[str]:
    lines = [
        "| model | kind | profile | gate passed | verdict flips | failing rules (seeds) |",
        "|---|---|---|---|---|---|",
    ]
    groups: dict[tuple[str, str], list[Scan]] = {}
    for scan in scans:
        groups.setdefault((scan.model, scan.profile), []).append(scan)
    for (model, profile), group in groups.items():
        done = [s for s in group if s.report is not None]
        passed = sum(bool(s.report["gate"]["passed"]) for s in done if s.report)
        failing: dict[str, int] = {}
        for scan in done:
            assert scan.report is not None
            for rule in _failing_rules(scan.report):
                failing[rule] = failing.get(rule, 0) + 1
        errors = [f"error: {s.error}" for s in group if s.error]
        rules = ", ".join(f"{r} ({n})" for r, n in sorted(failing.items())) or "-"
        flips = "yes" if 0 < passed < len(done) else "no"
        kind = "good" if panel[model].good else "bad"
        lines.append(
            f"| {model} | {kind} | {profile} | {passed}/{len(done)} | {flips} | "
            f"{'; '.join([rules, *errors])} |"
        )
    return lines


def _interval(metric: dict[str, Any]) -> str:
    return f"{metric['estimate']:.3f} [{metric['low']:.3f}, {metric['high']:.3f}]"


def _deciding_numbers(result: dict[str, Any]) -> str:
    """The measurements a rule's verdict rests on, with their intervals."""
    metrics = result.get("metrics") or {}
    if result["status"] not in ("passed", "failed"):
        return f"{result['status']}: {result.get('reason') or ''}"
    if "attacks" in metrics and "thresholds" in metrics:
        thresholds = metrics["thresholds"]
        judged = [t for t in metrics["tpr_at_fpr"] if t.get("evaluable")]
        tpr = (
            f"; TPR at {judged[0]['fpr']:.3f} FPR {_interval(judged[0])}" if judged else ""
        )
        return (
            f"{metrics['strongest']}: AUC {_interval(metrics['auc'])} against "
            f"{thresholds.get('high_auc_lower_bound')}{tpr}"
        )
    if "norms" in metrics:
        return "; ".join(
            f"{norm} survival {_interval(values['survival_at_epsilon'])}"
            for norm, values in metrics["norms"].items()
            if "survival_at_epsilon" in values
        )
    worst = [f"{f['severity']}: {f['message'][:80]}" for f in result["findings"]]
    return "; ".join(worst) or "no finding"


def _flip_table(scans: list[Scan]) -> list[str]:
    """For each verdict that flipped between seeds, the failing rule's numbers at every seed:
    a flip is expected only when the threshold lies inside the metric's interval."""
    groups: dict[tuple[str, str], list[Scan]] = {}
    for scan in scans:
        if scan.report is not None:
            groups.setdefault((scan.model, scan.profile), []).append(scan)
    lines = ["| model | profile | rule | seed | gate | numbers |", "|---|---|---|---|---|---|"]
    for (model, profile), group in groups.items():
        passed = [bool(s.report and s.report["gate"]["passed"]) for s in group]
        if all(passed) or not any(passed):
            continue
        rules = sorted({r for s in group if s.report for r in _failing_rules(s.report)})
        for rule in rules:
            for scan, ok in zip(group, passed, strict=True):
                assert scan.report is not None
                numbers = _deciding_numbers(_result(scan.report, rule))
                lines.append(
                    f"| {model} | {profile} | {rule} | {scan.seed} | "
                    f"{'passed' if ok else 'FAILED'} | {numbers} |"
                )
    return lines if len(lines) > 2 else []


def _exact_curve(folder: Path, norm: str, grid: list[float]) -> dict[float, float] | None:
    """The whole holdout's exact robust accuracy at each ε (None for other models)."""
    estimator = joblib.load(folder / "model.joblib")
    train = pd.read_csv(folder / "train.csv").drop(columns=TARGET)
    holdout = pd.read_csv(folder / "holdout.csv")
    labels = holdout.pop(TARGET).to_numpy()
    try:
        weights, bias = hyperplane(estimator, holdout.shape[1])
    except NotLinear:
        return None
    space = FeatureSpace.from_data([train, holdout])
    if space.integer.any():
        return None
    correct = estimator.predict(holdout) == labels
    radii = linear_radii(weights, bias, space, holdout.to_numpy(dtype=np.float64)[correct], norm)
    return {epsilon: float(np.sum(radii > epsilon)) / len(holdout) for epsilon in grid}


def _result(report: dict[str, Any], rule_id: str) -> dict[str, Any]:
    return next(r for r in report["results"] if r["rule_id"] == rule_id)


def _curves(report: dict[str, Any], norm: str) -> dict[str, list[dict[str, float]]]:
    """The robust-accuracy curves with intervals: MLA201's attack, MLA202's PGD."""
    found = {}
    black_box = _result(report, "MLA201")
    if black_box["status"] in ("passed", "failed"):
        found["MLA201"] = black_box["metrics"]["norms"][norm]["robust_accuracy"]
    gradient = _result(report, "MLA202")
    if gradient["status"] in ("passed", "failed"):
        found["MLA202"] = gradient["metrics"]["robust_accuracy"][norm]["pgd"]
    return found


def _coverage_table(scans: list[Scan], root: Path) -> list[str]:
    lines = [
        "| model | profile | norm | rule | intervals (scans x ε) | exact inside 95% CI "
        "| coverage |",
        "|---|---|---|---|---|---|---|",
    ]
    tally: dict[tuple[str, str, str, str], list[bool]] = {}
    exact_cache: dict[tuple[str, str], dict[float, float] | None] = {}
    for scan in scans:
        if scan.report is None:
            continue
        for norm in ("linf", "l2"):
            for rule, curve in _curves(scan.report, norm).items():
                grid = [point["epsilon"] for point in curve]
                key = (scan.model, norm)
                if key not in exact_cache:
                    exact_cache[key] = _exact_curve(root / scan.model, norm, grid)
                exact = exact_cache[key]
                if exact is None:
                    continue
                hits = tally.setdefault((scan.model, scan.profile, norm, rule), [])
                for point in curve:
                    truth = exact.get(point["epsilon"])
                    if truth is not None:
                        hits.append(point["low"] - 1e-9 <= truth <= point["high"] + 1e-9)
    total: list[bool] = []
    for (model, profile, norm, rule), hits in sorted(tally.items()):
        total += hits
        lines.append(
            f"| {model} | {profile} | {norm} | {rule} | {len(hits)} | {sum(hits)} | "
            f"{sum(hits) / len(hits):.2f} |"
        )
    if total:
        lines.append(
            f"| **all** | | | | {len(total)} | {sum(total)} | **{sum(total) / len(total):.3f}** |"
        )
    return lines


def _epsilon_table(scans: list[Scan], panel: dict[str, Entry]) -> list[str]:
    curves: dict[str, dict[float, list[float]]] = {}
    for scan in scans:
        if scan.report is None or scan.profile != "standard" or not panel[scan.model].good:
            continue
        result = _result(scan.report, "MLA201")
        if result["status"] not in ("passed", "failed"):
            continue
        metrics = result["metrics"]
        if metrics.get("task") != "classification":
            continue
        accuracy = metrics["clean_accuracy"]["estimate"]
        for norm in ("linf", "l2"):
            for point in metrics["norms"][norm]["robust_accuracy"]:
                survival = point["estimate"] / accuracy if accuracy else 0.0
                key = f"{scan.model} {norm}"
                curves.setdefault(key, {}).setdefault(point["epsilon"], []).append(survival)
    if not curves:
        return []
    grid = sorted({e for curve in curves.values() for e in curve})
    lines = [
        "| model, norm | " + " | ".join(f"ε={e:g}" for e in grid) + " |",
        "|---|" + "---|" * len(grid),
    ]
    worst = dict.fromkeys(grid, 1.0)
    for key, curve in sorted(curves.items()):
        cells = []
        for epsilon in grid:
            value = statistics.median(curve.get(epsilon, [float("nan")]))
            worst[epsilon] = min(worst[epsilon], value)
            cells.append(f"{value:.2f}")
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    lines.append("| **worst** | " + " | ".join(f"**{worst[e]:.2f}**" for e in grid) + " |")
    keeps = [e for e in grid if worst[e] >= MEDIUM_BELOW]
    lines.append("")
    lines.append(
        f"Largest ε at which every well-built classifier keeps >= {MEDIUM_BELOW:g} of its "
        f"correct decisions: {max(keeps):g}"
        if keeps
        else "No ε of the grid keeps them all."
    )
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profiles", default="quick,standard,thorough")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--work", type=Path, default=None, help="keep models and reports here")
    parser.add_argument(
        "--reuse", action="store_true", help="read reports already in --work instead of rescanning"
    )
    args = parser.parse_args()
    panel = {entry.name: entry for entry in PANEL}
    names = [n for n in args.models.split(",") if n] or list(panel)
    unknown = sorted(set(names) - set(panel))
    if unknown:
        parser.error(f"unknown models: {', '.join(unknown)} (known: {', '.join(panel)})")
    root = args.work or Path(tempfile.mkdtemp(prefix="mlaudit-calibration-"))
    _progress(f"work folder {root}")
    folders = {name: _materialise(panel[name], root) for name in names}
    # Seed by seed, so an interrupted run has covered every model at the first seeds.
    jobs = [
        (name, profile, int(seed))
        for profile in args.profiles.split(",")
        for seed in args.seeds.split(",")
        for name in names
    ]

    def run(job: tuple[str, str, int]) -> Scan:
        scan = _scan(folders[job[0]], *job, reuse=args.reuse)
        state = (
            "error"
            if scan.report is None
            else ("passed" if scan.report["gate"]["passed"] else "FAILED")
        )
        _progress(f"{job[0]} {job[1]} seed {job[2]}: {state}")
        return scan

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        scans = list(pool.map(run, jobs))
    print("### The panel (score: accuracy, or R² for regressors)\n")
    print("\n".join(_panel_table(panel, folders)))
    print("\n### Gate per model and profile (default gate: fail on high)\n")
    print("\n".join(_gate_table(scans, panel)))
    flips = _flip_table(scans)
    if flips:
        print("\n### Verdicts that flipped between seeds, with the numbers behind them\n")
        print("\n".join(flips))
    print("\n### Coverage of the robustness intervals against exact linear radii\n")
    print("\n".join(_coverage_table(scans, root)))
    epsilon = _epsilon_table(scans, panel)
    if epsilon:
        print("\n### Share of correct decisions surviving MLA201 at each ε (standard, median)\n")
        print("\n".join(epsilon))


if __name__ == "__main__":
    main()
