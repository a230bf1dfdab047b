"""Graph builders: one memory agent, or a router over specialist agents with separate memories.

The caller picks the LangGraph checkpointer: ``None`` opens the default SQLite file (next to the
memory store's), ``False`` compiles without one (a LangGraph server brings its own), or pass any
saver (``SqliteSaver``, ``PostgresSaver`` for scale-out, their async twins for ``ainvoke``)::

    ctx = MemoryContext.open("memory.sqlite3", window=4)
    graph = build_memory_agent(sqlite_checkpointer("memory.sqlite3"), context=ctx)
    graph.invoke({"messages": [("user", "Hi, I'm Ada.")]}, {"configurable": {"thread_id": "t1"}})
"""

from __future__ import annotations

from functools import partial
from typing import Any, Literal

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphs import nodes
from graphs.checkpointers import default_checkpointer
from graphs.context import MemoryContext
from graphs.state import AgentState

__all__ = ["build_memory_agent", "build_router_agent"]

Checkpointer = BaseCheckpointSaver | Literal[False] | None


def build_memory_agent(checkpointer: Checkpointer = None, *, context: MemoryContext | None = None,
                       name: str = "memory_agent") -> CompiledStateGraph:
    """One agent whose memory is a chain of δ-mem checkpoints per thread.

    ``START → check_turn → recall → respond → END`` (a refused turn goes to ``reject``, which
    raises :class:`graphs.errors.TurnRejectedError`).

    Args:
        checkpointer: see the module docstring.
        context: used when a run passes no ``context=`` (a run's own context always wins).
        name: the compiled graph's name.
    """
    graph = _graph(context)
    graph.add_edge(START, "check_turn")
    graph.add_conditional_edges("check_turn", nodes.after_check, {"reject": "reject", "next": "recall"})
    return _compile(graph, checkpointer, name)


def build_router_agent(checkpointer: Checkpointer = None, *, context: MemoryContext | None = None,
                       name: str = "router_agent") -> CompiledStateGraph:
    """A router that sends each user turn to one of ``MemoryContext.specialists``.

    Each specialist keeps its own memory (store rows keyed by its agent id) and sees only the turns
    it answered. ``START → check_turn → route → recall → respond → END``.

    Args:
        checkpointer: see the module docstring.
        context: used when a run passes no ``context=``; must list two or more specialists.
        name: the compiled graph's name.
    """
    if context is not None and len(context.specialists) < 2:
        raise ValueError("build_router_agent needs a context with two or more specialists")
    graph = _graph(context)
    graph.add_node("route", partial(nodes.route, default=context))
    graph.add_edge(START, "check_turn")
    graph.add_conditional_edges("check_turn", nodes.after_check, {"reject": "reject", "next": "route"})
    graph.add_edge("route", "recall")
    return _compile(graph, checkpointer, name)


def _graph(context: MemoryContext | None) -> StateGraph:
    """The nodes both graphs share, with ``context`` bound as their default."""
    graph = StateGraph(AgentState, context_schema=MemoryContext)
    for node in (nodes.check_turn, nodes.recall, nodes.respond):
        graph.add_node(node.__name__, partial(node, default=context))
    graph.add_node("reject", nodes.reject)
    graph.add_edge("recall", "respond")
    graph.add_conditional_edges("respond", nodes.after_respond, {"reject": "reject", "done": END})
    return graph


def _compile(graph: StateGraph, checkpointer: Checkpointer, name: str) -> CompiledStateGraph:
    saver: Any = default_checkpointer() if checkpointer is None else checkpointer
    return graph.compile(checkpointer=None if saver is False else saver, name=name)
