"""Ctrl-C and SIGTERM whose exception Python swallowed still stop the run (search/interrupt.py)."""

from __future__ import annotations

import gc
import os
import signal
import sys
import time

import pytest

from search import interrupt

pytestmark = pytest.mark.slow  # real processes, databases or clusters


class _Collected:
    """Receives the signal inside ``__del__``, where CPython reports an exception as ignored and drops it."""

    def __init__(self, sig: int) -> None:
        self.sig = sig

    def __del__(self) -> None:
        os.kill(os.getpid(), self.sig)
        time.sleep(0.05)  # the handler runs here, between two bytecodes of __del__


def swallow(sig: int) -> list:
    """Deliver ``sig`` where its exception is lost; returns what Python reported as unraisable."""
    lost: list = []
    previous, sys.unraisablehook = sys.unraisablehook, lost.append
    try:
        obj = _Collected(sig)
        del obj
        gc.collect()
    finally:
        sys.unraisablehook = previous
    return [u.exc_type for u in lost]


@pytest.mark.parametrize("sig, raised", [(signal.SIGTERM, interrupt.Terminated), (signal.SIGINT, KeyboardInterrupt)])
def test_a_swallowed_interruption_is_raised_again_at_the_next_check(sig, raised):
    with interrupt.handled():
        assert swallow(sig) == [raised]  # reported as "Exception ignored"; nothing reaches this frame
        with pytest.raises(raised) as info:
            interrupt.check()
        assert isinstance(info.value, interrupt.Terminated) == (sig == signal.SIGTERM)
    interrupt.check()  # forgotten once the handlers are restored


def test_handlers_are_restored_and_nothing_is_raised_without_a_signal():
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    with interrupt.handled():
        assert signal.getsignal(signal.SIGTERM) is not before[0]
        interrupt.check()
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before


def test_the_runner_stops_at_its_next_step_after_a_swallowed_sigterm(small_study):
    import optuna

    from search.run import run_study
    from search.study.parse import load_spec

    spec = load_spec(small_study)
    with interrupt.handled():
        assert swallow(signal.SIGTERM) == [interrupt.Terminated]
        with pytest.raises(interrupt.Terminated):
            run_study(spec, progress=False)
    trials = optuna.load_study(study_name=spec.name, storage=spec.storage).get_trials()
    assert not [t for t in trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.RUNNING)]


def test_the_command_line_exits_143_when_the_sigterm_exception_was_swallowed(small_study, tmp_path, capsys,
                                                                             monkeypatch):
    from search import cli

    def export_then_swallow(args):  # a command that finishes although SIGTERM arrived meanwhile
        swallow(signal.SIGTERM)
        return 0

    monkeypatch.setitem(cli._COMMANDS, "export", export_then_swallow)
    assert cli.main(["export", str(small_study), "--out", str(tmp_path / "x.csv")]) == 143
    assert capsys.readouterr().err.strip().splitlines()[-1] == "interrupted; run the same command again to resume"
