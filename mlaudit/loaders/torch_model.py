"""A loaded PyTorch module as a :class:`LoadedModel`: how its raw outputs read, queried in batches.

A module returns a tensor; whether it holds class logits, class probabilities or a regression
value is not in the file. The user may say (``model_output``); otherwise it is read from the
output's width and from one probe batch: one column is a regression, rows that are already
probabilities (in [0, 1], summing to 1) are probabilities, anything else is logits.

A classifier's reading is turned into one torch module that returns class logits
(:class:`ClassLogits`, the model's ``class_logits``): the probabilities are its softmax, and
gradient attacks (MLA202) differentiate it directly, whatever the head looked like.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import torch

from mlaudit.core.errors import InputError, ModelNotRunnable, first_line
from mlaudit.core.load_options import LoadOptions
from mlaudit.subject.model_info import LoadedModel, Task, softmax

# Rows per forward pass: large enough that a rule's cost is the model's batch throughput, small
# enough that a wide model's activations stay in memory.
BATCH_ROWS = 4096
_PROBE_ROWS = 64
_PROBE_SEED = 0
# How far a row of probabilities may sum from 1 in float32 after a softmax.
_SUM_TOLERANCE = 1e-4
_LOG_FLOOR = 1e-12


class OutputReading(enum.Enum):
    """How the module's raw output reads."""

    LOGITS = "logits"  # one score per class
    PROBABILITIES = "probabilities"  # one probability per class
    SINGLE_LOGIT = "single logit"  # a binary head: the positive class's logit
    SINGLE_PROBABILITY = "single probability"  # a binary head: the positive class's probability
    REGRESSION = "regression"


def first_tensor(output: Any) -> torch.Tensor:
    """A module's output tensor; modules that return a tuple or list give their first one."""
    while isinstance(output, (tuple, list)) and output:
        output = output[0]
    if not isinstance(output, torch.Tensor):
        raise InputError(f"the PyTorch model returned {type(output).__name__}, not a tensor")
    return output


class ClassLogits(torch.nn.Module):
    """``model`` with its head read as class logits (one column per class), so that the
    probabilities are their softmax and a cross-entropy loss differentiates through them."""

    def __init__(self, model: torch.nn.Module, reading: OutputReading) -> None:
        super().__init__()
        self.model = model
        self.reading = reading

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        output = first_tensor(self.model(inputs))
        if output.ndim == 1:
            output = output.unsqueeze(1)
        if self.reading is OutputReading.PROBABILITIES:
            return torch.log(output.clamp_min(_LOG_FLOOR))
        if self.reading is OutputReading.SINGLE_LOGIT:
            # softmax([0, z]) == [1 - sigmoid(z), sigmoid(z)]
            return torch.cat([torch.zeros_like(output), output], dim=1)
        if self.reading is OutputReading.SINGLE_PROBABILITY:
            positive = output.clamp(_LOG_FLOOR, 1 - _LOG_FLOOR)
            return torch.cat([torch.log1p(-positive), torch.log(positive)], dim=1)
        return output


def _linear_weights(module: torch.nn.Module) -> Iterator[torch.Tensor]:
    """The weight of every fully connected layer, in order; TorchScript keeps the layers as
    script modules that still carry their original class name."""
    for layer in module.modules():
        is_linear = isinstance(layer, torch.nn.Linear) or (
            getattr(layer, "original_name", None) == "Linear"
        )
        weight = getattr(layer, "weight", None) if is_linear else None
        if isinstance(weight, torch.Tensor) and weight.ndim == 2:
            yield weight


def _input_dtype(module: torch.nn.Module) -> torch.dtype:
    floating = (p.dtype for p in module.parameters() if p.dtype.is_floating_point)
    return next(floating, torch.float32)


def wrap_module(module: torch.nn.Module, framework: str, options: LoadOptions) -> LoadedModel:
    """``module`` (already on the CPU) as a queryable model, its outputs read as ``options``
    says or as a probe shows."""
    module.eval()
    weights = list(_linear_weights(module))
    if not weights:
        raise ModelNotRunnable(
            "mlaudit queries PyTorch models with rows of tabular features and finds their width "
            "from the first Linear layer; this model has none"
        )
    n_features = int(weights[0].shape[1])
    dtype = _input_dtype(module)

    def raw(inputs: torch.Tensor, target: torch.nn.Module = module) -> torch.Tensor:
        with torch.no_grad():
            output = first_tensor(target(inputs.to(dtype)))
        return output.unsqueeze(1) if output.ndim == 1 else output

    probe = torch.randn(
        _PROBE_ROWS, n_features, generator=torch.Generator().manual_seed(_PROBE_SEED)
    )
    try:
        probed = raw(probe)
    except InputError:
        raise
    except Exception as error:  # the user's forward may raise anything on a wrong input
        raise InputError(
            f"the PyTorch model fails on rows of {n_features} features (the width of its first "
            f"Linear layer): {type(error).__name__}: {first_line(error)}"
        ) from None
    if probed.ndim != 2 or len(probed) != _PROBE_ROWS:
        raise InputError(
            f"the PyTorch model returns outputs of shape {tuple(probed.shape)} for "
            f"{_PROBE_ROWS} rows; mlaudit reads one row of scores or one value per input row"
        )
    reading = _reading(probed, options.model_output)
    head = ClassLogits(module, reading).eval()

    def batches(frame: pd.DataFrame, target: torch.nn.Module) -> np.ndarray:
        rows = torch.from_numpy(frame.to_numpy(dtype=np.float32, copy=True))
        # An empty frame is one empty batch: the output keeps its width.
        starts = range(0, max(len(rows), 1), BATCH_ROWS)
        joined = torch.cat([raw(rows[i : i + BATCH_ROWS], target) for i in starts])
        return np.asarray(joined.detach().cpu().double().numpy())

    if reading is OutputReading.REGRESSION:
        return LoadedModel(
            framework, Task.REGRESSION, module, lambda frame: batches(frame, module)[:, 0],
            n_features=n_features,
        )

    def predict_proba(frame: pd.DataFrame) -> np.ndarray:
        return softmax(batches(frame, head))

    def predict(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(batches(frame, head).argmax(axis=1))

    n_classes = 2 if probed.shape[1] == 1 else int(probed.shape[1])
    return LoadedModel(
        framework,
        Task.CLASSIFICATION,
        module,
        predict,
        probability_predictor=predict_proba,
        classes=tuple(range(n_classes)),
        n_features=n_features,
        class_logits=head,
    )


def _reading(probed: torch.Tensor, declared: str | None) -> OutputReading:
    single = probed.shape[1] == 1
    if declared == "regression":
        if not single:
            raise InputError(
                f"model_output is regression but the PyTorch model returns {probed.shape[1]} "
                "columns; a regressor returns one"
            )
        return OutputReading.REGRESSION
    if declared == "logits":
        return OutputReading.SINGLE_LOGIT if single else OutputReading.LOGITS
    if declared == "probabilities":
        return OutputReading.SINGLE_PROBABILITY if single else OutputReading.PROBABILITIES
    if single:
        return OutputReading.REGRESSION
    in_unit = bool(((probed >= 0) & (probed <= 1)).all())
    sums_to_one = bool(torch.allclose(probed.sum(dim=1), torch.ones(len(probed)),
                                      atol=_SUM_TOLERANCE))
    return OutputReading.PROBABILITIES if in_unit and sums_to_one else OutputReading.LOGITS
