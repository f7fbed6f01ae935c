"""The unit of parallel work and the pools that run it.

The unit is :func:`fit_seeds`: a module-level, picklable function that receives
everything it needs in a :class:`FitTask` (specs, configurations, seeds, thread count)
and returns plain data. A worker keeps two caches, its compiled trainers and the seeds'
initial weights, each keyed by everything that determines it (a cached trainer gives the
numbers of a fresh one: the tests check it), and nothing else between tasks; so the same
task gives the same numbers in the parent process, a loky worker or a Dask worker. The run
loop fits through a :class:`Pool`: :class:`FitPool` here (loky's workers, or this process)
or :class:`search.engine.cluster.DaskPool`.

How seeds are split into chunks depends on the seeds and ``chunk_size`` only, never on
``n_jobs``: a seed's numbers depend (within float rounding) on whether it trains alone
or in a chunk, and a study must give the same numbers whatever ``n_jobs`` is.
"""

from __future__ import annotations

import dataclasses
import os
import queue
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from search.study.space import Configuration, program_of
from search.study.spec import DataSpec, ModelSpec, TrainSpec

if TYPE_CHECKING:
    from search.engine.trainer import SeedResult

MAX_CHUNK = 32  # seeds per chunk by default; larger chunks gain little on a CPU


@dataclass(frozen=True)
class FitTask:
    """Fit ``configs`` (of one program: see :func:`search.study.space.program_of`) on a chunk of seeds,
    every configuration on every seed, in one compiled program; ``threads`` sizes the worker's
    TensorFlow pools.

    ``metrics`` are measured besides the loss (see :mod:`search.study.metrics`). ``slots`` is
    the number of models the program is compiled for (0: configurations x seeds); a smaller
    task fills the rest with copies of its last model, so that every task of a study's program
    runs one compilation. A single configuration may be given for ``configs``.
    """

    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    penalty: str
    configs: tuple[Configuration, ...]
    seeds: tuple[int, ...]
    threads: int = 1
    metrics: tuple[str, ...] = ("accuracy",)
    slots: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.configs, Configuration):
            object.__setattr__(self, "configs", (self.configs,))
        programs = {program_of(c) for c in self.configs}
        if len(programs) != 1:
            raise ValueError(f"one task trains the configurations of one program, not of {sorted(programs)}")
        if self.slots and self.slots < self.n_models:
            raise ValueError(f"{self.n_models} models do not fit {self.slots} slots")

    @property
    def n_models(self) -> int:
        return len(self.configs) * len(self.seeds)

    @property
    def program(self) -> str:
        return program_of(self.configs[0])


def chunk_seeds(seeds: Sequence[int], chunk_size: int | None = None) -> list[tuple[int, ...]]:
    """Split ``seeds`` into nearly equal consecutive chunks of at most ``chunk_size`` seeds.

    The default is :data:`MAX_CHUNK`. Chunks are balanced (30 seeds with a limit of 16
    give 15 + 15, not 16 + 14) so that workers finish together.
    """
    limit = chunk_size or MAX_CHUNK
    if limit < 1:
        raise ValueError("chunk_size must be positive")
    n = len(seeds)
    n_chunks = max(1, -(-n // limit))
    base, extra = divmod(n, n_chunks)
    out, start = [], 0
    for i in range(n_chunks):
        size = base + (1 if i < extra else 0)
        out.append(tuple(seeds[start:start + size]))
        start += size
    return out


def fit_seeds(task: FitTask):
    """Train every configuration of ``task`` on every seed of ``task.seeds``; returns a list of
    ``SeedResult``, configuration by configuration (seeds in order within each).

    A worker keeps its compiled trainers (one per program and size) and the seeds' initial
    weights between tasks: a grid's norms and strengths reuse one compilation. A reused
    trainer gives the same numbers as a fresh one (the tests check it).

    One fit at a time per process: a Dask worker may run tasks on several threads, but
    initial weights are drawn from Keras's process-wide random state and a compiled
    trainer holds one fit's variables, so concurrent tasks would corrupt each other.
    """
    with _ONE_FIT_AT_A_TIME:
        return _fit_seeds(task)


_ONE_FIT_AT_A_TIME = threading.Lock()


def _fit_seeds(task: FitTask):
    import numpy as np

    from search.engine import runtime
    from search.engine.data import make_dataset, replicate_data
    from search.engine.trainer import op_threads

    # The program's models, configuration by configuration, then copies of the last to fill its slots.
    models = [(config, seed) for config in task.configs for seed in task.seeds]
    models += [models[-1]] * (max(task.slots, len(models)) - len(models))
    model_seeds = tuple(seed for _, seed in models)
    if task.data.resample == "none":
        data = make_dataset(task.data)
    else:  # each model trains on its seed's replicate's rows
        data = _cached(_DATA, (task.data, model_seeds), 4, lambda: replicate_data(task.data, model_seeds))
    runtime.configure(task.threads, op_threads(task.threads, task.model, task.train, data.rows[0], len(models)))
    from search.engine import patches
    from search.engine.model import build_model, initial_state, penalty_factors

    patches.warn_missing()  # once per process: a private hook that a TensorFlow or Keras release moved
    from search.engine.trainer import ChunkTrainer

    shape = data.input_shape
    n_outputs = data.n_outputs(task.model.task)
    program = task.program
    # The program's model: its placement's, with a regularizer whose factors each model sets.
    template = Configuration("none") if program == "none" else Configuration("l1", 0.0, program)

    def compile_trainer():
        built = build_model(task.model, template, task.penalty, model_seeds[0], shape, task.train.learning_rate,
                            n_outputs=n_outputs)
        return ChunkTrainer(built.model, data, task.train, len(models), built.probes, task.model.task, task.metrics)

    # With per-seed data every task of a program's size shares it too: its rows are loaded for each fit.
    key = (task.data, task.model, task.train, task.penalty, task.metrics, program, len(models))
    trainer = _cached(_TRAINERS, key, 4, compile_trainer)
    factors = np.array([(0.0, 0.0) if c.is_baseline else penalty_factors(c) for c, _ in models], np.float32)
    # A layer list draws the same initial weights for every configuration; a builder may not.
    start = []
    for config, seed in models:
        variant = () if task.model.builder is None else (config.is_baseline, config.placement)
        start.append(_cached(_WEIGHTS, (task.model, seed, shape, variant), 1024,
                             partial(initial_state, task.model, config, seed, shape, n_outputs)))
    began = time.perf_counter()
    results = trainer.fit([w for w, _ in start], model_seeds, initial_states=[s for _, s in start],
                          data=data if data.per_seed else None, factors=factors)[:task.n_models]
    per_model = (time.perf_counter() - began) / task.n_models  # the models of a program share one computation
    peak = _peak_memory_mb()
    return [dataclasses.replace(r, fit_seconds=per_model, peak_memory_mb=peak) for r in results]


def _peak_memory_mb() -> float:
    """This process's peak resident memory so far, in MB (0 where the platform does not say)."""
    try:
        import resource
    except ImportError:  # not on Windows
        return 0.0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1 << 20) if sys.platform == "darwin" else peak / 1024  # bytes on macOS, KiB elsewhere


# Per-worker caches, least recently used first. A compiled trainer costs a worker about
# 40 MB, which TensorFlow keeps even after eviction; a study needs one per program (baseline,
# pre, post: see program_of) and size.
_TRAINERS: OrderedDict[tuple, object] = OrderedDict()
_WEIGHTS: OrderedDict[tuple, list] = OrderedDict()
_DATA: OrderedDict[tuple, object] = OrderedDict()  # a chunk's stacked replicates


def _cached(cache: OrderedDict, key: tuple, limit: int, make: Callable[[], Any]) -> Any:
    """``cache[key]``, made by ``make()`` if missing; evicts the least recently used past ``limit``."""
    if key in cache:
        cache.move_to_end(key)
    else:
        if len(cache) >= limit:
            cache.popitem(last=False)
        cache[key] = make()
    return cache[key]


@dataclass(frozen=True)
class FitFailure:
    """A fit that raised, as data: ``reason`` is one line, ``details`` the traceback."""

    reason: str
    details: str = ""


BACKENDS = ("loky", "sequential")  # worker processes; or this process (a debugger's choice)


@runtime_checkable
class Pool(Protocol):
    """What the run loop fits through: :class:`FitPool` (loky's worker processes, or this process) and
    :class:`search.engine.cluster.DaskPool` (a Dask cluster's workers) implement it.

    ``submit`` returns at once; ``wait`` blocks until at least one task submitted has finished
    and returns ``(key, results or FitFailure)`` for each that did (nothing when none is in
    flight); ``len`` counts the tasks in flight, ``capacity`` how many run at once; ``close``
    abandons what has not finished.
    """

    def __len__(self) -> int: ...

    def capacity(self) -> int: ...

    def submit(self, key: Hashable, task: FitTask) -> None: ...

    def wait(self) -> list[tuple[Any, list[SeedResult] | FitFailure]]: ...

    def close(self) -> None: ...


class FitPool:
    """Fits tasks on ``n_jobs`` worker processes as they are submitted (a :class:`Pool`); a runner keeps it fed.

    With ``n_jobs == 1``, or the ``"sequential"`` backend, the tasks run in this process, one at
    each ``wait``. Otherwise the pool is loky's executor, so a new task starts the moment a
    worker is free (no batch waits for its slowest member).

    A worker process that dies (killed, or by the out-of-memory killer) breaks loky's
    pool: every task then in flight is submitted again to a new pool, each at most
    ``retries`` times, after which it comes back as a :class:`FitFailure`. ``on_retry``
    hears a one-line message for each such restart.
    """

    def __init__(self, n_jobs: int, backend: str = "loky", retries: int = 2,
                 on_retry: Callable[[str], None] | None = None) -> None:
        if backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, not {backend!r}")
        self.n_jobs, self.backend, self.retries, self.on_retry = n_jobs, backend, retries, on_retry
        self.local = n_jobs == 1 or backend == "sequential"
        self._queued: list[tuple[Any, FitTask]] = []  # not yet running: in this process
        self._futures: dict[Any, tuple[Any, FitTask]] = {}  # future -> (key, task)
        self._attempts: dict[Any, int] = {}
        self._executor = None

    def __len__(self) -> int:
        return len(self._queued) + len(self._futures)

    def capacity(self) -> int:
        """How many tasks run at once."""
        return 1 if self.local else self.n_jobs

    def submit(self, key: Hashable, task: FitTask) -> None:
        if self.local:
            self._queued.append((key, task))
            return
        try:
            future = self._pool().submit(_indexed, 0, task)
        except _worker_died_errors():
            # A worker died and loky marked the pool broken before ``wait`` collected the
            # futures it failed (``wait`` retries those). This task never ran: a new pool takes it.
            self._executor = None
            future = self._pool().submit(_indexed, 0, task)
        self._futures[future] = (key, task)

    def wait(self) -> list[tuple[Any, list | FitFailure]]:
        if self._queued:  # one task now; the runner may claim more while the rest wait
            key, task = self._queued.pop(0)
            return [(key, in_process(_indexed, 0, task)[1])]
        if not self._futures:
            return []
        from concurrent.futures import FIRST_COMPLETED
        from concurrent.futures import wait as wait_futures

        done, _ = wait_futures(list(self._futures), return_when=FIRST_COMPLETED)
        out, died = [], []
        for future in done:
            key, task = self._futures.pop(future)
            try:
                out.append((key, future.result()[1]))
            except _worker_died_errors() as exc:
                died.append((key, task, exc))
        if died:
            out += self._resubmit(died)
        return out

    def _resubmit(self, died: list) -> list[tuple[Any, FitFailure]]:
        """After a worker died: every task of the broken pool again, within its retries."""
        for future in list(self._futures):  # the rest of the broken pool fails the same way
            died.append((*self._futures.pop(future), None))
        self._executor = None
        why = f"a worker process died ({_first_line(next(e for *_, e in died if e is not None))})"
        failed, again = [], []
        for key, task, _ in died:
            self._attempts[key] = self._attempts.get(key, 0) + 1
            if self._attempts[key] > self.retries:
                failed.append((key, FitFailure(f"{why}; gave up after {self.retries} retries "
                                               "(out of memory? try a smaller chunk_size or fewer n_jobs)")))
            else:
                again.append((key, task))
        if again and self.on_retry is not None:
            self.on_retry(f"{why}; retrying {len(again)} unfinished chunk(s)")
        for key, task in again:
            self.submit(key, task)
        return failed

    def _pool(self):
        if self._executor is None:
            self._executor = _executor(self.n_jobs)
        return self._executor

    def close(self) -> None:
        """Cancel what has not started, and stop the worker processes of what still runs.

        Tasks still running at close are abandoned (an interruption, a lost storage): their
        workers are killed, else the process would wait at exit for each to finish its fit
        (loky joins its workers then; a chunk may take minutes). An idle pool is kept for the
        next run of this process.
        """
        running = [f for f in self._futures if not f.done()]
        for future in self._futures:
            future.cancel()
        self._futures.clear()
        self._queued.clear()
        if running and self._executor is not None:
            self._executor.shutdown(wait=False, kill_workers=True)
            self._executor = None


def _executor(n_jobs: int):
    """loky's reusable executor of ``n_jobs`` workers (the one pool of this process), remembered for
    :func:`stop_workers`."""
    from joblib.externals.loky import get_reusable_executor

    if QUIET_TRACKER not in sys.warnoptions:  # loky's resource tracker inherits these as -W flags
        sys.warnoptions.append(QUIET_TRACKER)
    executor = get_reusable_executor(max_workers=n_jobs, reuse=True, initializer=_die_with, initargs=(os.getpid(),))
    if executor not in _EXECUTORS:
        _EXECUTORS.append(executor)
    return executor


_EXECUTORS: list = []
PARENT_WATCH_SECONDS = 0.5
# Workers stopped with kill_workers (at an interruption, or idle at exit) leave their semaphores to
# loky's resource tracker, which unlinks them and warns "leaked semlock objects" after the run's
# summary: noise about a clean-up that it does.
QUIET_TRACKER = "ignore:resource_tracker:UserWarning"


def _die_with(parent: int) -> None:
    """In a worker: end this process when ``parent`` (the runner that started it) is gone. A runner
    killed with SIGKILL cannot stop its workers, and loky's would live on (780 MB each, their
    resource tracker too) until a later run reaped them. A thread that looks at the parent's id
    twice a second, rather than PR_SET_PDEATHSIG, which fires when the thread that forked the
    worker ends, not its process."""
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_WATCH_SECONDS)
        os._exit(1)

    threading.Thread(target=watch, name="actreg-parent-watch", daemon=True).start()


def stop_workers() -> None:
    """Stop the idle worker processes of this process's pool now, without waiting for them (at exit,
    Python's own shutdown would wait about 2 s for each to tear TensorFlow down)."""
    while _EXECUTORS:
        _EXECUTORS.pop().shutdown(wait=False, kill_workers=True)


def in_process(fn: Callable, *args) -> Any:
    """``fn(*args)`` on this process's fitting thread, waited for so that Ctrl-C and SIGTERM are heard.

    A fit is one long TensorFlow call, and Python runs a signal's handler only when the main
    thread returns from it: an interruption waited for the end of the chunk (seconds, or
    minutes). Here the main thread waits in short steps and raises at once; the abandoned fit
    ends on its own thread, which does not keep the process alive. One thread for every fit, so
    that the compiled trainers cached by :func:`fit_seeds` always run where they were built.
    """
    import concurrent.futures

    from search.engine import runtime

    # Here, not on the fitting thread: the import silences file descriptor 2 of the whole process for
    # its duration, which would swallow the line an interruption prints meanwhile.
    runtime.import_tensorflow()
    future: concurrent.futures.Future = concurrent.futures.Future()
    _FITTING.put((future, fn, args))
    with _FITTING_STARTED:
        if not _FITTING_THREAD:
            _FITTING_THREAD.append(threading.Thread(target=_fitting, name="actreg-fit", daemon=True))
            _FITTING_THREAD[0].start()
    while True:
        try:
            return future.result(timeout=0.25)
        except concurrent.futures.TimeoutError:
            from search import interrupt

            interrupt.check()  # a handler's exception that was swallowed on the way


def fit_abandoned() -> bool:
    """True while the fitting thread still runs a fit that nobody waits for (after an interruption).

    Such a process must leave with :func:`os._exit`: at interpreter shutdown CPython (before 3.14)
    ends a daemon thread that wants the GIL back with ``pthread_exit``, whose unwinding through
    TensorFlow's C++ frames aborts the process ("FATAL: exception not rethrown", status -6).
    """
    return _FITTING_BUSY.is_set()


def _fitting() -> None:
    while True:
        future, fn, args = _FITTING.get()
        if future.set_running_or_notify_cancel():
            _FITTING_BUSY.set()
            try:
                future.set_result(fn(*args))
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                future.set_exception(exc)
            finally:
                _FITTING_BUSY.clear()


_FITTING: queue.SimpleQueue = queue.SimpleQueue()
_FITTING_THREAD: list[threading.Thread] = []
_FITTING_STARTED = threading.Lock()
_FITTING_BUSY = threading.Event()


def _worker_died_errors() -> tuple[type[BaseException], ...]:
    from concurrent.futures.process import BrokenProcessPool

    from joblib.externals.loky.process_executor import TerminatedWorkerError

    return (TerminatedWorkerError, BrokenProcessPool)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _indexed(i: int, task: FitTask) -> tuple[int, list | FitFailure]:
    """The work unit as joblib runs it: failures come back as data, not as exceptions."""
    import traceback

    try:
        return i, fit_seeds(task)
    except Exception as exc:  # noqa: BLE001 - any error of a fit is a result (see FitFailure)
        reason = f"{type(exc).__name__}: {_first_line(exc)}" if str(exc).strip() else type(exc).__name__
        return i, FitFailure(reason, traceback.format_exc())
