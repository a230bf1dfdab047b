"""The graph ``langgraph.json`` serves (``langgraph dev`` or a LangGraph server): one memory agent.

The server brings its own checkpointer; the memory store and model come from the environment:
``AGENTMEM_STORE_URL`` (SQLite path or URL, PostgreSQL for several workers; default: the store's
file), ``AGENTMEM_BACKBONE``, ``AGENTMEM_ADAPTER``, ``AGENTMEM_WINDOW``, ``AGENTMEM_MAX_NEW_TOKENS``.
Importing this module is cheap: the backbone loads on the first turn, the database on first use.

A LangGraph server passes every run's context as a JSON dict (``{}`` when the run and assistant
give none), which LangGraph turns into the graph's ``context_schema``; the served schema is
:class:`MemoryContext` with every field defaulting to the served context, so a run's context
only overrides settings (``{"window": 2}``) and the model always comes from the environment.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from functools import partial

from langgraph.graph.state import CompiledStateGraph

from agentmem.model.backbones import DEFAULT_BACKBONE
from graphs.builders import build_memory_agent
from graphs.context import MemoryContext

__all__ = ["graph", "make_graph", "served_context_schema"]


def served_context_schema(default: MemoryContext) -> type[MemoryContext]:
    """A :class:`MemoryContext` subclass whose fields all default to ``default``'s values."""
    hints = typing.get_type_hints(MemoryContext, include_extras=True)
    fields = []
    for f in dataclasses.fields(MemoryContext):
        value = getattr(default, f.name)
        spec = (dataclasses.field(default=value) if type(value).__hash__ is not None  # shown in the schema
                else dataclasses.field(default_factory=partial(getattr, default, f.name)))  # the model
        fields.append((f.name, hints[f.name], spec))
    return dataclasses.make_dataclass("ServedMemoryContext", fields, bases=(MemoryContext,), frozen=True)


def make_graph() -> CompiledStateGraph:
    """The served graph, with its default context built from the environment."""
    env = os.environ
    context = MemoryContext.open(env.get("AGENTMEM_STORE_URL") or None,
                                 backbone=env.get("AGENTMEM_BACKBONE") or DEFAULT_BACKBONE,
                                 adapter=env.get("AGENTMEM_ADAPTER") or None,
                                 max_new_tokens=int(env.get("AGENTMEM_MAX_NEW_TOKENS") or 64),
                                 window=int(env.get("AGENTMEM_WINDOW") or 4))
    compiled = build_memory_agent(False, context=context, name="memory_agent")
    return compiled.copy({"context_schema": served_context_schema(context)})


graph = make_graph()
