"""Each replicate's arrays: a source's rows (:mod:`search.study.sources`) split into train, test, validation.

Nothing is downloaded. Every dataset comes out as float32 arrays: inputs of shape
(n, *features) and targets of shape (n, 1), class labels as 0, 1, ... K - 1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from search.study.readers import DataError
from search.study.sources import SOURCES
from search.study.spec import DataSpec


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train, test and (optionally) validation arrays; inputs float32 of shape (n, *features), targets
    float32 of shape (n, 1).

    ``per_seed``: every array has a leading axis of replicates, one slice per seed of a chunk
    (see :func:`replicate_data`); all replicates have the same number of rows.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    x_validation: np.ndarray | None = None
    y_validation: np.ndarray | None = None
    per_seed: bool = False

    @property
    def n_classes(self) -> int:
        """Number of classes for label targets (largest label + 1)."""
        labels = [a for a in (self.y_train, self.y_test, self.y_validation) if a is not None]
        return int(max(a.max() for a in labels)) + 1

    def n_outputs(self, task: str) -> int:
        """Output units a model needs for ``task``: one per class for multiclass, else one."""
        return self.n_classes if task == "multiclass" else 1

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one input row."""
        return tuple(self.x_train.shape[2 if self.per_seed else 1:])

    @property
    def rows(self) -> tuple[int, int, int]:
        """Rows of the training, test and validation sets (of each replicate)."""
        axis = 1 if self.per_seed else 0
        return (self.x_train.shape[axis], self.x_test.shape[axis],
                0 if self.x_validation is None else self.x_validation.shape[axis])


@functools.lru_cache(maxsize=8)
def make_dataset(spec: DataSpec) -> Dataset:
    """Load or generate the data of ``spec`` and split it; raises :class:`DataError`.

    ``spec`` names one draw of the data: for a study that resamples, one replicate's
    (``spec.for_replicate(seed)``). Cached per process: workers that fit many
    configurations load it once.
    """
    if spec.resample != "none":
        raise ValueError("make_dataset takes one replicate's data: spec.for_replicate(seed)")
    source = SOURCES[spec.source]
    if source.own_split:
        x_train, y_train, x_test, y_test = source.load(spec)
        x_val = y_val = None
    else:
        x, y = _load(_sample_of(spec))
        train, test = _split(spec, len(x), y)
        train, val = _validation(spec, train, y)
        x_train, y_train, x_test, y_test = x[train], y[train], x[test], y[test]
        x_val, y_val = (None, None) if val is None else (x[val], y[val])
    if spec.standardize:
        # Statistics of the training rows only: the test and validation rows must not leak into training.
        mean = x_train.mean(axis=0, dtype=np.float64)
        std = x_train.std(axis=0, dtype=np.float64)
        std[std == 0] = 1.0
        x_train, x_test = (x_train - mean) / std, (x_test - mean) / std
        x_val = None if x_val is None else (x_val - mean) / std
    def inputs(a: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(a, dtype=np.float32)

    def labels(a: np.ndarray) -> np.ndarray:
        return np.asarray(a, dtype=np.float32).reshape(-1, 1)

    return _frozen(Dataset(inputs(x_train), labels(y_train), inputs(x_test), labels(y_test),
                           None if x_val is None else inputs(x_val), None if y_val is None else labels(y_val)))


def replicate_data(spec: DataSpec, seeds: tuple[int, ...]) -> Dataset:
    """The data of every seed's replicate (``spec.for_replicate(seed)``), stacked along a first axis.

    Each replicate is exactly what a study of that one draw trains on (standardized on its
    own training rows). Raises :class:`DataError`, also when replicates differ in size.
    """
    parts = [make_dataset(spec.for_replicate(seed)) for seed in seeds]
    shapes = {tuple(a.shape for a in (p.x_train, p.x_test)) for p in parts}
    if len(shapes) > 1:
        raise DataError("data.resample", f"replicates differ in size ({sorted(shapes)})")
    def stacked(name: str) -> np.ndarray:
        return np.stack([getattr(p, name) for p in parts])

    validated = parts[0].x_validation is not None
    return _frozen(Dataset(stacked("x_train"), stacked("y_train"), stacked("x_test"), stacked("y_test"),
                           stacked("x_validation") if validated else None,
                           stacked("y_validation") if validated else None, per_seed=True))


def _frozen(data: Dataset) -> Dataset:
    for a in (data.x_train, data.y_train, data.x_test, data.y_test, data.x_validation, data.y_validation):
        if a is not None:
            a.flags.writeable = False  # shared by every fit in the process
    return data


def _sample_of(spec: DataSpec) -> DataSpec:
    """``spec`` without what only splits the rows: the key of the loaded sample."""
    return replace(spec, n_train=None, test_size=None, split_seed=None, stratify=None, standardize=None,
                   validation=None)


@functools.lru_cache(maxsize=8)
def _load(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """The rows of the source (inputs, targets), before any split; read-only, shared by the splits of replicates."""
    x, y = SOURCES[spec.source].load(spec)
    x, y = np.asarray(x), np.asarray(y)
    x.flags.writeable = False
    y.flags.writeable = False
    return x, y


def _split(spec: DataSpec, n: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training and test row indices: the first ``n_train`` rows, ``n_train`` rows drawn from
    ``split_seed``, or a ``test_size`` split drawn from it (stratified when ``stratify``)."""
    if spec.test_size is None:
        n_train = spec.n_train
        assert n_train is not None, "a split without test_size has n_train"
        if not 0 < n_train < n:
            raise DataError("data.n_train", f"must be between 1 and the number of rows - 1 ({n - 1})")
        if spec.split_seed is None:
            return np.arange(n_train), np.arange(n_train, n)
        return _draw(np.arange(n), y, "data.n_train", spec.split_seed, spec.stratify, train_size=n_train)
    return _draw(np.arange(n), y, "data.test_size", spec.split_seed, spec.stratify, test_size=spec.test_size)


def _validation(spec: DataSpec, train: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``train`` without the validation rows, and the validation rows (drawn from ``split_seed``, else 0)."""
    if spec.validation is None:
        return train, None
    held = math.ceil(spec.validation * len(train))
    if held >= len(train):
        raise DataError("data.validation", f"leaves no training rows ({held} of {len(train)} held out)")
    return _draw(train, y[train], "data.validation", spec.split_seed or 0, bool(spec.stratify),
                 test_size=spec.validation)


def _draw(rows: np.ndarray, y: np.ndarray, key: str, seed: int | None, stratify: bool | None,
          **size: float) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``rows`` (stratified by ``y`` when ``stratify``), each part in row order."""
    from sklearn.model_selection import train_test_split

    if stratify:  # what scikit-learn would refuse, said in the study file's words
        classes, counts = np.unique(y, return_counts=True)
        n = len(rows)
        if "test_size" in size:
            t = size["test_size"]
            held = math.ceil(t * n) if isinstance(t, float) and t < 1 else int(t)
        else:
            t = size["train_size"]
            held = n - (math.floor(t * n) if isinstance(t, float) and t < 1 else int(t))
        if counts.min() < 2:
            raise DataError(key, f"class {classes[counts.argmin()]!s} has a single row of {n}: a classification "
                                 "split is stratified and needs two of every class; give more rows")
        if min(held, n - held) < len(classes):
            raise DataError(key, f"puts {min(held, n - held)} of {n} rows on one side, fewer than the "
                                 f"{len(classes)} classes a stratified split puts on each; give more rows to each "
                                 "side")
    try:
        first, second = train_test_split(rows, random_state=seed, stratify=y if stratify else None, **size)
    except ValueError as exc:  # anything else scikit-learn refuses: its words, with the key and the rows
        raise DataError(key, f"cannot split {len(rows)} rows so ({exc})") from None
    return np.sort(first), np.sort(second)


def check_targets(data: Dataset, task: str, n_outputs: int | None = None) -> None:
    """Targets must suit the task: labels 0/1 (binary), 0..K-1 (multiclass), numbers (regression)."""
    y = np.concatenate([a.ravel() for a in (data.y_train, data.y_test, data.y_validation) if a is not None])
    if task == "regression":
        return
    if not np.all(y == np.round(y)) or y.min() < 0:
        raise DataError("data", "class labels must be integers 0, 1, ...; "
                                "for numeric targets use model.loss = \"mse\"")
    if task == "binary" and y.max() > 1:
        raise DataError("data", f"binary_crossentropy needs labels 0 and 1, the data has {int(y.max()) + 1} classes; "
                                "use model.loss = \"sparse_categorical_crossentropy\"")
    if task == "multiclass" and n_outputs is not None and data.n_classes > n_outputs:
        raise DataError("model", f"the data has {data.n_classes} classes but the model has {n_outputs} outputs")
