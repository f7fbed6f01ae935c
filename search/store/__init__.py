"""The shared queue and its storage: Optuna behind one door.

Every call into Optuna and optuna-dashboard is made here: :mod:`~search.store.storage` opens a URL
(SQLite by default, PostgreSQL to scale out), creates or loads a study and keeps its
fingerprint; :mod:`~search.store.claims` is the queue of configurations that any number of
runners drain (claims, heartbeats, results, failures); :mod:`~search.store.schema` declares
what a trial stores. ``tests/test_store_contract.py`` pins the storage behaviour the claims
rely on; :mod:`~search.store.dashboard` serves optuna-dashboard and writes its notes and artifacts.
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
