"""Process-level set-up for TensorFlow: quiet logs, sized thread pools, versions.

Workers inherit nothing implicitly: each one calls :func:`configure` with the thread
count that the parent computed, before TensorFlow runs its first operation.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata

_configured: int | None = None


def threads_per_worker(n_jobs: int, cores: int | None = None) -> int:
    """Threads for each of ``n_jobs`` workers so that together they use ``cores`` cores."""
    cores = cores or os.cpu_count() or 1
    return max(1, cores // max(1, n_jobs))


def resolve_n_jobs(n_jobs: int | None) -> int:
    """``None`` or -1 mean all cores."""
    if n_jobs is None or n_jobs == -1:
        return os.cpu_count() or 1
    return n_jobs


def configure(threads: int, op_threads: int | None = None) -> None:
    """Size TensorFlow's pools for this process (once; later calls no-op): ``threads`` run
    independent operations side by side (inter-op), ``op_threads`` (default ``threads``)
    split one operation's work (intra-op).

    A graph of many small operations, as the trainer runs without XLA, is faster with
    ``op_threads = 1``: splitting an operation of a few microseconds costs more than it
    saves (see :func:`search.engine.trainer.op_threads`). TensorFlow fixes its pools when it runs
    its first operation; a process that already ran one keeps the pools it has.
    """
    global _configured
    tf = import_tensorflow()
    if _configured is not None:
        return

    try:
        tf.config.threading.set_intra_op_parallelism_threads(op_threads or threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:  # TensorFlow already initialized in this process
        pass
    # Each fit compiles its own graph, on purpose; TensorFlow's retracing advice is noise here.
    tf.get_logger().setLevel("ERROR")
    _configured = threads


def import_tensorflow():
    """Import TensorFlow; at log level 3 its import-time banner lines are dropped too.

    TensorFlow 2.21 prints them (oneDNN, missing CUDA drivers) before its log level applies.
    Only file descriptor 2 is silenced, and only during the import: an import error still
    raises with its message. The log level is 3 unless the environment says otherwise.
    """
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")  # also hides cuInit noise on CPU-only hosts
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "3":
        import tensorflow

        return tensorflow
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            import tensorflow
    finally:
        os.dup2(saved, 2)
        os.close(saved)
    return tensorflow


def versions() -> dict[str, str]:
    """Versions of the libraries that determine the numbers (read without importing them)."""
    out = {"python": platform.python_version()}
    for dist in ("keras", "tensorflow", "tensorflow-cpu", "numpy", "scikit-learn", "optuna"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    if "tensorflow-cpu" in out:
        out.setdefault("tensorflow", out.pop("tensorflow-cpu"))
    return out
