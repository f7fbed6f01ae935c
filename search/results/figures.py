"""Figures of a study: pure functions compute each figure's data; seaborn only draws it.

The tests check the data functions, and the pure rule that places legends against the
drawn figure (no legend covers a marked point or a line).
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, NamedTuple, cast

import numpy as np

from search.results.records import configuration_of, finite_trials, trial_curves
from search.results.stats import daggered
from search.store import schema
from search.study.metrics import METRIC_LABELS, MINIMIZED

if TYPE_CHECKING:
    import optuna
    import pandas as pd

NORM_ORDER = ("l1", "l2", "l1_l2")
# The summary's sparsity columns (on the test inputs) and their axis names.
SPARSITY_PANELS = ((schema.mean("test", schema.ACTIVATION), "mean activation"),
                   (schema.mean("test", schema.ZERO_FRACTION), "fraction of exact zeros"))


class Heatmap(NamedTuple):
    """One panel per placement: ``values[placement]`` is a norm x strength table.

    ``limits`` is the colour scale: outliers beyond it (a configuration that collapsed to
    chance) take the end colour, so they do not flatten the range where the other cells
    differ; their annotation still gives the value. ``center`` (0 for differences) asks for
    a diverging scale symmetric about it.
    """

    placements: tuple[str, ...]
    values: dict[str, pd.DataFrame]
    labels: dict[str, pd.DataFrame]  # cell annotations, same shape as values
    baseline: float | None  # the baseline's value, drawn as a reference line on the colour bar
    title: str
    limits: tuple[float, float] = (0.0, 1.0)
    center: float | None = None
    rope: float | None = None  # differences: the region of practical equivalence (the scale reaches twice as far)
    hatched: dict[str, pd.DataFrame] | None = None  # differences: the cells whose verdict is equivalent


def robust_limits(values: Sequence[float] | np.ndarray, center: float | None = None) -> tuple[float, float]:
    """A colour scale that ignores outliers: Tukey's fences (1.5 interquartile ranges past the
    quartiles), clipped to the data; symmetric about ``center`` when it is given."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return (-1e-3, 1e-3) if center is not None else (0.0, 1.0)
    if center is not None:
        d = np.abs(v - center)
        q1, q3 = np.quantile(d, [0.25, 0.75])
        half = float(min(d.max(), q3 + 1.5 * (q3 - q1))) or float(d.max()) or 1e-3
        return center - half, center + half
    q1, q3 = np.quantile(v, [0.25, 0.75])
    low, high = float(max(v.min(), q1 - 1.5 * (q3 - q1))), float(min(v.max(), q3 + 1.5 * (q3 - q1)))
    return (low - 1e-3, high + 1e-3) if low == high else (low, high)


class Curve(NamedTuple):
    """Seed mean and standard deviation of a train and test metric over epochs."""

    label: str
    metric: str
    epoch: np.ndarray
    train_mean: np.ndarray
    train_std: np.ndarray
    test_mean: np.ndarray
    test_std: np.ndarray


def strength_bins(strengths: Sequence[float], max_columns: int = 12) -> dict[float, float]:
    """Map each strength to its heatmap column: itself for a grid, its power of ten for a
    continuous (TPE) search that produced more distinct values than ``max_columns``."""
    distinct = sorted(set(strengths))
    if len(distinct) <= max_columns:
        return {s: s for s in distinct}
    return {s: 10.0 ** round(math.log10(s)) for s in distinct}


def heatmap_data(summary: pd.DataFrame, value: str, label: str | None = None, title: str = "") -> Heatmap:
    """Pivot ``summary`` (the export table) into norm x strength panels of column ``value``.

    ``label`` names how cells are annotated: ``"mean_std"`` writes ``mean±std`` (the std
    from the matching ``std_`` column), otherwise the value itself. Cells averaged over a
    bin (TPE) are means.
    """
    import pandas as pd

    regs = summary[summary["param_norm"] != "none"].copy()
    base = summary[summary["param_norm"] == "none"]
    baseline = float(base[value].iloc[0]) if len(base) else None
    bins = strength_bins(regs["param_strength"].astype(float).tolist())
    regs["strength_bin"] = regs["param_strength"].astype(float).map(bins)
    norms = [n for n in NORM_ORDER if n in set(regs["param_norm"])]
    placements = tuple(p for p in ("pre", "post") if p in set(regs["param_placement"]))
    columns = sorted(set(bins.values()))
    values, labels = {}, {}
    for placement in placements:
        part = regs[regs["param_placement"] == placement]
        grouped = part.groupby(["param_norm", "strength_bin"])
        mean = grouped[value].mean().unstack().reindex(index=norms, columns=columns)
        values[placement] = mean
        if label == "mean_std":
            std = grouped[schema.std_of(value)].mean().unstack().reindex(index=norms, columns=columns)
            text = mean.map(lambda v: "" if pd.isna(v) else f"{v:.3f}") + "±" + std.map(
                lambda v: "–" if pd.isna(v) else f"{v:.3f}")
            labels[placement] = text.where(mean.notna(), "")
        else:
            labels[placement] = mean.map(lambda v: "" if pd.isna(v) else f"{v:.3f}")
    cells = [x for f in values.values() for x in f.to_numpy(dtype=float).ravel()]
    return Heatmap(placements, values, labels, baseline, title,
                   robust_limits(cells + ([baseline] if baseline is not None else [])))


def delta_heatmap_data(summary: pd.DataFrame, comparison: pd.DataFrame, title: str = "") -> Heatmap:
    """Panels of the paired difference from the baseline (``mean_test_diff`` of ``comparison``),
    on a diverging scale centred at 0; the cells of :func:`search.results.stats.daggered` (a
    significant difference, or in a race a verdict of better or worse) are annotated with a dagger.

    The scale is symmetric and reaches at least twice the region of practical equivalence
    (``comparison["rope"]``), so differences within it never look dramatic (they are at most
    half-saturated); the cells whose verdict is equivalent are hatched."""
    import pandas as pd

    keys = [c for c in ("param_norm", "param_strength", "param_placement") if c in comparison.columns]
    marked = comparison.assign(dagger=daggered(comparison), equivalent=comparison["verdict"] == "equivalent")
    merged = summary.merge(marked[[*keys, schema.mean("test", schema.DIFF), "dagger", "equivalent"]], on=keys,
                           how="left")
    base = merged["param_norm"] == "none"
    merged.loc[base, schema.mean("test", schema.DIFF)] = 0.0
    merged["delta_label"] = ["" if pd.isna(d) else f"{d:+.3f}" + ("†" if not pd.isna(m) and bool(m) else "")
                             for d, m in zip(merged[schema.mean("test", schema.DIFF)], merged["dagger"])]
    data = heatmap_data(merged, schema.mean("test", schema.DIFF), None, title)
    labels, hatched = {}, {}
    for placement in data.placements:
        part = merged[(merged["param_norm"] != "none") & (merged["param_placement"] == placement)]
        shape = {"index": data.values[placement].index, "columns": data.values[placement].columns}
        table = part.pivot_table(index="param_norm", columns="param_strength", values="delta_label", aggfunc="first")
        labels[placement] = table.reindex(**shape).astype(object).fillna("")
        shown = part.assign(equivalent=part["equivalent"].eq(True)).pivot_table(
            index="param_norm", columns="param_strength", values="equivalent", aggfunc="first")
        hatched[placement] = shown.reindex(**shape).fillna(False).astype(bool)
    cells = [x for f in data.values.values() for x in f.to_numpy(dtype=float).ravel()]
    rope = float(comparison["rope"].iloc[0]) if "rope" in comparison and len(comparison) else None
    _, high = robust_limits(cells, center=0.0)
    if rope is not None:
        high = max(high, 2 * rope)
    # No baseline line: the centre of the scale is the baseline.
    return data._replace(labels=labels, baseline=None, limits=(-high, high), center=0.0, rope=rope, hatched=hatched)


def selected_curves(trials: Sequence[optuna.trial.FrozenTrial], metric: str = "accuracy") -> list[Curve]:
    """The baseline, then the best finite configuration of each norm and placement, by the mean test ``metric``."""
    done = finite_trials(trials)
    sign = -1.0 if metric in MINIMIZED else 1.0
    best: dict[tuple[str, str | None], optuna.trial.FrozenTrial] = {}
    for t in done:
        c = configuration_of(t)
        key = (c.norm, c.placement)
        if key not in best or sign * cast(float, t.value) > sign * cast(float, best[key].value):  # finite: complete
            best[key] = t
    order = sorted(best, key=lambda k: (k[0] != "none", NORM_ORDER.index(k[0]) if k[0] in NORM_ORDER else -1,
                                        k[1] or ""))
    return [_curve(best[k], metric) for k in order]


def _curve(t: optuna.trial.FrozenTrial, metric: str) -> Curve:
    c = trial_curves(t)
    arr = lambda key: np.asarray(c[key], dtype=np.float64)  # noqa: E731
    return Curve(configuration_of(t).label, metric, arr("epoch"), arr(schema.curve("mean", metric)),
                 arr(schema.curve("std", metric)),
                 arr(schema.mean("test", metric)), arr(schema.std("test", metric)))


def seed_distribution(trials: Sequence[optuna.trial.FrozenTrial], metric: str = "accuracy") -> pd.DataFrame:
    """Long table (configuration, seed, test_<metric>) of the finite configurations, ordered by mean, best first."""
    import pandas as pd

    column = schema.per_seed("test", metric)
    rows = []
    for t in finite_trials(trials):
        label = configuration_of(t).label
        for seed, value in zip(t.user_attrs[schema.SEEDS_ATTR], t.user_attrs[column]):
            rows.append({"configuration": label, "seed": seed, column: value, "mean": t.value})
    frame = pd.DataFrame(rows, columns=["configuration", "seed", column, "mean"])
    best_first = metric not in MINIMIZED
    return frame.sort_values(["mean", "configuration", "seed"], ascending=[not best_first, True, True]).drop(
        columns="mean")


def sparsity_data(summary: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, float]]:
    """Regularized configurations' sparsity against strength, and the baseline's values."""
    regs = summary[summary["param_norm"] != "none"]
    cols = ["param_norm", "param_placement", "param_strength", *(k for k, _ in SPARSITY_PANELS)]
    base = summary[summary["param_norm"] == "none"]
    reference = {} if base.empty else {k: float(base[k].iloc[0]) for k, _ in SPARSITY_PANELS}
    return regs[cols].sort_values(cols[:3]).reset_index(drop=True), reference


LEGEND_CORNERS = ("upper right", "upper left", "lower right", "lower left")


def legend_location(size: tuple[float, float], avoid: np.ndarray, margin: float = 0.03) -> str | None:
    """The first corner of the axes (in ``LEGEND_CORNERS`` order) where a legend covers none of
    the ``avoid`` points; ``None`` when every corner would cover one (the legend then goes
    outside the axes).

    Positions are fractions of the axes (0..1, y upwards): ``size`` is the legend's (width,
    height), ``avoid`` an array of (x, y). ``margin`` widens the legend's box by a marker's
    size and the gap matplotlib leaves at the border.
    """
    w, h = size[0] + 2 * margin, size[1] + 2 * margin
    p = np.asarray(avoid, dtype=np.float64).reshape(-1, 2)
    for corner in LEGEND_CORNERS:
        x0 = 1.0 - w if corner.endswith("right") else 0.0
        y0 = 1.0 - h if corner.startswith("upper") else 0.0
        if not ((p[:, 0] >= x0) & (p[:, 0] <= x0 + w) & (p[:, 1] >= y0) & (p[:, 1] <= y0 + h)).any():
            return corner
    return None


# ----------------------------------------------------------------------------- drawing
#
# ``plot_*`` draw into the Axes they are given (as scikit-learn's Display objects do), so a
# user can compose them into a figure of their own; ``figure_*`` make the report's figure
# around them at a print width, without pyplot (a notebook's backend is left alone), and
# ``draw_*`` save it.

# Figure widths in inches: one column of a two-column paper, and the text's full width.
WIDTHS = {"column": 3.3, "text": 7.0}
MIN_FONT_PT = 7  # no text of a figure is smaller at its print width (tests/test_figures.py measures it)
# Print sizes: the sizes are points on the page, as the figures are made at their print width.
STYLE = {"font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "xtick.labelsize": 7, "ytick.labelsize": 7,
         "legend.fontsize": 7, "legend.title_fontsize": 7, "figure.titlesize": 8, "axes.linewidth": 0.6,
         "lines.linewidth": 1.2, "lines.markersize": 4, "grid.linewidth": 0.5, "hatch.linewidth": 0.6,
         # 300 dpi raster files; TrueType (Type 42) fonts in PDF and PostScript, which publishers accept
         # (matplotlib's default Type 3 fonts are rejected by some).
         "savefig.dpi": 300, "pdf.fonttype": 42, "ps.fonttype": 42}


def figure_width(width: str) -> float:
    if width not in WIDTHS:
        raise ValueError(f"figure width must be one of {tuple(WIDTHS)}, not {width!r}")
    return WIDTHS[width]


def styled():
    """The print style (:data:`STYLE`) for what is drawn within."""
    import matplotlib

    return matplotlib.rc_context(STYLE)


def new_figure(width: float, height: float):
    """A Matplotlib figure of ``width`` x ``height`` inches on an Agg canvas, outside pyplot (no global
    state, no backend switched) and with constrained layout (nothing leaves the figure)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def save(fig, path: str) -> None:
    with styled():
        fig.savefig(path)


def wrapped(text: str, width: float, size: float = 8) -> str:
    """``text`` in lines that fit ``width`` inches at ``size`` points."""
    import textwrap

    return textwrap.fill(text, max(30, int(width * 72 / (0.58 * size))))


def axes_fractions(ax, points: np.ndarray) -> np.ndarray:
    """Data coordinates (x, y) of ``ax`` as fractions of the axes (0..1, y upwards, whatever the scales)."""
    if len(points) == 0:
        return np.zeros((0, 2))
    ax.get_xlim(), ax.get_ylim()  # applies pending autoscaling: transData is stale until the limits are read
    return ax.transAxes.inverted().transform(ax.transData.transform(np.asarray(points, dtype=np.float64)))


def _line_points(ax, steps: int = 20) -> np.ndarray:
    """Points along every line of ``ax`` (markers and the segments between them), in axes fractions."""
    out = []
    ax.get_xlim(), ax.get_ylim()  # see axes_fractions
    for line in ax.get_lines():  # each in its own coordinates: axhline's x are axes fractions already
        xy = ax.transAxes.inverted().transform(line.get_transform().transform(np.asarray(line.get_xydata(), float)))
        xy = xy[np.isfinite(xy).all(axis=1)]
        if len(xy) == 1:
            out.append(xy)
        for a, b in itertools.pairwise(xy):
            out.append(a + np.linspace(0.0, 1.0, steps)[:, None] * (b - a))
    return np.concatenate(out) if out else np.zeros((0, 2))


def place_legend(ax, avoid: np.ndarray, **kwargs):
    """Draw ``ax``'s legend in the corner that ``legend_location`` picks (``avoid`` in axes
    fractions), or outside the axes, right of them, when no corner is free."""
    ax.figure.canvas.draw()  # the final layout: the legend's size relative to the axes
    legend = ax.legend(loc="upper right", **kwargs)
    renderer = ax.figure.canvas.get_renderer()
    box, frame = legend.get_window_extent(renderer), ax.get_window_extent(renderer)
    loc = legend_location((box.width / frame.width, box.height / frame.height), avoid)
    if loc is None:
        return ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), **kwargs)
    return ax.legend(loc=loc, **kwargs)


def _cell_width(labels: dict[str, pd.DataFrame]) -> float:
    """Inches a heatmap cell needs for the longest line of its annotations at :data:`MIN_FONT_PT`."""
    longest = max((len(line) for f in labels.values() for v in f.to_numpy().ravel() for line in str(v).split("\n")),
                  default=4)
    return max(0.3, longest * 0.58 * MIN_FONT_PT / 72 + 0.08)


def _heatmap_layout(data: Heatmap, width: float) -> tuple[dict[str, pd.DataFrame], bool, bool]:
    """The annotations, whether they take two lines, and whether the panels fit side by side in
    ``width`` inches: side by side where one-line cells fit, else one above the other; where even
    one panel's one-line cells do not fit, "mean±std" takes two lines, without the leading zeros of
    fractions (".824" over "±.014")."""
    n = len(data.placements)
    n_cols = max((data.values[p].shape[1] for p in data.placements), default=1)
    labels, two_lines = data.labels, False
    if n_cols * _cell_width(labels) + 1.5 > width:
        short = lambda v: re.sub(r"(?<![\d.])0\.", ".", str(v)).replace("±", "\n±")  # noqa: E731
        labels, two_lines = {p: f.map(short) for p, f in labels.items()}, True
    side = n * (n_cols * _cell_width(labels) + 0.6) + 0.9 <= width
    return labels, two_lines, side


def plot_heatmap(data: Heatmap, axes: Sequence, cmap: str = "viridis", fmt_bar: str = "{:.3f}",
                 labels: dict | None = None) -> None:
    """One panel per placement into ``axes`` (as many as ``data.placements``) and one colour bar for all.

    With ``data.hatched`` the cells whose verdict is ``equivalent`` are hatched (shown to lie within
    the region of practical equivalence; a mean within it is not enough).
    """
    import seaborn as sns
    from matplotlib.patches import Rectangle

    vmin, vmax = data.limits
    labels = labels or data.labels
    for ax, placement in zip(axes, data.placements):
        values = data.values[placement]
        sns.heatmap(values, ax=ax, annot=labels[placement].to_numpy(), fmt="", cmap=cmap, vmin=vmin, vmax=vmax,
                    center=data.center, cbar=False, annot_kws={"fontsize": MIN_FONT_PT}, linewidths=0.5)
        if data.hatched is not None:
            for (i, j), shown in np.ndenumerate(data.hatched[placement].to_numpy(dtype=bool)):
                if shown:
                    ax.add_patch(Rectangle((j, i), 1, 1, fill=False, hatch="////", edgecolor="0.72", linewidth=0))
        ax.set_title(f"placement: {placement}")
        ax.set_xlabel("strength (log scale)")
        ax.set_ylabel("norm")
        ax.set_xticklabels([f"{float(c):.0e}" for c in values.columns], rotation=0)
        ax.set_yticklabels(list(values.index), rotation=0)
    if not data.placements:
        return
    fig = axes[0].figure
    bar = fig.colorbar(axes[0].collections[0], ax=list(axes[:len(data.placements)]), shrink=1.0, aspect=25,
                       pad=0.02)
    bar.outline.set_linewidth(0.5)
    if data.baseline is not None:  # a red line, and a tick of its own in place of those it would print over
        bar.ax.axhline(data.baseline, color="red", linewidth=1.5)
        fig.canvas.draw()  # the bar's height, as laid out
        low, high = sorted(bar.ax.get_ylim())
        height_pt = max(1.0, bar.ax.get_window_extent().height * 72 / fig.dpi)
        gap = 1.5 * MIN_FONT_PT / height_pt * (high - low)  # a tick label's height, in the bar's units
        ticks = sorted([t for t in bar.get_ticks() if low <= t <= high and abs(t - data.baseline) > gap]
                       + [data.baseline])
        bar.set_ticks(ticks)
        bar.set_ticklabels([f"baseline {fmt_bar.format(t)}" if t == data.baseline else fmt_bar.format(t)
                            for t in ticks])
        bar.ax.get_yticklabels()[ticks.index(data.baseline)].set_color("red")


def figure_heatmap(data: Heatmap, width: str = "text", cmap: str = "viridis", fmt_bar: str = "{:.3f}"):
    """The heatmap at a print width: panels side by side where their annotations fit, else one
    above the other; each norm one row (one norm: a short strip, not a tall grid)."""
    w = figure_width(width)
    with styled():
        labels, two_lines, side = _heatmap_layout(data, w)
        n = max(1, len(data.placements))
        n_rows = max((data.values[p].shape[0] for p in data.placements), default=1)
        title = wrapped(data.title, w)
        panel_h = n_rows * (0.36 if two_lines else 0.24) + 0.62
        height = (panel_h if side else n * panel_h) + 0.18 * (title.count("\n") + 1) + 0.1
        fig = new_figure(w, height)
        axes = fig.subplots(1, n, squeeze=False)[0] if side else fig.subplots(n, 1, squeeze=False)[:, 0]
        plot_heatmap(data, list(axes), cmap, fmt_bar, labels)
        fig.suptitle(title)
    return fig


def draw_heatmap(data: Heatmap, path: str, cmap: str = "viridis", fmt_bar: str = "{:.3f}", width: str = "text") -> None:
    save(figure_heatmap(data, width, cmap, fmt_bar), path)


def plot_curve(curve: Curve, ax, baseline: Curve | None = None) -> None:
    """Train and test mean ±1 std of one configuration into ``ax``; the baseline's test mean dashed.

    A band's edges are drawn too, so that a narrow band (train accuracy, once every seed fits
    the training rows) still shows where it lies.
    """
    for mean, std, name, colour in ((curve.train_mean, curve.train_std, "train", "tab:blue"),
                                    (curve.test_mean, curve.test_std, "test", "tab:orange")):
        low, high = mean - np.nan_to_num(std), mean + np.nan_to_num(std)
        ax.plot(curve.epoch, mean, color=colour, label=f"{name} (mean)")
        ax.fill_between(curve.epoch, low, high, color=colour, alpha=0.3, linewidth=0, label=f"{name} ±1 std")
        for edge in (low, high):
            ax.plot(curve.epoch, edge, color=colour, linewidth=0.4, alpha=0.7)
    if baseline is not None and baseline is not curve:
        ax.plot(baseline.epoch, baseline.test_mean, color="grey", linestyle="--", linewidth=1, label="baseline test")
    ax.set_title(curve.label)
    ax.set_xlabel("epoch")
    ax.set_ylabel(METRIC_LABELS.get(curve.metric, curve.metric))
    ax.grid(alpha=0.3)


def figure_curves(curves: Sequence[Curve], width: str = "text"):
    w = figure_width(width)
    n = len(curves)
    cols = max(1, min(3 if width == "text" else 2, n))
    rows = max(1, math.ceil(n / cols))
    with styled():
        fig = new_figure(w, 1.75 * rows + 0.45)
        axes = fig.subplots(rows, cols, squeeze=False, sharey=True)
        base = curves[0] if curves and curves[0].label == "none" else None
        for ax, c in zip(axes.ravel(), curves):
            plot_curve(c, ax, base)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        handles, labels = axes.ravel()[min(1, n - 1) if n else 0].get_legend_handles_labels()
        # Below the panels: one legend for all, covering none of them.
        fig.legend(handles, labels, loc="outside lower center", ncol=5 if width == "text" else 3, frameon=False)
    return fig


def plot_distribution(frame: pd.DataFrame, ax, references: dict[str, float] | None = None) -> None:
    """Every seed's value per configuration (box and dots) into ``ax``; published single runs as red diamonds.

    The legend goes into a corner where it covers no point, else outside the axes: never over
    a diamond, the point it explains.
    """
    import seaborn as sns

    column = next(c for c in frame.columns if c.startswith("test_"))
    metric = column[len("test_"):]
    order = list(dict.fromkeys(frame["configuration"]))
    sns.boxplot(data=frame, y="configuration", x=column, order=order, ax=ax, color="lightgrey",
                fliersize=0, width=0.6, linewidth=0.6)
    # Deterministic jitter (seaborn's stripplot draws it from the global RNG), so the same
    # study always renders the same file.
    rows = frame["configuration"].map({c: i for i, c in enumerate(order)}).to_numpy(dtype=float)
    jitter = ((frame["seed"].to_numpy(dtype=float) * 0.6180339887) % 1.0 - 0.5) * 0.4
    dots = np.column_stack([frame[column].to_numpy(dtype=float), rows + jitter])
    marked = np.array([(value, order.index(label)) for label, value in (references or {}).items() if label in order],
                      dtype=np.float64).reshape(-1, 2)
    # A configuration that collapsed (R² of -3 beside 0.3) would squash every other box into a line:
    # then, and only then, the axis spans the others (Tukey's fences) and the seeds beyond it sit at
    # its edge as arrows, counted and named beside them. Every published run stays on the axis.
    low, high = _seed_axis(dots[:, 0], marked[:, 0])
    pad = 0.05 * (high - low)
    low, high = low - pad, high + pad
    beyond = (dots[:, 0] < low) | (dots[:, 0] > high)
    inside = dots[~beyond]
    ax.scatter(inside[:, 0], inside[:, 1], s=6, color="tab:blue", alpha=0.7, zorder=3, linewidths=0)
    if beyond.any():
        ax.set_xlim(low - pad, high + pad)
        for row in np.unique(rows[beyond]):
            values = dots[beyond & (rows == row), 0]
            left = np.median(values) < low
            edge = low - 0.5 * pad if left else high + 0.5 * pad
            ax.plot([edge], [row], marker="<" if left else ">", color="tab:blue", markersize=5, linestyle="none")
            ax.annotate(_off_axis_words(values), (edge, row),
                        xytext=(6 if left else -6, 0), textcoords="offset points", ha="left" if left else "right",
                        va="center", fontsize=MIN_FONT_PT, color="tab:blue")
        dots = np.column_stack([np.clip(dots[:, 0], low, high), dots[:, 1]])
    if len(marked):
        ax.plot(marked[:, 0], marked[:, 1], marker="D", color="red", markersize=5, linestyle="none",
                label="published single run")
    ax.set_xlabel(f"test {METRIC_LABELS.get(metric, metric)} (one dot per seed)")
    ax.set_ylabel("")
    ax.grid(axis="x", alpha=0.3)
    if len(marked):
        place_legend(ax, axes_fractions(ax, np.concatenate([marked, dots])))


# The seeds' axis is cut only where the whole range is this many times the range within Tukey's fences.
CUT_SPAN = 3.0


def _seed_axis(values: np.ndarray, references: np.ndarray) -> tuple[float, float]:
    """The seeds figure's axis: every seed's value and every reference, unless far seeds would squash the
    rest (a collapse; see :data:`CUT_SPAN`), then Tukey's fences of the seeds widened to the references."""
    low, high = robust_limits(values)
    finite = values[np.isfinite(values)]
    full_low, full_high = (float(finite.min()), float(finite.max())) if finite.size else (low, high)
    if full_high - full_low <= CUT_SPAN * (high - low):
        low, high = full_low, full_high
    if references.size:
        low, high = min(low, float(references.min())), max(high, float(references.max()))
    return (low - 1e-3, high + 1e-3) if low == high else (low, high)


def _off_axis_words(values: np.ndarray) -> str:
    """``"5 seeds at -3.5, off the axis"``, ``"3 seeds off the axis: 0.714, 0.729, 0.729"`` or
    ``"12 seeds off the axis, from -3.9 to -2.1"``: exactly what is not drawn."""
    ordered = np.sort(values)
    if ordered[0] == ordered[-1]:
        return f"{len(values)} seed{'s' if len(values) > 1 else ''} at {ordered[0]:.3g}, off the axis"
    if len(values) <= 3:
        return f"{len(values)} seeds off the axis: " + ", ".join(f"{v:.3g}" for v in ordered)
    return f"{len(values)} seeds off the axis, from {ordered[0]:.3g} to {ordered[-1]:.3g}"


def figure_distribution(frame: pd.DataFrame, references: dict[str, float] | None = None, width: str = "text"):
    n = frame["configuration"].nunique()
    with styled():
        fig = new_figure(figure_width(width), 0.75 + 0.2 * n)
        plot_distribution(frame, fig.subplots(), references)
    return fig


PLACEMENT_STYLE = {"pre": ("o", "-"), "post": ("s", "--")}


def plot_sparsity(frame: pd.DataFrame, reference: dict[str, float], axes: Sequence) -> None:
    """Mean activation and zero fraction against strength into two ``axes``; the baseline dashed.

    One line per norm and placement (colour: the norm; marker and dashes: the placement),
    named "l1, pre" in the legend. With a single strength there is nothing to draw a line
    along: the configurations are points on a categorical axis. Each legend goes into a
    corner that no line crosses, else outside the axes.
    """
    colours = {n: f"C{i}" for i, n in enumerate(NORM_ORDER)}
    groups = [(k, g) for k, g in frame.groupby(["param_norm", "param_placement"], sort=False)]
    groups.sort(key=lambda kg: (NORM_ORDER.index(kg[0][0]) if kg[0][0] in NORM_ORDER else 99, kg[0][1] != "pre"))
    single = frame["param_strength"].nunique() == 1
    for ax, (col, name) in zip(axes, SPARSITY_PANELS):
        for i, ((norm, placement), g) in enumerate(groups):
            marker, dashes = PLACEMENT_STYLE.get(placement, ("^", ":"))
            x = [i] if single else g["param_strength"].astype(float)
            ax.plot(x, g[col], color=colours.get(norm, "C3"), marker=marker, linestyle="none" if single else dashes,
                    label=f"{norm}, {placement}" if ax is axes[-1] else "_nolegend_")  # one legend names them
        if col in reference:
            ax.axhline(reference[col], color="grey", linestyle="--", linewidth=1, label="baseline")
        if single:
            ax.set_xticks(range(len(groups)), [f"{n}, {p}" for (n, p), _ in groups])
            ax.set_xlim(-0.6, len(groups) - 0.4)
            ax.set_xlabel(f"configuration (strength {float(frame['param_strength'].iloc[0]):g})")
        else:
            ax.set_xscale("log")
            ax.set_xlabel("strength (log scale)")
        ax.set_ylabel(name + " (test inputs)")
        ax.grid(alpha=0.3)
    for ax in axes:
        if ax.get_legend_handles_labels()[0]:
            place_legend(ax, _line_points(ax))


def figure_sparsity(frame: pd.DataFrame, reference: dict[str, float], width: str = "text"):
    w = figure_width(width)
    with styled():
        if width == "text":
            fig = new_figure(w, 2.4)
            axes = fig.subplots(1, 2)
        else:
            fig = new_figure(w, 4.0)
            axes = fig.subplots(2, 1)
        plot_sparsity(frame, reference, list(axes))
    return fig
