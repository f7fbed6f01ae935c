"""Aggregation over seeds: exact accuracies, ranks and ties, and the marks that the tables put on them."""

from __future__ import annotations

import math

import numpy as np
import optuna
import pytest
from conftest import seed_result

from search.results.latex import summary_latex
from search.results.records import ci95, summary_frame, trial_record
from search.results.report import summary_markdown
from search.results.words import marks

N_TEST = 70


def trial(number: int, params: dict, correct: list[int]) -> optuna.trial.FrozenTrial:
    """A complete trial whose seeds got ``correct`` of 70 test rows right, as float32 accuracies like the trainer's."""
    results = [seed_result(k, [1.0, 0.5], float(np.float32(c) / np.float32(N_TEST))) for k, c in enumerate(correct)]
    record = trial_record(results, 2, 1, rows=(30, N_TEST))
    C = optuna.distributions.CategoricalDistribution
    dists = {"norm": C(["none", "l1"])}
    if params["norm"] != "none":
        dists.update(strength=C([1e-4, 1e-3, 1e-2]), placement=C(["pre", "post"]))
    t = optuna.trial.create_trial(params=params, distributions=dists, value=record.value, user_attrs=record.user_attrs)
    t.number = number
    return t


def test_equal_totals_share_the_rank_and_no_configuration_is_marked_best():
    trials = [
        trial(0, {"norm": "none"}, [50, 50, 51, 50]),  # 201 of 280
        trial(1, {"norm": "l1", "strength": 1e-4, "placement": "pre"}, [52, 51, 52, 52]),  # 207
        trial(2, {"norm": "l1", "strength": 1e-3, "placement": "pre"}, [51, 52, 52, 52]),  # 207, other seeds
        trial(3, {"norm": "l1", "strength": 1e-2, "placement": "pre"}, [51, 52, 52, 52]),  # 207, the same seeds
    ]
    frame = summary_frame(trials, ["norm", "strength", "placement"]).set_index("trial_number")
    assert frame.loc[1, "mean_test_accuracy"] == frame.loc[2, "mean_test_accuracy"] == 207 / 280
    assert list(frame["rank_test_accuracy"]) == [4, 1, 1, 1]
    assert trials[1].user_attrs["test_accuracy"][0] == 52 / 70  # no float32 noise (0.742857158...)
    assert trials[1].value == 207 / 280
    summary = frame.reset_index()
    assert marks(summary) == {}
    md = summary_markdown(summary)
    assert "★" not in md.split("\n\n")[0]  # only the legend explains the mark
    tex = summary_latex(summary, "ties")
    assert "\\bfseries" not in tex and "\\label{tab:ties}" in tex and "$^\\star$ the best" in tex


def test_a_single_best_is_marked_and_significance_has_its_own_mark():
    trials = [
        trial(0, {"norm": "none"}, [50, 50, 51, 50, 50, 49]),
        trial(1, {"norm": "l1", "strength": 1e-4, "placement": "pre"}, [55, 56, 57, 56, 55, 57]),
        trial(2, {"norm": "l1", "strength": 1e-3, "placement": "pre"}, [51, 50, 52, 50, 51, 51]),
    ]
    from search.results.stats import baseline_comparison

    summary = summary_frame(trials, ["norm", "strength", "placement"])
    comparison = baseline_comparison(trials, ["norm", "strength", "placement"])
    best = int(summary.index[summary["trial_number"] == 1][0])
    assert marks(summary, comparison)[best] == "★†"
    tex = summary_latex(summary, "one best", comparison=comparison)
    assert "{\\bfseries\\boldmath $0.800 \\pm" in tex and "$^{\\star}$$^{\\dagger}$" in tex
    assert "\\label{tab:one-best}" in tex


@pytest.mark.parametrize("values", [[0.5, 0.5], [0.4, 0.6]])
def test_r2_means_are_plain_means(values):
    results = [seed_result(k, [1.0, 0.5]) for k in range(2)]
    for r, v in zip(results, values):
        r.test["r2"] = r.train["r2"] = v
        r.history["r2"] = r.history["test_r2"] = np.full(2, v, np.float32)
    record = trial_record(results, 2, 1, metrics=("r2",), rows=(30, N_TEST))
    assert record.value == pytest.approx(0.5)
    assert "n_test" not in record.user_attrs  # row counts make accuracies exact; R² has none


@pytest.mark.parametrize("values, expected", [
    ([0.7, 0.8], (0.75 - 12.7062047 * 0.0707106781 / 2 ** 0.5, 0.75 + 12.7062047 * 0.0707106781 / 2 ** 0.5)),
    ([0.5, 0.5, 0.5], (0.5, 0.5)),  # no spread: the interval is the mean
    ([0.6], (math.nan, math.nan)),  # one seed: no interval
])
def test_ci95_is_the_student_t_interval_of_the_mean(values, expected):
    low, high = ci95(np.array(values))
    assert (low, high) == pytest.approx(expected, nan_ok=True)


def validated_trial(number: int, params: dict, test_correct: list[int], validation_correct: list[int]):
    """A complete trial of a study with 10 validation rows: ``validation_correct`` of them right per seed."""
    import dataclasses

    results = [dataclasses.replace(seed_result(k, [1.0, 0.5], float(np.float32(c) / np.float32(N_TEST))),
                                   validation={"loss": 0.5, "accuracy": float(np.float32(v) / np.float32(10))})
               for k, (c, v) in enumerate(zip(test_correct, validation_correct))]
    record = trial_record(results, 2, 1, rows=(20, N_TEST, 10))
    C = optuna.distributions.CategoricalDistribution
    dists = {"norm": C(["none", "l1"])}
    if params["norm"] != "none":
        dists.update(strength=C([1e-4, 1e-3]), placement=C(["pre"]))
    t = optuna.trial.create_trial(params=params, distributions=dists, value=record.value, user_attrs=record.user_attrs)
    t.number = number
    return t


def test_the_star_goes_to_the_validation_winner_and_the_test_rows_only_report():
    names = ["norm", "strength", "placement"]
    trials = [
        validated_trial(0, {"norm": "none"}, [50, 50, 50], [6, 6, 6]),
        validated_trial(1, {"norm": "l1", "strength": 1e-4, "placement": "pre"}, [56, 57, 55], [6, 7, 6]),  # best test
        validated_trial(2, {"norm": "l1", "strength": 1e-3, "placement": "pre"}, [52, 53, 52], [8, 8, 9]),  # by valid.
    ]
    assert trials[2].value == pytest.approx(25 / 30)  # the trial value: the mean validation accuracy
    summary = summary_frame(trials, names)
    by = summary.set_index("trial_number")
    assert by.loc[1, "rank_test_accuracy"] == 1 and by.loc[2, "rank_validation_accuracy"] == 1
    assert by.loc[2, "mean_validation_accuracy"] == 25 / 30 and by.loc[1, "rank_validation_accuracy"] == 2
    winner = int(summary.index[summary["trial_number"] == 2][0])
    assert marks(summary) == {winner: "★"}
    md = summary_markdown(summary)
    assert md.splitlines()[2].startswith("| 1 | l1(0.001) pre ★ |")  # first by the validation rank
    assert "chosen on validation rows" in md and "optimistic" not in md
    tex = summary_latex(summary, "validated")
    assert "Valid." in tex and "mean validation accuracy, on which the best is chosen" in tex
    assert "{\\bfseries\\boldmath l1(0.001) pre$^{\\star}$}" in tex
    # Without validation rows the table says that the best was chosen on the rows that report it.
    plain = summary_frame([trial(0, {"norm": "none"}, [50, 51]), trial(1, {"norm": "l1", "strength": 1e-4,
                                                                           "placement": "pre"}, [55, 56])], names)
    assert "its test value is optimistic" in summary_markdown(plain)
    assert "so its test value is optimistic" in summary_latex(plain, "plain")


def test_ranks_and_the_star_compare_the_seeds_every_configuration_has():
    """A race stops configurations at different looks: one stopped after five lucky seeds must not rank
    above one that was as good on those five and ran on. Ranks compare the shared seeds; each row's mean
    stays over its own seeds, and the legend says so."""
    trials = [
        trial(0, {"norm": "none"}, [50] * 10),
        trial(1, {"norm": "l1", "strength": 1e-4, "placement": "pre"}, [60] * 5),  # stopped at five seeds
        trial(2, {"norm": "l1", "strength": 1e-3, "placement": "pre"}, [61] * 5 + [40] * 5),  # lower mean over ten
    ]
    frame = summary_frame(trials, ["norm", "strength", "placement"]).set_index("trial_number")
    assert frame.loc[2, "mean_test_accuracy"] < frame.loc[1, "mean_test_accuracy"]
    assert list(frame["rank_test_accuracy"]) == [3, 2, 1] and set(frame["ranked_on_seeds"]) == {5}
    summary = frame.reset_index()
    assert marks(summary) == {2: "★"}
    assert "compare the means over the 5 seeds that every configuration has" in summary_markdown(summary)
    even = summary_frame([trials[0], trials[2]], ["norm", "strength", "placement"])
    assert set(even["ranked_on_seeds"]) == {10} and "5 seeds that every" not in summary_markdown(even)


def test_a_tie_for_best_is_named_a_tie_in_the_run_report_and_the_cli_table():
    import pandas as pd

    from search.run import RunReport, summary_text

    def row(placement, mean, std, rank):
        return {"configuration": f"l1(0.0001) {placement}", "param_norm": "l1", "param_strength": 1e-4,
                "param_placement": placement, "status": "ok", "n_seeds": 30, "n_diverged": 0,
                "mean_test_accuracy": mean, "std_test_accuracy": std, "mean_train_accuracy": 1.0,
                "rank_test_accuracy": rank}

    tie = pd.DataFrame([row("pre", 0.74, 0.012, 1), row("post", 0.74, 0.010, 1)])
    report = RunReport(study_name="s", storage="sqlite://", metric="accuracy", configurations_run=2,
                       configurations_skipped=0, fits=60, wall_seconds=1.0, summary=tie)
    assert "tied for best: l1(0.0001) post, l1(0.0001) pre: test accuracy 0.740;" in repr(report)
    assert "best l1" not in repr(report)
    assert "(a tie for rank 1: l1(0.0001) post, l1(0.0001) pre share the best mean; none is named best)" in \
        summary_text(tie)
    one = pd.DataFrame([row("pre", 0.75, 0.012, 1), row("post", 0.74, 0.010, 2)])
    report = RunReport(study_name="s", storage="sqlite://", metric="accuracy", configurations_run=2,
                       configurations_skipped=0, fits=60, wall_seconds=1.0, summary=one)
    assert "best l1(0.0001) pre: test accuracy 0.750 ± 0.012" in repr(report)
    assert "a tie" not in summary_text(one)


def _visible(tex: str) -> str:
    """What a caption prints, roughly: commands and braces dropped, math kept as its symbols."""
    import re

    text = re.sub(r"\\(allowbreak|mathrm|texttt|bfseries|boldmath)\b", "", tex)
    text = re.sub(r"\\[a-zA-Z]+", "x", text)  # a symbol (\pm, \Delta, \star) prints one character
    return re.sub(r"[{}$^_]", "", text)


@pytest.mark.parametrize("narrow, per_line", [(False, 130), (True, 55)])
def test_a_latex_caption_takes_at_most_four_lines_and_the_setting_goes_under_the_table(narrow, per_line):
    """Four lines of the caption's width: a full-width table at footnotesize holds about 130 characters
    a line, one column at small about 55. The verdicts' method and the setting are the note below."""
    import re

    from search.results.stats import baseline_comparison

    trials = [trial(0, {"norm": "none"}, [50, 50, 51, 50, 50, 49]),
              trial(1, {"norm": "l1", "strength": 1e-4, "placement": "pre"}, [55, 56, 57, 56, 55, 57]),
              trial(2, {"norm": "l1", "strength": 1e-3, "placement": "pre"}, [51, 50, 52, 50, 51, 51])]
    names = ["norm", "strength", "placement"]
    summary, comparison = summary_frame(trials, names), baseline_comparison(trials, names)
    tex = summary_latex(summary, "a study with a long name", comparison=comparison, narrow=narrow,
                        varied="initialization and order (data fixed: one draw)")  # the setting: test_report.py
    caption = re.search(r"\\caption\{(.*)\}\n", tex).group(1)
    assert len(_visible(caption)) <= 4 * per_line, _visible(caption)
    note = re.search(r"\{\\scriptsize\\raggedright (.*)\\par\}\n", tex).group(1)
    assert "Verdict:" in note and "Verdict:" not in caption and "varied between seeds" in note.lower()
    if not narrow:  # both bounds of Δ's interval signed, as the Markdown tables write them
        assert re.search(r"\[\$[+-]\d\.\d{3}\$, \$[+-]\d\.\d{3}\$\]", tex), tex
