"""How the Adversarial Robustness Toolbox (ART) sees a model that mlaudit queries.

ART attacks take float matrices and an ART estimator. Rather than wrapping the raw estimator
(ART's scikit-learn wrappers break on Pipelines, ART issue #1634, and cannot wrap ONNX),
every model is handed to ART as a ``BlackBoxClassifier`` whose predict function decodes the
matrix back into the model's own DataFrame and queries it through :class:`LoadedModel`, so
ART's queries are counted like any other and any loadable model works. Text columns become
ordinal codes on the way in and their original values on the way out.

ART is an optional extra: it is imported by name, only when an attack runs, so mlaudit and
the rules that do not need it import without it (and ART's untyped modules stay ``Any``).
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mlaudit.privacy.outputs import query_outputs
from mlaudit.subject.model_info import LoadedModel

ART_EXTRA = "art"
ART_MISSING = "needs the 'art' extra: pip install 'mlaudit[art]'"


def art_available() -> bool:
    return importlib.util.find_spec("art") is not None


def art_module(name: str) -> Any:
    return importlib.import_module(name)


@dataclass(frozen=True)
class FrameCodec:
    """Model inputs as a float matrix and back, losslessly.

    Numeric columns pass through (cast back to their dtype on decoding); every other column is
    replaced by the index of its value in ``categories`` (missing values become NaN).
    """

    columns: tuple[str, ...]
    dtypes: tuple[Any, ...]
    categories: tuple[tuple[object, ...] | None, ...]

    def encode(self, frame: pd.DataFrame) -> np.ndarray:
        encoded = np.empty((len(frame), len(self.columns)), dtype=float)
        for i, (column, values) in enumerate(zip(self.columns, self.categories, strict=True)):
            series = frame[column]
            if values is None:
                encoded[:, i] = series.to_numpy(dtype=float, na_value=np.nan)
            else:
                codes = {v: float(code) for code, v in enumerate(values)}
                encoded[:, i] = [codes.get(v, np.nan) for v in series.tolist()]
        return encoded

    def decode(self, matrix: np.ndarray) -> pd.DataFrame:
        data: dict[str, Any] = {}
        for i, (column, dtype, values) in enumerate(
            zip(self.columns, self.dtypes, self.categories, strict=True)
        ):
            cells = matrix[:, i]
            if values is None:
                data[column] = cells.astype(dtype) if not np.isnan(cells).any() else cells
            else:
                data[column] = [
                    values[int(c)] if np.isfinite(c) and 0 <= c < len(values) else None
                    for c in cells
                ]
        return pd.DataFrame(data, columns=list(self.columns))


def codec_for(frame: pd.DataFrame) -> FrameCodec:
    categories: list[tuple[object, ...] | None] = []
    for column in frame.columns:
        series = frame[column]
        if pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series):
            categories.append(None)
        else:
            categories.append(tuple(sorted(series.dropna().unique().tolist(), key=str)))
    return FrameCodec(
        tuple(str(c) for c in frame.columns),
        tuple(frame[c].dtype for c in frame.columns),
        tuple(categories),
    )


def art_classifier(model: LoadedModel, codec: FrameCodec, classes: tuple[object, ...]) -> Any:
    """An ART ``BlackBoxClassifier`` answering through ``model`` (queries counted there)."""
    blackbox = art_module("art.estimators.classification")

    def predict(matrix: np.ndarray) -> np.ndarray:
        frame = codec.decode(np.asarray(matrix, dtype=float))
        return query_outputs(model, frame, classes).as_prediction_vectors()

    return blackbox.BlackBoxClassifier(
        predict, input_shape=(len(codec.columns),), nb_classes=len(classes)
    )


def seed_attack_model(attack: Any, rng: np.random.Generator) -> None:
    """Seed the scikit-learn model ART created inside an attack.

    ART builds its default attack models (``attack_model_type="rf"``) without a random state;
    seeding the instance keeps ART's "default model" code path (probability outputs) while
    making the run reproducible from the audit seed.
    """
    attack.attack_model.set_params(random_state=int(rng.integers(2**31 - 1)))
