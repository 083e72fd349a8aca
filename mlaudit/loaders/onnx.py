"""ONNX models through ONNX Runtime: a format that carries no Python code."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.scanners.onnx_format import parse_onnx
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import InputKind, LoadedModel, Predictor, Task

_ONNX_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
}
_CLASS_LABEL_ATTRIBUTES = ("classlabels_ints", "classlabels_strings", "classlabels_int64s")


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    try:
        import onnxruntime
    except ImportError:
        raise InputError(
            f"{artifact.reference} is ONNX; running it needs onnxruntime: "
            "pip install 'mlaudit[onnx]'"
        ) from None
    assert artifact.path is not None
    session_options = onnxruntime.SessionOptions()
    session_options.log_severity_level = 3
    try:
        session = onnxruntime.InferenceSession(
            str(artifact.path), session_options, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # onnxruntime raises its own untyped errors
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise InputError(
            f"{artifact.reference} could not be loaded by ONNX Runtime: {first_line}"
        ) from None
    inputs = session.get_inputs()
    outputs = session.get_outputs()
    per_column = len(inputs) > 1
    feature_names = tuple(i.name for i in inputs) if per_column else None
    width = inputs[0].shape[1] if len(inputs[0].shape) == 2 else None
    n_features = len(inputs) if per_column else width if isinstance(width, int) else None
    feeder = _feeder(inputs, per_column)
    # One string input is a text model (a converted TfidfVectorizer pipeline, say): it reads
    # the data column the user names, or the engine finds.
    input_kind = InputKind.TABULAR
    if not per_column and inputs[0].type == "tensor(string)":
        input_kind, n_features, feeder = InputKind.TEXT, None, _text_feeder(inputs[0])
        feature_names = (options.text_column,) if options.text_column is not None else None
    classes = _class_labels(artifact, cache)
    has_probabilities = len(outputs) > 1
    task = Task.CLASSIFICATION if classes is not None or has_probabilities else Task.REGRESSION

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(session.run([outputs[0].name], feeder(frame))[0]).ravel()

    def predict_proba(frame: pd.DataFrame) -> np.ndarray:
        result = session.run([outputs[1].name], feeder(frame))[0]
        if isinstance(result, list):  # a ZipMap output: one {label: probability} per row
            labels = list(result[0].keys()) if result else []
            return np.asarray([[row[label] for label in labels] for row in result])
        return np.asarray(result)

    return LoadedModel(
        framework="onnxruntime",
        task=task,
        estimator=session,
        predictor=predict,
        probability_predictor=predict_proba if has_probabilities else None,
        classes=classes,
        n_features=n_features,
        feature_names=feature_names,
        input_kind=input_kind,
    )


def _feeder(inputs: list[Any], per_column: bool) -> Predictor:
    def feed(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        if per_column:
            return {
                spec.name: frame[spec.name].to_numpy(_ONNX_DTYPES.get(spec.type, np.float32))
                .reshape(-1, 1)
                for spec in inputs
            }
        spec = inputs[0]
        return {spec.name: frame.to_numpy(_ONNX_DTYPES.get(spec.type, np.float32))}

    return feed  # type: ignore[return-value]


def _text_feeder(spec: Any) -> Predictor:
    """The frame's one column of texts, shaped as the string input is ([n] or [n, 1]); a
    missing value is the empty text, as for scikit-learn text pipelines."""

    def feed(frame: pd.DataFrame) -> dict[str, np.ndarray]:
        column = frame.iloc[:, 0]
        texts = column.where(column.notna(), "").astype(str).to_numpy(dtype=object)
        return {spec.name: texts.reshape(-1, 1) if len(spec.shape) == 2 else texts}

    return feed  # type: ignore[return-value]


def _class_labels(artifact: ModelArtifact, cache: RunCache | None) -> tuple[object, ...] | None:
    """Class labels from the classifier node's attributes, read with the onnx package if present
    (from the parse the scan already made, with the run's ``cache``)."""
    try:
        import onnx
    except ImportError:
        return None
    assert artifact.path is not None
    model = parse_onnx(artifact.path, cache, by="the ONNX loader")
    for node in model.graph.node:
        for attribute in node.attribute:
            if attribute.name in _CLASS_LABEL_ATTRIBUTES:
                values = onnx.helper.get_attribute_value(attribute)
                return tuple(v.decode() if isinstance(v, bytes) else int(v) for v in values)
    return None
