"""Races: what a look decides, and the race as optuna-dashboard notes (the policy: :mod:`search.study.race`).

A race (``[race]``, :class:`search.study.spec.RaceSpec`) fits every configuration of the grid
on the first look's replicates (block 0: the study's first ``min_replicates`` seeds), then
takes a look: each configuration still racing gets its verdict with the error rate held over
the looks and the configurations (:func:`race_decisions`), and those
decided, or that could not be decided by the last look, stop. The others and the baseline get
the next block of replicates (the next seeds, up to the next look's number), and so on up to
the last look. Every block of a configuration is a trial of its own; the tables join them
(:func:`search.results.records.complete_trials`).

The looks taken are stored with the study (:data:`search.store.schema.RACE_ATTR`): a list of
records, one per look, each with its replicates and every racing configuration's decision.
Everything here is a function of the stored numbers, so runners that take the same look
record the same decisions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from search.results.records import complete_trials, configuration_of
from search.results.stats import (
    ALPHA,
    VERDICTS,
    _by_seed,
    default_rope,
    region_verdicts,
)
from search.store import schema
from search.store.schema import DIVERGED, OK
from search.study.metrics import METRICS
from search.study.race import BASELINE, is_over, looks_of, racing, stops
from search.study.space import Configuration, config_key, grid

if TYPE_CHECKING:
    import optuna

    from search.study.spec import StudySpec

def next_look(spec: StudySpec, trials: Sequence[optuna.trial.FrozenTrial], taken: Sequence[dict]
              ) -> dict[str, Any] | None:
    """The record of the race's next look, or ``None`` while a configuration racing in it lacks some of
    its replicates (a block not yet complete: being fitted, failed, or not yet queued).

    A configuration that diverged stops with reason ``diverged``; if the baseline diverged every
    configuration stops (``baseline diverged``): there is nothing to compare with.
    """
    if is_over(spec, taken):
        return None
    race = spec.race
    assert race is not None, "a study without [race] takes no looks"
    looks, k = looks_of(spec), len(taken)
    need = set(spec.seeds[:looks[k]])
    members = racing(spec, taken)
    stored = {configuration_of(t): t for t in complete_trials(trials)}
    if any(c not in stored or not need <= set(stored[c].user_attrs[schema.SEEDS_ATTR]) for c in members):
        return None
    metric = spec.objective
    base = stored[BASELINE]
    base_values = _by_seed(base, metric)
    seeds = [s for s in spec.seeds[:looks[k]]]
    rope = taken[0]["rope"] if taken else (spec.rope if spec.rope is not None else
                                           default_rope(metric, float(np.mean([base_values[s] for s in seeds]))))
    m = sum(1 for c in grid(spec.space) if not c.is_baseline)
    level = sequential_levels(tuple(n / looks[-1] for n in looks), race.alpha / m)[k]
    sign = -1.0 if METRICS[metric].minimize else 1.0
    decisions: dict[str, dict[str, Any]] = {}
    judged, improvements = [], []
    for config in members[1:]:
        if base.user_attrs.get(schema.STATUS_ATTR, OK) == DIVERGED:
            decisions[config_key(config)] = _stop("baseline diverged")
        elif stored[config].user_attrs.get(schema.STATUS_ATTR, OK) == DIVERGED:
            decisions[config_key(config)] = _stop("diverged")
        else:
            values = _by_seed(stored[config], metric)
            judged.append(config)
            improvements.append(np.array([sign * (values[s] - base_values[s]) for s in seeds]))
    if judged:
        rows = race_decisions(improvements, rope, k, looks, m, race.alpha, race.futility)
        for config, row in zip(judged, rows):
            decisions[config_key(config)] = row
    return {"look": k, "replicates": looks[k], "rope": rope, "level": level, "alpha": race.alpha,
            "configurations": m, "decisions": decisions}


def _stop(reason: str) -> dict[str, Any]:
    return {"verdict": "undecided", "stopped": True, "reason": reason, "withheld": None,
            "p_better_raw": None, "p_worse_raw": None, "p_equivalent_raw": None}


def race_notes(spec: StudySpec, trials: Sequence[optuna.trial.FrozenTrial], taken: Sequence[dict]
               ) -> tuple[str, dict[int, str]]:
    """The race so far as optuna-dashboard notes (Markdown): the study's, with every configuration's
    replicates and verdict, and one for each stored block of a configuration that has stopped (by
    trial number), with its verdict and the trials that hold its other replicates."""
    import optuna

    looks = looks_of(spec)
    stopped = stops(taken)
    blocks: dict[Configuration, list[optuna.trial.FrozenTrial]] = {}
    for t in trials:
        if t.state == optuna.trial.TrialState.COMPLETE and schema.RACE_BLOCK_ATTR in t.user_attrs:
            blocks.setdefault(configuration_of(t), []).append(t)
    still = racing(spec, taken)
    over = is_over(spec, taken)

    def where(config: Configuration) -> tuple[int, str]:
        mine = sorted(blocks.get(config, []), key=lambda t: t.user_attrs[schema.RACE_BLOCK_ATTR])
        return (sum(len(t.user_attrs[schema.SEEDS_ATTR]) for t in mine),
                ", ".join(f"#{t.number}" for t in mine) or "–")

    def status(config: Configuration) -> str:
        if config.is_baseline:
            return "the baseline (it gets replicates while any configuration races)"
        stop = stopped.get(config_key(config))
        if stop is None:
            return "racing" if not over else "undecided (last look)"
        look, d = stop
        why = "" if d["reason"] == d["verdict"] else f" ({d['reason']})"
        return f"**{d['verdict']}**{why} at look {look['look'] + 1} ({look['replicates']} replicates)"

    if taken:
        last = taken[-1]
        head = (f"The race is over after look {last['look'] + 1} of {len(looks)}." if over else
                f"Race in progress: look {last['look'] + 1} of {len(looks)} taken at {last['replicates']} "
                f"replicates; {max(0, len(still) - 1)} configurations still racing.")
    else:
        head = f"Race in progress: the first look comes at {looks[0]} replicates."
    alpha = spec.race.alpha if spec.race is not None else None
    rows = ["| configuration | replicates stored | verdict | trials (blocks) |", "|---|---:|---|---|"]
    for config in grid(spec.space):
        n, numbers = where(config)
        rows.append(f"| {config.label} | {n} | {status(config)} | {numbers} |")
    study_note = (f"# {spec.name}\n\n{head} Looks at {', '.join(map(str, looks))} replicates; each verdict "
                  f"against the baseline, with the chance of any wrong verdict at most {alpha} over "
                  "all looks and configurations. Written by `actreg run` at each look; `actreg report` puts "
                  "the report's summary here.\n\n" + "\n".join(rows))
    trial_notes = {}
    for config, mine in blocks.items():
        if config_key(config) not in stopped and not (over and (config.is_baseline or config in still)):
            continue
        n, numbers = where(config)
        text = (f"**{config.label}**: {status(config)}. " + (f"Its {n} replicates are in this trial." if len(mine) == 1
                else f"Its {n} replicates are in the trials {numbers}, one per block; the study's tables join them."))
        for t in mine:
            trial_notes[t.number] = text
    return study_note, trial_notes


@functools.lru_cache(maxsize=64)
def sequential_levels(fractions: tuple[float, ...], level: float, points: int = 801) -> tuple[float, ...]:
    """One-sided nominal significance levels of a group-sequential test at overall ``level``, with
    looks at the information ``fractions`` (increasing, the last 1) and O'Brien–Fleming-type
    spending (Lan & DeMets 1983: α(t) = 2 − 2Φ(z_{level/2} / √t)).

    Look j rejects when its p-value is at most ``levels[j]``; under the null the chance of a
    rejection at any look is then ``level`` (for a z-statistic; applied to t-tests' p-values,
    the significance-level approach of Jennison & Turnbull 2000, §3.8). Computed by recursive
    numerical integration of the statistic's path (Armitage, McPherson & Rowe 1969):
    deterministic, about 1e-6 accurate. A look that spends (almost) nothing gets level 0.
    O'Brien–Fleming spends little early and keeps most of ``level`` for the last look, whose
    level is then close to a single test's: a race reaches the verdicts of the full study.
    """
    from scipy import optimize
    from scipy import stats as st

    z = float(st.norm.isf(level / 2))
    spent, previous, levels = 0.0, 0.0, []
    grid = density = None  # the sub-density of the sum S at the last look, on paths that never crossed
    for t in fractions:
        if not previous < t <= 1.0:
            raise ValueError("information fractions must increase to at most 1")
        target = 2.0 * float(st.norm.sf(z / math.sqrt(t))) - spent
        sd = math.sqrt(t - previous)
        crossed = functools.partial(_crossed, sd=sd, grid=grid, density=density)
        far = 12.0 * math.sqrt(t)
        if target <= 1e-14:  # spends nothing here
            bound, hit = far, 0.0
            levels.append(0.0)
        else:
            bound = float(optimize.brentq(lambda b, crossed=crossed, target=target: crossed(b) - target, -far, far,
                                          xtol=1e-12))
            hit = crossed(bound)
            levels.append(float(st.norm.sf(bound / math.sqrt(t))))
        new_grid = np.linspace(-far, bound, points)
        if density is None or grid is None:
            new_density = st.norm.pdf(new_grid / sd) / sd
        else:
            kernel = st.norm.pdf((new_grid[:, None] - grid[None, :]) / sd) / sd
            new_density = kernel @ (density * np.gradient(grid))
        grid, density = new_grid, new_density
        spent += hit
        previous = t
    return tuple(levels)


def _crossed(b: float, sd: float, grid: np.ndarray | None, density: np.ndarray | None) -> float:
    """The chance that the sum's next step, of sd ``sd``, ends above ``b``: from 0 at the first look,
    else from the sub-``density`` on ``grid`` of the paths that have not crossed yet."""
    from scipy import stats as st

    if grid is None or density is None:
        return float(st.norm.sf(b / sd))
    return float(np.sum(density * st.norm.sf((b - grid) / sd) * np.gradient(grid)))


def race_decisions(improvements: Sequence[np.ndarray], rope: float, look: int, looks: Sequence[int],
                   m: int, alpha: float = ALPHA, futility: float | None = 1.0) -> list[dict]:
    """The verdicts at ``looks[look]`` of the configurations still racing, from their improvements
    (positive: better; one per replicate, the look's replicates), with ``m`` configurations in the
    race from its start.

    Each region of :func:`verdicts` is a group-sequential test: its p-value at this look against
    :func:`sequential_levels` of the race's looks at ``alpha / m`` (Bonferroni over the
    configurations), read from the studentized bootstrap, with :func:`shape_check`'s withholding.
    Guarantee: the chance that any configuration gets a wrong verdict at any look is at most
    ``alpha``, on the conditions of :func:`verdicts` (checked for races by
    ``benchmarks/calibration.py``). Looks before :data:`VERDICT_MIN_PAIRS` replicates decide
    nothing, but may stop a configuration for futility. A configuration without a
    verdict stops as ``undecided`` for futility when even a mean ``futility`` standard errors
    closer to a verdict than its own could not reach one at the last look with its spread (a
    stop that never gives a verdict, so the guarantee stands); ``None``: it races to the end.
    Returns per configuration ``verdict``, ``stopped`` (True when it races no more), ``reason``,
    ``withheld`` (see :func:`shape_check`) and the three unadjusted p-values.
    """
    levels = sequential_levels(tuple(n / looks[-1] for n in looks), alpha / m)
    level, final = levels[look], levels[-1]
    verdicts_now, withheld, p = region_verdicts(improvements, rope, level)
    out = []
    for j, g in enumerate(improvements):
        row: dict[str, Any] = {f"p_{k}_raw": None if np.isnan(p[k][j]) else float(p[k][j]) for k in VERDICTS[:3]}
        row["withheld"] = withheld[j]
        verdict = verdicts_now[j]
        last = look == len(looks) - 1
        if verdict != "undecided":
            row.update(verdict=verdict, stopped=True, reason=verdict)
        elif last:
            row.update(verdict="undecided", stopped=True, reason="last look")
        elif futility is not None and _futile(np.asarray(g, dtype=np.float64), rope, looks[-1], final, futility):
            row.update(verdict="undecided", stopped=True, reason="futile")
        else:
            row.update(verdict="undecided", stopped=False, reason="racing")
        out.append(row)
    return out


def _futile(g: np.ndarray, rope: float, last: int, level: float, margin: float) -> bool:
    """Whether ``g`` could not reach a verdict at ``last`` replicates, at the last look's ``level``,
    with its sd and a mean ``margin`` standard errors closer to either verdict than its own."""
    from scipy import stats as st

    n = len(g)
    if n < 2 or level <= 0:
        return False
    mean, sd = abs(float(g.mean())), float(g.std(ddof=1))
    if sd == 0:
        return False
    reach = float(st.t.isf(level, last - 1)) * sd / math.sqrt(last)  # a verdict's distance from rope at the end
    slack = margin * sd / math.sqrt(n)
    outside = mean + slack > rope + reach
    inside = max(mean - slack, 0.0) < rope - reach
    return not (outside or inside)
