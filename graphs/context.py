"""What the graph nodes depend on, passed as LangGraph's runtime context (``context_schema``).

``graph.invoke(input, config, context=MemoryContext(model=...))``: the chat model (whose memory
store is the SQL repository), the window, the memory scope and, for router graphs, the
specialists. Nothing is read from module globals.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from pydantic import ConfigDict
from pydantic.json_schema import SkipJsonSchema

from agentmem.chat.chat_model import DeltaMemChatModel
from agentmem.model.adapters import adapter_config
from agentmem.model.backbones import DEFAULT_BACKBONE
from store import MemoryRepository
from store.chat_store import RepositoryMemoryStore

__all__ = ["MemoryContext", "Router", "Specialist", "route_by_mention"]

Scope = Literal["thread", "agent"]


@dataclass(frozen=True)
class Specialist:
    """One agent of a router graph; its memory is its own (keyed by ``agent_id``).

    Attributes:
        agent_id: the agent's id (store key, ``AIMessage.name`` of its answers, ``@mention``).
        description: what it handles (shown by the REPL).
        system_prompt: shown on its every read pass (never written into memory).
        keywords: words that send a user turn to it when no agent is ``@mentioned``.
    """

    agent_id: str
    description: str = ""
    system_prompt: str | None = None
    keywords: tuple[str, ...] = ()


Router = Callable[[str, Sequence[Specialist]], str]


def route_by_mention(text: str, specialists: Sequence[Specialist]) -> str:
    """The default router: ``@agent_id`` at the start of the turn, else most keywords, else first.

    Args:
        text: the user turn.
        specialists: the candidates, in order of preference for ties.

    Returns:
        The chosen agent id.
    """
    head = text.lstrip()
    for s in specialists:
        if head.startswith(f"@{s.agent_id}") and head[len(s.agent_id) + 1:][:1] in ("", " ", ",", ":"):
            return s.agent_id
    words = [w.strip(".,;:!?'\"()").lower() for w in text.split()]
    hits = [sum(words.count(k.lower()) for k in s.keywords) for s in specialists]
    return specialists[max(range(len(specialists)), key=lambda i: (hits[i], -i))].agent_id


@dataclass(frozen=True)
class MemoryContext:
    """Dependencies and settings of the memory-agent graphs.

    Attributes:
        model: the δ-mem chat model; its ``store`` must be a
            :class:`store.chat_store.RepositoryMemoryStore` and its ``memory_scope`` "thread"
            (the graph decides which store thread each turn uses; see :attr:`scope`).
        window: messages shown before the current user turn (``trim_messages``); 0: memory only.
        window_tokens: also keep the shown messages within about this many tokens (None: no cap).
        scope: "thread": a new conversation starts with an empty memory; "agent": it starts from
            the agent's most recently written memory in any of its threads
            (docs/design.md#state-checkpoints-and-scopes).
        agent_id: the agent of single-agent graphs.
        system_prompt: shown on every read pass of single-agent graphs (never written).
        specialists: the agents of router graphs (at least two).
        router: picks a specialist for each user turn.
        max_turn_chars: longer user turns are rejected before the model sees them.
    """

    __pydantic_config__ = ConfigDict(arbitrary_types_allowed=True)  # for get_context_jsonschema

    model: SkipJsonSchema[DeltaMemChatModel]
    window: int = 4
    window_tokens: int | None = None
    scope: Scope = "thread"
    agent_id: str = "assistant"
    system_prompt: str | None = None
    specialists: tuple[Specialist, ...] = ()
    router: SkipJsonSchema[Router] = field(default=route_by_mention)
    max_turn_chars: int = 16_000

    def __post_init__(self) -> None:
        if not isinstance(self.model.store, RepositoryMemoryStore):
            raise TypeError("MemoryContext.model must keep its memory in the SQL store: "
                            "DeltaMemChatModel(..., store=RepositoryMemoryStore(repository)); got "
                            f"{type(self.model.store).__name__}")
        if self.model.memory_scope != "thread":
            raise ValueError("the graph picks each turn's store thread itself: build the model with "
                             "memory_scope='thread' and set MemoryContext.scope instead")
        if self.window < 0 or (self.window_tokens is not None and self.window_tokens < 1):
            raise ValueError(f"window={self.window}, window_tokens={self.window_tokens}; expected "
                             "window >= 0 and window_tokens None or >= 1")
        if self.scope not in ("thread", "agent"):
            raise ValueError(f"scope={self.scope!r}; expected 'thread' or 'agent'")
        if self.scope == "agent" and self.whole_conversation:
            raise ValueError("the model's adapter writes each conversation as one sequence "
                             "(write_context='history'): a conversation cannot start from another "
                             "one's memory; use scope='thread'")
        ids = [s.agent_id for s in self.specialists]
        if len(set(ids)) != len(ids) or not all(ids) or not self.agent_id:
            raise ValueError(f"agent ids must be non-empty and distinct; got {ids or self.agent_id!r}")
        if self.max_turn_chars < 1:
            raise ValueError(f"max_turn_chars={self.max_turn_chars}; expected >= 1")

    @cached_property
    def whole_conversation(self) -> bool:
        """The model's adapter writes the conversation as one sequence (``write_context=
        "history"``, e.g. a converted adapter of the method's authors): each turn then sends the
        model the whole conversation, and the model's own ``window`` bounds its read pass."""
        adapter = self.model.adapter
        return bool(adapter) and adapter_config(adapter).write_context == "history"

    @property
    def repository(self) -> MemoryRepository:
        """The store the model keeps its memory in."""
        return self.model.store.repository

    @property
    def agent_ids(self) -> tuple[str, ...]:
        """Every agent this context serves (the specialists, else the single agent)."""
        return tuple(s.agent_id for s in self.specialists) or (self.agent_id,)

    def specialist(self, agent_id: str) -> Specialist | None:
        """The specialist with that id (None in single-agent contexts)."""
        return next((s for s in self.specialists if s.agent_id == agent_id), None)

    def system_prompt_for(self, agent_id: str) -> str | None:
        """The system prompt of that agent's read passes."""
        s = self.specialist(agent_id)
        return s.system_prompt if s is not None else self.system_prompt

    @classmethod
    def open(cls, database: MemoryRepository | str | None = None, *, backbone: str = DEFAULT_BACKBONE,
             adapter: str | None = None, max_new_tokens: int = 64, device: str | None = None,
             **settings: Any) -> MemoryContext:
        """A context whose model keeps memory in ``database`` (greedy decoding).

        Args:
            database: a repository, a store URL or SQLite path (None: the store's default file).
            backbone: embedded backbone name or local HF folder.
            adapter: δ-mem adapter folder (None: the shipped one, else a fresh one with a warning).
                One that writes whole conversations (a converted adapter of the method's authors)
                is sent the whole conversation each turn, and shows ``window`` messages itself
                (all of them with ``generation_writes``).
            max_new_tokens: answer length limit.
            device: torch device (None: CUDA when available).
            **settings: the other fields (window, scope, specialists, ...).
        """
        repo = database if isinstance(database, MemoryRepository) else MemoryRepository(database)
        # an adapter that writes whole conversations gets them all; its read pass shows `window`
        config = adapter_config(adapter) if adapter else None
        window = None  # the graph's window trims what it sends, except to the adapters below
        if config is not None and config.write_context == "history" and not config.generation_writes:
            window = settings.get("window", cls.__dataclass_fields__["window"].default)
        model = DeltaMemChatModel(backbone=backbone, adapter=adapter, max_tokens=max_new_tokens,
                                  device=device, store=RepositoryMemoryStore(repo), window=window)
        return cls(model=model, **settings)
