"""The graph ``langgraph.json`` serves (``langgraph dev`` or a LangGraph server): one memory agent.

The server brings its own checkpointer; the memory store and model come from the environment:
``AGENTMEM_STORE_URL`` (SQLite path or URL, PostgreSQL for several workers; default: the store's
file), ``AGENTMEM_BACKBONE``, ``AGENTMEM_ADAPTER``, ``AGENTMEM_WINDOW``, ``AGENTMEM_MAX_NEW_TOKENS``.
Importing this module is cheap: the backbone loads on the first turn, the database on first use.
"""

from __future__ import annotations

import os

from langgraph.graph.state import CompiledStateGraph

from agentmem.model.backbones import DEFAULT_BACKBONE
from graphs.builders import build_memory_agent
from graphs.context import MemoryContext

__all__ = ["graph", "make_graph"]


def make_graph() -> CompiledStateGraph:
    """The served graph, with its default context built from the environment."""
    env = os.environ
    context = MemoryContext.open(env.get("AGENTMEM_STORE_URL") or None,
                                 backbone=env.get("AGENTMEM_BACKBONE") or DEFAULT_BACKBONE,
                                 adapter=env.get("AGENTMEM_ADAPTER") or None,
                                 max_new_tokens=int(env.get("AGENTMEM_MAX_NEW_TOKENS") or 64),
                                 window=int(env.get("AGENTMEM_WINDOW") or 4))
    return build_memory_agent(False, context=context, name="memory_agent")


graph = make_graph()
