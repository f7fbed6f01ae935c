"""Run a study: the loop that asks its schedule for work, fits it over seeds, stores it and asks again.

A study is a shared queue (see :mod:`search.store.claims`): any number of ``actreg run``
processes, on any machines that reach the storage, claim the configurations of one
compiled program at a time, fit them and finish their trials; a runner that finds nothing
left to claim waits for the configurations other runners hold (taking over those whose
runner died) and then stops. Resuming is the same thing with one runner: what is stored is
skipped, what was interrupted is claimed again. What is claimed, in what order, and what
happens when nothing is left is the schedule's (see :mod:`search.run.schedule`): the grid,
TPE or a race.

Failures are data. A configuration whose loss became NaN or infinite is stored as
diverged (see :mod:`search.results.records`); one whose fit raised is a FAIL trial with its
reason (every configuration of a program that raised), and the run goes on until more than
``max_failures`` programs failed in it. A worker process that dies costs its chunks a retry
(see :class:`search.engine.parallel.FitPool`).

Three threads run beside the loop: the heartbeat (:class:`search.store.heartbeat.Heartbeat`),
the writer that stores finished configurations while the next ones fit
(:class:`search.run.state.Writer`) and the bar's clock; all three are started once the study
is open and joined on every way out. The counts and the bar are :class:`search.run.state.RunState`'s.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, TextIO

from search import interrupt
from search.engine import runtime
from search.engine.checks import activation_bytes, check_study
from search.engine.cluster import ClusterLost, DaskPool, close, connect_for
from search.engine.parallel import BACKENDS, FitFailure, FitPool, FitTask, Pool
from search.results.records import summary_frame, trial_record
from search.results.stats import baseline_comparison
from search.run.grid import GridSchedule
from search.run.outcome import RunReport
from search.run.race import RaceSchedule
from search.run.schedule import Schedule, Work
from search.run.state import RunState, Ticker, Writer, progress_bar
from search.run.storing import Storing
from search.run.tpe import TPESchedule
from search.store.claims import StudyQueue
from search.store.outage import StorageUnavailable
from search.store.schema import LABEL_ATTR, RUNNER_ATTR
from search.store.storage import redact
from search.store.trials import Claim
from search.study.space import Configuration, config_key, iter_param_names
from search.study.spec import StudySpec
from search.study.validation import SpecError

# The schedule of each kind of study: "race" for a study with [race], else its sampler.
SCHEDULES: dict[str, type[Schedule]] = {"grid": GridSchedule, "tpe": TPESchedule, "race": RaceSchedule}


def run_study(spec: StudySpec, *, backend: str = "loky", progress: bool | None = None,
              stream: TextIO | None = None, wait: bool = True) -> RunReport:
    """Run (or resume, or join) the study of ``spec`` and return what this runner did.

    ``backend`` is where the seeds are fitted without a ``scheduler``: ``"loky"``, worker
    processes; ``"sequential"``, this process, one chunk at a time (a debugger's choice). A Dask
    cluster is the study's ``scheduler``. ``progress`` shows a progress bar on ``stream``
    (default: only when it is a terminal). With ``wait`` (the default), a runner that finds
    nothing left to claim waits until the configurations other runners hold are stored, and
    takes over those whose runner died; without it, it returns at once. A bad argument is a
    :class:`SpecError` before anything is read.

    On KeyboardInterrupt the configurations this runner holds are failed as interrupted
    and queued again at once, so other runners (or the next run) continue them.
    """
    _check_arguments(spec, backend, progress, stream, wait)
    started = time.perf_counter()
    stream = stream or sys.stderr
    state = RunState(progress_bar(spec, progress, stream), stream)  # from the first second
    cluster = queue = None
    try:
        # Bad data, a model that cannot take it or a cluster that cannot run it: one line before
        # anything is written.
        state.status("checking the study")
        data = check_study(spec)
        n_jobs = runtime.resolve_n_jobs(spec.n_jobs)
        means = Means(backend, wait, n_jobs, runtime.threads_per_worker(n_jobs), data.rows,
                      activation_bytes(spec, data.rows, data.input_shape))
        if spec.scheduler is not None:
            cluster = means.cluster = connect_for(spec)
        state.status("opening the storage")
        queue, created = StudyQueue.open(spec, runtime.versions(), say=state.say)
        loop = Loop(spec, queue, state, means)
        skipped = loop.open(created)
        loop.run()
        trials, names = queue.trials(), list(iter_param_names(spec.space))
        race = queue.race() if spec.race is not None else None
        run = loop.schedule.configurations_run()
        by_others = max(0, loop.schedule.stored() - skipped - run)
    except BaseException:
        state.close(leave=False)  # the error's line alone, without an empty bar above it
        raise
    finally:
        if queue is not None:
            queue.close()
        if cluster is not None:
            close(cluster[0])
    state.close()
    return RunReport(
        study_name=spec.name, storage=redact(spec.storage), metric=spec.objective,
        configurations_run=run, configurations_skipped=skipped, fits=state.fits,
        wall_seconds=time.perf_counter() - started,
        summary=summary_frame(trials, names, spec.objective, spec.maximize),
        comparison=baseline_comparison(trials, names, spec.objective, spec.rope, race=race),
        configurations_diverged=state.diverged, configurations_failed=state.failed,
        configurations_by_others=by_others, stopped=state.stopped, training_seconds=state.training_seconds,
        peak_memory_mb=state.peak_memory_mb, models_per_program=state.largest_program)


def _check_arguments(spec: Any, backend: Any, progress: Any, stream: Any, wait: Any) -> None:
    """``run_study``'s keyword arguments, checked like a study file's keys: one line each."""
    where = getattr(spec, "path", None) or "run_study"
    if not isinstance(spec, StudySpec):
        raise SpecError("run_study", "spec", f"must be a StudySpec (search.load_spec), not {type(spec).__name__}")
    if backend not in BACKENDS:
        raise SpecError(where, "backend", f"must be one of {', '.join(map(repr, BACKENDS))}, not {backend!r}")
    if progress is not None and not isinstance(progress, bool):
        raise SpecError(where, "progress", f"must be True, False or None, not {progress!r}")
    if not isinstance(wait, bool):
        raise SpecError(where, "wait", f"must be True or False, not {wait!r}")
    if stream is not None and not callable(getattr(stream, "write", None)):
        raise SpecError(where, "stream", f"must be a text stream (with write), not {type(stream).__name__}")


@dataclass
class Means:
    """What a runner fits with, found before the study is opened: the pool's kind and size, the
    TensorFlow threads of each task, the data's rows (accuracies are exact fractions of them), a
    model's activation bytes (which size the programs) and the Dask cluster, if any."""

    backend: str
    wait: bool
    n_jobs: int
    threads: int
    rows: Any
    model_bytes: int | None
    cluster: tuple[Any, Any] | None = None  # (Dask client, shipment)

    @property
    def local(self) -> bool:
        """Whether the chunks fit in this process (one at a time) rather than in worker processes."""
        return self.cluster is None and (self.n_jobs == 1 or self.backend == "sequential")


@dataclass
class _Program:
    """A program in flight: its configurations, the held ones' chunks so far, its chunks of seeds."""

    group: tuple[Configuration, ...]
    held: dict[str, tuple[Claim, Configuration, dict[int, list | FitFailure]]]
    chunks: tuple[tuple[int, ...], ...]


class Loop:
    """One runner's loop: ask the schedule for work while workers are free, fit it, store it; until none is left."""

    def __init__(self, spec: StudySpec, queue: StudyQueue, state: RunState, means: Means) -> None:
        self.spec, self.queue, self.state, self.means = spec, queue, state, means
        self.storing = Storing(queue, state)
        self.heartbeat = self.storing.heartbeat
        kind = "race" if spec.race is not None else spec.sampler
        self.schedule = SCHEDULES[kind](spec, queue, self.heartbeat, state, means.model_bytes)
        # TensorFlow threads per task: the local cores shared by the workers; on a Dask cluster one,
        # for one worker process per core (`dask worker --nworkers CORES --nthreads 1`).
        self.threads = 1 if means.cluster is not None else means.threads
        # A chunk queued beyond the workers' count starts the moment one is free, instead of after
        # the next claim (a claim takes 0.1 s of storage round trips on SQLite).
        self.prefetch = 0 if means.local else 1
        self.writer = Writer()
        self.ticker = Ticker(state)
        self._active: dict[int, _Program] = {}
        self._programs = 0  # programs submitted, to key their tasks
        # The reason a claim still held when the runner closes is failed with (and queued again).
        self.released_as = "interrupted: the runner was stopped (Ctrl-C or SIGTERM)"
        self._waiting_for: tuple[int, ...] = ()

    def open(self, created: bool) -> int:
        """Tell the study's notes, reap the claims of runners that died, and let the schedule queue the
        study's work; returns the configurations stored before (skipped)."""
        for note in self.queue.notes:
            self.state.say(note)
        self.queue.reap()
        skipped = self.schedule.stored()  # before the grid is queued: a new study has none
        self.storing.open(self.schedule, skipped)
        self.schedule.open(created)
        self.state.total(self.schedule.remaining(skipped))
        return skipped

    def run(self) -> None:
        """Start the threads, drain the study, and on every way out store what is finished, release
        what is held and join the threads."""
        self.heartbeat.start()
        self.writer.start()
        self.ticker.start()
        # Until the first chunk returns, the workers start and compile (seconds): say so.
        self.state.status("starting workers, compiling")
        try:
            self._drain()
        finally:
            self._close()

    def _pool(self) -> Pool:
        if self.means.cluster is not None:
            return DaskPool(*self.means.cluster)
        return FitPool(self.means.n_jobs, self.means.backend, self.spec.worker_retries, self.state.say)

    def _drain(self) -> None:
        """Claim, fit and store until nothing is left (or the failure budget is spent)."""
        pool = self._pool()
        poll = max(1.0, min(5.0, self.queue.grace / 4))
        reaped = 0.0
        try:
            while True:
                interrupt.check()  # a Ctrl-C or SIGTERM whose exception was swallowed stops here
                self.writer.check()
                if self.state.stopped is None and len(pool) < pool.capacity() + self.prefetch:
                    if time.monotonic() - reaped > poll:
                        self.queue.reap()
                        reaped = time.monotonic()
                    self._feed(pool)
                if len(pool):
                    for (program, chunk), outcome in pool.wait():
                        self._collect(program, chunk, outcome)
                    continue
                self.writer.flush()  # what this runner still holds is being stored, not run elsewhere
                if self.state.stopped is None and self.schedule.idle():
                    continue
                if self.state.stopped is not None or not self._wait_for_others():
                    return
                time.sleep(poll)  # a poll of other runners' progress, not an order
                reaped = 0.0
        except ClusterLost as exc:
            self.released_as = f"interrupted: {exc.reason}"
            raise
        finally:
            pool.close()

    def _feed(self, pool: Pool) -> None:
        """Claim programs' configurations while the workers could take more tasks (and one more, queued)."""
        while len(pool) < pool.capacity() + self.prefetch:
            work = self.schedule.claim()
            if work is None:
                return
            self._submit(pool, work)

    def _submit(self, pool: Pool, work: Work) -> None:
        spec = self.spec
        self._programs += 1
        self._active[self._programs] = _Program(
            work.group, {config_key(config): (claim, config, {}) for claim, config in work.held}, work.chunks)
        self.state.program(work.slots)
        for k, seeds in enumerate(work.chunks):
            pool.submit((self._programs, k), FitTask(spec.data, spec.model, spec.train, spec.penalty, work.group,
                                                     seeds, self.threads, spec.metrics, work.slots))

    def _collect(self, program: int, chunk: int, outcome: list | FitFailure) -> None:
        """A program's chunk came back: its part of each held configuration (the others, trained for
        company only, are left to whoever holds them)."""
        active = self._active[program]
        n = len(active.chunks[chunk])
        failed = isinstance(outcome, FitFailure)
        if not isinstance(outcome, FitFailure):
            self.state.timed(sum(r.fit_seconds for r in outcome), max(r.peak_memory_mb for r in outcome))
        for i, config in enumerate(active.group):
            key = config_key(config)
            if key not in active.held:
                continue
            claim, _, parts = active.held[key]
            if isinstance(outcome, FitFailure):
                parts[chunk] = outcome
            else:
                parts[chunk] = outcome[i * n:(i + 1) * n]
                self.state.fitted(n)
            if len(parts) == len(active.chunks):
                del active.held[key]
                self._finish(claim, config, parts, program)
        if not failed and self.state.compiling():
            self.state.status("fitting")
        if not active.held:
            del self._active[program]

    # ------------------------------------------------------------------ storing

    def _finish(self, claim: Claim, config: Configuration, parts: dict[int, list | FitFailure], program: int) -> None:
        """Aggregate a configuration's chunks; the writer thread stores it while the next ones are fitted."""
        failures = [o for o in parts.values() if isinstance(o, FitFailure)]
        if failures:
            # Counted here, not in the writer: the budget must stop the next claim. The budget counts
            # failed programs: one error fails every configuration its program trains.
            self.state.program_failed(program, self.spec.max_failures, failures[0].reason)
            self.state.say(f"{config.label}: failed: {failures[0].reason}")
            self.writer.submit(partial(self.storing.fail, claim, failures[0]))
            return
        spec = self.spec
        results = [r for _, rs in sorted(parts.items()) if not isinstance(rs, FitFailure) for r in rs]
        record = trial_record(results, spec.train.epochs, spec.train.record_step, spec.metrics, spec.maximize,
                              self.means.rows)
        self.writer.submit(partial(self.storing.store, claim, config, record))

    def _wait_for_others(self) -> bool:
        """Say what other runners are fitting; True if this runner should wait for them."""
        others = self.queue.running_elsewhere(self.heartbeat.held())
        if not others:
            return False
        numbers = tuple(t.number for t in others)
        if numbers != self._waiting_for:
            self._waiting_for = numbers
            held = ", ".join(f"{t.user_attrs.get(LABEL_ATTR, f'trial {t.number}')} "
                             f"({t.user_attrs.get(RUNNER_ATTR, 'unknown runner')})" for t in others[:5])
            more = f" and {len(others) - 5} more" if len(others) > 5 else ""
            verb = "waiting for" if self.means.wait else "not waiting for"
            self.state.say(f"nothing left to claim; {verb} {len(others)} configuration(s) that other runners "
                           f"are fitting: {held}{more}")
        self.storing.count_study(now=True)
        return self.means.wait

    def _close(self) -> None:
        """Store what is finished; what is still held (an interruption) is failed as interrupted and queued
        again; the threads are joined."""
        try:
            self.writer.close()
        finally:
            try:
                for trial_id in self.heartbeat.held():
                    self.queue.release(trial_id, self.released_as)
            except StorageUnavailable:
                pass  # the storage is away: the claims go stale and the next runner retries them
            finally:
                self.heartbeat.close()
                self.ticker.close()
