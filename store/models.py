"""SQLAlchemy 2 typed models: the current schema of the memory store.

Two tables. ``memory_threads`` holds one mutable pointer per (agent, thread): its head
checkpoint, advanced only by a compare-and-set on the expected parent. ``memory_checkpoints``
holds the immutable rows, one per saved state. Ids are user strings of any length, so rows are
found through fixed-size sha256 keys of the ids (short index entries on every database) and the
ids themselves are compared too, so a key collision could never cross agents or threads.

The schema is created and upgraded only by :mod:`store.migrations`; these models are what the
repository reads and writes, and a test checks that migrating reaches exactly this schema.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    DateTime,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

THREADS = "memory_threads"
CHECKPOINTS = "memory_checkpoints"
VERSIONS = "memory_schema_versions"

# BigInteger ids on PostgreSQL; SQLite only auto-increments an INTEGER PRIMARY KEY (its rowid).
BigId = BigInteger().with_variant(Integer(), "sqlite")


class Base(DeclarativeBase):
    """Declarative base of the store's tables."""


class SchemaVersion(Base):
    """One row per applied migration."""

    __tablename__ = VERSIONS

    version: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    description: Mapped[str] = mapped_column(Text)
    applied_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class ThreadRow(Base):
    """The head pointer of one (agent_id, thread_id)."""

    __tablename__ = THREADS

    thread_pk: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    thread_key: Mapped[bytes] = mapped_column(LargeBinary(32), unique=True)  # sha256(agent, thread)
    agent_key: Mapped[bytes] = mapped_column(LargeBinary(32), index=True)  # sha256(agent)
    agent_id: Mapped[str] = mapped_column(Text)
    thread_id: Mapped[str] = mapped_column(Text)
    head_id: Mapped[int | None] = mapped_column(BigInteger)  # memory_checkpoints.id of the head
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CheckpointRow(Base):
    """One immutable memory checkpoint (docs/design.md#state-checkpoints-and-scopes)."""

    __tablename__ = CHECKPOINTS
    __table_args__ = (UniqueConstraint("thread_pk", "seq", name="uq_memory_checkpoints_seq"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    checkpoint_id: Mapped[str] = mapped_column(String(32), unique=True)
    thread_pk: Mapped[int] = mapped_column(BigInteger, ForeignKey(f"{THREADS}.thread_pk"))
    seq: Mapped[int] = mapped_column(BigInteger)  # 0, 1, 2, … along the thread's chain
    agent_id: Mapped[str] = mapped_column(Text)
    thread_id: Mapped[str] = mapped_column(Text)
    parent_checkpoint_id: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    adapter_fingerprint: Mapped[str] = mapped_column(Text)
    backbone_id: Mapped[str] = mapped_column(Text)
    shape: Mapped[str] = mapped_column(Text)  # JSON list, one row of the state: [L, N, r, r]
    dtype: Mapped[str] = mapped_column(Text)
    tokens_written: Mapped[int] = mapped_column(BigInteger)
    codec: Mapped[str] = mapped_column(Text)  # how to decode blob; see store.codec
    checksum: Mapped[str] = mapped_column(String(64))  # sha256 hex of blob
    blob: Mapped[bytes] = mapped_column(LargeBinary)
    meta: Mapped[str] = mapped_column("metadata", Text, server_default="{}")  # JSON object

