"""Benchmark mlaudit's static pickle scanner against peer scanners on the same work.

Run from the repository root::

    .venv/bin/pip install -r bench/requirements.txt   # peers; a missing one is reported
    .venv/bin/python bench/pickle_scan.py

It measures, in one run, and prints Markdown tables to stdout (progress goes to stderr):

1. Detection on mlaudit's hostile corpus (``tests/fixtures/hostile_pickles.py``): 31 live
   pickle/joblib files, each of which would create a canary file if it were loaded. Nothing is
   ever loaded; the script asserts at the end that the canary does not exist.
2. False positives on ~26 benign scikit-learn artifacts (fitted on sklearn's bundled datasets),
   saved with joblib and pickle, protocols 2-5.
3. Speed: median wall time of N runs per tool on a large joblib RandomForest (>= 100 MB), the
   same model as a plain pickle, and the whole benign set, with MB/s and peer/mlaudit ratios.

Every scan runs in a forked child with a timeout, so a peer that hangs or explodes on a file
cannot stop the benchmark; timings are taken inside the child around the scan call only.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import importlib.metadata
import logging
import multiprocessing as mp
import os
import pickle
import platform
import re
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import joblib  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402

from mlaudit.core.errors import InputError  # noqa: E402
from mlaudit.loaders.load_gate import LoadStatus, decide  # noqa: E402
from mlaudit.scanners.pickle import MalformedPickle  # noqa: E402
from mlaudit.scanners.pickle import scan_file as mlaudit_scan_file  # noqa: E402
from mlaudit.subject.build import open_model  # noqa: E402
from tests.fixtures.hostile_pickles import (  # noqa: E402
    HOSTILE_SAMPLE_NAMES,
    build_hostile_corpus,
)

# Peers log every finding at WARNING/ERROR; the tables carry the results.
logging.disable(logging.CRITICAL)
warnings.filterwarnings("ignore")

# Outcome kinds. FLAGGED: the tool reported dangerous content. REFUSED: the tool stopped with
# an error a user would see (non-zero exit), without naming a dangerous import. CRASH: the
# tool's API raised. CLEAN: nothing reported. SKIPPED: the tool did not scan the file at all.
FLAGGED, REFUSED, CRASH, CLEAN, SKIPPED, TIMEOUT = (
    "flagged", "refused", "crash", "clean", "skipped", "timeout",
)
STOPS_USER = frozenset({FLAGGED, REFUSED, CRASH, TIMEOUT})

DETECTION_TIMEOUT_S = 60.0
RF_TREES = 300
RF_SAMPLES = 20_000


@dataclass(frozen=True)
class Outcome:
    kind: str
    detail: str = ""


@dataclass(frozen=True)
class Tool:
    name: str
    version: str | None  # None: not installed
    check: Callable[[Path], Outcome] | None
    why_missing: str = ""

    @property
    def available(self) -> bool:
        return self.check is not None


# --------------------------------------------------------------------------------------------
# Adapters: one function per tool, path in, Outcome out.


def _mlaudit_gate(path: Path) -> Outcome:
    try:
        artifact = open_model(str(path))
    except InputError as error:
        return Outcome(REFUSED, f"InputError: {str(error).replace(str(path), path.name)}")
    decision = decide(artifact, [], trust_model=False)
    if decision.status is LoadStatus.BLOCKED:
        return Outcome(FLAGGED, decision.summary())
    return Outcome(CLEAN, decision.summary())


def _mlaudit_scan_only(path: Path) -> Outcome:
    try:
        scan = mlaudit_scan_file(path)
    except MalformedPickle as error:
        return Outcome(REFUSED, f"MalformedPickle: {error}")
    return Outcome(CLEAN, f"{len(scan.imports)} imports, {len(scan.problems)} problems")


def _picklescan(strict: bool) -> Callable[[Path], Outcome]:
    from picklescan.scanner import SafetyLevel, scan_file_path

    def check(path: Path) -> Outcome:
        result = scan_file_path(str(path), strict=strict)
        dangerous = sorted(
            {f"{g.module}.{g.name}" for g in result.globals if g.safety is SafetyLevel.Dangerous}
        )
        if result.issues_count > 0:
            extra = " (+ scan error)" if result.scan_err else ""
            return Outcome(FLAGGED, ", ".join(dangerous) + extra)
        if result.scan_err:
            return Outcome(REFUSED, "scan_err: parse error after some globals (exit 2)")
        if result.scanned_files == 0:
            return Outcome(SKIPPED, "no file scanned")
        return Outcome(CLEAN, f"{result.suspicious_count} suspicious (not flagged)")

    return check


def _fickling(path: Path) -> Outcome:
    # fickling.loader.scan_file is the Python form of `fickling --check-safety`: every stacked
    # pickle is analysed; graceful=True turns parse errors into reported errors.
    from fickling.analysis import Severity
    from fickling.loader import scan_file

    result = scan_file(str(path), graceful=True)
    findings = [r for rs in result.results for r in rs.results if r.severity > Severity.LIKELY_SAFE]
    if findings:
        worst = max(r.severity for r in findings)
        names = sorted({r.analysis_name for r in findings if r.analysis_name})
        return Outcome(FLAGGED, f"{worst.name}: {', '.join(names)}")
    invalid = any(r.pickled.has_invalid_opcode for r in result.results)
    if result.errors or invalid:
        reason = result.errors[0] if result.errors else "invalid opcode sequence"
        return Outcome(REFUSED, f"{result.severity.name}: {reason[:120]}")
    return Outcome(CLEAN, result.severity.name)


def _modelscan(path: Path) -> Outcome:
    from modelscan.modelscan import ModelScan

    report = ModelScan().scan(path)
    issues = report.get("issues") or []
    errors = report.get("errors") or []
    if issues:
        names = sorted({f"{i['module']}.{i['operator']} ({i['severity']})" for i in issues})
        return Outcome(FLAGGED, ", ".join(names))
    if errors:
        return Outcome(REFUSED, str(errors[0].get("description", errors[0]))[:120])
    if not report["summary"]["scanned"]["total_scanned"]:
        return Outcome(SKIPPED, "not scanned (exit 3)")
    return Outcome(CLEAN, "")


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _peer(name: str, distribution: str, module: str,
          factory: Callable[[], Callable[[Path], Outcome]]) -> Tool:
    version = _version(distribution)
    if version is None:
        return Tool(name, None, None, "not installed")
    try:
        __import__(module)
        check = factory()
    except Exception as error:  # an import that fails is reported, not fatal
        return Tool(name, version, None, f"not installed (import failed: {error!r})")
    return Tool(name, version, check)


def discover_tools() -> tuple[Tool, Tool, list[Tool]]:
    """mlaudit (gate), mlaudit (scan only) and the peers, in table order."""
    mlaudit_version = _version("mlaudit")
    gate = Tool("mlaudit", mlaudit_version, _mlaudit_gate)
    scan_only = Tool("mlaudit scan_file", mlaudit_version, _mlaudit_scan_only)
    peers = [
        _peer("picklescan", "picklescan", "picklescan.scanner", lambda: _picklescan(False)),
        _peer("picklescan --strict", "picklescan", "picklescan.scanner",
              lambda: _picklescan(True)),
        _peer("fickling", "fickling", "fickling.loader", lambda: _fickling),
        _peer("modelscan", "modelscan", "modelscan.modelscan", lambda: _modelscan),
    ]
    return gate, scan_only, peers


# --------------------------------------------------------------------------------------------
# Isolation: every scan runs in a forked child, with a timeout.

_FORK = mp.get_context("fork")


def _child(conn: Any, check: Callable[[Path], Outcome], paths: list[Path]) -> None:
    # fickling print()s parser warnings; they must not land in the Markdown on stdout.
    try:
        with (open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink),
              contextlib.redirect_stderr(sink)):
            start = time.perf_counter()
            outcomes = [check(p) for p in paths]
            elapsed = time.perf_counter() - start
        conn.send((elapsed, outcomes))
    except BaseException as error:  # report any failure of the tool as a crash
        conn.send((None, [Outcome(CRASH, f"{type(error).__name__}: {error}"[:160])]))
    finally:
        conn.close()


def run_isolated(
    check: Callable[[Path], Outcome], paths: list[Path], timeout: float
) -> tuple[float | None, list[Outcome]]:
    """Scan ``paths`` in a forked child; (seconds inside the child, outcome per path)."""
    receiver, sender = _FORK.Pipe(duplex=False)
    process = _FORK.Process(target=_child, args=(sender, check, paths))
    process.start()
    sender.close()
    result: tuple[float | None, list[Outcome]] | None = None
    answered = receiver.poll(timeout)
    if answered:
        with contextlib.suppress(EOFError):
            result = receiver.recv()
    if result is None:
        process.kill()
    process.join()
    receiver.close()
    if result is None:
        kind = CRASH if answered else TIMEOUT
        detail = f"> {timeout:.0f} s" if kind == TIMEOUT else f"exit code {process.exitcode}"
        return None, [Outcome(kind, detail)] * len(paths)
    elapsed, outcomes = result
    if len(outcomes) != len(paths):  # the child crashed part way
        outcomes = outcomes * len(paths)
    return elapsed, outcomes


# --------------------------------------------------------------------------------------------
# Benign artifacts.


def _benign_models() -> list[tuple[str, Any]]:
    import pandas as pd
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.cluster import KMeans
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import (
        load_breast_cancer,
        load_diabetes,
        load_digits,
        load_iris,
        load_wine,
    )
    from sklearn.decomposition import PCA
    from sklearn.ensemble import (
        ExtraTreesClassifier,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        HistGradientBoostingClassifier,
        HistGradientBoostingRegressor,
        IsolationForest,
        RandomForestClassifier,
        StackingClassifier,
        VotingClassifier,
    )
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import GridSearchCV
    from sklearn.naive_bayes import GaussianNB
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler
    from sklearn.svm import SVC, LinearSVC
    from sklearn.tree import DecisionTreeRegressor

    iris = load_iris(return_X_y=True)
    wine = load_wine(return_X_y=True)
    cancer = load_breast_cancer(return_X_y=True)
    digits = load_digits(return_X_y=True)
    diabetes = load_diabetes(return_X_y=True)

    # A DataFrame with a categorical column, for the ColumnTransformer pipeline.
    frame = load_wine(as_frame=True).frame
    frame["alcohol_band"] = pd.cut(frame["alcohol"], 3, labels=["low", "mid", "high"]).astype(str)
    frame_x = frame.drop(columns="target")
    numeric = [c for c in frame_x.columns if c != "alcohol_band"]
    column_pipeline = Pipeline([
        ("columns", ColumnTransformer([
            ("onehot", OneHotEncoder(handle_unknown="ignore"), ["alcohol_band"]),
            ("scale", StandardScaler(), numeric),
        ])),
        ("clf", LogisticRegression(max_iter=2000)),
    ])

    texts = [
        "the model scores every row", "a pickle can run code when loaded",
        "scan the file before loading it", "joblib stores numpy arrays raw",
        "gradient boosting fits trees", "random forests average many trees",
    ] * 5
    text_labels = [0, 1, 1, 0, 0, 0] * 5

    hgb_cat = HistGradientBoostingRegressor(categorical_features=[1], max_iter=50)
    diabetes_cat = diabetes[0].copy()
    diabetes_cat[:, 1] = (diabetes_cat[:, 1] > 0).astype(float)

    specs: list[tuple[str, Any, tuple[Any, Any]]] = [
        ("random_forest", RandomForestClassifier(n_estimators=20, random_state=0), iris),
        ("extra_trees", ExtraTreesClassifier(n_estimators=20, random_state=0), wine),
        ("gradient_boosting", GradientBoostingClassifier(n_estimators=30, random_state=0), cancer),
        ("gradient_boosting_reg", GradientBoostingRegressor(n_estimators=30), diabetes),
        ("hist_gradient_boosting", HistGradientBoostingClassifier(max_iter=50), cancer),
        ("hist_gb_categorical", hgb_cat, (diabetes_cat, diabetes[1])),
        ("logistic_regression", LogisticRegression(max_iter=3000), digits),
        ("svc_probability", SVC(probability=True, random_state=0), iris),
        ("mlp", MLPClassifier(hidden_layer_sizes=(32,), max_iter=300, random_state=0), digits),
        ("kmeans", KMeans(n_clusters=10, n_init=3, random_state=0), digits),
        ("column_transformer_pipeline", column_pipeline, (frame_x, frame["target"])),
        ("scaler_pca_svc", make_pipeline(StandardScaler(), PCA(5), SVC()), wine),
        ("decision_tree_reg", DecisionTreeRegressor(max_depth=8, random_state=0), diabetes),
        ("ridge", Ridge(), diabetes),
        ("knn_kdtree", KNeighborsClassifier(algorithm="kd_tree"), iris),
        ("gaussian_nb", GaussianNB(), wine),
        ("isolation_forest", IsolationForest(n_estimators=30, random_state=0), cancer),
        ("grid_search", GridSearchCV(LogisticRegression(max_iter=500), {"C": [0.1, 1, 10]}),
         iris),
        ("voting", VotingClassifier([("lr", LogisticRegression(max_iter=500)),
                                     ("nb", GaussianNB())], voting="soft"), iris),
        ("stacking", StackingClassifier([("svc", SVC()), ("nb", GaussianNB())]), iris),
        ("tfidf_linear_svc", make_pipeline(TfidfVectorizer(), LinearSVC()),
         (texts, text_labels)),
        ("calibrated_svc", CalibratedClassifierCV(LinearSVC(), cv=3), cancer),
    ]
    fitted = []
    for name, estimator, (features, labels) in specs:
        estimator.fit(features, labels)
        fitted.append((name, estimator))
    return fitted


# (label, suffix, writer) for each storage format, used round-robin, then a few extras.
def _joblib_writer(protocol: int, compress: int = 0) -> Callable[[Any, Path], None]:
    def write(model: Any, path: Path) -> None:
        joblib.dump(model, path, protocol=protocol, compress=compress)

    return write


def _pickle_writer(protocol: int) -> Callable[[Any, Path], None]:
    def write(model: Any, path: Path) -> None:
        path.write_bytes(pickle.dumps(model, protocol=protocol))

    return write


_FORMATS: list[tuple[str, str, Callable[[Any, Path], None]]] = [
    ("joblib p2", ".joblib", _joblib_writer(2)),
    ("joblib p3", ".joblib", _joblib_writer(3)),
    ("joblib p4", ".joblib", _joblib_writer(4)),
    ("joblib p5", ".joblib", _joblib_writer(5)),
    ("pickle p2", ".pkl", _pickle_writer(2)),
    ("pickle p3", ".pkl", _pickle_writer(3)),
    ("pickle p4", ".pkl", _pickle_writer(4)),
    ("pickle p5", ".pkl", _pickle_writer(5)),
]


@dataclass(frozen=True)
class BenignFile:
    name: str
    storage: str
    path: Path


def build_benign_set(directory: Path) -> list[BenignFile]:
    directory.mkdir(parents=True, exist_ok=True)
    models = _benign_models()
    files: list[BenignFile] = []
    for index, (name, model) in enumerate(models):
        label, suffix, write = _FORMATS[index % len(_FORMATS)]
        path = directory / f"{name}{suffix}"
        write(model, path)
        files.append(BenignFile(name, label, path))
    by_name = dict(models)
    extras = [
        ("random_forest", "pickle p5", ".pkl", _pickle_writer(5)),
        ("column_transformer_pipeline", "joblib p5", ".joblib", _joblib_writer(5)),
        ("hist_gradient_boosting", "pickle p2", ".pkl", _pickle_writer(2)),
        ("logistic_regression", "joblib zlib-3", ".joblib", _joblib_writer(5, compress=3)),
    ]
    for name, label, suffix, write in extras:
        tag = label.replace(" ", "_").replace("-", "")
        path = directory / f"{name}__{tag}{suffix}"
        write(by_name[name], path)
        files.append(BenignFile(name, label, path))
    return files


# --------------------------------------------------------------------------------------------
# The large RandomForest, cached across runs.


def build_large_models(cache: Path, samples: int, trees: int) -> tuple[Path, Path, Path]:
    """The same fitted forest as joblib (protocol 5, joblib's default), as a plain pickle with
    Python's default protocol (4 up to 3.13) and as a protocol 5 pickle."""
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier

    cache.mkdir(parents=True, exist_ok=True)
    key = f"rf{trees}_n{samples}_skl{sklearn.__version__}_np{np.__version__}"
    paths = (cache / f"{key}.joblib", cache / f"{key}.p4.pkl", cache / f"{key}.p5.pkl")
    writers = (_joblib_writer(5), _pickle_writer(4), _pickle_writer(5))
    if all(path.exists() for path in paths):
        _progress(f"using cached large models in {cache}")
        return paths
    _progress(f"fitting RandomForest({trees} trees) on {samples} rows (cached afterwards) ...")
    features, labels = make_classification(
        n_samples=samples, n_features=20, n_informative=10, flip_y=0.2, random_state=0
    )
    model = RandomForestClassifier(n_estimators=trees, n_jobs=2, random_state=0)
    model.fit(features, labels)
    model.n_jobs = None
    for path, write in zip(paths, writers, strict=True):
        partial = path.with_suffix(path.suffix + ".part")
        write(model, partial)
        partial.replace(path)
    del model
    gc.collect()
    return paths


# --------------------------------------------------------------------------------------------
# Markdown.


def _progress(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def _table(headers: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _hostile_cell(outcome: Outcome) -> str:
    return {
        FLAGGED: "detected",
        REFUSED: "detected (error)",
        CRASH: "detected (crash)",
        TIMEOUT: "timeout",
        CLEAN: "**MISSED**",
        SKIPPED: "**MISSED** (skipped)",
    }[outcome.kind]


def _benign_cell(outcome: Outcome) -> str:
    return {
        FLAGGED: "**FLAGGED**",
        REFUSED: "**REFUSED** (error)",
        CRASH: "**CRASH**",
        TIMEOUT: "**TIMEOUT**",
        CLEAN: "ok",
        SKIPPED: "skipped",
    }[outcome.kind]


def _mb(size: int) -> float:
    return size / 1e6


# --------------------------------------------------------------------------------------------
# The three benchmarks.


def scan_each(tools: list[Tool], paths: list[Path], what: str) -> dict[str, list[Outcome]]:
    """Every tool's outcome on every file, one isolated child per scan."""
    results: dict[str, list[Outcome]] = {}
    for tool in tools:
        _progress(f"{what}: {tool.name}")
        assert tool.check is not None
        results[tool.name] = [
            run_isolated(tool.check, [path], DETECTION_TIMEOUT_S)[1][0] for path in paths
        ]
    return results


def detection(tools: list[Tool], corpus: list[Any]) -> dict[str, list[Outcome]]:
    return scan_each(tools, [sample.path for sample in corpus], "detection")


def print_detection(tools: list[Tool], missing: list[Tool], corpus: list[Any],
                    results: dict[str, list[Outcome]]) -> None:
    print(f"## 1. Detection: mlaudit's hostile corpus ({len(corpus)} live samples)\n")
    print("`detected` = reported a dangerous import; `detected (error)` = refused the file with "
          "an error a user would see (non-zero exit) without naming an import; `**MISSED**` = "
          "reported the file clean.\n")
    headers = ["sample", "loader", *[t.name for t in tools], *[t.name for t in missing]]
    rows = []
    for index, sample in enumerate(corpus):
        rows.append([
            f"`{sample.name}`", sample.loader,
            *[_hostile_cell(results[t.name][index]) for t in tools],
            *["not installed" for _ in missing],
        ])
    total = len(corpus)
    summary = ["**detected / total**", ""]
    split = ["of which: import named / error only", ""]
    for tool in tools:
        outcomes = results[tool.name]
        caught = sum(o.kind in STOPS_USER for o in outcomes)
        named = sum(o.kind == FLAGGED for o in outcomes)
        summary.append(f"**{caught} / {total}**")
        split.append(f"{named} / {caught - named}")
    summary += ["not installed" for _ in missing]
    split += ["" for _ in missing]
    print(_table(headers, [*rows, summary, split]))
    print()
    gate = results["mlaudit"]
    notes = []
    for index, sample in enumerate(corpus):
        for tool in tools:
            outcome = results[tool.name][index]
            if outcome.kind not in (FLAGGED,):
                notes.append(f"- `{sample.name}` / {tool.name}: {outcome.kind}"
                             + (f" — {outcome.detail}" if outcome.detail else ""))
        if gate[index].kind not in STOPS_USER:
            caught_by = [t.name for t in tools if results[t.name][index].kind in STOPS_USER]
            notes.append(f"- **mlaudit missed `{sample.name}`**"
                         + (f" (caught by {', '.join(caught_by)})" if caught_by else ""))
    if notes:
        print("Details of every outcome other than `detected`:\n")
        print("\n".join(notes))
        print()


def false_positives(tools: list[Tool], files: list[BenignFile]) -> dict[str, list[Outcome]]:
    return scan_each(tools, [f.path for f in files], "false positives")


def print_false_positives(tools: list[Tool], missing: list[Tool], files: list[BenignFile],
                          results: dict[str, list[Outcome]]) -> None:
    print(f"## 2. False positives: {len(files)} benign scikit-learn artifacts\n")
    print("`ok` = allowed / reported clean. Anything else on a benign file is a false positive "
          "(a user is stopped for nothing).\n")
    headers = ["artifact", "storage", "KB", *[t.name for t in tools], *[t.name for t in missing]]
    rows = []
    for index, benign in enumerate(files):
        rows.append([
            f"`{benign.path.name}`", benign.storage, f"{benign.path.stat().st_size / 1e3:.0f}",
            *[_benign_cell(results[t.name][index]) for t in tools],
            *["not installed" for _ in missing],
        ])
    summary = ["**flagged / total**", "", ""]
    for tool in tools:
        bad = sum(o.kind in STOPS_USER for o in results[tool.name])
        summary.append(f"**{bad} / {len(files)}**")
    summary += ["not installed" for _ in missing]
    print(_table(headers, [*rows, summary]))
    print()
    gate_notes = [
        f"- `{benign.path.name}`: {outcome.kind} — {outcome.detail}"
        for benign, outcome in zip(files, results["mlaudit"], strict=True)
        if outcome.kind in STOPS_USER
    ]
    if gate_notes:
        print("mlaudit's false positives, with the gate's full reasons:\n")
        print("\n".join(gate_notes))
        print()
    print("Peers' false positives: count per outcome, then the most frequent reasons (a file "
          "can give several; numbers in messages normalised to N):\n")
    for tool in tools[1:]:
        kinds: dict[str, int] = {}
        reasons: dict[str, set[str]] = {}
        for benign, outcome in zip(files, results[tool.name], strict=True):
            if outcome.kind not in STOPS_USER:
                continue
            kinds[outcome.kind] = kinds.get(outcome.kind, 0) + 1
            for reason in _reasons(outcome):
                reasons.setdefault(reason, set()).add(benign.path.name)
        if not kinds:
            print(f"- {tool.name}: none")
            continue
        counted = ", ".join(f"{count} {kind}" for kind, count in sorted(kinds.items()))
        top = sorted(reasons.items(), key=lambda item: (-len(item[1]), item[0]))[:4]
        listed = "; ".join(f"`{reason}` ({len(names)})" for reason, names in top)
        print(f"- {tool.name}: {counted}. Top reasons: {listed}")
    print()


def _reasons(outcome: Outcome) -> list[str]:
    """Split a tool's detail into reasons: its list of globals or analyses, or one message."""
    detail = re.sub(r"\\x[0-9a-f]{2}|\d+", "N", outcome.detail)
    detail = detail.replace(" (+ scan error)", "")
    if outcome.kind == FLAGGED:
        detail = re.sub(r"^[A-Z_]+: ", "", detail)
        return [part for part in detail.split(", ") if part]
    return [detail[:90]]


@dataclass
class Timing:
    times: list[float]
    outcome: Outcome
    given_up: bool = False


def speed(tools: list[Tool], workloads: list[tuple[str, list[Path]]], runs: int,
          timeout: float) -> dict[tuple[str, str], Timing]:
    """Interleaved: for each run, every tool scans every workload once (in a fresh child)."""
    timings: dict[tuple[str, str], Timing] = {}
    for run in range(runs):
        _progress(f"speed: run {run + 1} / {runs}")
        for workload, paths in workloads:
            for tool in tools:
                assert tool.check is not None
                key = (workload, tool.name)
                timing = timings.get(key)
                if timing is not None and timing.given_up:
                    continue
                elapsed, outcomes = run_isolated(tool.check, paths, timeout)
                worst = _summarise(outcomes)
                if timing is None:
                    timing = timings[key] = Timing([], worst)
                if elapsed is None:  # timed out or crashed: not retried
                    timing.given_up = True
                    timing.outcome = worst
                    continue
                timing.times.append(elapsed)
    return timings


def _summarise(outcomes: list[Outcome]) -> Outcome:
    """The worst outcome; over several files, how many files got each outcome."""
    order = [TIMEOUT, CRASH, FLAGGED, REFUSED, SKIPPED, CLEAN]
    worst = min(outcomes, key=lambda o: order.index(o.kind))
    if len(outcomes) == 1:
        return worst
    counts = [f"{sum(o.kind == kind for o in outcomes)} {kind}" for kind in order
              if any(o.kind == kind for o in outcomes)]
    return Outcome(worst.kind, f"{len(outcomes)} files: {', '.join(counts)}")


def print_speed(tools: list[Tool], missing: list[Tool], workloads: list[tuple[str, list[Path]]],
                timings: dict[tuple[str, str], Timing], *, runs: int, timeout: float) -> None:
    print(f"## 3. Speed (median of {runs} runs, warm page cache, one forked child per scan)\n")
    print("Ratio = peer time / mlaudit time: **> 1 means mlaudit is faster**. `mlaudit` is the "
          "full `open_model` (sha256 + sniff + scan + inventory) plus the gate decision; "
          "`mlaudit scan_file` is the pickle scan alone. The verdict column says what the tool "
          "concluded: a scanner that stops at the first byte it cannot parse (a parse error at "
          "position N, where joblib's raw array bytes begin) is fast because it read almost "
          "nothing, not because it scans faster.\n")
    for workload, paths in workloads:
        size = sum(p.stat().st_size for p in paths)
        label = f"{len(paths)} files" if len(paths) > 1 else f"`{paths[0].name}`"
        print(f"### {workload} — {label}, {_mb(size):.1f} MB\n")
        gate = timings[(workload, "mlaudit")]
        scan_only = timings[(workload, "mlaudit scan_file")]
        base_gate = statistics.median(gate.times) if gate.times else None
        base_scan = statistics.median(scan_only.times) if scan_only.times else None
        rows = []
        for tool in tools:
            timing = timings[(workload, tool.name)]
            if not timing.times:
                what = f"> {timeout:.0f} s (timeout)" if timing.outcome.kind == TIMEOUT else "—"
                ratio = f"> {timeout / base_gate:.1f}" if base_gate and timing.outcome.kind == \
                    TIMEOUT else "—"
                ratio_scan = f"> {timeout / base_scan:.1f}" if base_scan and \
                    timing.outcome.kind == TIMEOUT else "—"
                rows.append([tool.name, what, "—", "0", ratio, ratio_scan,
                             f"{timing.outcome.kind}: {timing.outcome.detail[:80]}"])
                continue
            median = statistics.median(timing.times)
            ratio = f"{median / base_gate:.2f}" if base_gate else "—"
            ratio_scan = f"{median / base_scan:.2f}" if base_scan else "—"
            if tool.name == "mlaudit scan_file":
                verdict = "(scan only)"
            elif len(paths) > 1:
                verdict = timing.outcome.detail
            else:
                verdict = timing.outcome.kind
                if timing.outcome.detail:
                    verdict += f": {timing.outcome.detail[:80]}"
            rows.append([
                tool.name, f"{median:.3f}", f"{_mb(size) / median:.0f}" if median else "—",
                f"{len(timing.times)}", ratio, ratio_scan, verdict,
            ])
        for tool in missing:
            rows.append([tool.name, "not installed", "—", "0", "—", "—", "—"])
        print(_table(
            ["tool", "median s", "MB/s", "runs", "x mlaudit", "x mlaudit scan_file", "verdict"],
            rows,
        ))
        print()


# --------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per tool and workload")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds one timed scan may take before the tool is given up on")
    parser.add_argument("--cache-dir", type=Path,
                        default=Path(tempfile.gettempdir()) / "mlaudit-bench-cache",
                        help="where the large RandomForest files are kept between runs")
    parser.add_argument("--rf-samples", type=int, default=RF_SAMPLES,
                        help="rows the large RandomForest is fitted on (file size grows with it)")
    parser.add_argument("--skip-speed", action="store_true", help="detection and FP only")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    gate, scan_only, peers = discover_tools()
    available_peers = [p for p in peers if p.available]
    missing = [p for p in peers if not p.available]
    verdict_tools = [gate, *available_peers]

    with tempfile.TemporaryDirectory(prefix="mlaudit-bench-") as temp:
        root = Path(temp)
        canary = root / "CANARY-a-hostile-sample-was-loaded"
        _progress("building hostile corpus ...")
        corpus = build_hostile_corpus(root / "hostile", canary)
        assert [s.name for s in corpus] == list(HOSTILE_SAMPLE_NAMES)
        _progress("building benign set ...")
        benign = build_benign_set(root / "benign")
        large: tuple[Path, Path, Path] | None = None
        if not args.skip_speed:
            large = build_large_models(args.cache_dir, args.rf_samples, RF_TREES)

        # Warm every tool up in this process (lazy imports, settings) before children fork.
        with (open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink),
              contextlib.redirect_stderr(sink)):
            for tool in (*verdict_tools, scan_only):
                assert tool.check is not None
                with contextlib.suppress(Exception):
                    tool.check(benign[0].path)

        hostile_results = detection(verdict_tools, corpus)
        benign_results = false_positives(verdict_tools, benign)
        timings: dict[tuple[str, str], Timing] = {}
        workloads: list[tuple[str, list[Path]]] = []
        if large is not None:
            workloads = [
                (f"(a) large joblib RandomForest ({RF_TREES} trees)", [large[0]]),
                (f"(b) large plain pickle RandomForest ({RF_TREES} trees, protocol 4, "
                 "pickle's default)", [large[1]]),
                (f"(b5) large plain pickle RandomForest ({RF_TREES} trees, protocol 5)",
                 [large[2]]),
                ("(c) the whole benign set", [b.path for b in benign]),
            ]
            timings = speed([gate, scan_only, *available_peers], workloads, args.runs,
                            args.timeout)

        print("# mlaudit pickle scanner vs peers\n")
        print(f"- date: {dt.datetime.now().astimezone().isoformat(timespec='seconds')}")
        print(f"- machine: {platform.machine()}, {os.cpu_count()} CPUs, "
              f"{platform.system()} {platform.release()}, Python {platform.python_version()}")
        print(f"- numpy {np.__version__}, scikit-learn {sklearn.__version__}, "
              f"joblib {joblib.__version__}")
        versions = [f"mlaudit {gate.version}"] + [
            f"{p.name} {p.version}" if p.available else f"{p.name}: {p.why_missing}"
            for p in peers if p.name != "picklescan --strict"
        ]
        print(f"- tools: {', '.join(versions)}")
        print("- `picklescan --strict` is picklescan with unknown globals promoted to "
              "dangerous (default-deny, like mlaudit's allowlist)\n")
        print_detection(verdict_tools, missing, corpus, hostile_results)
        print_false_positives(verdict_tools, missing, benign, benign_results)
        if large is not None:
            print_speed([gate, scan_only, *available_peers], missing, workloads, timings,
                        runs=args.runs, timeout=args.timeout)
        print(f"Total benchmark wall time: {time.perf_counter() - started:.0f} s")

        assert not canary.exists(), f"a hostile sample was executed: {canary} exists"
        print(f"\nCanary check: `{canary.name}` does not exist — no hostile sample was loaded.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
