"""Thread operations that touch the graph and the memory store together: fork and forget.

LangGraph forks and rewinds a thread by itself (``invoke`` from a past checkpoint config,
``update_state``); the memory follows on the next turn (see ``graphs.branches``). These helpers
do what LangGraph cannot do alone: copy a conversation into a new thread id with its memory, and
delete a conversation's memory and graph state together (the right to be forgotten).
"""

from __future__ import annotations

import asyncio
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.graph.state import CompiledStateGraph

from agentmem import fork_metadata
from graphs.branches import is_branch_of
from graphs.context import MemoryContext
from graphs.state import MemoryRef, ref_base
from store import MemoryRepository

__all__ = ["afork_thread", "aforget_thread", "fork_thread", "forget_thread", "memory_of"]


def _config(thread_id: str) -> RunnableConfig:
    return {"configurable": {"thread_id": thread_id}}


def memory_of(values: dict[str, Any], agent_id: str | None = None) -> MemoryRef | None:
    """The memory ref of ``agent_id`` (default: the state's last agent) in graph state ``values``."""
    agent = agent_id or values.get("agent_id")
    return (values.get("memory") or {}).get(agent) if agent else None


def _forked_refs(repo: MemoryRepository, refs: dict[str, MemoryRef], new_thread_id: str
                 ) -> dict[str, MemoryRef]:
    out: dict[str, MemoryRef] = {}
    for agent, ref in refs.items():
        base = ref_base(ref)
        if base is None:
            out[agent] = {"thread": new_thread_id, "read": None, "written": None, "tokens": 0}
            continue
        source = repo.get(agent, ref["thread"], base)
        info = repo.fork(agent, ref["thread"], base, new_thread_id,
                         metadata=fork_metadata(source.metadata, ref["thread"], new_thread_id))
        out[agent] = {"thread": new_thread_id, "read": info.checkpoint_id, "written": None,
                      "tokens": info.tokens_written}
    return out


def fork_thread(graph: CompiledStateGraph, context: MemoryContext | MemoryRepository,
                config: RunnableConfig, new_thread_id: str, *,
                as_node: str = "respond") -> RunnableConfig:
    """Copy the conversation at ``config`` (a thread's latest, or any checkpoint config of it)
    into thread ``new_thread_id``, each agent's memory forked from the matching checkpoint.

    Args:
        context: the graph's `MemoryContext`, or the memory repository itself (your own graph:
            ``model.store.repository``).
        as_node: the node the copied state is written as (your graph's node that calls the model).

    Returns:
        The new thread's checkpoint config.

    Raises:
        ValueError: nothing to fork, or ``new_thread_id`` already has a graph state.
        store.ConflictError: ``new_thread_id`` already has memory.
    """
    snap = graph.get_state(config)
    if not snap.values:
        raise ValueError("the thread has no state to fork")
    if graph.get_state(_config(new_thread_id)).values:
        raise ValueError(f"thread {new_thread_id!r} already exists")
    refs = _forked_refs(_repository(context), snap.values.get("memory") or {}, new_thread_id)
    return graph.update_state(_config(new_thread_id), {**snap.values, "memory": refs},
                              as_node=as_node)


async def afork_thread(graph: CompiledStateGraph, context: MemoryContext | MemoryRepository,
                       config: RunnableConfig, new_thread_id: str, *,
                       as_node: str = "respond") -> RunnableConfig:
    """Async :func:`fork_thread` (for graphs compiled with an async checkpointer)."""
    snap = await graph.aget_state(config)
    if not snap.values:
        raise ValueError("the thread has no state to fork")
    if (await graph.aget_state(_config(new_thread_id))).values:
        raise ValueError(f"thread {new_thread_id!r} already exists")
    refs = await asyncio.to_thread(_forked_refs, _repository(context),
                                   snap.values.get("memory") or {}, new_thread_id)
    return await graph.aupdate_state(_config(new_thread_id), {**snap.values, "memory": refs},
                                     as_node=as_node)


def _repository(context: MemoryContext | MemoryRepository) -> MemoryRepository:
    return context if isinstance(context, MemoryRepository) else context.repository


def _delete_memory(repo: MemoryRepository, agents: set[str], thread_id: str) -> int:
    n = 0
    for agent in sorted(agents):
        for t in repo.list_threads(agent):
            if is_branch_of(t.thread_id, thread_id):
                n += repo.delete_thread(agent, t.thread_id)
    return n


def forget_thread(graph: CompiledStateGraph, context: MemoryContext, thread_id: str) -> int:
    """Delete a conversation: every agent's memory of it (all its branches) and its graph state.

    Returns:
        How many memory checkpoints were deleted.
    """
    values = graph.get_state(_config(thread_id)).values if graph.checkpointer else {}
    agents = set(context.agent_ids) | set((values or {}).get("memory") or {})
    n = _delete_memory(context.repository, agents, thread_id)
    if graph.checkpointer:
        graph.checkpointer.delete_thread(thread_id)
    return n


async def aforget_thread(graph: CompiledStateGraph, context: MemoryContext, thread_id: str) -> int:
    """Async :func:`forget_thread`."""
    values = (await graph.aget_state(_config(thread_id))).values if graph.checkpointer else {}
    agents = set(context.agent_ids) | set((values or {}).get("memory") or {})
    n = await asyncio.to_thread(_delete_memory, context.repository, agents, thread_id)
    if graph.checkpointer:
        await graph.checkpointer.adelete_thread(thread_id)
    return n
