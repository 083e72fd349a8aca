"""Model format detection from content, never from the file name.

A file named ``model.onnx`` that holds a pickle is a pickle: trusting the extension is how a
hostile file reaches a loader that executes it.
"""

from __future__ import annotations

import bz2
import enum
import gzip
import io
import lzma
import pickletools
import re
import string
import tarfile
import zipfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import BinaryIO

from mlaudit.core.errors import InputError
from mlaudit.core.load_options import ENTRY_POINT
from mlaudit.scanners.compressed import SNIFF_BYTES, sniff_compression
from mlaudit.scanners.pickle import (
    GlobalImport,
    MalformedPickle,
    ScanProblem,
    scan_bytes,
    scan_file,
)
from mlaudit.scanners.safetensors_format import looks_like_safetensors
from mlaudit.scanners.tree_formats import (
    looks_like_catboost,
    looks_like_lightgbm_text,
    looks_like_xgboost_json,
    looks_like_xgboost_ubj,
)

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
NUMPY_MAGIC = b"\x93NUMPY"
TAR_MAGIC = b"ustar"
SEVENZIP_MAGIC = b"7z\xbc\xaf\x27\x1c"
TAR_MAGIC_OFFSET = 257
# sys_info is optional in the oldest files; these three are what torch.load reads.
TORCH_TAR_MEMBERS = frozenset({"pickle", "storages", "tensors"})
# torch's legacy format opens with a protocol-2 pickle of its magic number (LONG1, 10 bytes).
TORCH_LEGACY_MAGIC = b"\x80\x02\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
_TEXT_PICKLE_OPENINGS = frozenset(bytes([byte]) for byte in b"(c}])NIVSLFGJKMXUT")
_TEXT_GLOBAL = re.compile(rb"^c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n")

# ModelProto field numbers (onnx.proto3) and the wire type each must use.
_ONNX_MODEL_FIELDS = {
    1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2,
}
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
# tarfile reads these compressions itself ("r:*"); joblib would decompress the same files.
_TAR_COMPRESSIONS: dict[str, Callable[[Path], io.BufferedIOBase]] = {
    "gzip": gzip.GzipFile, "bz2": bz2.BZ2File, "lzma": lzma.LZMAFile, "xz": lzma.LZMAFile,
}
_DECOMPRESSED_HEAD = 64 * 1024
# Enough for a JSON model's opening key after the whitespace a pretty-printer adds.
_TREE_FORMAT_HEAD = 256
_ONNX_IR_VERSION = 1
_ONNX_GRAPH = 7


class ModelFormat(enum.Enum):
    PICKLE = "pickle"
    JOBLIB = "joblib"
    SKOPS = "skops"
    ONNX = "onnx"
    ENTRY_POINT = "entry-point"
    MODEL_FOLDER = "model-folder"
    JOBLIB_COMPRESSED = "joblib-compressed"
    PYTORCH = "pytorch"
    PYTORCH_LEGACY = "pytorch-legacy"
    NUMPY = "numpy"
    NPZ = "npz"
    KERAS = "keras"
    KERAS_H5 = "keras-h5"
    SAFETENSORS = "safetensors"
    ZIP_ARCHIVE = "zip"
    TAR_ARCHIVE = "tar"
    SEVENZIP_ARCHIVE = "7z"
    SAVEDMODEL = "tf-savedmodel"
    XGBOOST_JSON = "xgboost-json"
    XGBOOST_UBJ = "xgboost-ubj"
    LIGHTGBM_TEXT = "lightgbm-text"
    CATBOOST = "catboost"

    @property
    def pickle_based(self) -> bool:
        """Formats that are one pickle stream (or several), read by the pickle walker itself."""
        return self in (ModelFormat.PICKLE, ModelFormat.JOBLIB)


# The boosting libraries' own formats: numbers and names only, nothing a loader imports.
TREE_MODEL_FORMATS = frozenset(
    {ModelFormat.XGBOOST_JSON, ModelFormat.XGBOOST_UBJ, ModelFormat.LIGHTGBM_TEXT,
     ModelFormat.CATBOOST}
)


def is_entry_point(reference: str) -> bool:
    if not ENTRY_POINT.match(reference):
        return False
    try:
        return not Path(reference).exists()
    except OSError:  # a name too long for the file system cannot be a file
        return True


def sniff_model_format(path: Path) -> ModelFormat:
    """Return the format of ``path`` or raise :class:`InputError` naming what was found."""
    with path.open("rb") as handle:
        head = handle.read(max(16, SNIFF_BYTES))
        if head.startswith(ZIP_MAGIC):
            return _sniff_zip(path)
        if head.startswith(HDF5_MAGIC):
            return ModelFormat.KERAS_H5
        if head.startswith(NUMPY_MAGIC):
            return ModelFormat.NUMPY
        if head.startswith(TORCH_LEGACY_MAGIC):
            return ModelFormat.PYTORCH_LEGACY
        if head.startswith(SEVENZIP_MAGIC):
            return ModelFormat.SEVENZIP_ARCHIVE
        # The unpickler accepts a PROTO opcode naming any protocol from 0 to 5.
        if len(head) > 1 and head[0] == 0x80 and head[1] <= 5:
            return ModelFormat.PICKLE
        size = path.stat().st_size
        tree_format = _sniff_tree_format(head + handle.read(_TREE_FORMAT_HEAD - len(head)))
        if tree_format is not None:
            return tree_format
        # An implausible header length is still safetensors' shape: the scanner reports it.
        if looks_like_safetensors(head, size) or head[8:9] == b"{":
            return ModelFormat.SAFETENSORS
        compression = sniff_compression(head)
        if compression is not None:
            if _decompressed_head(path, compression)[TAR_MAGIC_OFFSET:].startswith(TAR_MAGIC):
                return _sniff_tar(path)
            return ModelFormat.JOBLIB_COMPRESSED
        handle.seek(TAR_MAGIC_OFFSET)
        if handle.read(len(TAR_MAGIC)) == TAR_MAGIC:
            return _sniff_tar(path)
        handle.seek(0)
        if _looks_like_savedmodel(handle, size):
            return ModelFormat.SAVEDMODEL
        handle.seek(0)
        if _looks_like_onnx(handle, path.stat().st_size):
            return ModelFormat.ONNX
        handle.seek(0)
        if _looks_like_text_pickle(handle.read(4096)):
            return ModelFormat.PICKLE
    if reaches_an_import(path):
        # Not a pickle by its looks, but pickle.load would import something before it gave
        # up: the scanner must see it, and "unknown format" would let it pass as no model.
        return ModelFormat.PICKLE
    raise InputError(
        f"{path}: unknown model format (supported: pickle, joblib, skops, ONNX, PyTorch, "
        "Keras, TensorFlow SavedModel, safetensors, NumPy, XGBoost JSON/UBJ, LightGBM text, "
        "CatBoost .cbm, zip/tar/7z archives, MLflow, "
        "Hugging Face and SavedModel folders, or an entry point module:callable)"
    )


def _sniff_tree_format(head: bytes) -> ModelFormat | None:
    """The boosting libraries' own formats: XGBoost JSON/UBJSON, LightGBM text, CatBoost."""
    if looks_like_catboost(head):
        return ModelFormat.CATBOOST
    if looks_like_lightgbm_text(head):
        return ModelFormat.LIGHTGBM_TEXT
    if looks_like_xgboost_ubj(head):
        return ModelFormat.XGBOOST_UBJ
    if looks_like_xgboost_json(head):
        return ModelFormat.XGBOOST_JSON
    return None


def _sniff_zip(path: Path) -> ModelFormat:
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
    except (zipfile.BadZipFile, UnicodeDecodeError, NotImplementedError, RuntimeError) as error:
        raise InputError(
            f"{path} starts like a zip archive but is not a readable one: {error}"
        ) from None
    if "schema.json" in names:
        return ModelFormat.SKOPS
    if "config.json" in names and names & {"metadata.json", "model.weights.h5"}:
        return ModelFormat.KERAS
    # PyTorch names its archive folder after the file, so only the leaf names are fixed; its
    # zip reader (miniz) lower-cases ASCII letters before comparing, so this does too.
    folded = {name.translate(_ASCII_LOWER) for name in names}
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in folded) or any(
        name.endswith("/constants.pkl") for name in folded
    ):
        return ModelFormat.PYTORCH
    if names and all(name.endswith(".npy") for name in names):
        return ModelFormat.NPZ
    return ModelFormat.ZIP_ARCHIVE


def _sniff_tar(path: Path) -> ModelFormat:
    """torch's oldest format is a tar with ``sys_info``, ``pickle``, ``storages``, ``tensors``."""
    try:
        with tarfile.open(path) as archive:
            names = set(archive.getnames()[: len(TORCH_TAR_MEMBERS) * 4])
    except (tarfile.TarError, OSError, UnicodeDecodeError) as error:
        message = f"{path} starts like a tar archive but is not a readable one: {error}"
        raise InputError(message) from None
    if names >= TORCH_TAR_MEMBERS:
        return ModelFormat.PYTORCH_LEGACY
    return ModelFormat.TAR_ARCHIVE


def _looks_like_text_pickle(head: bytes) -> bool:
    """Protocol 0 and 1 pickles have no header: accept if the opening opcodes decode.

    A pickled model opens with MARK, GLOBAL or an empty container; ordinary text whose first
    letters happen to be opcodes ("hello" is BINGET, LIST, ...) does not.
    """
    if head[:1] not in _TEXT_PICKLE_OPENINGS:
        return False
    if head[:1] == b"c" and not _TEXT_GLOBAL.match(head):
        return False
    decoded = 0
    try:
        for opcode, _, _ in pickletools.genops(io.BytesIO(head)):
            decoded += 1
            if opcode.name == "STOP" or decoded >= 8:
                return True
    except ValueError:
        # Running out of bytes inside the 4 KiB window still means the opening decoded.
        return decoded >= 3
    return decoded >= 3


def _read_varint(handle: BinaryIO) -> int | None:
    result = 0
    for shift in range(0, 64, 7):
        byte = handle.read(1)
        if not byte:
            return None
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
    return None


def _looks_like_onnx(handle: BinaryIO, size: int) -> bool:
    """Walk the top level of a protobuf ModelProto without decoding it.

    The walk must cover the file exactly, use only ModelProto's field numbers with their wire
    types, and include an IR version and a graph.
    """
    seen: set[int] = set()
    while handle.tell() < size:
        key = _read_varint(handle)
        if key is None:
            return False
        field, wire = key >> 3, key & 7
        if _ONNX_MODEL_FIELDS.get(field) != wire:
            return False
        seen.add(field)
        if wire == 0:
            if _read_varint(handle) is None:
                return False
        else:
            length = _read_varint(handle)
            if length is None or handle.tell() + length > size:
                return False
            handle.seek(length, io.SEEK_CUR)
    return {_ONNX_IR_VERSION, _ONNX_GRAPH} <= seen


# ============================================================================================
# Every reading: loaders disagree about where a file starts.

# Formats whose readers look at the same bytes first (offset 0, or a zip's end record): a
# second reading of these is their own scanner's business, not a polyglot.
_ZIP_FORMATS = frozenset(
    {
        ModelFormat.ZIP_ARCHIVE, ModelFormat.SKOPS, ModelFormat.PYTORCH, ModelFormat.NPZ,
        ModelFormat.KERAS,
    }
)
# Archives whose members are scanned one by one: a zip or HDF5 file stored in one of them is
# found at its member, so the archive as a whole is not a polyglot for holding it.
_MEMBER_SCANNED = frozenset(
    {ModelFormat.TAR_ARCHIVE, ModelFormat.PYTORCH_LEGACY, ModelFormat.SEVENZIP_ARCHIVE}
)
_HDF5_FIRST_OFFSET = 512


def reaches_an_import(path: Path) -> bool:
    """Whether ``pickle.load`` from byte 0 of the file would import a global before it stops."""
    try:
        scan = scan_file(path)
    except MalformedPickle as error:
        return _any_importable(error.imports_before, ())
    return _any_importable(scan.imports, scan.problems)


def _any_importable(imports: Iterable[GlobalImport], problems: Iterable[ScanProblem]) -> bool:
    """Whether an import among these could succeed, so that loading could run something.

    A pickle loader that meets no import runs nothing: it can only build plain values or fail.
    ``__import__`` fails on a module name that is not dotted identifiers (TorchScript source
    such as ``class X(Module):`` decodes as a GLOBAL of module ``lass X(Module):``), so those
    do not count. Extension codes (EXT1/2/4) import through the copyreg registry, so they do.
    """
    if any(problem.kind == "extension-import" for problem in problems):
        return True
    return any(
        all(part.isidentifier() for part in f"{i.module}.{i.name}".split(".")) for i in imports
    )


def _decompressed_head(path: Path, compression: str) -> bytes:
    """The first bytes of what a tar reader or joblib would decompress; empty if it cannot."""
    opener = _TAR_COMPRESSIONS.get(compression)
    if opener is None:
        return b""
    try:
        with opener(path) as stream:
            return bytes(stream.read(_DECOMPRESSED_HEAD))
    except (OSError, EOFError, lzma.LZMAError, ValueError):
        return b""


def other_readings(path: Path, sniffed: ModelFormat) -> tuple[ModelFormat, ...]:
    """Formats other than ``sniffed`` that some real loader would read the same file as.

    pickle.load, joblib.load and torch's legacy reader run the opcodes that begin the file;
    zip readers (zipfile, torch's miniz, numpy.load of .npz, skops, Keras) find the central
    directory from the *end* of the file, so a zip can follow anything; tar readers check the
    header checksum at byte 0; h5py finds an HDF5 superblock at byte 0 or after a user block
    of 512, 1024, 2048, ... bytes. Sniffing picks one reading; every other one is returned here
    so it is scanned too, and a file with two is a polyglot.
    """
    readings: list[ModelFormat] = []
    if not sniffed.pickle_based and not _is_legacy_torch_stream(path) and reaches_an_import(path):
        readings.append(ModelFormat.PICKLE)
    if sniffed in _MEMBER_SCANNED:
        if _compressed_head_reaches_an_import(path):
            readings.append(ModelFormat.JOBLIB_COMPRESSED)
        return tuple(readings)
    if sniffed not in _ZIP_FORMATS and _is_zip(path):
        readings.append(ModelFormat.ZIP_ARCHIVE)
    if sniffed is not ModelFormat.TAR_ARCHIVE and _is_tar(path):
        readings.append(ModelFormat.TAR_ARCHIVE)
    if sniffed is not ModelFormat.KERAS_H5 and _has_hdf5_superblock(path):
        readings.append(ModelFormat.KERAS_H5)
    return tuple(readings)


def _is_legacy_torch_stream(path: Path) -> bool:
    """torch's legacy stream is consecutive pickles from byte 0: its scanner walks them all."""
    with path.open("rb") as handle:
        return handle.read(len(TORCH_LEGACY_MAGIC)) == TORCH_LEGACY_MAGIC


def _compressed_head_reaches_an_import(path: Path) -> bool:
    """Whether joblib, decompressing a compressed tar, would meet an import in its first bytes.

    A tar header is not a pickle, so joblib.load of a ``.tar.gz`` fails at once; one whose
    header is crafted as a pickle is scanned as compressed joblib too.
    """
    with path.open("rb") as handle:
        compression = sniff_compression(handle.read(SNIFF_BYTES))
    if compression is None:
        return False
    head = _decompressed_head(path, compression)
    try:
        scan = scan_bytes(head)
    except MalformedPickle as error:
        return _any_importable(error.imports_before, ())
    return _any_importable(scan.imports, scan.problems)


def _is_zip(path: Path) -> bool:
    try:
        return zipfile.is_zipfile(path)
    except OSError:
        return False


def _is_tar(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except (OSError, tarfile.TarError):
        return False


def _has_hdf5_superblock(path: Path) -> bool:
    size = path.stat().st_size
    with path.open("rb") as handle:
        offset = 0
        while offset + len(HDF5_MAGIC) <= size:
            handle.seek(offset)
            if handle.read(len(HDF5_MAGIC)) == HDF5_MAGIC:
                return True
            offset = _HDF5_FIRST_OFFSET if offset == 0 else offset * 2
    return False


# ============================================================================================
# TensorFlow SavedModel: SavedModel{1 schema version (varint), 2 meta_graphs (repeated)},
# MetaGraphDef{1 to 7, all messages, 2 graph_def} (core/protobuf/saved_model.proto and
# meta_graph.proto). ONNX's ModelProto needs field 7 at the top, which a SavedModel lacks.
_SAVEDMODEL_FIELDS = {1: 0, 2: 2}
_META_GRAPH_FIELDS = dict.fromkeys(range(1, 8), 2)
_SAVEDMODEL_META_GRAPHS = 2
_META_GRAPH_GRAPH_DEF = 2


def _looks_like_savedmodel(handle: BinaryIO, size: int) -> bool:
    """The top level walks exactly as a SavedModel whose first meta graph holds a graph."""
    meta_graphs = _message_fields(handle, 0, size, _SAVEDMODEL_FIELDS, _SAVEDMODEL_META_GRAPHS)
    if not meta_graphs:
        return False
    start, end = meta_graphs[0]
    return bool(
        _message_fields(handle, start, end, _META_GRAPH_FIELDS, _META_GRAPH_GRAPH_DEF)
    )


def _message_fields(
    handle: BinaryIO, start: int, end: int, wires: dict[int, int], wanted: int
) -> list[tuple[int, int]]:
    """The (start, end) of every length-delimited field ``wanted`` of the message between
    ``start`` and ``end``; empty unless the walk covers it exactly with only the field
    numbers of ``wires``, each with its wire type."""
    found: list[tuple[int, int]] = []
    handle.seek(start)
    while handle.tell() < end:
        key = _read_varint(handle)
        if key is None or wires.get(key >> 3) != key & 7:
            return []
        value = _read_varint(handle)  # a varint field's value, or a length
        if value is None or handle.tell() + (value if key & 7 else 0) > end:
            return []
        if key & 7 and key >> 3 == wanted:
            found.append((handle.tell(), handle.tell() + value))
        if key & 7:
            handle.seek(value, io.SEEK_CUR)
    return found
