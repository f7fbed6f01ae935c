from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

# A small study that is not in the repository: moons, two hidden layers, its own grid.
SMALL_STUDY = """
name = "{name}"
seeds = {seeds}
penalty = "{penalty}"
{extra}
[data]
source = "moons"
n_samples = 60
noise = 0.2
random_state = 3
n_train = 24

[model]
layers = [
  {{ type = "dense", units = 16, activation = "tanh", regularize = true }},
  {{ type = "dense", units = 8, activation = "relu", regularize = true }},
  {{ type = "dense", units = 1, activation = "sigmoid" }},
]

[train]
epochs = {epochs}
batch_size = 8
learning_rate = 0.01

[space]
norm = ["none", "l1", "l2"]
strength = [1e-3, 1e-1]
placement = ["pre", "post"]
"""


# A user's builder module ("my_nets:mlp"): a hidden layer carrying the regularizer, then the output.
BUILDER_MODULE = """
import keras


def mlp(*, input_shape, n_outputs, regularizer, placement):
    inputs = keras.Input(input_shape)
    pre = regularizer is not None and placement == "pre"
    h = keras.layers.Dense({hidden}, activation=None if pre else "relu", activity_regularizer=regularizer)(inputs)
    if pre:
        h = keras.layers.Activation("relu")(h)
    return keras.Model(inputs, keras.layers.Dense(n_outputs, activation={output!r})(h))
"""


def write_builder(folder: Path, hidden: int = 16, output: str | None = None) -> None:
    """``my_nets.py`` with :data:`BUILDER_MODULE` in ``folder``; ``output`` is the last layer's activation."""
    (folder / "my_nets.py").write_text(BUILDER_MODULE.format(hidden=hidden, output=output))


def write_study(folder: Path, name: str = "small", seeds: int = 3, epochs: int = 6, penalty: str = "mean",
                extra: str = "") -> Path:
    path = folder / f"{name}.toml"
    path.write_text(textwrap.dedent(SMALL_STUDY.format(name=name, seeds=seeds, epochs=epochs, penalty=penalty,
                                                       extra=extra)))
    return path


@pytest.fixture
def small_study(tmp_path: Path) -> Path:
    return write_study(tmp_path)


# Columns of the per-seed export that say how a run went, not what it computed.
RUN_COLUMNS = ["trial_number"]


def actreg(*args: str, timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    """Run the real command line in a new process."""
    return subprocess.run([sys.executable, "-m", "search", *args], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


POSTGRES = os.environ.get("ACTREG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_or_skip(url: str = POSTGRES) -> None:
    """Skip (or, in CI, fail) when the PostgreSQL server of the tests is unreachable."""
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(url).connect() as con:
            con.execute(sqlalchemy.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {url} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL at {url} is unreachable: {exc}")


@pytest.fixture
def fresh_postgres():
    """A new, empty PostgreSQL database for one test (dropped afterwards); yields its URL."""
    import uuid

    import sqlalchemy

    postgres_or_skip()
    name = f"actreg_{uuid.uuid4().hex[:12]}"
    admin = sqlalchemy.create_engine(POSTGRES, isolation_level="AUTOCOMMIT")
    with admin.connect() as con:
        con.execute(sqlalchemy.text(f'create database "{name}"'))
    try:
        yield POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with admin.connect() as con:
            con.execute(sqlalchemy.text(f'drop database if exists "{name}" with (force)'))
        admin.dispose()


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on now."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def seed_result(seed: int, losses: list[float], test_accuracy: float = 0.5):
    """A seed's fit as the trainer returns it: the given loss per epoch, constant accuracies."""
    import numpy as np

    from search.engine.trainer import SeedResult

    n = len(losses)
    history = {"loss": np.array(losses, np.float32), "accuracy": np.full(n, 0.5, np.float32),
               "test_loss": np.array(losses, np.float32), "test_accuracy": np.full(n, test_accuracy, np.float32)}
    return SeedResult(seed, {"loss": losses[-1], "accuracy": 0.5}, {"loss": losses[-1], "accuracy": test_accuracy},
                      (0.1,), (0.0,), history)


def trials_so_far(study_name: str, storage: str, states=None) -> list:
    """The study's trials while a runner in another process may still be creating its database
    (schema, alembic stamp, study row): none until that is done."""
    import optuna
    import sqlalchemy.exc

    try:
        return optuna.load_study(study_name=study_name, storage=storage).get_trials(states=states)
    except (KeyError, sqlalchemy.exc.SQLAlchemyError):
        return []


def benchmark(*names: str):
    """The modules of ``benchmarks/`` named (they are scripts, not part of the package)."""
    import importlib

    root = str(Path(__file__).resolve().parents[1] / "benchmarks")
    sys.path.insert(0, root)
    try:
        modules = tuple(importlib.import_module(name) for name in names)
    finally:
        sys.path.remove(root)
    return modules if len(modules) > 1 else modules[0]


def wait_until_training(pids: list[int], deadline: float) -> None:
    """Until a process of ``pids`` has TensorFlow loaded: a loky worker imports it for its first task,
    not when it starts, so a task has begun there (it imports, compiles, then fits)."""
    import time

    def loaded(pid: int) -> bool:
        try:
            return "libtensorflow_framework" in Path(f"/proc/{pid}/maps").read_text()
        except OSError:
            return False

    while not any(loaded(pid) for pid in pids):
        assert time.monotonic() < deadline, f"no task began on the workers {pids}"
        time.sleep(0.1)


def worker_pids(runner: int) -> list[int]:
    """The loky worker processes of ``runner`` (not its resource tracker)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == runner and "loky" in cmdline and "resource_tracker" not in cmdline:
            out.append(int(entry.name))
    return out


class PrivateCluster:
    """A PostgreSQL server of one test's own (``initdb`` in a temporary folder), to stop,
    restart and cut off under a runner. Runs as the ``postgres`` user when the tests run as root."""

    def __init__(self, folder: Path) -> None:
        import glob
        import shutil

        bins = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
        pg_ctl = bins[-1] if bins else shutil.which("pg_ctl")
        if pg_ctl is None:
            if os.environ.get("CI") == "true":
                pytest.fail("PostgreSQL's pg_ctl is not installed in CI")
            pytest.skip("PostgreSQL's pg_ctl is not installed")
        self.bin = Path(pg_ctl).parent
        self.user = "postgres" if os.geteuid() == 0 else None
        folder.mkdir(parents=True, exist_ok=True)
        if self.user:
            shutil.chown(folder, self.user)
        self.data, self.log, self.port = folder / "data", folder / "server.log", free_port()
        self._as_owner(self.bin / "initdb", "-D", self.data, "-A", "trust", "-U", "postgres", "--no-sync")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"
        self.start()

    def _as_owner(self, *cmd) -> None:
        subprocess.run([str(c) for c in cmd], check=True, capture_output=True, timeout=120, user=self.user)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._as_owner(self.bin / "pg_ctl", "-D", self.data, "-l", self.log, "-o", options, "-w", "start")

    def stop(self) -> None:
        self._as_owner(self.bin / "pg_ctl", "-D", self.data, "-m", "fast", "-w", "stop")

    def restart(self) -> None:
        """Stop and start again: every connection of every client is cut."""
        self.stop()
        self.start()

    def terminate_others(self) -> int:
        """Terminate every other session on the server, as an administrator would; returns how many."""
        import sqlalchemy

        engine = sqlalchemy.create_engine(self.url, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as con:
                rows = con.execute(sqlalchemy.text(
                    "select pg_terminate_backend(pid) from pg_stat_activity "
                    "where pid <> pg_backend_pid() and backend_type = 'client backend'")).fetchall()
        finally:
            engine.dispose()
        return len(rows)

    def close(self) -> None:
        try:
            self.stop()
        except subprocess.CalledProcessError:
            pass  # stopped already


@pytest.fixture
def private_postgres(tmp_path_factory):
    """A :class:`PrivateCluster`, stopped after the test."""
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="actreg-pg-"))  # reachable by the postgres user
    os.chmod(folder, 0o755)
    cluster = PrivateCluster(folder / "cluster")
    try:
        yield cluster
    finally:
        cluster.close()
        import shutil

        shutil.rmtree(folder, ignore_errors=True)
