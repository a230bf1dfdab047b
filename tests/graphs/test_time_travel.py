"""Time travel: rewinding, forking, editing or replaying a past LangGraph checkpoint continues from
the memory checkpoint recorded there — bit-identical to playing that history afresh."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import HumanMessage

from graphs import MemoryContext, fork_thread
from tests.graphs.conftest import cfg, same_state, say, written_state

TURNS = ["My sister Lin lives in Porto.", "I have a dog called Biscuit.",
         "I moved to Lyon last year.", "I bought a cello."]
NEW = "Where does my sister live?"


def _play(graph: Any, thread: str, turns: list[str]) -> list[Any]:
    """Play ``turns``; returns the graph checkpoint config after each (index 0 = after turn 1)."""
    configs = []
    for text in turns:
        say(graph, thread, text)
        configs.append(graph.get_state(cfg(thread)).config)
    return configs


def _reference(graph: Any, context: Any, thread: str, turns: list[str]) -> Any:
    """The memory state of a fresh thread that plays ``turns``."""
    for text in turns:
        out = say(graph, thread, text)
    return written_state(context, out)


def test_rewind_continues_from_the_matching_memory_not_the_latest(graph, context):
    after = _play(graph, "main", TURNS)
    head = graph.get_state(cfg("main")).values["memory"]["assistant"]
    out = say(graph, "main", NEW, after[1])  # continue from the checkpoint after turn 2
    ref = out["memory"]["assistant"]
    assert ref["thread"].startswith("main~") and ref["written"] != head["written"]
    expected = _reference(graph, context, "fresh", TURNS[:2] + [NEW])
    assert same_state(written_state(context, out), expected)  # nothing of turns 3-4, nothing twice
    assert context.repository.latest("assistant", "main").checkpoint_id == head["written"]


def test_the_original_branch_still_continues_from_its_own_head(graph, context):
    after = _play(graph, "main", TURNS)
    say(graph, "main", NEW, after[1])
    out = say(graph, "main", NEW, after[3])  # back to the end of the original branch
    assert out["memory"]["assistant"]["thread"] == "main"
    assert same_state(written_state(context, out), _reference(graph, context, "fresh", TURNS + [NEW]))


def test_fork_thread_copies_the_memory_of_that_checkpoint(graph, context):
    after = _play(graph, "main", TURNS)
    fork_thread(graph, context, after[1], "copy")
    assert len(graph.get_state(cfg("copy")).values["messages"]) == 4
    out = say(graph, "copy", NEW)
    assert out["memory"]["assistant"]["thread"] == "copy"
    assert same_state(written_state(context, out), _reference(graph, context, "fresh", TURNS[:2] + [NEW]))


def test_update_state_edits_the_past_and_the_memory_follows(graph, context):
    _play(graph, "main", TURNS)
    start = next(s for s in graph.get_state_history(cfg("main"))
                 if s.next == ("check_turn",) and len(s.values["messages"]) == 5)  # turn 3's input
    old = start.values["messages"][-1]
    edited = graph.update_state(start.config, {"messages": [HumanMessage(NEW, id=old.id)]})
    out = graph.invoke(None, edited)
    assert [m.text for m in out["messages"][::2]] == TURNS[:2] + [NEW]
    assert same_state(written_state(context, out), _reference(graph, context, "fresh", TURNS[:2] + [NEW]))


def test_replaying_a_half_done_turn_reads_the_memory_of_its_start(graph, context):
    _play(graph, "main", TURNS)
    original = graph.get_state(cfg("main")).values
    mid = next(s for s in graph.get_state_history(cfg("main"))
               if s.next == ("respond",) and len(s.values["messages"]) == 5)  # turn 3, before respond
    out = graph.invoke(None, mid.config)
    assert out["memory"]["assistant"]["thread"].startswith("main~")
    assert same_state(written_state(context, out), _reference(graph, context, "fresh", TURNS[:3]))
    assert context.repository.latest("assistant", "main").checkpoint_id == \
        original["memory"]["assistant"]["written"]


def test_rewinding_to_before_the_first_turn_starts_a_new_branch(graph, context):
    _play(graph, "main", TURNS[:2])
    head = context.repository.latest("assistant", "main")
    start = next(s for s in graph.get_state_history(cfg("main")) if not s.values.get("messages"))
    out = say(graph, "main", NEW, start.config)
    ref = out["memory"]["assistant"]
    assert ref["thread"].startswith("main~") and ref["read"] is None
    assert same_state(written_state(context, out), _reference(graph, context, "fresh", [NEW]))
    agent_scope = MemoryContext(model=context.model, scope="agent")  # seeded from the latest memory
    out = graph.invoke({"messages": [HumanMessage(NEW)]}, start.config, context=agent_scope)
    ref = out["memory"]["assistant"]
    assert ref["thread"].startswith("main~") and ref["read"] is not None
    read = context.repository.get("assistant", ref["thread"], ref["read"]).state
    assert same_state(read, context.repository.latest("assistant", "fresh").state)
    assert context.repository.latest("assistant", "main").checkpoint_id == head.checkpoint_id
