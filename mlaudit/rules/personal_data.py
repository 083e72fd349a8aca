"""MLA4xx: personal data in the data, memorised in the model file, and in the model's outputs.

All three rules use one engine (:mod:`mlaudit.pii.analyzer`: presidio on a pipeline that needs
no download) and one redaction (:mod:`mlaudit.pii.redact`): no personal value reaches a
report, the terminal or a log, only masked forms and, with ``MLAUDIT_PII_SALT`` set, keyed
hashes. presidio's own errors can quote the text they failed on, so they are re-raised
without their message. presidio itself is imported only when an engine is built, so this
module loads without the ``pii`` extra.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Final, TypeVar

import numpy as np

from mlaudit.core.delegation import CLUSTER_THREADS, Delegate
from mlaudit.core.findings import Family, Finding, JsonValue, Location, Severity
from mlaudit.pii.analysis import AnalysisSettings, Hit, PiiEngineError, guarded
from mlaudit.pii.analyzer import get_engine
from mlaudit.pii.columns import ColumnScan, detection_limit
from mlaudit.pii.entities import ENTITY_NAMES, entity
from mlaudit.pii.hints import NO_HINT, hint_for
from mlaudit.pii.onnx_strings import strings_in_onnx
from mlaudit.pii.pickle_strings import strings_in_file
from mlaudit.pii.redact import Redactor, redactor_from
from mlaudit.pii.scan import EntityStats, Values, ValueScan, scan_groups
from mlaudit.pii.strings import DEFAULT_MAX_STRINGS, MAX_STRINGS, ArtifactStrings
from mlaudit.pii.tables import (
    CHUNK_VALUES,
    COLUMN_CHUNKS,
    LOCAL_ROUND_VALUES,
    AnalyseUnits,
    ChunkRequest,
    TablePlan,
)
from mlaudit.rules.base import (
    BudgetExceeded,
    OptionKind,
    Requirement,
    Rule,
    RuleContext,
    RuleMeta,
    RuleOption,
    RuleSkipped,
)
from mlaudit.rules.controls import PERSONAL_DATA
from mlaudit.scanners.sniff import ModelFormat

_T = TypeVar("_T")
_EXTRA: Final = "pii"
_EXTRA_MODULES: Final = ("presidio_analyzer", "spacy", "tldextract")
_SHARED_OPTIONS: Final = (
    RuleOption(
        "entities", list(ENTITY_NAMES), "entity types to look for",
        kind=OptionKind.STRINGS, choices=tuple(ENTITY_NAMES),
    ),
    RuleOption(
        "min_score", 0.5, "lowest presidio score (after context) that counts",
        kind=OptionKind.NUMBER, minimum=0, maximum=1,
    ),
    RuleOption(
        "nlp_model", None, "installed spaCy model to run instead of the offline engine",
        kind=OptionKind.STRING, nullable=True,
    ),
    RuleOption(
        "ignore_values", [], "hashes (hmac-sha256:...) of values that are not personal",
        kind=OptionKind.STRINGS,
    ),
    RuleOption(
        "max_cell_chars", 10_000, "characters of one value that are analysed",
        kind=OptionKind.INTEGER, minimum=1, maximum=10_000_000,
    ),
    RuleOption(
        "n_jobs", 0, "worker processes (0: one per core, up to 8, past 20,000 values)",
        kind=OptionKind.INTEGER, minimum=0, maximum=64,
    ),
)
_ARTIFACT_FORMATS: Final = frozenset({ModelFormat.PICKLE, ModelFormat.JOBLIB, ModelFormat.ONNX})
_MAX_LOCATIONS: Final = 50
_ROLE_NAMES: Final = {"data": "data sample", "train": "training data", "holdout": "holdout data"}


@dataclass(frozen=True)
class _Run:
    """What one rule run shares: analysis settings, the redactor and the value filter."""

    settings: AnalysisSettings
    redactor: Redactor
    ignore_values: frozenset[str]

    def keep(self, hit: Hit) -> bool:
        """False for a value the project listed in ``ignore_values`` (by its keyed hash)."""
        return not self.ignore_values or (
            self.redactor.hash(hit.entity, hit.text) not in self.ignore_values
        )

    def scan(self, groups: Sequence[Values], ctx: RuleContext) -> list[ValueScan]:
        return _guarded(partial(
            scan_groups, groups, self.settings, keep=self.keep, check_budget=ctx.check_budget
        ))


def _start(ctx: RuleContext) -> _Run:
    """Read the shared options, build the engine, record it and the hashing on metrics."""
    nlp_model = None if ctx.option_is_null("nlp_model") else ctx.option_str("nlp_model")
    settings = AnalysisSettings(
        entities=frozenset(ctx.option_strs("entities")),
        min_score=ctx.option_float("min_score"),
        max_chars=ctx.option_int("max_cell_chars"),
        nlp_model=nlp_model,
        n_jobs=ctx.option_int("n_jobs"),
    )
    engine = _guarded(partial(get_engine, nlp_model))
    redactor = redactor_from()
    ctx.metrics["engine"] = engine.description
    ctx.metrics["value_hashes"] = redactor.hashing
    return _Run(settings, redactor, frozenset(ctx.option_strs("ignore_values")))


def _guarded(call: Callable[[], _T]) -> _T:
    """Run the engine with its messages withheld (:func:`mlaudit.pii.analysis.guarded`);
    budget overruns and a cluster's timeout pass through unchanged."""
    return guarded(call, (RuleSkipped, BudgetExceeded, TimeoutError))


def _summary(stats: Sequence[EntityStats], unit: str) -> str:
    parts = []
    for item in stats:
        share = item.share
        interval = "" if share.low == share.high else (
            f", 95% interval {share.low:.1%} to {share.high:.1%}"
        )
        parts.append(
            f"{entity(item.entity).label} in {item.occurrences} {unit} "
            f"({share.estimate:.1%}{interval})"
        )
    return "; ".join(parts)


def _labels(stats: Sequence[EntityStats]) -> str:
    return ", ".join(entity(s.entity).label for s in stats)


def _finding(
    ctx: RuleContext, run: _Run, stats: Sequence[EntityStats], *, key: str, title: str,
    message: str, location: Location, evidence: dict[str, JsonValue], artifact_key: str,
) -> Finding:
    severity = max([ctx.meta.severity, *(entity(s.entity).severity for s in stats)])
    evidence["entities"] = [s.evidence(run.redactor) for s in stats]
    return ctx.finding(
        key=key,
        title=f"{title} ({_labels(stats)})",
        message=message,
        location=location,
        severity=severity,
        confidence=max(s.confidence for s in stats),
        evidence=evidence,
        artifact_key=artifact_key,
    )


class PersonalDataInData(Rule):
    """Personal data in the data.

    **What it checks**: every column of every data file given (``--data``, ``--train``,
    ``--holdout``): text and categorical columns, integer columns wide enough to hold an
    identifier (phone or card numbers stored as numbers), and date columns named as birth
    dates. Each column's distinct values are analysed once with presidio's recognizers
    (e-mail addresses, phone numbers, payment cards, IBANs, IP addresses, US social security
    and passport numbers, UK NHS and national insurance numbers, person names from shipped
    name lists, dates of birth); free-text values are analysed as text, with presidio's
    in-text context words. A column's name raises confidence where it says what the column
    holds (``email``, ``phone``, ``ssn``, ``dob``, ``first_name``). A column with more than
    ``sample_rows`` rows is analysed on a random sample (seeded by the run's seed, the data
    file's role and the column's name): each entity's share of rows then comes with a 95 %
    interval, and the metrics record the share below which an entity could go unseen. One
    finding per column, pointing at the column, lists the entity types, their share of rows
    and presidio's confidence. Binary columns, mixed encodings, very long cells (cut to
    ``max_cell_chars``) and empty columns are analysed or skipped with a reason, never a
    crash. The model is not needed: the rule runs even when the load gate blocks the model.
    The work is split into chunks of at most 5,000 distinct values of a column
    (``column_chunks`` in the metrics); with a Dask cluster (``--dask-scheduler``,
    ``--workers``) the workers analyse the chunks, and the result is the same as without.

    **Why it matters**: regulators (GDPR art. 30, CCPA) ask where personal data went. Data
    that reaches training, evaluation or a shared audit sample is processed personal data:
    it needs a lawful basis, minimisation and a retention plan, and columns the model does
    not need should not be there at all.

    **How to fix**: drop the columns the model does not use; pseudonymise or hash identifiers
    that must stay; strip personal data from free text before it is stored. A value known
    not to be personal (a company's support address) goes in ``ignore_values`` by its hash;
    otherwise waive the finding with a reason. Evidence shows only masked values
    (``j•••@e•••.com``, ``•••0143``); set the secret ``MLAUDIT_PII_SALT`` to also get stable
    keyed hashes of the values.

    **Options**: ``entities`` (entity types to look for), ``min_score`` (lowest presidio
    score, after context, that counts; default 0.5), ``sample_rows`` (rows analysed per
    column; 0 analyses every row), ``max_cell_chars`` (characters of a cell analysed),
    ``nlp_model`` (an installed spaCy model, such as ``en_core_web_lg``, to run instead of
    the offline engine; ``--nlp-model``), ``ignore_values`` (hashes of values that are not
    personal; needs ``MLAUDIT_PII_SALT``), ``n_jobs`` (worker processes; 0, the default,
    uses one per core, up to 8, once more than 20,000 distinct values are to be analysed; 1
    analyses in the rule's own process; on a cluster each task analyses in its worker's
    thread).
    """

    meta = RuleMeta(
        id="MLA401",
        name="Personal data in the data",
        family=Family.PERSONAL_DATA,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.DATA}),
        extra=_EXTRA,
        extra_modules=_EXTRA_MODULES,
        options=(
            *_SHARED_OPTIONS,
            RuleOption(
                "sample_rows", 2_000, "rows analysed per column (0: every row)",
                kind=OptionKind.INTEGER, minimum=0, maximum=10**9,
            ),
        ),
        controls=PERSONAL_DATA,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        run = _start(ctx)
        sample_rows = ctx.option_int("sample_rows")
        datasets = ctx.subject.datasets
        plan = _guarded(partial(
            TablePlan.of, [(d.role, d.frame) for d in datasets], seed=ctx.seed,
            sample_rows=sample_rows, chunk_values=CHUNK_VALUES, settings=run.settings,
        ))
        if ctx.delegate is None:
            analyse: AnalyseUnits = partial(plan.analyse, check_budget=ctx.check_budget)
            round_values = LOCAL_ROUND_VALUES
        else:
            analyse, round_values = _on_cluster(ctx.delegate, plan.request, ctx.deadline)
        results = _guarded(partial(
            plan.run, analyse, round_values=round_values, progress=ctx.progress,
            check_budget=ctx.check_budget,
        ))
        ctx.metrics["column_chunks"] = len(results)
        summaries: dict[str, JsonValue] = {}
        analysed_any = False
        for dataset, scans in zip(datasets, plan.scans(results, run.keep), strict=True):
            skipped: dict[str, JsonValue] = {
                s.column: s.skipped for s in scans if s.skipped is not None
            }
            for scanned in scans:
                if scanned.scan is not None and scanned.scan.entities:
                    yield _column_finding(ctx, run, dataset.role, str(dataset.path), scanned)
            analysed = len(scans) - len(skipped)
            rows = min(sample_rows or dataset.rows, dataset.rows)
            summaries[dataset.role] = {
                "rows": dataset.rows,
                "columns_analysed": analysed,
                "columns_skipped": skipped,
                "rows_analysed_per_column": rows,
                "detection_limit": round(detection_limit(rows), 6),
            }
            analysed_any = analysed_any or analysed > 0
        ctx.metrics["datasets"] = summaries
        if not analysed_any:
            raise RuleSkipped("no column holds text, categories or identifiers to analyse")


def _on_cluster(
    delegate: Delegate, request: ChunkRequest, deadline: float
) -> tuple[AnalyseUnits, int]:
    """Column chunks analysed on the run's cluster, in rounds of about two chunks' worth of
    values per worker thread: the budget is checked and progress said between rounds."""

    def analyse(indices: list[int]) -> list[JsonValue]:
        timeout = max(deadline - time.monotonic(), 0.0)
        found = delegate(COLUMN_CHUNKS, request.params(indices), timeout)
        if not isinstance(found, list):
            raise PiiEngineError(
                f"the cluster answered {COLUMN_CHUNKS} with a {type(found).__name__}"
            )
        return found

    threads = delegate(CLUSTER_THREADS, {}, 10.0)
    workers = int(threads) if isinstance(threads, int) else 1
    return analyse, 2 * max(workers, 1) * request.chunk_values


def _column_finding(
    ctx: RuleContext, run: _Run, role: str, path: str, scanned: ColumnScan
) -> Finding:
    assert scanned.scan is not None
    stats = scanned.scan.entities
    sample = (
        f"; a random sample of {scanned.analysed_rows} of {scanned.rows} rows was analysed"
        if scanned.sampled else ""
    )
    return _finding(
        ctx, run, stats,
        key=f"column:{scanned.column}",
        title=f"Personal data in column {scanned.column!r}",
        message=f"column {scanned.column!r} of the {_ROLE_NAMES.get(role, role)} holds "
        f"{_summary(stats, 'rows')}{sample}",
        location=Location(path, pointer=scanned.column),
        evidence={
            "dataset": role,
            "column": scanned.column,
            "column_kind": scanned.kind,
            "rows": scanned.rows,
            "rows_analysed": scanned.analysed_rows,
            "distinct_values_analysed": scanned.scan.values,
            "sampled": scanned.sampled,
            "cells_truncated": scanned.truncated,
            "column_name_suggests": list[JsonValue](sorted(scanned.hint.expects)),
        },
        artifact_key=role,
    )


class PersonalDataInArtifact(Rule):
    """Personal data memorised in the model file.

    **What it checks**: the strings stored in the model file, read statically without
    loading or unpickling anything (so it also works on a model the load gate blocks): in
    pickle and joblib files every string the pickle would build, with the object path that
    holds it (``steps[0][1].vocabulary_``, ``categories_[0]``, ``classes_``,
    ``feature_names_in_``), NumPy string arrays included; in ONNX files string tensors,
    string attributes (class labels, ``LabelEncoder`` keys, ``CategoryMapper`` and
    ``TfIdfVectorizer`` pools), metadata and doc strings. Each container's distinct strings
    are analysed with the same engine as MLA401; one finding per object path that holds
    personal data.

    **Why it matters**: a model file is copied to every place the model runs, and whoever
    has it can read these strings. scikit-learn's text vectorisers keep their whole
    vocabulary, and before 1.5.0 also ``stop_words_``, every token cut by ``max_df``,
    ``min_df`` or ``max_features`` (CVE-2024-5206): e-mail addresses, names and numbers from
    the training texts. Encoders keep every category value, classifiers every class label,
    and a label that names a person is personal data shipped with the model.

    **How to fix**: remove personal data from texts and categories before fitting (replace
    e-mail addresses and numbers with placeholders in preprocessing); do not fit text
    vectorisers with a token pattern that keeps whole addresses; upgrade scikit-learn to
    1.5.0 or later and refit; hash high-cardinality identifiers instead of one-hot encoding
    them. Values that are not personal (a support address) go in ``ignore_values``.

    **Options**: ``max_strings`` (strings kept from one model file for analysis, at most
    500,000; past it the rest are counted, not analysed, and the result says how many were
    left unread, so a file of millions of strings cannot keep the rule busy), and
    ``entities``, ``min_score``, ``max_cell_chars``, ``nlp_model``, ``ignore_values`` and
    ``n_jobs``, as for MLA401. At most 50 object paths are listed; one more finding counts
    the rest.
    """

    meta = RuleMeta(
        id="MLA402",
        name="Personal data memorised in the model file",
        family=Family.PERSONAL_DATA,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.ARTIFACT}),
        formats=_ARTIFACT_FORMATS,
        extra=_EXTRA,
        extra_modules=_EXTRA_MODULES,
        options=(
            RuleOption(
                "max_strings", DEFAULT_MAX_STRINGS, "strings kept from the file for analysis",
                kind=OptionKind.INTEGER, minimum=1, maximum=MAX_STRINGS,
            ),
            *_SHARED_OPTIONS,
        ),
        controls=PERSONAL_DATA,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        run = _start(ctx)
        strings = _artifact_strings(ctx, ctx.option_int("max_strings"))
        ctx.metrics["strings"] = strings.total
        ctx.metrics["distinct_strings"] = strings.distinct
        ctx.metrics["object_paths"] = len(strings.by_path)
        ctx.metrics["truncated"] = strings.truncated
        ctx.metrics["strings_unread"] = strings.unread
        ctx.metrics["read_problems"] = list(strings.problems)
        # The last attribute names the container (``classes_``, ``emails``): a hint.
        scans = run.scan([
            Values(texts, [1] * len(texts), hint_for(path.rsplit(".", 1)[-1]))
            for path, texts in strings.by_path
        ], ctx)
        found = [
            (path, len(texts), scan.entities)
            for (path, texts), scan in zip(strings.by_path, scans, strict=True)
            if scan.entities
        ]
        ctx.metrics["paths_with_personal_data"] = len(found)
        found.sort(key=lambda item: (-sum(s.occurrences for s in item[2]), item[0]))
        reference = ctx.subject.model.reference
        for path, count, stats in found[:_MAX_LOCATIONS]:
            yield _finding(
                ctx, run, stats,
                key=f"path:{path}",
                title=f"Personal data in the model file at {path}",
                message=f"the model file holds, at {path}, {_summary(stats, 'strings')} "
                f"among {count} distinct strings; anyone with the file can read them",
                location=Location(reference, pointer=path),
                evidence={"path": path, "distinct_strings": count},
                artifact_key="model",
            )
        if len(found) > _MAX_LOCATIONS:
            rest = len(found) - _MAX_LOCATIONS
            yield ctx.finding(
                key="more-paths",
                title=f"Personal data at {rest} more object paths",
                message=f"{rest} more object paths hold personal data; the {_MAX_LOCATIONS} "
                "with the most are listed as separate findings",
                location=Location(reference),
                evidence={"paths": rest},
            )
        if strings.unread:
            yield _unread_finding(ctx, strings)


def _unread_finding(ctx: RuleContext, strings: ArtifactStrings) -> Finding:
    """The cap was hit: say so, and how much was not analysed, so a clean result is honest."""
    return ctx.finding(
        key="strings-unread",
        title=f"{strings.unread} strings in the model file were not analysed",
        message=f"the model file holds {strings.total + strings.unread} strings; the first "
        f"{strings.total} were analysed (max_strings) and {strings.unread} were left unread, "
        "so personal data among them would not be reported",
        severity=Severity.INFO,
        location=Location(ctx.subject.model.reference),
        evidence={"strings_analysed": strings.total, "strings_unread": strings.unread},
    )


def _artifact_strings(ctx: RuleContext, max_strings: int) -> ArtifactStrings:
    path = ctx.subject.model.path
    assert path is not None
    if ctx.subject.model.format is ModelFormat.ONNX:
        return strings_in_onnx(
            path, max_strings=max_strings, cache=ctx.cache, by=ctx.meta.id
        )
    return strings_in_file(
        path,
        time_budget_s=max(1.0, ctx.deadline - time.monotonic()),
        max_strings=max_strings,
    )


class PersonalDataInOutputs(Rule):
    """Personal data in the model's outputs.

    **What it checks**: what the loaded model returns when run on the data sample (at most
    ``max_rows`` rows, drawn with the run's seed), when its outputs are text: class labels,
    and the outputs of a text-producing model given as ``module:callable``. The model's
    declared classes are analysed too. Distinct outputs are analysed with the same engine as
    MLA401; one finding per output (predictions, classes).

    **Why it matters**: whatever a model outputs reaches every caller of the service. A
    classifier whose labels are people, or a generator that repeats an e-mail address or a
    phone number from its training data, discloses personal data to anyone who queries it.

    **How to fix**: map labels that identify people to opaque identifiers kept outside the
    model; filter or redact generated text before it leaves the service; retrain without the
    memorised records. Values that are not personal go in ``ignore_values``.

    **Options**: ``max_rows`` (rows of the sample the model is run on), and ``entities``,
    ``min_score``, ``max_cell_chars``, ``nlp_model``, ``ignore_values`` and ``n_jobs`` as
    for MLA401.
    """

    meta = RuleMeta(
        id="MLA403",
        name="Personal data in the model's outputs",
        family=Family.PERSONAL_DATA,
        severity=Severity.HIGH,
        requires=frozenset({Requirement.MODEL, Requirement.DATA}),
        extra=_EXTRA,
        extra_modules=_EXTRA_MODULES,
        options=(
            *_SHARED_OPTIONS,
            RuleOption(
                "max_rows", 2_000, "rows of the sample the model is run on",
                kind=OptionKind.INTEGER, minimum=1, maximum=10**7,
            ),
        ),
        controls=PERSONAL_DATA,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        assert ctx.subject.sample is not None
        run = _start(ctx)
        max_rows = ctx.option_int("max_rows")
        features = ctx.subject.sample.features
        if len(features) > max_rows:
            chosen = np.sort(ctx.rng().choice(len(features), size=max_rows, replace=False))
            features = features.iloc[chosen]
        outputs = {
            "predictions": np.asarray(ctx.model.predict(features)).ravel().tolist(),
            "classes": list(ctx.model.classes or ()),
        }
        ctx.metrics["rows_queried"] = len(features)
        for name, values in outputs.items():
            texts = [str(v) for v in values if isinstance(v, str)]
            ctx.metrics[f"{name}_text_values"] = len(texts)
            if not texts:
                continue
            counts = Counter(texts)
            (scan,) = run.scan([Values(list(counts), list(counts.values()), NO_HINT)], ctx)
            if not scan.entities:
                continue
            where = "predict() output" if name == "predictions" else "classes"
            yield _finding(
                ctx, run, scan.entities,
                key=f"output:{name}",
                title=f"Personal data in the model's {where}",
                message=f"the model's {name} ({len(texts)} values, {len(counts)} distinct) "
                f"include {_summary(scan.entities, 'values')}; every caller receives them",
                location=Location(ctx.subject.model.reference, pointer=where),
                evidence={"output": name, "values": len(texts), "distinct_values": len(counts)},
                artifact_key="model",
            )
