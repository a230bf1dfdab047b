"""Ordered, idempotent schema migrations, recorded in a schema-version table.

Each migration is frozen once released: it spells out its own DDL instead of reading the current
models, so a database made by any earlier release upgrades by replaying the steps it lacks.
:func:`migrate` takes a write lock (``BEGIN IMMEDIATE`` on SQLite, an advisory lock on
PostgreSQL), so any number of processes may start against a fresh database at once.
"""

from __future__ import annotations

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
from store.errors import SchemaVersionError
from store.models import CHECKPOINTS, THREADS, VERSIONS, BigId, SchemaVersion

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


def migrate(engine: Engine, *, target: int = LATEST_VERSION) -> int:
    """Apply, in order, every migration the database lacks up to ``target``; idempotent.

    Args:
        engine: from :func:`store.engine.make_engine`.
        target: the version to stop at (tests use it to build an older database).

    Returns:
        The schema version the database is at afterwards.

    Raises:
        SchemaVersionError: the database is at a newer version than this code knows.
    """
    if not 0 <= target <= LATEST_VERSION:
        raise ValueError(f"target={target}; expected 0..{LATEST_VERSION}")
    with engine.connect() as conn:
        with conn.begin():
            current = _checked_version(conn)
        if current >= target:
            return current
        conn.execution_options(**{WRITE_OPTION: True})
        with conn.begin():
            if not is_sqlite(conn):
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _MIGRATION_LOCK})
            SchemaVersion.__table__.create(conn, checkfirst=True)
            current = _checked_version(conn)  # again, under the lock
            for m in MIGRATIONS:
                if current < m.version <= target:
                    m.apply(conn)
                    conn.execute(insert(SchemaVersion).values(
                        version=m.version, description=m.description,
                        applied_at=datetime.now(UTC)))
                    current = m.version
        return current


def _checked_version(conn: Connection) -> int:
    current = schema_version(conn)
    if current > LATEST_VERSION:
        raise SchemaVersionError(f"database schema is version {current}; this code knows up to "
                                 f"{LATEST_VERSION}: upgrade agentmem")
    return current
