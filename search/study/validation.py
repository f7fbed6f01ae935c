"""Checks of study-file values: each failure is a :class:`SpecError` naming file, key and problem.

The helpers take the table ``t`` being read, the source ``s`` (the study file's name) and
the dotted ``key`` of the value, so that every message is generated in one place.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


class SpecError(ValueError):
    """A study file or option is invalid; ``str()`` is the one-line message for users."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        self.source, self.key, self.problem = source, key, problem
        super().__init__(f"{source}: {key}: {problem}")


def given(value: T | None, what: str = "a value") -> T:
    """``value``, which the parser always sets where it is read (a field that other kinds leave ``None``)."""
    if value is None:
        raise ValueError(f"{what} is not set")
    return value


def check(ok: bool, s: str, key: str, problem: str) -> None:
    if not ok:
        raise SpecError(s, key, problem)


def known(t: Mapping[str, Any], s: str, prefix: str, keys: set[str] | frozenset[str]) -> None:
    """Every key of ``t`` is one of ``keys``."""
    for k in t:
        if k not in keys:
            full = f"{prefix}.{k}" if prefix else k
            raise SpecError(s, full, f"unknown key (expected one of: {', '.join(sorted(keys))})")


def get(t: Mapping[str, Any], s: str, key: str, kind: type, *, required: bool = False, default: Any = None) -> Any:
    """The value of ``key``'s last part in ``t``, of type ``kind`` (a float may be written as an int)."""
    name = key.rsplit(".", 1)[-1]
    if name not in t:
        check(not required, s, key, "is required")
        return default
    v = t[name]
    if kind is float:
        check(is_number(v) and math.isfinite(v), s, key, "must be a number")
        return float(v)
    if kind is int:
        check(is_int(v), s, key, "must be an integer")
        return v
    check(isinstance(v, kind), s, key, f"must be a {'boolean' if kind is bool else kind.__name__}")
    return v


def positive(t: Mapping[str, Any], s: str, key: str, *, required: bool = False, default: int | None = None) -> int:
    """A positive integer."""
    v = get(t, s, key, int, required=required, default=default)
    check(v is None or v > 0, s, key, "must be a positive integer")
    return v


def choice(value: Any, s: str, key: str, allowed: Sequence[str]) -> str:
    check(isinstance(value, str) and value in allowed, s, key,
          f"must be one of {', '.join(repr(a) for a in allowed)} (got {value!r})")
    return value


def choices(value: Any, s: str, key: str, allowed: Sequence[str]) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    check(isinstance(value, list) and len(value) > 0, s, key, "must be a non-empty list")
    for i, v in enumerate(value):
        choice(v, s, f"{key}[{i}]", allowed)
    check(len(set(value)) == len(value), s, key, "has duplicate values")
    return tuple(value)


def pair(value: Any, s: str, key: str) -> tuple[int, int]:
    """An int or a two-int list, as Keras takes kernel sizes, strides and pool sizes."""
    if is_int(value):
        value = [value, value]
    check(isinstance(value, list) and len(value) == 2 and all(is_int(v) and v > 0 for v in value), s, key,
          "must be a positive integer or a list of two positive integers")
    return (value[0], value[1])


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# ----------------------------------------------------------------------------- run settings
# Keys that the command line may override too (StudySpec.with_overrides).


def storage_url(value: Any, s: str, key: str) -> str:
    check(isinstance(value, str) and "://" in value, s, key,
           "must be a database URL such as sqlite:///studies/x.db or postgresql://host/db")
    check("{" not in value.replace("{SCRIPT_PATH}", "") and "}" not in value.replace("{SCRIPT_PATH}", ""), s, key,
          "has a brace, which Optuna reads as a placeholder; write { and } as %7B and %7D")
    return value


def sqlite_url(path: str | os.PathLike[str]) -> str:
    """The ``sqlite:///`` URL of the file ``path``, whatever its name holds (``%``, ``?``, ``#``, braces)."""
    text = str(path)
    # The characters a URL reads as escapes, a query or a fragment ("%" first), and the braces that
    # Optuna fills in a storage URL ("{SCRIPT_PATH}").
    for char in "%?#{}":
        text = text.replace(char, f"%{ord(char):02X}")
    return "sqlite:///" + text


def file_name(name: str) -> str:
    """A study name as the name of its files and folders: as it is (``50%25 done`` stays so),
    except that a "/" or "\\" becomes "_" (a name is not a path)."""
    return name.replace("/", "_").replace("\\", "_")


def default_storage(folder: str | os.PathLike[str], name: Any) -> str:
    """The SQLite file a study named ``name`` is stored in by default: ``FOLDER/NAME.db``, by
    :func:`file_name`."""
    text = name if isinstance(name, str) and name.strip() else "study"
    return sqlite_url(os.path.join(folder, file_name(text) + ".db"))


def job_count(value: Any, s: str, key: str) -> int:
    check(is_int(value) and (value > 0 or value == -1), s, key, "must be a positive integer, or -1 for all cores")
    return value


def seed_list(value: Any, s: str, key: str) -> tuple[int, ...]:
    if is_int(value):
        check(0 < value <= 100_000, s, key, "must be a positive number of seeds (at most 100000)")
        return tuple(range(value))
    check(isinstance(value, list) and len(value) > 0, s, key,
          "must be a positive integer or a non-empty list of integers")
    for i, v in enumerate(value):
        check(is_int(v) and 0 <= v < 2**31, s, f"{key}[{i}]", "must be an integer between 0 and 2**31 - 1")
    check(len(set(value)) == len(value), s, key, "has duplicate seeds")
    return tuple(value)


def scheduler_address(value: Any, s: str, key: str) -> str:
    """A Dask scheduler address: ``tcp://HOST:PORT`` (or tls://, ws://, wss://)."""
    import re

    check(isinstance(value, str) and re.fullmatch(r"(tcp|tls|ws|wss)://[^\s:/]+:\d{1,5}", value) is not None, s, key,
          f"must be a Dask scheduler address such as tcp://HOST:8786 (got {value!r})")
    return value
