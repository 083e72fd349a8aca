"""Strings in ONNX model files, with their location, read without running the model.

The model is parsed as protobuf only (``load_external_data=False`` semantics: external
tensor files are never opened). Strings live in string tensors (initializers, sparse
initializers, tensors held in node attributes such as ``Constant``), in string attributes
(``classlabels_strings`` of classifiers, ``keys_strings`` of ``LabelEncoder``,
``cats_strings`` of ``CategoryMapper``, ``pool_strings`` of ``TfIdfVectorizer``), in
``metadata_props`` and in doc strings. Subgraphs (``If``/``Loop``/``Scan`` bodies), model-local
functions and training-info graphs are walked too, to :data:`MAX_GRAPH_DEPTH`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from mlaudit.core.runcache import RunCache
from mlaudit.pii.strings import DEFAULT_MAX_STRINGS, ArtifactStrings, StringCollector
from mlaudit.scanners.onnx_format import MAX_GRAPH_DEPTH, parse_onnx

_STRING_TENSOR: Final = 8  # TensorProto.DataType.STRING
_NAME: Final = re.compile(r"^[\w.:/-]{1,80}$")


def _label(name: str, index: int) -> str:
    """A model-chosen name when it looks like an identifier, its position otherwise."""
    return repr(name) if _NAME.match(name) and "@" not in name else f"#{index}"


def _texts(values: Iterable[bytes]) -> list[str]:
    return [value.decode("utf-8", "replace") for value in values]


class _Reader:
    def __init__(self, max_strings: int) -> None:
        self.collector = StringCollector(limit=max_strings)

    def model(self, model: Any) -> None:
        self.collector.add("doc_string", model.doc_string)
        for entry in model.metadata_props:
            self.collector.add("metadata_props", entry.key)
            self.collector.add("metadata_props", entry.value)
        work: list[tuple[Any, str, int]] = []
        if model.HasField("graph"):
            work.append((model.graph, "graph", 0))
        for index, info in enumerate(model.training_info):
            for part in ("initialization", "algorithm"):
                if info.HasField(part):
                    work.append((getattr(info, part), f"training_info[{index}].{part}", 0))
        for index, function in enumerate(model.functions):
            where = f"function {_label(function.name, index)}"
            self.collector.add(f"{where} doc_string", function.doc_string)
            for attribute in function.attribute_proto:
                work.extend(self._attribute(attribute, where, 1))
            work.extend(self._nodes(function.node, where, 1))
        while work and not self.collector.full:
            graph, where, depth = work.pop()
            if depth > MAX_GRAPH_DEPTH:
                self.collector.problems.append(f"subgraphs nest deeper than {MAX_GRAPH_DEPTH}")
                continue
            work.extend(self._graph(graph, where, depth))

    def _graph(self, graph: Any, where: str, depth: int) -> list[tuple[Any, str, int]]:
        self.collector.add(f"{where} doc_string", graph.doc_string)
        for index, tensor in enumerate(graph.initializer):
            self._tensor(tensor, f"{where} > initializer {_label(tensor.name, index)}")
        for index, sparse in enumerate(graph.sparse_initializer):
            self._tensor(sparse.values, f"{where} > sparse initializer #{index}")
        return self._nodes(graph.node, where, depth)

    def _nodes(self, nodes: Iterable[Any], where: str, depth: int) -> list[tuple[Any, str, int]]:
        work: list[tuple[Any, str, int]] = []
        for index, node in enumerate(nodes):
            node_where = f"{where} > node {_label(node.name, index)} ({node.op_type})"
            self.collector.add(f"{node_where} doc_string", node.doc_string)
            for attribute in node.attribute:
                work.extend(self._attribute(attribute, node_where, depth + 1))
        return work

    def _attribute(self, attribute: Any, where: str, depth: int) -> list[tuple[Any, str, int]]:
        # Every field is read whatever ``type`` claims: a runtime may read the one it wants.
        at = f"{where} attribute {_label(attribute.name, 0)}"
        if attribute.HasField("s"):
            self.collector.add_all(at, _texts([attribute.s]))
        self.collector.add_all(at, _texts(attribute.strings))
        if attribute.HasField("t"):
            self._tensor(attribute.t, at)
        for tensor in attribute.tensors:
            self._tensor(tensor, at)
        if attribute.HasField("sparse_tensor"):
            self._tensor(attribute.sparse_tensor.values, at)
        work = [(attribute.g, f"{at} > graph", depth)] if attribute.HasField("g") else []
        work += [(graph, f"{at}[{i}] > graph", depth) for i, graph in enumerate(attribute.graphs)]
        return work

    def _tensor(self, tensor: Any, where: str) -> None:
        if tensor.data_type == _STRING_TENSOR:
            self.collector.add_all(where, _texts(tensor.string_data))


def strings_in_onnx(
    path: Path,
    *,
    max_strings: int = DEFAULT_MAX_STRINGS,
    cache: RunCache | None = None,
    by: str = "",
) -> ArtifactStrings:
    """Strings of an ONNX file (the first ``max_strings`` kept, the rest counted as unread);
    a file that does not parse yields none, with a problem. ``cache`` and ``by``: the run's
    cache and who asks, so the file the inventory parsed is not parsed again."""
    reader = _Reader(max_strings)
    try:
        model = parse_onnx(path, cache, by=by)
    except Exception as error:  # protobuf raises DecodeError, and others on odd input
        reader.collector.problems.append(
            f"the file does not parse as ONNX ({type(error).__name__})"
        )
        return reader.collector.result()
    reader.model(model)
    return reader.collector.result()
