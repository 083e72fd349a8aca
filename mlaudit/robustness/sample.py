"""The rows every robustness rule attacks, rebuilt from plain values.

A rule and a cluster task must attack the very same rows: both build them here from the
subject, the loaded model and a :class:`SampleRequest` (the run seed, the sample size and the
rule's realism options), never from state only the rule holds.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from mlaudit.core.findings import JsonValue
from mlaudit.robustness.oracle import ModelOutputError, Oracle
from mlaudit.robustness.space import FeatureSpace
from mlaudit.subject.build import Subject
from mlaudit.subject.model_info import InputKind, LoadedModel, Task

SAMPLE_SALT = 0x4D4C4132  # "MLA2"
# Feature-space perturbations mean nothing for a model that reads one text per row.
TEXT_INPUT_REASON = "text input: MLA205 attacks text"


class SampleUnusable(Exception):
    """No rows can be attacked; the message says why (the rule is skipped with it)."""


@dataclass(frozen=True)
class SampleRequest:
    """What decides the attacked rows, in plain values a cluster task receives.

    ``relative_epsilon``: feature names or glob patterns to their own ε over the judged one
    (None: the rule has no ε); ``against_labels``: a classifier is compared with the true
    labels (robust accuracy) rather than with its own clean answers (stability);
    ``threshold`` and ``tolerance_share``: how far a regressor's output must move to count.
    """

    seed: int
    size: int
    immutable: tuple[str, ...]
    categorical: tuple[str, ...]
    relative_epsilon: Mapping[str, float] | None
    against_labels: bool
    threshold: float
    tolerance_share: float

    def params(self) -> dict[str, JsonValue]:
        relative: JsonValue = (
            None if self.relative_epsilon is None else dict(self.relative_epsilon)
        )
        return {
            "seed": self.seed, "size": self.size, "immutable": list(self.immutable),
            "categorical": list(self.categorical), "relative_epsilon": relative,
            "against_labels": self.against_labels, "threshold": self.threshold,
            "tolerance_share": self.tolerance_share,
        }

    @classmethod
    def from_params(cls, params: Mapping[str, JsonValue]) -> SampleRequest:
        relative = params["relative_epsilon"]
        return cls(
            _int(params["seed"]), _int(params["size"]), _strings(params["immutable"]),
            _strings(params["categorical"]),
            None if relative is None else {
                str(k): _float(v) for k, v in _mapping(relative).items()
            },
            bool(params["against_labels"]), _float(params["threshold"]),
            _float(params["tolerance_share"]),
        )


def _int(value: JsonValue) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f"expected a whole number, got {value!r}")


def _float(value: JsonValue) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise ValueError(f"expected a number, got {value!r}")


def _strings(value: JsonValue) -> tuple[str, ...]:
    if isinstance(value, list):
        return tuple(str(v) for v in value)
    raise ValueError(f"expected a list of names, got {value!r}")


def _mapping(value: JsonValue) -> Mapping[str, JsonValue]:
    if isinstance(value, dict):
        return value
    raise ValueError(f"expected a table, got {value!r}")


@dataclass(frozen=True, eq=False)
class AttackSample:
    """The rows under attack and what the model says about them unperturbed, and the
    request they were built from (which a cluster task rebuilds them from)."""

    request: SampleRequest
    frame: pd.DataFrame
    space: FeatureSpace
    task: Task
    reference: np.ndarray
    """True labels (classification) or clean predictions (regression), one per row."""
    clean: np.ndarray
    """The model's clean predictions."""
    tolerance: float | None
    excluded_rows: int
    tolerance_basis: str | None = None
    """Regressors: what ``tolerance`` was derived from (holdout RMSE, spread, threshold)."""

    @property
    def correct(self) -> np.ndarray:
        """Rows the attacks try to flip: correctly classified ones, or every regression row."""
        if self.task is Task.REGRESSION:
            return np.arange(len(self.frame))
        return np.flatnonzero(self.clean == self.reference)

    def oracle(self, model: LoadedModel) -> Oracle:
        return Oracle(model, self.space, self.frame, self.reference, self.tolerance)

    @cached_property
    def digest(self) -> str:
        """A fingerprint of everything an attack on this sample depends on besides its
        settings: the rows, their reference and clean answers, the tolerance and the space."""
        space = self.space
        arrays = [
            pd.util.hash_pandas_object(self.frame, index=False).to_numpy(),
            pd.util.hash_pandas_object(pd.Series(self.reference), index=False).to_numpy(),
            pd.util.hash_pandas_object(pd.Series(self.clean), index=False).to_numpy(),
            space.lower, space.upper, space.integer, space.scale,
        ]
        digest = hashlib.sha256(
            repr((space.columns, space.mutable, self.task.value, self.tolerance)).encode()
        )
        for array in arrays:
            digest.update(np.ascontiguousarray(array).tobytes())
        return digest.hexdigest()


def draw(candidates: np.ndarray, seed: int, size: int) -> np.ndarray:
    """The rows the robustness family judges, drawn from ``candidates``: one draw for the
    whole family, so MLA201-205 judge the same rows and can be compared. In the draw's random
    order, not the file's: a rule that scales down judges the first rows of the sample, and
    those must be a uniform sample too, also of a file sorted by class or by time."""
    rng = np.random.default_rng([seed, SAMPLE_SALT])
    return rng.choice(candidates, size=min(size, len(candidates)), replace=False)


def build_sample(model: LoadedModel, subject: Subject, request: SampleRequest) -> AttackSample:
    """Draw the sample, build the space and ask the model for its clean answers."""
    sample = subject.sample
    assert sample is not None
    if model.input_kind is InputKind.TEXT:
        raise SampleUnusable(TEXT_INPUT_REASON)
    if model.task is Task.UNKNOWN:
        raise SampleUnusable("the model's task (classification or regression) is unknown")
    frames = [model.select_features(d.features) for d in subject.datasets]
    space = FeatureSpace.from_data(
        frames,
        immutable=list(request.immutable),
        categorical=list(request.categorical),
        relative_epsilon=request.relative_epsilon,
    )
    if space.dimensions == 0:
        raise SampleUnusable(
            "no feature may change: every input is frozen, constant or not numeric"
        )
    features = model.select_features(sample.features)
    usable = ~features.iloc[:, list(space.mutable)].isna().any(axis=1).to_numpy()
    labels = sample.labels
    if request.against_labels and labels is not None:
        usable &= labels.notna().to_numpy()
    candidates = np.flatnonzero(usable)
    if len(candidates) == 0:
        raise SampleUnusable("every sample row has a missing value in a feature that may change")
    chosen = draw(candidates, request.seed, request.size)
    frame = features.iloc[chosen].reset_index(drop=True)
    clean = _checked(model.predict(frame), len(frame))
    tolerance: float | None = None
    basis: str | None = None
    if model.task is Task.REGRESSION:
        truth = None if labels is None else labels.to_numpy()[chosen]
        tolerance, basis = _regression_tolerance(request, clean, truth)
        reference = clean
    elif not request.against_labels:
        reference = clean
    else:
        if labels is None:
            raise SampleUnusable("no labels: give --target")
        reference = labels.to_numpy()[chosen]
        if len(np.unique(reference)) < 2 and len(np.unique(clean)) < 2:
            raise SampleUnusable("the sample holds a single class and the model predicts only it")
    return AttackSample(
        request, frame, space, model.task, reference, clean, tolerance,
        len(features) - len(candidates), basis,
    )


# A cluster worker keeps its loaded model for the whole run and is asked for chunk after chunk
# of one sample: the last sample it built is kept (with the model and subject it came from),
# so a request does not redraw the rows and re-ask the model for their clean answers.
_LAST_BUILT: list[tuple[LoadedModel, Subject, SampleRequest, AttackSample]] = []


def rebuilt_sample(model: LoadedModel, subject: Subject, request: SampleRequest) -> AttackSample:
    """:func:`build_sample`, or the sample the last call built from the same arguments."""
    for known_model, known_subject, known_request, sample in _LAST_BUILT:
        if known_model is model and known_subject is subject and known_request == request:
            return sample
    sample = build_sample(model, subject, request)
    _LAST_BUILT[:] = [(model, subject, request, sample)]
    return sample


def _regression_tolerance(
    request: SampleRequest, clean: np.ndarray, truth: np.ndarray | None
) -> tuple[float, str]:
    """How far a regressor's prediction must move to count as a changed answer.

    The user's ``threshold`` if given; else ``tolerance`` times the model's RMSE on the
    labelled sample rows (its own error: a smaller move is within what it gets wrong anyway);
    without labels, ``tolerance`` times the spread of its predictions.
    """
    if request.threshold > 0:
        return request.threshold, "threshold (configured)"
    share = request.tolerance_share
    predicted = clean.astype(np.float64)
    if truth is not None:
        known = ~pd.isna(truth)
        if known.any():
            errors = predicted[known] - truth[known].astype(np.float64)
            rmse = float(np.sqrt(np.mean(errors * errors)))
            if rmse > 0:
                return share * rmse, f"{share:g} x holdout RMSE {rmse:.6g}"
    spread = float(np.std(predicted))
    if not spread > 0:
        raise SampleUnusable("the model predicts one value for every sample row")
    return share * spread, f"{share:g} x standard deviation of the predictions (no labels)"


def _checked(outputs: np.ndarray, rows: int) -> np.ndarray:
    if outputs.ndim == 2 and outputs.shape[1] == 1:
        outputs = outputs[:, 0]
    if outputs.shape != (rows,):
        raise ModelOutputError(
            f"the model's predict returned shape {outputs.shape} for {rows} rows; "
            f"expected ({rows},)"
        )
    return outputs
