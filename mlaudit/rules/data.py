"""MLA7xx: data quality, and whether the data fits the model it is used to audit."""

from __future__ import annotations

from collections.abc import Iterator

from mlaudit.core.findings import Family, Finding, Location, Severity
from mlaudit.rules.base import Requirement, Rule, RuleContext, RuleMeta
from mlaudit.rules.controls import RELIABILITY
from mlaudit.subject import compat


class DataModelCompatibility(Rule):
    """Data and model compatibility.

    **What it checks**: every data file given (``--data``, ``--train``, ``--holdout``) against
    the loaded model: the feature columns against the model's ``feature_names_in_`` (or its
    ONNX inputs), their count against ``n_features_in_``, target labels against the model's
    ``classes_``, missing values and non-numeric values in the columns the model takes, and
    categories a fitted encoder never saw. The fitted scikit-learn pipeline is read first
    (never run): missing values in a column it imputes (``SimpleImputer``,
    ``IterativeImputer``, ``KNNImputer``), drops, or hands to a model that splits on missing
    values itself (histogram gradient boosting, trees and forests) are not findings, and
    other missing values are low at any share; text in a column an encoder takes is a
    category, and an unseen category is medium only under ``handle_unknown="error"`` (the
    model raises on it), information otherwise. Mismatches that make prediction impossible
    (a missing feature, a wrong feature count, a model that raises on the data) stop the run
    with exit code 2 before any rule runs; the rest are findings.

    **Why it matters**: every behavioural result (robustness, membership inference,
    accuracy) is computed on this data. Labels encoded differently from the model's classes
    make every accuracy figure wrong; silently dropped or reordered columns and missing values
    make the audit measure something other than the model in production.

    **How to fix**: export the audit data with the same schema as the training pipeline: the
    same column names and label encoding, and the same handling of missing values. Drop
    columns the model does not use, or leave them if other rules need them (the personal-data
    rules read every column).

    **Options**: none.
    """

    meta = RuleMeta(
        id="MLA702",
        name="Data and model compatibility",
        family=Family.DATA_QUALITY,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.MODEL, Requirement.DATA}),
        controls=RELIABILITY,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        ctx.metrics["datasets"] = len(ctx.subject.datasets)
        for dataset in ctx.subject.datasets:
            ctx.metrics[f"{dataset.role}_rows"] = dataset.rows
            for issue in compat.inspect(dataset, ctx.model):
                yield ctx.finding(
                    key=f"{dataset.role}:{issue.key}",
                    title=issue.title,
                    message=issue.message,
                    severity=issue.severity,
                    location=Location(str(dataset.path), pointer=issue.column),
                    evidence=issue.evidence,
                    artifact_key=dataset.role,
                )
