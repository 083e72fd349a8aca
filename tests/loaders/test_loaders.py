"""Loaders: each format loads into the same interface; the pickle loader defends itself."""

from __future__ import annotations

import pickle
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from mlaudit.core.errors import InputError
from mlaudit.loaders import loader_for
from mlaudit.subject.build import open_model
from mlaudit.subject.model_info import Task
from tests.conftest import TARGET, Runner, Workspace


def load(path: Path | str, *, trusted: bool = False, allowed: frozenset[str] = frozenset()):  # type: ignore[no-untyped-def]
    artifact = open_model(str(path), allowed)
    return loader_for(artifact.format)(artifact, trusted=trusted, extra_allowed=allowed)


def holdout_features(workspace: Workspace) -> pd.DataFrame:
    return pd.read_csv(workspace.holdout).drop(columns=[TARGET])


def test_pickle_loader_refuses_hostile_imports_even_without_the_gate(
    workspace: Workspace,
) -> None:
    """Defence in depth: a scanner bug alone must not be enough to run a payload."""
    with pytest.raises(InputError, match=r"refused to import posix\.system"):
        load(workspace.hostile)
    assert not workspace.canary.exists()


def test_joblib_model_loads_with_names_and_classes(workspace: Workspace) -> None:
    model = load(workspace.rf_joblib)
    assert model.framework == "scikit-learn"
    assert model.task is Task.CLASSIFICATION
    assert model.feature_names == workspace.feature_names
    assert model.classes == (0, 1)
    expected = joblib.load(workspace.rf_joblib).predict(holdout_features(workspace))
    np.testing.assert_array_equal(model.predict(holdout_features(workspace)), expected)


def test_onnx_model_matches_the_skops_original(workspace: Workspace) -> None:
    onnx_model = load(workspace.pipeline_onnx)
    skops_model = load(workspace.pipeline_skops)
    frame = holdout_features(workspace)
    assert onnx_model.framework == "onnxruntime"
    assert onnx_model.n_features == 8
    assert onnx_model.classes == (0, 1)
    np.testing.assert_array_equal(onnx_model.predict(frame), skops_model.predict(frame))
    onnx_proba = onnx_model.predict_proba(frame)
    skops_proba = skops_model.predict_proba(frame)
    assert onnx_proba is not None
    assert skops_proba is not None
    np.testing.assert_allclose(onnx_proba, skops_proba, atol=1e-4)


def test_loaded_model_counts_queried_rows(workspace: Workspace) -> None:
    model = load(workspace.rf_joblib).counting()
    frame = holdout_features(workspace)
    model.predict(frame.head(10))
    model.predict_proba(frame.head(5))
    assert model.queries == 15


def test_extra_columns_are_dropped_and_order_restored(workspace: Workspace) -> None:
    model = load(workspace.rf_joblib)
    frame = holdout_features(workspace)
    shuffled = frame[list(reversed(frame.columns))].assign(extra=1)
    np.testing.assert_array_equal(model.predict(shuffled), model.predict(frame))


ENTRY_MODULE = '''
import numpy as np

class Threshold:
    classes_ = np.array([0, 1])
    def predict(self, frame):
        return (frame.iloc[:, 0].to_numpy() > 14).astype(int)

model = Threshold()

def score(frame):
    return frame.iloc[:, 0].to_numpy() * 2.0
'''


def test_entry_point_model_object_and_function(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "served_model.py").write_text(ENTRY_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    result = run_cli("scan", "served_model:model", "--data", workspace.holdout, "--target", TARGET)
    assert result.exit_code == 0, result.stderr
    model = result.report["subject"]["model"]
    assert model["format"] == "entry-point"
    assert model["sha256"] is None
    assert model["load"]["reasons"] == ["entry point named by the user, who vouches for its code"]
    assert result.result("MLA101")["status"] == "skipped"
    function = load("served_model:score")
    assert function.task is Task.UNKNOWN
    np.testing.assert_allclose(function.predict(pd.DataFrame({"a": [1.0]})), [2.0])


def test_entry_point_errors_are_input_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_model.py").write_text("raise RuntimeError('nope')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(InputError, match="cannot import broken_model"):
        load("broken_model:model")
    with pytest.raises(InputError, match="has no missing"):
        load("json:missing")


# ============================================================================================
# Memory safety after loading: no array's dtype may hide object pointers from numpy.

# Run in a child process: a forged array may crash the interpreter if anything reads it, so
# the test process never holds one. The child builds the sample, proves it is live (numpy
# accepted a dtype with object fields but no object flag, reading metadata only), then hands
# the loaded object to the check and prints what happened.
_FORGED_IN_CHILD = """
import pickle, sys
import numpy as np
from tests.loaders.test_loaders import forged_object_pointer_pickle
from mlaudit.loaders.array_safety import UnsafeArray, check_loaded

data = forged_object_pointer_pickle()
if sys.argv[1] == "write":
    open(sys.argv[2], "wb").write(data)
    sys.exit(0)
model = pickle.loads(data)  # builds the forgery from allowlisted numpy constructors only
forged = model["classes_"]
assert forged.dtype.fields["a"][0] == np.dtype("O") and not forged.dtype.hasobject, "not live"
try:
    check_loaded(model, "sample")
except UnsafeArray as error:
    print("REFUSED", error)
else:
    print("ACCEPTED")
"""


def forged_object_pointer_pickle() -> bytes:
    """A pickle, made of allowlisted numpy constructors only, of an array whose dtype has two
    object fields but flags of 0: numpy reads the 0x41 bytes after it as object pointers."""
    try:
        from numpy._core.numeric import _frombuffer
    except ImportError:  # numpy 1.x
        from numpy.core.numeric import _frombuffer  # type: ignore[no-redef]

    object_fields = {"a": (np.dtype("O"), 0), "b": (np.dtype("O"), 8)}

    class ForgedDtype:
        def __reduce__(self) -> tuple[object, ...]:
            return np.dtype, ("V16", False, True), (3, "|", None, ("a", "b"), object_fields,
                                                    16, 1, 0)

    class ForgedArray:
        def __reduce__(self) -> tuple[object, ...]:
            return _frombuffer, (b"\x41" * 32, ForgedDtype(), (2,), "C")

    return pickle.dumps({"classes_": ForgedArray(), "coef_": np.zeros(3)}, protocol=4)


def _child(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _FORGED_IN_CHILD, *args], capture_output=True, text=True,
        timeout=120, check=False, cwd=Path(__file__).resolve().parents[2],
    )


def test_a_forged_object_dtype_is_refused_before_anything_reads_it() -> None:
    result = _child("check")
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("REFUSED"), result.stdout
    assert "object fields but does not carry numpy's object flag" in result.stdout
    assert "model['classes_']" in result.stdout


_LOAD_IN_CHILD = """
import sys
from mlaudit.core.errors import InputError
from mlaudit.loaders import loader_for
from mlaudit.subject.build import open_model
artifact = open_model(sys.argv[1], frozenset())
try:
    load = loader_for(artifact.format)
    load(artifact, trusted=sys.argv[2] == "trusted", extra_allowed=frozenset())
except InputError as error:
    print("INPUT ERROR", error)
"""


@pytest.mark.parametrize("trust", ["untrusted", "trusted"])
def test_the_pickle_loader_refuses_a_forged_dtype_even_when_trusted(
    tmp_path: Path, trust: str
) -> None:
    """Behind the gate (which refuses the file statically) the loader checks the loaded object:
    --trust-model vouches for code, and a forged pointer is never legitimate."""
    path = tmp_path / "forged.pkl"
    assert _child("write", str(path)).returncode == 0
    result = subprocess.run(
        [sys.executable, "-c", _LOAD_IN_CHILD, str(path), trust], capture_output=True,
        text=True, timeout=120, check=False, cwd=Path(__file__).resolve().parents[2],
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.startswith("INPUT ERROR"), result.stdout
    assert "refusing to read the model" in result.stdout


def _fitted_models() -> dict[str, object]:
    from sklearn.compose import make_column_transformer
    from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    rng = np.random.default_rng(0)
    features = pd.DataFrame({"x": rng.normal(size=200), "colour": rng.choice(["r", "g"], 200)})
    labels = np.array(["yes", "no"], dtype=object)[(features["x"] > 0).astype(int)]
    numeric = features[["x"]].to_numpy()
    encode = make_column_transformer((OneHotEncoder(), ["colour"]), (StandardScaler(), ["x"]))
    return {
        "random_forest": RandomForestClassifier(n_estimators=5, random_state=0).fit(
            numeric, labels),
        "hist_gradient_boosting": HistGradientBoostingClassifier(max_iter=5).fit(
            numeric, labels),
        "pipeline": make_pipeline(encode, LogisticRegression()).fit(features, labels),
    }


@pytest.mark.parametrize("name", ["random_forest", "hist_gradient_boosting", "pipeline"])
def test_real_models_pass_the_array_check(name: str) -> None:
    from mlaudit.loaders.array_safety import check_loaded

    model = pickle.loads(pickle.dumps(_fitted_models()[name]))
    assert check_loaded(model, name) > 10


def test_structured_and_object_arrays_of_real_models_pass() -> None:
    from mlaudit.loaders.array_safety import check_loaded, object_fields_consistent

    mixed = np.zeros(2, dtype=[("name", "O"), ("weight", "f8"), ("pair", "O", (2,))])
    assert object_fields_consistent(mixed.dtype) is None
    nested = np.empty(2, dtype=object)
    nested[0], nested[1] = np.arange(3), {"inner": mixed}
    assert check_loaded({"values": nested, "scalar": np.float64(1.0)}, "sample") >= 4
