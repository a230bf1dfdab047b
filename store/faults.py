"""Driver, file-system and connection failures as the store's typed errors.

Every call into the database runs under :func:`translated`: SQLite result codes, PostgreSQL
SQLSTATEs and ``OSError`` numbers become one of the :mod:`store.errors` classes, the original
exception chained as ``__cause__``, with a message that says what to do. Errors that are already
the store's pass through unchanged.
"""

from __future__ import annotations

import errno
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.exc import DBAPIError, SQLAlchemyError

from store.errors import (
    ConflictError,
    CorruptStoreError,
    ForeignSchemaError,
    NotADatabaseError,
    ReadOnlyStoreError,
    StoreError,
    StoreFullError,
    StoreLockedError,
    StoreUnavailableError,
)

_HINT = {
    StoreUnavailableError: "the database cannot be reached; check that it is running and "
                           "reachable, then retry",
    StoreLockedError: "another connection holds the lock; retry, or raise lock_timeout_s",
    ReadOnlyStoreError: "the database cannot be written; check the permissions of the file and "
                        "of its directory, or the server's read-only setting",
    StoreFullError: "the disk or database is full; free space (prune, delete_agent, compact) or "
                    "move the store",
    NotADatabaseError: "the path is not a database file; point the store at a new or existing "
                       "SQLite file",
    CorruptStoreError: "the database file is damaged; restore it from a backup",
    ForeignSchemaError: "the store's tables are missing or belong to another application; use "
                        "another database (or PostgreSQL schema=) for the store",
    ConflictError: "another writer committed first; re-read the head and retry",
    StoreError: "the database refused the operation (see the chained error)",
}

# SQLite primary result codes (sqlite3.Error.sqlite_errorname minus any extended suffix).
_SQLITE = {
    "SQLITE_BUSY": StoreLockedError, "SQLITE_LOCKED": StoreLockedError,
    "SQLITE_READONLY": ReadOnlyStoreError, "SQLITE_PERM": ReadOnlyStoreError,
    "SQLITE_AUTH": ReadOnlyStoreError,
    "SQLITE_FULL": StoreFullError,
    "SQLITE_NOTADB": NotADatabaseError,
    "SQLITE_CORRUPT": CorruptStoreError,
    "SQLITE_CANTOPEN": StoreUnavailableError, "SQLITE_IOERR": StoreUnavailableError,
    "SQLITE_PROTOCOL": StoreUnavailableError, "SQLITE_NOMEM": StoreUnavailableError,
    "SQLITE_CONSTRAINT": ConflictError,
}

# PostgreSQL SQLSTATEs, most specific first (a two-character entry is the whole class).
_PG = {
    "55P03": StoreLockedError,  # lock_not_available (lock_timeout)
    "40P01": ConflictError, "40001": ConflictError,  # deadlock, serialization failure
    "23505": ConflictError,  # unique_violation
    "53100": StoreFullError,  # disk_full
    "25006": ReadOnlyStoreError, "42501": ReadOnlyStoreError,  # read-only transaction, privilege
    "XX001": CorruptStoreError, "XX002": CorruptStoreError,  # data_corrupted, index_corrupted
    "42P01": ForeignSchemaError, "42703": ForeignSchemaError, "42804": ForeignSchemaError,
    "08": StoreUnavailableError,  # connection exception
    "57": StoreUnavailableError,  # operator intervention: shutdown, crash, cannot connect now
    "53": StoreUnavailableError,  # insufficient resources (other than disk)
    "58": StoreUnavailableError,  # system error (I/O)
}

_OS = {
    errno.ENOSPC: StoreFullError, errno.EDQUOT: StoreFullError, errno.EFBIG: StoreFullError,
    errno.EROFS: ReadOnlyStoreError, errno.EACCES: ReadOnlyStoreError,
    errno.EPERM: ReadOnlyStoreError,
    errno.EISDIR: NotADatabaseError, errno.ENOTDIR: NotADatabaseError,
    errno.EEXIST: NotADatabaseError,
}


def store_error(exc: BaseException, what: str) -> StoreError:
    """The typed error for a driver, SQLAlchemy or OS failure during ``what``."""
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    cls = _classify(exc, orig)
    detail = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    return cls(f"{what}: {_HINT[cls]} ({type(orig).__name__}: {detail})")


def _classify(exc: BaseException, orig: BaseException) -> type[StoreError]:
    if isinstance(orig, sqlite3.Error):
        name = getattr(orig, "sqlite_errorname", "") or ""
        primary = "_".join(name.split("_")[:2])
        if primary in _SQLITE:
            return _SQLITE[primary]
        text = str(orig).lower()
        if "no such table" in text or "no such column" in text or "has no column" in text:
            return ForeignSchemaError
        if "locked" in text:
            return StoreLockedError
        return StoreUnavailableError if isinstance(orig, sqlite3.OperationalError) else StoreError
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str):
        for key in (state, state[:2]):
            if key in _PG:
                return _PG[key]
    if isinstance(orig, OSError) and orig.errno in _OS:
        return _OS[orig.errno]
    if isinstance(exc, DBAPIError) and (exc.connection_invalidated or state is None):
        return StoreUnavailableError  # the connection broke before the server said why
    if isinstance(orig, OSError):
        return StoreUnavailableError
    return StoreError if isinstance(exc, DBAPIError) else StoreUnavailableError


@contextmanager
def translated(what: str) -> Iterator[None]:
    """Run the body; re-raise driver, SQLAlchemy and OS failures as typed store errors."""
    try:
        yield
    except StoreError:
        raise
    except (DBAPIError, sqlite3.Error, OSError) as e:
        raise store_error(e, what) from e
    except SQLAlchemyError as e:  # e.g. a pool timeout: no connection could be had
        raise StoreUnavailableError(f"{what}: {_HINT[StoreUnavailableError]} "
                                    f"({type(e).__name__}: {e})") from e
