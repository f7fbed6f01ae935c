"""The same study on PostgreSQL, the storage for many workers."""

from __future__ import annotations

import uuid

import pytest
from conftest import POSTGRES as URL
from conftest import postgres_or_skip, write_study

from search import export_frame, load_spec, run_study

pytestmark = pytest.mark.slow  # real processes, databases or clusters


def test_study_on_postgres(tmp_path):
    postgres_or_skip()
    name = f"pg-{uuid.uuid4().hex[:10]}"
    path = write_study(tmp_path, name=name, seeds=2, epochs=3)
    spec = load_spec(path).with_overrides(storage=URL, n_jobs=1)
    report = run_study(spec, progress=False)
    assert report.configurations_run == 9
    assert run_study(spec, progress=False).configurations_skipped == 9
    frame = export_frame(spec)
    assert len(frame) == 9 and frame["n_seeds"].eq(2).all()
    assert not list(tmp_path.glob("*.db"))  # nothing fell back to SQLite
