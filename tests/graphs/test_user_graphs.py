"""Memory in a user's own graph (``graphs.user_graphs``): a hand-built ``StateGraph`` + ``SqliteSaver``
whose node calls the chat model through ``invoke_with_memory`` follows forks, replays and
restarts; the plain ``model.invoke`` in a node (the trap) does not."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from langchain_core.messages import HumanMessage
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, MessagesState, StateGraph

from agentmem import DeltaMemChatModel
from graphs import (
    ChatMemory,
    MemoryBranchError,
    MemoryMessagesState,
    MemoryStoreMismatchError,
    MissingMemoryStateError,
    ainvoke_with_memory,
    aopen_chat_memory,
    invoke_with_memory,
    memory_lineage,
    open_chat_memory,
    sqlite_checkpointer,
)
from tests.graphs.conftest import cfg, same_state

TURNS = ["My sister Lin lives in Porto.", "I have a dog called Biscuit.", "I moved to Lyon last year."]
NEW = "Where does my sister live?"
AGENT = "default"  # the chat model's agent when the config names none


def memory_node(model: Any) -> Callable[[Any, RunnableConfig], dict[str, Any]]:
    def chat(state: MemoryMessagesState, config: RunnableConfig) -> dict[str, Any]:
        return invoke_with_memory(model, state["messages"], state, config)
    return chat


def plain_node(model: Any) -> Callable[[Any, RunnableConfig], dict[str, Any]]:
    """The trap: the model called as in any LangChain app, memory keyed by the thread id only."""
    def chat(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:
        return {"messages": [model.invoke(state["messages"], config)]}
    return chat


def build(node: Callable[..., Any], checkpointer: Any, schema: type = MemoryMessagesState) -> Any:
    builder = StateGraph(schema)
    builder.add_node("chat", node)
    builder.add_edge(START, "chat")
    builder.add_edge("chat", END)
    return builder.compile(checkpointer=checkpointer)


def say(graph: Any, text: str, config: dict[str, Any]) -> dict[str, Any]:
    return graph.invoke({"messages": [HumanMessage(text)]}, config)


def meta(values: dict[str, Any]) -> dict[str, Any]:
    """The memory metadata of the last reply."""
    return values["messages"][-1].response_metadata["memory"]


def play(graph: Any, thread: str, turns: list[str]) -> list[dict[str, Any]]:
    """Play ``turns``; the memory ref after each."""
    return [say(graph, text, cfg(thread))["memory"][AGENT] for text in turns]


def state_of(pair: ChatMemory, ref: dict[str, Any]) -> Any:
    return pair.model.store.repository.get(AGENT, ref["thread"], ref["written"]).state


def reference(pair: ChatMemory, graph: Any, thread: str, turns: list[str]) -> Any:
    """The memory a fresh thread that plays ``turns`` ends with."""
    return state_of(pair, play(graph, thread, turns)[-1])


@pytest.fixture
def open_pair(tiny_backbone: str, db: Path) -> Callable[[], Any]:
    def open_() -> Any:
        return open_chat_memory(db, backbone=tiny_backbone, max_tokens=6, device="cpu")
    return open_


@pytest.fixture
def pair(open_pair: Callable[[], Any]) -> Iterator[ChatMemory]:
    with open_pair() as p:
        yield p


@pytest.fixture
def graph(pair: ChatMemory) -> Any:
    return build(memory_node(pair.model), pair.checkpointer)


def test_a_fork_from_an_earlier_checkpoint_continues_the_memory_recorded_there(pair, graph):
    refs = play(graph, "main", TURNS)
    head = graph.get_state(cfg("main")).config
    after_1 = next(s for s in graph.get_state_history(cfg("main"))
                   if not s.next and len(s.values["messages"]) == 2)
    assert after_1.values["memory"][AGENT] == refs[0]
    out = say(graph, NEW, after_1.config)
    ref = out["memory"][AGENT]
    assert ref["thread"].startswith("main~") and meta(out)["thread_id"] == ref["thread"]
    repo = pair.model.store.repository
    chain = [i.checkpoint_id for i in memory_lineage(repo, AGENT, ref["written"])]
    assert chain[:3] == [ref["written"], ref["read"], refs[0]["written"]]  # new ← fork ← turn 1
    assert same_state(repo.get(AGENT, ref["thread"], ref["read"]).state, state_of(pair, refs[0]))
    expected = reference(pair, graph, "fresh", TURNS[:1] + [NEW])
    assert same_state(state_of(pair, ref), expected)  # nothing of turns 2-3, nothing twice
    assert ref["tokens"] == int(expected.tokens_written[0]) < refs[2]["tokens"]
    assert repo.latest(AGENT, "main").checkpoint_id == refs[2]["written"]  # main untouched
    out = say(graph, NEW, head)  # and the original branch continues from its own head
    assert out["memory"][AGENT]["thread"] == "main" and meta(out)["parent_checkpoint_id"] == \
        refs[2]["written"]


def test_replaying_a_turn_reads_the_memory_of_its_start(pair, graph):
    refs = play(graph, "main", TURNS)
    original = graph.get_state(cfg("main")).values
    turn_2 = next(s for s in graph.get_state_history(cfg("main"))
                  if s.next == ("chat",) and len(s.values["messages"]) == 3)  # before chat ran
    out = graph.invoke(None, turn_2.config)
    ref = out["memory"][AGENT]
    assert ref["thread"].startswith("main~")
    chain = [i.checkpoint_id for i in memory_lineage(pair.model.store.repository, AGENT,
                                                     ref["written"])]
    assert chain[2] == refs[0]["written"]  # replayed on the memory after turn 1
    assert same_state(state_of(pair, ref), state_of(pair, refs[1]))  # as turn 2 wrote it
    assert ref["tokens"] == refs[1]["tokens"]
    assert out["messages"][-1].text == original["messages"][3].text  # the same answer again
    assert pair.model.store.repository.latest(AGENT, "main").checkpoint_id == refs[2]["written"]


def test_after_a_restart_the_memory_continues_without_rewriting_the_history(open_pair):
    with open_pair() as pair:
        before = play(build(memory_node(pair.model), pair.checkpointer), "main", TURNS[:2])[-1]
    with open_pair() as pair:  # a new process: new model object, new saver, same file
        graph = build(memory_node(pair.model), pair.checkpointer)
        out = say(graph, TURNS[2], cfg("main"))
        ref = out["memory"][AGENT]
        assert len(out["messages"]) == 6 and ref["thread"] == "main"
        assert meta(out)["parent_checkpoint_id"] == before["written"] == ref["read"]
        expected = reference(pair, graph, "fresh", TURNS)
        assert same_state(state_of(pair, ref), expected)
        assert ref["tokens"] == int(expected.tokens_written[0])  # grew by the new turn only


def test_the_trap_a_plain_model_call_in_a_node_ignores_forks_and_restarts(tiny_backbone, db,
                                                                           open_pair):
    def plain_graph(saver: SqliteSaver) -> tuple[Any, DeltaMemChatModel]:
        model = DeltaMemChatModel(backbone=tiny_backbone, max_tokens=6, device="cpu")  # in-process
        return build(plain_node(model), saver, MessagesState), model

    saver = sqlite_checkpointer(db)
    graph, _ = plain_graph(saver)
    before = [meta(say(graph, text, cfg("main"))) for text in TURNS[:2]][-1]
    saver.conn.close()

    saver = sqlite_checkpointer(db)  # restart: the checkpointer still has the conversation...
    graph, _ = plain_graph(saver)
    out = say(graph, TURNS[2], cfg("main"))
    assert len(out["messages"]) == 6
    assert meta(out)["parent_checkpoint_id"] is None  # ...the memory is gone, and the whole
    assert meta(out)["tokens_written"] > before["tokens_written"]  # resent history was rewritten
    after_1 = next(s for s in graph.get_state_history(cfg("main"))
                   if not s.next and len(s.values["messages"]) == 2)
    forked = meta(say(graph, NEW, after_1.config))
    assert forked["thread_id"] == "main"  # a fork reads and advances the latest memory
    assert forked["parent_checkpoint_id"] == meta(out)["checkpoint_id"]  # turn 3 included
    saver.conn.close()

    with open_pair() as pair:  # the same steps through invoke_with_memory
        before = play(build(memory_node(pair.model), pair.checkpointer), "other", TURNS[:2])[-1]
    with open_pair() as pair:
        graph = build(memory_node(pair.model), pair.checkpointer)
        out = say(graph, TURNS[2], cfg("other"))
        assert meta(out)["parent_checkpoint_id"] == before["written"]
        after_1 = next(s for s in graph.get_state_history(cfg("other"))
                       if not s.next and len(s.values["messages"]) == 2)
        forked = say(graph, NEW, after_1.config)["memory"][AGENT]
        assert forked["thread"].startswith("other~")
        assert memory_lineage(pair.model.store.repository, AGENT, forked["read"])[1].checkpoint_id \
            == after_1.values["memory"][AGENT]["written"]


def test_an_in_process_store_under_a_persistent_checkpointer_is_refused(tiny_backbone, db):
    model = DeltaMemChatModel(backbone=tiny_backbone, max_tokens=6, device="cpu")
    saver = sqlite_checkpointer(db)
    graph = build(memory_node(model), saver)
    with pytest.raises(MemoryStoreMismatchError, match="RepositoryMemoryStore"):
        say(graph, TURNS[0], cfg("main"))
    assert model.store.keys() == []  # refused before the model ran: nothing written
    saver.conn.close()


def test_an_in_process_store_works_forward_and_refuses_time_travel(tiny_backbone):
    model = DeltaMemChatModel(backbone=tiny_backbone, max_tokens=6, device="cpu")
    for saver in (InMemorySaver(), SqliteSaver(sqlite3.connect(":memory:", check_same_thread=False))):
        graph = build(memory_node(model), saver)
        thread = type(saver).__name__
        refs = play(graph, thread, TURNS[:2])
        assert refs[1]["read"] == refs[0]["written"] and refs[1]["thread"] == thread
        after_1 = next(s for s in graph.get_state_history(cfg(thread))
                       if not s.next and len(s.values["messages"]) == 2)
        with pytest.raises(MemoryBranchError, match="latest memory"):
            say(graph, NEW, after_1.config)
        start = next(s for s in graph.get_state_history(cfg(thread)) if not s.values.get("messages"))
        out = say(graph, NEW, start.config)  # back to the start: a new, empty branch
        assert out["memory"][AGENT]["thread"].startswith(f"{thread}~")
        assert out["memory"][AGENT]["read"] is None


def test_a_state_without_the_memory_field_is_refused(pair):
    def chat(state: MessagesState, config: RunnableConfig) -> dict[str, Any]:  # LangGraph adds
        return invoke_with_memory(pair.model, state["messages"], state, config)  # annotated fields

    graph = build(chat, pair.checkpointer, MessagesState)
    say(graph, TURNS[0], cfg("main"))  # LangGraph drops the memory ref silently...
    assert "memory" not in graph.get_state(cfg("main")).values
    with pytest.raises(MissingMemoryStateError, match="MemoryMessagesState"):
        say(graph, TURNS[1], cfg("main"))  # ...so the next turn says so


def test_async_nodes_follow_forks_too(tiny_backbone, db):
    async def run() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        async with aopen_chat_memory(db, backbone=tiny_backbone, max_tokens=6, device="cpu") as pair:
            model = pair.model.bind(stop=["\n\n"])  # a binding of the model works too

            async def chat(state: MemoryMessagesState, config: RunnableConfig) -> dict[str, Any]:
                return await ainvoke_with_memory(model, state["messages"], state, config)

            graph = build(chat, pair.checkpointer)
            refs = []
            for text in TURNS[:2]:
                out = await graph.ainvoke({"messages": [HumanMessage(text)]}, cfg("main"))
                refs.append(out["memory"][AGENT])
            history = [s async for s in graph.aget_state_history(cfg("main"))]
            after_1 = next(s for s in history if not s.next and len(s.values["messages"]) == 2)
            out = await graph.ainvoke({"messages": [HumanMessage(NEW)]}, after_1.config)
            return out["memory"][AGENT], refs

    ref, refs = asyncio.run(run())
    assert ref["thread"].startswith("main~") and refs[1]["read"] == refs[0]["written"]
    with open_chat_memory(db) as pair:
        chain = memory_lineage(pair.model.store.repository, AGENT, ref["written"])
        assert [i.checkpoint_id for i in chain][2] == refs[0]["written"]


def test_without_a_thread_id_the_model_answers_from_an_empty_memory(pair):
    graph = build(memory_node(pair.model), None)
    out = say(graph, TURNS[0], {})
    assert out["memory"] == {} and out["messages"][-1].response_metadata.get("memory") is None


def test_fork_thread_copies_a_user_graphs_conversation_with_its_memory(pair, graph):
    from graphs import fork_thread

    refs = play(graph, "main", TURNS[:2])
    fork_thread(graph, pair.model.store.repository, cfg("main"), "copy", as_node="chat")
    copied = graph.get_state(cfg("copy")).values["memory"][AGENT]
    assert copied["thread"] == "copy" and copied["tokens"] == refs[-1]["tokens"]
    after = say(graph, NEW, cfg("copy"))["memory"][AGENT]
    assert after["read"] == copied["read"] and after["tokens"] > refs[-1]["tokens"]
    assert graph.get_state(cfg("main")).values["memory"][AGENT] == refs[-1]  # untouched
