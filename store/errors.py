"""Typed errors of the memory store.

Every error derives from :class:`StoreError` (itself an :class:`agentmem.errors.AgentMemError`).
A state that does not belong to the caller's adapter, backbone or shape raises the core's own
:class:`agentmem.errors.StateMismatchError`, re-exported here so callers need one import.
"""

from __future__ import annotations

from agentmem.errors import AgentMemError, StateMismatchError

__all__ = [
    "CheckpointNotFound", "ConflictError", "CorruptCheckpointError", "InvalidIdError",
    "InvalidMetadataError", "NonFiniteStateError", "SchemaVersionError", "StateMismatchError",
    "StoreError",
]


class StoreError(AgentMemError):
    """Base class of every store error."""


class ConflictError(StoreError):
    """The thread head is not the parent the writer expected (another writer got there first)."""


class CheckpointNotFound(StoreError, LookupError):
    """No checkpoint with that id exists under that (agent_id, thread_id)."""


class CorruptCheckpointError(StoreError):
    """A stored row fails its checksum, does not decode, or disagrees with its own columns."""


class NonFiniteStateError(StoreError, ValueError):
    """A state holding NaN or Inf was offered for writing; nothing was written."""


class InvalidIdError(StoreError, ValueError):
    """An agent, thread or checkpoint id that the store cannot key on (empty, NUL, too long)."""


class InvalidMetadataError(StoreError, ValueError):
    """Checkpoint metadata that does not round-trip exactly through JSON."""


class SchemaVersionError(StoreError):
    """The database was written by a newer store schema than this code knows."""
