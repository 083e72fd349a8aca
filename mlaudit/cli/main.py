"""The ``mlaudit`` command line.

Exit codes: 0 the gate passed, 1 the gate failed, 2 usage, config or input error (one line on
stderr, no traceback, no report written). Every error path, Click's own included, ends in 2.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shlex
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mlaudit.cli.compliance import COMMANDS
from mlaudit.compliance import ENVELOPE_NAME
from mlaudit.config import PROFILES
from mlaudit.core.errors import EXIT_PASSED, EXIT_USAGE, InputError, UsageError
from mlaudit.core.load_options import MODEL_OUTPUTS
from mlaudit.core.version import __version__
from mlaudit.isolation import ISOLATION_MODES
from mlaudit.reports import FORMATS
from mlaudit.verdict.scoring import FAIL_ON_CHOICES

# What a command needs is imported when it runs: `mlaudit --help` must not wait for the rules,
# numpy, scipy, pandas and the crypto library (issue 16: under 0.3 s).
if TYPE_CHECKING:
    from mlaudit import api

_PATH = click.Path(path_type=Path, dir_okay=True)
ARTIFACT_FAMILY = "MLA1"
# What a report folder name keeps of a file's path; anything else (separators included) is _.
_UNSAFE_IN_FOLDER_NAME = re.compile(r"[^A-Za-z0-9._-]")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mlaudit")
def cli() -> None:
    """Audit a trained machine-learning model before release."""


def _command_line() -> str:
    """The command line being run, as the report records it."""
    arguments = click.get_current_context().find_root().obj or sys.argv[1:]
    return "mlaudit " + shlex.join(arguments)


@cli.command()
@click.argument("model")
@click.option("--data", type=_PATH, help="A data sample to query the model with.")
@click.option("--train", type=_PATH, help="Training data (members); also serves as the sample.")
@click.option("--holdout", type=_PATH, help="Held-out data (non-members); also the sample.")
@click.option("--reference", type=_PATH,
              help="Data drift is measured against (default: the training data).")
@click.option("--current", type=_PATH, help="Current (production) data, checked for drift.")
@click.option("--target", help="Name of the label column.")
@click.option("--source", type=_PATH, help="Source tree of the training and serving code.")
@click.option("--requirements", type=_PATH, multiple=True, help="Requirements file (repeatable).")
@click.option("--env", is_flag=True, help="Audit the installed distributions too.")
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
@click.option("--dask-scheduler", metavar="ADDRESS",
              help="Fan reference-model fits out to this Dask scheduler (tcp://host:8786).")
@click.option("--workers", type=click.IntRange(min=1),
              help="Fan them out to a local Dask cluster of this many worker processes.")
@click.option("--config", type=_PATH, help="Configuration file (TOML).")
@click.option("-q", "--quiet", is_flag=True, help="Only the verdict line, and errors.")
@click.option("-v", "--verbose", is_flag=True, help="Show each step, with the time it started.")
@click.option("-o", "--output-dir", type=_PATH, help="Report directory (default mlaudit-report).")
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True, help="Output.")
@click.option("--nlp-model", help="An installed spaCy model for the personal-data rules.")
@click.option("--baseline", type=_PATH, help="Gate only on what is new against this report.")
@click.option("--sign-key", type=_PATH, help=f"Sign the report into {ENVELOPE_NAME} (Ed25519).")
@click.option("--model-class", metavar="MODULE:CALLABLE",
              help="Architecture of a PyTorch state dict (pkg.models:Net), code you vouch for.")
@click.option("--model-kwargs", metavar="JSON", callback=lambda _c, _p, v: _json_object(v),
              help='Keyword arguments for --model-class, as a JSON object: \'{"hidden": 64}\'.')
@click.option("--model-output", type=click.Choice(MODEL_OUTPUTS),
              help="How the model's raw outputs read, where its file cannot say.")
@click.option("--text-column", help="The data column a text model reads.")
def scan(
    model: str,
    *,
    quiet: bool,
    verbose: bool,
    output_dir: Path | None,
    formats: tuple[str, ...],
    sign_key: Path | None,
    **options: Any,
) -> int:
    """Scan MODEL (a file, or module:callable) and write the report."""
    from mlaudit import api
    from mlaudit.compliance.attest import load_signing_key, passphrase_from_environment
    from mlaudit.reports.console import Output, make_console

    out = Output(make_console(stderr=True), quiet, verbose)
    # The key is read before the scan, so a wrong passphrase fails in a second, not after it.
    signing_key = (
        load_signing_key(sign_key, passphrase_from_environment()) if sign_key else None
    )
    audit = api.scan(model, progress=out.progress, command=_command_line(), **options)
    # Flags over what the environment and the config file say, as for every other setting.
    written = audit.write(
        output_dir or Path(audit.settings.output_dir), formats or audit.settings.format,
        signing_key,
    )
    out.summary(audit.report, written)
    return audit.exit_code


@cli.command("scan-artifacts")
@click.argument("files", metavar="FILE...", nargs=-1, required=True)
@click.option("--select", multiple=True,
              help=f"Run only these {ARTIFACT_FAMILY}xx rule ids or prefixes (repeatable).")
@click.option("--ignore", multiple=True, help="Skip these rule ids or prefixes (repeatable).")
@click.option("--fail-on", type=click.Choice(FAIL_ON_CHOICES), help="Lowest failing severity.")
@click.option("--config", type=_PATH, help="Configuration file (TOML).")
@click.option("-o", "--output-dir", type=_PATH,
              help="Write a report per file into DIR/<file name>/ (default: no report).")
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True,
              help="Report format with -o (repeatable).")
def scan_artifacts(
    files: tuple[str, ...],
    *,
    select: tuple[str, ...],
    ignore: tuple[str, ...],
    fail_on: str | None,
    config: Path | None,
    output_dir: Path | None,
    formats: tuple[str, ...],
) -> int:
    """Scan each FILE's bytes with the artifact rules alone, never loading it: one line per
    file, and the worst exit code (for pre-commit hooks and CI)."""
    from rich.text import Text

    from mlaudit import api
    from mlaudit.reports.console import Verdict, make_console, printable

    if formats and output_dir is None:
        raise UsageError("--format needs -o DIR: without it scan-artifacts writes no report")
    outside = [s for s in select if not s.upper().startswith(ARTIFACT_FAMILY)]
    if outside:
        raise UsageError(
            f"--select {outside[0]} is not an artifact rule: scan-artifacts runs only the "
            f"{ARTIFACT_FAMILY}xx rules (mlaudit scan runs the others)"
        )
    # The selection is the command's own, never the configuration's (that one says what
    # `mlaudit scan` runs); everything else the configuration says applies.
    scan_file = functools.partial(
        api.scan, select=select or ARTIFACT_FAMILY, ignore=ignore, fail_on=fail_on,
        config=config, command=_command_line(),
    )
    console = make_console(stderr=True)
    folders: set[str] = set()
    worst = EXIT_PASSED
    for name in dict.fromkeys(files):
        audit = _scan_artifact(scan_file, name)
        if isinstance(audit, str):
            console.print(
                f"{printable(name)}: error: {printable(audit)}", markup=False, soft_wrap=True
            )
            worst = EXIT_USAGE
            continue
        line = Text.assemble(f"{printable(name)}: ", Verdict.of(audit.report).text())
        if audit.findings:
            top = max(audit.findings, key=lambda finding: finding.severity)
            line.append(f" · worst {top.rule_id} {top.severity.value}: {printable(top.title)}")
        if output_dir is not None:
            folder = output_dir / _folder_name(name, folders)
            audit.write(folder, formats or audit.settings.format)
            line.append(f" · report {folder}")
        console.print(line, soft_wrap=True)
        worst = max(worst, audit.exit_code)
    return worst


def _scan_artifact(scan_file: Callable[[str], api.Audit], name: str) -> api.Audit | str:
    """The audit of the file ``name``, or why it could not be read. Only errors about the file
    are returned: a bad option or configuration stops the command (the same for every file)."""
    # A name that is no file could read as module:callable, which scan would import; every
    # argument here is a file to read, so a missing one is an error, never an import.
    if not Path(name).exists():
        return "no such file"
    try:
        return scan_file(name)
    except InputError as error:
        return str(error)
    except OSError as error:
        return f"cannot read it: {error.strerror or error}"


def _json_object(text: str | None) -> dict[str, Any] | None:
    """``--model-kwargs``: a JSON object, or a usage error saying what is wrong with it."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise click.BadParameter(f"not JSON: {error.msg} at character {error.pos}") from None
    if not isinstance(value, dict):
        raise click.BadParameter("must be a JSON object of keyword arguments")
    return value


def _folder_name(name: str, taken: set[str]) -> str:
    """A folder of its own for ``name``'s report: its path with every character but letters,
    digits, ``.``, ``-`` and ``_`` as ``_`` (``models/a b.pkl``: ``models_a_b.pkl``), no
    leading dot, numbered when another file's name came out the same."""
    base = _UNSAFE_IN_FOLDER_NAME.sub("_", name).lstrip(".") or "_"
    folder, number = base, 1
    while folder in taken:
        number += 1
        folder = f"{base}-{number}"
    taken.add(folder)
    return folder


@cli.command("report")
@click.argument("report_path", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("--format", "formats", type=click.Choice(FORMATS), multiple=True, required=True,
              help="Format to render (repeatable).")
@click.option("-o", "--output-dir", type=_PATH, help="Directory (default: the report's own).")
def report_command(report_path: Path, formats: tuple[str, ...], output_dir: Path | None) -> int:
    """Re-render an archived REPORT.json in other formats, without the model or the data."""
    from mlaudit.core.atomic import write_files_atomically
    from mlaudit.reports import renderer_for
    from mlaudit.reports.build import read_report

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


@cli.command("rules")
def list_rules() -> None:
    """List every rule: id, family, severity, what it needs, whether its extra is installed."""
    from rich.table import Table

    from mlaudit.engine.registry import extra_installed, registered_rules
    from mlaudit.reports.console import make_console

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
    make_console(stderr=False).print(table)


@cli.command()
@click.argument("rule_id")
def explain(rule_id: str) -> None:
    """Print the documentation of RULE_ID."""
    from rich.markdown import Markdown

    from mlaudit.engine.registry import registered_rules
    from mlaudit.reports.console import make_console
    from mlaudit.reports.rule_pages import rule_markdown

    wanted = rule_id.upper()
    for registered in registered_rules():
        if registered.id == wanted:
            text = rule_markdown(registered.load())
            if sys.stdout.isatty():
                make_console(stderr=False).print(Markdown(text))
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
    from mlaudit.reports.console import make_console

    try:
        from mlaudit.deps.fetch import OSV_PYPI_URL, fetch
    except ImportError:
        raise UsageError("db fetch needs the 'deps' extra: pip install 'mlaudit[deps]'") from None
    console = make_console(stderr=True)
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
