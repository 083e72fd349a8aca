"""skops files, loaded trusting only the types the gate let through."""

from __future__ import annotations

from mlaudit.core.errors import InputError
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.loaders.array_safety import refuse_unsafe_arrays
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.scanners.pickle_policy import Verdict
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    import skops.io

    assert artifact.path is not None
    inventory = artifact.inventory.reclassified(extra_allowed)
    trusted_types = [
        n.qualified_name
        for n in inventory.names
        if trusted or n.classification.verdict is Verdict.ALLOWED
    ]
    try:
        estimator = skops.io.load(artifact.path, trusted=trusted_types)
    except Exception as error:  # skops raises assorted types for corrupt or untrusted files
        raise InputError(f"{artifact.reference} could not be loaded by skops: {error}") from None
    refuse_unsafe_arrays(estimator, artifact.reference)
    return wrap_estimator(
        estimator, "scikit-learn", artifact.reference, text_column=options.text_column
    )
