"""A race's policy: its looks, the seeds of each block, who is still racing, when it is over.

A race (``[race]``, :class:`search.study.spec.RaceSpec`) fits every configuration of the grid on
the first look's replicates (block 0), takes a look, and gives the configurations still racing
and the baseline the next block of replicates, up to the last look. What a look decides is
:func:`search.results.race.next_look`'s (statistics); which configurations race, which seeds a
block holds and whether the race is over is decided here, from the looks taken alone, for the
store (a reader's "race at look 2 of 6"), the run's race schedule and the notes alike.

``taken`` is the list of looks recorded with the study (:data:`search.store.schema.RACE_ATTR`),
each with its ``decisions``: configuration key -> a decision whose ``stopped`` says it races no more.
"""

from __future__ import annotations

from collections.abc import Sequence

from search.study.space import Configuration, config_key, grid
from search.study.spec import StudySpec

BASELINE = Configuration("none")
# Why a configuration stops without a verdict (else the reason is its verdict).
NO_VERDICT_REASONS = ("futile", "last look", "diverged", "baseline diverged")


def looks_of(spec: StudySpec) -> tuple[int, ...]:
    """The replicates at each look of the race of ``spec``."""
    assert spec.race is not None, "a study without [race] takes no looks"
    return spec.race.looks(len(spec.seeds))


def block_seeds(spec: StudySpec, block: int) -> tuple[int, ...]:
    """The seeds of block ``block``: the replicates look ``block`` adds."""
    looks = looks_of(spec)
    return tuple(spec.seeds[looks[block - 1] if block else 0:looks[block]])


def stops(taken: Sequence[dict]) -> dict[str, tuple[dict, dict]]:
    """Each stopped configuration's key -> (the look it stopped at, its decision there)."""
    out: dict[str, tuple[dict, dict]] = {}
    for look in taken:
        for key, decision in look["decisions"].items():
            if decision["stopped"]:
                out.setdefault(key, (look, decision))
    return out


def racing(spec: StudySpec, taken: Sequence[dict]) -> list[Configuration]:
    """The grid's configurations still racing after the looks ``taken`` (the baseline first, while any races)."""
    stopped = stops(taken)
    others = [c for c in grid(spec.space) if not c.is_baseline and config_key(c) not in stopped]
    return [BASELINE, *others] if others else []


def is_over(spec: StudySpec, taken: Sequence[dict]) -> bool:
    """Whether the race has ended: every configuration stopped, or the last look is taken."""
    return not racing(spec, taken) or len(taken) >= len(looks_of(spec))


def planned_fits(spec: StudySpec, taken: Sequence[dict]) -> int:
    """The fits the race will have made when it ends if every configuration racing now races to the
    last look (the baseline runs as long as any configuration races)."""
    looks = looks_of(spec)
    if not taken:
        return len(grid(spec.space)) * looks[-1]
    stopped = [look["replicates"] for look, _ in stops(taken).values()]
    still = racing(spec, taken)
    return sum(stopped) + (len(still) * looks[-1] if still else taken[-1]["replicates"])
