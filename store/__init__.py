"""store: persistence of δ-mem memory checkpoints (SQLite by default, PostgreSQL by URL).

The rest of agentmem sees only :class:`MemoryRepository` (and its async twin); rows, sessions
and SQL stay inside this package::

    repo = MemoryRepository(make_engine("postgresql+psycopg://user@host/db"),
                            spec=StateSpec(adapter_fingerprint, backbone_id))
    head = repo.latest(agent_id, thread_id)                  # verified MemoryCheckpoint or None
    info = repo.put(agent_id, thread_id, new_state,          # ConflictError if another
                    parent=head and head.checkpoint_id)      # writer moved the head
    repo.update(agent_id, thread_id, lambda s: write_turn(s))  # read, compute, put, retry
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from store.aio import AsyncMemoryRepository
    from store.chat_store import RepositoryMemoryStore
    from store.engine import default_url, make_engine
    from store.errors import (
        CheckpointNotFound,
        CommitUnknownError,
        ConflictError,
        CorruptCheckpointError,
        CorruptStoreError,
        DanglingHeadError,
        ErasurePendingError,
        ForeignSchemaError,
        InvalidIdError,
        InvalidMetadataError,
        NonFiniteStateError,
        NotADatabaseError,
        ReadOnlyStoreError,
        SchemaVersionError,
        StateMismatchError,
        StoreError,
        StoreFullError,
        StoreLockedError,
        StoreUnavailableError,
    )
    from store.migrations import LATEST_VERSION, migrate
    from store.records import CheckpointInfo, MemoryCheckpoint, StateSpec, ThreadInfo
    from store.repository import HeldThread, MemoryRepository

# name -> module, imported on first use (the store's modules load SQLAlchemy and torch)
_LAZY = {
    "AsyncMemoryRepository": "store.aio",
    "RepositoryMemoryStore": "store.chat_store",
    "default_url": "store.engine",
    "make_engine": "store.engine",
    "CheckpointNotFound": "store.errors",
    "CommitUnknownError": "store.errors",
    "ConflictError": "store.errors",
    "CorruptCheckpointError": "store.errors",
    "CorruptStoreError": "store.errors",
    "DanglingHeadError": "store.errors",
    "ErasurePendingError": "store.errors",
    "ForeignSchemaError": "store.errors",
    "InvalidIdError": "store.errors",
    "InvalidMetadataError": "store.errors",
    "NonFiniteStateError": "store.errors",
    "NotADatabaseError": "store.errors",
    "ReadOnlyStoreError": "store.errors",
    "SchemaVersionError": "store.errors",
    "StateMismatchError": "store.errors",
    "StoreError": "store.errors",
    "StoreFullError": "store.errors",
    "StoreLockedError": "store.errors",
    "StoreUnavailableError": "store.errors",
    "LATEST_VERSION": "store.migrations",
    "migrate": "store.migrations",
    "CheckpointInfo": "store.records",
    "MemoryCheckpoint": "store.records",
    "StateSpec": "store.records",
    "ThreadInfo": "store.records",
    "HeldThread": "store.repository",
    "MemoryRepository": "store.repository",
}

__all__ = [
    "LATEST_VERSION", "AsyncMemoryRepository", "CheckpointInfo", "CheckpointNotFound",
    "CommitUnknownError", "ConflictError", "CorruptCheckpointError", "CorruptStoreError",
    "DanglingHeadError", "ErasurePendingError", "ForeignSchemaError", "HeldThread",
    "InvalidIdError", "InvalidMetadataError", "MemoryCheckpoint", "MemoryRepository",
    "NonFiniteStateError", "NotADatabaseError", "ReadOnlyStoreError", "RepositoryMemoryStore",
    "SchemaVersionError", "StateMismatchError", "StateSpec", "StoreError", "StoreFullError",
    "StoreLockedError", "StoreUnavailableError", "ThreadInfo", "default_url", "make_engine",
    "migrate",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name == "Checkpoint":  # 0.1's name; LangGraph has its own `Checkpoint`
        from agentmem._deprecated import renamed

        return renamed("store", name, "MemoryCheckpoint", __getattr__("MemoryCheckpoint"))
    raise AttributeError(f"module 'store' has no attribute {name!r}")
