"""The frozen specs of a study: what :mod:`search.study.parse` makes of a study file.

Everything downstream trusts them: they are validated once, at the edge. They know no
registry (layers, sources): those look the specs up, never the other way round.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from search.study.metrics import METRICS, TASK_METRICS
from search.study.validation import (
    check,
    job_count,
    scheduler_address,
    seed_list,
    storage_url,
)

NORMS = ("none", "l1", "l2", "l1_l2")
PLACEMENTS = ("pre", "post")
PENALTIES = ("mean", "sum")
SAMPLERS = ("grid", "tpe")
# What a replicate draws anew: nothing (one draw of the data for every seed), its train/test split, or its sample.
RESAMPLE = ("none", "split", "draw")
# The loss decides the task; the task decides the output layer and the metrics.
LOSSES = {"binary_crossentropy": "binary", "sparse_categorical_crossentropy": "multiclass", "mse": "regression"}
OPTIMIZERS = ("adam",)
# Fewer pairs of replicates than this make a comparison an anecdote (a verdict needs 30: results/stats.py).
MIN_PAIRS = 5
# Models per compiled program by default: the case-study MLP costs the same per model from 4 to 64
# models in one program, and more beyond (the activations of a program leave the cache).
MODELS_PER_PROGRAM = 64
# Activations of one program at most (an estimate from the layers' shapes): more configurations
# than fit it train in more programs, so that a grid of any size trains in bounded memory.
PROGRAM_BYTES = 1 << 30



@dataclass(frozen=True)
class DataSpec:
    """Where the data comes from and how it is split (see :mod:`search.engine.data`).

    Split: the first ``n_train`` rows train, or, with ``test_size``, a random split
    drawn from ``split_seed`` (stratified when ``stratify``); ``n_train`` with a
    ``split_seed`` draws that many training rows at random. ``validation`` (a fraction)
    carves validation rows out of the training rows, drawn from ``split_seed`` (0 when
    unset). Fields that do not apply to ``source`` are ``None``.

    ``resample`` says what each replicate (seed) draws anew: ``"none"``, one draw of the
    data for every seed; ``"split"``, replicate s splits with ``split_seed = s``;
    ``"draw"``, replicate s generates its sample with ``random_state = s``. The concrete
    data of replicate s is :meth:`for_replicate`.
    """

    source: str = "circles"
    n_samples: int | None = 100
    noise: float | None = 0.1
    random_state: int | None = 1
    n_train: int | None = 30
    factor: float | None = 0.8  # circles only: ratio of inner to outer radius
    test_size: float | None = None
    split_seed: int | None = None
    stratify: bool | None = None
    standardize: bool | None = None
    view: str | None = None  # digits only
    steps: int | None = None  # sequence only
    path: str | None = None  # csv and npz: an absolute path
    target: str | None = None  # csv only
    features: tuple[str, ...] | None = None  # csv only; None: every column but the target
    validation: float | None = None  # fraction of the training rows held out for selection
    resample: str = "none"

    def for_replicate(self, seed: int) -> DataSpec:
        """The fixed data of replicate ``seed``: itself without resampling, else the spec
        with its ``split_seed`` (``"split"``) or ``random_state`` (``"draw"``) set to ``seed``."""
        if self.resample == "split":
            return replace(self, resample="none", split_seed=seed)
        if self.resample == "draw":
            return replace(self, resample="none", random_state=seed)
        return self

    @property
    def variance_sources(self) -> str:
        """What varies between the replicates of a study, in words."""
        return {"none": "initialization and order (data fixed: one draw)",
                "split": "the train/test split, initialization and order (one sample of the data)",
                "draw": "data (a new sample per replicate), initialization and order"}[self.resample]


@dataclass(frozen=True)
class LayerSpec:
    """One layer of ``[model] layers``; options that do not apply to ``type`` are ``None``."""

    type: str
    units: int | None = None
    activation: str = "linear"
    regularize: bool = False
    filters: int | None = None
    kernel_size: tuple[int, int] | None = None
    strides: tuple[int, int] | None = None  # None: 1 for conv2d, pool_size for maxpool2d
    padding: str | None = None  # None: "valid"
    pool_size: tuple[int, int] | None = None
    rate: float | None = None
    return_sequences: bool | None = None


@dataclass(frozen=True)
class ModelSpec:
    """The layers, or ``builder`` ("package.module:function") for the user's own model.

    ``builder_path`` is the folder (the study file's) searched first for the builder's
    module; it is where the file lies, not what it computes, so fingerprints leave it out.
    """

    layers: tuple[LayerSpec, ...] = ()
    loss: str = "binary_crossentropy"
    builder: str | None = None
    builder_path: str | None = None

    @property
    def task(self) -> str:
        return LOSSES[self.loss]


@dataclass(frozen=True)
class TrainSpec:
    """Training loop settings; ``record_every`` is in epochs."""

    epochs: int = 4000
    batch_size: int = 32
    learning_rate: float = 0.001
    optimizer: str = "adam"
    shuffle: bool = True
    record_every: int = 0  # 0: about 100 recorded points over the run

    @property
    def record_step(self) -> int:
        return self.record_every or max(1, self.epochs // 100)

    @property
    def recorded_epochs(self) -> tuple[int, ...]:
        """1-based epochs at which curves are recorded: every :attr:`record_step` epochs and the last."""
        out = list(range(self.record_step, self.epochs + 1, self.record_step))
        if not out or out[-1] != self.epochs:
            out.append(self.epochs)
        return tuple(out)


@dataclass(frozen=True)
class FloatRange:
    """A continuous search range for the TPE sampler."""

    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class SpaceSpec:
    norm: tuple[str, ...] = NORMS
    strength: tuple[float, ...] | FloatRange = (1e-4,)
    placement: tuple[str, ...] = PLACEMENTS
    l1_ratio: tuple[float, ...] | FloatRange | None = None


@dataclass(frozen=True)
class Reference:
    """A published single-run result to set beside the measured distribution in reports."""

    norm: str
    train_accuracy: float | None
    test_accuracy: float
    strength: float | None = None
    placement: str | None = None
    l1_ratio: float | None = None
    source: str = ""


@dataclass(frozen=True)
class RaceSpec:
    """``[race]``: replicates added in looks until each configuration's verdict is known.

    Looks at ``min_replicates``, then at twice as many (or ``every`` more) up to
    ``max_replicates`` (by default every seed of the study). At each look every configuration
    still racing gets its verdict against the baseline with the error rate ``alpha`` held over
    looks and configurations (see :func:`search.results.race.race_decisions`); a decided
    configuration stops, the baseline goes on while any races. ``futility``: a configuration
    that could not reach a verdict by the last look even if its mean were this many standard
    errors closer to one stops as undecided; ``None``: it races to the end.
    """

    min_replicates: int = 5
    max_replicates: int | None = None
    every: int | None = None
    alpha: float = 0.05
    futility: float | None = 1.25

    def looks(self, seeds: int) -> tuple[int, ...]:
        """The number of replicates at each look, for a study of ``seeds`` seeds."""
        last = min(self.max_replicates or seeds, seeds)
        looks, n = [], self.min_replicates
        while n < last:
            looks.append(n)
            n = n + self.every if self.every else n * 2
        return (*looks, last)


@dataclass(frozen=True)
class StudySpec:
    """Everything a study needs; ``path`` is the study file it came from (or ``None``)."""

    name: str
    storage: str
    seeds: tuple[int, ...]
    data: DataSpec
    model: ModelSpec
    train: TrainSpec
    space: SpaceSpec
    n_jobs: int | None = None
    penalty: str = "mean"
    sampler: str = "grid"
    n_trials: int | None = None
    sampler_seed: int = 0
    chunk_size: int | None = None
    models_per_program: int | None = None  # None: MODELS_PER_PROGRAM
    race: RaceSpec | None = None  # [race]: replicates in looks until the verdicts are known
    references: tuple[Reference, ...] = ()
    path: str | None = None
    metric: str | None = None  # None: the task's first metric (accuracy, or r2 for regression)
    # How results are read, not what they are (left out of the fingerprint, like the references):
    rope: float | None = None  # region of practical equivalence in the metric's units; None: the metric's default
    # How runs behave, not what they compute (left out of the fingerprint, like storage and n_jobs):
    heartbeat_grace: int = 60  # seconds without a heartbeat after which a claimed configuration is retried
    max_failures: int = 3  # programs (their configurations) that may fail in one run before the run stops
    worker_retries: int = 2  # times a chunk of seeds is retried after its worker process died
    storage_patience: int = 300  # seconds a lost storage connection is retried before the run stops
    scheduler: str | None = None  # a Dask scheduler's address: the fits run on its cluster

    def configs_per_program(self, chunk: int, model_bytes: int | None = None) -> int:
        """How many configurations one compiled program trains together on chunks of ``chunk`` seeds:
        as many as ``models_per_program`` models allow, and as :data:`PROGRAM_BYTES` of activations
        allow at ``model_bytes`` per model (an estimate; at least one configuration). By default a
        chunk of one seed trains alone, on ``model.fit``'s own operations, bit for bit."""
        if self.models_per_program is None and chunk == 1:
            return 1
        models = self.models_per_program or MODELS_PER_PROGRAM
        if model_bytes:
            models = min(models, PROGRAM_BYTES // model_bytes)
        return max(1, models // chunk)

    @property
    def objective(self) -> str:
        """The metric whose mean test value is the trial value."""
        return self.metric or TASK_METRICS[self.model.task][0]

    @property
    def metrics(self) -> tuple[str, ...]:
        """Every metric recorded, the objective first."""
        rest = tuple(m for m in TASK_METRICS[self.model.task] if m != self.objective)
        return (self.objective, *rest)

    @property
    def maximize(self) -> bool:
        return not METRICS[self.objective].minimize

    def with_overrides(
        self,
        *,
        storage: str | None = None,
        n_jobs: int | None = None,
        seeds: int | None = None,
        epochs: int | None = None,
        scheduler: str | None = None,
    ) -> StudySpec:
        """Apply command-line overrides, validating them like the file's own keys."""
        spec = self
        src = "command line"
        if storage is not None:
            spec = replace(spec, storage=storage_url(storage, src, "--storage"))
        if n_jobs is not None:
            spec = replace(spec, n_jobs=job_count(n_jobs, src, "--n-jobs"))
        if seeds is not None:
            spec = replace(spec, seeds=seed_list(seeds, src, "--seeds"))
            if spec.race is not None:  # the file's own seeds were checked against [race] when it was read
                need = max(spec.race.min_replicates + 1, spec.race.max_replicates or 0)
                check(len(spec.seeds) >= need, src, "--seeds",
                      f"the race needs at least {need} seeds (race.min_replicates = {spec.race.min_replicates}"
                      + (f", race.max_replicates = {spec.race.max_replicates}" if spec.race.max_replicates else "")
                      + "): with fewer its first look would be its last")
        if epochs is not None:
            check(isinstance(epochs, int) and epochs > 0, src, "--epochs", "must be a positive integer")
            spec = replace(spec, train=replace(spec.train, epochs=epochs))
        if scheduler is not None:
            spec = replace(spec, scheduler=scheduler_address(scheduler, src, "--scheduler"))
        return spec

    @property
    def regularized_layers(self) -> tuple[int, ...]:
        return tuple(i for i, layer in enumerate(self.model.layers) if layer.regularize)
