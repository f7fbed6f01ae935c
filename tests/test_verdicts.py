"""Verdicts against the baseline: better, worse, equivalent or undecided, with a region of practical equivalence."""

from __future__ import annotations

import numpy as np
import optuna
import pytest
from conftest import write_study

from search import load_spec, run_study
from search.results.stats import ALPHA, baseline_comparison, decide, default_rope, power, verdicts


def sample(mean: float, sd: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` differences with exactly this mean and sample standard deviation."""
    z = np.random.default_rng(seed).normal(size=n)
    z = (z - z.mean()) / z.std(ddof=1)
    return mean + sd * z


@pytest.mark.parametrize("mean,sd,n,expected", [
    (0.05, 0.01, 10, "better"),
    (-0.05, 0.01, 10, "worse"),
    (0.0, 0.002, 10, "equivalent"),
    (0.02, 0.05, 10, "undecided"),  # outside the rope, but too noisy to show it
    (0.009, 0.001, 20, "equivalent"),  # close to the edge, shown inside
    (0.011, 0.001, 40, "better"),  # just beyond the edge, shown beyond: better, if barely
    (0.05, 0.01, 4, "undecided"),  # fewer than 5 replicates: too few to trust the t-test's model
    (0.0, 0.0, 2, "undecided"),
    (0.0, 0.0, 6, "equivalent"),  # no spread over enough pairs: the amount decides
    (-0.3, 0.0, 6, "worse"),
])
def test_a_verdict_per_region(mean, sd, n, expected):
    (v,) = verdicts([sample(mean, sd, n)], rope=0.01)
    assert v["verdict"] == expected
    decided = [k for k in ("better", "worse", "equivalent") if v[f"p_{k}"] is not None and v[f"p_{k}"] <= ALPHA]
    assert decided == ([] if expected == "undecided" else [expected])  # at most one region is ever shown


def test_lower_is_better_turns_the_regions_around():
    (v,) = verdicts([sample(-0.05, 0.01, 10)], rope=0.01, maximize=False)  # MAE down by 0.05
    assert v["verdict"] == "better"
    (v,) = verdicts([sample(0.05, 0.01, 10)], rope=0.01, maximize=False)
    assert v["verdict"] == "worse"


def test_many_configurations_raise_the_bar():
    d = sample(0.02, 0.012, 10)
    assert verdicts([d], rope=0.01)[0]["verdict"] == "better"
    assert verdicts([d] * 40, rope=0.01)[0]["verdict"] == "undecided"  # 40 comparisons: alpha / 40 each


@pytest.mark.parametrize("delta", [0.01, -0.01, 0.0100001, 0.0])
def test_the_chance_of_any_wrong_verdict_is_at_most_alpha(delta):
    """Monte Carlo at the worst cases, the rope's edges: four configurations of the same true Δ,
    4000 studies of 8 replicates; a wrong verdict is one whose region does not hold Δ."""
    rng = np.random.default_rng(1)
    rope, studies = 0.01, 4000
    truth = "equivalent" if abs(delta) <= rope else ("better" if delta > 0 else "worse")
    wrong = 0
    for _ in range(studies):
        diffs = [delta + rng.normal(0, 0.004, size=8) for _ in range(4)]
        wrong += any(v["verdict"] not in ("undecided", truth) for v in decide(diffs, rope))
    rate, se = wrong / studies, np.sqrt(ALPHA * (1 - ALPHA) / studies)
    assert rate <= ALPHA + 3 * se, rate


def test_power_names_the_replicates_that_would_decide():
    g = sample(0.03, 0.05, 10)
    level = ALPHA / 5
    out = power(g, 0.01, level)
    n = out["replicates_needed"]
    assert 10 < n < 10_000 and out["detectable_diff"] > 0.03  # it did not detect 0.03
    # With that many replicates of the same mean and spread, the better region is shown ...
    assert verdicts([sample(0.03, 0.05, n)] * 5, rope=0.01)[0]["verdict"] == "better"
    # ... and with the replicates the study has, a difference as large as the detectable one would be.
    assert verdicts([sample(out["detectable_diff"], 0.05, 10)] * 5, rope=0.01)[0]["verdict"] == "better"
    inside = power(sample(0.0, 0.02, 10), 0.01, level)["replicates_needed"]
    assert verdicts([sample(0.0, 0.02, inside)] * 5, rope=0.01)[0]["verdict"] == "equivalent"
    assert power(sample(0.01, 0.02, 10), 0.01, level)["replicates_needed"] is None  # on the edge: never


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
    base = sample(47.0, 1.0, 12, seed=1)
    trials = [trial(0, {"norm": "none"}, base, "mae"),
              trial(1, {"norm": "l2", "strength": 100.0, "placement": "pre"}, base - 3.0 + sample(0, 0.3, 12), "mae"),
              trial(2, {"norm": "l2", "strength": 1e3, "placement": "pre"}, base + 3.0 + sample(0, 0.3, 12), "mae"),
              trial(3, {"norm": "l2", "strength": 1e-9, "placement": "pre"}, base + sample(0, 0.01, 12), "mae")]
    frame = baseline_comparison(trials, names, "mae").set_index("configuration")
    assert default_rope("mae", 47.0) == pytest.approx(0.47) and frame["rope"].iloc[0] == pytest.approx(0.47)
    assert frame.loc["l2(100) pre", "verdict"] == "better"  # a lower MAE
    assert frame.loc["l2(1000) pre", "verdict"] == "worse"
    assert frame.loc["l2(1e-09) pre", "verdict"] == "equivalent"
    assert baseline_comparison(trials, names, "mae", rope=5.0).loc[lambda f: f["verdict"] == "equivalent"].shape[0] == 3


@pytest.mark.slow
def test_a_real_study_gets_equivalent_worse_and_undecided(tmp_path):
    """strength 1e-12 changes nothing worth a ROPE of 0.05 (equivalent); L1 at 10 collapses the
    network (worse); with two seeds nothing is decided."""
    path = write_study(tmp_path, name="verdicts", seeds=8, epochs=30, extra="rope = 0.05")
    text = path.read_text().replace("random_state = 3", 'resample = "draw"')
    text = text.replace('norm = ["none", "l1", "l2"]', 'norm = ["none", "l1"]').replace(
        "strength = [1e-3, 1e-1]", "strength = [1e-12, 10]").replace('placement = ["pre", "post"]',
                                                                      'placement = ["post"]')
    path.write_text(text)
    report = run_study(load_spec(path).with_overrides(n_jobs=1), progress=False)
    verdict = dict(zip(report.comparison["configuration"], report.comparison["verdict"]))
    assert verdict == {"l1(1e-12) post": "equivalent", "l1(10) post": "worse"}
    assert set(report.comparison["rope"]) == {0.05}
    few = load_spec(path).with_overrides(n_jobs=1, seeds=2, storage=f"sqlite:///{tmp_path}/two.db")
    two = run_study(few, progress=False).comparison
    assert set(two["verdict"]) == {"undecided"}
    assert two.set_index("configuration").loc["l1(10) post", "replicates_needed"] > 2
