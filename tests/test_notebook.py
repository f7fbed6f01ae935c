"""The example notebook runs as a user runs it (a real Jupyter kernel through nbclient), and a
notebook is a first-class home: a progress bar without a warning, a short view of the report,
the figures inline."""

from __future__ import annotations

from pathlib import Path

import pytest

from search import load_spec, run_study

DOCS = Path(__file__).resolve().parents[1] / "docs"


def outputs(cell) -> str:
    """Everything a cell showed, as text."""
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", ""))
        parts.extend(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
        parts.extend(out.get("traceback", []))
    return "\n".join(parts)


@pytest.mark.slow
def test_the_example_notebook_runs_and_shows_progress_verdicts_and_figures(tmp_path):
    import nbformat
    from nbconvert.preprocessors import (
        ExecutePreprocessor,  # the test extra installs nbconvert and ipykernel
    )

    nb = nbformat.read(DOCS / "notebook.ipynb", as_version=4)
    ExecutePreprocessor(timeout=600, kernel_name="python3").preprocess(nb, {"metadata": {"path": str(DOCS)}})
    code = [c for c in nb.cells if c.cell_type == "code"]
    shown = "\n".join(outputs(c) for c in code)
    assert "Warning" not in shown and "Traceback" not in shown, shown
    run = next(c for c in code if "run_study(spec)" in c.source)
    streams = "".join(o.get("text", "") for o in run.outputs if o.get("output_type") == "stream")
    assert "15/15" in streams  # the bar counted every fit, in the cell's output
    html = next(o["data"]["text/html"] for o in run.outputs if "text/html" in o.get("data", {}))
    assert "<b>RunReport</b>" in html and "verdict" in html and "l1(0.0001) pre" in html
    images = [c for c in code if any("image/png" in o.get("data", {}) for o in c.outputs)]
    assert [c.source for c in images] == ['figures["seeds"]', 'figures["curves"]']
    assert not list(DOCS.glob("*.db"))  # the notebook's storage is a scratch folder


def test_a_run_report_is_short_to_print_and_a_table_in_a_notebook(tmp_path):
    from conftest import write_study

    spec = load_spec(write_study(tmp_path, name="repr", seeds=2, epochs=2)).with_overrides(n_jobs=1)
    report = run_study(spec, progress=False)
    text = repr(report)
    assert text.startswith("RunReport(study 'repr': 9 configurations run") and "\n" not in text and len(text) < 400
    assert "tied for best: " in text and "fits in" in text  # 2 seeds of 2 epochs: four share the best mean
    html = report._repr_html_()
    assert html.count("<tr>") == 1 + 9 and "verdict" in html


def test_in_a_notebook_the_bar_shows_without_a_terminal(monkeypatch):
    import io
    import sys
    import types

    from search.run.state import in_notebook
    from search.run.state import progress_bar as _progress

    assert not in_notebook()
    shell = type("ZMQInteractiveShell", (), {})()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setitem(sys.modules, "ipywidgets", None)  # not installed: the text bar
    assert in_notebook()
    stream = io.StringIO()  # not a terminal
    bar = _progress(load_spec(DOCS.parent / "studies" / "seed-tutorial.toml"), None, stream)
    bar.reset(total=4)
    bar.update(4)
    bar.close()
    assert "4/4" in stream.getvalue()
    assert _progress(load_spec(DOCS.parent / "studies" / "seed-tutorial.toml"), False, stream).disable  # --no-progress
