"""Rule pages from rule docstrings: ``python -m mlaudit.reports.rule_pages [--check] DIR``.

The docstring is the single source; CI runs ``--check`` so the pages in ``rules/`` can never
drift from the code.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import sys
from pathlib import Path

from mlaudit.engine.registry import registered_rules
from mlaudit.rules.base import Rule
from mlaudit.rules.controls import control

SECTIONS = ("What it checks", "Why it matters", "How to fix", "Options")
SECTION_PATTERN = re.compile(r"^\*\*(" + "|".join(SECTIONS) + r")\*\*:\s*", re.MULTILINE)


def _heading(match: re.Match[str]) -> str:
    return f"## {match.group(1)}\n\n"


def _row(*cells: str) -> str:
    """A Markdown table row. A ``|`` in a cell (an option's default such as
    ``"Intended use|Uses"``) would end the cell, so it is escaped; a line break would end
    the row, so it is a space."""
    escaped = (cell.replace("|", r"\|").replace("\n", " ") for cell in cells)
    return "| " + " | ".join(escaped) + " |"


def rule_markdown(rule: type[Rule]) -> str:
    meta = rule.meta
    doc = inspect.getdoc(rule) or ""
    summary, _, body = doc.partition("\n\n")
    body = SECTION_PATTERN.sub(_heading, body.strip())
    requires = ", ".join(sorted(r.value for r in meta.requires))
    formats = ", ".join(sorted(f.value for f in meta.formats)) if meta.formats else "any"
    lines = [
        f"# {meta.id}: {meta.name}",
        "",
        summary.strip(),
        "",
        "| id | family | default severity | requires | model formats | extra |",
        "|---|---|---|---|---|---|",
        _row(meta.id, meta.family.value, meta.severity.value, requires, formats, meta.extra or "-"),
        "",
        body,
    ]
    if meta.options:
        # Type and accepted values are the declaration the engine validates against.
        lines += [
            "",
            "| option | type | accepted | default | meaning |",
            "|---|---|---|---|---|",
        ]
        lines += [
            _row(
                f"`{o.name}`", o.type_text, o.range_text or "-",
                f"`{json.dumps(o.default, ensure_ascii=False)}`", o.help,
            )
            for o in meta.options
        ]
    if meta.controls:
        lines += [
            "",
            "## Controls",
            "",
            "This rule's result is evidence for:",
            "",
            "| control | framework | requirement |",
            "|---|---|---|",
        ]
        for control_id in meta.controls:
            entry = control(control_id)
            lines.append(
                _row(f"[{control_id}]({entry.url})", entry.framework, entry.title)
                if entry else _row(control_id, "-", "-")
            )
    return "\n".join(lines).rstrip() + "\n"


def render_pages() -> dict[str, str]:
    """mlaudit's own rule pages and their index. A plugin installed beside mlaudit documents
    its rules itself (``mlaudit explain``): its pages never belong in mlaudit's ``rules/``."""
    pages = {}
    index = ["# mlaudit rules", "", "| id | name | family | severity |", "|---|---|---|---|"]
    for registered in registered_rules():
        if not registered.builtin:
            continue
        rule = registered.load()
        pages[f"{rule.meta.id}.md"] = rule_markdown(rule)
        index.append(_row(
            f"[{rule.meta.id}]({rule.meta.id}.md)", rule.meta.name, rule.meta.family.value,
            rule.meta.severity.value,
        ))
    pages["README.md"] = "\n".join(index) + "\n"
    return pages


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlaudit.reports.rule_pages", description=__doc__
    )
    parser.add_argument("directory", type=Path)
    parser.add_argument("--check", action="store_true", help="fail if the pages are out of date")
    args = parser.parse_args(argv)
    pages = render_pages()
    directory: Path = args.directory
    if args.check:
        stale = sorted(
            name for name, text in pages.items()
            if not (directory / name).is_file() or (directory / name).read_text("utf-8") != text
        )
        extra = sorted(p.name for p in directory.glob("*.md") if p.name not in pages)
        if stale or extra:
            print(
                f"rule pages out of date: {', '.join(stale + extra)}; "
                f"run python -m mlaudit.reports.rule_pages {directory}",
                file=sys.stderr,
            )
            return 1
        print(f"{len(pages)} rule pages in sync")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (directory / name).write_text(text, "utf-8")
    print(f"wrote {len(pages)} pages to {directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
