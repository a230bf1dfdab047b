"""δ-mem memory in your own LangGraph graph: it follows replays, forks and restarts.

Calling ``DeltaMemChatModel`` plainly in a node keys its memory by the thread id only, so the
memory knows nothing of LangGraph's checkpoints: invoking from an earlier checkpoint
(``get_state_history``, ``update_state``) answers from the thread's *latest* memory, and a model
whose store is in-process loses its memory on restart while the checkpointer keeps the
conversation (the next turn then writes the whole resent history into a fresh memory).

Here the graph state records, per agent, the memory checkpoint each turn wrote (a
:class:`graphs.state.MemoryRef`: ids, never tensors), and each turn continues from the one recorded
at the point the graph stands on — forking a branch store thread ``<thread_id>~<12 hex>`` when
that is not the thread's head, exactly as the prebuilt graphs do (``graphs.branches``)::

    from graphs import MemoryMessagesState, invoke_with_memory, open_chat_memory

    def chat(state: MemoryMessagesState, config):
        return invoke_with_memory(model, state["messages"], state, config)

    with open_chat_memory("chat.sqlite3", window=4) as (model, saver):   # one SQLite file
        graph = (StateGraph(MemoryMessagesState).add_node(chat).add_edge(START, "chat")
                 .compile(checkpointer=saver))
        graph.invoke({"messages": [("user", "hi")]}, {"configurable": {"thread_id": "t1"}})

Following every checkpoint needs the store's checkpoint chain (``store.RepositoryMemoryStore``).
A model on the in-process store still works with ``InMemorySaver`` (or no checkpointer) as long as
the conversation only moves forward; time travel then raises :class:`MemoryBranchError`, and a
persistent checkpointer is refused up front (:class:`MemoryStoreMismatchError`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NamedTuple

from langchain_core.language_models import LanguageModelInput
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.runnables import Runnable, RunnableBinding, RunnableConfig
from langchain_core.runnables.config import ensure_config, run_in_executor
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.memory import InMemorySaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import MessagesState
from sqlalchemy.engine import make_url

from agentmem.chat.chat_model import DeltaMemChatModel
from agentmem.chat.memory_store import InProcessMemoryStore, MemoryKey, MemoryStore
from graphs.branches import Branch, branch_name, is_branch_of, resolve_branch
from graphs.checkpointers import (
    async_postgres_checkpointer,
    async_sqlite_checkpointer,
    default_checkpoint_path,
    postgres_checkpointer,
    sqlite_checkpointer,
)
from graphs.errors import MemoryBranchError, MemoryStoreMismatchError, MissingMemoryStateError
from graphs.state import MemoryRef, merge_memory, ref_base
from store import MemoryRepository
from store.chat_store import RepositoryMemoryStore

try:  # public (kept for compatibility) in langgraph 1.x; the value has not changed since 0.2
    from langgraph.constants import CONFIG_KEY_CHECKPOINTER
except ImportError:  # pragma: no cover
    CONFIG_KEY_CHECKPOINTER = "__pregel_checkpointer"

__all__ = ["ChatMemory", "MemoryMessagesState", "MemoryStoreMismatchError",
           "MissingMemoryStateError", "ainvoke_with_memory", "aopen_chat_memory",
           "invoke_with_memory", "open_chat_memory"]

DEFAULT_AGENT = "default"  # the chat model's agent when the config names none


class MemoryMessagesState(MessagesState):
    """``MessagesState`` plus where each agent's memory stands (use it, or add the same field).

    Attributes:
        messages: the conversation (``add_messages``).
        memory: per agent id, the memory checkpoint the last turn read and wrote
            (:class:`graphs.state.MemoryRef`); the ``merge_memory`` reducer replaces one agent's
            entry at a time.
    """

    memory: Annotated[dict[str, MemoryRef], merge_memory]


class ChatMemory(NamedTuple):
    """A chat model and a checkpointer that keep memory and conversation in one database."""

    model: DeltaMemChatModel
    checkpointer: BaseCheckpointSaver


# ----- the turn -------------------------------------------------------------------------------

def invoke_with_memory(model: Runnable[LanguageModelInput, BaseMessage],
                       messages: LanguageModelInput, state: Any,
                       config: RunnableConfig | None = None, *, agent_id: str | None = None,
                       **kwargs: Any) -> dict[str, Any]:
    """Call the δ-mem chat model in a node so that its memory follows the graph's checkpoints.

    The memory continues from the checkpoint ``state["memory"][agent]`` names (forked into a
    branch store thread when the graph was rewound or forked to an earlier point); the model then
    answers ``messages`` while reading it, writes what it has not written yet, and saves.

    Call it once per node run and return its update: a second call on the same ``state`` would
    take the first call's save for a rewind and fork (merge the first update's ``memory`` into the
    state you pass it), and so does a node that re-runs after an ``interrupt()`` placed behind it.

    Args:
        model: a ``DeltaMemChatModel`` (or a binding of one, e.g. ``model.bind_tools(...)``).
        messages: the prompt, as for ``model.invoke`` (usually ``state["messages"]``; the model's
            ``window`` trims it, or pass a window yourself).
        state: the node's state; it must have the ``memory`` field of
            :class:`MemoryMessagesState`.
        config: the node's config (None: LangGraph's current one). Its ``thread_id`` names the
            conversation; without one the model answers from an empty memory and saves nothing.
        agent_id: whose memory (default: ``configurable.agent_id``, else "default").
        **kwargs: passed to ``model.invoke`` (``stop=...``).

    Returns:
        The node's update: ``{"messages": [reply], "memory": {agent: ref}}`` (no ``memory`` entry
        without a thread id). A turn that could not be saved records the checkpoint it read.

    Raises:
        MemoryStoreMismatchError: the model's store is in-process but the checkpointer persists.
        MissingMemoryStateError: the graph state has no ``memory`` field.
        MemoryBranchError: the checkpoint to continue from is gone (pruned, deleted, or never kept:
            the in-process store holds only each thread's latest memory).
    """
    turn = _prepare(model, state, _node_config(config), agent_id)
    return turn.update(model.invoke(messages, turn.config, **kwargs))


async def ainvoke_with_memory(model: Runnable[LanguageModelInput, BaseMessage],
                              messages: LanguageModelInput, state: Any,
                              config: RunnableConfig | None = None, *, agent_id: str | None = None,
                              **kwargs: Any) -> dict[str, Any]:
    """Async :func:`invoke_with_memory` (the store is consulted in an executor thread)."""
    config = _node_config(config)
    turn = await run_in_executor(config, _prepare, model, state, config, agent_id)
    return turn.update(await model.ainvoke(messages, turn.config, **kwargs))


@dataclass(frozen=True)
class _Turn:
    config: RunnableConfig
    agent: str | None = None  # None: no thread id, no memory
    branch: Branch | None = None

    def update(self, reply: BaseMessage) -> dict[str, Any]:
        memory = reply.response_metadata.get("memory") if isinstance(reply, AIMessage) else None
        if self.agent is None or self.branch is None or not memory:
            return {"messages": [reply]}
        ref: MemoryRef = {"thread": self.branch.thread, "read": memory["parent_checkpoint_id"],
                          "written": memory["checkpoint_id"],
                          "tokens": int(memory["tokens_written"])}
        return {"messages": [reply], "memory": {self.agent: ref}}


def _node_config(config: RunnableConfig | None) -> RunnableConfig:
    if config is not None:
        return ensure_config(config)
    from langgraph.config import get_config

    try:
        return get_config()
    except RuntimeError as e:
        raise TypeError("invoke_with_memory needs the node's config: declare the node as "
                        "`def node(state, config)` and pass it") from e


def _prepare(model: Runnable[LanguageModelInput, BaseMessage], state: Any,
             config: RunnableConfig, agent_id: str | None) -> _Turn:
    chat = _chat_model(model)
    conf = config.get("configurable") or {}
    _check_pairing(chat.store, conf.get(CONFIG_KEY_CHECKPOINTER))
    thread = conf.get("thread_id")
    if thread is None:
        return _Turn(config)
    thread_id = str(thread)
    agent = str(agent_id or conf.get("agent_id") or DEFAULT_AGENT)
    refs = _refs(state)
    if refs is None:
        _require_memory_field(state, agent, thread_id)
    ref = (refs or {}).get(agent)
    if isinstance(chat.store, RepositoryMemoryStore):
        branch = resolve_branch(chat.store.repository, agent, thread_id, ref, chat.memory_scope)
    else:
        branch = _head_only_branch(chat.store, agent, thread_id, ref)
    call = {**config, "configurable": {**conf, "thread_id": branch.thread, "agent_id": agent}}
    return _Turn(call, agent, branch)


def _chat_model(model: Runnable[Any, Any]) -> DeltaMemChatModel:
    """The ``DeltaMemChatModel`` under ``model`` (itself, or the model of a ``bind*`` binding)."""
    inner = model
    while isinstance(inner, RunnableBinding):
        inner = inner.bound
    if not isinstance(inner, DeltaMemChatModel):
        raise TypeError(f"expected a DeltaMemChatModel (or a binding of one); got "
                        f"{type(model).__name__}")
    return inner


_MISSING = object()


def _refs(state: Any) -> dict[str, MemoryRef] | None:
    """The state's ``memory`` (None: the state has no such key or attribute)."""
    value = state.get("memory", _MISSING) if isinstance(state, Mapping) else \
        getattr(state, "memory", _MISSING)
    return None if value is _MISSING else dict(value or {})


def _require_memory_field(state: Any, agent: str, thread_id: str) -> None:
    """Raise when the conversation already holds this agent's answers on this thread but the
    state has no memory refs: LangGraph dropped them (the state schema has no ``memory``)."""
    messages = state.get("messages") if isinstance(state, Mapping) else \
        getattr(state, "messages", None)
    for m in messages or ():
        memory = m.response_metadata.get("memory") if isinstance(m, AIMessage) else None
        if memory and memory.get("agent_id") == agent and memory.get("checkpoint_id") and \
                is_branch_of(str(memory.get("thread_id")), thread_id):
            raise MissingMemoryStateError(
                "the graph state has no `memory` field, so LangGraph dropped the memory refs of "
                "earlier turns and this turn cannot tell which memory it continues: build the "
                "graph on graphs.MemoryMessagesState (or add `memory: Annotated[dict[str, "
                "MemoryRef], merge_memory]` to your state)")


def _head_only_branch(store: MemoryStore, agent: str, thread_id: str,
                      ref: MemoryRef | None) -> Branch:
    """``resolve_branch`` for a store that keeps only each thread's latest memory: the graph may
    continue a thread's head or start empty, but not go back to an earlier checkpoint."""
    if ref is None:
        taken = store.load(MemoryKey(agent, thread_id)) is not None
        return Branch(branch_name(thread_id) if taken else thread_id, None)
    base = ref_base(ref)
    head = store.load(MemoryKey(agent, ref["thread"]))
    if (head.checkpoint_id if head else None) == base:
        return Branch(ref["thread"], base, int(head.state.tokens_written[0]) if head else 0)
    if base is None:
        return Branch(branch_name(thread_id), None)
    raise MemoryBranchError(
        f"the graph stands on memory checkpoint {base} of agent {agent!r} (thread "
        f"{ref['thread']!r}), but {type(store).__name__} keeps only each thread's latest memory, "
        "so replaying or forking an earlier point of the conversation cannot continue from it: "
        "give the model a store that keeps the checkpoint chain, e.g. DeltaMemChatModel("
        "store=RepositoryMemoryStore('chat.sqlite3')) (graphs.open_chat_memory builds one)")


# ----- the store / checkpointer pairing -------------------------------------------------------

def _check_pairing(store: MemoryStore, checkpointer: Any) -> None:
    """Refuse an in-process memory store under a checkpointer that outlives the process.

    Raises:
        MemoryStoreMismatchError: ``store`` is an ``InProcessMemoryStore`` and ``checkpointer``
            persists (anything but None, ``InMemorySaver`` and an in-memory ``SqliteSaver``).
    """
    if not isinstance(store, InProcessMemoryStore) or not _persists(checkpointer):
        return
    raise MemoryStoreMismatchError(
        f"the chat model keeps its memory in an InProcessMemoryStore, lost when the process ends, "
        f"but the graph's checkpointer ({type(checkpointer).__name__}) keeps the conversation: "
        "after a restart the graph would resume with the memory gone and write the whole resent "
        "history into a fresh memory. Keep the memory beside the checkpoints: DeltaMemChatModel("
        "store=RepositoryMemoryStore('chat.sqlite3')) — graphs.open_chat_memory('chat.sqlite3') "
        "builds the model and a SqliteSaver on one file — or compile the graph with InMemorySaver()")


def _persists(checkpointer: Any) -> bool:
    if checkpointer is None or isinstance(checkpointer, InMemorySaver):
        return False
    if isinstance(checkpointer, SqliteSaver) and isinstance(checkpointer.conn, sqlite3.Connection):
        try:
            with checkpointer.lock:
                files = checkpointer.conn.execute("PRAGMA database_list").fetchall()
        except sqlite3.Error:
            return True
        return any(row[1] == "main" and row[2] for row in files)  # "": an in-memory database
    return True


# ----- building a persistent pair -------------------------------------------------------------

def _open_repository(database: str | Path | MemoryRepository | None) -> MemoryRepository:
    if isinstance(database, MemoryRepository):
        return database
    return MemoryRepository(None if database is None else str(database))


def _checkpoints_at(database: object, repo: MemoryRepository) -> str | Path:
    """Where the checkpoints go: the store's own database, or (default store on PostgreSQL) the
    default checkpoint file."""
    if database is None:
        return default_checkpoint_path()
    return repo.engine.url.render_as_string(hide_password=False)


def _is_postgres(target: str | Path) -> bool:
    text = str(target)
    return "://" in text and make_url(text).get_backend_name() == "postgresql"


@contextmanager
def open_chat_memory(database: str | Path | MemoryRepository | None = None,
                     **model_kwargs: Any) -> Iterator[ChatMemory]:
    """A ``DeltaMemChatModel`` and a checkpointer that keep memory and graph states in one database.

    ``with open_chat_memory("chat.sqlite3", window=4) as (model, saver): ...`` — the SQLite file
    (or PostgreSQL database) then holds both, so a conversation and its memory survive restarts
    together. Both are closed on exit (a repository passed in is left open).

    Args:
        database: an SQLite path or URL, a PostgreSQL URL, a ``MemoryRepository``, or None: the
            store's default database (checkpoints: ``graphs.checkpointers.default_checkpoint_path``).
        **model_kwargs: ``DeltaMemChatModel`` fields (``backbone``, ``window``, ``max_tokens``, …).
    """
    repo = _open_repository(database)
    try:
        repo.setup()
        model = DeltaMemChatModel(store=RepositoryMemoryStore(repo), **model_kwargs)
        target = _checkpoints_at(database, repo)
        if _is_postgres(target):
            with postgres_checkpointer(str(target)) as saver:
                yield ChatMemory(model, saver)
        else:
            saver = sqlite_checkpointer(target)
            try:
                yield ChatMemory(model, saver)
            finally:
                saver.conn.close()
    finally:
        if repo is not database:
            repo.close()


@asynccontextmanager
async def aopen_chat_memory(database: str | Path | MemoryRepository | None = None,
                            **model_kwargs: Any) -> AsyncIterator[ChatMemory]:
    """:func:`open_chat_memory` with an async checkpointer (``AsyncSqliteSaver`` /
    ``AsyncPostgresSaver``, for ``ainvoke``/``astream``); enter it inside the event loop."""
    repo = _open_repository(database)
    try:
        await run_in_executor(None, repo.setup)
        model = DeltaMemChatModel(store=RepositoryMemoryStore(repo), **model_kwargs)
        target = _checkpoints_at(database, repo)
        opener = async_postgres_checkpointer if _is_postgres(target) else async_sqlite_checkpointer
        async with opener(str(target)) as saver:
            yield ChatMemory(model, saver)
    finally:
        if repo is not database:
            repo.close()
