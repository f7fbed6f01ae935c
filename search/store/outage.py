"""A storage that rides through outages: a lost database connection is retried, not fatal.

A PostgreSQL server that restarts, an administrator who terminates a runner's connections,
a network that drops for a minute, a SQLite file that another process keeps locked: each
makes one storage call fail, and Optuna's storage raises (``StorageInternalError``). Every
call of a runner goes through :class:`RetryingStorage` instead, which waits with growing
pauses (0.5 s, 1 s, 2 s ... up to 10 s) and tries again, for at most the study's
``storage_patience`` seconds in all. It says so in one line when an outage begins and in
one when it ends. Past the bound it gives up: :class:`StorageUnavailable` (one line, exit
2, "run the same command again to resume"), and every later call gives up at once, so
that the runner's threads (claiming, storing, beating heartbeats) stop together instead
of claiming work that nothing could store.

Only a lost connection waits. A disk that is full, a database that is read-only or
corrupt, a refused login stay as they are when retried, so they become one
:class:`~search.store.storage.StorageError` line at once. A write whose commit reached
the server just before the connection broke may run twice when retried; the queue
tolerates that (a second ``COMPLETE`` is refused and read back as stored, a configuration
queued twice is settled by its lowest-numbered trial, see :mod:`search.store.claims`).
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna

from search.store.errors import StorageError, describe_error, redact

FIRST_PAUSE, LONGEST_PAUSE = 0.5, 10.0  # seconds between two tries of a call during an outage

# The storage methods a runner and Optuna's own code (study, trial, sampler, heartbeats, its
# trial cache) call; tests/test_store_contract.py checks that the cache calls no other.
_CALLS = (
    "create_new_study", "delete_study", "set_study_user_attr", "set_study_system_attr", "get_study_id_from_name",
    "get_study_name_from_id", "get_study_directions", "get_study_user_attrs", "get_study_system_attrs",
    "get_trial_user_attrs", "get_trial_system_attrs", "get_all_studies", "create_new_trial", "set_trial_param",
    "get_trial_param", "set_trial_state_values", "set_trial_intermediate_value", "set_trial_user_attr",
    "set_trial_system_attr", "get_trial_id_from_study_id_trial_number", "get_trial", "get_all_trials",
    "get_best_trial", "record_heartbeat", "_get_stale_trial_ids",
    # Optuna's trial cache calls these private ones of its backend directly (a lost connection in
    # its read of the trials once ended a run that every public call would have ridden through).
    "_get_trials", "_create_new_trial", "_set_trial_param", "_get_best_trial_id",
)


class StorageUnavailable(StorageError):
    """The storage stayed away longer than the study's ``storage_patience``."""


def lost_connection(exc: BaseException) -> bool:
    """True for the errors of a connection that broke or could not be made, which a later try may not meet."""
    import sqlalchemy.exc as sa

    cause = exc.__cause__ if isinstance(exc, optuna.exceptions.StorageInternalError) else exc
    if isinstance(cause, sa.DBAPIError) and cause.connection_invalidated:
        return True  # SQLAlchemy recognised a disconnect (server restarted, connection terminated)
    if isinstance(cause, (sa.PendingRollbackError, sa.ResourceClosedError)):
        return True
    if not isinstance(cause, (sa.OperationalError, sa.InterfaceError)):
        return False
    orig = getattr(cause, "orig", None)
    text = str(orig if orig is not None else cause).lower()
    if type(orig).__module__.startswith("sqlite3"):
        return "database is locked" in text  # another process held the write lock past SQLITE_TIMEOUT
    # PostgreSQL: an operational error is the server or the network, unless it says otherwise.
    return not any(p in text for p in ("authentication failed", "does not exist", "permission denied",
                                       "no space left", "could not extend file", "read-only transaction"))


class RetryingStorage(optuna.storages.RDBStorage):
    """Optuna's RDB storage whose calls wait out a lost connection (see the module).

    ``patience`` is the bound in seconds; ``say`` prints a line (the runner passes its
    progress bar's). Optuna wraps an ``RDBStorage`` in its trial cache as usual.
    """

    def __init__(self, *args: Any, patience: float = 300, say: Callable[[str], None] | None = None,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.patience = patience
        self.say = say or (lambda line: print(line, file=sys.stderr, flush=True))
        self._lock = threading.Lock()
        self._down_since: float | None = None  # when the outage that calls are waiting out began
        self._gave_up: StorageUnavailable | None = None

    def __getstate__(self) -> dict[Any, Any]:  # a storage travels without its threads' state
        state = super().__getstate__()
        for name in ("_lock", "say", "_down_since", "_gave_up"):
            state.pop(name, None)
        return state

    def __setstate__(self, state: dict[Any, Any]) -> None:
        super().__setstate__(state)
        self.say = lambda line: print(line, file=sys.stderr, flush=True)
        self._lock, self._down_since, self._gave_up = threading.Lock(), None, None

    def _retrying(self, call: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        pause = FIRST_PAUSE
        while True:
            if self._gave_up is not None:
                raise self._gave_up
            try:
                result = call(*args, **kwargs)
            except Exception as exc:
                if isinstance(exc, optuna.exceptions.StorageInternalError) and not lost_connection(exc):
                    raise StorageError(describe_error(exc.__cause__ or exc, self.url)) from None
                if not lost_connection(exc):
                    raise
                if not self._wait(exc, pause):
                    gave_up = self._gave_up
                    assert gave_up is not None, "_wait records why before it gives up"
                    raise gave_up from None
                pause = min(LONGEST_PAUSE, pause * 2)
                continue
            if self._down_since is not None:
                self._back()
            return result

    def _wait(self, exc: BaseException, pause: float) -> bool:
        """Note the outage (one line when it begins) and sleep ``pause``; False once past the bound."""
        reason = _reason(exc, self.url)
        with self._lock:
            now = time.monotonic()
            if self._down_since is None:
                self._down_since = now
                self.say(f"storage {redact(self.url)} unreachable ({reason}); retrying for up to "
                         f"{self.patience:g} s")
            elif now - self._down_since > self.patience:
                if self._gave_up is None:
                    self._gave_up = StorageUnavailable(
                        f"{redact(self.url)}: unreachable for {self.patience:g} s ({reason}); "
                        "run the same command again to resume")
                return False
        time.sleep(pause)
        return True

    def _back(self) -> None:
        with self._lock:
            if self._down_since is not None:
                self.say(f"storage {redact(self.url)} is back after {time.monotonic() - self._down_since:.0f} s; "
                         "going on")
                self._down_since = None


def _reason(exc: BaseException, url: str) -> str:
    """The first line of the driver's message, password masked, without the URL's prefix."""
    line = describe_error(exc.__cause__ if exc.__cause__ is not None else exc, url)
    return line.split(": cannot use the storage: ", 1)[-1]


def _retried(name: str) -> Callable[..., Any]:
    plain = getattr(optuna.storages.RDBStorage, name)

    def call(self: RetryingStorage, *args: Any, **kwargs: Any) -> Any:
        return self._retrying(plain, self, *args, **kwargs)

    call.__name__ = call.__qualname__ = name
    call.__doc__ = plain.__doc__
    return call


for _name in _CALLS:
    setattr(RetryingStorage, _name, _retried(_name))
