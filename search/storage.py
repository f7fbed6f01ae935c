"""Optuna storage: one URL names it everywhere (SQLite by default, PostgreSQL to scale out)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from search.spec import StudySpec

if TYPE_CHECKING:
    import optuna

SPEC_ATTR = "actreg_spec"


class StudyNotFound(LookupError):
    """The storage has no study of that name (nothing was created)."""


def open_storage(url: str, *, create: bool) -> optuna.storages.BaseStorage:
    """Open the storage at ``url``; with ``create=False`` a missing SQLite file is an error.

    SQLite gets a generous lock timeout so that a dashboard reading the file does not
    make a running study fail.
    """
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:///"):
        path = url[len("sqlite:///"):]
        if path and path != ":memory:":
            if not create and not os.path.exists(path):
                raise StudyNotFound(f"no database at {path}")
            if create:
                os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        engine_kwargs["connect_args"] = {"timeout": 60}
    return optuna.storages.RDBStorage(url, engine_kwargs=engine_kwargs)


def load_study(spec: StudySpec) -> optuna.Study:
    """The existing study of ``spec``; raises :class:`StudyNotFound` if it was never run."""
    import optuna

    storage = open_storage(spec.storage, create=False)
    try:
        return optuna.load_study(study_name=spec.name, storage=storage)
    except KeyError:
        raise StudyNotFound(f"no study named {spec.name!r} in {spec.storage}") from None


def spec_fingerprint(spec: StudySpec) -> dict[str, Any]:
    """The parts of ``spec`` that determine the numbers, as plain JSON data.

    Where the results are stored (``storage``), how many workers compute them
    (``n_jobs``), the file's path and the published references do not change them and
    are left out.
    """
    d = asdict(spec)
    for key in ("storage", "n_jobs", "path", "references"):
        d.pop(key)
    d["model"].pop("builder_path")  # where the builder's module lies, not what it computes
    if spec.data.path is not None:  # a user's file counts by its content, wherever it lies
        d["data"]["path"] = "sha256:" + file_digest(spec.data.path)
    return json.loads(json.dumps(d))


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
