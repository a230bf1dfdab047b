"""The store package's SQL repository plugs into DeltaMemChatModel through the small store protocol
(the adapter is written here; agentmem itself never imports ``store``)."""

from __future__ import annotations

import torch
from langchain_core.messages import HumanMessage

from agentmem.chat.memory_store import MemoryKey, MemoryRecord, MemoryStore
from agentmem.errors import MemoryConflictError
from tests.chat.conftest import cfg


class RepositoryStore:
    """`MemoryStore` over ``store.MemoryRepository`` (one checkpoint row per save)."""

    def __init__(self, repo) -> None:
        self.repo = repo

    @staticmethod
    def _record(head) -> MemoryRecord | None:
        return None if head is None else MemoryRecord(head.state, head.metadata, head.checkpoint_id)

    def load(self, key: MemoryKey) -> MemoryRecord | None:
        return self._record(self.repo.latest(key.agent_id, key.thread_id))

    def latest_for_agent(self, agent_id: str) -> MemoryRecord | None:
        return self._record(self.repo.latest_for_agent(agent_id))

    def save(self, key: MemoryKey, state, metadata, *, parent: str | None) -> str:
        from store import ConflictError

        try:
            return self.repo.put(key.agent_id, key.thread_id, state, parent=parent,
                                 metadata=metadata).checkpoint_id
        except ConflictError as e:
            raise MemoryConflictError(str(e)) from e

    def delete(self, key: MemoryKey) -> None:
        self.repo.delete_thread(key.agent_id, key.thread_id)

    def delete_agent(self, agent_id: str) -> None:
        self.repo.delete_agent(agent_id)


def test_sqlite_repository_as_the_memory_store(make_model, tmp_path):
    from store import MemoryRepository

    repo = MemoryRepository(f"sqlite:///{tmp_path / 'memory.db'}")
    store = RepositoryStore(repo)
    assert isinstance(store, MemoryStore)
    sql, ram = make_model(store=store, memory_scope="agent"), make_model(memory_scope="agent")
    for model in (sql, ram):
        first = model.invoke("My name is Ada.", config=cfg("t1", agent="ada"))
        model.invoke([HumanMessage("My name is Ada."), first, HumanMessage("Bye.")],
                     config=cfg("t1", agent="ada"))
        model.invoke("Who am I?", config=cfg("t2", agent="ada"))
    for thread in ("t1", "t2"):
        assert torch.equal(sql.memory_state(cfg(thread, agent="ada")).tensors,
                           ram.memory_state(cfg(thread, agent="ada")).tensors)
    assert [c.seq for c in repo.history("ada", "t1")] in ([1, 0], [0, 1])
    sql.forget(cfg("t1", agent="ada"))
    assert repo.latest_for_agent("ada") is None
    repo.close()



