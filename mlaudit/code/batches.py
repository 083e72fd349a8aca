"""bandit's batches on the run's Dask cluster (MLA501, MLA502, MLA802).

A work unit is a batch of :data:`mlaudit.code.bandit_run.BATCH_FILES` files, numbered in the
tree's sorted order. A worker of a multi-node cluster cannot read the client's disk, so the
files travel: the rule runs in the parent process, which reads each round's files and puts
their names (relative to the source root) and text in the request's parameters, with the
bandit settings (test selection, ``ignore_nosec``, and the configuration file's text). The
worker writes them to a private folder under the same names, runs the same
:func:`~mlaudit.code.bandit_run.scan_files` on each batch and returns its files' records,
which hold no path: the client reports each issue at its own file's path, so a cluster run
gives the local run's report.

Why the text rides in the parameters rather than being scattered once: the delegate takes
plain JSON and nothing else, and a round holds only ``threads`` batches. Each batch's files
are its unit's own parameters (:data:`~mlaudit.core.delegation.PER_UNIT`), so a task
receives its own batch's text, not the round's.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from mlaudit.core.delegation import PER_UNIT, Delegate
from mlaudit.core.findings import JsonValue
from mlaudit.subject.build import Subject

if TYPE_CHECKING:  # bandit is the ``code`` extra: the cluster imports this module without it
    from mlaudit.code.bandit_run import BanditOptions, BatchScan, SourceTree

# The computation's name in the cluster's registry (mlaudit.distributed.remote).
CODE_BATCHES = "bandit-batches"


def _text(path: Path) -> str:
    """A file's bytes as a string that encodes back to exactly them (surrogateescape keeps
    bytes that are not UTF-8; no newline is translated): bandit parses the bytes."""
    return path.read_bytes().decode("utf-8", errors="surrogateescape")


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode("utf-8", errors="surrogateescape"))


def options_params(options: BanditOptions) -> dict[str, JsonValue]:
    """What a worker needs of bandit's settings; the configuration file goes as text
    (exclusions are not needed there: the client chose the files)."""
    config: JsonValue = None
    if options.config_file is not None:
        config = {"name": options.config_file.name, "text": _text(options.config_file)}
    tests: list[JsonValue] = [*sorted(options.tests)]
    skips: list[JsonValue] = [*sorted(options.skips)]
    return {
        "tests": tests,
        "skips": skips,
        "ignore_nosec": options.ignore_nosec,
        "config": config,
    }


def _sent_file(tree: SourceTree, path: str) -> JsonValue:
    try:
        return {"name": tree.name(path), "text": _text(Path(path))}
    except OSError as error:  # bandit skips an unreadable file with the same reason
        return {"name": tree.name(path), "error": str(error.strerror)}


def delegated_batches(
    delegate: Delegate, options: BanditOptions, threads: int, deadline: float
) -> Callable[[SourceTree], tuple[BatchScan, int]]:
    """Batches scanned on the cluster, one round of ``threads`` batches (one per task) at a
    time, each request's wait bounded by the rule's ``deadline``."""
    settings = options_params(options)

    def for_tree(tree: SourceTree) -> tuple[BatchScan, int]:
        batches = tree.batches()

        def scan(numbers: Sequence[int]) -> list[JsonValue]:
            sent: dict[str, JsonValue] = {
                str(n): [_sent_file(tree, path) for path in batches[n]] for n in numbers
            }
            params: dict[str, JsonValue] = {
                "indices": list(numbers), PER_UNIT: sent, "bandit": settings,
            }
            result = delegate(CODE_BATCHES, params, max(deadline - time.monotonic(), 0.0))
            if not isinstance(result, list):
                raise ValueError(f"{CODE_BATCHES}: the cluster answered {type(result).__name__}")
            return result

        return scan, max(threads, 1)

    return for_tree


def _safe_name(name: JsonValue) -> PurePosixPath:
    path = PurePosixPath(str(name))
    if not isinstance(name, str) or path.is_absolute() or ".." in path.parts or not path.parts:
        raise ValueError(f"{CODE_BATCHES}: {name!r} is not a relative file name")
    return path


def _options(settings: JsonValue, folder: Path) -> BanditOptions:
    from mlaudit.code.bandit_run import BanditOptions

    if not isinstance(settings, dict):
        raise ValueError(f"{CODE_BATCHES}: no bandit settings")
    config = settings.get("config")
    config_file = None
    if isinstance(config, dict):
        config_file = folder / _safe_name(config.get("name")).name
        _write(config_file, str(config.get("text", "")))
    tests, skips = settings.get("tests"), settings.get("skips")
    return BanditOptions(
        config_file=config_file,
        tests=frozenset(str(t) for t in tests) if isinstance(tests, list) else frozenset(),
        skips=frozenset(str(s) for s in skips) if isinstance(skips, list) else frozenset(),
        ignore_nosec=settings.get("ignore_nosec") is True,
    )


def _scan_sent(files: JsonValue, folder: Path, options: BanditOptions) -> list[JsonValue]:
    """One batch's records, its files written under ``folder`` by their names."""
    from mlaudit.code.bandit_run import scan_files

    if not isinstance(files, list):
        raise ValueError(f"{CODE_BATCHES}: a batch is a list of files")
    readable: list[str] = []
    unreadable: dict[int, JsonValue] = {}
    for position, sent in enumerate(files):
        if not isinstance(sent, dict):
            raise ValueError(f"{CODE_BATCHES}: a file is an object")
        path = folder / _safe_name(sent.get("name"))
        if "error" in sent:
            unreadable[position] = {
                "loc": 0, "nosec": 0, "skipped": str(sent["error"]), "issues": [],
            }
            continue
        _write(path, str(sent.get("text", "")))
        readable.append(str(path))
    scanned = iter(scan_files(readable, options))
    return [unreadable[p] if p in unreadable else next(scanned) for p in range(len(files))]


def scan_sent_batches(_subject: Subject, params: Mapping[str, JsonValue]) -> list[JsonValue]:
    """On a Dask worker: the batches ``params["indices"]`` names, from the files the request
    carries; one list of file records per batch, in order. The subject is not needed."""
    indices, batches = params.get("indices"), params.get(PER_UNIT)
    if not isinstance(indices, list) or not isinstance(batches, dict):
        raise ValueError(f"{CODE_BATCHES}: indices and batches are required")
    folder = Path(tempfile.mkdtemp(prefix="mlaudit-code-"))
    try:
        options = _options(params.get("bandit"), folder / "config")
        results: list[JsonValue] = []
        for number in indices:
            # Each batch in a folder of its own: two batches never share a file.
            results.append(_scan_sent(batches.get(str(number)), folder / f"b{number}", options))
        return results
    finally:
        shutil.rmtree(folder, ignore_errors=True)
