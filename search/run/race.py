"""The race: the grid, a block of replicates at a time, and a look when every block is in.

The race's policy (its looks, each block's seeds, who still races) is
:mod:`search.study.race`'s; what a look decides is :func:`search.results.race.next_look`'s.
This schedule claims the blocks, plans each one with the programs' sizes fixed across blocks,
takes the next look when nothing is left to claim, and queues the next block for those still
racing. The progress total is what the race may still fit: it shrinks as configurations stop.
"""

from __future__ import annotations

from functools import cached_property

from search.engine.parallel import chunk_seeds
from search.results.race import next_look, race_notes
from search.results.records import complete_trials
from search.run.grid import GridSchedule
from search.run.schedule import Plan
from search.store.dashboard import save_notes
from search.store.schema import RACE_BLOCK_ATTR, SEEDS_ATTR
from search.store.trials import Claim
from search.study.race import (
    NO_VERDICT_REASONS,
    block_seeds,
    is_over,
    looks_of,
    planned_fits,
    racing,
)
from search.study.space import distributions, grid, program_of


class RaceSchedule(GridSchedule):
    """A grid whose trials are blocks of replicates (see the module)."""

    first_block = 0

    def open(self, created: bool) -> None:
        super().open(created)
        taken = self.queue.race()
        if not is_over(self.spec, taken):  # a race resumed: its current block again where it failed or was lost
            self._enqueue(racing(self.spec, taken), len(taken))

    def block_of(self, claim: Claim) -> int | None:
        return claim.trial.user_attrs.get(RACE_BLOCK_ATTR)

    def plan(self, block: int | None) -> Plan:
        """The plan of ``block``: its seeds, the configurations racing in it, the race's program sizes."""
        if block not in self._plans:
            assert block is not None, "every trial of a race holds a block"
            spec = self.spec
            configs = racing(spec, self.queue.race()[:block])
            self._plans[block] = Plan.of(spec, block_seeds(spec, block), configs, self.model_bytes, self._slots)
        return self._plans[block]

    @cached_property
    def _plans(self) -> dict[int | None, Plan]:
        return {}

    @cached_property
    def _slots(self) -> dict[str, int]:
        """The models each program of a race is compiled for, the same at every block: as many as its
        largest group in the widest chunk of any block. Blocks grow and configurations stop, and a
        program of another size is another compilation (seconds, and memory TensorFlow keeps: loky
        restarts a worker whose memory grew by 300 MB)."""
        spec, slots = self.spec, dict[str, int]()
        counts: dict[str, int] = {}
        for config in grid(spec.space):
            counts[program_of(config)] = counts.get(program_of(config), 0) + 1
        for block in range(len(looks_of(spec))):
            width = max(len(c) for c in chunk_seeds(block_seeds(spec, block), spec.chunk_size))
            per_program = spec.configs_per_program(width, self.model_bytes)
            for program, n in counts.items():
                slots[program] = max(slots.get(program, 0), width * min(per_program, n))
        return slots

    def stored(self) -> int:
        """Configurations with a complete first block."""
        return len(complete_trials(self.queue.trials()))

    def remaining(self, skipped: int) -> int:
        return max(0, planned_fits(self.spec, self.queue.race()) - self._fits_stored())

    def study_fits(self, skipped: int) -> int | None:
        return None  # the total follows the looks

    def configurations_run(self) -> int:
        """Configurations this runner stored something of (a configuration has several blocks)."""
        return self.state.configurations

    def _fits_stored(self) -> int:
        """Fits of the race stored so far (a resumed race's bar counts from there)."""
        return sum(len(t.user_attrs.get(SEEDS_ATTR, [])) for t in self.queue.completed())

    def idle(self) -> bool:
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
            save_notes(queue.storage, queue.study_id, *race_notes(spec, trials, taken))
        stopped = [d for d in look["decisions"].values() if d["stopped"]]
        still = racing(spec, taken)
        tally = ", ".join(f"{count} {name}" for name, count in _tally(stopped).items()) or "none stopped"
        self.state.say(f"race: look {look['look'] + 1} of {len(looks_of(spec))} at {look['replicates']} replicates: "
                       f"{tally}; {max(0, len(still) - 1)} still racing")
        self.state.total(self.remaining(0))
        if is_over(spec, taken):
            return False
        self._enqueue(still, len(taken))
        return True

    def _enqueue(self, configs, block: int) -> None:
        self.queue.enqueue_missing(configs, lambda c: distributions(c, self.spec.space), block=block)


def _tally(decisions: list[dict]) -> dict[str, int]:
    """How many stopped for each reason (a verdict, or why none)."""
    counts: dict[str, int] = {}
    for d in decisions:
        name = d["reason"] if d["reason"] in NO_VERDICT_REASONS else d["verdict"]
        counts[name] = counts.get(name, 0) + 1
    return counts
