"""Fixtures of the chat-model tests: tiny backbones on disk, one torch thread."""

from __future__ import annotations

import inspect

import pytest
import torch

from tests.chat.tiny import tiny_backbone_dir

FRESH_ADAPTER_WARNING = "ignore:no δ-mem adapter ships"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:  # every chat test runs on a fresh (untrained) adapter on purpose
        if "tests/chat/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(pytest.mark.filterwarnings(FRESH_ADAPTER_WARNING))


@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object):
    """Mark async tests for pytest-asyncio: langchain-tests expects ``asyncio_mode = "auto"``.

    Runs inside pytest-asyncio's own wrapper (trylast), so the mark is there when it looks.
    """
    outcome = yield
    if not inspect.iscoroutinefunction(obj):
        return
    result = outcome.get_result()
    for node in result if isinstance(result, list) else [result]:
        if isinstance(node, pytest.Function):
            node.add_marker(pytest.mark.asyncio)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Tiny models are overhead-bound: one intra-op thread is several times faster than two."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_dir() -> str:
    """Tiny Qwen2 backbone whose chat template supports tools."""
    return tiny_backbone_dir("qwen2", "qwen")


@pytest.fixture(scope="session")
def smol_dir() -> str:
    """Tiny Llama backbone with SmolLM2's chat template (no tool support)."""
    return tiny_backbone_dir("llama", "smol")


@pytest.fixture
def make_model(tiny_dir):
    """DeltaMemChatModel factory on the tiny backbone (greedy, short answers, own store)."""
    from agentmem.chat.chat_model import DeltaMemChatModel

    def make(**kwargs) -> DeltaMemChatModel:
        return DeltaMemChatModel(**{"backbone": tiny_dir, "max_tokens": 12, **kwargs})

    return make


def cfg(thread: str | None = None, agent: str | None = None) -> dict:
    """A RunnableConfig naming a thread and/or an agent."""
    conf = {k: v for k, v in (("thread_id", thread), ("agent_id", agent)) if v is not None}
    return {"configurable": conf}
