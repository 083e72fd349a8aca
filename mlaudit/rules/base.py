"""The rule interface: metadata, the context a rule runs in, and how it reports.

A rule is a class with ``meta`` and ``check(ctx)``; its docstring is its documentation, with
the sections *What it checks*, *Why it matters*, *How to fix* and *Options*.
"""

from __future__ import annotations

import abc
import enum
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from mlaudit.errors import ConfigError
from mlaudit.findings import Confidence, Finding, JsonValue, Location, Severity, fingerprint
from mlaudit.model import LoadedModel
from mlaudit.sniff import ModelFormat
from mlaudit.stats import derived_rng
from mlaudit.subject import Subject


class Family(enum.Enum):
    ARTIFACT = "artifact"
    ROBUSTNESS = "robustness"
    PRIVACY = "privacy"
    PERSONAL_DATA = "personal-data"
    CODE = "code"
    DEPENDENCIES = "dependencies"
    DATA_QUALITY = "data-quality"
    SERVING = "serving"


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


@dataclass(frozen=True)
class RuleOption:
    name: str
    default: JsonValue
    help: str


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
    # Control ids (mlaudit.controls) this rule's result is evidence for; a third-party rule
    # may name ids the catalogue does not know, which the report lists without a title.
    controls: tuple[str, ...] = ()

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

    def rng(self) -> np.random.Generator:
        """A generator seeded from the run seed and the rule id: reproducible and independent."""
        return derived_rng(self.seed, self.meta.id)

    # Typed option reads. A malformed option is a configuration error (exit 2, no report), not
    # a rule failure; the CLI has already checked each value's kind against the default.

    def number(self, name: str) -> float:
        value = self.options[name]
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"option {name} of {self.meta.id} must be a number, not {value!r}")
        return float(value)

    def strings(self, name: str) -> list[str]:
        value = self.options[name]
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(f"option {name} of {self.meta.id} must be a list of column names")
        return [str(v) for v in value]

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
