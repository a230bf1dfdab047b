"""store: persistence of δ-mem memory checkpoints (SQLite by default, PostgreSQL by URL).

The rest of agentmem sees only :class:`MemoryRepository` (and its async twin); rows, sessions
and SQL stay inside this package.
"""

from store.aio import AsyncMemoryRepository
from store.engine import default_url, make_engine
from store.errors import (
    CheckpointNotFound,
    ConflictError,
    CorruptCheckpointError,
    InvalidIdError,
    InvalidMetadataError,
    NonFiniteStateError,
    SchemaVersionError,
    StateMismatchError,
    StoreError,
)
from store.migrations import LATEST_VERSION, migrate
from store.records import Checkpoint, CheckpointInfo, StateSpec, ThreadInfo
from store.repository import MemoryRepository

__all__ = [
    "LATEST_VERSION", "AsyncMemoryRepository", "Checkpoint", "CheckpointInfo",
    "CheckpointNotFound", "ConflictError", "CorruptCheckpointError", "InvalidIdError",
    "InvalidMetadataError", "MemoryRepository", "NonFiniteStateError", "SchemaVersionError",
    "StateMismatchError", "StateSpec", "StoreError", "ThreadInfo", "default_url", "make_engine",
    "migrate",
]
