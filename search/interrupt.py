"""Ctrl-C and SIGTERM that cannot be lost.

CPython runs a Python signal handler between two bytecodes of the main thread, wherever
that is, including inside a weakref callback or a ``__del__`` that garbage collection
started. An exception raised there is reported as "Exception ignored" and dropped, so a
``KeyboardInterrupt`` can vanish and the run goes on to its end. Importing TensorFlow
collects garbage often enough that a SIGTERM in the first half second of a run was lost
in 5 of 21 tries (and the "ignored" report too, as stderr is silenced during that import).

The handlers installed by :func:`handled` raise as usual and also remember the signal;
:func:`check`, called where the runner is between two steps, raises again when the first
exception never arrived. A library caller that installs no handlers is not affected.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class Terminated(KeyboardInterrupt):
    """SIGTERM, handled like Ctrl-C (exit status 143 instead of 130)."""


_received: list[int] = []  # the signals received while handlers are installed, in order


def _handler(signum: int, frame) -> None:
    _received.append(signum)
    check()


def check() -> None:
    """Raise the interruption that a handler recorded, if any (it may have been swallowed)."""
    if _received:
        raise Terminated() if _received[0] == signal.SIGTERM else KeyboardInterrupt()


@contextlib.contextmanager
def handled() -> Iterator[None]:
    """Install the handlers for SIGINT and SIGTERM (main thread only) and restore the previous ones after."""
    if threading.current_thread() is not threading.main_thread():  # only it may set handlers
        yield
        return
    previous = {sig: signal.signal(sig, _handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _received.clear()


def ignore_more() -> None:
    """While the interruption is being reported: a second SIGTERM or Ctrl-C must not cut the message short."""
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
