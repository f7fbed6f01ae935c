"""Records: one function aggregates seeds into a trial, one builds the tables.

Conventions (also in docs/columns.md and docs/reports.md):

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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from search.store import schema
from search.store.schema import CURVES_ATTR, DIVERGED, OK, SCHEMA
from search.store.trials import joined_trial
from search.study.metrics import METRICS
from search.study.space import Configuration
from search.study.spec import TrainSpec

if TYPE_CHECKING:
    import optuna
    import pandas as pd

    from search.engine.trainer import SeedResult
    from search.study.spec import DataSpec

@dataclass(frozen=True)
class TrialRecord:
    """What one configuration's fits store in its Optuna trial; ``status`` is ``"ok"`` or ``"diverged"``."""

    value: float
    user_attrs: dict[str, Any]
    intermediate_values: dict[int, float] = field(default_factory=dict)
    status: str = OK
    system_attrs: dict[str, Any] = field(default_factory=dict)


def diverged_at(result: SeedResult) -> int | None:
    """The first epoch (1-based) after which the seed's training went bad; ``None`` if it never did.

    Bad: a loss that was NaN or infinite in the recorded history, or what the trainer saw
    every epoch (``result.diverged_epoch``: the training loss not finite; weights that went bad
    in an epoch's last step show there one epoch later).
    A history that is finite throughout but a final loss that is not (or a final metric
    that is NaN) counts as diverging at the last epoch.
    """
    epochs = result.recorded_epochs
    losses = np.stack([np.asarray(v, dtype=np.float64) for k, v in result.history.items() if k.endswith("loss")])
    bad = [epochs[i] for i in np.flatnonzero(~np.isfinite(losses).all(axis=0))[:1]]
    if result.diverged_epoch is not None:
        bad.append(result.diverged_epoch)
    if bad:
        return min(bad)
    finals = [*result.train.values(), *result.test.values()]
    if not all(math.isfinite(v) for v in finals):
        return epochs[-1]
    return None


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
    wanted = TrainSpec(epochs=epochs, record_every=record_step).recorded_epochs
    index = {e: i for i, e in enumerate(results[0].recorded_epochs)}
    at = np.array([index[e] for e in wanted])
    curves: dict[str, list] = {"epoch": list(wanted)}
    for key in results[0].history:
        h = np.stack([r.history[key][at] for r in results]).astype(np.float64)
        curves[schema.curve("mean", key)] = _floats(h.mean(axis=0))
        spread = h.std(axis=0, ddof=1) if len(results) > 1 else np.full(len(at), np.nan)
        curves[schema.curve("std", key)] = _floats(spread)
    attrs: dict[str, Any] = {schema.SCHEMA_ATTR: SCHEMA, schema.METRIC_ATTR: objective,
                             schema.METRICS_ATTR: list(metrics), schema.SEEDS_ATTR: [r.seed for r in results],
                             schema.STATUS_ATTR: DIVERGED if diverged else OK, schema.N_DIVERGED_ATTR: len(diverged)}
    if diverged:
        attrs[schema.DIVERGED_SEEDS_ATTR] = [s for s, _ in diverged]
        attrs[schema.DIVERGED_EPOCHS_ATTR] = [e for _, e in diverged]
    validated = results[0].validation is not None
    splits = ("train", "test", "validation") if validated else ("train", "test")
    for name in (*metrics, "loss"):
        attrs[schema.per_seed("test", name)] = _floats([r.test[name] for r in results])
        attrs[schema.per_seed("train", name)] = _floats([r.train[name] for r in results])
        if validated:
            rows_of = [cast("dict[str, float]", r.validation) for r in results]  # every result has them, or none
            attrs[schema.per_seed("validation", name)] = _floats([v[name] for v in rows_of])
    fractions = [name for name in metrics if METRICS[name].fraction]
    if rows is not None and fractions:
        for split, n in zip(splits, rows):
            attrs[schema.rows(split)] = n
            for name in fractions:
                column = schema.per_seed(split, name)
                attrs[column] = [None if v is None else round(v * n) / n for v in attrs[column]]
    attrs[schema.FIT_TIME_ATTR] = [float(r.fit_seconds) for r in results]
    attrs[schema.ACTIVATION_ATTR] = [_floats(r.mean_activation) for r in results]  # per seed, per regularized layer
    attrs[schema.ZERO_FRACTION_ATTR] = [_floats(r.zero_fraction) for r in results]
    return _finished(attrs, curves, maximize)


def _finished(attrs: dict[str, Any], curves: dict[str, list], maximize: bool) -> TrialRecord:
    """The record of a configuration from its per-seed attributes and its curves: the means, spreads,
    summary line and trial value that follow from them (see :func:`trial_record`)."""
    objective = attrs[schema.METRIC_ATTR]
    n_seeds, n_diverged = len(attrs[schema.SEEDS_ATTR]), attrs[schema.N_DIVERGED_ATTR]
    validated = schema.per_seed("validation", objective) in attrs
    test = np.asarray(attrs[schema.per_seed("test", objective)], dtype=np.float64)
    train = np.asarray(attrs[schema.per_seed("train", objective)], dtype=np.float64)
    test_mean, train_mean = mean_of(attrs, "test", objective), mean_of(attrs, "train", objective)
    attrs.update({
        schema.std("test", objective): _finite(_std(test)),
        schema.mean("train", objective): _finite(train_mean),
        schema.std("train", objective): _finite(_std(train)),
    })
    value = test_mean
    if validated:
        value = mean_of(attrs, "validation", objective)
        attrs[schema.mean("validation", objective)] = _finite(value)
        validation = np.asarray(attrs[schema.per_seed("validation", objective)], dtype=np.float64)
        attrs[schema.std("validation", objective)] = _finite(_std(validation))
    system = {CURVES_ATTR: curves}
    intermediate = {int(e): float(v) for e, v in zip(curves["epoch"], curves[schema.mean("test", objective)])
                    if v is not None}
    # "summary": what optuna-dashboard's attribute table shows at a glance.
    if n_diverged:
        attrs[schema.SUMMARY_ATTR] = f"diverged on {n_diverged} of {n_seeds} seeds"
        return TrialRecord(-math.inf if maximize else math.inf, attrs, intermediate, DIVERGED, system)
    low, high = ci95(test)
    chosen = f"validation {objective} {value:.3f}, " if validated else ""
    attrs[schema.SUMMARY_ATTR] = (f"{chosen}test {objective} {test_mean:.3f} ± {_std(test):.3f} "
                                  f"(95% CI {low:.3f}–{high:.3f}), train {train_mean:.3f}, {n_seeds} seeds")
    return TrialRecord(value, attrs, intermediate, OK, system)


# Per-seed lists of a record beside the per-split metrics: joined seed by seed when blocks merge.
_PER_SEED_LISTS = (schema.SEEDS_ATTR, schema.FIT_TIME_ATTR, schema.ACTIVATION_ATTR, schema.ZERO_FRACTION_ATTR,
                   schema.DIVERGED_SEEDS_ATTR, schema.DIVERGED_EPOCHS_ATTR)


def merged_trial(blocks: Sequence[optuna.trial.FrozenTrial]) -> optuna.trial.FrozenTrial:
    """One configuration's complete blocks of replicates (a race's, in block order) as one trial: the
    per-seed lists joined, and everything that follows from them computed again, as
    :func:`trial_record` computes it from all the seeds at once (curves: pooled means and standard
    deviations). It carries the first block's number, parameters and queue attributes."""
    first = blocks[0]
    if len(blocks) == 1:
        return first
    attrs = {k: v for k, v in first.user_attrs.items()}
    metrics = attrs[schema.METRICS_ATTR]
    lists = [*_PER_SEED_LISTS, *(schema.per_seed(split, name) for split in schema.SPLITS
                                 for name in (*metrics, "loss"))]
    for key in lists:
        if any(key in b.user_attrs for b in blocks):
            attrs[key] = [v for b in blocks for v in b.user_attrs.get(key, [])]
    attrs[schema.N_DIVERGED_ATTR] = sum(b.user_attrs[schema.N_DIVERGED_ATTR] for b in blocks)
    attrs[schema.STATUS_ATTR] = DIVERGED if attrs[schema.N_DIVERGED_ATTR] else OK
    attrs.pop(schema.RACE_BLOCK_ATTR, None)
    curves = _pooled_curves([trial_curves(b) for b in blocks], [len(b.user_attrs[schema.SEEDS_ATTR]) for b in blocks])
    # Only a diverged record's value depends on the direction: the worst, which its blocks' values show.
    maximize = all(b.value != math.inf for b in blocks)
    record = _finished(attrs, curves, maximize)
    return joined_trial(first, blocks[-1], record.value, record.user_attrs, record.system_attrs,
                        record.intermediate_values)


def _pooled_curves(curves: Sequence[dict[str, list]], sizes: Sequence[int]) -> dict[str, list]:
    """Mean and sample standard deviation over every seed of several blocks, from each block's."""
    out: dict[str, list] = {"epoch": list(curves[0]["epoch"])}
    n = np.asarray(sizes, dtype=np.float64)[:, None]
    for column in curves[0]:
        if not schema.is_mean(column):
            continue
        spread = schema.std_of(column)
        means = np.array([[np.nan if v is None else v for v in c[column]] for c in curves], dtype=np.float64)
        stds = np.array([[np.nan if v is None else v for v in c.get(spread, [])] or [np.nan] * means.shape[1]
                         for c in curves], dtype=np.float64)
        total = n.sum()
        mean = (n * means).sum(axis=0) / total
        within = np.where(n > 1, (n - 1) * np.nan_to_num(stds) ** 2, 0.0).sum(axis=0)
        between = (n * (means - mean) ** 2).sum(axis=0)
        out[column] = _floats(mean)
        out[spread] = _floats(np.sqrt((within + between) / (total - 1)) if total > 1 else np.full(len(mean), np.nan))
    return out


def trial_curves(trial: optuna.trial.FrozenTrial) -> dict[str, list]:
    """The learning curves a trial stored: ``epoch`` and ``mean_``/``std_`` of each history key
    (in a user attribute in studies run by earlier versions)."""
    return trial.system_attrs.get(CURVES_ATTR) or trial.user_attrs[schema.OLD_CURVES_ATTR]


def curves_frame(trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str] = ()) -> pd.DataFrame:
    """Long table of every complete trial's learning curves: the ``param_*`` columns of
    ``param_names``, ``configuration``, ``trial_number``, ``epoch``, then ``mean_``/``std_`` of
    each history key with its split: ``mean_train_accuracy`` (what ``fit`` reports as
    ``accuracy``), ``std_test_loss``."""
    import pandas as pd

    def named(column: str) -> str:  # the stored history keys name the training values as fit does
        stat, _, key = column.partition("_")
        return column if column == "epoch" or key.startswith(("test_", "validation_")) \
            else schema.curve(stat, schema.per_seed("train", key))

    frames = []
    for t in complete_trials(trials):
        curves = pd.DataFrame(trial_curves(t)).rename(columns=named)
        params = {schema.param(p): t.params.get(p) for p in param_names}
        frames.append(curves.assign(**params, configuration=configuration_of(t).label, trial_number=t.number))
    first = [*(schema.param(p) for p in param_names), "configuration", "trial_number", "epoch"]
    if not frames:
        return pd.DataFrame(columns=first)
    frame = pd.concat(frames, ignore_index=True)
    return frame[first + [c for c in frame.columns if c not in first]]


def mean_of(attrs: dict[str, Any], split: str, metric: str) -> float:
    """Mean over seeds of ``<split>_<metric>``; for a fraction of rows (accuracy) with known row
    counts, from the integer total."""
    values = np.asarray(attrs[schema.per_seed(split, metric)], dtype=np.float64)
    n = attrs.get(schema.rows(split))
    if METRICS[metric].fraction and n:
        return float(np.rint(values * n).sum() / (n * len(values)))
    return float(values.mean())


def trial_metrics(trial: optuna.trial.FrozenTrial) -> list[str]:
    """The metrics a trial stored, its objective first (schema 1 stored accuracy only)."""
    return list(trial.user_attrs.get(schema.METRICS_ATTR, ["accuracy"]))


def summary_frame(trials: Sequence[optuna.trial.FrozenTrial], param_names: Sequence[str],
                  metric: str = "accuracy", maximize: bool = True) -> pd.DataFrame:
    """One row per configuration, with the columns of docs/columns.md (declared in :mod:`search.store.schema`).

    ``metric`` names the ranked columns; other metrics the trials stored get mean and
    std columns. Only complete trials count; if two trials hold the same configuration,
    the first wins. Diverged configurations have empty means, std and intervals and rank
    after every finite one.
    """
    import pandas as pd

    m = metric
    done = complete_trials(trials)
    rows = [_summary_row(trial, param_names, m) for trial in done]
    if not rows:
        return pd.DataFrame(columns=[schema.param(p) for p in param_names] + ["n_seeds", schema.mean("test", m)])
    frame = pd.DataFrame(rows)
    finite = frame[schema.STATUS_ATTR] == OK
    ranked = [t for t, ok in zip(done, finite) if ok]
    shared = shared_seeds(ranked)
    even = all(len(t.user_attrs[schema.SEEDS_ATTR]) == len(shared) for t in ranked)
    frame.insert(frame.columns.get_loc(schema.rank("test", m)) + 1, schema.RANKED_ON, len(shared))
    for split in ("test", "validation"):
        if schema.mean(split, m) in frame:
            means = frame[schema.mean(split, m)] if even else pd.Series(
                [_mean_over(t, split, m, shared) for t in done], index=frame.index)
            ranks = means.where(finite).rank(method="min", ascending=not maximize)
            frame[schema.rank(split, m)] = ranks.fillna(int(finite.sum()) + 1).astype(int)  # diverged: after the finite
    return frame


def shared_seeds(trials: Sequence[optuna.trial.FrozenTrial]) -> list[int]:
    """The seeds that every one of ``trials`` has, in order: a race's configurations, stopped at
    different looks, share the replicates of the looks before the first stop."""
    sets = [set(t.user_attrs[schema.SEEDS_ATTR]) for t in trials]
    return sorted(set.intersection(*sets)) if sets else []


def _mean_over(trial: optuna.trial.FrozenTrial, split: str, metric: str, seeds: Sequence[int]) -> float:
    """The mean of ``trial``'s per-seed ``split`` values over ``seeds`` (NaN without them)."""
    a = trial.user_attrs
    by_seed = dict(zip(a[schema.SEEDS_ATTR], a.get(schema.per_seed(split, metric), [])))
    values = [by_seed[s] for s in seeds if by_seed.get(s) is not None]
    return float(np.mean(values)) if values else math.nan


def selection_rank(summary: pd.DataFrame, metric: str) -> str:
    """The column that ranks ``summary`` for choosing: ``rank_validation_<metric>`` where the study
    has validation rows, else ``rank_test_<metric>`` (then the choice is made on the rows that report it)."""
    validated = schema.rank("validation", metric)
    return validated if validated in summary else schema.rank("test", metric)


def _summary_row(trial: optuna.trial.FrozenTrial, param_names: Sequence[str], m: str) -> dict[str, Any]:
    """One configuration's row of :func:`summary_frame` (its rank is filled in there)."""
    a = trial.user_attrs
    test = np.asarray(a[schema.per_seed("test", m)], dtype=np.float64)
    train = np.asarray(a[schema.per_seed("train", m)], dtype=np.float64)
    n = len(test)
    status = a.get(schema.STATUS_ATTR, OK)
    ok = status == OK  # a diverged seed's numbers come from NaN weights: never averaged
    low, high = ci95(test) if ok else (math.nan, math.nan)
    row: dict[str, Any] = {schema.param(p): trial.params.get(p) for p in param_names}
    row.update({
        schema.LABEL_ATTR: configuration_of(trial).label,
        "trial_number": trial.number,
        "n_seeds": n,
        schema.STATUS_ATTR: status,
        schema.N_DIVERGED_ATTR: int(a.get(schema.N_DIVERGED_ATTR, 0)),
        schema.mean("test", m): mean_of(a, "test", m) if ok else math.nan,
        schema.std("test", m): _std(test) if ok else math.nan,
        schema.ci95("low", "test", m): low,
        schema.ci95("high", "test", m): high,
        schema.rank("test", m): 0,
        schema.mean("train", m): mean_of(a, "train", m) if ok else math.nan,
        schema.std("train", m): _std(train) if ok else math.nan,
    })
    validated = schema.per_seed("validation", m) in a
    if validated:
        values = np.asarray(a[schema.per_seed("validation", m)], dtype=np.float64)
        row.update({schema.mean("validation", m): mean_of(a, "validation", m) if ok else math.nan,
                    schema.std("validation", m): _std(values) if ok else math.nan,
                    schema.rank("validation", m): 0})
    for other in trial_metrics(trial):
        if other != m:
            values = np.asarray(a[schema.per_seed("test", other)], dtype=np.float64)
            row.update({schema.mean("test", other): mean_of(a, "test", other) if ok else math.nan,
                        schema.std("test", other): _std(values) if ok else math.nan,
                        schema.mean("train", other): mean_of(a, "train", other) if ok else math.nan})
            if validated:
                row[schema.mean("validation", other)] = mean_of(a, "validation", other) if ok else math.nan
    # A chunk's seeds share one computation: its time is real, a seed's share of it is not reported.
    fit_time = np.asarray(a.get(schema.FIT_TIME_ATTR, [math.nan] * n), dtype=np.float64)
    row.update({
        schema.mean("test", schema.ACTIVATION): _layer_mean(a[schema.ACTIVATION_ATTR]),
        schema.mean("test", schema.ZERO_FRACTION): _layer_mean(a[schema.ZERO_FRACTION_ATTR]),
        schema.FIT_TIME: float(fit_time.sum()),
    })
    for k, v in enumerate(test):
        row[schema.replicate_column(k, "test", m)] = float(v)
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
        params = {schema.param(p): trial.params.get(p) for p in param_names}
        params.update(configuration=configuration_of(trial).label, trial_number=trial.number)
        names = [*trial_metrics(trial), "loss"]
        splits = [s for s in ("test", "train", "validation") if schema.per_seed(s, "loss") in a]
        for k, seed in enumerate(a[schema.SEEDS_ATTR]):
            row = {**params, "seed": seed, schema.REPLICATE: k}
            for name in names:
                for split in splits:
                    row[schema.per_seed(split, name)] = a[schema.per_seed(split, name)][k]
            row[schema.per_seed("test", schema.ACTIVATION)] = _mean(a[schema.ACTIVATION_ATTR][k])
            row[schema.per_seed("test", schema.ZERO_FRACTION)] = _mean(a[schema.ZERO_FRACTION_ATTR][k])
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
    write_atomically(path, lambda f: frame.to_csv(f, index=False), newline="")


def write_atomically(path: str | os.PathLike[str], fill: Callable[[Any], None], **open_args) -> None:
    """Write a text file through ``fill(file)`` into a temporary file beside ``path``, then move it
    into place: readers see the old file or the whole new one, and a failure leaves no trace."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".actreg-", suffix=os.path.splitext(path)[1], dir=folder)
    try:
        with os.fdopen(fd, "w", **open_args) as f:
            fill(f)
        os.chmod(tmp, 0o644)  # as any other file written here (mkstemp makes it private)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def configuration_of(trial: optuna.trial.FrozenTrial) -> Configuration:
    return Configuration.from_params(trial.params)


def complete_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """Complete trials with results, one per configuration (the first), in trial order.

    In a race each configuration's replicates come in blocks, one trial each
    (``race_block`` 0, 1, ...): its complete blocks from the first on are one trial here
    (:func:`merged_trial`), so every table sees one configuration with all its replicates.
    """
    import optuna

    blocks: dict[Configuration, dict[int, optuna.trial.FrozenTrial]] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if t.state != optuna.trial.TrialState.COMPLETE or schema.SEEDS_ATTR not in t.user_attrs:
            continue
        blocks.setdefault(configuration_of(t), {}).setdefault(t.user_attrs.get(schema.RACE_BLOCK_ATTR, 0), t)
    out = []
    for by_block in blocks.values():
        run: list[optuna.trial.FrozenTrial] = []
        while len(run) in by_block:  # the blocks from the first on, without a gap
            run.append(by_block[len(run)])
        if run:
            out.append(merged_trial(run))
    return sorted(out, key=lambda t: t.number)


def finite_trials(trials: Sequence[optuna.trial.FrozenTrial]) -> list[optuna.trial.FrozenTrial]:
    """:func:`complete_trials` without the diverged ones: those whose numbers are findings."""
    return [t for t in complete_trials(trials) if t.user_attrs.get(schema.STATUS_ATTR, OK) == OK]


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


def stored_frame(stored, per_seed: bool = False) -> pd.DataFrame:
    """The export table of a :class:`search.store.reading.Stored` study: per configuration, or per seed."""
    from search.study.space import iter_param_names

    spec = stored.spec
    names = list(iter_param_names(spec.space))
    if per_seed:
        return per_seed_frame(stored.trials, names, spec.data)
    return summary_frame(stored.trials, names, spec.objective, spec.maximize)
