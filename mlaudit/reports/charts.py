"""Inline SVG charts for the HTML report, found in the metrics rules already record.

Rules do not describe their plots; the metric shapes do. A list of points with ``epsilon`` and
``estimate`` is an accuracy-against-budget curve, a ``roc`` with ``fpr``/``tpr`` is an ROC curve
(drawn on log-scaled FPR with the chance diagonal), a ``histogram`` with ``edges``/``counts``
is a histogram. Any rule, a third party's included, gets plots by recording those shapes.

Why hand-written SVG rather than a plotting library: the report must be one small file with no
scripts and no network, and these three chart types need a few dozen lines; matplotlib would
add a heavy dependency and its SVG embeds fonts and ids that bloat and vary between runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

WIDTH, HEIGHT = 420, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 40
PALETTE = ("#1f5fa8", "#c2410c", "#15803d", "#7e22ce", "#a16207", "#0e7490", "#be123c")
SEVERITY_COLOURS = {
    "critical": "#7f1d1d",
    "high": "#dc2626",
    "medium": "#f59e0b",
    "low": "#facc15",
    "info": "#94a3b8",
}


@dataclass(frozen=True)
class Series:
    label: str
    points: tuple[tuple[float, float], ...]
    band: tuple[tuple[float, float, float], ...] = ()
    """(x, low, high) of a confidence band, when the metric carries one."""


@dataclass(frozen=True)
class Chart:
    kind: str  # "curve", "roc", "histogram" or "bars"
    title: str
    series: tuple[Series, ...]
    x_label: str
    y_label: str
    categories: tuple[str, ...] = ()
    """The x labels of a "bars" chart, one per point of each series."""


def _is_interval_point(item: object) -> bool:
    return isinstance(item, Mapping) and "epsilon" in item and "estimate" in item


def _walk(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, value
    if isinstance(value, Mapping):
        for key, child in value.items():
            yield from _walk(child, (*path, str(key)))
    elif isinstance(value, list) and not all(_is_interval_point(v) for v in value):
        for index, child in enumerate(value):
            label = child.get("attack") if isinstance(child, Mapping) else None
            yield from _walk(child, (*path, str(label or index)))


def _label(path: tuple[str, ...], drop: set[str]) -> str:
    kept = [p for p in path if p not in drop]
    return " ".join(kept) or "all"


def collect_charts(metrics: Mapping[str, Any]) -> list[Chart]:
    curves: list[Series] = []
    rocs: list[Series] = []
    histograms: list[Chart] = []
    bars: list[Chart] = []
    for path, value in _walk(metrics, ()):
        if isinstance(value, list) and value and all(_is_interval_point(v) for v in value):
            curves.append(
                Series(
                    _label(path, {"robust_accuracy", "norms"}),
                    tuple((float(v["epsilon"]), float(v["estimate"])) for v in value),
                    tuple(
                        (
                            float(v["epsilon"]),
                            float(v.get("low", v["estimate"])),
                            float(v.get("high", v["estimate"])),
                        )
                        for v in value
                    ),
                )
            )
        elif isinstance(value, Mapping) and isinstance(value.get("roc"), Mapping):
            roc = value["roc"]
            points = tuple(
                zip(map(float, roc.get("fpr", [])), map(float, roc.get("tpr", [])), strict=False)
            )
            if points:
                rocs.append(Series(_label(path, {"attacks"}), points))
        elif isinstance(value, Mapping) and isinstance(value.get("distribution"), Mapping):
            chart = _distribution_chart(value["distribution"], _label(path, {"distributions"}))
            if chart is not None:
                bars.append(chart)
        elif isinstance(value, Mapping) and all(
            isinstance(value.get(f"p{p}_ms"), Mapping) for p in LATENCY_PERCENTILES
        ):
            bars.append(_latency_chart(value))
        elif isinstance(value, list) and value and all(_is_throughput_point(v) for v in value):
            bars.append(_throughput_chart(value))
        elif isinstance(value, Mapping) and isinstance(value.get("histogram"), Mapping):
            histogram = value["histogram"]
            edges, counts = histogram.get("edges", []), histogram.get("counts", [])
            if len(edges) == len(counts) + 1 and counts:
                histograms.append(
                    Chart(
                        "histogram",
                        f"Smallest flipping perturbations ({_label(path, set())})",
                        (
                            Series(
                                "rows",
                                tuple(
                                    (float(e), float(c))
                                    for e, c in zip(edges, counts, strict=False)
                                ),
                            ),
                        ),
                        "perturbation (robust spreads of each feature)",
                        "rows",
                    )
                )
    charts: list[Chart] = []
    if curves:
        charts.append(
            Chart(
                "curve",
                "Accuracy against perturbation budget",
                tuple(curves),
                "ε (robust spreads of each feature)",
                "accuracy",
            )
        )
    if rocs:
        charts.append(
            Chart(
                "roc",
                "ROC of membership inference",
                tuple(rocs),
                "false-positive rate (log)",
                "true-positive rate",
            )
        )
    return charts + histograms + bars


def _distribution_chart(distribution: Mapping[str, Any], label: str) -> Chart | None:
    """``{"bins": [...], "reference": [...], "current": [...]}``: two shares per bin (MLA704
    records one per drifted feature and one for the model's predictions)."""
    bins = [str(b) for b in distribution.get("bins", [])]
    shares = [distribution.get(name, []) for name in ("reference", "current")]
    if not bins or any(len(s) != len(bins) for s in shares):
        return None
    return Chart(
        "bars",
        f"Reference and current: {label}",
        tuple(
            Series(name, tuple((float(i), float(v)) for i, v in enumerate(values)))
            for name, values in zip(("reference", "current"), shares, strict=True)
        ),
        "",  # the slanted bin labels take the axis title's place
        "share of rows",
        tuple(bins),
    )


LATENCY_PERCENTILES = (50, 95, 99)


def _latency_chart(metrics: Mapping[str, Any]) -> Chart:
    """``p50_ms``, ``p95_ms``, ``p99_ms`` intervals side by side (MLA801's latency)."""
    return Chart(
        "bars",
        "Single-row latency",
        (Series("estimate", tuple(
            (float(i), float(metrics[f"p{p}_ms"].get("estimate", 0.0)))
            for i, p in enumerate(LATENCY_PERCENTILES)
        )),),
        "percentile",
        "milliseconds",
        tuple(f"p{p}" for p in LATENCY_PERCENTILES),
    )


def _is_throughput_point(item: object) -> bool:
    return isinstance(item, Mapping) and "batch_size" in item and isinstance(
        item.get("rows_per_s"), Mapping
    )


def _throughput_chart(points: list[Mapping[str, Any]]) -> Chart:
    """Rows per second by batch size (MLA801's ``throughput``)."""
    return Chart(
        "bars",
        "Throughput by batch size",
        (Series("rows/s", tuple(
            (float(i), float(point["rows_per_s"].get("estimate", 0.0)))
            for i, point in enumerate(points)
        )),),
        "rows per batch",
        "rows per second",
        tuple(str(point["batch_size"]) for point in points),
    )


# --------------------------------------------------------------------------- drawing


def _frame(title: str, x_label: str, y_label: str, body: str) -> Markup:
    # Safe: labels and legends are escaped where they enter (``escape``); everything else in
    # the SVG is numbers and fixed text this module writes.
    return Markup(  # noqa: S704
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
        f'<rect x="{LEFT}" y="{TOP}" width="{WIDTH - LEFT - RIGHT}" '
        f'height="{HEIGHT - TOP - BOTTOM}" fill="none" stroke="#cbd5e1"/>'
        f"{body}"
        f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle" '
        f'class="axis">{escape(x_label)}</text>'
        f'<text x="12" y="{(TOP + HEIGHT - BOTTOM) / 2}" text-anchor="middle" class="axis" '
        f'transform="rotate(-90 12 {(TOP + HEIGHT - BOTTOM) / 2})">{escape(y_label)}</text>'
        "</svg>"
    )


def _scale(low: float, high: float, start: float, end: float) -> Any:
    span = (high - low) or 1.0
    return lambda value: start + (value - low) / span * (end - start)


def _legend(series: Sequence[Series], *, bottom: bool) -> str:
    rows = []
    shown = series[:7]
    first = HEIGHT - BOTTOM - 8 - 13 * (len(shown) - 1) if bottom else TOP + 12
    for index, item in enumerate(shown):
        y = first + index * 13
        rows.append(
            f'<rect x="{WIDTH - RIGHT - 118}" y="{y - 8}" width="9" height="9" '
            f'fill="{PALETTE[index % len(PALETTE)]}"/>'
            f'<text x="{WIDTH - RIGHT - 105}" y="{y}" class="legend">{escape(item.label[:22])}'
            "</text>"
        )
    return "".join(rows)


def _ticks(values: Sequence[float], to_x: Any, to_y: Any, x_axis: bool, fmt: str) -> str:
    marks = []
    last_x = -math.inf
    for value in values:
        if x_axis:
            x = to_x(value)
            if x - last_x < 28:  # labels closer than this would overlap
                continue
            last_x = x
            marks.append(
                f'<text x="{x:.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
                f'class="tick">{format(value, fmt)}</text>'
            )
        else:
            y = to_y(value)
            marks.append(
                f'<text x="{LEFT - 4}" y="{y + 3:.1f}" text-anchor="end" '
                f'class="tick">{format(value, fmt)}</text>'
            )
    return "".join(marks)


def _polyline(points: Sequence[tuple[float, float]], colour: str) -> str:
    drawn = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{drawn}" fill="none" stroke="{colour}" stroke-width="2"/>'


def render_chart(chart: Chart) -> Markup:
    if chart.kind == "histogram":
        return _histogram(chart)
    if chart.kind == "bars":
        return _bars(chart)
    log_x = chart.kind == "roc"
    xs = [x for s in chart.series for x, _ in s.points if not log_x or x > 0]
    if not xs:
        return Markup("")
    low_x = min(xs) if log_x else 0.0
    high_x = max(xs)
    transform = (lambda v: math.log10(max(v, low_x))) if log_x else (lambda v: v)
    to_x = _scale(transform(low_x), transform(high_x), LEFT, WIDTH - RIGHT)
    to_y = _scale(0.0, 1.0, HEIGHT - BOTTOM, TOP)
    body = []
    if log_x:
        # The chance diagonal TPR = FPR is a curve on a log axis.
        steps = [low_x * (high_x / low_x) ** (i / 60) for i in range(61)]
        chance = [(to_x(transform(v)), to_y(v)) for v in steps]
        body.append(
            f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in chance)}" '
            'fill="none" stroke="#94a3b8" stroke-dasharray="4 3"/>'
        )
    for index, series in enumerate(chart.series):
        colour = PALETTE[index % len(PALETTE)]
        if series.band:
            upper = [(to_x(transform(x)), to_y(h)) for x, _, h in series.band]
            lower = [(to_x(transform(x)), to_y(lo)) for x, lo, _ in reversed(series.band)]
            outline = " ".join(f"{x:.1f},{y:.1f}" for x, y in upper + lower)
            body.append(f'<polygon points="{outline}" fill="{colour}" fill-opacity="0.12"/>')
        body.append(
            _polyline(
                [(to_x(transform(x)), to_y(y)) for x, y in series.points if not log_x or x > 0],
                colour,
            )
        )
    x_ticks = _log_grid(low_x, high_x) if log_x else sorted({x for x in xs})
    body.append(_ticks(x_ticks, lambda v: to_x(transform(v)), to_y, x_axis=True, fmt=".3g"))
    body.append(_ticks([0.0, 0.25, 0.5, 0.75, 1.0], to_x, to_y, x_axis=False, fmt=".2f"))
    body.append(_legend(chart.series, bottom=log_x))
    return _frame(chart.title, chart.x_label, chart.y_label, "".join(body))


def _log_grid(low: float, high: float) -> list[float]:
    start, stop = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**p for p in range(start, stop + 1) if low <= 10.0**p <= high] or [low, high]


def _histogram(chart: Chart) -> Markup:
    [series] = chart.series
    edges = [x for x, _ in series.points]
    counts = [c for _, c in series.points]
    top = max(counts) or 1.0
    slot = (WIDTH - LEFT - RIGHT) / len(counts)
    to_y = _scale(0.0, top, HEIGHT - BOTTOM, TOP)
    body = []
    for index, count in enumerate(counts):
        x = LEFT + index * slot
        y = to_y(count)
        body.append(
            f'<rect x="{x + 2:.1f}" y="{y:.1f}" width="{slot - 4:.1f}" '
            f'height="{HEIGHT - BOTTOM - y:.1f}" fill="{PALETTE[0]}"/>'
        )
        body.append(
            f'<text x="{x + slot / 2:.1f}" y="{HEIGHT - BOTTOM + 14}" '
            f'text-anchor="middle" class="tick">≥{edges[index]:g}</text>'
        )
    body.append(_ticks([0.0, top], None, to_y, x_axis=False, fmt=".0f"))
    return _frame(chart.title, chart.x_label, chart.y_label, "".join(body))


def _bars(chart: Chart) -> Markup:
    """Grouped bars, one group per category; labels cut to fit, whole in each bar's tooltip."""
    top = max([y for s in chart.series for _, y in s.points] + [1e-9])
    slot = (WIDTH - LEFT - RIGHT) / len(chart.categories)
    width = (slot - 4) / len(chart.series)
    to_y = _scale(0.0, top, HEIGHT - BOTTOM, TOP)
    body = []
    for index, series in enumerate(chart.series):
        colour = PALETTE[index % len(PALETTE)]
        for position, share in series.points:
            x, y = LEFT + position * slot + 2 + index * width, to_y(share)
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" '
                f'height="{HEIGHT - BOTTOM - y:.1f}" fill="{colour}"><title>'
                f"{escape(series.label)} {escape(chart.categories[int(position)])}: "
                f"{share:.3f}</title></rect>"
            )
    for position, category in enumerate(chart.categories):
        # Bin labels are long ("[-0.253, 0.0123)"): slanted, so neighbours never overlap.
        short = category if len(category) <= 11 else category[:10] + "…"
        x, y = LEFT + (position + 0.5) * slot, HEIGHT - BOTTOM + 10
        body.append(
            f'<text x="{x:.1f}" y="{y}" text-anchor="end" class="tick" '
            f'transform="rotate(-30 {x:.1f} {y})">{escape(short)}</text>'
        )
    body.append(_ticks([0.0, top], None, to_y, x_axis=False, fmt=".2f"))
    body.append(_legend(chart.series, bottom=False))
    return _frame(chart.title, chart.x_label, chart.y_label, "".join(body))


def severity_chart(counts: Mapping[str, int]) -> Markup:
    """Horizontal bars: findings per severity, most severe first."""
    order = ["critical", "high", "medium", "low", "info"]
    top = max([counts.get(s, 0) for s in order] + [1])
    rows = []
    for index, severity in enumerate(order):
        count = counts.get(severity, 0)
        y = 10 + index * 24
        width = 260 * count / top
        rows.append(
            f'<text x="70" y="{y + 13}" text-anchor="end" class="tick">{severity}</text>'
            f'<rect x="78" y="{y}" width="{width:.1f}" height="18" '
            f'fill="{SEVERITY_COLOURS[severity]}"/>'
            f'<text x="{84 + width:.1f}" y="{y + 13}" class="tick">{count}</text>'
        )
    return Markup(  # noqa: S704 (severity names are fixed; counts are integers)
        '<svg class="chart severity" viewBox="0 0 380 130" role="img" '
        'xmlns="http://www.w3.org/2000/svg"><title>Findings by severity</title>'
        + "".join(rows)
        + "</svg>"
    )
