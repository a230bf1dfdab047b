"""Where the chat model keeps memory between calls: a small load/save-by-key protocol.

`DeltaMemChatModel` needs five small operations, so any backend that holds one `MemoryState`
(plus a small JSON object) per (agent, thread) key plugs in: the in-process
`InProcessMemoryStore` (the default) or the SQL `MemoryRepository` of the ``store`` package,
through an adapter that lives there (agentmem never imports ``store``). Agent scope
(docs/design.md#state-checkpoints-and-scopes): a thread that has no memory yet starts from the
agent's latest state, whichever of its threads saved it.

A save names the checkpoint it started from (``parent``); a store whose head moved meanwhile
raises `MemoryConflictError` instead of silently dropping either update. The chat model then
re-reads the head and redoes its write pass on top of it, under the key's lock when the store
has one (`LockingMemoryStore`), so that concurrent turns on one key take turns instead of
racing. A save may name its checkpoint id, so that retrying a save whose outcome is unknown never
stores the turn twice.
"""

from __future__ import annotations

import copy
import inspect
import json
import threading
import uuid
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from agentmem.errors import MemoryConflictError
from agentmem.model.state import MemoryState


@dataclass(frozen=True)
class MemoryKey:
    """Which memory a call reads and writes.

    Attributes:
        agent_id: the agent (``configurable.agent_id``; "default" when not given).
        thread_id: the conversation (``configurable.thread_id``).
    """

    agent_id: str
    thread_id: str

    def __str__(self) -> str:
        return f"{self.agent_id}/{self.thread_id}"


@dataclass(frozen=True)
class MemoryRecord:
    """The head of one key: its state, a JSON object of metadata, and the checkpoint id."""

    state: MemoryState
    metadata: dict[str, Any] = field(default_factory=dict)
    checkpoint_id: str | None = None


@runtime_checkable
class MemoryStore(Protocol):
    """Load, save and delete the memory of a key. Implementations must be thread-safe."""

    def load(self, key: MemoryKey) -> MemoryRecord | None:
        """The key's latest record, or None when nothing was saved (or it was deleted)."""
        ...

    def latest_for_agent(self, agent_id: str) -> MemoryRecord | None:
        """The most recently saved record among all threads of ``agent_id``, or None."""
        ...

    def save(self, key: MemoryKey, state: MemoryState, metadata: dict[str, Any], *,
             parent: str | None) -> str:
        """Store ``state`` (batch size 1) as the key's new head; returns its checkpoint id.

        A store may also take ``checkpoint_id=`` (32 lowercase hex digits): the id of the new
        record, and a save of an id the key already holds returns it instead of storing twice.

        Raises:
            MemoryConflictError: ``parent`` is not the key's current head (None: the key must be
                empty). Nothing was stored.
        """
        ...

    def delete(self, key: MemoryKey) -> None:
        """Forget the key (no error when it holds nothing)."""
        ...

    def delete_agent(self, agent_id: str) -> None:
        """Forget every thread of ``agent_id``."""
        ...


class HeldRecord(Protocol):
    """A key under its writer lock: the head when the lock was taken, and a save on top of it."""

    record: MemoryRecord | None

    def save(self, state: MemoryState, metadata: dict[str, Any], *,
             checkpoint_id: str | None = None) -> str:
        """Store ``state`` as the key's new head (a ``checkpoint_id`` it holds: returned as is)."""
        ...


@runtime_checkable
class LockingMemoryStore(MemoryStore, Protocol):
    """A `MemoryStore` that can hold one key's writer lock across a read, a write pass and a save."""

    def locked(self, key: MemoryKey) -> AbstractContextManager[HeldRecord]:
        """Hold the key's writer lock for the block; other ``locked`` callers of the key wait."""
        ...


def takes_checkpoint_id(store: MemoryStore) -> bool:
    """Whether ``store.save`` accepts ``checkpoint_id=`` (idempotent saves)."""
    try:
        return "checkpoint_id" in inspect.signature(store.save).parameters
    except (TypeError, ValueError):
        return False


class InProcessMemoryStore:
    """`MemoryStore` in a dict, for one process: heads only, copied on the way in and out."""

    def __init__(self) -> None:
        self._heads: dict[MemoryKey, MemoryRecord] = {}  # most recently saved last
        self._lock = threading.Lock()
        self._key_locks: dict[MemoryKey, threading.Lock] = {}

    def load(self, key: MemoryKey) -> MemoryRecord | None:
        with self._lock:
            record = self._heads.get(key)
        return None if record is None else _copy(record)

    def latest_for_agent(self, agent_id: str) -> MemoryRecord | None:
        with self._lock:
            record = next((r for k, r in reversed(self._heads.items()) if k.agent_id == agent_id),
                          None)
        return None if record is None else _copy(record)

    def save(self, key: MemoryKey, state: MemoryState, metadata: dict[str, Any], *,
             parent: str | None, checkpoint_id: str | None = None) -> str:
        if state.batch_size != 1:
            raise ValueError(f"a memory record holds one conversation; got batch {state.batch_size}")
        json.dumps(metadata)  # metadata must be a JSON object, as in the SQL store
        checkpoint_id = checkpoint_id or uuid.uuid4().hex
        record = _copy(MemoryRecord(state, metadata, checkpoint_id))
        with self._lock:
            head = self._heads.get(key)
            if head is not None and head.checkpoint_id == checkpoint_id:
                return checkpoint_id  # this very save already happened
            if (head.checkpoint_id if head else None) != parent:
                raise MemoryConflictError(f"memory {key} moved on: head is "
                                          f"{head.checkpoint_id if head else None}, not {parent}")
            self._heads.pop(key, None)
            self._heads[key] = record
        return checkpoint_id

    @contextmanager
    def locked(self, key: MemoryKey) -> Iterator[HeldRecord]:
        """Hold ``key``'s writer lock (in this process) for the block."""
        with self._lock:
            lock = self._key_locks.setdefault(key, threading.Lock())
        with lock:
            yield _HeldInProcess(self, key)

    def delete(self, key: MemoryKey) -> None:
        with self._lock:
            self._heads.pop(key, None)

    def delete_agent(self, agent_id: str) -> None:
        with self._lock:
            for key in [k for k in self._heads if k.agent_id == agent_id]:
                del self._heads[key]

    def keys(self) -> list[MemoryKey]:
        """Every key that holds a record."""
        with self._lock:
            return list(self._heads)


class _HeldInProcess:
    def __init__(self, store: InProcessMemoryStore, key: MemoryKey) -> None:
        self._store, self._key = store, key
        self.record = store.load(key)
        self._parent = None if self.record is None else self.record.checkpoint_id

    def save(self, state: MemoryState, metadata: dict[str, Any], *,
             checkpoint_id: str | None = None) -> str:
        extra = {"checkpoint_id": checkpoint_id} if takes_checkpoint_id(self._store) else {}
        cid = self._store.save(self._key, state, metadata, parent=self._parent, **extra)
        self._parent = cid
        return cid


def _copy(record: MemoryRecord) -> MemoryRecord:
    s = record.state
    state = s.replace(tensors=s.tensors.detach().clone(), tokens_written=s.tokens_written.clone())
    return MemoryRecord(state, copy.deepcopy(record.metadata), record.checkpoint_id)
