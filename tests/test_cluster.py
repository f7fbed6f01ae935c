"""Studies on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on loopback.

The workers run in a folder of their own, without the study's files or its folder on their
path: whatever a fit needs (the user's CSV, a builder's module) must travel to them.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
from conftest import RUN_COLUMNS, actreg, free_port, trials_so_far, write_builder

try:
    from distributed import Client  # the dask extra: the README's test command installs it
except ImportError:
    if os.environ.get("CI") == "true":
        raise
    pytest.skip("the cluster tests need dask.distributed: pip install -e '.[test,dask]'", allow_module_level=True)

from search import export_frame, load_spec
from search.engine.cluster import (
    Shipment,
    ShippedFile,
    close,
    connect,
    run_shipped,
    shipment_for,
    version_mismatch,
    versions,
)
from search.engine.parallel import FitFailure, FitTask
from search.study.space import Configuration
from search.study.spec import DataSpec, ModelSpec, TrainSpec

pytestmark = pytest.mark.slow  # real processes, databases or clusters

DASK = str(Path(sys.executable).with_name("dask"))

STUDY = '''
name = "{name}"
seeds = 4
chunk_size = 2

[data]
source = "csv"
path = "points.csv"
target = "label"
test_size = 0.4

[model]
builder = "{builder}"

[train]
epochs = {epochs}
batch_size = 16
learning_rate = 0.01

[space]
norm = ["none", "l1", "l2"]
strength = [1e-3, 1e-1]
placement = ["pre", "post"]
'''


class Cluster:
    """A scheduler and workers started as real processes, each in its own session."""

    def __init__(self, folder: Path, n_workers: int = 2) -> None:
        self.folder = folder
        self.address = f"tcp://127.0.0.1:{free_port()}"
        # The workers' own temporary folder: where the files shipped to them land.
        (folder / "tmp").mkdir(parents=True, exist_ok=True)
        self.env = {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, "TMPDIR": str(folder / "tmp")}
        self.scheduler = self._start([DASK, "scheduler", "--host", "127.0.0.1", "--port",
                                      self.address.rsplit(":", 1)[1], "--no-dashboard"], "scheduler")
        self.workers = [self.start_worker(f"w{i}") for i in range(n_workers)]
        self.wait_for_workers(n_workers)

    def _start(self, argv: list[str], name: str) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        return subprocess.Popen(argv, cwd=self.folder, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)

    def start_worker(self, name: str) -> subprocess.Popen:
        # No nanny: killing the worker kills it for good, as a machine that goes away.
        return self._start([DASK, "worker", self.address, "--nthreads", "1", "--host", "127.0.0.1",
                            "--no-dashboard", "--no-nanny", "--name", name], name)

    def wait_for_workers(self, n: int, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        with Client(self.address, timeout=30, set_as_default=False) as client:
            while len(client.nthreads()) < n:
                assert time.monotonic() < deadline, (self.folder / "w0.log").read_text()[-2000:]
                time.sleep(0.3)

    def close(self) -> None:
        for proc in [*self.workers, self.scheduler]:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = Cluster(tmp_path_factory.mktemp("cluster"))
    try:
        yield c
    finally:
        c.close()


def write_csv_study(folder: Path, name: str, epochs: int = 5, builder: str = "my_nets:mlp") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    x = rng.normal(size=(50, 3))
    label = (x[:, 0] * x[:, 1] + 0.3 * x[:, 2] > 0).astype(int)
    lines = ["a,b,c,label"] + [f"{r[0]:.6f},{r[1]:.6f},{r[2]:.6f},{y}" for r, y in zip(x, label)]
    (folder / "points.csv").write_text("\n".join(lines) + "\n")
    write_builder(folder, hidden=12, output="sigmoid")
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(STUDY.format(name=name, builder=builder, epochs=epochs)))
    return path


def per_seed_csv(path: Path, storage: str) -> str:
    spec = load_spec(path).with_overrides(storage=storage)
    frame = export_frame(spec, per_seed=True).drop(columns=RUN_COLUMNS)
    return frame.sort_values(["configuration", "seed", "replicate"]).to_csv(index=False)


def test_a_study_with_a_users_csv_and_builder_gives_the_local_numbers_on_the_cluster(cluster, tmp_path):
    path = write_csv_study(tmp_path / "study", "csv-builder")
    local, remote = f"sqlite:///{tmp_path / 'local.db'}", f"sqlite:///{tmp_path / 'remote.db'}"
    proc = actreg("run", str(path), "--storage", local, "--n-jobs", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = actreg("run", str(path), "--storage", remote, "--scheduler", cluster.address, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "9 configurations run (0 diverged), 0 failed" in proc.stdout  # 1 + 2 x 2 x 2, 2 chunks each
    assert per_seed_csv(path, remote) == per_seed_csv(path, local)  # byte for byte, timings aside
    # The files travelled by content, each to a folder named by its SHA-256 in the workers' temporary folder.
    for name in ("points.csv", "my_nets.py"):
        digest = hashlib.sha256((path.parent / name).read_bytes()).hexdigest()
        copy = cluster.folder / "tmp" / "actreg-shipped" / digest / name
        assert copy.read_bytes() == (path.parent / name).read_bytes()


def test_a_worker_killed_mid_run_costs_a_retry_not_the_study(tmp_path, fresh_postgres):
    c = Cluster(tmp_path / "own-cluster")
    try:
        path = write_csv_study(tmp_path / "study", "survivor", epochs=150)
        proc = subprocess.Popen([sys.executable, "-m", "search", "run", str(path), "--storage", fresh_postgres,
                                 "--scheduler", c.address, "--no-progress"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        storage = fresh_postgres
        deadline = time.monotonic() + 300
        with Client(c.address, timeout=30, set_as_default=False) as client:
            victim = next(w for w, info in client.scheduler_info()["workers"].items() if info["name"] == "w0")
            while True:  # a configuration stored, and the victim fitting a chunk: kill it mid-fit
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no configuration was stored"
                trials = trials_so_far("survivor", storage)
                if any(t.state == optuna.trial.TrialState.COMPLETE for t in trials) and client.processing()[victim]:
                    break
                time.sleep(0.1)
        os.killpg(c.workers[0].pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        assert "9 configurations run (0 diverged), 0 failed" in out
        states = [t.state for t in optuna.load_study(study_name="survivor", storage=storage).get_trials()]
        assert states.count(optuna.trial.TrialState.COMPLETE) == 9 and len(states) == 9
    finally:
        c.close()


def test_a_scheduler_killed_mid_run_is_one_line_and_the_same_command_resumes(tmp_path, cluster):
    """The scheduler dies while chunks are out: no configuration fails for it, the claims are
    queued again with the reason, exit 2 with one line; on another cluster the same command
    finishes the study, each configuration stored once."""
    path = write_csv_study(tmp_path / "study", "orphan", epochs=150)
    storage = f"sqlite:///{tmp_path / 'orphan.db'}"
    S = optuna.trial.TrialState
    c = Cluster(tmp_path / "first-cluster")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "search", "run", str(path), "--storage", storage,
                                 "--scheduler", c.address, "--no-progress"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, start_new_session=True)
        deadline = time.monotonic() + 300
        with Client(c.address, timeout=30, set_as_default=False) as client:
            while True:  # a configuration stored, and chunks out on the workers: kill the scheduler
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "no configuration was stored"
                stored = any(t.state == S.COMPLETE for t in trials_so_far("orphan", storage))
                if stored and any(client.processing().values()):
                    break
                time.sleep(0.1)
        os.killpg(c.scheduler.pid, signal.SIGKILL)
        _out, err = proc.communicate(timeout=300)
    finally:
        c.close()
    assert proc.returncode == 2, err
    assert "Traceback" not in err, err[-3000:]
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and f"the Dask scheduler {c.address} was lost" in lines[0], err
    assert "run the same command again to resume" in lines[0]
    trials = trials_so_far("orphan", storage)
    assert not [t for t in trials if t.state == S.RUNNING]
    failed = [t.user_attrs.get("fail_reason", "") for t in trials if t.state == S.FAIL]
    assert failed and all(r.startswith(f"interrupted: the Dask scheduler {c.address} was lost") for r in failed)
    assert [t for t in trials if t.state == S.WAITING]  # queued again

    done = actreg("run", str(path), "--storage", storage, "--scheduler", cluster.address, "--no-progress")
    assert done.returncode == 0, done.stderr[-3000:]
    complete = [t.user_attrs["config_key"] for t in trials_so_far("orphan", storage) if t.state == S.COMPLETE]
    assert len(complete) == len(set(complete)) == 9
    assert not [t for t in trials_so_far("orphan", storage) if t.state in (S.RUNNING, S.WAITING)]


def test_a_builder_package_the_workers_cannot_import_is_refused_in_one_line(cluster, tmp_path):
    folder = tmp_path / "study"
    path = write_csv_study(folder, "pkg", builder="nets.mlp:mlp")
    (folder / "nets").mkdir()
    (folder / "nets" / "__init__.py").write_text("")
    shutil.move(folder / "my_nets.py", folder / "nets" / "mlp.py")  # a package: not shipped
    proc = actreg("run", str(path), "--scheduler", cluster.address, "--no-progress")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: {path}: model.builder: module 'nets.mlp' is not importable on Dask worker "
                           "tcp://127.0.0.1:")
    assert line.endswith("install it on the workers, or keep it as one file beside the study file "
                         "(then it is shipped to them)")
    assert not (folder / "pkg.db").exists()  # refused before anything was written


def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(tmp_path):
    path = write_csv_study(tmp_path / "study", "nowhere")
    address = f"tcp://127.0.0.1:{free_port()}"
    proc = actreg("run", str(path), "--scheduler", address, "--no-progress")
    assert proc.returncode == 2
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach the Dask scheduler {address} (")
    assert not (tmp_path / "study" / "nowhere.db").exists()


# ----------------------------------------------------------------------------- without a cluster


def test_a_worker_with_other_versions_is_refused_with_both_versions():
    mine = {"actreg": "0.9.0", "keras": "3.15.1", "tensorflow": "2.21.0"}
    theirs = {"actreg": "0.9.0", "keras": "3.14.0", "tensorflow": "2.21.0"}
    assert version_mismatch(mine, theirs, "Dask worker tcp://h:1") == (
        "Dask worker tcp://h:1 has keras 3.14.0 (the runner has 3.15.1); install the runner's versions there")
    assert version_mismatch(mine, dict(mine), "x") is None
    # A worker that joins later is checked by each task it runs.
    task = FitTask(DataSpec(), ModelSpec(), TrainSpec(), "mean", Configuration("none"), (0,))
    _, outcome = run_shipped(task, Shipment({**versions(), "tensorflow": "1.0"}))
    assert isinstance(outcome, FitFailure)
    assert outcome.reason.startswith("this Dask worker has tensorflow ") and "(the runner has 1.0)" in outcome.reason


def test_a_shipped_file_lands_under_its_digest_and_is_checked(tmp_path):
    source = tmp_path / "points.csv"
    source.write_text("a,label\n1,0\n")
    shipped = ShippedFile.read(str(source))
    folder = Path(shipped.materialize())
    assert folder.name == shipped.digest and (folder / "points.csv").read_text() == "a,label\n1,0\n"
    from search.engine.cluster import ClusterError

    forged = ShippedFile("other.csv", "0" * 64, b"x")
    with pytest.raises(ClusterError, match="another SHA-256"):
        forged.materialize()


def test_a_race_on_the_cluster_takes_the_local_race_s_looks_and_verdicts(cluster, tmp_path):
    """A race's blocks are tasks like any other: on Dask it stops each configuration where a local race does."""
    from test_race import race_study

    path = race_study(tmp_path, seeds=40)
    local, remote = f"sqlite:///{tmp_path / 'local.db'}", f"sqlite:///{tmp_path / 'remote.db'}"
    proc = actreg("run", str(path), "--storage", local, "--n-jobs", "1", "--no-progress")
    assert proc.returncode == 0, proc.stderr
    proc = actreg("run", str(path), "--storage", remote, "--scheduler", cluster.address, "--no-progress")
    assert proc.returncode == 0, proc.stderr
    assert "race: look 1 of 2 at 30 replicates" in proc.stderr
    assert per_seed_csv(path, remote) == per_seed_csv(path, local)
    import optuna

    looks = [optuna.load_study(study_name="race", storage=s).user_attrs["actreg_race"] for s in (local, remote)]
    assert looks[0] == looks[1]


def test_loky_and_dask_pools_keep_one_interface_and_give_the_same_numbers(cluster, tmp_path):
    """The run loop fits through a Pool: loky's worker processes (FitPool) and a Dask cluster's
    (DaskPool) both implement it, and one chunk gives the same numbers through either."""
    from search.engine.cluster import DaskPool
    from search.engine.parallel import FitPool, Pool

    spec = load_spec(write_csv_study(tmp_path / "study", "pools"))
    task = FitTask(spec.data, spec.model, spec.train, spec.penalty, (Configuration("l1", 1e-4, "pre"),), (0, 1),
                   metrics=spec.metrics)
    outcomes = {}
    client = connect(cluster.address)
    pools = {"loky": FitPool(2), "dask": DaskPool(client, shipment_for(spec))}
    try:
        for name, pool in pools.items():
            assert isinstance(pool, Pool), f"{type(pool).__name__} does not implement the Pool protocol"
            assert pool.wait() == [] and len(pool) == 0 and pool.capacity() >= 1
            pool.submit(("chunk", 0), task)
            assert len(pool) == 1
            done = []
            while len(pool):
                done += pool.wait()
            ((key, results),) = done
            assert key == ("chunk", 0) and not isinstance(results, FitFailure), results
            outcomes[name] = [(r.seed, r.test, r.train) for r in results]
    finally:
        for pool in pools.values():
            pool.close()
        close(client)
    assert outcomes["loky"] == outcomes["dask"]
