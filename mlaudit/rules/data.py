"""MLA7xx: data quality, and whether the data fits the model it is used to audit."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd

from mlaudit.core.errors import ConfigError
from mlaudit.core.findings import Confidence, Family, Finding, JsonValue, Location, Severity
from mlaudit.data import leakage
from mlaudit.data.drift import ColumnDrift, adjusted_p_values, column_drift, identifier_like
from mlaudit.data.outcomes import performance, prediction_drift, prediction_kind, predictions
from mlaudit.data.profile import ColumnProfile, profile_chunks, uniform_sample
from mlaudit.data.quality import QualityThresholds, band_grade, check_file
from mlaudit.data.stream import every_row
from mlaudit.rules.base import (
    OptionKind,
    Requirement,
    Rule,
    RuleContext,
    RuleMeta,
    RuleOption,
    RuleSkipped,
)
from mlaudit.rules.controls import DATA_CONTROLS, DRIFT_CONTROLS, EVALUATION, RELIABILITY
from mlaudit.subject import compat
from mlaudit.subject.data import Dataset
from mlaudit.subject.model_info import LoadedModel, Task
from mlaudit.subject.preprocessing import read_pipeline


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


class DataQuality(Rule):
    """Data quality against the training data.

    **What it checks**: every data file given (``--data``, ``--train``, ``--holdout``,
    ``--reference``, ``--current``), column by column, against the training data (``--train``,
    else ``--reference``): missing values in a column nothing in the model's pipeline handles
    (read from the fitted pipeline, never run, when the model loads: imputers, dropped columns,
    models that split on missing values), values outside the training range, categories the
    training data never had, columns that became another type (numbers where there was text),
    numbers and text mixed in one column, constant and near-constant columns, and columns of
    the training data that are gone. Each count is exact over every row; the share comes with
    its 95% Wilson interval, and the severity follows from the interval's lower bound:
    ``low``, ``medium`` and ``high`` from the first, second and third of ``share_bands`` (a
    share under the first is recorded in the metrics, no finding; unseen categories and mixed
    types under it are information). A column that turned constant is medium (low when it was
    constant in training too); a near-constant one is low when training was more varied,
    information otherwise; a changed type and missing columns are medium. The target column is
    left to MLA702. Text columns with more than 50 distinct values and more than one per ten
    rows (identifiers, names, phone numbers, free text) are checked for missing values, type
    and constancy only. Without a loaded model, missing values are judged as if nothing handled
    them, and the metrics say so. Exact, over every row of each file (read again by Parquet row
    group or CSV chunk when the loader kept a sample of a large file, so memory holds one
    chunk): missing counts, minimum and maximum, values outside the training range,
    categories, number/text counts. Sampled (``sample_rows`` rows drawn uniformly): the share
    of the most frequent value.

    **Why it matters**: a model is only as good as the data it is given. A feed that starts
    sending missing values, text in a number column, a new category or values past anything
    seen in training makes the model extrapolate silently: the predictions keep coming and are
    wrong, and every behavioural result measured on such data describes something else.

    **How to fix**: trace each finding to its source: an export or join that lost values, a
    unit or encoding change upstream, a new product or region the model was not trained on.
    Fix the feed, or retrain on data that covers the new values, and make the pipeline handle
    what production will send (an imputer, ``handle_unknown="ignore"``, range validation).

    **Options**: ``share_bands``, the shares (each in 0..1, increasing) from which a share of
    affected rows is low, medium and high; ``near_constant_share``, the share of one value that
    makes a column near-constant; ``max_categories``, the most distinct values a column may
    have and still be compared category by category (more: an identifier or free text, whose
    unseen values mean nothing); ``sample_rows``, the rows sampled for the near-constant share
    of numeric columns.
    """

    meta = RuleMeta(
        id="MLA701",
        name="Data quality against the training data",
        family=Family.DATA_QUALITY,
        severity=Severity.MEDIUM,
        requires=frozenset(),
        options=(
            RuleOption("share_bands", [0.01, 0.05, 0.2],
                       "shares of affected rows from which a finding is low, medium, high",
                       kind=OptionKind.NUMBERS, minimum=0, maximum=1, min_items=1),
            RuleOption("near_constant_share", 0.99,
                       "share of one value that makes a column near-constant",
                       kind=OptionKind.NUMBER, minimum=0, maximum=1, exclusive_minimum=True),
            RuleOption("max_categories", 1000,
                       "most distinct values of a column compared category by category",
                       kind=OptionKind.INTEGER, minimum=1),
            RuleOption("sample_rows", 20_000,
                       "rows sampled for the most frequent value's share of numeric columns",
                       kind=OptionKind.INTEGER, minimum=100),
        ),
        controls=DATA_CONTROLS,
        uses_model_if_loaded=True,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        if not ctx.subject.datasets:
            raise RuleSkipped(NO_DATA)
        bands = _increasing_bands(ctx, "share_bands", "MLA701")
        thresholds = QualityThresholds(bands, ctx.option_float("near_constant_share"))
        training = ctx.subject.dataset("train") or ctx.subject.dataset("reference")
        # The training data first: every other file is profiled against it.
        ordered = sorted(ctx.subject.datasets, key=lambda d: d is not training)
        profiles: dict[str, dict[str, ColumnProfile]] = {}
        handled = _missing_handled(ctx, training)
        ctx.metrics.update(
            training=training.role if training is not None else None,
            exact="missing counts, ranges, out-of-range counts, categories and number/text "
            "counts over every row of each file; the most frequent value's share over a "
            "uniform sample of sample_rows rows",
            files={},
        )
        rng = ctx.rng()
        for dataset in ordered:
            ctx.check_budget()
            is_training = dataset is training
            reference = None if is_training or training is None else profiles[training.role]
            columns = feature_columns(dataset)
            chunks, read = every_row(dataset, columns)
            sample = dataset.frame.iloc[
                uniform_sample(dataset.rows, ctx.option_int("sample_rows"), rng)
            ]
            profiles[dataset.role] = profile_chunks(
                chunks, columns, max_categories=ctx.option_int("max_categories"),
                sample=sample, reference=reference,
            )
            issues = list(check_file(
                profiles[dataset.role], reference, missing_handled=handled,
                thresholds=thresholds,
            ))
            files = ctx.metrics["files"]
            assert isinstance(files, dict)
            files[dataset.role] = {
                "rows": dataset.file_rows, "columns": len(columns), "findings": len(issues),
                "read": read,
            }
            for issue in issues:
                yield ctx.finding(
                    key=issue.key, title=issue.title, message=f"{dataset.role}: {issue.message}",
                    severity=issue.severity,
                    location=Location(str(dataset.path), pointer=issue.column),
                    evidence=issue.evidence, artifact_key=dataset.role,
                )


NO_DATA = "no data: give --data, --train, --holdout, --reference or --current"


def feature_columns(dataset: Dataset) -> list[str]:
    """The columns other than the target (without copying the frame, as ``features`` does)."""
    return [c for c in dataset.columns if c != dataset.target]


def _missing_handled(ctx: RuleContext, training: Dataset | None) -> dict[str, str]:
    """Columns whose missing values the model's fitted pipeline handles (or that it never
    reads); empty, with a note in the metrics, when no model was loaded."""
    model = ctx.model
    if model is None:
        ctx.metrics["pipeline"] = (
            "no model loaded: missing values are judged as if nothing handled them"
        )
        return {}
    columns = feature_columns(training or ctx.subject.datasets[0])
    inputs = list(model.feature_names) if model.feature_names is not None else columns
    handled = dict(read_pipeline(model.estimator, inputs).missing_handled_by)
    handled.update({c: "not a model input" for c in columns if c not in inputs})
    ctx.metrics["pipeline"] = "read from the fitted model"
    ctx.metrics["missing_handled"] = {c: by for c, by in sorted(handled.items())}
    return handled


class Drift(Rule):
    """Drift between reference and current data.

    **What it checks**: the current (production) data (``--current``) against the reference
    (``--reference``, else ``--train``), feature by feature: the population stability index
    (PSI) over ``bins`` quantile bins of the reference (its most frequent categories for a
    category column, plus bins for other categories and for missing values), with a bootstrap
    interval, and a two-sample test (Kolmogorov-Smirnov for numbers, chi-squared for categories;
    a number column with missing values takes both, Bonferroni-corrected, since
    Kolmogorov-Smirnov sees only the values) whose p-values are corrected for testing every
    feature (``correction``, Benjamini-Hochberg by default). A feature drifts when its corrected
    p-value is under ``alpha`` and its PSI reaches the first of ``psi_bands``; its finding is
    low, medium or high by the band its PSI reaches. When the share of drifted features reaches
    ``drift_share``, one more finding (high) says the data as a whole drifted. When the model
    loads, its predictions on both samples are compared the same way (a drift of the predicted
    classes or values, graded alike), and when the current data has the target column, the
    model's accuracy (classification, exact interval) or R-squared (regression, bootstrap
    interval) on it is compared with its score on the holdout data (else the reference): a drop
    of more than ``max_performance_drop`` whose intervals do not overlap is medium, twice that
    is high. Without a loadable model, only the features are compared and the metrics say so.
    Text columns with more than 50 distinct values and more than one per ten rows
    (identifiers, names, free text) are not compared; the metrics list them.
    Sampled: PSI, the tests and the model's scores read a uniform sample of ``sample_rows`` rows
    of each file (``prediction_rows`` for the model); MLA701 counts exactly what must be exact.

    **Why it matters**: a model is validated on data like its training data and then serves a
    world that moves: new customers, a changed upstream system, seasonality. Drift is the first
    sign that the validation no longer describes production, usually long before labels arrive
    to show the accuracy dropped.

    **How to fix**: look at the drifted features first (the report plots the reference and
    current distributions): a broken feed or unit change is fixed upstream; a real change in the
    population calls for retraining on recent data and for monitoring these features in
    production. Raise ``psi_bands`` for features known to move harmlessly.

    **Options**: ``psi_bands``, the PSI values (increasing) from which a drifted feature is low,
    medium and high; ``alpha``, the significance level of the corrected tests; ``correction``,
    the multiple-testing correction (``benjamini-hochberg``, ``bonferroni`` or ``none``);
    ``bins``, the quantile bins of a number and the most categories kept for a category;
    ``sample_rows``, the rows of each file sampled for the statistics; ``drift_share``, the
    share of drifted features that makes the data as a whole drifted; ``prediction_rows``, the
    rows of each sample the model is queried with; ``max_performance_drop``, the drop of
    accuracy or R-squared from which a performance finding is raised.
    """

    meta = RuleMeta(
        id="MLA704",
        name="Drift between reference and current data",
        family=Family.DATA_QUALITY,
        severity=Severity.MEDIUM,
        requires=frozenset(),
        options=(
            RuleOption("psi_bands", [0.1, 0.25, 0.5],
                       "PSI from which a drifted feature is low, medium, high",
                       kind=OptionKind.NUMBERS, minimum=0, exclusive_minimum=True, min_items=1),
            RuleOption("alpha", 0.05, "significance level of the corrected drift tests",
                       kind=OptionKind.NUMBER, minimum=0, maximum=1, exclusive_minimum=True),
            RuleOption("correction", "benjamini-hochberg",
                       "multiple-testing correction over the features",
                       choices=("benjamini-hochberg", "bonferroni", "none")),
            RuleOption("bins", 10, "quantile bins of a number, categories kept of a category",
                       kind=OptionKind.INTEGER, minimum=2),
            RuleOption("sample_rows", 50_000, "rows of each file sampled for the statistics",
                       kind=OptionKind.INTEGER, minimum=100),
            RuleOption("drift_share", 0.5, "share of drifted features that makes the data drift",
                       kind=OptionKind.NUMBER, minimum=0, maximum=1, exclusive_minimum=True),
            RuleOption("prediction_rows", 10_000, "rows of each sample the model is queried with",
                       kind=OptionKind.INTEGER, minimum=10),
            RuleOption("max_performance_drop", 0.05,
                       "drop of accuracy or R-squared from which a finding is raised",
                       kind=OptionKind.NUMBER, minimum=0, maximum=1, exclusive_minimum=True),
        ),
        controls=DRIFT_CONTROLS,
        uses_model_if_loaded=True,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        current = ctx.subject.dataset("current")
        reference = ctx.subject.dataset("reference") or ctx.subject.dataset("train")
        if current is None:
            raise RuleSkipped("no current data: give --current (production data)")
        if reference is None:
            raise RuleSkipped("no reference data: give --reference or --train")
        bands = _increasing_bands(ctx, "psi_bands", "MLA704")
        rng = ctx.rng()
        size = ctx.option_int("sample_rows")
        ref_rows = uniform_sample(reference.rows, size, rng)
        cur_rows = uniform_sample(current.rows, size, rng)
        columns = [c for c in feature_columns(reference) if c != current.target]
        ref_sample = reference.frame.iloc[ref_rows]
        cur_sample = current.frame.iloc[cur_rows]
        ctx.metrics.update(
            reference=reference.role,
            sampled={"reference_rows": reference.file_rows, "current_rows": current.file_rows,
                     "reference_sample": len(ref_rows), "current_sample": len(cur_rows)},
            exact="PSI, the tests and the model's scores on uniform samples of each file "
            "(drawn from the rows the loader kept, itself a uniform sample of a large file)",
        )
        drifts: list[ColumnDrift] = []
        skipped: dict[str, JsonValue] = {}
        for column in columns:
            ctx.check_budget()
            if identifier_like(ref_sample[column]):
                skipped[column] = "identifiers or free text: too many distinct values"
                continue
            drift = column_drift(
                ref_sample[column], cur_sample[column], bins=ctx.option_int("bins"), rng=rng
            )
            if drift is not None:
                drifts.append(drift)
        if skipped:
            ctx.metrics["not_compared"] = skipped
        yield from _feature_findings(ctx, drifts, bands, current)
        if ctx.model is None:
            ctx.metrics["prediction_drift"] = {
                "measured": False,
                "reason": "no model loaded: only the features were compared",
            }
            return
        limit = ctx.option_int("prediction_rows")
        ref_query, cur_query = ref_sample.iloc[:limit], cur_sample.iloc[:limit]
        try:
            yield from _prediction_finding(ctx, ctx.model, (ref_query, cur_query), bands, current)
            yield from _performance_finding(ctx, ctx.model, cur_query, current)
        except Exception as error:  # the model's own code may raise anything on these rows
            # The feature drift stands; why the model could not be compared is in the metrics
            # (MLA702 reports what in the data makes it raise).
            first_line = (str(error).strip().splitlines() or [""])[0]
            ctx.metrics["prediction_drift"] = {
                "measured": False,
                "reason": f"the model raised on the sampled rows: {type(error).__name__}: "
                f"{first_line}",
            }


_CHARTED_FEATURES = 12  # the report plots the most drifted features, not all of a wide table


def _increasing_bands(ctx: RuleContext, option: str, rule: str) -> list[float]:
    """The bands in option ``option`` of rule ``rule``, which must increase."""
    bands = ctx.option_floats(option)
    if bands != sorted(bands):
        raise ConfigError(f"option {option} for rule {rule} must increase, not {bands}")
    return bands


def _feature_findings(
    ctx: RuleContext, drifts: list[ColumnDrift], bands: list[float], current: Dataset
) -> Iterator[Finding]:
    alpha = ctx.option_float("alpha")
    adjusted = adjusted_p_values([d.p_value for d in drifts], ctx.option_str("correction"))
    features: dict[str, JsonValue] = {}
    drifted: list[tuple[ColumnDrift, float, Severity]] = []
    for drift, p_value in zip(drifts, adjusted, strict=True):
        severity = band_grade(drift.psi.estimate, bands) if p_value < alpha else None
        features[drift.column] = {
            "kind": drift.kind.value, "test": drift.test, "psi": drift.psi.as_metric(),
            "statistic": round(drift.statistic, 6), "p_value": drift.p_value,
            "adjusted_p_value": p_value, "drifted": severity is not None,
        }
        if severity is not None:
            drifted.append((drift, p_value, severity))
    share = len(drifted) / len(drifts) if drifts else 0.0
    charted = sorted(drifts, key=lambda d: -d.psi.estimate)[:_CHARTED_FEATURES]
    ctx.metrics.update(
        features=features, features_compared=len(drifts),
        drifted_features=[d.column for d, _, _ in drifted], drifted_share=round(share, 4),
        distributions={d.column: {"distribution": _distribution(d)} for d in charted},
    )
    location = str(current.path)
    for drift, p_value, severity in drifted:
        yield ctx.finding(
            key=f"feature:{drift.column}", title="Feature drifted", severity=severity,
            message=f"column {drift.column!r} drifted: PSI {drift.psi.estimate:.3f} (95% "
            f"interval {drift.psi.low:.3f} to {drift.psi.high:.3f}), {_test_name(drift)} "
            f"corrected p-value {p_value:.3g}",
            location=Location(location, pointer=drift.column),
            evidence={"psi": drift.psi.as_metric(), "test": drift.test,
                      "statistic": round(drift.statistic, 6), "adjusted_p_value": p_value},
            artifact_key="current",
        )
    if drifts and share >= ctx.option_float("drift_share"):
        yield ctx.finding(
            key="dataset", title="The data as a whole drifted", severity=Severity.HIGH,
            message=f"{len(drifted)} of {len(drifts)} features drifted ({share:.0%}, the limit "
            f"is {ctx.option_float('drift_share'):.0%})",
            location=Location(location),
            evidence={"drifted": len(drifted), "features": len(drifts)},
            artifact_key="current",
        )


_TEST_NAMES = {"ks": "Kolmogorov-Smirnov", "chi2": "chi-squared",
               "ks+chi2": "Kolmogorov-Smirnov and chi-squared (missing values)"}


def _test_name(drift: ColumnDrift) -> str:
    return _TEST_NAMES[drift.test]


def _distribution(drift: ColumnDrift) -> dict[str, JsonValue]:
    """The reference and current shares per bin: the report draws them side by side."""
    ref, cur = drift.binned.shares()
    return {
        "bins": list(drift.binned.labels),
        "reference": [round(float(v), 6) for v in ref],
        "current": [round(float(v), 6) for v in cur],
        "psi": round(drift.psi.estimate, 6),
    }


def _prediction_finding(
    ctx: RuleContext, model: LoadedModel, samples: tuple[pd.DataFrame, pd.DataFrame],
    bands: list[float], dataset: Dataset,
) -> Iterator[Finding]:
    reference, current = samples
    ref_predicted = predictions(model, reference)
    cur_predicted = predictions(model, current)
    kind = prediction_kind(model, ref_predicted)
    drift = prediction_drift(
        ref_predicted, cur_predicted, kind, bins=ctx.option_int("bins"), rng=ctx.rng()
    )
    if drift is None:
        return
    p_value = drift.p_value  # one test: nothing to correct for
    significant = p_value < ctx.option_float("alpha")
    severity = band_grade(drift.psi.estimate, bands) if significant else None
    ctx.metrics["prediction_drift"] = {
        "measured": True, "rows": len(reference), "kind": kind.value, "test": drift.test,
        "psi": drift.psi.as_metric(), "p_value": p_value, "drifted": severity is not None,
        "distribution": _distribution(drift),
    }
    if severity is not None:
        yield ctx.finding(
            key="prediction", title="The model's predictions drifted", severity=severity,
            message=f"the model's predictions on current data drifted from those on the "
            f"reference: PSI {drift.psi.estimate:.3f} (95% interval {drift.psi.low:.3f} to "
            f"{drift.psi.high:.3f}), {_test_name(drift)} p-value {p_value:.3g}",
            location=Location(str(dataset.path)),
            evidence={"psi": drift.psi.as_metric(), "test": drift.test, "p_value": p_value},
            artifact_key="current",
        )


def _performance_finding(
    ctx: RuleContext, model: LoadedModel, current: pd.DataFrame, dataset: Dataset
) -> Iterator[Finding]:
    if dataset.target is None:
        ctx.metrics["performance"] = {
            "measured": False, "reason": "the current data has no target column",
        }
        return
    baseline_data = next(
        (d for d in (ctx.subject.dataset("holdout"), ctx.subject.dataset("reference"),
                     ctx.subject.dataset("train")) if d is not None and d.target is not None),
        None,
    )
    rng = ctx.rng()
    now = performance(model, current, current[dataset.target], rng)
    if now is None or baseline_data is None:
        ctx.metrics["performance"] = {"measured": False, "reason": "no labelled baseline"}
        return
    rows = uniform_sample(baseline_data.rows, ctx.option_int("prediction_rows"), rng)
    sample = baseline_data.frame.iloc[rows]
    before = performance(model, sample, sample[baseline_data.target], rng)
    if before is None:
        ctx.metrics["performance"] = {"measured": False, "reason": "no labelled baseline"}
        return
    drop = before.score.estimate - now.score.estimate
    ctx.metrics["performance"] = {
        "measured": True, "current": now.as_metric(), "baseline": before.as_metric(),
        "baseline_role": baseline_data.role, "drop": round(drop, 6),
    }
    limit = ctx.option_float("max_performance_drop")
    if drop < limit or now.score.high >= before.score.low:
        return
    yield ctx.finding(
        key="performance", title=f"The model's {now.metric} dropped on current data",
        severity=Severity.HIGH if drop >= 2 * limit else Severity.MEDIUM,
        message=f"{now.metric} on current data is {now.score.estimate:.3f} (95% interval "
        f"{now.score.low:.3f} to {now.score.high:.3f}) against {before.score.estimate:.3f} "
        f"({before.score.low:.3f} to {before.score.high:.3f}) on the {baseline_data.role} data",
        location=Location(str(dataset.path), pointer=dataset.target),
        evidence={"current": now.as_metric(), "baseline": before.as_metric(),
                  "baseline_role": baseline_data.role},
        artifact_key="current",
    )


class Leakage(Rule):
    """Leakage between the target, the training data and the holdout.

    **What it checks**: the training data (``--train``) and the holdout (``--holdout``) with
    their target (``--target``), four ways a holdout score stops being evidence. (1) A column
    that predicts the target on its own: a one-column model (a small decision tree for a
    number, a value-to-class lookup otherwise) fitted on train and scored on the holdout, as
    *skill* (0 is the best constant guess, 1 is perfect: accuracy rescaled from the majority
    class's, or R² for a numeric target), against the full model's skill on the same rows:
    the loaded model, or, when the model does not load, a reference model (histogram gradient
    boosting on every column) fitted on train, which the metrics name. The column is high when
    its skill's lower bound (exact Clopper-Pearson interval, bootstrap for R²) reaches
    ``near_perfect``, or when the full model reaches ``min_model_skill`` and beats the column
    by at most ``model_margin`` (upper bound of a paired bootstrap interval on the same rows).
    (2) A column that is a transform of the target, on train and holdout together: eta² (the
    share of a number's variance between classes: label plus noise is nearly 1), the share of
    holdout rows holding their class's own value (a relabelling), or \\|Spearman\\| with a
    numeric target; high when the lower bound (bootstrap, exact, Fisher z) reaches
    ``transform``; also high, by its bound alone, a number whose lowest and highest values
    each hold one class only (the share of their rows that do, exact interval): what a
    target encoding computed with each row's own label makes. A column that meets (1) or (2)
    by its estimate only (too few holdout rows for the bound) is medium, and one the loaded
    model does not take is one step lower; its 5-fold cross-validated skill on train is in
    the evidence. (3) Holdout rows whose
    features are also a train row's, exactly or after normalisation (text stripped,
    lower-cased, whitespace collapsed; numbers rounded to ``float_digits`` significant digits;
    column order ignored): high when the share's lower bound (exact interval) reaches
    ``shared_rows_high``, low under it, and low when train repeats its own rows at least as
    often (repeated inputs are then the data's nature, not the split's fault). (4) A column
    that separates the splits: an identifier (a distinct integer or short text per row) whose
    order puts train and holdout apart, or a timestamp with the training rows after the
    holdout's, when the AUC of the column as a train-or-holdout classifier (Hanley-McNeil
    interval) clears ``split_auc`` at its bound: medium. A timestamp with the holdout after
    train marks a deliberate temporal split, and identifiers that grow with it are then not
    findings. Columns (1) and (2) read a uniform
    sample of ``max_rows`` rows of each file; (3) and (4) every row.

    **Why it matters**: a model that sees its answer in an input scores perfectly on a holdout
    built the same way and fails in production, where the answer is not known yet; a holdout
    that repeats training rows, or that a non-random split set apart, measures memory or
    extrapolation instead of the accuracy the model card declares. Every other behavioural
    result computed on such data inherits the error.

    **How to fix**: drop a column known only after the outcome (or derived from it, such as a
    target encoding fitted with the holdout's labels) from the features, and fit every encoder
    and scaler on the training rows alone; remove holdout rows that are in train (deduplicate
    before splitting, and split by entity where one person or item has several rows); split
    at random, or by time with the holdout after the training period. A column that is
    legitimately this strong (a confirmed, available-at-prediction-time signal) can be waived
    with that reason.

    **Options**: ``near_perfect``, the skill a single column's lower bound must reach to be
    near-perfect; ``model_margin``, the most skill the full model may keep over a column that
    is as good as it; ``min_model_skill``, the full model's skill under which being as good as
    it is no finding (1 keeps that comparison to perfect models: for a model meant to use
    one column);
    ``transform``, the lower bound of eta², the relabelling share or \\|Spearman\\| that makes
    a column a transform of the target; ``shared_rows_high``, the share of holdout rows found
    in train (lower bound) that is high; ``float_digits``, the significant digits numbers are
    rounded to before rows are compared; ``split_auc``, the separation (lower bound) of train
    from holdout by one column that is a finding; ``max_rows``, the rows of each file the
    column models read (0 takes the profile's: quick 5000, standard 20000, thorough 100000).
    """

    meta = RuleMeta(
        id="MLA703",
        name="Leakage between target, train and holdout",
        family=Family.DATA_QUALITY,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.LABELS, Requirement.TRAIN_HOLDOUT}),
        options=(
            RuleOption("near_perfect", 0.9, "skill (lower bound) that makes one column "
                       "near-perfect", minimum=0, maximum=1, exclusive_minimum=True),
            RuleOption("model_margin", 0.02, "most skill the full model may keep over a column "
                       "as good as it", minimum=0, maximum=1),
            RuleOption("min_model_skill", 0.5, "full model's skill under which matching it is "
                       "no finding", minimum=0, maximum=1),
            RuleOption("transform", 0.98, "eta², relabelling share or |Spearman| (lower bound) "
                       "of a transform of the target", minimum=0, maximum=1,
                       exclusive_minimum=True),
            RuleOption("shared_rows_high", 0.01, "share of holdout rows in train (lower bound) "
                       "that is high", minimum=0, maximum=1, exclusive_minimum=True),
            RuleOption("float_digits", 6, "significant digits numbers are rounded to before "
                       "rows are compared", minimum=1, maximum=15),
            RuleOption("split_auc", 0.9, "separation of train from holdout by one column "
                       "(lower bound) that is a finding", minimum=0.5, maximum=1,
                       exclusive_minimum=True),
            RuleOption("max_rows", 0, "rows of each file the column models read; 0 takes the "
                       "profile's", minimum=0),
        ),
        controls=EVALUATION,
        uses_model_if_loaded=True,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        train, holdout = ctx.subject.dataset("train"), ctx.subject.dataset("holdout")
        assert train is not None
        assert holdout is not None
        thresholds = leakage.LeakageThresholds(
            near_perfect=ctx.option_float("near_perfect"),
            model_margin=ctx.option_float("model_margin"),
            min_model_skill=ctx.option_float("min_model_skill"),
            transform=ctx.option_float("transform"),
            shared_rows_high=ctx.option_float("shared_rows_high"),
            float_digits=ctx.option_int("float_digits"),
            split_auc=ctx.option_float("split_auc"),
        )
        yield from _shared_rows(ctx, train, holdout, thresholds)
        yield from _split_separators(ctx, train, holdout, thresholds)
        yield from _target_leaks(ctx, train, holdout, thresholds)


LEAKAGE_ROWS = {"quick": 5_000, "standard": 20_000, "thorough": 100_000}


def _target_leaks(
    ctx: RuleContext, train: Dataset, holdout: Dataset, thresholds: leakage.LeakageThresholds
) -> Iterator[Finding]:
    target = ctx.subject.target
    assert target is not None
    rows = ctx.option_int("max_rows") or LEAKAGE_ROWS[ctx.profile]
    rng = ctx.rng()
    train_rows, holdout_rows = (
        d.frame.dropna(subset=[target]) for d in (train, holdout)
    )
    train_rows, holdout_rows = (
        frame.iloc[uniform_sample(len(frame), rows, rng)] for frame in (train_rows, holdout_rows)
    )
    model = ctx.model
    split = leakage.make_split(train_rows, holdout_rows, target,
                               model.task if model is not None else None)
    ctx.metrics.update(task=split.task.value, rows={"train": len(split.y_train),
                                                    "holdout": len(split.y_holdout)})
    if len(split.y_train) < 10 or len(split.y_holdout) < 10 or not split.columns:
        ctx.metrics["target_checks"] = "not run: fewer than 10 labelled rows or no feature"
        return
    full, source = _full_model_predictions(ctx, split, holdout_rows)
    ctx.metrics["full_model"] = source
    try:
        found, full_scored, full_interval, scores = leakage.target_leaks(
            split, full, thresholds, rng, seed=ctx.seed, check_budget=ctx.check_budget
        )
    except leakage.ConstantTarget as constant:
        ctx.metrics["target_checks"] = f"not run: {constant}"
        return
    ctx.metrics["full_model_skill"] = full_interval.as_metric()
    if full_scored.accuracy is not None:
        ctx.metrics["full_model_accuracy"] = round(full_scored.accuracy, 6)
    strongest = sorted(scores, key=lambda s: -s.skill)[:5]
    ctx.metrics["strongest_columns"] = [
        {"column": s.column, "holdout_skill": round(s.skill, 6)} for s in strongest
    ]
    inputs = model.feature_names if model is not None else None
    for leak in found:
        severity = Severity.HIGH if leak.strength is leakage.Strength.CONFIDENT else Severity.MEDIUM
        taken = inputs is None or leak.column in inputs
        if not taken:
            severity = Severity.MEDIUM if severity is Severity.HIGH else Severity.LOW
        what = "is a transform of the target" if leak.transform else \
            "predicts the target on its own"
        note = "" if taken else " The loaded model does not take this column."
        sure = "" if leak.strength is leakage.Strength.CONFIDENT else (
            " Only the estimate clears the threshold: too few holdout rows for its interval."
        )
        yield ctx.finding(
            key=f"target:{leak.column}",
            title=f"Column {what}",
            message=f"Column {leak.column!r} {what} ({'; '.join(leak.reasons)}): holdout "
            f"skill {_skill_text(leak.evidence)} against the full model's "
            f"{full_scored.skill:.3f} ({source.split(':')[0]}).{sure}{note}",
            severity=severity,
            confidence=Confidence.HIGH if taken else Confidence.MEDIUM,
            location=Location(str(train.path), pointer=leak.column),
            evidence={**leak.evidence, "model_takes_column": taken if inputs else None},
            artifact_key="train",
        )


def _skill_text(evidence: Mapping[str, JsonValue]) -> str:
    skill = evidence["holdout_skill"]
    if isinstance(skill, dict):
        return f"{skill['estimate']:.3f} (95% {skill['low']:.3f}-{skill['high']:.3f})"
    assert isinstance(skill, float)
    return f"{skill:.3f}"


def _full_model_predictions(
    ctx: RuleContext, split: leakage.Split, holdout: pd.DataFrame
) -> tuple[np.ndarray, str]:
    """The loaded model's holdout predictions, else a reference model's, and which it was."""
    model = ctx.model
    why = "no model was loaded"
    if model is not None:
        try:
            predictions = np.asarray(model.predict(holdout.drop(columns=[ctx.subject.target])))
        except Exception as error:  # any model failure: the data checks still stand
            why = f"the loaded model raised {type(error).__name__} on the holdout"
        else:
            shares_labels = split.task is not Task.CLASSIFICATION or bool(
                set(pd.unique(predictions.ravel())) & set(pd.unique(split.y_holdout))
            )
            if predictions.shape[:1] == (len(split.y_holdout),) and shares_labels:
                return predictions.ravel(), "the loaded model"
            why = "the loaded model's predictions are not the target's labels (see MLA702)"
    return (
        leakage.reference_predictions(split, ctx.seed),
        f"a reference model: histogram gradient boosting fitted on train on every column "
        f"({why})",
    )


def _shared_rows(
    ctx: RuleContext, train: Dataset, holdout: Dataset, thresholds: leakage.LeakageThresholds
) -> Iterator[Finding]:
    shared = leakage.shared_rows(train.frame, holdout.frame, ctx.subject.target,
                                 thresholds.float_digits)
    evidence: dict[str, JsonValue] = {
        "exact": shared.exact, "after_normalisation": shared.normalised,
        "holdout_rows": shared.holdout_rows, "share": shared.share.as_metric(),
        "train_repeats_share": round(shared.train_duplicate_share, 6),
        "columns_compared": shared.columns,
    }
    ctx.metrics["shared_rows"] = evidence
    if shared.normalised == 0:
        return
    natural = shared.train_duplicate_share >= shared.share.estimate
    high = shared.share.low >= thresholds.shared_rows_high and not natural
    normalised_only = shared.normalised - shared.exact
    how = f"{shared.exact} exactly" + (
        f" and {normalised_only} more after normalisation" if normalised_only else ""
    )
    because = (
        f" Train repeats its own rows as often ({shared.train_duplicate_share:.1%}): the data "
        "may simply hold repeated inputs." if natural else ""
    )
    yield ctx.finding(
        key="shared-rows",
        title="Holdout rows that are also in train",
        message=f"{shared.normalised} of {shared.holdout_rows} holdout rows "
        f"({shared.share.estimate:.1%}, 95% {shared.share.low:.1%}-{shared.share.high:.1%}) "
        f"have a train row with the same features: {how}.{because}",
        severity=Severity.HIGH if high else Severity.LOW,
        location=Location(str(holdout.path)),
        evidence={**evidence, "holdout_row_examples": list(shared.examples)},
        artifact_key="holdout",
    )


def _split_separators(
    ctx: RuleContext, train: Dataset, holdout: Dataset, thresholds: leakage.LeakageThresholds
) -> Iterator[Finding]:
    found, examined = leakage.split_separators(
        train.frame, holdout.frame, ctx.subject.target, thresholds.split_auc
    )
    ctx.metrics["split_columns_examined"] = examined
    for separator in found:
        auc = separator.holdout_later
        if separator.kind is leakage.SeparatorKind.TIMESTAMP:
            title = "Training rows come after the holdout in time"
            what = "the training rows come after the holdout's: the model learnt from the " \
                "future of the data it is evaluated on"
        else:
            title = "Identifier that separates train from holdout"
            order = "after" if auc.estimate > 0.5 else "before"
            what = f"the holdout's values come {order} train's: the split followed this " \
                "column's order, not chance"
        yield ctx.finding(
            key=f"split:{separator.column}",
            title=title,
            message=f"Column {separator.column!r}: {what} (P(holdout value > train value) "
            f"{auc.estimate:.3f}, 95% {auc.low:.3f}-{auc.high:.3f}).",
            severity=Severity.MEDIUM,
            location=Location(str(holdout.path), pointer=separator.column),
            evidence={"kind": separator.kind.value, "holdout_later": auc.as_metric()},
            artifact_key="holdout",
        )
