"""The rule interface: metadata, the context a rule runs in, and how it reports.

A rule is a class with ``meta`` and ``check(ctx)``; its docstring is its documentation, with
the sections *What it checks*, *Why it matters*, *How to fix* and *Options*.
"""

from __future__ import annotations

import abc
import enum
import math
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, TypeGuard, TypeVar

import numpy as np

from mlaudit.core.delegation import Delegate
from mlaudit.core.findings import (
    Confidence,
    Family,
    Finding,
    JsonValue,
    Location,
    Severity,
    fingerprint,
)
from mlaudit.core.runcache import CacheKey, RunCache
from mlaudit.core.stats import derived_rng
from mlaudit.scanners.sniff import ModelFormat
from mlaudit.subject.build import Subject
from mlaudit.subject.model_info import LoadedModel

T = TypeVar("T")




class Requirement(enum.Enum):
    ARTIFACT = "artifact"
    MODEL = "model"
    DATA = "data"
    LABELS = "labels"
    TRAIN_HOLDOUT = "train+holdout"
    SOURCE = "source"
    REQUIREMENTS = "requirements"
    # A dependency set: requirement files, or the running environment's distributions (--env).
    DEPENDENCIES = "dependencies"


class Stage(enum.Enum):
    """Pipeline order: artifact rules before the load gate, behavioural after, static last."""

    ARTIFACT = 0
    BEHAVIOURAL = 1
    STATIC = 2


class OptionKind(enum.Enum):
    """What an option's value is. Lists and tables hold values of one kind."""

    INTEGER = "integer"
    NUMBER = "number"
    BOOLEAN = "boolean"
    STRING = "string"
    NUMBERS = "list of numbers"
    STRINGS = "list of strings"
    NUMBER_TABLE = "table of numbers"


_ARTICLES = {OptionKind.INTEGER: "an integer", OptionKind.NUMBER: "a number"}


class OptionValueError(ValueError):
    """A value the option does not accept; the message says what it accepts."""


@dataclass(frozen=True)
class RuleOption:
    """One option of a rule: its default, its help, and the values it accepts.

    ``kind`` may be left out when the default shows it (a plugin's ``RuleOption("n", 3, ...)``
    is an integer); a default of ``None`` or ``[]`` needs it. ``minimum`` and ``maximum``
    bound a number, or every number of a list or table (``exclusive_*`` leaves the bound
    itself out); ``choices`` lists the strings a string, or every string of a list, may be;
    ``min_items`` is the shortest list accepted; ``nullable`` admits ``None`` (which a TOML
    file cannot write: null is a default only a library caller can restore). The default
    must satisfy the declaration: a rule that breaks its own fails when it is imported.
    """

    name: str
    default: JsonValue
    help: str
    kind: OptionKind | None = None
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    choices: tuple[str, ...] = ()
    min_items: int = 0
    nullable: bool = False

    def __post_init__(self) -> None:
        try:
            self.parse(self.default)
        except OptionValueError as error:
            raise TypeError(f"option {self.name}: its default {error}") from None

    @property
    def value_kind(self) -> OptionKind:
        """The declared kind, else the default's."""
        if self.kind is not None:
            return self.kind
        default = self.default
        if isinstance(default, bool):
            return OptionKind.BOOLEAN
        if isinstance(default, int):
            return OptionKind.INTEGER
        if isinstance(default, float):
            return OptionKind.NUMBER
        if isinstance(default, str):
            return OptionKind.STRING
        if isinstance(default, list) and default and all(isinstance(v, str) for v in default):
            return OptionKind.STRINGS
        if isinstance(default, list) and default and all(_is_number(v) for v in default):
            return OptionKind.NUMBERS
        raise TypeError(
            f"option {self.name}: the kind of its default {default!r} is ambiguous; declare kind"
        )

    def parse(self, value: JsonValue) -> JsonValue:
        """``value`` as the rule reads it (a number of a number kind as a float), or
        :class:`OptionValueError` saying what the option accepts."""
        if value is None and self.nullable:
            return None
        parsed = self._parsed(value)
        if parsed is None:
            raise OptionValueError(f"must be {self.expected}, not {value!r}")
        return parsed

    def _parsed(self, value: JsonValue) -> JsonValue:
        """The accepted form of ``value``, None when it is not accepted."""
        kind = self.value_kind
        if kind is OptionKind.BOOLEAN:
            return value if isinstance(value, bool) else None
        if kind is OptionKind.INTEGER:
            whole = isinstance(value, int) and not isinstance(value, bool)
            return value if whole and self._number(value) is not None else None
        if kind is OptionKind.NUMBER:
            return self._number(value)
        if kind is OptionKind.STRING:
            return value if isinstance(value, str) and self._chosen(value) else None
        if kind is OptionKind.NUMBER_TABLE:
            if not isinstance(value, dict):
                return None
            table: dict[str, JsonValue] = {str(k): self._number(v) for k, v in value.items()}
            return None if None in table.values() else table
        if not isinstance(value, list) or len(value) < self.min_items:
            return None
        if kind is OptionKind.STRINGS:
            chosen = all(isinstance(v, str) and self._chosen(v) for v in value)
            return list(value) if chosen else None
        numbers: list[JsonValue] = [self._number(v) for v in value]
        return None if None in numbers else numbers

    def _number(self, value: JsonValue) -> float | None:
        """``value`` as a float when it is a finite number within the bounds."""
        if not _is_number(value) or not math.isfinite(value):
            return None
        low, high = self.minimum, self.maximum
        if low is not None and (value <= low if self.exclusive_minimum else value < low):
            return None
        if high is not None and (value >= high if self.exclusive_maximum else value > high):
            return None
        return float(value)

    def _chosen(self, text: str) -> bool:
        return not self.choices or text in self.choices

    @property
    def type_text(self) -> str:
        """The kind in words: ``integer``, ``list of numbers``, ``string or null``."""
        return self.value_kind.value + (" or null" if self.nullable else "")

    @property
    def bounds_text(self) -> str:
        """The bounds of a number: ``>= 1``, ``(0, 1)``, ``[0, 64]``; empty when unbounded."""
        low, high = self.minimum, self.maximum
        if low is not None and high is not None:
            opening = "(" if self.exclusive_minimum else "["
            closing = ")" if self.exclusive_maximum else "]"
            return f"{opening}{_plain(low)}, {_plain(high)}{closing}"
        if low is not None:
            return f"{'>' if self.exclusive_minimum else '>='} {_plain(low)}"
        if high is not None:
            return f"{'<' if self.exclusive_maximum else '<='} {_plain(high)}"
        return ""

    @property
    def range_text(self) -> str:
        """Which values of the kind are accepted, for the rule pages; empty when any is."""
        parts = [self.bounds_text, ", ".join(self.choices)]
        if self.min_items:
            parts.append(f"at least {self.min_items} item{'s' if self.min_items > 1 else ''}")
        return "; ".join(part for part in parts if part)

    @property
    def expected(self) -> str:
        """What the option accepts, as an error message says it: ``an integer >= 1``."""
        kind = self.value_kind
        if kind is OptionKind.BOOLEAN:
            text = "true or false"
        elif kind is OptionKind.STRING and self.choices:
            text = "one of " + ", ".join(self.choices)
        else:
            text = _ARTICLES.get(kind, "a " + kind.value)
            bounds = self.bounds_text
            if bounds:
                text += f" in {bounds}" if bounds[0] in "([" else f" {bounds}"
            if self.choices:
                text += ", each one of " + ", ".join(self.choices)
            if self.min_items:
                text += f", at least {self.min_items} long"
        return text + (" or null" if self.nullable else "")


def _plain(number: float) -> str:
    """A bound as a user would write it: 10000000, not 1e+07."""
    return str(int(number)) if float(number).is_integer() else f"{number:g}"


def _is_number(value: object) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True)
class RuleMeta:
    id: str
    name: str
    family: Family
    severity: Severity
    requires: frozenset[Requirement]
    formats: frozenset[ModelFormat] | None = None
    extra: str | None = None
    extra_modules: tuple[str, ...] = ()
    options: tuple[RuleOption, ...] = ()
    # Control ids (mlaudit.rules.controls) this rule's result is evidence for; a third-party rule
    # may name ids the catalogue does not know, which the report lists without a title.
    controls: tuple[str, ...] = ()
    # The rule queries the model when one loads (then it runs in the model worker) and runs
    # on the data alone when none does, saying so in its result; ``requires`` keeps MODEL out.
    uses_model_if_loaded: bool = False

    @property
    def stage(self) -> Stage:
        if Requirement.MODEL in self.requires:
            return Stage.BEHAVIOURAL
        if self.requires & {
            Requirement.SOURCE, Requirement.REQUIREMENTS, Requirement.DEPENDENCIES
        }:
            return Stage.STATIC
        if Requirement.ARTIFACT in self.requires:
            return Stage.ARTIFACT
        return Stage.BEHAVIOURAL


class RuleSkipped(Exception):
    """Raised by ``check`` when the rule finds at run time that it does not apply."""


class BudgetExceeded(Exception):
    pass


def _silent(_: str) -> None:
    """The default progress sink: rules run outside the CLI report progress to nobody."""


@dataclass
class RuleContext:
    """Everything one rule may read, and where it records metrics."""

    meta: RuleMeta
    subject: Subject
    model: LoadedModel | None
    options: Mapping[str, JsonValue]
    seed: int
    profile: str
    deadline: float
    metrics: dict[str, JsonValue] = field(default_factory=dict)
    # Human progress for long rules (files scanned, say); the CLI shows it with --verbose.
    progress: Callable[[str], None] = _silent
    # What the rules of the run share; a context made on its own shares with nobody.
    cache: RunCache = field(default_factory=RunCache)
    # The run's cluster (--dask-scheduler, --workers), for work a rule fans out; None: local.
    delegate: Delegate | None = None

    def rng(self) -> np.random.Generator:
        """A generator seeded from the run seed and the rule id: reproducible and independent."""
        return derived_rng(self.seed, self.meta.id)

    # Typed option reads. The engine validated every value against the rule's declaration
    # before any rule ran (a bad one is exit 2, no report); reading an option under another
    # kind than declared is a bug in the rule, and raises TypeError.

    def option_int(self, name: str) -> int:
        value = self._option(name, OptionKind.INTEGER)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise self._misread(name, value)

    def option_float(self, name: str) -> float:
        value = self._option(name, OptionKind.NUMBER)
        if _is_number(value):
            return float(value)
        raise self._misread(name, value)

    def option_bool(self, name: str) -> bool:
        value = self._option(name, OptionKind.BOOLEAN)
        if isinstance(value, bool):
            return value
        raise self._misread(name, value)

    def option_str(self, name: str) -> str:
        value = self._option(name, OptionKind.STRING)
        if isinstance(value, str):
            return value
        raise self._misread(name, value)

    def option_floats(self, name: str) -> list[float]:
        value = self._option(name, OptionKind.NUMBERS)
        if isinstance(value, list) and all(_is_number(v) for v in value):
            return [float(v) for v in value if _is_number(v)]
        raise self._misread(name, value)

    def option_strs(self, name: str) -> list[str]:
        value = self._option(name, OptionKind.STRINGS)
        if isinstance(value, list) and all(isinstance(v, str) for v in value):
            return [v for v in value if isinstance(v, str)]
        raise self._misread(name, value)

    def option_table(self, name: str) -> dict[str, float]:
        value = self._option(name, OptionKind.NUMBER_TABLE)
        if isinstance(value, dict) and all(_is_number(v) for v in value.values()):
            return {k: float(v) for k, v in value.items() if _is_number(v)}
        raise self._misread(name, value)

    def option_is_null(self, name: str) -> bool:
        """Whether a nullable option holds null (its default: use what the rule derives)."""
        return self.options[name] is None

    def _option(self, name: str, kind: OptionKind) -> JsonValue:
        declared = next((o for o in self.meta.options if o.name == name), None)
        if declared is None or declared.value_kind is not kind:
            raise TypeError(f"{self.meta.id} declares no {kind.value} option {name}")
        return self.options[name]

    def _misread(self, name: str, value: JsonValue) -> TypeError:
        # None: a nullable option read without asking option_is_null first.
        return TypeError(f"option {name} of {self.meta.id} holds {value!r}")

    def shared(self, key: CacheKey, compute: Callable[[], T]) -> T:
        """The run's result for ``key``, computed here unless a rule before this one did.

        A reuse is recorded in the metrics (``reused``: what, and which rule computed it) and
        in the run log, so a reader knows two rules' numbers come from one computation.
        """
        result = self.cache.shared(key, compute, by=self.meta.id)
        if result.reused and result.computed_by != self.meta.id:
            reused = self.metrics.setdefault("reused", {})
            assert isinstance(reused, dict)
            reused[key.what] = result.computed_by
            self.progress(f"reused {key.what} computed by {result.computed_by}")
        return result.value

    def check_budget(self) -> None:
        """Long-running rules call this between batches; the engine also enforces the budget."""
        if time.monotonic() > self.deadline:
            raise BudgetExceeded(f"{self.meta.id} ran past its time budget")

    def finding(
        self,
        *,
        key: str,
        title: str,
        message: str,
        location: Location,
        severity: Severity | None = None,
        confidence: Confidence = Confidence.HIGH,
        evidence: Mapping[str, JsonValue] | None = None,
        cwe: Iterable[str] = (),
        artifact_key: str = "model",
    ) -> Finding:
        """A finding whose fingerprint is the rule id, the artifact's role and ``key``."""
        return Finding(
            rule_id=self.meta.id,
            title=title,
            message=message,
            severity=severity or self.meta.severity,
            confidence=confidence,
            location=location,
            fingerprint=fingerprint(self.meta.id, artifact_key, key),
            evidence=dict(evidence or {}),
            cwe=tuple(cwe),
        )


class Rule(abc.ABC):
    meta: ClassVar[RuleMeta]

    @abc.abstractmethod
    def check(self, ctx: RuleContext) -> Iterable[Finding]:
        """Run the rule; yield findings and record metrics on ``ctx``."""
