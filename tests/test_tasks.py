"""Studies beyond binary classification, end to end: run -> export -> report."""

from __future__ import annotations

import csv
import textwrap

import optuna
import pytest
from conftest import actreg, write_builder

from search import load_spec, run_study
from search.store.reading import load_study

pytestmark = pytest.mark.slow  # real processes, databases or clusters

STUDY = '''
name = "reg"
seeds = 2
metric = "mae"
n_jobs = 2

[data]
source = "diabetes"
test_size = 0.3
split_seed = 1
standardize = true

[model]
builder = "my_nets:mlp"
loss = "mse"

[train]
epochs = 4
batch_size = 64
learning_rate = 0.05

[space]
norm = ["none", "l1"]
strength = [1e-2]
placement = ["pre", "post"]
'''


def test_regression_with_a_users_builder_in_worker_processes(tmp_path):
    write_builder(tmp_path)
    study_file = tmp_path / "reg.toml"
    study_file.write_text(textwrap.dedent(STUDY))
    spec = load_spec(study_file)
    report = run_study(spec, progress=False)  # two loky workers import my_nets from the study's folder
    assert report.configurations_run == 3
    study = load_study(spec)
    assert study.direction == optuna.study.StudyDirection.MINIMIZE

    out = tmp_path / "summary.csv"
    proc = actreg("export", str(study_file), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    with open(out) as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[5:19] == [
        "n_seeds", "status", "n_diverged", "mean_test_mae", "std_test_mae", "ci95_low_test_mae",
        "ci95_high_test_mae", "rank_test_mae", "ranked_on_seeds", "mean_train_mae", "std_train_mae", "mean_test_r2",
        "std_test_r2", "mean_train_r2"]
    best = min(rows, key=lambda r: float(r["mean_test_mae"]))
    assert best["rank_test_mae"] == "1"
    for row in rows:
        assert float(row["mean_test_mae"]) == pytest.approx(
            (float(row["replicate0_test_mae"]) + float(row["replicate1_test_mae"])) / 2)
        assert 0 < float(row["mean_test_mae"]) < 200  # target units (disease progression, 25..346)
    regularized = [r for r in rows if r["param_norm"] == "l1"]
    assert all(0 <= float(r["mean_test_zero_fraction"]) <= 1 for r in regularized)  # probes found in the user's model

    proc = actreg("report", str(study_file), "--out", str(tmp_path / "rep"), "--no-attach")
    assert proc.returncode == 0, proc.stderr
    text = (tmp_path / "rep" / "report.md").read_text()
    assert "## Test MAE" in text and "lower is better" in text and "built by `my_nets:mlp`" in text
    assert (tmp_path / "rep" / "sparsity.png").stat().st_size > 5000
    assert not (tmp_path / "rep" / "heatmap_test_mae.png").exists()  # one strength: no 1 x 1 heatmaps


def test_a_broken_builder_is_one_line_and_writes_nothing(tmp_path):
    (tmp_path / "my_nets.py").write_text("def mlp(**kwargs):\n    return 'not a model'\n")
    study_file = tmp_path / "reg.toml"
    study_file.write_text(textwrap.dedent(STUDY))
    proc = actreg("run", str(study_file))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: {study_file}: model.builder: my_nets:mlp returned str, not a keras.Model")
    assert not (tmp_path / "reg.db").exists()


def test_a_binary_study_ranked_by_f1(tmp_path):
    from conftest import write_study

    from search import export_frame
    from search.results.report import write_report

    path = write_study(tmp_path, name="f1", seeds=2, epochs=4, extra='metric = "f1"\nn_jobs = 1')
    spec = load_spec(path)
    run_study(spec, progress=False)
    table = export_frame(spec)
    assert {"mean_test_f1", "rank_test_f1", "ci95_low_test_f1", "mean_test_accuracy"} <= set(table.columns)
    best = table.loc[table["mean_test_f1"].idxmax()]
    assert best["rank_test_f1"] == 1
    assert load_study(spec).trials[0].user_attrs["metrics"] == ["f1", "accuracy"]
    report = write_report(spec, tmp_path / "rep", attach=False)
    assert "## Test F1" in (report.folder / "report.md").read_text()
    assert "test $F_1$" in (report.folder / "summary.tex").read_text()
