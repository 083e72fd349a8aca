"""What fails inside the model worker comes back into the report, traceback included, and
never onto the parent's stderr: a rule that raises, and the worker's own machinery failing."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from mlaudit.core.findings import Family, Finding, RuleResult, Severity, Status
from mlaudit.engine.run import EngineSettings, run_audit
from mlaudit.isolation.worker import WorkerJob, WorkerOutcome, run_job
from mlaudit.rules.base import Requirement, Rule, RuleContext, RuleMeta
from mlaudit.subject.build import build_subject
from mlaudit.subject.model_info import LoadedModel, Task
from tests.conftest import TARGET, Workspace
from tests.plugin_rules import CrashingRule, OptionEchoRule, SlowRule

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="the worker is forked")


class RaisesOnTheModel(Rule):
    """Queries the model, then raises.

    **What it checks**: nothing.

    **Why it matters**: a rule that raises in the worker.

    **How to fix**: n/a.

    **Options**: none.
    """

    meta = RuleMeta(
        id="TEST990", name="Raises on the model", family=Family.ROBUSTNESS,
        severity=Severity.LOW, requires=frozenset({Requirement.MODEL, Requirement.DATA}),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        assert ctx.subject.sample is not None
        ctx.model.predict(ctx.subject.sample.features.head(3))
        raise ValueError("the model said no")


def test_a_rule_that_raises_in_the_worker_sends_its_traceback(
    workspace: Workspace, capfd: pytest.CaptureFixture[str]
) -> None:
    subject = build_subject(
        str(workspace.rf_joblib), data=workspace.holdout, train=None, holdout=None,
        target=TARGET, source=None, requirements=(),
    )
    run = run_audit(subject, [RaisesOnTheModel], EngineSettings(isolation="auto"))
    assert run.isolation.mode == "auto"
    (result,) = run.results
    assert (result.status, result.reason) == (Status.ERROR, "ValueError: the model said no")
    assert result.queries == 3
    assert result.traceback is not None
    assert 'raise ValueError("the model said no")' in result.traceback
    assert "Traceback" not in capfd.readouterr().err


def _model() -> LoadedModel:
    return LoadedModel("python", Task.UNKNOWN, object(), lambda frame: np.zeros(len(frame)))


def _job(
    load: Callable[[], LoadedModel],
    run_rule: Callable[[type[Rule], LoadedModel, Callable[[str], None]], RuleResult],
) -> WorkerJob:
    return WorkerJob(
        rules=[CrashingRule, SlowRule, OptionEchoRule],
        load=load,
        run_rule=run_rule,
        budget_for=lambda _: 30.0,
        load_budget_s=30.0,
        read_paths=(),
        memory_bytes=64 << 30,
        strict=False,
    )


def _passed(rule: type[Rule], model: LoadedModel, report: Callable[[str], None]) -> RuleResult:
    meta = rule.meta
    return RuleResult(meta.id, meta.name, meta.family.value, Status.PASSED, 100.0)


def _loader_bug() -> LoadedModel:
    raise RuntimeError("a bug in the loader")


def test_a_worker_that_fails_while_loading_reports_it_on_every_rule(
    capfd: pytest.CaptureFixture[str],
) -> None:
    outcome = run_job(_job(_loader_bug, _passed))
    assert outcome.model is None
    for result in outcome.results.values():
        assert result.status is Status.ERROR
        assert result.reason == (
            "worker exited with status 70 (RuntimeError: a bug in the loader) while loading "
            "the model"
        )
        assert result.traceback is not None
        assert "in _loader_bug" in result.traceback
    assert sorted(outcome.results) == ["TEST901", "TEST902", "TEST903"]
    assert "Traceback" not in capfd.readouterr().err


def test_a_worker_that_fails_in_a_rule_fails_that_rule_and_goes_on(
    capfd: pytest.CaptureFixture[str],
) -> None:
    def second_fails(rule: type[Rule], model: LoadedModel, report: Callable[[str], None]
                     ) -> RuleResult:
        if rule is SlowRule:
            raise KeyError("lost")
        return _passed(rule, model, report)

    outcome: WorkerOutcome = run_job(_job(_model, second_fails))
    statuses = {rule_id: result.status for rule_id, result in outcome.results.items()}
    assert statuses == {"TEST901": Status.PASSED, "TEST902": Status.ERROR,
                        "TEST903": Status.PASSED}
    failed = outcome.results["TEST902"]
    assert failed.reason == "worker exited with status 70 (KeyError: 'lost')"
    assert failed.traceback is not None
    assert "KeyError: 'lost'" in failed.traceback
    assert outcome.results["TEST903"].traceback is None
    assert "Traceback" not in capfd.readouterr().err

