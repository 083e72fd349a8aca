"""The library API: :func:`scan` runs one audit and returns an :class:`Audit`.

The scan sequence lives here and nowhere else: settings -> subject -> engine -> waivers ->
scoring -> gate -> report. The CLI turns its flags into one call of :func:`scan`, then prints,
writes and exits; a notebook or a test calls :func:`scan` with paths, or with the objects it
already holds (a fitted estimator, DataFrames).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import io
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeAlias

import pandas as pd
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mlaudit.compliance import ENVELOPE_NAME
from mlaudit.compliance.attest import (
    load_signing_key,
    passphrase_from_environment,
    sign_report,
)
from mlaudit.compliance.regression import Baseline
from mlaudit.config import Settings, resolve
from mlaudit.core.atomic import write_files_atomically
from mlaudit.core.errors import EXIT_GATE_FAILED, EXIT_PASSED, UsageError
from mlaudit.core.findings import Finding, JsonValue, ModelIdentity, RuleResult
from mlaudit.core.load_options import LoadOptions
from mlaudit.core.runcache import RunCache
from mlaudit.distributed import Cluster, ClusterSettings, open_cluster
from mlaudit.engine.run import (
    AuditRun,
    EngineSettings,
    Progress,
    configure,
    load_rules,
    run_audit,
)
from mlaudit.loaders.entrypoint import wrap_object
from mlaudit.loaders.load_gate import LoadStatus
from mlaudit.loaders.sklearn import wrap_estimator
from mlaudit.reports import FORMATS, renderer_for
from mlaudit.reports.build import RunInfo, build_report
from mlaudit.reports.console import html_summary
from mlaudit.rules.base import Rule, Stage
from mlaudit.scanners.inventory import ImportInventory
from mlaudit.scanners.sniff import ModelFormat
from mlaudit.subject.build import (
    DATA_ROLES,
    LABELS_OPTIONAL,
    ModelArtifact,
    Subject,
    build_subject,
    require_current_columns,
    with_optional_target,
)
from mlaudit.subject.data import Dataset, dataset_from_frame
from mlaudit.subject.model_info import LoadedModel
from mlaudit.verdict.scoring import GatePolicy, decide_gate, score_results
from mlaudit.verdict.waivers import apply_waivers

PERSONAL_DATA_RULES = ("MLA401", "MLA402", "MLA403")

PathInput: TypeAlias = str | os.PathLike[str]
DataInput: TypeAlias = str | os.PathLike[str] | pd.DataFrame | None

# What the report calls data handed over as a DataFrame rather than a file.
IN_MEMORY_DATA = Path("<in-memory DataFrame>")


@dataclass(frozen=True, repr=False)
class Audit:
    """One audit: the report document, the results it was decided on (after waivers) and the
    settings it ran with (arguments over ``MLAUDIT_*`` over the config file over defaults)."""

    report: dict[str, Any]
    results: tuple[RuleResult, ...]
    settings: Settings

    @property
    def passed(self) -> bool:
        return bool(self.report["gate"]["passed"])

    @property
    def exit_code(self) -> int:
        """The CLI's exit code for this audit: 0 passed (or ``exit_zero``), 1 the gate failed."""
        return EXIT_PASSED if self.passed or self.settings.exit_zero else EXIT_GATE_FAILED

    @property
    def findings(self) -> tuple[Finding, ...]:
        """Every finding that counts (waived ones are in the report's ``suppressed``)."""
        return tuple(finding for result in self.results for finding in result.findings)

    def to_dict(self) -> dict[str, Any]:
        """A copy of the report document, free to change without touching this audit."""
        return copy.deepcopy(self.report)

    def write(
        self,
        directory: PathInput,
        formats: Sequence[str] = ("json", "html"),
        sign_key: Ed25519PrivateKey | PathInput | None = None,
    ) -> list[Path]:
        """Write the report in ``formats`` (report.json always) into ``directory``: all files
        or none. With ``sign_key`` (a key, or an Ed25519 PEM file whose passphrase, if any,
        is in ``MLAUDIT_KEY_PASSPHRASE``), the signed envelope is written with them."""
        key = sign_key if isinstance(sign_key, Ed25519PrivateKey | None) else (
            load_signing_key(Path(sign_key), passphrase_from_environment())
        )
        return _write_report(self.report, formats, Path(directory), key)

    def _repr_html_(self) -> str:
        return html_summary(self.report)

    def __repr__(self) -> str:
        verdict = "passed" if self.passed else "FAILED"
        return (
            f"<Audit of {self.report['subject']['model']['path']}: gate {verdict}, score "
            f"{self.report['score']:g}, grade {self.report['grade']}, "
            f"{len(self.findings)} findings>"
        )


def scan(
    model: object,
    *,
    data: DataInput = None,
    train: DataInput = None,
    holdout: DataInput = None,
    reference: DataInput = None,
    current: DataInput = None,
    target: str | None = None,
    source: PathInput | None = None,
    requirements: PathInput | Sequence[PathInput] = (),
    env: bool = False,
    vuln_db: PathInput | None = None,
    select: str | Sequence[str] = (),
    ignore: str | Sequence[str] = (),
    require: str | Sequence[str] = (),
    fail_on: str | None = None,
    min_score: float | None = None,
    allow_incomplete: bool | None = None,
    exit_zero: bool | None = None,
    seed: int | None = None,
    profile: str | None = None,
    trust_model: bool | None = None,
    isolation: str | None = None,
    dask_scheduler: str | None = None,
    workers: int | None = None,
    config: PathInput | None = None,
    rule_options: Mapping[str, Mapping[str, JsonValue]] | None = None,
    baseline: PathInput | None = None,
    nlp_model: str | None = None,
    model_class: str | None = None,
    model_kwargs: Mapping[str, JsonValue] | None = None,
    model_output: str | None = None,
    text_column: str | None = None,
    progress: Progress | None = None,
    command: str | None = None,
) -> Audit:
    """Audit ``model`` and return the :class:`Audit`; nothing is written (see :meth:`Audit.write`).

    ``model`` is a model file or folder, a ``module:callable`` reference, or a fitted model
    object (anything with ``predict``, or a function from a DataFrame to predictions). An
    object has no file for the artifact rules to scan (they are skipped, saying so) and runs
    in this process. ``data``, ``train`` and ``holdout`` are data files or DataFrames, and so
    are ``reference`` (what drift is measured against; the training data when not given) and
    ``current`` (production data), whose target column is optional.

    The keyword arguments are the CLI's options; one left at None (or empty) falls through to
    ``MLAUDIT_*`` environment variables, then to the config file (``config``, else
    ``mlaudit.toml`` or ``[tool.mlaudit]`` in the working directory's pyproject.toml).
    ``rule_options`` (``{"MLA201": {"budget_s": 60}}``) is laid over the file's rule tables.
    ``model_class`` (``pkg.models:Net``, called with ``model_kwargs``) is the architecture of a
    PyTorch state dict, ``model_output`` how the model's raw outputs read (``logits``,
    ``probabilities``, ``regression``), ``text_column`` the data column a text model reads.
    ``dask_scheduler`` (``tcp://host:8786``) or ``workers`` (a local cluster of that many
    processes) fans the rules' costly work out to Dask (reference models, attack models,
    attack batches, personal-data chunks, bandit batches); the report is the local run's.
    ``progress`` receives one line per step; ``command`` is recorded as the report's
    ``run.command``. Bad input raises :class:`UsageError` (:class:`ConfigError` for settings).
    """
    started = datetime.now(UTC)
    settings = _settings(
        {
            "target": target, "vuln_db": vuln_db, "select": select, "ignore": ignore,
            "require": require, "fail_on": fail_on, "min_score": min_score,
            "allow_incomplete": allow_incomplete, "exit_zero": exit_zero, "seed": seed,
            "profile": profile, "trust_model": trust_model, "isolation": isolation,
            "dask_scheduler": dask_scheduler, "workers": workers,
            "baseline": baseline, "model_class": model_class, "model_kwargs": model_kwargs,
            "model_output": model_output, "text_column": text_column,
        },
        config, rule_options, nlp_model,
    )
    roles = {
        "data": data, "train": train, "holdout": holdout, "reference": reference,
        "current": current,
    }
    _check_objects(model, roles)
    rules = load_rules(settings.select, settings.ignore)
    engine_settings = _engine_settings(settings)
    # Options are checked before any file is read: a typo fails at once, not after hashing.
    configure(rules, engine_settings)
    prior = Baseline.read(Path(settings.baseline)) if settings.baseline else None
    loaded: LoadedModel | None = None
    if isinstance(model, str | os.PathLike):
        model_reference: str | ModelArtifact = os.fspath(model)
    else:
        loaded, model_reference = _loaded(model), _in_memory_artifact(model)
    # One cache for the run: what scanning the model file parsed, the rules reuse.
    cache = RunCache()
    subject = _subject(
        model_reference, roles=roles, source=source, requirements=_paths(requirements),
        environment=env, settings=settings, cache=cache,
    )
    cluster = ClusterSettings(settings.dask_scheduler, settings.workers)
    with open_cluster(cluster) as opened:
        run, caught = _run(
            subject, rules, engine_settings, progress, cache, loaded=loaded, cluster=opened
        )
    return _decide(
        run, subject, rules=rules, settings=settings, prior=prior, caught=caught,
        info=RunInfo.new(started, command or "mlaudit.scan() from Python"),
    )


def _settings(
    given: Mapping[str, object],
    config: PathInput | None,
    rule_options: Mapping[str, Mapping[str, JsonValue]] | None,
    nlp_model: str | None,
) -> Settings:
    """The arguments actually given, over ``MLAUDIT_*``, over the config file, over defaults."""
    explicit = {
        key: os.fspath(value) if isinstance(value, os.PathLike) else value
        for key, value in given.items()
        if value is not None and not (isinstance(value, list | tuple | dict) and not value)
    }
    settings = resolve(explicit, Path(config) if config is not None else None)
    for rule_id, options in (rule_options or {}).items():
        if not isinstance(options, Mapping):
            raise UsageError(f"rule_options for {rule_id} must map option names to values")
        settings = _with_rule_options(settings, (str(rule_id).upper(),), options)
    if nlp_model:
        settings = _with_nlp_model(settings, nlp_model)
    if settings.vuln_db:
        settings = _with_rule_options(settings, ("MLA601",), {"database": settings.vuln_db})
    return settings


def _with_rule_options(
    settings: Settings, rule_ids: Sequence[str], options: Mapping[str, JsonValue]
) -> Settings:
    """``options`` set on each of ``rule_ids``, over what the config file says."""
    rules = dict(settings.rules)
    for rule_id in rule_ids:
        rules[rule_id] = {**rules.get(rule_id, {}), **options}
    return dataclasses.replace(settings, rules=rules)


def _with_nlp_model(settings: Settings, name: str) -> Settings:
    """``nlp_model`` sets the personal-data rules' ``nlp_model`` option, over the file's."""
    try:
        from mlaudit.pii.analyzer import EngineUnavailable, check_nlp_model
    except ImportError:
        raise UsageError(
            "--nlp-model needs the 'pii' extra: pip install 'mlaudit[pii]'"
        ) from None
    try:
        check_nlp_model(name)
    except EngineUnavailable as error:
        raise UsageError(str(error)) from None
    return _with_rule_options(settings, PERSONAL_DATA_RULES, {"nlp_model": name})


# --- inputs --------------------------------------------------------------------------------


def _paths(requirements: PathInput | Sequence[PathInput]) -> list[Path]:
    """One path or several: a lone string is one file, not a sequence of characters."""
    if isinstance(requirements, str | os.PathLike):
        return [Path(requirements)]
    return [Path(r) for r in requirements]


def _check_objects(model: object, roles: Mapping[str, object]) -> None:
    """Inputs of a type scan cannot take, before anything is loaded or read."""
    for role, value in roles.items():
        if not (value is None or isinstance(value, str | os.PathLike | pd.DataFrame)):
            raise UsageError(
                f"{role} must be a data file path or a pandas DataFrame, not "
                f"{type(value).__name__}"
            )
    if isinstance(model, str | os.PathLike):
        return
    if not (callable(getattr(model, "predict", None)) or callable(model)):
        raise UsageError(
            "model must be a file path, a module:callable reference, or a fitted model with a "
            f"predict() method; got a {type(model).__name__}"
        )


def _data_path(value: DataInput) -> Path | None:
    return Path(value) if isinstance(value, str | os.PathLike) else None


def _subject(
    reference: str | ModelArtifact,
    *,
    roles: Mapping[str, DataInput],
    source: PathInput | None,
    requirements: Sequence[Path],
    environment: bool,
    settings: Settings,
    cache: RunCache,
) -> Subject:
    """Files are read as the CLI reads them; DataFrames join them as they are."""
    subject = build_subject(
        reference,
        data=_data_path(roles["data"]),
        train=_data_path(roles["train"]),
        holdout=_data_path(roles["holdout"]),
        reference=_data_path(roles["reference"]),
        current=_data_path(roles["current"]),
        target=settings.target,
        source=Path(source) if source is not None else None,
        requirements=requirements,
        extra_allowed=frozenset(settings.allow_globals),
        environment=environment,
        cache=cache,
    )
    frames = [
        _frame_dataset(value, role, subject.target)
        for role, value in roles.items()
        if isinstance(value, pd.DataFrame)
    ]
    if not frames:
        return subject
    datasets = sorted([*subject.datasets, *frames], key=lambda d: DATA_ROLES.index(d.role))
    require_current_columns(datasets)
    return dataclasses.replace(subject, datasets=tuple(datasets))


def _frame_dataset(frame: pd.DataFrame, role: str, target: str | None) -> Dataset:
    """A DataFrame given in memory, checked as :func:`~mlaudit.subject.data.read_dataset` checks
    a file.

    Passed through rather than written to a temporary CSV or Parquet file and read back: a
    round trip through CSV loses dtypes the model may depend on (categories, nullable
    integers, datetimes), Parquet needs the optional pyarrow, and either would record in the
    report a temporary path that no longer exists. The hash is that of the frame written as
    CSV by pandas (``to_csv(index=False)``, UTF-8, ``\n`` line ends), so it equals the sha256
    of the file the same frame saved that way would have: the report binds the same data by
    the same hash whether it was given in memory or as that file.
    """
    # A copy: the audit must see the data it hashed, whatever the caller does to it later.
    copied = frame.copy()
    digest = _HashingWriter()
    copied.to_csv(digest, index=False, lineterminator="\n")
    labelled = role not in LABELS_OPTIONAL
    dataset = dataset_from_frame(
        copied, role, target if labelled else None, path=IN_MEMORY_DATA,
        sha256=digest.hash.hexdigest(), described=f"the {role} DataFrame",
    )
    return dataset if labelled else with_optional_target(dataset, target)


class _HashingWriter(io.TextIOBase):
    """A text stream that hashes what is written to it instead of keeping it."""

    def __init__(self) -> None:
        super().__init__()
        self.hash = hashlib.sha256()

    def write(self, text: str) -> int:
        self.hash.update(text.encode("utf-8"))
        return len(text)


# --- in-memory models ----------------------------------------------------------------------


def _loaded(model: object) -> LoadedModel:
    """A model given as an object, wrapped as the loaders wrap what they load: a
    scikit-learn estimator (xgboost's and LightGBM's scikit-learn models among them) as the
    pickle loader wraps one it unpickled, anything else as the entry-point loader wraps the
    object it imports. The same model so reads the same in the report, file or object."""
    from sklearn.base import BaseEstimator  # not at import: ``import mlaudit`` stays light

    origin = f"the {type(model).__name__} given in memory"
    if isinstance(model, BaseEstimator):
        return wrap_estimator(model, "scikit-learn", origin)
    return wrap_object(model, origin)


def _in_memory_artifact(model: object) -> ModelArtifact:
    """What stands for a model given in memory where the subject has a file: no path, no
    bytes, no inventory. Its name is its class's, the same from run to run, so findings bound
    to it (and waivers and baselines written for them) carry over between runs. The format
    is a stand-in the engine never reads for an in-memory model (the report has none)."""
    return ModelArtifact(
        f"<in-memory {type(model).__name__}>", None, ModelFormat.ENTRY_POINT, None, None,
        ImportInventory(),
    )


# --- the run and its verdict ---------------------------------------------------------------


def _engine_settings(settings: Settings) -> EngineSettings:
    return EngineSettings(
        seed=settings.seed,
        profile=settings.profile,
        trust_model=settings.trust_model,
        extra_allowed=frozenset(settings.allow_globals),
        rule_options=settings.rules,
        isolation=settings.isolation,
        load_options=LoadOptions(
            settings.model_class, settings.model_kwargs, settings.model_output,
            settings.text_column,
        ),
    )


def _run(
    subject: Subject,
    rules: Sequence[type[Rule]],
    settings: EngineSettings,
    progress: Progress | None,
    cache: RunCache,
    *,
    loaded: LoadedModel | None,
    cluster: Cluster | None = None,
) -> tuple[AuditRun, list[str]]:
    """The engine's run, and the library warnings it raised, as the report records them."""
    # Library warnings (a model pickled by another scikit-learn version, say) belong in the
    # report, where a reader can weigh them, not interleaved with the summary on stderr.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = run_audit(
            subject, rules, settings, progress or _ignore, cache, loaded=loaded, cluster=cluster
        )
    return run, [f"{w.category.__name__}: {w.message}" for w in caught]


def _ignore(_: str) -> None:
    """Progress nobody asked for."""


def _decide(
    run: AuditRun,
    subject: Subject,
    *,
    rules: Sequence[type[Rule]],
    settings: Settings,
    prior: Baseline | None,
    info: RunInfo,
    caught: Sequence[str],
) -> Audit:
    """Waivers, then score and gate (against the baseline, if any), then the report."""
    # Waivers apply before scoring and the gate: a waived finding counts toward neither.
    # Fingerprints are bound to the model here, so no waiver or baseline crosses models.
    identity = ModelIdentity(subject.model.reference, subject.model.sha256)
    waived = apply_waivers(run.results, settings.waivers, info.started_at.date(), identity)
    scorecard = score_results(waived.results)
    policy = GatePolicy(
        settings.fail_on, settings.min_score, settings.allow_incomplete, settings.require
    )
    blocked = _blocked_reason(run, rules)
    if prior is None:
        gate, compared = decide_gate(waived.results, scorecard.score, policy, blocked), None
    else:
        gate, compared = prior.gate(
            waived.results, scorecard.score, policy, blocked, settings.tolerances,
            model=identity,
        )
    report = build_report(
        run=info,
        settings=settings,
        subject=subject,
        audit=run,
        scorecard=scorecard,
        gate=gate,
        results=waived.results,
        warnings=caught,
        waivers=waived,
        baseline=compared,
    )
    return Audit(report, waived.results, settings)


def _blocked_reason(run: AuditRun, rules: Sequence[type[Rule]]) -> str | None:
    wants_model = any(r.meta.stage is Stage.BEHAVIOURAL for r in rules)
    if wants_model and run.load is not None and run.load.status is LoadStatus.BLOCKED:
        return "blocked by " + run.load.summary()
    return None


def _write_report(
    report: Mapping[str, Any],
    formats: str | Sequence[str],
    directory: Path,
    signing_key: Ed25519PrivateKey | None = None,
) -> list[Path]:
    """Render every format, then write all files atomically: all of them or none.

    ``report.json`` is always among them: it is the source of truth the other formats are
    rendered from, and the one ``mlaudit report`` re-renders. With a key, the envelope signs
    the exact bytes written as report.json and is written with them.
    """
    wanted = (formats,) if isinstance(formats, str) else tuple(formats)
    unknown = [f for f in wanted if f not in FORMATS]
    if unknown:
        raise UsageError(f"unknown report format {unknown[0]!r} (formats: {', '.join(FORMATS)})")
    renderers = [renderer_for(f) for f in dict.fromkeys(("json", *wanted))]
    rendered = {r.filename: r.render(report) for r in renderers}
    if signing_key is not None:
        rendered[ENVELOPE_NAME] = sign_report(
            rendered["report.json"], signing_key, datetime.now(UTC)
        )
    try:
        return write_files_atomically(directory, rendered)
    except OSError as error:
        raise UsageError(f"cannot write the report to {directory}: {error}") from None
