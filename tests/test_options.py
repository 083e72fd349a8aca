"""Rule options: declared with their kind and range, validated once by the engine before any rule
runs, and read by rules as typed values."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
from sklearn.linear_model import LogisticRegression

from mlaudit.core.errors import ConfigError
from mlaudit.core.findings import Family, Finding, JsonValue, Severity, Status
from mlaudit.engine.run import BUDGET_OPTION, EngineSettings, configure, load_rules, run_audit
from mlaudit.reports.rule_pages import rule_markdown
from mlaudit.rules.base import OptionKind, Requirement, Rule, RuleContext, RuleMeta, RuleOption
from mlaudit.rules.privacy import ReferenceFreeMembershipInference
from mlaudit.rules.robustness import BlackBoxEvasion
from mlaudit.subject.build import Subject, build_subject
from tests.conftest import Runner, Workspace

ALL_RULES = load_rules()


class TypedProbe(Rule):
    """Reads one option of every kind and records what it got.

    **What it checks**: nothing. **Why it matters**: tests typed option reads.
    **How to fix**: n/a. **Options**: ``count``, ``share``, ``flag``, ``name``, ``grid``,
    ``columns``, ``table``, ``limit``.
    """

    meta = RuleMeta(
        id="TEST950",
        name="Typed probe",
        family=Family.DATA_QUALITY,
        severity=Severity.INFO,
        requires=frozenset({Requirement.ARTIFACT}),
        options=(
            RuleOption("count", 3, "an integer", minimum=1),
            RuleOption("share", 0.5, "a number", minimum=0, maximum=1),
            RuleOption("flag", False, "a boolean"),
            RuleOption("name", "a", "a choice", choices=("a", "b")),
            RuleOption("grid", [0.1], "numbers", kind=OptionKind.NUMBERS, minimum=0),
            RuleOption("columns", [], "strings", kind=OptionKind.STRINGS),
            RuleOption("table", {}, "a table", kind=OptionKind.NUMBER_TABLE, minimum=0),
            RuleOption("limit", None, "nullable", kind=OptionKind.INTEGER, nullable=True),
        ),
    )

    def check(self, ctx: RuleContext) -> Iterator[Finding]:
        ctx.metrics["count"] = ctx.option_int("count")
        ctx.metrics["share"] = ctx.option_float("share")
        ctx.metrics["flag"] = ctx.option_bool("flag")
        ctx.metrics["name"] = ctx.option_str("name")
        ctx.metrics["grid"] = list[JsonValue](ctx.option_floats("grid"))
        ctx.metrics["columns"] = list[JsonValue](ctx.option_strs("columns"))
        ctx.metrics["table"] = dict[str, JsonValue](ctx.option_table("table"))
        ctx.metrics["limit"] = None if ctx.option_is_null("limit") else ctx.option_int("limit")
        ctx.metrics["types"] = {k: type(v).__name__ for k, v in ctx.options.items()}
        return iter(())


@pytest.fixture(scope="module")
def subject(tmp_path_factory: pytest.TempPathFactory) -> Subject:
    path = tmp_path_factory.mktemp("options") / "model.joblib"
    joblib.dump(LogisticRegression().fit([[0.0], [1.0]], [0, 1]), path)
    return build_subject(
        str(path), data=None, train=None, holdout=None, target=None, source=None,
        requirements=[],
    )


def _configure(options: dict[str, dict[str, JsonValue]]) -> None:
    configure(ALL_RULES, EngineSettings(rule_options=options))


# --------------------------------------------------------------------------- declarations


def test_every_registered_rule_declares_defaults_that_validate() -> None:
    configured = configure(ALL_RULES, EngineSettings())
    assert set(configured) == {rule.meta.id for rule in ALL_RULES}
    for rule in ALL_RULES:
        for option in rule.meta.options:
            assert option.parse(option.default) == option.default, (rule.meta.id, option.name)
            assert option.type_text  # every option has a kind, declared or inferred
        assert configured[rule.meta.id].budget_s == 300.0  # the standard profile's


def test_a_plugin_option_takes_its_kind_from_its_default() -> None:
    assert RuleOption("sleep_s", 30.0, "how long").value_kind is OptionKind.NUMBER
    assert RuleOption("label", "x", "echoed").value_kind is OptionKind.STRING
    assert RuleOption("n", 3, "count").value_kind is OptionKind.INTEGER
    assert RuleOption("on", True, "flag").value_kind is OptionKind.BOOLEAN


@pytest.mark.parametrize("default", [None, [], {}])
def test_a_default_that_does_not_show_its_kind_must_declare_it(default: JsonValue) -> None:
    with pytest.raises(TypeError, match="declare kind"):
        RuleOption("x", default, "ambiguous")


def test_a_default_outside_its_own_declaration_fails_at_declaration() -> None:
    with pytest.raises(TypeError, match="option x: its default must be an integer >= 1, not 0"):
        RuleOption("x", 0, "count", minimum=1)


# --------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("options", "message"),
    [
        # MLA301: out of range, wrong kind, unknown
        ({"MLA301": {"fpr_levels": [2]}},
         "option fpr_levels for rule MLA301 must be a list of numbers in (0, 1), not [2]"),
        ({"MLA301": {"confidence": 1.0}},
         "option confidence for rule MLA301 must be a number in (0, 1), not 1.0"),
        ({"MLA301": {"bootstrap": 99}},
         "option bootstrap for rule MLA301 must be an integer >= 100, not 99"),
        ({"MLA301": {"bootstrap": 500.0}},
         "option bootstrap for rule MLA301 must be an integer >= 100, not 500.0"),
        ({"MLA301": {"max_row": 5}}, "unknown option 'max_row' for rule MLA301"),
        # MLA401: was a rule error (exit 1), now a configuration error like MLA301's
        ({"MLA401": {"min_score": 1.5}},
         "option min_score for rule MLA401 must be a number in [0, 1], not 1.5"),
        ({"MLA401": {"entities": ["EMAIL_ADDRESS", "SHOE_SIZE"]}},
         "option entities for rule MLA401 must be a list of strings, each one of"),
        ({"MLA401": {"sample_rows": -1}},
         "option sample_rows for rule MLA401 must be an integer in [0, 1000000000], not -1"),
        # MLA201
        ({"MLA201": {"epsilon": "big"}},
         "option epsilon for rule MLA201 must be a number >= 0, not 'big'"),
        ({"MLA201": {"epsilon": -0.1}},
         "option epsilon for rule MLA201 must be a number >= 0, not -0.1"),
        ({"MLA201": {"norms": ["linf", "l3"]}},
         "option norms for rule MLA201 must be a list of strings, each one of linf, l2"),
        ({"MLA201": {"epsilons": []}},
         "option epsilons for rule MLA201 must be a list of numbers > 0, at least 1 long"),
        ({"MLA201": {"feature_epsilon": {"lead": -1}}},
         "option feature_epsilon for rule MLA201 must be a table of numbers >= 0"),
        ({"MLA201": {"use_bound": 1}},
         "option use_bound for rule MLA201 must be true or false, not 1"),
        ({"MLA201": {"queries": True}},
         "option queries for rule MLA201 must be an integer >= 0, not True"),
        ({"MLA201": {"epsilon": float("nan")}},
         "option epsilon for rule MLA201 must be a number >= 0, not nan"),
        # the engine's own option, on any rule
        ({"MLA201": {"budget_s": 0}},
         "option budget_s for rule MLA201 must be a number > 0 or null, not 0"),
        ({"MLA101": {"budget_s": "1m"}},
         "option budget_s for rule MLA101 must be a number > 0 or null, not '1m'"),
        # a table for a rule that does not exist
        ({"MLA999": {}}, "configuration names unknown rule MLA999 under rules"),
    ],
)
def test_bad_options_are_configuration_errors_naming_rule_option_and_range(
    options: dict[str, dict[str, JsonValue]], message: str
) -> None:
    with pytest.raises(ConfigError) as raised:
        _configure(options)
    assert str(raised.value).startswith(message)


def test_valid_overrides_are_merged_over_defaults_and_normalised() -> None:
    configured = configure(
        [BlackBoxEvasion, ReferenceFreeMembershipInference],
        EngineSettings(
            profile="quick",
            rule_options={
                "MLA201": {"epsilon": 1, "epsilons": [1, 0.5], "budget_s": 7},
                "MLA301": {"bootstrap": 200},
            },
        ),
    )
    black_box = configured["MLA201"]
    assert black_box.options["epsilon"] == 1.0
    assert isinstance(black_box.options["epsilon"], float)  # a TOML integer for a number
    assert black_box.options["epsilons"] == [1.0, 0.5]
    assert black_box.options["norms"] == ["linf", "l2"]  # the default, untouched
    assert "budget_s" not in black_box.options
    assert black_box.budget_s == 7.0
    assert configured["MLA301"].options["bootstrap"] == 200
    assert configured["MLA301"].budget_s == 60.0  # the quick profile's


def test_tables_of_installed_rules_that_were_not_selected_are_not_read() -> None:
    # Deselected rules are never imported, so their tables cannot be checked; they are not
    # an error either (a shared configuration names every rule a project uses).
    configure([BlackBoxEvasion], EngineSettings(rule_options={"MLA401": {"min_score": 9}}))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"profile": "fast"}, "profile must be one of quick, standard, thorough, not 'fast'"),
        ({"isolation": "some"}, "isolation must be one of auto, strict, none, not 'some'"),
    ],
)
def test_engine_settings_are_validated(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        EngineSettings(**settings)  # type: ignore[arg-type]


def test_options_are_validated_before_any_rule_runs(subject: Subject) -> None:
    ran: list[str] = []

    class Recorder(TypedProbe):
        meta = RuleMeta(
            id="TEST951", name="Records", family=Family.DATA_QUALITY,
            severity=Severity.INFO, requires=frozenset({Requirement.ARTIFACT}),
        )

        def check(self, ctx: RuleContext) -> Iterator[Finding]:
            ran.append(ctx.meta.id)
            return iter(())

    settings = EngineSettings(rule_options={"TEST950": {"count": 0}})
    with pytest.raises(ConfigError, match="option count for rule TEST950"):
        run_audit(subject, [Recorder, TypedProbe], settings)
    assert ran == []


# --------------------------------------------------------------------------- typed reads


def test_rules_read_typed_values(subject: Subject) -> None:
    overrides: dict[str, JsonValue] = {
        "count": 5, "share": 1, "flag": True, "name": "b", "grid": [2, 0.5],
        "columns": ["x"], "table": {"x": 1}, "limit": 4,
    }
    settings = EngineSettings(rule_options={"TEST950": overrides})
    [result] = run_audit(subject, [TypedProbe], settings).results
    assert result.status is Status.PASSED
    metrics = dict(result.metrics)
    assert metrics["share"] == 1.0
    assert metrics["grid"] == [2.0, 0.5]
    assert metrics["table"] == {"x": 1.0}
    assert metrics["limit"] == 4
    assert metrics["types"] == {
        "count": "int", "share": "float", "flag": "bool", "name": "str", "grid": "list",
        "columns": "list", "table": "dict", "limit": "int",
    }
    [default] = run_audit(subject, [TypedProbe], EngineSettings()).results
    assert dict(default.metrics)["limit"] is None


def test_reading_an_option_as_another_kind_is_a_rule_bug(subject: Subject) -> None:
    class Misreads(TypedProbe):
        def check(self, ctx: RuleContext) -> Iterator[Finding]:
            ctx.option_float("count")  # declared an integer
            return iter(())

    [result] = run_audit(subject, [Misreads], EngineSettings()).results
    assert result.status is Status.ERROR
    assert result.reason == "TypeError: TEST950 declares no number option count"


# --------------------------------------------------------------------------- CLI and docs


@pytest.mark.parametrize(
    "table",
    ["[rules.MLA301]\nconfidence = 1.5\n", "[rules.MLA401]\nmin_score = 1.5\n"],
)
def test_out_of_range_options_exit_2_without_a_report(
    run_cli: Runner, workspace: Workspace, tmp_path: Path, table: str
) -> None:
    config = tmp_path / "mlaudit.toml"
    config.write_text(table)
    rule_id = table[len("[rules.") : len("[rules.MLA301")]
    result = run_cli(
        "scan", workspace.rf_joblib, "--train", workspace.train, "--holdout", workspace.holdout,
        "--target", "target", "--select", rule_id, "--config", config,
    )
    assert result.exit_code == 2
    assert f"for rule {rule_id} must be a number in" in result.stderr
    assert not (result.output_dir / "report.json").exists()


def test_rule_pages_show_each_options_type_and_range() -> None:
    page = rule_markdown(BlackBoxEvasion)
    assert "| option | type | accepted | default | meaning |" in page
    assert "| `epsilons` | list of numbers | > 0; at least 1 item | " in page
    assert "| `norms` | list of strings | linf, l2; at least 1 item | " in page
    assert "| `use_bound` | boolean | - | `true` |" in page
    assert BUDGET_OPTION.expected == "a number > 0 or null"
