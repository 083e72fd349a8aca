"""Model format detection from content, never from the file name.

A file named ``model.onnx`` that holds a pickle is a pickle: trusting the extension is how a
hostile file reaches a loader that executes it.
"""

from __future__ import annotations

import enum
import io
import pickletools
import re
import zipfile
from pathlib import Path
from typing import BinaryIO

from mlaudit.errors import InputError

ZIP_MAGIC = b"PK\x03\x04"
HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
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

    @property
    def pickle_based(self) -> bool:
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
        head = handle.read(16)
        if head.startswith(ZIP_MAGIC):
            return _sniff_zip(path)
        if head.startswith(HDF5_MAGIC):
            raise InputError(f"{path} is HDF5 (Keras .h5); this format is not supported yet")
        if len(head) > 1 and head[0] == 0x80 and 2 <= head[1] <= 5:
            return ModelFormat.PICKLE
        handle.seek(0)
        if _looks_like_onnx(handle, path.stat().st_size):
            return ModelFormat.ONNX
        handle.seek(0)
        if _looks_like_text_pickle(handle.read(4096)):
            return ModelFormat.PICKLE
    raise InputError(
        f"{path}: unknown model format (supported: pickle, joblib, skops, ONNX, "
        "or an entry point module:callable)"
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
    if any(name.endswith(".npy") for name in names):
        raise InputError(f"{path} is an NPZ array archive, which is data, not a model")
    raise InputError(
        f"{path} is a zip archive of an unsupported kind (PyTorch and Keras archives are not "
        "supported yet)"
    )


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
