"""Faults outside the process, with the real parts: a PostgreSQL server that restarts or goes
away under a runner, a disk that fills, a read-only folder, a writer that holds SQLite's lock,
two files that race to create one study. Each outcome is compared with a clean single runner.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import optuna
import pandas as pd
import pytest
from conftest import RUN_COLUMNS, actreg, free_port, trials_so_far, write_study

from search import export_frame, load_spec, run_study
from search.store.claims import StudyQueue
from search.study.validation import SpecError

pytestmark = pytest.mark.slow  # real processes, databases and mounts

KEYS = ["param_norm", "param_strength", "param_placement", "seed"]
COMPLETE = (optuna.trial.TrialState.COMPLETE,)


def popen_run(path: Path, *args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "search", "run", str(path), "--no-progress", "--n-jobs", "1",
                             *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def per_seed(spec) -> pd.DataFrame:
    return export_frame(spec, per_seed=True).drop(columns=RUN_COLUMNS).sort_values(KEYS).reset_index(drop=True)


def wait_for_complete(spec, storage: str, n: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while len(trials_so_far(spec.name, storage, COMPLETE)) < n:
        assert proc.poll() is None, proc.communicate()[1]
        assert time.monotonic() < deadline, f"fewer than {n} configurations stored in {timeout} s"
        time.sleep(0.2)


def drained(spec) -> list:
    """Exactly one COMPLETE trial per configuration, nothing RUNNING or WAITING."""
    from collections import Counter

    from search.store.trials import trial_key
    from search.study.space import grid

    trials = optuna.load_study(study_name=spec.name, storage=spec.storage).get_trials()
    S = optuna.trial.TrialState
    assert sorted(Counter(trial_key(t) for t in trials if t.state == S.COMPLETE).values()) == \
        [1] * len(grid(spec.space))
    assert not [t.number for t in trials if t.state in (S.RUNNING, S.WAITING)]
    return trials


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The numbers of the outage study, run by one runner in this process on SQLite."""
    path = write_study(tmp_path_factory.mktemp("reference"), name="outage", seeds=2, epochs=150)
    spec = load_spec(path).with_overrides(n_jobs=1)
    run_study(spec, progress=False)
    return per_seed(spec)


# ----------------------------------------------------------------------------- PostgreSQL


def test_a_runner_rides_through_a_server_restart_and_terminated_connections(tmp_path, private_postgres, reference):
    path = write_study(tmp_path, name="outage", seeds=2, epochs=150)
    spec = load_spec(path).with_overrides(storage=private_postgres.url)
    proc = popen_run(path, "--storage", private_postgres.url)
    wait_for_complete(spec, spec.storage, 1, proc)
    private_postgres.restart()
    wait_for_complete(spec, spec.storage, 3, proc)
    assert private_postgres.terminate_others() > 0
    _out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "unreachable" in err and "is back after" in err, err  # said, in one line each
    drained(spec)
    pd.testing.assert_frame_equal(per_seed(spec), reference)


def test_a_storage_away_past_the_patience_stops_the_run_with_one_line_and_a_rerun_resumes(
        tmp_path, private_postgres, reference):
    path = write_study(tmp_path, name="outage", seeds=2, epochs=150, extra="storage_patience = 4")
    spec = load_spec(path).with_overrides(storage=private_postgres.url)
    proc = popen_run(path, "--storage", private_postgres.url)
    wait_for_complete(spec, spec.storage, 1, proc)
    private_postgres.stop()
    began = time.monotonic()
    _out, err = proc.communicate(timeout=300)
    assert proc.returncode == 2, err
    assert time.monotonic() - began < 60  # the patience, a fit and the pauses; not the whole study
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: postgresql://postgres@127.0.0.1") and "unreachable for 4 s" in last, err
    assert last.endswith("run the same command again to resume")
    private_postgres.start()
    again = actreg("run", str(path), "--no-progress", "--n-jobs", "1", "--storage", private_postgres.url)
    assert again.returncode == 0, again.stderr
    drained(spec)
    pd.testing.assert_frame_equal(per_seed(spec), reference)


@pytest.mark.parametrize("where", ["sqlite", "postgres"])
def test_of_two_files_that_race_to_create_one_study_exactly_one_runs(where, tmp_path, request):
    """The fingerprint is the creator's: a runner that loses the creation waits for it and compares."""
    storage = request.getfixturevalue("fresh_postgres") if where == "postgres" else None
    for attempt in range(4):
        folders = [tmp_path / f"{attempt}-{epochs}" for epochs in (10, 20)]
        for folder in folders:
            folder.mkdir()
        specs = [load_spec(write_study(folder, name=f"race{attempt}", epochs=epochs))
                 for folder, epochs in zip(folders, (10, 20))]
        url = storage or f"sqlite:///{tmp_path}/race.db"
        specs = [s.with_overrides(storage=url) for s in specs]
        barrier, outcomes = threading.Barrier(2), [None, None]

        def open_(k: int, barrier=barrier, specs=specs, outcomes=outcomes) -> None:
            barrier.wait()
            try:
                queue, _ = StudyQueue.open(specs[k], {})
                queue.close()
                outcomes[k] = "ran"
            except SpecError as exc:
                outcomes[k] = str(exc)

        threads = [threading.Thread(target=open_, args=(k,)) for k in (0, 1)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=120)
        assert sorted(o == "ran" for o in outcomes) == [False, True], outcomes
        refused = next(o for o in outcomes if o != "ran")
        assert "was run with other settings (train.epochs" in refused


def test_every_runner_of_a_study_uses_its_first_runners_heartbeat_grace(tmp_path):
    """A runner with a 2 s grace would fail the live claims of one with 60 s, which beats every 12 s."""
    (tmp_path / "later").mkdir()
    first = load_spec(write_study(tmp_path, name="grace", extra="heartbeat_grace = 60"))
    later = load_spec(write_study(tmp_path / "later", name="grace", extra="heartbeat_grace = 2"))
    later = later.with_overrides(storage=first.storage)
    queue, created = StudyQueue.open(first, {})
    queue.close()
    assert created and queue.grace == 60 and not queue.notes
    queue, created = StudyQueue.open(later, {})
    queue.close()
    assert not created
    assert (queue.grace, queue.storage.grace_period, queue.storage.heartbeat_interval) == (60, 60, 12)
    assert queue.notes == [("heartbeat_grace: study 'grace' uses 60 s (its first runner's), not this file's 2 s, "
                            "so that no runner fails another's live claims")]


# ----------------------------------------------------------------------------- SQLite


def test_a_reader_is_not_blocked_by_a_writer_that_holds_the_lock(tmp_path):
    """A runner suspended mid-write holds SQLite's write lock: export reads past it, at once."""
    path = write_study(tmp_path, name="locked", seeds=2, epochs=2)
    spec = load_spec(path).with_overrides(n_jobs=1)
    run_study(spec, progress=False)
    expected = per_seed(spec)
    holder = sqlite3.connect(str(tmp_path / "locked.db"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # the write lock, as a stopped runner would keep it
    holder.execute("UPDATE studies SET study_name = study_name")
    try:
        began = time.monotonic()
        done = actreg("export", str(path), "--per-seed", "--out", str(tmp_path / "out.csv"), timeout=120)
        assert done.returncode == 0, done.stderr
        assert time.monotonic() - began < 30  # a process start, not SQLite's 60 s lock timeout
        got = pd.read_csv(tmp_path / "out.csv").drop(columns=RUN_COLUMNS).sort_values(KEYS).reset_index(drop=True)
        assert len(got) == len(expected)
    finally:
        holder.execute("ROLLBACK")
        holder.close()


def _mount_tmpfs(folder: Path, size: str) -> None:
    folder.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or done.returncode}); "
                    "the disk-full and read-only cases need one")


def _remount(folder: Path, options: str) -> None:
    subprocess.run(["mount", "-o", f"remount,{options}", str(folder)], check=True, capture_output=True)


@pytest.fixture
def small_disk(tmp_path):
    folder = tmp_path / "disk"
    _mount_tmpfs(folder, "400k")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_full_disk_is_one_line_and_the_study_resumes_once_there_is_room(tmp_path, small_disk):
    path = write_study(tmp_path, name="full", seeds=2, epochs=3)
    storage = f"sqlite:///{small_disk}/full.db"
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * 200_000)  # the study runs out of room after a few configurations
    done = actreg("run", str(path), "--no-progress", "--n-jobs", "1", "--storage", storage)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1] == (
        f"error: {storage}: the disk is full ({small_disk}/full.db); free space, then run the same command "
        "again to resume (what was stored is intact)")
    assert sqlite3.connect(small_disk / "full.db").execute("PRAGMA integrity_check").fetchone() == ("ok",)
    filler.unlink()
    _remount(small_disk, "size=50m")
    again = actreg("run", str(path), "--no-progress", "--n-jobs", "1", "--storage", storage)
    assert again.returncode == 0, again.stderr  # not refused as "truncated"
    spec = load_spec(path).with_overrides(storage=storage, n_jobs=1)
    drained(spec)
    reference = load_spec(path).with_overrides(n_jobs=1)
    run_study(reference, progress=False)
    pd.testing.assert_frame_equal(per_seed(spec), per_seed(reference))


def test_a_read_only_folder_is_read_by_export_report_and_refused_by_run_in_one_line(tmp_path):
    folder = tmp_path / "ro"
    _mount_tmpfs(folder, "20m")
    try:
        path = write_study(folder, name="ro", seeds=2, epochs=2)
        assert actreg("run", str(path), "--no-progress", "--n-jobs", "1").returncode == 0
        expected = sorted(os.listdir(folder))
        _remount(folder, "ro")
        out = tmp_path / "out"
        done = actreg("export", str(path), "--out", str(tmp_path / "s.csv"))
        assert done.returncode == 0, done.stderr
        done = actreg("report", str(path), "--no-attach", "--out", str(out))
        assert done.returncode == 0, done.stderr
        assert (out / "report.md").exists()
        # Without --no-attach: the files are written, and one line says that the attachment was skipped.
        done = actreg("report", str(path), "--out", str(tmp_path / "attached"))
        assert done.returncode == 0, done.stderr
        assert (tmp_path / "attached" / "report.md").exists() and not (tmp_path / "attached" / "artifacts").exists()
        assert done.stderr.strip() == (f"note: {path}: storage: the folder {folder} is read-only: the report is "
                                       "written but not attached to the study (its figures and note in "
                                       "optuna-dashboard); --no-attach says so at once")
        done = actreg("run", str(path), "--no-progress")
        assert done.returncode == 2 and "Traceback" not in done.stderr
        assert done.stderr.strip() == (f"error: sqlite:///{folder}/ro.db: the folder {folder} is read-only; "
                                       "a run writes the study and SQLite's log files beside it")
        port = free_port()
        dash = subprocess.Popen([sys.executable, "-m", "search", "dashboard", str(path), "--port", str(port)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=10) as r:
                        studies = json.load(r)["study_summaries"]
                    break
                except OSError:
                    assert dash.poll() is None, dash.stderr.read()
                    assert time.monotonic() < deadline, "the dashboard did not start"
                    time.sleep(0.3)
            assert [s["study_name"] for s in studies] == ["ro"]
        finally:
            dash.send_signal(signal.SIGTERM)
            dash.communicate(timeout=30)
        assert dash.returncode == 0
        assert sorted(os.listdir(folder)) == expected  # nothing made beside the study
    finally:
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)


def test_a_healthy_database_whose_pages_are_still_in_its_log_is_not_called_truncated(tmp_path):
    """After a checkpoint cut short (a full disk), the file's header counts pages that only the
    write-ahead log holds; SQLite reads them there, and so must the truncation check."""
    from search.store.storage import StorageError, _check_sqlite_file

    db = tmp_path / "wal.db"
    code = (f"import sqlite3, os; c = sqlite3.connect({str(db)!r}, isolation_level=None); "
            "c.execute('PRAGMA journal_mode=WAL'); c.execute('PRAGMA wal_autocheckpoint=0'); "
            "c.execute('CREATE TABLE t (x)'); c.executemany('INSERT INTO t VALUES (?)', [(b'x' * 500,)] * 200); "
            "os._exit(0)")  # the log stays, unfolded, as after a crash
    subprocess.run([sys.executable, "-c", code], check=True)
    header = bytearray(db.read_bytes())
    header[28:32] = (20).to_bytes(4, "big")  # the header of a checkpoint that wrote page 1, not the pages after it
    header[92:96] = header[24:28]
    db.write_bytes(bytes(header))
    _check_sqlite_file(f"sqlite:///{db}", str(db), create=False)  # no StorageError
    alone = tmp_path / "alone.db"  # the same file without its log: truncated indeed
    alone.write_bytes(db.read_bytes())
    with pytest.raises(StorageError, match="is truncated"):
        _check_sqlite_file(f"sqlite:///{alone}", str(alone), create=False)
    assert sqlite3.connect(db).execute("SELECT count(*) FROM t").fetchone() == (200,)  # SQLite reads it whole


# ----------------------------------------------------------------------------- readers describe what was stored


def test_export_and_report_describe_the_stored_study_and_refuse_a_file_that_no_longer_does(tmp_path):
    path = write_study(tmp_path, name="described", seeds=3, epochs=6)
    assert actreg("run", str(path), "--no-progress", "--n-jobs", "1", "--seeds", "2", "--epochs", "2").returncode == 0
    done = actreg("export", str(path), "--per-seed", "--out", str(tmp_path / "s.csv"))
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == [
        (f"note: {path}: seeds: study 'described' was run with 2 seeds (the file says otherwise); describing the "
         "stored study"),
        (f"note: {path}: train.epochs: study 'described' was run for 2 epochs (the file says otherwise); describing "
         "the stored study")]
    assert sorted(pd.read_csv(tmp_path / "s.csv")["seed"].unique()) == [0, 1]
    done = actreg("report", str(path), "--no-attach", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    report = (tmp_path / "r" / "report.md").read_text()
    assert "2 epochs" in report and "- Seeds (replicates): 2 (0..1)" in report
    path.write_text(path.read_text().replace('penalty = "mean"', 'penalty = "sum"'))
    for command in (["export", "--out", str(tmp_path / "t.csv")], ["report", "--no-attach", "--out", str(tmp_path)]):
        done = actreg(command[0], str(path), *command[1:])
        assert done.returncode == 2
        assert done.stderr == (f"error: {path}: penalty: differs from the stored study 'described' (penalty): the "
                               "file no longer describes it; restore the file, or give the study another name to run "
                               "it anew\n")
    assert not (tmp_path / "t.csv").exists()


def test_a_partial_study_says_so_in_the_export_the_report_and_the_tables(tmp_path):
    import re

    path = write_study(tmp_path, name="partial", seeds=2, epochs=150)
    spec = load_spec(path)
    proc = popen_run(path)
    wait_for_complete(spec, spec.storage, 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = actreg("export", str(path), "--out", str(tmp_path / "s.csv"))
    assert done.returncode == 0, done.stderr
    match = re.fullmatch(r"wrote (\d+) rows to \S+ \(a partial study: (\d+) of 9 configurations stored\), its setting "
                         r"\(.*\) to \S+\.study\.json\n", done.stdout)
    assert match and match.group(1) == match.group(2), done.stdout
    done = actreg("report", str(path), "--no-attach", "--out", str(tmp_path / "r"))
    assert done.returncode == 0, done.stderr
    stored = f"Partial study: {match.group(2)} of 9 configurations stored"
    for name in ("report.md", "summary.md", "summary.tex", "summary-narrow.tex"):
        assert stored in (tmp_path / "r" / name).read_text(), name


def test_the_write_ahead_log_stays_small_while_a_runner_writes(tmp_path):
    """SQLite's log folds into the file every 100 pages and is cut back after: by default it grew to
    4 MB for a 565 kB study and stayed so, which filled a 3 MB disk that the study would fit."""
    import optuna

    from search.store.storage import WAL_LIMIT_BYTES, open_storage

    db = tmp_path / "wal.db"
    storage = open_storage(f"sqlite:///{db}", create=True, access="run")
    study = optuna.create_study(storage=storage, study_name="wal")
    largest = 0
    for k in range(300):
        trial = study.ask()
        trial.set_user_attr("payload", "x" * 2000)
        study.tell(trial, float(k))
        wal = db.with_name("wal.db-wal")
        largest = max(largest, wal.stat().st_size if wal.exists() else 0)
    assert db.stat().st_size > 600_000  # a study larger than the log may grow to
    assert largest <= WAL_LIMIT_BYTES + 110 * 4096, largest
