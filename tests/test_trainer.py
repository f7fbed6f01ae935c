from __future__ import annotations

import numpy as np
import pytest

from search.engine import runtime

runtime.configure(2)
import keras  # noqa: E402

from search.engine.data import make_dataset  # noqa: E402
from search.engine.model import build_model  # noqa: E402
from search.engine.trainer import train_seeds  # noqa: E402
from search.study.space import Configuration  # noqa: E402
from search.study.spec import DataSpec, LayerSpec, ModelSpec, TrainSpec  # noqa: E402

DATA = DataSpec()  # the case study: circles, 30 training rows, 70 test rows
MLP = ModelSpec((LayerSpec("dense", 500, "relu", True), LayerSpec("dense", 1, "sigmoid")))


def fit_with_actreg(config, seeds, train, penalty="mean", model=MLP, jit=None):
    data = make_dataset(DATA)
    built = [build_model(model, config, penalty, s, 2, train.learning_rate) for s in seeds]
    return train_seeds([b.model for b in built], data, train, seeds, built[0].probes, keep_weights=True, jit=jit)


@pytest.mark.parametrize("config,penalty,batch_size", [
    (Configuration("none"), "mean", 32),
    (Configuration("l1", 1e-4, "pre"), "mean", 32),
    (Configuration("l1", 1e-4, "post"), "mean", 32),
    (Configuration("l1_l2", 1e-3, "pre"), "sum", 8),  # several batches per epoch, the last one short
    (Configuration("l2", 1e-2, "post"), "mean", 8),
])
def test_one_seed_reproduces_model_fit_bit_for_bit(config, penalty, batch_size):
    epochs = 5
    train = TrainSpec(epochs=epochs, batch_size=batch_size, shuffle=False)
    data = make_dataset(DATA)
    reference = build_model(MLP, config, penalty, 7, 2).model
    history = reference.fit(data.x_train, data.y_train, epochs=epochs, batch_size=batch_size, shuffle=False,
                            verbose=0, validation_data=(data.x_test, data.y_test)).history
    (ours,) = fit_with_actreg(config, [7], train, penalty)
    for got, want in zip(ours.weights, reference.get_weights()):
        assert np.array_equal(got, want)
    assert np.array_equal(ours.history["loss"], np.float32(history["loss"]))
    assert np.array_equal(ours.history["accuracy"], np.float32(history["accuracy"]))
    assert np.array_equal(ours.history["test_accuracy"], np.float32(history["val_accuracy"]))
    if penalty == "mean":
        # Keras evaluates the test set in batches and we in one, so the means differ in rounding.
        # (Under "sum" the penalty of a batch is not divided by its size, so they differ by design.)
        np.testing.assert_allclose(ours.history["test_loss"], history["val_loss"], rtol=1e-5)
    final = reference.evaluate(data.x_train, data.y_train, verbose=0, return_dict=True)
    assert ours.train_accuracy == pytest.approx(final["accuracy"], abs=1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("config", [Configuration("l1", 1e-3, "pre"), Configuration("l1_l2", 1e-2, "post")])
def test_each_replica_of_a_chunk_matches_its_single_seed_fit(config):
    """Under XLA the penalty is summed in one reduction and each seed takes its own gradient."""
    train = TrainSpec(epochs=8, batch_size=8, shuffle=True)  # 3 full batches and a short one
    chunk = fit_with_actreg(config, [0, 1, 2], train, jit=True)  # XLA, as long runs use it
    for k, seed in enumerate([0, 1, 2]):
        (alone,) = fit_with_actreg(config, [seed], train)
        assert chunk[k].seed == seed
        for got, want in zip(chunk[k].weights, alone.weights):
            np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_array_equal(chunk[k].history["test_accuracy"], alone.history["test_accuracy"])


@pytest.mark.slow
@pytest.mark.parametrize("jit", [False, True])
def test_each_seed_of_a_chunk_trains_on_its_own_replicate(jit):
    """Per-seed data (resample = "draw", with validation rows): in a chunk, each seed matches its fit on
    its own replicate's data alone; its validation metrics are those of its final weights on its rows."""
    from dataclasses import replace

    from search.engine.data import replicate_data

    spec = replace(DATA, resample="draw", random_state=None, validation=0.2, stratify=True)
    train = TrainSpec(epochs=8, batch_size=8, shuffle=True)
    config = Configuration("l1", 1e-3, "pre")
    seeds = [0, 1, 2]
    built = [build_model(MLP, config, "mean", s, 2, train.learning_rate) for s in seeds]
    stacked = replicate_data(spec, tuple(seeds))
    chunk = train_seeds([b.model for b in built], stacked, train, seeds, built[0].probes, keep_weights=True, jit=jit)
    for k, seed in enumerate(seeds):
        own = make_dataset(spec.for_replicate(seed))
        assert own.rows == (24, 70, 6)
        b = build_model(MLP, config, "mean", seed, 2, train.learning_rate)
        (alone,) = train_seeds([b.model], own, train, [seed], b.probes, keep_weights=True)
        for got, want in zip(chunk[k].weights, alone.weights):
            np.testing.assert_allclose(got, want, atol=1e-5)
        np.testing.assert_array_equal(chunk[k].history["test_accuracy"], alone.history["test_accuracy"])
        assert chunk[k].validation["accuracy"] == alone.validation["accuracy"]
        b.model.set_weights(alone.weights)
        evaluated = b.model.evaluate(own.x_validation, own.y_validation, verbose=0, return_dict=True)
        assert alone.validation["accuracy"] == pytest.approx(evaluated["accuracy"], abs=1e-7)
        assert alone.validation["loss"] == pytest.approx(evaluated["loss"], rel=1e-5)
    assert len({r.test_accuracy for r in chunk}) > 1 or len({r.validation["loss"] for r in chunk}) == 3


def test_same_seeds_give_the_same_numbers():
    train = TrainSpec(epochs=6, batch_size=8, shuffle=True)
    config = Configuration("l2", 1e-3, "post")
    a = fit_with_actreg(config, [0, 1, 2], train)
    b = fit_with_actreg(config, [0, 1, 2], train)
    for ra, rb in zip(a, b):
        assert all(np.array_equal(x, y) for x, y in zip(ra.weights, rb.weights))
        assert ra.history["loss"].tolist() == rb.history["loss"].tolist()
        assert (ra.test_accuracy, ra.mean_activation) == (rb.test_accuracy, rb.mean_activation)


@pytest.mark.slow
def test_shuffling_draws_each_epochs_order_from_the_seed():
    config = Configuration("none")
    shuffled = fit_with_actreg(config, [0, 1], TrainSpec(epochs=4, batch_size=8, shuffle=True))
    plain = fit_with_actreg(config, [0, 1], TrainSpec(epochs=4, batch_size=8, shuffle=False))
    assert not np.array_equal(shuffled[0].weights[0], plain[0].weights[0])
    again = fit_with_actreg(config, [0, 1], TrainSpec(epochs=4, batch_size=8, shuffle=True))
    assert np.array_equal(shuffled[1].weights[0], again[1].weights[0])


@pytest.mark.parametrize("n", [1, 2, 30, 64, 65, 200])
@pytest.mark.parametrize("jit", [False, True])
def test_an_epochs_order_is_the_stable_argsort_of_its_keys(n, jit):
    """Up to PAIRWISE_ROWS rows the order is ranked by comparisons, beyond them sorted: the same
    permutation, ties (here frequent) in row order."""
    import tensorflow as tf

    from search.engine.shuffle import stable_argsort

    keys = np.random.default_rng(n).integers(0, 6, size=(5, n)).astype(np.int64)
    order = tf.function(stable_argsort, jit_compile=jit)(tf.constant(keys)).numpy()
    np.testing.assert_array_equal(order, np.argsort(keys, axis=1, kind="stable"))


def test_results_are_sane():
    (r,) = fit_with_actreg(Configuration("l1", 1e-2, "post"), [0], TrainSpec(epochs=3))
    assert set(r.history) == {"loss", "accuracy", "test_loss", "test_accuracy"}
    assert all(len(v) == 3 for v in r.history.values())
    assert 0.0 <= r.test_accuracy <= 1.0 and r.test_accuracy == r.history["test_accuracy"][-1]
    # Accuracies are counts over 30 and 70 rows.
    assert round(r.train_accuracy * 30, 4) == round(r.train_accuracy * 30)
    assert len(r.mean_activation) == 1 and r.mean_activation[0] >= 0.0
    assert 0.0 < r.zero_fraction[0] < 1.0  # a ReLU layer has exact zeros, but not only zeros


def test_a_reused_compiled_trainer_gives_the_numbers_of_a_fresh_one():
    from search.engine import parallel
    from search.engine.parallel import FitTask, fit_seeds

    train = TrainSpec(epochs=5, batch_size=8)

    def task(strength, seeds=(0, 1)):
        return FitTask(DATA, MLP, train, "mean", Configuration("l1", strength, "pre"), seeds, 2)

    parallel._TRAINERS.clear()
    fresh = fit_seeds(task(1e-1))
    fit_seeds(task(1e-3, seeds=(4, 5)))  # the same compiled trainer, other strength and seeds
    reused = fit_seeds(task(1e-1))
    assert len(parallel._TRAINERS) == 1
    for a, b in zip(fresh, reused):
        assert a.history["loss"].tolist() == b.history["loss"].tolist()
        assert (a.test, a.train, a.mean_activation) == (b.test, b.train, b.mean_activation)


@pytest.mark.parametrize("placement,regularizer", [
    ("pre", lambda: keras.regularizers.L1(1e-4)),
    ("post", lambda: keras.regularizers.L2(1e-2)),
])
def test_one_seed_reproduces_the_tutorials_own_keras_code(placement, regularizer):
    """The reference is written as the tutorial writes it, with Keras's own regularizers."""
    epochs, seed = 5, 3
    data = make_dataset(DATA)
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((2,))
    if placement == "pre":
        h = keras.layers.Dense(500, activity_regularizer=regularizer())(inputs)
        h = keras.layers.Activation("relu")(h)
    else:
        h = keras.layers.Dense(500, activation="relu", activity_regularizer=regularizer())(inputs)
    reference = keras.Model(inputs, keras.layers.Dense(1, activation="sigmoid")(h))
    reference.compile(optimizer="adam", loss="binary_crossentropy", metrics=["accuracy"])
    history = reference.fit(data.x_train, data.y_train, epochs=epochs, batch_size=32, shuffle=False, verbose=0,
                            validation_data=(data.x_test, data.y_test)).history
    norm, strength = ("l1", 1e-4) if placement == "pre" else ("l2", 1e-2)
    (ours,) = fit_with_actreg(Configuration(norm, strength, placement), [seed], TrainSpec(epochs=epochs, shuffle=False))
    for got, want in zip(ours.weights, reference.get_weights()):
        assert np.array_equal(got, want)
    assert np.array_equal(ours.history["loss"], np.float32(history["loss"]))


@pytest.mark.parametrize("n_seeds, steps, layers, expected", [
    (3, 4000, ["InputLayer", "Dense", "Dense"], True),
    (3, 999, ["InputLayer", "Dense"], False),  # compiling would cost more than it saves
    (1, 4000, ["InputLayer", "Dense"], False),  # one seed: fit's own graph, bit for bit
    (3, 4000, ["InputLayer", "Dense", "Activation", "Dense"], True),  # "pre" placement
    (3, 6000, ["InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense"], True),  # see search/vectorize.py
    (3, 1200, ["InputLayer", "Conv2D", "MaxPooling2D", "Flatten", "Dense"], False),  # compiling costs more
    (3, 4000, ["InputLayer", "GRU", "Dense"], False),
])
def test_use_xla(n_seeds, steps, layers, expected):
    from search.engine.trainer import use_xla

    assert use_xla(n_seeds, steps, layers) is expected


def test_no_xla_for_layers_that_vectorized_map_would_loop_over():
    from search.engine.trainer import use_xla

    layers = ["InputLayer", "Conv2D", "Flatten", "Dense"]
    assert use_xla(3, 6000, layers) and not use_xla(3, 6000, layers, looping=("Conv2D",))


@pytest.mark.parametrize("model, epochs, seeds, expected", [
    (MLP, 4000, 30, 2),  # XLA: its steps split across the threads
    (MLP, 10, 30, 1),  # TensorFlow's graph: each small op on one thread
    (MLP, 4000, 1, 1),  # one seed: fit's graph
    (ModelSpec((LayerSpec("lstm", 8, regularize=True), LayerSpec("dense", 1, "sigmoid"))), 4000, 30, 1),
    (ModelSpec(builder="my_nets:mlp"), 10, 30, 2),  # layers unknown until built: as before
])
def test_op_threads_follow_the_graph_the_chunks_train_in(model, epochs, seeds, expected):
    from search.engine.trainer import op_threads

    assert op_threads(2, model, TrainSpec(epochs=epochs), 30, seeds) == expected


@pytest.mark.slow
def test_configure_sizes_both_pools():
    import subprocess
    import sys

    code = ("from search.engine import runtime; runtime.configure(2, 1); import tensorflow as tf; "
            "print(tf.config.threading.get_inter_op_parallelism_threads(), "
            "tf.config.threading.get_intra_op_parallelism_threads())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["2", "1"]


def test_xla_only_where_it_pays():
    from search.engine.trainer import ChunkTrainer

    data = make_dataset(DATA)  # 30 rows: one batch per epoch
    model = build_model(MLP, Configuration("l1", 1e-4, "pre"), "mean", 0, 2).model
    assert ChunkTrainer(model, data, TrainSpec(epochs=4000), 3).jit
    assert not ChunkTrainer(model, data, TrainSpec(epochs=10), 3).jit  # compiling would cost more than it saves
    assert not ChunkTrainer(model, data, TrainSpec(epochs=4000), 1).jit  # one seed: fit's own graph
    assert ChunkTrainer(model, data, TrainSpec(epochs=100, batch_size=3), 3).jit  # 10 batches x 100 epochs


REUSE_SCRIPT = """
from search.engine import runtime
runtime.configure(2)
from search.engine.data import make_dataset
from search.engine.model import build_model, initial_state
from search.study.space import Configuration
from search.study.spec import DataSpec, LayerSpec, ModelSpec, TrainSpec
from search.engine.trainer import ChunkTrainer

if {cnn}:  # a convolution, its kernel's gradient and max pooling go through search/vectorize.py's rules
    spec = ModelSpec((LayerSpec("conv2d", filters=4, kernel_size=(3, 3), activation="relu", regularize=True),
                      LayerSpec("maxpool2d", pool_size=(2, 2)), LayerSpec("flatten"),
                      LayerSpec("dense", 10, "softmax")), "sparse_categorical_crossentropy")
    data = make_dataset(DataSpec(source="digits", view="image", test_size=0.9, split_seed=0, stratify=True,
                                 n_samples=None, noise=None, random_state=None, n_train=None, factor=None))
    shape, kwargs, outputs = (8, 8, 1), dict(task="multiclass"), 10
else:
    spec = ModelSpec((LayerSpec("dense", 8, "relu", True), LayerSpec("dense", 1, "sigmoid")))
    data = make_dataset(DataSpec())
    shape, kwargs, outputs = (2,), {{}}, 1
config = Configuration("l1", 1e-3, "pre")
built = build_model(spec, config, "mean", 0, shape, n_outputs=outputs)
trainer = ChunkTrainer(built.model, data, TrainSpec(epochs=2 if {cnn} else 5), 3, built.probes, jit=True, **kwargs)
print("COMPILE_CHECK_START", flush=True)
for seeds, factors in [((0, 1, 2), (1e-3, 0.0)), ((0, 1, 2), (0.0, 1e-2)), ((3, 4, 5), (1e-2, 1e-2))]:
    built.regularizer.set(*factors)
    start = [initial_state(spec, config, s, shape, outputs) for s in seeds]
    trainer.fit([w for w, _ in start], list(seeds), initial_states=[st for _, st in start])
"""


@pytest.mark.slow
@pytest.mark.parametrize("cnn", [False, True], ids=["mlp", "cnn"])
def test_xla_compiles_once_for_new_weights_factors_and_seeds(tmp_path, cnn):
    """A reused trainer must not recompile: XLA once treated every weight as a constant.

    Counted from TensorFlow's own log of XLA compilations, in a fresh process.
    """
    import os
    import subprocess
    import sys

    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0", "TF_CPP_VMODULE": "device_compiler=1"}
    proc = subprocess.run([sys.executable, "-c", REUSE_SCRIPT.format(cnn=cnn)], capture_output=True, text=True,
                          timeout=300, env=env, cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    compilations = proc.stderr.count("Compilation of XLA executable")
    # Once for the epochs and once for the final evaluation, whatever the fits load.
    assert compilations == 2, f"{compilations} XLA compilations for three fits (TensorFlow's device_compiler log)"


def _same(a, b) -> bool:
    """Bit for bit: final values, sparsity and every recorded history value."""
    return (a.train, a.test, a.mean_activation, a.zero_fraction, a.diverged_epoch) == \
        (b.train, b.test, b.mean_activation, b.zero_fraction, b.diverged_epoch) and \
        all(np.array_equal(a.history[k], b.history[k], equal_nan=True) for k in a.history)


@pytest.mark.slow
def test_configurations_in_one_xla_program_give_the_bits_they_give_alone():
    """Configurations as data: under XLA a model's numbers do not depend on the program's other models,
    their number, their order, or a neighbour that diverges."""
    from search.engine.parallel import FitTask, fit_seeds

    train, seeds = TrainSpec(epochs=1000), (0, 1, 2)
    a, b, bad = Configuration("l1", 1e-4, "pre"), Configuration("l2", 1e-3, "pre"), Configuration("l2", 1e38, "pre")

    def run(configs, slots=0):
        results = fit_seeds(FitTask(DATA, MLP, train, "mean", configs, seeds, 1, slots=slots))
        return {(c, s): results[i * len(seeds) + j] for i, c in enumerate(configs) for j, s in enumerate(seeds)}

    alone = {**run((a,)), **run((b,))}
    for configs, slots in [((a, b), 0), ((b, bad, a), 0), ((a, b), 12)]:
        together = run(configs, slots)
        assert all(_same(together[k], alone[k]) for k in alone if k in together), (configs, slots)
        if bad in configs:
            assert all(together[(bad, s)].diverged_epoch is not None for s in seeds)
            assert all(together[(a, s)].diverged_epoch is None for s in seeds)


def test_the_test_rows_are_evaluated_at_the_recorded_epochs_only():
    """Recording every 4th epoch changes nothing in training: the recorded values are those of every epoch's."""
    every = fit_with_actreg(Configuration("l1", 1e-3, "pre"), [0, 1], TrainSpec(epochs=10, batch_size=8,
                                                                                  record_every=1))
    some = fit_with_actreg(Configuration("l1", 1e-3, "pre"), [0, 1], TrainSpec(epochs=10, batch_size=8,
                                                                                 record_every=4))
    assert some[0].recorded_epochs == (4, 8, 10) and every[0].recorded_epochs == tuple(range(1, 11))
    for e, s in zip(every, some):
        assert all(np.array_equal(w, v) for w, v in zip(e.weights, s.weights))
        for key in e.history:
            assert np.array_equal(e.history[key][[3, 7, 9]], s.history[key]), key
        assert (e.train, e.test) == (s.train, s.test)


def test_a_zero_penalty_adds_exactly_nothing_without_xla():
    """The baseline as a model of a regularized program, both factors zero, is the baseline bit for bit
    where the trainer does not compile with XLA (under XLA the rounding differs, so the baseline keeps a
    program of its own: see search.study.space.program_of)."""
    from search.engine.model import initial_state
    from search.engine.trainer import ChunkTrainer

    data, train, seeds = make_dataset(DATA), TrainSpec(epochs=8, batch_size=8), (0, 1)
    start = [initial_state(MLP, Configuration("none"), s, 2) for s in seeds]

    def fit(config, factors=None):
        built = build_model(MLP, config, "mean", 0, 2, train.learning_rate)
        trainer = ChunkTrainer(built.model, data, train, len(seeds), built.probes)
        assert not trainer.jit
        return trainer.fit([w for w, _ in start], seeds, initial_states=[s for _, s in start], factors=factors,
                           keep_weights=True)

    plain = fit(Configuration("none"))
    zero = fit(Configuration("l1", 1e-4, "post"), factors=np.zeros((2, 2), np.float32))
    for p, z in zip(plain, zero):
        assert _same(p, z) and all(np.array_equal(u, v) for u, v in zip(p.weights, z.weights))
