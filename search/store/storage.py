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
import re
import time
import warnings
import weakref
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from search.study.spec import StudySpec

if TYPE_CHECKING:
    import optuna

# A stale claim is retried this many times (each retry is a new waiting trial); past that
# it stays failed until the next ``actreg run`` queues the configuration again.
STALE_RETRIES = 3
SQLITE_TIMEOUT = 60  # seconds a SQLite connection waits for another process's write lock
_SQLITE_HEADER = b"SQLite format 3\x00"


class StudyNotFound(LookupError):
    """The storage has no study of that name (nothing was created)."""


class StorageError(RuntimeError):
    """The storage cannot be used; ``str()`` is one line with any password masked."""


def redact(url: str) -> str:
    """``url`` with its password, if any, replaced by ``***``."""
    return re.sub(r"^([A-Za-z][\w+.-]*://[^:/@]*):[^@]*@", r"\1:***@", url)


def scrub(text: str, url: str) -> str:
    """``text`` (an error message, say) with the password of ``url`` masked wherever it appears."""
    match = re.match(r"^[A-Za-z][\w+.-]*://[^:/@]*:([^@]*)@", url)
    text = text.replace(url, redact(url))
    if match and match.group(1):
        from urllib.parse import unquote

        for secret in {match.group(1), unquote(match.group(1))}:
            text = text.replace(secret, "***")
    return text


def sqlite_path(url: str) -> str | None:
    """The file of a ``sqlite:///`` URL; ``None`` for other storages and in-memory SQLite."""
    if not url.startswith("sqlite:///"):
        return None
    path = url[len("sqlite:///"):].split("?", 1)[0]
    return path if path and path != ":memory:" else None


def open_storage(url: str, *, create: bool, grace: int | None = None) -> optuna.storages.RDBStorage:
    """Open the storage at ``url``; with ``create=False`` a missing SQLite file is :class:`StudyNotFound`.

    ``grace`` (seconds) turns heartbeats on: a claimed trial whose runner has not beaten
    for that long is failed by the next runner that looks, and queued again. Raises
    :class:`StorageError` (one line, password masked) when the storage cannot be used.
    """
    import optuna

    path = sqlite_path(url)
    engine_kwargs: dict[str, Any] = {}
    if path is not None:
        _check_sqlite_file(url, path, create)
        engine_kwargs["connect_args"] = {"timeout": SQLITE_TIMEOUT, "isolation_level": None}
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
                storage = optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs, **heartbeat)
            if path is not None:
                # Only now: creating the schema nests two connections, which BEGIN IMMEDIATE would deadlock.
                _begin_immediate(storage.engine)
            return storage
        except Exception as exc:  # noqa: BLE001 - every failure becomes one line below
            if attempt < 7 and _creation_race(exc):
                time.sleep(random.uniform(0.05, 0.2) * 2 ** attempt)  # another process creates the schema
                continue
            raise StorageError(describe_error(exc, url)) from None
    raise AssertionError("unreachable")


def describe_error(exc: BaseException, url: str) -> str:
    """One line saying why the storage at ``url`` failed, password masked."""
    shown = redact(url)
    if isinstance(exc, StorageError):
        return str(exc)
    if isinstance(exc, ImportError) or "Failed to import DB access module" in str(exc):
        scheme = url.split("://", 1)[0]
        hint = "; pip install -e \".[postgres]\"" if url.startswith("postgres") else ""
        return f"{shown}: the database driver for {scheme!r} is not installed{hint}"
    name = type(exc).__name__
    if name == "NoSuchModuleError" or "Can't load plugin" in str(exc):
        scheme = url.split("://", 1)[0]
        return (f"{shown}: unknown storage scheme {scheme!r}; use sqlite:///FILE.db or "
                "postgresql://USER@HOST/DATABASE")
    if name == "ArgumentError":
        return f"{shown}: not a database URL ({_first_line(str(exc))})"
    orig = getattr(exc, "orig", None)
    message = _first_line(str(orig if orig is not None else exc))
    if "file is not a database" in message or "malformed" in message:
        message += " (a corrupt or foreign file; move it away or give another --storage)"
    return f"{shown}: cannot use the storage: {scrub(message, url)}"


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"


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
        try:
            os.makedirs(parent, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"{shown}: cannot create the folder {parent}: {exc.strerror}") from None
        if not os.access(parent, os.W_OK):
            raise StorageError(f"{shown}: cannot create {path}: the folder is not writable")
        return
    size = os.path.getsize(path)
    if size == 0:
        return  # SQLite takes an empty file as an empty database
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except OSError as exc:
        raise StorageError(f"{shown}: cannot read {path}: {exc.strerror}") from None
    if not header.startswith(_SQLITE_HEADER):
        raise StorageError(f"{shown}: {path} is not a SQLite database (a corrupt or foreign file; "
                           "move it away or give another --storage)")
    if len(header) == 100:
        page_size = int.from_bytes(header[16:18], "big")
        page_size = 65536 if page_size == 1 else page_size
        pages = int.from_bytes(header[28:32], "big")
        valid = header[92:96] == header[24:28]  # SQLite trusts the in-header size only then
        if valid and page_size and pages and page_size * pages > size:
            raise StorageError(f"{shown}: {path} is truncated ({size} of {page_size * pages} bytes); "
                               "restore it from a copy or give another --storage")


_IMMEDIATE: weakref.WeakSet = weakref.WeakSet()  # engines whose transactions begin immediate


def _begin_immediate(engine) -> None:
    """Make every transaction of the SQLite ``engine`` start with ``BEGIN IMMEDIATE``, in WAL mode (see the module)."""
    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection, record) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    engine.dispose()  # the connections opened while the schema was made lack the pragmas
    if not _LISTENING:
        from sqlalchemy import event
        from sqlalchemy.engine import Engine

        @event.listens_for(Engine, "begin")
        def _begin(conn) -> None:  # the driver runs in autocommit mode (isolation_level=None)
            if conn.engine in _IMMEDIATE:
                conn.exec_driver_sql("BEGIN IMMEDIATE")

        _LISTENING.append(_begin)
    _IMMEDIATE.add(engine)


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
    do not change them and are left out.
    """
    d = asdict(spec)
    for key in ("storage", "n_jobs", "path", "references", "heartbeat_grace", "max_failures", "worker_retries",
                "scheduler", "rope"):
        d.pop(key)
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
