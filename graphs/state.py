"""The graph state: messages, the agent of the turn, and per-agent memory checkpoint ids.

The state never holds tensors. Each agent's memory is a chain of immutable checkpoints in the
store (docs/design.md#state-checkpoints-and-scopes); the state only records where along that
chain this branch of the conversation stands, so that every LangGraph checkpoint names the memory
checkpoint it produced and time travel (replaying or forking from an earlier LangGraph checkpoint)
can continue from the matching one.
"""

from __future__ import annotations

from typing import Annotated, TypedDict

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages

__all__ = ["AgentState", "MemoryRef", "merge_memory", "ref_base"]


class MemoryRef(TypedDict):
    """Where one agent's memory stands on this branch of the conversation.

    Attributes:
        thread: the store thread holding the chain (the LangGraph thread id, or a branch of it
            named ``<thread_id>~<12 hex>`` after a rewind or fork).
        read: the memory checkpoint the last turn started from (None: an empty memory).
        written: the checkpoint the last turn wrote (None: the turn has not written yet).
        tokens: tokens written into the state at ``written`` (else at ``read``).
    """

    thread: str
    read: str | None
    written: str | None
    tokens: int


def ref_base(ref: MemoryRef | None) -> str | None:
    """The checkpoint this branch continues from: the last one written, else the one read."""
    if ref is None:
        return None
    return ref["written"] if ref["written"] is not None else ref["read"]


def merge_memory(left: dict[str, MemoryRef] | None,
                 right: dict[str, MemoryRef | None] | None) -> dict[str, MemoryRef]:
    """Reducer of ``AgentState.memory``: per-agent replace; a None value drops that agent."""
    out = dict(left or {})
    for agent, ref in (right or {}).items():
        if ref is None:
            out.pop(agent, None)
        else:
            out[agent] = ref
    return out


class AgentState(TypedDict, total=False):
    """State of the memory-agent graphs.

    Attributes:
        messages: the conversation (LangGraph's ``add_messages`` reducer). Answers carry the
            answering agent's id as ``AIMessage.name``.
        agent_id: the agent that takes the current turn (the router sets it in multi-agent graphs).
        memory: per agent id, where its memory stands (see :class:`MemoryRef`).
        rejected: why the last user turn was refused (None when it was taken).
    """

    messages: Annotated[list[AnyMessage], add_messages]
    agent_id: str
    memory: Annotated[dict[str, MemoryRef], merge_memory]
    rejected: str | None
