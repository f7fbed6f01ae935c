"""The training engine: a configuration and its seeds in, per-seed results out.

:mod:`~search.engine.data` makes each replicate's arrays, :mod:`~search.engine.model` the
Keras models, :mod:`~search.engine.trainer` trains many seeds in one TensorFlow graph
(:mod:`~search.engine.vectorize` adds what ``vectorized_map`` lacks, through
:mod:`~search.engine.patches`, the one place that touches TensorFlow's and Keras's private
parts), :mod:`~search.engine.parallel` dispatches the work units through joblib and
:mod:`~search.engine.cluster` through Dask. :mod:`~search.engine.checks` tries a study on
its data before anything is stored; :mod:`~search.engine.runtime` sets up TensorFlow.
Names are imported on first use (TensorFlow takes seconds to import).
"""

from __future__ import annotations

from search._lazy import exports

_NAMES = {
    "Dataset": "data", "make_dataset": "data", "replicate_data": "data",
    "build_model": "model", "ChunkTrainer": "trainer", "SeedResult": "trainer", "train_seeds": "trainer",
    "FitFailure": "parallel", "FitPool": "parallel", "FitTask": "parallel", "chunk_seeds": "parallel",
    "fit_seeds": "parallel", "DaskPool": "cluster", "ClusterError": "cluster", "check_study": "checks",
}
__all__ = sorted(_NAMES)
__getattr__ = exports(__name__, _NAMES)
