"""mlaudit's bandit plugin: unsafe ways ML code loads models, data and configurations (MLA502).

Every check is a bandit test registered under bandit's own ``bandit.plugins`` entry-point group
(``pyproject.toml``), so a plain ``bandit -r src/`` reports them as soon as mlaudit is
installed, and ``# nosec ML01`` (or the test's name) silences one line as for any bandit test.
The ids start with ``ML`` instead of bandit's ``B`` so they can never collide with a future
bandit test; bandit accepts any id for a plugin, in profiles and in ``# nosec`` comments.

Call names are bandit's qualified names, with import aliases resolved (``import numpy as np``
then ``np.load`` is ``numpy.load``; ``from joblib import load`` then ``load`` is
``joblib.load``). Only literal keyword values count as safe: ``weights_only=flag`` is reported
with low confidence, since the flag may be false.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

# bandit's Context in, a bandit.Issue or None out (bandit ships no type information).
Check = Callable[[Any], Any]

# test id -> test name, in registration order: the tests MLA502 reports.
ML_TESTS: dict[str, str] = {}

HIGH, MEDIUM, LOW = "HIGH", "MEDIUM", "LOW"  # bandit's severity and confidence names
_CWE_DESERIALIZATION = 502
_CWE_UNTRUSTED_FUNCTIONALITY = 829  # inclusion of functionality from an untrusted sphere
_CWE_EVAL_INJECTION = 95


def _bandit_test(test_id: str) -> Callable[[Check], Check]:
    """What bandit's ``@checks("Call")`` and ``@test_id(...)`` do: set two attributes.

    Not bandit's decorators themselves: importing any part of bandit loads every
    ``bandit.plugins`` entry point, this module among them, so importing bandit here would
    make the import circular (bandit would find this module half-initialised and drop its
    tests). bandit is imported when a test first runs, by then fully loaded.
    """

    def register(function: Check) -> Check:
        ML_TESTS[test_id] = function.__name__
        function._checks = ["Call"]  # type: ignore[attr-defined]
        function._test_id = test_id  # type: ignore[attr-defined]
        return function

    return register


def _names(node: ast.AST) -> list[str]:
    """Names, attributes and constant subscript keys in an expression, outermost first."""
    words = []
    for child in ast.walk(node):
        if isinstance(child, ast.Name):
            words.append(child.id)
        elif isinstance(child, ast.Attribute):
            words.append(child.attr)
        elif isinstance(child, ast.Subscript) and isinstance(child.slice, ast.Constant):
            words.append(str(child.slice.value))
    return words


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_constant(node: ast.expr | None, value: object) -> bool:
    return isinstance(node, ast.Constant) and node.value is value


def _issue(severity: str, confidence: str, cwe: int, text: str) -> Any:
    from bandit.core.issue import Issue

    return Issue(severity=severity, confidence=confidence, cwe=cwe, text=text)


def _call(context: Any) -> tuple[str, ast.Call] | None:
    qualname, node = context.call_function_name_qual, context.node
    if isinstance(qualname, str) and isinstance(node, ast.Call):
        return qualname, node
    return None


_TORCH_LOADS = frozenset({"torch.load", "torch.serialization.load"})


@_bandit_test("ML01")
def torch_load_without_weights_only(context: Any) -> Any:
    """``torch.load`` without ``weights_only=True`` unpickles whatever the file holds."""
    found = _call(context)
    if found is None or found[0] not in _TORCH_LOADS:
        return None
    value = _keyword(found[1], "weights_only")
    if _is_constant(value, True):
        return None
    if _is_constant(value, False):
        text = "torch.load(weights_only=False) runs any code pickled in the checkpoint"
        return _issue(HIGH, HIGH, _CWE_DESERIALIZATION, text)
    if value is None:
        # torch >= 2.6 defaults to weights_only=True; older releases unpickle everything.
        text = "torch.load without weights_only=True unpickles arbitrary objects on torch < 2.6"
        return _issue(MEDIUM, HIGH, _CWE_DESERIALIZATION, text)
    text = "torch.load with a computed weights_only may unpickle arbitrary objects"
    return _issue(MEDIUM, LOW, _CWE_DESERIALIZATION, text)


_PICKLE_LOADS = frozenset(
    f"{module}.{function}"
    for module in ("pickle", "_pickle", "cPickle", "dill", "cloudpickle")
    for function in ("load", "loads", "Unpickler")
) | {"joblib.load", "sklearn.externals.joblib.load", "pandas.read_pickle"}


# Names that say the bytes arrived with a request: upload.file, request.body, payload.
_REQUEST_WORD = re.compile(r"upload|request|payload|body|received", re.IGNORECASE)


@_bandit_test("ML02")
def pickle_family_load(context: Any) -> Any:
    """pickle, joblib, dill, cloudpickle (and ``pandas.read_pickle``) loads run code.

    High when the argument is named like request data (``upload``, ``request``, ``payload``):
    then whoever sends the request chooses the code that runs.
    """
    found = _call(context)
    if found is None or found[0] not in _PICKLE_LOADS:
        return None
    advice = "use a format that holds data only (skops, ONNX, safetensors)"
    if any(_REQUEST_WORD.search(w) for w in _names(found[1])):
        text = f"{found[0]} on data that arrives with a request: the sender's code runs; {advice}"
        return _issue(HIGH, MEDIUM, _CWE_DESERIALIZATION, text)
    text = f"{found[0]} runs any code the file names; load only files you produced, or {advice}"
    return _issue(MEDIUM, HIGH, _CWE_DESERIALIZATION, text)


@_bandit_test("ML03")
def numpy_load_allow_pickle(context: Any) -> Any:
    """``numpy.load(allow_pickle=True)`` unpickles object arrays."""
    found = _call(context)
    if found is None or found[0] != "numpy.load":
        return None
    value = _keyword(found[1], "allow_pickle")
    text = "numpy.load(allow_pickle=True) unpickles object arrays, running any code they name"
    if _is_constant(value, True):
        return _issue(MEDIUM, HIGH, _CWE_DESERIALIZATION, text)
    if value is not None and not isinstance(value, ast.Constant):
        return _issue(MEDIUM, LOW, _CWE_DESERIALIZATION, f"{text} (if set)")
    return None


@_bandit_test("ML04")
def trust_remote_code(context: Any) -> Any:
    """``trust_remote_code=True`` runs Python code downloaded with a model or data set."""
    found = _call(context)
    if found is None:
        return None
    value = _keyword(found[1], "trust_remote_code")
    if _is_constant(value, True):
        text = f"{found[0]}(trust_remote_code=True) runs Python code shipped with the model"
        return _issue(HIGH, HIGH, _CWE_UNTRUSTED_FUNCTIONALITY, text)
    if value is not None and not isinstance(value, ast.Constant):
        text = f"{found[0]} with a computed trust_remote_code may run the model's own code"
        return _issue(MEDIUM, LOW, _CWE_UNTRUSTED_FUNCTIONALITY, text)
    return None


_YAML_SAFE_LOADERS = frozenset({"SafeLoader", "CSafeLoader", "BaseLoader", "CBaseLoader"})
_YAML_LOADS = frozenset({"yaml.load", "yaml.load_all"})
_YAML_UNSAFE_LOADS = frozenset({"yaml.unsafe_load", "yaml.unsafe_load_all"})


def _loader_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Attribute):
        return node.attr
    return node.id if isinstance(node, ast.Name) else None


@_bandit_test("ML05")
def yaml_unsafe_load(context: Any) -> Any:
    """``yaml.load`` without a safe loader builds arbitrary Python objects from a config."""
    found = _call(context)
    if found is None:
        return None
    qualname, call = found
    if qualname in _YAML_UNSAFE_LOADS:
        text = f"{qualname} builds arbitrary Python objects; use yaml.safe_load"
        return _issue(HIGH, HIGH, _CWE_DESERIALIZATION, text)
    if qualname not in _YAML_LOADS:
        return None
    loader = _keyword(call, "Loader")
    if loader is None and len(call.args) > 1:
        loader = call.args[1]
    if loader is None:
        text = f"{qualname} without Loader= uses a loader that can build Python objects"
        return _issue(MEDIUM, HIGH, _CWE_DESERIALIZATION, text)
    name = _loader_name(loader)
    if name in _YAML_SAFE_LOADERS:
        return None
    confidence = LOW if name is None else HIGH
    text = f"{qualname} with {name or 'a computed loader'}, not SafeLoader; use yaml.safe_load"
    return _issue(MEDIUM, confidence, _CWE_DESERIALIZATION, text)


def _is_keras_loader(qualname: str) -> bool:
    parts = qualname.split(".")
    return parts[-1] == "load_model" and bool({"keras", "tf_keras"} & set(parts))


@_bandit_test("ML06")
def keras_unsafe_load_model(context: Any) -> Any:
    """Keras ``load_model(safe_mode=False)`` deserialises Lambda layers, i.e. runs their code."""
    found = _call(context)
    if found is None:
        return None
    qualname, call = found
    if qualname.endswith("enable_unsafe_deserialization") and "keras" in qualname:
        text = f"{qualname}() lets every later Keras load run Lambda layer code"
        return _issue(HIGH, HIGH, _CWE_DESERIALIZATION, text)
    if not _is_keras_loader(qualname):
        return None
    value = _keyword(call, "safe_mode")
    if _is_constant(value, False):
        text = f"{qualname}(safe_mode=False) runs the code of Lambda layers in the model file"
        return _issue(HIGH, HIGH, _CWE_DESERIALIZATION, text)
    if value is not None and not isinstance(value, ast.Constant):
        text = f"{qualname} with a computed safe_mode may run Lambda layer code"
        return _issue(HIGH, LOW, _CWE_DESERIALIZATION, text)
    return None


_EVALS = frozenset({"eval", "exec", "builtins.eval", "builtins.exec"})
# Names that say a value came from a configuration: cfg.activation, config["layer"], hparams.
_CONFIG_WORD = re.compile(
    r"conf|cfg|param|setting|spec|yaml|json|toml|manifest|arch|layer|activation|optimi[sz]er",
    re.IGNORECASE,
)


def _config_words(node: ast.AST) -> list[str]:
    return [w for w in _names(node) if _CONFIG_WORD.search(w)]


@_bandit_test("ML07")
def eval_on_model_config(context: Any) -> Any:
    """``eval``/``exec`` on a value read from a model or training configuration."""
    found = _call(context)
    if found is None or found[0] not in _EVALS or not found[1].args:
        return None
    words = _config_words(found[1].args[0])
    if not words:
        return None
    name = found[0].rsplit(".", 1)[-1]
    text = (
        f"{name}() on configuration value {words[0]!r}: whoever edits the config runs code; "
        "map names to objects with a dict or use ast.literal_eval"
    )
    return _issue(HIGH, MEDIUM, _CWE_EVAL_INJECTION, text)
