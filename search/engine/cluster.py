"""Running a study's fits on a Dask cluster (``actreg run --scheduler tcp://HOST:8786``).

The runner process claims configurations and stores results as always; the fits (one
:class:`~search.engine.parallel.FitTask` per chunk of seeds) run on the ``dask.distributed``
workers behind the scheduler, as futures, so that configurations are fed to the cluster
as fast as its workers free up.

What a worker needs travels with the work: the study's data file (CSV or NPZ) and a
builder's module file are shipped once to every worker, by content, and checked there
against the SHA-256 digest that the study's fingerprint uses. The data sources that ship
with scikit-learn or are generated need nothing. A worker whose TensorFlow, Keras or
actreg differs from the runner's is refused, with both versions in the message.

A worker that dies mid-fit costs a retry: the scheduler gives its tasks to other workers
(up to Dask's ``distributed.scheduler.allowed-failures``, then the chunk fails as a
configuration does when a local worker dies too often). A scheduler that goes away is not a
configuration's failure: :class:`DaskPool` raises :class:`ClusterLost`, the runner queues
the configurations it holds again (failed as interrupted, with the reason) and exits 2 with
one line; the same command resumes once the scheduler is back.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import os
import tempfile
import time
from concurrent.futures import CancelledError
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from search.engine.parallel import FitFailure, FitTask, _first_line, _indexed
from search.study.spec import StudySpec

CHECKED = ("actreg", "keras", "tensorflow")  # the versions a worker must share with the runner


class ClusterError(Exception):
    """The cluster cannot run this study; ``str()`` is the one-line message."""


class ClusterLost(ClusterError):
    """The runner lost its Dask scheduler mid-run; ``reason`` is what a released claim records."""

    def __init__(self, address: str, cause: str) -> None:
        self.reason = f"the Dask scheduler {address} was lost ({cause})"
        super().__init__(f"{self.reason}; the configurations this runner held are queued again: "
                         "run the same command again to resume")


@dataclass(frozen=True)
class ShippedFile:
    """A file that workers need, by content: written on each worker under its digest."""

    name: str
    digest: str
    content: bytes

    @classmethod
    def read(cls, path: str) -> ShippedFile:
        content = Path(path).read_bytes()
        return cls(Path(path).name, hashlib.sha256(content).hexdigest(), content)

    def materialize(self) -> str:
        """The file in this machine's temporary folder (written once per digest); its folder."""
        folder = Path(tempfile.gettempdir()) / "actreg-shipped" / self.digest
        target = folder / self.name
        if not target.is_file():
            if hashlib.sha256(self.content).hexdigest() != self.digest:
                raise ClusterError(f"{self.name} arrived with another SHA-256 than the runner's {self.digest}")
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".part-")
            with os.fdopen(fd, "wb") as f:
                f.write(self.content)
            os.replace(tmp, target)  # atomic: two tasks of one worker may write it at once
        return str(folder)


@dataclass(frozen=True)
class Shipment:
    """What every task of a study needs besides its ``FitTask``: files, and the runner's versions."""

    versions: dict[str, str]
    data: ShippedFile | None = None
    builder: ShippedFile | None = None

    def localize(self, task: FitTask) -> FitTask:
        """``task`` with paths to this worker's copies of the shipped files."""
        if self.data is not None:
            task = dataclasses.replace(task, data=dataclasses.replace(
                task.data, path=str(Path(self.data.materialize()) / self.data.name)))
        if self.builder is not None:
            task = dataclasses.replace(task, model=dataclasses.replace(
                task.model, builder_path=self.builder.materialize()))
        return task


def versions() -> dict[str, str]:
    """This process's versions of :data:`CHECKED`."""
    from search._version import __version__
    from search.engine.runtime import versions as library_versions

    out = {k: v for k, v in library_versions().items() if k in CHECKED}
    out["actreg"] = __version__
    return out


def version_mismatch(mine: dict[str, str], theirs: dict[str, str], where: str) -> str | None:
    """One line naming each library whose version differs, or ``None``."""
    differ = [f"{k} {theirs.get(k, 'missing')} (the runner has {mine[k]})" for k in CHECKED
              if theirs.get(k) != mine.get(k)]
    return f"{where} has {', '.join(differ)}; install the runner's versions there" if differ else None


def run_shipped(task: FitTask, shipment: Shipment) -> tuple[int, list | FitFailure]:
    """The work unit on a Dask worker: versions checked, shipped files in place, then :func:`fit_seeds`."""
    mismatch = version_mismatch(shipment.versions, versions(), "this Dask worker")
    if mismatch:
        return 0, FitFailure(mismatch)
    try:
        task = shipment.localize(task)
    except (ClusterError, OSError) as exc:
        return 0, FitFailure(f"shipping files to the worker failed: {_first_line(exc)}")
    return _indexed(0, task)


def shipment_for(spec: StudySpec) -> Shipment:
    """The files this study's tasks need on a worker that has none of the runner's files.

    Raises :class:`ClusterError` for a builder module that is not one file beside the study
    file (a package must be installed on the workers; :func:`check_workers` checks it).
    """
    data = ShippedFile.read(spec.data.path) if spec.data.path is not None else None
    builder = None
    if spec.model.builder is not None:
        module = spec.model.builder.partition(":")[0]
        local = Path(spec.model.builder_path or ".") / f"{module}.py"
        if "." not in module and local.is_file():
            builder = ShippedFile.read(str(local))
    return Shipment(versions(), data, builder)


def check_workers(client: Any, spec: StudySpec, shipment: Shipment) -> None:
    """Refuse a cluster without workers, with other library versions, or that cannot import the builder."""
    try:
        found = client.run(versions)
    except Exception as exc:  # noqa: BLE001 - a worker without actreg, or one that left meanwhile
        raise ClusterError(f"a Dask worker of {client.scheduler.address} cannot run actreg "
                           f"({type(exc).__name__}: {_first_line(exc)}); install it there") from None
    if not found:
        raise ClusterError(f"the scheduler {client.scheduler.address} has no workers yet; start some with "
                           f"`dask worker {client.scheduler.address}`")
    for worker, theirs in sorted(found.items()):
        mismatch = version_mismatch(shipment.versions, theirs, f"Dask worker {worker}")
        if mismatch:
            raise ClusterError(mismatch)
    if spec.model.builder is not None and shipment.builder is None:
        module = spec.model.builder.partition(":")[0]
        missing = sorted(w for w, ok in client.run(_importable, module).items() if not ok)
        if missing:
            raise ClusterError(f"{spec.path or '<study>'}: model.builder: module {module!r} is not importable on "
                               f"Dask worker {missing[0]}; "
                               "install it on the workers, or keep it as one file beside the study file (then it "
                               "is shipped to them)")


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def connect(address: str, timeout: float = 10.0) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address``; :class:`ClusterError` if unreachable."""
    try:
        from distributed import Client
    except ImportError:
        raise ClusterError("--scheduler needs dask.distributed: pip install 'actreg[dask]'") from None
    try:
        return Client(address, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler {address} ({_first_line(exc)})") from None


def connect_for(spec: StudySpec) -> tuple[Any, Shipment]:
    """The client of ``spec.scheduler`` and what its workers need, once the workers are checked against it."""
    assert spec.scheduler is not None, "only a study with a scheduler connects to one"
    client = connect(spec.scheduler)
    try:
        shipment = shipment_for(spec)
        check_workers(client, spec, shipment)
    except BaseException:
        client.close()
        raise
    return client, shipment


def close(client: Any) -> None:
    """Close ``client``; one whose scheduler went away closes quietly (``distributed`` would log a
    traceback of the reconnection that closing cancels, after the runner's one line)."""
    if client.status != "running":
        import logging

        for name in ["distributed", *[n for n in logging.root.manager.loggerDict if n.startswith("distributed.")]]:
            logging.getLogger(name).setLevel(logging.CRITICAL + 1)
    try:
        client.close(timeout=10)
    except (OSError, TimeoutError):
        pass


class DaskPool:
    """Fits tasks on a Dask cluster as they are submitted (a :class:`~search.engine.parallel.Pool`).

    ``capacity()`` is the cluster's task slots (its workers' threads, read again every few
    seconds, so workers that join are used). A chunk whose workers kept dying comes back as
    a :class:`FitFailure` (Dask's ``KilledWorker``).
    """

    def __init__(self, client: Any, shipment: Shipment) -> None:
        from distributed import as_completed

        self.client = client
        self._address = client.scheduler.address
        self._shipment = client.scatter(shipment, broadcast=True)  # once, not with every task
        self._futures: dict[Any, Any] = {}  # future -> key
        self._done = as_completed(loop=client.loop)  # fed as tasks are submitted
        self._slots, self._counted = 1, 0.0

    def __len__(self) -> int:
        return len(self._futures)

    def capacity(self) -> int:
        if time.monotonic() - self._counted > 5.0:
            try:
                self._slots = max(1, sum(self.client.nthreads().values()))
            except (OSError, TimeoutError) as exc:  # the scheduler went away: CommClosedError is an OSError
                raise self._lost(f"{type(exc).__name__}: {_first_line(exc)}") from None
            self._counted = time.monotonic()
        return self._slots

    def _lost(self, cause: str) -> ClusterLost:
        return ClusterLost(self._address, cause)

    def submit(self, key: Any, task: FitTask) -> None:
        future = self.client.submit(run_shipped, task, self._shipment, pure=False)
        self._futures[future] = key
        self._done.add(future)

    def wait(self) -> list[tuple[Any, list | FitFailure]]:
        if not self._futures:
            return []
        done = [next(self._done), *self._done.next_batch(block=False)]  # at least one: blocks until it is
        out = []
        for future in done:
            key = self._futures.pop(future)
            if future.status == "finished":
                out.append((key, future.result()[1]))
                continue
            # A future that the client cancelled (its scheduler left) has no exception: the chunk
            # did not fail, the cluster went away.
            exc = None if future.status in ("cancelled", "lost") else future.exception()
            if exc is None or isinstance(exc, CancelledError):
                raise self._lost(f"its chunk came back {future.status}, client {self.client.status}")
            out.append((key, FitFailure(f"the Dask cluster could not run this chunk: {type(exc).__name__}: "
                                        f"{_first_line(exc)}")))
        return out

    def close(self) -> None:
        """Cancel what has not finished (the client stays open: its owner closes it)."""
        try:
            if self._futures and self.client.status == "running":
                self.client.cancel(list(self._futures))
        except (OSError, TimeoutError):
            pass  # the scheduler is gone, and the futures with it
        self._futures.clear()
        self._done.clear()
