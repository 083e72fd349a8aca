"""Small real models and data for the privacy tests: one that memorises, one that does not.

Sizes are the smallest that exercise the default gate: TPR at 1% FPR needs 1,000 non-members.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from mlaudit.core.findings import JsonValue, RuleResult
from mlaudit.engine.run import EngineSettings, run_audit
from mlaudit.rules.base import Rule, RuleContext
from mlaudit.subject.build import Subject, build_subject
from mlaudit.subject.model_info import LoadedModel

TARGET = "y"
ROWS = 1000
FEATURES = ("a", "b", "c", "d")


def noisy_frame(rows: int, seed: int) -> pd.DataFrame:
    """Labels the features cannot predict: all a deep forest can do is memorise them."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=list(FEATURES))
    frame[TARGET] = rng.integers(0, 2, rows)
    return frame


def clean_frame(rows: int, seed: int) -> pd.DataFrame:
    """Labels a linear model predicts well; nothing to memorise."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(rows, len(FEATURES))), columns=list(FEATURES))
    frame[TARGET] = (frame["a"] + 0.5 * frame["b"] + rng.normal(0, 0.5, rows) > 0).astype(int)
    return frame


def forest() -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=40, random_state=0)


def regularised() -> Any:
    return make_pipeline(StandardScaler(), LogisticRegression(C=0.1))


def write_subject(
    root: Path, model: Any, train: pd.DataFrame, holdout: pd.DataFrame, *, fit: bool = True
) -> Subject:
    """Fit ``model`` on ``train`` (unless ``fit`` is false), save everything, build a subject."""
    root.mkdir(parents=True, exist_ok=True)
    if fit:
        model.fit(train.drop(columns=[TARGET]), train[TARGET])
    joblib.dump(model, root / "model.joblib")
    train.to_csv(root / "train.csv", index=False)
    holdout.to_csv(root / "holdout.csv", index=False)
    return build_subject(
        str(root / "model.joblib"), data=None, train=root / "train.csv",
        holdout=root / "holdout.csv", target=TARGET, source=None, requirements=[],
    )


def audit(
    subject: Subject,
    rules: Sequence[type[Rule]],
    options: Mapping[str, Mapping[str, JsonValue]] | None = None,
    *,
    seed: int = 0,
) -> dict[str, RuleResult]:
    settings = EngineSettings(seed=seed, profile="quick", rule_options=dict(options or {}))
    return {r.rule_id: r for r in run_audit(subject, rules, settings).results}


def context(
    rule: type[Rule], subject: Subject, model: LoadedModel,
    options: Mapping[str, JsonValue] | None = None,
) -> RuleContext:
    """A context as the engine builds it, for a model the engine would not load by itself."""
    merged: dict[str, JsonValue] = {o.name: o.default for o in rule.meta.options}
    merged.update(options or {})
    return RuleContext(
        rule.meta, subject, model.counting(), merged, 0, "quick", time.monotonic() + 120
    )
