"""agentmem: δ-mem online associative memory inside a frozen LLM's attention.

The public API is what this module exports; the packages hold, by role: ``ops`` (the recurrence),
``model`` (the attached δ-mem model, states, adapters, passes), ``chat`` (the LangChain chat
model), ``train``, ``eval`` and ``data`` (docs/design.md#architecture).
"""

from typing import TYPE_CHECKING, Any

from agentmem import _deprecated
from agentmem.chat.memory_store import (
    InProcessMemoryStore,
    LockingMemoryStore,
    MemoryKey,
    MemoryRecord,
    MemoryStore,
)
from agentmem.chat.turn_plan import fork_metadata
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
from agentmem.model.config import DeltaMemConfig
from agentmem.model.state import MemoryState

_deprecated.install()

if TYPE_CHECKING:
    from agentmem.chat.chat_model import DeltaMemChatModel

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
    # The chat model pulls in langchain_core: import it only when asked for.
    if name == "DeltaMemChatModel":
        from agentmem.chat.chat_model import DeltaMemChatModel

        return DeltaMemChatModel
    if name == "InMemoryStore":
        return _deprecated.renamed("agentmem", name, "InProcessMemoryStore", InProcessMemoryStore)
    raise AttributeError(f"module 'agentmem' has no attribute {name!r}")
