"""The grid: every configuration of the space, queued once, claimed a program's group at a time."""

from __future__ import annotations

from functools import cached_property

from search.run.schedule import Plan, Schedule, Work
from search.store.trials import Claim
from search.study.space import Configuration, block_key, config_key, distributions, grid


class GridSchedule(Schedule):
    """Claims a waiting configuration and the waiting others of its program's group (see :class:`Plan`).

    The trials it claims carry a block of replicates (``block_of``): the whole study here, a race's
    block in :class:`search.run.race.RaceSchedule`, which plans each block apart.
    """

    first_block: int | None = None

    def open(self, created: bool) -> None:
        spec = self.spec
        self.queue.fill_grid(grid(spec.space), lambda c: distributions(c, spec.space), created, self.first_block)

    def block_of(self, claim: Claim) -> int | None:
        return None

    def plan(self, block: int | None) -> Plan:
        """The plan of ``block``'s trials: here every seed of every configuration of the grid."""
        return self._whole

    @cached_property
    def _whole(self) -> Plan:
        return Plan.of(self.spec, self.spec.seeds, grid(self.spec.space), self.model_bytes)

    def claim(self) -> Work | None:
        """A waiting configuration and the others of its group that are waiting too."""
        while True:
            claim = self.queue.claim_waiting(keyed=True)
            if claim is None:
                return None
            block = self.block_of(claim)
            held = self._hold(claim, block)
            if held is not None:
                break
        config = held[1]
        plan = self.plan(block)
        group = plan.group_of.get(config_key(config), (config,))
        claims = [held]
        for other in group:
            more = self.queue.claim_key(block_key(other, block)) if other != config else None
            if more is not None and (also := self._hold(more, block)) is not None:
                claims.append(also)
        return plan.work(claims, group)

    def _hold(self, claim: Claim, block: int | None) -> tuple[Claim, Configuration] | None:
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
