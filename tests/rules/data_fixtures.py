"""Small frames and a model for the MLA701/MLA704 tests: training data, and data like it or not."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier

FEATURES = ["a", "b"]


def frame(rows: int = 1500, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    """Two model inputs (a, b), a category and a number the model does not read, a label."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({
        "a": rng.normal(shift, 1.0, rows),
        "b": rng.normal(0.0, 1.0, rows),
        "colour": rng.choice(["red", "green", "blue"], rows),
        "size": rng.integers(0, 50, rows).astype(float),
    })
    data["y"] = (data["a"] + data["b"] > 0).astype(int)
    return data


def forest(train: pd.DataFrame) -> RandomForestClassifier:
    return RandomForestClassifier(n_estimators=15, random_state=0).fit(train[FEATURES], train["y"])
