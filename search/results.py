"""Results: one function aggregates seeds into a trial, one builds the tables.

Conventions (also in the README):

* ``std_*`` is the sample standard deviation over seeds (ddof = 1); NaN for one seed.
* ``ci95_*`` is the two-sided 95% Student-t interval of the mean over seeds:
  mean +- t(0.975, n - 1) * std / sqrt(n).
* ``rank_test_accuracy`` is 1 for the best mean test accuracy; ties share the best rank.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from search.space import Configuration

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from search.trainer import SeedResult

SCHEMA = 1  # version of the user attributes written to each trial


@dataclass(frozen=True)
class TrialRecord:
    """What one configuration's fits store in its Optuna trial."""

    value: float
    user_attrs: dict[str, Any]
    intermediate_values: dict[int, float] = field(default_factory=dict)


def record_epochs(epochs: int, step: int) -> list[int]:
    """1-based epochs at which curves are recorded: every ``step`` epochs and the last."""
    out = list(range(step, epochs + 1, step))
    if not out or out[-1] != epochs:
        out.append(epochs)
    return out


def trial_record(results: Sequence[SeedResult], epochs: int, record_step: int) -> TrialRecord:
    """Aggregate the per-seed results of one configuration (seeds in the given order)."""
    test = np.array([r.test_accuracy for r in results], dtype=np.float64)
    train = np.array([r.train_accuracy for r in results], dtype=np.float64)
    at = np.array(record_epochs(epochs, record_step)) - 1
    curves: dict[str, list] = {"epoch": [int(e + 1) for e in at]}
    for key in ("accuracy", "test_accuracy", "loss", "test_loss"):
        h = np.stack([r.history[key][at] for r in results]).astype(np.float64)
        curves[f"mean_{key}"] = _floats(h.mean(axis=0))
        curves[f"std_{key}"] = _floats(h.std(axis=0, ddof=1) if len(results) > 1 else np.full(len(at), np.nan))
    mean_test = float(test.mean())
    attrs = {
        "schema": SCHEMA,
        "seeds": [r.seed for r in results],
        "test_accuracy": _floats(test),
        "train_accuracy": _floats(train),
        "test_loss": _floats([r.test_loss for r in results]),
        "train_loss": _floats([r.train_loss for r in results]),
        "mean_activation": [_floats(r.mean_activation) for r in results],  # per seed, per regularized layer
        "zero_fraction": [_floats(r.zero_fraction) for r in results],
        "std_test_accuracy": _std(test),
        "mean_train_accuracy": float(train.mean()),
        "std_train_accuracy": _std(train),
        "curves": curves,
    }
    intermediate = {int(e): float(v) for e, v in zip(curves["epoch"], curves["mean_test_accuracy"])}
    return TrialRecord(mean_test, attrs, intermediate)


def summary_frame(trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str]) -> pd.DataFrame:
    """One row per configuration, with the columns documented in the README.

    Only complete trials count; if two trials hold the same configuration, the first wins.
    """
    import pandas as pd

    rows = []
    for trial in complete_trials(trials):
        a = trial.user_attrs
        test = np.asarray(a["test_accuracy"], dtype=np.float64)
        train = np.asarray(a["train_accuracy"], dtype=np.float64)
        n = len(test)
        low, high = ci95(test)
        row: dict[str, Any] = {f"param_{p}": trial.params.get(p) for p in param_names}
        row.update({
            "n_seeds": n,
            "mean_test_accuracy": float(test.mean()),
            "std_test_accuracy": _std(test),
            "ci95_low_test_accuracy": low,
            "ci95_high_test_accuracy": high,
            "rank_test_accuracy": 0,
            "mean_train_accuracy": float(train.mean()),
            "std_train_accuracy": _std(train),
            "mean_activation": _layer_mean(a["mean_activation"]),
            "mean_zero_fraction": _layer_mean(a["zero_fraction"]),
        })
        for k, v in enumerate(test):
            row[f"split{k}_test_accuracy"] = float(v)
        rows.append(row)
    frame = pd.DataFrame(rows)
    if not rows:
        return pd.DataFrame(columns=[f"param_{p}" for p in param_names] + ["n_seeds", "mean_test_accuracy"])
    frame["rank_test_accuracy"] = frame["mean_test_accuracy"].rank(method="min", ascending=False).astype(int)
    return frame


def per_seed_frame(trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str]) -> pd.DataFrame:
    """One row per configuration and seed."""
    import pandas as pd

    rows = []
    for trial in complete_trials(trials):
        a = trial.user_attrs
        params = {f"param_{p}": trial.params.get(p) for p in param_names}
        for k, seed in enumerate(a["seeds"]):
            rows.append({
                **params,
                "seed": seed,
                "split": k,
                "test_accuracy": a["test_accuracy"][k],
                "train_accuracy": a["train_accuracy"][k],
                "test_loss": a["test_loss"][k],
                "train_loss": a["train_loss"][k],
                "mean_activation": _mean(a["mean_activation"][k]),
                "zero_fraction": _mean(a["zero_fraction"][k]),
            })
    return pd.DataFrame(rows)


def ci95(values: np.ndarray) -> tuple[float, float]:
    """Two-sided 95% Student-t confidence interval of the mean; NaN for fewer than 2 values."""
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    from scipy import stats

    mean = float(np.mean(values))
    half = float(stats.t.ppf(0.975, n - 1)) * float(np.std(values, ddof=1)) / math.sqrt(n)
    return mean - half, mean + half


def write_csv(frame: pd.DataFrame, path: str | os.PathLike[str]) -> None:
    """Write ``frame`` atomically: readers see the old file or the whole new one."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".actreg-", suffix=".csv", dir=folder)
    try:
        with os.fdopen(fd, "w", newline="") as f:
            frame.to_csv(f, index=False)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def configuration_of(trial: optuna.trial.FrozenTrial) -> Configuration:
    return Configuration.from_params(trial.params)


def complete_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Complete trials with results, one per configuration (the first), in trial order."""
    import optuna

    seen, out = set(), []
    for t in sorted(trials, key=lambda t: t.number):
        if t.state != optuna.trial.TrialState.COMPLETE or "test_accuracy" not in t.user_attrs:
            continue
        key = configuration_of(t)
        if key in seen:
            continue
        seen.add(key)
        out.append(t)
    return out


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _layer_mean(per_seed: Sequence[Sequence[float]]) -> float:
    flat = [v for seed in per_seed for v in seed]
    return float(np.mean(flat)) if flat else math.nan


def _mean(values: Sequence[float]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def _floats(values) -> list[float]:
    return [float(v) for v in values]
