"""bandit, run in-process over a source tree in bounded memory (MLA501 and MLA502).

bandit's own programmatic API does the work: ``BanditConfig`` reads its configuration,
``BanditManager.discover_files`` finds the files exactly as ``bandit -r`` would (``include``
and ``exclude_dirs`` globs), and ``BanditManager.run_tests`` runs every registered test,
mlaudit's plugin included, honouring ``# nosec``. No subprocess, so nothing is added to
bandit's own time.

Batches: the files, sorted by name, are scanned in fixed batches of :data:`BATCH_FILES`
(the same batches whoever scans them), each with a fresh manager and a full garbage
collection after it: a ``BanditManager`` keeps every result and per-file metric of its run,
and the ASTs it walks are cycles only a full collection frees, so only each file's compact
plain-JSON record (:func:`scan_files`) outlives a batch, and memory stays bounded. A batch is
scanned here or, with a cluster, on a Dask worker (:mod:`mlaudit.code.batches`); the run is
assembled from the records in file order either way, so both give the same issues, in the
same order, with the same paths. Progress (files scanned, ETA) is reported after each round.

Each call runs bandit: MLA501 and MLA502 share one run per audit through the run's cache
(:mod:`mlaudit.core.runcache`), and nothing is kept once the audit ends.
"""

from __future__ import annotations

import configparser
import gc
import logging
import os
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlaudit.code.plugin import ML_TESTS
from mlaudit.core.errors import ConfigError
from mlaudit.core.findings import JsonValue

with warnings.catch_warnings():
    # bandit passes stevedore an argument stevedore has deprecated: nothing a user can act on,
    # so it stays out of the report's warnings.
    warnings.simplefilter("ignore", DeprecationWarning)
    from bandit.core import config as bandit_config
    from bandit.core import constants, extension_loader, manager, utils

# Files per batch: fixed, whatever the number of workers, so a batch is the same everywhere.
BATCH_FILES = 50
_MAX_CODE = 300

# bandit logs a file it cannot parse as an error and unknown nosec ids as warnings; with no
# logging configured Python would print them to stderr. mlaudit reports them instead (the
# skipped files are in the result), so bandit's log goes nowhere.
logging.getLogger("bandit").addHandler(logging.NullHandler())
logging.getLogger("bandit").propagate = False


@dataclass(frozen=True)
class BanditOptions:
    """What bandit is told: its configuration file, test selection, exclusions, nosec."""

    config_file: Path | None = None
    tests: frozenset[str] = frozenset()
    skips: frozenset[str] = frozenset()
    excluded_paths: tuple[str, ...] = ()
    ignore_nosec: bool = False
    sources: tuple[str, ...] = ()


@dataclass(frozen=True)
class CodeIssue:
    path: str
    relative: str
    line: int
    column: int
    test_id: str
    test_name: str
    severity: str
    confidence: str
    cwe: int | None
    text: str
    code: str


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class BanditRun:
    files: int
    lines: int
    nosec: int
    issues: tuple[CodeIssue, ...]
    skipped: tuple[SkippedFile, ...]

    @property
    def bandit_version(self) -> str:
        return metadata.version("bandit")


def plugin_loaded() -> bool:
    """Whether bandit found mlaudit's tests through the ``bandit.plugins`` entry points."""
    return set(ML_TESTS) <= set(extension_loader.MANAGER.plugins_by_id)


def _mlaudit_tests() -> set[str]:
    """The ids of every bandit test mlaudit registers (its ML tests and its serving tests)."""
    return {
        plugin.plugin._test_id for plugin in extension_loader.MANAGER.plugins
        if plugin.plugin.__module__.startswith("mlaudit.")
    }


def _ini_options(root: Path) -> dict[str, str]:
    """The ``[bandit]`` section of a ``.bandit`` file at the root, as ``bandit -r`` reads it."""
    path = root / ".bandit"
    if not path.is_file():
        return {}
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
    except (configparser.Error, UnicodeDecodeError) as error:
        raise ConfigError(f"{path} is not a valid bandit ini file: {error}") from None
    return dict(parser.items("bandit")) if parser.has_section("bandit") else {}


def _csv(value: str | None) -> frozenset[str]:
    return frozenset(v.strip() for v in (value or "").split(",") if v.strip())


def _has_bandit_table(pyproject: Path) -> bool:
    try:
        return "[tool.bandit" in pyproject.read_text("utf-8", errors="replace")
    except OSError:
        return False


def discover_options(
    root: Path, config: Path | None = None, ignore_nosec: bool = False
) -> BanditOptions:
    """bandit's configuration for ``root``: an explicit file, else the tree's own.

    The tree's own is a ``.bandit`` ini file at its root (``tests``, ``skips``, ``exclude``,
    ``configfile``) and the configuration file it names, else ``pyproject.toml`` at the root
    when it has a ``[tool.bandit]`` table. Relative paths are read from the root.
    """
    ini = _ini_options(root)
    sources = [str(root / ".bandit")] if ini else []
    config_file = config
    if config_file is None and ini.get("configfile"):
        config_file = root / ini["configfile"]
    if config_file is None and _has_bandit_table(root / "pyproject.toml"):
        config_file = root / "pyproject.toml"
    if config_file is not None:
        if not config_file.is_file():
            raise ConfigError(f"bandit configuration {config_file} does not exist")
        sources.append(str(config_file))
    excluded = tuple(str(root / p) for p in sorted(_csv(ini.get("exclude"))))
    return BanditOptions(
        config_file=config_file,
        tests=_csv(ini.get("tests")),
        skips=_csv(ini.get("skips")),
        excluded_paths=excluded,
        ignore_nosec=ignore_nosec,
        sources=tuple(sources),
    )


def _bandit_config(options: BanditOptions) -> Any:
    path = str(options.config_file) if options.config_file else None
    try:
        return bandit_config.BanditConfig(config_file=path)
    except utils.ConfigError as error:
        raise ConfigError(f"bandit configuration: {error}") from None


def _profile(config: Any, options: BanditOptions) -> dict[str, set[str]]:
    """bandit's test selection: the config file's ``tests``/``skips`` plus the ini file's.

    An explicit ``tests`` list still runs mlaudit's tests (MLA502 and MLA802 are selected in
    mlaudit, not in bandit's configuration); ``skips`` can turn them off like any bandit test.
    """
    tests = set(config.get_option("tests") or []) | options.tests
    skips = set(config.get_option("skips") or []) | options.skips
    if tests:
        tests |= _mlaudit_tests() - skips
    return {"include": tests, "exclude": skips}


def _manager(config: Any, profile: dict[str, set[str]], options: BanditOptions) -> Any:
    return manager.BanditManager(
        config, "file", quiet=True, profile=profile, ignore_nosec=options.ignore_nosec
    )


@dataclass(frozen=True)
class SourceTree:
    """The files bandit scans under ``root``, sorted by name, and their fixed batches."""

    root: Path
    files: tuple[str, ...]

    @property
    def base(self) -> Path:
        """What the files' names are relative to: the root, or the folder of a one-file root."""
        return self.root if self.root.is_dir() else self.root.parent

    def name(self, path: str) -> str:
        return Path(os.path.relpath(path, self.base)).as_posix()

    def batches(self) -> list[tuple[str, ...]]:
        return [
            self.files[start : start + BATCH_FILES]
            for start in range(0, len(self.files), BATCH_FILES)
        ]


def discover_tree(root: Path, options: BanditOptions) -> SourceTree:
    """The files ``bandit -r root`` would scan (its ``include`` and ``exclude_dirs``, the
    ini file's ``exclude``), sorted by their names under the root (every path starts with
    the root, so sorting the paths sorts the names)."""
    config = _bandit_config(options)
    discovery = _manager(config, _profile(config, options), options)
    discovery.discover_files([str(root)], True, ",".join(options.excluded_paths))
    files: list[str] = discovery.files_list
    return SourceTree(root, tuple(sorted(files)))


def _code_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _issue_record(issue: Any, lines: list[str]) -> dict[str, JsonValue]:
    line = int(issue.lineno or 1)
    code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
    return {
        "line": line,
        "column": max(int(issue.col_offset), 0) + 1,
        "test_id": issue.test_id,
        "test_name": issue.test,
        "severity": issue.severity,
        "confidence": issue.confidence,
        "cwe": int(issue.cwe.id) if issue.cwe and issue.cwe.id else None,
        "text": issue.text,
        "code": code[:_MAX_CODE],
    }


def scan_files(paths: Sequence[str], options: BanditOptions) -> list[JsonValue]:
    """bandit over ``paths`` (one batch, files on this machine): one plain record per path,
    in order, holding no path (the caller knows which file it asked for): ``loc`` and
    ``nosec`` counts, ``skipped`` (why bandit could not scan it, or null) and ``issues``.

    A file's record depends on its bytes alone, not on the batch it came in.
    """
    config = _bandit_config(options)
    batch = _manager(config, _profile(config, options), options)
    batch.files_list = list(paths)
    batch.run_tests()
    everything = constants.RANKING[0]  # UNDEFINED: all of it, as `bandit -r` reports
    issues: dict[str, list[JsonValue]] = {path: [] for path in paths}
    lines_of: dict[str, list[str]] = {}
    for issue in batch.get_issue_list(everything, everything):
        if issue.fname not in lines_of:
            lines_of[issue.fname] = _code_lines(issue.fname)
        issues[issue.fname].append(_issue_record(issue, lines_of[issue.fname]))
    skipped = dict(batch.get_skipped())
    records: list[JsonValue] = []
    for path in paths:
        counts = batch.metrics.data.get(path, {})
        records.append({
            "loc": int(counts.get("loc", 0)),
            "nosec": int(counts.get("nosec", 0)),
            "skipped": str(skipped[path]) if path in skipped else None,
            "issues": issues[path],
        })
    del batch
    # bandit links every AST node to its parent and siblings: each file's tree is a web
    # of reference cycles that only the cycle collector frees, and only when it runs a
    # full collection, so without this the garbage of many batches piles up.
    gc.collect()
    return records


def _int(record: Mapping[str, JsonValue], key: str) -> int:
    value = record.get(key)
    return value if isinstance(value, int) else 0


def _issue(path: str, relative: str, record: Mapping[str, JsonValue]) -> CodeIssue:
    cwe = record.get("cwe")
    return CodeIssue(
        path=path,
        relative=relative,
        line=_int(record, "line"),
        column=_int(record, "column"),
        test_id=str(record["test_id"]),
        test_name=str(record["test_name"]),
        severity=str(record["severity"]),
        confidence=str(record["confidence"]),
        cwe=cwe if isinstance(cwe, int) else None,
        text=str(record["text"]),
        code=str(record["code"]),
    )


def assemble(tree: SourceTree, records: Sequence[JsonValue]) -> BanditRun:
    """The run from one record per file of ``tree``, in its order: each issue is reported at
    the file's path here, relative to the root as ``bandit -r`` names it, wherever the
    file was scanned."""
    issues: list[CodeIssue] = []
    skipped: list[SkippedFile] = []
    lines = nosec = 0
    for path, record in zip(tree.files, records, strict=True):
        found = record.get("issues") if isinstance(record, dict) else None
        if not isinstance(record, dict) or not isinstance(found, list):
            raise ValueError(f"bandit's record for {path} is malformed")
        relative = Path(os.path.relpath(path, tree.root)).as_posix()
        issues.extend(_issue(path, relative, i) for i in found if isinstance(i, dict))
        if record.get("skipped") is not None:
            skipped.append(SkippedFile(path, str(record["skipped"])))
        lines += _int(record, "loc")
        nosec += _int(record, "nosec")
    return BanditRun(len(tree.files), lines, nosec, tuple(issues), tuple(skipped))


# Batch numbers in, one value per batch out (the list of its files' records), in order.
BatchScan = Callable[[Sequence[int]], list[JsonValue]]


def run_bandit(
    root: Path,
    options: BanditOptions,
    *,
    progress: Callable[[str], None] = lambda _: None,
    check_budget: Callable[[], None] = lambda: None,
    remote: Callable[[SourceTree], tuple[BatchScan, int]] | None = None,
) -> BanditRun:
    """Every bandit test (mlaudit's included) over ``root``, batch by batch.

    ``remote``, given the tree, answers how its batches are scanned elsewhere (a cluster)
    and how many at a time; without it each batch is scanned here, one at a time. The
    budget is checked before each round and progress reported after it.
    """
    tree = discover_tree(root, options)
    batches = tree.batches()

    def scan_here(numbers: Sequence[int]) -> list[JsonValue]:
        return [scan_files(batches[n], options) for n in numbers]

    scan, at_once = remote(tree) if remote is not None else (scan_here, 1)
    step = max(at_once, 1)
    records: list[JsonValue] = []
    started = time.monotonic()
    for first in range(0, len(batches), step):
        check_budget()
        numbers = range(first, min(first + step, len(batches)))
        scanned = scan(numbers)
        if len(scanned) != len(numbers):
            raise ValueError(f"bandit: {len(scanned)} results for {len(numbers)} batches")
        for number, batch_records in zip(numbers, scanned, strict=True):
            if not isinstance(batch_records, list) or len(batch_records) != len(batches[number]):
                raise ValueError(f"bandit: batch {number} came back malformed")
            records.extend(batch_records)
        spent = time.monotonic() - started
        eta = spent / len(records) * (len(tree.files) - len(records))
        progress(f"files scanned {len(records)}/{len(tree.files)}, ETA {eta:.0f} s")
    return assemble(tree, records)
