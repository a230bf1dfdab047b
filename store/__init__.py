"""store: persistence of δ-mem memory checkpoints (SQLite by default, PostgreSQL by URL).

The rest of agentmem sees only :class:`MemoryRepository` (and its async twin); rows, sessions
and SQL stay inside this package::

    repo = MemoryRepository(make_engine("postgresql+psycopg://user@host/db"),
                            spec=StateSpec(adapter_fingerprint, backbone_id))
    head = repo.latest(agent_id, thread_id)                  # verified Checkpoint or None
    info = repo.put(agent_id, thread_id, new_state,          # ConflictError if another
                    parent=head and head.checkpoint_id)      # writer moved the head
    repo.update(agent_id, thread_id, lambda s: write_turn(s))  # read, compute, put, retry
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
