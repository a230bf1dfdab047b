"""Typed errors of the memory store.

Every error derives from :class:`StoreError` (itself an :class:`agentmem.errors.AgentMemError`).
A failure of the database, its files or the connection is one of the subclasses below, with the
driver's exception chained as ``__cause__`` and a message that says what to do; bad arguments are
``ValueError`` subclasses. ``retryable`` tells whether the same call may succeed later.
A state that does not belong to the caller's adapter, backbone or shape raises the core's own
:class:`agentmem.errors.StateMismatchError`, re-exported here so callers need one import.
"""

from __future__ import annotations

from agentmem.errors import AgentMemError, StateMismatchError

__all__ = [
    "CheckpointNotFound", "CommitUnknownError", "ConflictError", "CorruptCheckpointError",
    "CorruptStoreError", "DanglingHeadError", "ErasurePendingError", "ForeignSchemaError",
    "InvalidIdError", "InvalidMetadataError", "NonFiniteStateError", "NotADatabaseError",
    "ReadOnlyStoreError", "SchemaVersionError", "StateMismatchError", "StoreError",
    "StoreFullError", "StoreLockedError", "StoreUnavailableError",
]


class StoreError(AgentMemError):
    """Base class of every store error."""

    retryable = False


class StoreUnavailableError(StoreError):
    """The database cannot be reached or opened right now (server down or restarting, network)."""

    retryable = True


class CommitUnknownError(StoreUnavailableError):
    """The connection failed while a write was committing: it may or may not have been stored.

    Retrying ``put`` with ``checkpoint_id=error.checkpoint_id`` is safe: it returns the stored
    checkpoint if the first attempt did commit, and writes it once otherwise.
    """

    def __init__(self, message: str, checkpoint_id: str) -> None:
        super().__init__(message)
        self.checkpoint_id = checkpoint_id


class StoreLockedError(StoreError):
    """A lock was not granted within the repository's ``lock_timeout_s`` (another writer holds it)."""

    retryable = True


class ReadOnlyStoreError(StoreError):
    """The database, its file or its directory cannot be written (permissions, read-only mount)."""


class StoreFullError(StoreError):
    """The disk or the database is full; free space (``prune``, ``delete_*``, ``compact``)."""


class NotADatabaseError(StoreError):
    """The path is not a database the store can open (a directory, another kind of file)."""


class CorruptStoreError(StoreError):
    """The database file itself is damaged (not one row: the pages SQLite or PostgreSQL read)."""


class ForeignSchemaError(StoreError):
    """The store's tables are missing or are not the store's (another application's table)."""


class ErasurePendingError(StoreError):
    """Rows were deleted (no call returns them any more) but their bytes are still in the
    database's write-ahead log, because another connection holds a read; ``compact()`` finishes
    the erasure once it ends."""

    retryable = True


class ConflictError(StoreError):
    """The thread head is not the parent the writer expected (another writer got there first)."""

    retryable = True


class CheckpointNotFound(StoreError, LookupError):
    """No checkpoint with that id exists under that (agent_id, thread_id)."""


class CorruptCheckpointError(StoreError):
    """A stored row fails its checksum, does not decode, or disagrees with its own columns."""


class DanglingHeadError(CorruptCheckpointError):
    """A thread's head points at a checkpoint that no longer exists; ``repair_head`` fixes it."""


class NonFiniteStateError(StoreError, ValueError):
    """A state holding NaN or Inf was offered for writing; nothing was written."""


class InvalidIdError(StoreError, ValueError):
    """An agent, thread or checkpoint id that the store cannot key on (empty, NUL, too long)."""


class InvalidMetadataError(StoreError, ValueError):
    """Checkpoint metadata that does not round-trip exactly through JSON."""


class SchemaVersionError(StoreError):
    """The database was written by a newer store schema than this code knows."""
