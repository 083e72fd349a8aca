"""Small generated text data and real scikit-learn text pipelines for the text tests.

Reviews are neutral filler words plus cue words. A *brittle* set has one cue word in every
positive review (and none in negative ones): the decision rests on that one word, so one typo
or synonym flips it. A *robust* set has several cue words per positive review, so changing
one word (the budget at a 10% word share of a 15-word text) cannot.
"""

from __future__ import annotations

from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.svm import LinearSVC

TEXT, LABEL = "review", "label"
CUES = ("excellent", "wonderful", "superb", "great", "brilliant", "charming")
FILLER = (
    "the", "movie", "film", "plot", "actor", "scene", "story", "was", "is", "and", "a", "it",
    "this", "with", "of", "in", "on", "by", "we", "saw", "then", "there", "at", "for", "from",
    "after", "before", "during",
)


def reviews(rows: int, *, cues: int, seed: int, filler: int = 12) -> pd.DataFrame:
    """``rows`` reviews, half positive (``cues`` cue words each), half negative (none)."""
    rng = np.random.default_rng(seed)
    texts, labels = [], []
    for row in range(rows):
        positive = row % 2
        words = list(rng.choice(FILLER, size=filler))
        if positive:
            words += list(rng.choice(CUES, size=cues))
        rng.shuffle(words)
        texts.append(" ".join(words).capitalize() + ".")
        labels.append(positive)
    return pd.DataFrame({TEXT: texts, LABEL: labels})


def pipeline(kind: str) -> Pipeline:
    """A TF-IDF text pipeline ending in ``svc`` (LinearSVC) or ``logreg``."""
    head = LinearSVC(C=1.0) if kind == "svc" else LogisticRegression(C=1.0, max_iter=1000)
    return Pipeline([("tfidf", TfidfVectorizer()), (kind, head)])


def write_case(root: Path, *, kind: str, cues: int) -> tuple[Path, Path, Path]:
    """A fitted pipeline's joblib file and its train and holdout CSVs under ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    train = reviews(600, cues=cues, seed=1)  # enough rows not to memorise the filler
    holdout = reviews(160, cues=cues, seed=2)
    model = pipeline(kind).fit(train[TEXT], train[LABEL])
    paths = root / f"{kind}.joblib", root / "train.csv", root / "holdout.csv"
    joblib.dump(model, paths[0])
    train.to_csv(paths[1], index=False)
    holdout.to_csv(paths[2], index=False)
    return paths
