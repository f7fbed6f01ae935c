"""Verdicts against the baseline: better, worse, equivalent or undecided, with a region of practical equivalence."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from conftest import benchmark, write_study

from search import load_spec, run_study
from search.results.stats import (
    ALPHA,
    baseline_comparison,
    decide,
    default_rope,
    power,
    skewness,
    verdicts,
)


def sample(mean: float, sd: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` differences with exactly this mean and sample standard deviation."""
    z = np.random.default_rng(seed).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


@pytest.mark.parametrize("mean,sd,n,expected,withheld", [
    (0.05, 0.01, 30, "better", None),
    (-0.05, 0.01, 30, "worse", None),
    (0.0, 0.002, 30, "equivalent", None),
    (0.02, 0.05, 30, "undecided", None),  # outside the rope, but too noisy to show it
    (0.009, 0.001, 40, "equivalent", None),  # close to the edge, shown inside
    (0.011, 0.001, 60, "better", None),  # just beyond the edge, shown beyond: better, if barely
    (0.05, 0.01, 29, "undecided", "fewer than 30 replicates"),  # a tail the sample missed cannot be seen
    (0.0, 0.0, 2, "undecided", "fewer than 30 replicates"),
    (0.0, 0.0, 40, "undecided", "no spread"),  # nothing says how far the mean may be from the truth
    (-0.3, 0.0, 40, "undecided", "no spread"),
])
def test_a_verdict_per_region(mean, sd, n, expected, withheld):
    (v,) = verdicts([sample(mean, sd, n)], rope=0.01)
    assert v["verdict"] == expected and v["withheld"] == withheld
    decided = [k for k in ("better", "worse", "equivalent") if v[f"p_{k}"] is not None and v[f"p_{k}"] <= ALPHA]
    if withheld is None:
        assert decided == ([] if expected == "undecided" else [expected])  # at most one region is ever shown


def test_the_shapes_that_broke_the_t_test_get_no_verdict():
    """Pairs without spread, a few repeated steps of 1/70, and one collapse among many steady pairs."""
    step = 1 / 70
    assert {v["withheld"] for v in verdicts([np.full(5, step)] * 36, 0.01)} == {"fewer than 30 replicates"}
    assert {(v["verdict"], v["withheld"]) for v in verdicts([np.zeros(40)] * 36, 0.01)} == {("undecided", "no spread")}
    (nine,) = verdicts([np.array([step] * 9 + [0.0])], 0.01)
    assert nine["verdict"] == "undecided"
    rng = np.random.default_rng(0)
    # Five collapses in 30 replicates: the bootstrap alone would call it worse; its skew asks Cantelli's bound too.
    sometimes = np.concatenate([-0.01 + 0.003 * rng.standard_normal(25), -0.3 + 0.01 * rng.standard_normal(5)])
    (v,) = verdicts([sometimes], 0.01)
    assert (v["verdict"], v["withheld"]) == ("undecided", "skewed") and skewness(sometimes) < -1
    # 25 collapses in 30 are worse whatever the shape: the skewed need not be withheld.
    mostly = np.concatenate([-0.3 + 0.01 * rng.standard_normal(25), 0.003 * rng.standard_normal(5)])
    (v,) = verdicts([mostly], 0.01)
    assert (v["verdict"], v["withheld"]) == ("worse", None) and skewness(mostly) > 1


def test_the_p_values_are_the_studentized_bootstraps_and_deterministic():
    """Close to the t-test's where the differences are normal, the same on every call, and heavier than the
    t-test's on the side that a skewed sample's long tail points to."""
    from scipy import stats

    g = sample(0.02, 0.02, 50, seed=3)
    (a,), (b,) = decide([g], 0.01), decide([g], 0.01)
    assert a == b
    t = stats.t.sf((g.mean() - 0.01) / (g.std(ddof=1) / np.sqrt(50)), 49)
    assert a["p_better"] == pytest.approx(t, rel=0.5, abs=2e-4)
    skewed = np.random.default_rng(0).exponential(0.02, 400) - 0.02 + 0.013  # a long right tail, mean 0.013
    (s,) = decide([skewed], 0.01)
    t = stats.t.sf((skewed.mean() - 0.01) / (skewed.std(ddof=1) / 20), 399)
    assert s["p_better"] > t


def test_lower_is_better_turns_the_regions_around():
    (v,) = verdicts([sample(-0.05, 0.01, 30)], rope=0.01, maximize=False)  # MAE down by 0.05
    assert v["verdict"] == "better"
    (v,) = verdicts([sample(0.05, 0.01, 30)], rope=0.01, maximize=False)
    assert v["verdict"] == "worse"


def test_many_configurations_raise_the_bar():
    d = sample(0.02, 0.02, 30)
    assert verdicts([d], rope=0.01)[0]["verdict"] == "better"
    assert verdicts([d] * 40, rope=0.01)[0]["verdict"] == "undecided"  # 40 comparisons: alpha / 40 each


def _calibration():
    return benchmark("calibration")


@pytest.mark.parametrize("shape,delta,m", [("normal", 0.01, 4), ("skew-2", 0.01, 4), ("skew+2", -0.01, 4),
                                           ("step1", 0.01, 1), ("step3", 0.0103, 1)])
def test_the_chance_of_any_wrong_verdict_is_at_most_alpha(shape, delta, m):
    """The calibration harness's cells at the rope's edges, where the t-test erred 3 to 13 times too often:
    400 studies of 30 replicates each (the harness's table in docs/reports.md has 1,000 to 2,000)."""
    calibration = _calibration()
    rng = np.random.default_rng(1)
    x = calibration.draw(shape, delta, (400, m, 30), rng)
    rate, se, _ = calibration.wrong_rate(calibration.actreg(x, 0.01, ALPHA), delta)
    assert rate <= ALPHA + 3 * se, rate


def test_the_harness_finds_what_the_t_test_got_wrong():
    """The harness is able to fail: today's verdicts on the same cells break the promise it checks."""
    calibration = _calibration()
    x = calibration.draw("skew+2", -0.01, (400, 12, 30), np.random.default_rng(2))
    rate, se, _ = calibration.wrong_rate(calibration.t_before(x, 0.01, ALPHA), -0.01)
    assert rate > ALPHA + 3 * se


def test_power_names_the_replicates_that_would_decide():
    g = sample(0.03, 0.05, 30)
    level = ALPHA / 5
    out = power(g, 0.01, level)
    n = out["replicates_needed"]
    assert 30 < n < 10_000 and out["detectable_diff"] > 0.03  # it did not detect 0.03
    # With that many replicates of the same mean and spread, the better region is shown ...
    assert verdicts([sample(0.03, 0.05, n)] * 5, rope=0.01)[0]["verdict"] == "better"
    # ... and with the replicates the study has, a difference as large as the detectable one would be.
    assert verdicts([sample(out["detectable_diff"], 0.05, 30)] * 5, rope=0.01)[0]["verdict"] == "better"
    inside = power(sample(0.0, 0.02, 30), 0.01, level)["replicates_needed"]
    assert verdicts([sample(0.0, 0.02, inside)] * 5, rope=0.01)[0]["verdict"] == "equivalent"
    assert power(sample(0.01, 0.02, 30), 0.01, level)["replicates_needed"] is None  # on the edge: never
    assert power(sample(0.03, 0.05, 10), 0.01, level)["detectable_diff"] is None  # 10 replicates decide nothing


def test_an_equivalence_needs_both_bounds_of_tost():
    """At a mean of 0 both one-sided tests must reject: about 2 x (one-sided power) - 1, so more replicates
    than one bound alone would ask for."""
    from scipy import stats

    g = sample(0.0, 0.03, 30)
    level = ALPHA / 36
    k = power(g, 0.01, level)["replicates_needed"]
    one_bound = stats.nct.sf(stats.t.isf(level, k - 1), k - 1, 0.01 * np.sqrt(k) / 0.03)
    assert 0.8 <= 2 * one_bound - 1 <= 0.9
    assert stats.nct.sf(stats.t.isf(level, k - 2), k - 2, 0.01 * np.sqrt(k - 1) / 0.03) > 0.8  # one bound: fewer


def trial(number: int, params: dict, values: list[float], metric: str) -> optuna.trial.FrozenTrial:
    C = optuna.distributions.CategoricalDistribution
    dists = {k: C([v]) for k, v in params.items()}
    attrs = {"seeds": list(range(len(values))), f"test_{metric}": list(values), f"train_{metric}": list(values),
             "metrics": [metric]}
    t = optuna.trial.create_trial(params=params, distributions=dists, value=float(np.mean(values)), user_attrs=attrs)
    t.number = number
    return t


def test_regression_by_mae_gets_the_same_logic_with_a_rope_of_one_percent_of_the_baseline():
    names = ["norm", "strength", "placement"]
    base = sample(47.0, 1.0, 30, seed=1)
    trials = [trial(0, {"norm": "none"}, base, "mae"),
              trial(1, {"norm": "l2", "strength": 100.0, "placement": "pre"}, base - 3.0 + sample(0, 0.3, 30), "mae"),
              trial(2, {"norm": "l2", "strength": 1e3, "placement": "pre"}, base + 3.0 + sample(0, 0.3, 30), "mae"),
              trial(3, {"norm": "l2", "strength": 1e-9, "placement": "pre"}, base + sample(0, 0.01, 30), "mae")]
    frame = baseline_comparison(trials, names, "mae").set_index("configuration")
    assert default_rope("mae", 47.0) == pytest.approx(0.47) and frame["rope"].iloc[0] == pytest.approx(0.47)
    assert frame.loc["l2(100) pre", "verdict"] == "better"  # a lower MAE
    assert frame.loc["l2(1000) pre", "verdict"] == "worse"
    assert frame.loc["l2(1e-09) pre", "verdict"] == "equivalent"
    assert baseline_comparison(trials, names, "mae", rope=5.0).loc[lambda f: f["verdict"] == "equivalent"].shape[0] == 3


@pytest.mark.slow
def test_a_real_study_gets_worse_and_undecided_and_withholds_pairs_without_spread(tmp_path):
    """L1 at 10 collapses the network (worse); strength 1e-12 changes no prediction in any replicate, so
    its pairs have no spread and its verdict is withheld; L1 at 1e-3 changes a few test rows in a few
    replicates, within a ROPE of 0.05 but with mostly equal pairs, which the bootstrap does not take
    for a shown equivalence at 30 replicates; with two seeds nothing is decided."""
    path = write_study(tmp_path, name="verdicts", seeds=30, epochs=30, extra="rope = 0.05")
    text = path.read_text().replace("random_state = 3", 'resample = "draw"')
    text = text.replace('norm = ["none", "l1", "l2"]', 'norm = ["none", "l1"]').replace(
        "strength = [1e-3, 1e-1]", "strength = [1e-12, 1e-3, 10]").replace('placement = ["pre", "post"]',
                                                                           'placement = ["post"]')
    path.write_text(text)
    report = run_study(load_spec(path).with_overrides(n_jobs=1), progress=False)
    frame = report.comparison.set_index("configuration")
    assert frame.loc["l1(10) post", "verdict"] == "worse"
    assert tuple(frame.loc["l1(1e-12) post", ["verdict", "withheld"]]) == ("undecided", "no spread")
    assert frame.loc["l1(0.001) post", "verdict"] in ("equivalent", "undecided")
    assert abs(frame.loc["l1(0.001) post", "mean_test_diff"]) < 0.05
    assert set(report.comparison["rope"]) == {0.05}
    few = load_spec(path).with_overrides(n_jobs=1, seeds=2, storage=f"sqlite:///{tmp_path}/two.db")
    two = run_study(few, progress=False).comparison
    assert set(two["verdict"]) == {"undecided"}
    assert two.set_index("configuration").loc["l1(10) post", "replicates_needed"] > 2


@pytest.mark.filterwarnings("error")
def test_non_finite_pairs_and_rounding_are_withheld_without_a_warning():
    noise = np.random.default_rng(0).normal(0, 0.01, 39)
    assert verdicts([np.r_[noise, np.inf]], 0.01)[0]["withheld"] == "not finite"
    assert verdicts([np.r_[noise, np.nan]], 0.01)[0]["withheld"] == "not finite"
    (v,) = verdicts([np.r_[np.zeros(39), 1e-17]], 0.01)  # float rounding is no spread
    assert (v["verdict"], v["withheld"], v["replicates_needed"]) == ("undecided", "no spread", None)
    assert verdicts([np.random.default_rng(1).normal(0, 1e-300, 40)], 0.01)[0]["withheld"] == "no spread"
    tiny = np.random.default_rng(2).normal(0, 1e-6, 40)  # a real spread far below the rope: equivalent
    assert verdicts([tiny], 0.01)[0]["verdict"] == "equivalent"
