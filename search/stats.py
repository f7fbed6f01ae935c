"""Paired statistics against the baseline: every configuration ran the same seeds.

For each configuration, d_k = the test metric (accuracy, R2 or MAE) of seed k minus the
baseline's of the same seed, over the seeds both have. Reported per configuration:

* ``mean_diff`` with its two-sided 95% Student-t interval (``ci95_low_diff``, ``ci95_high_diff``);
* ``t_pvalue``: paired t-test (H0: mean of d is 0); ``wilcoxon_pvalue``: Wilcoxon signed-rank
  test (zero differences dropped; 1.0 when every difference is zero);
* ``t_pvalue_holm``, ``wilcoxon_pvalue_holm``: Holm's step-down correction across all
  configurations of the table;
* ``effect_size_dz``: Cohen's d_z = mean(d) / sd(d) (NaN when sd is 0);
* ``few_seeds``: True with fewer than 5 pairs, where none of these tests means much.

Diverged configurations (see :mod:`search.results`) are left out: their numbers come
from NaN weights and are no finding. A diverged baseline leaves nothing to compare with.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from search.results import ci95, complete_trials, configuration_of, finite_trials

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from search.spec import Reference

MIN_SEEDS = 5


def paired_differences(config_acc: dict[int, float], baseline_acc: dict[int, float]) -> np.ndarray:
    """Per-seed differences over the seeds both runs have, in seed order."""
    seeds = sorted(set(config_acc) & set(baseline_acc))
    return np.array([config_acc[s] - baseline_acc[s] for s in seeds], dtype=np.float64)


def paired_test(d: np.ndarray) -> dict[str, float]:
    """Mean difference, its 95% CI, paired t and Wilcoxon p-values, and d_z for differences ``d``."""
    from scipy import stats

    n = len(d)
    out = {"n_pairs": n, "mean_diff": float(d.mean()) if n else math.nan}
    sd = float(d.std(ddof=1)) if n > 1 else math.nan
    if n > 1 and sd > 0:
        low, high = ci95(d)
        out.update(ci95_low_diff=low, ci95_high_diff=high, t_pvalue=float(stats.ttest_1samp(d, 0.0).pvalue), effect_size_dz=out["mean_diff"] / sd)
    elif n > 1:  # every pair differs by the same amount: no spread to test against
        same = out["mean_diff"] == 0
        out.update(ci95_low_diff=out["mean_diff"], ci95_high_diff=out["mean_diff"],
                   t_pvalue=1.0 if same else 0.0, effect_size_dz=math.nan)
    else:
        out.update(ci95_low_diff=math.nan, ci95_high_diff=math.nan, t_pvalue=math.nan, effect_size_dz=math.nan)
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


def baseline_comparison(trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str],
                        metric: str = "accuracy") -> pd.DataFrame:
    """One row per non-baseline configuration: its paired comparison with the baseline on ``metric``.

    A positive ``mean_diff`` means a higher value than the baseline: better for accuracy
    and R2, worse for MAE.

    Empty when the study has no baseline (``norm = "none"``) among its complete trials.
    """
    import pandas as pd

    done = finite_trials(trials)
    base = next((t for t in done if configuration_of(t).is_baseline), None)
    columns = [f"param_{p}" for p in param_names] + ["configuration", "trial_number",
        "n_pairs", "mean_diff", "ci95_low_diff", "ci95_high_diff", "t_pvalue", "t_pvalue_holm",
        "wilcoxon_pvalue", "wilcoxon_pvalue_holm", "effect_size_dz", "few_seeds"]
    if base is None:
        return pd.DataFrame(columns=columns)
    base_acc = _by_seed(base, metric)
    rows = []
    for t in done:
        if t is base:
            continue
        row = {f"param_{p}": t.params.get(p) for p in param_names}
        row.update(configuration=configuration_of(t).label, trial_number=t.number)
        row.update(paired_test(paired_differences(_by_seed(t, metric), base_acc)))
        rows.append(row)
    frame = pd.DataFrame(rows)
    if frame.empty:
        return pd.DataFrame(columns=columns)
    frame["t_pvalue_holm"] = holm(frame["t_pvalue"])
    frame["wilcoxon_pvalue_holm"] = holm(frame["wilcoxon_pvalue"])
    frame["few_seeds"] = frame["n_pairs"] < MIN_SEEDS
    return frame[columns]


def _by_seed(trial: optuna.trial.FrozenTrial, metric: str) -> dict[int, float]:
    a = trial.user_attrs
    return {s: v for s, v in zip(a["seeds"], a[f"test_{metric}"]) if v is not None}


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

    from search.space import Configuration

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
            row.update(trial_number=t.number, n_seeds=len(a["test_accuracy"]), mean_test_accuracy=t.value,
                       std_test_accuracy=a["std_test_accuracy"], mean_train_accuracy=a["mean_train_accuracy"],
                       min_test_accuracy=min(a["test_accuracy"]), max_test_accuracy=max(a["test_accuracy"]),
                       test_percentile=pos["percentile"], test_z=pos["z"], where=pos["words"])
        rows.append(row)
    return pd.DataFrame(rows)
