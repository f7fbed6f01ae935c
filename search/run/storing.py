"""A runner's claims from held to finished: their heartbeat, and what the writer thread does with a
finished configuration (store it, fail it, or give up a claim its heartbeat lost)."""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

from search.engine.parallel import FitFailure
from search.run.schedule import Schedule
from search.run.state import RunState
from search.store.claims import StudyQueue
from search.store.heartbeat import Heartbeat
from search.store.schema import DIVERGED, OK
from search.store.trials import Claim
from search.study.space import Configuration, config_key

if TYPE_CHECKING:
    from search.results.records import TrialRecord

# Seconds between two counts of the study's complete trials for the progress bar (what other
# runners stored): the count reads the study, which costs more the more configurations wait.
COUNT_EVERY_S = 5.0


class Storing:
    """Beats the heartbeat of one runner's claims (:attr:`heartbeat`, started by the loop), finishes their
    trials (in its writer thread), and counts the study's progress once :meth:`open` gave its schedule."""

    def __init__(self, queue: StudyQueue, state: RunState) -> None:
        self.queue, self.state = queue, state
        self.heartbeat = Heartbeat(queue.storage, queue.grace, say=state.say)
        self.schedule: Schedule | None = None
        self.skipped = 0  # configurations stored before the run began
        self._counted = time.monotonic()  # when the bar last counted the study's complete trials
        self._counting = threading.Lock()  # the writer thread counts after a store, the loop while it waits

    def open(self, schedule: Schedule, skipped: int) -> None:
        """Count the study's progress with ``schedule``, from ``skipped`` configurations stored before."""
        self.schedule, self.skipped = schedule, skipped

    def store(self, claim: Claim, config: Configuration, record: TrialRecord) -> None:
        """Finish ``claim``'s trial COMPLETE with ``record`` (in the writer thread)."""
        if self.heartbeat.given_up(claim.trial_id):
            self._give_up(claim, config)
            return
        try:
            stored = self.queue.complete(claim, record.value, record.user_attrs, record.system_attrs,
                                         record.intermediate_values)
        finally:
            self.heartbeat.drop(claim.trial_id)
        if not stored:
            # Failed as stale by another runner (this one stalled longer than the grace period);
            # the retry it queued stores the configuration.
            self.state.say(f"{config.label}: lost its claim (no heartbeat for {self.queue.grace} s); "
                           "another runner fits it again")
            return
        diverged = record.status == DIVERGED
        self.state.stored(config_key(config), diverged)
        if diverged:
            a = record.user_attrs
            self.state.say(f"{config.label}: diverged on {a['n_diverged']} of {len(a['seeds'])} seeds "
                           f"(first at epoch {min(a['diverged_epochs'])}); stored as diverged")
        self.state.status(f"{config.label}: " + (f"{record.value:.3f}" if record.status == OK else "diverged"))
        self.count_study()

    def _give_up(self, claim: Claim, config: Configuration) -> None:
        """A claim whose heartbeat could not beat for the grace period: other runners may have taken it over,
        so its numbers are not stored; it is failed and queued again unless another runner did so."""
        self.heartbeat.drop(claim.trial_id)
        reason = f"interrupted: its runner could not beat its heartbeat for {self.queue.grace} s"
        queued = self.queue.release(claim.trial_id, reason)
        self.state.say(f"{config.label}: gave its claim up (no heartbeat for {self.queue.grace} s); "
                       + ("queued again" if queued else "another runner fits it again"))

    def fail(self, claim: Claim, failure: FitFailure) -> None:
        """Finish ``claim``'s trial FAIL with the reason (in the writer thread)."""
        try:
            self.queue.fail(claim, failure.reason, failure.details)
        finally:
            self.heartbeat.drop(claim.trial_id)

    def count_study(self, now: bool = False) -> None:
        """Count what other runners stored too (every few seconds: the count reads the study), so
        that the bar shows the study's progress."""
        with self._counting:
            due = now or time.monotonic() - self._counted > COUNT_EVERY_S
            if due:
                self._counted = time.monotonic()
        done = self.schedule.study_fits(self.skipped) if due and self.schedule is not None else None
        if done is not None:
            self.state.counted(done)
        else:
            self.state.refresh()
