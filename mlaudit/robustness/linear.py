"""Exact robust radii of binary linear classifiers: the answer the attacks approximate.

For a decision ``w·x + b`` the smallest perturbation that crosses the hyperplane has a closed
form: in the attack space (each feature in its unit, see ``space``), moving every coordinate
against its weight's sign within the observed range. Under L∞ each coordinate moves by ``t``
until it hits the range's edge; under L2 by ``λ|w_i|`` until it does (the Lagrange condition
of the minimum-norm problem with box constraints). Both are "water-filling" problems whose
margin removed is piecewise linear in the parameter, so the exact answer is one sort per row.

MLA202 reports these radii beside its attacks for linear models without integer features
(rounding makes the exact answer a lattice problem), and the calibration benchmark measures
its intervals' coverage against them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mlaudit.robustness.space import FeatureSpace


class NotLinear(Exception):
    """The model is not a binary linear classifier with a known hyperplane."""


def hyperplane(estimator: Any, width: int) -> tuple[np.ndarray, float]:
    """``(w, b)`` of a fitted binary linear classifier in raw feature space.

    Leading ``StandardScaler`` / ``MinMaxScaler`` steps are folded in, as for the gradients.
    """
    from mlaudit.robustness.gradient import NoGradients, scaler_split

    try:
        shift, scale, last = scaler_split(estimator, width)
    except NoGradients as reason:
        raise NotLinear(str(reason)) from None
    coef = getattr(last, "coef_", None)
    intercept = getattr(last, "intercept_", None)
    if not hasattr(last, "classes_"):
        raise NotLinear(f"{type(last).__name__} is not a classifier")
    if getattr(last, "kernel", "linear") != "linear" or coef is None or intercept is None:
        raise NotLinear(f"{type(last).__name__} has no linear decision function")
    coef = np.asarray(coef, dtype=np.float64)
    if coef.ndim == 2 and coef.shape[0] != 1:
        raise NotLinear("the classifier has more than two classes")
    weights = coef.reshape(-1) / scale
    bias = float(np.asarray(intercept, dtype=np.float64).reshape(-1)[0]) - float(
        np.sum(weights * shift)
    )
    return weights, bias


def linear_radii(
    weights: np.ndarray, bias: float, space: FeatureSpace, raw: np.ndarray, norm: str
) -> np.ndarray:
    """The smallest perturbation (``space.distance``) moving each raw row across the plane.

    Frozen features stay put; mutable ones stay inside their observed range; inf where the
    range does not reach the plane.
    """
    mutable = list(space.mutable)
    margin = raw @ weights + bias
    pull = weights[mutable] * space.scale  # the margin removed per unit of each feature
    unit = (raw[:, mutable] - space.lower) / space.scale
    # Room to move against the margin's sign, per row and feature.
    downward = (margin[:, None] > 0) == (pull[None, :] > 0)
    room = np.where(downward, unit, space.extent - unit)
    slope = np.abs(pull)
    rate = np.ones_like(slope) if norm == "linf" else slope
    dims = len(mutable)
    radii = np.full(len(raw), np.inf)
    for row in range(len(raw)):
        level = _fill(abs(float(margin[row])), slope, rate, room[row])
        if not np.isfinite(level):
            continue
        moved = np.minimum(level * rate, room[row])
        radii[row] = level if norm == "linf" else float(np.sqrt(np.sum(moved**2) / dims))
    return radii


def _fill(gap: float, slope: np.ndarray, rate: np.ndarray, room: np.ndarray) -> float:
    """The smallest ``s`` with ``Σ slope·min(s·rate, room) >= gap`` (inf if none).

    Between consecutive breakpoints ``room/rate`` the sum is linear in ``s``: the features
    already at their edge contribute their full room, the rest ``s·slope·rate``.
    """
    live = (slope > 0) & (rate > 0)
    if gap <= 0:
        return 0.0
    slope, rate, room = slope[live], rate[live], room[live]
    breaks = room / rate
    order = np.argsort(breaks)
    breaks, slope, rate, room = breaks[order], slope[order], rate[order], room[order]
    saturated = np.concatenate([[0.0], np.cumsum(slope * room)])
    free = np.concatenate([[0.0], np.cumsum((slope * rate)[::-1])])[::-1]
    start = np.concatenate([[0.0], breaks])
    end = np.concatenate([breaks, [np.inf]])
    with np.errstate(divide="ignore", invalid="ignore"):
        level = np.where(free > 0, (gap - saturated) / free, np.inf)
    fits = (level >= start) & (level <= end) & (free > 0)
    return float(level[np.argmax(fits)]) if fits.any() else np.inf
