"""Study files: TOML in, frozen and validated specs out.

A study file is validated once, here, at the edge; everything downstream trusts the
specs it receives. Every problem is reported as a :class:`SpecError` that names the
file, the offending key (as a dotted path such as ``model.layers[0].units``) and what
is wrong with it.
"""

from __future__ import annotations

import math
import os
import tomllib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

NORMS = ("none", "l1", "l2", "l1_l2")
PLACEMENTS = ("pre", "post")
PENALTIES = ("mean", "sum")
SAMPLERS = ("grid", "tpe")
DATA_SOURCES = ("circles", "moons")
LAYER_TYPES = ("dense",)
LOSSES = ("binary_crossentropy",)
OPTIMIZERS = ("adam",)
# Validated without importing Keras so that the CLI rejects a bad file in milliseconds.
ACTIVATIONS = (
    "linear", "relu", "relu6", "sigmoid", "hard_sigmoid", "tanh", "softplus", "softsign",
    "elu", "selu", "gelu", "silu", "swish", "leaky_relu", "mish", "exponential",
)


class SpecError(ValueError):
    """A study file or option is invalid; ``str()`` is the one-line message for users."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


@dataclass(frozen=True)
class DataSpec:
    """A dataset that scikit-learn generates; the first ``n_train`` rows train."""

    source: str = "circles"
    n_samples: int = 100
    noise: float = 0.1
    random_state: int = 1
    n_train: int = 30
    factor: float = 0.8  # circles only: ratio of inner to outer radius


@dataclass(frozen=True)
class LayerSpec:
    type: str
    units: int
    activation: str = "linear"
    regularize: bool = False


@dataclass(frozen=True)
class ModelSpec:
    layers: tuple[LayerSpec, ...]
    loss: str = "binary_crossentropy"


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
    references: tuple[Reference, ...] = ()
    path: str | None = None

    def with_overrides(
        self,
        *,
        storage: str | None = None,
        n_jobs: int | None = None,
        seeds: int | None = None,
        epochs: int | None = None,
    ) -> StudySpec:
        """Apply command-line overrides, validating them like the file's own keys."""
        spec = self
        src = "command line"
        if storage is not None:
            spec = replace(spec, storage=_storage(storage, src, "--storage"))
        if n_jobs is not None:
            spec = replace(spec, n_jobs=_n_jobs(n_jobs, src, "--n-jobs"))
        if seeds is not None:
            spec = replace(spec, seeds=_seeds(seeds, src, "--seeds"))
        if epochs is not None:
            _check(isinstance(epochs, int) and epochs > 0, src, "--epochs", "must be a positive integer")
            spec = replace(spec, train=replace(spec.train, epochs=epochs))
        return spec

    @property
    def regularized_layers(self) -> tuple[int, ...]:
        return tuple(i for i, layer in enumerate(self.model.layers) if layer.regularize)


def load_spec(path: str | os.PathLike[str]) -> StudySpec:
    """Read and validate a study file. Raises :class:`SpecError` on any problem."""
    src = str(path)
    try:
        with open(path, "rb") as f:
            doc = tomllib.load(f)
    except FileNotFoundError:
        raise SpecError(src, "file", "no such file") from None
    except tomllib.TOMLDecodeError as exc:
        raise SpecError(src, "file", f"not valid TOML ({exc})") from None
    except OSError as exc:
        raise SpecError(src, "file", exc.strerror or str(exc)) from None
    default_storage = "sqlite:///" + str(Path(path).resolve().parent / f"{doc.get('name', 'study')}.db")
    return parse_spec(doc, source=src, default_storage=default_storage)


def parse_spec(doc: Mapping[str, Any], *, source: str = "<study>", default_storage: str | None = None) -> StudySpec:
    """Validate a parsed study document (a dict as ``tomllib`` returns it)."""
    s = source
    _known(doc, s, "", {
        "name", "storage", "seeds", "n_jobs", "penalty", "sampler", "n_trials", "sampler_seed",
        "chunk_size", "data", "model", "train", "space", "reference",
    })
    name = _get(doc, s, "name", str, required=True)
    _check(name.strip() != "" and len(name) <= 200, s, "name", "must be a non-empty string of at most 200 characters")
    storage = doc.get("storage")
    storage = _storage(storage, s, "storage") if storage is not None else (default_storage or f"sqlite:///{name}.db")
    seeds = _seeds(doc.get("seeds", 30), s, "seeds")
    n_jobs = doc.get("n_jobs")
    n_jobs = _n_jobs(n_jobs, s, "n_jobs") if n_jobs is not None else None
    penalty = _choice(doc.get("penalty", "mean"), s, "penalty", PENALTIES)
    sampler = _choice(doc.get("sampler", "grid"), s, "sampler", SAMPLERS)
    n_trials = doc.get("n_trials")
    if n_trials is not None:
        _check(_is_int(n_trials) and n_trials > 0, s, "n_trials", "must be a positive integer")
    if sampler == "tpe":
        _check(n_trials is not None, s, "n_trials", 'is required when sampler = "tpe"')
    sampler_seed = _get(doc, s, "sampler_seed", int, default=0)
    chunk_size = doc.get("chunk_size")
    if chunk_size is not None:
        _check(_is_int(chunk_size) and chunk_size > 0, s, "chunk_size", "must be a positive integer")

    data = _data(_table(doc, s, "data"), s)
    model = _model(_table(doc, s, "model", required=True), s)
    train = _train(_table(doc, s, "train"), s)
    space = _space(_table(doc, s, "space", required=True), s, sampler)
    if any(n != "none" for n in space.norm):
        _check(any(layer.regularize for layer in model.layers), s, "model.layers",
               "no layer has regularize = true, but space.norm asks for regularization")
    if space.l1_ratio is not None:
        _check("l1_l2" in space.norm, s, "space.l1_ratio", 'only applies to norm "l1_l2", which space.norm lacks')
    references = _references(doc.get("reference", []), s)
    return StudySpec(
        name=name, storage=storage, seeds=seeds, data=data, model=model, train=train, space=space,
        n_jobs=n_jobs, penalty=penalty, sampler=sampler, n_trials=n_trials, sampler_seed=sampler_seed,
        chunk_size=chunk_size, references=references, path=None if source.startswith("<") else source,
    )


# ----------------------------------------------------------------------------- sections


def _data(t: Mapping[str, Any], s: str) -> DataSpec:
    _known(t, s, "data", {"source", "n_samples", "noise", "random_state", "n_train", "factor"})
    d = DataSpec()
    source = _choice(t.get("source", d.source), s, "data.source", DATA_SOURCES)
    n_samples = _get(t, s, "data.n_samples", int, default=d.n_samples)
    _check(n_samples >= 4, s, "data.n_samples", "must be at least 4")
    noise = _get(t, s, "data.noise", float, default=d.noise)
    _check(noise >= 0, s, "data.noise", "must be >= 0")
    random_state = _get(t, s, "data.random_state", int, default=d.random_state)
    n_train = _get(t, s, "data.n_train", int, default=min(d.n_train, n_samples // 2))
    _check(0 < n_train < n_samples, s, "data.n_train", f"must be between 1 and n_samples - 1 ({n_samples - 1})")
    factor = _get(t, s, "data.factor", float, default=d.factor)
    if "factor" in t:
        _check(source == "circles", s, "data.factor", 'only applies to source = "circles"')
        _check(0 < factor < 1, s, "data.factor", "must be between 0 and 1 (exclusive)")
    return DataSpec(source, n_samples, noise, random_state, n_train, factor)


def _references(raw: Any, s: str) -> tuple[Reference, ...]:
    _check(isinstance(raw, list), s, "reference", "must be an array of tables ([[reference]])")
    out = []
    for i, t in enumerate(raw):
        key = f"reference[{i}]"
        _check(isinstance(t, dict), s, key, "must be a table")
        _known(t, s, key, {"norm", "strength", "placement", "l1_ratio", "train_accuracy", "test_accuracy", "source"})
        norm = _choice(t.get("norm"), s, f"{key}.norm", NORMS)
        test = _get(t, s, f"{key}.test_accuracy", float, required=True)
        train = _get(t, s, f"{key}.train_accuracy", float)
        for name, v in (("test_accuracy", test), ("train_accuracy", train)):
            _check(v is None or 0 <= v <= 1, s, f"{key}.{name}", "must be between 0 and 1")
        strength = _get(t, s, f"{key}.strength", float)
        placement = t.get("placement")
        if placement is not None:
            placement = _choice(placement, s, f"{key}.placement", PLACEMENTS)
        if norm == "none":
            _check(strength is None and placement is None, s, key, 'norm "none" takes no strength or placement')
        else:
            _check(strength is not None and placement is not None, s, key, "needs strength and placement")
        out.append(Reference(norm, train, test, strength, placement, _get(t, s, f"{key}.l1_ratio", float),
                             _get(t, s, f"{key}.source", str, default="")))
    return tuple(out)


def _model(t: Mapping[str, Any], s: str) -> ModelSpec:
    _known(t, s, "model", {"layers", "loss"})
    raw = t.get("layers")
    _check(isinstance(raw, list) and len(raw) > 0, s, "model.layers", "must be a non-empty list of layer tables")
    layers = []
    for i, item in enumerate(raw):
        key = f"model.layers[{i}]"
        _check(isinstance(item, dict), s, key, "must be a table such as { type = \"dense\", units = 8 }")
        _known(item, s, key, {"type", "units", "activation", "regularize"})
        kind = _choice(item.get("type", "dense"), s, f"{key}.type", LAYER_TYPES)
        units = _get(item, s, f"{key}.units", int, required=True)
        _check(units > 0, s, f"{key}.units", "must be a positive integer")
        activation = _choice(item.get("activation", "linear"), s, f"{key}.activation", ACTIVATIONS)
        regularize = _get(item, s, f"{key}.regularize", bool, default=False)
        layers.append(LayerSpec(kind, units, activation, regularize))
    loss = _choice(t.get("loss", "binary_crossentropy"), s, "model.loss", LOSSES)
    last = layers[-1]
    if loss == "binary_crossentropy":
        _check(last.units == 1 and last.activation == "sigmoid", s, f"model.layers[{len(layers) - 1}]",
               "binary_crossentropy needs a last layer with units = 1 and activation = \"sigmoid\"")
    return ModelSpec(tuple(layers), loss)


def _train(t: Mapping[str, Any], s: str) -> TrainSpec:
    _known(t, s, "train", {"epochs", "batch_size", "learning_rate", "optimizer", "shuffle", "record_every"})
    d = TrainSpec()
    epochs = _get(t, s, "train.epochs", int, default=d.epochs)
    _check(epochs > 0, s, "train.epochs", "must be a positive integer")
    batch_size = _get(t, s, "train.batch_size", int, default=d.batch_size)
    _check(batch_size > 0, s, "train.batch_size", "must be a positive integer")
    lr = _get(t, s, "train.learning_rate", float, default=d.learning_rate)
    _check(lr > 0 and math.isfinite(lr), s, "train.learning_rate", "must be a positive number")
    optimizer = _choice(t.get("optimizer", d.optimizer), s, "train.optimizer", OPTIMIZERS)
    shuffle = _get(t, s, "train.shuffle", bool, default=d.shuffle)
    record_every = _get(t, s, "train.record_every", int, default=0)
    _check(record_every >= 0, s, "train.record_every", "must be a non-negative integer")
    return TrainSpec(epochs, batch_size, lr, optimizer, shuffle, record_every)


def _space(t: Mapping[str, Any], s: str, sampler: str) -> SpaceSpec:
    _known(t, s, "space", {"norm", "strength", "placement", "l1_ratio"})
    norm = _choices(t.get("norm", list(NORMS)), s, "space.norm", NORMS)
    placement = _choices(t.get("placement", list(PLACEMENTS)), s, "space.placement", PLACEMENTS)
    needs_strength = any(n != "none" for n in norm)
    strength = _values_or_range(t, s, "strength", sampler, required=needs_strength,
                                valid=lambda v: v > 0, what="must be > 0", default=(1e-4,))
    l1_ratio = None
    if "l1_ratio" in t:
        l1_ratio = _values_or_range(t, s, "l1_ratio", sampler, required=True,
                                    valid=lambda v: 0 <= v <= 1, what="must be between 0 and 1")
    return SpaceSpec(norm, strength, placement, l1_ratio)


def _values_or_range(
    t: Mapping[str, Any], s: str, name: str, sampler: str, *, required: bool,
    valid: Callable[[float], bool], what: str, default: tuple[float, ...] = (),
) -> tuple[float, ...] | FloatRange:
    key = f"space.{name}"
    raw = t.get(name)
    if raw is None:
        _check(not required or default, s, key, "is required")
        return default
    if isinstance(raw, dict):
        _check(sampler == "tpe", s, key, 'a { low, high } range needs sampler = "tpe"; the grid needs a list')
        _known(raw, s, key, {"low", "high", "log"})
        low = _get(raw, s, f"{key}.low", float, required=True)
        high = _get(raw, s, f"{key}.high", float, required=True)
        log = _get(raw, s, f"{key}.log", bool, default=False)
        _check(valid(low), s, f"{key}.low", what)
        _check(valid(high), s, f"{key}.high", what)
        _check(low < high, s, key, "low must be smaller than high")
        _check(not log or low > 0, s, f"{key}.low", "must be > 0 when log = true")
        return FloatRange(low, high, log)
    if not isinstance(raw, list):
        raw = [raw]
    _check(len(raw) > 0, s, key, "must not be empty")
    values = []
    for i, v in enumerate(raw):
        _check(_is_number(v) and math.isfinite(v), s, f"{key}[{i}]", "must be a number")
        _check(valid(v), s, f"{key}[{i}]", what)
        values.append(float(v))
    _check(len(set(values)) == len(values), s, key, "has duplicate values")
    return tuple(values)


# ----------------------------------------------------------------------------- helpers


def _storage(value: Any, s: str, key: str) -> str:
    _check(isinstance(value, str) and "://" in value, s, key,
           "must be a database URL such as sqlite:///studies/x.db or postgresql://host/db")
    return value


def _n_jobs(value: Any, s: str, key: str) -> int:
    _check(_is_int(value) and (value > 0 or value == -1), s, key, "must be a positive integer, or -1 for all cores")
    return value


def _seeds(value: Any, s: str, key: str) -> tuple[int, ...]:
    if _is_int(value):
        _check(0 < value <= 100_000, s, key, "must be a positive number of seeds (at most 100000)")
        return tuple(range(value))
    _check(isinstance(value, list) and len(value) > 0, s, key, "must be a positive integer or a non-empty list of integers")
    for i, v in enumerate(value):
        _check(_is_int(v) and 0 <= v < 2**31, s, f"{key}[{i}]", "must be an integer between 0 and 2**31 - 1")
    _check(len(set(value)) == len(value), s, key, "has duplicate seeds")
    return tuple(value)


def _table(doc: Mapping[str, Any], s: str, key: str, *, required: bool = False) -> Mapping[str, Any]:
    t = doc.get(key)
    if t is None:
        _check(not required, s, key, "section is missing")
        return {}
    _check(isinstance(t, dict), s, key, "must be a table ([" + key + "])")
    return t


def _known(t: Mapping[str, Any], s: str, prefix: str, keys: set[str]) -> None:
    for k in t:
        if k not in keys:
            full = f"{prefix}.{k}" if prefix else k
            raise SpecError(s, full, f"unknown key (expected one of: {', '.join(sorted(keys))})")


def _get(t: Mapping[str, Any], s: str, key: str, kind: type, *, required: bool = False, default: Any = None) -> Any:
    name = key.rsplit(".", 1)[-1]
    if name not in t:
        _check(not required, s, key, "is required")
        return default
    v = t[name]
    if kind is float:
        _check(_is_number(v) and math.isfinite(v), s, key, "must be a number")
        return float(v)
    if kind is int:
        _check(_is_int(v), s, key, "must be an integer")
        return v
    _check(isinstance(v, kind), s, key, f"must be a {'boolean' if kind is bool else kind.__name__}")
    return v


def _choice(value: Any, s: str, key: str, allowed: Sequence[str]) -> str:
    _check(isinstance(value, str) and value in allowed, s, key,
           f"must be one of {', '.join(repr(a) for a in allowed)} (got {value!r})")
    return value


def _choices(value: Any, s: str, key: str, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    _check(isinstance(value, list) and len(value) > 0, s, key, "must be a non-empty list")
    for i, v in enumerate(value):
        _choice(v, s, f"{key}[{i}]", allowed)
    _check(len(set(value)) == len(value), s, key, "has duplicate values")
    return tuple(value)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _check(ok: bool, s: str, key: str, problem: str) -> None:
    if not ok:
        raise SpecError(s, key, problem)
