"""Giving disk space back and erasing deleted bytes: SQLite's WAL and free pages, PostgreSQL's
``VACUUM FULL``, and the reserve file that lets a deletion run on a full disk
(docs/design.md#saving-under-contention-and-faults)."""

from __future__ import annotations

import os
import sqlite3
from typing import Any

from sqlalchemy import Engine, text
from sqlalchemy.engine import Connection

from store.engine import is_sqlite
from store.errors import ErasurePendingError
from store.faults import translated
from store.models import CHECKPOINTS, THREADS

DELETE_CHUNK = 64  # rows per transaction when deleting on a full disk (each needs WAL space)
RESERVE_BYTES = 1 << 20
"""Size of the file kept beside an SQLite store and removed on a full disk, so that a deletion
has room for its first write-ahead-log pages."""


def shrink(engine: Engine, lock_timeout_s: float, *, erase: bool) -> None:
    """SQLite: move free pages out of the file, fold the WAL in and truncate it.

    ``erase``: the WAL still holds images of deleted rows; a reader that keeps it alive past
    ``lock_timeout_s`` raises :class:`ErasurePendingError` instead of passing in silence.
    """
    if not is_sqlite(engine):
        return
    with translated("giving space back"), engine.connect() as conn:
        dbapi = sqlite_dbapi(conn, lock_timeout_s)
        try:  # pysqlite steps a PRAGMA once (one page); executescript runs it to the end
            dbapi.executescript("PRAGMA incremental_vacuum;")
        except sqlite3.OperationalError:  # a busy writer: the next shrink frees the pages
            pass
        busy = dbapi.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
    if busy and erase:
        raise ErasurePendingError(
            "the rows are deleted and no call returns them, but their bytes remain in the "
            f"write-ahead log while another connection reads (waited {lock_timeout_s:g} s); "
            "call repository.compact() once it is done")


def compact_sqlite(engine: Engine, lock_timeout_s: float) -> int:
    """Convert a file made without ``auto_vacuum`` once, then shrink; returns bytes freed."""
    before = sqlite_bytes(engine)
    with translated("compacting the store"), engine.connect() as conn:
        dbapi = sqlite_dbapi(conn, lock_timeout_s)
        if dbapi.execute("PRAGMA auto_vacuum").fetchone()[0] != 2:  # 2: INCREMENTAL
            dbapi.execute("PRAGMA auto_vacuum = INCREMENTAL")
            dbapi.execute("VACUUM")
    shrink(engine, lock_timeout_s, erase=True)
    return max(0, before - sqlite_bytes(engine))


def vacuum_full(engine: Engine, lock_timeout_s: float) -> int:
    """PostgreSQL: rewrite the store's tables without their dead rows; returns bytes freed."""
    tables = [CHECKPOINTS, THREADS]
    with translated("compacting the store"), engine.connect() as conn:
        conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        conn.exec_driver_sql(f"SET lock_timeout = '{int(lock_timeout_s * 1000)}ms'")
        size = text("SELECT sum(pg_total_relation_size(to_regclass(t))) "
                    "FROM unnest(CAST(:ts AS text[])) AS t")
        before = int(conn.execute(size, {"ts": tables}).scalar() or 0)
        for name in tables:  # names of the store's own tables, quoted by the dialect
            conn.exec_driver_sql(
                f"VACUUM (FULL, ANALYZE) {conn.dialect.identifier_preparer.quote(name)}")
        return max(0, before - int(conn.execute(size, {"ts": tables}).scalar() or 0))


def sqlite_dbapi(conn: Connection, lock_timeout_s: float) -> Any:
    """The pysqlite connection under ``conn``, waiting at most ``lock_timeout_s`` for locks."""
    dbapi = conn.connection.driver_connection
    dbapi.execute(f"PRAGMA busy_timeout = {int(lock_timeout_s * 1000)}")
    return dbapi


def sqlite_path(engine: Engine) -> str:
    """The database file of an SQLite engine (also for ``file:`` URIs)."""
    path = str(engine.url.database)
    return path.removeprefix("file:").split("?")[0] if path.startswith("file:") else path


def sqlite_bytes(engine: Engine) -> int:
    path = sqlite_path(engine)
    return sum(os.path.getsize(p) for p in (path, path + "-wal") if os.path.exists(p))


def reserve_path(db_path: str) -> str:
    return db_path + "-agentmem-reserve"


def make_reserve(db_path: str) -> None:
    try:
        with open(reserve_path(db_path), "xb") as f:
            f.write(b"\0" * RESERVE_BYTES)
            f.flush()
            os.fsync(f.fileno())
    except FileExistsError:
        pass
    except OSError:  # no room yet (or a read-only folder): made again after the next deletion
        try:
            os.unlink(reserve_path(db_path))
        except OSError:
            pass


def release_reserve(db_path: str) -> None:
    try:
        os.unlink(reserve_path(db_path))
    except FileNotFoundError:
        pass
