"""Results: one function aggregates seeds into a trial, one builds the tables.

Conventions (also in the README):

* ``std_*`` is the sample standard deviation over seeds (ddof = 1); NaN for one seed.
* ``ci95_*`` is the two-sided 95% Student-t interval of the mean over seeds:
  mean +- t(0.975, n - 1) * std / sqrt(n).
* ``rank_test_<metric>`` is 1 for the best mean (highest accuracy or R2, lowest MAE);
  ties share the best rank. With validation rows (``[data] validation``), the trial value
  is the mean *validation* metric and ``rank_validation_<metric>`` ranks by it: the
  configuration is chosen on rows that do not report it; the test columns stand beside.
  Accuracies are exact fractions of the rows (correct / rows,
  from the trainer's float32 counts), and mean accuracies come from the integer total of
  correct predictions, so configurations with equal totals have equal means and share
  their rank, instead of being ordered by float rounding.
* A configuration on which some seed's loss became NaN or infinite has ``status``
  ``"diverged"``: it is stored (with the seeds that diverged and the epoch at which each
  did), but it has no mean, std or interval, is ranked after every finite configuration
  and never enters the paired statistics. Its Optuna value is the worst possible (-inf
  when maximizing, +inf when minimizing), so samplers steer away from it.

Column names follow the study's metric: ``mean_test_accuracy`` for a classifier,
``mean_test_r2`` or ``mean_test_mae`` for a regression.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from search.study.metrics import METRICS
from search.study.space import Configuration

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from search.study.spec import DataSpec
    from search.engine.trainer import SeedResult

SCHEMA = 3  # version of the user attributes written to each trial (1: accuracy only; 2: no status)
OK, DIVERGED = "ok", "diverged"
# The learning curves (mean and std of every metric at every recorded epoch) are a trial
# *system* attribute: optuna-dashboard shows user attributes in one table row each, and a
# curves row was thousands of pixels wide. The dashboard plots the objective's curve from
# the intermediate values; ``actreg report`` attaches the full curves as an artifact.
CURVES_ATTR = "actreg:curves"


@dataclass(frozen=True)
class TrialRecord:
    """What one configuration's fits store in its Optuna trial; ``status`` is ``"ok"`` or ``"diverged"``."""

    value: float
    user_attrs: dict[str, Any]
    intermediate_values: dict[int, float] = field(default_factory=dict)
    status: str = OK
    system_attrs: dict[str, Any] = field(default_factory=dict)


def diverged_at(result: SeedResult) -> int | None:
    """The first epoch (1-based) after which the seed's loss was NaN or infinite; ``None`` if it never was.

    A loss that is finite every epoch but a final loss that is not (or a final metric that
    is NaN) counts as diverging at the last epoch.
    """
    losses = np.stack([np.asarray(v, dtype=np.float64) for k, v in result.history.items() if k.endswith("loss")])
    bad = np.flatnonzero(~np.isfinite(losses).all(axis=0))
    if len(bad):
        return int(bad[0]) + 1
    finals = [*result.train.values(), *result.test.values()]
    if not all(math.isfinite(v) for v in finals):
        return len(next(iter(result.history.values())))
    return None


def record_epochs(epochs: int, step: int) -> list[int]:
    """1-based epochs at which curves are recorded: every ``step`` epochs and the last."""
    out = list(range(step, epochs + 1, step))
    if not out or out[-1] != epochs:
        out.append(epochs)
    return out


def trial_record(results: Sequence[SeedResult], epochs: int, record_step: int,
                 metrics: Sequence[str] = ("accuracy",), maximize: bool = True,
                 rows: tuple[int, ...] | None = None) -> TrialRecord:
    """Aggregate the per-seed results of one configuration (seeds in the given order).

    ``metrics[0]`` is the objective: the trial value is its mean on the validation rows
    when the results have them, else on the test set, or the worst possible value if a
    seed diverged (see the module). Non-finite numbers are stored as ``None`` (JSON has no
    NaN). ``rows`` (training, test and validation rows) makes accuracies exact fractions
    of them (see the module).
    """
    objective = metrics[0]
    diverged = [(r.seed, e) for r in results if (e := diverged_at(r)) is not None]
    at = np.array(record_epochs(epochs, record_step)) - 1
    curves: dict[str, list] = {"epoch": [int(e + 1) for e in at]}
    for key in results[0].history:
        h = np.stack([r.history[key][at] for r in results]).astype(np.float64)
        curves[f"mean_{key}"] = _floats(h.mean(axis=0))
        curves[f"std_{key}"] = _floats(h.std(axis=0, ddof=1) if len(results) > 1 else np.full(len(at), np.nan))
    attrs: dict[str, Any] = {"schema": SCHEMA, "metric": objective, "metrics": list(metrics),
                             "seeds": [r.seed for r in results], "status": DIVERGED if diverged else OK,
                             "n_diverged": len(diverged)}
    if diverged:
        attrs["diverged_seeds"] = [s for s, _ in diverged]
        attrs["diverged_epochs"] = [e for _, e in diverged]
    validated = results[0].validation is not None
    splits = ("train", "test", "validation") if validated else ("train", "test")
    for name in (*metrics, "loss"):
        attrs[f"test_{name}"] = _floats([r.test[name] for r in results])
        attrs[f"train_{name}"] = _floats([r.train[name] for r in results])
        if validated:
            attrs[f"validation_{name}"] = _floats([r.validation[name] for r in results])
    fractions = [name for name in metrics if METRICS[name].fraction]
    if rows is not None and fractions:
        for split, n in zip(splits, rows):
            attrs[f"n_{split}"] = n
            for name in fractions:
                attrs[f"{split}_{name}"] = [None if v is None else round(v * n) / n for v in attrs[f"{split}_{name}"]]
    attrs["fit_time"] = [float(r.fit_seconds) for r in results]
    test = np.asarray(attrs[f"test_{objective}"], dtype=np.float64)
    train = np.asarray(attrs[f"train_{objective}"], dtype=np.float64)
    test_mean, train_mean = mean_of(attrs, "test", objective), mean_of(attrs, "train", objective)
    attrs.update({
        "mean_activation": [_floats(r.mean_activation) for r in results],  # per seed, per regularized layer
        "zero_fraction": [_floats(r.zero_fraction) for r in results],
        f"std_test_{objective}": _finite(_std(test)),
        f"mean_train_{objective}": _finite(train_mean),
        f"std_train_{objective}": _finite(_std(train)),
    })
    value = test_mean
    if validated:
        value = mean_of(attrs, "validation", objective)
        attrs[f"mean_validation_{objective}"] = _finite(value)
        attrs[f"std_validation_{objective}"] = _finite(_std(np.asarray(attrs[f"validation_{objective}"],
                                                                        dtype=np.float64)))
    system = {CURVES_ATTR: curves}
    intermediate = {int(e): float(v) for e, v in zip(curves["epoch"], curves[f"mean_test_{objective}"])
                    if v is not None}
    # "summary": what optuna-dashboard's attribute table shows at a glance.
    if diverged:
        attrs["summary"] = f"diverged on {len(diverged)} of {len(results)} seeds"
        return TrialRecord(-math.inf if maximize else math.inf, attrs, intermediate, DIVERGED, system)
    low, high = ci95(test)
    chosen = f"validation {objective} {value:.3f}, " if validated else ""
    attrs["summary"] = (f"{chosen}test {objective} {test_mean:.3f} ± {_std(test):.3f} (95% CI {low:.3f}–{high:.3f}), "
                        f"train {train_mean:.3f}, {len(results)} seeds")
    return TrialRecord(value, attrs, intermediate, OK, system)


def trial_curves(trial: optuna.trial.FrozenTrial) -> dict[str, list]:
    """The learning curves a trial stored: ``epoch`` and ``mean_``/``std_`` of each history key
    (in a user attribute in studies run by earlier versions)."""
    return trial.system_attrs.get(CURVES_ATTR) or trial.user_attrs["curves"]


def curves_frame(trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame:
    """Long table of every complete trial's learning curves: ``configuration``, ``trial_number``,
    ``epoch``, then ``mean_``/``std_`` of each history key (e.g. ``mean_test_accuracy``)."""
    import pandas as pd

    frames = [pd.DataFrame(trial_curves(t)).assign(configuration=configuration_of(t).label,
                                                     trial_number=t.number)
              for t in complete_trials(trials)]
    if not frames:
        return pd.DataFrame(columns=["configuration", "trial_number", "epoch"])
    frame = pd.concat(frames, ignore_index=True)
    first = ["configuration", "trial_number", "epoch"]
    return frame[first + [c for c in frame.columns if c not in first]]


def mean_of(attrs: dict[str, Any], split: str, metric: str) -> float:
    """Mean over seeds of ``<split>_<metric>``; for a fraction of rows (accuracy) with known row
    counts, from the integer total."""
    values = np.asarray(attrs[f"{split}_{metric}"], dtype=np.float64)
    n = attrs.get(f"n_{split}")
    if METRICS[metric].fraction and n:
        return float(np.rint(values * n).sum() / (n * len(values)))
    return float(values.mean())


def trial_metrics(trial: optuna.trial.FrozenTrial) -> list[str]:
    """The metrics a trial stored, its objective first (schema 1 stored accuracy only)."""
    return list(trial.user_attrs.get("metrics", ["accuracy"]))


def summary_frame(trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str],
                  metric: str = "accuracy", maximize: bool = True) -> pd.DataFrame:
    """One row per configuration, with the columns documented in the README.

    ``metric`` names the ranked columns; other metrics the trials stored get mean and
    std columns. Only complete trials count; if two trials hold the same configuration,
    the first wins. Diverged configurations have empty means, std and intervals and rank
    after every finite one.
    """
    import pandas as pd

    m = metric
    rows = [_summary_row(trial, param_names, m) for trial in complete_trials(trials)]
    if not rows:
        return pd.DataFrame(columns=[f"param_{p}" for p in param_names] + ["n_seeds", f"mean_test_{m}"])
    frame = pd.DataFrame(rows)
    finite = frame["status"] == OK
    for split in ("test", "validation"):
        if f"mean_{split}_{m}" in frame:
            ranks = frame[f"mean_{split}_{m}"].where(finite).rank(method="min", ascending=not maximize)
            frame[f"rank_{split}_{m}"] = ranks.fillna(int(finite.sum()) + 1).astype(int)  # diverged: after the finite
    return frame


def selection_rank(summary: pd.DataFrame, metric: str) -> str:
    """The column that ranks ``summary`` for choosing: ``rank_validation_<metric>`` where the study
    has validation rows, else ``rank_test_<metric>`` (then the choice is made on the rows that report it)."""
    return f"rank_validation_{metric}" if f"rank_validation_{metric}" in summary else f"rank_test_{metric}"


def _summary_row(trial: optuna.trial.FrozenTrial, param_names: Sequence[str], m: str) -> dict[str, Any]:
    """One configuration's row of :func:`summary_frame` (its rank is filled in there)."""
    a = trial.user_attrs
    test = np.asarray(a[f"test_{m}"], dtype=np.float64)
    train = np.asarray(a[f"train_{m}"], dtype=np.float64)
    n = len(test)
    status = a.get("status", OK)
    ok = status == OK  # a diverged seed's numbers come from NaN weights: never averaged
    low, high = ci95(test) if ok else (math.nan, math.nan)
    row: dict[str, Any] = {f"param_{p}": trial.params.get(p) for p in param_names}
    row.update({
        "configuration": configuration_of(trial).label,
        "trial_number": trial.number,
        "n_seeds": n,
        "status": status,
        "n_diverged": int(a.get("n_diverged", 0)),
        f"mean_test_{m}": mean_of(a, "test", m) if ok else math.nan,
        f"std_test_{m}": _std(test) if ok else math.nan,
        f"ci95_low_test_{m}": low,
        f"ci95_high_test_{m}": high,
        f"rank_test_{m}": 0,
        f"mean_train_{m}": mean_of(a, "train", m) if ok else math.nan,
        f"std_train_{m}": _std(train) if ok else math.nan,
    })
    validated = f"validation_{m}" in a
    if validated:
        values = np.asarray(a[f"validation_{m}"], dtype=np.float64)
        row.update({f"mean_validation_{m}": mean_of(a, "validation", m) if ok else math.nan,
                    f"std_validation_{m}": _std(values) if ok else math.nan,
                    f"rank_validation_{m}": 0})
    for other in trial_metrics(trial):
        if other != m:
            values = np.asarray(a[f"test_{other}"], dtype=np.float64)
            row.update({f"mean_test_{other}": mean_of(a, "test", other) if ok else math.nan,
                        f"std_test_{other}": _std(values) if ok else math.nan,
                        f"mean_train_{other}": mean_of(a, "train", other) if ok else math.nan})
            if validated:
                row[f"mean_validation_{other}"] = mean_of(a, "validation", other) if ok else math.nan
    fit_time = np.asarray(a.get("fit_time", [math.nan] * n), dtype=np.float64)
    row.update({
        "mean_activation": _layer_mean(a["mean_activation"]),
        "mean_zero_fraction": _layer_mean(a["zero_fraction"]),
        "mean_fit_time": float(fit_time.mean()),
        "std_fit_time": _std(fit_time),
    })
    for k, v in enumerate(test):
        row[f"split{k}_test_{m}"] = float(v)
    return row


def per_seed_frame(trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str],
                   data: DataSpec | None = None) -> pd.DataFrame:
    """One row per configuration and seed: every stored metric and loss, train, test and validation.

    With ``data`` (the study's), each row names the data its seed trained on:
    ``data_random_state`` and ``data_split_seed`` of the seed's replicate (empty where they do
    not apply: a source that is not generated, or the first ``n_train`` rows).
    """
    import pandas as pd

    rows = []
    for trial in complete_trials(trials):
        a = trial.user_attrs
        params = {f"param_{p}": trial.params.get(p) for p in param_names}
        params.update(configuration=configuration_of(trial).label, trial_number=trial.number)
        names = [*trial_metrics(trial), "loss"]
        splits = [s for s in ("test", "train", "validation") if f"{s}_loss" in a]
        for k, seed in enumerate(a["seeds"]):
            row = {**params, "seed": seed, "split": k}
            for name in names:
                for split in splits:
                    row[f"{split}_{name}"] = a[f"{split}_{name}"][k]
            row["mean_activation"] = _mean(a["mean_activation"][k])
            row["zero_fraction"] = _mean(a["zero_fraction"][k])
            row["fit_time"] = a["fit_time"][k] if "fit_time" in a else math.nan
            if data is not None:
                replicate = data.for_replicate(seed)
                row.update(data_random_state=replicate.random_state, data_split_seed=replicate.split_seed)
            rows.append(row)
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
        os.chmod(tmp, 0o644)  # as any other file written here (mkstemp makes it private)
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
        if t.state != optuna.trial.TrialState.COMPLETE or "seeds" not in t.user_attrs:
            continue
        key = configuration_of(t)
        if key in seen:
            continue
        seen.add(key)
        out.append(t)
    return out


def finite_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """:func:`complete_trials` without the diverged ones: those whose numbers are findings."""
    return [t for t in complete_trials(trials) if t.user_attrs.get("status", OK) == OK]


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _std(values: np.ndarray) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def _layer_mean(per_seed: Sequence[Sequence[float]]) -> float:
    flat = np.asarray([v for seed in per_seed for v in seed], dtype=np.float64)  # None (diverged) -> NaN
    return float(np.mean(flat)) if len(flat) else math.nan


def _mean(values: Sequence[float | None]) -> float:
    return float(np.mean(np.asarray(values, dtype=np.float64))) if len(values) else math.nan


def _floats(values) -> list[float | None]:
    """Plain floats for JSON; NaN and infinities (a diverged seed's) become ``None``."""
    return [_finite(float(v)) for v in values]
