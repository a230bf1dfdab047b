"""Typed errors raised by agentmem.

Every error derives from :class:`AgentMemError`; the ones caused by bad input also derive from
``ValueError`` so callers that only know the standard hierarchy still catch them.
"""

from __future__ import annotations

from typing import Any


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


class OfficialAdapterError(AdapterError):
    """An adapter released by the method's authors (declare-lab/delta-Mem) that cannot be
    converted: a missing or unreadable file, a pickle that is not a plain state dict, tensors
    with unexpected names or shapes, or a correction the config switches off that is not zero."""


class UnsupportedOfficialOptionError(OfficialAdapterError):
    """An option of the authors' adapter config at a value agentmem does not implement.

    Attributes:
        option: the option's name in their ``delta_mem_config.json``.
        value: its value there.
    """

    def __init__(self, option: str, value: Any, expected: str) -> None:
        super().__init__(f"option {option}={value!r} of the authors' adapter is not supported: "
                         f"agentmem implements {expected}")
        self.option, self.value = option, value


class IncompleteHistoryError(AgentMemError, ValueError):
    """A call without the whole conversation, for an adapter that writes the conversation as one
    sequence (``write_context="history"``)."""


class BackboneError(AgentMemError, ValueError):
    """A backbone name or folder that cannot be resolved offline."""


class EmptyConversationError(AgentMemError, ValueError):
    """A call with no messages at all."""


class UnknownRoleError(AgentMemError, ValueError):
    """A message role the chat model does not know (user, assistant, system and tool are known)."""


class UnsupportedContentError(AgentMemError, ValueError):
    """Message content the backbone cannot take (images, audio, files: the backbones are text only)."""


class InputTooLongError(AgentMemError, ValueError):
    """A read or write pass that would not fit the backbone's context; nothing was written."""


class ToolCallingNotSupportedError(AgentMemError, NotImplementedError):
    """Tools were bound but the backbone's chat template has no tool support."""


class MemoryConflictError(AgentMemError):
    """A memory record changed between load and save (another writer saved first)."""


class MissingMemoryKeyError(AgentMemError, ValueError):
    """A memory operation without ``configurable.thread_id`` / ``configurable.agent_id``."""


class EvalMergeError(AgentMemError, ValueError):
    """Evaluation folders that cannot be merged (another adapter, data set or regime list, or
    overlapping shards)."""


class UnsupportedLaunchError(AgentMemError, RuntimeError):
    """A launch agentmem cannot serve, e.g. several processes (``WORLD_SIZE`` > 1)."""


class MissingDependencyError(AgentMemError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


def require(module: str, extra: str) -> Any:
    """Import ``module`` (an optional dependency) or raise `MissingDependencyError` saying
    ``pip install 'agentmem[<extra>]'``."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise MissingDependencyError(f"{module} is not installed: pip install 'agentmem[{extra}]' "
                                     f"({e})") from e
