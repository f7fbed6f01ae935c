"""Finishing a runner's claims: results, failures, drops, and the claims of runners that died."""

from __future__ import annotations

import warnings
from datetime import datetime
from typing import TYPE_CHECKING

from search.store.heartbeat import gone
from search.store.schema import (
    CURVES_ATTR,
    DUPLICATE_ATTR,
    FAIL_DETAILS_ATTR,
    FAIL_REASON_ATTR,
    KEY_ATTR,
    LABEL_ATTR,
    PROCESS_ATTR,
    RUNNER_ATTR,
    SUPERSEDED_ATTR,
)
from search.store.trials import Claim, StudyTrials

if TYPE_CHECKING:
    import optuna

MAX_DETAILS = 4000  # characters of a failed fit's traceback kept on its trial


class Finishing(StudyTrials):
    """How a claimed trial ends: COMPLETE with its record, FAIL with its reason, PRUNED when redundant,
    or FAIL and queued again when its runner is gone (the base of :class:`search.store.claims.StudyQueue`)."""

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
            if gone(t.user_attrs.get(PROCESS_ATTR)):
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
