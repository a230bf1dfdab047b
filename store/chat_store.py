"""`RepositoryMemoryStore`: the SQL repository as the chat model's memory store.

``agentmem.DeltaMemChatModel`` keeps memory through a small load/save-by-key protocol
(:class:`agentmem.chat.memory_store.MemoryStore`) so that agentmem never imports this package. This
adapter implements it over :class:`store.MemoryRepository`: a key (agent_id, thread_id) is that
thread of that agent, ``load`` returns the thread's head, ``latest_for_agent`` the most recently
written head among the agent's threads (agent scope), ``save`` appends a checkpoint whose parent
is the head the caller read (a moved head raises the protocol's
:class:`agentmem.errors.MemoryConflictError`, and the chat model redoes its write on the newer
head), ``delete`` deletes the thread and ``delete_agent`` every thread of the agent::

    repo = MemoryRepository("memory.sqlite3")
    model = DeltaMemChatModel(store=RepositoryMemoryStore(repo))
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine

from agentmem.chat.memory_store import MemoryKey, MemoryRecord
from agentmem.errors import MemoryConflictError
from agentmem.model.state import MemoryState
from store.errors import ConflictError
from store.records import MemoryCheckpoint
from store.repository import HeldThread, MemoryRepository

__all__ = ["RepositoryMemoryStore"]


class RepositoryMemoryStore:
    """`agentmem.chat.memory_store.MemoryStore` over a :class:`MemoryRepository` (thread-safe).

    Args:
        repository: the repository, or what it takes (an engine, a URL, a file path, or None for
            the default SQLite file).
    """

    def __init__(self, repository: MemoryRepository | Engine | str | None = None) -> None:
        self._repo = repository if isinstance(repository, MemoryRepository) else MemoryRepository(
            repository)

    @property
    def repository(self) -> MemoryRepository:
        """The repository underneath."""
        return self._repo

    def load(self, key: MemoryKey) -> MemoryRecord | None:
        """The head of thread ``key.thread_id`` of agent ``key.agent_id``, verified; None if empty."""
        return _record(self._repo.latest(key.agent_id, key.thread_id))

    def latest_for_agent(self, agent_id: str) -> MemoryRecord | None:
        """The most recently written head among all threads of ``agent_id``; None if it has none."""
        return _record(self._repo.latest_for_agent(agent_id))

    def save(self, key: MemoryKey, state: MemoryState, metadata: dict[str, Any], *,
             parent: str | None, checkpoint_id: str | None = None) -> str:
        """Append ``state`` as the thread's new head; returns its checkpoint id.

        Raises:
            MemoryConflictError: ``parent`` is not the thread's head. Nothing was stored.
            store.StoreError: the database failed (typed: unavailable, locked, full, ...).
        """
        try:
            info = self._repo.put(key.agent_id, key.thread_id, state, parent=parent,
                                  metadata=metadata, checkpoint_id=checkpoint_id)
        except ConflictError as e:
            raise MemoryConflictError(f"memory {key}: {e}") from e
        return info.checkpoint_id

    @contextmanager
    def locked(self, key: MemoryKey) -> Iterator[_Held]:
        """Hold the thread's writer lock (``MemoryRepository.lock``) for the block."""
        try:
            with self._repo.lock(key.agent_id, key.thread_id) as held:
                yield _Held(held)
        except ConflictError as e:
            raise MemoryConflictError(f"memory {key}: {e}") from e

    def delete(self, key: MemoryKey) -> None:
        """Delete the thread and every checkpoint of it (nothing to do when it is empty)."""
        self._repo.delete_thread(key.agent_id, key.thread_id)

    def delete_agent(self, agent_id: str) -> None:
        """Delete every thread and checkpoint of ``agent_id`` (the right to be forgotten)."""
        self._repo.delete_agent(agent_id)


class _Held:
    def __init__(self, held: HeldThread) -> None:
        self._held = held
        self.record = _record(held.head)

    def save(self, state: MemoryState, metadata: dict[str, Any], *,
             checkpoint_id: str | None = None) -> str:
        return self._held.put(state, metadata=metadata, checkpoint_id=checkpoint_id).checkpoint_id


def _record(head: MemoryCheckpoint | None) -> MemoryRecord | None:
    return None if head is None else MemoryRecord(head.state, dict(head.metadata), head.checkpoint_id)
