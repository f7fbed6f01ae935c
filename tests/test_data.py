"""Datasets, splits and the user's files; study-vs-data checks."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from search.engine.checks import check_study, output_shape
from search.engine.data import DataError, make_dataset
from search.study.parse import parse_spec
from search.study.spec import LayerSpec
from search.study.validation import SpecError

CNN = {"name": "cnn", "seeds": 2, "metric": "accuracy",
       "data": {"source": "digits", "view": "image", "test_size": 0.3, "split_seed": 1},
       "model": {"loss": "sparse_categorical_crossentropy", "layers": [
           {"type": "conv2d", "filters": 4, "kernel_size": 3, "activation": "relu", "regularize": True},
           {"type": "maxpool2d"}, {"type": "flatten"}, {"type": "dropout", "rate": 0.25},
           {"type": "dense", "units": 10, "activation": "softmax"}]},
       "space": {"norm": ["none", "l1"], "strength": [1e-4]}}


def spec_of(doc, **data):
    doc = copy.deepcopy(doc)
    doc["data"].update(data)
    return parse_spec(doc, source="s.toml")


def test_digits_views_and_a_stratified_seeded_split():
    spec = spec_of(CNN)
    data = make_dataset(spec.data)
    assert data.x_train.shape == (1257, 8, 8, 1) and data.x_test.shape == (540, 8, 8, 1)
    assert data.y_train.shape == (1257, 1) and data.n_classes == 10
    assert data.x_train.dtype == np.float32 and 0 <= data.x_train.min() and data.x_train.max() <= 1
    train_share = np.bincount(data.y_train.ravel().astype(int)) / len(data.y_train)
    test_share = np.bincount(data.y_test.ravel().astype(int)) / len(data.y_test)
    np.testing.assert_allclose(train_share, test_share, atol=0.01)  # stratified
    assert np.array_equal(make_dataset(spec_of(CNN, view="flat").data).x_train.reshape(-1, 8, 8, 1), data.x_train)
    assert make_dataset(spec_of(CNN, view="sequence").data).x_train.shape == (1257, 8, 8)
    other = make_dataset(spec_of(CNN, split_seed=2).data)
    assert not np.array_equal(other.y_train, data.y_train)


BREAST_CANCER = {"name": "bc", "data": {"source": "breast_cancer"},
                 "model": {"layers": [{"type": "dense", "units": 8, "activation": "relu", "regularize": True},
                                      {"type": "dense", "units": 1, "activation": "sigmoid"}]},
                 "space": {"norm": ["none", "l1"], "strength": [1e-4]}}


def test_breast_cancer_is_binary_standardized_and_split_stratified():
    spec = parse_spec(BREAST_CANCER, source="s.toml")
    assert (spec.data.test_size, spec.data.split_seed, spec.data.stratify, spec.data.standardize) == (
        0.25, 0, True, True)
    data = make_dataset(spec.data)
    assert data.x_train.shape == (426, 30) and data.x_test.shape == (143, 30) and data.n_classes == 2
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1, atol=1e-4)
    assert abs(data.y_train.mean() - data.y_test.mean()) < 0.01  # stratified: 357 benign, 212 malignant
    raw = make_dataset(spec_of(BREAST_CANCER, standardize=False).data)
    assert raw.x_train.max() > 1000  # unscaled, the areas dwarf the other features
    with pytest.raises(SpecError, match="'breast_cancer' is a binary dataset, but model.loss makes this a regression"):
        parse_spec({**BREAST_CANCER, "model": {"loss": "mse", "layers": [{"type": "dense", "units": 1}]}},
                   source="s.toml")
    with pytest.raises(SpecError, match='data.noise: does not apply to source = "breast_cancer"'):
        spec_of(BREAST_CANCER, noise=0.1)
    with pytest.raises(SpecError, match="data.n_train: must be between 1 and the number of rows - 1 \\(568\\)"):
        spec_of(BREAST_CANCER, n_train=569)


def test_standardize_uses_the_training_rows_only():
    doc = {"name": "r", "data": {"source": "diabetes", "test_size": 0.5, "standardize": True},
           "model": {"loss": "mse", "layers": [{"type": "dense", "units": 1, "activation": "linear"}]},
           "space": {"norm": ["none"]}}
    data = make_dataset(parse_spec(doc, source="s.toml").data)
    np.testing.assert_allclose(data.x_train.mean(axis=0), 0, atol=1e-5)
    np.testing.assert_allclose(data.x_train.std(axis=0), 1, atol=1e-4)
    assert np.abs(data.x_test.mean(axis=0)).max() > 1e-3  # the test rows were not used for the fit


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


L = LayerSpec


@pytest.mark.parametrize("layers,shape,expected", [
    ((L("conv2d", filters=4, kernel_size=(3, 3)), L("maxpool2d", pool_size=(2, 2)), L("flatten"), L("dense", 10)),
     (8, 8, 1), (10,)),
    ((L("conv2d", filters=4, kernel_size=(3, 3), padding="same", strides=(2, 2)), L("flatten")), (8, 8, 1), (64,)),
    ((L("lstm", 5, return_sequences=True), L("lstm", 3), L("dense", 1)), (8, 8), (1,)),
    ((L("gru", 5, return_sequences=True), L("flatten"), L("dense", 1)), (8, 8), (1,)),
    ((L("dense", 4), L("dropout", rate=0.1), L("dense", 2)), (64,), (2,)),
])
def test_output_shape(layers, shape, expected):
    assert output_shape(layers, shape) == expected


@pytest.mark.parametrize("layers,shape,key,problem", [
    ((L("conv2d", filters=4, kernel_size=(3, 3)), L("flatten")), (64,), "model.layers[0]", "needs image inputs"),
    ((L("lstm", 4), L("dense", 1)), (8, 8, 1), "model.layers[0]", "needs sequence inputs"),
    ((L("dense", 4), L("gru", 4), L("dense", 1)), (8,), "model.layers[1]", "gru needs sequence inputs"),
    ((L("conv2d", filters=4, kernel_size=(9, 9)),), (8, 8, 1), "model.layers[0]", "does not fit"),
    ((L("lstm", 4, return_sequences=True), L("dense", 1)), (8, 8), "model.layers[1]", "add a flatten"),
])
def test_shape_errors_name_the_layer(layers, shape, key, problem):
    with pytest.raises(SpecError) as err:
        output_shape(layers, shape, "s.toml")
    assert err.value.key == key and problem in err.value.problem


def test_check_study_catches_a_model_that_cannot_take_the_data():
    doc = copy.deepcopy(CNN)
    doc["data"]["view"] = "flat"
    with pytest.raises(SpecError, match='model.layers\\[0\\]: conv2d needs image inputs .*data.view = "image"'):
        check_study(parse_spec(doc, source="s.toml"))
    doc["data"]["view"] = "image"
    doc["model"]["layers"][-1]["units"] = 5
    with pytest.raises(SpecError, match="model: the data has 10 classes but the model has 5 outputs"):
        check_study(parse_spec(doc, source="s.toml"))
