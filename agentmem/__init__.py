"""agentmem: δ-mem online associative memory inside a frozen LLM's attention."""

from typing import TYPE_CHECKING, Any

from agentmem.config import DeltaMemConfig
from agentmem.errors import (
    AdapterError,
    AgentMemError,
    BackboneError,
    EmptyConversationError,
    InputTooLongError,
    MemoryConflictError,
    MissingMemoryKeyError,
    MissingMessageSpansError,
    StateFormatError,
    StateMismatchError,
    ToolCallingNotSupportedError,
    UnknownRoleError,
    UnsupportedArchitectureError,
    UnsupportedContentError,
)
from agentmem.memory_store import InMemoryStore, MemoryKey, MemoryRecord, MemoryStore
from agentmem.state import MemoryState

if TYPE_CHECKING:
    from agentmem.chat_model import DeltaMemChatModel

__all__ = [
    "AdapterError", "AgentMemError", "BackboneError", "DeltaMemChatModel", "DeltaMemConfig",
    "EmptyConversationError", "InMemoryStore", "InputTooLongError", "MemoryConflictError",
    "MemoryKey", "MemoryRecord", "MemoryState", "MemoryStore", "MissingMemoryKeyError",
    "MissingMessageSpansError", "StateFormatError", "StateMismatchError",
    "ToolCallingNotSupportedError", "UnknownRoleError", "UnsupportedArchitectureError",
    "UnsupportedContentError",
]


def __getattr__(name: str) -> Any:
    # The chat model pulls in langchain_core: import it only when asked for.
    if name == "DeltaMemChatModel":
        from agentmem.chat_model import DeltaMemChatModel

        return DeltaMemChatModel
    raise AttributeError(f"module 'agentmem' has no attribute {name!r}")
