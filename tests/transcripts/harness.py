"""Opens the graph a transcript plays through: database, checkpointer, context, sync or async.

An async harness keeps one event loop for the whole transcript and runs every graph call on it
(``ainvoke``, ``aget_state``, ``afork_thread`` …) with the async checkpointers, so the player itself
stays synchronous.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from contextlib import AsyncExitStack, ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.messages import BaseMessage, HumanMessage

from graphs import (
    MemoryContext,
    Specialist,
    aforget_thread,
    afork_thread,
    async_postgres_checkpointer,
    async_sqlite_checkpointer,
    build_memory_agent,
    build_router_agent,
    forget_thread,
    fork_thread,
    postgres_checkpointer,
    sqlite_checkpointer,
)
from store import MemoryRepository, make_engine

PG_ENV = "AGENTMEM_TEST_POSTGRES_URL"


class PromptLog(BaseCallbackHandler):
    """Records the messages of every chat-model call (what the read pass was shown)."""

    def __init__(self) -> None:
        self.prompts: list[list[BaseMessage]] = []

    def on_chat_model_start(self, serialized: dict[str, Any], messages: list[list[BaseMessage]],
                            **kwargs: Any) -> None:
        self.prompts.append(list(messages[0]))


@dataclass(frozen=True)
class Target:
    """Where a run keeps its data: an SQLite file, or a PostgreSQL schema."""

    kind: str  # "sqlite" or "postgresql"
    folder: Path
    schema: str = ""

    @classmethod
    def make(cls, kind: str, folder: Path) -> Target:
        return cls(kind, folder, f"agentmem_tr_{uuid.uuid4().hex[:12]}" if kind == "postgresql" else "")

    @property
    def sqlite_file(self) -> Path:
        return self.folder / "transcript.sqlite3"

    def drop(self) -> None:
        if self.kind == "postgresql":
            engine = make_engine(os.environ[PG_ENV])
            with engine.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {self.schema} CASCADE")
            engine.dispose()


class Harness:
    """The compiled graph of one transcript run and the calls the player makes on it.

    Args:
        target: where the data lives.
        mode: "sync" or "async".
        router: build the router graph (else the single-agent graph).
        make_context: builds the context on a repository (called again after a restart).
    """

    def __init__(self, target: Target, mode: str, router: bool,
                 make_context: Callable[[MemoryRepository], MemoryContext]) -> None:
        self.target, self.mode, self.router, self._make_context = target, mode, router, make_context
        self.loop = asyncio.new_event_loop() if mode == "async" else None
        self.prompts = PromptLog()
        self._open()

    def _open(self) -> None:
        if self.target.kind == "sqlite":
            self.repo = MemoryRepository(str(self.target.sqlite_file))
        else:
            self.repo = MemoryRepository(make_engine(os.environ[PG_ENV], schema=self.target.schema))
        self.repo.setup()  # before the checkpointer: the store's file settings apply to a new file
        self.context = self._make_context(self.repo)
        self.graph = self._build(self._checkpointer())

    def _checkpointer(self) -> Any:
        url = f"{os.environ.get(PG_ENV, '')}?options=-csearch_path%3D{self.target.schema}"
        sqlite = str(self.target.sqlite_file)
        if self.loop is not None:
            self._astack = AsyncExitStack()
            cm = async_sqlite_checkpointer(sqlite) if self.target.kind == "sqlite" else \
                async_postgres_checkpointer(url)
            return self.run(self._astack.enter_async_context(cm))
        self._stack = ExitStack()
        if self.target.kind == "sqlite":
            saver = sqlite_checkpointer(sqlite)
            self._stack.callback(saver.conn.close)
            return saver
        return self._stack.enter_context(postgres_checkpointer(url))

    def _build(self, saver: Any) -> Any:
        build = build_router_agent if self.router else build_memory_agent
        return build(saver, context=self.context)

    def run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        assert self.loop is not None
        return self.loop.run_until_complete(coro)

    def close(self) -> None:
        if self.loop is not None:
            self.run(self._astack.aclose())
        else:
            self._stack.close()
        self.repo.close()
        self.repo.engine.dispose()

    def restart(self) -> None:
        """Close everything and reopen from the same database (a process restart)."""
        self.close()
        self._open()

    def shutdown(self) -> None:
        self.close()
        if self.loop is not None:
            self.loop.close()

    # -- graph calls ---------------------------------------------------------------------------

    def config(self, thread: str) -> dict[str, Any]:
        return {"configurable": {"thread_id": thread}, "callbacks": [self.prompts]}

    def turn(self, thread: str, text: str, start: dict[str, Any] | None = None) -> dict[str, Any]:
        """One user turn; ``start`` is a past checkpoint config to continue from (time travel)."""
        config = {**(start or self.config(thread)), "callbacks": [self.prompts]}
        payload = {"messages": [HumanMessage(text)]}
        if self.loop is not None:
            return self.run(self.graph.ainvoke(payload, config))
        return self.graph.invoke(payload, config)

    def concurrent(self, turns: list[tuple[str, str]]) -> list[Any]:
        """Several turns at once (threads, or one asyncio.gather); exceptions are returned."""
        if self.loop is not None:
            async def gather() -> list[Any]:
                return await asyncio.gather(*[self.graph.ainvoke(
                    {"messages": [HumanMessage(t)]}, self.config(th)) for th, t in turns],
                    return_exceptions=True)

            return self.run(gather())
        with ThreadPoolExecutor(len(turns)) as pool:
            futures = [pool.submit(self.turn, th, t) for th, t in turns]
            return [f.exception() or f.result() for f in futures]

    def state(self, thread: str) -> Any:
        cfg = {"configurable": {"thread_id": thread}}
        return self.run(self.graph.aget_state(cfg)) if self.loop is not None else self.graph.get_state(cfg)

    def fork(self, source: dict[str, Any], new_thread: str) -> Any:
        if self.loop is not None:
            return self.run(afork_thread(self.graph, self.context, source, new_thread))
        return fork_thread(self.graph, self.context, source, new_thread)

    def forget(self, thread: str) -> int:
        if self.loop is not None:
            return self.run(aforget_thread(self.graph, self.context, thread))
        return forget_thread(self.graph, self.context, thread)


def context_factory(settings: dict[str, Any], backbone: str) -> Callable[[MemoryRepository], MemoryContext]:
    """Builds a transcript's context from its ``[context]`` table on a repository."""
    settings = dict(settings)
    max_new = settings.pop("max_new_tokens", 8)
    specialists = tuple(Specialist(s["agent_id"], keywords=tuple(s.get("keywords", ())),
                                   system_prompt=s.get("system_prompt"))
                        for s in settings.pop("specialists", []))

    def make(repo: MemoryRepository) -> MemoryContext:
        return MemoryContext.open(repo, backbone=backbone, max_new_tokens=max_new, device="cpu",
                                  specialists=specialists, **settings)

    return make
