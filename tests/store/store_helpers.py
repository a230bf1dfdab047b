"""Shared helpers of the store tests (imported by name: tests/store is on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from sqlalchemy import Engine, select

from agentmem import DeltaMemConfig, MemoryState
from store.models import CheckpointRow, ThreadRow

FP = "f" * 64  # an adapter fingerprint as agentmem.model.attach makes them (sha256 hex)
BB = "llama-0123456789abcdef"  # a backbone id as agentmem.model.backbones makes them


@dataclass(frozen=True)
class Target:
    """A database the tests run against: a URL and, for PostgreSQL, a private schema."""

    name: str
    url: str
    schema: str | None = None


def make_state(seed: int = 0, *, tokens: int = 5, fingerprint: str = FP, backbone: str = BB,
               layers: int = 30, zeros: bool = False) -> MemoryState:
    """One conversation's state of the default backbone's shape: [1, 30, 1, 8, 8]."""
    g = torch.Generator().manual_seed(seed)
    t = torch.zeros(1, layers, 1, 8, 8) if zeros else torch.randn(1, layers, 1, 8, 8, generator=g)
    return MemoryState(t, torch.tensor([tokens]), tuple(range(layers)), fingerprint, backbone,
                       DeltaMemConfig())


def bump(state: MemoryState | None) -> MemoryState:
    """The next state of an ``update`` chain: every entry + 1, one more token (exact in fp32)."""
    if state is None:
        return make_state(zeros=True, tokens=0)
    return MemoryState(state.tensors + 1, state.tokens_written + 1, state.layer_indices,
                       state.adapter_fingerprint, state.backbone_id, state.config)


def snapshot(engine: Engine) -> tuple[list[Any], list[Any]]:
    """Every row of both tables, blobs included, in a stable order (for 'unchanged' checks)."""
    with engine.connect() as conn:
        threads = conn.execute(select(ThreadRow.__table__).order_by(ThreadRow.thread_pk)).all()
        cps = conn.execute(select(CheckpointRow.__table__).order_by(CheckpointRow.id)).all()
    return [tuple(r) for r in threads], [tuple(r) for r in cps]


def states_equal(a: MemoryState, b: MemoryState) -> bool:
    """Bit-exact equality of two states and their metadata."""
    return (a.tensors.dtype == b.tensors.dtype and torch.equal(a.tensors, b.tensors)
            and torch.equal(a.tokens_written, b.tokens_written)
            and a.layer_indices == b.layer_indices and a.config == b.config
            and a.adapter_fingerprint == b.adapter_fingerprint and a.backbone_id == b.backbone_id)
