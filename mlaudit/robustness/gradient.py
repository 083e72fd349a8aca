"""White-box evasion with ART's FGSM and PGD, in the same scaled space as the other attacks.

ART attacks the vector it is given. We give it the unit-scaled features and fold the scaling
(and a leading StandardScaler or MinMaxScaler) into ART's ``preprocessing`` so the gradients
are taken through the exact function the model computes. Frozen features are masked, so ART
never moves them; every adversarial example is then realised (integers rounded) and re-asked
of the model through the counted oracle, and only those the model really misclassifies count.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import numpy as np

from mlaudit.robustness.space import FeatureSpace
from mlaudit.subject.model_info import LoadedModel

# ART's attacks compute in float32: their results are exact to its precision, not float64's.
ATTACK_DTYPE = np.dtype(np.float32)
# ART clips adversarial examples to clip_values; frozen features are masked and must never be
# clipped, so their bounds are effectively unbounded.
_UNBOUNDED = 1e12


class NoGradients(Exception):
    """The model exposes no gradients ART can use; the message says why."""


@dataclass(frozen=True, eq=False)
class GradientModel:
    """An ART classifier over the full input vector with a per-feature unit scaling."""

    classifier: Any
    offset: np.ndarray
    span: np.ndarray
    mask: np.ndarray
    """1 for mutable features (in ``space.mutable`` order), 0 for frozen ones."""

    def to_input(self, raw: np.ndarray) -> np.ndarray:
        return np.asarray((raw - self.offset) / self.span)

    def to_raw(self, vector: np.ndarray) -> np.ndarray:
        return np.asarray(self.offset + vector * self.span)


def _affine(space: FeatureSpace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    width = len(space.columns)
    offset, span, mask = np.zeros(width), np.ones(width), np.zeros(width)
    for j, column_index in enumerate(space.mutable):
        offset[column_index] = space.lower[j]
        span[column_index] = space.scale[j]
        mask[column_index] = 1.0
    return offset, span, mask


def _split_scalers(estimator: Any) -> tuple[list[Any], Any]:
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, StandardScaler

    if not isinstance(estimator, Pipeline):
        return [], estimator
    *front, (_, last) = estimator.steps
    scalers = [step for _, step in front if step not in (None, "passthrough")]
    for scaler in scalers:
        if not isinstance(scaler, (StandardScaler, MinMaxScaler)):
            raise NoGradients(
                f"the pipeline step {type(scaler).__name__} is not a per-feature scaling, so "
                "gradients cannot be taken through it"
            )
    return scalers, last


def _scaler_affine(scalers: list[Any], width: int) -> tuple[np.ndarray, np.ndarray]:
    """Scalers as one map raw -> (raw - shift) / scale."""
    from sklearn.preprocessing import StandardScaler

    shift, scale = np.zeros(width), np.ones(width)
    for scaler in scalers:
        if isinstance(scaler, StandardScaler):
            mean = scaler.mean_ if scaler.with_mean else np.zeros(width)
            std = scaler.scale_ if scaler.with_std else np.ones(width)
        else:  # MinMaxScaler: raw * scale_ + min_ == (raw - (-min_ / scale_)) / (1 / scale_)
            mean, std = -scaler.min_ / scaler.scale_, 1.0 / scaler.scale_
        # (((raw - shift) / scale) - mean) / std == (raw - (shift + mean*scale)) / (scale*std)
        shift, scale = shift + mean * scale, scale * std
    return shift, scale


def scaler_split(estimator: Any, width: int) -> tuple[np.ndarray, np.ndarray, Any]:
    """A pipeline's leading scalers as ``(shift, scale)`` and its final estimator."""
    scalers, last = _split_scalers(estimator)
    shift, scale = _scaler_affine(scalers, width)
    return shift, scale, last


def gradient_model(model: LoadedModel, space: FeatureSpace) -> GradientModel:
    """Wrap ``model`` for ART, or raise :class:`NoGradients` with the reason."""
    if len(space.columns) != len(space.mutable) + len(space.frozen):
        raise NoGradients("the model's inputs could not be mapped to features")
    if any(f.reason in ("not numeric", "boolean") for f in space.frozen):
        raise NoGradients("the model takes non-numeric inputs, which have no gradients")
    offset, span, mask = _affine(space)
    width = len(space.columns)
    extent = np.full(width, _UNBOUNDED)
    extent[list(space.mutable)] = space.extent
    low = np.where(mask > 0, 0.0, -_UNBOUNDED)
    high = np.where(mask > 0, extent, _UNBOUNDED)
    nb_classes = len(model.classes or ())
    # "pytorch" or "pytorch (torchscript)": the loader gives the module that returns class
    # logits whatever the model's head (probabilities, one logit); a module given as such is
    # taken to return logits.
    if model.framework.startswith("pytorch"):
        logits = model.class_logits if model.class_logits is not None else model.estimator
        return GradientModel(
            _torch_classifier(
                logits, width, nb_classes, offset=offset, span=span, clip=(low, high)
            ),
            offset,
            span,
            mask,
        )
    shift, scale, last = scaler_split(model.estimator, width)
    # model(scalers(offset + v * span)) == last((v - (shift - offset) / span) / (scale / span))
    preprocessing = ((shift - offset) / span, scale / span)
    return GradientModel(_sklearn_classifier(last, preprocessing, (low, high)), offset, span, mask)


def _sklearn_classifier(
    estimator: Any,
    preprocessing: tuple[np.ndarray, np.ndarray],
    clip: tuple[np.ndarray, np.ndarray],
) -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import SVC, LinearSVC

    # ART is imported only for a model it can take: importing it costs seconds.
    if isinstance(estimator, LogisticRegression):
        from art.estimators.classification.scikitlearn import ScikitlearnLogisticRegression

        return ScikitlearnLogisticRegression(
            estimator, clip_values=clip, preprocessing=preprocessing
        )
    if isinstance(estimator, (SVC, LinearSVC)):
        kernel = getattr(estimator, "kernel", "linear")
        if kernel not in ("linear", "rbf"):
            raise NoGradients(f"ART has gradients for linear and RBF SVMs, not kernel={kernel!r}")
        from art.estimators.classification.scikitlearn import ScikitlearnSVC

        if isinstance(estimator, SVC) and not callable(getattr(estimator, "predict_proba", None)):
            # scikit-learn 1.9 defaults ``probability`` to the truthy string "deprecated", which
            # makes ART call the missing predict_proba; a copy that says False uses predict.
            estimator = copy.copy(estimator)
            estimator.probability = False
        return ScikitlearnSVC(estimator, clip_values=clip, preprocessing=preprocessing)
    raise NoGradients(
        f"{type(estimator).__name__} exposes no gradients ART supports (supported: "
        "LogisticRegression, SVC, LinearSVC, optionally after StandardScaler/MinMaxScaler, and "
        "PyTorch modules); MLA201 attacks it without gradients"
    )


def _torch_classifier(
    module: Any,
    width: int,
    nb_classes: int,
    *,
    offset: np.ndarray,
    span: np.ndarray,
    clip: tuple[np.ndarray, np.ndarray],
) -> Any:
    import torch
    from art.estimators.classification import PyTorchClassifier

    if nb_classes < 2:
        raise NoGradients("the PyTorch module does not output class scores")
    return PyTorchClassifier(
        module,
        loss=torch.nn.CrossEntropyLoss(),
        input_shape=(width,),
        nb_classes=nb_classes,
        clip_values=clip,
        # offset + v * span == (v - (-offset / span)) / (1 / span)
        preprocessing=(-offset / span, 1.0 / span),
        device_type="cpu",
    )


def evade(
    wrapped: GradientModel,
    vectors: np.ndarray,
    labels: np.ndarray,
    *,
    method: str,
    norm: str,
    epsilon: float,
    iterations: int,
) -> np.ndarray:
    """ART's FGSM or PGD at ``epsilon`` (in each feature's unit; L2 as an RMS), in float32."""
    from art.attacks.evasion import FastGradientMethod, ProjectedGradientDescent

    dims = max(int(wrapped.mask.sum()), 1)
    art_norm: float = np.inf if norm == "linf" else 2
    # Our L2 is a root-mean-square over mutable features; ART's is the plain Euclidean norm.
    eps = epsilon if norm == "linf" else epsilon * float(np.sqrt(dims))
    one_hot = np.eye(wrapped.classifier.nb_classes)[labels]
    mask = np.broadcast_to(wrapped.mask, vectors.shape).astype(ATTACK_DTYPE)
    if method == "fgsm":
        attack = FastGradientMethod(wrapped.classifier, norm=art_norm, eps=eps)
    else:
        # No random start: ART draws it from numpy's global generator, which would make the
        # result depend on other threads; PGD from x itself is deterministic.
        attack = ProjectedGradientDescent(
            wrapped.classifier,
            norm=art_norm,
            eps=eps,
            eps_step=eps / 4.0,
            max_iter=iterations,
            num_random_init=0,
            verbose=False,
        )
    adversarial: np.ndarray = attack.generate(vectors.astype(ATTACK_DTYPE), y=one_hot, mask=mask)
    return adversarial.astype(np.float64)
