"""Every reading of a file is scanned: polyglots are caught whichever format they show first.

Each hostile polyglot is proven on both sides in a child process: its cover reader accepts
it (onnx's checker, tarfile, h5py) and its payload runs under the reader that triggers it.
The scan, which loads nothing, must then report the payload's import and the polyglot, and
the gate must refuse the file.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlaudit.core.errors import InputError
from mlaudit.core.findings import Severity
from mlaudit.loaders.load_gate import LoadStatus, decide
from mlaudit.scanners.pickle_policy import Verdict
from mlaudit.scanners.sniff import ModelFormat
from mlaudit.subject.build import open_model
from tests.fixtures.polyglots import HOSTILE_POLYGLOTS, Polyglot, benign_files

_COVER_IN_CHILD = """
import sys
path, cover = sys.argv[1], sys.argv[2]
if cover == "onnx":
    import onnx
    onnx.checker.check_model(onnx.load(path))
elif cover == "tar":
    import tarfile
    with tarfile.open(path) as archive:
        assert archive.getmembers()
elif cover == "keras-h5":
    import h5py
    with h5py.File(path, "r") as handle:
        assert "keras_version" in handle.attrs
elif cover == "pickle":
    import pickle
    with open(path, "rb") as handle:
        assert pickle.load(handle) == [1.0, 2.0]
"""

_TRIGGER_IN_CHILD = """
import pickle, sys, zipfile
path, trigger = sys.argv[1], sys.argv[2]
if trigger == "pickle":
    with open(path, "rb") as handle:
        pickle.load(handle)
elif trigger == "joblib":
    import joblib
    joblib.load(path)
else:
    member = trigger.split(":", 1)[1]
    with zipfile.ZipFile(path) as archive, archive.open(member) as handle:
        pickle.load(handle)
"""


@pytest.fixture
def short_directory() -> Iterator[Path]:
    """A short path, so the canary fits in a tar name field and an ONNX length byte."""
    with tempfile.TemporaryDirectory(prefix="mla", dir="/tmp") as name:
        yield Path(name)


def _child(script: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", script, *args],
        capture_output=True, text=True, timeout=120, check=False,
    )


def _build(name: str, directory: Path) -> tuple[Polyglot, Path]:
    canary = directory / "c"
    return HOSTILE_POLYGLOTS[name](directory, canary), canary


@pytest.mark.parametrize("name", sorted(HOSTILE_POLYGLOTS))
def test_polyglot_is_blocked_with_its_payload_reported(name: str, short_directory: Path) -> None:
    sample, canary = _build(name, short_directory)
    artifact = open_model(str(sample.path))
    inventory = artifact.inventory
    dangerous = {n.qualified_name for n in inventory.with_verdict(Verdict.DANGEROUS)}
    assert "posix.system" in dangerous, inventory
    if sample.cover != "unknown":
        polyglots = [i for i in inventory.issues if i.key.startswith("polyglot:")]
        assert polyglots, inventory.issues
        assert all(i.rule_id == "MLA107" and i.severity >= Severity.HIGH for i in polyglots)
    else:
        assert artifact.format is ModelFormat.PICKLE
    assert decide(artifact, [], trust_model=False).status is LoadStatus.BLOCKED
    assert not canary.exists()


# This test deliberately runs our own harmless payloads (each only creates a canary file in a
# temporary directory), in a child process, to prove each polyglot is valid under its cover
# reader and live under its trigger: one that is not would make the test above prove nothing.
@pytest.mark.parametrize("name", sorted(HOSTILE_POLYGLOTS))
def test_polyglot_is_valid_and_live(name: str, short_directory: Path) -> None:
    sample, canary = _build(name, short_directory)
    if sample.cover != "unknown":
        cover = _child(_COVER_IN_CHILD, str(sample.path), sample.cover)
        assert cover.returncode == 0, cover.stderr[-2000:]
    if not sample.trigger.startswith("zip-member:") and sample.cover != "pickle":
        # The cover check above must not have run the payload by itself.
        assert not canary.exists()
    result = _child(_TRIGGER_IN_CHILD, str(sample.path), sample.trigger)
    deadline = time.monotonic() + 15
    while not canary.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert canary.exists(), f"loader exit {result.returncode}\n{result.stderr[-2000:]}"


def test_benign_files_of_other_formats_are_not_polyglots(tmp_path: Path) -> None:
    for label, path in benign_files(tmp_path).items():
        inventory = open_model(str(path)).inventory
        assert not [i for i in inventory.issues if i.severity >= Severity.HIGH], label
        assert not inventory.names, label


def test_compressed_tar_is_sniffed_as_a_tar(tmp_path: Path) -> None:
    assert open_model(str(benign_files(tmp_path)["tar.gz"])).format is ModelFormat.TAR_ARCHIVE


def test_a_decoded_global_that_cannot_be_imported_is_not_a_pickle_reading(tmp_path: Path) -> None:
    """TorchScript source decodes as GLOBAL of module "lass X(Module):", which cannot import."""
    source = tmp_path / "code.py"
    source.write_bytes(b"class X(Module):\n  __parameters__ = []\n  def forward(self):\n")
    with pytest.raises(InputError, match="unknown model format"):
        open_model(str(source))
