"""Tests for mlaudit.config: layer precedence, file discovery, validation and coercion."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlaudit.config import PROFILES, Settings, load_environment, resolve
from mlaudit.core.errors import ConfigError
from mlaudit.verdict.scoring import FAIL_ON_CHOICES


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def _resolve(tmp_path: Path, environ: dict[str, str] | None = None, cli=None, config_path=None):
    return resolve(cli or {}, config_path, cwd=tmp_path, environ=environ or {})


# --- defaults and precedence -------------------------------------------------------------


def test_defaults_when_nothing_is_configured(tmp_path: Path) -> None:
    settings_ = _resolve(tmp_path)
    assert settings_ == Settings()
    assert settings_.fail_on == "high"
    assert settings_.profile == "standard"
    assert settings_.format == ("json", "html")
    assert settings_.config_file is None


def test_precedence_cli_over_environment_over_file_over_default(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", 'fail_on = "low"\n')
    env = {"MLAUDIT_FAIL_ON": "medium"}
    cli = {"fail_on": "critical"}

    assert _resolve(tmp_path).fail_on == "low"
    assert _resolve(tmp_path, environ=env).fail_on == "medium"
    assert _resolve(tmp_path, environ=env, cli=cli).fail_on == "critical"
    (tmp_path / "mlaudit.toml").unlink()
    assert _resolve(tmp_path).fail_on == "high"
    assert _resolve(tmp_path, cli=cli).fail_on == "critical"


def test_layers_merge_key_by_key(tmp_path: Path) -> None:
    _write(
        tmp_path / "mlaudit.toml",
        'seed = 7\nprofile = "quick"\noutput_dir = "from-file"\nselect = ["MLA1"]\n',
    )
    settings_ = _resolve(
        tmp_path,
        environ={"MLAUDIT_PROFILE": "thorough", "MLAUDIT_SEED": "11"},
        cli={"seed": 42},
    )
    assert settings_.seed == 42  # CLI
    assert settings_.profile == "thorough"  # environment
    assert settings_.output_dir == "from-file"  # file
    assert settings_.select == ("MLA1",)  # file
    assert settings_.fail_on == "high"  # default


def test_cli_values_are_validated_too(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--fail-on"):
        _resolve(tmp_path, cli={"fail_on": "bogus"})
    with pytest.raises(ConfigError, match="--min-score"):
        _resolve(tmp_path, cli={"min_score": 101})


def test_environ_none_reads_process_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("MLAUDIT_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("MLAUDIT_PROFILE", "quick")
    assert resolve({}, None, cwd=tmp_path).profile == "quick"


# --- file discovery ----------------------------------------------------------------------


def test_explicit_config_file_wins_over_discovered_files(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", 'profile = "quick"\n')
    _write(tmp_path / "pyproject.toml", '[tool.mlaudit]\nprofile = "standard"\n')
    explicit = _write(tmp_path / "custom.toml", 'profile = "thorough"\n')
    settings_ = _resolve(tmp_path, config_path=explicit)
    assert settings_.profile == "thorough"
    assert settings_.config_file == str(explicit)


def test_mlaudit_toml_wins_over_pyproject(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", 'profile = "quick"\n')
    _write(tmp_path / "pyproject.toml", '[tool.mlaudit]\nprofile = "thorough"\n')
    settings_ = _resolve(tmp_path)
    assert settings_.profile == "quick"
    assert settings_.config_file == str(tmp_path / "mlaudit.toml")


def test_pyproject_tool_mlaudit_is_used_when_no_mlaudit_toml(tmp_path: Path) -> None:
    _write(
        tmp_path / "pyproject.toml",
        '[project]\nname = "x"\n\n[tool.mlaudit]\nprofile = "thorough"\n\n[tool.other]\nz = 1\n',
    )
    settings_ = _resolve(tmp_path)
    assert settings_.profile == "thorough"
    assert settings_.config_file == str(tmp_path / "pyproject.toml")


def test_pyproject_without_tool_mlaudit_is_not_a_config_file(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n\n[tool.ruff]\nline-length = 1\n')
    settings_ = _resolve(tmp_path)
    assert settings_ == Settings()
    assert settings_.config_file is None


def test_discovery_uses_cwd_argument_not_process_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    project = tmp_path / "project"
    project.mkdir()
    _write(elsewhere / "mlaudit.toml", 'profile = "quick"\n')
    _write(project / "mlaudit.toml", 'profile = "thorough"\n')
    monkeypatch.chdir(elsewhere)
    assert _resolve(project).profile == "thorough"


def test_explicit_pyproject_reads_tool_mlaudit_table(tmp_path: Path) -> None:
    config_dir = tmp_path / "conf"
    config_dir.mkdir()
    pyproject = _write(
        config_dir / "pyproject.toml",
        '[project]\nname = "x"\n\n[tool.mlaudit]\nfail-on = "critical"\nseed = 3\n',
    )
    settings_ = _resolve(tmp_path, config_path=pyproject)
    assert settings_.fail_on == "critical"
    assert settings_.seed == 3
    assert settings_.config_file == str(pyproject)


def test_explicit_pyproject_without_tool_mlaudit_gives_defaults(tmp_path: Path) -> None:
    pyproject = _write(tmp_path / "pyproject.toml", '[project]\nname = "x"\n')
    settings_ = _resolve(tmp_path, config_path=pyproject)
    assert settings_.fail_on == "high"
    # The top-level [project] table must not be read as settings.


def test_explicit_missing_config_file_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        _resolve(tmp_path, config_path=tmp_path / "nope.toml")


def test_explicit_config_path_that_is_a_directory_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "dir.toml").mkdir()
    with pytest.raises(ConfigError):
        _resolve(tmp_path, config_path=tmp_path / "dir.toml")


# --- unknown keys and variables ----------------------------------------------------------


def test_unknown_key_in_mlaudit_toml_names_the_key(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", 'fail_onn = "low"\n')
    with pytest.raises(ConfigError, match="fail_onn"):
        _resolve(tmp_path)


def test_unknown_key_in_pyproject_tool_mlaudit_names_the_key(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", "[tool.mlaudit]\nmin-scroe = 50\n")
    with pytest.raises(ConfigError, match="min-scroe"):
        _resolve(tmp_path)


def test_config_file_key_is_not_settable_from_file(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", 'config_file = "x"\n')
    with pytest.raises(ConfigError, match="config_file"):
        _resolve(tmp_path)


@pytest.mark.parametrize(
    "name", ["MLAUDIT_FAILON", "MLAUDIT_RULES", "MLAUDIT_CONFIG_FILE", "MLAUDIT_", "MLAUDIT_X"]
)
def test_unknown_environment_variable_is_config_error(tmp_path: Path, name: str) -> None:
    with pytest.raises(ConfigError, match=name):
        _resolve(tmp_path, environ={name: "x"})


@pytest.mark.parametrize("name", ["MLAUDIT_KEY_PASSPHRASE", "MLAUDIT_TRACEBACK"])
def test_non_setting_environment_variables_are_ignored(tmp_path: Path, name: str) -> None:
    assert _resolve(tmp_path, environ={name: "anything at all"}) == Settings()


def test_environment_variables_without_prefix_are_ignored(tmp_path: Path) -> None:
    environ = {"PATH": "/bin", "FAIL_ON": "bogus", "MLAUDITFAIL_ON": "bogus", "mlaudit_x": "1"}
    assert _resolve(tmp_path, environ=environ) == Settings()


# --- types and ranges --------------------------------------------------------------------


@pytest.mark.parametrize("value", FAIL_ON_CHOICES)
def test_fail_on_choices_accepted(tmp_path: Path, value: str) -> None:
    assert _resolve(tmp_path, environ={"MLAUDIT_FAIL_ON": value}).fail_on == value


@pytest.mark.parametrize("value", ["", "HIGH", "severe", " high"])
def test_fail_on_invalid_is_config_error(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError, match="fail_on must be one of"):
        _resolve(tmp_path, environ={"MLAUDIT_FAIL_ON": value})


def test_fail_on_invalid_type_in_file(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", "fail_on = 3\n")
    with pytest.raises(ConfigError, match="fail_on"):
        _resolve(tmp_path)


@pytest.mark.parametrize("value", PROFILES)
def test_profile_choices_accepted(tmp_path: Path, value: str) -> None:
    _write(tmp_path / "mlaudit.toml", f'profile = "{value}"\n')
    assert _resolve(tmp_path).profile == value


def test_profile_invalid_is_config_error(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", 'profile = "exhaustive"\n')
    with pytest.raises(ConfigError, match="profile must be one of"):
        _resolve(tmp_path)


@pytest.mark.parametrize(("raw", "expected"), [("0", 0.0), ("100", 100.0), ("72.5", 72.5)])
def test_min_score_in_range_from_environment(tmp_path: Path, raw: str, expected: float) -> None:
    assert _resolve(tmp_path, environ={"MLAUDIT_MIN_SCORE": raw}).min_score == expected


@pytest.mark.parametrize("raw", ["-1", "100.01", "1e9", "nan", "inf", "-inf"])
def test_min_score_out_of_range_is_config_error(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="min_score"):
        _resolve(tmp_path, environ={"MLAUDIT_MIN_SCORE": raw})


def test_min_score_not_a_number_is_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="min_score must be a number"):
        _resolve(tmp_path, environ={"MLAUDIT_MIN_SCORE": "high"})
    _write(tmp_path / "mlaudit.toml", "min_score = [1]\n")
    with pytest.raises(ConfigError, match="min_score must be a number"):
        _resolve(tmp_path)


def test_min_score_from_file(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", "min-score = 80\n")
    assert _resolve(tmp_path).min_score == 80.0
    _write(tmp_path / "mlaudit.toml", "min-score = 101\n")
    with pytest.raises(ConfigError, match="between 0 and 100"):
        _resolve(tmp_path)


def test_seed_integer_from_file_and_environment(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", "seed = 5\n")
    assert _resolve(tmp_path).seed == 5
    assert _resolve(tmp_path, environ={"MLAUDIT_SEED": "-3"}).seed == -3


@pytest.mark.parametrize("raw", ["abc", "1.5", "", "0x10"])
def test_seed_not_integer_in_environment_is_config_error(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="seed must be an integer"):
        _resolve(tmp_path, environ={"MLAUDIT_SEED": raw})


def test_seed_non_integer_string_in_file_is_config_error(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", 'seed = "abc"\n')
    with pytest.raises(ConfigError, match="seed must be an integer"):
        _resolve(tmp_path)


def test_seed_float_in_file_is_config_error(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", "seed = 1.5\n")
    with pytest.raises(ConfigError, match="seed"):
        _resolve(tmp_path)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("1", True),
        ("true", True),
        ("TRUE", True),
        ("Yes", True),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
    ],
)
def test_boolean_strings_in_environment(tmp_path: Path, raw: str, expected: bool) -> None:
    environ = {
        "MLAUDIT_EXIT_ZERO": raw,
        "MLAUDIT_TRUST_MODEL": raw,
        "MLAUDIT_ALLOW_INCOMPLETE": raw,
    }
    settings_ = _resolve(tmp_path, environ=environ)
    assert settings_.exit_zero is expected
    assert settings_.trust_model is expected
    assert settings_.allow_incomplete is expected


@pytest.mark.parametrize("raw", ["", "on", "off", "y", "2", "truee"])
def test_invalid_boolean_strings_are_config_error(tmp_path: Path, raw: str) -> None:
    with pytest.raises(ConfigError, match="exit_zero must be true or false"):
        _resolve(tmp_path, environ={"MLAUDIT_EXIT_ZERO": raw})


def test_booleans_from_file(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", 'exit-zero = true\ntrust_model = "yes"\n')
    settings_ = _resolve(tmp_path)
    assert settings_.exit_zero is True
    assert settings_.trust_model is True


@pytest.mark.parametrize("value", ["1", "1.0", "[true]"])
def test_non_boolean_values_in_file_are_config_error(tmp_path: Path, value: str) -> None:
    _write(tmp_path / "mlaudit.toml", f"allow_incomplete = {value}\n")
    with pytest.raises(ConfigError, match="allow_incomplete must be true or false"):
        _resolve(tmp_path)


def test_string_keys_must_be_strings(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", "output_dir = 5\n")
    with pytest.raises(ConfigError, match="output_dir must be a string"):
        _resolve(tmp_path)


# --- lists -------------------------------------------------------------------------------


def test_comma_separated_environment_lists(tmp_path: Path) -> None:
    settings_ = _resolve(
        tmp_path,
        environ={
            "MLAUDIT_SELECT": "MLA1,MLA7",
            "MLAUDIT_IGNORE": " MLA3 , ,MLA4 ",
            "MLAUDIT_FORMAT": "json,html",
            "MLAUDIT_ALLOW_GLOBALS": "numpy.dtype",
        },
    )
    assert settings_.select == ("MLA1", "MLA7")
    assert settings_.ignore == ("MLA3", "MLA4")
    assert settings_.format == ("json", "html")
    assert settings_.allow_globals == ("numpy.dtype",)


def test_empty_environment_list_gives_empty_tuple(tmp_path: Path) -> None:
    assert _resolve(tmp_path, environ={"MLAUDIT_FORMAT": ""}).format == ()


def test_lists_in_file(tmp_path: Path) -> None:
    _write(
        tmp_path / "mlaudit.toml",
        'select = ["MLA1", " MLA2 "]\nignore = "MLA5,MLA6"\nallow-globals = []\n',
    )
    settings_ = _resolve(tmp_path)
    assert settings_.select == ("MLA1", "MLA2")
    assert settings_.ignore == ("MLA5", "MLA6")
    assert settings_.allow_globals == ()


@pytest.mark.parametrize("value", ["[1, 2]", "5", '["a", 1]', "{a = 1}"])
def test_list_with_wrong_types_is_config_error(tmp_path: Path, value: str) -> None:
    _write(tmp_path / "mlaudit.toml", f"select = {value}\n")
    with pytest.raises(ConfigError, match="select must be a list of strings"):
        _resolve(tmp_path)


# --- hyphenated keys, rules table, TOML errors -------------------------------------------


def test_hyphenated_keys_in_file(tmp_path: Path) -> None:
    _write(
        tmp_path / "mlaudit.toml",
        'fail-on = "medium"\nmin-score = 60\nallow-incomplete = true\n'
        'exit-zero = false\noutput-dir = "out"\ntrust-model = false\n',
    )
    settings_ = _resolve(tmp_path)
    assert settings_.fail_on == "medium"
    assert settings_.min_score == 60.0
    assert settings_.allow_incomplete is True
    assert settings_.output_dir == "out"


def test_invalid_toml_is_config_error(tmp_path: Path) -> None:
    _write(tmp_path / "mlaudit.toml", "fail_on = \n[[[\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        _resolve(tmp_path)


def test_invalid_toml_in_discovered_pyproject_is_config_error(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", "[tool.mlaudit\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        _resolve(tmp_path)


def test_invalid_toml_in_explicit_file_is_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.toml", 'a = "unterminated\n')
    with pytest.raises(ConfigError, match="not valid TOML"):
        _resolve(tmp_path, config_path=path)


def test_non_utf8_config_file_is_config_error(tmp_path: Path) -> None:
    (tmp_path / "mlaudit.toml").write_bytes(b'fail_on = "\xff\xfe"\n')
    with pytest.raises(ConfigError):
        _resolve(tmp_path)


def test_pyproject_with_non_table_tool_is_config_error_or_ignored(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", "tool = 1\n")
    with contextlib.suppress(ConfigError):
        _resolve(tmp_path)


def test_explicit_pyproject_with_non_table_tool_mlaudit_is_config_error(tmp_path: Path) -> None:
    path = _write(tmp_path / "pyproject.toml", "[tool]\nmlaudit = 5\n")
    with pytest.raises(ConfigError):
        _resolve(tmp_path, config_path=path)


def test_rules_table_keys_are_uppercased(tmp_path: Path) -> None:
    _write(
        tmp_path / "mlaudit.toml",
        "[rules.mla101]\nthreshold = 3\n\n[rules.Mla702]\nenabled = false\n",
    )
    settings_ = _resolve(tmp_path)
    assert dict(settings_.rules) == {"MLA101": {"threshold": 3}, "MLA702": {"enabled": False}}


def test_rules_in_pyproject(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", "[tool.mlaudit.rules.mla5]\nlimit = 0.5\n")
    assert dict(_resolve(tmp_path).rules) == {"MLA5": {"limit": 0.5}}


@pytest.mark.parametrize("value", ["5", '"x"', "{mla1 = 3}", "[1]"])
def test_rules_must_be_table_of_tables(tmp_path: Path, value: str) -> None:
    _write(tmp_path / "mlaudit.toml", f"rules = {value}\n")
    with pytest.raises(ConfigError, match="rules must be a table of per-rule tables"):
        _resolve(tmp_path)


def test_error_message_names_origin(tmp_path: Path) -> None:
    _write(tmp_path / "pyproject.toml", '[tool.mlaudit]\nprofile = "x"\n')
    with pytest.raises(ConfigError, match=r"\[tool\.mlaudit\]"):
        _resolve(tmp_path)
    with pytest.raises(ConfigError, match="environment variable MLAUDIT_PROFILE"):
        load_environment({"MLAUDIT_PROFILE": "x"})


# --- property-based ----------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(value=st.text())
def test_any_fail_on_string_resolves_or_raises_config_error(value: str) -> None:
    try:
        result = load_environment({"MLAUDIT_FAIL_ON": value})
    except ConfigError:
        assert value not in FAIL_ON_CHOICES
    else:
        assert result["fail_on"] in FAIL_ON_CHOICES
        assert result["fail_on"] == value


@settings(max_examples=100, deadline=None)
@given(value=st.one_of(st.text(), st.sampled_from(FAIL_ON_CHOICES)))
def test_any_fail_on_string_through_resolve(
    tmp_path_factory: pytest.TempPathFactory, value: str
) -> None:
    cwd = tmp_path_factory.mktemp("cfg")
    try:
        settings_ = resolve({}, None, cwd=cwd, environ={"MLAUDIT_FAIL_ON": value})
    except ConfigError:
        assert value not in FAIL_ON_CHOICES
    else:
        assert settings_.fail_on in FAIL_ON_CHOICES


@settings(max_examples=200, deadline=None)
@given(
    key=st.sampled_from(
        [
            "MLAUDIT_SEED",
            "MLAUDIT_MIN_SCORE",
            "MLAUDIT_EXIT_ZERO",
            "MLAUDIT_SELECT",
            "MLAUDIT_PROFILE",
            "MLAUDIT_TARGET",
            "MLAUDIT_OUTPUT_DIR",
        ]
    ),
    value=st.text(),
)
def test_any_environment_string_resolves_or_raises_config_error(key: str, value: str) -> None:
    with contextlib.suppress(ConfigError):
        load_environment({key: value})


# --- what the user tells the loader about the model ----------------------------------------


def test_model_load_options_from_file_and_cli(tmp_path: Path) -> None:
    _write(
        tmp_path / "mlaudit.toml",
        'model_class = "nets:Mlp"\nmodel_output = "logits"\n'
        "[model_kwargs]\nwidth = 16\nactivation = \"relu\"\n",
    )
    settings_ = _resolve(tmp_path)
    assert settings_.model_class == "nets:Mlp"
    assert settings_.model_output == "logits"
    assert dict(settings_.model_kwargs) == {"width": 16, "activation": "relu"}
    cli = {"model_class": "pkg.nets:build", "model_output": "probabilities"}
    overridden = _resolve(tmp_path, cli=cli)
    assert (overridden.model_class, overridden.model_output) == ("pkg.nets:build", "probabilities")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('model_class = "nets.Mlp"\n', "model_class must be module:callable"),
        ('model_output = "scores"\n', "model_output must be one of logits, probabilities"),
        ("model_kwargs = 3\n", "model_kwargs must be a table"),
    ],
)
def test_bad_model_load_options_are_config_errors(
    tmp_path: Path, text: str, message: str
) -> None:
    _write(tmp_path / "mlaudit.toml", text)
    with pytest.raises(ConfigError, match=message):
        _resolve(tmp_path)
