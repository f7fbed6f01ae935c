"""A schedule: what a study fits and in what order. The run loop's one hook into a study's kind.

The loop (:mod:`search.run.loop`) asks its schedule for work, fits it, stores it and asks
again, the way scikit-learn's ``BaseSearchCV._run_search`` serves grid, random and halving
search alike. A schedule owns its study's claims (which trials, held with the heartbeat),
plans (which seeds in which chunks, which configurations one program trains, how many models
a program is compiled for), looks (what it decides when nothing is left to claim) and the
progress total. :mod:`search.run.grid`, :mod:`search.run.tpe` and :mod:`search.run.race` are
the three kinds; :data:`search.run.loop.SCHEDULES` names them, and a fourth is one module more.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from search.engine.parallel import chunk_seeds
from search.run.state import RunState
from search.store.claims import StudyQueue
from search.store.heartbeat import Heartbeat
from search.store.trials import Claim
from search.study.space import (
    Configuration,
    config_key,
    planned,
    program_groups,
    program_of,
)
from search.study.spec import StudySpec


@dataclass(frozen=True)
class Plan:
    """How a study's (or a race block's) seeds and configurations become tasks: the chunks of seeds,
    each configuration's program group, and the models each program of a placement is compiled for.

    The groups are fixed by the configurations and ``models_per_program``, whoever claims them (see
    :func:`search.study.space.program_groups`); every program of a placement is compiled for as
    many models as its largest (a smaller one fills its slots), so a process compiles it once.
    """

    chunks: tuple[tuple[int, ...], ...]
    group_of: dict[str, tuple[Configuration, ...]]
    slots: dict[str, int]
    width: int

    @classmethod
    def of(cls, spec: StudySpec, seeds: Sequence[int], configs: Sequence[Configuration],
           model_bytes: int | None, slots: dict[str, int] | None = None) -> Plan:
        """The plan of ``configs`` on ``seeds``; ``slots`` fixes the programs' sizes (a race's)."""
        chunks = tuple(chunk_seeds(seeds, spec.chunk_size))
        width = max(len(c) for c in chunks)
        groups = program_groups(configs, spec.configs_per_program(width, model_bytes)) if configs else []
        if slots is None:
            slots = {}
            for g in groups:
                slots[program_of(g[0])] = max(slots.get(program_of(g[0]), 0), width * len(g))
        return cls(chunks, {config_key(c): g for g in groups for c in g}, slots, width)

    def work(self, held: Sequence[tuple[Claim, Configuration]], group: tuple[Configuration, ...]) -> Work:
        return Work(tuple(held), group, self.chunks, self.slots.get(program_of(group[0]), self.width))


@dataclass(frozen=True)
class Work:
    """What the loop fits next: the held claims and their configurations, the program's group (trained
    whole, whoever holds the rest), its chunks of seeds and the models its program is compiled for."""

    held: tuple[tuple[Claim, Configuration], ...]
    group: tuple[Configuration, ...]
    chunks: tuple[tuple[int, ...], ...]
    slots: int


class Schedule:
    """The hooks the loop calls; a kind of study overrides what it does otherwise.

    ``open(created)`` queues the study's work before the loop starts (``created``: this runner
    made the study); ``claim()`` is the next :class:`Work` or ``None`` while nothing waits;
    ``idle()``, called when nothing is in flight or waits, queues new work (a race's next look)
    and says whether it did; ``stored()`` counts the study's stored configurations;
    ``remaining(skipped)`` the fits still to make; ``study_fits(skipped)`` the fits the study
    stored since the run began, other runners' too (``None``: not counted that way);
    ``configurations_run()`` what this runner stored, as its report counts it.
    """

    def __init__(self, spec: StudySpec, queue: StudyQueue, heartbeat: Heartbeat, state: RunState,
                 model_bytes: int | None) -> None:
        self.spec, self.queue, self.heartbeat, self.state = spec, queue, heartbeat, state
        self.model_bytes = model_bytes

    def open(self, created: bool) -> None:
        pass

    def claim(self) -> Work | None:
        raise NotImplementedError

    def idle(self) -> bool:
        return False

    def stored(self) -> int:
        return self.queue.completed_count()

    def remaining(self, skipped: int) -> int:
        return max(0, planned(self.spec) - skipped) * len(self.spec.seeds)

    def study_fits(self, skipped: int) -> int | None:
        return (self.queue.completed_count() - skipped) * len(self.spec.seeds)

    def configurations_run(self) -> int:
        """Configurations this runner stored (two TPE trials of one configuration, fitted at once, are two)."""
        return self.state.completed
