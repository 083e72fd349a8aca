"""MLA703 on a panel of planted leaks and clean datasets.

Every case is a train and a holdout CSV and a model fitted on train (a scikit-learn pipeline
saved with joblib, one-hot encoding the text columns with few values), audited through the
real engine (load gate, isolated worker) exactly as ``mlaudit scan MODEL --train --holdout
--target --select MLA703`` would. MLA703 must catch every planted leak at its expected
severity (or above) under the expected finding key, and give no finding at all (not even
information) on the clean datasets.

    .venv/bin/python bench/leakage_panel.py [--profile standard] [--only NAME ...] [--reference]

``--reference`` gives a model that is scanned but never run (a safetensors file), so MLA703
compares each column with its own reference model instead of the loaded one.

Prints a markdown table (dataset, kind, expected, MLA703's severity and findings, time) and
exits 1 when a case is missed or a clean dataset gets a finding. Offline: sklearn's bundled
datasets and generated data only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import struct
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import make_column_transformer
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_digits,
    load_wine,
    make_classification,
)
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from mlaudit.core.findings import Finding, Severity, fingerprint
from mlaudit.rules.data import Leakage
from mlaudit.testing import make_subject, run_rule

Y = "y"
Frames = tuple[pd.DataFrame, pd.DataFrame]


@dataclass(frozen=True)
class Case:
    name: str
    kind: str
    build: Callable[[], Frames]
    # The finding key MLA703 must report and its least severity; None for a clean dataset.
    key: str | None = None
    severity: Severity = Severity.HIGH


def _bunch(loader: Callable[..., object], rows: int | None = None) -> pd.DataFrame:
    frame = loader(as_frame=True).frame.rename(columns={"target": Y})  # type: ignore[attr-defined]
    frame.columns = [str(c).replace(" ", "_") for c in frame.columns]
    return frame if rows is None else frame.iloc[:rows].reset_index(drop=True)


def _split(frame: pd.DataFrame, *, stratify: bool = True) -> Frames:
    train, holdout = train_test_split(
        frame, test_size=0.25, random_state=0, stratify=frame[Y] if stratify else None
    )
    return train.reset_index(drop=True), holdout.reset_index(drop=True)


def _generated(rows: int = 3000, seed: int = 0) -> pd.DataFrame:
    x, y = make_classification(rows, 12, n_informative=6, flip_y=0.05, random_state=seed)
    frame = pd.DataFrame(x.round(4), columns=[f"f{i}" for i in range(12)])
    frame[Y] = y
    return frame


# --------------------------------------------------------------------------- planted leaks


def label_plus_noise() -> Frames:
    frame = _bunch(load_breast_cancer)
    frame["review_score"] = frame[Y] + np.random.default_rng(1).normal(0, 0.05, len(frame))
    return _split(frame)


def label_copy() -> Frames:
    frame = _bunch(load_wine)
    frame["cultivar"] = frame[Y].map({0: "barolo", 1: "grignolino", 2: "barbera"})
    return _split(frame)


def monotone_transform() -> Frames:
    frame = _bunch(load_diabetes)
    frame["log_progression"] = np.log(frame[Y]) * 10 + 3
    return _split(frame, stratify=False)


def target_encoded() -> Frames:
    """A store id target-encoded (mean label per store) on all rows, holdout included:
    the naive encoding of a high-cardinality key, where most stores have one to three rows."""
    frame = _generated(seed=2)
    rng = np.random.default_rng(2)
    frame["store"] = rng.integers(0, len(frame) // 2, len(frame))
    frame["store_rate"] = frame.groupby("store")[Y].transform("mean").round(4)
    return _split(frame.drop(columns=["store"]))


def duplicated_rows() -> Frames:
    train, holdout = _split(_generated(seed=3))
    copies = train.sample(len(holdout) // 10, random_state=3)
    holdout.iloc[: len(copies)] = copies.to_numpy()
    return train, holdout


def normalised_duplicates() -> Frames:
    """Holdout rows copied from train, then re-typed by another export: city names
    upper-cased and padded, numbers off in the tenth digit, the columns in another order."""
    frame = _generated(seed=4)
    rng = np.random.default_rng(4)
    frame["city"] = rng.choice(["Lyon", "Porto", "Turin", "Graz", "Ghent"], len(frame))
    train, holdout = _split(frame)
    copies = train.sample(len(holdout) // 12, random_state=4).reset_index(drop=True)
    copies["city"] = "  " + copies["city"].str.upper() + " "
    numbers = [f"f{i}" for i in range(12)]
    copies[numbers] = copies[numbers] * (1 + 1e-10)
    holdout = pd.concat([copies, holdout.iloc[len(copies):]], ignore_index=True)
    return train, holdout[list(reversed(holdout.columns))]


def split_by_id() -> Frames:
    frame = _generated(seed=5)
    frame.insert(0, "record_id", np.arange(100_000, 100_000 + len(frame)))
    cut = int(len(frame) * 0.75)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def trained_on_the_future() -> Frames:
    frame = _generated(seed=6)
    days = pd.date_range("2022-01-01", periods=len(frame), freq="3h")
    frame.insert(0, "event_time", days.strftime("%Y-%m-%dT%H:%M:%S"))
    cut = int(len(frame) * 0.25)
    return frame.iloc[cut:].reset_index(drop=True), frame.iloc[:cut].reset_index(drop=True)


# --------------------------------------------------------------------------- clean datasets


def strong_legit_feature() -> Frames:
    """One genuinely strong feature (about 85% accuracy alone) among weaker ones that the
    model needs for the rest, and a shuffled unique id: strong is not leaked."""
    rng = np.random.default_rng(7)
    rows = 3000
    frame = pd.DataFrame(rng.normal(size=(rows, 6)).round(4),
                         columns=["credit_score", *[f"f{i}" for i in range(5)]])
    signal = 1.6 * frame["credit_score"] + frame[["f0", "f1", "f2"]].sum(axis=1) * 0.6
    frame[Y] = (signal + rng.logistic(0, 0.4, rows) > 0).astype(int)
    frame.insert(0, "customer_id", rng.permutation(rows) + 10_000)
    return _split(frame)


def temporal_split_done_right() -> Frames:
    frame = _generated(seed=8)
    days = pd.date_range("2021-06-01", periods=len(frame), freq="2h")
    frame.insert(0, "event_time", days.strftime("%Y-%m-%dT%H:%M:%S"))
    frame.insert(0, "order_id", np.arange(len(frame)) * 7 + 1000)  # grows with time, rightly
    cut = int(len(frame) * 0.75)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


CASES = (
    Case("breast_cancer+review_score", "label plus noise", label_plus_noise,
         "target:review_score"),
    Case("wine+cultivar", "label copied under another name", label_copy, "target:cultivar"),
    Case("diabetes+log_progression", "monotone transform of the target", monotone_transform,
         "target:log_progression"),
    Case("generated+store_rate", "target encoding fitted with the holdout", target_encoded,
         "target:store_rate"),
    Case("generated, 10% copied", "rows duplicated across splits", duplicated_rows,
         "shared-rows"),
    Case("generated+city, 8% re-typed", "normalised duplicates (case, spaces, digits, order)",
         normalised_duplicates, "shared-rows"),
    Case("generated+record_id", "split by id order", split_by_id, "split:record_id",
         Severity.MEDIUM),
    Case("generated+event_time", "trained on the holdout's future", trained_on_the_future,
         "split:event_time", Severity.MEDIUM),
    Case("breast_cancer", "clean", lambda: _split(_bunch(load_breast_cancer))),
    Case("wine", "clean", lambda: _split(_bunch(load_wine))),
    Case("diabetes", "clean (regression)", lambda: _split(_bunch(load_diabetes),
                                                          stratify=False)),
    Case("digits[:900]", "clean (10 classes)", lambda: _split(_bunch(load_digits, 900))),
    Case("generated", "clean", lambda: _split(_generated(seed=9))),
    Case("strong_feature+id", "clean (a strong, legitimate feature)", strong_legit_feature),
    Case("temporal+event_time+order_id", "clean (holdout after train, ids grow with time)",
         temporal_split_done_right),
)


def fit_model(train: pd.DataFrame) -> object:
    """A pipeline as a team would train it: numbers scaled, text with few values one-hot
    encoded (identifiers and timestamps left out), a linear model."""
    features = train.drop(columns=[Y])
    text = [c for c in features.columns if not pd.api.types.is_numeric_dtype(features[c])]
    encoded = [c for c in text if features[c].nunique() <= 20]
    numbers = [c for c in features.columns if c not in text]
    columns = make_column_transformer(
        (StandardScaler(), numbers), (OneHotEncoder(handle_unknown="ignore"), encoded),
    )
    classes = train[Y].nunique() <= 20 and pd.api.types.is_integer_dtype(train[Y])
    estimator = LogisticRegression(max_iter=2000) if classes else Ridge()
    return make_pipeline(columns, estimator).fit(features, train[Y])


# The file each kind of MLA703 finding is about (its fingerprint's artifact key).
ROLES = {"target": "train", "shared-rows": "holdout", "split": "holdout"}


def expected_fingerprint(key: str) -> str:
    return fingerprint(Leakage.meta.id, ROLES[key.split(":", maxsplit=1)[0]], key)


@dataclass(frozen=True)
class Outcome:
    case: Case
    status: str
    findings: tuple[Finding, ...]
    seconds: float
    full_model: str

    @property
    def ok(self) -> bool:
        if self.case.key is None:
            return self.status == "passed" and not self.findings
        wanted = expected_fingerprint(self.case.key)
        return any(
            wanted in f.fingerprints and f.severity >= self.case.severity for f in self.findings
        )


def _weights_only(path: Path) -> None:
    """A safetensors file of one weight: scanned, never run, so MLA703 audits the data alone
    against its reference model (``--reference``)."""
    header = json.dumps({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + bytes(4))


def run_case(case: Case, folder: Path, profile: str, *, reference: bool = False) -> Outcome:
    train, holdout = case.build()
    folder.mkdir(parents=True)
    train.to_csv(folder / "train.csv", index=False)
    holdout.to_csv(folder / "holdout.csv", index=False)
    if reference:
        model = folder / "model.safetensors"
        _weights_only(model)
    else:
        model = folder / "model.joblib"
        joblib.dump(fit_model(train), model)
    subject = make_subject(model, train=folder / "train.csv",
                           holdout=folder / "holdout.csv", target=Y)
    started = time.perf_counter()
    result = run_rule(Leakage, subject, profile=profile)
    seconds = time.perf_counter() - started
    return Outcome(case, result.status.value, result.findings, seconds,
                   str(result.metrics.get("full_model", result.reason)))


def _shown(finding: Finding) -> str:
    pointer = finding.location.pointer
    return f"{finding.severity.value}: {finding.title}" + (f" ({pointer})" if pointer else "")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--profile", default="standard", choices=("quick", "standard",
                                                                  "thorough"))
    parser.add_argument("--only", nargs="*", default=None, help="case names to run")
    parser.add_argument("--reference", action="store_true",
                        help="give a model that is scanned but not run, so the full model is "
                        "MLA703's reference model")
    args = parser.parse_args(argv)
    cases = [c for c in CASES if args.only is None or c.name in args.only]
    outcomes = []
    with tempfile.TemporaryDirectory(prefix="mla703-panel-") as scratch:
        for number, case in enumerate(cases):
            outcome = run_case(case, Path(scratch) / str(number), args.profile,
                               reference=args.reference)
            outcomes.append(outcome)
            print(f"{case.name}: {'ok' if outcome.ok else 'MISSED'} "
                  f"({outcome.seconds:.1f} s)", file=sys.stderr)
    print("| dataset | kind | expected | MLA703 | findings | time (s) | ok |")
    print("|---|---|---|---|---|---:|---|")
    for o in outcomes:
        expected = "none" if o.case.key is None else f"{o.case.severity.value}: {o.case.key}"
        found = "; ".join(_shown(f) for f in o.findings) or "none"
        print(f"| {o.case.name} | {o.case.kind} | {expected} | {o.status} | {found} | "
              f"{o.seconds:.1f} | {'yes' if o.ok else '**no**'} |")
    times = [o.seconds for o in outcomes]
    caught = sum(o.ok for o in outcomes if o.case.key is not None)
    quiet = sum(o.ok for o in outcomes if o.case.key is None)
    leaks = sum(o.case.key is not None for o in outcomes)
    print(f"\nleaks caught {caught}/{leaks}; clean datasets quiet {quiet}/{len(outcomes) - leaks}; "
          f"median {statistics.median(times):.1f} s, max {max(times):.1f} s per case "
          f"(profile {args.profile}); full model: {outcomes[0].full_model}")
    return 0 if all(o.ok for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
