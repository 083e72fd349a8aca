"""Tests of the pickle import policy (mlaudit.scanners.pickle_policy)."""

from __future__ import annotations

import pytest

from mlaudit.scanners.pickle_policy import (
    SAFE_IN_DANGEROUS_MODULES,
    Classification,
    Verdict,
    canonical_name,
    classify,
    shipped_allowlist,
)


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("os", "system"),
        ("posix", "system"),
        ("nt", "system"),
        ("os", "popen"),
        ("subprocess", "Popen"),
        ("subprocess", "check_output"),
        ("builtins", "eval"),
        ("builtins", "exec"),
        ("__builtin__", "eval"),  # Python 2 spelling, mapped to builtins by the unpickler
        ("__builtin__", "getattr"),
        ("builtins", "getattr"),
        ("builtins", "__import__"),
        ("builtins", "open"),
        ("timeit", "timeit"),
        ("cProfile", "run"),
        ("numpy.testing._private.utils", "runstring"),
        ("pickle", "loads"),
        ("_pickle", "loads"),
        ("operator", "methodcaller"),
        ("operator", "attrgetter"),
        ("importlib", "import_module"),
        ("joblib", "load"),
        ("numpy", "load"),
        ("sklearn.pipeline", "os.system"),  # attribute walk through another module
        ("sklearn.pipeline", "Pipeline.__init__.__globals__"),  # dunder walk
        ("collections", "OrderedDict.__class__"),
        # torch internals named in published advisories
        ("torch.utils.bottleneck.__main__", "run_cprofile"),
        ("torch._dynamo.guards", "GuardBuilder.get"),
        ("torch.fx.experimental.symbolic_shapes", "ShapeEnv.evaluate_guards_expression"),
        ("torch._guards", "Guard"),
        ("torch.utils.collect_env", "run"),
        ("torch.jit.unsupported_tensor_ops", "execWrapper"),
        ("torch.utils._config_module", "ConfigModule.load_config"),
        ("torch._inductor.codecache", "compile_file"),
        ("torch.storage", "_load_from_bytes"),
        ("torch.serialization", "_load"),
        ("torch._C", "_jit_pass_inline"),
        ("torch.package.package_importer", "PackageImporter"),
        ("torch", "compile"),
        ("torch", "jit.unsupported_tensor_ops.execWrapper"),  # the same, spelled as a walk
        # stdlib modules that shell out, compile code or reach the network
        ("lib2to3.pgen2.grammar", "Grammar.loads"),
        ("lib2to3.pgen2.pgen", "ParserGenerator.make_label"),
        ("_aix_support", "_read_cmd_output"),
        ("_osx_support", "_read_output"),
        ("imaplib", "IMAP4_stream"),
        ("nntplib", "NNTP"),
        ("poplib", "POP3"),
        ("_pyrepl.pager", "pipe_pager"),
        ("test.support.script_helper", "assert_python_ok"),
        ("_interpreters", "run_string"),
        ("_xxsubinterpreters", "run_string"),
        ("ast", "literal_eval"),
        ("_ssl", "_test_decode_cert"),
        ("__future__", "_ssl"),
        ("aiohttp.client", "ClientSession"),
        # from the peers' deny lists
        ("functools", "reduce"),
        ("joblib.numpy_pickle_compat", "NDArrayWrapper"),
        ("glob", "glob"),
        ("pipes", "Template"),
        ("compileall", "compile_file"),
        ("socketserver", "TCPServer"),
        ("httplib", "HTTPSConnection"),
        ("torch.distributed.rpc", "rpc_sync"),
        # escapes through the namespace of the script that loads the file
        ("__main__", "os.system"),
        ("__main__", "os"),
        ("__main__", "system"),
        ("__main__", "eval"),
        ("__main__", "__builtins__.eval"),
        ("__main__", "DivideColumns.__init__.__globals__"),
    ],
)
def test_dangerous(module: str, name: str) -> None:
    result = classify(module, name)
    assert isinstance(result, Classification)
    assert result.verdict is Verdict.DANGEROUS, result
    assert result.reason


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("sklearn.ensemble._forest", "RandomForestClassifier"),
        ("sklearn.linear_model._logistic", "LogisticRegression"),
        ("sklearn.pipeline", "Pipeline"),
        ("builtins", "set"),
        ("__builtin__", "set"),
        ("copyreg", "_reconstructor"),
        ("copy_reg", "_reconstructor"),
        ("_codecs", "encode"),
        ("joblib.numpy_pickle", "NumpyArrayWrapper"),
        ("numpy", "dtype"),
    ],
)
def test_allowed(module: str, name: str) -> None:
    assert classify(module, name) == Classification(Verdict.ALLOWED, "on the allowlist")


@pytest.mark.parametrize(
    ("module", "name"),
    [
        ("mypkg", "Model"),
        ("mypkg.models", "Net"),
        ("pandas.core.frame", "DataFrame"),
        ("sklearn.ensemble._forest", "NotARealClass"),
        ("mypkg.transformers", "Foo"),
        ("__main__", "DivideColumns"),  # a user's class pickled from a script
        ("__mp_main__", "DivideColumns"),
        ("__main__", "Outer.Inner"),
    ],
)
def test_unlisted(module: str, name: str) -> None:
    assert classify(module, name).verdict is Verdict.UNLISTED


def test_extra_allowed_admits_a_reviewed_unlisted_name() -> None:
    extra = frozenset({"mypkg.Model"})
    assert classify("mypkg", "Model", extra).verdict is Verdict.ALLOWED
    assert classify("mypkg", "Other", extra).verdict is Verdict.UNLISTED
    assert classify("mypkg", "Model").verdict is Verdict.UNLISTED  # nothing leaks between calls


def test_extra_allowed_never_admits_a_dangerous_name() -> None:
    extra = frozenset({"os.system", "builtins.eval", "sklearn.pipeline.os.system"})
    assert classify("os", "system", extra).verdict is Verdict.DANGEROUS
    assert classify("builtins", "eval", extra).verdict is Verdict.DANGEROUS
    assert classify("sklearn.pipeline", "os.system", extra).verdict is Verdict.DANGEROUS


def test_python2_names_are_mapped() -> None:
    assert canonical_name("__builtin__", "eval") == ("builtins", "eval")
    assert canonical_name("copy_reg", "_reconstructor") == ("copyreg", "_reconstructor")
    assert canonical_name("mypkg", "Model") == ("mypkg", "Model")


def test_safe_builtins_stay_narrow() -> None:
    # Allowing builtins.set must not allow the rest of builtins, or attributes of set.
    assert classify("builtins", "set").verdict is Verdict.ALLOWED
    assert classify("builtins", "set.__init__").verdict is Verdict.DANGEROUS
    assert classify("builtins", "setattr").verdict is Verdict.DANGEROUS


def test_allowlist_holds_only_non_dangerous_exact_names() -> None:
    allowlist = shipped_allowlist()
    assert allowlist
    for entry in allowlist:
        assert entry == entry.strip()
        assert not entry.startswith("#")
        module, _, name = entry.rpartition(".")
        assert module, entry
        assert name, entry
        assert classify(module, name).verdict is not Verdict.DANGEROUS, entry


def test_every_installed_sklearn_estimator_is_on_the_allowlist() -> None:
    from sklearn.utils import all_estimators

    allowlist = shipped_allowlist()
    estimators = all_estimators()
    assert len(estimators) > 100
    missing = sorted(
        f"{cls.__module__}.{cls.__qualname__}"
        for _, cls in estimators
        if f"{cls.__module__}.{cls.__qualname__}" not in allowlist
    )
    assert not missing, f"regenerate with scripts/regen_pickle_allowlist.py: {missing}"
    for _, cls in estimators:
        assert classify(cls.__module__, cls.__qualname__).verdict is Verdict.ALLOWED


def test_a_class_of_the_saving_script_is_called_so() -> None:
    assert "script that saved the file" in classify("__main__", "DivideColumns").reason


def test_no_allowlist_entry_is_dangerous_except_the_reviewed_constructors() -> None:
    """Extending the denylist must not turn a reviewed allowlist entry into MLA101."""
    from mlaudit.scanners.pickle_policy import _dangerous_reason

    denied = set()
    for entry in shipped_allowlist():
        module, _, name = entry.rpartition(".")
        canonical = canonical_name(module, name)
        if _dangerous_reason(*canonical) is not None:
            denied.add(".".join(canonical))
    assert denied <= SAFE_IN_DANGEROUS_MODULES
    # Every reviewed exception is itself on the allowlist, so it loads, and nothing else does.
    assert shipped_allowlist() >= SAFE_IN_DANGEROUS_MODULES
    assert classify("functools", "partial").verdict is Verdict.ALLOWED
    assert classify("joblib.numpy_pickle", "NumpyArrayWrapper").verdict is Verdict.ALLOWED
    assert classify("torch.jit._pickle", "build_intlist").verdict is Verdict.ALLOWED
