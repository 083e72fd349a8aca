"""What is being audited: the model artifact, the data and the source, read but never executed.

Building a :class:`Subject` hashes every file, sniffs the model format and takes the static
inventory of what the model file would import when loaded. Nothing is loaded here.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from mlaudit.core.errors import InputError
from mlaudit.core.hashing import sha256_file, sha256_tree
from mlaudit.core.runcache import RunCache
from mlaudit.scanners.folders import is_model_folder
from mlaudit.scanners.inventory import ImportInventory, take_inventory
from mlaudit.scanners.sniff import ModelFormat, is_entry_point, sniff_model_format
from mlaudit.subject.compat import listed
from mlaudit.subject.data import Dataset, read_dataset

SAMPLE_PREFERENCE = ("data", "holdout", "train")
# Every data role, in the order the subject (and the report) lists them. ``reference`` is the
# data drift is measured against (the training data when not given) and ``current`` the
# production data; their labels are optional, since production data rarely has them.
DATA_ROLES = ("data", "train", "holdout", "reference", "current")
LABELS_OPTIONAL = frozenset({"reference", "current"})


@dataclass(frozen=True)
class ModelArtifact:
    reference: str
    path: Path | None
    format: ModelFormat
    sha256: str | None
    size: int | None
    inventory: ImportInventory


@dataclass(frozen=True)
class Subject:
    model: ModelArtifact
    datasets: tuple[Dataset, ...]
    target: str | None
    source: Path | None
    requirements: tuple[Path, ...]
    # --env: the running interpreter's installed distributions are part of the dependency set.
    environment: bool = False

    def dataset(self, role: str) -> Dataset | None:
        return next((d for d in self.datasets if d.role == role), None)

    @property
    def sample(self) -> Dataset | None:
        """The data behavioural rules query the model with: ``--data``, else holdout, else train."""
        for role in SAMPLE_PREFERENCE:
            found = self.dataset(role)
            if found is not None:
                return found
        return None


def open_model(
    reference: str,
    extra_allowed: frozenset[str] = frozenset(),
    cache: RunCache | None = None,
) -> ModelArtifact:
    """The model named by ``reference``, scanned; ``cache``: the run's (see build_subject)."""
    if is_entry_point(reference):
        return ModelArtifact(
            reference, None, ModelFormat.ENTRY_POINT, None, None, ImportInventory()
        )
    path = Path(reference)
    if not path.exists():
        raise InputError(f"model {reference} does not exist")
    if path.is_dir():
        return _open_folder(reference, path, extra_allowed)
    size = path.stat().st_size
    if size == 0:
        raise InputError(f"model {reference} is an empty file")
    model_format = sniff_model_format(path)
    inventory = take_inventory(path, model_format, cache)
    if extra_allowed:
        inventory = inventory.reclassified(extra_allowed)
    if model_format is ModelFormat.PICKLE and inventory.is_joblib:
        model_format = ModelFormat.JOBLIB
    return ModelArtifact(reference, path, model_format, sha256_file(path), size, inventory)


def _open_folder(reference: str, path: Path, extra_allowed: frozenset[str]) -> ModelArtifact:
    if not is_model_folder(path):
        raise InputError(
            f"model {reference} is a directory but not a model folder (no MLmodel file, no "
            "config.json and no saved_model.pb); give the model file"
        )
    inventory = take_inventory(path, ModelFormat.MODEL_FOLDER).reclassified(extra_allowed)
    digest, size = sha256_tree(path)
    return ModelArtifact(reference, path, ModelFormat.MODEL_FOLDER, digest, size, inventory)


def build_subject(
    model: str | ModelArtifact,
    *,
    data: Path | None,
    train: Path | None,
    holdout: Path | None,
    target: str | None,
    source: Path | None,
    requirements: Sequence[Path],
    extra_allowed: frozenset[str] = frozenset(),
    environment: bool = False,
    cache: RunCache | None = None,
    reference: Path | None = None,
    current: Path | None = None,
) -> Subject:
    """Everything the audit reads, hashed and scanned. Give the run's ``cache`` (and the same
    one to :func:`mlaudit.engine.run.run_audit`) and what the scan parsed is not parsed again.
    ``model`` is a reference to open, or the artifact of a model with nothing to open (one
    given in memory)."""
    artifact = (
        model if isinstance(model, ModelArtifact) else open_model(model, extra_allowed, cache)
    )
    paths = dict(zip(DATA_ROLES, (data, train, holdout, reference, current), strict=True))
    datasets = tuple(
        with_optional_target(read_dataset(path, role, None), target)
        if role in LABELS_OPTIONAL else read_dataset(path, role, target)
        for role, path in paths.items()
        if path is not None
    )
    require_current_columns(datasets)
    if source is not None and not source.is_dir():
        raise InputError(f"source {source} is not a directory")
    for requirement in requirements:
        if not requirement.is_file():
            raise InputError(f"requirements file {requirement} does not exist")
    resolved_target = next((d.target for d in datasets if d.target is not None), target)
    return Subject(
        artifact, datasets, resolved_target, source, tuple(requirements), environment
    )


def with_optional_target(dataset: Dataset, target: str | None) -> Dataset:
    """``dataset`` of a role whose labels are optional, labelled when it has ``target``."""
    if target is None or target not in dataset.columns:
        return dataset
    return dataclasses.replace(dataset, target=target)


def require_current_columns(datasets: Sequence[Dataset]) -> None:
    """An :class:`InputError` when the current data lacks columns of the data it is compared
    with (``reference``, else ``train``): drift cannot be measured on a column that is gone,
    and a production feed that lost a column is an input error, not a finding."""
    by_role = {d.role: d for d in datasets}
    current = by_role.get("current")
    baseline = by_role.get("reference") or by_role.get("train")
    if current is None or baseline is None:
        return
    present = set(current.columns)
    missing = [c for c in baseline.columns if c not in present and c != baseline.target]
    if missing:
        raise InputError(
            f"current file {current.path} lacks {len(missing)} column(s) of {baseline.role} "
            f"file {baseline.path}: {listed(missing)}"
        )
