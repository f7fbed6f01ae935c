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
from search.results import complete_trials, configuration_of, summary_frame, write_csv
from search.space import Configuration, iter_param_names
from search.spec import StudySpec
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
    summary = summary_frame(trials, names)
    if summary.empty:
        raise ValueError(f"study {spec.name!r} has no completed configuration yet")
    comparison = baseline_comparison(trials, names)
    folder = Path(out) if out is not None else Path("reports") / spec.name
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
        _attach(study, folder, [f for f in files if f.suffix == f".{fmt}"], summary, spec)
    return Report(folder, tuple(files))


def _write_all(spec, study, trials, summary, comparison, folder: Path, fmt: str) -> list[str]:
    written: list[str] = []

    def out(name: str) -> str:
        written.append(name)
        return str(folder / name)

    write_csv(summary, out("summary.csv"))
    Path(out("summary.md")).write_text(summary_markdown(summary) + "\n")
    Path(out("summary.tex")).write_text(summary_latex(summary, spec.name))
    write_csv(comparison, out("stats.csv"))
    refs = reference_table(spec, trials)
    if refs is not None:
        write_csv(refs, out("references.csv"))

    figs: list[tuple[str, str]] = []
    if (summary["param_norm"] != "none").any():
        for name, value, label, title in (
            ("heatmap_test_accuracy", "mean_test_accuracy", "mean_std", "test accuracy, mean±std over seeds"),
            ("heatmap_std_test_accuracy", "std_test_accuracy", None, "std of test accuracy over seeds"),
            ("heatmap_zero_fraction", "mean_zero_fraction", None, "fraction of exact zeros in regularized layers"),
        ):
            figures.draw_heatmap(figures.heatmap_data(summary, value, label, title), out(f"{name}.{fmt}"))
            figs.append((f"{name}.{fmt}", title))
        sparsity, reference = figures.sparsity_data(summary)
        figures.draw_sparsity(sparsity, reference, out(f"sparsity.{fmt}"))
        figs.append((f"sparsity.{fmt}", "sparsity of the regularized layers against strength"))
    figures.draw_curves(figures.selected_curves(trials), out(f"curves.{fmt}"))
    figs.append((f"curves.{fmt}", "learning curves: baseline and the best configuration of each norm and placement"))
    ref_points = {} if refs is None else dict(zip(refs["configuration"], refs["published_test_accuracy"]))
    figures.draw_distribution(figures.seed_distribution(trials), out(f"seeds.{fmt}"), ref_points)
    figs.append((f"seeds.{fmt}", "test accuracy of every seed"))
    Path(out("report.md")).write_text(report_markdown(spec, study, summary, comparison, refs, figs, written))
    return written


# ----------------------------------------------------------------------------- tables


def _label(row) -> str:
    params = {k[6:]: row[k] for k in row.index if k.startswith("param_") and _present(row[k])}
    return Configuration.from_params(params).label


def _present(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def best_per_norm(summary: pd.DataFrame) -> set[int]:
    """Row positions of the best configuration (highest mean test accuracy) of each regularizing norm."""
    frame = summary.reset_index(drop=True)
    best = frame[frame["param_norm"] != "none"].groupby("param_norm")["mean_test_accuracy"].idxmax()
    return set(int(i) for i in best)


def summary_markdown(summary: pd.DataFrame) -> str:
    frame = summary.reset_index(drop=True)
    marked = best_per_norm(frame)
    lines = ["| rank | configuration | seeds | test accuracy (mean ± std) | 95% CI | train accuracy | zero fraction |",
             "|---:|---|---:|---|---|---|---:|"]
    for i in frame.sort_values(["rank_test_accuracy"]).index:
        r = frame.loc[i]
        name = _label(r) + (" ★" if i in marked else "")
        lines.append(
            f"| {r['rank_test_accuracy']} | {name} | {r['n_seeds']} | {_pm(r['mean_test_accuracy'], r['std_test_accuracy'])}"
            f" | [{_f(r['ci95_low_test_accuracy'])}, {_f(r['ci95_high_test_accuracy'])}]"
            f" | {_pm(r['mean_train_accuracy'], r['std_train_accuracy'])} | {_f(r['mean_zero_fraction'])} |")
    lines.append("")
    lines.append("★ best configuration of its norm. std: sample standard deviation over seeds (ddof = 1); "
                 "CI: 95% Student-t interval of the mean.")
    return "\n".join(lines)


def summary_latex(summary: pd.DataFrame, name: str) -> str:
    frame = summary.reset_index(drop=True)
    marked = best_per_norm(frame)
    rows = []
    for i in frame.sort_values(["rank_test_accuracy"]).index:
        r = frame.loc[i]
        cells = [_tex(_label(r)), str(r["n_seeds"]),
                 f"${_f(r['mean_test_accuracy'])} \\pm {_f(r['std_test_accuracy'])}$",
                 f"[{_f(r['ci95_low_test_accuracy'])}, {_f(r['ci95_high_test_accuracy'])}]",
                 f"${_f(r['mean_train_accuracy'])} \\pm {_f(r['std_train_accuracy'])}$"]
        if i in marked:
            cells = [f"\\textbf{{{c}}}" for c in cells]
        rows.append(" & ".join(cells) + r" \\")
    body = "\n".join(rows)
    return (
        "% Requires \\usepackage{booktabs}. Bold: best configuration of its norm.\n"
        "\\begin{table}[t]\n\\centering\n"
        f"\\caption{{Test accuracy over seeds, study \\texttt{{{_tex(name)}}}: mean $\\pm$ sample std; "
        "95\\% Student-t interval of the mean.}\n"
        "\\begin{tabular}{lrccc}\n\\toprule\n"
        "Configuration & Seeds & Test accuracy & 95\\% CI & Train accuracy \\\\\n\\midrule\n"
        f"{body}\n\\bottomrule\n\\end{{tabular}}\n\\end{{table}}\n"
    )


def stats_markdown(comparison: pd.DataFrame) -> str:
    if comparison.empty:
        return "No baseline (norm = \"none\") in this study: nothing to compare against."
    lines = ["| configuration | pairs | Δ test accuracy | 95% CI of Δ | t-test p (Holm) | Wilcoxon p (Holm) | d_z |",
             "|---|---:|---:|---|---|---|---:|"]
    for _, r in comparison.sort_values("mean_diff", ascending=False).iterrows():
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
    layers = ", ".join(f"{layer.type}({layer.units}, {layer.activation}{', regularized' if layer.regularize else ''})"
                       for layer in spec.model.layers)
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
        f"- Data: `{d.source}` (n_samples = {d.n_samples}, noise = {d.noise}, random_state = {d.random_state}); "
        f"the first {d.n_train} rows train, the other {d.n_samples - d.n_train} test.",
        f"- Model: {layers}; loss `{spec.model.loss}`.",
        f"- Training: Adam (learning rate {spec.train.learning_rate}), {spec.train.epochs} epochs, batch size "
        f"{spec.train.batch_size}, shuffling {'on (order drawn from the seed)' if spec.train.shuffle else 'off'}.",
        f"- Seeds: {seed_text}; every configuration ran the same seeds, so comparisons are paired.",
        f"- Penalty convention: {penalty[spec.penalty]}.",
        f"- Search: {spec.sampler}; {len(summary)} configurations completed.",
        f"- Libraries: {', '.join(f'{k} {v}' for k, v in versions.items())}.",
        "",
        "## Test accuracy",
        "",
        summary_markdown(summary),
        "",
        "## Against the baseline",
        "",
        "Δ = configuration minus baseline, seed by seed. p-values: paired t-test and Wilcoxon signed-rank; "
        "Holm-corrected across all configurations in parentheses. d_z = mean(Δ) / sd(Δ).",
        "",
        stats_markdown(comparison),
        "",
    ]
    if refs is not None:
        parts += ["## Published single runs", "",
                  "A single run is one draw from the distribution of seeds; this is where each published number falls.",
                  "", references_markdown(refs), ""]
    parts += ["## Figures", ""]
    for name, title in figs:
        parts += [f"### {title[0].upper() + title[1:]}", "", f"![{title}]({name})", ""]
    parts += ["## Files", ""] + [f"- [{f}]({f})" for f in files if f != "report.md"] + [""]
    return "\n".join(parts)


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
    """Figures as study artifacts (uploaded again only when changed) and the summary as the note."""
    import optuna
    from optuna_dashboard import save_note

    store_dir = (folder / "artifacts").resolve()
    store_dir.mkdir(exist_ok=True)
    store = optuna.artifacts.FileSystemArtifactStore(str(store_dir))
    digests = dict(study.user_attrs.get("actreg_artifact_digests", {}))
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        if digests.get(path.name) == digest:
            continue
        optuna.artifacts.upload_artifact(artifact_store=store, file_path=str(path), study_or_trial=study)
        digests[path.name] = digest
    study.set_user_attr("actreg_artifact_digests", digests)
    study.set_user_attr(ARTIFACTS_ATTR, str(store_dir))
    save_note(study, f"# {spec.name}\n\nWritten by `actreg report` into `{folder}`.\n\n" + summary_markdown(summary))
