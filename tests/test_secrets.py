"""A password in a storage URL is masked (``***``) in every message, and stored nowhere."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest
from conftest import actreg, free_port, write_study

from search.store.storage import redact, scrub

pytestmark = pytest.mark.slow  # real processes, databases or clusters

SECRET = "s3cret-Pw"


@pytest.mark.parametrize("url, shown", [
    ("postgresql://user:pw@host:5432/db", "postgresql://user:***@host:5432/db"),
    ("postgresql+psycopg://user:p%40ss@host/db", "postgresql+psycopg://user:***@host/db"),
    ("postgresql://user@host/db", "postgresql://user@host/db"),
    ("sqlite:////tmp/x.db", "sqlite:////tmp/x.db"),
    ("mysql://u:a:b@h/d", "mysql://u:***@h/d"),
])
def test_redact(url, shown):
    assert redact(url) == shown


def test_scrub_masks_the_password_anywhere_in_a_message():
    url = "postgresql://u:p%40ss@h/d"
    assert scrub(f"could not connect to {url} with password p@ss", url) == \
        "could not connect to postgresql://u:***@h/d with password ***"


def test_a_password_is_masked_in_every_message_of_every_command(tmp_path, fresh_postgres):
    url = fresh_postgres.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@")  # trust: any password
    path = write_study(tmp_path, name="secret", seeds=2, epochs=2)
    outputs = []
    run = actreg("run", str(path), "--storage", url, "--n-jobs", "1", "--no-progress")
    assert run.returncode == 0, run.stderr
    assert "postgres:***@" in run.stdout
    outputs.append(run)
    outputs.append(actreg("export", str(path), "--storage", url, "--out", str(tmp_path / "s.csv")))
    outputs.append(actreg("report", str(path), "--storage", url, "--out", str(tmp_path / "report")))
    assert all(p.returncode == 0 for p in outputs), [p.stderr for p in outputs]
    failing = actreg("run", str(path), "--storage", url.replace(":5432/", ":1/"), "--no-progress")
    assert failing.returncode == 2 and "postgres:***@127.0.0.1:1/" in failing.stderr
    outputs.append(failing)
    changed = actreg("run", str(path), "--storage", url, "--epochs", "3", "--no-progress")
    assert changed.returncode == 2 and "other settings" in changed.stderr
    outputs.append(changed)
    for p in outputs:
        assert SECRET not in p.stdout + p.stderr
    # The dashboard's own lines.
    port = free_port()
    dash = subprocess.Popen([sys.executable, "-m", "search", "dashboard", str(path), "--storage", url,
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and dash.poll() is None:
        try:
            import urllib.request

            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5).read()
            break
        except OSError:
            time.sleep(0.3)
    dash.send_signal(signal.SIGTERM)
    out, err = dash.communicate(timeout=30)
    assert "postgres:***@" in out and SECRET not in out + err
    # Nothing stored holds it: every row of every table of the database.
    import sqlalchemy

    engine = sqlalchemy.create_engine(fresh_postgres)
    with engine.connect() as con:
        tables = sqlalchemy.inspect(con).get_table_names()
        stored = json.dumps([[list(row) for row in con.execute(sqlalchemy.text(f'select * from "{t}"'))]
                             for t in tables], default=str)
    engine.dispose()
    assert "trial_user_attributes" in tables and '"actreg_spec"' in stored
    assert SECRET not in stored
    assert SECRET not in "".join(p.read_text(errors="replace") for p in (tmp_path / "report").rglob("*.md"))
