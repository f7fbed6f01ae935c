"""What goes wrong with a storage, in one line: the errors, their messages, a URL's password masked.

Every failure of a storage becomes one :class:`StorageError` line naming the storage and
the cause (a server that is down, a refused login, a file that is not a database, a full
disk), and a password in a URL is never shown: :func:`redact` masks it in everything this
package prints or stores.
"""

from __future__ import annotations

import re
import sys


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
    """The file of a ``sqlite:///`` URL as SQLAlchemy opens it (``%25`` is ``%``); ``None`` for other
    storages and in-memory SQLite."""
    if not url.startswith("sqlite:///"):
        return None
    from urllib.parse import unquote

    path = unquote(url[len("sqlite:///"):].split("?", 1)[0])  # what SQLAlchemy's make_url does
    return path if path and path != ":memory:" else None


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
    lowered = message.lower()
    if "disk is full" in lowered or "no space left" in lowered or "could not extend file" in lowered:
        where = sqlite_path(url) or "the database server"
        return (f"{shown}: the disk is full ({where}); free space, then run the same command again "
                "to resume (what was stored is intact)")
    if "readonly database" in lowered or "read-only" in lowered:
        return (f"{shown}: the database is read-only ({scrub(message, url)}); `actreg export`, "
                "`report --no-attach` and `dashboard` can read it, a run needs to write it")
    if "file is not a database" in message or "malformed" in message:
        message += " (a corrupt or foreign file; move it away or give another --storage)"
    return f"{shown}: cannot use the storage: {scrub(message, url)}"


def storage_failure(exc: BaseException) -> BaseException | None:
    """What to describe (see :func:`describe_error`) when ``exc`` came from a storage after it was opened:
    SQLAlchemy's error, or the one that Optuna's ``StorageInternalError`` wraps; ``None`` for any other.
    Looked up among the modules loaded (an error of theirs means they are)."""
    optuna_errors = sys.modules.get("optuna.exceptions")
    if optuna_errors is not None and isinstance(exc, optuna_errors.StorageInternalError):
        return exc.__cause__ or exc
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_errors is not None and isinstance(exc, sqlalchemy_errors.SQLAlchemyError):
        return exc
    return None


def _first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "unknown error"
