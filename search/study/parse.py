"""Study files: TOML in, frozen and validated specs out.

A study file is validated once, here, at the edge; everything downstream trusts the
specs it receives. Every problem is reported as a :class:`SpecError` that names the
file, the offending key (as a dotted path such as ``model.layers[0].units``) and what
is wrong with it.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import tomllib

from search.study.layers import LAYERS
from search.study.metrics import TASK_METRICS, offered
from search.study.sources import SOURCES, Source
from search.study.spec import (
    LOSSES,
    MIN_PAIRS,
    NORMS,
    OPTIMIZERS,
    PENALTIES,
    PLACEMENTS,
    RESAMPLE,
    SAMPLERS,
    DataSpec,
    FloatRange,
    LayerSpec,
    ModelSpec,
    RaceSpec,
    Reference,
    SpaceSpec,
    StudySpec,
    TrainSpec,
)
from search.study.validation import (
    SpecError,
    check,
    choice,
    choices,
    get,
    is_int,
    is_number,
    job_count,
    known,
    scheduler_address,
    seed_list,
    storage_url,
)
from search.study.validation import default_storage as default_storage_in

DATA_SOURCES = tuple(SOURCES)
LAYER_TYPES = tuple(LAYERS)


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
    except UnicodeDecodeError as exc:
        raise SpecError(src, "file", f"not a UTF-8 text file (byte {exc.start}); a study file is TOML text") from None
    except IsADirectoryError:
        raise SpecError(src, "file", "is a folder, not a study file") from None
    except OSError as exc:
        raise SpecError(src, "file", exc.strerror or str(exc)) from None
    return parse_spec(doc, source=src, default_storage=default_storage_in(Path(path).resolve().parent, doc.get("name")))


def parse_spec(doc: Mapping[str, Any], *, source: str = "<study>", default_storage: str | None = None) -> StudySpec:
    """Validate a parsed study document (a dict as ``tomllib`` returns it)."""
    s = source
    known(doc, s, "", {
        "name", "storage", "seeds", "n_jobs", "penalty", "sampler", "n_trials", "sampler_seed",
        "chunk_size", "models_per_program", "data", "model", "train", "space", "reference", "metric", "race",
        "heartbeat_grace", "max_failures", "worker_retries", "scheduler", "rope", "storage_patience",
    })
    name = get(doc, s, "name", str, required=True)
    check(name.strip() != "" and len(name) <= 200, s, "name", "must be a non-empty string of at most 200 characters")
    storage = doc.get("storage")
    if storage is not None:
        storage = storage_url(storage, s, "storage")
    else:
        storage = default_storage or default_storage_in(".", name)
    seeds = seed_list(doc.get("seeds", 30), s, "seeds")
    n_jobs = doc.get("n_jobs")
    n_jobs = job_count(n_jobs, s, "n_jobs") if n_jobs is not None else None
    penalty = choice(doc.get("penalty", "mean"), s, "penalty", PENALTIES)
    sampler = choice(doc.get("sampler", "grid"), s, "sampler", SAMPLERS)
    n_trials = doc.get("n_trials")
    if n_trials is not None:
        check(is_int(n_trials) and n_trials > 0, s, "n_trials", "must be a positive integer")
    if sampler == "tpe":
        check(n_trials is not None, s, "n_trials", 'is required when sampler = "tpe"')
    sampler_seed = get(doc, s, "sampler_seed", int, default=0)
    chunk_size = doc.get("chunk_size")
    if chunk_size is not None:
        check(is_int(chunk_size) and chunk_size > 0, s, "chunk_size", "must be a positive integer")
    models_per_program = doc.get("models_per_program")
    if models_per_program is not None:
        check(is_int(models_per_program) and models_per_program > 0, s, "models_per_program",
              "must be a positive integer")

    settings = _run_settings(doc, s)

    base = Path(source).resolve().parent if not source.startswith("<") else Path.cwd()
    model = _model(_table(doc, s, "model", required=True), s, base)
    data = _data(_table(doc, s, "data"), s, model.task, base)
    train = _train(_table(doc, s, "train"), s)
    space = _space(_table(doc, s, "space", required=True), s, sampler)
    metric = doc.get("metric")
    if metric is not None:
        metric = choice(metric, s, "metric", offered(model.task))
        metric = None if metric == TASK_METRICS[model.task][0] else metric  # one spelling of the default
    if any(n != "none" for n in space.norm) and model.builder is None:
        check(any(layer.regularize for layer in model.layers), s, "model.layers",
               "no layer has regularize = true, but space.norm asks for regularization")
    if "pre" in space.placement and any(n != "none" for n in space.norm):
        for i, layer in enumerate(model.layers):
            check(not (LAYERS[layer.type].internal_activation and layer.regularize), s, "space.placement",
                  f'"pre" does not apply to model.layers[{i}] ({layer.type}): its activations are internal, '
                  'so its regularizer can only see the output; use placement = ["post"]')
    if space.l1_ratio is not None:
        check("l1_l2" in space.norm, s, "space.l1_ratio", 'only applies to norm "l1_l2", which space.norm lacks')
    rope = get(doc, s, "rope", float)
    check(rope is None or 0 < rope < math.inf, s, "rope", "must be a positive number (in the units of the metric)")
    objective = metric or TASK_METRICS[model.task][0]
    check(rope is None or objective not in ("accuracy", "f1") or rope < 1, s, "rope",
          f"must be less than 1: two {objective} values differ by at most 1, so every configuration would be "
          "equivalent")
    race = _race(_table(doc, s, "race"), s, seeds, space, sampler) if "race" in doc else None
    references = _references(doc.get("reference", []), s)
    if references:
        check(model.task != "regression", s, "reference", "published references hold accuracies; "
               "this is a regression study")
    return StudySpec(
        name=name, storage=storage, seeds=seeds, data=data, model=model, train=train, space=space,
        n_jobs=n_jobs, penalty=penalty, sampler=sampler, n_trials=n_trials, sampler_seed=sampler_seed,
        chunk_size=chunk_size, models_per_program=models_per_program, race=race, references=references,
        path=None if source.startswith("<") else source,
        metric=metric, rope=rope, **settings,
    )


def _run_settings(doc: Mapping[str, Any], s: str) -> dict[str, Any]:
    """How runs behave (not what they compute): left out of the study's fingerprint."""
    heartbeat_grace = get(doc, s, "heartbeat_grace", int, default=60)
    check(2 <= heartbeat_grace <= 86_400, s, "heartbeat_grace", "must be a number of seconds between 2 and 86400")
    max_failures = get(doc, s, "max_failures", int, default=3)
    check(max_failures >= 0, s, "max_failures", "must be a non-negative integer")
    worker_retries = get(doc, s, "worker_retries", int, default=2)
    check(worker_retries >= 0, s, "worker_retries", "must be a non-negative integer")
    storage_patience = get(doc, s, "storage_patience", int, default=300)
    check(0 <= storage_patience <= 86_400, s, "storage_patience", "must be a number of seconds between 0 and 86400")
    scheduler = doc.get("scheduler")
    return {"heartbeat_grace": heartbeat_grace, "max_failures": max_failures, "worker_retries": worker_retries,
            "storage_patience": storage_patience,
            "scheduler": None if scheduler is None else scheduler_address(scheduler, s, "scheduler")}


# ----------------------------------------------------------------------------- sections


SPLIT_KEYS = frozenset({"n_train", "test_size", "split_seed", "standardize", "validation"})


def _data(t: Mapping[str, Any], s: str, task: str, base: Path) -> DataSpec:
    name = choice(t.get("source", "circles"), s, "data.source", DATA_SOURCES)
    source = SOURCES[name]
    if source.task is not None:
        check(source.task == task, s, "data.source",
              f"{name!r} is a {source.task} dataset, but model.loss makes this a {task} study")
    allowed = {"source", "resample"} | source.keys | (SPLIT_KEYS if not source.own_split else {"standardize"})
    for k in t:
        if k in SPLIT_KEYS.union(*(o.keys for o in SOURCES.values())) and k not in allowed:
            why = " (an npz file holds its own train and test arrays)" if source.own_split else ""
            raise SpecError(s, f"data.{k}", f'does not apply to source = "{name}"{why}')
    known(t, s, "data", allowed)
    # The DataSpec defaults are the case study's circles; a field a source does not take is None.
    fields: dict[str, Any] = {"source": name, "n_samples": None, "noise": None, "random_state": None,
                              "n_train": None, "factor": None, **source.parse(t, s, base)}
    if not source.own_split:
        fields.update(_split(t, s, task, source, fields.get("n_samples") or source.rows))
    if get(t, s, "data.standardize", bool, default=source.standardize):
        fields["standardize"] = True
    fields.update(_resample(t, s, task, name, source))
    return DataSpec(**fields)


def _resample(t: Mapping[str, Any], s: str, task: str, name: str, source: Source) -> dict[str, Any]:
    """``resample`` and the key it takes over: each replicate's ``split_seed`` or ``random_state``."""
    resample = choice(t.get("resample", "none"), s, "data.resample", RESAMPLE)
    if resample == "none":
        return {}
    if resample == "draw":
        check(source.draws, s, "data.resample",
              f'"draw" needs a generated source ({", ".join(n for n, o in SOURCES.items() if o.draws)}); '
              f'{name!r} is one fixed sample: use resample = "split" to draw each replicate\'s split')
        check("random_state" not in t, s, "data.random_state",
              'does not apply with resample = "draw": replicate s draws its sample with random_state = s')
        return {"resample": resample, "random_state": None}
    check(not source.own_split, s, "data.resample",
          '"split" needs data that actreg splits; an npz file holds its own train and test arrays')
    check("split_seed" not in t, s, "data.split_seed",
          'does not apply with resample = "split": replicate s splits with split_seed = s')
    return {"resample": resample, "split_seed": None, "stratify": task != "regression"}


def _split(t: Mapping[str, Any], s: str, task: str, source: Source, rows: int | None) -> dict[str, Any]:
    """The first ``n_train`` rows train, or a seeded random split of ``test_size`` (stratified for
    classes); ``n_train`` with ``split_seed`` draws the training rows at random. Then ``validation``."""
    check(not ("n_train" in t and "test_size" in t), s, "data", "give n_train or test_size, not both")
    out: dict[str, Any]
    if "test_size" in t or ("n_train" not in t and source.split == "test_size"):
        size = get(t, s, "data.test_size", float, default=0.25)
        check(0 < size < 1, s, "data.test_size", "must be between 0 and 1 (exclusive)")
        out = {"test_size": size, "split_seed": get(t, s, "data.split_seed", int, default=0),
               "stratify": task != "regression"}
        n_train = None if rows is None else rows - math.ceil(size * rows)
    else:
        default = min(30, rows // 2) if rows else None
        n_train = get(t, s, "data.n_train", int, required=default is None, default=default)
        check(n_train > 0, s, "data.n_train", "must be a positive integer")
        if rows is not None:
            check(n_train < rows, s, "data.n_train", f"must be between 1 and the number of rows - 1 ({rows - 1})")
        out = {"n_train": n_train}
        if "split_seed" in t:  # n_train rows drawn at random instead of the first ones
            out.update(split_seed=get(t, s, "data.split_seed", int), stratify=task != "regression")
    if "validation" in t:
        fraction = get(t, s, "data.validation", float)
        check(0 < fraction < 1, s, "data.validation", "must be a fraction of the training rows between 0 and 1 "
                                                       "(exclusive)")
        if n_train is not None:
            held = math.ceil(fraction * n_train)
            check(held < n_train, s, "data.validation", f"leaves no training rows ({held} of {n_train} held out)")
        out.update(validation=fraction, stratify=task != "regression")
    return out


def _references(raw: Any, s: str) -> tuple[Reference, ...]:
    check(isinstance(raw, list), s, "reference", "must be an array of tables ([[reference]])")
    out = []
    for i, t in enumerate(raw):
        key = f"reference[{i}]"
        check(isinstance(t, dict), s, key, "must be a table")
        known(t, s, key, {"norm", "strength", "placement", "l1_ratio", "train_accuracy", "test_accuracy", "source"})
        norm = choice(t.get("norm"), s, f"{key}.norm", NORMS)
        test = get(t, s, f"{key}.test_accuracy", float, required=True)
        train = get(t, s, f"{key}.train_accuracy", float)
        for name, v in (("test_accuracy", test), ("train_accuracy", train)):
            check(v is None or 0 <= v <= 1, s, f"{key}.{name}", "must be between 0 and 1")
        strength = get(t, s, f"{key}.strength", float)
        placement = t.get("placement")
        if placement is not None:
            placement = choice(placement, s, f"{key}.placement", PLACEMENTS)
        if norm == "none":
            check(strength is None and placement is None, s, key, 'norm "none" takes no strength or placement')
        else:
            check(strength is not None and placement is not None, s, key, "needs strength and placement")
        out.append(Reference(norm, train, test, strength, placement, get(t, s, f"{key}.l1_ratio", float),
                             get(t, s, f"{key}.source", str, default="")))
    return tuple(out)


def _model(t: Mapping[str, Any], s: str, base: Path) -> ModelSpec:
    known(t, s, "model", {"layers", "loss", "builder"})
    loss = choice(t.get("loss", "binary_crossentropy"), s, "model.loss", tuple(LOSSES))
    if "builder" in t:
        check("layers" not in t, s, "model", "give layers or builder, not both")
        builder = get(t, s, "model.builder", str, required=True)
        module, _, func = builder.partition(":")
        check(bool(module) and func.isidentifier() and all(p.isidentifier() for p in module.split(".")),
               s, "model.builder", f'must be "package.module:function" (got {builder!r})')
        return ModelSpec((), loss, builder, str(base))
    raw = t.get("layers", [])
    check(isinstance(raw, list) and len(raw) > 0, s, "model.layers",
           "must be a non-empty list of layer tables (or give model.builder)")
    layers = tuple(_layer(item, s, f"model.layers[{i}]") for i, item in enumerate(raw))
    last, key = layers[-1], f"model.layers[{len(layers) - 1}]"
    check(last.type == "dense", s, key, "the last layer must be dense (the model's output)")
    task = LOSSES[loss]
    if task == "binary":
        check(last.units == 1 and last.activation == "sigmoid", s, key,
               'binary_crossentropy needs a last layer with units = 1 and activation = "sigmoid"')
    elif task == "multiclass":
        check(last.activation == "softmax", s, key,
               'sparse_categorical_crossentropy needs a last layer with activation = "softmax" and one unit per class')
    else:
        check(last.units == 1 and last.activation == "linear", s, key,
               'mse needs a last layer with units = 1 and activation = "linear"')
    return ModelSpec(layers, loss)


def _layer(item: Any, s: str, key: str) -> LayerSpec:
    check(isinstance(item, dict), s, key, "must be a table such as { type = \"dense\", units = 8 }")
    kind = choice(item.get("type", "dense"), s, f"{key}.type", LAYER_TYPES)
    known(item, s, key, {"type", "regularize"} | LAYERS[kind].keys)
    return LayerSpec(type=kind, regularize=get(item, s, f"{key}.regularize", bool, default=False),
                     **LAYERS[kind].parse(item, s, key))


def _race(t: Mapping[str, Any], s: str, seeds: tuple[int, ...], space: SpaceSpec, sampler: str) -> RaceSpec:
    known(t, s, "race", {"min_replicates", "max_replicates", "every", "alpha", "futility"})
    check(sampler == "grid", s, "race", 'races a grid: it needs sampler = "grid"')
    check("none" in space.norm and len(space.norm) > 1, s, "race",
          'needs the baseline and something to race against it: space.norm with "none" and another norm')
    d = RaceSpec()
    first = get(t, s, "race.min_replicates", int, default=d.min_replicates)
    check(first >= MIN_PAIRS, s, "race.min_replicates", f"must be at least {MIN_PAIRS}: fewer pairs give no verdict")
    last = get(t, s, "race.max_replicates", int, default=len(seeds))
    check(first < last <= len(seeds), s, "race.max_replicates",
          f"must be more than min_replicates ({first}) and at most the study's {len(seeds)} seeds")
    every = get(t, s, "race.every", int)
    check(every is None or every > 0, s, "race.every", "must be a positive integer (default: doubling)")
    alpha = get(t, s, "race.alpha", float, default=d.alpha)
    check(0 < alpha < 1, s, "race.alpha", "must be between 0 and 1")
    futility = t.get("futility", d.futility)
    if futility is False:
        futility = None
    else:
        check(is_number(futility) and not isinstance(futility, bool) and futility >= 0, s, "race.futility",
              "must be a number of standard errors (at least 0), or false")
        futility = float(futility)
    return RaceSpec(first, last if "max_replicates" in t else None, every, alpha, futility)


def _train(t: Mapping[str, Any], s: str) -> TrainSpec:
    known(t, s, "train", {"epochs", "batch_size", "learning_rate", "optimizer", "shuffle", "record_every"})
    d = TrainSpec()
    epochs = get(t, s, "train.epochs", int, default=d.epochs)
    check(epochs > 0, s, "train.epochs", "must be a positive integer")
    batch_size = get(t, s, "train.batch_size", int, default=d.batch_size)
    check(batch_size > 0, s, "train.batch_size", "must be a positive integer")
    lr = get(t, s, "train.learning_rate", float, default=d.learning_rate)
    check(lr > 0 and math.isfinite(lr), s, "train.learning_rate", "must be a positive number")
    optimizer = choice(t.get("optimizer", d.optimizer), s, "train.optimizer", OPTIMIZERS)
    shuffle = get(t, s, "train.shuffle", bool, default=d.shuffle)
    record_every = get(t, s, "train.record_every", int, default=0)
    check(record_every >= 0, s, "train.record_every", "must be a non-negative integer")
    return TrainSpec(epochs, batch_size, lr, optimizer, shuffle, record_every)


def _space(t: Mapping[str, Any], s: str, sampler: str) -> SpaceSpec:
    known(t, s, "space", {"norm", "strength", "placement", "l1_ratio"})
    norm = choices(t.get("norm", list(NORMS)), s, "space.norm", NORMS)
    placement = choices(t.get("placement", list(PLACEMENTS)), s, "space.placement", PLACEMENTS)
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
        check(not required or bool(default), s, key, "is required")
        return default
    if isinstance(raw, dict):
        check(sampler == "tpe", s, key, 'a { low, high } range needs sampler = "tpe"; the grid needs a list')
        known(raw, s, key, {"low", "high", "log"})
        low = get(raw, s, f"{key}.low", float, required=True)
        high = get(raw, s, f"{key}.high", float, required=True)
        log = get(raw, s, f"{key}.log", bool, default=False)
        check(valid(low), s, f"{key}.low", what)
        check(valid(high), s, f"{key}.high", what)
        check(low < high, s, key, "low must be smaller than high")
        check(not log or low > 0, s, f"{key}.low", "must be > 0 when log = true")
        return FloatRange(low, high, log)
    if not isinstance(raw, list):
        raw = [raw]
    check(len(raw) > 0, s, key, "must not be empty")
    values = []
    for i, v in enumerate(raw):
        check(is_number(v) and math.isfinite(v), s, f"{key}[{i}]", "must be a number")
        check(valid(v), s, f"{key}[{i}]", what)
        values.append(float(v))
    check(len(set(values)) == len(values), s, key, "has duplicate values")
    return tuple(values)


# ----------------------------------------------------------------------------- helpers


def _table(doc: Mapping[str, Any], s: str, key: str, *, required: bool = False) -> Mapping[str, Any]:
    t = doc.get(key)
    if t is None:
        check(not required, s, key, "section is missing")
        return {}
    check(isinstance(t, dict), s, key, "must be a table ([" + key + "])")
    return t
