"""The run cache: expensive work shared by the rules of one audit, never across audits.

Reuse is proven two ways: the rule that reused a result says so in its metrics (``reused``:
what, and which rule computed it), and, in-process, by counting the real computations.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import pandas as pd
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression

from mlaudit.core.findings import JsonValue, RuleResult, Status
from mlaudit.core.runcache import CacheKey, RunCache
from mlaudit.engine.run import AuditRun, EngineSettings, run_audit
from mlaudit.rules import privacy
from mlaudit.rules.code import CodeSecurity, UnsafeMLPatterns
from mlaudit.rules.data import DataModelCompatibility
from mlaudit.rules.personal_data import PersonalDataInArtifact
from mlaudit.rules.privacy import EmpiricalPrivacyBound, ReferenceModelMembershipInference
from mlaudit.rules.robustness import BlackBoxEvasion, TreeEnsembleVerification
from mlaudit.subject.build import Subject, build_subject
from tests.privacy.fixtures import clean_frame, regularised, write_subject
from tests.robustness.models import separated


def _counting(monkeypatch: pytest.MonkeyPatch, owner: object, name: str) -> list[int]:
    """Replace ``owner.name`` with a wrapper that counts its calls; the count list is returned."""
    calls: list[int] = []
    real: Callable[..., Any] = getattr(owner, name)

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, counted)
    return calls


def _results(audit: AuditRun) -> dict[str, RuleResult]:
    return {result.rule_id: result for result in audit.results}


def _metrics(result: RuleResult) -> dict[str, Any]:
    assert result.status in (Status.PASSED, Status.FAILED), result.reason
    return dict(result.metrics)


# --------------------------------------------------------------------------- the cache itself


def test_a_result_is_computed_once_and_reused_with_its_origin() -> None:
    cache = RunCache()
    key = CacheKey("answer", (1, "a"))
    first = cache.shared(key, lambda: [42], by="MLA201")
    second = cache.shared(key, lambda: [0], by="MLA203")
    assert (first.value, first.reused) == ([42], False)
    assert second.value is first.value
    assert (second.computed_by, second.reused) == ("MLA201", True)
    assert cache.shared(CacheKey("answer", (2, "a")), lambda: [7], by="MLA203").value == [7]


def test_a_failed_computation_is_not_kept_and_the_next_caller_computes_it() -> None:
    cache = RunCache()
    key = CacheKey("flaky", ())

    def fail() -> int:
        raise RuntimeError("transient")

    with pytest.raises(RuntimeError, match="transient"):
        cache.shared(key, fail, by="MLA302")
    again = cache.shared(key, lambda: 3, by="MLA304")
    assert (again.value, again.computed_by, again.reused) == (3, "MLA304", False)


def test_threads_asking_at_once_all_get_the_first_stored_result() -> None:
    cache = RunCache()
    key = CacheKey("slow", ())
    start = threading.Barrier(4)
    seen: list[object] = []

    def ask(index: int) -> None:
        start.wait()
        seen.append(cache.shared(key, lambda: object(), by=f"rule{index}").value)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({id(value) for value in seen}) == 1


def test_a_forked_worker_starts_from_the_parents_results() -> None:
    parent = RunCache()
    key = CacheKey("parsed", ())
    parent.shared(key, lambda: "model", by="the inventory")
    child = parent.for_forked_worker()
    assert child.shared(key, lambda: "again", by="the ONNX loader").value == "model"
    child.shared(CacheKey("child only", ()), lambda: 1, by="MLA201")
    assert parent.shared(CacheKey("child only", ()), lambda: 2, by="MLA203").value == 2


# --------------------------------------------------------------------------- MLA201 + MLA203


@pytest.fixture(scope="module")
def forest(tmp_path_factory: pytest.TempPathFactory) -> Subject:
    root = tmp_path_factory.mktemp("forest")
    frame, labels = separated(rows=160, gap=0.0, seed=3)
    flip = np.random.default_rng(4).random(len(labels)) < 0.2
    labels = np.where(flip, 1 - labels, labels)
    joblib.dump(
        RandomForestClassifier(n_estimators=10, random_state=0).fit(frame, labels),
        root / "forest.joblib",
    )
    frame.assign(label=labels).to_csv(root / "data.csv", index=False)
    return build_subject(
        str(root / "forest.joblib"), data=root / "data.csv", train=None, holdout=None,
        target="label", source=None, requirements=[],
    )


_LINF_ONLY: dict[str, dict[str, JsonValue]] = {"MLA201": {"norms": ["linf"]}}


def test_mla203_reuses_mla201s_linf_attack_in_the_worker(forest: Subject) -> None:
    settings = EngineSettings(profile="quick", rule_options=_LINF_ONLY)
    results = _results(run_audit(forest, [BlackBoxEvasion, TreeEnsembleVerification], settings))
    black_box, verification = _metrics(results["MLA201"]), _metrics(results["MLA203"])
    assert "reused" not in black_box
    assert verification["reused"] == {"evasion-attack": "MLA201"}
    linf = black_box["norms"]["linf"]
    # One attack, so one set of radii: both rules report the same numbers.
    assert verification["attack_radius"] == linf["perturbation"]
    assert verification["robust_accuracy"]["attack"] == linf["robust_accuracy"]
    assert linf["perturbation"]["found"] > 0


def test_one_attack_is_computed_for_both_rules(
    forest: Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlaudit.robustness import evasion as sample

    attacks = _counting(monkeypatch, sample, "hop_skip_jump")
    settings = EngineSettings(profile="quick", isolation="none", rule_options=_LINF_ONLY)
    run_audit(forest, [BlackBoxEvasion, TreeEnsembleVerification], settings)
    assert len(attacks) == 1
    # Another audit is another run: nothing is kept between runs.
    run_audit(forest, [TreeEnsembleVerification], settings)
    assert len(attacks) == 2


def test_a_different_query_budget_is_a_different_attack(
    forest: Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlaudit.robustness import evasion as sample

    attacks = _counting(monkeypatch, sample, "hop_skip_jump")
    options: dict[str, dict[str, JsonValue]] = {**_LINF_ONLY, "MLA203": {"queries": 300}}
    settings = EngineSettings(profile="quick", isolation="none", rule_options=options)
    results = _results(
        run_audit(forest, [BlackBoxEvasion, TreeEnsembleVerification], settings)
    )
    assert len(attacks) == 2
    assert "reused" not in _metrics(results["MLA203"])


# --------------------------------------------------------------------------- MLA302 + MLA304


@pytest.fixture(scope="module")
def refittable(tmp_path_factory: pytest.TempPathFactory) -> Subject:
    return write_subject(
        tmp_path_factory.mktemp("refittable"), regularised(), clean_frame(240, 1),
        clean_frame(240, 2),
    )


def _privacy_settings(references: int, isolation: str = "auto") -> EngineSettings:
    return EngineSettings(
        profile="quick",  # MLA302 fits the quick profile's 4 references
        isolation=isolation,
        rule_options={
            "MLA302": {"bootstrap": 100, "n_jobs": 1},
            "MLA304": {"reference_models": references, "n_jobs": 1},
        },
    )


def test_mla302_and_mla304_share_the_fitted_references_in_the_worker(
    refittable: Subject,
) -> None:
    rules = [ReferenceModelMembershipInference, EmpiricalPrivacyBound]
    results = _results(run_audit(refittable, rules, _privacy_settings(4)))
    assert "reused" not in _metrics(results["MLA302"])
    bound = _metrics(results["MLA304"])
    assert bound["reused"] == {"reference-models": "MLA302"}
    assert {"lira-online", "lira-offline", "rmia"} <= set(bound["attacks_considered"])


def test_references_are_fitted_once_for_the_same_count(
    refittable: Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    fits = _counting(monkeypatch, privacy, "reference_probabilities")
    rules = [ReferenceModelMembershipInference, EmpiricalPrivacyBound]
    run_audit(refittable, rules, _privacy_settings(4, isolation="none"))
    assert len(fits) == 1
    run_audit(refittable, rules, _privacy_settings(6, isolation="none"))
    assert len(fits) == 3  # another count is another set of references


def test_a_failed_fit_is_not_shared_and_the_next_rule_fits_again(
    refittable: Subject, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = privacy.reference_probabilities
    calls: list[int] = []

    def fails_once(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a reference fit failed")
        return real(*args, **kwargs)

    monkeypatch.setattr(privacy, "reference_probabilities", fails_once)
    rules = [ReferenceModelMembershipInference, EmpiricalPrivacyBound]
    results = _results(run_audit(refittable, rules, _privacy_settings(4, isolation="none")))
    assert results["MLA302"].status is Status.ERROR
    assert results["MLA302"].reason == "RuntimeError: a reference fit failed"
    assert "reused" not in _metrics(results["MLA304"])
    assert len(calls) == 2


# --------------------------------------------------------------------------- ONNX, parsed once


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    from skl2onnx import to_onnx

    root = tmp_path_factory.mktemp("onnx")
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(80, 3)), columns=["a", "b", "c"])
    labels = (frame["a"] > 0).astype(int)
    model = LogisticRegression().fit(frame.to_numpy(dtype=np.float32), labels)
    onnx = to_onnx(model, frame.to_numpy(dtype=np.float32)[:1], options={"zipmap": False})
    (root / "model.onnx").write_bytes(onnx.SerializeToString())
    frame.assign(y=labels).to_csv(root / "data.csv", index=False)
    return root / "model.onnx", root / "data.csv"


def test_the_onnx_file_is_parsed_once_per_run(
    onnx_model: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    import onnx

    parses = _counting(monkeypatch, onnx, "load_model_from_string")
    model, data = onnx_model
    cache = RunCache()  # the run's: the subject is built with it, the engine runs with it
    subject = build_subject(
        str(model), data=data, train=None, holdout=None, target="y", source=None,
        requirements=[], cache=cache,
    )
    rules = [PersonalDataInArtifact, DataModelCompatibility]  # reads the strings; loads it
    results = _results(
        run_audit(subject, rules, EngineSettings(isolation="none"), cache=cache)
    )
    assert all(r.status is Status.PASSED for r in results.values()), results
    assert len(parses) == 1  # the inventory's parse, read again by MLA402 and the loader


# --------------------------------------------------------------------------- bandit, once


def test_bandit_runs_once_per_run_for_mla501_and_mla502(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlaudit.code import bandit_run

    source = tmp_path / "src"
    source.mkdir()
    (source / "train.py").write_text(
        "import pickle\nimport subprocess\n\n"
        "model = pickle.load(open('model.pkl', 'rb'))\n"
        "subprocess.run(cmd, shell=True)\n"
    )
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), tmp_path / "model.joblib")
    subject = build_subject(
        str(tmp_path / "model.joblib"), data=None, train=None, holdout=None, target=None,
        source=source, requirements=[],
    )
    runs = _counting(monkeypatch, bandit_run, "run_bandit")
    results = _results(run_audit(subject, [CodeSecurity, UnsafeMLPatterns], EngineSettings()))
    assert len(runs) == 1
    assert _metrics(results["MLA502"])["reused"] == {"bandit": "MLA501"}
    # Each rule still reports its own share of the one run.
    code_tests = {str(f.evidence["test_id"]) for f in results["MLA501"].findings}
    assert "B602" in code_tests
    assert not any(test.startswith("ML") for test in code_tests)
    assert {f.evidence["test_id"] for f in results["MLA502"].findings} == {"ML02"}
    run_audit(subject, [CodeSecurity], EngineSettings())
    assert len(runs) == 2  # no process-wide memory: a new audit runs bandit again
