"""``actreg bench``: the trainer's throughput against plain ``keras.Model.fit``, in one run.

Both train the case-study MLP (circles, Dense(500) with L1(1e-4) pre, Dense(1)), or
the model of a study file, on the same data in the same process. Reported in
microseconds per epoch per model:

* Keras: ``model.fit(..., validation_data=test)`` one model at a time, as the tutorial
  trains; measured after a warm-up epoch, so compilation is not counted.
* actreg: ``seeds`` seeds for ``epochs`` epochs through a study's own work unit
  (:func:`search.engine.parallel.fit_seeds`), split into chunks as a study splits them (at most 32
  seeds per graph), on trainers that an identical first pass compiled, so tracing, XLA
  compilation and drawing the seeds' initial weights (reported separately, per compiled
  trainer, as ``actreg_setup_seconds``) are not counted either; the test evaluation is,
  at the epochs a study records (``record_every``: by default every epochs/100, and the
  last; 1 evaluates every epoch, as ``fit`` with ``validation_data`` does). The best of
  ``repeats`` timed passes counts (the host's noise only ever adds time), as the
  Keras-on-JAX anchor in ``benchmarks/`` counts its own.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, replace

from search.study.space import Configuration, grid
from search.study.spec import DataSpec, LayerSpec, ModelSpec, StudySpec, TrainSpec

CASE_MODEL = ModelSpec((LayerSpec("dense", 500, "relu", True), LayerSpec("dense", 1, "sigmoid")))
CASE_CONFIG = Configuration("l1", 1e-4, "pre")


@dataclass(frozen=True)
class BenchResult:
    keras_fit_us_per_model_epoch: float
    actreg_us_per_model_epoch: float
    speedup: float
    seeds: int
    epochs: int
    cores: int
    keras_fit_epochs: int
    actreg_setup_seconds: float
    case: str = "case-study MLP"
    repeats: int = 1
    record_every: int = 0  # the trainer evaluated the test rows every so many epochs (and at the last)

    def as_dict(self) -> dict:
        return asdict(self)


def measure(epochs: int | None = None, seeds: int | None = None, fit_epochs: int = 20, cores: int | None = None,
            spec: StudySpec | None = None, repeats: int = 3, record_every: int | None = None) -> BenchResult:
    """Time both trainers; ``cores`` sizes TensorFlow's thread pools (default: all); actreg's
    best of ``repeats`` timed passes counts.

    Without ``spec``, the case-study MLP with 2000 epochs and 30 seeds by default. With
    ``spec``, its data, model, training settings and first regularized configuration,
    with its own epochs and seeds by default.
    """
    from search.engine import runtime

    cores = cores or os.cpu_count() or 1
    runtime.import_tensorflow()  # quietly; the pools are sized below, as a study's worker sizes them
    from search.engine.checks import check_study
    from search.engine.data import make_dataset
    from search.engine.model import build_model
    from search.engine.parallel import FitTask, chunk_seeds, fit_seeds
    from search.engine.trainer import op_threads

    if spec is None:
        data_spec = DataSpec()
        data = make_dataset(data_spec)
        model_spec, config, penalty, train = CASE_MODEL, CASE_CONFIG, "mean", TrainSpec(epochs=epochs or 2000)
        metrics: tuple[str, ...] = ("accuracy",)
        task, chunk_size, case = "binary", None, "case-study MLP"
        seeds = seeds or 30
    else:
        data_spec, data = spec.data, check_study(spec)
        configs = grid(spec.space) if spec.sampler == "grid" else [Configuration("none")]
        config = next((c for c in configs if not c.is_baseline), configs[0])
        model_spec, penalty, chunk_size = spec.model, spec.penalty, spec.chunk_size
        train = replace(spec.train, epochs=epochs or spec.train.epochs)
        task, metrics, case = spec.model.task, spec.metrics, f"study {spec.name}, {config.label}"
        seeds = seeds or len(spec.seeds)
    if record_every is not None:
        train = replace(train, record_every=record_every)
    chunks = chunk_seeds(list(range(seeds)), chunk_size)
    runtime.configure(cores, op_threads(cores, model_spec, train, len(data.x_train), len(chunks[0])))
    shape = data.x_train.shape[1:]
    model = build_model(model_spec, config, penalty, 0, shape, train.learning_rate,
                        n_outputs=data.n_outputs(task)).model
    keras_us = _keras_fit_us(model, data, train.batch_size, fit_epochs)

    # The study's own work unit on the study's chunks: the first pass compiles a trainer per
    # chunk size and draws the initial weights (both cached by the worker, as in a study);
    # the next ``repeats`` passes are timed.
    tasks = [FitTask(data_spec, model_spec, train, penalty, (config,), chunk, cores, metrics)
             for chunk in chunks]
    warm, steady = _timed_pass(tasks, fit_seeds), float("inf")
    for _ in range(repeats):
        steady = min(steady, _timed_pass(tasks, fit_seeds))
    actreg_us = steady / train.epochs / seeds * 1e6
    n_trainers = len({len(t.seeds) for t in tasks})
    setup = max(0.0, (warm - steady) / n_trainers)
    return BenchResult(
        keras_fit_us_per_model_epoch=round(keras_us, 1),
        actreg_us_per_model_epoch=round(actreg_us, 2),
        speedup=round(keras_us / actreg_us, 1),
        seeds=seeds, epochs=train.epochs, cores=cores, keras_fit_epochs=fit_epochs,
        actreg_setup_seconds=round(setup, 2), case=case, repeats=repeats, record_every=train.record_step,
    )


def _timed_pass(tasks, fit_seeds) -> float:
    """Seconds to fit every task once."""
    start = time.perf_counter()
    for t in tasks:
        fit_seeds(t)
    return time.perf_counter() - start


def _keras_fit_us(model, data, batch_size: int, epochs: int) -> float:
    """Microseconds per epoch of ``model.fit`` with validation every epoch, after a warm-up epoch."""
    fit_args = {"batch_size": batch_size, "verbose": 0, "validation_data": (data.x_test, data.y_test)}
    model.fit(data.x_train, data.y_train, epochs=1, **fit_args)  # warm-up: compile the train and test steps
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, epochs=epochs, **fit_args)
    return (time.perf_counter() - start) / epochs * 1e6


def format_result(r: BenchResult) -> str:
    return "\n".join([
        f"{r.case}, {r.cores} cores",
        f"keras model.fit : {r.keras_fit_us_per_model_epoch:12.1f} us per model-epoch ({r.keras_fit_epochs} epochs)",
        (f"actreg trainer  : {r.actreg_us_per_model_epoch:12.2f} us per model-epoch ({r.seeds} seeds x "
         f"{r.epochs} epochs, test rows every {r.record_every} epochs, best of {r.repeats}, "
         f"+ {r.actreg_setup_seconds:.1f} s to compile a trainer)"),
        f"speedup         : {r.speedup:12.1f} x",
    ])
