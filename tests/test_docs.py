"""Every rule documents itself, and the generated pages in rules/ match the code."""

from __future__ import annotations

import dataclasses
import inspect
import re
from pathlib import Path

import pytest

from mlaudit.engine.registry import registered_rules
from mlaudit.reports.rule_pages import SECTIONS, main, render_pages, rule_markdown
from mlaudit.rules.base import RuleOption
from tests.plugin_rules import OptionEchoRule, install_plugin

RULES_DIR = Path(__file__).resolve().parent.parent / "rules"
BUILTIN = [r for r in registered_rules() if r.builtin]


@pytest.mark.parametrize("registered", BUILTIN, ids=lambda r: r.id)
def test_rule_docstring_has_every_section(registered) -> None:  # type: ignore[no-untyped-def]
    rule = registered.load()
    doc = inspect.getdoc(rule) or ""
    for section in SECTIONS:
        assert f"**{section}**:" in doc, f"{rule.meta.id} lacks {section}"
    for option in rule.meta.options:
        options_text = doc.split("**Options**:", 1)[1]
        assert f"``{option.name}``" in options_text, f"{option.name} is undocumented"


def test_pages_in_the_repository_are_in_sync() -> None:
    assert main(["--check", str(RULES_DIR)]) == 0


def test_check_detects_a_stale_page(tmp_path: Path) -> None:
    assert main([str(tmp_path)]) == 0
    page = tmp_path / "MLA101.md"
    page.write_text(page.read_text() + "edited by hand\n")
    assert main(["--check", str(tmp_path)]) == 1


def test_index_links_every_rule() -> None:
    index = render_pages()["README.md"]
    for registered in BUILTIN:
        assert f"({registered.id}.md)" in index


def test_a_plugin_installed_beside_mlaudit_gets_no_page(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Installing a plugin in the development environment must not make the pages stale."""
    install_plugin(tmp_path / "plugin", monkeypatch)
    assert any(r.id == "TEST903" for r in registered_rules())
    pages = render_pages()
    assert "TEST903.md" not in pages
    assert "TEST903" not in pages["README.md"]
    assert main(["--check", str(RULES_DIR)]) == 0


def test_a_vertical_bar_in_an_option_stays_in_its_cell() -> None:
    class Alternatives(OptionEchoRule):
        meta = dataclasses.replace(OptionEchoRule.meta, options=(
            RuleOption("label", "Intended use|Uses", "a | separates\nalternatives"),
        ))

    [row] = [line for line in rule_markdown(Alternatives).splitlines()
             if line.startswith("| `label`")]
    assert row == (
        r'| `label` | string | - | `"Intended use\|Uses"` | a \| separates alternatives |'
    )
    assert len(re.split(r"(?<!\\)\|", row)) == 7  # five cells between the outer bars
