"""Static scan of TensorFlow SavedModels (``saved_model.pb``): every operator its graphs name.

The protobuf wire format is walked by hand, without TensorFlow or a generated protobuf
schema: TensorFlow is the framework that would run the model (importing it to read the file
is exactly what a static scan must avoid), and the handful of field numbers used here does
not justify vendoring its ``.proto`` files. The fields read (TensorFlow's
``core/protobuf/saved_model.proto``, ``meta_graph.proto``, ``core/framework/graph.proto``,
``node_def.proto``, ``function.proto``, ``op_def.proto``)::

    SavedModel          1 saved_model_schema_version (varint), 2 meta_graphs (repeated)
    MetaGraphDef        2 graph_def, 6 asset_file_def (repeated)
    GraphDef            1 node (NodeDef, repeated), 2 library (FunctionDefLibrary)
    FunctionDefLibrary  1 function (FunctionDef, repeated)
    FunctionDef         1 signature (OpDef: 1 name), 3 node_def (NodeDef, repeated)
    NodeDef             1 name, 2 op
    AssetFileDef        2 filename

Every operator TensorFlow could run lives in a graph node or a node of a library function
(function-valued attributes, signatures and the object graph name library functions, they do
not hold nodes), so the walk reads exactly those, in every meta graph. Its depth is fixed by
the schema (no recursion), so nesting cannot exhaust it, and its time is linear in the file.

The scan is a sound over-approximation of protobuf's parser. Protobuf merges repeated
occurrences of a singular message field and keeps the last value of a singular string; the
walk visits every occurrence and reports every ``op`` a node carries, so it sees at least what
the parser keeps. A field whose wire type differs from the schema's is an unknown field to
protobuf and is skipped, here too. Whatever the walk cannot follow to the end (a truncated
length, an overlong varint, a group or reserved wire type, field number 0) makes the file
unscannable: MLA107 HIGH, with the operators found before the break still reported. Protobuf
refuses messages of 2 GiB or more; such a file is MLA107 as well.

* MLA104: operators that leave the graph (see :data:`DANGEROUS_OPS`): calling Python (HIGH),
  reading or writing a file named by a tensor (HIGH), reaching the network (HIGH); listing,
  mapping or logging to files (MEDIUM). One issue per operator, naming its nodes.
* MLA103, CRITICAL: an asset file name that leaves the ``assets/`` folder (absolute or with a
  ``..`` component): loading reads that file into the model.

Not reported, by decision:

* Checkpoint ops (``Save``, ``SaveV2``, ``SaveSlices``, ``Restore``, ``RestoreV2``,
  ``RestoreSlice``, ``MergeV2Checkpoints``) and vocabulary loaders
  (``InitializeTableFromTextFile``, ``...V2``): every SavedModel's saver graph and every text
  model's lookup tables use them, on file names the loader feeds (its own ``variables/`` and
  ``assets/``). Telling a hostile use apart needs data-flow from constants to these inputs.
* Custom operators: an op that the TensorFlow process has not registered fails graph import;
  it runs only if the user loaded its kernel library (``tf.load_op_library``) themselves, so
  the file alone brings no code. Telling custom ops from standard ones would need the op
  registry of each TensorFlow release (well over a thousand names), which a static list
  cannot track soundly.
"""

from __future__ import annotations

import mmap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from mlaudit.core.findings import Severity
from mlaudit.scanners.format_report import ArtifactIssue, FormatReport, IssueCollector
from mlaudit.scanners.paths import escape_reason

CODE_RULE: Final = "MLA104"
PATH_RULE: Final = "MLA103"
MALFORMED_RULE: Final = "MLA107"
FORMAT: Final = "tf-savedmodel"
# The file TensorFlow reads from a SavedModel folder, by this name whatever its content.
PROTO_FILE: Final = "saved_model.pb"
# Protobuf's parser refuses a message of 2 GiB or more (its sizes are signed 32-bit).
MAX_PROTO_BYTES: Final = 2**31 - 1
# Nodes named per operator in an issue's evidence; the count covers them all.
_MAX_NODES_LISTED: Final = 10

# Each operator, why it matters and how bad it is, with the source naming it.
DANGEROUS_OPS: Final[dict[str, tuple[Severity, str]]] = {
    # Call a Python function of the loading process (TensorFlow core/ops/script_ops.cc;
    # ModelAudit detectors/suspicious_symbols.py SUSPICIOUS_OPS).
    "PyFunc": (Severity.HIGH, "calls Python from the graph"),
    "PyFuncStateless": (Severity.HIGH, "calls Python from the graph"),
    "EagerPyFunc": (Severity.HIGH, "calls Python from the graph"),
    # Read or write the whole of a file whose name is a tensor (core/ops/io_ops.cc; modelscan
    # settings.py unsafe_tf_operators, HIGH; ModelAudit SUSPICIOUS_OPS).
    "ReadFile": (Severity.HIGH, "reads any file into the graph"),
    "WriteFile": (Severity.HIGH, "writes any file"),
    # Send tensors to an address given by a tensor (core/ops/rpc_ops.cc, tf.contrib.rpc).
    "Rpc": (Severity.HIGH, "makes network requests"),
    "TryRpc": (Severity.HIGH, "makes network requests"),
    # Lists the files matching a glob into a tensor (core/ops/io_ops.cc).
    "MatchingFiles": (Severity.MEDIUM, "lists files on the host"),
    # Memory-maps the file named by its memory_region_name attribute (core/ops/array_ops.cc).
    "ImmutableConst": (Severity.MEDIUM, "maps a file named in the graph"),
    # Reads a checkpoint at a path tensor (core/ops/checkpoint_ops.cc; ModelAudit).
    "LoadAndRemapMatrix": (Severity.MEDIUM, "reads a checkpoint file named in the graph"),
    # Create event files or a database under a path tensor (core/ops/summary_ops.cc).
    "CreateSummaryFileWriter": (Severity.MEDIUM, "writes event files to a directory"),
    "CreateSummaryDbWriter": (Severity.MEDIUM, "writes a database file"),
    # Read records from files named by a tensor (core/ops/dataset_ops.cc): input pipelines,
    # not something a served model needs.
    "TextLineDataset": (Severity.MEDIUM, "reads files named in the graph"),
    "TFRecordDataset": (Severity.MEDIUM, "reads files named in the graph"),
    "FixedLengthRecordDataset": (Severity.MEDIUM, "reads files named in the graph"),
}
_DANGEROUS_BY_BYTES: Final = {name.encode(): name for name in DANGEROUS_OPS}

_META_GRAPHS: Final = 2  # SavedModel.meta_graphs
_GRAPH_DEF: Final = 2  # MetaGraphDef.graph_def
_ASSET_FILE_DEF: Final = 6  # MetaGraphDef.asset_file_def
_ASSET_FILENAME: Final = 2  # AssetFileDef.filename
_NODE: Final = 1  # GraphDef.node
_LIBRARY: Final = 2  # GraphDef.library
_FUNCTION: Final = 1  # FunctionDefLibrary.function
_SIGNATURE: Final = 1  # FunctionDef.signature
_FUNCTION_NODE: Final = 3  # FunctionDef.node_def
_OP_DEF_NAME: Final = 1  # OpDef.name
_NODE_NAME: Final = 1  # NodeDef.name
_NODE_OP: Final = 2  # NodeDef.op
_VARINT, _FIXED64, _LENGTH, _FIXED32 = 0, 1, 2, 5


class _Malformed(ValueError):
    """The bytes stop following the protobuf wire format."""


@dataclass
class _Walk:
    """What the walk has found so far: it stays valid when the walk breaks part-way."""

    meta_graphs: int = 0
    nodes: int = 0
    functions: int = 0
    op_nodes: dict[str, list[str]] = field(default_factory=dict)
    op_counts: dict[str, int] = field(default_factory=dict)
    assets: list[str] = field(default_factory=list)

    def node(self, ops: list[bytes], name: bytes, scope: str) -> None:
        self.nodes += 1
        for raw in ops:
            op = _DANGEROUS_BY_BYTES.get(raw)
            if op is None:
                continue
            self.op_counts[op] = self.op_counts.get(op, 0) + 1
            listed = self.op_nodes.setdefault(op, [])
            if len(listed) < _MAX_NODES_LISTED:
                listed.append(f"{scope} node {_text(name)}")


def scan_savedmodel(path: Path) -> FormatReport:
    """Scan a ``saved_model.pb`` without TensorFlow; everything wrong with it is an issue."""
    walk = _Walk()
    collector = IssueCollector()
    size = path.stat().st_size
    if size > MAX_PROTO_BYTES:
        collector.add(_malformed(f"{size} bytes: protobuf parses no message of 2 GiB or more"))
    elif size:
        with path.open("rb") as handle, mmap.mmap(
            handle.fileno(), 0, access=mmap.ACCESS_READ
        ) as mapped:
            problem = _walk_mapped(mapped, walk)
        if problem is not None:
            collector.add(_malformed(f"the file stops being a SavedModel protobuf: {problem}"))
    for op in sorted(walk.op_counts):
        collector.add(_op_issue(op, walk))
    for filename in walk.assets:
        reason = escape_reason(filename, path.parent / "assets")
        if reason is not None:
            collector.add(_asset_issue(filename, reason))
    detail = (
        f"{FORMAT} ({walk.meta_graphs} meta graphs, {walk.nodes} nodes, "
        f"{walk.functions} functions)"
    )
    return FormatReport(detail, collector.result())


def _walk_mapped(mapped: mmap.mmap, walk: _Walk) -> str | None:
    """Walk the mapped file into ``walk``; the reason it broke off, or None.

    No view of the mapping outlives this call, so the mapping can be closed after it.
    """
    view = memoryview(mapped)
    try:
        _saved_model(view, walk)
    except _Malformed as error:
        return str(error)
    finally:
        view.release()
    return None


# ============================================================================================
# The walk, one function per message type.


def _saved_model(data: memoryview, walk: _Walk) -> None:
    for number, payload in _messages(data):
        if number == _META_GRAPHS:
            walk.meta_graphs += 1
            _meta_graph(payload, walk)


def _meta_graph(data: memoryview, walk: _Walk) -> None:
    for number, payload in _messages(data):
        if number == _GRAPH_DEF:
            _graph(payload, walk)
        elif number == _ASSET_FILE_DEF:
            walk.assets.extend(
                bytes(name).decode("utf-8", "replace")
                for name in _occurrences(payload, _ASSET_FILENAME)
            )


def _graph(data: memoryview, walk: _Walk) -> None:
    for number, payload in _messages(data):
        if number == _NODE:
            _node(payload, "graph", walk)
        elif number == _LIBRARY:
            for function in _occurrences(payload, _FUNCTION):
                _function(function, walk)


def _function(data: memoryview, walk: _Walk) -> None:
    walk.functions += 1
    name = b""
    nodes: list[memoryview] = []
    for number, payload in _messages(data):
        if number == _SIGNATURE:
            name = _last_string(payload, _OP_DEF_NAME, name)
        elif number == _FUNCTION_NODE:
            nodes.append(payload)
    scope = f"function {_text(name)}"
    for node in nodes:
        _node(node, scope, walk)


def _node(data: memoryview, scope: str, walk: _Walk) -> None:
    name = b""
    ops: list[bytes] = []
    for number, payload in _messages(data):
        if number == _NODE_NAME:
            name = bytes(payload)
        elif number == _NODE_OP:
            ops.append(bytes(payload))
    walk.node(ops, name, scope)


# ============================================================================================
# The wire format.


def _occurrences(data: memoryview, wanted: int) -> Iterator[memoryview]:
    """Every length-delimited occurrence of field ``wanted``, in order."""
    return (payload for number, payload in _messages(data) if number == wanted)


def _last_string(data: memoryview, wanted: int, default: bytes) -> bytes:
    """The value protobuf keeps for singular field ``wanted``: its last occurrence."""
    for payload in _occurrences(data, wanted):
        default = bytes(payload)
    return default


def _messages(data: memoryview) -> Iterator[tuple[int, memoryview]]:
    """The length-delimited fields of one message as (number, payload), checking every field
    of the message on the way, whatever its type."""
    position, end = 0, len(data)
    while position < end:
        key, position = _varint(data, position)
        number, wire = key >> 3, key & 7
        if number == 0:
            raise _Malformed("field number 0")
        if wire == _VARINT:
            _, position = _varint(data, position)
        elif wire in (_FIXED64, _FIXED32):
            position += 8 if wire == _FIXED64 else 4
            if position > end:
                raise _Malformed("truncated fixed-width field")
        elif wire == _LENGTH:
            length, position = _varint(data, position)
            if length > end - position:
                raise _Malformed(f"field {number} runs past the end of its message")
            yield number, data[position : position + length]
            position += length
        else:
            raise _Malformed(f"wire type {wire} (no SavedModel field uses it)")


def _varint(data: memoryview, position: int) -> tuple[int, int]:
    if position < len(data) and data[position] < 0x80:  # most keys and lengths: one byte
        return data[position], position + 1
    result = 0
    for shift in range(0, 70, 7):
        if position >= len(data):
            raise _Malformed("truncated varint")
        byte = data[position]
        position += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, position
    raise _Malformed("varint longer than 10 bytes")


def _text(name: bytes) -> str:
    return name.decode("utf-8", "replace") or "<unnamed>"


# ============================================================================================
# Issues.


def _op_issue(op: str, walk: _Walk) -> ArtifactIssue:
    severity, effect = DANGEROUS_OPS[op]
    nodes = walk.op_nodes[op]
    count = walk.op_counts[op]
    return ArtifactIssue(
        CODE_RULE, f"tf-op:{op}", f"TensorFlow operator {op} {effect}",
        f"the SavedModel has {count} {op} node(s), first at {nodes[0]}: {op} {effect}, "
        "outside what a model's computation needs", severity, pointer=nodes[0],
        evidence={"op": op, "count": count, "nodes": list(nodes)},
    )


def _asset_issue(filename: str, reason: str) -> ArtifactIssue:
    return ArtifactIssue(
        PATH_RULE, f"tf-asset:{filename}", "SavedModel asset outside its folder",
        f"asset file {filename!r} {reason}; loading the SavedModel reads it into the model",
        Severity.CRITICAL, pointer="asset_file_def", evidence={"filename": filename},
    )


def _malformed(message: str) -> ArtifactIssue:
    return ArtifactIssue(
        MALFORMED_RULE, "savedmodel:malformed", "SavedModel protobuf that cannot be walked",
        f"{message}; what a parser makes of the rest cannot be vouched for", Severity.HIGH,
    )
