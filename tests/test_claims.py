"""Many runners, one study: real `actreg run` processes on real SQLite and PostgreSQL storages.

Each test checks the invariants of the shared queue: every configuration has exactly one
COMPLETE trial, nothing is left RUNNING or WAITING, and the numbers are those of a single
runner.
"""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import RUN_COLUMNS, actreg, trials_so_far, wait_until_training, worker_pids, write_study

from search import export_frame, load_spec, run_study
from search.store.trials import trial_key
from search.study.space import grid

pytestmark = pytest.mark.slow  # real processes, databases or clusters

KEYS = ["param_norm", "param_strength", "param_placement", "seed"]


def popen_run(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search", "run", str(path), "--no-progress", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def check_queue_drained(spec) -> list[optuna.trial.FrozenTrial]:
    """Exactly one COMPLETE trial per configuration; nothing RUNNING or WAITING. Returns the trials."""
    study = optuna.load_study(study_name=spec.name, storage=spec.storage)
    trials = study.get_trials()
    S = optuna.trial.TrialState
    complete = collections.Counter(trial_key(t) for t in trials if t.state == S.COMPLETE)
    assert sorted(complete.values()) == [1] * len(grid(spec.space)), complete
    assert not [t.number for t in trials if t.state in (S.RUNNING, S.WAITING)]
    for t in trials:
        assert t.state != S.COMPLETE or (t.datetime_complete - t.datetime_start).total_seconds() > 0
    return trials


def per_seed(spec) -> pd.DataFrame:
    frame = export_frame(spec, per_seed=True).drop(columns=RUN_COLUMNS)
    return frame.sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def single_runner(tmp_path_factory):
    """The reference numbers: the small study run by one runner in this process."""
    folder = tmp_path_factory.mktemp("single")
    path = write_study(folder, name="shared", seeds=3, epochs=6)
    spec = load_spec(path).with_overrides(n_jobs=1)
    run_study(spec, progress=False)
    return per_seed(spec)


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_three_runners_split_one_study(where, tmp_path, single_runner, request):
    path = write_study(tmp_path, name="shared", seeds=3, epochs=6)
    storage = request.getfixturevalue("fresh_postgres") if where == "postgres" else None
    args = ("--n-jobs", "1") + (("--storage", storage) if storage else ())
    procs = [popen_run(path, *args) for _ in range(3)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert "Traceback" not in err
    spec = load_spec(path).with_overrides(storage=storage)
    trials = check_queue_drained(spec)
    # The work was shared: every runner stored some, and together exactly the grid.
    runs = [int(out.strip().splitlines()[-1].split()[0]) for out, _ in outs]
    assert sum(runs) == len(grid(spec.space)), runs
    assert len({t.user_attrs.get("runner") for t in trials if t.state == optuna.trial.TrialState.COMPLETE}) >= 2
    pd.testing.assert_frame_equal(per_seed(spec), single_runner, check_exact=True)


def test_three_runners_share_the_n_trials_of_a_tpe_study(tmp_path):
    path = write_study(tmp_path, name="tpe", seeds=2, epochs=4, extra='sampler = "tpe"\nn_trials = 7')
    path.write_text(path.read_text().replace("strength = [1e-3, 1e-1]",
                                             "strength = { low = 1e-4, high = 1e-1, log = true }"))
    procs = [popen_run(path, "--n-jobs", "1") for _ in range(3)]
    for p in procs:
        _out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
    trials = optuna.load_study(study_name="tpe", storage=load_spec(path).storage).get_trials()
    S = optuna.trial.TrialState
    counted = [t for t in trials if t.state == S.COMPLETE]
    assert len(counted) == 7  # n_trials across runners, not per runner
    assert all(t.state in (S.COMPLETE, S.PRUNED) for t in trials)
    assert all("superseded_by" in t.user_attrs for t in trials if t.state == S.PRUNED)


def test_kill_9_of_runners_at_random_moments_then_one_run_completes(tmp_path):
    path = write_study(tmp_path, name="killed", seeds=2, epochs=60, extra="heartbeat_grace = 2")
    spec = load_spec(path)
    rng = random.Random(7)
    for _ in range(6):
        proc = popen_run(path, "--n-jobs", "2")
        time.sleep(rng.uniform(2.0, 12.0))  # from start-up to mid-fit or mid-store
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # the runner and its workers
        proc.communicate()
    done = actreg("run", str(path), "--n-jobs", "2", "--no-progress")
    assert done.returncode == 0, done.stderr
    check_queue_drained(spec)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
def test_a_runner_killed_alone_takes_its_workers_and_their_tracker_with_it(tmp_path):
    """kill -9 of the runner alone (not its process group): its loky workers (780 MB each) and their
    resource tracker end within seconds, not when a later run reaps them."""
    path = write_study(tmp_path, name="orphans", seeds=2, epochs=20000)  # the workers are mid-fit for a minute
    spec = load_spec(path)
    proc = popen_run(path, "--n-jobs", "2")
    try:
        deadline = time.monotonic() + 300
        while len(worker_pids(proc.pid)) < 2 or not (tmp_path / "orphans.db").exists() or not trials_so_far(
                "orphans", spec.storage, (optuna.trial.TrialState.RUNNING,)):
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[1]
            time.sleep(0.2)
        # Into the tasks: a busy worker reads no queue that could tell it its runner died.
        wait_until_training(worker_pids(proc.pid), deadline)
        children = [int(p) for p in Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()]
        assert len(children) >= 3  # two workers and the resource tracker
        tracker = [p for p in children if b"resource_tracker" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert tracker and b"-Wignore:resource_tracker:UserWarning" in Path(f"/proc/{tracker[0]}/cmdline").read_bytes()
        os.kill(proc.pid, signal.SIGKILL)  # the runner alone
        proc.wait(timeout=10)  # not communicate(): the workers hold the runner's pipes open while they live
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [pid for pid in children if _alive(pid)]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        for pid in worker_pids(1) + [p for p in locals().get("children", []) if _alive(p)]:
            os.kill(pid, signal.SIGKILL)  # without the watch they would outlive the test
        proc.communicate()


def test_a_worker_killed_mid_fit_costs_a_retry_not_the_run(tmp_path):
    path = write_study(tmp_path, name="worker", seeds=2, epochs=300)
    spec = load_spec(path)
    proc = popen_run(path, "--n-jobs", "2")
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            done = trials_so_far("worker", spec.storage, (optuna.trial.TrialState.COMPLETE,)) \
                if (tmp_path / "worker.db").exists() else []
            if done and worker_pids(proc.pid):
                break
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.2)
        (victim, *_) = worker_pids(proc.pid)
        os.kill(victim, signal.SIGKILL)  # what the out-of-memory killer does
        _out, err = proc.communicate(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err
    assert "a worker process died" in err and "retrying" in err
    assert "Traceback" not in err
    check_queue_drained(spec)


def test_sigterm_releases_the_claims_and_prints_one_line(tmp_path):
    # Seconds per seed; one seed per chunk, so that the configuration is still held when a SIGTERM whose
    # exception was swallowed (see search/interrupt.py) is noticed after the first chunk.
    path = write_study(tmp_path, name="term", seeds=3, epochs=4000, extra="chunk_size = 1")
    spec = load_spec(path)
    proc = popen_run(path, "--n-jobs", "1")
    deadline = time.monotonic() + 300
    running = []
    while not running and time.monotonic() < deadline:
        time.sleep(0.3)
        assert proc.poll() is None, proc.communicate()[1]
        running = trials_so_far("term", spec.storage, (optuna.trial.TrialState.RUNNING,))
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143
    assert err.strip().splitlines()[-1] == "interrupted; run the same command again to resume"
    assert "Traceback" not in err
    trials = optuna.load_study(study_name="term", storage=spec.storage).get_trials()
    S = optuna.trial.TrialState
    released = [t for t in trials if t.state == S.FAIL]
    assert released and not [t for t in trials if t.state == S.RUNNING]
    for t in released:
        assert t.user_attrs["fail_reason"].startswith("interrupted")
        # Queued again at once: the retry waits with the same parameters.
        assert len([w for w in trials if w.state == S.WAITING and w.params == t.params]) == 1


@pytest.mark.parametrize("n_jobs, to", [("2", "runner"), ("1", "group")])
def test_ctrl_c_lets_go_at_once_whoever_gets_the_signal(tmp_path, n_jobs, to):
    """SIGINT mid-fit: the line, the claims released and the exit come at once, not after the chunks
    still running (minutes here); no worker process is left behind. ``runner``: ``kill -INT PID``;
    ``group``: Ctrl-C in a terminal, which signals the workers too."""
    path = write_study(tmp_path, name="ctrlc", seeds=4, epochs=400_000)
    spec = load_spec(path)
    proc = popen_run(path, "--n-jobs", n_jobs)
    try:
        deadline = time.monotonic() + 300
        while not trials_so_far("ctrlc", spec.storage, (optuna.trial.TrialState.RUNNING,)) or \
                (n_jobs != "1" and not worker_pids(proc.pid)):
            assert time.monotonic() < deadline and proc.poll() is None, proc.communicate()[1]
            time.sleep(0.3)
        workers = worker_pids(proc.pid)
        if workers:
            wait_until_training(workers, deadline)  # the workers' tasks have begun
        else:
            time.sleep(3)  # the runner fits itself, and imported TensorFlow to check the study: no sign to wait for
        sent = time.monotonic()
        if to == "group":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=120)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted; run the same command again to resume"
    assert took < 15, f"exited {took:.1f} s after the signal"  # a chunk here fits for minutes
    time.sleep(1)
    assert not [w for w in workers if Path(f"/proc/{w}").exists()], "a worker outlived the runner"
    S = optuna.trial.TrialState
    trials = optuna.load_study(study_name="ctrlc", storage=spec.storage).get_trials()
    assert not [t for t in trials if t.state == S.RUNNING]
    assert {t.user_attrs["fail_reason"] for t in trials if t.state == S.FAIL} == \
        {"interrupted: the runner was stopped (Ctrl-C or SIGTERM)"}


def queue_on(tmp_path: Path, grace: int = 2):
    from search.store.claims import StudyQueue
    from search.store.storage import open_storage

    storage = open_storage(f"sqlite:///{tmp_path}/q.db", create=True, grace=grace)
    study = optuna.create_study(study_name="q", storage=storage, load_if_exists=True)
    return StudyQueue(study, storage, grace)


def dists():
    C = optuna.distributions.CategoricalDistribution
    return lambda c: {"norm": C(["none", "l1"]), **({} if c.is_baseline else
                                                     {"strength": C([0.1]), "placement": C(["pre"])})}


def test_a_configuration_queued_twice_is_fitted_once(tmp_path):
    from search.store.schema import SUPERSEDED_ATTR
    from search.study.space import Configuration, config_key

    a, b = queue_on(tmp_path), queue_on(tmp_path)
    config = Configuration("l1", 0.1, "pre")
    assert a.enqueue_missing([config], dists()) == 1
    # A second runner that read the trials before the first one queued them queues again.
    b.study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING, params=config.params,
                                                distributions=dists()(config)))
    first, second = a.claim_waiting(), b.claim_waiting()
    assert (first.number, second.number) == (0, 1)
    assert a.twin_of(first, config_key(config)) is None  # the lowest number owns the configuration
    twin = b.twin_of(second, config_key(config))
    assert twin.number == 0
    b.supersede(second, twin.number)
    trials = a.trials()
    assert [t.state for t in trials] == [optuna.trial.TrialState.RUNNING, optuna.trial.TrialState.PRUNED]
    assert trials[1].user_attrs[SUPERSEDED_ATTR] == 0
    assert a.claim_waiting() is None and b.claim_waiting() is None


def test_a_live_claim_is_kept_and_a_silent_one_is_taken_over(tmp_path):
    """The heartbeat path, as between machines (the process check cannot see the other runner)."""
    from search.store.heartbeat import Heartbeat
    from search.store.schema import PROCESS_ATTR
    from search.study.space import Configuration

    live, silent, other = (queue_on(tmp_path, grace=4) for _ in range(3))  # beats every second
    live.enqueue_missing([Configuration("none"), Configuration("l1", 0.1, "pre")], dists())
    beating = Heartbeat(live.storage, 4)
    beating.start()
    held = live.claim_waiting()
    beating.hold(held.trial_id)
    lost = silent.claim_waiting()  # its runner "vanishes": no more beats
    for claim in (held, lost):
        other.storage.set_trial_user_attr(claim.trial_id, PROCESS_ATTR, "another-machine/1/1/1")
    deadline = time.monotonic() + 60
    while other.reap() == 0:  # until the silent claim's heartbeat is older than the grace period of 4 s
        assert time.monotonic() < deadline, "a claim without heartbeats was never reaped"
        assert live.storage.get_trial(held.trial_id).state == optuna.trial.TrialState.RUNNING
        time.sleep(0.2)
    states = {t.number: t.state for t in other.trials()}
    assert states[held.number] == optuna.trial.TrialState.RUNNING  # a live runner's claim is never failed
    assert states[lost.number] == optuna.trial.TrialState.FAIL
    retry = other.claim_waiting()
    assert retry is not None and retry.trial.params == lost.trial.params
    beating.close()


class _FailingBeats:
    """A storage whose heartbeats fail while ``failing`` is set (the fault injected: a storage that is away)."""

    def __init__(self, storage) -> None:
        self.storage, self.failing, self.beats = storage, True, 0

    def get_heartbeat_interval(self):
        return 1

    def record_heartbeat(self, trial_id):
        if self.failing:
            raise ConnectionError("the storage is away\nsecond line")
        self.beats += 1
        return self.storage.record_heartbeat(trial_id)


def test_a_heartbeat_that_cannot_beat_says_so_once_and_gives_up_its_claims_after_the_grace(tmp_path):
    from search.store.heartbeat import Heartbeat
    from search.study.space import Configuration

    queue = queue_on(tmp_path, grace=2)
    queue.enqueue_missing([Configuration("none"), Configuration("l1", 0.1, "pre")], dists())
    storage, said = _FailingBeats(queue.storage), []
    beating = Heartbeat(storage, 2, say=said.append)
    first, second = queue.claim_waiting(), queue.claim_waiting()
    beating.hold(first.trial_id)
    beating.beat()
    assert beating.errors == 1 and not beating.given_up(first.trial_id)  # within the grace: still held
    assert said == [("heartbeat: cannot beat (ConnectionError: the storage is away); a claim not beaten for 2 s "
                     "is given up, since another runner may take it over")]
    time.sleep(2.1)  # the fault lasts past the grace period: the span the heartbeat measures, not an order
    beating.hold(second.trial_id)  # claimed just now: within its grace
    beating.beat()
    assert beating.given_up(first.trial_id) and not beating.given_up(second.trial_id)
    assert beating.held() == [second.trial_id]  # the given-up claim is no longer beaten
    assert len(said) == 1  # said once for the whole outage
    storage.failing = False
    beating.beat()
    assert storage.beats == 1 and said[-1] == "heartbeat: beating again, after 3 failed beats"
    beating.drop(first.trial_id)
    assert not beating.given_up(first.trial_id)
    beating.close()


def test_a_claim_given_up_by_its_heartbeat_is_queued_again_not_stored(tmp_path):
    """The writer finds a finished configuration whose claim went unbeaten past the grace period: another
    runner may be fitting it again, so its numbers are not stored; the trial is failed and queued again."""
    import io

    from tqdm.std import tqdm

    from search.run.state import RunState
    from search.run.storing import Storing
    from search.store.heartbeat import Heartbeat
    from search.study.space import Configuration

    queue = queue_on(tmp_path, grace=1)
    config = Configuration("l1", 0.1, "pre")
    queue.enqueue_missing([config], dists())
    storage = _FailingBeats(queue.storage)
    beating, said = Heartbeat(storage, 1), io.StringIO()
    claim = queue.claim_waiting()
    beating.hold(claim.trial_id)
    time.sleep(1.1)  # unbeaten past the grace period of 1 s
    beating.beat()
    assert beating.given_up(claim.trial_id)
    state = RunState(tqdm(total=0, file=said, disable=True), said)
    storing = Storing(queue, state)
    storing.heartbeat = beating  # the fault injected: a heartbeat whose storage was away past the grace
    storing.store(claim, config, record=None)
    trials = queue.trials()
    S = optuna.trial.TrialState
    assert [t.state for t in trials] == [S.FAIL, S.WAITING] and trials[1].params == config.params
    assert trials[0].user_attrs["fail_reason"] == "interrupted: its runner could not beat its heartbeat for 1 s"
    assert "gave its claim up (no heartbeat for 1 s); queued again" in said.getvalue()
    assert state.completed == 0 and beating.held() == []
