"""The command line: its face (help, version, exit codes) through the real entry point."""

from __future__ import annotations

import subprocess
import sys

import pytest

from search import __version__
from search.cli import build_parser, main


def test_version_and_help_name_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0 and capsys.readouterr().out.strip() == f"actreg {__version__}"
    commands = build_parser()._subparsers._group_actions[0].choices
    assert set(commands) == {"run", "export", "report", "dashboard", "bench"}


@pytest.mark.parametrize("command", ["run", "export", "report", "dashboard", "bench"])
def test_each_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0 and "usage: actreg" in capsys.readouterr().out


def test_a_missing_study_file_is_one_line_and_exit_2(tmp_path, capsys):
    assert main(["export", str(tmp_path / "none.toml"), "--out", str(tmp_path / "x.csv")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == f"error: {tmp_path / 'none.toml'}: file: no such file"
    assert list(tmp_path.iterdir()) == []


def test_python_m_search_is_the_same_program():
    out = subprocess.run([sys.executable, "-m", "search", "--version"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == f"actreg {__version__}"
