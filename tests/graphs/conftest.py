"""Fixtures of the graph tests: a tiny chat backbone, a context on a fresh SQLite file, a graph."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from langchain_core.messages import HumanMessage

from graphs import MemoryContext, build_memory_agent, sqlite_checkpointer
from tests.train.conftest import make_chat_backbone


@pytest.fixture(scope="session")
def tiny_backbone(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A random 2-layer Llama with a real BPE tokenizer and chat template, on disk."""
    return str(make_chat_backbone(Path(tmp_path_factory.mktemp("graphs_tiny")) / "backbone"))


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread() -> Iterator[None]:
    """Tiny models are overhead-bound: one intra-op thread is faster and leaves a core free."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def seeded() -> Iterator[None]:
    """Seeded RNG; the tiny backbones run on a fresh adapter on purpose (no warning about it)."""
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no δ-mem adapter ships")
        yield


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "memory.sqlite3"


@pytest.fixture
def context(tiny_backbone: str, db: Path) -> Iterator[MemoryContext]:
    ctx = MemoryContext.open(str(db), backbone=tiny_backbone, max_new_tokens=6, device="cpu", window=4)
    ctx.repository.setup()
    yield ctx
    ctx.repository.close()


@pytest.fixture
def graph(context: MemoryContext, db: Path) -> Iterator[Any]:
    saver = sqlite_checkpointer(db)
    yield build_memory_agent(saver, context=context)
    saver.conn.close()


def cfg(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def say(graph: Any, thread: str, text: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """One user turn on ``thread`` (or from the checkpoint ``config``)."""
    return graph.invoke({"messages": [HumanMessage(text)]}, config or cfg(thread))


def written_state(context: MemoryContext, values: dict[str, Any], agent: str = "assistant") -> Any:
    """The memory state the last turn of a graph state wrote."""
    ref = values["memory"][agent]
    return context.repository.get(agent, ref["thread"], ref["written"]).state


def same_state(a: Any, b: Any) -> bool:
    return torch.equal(a.tensors, b.tensors) and torch.equal(a.tokens_written, b.tokens_written)
