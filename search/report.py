"""``actreg report``: tables, figures, statistics and a one-page ``report.md`` for a study.

Computing and writing are apart: :func:`report_data` turns the trials into tables,
statistics and figure data (pure; the tests check it), and the writers only write. Everything
comes from the Optuna storage, so a report can be written on any machine that reaches it.
Files are written to a temporary folder first and moved into place together, so an
interrupted report leaves the previous one intact.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from search import figures
from search.dashboard import attach_report
from search.layers import LAYERS
from search.metrics import METRIC_LABELS, METRICS, MINIMIZED
from search.results import complete_trials, configuration_of, curves_frame, summary_frame, write_csv
from search.sources import SOURCES
from search.space import iter_param_names
from search.spec import DataSpec, ModelSpec, StudySpec
from search.stats import MIN_SEEDS, baseline_comparison, reference_table
from search.storage import load_study

if TYPE_CHECKING:
    import optuna
    import pandas as pd

FORMATS = ("png", "pdf", "svg")
ALPHA = 0.05  # the significance level of the † mark (Holm-corrected paired t-test)


@dataclass(frozen=True)
class FigureData:
    """One figure of a report: its file name (without extension), its title, and what to draw.

    ``kind`` names the drawing function in :data:`DRAW`; it is called as
    ``DRAW[kind](*data, path=path, **options)``.
    """

    name: str
    title: str
    kind: str
    data: tuple
    options: dict = field(default_factory=dict)


DRAW = {"heatmap": figures.draw_heatmap, "sparsity": figures.draw_sparsity, "curves": figures.draw_curves,
        "seeds": figures.draw_distribution}


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


@dataclass(frozen=True)
class Report:
    folder: Path
    files: tuple[Path, ...]


def report_data(spec: StudySpec, trials: Sequence[optuna.trial.FrozenTrial],
                versions: dict[str, str] | None = None) -> ReportData:
    """The tables, statistics and figure data of ``spec``'s study from its ``trials``."""
    names = list(iter_param_names(spec.space))
    m = spec.objective
    summary = summary_frame(trials, names, m, spec.maximize)
    comparison = baseline_comparison(trials, names, m)
    references = reference_table(spec.references, trials)
    return ReportData(spec, dict(versions or {}), summary, comparison, references, curves_frame(trials),
                      tuple(diverged_lines(trials)), tuple(_figures(spec, trials, summary, comparison, references)))


def _figures(spec: StudySpec, trials, summary: pd.DataFrame, comparison: pd.DataFrame,
             references: pd.DataFrame | None) -> list[FigureData]:
    m, label = spec.objective, METRIC_LABELS[spec.objective]
    out: list[FigureData] = []
    if summary.empty:
        return out
    regularized = summary[summary["param_norm"] != "none"]
    if regularized["param_strength"].nunique() > 1:  # one strength makes 1 x 1 panels: the tables say it better
        if not comparison.empty:
            title = f"test {label}: difference from the baseline (paired, mean over seeds); † Holm p < {ALPHA}"
            out.append(FigureData(f"heatmap_delta_{m}", title, "heatmap",
                                  (figures.delta_heatmap_data(summary, comparison, title, ALPHA),),
                                  {"cmap": "RdBu" if spec.maximize else "RdBu_r", "fmt_bar": "{:+.3f}"}))
        for name, value, annotate, title in (
            (f"heatmap_test_{m}", f"mean_test_{m}", "mean_std", f"test {label}, mean±std over seeds"),
            (f"heatmap_std_test_{m}", f"std_test_{m}", None, f"std of test {label} over seeds"),
            ("heatmap_zero_fraction", "mean_zero_fraction", None, "fraction of exact zeros in regularized layers"),
        ):
            cmap = "viridis_r" if value == f"mean_test_{m}" and not spec.maximize else "viridis"
            out.append(FigureData(name, title, "heatmap", (figures.heatmap_data(summary, value, annotate, title),),
                                  {"cmap": cmap}))
    if len(regularized):
        out.append(FigureData("sparsity", "sparsity of the regularized layers against strength", "sparsity",
                              figures.sparsity_data(summary)))
    out.append(FigureData("curves", "learning curves: baseline and the best configuration of each norm and placement",
                          "curves", (figures.selected_curves(trials, m),)))
    points = {} if references is None else dict(zip(references["configuration"],
                                                     references["published_test_accuracy"]))
    out.append(FigureData("seeds", f"test {label} of every seed", "seeds", (figures.seed_distribution(trials, m),),
                          {"references": points}))
    return out


def write_report(spec: StudySpec, out: str | os.PathLike[str] | None = None, fmt: str = "png",
                 attach: bool = True) -> Report:
    """Write the report of ``spec``'s stored study into ``out`` (default ``reports/<name>``).

    With ``attach``, the figures are also attached to the study as Optuna artifacts (kept
    in ``<out>/artifacts``) and the summary becomes the study's note in optuna-dashboard.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    study = load_study(spec)
    data = report_data(spec, study.get_trials(deepcopy=False), study.user_attrs.get("versions", {}))
    if data.summary.empty:
        raise ValueError(f"study {spec.name!r} has no completed configuration yet")
    folder = Path(out) if out is not None else default_folder(spec)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=folder))
    try:
        written = write_files(data, staging, fmt)
        files = []
        for name in written:
            os.replace(staging / name, folder / name)
            files.append(folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if attach:
        shown = [f for f in files if f.suffix == f".{fmt}" or f.name == "curves.csv"]
        attach_report(study, spec, folder, shown, summary_markdown(data.summary, spec.objective))
    return Report(folder, tuple(files))


def default_folder(spec: StudySpec) -> Path:
    """``reports/<name>`` of the study's project: beside its ``studies/`` folder, else beside the study file."""
    if spec.path is None:
        return Path("reports") / spec.name
    here = Path(spec.path).resolve().parent
    project = here.parent if here.name == "studies" else here
    return project / "reports" / spec.name


def write_files(data: ReportData, folder: Path, fmt: str) -> list[str]:
    """Write every table, figure and ``report.md`` of ``data`` into ``folder``; returns the file names."""
    m, name = data.spec.objective, data.spec.name
    texts = {
        "summary.md": summary_markdown(data.summary, m, data.comparison) + "\n",
        "summary.tex": summary_latex(data.summary, name, m, data.comparison),
        "summary-narrow.tex": summary_latex(data.summary, name, m, data.comparison, narrow=True),
    }
    tables = {"summary.csv": data.summary, "stats.csv": data.comparison, "curves.csv": data.curves}
    if data.references is not None:
        tables["references.csv"] = data.references
    written = ["summary.csv", *texts, "stats.csv", "curves.csv", *(["references.csv"] * (data.references is not None))]
    for file, text in texts.items():
        (folder / file).write_text(text)
    for file, frame in tables.items():
        write_csv(frame, folder / file)
    figs = []
    for f in data.figures:
        DRAW[f.kind](*f.data, path=str(folder / f"{f.name}.{fmt}"), **f.options)
        written.append(f"{f.name}.{fmt}")
        figs.append((f"{f.name}.{fmt}", f.title))
    written.append("report.md")
    (folder / "report.md").write_text(report_markdown(data, figs, written))
    return written


# ----------------------------------------------------------------------------- tables


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def marks(summary: pd.DataFrame, comparison: pd.DataFrame | None = None, metric: str = "accuracy") -> dict[int, str]:
    """Row position -> its marks: "★" for the best configuration, "†" for a significant difference.

    ★ goes to the single finite configuration with rank 1, and to none when several share
    the best mean (a tie has no winner). † marks each configuration whose paired
    difference from the baseline is significant after Holm's correction (t-test, p < ALPHA).
    """
    frame = summary.reset_index(drop=True)
    out: dict[int, str] = {}
    best = frame[(frame["status"] == "ok") & (frame[f"rank_test_{metric}"] == 1)]
    if len(best) == 1:
        out[int(best.index[0])] = "★"
    if comparison is not None and not comparison.empty:
        significant = {r["configuration"] for _, r in comparison.iterrows() if _present(r["t_pvalue_holm"])
                       and r["t_pvalue_holm"] < ALPHA}
        for i, r in frame.iterrows():
            if r["configuration"] in significant:
                out[int(i)] = out.get(int(i), "") + "†"
    return out


def _legend(metric: str) -> str:
    return (f"★ the best mean test {METRIC_LABELS[metric]} (no mark when several configurations share it). "
            f"† paired difference from the baseline significant after Holm's correction (t-test, p < {ALPHA}).")


def summary_markdown(summary: pd.DataFrame, metric: str = "accuracy", comparison: pd.DataFrame | None = None) -> str:
    m, label = metric, METRIC_LABELS[metric]
    frame = summary.reset_index(drop=True)
    marked = marks(frame, comparison, m)
    lines = [f"| rank | configuration | seeds | test {label} (mean ± std) | 95% CI | train {label} | zero fraction |",
             "|---:|---|---:|---|---|---|---:|"]
    for i in frame.sort_values([f"rank_test_{m}"]).index:
        r = frame.loc[i]
        name = r["configuration"] + (f" {marked[i]}" if i in marked else "")
        if r["status"] != "ok":
            lines.append(f"| {r[f'rank_test_{m}']} | {name} | {r['n_seeds']} | diverged on {r['n_diverged']} seeds "
                         f"| – | – | – |")
            continue
        lines.append(
            f"| {r[f'rank_test_{m}']} | {name} | {r['n_seeds']} | {_pm(r[f'mean_test_{m}'], r[f'std_test_{m}'])}"
            f" | [{_f(r[f'ci95_low_test_{m}'])}, {_f(r[f'ci95_high_test_{m}'])}]"
            f" | {_pm(r[f'mean_train_{m}'], r[f'std_train_{m}'])} | {_f(r['mean_zero_fraction'])} |")
    lines.append("")
    lines.append(_legend(m) + " std: sample standard deviation over seeds (ddof = 1); "
                 "CI: 95% Student-t interval of the mean. Diverged: the loss became NaN or infinite on some seeds; "
                 "such a configuration has no mean, ranks last and is left out of the statistics.")
    return "\n".join(lines)


def summary_latex(summary: pd.DataFrame, name: str, metric: str = "accuracy",
                  comparison: pd.DataFrame | None = None, narrow: bool = False) -> str:
    """The summary as a LaTeX table (booktabs alone: no siunitx), sorted by rank.

    The default is a ``table*``, the text's full width in one- and two-column templates,
    with the paired difference from the baseline (Δ and its 95% interval) and its
    Holm-corrected p-value when ``comparison`` is given. ``narrow`` gives a ``table``
    that fits one column of a two-column template: test mean ± std, Δ and p only.
    """
    m = metric
    label = METRICS[m].latex
    frame = summary.reset_index(drop=True)
    marked = marks(frame, comparison, m)
    diffs = {} if comparison is None else dict(zip(comparison["configuration"], (r for _, r in comparison.iterrows())))
    uneven = frame["n_seeds"].nunique() > 1  # a seeds column only when configurations differ
    rows = [_latex_row(frame.loc[i], marked.get(i, ""), diffs, m, narrow, uneven)
            for i in frame.sort_values([f"rank_test_{m}"]).index]
    if narrow:
        columns, header = "lccr", rf"Configuration & Test {label} & $\Delta$ & $p_{{\mathrm{{Holm}}}}$"
    else:
        columns = "l" + "r" * uneven + "ccc" + ("cr" if diffs else "")
        header = rf"Configuration{' & Seeds' * uneven} & Test {label} & 95\% CI & Train" + (
            r" & $\Delta$ [95\% CI] & $p_{\mathrm{Holm}}$" if diffs else "")
    legend = (rf"$^\star$ the best mean test {label}, its result in bold (no mark when several configurations "
              rf"share it); $^\dagger$ paired difference from the baseline significant after Holm's correction "
              f"(t-test, $p < {ALPHA}$).")
    n_seeds = "" if uneven else f" {int(frame['n_seeds'].iloc[0])}"
    what = (rf"mean $\pm$ sample std over{n_seeds} seeds" if narrow else
            rf"mean $\pm$ sample std over{n_seeds} seeds; 95\% Student-t interval of the mean; train: on the "
            "training rows")
    if diffs:
        what += r"; $\Delta$: paired difference from the baseline, seed by seed; $p$: paired t-test, Holm-corrected"
    env = "table" if narrow else "table*"
    body = "\n".join(rows)
    return (
        "% Requires \\usepackage{booktabs}.\n"
        f"\\begin{{{env}}}[t]\n\\centering\n" + ("\\small\n" if narrow else "\\footnotesize\n")
        + "\\setlength{\\tabcolsep}{3pt}\n"
        + f"\\caption{{Test {label}, study \\texttt{{{_tex(name)}}}: {what}. {legend}}}\n"
        f"\\label{{tab:{_tex_label(name)}{'-narrow' if narrow else ''}}}\n"
        f"\\begin{{tabular}}{{{columns}}}\n\\toprule\n{header} \\\\\n\\midrule\n"
        f"{body}\n\\bottomrule\n\\end{{tabular}}\n\\end{{{env}}}\n"
    )


def _latex_row(r: pd.Series, marked: str, diffs: dict, m: str, narrow: bool, uneven: bool) -> str:
    """One configuration's row of :func:`summary_latex`; ``marked`` holds its marks (★, †)."""
    tex_marks = {"★": r"$^{\star}$", "†": r"$^{\dagger}$"}
    config = _tex(r["configuration"]) + "".join(tex_marks[c] for c in marked)
    d = diffs.get(r["configuration"])
    delta = "--" if d is None else f"${_signed(d['mean_diff'])}$"
    delta_ci = "" if d is None else f" [${_signed(d['ci95_low_diff'])}$, ${_signed(d['ci95_high_diff'])}$]"
    p = "--" if d is None else _tex_p(d["t_pvalue_holm"])
    test = rf"${_f(r[f'mean_test_{m}'])} \pm {_f(r[f'std_test_{m}'])}$"
    if r["status"] != "ok":
        span = 3 if narrow else (3 if diffs else 1) + 2 + uneven
        return (rf"{config} & \multicolumn{{{span}}}{{l}}{{diverged on {r['n_diverged']} of "
                f"{r['n_seeds']} seeds}} \\\\")
    if narrow:
        cells = [config, test, delta, p]
    else:
        cells = [config, *([str(r["n_seeds"])] if uneven else []), test,
                 f"[{_f(r[f'ci95_low_test_{m}'])}, {_f(r[f'ci95_high_test_{m}'])}]",
                 f"${_f(r[f'mean_train_{m}'])}$"] + ([delta + delta_ci, p] if diffs else [])
    if "★" in marked:  # the configuration and its test result in bold; \boldmath: the math too
        bold = 2 if narrow else 2 + uneven
        cells = [rf"{{\bfseries\boldmath {c}}}" if k < bold else c for k, c in enumerate(cells)]
    return " & ".join(cells) + r" \\"


def _signed(v) -> str:
    if not _present(v):
        return "--"
    text = f"{float(v):+.3f}"
    return text[1:] if float(text) == 0 else text  # no "-0.000"


def _tex_p(v) -> str:
    if not _present(v):
        return "--"
    return f"${v:.2g}$" if v >= 0.001 else "$<0.001$"


def _tex_label(name: str) -> str:
    """``name`` as a LaTeX \\label key (letters, digits, - and : only)."""
    return "".join(c if c.isalnum() or c in "-:" else "-" for c in name)


def stats_markdown(comparison: pd.DataFrame, metric: str = "accuracy") -> str:
    if comparison.empty:
        return "No baseline (norm = \"none\") in this study: nothing to compare against."
    lines = [f"| configuration | pairs | Δ test {METRIC_LABELS[metric]} | 95% CI of Δ | t-test p (Holm) "
             "| Wilcoxon p (Holm) | d_z |",
             "|---|---:|---:|---|---|---|---:|"]
    for _, r in comparison.sort_values("mean_diff", ascending=metric in MINIMIZED).iterrows():
        flag = " ⚠" if r["few_seeds"] else ""
        lines.append(
            f"| {r['configuration']}{flag} | {r['n_pairs']} | {r['mean_diff']:+.3f} | "
            f"[{r['ci95_low_diff']:+.3f}, {r['ci95_high_diff']:+.3f}] | {_p(r['t_pvalue'])} ({_p(r['t_pvalue_holm'])}) | "
            f"{_p(r['wilcoxon_pvalue'])} ({_p(r['wilcoxon_pvalue_holm'])}) | {_f(r['effect_size_dz'], 2)} |")
    if comparison["few_seeds"].any():
        lines.append(f"\n⚠ fewer than {MIN_SEEDS} paired seeds: these tests have almost no power; read them as anecdotes.")
    return "\n".join(lines)


def references_markdown(refs: pd.DataFrame) -> str:
    lines = ["| configuration | published train / test | measured train (mean) | measured test (mean ± std) "
             "| seed range | where the published test accuracy falls |",
             "|---|---|---:|---|---|---|"]
    for _, r in refs.iterrows():
        if "mean_test_accuracy" not in r or not _present(r.get("mean_test_accuracy")):
            lines.append(f"| {r['configuration']} | {_f(r['published_train_accuracy'])} / "
                         f"{_f(r['published_test_accuracy'])} | – | not in this study | – | – |")
            continue
        lines.append(
            f"| {r['configuration']} | {_f(r['published_train_accuracy'])} / {_f(r['published_test_accuracy'])} | "
            f"{_f(r['mean_train_accuracy'])} | {_pm(r['mean_test_accuracy'], r['std_test_accuracy'])} | "
            f"{_f(r['min_test_accuracy'])}–{_f(r['max_test_accuracy'])} | {r['where']} "
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
        f"- Model: {describe_model(spec.model)}; loss `{spec.model.loss}`; metric: test {METRIC_LABELS[m]} "
        f"({'higher' if spec.maximize else 'lower'} is better).",
        f"- Training: Adam (learning rate {spec.train.learning_rate}), {spec.train.epochs} epochs, batch size "
        f"{spec.train.batch_size}, shuffling {'on (order drawn from the seed)' if spec.train.shuffle else 'off'}.",
        f"- Seeds: {seed_text}; every configuration ran the same seeds, so comparisons are paired.",
        f"- Penalty convention: {penalty[spec.penalty]}.",
        f"- Search: {spec.sampler}; {len(summary)} configurations completed.",
        f"- Libraries: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
        "",
        f"## Test {METRIC_LABELS[m]}",
        "",
        summary_markdown(summary, m, comparison),
        "",
        "## Against the baseline",
        "",
        "Δ = configuration minus baseline, seed by seed. p-values: paired t-test and Wilcoxon signed-rank; "
        "Holm-corrected across all configurations in parentheses. d_z = mean(Δ) / sd(Δ).",
        "",
        stats_markdown(comparison, m),
        "",
    ]
    diverged = "\n".join(data.diverged)
    if diverged:
        parts += ["## Diverged configurations", "",
                  "The loss became NaN or infinite on these seeds (at the epoch given). Their accuracies come from "
                  "broken weights, so they have no mean, rank after every finite configuration and are left out of "
                  "the statistics against the baseline.", "", diverged, ""]
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
        if a.get("status", "ok") == "ok":
            continue
        seeds = ", ".join(f"{s} (epoch {e})" for s, e in zip(a["diverged_seeds"], a["diverged_epochs"]))
        lines.append(f"- {configuration_of(t).label}: {a['n_diverged']} of {len(a['seeds'])} seeds: {seeds}")
    return lines


def describe_data(d: DataSpec) -> str:
    """The data section of a study in words."""
    what = SOURCES[d.source].describe(d)
    if d.test_size is not None:
        split = (f"a {'stratified ' if d.stratify else ''}random {1 - d.test_size:.0%}/{d.test_size:.0%} "
                 f"train/test split (split_seed = {d.split_seed})")
    elif d.n_train is not None:
        split = f"the first {d.n_train} rows train, the rest test"
    else:
        split = "as split in the file"
    return f"{what}; {split}" + ("; inputs standardized on the training rows" if d.standardize else "")


def describe_model(model: ModelSpec) -> str:
    """The model section of a study in words."""
    if model.builder is not None:
        return f"built by `{model.builder}`"
    parts = []
    for layer in model.layers:
        args = LAYERS[layer.type].describe(layer)
        parts.append(f"{layer.type}({args}{', regularized' if layer.regularize else ''})")
    return ", ".join(parts)


def _f(v, digits: int = 3) -> str:
    return "–" if not _present(v) else f"{float(v):.{digits}f}"


def _pm(mean, std) -> str:
    return f"{_f(mean)} ± {_f(std)}"


def _p(v) -> str:
    if not _present(v):
        return "–"
    return f"{v:.2g}" if v >= 0.001 else "<0.001"


def _tex(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("&", r"\&").replace("%", r"\%")
