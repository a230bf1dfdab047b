"""agentmem: δ-mem online associative memory inside a frozen LLM's attention."""

from agentmem.config import DeltaMemConfig
from agentmem.errors import (
    AdapterError,
    AgentMemError,
    BackboneError,
    MissingMessageSpansError,
    StateFormatError,
    StateMismatchError,
    UnsupportedArchitectureError,
)
from agentmem.state import MemoryState

__all__ = [
    "AdapterError", "AgentMemError", "BackboneError", "DeltaMemConfig", "MemoryState",
    "MissingMessageSpansError", "StateFormatError", "StateMismatchError",
    "UnsupportedArchitectureError",
]
