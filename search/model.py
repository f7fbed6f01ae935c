"""Keras models from specs: regularizers, penalty conventions and placement.

Placement, for a layer marked ``regularize = true``:

* ``pre``: the layer is linear and carries the activity regularizer; an ``Activation``
  layer follows, so the penalty sees the pre-activation values.
* ``post``: the layer has its activation and the regularizer sees the activated output.

Penalty conventions: Keras >= 3.14 divides an activity penalty by the batch size
(``"mean"``, also tf.keras 2). ``"sum"`` undoes that division, as in Keras 2.2 and
3.0-3.13, so the penalty is the plain sum over the batch.
"""

from __future__ import annotations

from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import ops

from search.space import Configuration
from search.spec import ModelSpec


@keras.saving.register_keras_serializable(package="actreg")
class ActivityPenalty(keras.regularizers.Regularizer):
    """Keras's ``L1``, ``L2`` and ``L1L2`` penalties, with their factors held in variables.

    It computes what ``keras.regularizers.L1L2(l1, l2)`` computes, with the same operations
    in the same order; ``L1(l1)`` and ``L2(l2)`` are the cases with one factor zero (the
    tests compare all three on a known tensor). Keeping the factors in variables lets one
    compiled trainer serve every norm and strength of a placement: :meth:`set` changes
    them between fits without recompiling. (Unlike ``L1``, an activation so large that
    its square overflows gives an infinite penalty; by then training has diverged.)

    With ``penalty = "sum"`` the penalty is multiplied by the batch size, which cancels
    the division that Keras >= 3.14 applies to every activity penalty.
    """

    def __init__(self, norm: str, penalty: str = "mean", l1: float = 0.0, l2: float = 0.0) -> None:
        if norm not in ("l1", "l2", "l1_l2"):
            raise ValueError(f"unknown norm {norm!r}")
        if penalty not in ("mean", "sum"):
            raise ValueError(f"unknown penalty convention {penalty!r}")
        self.norm, self.penalty = norm, penalty
        self.l1 = tf.Variable(l1, dtype=tf.float32, trainable=False, name="l1")
        self.l2 = tf.Variable(l2, dtype=tf.float32, trainable=False, name="l2")

    def set(self, l1: float, l2: float) -> None:
        self.l1.assign(l1)
        self.l2.assign(l2)

    def __call__(self, x):
        # Always both terms, whatever the norm: one compiled graph then serves every norm.
        # A zero factor adds exactly 0.0 to the value and to the gradient, so L1 alone gives
        # the bits of keras.regularizers.L1 (the tests compare them).
        reg = ops.convert_to_tensor(0.0, dtype=x.dtype)
        reg += self.l1 * ops.sum(ops.absolute(x))
        reg += self.l2 * ops.sum(ops.square(x))
        if self.penalty == "sum":
            reg = reg * ops.cast(ops.shape(x)[0], dtype=reg.dtype)
        return reg

    def get_config(self) -> dict:
        return {"norm": self.norm, "penalty": self.penalty, "l1": float(self.l1.numpy()), "l2": float(self.l2.numpy())}


def penalty_factors(config: Configuration) -> tuple[float, float]:
    """(l1, l2) of a configuration; ``l1_l2`` uses the strength for both unless ``l1_ratio`` splits it."""
    s = config.strength
    if config.norm == "l1":
        return s, 0.0
    if config.norm == "l2":
        return 0.0, s
    if config.norm == "l1_l2":
        if config.l1_ratio is None:
            return s, s
        return s * config.l1_ratio, s * (1.0 - config.l1_ratio)
    raise ValueError(f"no penalty factors for norm {config.norm!r}")


def make_regularizer(config: Configuration, penalty: str = "mean") -> ActivityPenalty | None:
    """The activity regularizer of ``config`` under the ``penalty`` convention (None: baseline)."""
    if config.is_baseline:
        return None
    l1, l2 = penalty_factors(config)
    return ActivityPenalty(config.norm, penalty, l1, l2)


@dataclass(frozen=True)
class BuiltModel:
    """A compiled model, the layers whose outputs are the regularized activations, and its regularizer."""

    model: keras.Model
    probes: tuple[str, ...]
    regularizer: ActivityPenalty | None


def build_model(spec: ModelSpec, config: Configuration, penalty: str, seed: int, n_features: int,
                learning_rate: float = 0.001, compile: bool = True) -> BuiltModel:
    """Build and compile the model of ``spec`` for ``config``, initialized from ``seed``.

    The weights are those of the same model built by hand after
    ``keras.utils.set_random_seed(seed)``, so a plain ``model.fit`` can be compared with it.
    """
    keras.utils.set_random_seed(seed)
    regularizer = make_regularizer(config, penalty)
    inputs = keras.Input((n_features,), name="x")
    h = inputs
    probes = []
    for i, layer in enumerate(spec.layers):
        name = f"{layer.type}_{i}"
        marked = layer.regularize
        reg = regularizer if marked else None
        if marked and reg is not None and config.placement == "pre":
            h = keras.layers.Dense(layer.units, activation=None, activity_regularizer=reg, name=name)(h)
            h = keras.layers.Activation(layer.activation, name=f"{name}_act")(h)
            probes.append(f"{name}_act")
        else:
            h = keras.layers.Dense(layer.units, activation=layer.activation, activity_regularizer=reg, name=name)(h)
            if marked:
                probes.append(name)
    model = keras.Model(inputs, h, name="actreg")
    if compile:
        model.compile(
            optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
            loss=spec.loss,
            metrics=["accuracy"],
        )
    return BuiltModel(model, tuple(probes), regularizer)


def initial_weights(spec: ModelSpec, seed: int, n_features: int) -> list:
    """Seed's initial weights: those of :func:`build_model` for any configuration.

    Placement adds or removes only weightless ``Activation`` layers, so every
    configuration draws the same initial weights for the same seed.
    """
    return build_model(spec, Configuration("none"), "mean", seed, n_features, compile=False).model.get_weights()
