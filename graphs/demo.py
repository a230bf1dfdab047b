"""``agentmem demo``: a multi-session conversation whose facts only the memory can recall.

Two sessions (two threads of one agent, agent scope) tell the agent some facts; a third session
asks about them. The window shows only the current session, so the facts reach the model through
its δ-mem memory alone. Each reply of the first sessions is shown beside the frozen backbone's
reply to the same prompt (the memory must not speak over the model). For each question the demo
prints the generated answer and the candidate answers ranked by the model reading the memory and
reading an empty memory (the frozen backbone).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from langchain_core.messages import HumanMessage
from langgraph.graph.state import CompiledStateGraph

from agentmem.model.adapters import shipped_adapter
from graphs.builders import build_memory_agent
from graphs.checkpointers import sqlite_checkpointer
from graphs.context import MemoryContext
from graphs.ranking import Ranking, frozen_reply, rank_last_turn

__all__ = ["QUESTIONS", "SESSIONS", "Question", "run_demo"]


@dataclass(frozen=True)
class Question:
    """A question of the last session, its candidate answers and the right one (the first)."""

    text: str
    candidates: tuple[str, ...]

    @property
    def answer(self) -> str:
        return self.candidates[0]


SESSIONS: list[tuple[str, list[str]]] = [
    ("session-1", ["Hi! My name is Ada. My sister Lin lives in Porto.",
                   "Last spring I adopted a dog. His name is Biscuit.",
                   "My favourite colour is green, like the sea in Porto."]),
    ("session-2", ["Big news: I started a new job as a glassblower in Lyon.",
                   "On weekends I play the cello in a small orchestra.",
                   "My dentist appointment is on Thursday."]),
]
QUESTIONS = [  # whole-sentence answers: the small backbone scores them far more sensibly than one word
    Question("Where does my sister live?", tuple(f"She lives in {c}." for c in
                                                 ("Porto", "Lyon", "Madrid", "Oslo"))),
    Question("What is my dog called?", tuple(f"Your dog is called {n}." for n in
                                             ("Biscuit", "Rex", "Max", "Luna"))),
    Question("What is my job?", tuple(f"You are a {j}." for j in ("glassblower", "baker", "nurse",
                                                                   "pilot"))),
    Question("Which instrument do I play?", tuple(f"You play the {i}." for i in
                                                  ("cello", "piano", "guitar", "drums"))),
]
LAST_SESSION = "session-3"


def run_demo(database: Path, *, backbone: str, adapter: str | None, window: int = 4,
             max_new_tokens: int = 24, out: Callable[[str], None] = print) -> dict[str, int]:
    """Play the sessions into ``database`` (SQLite) and print the questions' rankings.

    Returns:
        Questions whose right answer ranked first with memory and without (``with_memory``,
        ``without_memory``), how many were asked (``questions``), and the words of the first
        sessions' replies reading the memory and from the frozen backbone on the same prompts
        (``reply_words``, ``frozen_reply_words``).
    """
    folder = adapter or shipped_adapter(backbone)
    out(f"backbone {backbone}; adapter " + (str(folder) if folder else
        "none ships for this backbone yet: a freshly initialised (untrained) one, so the memory "
        "ranking below is not expected to beat chance"))
    ctx = MemoryContext.open(str(database), backbone=backbone, adapter=adapter, window=window,
                             max_new_tokens=max_new_tokens, scope="agent", agent_id="demo")
    ctx.repository.setup()  # before the checkpointer: a new file gets the store's settings
    saver = sqlite_checkpointer(database)
    try:
        graph = build_memory_agent(saver, context=ctx)
        ctx.repository.delete_agent("demo")  # a rerun starts clean
        for thread in [s for s, _ in SESSIONS] + [LAST_SESSION]:
            saver.delete_thread(thread)
        out(f"database {database} (memory checkpoints and LangGraph threads)\n")
        words = {"with_memory": 0, "frozen": 0}
        for thread, turns in SESSIONS:
            for k, v in _play_session(graph, ctx, thread, turns, max_new_tokens, out).items():
                words[k] += v
        out(f"replies of sessions 1-2: {words['with_memory']} words reading the memory, "
            f"{words['frozen']} from the frozen backbone on the same prompts\n")
        return {**_ask(graph, ctx, out), "reply_words": words["with_memory"],
                "frozen_reply_words": words["frozen"]}
    finally:
        saver.conn.close()
        ctx.repository.close()


def _config(thread: str) -> dict:
    return {"configurable": {"thread_id": thread}}


def _play_session(graph: CompiledStateGraph, ctx: MemoryContext, thread: str, turns: list[str],
                  max_new_tokens: int, out: Callable[[str], None]) -> dict[str, int]:
    """Play one session; each reply is shown beside the frozen backbone's reply to the same
    prompt (a memory must not speak over the model). Returns the replies' word counts."""
    out(f"== {thread} ==")
    words = {"with_memory": 0, "frozen": 0}
    for text in turns:
        result = graph.invoke({"messages": [HumanMessage(text)]}, _config(thread))
        ref = result["memory"]["demo"]
        reply, frozen = result["messages"][-1].text, frozen_reply(ctx, result, max_new_tokens)
        words["with_memory"] += len(reply.split())
        words["frozen"] += len(frozen.split())
        out(f"user: {text}\n  demo: {_short(reply)}\n  frozen backbone: {_short(frozen)}\n"
            f"  [memory read {(ref['read'] or 'empty')[:12]} · wrote {ref['written'][:12]} · "
            f"{ref['tokens']} tokens written]")
    out("")
    return words


def _ask(graph: CompiledStateGraph, ctx: MemoryContext, out: Callable[[str], None]) -> dict[str, int]:
    out(f"== {LAST_SESSION}: questions (the window shows only this session) ==")
    score = {"with_memory": 0, "without_memory": 0, "questions": len(QUESTIONS)}
    for q in QUESTIONS:
        result = graph.invoke({"messages": [HumanMessage(q.text)]}, _config(LAST_SESSION))
        ranking = rank_last_turn(ctx, result, q.candidates)
        out(f"user: {q.text}\n  answer: {_short(result['messages'][-1].text)}")
        out(_ranking_lines(ranking, q.answer))
        score["with_memory"] += ranking.best_with_memory == q.answer
        score["without_memory"] += ranking.best_without_memory == q.answer
    out(f"right answer ranked first: with memory {score['with_memory']}/{len(QUESTIONS)}, "
        f"without memory {score['without_memory']}/{len(QUESTIONS)} "
        f"(chance {len(QUESTIONS) / len(QUESTIONS[0].candidates):.0f}/{len(QUESTIONS)})")
    return score


def _ranking_lines(ranking: Ranking, answer: str) -> str:
    def show(ranked: list[tuple[str, float]]) -> str:
        return "  ".join(f"{i + 1}. {c}{' ✓' if c == answer else ''} ({s:.2f})"
                         for i, (c, s) in enumerate(ranked))

    return f"  with memory:    {show(ranking.with_memory)}\n  without memory: {show(ranking.without_memory)}"


def _short(text: str, limit: int = 100) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
