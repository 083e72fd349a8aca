"""PyTorch checkpoints: weights through ``torch.load(weights_only=True)``, modules only if trusted.

A state dict holds weights without the architecture, so it cannot be queried: it is scanned,
loaded with torch's restricted unpickler to prove it is what it claims, and the behavioural
rules are skipped with that reason. A whole pickled ``nn.Module`` needs the full unpickler,
which runs code, so it loads only with ``--trust-model``.
"""

from __future__ import annotations

import pickle
from typing import Any

import numpy as np
import pandas as pd

from mlaudit.core.errors import InputError, ModelNotRunnable
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel, Task


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    try:
        import torch
    except ImportError:
        raise InputError(
            f"{artifact.reference} is a PyTorch checkpoint; loading it needs torch: "
            "pip install 'mlaudit[torch]'"
        ) from None
    assert artifact.path is not None
    try:
        loaded = torch.load(artifact.path, map_location="cpu", weights_only=not trusted)
    except pickle.UnpicklingError as error:
        if trusted:
            message = f"{artifact.reference} could not be loaded by torch: {error}"
            raise InputError(message) from None
        # torch's restricted unpickler refuses whole modules: running one means running its
        # pickle, which only the user can vouch for.
        raise ModelNotRunnable(
            "the checkpoint is a whole pickled module, which torch loads only with its full "
            "unpickler; pass --trust-model to load and audit it"
        ) from None
    except Exception as error:  # torch raises RuntimeError, ValueError, ... on corrupt files
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InputError(
            f"{artifact.reference} could not be loaded by torch: {first_line}"
        ) from None
    if not isinstance(loaded, torch.nn.Module):
        raise ModelNotRunnable(
            "the checkpoint holds weights only (a state dict), not a runnable model; give the "
            "architecture as module:callable to audit its behaviour"
        )
    return _wrap_module(loaded, torch)


def _wrap_module(module: Any, torch: Any) -> LoadedModel:
    module.eval()

    def forward(frame: pd.DataFrame) -> np.ndarray:
        with torch.no_grad():
            inputs = torch.as_tensor(frame.to_numpy(dtype=np.float32))
            return np.asarray(module(inputs).detach().cpu().numpy())

    def predict(frame: pd.DataFrame) -> np.ndarray:
        outputs = forward(frame)
        return outputs.argmax(axis=1) if outputs.ndim == 2 and outputs.shape[1] > 1 else outputs

    def predict_proba(frame: pd.DataFrame) -> np.ndarray:
        logits = forward(frame)
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
        return probabilities

    first_linear = next((m for m in module.modules() if isinstance(m, torch.nn.Linear)), None)
    last_linear = next(
        (m for m in reversed(list(module.modules())) if isinstance(m, torch.nn.Linear)), None
    )
    n_outputs = last_linear.out_features if last_linear is not None else None
    classifies = n_outputs is not None and n_outputs > 1
    return LoadedModel(
        framework="pytorch",
        task=Task.CLASSIFICATION if classifies else Task.UNKNOWN,
        estimator=module,
        predictor=predict,
        probability_predictor=predict_proba if classifies else None,
        classes=tuple(range(n_outputs)) if classifies and n_outputs is not None else None,
        n_features=first_linear.in_features if first_linear is not None else None,
    )
