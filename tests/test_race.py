"""Races: replicates in looks until each configuration's verdict is known, errors held over looks and configurations."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import sys
import time

import numpy as np
import optuna
import pandas as pd
import pytest
from conftest import RUN_COLUMNS, seed_result, trials_so_far, write_study

from search import export_frame, load_spec, run_study
from search.results.race import race_decisions, sequential_levels
from search.results.records import complete_trials, merged_trial, trial_record
from search.results.report import write_report
from search.store import schema
from search.store.reading import load_study
from search.study.spec import RaceSpec

RACE = "[race]\nmin_replicates = 30\n"  # a verdict needs 30 replicates


@pytest.mark.parametrize("first, last, every, looks", [
    (5, 100, None, (5, 10, 20, 40, 80, 100)),
    (5, 20, None, (5, 10, 20)),
    (5, 60, 10, (5, 15, 25, 35, 45, 55, 60)),
    (10, 12, None, (10, 12)),
])
def test_looks_double_or_step_up_to_the_last(first, last, every, looks):
    assert RaceSpec(first, last, every).looks(100) == looks


def test_sequential_levels_are_obrien_flemings():
    """Two looks at half and all the information, overall 0.05: the published nominal levels
    (Lan-DeMets O'Brien-Fleming: z = 2.54 and 1.66)."""
    early, last = sequential_levels((0.5, 1.0), 0.05)
    assert early == pytest.approx(0.0056, abs=2e-4) and last == pytest.approx(0.0482, abs=3e-4)
    levels = sequential_levels((0.05, 0.1, 0.2, 0.4, 0.8, 1.0), 0.05 / 36)
    assert levels[0] == 0.0 and list(levels[1:]) == sorted(levels[1:])  # nothing spent at 5%, more later
    assert 0.9 * 0.05 / 36 < levels[-1] < 0.05 / 36  # the last look keeps most of a single test's level


def test_sequential_levels_hold_the_error_over_looks():
    """A standard normal path looked at five times rejects with probability ``level``, not more."""
    fractions = (0.1, 0.2, 0.4, 0.8, 1.0)
    levels = sequential_levels(fractions, 0.05)
    from scipy import stats

    rng = np.random.default_rng(3)
    steps = rng.standard_normal((200_000, len(fractions))) * np.sqrt(np.diff((0.0, *fractions)))
    z = np.cumsum(steps, axis=1) / np.sqrt(fractions)
    crossed = (z >= stats.norm.isf(np.maximum(levels, 1e-300))).any(axis=1)
    assert crossed.mean() == pytest.approx(0.05, abs=0.002)


@pytest.mark.parametrize("delta", [0.01, -0.01, 0.0])
def test_a_race_holds_the_chance_of_any_wrong_verdict_at_alpha(delta):
    """Monte Carlo at the worst cases, the rope's edges: races of four configurations of the same
    true Δ over looks at 10, 20, 40 and 60 replicates (verdicts from 30 on); a wrong verdict is one
    whose region does not hold Δ, at whatever look it came. Rows are independent, so every race's
    configurations still racing are decided in one call per look."""
    rng = np.random.default_rng(5)
    rope, looks, m, races = 0.01, (10, 20, 40, 60), 4, 600
    truth = "equivalent" if abs(delta) <= rope else ("better" if delta > 0 else "worse")
    g = delta + 0.004 * rng.standard_normal((races, m, looks[-1]))
    racing = [(r, j) for r in range(races) for j in range(m)]
    bad = np.zeros(races, dtype=bool)
    for k, n in enumerate(looks):
        rows = race_decisions([g[r, j, :n] for r, j in racing], rope, k, looks, m, futility=None)
        for (r, _), row in zip(racing, rows):
            bad[r] |= row["verdict"] not in ("undecided", truth)
        racing = [rj for rj, row in zip(racing, rows) if not row["stopped"]]
    assert bad.mean() <= 0.05 + 2 * np.sqrt(0.05 * 0.95 / races)


def sample(mean: float, sd: float, n: int, seed: int = 0) -> np.ndarray:
    """``n`` differences with exactly this mean and sample standard deviation."""
    z = np.random.default_rng(seed).normal(size=n)
    return mean + sd * (z - z.mean()) / z.std(ddof=1)


def test_futility_stops_as_undecided_never_with_a_verdict():
    """At 40 of 100 replicates, a mean of 0.01 with an sd of 0.1 could not be shown beyond the rope, nor
    within it, by the 100th even 1.25 standard errors luckier: it stops, undecided."""
    looks = (5, 10, 20, 40, 80, 100)
    noisy, clear = sample(0.01, 0.1, 40), sample(-0.3, 0.01, 40)
    noisy_row, clear_row = race_decisions([noisy, clear], 0.01, 3, looks, m=2)
    assert (noisy_row["verdict"], noisy_row["stopped"], noisy_row["reason"]) == ("undecided", True, "futile")
    assert (clear_row["verdict"], clear_row["stopped"], clear_row["reason"]) == ("worse", True, "worse")
    (kept,) = race_decisions([noisy], 0.01, 3, looks, m=2, futility=None)
    assert (kept["verdict"], kept["stopped"], kept["reason"]) == ("undecided", False, "racing")
    (early,) = race_decisions([noisy[:10]], 0.01, 1, looks, m=2)  # ten replicates: a large effect still possible
    assert (early["verdict"], early["stopped"]) == ("undecided", False)


def test_a_configurations_blocks_join_into_the_record_of_all_its_replicates():
    """Blocks of replicates stored apart give the numbers of one record of them all."""
    results = [seed_result(s, [1.0 - 0.1 * s, 0.5 - 0.01 * s], test_accuracy=0.5 + 0.01 * s) for s in range(7)]
    whole = trial_record(results, 2, 1, rows=(30, 70))

    def trial(record, number, block):
        return optuna.trial.create_trial(
            params={"norm": "l1", "strength": 0.1, "placement": "pre"},
            distributions={"norm": optuna.distributions.CategoricalDistribution(["none", "l1"]),
                           "strength": optuna.distributions.CategoricalDistribution([0.1]),
                           "placement": optuna.distributions.CategoricalDistribution(["pre", "post"])},
            value=record.value, user_attrs={**record.user_attrs, schema.RACE_BLOCK_ATTR: block},
            system_attrs=record.system_attrs, intermediate_values=record.intermediate_values)

    blocks = [trial(trial_record(results[:3], 2, 1, rows=(30, 70)), 0, 0),
              trial(trial_record(results[3:], 2, 1, rows=(30, 70)), 1, 1)]
    joined = merged_trial(blocks)
    for key, value in whole.user_attrs.items():
        got = joined.user_attrs[key]
        assert got == pytest.approx(value) if isinstance(value, float) else got == value, key
    assert joined.value == pytest.approx(whole.value)
    curves = joined.system_attrs[schema.CURVES_ATTR]
    for key, value in whole.system_attrs[schema.CURVES_ATTR].items():
        assert curves[key] == pytest.approx(value, nan_ok=True), key
    assert [t.user_attrs[schema.SEEDS_ATTR] for t in complete_trials(blocks[::-1])] == [list(range(7))]
    assert complete_trials(blocks[1:]) == []  # a block without the first is no record yet


def race_study(tmp_path, name="race", seeds=60, extra=""):
    """A small race whose replicates draw their data: L1 and L2 at 1e-3 (harmless) and 10 (collapsing)."""
    path = write_study(tmp_path, name=name, seeds=seeds, epochs=30, extra=extra + RACE)
    path.write_text(path.read_text().replace("strength = [1e-3, 1e-1]", "strength = [1e-3, 10.0]")
                    .replace("random_state = 3", 'resample = "draw"'))
    return path


def verdicts_of(spec) -> dict[str, tuple]:
    from search.results.stats import baseline_comparison
    from search.study.space import iter_param_names

    study = load_study(spec)
    frame = baseline_comparison(study.get_trials(), list(iter_param_names(spec.space)), spec.objective, spec.rope,
                                race=study.user_attrs[schema.RACE_ATTR])
    return {r.configuration: (r.verdict, r.race_replicates, r.race_reason) for r in frame.itertuples()}


def test_notes_are_written_where_they_changed_and_a_shorter_one_leaves_nothing_of_the_longer():
    from optuna_dashboard._note import get_note_from_system_attrs

    from search.store.dashboard import save_notes

    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    trial = study.ask()
    study.tell(trial, 1.0)
    sid, tid = study._study_id, trial._trial_id
    assert save_notes(storage, sid, "x" * 5000, {tid: "y" * 4100}) == 2  # notes of several chunks
    assert save_notes(storage, sid, "x" * 5000, {tid: "y" * 4100}) == 0  # unchanged: nothing written
    assert save_notes(storage, sid, "short", {tid: "y" * 4100}) == 1
    attrs = storage.get_study_system_attrs(sid)
    assert get_note_from_system_attrs(attrs, None) == {"version": 2, "body": "short"}
    assert get_note_from_system_attrs(attrs, tid)["body"] == "y" * 4100


def dashboard_json(spec, path: str) -> dict:
    """What optuna-dashboard's web API answers at ``path`` for the study's storage (its app, called in-process)."""
    import json
    from wsgiref.util import setup_testing_defaults

    from optuna_dashboard import wsgi

    from search.store.storage import open_storage

    environ = {"PATH_INFO": path}
    setup_testing_defaults(environ)
    statuses = []
    body = b"".join(wsgi(open_storage(spec.storage, create=False))(environ, lambda s, h, *exc: statuses.append(s)))
    assert statuses == ["200 OK"], body
    return json.loads(body)


@pytest.mark.slow
def test_a_race_stops_each_configuration_at_its_verdict_and_resumes(tmp_path):
    spec = load_spec(race_study(tmp_path)).with_overrides(n_jobs=1)
    report = run_study(spec, progress=False)
    study = load_study(spec)
    looks = study.user_attrs[schema.RACE_ATTR]
    assert [look["replicates"] for look in looks] == [30, 60][:len(looks)]
    comparison = report.comparison.set_index("configuration")
    assert set(comparison["race_reason"]) <= {"better", "worse", "equivalent", "futile", "last look"}
    # Every configuration has the replicates of the look where it stopped, in blocks stored once each.
    summary = report.summary.set_index("configuration")
    for label, row in comparison.iterrows():
        assert summary.loc[label, "n_seeds"] == row["race_replicates"]
    assert summary.loc["none", "n_seeds"] == max(comparison["race_replicates"])  # the baseline ran to the end
    blocks = collections.Counter((t.params.get("strength"), t.params.get("placement"), t.params["norm"],
                                  t.user_attrs[schema.RACE_BLOCK_ATTR])
                                 for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE)
    assert set(blocks.values()) == {1}
    # The collapsed configurations (strength 10) are worse, most at the first look (one whose collapses vary
    # is skewed there, and Cantelli's bound waits for the second), with fewer fits than 60 each.
    first = verdicts_of(spec)
    collapsed = [v for k, v in first.items() if "(10)" in k]
    assert all(v[0] == v[2] == "worse" for v in collapsed) and sum(v[1] == 30 for v in collapsed) >= 2
    assert report.fits < (len(comparison) + 1) * 60
    again_looks = len(looks)
    # optuna-dashboard shows where each configuration stopped: the study's note and its blocks' notes.
    detail = dashboard_json(spec, f"/api/studies/{study._study_id}")
    note = detail["note"]["body"]
    assert note.startswith("# race\n\nThe race is over after look")
    for label, (verdict, replicates, reason) in first.items():
        row = next(line for line in note.splitlines() if line.startswith(f"| {label} |"))
        assert f"| {replicates} | **{verdict}**" in row
    for t in detail["trials"]:  # every block, the baseline's too, says what its configuration came to
        label = {a["key"]: a["value"] for a in t["user_attrs"]}[schema.LABEL_ATTR]
        verdict, replicates, _ = first.get(label, ("the baseline", summary.loc["none", "n_seeds"], ""))
        assert t["note"]["body"].startswith(f"**{label}**: ")
        assert verdict in t["note"]["body"] and f"Its {replicates} replicates are in t" in t["note"]["body"]
    # The report's † marks the race's better and worse verdicts, not p-values of all the replicates
    # (they take no account of the looks), and every legend says so.
    out = write_report(spec, tmp_path / "report", attach=False).folder
    md = (out / "summary.md").read_text()
    for label, (verdict, _, _) in first.items():
        row = next(line for line in md.splitlines() if line.startswith("| ") and f"| {label}" in line)
        assert ("†" in row) == (verdict in ("better", "worse")), row
    assert "† a verdict of the race, better or worse" in md
    tex = (out / "summary.tex").read_text()
    assert "a verdict of the race, better or worse" in tex and "not adjusted for the race's looks" in tex
    assert "Holm's correction" not in md + tex
    again = run_study(spec, progress=False)  # the race is over: nothing to do, the same verdicts, no new look
    assert again.configurations_run == 0 and again.fits == 0
    assert verdicts_of(spec) == first
    assert len(load_study(spec).user_attrs[schema.RACE_ATTR]) == again_looks


@pytest.mark.slow
def test_two_runners_share_a_race_and_a_killed_one_is_resumed(tmp_path):
    """Two runners race one study: each look is taken once, every block stored once, and the verdicts
    are one runner's. A runner killed mid-race leaves a study the same command finishes."""
    (tmp_path / "single").mkdir()
    single = load_spec(race_study(tmp_path / "single"))
    run_study(single.with_overrides(n_jobs=1), progress=False)
    expected = verdicts_of(single)
    expected_seeds = export_frame(single, per_seed=True).drop(columns=RUN_COLUMNS)

    path = race_study(tmp_path, name="shared", extra="heartbeat_grace = 2\n")
    spec = load_spec(path)
    command = [sys.executable, "-m", "search", "run", str(path), "--no-progress", "--n-jobs", "1"]
    killed = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    deadline = time.monotonic() + 300
    while not trials_so_far("shared", spec.storage, (optuna.trial.TrialState.COMPLETE,)):
        assert time.monotonic() < deadline and killed.poll() is None, killed.communicate()[1]
        time.sleep(0.2)
    os.killpg(killed.pid, signal.SIGKILL)
    killed.communicate()
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        assert "Traceback" not in err
    assert verdicts_of(spec) == expected
    study = load_study(spec)
    assert len(study.user_attrs[schema.RACE_ATTR]) == len(load_study(single).user_attrs[schema.RACE_ATTR])
    complete = [t for t in study.get_trials() if t.state == optuna.trial.TrialState.COMPLETE]
    keys = collections.Counter(t.user_attrs[schema.KEY_ATTR] for t in complete)
    assert set(keys.values()) == {1}  # every block of every configuration stored once
    mine = export_frame(spec, per_seed=True).drop(columns=RUN_COLUMNS)
    keys = ["param_norm", "param_strength", "param_placement", "seed"]
    pd.testing.assert_frame_equal(mine.sort_values(keys).reset_index(drop=True),
                                  expected_seeds.sort_values(keys).reset_index(drop=True), check_exact=True)
