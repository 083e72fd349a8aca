"""Model folders, by kind: Hugging Face sequence classifiers run; MLflow models and TensorFlow
SavedModels are scanned (every file they hold, see :mod:`mlaudit.scanners.folders`) but not run.
"""

from __future__ import annotations

from mlaudit.core.errors import ModelNotRunnable
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.scanners.folders import FolderKind, folder_kind
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel

_NOT_RUN = {
    FolderKind.MLFLOW: "MLflow model folders",
    FolderKind.SAVEDMODEL: "TensorFlow SavedModel folders",
}


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    assert artifact.path is not None
    kind = folder_kind(artifact.path)
    if kind is FolderKind.HUGGINGFACE:
        from mlaudit.loaders import huggingface

        return huggingface.load(
            artifact, trusted=trusted, extra_allowed=extra_allowed, cache=cache, options=options
        )
    what = _NOT_RUN.get(kind, "folders") if kind is not None else "folders"
    raise ModelNotRunnable(
        f"{what} are scanned but not run by mlaudit; give the model as module:callable to "
        "audit its behaviour"
    )
