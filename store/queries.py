"""The repository's SQL, as SQLAlchemy Core statements over the models' tables, plus row mapping.

Statements are built once, with named bind parameters, so every id reaches the database as a
parameter (and no call pays for building SQL). A thread or agent is matched by its sha256 key
(indexed) and by the ids themselves.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, Table, and_, bindparam, func, insert, select, update

from store import codec
from store.models import CheckpointRow, ThreadRow
from store.records import CheckpointInfo

C: Table = CheckpointRow.__table__  # type: ignore[assignment]
T: Table = ThreadRow.__table__  # type: ignore[assignment]
META = C.c["metadata"]

INFO = [C.c.agent_id, C.c.thread_id, C.c.checkpoint_id, C.c.parent_checkpoint_id, C.c.seq,
        C.c.created_at, C.c.adapter_fingerprint, C.c.backbone_id, C.c.shape, C.c.dtype,
        C.c.tokens_written, C.c.codec, C.c.checksum, func.length(C.c.blob).label("size_bytes"),
        META]
FULL = [*INFO, C.c.blob]
THREAD_COLS = [T.c.agent_id, T.c.thread_id, C.c.checkpoint_id, C.c.seq, C.c.created_at]


def thread_params(agent_id: str, thread_id: str) -> dict[str, Any]:
    """Bound parameters of the ``THREAD`` condition."""
    return {"tkey": codec.thread_key(agent_id, thread_id), "agent": agent_id, "thread": thread_id}


def agent_params(agent_id: str) -> dict[str, Any]:
    """Bound parameters of the ``AGENT`` condition."""
    return {"akey": codec.agent_key(agent_id), "agent": agent_id}


# The thread row of (agent, thread) / the thread rows of an agent.
THREAD = and_(T.c.thread_key == bindparam("tkey"), T.c.agent_id == bindparam("agent"),
              T.c.thread_id == bindparam("thread"))
AGENT = and_(T.c.agent_key == bindparam("akey"), T.c.agent_id == bindparam("agent"))
# A checkpoint belongs to the thread row that points at it and carries the same ids.
_OWNED = and_(C.c.thread_pk == T.c.thread_pk, C.c.agent_id == T.c.agent_id,
              C.c.thread_id == T.c.thread_id)
_HEADS = T.join(C, and_(C.c.id == T.c.head_id, _OWNED))

THREAD_PK = select(T.c.thread_pk).where(THREAD)
THREAD_HEAD_ID = select(T.c.head_id).where(THREAD)
AGENT_PKS = select(T.c.thread_pk).where(AGENT)
# The head's ids and compatibility columns (for writers).
HEAD_INFO = (select(T.c.thread_pk, C.c.id, C.c.checkpoint_id, C.c.seq, C.c.adapter_fingerprint,
                    C.c.backbone_id, C.c.shape).select_from(_HEADS).where(THREAD))
HEAD_FULL = select(*FULL).select_from(_HEADS).where(THREAD)
# One checkpoint, only if it belongs to (agent, thread).
BY_ID_FULL = select(*FULL).select_from(C.join(T, _OWNED)).where(
    C.c.checkpoint_id == bindparam("cid"), THREAD)
BY_ID_SEQ = select(C.c.seq).select_from(C.join(T, _OWNED)).where(
    C.c.checkpoint_id == bindparam("cid"), THREAD)
# A row by id alone: only to recognise a write that already committed (ids are compared after).
BY_CHECKPOINT_ID = select(*FULL).where(C.c.checkpoint_id == bindparam("cid"))
NEWEST_OF_THREAD = (select(C.c.id, C.c.checkpoint_id).where(C.c.thread_pk == bindparam("pk"))
                    .order_by(C.c.seq.desc()).limit(1))
# Every head of an agent, most recently written first.
AGENT_HEADS_FULL = select(*FULL).select_from(_HEADS).where(AGENT).order_by(C.c.id.desc())
AGENT_THREADS = select(*THREAD_COLS).select_from(_HEADS).where(AGENT).order_by(C.c.id.desc())


def history(limit: int | None, before_seq: int | None) -> Select[Any]:
    """The thread's rows without blobs, newest first (params: ``thread_params``)."""
    stmt = (select(*INFO).select_from(C.join(T, _OWNED)).where(THREAD)
            .order_by(C.c.seq.desc()))
    if before_seq is not None:
        stmt = stmt.where(C.c.seq < before_seq)
    return stmt if limit is None else stmt.limit(limit)


INSERT_THREAD = insert(T).returning(T.c.thread_pk)
INSERT_CHECKPOINT = insert(C).returning(C.c.id)
# Compare-and-set of the head pointer: moves only if it still points where the writer read it.
MOVE_HEAD = (update(T).where(T.c.thread_pk == bindparam("pk"), T.c.head_id == bindparam("old"))
             .values(head_id=bindparam("new")))
SET_HEAD = update(T).where(T.c.thread_pk == bindparam("pk")).values(head_id=bindparam("new"))
SET_FIRST_HEAD = (update(T).where(T.c.thread_pk == bindparam("pk"), T.c.head_id.is_(None))
                  .values(head_id=bindparam("new")))


def state_columns(enc: codec.EncodedState) -> dict[str, Any]:
    """Insert values contributed by an encoded state."""
    return {"adapter_fingerprint": enc.adapter_fingerprint, "backbone_id": enc.backbone_id,
            "shape": enc.shape, "dtype": enc.dtype, "tokens_written": enc.tokens_written,
            "codec": enc.codec, "checksum": enc.checksum, "blob": enc.blob}


def utc(dt: datetime) -> datetime:
    """SQLite hands back naive datetimes; the store writes UTC."""
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def info(row: Any) -> CheckpointInfo:
    """A :class:`CheckpointInfo` from a row with the ``INFO`` columns.

    Raises:
        CorruptCheckpointError: a column holds a value of another type than the store wrote.
    """
    try:
        shape = tuple(int(n) for n in json.loads(row.shape))
        return CheckpointInfo(
            agent_id=row.agent_id, thread_id=row.thread_id, checkpoint_id=row.checkpoint_id,
            parent_checkpoint_id=row.parent_checkpoint_id, seq=int(row.seq),
            created_at=utc(row.created_at), adapter_fingerprint=row.adapter_fingerprint,
            backbone_id=row.backbone_id, shape=shape, dtype=row.dtype,
            tokens_written=int(row.tokens_written), codec=row.codec, checksum=row.checksum,
            size_bytes=int(row.size_bytes), metadata=codec.decode_metadata(row.metadata))
    except (ValueError, TypeError, AttributeError) as e:
        raise codec.CorruptCheckpointError(f"checkpoint {row.checkpoint_id}: a column holds a "
                                           f"value of the wrong type ({e})") from e


def encoded(row: Any) -> codec.EncodedState:
    """The state columns of a row with the ``FULL`` columns, as stored."""
    return codec.EncodedState(blob=row.blob, checksum=row.checksum,
                              adapter_fingerprint=row.adapter_fingerprint,
                              backbone_id=row.backbone_id, shape=row.shape, dtype=row.dtype,
                              tokens_written=int(row.tokens_written), codec=row.codec)


def new_info(agent_id: str, thread_id: str, cid: str, parent: str | None, seq: int,
             now: datetime, enc: codec.EncodedState, meta: str) -> CheckpointInfo:
    """The :class:`CheckpointInfo` of a row just written."""
    return CheckpointInfo(
        agent_id=agent_id, thread_id=thread_id, checkpoint_id=cid, parent_checkpoint_id=parent,
        seq=seq, created_at=now, adapter_fingerprint=enc.adapter_fingerprint,
        backbone_id=enc.backbone_id, shape=tuple(json.loads(enc.shape)), dtype=enc.dtype,
        tokens_written=enc.tokens_written, codec=enc.codec, checksum=enc.checksum,
        size_bytes=len(enc.blob), metadata=codec.decode_metadata(meta))

