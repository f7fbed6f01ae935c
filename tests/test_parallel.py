"""The work unit's pure parts: how seeds are chunked, and the workers' LRU caches."""

from __future__ import annotations

from collections import OrderedDict

import pytest

from search.engine.parallel import MAX_CHUNK, _cached, chunk_seeds


@pytest.mark.parametrize("n, limit, sizes", [
    (30, None, [30]),  # up to MAX_CHUNK seeds share one graph
    (33, None, [17, 16]),  # balanced: workers finish together
    (30, 16, [15, 15]),  # not 16 + 14
    (30, 8, [8, 8, 7, 7]),
    (5, 1, [1, 1, 1, 1, 1]),
    (1, 32, [1]),
    (0, 4, [0]),
])
def test_chunks_are_balanced_consecutive_and_cover_every_seed_once(n, limit, sizes):
    seeds = list(range(100, 100 + n))
    chunks = chunk_seeds(seeds, limit)
    assert [len(c) for c in chunks] == sizes
    assert [s for c in chunks for s in c] == seeds
    assert all(len(c) <= (limit or MAX_CHUNK) for c in chunks)


def test_chunking_depends_on_the_seeds_and_chunk_size_only():
    assert chunk_seeds([5, 3, 9, 1], 2) == [(5, 3), (9, 1)]  # the study's order, not sorted
    with pytest.raises(ValueError, match="positive"):
        chunk_seeds([1, 2], -1)


def test_the_cache_keeps_the_most_recently_used():
    cache: OrderedDict = OrderedDict()
    made = []

    def make(key):
        made.append(key)
        return key * 10

    assert _cached(cache, ("a",), 2, lambda: make("a")) == "a" * 10
    _cached(cache, ("b",), 2, lambda: make("b"))
    _cached(cache, ("a",), 2, lambda: make("a"))  # a hit: "a" becomes the most recent
    _cached(cache, ("c",), 2, lambda: make("c"))  # evicts "b", the least recently used
    assert list(cache) == [("a",), ("c",)] and made == ["a", "b", "c"]
    _cached(cache, ("b",), 2, lambda: make("b"))
    assert made == ["a", "b", "c", "b"] and list(cache) == [("c",), ("b",)]


@pytest.mark.slow
@pytest.mark.parametrize("epochs, intra", [(1000, 2), (3, 1)], ids=["xla", "graph"])
def test_a_worker_sizes_its_pools_for_the_graph_its_chunks_train_in(epochs, intra):
    """The work unit, in a fresh process with 2 threads, before TensorFlow runs anything; and
    quietly (TensorFlow's log lines are hidden before it is imported)."""
    import os
    import subprocess
    import sys

    code = f"""
from search.engine.parallel import FitTask, fit_seeds
from search.study.space import Configuration
from search.study.spec import DataSpec, LayerSpec, ModelSpec, TrainSpec
model = ModelSpec((LayerSpec("dense", 8, "relu", True), LayerSpec("dense", 1, "sigmoid")))
task = FitTask(DataSpec(), model, TrainSpec(epochs={epochs}), "mean", Configuration("l1", 1e-4, "pre"),
               (0, 1), threads=2)
assert len(fit_seeds(task)) == 2
import tensorflow as tf
print(tf.config.threading.get_inter_op_parallelism_threads(), tf.config.threading.get_intra_op_parallelism_threads())
"""
    env = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.split() == ["2", str(intra)]
    assert "I0000" not in proc.stderr and "oneDNN" not in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_the_numbers_do_not_depend_on_the_threads_that_split_an_operation():
    """A chunk's numbers are the same bits with 1 or 2 threads per operation, as ``n_jobs`` sets
    them. (With TensorFlow's oneDNN kernels, which actreg turns off, every loss of this XLA
    chunk changed between the two.)"""
    epochs = 1000  # XLA_MIN_STEPS: the chunk trains under XLA
    import subprocess
    import sys

    code = f"""
import sys
from search.engine import runtime
from search.engine.parallel import fit_seeds, FitTask
from search.study.space import Configuration
from search.study.spec import DataSpec, LayerSpec, ModelSpec, TrainSpec
runtime.configure(2, int(sys.argv[1]))
model = ModelSpec((LayerSpec("dense", 500, "relu", True), LayerSpec("dense", 1, "sigmoid")))
task = FitTask(DataSpec(), model, TrainSpec(epochs={epochs}), "mean", Configuration("l1", 1e-4, "pre"), (0, 1, 2))
print([(r.train["loss"].hex(), r.test["loss"].hex()) for r in fit_seeds(task)])
"""
    outs = {}
    for op in (1, 2):
        proc = subprocess.run([sys.executable, "-c", code, str(op)], capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        outs[op] = proc.stdout.strip()
    assert outs[1] == outs[2]


@pytest.mark.slow
def test_a_task_submitted_after_a_worker_died_goes_to_a_new_pool():
    """A worker dies, loky marks its pool broken, and the runner submits its next task before
    ``wait`` has collected the dead worker's future: the task goes to a new pool, and the lost
    one is retried (this race once ended a run with loky's TerminatedWorkerError)."""
    import os
    import signal
    import time

    from conftest import wait_until_training, worker_pids

    from search.engine.parallel import FitFailure, FitPool, FitTask
    from search.study.space import Configuration
    from search.study.spec import DataSpec, LayerSpec, ModelSpec, TrainSpec

    def task(epochs: int) -> FitTask:
        model = ModelSpec((LayerSpec("dense", 8, "relu", True), LayerSpec("dense", 1, "sigmoid")))
        return FitTask(DataSpec(), model, TrainSpec(epochs=epochs), "mean", Configuration("l1", 1e-4, "pre"), (0, 1))

    from joblib.externals.loky import get_reusable_executor

    # Workers of its own: the idle ones an earlier test left would be killed in its place (and loky
    # replaces an idle worker without breaking the pool), and the test waited out its deadline.
    get_reusable_executor().shutdown(wait=True, kill_workers=True)
    said = []
    pool = FitPool(2, retries=2, on_retry=said.append)
    try:
        pool.submit("long", task(3000))  # 3 s after its worker starts it is still importing or compiling
        deadline = time.monotonic() + 120
        while not worker_pids(os.getpid()) and time.monotonic() < deadline:
            time.sleep(0.1)
        wait_until_training(worker_pids(os.getpid()), deadline)  # the task is running
        for pid in worker_pids(os.getpid()):  # the one fitting the task among them: loky may replace an idle one
            os.kill(pid, signal.SIGKILL)  # quietly, without breaking the pool
        (lost,) = pool._futures
        while not lost.done() and time.monotonic() < deadline:  # loky has marked the pool broken
            time.sleep(0.1)
        pool.submit("next", task(3))
        results = {}
        while len(pool):
            results.update(pool.wait())
    finally:
        pool.close()
    assert set(results) == {"long", "next"}
    assert not [r for r in results.values() if isinstance(r, FitFailure)], results
    assert len(said) == 1 and said[0].startswith("a worker process died")
