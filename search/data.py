"""Datasets: ones that ship with scikit-learn or are generated, and the user's CSV or NPZ files.

Nothing is downloaded. Every dataset comes out as float32 arrays: inputs of shape
(n, *features) and targets of shape (n, 1), class labels as 0, 1, ... K - 1.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, replace

import numpy as np

from search.sources import SOURCES
from search.spec import DataSpec


class DataError(ValueError):
    """The data named by a study file cannot be used; ``key`` is the study-file key at fault."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


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
    inputs = [None if a is None else np.ascontiguousarray(a, dtype=np.float32) for a in (x_train, x_test, x_val)]
    labels = [None if a is None else np.asarray(a, dtype=np.float32).reshape(-1, 1) for a in (y_train, y_test, y_val)]
    return _frozen(Dataset(inputs[0], labels[0], inputs[1], labels[1], inputs[2], labels[2]))


def replicate_data(spec: DataSpec, seeds: tuple[int, ...]) -> Dataset:
    """The data of every seed's replicate (``spec.for_replicate(seed)``), stacked along a first axis.

    Each replicate is exactly what a study of that one draw trains on (standardized on its
    own training rows). Raises :class:`DataError`, also when replicates differ in size.
    """
    parts = [make_dataset(spec.for_replicate(seed)) for seed in seeds]
    shapes = {tuple(a.shape for a in (p.x_train, p.x_test)) for p in parts}
    if len(shapes) > 1:
        raise DataError("data.resample", f"replicates differ in size ({sorted(shapes)})")
    names = ("x_train", "y_train", "x_test", "y_test", "x_validation", "y_validation")
    arrays = [None if getattr(parts[0], n) is None else np.stack([getattr(p, n) for p in parts]) for n in names]
    return _frozen(Dataset(*arrays, per_seed=True))


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


def adding_task(n: int, steps: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem as a classification: is the sum of the two marked values above 1?

    Each sample is ``steps`` steps of (value ~ U(0, 1), marker); the markers are 1 at two
    random steps, one in each half, and 0 elsewhere. A model must remember the marked
    values across the sequence; the two classes are balanced (the sum of two U(0, 1) is
    above 1 half the time).
    """
    rng = np.random.default_rng(random_state)
    values = rng.uniform(0.0, 1.0, size=(n, steps))
    half = steps // 2
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, steps, size=n)
    markers = np.zeros((n, steps))
    markers[np.arange(n), first] = 1.0
    markers[np.arange(n), second] = 1.0
    total = values[np.arange(n), first] + values[np.arange(n), second]
    return np.stack([values, markers], axis=-1), (total > 1.0).astype(np.int64)


def _split(spec: DataSpec, n: int, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Training and test row indices: the first ``n_train`` rows, ``n_train`` rows drawn from
    ``split_seed``, or a ``test_size`` split drawn from it (stratified when ``stratify``)."""
    if spec.test_size is None:
        if not 0 < spec.n_train < n:
            raise DataError("data.n_train", f"must be between 1 and the number of rows - 1 ({n - 1})")
        if spec.split_seed is None:
            return np.arange(spec.n_train), np.arange(spec.n_train, n)
        return _draw(np.arange(n), y, "data.n_train", spec.split_seed, spec.stratify, train_size=spec.n_train)
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


def _draw(rows: np.ndarray, y: np.ndarray, key: str, seed: int, stratify: bool | None,
          **size: float | int) -> tuple[np.ndarray, np.ndarray]:
    """A seeded random split of ``rows`` (stratified by ``y`` when ``stratify``), each part in row order."""
    from sklearn.model_selection import train_test_split

    try:
        first, second = train_test_split(rows, random_state=seed, stratify=y if stratify else None, **size)
    except ValueError as exc:  # e.g. a class with a single row cannot be stratified
        raise DataError(key, str(exc)) from None
    return np.sort(first), np.sort(second)


def read_csv(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Features and target columns of the user's CSV file; raises :class:`DataError`."""
    import pandas as pd

    try:
        frame = pd.read_csv(spec.path)
    except (OSError, ValueError, UnicodeDecodeError) as exc:  # pandas' ParserError is a ValueError
        raise DataError("data.path", f"cannot read {spec.path} as CSV ({_one_line(exc)})") from None
    if spec.target not in frame.columns:
        raise DataError("data.target", f"no column {spec.target!r} in {spec.path}")
    features = list(spec.features) if spec.features else [c for c in frame.columns if c != spec.target]
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise DataError("data.features", f"no column {missing[0]!r} in {spec.path}")
    if not features:
        raise DataError("data.features", f"{spec.path} has no column besides the target")
    for column in [*features, spec.target]:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            raise DataError("data.features" if column != spec.target else "data.target",
                            f"column {column!r} of {spec.path} is not numeric")
        if values.isna().any():
            raise DataError("data.features" if column != spec.target else "data.target",
                            f"column {column!r} of {spec.path} has missing values "
                            f"(row {int(values.isna().to_numpy().argmax()) + 2} of the file)")
        infinite = ~np.isfinite(values.to_numpy(np.float64))
        if infinite.any():
            raise DataError("data.features" if column != spec.target else "data.target",
                            f"column {column!r} of {spec.path} has an infinite value "
                            f"(row {int(infinite.argmax()) + 2} of the file)")
    return frame[features].to_numpy(np.float64), frame[spec.target].to_numpy()


def read_npz(spec: DataSpec) -> tuple[np.ndarray, ...]:
    """``x_train, y_train, x_test, y_test`` of the user's NPZ file; raises :class:`DataError`."""
    path = spec.path
    names = ("x_train", "y_train", "x_test", "y_test")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [n for n in names if n not in f.files]
            if missing:
                raise DataError("data.path", f"{path} lacks the array {missing[0]!r} (needs {', '.join(names)})")
            arrays = {n: f[n] for n in names}
    except DataError:
        raise
    except Exception as exc:  # noqa: BLE001 - numpy raises many kinds (EOFError, BadZipFile, ValueError, ...)
        raise DataError("data.path", f"cannot read {path} as NPZ ({_one_line(exc) or type(exc).__name__})") from None
    for n, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise DataError("data.path", f"{path}: {n} has dtype {a.dtype}, not numbers")
        if a.ndim == 0 or len(a) == 0:
            raise DataError("data.path", f"{path}: {n} is empty")
        if not np.all(np.isfinite(a)):
            raise DataError("data.path", f"{path}: {n} has NaN or infinite values")
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if len(x) != len(y):
            raise DataError("data.path", f"{path}: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
        if y.ndim > 2 or (y.ndim == 2 and y.shape[1] != 1):
            raise DataError("data.path", f"{path}: y_{split} must have shape (n,) or (n, 1), not {y.shape}")
    if arrays["x_train"].shape[1:] != arrays["x_test"].shape[1:]:
        raise DataError("data.path", f"{path}: x_train rows have shape {arrays['x_train'].shape[1:]} but x_test "
                                     f"rows {arrays['x_test'].shape[1:]}")
    if arrays["x_train"].ndim == 1:
        raise DataError("data.path", f"{path}: x_train must have shape (n, features...), not {arrays['x_train'].shape}")
    return tuple(arrays[n] for n in names)


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


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
