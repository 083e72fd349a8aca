"""PyTorch models: state dicts with the architecture the user names, whole modules, TorchScript.

* A **state dict** (or safetensors weights) holds weights without the architecture. With
  ``model_class`` (``pkg.nets:Net``, code the user vouches for by naming it) the class or
  factory is imported and called with ``model_kwargs``, and the weights, read by torch's
  restricted unpickler (``weights_only=True``) or by safetensors, are loaded into it strictly.
  Without it the model cannot run, and the behavioural rules say how to fix that.
* A **whole pickled module** names its classes in the pickle. The load gate lets it through
  only when every name is on the allowlist (the shipped one or the user's ``allow_globals``);
  it is then read by torch's restricted unpickler with exactly those names allowed, so a
  scanner bug alone still cannot run anything else. ``--trust-model`` uses torch's full
  unpickler instead.
* A **TorchScript** archive carries code that torch's own interpreter runs, never Python's
  importer; the scan has already read it (MLA104) and the gate refuses it if that code
  reaches files. It is loaded with ``torch.jit.load``.
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Mapping
from typing import Any

from mlaudit.core.errors import InputError, ModelNotRunnable, first_line
from mlaudit.core.load_options import NO_LOAD_OPTIONS, LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.loaders.entrypoint import import_named, working_folder_importable
from mlaudit.loaders.native_trees import import_library
from mlaudit.scanners.pickle_policy import TORCHSCRIPT_NAMESPACE, Verdict, canonical_name
from mlaudit.scanners.sniff import ModelFormat
from mlaudit.subject.build import ModelArtifact
from mlaudit.subject.compat import listed
from mlaudit.subject.model_info import LoadedModel

FRAMEWORK = "pytorch"
TORCHSCRIPT_FRAMEWORK = "pytorch (torchscript)"
# The scanner's name for a zip checkpoint that carries TorchScript (constants.pkl or code/).
_TORCHSCRIPT_DETAIL = "torchscript-zip"
# Checkpoints that bundle a state dict with training state keep it under one of these keys.
_NESTED_STATE_KEYS = ("state_dict", "model_state_dict")
_LISTED = 5
_INSTALL_HINT = "pip install 'mlaudit[torch]'"
_WEIGHTS_ONLY = (
    "the file holds weights only (a state dict), not the architecture; pass --model-class "
    "module:Class (and --model-kwargs JSON), the PyTorch code that builds the model, to load "
    "the weights into it and audit its behaviour"
)


def load(
    artifact: ModelArtifact,
    *,
    trusted: bool,
    extra_allowed: frozenset[str],
    cache: RunCache | None = None,
    options: LoadOptions = NO_LOAD_OPTIONS,
) -> LoadedModel:
    if artifact.format is ModelFormat.SAFETENSORS and options.model_class is None:
        # Any framework's weights: without an architecture there is nothing to need torch for.
        raise ModelNotRunnable(_WEIGHTS_ONLY)
    import_library("torch", "PyTorch", "torch", artifact)
    import torch

    from mlaudit.loaders.torch_model import wrap_module

    if artifact.format is ModelFormat.SAFETENSORS:
        return wrap_module(_with_architecture(artifact, _safetensors(artifact), options),
                           FRAMEWORK, options)
    if artifact.inventory.format_detail == _TORCHSCRIPT_DETAIL:
        return wrap_module(_torchscript(artifact), TORCHSCRIPT_FRAMEWORK, options)
    loaded = _checkpoint(artifact, trusted=trusted)
    if isinstance(loaded, torch.nn.Module):
        return wrap_module(loaded.cpu(), FRAMEWORK, options)
    weights = _state_dict(loaded)
    if weights is None:
        raise ModelNotRunnable(
            f"the checkpoint holds a {type(loaded).__name__}, neither a module nor a state dict "
            "of tensors (nor one under 'state_dict' or 'model_state_dict')"
        )
    return wrap_module(_with_architecture(artifact, weights, options), FRAMEWORK, options)


def _checkpoint(artifact: ModelArtifact, *, trusted: bool) -> object:
    """What ``torch.save`` stored: through torch's full unpickler if trusted, else through its
    restricted one, allowed exactly the names the gate allowed."""
    import torch

    assert artifact.path is not None
    try:
        if trusted:
            working_folder_importable()  # a pickled module names its class's module
            return torch.load(artifact.path, map_location="cpu", weights_only=False)
        with torch.serialization.safe_globals(_allowed_globals(artifact)):
            return torch.load(artifact.path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if trusted:
            raise InputError(
                f"{artifact.reference} could not be loaded by torch: {first_line(error)}"
            ) from None
        raise ModelNotRunnable(
            "torch's restricted unpickler refused the checkpoint (a whole pickled module whose "
            f"classes are not all allowed: {first_line(error)}); add its classes to "
            "allow_globals, or pass --trust-model, to load and audit it"
        ) from None
    except InputError:
        raise
    except Exception as error:  # torch raises RuntimeError, ValueError, ... on corrupt files
        raise InputError(
            f"{artifact.reference} could not be loaded by torch: {first_line(error)}"
        ) from None


def _allowed_globals(artifact: ModelArtifact) -> list[Any]:
    """The objects the checkpoint's pickle names that mlaudit's allowlist (with the user's
    ``allow_globals``) allows, for torch's restricted unpickler. Importing them runs only
    reviewed modules or modules the user vouched for by allowing one of their names."""
    wanted = dict.fromkeys(
        canonical_name(name.module, name.name)
        for name in artifact.inventory.names
        if name.classification.verdict is Verdict.ALLOWED
        and name.module.split(".", 1)[0] != TORCHSCRIPT_NAMESPACE
    )
    return [
        import_named(f"{module}:{name}", f"allowed global {module}.{name}")
        for module, name in wanted
    ]


def _torchscript(artifact: ModelArtifact) -> Any:
    import torch

    assert artifact.path is not None
    try:
        with warnings.catch_warnings():
            # torch 2.10+ deprecates TorchScript in favour of torch.export; it still loads.
            # Its deprecation wrapper hides jit.load's signature from mypy.
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.load(  # type: ignore[no-untyped-call]
                str(artifact.path), map_location="cpu"
            )
    except Exception as error:  # torch raises RuntimeError on a broken archive
        raise InputError(
            f"{artifact.reference} could not be loaded as TorchScript: {first_line(error)}"
        ) from None


def _safetensors(artifact: ModelArtifact) -> Mapping[str, Any]:
    assert artifact.path is not None
    try:
        from safetensors.torch import load_file
    except ImportError:
        raise InputError(
            f"{artifact.reference} is a safetensors file; loading it needs safetensors: "
            f"{_INSTALL_HINT}"
        ) from None
    try:
        weights: Mapping[str, Any] = load_file(artifact.path, device="cpu")
    except Exception as error:  # safetensors raises its own SafetensorError on a bad header
        raise InputError(
            f"{artifact.reference} could not be read as safetensors: {first_line(error)}"
        ) from None
    return weights


def _state_dict(loaded: object) -> Mapping[str, Any] | None:
    """A state dict of tensors, at the top or under one of the usual keys of a checkpoint."""
    if _is_tensor_map(loaded):
        assert isinstance(loaded, Mapping)
        return loaded
    if isinstance(loaded, Mapping):
        for key in _NESTED_STATE_KEYS:
            inner = loaded.get(key)
            if _is_tensor_map(inner):
                assert isinstance(inner, Mapping)
                return inner
    return None


def _is_tensor_map(value: object) -> bool:
    import torch

    return (
        isinstance(value, Mapping)
        and bool(value)
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items())
    )


def _with_architecture(
    artifact: ModelArtifact, weights: Mapping[str, Any], options: LoadOptions
) -> Any:
    """The module ``model_class`` builds, holding ``weights``."""
    import torch

    if options.model_class is None:
        raise ModelNotRunnable(_WEIGHTS_ONLY)
    origin = f"model class {options.model_class}"
    factory = import_named(options.model_class, origin)
    if not callable(factory):
        raise InputError(f"{origin} is not a class or a function")
    try:
        module = factory(**options.model_kwargs)
    except Exception as error:  # the user's constructor may raise anything
        raise InputError(
            f"{origin}: calling it with model_kwargs {dict(options.model_kwargs)} failed: "
            f"{type(error).__name__}: {first_line(error)}"
        ) from None
    if not isinstance(module, torch.nn.Module):
        raise InputError(f"{origin} built a {type(module).__name__}, not a torch.nn.Module")
    _require_fit(artifact, module, weights, origin)
    try:
        module.load_state_dict(weights, strict=True)
    except Exception as error:  # what the key and shape check above cannot foresee
        raise InputError(
            f"{artifact.reference}: the weights do not load into {origin}: {first_line(error)}"
        ) from None
    return module.cpu()


def _require_fit(
    artifact: ModelArtifact, module: Any, weights: Mapping[str, Any], origin: str
) -> None:
    """One line naming every key the weights and the module disagree on."""
    expected = module.state_dict()
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    shapes = [
        f"{key} (file {_shape(weights[key])}, model {_shape(expected[key])})"
        for key in expected
        if key in weights and tuple(weights[key].shape) != tuple(expected[key].shape)
    ]
    problems = [
        f"{label} {listed(keys, _LISTED)}"
        for label, keys in (
            ("missing keys", missing), ("unexpected keys", unexpected), ("shape mismatch", shapes)
        )
        if keys
    ]
    if problems:
        raise InputError(
            f"{artifact.reference}: the weights do not fit {origin}: {'; '.join(problems)}"
        )


def _shape(tensor: Any) -> str:
    return "x".join(str(size) for size in tensor.shape) or "scalar"
