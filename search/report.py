"""``actreg report``: tables, figures, statistics and a one-page ``report.md`` for a study.

Everything is computed from the Optuna storage, so a report can be written on any machine
that reaches it. Files are written to a temporary folder first and moved into place
together, so an interrupted report leaves the previous one intact.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from search import figures
from search.layers import LAYERS
from search.metrics import METRIC_LABELS, METRICS, MINIMIZED
from search.results import complete_trials, configuration_of, curves_frame, summary_frame, write_csv
from search.sources import SOURCES
from search.space import Configuration, iter_param_names
from search.spec import DataSpec, ModelSpec, StudySpec
from search.stats import MIN_SEEDS, baseline_comparison
from search.storage import load_study

if TYPE_CHECKING:
    import optuna
    import pandas as pd

FORMATS = ("png", "pdf", "svg")
ARTIFACTS_ATTR = "actreg_artifacts"


@dataclass(frozen=True)
class Report:
    folder: Path
    files: tuple[Path, ...]


def write_report(spec: StudySpec, out: str | os.PathLike[str] | None = None, fmt: str = "png",
                 attach: bool = True) -> Report:
    """Write the report of ``spec``'s stored study into ``out`` (default ``reports/<name>``).

    With ``attach``, the figures are also attached to the study as Optuna artifacts (kept
    in ``<out>/artifacts``) and the summary becomes the study's note in optuna-dashboard.
    """
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}")
    study = load_study(spec)
    trials = study.get_trials(deepcopy=False)
    names = list(iter_param_names(spec.space))
    summary = summary_frame(trials, names, spec.objective, spec.maximize)
    if summary.empty:
        raise ValueError(f"study {spec.name!r} has no completed configuration yet")
    comparison = baseline_comparison(trials, names, spec.objective)
    folder = Path(out) if out is not None else default_folder(spec)
    folder.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".report-", dir=folder))
    try:
        written = _write_all(spec, study, trials, summary, comparison, staging, fmt)
        files = []
        for name in written:
            os.replace(staging / name, folder / name)
            files.append(folder / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if attach:
        _attach(study, folder, [f for f in files if f.suffix == f".{fmt}" or f.name == "curves.csv"], summary, spec)
    return Report(folder, tuple(files))


def default_folder(spec: StudySpec) -> Path:
    """``reports/<name>`` of the study's project: beside its ``studies/`` folder, else beside the study file."""
    if spec.path is None:
        return Path("reports") / spec.name
    here = Path(spec.path).resolve().parent
    project = here.parent if here.name == "studies" else here
    return project / "reports" / spec.name


def study_folder(spec: StudySpec) -> Path:
    """Where paths stored in the study are relative to: the study file's folder (else the working folder)."""
    return Path(spec.path).resolve().parent if spec.path is not None else Path.cwd()


def _write_all(spec, study, trials, summary, comparison, folder: Path, fmt: str) -> list[str]:
    written: list[str] = []

    def out(name: str) -> str:
        written.append(name)
        return str(folder / name)

    m = spec.objective
    label = METRIC_LABELS[m]
    write_csv(summary, out("summary.csv"))
    Path(out("summary.md")).write_text(summary_markdown(summary, m, comparison) + "\n")
    Path(out("summary.tex")).write_text(summary_latex(summary, spec.name, m, comparison))
    Path(out("summary-narrow.tex")).write_text(summary_latex(summary, spec.name, m, comparison, narrow=True))
    write_csv(comparison, out("stats.csv"))
    write_csv(curves_frame(trials), out("curves.csv"))
    refs = reference_table(spec, trials)
    if refs is not None:
        write_csv(refs, out("references.csv"))

    figs: list[tuple[str, str]] = []
    regularized = summary[summary["param_norm"] != "none"]
    if regularized["param_strength"].nunique() > 1:  # one strength makes 1 x 1 panels: the tables say it better
        if not comparison.empty:
            title = f"test {label}: difference from the baseline (paired, mean over seeds); † Holm p < {ALPHA}"
            delta = figures.delta_heatmap_data(summary, comparison, title)
            figures.draw_heatmap(delta, out(f"heatmap_delta_{m}.{fmt}"), cmap="RdBu" if spec.maximize else "RdBu_r",
                                 fmt_bar="{:+.3f}")
            figs.append((f"heatmap_delta_{m}.{fmt}", title))
        for name, value, annotate, title in (
            (f"heatmap_test_{m}", f"mean_test_{m}", "mean_std", f"test {label}, mean±std over seeds"),
            (f"heatmap_std_test_{m}", f"std_test_{m}", None, f"std of test {label} over seeds"),
            ("heatmap_zero_fraction", "mean_zero_fraction", None, "fraction of exact zeros in regularized layers"),
        ):
            figures.draw_heatmap(figures.heatmap_data(summary, value, annotate, title), out(f"{name}.{fmt}"),
                                 cmap="viridis_r" if value == f"mean_test_{m}" and not spec.maximize else "viridis")
            figs.append((f"{name}.{fmt}", title))
    if len(regularized):
        sparsity, reference = figures.sparsity_data(summary)
        figures.draw_sparsity(sparsity, reference, out(f"sparsity.{fmt}"))
        figs.append((f"sparsity.{fmt}", "sparsity of the regularized layers against strength"))
    figures.draw_curves(figures.selected_curves(trials, m), out(f"curves.{fmt}"))
    figs.append((f"curves.{fmt}", "learning curves: baseline and the best configuration of each norm and placement"))
    ref_points = {} if refs is None else dict(zip(refs["configuration"], refs["published_test_accuracy"]))
    figures.draw_distribution(figures.seed_distribution(trials, m), out(f"seeds.{fmt}"), ref_points)
    figs.append((f"seeds.{fmt}", f"test {label} of every seed"))
    Path(out("report.md")).write_text(report_markdown(spec, study, summary, comparison, refs, figs, written))
    return written


# ----------------------------------------------------------------------------- tables


def _label(row) -> str:
    params = {k[6:]: row[k] for k in row.index if k.startswith("param_") and _present(row[k])}
    return Configuration.from_params(params).label


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


ALPHA = 0.05  # the significance level of the † mark (Holm-corrected paired t-test)


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
        significant = {_label(r) for _, r in comparison.iterrows() if _present(r["t_pvalue_holm"])
                       and r["t_pvalue_holm"] < ALPHA}
        for i, r in frame.iterrows():
            if _label(r) in significant:
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
        name = _label(r) + (f" {marked[i]}" if i in marked else "")
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
    diffs = {} if comparison is None else {_label(r): r for _, r in comparison.iterrows()}
    tex_marks = {"★": r"$^{\star}$", "†": r"$^{\dagger}$"}
    uneven = frame["n_seeds"].nunique() > 1  # a seeds column only when configurations differ
    rows = []
    for i in frame.sort_values([f"rank_test_{m}"]).index:
        r = frame.loc[i]
        config = _tex(_label(r)) + "".join(tex_marks[c] for c in marked.get(i, ""))
        d = diffs.get(_label(r))
        delta = "--" if d is None else f"${_signed(d['mean_diff'])}$"
        delta_ci = "" if d is None else f" [${_signed(d['ci95_low_diff'])}$, ${_signed(d['ci95_high_diff'])}$]"
        p = "--" if d is None else _tex_p(d["t_pvalue_holm"])
        test = rf"${_f(r[f'mean_test_{m}'])} \pm {_f(r[f'std_test_{m}'])}$"
        if r["status"] != "ok":
            span = 3 if narrow else (3 if diffs else 1) + 2 + uneven
            rows.append(rf"{config} & \multicolumn{{{span}}}{{l}}{{diverged on {r['n_diverged']} of "
                        f"{r['n_seeds']} seeds}} \\\\")
            continue
        if narrow:
            cells = [config, test, delta, p]
        else:
            cells = [config, *([str(r["n_seeds"])] if uneven else []), test,
                     f"[{_f(r[f'ci95_low_test_{m}'])}, {_f(r[f'ci95_high_test_{m}'])}]",
                     f"${_f(r[f'mean_train_{m}'])}$"] + ([delta + delta_ci, p] if diffs else [])
        if "★" in marked.get(i, ""):  # the configuration and its test result in bold; \boldmath: the math too
            bold = 2 if narrow else 2 + uneven
            cells = [rf"{{\bfseries\boldmath {c}}}" if k < bold else c for k, c in enumerate(cells)]
        rows.append(" & ".join(cells) + r" \\")
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
            f"| {_label(r)}{flag} | {r['n_pairs']} | {r['mean_diff']:+.3f} | "
            f"[{r['ci95_low_diff']:+.3f}, {r['ci95_high_diff']:+.3f}] | {_p(r['t_pvalue'])} ({_p(r['t_pvalue_holm'])}) | "
            f"{_p(r['wilcoxon_pvalue'])} ({_p(r['wilcoxon_pvalue_holm'])}) | {_f(r['effect_size_dz'], 2)} |")
    if comparison["few_seeds"].any():
        lines.append(f"\n⚠ fewer than {MIN_SEEDS} paired seeds: these tests have almost no power; read them as anecdotes.")
    return "\n".join(lines)


def reference_table(spec: StudySpec, trials: Sequence[optuna.trial.FrozenTrial]) -> pd.DataFrame | None:
    """Published single runs beside the measured distribution of the same configuration."""
    import pandas as pd

    if not spec.references:
        return None
    measured = {configuration_of(t): t for t in complete_trials(trials)}
    rows = []
    for ref in spec.references:
        config = Configuration(ref.norm, ref.strength, ref.placement, ref.l1_ratio)
        t = measured.get(config)
        row = {"configuration": config.label, "source": ref.source,
               "published_train_accuracy": ref.train_accuracy, "published_test_accuracy": ref.test_accuracy}
        if t is not None:
            a = t.user_attrs
            pos = figures.reference_position(ref.test_accuracy, a["test_accuracy"])
            row.update(n_seeds=len(a["test_accuracy"]), mean_test_accuracy=t.value,
                       std_test_accuracy=a["std_test_accuracy"], mean_train_accuracy=a["mean_train_accuracy"],
                       min_test_accuracy=min(a["test_accuracy"]), max_test_accuracy=max(a["test_accuracy"]),
                       test_percentile=pos["percentile"], test_z=pos["z"], where=pos["words"])
        rows.append(row)
    return pd.DataFrame(rows)


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


def report_markdown(spec: StudySpec, study, summary, comparison, refs, figs, files) -> str:
    versions = study.user_attrs.get("versions", {})
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
    diverged = diverged_markdown(study.get_trials(deepcopy=False))
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


def diverged_markdown(trials: Sequence[optuna.trial.FrozenTrial]) -> str:
    """One line per diverged configuration: which seeds diverged, and at which epoch; empty if none did."""
    lines = []
    for t in complete_trials(trials):
        a = t.user_attrs
        if a.get("status", "ok") == "ok":
            continue
        seeds = ", ".join(f"{s} (epoch {e})" for s, e in zip(a["diverged_seeds"], a["diverged_epochs"]))
        lines.append(f"- {configuration_of(t).label}: {a['n_diverged']} of {len(a['seeds'])} seeds: {seeds}")
    return "\n".join(lines)


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


# ----------------------------------------------------------------------------- dashboard


def _attach(study: optuna.Study, folder: Path, paths: Sequence[Path], summary, spec: StudySpec) -> None:
    """Figures and the learning curves' table as study artifacts (uploaded again only when
    changed), and the summary as the study's note."""
    import optuna
    from optuna_dashboard import save_note

    store_dir = (folder / "artifacts").resolve()
    store_dir.mkdir(exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(store_dir))
    # Stored relative to the study file, so that the study names no folder of this machine.
    shown = Path(os.path.relpath(folder.resolve(), study_folder(spec)))
    digests = dict(study.user_attrs.get("actreg_artifact_digests", {}))
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digests.get(path.name) == digest:
            continue
        optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)
        digests[path.name] = digest
    study.set_user_attr("actreg_artifact_digests", digests)
    study.set_user_attr(ARTIFACTS_ATTR, str(shown / "artifacts"))
    save_note(study, f"# {spec.name}\n\nWritten by `actreg report` into `{shown}` (beside the study file).\n\n"
              + summary_markdown(summary, spec.objective))

