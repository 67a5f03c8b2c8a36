"""The report's figures, drawn with matplotlib and returned as PNG bytes.

Figures are built as ``matplotlib.figure.Figure`` objects, never through pyplot:
no global state, no display, no backend to choose.
"""
from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING, Any

from ..evolve.lineage import LABELS

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .model import RunView

_STATUS_MARKERS = {"committed": "o", "passed": "o", "failed": "X", "pending": ".",
                   "harness-error": ".", "cut-slower": "v", "cut-time": "."}
#: The outcomes the figures draw a point for, each with its legend entry.
_DRAWN = ("committed", "passed", "cut-slower", "failed")


def _png(fig: Figure) -> bytes:
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100, bbox_inches="tight")
    return out.getvalue()


def _figure(width: float, height: float) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained")


def _operator_colors(view: RunView) -> dict[str, Any]:
    from matplotlib import colormaps

    palette = colormaps["tab10"]
    return {op: palette(i % 10) for i, op in enumerate(sorted({r.operator for r in view.records}))}


def _integer_ticks(ax: Axes) -> None:
    """Evaluations and proposals are counted: no tick between two of them."""
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _mark_baseline(ax: Axes, value: float, label: str) -> None:
    if value > 0:
        ax.axhline(value, color="0.3", linestyle="--", linewidth=1.2, label=label)


def trajectory(view: RunView) -> bytes:
    """Running best geomean over evaluations, every evaluation as a point, the baseline a line."""
    fig = _figure(9, 3.6)
    ax = fig.subplots()
    judged, trail = view.judged, view.running_best()
    steps = list(range(1, len(judged) + 1))
    ax.step(steps, [(b.geomean or 0.0) if b else 0.0 for b in trail], where="post",
            color="tab:blue",
            linewidth=2, label="best committed")
    for kind, face in zip(_DRAWN, ("tab:blue", "none", "none", "tab:red")):
        points = [(x, r.geomean or 0.0) for x, r in zip(steps, judged) if r.outcome == kind]
        if points:
            xs, ys = zip(*points)
            ax.scatter(xs, ys, marker=_STATUS_MARKERS[kind], s=45, zorder=3,
                       label=LABELS[kind], facecolors=face,
                       edgecolors="tab:red" if kind == "failed" else "tab:blue")
    base = view.baseline()
    if base is not None:
        _mark_baseline(ax, base.geomean(view.configs()), f"{base.name} (geomean)")
    ax.set_xlabel("evaluation")
    ax.set_ylabel("geomean " + view.rate_label())
    ax.set_title(f"run {view.run_id}: best geomean over evaluations")
    ax.set_ylim(bottom=0)
    _integer_ticks(ax)
    ax.legend(loc="best", fontsize="small")
    return _png(fig)


def per_config(view: RunView) -> bytes:
    """The best committed version's rate in each configuration over evaluations (AVO's plots)."""
    configs = view.configs()
    columns = min(4, max(1, len(configs)))
    rows = math.ceil(len(configs) / columns) or 1
    fig = _figure(3.2 * columns, 2.4 * rows)
    axes = fig.subplots(rows, columns, squeeze=False).flatten()
    trail = view.running_best()
    steps = list(range(1, len(trail) + 1))
    base = view.baseline()
    for ax, config in zip(axes, configs):
        ax.step(steps, [(b.scores or {}).get(config, 0.0) if b else 0.0 for b in trail],
                where="post", color="tab:blue", linewidth=1.8, label="best committed")
        if base is not None:
            _mark_baseline(ax, base.tflops.get(config, 0.0), base.name)
        ax.set_title(config, fontsize="medium")
        ax.set_ylim(bottom=0)
        _integer_ticks(ax)
    for ax in axes[len(configs):]:
        ax.set_visible(False)
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside upper center", ncols=2,
               fontsize="small")
    fig.supxlabel("evaluation")
    fig.supylabel(view.rate_label(), fontsize="small")
    return _png(fig)


def lineage_tree(view: RunView) -> bytes:
    """Every candidate at (proposal order, geomean), an edge from each parent, colour = operator."""
    fig = _figure(9, 4.2)
    ax = fig.subplots()
    colors = _operator_colors(view)
    where = {r.id: (i, r.geomean or 0.0) for i, r in enumerate(view.records, 1)}
    for record in view.records:
        for parent in record.parents:
            if parent in where:
                (x0, y0), (x1, y1) = where[parent], where[record.id]
                ax.plot([x0, x1], [y0, y1], color="0.65", linewidth=1, zorder=1)
    for record in view.records:
        x, y = where[record.id]
        kind = record.outcome
        color = colors[record.operator]
        ax.scatter([x], [y], marker=_STATUS_MARKERS[kind], s=110 if kind != "pending" else 60,
                   zorder=3, facecolors="none" if kind == "passed" else color, edgecolors=color,
                   linewidths=2)
        ax.annotate(f"#{record.id}", (x, y), textcoords="offset points", xytext=(6, 6),
                    fontsize="small")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=c, label=op)
               for op, c in colors.items()]
    handles += [Line2D([], [], marker=_STATUS_MARKERS[k], linestyle="", color="0.3",
                       markerfacecolor="none" if k == "passed" else "0.3",
                       label=LABELS[k]) for k in _DRAWN]
    ax.legend(handles=handles, loc="best", fontsize="small")
    ax.set_xlabel("proposal order (edges: parent to child)")
    ax.set_ylabel("geomean " + view.rate_label())
    ax.set_title(f"run {view.run_id}: lineage by operator")
    ax.set_ylim(bottom=min(0.0, ax.get_ylim()[0]))
    _integer_ticks(ax)
    return _png(fig)


def error_heatmap(error_map: dict[str, Any], tolerance: float | None) -> bytes:
    """|error| over the output's last two dims at the worst element's leading indices.

    Log colour scale, since an error sits orders of magnitude above honest rounding;
    the tolerance is a red line on the colour bar; NaN/Inf errors (``null``) are magenta.
    """
    import numpy as np
    from matplotlib import colormaps
    from matplotlib.colors import LogNorm

    values = np.array([[math.nan if v is None else v for v in row]
                       for row in error_map["values"]], dtype=float)
    step = int(error_map.get("row_step", 1))
    rows_axis, cols_axis = (list(error_map.get("axes", ["row", "column"])) + ["", ""])[:2]
    finite = values[np.isfinite(values)]
    positive = finite[finite > 0]
    top = max(float(finite.max()) if finite.size else 0.0, tolerance or 0.0, 1e-30)
    # Exact zeros cannot sit on a log scale: they are drawn at its floor.
    floor = min(float(positive.min()) if positive.size else top, top * 1e-3)
    fig = _figure(7, 4.2)
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(np.maximum(values, floor)), aspect="auto",
                      interpolation="nearest",
                      cmap=colormaps["viridis"].with_extremes(bad="magenta"),
                      norm=LogNorm(vmin=floor, vmax=top),
                      extent=(-0.5, values.shape[1] - 0.5, values.shape[0] * step - 0.5, -0.5))
    bar = fig.colorbar(image, ax=ax, label="|error|")
    if tolerance is not None and floor < tolerance <= top:
        bar.ax.axhline(tolerance, color="red", linewidth=2.5)
        bar.set_label("|error| (red: tolerance)")
    fixed = ", ".join(f"{k}={v}" for k, v in (error_map.get("fixed") or {}).items())
    notes = [f"rows: max over {step}"] if step > 1 else []
    notes += ["magenta: NaN/Inf"] if np.isnan(values).any() else []
    ax.set_title("; ".join([f"|error| at {fixed}", *notes]), fontsize="medium")
    ax.set_ylabel(rows_axis)
    ax.set_xlabel(cols_axis)
    return _png(fig)
