"""Results: stored trials become tables, statistics, figures and reports.

:mod:`~search.results.records` aggregates a trial's seeds and builds the tables (one row per
configuration or per seed), :mod:`~search.results.stats` compares each configuration with
the baseline and decides, :mod:`~search.results.figures` computes each figure's data and
draws it, :mod:`~search.results.report` writes ``actreg report``'s folder, and
:mod:`~search.results.race` decides a race's looks. Names are imported on first use.
"""

from __future__ import annotations

from search._lazy import exports

_NAMES = {
    "summary_frame": "records", "per_seed_frame": "records", "curves_frame": "records", "write_csv": "records",
    "trial_record": "records", "baseline_comparison": "stats", "verdicts": "stats", "write_report": "report",
    "report_data": "report",
}
__all__ = sorted(_NAMES)
__getattr__ = exports(__name__, _NAMES)
