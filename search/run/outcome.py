"""What a run returns and prints: :class:`RunReport` and the CLI's table of the best configurations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from search.results.records import selection_rank
from search.results.stats import ALPHA, VERDICT_MIN_PAIRS, verdict_labels
from search.store import schema
from search.store.schema import OK, RACE_REASON, STATUS_ATTR, mean, std
from search.study.metrics import METRIC_LABELS

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True, kw_only=True)
class RunReport:
    """What one call of :func:`run_study` did; ``summary`` has one row per stored configuration.

    Counts are of configurations: ``configurations_run`` were fitted and stored by this
    runner (``configurations_diverged`` of them diverged), ``configurations_failed``
    raised, ``configurations_skipped`` were stored before this run began and
    ``configurations_by_others`` were stored meanwhile by other runners. ``stopped``
    says why the run stopped early (the failure budget), else ``None``. ``training_seconds``
    is the time the programs took to fit (XLA compiles a program at its first fit in a
    process: included), summed over the processes that fitted them, beside ``wall_seconds``;
    ``peak_memory_mb`` the largest peak resident memory of one of those processes. ``storage``
    is the storage URL with any password masked. ``comparison`` holds each configuration's
    paired statistics and verdict against the baseline (see :mod:`search.results.stats`).
    """

    study_name: str
    storage: str
    metric: str  # the objective: the metric the summary ranks by
    configurations_run: int
    configurations_skipped: int
    fits: int
    wall_seconds: float
    summary: pd.DataFrame
    configurations_diverged: int = 0
    configurations_failed: int = 0
    configurations_by_others: int = 0
    stopped: str | None = None
    comparison: pd.DataFrame | None = None
    training_seconds: float = 0.0  # the programs' fit time (XLA's compilation included), summed over processes
    peak_memory_mb: float = 0.0  # the largest peak resident memory of a process that fitted them
    models_per_program: int = 0  # the largest program's models (configurations x seeds of a chunk)

    def _best(self) -> str:
        if self.summary.empty:
            return "no configuration stored"
        m = self.metric
        ok = self.summary[self.summary[STATUS_ATTR] == OK]
        if ok.empty:
            return "every configuration diverged"
        tied = best_rows(ok, m)
        label = METRIC_LABELS.get(m, m)
        if len(tied) > 1:  # they share the mean
            names = list(tied["configuration"])
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            return f"tied for best: {shown}: test {label} {tied[mean('test', m)].iloc[0]:.3f}"
        best = tied.iloc[0]
        return f"best {best['configuration']}: test {label} {best[mean('test', m)]:.3f} ± {best[std('test', m)]:.3f}"

    def __repr__(self) -> str:
        others = f", {self.configurations_by_others} by other runners" if self.configurations_by_others else ""
        return (f"RunReport(study {self.study_name!r}: {self.configurations_run} configurations run "
                f"({self.configurations_diverged} diverged), {self.configurations_failed} failed, "
                f"{self.configurations_skipped} already stored{others}; {self.fits} fits in "
                f"{self.wall_seconds:.1f} s; {self._best()}; .summary and .comparison hold the tables)")

    def _repr_html_(self) -> str:
        """A notebook's view: the counts, then each configuration's mean ± std and verdict, best first."""
        import html

        head = html.escape(repr(self)[len("RunReport("):-1])
        if self.summary.empty:
            return f"<p><b>RunReport</b> {head}</p>"
        m = self.metric
        frame = self.summary.sort_values(selection_rank(self.summary, m))
        verdicts = verdict_labels(self.comparison)
        rows = "".join(
            f"<tr><td>{html.escape(r['configuration'])}</td><td>{int(r['n_seeds'])}</td>"
            f"<td>{r[mean('test', m)]:.3f} ± {r[std('test', m)]:.3f}</td>"
            f"<td>{html.escape(verdicts.get(r['configuration'], '–'))}</td></tr>" if r[STATUS_ATTR] == OK else
            f"<tr><td>{html.escape(r['configuration'])}</td><td>{int(r['n_seeds'])}</td><td>diverged</td>"
            "<td>–</td></tr>" for _, r in frame.head(20).iterrows())
        more = f"<p>… {len(frame) - 20} more in <code>.summary</code></p>" if len(frame) > 20 else ""
        return (f"<p><b>RunReport</b> {head}</p><table><thead><tr><th>configuration</th><th>seeds</th>"
                f"<th>test {html.escape(METRIC_LABELS.get(m, m))} (mean ± std)</th><th>verdict</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>{more}")


def best_rows(ok: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The finite configurations ranked first (by :func:`search.results.records.selection_rank`): one, or
    several that share the best mean (a tie, which names no best)."""
    rank = selection_rank(ok, metric)
    return ok[ok[rank] == ok[rank].min()].sort_values([c for c in ok.columns if schema.is_param(c)])


def summary_text(summary: pd.DataFrame, metric: str = "accuracy", limit: int = 20,
                 comparison: pd.DataFrame | None = None, varied: str | None = None) -> str:
    """A short, human-readable table of the best configurations (by :func:`search.results.records.selection_rank`),
    with their verdicts against the baseline when ``comparison`` is given; every diverged one is listed
    too. ``varied`` (what varied between replicates) and the rows the ranking was chosen on close it."""
    if summary.empty:
        return "no completed configurations"
    m = metric
    rank = selection_rank(summary, m)
    validated = rank == schema.rank("validation", m)
    cols = [c for c in summary.columns if schema.is_param(c)]
    ordered = summary.sort_values([rank] + cols, na_position="first")
    ok = ordered[ordered[STATUS_ATTR] == OK]
    table = _concat(ok.head(limit), ordered[ordered[STATUS_ATTR] != OK])
    judged = verdict_labels(comparison)
    name = METRIC_LABELS.get(m, m)
    head = f"{'rank':>4}  {'configuration':<28}"
    if validated:
        head += f" {f'valid. {name}':>12}"
    head += f" {f'test {name} (mean ± std)':>24}  {f'train {name}':>11}  {'seeds':>5}"
    lines = [head + ("  verdict" if judged else "")]
    for _, row in table.iterrows():
        label = row["configuration"]
        n = int(row["n_seeds"])
        if row[STATUS_ATTR] != OK:
            lines.append(f"{int(row[rank]):>4}  {label:<28} " + (f"{'–':>12} " if validated else "")
                         + f"{f'diverged on {int(row.n_diverged)} of {n} seeds':>24}  {'–':>11}  {n:>5}")
            continue
        line = f"{int(row[rank]):>4}  {label:<28} "
        if validated:
            line += f"{row[mean('validation', m)]:>12.3f} "
        line += (f"{row[mean('test', m)]:>15.3f} ± {row[std('test', m)]:.3f}  "
                 f"{row[mean('train', m)]:>11.3f}  {n:>5}")
        if judged:
            line += f"  {judged.get(label, '–')}"
        lines.append(line)
    if len(ok) > limit:
        lines.append(f"... {len(ok) - limit} more; see `actreg export`")
    tied = best_rows(ok, m) if not ok.empty else ok
    if len(tied) > 1:
        lines.append(f"(a tie for rank 1: {', '.join(tied['configuration'])} share the best mean; none is named best)")
    chosen = ("ranked by the validation rows; test on rows not used to choose" if validated else
              "ranked by the test rows that report it (no validation rows): the best test value is optimistic")
    lines.append(f"({chosen}" + (f"; varied between seeds: {varied}" if varied else "") + ")")
    if judged and comparison is not None and RACE_REASON in comparison.columns:
        rope = comparison["rope"].iloc[0]
        lines.append(f"(verdicts of a race against the baseline, each at the look where the configuration stopped "
                     f"(its seeds); region of practical equivalence ±{rope:g}; at most a {ALPHA:.0%} chance of any "
                     "wrong verdict over all looks for independent replicates; no verdict before "
                     f"{VERDICT_MIN_PAIRS}; `actreg report` for the numbers)")
    elif judged and comparison is not None:
        rope = comparison["rope"].iloc[0]
        lines.append(f"(verdict against the baseline, region of practical equivalence ±{rope:g}; "
                     f"at most a {ALPHA:.0%} chance of any wrong verdict for independent replicates; no verdict "
                     f"with fewer than {VERDICT_MIN_PAIRS}; `actreg report` for the numbers)")
    return "\n".join(lines)


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    import pandas as pd

    return pd.concat(frames)
