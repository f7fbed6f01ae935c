"""The study-file checks: each value's one-line message, table-driven (file, key, problem)."""

from __future__ import annotations

import pytest

from search.study import validation as v
from search.study.validation import SpecError

BAD = [
    (lambda: v.get({"epochs": "10"}, "f.toml", "train.epochs", int), "train.epochs", "must be an integer"),
    (lambda: v.get({"lr": float("nan")}, "f.toml", "train.lr", float), "train.lr", "must be a number"),
    (lambda: v.get({"x": True}, "f.toml", "a.x", int), "a.x", "must be an integer"),
    (lambda: v.get({}, "f.toml", "data.path", str, required=True), "data.path", "is required"),
    (lambda: v.positive({"units": 0}, "f.toml", "model.units"), "model.units", "must be a positive integer"),
    (lambda: v.choice("l3", "f.toml", "space.norm", ("l1", "l2")), "space.norm", "must be one of 'l1', 'l2'"),
    (lambda: v.choices(["l1", "l1"], "f.toml", "space.norm", ("l1",)), "space.norm", "has duplicate values"),
    (lambda: v.choices(["l9"], "f.toml", "space.norm", ("l1",)), "space.norm[0]", "must be one of"),
    (lambda: v.pair([3, 0], "f.toml", "model.kernel", ), "model.kernel", "a list of two positive integers"),
    (lambda: v.known({"epoch": 1}, "f.toml", "train", {"epochs"}), "train.epoch",
     "unknown key (expected one of: epochs)"),
    (lambda: v.storage_url("studies/x.db", "f.toml", "storage"), "storage", "must be a database URL"),
    (lambda: v.job_count(0, "f.toml", "n_jobs"), "n_jobs", "or -1 for all cores"),
    (lambda: v.seed_list([1, 1], "f.toml", "seeds"), "seeds", "has duplicate seeds"),
    (lambda: v.seed_list([-1], "f.toml", "seeds"), "seeds[0]", "between 0 and 2**31 - 1"),
    (lambda: v.seed_list(0, "f.toml", "seeds"), "seeds", "positive number of seeds"),
    (lambda: v.scheduler_address("localhost:8786", "f.toml", "scheduler"), "scheduler", "tcp://HOST:8786"),
]


@pytest.mark.parametrize("call, key, problem", BAD, ids=[b[1] + ":" + b[2][:20] for b in BAD])
def test_a_bad_value_names_file_key_and_problem(call, key, problem):
    with pytest.raises(SpecError) as info:
        call()
    assert info.value.source == "f.toml" and info.value.key == key and problem in info.value.problem
    assert str(info.value).startswith(f"f.toml: {key}: ") and "\n" not in str(info.value)


@pytest.mark.parametrize("call, expected", [
    (lambda: v.get({"lr": 1}, "f", "train.lr", float), 1.0),  # an int may be written for a float
    (lambda: v.get({}, "f", "train.lr", float, default=0.5), 0.5),
    (lambda: v.pair(3, "f", "k"), (3, 3)),
    (lambda: v.choices("l1", "f", "k", ("l1", "l2")), ("l1",)),
    (lambda: v.seed_list(3, "f", "seeds"), (0, 1, 2)),
    (lambda: v.seed_list([5, 2], "f", "seeds"), (5, 2)),
    (lambda: v.job_count(-1, "f", "n_jobs"), -1),
    (lambda: v.scheduler_address("tls://10.0.0.1:8786", "f", "s"), "tls://10.0.0.1:8786"),
])
def test_good_values_come_back_normalized(call, expected):
    assert call() == expected


def test_booleans_are_not_integers():
    assert not v.is_int(True) and not v.is_number(False) and v.is_int(3) and v.is_number(2.5)
