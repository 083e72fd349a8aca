"""Human output: progress and the summary on stderr, and the verdict for notebooks.

Everything here reads the report document (or progress lines), never the run's internals, so
what a person sees is what the report says. Machine output goes to files. On a terminal the
summary has colour; when stderr is not a terminal (CI logs, pipes) or ``NO_COLOR`` is set,
rich writes plain text by itself.
"""

from __future__ import annotations

import html
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mlaudit.verdict.scoring import CauseKind, GateCause, gate_causes

SEVERITIES = ("critical", "high", "medium", "low", "info")  # worst first
_SHOWN_REASONS = 10
_STATUS_STYLE = {"passed": "green", "failed": "red", "skipped": "dim", "error": "magenta"}

# The short form of each kind of gate cause on the verdict line; findings over the threshold
# and metrics that regressed are counted instead.
_SHORT_FORMS: Mapping[CauseKind, str] = {
    CauseKind.ERROR: "{rule_id} errored",
    CauseKind.REQUIRED_NOT_RUN: "required {required} not run",
    CauseKind.REQUIRED_INCOMPLETE: "required {required} incomplete",
    CauseKind.LOAD: "model not loaded (blocked)",
}


def make_console(*, stderr: bool) -> Console:
    """A rich console; when not a terminal, no colour and no wrapping at the terminal width."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 200)


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def gate_failures(report: Mapping[str, Any]) -> list[str]:
    """Each reason the report's gate failed, short: ``1 high finding (MLA302)``,
    ``MLA201 errored``, ``score 50 under 60``, read from its causes (``gate.causes``).

    Findings over the threshold are counted by severity, worst first, naming their rules;
    the other causes follow in the gate's order, and regressed metrics are counted last.
    """
    by_severity: dict[str, list[str]] = {}
    others: list[str] = []
    regressions = 0
    for cause in gate_causes(report["gate"]):
        if cause.kind is CauseKind.FINDING and cause.severity is not None:
            by_severity.setdefault(cause.severity.value, []).append(cause.rule_id or "?")
        elif cause.kind is CauseKind.REGRESSION:
            regressions += 1
        else:
            others.append(_short(cause, report))
    counted = [
        f"{_plural(len(rules), severity + ' finding')} ({', '.join(dict.fromkeys(rules))})"
        for severity in SEVERITIES
        if (rules := by_severity.get(severity))
    ]
    if regressions:
        others.append(f"{_plural(regressions, 'metric')} regressed against the baseline")
    return [*counted, *others]


def _short(cause: GateCause, report: Mapping[str, Any]) -> str:
    minimum = report["gate"].get("min_score")
    if cause.kind is CauseKind.SCORE and isinstance(minimum, int | float):
        return f"score {report['score']:g} under {minimum:g}"
    form = _SHORT_FORMS.get(cause.kind)
    if form is None:
        return cause.text
    return form.format(rule_id=cause.rule_id or "?", required=cause.required or "?")


def finding_counts(report: Mapping[str, Any]) -> str:
    """``2 high, 1 low`` over every finding that counts, or ``no findings``."""
    counts: dict[str, int] = {}
    for result in report["results"]:
        for finding in result["findings"]:
            counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    return ", ".join(f"{counts[s]} {s}" for s in SEVERITIES if s in counts) or "no findings"


@dataclass(frozen=True)
class Verdict:
    """The one-line verdict: score, grade, gate, and why it failed (or what was found)."""

    score: float
    grade: str
    passed: bool
    detail: str

    @staticmethod
    def of(report: Mapping[str, Any]) -> Verdict:
        gate = report["gate"]
        detail = finding_counts(report) if gate["passed"] else "; ".join(
            gate_failures(report)
        )
        return Verdict(report["score"], report["grade"], bool(gate["passed"]), detail)

    @property
    def head(self) -> str:
        return f"score {self.score:g} grade {self.grade}"

    @property
    def gate(self) -> str:
        return "gate PASSED" if self.passed else "gate FAILED"

    @property
    def separator(self) -> str:
        """Before the detail: a failed gate's detail is its reasons, a passed one's is not."""
        return " · " if self.passed else ": "

    def __str__(self) -> str:
        return f"{self.head} · {self.gate}{self.separator}{self.detail}"

    def text(self) -> Text:
        return Text.assemble(
            f"{self.head} · ",
            (self.gate, "bold green" if self.passed else "bold red"),
            f"{self.separator}{self.detail}",
        )


@dataclass(frozen=True)
class Output:
    """What a scan prints on stderr: with ``quiet`` only the verdict line, with ``verbose``
    every step as it starts, stamped with the time since the scan started."""

    console: Console
    quiet: bool
    verbose: bool
    started: float = field(default_factory=time.monotonic)

    def progress(self, message: str) -> None:
        if self.verbose and not self.quiet:
            elapsed = time.monotonic() - self.started
            self.console.print(Text.assemble((f"{elapsed:7.1f}s ", "dim"), printable(message)))

    def summary(self, report: Mapping[str, Any], written: Sequence[Path]) -> None:
        if self.quiet:
            self.console.print(Verdict.of(report).text())
            return
        _print_results(self.console, report, timed=self.verbose)
        self.console.print(Verdict.of(report).text())
        _print_details(self.console, report)
        self.console.print("report: " + ", ".join(str(p) for p in written), markup=False)


def printable(text: str) -> str:
    """``text`` with control characters escaped (``\\x1b``): file names, finding titles and
    error messages come from the files scanned, and a terminal must not obey escape sequences
    hidden in them (rich strips a few control codes, not ESC)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _print_results(console: Console, report: Mapping[str, Any], *, timed: bool) -> None:
    """The per-rule table (``timed``: with each rule's duration), how the model was loaded,
    and one line per rule in error."""
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("rule", "name", "status", "findings", "score", *(["seconds"] * timed)):
        table.add_column(column)
    for result in report["results"]:
        status = result["status"]
        score = "" if result["score"] is None else f"{result['score']:g}"
        table.add_row(
            Text(printable(result["rule_id"])), Text(printable(result["name"])),
            Text(status, style=_STATUS_STYLE[status]), str(len(result["findings"])), score,
            *([f"{result['duration_s']:.1f}"] * timed),
        )
    console.print(table)
    model = report["subject"]["model"]
    loaded = model["load"]["status"] in ("allowed", "trusted")
    if model["load"]["status"] == "trusted":
        _warn(console, "--trust-model: the model was loaded without the load gate's protection")
    elif model["load"]["status"] == "blocked":
        console.print(Text.assemble(("model not loaded:", "bold red"), " the load gate blocked it"))
    if loaded and report["run"]["isolation"]["mode"] == "none":
        _warn(console, "isolation none: the model ran inside mlaudit's own process, with your "
              "rights")
    for result in report["results"]:
        if result["status"] == "error":
            why = printable((result["reason"] or "no reason given").strip().splitlines()[0])
            console.print(Text.assemble((f"{result['rule_id']} error:", "magenta"), f" {why}"))


def _print_details(console: Console, report: Mapping[str, Any]) -> None:
    """Under the verdict: the gate's reasons in full, coverage, waivers, warnings kept."""
    reasons = report["gate"]["reasons"]
    for reason in reasons[:_SHOWN_REASONS]:
        console.print(f"  - {printable(reason)}", markup=False)
    if len(reasons) > _SHOWN_REASONS:
        console.print(f"  … and {len(reasons) - _SHOWN_REASONS} more reasons (see report.json)")
    _print_coverage(console, report["coverage"])
    if report["suppressed"]:
        console.print(f"{len(report['suppressed'])} findings waived (listed in the report)")
    for waiver in report["waivers"]:
        if waiver["status"] != "applied":
            named = waiver["fingerprint"] or waiver["rule"]
            console.print(f"  waiver {waiver['status']}: {named} ({printable(waiver['reason'])})",
                          markup=False)
        if waiver.get("warning"):
            console.print(f"  warning: {printable(waiver['warning'])}", markup=False)
    # Library warnings can number hundreds (one per batch a model predicts): the report keeps
    # them, the console says only that there are some.
    if kept := len(report["run"]["warnings"]):
        console.print(f"{_plural(kept, 'library warning')} kept in the report (run.warnings)",
                      style="dim", markup=False)


def _print_coverage(console: Console, coverage: Mapping[str, Any]) -> None:
    """What was audited: part of the verdict, so it sits right under the gate's line."""
    style = "green" if coverage["complete"] else "bold yellow"
    console.print(Text.assemble(("coverage:", style), f" {printable(coverage['summary'])}"))
    for family in coverage["families"]:
        if family["status"] == "not-audited":
            why = printable("; ".join(family["reasons"]))
            console.print(f"  - {family['family']} not audited: {why}", markup=False)
    for note in coverage["notes"]:
        console.print(Text.assemble(("note:", "bold yellow"), f" {printable(note)}"))


def _warn(console: Console, message: str) -> None:
    console.print(Text.assemble(("warning:", "bold yellow"), f" {printable(message)}"))


# --- notebooks -----------------------------------------------------------------------------

_MAX_HTML_FINDINGS = 20


def html_summary(report: Mapping[str, Any]) -> str:
    """A compact verdict for a notebook cell: every string escaped, no script, no network."""
    verdict = Verdict.of(report)
    colour = "#1a7f37" if verdict.passed else "#cf222e"
    failing = _failing_findings(report)
    rows = "".join(
        f"<tr><td>{_e(f['rule_id'])}</td><td>{_e(f['severity'])}</td><td>{_e(f['title'])}</td>"
        f"<td>{_e(_location(f['location']))}</td></tr>"
        for f in failing[:_MAX_HTML_FINDINGS]
    )
    more = len(failing) - _MAX_HTML_FINDINGS
    table = (
        "<table><thead><tr><th>rule</th><th>severity</th><th>finding</th><th>where</th></tr>"
        f"</thead><tbody>{rows}</tbody></table>" if rows else ""
    ) + (f"<p>… and {more} more failing findings</p>" if more > 0 else "")
    return (
        '<div class="mlaudit-audit">'
        f"<p><strong>mlaudit</strong> · {_e(report['subject']['model']['path'])}</p>"
        f"<p>{_e(verdict.head)} · <strong style=\"color:{colour}\">{_e(verdict.gate)}</strong>"
        f"{_e(verdict.separator)}{_e(verdict.detail)}</p>"
        f"{table}<p>coverage: {_e(report['coverage']['summary'])}</p></div>"
    )


def _failing_findings(report: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Findings at or above the gate's ``fail_on``, worst first."""
    fail_on = report["gate"]["fail_on"]
    if fail_on not in SEVERITIES:  # "none": no finding fails the gate
        return []
    failing = SEVERITIES[: SEVERITIES.index(fail_on) + 1]
    found = [f for r in report["results"] for f in r["findings"] if f["severity"] in failing]
    return sorted(found, key=lambda f: SEVERITIES.index(f["severity"]))


def _location(location: Mapping[str, Any]) -> str:
    pointer = location.get("pointer")
    return f"{location['artifact']} ({pointer})" if pointer else str(location["artifact"])


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
