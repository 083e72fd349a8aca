"""Small models and data with known robustness, shared by the robustness tests."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.subject.model_info import LoadedModel


def separated(rows: int = 200, gap: float = 0.2, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray]:
    """Two classes split on ``lead`` with an empty band of width ``gap`` around 0.5.

    ``lead`` spans [0, 1]; ``count`` is an integer feature; ``noise`` carries no signal.
    """
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, rows)
    half = (1.0 - gap) / 2.0
    lead = np.where(labels == 1, 1.0 - rng.uniform(0, half, rows), rng.uniform(0, half, rows))
    lead[:2] = [0.0, 1.0]  # pin the observed range to exactly [0, 1]
    labels[:2] = [0, 1]
    frame = pd.DataFrame(
        {
            "lead": lead,
            "count": rng.integers(0, 10, rows),
            "noise": rng.normal(0.0, 1.0, rows),
        }
    )
    return frame, labels


def threshold_model(frame: pd.DataFrame, labels: np.ndarray) -> LoadedModel:
    """A logistic regression on ``lead`` alone: its boundary is close to lead = 0.5."""
    estimator = LogisticRegression(C=1e4, max_iter=2000).fit(frame, labels)
    return wrap_estimator(estimator, "sklearn", "test")
