"""Typed errors of the LangGraph layer (all derive from :class:`agentmem.errors.AgentMemError`)."""

from __future__ import annotations

from agentmem.errors import AgentMemError

__all__ = ["MemoryBranchError", "MemoryStoreMismatchError", "MissingContextError",
           "MissingMemoryStateError", "TurnRejectedError"]


class TurnRejectedError(AgentMemError, ValueError):
    """A user turn the graph will not take (empty, oversized, or not a user message).

    The rejected message is removed from the thread before this is raised, so the thread stays as
    it was and the next turn proceeds normally.
    """


class MissingContextError(AgentMemError, TypeError):
    """A graph was invoked without ``context=MemoryContext(...)`` (and no default was built in)."""


class MemoryBranchError(AgentMemError, LookupError):
    """The memory checkpoint a graph state points at no longer exists (pruned or deleted)."""


class MemoryStoreMismatchError(AgentMemError, TypeError):
    """The chat model's memory is lost when the process ends but the graph's checkpoints are not.

    After a restart the graph would resume the conversation with the memory gone, and the next
    turn would write the whole resent history into a fresh memory.
    """


class MissingMemoryStateError(AgentMemError, TypeError):
    """The graph state has no ``memory`` field, so LangGraph silently drops the memory refs and
    every turn would start a new memory branch."""
