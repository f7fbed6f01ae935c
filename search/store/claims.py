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

Here the study is created or loaded, its fingerprint recorded, the queue filled and claimed
(:class:`StudyQueue`); its reads are :mod:`search.store.trials`'s, its trials are finished by
:mod:`search.store.finishing`, beaten by :mod:`search.store.heartbeat`, and
:mod:`search.store.storage` opens the URL: the store is Optuna's one door.
``tests/test_store_contract.py`` pins, on SQLite and PostgreSQL, the storage behaviour these
rules rely on, so that an Optuna release that changes it fails there by name. Nothing here
fits a model; :mod:`search.run.loop` does that with the trials claimed here.
"""

from __future__ import annotations

import collections
import time
import warnings
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Literal

from search.store.finishing import Finishing
from search.store.heartbeat import local_process, runner_id
from search.store.schema import (
    GRACE_ATTR,
    KEY_ATTR,
    LABEL_ATTR,
    PROCESS_ATTR,
    QUEUED_ATTR,
    RACE_ATTR,
    RACE_BLOCK_ATTR,
    RUNNER_ATTR,
)
from search.store.storage import (
    check_or_record_spec,
    close_storage,
    open_storage,
)
from search.store.trials import Claim, _live_states, trial_key
from search.study.metrics import METRIC_LABELS
from search.study.space import Configuration, block_key, config_key

if TYPE_CHECKING:
    import optuna

    from search.study.spec import StudySpec

# A runner that joins a new study waits while its creator queues the grid; trials that stop
# growing for this long (seconds) mean a creator that died, or a study of an earlier version.
QUEUE_STILL_S = 3.0


class StudyQueue(Finishing):
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
        match its fingerprint, else :class:`SpecError` says which settings differ. ``say`` hears
        the storage's outages (see :mod:`search.store.outage`).
        """
        study, storage, notes, created = _open_study(spec, versions, say)
        queue = cls(study, storage, storage.grace_period or spec.heartbeat_grace)
        queue.notes = notes
        return queue, created

    def __init__(self, study: optuna.Study, storage: optuna.storages.RDBStorage, grace: int) -> None:
        super().__init__(study, storage, grace)
        self.runner = runner_id()
        self.notes: list[str] = []  # what a runner should tell its user about the study it joined
        # A claim costs the same on a grid of 20 or 2,000 configurations: the WAITING trials are
        # read once and claimed from this list (re-read when it runs out); the live trials of
        # each configuration, read once, tell a claim's twins (see :meth:`twin_of`).
        self._waiting: collections.deque[tuple[int, str | None]] = collections.deque()
        self._live_by_key: dict[str | None, list[int]] = {}
        self._horizon = -1  # the highest trial number when _live_by_key was read

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


    def label(self, claim: Claim, config: Configuration) -> None:
        """Name the configuration that the sampler chose for ``claim`` (a TPE trial)."""
        claim.trial.set_user_attr(KEY_ATTR, config_key(config))
        claim.trial.set_user_attr(LABEL_ATTR, config.label)

    # ------------------------------------------------------------------ finishing


    # ------------------------------------------------------------------ runners that died


def _open_study(spec: StudySpec, versions: dict[str, str], say: Callable[[str], None] | None
                ) -> tuple[optuna.Study, optuna.storages.RDBStorage, list[str], bool]:
    """The study of ``spec``, created or loaded, its storage, what to tell the user, and whether this
    process created it (see :meth:`StudyQueue.open`)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_storage(spec.storage, create=True, grace=spec.heartbeat_grace, patience=spec.storage_patience,
                           say=say)
    sampler = optuna.samplers.TPESampler(seed=spec.sampler_seed) if spec.sampler == "tpe" else None
    direction: Literal["maximize", "minimize"] = "maximize" if spec.maximize else "minimize"
    try:  # of runners starting together, exactly one creates the study
        study = optuna.create_study(study_name=spec.name, storage=storage, direction=direction, sampler=sampler)
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        study, created = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler), False
    try:
        check_or_record_spec(study, spec, versions, created)
        notes = _use_the_study_grace(study, storage, spec)
        _name_the_metric(study, spec)
    except BaseException:
        close_storage(storage)
        raise
    return study, storage, notes, created


def _name_the_metric(study: optuna.Study, spec: StudySpec) -> None:
    """Name the trial value in optuna-dashboard ("mean test accuracy"), instead of "Objective 0"."""
    import optuna

    rows = "validation" if spec.data.validation is not None else "test"
    name = f"mean {rows} {METRIC_LABELS[spec.objective]}"
    if study.metric_names != [name]:
        with warnings.catch_warnings():  # set_metric_names is "experimental" in Optuna
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names([name])


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
    return [(f"heartbeat_grace: study {spec.name!r} uses {grace} s (its first runner's), not this file's "
             f"{spec.heartbeat_grace} s, so that no runner fails another's live claims")]
