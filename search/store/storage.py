"""Optuna storage: one URL names it everywhere (SQLite by default, PostgreSQL to scale out).

Opening a storage is where users meet the outside world (a server that is down, a
refused login, a file that is not a database), so every failure here becomes one
:class:`StorageError` line, and a password in a URL is never shown: :func:`redact`
masks it in everything this package prints or stores.

Several runners share one study through the storage (see :mod:`search.store.claims`), which
asks three things of it:

* heartbeats, so that the claims of a runner that died go stale and are retried
  (Optuna's own mechanism: ``heartbeat_interval``, ``grace_period`` and
  ``RetryHeartbeatStaleTrialCallback``);
* atomic claims: Optuna pops a waiting trial by reading its state and then updating it.
  PostgreSQL locks the row (``SELECT ... FOR UPDATE``); SQLite ignores that clause, and
  Python's sqlite3 driver starts a transaction only at the first write, so two
  processes could both read "waiting" and both claim the trial. SQLite connections
  opened here therefore begin every transaction with ``BEGIN IMMEDIATE``, which takes
  the database's write lock before the read. They also use SQLite's write-ahead log
  with ``synchronous = NORMAL``: a finished trial is about 120 small writes, which cost
  2.5 s with a flush to disk after each and 0.3 s without (measured on this project's
  2-core machine); the database stays consistent after a crash, and a power cut may lose
  the last trials, which the next run fits again;
* no crash when several processes create the schema of a new database at once: that
  race (a duplicate ``alembic_version`` row, a duplicate PostgreSQL type) is retried.
"""

from __future__ import annotations

import json
import os
import random
import sys
import time
import warnings
import weakref
from collections.abc import Callable
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from search.store.errors import (
    StorageError,
    StudyNotFound,
    describe_error,
    redact,
    scrub,
    sqlite_path,
)
from search.store.schema import GRACE_ATTR, PENALTY_ATTR, SPEC_ATTR, VERSIONS_ATTR
from search.study.spec import StudySpec
from search.study.validation import SpecError, sqlite_url  # noqa: F401 - sqlite_url: part of this module's interface

__all__ = ["StorageError", "StudyNotFound", "describe_error", "redact", "scrub", "sqlite_path"]  # and below

if TYPE_CHECKING:
    import optuna

# A stale claim is retried this many times (each retry is a new waiting trial); past that
# it stays failed until the next ``actreg run`` queues the configuration again.
STALE_RETRIES = 3
SQLITE_TIMEOUT = 60  # seconds a SQLite connection waits for another process's write lock
DEFAULT_PATIENCE = 300  # seconds a lost storage is waited for (a study's ``storage_patience``)
_SQLITE_HEADER = b"SQLite format 3\x00"


ACCESS = ("run", "read")


def close_storage(storage: optuna.storages.RDBStorage) -> None:
    storage.remove_session()
    storage.engine.dispose()


def open_storage(url: str, *, create: bool, grace: int | None = None, access: str = "run",
                 patience: float = DEFAULT_PATIENCE, say: Callable[[str], None] | None = None
                 ) -> optuna.storages.RDBStorage:
    """Open the storage at ``url``; with ``create=False`` a missing SQLite file is :class:`StudyNotFound`.

    ``grace`` (seconds) turns heartbeats on: a claimed trial whose runner has not beaten
    for that long is failed by the next runner that looks, and queued again. ``access``
    says who opens it: a runner (``"run"``) or a reader (``"read"``: export, report,
    optuna-dashboard, which may write a note). On SQLite only a runner's transactions take
    the write lock when they begin, so a runner suspended mid-write does not block a reader;
    a reader reads a file or folder that it may not write as it is, with nothing created
    beside it. A connection lost later is retried for ``patience`` seconds
    (see :mod:`search.store.outage`), said to ``say`` (default: standard error).
    Raises :class:`StorageError` (one line, password masked) when the storage cannot be used.
    """
    import optuna

    from search.store.outage import RetryingStorage

    if access not in ACCESS:
        raise ValueError(f"access must be one of {ACCESS}")
    path = sqlite_path(url)
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        _check_sqlite_file(url, path, create and access == "run")
        folder = os.path.dirname(os.path.abspath(path))
        if access == "read" and not (os.access(path, os.W_OK) and _folder_writable(folder)):
            engine_kwargs["creator"] = _sqlite_reader(path)
        else:
            if access == "run":
                _check_writable(url, path)
            engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT, "isolation_level": None}
            if create:
                _create_in_wal_mode(url, path)
    heartbeat: dict[str, Any] = {}
    if grace is not None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=STALE_RETRIES)
        heartbeat = {
            "heartbeat_interval": max(1, grace // 5),
            "grace_period": grace,
            "heartbeat_stale_trial_callback": retry,
        }
    for attempt in range(8):
        try:
            with warnings.catch_warnings():  # heartbeats are "experimental" in Optuna; we rely on them knowingly
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = RetryingStorage(url, engine_kwargs=engine_kwargs, skip_table_creation=access != "run",
                                          patience=patience, say=say, **heartbeat)
            if path is not None:
                # Only now: creating the schema nests two connections, which BEGIN IMMEDIATE would deadlock.
                _begin_transactions(storage.engine, "BEGIN IMMEDIATE" if access == "run" else "BEGIN")
            return storage
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line below
            if attempt < 7 and access == "run" and _creation_race(exc):
                time.sleep(random.uniform(0.05, 0.2) * 2 ** attempt)  # another process creates the schema
                continue
            raise StorageError(describe_error(exc, url)) from None
    raise AssertionError("unreachable")


def _check_writable(url: str, path: str) -> None:
    """A runner writes the file and, beside it, SQLite's write-ahead log: refuse at once where it may not."""
    why = _unwritable(path)
    if why is None:
        return
    tail = ("a run writes the study and SQLite's log files beside it" if why.startswith("the folder") else
            "`actreg export`, `report --no-attach` and `dashboard` can read it, a run needs to write it")
    raise StorageError(f"{redact(url)}: {why}; {tail}")


def _unwritable(path: str) -> str | None:
    """Why the SQLite file at ``path`` (or, for a new one, its folder) cannot be written, else ``None``."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(folder) and not _folder_writable(folder):
        return f"the folder {folder} is read-only"
    if os.path.exists(path) and not os.access(path, os.W_OK):
        return f"{path} is read-only"
    return None


def read_only(url: str) -> str | None:
    """Why a SQLite storage at ``url`` cannot be written (a read-only file or folder), else ``None``
    (other storages are found out when they refuse a write)."""
    path = sqlite_path(url)
    return None if path is None or not os.path.exists(path) else _unwritable(path)


def _folder_writable(folder: str) -> bool:
    """Whether files can be made in ``folder`` (a read-only mount too, which ``os.access`` misses for root)."""
    if not os.access(folder, os.W_OK):
        return False
    try:
        return not (os.statvfs(folder).f_flag & os.ST_RDONLY)
    except OSError:
        return True


def _create_in_wal_mode(url: str, path: str) -> None:
    """Make a new database file in write-ahead-log mode before Optuna writes its schema into it.

    Switching an existing database to WAL needs it to itself: with other runners connected
    that fails at once ("database is locked", without waiting), so the switch is made once,
    here, by the process that creates the file; a file that exists is left to the connections.
    """
    import sqlite3

    if os.path.exists(path) and os.path.getsize(path) > 0:
        return
    deadline = time.monotonic() + SQLITE_TIMEOUT
    while True:
        try:
            connection = sqlite3.connect(path, timeout=SQLITE_TIMEOUT, isolation_level=None)
            try:
                connection.execute("PRAGMA journal_mode=WAL")
            finally:
                connection.close()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise StorageError(describe_error(exc, url)) from None
            time.sleep(random.uniform(0.02, 0.1))


def _sqlite_reader(path: str):
    """A connection factory that reads the SQLite file ``path`` without writing anything.

    For a file or folder that this process may not write: ``mode=ro`` makes SQLite refuse
    every write, and SQLite could not make the shared-memory file that WAL readers use, so
    if no log is pending (a runner that closes folds its log into the file) the file is
    opened ``immutable``: no locks, nothing created beside it. (Where it may write, a reader
    is an ordinary connection whose transactions begin deferred: a WAL reader, which never
    waits for a writer, and whose last close removes the log's files.)
    """
    import sqlite3
    from urllib.parse import quote

    wal = path + "-wal"
    pending = os.path.exists(wal) and os.path.getsize(wal) > 0
    uri = f"file:{quote(os.path.abspath(path))}?mode=ro" + ("" if pending else "&immutable=1")

    def connect():
        return sqlite3.connect(uri, uri=True, timeout=SQLITE_TIMEOUT, isolation_level=None, check_same_thread=False)

    return connect


def _check_sqlite_file(url: str, path: str, create: bool) -> None:
    """Problems with a SQLite file that SQLite reports late or not at all, found before anything is written."""
    shown = redact(url)
    parent = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise StorageError(f"{shown}: {path} is a folder, not a SQLite file")
    walk = parent
    while walk and not os.path.exists(walk):
        walk = os.path.dirname(walk)
    if walk and not os.path.isdir(walk):
        raise StorageError(f"{shown}: cannot create {path}: {walk} is a file, not a folder")
    if not os.path.exists(path):
        if not create:
            raise StudyNotFound(f"no database at {path}")
        made = None
        if not os.path.isdir(parent) and not os.path.isabs(path):  # a mistyped relative path makes folders here
            made = parent
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{shown}: cannot create the folder {parent}: {exc.strerror}") from None
        if made:
            print(f"note: {shown}: a relative path: made the folder {made} for the new database "
                  f"{os.path.abspath(path)} (sqlite://// with four slashes is an absolute path)", file=sys.stderr)
        if not os.access(parent, os.W_OK):
            raise StorageError(f"{shown}: cannot create {path}: the folder is not writable")
        return
    size = os.path.getsize(path)
    if size == 0:
        if not create:  # a reader would create Optuna's schema in it first (and fail on a read-only one)
            raise StudyNotFound(f"{path} is an empty file: it holds no study")
        return  # SQLite takes an empty file as an empty database
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise StorageError(f"{shown}: cannot read {path}: {exc.strerror}") from None
    if not header.startswith(_SQLITE_HEADER):
        raise StorageError(f"{shown}: {path} is not a SQLite database (a corrupt or foreign file; "
                           "move it away or give another --storage)")
    wal = path + "-wal"
    if os.path.exists(wal) and os.path.getsize(wal) > 0:
        return  # pages may still be in the write-ahead log (a checkpoint cut short): SQLite reads them there
    if len(header) == 100:
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        valid = header[92:96] == header[24:28]  # SQLite trusts the in-header size only then
        if valid and page_size and pages and page_size * pages > size:
            raise StorageError(f"{shown}: {path} is truncated ({size} of {page_size * pages} bytes); "
                               "restore it from a copy or give another --storage")


_BEGIN: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # engine -> how its transactions begin


WAL_CHECKPOINT_PAGES = 100
WAL_LIMIT_BYTES = 256 * 1024


def _begin_transactions(engine, begin: str) -> None:
    """Make every transaction of the SQLite ``engine`` start with ``begin``: ``BEGIN IMMEDIATE`` for a
    runner (its claims, see the module), in WAL mode; a plain ``BEGIN`` for a reader, whose
    transactions see one snapshot and never take the write lock."""
    from sqlalchemy import event

    if begin == "BEGIN IMMEDIATE":
        @event.listens_for(engine, "connect")
        def _connect(dbapi_connection, record) -> None:
            _set_wal(dbapi_connection)
            dbapi_connection.execute("PRAGMA synchronous=NORMAL")
            # The log folds into the file every ~100 pages and is cut back to 256 kB after, so that it
            # never grows past the study (by default it grows to 4 MB and stays: a small disk filled).
            dbapi_connection.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
            dbapi_connection.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")

        engine.dispose()  # the connections opened while the schema was made lack the pragmas
    if not _LISTENING:
        from sqlalchemy.engine import Engine

        @event.listens_for(Engine, "begin")
        def _begin(conn) -> None:  # the driver runs in autocommit mode (isolation_level=None)
            how = _BEGIN.get(conn.engine)
            if how is not None:
                conn.exec_driver_sql(how)

        _LISTENING.append(_begin)
    _BEGIN[engine] = begin


def _set_wal(dbapi_connection) -> None:
    """Put a database made by an earlier version (rollback journal) into WAL mode; a no-op once it is."""
    import sqlite3

    if dbapi_connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal":
        return
    deadline = time.monotonic() + SQLITE_TIMEOUT
    while True:
        try:
            dbapi_connection.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:  # another connection is in it: the switch does not wait
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(random.uniform(0.02, 0.1))


_LISTENING: list = []


def _creation_race(exc: BaseException) -> bool:
    """True for the errors of two processes creating one database's schema at once."""
    text = str(exc).lower()
    return type(exc).__name__ in ("IntegrityError", "OperationalError", "ProgrammingError") and any(
        s in text for s in ("already exists", "unique constraint", "duplicate key", "database is locked"))


def spec_fingerprint(spec: StudySpec) -> dict[str, Any]:
    """The parts of ``spec`` that determine the numbers, as plain JSON data.

    Where the results are stored (``storage``), how many workers compute them and where
    (``n_jobs``, ``scheduler``), how runs treat failures, the file's path and the published references
    do not change them and are left out. So is the ``rope`` of a study of fixed replicates: it
    changes the verdicts a reader draws, not the numbers; a race's rope decides which fits are made,
    so there it counts (as do ``[race]`` and its ``alpha``).
    """
    d = asdict(spec)
    for key in ("storage", "n_jobs", "path", "references", "heartbeat_grace", "max_failures", "worker_retries",
                "scheduler", "storage_patience"):
        d.pop(key)
    if spec.race is None:
        d.pop("rope")
    d["model"].pop("builder_path")  # where the builder's module lies, not what it computes
    for key, default in ADDED_DATA_KEYS.items():  # at their defaults, studies stored earlier keep their fingerprint
        if d["data"][key] == default:
            del d["data"][key]
    if spec.data.path is not None:  # a user's file counts by its content, wherever it lies
        d["data"]["path"] = "sha256:" + file_digest(spec.data.path)
    return json.loads(json.dumps(d))


# Data settings added after studies were stored, with the value that reproduces the earlier behaviour.
ADDED_DATA_KEYS = {"validation": None, "resample": "none"}


def file_digest(path: str) -> str:
    import hashlib

    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _unset_removed(value: Any) -> Any:
    """``value`` without the dict entries that are None: a setting added later is None when unused."""
    if isinstance(value, dict):
        return {k: _unset_removed(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_unset_removed(v) for v in value]
    return value


def fingerprint_diff(stored: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two fingerprints (unset and absent settings are equal)."""
    if not prefix:
        stored, current = _unset_removed(stored), _unset_removed(current)
    out = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        name = f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(fingerprint_diff(a, b, name + "."))
        elif a != b:
            out.append(name)
    return out


def check_or_record_spec(study: optuna.Study, spec: StudySpec, versions: dict[str, str], created: bool) -> None:
    """Record the fingerprint of ``spec`` on a new study, or refuse ``spec`` if the study's differs.

    Only the runner that created the study (one, however many start together) records it;
    the others wait for it, so that two files that differ can never both run. A creator
    that died before recording leaves the study to the first runner that records after
    the grace period, which reads the record back to see that it was the first.
    """
    current = spec_fingerprint(spec)
    if created:
        _record_spec(study, spec, versions, current)
        return
    stored = _wait_for_attr(study, SPEC_ATTR, spec.heartbeat_grace)
    if stored is None:
        _record_spec(study, spec, versions, current)
        time.sleep(1.0)  # another late runner that recorded meanwhile: the last record stands, read it back
        stored = study.user_attrs.get(SPEC_ATTR)
    diff = fingerprint_diff(stored, current)
    if diff:
        raise SpecError(spec.path or "<study>", "name",
                        f"study {spec.name!r} in {redact(spec.storage)} was run with other settings "
                        f"({', '.join(diff)}); give the study another name or storage")


def _record_spec(study: optuna.Study, spec: StudySpec, versions: dict[str, str], fingerprint: dict) -> None:
    study.set_user_attr(PENALTY_ATTR, spec.penalty)
    study.set_user_attr(VERSIONS_ATTR, versions)
    study.set_user_attr(GRACE_ATTR, spec.heartbeat_grace)
    study.set_user_attr(SPEC_ATTR, fingerprint)  # last: a runner that sees it sees the rest


def _wait_for_attr(study: optuna.Study, name: str, seconds: float):
    """The study's user attribute ``name``, waited for up to ``seconds`` (its creator writes it at once)."""
    deadline = time.monotonic() + seconds
    while True:
        value = study.user_attrs.get(name)
        if value is not None or time.monotonic() > deadline:
            return value
        time.sleep(0.1)
