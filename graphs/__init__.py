"""graphs: LangGraph agents whose memory lives in δ-mem states (docs/design.md#architecture,
docs/design.md#state-checkpoints-and-scopes).

The graph state carries messages, the agent of the turn and, per agent, the memory checkpoint
ids a turn read and wrote — never tensors. The states live in the ``store`` package; the nodes
reach the chat model and the store through LangGraph's runtime context::

    from graphs import MemoryContext, build_memory_agent, sqlite_checkpointer

    ctx = MemoryContext.open("chat.sqlite3", window=4)          # δ-mem chat model + SQL store
    graph = build_memory_agent(sqlite_checkpointer("chat.sqlite3"), context=ctx)
    out = graph.invoke({"messages": [("user", "My sister Lin lives in Porto.")]},
                       {"configurable": {"thread_id": "t1"}})
    out["memory"]["assistant"]   # {'thread': 't1', 'read': None, 'written': '<checkpoint id>', 'tokens': <n>}

Replaying or forking from an earlier LangGraph checkpoint continues from the memory checkpoint
recorded there (the store forks a branch thread); ``fork_thread`` / ``forget_thread`` copy or
delete a conversation together with its memory.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from graphs.branches import memory_lineage
    from graphs.builders import build_memory_agent, build_router_agent
    from graphs.checkpointers import (
        async_postgres_checkpointer,
        async_sqlite_checkpointer,
        default_checkpointer,
        postgres_checkpointer,
        sqlite_checkpointer,
    )
    from graphs.context import MemoryContext, Router, Specialist, route_by_mention
    from graphs.errors import MemoryBranchError, MissingContextError, TurnRejectedError
    from graphs.state import AgentState, MemoryRef
    from graphs.threads import aforget_thread, afork_thread, forget_thread, fork_thread, memory_of
    from graphs.user_graphs import (
        ChatMemory,
        MemoryMessagesState,
        MemoryStoreMismatchError,
        MissingMemoryStateError,
        ainvoke_with_memory,
        aopen_chat_memory,
        invoke_with_memory,
        open_chat_memory,
    )

# name -> module, imported on first use: registering `agentmem chat` loads no LangGraph
_LAZY = {
    "memory_lineage": "graphs.branches",
    "build_memory_agent": "graphs.builders",
    "build_router_agent": "graphs.builders",
    "async_postgres_checkpointer": "graphs.checkpointers",
    "async_sqlite_checkpointer": "graphs.checkpointers",
    "default_checkpointer": "graphs.checkpointers",
    "postgres_checkpointer": "graphs.checkpointers",
    "sqlite_checkpointer": "graphs.checkpointers",
    "MemoryContext": "graphs.context",
    "Router": "graphs.context",
    "Specialist": "graphs.context",
    "route_by_mention": "graphs.context",
    "MemoryBranchError": "graphs.errors",
    "MissingContextError": "graphs.errors",
    "TurnRejectedError": "graphs.errors",
    "AgentState": "graphs.state",
    "MemoryRef": "graphs.state",
    "aforget_thread": "graphs.threads",
    "afork_thread": "graphs.threads",
    "forget_thread": "graphs.threads",
    "fork_thread": "graphs.threads",
    "memory_of": "graphs.threads",
    "ChatMemory": "graphs.user_graphs",
    "MemoryMessagesState": "graphs.user_graphs",
    "MemoryStoreMismatchError": "graphs.user_graphs",
    "MissingMemoryStateError": "graphs.user_graphs",
    "ainvoke_with_memory": "graphs.user_graphs",
    "aopen_chat_memory": "graphs.user_graphs",
    "invoke_with_memory": "graphs.user_graphs",
    "open_chat_memory": "graphs.user_graphs",
}

__all__ = [
    "AgentState", "ChatMemory", "MemoryBranchError", "MemoryContext", "MemoryMessagesState",
    "MemoryRef", "MemoryStoreMismatchError", "MissingContextError", "MissingMemoryStateError",
    "Router", "Specialist", "TurnRejectedError", "afork_thread", "aforget_thread",
    "ainvoke_with_memory", "aopen_chat_memory", "async_postgres_checkpointer",
    "async_sqlite_checkpointer", "build_memory_agent", "build_router_agent", "default_checkpointer",
    "fork_thread", "forget_thread", "invoke_with_memory", "memory_lineage", "memory_of",
    "open_chat_memory", "postgres_checkpointer", "route_by_mention", "sqlite_checkpointer",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'graphs' has no attribute {name!r}")
