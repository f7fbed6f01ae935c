"""actreg: does activity regularization help a Keras network generalize? Measured over seeds.

The Python API mirrors the CLI::

    from search import load_spec, run_study, export_frame
    spec = load_spec("studies/seed-tutorial.toml").with_overrides(epochs=200)
    report = run_study(spec)
    report.summary            # one row per configuration
    export_frame(spec)        # the same table, read back from the storage
"""

from __future__ import annotations

import os

# TensorFlow's oneDNN CPU kernels off (TensorFlow turns them on by itself on CPUs with AVX-512):
# their rounding depends on how many threads split an operation, so a study's numbers would change
# with n_jobs (measured: every per-seed loss of a small study differs between 1 and 2 threads per
# operation; with the plain kernels they are the same bits). Set before TensorFlow is imported;
# TF_ENABLE_ONEDNN_OPTS=1 in the environment still wins, and a line then says what it costs.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")

import warnings

# Optuna imports tqdm.auto, which warns in a Jupyter kernel without ipywidgets; the runner picks
# its bar itself (a widget where ipywidgets is installed, else text).
warnings.filterwarnings("ignore", message="IProgress not found")

from search._version import __version__
from search.study.parse import load_spec, parse_spec
from search.study.space import Configuration, grid
from search.study.spec import StudySpec
from search.study.validation import SpecError

__all__ = [
    "Configuration",
    "SpecError",
    "StudySpec",
    "__version__",
    "export_frame",
    "grid",
    "load_spec",
    "parse_spec",
    "report_figures",
    "run_study",
]



def run_study(spec: StudySpec, **kwargs):
    """Run or resume a study; see :func:`search.run.loop.run_study`."""
    from search.run.loop import run_study as _run

    return _run(spec, **kwargs)


def report_figures(spec: StudySpec, width: str = "text") -> dict:
    """The report's figures of the stored study, by name, as Matplotlib figures at a print width
    (``"text"``, 7 in, or ``"column"``, 3.3 in); see :func:`search.results.report.report_figures`."""
    from search.results.report import report_figures as _figures

    return _figures(spec, width)


def export_frame(spec: StudySpec, *, per_seed: bool = False):
    """The stored results of ``spec`` as a DataFrame (one row per configuration, or per seed).

    Where the study was run with other seeds or epochs than the file's (``actreg run --seeds``),
    a warning says so; a file edited in anything else since the run is a :class:`SpecError`.
    """
    import warnings

    from search.results.records import stored_frame
    from search.store.reading import read_stored

    stored = read_stored(spec)
    for note in stored.notes:
        warnings.warn(note, stacklevel=2)
    return stored_frame(stored, per_seed)
