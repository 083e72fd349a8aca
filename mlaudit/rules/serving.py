"""MLA8xx: serving readiness — what the model costs to serve, and how its endpoint is exposed."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pandas as pd

from mlaudit.core.findings import Confidence, Family, Finding, JsonValue, Location, Severity
from mlaudit.core.stats import Interval
from mlaudit.rules.base import (
    OptionKind,
    Requirement,
    Rule,
    RuleContext,
    RuleMeta,
    RuleOption,
    RuleSkipped,
)
from mlaudit.rules.code import BANDIT_OPTIONS, bandit_findings, bandit_run_for
from mlaudit.rules.controls import SERVING_CAPACITY, SERVING_EXPOSURE
from mlaudit.serving.resources import load_memory
from mlaudit.serving.timing import (
    LatencyProfile,
    Throughput,
    batch_throughput,
    single_row_latency,
)
from mlaudit.subject.model_info import LoadedModel

BATCH_SIZES = (1, 32, 1024)
# Seconds of single-row timing per profile; each batch size gets a fifth of it.
PROFILE_LATENCY_S = {"quick": 3.0, "standard": 10.0, "thorough": 30.0}
# Distinct rows the single-row calls cycle through: enough to cover the data's variety
# (tree depths, branch paths) without building thousands of one-row frames.
_DISTINCT_ROWS = 512
_MB = 1e6


def _limit(name: str, help_text: str) -> RuleOption:
    return RuleOption(
        name, None, help_text, kind=OptionKind.NUMBER, minimum=0, exclusive_minimum=True,
        nullable=True,
    )


class ServingProfile(Rule):
    """Serving profile: latency, throughput, memory, size and load time.

    **What it checks**: how the model serves, measured in the isolated worker that loaded it:
    single-row latency (p50, p95, p99, each with a 95% distribution-free interval from order
    statistics), throughput in rows per second at batch sizes 1, 32 and 1,024 (and
    ``throughput_batch_size``), the memory the load took, the load time and the artifact's
    size. Rows are drawn from the data sample (``--data``, else holdout, else train); one-row
    frames are built before timing, so only the model's predict is timed, with the garbage
    collector paused as ``timeit`` does (a collection in the audit's worker walks mlaudit's
    objects, not the server's). After a warm-up,
    single-row timings are taken in doubling rounds until the p99's interval is within
    ``p99_tolerance`` of the estimate or ``latency_budget_s`` is spent (``converged`` says
    which). Load time is the loader's wall time in the freshly forked worker, where mlaudit's
    own imports (numpy, pandas, scikit-learn) are already in memory: a new interpreter also
    pays for importing them. Load memory is the growth of the peak resident set during the
    load (the kernel's high-water mark, which a fork resets), or, where the process had
    peaked higher before the load (``--isolation none``), the net growth of its resident set
    (``load_memory_method`` says which). With no threshold set, the
    rule reports its measurements and passes; each threshold set turns its measurement into a
    gate, with a finding at ``severity`` when it is exceeded (high confidence when the whole
    interval is beyond the limit).

    **Why it matters**: a model that passes every quality check can still miss its latency
    objective, fall short of the traffic it must carry, or not fit the memory of the
    container it ships in. Measured at release, the figures size the deployment and set its
    request limits; gated, they stop a slower or larger model from replacing a faster one.

    **How to fix**: for latency, use fewer or shallower trees, a smaller network, or a
    compiled runtime (ONNX Runtime, treelite); for throughput, batch requests (compare the
    batch sizes); for memory and load time, prune or quantise the model, or store it in a
    format that maps rather than unpickles (ONNX, safetensors). Or raise the limit if the
    service's objective changed.

    **Options**: ``max_p99_ms``, the largest single-row p99 latency accepted in milliseconds;
    ``min_rows_per_s``, the least throughput accepted at ``throughput_batch_size`` (1,024)
    rows per batch; ``max_memory_mb``, the most memory the load may take in MB (all three
    null: report only); ``severity`` (medium) of a finding; ``p99_tolerance`` (0.02), the
    relative half-width of the p99 interval at which timing stops; ``latency_budget_s``
    (null: 3 s quick, 10 s standard, 30 s thorough), the seconds spent timing single rows.
    """

    meta = RuleMeta(
        id="MLA801",
        name="Serving profile",
        family=Family.SERVING,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.MODEL, Requirement.DATA}),
        options=(
            _limit("max_p99_ms", "largest single-row p99 latency accepted, in ms (null: none)"),
            _limit("min_rows_per_s", "least rows per second accepted at throughput_batch_size "
                   "(null: none)"),
            _limit("max_memory_mb", "most memory the model's load may take, in MB (null: none)"),
            RuleOption(
                "severity", "medium", "severity of a finding when a limit is exceeded",
                kind=OptionKind.STRING, choices=tuple(s.value for s in Severity),
            ),
            RuleOption(
                "throughput_batch_size", 1024, "batch size min_rows_per_s is judged at",
                kind=OptionKind.INTEGER, minimum=1, maximum=1 << 16,
            ),
            RuleOption(
                "p99_tolerance", 0.02,
                "stop timing when the p99's 95% interval is within this share of it",
                kind=OptionKind.NUMBER, minimum=0, maximum=1, exclusive_minimum=True,
            ),
            _limit("latency_budget_s", "seconds of single-row timing (null: the profile's)"),
        ),
        controls=SERVING_CAPACITY,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        assert ctx.model is not None
        assert ctx.subject.sample is not None
        model = ctx.model
        rng = ctx.rng()
        features = model.select_features(ctx.subject.sample.features).reset_index(drop=True)
        if features.empty:
            raise RuleSkipped("the data sample has no rows to time the model on")
        budget = (
            PROFILE_LATENCY_S[ctx.profile] if ctx.option_is_null("latency_budget_s")
            else ctx.option_float("latency_budget_s")
        )
        # Single rows, then the batch sizes at a fifth each: all within the rule's own budget.
        budget = min(budget, (ctx.deadline - time.monotonic()) / 3)
        picks = rng.choice(len(features), min(len(features), _DISTINCT_ROWS), replace=False)
        rows = [features.iloc[[int(i)]] for i in picks]
        ctx.progress(f"timing single rows for up to {budget:g} s")
        latency = single_row_latency(
            lambda i: model.predictor(rows[i]),
            rng.integers(0, len(rows), size=len(rows) * 8).tolist(),
            tolerance=ctx.option_float("p99_tolerance"),
            budget_s=budget,
            check_budget=ctx.check_budget,
        )
        judged_size = ctx.option_int("throughput_batch_size")
        throughputs = [
            _throughput(ctx, model, features, size=size, budget_s=budget / 5, rng=rng)
            for size in sorted({*BATCH_SIZES, judged_size})
        ]
        _count_queries(model, latency.calls + latency.warmup_calls, throughputs)
        ctx.metrics.update(_metrics(ctx, latency, throughputs))
        ctx.metrics["rows_sampled"] = len(rows)
        yield from _over_limits(ctx, latency.at(99), throughputs, judged_size)


def _throughput(
    ctx: RuleContext,
    model: LoadedModel,
    features: pd.DataFrame,
    *,
    size: int,
    budget_s: float,
    rng: np.random.Generator,
) -> Throughput:
    batch = features.iloc[rng.integers(0, len(features), size)].reset_index(drop=True)
    ctx.progress(f"timing batches of {size} rows")
    return batch_throughput(
        lambda: model.predictor(batch), size, budget_s=budget_s, check_budget=ctx.check_budget
    )


def _count_queries(model: LoadedModel, single_rows: int, throughputs: list[Throughput]) -> None:
    """The rows timed go into the rule's query count: the predictor was called directly, so
    that selecting feature columns per call (``LoadedModel.predict``) is not timed with it."""
    # Each batch size ran one warm-up call beside its timed repetitions.
    model.counter.rows += single_rows + sum(
        t.batch_size * (t.repetitions + 1) for t in throughputs
    )


def _metrics(
    ctx: RuleContext, latency: LatencyProfile, throughputs: list[Throughput]
) -> dict[str, JsonValue]:
    """Headline figures at the top (the report's key metrics), details below."""
    assert ctx.model is not None
    metrics = latency.percentile_metrics()
    for throughput in throughputs:
        metrics[f"rows_per_s_batch_{throughput.batch_size}"] = throughput.rows_per_s.as_metric()
    size = ctx.subject.model.size
    metrics["artifact_mb"] = round(size / _MB, 3) if size is not None else None
    cost = ctx.model.load_cost
    memory = load_memory(cost) if cost is not None else None
    metrics["load_s"] = round(cost.seconds, 4) if cost is not None else None
    metrics["load_memory_mb"] = round(memory.bytes / _MB, 2) if memory is not None else None
    metrics["load_memory_method"] = (
        memory.description if memory is not None
        else "not measured: the model was given in memory" if cost is None
        else "not measured: no resident-set reading on this platform"
    )
    metrics["latency"] = latency.as_metric()
    metrics["throughput"] = [t.as_metric() for t in throughputs]
    return metrics


def _over_limits(
    ctx: RuleContext, p99: Interval, throughputs: list[Throughput], judged_size: int
) -> Iterator[Finding]:
    severity = Severity(ctx.option_str("severity"))
    location = Location(str(ctx.subject.model.path or ctx.subject.model.reference))
    if not ctx.option_is_null("max_p99_ms"):
        limit = ctx.option_float("max_p99_ms")
        if p99.estimate > limit:
            yield ctx.finding(
                key="p99",
                title="Single-row p99 latency over its limit",
                message=f"p99 latency {p99.estimate:.3g} ms (95% interval {p99.low:.3g}-"
                f"{p99.high:.3g} ms) is over the {limit:g} ms limit.",
                location=location,
                severity=severity,
                confidence=Confidence.HIGH if p99.low > limit else Confidence.MEDIUM,
                evidence={"p99_ms": p99.as_metric(), "max_p99_ms": limit},
            )
    if not ctx.option_is_null("min_rows_per_s"):
        limit = ctx.option_float("min_rows_per_s")
        rate = next(t for t in throughputs if t.batch_size == judged_size).rows_per_s
        if rate.estimate < limit:
            yield ctx.finding(
                key="throughput",
                title="Throughput under its limit",
                message=f"{rate.estimate:.4g} rows/s in batches of {judged_size} (95% interval "
                f"{rate.low:.4g}-{rate.high:.4g}) is under the {limit:g} rows/s limit.",
                location=location,
                severity=severity,
                confidence=Confidence.HIGH if rate.high < limit else Confidence.MEDIUM,
                evidence={"rows_per_s": rate.as_metric(), "batch_size": judged_size,
                          "min_rows_per_s": limit},
            )
    memory_mb = ctx.metrics.get("load_memory_mb")
    if not ctx.option_is_null("max_memory_mb") and not isinstance(memory_mb, float):
        # A limit that cannot be checked fails closed: the gate asked for a number.
        yield ctx.finding(
            key="memory",
            title="Model memory not measured",
            message=f"max_memory_mb is set but the load's memory was "
            f"{ctx.metrics['load_memory_method']}.",
            location=location,
            severity=severity,
            confidence=Confidence.LOW,
            evidence={"max_memory_mb": ctx.option_float("max_memory_mb")},
        )
    elif not ctx.option_is_null("max_memory_mb") and isinstance(memory_mb, float):
        limit = ctx.option_float("max_memory_mb")
        if memory_mb > limit:
            yield ctx.finding(
                key="memory",
                title="Model memory over its limit",
                message=f"loading the model took {memory_mb:g} MB "
                f"({ctx.metrics['load_memory_method']}), over the {limit:g} MB limit.",
                location=location,
                severity=severity,
                # One measurement, no interval: a resident set is counted, not sampled.
                evidence={"load_memory_mb": memory_mb, "max_memory_mb": limit},
            )


class ServingCode(Rule):
    """Model serving code.

    **What it checks**: the source tree given with ``--source`` for model endpoints exposed
    unsafely, with mlaudit's bandit serving tests (ids ``MLS01``-``MLS05``, registered with
    bandit so a plain ``bandit -r`` reports them too). Endpoints are FastAPI and Flask routes,
    BentoML APIs, KServe ``Model`` methods and MLflow ``PythonModel.predict``:
    ``MLS01`` an endpoint that runs a model with no authentication in its route
    (``dependencies=``), decorators (``@login_required``), parameters (``Depends``/``Security``
    of an auth function) or body (an ``Authorization`` header), and no authenticating
    middleware or request hook in the module (a KServe ``predict``, which the framework's
    server exposes, with low confidence; MLflow's is left to the deployment);
    ``MLS02`` debug mode or auto-reload (``app.run(debug=True)``, ``app.debug = True``,
    ``FastAPI(debug=True)``, ``uvicorn.run(reload=True)``);
    ``MLS03`` a server on every interface (``host="0.0.0.0"``) without TLS (no
    ``ssl_keyfile``/``ssl_certfile``, no ``ssl_context``; waitress has no TLS);
    ``MLS04`` a model file loaded in a request handler (``joblib.load``, ``torch.load``,
    ``pickle.load``, ``mlflow.pyfunc.load_model``, ``from_pretrained``...), unless under an
    ``if model is None`` lazy initialisation;
    ``MLS05`` unbounded requests: a Flask application without ``MAX_CONTENT_LENGTH``, a
    FastAPI body read as raw ``bytes``/``UploadFile``/``request.body()`` with no size check,
    a list field of a pydantic request model without ``max_length``.
    The checks read the syntax tree: nothing is imported, no framework needs installing.
    Findings point at file, line and column; ``# nosec MLS01`` silences one line.

    **Why it matters**: the endpoint is the model's attack surface. An open endpoint lets
    anyone query the model until they have copied it (model extraction) or learnt its
    training data; debug mode runs code sent to it (Werkzeug) or leaks stack traces; clear
    text exposes inputs and predictions; a model loaded per request multiplies latency and
    memory; an unbounded request is a one-request denial of service.

    **How to fix**: add an authentication dependency (FastAPI ``Depends``/``Security``),
    decorator or middleware, or serve behind an authenticating gateway; remove debug and
    reload flags from serving code; bind to 127.0.0.1 behind a TLS-terminating proxy or pass
    the certificate and key; load the model once at start-up (module level, a lifespan
    handler, KServe's ``load``, MLflow's ``load_context``); set ``MAX_CONTENT_LENGTH``, check
    the body's size, and give list fields ``Field(max_length=...)``.

    **Options**: ``config`` a bandit configuration file to use instead of the tree's own (its
    ``skips`` may turn these tests off like any bandit test); ``ignore_nosec`` (false)
    reports lines marked ``# nosec`` as well.
    """

    meta = RuleMeta(
        id="MLA802",
        name="Model serving code",
        family=Family.SERVING,
        severity=Severity.MEDIUM,
        requires=frozenset({Requirement.SOURCE}),
        extra="code",
        extra_modules=("bandit",),
        options=BANDIT_OPTIONS,
        controls=SERVING_EXPOSURE,
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        from mlaudit.serving.bandit_tests import SERVING_TESTS, registered_with_bandit

        run = bandit_run_for(ctx)  # imports bandit, which loads its plugins
        if not registered_with_bandit():
            raise RuntimeError(
                "bandit did not load mlaudit's serving tests (bandit.plugins entry points): "
                "reinstall mlaudit"
            )
        yield from bandit_findings(
            ctx, (i for i in run.issues if i.test_id in SERVING_TESTS), False
        )
