"""Models for ``[model] builder = "example_models:small_cnn"`` (see studies/digits-builder.toml).

A builder is any importable function with this signature (keyword arguments):

    def build(*, input_shape, n_outputs, regularizer, placement) -> keras.Model

- ``input_shape``: the shape of one input row, e.g. (8, 8, 1);
- ``n_outputs``: 1 for binary and regression, the number of classes for multiclass;
- ``regularizer``: the activity regularizer to put on every layer you want studied, as
  ``activity_regularizer=regularizer``; ``None`` for the baseline (norm "none");
- ``placement``: "pre" or "post" (``None`` for the baseline). For "pre", build the
  regularized layer linear and follow it with a ``keras.layers.Activation``; for "post",
  give the layer its activation. actreg measures sparsity on what follows the
  regularized layer under "pre" and on the layer itself under "post".

The model must end with the task's output (sigmoid for binary, softmax over
``n_outputs`` for multiclass, linear for regression); actreg compiles it with the study's
loss and Adam. It is built once per seed after ``keras.utils.set_random_seed(seed)``, so
draw its initial weights from Keras's initializers. The module is looked up first in the
study file's folder, then on the Python path.
"""

from __future__ import annotations

import keras


def regularized(layer_type, placement, regularizer, activation, **kwargs):
    """A layer carrying ``regularizer`` before ("pre") or after ("post") its activation, as a callable."""
    pre = regularizer is not None and placement == "pre"
    layer = layer_type(activation=None if pre else activation, activity_regularizer=regularizer, **kwargs)

    def apply(x):
        y = layer(x)
        return keras.layers.Activation(activation)(y) if pre else y

    return apply


def small_cnn(*, input_shape, n_outputs, regularizer, placement):
    """Two convolutions with the regularizer, a global pooling and a softmax."""
    inputs = keras.Input(input_shape)
    h = regularized(keras.layers.Conv2D, placement, regularizer, "relu", filters=8, kernel_size=3, padding="same")(inputs)
    h = regularized(keras.layers.Conv2D, placement, regularizer, "relu", filters=16, kernel_size=3)(h)
    h = keras.layers.GlobalAveragePooling2D()(h)
    outputs = keras.layers.Dense(n_outputs, activation="softmax")(h)
    return keras.Model(inputs, outputs)
