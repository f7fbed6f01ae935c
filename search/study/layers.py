"""Layer kinds of ``[model] layers``: one record per kind, which every step looks up.

A kind says which table keys it takes and how they are read, whether it has an activation
(only then do the "pre" and "post" placements differ), whether the trainer may compile it
with XLA, how its output shape follows from its input's, how Keras builds it and how a
report names it. Adding a layer kind is adding one entry to :data:`LAYERS`, and its tests.

Nothing here imports Keras until a model is built, so that the CLI rejects a bad study
file in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from search.study.validation import check, choice, get, given, pair, positive

if TYPE_CHECKING:
    from search.study.spec import LayerSpec

Shape = tuple[int, ...]
# Validated without importing Keras.
ACTIVATIONS = (
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "softplus", "softsign",
    "elu", "selu", "gelu", "silu", "swish", "leaky_relu", "mish", "exponential", "softmax",
)
PADDINGS = ("valid", "same")


@dataclass(frozen=True)
class LayerKind:
    """Everything actreg knows of one layer type.

    ``parse(item, source, key)`` reads the layer's own keys (``keys``) from its table into
    :class:`~search.study.spec.LayerSpec` fields, raising :class:`~search.study.validation.SpecError`.
    ``shape(layer, input_shape)`` is the output shape without the batch axis, or raises
    ``ValueError`` with the problem in words. ``build(layer, activation, regularizer, name)``
    returns the Keras layer (``activation`` is ``None`` where an ``Activation`` layer follows).
    ``describe(layer)`` gives its arguments in words.
    """

    keys: frozenset[str]
    parse: Callable[[Mapping[str, Any], str, str], dict[str, Any]]
    shape: Callable[[LayerSpec, Shape], Shape]
    build: Callable[[LayerSpec, str | None, Any, str], Any]
    describe: Callable[[LayerSpec], str]
    activated: bool = False  # has an activation: "pre" puts the regularizer before it
    internal_activation: bool = False  # its activations are inside it (recurrent): "pre" is refused
    xla: str | None = None  # the Keras class name, where the trainer may compile the layer with XLA
    xla_min_steps: int = 0  # with this layer, XLA only from this many training steps per fit (compiling costs more)


def _keras_layers():
    import keras

    return keras.layers


# ----------------------------------------------------------------------------- shapes


def _needs(what: str, axes: tuple[str, ...]) -> Callable[[str, Shape], None]:
    def need(kind: str, shape: Shape) -> None:
        if len(shape) != len(axes):
            raise ValueError(f"{kind} needs {what} inputs ({', '.join(axes)}), but gets shape {shape}; "
                             f'with digits use data.view = "{what}"')
    return need


_image = _needs("image", ("height", "width", "channels"))
_sequence = _needs("sequence", ("steps", "features"))


def _window(shape: Shape, window: tuple[int, int], strides: tuple[int, int], padding: str | None) -> list[int]:
    """Height and width after sliding ``window`` over ``shape`` with ``strides``, as Keras computes them."""
    size = []
    for d, k, st in zip(shape[:2], window, strides):
        n = -(-d // st) if padding == "same" else (d - k) // st + 1 if d >= k else 0
        if n <= 0:
            raise ValueError(f"a window of {window} does not fit inputs of shape {shape}")
        size.append(n)
    return size


def _flat(shape: Shape) -> Shape:
    n = 1
    for d in shape:
        n *= d
    return (n,)


def _recurrent_shape(kind: str) -> Callable[[LayerSpec, Shape], Shape]:
    def shape(layer: LayerSpec, s: Shape) -> Shape:
        _sequence(kind, s)
        units = given(layer.units, "units")
        return (s[0], units) if layer.return_sequences else (units,)
    return shape


def _conv_shape(layer: LayerSpec, s: Shape) -> Shape:
    _image("conv2d", s)
    return (*_window(s, given(layer.kernel_size, "kernel_size"), layer.strides or (1, 1), layer.padding),
            given(layer.filters, "filters"))


def _pool_shape(layer: LayerSpec, s: Shape) -> Shape:
    _image("maxpool2d", s)
    pool = given(layer.pool_size, "pool_size")
    return (*_window(s, pool, layer.strides or pool, layer.padding), s[2])


# ----------------------------------------------------------------------------- parsing


def _units(item: Mapping[str, Any], s: str, key: str) -> dict[str, Any]:
    return {"units": positive(item, s, f"{key}.units", required=True)}


def _activation(item: Mapping[str, Any], s: str, key: str) -> dict[str, Any]:
    return {"activation": choice(item.get("activation", "linear"), s, f"{key}.activation", ACTIVATIONS)}


def _window_options(item: Mapping[str, Any], s: str, key: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "strides" in item:
        out["strides"] = pair(item["strides"], s, f"{key}.strides")
    if "padding" in item:
        out["padding"] = choice(item["padding"], s, f"{key}.padding", PADDINGS)
    return out


def _parse_conv(item: Mapping[str, Any], s: str, key: str) -> dict[str, Any]:
    check("kernel_size" in item, s, f"{key}.kernel_size", "is required")
    return {"filters": positive(item, s, f"{key}.filters", required=True),
            "kernel_size": pair(item["kernel_size"], s, f"{key}.kernel_size"),
            **_activation(item, s, key), **_window_options(item, s, key)}


def _parse_recurrent(item: Mapping[str, Any], s: str, key: str) -> dict[str, Any]:
    return {**_units(item, s, key), "activation": "tanh",
            "return_sequences": get(item, s, f"{key}.return_sequences", bool, default=False)}


def _parse_dropout(item: Mapping[str, Any], s: str, key: str) -> dict[str, Any]:
    rate = get(item, s, f"{key}.rate", float, required=True)
    check(0 <= rate < 1, s, f"{key}.rate", "must be in [0, 1)")
    return {"rate": rate}


def _recurrent(keras_class: str) -> LayerKind:
    """An LSTM-like layer: units and return_sequences; regularized on its output."""
    def build(layer: LayerSpec, activation: str | None, reg: Any, name: str) -> Any:
        cls = getattr(_keras_layers(), keras_class)
        return cls(layer.units, return_sequences=bool(layer.return_sequences), activity_regularizer=reg, name=name)

    return LayerKind(
        keys=frozenset({"units", "return_sequences"}), parse=_parse_recurrent,
        shape=_recurrent_shape(keras_class.lower()), build=build,
        describe=lambda layer: f"{layer.units}{', sequences' if layer.return_sequences else ''}",
        internal_activation=True)


# XLA compiles a convolution's trainer about 2 s longer than TensorFlow traces it, and with one
# thread per worker (a study's default) runs a digits-cnn step only about 1.15x faster: it pays
# from about this many steps per fit (see docs/performance.md).
def _by(window: tuple[int, int] | None) -> str:
    """``3x3``: a window's size in words."""
    rows, columns = given(window, "window")
    return f"{rows}x{columns}"


CONV_XLA_MIN_STEPS = 5000

LAYERS: dict[str, LayerKind] = {
    "dense": LayerKind(
        keys=frozenset({"units", "activation"}),
        parse=lambda item, s, key: {**_units(item, s, key), **_activation(item, s, key)},
        shape=lambda layer, s: (*s[:-1], given(layer.units, "units")),
        build=lambda layer, act, reg, name: _keras_layers().Dense(
            layer.units, activation=act, activity_regularizer=reg, name=name),
        describe=lambda layer: f"{layer.units}, {layer.activation}",
        activated=True, xla="Dense"),
    "conv2d": LayerKind(
        keys=frozenset({"filters", "kernel_size", "strides", "padding", "activation"}),
        parse=_parse_conv,
        shape=_conv_shape,
        build=lambda layer, act, reg, name: _keras_layers().Conv2D(
            layer.filters, layer.kernel_size, strides=layer.strides or (1, 1), padding=layer.padding or "valid",
            activation=act, activity_regularizer=reg, name=name),
        describe=lambda layer: f"{layer.filters}, {_by(layer.kernel_size)}, {layer.activation}",
        activated=True, xla="Conv2D", xla_min_steps=CONV_XLA_MIN_STEPS),
    "maxpool2d": LayerKind(
        keys=frozenset({"pool_size", "strides", "padding"}),
        parse=lambda item, s, key: {"pool_size": pair(item.get("pool_size", 2), s, f"{key}.pool_size"),
                                    **_window_options(item, s, key)},
        shape=_pool_shape,
        build=lambda layer, act, reg, name: _keras_layers().MaxPooling2D(
            layer.pool_size, strides=layer.strides, padding=layer.padding or "valid", activity_regularizer=reg,
            name=name),
        describe=lambda layer: _by(layer.pool_size), xla="MaxPooling2D"),
    "flatten": LayerKind(
        keys=frozenset(),
        parse=lambda item, s, key: {},
        shape=lambda layer, s: _flat(s),
        build=lambda layer, act, reg, name: _keras_layers().Flatten(activity_regularizer=reg, name=name),
        describe=lambda layer: "", xla="Flatten"),
    "dropout": LayerKind(
        keys=frozenset({"rate"}),
        parse=_parse_dropout,
        shape=lambda layer, s: s,
        build=lambda layer, act, reg, name: _keras_layers().Dropout(layer.rate, activity_regularizer=reg, name=name),
        describe=lambda layer: f"{layer.rate}"),
    "lstm": _recurrent("LSTM"),
    "gru": _recurrent("GRU"),
}
