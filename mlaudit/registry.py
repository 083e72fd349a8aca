"""Rule discovery through the ``mlaudit.rules`` entry-point group.

Entry-point names are rule ids, so selection happens on names and a deselected rule's module
is never imported (a skipped robustness rule never imports torch).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points

from mlaudit.errors import UsageError
from mlaudit.rules.base import Rule

GROUP = "mlaudit.rules"
RULE_ID = re.compile(r"^MLA\d{3}$")


@dataclass(frozen=True)
class RegisteredRule:
    id: str
    entry_point: EntryPoint

    def load(self) -> type[Rule]:
        try:
            rule = self.entry_point.load()
        except Exception as error:  # a broken third-party plugin must not crash the run
            raise UsageError(
                f"rule {self.id} ({self.entry_point.value}) failed to import: {error}"
            ) from None
        if not (isinstance(rule, type) and issubclass(rule, Rule)) or rule.meta.id != self.id:
            raise UsageError(f"entry point {self.id} does not name a Rule with that id")
        return rule


def registered_rules() -> list[RegisteredRule]:
    found = {ep.name: ep for ep in entry_points(group=GROUP) if RULE_ID.match(ep.name)}
    return [RegisteredRule(rule_id, found[rule_id]) for rule_id in sorted(found)]


def _matches(rule_id: str, selector: str) -> bool:
    return rule_id.startswith(selector.upper())


def select_rules(
    available: Sequence[RegisteredRule], select: Iterable[str], ignore: Iterable[str]
) -> list[RegisteredRule]:
    """Rules matching any ``select`` prefix (all when empty) and no ``ignore`` prefix."""
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
