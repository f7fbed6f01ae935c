from __future__ import annotations

import math

import numpy as np
import optuna
import pandas as pd
import pytest

from search.results.figures import (
    heatmap_data,
    seed_distribution,
    selected_curves,
    sparsity_data,
    strength_bins,
)
from search.results.records import CURVES_ATTR


def summary(rows):
    cols = ["param_norm", "param_strength", "param_placement", "mean_test_accuracy", "std_test_accuracy",
            "mean_test_activation", "mean_test_zero_fraction"]
    return pd.DataFrame(rows, columns=cols)


SUMMARY = summary([
    ("none", None, None, 0.77, 0.01, 0.2, 0.4),
    ("l1", 1e-4, "pre", 0.75, 0.02, 0.1, 0.5),
    ("l1", 1e-2, "pre", 0.79, 0.03, 0.05, 0.8),
    ("l2", 1e-4, "post", 0.76, 0.01, 0.15, 0.45),
])


def test_heatmap_pivots_norm_by_strength_per_placement():
    h = heatmap_data(SUMMARY, "mean_test_accuracy", "mean_std")
    assert h.placements == ("pre", "post") and h.baseline == 0.77
    pre = h.values["pre"]
    assert list(pre.index) == ["l1", "l2"] and list(pre.columns) == [1e-4, 1e-2]
    assert pre.loc["l1", 1e-2] == 0.79 and math.isnan(pre.loc["l2", 1e-4])
    assert h.labels["pre"].loc["l1", 1e-2] == "0.790±0.030"
    assert h.labels["pre"].loc["l2", 1e-4] == ""
    assert h.values["post"].loc["l2", 1e-4] == 0.76


def test_strength_bins_keep_a_grid_and_bin_a_continuous_search_by_decade():
    assert strength_bins([1e-4, 1e-2]) == {1e-4: 1e-4, 1e-2: 1e-2}
    bins = strength_bins(list(np.geomspace(1e-5, 1e-1, 20)))
    assert set(bins.values()) <= {1e-5, 1e-4, 1e-3, 1e-2, 1e-1}


def test_sparsity_data_separates_the_baseline():
    frame, ref = sparsity_data(SUMMARY)
    assert len(frame) == 3 and set(frame["param_norm"]) == {"l1", "l2"}
    assert ref == {"mean_test_activation": 0.2, "mean_test_zero_fraction": 0.4}


def trial(params, acc, curve_test):
    epochs = [1, 2, 3]
    curves = {"epoch": epochs, "mean_accuracy": [0.5, 0.7, 0.9], "std_accuracy": [0.0, 0.1, 0.0],
              "mean_test_accuracy": curve_test, "std_test_accuracy": [0.01, 0.01, 0.01]}
    return optuna.trial.create_trial(
        params=params,
        distributions={k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()},
        value=float(np.mean(acc)),
        user_attrs={"seeds": [0, 1], "test_accuracy": acc, "train_accuracy": acc},
        system_attrs={CURVES_ATTR: curves},
    )


TRIALS = [
    trial({"norm": "l1", "strength": 1e-3, "placement": "pre"}, [0.6, 0.7], [0.5, 0.6, 0.65]),
    trial({"norm": "none"}, [0.7, 0.8], [0.5, 0.7, 0.75]),
    trial({"norm": "l1", "strength": 1e-2, "placement": "pre"}, [0.8, 0.8], [0.5, 0.7, 0.8]),
    trial({"norm": "l1", "strength": 1e-2, "placement": "post"}, [0.5, 0.5], [0.5, 0.5, 0.5]),
]


def test_curves_are_the_baseline_then_the_best_of_each_norm_and_placement():
    curves = selected_curves(TRIALS)
    assert [c.label for c in curves] == ["none", "l1(0.01) post", "l1(0.01) pre"]
    assert curves[2].test_mean.tolist() == [0.5, 0.7, 0.8]


def test_seed_distribution_is_long_and_ordered_best_first():
    frame = seed_distribution(TRIALS)
    assert len(frame) == 8
    assert list(dict.fromkeys(frame["configuration"])) == ["l1(0.01) pre", "none", "l1(0.001) pre", "l1(0.01) post"]


def test_a_collapsed_configuration_does_not_set_the_colour_scale():
    from search.results.figures import robust_limits

    values = [0.77, 0.75, 0.76, 0.78, 0.79, 0.74, 0.45]  # one configuration collapsed to chance
    low, high = robust_limits(values)
    assert 0.45 < low <= 0.74 and high == 0.79
    low, high = robust_limits([0.02, -0.01, 0.01, 0.0, -0.33], center=0.0)
    assert high == -low and 0.02 <= high < 0.33


def test_the_delta_heatmap_shows_paired_differences_on_a_scale_centred_at_zero():
    from search.results.figures import delta_heatmap_data

    comparison = pd.DataFrame({
        "param_norm": ["l1", "l1", "l2"], "param_strength": [1e-4, 1e-2, 1e-4],
        "param_placement": ["pre", "pre", "post"], "mean_test_diff": [-0.02, 0.02, -0.01],
        "t_pvalue_holm": [0.5, 0.01, float("nan")], "rope": [0.01] * 3,
        "verdict": ["undecided", "better", "equivalent"]})
    h = delta_heatmap_data(SUMMARY, comparison)
    assert h.center == 0.0 and h.limits[0] == -h.limits[1] and h.baseline is None
    assert h.values["pre"].loc["l1", 1e-4] == -0.02 and h.values["pre"].loc["l1", 1e-2] == 0.02
    assert h.labels["pre"].loc["l1", 1e-2] == "+0.020†"  # significant after Holm
    assert h.labels["pre"].loc["l1", 1e-4] == "-0.020"
    assert h.values["post"].loc["l2", 1e-4] == -0.01
    # Hatched: the equivalent verdicts alone, not every mean within the rope (l1(1e-4) pre is undecided).
    assert h.hatched["post"].loc["l2", 1e-4] and not h.hatched["pre"].to_numpy().any()


def test_figures_are_300_dpi_and_pdf_fonts_are_truetype(tmp_path):
    from PIL import Image

    from search.results.figures import draw_heatmap

    data = heatmap_data(SUMMARY, "mean_test_accuracy", "mean_std", "title")
    draw_heatmap(data, str(tmp_path / "h.png"))
    assert [round(d) for d in Image.open(tmp_path / "h.png").info["dpi"]] == [300, 300]
    draw_heatmap(data, str(tmp_path / "h.pdf"))
    pdf = (tmp_path / "h.pdf").read_bytes()
    # Type 42: TrueType outlines, embedded as /TrueType or, for Unicode text, as /CIDFontType2.
    assert (b"/TrueType" in pdf or b"/CIDFontType2" in pdf) and b"/Type3" not in pdf


@pytest.mark.parametrize("avoid, corner", [
    ([], "upper right"),  # nothing to cover: the first corner
    ([[0.95, 0.95]], "upper left"),
    ([[0.95, 0.95], [0.05, 0.95]], "lower right"),
    ([[0.95, 0.95], [0.05, 0.95], [0.9, 0.1]], "lower left"),
    ([[0.95, 0.95], [0.05, 0.95], [0.95, 0.05], [0.05, 0.05]], None),  # every corner taken: outside
    ([[0.5, 0.5]], "upper right"),  # the centre is in no corner of a small legend
    ([[0.66, 0.76]], "upper left"),  # inside the margin (0.03) around a 0.3 x 0.2 legend
    ([[0.62, 0.72]], "upper right"),  # outside it
])
def test_legend_location_avoids_marked_points(avoid, corner):
    from search.results.figures import legend_location

    assert legend_location((0.3, 0.2), np.array(avoid)) == corner


def _legend_box(ax):
    ax.figure.canvas.draw()  # final limits and layout: what the saved file shows
    return ax.get_legend().get_window_extent(ax.figure.canvas.get_renderer())


def test_the_seeds_legend_never_covers_a_published_point():
    from search.results.figures import new_figure, plot_distribution

    # The published points sit at the right end of the top rows: where a legend goes by default.
    frame = pd.DataFrame({"configuration": np.repeat(["a", "b", "c", "d"], 10), "seed": np.tile(np.arange(10), 4),
                          "test_accuracy": np.linspace(0.70, 0.80, 40)})
    for references in ({"a": 0.85, "b": 0.84}, {"a": 0.85, "d": 0.85, "b": 0.60, "c": 0.60}):
        fig = new_figure(7, 2.3)
        ax = fig.subplots()
        plot_distribution(frame, ax, references)
        box = _legend_box(ax)
        marks = next(line for line in ax.get_lines() if line.get_label() == "published single run")
        dots = ax.collections[-1].get_offsets()
        for x, y in ax.transData.transform(np.concatenate([marks.get_xydata(), dots])):
            assert not box.contains(x, y)


def test_sparsity_legends_cross_no_line():
    from search.results.figures import _line_points, new_figure, plot_sparsity

    frame = pd.DataFrame({"param_norm": ["l1"] * 3 + ["l2"] * 3, "param_placement": ["pre"] * 6,
                          "param_strength": [1e-4, 1e-3, 1e-2] * 2,
                          "mean_test_activation": [0.9, 0.5, 0.1, 0.9, 0.8, 0.7],
                          "mean_test_zero_fraction": [0.1, 0.5, 0.9, 0.1, 0.2, 0.3]})
    axes = new_figure(7, 2.4).subplots(1, 2)
    plot_sparsity(frame, {"mean_test_activation": 0.95, "mean_test_zero_fraction": 0.05}, list(axes))
    for ax, baseline in zip(axes, (0.95, 0.05)):
        box = _legend_box(ax)
        for x, y in ax.transAxes.transform(_line_points(ax)):
            assert not box.contains(x, y)
        # The baseline spans the whole width: no legend may sit at its height.
        y = ax.transData.transform([[1e-3, baseline]])[0, 1]
        assert not box.y0 <= y <= box.y1
        assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "baseline"
    # One entry per line, named in words (seaborn made "norm" and "placement" entries of their own).
    assert [t.get_text() for t in axes[1].get_legend().get_texts()] == ["l1, pre", "l2, pre", "baseline"]


def test_a_collapsed_configuration_does_not_squash_the_seeds_axis():
    from search.results.figures import new_figure, plot_distribution

    # One of eight configurations collapsed (as l1(1000) post of studies/regression.toml).
    names = [*"abcdefg", "collapsed"]
    frame = pd.DataFrame({"configuration": np.repeat(names, 5), "seed": np.tile(np.arange(5), 8),
                          "test_r2": [*np.linspace(0.30, 0.40, 35), *[-3.5] * 5]})
    ax = new_figure(7, 1.5).subplots()
    plot_distribution(frame, ax)
    low, high = ax.get_xlim()
    assert 0.2 < low < 0.30 and 0.40 < high < 0.5  # the axis spans the others
    (note,) = [t.get_text() for t in ax.texts]
    assert note == "5 seeds at -3.5, off the axis"


def test_the_seeds_axis_hides_no_seed_and_no_published_run_unless_a_collapse_would_squash_it():
    """The quick start's figure cut its axis at 0.73 and said "3 seeds at 0.729" for 0.714, 0.729 and
    0.729; a spread like that fits on the axis whole, and the published runs with it."""
    from search.results.figures import new_figure, plot_distribution

    rng = np.random.default_rng(0)
    values = np.clip(rng.normal(0.765, 0.012, 90), 0.74, 0.79)
    values[:3] = [0.714, 0.729, 0.729]  # a low tail, as the tutorial's
    frame = pd.DataFrame({"configuration": np.repeat(["none", "l1 pre", "l1 post"], 30),
                          "seed": np.tile(np.arange(30), 3), "test_accuracy": values})
    references = {"none": 0.786, "l1 pre": 0.829, "l1 post": 0.743}
    for width in (7.0, 3.3):
        ax = new_figure(width, 1.4).subplots()
        plot_distribution(frame, ax, references)
        low, high = ax.get_xlim()
        assert len(ax.texts) == 0 and len(ax.collections[-1].get_offsets()) == len(frame)  # every seed a dot
        assert low < 0.714 and high > 0.829  # every seed and every published run on the axis


def test_seeds_off_the_axis_are_counted_and_named_exactly():
    from search.results.figures import _off_axis_words

    assert _off_axis_words(np.array([0.729, 0.714, 0.729])) == "3 seeds off the axis: 0.714, 0.729, 0.729"
    assert _off_axis_words(np.array([-3.5] * 5)) == "5 seeds at -3.5, off the axis"
    assert _off_axis_words(np.array([-2.1, -3.9, -3.0, -2.5])) == "4 seeds off the axis, from -3.9 to -2.1"
    assert _off_axis_words(np.array([-3.5])) == "1 seed at -3.5, off the axis"


@pytest.mark.parametrize("width", ["text", "column"])
def test_the_baseline_on_a_colour_bar_prints_over_no_tick(width):
    """The baseline's value is a red tick of the colour bar; ticks that its label would print over
    (0.900 under "baseline 0.904") give way to it."""
    from search.results.figures import figure_heatmap

    summary = SUMMARY.copy()
    base = summary["param_norm"] == "none"
    summary.loc[base, "mean_test_accuracy"] = 0.904
    summary.loc[~base, "mean_test_accuracy"] = np.linspace(0.86, 0.95, int((~base).sum()))
    fig = figure_heatmap(heatmap_data(summary, "mean_test_accuracy", "mean_std", "title"), width)
    fig.canvas.draw()
    bar = fig.axes[-1]
    renderer = fig.canvas.get_renderer()
    labels = [t for t in bar.get_yticklabels() if t.get_visible() and t.get_text()]
    (baseline,) = [t for t in labels if t.get_text() == "baseline 0.904"]
    assert baseline.get_color() == "red"
    box = baseline.get_window_extent(renderer)
    for other in labels:
        if other is not baseline:
            assert not box.overlaps(other.get_window_extent(renderer)), other.get_text()
    assert fig.bbox.contains(box.x1 - 1, box.y0 + 1)  # inside the figure
