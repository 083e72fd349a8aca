"""The ``mlaudit`` command line.

Exit codes: 0 the gate passed, 1 the gate failed, 2 usage, config or input error (one line on
stderr, no traceback, no report written). Every error path, Click's own included, ends in 2.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import sys
import traceback
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from rich.console import Console
from rich.markdown import Markdown
from rich.markup import escape
from rich.table import Table

from mlaudit import __version__
from mlaudit.atomic import write_files_atomically
from mlaudit.attest import ENVELOPE_NAME, load_signing_key, passphrase_from_environment, sign_report
from mlaudit.cli_compliance import COMMANDS
from mlaudit.config import PROFILES, Settings, resolve
from mlaudit.docs import rule_markdown
from mlaudit.engine import AuditRun, EngineSettings, run_audit
from mlaudit.errors import UsageError
from mlaudit.findings import JsonValue, ModelIdentity
from mlaudit.gate import LoadStatus
from mlaudit.isolation import ISOLATION_MODES
from mlaudit.registry import extra_installed, registered_rules, select_rules
from mlaudit.regression import Baseline
from mlaudit.report import RunInfo, build_report, read_report
from mlaudit.reports import FORMATS, renderer_for
from mlaudit.rules.base import Rule, Stage
from mlaudit.scoring import FAIL_ON_CHOICES, GatePolicy, decide_gate, score_results
from mlaudit.subject import build_subject
from mlaudit.waivers import apply_waivers

EXIT_PASSED, EXIT_GATE_FAILED, EXIT_USAGE = 0, 1, 2
_PATH = click.Path(path_type=Path, dir_okay=True)


@dataclass
class _Output:
    """Where human output goes: stderr, plain when not a terminal, silent with --quiet."""

    console: Console
    quiet: bool
    verbose: bool

    def progress(self, message: str) -> None:
        if self.verbose and not self.quiet:
            self.console.print(f"[dim]·[/dim] {message}", markup=True, highlight=False)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlaudit")
def cli() -> None:
    """Audit a trained machine-learning model before release."""


@cli.command()
@click.argument("model")
@click.option("--data", type=_PATH, help="A data sample to query the model with.")
@click.option("--train", type=_PATH, help="Training data (members); also serves as the sample.")
@click.option("--holdout", type=_PATH, help="Held-out data (non-members); also the sample.")
@click.option("--target", help="Name of the label column.")
@click.option("--source", type=_PATH, help="Source tree of the training and serving code.")
@click.option("--requirements", type=_PATH, multiple=True, help="Requirements file (repeatable).")
@click.option("--env", "environment", is_flag=True, help="Audit the installed distributions too.")
@click.option("--vuln-db", type=_PATH, help="OSV export (zip or folder) for MLA601.")
@click.option("--select", multiple=True, help="Run only these rule ids or prefixes (repeatable).")
@click.option("--ignore", multiple=True, help="Skip these rule ids or prefixes (repeatable).")
@click.option("--require", multiple=True,
              help="Fail the gate unless these rule ids or prefixes ran (repeatable).")
@click.option("--fail-on", type=click.Choice(FAIL_ON_CHOICES), help="Lowest failing severity.")
@click.option("--min-score", type=float, help="Fail when the overall score is below this.")
@click.option("--allow-incomplete", is_flag=True, default=None, help="Pass despite rule errors.")
@click.option("--exit-zero", is_flag=True, default=None, help="Report, but exit 0 unless exit 2.")
@click.option("--seed", type=int, help="Seed for every random choice (default 0).")
@click.option("--profile", type=click.Choice(PROFILES), help="Budget profile.")
@click.option("--trust-model", is_flag=True, default=None, help="Load the model even if blocked.")
@click.option("--isolation", type=click.Choice(ISOLATION_MODES),
              help="Where the model runs: auto (isolated worker, default), strict, none.")
@click.option("--config", "config_path", type=_PATH, help="Configuration file (TOML).")
@click.option("-q", "--quiet", is_flag=True, help="No human output except errors.")
@click.option("-v", "--verbose", is_flag=True, help="Show each step.")
@click.option("-o", "--output-dir", type=_PATH, help="Report directory (default mlaudit-report).")
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True, help="Output.")
@click.option("--nlp-model", help="An installed spaCy model for the personal-data rules.")
@click.option("--baseline", type=_PATH, help="Gate only on what is new against this report.")
@click.option("--sign-key", type=_PATH, help=f"Sign the report into {ENVELOPE_NAME} (Ed25519).")
def scan(model: str, config_path: Path | None, quiet: bool, verbose: bool, **given: Any) -> int:
    """Scan MODEL (a file, or module:callable) and write the report."""
    started = datetime.now(UTC)
    cli_values = _given_options(given)
    settings = resolve(cli_values, config_path)
    if given["nlp_model"]:
        settings = _with_nlp_model(settings, given["nlp_model"])
    settings = _with_vuln_db(settings)
    out = _Output(_console(stderr=True), quiet, verbose)
    rules = _load_rules(settings)
    signing_key = (
        load_signing_key(given["sign_key"], passphrase_from_environment())
        if given["sign_key"] else None
    )
    baseline = Baseline.read(Path(settings.baseline)) if settings.baseline else None
    subject = build_subject(
        model,
        data=given["data"],
        train=given["train"],
        holdout=given["holdout"],
        target=settings.target,
        source=given["source"],
        requirements=given["requirements"],
        extra_allowed=frozenset(settings.allow_globals),
        environment=given["environment"],
    )
    if settings.trust_model and not quiet:
        out.console.print(
            "[bold yellow]warning:[/] --trust-model: the model is loaded even if the scan "
            "finds code in it"
        )
    if settings.isolation == "none" and not quiet:
        out.console.print(
            "[bold yellow]warning:[/] --isolation none: the model runs inside mlaudit's own "
            "process, with your rights"
        )
    engine_settings = EngineSettings(
        seed=settings.seed,
        profile=settings.profile,
        trust_model=settings.trust_model,
        extra_allowed=frozenset(settings.allow_globals),
        rule_options=settings.rules,
        isolation=settings.isolation,
    )
    # Library warnings (a model pickled by another scikit-learn version, say) belong in the
    # report, where a reader can weigh them, not interleaved with the summary on stderr.
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        audit = run_audit(subject, rules, engine_settings, out.progress)
    # Waivers apply before scoring and the gate: a waived finding counts toward neither.
    # Fingerprints are bound to the model here, so no waiver or baseline crosses models.
    identity = ModelIdentity(subject.model.reference, subject.model.sha256)
    waived = apply_waivers(audit.results, settings.waivers, started.date(), identity)
    scorecard = score_results(waived.results)
    policy = GatePolicy(
        settings.fail_on, settings.min_score, settings.allow_incomplete, settings.require
    )
    blocked = _blocked_reason(audit, rules)
    if baseline is None:
        gate, compared = decide_gate(waived.results, scorecard.score, policy, blocked), None
    else:
        gate, compared = baseline.gate(
            waived.results, scorecard.score, policy, blocked, settings.tolerances,
            model=identity,
        )
    arguments = click.get_current_context().find_root().obj or sys.argv[1:]
    command = "mlaudit " + shlex.join(arguments)
    report = build_report(
        run=RunInfo.new(started, command),
        settings=settings,
        subject=subject,
        audit=audit,
        scorecard=scorecard,
        gate=gate,
        results=waived.results,
        warnings=[f"{w.category.__name__}: {w.message}" for w in caught],
        waivers=waived,
        baseline=compared,
    )
    written = _write_reports(report, settings.format, Path(settings.output_dir), signing_key)
    if not quiet:
        _print_summary(out.console, report, written)
    if gate.passed or settings.exit_zero:
        return EXIT_PASSED
    return EXIT_GATE_FAILED


PERSONAL_DATA_RULES = ("MLA401", "MLA402", "MLA403")


def _with_nlp_model(settings: Settings, name: str) -> Settings:
    """``--nlp-model`` sets the personal-data rules' ``nlp_model`` option, over the file's."""
    try:
        from mlaudit.pii.engine import EngineUnavailable, check_nlp_model
    except ImportError:
        raise UsageError(
            "--nlp-model needs the 'pii' extra: pip install 'mlaudit[pii]'"
        ) from None
    try:
        check_nlp_model(name)
    except EngineUnavailable as error:
        raise UsageError(str(error)) from None
    return _with_rule_option(settings, PERSONAL_DATA_RULES, "nlp_model", name)


def _with_vuln_db(settings: Settings) -> Settings:
    """``vuln_db`` (``--vuln-db``, ``MLAUDIT_VULN_DB``, file) sets MLA601's ``database``."""
    if not settings.vuln_db:
        return settings
    return _with_rule_option(settings, ("MLA601",), "database", settings.vuln_db)


def _with_rule_option(
    settings: Settings, rule_ids: Sequence[str], option: str, value: JsonValue
) -> Settings:
    """A command-line option that sets a rule option, over what the config file says."""
    rules = dict(settings.rules)
    for rule_id in rule_ids:
        rules[rule_id] = {**rules.get(rule_id, {}), option: value}
    return dataclasses.replace(settings, rules=rules)


def _write_reports(
    report: dict[str, Any],
    formats: Sequence[str],
    directory: Path,
    signing_key: Ed25519PrivateKey | None = None,
) -> list[Path]:
    """Render every format, then write all files atomically: all of them or none.

    ``report.json`` is always among them: it is the source of truth the other formats are
    rendered from, and the one ``mlaudit report`` re-renders. With a key, the envelope signs
    the exact bytes written as report.json and is written with them.
    """
    renderers = [renderer_for(f) for f in dict.fromkeys(("json", *formats))]
    rendered = {r.filename: r.render(report) for r in renderers}
    if signing_key is not None:
        rendered[ENVELOPE_NAME] = sign_report(
            rendered["report.json"], signing_key, datetime.now(UTC)
        )
    try:
        return write_files_atomically(directory, rendered)
    except OSError as error:
        raise UsageError(f"cannot write the report to {directory}: {error}") from None


@cli.command("report")
@click.argument("report_path", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True, required=True,
              help="Format to render (repeatable).")
@click.option("-o", "--output-dir", type=_PATH, help="Directory (default: the report's own).")
def report_command(report_path: Path, formats: tuple[str, ...], output_dir: Path | None) -> int:
    """Re-render an archived REPORT.json in other formats, without the model or the data."""
    document = read_report(report_path)
    directory = output_dir or report_path.parent
    renderers = [renderer_for(f) for f in dict.fromkeys(formats)]
    rendered = {r.filename: r.render(document) for r in renderers}
    if (directory / "report.json").resolve() == report_path.resolve():
        rendered.pop("report.json", None)  # never rewrite the source in place
    try:
        written = write_files_atomically(directory, rendered)
    except OSError as error:
        raise UsageError(f"cannot write to {directory}: {error}") from None
    for path in written:
        click.echo(str(path))
    return EXIT_PASSED


_SETTING_OPTIONS = (
    "select", "ignore", "require", "fail_on", "min_score", "allow_incomplete", "exit_zero", "seed",
    "profile", "trust_model", "output_dir", "formats", "target", "vuln_db", "baseline",
    "isolation",
)


def _given_options(given: dict[str, Any]) -> dict[str, Any]:
    """Options actually given on the command line (unset ones fall through to env and file)."""
    values = {}
    for option in _SETTING_OPTIONS:
        value = given.get(option)
        if value is None or value == ():
            continue
        # --format is repeatable, so Click names its parameter "formats"
        key = "format" if option == "formats" else option
        values[key] = str(value) if isinstance(value, Path) else value
    return values


def _load_rules(settings: Settings) -> list[type[Rule]]:
    available = registered_rules()
    known = {r.id for r in available}
    for rule_id in settings.rules:
        if rule_id not in known:
            raise UsageError(f"configuration names unknown rule {rule_id} under rules")
    selected = select_rules(available, settings.select, settings.ignore)
    if not selected:
        raise UsageError("no rules selected: --select and --ignore exclude every rule")
    rules = [r.load() for r in selected]
    for rule in rules:
        allowed = {o.name for o in rule.meta.options} | {"budget_s"}
        options = settings.rules.get(rule.meta.id, {})
        budget = options.get("budget_s", 1.0)
        if isinstance(budget, bool) or not isinstance(budget, int | float) or budget <= 0:
            raise UsageError(f"budget_s for {rule.meta.id} must be a positive number of seconds")
        defaults = {o.name: o.default for o in rule.meta.options}
        for option, value in options.items():
            if option not in allowed:
                raise UsageError(
                    f"unknown option {option!r} for rule {rule.meta.id} "
                    f"(known: {', '.join(sorted(allowed))})"
                )
            if option in defaults and not _same_kind(defaults[option], value):
                raise UsageError(
                    f"option {option} for rule {rule.meta.id} must be "
                    f"{_KIND_NAMES[_kind(defaults[option])]}, not {value!r}"
                )
    return rules


_KIND_NAMES = {
    bool: "true or false", float: "a number", list: "a list", str: "a string", dict: "a table",
}


def _kind(value: object) -> type:
    """The kind of an option value: bool before numbers, since bool is an int in Python."""
    if isinstance(value, bool):
        return bool
    if isinstance(value, int | float):
        return float
    for kind in (list, str, dict):
        if isinstance(value, kind):
            return kind
    return object


def _same_kind(default: object, value: object) -> bool:
    if default is None:
        return True
    if _kind(value) is not _kind(default):
        return False
    if isinstance(default, list) and default:
        return all(_kind(item) is _kind(default[0]) for item in value)  # type: ignore[attr-defined]
    return True


def _blocked_reason(audit: AuditRun, rules: Sequence[type[Rule]]) -> str | None:
    wants_model = any(r.meta.stage is Stage.BEHAVIOURAL for r in rules)
    if wants_model and audit.load is not None and audit.load.status is LoadStatus.BLOCKED:
        return "blocked by " + audit.load.summary()
    return None


_STATUS_STYLE = {"passed": "green", "failed": "red", "skipped": "dim", "error": "magenta"}


def _print_summary(console: Console, report: dict[str, Any], written: Sequence[Path]) -> None:
    table = Table(show_header=True, header_style="bold", box=None, pad_edge=False)
    for column in ("rule", "name", "status", "findings", "score"):
        table.add_column(column)
    for result in report["results"]:
        status = result["status"]
        score = "" if result["score"] is None else f"{result['score']:g}"
        table.add_row(
            result["rule_id"],
            result["name"],
            f"[{_STATUS_STYLE[status]}]{status}[/]",
            str(len(result["findings"])),
            score,
        )
    console.print(table)
    load = report["subject"]["model"]["load"]
    if load["status"] == "trusted":
        console.print("[bold yellow]model loaded with --trust-model (the load gate was bypassed)")
    elif load["status"] == "blocked":
        console.print("[bold red]model not loaded:[/] the load gate blocked it")
    counts: dict[str, int] = {}
    for result in report["results"]:
        for finding in result["findings"]:
            counts[finding["severity"]] = counts.get(finding["severity"], 0) + 1
    breakdown = ", ".join(f"{counts[s]} {s}" for s in reversed(FAIL_ON_CHOICES[:-1]) if s in counts)
    gate = report["gate"]
    verdict = "[bold green]PASSED[/]" if gate["passed"] else "[bold red]FAILED[/]"
    console.print(
        f"score {report['score']:g} grade {report['grade']} · gate {verdict} · "
        f"{breakdown or 'no findings'}"
    )
    for reason in gate["reasons"][:10]:
        console.print(f"  - {reason}", markup=False)
    _print_coverage(console, report["coverage"])
    if len(gate["reasons"]) > 10:
        console.print(f"  … and {len(gate['reasons']) - 10} more reasons (see report.json)")
    if report["suppressed"]:
        console.print(f"{len(report['suppressed'])} findings waived (listed in the report)")
    for waiver in report["waivers"]:
        if waiver["status"] != "applied":
            named = waiver["fingerprint"] or waiver["rule"]
            line = f"  waiver {waiver['status']}: {named} ({waiver['reason']})"
            console.print(line, markup=False)
        if waiver.get("warning"):
            console.print(f"  warning: {waiver['warning']}", markup=False)
    console.print("report: " + ", ".join(str(p) for p in written), markup=False)


def _print_coverage(console: Console, coverage: dict[str, Any]) -> None:
    """What was audited: part of the verdict, so it sits right under the gate's line."""
    style = "green" if coverage["complete"] else "bold yellow"
    console.print(f"[{style}]coverage:[/] {escape(coverage['summary'])}", highlight=False)
    for family in coverage["families"]:
        if family["status"] == "not-audited":
            why = "; ".join(family["reasons"])
            console.print(f"  - {family['family']} not audited: {why}", markup=False)
    for note in coverage["notes"]:
        console.print(f"[bold yellow]note:[/] {escape(note)}", highlight=False)


@cli.command("rules")
def list_rules() -> None:
    """List every rule: id, family, severity, what it needs, whether its extra is installed."""
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("id", "name", "family", "severity", "requires", "extra"):
        table.add_column(column)
    for registered in registered_rules():
        rule = registered.load()
        meta = rule.meta
        extra = "-" if meta.extra is None else (
            f"{meta.extra} (installed)" if extra_installed(rule) else f"{meta.extra} (missing)"
        )
        requires = ", ".join(sorted(r.value for r in meta.requires))
        table.add_row(meta.id, meta.name, meta.family.value, meta.severity.value, requires, extra)
    _console(stderr=False).print(table)


@cli.command()
@click.argument("rule_id")
def explain(rule_id: str) -> None:
    """Print the documentation of RULE_ID."""
    wanted = rule_id.upper()
    for registered in registered_rules():
        if registered.id == wanted:
            text = rule_markdown(registered.load())
            if sys.stdout.isatty():
                _console(stderr=False).print(Markdown(text))
            else:
                click.echo(text, nl=False)
            return
    raise UsageError(f"unknown rule {rule_id!r}; `mlaudit rules` lists them")


@cli.group()
def db() -> None:
    """The offline vulnerability database MLA601 reads (OSV's PyPI export)."""


@db.command("fetch")
@click.option("--dest", type=_PATH, help="Folder to write PyPI-all.zip to (default: the cache).")
@click.option("--url", help="Download from this mirror instead of OSV's bucket.")
def db_fetch(dest: Path | None, url: str | None) -> None:
    """Download OSV's PyPI export: the only mlaudit command that uses the network."""
    try:
        from mlaudit.deps.fetch import OSV_PYPI_URL, fetch
    except ImportError:
        raise UsageError("db fetch needs the 'deps' extra: pip install 'mlaudit[deps]'") from None
    console = _console(stderr=True)
    fetched = fetch(url or OSV_PYPI_URL, dest, lambda m: console.print(m, markup=False))
    info = fetched.info
    console.print(
        f"{fetched.size / 1e6:.1f} MB, {info.records} records ({info.withdrawn} withdrawn), "
        f"newest modified {info.newest_modified}, sha256 {info.sha256}",
        markup=False,
    )
    click.echo(str(fetched.path))


# keygen, sign, verify, diff, baseline, archive: they read reports and keys, never scan.
for _command in COMMANDS:
    cli.add_command(_command)


def _console(*, stderr: bool) -> Console:
    """Rich console; when not a terminal (CI logs, pipes): no colour and no hard wrapping."""
    stream = sys.stderr if stderr else sys.stdout
    return Console(stderr=stderr, highlight=False, width=None if stream.isatty() else 200)


def _error_line(message: str) -> None:
    first = message.strip().splitlines()[0] if message.strip() else "error"
    click.echo(f"mlaudit: error: {first}", err=True)


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point: maps every outcome to the documented exit codes."""
    try:
        # The arguments ride along as the context object: the report records the command
        # that was run, also when mlaudit is called in-process with an argument list.
        arguments = list(argv) if argv is not None else sys.argv[1:]
        code = cli.main(args=arguments, prog_name="mlaudit", standalone_mode=False, obj=arguments)
    except click.exceptions.Abort:
        _error_line("interrupted")
        sys.exit(EXIT_USAGE)
    except click.exceptions.ClickException as error:
        _error_line(error.format_message())
        sys.exit(EXIT_USAGE)
    except UsageError as error:
        _error_line(str(error))
        sys.exit(EXIT_USAGE)
    except KeyboardInterrupt:
        _error_line("interrupted")
        sys.exit(EXIT_USAGE)
    except Exception as error:  # a bug in mlaudit: still one line and exit 2, never a traceback
        if os.environ.get("MLAUDIT_TRACEBACK"):
            traceback.print_exc()
        _error_line(f"internal error: {type(error).__name__}: {error}")
        sys.exit(EXIT_USAGE)
    sys.exit(code if isinstance(code, int) else EXIT_PASSED)
