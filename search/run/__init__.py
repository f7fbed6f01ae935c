"""A run: the loop that fits what a study's schedule hands it (:mod:`~search.run.loop`), the
schedules of a grid, TPE and a race, and what a run returns and prints (:mod:`~search.run.outcome`)."""

from __future__ import annotations

from search.run.loop import run_study
from search.run.outcome import RunReport, summary_text

__all__ = ["RunReport", "run_study", "summary_text"]
