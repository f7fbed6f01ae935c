"""Replicates that draw their data anew, and validation rows carved out of the training rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import RUN_COLUMNS, write_study

from search import export_frame, load_spec, parse_spec, run_study
from search.engine.data import make_dataset, replicate_data
from search.store.reading import load_study
from search.study.validation import SpecError

CIRCLES = {"source": "circles", "n_samples": 100, "noise": 0.1, "n_train": 30}
DIGITS = {"source": "digits", "view": "flat", "test_size": 0.5}


def data_of(table: dict, **top):
    doc = {"name": "r", "seeds": 4, "data": table, "train": {"epochs": 2}, "space": {"norm": ["none"]},
           "model": {"layers": [{"type": "dense", "units": 10, "activation": "softmax"}]
                     if table["source"] == "digits" else [{"type": "dense", "units": 1, "activation": "sigmoid"}],
                     "loss": "sparse_categorical_crossentropy" if table["source"] == "digits" else
                     "binary_crossentropy"}, **top}
    return parse_spec(doc).data


def rows_of(data) -> set[bytes]:
    return {row.tobytes() for row in np.asarray(data.x_train)}


def test_a_drawn_replicate_is_the_fixed_data_of_its_random_state():
    spec = data_of({**CIRCLES, "resample": "draw"})
    assert spec.random_state is None and spec.resample == "draw"
    for seed in (0, 7):
        fixed = make_dataset(data_of({**CIRCLES, "random_state": seed}))
        mine = make_dataset(spec.for_replicate(seed))
        for name in ("x_train", "y_train", "x_test", "y_test"):
            assert np.array_equal(getattr(mine, name), getattr(fixed, name))
    a, b = make_dataset(spec.for_replicate(0)), make_dataset(spec.for_replicate(1))
    assert not np.array_equal(a.x_train, b.x_train)


def test_split_replicates_have_distinct_splits_of_one_sample():
    spec = data_of({**DIGITS, "resample": "split"})
    stacked = replicate_data(spec, (0, 1, 2))
    assert stacked.per_seed and stacked.x_train.shape[:2] == (3, 898) and stacked.rows == (898, 899, 0)
    train_rows = [rows_of(make_dataset(spec.for_replicate(s))) for s in (0, 1, 2)]
    assert len({frozenset(r) for r in train_rows}) == 3  # three different splits
    for k, seed in enumerate((0, 1, 2)):  # each slice is exactly that replicate's split, whatever chunk holds it
        assert np.array_equal(stacked.x_test[k], make_dataset(spec.for_replicate(seed)).x_test)
        assert np.array_equal(replicate_data(spec, (seed,)).y_train[0], stacked.y_train[k])
        assert np.array_equal(make_dataset(spec.for_replicate(seed)).x_train,
                              make_dataset(data_of({**DIGITS, "split_seed": seed})).x_train)
    # Stratified: every replicate's test rows hold the classes in the proportions of the whole.
    counts = [np.bincount(stacked.y_test[k].ravel().astype(int), minlength=10) for k in range(3)]
    assert max(int(np.ptp([c[label] for c in counts])) for label in range(10)) <= 1


def test_split_draws_the_training_rows_of_a_first_n_rows_source_at_random():
    spec = data_of({**CIRCLES, "resample": "split"})
    whole = make_dataset(data_of({**CIRCLES, "n_train": 99}))  # nearly every row, in the file's order
    mine = [make_dataset(spec.for_replicate(s)) for s in (0, 1)]
    assert all(d.rows == (30, 70, 0) for d in mine)
    assert rows_of(mine[0]) != rows_of(mine[1]) and rows_of(mine[0]) <= rows_of(whole) | {
        r.tobytes() for r in whole.x_test}
    assert [int(d.y_train.sum()) for d in mine] == [15, 15]  # stratified: the circles' two classes half and half


def test_validation_rows_come_out_of_the_training_rows_and_standardization_ignores_them():
    base = make_dataset(data_of({**DIGITS, "standardize": False}))
    held = make_dataset(data_of({**DIGITS, "validation": 0.2, "standardize": False}))
    assert held.rows == (718, 899, 180) and base.rows == (898, 899, 0)
    assert rows_of(held) | {r.tobytes() for r in held.x_validation} == rows_of(base)
    assert np.array_equal(held.x_test, base.x_test)
    scaled = make_dataset(data_of({**DIGITS, "validation": 0.2, "standardize": True}))
    np.testing.assert_allclose(scaled.x_train.mean(axis=0), 0.0, atol=1e-5)
    assert abs(float(scaled.x_validation.mean())) > 1e-4  # fitted on the training rows only


BAD = [
    ({**CIRCLES, "resample": "often"}, "data.resample", "'none', 'split', 'draw'"),
    ({**DIGITS, "resample": "draw"}, "data.resample", '"draw" needs a generated source (circles, moons, sequence)'),
    ({**CIRCLES, "resample": "draw", "random_state": 3}, "data.random_state", "replicate s draws its sample"),
    ({**DIGITS, "resample": "split", "split_seed": 3}, "data.split_seed", "replicate s splits with split_seed = s"),
    ({**CIRCLES, "validation": 1.5}, "data.validation", "between 0 and 1"),
    ({**CIRCLES, "n_train": 2, "validation": 0.9}, "data.validation", "leaves no training rows"),
]


@pytest.mark.parametrize("table,key,problem", BAD, ids=[b[1] + ":" + str(b[0].get("resample")) for b in BAD])
def test_bad_resampling_is_one_line_naming_the_key(table, key, problem):
    with pytest.raises(SpecError) as err:
        data_of(table)
    assert err.value.key == key and problem in err.value.problem


def test_an_npz_file_cannot_be_resplit(tmp_path):
    np.savez(tmp_path / "d.npz", x_train=np.zeros((4, 2)), y_train=np.array([0, 1, 0, 1]),
             x_test=np.zeros((2, 2)), y_test=np.array([0, 1]))
    with pytest.raises(SpecError, match='data.resample: "split" needs data that actreg splits'):
        parse_spec({"name": "n", "data": {"source": "npz", "path": str(tmp_path / "d.npz"), "resample": "split"},
                    "model": {"layers": [{"type": "dense", "units": 1, "activation": "sigmoid"}]},
                    "space": {"norm": ["none"]}}, source=str(tmp_path / "s.toml"))


def per_seed(spec) -> pd.DataFrame:
    frame = export_frame(spec, per_seed=True).drop(columns=RUN_COLUMNS)
    return frame.sort_values(["configuration", "seed"]).reset_index(drop=True)


@pytest.mark.slow
def test_a_drawn_replicate_of_a_study_equals_the_fixed_data_study_of_its_seed_bit_for_bit(tmp_path):
    """Replicate s of a resampled study is the fixed-data study with random_state = s and seeds [s]
    (chunks of one seed: the trainer's bit-exact path, as a fixed-data study of one seed trains)."""
    resampled = write_study(tmp_path, name="drawn", seeds=3, epochs=4, extra="chunk_size = 1")
    resampled.write_text(resampled.read_text().replace("random_state = 3", 'resample = "draw"'))
    spec = load_spec(resampled).with_overrides(n_jobs=1)
    run_study(spec, progress=False)
    frame = per_seed(spec)
    assert frame["data_random_state"].tolist() == frame["seed"].tolist()
    for seed in range(3):
        fixed = write_study(tmp_path, name=f"fixed{seed}", seeds=1, epochs=4)
        fixed.write_text(fixed.read_text().replace("seeds = 1", f"seeds = [{seed}]")
                         .replace("random_state = 3", f"random_state = {seed}"))
        alone = load_spec(fixed).with_overrides(n_jobs=1)
        run_study(alone, progress=False)
        mine = frame[frame["seed"] == seed].reset_index(drop=True).drop(columns="replicate")  # the seed's position
        pd.testing.assert_frame_equal(mine, per_seed(alone).drop(columns="replicate"), check_exact=True)
    assert frame[frame["configuration"] == "none"]["test_accuracy"].nunique() > 1  # the replicates differ


@pytest.mark.slow
def test_a_split_study_is_paired_and_the_same_whatever_n_jobs(tmp_path):
    path = write_study(tmp_path, name="split", seeds=4, epochs=3, extra="chunk_size = 2")
    text = path.read_text().replace("n_train = 24", 'test_size = 0.5\nresample = "split"').replace(
        "strength = [1e-3, 1e-1]", "strength = [1e-12]")
    path.write_text(text)
    frames = []
    for n_jobs in (1, 2):
        spec = load_spec(path).with_overrides(n_jobs=n_jobs, storage=f"sqlite:///{tmp_path}/j{n_jobs}.db")
        run_study(spec, progress=False)
        frames.append(per_seed(spec))
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
    frame = frames[0]
    assert frame["data_split_seed"].tolist() == frame["seed"].tolist()
    by = {c: g.set_index("seed")["test_accuracy"] for c, g in frame.groupby("configuration")}
    assert by["none"].nunique() > 1  # the replicates differ
    for accuracy in by.values():  # strength 1e-12 changes no weight: the same rows give the same numbers
        pd.testing.assert_series_equal(accuracy, by["none"], check_names=False)


@pytest.mark.slow
def test_validation_chooses_and_the_test_rows_report(tmp_path):
    path = write_study(tmp_path, name="val", seeds=3, epochs=4)
    path.write_text(path.read_text().replace("n_train = 24", "n_train = 24\nvalidation = 0.25"))
    spec = load_spec(path).with_overrides(n_jobs=1)
    report = run_study(spec, progress=False)
    for t in load_study(spec).get_trials():
        a = t.user_attrs
        assert a["n_train"] == 18 and a["n_validation"] == 6 and a["n_test"] == 36
        assert t.value == pytest.approx(np.mean(a["validation_accuracy"]))
        assert a["mean_validation_accuracy"] == pytest.approx(t.value)
    summary = report.summary
    assert {"mean_validation_accuracy", "std_validation_accuracy", "rank_validation_accuracy"} <= set(summary)
    ranked = summary.sort_values("mean_validation_accuracy", ascending=False)
    assert ranked["rank_validation_accuracy"].iloc[0] == 1
    assert load_study(spec).metric_names == ["mean validation accuracy"]
    frame = export_frame(spec, per_seed=True)
    assert {"validation_accuracy", "validation_loss"} <= set(frame)
