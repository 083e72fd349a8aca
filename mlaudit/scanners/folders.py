"""Model folders: MLflow models (an ``MLmodel`` file), Hugging Face model folders and
TensorFlow SavedModels (a ``saved_model.pb``).

A folder is audited by what its loader would touch: every file it contains is scanned by the
scanner for its own format, and the folder's metadata is read for code the loader would import
(MLflow ``loader_module`` and ``code`` paths, Hugging Face ``auto_map`` remote code).
"""

from __future__ import annotations

import enum
import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.scanners.format_report import (
    MAX_ARCHIVE_MEMBERS,
    MAX_JSON_HEADER_BYTES,
    ArtifactIssue,
    FormatReport,
)
from mlaudit.scanners.paths import escape_reason
from mlaudit.scanners.savedmodel import FORMAT as SAVEDMODEL_FORMAT
from mlaudit.scanners.savedmodel import PROTO_FILE, scan_savedmodel

FileScanner = Callable[[Path], FormatReport | None]
HF_PICKLE_WEIGHTS = ("pytorch_model.bin", "training_args.bin", "optimizer.pt", "scheduler.pt")
# MLflow's own pyfunc loaders: importing them runs MLflow code, not the model author's.
_MLFLOW_LOADER_PREFIX = "mlflow."
_PICKLE_SERIALIZATIONS = frozenset({"pickle", "cloudpickle"})


class FolderError(ValueError):
    """The folder is not a model folder mlaudit knows."""


class FolderKind(enum.Enum):
    MLFLOW = "mlflow"
    HUGGINGFACE = "huggingface"
    SAVEDMODEL = SAVEDMODEL_FORMAT


# In the order a folder is recognised: an MLmodel file wins, as MLflow wraps Hugging Face and
# TensorFlow models in folders that hold their files too.
_KIND_FILES = (
    (FolderKind.MLFLOW, "MLmodel"),
    (FolderKind.HUGGINGFACE, "config.json"),
    (FolderKind.SAVEDMODEL, PROTO_FILE),
)


def folder_kind(path: Path) -> FolderKind | None:
    """Which model folder ``path`` is, by the file its loader reads first; None if none."""
    return next((kind for kind, name in _KIND_FILES if (path / name).is_file()), None)


def is_model_folder(path: Path) -> bool:
    return folder_kind(path) is not None


def scan_model_folder(path: Path, scan_file: FileScanner) -> FormatReport:
    """Scan every file under ``path`` with ``scan_file`` and read the folder's metadata.

    ``scan_file`` returns None for files that are not model files (README, tokenizer JSON);
    members are named by their path relative to the folder.
    """
    kind = folder_kind(path)
    if kind is FolderKind.MLFLOW:
        report = FormatReport("mlflow", issues=tuple(_mlflow_issues(path)))
    elif kind is FolderKind.HUGGINGFACE:
        report = FormatReport("huggingface", issues=tuple(_huggingface_issues(path)))
    elif kind is FolderKind.SAVEDMODEL:
        report = FormatReport(SAVEDMODEL_FORMAT)
    else:
        raise FolderError(
            f"{path} has neither an MLmodel file, a config.json nor a {PROTO_FILE}"
        )
    for relative, issue_or_file in _walk(path):
        if isinstance(issue_or_file, ArtifactIssue):
            report = report.merged(FormatReport("", issues=(issue_or_file,)))
            continue
        found = _scan_member(issue_or_file, scan_file)
        if found is not None:
            report = report.merged(prefixed_report(found, relative))
    return report


def _scan_member(path: Path, scan_file: FileScanner) -> FormatReport | None:
    """``scan_file``'s report, and for a ``saved_model.pb`` also the SavedModel walk:
    TensorFlow reads that file by its name, so content that does not sniff as a SavedModel
    is still what it would parse (and unscannable if it does not walk)."""
    found = scan_file(path)
    if path.name != PROTO_FILE or (
        found is not None and found.format_detail.startswith(SAVEDMODEL_FORMAT)
    ):
        return found
    walked = scan_savedmodel(path)
    return walked if found is None else found.merged(walked)


def _walk(root: Path) -> Iterator[tuple[str, ArtifactIssue | Path]]:
    """Regular files under ``root``; links that leave the folder are issues, never followed."""
    count = 0
    resolved_root = root.resolve()
    for directory, subdirectories, files in os.walk(root, followlinks=False):
        subdirectories.sort()
        linked_directories = [d for d in subdirectories if (Path(directory) / d).is_symlink()]
        for name in sorted(files) + linked_directories:
            path = Path(directory) / name
            relative = path.relative_to(root).as_posix()
            count += 1
            if count > MAX_ARCHIVE_MEMBERS:
                yield relative, ArtifactIssue(
                    "MLA103", "too-many-files", "Too many files in the model folder",
                    f"more than {MAX_ARCHIVE_MEMBERS} files; the rest were not scanned",
                    Severity.HIGH, member=relative,
                )
                return
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(resolved_root):
                    yield relative, ArtifactIssue(
                        "MLA103",
                        f"link-outside:{relative}",
                        "Link that leaves the model folder",
                        f"{relative} links to {target}, outside the folder; a loader following "
                        "it reads (or a copy writes) a file the model does not own",
                        Severity.CRITICAL, member=relative, evidence={"target": str(target)},
                    )
                    continue
            if path.is_file():
                yield relative, path


def prefixed_report(report: FormatReport, relative: str) -> FormatReport:
    """``report`` for a file found at ``relative`` inside a folder or archive."""
    def member(inner: str | None) -> str:
        return relative if inner is None else f"{relative}/{inner}"

    return FormatReport(
        report.format_detail,
        tuple(
            replace(i, member=member(i.member), key=f"{relative}:{i.key}") for i in report.issues
        ),
        tuple(replace(p, member=member(p.member)) for p in report.pickles),
        report.members + 1,
        tuple(replace(t, member=member(t.member)) for t in report.declared_types),
    )


def _read_json(path: Path) -> Any:
    if path.stat().st_size > MAX_JSON_HEADER_BYTES:
        raise FolderError(f"{path.name} is larger than any model configuration")
    return json.loads(path.read_text("utf-8"))


def _huggingface_issues(path: Path) -> Iterator[ArtifactIssue]:
    try:
        config = _read_json(path / "config.json")
    except (ValueError, UnicodeDecodeError) as error:
        yield ArtifactIssue(
            "MLA107", "config-json", "config.json is not valid JSON", str(error), Severity.HIGH,
            member="config.json",
        )
        return
    auto_map = config.get("auto_map") if isinstance(config, dict) else None
    python_files: list[JsonValue] = [
        *sorted(p.relative_to(path).as_posix() for p in path.rglob("*.py"))
    ]
    if auto_map:
        classes: list[JsonValue] = [*sorted(str(v) for v in _flatten(auto_map))]
        yield ArtifactIssue(
            "MLA106", "auto-map", "Model needs remote code (auto_map)",
            "config.json maps the model to classes in Python files that transformers imports "
            "when loaded with trust_remote_code=True: " + ", ".join(map(str, classes[:10])),
            Severity.HIGH, member="config.json", pointer="auto_map",
            evidence={"auto_map": classes[:20], "python_files": python_files[:20]},
        )
    elif python_files:
        yield ArtifactIssue(
            "MLA106", "python-files", "Python files shipped with the model",
            "the folder ships Python files (" + ", ".join(map(str, python_files[:10]))
            + ") that a loader "
            "or a user may be told to import", Severity.MEDIUM,
            evidence={"python_files": python_files[:20]},
        )
    pickles = [name for name in HF_PICKLE_WEIGHTS if (path / name).is_file()]
    has_safetensors = any(path.glob("*.safetensors"))
    for name in pickles:
        if has_safetensors:
            yield ArtifactIssue(
                "MLA105", f"pickle-beside-safetensors:{name}",
                "Pickle weights next to safetensors weights",
                f"{name} is a pickle-based copy of weights the folder also holds as "
                "safetensors; loaders that prefer the .bin file run its pickle",
                Severity.LOW, member=name,
            )


def _flatten(value: object) -> Iterator[object]:
    if isinstance(value, Mapping):
        for item in value.values():
            yield from _flatten(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _flatten(item)
    else:
        yield value


def _mlflow_issues(path: Path) -> Iterator[ArtifactIssue]:
    try:
        import yaml
    except ImportError:
        raise FolderError(
            "reading MLflow models needs PyYAML: pip install 'mlaudit[mlflow]'"
        ) from None
    try:
        document = yaml.safe_load((path / "MLmodel").read_text("utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        yield ArtifactIssue(
            "MLA107", "mlmodel", "MLmodel is not valid YAML", str(error).splitlines()[0],
            Severity.HIGH, member="MLmodel",
        )
        return
    flavors = document.get("flavors") if isinstance(document, dict) else None
    if not isinstance(flavors, dict):
        yield ArtifactIssue(
            "MLA107", "mlmodel-flavors", "MLmodel lists no flavours",
            "an MLmodel file without a flavors mapping cannot be loaded", Severity.HIGH,
            member="MLmodel",
        )
        return
    for flavor, config in sorted(flavors.items()):
        if not isinstance(config, dict):
            continue
        yield from _flavor_issues(path, str(flavor), config)


def _flavor_issues(
    path: Path, flavor: str, config: Mapping[str, Any]
) -> Iterator[ArtifactIssue]:
    loader = config.get("loader_module")
    if isinstance(loader, str) and not loader.startswith(_MLFLOW_LOADER_PREFIX):
        yield ArtifactIssue(
            "MLA104", f"loader-module:{loader}", "MLflow model loaded by custom code",
            f"flavour {flavor} is loaded by importing {loader}, code shipped with or expected "
            "beside the model", Severity.HIGH, member="MLmodel",
            pointer=f"flavors.{flavor}.loader_module", evidence={"loader_module": loader},
        )
    code = config.get("code")
    if isinstance(code, str) and code:
        yield ArtifactIssue(
            "MLA104", f"code-path:{code}", "MLflow model ships code",
            f"flavour {flavor} adds {code} to the Python path when the model is loaded",
            Severity.MEDIUM, member="MLmodel", pointer=f"flavors.{flavor}.code",
        )
    serialization = config.get("serialization_format")
    if isinstance(serialization, str) and serialization in _PICKLE_SERIALIZATIONS:
        yield ArtifactIssue(
            "MLA105",
            f"serialization:{flavor}",
            f"MLflow {flavor} model stored with {serialization}",
            f"flavour {flavor} stores the model with {serialization}; MLflow can store "
            "scikit-learn models with skops instead", Severity.LOW, member="MLmodel",
            pointer=f"flavors.{flavor}.serialization_format",
        )
    for key in ("pickled_model", "data", "model_data", "path"):
        target = config.get(key)
        if isinstance(target, str) and escape_reason(target, path) is not None:
            yield ArtifactIssue(
                "MLA103", f"escaping-path:{flavor}.{key}", "MLmodel points outside the folder",
                f"flavour {flavor} loads {target}, which is outside the model folder",
                Severity.CRITICAL, member="MLmodel", pointer=f"flavors.{flavor}.{key}",
            )
