"""Rule discovery through the ``mlaudit.rules`` entry-point group.

Entry-point names are rule ids, so selection happens on names and a deselected rule's module
is never imported (a skipped robustness rule never imports torch).

The plugin contract: an id is a prefix of 2 to 8 capital letters and three digits. ``MLA`` is
mlaudit's own prefix; a third-party distribution picks a prefix of its own (``ACME101``), so
``--select ACME`` selects its rules and ``--select MLA`` selects exactly mlaudit's. Each id
belongs to one distribution: two distributions claiming the same id is an error, never a silent
choice, because the report and its waivers would then name a rule nobody can tell apart.
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from mlaudit.core.errors import UsageError
from mlaudit.core.findings import RULE_ID
from mlaudit.rules.base import Rule

GROUP = "mlaudit.rules"
# Reserved as a prefix, not only as the exact letters MLA: selection matches prefixes, so a
# plugin's MLAX101 would be run, ignored and required along with mlaudit's rules by ``MLA``.
RESERVED_PREFIX = "MLA"
OWN_DISTRIBUTION = "mlaudit"


def _normalized(distribution_name: str) -> str:
    """The name as packaging compares it (PEP 503): ``Acme_Rules`` is ``acme-rules``."""
    return re.sub(r"[-_.]+", "-", distribution_name).lower()


@dataclass(frozen=True)
class RegisteredRule:
    id: str
    entry_point: EntryPoint

    @property
    def distribution(self) -> str:
        """``name version`` of the installed distribution that declares the entry point."""
        dist = self.entry_point.dist
        return f"{dist.name} {dist.version}" if dist is not None else "an unknown distribution"

    @property
    def origin(self) -> str:
        """Who registered the rule and where it points: ``acme-mlaudit 1.0 (acme_rules:Foo)``."""
        return f"{self.distribution} ({self.entry_point.value})"

    @property
    def builtin(self) -> bool:
        dist = self.entry_point.dist
        return dist is not None and _normalized(dist.name) == OWN_DISTRIBUTION

    def _identity(self) -> tuple[str | None, str]:
        """What makes two sightings one registration: the same target from the same
        distribution (an editable install can list its entry points twice)."""
        dist = self.entry_point.dist
        return (_normalized(dist.name) if dist is not None else None, self.entry_point.value)

    def load(self) -> type[Rule]:
        try:
            rule = self.entry_point.load()
        except Exception as error:  # a broken third-party plugin must not crash the run
            raise UsageError(f"rule {self.id} of {self.origin} failed to import: {error}") from None
        if not (isinstance(rule, type) and issubclass(rule, Rule)) or rule.meta.id != self.id:
            raise UsageError(
                f"entry point {self.id} of {self.origin} does not name a Rule class whose "
                f"meta.id is {self.id}"
            )
        return rule


def _id_problem(rule: RegisteredRule) -> str | None:
    """Why ``rule``'s entry-point name is not an id its distribution may register, if it is not.

    A name that is no rule id is an error, not skipped: the group is mlaudit's own, so nothing
    unrelated lives in it, and a misnamed entry point is a plugin the user installed to run.
    Dropping it would report an audit as complete with that plugin's checks silently missing;
    failing (exit 2, naming the distribution) says what to fix or uninstall.
    """
    if not RULE_ID.fullmatch(rule.id):
        return (
            f"entry point {rule.id!r} in group {GROUP} of {rule.origin} is not a rule id: "
            "an id is 2 to 8 capital letters and three digits, such as ACME101"
        )
    if rule.id.startswith(RESERVED_PREFIX) and not rule.builtin:
        return (
            f"rule id {rule.id} is registered by {rule.origin}, but ids starting with "
            f"{RESERVED_PREFIX} are reserved for mlaudit's own rules; give the plugin's rules "
            "a prefix of its own, such as ACME101"
        )
    return None


def registered_rules() -> list[RegisteredRule]:
    """Every installed rule, sorted by id; a :class:`UsageError` if the plugin contract is broken
    (an id that is malformed, reserved, or registered by two distributions)."""
    chosen: dict[str, RegisteredRule] = {}
    for entry_point in entry_points(group=GROUP):
        rule = RegisteredRule(entry_point.name, entry_point)
        problem = _id_problem(rule)
        if problem is not None:
            raise UsageError(problem)
        first = chosen.setdefault(rule.id, rule)
        if first._identity() != rule._identity():
            both = " and ".join(sorted((first.origin, rule.origin)))
            raise UsageError(f"rule id {rule.id} is registered by both {both}")
    return [chosen[rule_id] for rule_id in sorted(chosen)]


def _matches(rule_id: str, selector: str) -> bool:
    return rule_id.startswith(selector.upper())


def select_rules(
    available: Sequence[RegisteredRule], select: Iterable[str], ignore: Iterable[str]
) -> list[RegisteredRule]:
    """Rules matching any ``select`` prefix (all when empty) and no ``ignore`` prefix.

    A prefix is any leading part of an id: ``MLA`` (mlaudit's rules), ``MLA2`` (a family),
    ``ACME`` (one plugin's rules), ``ACME101`` (one rule).
    """
    select, ignore = list(select), list(ignore)
    for selector in [*select, *ignore]:
        if not any(_matches(rule.id, selector) for rule in available):
            known = ", ".join(rule.id for rule in available)
            raise UsageError(f"unknown rule id or prefix {selector!r} (known rules: {known})")
    return [
        rule
        for rule in available
        if (not select or any(_matches(rule.id, s) for s in select))
        and not any(_matches(rule.id, s) for s in ignore)
    ]


def extra_installed(rule: type[Rule]) -> bool:
    return all(importlib.util.find_spec(module) is not None for module in rule.meta.extra_modules)


def extra_hint(rule: type[Rule]) -> str:
    """The command that installs ``rule``'s extra: an extra of the distribution that registered
    the rule, so a plugin's names the plugin (``mlaudit[x]`` has no extra of the plugin's).
    A rule no distribution registered (one handed straight to the engine) is taken for
    mlaudit's."""
    registered = next((r for r in registered_rules() if r.id == rule.meta.id), None)
    plugin = registered if registered is not None and not registered.builtin else None
    dist = plugin.entry_point.dist if plugin is not None else None
    return f"pip install '{dist.name if dist else OWN_DISTRIBUTION}[{rule.meta.extra}]'"
