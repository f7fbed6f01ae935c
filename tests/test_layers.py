"""The trainer on conv2d, lstm, dropout, multiclass and regression models, several batches per epoch."""

from __future__ import annotations

import numpy as np
import pytest

from search.engine import runtime

runtime.configure(2)

from search.engine.data import make_dataset  # noqa: E402
from search.engine.model import build_model, initial_state  # noqa: E402
from search.engine.trainer import ChunkTrainer, train_seeds  # noqa: E402
from search.study.space import Configuration  # noqa: E402
from search.study.spec import DataSpec, LayerSpec, ModelSpec, TrainSpec  # noqa: E402

L = LayerSpec
SCE = "sparse_categorical_crossentropy"
# 179 training rows: batches of 32 give five full batches and a short one of 19.
NO_SAMPLING = {"n_samples": None, "noise": None, "random_state": None, "n_train": None, "factor": None}


def digits(view: str) -> DataSpec:
    return DataSpec(source="digits", view=view, test_size=0.9, split_seed=0, stratify=True, **NO_SAMPLING)


DIABETES = DataSpec(source="diabetes", test_size=0.5, split_seed=0, standardize=True, **NO_SAMPLING)

CASES = {
    "dense-multiclass": (digits("flat"), ModelSpec((L("dense", 16, "relu", True), L("dense", 10, "softmax")), SCE)),
    "conv2d": (digits("image"), ModelSpec((
        L("conv2d", filters=4, kernel_size=(3, 3), activation="relu", regularize=True),
        L("maxpool2d", pool_size=(2, 2)), L("flatten"), L("dense", 10, "softmax")), SCE)),
    # Strides, "same" padding and two convolutions: the second one's input differs between seeds.
    "conv2d-strided": (digits("image"), ModelSpec((
        L("conv2d", filters=3, kernel_size=(3, 3), activation="relu", regularize=True, strides=(2, 2), padding="same"),
        L("conv2d", filters=5, kernel_size=(2, 2), activation="tanh"), L("flatten"), L("dense", 10, "softmax")), SCE)),
    "lstm": (digits("sequence"), ModelSpec((L("lstm", 8, regularize=True), L("dense", 10, "softmax")), SCE)),
    "gru": (digits("sequence"), ModelSpec((L("gru", 8, regularize=True), L("dense", 10, "softmax")), SCE)),
    "dense-regression": (DIABETES, ModelSpec((L("dense", 16, "relu", True), L("dense", 1, "linear")), "mse")),
}


def task_of(model: ModelSpec) -> tuple[str, tuple[str, ...]]:
    return (model.task, ("r2", "mae") if model.task == "regression" else ("accuracy",))


@pytest.mark.parametrize("case,placement", [
    ("dense-multiclass", "pre"), ("conv2d", "pre"), ("conv2d", "post"), ("lstm", "post"), ("gru", "post"),
    ("dense-regression", "post"),
])
def test_one_seed_reproduces_model_fit_on_several_batches(case, placement):
    data_spec, model = CASES[case]
    data = make_dataset(data_spec)
    assert len(data.x_train) == 179 or case == "dense-regression"
    config = Configuration("l2", 1e-3, placement)
    epochs, batch = 2, 32
    shape = data.x_train.shape[1:]
    reference = build_model(model, config, "mean", 3, shape).model
    history = reference.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch, shuffle=False,
                            verbose=0, validation_data=(data.x_test, data.y_test)).history
    ours = build_model(model, config, "mean", 3, shape)
    task, metrics = task_of(model)
    (r,) = train_seeds([ours.model], data, TrainSpec(epochs=epochs, batch_size=batch, shuffle=False), [3],
                       ours.probes, keep_weights=True, task=task, metrics=metrics)
    for got, want in zip(r.weights, reference.get_weights()):
        assert np.array_equal(got, want)
    assert np.array_equal(r.history["loss"], np.float32(history["loss"]))
    for m in metrics:
        np.testing.assert_allclose(r.history[m], history[m], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(r.history[f"test_{m}"], history[f"val_{m}"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(r.history["test_loss"], history["val_loss"], rtol=1e-5)


@pytest.mark.parametrize("case, jit", [("conv2d", False), ("conv2d", True), ("conv2d-strided", False),
                                       ("conv2d-strided", True), ("lstm", None), ("gru", None)])
@pytest.mark.slow
def test_replicas_of_a_chunk_match_their_single_seed_fits(case, jit):
    """Under XLA, a chunk's convolutions, their gradients and max pooling run through the
    rules of search/vectorize.py; without it, through the grouped convolution."""
    data_spec, model = CASES[case]
    data = make_dataset(data_spec)
    shape = data.x_train.shape[1:]
    config = Configuration("l1", 1e-3, "post")
    train = TrainSpec(epochs=2, batch_size=32, shuffle=True)
    task, metrics = task_of(model)
    built = [build_model(model, config, "mean", s, shape) for s in (0, 1)]
    chunk = train_seeds([b.model for b in built], data, train, [0, 1], built[0].probes, True, task, metrics, jit)
    for k, b in enumerate(built):
        (alone,) = train_seeds([build_model(model, config, "mean", k, shape).model], data, train, [k],
                               b.probes, True, task, metrics)
        for got, want in zip(chunk[k].weights, alone.weights):
            np.testing.assert_allclose(got, want, atol=1e-5)


def test_dropout_draws_each_seeds_masks_and_matches_fit():
    data = make_dataset(digits("flat"))
    model = ModelSpec((L("dense", 32, "relu", True), L("dropout", rate=0.5), L("dense", 10, "softmax")), SCE)
    config = Configuration("l1", 1e-4, "post")
    train = TrainSpec(epochs=2, batch_size=32, shuffle=False)
    shape = data.x_train.shape[1:]
    reference = build_model(model, config, "mean", 5, shape).model
    reference.fit(data.x_train, data.y_train, epochs=2, batch_size=32, shuffle=False, verbose=0)
    (alone,) = train_seeds([build_model(model, config, "mean", 5, shape).model], data, train, [5],
                           keep_weights=True, task="multiclass")
    for got, want in zip(alone.weights, reference.get_weights()):
        assert np.array_equal(got, want)  # the same dropout masks as fit, step by step
    # In a chunk, each seed keeps its own dropout stream: the same start weights, different masks.
    template = build_model(model, config, "mean", 5, shape)
    trainer = ChunkTrainer(template.model, data, train, 2, task="multiclass")
    w, _ = initial_state(model, config, 5, shape)
    _, s6 = initial_state(model, config, 6, shape)
    _, s5 = initial_state(model, config, 5, shape)
    pair = trainer.fit([w, w], [5, 6], keep_weights=True, initial_states=[s5, s6])
    np.testing.assert_allclose(pair[0].weights[0], alone.weights[0], atol=1e-5)
    assert not np.allclose(pair[1].weights[0], alone.weights[0], atol=1e-4)


def test_regression_metrics_are_those_of_keras():
    import keras

    data = make_dataset(DIABETES)
    _, model = CASES["dense-regression"]
    (r,) = train_seeds([build_model(model, Configuration("none"), "mean", 0, 10, 0.05).model], data,
                       TrainSpec(epochs=30, batch_size=32), [0], keep_weights=True, task="regression",
                       metrics=("r2", "mae"))
    fitted = build_model(model, Configuration("none"), "mean", 0, 10).model
    fitted.set_weights(list(r.weights))
    pred = fitted.predict(data.x_test, verbose=0)
    r2 = keras.metrics.R2Score()
    r2.update_state(data.y_test, pred)
    assert r.test["r2"] == pytest.approx(float(r2.result()), abs=1e-4)
    assert r.test["mae"] == pytest.approx(float(np.mean(np.abs(data.y_test - pred))), rel=1e-5)
    assert r.history["test_r2"][-1] > r.history["test_r2"][0]  # it learns


@pytest.mark.parametrize("xla", [False, True], ids=["graph", "xla"])
@pytest.mark.parametrize("strides, padding, dilations", [(1, "VALID", 1), (2, "SAME", 1), ((1, 2), "VALID", 2),
                                                         (1, "SAME", 2)])
def test_per_seed_convolutions_and_their_gradients_vectorize_without_a_loop(strides, padding, dilations, xla):
    """Each seed's convolution, max pooling and their gradients inside ``vectorized_map``, as
    the trainer takes them under XLA, equal the seed's own (search/vectorize.py). Without XLA
    the seeds' convolutions are one grouped convolution where oneDNN is on (TensorFlow's plain
    kernels take no grouped convolution's gradient); with it off, as actreg sets it, they loop."""
    import contextlib

    import tensorflow as tf

    from search.engine import patches, vectorize

    assert vectorize.install()
    if not xla and dilations != 1 and not patches.onednn():
        pytest.skip("TensorFlow's plain CPU kernels take no dilated convolution's input gradient, one seed's neither")
    rng = np.random.default_rng(0)
    x = tf.constant(rng.normal(size=(3, 4, 9, 8, 2)), tf.float32)  # seeds, batch, height, width, channels
    kernels = tf.constant(rng.normal(size=(3, 3, 2, 2, 5)), tf.float32)

    def one_seed(a):
        x_, k = a
        with tf.GradientTape() as tape:
            tape.watch([x_, k])
            y = tf.nn.conv2d(x_, k, strides, padding, dilations=dilations)
            pooled = tf.nn.max_pool2d(tf.nn.tanh(y), 2, 2, "VALID")
            loss = tf.reduce_sum(pooled * pooled) + tf.reduce_sum(y)
        return (y, *tape.gradient(loss, [x_, k]))

    run = tf.function(lambda x, k: tf.vectorized_map(one_seed, (x, k)), jit_compile=xla)
    with vectorize.for_xla() if xla else contextlib.nullcontext():
        graph = run.get_concrete_function(x, kernels).graph
    loops = [op for op in _op_types(graph) if "While" in op]
    assert bool(loops) == (not xla and not patches.onednn())  # no loop over the seeds, but as said
    got = run(x, kernels)
    own = tf.function(one_seed, jit_compile=xla)  # XLA takes dilated gradients where the plain kernels take none
    for s in range(3):
        for g, w in zip(got, own((x[s], kernels[s]))):
            np.testing.assert_allclose(g[s], w, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_with_onednn_on_the_seeds_convolutions_are_one_grouped_convolution():
    """The test above, without XLA, in a process where the user turned oneDNN on."""
    import os
    import subprocess
    import sys

    test = f"{__file__}::test_per_seed_convolutions_and_their_gradients_vectorize_without_a_loop"
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test, "-k", "graph"],
                         env={**os.environ, "TF_ENABLE_ONEDNN_OPTS": "1"}, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0 and "4 passed" in out.stdout, out.stdout[-3000:]


@pytest.mark.parametrize("m, k, n", [(30, 2, 500), (30, 1, 500), (2, 30, 500), (7, 3, 1), (30, 500, 1), (6, 9, 5),
                                     (3, 33, 8)])
@pytest.mark.parametrize("transpose_a, transpose_b", [(False, False), (True, False), (False, True), (True, True)])
def test_per_seed_matrix_products_with_a_small_dimension_are_written_out_for_xla(m, k, n, transpose_a, transpose_b):
    """Under XLA, each seed's product with a small inner dimension, or few rows and a short
    inner dimension (the case-study MLP's two inputs, its one output in the backward pass, the
    two-row kernel gradient over a batch) is products and sums, equal to the seed's own; the
    others (few columns, or few rows and a long sum) stay batched matrix products."""
    import tensorflow as tf

    from search.engine import vectorize

    assert vectorize.install()
    rng = np.random.default_rng(1)
    a = tf.constant(rng.normal(size=(3, *((k, m) if transpose_a else (m, k)))), tf.float32)
    b = tf.constant(rng.normal(size=(3, *((n, k) if transpose_b else (k, n)))), tf.float32)

    def one_seed(pair):
        return tf.matmul(*pair, transpose_a=transpose_a, transpose_b=transpose_b)

    run = tf.function(lambda a, b: tf.vectorized_map(one_seed, (a, b)), jit_compile=True)
    with vectorize.for_xla():
        ops = _op_types(run.get_concrete_function(a, b).graph)
    # (The per-seed function pfor converted stays in the graph's library, its MatMul with it.)
    assert ("BatchMatMulV2" in ops) == (not vectorize.small(m, k))
    assert vectorize.small(m, k) == ((m, k) in {(30, 2), (30, 1), (2, 30), (7, 3)})
    got = run(a, b)
    for s in range(3):
        np.testing.assert_allclose(got[s], one_seed((a[s], b[s])), rtol=1e-5, atol=1e-5)


def _op_types(graph) -> set[str]:
    """The op types of ``graph`` and of the functions it calls (``vectorized_map`` puts its ops in one)."""
    graph_def = graph.as_graph_def()
    return {n.op for n in graph_def.node} | {n.op for f in graph_def.library.function for n in f.node_def}


def _loops(trainer) -> int:
    """The while loops of a trainer's traced epochs: the epochs', the batches' and any others."""
    import tensorflow as tf

    graph = trainer._run.get_concrete_function(tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)).graph
    return sum("while_body" in f.signature.name for f in graph.as_graph_def().library.function)


@pytest.mark.slow
@pytest.mark.parametrize("case", ["lstm", "gru"])
def test_a_chunks_recurrent_layers_train_unrolled_and_one_seed_keeps_fits_loop(case):
    data_spec, model = CASES[case]
    data = make_dataset(data_spec)
    config = Configuration("l1", 1e-3, "post")
    train = TrainSpec(epochs=1, batch_size=32)
    template = build_model(model, config, "mean", 0, data.x_train.shape[1:]).model
    chunk = ChunkTrainer(template, data, train, 3, task="multiclass")
    assert _loops(chunk) == 2  # epochs and batches: no loop over the 8 time steps
    assert template.layers[1].unroll is False  # the template is left as it was
    alone = ChunkTrainer(template, data, train, 1, task="multiclass")
    assert _loops(alone) > 2  # fit's own graph, with the layer's loops over time


def test_only_short_known_sequences_unroll():
    import keras

    from search.engine.model import MAX_UNROLLED_STEPS, unrolled

    def lstm_on(steps):
        inputs = keras.Input((steps, 2))
        return keras.Model(inputs, keras.layers.LSTM(3)(inputs))

    short, long, unknown = lstm_on(8), lstm_on(MAX_UNROLLED_STEPS + 1), lstm_on(None)
    with unrolled(short), unrolled(long), unrolled(unknown):
        assert [m.layers[1].unroll for m in (short, long, unknown)] == [True, False, False]
    assert short.layers[1].unroll is False
