"""The static inventory of a model file: what loading it would import, and what else is wrong.

The load gate and the MLA1xx rules read the same inventory, so deselecting a rule can never
open the gate: the gate does not depend on which rules run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from mlaudit.core.errors import InputError
from mlaudit.core.findings import Severity
from mlaudit.core.runcache import RunCache
from mlaudit.scanners.compressed import scan_compressed_joblib
from mlaudit.scanners.containers import (
    MemberScanner,
    scan_tar_archive,
    scan_zip_archive,
)
from mlaudit.scanners.folders import FolderError, scan_model_folder
from mlaudit.scanners.format_report import ArtifactIssue, DeclaredType, EmbeddedPickle, FormatReport
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
from mlaudit.scanners.safetensors_format import scan_safetensors
from mlaudit.scanners.savedmodel import scan_savedmodel
from mlaudit.scanners.sevenzip import scan_7z_archive
from mlaudit.scanners.sniff import ModelFormat, other_readings, sniff_model_format
from mlaudit.scanners.torch import scan_torch_legacy, scan_torch_zip
from mlaudit.scanners.tree_formats import (
    scan_catboost,
    scan_lightgbm_text,
    scan_xgboost_json,
    scan_xgboost_ubj,
)


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


def take_inventory(
    path: Path, model_format: ModelFormat, cache: RunCache | None = None
) -> ImportInventory:
    """The inventory of the model the user named; a file that cannot be read is exit 2.

    Every reading a real loader could take of the file is scanned, not only the sniffed one
    (see :func:`mlaudit.scanners.sniff.other_readings`); a file with two readings is a polyglot.
    ``cache``: the run's, which keeps what later stages parse again (an ONNX file's model).
    """
    if model_format is ModelFormat.MODEL_FOLDER:
        try:
            return inventory_from(scan_model_folder(path, report_for_member))
        except FolderError as error:
            raise InputError(str(error)) from None
    report = _reading_report(path, model_format, cache, top=True)
    for other in other_readings(path, model_format):
        report = report.merged(_reading_report(path, other, cache, top=False)).merged(
            _polyglot_report(model_format, other)
        )
    return inventory_from(report)


def _reading_report(
    path: Path, model_format: ModelFormat, cache: RunCache | None, *, top: bool
) -> FormatReport:
    """The report of one reading; only the sniffed reading of the named file may be exit 2."""
    if model_format.pickle_based:
        scan = _scan_top_pickle(path) if top else scan_file_or_prefix(path)
        return FormatReport("pickle", pickles=(EmbeddedPickle(None, scan),))
    if top:
        return _format_report(path, model_format, cache)
    try:
        return _format_report(path, model_format, cache)
    except InputError as error:
        return FormatReport(
            "",
            issues=(
                ArtifactIssue(
                    "MLA107", f"unreadable-reading:{model_format.value}",
                    "A second reading of the file cannot be scanned",
                    f"a {model_format.value} reader would also open this file, and that "
                    f"reading cannot be scanned: {error}", Severity.HIGH,
                ),
            ),
        )


def scan_file_or_prefix(path: Path) -> PickleScan:
    """The pickle reading of a file that is mainly something else: what runs before it breaks."""
    try:
        return scan_file(path)
    except MalformedPickle as error:
        if error.partial is not None:
            return error.partial
        return PickleScan(error.imports_before, (), 1, 0, 0, path.stat().st_size)


def _polyglot_report(sniffed: ModelFormat, other: ModelFormat) -> FormatReport:
    return FormatReport(
        "",
        issues=(
            ArtifactIssue(
                "MLA107", f"polyglot:{other.value}", "File valid as two formats",
                f"the file is {sniffed.value} and also reads as {other.value}: a loader that "
                f"takes the {other.value} reading sees a different model than the one that "
                "was reviewed; both readings were scanned", Severity.HIGH,
                evidence={"formats": [sniffed.value, other.value]},
            ),
        ),
    )


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
            if error.partial is None:
                return FormatReport(
                    model_format.value,
                    issues=(
                        ArtifactIssue(
                            "MLA107", "malformed-pickle", "Pickle that cannot be read",
                            f"the pickle stream does not parse from its first byte ({error})",
                            Severity.HIGH, pointer=f"offset {error.offset}",
                        ),
                    ),
                )
            # A loader runs every opcode before the break: its imports and the break itself
            # are reported (MLA101/MLA102 and MLA107).
            scan = error.partial
        return FormatReport(model_format.value, pickles=(EmbeddedPickle(None, scan),))
    try:
        return _format_report(path, model_format, None)
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


def _format_report(
    path: Path, model_format: ModelFormat, cache: RunCache | None
) -> FormatReport:
    if model_format is ModelFormat.ONNX:  # the one parse later stages reuse
        return _onnx(path, cache)
    scanner = FORMAT_SCANNERS.get(model_format)
    return scanner(path) if scanner is not None else FormatReport(model_format.value)


def inventory_from(report: FormatReport) -> ImportInventory:
    """The inventory of a merged format report.

    Scan problems that are structural anomalies of a pickle stream become MLA107 issues of
    high severity; the others stay problems (MLA101). Both make the load gate refuse.
    """
    found = [
        (embedded.member, i.module, i.name, i.offset, i.opcode)
        for embedded in report.pickles
        for i in embedded.scan.imports
    ]
    for declared in report.declared_types:
        module, _, name = declared.qualified_name.rpartition(".")
        found.append((declared.member, module, name, -1, "declared-type"))
    located = [
        LocatedProblem(embedded.member, problem)
        for embedded in report.pickles
        for problem in embedded.scan.problems
    ]
    problems = tuple(p for p in located if not p.problem.structural)
    anomalies = tuple(_anomaly_issue(p) for p in located if p.problem.structural)
    return ImportInventory(
        _group(found), problems, report.issues + anomalies, report.pickles,
        report.format_detail,
    )


_ANOMALY_TITLES = {
    "malformed": "Pickle stream that breaks part-way",
    "unwritten-memo": "Pickle reads a memo entry it never wrote",
    "missing-mark": "Pickle opcode without its MARK",
    "stack-underflow": "Pickle stack underflow",
    "stack-leftover": "Values left on the pickle stack at STOP",
    "late-proto": "PROTO opcode after the start of the pickle",
    "frame-straddle": "Pickle opcode split across a frame boundary",
    "frame-past-end": "Pickle frame that runs past the end of the data",
    "frame-reopened": "Pickle frame that begins inside another frame",
    "stop-inside-frame": "Pickle STOP before the end of its frame",
    "impossible-structure": "Pickle builds a structure no loader can build",
    "expansion": "Pickle memo or DUP expansion",
}


def _anomaly_issue(located: LocatedProblem) -> ArtifactIssue:
    """A structural anomaly of a pickle stream, as the MLA107 issue it is."""
    problem, member = located.problem, located.member
    kind = f"pickle-{problem.kind}"
    return ArtifactIssue(
        "MLA107", f"{member}:{kind}" if member else kind,
        _ANOMALY_TITLES.get(problem.kind, "Malformed pickle structure"),
        f"{problem.message}; no pickler writes this, and loaders and scanners may read the "
        "stream differently from here", Severity.HIGH, member=member,
        pointer=f"offset {problem.offset}",
        evidence={"kind": problem.kind, "offset": problem.offset},
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
    """The scan of the model file itself. Only a file whose first byte is not a pickle opcode
    is not a pickle (exit 2); a stream that breaks later is reported, break and all: the
    loader has run everything before it."""
    try:
        return scan_file(path)
    except MalformedPickle as error:
        if error.partial is not None:
            return error.partial
        raise InputError(
            f"{path} is not a valid pickle stream: {error} at byte {error.offset}"
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


def _onnx(path: Path, cache: RunCache | None = None) -> FormatReport:
    try:
        return scan_onnx(path, cache)
    except ImportError:
        raise InputError(
            f"{path} is ONNX; reading it needs onnx: pip install 'mlaudit[onnx]'"
        ) from None


def _keras(path: Path) -> FormatReport:
    """A ``.keras`` archive: its config, and every member by content (Keras loads a
    ``model.weights.npz`` with pickles allowed)."""
    return scan_keras_zip(path).merged(scan_zip_archive(path, report_for_member))


def _skops(path: Path) -> FormatReport:
    return scan_zip_archive(path, report_for_member).merged(_skops_report(path))


def members_by_content(scanner: Callable[[Path, MemberScanner], FormatReport]) -> Scanner:
    """An archive scanner whose members are each sniffed by content and scanned as what they
    are, by :func:`report_for_member` (nested archives through this same table)."""

    def scan(path: Path) -> FormatReport:
        return scanner(path, report_for_member)

    return scan


FORMAT_SCANNERS: dict[ModelFormat, Scanner] = {
    ModelFormat.SKOPS: _skops,
    ModelFormat.JOBLIB_COMPRESSED: scan_compressed_joblib,
    ModelFormat.PYTORCH: members_by_content(scan_torch_zip),
    ModelFormat.PYTORCH_LEGACY: members_by_content(scan_torch_legacy),
    ModelFormat.NUMPY: scan_npy,
    ModelFormat.NPZ: scan_npz,
    ModelFormat.KERAS: _keras,
    ModelFormat.KERAS_H5: _keras_h5,
    ModelFormat.ONNX: _onnx,
    ModelFormat.SAFETENSORS: scan_safetensors,
    ModelFormat.ZIP_ARCHIVE: members_by_content(scan_zip_archive),
    ModelFormat.TAR_ARCHIVE: members_by_content(scan_tar_archive),
    ModelFormat.SEVENZIP_ARCHIVE: members_by_content(scan_7z_archive),
    ModelFormat.SAVEDMODEL: scan_savedmodel,
    ModelFormat.XGBOOST_JSON: scan_xgboost_json,
    ModelFormat.XGBOOST_UBJ: scan_xgboost_ubj,
    ModelFormat.LIGHTGBM_TEXT: scan_lightgbm_text,
    ModelFormat.CATBOOST: scan_catboost,
}
