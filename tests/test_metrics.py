"""The metric registry: each metric's running sums give the number scikit-learn computes."""

from __future__ import annotations

import numpy as np
import pytest

from search.engine import runtime

runtime.configure(2)

from search.engine.data import make_dataset  # noqa: E402
from search.engine.model import build_model  # noqa: E402
from search.engine.trainer import train_seeds  # noqa: E402
from search.study.metrics import METRICS, TASK_METRICS, metric_values, offered  # noqa: E402
from search.study.space import Configuration  # noqa: E402
from search.study.spec import DataSpec, LayerSpec, ModelSpec, TrainSpec  # noqa: E402


def test_every_task_records_its_metrics_in_order_and_offers_the_optional_ones():
    assert TASK_METRICS == {"binary": ("accuracy",), "multiclass": ("accuracy",), "regression": ("r2", "mae")}
    assert offered("binary") == ("accuracy", "f1") and offered("regression") == ("r2", "mae")
    for name, m in METRICS.items():
        assert m.label and m.latex and m.n_stats >= 1, name
        assert m.tasks or m.optional, f"{name} belongs to no task"


@pytest.mark.parametrize("sums, expected", [
    ([3.0, 1.0, 2.0], 6 / 9),  # tp, fp, fn
    ([0.0, 0.0, 0.0], 0.0),  # no positives at all: 0, as scikit-learn's f1_score
    ([0.0, 4.0, 0.0], 0.0),
    ([5.0, 0.0, 0.0], 1.0),
])
def test_f1_from_sums(sums, expected):
    (value,) = metric_values(("f1",), np.array([sums], dtype=np.float32), 10.0)
    assert float(np.asarray(value)[0]) == pytest.approx(expected)


def test_f1_and_accuracy_are_those_of_scikit_learn_on_the_fitted_model():
    from sklearn.metrics import accuracy_score, f1_score

    data = make_dataset(DataSpec())
    model = ModelSpec((LayerSpec("dense", 16, "relu", True), LayerSpec("dense", 1, "sigmoid")))
    config = Configuration("l1", 1e-3, "post")
    built = build_model(model, config, "mean", 0, 2)
    train = TrainSpec(epochs=20, batch_size=8, learning_rate=0.01)  # four batches per epoch, the last short
    (r,) = train_seeds([built.model], data, train, [0], built.probes, keep_weights=True, task="binary",
                       metrics=("f1", "accuracy"))
    fitted = build_model(model, config, "mean", 0, 2).model
    fitted.set_weights(list(r.weights))
    for split, x, y in (("test", data.x_test, data.y_test), ("train", data.x_train, data.y_train)):
        predicted = (fitted.predict(x, verbose=0) > 0.5).astype(int).ravel()
        got = r.test if split == "test" else r.train
        assert got["f1"] == pytest.approx(f1_score(y.ravel().astype(int), predicted), abs=1e-6)
        assert got["accuracy"] == pytest.approx(accuracy_score(y.ravel().astype(int), predicted), abs=1e-6)
    assert r.history["f1"].shape == (20,) and r.history["test_f1"][-1] == pytest.approx(r.test["f1"], abs=1e-6)
