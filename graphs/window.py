"""The bounded prompt of a turn: LangChain's ``trim_messages`` keeps the last few messages.

The prompt stays bounded however long the conversation grows; everything older than the window
reaches the model only through its δ-mem memory. In router graphs each specialist sees only its
own part of the conversation (the turns it answered), as it remembers only those.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, trim_messages
from langchain_core.messages.utils import count_tokens_approximately

__all__ = ["agent_view", "visible_messages"]


def agent_view(messages: Sequence[BaseMessage], agent_id: str) -> list[BaseMessage]:
    """The turns ``agent_id`` answered, plus the current (unanswered, last) turn.

    A turn is a user message and what follows it up to the next user message; it belongs to the
    agent whose id is the ``name`` of its first answer. Unanswered turns before the last (failed
    turns) belong to nobody. System messages are kept.
    """
    turns: list[list[BaseMessage]] = []
    system: list[BaseMessage] = []
    for m in messages:
        if isinstance(m, SystemMessage):
            system.append(m)
        elif isinstance(m, HumanMessage) or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    kept = [t for i, t in enumerate(turns) if _answered_by(t) == agent_id
            or (i == len(turns) - 1 and _answered_by(t) is None)]
    return system + [m for t in kept for m in t]


def _answered_by(turn: list[BaseMessage]) -> str | None:
    answer = next((m for m in turn if isinstance(m, AIMessage)), None)
    return None if answer is None else answer.name


def visible_messages(messages: Sequence[BaseMessage], *, window: int,
                     window_tokens: int | None = None, system_prompt: str | None = None
                     ) -> list[BaseMessage]:
    """What the read pass shows: the system prompt, the last ``window`` messages, the user turn.

    Args:
        messages: the conversation, ending with the current user message.
        window: messages shown before the current one (whole turns: the window starts on a user
            message); 0 shows none.
        window_tokens: also drop the oldest shown messages beyond about this many tokens
            (``count_tokens_approximately``); None: no cap.
        system_prompt: replaces the conversation's own system messages when given.

    Returns:
        ``[system?] + window + [current user message]``.
    """
    *history, current = messages
    system = [SystemMessage(system_prompt)] if system_prompt else \
        [m for m in history[:1] if isinstance(m, SystemMessage)]
    history = [m for m in history if not isinstance(m, SystemMessage)]
    shown = _last(history, window, len) if window else []
    if window_tokens is not None:
        shown = _last(shown, window_tokens, count_tokens_approximately)
    return system + shown + [current]


def _last(messages: list[BaseMessage], budget: int,
          counter: Callable[[list[BaseMessage]], int]) -> list[BaseMessage]:
    return trim_messages(messages, max_tokens=budget, token_counter=counter, strategy="last",
                         start_on="human", allow_partial=False)
