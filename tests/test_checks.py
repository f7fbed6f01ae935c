"""Checks of a study against its data, before anything runs: shapes through the layers, targets, outputs."""

from __future__ import annotations

import copy

import pytest
from test_data import CNN

from search.engine.checks import check_study, output_shape
from search.study.parse import parse_spec
from search.study.spec import LayerSpec
from search.study.validation import SpecError

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
