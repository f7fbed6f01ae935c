"""The case-study MLP as an expert writes it on Keras 3's JAX backend: the peer to beat.

The same Keras layers (Dense(500) with L1(1e-4) on its linear output, ReLU, Dense(1,
sigmoid)), called through ``model.stateless_call`` (which returns the activity losses), the
seeds ``jax.vmap``-ed, the epochs in ``lax.scan``, Adam from optax (Keras's epsilon), a new
order of the training rows every epoch and the test set evaluated every epoch. Prints one
JSON object: microseconds per model-epoch, best of ``--repeats`` timed runs after a
compiling run.

``--outputs`` says what each epoch records: ``accuracy`` (the training loss and the test
accuracy, the anchor as first written) or ``all`` (what actreg's history and ``fit``'s
``validation_data`` record: training loss and accuracy over the epoch's batches, test loss,
activity penalty included, and test accuracy). ``--record-every K`` evaluates the test set
only every K-th epoch and at the last (``lax.cond``), as a study records its curves
(``[train] record_every``, by default every epochs/100); 1, the default, every epoch.

    python benchmarks/keras_jax_anchor.py --epochs 1000 --seeds 30 [--outputs all] [--record-every 10]

Needs ``pip install -e ".[bench]"`` (jax, optax); without them it says so and exits 3.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ["KERAS_BACKEND"] = "jax"  # before Keras is imported; this process trains on JAX only
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

MISSING = 3  # exit status when jax or optax is not installed


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=1000)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the compiling one (best counts)")
    parser.add_argument("--outputs", choices=("accuracy", "all"), default="accuracy",
                        help="per epoch: training loss and test accuracy, or also training accuracy and test loss")
    parser.add_argument("--record-every", type=int, default=1, metavar="K",
                        help="evaluate the test set every K-th epoch and at the last (default 1: every epoch)")
    args = parser.parse_args(argv)
    try:
        import jax
        import optax
    except ImportError as exc:
        print(f"skipped: the Keras-on-JAX anchor needs jax and optax ({exc.name} is missing); "
              'pip install -e ".[bench]"', file=sys.stderr)
        return MISSING
    import jax.numpy as jnp
    import keras
    import numpy as np
    from sklearn.datasets import make_circles

    x, y = make_circles(n_samples=100, noise=0.1, random_state=1)
    x, y = x.astype(np.float32), y.astype(np.float32)[:, None]
    x_train, y_train, x_test, y_test = map(jnp.asarray, (x[:30], y[:30], x[30:], y[30:]))
    batch = 32

    def build(seed: int):
        keras.utils.set_random_seed(seed)
        inputs = keras.Input((2,))
        h = keras.layers.Dense(500, activity_regularizer=keras.regularizers.L1(1e-4))(inputs)
        h = keras.layers.Activation("relu")(h)
        return keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))

    model = build(0)
    stacked = [jnp.stack(w) for w in zip(*[[v.value for v in build(s).trainable_variables]
                                           for s in range(args.seeds)])]
    adam = optax.adam(1e-3, eps=1e-7)

    everything = args.outputs == "all"

    def loss_fn(weights, xb, yb, training=True):
        y_pred, _, activity = model.stateless_call(weights, [], xb, training=training, return_losses=True)
        return jnp.mean(keras.losses.binary_crossentropy(yb, y_pred)) + sum(activity), y_pred

    def correct(y_pred, y):
        return jnp.sum((y_pred > 0.5) == (y > 0.5))

    def evaluated(weights, record):
        """The test set's loss and accuracy, computed only where ``record`` is true."""
        def evaluate(w):
            test_loss, test_pred = loss_fn(w, x_test, y_test, training=False)
            return test_loss, correct(test_pred, y_test) / x_test.shape[0]
        return jax.lax.cond(record, evaluate, lambda w: (jnp.float32(0), jnp.float32(0)), weights)

    def epoch(carry, scanned):
        key, index = scanned
        record = ((index + 1) % args.record_every == 0) | (index + 1 == args.epochs)
        weights, opt_state = carry
        order = jax.random.permutation(key, x_train.shape[0])
        xs, ys = x_train[order], y_train[order]
        total, hits = 0.0, 0
        for start in range(0, xs.shape[0], batch):
            xb, yb = xs[start:start + batch], ys[start:start + batch]
            (loss, y_pred), grads = jax.value_and_grad(loss_fn, has_aux=True)(weights, xb, yb)
            updates, opt_state = adam.update(grads, opt_state, weights)
            weights = optax.apply_updates(weights, updates)
            if everything:  # fit's averages over the epoch's rows
                total, hits = total + loss * xb.shape[0], hits + correct(y_pred, yb)
            else:
                total = total + loss
        test_loss, test_accuracy = evaluated(weights, record) if args.record_every > 1 or everything else (None, None)
        if everything:
            out = (total / xs.shape[0], hits / xs.shape[0], test_loss, test_accuracy)
        elif args.record_every > 1:
            out = (total, test_accuracy)
        else:  # as first written
            test_pred, _ = model.stateless_call(weights, [], x_test)
            out = (total, jnp.mean((test_pred > 0.5) == (y_test > 0.5)))
        return (weights, opt_state), out

    def train(weights, key):
        keys = jax.random.split(key, args.epochs)
        (weights, _), history = jax.lax.scan(epoch, (weights, adam.init(weights)), (keys, jnp.arange(args.epochs)))
        return history

    run = jax.jit(jax.vmap(train))
    keys = jax.random.split(jax.random.PRNGKey(0), args.seeds)
    start = time.perf_counter()
    jax.block_until_ready(run(stacked, keys))
    compile_s = time.perf_counter() - start
    best = float("inf")
    for _ in range(args.repeats):
        start = time.perf_counter()
        accuracy = jax.block_until_ready(run(stacked, keys))[-1]
        best = min(best, time.perf_counter() - start)
    print(json.dumps({
        "way": "keras-on-jax vmap", "outputs": args.outputs, "record_every": args.record_every,
        "us_per_model_epoch": round(best / args.epochs / args.seeds * 1e6, 2),
        "seeds": args.seeds, "epochs": args.epochs, "compile_seconds": round(compile_s - best, 2),
        "final_test_accuracy_mean": round(float(accuracy[:, -1].mean()), 4),
        "versions": {"jax": jax.__version__, "keras": keras.__version__, "optax": optax.__version__},
    }))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
