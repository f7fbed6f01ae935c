"""Claims: a study as a shared queue of configurations that any number of runners drain.

Built on Optuna's own mechanisms, so that every runner (on any machine that reaches the
storage) follows the same protocol and optuna-dashboard shows the queue as it is:

* A grid configuration waits as a WAITING trial (its parameters set, so the dashboard
  shows what waits). A runner claims it by turning it RUNNING, which the storage does
  for one process only (see :mod:`search.store.storage` for SQLite), and finishes it COMPLETE
  or FAIL: its start and end times are the fit's.
* A runner beats a heartbeat for every trial it holds. A runner that dies (``kill -9``,
  a machine that vanishes) stops beating; after the study's grace period the next
  runner that looks fails the trial and Optuna's ``RetryHeartbeatStaleTrialCallback``
  queues it again as a new WAITING trial. A live runner's trials are never failed: it
  keeps beating while its workers fit. The heartbeat is recorded *before* a trial is
  claimed, so no claimed trial is ever without one.
* Two runners can queue the same configuration when they start together (Optuna warns
  that ``enqueue_trial`` may duplicate across processes). Rather than a lock of our own,
  one rule settles it: of the live trials (waiting, running or complete) of a
  configuration, the one with the lowest number is the configuration's. A runner that
  claims a trial with a live, lower-numbered twin finishes its own as PRUNED, with the
  user attribute ``superseded_by``, before fitting anything. The same rule counts TPE
  trials: a trial whose number comes after ``n_trials`` live ones is dropped likewise.

This module is Optuna's door: every call into Optuna's storage (the study created or
loaded, its fingerprint recorded, claims, heartbeats, results, failures, reads) is made
here, through :class:`StudyQueue` and :class:`Heartbeat`; :mod:`search.store.storage` opens
the URL. ``tests/test_store_contract.py`` pins, on SQLite and PostgreSQL, the storage
behaviour these rules rely on, so that an Optuna release that changes it fails there by
name. Nothing here fits a model; :mod:`search.runner` does that with the trials claimed here.
"""

from __future__ import annotations

import collections
import contextlib
import os
import socket
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from search.store.schema import (
    CURVES_ATTR,
    DUPLICATE_ATTR,
    FAIL_DETAILS_ATTR,
    FAIL_REASON_ATTR,
    GRACE_ATTR,
    KEY_ATTR,
    LABEL_ATTR,
    PENALTY_ATTR,
    PROCESS_ATTR,
    QUEUED_ATTR,
    RACE_ATTR,
    RACE_BLOCK_ATTR,
    RUNNER_ATTR,
    SPEC_ATTR,
    SUPERSEDED_ATTR,
    VERSIONS_ATTR,
)
from search.store.storage import StudyNotFound, fingerprint_diff, open_storage, redact, spec_fingerprint
from search.study.metrics import METRIC_LABELS
from search.study.race import is_over, looks_of, racing
from search.study.space import Configuration, block_key, config_key, planned
from search.study.validation import SpecError

if TYPE_CHECKING:
    import optuna

    from search.study.spec import StudySpec

MAX_DETAILS = 4000  # characters of a failed fit's traceback kept on its trial
# A runner that joins a new study waits while its creator queues the grid; trials that stop
# growing for this long (seconds) mean a creator that died, or a study of an earlier version.
QUEUE_STILL_S = 3.0


def trial_key(trial: optuna.trial.FrozenTrial) -> str | None:
    """The configuration key of ``trial``; ``None`` for a TPE trial not yet sampled."""
    key = trial.user_attrs.get(KEY_ATTR)
    if key is None and trial.params:
        key = config_key(Configuration.from_params(trial.params))
    return key


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def local_process(pid: int | None = None) -> str | None:
    """An identity of process ``pid`` (default: this one) that only this machine's processes can match.

    The kernel's boot id and the PID namespace say "the same machine, the same process
    table" (two containers with one host name differ here); the process's start time
    tells a PID that was reused. ``None`` where /proc does not say.
    """
    pid = pid or os.getpid()
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
        with open(f"/proc/{pid}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{boot}/{namespace}/{pid}/{started}"


def _gone(process: str | None) -> bool:
    """True if ``process`` (a :func:`local_process` identity) ran on this machine and has ended."""
    mine = local_process()
    if process is None or mine is None:
        return False
    boot, namespace, pid, _ = process.split("/")
    if mine.split("/")[:2] != [boot, namespace]:
        return False  # another machine or container: only its heartbeat can tell
    return local_process(int(pid)) != process


def _live_states():
    import optuna

    S = optuna.trial.TrialState
    return (S.WAITING, S.RUNNING, S.COMPLETE)


@dataclass(frozen=True)
class Claim:
    """A trial this runner holds: the Optuna trial and its storage id."""

    trial: optuna.Trial
    trial_id: int

    @property
    def number(self) -> int:
        return self.trial.number


def load_study(spec: StudySpec, storage: optuna.storages.BaseStorage | None = None) -> optuna.Study:
    """The existing study of ``spec`` (in ``storage``, if open already, else opened to read);
    :class:`StudyNotFound` if never run."""
    import optuna

    storage = storage or open_storage(spec.storage, create=False, access="read", patience=spec.storage_patience)
    try:
        return optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        raise StudyNotFound(f"no study named {spec.name!r} in {redact(spec.storage)}") from None


@contextlib.contextmanager
def reading(spec: StudySpec) -> Iterator[optuna.Study]:
    """The existing study of ``spec`` for a reader (export, report), its connections closed on exit.

    A reader takes no write lock, so a runner suspended mid-write does not block it, and
    reads a file or folder that it may not write (see :func:`search.store.storage.open_storage`).
    On SQLite the last connection to close removes the write-ahead log's files, so a reader
    leaves the study's folder as it found it.
    """
    storage = open_storage(spec.storage, create=False, access="read", patience=spec.storage_patience)
    try:
        yield load_study(spec, storage)
    finally:
        _close(storage)


@contextlib.contextmanager
def annotating(spec: StudySpec) -> Iterator[optuna.Study]:
    """The existing study of ``spec`` for a writer of notes and artifacts (a report), closed on exit.

    Like a reader, it takes no write lock when its transactions begin (a runner suspended
    mid-write does not block it); each of its few writes waits for the lock as SQLite's
    busy timeout allows. The caller has checked that the storage can be written.
    """
    with reading(spec) as study:
        yield study


# What `actreg run` may override on the command line: a stored study that differs from its file
# only there is described as stored; any other difference is refused.
_OVERRIDDEN = {"seeds": "seeds", "train.epochs": "epochs"}


def described(spec: StudySpec, study: optuna.Study) -> tuple[StudySpec, list[str]]:
    """``spec`` as its study was stored, and a line for each way the file differs from it.

    A study run with ``--seeds`` or ``--epochs`` is described with its own seeds and epochs
    (a reader's tables and report must say what was computed); a file edited since the run
    in anything that determines the numbers is refused (:class:`SpecError`), since its
    settings describe another study. A study stored before fingerprints were kept is taken as is.
    """
    from dataclasses import replace

    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        return spec, []
    diff = fingerprint_diff(stored, spec_fingerprint(spec))
    other = [key for key in diff if key not in _OVERRIDDEN]
    if other:
        raise SpecError(spec.path or "<study>", other[0],
                        f"differs from the stored study {spec.name!r} ({', '.join(other)}): the file no longer "
                        "describes it; restore the file, or give the study another name to run it anew")
    notes = []
    if "seeds" in diff:
        spec = replace(spec, seeds=tuple(stored["seeds"]))
        notes.append(f"seeds: study {spec.name!r} was run with {len(spec.seeds)} seeds (the file says otherwise); "
                     "describing the stored study")
    if "train.epochs" in diff:
        spec = replace(spec, train=replace(spec.train, epochs=stored["train"]["epochs"]))
        notes.append(f"train.epochs: study {spec.name!r} was run for {spec.train.epochs} epochs (the file says "
                     "otherwise); describing the stored study")
    return spec, notes


@dataclass(frozen=True)
class Stored:
    """A study as a reader finds it: ``spec`` as stored (see :func:`described`), its trials and versions."""

    spec: StudySpec
    trials: list
    versions: dict
    notes: tuple[str, ...] = ()
    fingerprint: dict | None = None  # as the study recorded it (None in studies stored before fingerprints)
    race: list | None = None  # the looks a race took (see search.results.race); None without [race]

    @property
    def completed(self) -> int:
        """Configurations with a complete trial (in a race, with its first block complete)."""
        import optuna

        done = [t for t in self.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if self.race is not None:
            return len({config_key(Configuration.from_params(t.params)) for t in done})
        return len({trial_key(t) for t in done})

    @property
    def partial(self) -> str | None:
        """``"12 of 17 configurations stored"`` while the study is not complete (a race: ``"race at look 2
        of 6, 9 configurations still racing"`` until it ends), else ``None``."""
        total = planned(self.spec)
        if self.completed < total:
            return f"{self.completed} of {total} configurations stored"
        if self.race is None or is_over(self.spec, self.race):
            return None
        return (f"race at look {len(self.race)} of {len(looks_of(self.spec))}, "
                f"{len(racing(self.spec, self.race)) - 1} configurations still racing")


def read_stored(spec: StudySpec) -> Stored:
    """The stored study of ``spec`` for a reader; :class:`StudyNotFound` if never run, :class:`SpecError`
    if the file no longer describes it."""
    with reading(spec) as study:
        trials = study.get_trials(deepcopy=False)
        spec, notes = described(spec, study)
        versions = study.user_attrs.get(VERSIONS_ATTR, {})
        fingerprint = study.user_attrs.get(SPEC_ATTR)
        race = list(study.user_attrs.get(RACE_ATTR, [])) if spec.race is not None else None
    return Stored(spec, trials, versions, tuple(notes), fingerprint, race)


def _close(storage: optuna.storages.RDBStorage) -> None:
    storage.remove_session()
    storage.engine.dispose()


def study_id(storage: optuna.storages.BaseStorage, name: str) -> int:
    """The storage's id of the study ``name`` (optuna-dashboard's address of its page)."""
    return storage.get_study_id_from_name(name)


class StudyQueue:
    """The queue of one study in one storage, as seen by one runner.

    ``storage`` is the heartbeat-enabled storage the study was opened on (see
    :func:`search.store.storage.open_storage`); :meth:`open` opens both from a spec.
    """

    @classmethod
    def open(cls, spec: StudySpec, versions: dict[str, str], say: Callable[[str], None] | None = None
             ) -> tuple[StudyQueue, bool]:
        """Create or load the study of ``spec`` and return its queue, and whether this process created it.

        A new study records the fingerprint of ``spec`` (the settings that determine the
        numbers), its penalty convention and the library ``versions``; an existing one must
        match its fingerprint, else :class:`SpecError` says which settings differ.
        """
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        storage = open_storage(spec.storage, create=True, grace=spec.heartbeat_grace, patience=spec.storage_patience,
                               say=say)
        sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed) if spec.sampler == "tpe" else None
        direction = "maximize" if spec.maximize else "minimize"
        try:  # of runners starting together, exactly one creates the study
            study = optuna.create_study(study_name=spec.name, storage=storage, direction=direction, sampler=sampler)
            created = True
        except optuna.exceptions.DuplicatedStudyError:
            study, created = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler), False
        try:
            _check_or_record_spec(study, spec, versions, created)
            notes = _use_the_study_grace(study, storage, spec)
            _name_the_metric(study, spec)
        except BaseException:
            _close(storage)
            raise
        queue = cls(study, storage, storage.grace_period or spec.heartbeat_grace)
        queue.notes = notes
        return queue, created

    def __init__(self, study: optuna.Study, storage: optuna.storages.RDBStorage, grace: int) -> None:
        self.study = study
        self.storage = storage
        self.grace = grace
        self.study_id = storage.get_study_id_from_name(study.study_name)
        self.runner = runner_id()
        self.notes: list[str] = []  # what a runner should tell its user about the study it joined
        # A claim costs the same on a grid of 20 or 2,000 configurations: the WAITING trials are
        # read once and claimed from this list (re-read when it runs out); the live trials of
        # each configuration, read once, tell a claim's twins (see :meth:`twin_of`).
        self._waiting: collections.deque[tuple[int, str | None]] = collections.deque()
        self._live_by_key: dict[str | None, list[int]] = {}
        self._horizon = -1  # the highest trial number when _live_by_key was read

    def trials(self, states: Sequence | None = None) -> list[optuna.trial.FrozenTrial]:
        """The study's trials in ``states``, read through the study's cache.

        Optuna's cache keeps finished trials and reads unfinished and new ones again on
        every call: claims see fresh states, and the large attributes of complete trials
        are read once (listing them all cost 0.1 s per call on the seed-circles grid).
        """
        return self.study.get_trials(deepcopy=False, states=tuple(states) if states is not None else None)

    def _read(self, states: Sequence) -> list[optuna.trial.FrozenTrial]:
        """The study's trials in ``states``, read from the storage past the study's cache (which
        would read every unfinished trial again, the whole grid at first)."""
        return self.storage.get_all_trials(self.study_id, deepcopy=False, states=tuple(states))

    def close(self) -> None:
        """Close this runner's connections to the storage. On SQLite the last connection to close
        folds the write-ahead log into the database file: the study's file is whole when the run
        returns, and a later reader writes nothing."""
        _close(self.storage)

    def completed(self) -> list[optuna.trial.FrozenTrial]:
        """The study's complete trials."""
        import optuna

        return self.trials((optuna.trial.TrialState.COMPLETE,))

    def completed_count(self) -> int:
        """Configurations with a complete trial."""
        import optuna

        return len({trial_key(t) for t in self.trials((optuna.trial.TrialState.COMPLETE,))})

    def completed_twin(self, key: str) -> optuna.trial.FrozenTrial | None:
        """A complete trial of the configuration ``key``, if any."""
        import optuna

        return next((t for t in self.trials((optuna.trial.TrialState.COMPLETE,)) if trial_key(t) == key), None)

    # ------------------------------------------------------------------ the queue

    def fill_grid(self, configs: Iterable[Configuration], distributions, created: bool, block: int | None = None
                  ) -> None:
        """Queue the grid's configurations that have no live trial.

        Runners that start together would each queue the whole grid (the duplicates are
        harmless, see the module, but clutter the dashboard), so on a new study the runner
        that created it queues the grid and the others wait for it, up to the grace period
        (its creator may have died), or until its trials stop growing for :data:`QUEUE_STILL_S`
        (a creator that died while queuing; a study stored by an earlier version, which has
        trials but not the mark). Waiting while trials appear matters: a runner that queued as
        soon as it saw a few trials queued most of the grid twice (66 duplicates of 8 runners).
        """
        study = self.study
        if not created and QUEUED_ATTR not in study.user_attrs:
            self._wait_for_the_queue()
        self.enqueue_missing(configs, distributions, block)
        if QUEUED_ATTR not in study.user_attrs:
            study.set_user_attr(QUEUED_ATTR, True)

    def _wait_for_the_queue(self) -> None:
        """Wait while the study's creator queues the grid: until it marks the study queued, or its
        trials stop growing (a creator that died, or a study of an earlier version, which has
        trials and no mark), at most the grace period."""
        deadline = time.monotonic() + self.grace
        last, since = self.last_number(), time.monotonic()
        while time.monotonic() < deadline and QUEUED_ATTR not in self.storage.get_study_user_attrs(self.study_id):
            time.sleep(0.2)
            now = self.last_number(last)
            if now != last:
                last, since = now, time.monotonic()
            elif last >= 0 and time.monotonic() - since > QUEUE_STILL_S:
                return

    def enqueue_missing(self, configs: Iterable[Configuration], distributions, block: int | None = None) -> int:
        """Queue every configuration of ``configs`` that has no live trial; returns how many.

        A configuration whose trials all failed is queued again: a new run retries it.
        ``distributions(config)`` gives the Optuna distributions of its parameters. In a race,
        ``block`` says which block of replicates the trials hold (see :func:`block_key`).
        """
        import optuna

        live = {trial_key(t) for t in self.trials(_live_states())}
        added = 0
        for config in configs:
            key = block_key(config, block)
            if key in live:
                continue
            attrs = {KEY_ATTR: key, LABEL_ATTR: config.label} | ({} if block is None else {RACE_BLOCK_ATTR: block})
            self.study.add_trial(optuna.trial.create_trial(
                state=optuna.trial.TrialState.WAITING, params=config.params, distributions=distributions(config),
                user_attrs=attrs))
            live.add(key)
            added += 1
        return added

    def race(self) -> list[dict]:
        """The race's looks taken so far (read afresh: another runner may have taken one)."""
        return list(self.storage.get_study_user_attrs(self.study_id).get(RACE_ATTR, []))

    def record_look(self, looks: list[dict]) -> list[dict]:
        """Record the race's looks, unless another runner recorded as many or more meanwhile; returns
        what is recorded. Runners that take the same look compute the same decisions from the same
        stored numbers, so either record is the other."""
        stored = self.race()
        if len(stored) >= len(looks):
            return stored
        self.study.set_user_attr(RACE_ATTR, looks)
        return looks

    def claim_waiting(self, *, keyed: bool = True) -> Claim | None:
        """Claim the oldest WAITING trial that this runner can have; ``None`` when none is left.

        With ``keyed``, only trials of a known configuration are taken (a grid study);
        otherwise any (a TPE study, whose fresh trials are sampled after the claim).
        """
        import optuna

        while True:
            while self._waiting:
                number, key = self._waiting.popleft()
                if keyed and key is None:
                    continue
                claim = self._claim(self._trial_id(number))
                if claim is not None:
                    return claim
            # Read past the study's cache: on PostgreSQL a trial queued by another runner can commit
            # after a later-numbered one finished, and the cache never reads below a finished trial.
            waiting = self._read((optuna.trial.TrialState.WAITING,))
            self._waiting.extend((t.number, trial_key(t)) for t in waiting if not keyed or trial_key(t) is not None)
            if not self._waiting:
                return None

    def claim_key(self, key: str) -> Claim | None:
        """Claim a WAITING trial of the configuration ``key`` from the waiting trials read last (no
        read of the storage); ``None`` when there is none or another runner was first. A runner
        claims this way the configurations that one program trains with the one it claimed."""
        for i, (number, waiting_key) in enumerate(self._waiting):
            if waiting_key == key:
                del self._waiting[i]
                return self._claim(self._trial_id(number))
        return None

    def claim_new(self, attempts: int = 100) -> Claim:
        """A new trial, claimed by this runner, for the sampler to fill (TPE).

        Another runner may claim a fresh WAITING trial between its creation and this claim (it
        takes waiting trials as retries); then another is created, at most ``attempts`` times.
        """
        import optuna

        for _ in range(attempts):
            number_free = optuna.trial.create_trial(state=optuna.trial.TrialState.WAITING)
            trial_id = self.storage.create_new_trial(self.study_id, template_trial=number_free)
            # The study's cache learns of a trial only when it lists it, and the sampler's
            # suggestions are written through that cache.
            self.trials((optuna.trial.TrialState.WAITING,))
            claim = self._claim(trial_id)
            if claim is not None:
                return claim
        raise RuntimeError(f"other runners took each of {attempts} new trials before this one could claim it")

    def _id(self, trial: optuna.trial.FrozenTrial) -> int:
        return self._trial_id(trial.number)

    def _trial_id(self, number: int) -> int:
        return self.storage.get_trial_id_from_study_id_trial_number(self.study_id, number)

    def _claim(self, trial_id: int) -> Claim | None:
        import optuna

        # The heartbeat first: a runner killed right after the claim leaves a trial that goes stale.
        self.storage.record_heartbeat(trial_id)
        try:
            if not self.storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.RUNNING):
                return None
        except optuna.exceptions.UpdateFinishedTrialError:
            return None
        self.storage.set_trial_user_attr(trial_id, RUNNER_ATTR, self.runner)
        self.storage.set_trial_user_attr(trial_id, PROCESS_ATTR, local_process())
        return Claim(optuna.trial.Trial(self.study, trial_id), trial_id)

    def twin_of(self, claim: Claim, key: str) -> optuna.trial.FrozenTrial | None:
        """A live trial of the same configuration numbered before ``claim``'s: the configuration's owner.

        The live trials are read once per runner, and again for a claim numbered beyond that
        read (a retry queued since): a trial numbered before such a read was in it, and a trial
        not live then never is again. So a twin is one of the configuration's trials of that
        read, if it is still live: usually none, and the claim costs no read of the study.
        """
        if claim.number > self._horizon:
            horizon = self.last_number(self._horizon)  # before the read: every trial up to it is in it
            self._live_by_key = {}
            for t in self._read(_live_states()):
                self._live_by_key.setdefault(trial_key(t), []).append(t.number)
            self._horizon = horizon
        for number in sorted(self._live_by_key.get(key, ())):
            if number >= claim.number:
                break
            other = self.storage.get_trial(self._trial_id(number))
            if other.state in _live_states():
                return other
        return None

    def last_number(self, known: int = -1) -> int:
        """The study's highest trial number (-1: no trial), found from ``known`` (a number that
        exists) up in a few lookups: Optuna numbers a study's trials 0, 1, 2, ... as it creates them."""
        def exists(number: int) -> bool:
            try:
                self._trial_id(number)
            except KeyError:
                return False
            return True

        low, step = known, 1
        while exists(low + step):
            low, step = low + step, step * 2
        high = low + step  # low exists (or is -1), high does not
        while high - low > 1:
            middle = (low + high) // 2
            low, high = (middle, high) if exists(middle) else (low, middle)
        return low

    def counted_before(self, claim: Claim) -> int:
        """Live trials numbered before ``claim``'s (TPE's ``n_trials`` counts these)."""
        return sum(1 for t in self.trials(_live_states())
                   if t.number < claim.number and SUPERSEDED_ATTR not in t.user_attrs)

    def counted(self) -> int:
        return sum(1 for t in self.trials(_live_states()) if SUPERSEDED_ATTR not in t.user_attrs)

    def label(self, claim: Claim, config: Configuration) -> None:
        """Name the configuration that the sampler chose for ``claim`` (a TPE trial)."""
        claim.trial.set_user_attr(KEY_ATTR, config_key(config))
        claim.trial.set_user_attr(LABEL_ATTR, config.label)

    # ------------------------------------------------------------------ finishing

    def complete(self, claim: Claim, value: float, user_attrs: dict, system_attrs: dict,
                 intermediate_values: dict[int, float]) -> bool:
        """Finish ``claim``'s trial COMPLETE with its attributes; False if the claim was lost meanwhile.

        Lost: another runner failed the trial as stale (this one stalled past the grace
        period) and queued a retry, which stores the configuration. That is read from the
        trial's state, not from an error's text.
        """
        import optuna

        storage = self.storage
        try:
            for name, v in user_attrs.items():
                storage.set_trial_user_attr(claim.trial_id, name, v)
            for name, v in system_attrs.items():
                storage.set_trial_system_attr(claim.trial_id, name, v)
            for step, v in intermediate_values.items():
                storage.set_trial_intermediate_value(claim.trial_id, step, v)
            self.study.tell(claim.trial, value)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            state = self.storage.get_trial(claim.trial_id).state
            if state == optuna.trial.TrialState.COMPLETE:
                return True  # this runner's own write, tried again after a lost connection: it had landed
            if state.is_finished():
                return False
            raise
        return True

    def complete_as_twin(self, claim: Claim, twin: optuna.trial.FrozenTrial) -> None:
        """Finish ``claim`` with the numbers of ``twin``, a complete trial of the same configuration.

        The same configuration with the same seeds gives the same numbers: a sampler that
        proposes it again gets them at no cost, and the trial says whose they are.
        """
        for name, v in twin.user_attrs.items():
            if name not in (KEY_ATTR, LABEL_ATTR, RUNNER_ATTR, PROCESS_ATTR):  # the claim's own, not the twin's
                claim.trial.set_user_attr(name, v)
        if CURVES_ATTR in twin.system_attrs:
            self.storage.set_trial_system_attr(claim.trial_id, CURVES_ATTR, twin.system_attrs[CURVES_ATTR])
        claim.trial.set_user_attr(DUPLICATE_ATTR, twin.number)
        self.study.tell(claim.trial, twin.value)

    def fail(self, claim: Claim, reason: str, details: str | None = None) -> None:
        """Finish ``claim``'s trial FAIL with ``reason`` (and the end of a traceback); a trial failed
        as stale meanwhile is left as it is: the same outcome."""
        import optuna

        try:
            self.storage.set_trial_user_attr(claim.trial_id, FAIL_REASON_ATTR, reason)
            if details:
                self.storage.set_trial_user_attr(claim.trial_id, FAIL_DETAILS_ATTR, details[-MAX_DETAILS:])
            self.study.tell(claim.trial, state=optuna.trial.TrialState.FAIL)
        except (optuna.exceptions.UpdateFinishedTrialError, ValueError):
            if not self._finished(claim):
                raise

    def _finished(self, claim: Claim) -> bool:
        return self.storage.get_trial(claim.trial_id).state.is_finished()

    def supersede(self, claim: Claim, by: int | None) -> None:
        """Drop a claim that another trial makes redundant (PRUNED, never fitted)."""
        import optuna

        self.storage.set_trial_user_attr(claim.trial_id, SUPERSEDED_ATTR, by)
        self.study.tell(claim.trial, state=optuna.trial.TrialState.PRUNED)

    # ------------------------------------------------------------------ runners that died

    def reap(self) -> int:
        """Fail the stale trials of runners that died, and queue them again; returns how many.

        Stale: a heartbeat older than the grace period (Optuna's ``fail_stale_trials``,
        whose retry callback queues a new WAITING trial); a runner on this machine whose
        process has ended (no need to wait out the grace period); or a RUNNING trial that
        never had a runner attribute and started more than the grace period ago (left by
        a version of actreg without heartbeats).
        """
        import optuna

        S = optuna.trial.TrialState
        before = len(self._read((S.FAIL,)))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.study)
        now = datetime.now()
        for t in self._read((S.RUNNING,)):
            if _gone(t.user_attrs.get(PROCESS_ATTR)):
                self.release(self._id(t), f"interrupted: its runner {t.user_attrs.get(RUNNER_ATTR)} has ended")
            elif RUNNER_ATTR not in t.user_attrs and t.datetime_start is not None \
                    and (now - t.datetime_start).total_seconds() > self.grace:
                self.release(self._id(t), "interrupted: left running by a runner without heartbeats")
        return len(self._read((S.FAIL,))) - before

    def release(self, trial_id: int, reason: str) -> bool:
        """Fail a claimed trial that will not be finished (Ctrl-C, a lost runner) and queue it again.

        Returns False if another process finished it first.
        """
        import optuna

        try:
            self.storage.set_trial_user_attr(trial_id, FAIL_REASON_ATTR, reason)
            if not self.storage.set_trial_state_values(trial_id, state=optuna.trial.TrialState.FAIL):
                return False
        except optuna.exceptions.UpdateFinishedTrialError:
            return False
        retry = self.storage.get_heartbeat_stale_trial_callback()
        if retry is not None:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                retry(self.study, self.storage.get_trial(trial_id))
        return True

    def running_elsewhere(self, mine: Iterable[int] = ()) -> list[optuna.trial.FrozenTrial]:
        """RUNNING trials that other runners hold."""
        import optuna

        own = set(mine)
        return [t for t in self._read((optuna.trial.TrialState.RUNNING,)) if self._id(t) not in own]


class Heartbeat:
    """Beats the heartbeat of every trial this runner holds, from a thread started by :meth:`start`.

    The runner's main thread may spend minutes in one call (joblib waiting for its
    workers, or a fit in this process); TensorFlow and joblib release the GIL meanwhile,
    so this thread keeps beating. A beat that fails (the storage away past its patience, or
    a bug) is counted, and said in one line; a trial not beaten for longer than ``grace``
    seconds may have been failed as stale and queued again by another runner, so it is given
    up: no longer beaten, and :meth:`given_up` says so to the runner, which stores nothing of it.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, grace: float,
                 say: Callable[[str], None] | None = None) -> None:
        self.storage, self.grace = storage, grace
        self.interval = storage.get_heartbeat_interval() or 10
        self.say = say or (lambda line: None)
        self.errors = 0  # beats that failed
        self._beaten: dict[int, float] = {}  # held trial -> when it was last beaten (or claimed)
        self._given_up: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="actreg-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def hold(self, trial_id: int) -> None:
        """Beat ``trial_id`` from now on (its claim recorded the first beat)."""
        with self._lock:
            self._beaten[trial_id] = time.monotonic()

    def drop(self, trial_id: int) -> None:
        with self._lock:
            self._beaten.pop(trial_id, None)
            self._given_up.discard(trial_id)

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._beaten)

    def given_up(self, trial_id: int) -> bool:
        """Whether ``trial_id`` went unbeaten for longer than the grace period (see the class)."""
        with self._lock:
            return trial_id in self._given_up

    def beat(self) -> None:
        """Beat every held trial once (the thread calls this every ``interval`` seconds)."""
        failures: list[BaseException] = []
        for trial_id in self.held():
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception as exc:  # noqa: BLE001 - counted, said, and its trials given up after the grace
                failures.append(exc)
                with self._lock:
                    since = self._beaten.get(trial_id)
                    if since is not None and time.monotonic() - since > self.grace:
                        self._beaten.pop(trial_id)
                        self._given_up.add(trial_id)
                continue
            with self._lock:
                if trial_id in self._beaten:
                    self._beaten[trial_id] = time.monotonic()
        if failures:
            if not self.errors:
                exc = failures[0]
                first = str(exc).splitlines()[0][:200] if str(exc) else ""
                self.say(f"heartbeat: cannot beat ({type(exc).__name__}: {first}); a claim not beaten for "
                         f"{self.grace} s is given up, since another runner may take it over")
            self.errors += len(failures)
        elif self.errors and not failures and self.held():
            self.say(f"heartbeat: beating again, after {self.errors} failed beats")
            self.errors = 0

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def close(self) -> None:
        """Stop beating and join the thread (a beat that waits out an outage is left after 10 s: its
        thread is a daemon, and the claims it held go stale for the next runner)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)


def _name_the_metric(study: optuna.Study, spec: StudySpec) -> None:
    """Name the trial value in optuna-dashboard ("mean test accuracy"), instead of "Objective 0"."""
    import optuna

    rows = "validation" if spec.data.validation is not None else "test"
    name = f"mean {rows} {METRIC_LABELS[spec.objective]}"
    if study.metric_names != [name]:
        with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([name])


def _check_or_record_spec(study: optuna.Study, spec: StudySpec, versions: dict[str, str], created: bool) -> None:
    """Record the fingerprint of ``spec`` on a new study, or refuse ``spec`` if the study's differs.

    Only the runner that created the study (one, however many start together) records it;
    the others wait for it, so that two files that differ can never both run. A creator
    that died before recording leaves the study to the first runner that records after
    the grace period, which reads the record back to see that it was the first.
    """
    current = spec_fingerprint(spec)
    if created:
        _record_spec(study, spec, versions, current)
        return
    stored = _wait_for_attr(study, SPEC_ATTR, spec.heartbeat_grace)
    if stored is None:
        _record_spec(study, spec, versions, current)
        time.sleep(1.0)  # another late runner that recorded meanwhile: the last record stands, read it back
        stored = study.user_attrs.get(SPEC_ATTR)
    diff = fingerprint_diff(stored, current)
    if diff:
        raise SpecError(spec.path or "<study>", "name",
                        f"study {spec.name!r} in {redact(spec.storage)} was run with other settings "
                        f"({', '.join(diff)}); give the study another name or storage")


def _record_spec(study: optuna.Study, spec: StudySpec, versions: dict[str, str], fingerprint: dict) -> None:
    study.set_user_attr(PENALTY_ATTR, spec.penalty)
    study.set_user_attr(VERSIONS_ATTR, versions)
    study.set_user_attr(GRACE_ATTR, spec.heartbeat_grace)
    study.set_user_attr(SPEC_ATTR, fingerprint)  # last: a runner that sees it sees the rest


def _wait_for_attr(study: optuna.Study, name: str, seconds: float):
    """The study's user attribute ``name``, waited for up to ``seconds`` (its creator writes it at once)."""
    deadline = time.monotonic() + seconds
    while True:
        value = study.user_attrs.get(name)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


def _use_the_study_grace(study: optuna.Study, storage: optuna.storages.RDBStorage, spec: StudySpec) -> list[str]:
    """Make this runner beat and reap with the study's heartbeat grace (its first runner's); returns notes.

    A runner with a shorter grace would fail the live claims of one with a longer grace,
    which beats less often; with one grace for the study, a live claim is never failed.
    """
    grace = study.user_attrs.get(GRACE_ATTR)
    if grace is None:  # stored by an earlier version: this runner's grace becomes the study's
        study.set_user_attr(GRACE_ATTR, spec.heartbeat_grace)
        grace = spec.heartbeat_grace
    storage.grace_period = grace
    storage.heartbeat_interval = max(1, grace // 5)
    if grace == spec.heartbeat_grace:
        return []
    return [f"heartbeat_grace: study {spec.name!r} uses {grace} s (its first runner's), not this file's "
            f"{spec.heartbeat_grace} s, so that no runner fails another's live claims"]
