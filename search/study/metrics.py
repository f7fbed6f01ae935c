"""Metrics: one record per metric, which the spec, trainer, results and reports look up.

The trainer measures a metric the way Keras's metric objects do, from running sums: over
each batch it adds up ``stats(task, y, y_pred)`` (a few numbers), and the epoch's value is
``value(sums, n)`` for ``n`` rows. So an epoch of several batches gives the same number as
Keras's tracker, and the sums are cheap to carry through a compiled, seed-vectorized loop.
Adding a metric is adding one entry to :data:`METRICS`, and its tests.

Nothing here imports Keras or TensorFlow at module level; the functions receive tensors and
use ``keras.ops``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TASKS = ("binary", "multiclass", "regression")


@dataclass(frozen=True)
class Metric:
    """Everything actreg knows of one metric.

    ``tasks`` record it in every study of that task, in the order of :data:`METRICS` (a
    task's first is its default objective); ``optional`` tasks record it only when the
    study file names it as ``metric``. ``stats(task, y, y_pred)`` returns ``n_stats`` batch
    sums; ``value(sums, n)`` the metric of ``n`` rows from sums whose last axis holds those
    ``n_stats`` numbers (there may be a seed axis before it). ``keras()`` is what
    ``model.compile`` gets for it. ``fraction`` marks a count of rows over the rows
    (accuracy): stored as an exact fraction, averaged from integer totals. ``rope`` is the
    default region of practical equivalence of the verdicts (see :mod:`search.results.stats`) in the
    metric's units, or with ``rope_relative`` as a fraction of the baseline's mean.
    """

    label: str
    latex: str
    stats: Callable[[str, Any, Any], list]
    value: Callable[[Any, Any], Any]
    keras: Callable[[], Any]
    tasks: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    n_stats: int = 1
    minimize: bool = False
    fraction: bool = False
    rope: float = 0.01
    rope_relative: bool = False


def _ops():
    from keras import ops

    return ops


def _positive(y, y_pred):
    """Binary predictions in ``y``'s dtype: ``y_pred > 0.5``, as Keras's ``BinaryAccuracy`` decides."""
    ops = _ops()
    return ops.cast(ops.greater(y_pred, 0.5), y.dtype)


def _correct(task: str, y, y_pred) -> list:
    ops = _ops()
    if task == "multiclass":  # as SparseCategoricalAccuracy: labels (n, 1) against the arg-max (n,)
        matches = ops.equal(ops.reshape(y, (-1,)), ops.cast(ops.argmax(y_pred, axis=-1), y.dtype))
    else:
        matches = ops.equal(y, _positive(y, y_pred))
    return [ops.sum(ops.cast(matches, "float32"))]


def _r2_stats(task: str, y, y_pred) -> list:
    ops = _ops()  # the three sums keras.metrics.R2Score accumulates
    return [ops.sum(y), ops.sum(ops.square(y)), ops.sum(ops.square(y - y_pred))]


def _r2_value(sums, n):
    total, squares, errors = sums[..., 0], sums[..., 1], sums[..., 2]
    return 1.0 - errors / (squares - total * (total / n))


def _f1_stats(task: str, y, y_pred) -> list:
    ops = _ops()
    positive = _positive(y, y_pred)
    return [ops.sum(y * positive), ops.sum((1.0 - y) * positive), ops.sum(y * (1.0 - positive))]


def _f1_value(sums, n):
    ops = _ops()  # 0 when there is no positive row and no positive prediction, as scikit-learn's f1_score
    tp, fp, fn = sums[..., 0], sums[..., 1], sums[..., 2]
    denominator = 2.0 * tp + fp + fn
    return ops.where(denominator > 0, 2.0 * tp / ops.maximum(denominator, 1.0), 0.0)


def _keras_metric(cls: str, **kwargs) -> Callable[[], Any]:
    def make():
        import keras

        return getattr(keras.metrics, cls)(**kwargs)
    return make


METRICS: dict[str, Metric] = {
    "accuracy": Metric(
        label="accuracy", latex="accuracy", stats=_correct, value=lambda sums, n: sums[..., 0] / n,
        keras=lambda: "accuracy", tasks=("binary", "multiclass"), fraction=True),
    "r2": Metric(
        label="R²", latex="$R^2$", stats=_r2_stats, value=_r2_value, keras=_keras_metric("R2Score", name="r2"),
        tasks=("regression",), n_stats=3),
    "mae": Metric(
        label="MAE", latex="MAE", stats=lambda task, y, y_pred: [_ops().sum(_ops().absolute(y - y_pred))],
        value=lambda sums, n: sums[..., 0] / n, keras=_keras_metric("MeanAbsoluteError", name="mae"),
        tasks=("regression",), minimize=True, rope_relative=True),  # MAE is in the target's units: 1% of the baseline's
    # F1 of the positive class: true positives, false positives and false negatives are
    # summed over batches, so an epoch's F1 is that of all its rows (not a mean of batch F1s).
    "f1": Metric(
        label="F1", latex="$F_1$", stats=_f1_stats, value=_f1_value, keras=_keras_metric(
            "F1Score", threshold=0.5, name="f1"), optional=("binary",), n_stats=3),
}

# Derived views, for the modules that only need a name's properties.
TASK_METRICS = {task: tuple(name for name, m in METRICS.items() if task in m.tasks) for task in TASKS}
MINIMIZED = tuple(name for name, m in METRICS.items() if m.minimize)
METRIC_LABELS = {name: m.label for name, m in METRICS.items()}


def offered(task: str) -> tuple[str, ...]:
    """The metrics a study of ``task`` may name as its objective: recorded ones first."""
    return TASK_METRICS[task] + tuple(name for name, m in METRICS.items() if task in m.optional)


def metric_stats(task: str, metrics: tuple[str, ...], y, y_pred):
    """The batch sums of every metric in ``metrics``, as one vector (see the module)."""
    return _ops().stack([s for name in metrics for s in METRICS[name].stats(task, y, y_pred)])


def stats_size(metrics: tuple[str, ...]) -> int:
    """How many numbers :func:`metric_stats` returns for ``metrics``."""
    return sum(METRICS[name].n_stats for name in metrics)


def metric_values(metrics: tuple[str, ...], sums, n) -> list:
    """Each metric of ``n`` rows from summed :func:`metric_stats` (seed axis first)."""
    out, i = [], 0
    for name in metrics:
        m = METRICS[name]
        out.append(m.value(sums[:, i:i + m.n_stats], n))
        i += m.n_stats
    return out
