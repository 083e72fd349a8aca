"""The compliance commands: keygen, sign, verify, diff, baseline and the archive group.

They live beside ``mlaudit.cli.main`` (which registers them on the ``mlaudit`` group) because they
never scan: each reads reports, envelopes, keys or an archive. Errors follow the CLI contract:
a :class:`UsageError` is exit 2 with one line on stderr; a check that fails is exit 1.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mlaudit.compliance import ENVELOPE_NAME
from mlaudit.config import resolve
from mlaudit.core.atomic import write_files_atomically
from mlaudit.core.errors import UsageError
from mlaudit.core.hashing import sha256_file, sha256_tree
from mlaudit.verdict.scoring import FAIL_ON_CHOICES
from mlaudit.verdict.waivers import draft_waivers

# The commands import what they use when they run, so `mlaudit --help` stays fast.
if TYPE_CHECKING:
    from mlaudit.compliance.archive import Entry
    from mlaudit.compliance.regression import Comparison

# Exit codes of the checking commands: 0 the check held, 1 it did not (what failed is said).
HELD, FAILED = 0, 1
_PATH = click.Path(path_type=Path, dir_okay=True)
_DATE = click.DateTime(formats=["%Y-%m-%d"])


def _digest(path: Path, what: str) -> str:
    """A file's sha256, or a folder's the way the scan computed it for a model folder."""
    try:
        return sha256_tree(path)[0] if path.is_dir() else sha256_file(path)
    except OSError as error:
        raise UsageError(f"cannot read {what} {path}: {error.strerror}") from None


# --------------------------------------------------------------------------- keys and signing


@click.command()
@click.option("--out", "directory", type=_PATH, required=True, help="Folder for the key pair.")
def keygen(directory: Path) -> int:
    """Make an Ed25519 key pair: mlaudit.key (private) and mlaudit.pub (public).

    The private key is encrypted with MLAUDIT_KEY_PASSPHRASE when it is set.
    """
    from mlaudit.compliance.attest import (
        generate_keys,
        key_id,
        load_verify_key,
        passphrase_from_environment,
    )

    passphrase = passphrase_from_environment()
    private, public = generate_keys(directory, passphrase)
    if passphrase is None:
        click.echo(
            "mlaudit: warning: the private key is not encrypted (set MLAUDIT_KEY_PASSPHRASE)",
            err=True,
        )
    click.echo(f"private key {private}")
    click.echo(f"public key  {public}")
    click.echo(f"key id      {key_id(load_verify_key(public))}")
    return HELD


@click.command()
@click.argument("report_path", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("--key", "key_path", type=_PATH, required=True, help="Private key (PEM).")
@click.option("-o", "--output", type=_PATH, help=f"Envelope (default: {ENVELOPE_NAME} beside).")
def sign(report_path: Path, key_path: Path, output: Path | None) -> int:
    """Sign REPORT.json: a DSSE envelope around an in-toto statement binding the report, the
    model and the data by sha256."""
    from mlaudit.compliance.attest import (
        load_signing_key,
        passphrase_from_environment,
        read_input,
        sign_report,
    )
    from mlaudit.reports.build import parse_report

    key = load_signing_key(key_path, passphrase_from_environment())
    data = read_input(report_path, "report")
    parse_report(data, report_path)  # exit 2 unless it is a report this mlaudit reads
    envelope = sign_report(data, key, datetime.now(UTC))
    target = output or report_path.parent / ENVELOPE_NAME
    try:
        (written,) = write_files_atomically(target.parent, {target.name: envelope})
    except OSError as error:
        raise UsageError(f"cannot write {target}: {error.strerror}") from None
    click.echo(str(written))
    return HELD


@click.command("verify")
@click.argument("envelope_path", metavar="ENVELOPE", type=click.Path(path_type=Path))
@click.option("--key", "key_path", type=_PATH, required=True,
              help="Public key (PEM): the only key trusted, never one from the envelope.")
@click.option("--report", "report_path", type=_PATH, help="Check this is the attested report.")
@click.option("--model", "model_path", type=_PATH, help="Check this is the attested model.")
@click.option("--data", "data_paths", type=_PATH, multiple=True,
              help="Check this is an attested data file (repeatable).")
@click.option("--max-age", help="Fail when the audit is older than this (90d, 12h, 2w).")
def verify_command(
    *,
    envelope_path: Path,
    key_path: Path,
    report_path: Path | None,
    model_path: Path | None,
    data_paths: tuple[Path, ...],
    max_age: str | None,
) -> int:
    """Verify an attestation: exit 0 verified, 1 a check failed (each is listed), 2 unreadable."""
    from mlaudit.compliance.attest import Given, load_verify_key, parse_duration, read_input, verify

    public_key = load_verify_key(key_path)
    given = Given(
        report=(str(report_path), _digest(report_path, "report")) if report_path else None,
        model=(str(model_path), _digest(model_path, "model")) if model_path else None,
        data=tuple((str(p), _digest(p, "data file")) for p in data_paths),
        max_age=parse_duration(max_age) if max_age else None,
    )
    result = verify(read_input(envelope_path, "envelope"), public_key, given, datetime.now(UTC))
    for check in result.checks:
        click.echo(f"{'ok' if check.ok else 'FAIL':<4}  {check.name}: {check.detail}")
    if result.ok:
        click.echo(f"verified {envelope_path}")
        return HELD
    failed = ", ".join(check.name for check in result.failed)
    click.echo(f"mlaudit: verification failed: {failed}", err=True)
    return FAILED


# --------------------------------------------------------------------------- diff and baseline


def _side(label: str, path: Path, report: dict[str, Any]) -> str:
    model = report["subject"]["model"]
    digest = (model.get("sha256") or "n/a")[:12]
    return (
        f"{label}: {path} (model {model['path']} {digest}, score {report['score']:g} "
        f"{report['grade']}, {report['run']['finished_at']})"
    )


def _finding_line(mark: str, finding: dict[str, Any]) -> str:
    return f"  {mark} {finding['rule_id']} {finding['severity']}: {finding['title']}"


def _diff_text(comparison: Comparison) -> list[str]:

    lines = [
        f"findings: {len(comparison.new)} new, {len(comparison.worsened)} worse, "
        f"{len(comparison.fixed)} fixed, {len(comparison.unchanged)} unchanged"
    ]
    lines += [_finding_line("+", dict(f)) for f in comparison.new]
    lines += [
        _finding_line("^", dict(w.new)) + f" (was {w.old['severity']})"
        for w in comparison.worsened
    ]
    lines += [_finding_line("-", dict(f)) for f in comparison.fixed]
    if comparison.new_vulnerabilities:
        lines.append(f"new vulnerabilities: {len(comparison.new_vulnerabilities)}")
        lines += [_finding_line("+", dict(f)) for f in comparison.new_vulnerabilities]
    if comparison.metrics:
        lines.append("metrics:")
        lines += [
            f"  {'REGRESSED' if m.regressed else 'ok':<9} {m.reason()}" for m in comparison.metrics
        ]
    if comparison.not_compared:
        lines.append(f"not compared (measured in one report only): "
                     f"{', '.join(comparison.not_compared)}")
    verdict = (
        f"regressed: {len(comparison.regressions)} regression(s)" if comparison.regressed
        else "no regression"
    )
    return [*lines, verdict]


@click.command()
@click.argument("old_path", metavar="OLD.json", type=click.Path(path_type=Path))
@click.argument("new_path", metavar="NEW.json", type=click.Path(path_type=Path))
@click.option("--format", "output_format", type=click.Choice(("text", "json")), default="text",
              help="Output on stdout.")
@click.option("--fail-on", type=click.Choice(FAIL_ON_CHOICES), default="low", show_default=True,
              help="Lowest severity of a new or worse finding that is a regression.")
@click.option("--config", "config_path", type=_PATH, help="Configuration file (tolerances).")
@click.option("--auc-tolerance", type=click.FloatRange(0, 1), help="Membership AUC rise allowed.")
@click.option("--tpr-tolerance", type=click.FloatRange(0, 1), help="Membership TPR rise allowed.")
@click.option("--robust-accuracy-tolerance", type=click.FloatRange(0, 1),
              help="Robust accuracy fall allowed.")
def diff(
    *,
    old_path: Path,
    new_path: Path,
    output_format: str,
    fail_on: str,
    config_path: Path | None,
    auc_tolerance: float | None,
    tpr_tolerance: float | None,
    robust_accuracy_tolerance: float | None,
) -> int:
    """Compare two reports: exit 1 when NEW regressed against OLD."""
    from mlaudit.compliance.regression import compare
    from mlaudit.reports.build import read_report

    old, new = read_report(old_path), read_report(new_path)
    given = {
        "membership_auc": auc_tolerance,
        "membership_tpr": tpr_tolerance,
        "robust_accuracy": robust_accuracy_tolerance,
    }
    tolerances = dataclasses.replace(
        resolve({}, config_path).tolerances,
        **{name: value for name, value in given.items() if value is not None},
    )
    comparison = compare(old["results"], new["results"], tolerances, fail_on)
    if output_format == "json":
        document = {"old": str(old_path), "new": str(new_path), **comparison.document()}
        click.echo(json.dumps(document, indent=2, ensure_ascii=False))
    else:
        lines = [_side("old", old_path, old), _side("new", new_path, new), *_diff_text(comparison)]
        click.echo("\n".join(lines))
    return FAILED if comparison.regressed else HELD


@click.command("baseline")
@click.argument("report_path", metavar="REPORT.json", type=click.Path(path_type=Path))
@click.option("-o", "--output", type=_PATH, help="Write the waivers here (default: stdout).")
@click.option("--pyproject", is_flag=True, help="Tables as [[tool.mlaudit.waivers]].")
def baseline_command(report_path: Path, output: Path | None, pyproject: bool) -> int:
    """Draft a waiver for every finding of REPORT.json, for a person to fill in."""
    from mlaudit.reports.build import read_report

    report = read_report(report_path)
    table = "tool.mlaudit.waivers" if pyproject else "waivers"
    text = draft_waivers(report, str(report_path), datetime.now(UTC).date(), table=table)
    if output is None:
        click.echo(text, nl=False)
        return HELD
    if output.exists():
        raise UsageError(f"{output} exists; drafting over it would lose its reasons")
    try:
        write_files_atomically(output.parent, {output.name: text.encode()})
    except OSError as error:
        raise UsageError(f"cannot write {output}: {error.strerror}") from None
    click.echo(str(output))
    return HELD


# --------------------------------------------------------------------------- the archive


_STORE = click.option("--store", type=_PATH, required=True, help="The archive folder.")


@click.group("archive")
def archive_group() -> None:
    """A tamper-evident archive of signed reports: add, list, show, verify."""


@archive_group.command("add")
@click.argument("envelope_path", metavar="ENVELOPE", type=click.Path(path_type=Path))
@_STORE
@click.option("--report", "report_path", type=_PATH,
              help="The attested report (default: report.json beside the envelope).")
def archive_add(envelope_path: Path, store: Path, report_path: Path | None) -> int:
    """Archive ENVELOPE and the report it attests (the store is created when missing)."""
    from mlaudit.compliance.archive import Archive, ArchiveIntegrityError
    from mlaudit.compliance.attest import read_input

    envelope = read_input(envelope_path, "envelope")
    report = (
        read_input(report_path, "report") if report_path
        else _report_beside(envelope_path, envelope)
    )
    archive = Archive.open(store, create=True)
    try:
        entry, added = archive.add(envelope, report, datetime.now(UTC))
    except ArchiveIntegrityError as error:
        click.echo(f"mlaudit: {error}", err=True)
        return FAILED
    state = "archived as" if added else "already archived as"
    click.echo(f"{state} entry {entry.seq} (envelope {entry.envelope[:16]}…)")
    click.echo(f"head {archive.head()}")
    return HELD


def _report_beside(envelope_path: Path, envelope: bytes) -> bytes | None:
    """report.json next to the envelope, when it is the attested one."""
    from mlaudit.compliance.attest import VerificationError, read_input, read_statement

    candidate = envelope_path.parent / "report.json"
    if not candidate.is_file():
        return None
    data = read_input(candidate, "report")
    try:
        attested = read_statement(envelope)["predicate"]["report"].get("sha256")
    except VerificationError:
        return None  # add itself says what is wrong with the envelope
    if hashlib.sha256(data).hexdigest() == attested:
        return data
    click.echo(f"mlaudit: warning: {candidate} is not the attested report; not stored", err=True)
    return None


def _entry_line(entry: Entry) -> str:

    gate = "passed" if entry.gate_passed else "FAILED"
    digest = (entry.model_sha256 or "n/a")[:12]
    return (
        f"{entry.seq:>5}  {entry.audited_at:<20}  {entry.model_name or '-':<28}  {digest:<12}  "
        f"{entry.grade:<5}  {entry.score:>5g}  {gate}"
    )


@archive_group.command("list")
@_STORE
@click.option("--model", help="Part of the model's file name.")
@click.option("--sha256", help="The model's sha256 or a prefix of it.")
@click.option("--since", type=_DATE, help="Audited on or after this date (YYYY-MM-DD).")
@click.option("--until", type=_DATE, help="Audited on or before this date (YYYY-MM-DD).")
@click.option("--grade", type=click.Choice(("A", "B", "C", "D", "F"), case_sensitive=False))
@click.option("--gate", type=click.Choice(("passed", "failed")))
@click.option("--json", "as_json", is_flag=True, help="JSON on stdout.")
def archive_list(
    *,
    store: Path, model: str | None, sha256: str | None, since: datetime | None,
    until: datetime | None, grade: str | None, gate: str | None, as_json: bool,
) -> int:
    """List archived entries, oldest first, filtered."""
    from mlaudit.compliance.archive import Archive, Query

    query = Query(
        model,
        sha256,
        since.date().isoformat() if since else None,
        until.date().isoformat() if until else None,
        grade,
        None if gate is None else gate == "passed",
    )
    entries = Archive.open(store).entries(query)
    if as_json:
        click.echo(json.dumps([_entry_document(e) for e in entries], indent=2))
        return HELD
    click.echo(f"{'#':>5}  {'audited':<20}  {'model':<28}  {'sha256':<12}  grade  score  gate")
    for entry in entries:
        click.echo(_entry_line(entry))
    return HELD


def _entry_document(entry: Entry) -> dict[str, Any]:

    return {**dataclasses.asdict(entry), "hash": entry.hash}


@archive_group.command("show")
@click.argument("identifier", metavar="ID")
@_STORE
@click.option("--raw", type=click.Choice(("envelope", "report")),
              help="Write the stored envelope or report to stdout instead.")
def archive_show(identifier: str, store: Path, raw: str | None) -> int:
    """Show entry ID (its number, or 8+ hex digits of its hash or envelope sha256)."""
    from mlaudit.compliance.archive import Archive
    from mlaudit.compliance.attest import read_input

    archive = Archive.open(store)
    entry = archive.find(identifier)
    if raw is not None:
        digest = entry.envelope if raw == "envelope" else entry.report
        if digest is None:
            raise UsageError(f"entry {entry.seq} has no stored report")
        sys.stdout.flush()
        sys.stdout.buffer.write(read_input(archive.object_path(digest), raw))
        sys.stdout.buffer.flush()
        return HELD
    document = {
        **_entry_document(entry),
        "files": {
            "envelope": str(archive.object_path(entry.envelope)),
            "report": str(archive.object_path(entry.report)) if entry.report else None,
        },
    }
    click.echo(json.dumps(document, indent=2))
    return HELD


@archive_group.command("verify")
@_STORE
@click.option("--key", "key_path", type=_PATH, help="Also check every envelope's signature.")
@click.option("--head", help="A head hash recorded elsewhere that the log must still contain.")
def archive_verify(store: Path, key_path: Path | None, head: str | None) -> int:
    """Check the log's chain, the index and every stored file: exit 0 sound, 1 not (each
    problem is named), 2 not an archive."""
    from mlaudit.compliance.archive import Archive
    from mlaudit.compliance.attest import load_verify_key

    public_key = load_verify_key(key_path) if key_path else None
    archive = Archive.open(store)
    problems = archive.verify(public_key, head)
    for problem in problems:
        click.echo(f"FAIL  {problem.kind}: {problem.message}")
    if problems:
        click.echo(f"mlaudit: archive verification failed: {len(problems)} problem(s)", err=True)
        return FAILED
    click.echo(f"archive ok: {len(archive.entries())} entries, head {archive.head()}")
    return HELD


COMMANDS = (keygen, sign, verify_command, diff, baseline_command, archive_group)
