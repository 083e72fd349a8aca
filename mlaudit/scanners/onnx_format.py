"""Static scan of ONNX model files: external-data paths and operators that carry code.

The model is parsed with the ``onnx`` package (protobuf only, ``load_external_data=False``):
no tensor data is read from other files, no operator runs, nothing is checked or converted.
The walk covers the main graph, every subgraph held in a node attribute (``If``, ``Loop``,
``Scan`` bodies, at any depth), the model-local functions and the training-info graphs.

* MLA103, CRITICAL: a tensor (initializer, sparse initializer, or a tensor in any node
  attribute, ``Constant`` included) whose external data ``location`` is absolute, has a
  ``..`` component, or resolves (through a symbolic link) outside the model's folder. Loading
  it would read, or with some tools write, a file the model should not reach.
* MLA107: external data without a ``location`` or with unreadable ``offset``/``length``
  (HIGH); a location that does not exist, is not a regular file, or is shorter than
  ``offset + length`` (MEDIUM: the model will not load, but nothing escapes). A file that does
  not parse as a ModelProto, or holds no graph (HIGH). Nesting past :data:`MAX_GRAPH_DEPTH`.
* MLA104, HIGH: nodes in an operator domain that is neither standard (:data:`STANDARD_DOMAINS`)
  nor a model-local function. Such operators come from a custom-op library the runtime must
  register first (a native shared library, or ``ai.onnx.contrib`` PyOps that call Python), so
  the file asks for code outside ONNX. One issue per domain, listing its op types.

``com.microsoft`` is counted standard: its operators are built into ONNX Runtime, not loaded
from elsewhere. Other ``com.microsoft.*`` domains (``nchwc``, ``dml``, ``experimental``) are
reported: they exist only in particular builds. A node is covered by a model-local function
when its (domain, op_type) pair is defined by a ``FunctionProto`` of the model; a custom
domain that only some of its nodes' op types are defined for is still reported for the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from mlaudit.core.findings import JsonValue, Severity
from mlaudit.core.runcache import CacheKey, RunCache
from mlaudit.scanners.format_report import ArtifactIssue, FormatReport, IssueCollector
from mlaudit.scanners.paths import escape_reason

if TYPE_CHECKING:
    from onnx import GraphProto, NodeProto, TensorProto

PATH_RULE: Final = "MLA103"
CODE_RULE: Final = "MLA104"
MALFORMED_RULE: Final = "MLA107"

STANDARD_DOMAINS: Final = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.training", "ai.onnx.preview.training",
     "com.microsoft"}
)
# Subgraphs nested in subgraphs (an If inside a Loop body inside a Scan...).
MAX_GRAPH_DEPTH: Final = 64
# At most this many issues per rule are listed; the rest are counted in one summary issue.
_MAX_LISTED: Final = 20
_EXTERNAL: Final = 1  # TensorProto.DataLocation.EXTERNAL


def parse_onnx(path: Path, cache: RunCache | None = None, *, by: str = "") -> Any:
    """``path`` as an ONNX ``ModelProto``: protobuf only (``format="protobuf"``: the file name
    never picks the text or JSON parsers), external data never read.

    With the run's ``cache`` the file is parsed once per run, whoever asks first (``by``:
    the inventory, MLA402, the loader); a file that does not parse raises what protobuf
    raises, every time it is asked for.
    """
    def parse() -> Any:
        import onnx

        return onnx.load_model_from_string(path.read_bytes(), format="protobuf")

    if cache is None:
        return parse()
    stat = path.stat()
    key = CacheKey("onnx-model", (str(path.resolve()), stat.st_size, stat.st_mtime_ns))
    return cache.shared(key, parse, by=by).value


def scan_onnx(path: str | os.PathLike[str], cache: RunCache | None = None) -> FormatReport:
    """Scan an ONNX model file without loading its external data or running it.

    Raises :class:`ImportError` when the ``onnx`` package is not installed and
    :class:`OSError` when the file cannot be read; everything wrong with its content is an
    issue in the returned report. ``cache``: the run's, which keeps the parse for MLA402
    and the loader.
    """
    try:
        import onnx  # noqa: F401 - its absence is reported before the file is read
    except ImportError as error:
        raise ImportError(
            "scanning an ONNX model needs the onnx package, which is not installed: "
            "pip install 'mlaudit[onnx]'"
        ) from error
    model_path = Path(path)
    scan = _Scan(model_path.parent)
    try:
        model = parse_onnx(model_path, cache, by="the inventory")
    except OSError:
        raise
    except Exception as error:  # protobuf raises DecodeError, and others on odd input
        scan.add(_malformed("onnx:unparseable", "Not a parseable ONNX model",
                            f"the file does not parse as an ONNX ModelProto: "
                            f"{_first_line(error)}"))
        return FormatReport("onnx (unparseable)", scan.result())
    if not model.HasField("graph"):
        scan.add(_malformed("onnx:no-graph", "ONNX model without a graph",
                            "the ModelProto holds no graph, so it is not a model any runtime "
                            "would run"))
    scan.local_functions = {(function.domain, function.name) for function in model.functions}
    scan.walk_model(model)
    scan.report_domains()
    return FormatReport(_detail(model), scan.result())


# ============================================================================================


@dataclass
class _DomainUse:
    op_types: dict[str, int] = field(default_factory=dict)
    where: list[str] = field(default_factory=list)


@dataclass
class _Scan:
    folder: Path
    local_functions: set[tuple[str, str]] = field(default_factory=set)
    domains: dict[str, _DomainUse] = field(default_factory=dict)
    locations: dict[str, list[str]] = field(default_factory=dict)
    collector: IssueCollector = field(default_factory=IssueCollector)
    _too_deep: bool = False

    # ---------------------------------------------------------------------------- issues

    def add(self, issue: ArtifactIssue) -> None:
        self.collector.add(issue)

    def result(self) -> tuple[ArtifactIssue, ...]:
        return self.collector.result()

    # ---------------------------------------------------------------------------- walk

    def walk_model(self, model: Any) -> None:
        work: list[tuple[Any, str, int]] = []
        if model.HasField("graph"):
            work.append((model.graph, f"graph {model.graph.name!r}", 0))
        for index, info in enumerate(model.training_info):
            if info.HasField("initialization"):
                work.append((info.initialization, f"training_info[{index}].initialization", 0))
            if info.HasField("algorithm"):
                work.append((info.algorithm, f"training_info[{index}].algorithm", 0))
        for function in model.functions:
            where = f"function {function.domain}:{function.name}"
            for attribute in function.attribute_proto:
                work.extend(self._attribute(attribute, f"{where} > attribute {attribute.name!r}",
                                            1))
            work.extend(self._nodes(function.node, where, 1))
        self._drain(work)

    def _drain(self, work: list[tuple[Any, str, int]]) -> None:
        while work:
            graph, where, depth = work.pop()
            if depth > MAX_GRAPH_DEPTH:
                if not self._too_deep:
                    self._too_deep = True
                    self.add(_malformed(
                        "onnx:too-deep", "Subgraphs nested too deep",
                        f"subgraphs nest more than {MAX_GRAPH_DEPTH} levels; deeper ones were "
                        "not checked", pointer=where,
                    ))
                continue
            work.extend(self._graph(graph, where, depth))

    def _graph(self, graph: GraphProto, where: str, depth: int) -> Iterator[tuple[Any, str, int]]:
        for tensor in graph.initializer:
            self._tensor(tensor, tensor.name, f"{where} > initializer {tensor.name!r}")
        for sparse in graph.sparse_initializer:
            self._sparse(sparse, f"{where} > sparse initializer")
        yield from self._nodes(graph.node, where, depth)

    def _nodes(self, nodes: Iterable[NodeProto], where: str,
               depth: int) -> Iterator[tuple[Any, str, int]]:
        for index, node in enumerate(nodes):
            label = node.name or (node.output[0] if node.output else f"#{index}")
            node_where = f"{where} > node {label!r} ({node.op_type})"
            self._operator(node, node_where)
            for attribute in node.attribute:
                yield from self._attribute(attribute,
                                           f"{node_where} attribute {attribute.name!r}", depth + 1)

    def _attribute(self, attribute: Any, where: str,
                   depth: int) -> Iterator[tuple[Any, str, int]]:
        # Every field is checked whatever ``type`` claims: a runtime may read the one it wants.
        if attribute.HasField("t"):
            self._tensor(attribute.t, attribute.t.name or where, where)
        for index, tensor in enumerate(attribute.tensors):
            self._tensor(tensor, tensor.name or f"{where}[{index}]", f"{where}[{index}]")
        if attribute.HasField("sparse_tensor"):
            self._sparse(attribute.sparse_tensor, where)
        for index, sparse in enumerate(attribute.sparse_tensors):
            self._sparse(sparse, f"{where}[{index}]")
        if attribute.HasField("g"):
            yield attribute.g, f"{where} > graph {attribute.g.name!r}", depth
        for index, graph in enumerate(attribute.graphs):
            yield graph, f"{where}[{index}] > graph {graph.name!r}", depth

    def _operator(self, node: NodeProto, where: str) -> None:
        domain = node.domain
        if domain in STANDARD_DOMAINS or (domain, node.op_type) in self.local_functions:
            return
        use = self.domains.setdefault(domain, _DomainUse())
        use.op_types[node.op_type] = use.op_types.get(node.op_type, 0) + 1
        if len(use.where) < _MAX_LISTED:
            use.where.append(where)

    def report_domains(self) -> None:
        for domain, use in sorted(self.domains.items()):
            ops = sorted(use.op_types)
            listed: list[JsonValue] = list(ops[:_MAX_LISTED])
            locations: list[JsonValue] = list(use.where)
            self.add(ArtifactIssue(
                CODE_RULE, f"onnx-custom-domain:{domain}", "Custom ONNX operator domain",
                f"{sum(use.op_types.values())} node(s) use operators of domain {domain!r} "
                f"({', '.join(ops[:_MAX_LISTED])}), which is neither a standard ONNX domain "
                "nor defined by a function in the model: running it needs a custom-operator "
                "library registered with the runtime",
                Severity.HIGH, None, use.where[0],
                {"domain": domain, "op_types": listed, "nodes": sum(use.op_types.values()),
                 "locations": locations},
            ))

    # ---------------------------------------------------------------------------- tensors

    def _sparse(self, sparse: Any, where: str) -> None:
        for part in ("values", "indices"):
            if sparse.HasField(part):
                tensor = getattr(sparse, part)
                name = tensor.name or where
                self._tensor(tensor, f"{name}.{part}", f"{where} {part} {tensor.name!r}")

    def _tensor(self, tensor: TensorProto, name: str, where: str) -> None:
        if tensor.data_location != _EXTERNAL and not tensor.external_data:
            return
        entries: dict[str, str] = {}
        for entry in tensor.external_data:
            entries.setdefault(entry.key, entry.value)
        location = entries.get("location")
        if not location:
            self.add(_malformed(
                f"onnx-external-no-location:{name}", "External tensor without a location",
                f"tensor {name!r} keeps its data in an external file but names none",
                pointer=where, evidence={"tensor": name},
            ))
            return
        numbers = self._offsets(entries, name, where)
        first = location not in self.locations
        self.locations.setdefault(location, []).append(name)
        if first:
            self._location(location, name, where, numbers)

    def _offsets(self, entries: dict[str, str], name: str, where: str) -> int | None:
        """Return offset + length when both parse (length given), report them otherwise."""
        values: dict[str, int] = {}
        for key in ("offset", "length"):
            text = entries.get(key)
            if text is None:
                continue
            if not re.fullmatch(r"\d{1,20}", text.strip()):
                self.add(_malformed(
                    f"onnx-external-bad-{key}:{name}", f"Unreadable external-data {key}",
                    f"tensor {name!r} has external-data {key} {text[:40]!r}, not a "
                    "non-negative integer", pointer=where, evidence={"tensor": name},
                ))
                return None
            values[key] = int(text)
        if "length" not in values:
            return None
        return values.get("offset", 0) + values["length"]

    def _location(self, location: str, name: str, where: str, end: int | None) -> None:
        evidence: dict[str, JsonValue] = {"location": location[:500], "tensor": name}
        reason = escape_reason(location, self.folder)
        if reason is not None:
            evidence["reason"] = reason
            self.add(ArtifactIssue(
                PATH_RULE, f"onnx-external-escape:{location}",
                "External data outside the model's folder",
                f"tensor {name!r} reads its data from {location!r}, which {reason}; loading "
                "the model would read a file it has no business reaching",
                Severity.CRITICAL, None, where, evidence,
            ))
            return
        target = self.folder / location
        problem: str | None = None
        if not target.exists():
            problem = "does not exist"
        elif not target.is_file():
            problem = "is not a regular file"
        elif end is not None and end > target.stat().st_size:
            problem = (f"holds {target.stat().st_size} bytes, fewer than the offset + length "
                       f"({end}) the tensor needs")
        if problem is not None:
            self.add(ArtifactIssue(
                MALFORMED_RULE, f"onnx-external-missing:{location}",
                "External data file missing or unusable",
                f"tensor {name!r} reads its data from {location!r}, which {problem}",
                Severity.MEDIUM, None, where, evidence,
            ))


def _malformed(key: str, title: str, message: str, *, pointer: str | None = None,
               evidence: dict[str, JsonValue] | None = None) -> ArtifactIssue:
    return ArtifactIssue(MALFORMED_RULE, key, title, message, Severity.HIGH, None, pointer,
                         evidence or {})


def _first_line(error: BaseException) -> str:
    text = str(error).strip()
    return text.splitlines()[0][:300] if text else type(error).__name__


def _detail(model: Any) -> str:
    versions = {f"{entry.domain or 'ai.onnx'} {entry.version}": None
                for entry in list(model.opset_import)[:16]}
    opsets = ", ".join(list(versions)[:8])
    parts = [f"ir_version {model.ir_version}"]
    if opsets:
        parts.append(f"opsets {opsets}")
    if model.producer_name:
        parts.append(f"producer {model.producer_name[:60]} {model.producer_version[:20]}".strip())
    return f"onnx ({'; '.join(parts)})"
