from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from search.study.parse import load_spec, parse_spec
from search.study.spec import FloatRange
from search.study.validation import SpecError

REPO = Path(__file__).resolve().parents[1]

BASE = {
    "name": "t",
    "seeds": 3,
    "data": {"source": "circles", "n_samples": 100, "n_train": 30},
    "model": {"layers": [
        {"type": "dense", "units": 8, "activation": "relu", "regularize": True},
        {"type": "dense", "units": 1, "activation": "sigmoid"},
    ]},
    "train": {"epochs": 5},
    "space": {"norm": ["none", "l1"], "strength": [1e-4], "placement": ["pre", "post"]},
}


def with_change(path: str, value, base=BASE):
    import copy

    doc = copy.deepcopy(base)
    *parents, last = path.split(".")
    node = doc
    for p in parents:
        node = node[int(p)] if isinstance(node, list) else node[p]
    if value is DELETE:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return doc


DELETE = object()

BAD = [
    ("name", DELETE, "name", "is required"),
    ("name", "", "name", "non-empty"),
    ("seeds", 0, "seeds", "positive"),
    ("seeds", [1, 1], "seeds", "duplicate"),
    ("seeds", [1, -2], "seeds[1]", "between 0"),
    ("seeds", "ten", "seeds", "integer"),
    ("n_jobs", 0, "n_jobs", "positive"),
    ("penalty", "avg", "penalty", "'mean', 'sum'"),
    ("sampler", "random", "sampler", "'grid', 'tpe'"),
    ("storage", "studies/x.db", "storage", "database URL"),
    ("scheduler", "localhost:8786", "scheduler", "a Dask scheduler address such as tcp://HOST:8786"),
    ("scheduler", "tcp://host", "scheduler", "a Dask scheduler address"),
    ("colour", "red", "colour", "unknown key"),
    ("rope", -0.01, "rope", "positive number"),
    ("rope", "wide", "rope", "must be a number"),
    ("rope", 1e300, "rope", "must be less than 1"),  # every configuration would be equivalent
    ("rope", float("inf"), "rope", "must be a number"),
    ("data.source", "mnist", "data.source", "'circles', 'moons'"),
    ("data.n_train", 100, "data.n_train", "between 1"),
    ("data.noise", -1, "data.noise", ">= 0"),
    ("data.factor", 2.0, "data.factor", "between 0 and 1"),
    ("model.layers", [], "model.layers", "non-empty"),
    ("model.layers.0.units", 0, "model.layers[0].units", "positive"),
    ("model.layers.0.units", 2.5, "model.layers[0].units", "integer"),
    ("model.layers.0.activation", "rleu", "model.layers[0].activation", "must be one of"),
    ("model.layers.0.type", "conv9d", "model.layers[0].type", "must be one of"),
    ("model.layers.0.regularize", "yes", "model.layers[0].regularize", "boolean"),
    ("model.layers.1.activation", "relu", "model.layers[1]", "sigmoid"),
    ("model.loss", "hinge", "model.loss", "must be one of"),
    ("train.epochs", 0, "train.epochs", "positive"),
    ("train.batch_size", -1, "train.batch_size", "positive"),
    ("train.learning_rate", 0, "train.learning_rate", "positive"),
    ("train.optimizer", "sgd", "train.optimizer", "must be one of"),
    ("space.norm", ["l3"], "space.norm[0]", "must be one of"),
    ("space.norm", [], "space.norm", "non-empty"),
    ("space.strength", [1e-4, -1], "space.strength[1]", "> 0"),
    ("space.strength", [1e-4, 1e-4], "space.strength", "duplicate"),
    ("space.strength", {"low": 1e-6, "high": 1e-1}, "space.strength", "tpe"),
    ("space.placement", ["middle"], "space.placement[0]", "must be one of"),
    ("space.l1_ratio", [0.5], "space.l1_ratio", "l1_l2"),
    ("space", DELETE, "space", "missing"),
    ("metric", "r2", "metric", "must be one of 'accuracy', 'f1'"),
    ("data.view", "image", "data.view", 'does not apply to source = "circles"'),
    ("data.test_size", 0.3, "data", "n_train or test_size, not both"),
    ("data.source", "digits", "data.source", "multiclass dataset"),
    ("model.builder", "pkg.mod:build", "model", "layers or builder, not both"),
    ("model.layers.0", {"type": "dropout", "rate": 1.0}, "model.layers[0].rate", "[0, 1)"),
    ("model.layers.0", {"type": "conv2d", "filters": 4}, "model.layers[0].kernel_size", "is required"),
    ("model.layers.0", {"type": "conv2d", "filters": 4, "kernel_size": [3]}, "model.layers[0].kernel_size",
     "two positive integers"),
    ("model.layers.0", {"type": "maxpool2d", "padding": "full"}, "model.layers[0].padding", "'valid', 'same'"),
    ("model.layers.0", {"type": "flatten", "units": 3}, "model.layers[0].units", "unknown key"),
    ("model.layers.0", {"type": "lstm", "units": 4, "regularize": True}, "space.placement", '"pre" does not apply'),
    ("model.layers.0", {"type": "gru", "units": 4, "regularize": True}, "space.placement", "(gru): its activations"),
    ("model.layers.0", {"type": "gru", "units": 0}, "model.layers[0].units", "positive integer"),
    ("model.layers.0", {"type": "gru", "units": 4, "activation": "relu"}, "model.layers[0].activation",
     "unknown key"),
    ("model.layers.1", {"type": "flatten"}, "model.layers[1]", "must be dense"),
    ("model.loss", "mse", "model.layers[1]", 'units = 1 and activation = "linear"'),
]


@pytest.mark.parametrize("path,value,key,problem", BAD, ids=[f"{b[0]}={b[1]!r}" for b in BAD])
def test_bad_study_is_reported_with_key(path, value, key, problem):
    with pytest.raises(SpecError) as err:
        parse_spec(with_change(path, value), source="s.toml")
    assert err.value.key == key
    assert problem in err.value.problem
    assert str(err.value).startswith(f"s.toml: {key}: ")


def test_builder_form_and_metric_direction():
    doc = with_change("model", {"builder": "not a path", "loss": "mse"})
    with pytest.raises(SpecError, match='model.builder: must be "package.module:function"'):
        parse_spec(doc, source="s.toml")
    doc["model"]["builder"] = "my_models.nets:build"
    doc["data"] = {"source": "diabetes"}
    spec = parse_spec({**doc, "metric": "mae"}, source="s.toml")
    assert spec.model.builder == "my_models.nets:build" and spec.model.task == "regression"
    assert (spec.objective, spec.metrics, spec.maximize) == ("mae", ("mae", "r2"), False)
    spec = parse_spec(doc, source="s.toml")
    assert (spec.objective, spec.metrics, spec.maximize, spec.metric) == ("r2", ("r2", "mae"), True, None)
    assert parse_spec({**doc, "metric": "r2"}, source="s.toml").metric is None  # one spelling of the default
    assert spec.data.test_size == 0.25 and spec.data.split_seed == 0 and spec.data.stratify is False
    with pytest.raises(SpecError, match="metric: must be one of 'r2', 'mae' \\(got 'f1'\\)"):
        parse_spec({**doc, "metric": "f1"}, source="s.toml")  # F1 is for binary studies


def test_f1_is_recorded_only_where_a_binary_study_asks_for_it():
    spec = parse_spec(with_change("metric", "f1"), source="s.toml")
    assert (spec.objective, spec.metrics, spec.maximize) == ("f1", ("f1", "accuracy"), True)
    assert parse_spec(with_change("metric", "accuracy"), source="s.toml").metrics == ("accuracy",)


def test_layers_without_activation_can_carry_the_regularizer():
    doc = with_change("model.layers.0", {"type": "dropout", "rate": 0.2, "regularize": True})
    spec = parse_spec(doc, source="s.toml")
    assert spec.model.layers[0].regularize and spec.regularized_layers == (0,)


def test_regularization_needs_a_marked_layer():
    doc = with_change("model.layers.0.regularize", False)
    with pytest.raises(SpecError, match="model.layers: no layer has regularize"):
        parse_spec(doc, source="s.toml")


def test_tpe_needs_n_trials_and_accepts_ranges():
    doc = with_change("sampler", "tpe")
    doc["space"]["strength"] = {"low": 1e-6, "high": 1e-1, "log": True}
    with pytest.raises(SpecError, match="n_trials"):
        parse_spec(doc, source="s.toml")
    doc["n_trials"] = 4
    spec = parse_spec(doc, source="s.toml")
    assert spec.space.strength == FloatRange(1e-6, 1e-1, True)


def test_defaults_and_seed_forms():
    spec = parse_spec(BASE, default_storage="sqlite:///x.db")
    assert spec.seeds == (0, 1, 2)
    assert spec.penalty == "mean" and spec.sampler == "grid" and spec.n_jobs is None
    assert spec.storage == "sqlite:///x.db"
    assert spec.train.batch_size == 32 and spec.train.learning_rate == 0.001 and spec.train.shuffle
    assert parse_spec(with_change("seeds", [7, 3])).seeds == (7, 3)


def test_overrides_are_validated():
    spec = parse_spec(BASE)
    assert spec.with_overrides(seeds=5, epochs=9, n_jobs=1).seeds == tuple(range(5))
    with pytest.raises(SpecError, match="--epochs"):
        spec.with_overrides(epochs=0)
    with pytest.raises(SpecError, match="--storage"):
        spec.with_overrides(storage="nope")


def test_default_storage_sits_beside_the_study_file(tmp_path):
    path = tmp_path / "a.toml"
    path.write_text('name = "abc"\n[model]\nlayers = [{ type = "dense", units = 1, activation = "sigmoid" }]\n'
                    '[space]\nnorm = ["none"]\n')
    spec = load_spec(path)
    assert spec.storage == f"sqlite:///{tmp_path / 'abc.db'}"


def test_unreadable_files(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_spec(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = \n")
    with pytest.raises(SpecError, match="file: not valid TOML"):
        load_spec(bad)


SHIPPED = sorted(p.stem for p in (REPO / "studies").glob("*.toml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_every_shipped_study_is_valid_and_fits_its_data(name):
    from search.engine.checks import check_study

    spec = load_spec(REPO / "studies" / f"{name}.toml")
    assert spec.name == name and spec.storage == f"sqlite:///{REPO / 'studies' / name}.db"
    data = check_study(spec)  # the model against its data, as `actreg run` checks before writing anything
    assert len(data.x_train) > 0 and len(data.x_test) > 0
    if name.startswith("seed-"):  # the case study: 30 seeds of 4000 epochs, or at least 30 replicates of new data
        assert spec.train.epochs == 4000 and spec.data.n_train == 30
        if name.endswith(("-resampled", "-race")):
            assert spec.data.resample == "draw" and len(spec.seeds) >= 30
        else:
            assert spec.data.resample == "none" and len(spec.seeds) == 30 and spec.data.random_state == 1


def test_the_shipped_studies_are_found():  # an empty glob would pass the test above silently
    assert len(SHIPPED) >= 10 and {"seed-tutorial", "seed-circles", "digits-cnn", "regression",
                                   "seed-tutorial-resampled", "seed-circles-resampled"} <= set(SHIPPED)


@pytest.mark.parametrize("args", [
    ["run", "{bad}"],
    ["run", "{good}", "--epochs", "0"],
    ["run", "{good}", "--n-jobs", "x"],
    ["export", "{bad}", "--out", "{tmp}/out.csv"],
])
def test_cli_rejects_bad_input_in_one_line_and_writes_nothing(tmp_path, args):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "b"\nseeds = -3\n[model]\nlayers = []\n[space]\nnorm = ["none"]\n')
    good = tmp_path / "good.toml"
    good.write_text('name = "g"\n[model]\nlayers = [{ type = "dense", units = 1, activation = "sigmoid" }]\n'
                    '[space]\nnorm = ["none"]\n')
    argv = [a.format(bad=bad, good=good, tmp=tmp_path) for a in args]
    proc = subprocess.run([sys.executable, "-m", "search", *argv], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "good.toml"]


def test_the_scheduler_is_a_run_setting_left_out_of_the_fingerprint():
    from search.store.storage import spec_fingerprint

    here = parse_spec(BASE, source="s.toml")
    there = parse_spec({**BASE, "scheduler": "tcp://10.0.0.1:8786"}, source="s.toml")
    assert (here.scheduler, there.scheduler) == (None, "tcp://10.0.0.1:8786")
    assert spec_fingerprint(here) == spec_fingerprint(there)  # a study may move between a laptop and a cluster
    assert here.with_overrides(scheduler="tls://sched.example:8786").scheduler == "tls://sched.example:8786"
    with pytest.raises(SpecError, match="command line: --scheduler: must be a Dask scheduler address"):
        here.with_overrides(scheduler="8786")


@pytest.mark.parametrize("models_per_program, chunk, model_bytes, expected", [
    (None, 30, None, 2),  # 64 models: two configurations of 30 seeds
    (None, 1, None, 1),  # one seed: a model alone, model.fit's own operations
    (4, 1, None, 4),  # unless asked for company
    (None, 5, 1 << 20, 12),
    (None, 10, 100 << 20, 1),  # 1 GiB of activations holds 10 such models: one configuration
    (1000, 10, 10 << 20, 10),  # the memory bound before models_per_program
    (8, 30, None, 1),  # at least one configuration, whatever the chunk
])
def test_configurations_per_program(models_per_program, chunk, model_bytes, expected):
    spec = dataclasses.replace(load_spec(REPO / "studies" / "seed-circles.toml"), models_per_program=models_per_program)
    assert spec.configs_per_program(chunk, model_bytes) == expected
