"""One loader per model format, imported only when that format is loaded.

Loaders run only behind the load gate (:mod:`mlaudit.loaders.load_gate`). Each still defends
itself: the pickle loader refuses globals outside the allowlist even when the scanner passed the
file, so a scanner bug alone cannot execute a payload.
"""

from __future__ import annotations

import importlib
from typing import Protocol

from mlaudit.core.load_options import LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.scanners.sniff import ModelFormat
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel


class Loader(Protocol):
    """Loads ``artifact``; ``cache`` is the run's, through which a loader reuses what the
    scan already parsed (the ONNX loader reads its class labels from the scan's parse);
    ``options`` is what the user said about the model (its architecture, its text column)."""

    def __call__(
        self,
        artifact: ModelArtifact,
        *,
        trusted: bool,
        extra_allowed: frozenset[str],
        cache: RunCache | None = None,
        options: LoadOptions = ...,
    ) -> LoadedModel: ...


_LOADER_MODULES = {
    ModelFormat.PICKLE: "mlaudit.loaders.pickle",
    ModelFormat.JOBLIB: "mlaudit.loaders.pickle",
    ModelFormat.JOBLIB_COMPRESSED: "mlaudit.loaders.pickle",
    ModelFormat.PYTORCH: "mlaudit.loaders.torch",
    ModelFormat.PYTORCH_LEGACY: "mlaudit.loaders.torch",
    # safetensors weights run only as a PyTorch model_class holding them.
    ModelFormat.SAFETENSORS: "mlaudit.loaders.torch",
    ModelFormat.SKOPS: "mlaudit.loaders.skops",
    ModelFormat.ONNX: "mlaudit.loaders.onnx",
    ModelFormat.ENTRY_POINT: "mlaudit.loaders.entrypoint",
    ModelFormat.MODEL_FOLDER: "mlaudit.loaders.folder",
    ModelFormat.XGBOOST_JSON: "mlaudit.loaders.xgboost",
    ModelFormat.XGBOOST_UBJ: "mlaudit.loaders.xgboost",
    ModelFormat.LIGHTGBM_TEXT: "mlaudit.loaders.lightgbm",
    ModelFormat.CATBOOST: "mlaudit.loaders.catboost",
}


def loader_for(model_format: ModelFormat) -> Loader | None:
    """The loader for ``model_format``, or None for formats mlaudit scans but cannot run."""
    module_name = _LOADER_MODULES.get(model_format)
    if module_name is None:
        return None
    loader: Loader = importlib.import_module(module_name).load
    return loader
