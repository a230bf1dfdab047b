"""Which store thread a turn writes to, so that memory follows LangGraph's time travel.

The store only appends to a thread's head (a write names the head as its parent). A branch of the
conversation that stands on the head simply continues it. A branch that stands on an older
checkpoint — LangGraph replayed or forked from an earlier checkpoint, or ``update_state`` edited
the past — gets a new store thread ``<thread_id>~<12 hex>`` forked from exactly that checkpoint:
rewinding is forking, and no memory checkpoint is ever rewritten.

A fork carries the chat model's record of which messages the source thread already wrote (kept
in the checkpoint metadata), so the messages both branches share are not written twice.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from agentmem import fork_metadata
from graphs.errors import MemoryBranchError
from graphs.state import MemoryRef, ref_base
from store import CheckpointInfo, CheckpointNotFound, MemoryRepository

__all__ = ["Branch", "branch_name", "is_branch_of", "memory_lineage", "resolve_branch"]

_SUFFIX = re.compile(r"~[0-9a-f]{12}")


@dataclass(frozen=True)
class Branch:
    """Where a turn continues: the store thread and its head (None: an empty memory)."""

    thread: str
    head: str | None
    tokens: int = 0


def branch_name(thread_id: str) -> str:
    """A new store thread name for a branch of LangGraph thread ``thread_id``."""
    return f"{thread_id}~{uuid.uuid4().hex[:12]}"


def is_branch_of(store_thread: str, thread_id: str) -> bool:
    """Whether ``store_thread`` holds memory of LangGraph thread ``thread_id`` (itself or a branch)."""
    if store_thread == thread_id:
        return True
    root, tail = store_thread[: len(thread_id)], store_thread[len(thread_id):]
    return root == thread_id and _SUFFIX.fullmatch(tail) is not None


def resolve_branch(repo: MemoryRepository, agent_id: str, thread_id: str, ref: MemoryRef | None,
                   scope: str) -> Branch:
    """The store thread and head a turn of ``agent_id`` on LangGraph thread ``thread_id`` uses.

    Args:
        repo: the memory store.
        agent_id: the agent taking the turn.
        thread_id: the LangGraph thread.
        ref: where this branch's memory stands (None: the agent has not spoken on it yet).
        scope: "agent" seeds a new conversation from the agent's latest memory.

    Raises:
        MemoryBranchError: ``ref`` names a checkpoint that was pruned or deleted.
    """
    if ref is None:
        return _new_conversation(repo, agent_id, thread_id, scope)
    base = ref_base(ref)
    head = repo.history(agent_id, ref["thread"], limit=1)
    if (head[0].checkpoint_id if head else None) == base:
        return Branch(ref["thread"], base, head[0].tokens_written if head else 0)
    if base is None:  # rewound to before this agent's first write on the thread
        return Branch(branch_name(thread_id), None)
    try:
        source = repo.get(agent_id, ref["thread"], base)
    except CheckpointNotFound as e:
        raise MemoryBranchError(f"memory checkpoint {base} of agent {agent_id!r} (store thread "
                                f"{ref['thread']!r}) no longer exists: it was pruned or deleted, "
                                "so this point of the conversation cannot be continued") from e
    name = branch_name(thread_id)
    fork = repo.fork(agent_id, ref["thread"], base, name,
                     metadata=fork_metadata(source.metadata, ref["thread"], name))
    return Branch(fork.thread_id, fork.checkpoint_id, fork.tokens_written)


def _new_conversation(repo: MemoryRepository, agent_id: str, thread_id: str, scope: str) -> Branch:
    # A store thread of this name with rows, but no ref in the graph state, means the graph
    # stands before them (rewound to the thread's start, or its graph state was deleted).
    thread = thread_id if not repo.history(agent_id, thread_id, limit=1) else branch_name(thread_id)
    seed = repo.latest_for_agent(agent_id) if scope == "agent" else None
    if seed is None:
        return Branch(thread, None)
    fork = repo.fork(agent_id, seed.thread_id, seed.checkpoint_id, thread, metadata={})
    return Branch(thread, fork.checkpoint_id, fork.tokens_written)


def memory_lineage(repo: MemoryRepository, agent_id: str, checkpoint_id: str | None
                   ) -> list[CheckpointInfo]:
    """The chain from ``checkpoint_id`` back to the first checkpoint, across forks, newest first.

    A fork adds one checkpoint that copies its source (same state, parent = the source).
    """
    if checkpoint_id is None:
        return []
    rows = {i.checkpoint_id: i for t in repo.list_threads(agent_id)
            for i in repo.history(agent_id, t.thread_id)}
    chain, cid = [], checkpoint_id
    while cid is not None and cid in rows:
        chain.append(rows[cid])
        cid = rows[cid].parent_checkpoint_id
    return chain


def __getattr__(name: str) -> Any:
    if name == "carry_log":  # 0.1's name
        from agentmem._deprecated import renamed

        return renamed("graphs.branches", name, "agentmem.fork_metadata", fork_metadata)
    raise AttributeError(f"module 'graphs.branches' has no attribute {name!r}")
