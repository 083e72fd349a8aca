"""The static inventory of a model file: what loading it would import, and what else is wrong.

The load gate and the MLA1xx rules read the same inventory, so deselecting a rule can never
open the gate: the gate does not depend on which rules run.
"""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from mlaudit.errors import InputError
from mlaudit.findings import Severity
from mlaudit.scanners.archive import (
    READ_ERRORS,
    SizeCapExceeded,
    decompression_cap,
    inspect_tar,
    inspect_zip,
    materialize,
)
from mlaudit.scanners.compressed import scan_compressed_joblib
from mlaudit.scanners.folders import FolderError, prefixed_report, scan_model_folder
from mlaudit.scanners.keras import scan_keras_h5, scan_keras_zip
from mlaudit.scanners.numpy_format import scan_npy, scan_npz
from mlaudit.scanners.onnx_format import scan_onnx
from mlaudit.scanners.pickle import (
    MalformedPickle,
    PickleScan,
    QualifiedName,
    ScanProblem,
    scan_file,
)
from mlaudit.scanners.pickle_policy import Classification, Verdict, classify
from mlaudit.scanners.report import ArtifactIssue, DeclaredType, EmbeddedPickle, FormatReport
from mlaudit.scanners.safetensors_format import scan_safetensors
from mlaudit.scanners.torch import scan_torch_legacy, scan_torch_zip
from mlaudit.sniff import ModelFormat, sniff_model_format


@dataclass(frozen=True)
class ImportedName(QualifiedName):
    """One global the file would import, where, and how the policy judges it.

    ``member`` is the path inside an archive or folder, None for the file itself.
    """

    module: str
    name: str
    member: str | None
    offsets: tuple[int, ...]
    opcode: str
    classification: Classification


@dataclass(frozen=True)
class LocatedProblem:
    member: str | None
    problem: ScanProblem


@dataclass(frozen=True)
class ImportInventory:
    names: tuple[ImportedName, ...] = ()
    problems: tuple[LocatedProblem, ...] = ()
    issues: tuple[ArtifactIssue, ...] = ()
    pickles: tuple[EmbeddedPickle, ...] = ()
    format_detail: str = ""

    def with_verdict(self, verdict: Verdict) -> tuple[ImportedName, ...]:
        return tuple(n for n in self.names if n.classification.verdict is verdict)

    def issues_for(self, rule_id: str) -> tuple[ArtifactIssue, ...]:
        return tuple(i for i in self.issues if i.rule_id == rule_id)

    @property
    def is_joblib(self) -> bool:
        return any(p.member is None and p.scan.is_joblib for p in self.pickles)

    def reclassified(self, extra_allowed: frozenset[str]) -> ImportInventory:
        """The same inventory judged with user-allowed globals (``allow_globals`` in config)."""
        names = tuple(
            replace(n, classification=classify(n.module, n.name, extra_allowed))
            for n in self.names
        )
        return replace(self, names=names)


Scanner = Callable[[Path], FormatReport]


def take_inventory(path: Path, model_format: ModelFormat) -> ImportInventory:
    """The inventory of the model the user named; a file that cannot be read is exit 2."""
    if model_format.pickle_based:
        report = FormatReport("pickle", pickles=(EmbeddedPickle(None, _scan_top_pickle(path)),))
    elif model_format is ModelFormat.MODEL_FOLDER:
        try:
            report = scan_model_folder(path, report_for_member)
        except FolderError as error:
            raise InputError(str(error)) from None
    else:
        report = _format_report(path, model_format)
    return inventory_from(report)


def report_for_member(path: Path) -> FormatReport | None:
    """The report for one file inside a model folder; None for files that are not models.

    Unlike the model file itself, an unreadable member is a finding, not exit 2: the folder
    as a whole can still be audited.
    """
    try:
        model_format = sniff_model_format(path)
    except InputError:
        return None
    if model_format.pickle_based:
        try:
            scan = scan_file(path)
        except MalformedPickle as error:
            return FormatReport(
                model_format.value,
                issues=(
                    ArtifactIssue(
                        "MLA101", "malformed-pickle", "Pickle that cannot be verified",
                        f"the pickle stream does not parse ({error}); a loader may still run "
                        "what precedes the damage", Severity.HIGH,
                        pointer=f"offset {error.offset}",
                    ),
                ),
            )
        return FormatReport(model_format.value, pickles=(EmbeddedPickle(None, scan),))
    try:
        return _format_report(path, model_format)
    except InputError as error:
        return FormatReport(
            model_format.value,
            issues=(
                ArtifactIssue(
                    "MLA107", "unreadable", "Model file that cannot be read", str(error),
                    Severity.HIGH,
                ),
            ),
        )


def _format_report(path: Path, model_format: ModelFormat) -> FormatReport:
    scanner = FORMAT_SCANNERS.get(model_format)
    return scanner(path) if scanner is not None else FormatReport(model_format.value)


def inventory_from(report: FormatReport) -> ImportInventory:
    found = [
        (embedded.member, i.module, i.name, i.offset, i.opcode)
        for embedded in report.pickles
        for i in embedded.scan.imports
    ]
    for declared in report.declared_types:
        module, _, name = declared.qualified_name.rpartition(".")
        found.append((declared.member, module, name, -1, "declared-type"))
    problems = tuple(
        LocatedProblem(embedded.member, problem)
        for embedded in report.pickles
        for problem in embedded.scan.problems
    )
    return ImportInventory(
        _group(found), problems, report.issues, report.pickles, report.format_detail
    )


def _group(
    found: Iterable[tuple[str | None, str, str, int, str]],
) -> tuple[ImportedName, ...]:
    """One entry per distinct import per member, with every offset it occurs at, in order."""
    offsets: dict[tuple[str | None, str, str], list[int]] = {}
    opcodes: dict[tuple[str | None, str, str], str] = {}
    for member, module, name, offset, opcode in found:
        offsets.setdefault((member, module, name), []).append(offset)
        opcodes.setdefault((member, module, name), opcode)
    return tuple(
        ImportedName(module, name, member, tuple(where), opcodes[key], classify(module, name))
        for key, where in offsets.items()
        for member, module, name in [key]
    )


def _scan_top_pickle(path: Path) -> PickleScan:
    try:
        return scan_file(path)
    except MalformedPickle as error:
        dangerous = [
            i.qualified_name
            for i in error.imports_before
            if classify(i.module, i.name).verdict is Verdict.DANGEROUS
        ]
        warning = f"; before that point it imports {', '.join(dangerous)}" if dangerous else ""
        raise InputError(
            f"{path} is not a valid pickle stream: {error} at byte {error.offset}{warning}"
        ) from None


def _skops_report(path: Path) -> FormatReport:
    """skops lists the types a file needs that skops does not trust by default."""
    try:
        from skops.io import get_untrusted_types
    except ImportError:
        raise InputError(
            f"{path} is a skops file; reading it needs skops: pip install 'mlaudit[skops]'"
        ) from None
    try:
        untrusted = get_untrusted_types(file=path)
    except Exception as error:  # skops raises assorted types for corrupt archives
        raise InputError(f"{path} is not a valid skops file: {error}") from None
    return FormatReport(
        "skops", declared_types=tuple(DeclaredType(None, name) for name in untrusted)
    )


def _keras_h5(path: Path) -> FormatReport:
    try:
        return scan_keras_h5(path)
    except ImportError:
        raise InputError(
            f"{path} is HDF5 (Keras .h5); reading it needs h5py: pip install 'mlaudit[keras]'"
        ) from None


def _onnx(path: Path) -> FormatReport:
    try:
        return scan_onnx(path)
    except ImportError:
        raise InputError(
            f"{path} is ONNX; reading it needs onnx: pip install 'mlaudit[onnx]'"
        ) from None


KERAS_NUMPY_WEIGHTS = "model.weights.npz"


def _keras(path: Path) -> FormatReport:
    """A ``.keras`` archive, and the NumPy weights Keras loads from it with pickles allowed."""
    report = scan_keras_zip(path)
    try:
        with zipfile.ZipFile(path) as archive:
            info = archive.getinfo(KERAS_NUMPY_WEIGHTS)
            with tempfile.TemporaryDirectory(prefix="mlaudit-") as scratch:
                extracted = materialize(
                    lambda: archive.open(info), decompression_cap(info.compress_size),
                    Path(scratch),
                )
                weights = scan_npz(extracted)
    except KeyError:  # no NumPy weights: the usual .keras layout with model.weights.h5
        return report
    except SizeCapExceeded as error:
        return report.merged(
            FormatReport("", issues=(ArtifactIssue(
                "MLA103", "decompression-bomb:" + KERAS_NUMPY_WEIGHTS, "Decompression bomb",
                f"{KERAS_NUMPY_WEIGHTS} decompresses to {error}", Severity.CRITICAL,
                member=KERAS_NUMPY_WEIGHTS,
            ),))
        )
    except READ_ERRORS:
        return report  # the Keras scanner has already reported an unreadable archive
    return report.merged(prefixed_report(weights, KERAS_NUMPY_WEIGHTS))


def _skops(path: Path) -> FormatReport:
    return inspect_zip(path).merged(_skops_report(path))


FORMAT_SCANNERS: dict[ModelFormat, Scanner] = {
    ModelFormat.SKOPS: _skops,
    ModelFormat.JOBLIB_COMPRESSED: scan_compressed_joblib,
    ModelFormat.PYTORCH: scan_torch_zip,
    ModelFormat.PYTORCH_LEGACY: scan_torch_legacy,
    ModelFormat.NUMPY: scan_npy,
    ModelFormat.NPZ: scan_npz,
    ModelFormat.KERAS: _keras,
    ModelFormat.KERAS_H5: _keras_h5,
    ModelFormat.ONNX: _onnx,
    ModelFormat.SAFETENSORS: scan_safetensors,
    ModelFormat.ZIP_ARCHIVE: inspect_zip,
    ModelFormat.TAR_ARCHIVE: inspect_tar,
}
