"""Paired statistics against the baseline: every configuration ran the same seeds.

For each configuration, d_k = the test metric (accuracy, R2 or MAE) of seed k minus the
baseline's of the same seed, over the seeds both have. Reported per configuration:

* ``mean_test_diff`` with its two-sided 95% Student-t interval (``ci95_low_test_diff``, ``ci95_high_test_diff``)
  and ``std_test_diff``, the sample standard deviation of d;
* ``t_pvalue``: paired t-test (H0: mean of d is 0); ``wilcoxon_pvalue``: Wilcoxon signed-rank
  test (zero differences dropped; 1.0 when every difference is zero);
* ``t_pvalue_holm``, ``wilcoxon_pvalue_holm``: Holm's step-down correction across all
  configurations of the table;
* ``effect_size_dz``: Cohen's d_z = mean(d) / sd(d) (NaN when sd is 0);
* ``few_seeds``: True with fewer than 5 pairs, where none of these tests means much;
* ``verdict``: ``better``, ``worse``, ``equivalent`` or ``undecided`` against the baseline,
  with a region of practical equivalence ``rope`` (see :func:`verdicts`), the adjusted
  p-values it came from (``p_better``, ``p_worse``, ``p_equivalent``) and, for an undecided
  configuration, ``detectable_diff`` and ``replicates_needed`` (see :func:`power`).

Diverged configurations (see :mod:`search.results.records`) are left out: their numbers come
from NaN weights and are no finding. A diverged baseline leaves nothing to compare with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from search.results.records import (
    ci95,
    complete_trials,
    configuration_of,
    finite_trials,
    mean_of,
)
from search.store import schema
from search.study.metrics import METRICS
from search.study.spec import MIN_PAIRS

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from search.study.spec import Reference

MIN_SEEDS = MIN_PAIRS
ALPHA = 0.05  # familywise error rate of the verdicts (and the level of the report's † mark)
POWER = 0.8  # the power at which detectable differences and needed replicates are computed
VERDICTS = ("better", "worse", "equivalent", "undecided")  # the three regions, then none shown


def paired_differences(config_acc: dict[int, float], baseline_acc: dict[int, float]) -> np.ndarray:
    """Per-seed differences over the seeds both runs have, in seed order."""
    seeds = sorted(set(config_acc) & set(baseline_acc))
    return np.array([config_acc[s] - baseline_acc[s] for s in seeds], dtype=np.float64)


def paired_test(d: np.ndarray) -> dict[str, float]:
    """Mean difference, its 95% CI, paired t and Wilcoxon p-values, and d_z for differences ``d``."""
    from scipy import stats

    n = len(d)
    mean = float(d.mean()) if n else math.nan
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and sd > 0:
        (low, high), t_p, dz = ci95(d), float(stats.ttest_1samp(d, 0.0).pvalue), mean / sd
    elif n > 1:  # every pair differs by the same amount: no spread, no t-statistic (equal pairs: no difference)
        low, high, t_p, dz = mean, mean, 1.0 if mean == 0 else math.nan, math.nan
    else:
        low, high, t_p, dz = math.nan, math.nan, math.nan, math.nan
    diff = schema.DIFF
    out = {"n_pairs": n, schema.mean("test", diff): mean, schema.std("test", diff): sd,
           schema.ci95("low", "test", diff): low, schema.ci95("high", "test", diff): high, "t_pvalue": t_p,
           "effect_size_dz": dz}
    if n == 0:
        out["wilcoxon_pvalue"] = math.nan
    elif np.all(d == 0):
        out["wilcoxon_pvalue"] = 1.0
    else:
        out["wilcoxon_pvalue"] = float(stats.wilcoxon(d, zero_method="wilcox").pvalue)
    return out


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN stays NaN and is not counted)."""
    p = np.asarray(pvalues, dtype=np.float64)
    valid = np.flatnonzero(~np.isnan(p))
    adjusted = np.full(len(p), np.nan)
    m = len(valid)
    running = 0.0
    for rank, i in enumerate(valid[np.argsort(p[valid], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adjusted[i] = running
    return adjusted.tolist()


_RACE_COLUMNS = (schema.RACE_REPLICATES, schema.RACE_REASON)
_COLUMNS = [c for c in schema.names(schema.STATS_COLUMNS) if c not in _RACE_COLUMNS]
VERDICT_COLUMNS = _COLUMNS[_COLUMNS.index("rope"):]  # what verdicts() fills in


def baseline_comparison(trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str],
                        metric: str = "accuracy", rope: float | None = None,
                        race: Sequence[dict] | None = None) -> pd.DataFrame:
    """One row per non-baseline configuration: its paired comparison with the baseline on ``metric``,
    and its verdict.

    A positive ``mean_test_diff`` means a higher value than the baseline: better for accuracy
    and R2, worse for MAE. ``rope`` is the region of practical equivalence in the metric's
    units (default: :func:`default_rope`).

    ``race``: the looks a race took (see :mod:`search.results.race`); then each verdict is the
    race's, at the look where the configuration stopped (``race_replicates``, ``race_reason``),
    not a test of all its pairs at once, which would ignore that the race looked before. Its
    p-values are that look's, scaled by ``alpha`` over the look's level, so that a verdict's is
    at most ``alpha`` as in a study of fixed replicates.

    Empty when the study has no baseline (``norm = "none"``) among its complete trials.
    """
    import pandas as pd

    done = finite_trials(trials)
    base = next((t for t in done if configuration_of(t).is_baseline), None)
    columns = [schema.param(p) for p in param_names] + _COLUMNS + (list(_RACE_COLUMNS) if race is not None else [])
    if base is None:
        return pd.DataFrame(columns=columns)
    base_acc = _by_seed(base, metric)
    rows, diffs = [], []
    for t in done:
        if t is base:
            continue
        row = {schema.param(p): t.params.get(p) for p in param_names}
        row.update(configuration=configuration_of(t).label, trial_number=t.number)
        d = paired_differences(_by_seed(t, metric), base_acc)
        row.update(paired_test(d))
        rows.append(row)
        diffs.append(d)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["t_pvalue_holm"] = holm(frame["t_pvalue"])
    frame["wilcoxon_pvalue_holm"] = holm(frame["wilcoxon_pvalue"])
    frame["few_seeds"] = frame["n_pairs"] < MIN_SEEDS
    if rope is None:
        rope = default_rope(metric, float(np.nanmean(np.asarray(list(base_acc.values()), dtype=np.float64))))
    if race:
        rope = race[0]["rope"]
    judged = verdicts(diffs, rope, maximize=not METRICS[metric].minimize)
    if race is not None:
        _race_verdicts(judged, [configuration_of(t) for t in done if t is not base], race)
    for name in VERDICT_COLUMNS + (list(_RACE_COLUMNS) if race is not None else []):
        frame[name] = [v[name] for v in judged]
    return frame[columns]


def daggered(comparison: pd.DataFrame) -> pd.Series:
    """Which rows of ``comparison`` (:func:`baseline_comparison`) the tables and figures mark with a †:
    a paired difference from the baseline significant after Holm's correction (t-test, p < ALPHA); in
    a race, a verdict of better or worse, since p-values of all a configuration's replicates take no
    account of the looks that decided when it stopped."""
    if schema.RACE_REASON in comparison:
        return comparison["verdict"].isin(["better", "worse"])
    return comparison["t_pvalue_holm"].map(lambda p: p is not None and not math.isnan(p) and p < ALPHA).astype(bool)


def verdict_cell(r) -> str:
    """A row's verdict, and why it was withheld if it was."""
    withheld = r.get("withheld")
    return f"{r['verdict']} ({withheld})" if isinstance(withheld, str) and withheld else str(r["verdict"])


def verdict_labels(comparison: pd.DataFrame | None) -> dict[str, str]:
    """Each configuration's verdict as the tables print it (with why it was withheld), by label."""
    if comparison is None or comparison.empty:
        return {}
    return {r["configuration"]: verdict_cell(r) for _, r in comparison.iterrows()}


def _race_verdicts(judged: list[dict], configs: Sequence, race: Sequence[dict]) -> None:
    """Replace the fixed-replicates verdicts of ``judged`` by the race's (see :func:`baseline_comparison`)."""
    from search.study.space import config_key

    last = {}  # each configuration's last decision, with its look's replicates and level
    for look in race:
        for key, d in look["decisions"].items():
            last[key] = {**d, "replicates": look["replicates"], "level": look["level"], "alpha": look["alpha"]}
    for row, config in zip(judged, configs):
        d = last.get(config_key(config))
        if d is None:  # not looked at yet
            row.update(verdict="undecided", withheld=None, p_better=None, p_worse=None, p_equivalent=None,
                       **{schema.RACE_REPLICATES: None, schema.RACE_REASON: "racing"})
            continue
        scale = d["alpha"] / d["level"] if d["level"] > 0 else math.inf
        row.update({f"p_{k}": None if d[f"p_{k}_raw"] is None else min(1.0, d[f"p_{k}_raw"] * scale)
                    for k in VERDICTS[:3]})
        row.update(verdict=d["verdict"], withheld=d.get("withheld") if d["reason"] == "last look" else None,
                   **{schema.RACE_REPLICATES: d["replicates"], schema.RACE_REASON: d["reason"]})
        if d["verdict"] != "undecided":
            row.update(detectable_diff=None, replicates_needed=None)


def default_rope(metric: str, baseline_mean: float) -> float:
    """The metric's region of practical equivalence: ``METRICS[metric].rope`` in its units, or
    that fraction of the baseline's mean (MAE)."""
    m = METRICS[metric]
    return m.rope * abs(float(baseline_mean)) if m.rope_relative else m.rope


def verdicts(diffs: Sequence[np.ndarray], rope: float, maximize: bool = True,
             alpha: float = ALPHA) -> list[dict[str, float | str | int | None]]:
    """Each configuration's verdict against the baseline from its paired differences ``diffs[j]``.

    With Δ_j the true mean difference, oriented so that positive is an improvement (the
    sign is flipped when lower is better, for MAE), the line is split in three regions:
    ``better`` (Δ > rope), ``equivalent`` (|Δ| ≤ rope, the region of practical equivalence)
    and ``worse`` (Δ < −rope). Per configuration each region is tested (partitioning
    principle, Finner & Strassburger 2002):

    * ``equivalent`` needs Δ > −rope and Δ < rope both shown: two one-sided tests (TOST),
      ``p_equivalent`` is the larger of their p-values;
    * ``better`` needs |Δ| ≤ rope and Δ ≤ −rope rejected: ``p_better`` is the larger of the
      p-value of |Δ| ≤ rope (the folded test: the chance, at Δ = rope or Δ = −rope, whichever
      is larger, of a mean at least as far out as the observed one) and of Δ ≤ −rope;
      ``worse`` is the mirror image.

    Each test reads its tails from the studentized bootstrap of the differences
    (:mod:`search.results.bootstrap`), not from Student's t: its one-sided error shrinks as 1/n
    where the t-test's shrinks as 1/√n, which matters at alpha / m. Exactly one region holds the
    truth for each configuration, so there are exactly as many true hypotheses as
    configurations: each p-value is multiplied by their number m (Bonferroni, which Shaffer's
    refinement of Holm reduces to under this constraint) and a verdict is declared when its
    adjusted p-value is at most ``alpha``; at most one can be.

    A verdict is withheld (``undecided``, the reason in ``withheld``; see :func:`shape_check`)
    with fewer than :data:`VERDICT_MIN_PAIRS` pairs or with no spread; with a skewness that the
    bootstrap does not correct at that many pairs, it must pass Cantelli's inequality as well.

    Guarantee, and its conditions: the chance that any configuration of the study gets a wrong
    verdict is at most ``alpha`` for independent replicates whose differences have a finite
    variance; it is exact in the limit and checked, not proven, at finite n:
    ``benchmarks/calibration.py`` measures it by Monte Carlo on normal, t3, skewed (±2),
    binomial and stepped (two-point) differences at n = 30 to 100 and m = 1 to 36, every cell
    at most ``alpha`` plus 3 Monte Carlo standard errors (docs/reports.md). No bound on the
    metric is used, so MAE's differences are judged the same way. Undecided configurations get
    :func:`power`'s numbers where the pairs have a spread.
    """
    m = max(1, len(diffs))
    g = [np.asarray(d, dtype=np.float64) * (1.0 if maximize else -1.0) for d in diffs]
    out = []
    for improvement, row in zip(g, decide(g, rope, alpha)):
        row.update(rope=rope, detectable_diff=None, replicates_needed=None)
        if row["verdict"] == "undecided" and has_spread(improvement):
            row.update(power(improvement, rope, alpha / m))
        out.append(row)
    return out


VERDICT_MIN_PAIRS = 30  # fewer pairs give no verdict: a tail the sample missed cannot be seen (docs/reports.md)
SKEW_FACTOR = 50  # a verdict needs n >= SKEW_FACTOR * G1**2 (the sample skewness G1), measured by the harness


def shape_check(g: np.ndarray) -> str | None:
    """Why the paired differences ``g`` get no verdict, or ``None`` when they may have one:

    * ``fewer than 30 replicates`` (:data:`VERDICT_MIN_PAIRS`): at 10 or 20 replicates a
      distribution with skewness 2 gets wrong verdicts 3 to 24 times in 100 studies whatever the
      test (t, Hall's transformation, the bootstrap-t), since most of its samples miss the tail;
    * ``no spread``: every pair differs by the same amount, so the sample says nothing about how
      far its mean may be from the truth (a penalty that changes one test row in most replicates
      looks like that at five replicates);
    * ``skewed``: n < :data:`SKEW_FACTOR` · G1², with G1 the sample skewness: a tail that the
      bootstrap's correction does not reach at this n (Cochran's rule of thumb, n > 25 G1²,
      in the form the calibration harness measured to hold at alpha / 36). Such a configuration
      is not withheld outright: it must pass Cantelli's bound too (see :func:`region_verdicts`),
      which a collapse far beyond the rope does and a mean near its edge does not.
    """
    n = len(g)
    if n and not np.all(np.isfinite(g)):
        return "not finite"
    if n < VERDICT_MIN_PAIRS:
        return f"fewer than {VERDICT_MIN_PAIRS} replicates"
    if not has_spread(g):
        return "no spread"
    if n < SKEW_FACTOR * skewness(g) ** 2:
        return "skewed"
    return None


def has_spread(g: np.ndarray) -> bool:
    """Whether the finite values ``g`` differ by more than rounding (a 1e-12 part of their size)."""
    g = np.asarray(g, dtype=np.float64)
    if len(g) < 2 or not np.all(np.isfinite(g)):
        return False
    return float(np.ptp(g)) > 1e-12 * max(1.0, float(np.max(np.abs(g))))


def skewness(g: np.ndarray) -> float:
    """The sample skewness G1 = m3 / m2^1.5 (moments about the mean, divided by n); 0 without spread."""
    c = np.asarray(g, dtype=np.float64) - np.mean(g)
    top = float(np.max(np.abs(c))) if len(c) else 0.0
    c = c / top if top > 0 else c  # G1 does not depend on the scale: no square overflows
    m2 = float(np.mean(c * c))
    return float(np.mean(c ** 3) / m2 ** 1.5) if m2 > 0 else 0.0


def decide(improvements: Sequence[np.ndarray], rope: float, alpha: float = ALPHA) -> list[dict]:
    """The verdicts of :func:`verdicts`, their adjusted p-values and why a verdict was withheld,
    for improvements (positive: better)."""
    m = max(1, len(improvements))
    verdict, withheld, p = region_verdicts(improvements, rope, alpha / m)
    return [{"verdict": verdict[j], "withheld": withheld[j],
             **{f"p_{k}": None if np.isnan(p[k][j]) else min(1.0, m * float(p[k][j])) for k in p}}
            for j in range(len(improvements))]


def region_verdicts(improvements: Sequence[np.ndarray], rope: float, level: float, withheld_pvalues: bool = True
                    ) -> tuple[list[str], list[str | None], dict[str, np.ndarray]]:
    """Each row's verdict at ``level`` (a region whose unadjusted p-value is at most ``level``, unless
    :func:`shape_check` withholds it), the reason it was withheld, and the unadjusted p-values
    (NaN for withheld rows unless ``withheld_pvalues``: the tables show them, a simulation need not).
    A skewed row's p-values are the larger of the bootstrap's and Cantelli's (:func:`_cantelli`);
    ``skewed`` is its reason only where the bootstrap alone would have decided.
    Rows are independent of one another: a study's configurations, or many studies' at once."""
    checks = [shape_check(np.asarray(g, dtype=np.float64)) for g in improvements]
    judged = [j for j in range(len(improvements)) if withheld_pvalues or checks[j] in (None, "skewed")]
    some = _region_pvalues([improvements[j] for j in judged], rope, level)
    p = {k: np.full(len(improvements), np.nan) for k in some}
    for k, values in p.items():
        values[judged] = some[k]

    def first(j: int) -> str:
        return next((k for k in VERDICTS[:3] if level > 0 and p[k][j] <= level), "undecided")

    verdict, withheld = [], []
    for j, check in enumerate(checks):
        if check == "skewed":
            alone = first(j)
            for k, bound in _cantelli(np.asarray(improvements[j], dtype=np.float64), rope).items():
                p[k][j] = max(p[k][j], bound)
            verdict.append(first(j))
            withheld.append("skewed" if verdict[-1] != alone else None)
        else:
            verdict.append("undecided" if check else first(j))
            withheld.append(check)
    return verdict, withheld, p


def _cantelli(g: np.ndarray, rope: float) -> dict[str, float]:
    """The region p-values of :func:`verdicts` from Cantelli's inequality, P(X̄ − Δ ≥ k·se) ≤ 1 / (1 + k²),
    which holds for a mean of any distribution with that standard error (here the sample's): what a
    skewed configuration must pass besides the bootstrap, whose correction does not reach its tail."""
    n = len(g)
    mean, se = float(np.mean(g)), float(np.std(g, ddof=1)) / math.sqrt(n)

    def tail(k: float) -> float:
        return 1.0 / (1.0 + k * k) if k > 0 else 1.0

    above_minus, below_plus = tail((mean + rope) / se), tail((rope - mean) / se)  # H: Δ ≤ −rope; H: Δ ≥ rope
    folded = tail((abs(mean) - rope) / se)  # H: |Δ| ≤ rope (the far side's chance is at most as large)
    return {"better": max(folded, above_minus), "worse": max(folded, below_plus),
            "equivalent": max(above_minus, below_plus)}


def _region_pvalues(g: Sequence[np.ndarray], rope: float, level: float) -> dict[str, np.ndarray]:
    """Unadjusted p-values of "better", "worse" and "equivalent" for each configuration's improvements
    ``g[j]`` (see :func:`verdicts`), from the studentized bootstrap with enough resamples to resolve
    ``level``; NaN for fewer than two pairs or no spread (no t-statistic), and at a level too small
    to reach (see :func:`search.results.bootstrap.resamples_for`)."""
    from search.results import bootstrap

    out = {k: np.full(len(g), np.nan) for k in VERDICTS[:3]}
    by_length: dict[int, list[int]] = {}
    for j, x in enumerate(g):
        if has_spread(x):
            by_length.setdefault(len(x), []).append(j)
    resamples = bootstrap.resamples_for(level)
    if resamples is None:  # a level too small to resolve: nothing is rejected
        return out
    for n, rows in by_length.items():
        x = np.stack([np.asarray(g[j], dtype=np.float64) for j in rows])
        mean, se = x.mean(axis=1), x.std(axis=1, ddof=1) / math.sqrt(n)
        a = np.abs(mean)
        upper = np.stack([(mean + rope) / se, (a - rope) / se, (a + rope) / se], axis=1)
        lower = np.stack([(mean - rope) / se, (-a - rope) / se, (rope - a) / se], axis=1)
        up, low = bootstrap.tail_counts(x, upper, lower, resamples)
        tail = (1.0 + np.concatenate([up, low], axis=1)) / (resamples + 1.0)
        above_minus, below_plus = tail[:, 0], tail[:, 3]  # H: Δ ≤ −rope; H: Δ ≥ rope
        folded = np.minimum(1.0, np.maximum(tail[:, 1] + tail[:, 4], tail[:, 2] + tail[:, 5]))  # H: |Δ| ≤ rope
        out["better"][rows] = np.maximum(folded, above_minus)
        out["worse"][rows] = np.maximum(folded, below_plus)
        out["equivalent"][rows] = np.maximum(above_minus, below_plus)
    return out


def power(g: np.ndarray, rope: float, level: float, target: float = POWER,
          max_replicates: int = 1_000_000) -> dict[str, float | int | None]:
    """For improvements ``g`` (one per replicate) tested at ``level`` (alpha over the configurations),
    were the true sd of Δ the observed one (noncentral t: the sd is estimated in each study):

    * ``detectable_diff``: the smallest true difference |Δ| that the same number of
      replicates would call ``better`` (or ``worse``) with probability ``target``; ``None``
      below :data:`VERDICT_MIN_PAIRS` replicates, where nothing is decided;
    * ``replicates_needed``: how many replicates would reach a verdict with probability
      ``target`` if the true difference were the observed mean: ``better`` or ``worse`` when
      the mean lies outside the rope, ``equivalent`` inside it (both of TOST's bounds must be
      shown); ``None`` when the mean sits on the rope's edge or more than ``max_replicates``
      would be needed.

    Both count the verdicts that :func:`shape_check` withholds from normal differences (a
    sample skewness beyond its limit by chance), so they promise what the verdicts deliver; for
    a skewed sample ``replicates_needed`` is at least what its skewness check asks (50 · G1²).
    """
    from scipy import optimize, stats

    n, mean, sd = len(g), abs(float(g.mean())), float(g.std(ddof=1))

    def kept(k: int) -> float:
        """The chance that normal differences pass :func:`shape_check`'s skewness test at k replicates."""
        limit = math.sqrt(k / SKEW_FACTOR)
        spread = math.sqrt(6.0 * (k - 2) / ((k + 1) * (k + 3)))
        return 1.0 - 2.0 * float(stats.norm.sf(limit / spread))

    def critical(k: int) -> float:
        """The t-statistic a verdict needs at k replicates: Student's at ``level`` with (k − 1) / 2
        degrees of freedom, where the bootstrap's tails, heavier than Student's at small levels,
        put it (measured by benchmarks/calibration.py's promises)."""
        return float(stats.t.isf(level, (k - 1) / 2))

    def outside(k: int, delta: float) -> float:  # P(better) at a true |Δ| = delta
        df = k - 1
        return float(stats.nct.sf(critical(k), df, (delta - rope) * math.sqrt(k) / sd)) * kept(k)

    def inside(k: int, delta: float) -> float:  # P(equivalent): both one-sided tests reject
        df, c = k - 1, critical(k)
        miss = sum(float(stats.nct.cdf(c, df, (rope + s * delta) * math.sqrt(k) / sd)) for s in (1, -1))
        return max(0.0, 1.0 - miss) * kept(k)

    detectable = None
    if n >= VERDICT_MIN_PAIRS and kept(n) > target:
        try:
            detectable = float(optimize.brentq(lambda d: outside(n, d) - target, rope, rope + 100 * sd + 1.0))
        except ValueError:  # the noncentral t's tail out of floating range: an sd far below the rope
            detectable = None
    if mean == rope:
        return {"detectable_diff": detectable, "replicates_needed": None}
    decided = (lambda k: outside(k, mean) >= target) if mean > rope else (lambda k: inside(k, mean) >= target)
    # Undecided at low: below the minimum, or where the skewness check would still ask more of it.
    low = max(n, VERDICT_MIN_PAIRS - 1, math.ceil(SKEW_FACTOR * skewness(g) ** 2) - 1)
    high = low + 1
    while not decided(high):
        low, high = high, max(high + 1, int(high * 1.5))
        if high > max_replicates:
            return {"detectable_diff": detectable, "replicates_needed": None}
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if decided(mid) else (mid, high)
    return {"detectable_diff": detectable, "replicates_needed": high}


def _by_seed(trial: optuna.trial.FrozenTrial, metric: str) -> dict[int, float]:
    a = trial.user_attrs
    return {s: v for s, v in zip(a[schema.SEEDS_ATTR], a[schema.per_seed("test", metric)]) if v is not None}


# ----------------------------------------------------------------------------- published single runs


def reference_position(value: float, seed_values: Sequence[float], decimals: int = 3) -> dict[str, float | int | str]:
    """Where a single published number falls among the seeds' values.

    Published numbers are rounded, so a seed counts as equal when it rounds to ``value`` at
    ``decimals`` places (55/70 = 0.7857 equals a published 0.786).
    """
    v = np.asarray(seed_values, dtype=np.float64)
    same = np.round(v, decimals) == round(value, decimals)
    below, equal = int(((v < value) & ~same).sum()), int(same.sum())
    percentile = 100.0 * (below + 0.5 * equal) / len(v)  # mid-rank percentile
    z = (value - v.mean()) / v.std(ddof=1) if len(v) > 1 and v.std(ddof=1) > 0 else math.nan
    if below == len(v):
        words = f"above all {len(v)} seeds"
    elif below == 0 and equal == 0:
        words = f"below all {len(v)} seeds"
    else:
        words = f"above {below}, equal to {equal} and below {len(v) - below - equal} of {len(v)} seeds"
    return {"percentile": percentile, "z": float(z), "below": below, "equal": equal, "words": words}


def reference_table(references: Sequence[Reference], trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame | None:
    """Published single runs beside the measured distribution of the same configuration; ``None`` without any."""
    import pandas as pd

    from search.study.space import Configuration

    if not references:
        return None
    measured = {configuration_of(t): t for t in complete_trials(trials)}
    rows = []
    for ref in references:
        config = Configuration(ref.norm, ref.strength, ref.placement, ref.l1_ratio)
        t = measured.get(config)
        row = {"configuration": config.label, "source": ref.source,
               "published_train_accuracy": ref.train_accuracy, "published_test_accuracy": ref.test_accuracy}
        if t is not None:
            a = t.user_attrs
            pos = reference_position(ref.test_accuracy, a["test_accuracy"])
            row.update({"trial_number": t.number, "n_seeds": len(a["test_accuracy"]),
                        # not t.value: validation rows may choose
                        schema.mean("test", "accuracy"): mean_of(a, "test", "accuracy"),
                        schema.std("test", "accuracy"): a[schema.std("test", "accuracy")],
                        schema.mean("train", "accuracy"): a[schema.mean("train", "accuracy")],
                        "min_test_accuracy": min(a["test_accuracy"]), "max_test_accuracy": max(a["test_accuracy"]),
                        "test_percentile": pos["percentile"], "test_z": pos["z"], "where": pos["words"]})
        rows.append(row)
    return pd.DataFrame(rows)
