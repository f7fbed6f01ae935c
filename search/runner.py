"""Run a study: claim configurations -> fit them over seeds (joblib) -> finish their trials.

A study is a shared queue (see :mod:`search.store.claims`): any number of ``actreg run``
processes, on any machines that reach the storage, claim the configurations of one
compiled program at a time (see :func:`search.study.space.program_groups`), fit them and
finish their trials; a runner that finds nothing left to claim waits for the
configurations other runners hold (taking over those whose runner died) and then stops.
Resuming is the same thing with one runner: what is stored is skipped, what was
interrupted is claimed again. A race (``[race]``, see :mod:`search.results.race`) queues
each look's block of replicates once the previous look is taken, by whichever runner
finds it complete.

Failures are data. A configuration whose loss became NaN or infinite is stored as
diverged (see :mod:`search.results.records`); one whose fit raised is a FAIL trial with its
reason (every configuration of a program that raised), and the run goes on until more than
``max_failures`` programs failed in it. A worker process that dies costs its chunks a retry
(see :class:`search.engine.parallel.FitPool`).
"""

from __future__ import annotations

import queue
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, TextIO

from search import interrupt
from search.engine import runtime
from search.engine.checks import activation_bytes, check_study
from search.engine.parallel import FitFailure, FitPool, FitTask, chunk_seeds
from search.results.records import selection_rank, summary_frame, trial_record
from search.results.stats import ALPHA, VERDICT_MIN_PAIRS, baseline_comparison, verdict_labels
from search.results.dashboard import save_notes
from search.results.race import block_seeds, looks_of, next_look, planned_fits, race_notes, racing
from search.store.claims import Claim, Heartbeat, StudyQueue, block_key, config_key
from search.store.outage import StorageUnavailable
from search.store.schema import (DIVERGED, LABEL_ATTR, OK, RACE_BLOCK_ATTR, RACE_REASON, RUNNER_ATTR, SEEDS_ATTR,
                                 STATUS_ATTR)
from search.store.storage import redact
from search.study.metrics import METRIC_LABELS
from search.study.space import (Configuration, distributions, grid, iter_param_names, planned, program_groups,
                                program_of, suggest)
from search.study.spec import StudySpec

if TYPE_CHECKING:
    import pandas as pd

# Seconds between two counts of the study's complete trials for the progress bar (what other
# runners stored): the count reads the study, which costs more the more configurations wait.
COUNT_EVERY_S = 5.0


@dataclass(frozen=True)
class RunReport:
    """What one call of :func:`run_study` did; ``summary`` has one row per stored configuration.

    Counts are of configurations: ``configurations_run`` were fitted and stored by this
    runner (``configurations_diverged`` of them diverged), ``configurations_failed``
    raised, ``configurations_skipped`` were stored before this run began and
    ``configurations_by_others`` were stored meanwhile by other runners. ``stopped``
    says why the run stopped early (the failure budget), else ``None``. ``training_seconds``
    is the time the programs took to fit (XLA compiles a program at its first fit in a
    process: included), summed over the processes that fitted them, beside ``wall_seconds``;
    ``peak_memory_mb`` the largest peak resident memory of one of those processes. ``storage``
    is the storage URL with any password masked. ``comparison`` holds each configuration's
    paired statistics and verdict against the baseline (see :mod:`search.results.stats`).
    """

    study_name: str
    storage: str
    configurations_run: int
    configurations_skipped: int
    fits: int
    wall_seconds: float
    summary: pd.DataFrame
    configurations_diverged: int = 0
    configurations_failed: int = 0
    configurations_by_others: int = 0
    stopped: str | None = None
    comparison: pd.DataFrame | None = None
    training_seconds: float = 0.0  # the programs' fit time (XLA's compilation included), summed over processes
    peak_memory_mb: float = 0.0  # the largest peak resident memory of a process that fitted them
    models_per_program: int = 0  # the largest program's models (configurations x seeds of a chunk)

    @property
    def _metric(self) -> str:
        """The objective: the metric the summary ranks by."""
        return next(c[len("rank_test_"):] for c in self.summary.columns if c.startswith("rank_test_"))

    def _best(self) -> str:
        from search.results.records import selection_rank

        if self.summary.empty:
            return "no configuration stored"
        m = self._metric
        ok = self.summary[self.summary[STATUS_ATTR] == OK]
        if ok.empty:
            return "every configuration diverged"
        best = ok.sort_values(selection_rank(ok, m)).iloc[0]
        return (f"best {best['configuration']}: test {METRIC_LABELS.get(m, m)} {best[f'mean_test_{m}']:.3f} ± "
                f"{best[f'std_test_{m}']:.3f}")

    def __repr__(self) -> str:
        others = f", {self.configurations_by_others} by other runners" if self.configurations_by_others else ""
        return (f"RunReport(study {self.study_name!r}: {self.configurations_run} configurations run "
                f"({self.configurations_diverged} diverged), {self.configurations_failed} failed, "
                f"{self.configurations_skipped} already stored{others}; {self.fits} fits in "
                f"{self.wall_seconds:.1f} s; {self._best()}; .summary and .comparison hold the tables)")

    def _repr_html_(self) -> str:
        """A notebook's view: the counts, then each configuration's mean ± std and verdict, best first."""
        import html

        from search.results.records import selection_rank

        head = html.escape(repr(self)[len("RunReport("):-1])
        if self.summary.empty:
            return f"<p><b>RunReport</b> {head}</p>"
        m = self._metric
        frame = self.summary.sort_values(selection_rank(self.summary, m))
        verdicts = verdict_labels(self.comparison)
        rows = "".join(
            f"<tr><td>{html.escape(r['configuration'])}</td><td>{int(r['n_seeds'])}</td>"
            f"<td>{r[f'mean_test_{m}']:.3f} ± {r[f'std_test_{m}']:.3f}</td>"
            f"<td>{html.escape(verdicts.get(r['configuration'], '–'))}</td></tr>" if r[STATUS_ATTR] == OK else
            f"<tr><td>{html.escape(r['configuration'])}</td><td>{int(r['n_seeds'])}</td><td>diverged</td>"
            "<td>–</td></tr>" for _, r in frame.head(20).iterrows())
        more = f"<p>… {len(frame) - 20} more in <code>.summary</code></p>" if len(frame) > 20 else ""
        return (f"<p><b>RunReport</b> {head}</p><table><thead><tr><th>configuration</th><th>seeds</th>"
                f"<th>test {html.escape(METRIC_LABELS.get(m, m))} (mean ± std)</th><th>verdict</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>{more}")


def run_study(spec: StudySpec, *, backend: str = "loky", progress: bool | None = None,
              stream: TextIO | None = None, wait: bool = True) -> RunReport:
    """Run (or resume, or join) the study of ``spec`` and return what this runner did.

    ``backend`` is the joblib backend that fits the seeds ("loky", or "dask" with a
    Dask client configured). ``progress`` shows a progress bar on ``stream`` (default:
    only when it is a terminal). With ``wait`` (the default), a runner that finds
    nothing left to claim waits until the configurations other runners hold are stored,
    and takes over those whose runner died; without it, it returns at once.

    On KeyboardInterrupt the configurations this runner holds are failed as interrupted
    and queued again at once, so other runners (or the next run) continue them.
    """
    started = time.perf_counter()
    data = check_study(spec)  # bad data or a model that cannot take it: an error before anything is written
    stream = stream or sys.stderr
    cluster = _connect(spec) if spec.scheduler is not None else None  # likewise a cluster that cannot run it
    try:
        return _run(spec, backend, progress, stream, wait, cluster, data, started)
    finally:
        if cluster is not None:
            from search.engine.cluster import close

            close(cluster[0])


def _connect(spec: StudySpec) -> tuple[Any, Any]:
    """The Dask client of ``spec.scheduler`` and what its workers need, after checking the workers."""
    from search.engine.cluster import check_workers, connect, shipment_for

    client = connect(spec.scheduler)
    try:
        shipment = shipment_for(spec)
        check_workers(client, spec, shipment)
    except BaseException:
        client.close()
        raise
    return client, shipment


def _run(spec: StudySpec, backend: str, progress: bool | None, stream: TextIO, wait: bool,
         cluster: tuple[Any, Any] | None, data: Any, started: float) -> RunReport:
    bar = _progress(spec, progress, stream)  # from the first second; counted once the queue is read
    bar.set_postfix_str("opening the storage")
    queue = None
    try:
        queue, created = StudyQueue.open(spec, runtime.versions())
        queue.reap()
        skipped = _stored(queue, spec)
        if spec.sampler == "grid":
            queue.fill_grid(grid(spec.space), lambda c: distributions(c, spec.space), created,
                            None if spec.race is None else 0)
        if spec.race is not None:  # a race resumed: its current block again where it failed or was lost
            taken = queue.race()
            if racing(spec, taken) and len(taken) < len(looks_of(spec)):
                queue.enqueue_missing(racing(spec, taken), lambda c: distributions(c, spec.space), block=len(taken))
        run = _Runner(spec, queue, backend, bar, stream, wait, skipped, data, cluster)
    except BaseException:
        bar.leave = False  # the error's line alone, without an empty bar above it
        bar.close()
        if queue is not None:
            queue.close()
        raise
    try:
        try:
            run.drain()
        finally:
            run.close()
        trials, names = queue.trials(), list(iter_param_names(spec.space))
        race = queue.race() if spec.race is not None else None
        by_others = max(0, _stored(queue, spec) - skipped - run.configurations)
    finally:
        queue.close()
    summary = summary_frame(trials, names, spec.objective, spec.maximize)
    comparison = baseline_comparison(trials, names, spec.objective, spec.rope, race=race)
    return RunReport(spec.name, redact(spec.storage), run.configurations, skipped, run.fits,
                     time.perf_counter() - started, summary, run.diverged, run.failed, by_others, run.stopped,
                     comparison, run.training_seconds, run.peak_memory_mb, run.largest_program)


def _stored(queue: StudyQueue, spec: StudySpec) -> int:
    """Configurations stored in the study: with a complete trial (in a race, with a complete first block)."""
    if spec.race is None:
        return queue.completed_count()
    from search.results.records import complete_trials

    return len(complete_trials(queue.trials()))


class _Runner:
    """One runner's loop: claim configurations as workers free up, fit them, store them; until none is left."""

    def __init__(self, spec: StudySpec, queue: StudyQueue, backend: str, bar: Any, stream: TextIO, wait: bool,
                 skipped: int, data: Any, cluster: tuple[Any, Any] | None = None) -> None:
        self.spec, self.queue, self.backend, self.bar, self.stream, self.wait = spec, queue, backend, bar, stream, wait
        self.cluster = cluster  # (Dask client, shipment): the fits run there
        self.rows = data.rows  # training, test and validation rows: accuracies are exact fractions of them
        self.n_jobs = runtime.resolve_n_jobs(spec.n_jobs)
        # TensorFlow threads per task: the local cores shared by the workers; on a Dask cluster one,
        # for one worker process per core (`dask worker --nworkers CORES --nthreads 1`).
        self.threads = 1 if cluster is not None else runtime.threads_per_worker(self.n_jobs)
        self._model_bytes = activation_bytes(spec, data.rows, data.input_shape)
        self._plans: dict[int | None, _Plan] = {}  # per block of a race (None: every seed at once)
        self._programs = 0  # programs submitted, to key their tasks
        # A chunk queued beyond the workers' count starts the moment one is free, instead of after
        # the next claim (a claim takes 0.1 s of storage round trips on SQLite).
        self.prefetch = 0 if self.n_jobs == 1 and backend in ("loky", "sequential") and cluster is None else 1
        queue.storage.say = self.say  # an outage of the storage is told on the bar's stream
        for note in queue.notes:
            self.say(note)
        self.heartbeat = Heartbeat(queue.storage)
        self.writer = _Writer()
        self.completed = self.diverged = self.failed = self.fits = 0
        self.training_seconds = self.peak_memory_mb = 0.0
        self._failed_programs: set[int] = set()  # the programs that failed in this run, against max_failures
        self.stopped: str | None = None
        # The reason a claim still held when the runner closes is failed with (and queued again).
        self.released_as = "interrupted: the runner was stopped (Ctrl-C or SIGTERM)"
        self.skipped = skipped
        self.stored_configs: set[str] = set()  # the configurations this runner stored something of
        self.largest_program = 0  # models
        if spec.race is None:
            self.bar.reset(total=max(0, planned(spec) - skipped) * len(spec.seeds))
        else:  # what the race may still fit: it shrinks as configurations stop
            self.bar.reset(total=max(0, planned_fits(spec, queue.race()) - self._race_fits_stored()))
        self._waiting_for: tuple[int, ...] = ()
        self._counted = time.monotonic()  # when the bar last counted the study's complete trials
        # Until the first chunk returns, the workers start and compile (seconds): say so, and keep
        # the clock moving between chunks.
        self.bar.set_postfix_str("starting workers, compiling")
        self._ticking = threading.Event()
        threading.Thread(target=self._tick, name="actreg-progress", daemon=True).start()

    def plan(self, block: int | None) -> _Plan:
        """The chunks of seeds and the programs of ``block`` (a race's; ``None``: the whole study)."""
        if block not in self._plans:
            spec = self.spec
            if block is None:
                seeds, configs = spec.seeds, grid(spec.space) if spec.sampler == "grid" else []
                self._plans[block] = _Plan.of(spec, seeds, configs, self._model_bytes)
            else:
                seeds, configs = block_seeds(spec, block), racing(spec, self.queue.race()[:block])
                self._plans[block] = _Plan.of(spec, seeds, configs, self._model_bytes, self._race_slots())
        return self._plans[block]

    def _race_slots(self) -> dict[str, int]:
        """The models each program of a race is compiled for, the same at every block: as many as its
        largest group in the widest chunk of any block. Blocks grow and configurations stop, and a
        program of another size is another compilation (seconds, and memory TensorFlow keeps: loky
        restarts a worker whose memory grew by 300 MB)."""
        spec, slots = self.spec, {}
        counts: dict[str, int] = {}
        for config in grid(spec.space):
            counts[program_of(config)] = counts.get(program_of(config), 0) + 1
        for block in range(len(looks_of(spec))):
            width = max(len(c) for c in chunk_seeds(block_seeds(spec, block), spec.chunk_size))
            per_program = spec.configs_per_program(width, self._model_bytes)
            for program, n in counts.items():
                slots[program] = max(slots.get(program, 0), width * min(per_program, n))
        return slots

    def _race_fits_stored(self) -> int:
        """Fits of the race stored so far (a resumed race's bar counts from there)."""
        import optuna

        complete = self.queue.trials((optuna.trial.TrialState.COMPLETE,))
        return sum(len(t.user_attrs.get(SEEDS_ATTR, [])) for t in complete)

    def _tick(self) -> None:
        while not self._ticking.wait(1.0):
            self.bar.refresh()

    def say(self, message: str) -> None:
        self.bar.write(message, file=self.stream)

    def drain(self) -> None:
        """Claim, fit and store until nothing is left (or the failure budget is spent)."""
        if self.cluster is not None:
            from search.engine.cluster import DaskPool

            pool: Any = DaskPool(*self.cluster)
        else:
            pool = FitPool(self.n_jobs, self.backend, self.spec.worker_retries, self.say)
        # program -> (its configurations, {held configuration's key: (claim, configuration, {chunk: outcome})},
        # its chunks of seeds)
        active: dict[int, tuple[tuple[Configuration, ...], dict[str, tuple[Claim, Configuration, dict]], list]] = {}
        poll = max(1.0, min(5.0, self.queue.grace / 4))
        reaped = 0.0
        from search.engine.cluster import ClusterLost

        try:
            while True:
                interrupt.check()  # a Ctrl-C or SIGTERM whose exception was swallowed stops here
                self.writer.check()
                if self.stopped is None and len(pool) < pool.capacity() + self.prefetch:
                    if time.monotonic() - reaped > poll:
                        self.queue.reap()
                        reaped = time.monotonic()
                    self._feed(pool, active)
                if len(pool):
                    for (program, chunk), outcome in pool.wait():
                        self._collect(active, program, chunk, outcome)
                    continue
                self.writer.flush()  # what this runner still holds is being stored, not run elsewhere
                if self.stopped is None and self.spec.race is not None and self._take_look():
                    continue
                if self.stopped is not None or not self._wait_for_others():
                    return
                time.sleep(poll)
                reaped = 0.0
        except ClusterLost as exc:
            self.released_as = f"interrupted: {exc.reason}"
            raise
        finally:
            pool.close()

    def _feed(self, pool: FitPool, active: dict) -> None:
        """Claim programs' configurations while the workers could take more tasks (and one more, queued)."""
        spec = self.spec
        while len(pool) < pool.capacity() + self.prefetch:
            got = self._claim_grid() if spec.sampler == "grid" else self._claim_tpe()
            if got is None:
                return
            held, group, block = got
            plan = self.plan(block)
            self._programs += 1
            active[self._programs] = (group, {config_key(config): (claim, config, {}) for claim, config in held},
                                      plan.chunks)
            slots = plan.slots.get(program_of(group[0]), plan.width)
            self.largest_program = max(self.largest_program, slots)
            for k, seeds in enumerate(plan.chunks):
                pool.submit((self._programs, k), FitTask(spec.data, spec.model, spec.train, spec.penalty, group, seeds,
                                                         self.threads, spec.metrics, slots))

    def _collect(self, active: dict, program: int, chunk: int, outcome: list | FitFailure) -> None:
        """A program's chunk came back: its part of each held configuration (the others, trained for
        company only, are left to whoever holds them)."""
        group, held, chunks = active[program]
        n = len(chunks[chunk])
        if not isinstance(outcome, FitFailure):
            self.training_seconds += sum(r.fit_seconds for r in outcome)
            self.peak_memory_mb = max(self.peak_memory_mb, *(r.peak_memory_mb for r in outcome))
        for i, config in enumerate(group):
            if config_key(config) not in held:
                continue
            claim, _, parts = held[config_key(config)]
            parts[chunk] = outcome if isinstance(outcome, FitFailure) else outcome[i * n:(i + 1) * n]
            if not isinstance(outcome, FitFailure):
                self.fits += n
                self.bar.update(n)
            if len(parts) == len(chunks):
                del held[config_key(config)]
                self._finish(claim, config, parts, program)
        if self.bar.postfix and "compiling" in self.bar.postfix and not isinstance(outcome, FitFailure):
            self.bar.set_postfix_str("fitting")
        if not held:
            del active[program]

    @property
    def configurations(self) -> int:
        """Configurations this runner stored (in a race, something of: a configuration has several blocks)."""
        return self.completed if self.spec.race is None else len(self.stored_configs)

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
            verb = "waiting for" if self.wait else "not waiting for"
            self.say(f"nothing left to claim; {verb} {len(others)} configuration(s) that other runners "
                     f"are fitting: {held}{more}")
        self._refresh_bar(now=True)
        return self.wait

    # ------------------------------------------------------------------ claiming

    def _claim_grid(self) -> tuple[list[tuple[Claim, Configuration]], tuple[Configuration, ...], int | None] | None:
        """A waiting configuration and the others of its program's group that are waiting too: the
        claims, the group (which the program trains whole, whoever holds the rest) and the race's block."""
        while True:
            claim = self.queue.claim_waiting(keyed=True)
            if claim is None:
                return None
            block = claim.trial.user_attrs.get(RACE_BLOCK_ATTR) if self.spec.race is not None else None
            held = self._hold(claim, block)
            if held is not None:
                break
        config = held[1]
        group = self.plan(block).group_of.get(config_key(config), (config,))
        claims = [held]
        for other in group:
            if other != config and (more := self.queue.claim_key(block_key(other, block))) is not None:
                if (also := self._hold(more, block)) is not None:
                    claims.append(also)
        return claims, group, block

    def _hold(self, claim: Claim, block: int | None = None) -> tuple[Claim, Configuration] | None:
        """``claim`` and its configuration, held with a heartbeat; ``None`` when it is a twin (the same
        configuration queued twice by runners that started together), which is superseded."""
        self.heartbeat.hold(claim.trial_id)
        config = Configuration.from_params(claim.trial.params)
        twin = self.queue.twin_of(claim, block_key(config, block))
        if twin is None:
            return claim, config
        self.queue.supersede(claim, twin.number)
        self.heartbeat.drop(claim.trial_id)
        return None

    def _take_look(self) -> bool:
        """Take the race's next look if every configuration racing in it has its replicates; queue the
        next block for those still racing. True when there is new work to claim."""
        queue, spec = self.queue, self.spec
        taken, trials = queue.race(), queue.trials()
        look = next_look(spec, trials, taken)
        if look is None:
            return False
        recorded = queue.record_look([*taken, look])
        ours, taken = recorded[-1] is look, recorded
        look = taken[-1]
        if ours:  # the dashboard shows where the race stands: the study's note and the stopped blocks' notes
            self.writer.submit(partial(save_notes, queue.storage, queue.study_id, *race_notes(spec, trials, taken)))
        stopped = {k: d for k, d in look["decisions"].items() if d["stopped"]}
        still = racing(spec, taken)
        tally = ", ".join(f"{count} {name}" for name, count in _tally(stopped).items()) or "none stopped"
        self.say(f"race: look {look['look'] + 1} of {len(looks_of(spec))} at {look['replicates']} replicates: "
                 f"{tally}; {max(0, len(still) - 1)} still racing")
        self.bar.total = self.bar.n + max(0, planned_fits(spec, taken) - self._race_fits_stored())
        self.bar.refresh()
        if not still or len(taken) >= len(looks_of(spec)):
            return False
        queue.enqueue_missing(still, lambda c: distributions(c, spec.space), block=len(taken))
        return True

    def _claim_tpe(self) -> tuple[list[tuple[Claim, Configuration]], tuple[Configuration, ...], None] | None:
        got = self._claim_suggested()
        return None if got is None else ([got], (got[1],), None)

    def _claim_suggested(self) -> tuple[Claim, Configuration] | None:
        while True:
            claim = self.queue.claim_waiting(keyed=False)  # retries of trials whose runner died come first
            if claim is None:
                if self.queue.counted() >= self.spec.n_trials:
                    return None
                claim = self.queue.claim_new()
            self.heartbeat.hold(claim.trial_id)
            if self.queue.counted_before(claim) >= self.spec.n_trials:  # n_trials are live already
                self.queue.supersede(claim, None)
                self.heartbeat.drop(claim.trial_id)
                return None
            config = suggest(claim.trial, self.spec.space)
            self.queue.label(claim, config)
            twin = self.queue.completed_twin(config_key(config))
            if twin is None:
                return claim, config
            # The sampler proposed a configuration already measured: same seeds, same numbers.
            self.queue.complete_as_twin(claim, twin)
            self.heartbeat.drop(claim.trial_id)
            self.bar.update(len(self.spec.seeds))

    # ------------------------------------------------------------------ storing

    def _finish(self, claim: Claim, config: Configuration, parts: dict[int, list | FitFailure], program: int) -> None:
        """Aggregate a configuration's chunks; the writer thread stores it while the next ones are fitted."""
        failures = [o for o in parts.values() if isinstance(o, FitFailure)]
        if failures:
            # Counted here, not in the writer: the budget must stop the next claim. The budget counts
            # failed programs: one error fails every configuration its program trains.
            self.failed += 1
            self._failed_programs.add(program)
            self.say(f"{config.label}: failed: {failures[0].reason}")
            if len(self._failed_programs) > self.spec.max_failures:
                self.stopped = (f"{len(self._failed_programs)} programs failed in this run ({self.failed} "
                                f"configurations), more than max_failures = {self.spec.max_failures}; stopped. "
                                f"The last: {failures[0].reason}")
            self.writer.submit(partial(self._fail, claim, failures[0]))
            return
        spec = self.spec
        results = [r for _, rs in sorted(parts.items()) for r in rs]
        record = trial_record(results, spec.train.epochs, spec.train.record_step, spec.metrics, spec.maximize,
                              self.rows)
        self.writer.submit(partial(self._store, claim, config, record))

    def _store(self, claim: Claim, config: Configuration, record) -> None:
        """Finish ``claim``'s trial COMPLETE with ``record`` (in the writer thread)."""
        try:
            stored = self.queue.complete(claim, record.value, record.user_attrs, record.system_attrs,
                                         record.intermediate_values)
        finally:
            self.heartbeat.drop(claim.trial_id)
        if not stored:
            # Failed as stale by another runner (this one stalled longer than the grace period);
            # the retry it queued stores the configuration.
            self.say(f"{config.label}: lost its claim (no heartbeat for {self.queue.grace} s); "
                     "another runner fits it again")
            return
        self.completed += 1
        self.stored_configs.add(config_key(config))
        if record.status == DIVERGED:
            self.diverged += 1
            a = record.user_attrs
            self.say(f"{config.label}: diverged on {a['n_diverged']} of {len(a['seeds'])} seeds "
                     f"(first at epoch {min(a['diverged_epochs'])}); stored as diverged")
        self.bar.set_postfix_str(f"{config.label}: " + (f"{record.value:.3f}" if record.status == OK else "diverged"))
        self._refresh_bar()

    def _fail(self, claim: Claim, failure: FitFailure) -> None:
        """Finish ``claim``'s trial FAIL with the reason (in the writer thread)."""
        try:
            self.queue.fail(claim, failure.reason, failure.details)
        finally:
            self.heartbeat.drop(claim.trial_id)

    def _refresh_bar(self, now: bool = False) -> None:
        """Count what other runners stored too (every few seconds: the count reads the study), so
        that the bar shows the study's progress."""
        if self.spec.race is None and (now or time.monotonic() - self._counted > COUNT_EVERY_S):
            done = self.queue.completed_count() - self.skipped
            self.bar.n = min(self.bar.total, max(self.bar.n, done * len(self.spec.seeds)))
            self._counted = time.monotonic()
        self.bar.refresh()

    def close(self) -> None:
        """Store what is finished; what is still held (an interruption) is failed as interrupted and queued again."""
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
            self._ticking.set()
            self.bar.close()


@dataclass(frozen=True)
class _Plan:
    """How a study's (or a race block's) seeds and configurations become tasks: the chunks of seeds,
    each configuration's program group, and the models each program of a placement is compiled for.

    The groups are fixed by the configurations and ``models_per_program``, whoever claims them (see
    :func:`search.study.space.program_groups`); every program of a placement is compiled for as
    many models as its largest (a smaller one fills its slots), so a process compiles it once.
    """

    chunks: list[tuple[int, ...]]
    group_of: dict[str, tuple[Configuration, ...]]
    slots: dict[str, int]
    width: int

    @classmethod
    def of(cls, spec: StudySpec, seeds: Sequence[int], configs: Sequence[Configuration],
           model_bytes: int | None, slots: dict[str, int] | None = None) -> _Plan:
        """The plan of ``configs`` on ``seeds``; ``slots`` fixes the programs' sizes (a race's)."""
        chunks = chunk_seeds(seeds, spec.chunk_size)
        width = max(len(c) for c in chunks)
        groups = program_groups(configs, spec.configs_per_program(width, model_bytes)) if configs else []
        if slots is None:
            slots = {}
            for g in groups:
                slots[program_of(g[0])] = max(slots.get(program_of(g[0]), 0), width * len(g))
        return cls(chunks, {config_key(c): g for g in groups for c in g}, slots, width)


def _tally(decisions: dict[str, dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for d in decisions.values():
        name = d["reason"] if d["reason"] in ("futile", "diverged", "baseline diverged", "last look") else d["verdict"]
        counts[name] = counts.get(name, 0) + 1
    return counts


class _Writer:
    """Runs storage writes in order on a background thread, so that they overlap the next fits.

    A finished configuration is about a hundred small writes; the runner meanwhile claims
    and fits the next ones. An error in a write is raised again in the runner's thread by
    :meth:`check` (or :meth:`close`).
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue = queue.Queue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._work, name="actreg-writer", daemon=True)
        self._thread.start()

    def submit(self, job) -> None:
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if not self._errors:
                    job()
            except BaseException as exc:  # noqa: BLE001 - handed to the runner's thread
                self._errors.append(exc)
            finally:
                self._jobs.task_done()

    def check(self) -> None:
        if self._errors:
            raise self._errors[0]

    def flush(self) -> None:
        self._jobs.join()
        self.check()

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()
        self.check()


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (whose stderr is no terminal, yet shows a bar)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def _progress(spec: StudySpec, enabled: bool | None, stream: TextIO) -> Any:
    """The progress bar: on a terminal (by default only there), and in a Jupyter notebook, as its widget
    where ipywidgets is installed, else as text in the cell's output (tqdm.auto would warn)."""
    notebook = in_notebook()
    if enabled is None:
        enabled = True if notebook else None  # None: tqdm's own rule, a bar only on a terminal
    if notebook and enabled:
        try:
            import ipywidgets  # noqa: F401 - tqdm's widget needs it
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar(total=0, unit="fit", desc=spec.name)
        except ImportError:
            pass
    from tqdm.std import tqdm

    disable = None if enabled is None else not enabled
    return tqdm(total=0, unit="fit", desc=spec.name, file=stream, disable=disable, dynamic_ncols=True)


def summary_text(summary: pd.DataFrame, metric: str = "accuracy", limit: int = 20,
                 comparison: pd.DataFrame | None = None, varied: str | None = None) -> str:
    """A short, human-readable table of the best configurations (by :func:`search.results.records.selection_rank`),
    with their verdicts against the baseline when ``comparison`` is given; every diverged one is listed
    too. ``varied`` (what varied between replicates) and the rows the ranking was chosen on close it."""
    if summary.empty:
        return "no completed configurations"
    m = metric
    rank = selection_rank(summary, m)
    validated = rank.startswith("rank_validation")
    cols = [c for c in summary.columns if c.startswith("param_")]
    ordered = summary.sort_values([rank] + cols, na_position="first")
    ok = ordered[ordered[STATUS_ATTR] == OK]
    table = _concat(ok.head(limit), ordered[ordered[STATUS_ATTR] != OK])
    judged = verdict_labels(comparison)
    name = METRIC_LABELS.get(m, m)
    head = f"{'rank':>4}  {'configuration':<28}"
    if validated:
        head += f" {f'valid. {name}':>12}"
    head += f" {f'test {name} (mean ± std)':>24}  {f'train {name}':>11}  {'seeds':>5}"
    lines = [head + ("  verdict" if judged else "")]
    for _, row in table.iterrows():
        label = row["configuration"]
        n = int(row["n_seeds"])
        if row[STATUS_ATTR] != OK:
            lines.append(f"{int(row[rank]):>4}  {label:<28} " + (f"{'–':>12} " if validated else "")
                         + f"{f'diverged on {int(row.n_diverged)} of {n} seeds':>24}  {'–':>11}  {n:>5}")
            continue
        line = f"{int(row[rank]):>4}  {label:<28} "
        if validated:
            line += f"{row[f'mean_validation_{m}']:>12.3f} "
        line += (f"{row[f'mean_test_{m}']:>15.3f} ± {row[f'std_test_{m}']:.3f}  "
                 f"{row[f'mean_train_{m}']:>11.3f}  {n:>5}")
        if judged:
            line += f"  {judged.get(label, '–')}"
        lines.append(line)
    if len(ok) > limit:
        lines.append(f"... {len(ok) - limit} more; see `actreg export`")
    chosen = ("ranked by the validation rows; test on rows not used to choose" if validated else
              "ranked by the test rows that report it (no validation rows): the best test value is optimistic")
    lines.append(f"({chosen}" + (f"; varied between seeds: {varied}" if varied else "") + ")")
    if judged and RACE_REASON in comparison.columns:
        rope = comparison["rope"].iloc[0]
        lines.append(f"(verdicts of a race against the baseline, each at the look where the configuration stopped "
                     f"(its seeds); region of practical equivalence ±{rope:g}; at most a {ALPHA:.0%} chance of any "
                     "wrong verdict over all looks for independent replicates; no verdict before "
                     f"{VERDICT_MIN_PAIRS}; `actreg report` for the numbers)")
    elif judged:
        rope = comparison["rope"].iloc[0]
        lines.append(f"(verdict against the baseline, region of practical equivalence ±{rope:g}; "
                     f"at most a {ALPHA:.0%} chance of any wrong verdict for independent replicates; no verdict "
                     f"with fewer than {VERDICT_MIN_PAIRS}; `actreg report` for the numbers)")
    return "\n".join(lines)


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.concat(frames)
