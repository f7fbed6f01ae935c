from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import optuna
import pytest
from conftest import write_study

from search import load_spec, run_study
from search.results.latex import summary_latex
from search.results.report import (
    default_folder,
    report_data,
    summary_markdown,
    write_report,
)
from search.store.reading import load_study

MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<?xml"}


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("report")
    path = write_study(folder, name="rep", seeds=3, epochs=5)
    path.write_text(path.read_text() + '\n[[reference]]\nnorm = "none"\ntest_accuracy = 0.9\ntrain_accuracy = 1.0\n'
                    'source = "a single run"\n')
    spec = load_spec(path).with_overrides(n_jobs=1)
    run_study(spec, progress=False)
    return spec, folder


def test_report_data_holds_the_tables_statistics_and_figures(small_run):
    spec, _ = small_run
    data = report_data(spec, load_study(spec).get_trials())
    assert len(data.summary) == 9 and set(data.summary["status"]) == {"ok"}
    assert len(data.comparison) == 8 and set(data.comparison["n_pairs"]) == {3}
    assert set(data.comparison["configuration"]) == set(data.summary["configuration"]) - {"none"}
    assert list(data.curves.columns[:6]) == ["param_norm", "param_strength", "param_placement", "configuration",
                                             "trial_number", "epoch"] and len(data.curves) == 9 * 5
    # One rule with the other tables: the training values say so (fit names them "accuracy", "loss").
    assert {"mean_train_accuracy", "std_train_loss", "mean_test_accuracy", "std_test_loss"} <= set(data.curves)
    assert not {"mean_accuracy", "mean_loss"} & set(data.curves)
    (ref,) = data.references.itertuples()
    assert ref.configuration == "none" and ref.where == "above all 3 seeds" and ref.test_percentile == 100.0
    figs = {f.name: f for f in data.figures}
    assert list(figs) == ["heatmap_delta_accuracy", "heatmap_test_accuracy", "heatmap_std_test_accuracy",
                          "heatmap_zero_fraction", "sparsity", "curves", "seeds"]
    delta = figs["heatmap_delta_accuracy"].data[0]
    assert delta.center == 0.0 and delta.placements == ("pre", "post")
    by_config = dict(zip(data.comparison["configuration"], data.comparison["mean_test_diff"]))
    assert delta.values["pre"].loc["l1", 1e-3] == pytest.approx(by_config["l1(0.001) pre"])
    test = figs["heatmap_test_accuracy"].data[0]
    means = dict(zip(data.summary["configuration"], data.summary["mean_test_accuracy"]))
    assert test.values["post"].loc["l2", 0.1] == means["l2(0.1) post"] and test.baseline == means["none"]
    curves = figs["curves"].data[0]
    assert curves[0].label == "none" and len(curves) == 5  # the baseline, then the best of 2 norms x 2 placements
    assert figs["seeds"].options["references"] == {"none": 0.9}
    assert len(figs["seeds"].data[0]) == 9 * 3  # one row per configuration and seed
    assert data.diverged == ()


@pytest.mark.parametrize("fmt", ["png", "pdf", "svg"])
def test_report_writes_every_file(small_run, tmp_path, fmt):
    spec, _ = small_run
    report = write_report(spec, tmp_path / "out", fmt=fmt, attach=False)
    names = sorted(p.name for p in report.files)
    figures = [f"{n}.{fmt}" for n in ("curves", "heatmap_delta_accuracy", "heatmap_std_test_accuracy",
                                       "heatmap_test_accuracy",
                                       "heatmap_zero_fraction", "seeds", "sparsity")]
    assert names == sorted(figures + ["curves.csv", "references.csv", "report.md", "stats.csv", "study.json",
                                      "summary.csv", "summary.md", "summary.tex", "summary-narrow.tex"])
    for name in figures:
        assert (tmp_path / "out" / name).read_bytes().startswith(MAGIC[fmt]), name
    text = (tmp_path / "out" / "report.md").read_text()
    for link in re.findall(r"\]\(([^)]+)\)", text):
        assert (tmp_path / "out" / link).is_file(), link
    assert "fewer than 5 paired seeds" in text  # 3 seeds: the statistics are flagged
    assert "above all 3 seeds" in text
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.startswith(".report-")]


def test_tables_mark_the_single_best_configuration(small_run, tmp_path):
    spec, _ = small_run
    from search import export_frame

    summary = export_frame(spec)
    md = summary_markdown(summary)
    best = summary["rank_test_accuracy"].eq(1).sum()
    assert md.count("★") == (1 if best == 1 else 0) + 1  # the best, unless tied, plus the legend
    assert len([line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]) == 9
    tex = summary_latex(summary, "rep")
    assert "\\toprule" in tex and "\\bottomrule" in tex and "\\label{tab:rep}" in tex
    assert tex.count("\\bfseries") == (2 if best == 1 else 0)  # the configuration and its test result


@pytest.mark.parametrize("width, inches", [("text", 7.0), ("column", 3.3)])
def test_figures_are_made_at_print_size_with_text_of_at_least_7_pt(small_run, width, inches, monkeypatch):
    """Measured on the rendered figure: its width is the print width, every text drawn is at least
    7 pt there and lies inside the figure (nothing cut off)."""
    from matplotlib.text import Text

    drawn = []
    draw = Text.draw
    monkeypatch.setattr(Text, "draw", lambda self, renderer: (drawn.append(self), draw(self, renderer))[1])

    from search.results.report import report_figures

    spec, _ = small_run
    figs = report_figures(spec, width=width)
    assert set(figs) >= {"heatmap_delta_accuracy", "sparsity", "curves", "seeds"}
    for name, fig in figs.items():
        assert fig.get_size_inches()[0] == pytest.approx(inches), name
        drawn.clear()
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        box = fig.bbox
        texts = [t for t in drawn if t.get_visible() and t.get_text().strip()]
        assert texts, name
        for t in texts:
            assert t.get_fontsize() >= 7, (name, t.get_text(), t.get_fontsize())
            extent = t.get_window_extent(renderer)
            # The rendered glyphs: a line of 7 pt text is at least 7 pt tall at the figure's dpi.
            assert extent.height / fig.dpi * 72 >= 7 * 0.95, (name, t.get_text())
            assert box.x0 - 1 <= extent.x0 and extent.x1 <= box.x1 + 1, (name, t.get_text())
            assert box.y0 - 1 <= extent.y0 and extent.y1 <= box.y1 + 1, (name, t.get_text())
    delta = figs["heatmap_delta_accuracy"]
    bar = next(a for a in delta.axes if a.get_label() == "<colorbar>")
    low, high = bar.get_ylim()
    rope = report_data(spec, load_study(spec).get_trials()).comparison["rope"].iloc[0]
    assert low == -high and high >= 2 * rope  # never narrower than the region of practical equivalence


def test_report_cli_refuses_an_unknown_figure_width(small_run, tmp_path):
    spec, _ = small_run
    out = subprocess.run([sys.executable, "-m", "search", "report", spec.path, "--figure-width", "page"],
                         capture_output=True, text=True)
    assert out.returncode == 2 and "--figure-width" in out.stderr


@pytest.mark.slow
def test_report_attaches_figures_and_a_note_to_the_study(small_run, tmp_path):
    spec, _ = small_run
    write_report(spec, tmp_path / "att", attach=True)
    study = load_study(spec)
    metas = optuna.artifacts.get_all_artifact_meta(study)
    figures = ("curves", "heatmap_delta_accuracy", "heatmap_std_test_accuracy", "heatmap_test_accuracy",
               "heatmap_zero_fraction", "seeds", "sparsity")
    assert sorted(m.filename for m in metas) == sorted([f"{n}.png" for n in figures] + ["curves.csv"])
    write_report(spec, tmp_path / "att", attach=True)  # unchanged figures are not uploaded twice
    assert len(optuna.artifacts.get_all_artifact_meta(study)) == len(metas)
    from optuna_dashboard import get_note

    note = get_note(study)
    assert "rank" in note
    # Nothing absolute of this machine is stored: the artifacts and the note name the folder relative to the study.
    assert not os.path.isabs(study.user_attrs["actreg_artifacts"])
    assert str(tmp_path) not in note and str(tmp_path) not in json.dumps(study.user_attrs)


def test_every_output_carries_the_setting_that_makes_it_interpretable(small_run, tmp_path):
    """Penalty convention, epochs, replicates and what varied, data, versions and the fingerprint: in
    study.json beside the CSVs (export's too), the Markdown footer and the LaTeX caption."""
    from search.results.setting import fingerprint_digest

    spec, _ = small_run
    out = write_report(spec, tmp_path / "set", attach=False).folder
    setting = json.loads((out / "study.json").read_text())
    stored = load_study(spec).user_attrs["actreg_spec"]
    assert setting["fingerprint"] == fingerprint_digest(stored) and len(setting["fingerprint"]) == 12
    assert (setting["penalty"], setting["epochs"], setting["replicates"], setting["seeds"]) == ("mean", 5, 3, [0, 1, 2])
    assert setting["varied_between_replicates"] == "initialization and order (data fixed: one draw)"
    assert {"keras", "tensorflow", "actreg"} <= set(setting["versions"]) and setting["rope"] == 0.01
    md = (out / "summary.md").read_text()
    assert md.rstrip().splitlines()[-1].startswith("Setting: penalty convention mean (Keras >= 3.14")
    for words in ("5 epochs, batch size", "3 replicates (seeds 0..2)", setting["fingerprint"], "Keras "):
        assert words in md, words
    tex = (out / "summary.tex").read_text()
    caption = re.search(r"\\caption\{(.*)\}\n", tex).group(1)
    note = re.search(r"\{\\scriptsize\\raggedright (.*)\\par\}\n", tex).group(1)  # under the table
    assert "Setting: penalty convention mean (Keras $\\geq$ 3.14" in note and "Setting" not in caption
    assert setting["fingerprint"] in note and "3 replicates" in note
    report_md = (out / "report.md").read_text()
    assert f"Study fingerprint: {setting['fingerprint']}" in report_md
    csv = tmp_path / "export" / "table.csv"
    done = subprocess.run([sys.executable, "-m", "search", "export", spec.path, "--out", str(csv)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "export" / "table.study.json").read_text()) == setting
    assert "table.study.json" in done.stdout


@pytest.mark.slow
def test_the_dashboard_note_keeps_the_marks_and_verdicts_of_summary_md(small_run, tmp_path):
    from optuna_dashboard import get_note

    spec, _ = small_run
    out = write_report(spec, tmp_path / "note", attach=True).folder
    note = get_note(load_study(spec))
    table = (out / "summary.md").read_text().strip()
    assert table in note  # the whole table: marks, verdicts, legend and setting
    assert "†" in note and "verdict" in note and "Setting:" in note


def test_report_defaults_to_the_projects_reports_folder(tmp_path):
    studies = tmp_path / "project" / "studies"
    studies.mkdir(parents=True)
    spec = load_spec(write_study(studies, name="where"))
    assert default_folder(spec) == tmp_path / "project" / "reports" / "where"
    elsewhere = load_spec(write_study(tmp_path, name="where"))
    assert default_folder(elsewhere) == tmp_path / "reports" / "where"


def test_report_cli_on_a_study_never_run(tmp_path):
    path = write_study(tmp_path, name="never")
    proc = subprocess.run([sys.executable, "-m", "search", "report", str(path), "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "run `actreg run" in proc.stderr
    assert not (tmp_path / "r").exists()
    (tmp_path / "empty.db").write_bytes(b"")
    for db, says in (("none.db", "no database at"), ("empty.db", "is an empty file: it holds no study")):
        for command in (["export", "--out", str(tmp_path / "e.csv")], ["report", "--no-attach"]):
            proc = subprocess.run([sys.executable, "-m", "search", command[0], str(path), *command[1:], "--storage",
                                   f"sqlite:///{tmp_path}/{db}"], capture_output=True, text=True, timeout=120)
            assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and says in proc.stderr, proc.stderr
    assert (tmp_path / "empty.db").stat().st_size == 0 and not (tmp_path / "none.db").exists()


def pdflatex_or_skip() -> str:
    import os
    import shutil

    found = shutil.which("pdflatex")
    if found is None:
        why = ("pdflatex is not installed (.ci/run installs the Debian packages texlive-latex-base and "
               "texlive-latex-recommended)")
        if os.environ.get("CI") == "true":
            pytest.fail(why)
        pytest.skip(why)
    return found


@pytest.fixture(scope="module")
def validated_run(tmp_path_factory):
    """The widest tables: validation rows, the longest labels (l1_l2 at 1e-4), every verdict column, and a
    hyphenated name that \\texttt would not break (this one overflowed a one-column caption)."""
    folder = tmp_path_factory.mktemp("validated")
    path = write_study(folder, name="seed-tutorial-resampled", seeds=3, epochs=3)
    path.write_text(path.read_text().replace("random_state = 3", 'resample = "draw"\nvalidation = 0.25')
                    .replace('norm = ["none", "l1", "l2"]', 'norm = ["none", "l1_l2"]')
                    .replace("strength = [1e-3, 1e-1]", "strength = [1e-4, 1e-1]"))
    spec = load_spec(path).with_overrides(n_jobs=1)
    run_study(spec, progress=False)
    return spec, folder


@pytest.mark.slow
@pytest.mark.parametrize("columns", ["onecolumn", "twocolumn"])
@pytest.mark.parametrize("run", ["small_run", "validated_run"])
def test_summary_tex_compiles_without_errors_or_overfull_boxes(run, tmp_path, columns, request):
    pdflatex = pdflatex_or_skip()
    spec, _ = request.getfixturevalue(run)
    write_report(spec, tmp_path, attach=False)
    (tmp_path / "paper.tex").write_text(
        f"\\documentclass[{columns}]{{article}}\n\\usepackage{{booktabs}}\n\\begin{{document}}\n"
        "\\input{summary.tex}\n\\input{summary-narrow.tex}\nText.\n\\end{document}\n")
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    assert not [line for line in log.splitlines() if line.startswith("!") or "Overfull" in line]
    assert (tmp_path / "paper.pdf").stat().st_size > 0



@pytest.mark.slow
def test_a_name_with_percent_signs_slashes_and_greek_is_stored_exported_and_typeset(tmp_path):
    """A name like ``50%25 done/β``: its default storage is the file ``50%25 done_β.db`` (the name as it is,
    the slash not a folder) for run and export alike, its report folder likewise, and the
    LaTeX table compiles with the name in its caption."""
    from conftest import actreg

    pdflatex = pdflatex_or_skip()
    name = "50%25 done/β #1 {x} ~$"
    path = write_study(tmp_path, name="odd", seeds=2, epochs=2)
    path.write_text(path.read_text().replace('name = "odd"', f'name = "{name}"'))
    spec = load_spec(path)
    run = actreg("run", str(path), "--n-jobs", "1", "--no-progress")
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in tmp_path.glob("*.db")) == ["50%25 done_β #1 {x} ~$.db"]
    out = actreg("export", str(path), "--out", str(tmp_path / "out.csv"))
    assert out.returncode == 0, out.stderr
    assert "wrote 9 rows" in out.stdout
    report = actreg("report", str(path), "--no-attach")
    assert report.returncode == 0, report.stderr[-2000:]
    folder = default_folder(spec)
    assert folder.name == "50%25 done_β #1 {x} ~$" and (folder / "summary.tex").is_file()
    (folder / "paper.tex").write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n"
                                      "\\input{summary.tex}\nText.\n\\end{document}\n")
    proc = subprocess.run([pdflatex, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=folder,
                          capture_output=True, text=True, timeout=120)
    log = (folder / "paper.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-2000:]
    assert "\\ensuremath{\\beta}" in (folder / "summary.tex").read_text()
