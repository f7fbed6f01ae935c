"""Failures are data: diverged configurations are stored and ranked last, failed fits are FAIL trials."""

from __future__ import annotations

import math

import optuna
import pandas as pd
import pytest
from conftest import seed_result, write_study

import search.engine.parallel
from search import export_frame, load_spec, run_study
from search.cli import main
from search.results.records import OK, diverged_at, summary_frame, trial_record
from search.results.report import write_report
from search.run import summary_text
from search.store.reading import load_study
from search.study.space import Configuration, iter_param_names

pytestmark = pytest.mark.slow  # real processes, databases or clusters


@pytest.mark.parametrize("losses, epoch", [
    ([1.0, 0.9, 0.8], None),
    ([1.0, math.nan, math.nan], 2),
    ([math.inf, math.nan, math.nan], 1),
    ([1.0, 0.9, -math.inf], 3),
])
def test_the_epoch_at_which_a_seed_diverged(losses, epoch):
    assert diverged_at(seed_result(0, losses)) == epoch


def test_a_diverged_configuration_is_never_averaged_and_ranks_last():
    good = trial_record([seed_result(0, [1.0, 0.5]), seed_result(1, [1.0, 0.6])], 2, 1)
    # One seed of two diverged; its NaN weights predict one class: 0.9 is no finding.
    bad = trial_record([seed_result(0, [1.0, math.nan], 0.9), seed_result(1, [1.0, 0.4], 0.9)], 2, 1)
    assert good.status == OK and good.value == 0.5
    assert bad.status == "diverged" and bad.value == -math.inf
    assert bad.user_attrs["diverged_seeds"] == [0] and bad.user_attrs["diverged_epochs"] == [2]
    assert bad.user_attrs["train_loss"][0] is None  # JSON has no NaN
    assert trial_record([seed_result(0, [math.nan, math.nan])], 2, 1, maximize=False).value == math.inf
    trials = [
        optuna.trial.create_trial(params={"norm": "l1", "strength": 1.0, "placement": "pre"},
                                  distributions=_dists(), value=bad.value, user_attrs=bad.user_attrs),
        optuna.trial.create_trial(params={"norm": "none"}, distributions=_dists(True), value=good.value,
                                  user_attrs=good.user_attrs),
    ]
    trials[0].number, trials[1].number = 0, 1
    frame = summary_frame(trials, ["norm", "strength", "placement"]).set_index("param_norm")
    assert frame.loc["l1", "status"] == "diverged" and frame.loc["l1", "n_diverged"] == 1
    assert math.isnan(frame.loc["l1", "mean_test_accuracy"]) and math.isnan(frame.loc["l1", "std_test_accuracy"])
    assert frame.loc["l1", "rank_test_accuracy"] == 2 and frame.loc["none", "rank_test_accuracy"] == 1
    assert frame.loc["l1", "replicate0_test_accuracy"] == pytest.approx(0.9)  # the seeds are still shown


def _dists(baseline: bool = False):
    d = {"norm": optuna.distributions.CategoricalDistribution(["none", "l1"])}
    if not baseline:
        d["strength"] = optuna.distributions.CategoricalDistribution([1.0])
        d["placement"] = optuna.distributions.CategoricalDistribution(["pre"])
    return d


REGRESSION = """
name = "{name}"
seeds = 2
[data]
source = "diabetes"
standardize = true
[model]
loss = "mse"
layers = [
  {{ type = "dense", units = 8, activation = "relu", regularize = true }},
  {{ type = "dense", units = 1, activation = "linear" }},
]
[train]
epochs = 3
batch_size = 64
[space]
norm = ["none", "l2"]
strength = [1e-3, 1e38]
placement = ["pre"]
"""


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_a_study_with_a_diverging_configuration_completes_and_says_so(task, tmp_path, capsys):
    if task == "binary":
        path = write_study(tmp_path, name="div", seeds=3, epochs=3)
        path.write_text(path.read_text().replace("strength = [1e-3, 1e-1]", "strength = [1e-3, 1e38]"))
        metric, n = "accuracy", 9
    else:
        path = tmp_path / "div.toml"
        path.write_text(REGRESSION.format(name="div"))
        metric, n = "r2", 3
    spec = load_spec(path).with_overrides(n_jobs=1)
    report = run_study(spec, progress=False)
    assert report.configurations_run == n and report.configurations_failed == 0
    assert report.configurations_diverged == (4 if task == "binary" else 1)
    frame = export_frame(spec)
    diverged = frame[frame["param_strength"] == 1e38]
    assert (diverged["status"] == "diverged").all() and (diverged["n_diverged"] == spec.seeds.__len__()).all()
    assert diverged[f"mean_test_{metric}"].isna().all()
    finite = frame[frame["status"] == OK]
    assert diverged[f"rank_test_{metric}"].min() > finite[f"rank_test_{metric}"].max()
    trial = next(t for t in load_study(spec).get_trials() if t.params.get("strength") == 1e38)
    assert trial.state == optuna.trial.TrialState.COMPLETE and trial.user_attrs["diverged_epochs"] == [1] * len(
        spec.seeds)
    assert "diverged on" in summary_text(report.summary, spec.objective)
    # The report says so, and the statistics leave it out.
    out = write_report(spec, tmp_path / "report", attach=False)
    stats = pd.read_csv(out.folder / "stats.csv")
    assert not (stats["param_strength"] == 1e38).any()
    text = (out.folder / "report.md").read_text()
    assert "diverged" in text
    # The CSV round-trips: a diverged row is marked, not a NaN trap.
    exported = tmp_path / "s.csv"
    assert main(["export", str(path), "--out", str(exported)]) == 0
    assert set(pd.read_csv(exported)["status"]) == {"ok", "diverged"}
    capsys.readouterr()


def test_a_failing_fit_is_a_fail_trial_and_the_study_goes_on(tmp_path, monkeypatch, capsys):
    # One configuration per program (2 seeds, 2 models): the fault fails one configuration.
    path = write_study(tmp_path, name="fails", seeds=2, epochs=2, extra="models_per_program = 2")
    spec = load_spec(path).with_overrides(n_jobs=1)
    real = search.engine.parallel.fit_seeds

    def flaky(task):  # fault injection: this configuration's fit raises
        if Configuration("l1", 0.1, "post") in task.configs:
            raise RuntimeError("injected fault\nsecond line")
        return real(task)

    monkeypatch.setattr(search.engine.parallel, "fit_seeds", flaky)
    assert main(["run", str(path), "--n-jobs", "1", "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "8 configurations run (0 diverged), 1 failed" in out
    assert "l1(0.1) post: failed: RuntimeError: injected fault" in err
    assert err.strip().splitlines()[-1].startswith("error: 1 configuration(s) failed")
    failed = load_study(spec).get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert [t.user_attrs["fail_reason"] for t in failed] == ["RuntimeError: injected fault"]
    assert "Traceback" in failed[0].user_attrs["fail_details"]
    assert len(export_frame(spec)) == 8
    # Fixed: the next run retries only the failed configuration.
    monkeypatch.setattr(search.engine.parallel, "fit_seeds", real)
    assert main(["run", str(path), "--n-jobs", "1", "--no-progress"]) == 0
    assert "1 configurations run (0 diverged), 0 failed, 8 already stored" in capsys.readouterr().out
    assert len(export_frame(spec)) == 9


def test_a_program_that_raises_fails_its_configurations_and_counts_once(tmp_path, monkeypatch, capsys):
    """The configurations of a placement train in one program: its error fails each of them, the
    other programs go on, and the failure budget counts the one error."""
    path = write_study(tmp_path, name="group", seeds=2, epochs=2)
    spec = load_spec(path).with_overrides(n_jobs=1)
    real = search.engine.parallel.fit_seeds

    def flaky(task):
        if task.configs[0].placement == "post":
            raise RuntimeError("injected fault")
        return real(task)

    monkeypatch.setattr(search.engine.parallel, "fit_seeds", flaky)
    assert main(["run", str(path), "--n-jobs", "1", "--no-progress"]) == 1
    out, err = capsys.readouterr()
    assert "5 configurations run (0 diverged), 4 failed" in out  # one program of four: under the budget of 3
    assert err.count("post: failed: RuntimeError: injected fault") == 4
    failed = load_study(spec).get_trials(states=(optuna.trial.TrialState.FAIL,))
    assert sorted(t.params["placement"] for t in failed) == ["post"] * 4


def test_past_the_failure_budget_the_run_stops(tmp_path, monkeypatch, capsys):
    path = write_study(tmp_path, name="budget", seeds=2, epochs=2, extra="max_failures = 1\nmodels_per_program = 2")
    spec = load_spec(path)

    def broken(task):
        if not task.configs[0].is_baseline:
            raise MemoryError("injected")
        return real(task)

    real = search.engine.parallel.fit_seeds
    monkeypatch.setattr(search.engine.parallel, "fit_seeds", broken)
    assert main(["run", str(path), "--n-jobs", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "error: 2 programs failed in this run (2 configurations), more than max_failures = 1; stopped" in err
    trials = load_study(spec).get_trials()
    states = [t.state for t in trials]
    assert states.count(optuna.trial.TrialState.FAIL) == 2
    assert optuna.trial.TrialState.WAITING in states  # the rest is left queued for the next run
    assert optuna.trial.TrialState.RUNNING not in states
    assert list(iter_param_names(spec.space))
