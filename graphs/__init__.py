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

__all__ = [
    "AgentState", "ChatMemory", "MemoryBranchError", "MemoryContext", "MemoryMessagesState",
    "MemoryRef", "MemoryStoreMismatchError", "MissingContextError", "MissingMemoryStateError",
    "Router", "Specialist", "TurnRejectedError", "afork_thread", "aforget_thread",
    "ainvoke_with_memory", "aopen_chat_memory", "async_postgres_checkpointer",
    "async_sqlite_checkpointer", "build_memory_agent", "build_router_agent", "default_checkpointer",
    "fork_thread", "forget_thread", "invoke_with_memory", "memory_lineage", "memory_of",
    "open_chat_memory", "postgres_checkpointer", "route_by_mention", "sqlite_checkpointer",
]
