"""The words and numbers the report's tables share (Markdown and LaTeX): marks, legends, number formats."""

from __future__ import annotations

import math

import pandas as pd

from search.results.records import selection_rank
from search.results.stats import ALPHA, VERDICT_MIN_PAIRS, daggered
from search.store import schema
from search.study.metrics import METRIC_LABELS


def present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def marks(summary: pd.DataFrame, comparison: pd.DataFrame | None = None, metric: str = "accuracy") -> dict[int, str]:
    """Row position -> its marks: "★" for the best configuration, "†" for a significant difference.

    ★ goes to the single finite configuration ranked first by :func:`selection_rank` (the
    validation metric where the study has validation rows, else the test metric), and to
    none when several share the best mean (a tie has no winner). † marks each configuration
    of :func:`daggered`.
    """
    frame = summary.reset_index(drop=True)
    out: dict[int, str] = {}
    best = frame[(frame[schema.STATUS_ATTR] == schema.OK) & (frame[selection_rank(frame, metric)] == 1)]
    if len(best) == 1:
        out[int(best.index[0])] = "★"
    if comparison is not None and not comparison.empty:
        significant = set(comparison["configuration"][daggered(comparison)])
        for i, r in frame.iterrows():
            if r["configuration"] in significant:
                out[int(i)] = out.get(int(i), "") + "†"
    return out


def dagger_words(comparison: pd.DataFrame | None, latex: bool = False) -> str:
    """What † means in the tables and figures of ``comparison`` (a race's or not), as a sentence."""
    p = f"$p < {ALPHA}$" if latex else f"p < {ALPHA}"
    if comparison is not None and schema.RACE_REASON in comparison:
        return ("a verdict of the race, better or worse: the difference from the baseline shown beyond the region "
                "of practical equivalence, with the error held over the looks")
    return f"paired difference from the baseline significant after Holm's correction (t-test, {p})"


def selection_words(summary: pd.DataFrame, metric: str = "accuracy") -> str:
    """On which rows ★ and the ranks were chosen, in one sentence."""
    label = METRIC_LABELS[metric]
    shared = ""
    if schema.RANKED_ON in summary and len(summary) and summary[schema.RANKED_ON].iloc[0] < summary["n_seeds"].max():
        shared = (f" Ranks and ★ compare the means over the {int(summary[schema.RANKED_ON].iloc[0])} seeds that every "
                  "configuration has (they stopped at different looks); each row's mean is over its own seeds.")
    if schema.rank("validation", metric) in summary:
        return (f"★ marks the best mean validation {label}, chosen on validation rows carved out of the training "
                "rows; the test columns report it on rows that played no part in the choice." + shared)
    return (f"★ marks the best mean test {label}, chosen on the same test rows that report it: its test value is "
            "optimistic (the largest of several noisy means); give [data] validation to choose on other rows." + shared)


def tied_best(summary: pd.DataFrame, metric: str) -> list[str]:
    """The finite configurations ranked first when several share the best mean (a tie), else ``[]``."""
    ok = summary[summary[schema.STATUS_ATTR] == schema.OK]
    if ok.empty:
        return []
    rank = selection_rank(ok, metric)
    tied = sorted(ok["configuration"][ok[rank] == ok[rank].min()])
    return tied if len(tied) > 1 else []


def tie_words(summary: pd.DataFrame, metric: str) -> str:
    """``" A tie for the best mean: x and y (no ★)."`` for a tie (see :func:`tied_best`), else ``""``."""
    tied = tied_best(summary, metric)
    return f" A tie for the best mean: {' and '.join(tied)} (no ★)." if tied else ""


def legend(metric: str, summary: pd.DataFrame, comparison: pd.DataFrame | None, varied: str | None) -> str:
    text = (f"{selection_words(summary, metric)} No mark when several configurations share the best mean."
            f"{tie_words(summary, metric)} † {dagger_words(comparison)}.")
    if comparison is not None and not comparison.empty:
        text += " " + verdict_words(comparison)
    if varied:
        text += f" Between replicates varied: {varied}."
    return text


def verdict_words(comparison: pd.DataFrame) -> str:
    """What the verdicts mean, in one paragraph."""
    rope = comparison["rope"].iloc[0]
    return (f"Verdict against the baseline with a region of practical equivalence of ±{short(rope)}: better or worse "
            f"when the difference is shown to lie beyond it, equivalent when shown to lie within it, else undecided; "
            f"the chance of any wrong verdict in the study is at most {ALPHA} for independent replicates (studentized "
            f"bootstrap tests of each region, Bonferroni over the configurations; no verdict with fewer than "
            f"{VERDICT_MIN_PAIRS} replicates or no spread, and a strong skew must pass Cantelli's bound too).")


def partial_words(partial: str) -> str:
    return (f"Partial study: {partial} (a run is under way or was stopped); the ranks, marks and corrections "
            "cover these alone.")


def short(v) -> str:
    return f"{float(v):g}"


def number(v, digits: int = 3) -> str:
    return "–" if not present(v) else f"{float(v):.{digits}f}"


def pm(mean, std) -> str:
    return f"{number(mean)} ± {number(std)}"


def pvalue(v) -> str:
    if not present(v):
        return "–"
    return f"{v:.2g}" if v >= 0.001 else "<0.001"
