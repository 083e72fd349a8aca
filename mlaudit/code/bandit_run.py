"""bandit, run in-process over a source tree in bounded memory (MLA501 and MLA502).

bandit's own programmatic API does the work: ``BanditConfig`` reads its configuration,
``BanditManager.discover_files`` finds the files exactly as ``bandit -r`` would (``include``
and ``exclude_dirs`` globs), and ``BanditManager.run_tests`` runs every registered test,
mlaudit's plugin included, honouring ``# nosec``. No subprocess, so nothing is added to
bandit's own time.

Bounded memory: a ``BanditManager`` keeps every result and per-file metric of its run, and
the ASTs it walks are cycles only a full garbage collection frees, so the files are scanned
in batches of :data:`BATCH_FILES`, each with a fresh manager and a collection after it; only
the compact :class:`CodeIssue` records (and the file list) outlive a batch. Progress is
reported after each batch.

Each call runs bandit: MLA501 and MLA502 share one run per audit through the run's cache
(:mod:`mlaudit.core.runcache`), and nothing is kept once the audit ends.
"""

from __future__ import annotations

import configparser
import gc
import logging
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlaudit.code.plugin import ML_TESTS
from mlaudit.core.errors import ConfigError

with warnings.catch_warnings():
    # bandit passes stevedore an argument stevedore has deprecated: nothing a user can act on,
    # so it stays out of the report's warnings.
    warnings.simplefilter("ignore", DeprecationWarning)
    from bandit.core import config as bandit_config
    from bandit.core import constants, extension_loader, manager, utils

BATCH_FILES = 200
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


def _code_lines(path: str) -> list[str]:
    try:
        return Path(path).read_text("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _convert(found: Sequence[Any], root: Path) -> list[CodeIssue]:
    issues = []
    lines_of: dict[str, list[str]] = {}
    for issue in found:
        lines = lines_of.setdefault(issue.fname, _code_lines(issue.fname))
        line = int(issue.lineno or 1)
        code = lines[line - 1].strip() if 0 < line <= len(lines) else ""
        cwe = int(issue.cwe.id) if issue.cwe and issue.cwe.id else None
        issues.append(
            CodeIssue(
                path=issue.fname,
                relative=Path(os.path.relpath(issue.fname, root)).as_posix(),
                line=line,
                column=max(int(issue.col_offset), 0) + 1,
                test_id=issue.test_id,
                test_name=issue.test,
                severity=issue.severity,
                confidence=issue.confidence,
                cwe=cwe,
                text=issue.text,
                code=code[:_MAX_CODE],
            )
        )
    return issues


def _scan(
    root: Path,
    files: Sequence[str],
    config: Any,
    options: BanditOptions,
    *,
    progress: Callable[[str], None],
    check_budget: Callable[[], None],
) -> BanditRun:
    profile = _profile(config, options)
    issues: list[CodeIssue] = []
    skipped: list[SkippedFile] = []
    lines = nosec = 0
    for start in range(0, len(files), BATCH_FILES):
        check_budget()
        batch = _manager(config, profile, options)
        batch.files_list = list(files[start : start + BATCH_FILES])
        batch.run_tests()
        everything = constants.RANKING[0]  # UNDEFINED: all of it, as `bandit -r` reports
        issues.extend(_convert(batch.get_issue_list(everything, everything), root))
        skipped.extend(SkippedFile(str(p), str(r)) for p, r in batch.get_skipped())
        totals = batch.metrics.data.get("_totals", {})
        lines += int(totals.get("loc", 0))
        nosec += int(totals.get("nosec", 0))
        del batch
        # bandit links every AST node to its parent and siblings: each file's tree is a web
        # of reference cycles that only the cycle collector frees, and only when it runs a
        # full collection, so without this the garbage of many batches piles up.
        gc.collect()
        progress(f"bandit: {min(start + BATCH_FILES, len(files))} of {len(files)} files")
    return BanditRun(len(files), lines, nosec, tuple(issues), tuple(skipped))


def run_bandit(
    root: Path,
    options: BanditOptions,
    *,
    progress: Callable[[str], None] = lambda _: None,
    check_budget: Callable[[], None] = lambda: None,
) -> BanditRun:
    """Every bandit test (mlaudit's included) over ``root``."""
    config = _bandit_config(options)
    discovery = _manager(config, _profile(config, options), options)
    discovery.discover_files([str(root)], True, ",".join(options.excluded_paths))
    files: list[str] = discovery.files_list
    progress(f"bandit: {len(files)} Python files under {root}")
    return _scan(root, files, config, options, progress=progress, check_budget=check_budget)
