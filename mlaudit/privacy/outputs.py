"""The audited model's outputs on the evaluation rows: queried once, shared by every attack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from mlaudit.privacy.evaluation import InvalidEvaluation
from mlaudit.subject.model_info import LoadedModel


@dataclass(frozen=True, eq=False)
class ModelOutputs:
    """Class probabilities (``None`` for a label-only model) and predicted class indices."""

    probabilities: np.ndarray | None
    predicted: np.ndarray
    classes: int

    @property
    def label_only(self) -> bool:
        return self.probabilities is None

    def as_prediction_vectors(self) -> np.ndarray:
        """Probabilities, or one-hot predictions where the model gives only labels."""
        if self.probabilities is not None:
            return self.probabilities
        vectors = np.zeros((len(self.predicted), self.classes))
        known = self.predicted >= 0
        vectors[np.flatnonzero(known), self.predicted[known]] = 1.0
        return vectors

    def true_class_probability(self, labels: np.ndarray) -> np.ndarray:
        assert self.probabilities is not None
        return np.asarray(self.probabilities[np.arange(len(labels)), labels], dtype=float)


def query_outputs(
    model: LoadedModel, features: pd.DataFrame, classes: tuple[object, ...]
) -> ModelOutputs:
    """One batched query of ``features`` (counted on ``model``)."""
    probabilities = model.predict_proba(features)
    if probabilities is not None:
        probabilities = np.asarray(probabilities, dtype=float)
        if probabilities.ndim != 2 or probabilities.shape[1] != len(classes):
            raise InvalidEvaluation(
                f"the model returns {probabilities.shape[-1]} probability columns for "
                f"{len(classes)} classes"
            )
        return ModelOutputs(probabilities, probabilities.argmax(axis=1), len(classes))
    index = {c: i for i, c in enumerate(classes)} | {str(c): i for i, c in enumerate(classes)}
    predicted = np.array(
        [index.get(v, index.get(str(v), -1)) for v in model.predict(features).tolist()],
        dtype=np.int64,
    )
    # A prediction outside the classes can never be correct; -1 keeps it wrong everywhere.
    return ModelOutputs(None, predicted, len(classes))
