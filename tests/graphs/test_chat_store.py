"""store.chat_store.RepositoryMemoryStore: the SQL repository as the chat model's MemoryStore."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
import torch
from langchain_core.messages import AIMessage, HumanMessage

from agentmem import DeltaMemConfig, MemoryState
from agentmem.chat.chat_model import DeltaMemChatModel
from agentmem.chat.memory_store import InProcessMemoryStore, MemoryKey, MemoryStore
from agentmem.errors import MemoryConflictError
from store import MemoryRepository, make_engine
from store.chat_store import RepositoryMemoryStore
from tests.graphs.conftest import same_state
from tests.transcripts.harness import PG_ENV


@pytest.fixture(params=["sqlite", "postgresql"])
def repo(request: pytest.FixtureRequest, tmp_path) -> Iterator[MemoryRepository]:
    if request.param == "sqlite":
        r = MemoryRepository(str(tmp_path / "m.sqlite3"))
        yield r
        r.close()
        return
    if not os.environ.get(PG_ENV):
        pytest.skip(f"PostgreSQL cases need {PG_ENV} (e.g. postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"agentmem_cs_{uuid.uuid4().hex[:12]}"
    engine = make_engine(os.environ[PG_ENV], schema=schema)
    yield MemoryRepository(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def _state(seed: int, tokens: int = 4) -> MemoryState:
    g = torch.Generator().manual_seed(seed)
    return MemoryState(torch.randn(1, 2, 1, 8, 8, generator=g), torch.tensor([tokens]), (0, 1),
                       "f" * 64, "tiny-backbone", DeltaMemConfig())


def test_load_save_delete_round_trip(repo):
    store = RepositoryMemoryStore(repo)
    assert isinstance(store, MemoryStore) and store.repository is repo
    key = MemoryKey("agent 'x'", "thread; DROP TABLE")
    assert store.load(key) is None
    first = store.save(key, _state(0), {"written": {"n": 1}}, parent=None)
    second = store.save(key, _state(1, 9), {"written": {"n": 2}}, parent=first)
    record = store.load(key)
    assert record.checkpoint_id == second and record.metadata == {"written": {"n": 2}}
    assert same_state(record.state, _state(1, 9))
    assert [i.parent_checkpoint_id for i in repo.history(key.agent_id, key.thread_id)] == [first, None]
    store.delete(key)
    assert store.load(key) is None and store.latest_for_agent(key.agent_id) is None


def test_a_moved_head_is_a_memory_conflict_and_nothing_is_stored(repo):
    store = RepositoryMemoryStore(repo)
    key = MemoryKey("a", "t")
    head = store.save(key, _state(0), {}, parent=None)
    for parent in (None, uuid.uuid4().hex, "not-an-id"):
        with pytest.raises(MemoryConflictError):
            store.save(key, _state(1), {}, parent=parent)
    assert store.load(key).checkpoint_id == head and len(repo.history("a", "t")) == 1


def test_agent_wide_operations(repo):
    store = RepositoryMemoryStore(repo)
    store.save(MemoryKey("a", "t1"), _state(0), {}, parent=None)
    latest = store.save(MemoryKey("a", "t2"), _state(1), {}, parent=None)
    store.save(MemoryKey("b", "t1"), _state(2), {}, parent=None)
    assert store.latest_for_agent("a").checkpoint_id == latest
    store.delete_agent("a")
    assert store.latest_for_agent("a") is None and store.load(MemoryKey("b", "t1")) is not None


@pytest.mark.filterwarnings("ignore:no δ-mem adapter ships")
def test_the_chat_model_remembers_the_same_in_sql_as_in_process(repo, tiny_backbone):
    torch.manual_seed(0)
    models = [DeltaMemChatModel(backbone=tiny_backbone, max_tokens=6, device="cpu", store=s)
              for s in (InProcessMemoryStore(), RepositoryMemoryStore(repo))]
    config = {"configurable": {"thread_id": "t", "agent_id": "a"}}
    for model in models:
        history = []
        for text in ("My sister Lin lives in Porto.", "I have a dog.", "Where does Lin live?"):
            history.append(HumanMessage(text))
            history.append(model.invoke(history, config))
        assert isinstance(history[-1], AIMessage)
    memory, sql = (m.memory_state(config) for m in models)
    assert same_state(memory, sql) and int(sql.tokens_written[0]) > 0
    assert len(repo.history("a", "t")) == 3  # one checkpoint per call, each message written once
