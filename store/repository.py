"""`MemoryRepository`: the store's only API — put, read, fork, prune and delete memory checkpoints.

A thread's checkpoints form one chain: each new row names the head it replaces as its parent, and
the head moves by compare-and-set, so of two writers that start from the same head exactly one
succeeds; the other gets :class:`ConflictError` (``update`` re-reads and retries). Every read is
keyed by (agent_id, thread_id) and verifies the row's checksum. Ids only ever travel as bound
parameters.
"""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Engine, delete
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from agentmem.errors import StateMismatchError
from agentmem.model.state import MemoryState
from store import codec
from store import queries as q
from store.engine import WRITE_OPTION, is_sqlite, make_engine
from store.errors import CheckpointNotFound, ConflictError
from store.migrations import migrate
from store.records import CheckpointInfo, MemoryCheckpoint, StateSpec, ThreadInfo

C, T = q.C, q.T
StateFn = Callable[[MemoryState | None], MemoryState]


class MemoryRepository:
    """Memory checkpoints of many agents and threads in one database.

    Args:
        engine: an engine from :func:`store.make_engine`, a URL, or None for the default SQLite
            file. The schema is created or upgraded on first use (or by :meth:`setup`).
        spec: what the caller's model expects; when set, a state of another adapter, backbone or
            shape is refused on write and on read with ``StateMismatchError``.
    """

    def __init__(self, engine: Engine | str | None = None, *, spec: StateSpec | None = None):
        self._owns_engine = not isinstance(engine, Engine)
        self._engine = engine if isinstance(engine, Engine) else make_engine(engine)
        self._spec = spec
        self._ready = False
        self._lock = threading.Lock()

    @property
    def engine(self) -> Engine:
        return self._engine

    @property
    def spec(self) -> StateSpec | None:
        return self._spec

    def with_spec(self, spec: StateSpec | None) -> MemoryRepository:
        """The same database seen by a caller with another :class:`StateSpec`."""
        other = MemoryRepository(self._engine, spec=spec)
        other._ready = self._ready
        return other

    def setup(self) -> int:
        """Create or upgrade the schema; idempotent. Returns the schema version."""
        with self._lock:
            version = migrate(self._engine)
            self._ready = True
            return version

    def close(self) -> None:
        """Release pooled connections (the engine too, when this repository made it)."""
        if self._owns_engine:
            self._engine.dispose()

    # -- writes ------------------------------------------------------------------------------

    def put(self, agent_id: str, thread_id: str, state: MemoryState, *, parent: str | None,
            metadata: dict[str, Any] | None = None) -> CheckpointInfo:
        """Append ``state`` to the thread as its new head.

        Args:
            agent_id: any non-empty string without NUL.
            thread_id: any non-empty string without NUL.
            state: one conversation's state (batch size 1), finite.
            parent: the checkpoint id the caller read as the head, or None for a new thread.
            metadata: a JSON object stored with the row.

        Raises:
            ConflictError: ``parent`` is not the thread's head (or the thread exists and ``parent``
                is None). Nothing was written.
            NonFiniteStateError, StateMismatchError, InvalidIdError, InvalidMetadataError, ValueError:
                refused before anything was written.
        """
        agent_id, thread_id = self._ids(agent_id, thread_id)
        enc = self._encode(state)
        meta = codec.encode_metadata(metadata)
        if parent is not None and not codec.is_checkpoint_id(parent):
            raise ConflictError(f"parent {codec.show(parent)} is not a checkpoint id of this store")
        return self._append(agent_id, thread_id, enc, meta, expected=parent, lineage=parent)

    def update(self, agent_id: str, thread_id: str, fn: StateFn, *, retries: int = 8,
               metadata: dict[str, Any] | None = None, backoff_s: float = 0.002) -> CheckpointInfo:
        """Read the head, compute ``fn(head state or None)``, put it; on conflict re-read and retry.

        Args:
            fn: the new state from the current one (None for an empty thread). It may run again,
                on a newer head, when another writer got there first.
            retries: conflicts tolerated before giving up.
            backoff_s: base of the jittered exponential wait between attempts.

        Raises:
            ConflictError: still conflicting after ``retries`` retries.
        """
        for attempt in range(retries + 1):
            head = self.latest(agent_id, thread_id)
            new = fn(None if head is None else head.state)
            try:
                return self.put(agent_id, thread_id, new, metadata=metadata,
                                parent=None if head is None else head.checkpoint_id)
            except ConflictError as e:
                if attempt == retries:
                    raise ConflictError(f"update gave up after {retries + 1} attempts: {e}") from e
                time.sleep(backoff_delay(attempt, backoff_s))
        raise AssertionError("unreachable")

    def fork(self, agent_id: str, thread_id: str, checkpoint_id: str, new_thread_id: str, *,
             metadata: dict[str, Any] | None = None) -> CheckpointInfo:
        """Start thread ``new_thread_id`` from a checkpoint of ``thread_id`` (same agent).

        The new thread's first row copies the state and names the source as its parent.

        Raises:
            CheckpointNotFound: no such checkpoint in the source thread.
            ConflictError: ``new_thread_id`` already has checkpoints.
        """
        src = self.get(agent_id, thread_id, checkpoint_id)
        agent_id, new_thread_id = self._ids(agent_id, new_thread_id)
        meta = codec.encode_metadata(src.metadata if metadata is None else metadata)
        return self._append(agent_id, new_thread_id, self._encode(src.state), meta,
                            expected=None, lineage=src.checkpoint_id)

    def prune(self, agent_id: str, thread_id: str, *, keep_last: int) -> int:
        """Delete all but the newest ``keep_last`` (≥ 1) checkpoints of a thread; returns how many."""
        if isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 1:
            raise ValueError(f"keep_last={keep_last!r}; expected an integer >= 1")
        agent_id, thread_id = self._ids(agent_id, thread_id)
        with self._write() as conn:
            head = conn.execute(q.HEAD_INFO, q.thread_params(agent_id, thread_id)).first()
            if head is None:
                return 0
            cut = head.seq - keep_last
            n = conn.execute(delete(C).where(C.c.thread_pk == head.thread_pk,
                                             C.c.seq <= cut)).rowcount
        self._release_free_pages()
        return n

    def delete_thread(self, agent_id: str, thread_id: str) -> int:
        """Delete a thread and all its checkpoints; returns how many checkpoints went."""
        agent_id, thread_id = self._ids(agent_id, thread_id)
        with self._write() as conn:
            pks = conn.execute(q.THREAD_PK, q.thread_params(agent_id, thread_id)).scalars()
            n = self._delete_threads(conn, list(pks))
        self._erase_freed_pages()
        return n

    def delete_agent(self, agent_id: str) -> int:
        """Delete every thread and checkpoint of an agent; returns how many checkpoints went.

        On SQLite the freed pages are zeroed and the WAL truncated, so the states leave the file
        too; on PostgreSQL the rows are unreadable at once and their space is reclaimed by VACUUM.
        """
        agent_id = codec.check_id("agent_id", agent_id)
        with self._write() as conn:
            pks = conn.execute(q.AGENT_PKS, q.agent_params(agent_id)).scalars()
            n = self._delete_threads(conn, list(pks))
        self._erase_freed_pages()
        return n

    # -- reads -------------------------------------------------------------------------------

    def latest(self, agent_id: str, thread_id: str) -> MemoryCheckpoint | None:
        """The thread's head, verified; None when the thread has no checkpoints."""
        agent_id, thread_id = self._ids(agent_id, thread_id)
        with self._read() as conn:
            row = conn.execute(q.HEAD_FULL, q.thread_params(agent_id, thread_id)).first()
        return None if row is None else self._verified(row)

    def get(self, agent_id: str, thread_id: str, checkpoint_id: str) -> MemoryCheckpoint:
        """One checkpoint of this agent's thread, verified.

        Raises:
            CheckpointNotFound: no checkpoint with that id under (agent_id, thread_id), even if
                another agent or thread has one.
        """
        agent_id, thread_id = self._ids(agent_id, thread_id)
        if not codec.is_checkpoint_id(checkpoint_id):
            raise CheckpointNotFound(f"no checkpoint {codec.show(checkpoint_id)} in this thread")
        with self._read() as conn:
            params = {**q.thread_params(agent_id, thread_id), "cid": checkpoint_id}
            row = conn.execute(q.BY_ID_FULL, params).first()
        if row is None:
            raise CheckpointNotFound(f"no checkpoint {checkpoint_id} in this thread")
        return self._verified(row)

    def history(self, agent_id: str, thread_id: str, *, limit: int | None = None,
                before: str | None = None) -> list[CheckpointInfo]:
        """The thread's checkpoints, newest first, without their states.

        Args:
            limit: at most this many.
            before: only checkpoints older than this one (for paging).

        Raises:
            CheckpointNotFound: ``before`` is not a checkpoint of this thread.
        """
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)
                                  or limit < 0):
            raise ValueError(f"limit={limit!r}; expected None or an integer >= 0")
        agent_id, thread_id = self._ids(agent_id, thread_id)
        if before is not None and not codec.is_checkpoint_id(before):
            raise CheckpointNotFound(f"no checkpoint {codec.show(before)} in this thread")
        params = q.thread_params(agent_id, thread_id)
        with self._read() as conn:
            seq = None
            if before is not None:
                seq = conn.execute(q.BY_ID_SEQ, {**params, "cid": before}).scalar()
                if seq is None:
                    raise CheckpointNotFound(f"no checkpoint {before} in this thread")
            return [q.info(r) for r in conn.execute(q.history(limit, seq), params)]

    def latest_for_agent(self, agent_id: str) -> MemoryCheckpoint | None:
        """The most recently written head among all the agent's threads (agent scope)."""
        agent_id = codec.check_id("agent_id", agent_id)
        with self._read() as conn:
            row = conn.execute(q.AGENT_HEADS_FULL, q.agent_params(agent_id)).first()
        return None if row is None else self._verified(row)

    def list_threads(self, agent_id: str) -> list[ThreadInfo]:
        """The agent's threads, most recently written first."""
        agent_id = codec.check_id("agent_id", agent_id)
        with self._read() as conn:
            rows = conn.execute(q.AGENT_THREADS, q.agent_params(agent_id)).all()
        return [ThreadInfo(r.agent_id, r.thread_id, r.checkpoint_id, r.seq,
                           q.utc(r.created_at)) for r in rows]

    # -- internals ---------------------------------------------------------------------------

    def _ids(self, agent_id: str, thread_id: str) -> tuple[str, str]:
        return codec.check_id("agent_id", agent_id), codec.check_id("thread_id", thread_id)

    def _encode(self, state: MemoryState) -> codec.EncodedState:
        if self._spec is not None and isinstance(state, MemoryState):
            self._spec.check(state)
        return codec.encode_state(state)

    def _verified(self, row: Any) -> MemoryCheckpoint:
        info = q.info(row)
        state = codec.decode_state(q.encoded(row), f"checkpoint {info.checkpoint_id}")
        if self._spec is not None:
            self._spec.check(state)
        return MemoryCheckpoint(**vars(info), state=state)

    def _append(self, agent_id: str, thread_id: str, enc: codec.EncodedState, meta: str, *,
                expected: str | None, lineage: str | None) -> CheckpointInfo:
        cid, now = uuid.uuid4().hex, datetime.now(UTC)
        try:
            with self._write() as conn:
                if expected is None:
                    thread_pk, head_id, seq = self._new_thread(conn, agent_id, thread_id, now), None, 0
                else:
                    thread_pk, head_id, seq = self._check_head(conn, agent_id, thread_id, expected,
                                                               enc)
                new_id = conn.execute(q.INSERT_CHECKPOINT, {
                    "checkpoint_id": cid, "thread_pk": thread_pk, "seq": seq,
                    "agent_id": agent_id, "thread_id": thread_id, "parent_checkpoint_id": lineage,
                    "created_at": now, "metadata": meta, **q.state_columns(enc)}).scalar_one()
                move = q.SET_FIRST_HEAD if head_id is None else q.MOVE_HEAD
                moved = conn.execute(move, {"pk": thread_pk, "old": head_id, "new": new_id})
                if moved.rowcount != 1:
                    raise ConflictError(f"the head of thread {codec.show(thread_id)} moved; re-read it")
        except IntegrityError as e:
            raise ConflictError(f"thread {codec.show(thread_id)} was advanced concurrently: "
                                f"{type(e.orig).__name__}") from e
        return q.new_info(agent_id, thread_id, cid, lineage, seq, now, enc, meta)

    def _new_thread(self, conn: Connection, agent_id: str, thread_id: str, now: datetime) -> int:
        if conn.execute(q.THREAD_PK, q.thread_params(agent_id, thread_id)).first():
            raise ConflictError(f"thread {codec.show(thread_id)} already has checkpoints; pass its head as "
                                "parent")
        return conn.execute(q.INSERT_THREAD, {
            "thread_key": codec.thread_key(agent_id, thread_id),
            "agent_key": codec.agent_key(agent_id), "agent_id": agent_id, "thread_id": thread_id,
            "created_at": now}).scalar_one()

    def _check_head(self, conn: Connection, agent_id: str, thread_id: str, expected: str,
                    enc: codec.EncodedState) -> tuple[int, int, int]:
        head = conn.execute(q.HEAD_INFO, q.thread_params(agent_id, thread_id)).first()
        if head is None or head.checkpoint_id != expected:
            now = "no checkpoints" if head is None else f"head {head.checkpoint_id}"
            raise ConflictError(f"thread {codec.show(thread_id)} has {now}, not {expected}")
        if (head.adapter_fingerprint, head.backbone_id, head.shape) != (
                enc.adapter_fingerprint, enc.backbone_id, enc.shape):
            raise StateMismatchError(f"thread {codec.show(thread_id)} holds states of adapter "
                                     f"{head.adapter_fingerprint[:16]}, backbone {head.backbone_id}"
                                     f", shape {head.shape}; this state does not match")
        return head.thread_pk, head.id, head.seq + 1

    def _delete_threads(self, conn: Connection, pks: list[int]) -> int:
        if not pks:
            return 0
        n = conn.execute(delete(C).where(C.c.thread_pk.in_(pks))).rowcount
        conn.execute(delete(T).where(T.c.thread_pk.in_(pks)))
        return n

    def _release_free_pages(self) -> None:
        # SQLite files are made with auto_vacuum=INCREMENTAL: hand the freed pages back to the
        # file system. pysqlite steps a PRAGMA once (one page); executescript runs it to the end.
        if is_sqlite(self._engine):
            with self._engine.connect() as conn:
                conn.connection.dbapi_connection.executescript("PRAGMA incremental_vacuum;")

    def _erase_freed_pages(self) -> None:
        # secure_delete zeroed the freed pages; fold the WAL (which still holds the old page
        # images) into the file and truncate it. Best effort: a concurrent reader may delay it.
        self._release_free_pages()
        if is_sqlite(self._engine):
            with self._engine.connect() as conn:
                conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")

    @contextmanager
    def _read(self) -> Iterator[Connection]:
        self._ensure_ready()
        with self._engine.connect() as conn, conn.begin():
            yield conn

    @contextmanager
    def _write(self) -> Iterator[Connection]:
        self._ensure_ready()
        with self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            with conn.begin():
                yield conn

    def _ensure_ready(self) -> None:
        if not self._ready:
            self.setup()


def backoff_delay(attempt: int, base_s: float, cap_s: float = 0.1) -> float:
    """Full-jitter exponential backoff: uniform in [0, min(cap, base · 2^attempt)]."""
    return random.uniform(0.0, min(cap_s, base_s * 2**attempt))
