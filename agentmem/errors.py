"""Typed errors raised by agentmem.

Every error derives from :class:`AgentMemError`; the ones caused by bad input also derive from
``ValueError`` so callers that only know the standard hierarchy still catch them.
"""

from __future__ import annotations


class AgentMemError(Exception):
    """Base class of every agentmem error."""


class UnsupportedArchitectureError(AgentMemError, ValueError):
    """The backbone's architecture is not in the attachment table."""


class MissingMessageSpansError(AgentMemError, ValueError):
    """Message-level writes (SSW) were requested without message token spans."""


class StateFormatError(AgentMemError, ValueError):
    """Bytes that do not decode to a valid memory state."""


class StateMismatchError(AgentMemError, ValueError):
    """A memory state does not belong to this adapter, backbone or shape."""


class AdapterError(AgentMemError, ValueError):
    """An adapter folder is missing, malformed, or does not fit the model."""


class BackboneError(AgentMemError, ValueError):
    """A backbone name or folder that cannot be resolved offline."""
