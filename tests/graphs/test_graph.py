"""The compiled graphs: state without tensors, sync and async alike, context, checkpointers."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import torch
from langchain_core.messages import HumanMessage
from langgraph.checkpoint.sqlite import SqliteSaver

from graphs import (
    MemoryContext,
    MissingContextError,
    Specialist,
    async_sqlite_checkpointer,
    build_memory_agent,
    build_router_agent,
)
from tests.graphs.conftest import cfg, same_state, say, written_state

TURNS = ["My sister Lin lives in Porto.", "I have a dog called Biscuit.", "Where does Lin live?"]


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _tensors(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return [t for v in getattr(value, "__dict__", {}).values() for t in _tensors(v)]


def test_graph_state_holds_checkpoint_ids_never_tensors(graph, context):
    for text in TURNS:
        out = say(graph, "t1", text)
    for snap in graph.get_state_history(cfg("t1")):
        assert not _tensors(snap.values)
        json.dumps(snap.values.get("memory", {}))  # plain ids and counts
    ref = out["memory"]["assistant"]
    assert set(ref) == {"thread", "read", "written", "tokens"} and out["agent_id"] == "assistant"
    assert out["messages"][-1].name == "assistant"
    assert out["messages"][-1].response_metadata["memory"]["checkpoint_id"] == ref["written"]
    assert context.repository.latest("assistant", "t1").checkpoint_id == ref["written"]


def test_async_invocation_matches_sync(graph, context, tmp_path):
    for text in TURNS:
        sync_out = say(graph, "sync", text)

    async def run() -> dict[str, Any]:
        async with async_sqlite_checkpointer(tmp_path / "async.sqlite3") as saver:
            agraph = build_memory_agent(saver, context=context)
            for text in TURNS:
                out = await agraph.ainvoke({"messages": [HumanMessage(text)]}, cfg("async"))
            assert len((await agraph.aget_state(cfg("async"))).values["messages"]) == 6
            return out

    async_out = asyncio.run(run())
    assert async_out["memory"]["assistant"]["thread"] == "async"
    assert same_state(written_state(context, async_out), written_state(context, sync_out))


def test_the_runs_context_wins_over_the_built_in_one(graph, context):
    other = MemoryContext(model=context.model, agent_id="other", window=0)
    out = graph.invoke({"messages": [HumanMessage("hello")]}, cfg("t"), context=other)
    assert out["agent_id"] == "other" and "other" in out["memory"]
    assert context.repository.latest("other", "t") is not None
    assert context.repository.latest("assistant", "t") is None


def test_a_graph_without_context_says_how_to_give_one(db):
    graph = build_memory_agent(False)
    with pytest.raises(MissingContextError, match="context=MemoryContext"):
        graph.invoke({"messages": [HumanMessage("hi")]})


def test_without_a_checkpointer_the_caller_carries_the_state(context):
    graph = build_memory_agent(False, context=context)
    first = graph.invoke({"messages": [HumanMessage(TURNS[0])]})
    second = graph.invoke({**first, "messages": [*first["messages"], HumanMessage(TURNS[1])]})
    a, b = first["memory"]["assistant"], second["memory"]["assistant"]
    assert a["thread"].startswith("run-") and b["thread"] == a["thread"]
    assert b["read"] == a["written"] and b["tokens"] > a["tokens"]


def test_the_default_checkpointer_is_sqlite_beside_the_store(monkeypatch, tmp_path, context):
    monkeypatch.delenv("AGENTMEM_STORE_URL", raising=False)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    graph = build_memory_agent(context=context)
    assert isinstance(graph.checkpointer, SqliteSaver)
    say(graph, "t", "hello")
    assert (tmp_path / "xdg" / "agentmem" / "memory.sqlite3").is_file()
    graph.checkpointer.conn.close()


def test_router_sends_turns_to_specialists_with_separate_memories(context, db):
    ctx = MemoryContext(model=context.model, specialists=(
        Specialist("travel", keywords=("flight",), system_prompt="You plan trips."),
        Specialist("cooking", keywords=("recipe",))))
    graph = build_router_agent(False, context=ctx)
    out = graph.invoke({"messages": [HumanMessage("a flight to Oslo")]})
    out = graph.invoke({**out, "messages": [*out["messages"], HumanMessage("a recipe please")]})
    assert out["agent_id"] == "cooking" and set(out["memory"]) == {"travel", "cooking"}
    assert [m.name for m in out["messages"][1::2]] == ["travel", "cooking"]
    assert out["memory"]["cooking"]["read"] is None  # its own, empty memory
    with pytest.raises(ValueError, match="two or more specialists"):
        build_router_agent(False, context=context)
