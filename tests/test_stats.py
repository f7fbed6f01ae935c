from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from scipy import stats

from search.results.stats import (
    baseline_comparison,
    holm,
    paired_differences,
    paired_test,
    reference_position,
)


@pytest.mark.parametrize("p,expected", [
    ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),
    ([0.5, 0.01], [0.5, 0.02]),
    ([0.2, math.nan, 0.01], [0.2, math.nan, 0.02]),
    ([0.9, 0.3], [0.9, 0.6]),
    ([0.9, 0.8], [1.0, 1.0]),  # monotone: a larger p never gets a smaller adjusted p
    ([], []),
])
def test_holm(p, expected):
    np.testing.assert_allclose(holm(p), expected)


def test_paired_differences_use_common_seeds_in_order():
    d = paired_differences({0: 0.8, 1: 0.7, 3: 0.9}, {1: 0.6, 0: 0.8, 2: 0.5})
    np.testing.assert_allclose(d, [0.0, 0.1])


def test_paired_test_matches_scipy():
    rng = np.random.default_rng(0)
    d = rng.normal(0.02, 0.03, size=12)
    out = paired_test(d)
    assert out["t_pvalue"] == pytest.approx(stats.ttest_1samp(d, 0).pvalue)
    assert out["wilcoxon_pvalue"] == pytest.approx(stats.wilcoxon(d).pvalue)
    assert out["effect_size_dz"] == pytest.approx(d.mean() / d.std(ddof=1))
    half = stats.t.ppf(0.975, 11) * d.std(ddof=1) / math.sqrt(12)
    assert (out["ci95_low_test_diff"], out["ci95_high_test_diff"]) == pytest.approx((d.mean() - half, d.mean() + half))


def test_paired_test_without_spread():
    assert paired_test(np.zeros(6))["t_pvalue"] == 1.0  # equal pairs: no difference
    assert math.isnan(paired_test(np.full(6, 1 / 70))["t_pvalue"])  # no spread, no t-statistic
    assert paired_test(np.zeros(6))["wilcoxon_pvalue"] == 1.0
    assert math.isnan(paired_test(np.array([0.1]))["t_pvalue"])


def trial(number, params, acc):
    return optuna.trial.create_trial(
        params=params,
        distributions={k: optuna.distributions.CategoricalDistribution([v]) for k, v in params.items()},
        value=float(np.mean(acc)),
        user_attrs={"seeds": list(range(len(acc))), "test_accuracy": list(acc), "train_accuracy": list(acc)},
    )


def test_baseline_comparison_flags_few_seeds_and_corrects():
    base = trial(0, {"norm": "none"}, [0.7, 0.72, 0.71])
    better = trial(1, {"norm": "l1", "strength": 1e-4, "placement": "pre"}, [0.75, 0.78, 0.74])
    same = trial(2, {"norm": "l1", "strength": 1e-3, "placement": "pre"}, [0.7, 0.72, 0.71])
    frame = baseline_comparison([base, better, same], ["norm", "strength", "placement"])
    assert list(frame["param_strength"]) == [1e-4, 1e-3]
    assert frame["few_seeds"].all()
    assert frame["mean_test_diff"].tolist() == pytest.approx([0.0466667, 0.0], abs=1e-6)
    assert frame["t_pvalue_holm"].iloc[0] == pytest.approx(min(1.0, 2 * frame["t_pvalue"].iloc[0]))
    assert baseline_comparison([better], ["norm"]).empty


@pytest.mark.parametrize("value,words,percentile", [
    (0.9, "above all 4 seeds", 100.0),
    (0.1, "below all 4 seeds", 0.0),
    (0.786, "above 1, equal to 2 and below 1 of 4 seeds", 50.0),  # 0.7857 rounds to the published 0.786
])
def test_reference_position(value, words, percentile):
    pos = reference_position(value, [0.7, 55 / 70, 55 / 70, 0.8])
    assert pos["words"] == words and pos["percentile"] == percentile
