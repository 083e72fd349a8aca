"""Regenerate mlaudit/scanners/pickle_allowlist.txt.

The allowlist is data a reviewer can read, not code that guesses at run time. It is built from
three sources, each reviewed when the file changes in a pull request:
1. the hand-picked reconstruction helpers below (numpy, joblib, scipy.sparse, builtins);
2. every estimator class of the installed scikit-learn (``all_estimators``);
3. every global that pickling each of those estimators, fitted on a small data set, imports
   (loss objects, tree structures, kernels, default score functions, random states).

Run: .venv/bin/python scripts/regen_pickle_allowlist.py
"""

from __future__ import annotations

import io
import pickle
import warnings
from pathlib import Path

import joblib
import sklearn
from sklearn.datasets import load_breast_cancer
from sklearn.utils import all_estimators

from mlaudit.scanners.pickle import scan_bytes
from mlaudit.scanners.pickle_policy import Verdict, classify

TARGET = Path(__file__).resolve().parent.parent / "mlaudit" / "scanners" / "pickle_allowlist.txt"

HELPERS = [
    # builtins that plain data needs; constructors only, nothing that calls or looks up
    "builtins.set", "builtins.frozenset", "builtins.slice", "builtins.range", "builtins.complex",
    "builtins.bytearray", "builtins.bytes", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.list", "builtins.dict", "builtins.tuple", "builtins.object",
    "builtins.NotImplemented", "builtins.Ellipsis", "__builtin__.set", "__builtin__.frozenset",
    "__builtin__.slice", "__builtin__.complex", "__builtin__.bytearray", "__builtin__.object",
    "copyreg._reconstructor", "copy_reg._reconstructor", "_codecs.encode", "functools.partial",
    "collections.OrderedDict", "collections.defaultdict", "collections.Counter",
    "collections.deque", "datetime.datetime", "datetime.date", "datetime.timedelta",
    "datetime.timezone", "decimal.Decimal", "fractions.Fraction",
    # inert records and a pure function that peers' benign corpora use (fickling's): an ABC
    # (calling it raises), a __future__ feature record, and len (asks only for __len__)
    "collections.abc.Iterable", "__future__.annotations", "builtins.len",
    # numpy 1.x and 2.x spellings of the array, scalar and random-state reconstructors
    "numpy.ndarray", "numpy.dtype", "numpy.core.multiarray._reconstruct",
    "numpy._core.multiarray._reconstruct", "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar", "numpy.core.numeric._frombuffer",
    "numpy._core.numeric._frombuffer", "numpy.ma.core._mareconstruct", "numpy.ma.MaskedArray",
    "numpy.ma.core.MaskedArray",
    "numpy.random._pickle.__randomstate_ctor", "numpy.random._pickle.__bit_generator_ctor",
    "numpy.random._pickle.__generator_ctor", "numpy.random.mtrand.RandomState",
    "numpy.random._mt19937.MT19937", "numpy.random._pcg64.PCG64",
    "numpy.random._pcg64.PCG64DXSM", "numpy.random._philox.Philox", "numpy.random._sfc64.SFC64",
    "numpy.random._generator.Generator", "numpy.random.bit_generator.SeedSequence",
    "numpy.random.bit_generator.__pyx_unpickle_SeedSequence",
    "numpy.float64", "numpy.float32", "numpy.int64", "numpy.int32", "numpy.bool_",
    # joblib's array framing (NDArrayWrapper is left out: it reads other files by name)
    "joblib.numpy_pickle.NumpyArrayWrapper",
    # scipy sparse matrices, old and new module paths
    "scipy.sparse._csr.csr_matrix", "scipy.sparse._csc.csc_matrix",
    "scipy.sparse._coo.coo_matrix", "scipy.sparse.csr.csr_matrix",
    "scipy.sparse.csc.csc_matrix", "scipy.sparse._csr.csr_array", "scipy.sparse._csc.csc_array",
    "scipy.interpolate._bsplines.BSpline",
]


def _helper_classes() -> set[str]:
    """Non-estimator classes fitted models keep: CV splitters, scorers, result bunches."""
    from sklearn.metrics import _scorer
    from sklearn.model_selection import _split
    from sklearn.utils import Bunch

    classes: list[type] = [Bunch, _scorer._PassthroughScorer, _scorer._Scorer]
    classes += [
        cls for cls in vars(_split).values()
        if isinstance(cls, type) and issubclass(cls, (_split.BaseCrossValidator,
                                                      _split.BaseShuffleSplit))
        and cls.__module__ == _split.__name__ and not cls.__name__.startswith("_")
    ]
    return {f"{cls.__module__}.{cls.__qualname__}" for cls in classes}


def _meta_estimators() -> list[object]:
    """Composite models whose fitted state holds helpers no single estimator does."""
    from sklearn.ensemble import (
        HistGradientBoostingClassifier,
        RandomForestClassifier,
        StackingClassifier,
        VotingClassifier,
    )
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import GridSearchCV, RandomizedSearchCV

    base = [("lr", LogisticRegression(max_iter=200)), ("rf", RandomForestClassifier(5))]
    return [
        GridSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1.0]}),
        RandomizedSearchCV(LogisticRegression(max_iter=200), {"C": [0.1, 1.0]}, n_iter=2),
        VotingClassifier(base, voting="soft"),
        StackingClassifier(base),
        HistGradientBoostingClassifier(max_iter=5, categorical_features=[1]),
    ]


def estimator_globals() -> set[str]:
    names = {f"{cls.__module__}.{cls.__qualname__}" for _, cls in all_estimators()}
    names |= _helper_classes()
    features, labels = load_breast_cancer(return_X_y=True)
    features, labels = features[:200], labels[:200]
    features[:, 1] = (features[:, 1] > features[:, 1].mean()).astype(float)  # a categorical
    warnings.filterwarnings("ignore")
    candidates = [cls() for _, cls in _constructible()] + _meta_estimators()
    for model in candidates:
        try:
            try:
                model.fit(features, labels)  # type: ignore[attr-defined]
            except Exception:  # unsupervised estimators
                model.fit(features)  # type: ignore[attr-defined]
        except Exception:  # noqa: S112 - estimators that need parameters are covered by name
            continue
        buffer = io.BytesIO()
        joblib.dump(model, buffer)
        for stream in (buffer.getvalue(), pickle.dumps(model, protocol=2)):
            names.update(found.qualified_name for found in scan_bytes(stream).imports)
    return names


def _constructible() -> list[tuple[str, type]]:
    found = []
    for name, cls in all_estimators():
        try:
            cls()
        except TypeError:  # needs constructor arguments; covered by name
            continue
        found.append((name, cls))
    return found


def torch_globals() -> set[str]:
    """torch's own weights-only allowlist, plus the nn layers whole-module checkpoints name."""
    try:
        import torch
        from torch import _weights_only_unpickler
    except ImportError:
        return set()
    names = set(_weights_only_unpickler._get_allowed_globals())
    names |= {"torch.jit._pickle.build_intlist", "torch.jit._pickle.restore_type_tag"}
    for attribute in dir(torch.nn):
        cls = getattr(torch.nn, attribute)
        if isinstance(cls, type) and issubclass(cls, torch.nn.Module):
            names.add(f"{cls.__module__}.{cls.__qualname__}")
    return names


def boosting_globals() -> set[str]:
    """XGBoost and LightGBM scikit-learn wrappers and their boosters, when installed.

    Their boosters restore themselves from the libraries' own model formats, parsed in C++,
    not from further pickles.
    """
    names: set[str] = set()
    for module_name, classes in (
        ("xgboost", ("XGBClassifier", "XGBRegressor", "XGBRanker", "XGBRFClassifier",
                     "XGBRFRegressor", "Booster")),
        ("lightgbm", ("LGBMClassifier", "LGBMRegressor", "LGBMRanker", "Booster")),
    ):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        for class_name in classes:
            cls = getattr(module, class_name)
            names.add(f"{cls.__module__}.{cls.__qualname__}")
    return names


def main() -> None:
    entries = set(HELPERS) | estimator_globals() | torch_globals() | boosting_globals()
    rejected = sorted(
        name for name in entries
        if classify(*name.rsplit(".", 1)).verdict is Verdict.DANGEROUS
    )
    if rejected:
        raise SystemExit(f"refusing to allow dangerous globals: {rejected}")
    header = (
        "# Globals that a pickle may import and still be loaded by mlaudit's load gate.\n"
        "# Exact module.qualname entries, never whole modules. Generated by\n"
        f"# scripts/regen_pickle_allowlist.py with scikit-learn {sklearn.__version__};\n"
        "# review every added line: each one is a function or class that a hostile file may call\n"
        "# with arguments of its choosing.\n"
    )
    TARGET.write_text(header + "".join(f"{name}\n" for name in sorted(entries)), "utf-8")
    print(f"{len(entries)} entries written to {TARGET}")


if __name__ == "__main__":
    main()
