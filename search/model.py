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
from keras import ops

from search.space import Configuration
from search.spec import ModelSpec


@keras.saving.register_keras_serializable(package="actreg")
class BatchSum(keras.regularizers.Regularizer):
    """Wraps a regularizer so that, after Keras divides by the batch size, the sum remains."""

    def __init__(self, inner: keras.regularizers.Regularizer) -> None:
        self.inner = inner

    def __call__(self, x):
        batch = ops.cast(ops.shape(x)[0], dtype=x.dtype)
        return self.inner(x) * batch

    def get_config(self) -> dict:
        return {"inner": keras.regularizers.serialize(self.inner)}

    @classmethod
    def from_config(cls, config: dict) -> BatchSum:
        return cls(keras.regularizers.deserialize(config["inner"]))


def make_regularizer(config: Configuration, penalty: str = "mean") -> keras.regularizers.Regularizer | None:
    """The Keras activity regularizer of ``config`` under the ``penalty`` convention."""
    if config.is_baseline:
        return None
    s = config.strength
    if config.norm == "l1":
        reg = keras.regularizers.L1(s)
    elif config.norm == "l2":
        reg = keras.regularizers.L2(s)
    elif config.norm == "l1_l2":
        if config.l1_ratio is None:
            reg = keras.regularizers.L1L2(l1=s, l2=s)
        else:
            reg = keras.regularizers.L1L2(l1=s * config.l1_ratio, l2=s * (1.0 - config.l1_ratio))
    else:
        raise ValueError(f"unknown norm {config.norm!r}")
    if penalty == "sum":
        return BatchSum(reg)
    if penalty != "mean":
        raise ValueError(f"unknown penalty convention {penalty!r}")
    return reg


@dataclass(frozen=True)
class BuiltModel:
    """A compiled model and the names of the layers whose output is each regularized activation."""

    model: keras.Model
    probes: tuple[str, ...]


def build_model(spec: ModelSpec, config: Configuration, penalty: str, seed: int, n_features: int,
                learning_rate: float = 0.001) -> BuiltModel:
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
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate=learning_rate),
        loss=spec.loss,
        metrics=["accuracy"],
    )
    return BuiltModel(model, tuple(probes))
