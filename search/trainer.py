"""The compiled trainer: many seeds of one configuration in one TensorFlow graph.

Why not ``model.fit``: its per-epoch overhead (callbacks, iterator, Python) costs about
0.1 s on a 2-core machine, more than the arithmetic of a small model by orders of
magnitude. Here the whole run (every epoch, every batch, the per-epoch test evaluation)
is one ``tf.function`` call.

How seeds share the graph: each Keras weight becomes one variable with a leading seed
axis, and ``tf.vectorized_map`` runs the model's own forward pass and ``compute_loss``
(activity regularizers included) once per seed slice, through ``keras.StatelessScope``.
The gradient of the sum of the per-seed losses is, slice by slice, each seed's own
gradient, and Adam is elementwise, so one Keras optimizer over the stacked variables
updates every seed exactly as its own optimizer would.

Fidelity: a chunk of one seed performs the same operations as ``model.fit(...,
shuffle=False)`` and gives bit-identical weights and history. Chunks of several seeds
use batched kernels, whose rounding differs slightly (about 1e-7 after a few epochs) and
may depend on which seeds share the chunk; the same chunk always gives the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from search.data import Dataset
from search.spec import TrainSpec

HISTORY_KEYS = ("loss", "accuracy", "test_loss", "test_accuracy")


@dataclass(frozen=True, eq=False)
class SeedResult:
    """One seed's fit. Accuracies are fractions in [0, 1]; losses include the penalty.

    ``history`` maps each of :data:`HISTORY_KEYS` to a float32 array of one value per
    epoch: ``loss``/``accuracy`` as ``fit`` reports them (averaged over the epoch's
    batches), ``test_*`` evaluated on the test set after the epoch. ``train_*`` are
    evaluated on the training set with the final weights. ``mean_activation`` and
    ``zero_fraction`` give, per regularized layer, the mean activated output on the test
    inputs and the fraction of its values that are exactly zero. ``weights`` holds the
    trained weights (in ``model.trainable_variables`` order) when asked for.
    """

    seed: int
    train_accuracy: float
    test_accuracy: float
    train_loss: float
    test_loss: float
    mean_activation: tuple[float, ...]
    zero_fraction: tuple[float, ...]
    history: dict[str, np.ndarray]
    weights: tuple[np.ndarray, ...] | None = None


def _mix32(h):
    """MurmurHash3's 32-bit finalizer: a bijection that spreads every input bit."""
    import tensorflow as tf

    h = h ^ tf.bitwise.right_shift(h, 16)
    h = h * tf.constant(0x85EBCA6B, tf.uint32)
    h = h ^ tf.bitwise.right_shift(h, 13)
    h = h * tf.constant(0xC2B2AE35, tf.uint32)
    return h ^ tf.bitwise.right_shift(h, 16)


def _permutations(seed_keys, epoch, n_rows: int):
    """Row orders of shape (seeds, n_rows) for one epoch: argsort of hashed (seed, epoch, row).

    Counter-based, so a seed's order depends on nothing but its seed and the epoch, not on
    the chunk it trains in. (TensorFlow's RandomIndexShuffle does the same but costs about
    100x more with one key per element.)
    """
    import tensorflow as tf

    u32 = tf.uint32
    key = _mix32(seed_keys * tf.constant(0x9E3779B9, u32) + _mix32(epoch + tf.constant(0x632BE5AB, u32)))
    rows = tf.range(n_rows, dtype=tf.int32)
    h = _mix32(key[:, None] ^ (tf.cast(rows, u32)[None, :] * tf.constant(0x27D4EB2F, u32)))
    return tf.argsort(tf.cast(h, tf.int64), axis=1, stable=True)


def train_seeds(models: Sequence, data: Dataset, train: TrainSpec, seeds: Sequence[int],
                probes: Sequence[str] = (), keep_weights: bool = False) -> list[SeedResult]:
    """Train ``models`` (the same architecture, one per seed, as built) together.

    ``models[k]`` holds seed k's initial weights and is not modified; the first model's
    layers run the computation. ``probes`` name the layers whose outputs are measured for
    sparsity on the test inputs; ``keep_weights`` returns the trained weights too.
    """
    if len(models) != len(seeds) or not models:
        raise ValueError("need one model per seed, and at least one")
    trainer = ChunkTrainer(models[0], data, train, len(seeds), probes)
    return trainer.fit([m.get_weights() for m in models], seeds, keep_weights=keep_weights)


class ChunkTrainer:
    """A compiled trainer for ``n_seeds`` replicas of ``template``, reusable across fits.

    The graph reads everything that changes between fits from variables: initial
    weights, optimizer state, shuffling keys, and the regularizer's factors (see
    :class:`search.model.ActivityPenalty`), so one compilation serves every strength
    of a norm and placement. Not thread-safe: one fit at a time.
    """

    def __init__(self, template, data: Dataset, train: TrainSpec, n_seeds: int, probes: Sequence[str] = ()) -> None:
        import keras
        import tensorflow as tf

        self.template = template
        self.n_seeds = n_seeds
        self.train = train
        weights = template.trainable_variables
        state = template.non_trainable_variables
        state_values = [v.value for v in state]
        self._stacked = stacked = [
            tf.Variable(tf.zeros((n_seeds, *v.shape), v.dtype), name=f"w{i}") for i, v in enumerate(weights)
        ]
        self._optimizer = optimizer = keras.optimizers.Adam(learning_rate=train.learning_rate)
        optimizer.build(stacked)
        self._optimizer_start = [v.numpy() for v in optimizer.variables]
        self._seed_keys = seed_keys = tf.Variable(tf.zeros([n_seeds], tf.uint32), name="seed_keys")
        probe_model = keras.Model(template.inputs, [template.get_layer(n).output for n in probes]) if probes else None

        x_train = tf.constant(data.x_train)
        y_train = tf.constant(data.y_train)
        x_test = tf.constant(data.x_test)
        y_test = tf.constant(data.y_test)
        n_rows = int(data.x_train.shape[0])
        batch = train.batch_size
        n_batches = -(-n_rows // batch)

        def scope(values):
            mapping = list(zip(weights, values)) + list(zip(state, state_values))
            return keras.StatelessScope(state_mapping=mapping, collect_losses=True)

        def seed_loss(values, x, y, training):
            # The same calls, in the same order, as Keras's own train_step/test_step.
            with scope(values):
                y_pred = template(x, training=training)
                loss = template.compute_loss(x, y, y_pred, training=training)
            return loss, _correct(y, y_pred)

        def per_seed(fn, values, *per_seed_args, shared=()):
            """Map ``fn`` over the seed axis of ``values`` (and of ``per_seed_args``)."""
            return tf.vectorized_map(lambda a: fn(a[0], *a[1:], *shared), (values, *per_seed_args))

        def evaluate(values, x, y):
            loss, correct = per_seed(lambda v, x_, y_: seed_loss(v, x_, y_, False), values, shared=(x, y))
            n = tf.cast(tf.shape(y)[0], tf.float32)
            return loss, correct / n

        # XLA fuses the many small elementwise ops of a step (about 2x faster on a CPU), but its
        # rounding differs from fit's kernels: one seed alone keeps fit's graph, bit for bit.
        @tf.function(jit_compile=n_seeds > 1)
        def run(epochs):
            history = tf.TensorArray(tf.float32, size=epochs)  # one (len(HISTORY_KEYS), seeds) slice per epoch
            for epoch in tf.range(epochs):
                order = _permutations(seed_keys, tf.cast(epoch, tf.uint32), n_rows) if train.shuffle else None
                loss_sum = tf.zeros([n_seeds])
                correct_sum = tf.zeros([n_seeds])
                seen = tf.constant(0.0)
                for b in tf.range(n_batches):
                    start = b * batch
                    stop = tf.minimum(start + batch, n_rows)
                    with tf.GradientTape() as tape:
                        values = [v.read_value() for v in stacked]
                        if order is None:
                            xb, yb = x_train[start:stop], y_train[start:stop]
                            loss, correct = per_seed(
                                lambda v, x_, y_: seed_loss(v, x_, y_, True), values, shared=(xb, yb))
                        else:
                            idx = order[:, start:stop]
                            loss, correct = per_seed(
                                lambda v, x_, y_: seed_loss(v, x_, y_, True),
                                values, tf.gather(x_train, idx), tf.gather(y_train, idx))
                        total = tf.reduce_sum(loss)
                    grads = tape.gradient(total, stacked)
                    optimizer.apply(grads, stacked)
                    # Keras's loss tracker: a mean weighted by batch size, accumulated as a sum.
                    n = tf.cast(stop - start, tf.float32)
                    loss_sum += loss * n
                    correct_sum += correct
                    seen += n
                test_loss, test_acc = evaluate([v.read_value() for v in stacked], x_test, y_test)
                history = history.write(epoch, tf.stack([loss_sum / seen, correct_sum / seen, test_loss, test_acc]))
            return history.stack()

        @tf.function
        def final():
            values = [v.read_value() for v in stacked]
            train_loss, train_acc = evaluate(values, x_train, y_train)
            test_loss, test_acc = evaluate(values, x_test, y_test)
            if probe_model is None:
                return train_loss, train_acc, test_loss, test_acc, tf.zeros([n_seeds, 0]), tf.zeros([n_seeds, 0])

            def sparsity(v):
                with scope(v):
                    outs = probe_model(x_test, training=False)
                outs = outs if isinstance(outs, (list, tuple)) else [outs]
                return (tf.stack([tf.reduce_mean(o) for o in outs]),
                        tf.stack([tf.reduce_mean(tf.cast(tf.equal(o, 0.0), tf.float32)) for o in outs]))

            mean_act, zeros = tf.vectorized_map(sparsity, values)
            return train_loss, train_acc, test_loss, test_acc, mean_act, zeros

        self._run, self._final = run, final

    def fit(self, initial_weights: Sequence[Sequence[np.ndarray]], seeds: Sequence[int],
            keep_weights: bool = False) -> list[SeedResult]:
        """Train from ``initial_weights[k]`` (seed k's weights, in trainable-variable order)."""
        import tensorflow as tf

        if len(initial_weights) != self.n_seeds or len(seeds) != self.n_seeds:
            raise ValueError(f"this trainer fits {self.n_seeds} seeds at a time")
        for i, var in enumerate(self._stacked):
            var.assign(np.stack([w[i] for w in initial_weights]))
        for var, value in zip(self._optimizer.variables, self._optimizer_start):
            var.assign(value)
        self._seed_keys.assign(np.asarray(seeds, dtype=np.uint32))
        hist = self._run(tf.constant(self.train.epochs)).numpy()
        tr_loss, tr_acc, te_loss, te_acc, mean_act, zeros = (t.numpy() for t in self._final())
        trained = [v.numpy() for v in self._stacked] if keep_weights else None
        results = []
        for k, seed in enumerate(seeds):
            results.append(SeedResult(
                seed=int(seed),
                train_accuracy=float(tr_acc[k]),
                test_accuracy=float(te_acc[k]),
                train_loss=float(tr_loss[k]),
                test_loss=float(te_loss[k]),
                mean_activation=tuple(float(v) for v in mean_act[k]),
                zero_fraction=tuple(float(v) for v in zeros[k]),
                history={key: np.ascontiguousarray(hist[:, i, k]) for i, key in enumerate(HISTORY_KEYS)},
                weights=None if trained is None else tuple(w[k] for w in trained),
            ))
        return results


def _correct(y, y_pred):
    """Number of correct predictions, as Keras's ``BinaryAccuracy`` counts them (threshold 0.5)."""
    from keras import ops

    matches = ops.cast(ops.equal(y, ops.cast(ops.greater(y_pred, 0.5), y.dtype)), "float32")
    return ops.sum(matches)
