"""The shared queue and its storage: Optuna behind one door.

Every call into Optuna and optuna-dashboard is made here: :mod:`~search.store.storage` opens a URL
(SQLite by default, PostgreSQL to scale out) and keeps a study's fingerprint;
:mod:`~search.store.claims` is the queue of configurations that any number of runners drain, on
:mod:`~search.store.trials` (reads), :mod:`~search.store.finishing` (results, failures, the claims
of runners that died) and :mod:`~search.store.heartbeat`; :mod:`~search.store.reading` is a
reader's view of a stored study; :mod:`~search.store.dashboard` serves optuna-dashboard and writes
its notes and artifacts; :mod:`~search.store.schema` declares what a trial stores.
``tests/test_store_contract.py`` pins the storage behaviour the claims rely on, and each private
name of Optuna used here.
"""

from __future__ import annotations

from search._lazy import exports

_NAMES = {
    "StorageError": "storage", "StudyNotFound": "storage", "load_study": "reading", "open_storage": "storage",
    "redact": "storage", "spec_fingerprint": "storage", "Claim": "trials", "Heartbeat": "heartbeat",
    "StudyQueue": "claims", "serve": "dashboard", "attach_report": "dashboard", "save_notes": "dashboard",
}
__all__ = sorted(_NAMES)
__getattr__ = exports(__name__, _NAMES)
