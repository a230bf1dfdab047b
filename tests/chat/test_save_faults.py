"""A turn's reply is never lost to its save: conflicts are redone under the key's lock, a store
that keeps failing is reported in response_metadata (or raised when asked), and a caller that
stops waiting writes nothing."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from agentmem.chat.memory_store import InProcessMemoryStore
from agentmem.errors import AgentMemError, MemoryConflictError, UnsupportedContentError
from tests.chat.conftest import cfg


class DownStore(InProcessMemoryStore):
    """Loads work; every save fails as a database that went away would."""

    class Unavailable(AgentMemError):
        retryable = True

    def __init__(self) -> None:
        super().__init__()
        self.saves = 0

    def save(self, key, state, metadata, *, parent, checkpoint_id=None):
        self.saves += 1
        raise self.Unavailable("the database cannot be reached")


class AlwaysConflicting:
    """A store without a lock whose head always moves between load and save."""

    def __init__(self) -> None:
        self.inner, self.saves = InProcessMemoryStore(), 0

    def load(self, key):
        return self.inner.load(key)

    def latest_for_agent(self, agent_id):
        return self.inner.latest_for_agent(agent_id)

    def save(self, key, state, metadata, *, parent):
        self.saves += 1
        raise MemoryConflictError("moved on")

    def delete(self, key):
        self.inner.delete(key)

    def delete_agent(self, agent_id):
        self.inner.delete_agent(agent_id)


def test_a_failing_save_still_returns_the_reply_and_says_so(make_model, caplog) -> None:
    store = DownStore()
    model = make_model(store=store, save_timeout_s=0.3)
    with caplog.at_level(logging.WARNING, logger="agentmem"):
        reply = model.invoke("My name is Ada.", config=cfg("t"))
    memory = reply.response_metadata["memory"]
    assert reply.content == make_model().invoke("My name is Ada.").content
    assert memory["saved"] is False and memory["checkpoint_id"] is None
    assert "cannot be reached" in memory["error"] and store.saves > 1  # it was retried
    assert "answered but not saved" in caplog.text
    assert model.memory_state(cfg("t")) is None


def test_on_save_error_raise_raises_the_stores_error(make_model) -> None:
    model = make_model(store=DownStore(), save_timeout_s=0.0, on_save_error="raise")
    with pytest.raises(DownStore.Unavailable):
        model.invoke("Hi", config=cfg("t"))
    with pytest.raises(DownStore.Unavailable):  # remember exists to write: it always raises
        make_model(store=DownStore(), save_timeout_s=0.0).remember("Note.", config=cfg("t"))


def test_a_store_that_always_conflicts_gives_up_at_the_deadline(make_model) -> None:
    store = AlwaysConflicting()
    model = make_model(store=store, save_timeout_s=0.3)
    t0 = time.monotonic()
    reply = model.invoke("Hi", config=cfg("t"))
    assert time.monotonic() - t0 < 10 and store.saves > 2
    assert reply.response_metadata["memory"]["saved"] is False
    assert "MemoryConflictError" in reply.response_metadata["memory"]["error"]


def test_concurrent_turns_on_one_key_all_land(make_model) -> None:
    store = InProcessMemoryStore()
    model = make_model(store=store, max_tokens=3)
    replies, errors = [], []

    def talk(worker: int) -> None:
        try:
            for i in range(6):
                replies.append(model.invoke(f"Worker {worker} says {i}.", config=cfg("shared")))
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=talk, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(replies) == 24
    memories = [r.response_metadata["memory"] for r in replies]
    assert all(m["saved"] for m in memories)
    assert len({m["checkpoint_id"] for m in memories}) == 24
    parents = [m["parent_checkpoint_id"] for m in memories]
    assert sorted(parents, key=str) == sorted({*parents}, key=str)  # one chain: no two share a parent


def test_a_cancelled_ainvoke_writes_nothing(make_model) -> None:
    class SlowLoad(InProcessMemoryStore):
        def load(self, key):
            time.sleep(0.5)  # the caller gives up while the turn is being prepared
            return super().load(key)

    store = SlowLoad()
    model = make_model(store=store, max_tokens=40)

    async def main() -> None:
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(model.ainvoke("Remember me.", config=cfg("t")), 0.1)
        await asyncio.sleep(1.5)  # the worker thread notices and stops

    asyncio.run(main())
    assert store.keys() == []


def test_breaking_out_of_stream_writes_nothing(make_model) -> None:
    store = InProcessMemoryStore()
    model = make_model(store=store, max_tokens=40)
    for _chunk in model.stream("Remember me.", config=cfg("t")):
        break
    assert store.keys() == []


def test_text_that_is_not_unicode_is_refused_before_anything_runs(make_model) -> None:
    store = InProcessMemoryStore()
    model = make_model(store=store)
    with pytest.raises(UnsupportedContentError, match="not valid Unicode"):
        model.invoke("broken \udc80 text", config=cfg("t"))
    assert store.keys() == []
