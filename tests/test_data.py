"""Each replicate's arrays: splits, stratification, standardization (search/engine/data.py)."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from search.engine.data import make_dataset
from search.study.parse import parse_spec
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


@pytest.mark.parametrize("data, key, words", [
    ({"validation": 0.01}, "data.validation",
     "puts 1 of 30 rows on one side, fewer than the 2 classes a stratified split puts on each"),
    ({"test_size": 0.99, "n_train": None, "split_seed": 0}, "data.test_size",
     "puts 1 of 100 rows on one side, fewer than the 2 classes"),
])
def test_a_split_scikit_learn_refuses_is_said_in_the_study_files_words(data, key, words):
    """The user wrote data.validation, not scikit-learn's test_size: the line names their key and their rows."""
    doc = {"name": "c", "data": {"source": "circles"},
           "model": {"layers": [{"type": "dense", "units": 4, "activation": "relu", "regularize": True},
                                {"type": "dense", "units": 1, "activation": "sigmoid"}]},
           "space": {"norm": ["none", "l1"], "strength": [1e-4]}}
    doc["data"].update({k: v for k, v in data.items() if v is not None})
    if data.get("n_train", 0) is None:
        doc["data"].pop("n_train", None)
    from search.study.readers import DataError

    with pytest.raises(DataError) as err:
        make_dataset(parse_spec(doc, source="s.toml").data)
    assert err.value.key == key and words in err.value.problem and "test_size =" not in err.value.problem
