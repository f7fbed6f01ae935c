from __future__ import annotations

import numpy as np
import pytest

from search.engine import runtime

runtime.configure(2)
import keras  # noqa: E402

from search.engine.model import build_model, make_regularizer, one_reduction  # noqa: E402
from search.study.space import Configuration  # noqa: E402
from search.study.spec import LayerSpec, ModelSpec  # noqa: E402

MLP = ModelSpec((LayerSpec("dense", 5, "relu", True), LayerSpec("dense", 1, "sigmoid")))


def layer_summary(model):
    return [(type(layer).__name__, getattr(layer, "activation", None) and layer.activation.__name__,
             layer.activity_regularizer is not None) for layer in model.layers[1:]]


def test_pre_placement_is_linear_regularized_then_activation():
    built = build_model(MLP, Configuration("l1", 1e-4, "pre"), "mean", 0, 2)
    assert layer_summary(built.model) == [
        ("Dense", "linear", True), ("Activation", "relu", False), ("Dense", "sigmoid", False)]
    assert built.probes == ("dense_0_act",)


def test_post_placement_regularizes_the_activated_output():
    built = build_model(MLP, Configuration("l1", 1e-4, "post"), "mean", 0, 2)
    assert layer_summary(built.model) == [("Dense", "relu", True), ("Dense", "sigmoid", False)]
    assert built.probes == ("dense_0",)


def test_baseline_has_no_regularizer_but_probes_the_marked_layer():
    built = build_model(MLP, Configuration("none"), "mean", 0, 2)
    assert layer_summary(built.model) == [("Dense", "relu", False), ("Dense", "sigmoid", False)]
    assert built.probes == ("dense_0",)


def test_same_seed_same_initial_weights():
    a = build_model(MLP, Configuration("none"), "mean", 3, 2).model
    b = build_model(MLP, Configuration("none"), "mean", 3, 2).model
    c = build_model(MLP, Configuration("none"), "mean", 4, 2).model
    assert all(np.array_equal(x, y) for x, y in zip(a.get_weights(), b.get_weights()))
    assert not np.array_equal(a.get_weights()[0], c.get_weights()[0])


X = np.array([[0.5, -1.0, 0.0], [2.0, 0.25, -3.0]], dtype="float32")


@pytest.mark.parametrize("config,reference", [
    (Configuration("l1", 0.01, "post"), keras.regularizers.L1(0.01)),
    (Configuration("l2", 0.01, "post"), keras.regularizers.L2(0.01)),
    (Configuration("l1_l2", 0.01, "post"), keras.regularizers.L1L2(l1=0.01, l2=0.01)),
    (Configuration("l1_l2", 0.01, "post", l1_ratio=0.25), keras.regularizers.L1L2(l1=0.0025, l2=0.0075)),
])
@pytest.mark.parametrize("penalty", ["mean", "sum"])
def test_layer_penalty_equals_keras_regularizer_under_each_convention(config, reference, penalty):
    """The loss a layer records is Keras's own penalty; divided by the batch size for "mean"."""
    ours = make_regularizer(config, penalty)
    if penalty == "mean":  # the same operations as Keras's regularizer, so the same bits
        assert float(ours(X)) == float(reference(X))
    layer = keras.layers.Activation("linear", activity_regularizer=ours)
    layer(X)
    (recorded,) = layer.losses
    expected = float(reference(X))
    if penalty == "mean":
        expected /= X.shape[0]
    np.testing.assert_allclose(float(recorded), expected, rtol=1e-6)
    hand = {"l1": 0.01 * 6.75, "l2": 0.01 * 14.3125}.get(config.norm)
    if hand is not None:  # the regularizers themselves, against arithmetic by hand
        np.testing.assert_allclose(float(reference(X)), hand, rtol=1e-6)


@pytest.mark.parametrize("config", [Configuration("l1", 0.01, "pre"), Configuration("l2", 0.01, "pre"),
                                    Configuration("l1_l2", 0.01, "pre", l1_ratio=0.25)])
@pytest.mark.parametrize("penalty", ["mean", "sum"])
def test_one_reduction_form_is_the_same_penalty(config, penalty):
    """The form XLA graphs trace: the same value, rounded differently."""
    reg = make_regularizer(config, penalty)
    exact = float(reg(X))
    with one_reduction():
        fused = float(reg(X))
    assert float(reg(X)) == exact  # the form holds only inside the context
    np.testing.assert_allclose(fused, exact, rtol=1e-6)


def test_regularizer_of_baseline_is_none():
    assert make_regularizer(Configuration("none")) is None


def test_changing_the_factors_changes_the_penalty():
    reg = make_regularizer(Configuration("l1", 0.01, "pre"))
    reg.set(0.5, 0.0)
    assert float(reg(X)) == float(keras.regularizers.L1(0.5)(X))


def test_conv_pre_and_post_and_layers_without_activation():
    L = LayerSpec
    cnn = ModelSpec((L("conv2d", filters=3, kernel_size=(3, 3), activation="relu", regularize=True),
                     L("maxpool2d", pool_size=(2, 2), regularize=True), L("flatten"),
                     L("dense", 4, "softmax")), "sparse_categorical_crossentropy")
    pre = build_model(cnn, Configuration("l2", 1e-3, "pre"), "mean", 0, (8, 8, 1))
    assert layer_summary(pre.model) == [
        ("Conv2D", "linear", True), ("Activation", "relu", False), ("MaxPooling2D", None, True),
        ("Flatten", None, False), ("Dense", "softmax", False)]
    assert pre.probes == ("conv2d_0_act", "maxpool2d_1")
    post = build_model(cnn, Configuration("l2", 1e-3, "post"), "mean", 0, (8, 8, 1))
    assert layer_summary(post.model) == [
        ("Conv2D", "relu", True), ("MaxPooling2D", None, True), ("Flatten", None, False), ("Dense", "softmax", False)]
    assert post.probes == ("conv2d_0", "maxpool2d_1")
