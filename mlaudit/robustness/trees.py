"""Certified robustness radii for tree ensembles, from the boxes of their leaves.

Every leaf of a decision tree is an axis-aligned box. Within a perturbation ball around x, a
tree can only answer with the leaves whose boxes the ball reaches, so the worst case of an
additive ensemble is bounded below by summing, tree by tree, the worst reachable leaf. When
that bound still favours the true label (or keeps a regression inside its tolerance) no
perturbation of that size can change the decision: a certified lower bound on the robust
radius, which the attack's upper bound brackets from above.

Why our own verifier rather than ART's ``RobustnessVerificationTreeModelsCliqueMethod``: ART's
sums leaf values and compares the sum with zero, which is right for boosted logits and wrong
for random forests (their leaves hold non-negative class shares, averaged), it needs inputs
scaled to [0, 1] by the model itself, and it cannot hold features fixed. Here every ensemble
becomes one table of leaves with per-class score contributions, the bound runs in the same
scaled space as the attacks (immutable features must stay in their box), and the extracted
table is checked against the model's own predictions before any radius is trusted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd

from mlaudit.robustness.space import FeatureSpace

TIE = 1e-9


class UnsupportedEnsemble(Exception):
    """The model is not a tree ensemble this module can read exactly."""


@dataclass(frozen=True)
class _Nodes:
    """One tree as parallel arrays; ``leaf_values`` rows are per-output contributions."""

    left: np.ndarray
    right: np.ndarray
    feature: np.ndarray
    threshold: np.ndarray
    leaf_values: np.ndarray


@dataclass(frozen=True, eq=False)
class LeafTable:
    """All leaves of an ensemble. Scores = ``base`` + sum of the reached leaves' ``values``."""

    tree_starts: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    values: np.ndarray
    base: np.ndarray
    slack: float
    classes: tuple[object, ...] | None

    @property
    def trees(self) -> int:
        return len(self.tree_starts)

    def scores(self, raw: np.ndarray) -> np.ndarray:
        """Ensemble scores of raw feature rows (used to check the extraction)."""
        totals = np.zeros((len(raw), self.values.shape[1]))
        stops = [*self.tree_starts[1:], len(self.values)]
        for start, stop in zip(self.tree_starts, stops, strict=True):
            inside = np.all(
                (raw[:, None, :] >= self.lower[None, start:stop])
                & (raw[:, None, :] <= self.upper[None, start:stop]),
                axis=2,
            )
            # A point on a threshold lies in the closed boxes of both children; it went left,
            # and the left child comes first in traversal order.
            totals += self.values[start + np.argmax(inside, axis=1)]
        return np.asarray(totals + self.base)


def _boxes(nodes: _Nodes, features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Leaf boxes (closed, so sound for both ``<`` and ``<=`` split conventions) and values."""
    lowers, uppers, values = [], [], []
    stack = [(0, np.full(features, -np.inf), np.full(features, np.inf))]
    while stack:
        node, low, high = stack.pop()
        if nodes.left[node] < 0:
            lowers.append(low)
            uppers.append(high)
            values.append(nodes.leaf_values[node])
            continue
        feature, cut = int(nodes.feature[node]), float(nodes.threshold[node])
        right_low = low.copy()
        right_low[feature] = max(low[feature], cut)
        left_high = high.copy()
        left_high[feature] = min(high[feature], cut)
        # Right first so the left child is popped, and listed, first.
        stack.append((int(nodes.right[node]), right_low, high))
        stack.append((int(nodes.left[node]), low, left_high))
    return np.array(lowers), np.array(uppers), np.array(values)


def _sklearn_nodes(
    tree: Any, outputs: int, *, column: int | None, scale: float, proportions: bool
) -> _Nodes:
    structure = tree.tree_
    raw_values = np.asarray(structure.value)[:, 0, :]
    if proportions:
        raw_values = raw_values / np.maximum(raw_values.sum(axis=1, keepdims=True), 1e-300)
    if column is None:
        leaf_values = raw_values * scale
    else:
        leaf_values = np.zeros((len(raw_values), outputs))
        leaf_values[:, column] = raw_values[:, 0] * scale
    return _Nodes(
        np.asarray(structure.children_left),
        np.asarray(structure.children_right),
        np.asarray(structure.feature),
        np.asarray(structure.threshold),
        leaf_values,
    )


def _table_nodes(table: pd.DataFrame, *, outputs: int, column: int) -> _Nodes:
    """One tree from a node table with columns id, left, right, feature, threshold, leaf."""
    position = {node_id: i for i, node_id in enumerate(table["id"])}
    leaf_values = np.zeros((len(table), outputs))
    leaf_values[:, column] = np.nan_to_num(table["leaf"].to_numpy(dtype=np.float64))
    return _Nodes(
        np.array([position.get(n, -1) for n in table["left"]]),
        np.array([position.get(n, -1) for n in table["right"]]),
        table["feature"].to_numpy(dtype=np.int64),
        table["threshold"].to_numpy(dtype=np.float64),
        leaf_values,
    )


def _xgboost_trees(model: Any, outputs: int, names: list[str]) -> list[_Nodes]:
    import json

    booster = model.get_booster()
    if json.loads(booster.save_config())["learner"]["gradient_booster"]["name"] == "gblinear":
        raise UnsupportedEnsemble("an XGBoost linear booster (gblinear) has no trees to verify")
    index = {name: i for i, name in enumerate(booster.feature_names or names)}

    def feature(name: str) -> int:
        if name == "Leaf":
            return -1
        if name in index:
            return index[name]
        if re.fullmatch(r"f\d+", name):
            return int(name[1:])
        raise UnsupportedEnsemble("XGBoost feature names do not match the model's inputs")

    trees = []
    for tree_id, nodes in booster.trees_to_dataframe().groupby("Tree", sort=True):
        is_leaf = nodes["Feature"] == "Leaf"
        # XGBoost goes left when x < split (float32); as a closed "<=" box that is the
        # float32 number just below the split.
        splits = np.nextafter(nodes["Split"].fillna(0.0).to_numpy(np.float32), np.float32(-np.inf))
        table = pd.DataFrame(
            {
                "id": nodes["ID"],
                "left": nodes["Yes"],
                "right": nodes["No"],
                "feature": [feature(name) for name in nodes["Feature"]],
                "threshold": splits.astype(np.float64),
                "leaf": nodes["Gain"].where(is_leaf, 0.0),
            }
        )
        trees.append(_table_nodes(table, outputs=outputs, column=int(tree_id) % outputs))
    return trees


def _lightgbm_trees(model: Any, outputs: int) -> list[_Nodes]:
    booster = model.booster_
    nodes_all = booster.trees_to_dataframe()
    if (nodes_all["decision_type"].dropna() != "<=").any():
        raise UnsupportedEnsemble("LightGBM categorical splits are not supported")
    index = {name: i for i, name in enumerate(booster.feature_name())}
    trees = []
    for tree_id, nodes in nodes_all.groupby("tree_index", sort=True):
        is_leaf = nodes["left_child"].isna()
        table = pd.DataFrame(
            {
                "id": nodes["node_index"],
                "left": nodes["left_child"],
                "right": nodes["right_child"],
                "feature": [
                    -1 if leaf else index[f]
                    for leaf, f in zip(is_leaf, nodes["split_feature"], strict=True)
                ],
                "threshold": nodes["threshold"].fillna(0.0),
                "leaf": nodes["value"].where(is_leaf, 0.0),
            }
        )
        trees.append(_table_nodes(table, outputs=outputs, column=int(tree_id) % outputs))
    return trees


def _catboost_trees(model: Any, outputs: int) -> tuple[list[_Nodes], float]:
    """CatBoost's oblivious trees as full binary trees, and the scale on their leaves.

    Read from CatBoost's own JSON export (written to the worker's private temporary folder):
    each tree applies the same splits at every level, leaf index bit ``j`` set when the
    ``j``-th split's feature is above its border; leaf values are leaf-major, ``outputs`` per
    leaf. Only float-feature splits are boxes: categorical and text features are not.
    """
    import json
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory(prefix="mlaudit-catboost-") as folder:
        exported = Path(folder) / "model.json"
        model.save_model(str(exported), format="json")
        document = json.loads(exported.read_text())
    float_features = document.get("features_info", {}).get("float_features", [])
    flat = {f["feature_index"]: f["flat_feature_index"] for f in float_features}
    if any(f.get("nan_value_treatment", "AsIs") != "AsIs" and f.get("has_nans")
           for f in float_features):
        raise UnsupportedEnsemble("CatBoost models that send missing values to a side are not "
                                  "supported")
    trees = []
    for tree in document["oblivious_trees"]:
        splits = tree["splits"]
        if any(split.get("split_type") != "FloatFeature" for split in splits):
            raise UnsupportedEnsemble(
                "CatBoost splits on categorical or text features are not supported"
            )
        depth = len(splits)
        # Node k of level j (0-based, 2**j - 1 + k) tests splits[j]; its left child keeps
        # bit j clear (value <= border), the right child sets it.
        inner = 2**depth - 1
        size = inner + 2**depth
        left = np.full(size, -1)
        right = np.full(size, -1)
        feature = np.full(size, -2)
        threshold = np.zeros(size)
        leaf_values = np.zeros((size, outputs))
        for level, split in enumerate(splits):
            for k in range(2**level):
                node = 2**level - 1 + k
                left[node] = 2 ** (level + 1) - 1 + 2 * k
                right[node] = left[node] + 1
                feature[node] = flat[split["float_feature_index"]]
                threshold[node] = float(split["border"])
        values = np.asarray(tree["leaf_values"], dtype=np.float64).reshape(2**depth, outputs)
        for k in range(2**depth):
            # The path to leaf-level node k took the right branch at level j exactly when bit
            # (depth - 1 - j) of k is set; CatBoost's leaf index sets bit j for it.
            index = sum(((k >> (depth - 1 - j)) & 1) << j for j in range(depth))
            leaf_values[inner + k] = values[index]
        trees.append(_Nodes(left, right, feature, threshold, leaf_values))
    scale = float(document.get("scale_and_bias", [1.0])[0])
    return trees, scale


@dataclass(frozen=True)
class _Extracted:
    trees: list[_Nodes]
    raw: np.ndarray
    """The model's own raw scores on the checked rows, one column per output."""
    classifier: bool
    float32: bool
    """scikit-learn and XGBoost compare float32 inputs with their thresholds."""


def _family(estimator: Any) -> str | None:
    """Which of the readings below takes ``estimator``; None for a model this module cannot read."""
    from sklearn import ensemble, tree

    if isinstance(estimator, (tree.DecisionTreeClassifier, tree.DecisionTreeRegressor)):
        return "tree"
    forests = (
        ensemble.RandomForestClassifier,
        ensemble.ExtraTreesClassifier,
        ensemble.RandomForestRegressor,
        ensemble.ExtraTreesRegressor,
    )
    if isinstance(estimator, forests):
        return "forest"
    if isinstance(
        estimator, (ensemble.GradientBoostingClassifier, ensemble.GradientBoostingRegressor)
    ):
        return "boosting"
    name = type(estimator).__name__
    if name in {"XGBClassifier", "XGBRegressor"}:
        return "xgboost"
    # LightGBM's scikit-learn models, and mlaudit's for a booster read from a text file.
    if name in {"LGBMClassifier", "LGBMRegressor", "LightGBMClassifierModel",
                "LightGBMRegressorModel"}:
        return "lightgbm"
    if name in {"CatBoostClassifier", "CatBoostRegressor", "CatBoost"}:
        return "catboost"
    return None


def is_tree_ensemble(estimator: Any) -> bool:
    """Whether ``estimator`` is a tree or tree ensemble of a kind :func:`leaf_table` reads
    (which still checks that the extracted leaves reproduce its scores)."""
    return _family(estimator) is not None


def _extract(estimator: Any, frame: pd.DataFrame) -> _Extracted:
    family = _family(estimator)
    classes = getattr(estimator, "classes_", None)
    n_classes = len(classes) if classes is not None else 0
    if family in ("tree", "forest"):
        members: list[object] = [estimator] if family == "tree" else list(estimator.estimators_)
        classifier = n_classes > 0
        outputs = n_classes if classifier else 1
        trees = [
            _sklearn_nodes(
                m, outputs, column=None, scale=1.0 / len(members), proportions=classifier
            )
            for m in members
        ]
        raw = (
            np.asarray(estimator.predict_proba(frame))
            if classifier
            else np.asarray(estimator.predict(frame), dtype=np.float64)[:, None]
        )
        return _Extracted(trees, raw, classifier, float32=True)
    if family == "boosting":
        stages = np.asarray(estimator.estimators_)
        outputs = stages.shape[1]
        rate = float(estimator.learning_rate)
        trees = [
            _sklearn_nodes(member, outputs, column=k, scale=rate, proportions=False)
            for row in stages
            for k, member in enumerate(row)
        ]
        if n_classes:
            raw = np.asarray(estimator.decision_function(frame), dtype=np.float64)
        else:
            raw = np.asarray(estimator.predict(frame), dtype=np.float64)
        return _Extracted(trees, raw.reshape(len(frame), outputs), n_classes > 0, float32=True)
    if family == "xgboost":
        outputs = n_classes if n_classes > 2 else 1
        trees = _xgboost_trees(estimator, outputs, list(frame.columns))
        raw = np.asarray(estimator.predict(frame, output_margin=True), dtype=np.float64)
        return _Extracted(trees, raw.reshape(len(frame), outputs), n_classes > 0, float32=True)
    if family == "lightgbm":
        outputs = n_classes if n_classes > 2 else 1
        trees = _lightgbm_trees(estimator, outputs)
        # Under LightGBM's own spelling of the names ("mean radius" is "mean_radius").
        named = frame.set_axis(estimator.booster_.feature_name(), axis=1)
        raw = np.asarray(estimator.predict(named, raw_score=True), dtype=np.float64)
        return _Extracted(trees, raw.reshape(len(frame), outputs), n_classes > 0, float32=False)
    if family == "catboost":
        outputs = n_classes if n_classes > 2 else 1
        trees, scale = _catboost_trees(estimator, outputs)
        trees = [replace(t, leaf_values=t.leaf_values * scale) for t in trees]
        raw = np.asarray(estimator.predict(frame, prediction_type="RawFormulaVal"), float)
        return _Extracted(trees, raw.reshape(len(frame), outputs), n_classes > 0, float32=True)
    raise UnsupportedEnsemble(
        f"applies to tree ensembles (scikit-learn forests, extra trees, gradient boosting and "
        f"decision trees, XGBoost, LightGBM, CatBoost); this model is a {type(estimator).__name__}"
    )


def leaf_table(estimator: Any, frame: pd.DataFrame) -> LeafTable:
    """The leaves of ``estimator``, checked to reproduce its scores on ``frame``.

    The constant part of the score (GBDT's initial prediction, XGBoost's base margin) is read
    from the model's own raw scores, so it cannot be misread from version-specific internals.
    """
    extracted = _extract(estimator, frame)
    raw = extracted.raw
    parts = [_boxes(nodes, frame.shape[1]) for nodes in extracted.trees]
    sizes = [len(p[0]) for p in parts]
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.intp)
    lower = np.concatenate([p[0] for p in parts])
    upper = np.concatenate([p[1] for p in parts])
    values = np.concatenate([p[2] for p in parts])
    inputs = frame.to_numpy(dtype=np.float64)
    if extracted.float32:
        inputs = inputs.astype(np.float32).astype(np.float64)
    unshifted = LeafTable(starts, lower, upper, values, np.zeros(raw.shape[1]), 0.0, None)
    offsets = raw - unshifted.scores(inputs)
    base = np.median(offsets, axis=0)
    # Boosting libraries sum in float32; the deviation left is carried as slack in every bound.
    slack = float(np.max(np.abs(offsets - base))) if len(offsets) else 0.0
    if slack > 1e-4 * max(1.0, float(np.max(np.abs(raw)))):
        raise UnsupportedEnsemble("the extracted trees do not reproduce the model's scores")
    classes = tuple(getattr(estimator, "classes_", ())) or None
    if extracted.classifier and raw.shape[1] == 1:
        # A binary logit becomes two class scores, (0, s): argmax is class 1 exactly when s > 0.
        values = np.column_stack([np.zeros(len(values)), values[:, 0]])
        base = np.array([0.0, base[0]])
    return LeafTable(starts, lower, upper, values, base, slack, classes)


class Verifier:
    """Certified radii in the attack space (unit-scaled mutable features, frozen ones fixed)."""

    def __init__(self, table: LeafTable, space: FeatureSpace, norm: str) -> None:
        self.table, self.space, self.norm = table, space, norm
        mutable = list(space.mutable)
        self.frozen = [i for i in range(len(space.columns)) if i not in set(mutable)]
        low = (table.lower[:, mutable] - space.lower) / space.scale
        high = (table.upper[:, mutable] - space.lower) / space.scale
        # Boxes entirely outside the observed range cannot be reached by a realistic input.
        self.unreachable = np.any((low > space.extent) | (high < 0.0), axis=1)
        self.trees = np.repeat(
            np.arange(table.trees), np.diff([*table.tree_starts, len(table.values)])
        )
        # L∞ reads the finite sides alone; the dense boxes (hundreds of MB for a large
        # forest) are kept only for the other norm.
        self._sides = _FiniteBounds.of(low, high) if norm == "linf" else (low, high)

    def _leaf_distances(self, raw_row: np.ndarray) -> np.ndarray:
        """Distance from a point to each leaf box, inf where a frozen feature leaves the box."""
        outside = self.unreachable
        if self.frozen:
            fixed = raw_row[self.frozen]
            outside = outside | np.any(
                (fixed < self.table.lower[:, self.frozen])
                | (fixed > self.table.upper[:, self.frozen]),
                axis=1,
            )
        x = (raw_row[list(self.space.mutable)] - self.space.lower) / self.space.scale
        if isinstance(self._sides, _FiniteBounds):
            size = self._sides.linf_gaps(x)
        else:
            low, high = self._sides
            gap = np.maximum(np.maximum(low - x, x - high), 0.0)
            size = np.sqrt(np.mean(gap * gap, axis=1))
        return np.where(outside, np.inf, size)

    def _margins(
        self, label: int | None, reference: float, tolerance: float | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-leaf margins and constants: robust while every column's bound stays positive.

        A column's bound is its constant plus, tree by tree, the smallest margin of a
        reachable leaf.
        """
        values, base, slack = self.table.values, self.table.base, self.table.slack
        if label is None:
            assert tolerance is not None
            reach = tolerance - slack
            margins = np.column_stack([-values[:, 0], values[:, 0]])
            return margins, np.array([reach - base[0] + reference, base[0] - reference + reach])
        others = [k for k in range(values.shape[1]) if k != label]
        margins = values[:, [label]] - values[:, others]
        return margins, base[label] - base[others] - 2.0 * slack

    def radius(
        self,
        raw_row: np.ndarray,
        label: int | None,
        *,
        reference: float = 0.0,
        tolerance: float | None = None,
    ) -> float:
        """The exact radius of the tree-by-tree bound: below it, no decision can change.

        Leaves become reachable as ε grows past their distance; each tree's worst reachable
        margin only falls. Sweeping the leaves in order of distance therefore gives the bound
        as a step function of ε, and the radius is the first step where it fails. Returns inf
        when the whole observed range is certified.
        """
        distances = self._leaf_distances(raw_row)
        margins, constants = self._margins(label, reference, tolerance)
        keep = np.isfinite(distances)
        distances, margins, trees = distances[keep], margins[keep], self.trees[keep]
        # For the running minimum within each tree (see _first_failure); from every leaf,
        # so that any subset of them rounds alike.
        span = float(np.ptp(margins)) + 1.0 if margins.size else 1.0
        # The bound up to a distance t depends only on the leaves within t: sweep the
        # nearest leaves first, and all of them only when the radius lies beyond those
        # (most rows fail early, and the sort is most of the cost).
        take = min(len(distances), _FIRST_SWEEP)
        while True:
            if take < len(distances):
                within = distances <= np.partition(distances, take - 1)[take - 1]
                found = _first_failure(
                    distances[within], margins[within], trees[within], constants, span
                )
            else:
                found = _first_failure(distances, margins, trees, constants, span)
                return float("inf") if found is None else found
            if found is not None:
                return found
            take *= 8


# Leaves in the first, partial sweep of MLA203's radius search.
_FIRST_SWEEP = 1 << 15


def _first_failure(
    distances: np.ndarray,
    margins: np.ndarray,
    trees: np.ndarray,
    constants: np.ndarray,
    span: float,
) -> float | None:
    """The first distance at which the tree-by-tree bound over these leaves fails, if any."""
    # Leaves by tree, then by distance within a tree: one stable sort by distance, then a
    # stable radix sort by tree number (what np.lexsort((distances, trees)) gives, at a
    # fraction of its cost on a million leaves). The sweep needs the distance order itself,
    # which the first sort already is.
    by_distance = np.argsort(distances, kind="stable")
    order = by_distance[np.argsort(_radix_keys(trees[by_distance]), kind="stable")]
    position = np.empty_like(order)
    position[order] = np.arange(len(order))
    distances, margins, trees = distances[order], margins[order], trees[order]
    # Running minimum within each tree: shifting tree t down by t * span makes a plain
    # running minimum restart at every tree.
    shifted = margins - (trees * span)[:, None]
    running = np.minimum.accumulate(shifted, axis=0) + (trees * span)[:, None]
    first = np.r_[True, trees[1:] != trees[:-1]]
    previous = np.vstack([np.zeros((1, margins.shape[1])), running[:-1]])
    change = running - np.where(first[:, None], 0.0, previous)
    sweep = position[by_distance]
    bound = np.cumsum(change[sweep], axis=0) + constants
    at = distances[sweep]
    # The bound is only read after the last leaf at each distance is counted.
    last = np.r_[at[1:] != at[:-1], True]
    # A tie may go either way (argmax takes the first class), and forest scores are sums
    # of fractions with rounding error: a bound within TIE of zero is not certified.
    failing = np.flatnonzero(last & np.any(bound <= TIE, axis=1))
    return float(at[failing[0]]) if len(failing) else None


def _radix_keys(trees: np.ndarray) -> np.ndarray:
    """Tree numbers as the narrowest unsigned type: numpy sorts 16-bit integers stably by
    radix, in linear time."""
    return trees.astype(np.uint16) if trees.size and trees.max() < 1 << 16 else trees


@dataclass(frozen=True)
class _FiniteBounds:
    """The finite sides of every leaf box, leaf by leaf (a leaf constrains a few features;
    most sides are infinite): the L∞ distance from a point to each box reads those alone,
    a third of the work of the dense leaves-by-features arrays."""

    leaves: int
    starts: np.ndarray  # where each leaf with a finite side begins in the arrays below
    owners: np.ndarray  # those leaves
    features: np.ndarray
    values: np.ndarray  # the side's coordinate
    signs: np.ndarray  # -1.0 for a lower side (gap = value - x), +1.0 for an upper one

    @classmethod
    def of(cls, low: np.ndarray, high: np.ndarray) -> _FiniteBounds:
        leaf_low, feature_low = np.nonzero(np.isfinite(low))
        leaf_high, feature_high = np.nonzero(np.isfinite(high))
        leaves = np.concatenate([leaf_low, leaf_high])
        order = np.argsort(leaves, kind="stable")
        leaves = leaves[order]
        # Feature numbers as 32-bit: a large forest has millions of finite sides.
        features = np.concatenate([feature_low, feature_high])[order].astype(np.int32)
        values = np.concatenate([low[leaf_low, feature_low], high[leaf_high, feature_high]])
        signs = np.concatenate([np.full(len(leaf_low), -1.0), np.ones(len(leaf_high))])
        starts = np.flatnonzero(np.r_[True, leaves[1:] != leaves[:-1]]) if len(leaves) else (
            np.empty(0, dtype=np.intp)
        )
        return cls(len(low), starts, leaves[starts], features, values[order], signs[order])

    def linf_gaps(self, x: np.ndarray) -> np.ndarray:
        """max(0, the largest per-feature gap from ``x`` to each box), as the dense form
        computes it: ``value - x`` below a lower side, ``x - value`` above an upper one."""
        gaps = np.zeros(self.leaves)
        if len(self.values):
            # -(value - x) == x - value exactly, so the signed form rounds as the dense one.
            side = self.signs * (x[self.features] - self.values)
            gaps[self.owners] = np.maximum(np.maximum.reduceat(side, self.starts), 0.0)
        return gaps
