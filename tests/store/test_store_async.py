"""AsyncMemoryRepository: the same store from asyncio code (no event-loop plugin needed)."""

from __future__ import annotations

import asyncio

import pytest
import torch
from store_helpers import bump, make_state, states_equal

from store import AsyncMemoryRepository, CheckpointNotFound, ConflictError, MemoryRepository


def test_async_round_trip_and_api(engine) -> None:
    async def main() -> None:
        repo = AsyncMemoryRepository(engine)
        assert await repo.setup() >= 1 and await repo.latest("a", "t") is None
        first = await repo.put("a", "t", make_state(1), parent=None, metadata={"n": 1})
        second = await repo.put("a", "t", make_state(2), parent=first.checkpoint_id)
        with pytest.raises(ConflictError):
            await repo.put("a", "t", make_state(3), parent=first.checkpoint_id)
        got = await repo.get("a", "t", first.checkpoint_id)
        assert states_equal(got.state, make_state(1)) and got.metadata == {"n": 1}
        assert [h.checkpoint_id for h in await repo.history("a", "t")] == [
            second.checkpoint_id, first.checkpoint_id]
        fork = await repo.fork("a", "t", first.checkpoint_id, "t2")
        assert (await repo.latest_for_agent("a")).checkpoint_id == fork.checkpoint_id
        assert [t.thread_id for t in await repo.list_threads("a")] == ["t2", "t"]
        assert await repo.prune("a", "t", keep_last=1) == 1
        with pytest.raises(CheckpointNotFound):
            await repo.get("a", "t", first.checkpoint_id)
        assert await repo.delete_thread("a", "t2") == 1
        assert await repo.delete_agent("a") == 1
        assert await repo.latest("a", "t") is None

    asyncio.run(main())


def test_async_updates_from_many_tasks_form_one_chain(engine) -> None:
    n = 24

    async def slow_bump(state):  # an async fn that yields mid-update, so tasks interleave
        await asyncio.sleep(0)
        return bump(state)

    async def main() -> AsyncMemoryRepository:
        repo = AsyncMemoryRepository(MemoryRepository(engine))
        await asyncio.gather(*(repo.update("a", "t", slow_bump, retries=500, backoff_s=0.0005)
                               for _ in range(n)))
        return repo

    repo = asyncio.run(main()).sync
    head = repo.latest("a", "t")
    assert head.tokens_written == n - 1  # the first update created the thread at 0
    assert torch.equal(head.state.tensors, torch.full_like(head.state.tensors, float(n - 1)))
    assert [h.seq for h in repo.history("a", "t")] == list(range(n - 1, -1, -1))
