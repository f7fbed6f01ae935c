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

import contextlib
import threading
from dataclasses import dataclass

import keras
import tensorflow as tf
from keras import ops

from search.engine import patches
from search.study.layers import LAYERS
from search.study.metrics import METRICS, TASK_METRICS
from search.study.space import Configuration
from search.study.spec import LOSSES, ModelSpec


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
        # The factors of the model being traced, where a trainer of several models gives each its own.
        l1, l2 = getattr(_FORM, "factors", None) or (self.l1, self.l2)
        # Always both terms, whatever the norm: one compiled graph then serves every norm.
        if getattr(_FORM, "one_reduction", False):
            reg = ops.sum(l1 * ops.absolute(x) + l2 * ops.square(x))
        else:
            # A zero factor adds exactly 0.0 to the value and to the gradient, so L1 alone
            # gives the bits of keras.regularizers.L1 (the tests compare them).
            reg = ops.convert_to_tensor(0.0, dtype=x.dtype)
            reg += l1 * ops.sum(ops.absolute(x))
            reg += l2 * ops.sum(ops.square(x))
        if self.penalty == "sum":
            reg = reg * ops.cast(ops.shape(x)[0], dtype=reg.dtype)
        return reg

    def get_config(self) -> dict:
        return {"norm": self.norm, "penalty": self.penalty, "l1": float(self.l1.numpy()), "l2": float(self.l2.numpy())}


_FORM = threading.local()


@contextlib.contextmanager
def model_factors(l1, l2):
    """Within it, every :class:`ActivityPenalty` traced uses the factors ``l1`` and ``l2`` (tensors)
    instead of its own variables: the trainer traces each model of a program inside it with the
    model's own factors, so that one graph trains several configurations at once."""
    before = getattr(_FORM, "factors", None)
    _FORM.factors = (l1, l2)
    try:
        yield
    finally:
        _FORM.factors = before


def penalties(model) -> list[ActivityPenalty]:
    """The distinct :class:`ActivityPenalty` regularizers on ``model``'s layers."""
    found: list[ActivityPenalty] = []
    for layer in model.layers:
        reg = getattr(layer, "activity_regularizer", None)
        if isinstance(reg, ActivityPenalty) and all(reg is not r for r in found):
            found.append(reg)
    return found


@contextlib.contextmanager
def one_reduction():
    """Within it, every :class:`ActivityPenalty` traced sums both terms in one reduction.

    ``sum(l1 * |x| + l2 * x**2)`` is the same penalty as Keras's two sums, rounded
    differently. XLA compiles it much better: on the case-study MLP, a separate sum of
    squares costs about 40% of a training step even when its factor is zero. The trainer
    traces its XLA graphs inside this; the others keep Keras's operations (one seed then
    matches ``fit`` bit for bit). The choice is made when a graph is traced, so it holds for
    the graph's lifetime.
    """
    before = getattr(_FORM, "one_reduction", False)
    _FORM.one_reduction = True
    try:
        yield
    finally:
        _FORM.one_reduction = before


# Recurrent layers over more steps than this stay loops when unrolled() traces them.
MAX_UNROLLED_STEPS = 64


@contextlib.contextmanager
def unrolled(model):
    """Within it, ``model``'s recurrent layers (LSTM, GRU, SimpleRNN) over at most
    :data:`MAX_UNROLLED_STEPS` known time steps trace unrolled, one cell call per step.

    Each step computes what the loop's iteration computes; the gradients add the steps'
    contributions in another order, so the numbers may differ in the last bits. The trainer
    traces chunks of several seeds inside this (``vectorized_map`` vectorizes a loop at a
    cost larger than the step); one seed keeps ``fit``'s loop. The layers are restored on
    exit.
    """
    changed = []
    for layer in model.layers:
        if getattr(layer, "unroll", None) is not False:
            continue
        try:
            steps = layer.input.shape[1]
        except (AttributeError, ValueError, IndexError):  # not called once on a known input
            continue
        if steps is not None and steps <= MAX_UNROLLED_STEPS:
            layer.unroll = True
            changed.append(layer)
    try:
        yield
    finally:
        for layer in changed:
            layer.unroll = False


def penalty_factors(config: Configuration) -> tuple[float, float]:
    """(l1, l2) of a configuration; ``l1_l2`` uses the strength for both unless ``l1_ratio`` splits it."""
    s = config.strength
    assert s is not None, "a regularized configuration has a strength"
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


class BuilderError(ValueError):
    """The user's model builder cannot be imported, or returned something unusable."""


@dataclass(frozen=True)
class BuiltModel:
    """A compiled model, the layers whose outputs are the regularized activations, and its regularizer."""

    model: keras.Model
    probes: tuple[str, ...]
    regularizer: ActivityPenalty | None


def compile_model(model: keras.Model, loss: str, learning_rate: float) -> None:
    """Compile as the trainer computes: Adam, the loss, and the task's metrics."""
    metrics = [METRICS[m].keras() for m in TASK_METRICS[LOSSES[loss]]]
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=learning_rate), loss=loss, metrics=metrics)


def build_model(spec: ModelSpec, config: Configuration, penalty: str, seed: int,
                input_shape: int | tuple[int, ...], learning_rate: float = 0.001, compile: bool = True,  # noqa: A002 - Keras's word
                n_outputs: int = 1) -> BuiltModel:
    """Build (and compile) the model of ``spec`` for ``config``, initialized from ``seed``.

    The weights are those of the same model built by hand after
    ``keras.utils.set_random_seed(seed)``, so a plain ``model.fit`` can be compared with it.
    ``n_outputs`` is used by a builder; layer lists name their output units themselves.
    """
    shape = (input_shape,) if isinstance(input_shape, int) else tuple(input_shape)
    with patches.thread_seeded(seed):
        regularizer = make_regularizer(config, penalty)
        if spec.builder is not None:
            model, probes = _from_builder(spec, shape, n_outputs, regularizer, config.placement)
        else:
            model, probes = _from_layers(spec, shape, regularizer, config.placement)
    if compile:
        compile_model(model, spec.loss, learning_rate)
    return BuiltModel(model, probes, regularizer)


def _from_layers(spec: ModelSpec, shape: tuple[int, ...], regularizer: ActivityPenalty | None,
                 placement: str | None) -> tuple[keras.Model, tuple[str, ...]]:
    L = keras.layers
    inputs = keras.Input(shape, name="x")
    h = inputs
    probes = []
    for i, layer in enumerate(spec.layers):
        kind = LAYERS[layer.type]
        name = f"{layer.type}_{i}"
        reg = regularizer if layer.regularize else None
        # Only layers with an activation have a "pre"; the others (and a recurrent layer, whose
        # "pre" the spec refuses) carry the regularizer on their output under either placement.
        pre = reg is not None and placement == "pre" and kind.activated
        h = kind.build(layer, None if pre else layer.activation, reg, name)(h)
        if pre:
            h = L.Activation(layer.activation, name=f"{name}_act")(h)
        if layer.regularize:
            probes.append(f"{name}_act" if pre else name)
    return keras.Model(inputs, h, name="actreg"), tuple(probes)


def load_builder(spec: ModelSpec):
    """The user's builder function named by ``spec.builder`` ("package.module:function")."""
    import importlib
    import sys

    assert spec.builder is not None, "a model from a builder names it"
    module_name, _, func_name = spec.builder.partition(":")
    if spec.builder_path and spec.builder_path not in sys.path:
        sys.path.insert(0, spec.builder_path)
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # noqa: BLE001 - any error while importing the user's module is theirs to fix
        raise BuilderError(f"cannot import {module_name!r} ({type(exc).__name__}: {exc})") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise BuilderError(f"module {module_name!r} has no function {func_name!r}")
    return fn


def _from_builder(spec: ModelSpec, shape: tuple[int, ...], n_outputs: int, regularizer: ActivityPenalty | None,
                  placement: str | None) -> tuple[keras.Model, tuple[str, ...]]:
    fn = load_builder(spec)
    try:
        model = fn(input_shape=shape, n_outputs=n_outputs, regularizer=regularizer, placement=placement)
    except Exception as exc:  # noqa: BLE001 - the user's builder: any error is theirs, in one line
        raise BuilderError(f"{spec.builder} raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, keras.Model):
        raise BuilderError(f"{spec.builder} returned {type(model).__name__}, not a keras.Model")
    probes = []
    if regularizer is not None:
        layers = model.layers
        for i, layer in enumerate(layers):
            if getattr(layer, "activity_regularizer", None) is regularizer:
                follows = layers[i + 1] if i + 1 < len(layers) else None
                pre = placement == "pre" and isinstance(follows, keras.layers.Activation)
                probes.append(follows.name if pre and follows is not None else layer.name)
        if not probes:
            raise BuilderError(f"{spec.builder} put the regularizer on no layer "
                               "(pass it as activity_regularizer=regularizer)")
    return model, tuple(probes)


def check_builder(spec: ModelSpec, data, placements: tuple[str, ...] = ("pre", "post")) -> None:
    """Build the user's model once per placement and check it against the data; raises :class:`BuilderError`."""
    task = LOSSES[spec.loss]
    n_outputs = data.n_outputs(task)
    for config in [Configuration("none"), *(Configuration("l1", 1e-4, p) for p in placements)]:
        model = build_model(spec, config, "mean", 0, data.x_train.shape[1:], compile=False, n_outputs=n_outputs).model
        try:
            out = model(data.x_train[:2])
        except Exception as exc:  # noqa: BLE001 - the user's model: any error is theirs, in one line
            raise BuilderError(f"the model of {spec.builder} cannot take inputs of shape "
                               f"{data.x_train.shape[1:]} ({type(exc).__name__}: {exc})") from None
        if tuple(out.shape[1:]) != (n_outputs,):
            raise BuilderError(f"the model of {spec.builder} has outputs of shape {tuple(out.shape[1:])}, "
                               f"the {task} task needs ({n_outputs},)")


def initial_state(spec: ModelSpec, config: Configuration, seed: int, input_shape: int | tuple[int, ...],
                  n_outputs: int = 1) -> tuple[list, list]:
    """Seed's initial trainable variables and other state (e.g. dropout's seed), as numpy arrays.

    Placement adds or removes only weightless ``Activation`` layers, so with a layer list
    every configuration draws the same initial weights for the same seed.
    """
    model = build_model(spec, config, "mean", seed, input_shape, compile=False, n_outputs=n_outputs).model
    return [v.numpy() for v in model.trainable_variables], [v.numpy() for v in model.non_trainable_variables]
