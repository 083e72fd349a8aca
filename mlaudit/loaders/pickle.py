"""pickle and joblib files, unpickled with an allowlist enforced on every import."""

from __future__ import annotations

import pickle
from typing import Any

from mlaudit.core.errors import InputError
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.loaders.array_safety import refuse_unsafe_arrays
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.scanners.pickle_policy import Verdict, classify
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.model_info import LoadedModel


class RefusedImport(pickle.UnpicklingError):
    pass


def _guarded_find_class(allowed: frozenset[str], trusted: bool, original: Any) -> Any:
    def find_class(module: str, name: str) -> Any:
        if not trusted and classify(module, name, allowed).verdict is not Verdict.ALLOWED:
            raise RefusedImport(f"refused to import {module}.{name} while loading")
        return original(module, name)

    return find_class


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    from joblib.numpy_pickle import NumpyUnpickler
    from joblib.numpy_pickle_utils import _validate_fileobject_and_memmap

    assert artifact.path is not None
    # joblib's own reader decompresses zlib/gzip/bz2/lzma/xz files as a stream; the scanner
    # has already walked the decompressed pickle under a size cap.
    with (
        artifact.path.open("rb") as raw,
        _validate_fileobject_and_memmap(raw, str(artifact.path), None) as (handle, _),
    ):
        unpickler = NumpyUnpickler(str(artifact.path), handle, ensure_native_byte_order=True)
        # Defence in depth behind the load gate: even a file the scanner passed may import
        # nothing outside the allowlist unless the user vouched for it with --trust-model.
        unpickler.find_class = _guarded_find_class(
            extra_allowed, trusted, unpickler.find_class
        )
        try:
            estimator = unpickler.load()
        except RefusedImport as error:
            raise InputError(f"{artifact.reference}: {error}") from None
        except (pickle.UnpicklingError, EOFError, AttributeError, ImportError, ValueError) as error:
            raise InputError(f"{artifact.reference} could not be unpickled: {error}") from None
    refuse_unsafe_arrays(estimator, artifact.reference)
    return wrap_estimator(
        estimator, "scikit-learn", artifact.reference, text_column=options.text_column
    )
