"""agentmem: δ-mem online associative memory inside a frozen LLM's attention.

The public API is what this module exports; the packages hold, by role: ``ops`` (the recurrence),
``model`` (the attached δ-mem model, states, adapters, passes), ``chat`` (the LangChain chat
model), ``train``, ``eval`` and ``data`` (docs/design.md#architecture).
"""

from typing import TYPE_CHECKING, Any

from agentmem import _deprecated
from agentmem.errors import (
    AdapterError,
    AgentMemError,
    BackboneError,
    EmptyConversationError,
    IncompleteHistoryError,
    InputTooLongError,
    MemoryConflictError,
    MissingMemoryKeyError,
    MissingMessageSpansError,
    OfficialAdapterError,
    StateFormatError,
    StateMismatchError,
    ToolCallingNotSupportedError,
    UnknownRoleError,
    UnsupportedArchitectureError,
    UnsupportedContentError,
    UnsupportedOfficialOptionError,
)

_deprecated.install()

# name -> module, imported on first use: `import agentmem` (and `agentmem --help`) loads no torch
_LAZY = {
    "InProcessMemoryStore": "agentmem.chat.memory_store",
    "LockingMemoryStore": "agentmem.chat.memory_store",
    "MemoryKey": "agentmem.chat.memory_store",
    "MemoryRecord": "agentmem.chat.memory_store",
    "MemoryStore": "agentmem.chat.memory_store",
    "fork_metadata": "agentmem.chat.turn_plan",
    "DeltaMemConfig": "agentmem.model.config",
    "MemoryState": "agentmem.model.state",
    "DeltaMemChatModel": "agentmem.chat.chat_model",
}

if TYPE_CHECKING:
    from agentmem.chat.chat_model import DeltaMemChatModel
    from agentmem.chat.memory_store import (
        InProcessMemoryStore,
        LockingMemoryStore,
        MemoryKey,
        MemoryRecord,
        MemoryStore,
    )
    from agentmem.chat.turn_plan import fork_metadata
    from agentmem.model.config import DeltaMemConfig
    from agentmem.model.state import MemoryState

__all__ = [
    "AdapterError", "AgentMemError", "BackboneError", "DeltaMemChatModel", "DeltaMemConfig",
    "EmptyConversationError", "InProcessMemoryStore", "IncompleteHistoryError", "InputTooLongError",
    "LockingMemoryStore", "MemoryConflictError",
    "MemoryKey", "MemoryRecord", "MemoryState", "MemoryStore", "MissingMemoryKeyError",
    "MissingMessageSpansError", "OfficialAdapterError", "StateFormatError", "StateMismatchError",
    "ToolCallingNotSupportedError", "fork_metadata", "UnknownRoleError", "UnsupportedArchitectureError",
    "UnsupportedContentError", "UnsupportedOfficialOptionError",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    if name == "InMemoryStore":
        return _deprecated.renamed("agentmem", name, "InProcessMemoryStore",
                                   __getattr__("InProcessMemoryStore"))
    raise AttributeError(f"module 'agentmem' has no attribute {name!r}")
