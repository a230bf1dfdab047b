"""`AsyncMemoryRepository`: the repository for asyncio code (LangGraph's async graphs).

Each call runs the synchronous repository in a worker thread (``asyncio.to_thread``), so both
share one implementation, one engine and one set of guarantees; the event loop never blocks on
the database. ``update`` with a plain function is the synchronous one (under the thread's lock);
with a coroutine function it runs ``fn`` on the event loop, taking turns with the process's other
tasks on that thread and retrying with ``asyncio.sleep`` when a writer elsewhere got there first.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import Engine

from agentmem.model.state import MemoryState
from store.checks import backoff_delay, new_checkpoint_id
from store.errors import ConflictError
from store.records import CheckpointInfo, MemoryCheckpoint, StateSpec, ThreadInfo
from store.repository import MemoryRepository

AsyncStateFn = Callable[[MemoryState | None], MemoryState | Awaitable[MemoryState]]


class AsyncMemoryRepository:
    """Async twin of :class:`MemoryRepository`; same arguments, same errors.

    Args:
        engine: a :class:`MemoryRepository` to wrap, or what it takes (engine, URL or None).
        spec: as for :class:`MemoryRepository` (ignored when wrapping a repository).
    """

    def __init__(self, engine: MemoryRepository | Engine | str | None = None, *,
                 spec: StateSpec | None = None, **options: Any):
        self._repo = engine if isinstance(engine, MemoryRepository) else MemoryRepository(
            engine, spec=spec, **options)
        self._turns: dict[tuple[str, str], asyncio.Lock] = {}

    @property
    def sync(self) -> MemoryRepository:
        """The synchronous repository underneath."""
        return self._repo

    async def setup(self) -> int:
        return await asyncio.to_thread(self._repo.setup)

    async def close(self) -> None:
        await asyncio.to_thread(self._repo.close)

    async def put(self, agent_id: str, thread_id: str, state: MemoryState, *,
                  parent: str | None, metadata: dict[str, Any] | None = None,
                  checkpoint_id: str | None = None) -> CheckpointInfo:
        return await asyncio.to_thread(self._repo.put, agent_id, thread_id, state,
                                       parent=parent, metadata=metadata,
                                       checkpoint_id=checkpoint_id)

    async def latest(self, agent_id: str, thread_id: str) -> MemoryCheckpoint | None:
        return await asyncio.to_thread(self._repo.latest, agent_id, thread_id)

    async def get(self, agent_id: str, thread_id: str, checkpoint_id: str) -> MemoryCheckpoint:
        return await asyncio.to_thread(self._repo.get, agent_id, thread_id, checkpoint_id)

    async def history(self, agent_id: str, thread_id: str, *, limit: int | None = None,
                      before: str | None = None) -> list[CheckpointInfo]:
        return await asyncio.to_thread(self._repo.history, agent_id, thread_id, limit=limit,
                                       before=before)

    async def fork(self, agent_id: str, thread_id: str, checkpoint_id: str, new_thread_id: str,
                   *, metadata: dict[str, Any] | None = None) -> CheckpointInfo:
        return await asyncio.to_thread(self._repo.fork, agent_id, thread_id, checkpoint_id,
                                       new_thread_id, metadata=metadata)

    async def latest_for_agent(self, agent_id: str) -> MemoryCheckpoint | None:
        return await asyncio.to_thread(self._repo.latest_for_agent, agent_id)

    async def list_threads(self, agent_id: str) -> list[ThreadInfo]:
        return await asyncio.to_thread(self._repo.list_threads, agent_id)

    async def prune(self, agent_id: str, thread_id: str, *, keep_last: int) -> int:
        return await asyncio.to_thread(self._repo.prune, agent_id, thread_id, keep_last=keep_last)

    async def delete_thread(self, agent_id: str, thread_id: str) -> int:
        return await asyncio.to_thread(self._repo.delete_thread, agent_id, thread_id)

    async def delete_agent(self, agent_id: str) -> int:
        return await asyncio.to_thread(self._repo.delete_agent, agent_id)

    async def compact(self) -> int:
        return await asyncio.to_thread(self._repo.compact)

    async def repair_head(self, agent_id: str, thread_id: str) -> str | None:
        return await asyncio.to_thread(self._repo.repair_head, agent_id, thread_id)

    async def update(self, agent_id: str, thread_id: str, fn: AsyncStateFn, *, retries: int = 8,
                     metadata: dict[str, Any] | None = None, backoff_s: float = 0.002,
                     checkpoint_id: str | None = None) -> CheckpointInfo:
        """As :meth:`MemoryRepository.update`; ``fn`` may be sync or async."""
        if not inspect.iscoroutinefunction(fn):
            return await asyncio.to_thread(self._repo.update, agent_id, thread_id, fn,  # type: ignore[arg-type]
                                           retries=retries, metadata=metadata,
                                           backoff_s=backoff_s, checkpoint_id=checkpoint_id)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries={retries!r}; expected an integer >= 0")
        cid = new_checkpoint_id(checkpoint_id)
        turn = self._turns.setdefault((agent_id, thread_id), asyncio.Lock())
        async with turn:  # this process's tasks take turns; other writers are retried below
            for attempt in range(retries + 1):
                head = await self.latest(agent_id, thread_id)
                if head is not None and head.checkpoint_id == cid:
                    return head  # an earlier attempt committed
                new = await fn(None if head is None else head.state)  # type: ignore[misc]
                try:
                    return await self.put(agent_id, thread_id, new, metadata=metadata,
                                          parent=None if head is None else head.checkpoint_id,
                                          checkpoint_id=cid)
                except ConflictError as e:
                    if attempt == retries:
                        raise ConflictError(f"update gave up after {retries + 1} attempts: {e}"
                                            ) from e
                await asyncio.sleep(backoff_delay(attempt, backoff_s))
        raise ConflictError("update gave up")  # not reached: the loop returns or raises
