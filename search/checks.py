"""Checks of a study against its data, before anything runs or is written.

The study file is validated on its own in :mod:`search.spec`; what needs the data (its
shape, its labels) is checked here, and reported the same way: one :class:`SpecError`
naming the file, the key and the problem.
"""

from __future__ import annotations

from collections.abc import Sequence

from search.data import DataError, Dataset, check_targets, make_dataset
from search.spec import LayerSpec, SpecError, StudySpec


def check_study(spec: StudySpec) -> Dataset:
    """Load the data of ``spec`` and check that its model can train on it; returns the data."""
    src = spec.path or "<study>"
    try:
        data = make_dataset(spec.data)
        n_outputs = None
        if spec.model.builder is None:
            shape = output_shape(spec.model.layers, data.x_train.shape[1:], src)
            n_outputs = shape[-1]
        check_targets(data, spec.model.task, n_outputs)
    except DataError as exc:
        raise SpecError(src, exc.key, exc.problem) from None
    if spec.model.builder is not None:
        from search import runtime

        runtime.configure(runtime.threads_per_worker(1))  # quiet logs; this process may train next (n_jobs = 1)
        from search.model import BuilderError, check_builder

        try:
            check_builder(spec.model, data, spec.space.placement)
        except BuilderError as exc:
            raise SpecError(src, "model.builder", str(exc)) from None
    return data


def output_shape(layers: Sequence[LayerSpec], input_shape: tuple[int, ...], src: str = "<study>") -> tuple[int, ...]:
    """The shape (without the batch axis) that ``layers`` turn ``input_shape`` into.

    Raises :class:`SpecError` at the first layer that cannot take its input.
    """
    shape = tuple(int(d) for d in input_shape)
    for i, layer in enumerate(layers):
        key = f"model.layers[{i}]"
        if layer.type in ("conv2d", "maxpool2d") and len(shape) != 3:
            raise SpecError(src, key, f"{layer.type} needs image inputs (height, width, channels), but gets "
                                      f"shape {shape}; with digits use data.view = \"image\"")
        if layer.type == "lstm" and len(shape) != 2:
            raise SpecError(src, key, f"lstm needs sequence inputs (steps, features), but gets shape {shape}; "
                                      "with digits use data.view = \"sequence\"")
        if layer.type == "dense":
            shape = (*shape[:-1], layer.units)
        elif layer.type in ("conv2d", "maxpool2d"):
            window = layer.kernel_size if layer.type == "conv2d" else layer.pool_size
            strides = layer.strides or ((1, 1) if layer.type == "conv2d" else layer.pool_size)
            size = []
            for d, k, st in zip(shape[:2], window, strides):
                n = -(-d // st) if layer.padding == "same" else (d - k) // st + 1 if d >= k else 0
                if n <= 0:
                    raise SpecError(src, key, f"a window of {window} does not fit inputs of shape {shape}")
                size.append(n)
            shape = (*size, layer.filters if layer.type == "conv2d" else shape[2])
        elif layer.type == "flatten":
            n = 1
            for d in shape:
                n *= d
            shape = (n,)
        elif layer.type == "lstm":
            shape = (shape[0], layer.units) if layer.return_sequences else (layer.units,)
    if len(shape) != 1:
        raise SpecError(src, f"model.layers[{len(layers) - 1}]",
                        f"the model's output has shape {shape}; add a flatten layer or return_sequences = false")
    return shape
