"""`MemoryRepository`: the store's only API — put, read, fork, prune and delete memory checkpoints.

A thread's checkpoints form one chain: each new row names the head it replaces as its parent, and
the head moves by compare-and-set, so of two writers that start from the same head exactly one
succeeds; the other gets :class:`ConflictError`. ``update`` and :meth:`MemoryRepository.lock`
serialise writers of one thread instead (an advisory lock on PostgreSQL, the write lock on
SQLite), so they do not conflict with each other at all. Every read is keyed by (agent_id,
thread_id) and verifies the row's checksum. Ids only ever travel as bound parameters.

Faults (docs/design.md#state-checkpoints-and-scopes): every driver, file-system and connection
failure is a typed :class:`store.errors.StoreError`; a lock wait ends after ``lock_timeout_s``;
a write whose connection fails is retried for ``retry_s`` with the same checkpoint id, so a commit
that did happen is found instead of written twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import Engine, and_, delete, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError

from agentmem.errors import StateMismatchError
from agentmem.model.state import MemoryState
from store import checks, codec, space
from store import queries as q
from store.engine import BUSY_TIMEOUT_S, WRITE_OPTION, is_sqlite, make_engine
from store.errors import (
    CheckpointNotFound,
    CommitUnknownError,
    ConflictError,
    DanglingHeadError,
    StoreFullError,
    StoreUnavailableError,
)
from store.faults import translated
from store.migrations import migrate
from store.records import CheckpointInfo, MemoryCheckpoint, StateSpec, ThreadInfo

C, T = q.C, q.T
StateFn = Callable[[MemoryState | None], MemoryState]
R = TypeVar("R")


class MemoryRepository:
    """Memory checkpoints of many agents and threads in one database.

    Args:
        engine: an engine from :func:`store.make_engine`, a URL, or None for the default SQLite
            file. The schema is created or upgraded on first use (or by :meth:`setup`).
        spec: what the caller's model expects; when set, a state of another adapter, backbone or
            shape is refused on write and on read with ``StateMismatchError``.
        lock_timeout_s: the longest any call waits for a lock (another writer's transaction, the
            thread lock of :meth:`update` and :meth:`lock`, a reader delaying an erasure); then
            :class:`StoreLockedError` (or :class:`ErasurePendingError`).
        retry_s: how long a write keeps retrying while the database cannot be reached (a server
            restart, a dropped connection); then :class:`CommitUnknownError`.

    Raises:
        NotADatabaseError, ReadOnlyStoreError: an SQLite path that cannot hold a database.
        ValueError: a timeout that is not a finite number (``lock_timeout_s`` must be > 0).
    """

    def __init__(self, engine: Engine | str | None = None, *, spec: StateSpec | None = None,
                 lock_timeout_s: float = BUSY_TIMEOUT_S, retry_s: float = 10.0):
        self._lock_timeout_s = checks.seconds("lock_timeout_s", lock_timeout_s, positive=True)
        self._retry_s = checks.seconds("retry_s", retry_s)
        self._owns_engine = not isinstance(engine, Engine)
        with translated("opening the store"):
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

    @property
    def lock_timeout_s(self) -> float:
        return self._lock_timeout_s

    def with_spec(self, spec: StateSpec | None) -> MemoryRepository:
        """The same database seen by a caller with another :class:`StateSpec`."""
        other = MemoryRepository(self._engine, spec=spec, lock_timeout_s=self._lock_timeout_s,
                                 retry_s=self._retry_s)
        other._ready = self._ready
        return other

    def setup(self) -> int:
        """Create or upgrade the schema; idempotent. Returns the schema version.

        Raises:
            ForeignSchemaError: the database holds tables of the store's names that the store did
                not make (or that were altered since).
            SchemaVersionError: the database was written by a newer release.
        """
        with self._lock, translated("setting up the store's tables"):
            version = migrate(self._engine, lock_timeout_s=self._lock_timeout_s)
            if is_sqlite(self._engine):
                space.make_reserve(space.sqlite_path(self._engine))
            self._ready = True
            return version

    def close(self) -> None:
        """Release pooled connections (the engine too, when this repository made it)."""
        if self._owns_engine:
            self._engine.dispose()

    # -- writes ------------------------------------------------------------------------------

    def put(self, agent_id: str, thread_id: str, state: MemoryState, *, parent: str | None,
            metadata: dict[str, Any] | None = None,
            checkpoint_id: str | None = None) -> CheckpointInfo:
        """Append ``state`` to the thread as its new head.

        Args:
            agent_id: any non-empty string without NUL.
            thread_id: any non-empty string without NUL.
            state: one conversation's state (batch size 1), finite.
            parent: the checkpoint id the caller read as the head, or None for a new thread.
            metadata: a JSON object stored with the row.
            checkpoint_id: the new row's id (32 lowercase hex digits); None: a fresh one. Putting
                the same state again with the same id returns the stored row instead of writing
                a second one, so a caller may retry after :class:`CommitUnknownError`.

        Raises:
            ConflictError: ``parent`` is not the thread's head (or the thread exists and ``parent``
                is None), or ``checkpoint_id`` names another row. Nothing was written.
            CommitUnknownError: the database stayed unreachable for ``retry_s`` while writing.
            NonFiniteStateError, StateMismatchError, InvalidIdError, InvalidMetadataError, ValueError:
                refused before anything was written.
        """
        agent_id, thread_id = self._ids(agent_id, thread_id)
        enc = self._encode(state)
        meta = codec.encode_metadata(metadata)
        if parent is not None and not codec.is_checkpoint_id(parent):
            raise ConflictError(f"parent {codec.show(parent)} is not a checkpoint id of this store")
        cid = checks.new_checkpoint_id(checkpoint_id)

        def once() -> CheckpointInfo:
            with self._write(f"writing thread {codec.show(thread_id)}") as conn:
                return self._append_in(conn, agent_id, thread_id, enc, meta, cid=cid,
                                       expected=parent, lineage=parent)

        return self._retrying(once, cid)

    def update(self, agent_id: str, thread_id: str, fn: StateFn, *, retries: int = 8,
               metadata: dict[str, Any] | None = None, backoff_s: float = 0.002,
               checkpoint_id: str | None = None) -> CheckpointInfo:
        """Read the head, compute ``fn(head state or None)`` and put it, under the thread's lock.

        Writers that all use ``update`` (or :meth:`lock`) on a thread run one after another, so
        they never conflict; a plain :meth:`put` that moves the head meanwhile makes this attempt
        fail, and it is redone on the newer head.

        Args:
            fn: the new state from the current one (None for an empty thread). It may run again,
                on a newer head, after a conflict.
            retries: conflicts with plain ``put`` writers tolerated before giving up (>= 0).
            backoff_s: base of the jittered exponential wait between attempts.
            checkpoint_id: as for :meth:`put`; a retried update whose first attempt committed
                returns that row without calling ``fn`` again.

        Raises:
            ConflictError: still conflicting after ``retries`` retries.
            StoreLockedError: the thread's lock was not granted within ``lock_timeout_s``.
        """
        retries = checks.count("retries", retries, minimum=0)
        backoff_s = checks.seconds("backoff_s", backoff_s)
        agent_id, thread_id = self._ids(agent_id, thread_id)
        meta = codec.encode_metadata(metadata)
        cid = checks.new_checkpoint_id(checkpoint_id)

        def once() -> CheckpointInfo:
            with self._held(agent_id, thread_id) as conn:
                done = self._replayed(conn, agent_id, thread_id, cid, None)
                if done is not None:
                    return done
                row = self._head_row(conn, agent_id, thread_id)
                head = None if row is None else self._verified(row)
                enc = self._encode(fn(None if head is None else head.state))
                parent = None if head is None else head.checkpoint_id
                return self._append_in(conn, agent_id, thread_id, enc, meta, cid=cid,
                                       expected=parent, lineage=parent)

        attempt = 0
        while True:
            try:
                return self._retrying(once, cid)
            except ConflictError as e:
                if attempt >= retries:
                    raise ConflictError(f"update gave up after {retries + 1} attempts: {e}") from e
            time.sleep(checks.backoff_delay(attempt, backoff_s))
            attempt += 1

    @contextmanager
    def lock(self, agent_id: str, thread_id: str) -> Iterator[HeldThread]:
        """Hold the thread's writer lock for the block: read its head, compute, put.

        ``update`` and other ``lock`` holders of the thread wait (at most ``lock_timeout_s``).
        On SQLite the lock is the database's write lock (one writer at a time, any thread);
        readers never wait. Write through the yielded handle: a plain :meth:`put` on the same
        SQLite file from inside the block would wait for the block itself. What the handle puts
        commits when the block ends; an exception rolls it back.

        Raises:
            StoreLockedError: the lock was not granted within ``lock_timeout_s``.
        """
        agent_id, thread_id = self._ids(agent_id, thread_id)
        with self._held(agent_id, thread_id) as conn:
            yield HeldThread(self, conn, agent_id, thread_id)

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
        enc, cid = self._encode(src.state), checks.new_checkpoint_id(None)

        def once() -> CheckpointInfo:
            with self._write(f"forking into thread {codec.show(new_thread_id)}") as conn:
                return self._append_in(conn, agent_id, new_thread_id, enc, meta, cid=cid,
                                       expected=None, lineage=src.checkpoint_id)

        return self._retrying(once, cid)

    def prune(self, agent_id: str, thread_id: str, *, keep_last: int) -> int:
        """Delete all but the newest ``keep_last`` (≥ 1) checkpoints of a thread; returns how many.

        The freed space goes back to the file system (SQLite: the WAL is folded in and cut, files
        the store created shrink; see :meth:`compact` for older files). On a full disk the rows go
        in small transactions, so that pruning is how space is won back.
        """
        keep_last = checks.count("keep_last", keep_last, minimum=1)
        agent_id, thread_id = self._ids(agent_id, thread_id)

        def run(conn: Connection, limit: int | None) -> int:
            head = self._head_info(conn, agent_id, thread_id)
            if head is None:
                return 0
            return self._delete_checkpoints(conn, and_(C.c.thread_pk == head.thread_pk,
                                                       C.c.seq <= head.seq - keep_last), limit)

        n = self._deleting(f"pruning thread {codec.show(thread_id)}", run)
        space.shrink(self._engine, self._lock_timeout_s, erase=False)
        return n

    def delete_thread(self, agent_id: str, thread_id: str) -> int:
        """Delete a thread and all its checkpoints; returns how many checkpoints went.

        Erases like :meth:`delete_agent`.
        """
        agent_id, thread_id = self._ids(agent_id, thread_id)
        n = self._deleting(f"deleting thread {codec.show(thread_id)}",
                           self._thread_deleter(q.THREAD_PK, q.thread_params(agent_id, thread_id)))
        space.shrink(self._engine, self._lock_timeout_s, erase=True)
        return n

    def delete_agent(self, agent_id: str) -> int:
        """Delete every thread and checkpoint of an agent; returns how many checkpoints went.

        SQLite: when this returns, no byte of the deleted rows is left in the database files
        (``secure_delete`` zeroes them, the WAL is checkpointed and truncated). If another
        connection's read keeps the WAL alive past ``lock_timeout_s``, the rows are gone for every
        call but :class:`ErasurePendingError` says their bytes are not yet; :meth:`compact`
        finishes. PostgreSQL: the rows are unreadable at once; their bytes stay in the table files
        until :meth:`compact` (``VACUUM FULL``) rewrites them. On a full disk the rows go in small
        transactions.
        """
        agent_id = codec.check_id("agent_id", agent_id)
        n = self._deleting(f"deleting agent {codec.show(agent_id)}",
                           self._thread_deleter(q.AGENT_PKS, q.agent_params(agent_id)))
        space.shrink(self._engine, self._lock_timeout_s, erase=True)
        return n

    def compact(self) -> int:
        """Give the space of deleted rows back to the file system and erase their bytes from the
        database's table files; returns the bytes the store's files shrank by.

        SQLite: folds the WAL into the file and truncates it; a file that existed before the store
        first used it (``auto_vacuum`` off) is converted once with ``VACUUM`` (which needs free
        disk about the file's size), later calls only move free pages out. PostgreSQL: ``VACUUM
        FULL`` of the store's tables (each is locked while it is rewritten; rows an older open
        transaction may still see are kept until it ends; copies in the server's
        WAL and in backups remain until they are recycled).

        Raises:
            ErasurePendingError: another connection's read kept the WAL alive past
                ``lock_timeout_s`` (SQLite).
        """
        self._ensure_ready()
        if not is_sqlite(self._engine):
            return space.vacuum_full(self._engine, self._lock_timeout_s)
        return space.compact_sqlite(self._engine, self._lock_timeout_s)

    def repair_head(self, agent_id: str, thread_id: str) -> str | None:
        """Point a thread whose head row is gone (:class:`DanglingHeadError`) at its newest
        remaining checkpoint, or remove the thread when none remains; returns the head's id."""
        agent_id, thread_id = self._ids(agent_id, thread_id)
        with self._held(agent_id, thread_id) as conn:
            pk = conn.execute(q.THREAD_PK, q.thread_params(agent_id, thread_id)).scalar()
            if pk is None:
                return None
            newest = conn.execute(q.NEWEST_OF_THREAD, {"pk": pk}).first()
            if newest is None:
                conn.execute(delete(T).where(T.c.thread_pk == pk))
                return None
            conn.execute(q.SET_HEAD, {"pk": pk, "new": newest.id})
            return str(newest.checkpoint_id)

    # -- reads -------------------------------------------------------------------------------

    def latest(self, agent_id: str, thread_id: str) -> MemoryCheckpoint | None:
        """The thread's head, verified; None when the thread has no checkpoints.

        Raises:
            DanglingHeadError: the thread's head row is missing (see :meth:`repair_head`).
        """
        agent_id, thread_id = self._ids(agent_id, thread_id)
        with self._read(f"reading thread {codec.show(thread_id)}") as conn:
            row = self._head_row(conn, agent_id, thread_id)
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
        with self._read(f"reading thread {codec.show(thread_id)}") as conn:
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
        if limit is not None:
            limit = checks.count("limit", limit, minimum=0)
        agent_id, thread_id = self._ids(agent_id, thread_id)
        if before is not None and not codec.is_checkpoint_id(before):
            raise CheckpointNotFound(f"no checkpoint {codec.show(before)} in this thread")
        params = q.thread_params(agent_id, thread_id)
        with self._read(f"listing thread {codec.show(thread_id)}") as conn:
            seq = None
            if before is not None:
                seq = conn.execute(q.BY_ID_SEQ, {**params, "cid": before}).scalar()
                if seq is None:
                    raise CheckpointNotFound(f"no checkpoint {before} in this thread")
            return [q.info(r) for r in conn.execute(q.history(limit, seq), params)]

    def latest_for_agent(self, agent_id: str) -> MemoryCheckpoint | None:
        """The most recently written head among all the agent's threads (agent scope)."""
        agent_id = codec.check_id("agent_id", agent_id)
        with self._read(f"reading agent {codec.show(agent_id)}") as conn:
            row = conn.execute(q.AGENT_HEADS_FULL, q.agent_params(agent_id)).first()
            return None if row is None else self._verified(row)

    def list_threads(self, agent_id: str) -> list[ThreadInfo]:
        """The agent's threads, most recently written first."""
        agent_id = codec.check_id("agent_id", agent_id)
        with self._read(f"listing agent {codec.show(agent_id)}") as conn:
            rows = conn.execute(q.AGENT_THREADS, q.agent_params(agent_id)).all()
            return [ThreadInfo(r.agent_id, r.thread_id, r.checkpoint_id, int(r.seq),
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

    def _head_info(self, conn: Connection, agent_id: str, thread_id: str) -> Any:
        row = conn.execute(q.HEAD_INFO, q.thread_params(agent_id, thread_id)).first()
        if row is None:
            self._check_dangling(conn, agent_id, thread_id)
        return row

    def _head_row(self, conn: Connection, agent_id: str, thread_id: str) -> Any:
        row = conn.execute(q.HEAD_FULL, q.thread_params(agent_id, thread_id)).first()
        if row is None:
            self._check_dangling(conn, agent_id, thread_id)
        return row

    def _check_dangling(self, conn: Connection, agent_id: str, thread_id: str) -> None:
        head_id = conn.execute(q.THREAD_HEAD_ID, q.thread_params(agent_id, thread_id)).first()
        if head_id is not None and head_id[0] is not None:
            raise DanglingHeadError(
                f"thread {codec.show(thread_id)} of agent {codec.show(agent_id)} points at a "
                "checkpoint row that is gone (deleted outside the store?); "
                "repository.repair_head(agent_id, thread_id) moves the head to its newest "
                "remaining checkpoint")

    def _replayed(self, conn: Connection, agent_id: str, thread_id: str, cid: str,
                  blob: bytes | None) -> CheckpointInfo | None:
        """The row ``cid`` if an earlier attempt of this very write committed it (``blob``: the
        state it must hold; None: any)."""
        row = conn.execute(q.BY_CHECKPOINT_ID, {"cid": cid}).first()
        if row is None:
            return None
        if (row.agent_id, row.thread_id) == (agent_id, thread_id) and (
                blob is None or codec.same_state(bytes(row.blob), blob)):
            return q.info(row)
        raise ConflictError(f"checkpoint id {cid} is already used by another write")

    def _append_in(self, conn: Connection, agent_id: str, thread_id: str,
                   enc: codec.EncodedState, meta: str, *, cid: str, expected: str | None,
                   lineage: str | None, replay_any: bool = False) -> CheckpointInfo:
        done = self._replayed(conn, agent_id, thread_id, cid, None if replay_any else enc.blob)
        if done is not None:
            return done
        now = datetime.now(UTC)
        try:
            if expected is None:
                thread_pk, head_id, seq = self._new_thread(conn, agent_id, thread_id, now), None, 0
            else:
                thread_pk, head_id, seq = self._check_head(conn, agent_id, thread_id, expected, enc)
            new_id = conn.execute(q.INSERT_CHECKPOINT, {
                "checkpoint_id": cid, "thread_pk": thread_pk, "seq": seq,
                "agent_id": agent_id, "thread_id": thread_id, "parent_checkpoint_id": lineage,
                "created_at": now, "metadata": meta, **q.state_columns(enc)}).scalar_one()
            move = q.SET_FIRST_HEAD if head_id is None else q.MOVE_HEAD
            moved = conn.execute(move, {"pk": thread_pk, "old": head_id, "new": new_id})
        except IntegrityError as e:
            raise ConflictError(f"thread {codec.show(thread_id)} was advanced concurrently: "
                                f"{type(e.orig).__name__}") from e
        if moved.rowcount != 1:
            raise ConflictError(f"the head of thread {codec.show(thread_id)} moved; re-read it")
        return q.new_info(agent_id, thread_id, cid, lineage, seq, now, enc, meta)

    def _new_thread(self, conn: Connection, agent_id: str, thread_id: str, now: datetime) -> int:
        if conn.execute(q.THREAD_PK, q.thread_params(agent_id, thread_id)).first():
            raise ConflictError(f"thread {codec.show(thread_id)} already has checkpoints; pass its "
                                "head as parent")
        return conn.execute(q.INSERT_THREAD, {
            "thread_key": codec.thread_key(agent_id, thread_id),
            "agent_key": codec.agent_key(agent_id), "agent_id": agent_id, "thread_id": thread_id,
            "created_at": now}).scalar_one()

    def _check_head(self, conn: Connection, agent_id: str, thread_id: str, expected: str,
                    enc: codec.EncodedState) -> tuple[int, int, int]:
        head = self._head_info(conn, agent_id, thread_id)
        if head is None or head.checkpoint_id != expected:
            now = "no checkpoints" if head is None else f"head {head.checkpoint_id}"
            raise ConflictError(f"thread {codec.show(thread_id)} has {now}, not {expected}")
        if (head.adapter_fingerprint, head.backbone_id, head.shape) != (
                enc.adapter_fingerprint, enc.backbone_id, enc.shape):
            raise StateMismatchError(f"thread {codec.show(thread_id)} holds states of adapter "
                                     f"{head.adapter_fingerprint[:16]}, backbone {head.backbone_id}"
                                     f", shape {head.shape}; this state does not match")
        return head.thread_pk, head.id, head.seq + 1

    def _thread_deleter(self, select_pks: Any, params: dict[str, Any]
                        ) -> Callable[[Connection, int | None], int]:
        def run(conn: Connection, limit: int | None) -> int:
            pks = list(conn.execute(select_pks, params).scalars())
            if not pks:
                return 0
            n = self._delete_checkpoints(conn, C.c.thread_pk.in_(pks), limit)
            if limit is None or n < limit:  # every checkpoint is gone: the threads can go
                conn.execute(delete(T).where(T.c.thread_pk.in_(pks)))
            return n
        return run

    @staticmethod
    def _delete_checkpoints(conn: Connection, where: Any, limit: int | None) -> int:
        if limit is None:
            return int(conn.execute(delete(C).where(where)).rowcount)
        ids = list(conn.execute(select(C.c.id).where(where).order_by(C.c.id).limit(limit))
                   .scalars())
        return int(conn.execute(delete(C).where(C.c.id.in_(ids))).rowcount) if ids else 0

    def _deleting(self, what: str, run: Callable[[Connection, int | None], int]) -> int:
        """Run a deletion in one transaction; on a full SQLite disk, in small ones that each give
        their pages back before the next (the store's reserve file makes room for the first)."""
        try:
            with self._write(what) as conn:
                return run(conn, None)
        except StoreFullError:
            if not is_sqlite(self._engine):
                raise
        space.release_reserve(space.sqlite_path(self._engine))
        total = 0
        while True:
            with self._write(what) as conn:
                n = run(conn, space.DELETE_CHUNK)
            total += n
            space.shrink(self._engine, self._lock_timeout_s, erase=False)
            if n < space.DELETE_CHUNK:
                space.make_reserve(space.sqlite_path(self._engine))
                return total

    def _retrying(self, once: Callable[[], R], cid: str) -> R:
        """Run a write; while the database cannot be reached, retry it (same checkpoint id, so
        a commit that happened is found, not repeated) until ``retry_s`` has passed."""
        deadline = time.monotonic() + self._retry_s
        attempt = 0
        while True:
            try:
                return once()
            except CommitUnknownError:
                raise
            except StoreUnavailableError as e:
                if time.monotonic() >= deadline:
                    raise CommitUnknownError(
                        f"{e}; the write may or may not have committed: retrying put(..., "
                        f"checkpoint_id={cid!r}) stores it exactly once", cid) from e
            time.sleep(checks.backoff_delay(attempt, 0.05, cap_s=1.0))
            attempt += 1

    @contextmanager
    def _read(self, what: str = "reading") -> Iterator[Connection]:
        self._ensure_ready()
        with checks.rows_checked(what), translated(what), self._engine.connect() as conn:
            if is_sqlite(conn):
                space.sqlite_dbapi(conn, self._lock_timeout_s)
            with conn.begin():
                yield conn

    @contextmanager
    def _write(self, what: str = "writing") -> Iterator[Connection]:
        self._ensure_ready()
        with checks.rows_checked(what), translated(what), self._engine.connect() as conn:
            conn.execution_options(**{WRITE_OPTION: True})
            if is_sqlite(conn):  # BEGIN IMMEDIATE waits for the write lock this long
                space.sqlite_dbapi(conn, self._lock_timeout_s)
            with conn.begin():
                if not is_sqlite(conn):
                    conn.exec_driver_sql(
                        f"SET LOCAL lock_timeout = '{int(self._lock_timeout_s * 1000)}ms'")
                yield conn

    @contextmanager
    def _held(self, agent_id: str, thread_id: str) -> Iterator[Connection]:
        """A write transaction holding the thread's writer lock (SQLite: the write lock)."""
        with self._write(f"locking thread {codec.show(thread_id)}") as conn:
            if not is_sqlite(conn):
                key = int.from_bytes(codec.thread_key(agent_id, thread_id)[:8], "big", signed=True)
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})
            yield conn

    def _ensure_ready(self) -> None:
        if not self._ready:
            self.setup()


class HeldThread:
    """A thread under :meth:`MemoryRepository.lock`: its head, and ``put`` on top of it."""

    def __init__(self, repo: MemoryRepository, conn: Connection, agent_id: str,
                 thread_id: str) -> None:
        self._repo, self._conn = repo, conn
        self.agent_id, self.thread_id = agent_id, thread_id
        row = repo._head_row(conn, agent_id, thread_id)
        self._head = None if row is None else repo._verified(row)
        self._parent = None if self._head is None else self._head.checkpoint_id

    @property
    def head(self) -> MemoryCheckpoint | None:
        """The thread's head when the lock was taken (None: no checkpoints)."""
        return self._head

    def put(self, state: MemoryState, *, metadata: dict[str, Any] | None = None,
            checkpoint_id: str | None = None) -> CheckpointInfo:
        """Append ``state`` on top of the head (or of this handle's previous put).

        ``checkpoint_id``: as for :meth:`MemoryRepository.put`; a row of that id already in this
        thread is returned instead of a second one.
        """
        enc = self._repo._encode(state)
        meta = codec.encode_metadata(metadata)
        cid = checks.new_checkpoint_id(checkpoint_id)
        with translated(f"writing thread {codec.show(self.thread_id)}"):
            info = self._repo._append_in(self._conn, self.agent_id, self.thread_id, enc, meta,
                                         cid=cid, expected=self._parent, lineage=self._parent,
                                         replay_any=True)
        self._parent = info.checkpoint_id
        return info

