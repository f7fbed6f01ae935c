from __future__ import annotations

import csv

import optuna
import pandas as pd
import pytest
from conftest import RUN_COLUMNS, actreg, write_study

from search import export_frame, load_spec, run_study
from search.engine import runtime
from search.store.claims import StudyQueue
from search.store.reading import load_study
from search.study.space import distributions, grid
from search.study.validation import SpecError

N_CONFIGS = 1 + 2 * 2 * 2  # the small study: baseline + {l1, l2} x 2 strengths x 2 placements


@pytest.mark.slow
def test_run_stores_one_trial_per_configuration_and_resumes(small_study):
    spec = load_spec(small_study).with_overrides(n_jobs=1)
    first = run_study(spec, progress=False)
    assert (first.configurations_run, first.configurations_skipped) == (N_CONFIGS, 0)
    study = load_study(spec)
    trials = study.get_trials()
    assert len(trials) == N_CONFIGS
    baseline = [t for t in trials if t.params["norm"] == "none"]
    assert len(baseline) == 1 and set(baseline[0].params) == {"norm"}
    t = trials[1]
    a = t.user_attrs
    assert t.value == pytest.approx(sum(a["test_accuracy"]) / 3)
    assert len(a["test_accuracy"]) == len(a["train_accuracy"]) == 3 and a["seeds"] == [0, 1, 2]
    assert len(a["mean_activation"][0]) == 2  # two regularized layers
    assert sorted(t.intermediate_values) == list(range(1, 7))
    assert t.intermediate_values[6] == pytest.approx(t.value)
    assert study.user_attrs["penalty"] == "mean" and "keras" in study.user_attrs["versions"]

    again = run_study(spec, progress=False)
    assert (again.configurations_run, again.configurations_skipped) == (0, N_CONFIGS)
    assert len(load_study(spec).get_trials()) == N_CONFIGS


@pytest.mark.slow
def test_numbers_do_not_depend_on_n_jobs(tmp_path):
    path = write_study(tmp_path, seeds=3, epochs=5, extra="chunk_size = 2")
    frames = []
    for n_jobs in (1, 2):
        spec = load_spec(path).with_overrides(n_jobs=n_jobs, storage=f"sqlite:///{tmp_path}/j{n_jobs}.db")
        run_study(spec, progress=False)
        frame = export_frame(spec, per_seed=True).drop(columns=RUN_COLUMNS)
        frames.append(frame.sort_values(["param_norm", "param_strength", "param_placement", "seed"]))
    pd.testing.assert_frame_equal(frames[0].reset_index(drop=True), frames[1].reset_index(drop=True), check_exact=True)


@pytest.mark.slow
def test_a_changed_study_file_is_refused_before_anything_is_written(small_study):
    spec = load_spec(small_study).with_overrides(n_jobs=1, epochs=2)
    run_study(spec, progress=False)
    changed = spec.with_overrides(epochs=3)
    with pytest.raises(SpecError, match=r"name: study 'small' .* other settings \(train.epochs\)"):
        run_study(changed, progress=False)
    assert len(load_study(spec).get_trials()) == N_CONFIGS


@pytest.mark.slow
def test_tpe_study_runs_its_trials_and_resumes(tmp_path):
    path = write_study(tmp_path, name="tpe", epochs=3, extra='sampler = "tpe"\nn_trials = 5')
    text = path.read_text().replace("strength = [1e-3, 1e-1]", "strength = { low = 1e-4, high = 1e-1, log = true }")
    path.write_text(text)
    spec = load_spec(path).with_overrides(n_jobs=1)
    report = run_study(spec, progress=False)
    assert report.configurations_run == 5
    trials = load_study(spec).get_trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.COMPLETE] * 5
    assert all(1e-4 <= t.params["strength"] <= 1e-1 for t in trials if "strength" in t.params)
    assert run_study(spec, progress=False).configurations_run == 0


@pytest.mark.slow
def test_export_csv_columns(small_study, tmp_path):
    spec = load_spec(small_study).with_overrides(n_jobs=1, epochs=3)
    run_study(spec, progress=False)
    out = tmp_path / "out" / "summary.csv"
    proc = actreg("export", str(small_study), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == N_CONFIGS
    assert list(rows[0]) == [
        "param_norm", "param_strength", "param_placement", "configuration", "trial_number", "n_seeds", "status",
        "n_diverged", "mean_test_accuracy", "std_test_accuracy",
        "ci95_low_test_accuracy", "ci95_high_test_accuracy", "rank_test_accuracy", "ranked_on_seeds",
        "mean_train_accuracy",
        "std_train_accuracy", "mean_test_activation", "mean_test_zero_fraction", "fit_time",
        "replicate0_test_accuracy", "replicate1_test_accuracy", "replicate2_test_accuracy",
    ]
    for row in rows:
        splits = [float(row[f"replicate{k}_test_accuracy"]) for k in range(3)]
        assert float(row["mean_test_accuracy"]) == pytest.approx(sum(splits) / 3)
        assert float(row["ci95_low_test_accuracy"]) <= float(row["mean_test_accuracy"]) <= float(
            row["ci95_high_test_accuracy"])
    assert min(int(r["rank_test_accuracy"]) for r in rows) == 1

    per_seed = tmp_path / "seeds.csv"
    proc = actreg("export", str(small_study), "--out", str(per_seed), "--per-seed")
    assert proc.returncode == 0, proc.stderr
    frame = pd.read_csv(per_seed)
    assert len(frame) == N_CONFIGS * 3
    assert {"param_norm", "seed", "replicate", "test_accuracy", "train_accuracy", "test_zero_fraction"} <= \
        set(frame.columns)
    assert "fit_time" not in frame  # a chunk's seeds train as one computation: no per-seed time is made up


def test_export_of_a_study_never_run_fails_cleanly(small_study, tmp_path):
    proc = actreg("export", str(small_study), "--out", str(tmp_path / "x.csv"))
    assert proc.returncode == 2  # bad input, as a bad storage is
    assert proc.stderr.strip().splitlines() == [
        f"error: {small_study}: name: no database at {tmp_path / 'small.db'}; run `actreg run {small_study}` first"]
    assert not (tmp_path / "small.db").exists() and not (tmp_path / "x.csv").exists()


@pytest.mark.slow
def test_progress_says_compiling_and_counts_fits(tmp_path):
    import io

    path = write_study(tmp_path, name="progress", seeds=2, epochs=2)
    stream = io.StringIO()
    run_study(load_spec(path).with_overrides(n_jobs=1), progress=True, stream=stream)
    text = stream.getvalue()
    assert "starting workers, compiling" in text
    assert "18/18" in text  # 9 configurations x 2 seeds, counted as each chunk returns



@pytest.mark.slow
def test_a_program_is_claimed_together_and_a_member_held_elsewhere_is_left_to_its_holder(tmp_path):
    """Configurations as data: one program trains a placement's configurations together, claimed
    together; one that another runner holds is trained for company (so that every configuration
    gets the numbers of its one program whoever holds what) and stored by its holder only."""
    (tmp_path / "alone").mkdir()
    reference = load_spec(write_study(tmp_path / "alone", name="company", seeds=2, epochs=4)).with_overrides(n_jobs=1)
    run_study(reference, progress=False)
    spec = load_spec(write_study(tmp_path, name="company", seeds=2, epochs=4)).with_overrides(n_jobs=1)
    queue, created = StudyQueue.open(spec, runtime.versions())  # the grid queued, as a first runner queues it
    queue.fill_grid(grid(spec.space), lambda c: distributions(c, spec.space), created)
    queue.close()
    study = load_study(spec)
    held = next(t for t in study.get_trials() if t.params == {"norm": "l1", "strength": 0.1, "placement": "pre"})
    storage = study._storage
    storage.record_heartbeat(held._trial_id)  # another runner's claim, alive
    assert storage.set_trial_state_values(held._trial_id, state=optuna.trial.TrialState.RUNNING)

    report = run_study(spec, progress=False, wait=False)
    assert report.configurations_run == N_CONFIGS - 1
    assert load_study(spec).get_trials()[held.number].state == optuna.trial.TrialState.RUNNING
    mine = export_frame(spec, per_seed=True).drop(columns=RUN_COLUMNS)
    alone = export_frame(reference, per_seed=True).drop(columns=RUN_COLUMNS)
    keys = ["param_norm", "param_strength", "param_placement", "seed"]
    alone = alone.merge(mine[keys], on=keys).sort_values(keys).reset_index(drop=True)
    pd.testing.assert_frame_equal(mine.sort_values(keys).reset_index(drop=True), alone, check_exact=True)


@pytest.mark.parametrize("kwargs, key", [
    ({"backend": "dask"}, "backend"),  # a Dask cluster is the study's `scheduler`, not a backend
    ({"backend": "threads"}, "backend"),
    ({"progress": "yes"}, "progress"),
    ({"wait": 1}, "wait"),
    ({"stream": 3}, "stream"),
])
def test_run_study_refuses_a_bad_argument_in_one_line_before_anything_is_written(tmp_path, kwargs, key):
    path = write_study(tmp_path, name="arguments")
    spec = load_spec(path)
    with pytest.raises(SpecError) as refused:
        run_study(spec, **kwargs)
    assert refused.value.key == key and str(path) in str(refused.value) and "\n" not in str(refused.value)
    assert not list(tmp_path.glob("*.db")), "a bad argument wrote a storage"


def test_run_study_takes_a_spec_not_a_path(tmp_path):
    with pytest.raises(SpecError, match="must be a StudySpec"):
        run_study(str(write_study(tmp_path, name="path")))


@pytest.mark.slow
def test_a_stream_that_is_no_terminal_gets_a_progress_line_now_and_then(tmp_path, monkeypatch):
    """A pipe or a CI log gets plain progress lines (configurations stored, fits, pace, time left);
    progress=False silences them, as --no-progress does."""
    import io

    from search.run import state

    monkeypatch.setattr(state, "PLAIN_EVERY_S", 0.5)
    spec = load_spec(write_study(tmp_path, name="lines", seeds=3, epochs=300)).with_overrides(n_jobs=1)
    out = io.StringIO()
    report = run_study(spec, stream=out)
    lines = [line for line in out.getvalue().splitlines() if line.startswith("lines: ")]
    assert lines, out.getvalue()
    assert all(" configurations stored; " in line and f" of {report.fits:,} fits" in line for line in lines)
    assert any("fits/s, about " in line and " left" in line for line in lines)
    assert "\r" not in out.getvalue()  # no bar redrawn in a log

    quiet, folder = io.StringIO(), tmp_path / "quiet"
    folder.mkdir()
    run_study(load_spec(write_study(folder, name="quiet", seeds=3, epochs=300)).with_overrides(n_jobs=1),
              stream=quiet, progress=False)
    assert quiet.getvalue() == ""


def test_a_progress_line_says_what_is_done_and_left():
    """The pace counts from the first fits back (compiling excluded); the clock is the line's own."""
    import io

    from search.run.state import PlainProgress

    out = io.StringIO()
    bar = PlainProgress("study", out, every=0)
    bar.configurations = lambda: 2
    bar.total = 100
    clock = iter([10.0, 20.0])  # the first fits came back at 10 s; the line at 20 s
    bar._clock, bar._started, bar._said = clock.__next__, 0.0, 0.0
    bar.update(10)
    bar.update(40)
    bar.set_postfix_str("l1(0.0001) pre: 0.757")
    bar.refresh()
    assert out.getvalue() == ("study: 2 configurations stored; 50 of 100 fits (50%), 4.0 fits/s, about 12 s left, "
                              "20 s in; l1(0.0001) pre: 0.757\n")
