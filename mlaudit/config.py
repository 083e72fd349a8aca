"""Configuration: CLI > ``MLAUDIT_*`` environment > config file > defaults.

Files: ``--config FILE``, else ``mlaudit.toml``, else ``[tool.mlaudit]`` in ``pyproject.toml``
(both in the working directory). Unknown keys anywhere are an error: a misspelt threshold that
is silently ignored is a gate that silently does not gate.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from mlaudit.core.errors import ConfigError
from mlaudit.core.findings import JsonValue
from mlaudit.core.load_options import ENTRY_POINT, MODEL_OUTPUTS
from mlaudit.isolation import ISOLATION_MODES
from mlaudit.verdict.scoring import FAIL_ON_CHOICES
from mlaudit.verdict.waivers import Waiver, parse_waivers

# The report formats a user may ask for; mlaudit.reports has a renderer for each.
FORMATS = ("json", "html", "sarif", "junit", "md", "cyclonedx")

PROFILES = ("quick", "standard", "thorough")

ENV_PREFIX = "MLAUDIT_"
# Variables with the prefix that are not settings (read by the commands that need them).
ENV_NOT_SETTINGS = frozenset(
    {"MLAUDIT_KEY_PASSPHRASE", "MLAUDIT_TRACEBACK", "MLAUDIT_PII_SALT", "MLAUDIT_CACHE_DIR"}
)


@dataclass(frozen=True)
class Tolerances:
    """How far a metric may move against a baseline before ``diff`` and ``scan --baseline``
    call it a regression (absolute differences of the point estimates).

    Retraining moves these metrics by chance; a tolerance below that noise turns every
    release into a regression, one far above it hides real ones. The defaults suit the
    standard profile's sample sizes; set ``[tool.mlaudit.tolerances]`` for yours.
    """

    membership_auc: float = 0.02
    membership_tpr: float = 0.02
    robust_accuracy: float = 0.05


@dataclass(frozen=True)
class Settings:
    fail_on: str = "high"
    min_score: float | None = None
    allow_incomplete: bool = False
    exit_zero: bool = False
    seed: int = 0
    profile: str = "standard"
    trust_model: bool = False
    # Where the model runs: auto (the strongest isolation available), strict, none.
    isolation: str = "auto"
    select: tuple[str, ...] = ()
    ignore: tuple[str, ...] = ()
    # Rule ids or prefixes that must run: the gate fails when they were skipped or errored.
    require: tuple[str, ...] = ()
    output_dir: str = "mlaudit-report"
    format: tuple[str, ...] = ("json", "html")
    target: str | None = None
    allow_globals: tuple[str, ...] = ()
    vuln_db: str | None = None  # the OSV export MLA601 reads (zip or folder)
    rules: Mapping[str, Mapping[str, JsonValue]] = field(default_factory=dict)
    waivers: tuple[Waiver, ...] = ()
    baseline: str | None = None  # the approved report the gate compares with
    # What the model file cannot say (mlaudit.subject.model_info.LoadOptions).
    model_class: str | None = None  # a PyTorch state dict's architecture, pkg.module:Net
    model_kwargs: Mapping[str, JsonValue] = field(default_factory=dict)
    model_output: str | None = None  # logits | probabilities | regression
    text_column: str | None = None
    tolerances: Tolerances = Tolerances()
    # A Dask scheduler's address (tcp://host:8786), or a local cluster of ``workers``
    # processes, for the work rules fan out (mlaudit.distributed).
    dask_scheduler: str | None = None
    workers: int | None = None
    config_file: str | None = None


_KEYS = {f.name for f in fields(Settings)} - {"config_file"}
_TUPLE_KEYS = {"select", "ignore", "format", "allow_globals", "require"}
_BOOL_KEYS = {"allow_incomplete", "exit_zero", "trust_model"}
# Tables only a file can hold: no environment variable spells them.
_TABLE_KEYS = {"rules", "waivers", "tolerances", "model_kwargs"}


def _file_key(key: str) -> str:
    return key.replace("-", "_")


def _coerce(key: str, value: Any, origin: str) -> Any:
    """Check one value's type and allowed range; ``origin`` names where it came from."""
    if key in _TUPLE_KEYS:
        items = value.split(",") if isinstance(value, str) else value
        if not isinstance(items, list | tuple) or not all(isinstance(i, str) for i in items):
            raise ConfigError(f"{origin}: {key} must be a list of strings")
        values = tuple(i.strip() for i in items if i.strip())
        unknown = [v for v in values if key == "format" and v not in FORMATS]
        if unknown:
            raise ConfigError(
                f"{origin}: unknown format {unknown[0]!r} (formats: {', '.join(FORMATS)})"
            )
        return values
    if key in _BOOL_KEYS:
        if isinstance(value, str):
            lowered = value.lower()
            if lowered not in {"1", "0", "true", "false", "yes", "no"}:
                raise ConfigError(f"{origin}: {key} must be true or false, not {value!r}")
            return lowered in {"1", "true", "yes"}
        if not isinstance(value, bool):
            raise ConfigError(f"{origin}: {key} must be true or false")
        return value
    if key == "seed":
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]+", value.strip()):
            return int(value)
        raise ConfigError(f"{origin}: seed must be an integer, not {value!r}")
    if key == "workers":
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ConfigError(f"{origin}: workers must be a whole number of at least 1")
        return value
    if key == "min_score":
        try:
            score = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{origin}: min_score must be a number, not {value!r}") from None
        if not 0 <= score <= 100:
            raise ConfigError(f"{origin}: min_score must be between 0 and 100")
        return score
    choices = {
        "fail_on": FAIL_ON_CHOICES, "profile": PROFILES, "isolation": ISOLATION_MODES,
        "model_output": MODEL_OUTPUTS,
    }.get(key)
    if choices is not None and value not in choices:
        raise ConfigError(f"{origin}: {key} must be one of {', '.join(choices)}, not {value!r}")
    if key == "rules":
        return _coerce_rules(value, origin)
    if key == "waivers":
        return parse_waivers(value, origin)
    if key == "tolerances":
        return _coerce_tolerances(value, origin)
    if key == "model_kwargs":
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(f"{origin}: model_kwargs must be a table of keyword arguments")
        return dict(value)
    if key == "model_class" and isinstance(value, str) and not ENTRY_POINT.match(value):
        raise ConfigError(
            f"{origin}: model_class must be module:callable (pkg.models:Net), not {value!r}"
        )
    if not isinstance(value, str):
        raise ConfigError(f"{origin}: {key} must be a string")
    return value


def _coerce_rules(value: Any, origin: str) -> dict[str, dict[str, JsonValue]]:
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise ConfigError(f"{origin}: rules must be a table of per-rule tables")
    return {str(rule_id).upper(): dict(options) for rule_id, options in value.items()}


def _coerce_tolerances(value: Any, origin: str) -> Tolerances:
    if not isinstance(value, dict):
        raise ConfigError(f"{origin}: tolerances must be a table")
    known = {f.name for f in fields(Tolerances)}
    for name, number in value.items():
        if name not in known:
            raise ConfigError(f"{origin}: unknown tolerance {name!r} ({', '.join(sorted(known))})")
        if isinstance(number, bool) or not isinstance(number, int | float) or not 0 <= number <= 1:
            raise ConfigError(f"{origin}: tolerance {name} must be a number from 0 to 1")
    return Tolerances(**{name: float(number) for name, number in value.items()})


def _from_mapping(table: Mapping[str, Any], origin: str) -> dict[str, Any]:
    values = {}
    for raw_key, value in table.items():
        key = _file_key(raw_key)
        if key not in _KEYS:
            raise ConfigError(f"{origin}: unknown key {raw_key!r}")
        values[key] = _coerce(key, value, origin)
    return values


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as error:
        raise ConfigError(f"cannot read config file {path}: {error.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as error:
        raise ConfigError(f"config file {path} is not valid TOML: {error}") from None


def _tool_table(path: Path) -> dict[str, Any] | None:
    """``[tool.mlaudit]`` of a pyproject.toml, None when absent, an error when not a table."""
    tool = _read_toml(path).get("tool", {})
    if not isinstance(tool, dict):
        raise ConfigError(f"{path}: 'tool' must be a table")
    table = tool.get("mlaudit")
    if table is not None and not isinstance(table, dict):
        raise ConfigError(f"{path}: [tool.mlaudit] must be a table")
    return table


def load_file(explicit: Path | None, cwd: Path) -> tuple[dict[str, Any], str | None]:
    if explicit is not None:
        if explicit.name == "pyproject.toml":
            table = _tool_table(explicit) or {}
        else:
            table = _read_toml(explicit)
        return _from_mapping(table, str(explicit)), str(explicit)
    dedicated = cwd / "mlaudit.toml"
    if dedicated.is_file():
        return _from_mapping(_read_toml(dedicated), str(dedicated)), str(dedicated)
    pyproject = cwd / "pyproject.toml"
    if pyproject.is_file():
        tool_table = _tool_table(pyproject)
        if tool_table is not None:
            return _from_mapping(tool_table, f"{pyproject} [tool.mlaudit]"), str(pyproject)
    return {}, None


def load_environment(environ: Mapping[str, str]) -> dict[str, Any]:
    values = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name in ENV_NOT_SETTINGS:
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in _KEYS or key in _TABLE_KEYS:
            raise ConfigError(f"unknown environment variable {name}")
        values[key] = _coerce(key, value, f"environment variable {name}")
    return values


def resolve(
    cli: Mapping[str, Any], config_path: Path | None, cwd: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Settings:
    """Merge the layers; ``cli`` holds only the options given on the command line."""
    from_file, file_name = load_file(config_path, cwd or Path.cwd())
    from_env = load_environment(os.environ if environ is None else environ)
    from_cli = {k: _coerce(k, v, f"option --{k.replace('_', '-')}") for k, v in cli.items()}
    merged = {**from_file, **from_env, **from_cli}
    return replace(Settings(), **merged, config_file=file_name)
