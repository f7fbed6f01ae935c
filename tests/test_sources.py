"""Data sources and their readers: every registry entry, the user's CSV and NPZ files, the adding problem."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from test_data import CNN

from search.engine.checks import check_study
from search.engine.data import make_dataset
from search.study.parse import parse_spec
from search.study.readers import DataError
from search.study.sources import SOURCES
from search.study.spec import DataSpec
from search.study.validation import SpecError

GENERATED = {"circles": {"n_samples": 60, "noise": 0.1, "random_state": 3, "factor": 0.8},
             "moons": {"n_samples": 60, "noise": 0.1, "random_state": 3},
             "sequence": {"n_samples": 60, "steps": 6, "random_state": 3}}


@pytest.mark.parametrize("name", sorted(SOURCES))
def test_every_source_says_its_task_keys_and_name(name):
    source = SOURCES[name]
    assert source.task in (None, "binary", "multiclass", "regression")
    assert source.split in ("n_train", "test_size")
    assert source.draws == (name in GENERATED)  # a new sample per random_state: the generated ones
    fields = {k: v for k, v in GENERATED.get(name, {}).items()}
    spec = DataSpec(source=name, path="/data/file", target="y", view="flat", **fields)
    assert source.describe(spec).strip() != ""


@pytest.mark.parametrize("name", sorted(GENERATED))
def test_a_generated_source_draws_a_new_sample_per_random_state_and_the_same_one_again(name):
    spec = DataSpec(source=name, **GENERATED[name])
    x, y = SOURCES[name].load(spec)
    again, _ = SOURCES[name].load(spec)
    other, _ = SOURCES[name].load(DataSpec(source=name, **{**GENERATED[name], "random_state": 4}))
    assert len(x) == len(y) == 60 and np.array_equal(x, again) and not np.array_equal(x, other)


def test_the_registry_loads_what_ships_with_scikit_learn():
    x, y = SOURCES["digits"].load(DataSpec(source="digits", view="image"))
    assert x.shape == (1797, 8, 8, 1) and SOURCES["digits"].rows == 1797 and set(np.unique(y)) == set(range(10))
    x, y = SOURCES["diabetes"].load(DataSpec(source="diabetes"))
    assert len(x) == SOURCES["diabetes"].rows == 442


def test_a_reader_error_names_the_study_file_key(tmp_path):
    (tmp_path / "d.csv").write_text("a,label\n1,0\n,1\n")
    with pytest.raises(DataError) as info:
        SOURCES["csv"].load(DataSpec(source="csv", path=str(tmp_path / "d.csv"), target="label"))
    assert info.value.key == "data.features" and "missing values (row 3 of the file)" in info.value.problem


def test_adding_task_sequences_are_balanced_and_seeded():
    doc = copy.deepcopy(CNN)
    doc["data"] = {"source": "sequence", "n_samples": 400, "steps": 12, "random_state": 4}
    doc["model"] = {"layers": [{"type": "lstm", "units": 4, "regularize": True},
                               {"type": "dense", "units": 1, "activation": "sigmoid"}]}
    doc["space"]["placement"] = ["post"]
    doc.pop("metric")
    spec = parse_spec(doc, source="s.toml")
    data = make_dataset(spec.data)
    assert data.x_train.shape == (300, 12, 2)  # 25% test by default
    assert data.x_train[:, :, 1].sum(axis=1).tolist() == [2.0] * 300  # two markers per sequence
    assert 0.4 < data.y_train.mean() < 0.6
    marked = (data.x_train[:, :, 0] * data.x_train[:, :, 1]).sum(axis=1)
    assert np.array_equal(marked > 1, data.y_train.ravel() == 1)
    with pytest.raises(SpecError, match='"pre" does not apply to model.layers\\[0\\] \\(lstm\\)'):
        parse_spec({**doc, "space": {"norm": ["l1"], "strength": [1e-4]}}, source="s.toml")


def test_csv_data(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 3))
    lines = ["a,b,c,label"] + [f"{r[0]},{r[1]},{r[2]},{int(r[0] > 0)}" for r in x]
    (tmp_path / "d.csv").write_text("\n".join(lines) + "\n")
    doc = {"name": "c", "data": {"source": "csv", "path": "d.csv", "target": "label", "features": ["a", "c"],
                                 "n_train": 30},
           "model": {"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]}, "space": {"norm": ["none"]}}
    spec = parse_spec(doc, source=str(tmp_path / "s.toml"))
    data = make_dataset(spec.data)
    assert data.x_train.shape == (30, 2) and data.x_test.shape == (10, 2)
    np.testing.assert_allclose(data.x_train[:, 1], x[:30, 2], rtol=1e-6)
    check_study(spec)
    bad = copy.deepcopy(doc)
    bad["data"]["target"] = "nope"
    with pytest.raises(SpecError, match="data.target: no column 'nope'"):
        check_study(parse_spec(bad, source=str(tmp_path / "s.toml")))
    (tmp_path / "e.csv").write_text("a,label\n1,0\nx,1\n2,1\n3,0\n")
    bad["data"].update(path="e.csv", target="label", features=["a"], n_train=2)
    with pytest.raises(SpecError, match="column 'a' .* is not numeric"):
        check_study(parse_spec(bad, source=str(tmp_path / "s.toml")))
    (tmp_path / "f.csv").write_text("a,label\n1,0\n2,3\n3,1\n4,0\n")
    bad["data"]["path"] = "f.csv"
    with pytest.raises(SpecError, match="binary_crossentropy needs labels 0 and 1"):
        check_study(parse_spec(bad, source=str(tmp_path / "s.toml")))
    bad["data"]["path"] = "missing.csv"
    with pytest.raises(SpecError, match="data.path: no such file"):
        parse_spec(bad, source=str(tmp_path / "s.toml"))


def test_npz_data(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {"x_train": rng.normal(size=(20, 4)), "y_train": rng.normal(size=20),
              "x_test": rng.normal(size=(8, 4)), "y_test": rng.normal(size=(8, 1))}
    np.savez(tmp_path / "d.npz", **arrays)
    doc = {"name": "n", "data": {"source": "npz", "path": "d.npz"},
           "model": {"loss": "mse", "layers": [{"type": "dense", "units": 1, "activation": "linear"}]},
           "space": {"norm": ["none"]}}
    spec = parse_spec(doc, source=str(tmp_path / "s.toml"))
    data = check_study(spec)
    assert data.x_train.shape == (20, 4) and data.y_test.shape == (8, 1)
    with pytest.raises(SpecError, match="data.test_size: does not apply to source = \"npz\""):
        parse_spec({**doc, "data": {"source": "npz", "path": "d.npz", "test_size": 0.2}}, source=str(tmp_path / "s"))
    for change, message in ((("x_test", rng.normal(size=(8, 5))), "x_train rows have shape"),
                            (("y_train", rng.normal(size=19)), "x_train has 20 rows but y_train has 19"),
                            (("y_test", np.array(["a"] * 8)), "not numbers")):
        np.savez(tmp_path / "d.npz", **{**arrays, change[0]: change[1]})
        make_dataset.cache_clear()
        with pytest.raises(SpecError, match=message):
            check_study(spec)
    np.savez(tmp_path / "d.npz", x_train=arrays["x_train"])
    make_dataset.cache_clear()
    with pytest.raises(DataError, match="lacks the array 'y_train'"):
        make_dataset(spec.data)


