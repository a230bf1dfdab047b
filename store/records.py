"""What the repository returns: plain frozen records, never ORM objects or open sessions."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from agentmem.model.state import MemoryState


@dataclass(frozen=True)
class StateSpec:
    """What the caller's model expects of a state; a stored state that differs is refused.

    Attributes:
        adapter_fingerprint: the loaded adapter's fingerprint.
        backbone_id: the loaded backbone's id.
        shape: one row of the state, (L, N, r, r); None skips the shape check.
    """

    adapter_fingerprint: str
    backbone_id: str
    shape: tuple[int, ...] | None = None

    def check(self, state: MemoryState) -> None:
        """Raise :class:`agentmem.errors.StateMismatchError` unless ``state`` fits."""
        state.check_compatible(self.adapter_fingerprint, self.backbone_id, self.shape)


@dataclass(frozen=True)
class CheckpointInfo:
    """One checkpoint row without its state (what ``history`` lists).

    Attributes:
        seq: position along the thread's chain: 0 for its first checkpoint, parent's + 1 after.
        shape: one row of the state, (L, N, r, r).
        size_bytes: length of the stored blob.
    """

    agent_id: str
    thread_id: str
    checkpoint_id: str
    parent_checkpoint_id: str | None
    seq: int
    created_at: datetime
    adapter_fingerprint: str
    backbone_id: str
    shape: tuple[int, ...]
    dtype: str
    tokens_written: int
    codec: str
    checksum: str
    size_bytes: int
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class MemoryCheckpoint(CheckpointInfo):
    """A checkpoint with its verified state."""

    state: MemoryState


@dataclass(frozen=True)
class ThreadInfo:
    """One thread of an agent and its head."""

    agent_id: str
    thread_id: str
    head_checkpoint_id: str
    head_seq: int
    head_created_at: datetime
