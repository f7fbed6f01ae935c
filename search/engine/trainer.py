"""The compiled trainer: many models (configurations x seeds) in one TensorFlow graph.

Why not ``model.fit``: its per-epoch overhead (callbacks, iterator, Python) costs about
0.1 s on a 2-core machine, more than the arithmetic of a small model by orders of
magnitude. Here the whole run (every epoch, every batch, the per-epoch test evaluation)
is one ``tf.function`` call.

How seeds share the graph: each Keras weight becomes one variable with a leading seed
axis, and ``tf.vectorized_map`` runs the model's own forward pass and ``compute_loss``
(activity regularizers included) once per seed slice, through ``keras.StatelessScope``.
The gradient of the sum of the per-seed losses is, slice by slice, each seed's own
gradient, and Adam is elementwise, so one Keras optimizer over the stacked variables
updates every seed exactly as its own optimizer would. (Under XLA each seed takes that
gradient itself, inside the vectorized map, so that XLA does not treat the weights as
compile-time constants; and the penalty is summed in one reduction, which XLA compiles
better.)

Dropout, convolutions and LSTMs vectorize too (each seed keeps its own dropout random
state, advanced as ``fit`` advances it; the seeds' convolutions, their gradients and max
pooling's gradient run through the rules of :mod:`search.engine.vectorize`). XLA compiles models of
dense, conv2d, maxpool2d, flatten and activation layers (not what ``vectorized_map`` makes
of dropout and LSTMs), and only runs long enough to repay the compilation (see
:func:`use_xla`).

Fidelity: a program of one model performs the same operations as ``model.fit(...,
shuffle=False)`` (without ``vectorized_map``) and gives bit-identical weights and history.
Programs of several models use batched kernels, whose rounding differs slightly (about 1e-7
after a few epochs). Under XLA every operation works within one model's slice, so a model's
numbers do not depend on the program's other models (configurations or seeds), their number
or their order; without XLA TensorFlow's batched kernels may round them differently in
programs of other sizes. The same program always gives the same numbers.

Models: one per (configuration, seed) of a program. The configurations of a placement differ
only in the two factors of their :class:`~search.engine.model.ActivityPenalty`, which each model
reads from a per-model variable (:meth:`SeedStack.load`), so one compilation trains them all.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from search.engine.data import Dataset
from search.engine.shuffle import permutations
from search.store import schema
from search.study.layers import LAYERS
from search.study.metrics import metric_stats, metric_values, stats_size
from search.study.spec import ModelSpec, TrainSpec

# Models of only these Keras layers compile with XLA (the layer kinds say which of theirs do).
XLA_LAYERS = ("InputLayer", "Activation", *(k.xla for k in LAYERS.values() if k.xla))
# XLA compiles for seconds and then runs a step about 2x faster; with the compiled trainer reused
# across a study's configurations it pays from about this many steps (epochs x batches) per fit.
XLA_MIN_STEPS = 1000
# Layers whose graphs compile longer ask for more steps (the layer kinds say how many).
XLA_MIN_STEPS_WITH = {k.xla: k.xla_min_steps for k in LAYERS.values() if k.xla and k.xla_min_steps}


def history_keys(metrics: Sequence[str]) -> tuple[str, ...]:
    """Keys of :attr:`SeedResult.history` for ``metrics``: as ``fit`` names them, ``test_`` for the test set."""
    names = ("loss", *metrics)
    return (*names, *(schema.per_seed("test", n) for n in names))


@dataclass(frozen=True, eq=False)
class SeedResult:
    """One seed's fit. Accuracies are fractions in [0, 1]; losses include the penalty.

    ``train`` and ``test`` map ``"loss"`` and each metric to its value with the final
    weights, on the training and the test set; ``validation`` likewise on the validation
    rows, when the data has them (else ``None``). ``history`` maps each of
    :func:`history_keys` to a float32 array of one value per recorded epoch (every
    ``record_step``-th and the last, ``TrainSpec.recorded_epochs``; :attr:`recorded_epochs`
    names them here): ``loss`` and the metrics as ``fit`` reports them (over the epoch's
    batches), ``test_*`` evaluated on the test set after the epoch. ``diverged_epoch`` is the
    first epoch whose training loss, or recorded test loss, was not finite (``None``: none
    was). ``mean_activation`` and ``zero_fraction`` give, per regularized layer, the mean
    activated output on the test inputs and the fraction of its values that are exactly zero.
    ``weights`` holds the trained weights (in ``model.trainable_variables`` order) when asked
    for.
    """

    seed: int
    train: dict[str, float]
    test: dict[str, float]
    mean_activation: tuple[float, ...]
    zero_fraction: tuple[float, ...]
    history: dict[str, np.ndarray]
    weights: tuple[np.ndarray, ...] | None = None
    fit_seconds: float = 0.0  # wall time of the program's fit (compilation excluded) per model it trained
    validation: dict[str, float] | None = None
    history_epochs: tuple[int, ...] = ()  # the 1-based epoch of each history entry; () for every epoch
    peak_memory_mb: float = 0.0  # the peak resident memory of the process that fitted it, after the fit
    diverged_epoch: int | None = None

    @property
    def recorded_epochs(self) -> tuple[int, ...]:
        """The 1-based epoch of each entry of :attr:`history`."""
        return self.history_epochs or tuple(range(1, len(next(iter(self.history.values()))) + 1))

    @property
    def test_accuracy(self) -> float:
        return self.test["accuracy"]

    @property
    def train_accuracy(self) -> float:
        return self.train["accuracy"]


def train_seeds(models: Sequence, data: Dataset, train: TrainSpec, seeds: Sequence[int],
                probes: Sequence[str] = (), keep_weights: bool = False, task: str = "binary",
                metrics: Sequence[str] = ("accuracy",), jit: bool | None = None) -> list[SeedResult]:
    """Train ``models`` (the same architecture, one per seed, as built and compiled) together.

    ``models[k]`` holds seed k's initial weights and is not modified; the first model's
    layers run the computation. ``probes`` name the layers whose outputs are measured for
    sparsity on the test inputs; ``keep_weights`` returns the trained weights too.
    """
    if len(models) != len(seeds) or not models:
        raise ValueError("need one model per seed, and at least one")
    trainer = ChunkTrainer(models[0], data, train, len(seeds), probes, task, metrics, jit)
    return trainer.fit([[v.numpy() for v in m.trainable_variables] for m in models], seeds,
                       keep_weights=keep_weights,
                       initial_states=[[v.numpy() for v in m.non_trainable_variables] for m in models])


def use_xla(n_seeds: int, steps_per_fit: int, layer_classes: Sequence[str], looping: Sequence[str] = ()) -> bool:
    """Whether a chunk trains under XLA: several seeds, at least :data:`XLA_MIN_STEPS` steps
    per fit (more with a layer in :data:`XLA_MIN_STEPS_WITH`), and only layers in :data:`XLA_LAYERS`
    that are not ``looping`` (whose per-seed ops ``vectorized_map`` would loop over, which XLA
    does not compile: see :mod:`search.engine.vectorize`).

    XLA fuses the many small elementwise ops of a step (about 2x faster on a CPU), but its
    rounding differs from fit's kernels: one seed alone keeps fit's graph, bit for bit. The
    choice depends on the spec and chunk only, so the numbers do not depend on ``n_jobs``.
    """
    needed = max([XLA_MIN_STEPS, *(XLA_MIN_STEPS_WITH.get(c, 0) for c in layer_classes)])
    return n_seeds > 1 and steps_per_fit >= needed and all(c in XLA_LAYERS and c not in looping
                                                          for c in layer_classes)


def steps_per_fit(train: TrainSpec, n_rows: int) -> int:
    """Training steps of one fit on ``n_rows`` rows: epochs x batches (the last one may be short)."""
    return train.epochs * -(-n_rows // train.batch_size)


def _looping(n_seeds: int) -> tuple[str, ...]:
    """The layers whose per-seed ops ``vectorized_map`` would loop over in a chunk of ``n_seeds``."""
    from search.engine import vectorize

    return () if n_seeds == 1 or vectorize.install() else vectorize.NEEDED_BY


def op_threads(threads: int, model: ModelSpec, train: TrainSpec, n_rows: int, n_seeds: int) -> int:
    """Threads that may split one TensorFlow operation (the intra-op pool) in a process of
    ``threads`` threads that trains ``model`` on ``n_rows`` rows in chunks of ``n_seeds``.

    An XLA step uses them all. The trainer's graph without XLA is thousands of operations of
    a few microseconds each, and splitting one across threads costs more than it saves:
    with 2 threads, digits-cnn and digits-lstm train 2.5x and 1.3x faster with 1
    (docs/performance.md). A builder's layers are known only once built: it keeps ``threads``.
    """
    if model.builder is not None:
        return threads
    from search.engine import runtime

    runtime.import_tensorflow()  # quietly, before vectorize imports it
    classes = [LAYERS[layer.type].xla or layer.type for layer in model.layers]
    return threads if use_xla(n_seeds, steps_per_fit(train, n_rows), classes, _looping(n_seeds)) else 1


class SeedStack:
    """A program's per-model variables: each of the template's weights and other state (e.g.
    dropout's random seed) with a leading model axis, Adam's slots over them, the models'
    shuffling keys (their seeds) and their penalty factors (l1, l2). The graph reads them;
    :meth:`load` sets them for the next fit.
    """

    def __init__(self, template, n_seeds: int, learning_rate: float) -> None:
        import keras
        import tensorflow as tf

        self.weights = template.trainable_variables
        self.state = template.non_trainable_variables
        self.stacked = [tf.Variable(tf.zeros((n_seeds, *v.shape), v.dtype), name=f"w{i}")
                        for i, v in enumerate(self.weights)]
        self.stacked_state = [tf.Variable(tf.zeros((n_seeds, *v.shape), v.dtype), name=f"s{i}")
                              for i, v in enumerate(self.state)]
        self.optimizer = keras.optimizers.Adam(learning_rate=learning_rate)
        self.optimizer.build(self.stacked)
        self._optimizer_start = [v.numpy() for v in self.optimizer.variables]
        self.seed_keys = tf.Variable(tf.zeros([n_seeds], tf.uint32), name="seed_keys")
        self.factors = tf.Variable(tf.zeros([n_seeds, 2], tf.float32), name="factors")

    def load(self, initial_weights: Sequence[Sequence[np.ndarray]], initial_states: Sequence[Sequence[np.ndarray]],
             seeds: Sequence[int], factors: np.ndarray | None = None) -> None:
        """Model k's weights and state from ``initial_*[k]``; a fresh optimizer; the seeds' keys;
        ``factors[k]`` = (l1, l2) of model k (zeros when ``None``)."""
        for i, var in enumerate(self.stacked):
            var.assign(np.stack([w[i] for w in initial_weights]))
        for i, var in enumerate(self.stacked_state):
            var.assign(np.stack([s[i] for s in initial_states]))
        for var, value in zip(self.optimizer.variables, self._optimizer_start):
            var.assign(value)
        self.seed_keys.assign(np.asarray(seeds, dtype=np.uint32))
        n = len(seeds)
        self.factors.assign(np.zeros((n, 2), np.float32) if factors is None else np.asarray(factors, np.float32))

    def read(self) -> tuple[list, list, object]:
        """The stacked weights, states and penalty factors, read inside the graph."""
        return [v.read_value() for v in self.stacked], [v.read_value() for v in self.stacked_state], \
            self.factors.read_value()


@dataclass(frozen=True, eq=False)
class _Graph:
    """What the graph-building functions below share: the model, its variables, the data and the settings."""

    template: Any
    stack: SeedStack
    task: str
    metrics: tuple[str, ...]
    n_seeds: int
    jit: bool
    x_train: Any
    y_train: Any
    x_test: Any
    y_test: Any
    x_validation: Any
    y_validation: Any
    per_seed_data: bool  # the data arrays have a leading seed axis: each seed its own rows
    n_train: Any  # the training rows as a variable (see ChunkTrainer)
    batch: int
    shuffle: bool
    probe_model: Any
    penalized: bool  # the template carries an ActivityPenalty: each model traces it with its own factors


def _seed_loss(g: _Graph, values, states, factors, x, y, training: bool):
    """One model's loss, metric sums and updated state: the same calls, in the same order, as Keras's
    own ``train_step``/``test_step``, with the model's variables mapped in by a stateless scope and
    its penalty factors given to the regularizer."""
    import keras

    from search.engine.model import model_factors

    mapping = list(zip(g.stack.weights, values)) + list(zip(g.stack.state, states))
    with keras.StatelessScope(state_mapping=mapping, collect_losses=True) as sc, \
            model_factors(factors[0], factors[1]) if g.penalized else contextlib.nullcontext():
        y_pred = g.template(x, training=training)
        loss = g.template.compute_loss(x, y, y_pred, training=training)
        new_states = [sc.get_current_value(v) for v in g.stack.state]
    return loss, metric_stats(g.task, g.metrics, y, y_pred), new_states


def _per_seed(g: _Graph, fn, per_seed_args, shared=()):
    """``fn`` on each seed's slice of ``per_seed_args`` (nested lists of tensors), outputs stacked."""
    import tensorflow as tf

    if g.n_seeds == 1:  # fit's own operations, unbatched: bit-identical to model.fit
        out = fn(*tf.nest.map_structure(lambda t: t[0], list(per_seed_args)), *shared)
        return tf.nest.map_structure(lambda t: t[None], out)
    return tf.vectorized_map(lambda a: fn(*a, *shared), tuple(per_seed_args))


def _evaluate(g: _Graph, values, states, factors, x, y):
    """Every model's loss and metrics on ``x``, ``y`` (inference mode); with per-seed data, model k's on its own."""
    import tensorflow as tf

    if g.per_seed_data:
        per_seed, shared = [values, states, factors, x, y], []
    elif g.n_seeds == 1:
        per_seed, shared = [values, states, factors], [x, y]
    else:
        # Each seed gets its own copy of the rows. Shared rows made pfor multiply them by every
        # seed's weights at once, (rows, seeds x units), then transpose: a third of an XLA epoch.
        per_seed, shared = [values, states, factors,
                            *(tf.broadcast_to(t[None], [g.n_seeds, *t.shape]) for t in (x, y))], []
    loss, stats, _ = _per_seed(g, lambda v, st, f, x_, y_: _seed_loss(g, v, st, f, x_, y_, False), per_seed, shared)
    return loss, metric_values(g.metrics, stats, tf.cast(tf.shape(y)[1 if g.per_seed_data else 0], tf.float32))


def _train_step(g: _Graph, v, st, f, x_, y_):
    """One seed's training-mode loss, metric sums and new state; under XLA also its gradient.

    Under XLA each seed differentiates its own loss inside the vectorized map. (A gradient
    taken outside it crosses the function that vectorized_map traces under XLA, and then XLA
    treats every weight as a compile-time constant: it recompiled for each new set of
    initial weights, regularizer factors or seeds.)
    """
    import tensorflow as tf

    if not g.jit:
        return _seed_loss(g, v, st, f, x_, y_, True)
    with tf.GradientTape() as tape:
        tape.watch(v)
        loss, stats, new_states = _seed_loss(g, v, st, f, x_, y_, True)
    return loss, stats, new_states, tape.gradient(loss, v, unconnected_gradients="zero")


def _rows(t, start, size: int, axis: int = 0):
    """``t[start:start + size]`` along ``axis``, with a static size."""
    import tensorflow as tf

    rank = len(t.shape)
    return tf.slice(t, [0] * axis + [start] + [0] * (rank - axis - 1), [-1] * axis + [size] + [-1] * (rank - axis - 1))


def _step(g: _Graph, order, start, size: int, sums):
    """One training step of every seed on rows ``start:start + size`` (of each seed's ``order``,
    or in order); returns the epoch's loss and metric sums with this batch added."""
    import tensorflow as tf

    stacked = g.stack.stacked
    with contextlib.nullcontext() if g.jit else tf.GradientTape() as tape:
        values, states, factors = g.stack.read()
        step = lambda *a: _train_step(g, *a)  # noqa: E731
        if order is None and g.per_seed_data:
            out = _per_seed(g, step, (values, states, factors, _rows(g.x_train, start, size, 1),
                                      _rows(g.y_train, start, size, 1)))
        elif order is None and g.n_seeds == 1:
            out = _per_seed(g, step, (values, states, factors), shared=(_rows(g.x_train, start, size),
                                                                        _rows(g.y_train, start, size)))
        elif order is None:  # each model its own copy of the shared rows, as in _evaluate (2.3x faster)
            out = _per_seed(g, step, (values, states, factors,
                                      *(tf.broadcast_to(t[None], [g.n_seeds, *t.shape]) for t in
                                        (_rows(g.x_train, start, size), _rows(g.y_train, start, size)))))
        else:
            idx = tf.slice(order, [0, start], [g.n_seeds, size])
            batch_dims = 1 if g.per_seed_data else 0  # each seed's rows from its own data, or from the shared rows
            out = _per_seed(g, step, (values, states, factors, tf.gather(g.x_train, idx, batch_dims=batch_dims),
                                      tf.gather(g.y_train, idx, batch_dims=batch_dims)))
        loss, stats, new_states = out[:3]
        total = tf.reduce_sum(loss)
    # The gradient of the sum of the seeds' losses is, slice by slice, each seed's own.
    grads = out[3] if g.jit else tape.gradient(total, stacked)  # type: ignore[union-attr]  # a tape without XLA
    g.stack.optimizer.apply(grads, stacked)
    for var, value in zip(g.stack.stacked_state, new_states):
        var.assign(value)
    # Keras's loss tracker: a mean weighted by batch size, accumulated as a sum.
    loss_sum, stats_sum = sums
    return loss_sum + loss * float(size), stats_sum + stats


def _read_data(g: _Graph) -> _Graph:
    """``g`` with its per-seed data variables read once, for the whole function: every use then sees
    one tensor, as every use of shared data sees one constant (a read is stateful, so each read
    would be a node of its own, and grappler would fuse the ops after it differently)."""
    if not g.per_seed_data:
        return g
    names = ("x_train", "y_train", "x_test", "y_test", "x_validation", "y_validation")
    return dataclasses.replace(g, **{n: getattr(g, n).read_value() for n in names if getattr(g, n) is not None})


def _run_epochs(g: _Graph, epochs, step):
    """Train ``epochs`` epochs, recording every ``step``-th and the last.

    Returns the history as a tensor (records, len(history_keys), models) and each model's
    first bad epoch (0: none): the first whose training loss, or recorded test loss, is not
    finite. The test rows are evaluated at the recorded epochs only: they change nothing in
    training, and evaluating them every epoch cost the case-study MLP 40% of its time.
    """
    import tensorflow as tf

    g = _read_data(g)
    n_rows = int(g.x_train.shape[1 if g.per_seed_data else 0])
    n_full, last = divmod(n_rows, g.batch)
    n_stats = stats_size(g.metrics)
    history = tf.TensorArray(tf.float32, size=epochs)
    first_bad = tf.zeros([g.n_seeds], tf.int32)
    for epoch in tf.range(epochs):
        order = permutations(g.stack.seed_keys, tf.cast(epoch, tf.uint32), n_rows) if g.shuffle else None
        sums = (tf.zeros([g.n_seeds]), tf.zeros([g.n_seeds, n_stats]))
        # Full batches in a loop, then the partial last one: every slice has a static size.
        if n_full:
            for b in tf.range(n_full):
                sums = _step(g, order, b * g.batch, g.batch, sums)
        if last:
            sums = _step(g, order, n_full * g.batch, last, sums)
        loss_sum, stats_sum = sums
        seen = g.n_train.read_value()
        done = epoch + 1
        record = (done % step == 0) | (done == epochs)
        values, states, factors = g.stack.read()

        def evaluate(values=values, states=states, factors=factors):
            loss, metric = _evaluate(g, values, states, factors, g.x_test, g.y_test)
            return loss, tuple(metric)

        def skip():
            return tf.zeros([g.n_seeds]), tuple(tf.zeros([g.n_seeds]) for _ in g.metrics)

        test_loss, test_values = tf.cond(record, evaluate, skip)
        train_loss = loss_sum / seen
        # Weights that went bad in an epoch's last step show in the next epoch's training loss (checking
        # them every epoch cost the case-study MLP 18% of its time).
        finite = tf.math.is_finite(train_loss) & (tf.math.is_finite(test_loss) | ~record)
        first_bad = tf.where((first_bad == 0) & ~finite, done, first_bad)
        history = history.write(epoch, tf.stack(
            [train_loss, *metric_values(g.metrics, stats_sum, seen), test_loss, *test_values]))
    at = tf.concat([tf.range(step - 1, epochs - 1, step), [epochs - 1]], axis=0)  # the recorded epochs, 0-based
    return tf.gather(history.stack(), at), first_bad


def _final(g: _Graph):
    """Loss and metrics on the training, test and validation sets (the last ``None`` without
    validation rows) with the final weights; per regularized layer, the mean activation and
    the fraction of exact zeros on the test inputs."""
    import keras
    import tensorflow as tf

    g = _read_data(g)
    values, states, factors = g.stack.read()
    train = _evaluate(g, values, states, factors, g.x_train, g.y_train)
    test = _evaluate(g, values, states, factors, g.x_test, g.y_test)
    validation = None if g.x_validation is None else \
        _evaluate(g, values, states, factors, g.x_validation, g.y_validation)
    if g.probe_model is None:
        empty = tf.zeros([g.n_seeds, 0])
        return train, test, validation, empty, empty

    def sparsity(v, st, x):
        mapping = list(zip(g.stack.weights, v)) + list(zip(g.stack.state, st))
        with keras.StatelessScope(state_mapping=mapping, collect_losses=True):
            outs = g.probe_model(x, training=False)
        outs = outs if isinstance(outs, (list, tuple)) else [outs]
        return (tf.stack([tf.reduce_mean(o) for o in outs]),
                tf.stack([tf.reduce_mean(tf.cast(tf.equal(o, 0.0), tf.float32)) for o in outs]))

    if g.per_seed_data:
        mean_act, zeros = _per_seed(g, sparsity, (values, states, g.x_test))
    else:
        mean_act, zeros = _per_seed(g, sparsity, (values, states), shared=(g.x_test,))
    return train, test, validation, mean_act, zeros


class ChunkTrainer:
    """A compiled trainer for ``n_seeds`` replicas of ``template``, reusable across fits.

    ``template`` is a compiled Keras model: its loss (and activity regularizers) are
    what is trained. ``task`` and ``metrics`` choose what is measured (see
    :mod:`search.study.metrics`). ``jit`` compiles with XLA; by default as :func:`use_xla` decides.

    The graph reads everything that changes between fits from variables (a
    :class:`SeedStack`): initial weights and other state, optimizer state, shuffling keys,
    and the regularizer's factors (see :class:`search.engine.model.ActivityPenalty`), so one
    compilation serves every strength of a norm and placement. Data with a seed axis
    (``data.per_seed``: every seed trains and is evaluated on its own replicate's rows) is
    held in variables too, so one compilation serves every draw of the data; shared data is
    a constant of the graph. Not thread-safe: one fit at a time.
    """

    def __init__(self, template, data: Dataset, train: TrainSpec, n_seeds: int, probes: Sequence[str] = (),
                 task: str = "binary", metrics: Sequence[str] = ("accuracy",), jit: bool | None = None) -> None:
        import keras
        import tensorflow as tf

        from search.engine import vectorize
        from search.engine.model import one_reduction, penalties, unrolled

        looping = _looping(n_seeds)
        self.template, self.n_seeds, self.train = template, n_seeds, train
        self.metrics = tuple(metrics)
        self.history_keys = history_keys(self.metrics)
        self._stack = SeedStack(template, n_seeds, train.learning_rate)
        n_rows = data.rows[0]
        if data.per_seed and data.x_train.shape[0] != n_seeds:
            raise ValueError(f"per-seed data for {data.x_train.shape[0]} seeds, but this trainer fits {n_seeds}")
        if jit is None:
            jit = use_xla(n_seeds, steps_per_fit(train, n_rows),
                          [type(layer).__name__ for layer in template.layers], looping)
        self.jit = jit
        probe_model = keras.Model(template.inputs, [template.get_layer(n).output for n in probes]) if probes else None
        # The epoch's row count divides the sums. Read from a variable: TensorFlow rewrites a
        # division by a constant into a product with its reciprocal, which rounds differently
        # from Keras's metrics (they divide by a count held in a variable).
        n_train = tf.Variable(float(n_rows), trainable=False, name="n_train")
        self.per_seed_data = data.per_seed
        arrays = [data.x_train, data.y_train, data.x_test, data.y_test, data.x_validation, data.y_validation]
        if data.per_seed:
            self._data = [None if a is None else tf.Variable(a, trainable=False, name=f"data{i}")
                          for i, a in enumerate(arrays)]
        else:
            self._data = [None if a is None else tf.constant(a) for a in arrays]
        self.penalized = bool(penalties(template))
        x_train, y_train, x_test, y_test, x_validation, y_validation = self._data
        g = _Graph(template, self._stack, task, self.metrics, n_seeds, jit, x_train, y_train, x_test, y_test,
                   x_validation, y_validation, data.per_seed, n_train, train.batch_size, train.shuffle, probe_model,
                   self.penalized)
        self._run = tf.function(lambda epochs, step: _run_epochs(g, epochs, step), jit_compile=jit)
        # The final evaluation compiles as the epochs do: under XLA, as TensorFlow's kernels round a model's
        # numbers differently in programs of other sizes, and its numbers must not depend on the company.
        self._final = tf.function(lambda: _final(g), jit_compile=jit)
        # Traced now, so that the penalty's form is fixed: under XLA it is summed in one reduction.
        # Several seeds' recurrent layers are traced unrolled: vectorized_map turns a recurrence
        # loop into a loop of its own, with bookkeeping per step that costs more than the step.
        with (one_reduction() if jit else contextlib.nullcontext(),
              unrolled(template) if n_seeds > 1 else contextlib.nullcontext(),
              vectorize.for_xla() if jit else contextlib.nullcontext()):  # the rules XLA runs faster
            self._run.get_concrete_function(tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32))
            self._final.get_concrete_function()

    def fit(self, initial_weights: Sequence[Sequence[np.ndarray]], seeds: Sequence[int],
            keep_weights: bool = False, initial_states: Sequence[Sequence[np.ndarray]] | None = None,
            data: Dataset | None = None, factors: np.ndarray | None = None) -> list[SeedResult]:
        """Train model k from ``initial_weights[k]`` (its weights, in trainable-variable order),
        shuffled by ``seeds[k]``.

        ``initial_states[k]`` holds model k's other variables (``non_trainable_variables``
        order); by default the template's values. ``data`` (per-seed, of the shapes the
        trainer was built with) replaces the models' rows for this fit and the next ones.
        ``factors[k]`` = (l1, l2) are model k's penalty factors, for a template with an
        :class:`~search.engine.model.ActivityPenalty` (by default its own, for every model).
        The history is recorded every ``train.record_step`` epochs and at the last.
        """
        import tensorflow as tf

        from search.engine.model import penalties

        if len(initial_weights) != self.n_seeds or len(seeds) != self.n_seeds:
            raise ValueError(f"this trainer fits {self.n_seeds} models at a time")
        if data is not None:
            self._load(data)
        if initial_states is None:
            initial_states = [[v.numpy() for v in self.template.non_trainable_variables]] * self.n_seeds
        if factors is None and self.penalized:
            reg = penalties(self.template)[0]
            factors = np.tile([[float(reg.l1.numpy()), float(reg.l2.numpy())]], (self.n_seeds, 1))
        self._stack.load(initial_weights, initial_states, seeds, factors)
        step = self.train.record_step
        hist, first_bad = self._run(tf.constant(self.train.epochs), tf.constant(step))
        hist, first_bad = hist.numpy(), first_bad.numpy()
        epochs = self.train.recorded_epochs
        final = tf.nest.map_structure(lambda t: None if t is None else t.numpy(), self._final())
        trained = [v.numpy() for v in self._stack.stacked] if keep_weights else None
        return [dataclasses.replace(self._result(k, seed, hist, final, trained), history_epochs=epochs,
                                    diverged_epoch=int(first_bad[k]) or None)
                for k, seed in enumerate(seeds)]

    def _load(self, data: Dataset) -> None:
        if not (self.per_seed_data and data.per_seed):
            raise ValueError("only a trainer built on per-seed data takes other data per fit")
        arrays = [data.x_train, data.y_train, data.x_test, data.y_test, data.x_validation, data.y_validation]
        for var, a in zip(self._data, arrays):
            if var is None and a is None:
                continue
            if var is None or a is None or tuple(var.shape) != a.shape:
                raise ValueError("the data of a fit must have the shapes the trainer was built with")
            var.assign(a)

    def _result(self, k: int, seed: int, hist: np.ndarray, final: tuple, trained: list | None) -> SeedResult:
        (tr_loss, tr_values), (te_loss, te_values), validation, mean_act, zeros = final

        def values(loss, metrics) -> dict[str, float]:
            return {"loss": float(loss[k]), **{m: float(v[k]) for m, v in zip(self.metrics, metrics)}}

        return SeedResult(
            seed=int(seed),
            train=values(tr_loss, tr_values),
            test=values(te_loss, te_values),
            mean_activation=tuple(float(v) for v in mean_act[k]),
            zero_fraction=tuple(float(v) for v in zeros[k]),
            history={key: np.ascontiguousarray(hist[:, i, k]) for i, key in enumerate(self.history_keys)},
            weights=None if trained is None else tuple(w[k] for w in trained),
            validation=None if validation is None else values(*validation),
        )
