"""The same study on PostgreSQL, the storage for many workers."""

from __future__ import annotations

import os
import uuid

import pytest
from conftest import write_study

from search import export_frame, load_spec, run_study

URL = os.environ.get("ACTREG_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_or_skip() -> None:
    import sqlalchemy

    try:
        with sqlalchemy.create_engine(URL).connect() as con:
            con.execute(sqlalchemy.text("select 1"))
    except Exception as exc:  # noqa: BLE001 - any failure means "unreachable"
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at {URL} is unreachable in CI: {exc}")
        pytest.skip(f"PostgreSQL at {URL} is unreachable: {exc}")


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
