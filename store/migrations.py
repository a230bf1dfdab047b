"""Ordered, idempotent schema migrations, recorded in a schema-version table.

Each migration is frozen once released: it spells out its own DDL instead of reading the current
models, so a database made by any earlier release upgrades by replaying the steps it lacks.
:func:`migrate` takes a write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL), so any number of processes may start against a fresh database at once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    ForeignKey,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    insert,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import Connection

from store.engine import WRITE_OPTION, is_sqlite
from store.errors import ForeignSchemaError, SchemaVersionError
from store.models import CHECKPOINTS, THREADS, VERSIONS, Base, BigId, SchemaVersion

_MIGRATION_LOCK = 0x6167_6D65_6D01  # pg advisory lock key ("agmem" + 1)


@dataclass(frozen=True)
class Migration:
    """One schema step: ``apply`` runs inside the migration transaction."""

    version: int
    description: str
    apply: Callable[[Connection], None]


def _v1_tables() -> MetaData:
    md = MetaData()
    Table(THREADS, md,
          Column("thread_pk", BigId, primary_key=True, autoincrement=True),
          Column("thread_key", LargeBinary(32), nullable=False, unique=True),
          Column("agent_key", LargeBinary(32), nullable=False, index=True),
          Column("agent_id", Text, nullable=False),
          Column("thread_id", Text, nullable=False),
          Column("head_id", BigInteger),
          Column("created_at", DateTime(timezone=True), nullable=False))
    Table(CHECKPOINTS, md,
          Column("id", BigId, primary_key=True, autoincrement=True),
          Column("checkpoint_id", String(32), nullable=False, unique=True),
          Column("thread_pk", BigInteger, ForeignKey(f"{THREADS}.thread_pk"), nullable=False),
          Column("seq", BigInteger, nullable=False),
          Column("agent_id", Text, nullable=False),
          Column("thread_id", Text, nullable=False),
          Column("parent_checkpoint_id", String(32)),
          Column("created_at", DateTime(timezone=True), nullable=False),
          Column("adapter_fingerprint", Text, nullable=False),
          Column("backbone_id", Text, nullable=False),
          Column("shape", Text, nullable=False),
          Column("dtype", Text, nullable=False),
          Column("tokens_written", BigInteger, nullable=False),
          Column("codec", Text, nullable=False),
          Column("checksum", String(64), nullable=False),
          Column("blob", LargeBinary, nullable=False),
          UniqueConstraint("thread_pk", "seq", name="uq_memory_checkpoints_seq"))
    return md


def _create_v1(conn: Connection) -> None:
    _v1_tables().create_all(conn)


def _add_metadata(conn: Connection) -> None:
    q = conn.dialect.identifier_preparer.quote
    conn.execute(text(f"ALTER TABLE {q(CHECKPOINTS)} ADD COLUMN {q('metadata')} "
                      "TEXT NOT NULL DEFAULT '{}'"))


MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "thread heads and immutable checkpoint rows", _create_v1),
    Migration(2, "free-form JSON metadata on checkpoints", _add_metadata),
)
LATEST_VERSION = MIGRATIONS[-1].version


def schema_version(conn: Connection) -> int:
    """The highest applied migration; 0 for a database the store never touched."""
    if not inspect(conn).has_table(VERSIONS):
        return 0
    v = conn.execute(select(SchemaVersion.version).order_by(SchemaVersion.version.desc())).first()
    return 0 if v is None else int(v[0])


def migrate(engine: Engine, *, target: int = LATEST_VERSION,
            lock_timeout_s: float | None = None) -> int:
    """Apply, in order, every migration the database lacks up to ``target``; idempotent.

    Args:
        engine: from :func:`store.engine.make_engine`.
        target: the version to stop at (tests use it to build an older database).
        lock_timeout_s: the longest to wait for another process's migration or write.

    Returns:
        The schema version the database is at afterwards.

    Raises:
        SchemaVersionError: the database is at a newer version than this code knows.
        ForeignSchemaError: tables of the store's names that the store did not make, or that
            lack the store's columns. Nothing is changed.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"target={target}; expected 0..{LATEST_VERSION}")
    fresh = False
    with engine.connect() as conn:
        _lock_timeout(conn, lock_timeout_s, sqlite_only=True)
        with conn.begin():
            current = _checked_version(conn)
        if current < target:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                _lock_timeout(conn, lock_timeout_s)
                if not is_sqlite(conn):
                    conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
                current = _checked_version(conn)  # again, under the lock
                if current == 0:
                    _refuse_foreign(conn)
                    fresh = is_sqlite(conn)
                SchemaVersion.__table__.create(conn, checkfirst=True)
                for m in MIGRATIONS:
                    if current < m.version <= target:
                        m.apply(conn)
                        conn.execute(insert(SchemaVersion).values(
                            version=m.version, description=m.description,
                            applied_at=datetime.now(UTC)))
                        current = m.version
        if current == LATEST_VERSION:
            with conn.begin():
                _check_columns(conn)
        if fresh:
            _incremental_vacuum_on(conn)
        return current


def _lock_timeout(conn: Connection, seconds: float | None, *, sqlite_only: bool = False) -> None:
    if seconds is None:
        return
    if is_sqlite(conn):
        conn.connection.driver_connection.execute(f"PRAGMA busy_timeout = {int(seconds * 1000)}")
    elif not sqlite_only:
        conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(seconds * 1000)}ms'")


def _refuse_foreign(conn: Connection) -> None:
    """A database the store never migrated must not already hold tables of its names."""
    found = [t for t in (THREADS, CHECKPOINTS) if inspect(conn).has_table(t)]
    if found:
        raise ForeignSchemaError(
            f"the database already holds table(s) {', '.join(found)} that the store did not "
            "create (no schema version is recorded); the store will not alter them: use another "
            "database, or on PostgreSQL make_engine(url, schema=...)")


def _check_columns(conn: Connection) -> None:
    """The store's tables have (at least) the columns of the current models."""
    insp = inspect(conn)
    for table in (THREADS, CHECKPOINTS):
        if not insp.has_table(table):
            raise ForeignSchemaError(f"table {table} is missing although the schema version "
                                     "table says it was created; restore it from a backup")
        have = {c["name"] for c in insp.get_columns(table)}
        missing = sorted(set(Base.metadata.tables[table].columns.keys()) - have)
        if missing:
            raise ForeignSchemaError(f"table {table} lacks the store's column(s) "
                                     f"{', '.join(missing)}: it was altered or is not the store's")


def _incremental_vacuum_on(conn: Connection) -> None:
    """One-time conversion of an SQLite file that existed before the store first used it, so
    that pruning and deleting can give space back (best effort: a busy file is converted later,
    by ``MemoryRepository.compact``)."""
    dbapi = conn.connection.driver_connection
    if dbapi.execute("PRAGMA auto_vacuum").fetchone()[0] == 2:
        return
    try:
        dbapi.execute("PRAGMA auto_vacuum = INCREMENTAL")
        dbapi.execute("VACUUM")
    except sqlite3.Error:  # busy or short of space: compact() converts it later
        pass


def _checked_version(conn: Connection) -> int:
    current = schema_version(conn)
    if current > LATEST_VERSION:
        raise SchemaVersionError(f"database schema is version {current}; this code knows up to "
                                 f"{LATEST_VERSION}: upgrade agentmem")
    return current
