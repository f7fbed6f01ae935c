"""What a run has done so far, and how it shows it: one object that three threads write under one lock.

The run loop (:mod:`search.run.loop`) counts fits as chunks come back; its writer thread
(:class:`Writer`) stores finished configurations and counts them; a tick thread keeps the bar's
clock moving. Each of them writes the counts and the bar through :class:`RunState`'s methods
only, which hold its lock.
"""

from __future__ import annotations

import queue
import sys
import threading
from collections.abc import Callable
from typing import Any, TextIO

from search.study.spec import StudySpec


class RunState:
    """This runner's counts and its progress bar (see the module). ``bar`` is a tqdm bar."""

    def __init__(self, bar: Any, stream: TextIO) -> None:
        self._lock = threading.RLock()
        self.bar, self.stream = bar, stream
        self.completed = self.diverged = self.failed = self.fits = 0
        self.training_seconds = self.peak_memory_mb = 0.0
        self.largest_program = 0  # models
        self.stored_configs: set[str] = set()  # the configurations this runner stored something of
        self.failed_programs: set[int] = set()  # the programs that failed in this run, against max_failures
        self.stopped: str | None = None  # why the run stopped early
        if isinstance(bar, PlainProgress):
            bar.configurations = lambda: self.configurations

    @property
    def configurations(self) -> int:
        """Configurations this runner stored (something of: in a race a configuration has several blocks)."""
        with self._lock:
            return len(self.stored_configs)

    def say(self, message: str) -> None:
        """A line above the bar (or on the stream, without one)."""
        with self._lock:
            self.bar.write(message, file=self.stream)

    def status(self, text: str) -> None:
        """What the run is doing now, beside the bar."""
        with self._lock:
            self.bar.set_postfix_str(text)

    def compiling(self) -> bool:
        with self._lock:
            return bool(self.bar.postfix) and "compiling" in self.bar.postfix

    def fitted(self, n: int) -> None:
        """``n`` fits of a held configuration came back."""
        with self._lock:
            self.fits += n
            self.bar.update(n)

    def advance(self, n: int) -> None:
        """``n`` fits done at no cost (a configuration measured already)."""
        with self._lock:
            self.bar.update(n)

    def timed(self, fit_seconds: float, peak_memory_mb: float) -> None:
        """A chunk's fit time and its process's peak memory."""
        with self._lock:
            self.training_seconds += fit_seconds
            self.peak_memory_mb = max(self.peak_memory_mb, peak_memory_mb)

    def program(self, models: int) -> None:
        """A program of ``models`` models was submitted."""
        with self._lock:
            self.largest_program = max(self.largest_program, models)

    def stored(self, key: str, diverged: bool) -> None:
        """A configuration's trial was stored by this runner."""
        with self._lock:
            self.completed += 1
            self.stored_configs.add(key)
            self.diverged += diverged

    def program_failed(self, program: int, max_failures: int, reason: str) -> None:
        """A program's fit raised; past ``max_failures`` failed programs the run stops."""
        with self._lock:
            self.failed += 1
            self.failed_programs.add(program)
            if len(self.failed_programs) > max_failures:
                self.stopped = (f"{len(self.failed_programs)} programs failed in this run ({self.failed} "
                                f"configurations), more than max_failures = {max_failures}; stopped. "
                                f"The last: {reason}")

    def total(self, remaining: int) -> None:
        """The bar's total: what it shows done and ``remaining`` fits more."""
        with self._lock:
            self.bar.total = self.bar.n + max(0, remaining)
            self.bar.refresh()

    def counted(self, done: int) -> None:
        """The study has ``done`` fits stored (other runners' too): the bar shows at least that."""
        with self._lock:
            self.bar.n = min(self.bar.total, max(self.bar.n, done))
            self.bar.refresh()

    def refresh(self) -> None:
        with self._lock:
            self.bar.refresh()

    def close(self, *, leave: bool = True) -> None:
        """Close the bar; ``leave=False`` removes it (an error's line alone, without an empty bar above it)."""
        with self._lock:
            if not leave:
                self.bar.leave = False
            self.bar.close()


class Writer:
    """Runs storage writes in order on a background thread, so that they overlap the next fits.

    A finished configuration is about a hundred small writes; the runner meanwhile claims
    and fits the next ones. An error in a write is raised again in the runner's thread by
    :meth:`check` (or :meth:`close`); after one, later writes are dropped.
    """

    def __init__(self) -> None:
        self._jobs: queue.Queue[Callable[[], None] | None] = queue.Queue()
        self._errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._work, name="actreg-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def _work(self) -> None:
        while True:
            job = self._jobs.get()
            try:
                if job is None:
                    return
                if not self._errors:
                    job()
            except BaseException as exc:  # noqa: BLE001 - handed to the runner's thread
                self._errors.append(exc)
            finally:
                self._jobs.task_done()

    def check(self) -> None:
        if self._errors:
            raise self._errors[0]

    def flush(self) -> None:
        self._jobs.join()
        self.check()

    def close(self) -> None:
        """Finish what was submitted and join the thread (a writer never started returns at once)."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self.check()


class Ticker:
    """A thread that refreshes the bar every second, so that its clock moves between chunks."""

    def __init__(self, state: RunState) -> None:
        self._state = state
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._tick, name="actreg-progress", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self._state.refresh()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()


# Seconds between two progress lines where the run's stream is no terminal (a CI log, a pipe).
PLAIN_EVERY_S = 15.0


class PlainProgress:
    """Progress as a plain line every :data:`PLAIN_EVERY_S` seconds, for a stream that is no terminal:
    the configurations this runner stored, the fits done of the total, fits per second and the time
    left, and what the bar would show beside it. The subset of tqdm's interface that :class:`RunState`
    uses; ``configurations`` is set by it."""

    def __init__(self, desc: str, stream: TextIO, every: float | None = None) -> None:
        import time

        self.desc, self.stream, self.every = desc, stream, PLAIN_EVERY_S if every is None else every
        self.n, self.total, self.postfix, self.leave = 0, 0, "", True
        self.configurations: Callable[[], int] = lambda: 0
        self._clock = time.monotonic
        self._started = self._said = self._clock()
        self._first: tuple[float, int] | None = None  # when the first fit came back, and how many then

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._first is None and self.n:
            self._first = (self._clock(), self.n)

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def write(self, message: str, file: TextIO | None = None) -> None:
        print(message, file=file or self.stream, flush=True)

    def refresh(self) -> None:
        now = self._clock()
        if now - self._said >= self.every:
            self._said = now
            print(self.line(now), file=self.stream, flush=True)

    def line(self, now: float) -> str:
        """``name: 12 configurations stored; 360 of 1,110 fits (32%), 4.1 fits/s, about 3 min left; ...``."""
        done = f"{self.n:,} of {self.total:,} fits" + (f" ({self.n / self.total:.0%})" if self.total else "")
        pace = ""
        if self._first is not None and now > self._first[0] and self.n > self._first[1]:
            rate = (self.n - self._first[1]) / (now - self._first[0])  # from the first fits: compiling excluded
            left = max(0, self.total - self.n) / rate
            pace = f", {rate:.1f} fits/s, about {_duration(left)} left"
        beside = f"; {self.postfix}" if self.postfix else ""
        return (f"{self.desc}: {self.configurations()} configurations stored; {done}{pace}, "
                f"{_duration(now - self._started)} in{beside}")

    def close(self) -> None:
        pass


def _duration(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def in_notebook() -> bool:
    """Whether this process is a Jupyter kernel (whose stderr is no terminal, yet shows a bar)."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None and hasattr(ipython, "get_ipython") else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def progress_bar(spec: StudySpec, enabled: bool | None, stream: TextIO) -> Any:
    """The progress bar: on a terminal, and in a Jupyter notebook, as its widget where ipywidgets is
    installed, else as text in the cell's output (tqdm.auto would warn). By default a stream that is
    neither gets a plain line every :data:`PLAIN_EVERY_S` seconds (:class:`PlainProgress`);
    ``enabled=False`` shows nothing, ``True`` a bar wherever the stream goes."""
    notebook = in_notebook()
    if enabled is None and not notebook and not _terminal(stream):
        return PlainProgress(spec.name, stream)
    if enabled is None:
        enabled = True
    if notebook and enabled:
        try:
            import ipywidgets  # noqa: F401 - tqdm's widget needs it
            from tqdm.notebook import tqdm as notebook_bar

            return notebook_bar(total=0, unit="fit", desc=spec.name)
        except ImportError:
            pass
    from tqdm.std import tqdm

    return tqdm(total=0, unit="fit", desc=spec.name, file=stream, disable=not enabled, dynamic_ncols=True)


def _terminal(stream: TextIO) -> bool:
    isatty = getattr(stream, "isatty", None)
    try:
        return bool(isatty and isatty())
    except ValueError:  # a closed stream
        return False
