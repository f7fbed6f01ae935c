"""TPE: Optuna's sampler proposes each configuration when a runner claims a fresh trial, up to ``n_trials``."""

from __future__ import annotations

from functools import cached_property

from search.run.schedule import Plan, Schedule, Work
from search.store.trials import Claim
from search.study.space import Configuration, config_key, suggest


class TPESchedule(Schedule):
    """One configuration per claim (a program of one), every seed in the study's chunks."""

    @cached_property
    def plan(self) -> Plan:
        return Plan.of(self.spec, self.spec.seeds, [], self.model_bytes)

    def claim(self) -> Work | None:
        got = self._claim_suggested()
        return None if got is None else self.plan.work([got], (got[1],))

    def _claim_suggested(self) -> tuple[Claim, Configuration] | None:
        queue, spec = self.queue, self.spec
        n_trials = spec.n_trials
        assert n_trials is not None, "a TPE study has n_trials"
        while True:
            claim = queue.claim_waiting(keyed=False)  # retries of trials whose runner died come first
            if claim is None:
                if queue.counted() >= n_trials:
                    return None
                claim = queue.claim_new()
            self.heartbeat.hold(claim.trial_id)
            if queue.counted_before(claim) >= n_trials:  # n_trials are live already
                queue.supersede(claim, None)
                self.heartbeat.drop(claim.trial_id)
                return None
            config = suggest(claim.trial, spec.space)
            queue.label(claim, config)
            twin = queue.completed_twin(config_key(config))
            if twin is None:
                return claim, config
            # The sampler proposed a configuration already measured: same seeds, same numbers.
            queue.complete_as_twin(claim, twin)
            self.heartbeat.drop(claim.trial_id)
            self.state.advance(len(spec.seeds))
