"""Pieces of the graphs package that need no model: routing, windows, reducers, branch names."""

from __future__ import annotations

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from agentmem import fork_metadata
from agentmem.chat.chat_model import DeltaMemChatModel
from agentmem.chat.turn_plan import WrittenLog
from graphs import MemoryContext, Specialist, route_by_mention
from graphs.branches import branch_name, is_branch_of
from graphs.checkpointers import _libpq, sqlite_path
from graphs.nodes import _turn_problem
from graphs.state import merge_memory, ref_base
from graphs.window import agent_view, visible_messages
from store import MemoryRepository
from store.chat_store import RepositoryMemoryStore

SPECIALISTS = (Specialist("travel", keywords=("flight", "hotel")),
               Specialist("cooking", keywords=("recipe", "dinner")))


def _chat(n: int) -> list:
    """n answered turns (u1, a1, …) followed by the current user message."""
    out = []
    for i in range(1, n + 1):
        out += [HumanMessage(f"u{i}"), AIMessage(f"a{i}")]
    return out + [HumanMessage("now")]


@pytest.mark.parametrize(("text", "agent"), [
    ("@cooking what about flights?", "cooking"),       # a mention beats keywords
    ("Book a flight and a hotel", "travel"),
    ("A recipe for dinner, and a flight", "cooking"),  # more keyword hits
    ("@travelling salesman recipe", "cooking"),        # not a mention of "travel"
    ("nothing relevant here", "travel"),               # no hits: the first specialist
])
def test_route_by_mention(text, agent):
    assert route_by_mention(text, SPECIALISTS) == agent


def test_visible_messages_keeps_the_window_and_the_user_turn():
    msgs = _chat(5)
    assert [m.text for m in visible_messages(msgs, window=4)] == ["u4", "a4", "u5", "a5", "now"]
    assert [m.text for m in visible_messages(msgs, window=3)] == ["u5", "a5", "now"]  # whole turns
    assert [m.text for m in visible_messages(msgs, window=0)] == ["now"]
    shown = visible_messages([SystemMessage("be brief"), *msgs], window=2)
    assert [m.text for m in shown] == ["be brief", "u5", "a5", "now"]
    shown = visible_messages([SystemMessage("be brief"), *msgs], window=2, system_prompt="other")
    assert [m.text for m in shown] == ["other", "u5", "a5", "now"]


def test_visible_messages_token_cap_drops_the_oldest_shown_turns():
    msgs = [HumanMessage("x " * 200), AIMessage("y"), HumanMessage("short"), AIMessage("z"),
            HumanMessage("now " * 300)]
    shown = visible_messages(msgs, window=4, window_tokens=50)
    assert [m.text for m in shown] == ["short", "z", msgs[-1].text]  # the user turn always stays


def test_agent_view_keeps_only_the_agents_turns():
    msgs = [SystemMessage("s"), HumanMessage("t1"), AIMessage("ta1", name="travel"),
            HumanMessage("c1"), AIMessage("ca1", name="cooking"), HumanMessage("failed"),
            HumanMessage("t2"), AIMessage("ta2", name="travel"), HumanMessage("now")]
    assert [m.text for m in agent_view(msgs, "travel")] == ["s", "t1", "ta1", "t2", "ta2", "now"]
    assert [m.text for m in agent_view(msgs, "cooking")] == ["s", "c1", "ca1", "now"]


def test_merge_memory_replaces_per_agent_and_drops_on_none():
    ref = {"thread": "t", "read": None, "written": "w", "tokens": 3}
    merged = merge_memory({"a": ref, "b": ref}, {"b": {**ref, "written": "x"}, "a": None})
    assert merged == {"b": {**ref, "written": "x"}}
    assert ref_base(ref) == "w" and ref_base({**ref, "written": None, "read": "r"}) == "r"
    assert ref_base(None) is None


def test_branch_names_are_recognised_only_for_their_thread():
    name = branch_name("t1")
    assert is_branch_of(name, "t1") and is_branch_of("t1", "t1")
    assert not is_branch_of(name, "t") and not is_branch_of("t1~xyz", "t1")
    assert not is_branch_of("t12", "t1") and branch_name("t1") != name


def test_fork_metadata_moves_the_source_threads_log_only():
    log = WrittenLog()
    log.record("src", ["f1", "f2"], 0, ["f3"])
    log.record("other", ["g1"], 0, [])
    carried = WrittenLog.from_metadata(fork_metadata(log.to_metadata(), "src", "dst"))
    assert list(carried.threads) == ["dst"]
    assert carried.thread("dst").count == 3 and carried.thread("dst").tail == ["f1", "f2", "f3"]


@pytest.mark.parametrize(("message", "problem"), [
    (None, "got nothing"), (AIMessage("hi"), "got a ai message"), (HumanMessage(""), "empty"),
    (HumanMessage(" \n\t"), "empty"), (HumanMessage("x" * 11), "11 characters; at most 10"),
    (HumanMessage("fine"), None)])
def test_turn_problems(message, problem):
    found = _turn_problem(message, max_chars=10)
    assert found is None if problem is None else problem in found


def test_context_validation(tmp_path):
    store = RepositoryMemoryStore(MemoryRepository(str(tmp_path / "m.sqlite3")))
    with pytest.raises(TypeError, match="RepositoryMemoryStore"):
        MemoryContext(model=DeltaMemChatModel())  # its default store is in-process
    with pytest.raises(ValueError, match="memory_scope='thread'"):
        MemoryContext(model=DeltaMemChatModel(store=store, memory_scope="agent"))
    for bad in ({"window": -1}, {"window_tokens": 0}, {"scope": "world"}, {"max_turn_chars": 0},
                {"specialists": (Specialist("a"), Specialist("a"))}, {"agent_id": ""}):
        with pytest.raises(ValueError):
            MemoryContext(model=DeltaMemChatModel(store=store), **bad)
    ctx = MemoryContext(model=DeltaMemChatModel(store=store), specialists=SPECIALISTS)
    assert ctx.agent_ids == ("travel", "cooking") and ctx.repository is store.repository


def test_database_urls():
    assert str(sqlite_path("sqlite:////tmp/x.db")) == "/tmp/x.db"
    assert str(sqlite_path("rel/x.db")) == "rel/x.db"
    with pytest.raises(ValueError):
        sqlite_path("postgresql://u@h/db")
    assert _libpq("postgresql+psycopg://u:p@h:5432/db?options=-csearch_path%3Ds") == \
        "postgresql://u:p@h:5432/db?options=-csearch_path%3Ds"


def test_a_checkpointer_file_is_made_as_the_store_makes_its_files(tmp_path):
    from graphs import sqlite_checkpointer

    saver = sqlite_checkpointer(tmp_path / "new" / "both.sqlite3")
    assert saver.conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # incremental
    saver.conn.close()
    repo = MemoryRepository(str(tmp_path / "new" / "both.sqlite3"))
    assert repo.setup() >= 1 and repo.list_threads("a") == []  # the store shares the file
    repo.close()
