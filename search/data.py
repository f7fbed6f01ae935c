"""Datasets that scikit-learn generates: nothing is downloaded."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from search.spec import DataSpec


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test arrays; inputs float32 of shape (n, features), targets float32 of shape (n, 1)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


@functools.lru_cache(maxsize=8)
def make_dataset(spec: DataSpec) -> Dataset:
    """Generate the data of ``spec``; the first ``n_train`` rows train, the rest test.

    Cached per process: workers that fit many configurations generate it once.
    """
    from sklearn import datasets

    if spec.source == "circles":
        x, y = datasets.make_circles(
            n_samples=spec.n_samples, noise=spec.noise, random_state=spec.random_state, factor=spec.factor
        )
    elif spec.source == "moons":
        x, y = datasets.make_moons(n_samples=spec.n_samples, noise=spec.noise, random_state=spec.random_state)
    else:  # the spec is validated; this guards against a new source without a generator
        raise ValueError(f"unknown data source {spec.source!r}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.float32).reshape(-1, 1)
    n = spec.n_train
    arrays = (x[:n], y[:n], x[n:], y[n:])
    for a in arrays:
        a.flags.writeable = False  # shared by every fit in the process
    return Dataset(*arrays)
