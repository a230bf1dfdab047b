"""Fixtures of the transcript tests: one tiny chat backbone per session, one torch thread."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

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
