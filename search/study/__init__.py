"""The study definition: a study file becomes frozen specs, and the specs the configurations.

Pure and light (no numpy, TensorFlow or Optuna at import): the CLI rejects a bad file in
milliseconds. The way down: :mod:`~search.study.parse` reads the file with the registries
(:mod:`~search.study.layers`, :mod:`~search.study.sources`, :mod:`~search.study.metrics`)
and the checks of :mod:`~search.study.validation` into the dataclasses of
:mod:`~search.study.spec`; :mod:`~search.study.space` turns a space into configurations.
"""

from __future__ import annotations

from search.study.layers import LAYERS, LayerKind
from search.study.metrics import METRICS, TASK_METRICS, Metric
from search.study.parse import load_spec, parse_spec
from search.study.readers import DataError
from search.study.sources import SOURCES, Source
from search.study.space import Configuration, grid, iter_param_names
from search.study.spec import (
    DataSpec,
    FloatRange,
    LayerSpec,
    ModelSpec,
    Reference,
    SpaceSpec,
    StudySpec,
    TrainSpec,
)
from search.study.validation import SpecError

__all__ = [
    "LAYERS",
    "METRICS",
    "SOURCES",
    "TASK_METRICS",
    "Configuration",
    "DataError",
    "DataSpec",
    "FloatRange",
    "LayerKind",
    "LayerSpec",
    "Metric",
    "ModelSpec",
    "Reference",
    "Source",
    "SpaceSpec",
    "SpecError",
    "StudySpec",
    "TrainSpec",
    "grid",
    "iter_param_names",
    "load_spec",
    "parse_spec",
]
