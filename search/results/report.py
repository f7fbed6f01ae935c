"""``actreg report``: tables, figures, statistics and a one-page ``report.md`` for a study.

Computing and writing are apart: :func:`report_data` turns the trials into tables,
statistics and figure data (pure; the tests check it), and the writers only write. Everything
comes from the Optuna storage, so a report can be written on any machine that reaches it.
Files are written to a temporary folder first and moved into place together, so an
interrupted report leaves the previous one intact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from search.results import figures
from search.results.latex import summary_latex
from search.results.records import (
    complete_trials,
    configuration_of,
    curves_frame,
    selection_rank,
    summary_frame,
    write_csv,
)
from search.results.setting import (
    describe_data,
    describe_model,
    replicates_words,
    setting_words,
    study_setting,
    write_setting,
)
from search.results.stats import (
    ALPHA,
    MIN_SEEDS,
    POWER,
    SKEW_FACTOR,
    VERDICT_MIN_PAIRS,
    VERDICTS,
    baseline_comparison,
    reference_table,
    verdict_cell,
    verdict_labels,
)
from search.results.words import (
    legend,
    marks,
    number,
    partial_words,
    pm,
    present,
    pvalue,
    short,
)
from search.store import schema
from search.store.dashboard import attach_report
from search.store.reading import read_stored
from search.store.storage import read_only
from search.study.metrics import METRIC_LABELS, MINIMIZED
from search.study.space import iter_param_names
from search.study.spec import StudySpec
from search.study.validation import file_name

if TYPE_CHECKING:
    import optuna
    import pandas as pd

FORMATS = ("png", "pdf", "svg")


@dataclass(frozen=True)
class FigureData:
    """One figure of a report: its file name (without extension), its title, and what to draw.

    ``kind`` names the function in :data:`FIGURES` that makes it: ``FIGURES[kind](*data,
    width=width, **options)`` returns a Matplotlib figure at that print width.
    """

    name: str
    title: str
    kind: str
    data: tuple
    options: dict = field(default_factory=dict)


FIGURES: dict[str, Callable[..., Any]] = {
    "heatmap": figures.figure_heatmap, "sparsity": figures.figure_sparsity, "curves": figures.figure_curves,
    "seeds": figures.figure_distribution}


@dataclass(frozen=True, eq=False)
class ReportData:
    """Everything a report shows, computed from the trials alone (no files, no storage)."""

    spec: StudySpec
    versions: dict[str, str]
    summary: pd.DataFrame  # the export table
    comparison: pd.DataFrame  # paired statistics against the baseline
    references: pd.DataFrame | None  # published single runs beside the measured distribution
    curves: pd.DataFrame  # every configuration's learning curves
    diverged: tuple[str, ...]  # one line per diverged configuration
    figures: tuple[FigureData, ...]
    partial: str | None = None  # "12 of 17 configurations stored" while the study is not complete
    setting: dict = field(default_factory=dict)  # what the numbers depend on (study.json; see search.results.setting)


@dataclass(frozen=True)
class Report:
    folder: Path
    files: tuple[Path, ...]
    notes: tuple[str, ...] = ()  # how the study file differs from the stored study described
    partial: str | None = None


def report_data(spec: StudySpec, trials: Sequence[optuna.trial.FrozenTrial],
                versions: dict[str, str] | None = None, partial: str | None = None,
                fingerprint: dict | None = None, race: Sequence[dict] | None = None) -> ReportData:
    """The tables, statistics and figure data of ``spec``'s study from its ``trials`` (``partial``:
    how much of a study still running, or stopped, they are; ``fingerprint``: as the study recorded it;
    ``race``: the looks a race took)."""
    names = list(iter_param_names(spec.space))
    m = spec.objective
    summary = summary_frame(trials, names, m, spec.maximize)
    comparison = baseline_comparison(trials, names, m, spec.rope, race=race)
    references = reference_table(spec.references, trials)
    setting = study_setting(spec, dict(versions or {}), fingerprint, partial, comparison)
    return ReportData(spec, dict(versions or {}), summary, comparison, references, curves_frame(trials, names),
                      tuple(diverged_lines(trials)), tuple(_figures(spec, trials, summary, comparison, references)),
                      partial, setting)


def _figures(spec: StudySpec, trials, summary: pd.DataFrame, comparison: pd.DataFrame,
             references: pd.DataFrame | None) -> list[FigureData]:
    m, label = spec.objective, METRIC_LABELS[spec.objective]
    out: list[FigureData] = []
    if summary.empty:
        return out
    regularized = summary[summary["param_norm"] != "none"]
    if regularized["param_strength"].nunique() > 1:  # one strength makes 1 x 1 panels: the tables say it better
        if not comparison.empty:
            rope = f"{comparison['rope'].iloc[0]:g}"
            dagger = "† the race's verdict is better or worse" if schema.RACE_REASON in comparison \
                else f"† Holm p < {ALPHA}"
            title = (f"test {label}: difference from the baseline (paired, mean over seeds); {dagger}; "
                     f"hatched: equivalent (shown within ±{rope})")
            out.append(FigureData(f"heatmap_delta_{m}", title, "heatmap",
                                  (figures.delta_heatmap_data(summary, comparison, title),),
                                  {"cmap": "RdBu" if spec.maximize else "RdBu_r", "fmt_bar": "{:+.3f}"}))
        validation = ((f"heatmap_validation_{m}", schema.mean("validation", m), "mean_std",
                       f"validation {label} (the rows configurations are chosen on), mean±std over seeds"),) \
            if schema.mean("validation", m) in summary else ()
        for name, value, annotate, title in (
            *validation,
            (f"heatmap_test_{m}", schema.mean("test", m), "mean_std", f"test {label}, mean±std over seeds"),
            (f"heatmap_std_test_{m}", schema.std("test", m), None, f"std of test {label} over seeds"),
            ("heatmap_zero_fraction", schema.mean("test", schema.ZERO_FRACTION), None,
             "fraction of exact zeros in regularized layers"),
        ):
            cmap = "viridis_r" if schema.is_mean(value) and value.endswith(f"_{m}") and not spec.maximize \
                else "viridis"
            out.append(FigureData(name, title, "heatmap", (figures.heatmap_data(summary, value, annotate, title),),
                                  {"cmap": cmap}))
    if len(regularized):
        out.append(FigureData("sparsity", "sparsity of the regularized layers against strength", "sparsity",
                              figures.sparsity_data(summary)))
    chosen = "validation" if schema.mean("validation", m) in summary else "test"
    out.append(FigureData("curves", "learning curves: baseline and the best configuration of each norm and placement "
                          f"(best by mean {chosen} {label})", "curves", (figures.selected_curves(trials, m),)))
    points = {} if references is None else dict(zip(references["configuration"],
                                                     references["published_test_accuracy"]))
    out.append(FigureData("seeds", f"test {label} of every seed", "seeds", (figures.seed_distribution(trials, m),),
                          {"references": points}))
    return out


def write_report(spec: StudySpec, out: str | os.PathLike[str] | None = None, fmt: str = "png",
                 attach: bool = True, width: str = "text") -> Report:
    """Write the report of ``spec``'s stored study into ``out`` (default ``reports/<name>``).

    With ``attach``, the figures are also attached to the study as Optuna artifacts (kept
    in ``<out>/artifacts``) and the summary becomes the study's note in optuna-dashboard.
    ``width`` sizes the figures for print: ``"text"`` (7 in, a page's full width) or
    ``"column"`` (3.3 in, one column of two); their text is at least 7 pt at that size.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    figures.figure_width(width)
    stored = read_stored(spec)
    spec = stored.spec  # with the seeds and epochs it was run with
    data = report_data(spec, stored.trials, stored.versions, stored.partial, stored.fingerprint, stored.race)
    if data.summary.empty:
        raise ValueError(f"study {spec.name!r} has no completed configuration yet")
    folder = Path(out) if out is not None else default_folder(spec)
    notes = stored.notes
    locked = read_only(spec.storage) if attach else None
    if locked:  # found before anything is written: the files are, the attachment is not
        attach = False
        notes += ((f"storage: {locked}: the report is written but not attached to the study (its figures and "
                   "note in optuna-dashboard); --no-attach says so at once"),)
    files = _write_into(folder, data, fmt, width)
    if attach:
        shown = [f for f in files if f.suffix == f".{fmt}" or f.name == "curves.csv"]
        attach_report(spec, folder, shown, summary_markdown(data.summary, spec.objective, data.comparison,
                                                            spec.data.variance_sources, data.partial, data.setting))
    return Report(folder, tuple(files), notes, stored.partial)


def report_figures(spec: StudySpec, width: str = "text") -> dict[str, object]:
    """The report's figures of ``spec``'s stored study as Matplotlib figures, by name (``"curves"``,
    ``"seeds"``, ...): to show in a notebook or to finish by hand. Made outside pyplot, so the
    notebook's backend is left as it is; a notebook shows each one as an image."""
    figures.figure_width(width)
    stored = read_stored(spec)
    data = report_data(stored.spec, stored.trials, stored.versions, stored.partial, stored.fingerprint, stored.race)
    return {f.name: FIGURES[f.kind](*f.data, width=width, **f.options) for f in data.figures}


def _write_into(folder: Path, data: ReportData, fmt: str, width: str = "text") -> list[Path]:
    """Write the report's files into ``folder``: each appears whole or not at all."""
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=folder))
    try:
        files = []
        for name in write_files(data, staging, fmt, width):
            os.replace(staging / name, folder / name)
            files.append(folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return files


def default_folder(spec: StudySpec) -> Path:
    """``reports/<name>`` of the study's project: beside its ``studies/`` folder, else beside the study file."""
    folder = file_name(spec.name)  # as its default storage: a name is not a path
    if spec.path is None:
        return Path("reports") / folder
    here = Path(spec.path).resolve().parent
    project = here.parent if here.name == "studies" else here
    return project / "reports" / folder


def write_files(data: ReportData, folder: Path, fmt: str, width: str = "text") -> list[str]:
    """Write every table, figure and ``report.md`` of ``data`` into ``folder``; returns the file names."""
    m, name, varied, setting = data.spec.objective, data.spec.name, data.spec.data.variance_sources, data.setting
    texts = {
        "summary.md": summary_markdown(data.summary, m, data.comparison, varied, data.partial, setting) + "\n",
        "summary.tex": summary_latex(data.summary, name, m, data.comparison, varied=varied, partial=data.partial,
                                     setting=setting),
        "summary-narrow.tex": summary_latex(data.summary, name, m, data.comparison, narrow=True, varied=varied,
                                            partial=data.partial, setting=setting),
    }
    tables = {"summary.csv": data.summary, "stats.csv": data.comparison, "curves.csv": data.curves}
    if data.references is not None:
        tables["references.csv"] = data.references
    written = ["summary.csv", *texts, "stats.csv", "curves.csv", *(["references.csv"] * (data.references is not None)),
               "study.json"]
    write_setting(setting, folder / "study.json")  # the CSVs' setting, as export writes it beside its file
    for file, text in texts.items():
        (folder / file).write_text(text)
    for file, frame in tables.items():
        write_csv(frame, folder / file)
    figs = []
    for f in data.figures:
        figures.save(FIGURES[f.kind](*f.data, width=width, **f.options), str(folder / f"{f.name}.{fmt}"))
        written.append(f"{f.name}.{fmt}")
        figs.append((f"{f.name}.{fmt}", f.title))
    written.append("report.md")
    (folder / "report.md").write_text(report_markdown(data, figs, written))
    return written


# ----------------------------------------------------------------------------- tables














def summary_markdown(summary: pd.DataFrame, metric: str = "accuracy", comparison: pd.DataFrame | None = None,
                     varied: str | None = None, partial: str | None = None, setting: dict | None = None) -> str:
    """The summary as a Markdown table, best first by :func:`selection_rank`, with its legend.

    ``comparison`` adds the marks and the verdicts; ``varied`` says what varied between the
    replicates (``DataSpec.variance_sources``); ``partial`` (``"12 of 17 configurations stored"``)
    heads a study that is not complete; ``setting`` (:func:`search.results.setting.study_setting`)
    closes it in one sentence.
    """
    m, label = metric, METRIC_LABELS[metric]
    frame = summary.reset_index(drop=True)
    marked = marks(frame, comparison, m)
    validated = schema.mean("validation", m) in frame
    judged = verdict_labels(comparison)
    head = ["rank", "configuration", "seeds", *([f"validation {label}"] if validated else []),
            f"test {label} (mean ± std)", "95% CI", f"train {label}", "zero fraction", *(["verdict"] if judged else [])]
    align = ["---:", "---", "---:", *(["---"] if validated else []), "---", "---", "---", "---:",
             *(["---"] if judged else [])]
    lines = [*([partial_words(partial), ""] if partial else []),
             "| " + " | ".join(head) + " |", "|" + "|".join(align) + "|"]
    rank = selection_rank(frame, m)
    for i in frame.sort_values([rank]).index:
        r = frame.loc[i]
        name = r["configuration"] + (f" {marked[i]}" if i in marked else "")
        if r[schema.STATUS_ATTR] != schema.OK:
            cells = [str(r[rank]), name, str(r["n_seeds"]), *(["–"] if validated else []),
                     f"diverged on {r['n_diverged']} seeds", "–", "–", "–", *(["–"] if judged else [])]
        else:
            cells = [str(r[rank]), name, str(r["n_seeds"]),
                     *([pm(r[schema.mean("validation", m)], r[schema.std("validation", m)])] if validated else []),
                     pm(r[schema.mean("test", m)], r[schema.std("test", m)]),
                     f"[{number(r[schema.ci95('low', 'test', m)])}, {number(r[schema.ci95('high', 'test', m)])}]",
                     pm(r[schema.mean("train", m)], r[schema.std("train", m)]),
                     number(r[schema.mean("test", schema.ZERO_FRACTION)]),
                     *([judged.get(r["configuration"], "–")] if judged else [])]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    lines.append(legend(m, frame, comparison, varied) + " std: sample standard deviation over seeds (ddof = 1); "
                 "CI: 95% Student-t interval of the mean. Diverged: the loss became NaN or infinite on some seeds; "
                 "such a configuration has no mean, ranks last and is left out of the statistics.")
    if setting:
        lines += ["", setting_words(setting)]
    return "\n".join(lines)


















def stats_markdown(comparison: pd.DataFrame, metric: str = "accuracy") -> str:
    """The paired statistics and verdicts against the baseline as a Markdown table, largest gain first."""
    if comparison.empty:
        return "No baseline (norm = \"none\") in this study: nothing to compare against."
    lines = [(f"| configuration | pairs | Δ test {METRIC_LABELS[metric]} | 95% CI of Δ | sd of Δ | t-test p (Holm) "
              "| Wilcoxon p (Holm) | d_z | verdict | detectable \\|Δ\\| | replicates to decide |"),
             "|---|---:|---:|---|---:|---|---|---:|---|---:|---:|"]
    for _, r in comparison.sort_values(schema.mean("test", schema.DIFF), ascending=metric in MINIMIZED).iterrows():
        flag = " ⚠" if r["few_seeds"] else ""
        needed = r["replicates_needed"]
        mean, sd = r[schema.mean("test", schema.DIFF)], r[schema.std("test", schema.DIFF)]
        low, high = r[schema.ci95("low", "test", schema.DIFF)], r[schema.ci95("high", "test", schema.DIFF)]
        lines.append(
            f"| {r['configuration']}{flag} | {r['n_pairs']} | {mean:+.3f} | [{low:+.3f}, {high:+.3f}] | {number(sd)} | "
            f"{pvalue(r['t_pvalue'])} ({pvalue(r['t_pvalue_holm'])}) | "
            f"{pvalue(r['wilcoxon_pvalue'])} ({pvalue(r['wilcoxon_pvalue_holm'])}) | "
            f"{number(r['effect_size_dz'], 2)} | "
            f"{verdict_cell(r)} | {number(r['detectable_diff'])} | "
            f"{'–' if not present(needed) else f'{int(needed):,}'} |")
    if comparison["few_seeds"].any():
        lines.append(f"\n⚠ fewer than {MIN_SEEDS} paired seeds: these tests have almost no power; "
                     "read them as anecdotes.")
    return "\n".join(lines)


def verdict_method_words(m: int) -> str:
    """How each region is tested and what the stated error rate rests on, in sentences."""
    return (f"Each region is tested with the studentized bootstrap of the paired differences (equivalent: two "
            "one-sided tests; better and worse: the difference shown outside the rope, in that direction), its "
            f"p-value multiplied by the {m} configurations. A verdict is withheld (undecided) with fewer than "
            f"{VERDICT_MIN_PAIRS} replicates or with no spread; with a skewness the bootstrap does not correct at "
            f"that many replicates (n < {SKEW_FACTOR}·G1²) it must pass Cantelli's inequality as well. So the chance "
            "that any verdict is wrong is at most "
            f"{ALPHA} for independent replicates, as checked by simulation on normal, heavy-tailed, skewed, "
            "binomial and stepped differences (benchmarks/calibration.py, docs/reports.md).")


def verdicts_markdown(comparison: pd.DataFrame, metric: str = "accuracy") -> str:
    """How the verdicts were reached, and their counts, as a paragraph."""
    if comparison.empty:
        return ""
    counts = comparison["verdict"].value_counts()
    tally = ", ".join(f"{int(counts[v])} {v}" for v in VERDICTS if v in counts)
    m = len(comparison)
    rope = comparison["rope"].iloc[0]
    lower = " (for MAE lower is better, so better means a lower MAE)" if metric in MINIMIZED else ""
    if schema.RACE_REASON in comparison:
        return race_markdown(comparison, metric, tally, rope, lower)
    return (f"Verdicts: {tally}. Region of practical equivalence: ±{short(rope)} test {METRIC_LABELS[metric]}{lower}. "
            "For each configuration the true mean difference Δ lies in one of three regions: beyond +rope "
            "(better), within ±rope (equivalent) or beyond −rope (worse). " + verdict_method_words(m) +
            " (p_better, p_worse, p_equivalent in `stats.csv`; a verdict needs one of at most "
            f"{ALPHA}.) An undecided configuration lists the smallest |Δ| these replicates would detect with "
            f"{POWER:.0%} power (at its sd of Δ), and the replicates that would decide it if Δ were its observed mean.")


def race_markdown(comparison: pd.DataFrame, metric: str, tally: str, rope: float, lower: str) -> str:
    """The verdicts of a race: how they were reached, and where each configuration stopped."""
    m = len(comparison)
    rows = ["| configuration | stopped at (replicates) | why | verdict |", "|---|---:|---|---|"]
    for _, r in comparison.sort_values([schema.RACE_REPLICATES, "configuration"], na_position="last").iterrows():
        at = "–" if not present(r[schema.RACE_REPLICATES]) else f"{int(r[schema.RACE_REPLICATES])}"
        rows.append(f"| {r['configuration']} | {at} | {r[schema.RACE_REASON]} | {verdict_cell(r)} |")
    return (f"Verdicts of a race: {tally}. Region of practical equivalence: ±{short(rope)} test "
            f"{METRIC_LABELS[metric]}{lower}. Replicates were added in looks; at each look every configuration "
            "still racing was tested as in a study of fixed replicates, against the nominal level of an "
            f"O'Brien–Fleming group-sequential test of the looks at {ALPHA} / {m} (Lan–DeMets spending; "
            f"Bonferroni over the {m} configurations), and stopped with its verdict; one that could not reach a "
            "verdict by the last look stopped as `futile`. The baseline ran as long as any configuration raced. "
            + verdict_method_words(m) + " The p-values in "
            "`stats.csv` are those of the look where each configuration stopped, scaled so that a verdict's is at "
            f"most {ALPHA}; the intervals and tests beside them use every replicate it has.\n\n" + "\n".join(rows))


def references_markdown(refs: pd.DataFrame) -> str:
    lines = [("| configuration | published train / test | measured train (mean) | measured test (mean ± std) "
              "| seed range | where the published test accuracy falls |"),
             "|---|---|---:|---|---|---|"]
    for _, r in refs.iterrows():
        measured = schema.mean("test", "accuracy")
        if measured not in r or not present(r.get(measured)):
            lines.append(f"| {r['configuration']} | {number(r['published_train_accuracy'])} / "
                         f"{number(r['published_test_accuracy'])} | – | not in this study | – | – |")
            continue
        lines.append(
            f"| {r['configuration']} | {number(r['published_train_accuracy'])} / "
            f"{number(r['published_test_accuracy'])} | {number(r[schema.mean('train', 'accuracy')])} | "
            f"{pm(r[schema.mean('test', 'accuracy')], r[schema.std('test', 'accuracy')])} | "
            f"{number(r['min_test_accuracy'])}–{number(r['max_test_accuracy'])} | {r['where']} "
            f"(percentile {r['test_percentile']:.0f}, z = {r['test_z']:+.1f}) |")
    return "\n".join(lines)


def report_markdown(data: ReportData, figs: Sequence[tuple[str, str]], files: Sequence[str]) -> str:
    """The one-page ``report.md``: setup, tables, statistics, ``figs`` (file, title) and ``files``."""
    spec, summary, comparison, refs = data.spec, data.summary, data.comparison, data.references
    versions = data.versions
    m = spec.objective
    seeds = spec.seeds
    seed_text = f"{len(seeds)} ({seeds[0]}..{seeds[-1]})" if seeds == tuple(range(seeds[0], seeds[0] + len(seeds))) \
        else f"{len(seeds)} ({', '.join(map(str, seeds))})"
    d = spec.data
    penalty = {"mean": "mean — Keras >= 3.14: the activity penalty is divided by the batch size",
               "sum": "sum — Keras 2.2 and 3.0–3.13: the activity penalty is the plain sum over the batch"}
    parts = [
        f"# Study `{spec.name}`",
        "",
        "## Setup",
        "",
        f"- Data: {describe_data(d)}.",
        (f"- Model: {describe_model(spec.model)}; loss `{spec.model.loss}`; metric: test {METRIC_LABELS[m]} "
         f"({'higher' if spec.maximize else 'lower'} is better)."),
        (f"- Training: Adam (learning rate {spec.train.learning_rate}), {spec.train.epochs} epochs, batch size "
         f"{spec.train.batch_size}, shuffling {'on (order drawn from the seed)' if spec.train.shuffle else 'off'}."),
        (f"- Seeds (replicates): {seed_text}; every configuration ran the same seeds on the same data, so comparisons "
         f"are paired. {replicates_words(d)} Varied between replicates: {d.variance_sources}."),
        f"- Penalty convention: {penalty[spec.penalty]}.",
        f"- Search: {spec.sampler}; "
        + (partial_words(data.partial) if data.partial else f"{len(summary)} configurations completed."),
        f"- Libraries: {', '.join(f'{k} {v}' for k, v in data.setting.get('versions', versions).items())}.",
        (f"- Study fingerprint: {data.setting.get('fingerprint') or 'not recorded (stored by an earlier version)'}"
         " (the SHA-256 of the settings that determine the numbers; `study.json` holds the whole setting)."),
        "",
        f"## Test {METRIC_LABELS[m]}",
        "",
        summary_markdown(summary, m, comparison, d.variance_sources),
        "",
        "## Against the baseline",
        "",
        ("Δ = configuration minus baseline, seed by seed. p-values: paired t-test and Wilcoxon signed-rank; "
         "Holm-corrected across all configurations in parentheses. d_z = mean(Δ) / sd(Δ). "
         f"Varied between replicates: {d.variance_sources}."),
        "",
        stats_markdown(comparison, m),
        "",
        *([verdicts_markdown(comparison, m), ""] if not comparison.empty else []),
    ]
    diverged = "\n".join(data.diverged)
    if diverged:
        parts += ["## Diverged configurations", "",
                  ("The loss became NaN or infinite on these seeds (at the epoch given). Their accuracies come from "
                   "broken weights, so they have no mean, rank after every finite configuration and are left out of "
                   "the statistics against the baseline."), "", diverged, ""]
    if refs is not None:
        parts += ["## Published single runs", "",
                  "A single run is one draw from the distribution of seeds; this is where each published number falls.",
                  "", references_markdown(refs), ""]
    parts += ["## Figures", ""]
    for name, title in figs:
        parts += [f"### {title[0].upper() + title[1:]}", "", f"![{title}]({name})", ""]
    parts += ["## Files", ""] + [f"- [{f}]({f})" for f in files if f != "report.md"] + [""]
    return "\n".join(parts)


def diverged_lines(trials: Sequence[optuna.trial.FrozenTrial]) -> list[str]:
    """One line per diverged configuration: which seeds diverged, and at which epoch; none if none did."""
    lines = []
    for t in complete_trials(trials):
        a = t.user_attrs
        if a.get(schema.STATUS_ATTR, schema.OK) == schema.OK:
            continue
        seeds = ", ".join(f"{s} (epoch {e})" for s, e in zip(a[schema.DIVERGED_SEEDS_ATTR],
                                                                  a[schema.DIVERGED_EPOCHS_ATTR]))
        lines.append(f"- {configuration_of(t).label}: {a['n_diverged']} of {len(a['seeds'])} seeds: {seeds}")
    return lines










# Capital Greek letters that LaTeX has a command for (the others look like Latin capitals).




