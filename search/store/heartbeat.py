"""Who holds a claim (a runner, a process on a machine) and the heartbeat that keeps it held."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna


def runner_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def local_process(pid: int | None = None) -> str | None:
    """An identity of process ``pid`` (default: this one) that only this machine's processes can match.

    The kernel's boot id and the PID namespace say "the same machine, the same process
    table" (two containers with one host name differ here); the process's start time
    tells a PID that was reused. ``None`` where /proc does not say.
    """
    pid = pid or os.getpid()
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        namespace = os.stat("/proc/self/ns/pid").st_ino
        with open(f"/proc/{pid}/stat") as f:
            started = f.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None
    return f"{boot}/{namespace}/{pid}/{started}"


def gone(process: str | None) -> bool:
    """True if ``process`` (a :func:`local_process` identity) ran on this machine and has ended."""
    mine = local_process()
    if process is None or mine is None:
        return False
    boot, namespace, pid, _ = process.split("/")
    if mine.split("/")[:2] != [boot, namespace]:
        return False  # another machine or container: only its heartbeat can tell
    return local_process(int(pid)) != process


class Heartbeat:
    """Beats the heartbeat of every trial this runner holds, from a thread started by :meth:`start`.

    The runner's main thread may spend minutes in one call (joblib waiting for its
    workers, or a fit in this process); TensorFlow and joblib release the GIL meanwhile,
    so this thread keeps beating. A beat that fails (the storage away past its patience, or
    a bug) is counted, and said in one line; a trial not beaten for longer than ``grace``
    seconds may have been failed as stale and queued again by another runner, so it is given
    up: no longer beaten, and :meth:`given_up` says so to the runner, which stores nothing of it.
    """

    def __init__(self, storage: optuna.storages.RDBStorage, grace: float,
                 say: Callable[[str], None] | None = None) -> None:
        self.storage, self.grace = storage, grace
        self.interval = storage.get_heartbeat_interval() or 10
        self.say = say or (lambda line: None)
        self.errors = 0  # beats that failed
        self._beaten: dict[int, float] = {}  # held trial -> when it was last beaten (or claimed)
        self._given_up: set[int] = set()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="actreg-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def hold(self, trial_id: int) -> None:
        """Beat ``trial_id`` from now on (its claim recorded the first beat)."""
        with self._lock:
            self._beaten[trial_id] = time.monotonic()

    def drop(self, trial_id: int) -> None:
        with self._lock:
            self._beaten.pop(trial_id, None)
            self._given_up.discard(trial_id)

    def held(self) -> list[int]:
        with self._lock:
            return sorted(self._beaten)

    def given_up(self, trial_id: int) -> bool:
        """Whether ``trial_id`` went unbeaten for longer than the grace period (see the class)."""
        with self._lock:
            return trial_id in self._given_up

    def beat(self) -> None:
        """Beat every held trial once (the thread calls this every ``interval`` seconds)."""
        failures: list[BaseException] = []
        for trial_id in self.held():
            try:
                self.storage.record_heartbeat(trial_id)
            except Exception as exc:  # noqa: BLE001 - counted, said, and its trials given up after the grace
                failures.append(exc)
                with self._lock:
                    since = self._beaten.get(trial_id)
                    if since is not None and time.monotonic() - since > self.grace:
                        self._beaten.pop(trial_id)
                        self._given_up.add(trial_id)
                continue
            with self._lock:
                if trial_id in self._beaten:
                    self._beaten[trial_id] = time.monotonic()
        if failures:
            if not self.errors:
                error = failures[0]
                first = str(error).splitlines()[0][:200] if str(error) else ""
                self.say(f"heartbeat: cannot beat ({type(error).__name__}: {first}); a claim not beaten for "
                         f"{self.grace} s is given up, since another runner may take it over")
            self.errors += len(failures)
        elif self.errors and self.held():
            self.say(f"heartbeat: beating again, after {self.errors} failed beats")
            self.errors = 0

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat()

    def close(self) -> None:
        """Stop beating and join the thread (a beat that waits out an outage is left after 10 s: its
        thread is a daemon, and the claims it held go stale for the next runner)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
