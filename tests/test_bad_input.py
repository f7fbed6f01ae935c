"""Every bad input is one line: exit status 2, ``error: ...`` on stderr, no traceback, nothing written.

One table of malformed inputs of every kind users met: study files, storage URLs and
files, data files, output paths, the dashboard's port and the command line.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from conftest import postgres_or_skip, write_study

from search import load_spec, run_study
from search.cli import main

CSV_STUDY = """
name = "bad"
seeds = 2
[data]
source = "{source}"
path = "{file}"
{target}
[model]
layers = [
  {{ type = "dense", units = 4, activation = "relu", regularize = true }},
  {{ type = "dense", units = 1, activation = "sigmoid" }},
]
[train]
epochs = 2
[space]
norm = ["none", "l1"]
strength = [0.1]
"""

GOOD_CSV = "a,b,y\n" + "".join(f"{i},{i % 3},{i % 2}\n" for i in range(12))


def data_study(tmp: Path, name: str, content: bytes | str, source: str = "csv") -> list[str]:
    data = tmp / name
    data.write_bytes(content.encode() if isinstance(content, str) else content)
    target = 'target = "y"\nn_train = 6' if source == "csv" else ""
    path = tmp / "bad.toml"
    path.write_text(CSV_STUDY.format(source=source, file=name, target=target))
    return ["run", str(path)]


def npz_bytes(tmp: Path, **arrays) -> bytes:
    np.savez(tmp / "made.npz", **arrays)
    data = (tmp / "made.npz").read_bytes()
    (tmp / "made.npz").unlink()
    return data


def study_with(tmp: Path, extra: str = "", replace: tuple[str, str] = ("", "")) -> Path:
    path = write_study(tmp, name="small", extra=extra)
    path.write_text(path.read_text().replace(*replace))
    return path


def truncated_sqlite(tmp: Path) -> str:
    db = tmp / "truncated.db"
    with sqlite3.connect(db) as con:
        con.execute("create table t (x text)")
        con.executemany("insert into t values (?)", [("x" * 500,)] * 200)
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 2])
    return f"sqlite:///{db}"


def read_only_path(tmp: Path, name: str) -> str:
    """A path that cannot be written, for root too (sysfs refuses new files)."""
    if os.geteuid() == 0:
        return f"/sys/{name}"
    folder = tmp / "read-only"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o555)
    return str(folder / name)


def busy_port() -> tuple[socket.socket, int]:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    return s, s.getsockname()[1]


PG = "postgresql://postgres@127.0.0.1:5432"
S = str  # readability of the table below

# (id, needs a stored study, needs PostgreSQL, argv from (tmp folder, stored study file))
CASES: list[tuple[str, bool, bool, Callable[[Path, Path], list[str]]]] = [
    # study files
    ("study-missing", False, False, lambda t, s: ["run", S(t / "nope.toml")]),
    ("study-binary", False, False,
     lambda t, s: (t / "b.toml").write_bytes(bytes(range(256))) and ["run", S(t / "b.toml")]),
    ("study-latin-1", False, False,
     lambda t, s: (t / "l.toml").write_bytes('name = "caf\xe9"\n'.encode("latin-1")) and ["run", S(t / "l.toml")]),
    ("study-folder", False, False, lambda t, s: (t / "d.toml").mkdir() or ["run", S(t / "d.toml")]),
    ("study-bad-toml", False, False, lambda t, s: (t / "x.toml").write_text("name = ") and ["run", S(t / "x.toml")]),
    ("study-unknown-key", False, False, lambda t, s: ["run", S(study_with(t, 'colour = "red"'))]),
    ("study-grace-too-short", False, False, lambda t, s: ["run", S(study_with(t, "heartbeat_grace = 1"))]),
    ("study-negative-budget", False, False, lambda t, s: ["run", S(study_with(t, "max_failures = -1"))]),
    ("study-retries-text", False, False, lambda t, s: ["run", S(study_with(t, 'worker_retries = "x"'))]),
    ("study-no-models-per-program", False, False, lambda t, s: ["run", S(study_with(t, "models_per_program = 0"))]),
    ("race-too-few-replicates", False, False, lambda t, s: ["run", S(study_with(t, "[race]\nmin_replicates = 3"))]),
    ("race-beyond-the-seeds", False, False, lambda t, s: ["run", S(study_with(t, "[race]\nmax_replicates = 99"))]),
    ("race-futility-text", False, False,
     lambda t, s: ["run", S(study_with(t, '[race]\nfutility = "yes"', replace=("seeds = 3", "seeds = 10")))]),
    ("race-unknown-key", False, False, lambda t, s: ["run", S(study_with(t, "[race]\nlooks = 3"))]),
    ("race-fewer-seeds-than-its-first-look", False, False,
     lambda t, s: ["run", S(study_with(t, "[race]\nmin_replicates = 5", replace=("seeds = 3", "seeds = 10"))),
                   "--seeds", "3"]),
    ("study-no-seeds", False, False, lambda t, s: ["run", S(study_with(t, replace=("seeds = 3", "seeds = 0")))]),
    ("study-inf-strength", False, False,
     lambda t, s: ["run", S(study_with(t, replace=("strength = [1e-3, 1e-1]", "strength = [inf]")))]),
    # storage URLs and files
    ("storage-unknown-scheme", False, False, lambda t, s: ["run", S(study_with(t)), "--storage", "foo://bar/x"]),
    ("storage-not-a-url", False, False, lambda t, s: ["run", S(study_with(t)), "--storage", "studies.db"]),
    ("storage-with-a-brace", False, False, lambda t, s: ["run", S(study_with(t)), "--storage", "sqlite:///a{b}.db"]),
    ("storage-missing-driver", False, False,
     lambda t, s: ["run", S(study_with(t)), "--storage", "mysql://user@127.0.0.1/db"]),
    ("storage-unreachable", False, False,
     lambda t, s: ["run", S(study_with(t)), "--storage", "postgresql://postgres@127.0.0.1:1/test"]),
    ("storage-missing-database", False, True,
     lambda t, s: ["run", S(study_with(t)), "--storage", f"{PG}/actreg_no_such_database"]),
    ("storage-refused-login", False, True,
     lambda t, s: ["run", S(study_with(t)), "--storage", "postgresql://actreg_no_such_role@127.0.0.1:5432/test"]),
    ("sqlite-corrupt", False, False, lambda t, s: (t / "c.db").write_bytes(b"not a database" * 100) and [
        "run", S(study_with(t)), "--storage", f"sqlite:///{t / 'c.db'}"]),
    ("sqlite-truncated", False, False, lambda t, s: ["run", S(study_with(t)), "--storage", truncated_sqlite(t)]),
    ("sqlite-folder", False, False,
     lambda t, s: (t / "f.db").mkdir() or ["run", S(study_with(t)), "--storage", f"sqlite:///{t / 'f.db'}"]),
    ("sqlite-under-a-file", False, False, lambda t, s: (t / "file").write_text("x") and [
        "run", S(study_with(t)), "--storage", f"sqlite:///{t / 'file' / 'x.db'}"]),
    ("export-corrupt-sqlite", False, False, lambda t, s: (t / "c.db").write_bytes(b"\x00" * 4096) and [
        "export", S(study_with(t)), "--out", S(t / "o.csv"), "--storage", f"sqlite:///{t / 'c.db'}"]),
    ("report-folder-sqlite", False, False, lambda t, s: (t / "f.db").mkdir() or [
        "report", S(study_with(t)), "--out", S(t / "r"), "--storage", f"sqlite:///{t / 'f.db'}"]),
    ("dashboard-corrupt-sqlite", False, False, lambda t, s: (t / "c.db").write_bytes(b"garbage" * 50) and [
        "dashboard", S(study_with(t)), "--storage", f"sqlite:///{t / 'c.db'}"]),
    # data files
    ("npz-empty", False, False, lambda t, s: data_study(t, "d.npz", b"", "npz")),
    ("npz-garbage", False, False, lambda t, s: data_study(t, "d.npz", os.urandom(300), "npz")),
    ("npz-missing-array", False, False,
     lambda t, s: data_study(t, "d.npz", npz_bytes(t, x_train=np.zeros((4, 2))), "npz")),
    ("npz-nan", False, False, lambda t, s: data_study(t, "d.npz", npz_bytes(
        t, x_train=np.full((4, 2), np.nan), y_train=np.zeros(4), x_test=np.zeros((2, 2)), y_test=np.zeros(2)), "npz")),
    ("npz-text", False, False, lambda t, s: data_study(t, "d.npz", npz_bytes(
        t, x_train=np.array(["a"] * 4), y_train=np.zeros(4), x_test=np.zeros((2, 2)), y_test=np.zeros(2)), "npz")),
    ("csv-inf", False, False, lambda t, s: data_study(t, "d.csv", GOOD_CSV.replace("\n4,1,", "\ninf,1,"))),
    ("csv-minus-inf-target", False, False, lambda t, s: data_study(t, "d.csv", GOOD_CSV + "1,1,-inf\n")),
    ("csv-ragged", False, False, lambda t, s: data_study(t, "d.csv", GOOD_CSV + "1,2,3,4,5\n")),
    ("csv-missing-value", False, False, lambda t, s: data_study(t, "d.csv", GOOD_CSV + "1,,0\n")),
    ("csv-text-column", False, False, lambda t, s: data_study(t, "d.csv", GOOD_CSV + "x,1,0\n")),
    ("csv-no-target", False, False, lambda t, s: data_study(t, "d.csv", "a,b\n1,2\n")),
    ("csv-empty", False, False, lambda t, s: data_study(t, "d.csv", b"")),
    ("csv-binary", False, False, lambda t, s: data_study(t, "d.csv", b"\xff\xfe\x00\x81" * 64)),
    ("csv-labels-not-binary", False, False, lambda t, s: data_study(t, "d.csv", GOOD_CSV + "1,1,7\n")),
    # output paths
    ("export-onto-a-folder", True, False, lambda t, s: (t / "out").mkdir() or ["export", S(s), "--out", S(t / "out")]),
    ("export-under-a-file", True, False,
     lambda t, s: (t / "file").write_text("x") and ["export", S(s), "--out", S(t / "file" / "x.csv")]),
    ("export-read-only", True, False, lambda t, s: ["export", S(s), "--out", read_only_path(t, "actreg.csv")]),
    ("report-onto-a-file", True, False,
     lambda t, s: (t / "file").write_text("x") and ["report", S(s), "--out", S(t / "file")]),
    ("report-under-a-file", True, False,
     lambda t, s: (t / "file").write_text("x") and ["report", S(s), "--out", S(t / "file" / "r")]),
    ("report-read-only", True, False, lambda t, s: ["report", S(s), "--out", read_only_path(t, "actreg-report")]),
    # the dashboard
    ("dashboard-port-out-of-range", True, False, lambda t, s: ["dashboard", S(s), "--port", "70000"]),
    # the command line
    ("run-n-jobs-zero", False, False, lambda t, s: ["run", S(study_with(t)), "--n-jobs", "0"]),
    ("run-negative-epochs", False, False, lambda t, s: ["run", S(study_with(t)), "--epochs", "-1"]),
    ("run-zero-seeds", False, False, lambda t, s: ["run", S(study_with(t)), "--seeds", "0"]),
    ("run-unknown-option", False, False, lambda t, s: ["run", S(study_with(t)), "--frobnicate"]),
    ("bench-zero-seeds", False, False, lambda t, s: ["bench", "--seeds", "0"]),
]


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    """A small study that was run, for the commands that read one."""
    folder = tmp_path_factory.mktemp("stored")
    path = write_study(folder, name="stored", seeds=2, epochs=2)
    path.write_text(path.read_text().replace('norm = ["none", "l1", "l2"]', 'norm = ["none", "l1"]'))
    run_study(load_spec(path).with_overrides(n_jobs=1), progress=False)
    return path


def snapshot(*folders: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns)
            for folder in folders for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_one_line_exit_2_nothing_written(case, tmp_path, capsys, request):
    _name, needs_study, needs_postgres, make = case
    if needs_postgres:
        postgres_or_skip()
    study = request.getfixturevalue("stored") if needs_study else tmp_path / "unused.toml"
    argv = make(tmp_path, study)
    before = snapshot(tmp_path, study.parent)
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's errors
        code = exc.code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert snapshot(tmp_path, study.parent) == before, "something was written"


def test_the_table_covers_every_kind_of_bad_input():
    kinds = {name.split("-")[0] for name, *_ in CASES}
    assert len(CASES) >= 40
    assert {"study", "storage", "sqlite", "npz", "csv", "export", "report", "dashboard", "run", "bench"} <= kinds


def test_a_busy_port_is_one_line(stored, capsys):
    sock, port = busy_port()
    with sock:
        assert main(["dashboard", str(stored), "--port", str(port)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: command line: --port: cannot serve on 127.0.0.1:{port}")
