"""The native formats of the gradient-boosting libraries, checked without the libraries.

XGBoost's JSON and UBJSON models, LightGBM's text models and CatBoost's ``.cbm`` files hold
numbers and names only: loading them runs no code from the file. What can go wrong is their
structure: a truncated file, arrays whose lengths disagree, a tree whose children point
outside it or back into it, a size field that sends the library's reader somewhere else than
this reader. Each defect is an MLA107 issue of high severity, which keeps the file from being
loaded. The checks follow what each library's own reader relies on (XGBoost's
``RegTree::LoadModel``, LightGBM's ``GBDT::LoadModelFromString``, CatBoost's flatbuffer core).
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlaudit.core.findings import Severity
from mlaudit.scanners.format_report import ArtifactIssue, FormatReport

MALFORMED_RULE = "MLA107"
# Parsing materialises the whole model in memory (JSON several times its size); a file past
# this cap is reported as not checked (medium: it is still loaded, as it carries no code).
MAX_TREE_MODEL_BYTES = 512 * 1024**2
MAX_NESTING = 64

XGBOOST_KEYS = frozenset({"learner", "version"})
LIGHTGBM_OPENING = re.compile(rb"\Atree\r?\nversion=v\d+\r?\n")
CATBOOST_MAGIC = b"CBM1"
UBJSON_LENGTH_MARKERS = b"iUIlL"
# XGBoost's "version" is always an array ([3, 2, 0]); a tokenizer.json's is a string.
_JSON_OPENING = re.compile(rb'\A\s*\{\s*(?:"learner"\s*:|"version"\s*:\s*\[)')


def looks_like_xgboost_json(head: bytes) -> bool:
    """An XGBoost JSON model opens ``{"learner":`` (or ``{"version":`` if keys were reordered)."""
    return _JSON_OPENING.match(head) is not None


def looks_like_xgboost_ubj(head: bytes) -> bool:
    """An XGBoost UBJSON model is an object whose first key is ``learner`` or ``version``."""
    if len(head) < 3 or head[:1] != b"{" or head[1] not in UBJSON_LENGTH_MARKERS:
        return False
    try:
        key, _ = _UbjReader(head).string(1)
    except _Malformed:
        return False
    return key in XGBOOST_KEYS


def looks_like_lightgbm_text(head: bytes) -> bool:
    return LIGHTGBM_OPENING.match(head) is not None


def looks_like_catboost(head: bytes) -> bool:
    return head.startswith(CATBOOST_MAGIC)


class _Malformed(Exception):
    """The file breaks a structural rule; ``key`` names the rule for the fingerprint."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(message)
        self.key = key


def _malformed(library: str, error: _Malformed, what: str, detail: str) -> FormatReport:
    """The report of a file that broke a structural rule: one high MLA107 issue, which keeps
    it from being loaded (the check stops at the first break; what follows is unreliable)."""
    issue = ArtifactIssue(
        MALFORMED_RULE, f"{library}:{error.key}", f"Malformed {what}",
        f"{error}; the library's reader and this check may not read the same model, so it is "
        "not loaded", Severity.HIGH,
    )
    return FormatReport(detail, (issue,))


def _read_capped(path: Path, library: str, what: str) -> bytes | FormatReport:
    """The file's bytes, or the report of a file too large to parse (medium: not a defect)."""
    size = path.stat().st_size
    if size <= MAX_TREE_MODEL_BYTES:
        return path.read_bytes()
    issue = ArtifactIssue(
        MALFORMED_RULE, f"{library}:not-checked", "Model too large to check",
        f"the {what} is {size} bytes, over the {MAX_TREE_MODEL_BYTES} bytes this check "
        "parses; its structure was not checked", Severity.MEDIUM,
    )
    return FormatReport(f"{library} (not checked)", (issue,))


# ============================================================================================
# XGBoost: JSON and UBJSON hold the same document (doc/model.schema in XGBoost's sources).

_XGBOOST_OBJECTIVE_TASKS = (
    ("binary:", "classification"), ("multi:", "classification"), ("reg:", "regression"),
    ("count:", "regression"), ("survival:", "regression"), ("rank:", "ranking"),
)
_TREE_ARRAYS = (
    "left_children", "right_children", "parents", "split_indices", "split_conditions",
    "default_left", "base_weights",
)


def scan_xgboost_json(path: Path) -> FormatReport:
    raw = _read_capped(path, "xgboost", "XGBoost JSON model")
    if isinstance(raw, FormatReport):
        return raw
    try:
        document = json.loads(raw)
    except (ValueError, RecursionError) as error:
        problem = _Malformed("not-json", f"the file opens as an XGBoost JSON model but does "
                             f"not parse ({error})")
        return _malformed("xgboost", problem, "XGBoost JSON model", "xgboost json (unreadable)")
    return _check_xgboost(document, "json")


def scan_xgboost_ubj(path: Path) -> FormatReport:
    raw = _read_capped(path, "xgboost", "XGBoost UBJSON model")
    if isinstance(raw, FormatReport):
        return raw
    try:
        document = decode_ubjson(raw)
    except _Malformed as error:
        return _malformed("xgboost", error, "XGBoost UBJSON model", "xgboost ubj (unreadable)")
    return _check_xgboost(document, "ubj")


def _check_xgboost(document: Any, encoding: str) -> FormatReport:
    try:
        summary = xgboost_summary(document)
    except _Malformed as error:
        return _malformed("xgboost", error, "XGBoost model", f"xgboost {encoding} (malformed)")
    return FormatReport(f"xgboost {encoding} ({summary})")


def _field(container: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(container, dict) or key not in container:
        raise _Malformed(f"missing:{key}", f"{where} has no {key!r}")
    value = container[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise _Malformed(f"type:{key}", f"{where}.{key} is a {type(value).__name__}")
    return value


def _count(container: Any, key: str, where: str) -> int:
    """XGBoost writes its model parameters as decimal strings."""
    value = _field(container, key, (str, int), where)
    try:
        number = int(value)
    except ValueError:
        raise _Malformed(f"type:{key}", f"{where}.{key} is not a whole number") from None
    if number < 0:
        raise _Malformed(f"negative:{key}", f"{where}.{key} is negative")
    return number


def xgboost_summary(document: Any) -> str:
    """Check the document's structure; a one-line description of the model it holds."""
    if not isinstance(document, dict):
        raise _Malformed("not-object", "the model is not an object")
    version = _field(document, "version", list, "model")
    if len(version) != 3 or not all(isinstance(v, int) for v in version):
        raise _Malformed("version", "model.version is not three whole numbers")
    learner = _field(document, "learner", dict, "model")
    parameters = _field(learner, "learner_model_param", dict, "learner")
    features = _count(parameters, "num_feature", "learner_model_param")
    classes = _count(parameters, "num_class", "learner_model_param")
    objective = _field(_field(learner, "objective", dict, "learner"), "name", str, "objective")
    names = learner.get("feature_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise _Malformed("type:feature_names", "learner.feature_names is not a list of names")
    if names and len(names) != features:
        raise _Malformed(
            "feature-names", f"{len(names)} feature names for {features} features"
        )
    booster = _field(learner, "gradient_booster", dict, "learner")
    kind = _field(booster, "name", str, "gradient_booster")
    if kind == "gblinear":
        weights = _field(_field(booster, "model", dict, "gblinear"), "weights", list, "gblinear")
        outputs = max(classes, 1)
        if len(weights) != (features + 1) * outputs:
            raise _Malformed("gblinear-weights", f"{len(weights)} linear weights for "
                             f"{features} features and {outputs} outputs")
        return f"{objective}, linear, {features} features"
    if kind == "dart":
        booster = _field(booster, "gbtree", dict, "dart")
    elif kind != "gbtree":
        raise _Malformed("booster", f"unknown gradient booster {kind[:40]!r}")
    model = _field(booster, "model", dict, "gbtree")
    trees = _field(model, "trees", list, "gbtree.model")
    declared = _count(_field(model, "gbtree_model_param", dict, "gbtree.model"), "num_trees",
                      "gbtree_model_param")
    if declared != len(trees):
        raise _Malformed("tree-count", f"num_trees says {declared} but {len(trees)} trees follow")
    info = _field(model, "tree_info", list, "gbtree.model")
    if len(info) != len(trees):
        raise _Malformed("tree-info", f"{len(info)} tree_info entries for {len(trees)} trees")
    for position, tree in enumerate(trees):
        _check_xgboost_tree(tree, position, features)
    return f"{objective}, {len(trees)} trees, {features} features"


def xgboost_task(objective: str) -> str:
    """classification, regression or ranking from an XGBoost objective name."""
    return next((task for prefix, task in _XGBOOST_OBJECTIVE_TASKS
                 if objective.startswith(prefix)), "unknown")


def _check_xgboost_tree(tree: Any, position: int, features: int) -> None:
    where = f"tree {position}"
    nodes = _count(_field(tree, "tree_param", dict, where), "num_nodes", f"{where}.tree_param")
    arrays = {}
    for name in _TREE_ARRAYS:
        values = _field(tree, name, list, where)
        if len(values) != nodes:
            raise _Malformed(
                f"tree-arrays:{name}", f"{where}: {name} has {len(values)} entries for "
                f"{nodes} nodes"
            )
        arrays[name] = values
    try:
        left = np.asarray(arrays["left_children"], dtype=np.int64)
        right = np.asarray(arrays["right_children"], dtype=np.int64)
        split = np.asarray(arrays["split_indices"], dtype=np.int64)
        np.asarray(arrays["split_conditions"], dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise _Malformed("tree-values", f"{where}: a node array holds a non-number") from None
    inner = left != -1
    if np.any(inner & (split >= features)) or np.any(inner & (split < 0)):
        raise _Malformed("split-feature", f"{where}: a split names a feature past the "
                         f"model's {features}")
    check_tree_shape(left, right, where)


def check_tree_shape(left: np.ndarray, right: np.ndarray, where: str) -> None:
    """Children of node 0 reach every node at most once: a tree, without cycles or sharing.

    ``-1`` marks a leaf (both children). Nodes no path reaches are allowed: XGBoost keeps the
    nodes pruning deleted.
    """
    size = len(left)
    if size == 0:
        raise _Malformed("empty-tree", f"{where} has no nodes")
    leaf = left == -1
    if np.any(leaf != (right == -1)):
        raise _Malformed("half-leaf", f"{where}: a node has one child")
    for children in (left, right):
        if np.any((children < -1) | (children >= size) | (children == 0)):
            raise _Malformed("child-range", f"{where}: a child index lies outside the tree")
    seen = np.zeros(size, dtype=bool)
    seen[0] = True
    frontier = np.array([0])
    while frontier.size:
        frontier = frontier[~leaf[frontier]]
        reached = np.concatenate([left[frontier], right[frontier]])
        if np.any(seen[reached]) or len(np.unique(reached)) != len(reached):
            raise _Malformed("cycle", f"{where}: a node is reached twice (a cycle or a shared "
                             "child)")
        seen[reached] = True
        frontier = reached


# --------------------------------------------------------------------------------------------
# UBJSON (ubjson.org draft 12, with optimised containers), as XGBoost writes it.
# Why our own reader: py-ubjson, the one Python implementation, has had no release since
# 2020; XGBoost's subset is small, and a reader of our own bounds every count by the bytes
# that remain, so a hostile count cannot make it allocate.

_UBJ_SCALARS: dict[int, tuple[str, int]] = {
    ord("i"): (">b", 1), ord("U"): (">B", 1), ord("I"): (">h", 2), ord("l"): (">i", 4),
    ord("L"): (">q", 8), ord("d"): (">f", 4), ord("D"): (">d", 8),
}
_UBJ_NUMPY = {"i": ">i1", "U": "u1", "I": ">i2", "l": ">i4", "L": ">i8", "d": ">f4", "D": ">f8"}
_UBJ_CONSTANTS: dict[int, Any] = {ord("Z"): None, ord("T"): True, ord("F"): False}


class _UbjReader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.depth = 0

    def _need(self, at: int, count: int) -> None:
        if count < 0 or at + count > len(self.data):
            raise _Malformed("truncated", f"the UBJSON data ends inside a value at byte {at}")

    def marker(self, at: int) -> int:
        self._need(at, 1)
        return self.data[at]

    def scalar(self, marker: int, at: int) -> tuple[Any, int]:
        if marker in _UBJ_CONSTANTS:
            return _UBJ_CONSTANTS[marker], at
        if marker == ord("C"):
            self._need(at, 1)
            return chr(self.data[at]), at + 1
        if marker in (ord("S"), ord("H")):  # a high-precision number stays its text
            return self.string(at)
        if marker not in _UBJ_SCALARS:
            raise _Malformed("ubj-marker", f"unknown UBJSON type marker {marker:#x} at {at - 1}")
        layout, size = _UBJ_SCALARS[marker]
        self._need(at, size)
        return struct.unpack_from(layout, self.data, at)[0], at + size

    def length(self, at: int) -> tuple[int, int]:
        marker = self.marker(at)
        if marker not in UBJSON_LENGTH_MARKERS:
            raise _Malformed("ubj-length", f"a length at byte {at} is not an integer")
        value, end = self.scalar(marker, at + 1)
        if value < 0:
            raise _Malformed("ubj-length", f"a negative length at byte {at}")
        return int(value), end

    def string(self, at: int) -> tuple[str, int]:
        count, at = self.length(at)
        self._need(at, count)
        try:
            return self.data[at:at + count].decode("utf-8"), at + count
        except UnicodeDecodeError:
            raise _Malformed("ubj-string", f"a string at byte {at} is not UTF-8") from None

    def value(self, at: int) -> tuple[Any, int]:
        marker = self.marker(at)
        if marker in (ord("["), ord("{")):
            if self.depth >= MAX_NESTING:
                raise _Malformed("ubj-nesting", f"containers nested over {MAX_NESTING} deep")
            self.depth += 1
            try:
                return self.container(marker == ord("{"), at + 1)
            finally:
                self.depth -= 1
        return self.scalar(marker, at + 1)

    def container(self, is_object: bool, at: int) -> tuple[Any, int]:
        element_type: int | None = None
        count: int | None = None
        if self.marker(at) == ord("$"):
            element_type = self.marker(at + 1)
            at += 2
            if self.marker(at) != ord("#"):
                raise _Malformed("ubj-container", f"a typed container at {at} has no count")
        if self.marker(at) == ord("#"):
            count, at = self.length(at + 1)
            # Every element takes at least one byte unless typed as a constant: a count past
            # the bytes left is a lie, refused before anything is allocated.
            if element_type not in _UBJ_CONSTANTS and count > len(self.data) - at:
                raise _Malformed("truncated", f"a container at byte {at} claims {count} "
                                 "elements, more than the bytes left")
        if not is_object and element_type is not None and chr(element_type) in _UBJ_NUMPY:
            dtype = np.dtype(_UBJ_NUMPY[chr(element_type)])
            assert count is not None
            self._need(at, count * dtype.itemsize)
            values = np.frombuffer(self.data, dtype, count, at).tolist()
            return values, at + count * dtype.itemsize
        items: list[Any] = []
        pairs: dict[str, Any] = {}
        index = 0
        while count is None or index < count:
            if count is None and self.marker(at) == ord("]" if not is_object else "}"):
                return (pairs if is_object else items), at + 1
            key = None
            if is_object:
                key, at = self.string(at)
            if element_type is not None:
                item, at = (
                    self.container(element_type == ord("{"), at)
                    if element_type in (ord("["), ord("{")) else self.scalar(element_type, at)
                )
            else:
                item, at = self.value(at)
            if key is not None:
                pairs[key] = item
            else:
                items.append(item)
            index += 1
        return (pairs if is_object else items), at


def decode_ubjson(data: bytes) -> Any:
    """The document in ``data``, which must hold one value and nothing after it."""
    try:
        value, end = _UbjReader(data).value(0)
    except (struct.error, OverflowError):
        raise _Malformed("truncated", "the UBJSON data ends inside a value") from None
    if end != len(data):
        raise _Malformed("trailing-bytes", f"{len(data) - end} bytes follow the model's "
                         "UBJSON document")
    return value


# ============================================================================================
# LightGBM's text model: a header, Tree= blocks whose byte sizes the header lists, "end of
# trees", importances, the training parameters and the pandas categories.

_LIGHTGBM_REQUIRED = ("num_class", "num_tree_per_iteration", "max_feature_idx", "objective")


@dataclass(frozen=True)
class LightGBMHeader:
    """What the text model says about itself."""

    values: Mapping[str, str]
    trees: int

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(self.values.get("feature_names", "").split())

    @property
    def objective(self) -> str:
        return self.values.get("objective", "").split(" ")[0]


def scan_lightgbm_text(path: Path) -> FormatReport:
    raw = _read_capped(path, "lightgbm", "LightGBM text model")
    if isinstance(raw, FormatReport):
        return raw
    try:
        header = read_lightgbm_text(raw)
    except _Malformed as error:
        return _malformed("lightgbm", error, "LightGBM text model", "lightgbm text (malformed)")
    return FormatReport(
        f"lightgbm text ({header.objective}, {header.trees} trees, "
        f"{len(header.feature_names)} features)"
    )


def _key_values(lines: Iterator[str]) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in lines:
        if not line:
            break
        key, equals, value = line.partition("=")
        if equals:
            values[key] = value
    return values


def read_lightgbm_text(raw: bytes) -> LightGBMHeader:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _Malformed("not-text", "the file is not UTF-8 text") from None
    text = text.replace("\r\n", "\n")
    header_text, _, rest = text.partition("\n\n")
    header = _key_values(iter(header_text.split("\n")[1:]))
    for key in _LIGHTGBM_REQUIRED:
        if key not in header:
            raise _Malformed(f"missing:{key}", f"the header has no {key}=")
    try:
        features = int(header["max_feature_idx"]) + 1
        int(header["num_class"])
        per_iteration = int(header["num_tree_per_iteration"])
        sizes = [int(s) for s in header.get("tree_sizes", "").split()]
    except ValueError:
        raise _Malformed("header-number", "a header count is not a whole number") from None
    names = header.get("feature_names", "").split()
    if len(names) != features:
        raise _Malformed("feature-names", f"{len(names)} feature names for {features} features")
    body, end, tail = rest.partition("end of trees")
    if not end:
        raise _Malformed("truncated", "the file has no 'end of trees' line: it is truncated "
                         "or is not a complete LightGBM model")
    if "\nparameters:\n" in tail and "\nend of parameters" not in tail:
        raise _Malformed("truncated", "the parameters section has no end: the file is "
                         "truncated")
    blocks = [b for b in re.split(r"(?m)^(?=Tree=)", body) if b.strip()]
    if sizes and sizes != [len(b.encode("utf-8")) for b in blocks]:
        # LightGBM seeks to each tree by these sizes; trees that do not sit where the header
        # says are read differently by it and by anything parsing the lines.
        raise _Malformed("tree-sizes", "the header's tree_sizes do not match the Tree= blocks")
    if per_iteration < 1 or len(blocks) % per_iteration:
        raise _Malformed("tree-count", f"{len(blocks)} trees is not a whole number of "
                         f"iterations of {per_iteration}")
    for position, block in enumerate(blocks):
        _check_lightgbm_tree(block, position, features)
    return LightGBMHeader(header, len(blocks))


def _numbers(tree: Mapping[str, str], key: str, count: int, where: str,
             parse: Callable[[str], float]) -> np.ndarray:
    if count == 0:
        return np.zeros(0)
    if key not in tree:
        raise _Malformed(f"missing:{key}", f"{where} has no {key}=")
    try:
        values = np.array([parse(v) for v in tree[key].split()])
    except ValueError:
        raise _Malformed("tree-values", f"{where}: {key} holds a non-number") from None
    if len(values) != count:
        raise _Malformed(f"tree-arrays:{key}", f"{where}: {key} has {len(values)} entries, "
                         f"not {count}")
    return values


def _check_lightgbm_tree(block: str, position: int, features: int) -> None:
    lines = block.strip().split("\n")
    where = lines[0]
    if where != f"Tree={position}":
        raise _Malformed("tree-order", f"tree {position} is headed {where[:40]!r}")
    tree = _key_values(iter(lines[1:]))
    try:
        leaves = int(tree.get("num_leaves", ""))
        categorical = int(tree.get("num_cat", "0"))
    except ValueError:
        raise _Malformed("tree-values", f"{where}: num_leaves is not a whole number") from None
    if leaves < 1:
        raise _Malformed("tree-values", f"{where}: {leaves} leaves")
    _numbers(tree, "leaf_value", leaves, where, float)
    inner = leaves - 1
    split = _numbers(tree, "split_feature", inner, where, int)
    _numbers(tree, "threshold", inner, where, float)
    decision = _numbers(tree, "decision_type", inner, where, int)
    if np.any((split < 0) | (split >= features)):
        raise _Malformed("split-feature", f"{where}: a split names a feature past the "
                         f"model's {features}")
    if categorical:
        bounds = _numbers(tree, "cat_boundaries", categorical + 1, where, int)
        _numbers(tree, "cat_threshold", int(bounds[-1]), where, int)
    elif np.any(decision.astype(np.int64) & 1):
        raise _Malformed("categorical", f"{where}: a categorical split in a tree with num_cat=0")
    if inner == 0:
        return
    # Children >= 0 are internal nodes; ~child is a leaf. As one node table: leaves after
    # the inner nodes, so that check_tree_shape can walk it.
    left = _numbers(tree, "left_child", inner, where, int).astype(np.int64)
    right = _numbers(tree, "right_child", inner, where, int).astype(np.int64)
    if np.any((left >= inner) | (right >= inner) | (left < -leaves) | (right < -leaves)):
        raise _Malformed("child-range", f"{where}: a child index lies outside the tree")

    def as_node(child: np.ndarray) -> np.ndarray:
        return np.where(child >= 0, child, inner + ~child)

    no_children = np.full(leaves, -1)
    check_tree_shape(
        np.concatenate([as_node(left), no_children]),
        np.concatenate([as_node(right), no_children]),
        where,
    )
    if inner + leaves > 1 and not _all_leaves_reached(left, right, leaves):
        raise _Malformed("unreached-leaf", f"{where}: a leaf no path reaches")


def _all_leaves_reached(left: np.ndarray, right: np.ndarray, leaves: int) -> bool:
    children = np.concatenate([left, right])
    return len(np.unique(children[children < 0])) == leaves


# ============================================================================================
# CatBoost's .cbm: "CBM1", the core's size (u32), the core (a flatbuffer TModelCore whose
# fields are FormatVersion, ModelTrees, InfoMap, ModelPartIds), then one blob per part id.

_CORE_FORMAT_VERSION = 0
_CORE_PART_IDS = 3


def scan_catboost(path: Path) -> FormatReport:
    raw = _read_capped(path, "catboost", "CatBoost model")
    if isinstance(raw, FormatReport):
        return raw
    try:
        version, parts = read_catboost_core(raw)
    except _Malformed as error:
        return _malformed("catboost", error, "CatBoost model", "catboost cbm (malformed)")
    extra = f", parts {', '.join(parts)}" if parts else ""
    return FormatReport(f"catboost cbm ({version}{extra})")


class _Flatbuffer:
    """Bounds-checked reads of a flatbuffer: every offset must land inside the buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def u32(self, at: int) -> int:
        if at < 0 or at + 4 > len(self.data):
            raise _Malformed("flatbuffer-bounds", f"an offset points past the core, at {at}")
        return int(struct.unpack_from("<I", self.data, at)[0])

    def field(self, table: int, index: int) -> int | None:
        """The position of field ``index`` of the table at ``table``, None if absent."""
        # A table opens with the signed distance back to its vtable.
        signed = self.u32(table)
        vtable = table - (signed - 2**32 if signed >= 2**31 else signed)
        if vtable < 0 or vtable + 4 > len(self.data):
            raise _Malformed("flatbuffer-vtable", "a table's vtable lies outside the core")
        vtable_size, table_size = struct.unpack_from("<HH", self.data, vtable)
        if vtable_size < 4 or vtable_size % 2 or vtable + vtable_size > len(self.data) or (
            table + table_size > len(self.data)
        ):
            raise _Malformed("flatbuffer-vtable", "a vtable's sizes run past the core")
        if 4 + 2 * index + 2 > vtable_size:
            return None
        offset = struct.unpack_from("<H", self.data, vtable + 4 + 2 * index)[0]
        if offset and offset >= table_size:
            raise _Malformed("flatbuffer-field", "a field lies outside its table")
        return table + offset if offset else None

    def string(self, at: int) -> str:
        start = at + self.u32(at)
        length = self.u32(start)
        if start + 4 + length > len(self.data):
            raise _Malformed("flatbuffer-bounds", "a string runs past the core")
        return self.data[start + 4:start + 4 + length].decode("utf-8", "replace")

    def strings(self, at: int) -> list[str]:
        start = at + self.u32(at)
        count = self.u32(start)
        if start + 4 + 4 * count > len(self.data):
            raise _Malformed("flatbuffer-bounds", "a vector runs past the core")
        return [self.string(start + 4 + 4 * i) for i in range(count)]


def read_catboost_core(raw: bytes) -> tuple[str, list[str]]:
    """The core's format version and part ids, once the sizes add up."""
    if len(raw) < 8 or not raw.startswith(CATBOOST_MAGIC):
        raise _Malformed("truncated", "the file ends before the core's size")
    size = int(struct.unpack_from("<I", raw, 4)[0])
    if 8 + size > len(raw):
        raise _Malformed("truncated", f"the core claims {size} bytes but only "
                         f"{len(raw) - 8} follow")
    core = _Flatbuffer(raw[8:8 + size])
    root = core.u32(0)
    version_at = core.field(root, _CORE_FORMAT_VERSION)
    if version_at is None:
        raise _Malformed("format-version", "the core has no format version")
    version = core.string(version_at)
    if not version.startswith("FlabuffersModel_v"):  # CatBoost's own spelling
        raise _Malformed("format-version", f"unknown core format {version[:40]!r}")
    parts_at = core.field(root, _CORE_PART_IDS)
    parts = core.strings(parts_at) if parts_at is not None else []
    trailing = len(raw) - 8 - size
    if not parts and trailing:
        raise _Malformed("trailing-bytes", f"{trailing} bytes follow a core that declares no "
                         "further parts")
    if parts and not trailing:
        raise _Malformed("truncated", f"the core declares parts {parts} but none follow")
    return version, parts
