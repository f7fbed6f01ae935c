"""``actreg bench``: the trainer's throughput against plain ``keras.Model.fit``, in one run.

Both train the case-study MLP (circles, Dense(500) with L1(1e-4) pre, Dense(1)) on
the same data in the same process. Reported in microseconds per epoch per model:

* Keras: ``model.fit(..., validation_data=test)`` one model at a time, as the tutorial
  trains; measured after a warm-up epoch, so compilation is not counted.
* actreg: ``seeds`` seeds for ``epochs`` epochs, split into chunks as a study splits them
  (at most 32 seeds per graph), by trainers that an identical first fit compiled, so tracing
  and XLA compilation (reported separately, per compiled trainer, as
  ``actreg_setup_seconds``) are not counted either; the per-epoch test evaluation is.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass

from search.space import Configuration
from search.spec import DataSpec, LayerSpec, ModelSpec, TrainSpec

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

    def as_dict(self) -> dict:
        return asdict(self)


def measure(epochs: int = 2000, seeds: int = 30, fit_epochs: int = 20, cores: int | None = None) -> BenchResult:
    """Time both trainers; ``cores`` sizes TensorFlow's thread pools (default: all)."""
    from search import runtime

    cores = cores or os.cpu_count() or 1
    runtime.configure(cores)
    from search.data import make_dataset
    from search.model import build_model
    from search.parallel import chunk_seeds
    from search.trainer import ChunkTrainer

    data = make_dataset(DataSpec())
    model = build_model(CASE_MODEL, CASE_CONFIG, "mean", 0, 2).model
    fit_args = dict(batch_size=32, verbose=0, validation_data=(data.x_test, data.y_test))
    model.fit(data.x_train, data.y_train, epochs=1, **fit_args)  # warm-up: compile the train and test steps
    start = time.perf_counter()
    model.fit(data.x_train, data.y_train, epochs=fit_epochs, **fit_args)
    keras_us = (time.perf_counter() - start) / fit_epochs * 1e6

    # Seeds are split into chunks as a study splits them (at most MAX_CHUNK per graph).
    chunks = chunk_seeds(list(range(seeds)))
    weights = {s: build_model(CASE_MODEL, CASE_CONFIG, "mean", s, 2, compile=False).model.get_weights()
               for s in range(seeds)}
    trainers = {}
    warm_seeds = 0
    start = time.perf_counter()
    for chunk in chunks:  # compile one trainer per chunk size, and warm it with a full fit
        if len(chunk) not in trainers:
            built = build_model(CASE_MODEL, CASE_CONFIG, "mean", chunk[0], 2)
            trainers[len(chunk)] = ChunkTrainer(built.model, data, TrainSpec(epochs=epochs), len(chunk), built.probes)
            trainers[len(chunk)].fit([weights[s] for s in chunk], chunk)
            warm_seeds += len(chunk)
    warm = time.perf_counter() - start
    start = time.perf_counter()
    for chunk in chunks:
        trainers[len(chunk)].fit([weights[s] for s in chunk], chunk)
    steady = time.perf_counter() - start
    actreg_us = steady / epochs / seeds * 1e6
    setup = max(0.0, (warm - warm_seeds * epochs * actreg_us / 1e6) / len(trainers))
    return BenchResult(
        keras_fit_us_per_model_epoch=round(keras_us, 1),
        actreg_us_per_model_epoch=round(actreg_us, 2),
        speedup=round(keras_us / actreg_us, 1),
        seeds=seeds, epochs=epochs, cores=cores, keras_fit_epochs=fit_epochs,
        actreg_setup_seconds=round(setup, 2),
    )


def format_result(r: BenchResult) -> str:
    return "\n".join([
        f"case-study MLP, {r.cores} cores",
        f"keras model.fit : {r.keras_fit_us_per_model_epoch:12.1f} us per model-epoch ({r.keras_fit_epochs} epochs)",
        f"actreg trainer  : {r.actreg_us_per_model_epoch:12.2f} us per model-epoch ({r.seeds} seeds x {r.epochs} epochs,"
        f" + {r.actreg_setup_seconds:.1f} s to compile a trainer)",
        f"speedup         : {r.speedup:12.1f} x",
    ])
