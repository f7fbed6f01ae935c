"""Checks of a study against its data, before anything runs or is written.

The study file is validated on its own in :mod:`search.study.spec`; what needs the data (its
shape, its labels) is checked here, and reported the same way: one :class:`SpecError`
naming the file, the key and the problem.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from search.engine.data import DataError, Dataset, check_targets, make_dataset
from search.study.layers import LAYERS
from search.study.spec import LayerSpec, StudySpec
from search.study.validation import SpecError


def check_study(spec: StudySpec) -> Dataset:
    """Load the data of ``spec`` and check that its model can train on it; returns the data (of the
    first seed's replicate, when each replicate draws its own: they all have its shapes)."""
    src = spec.path or "<study>"
    try:
        data = make_dataset(spec.data.for_replicate(spec.seeds[0]))
        n_outputs = None
        if spec.model.builder is None:
            shape = output_shape(spec.model.layers, data.x_train.shape[1:], src)
            n_outputs = shape[-1]
        check_targets(data, spec.model.task, n_outputs)
    except DataError as exc:
        raise SpecError(src, exc.key, exc.problem) from None
    if spec.model.builder is not None:
        from search.engine import runtime

        runtime.configure(runtime.threads_per_worker(1))  # quiet logs; this process may train next (n_jobs = 1)
        from search.engine.model import BuilderError, check_builder

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
        try:
            shape = LAYERS[layer.type].shape(layer, shape)
        except ValueError as exc:
            raise SpecError(src, f"model.layers[{i}]", str(exc)) from None
    if len(shape) != 1:
        raise SpecError(src, f"model.layers[{len(layers) - 1}]",
                        f"the model's output has shape {shape}; add a flatten layer or return_sequences = false")
    return shape


def activation_bytes(spec: StudySpec, rows: tuple[int, int, int], input_shape: tuple[int, ...]) -> int | None:
    """An estimate of one model's activations in a program, in bytes: every layer's outputs over the
    largest set of rows evaluated at once (the training rows at the end, the test rows at recorded
    epochs), three times (forward values, gradients, fused temporaries); ``None`` for a builder's
    model, whose layers are known only once built. It bounds how many models share a program."""
    if spec.model.builder is not None:
        return None
    shape, floats = tuple(int(d) for d in input_shape), 0
    for layer in spec.model.layers:
        shape = LAYERS[layer.type].shape(layer, shape)
        floats += math.prod(shape)
    return 4 * 3 * max(rows) * floats
