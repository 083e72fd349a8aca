"""bandit's batches sent as text to a worker's private folder give the run scanned in place:
same issues, order, paths, counts and skipped files, for any split of the batches."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pytest

from mlaudit.code import bandit_run
from mlaudit.code.bandit_run import BanditRun, discover_options, run_bandit
from mlaudit.code.batches import CODE_BATCHES, delegated_batches, scan_sent_batches
from mlaudit.core.delegation import PER_UNIT, Delegate
from mlaudit.core.findings import JsonValue
from mlaudit.distributed.cluster import split_request
from mlaudit.subject.build import Subject
from tests.code.test_bandit_run import TREE

EXTRA = {
    # Bytes that are not UTF-8 (a latin-1 comment) and Windows line ends: sent as they are.
    "legacy/latin.py": b"# -*- coding: latin-1 -*-\n# caf\xe9\nimport pickle\r\n"
    b"x = pickle.loads(b'')\r\n",
    "pyproject.toml": b'[tool.bandit]\nskips = ["B324"]\n',
}


def _write(root: Path) -> Path:
    for name, text in TREE.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    for name, data in EXTRA.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(data)
    return root


def _cluster_like(threads: int) -> Delegate:
    """A delegate that does what the cluster does with a request, in this process: the
    units in ``threads`` contiguous runs, one call of the computation each, concatenated."""
    subject = Subject.__new__(Subject)  # the computation never reads it

    def delegate(what: str, params: Mapping[str, JsonValue], _timeout_s: float) -> JsonValue:
        assert what == CODE_BATCHES
        results: list[JsonValue] = []
        for part in split_request(what, params, threads):
            results.extend(scan_sent_batches(subject, part))
        return results

    return delegate


def _fields(run: BanditRun) -> tuple[object, ...]:
    return (run.files, run.lines, run.nosec, run.issues, run.skipped)


@pytest.mark.parametrize(("batch_files", "threads"), [(2, 2), (3, 1), (50, 4)])
def test_batches_scanned_from_sent_text_give_the_local_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, batch_files: int, threads: int
) -> None:
    monkeypatch.setattr(bandit_run, "BATCH_FILES", batch_files)
    root = _write(tmp_path / "src")
    options = discover_options(root)
    local = run_bandit(root, options)
    remote = delegated_batches(_cluster_like(threads), options, threads, float("inf"))
    sent = run_bandit(root, options, remote=remote)
    assert _fields(sent) == _fields(local)
    found = {(i.relative, i.test_id) for i in local.issues}
    assert ("legacy/latin.py", "ML02") in found
    assert not any(test == "B324" for _, test in found)  # the config's skips travelled
    assert [Path(s.path).name for s in sent.skipped] == ["broken.py"]
    assert all(i.path.startswith(str(root)) for i in sent.issues)


def test_a_one_file_root_is_sent_by_its_name(tmp_path: Path) -> None:
    root = _write(tmp_path / "src") / "train.py"
    options = discover_options(root)
    remote = delegated_batches(_cluster_like(1), options, 1, float("inf"))
    assert _fields(run_bandit(root, options, remote=remote)) == _fields(run_bandit(root, options))


@pytest.mark.parametrize("name", ["/etc/passwd", "../escape.py", ""])
def test_a_file_name_outside_the_worker_folder_is_refused(name: str) -> None:
    params: dict[str, JsonValue] = {
        "indices": [0], PER_UNIT: {"0": [{"name": name, "text": "x = 1\n"}]},
        "bandit": {"tests": [], "skips": [], "ignore_nosec": False, "config": None},
    }
    with pytest.raises(ValueError, match="not a relative file name"):
        scan_sent_batches(Subject.__new__(Subject), params)
