"""Model format detection from content, never from the file name.

A file named ``model.onnx`` that holds a pickle is a pickle: trusting the extension is how a
hostile file reaches a loader that executes it.
"""

from __future__ import annotations

import enum
import io
import pickletools
import re
import tarfile
import zipfile
from pathlib import Path
from typing import BinaryIO

from mlaudit.errors import InputError
from mlaudit.scanners.compressed import SNIFF_BYTES, sniff_compression
from mlaudit.scanners.safetensors_format import looks_like_safetensors

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
ENTRY_POINT = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")
_TEXT_PICKLE_OPENINGS = frozenset(bytes([byte]) for byte in b"(c}])NIVSLFGJKMXUT")
_TEXT_GLOBAL = re.compile(rb"^c[A-Za-z_][\w.]*\n[A-Za-z_][\w.]*\n")

# ModelProto field numbers (onnx.proto3) and the wire type each must use.
_ONNX_MODEL_FIELDS = {
    1: 0, 2: 2, 3: 2, 4: 2, 5: 0, 6: 2, 7: 2, 8: 2, 14: 2, 20: 2, 25: 2, 26: 2,
}
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

    @property
    def pickle_based(self) -> bool:
        """Formats that are one pickle stream (or several), read by the pickle walker itself."""
        return self in (ModelFormat.PICKLE, ModelFormat.JOBLIB)


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
        # An implausible header length is still safetensors' shape: the scanner reports it.
        if looks_like_safetensors(head, size) or head[8:9] == b"{":
            return ModelFormat.SAFETENSORS
        if sniff_compression(head) is not None:
            return ModelFormat.JOBLIB_COMPRESSED
        handle.seek(TAR_MAGIC_OFFSET)
        if handle.read(len(TAR_MAGIC)) == TAR_MAGIC:
            return _sniff_tar(path)
        handle.seek(0)
        if _looks_like_onnx(handle, path.stat().st_size):
            return ModelFormat.ONNX
        handle.seek(0)
        if _looks_like_text_pickle(handle.read(4096)):
            return ModelFormat.PICKLE
    raise InputError(
        f"{path}: unknown model format (supported: pickle, joblib, skops, ONNX, PyTorch, "
        "Keras, safetensors, NumPy, MLflow and Hugging Face folders, or an entry point "
        "module:callable)"
    )


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
    # PyTorch names its archive folder after the file, so only the leaf names are fixed.
    if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names) or any(
        name.endswith("/constants.pkl") for name in names
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
