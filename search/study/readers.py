"""How the rows of a source are read: the user's CSV and NPZ files, the generated adding problem.

The loaders of :data:`search.study.sources.SOURCES` call these; each problem with the
data is a :class:`DataError` naming the study-file key at fault. numpy and pandas are
imported when a reader is first called, so that the CLI rejects a bad study file in
milliseconds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from search.study.validation import given

if TYPE_CHECKING:
    import numpy as np

    from search.study.spec import DataSpec


class DataError(ValueError):
    """The data named by a study file cannot be used; ``key`` is the study-file key at fault."""

    def __init__(self, key: str, problem: str) -> None:
        self.key, self.problem = key, problem
        super().__init__(f"{key}: {problem}")


def adding_task(n: int, steps: int, random_state: int) -> tuple[np.ndarray, np.ndarray]:
    """The adding problem as a classification: is the sum of the two marked values above 1?

    Each sample is ``steps`` steps of (value ~ U(0, 1), marker); the markers are 1 at two
    random steps, one in each half, and 0 elsewhere. A model must remember the marked
    values across the sequence; the two classes are balanced (the sum of two U(0, 1) is
    above 1 half the time).
    """
    import numpy as np

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


def read_csv(spec: DataSpec) -> tuple[np.ndarray, np.ndarray]:
    """Features and target columns of the user's CSV file; raises :class:`DataError`."""
    import numpy as np
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
    import numpy as np

    path = given(spec.path, "data.path")
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
