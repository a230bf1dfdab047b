"""Candidate answers ranked by the model with a turn's memory and without it.

The default backbone is small and its free generation weak, so the demo and the slow transcripts
judge memory the way the evaluations do (docs/design.md#evaluation-regimes): the candidate
answer the model finds most likely, scored as the mean log-probability per answer token, once
reading the memory the turn read and once reading an empty memory (the frozen backbone), on the
same visible prompt.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from agentmem.chat.chat_model import to_dicts
from agentmem.chat.shared_backbone import get_backend
from agentmem.model.decoding import SamplingParams
from agentmem.model.prompts import ReadPrompt
from agentmem.model.scoring import score_candidates
from agentmem.model.state import MemoryState
from graphs.context import MemoryContext
from graphs.window import agent_view, visible_messages

__all__ = ["Ranking", "frozen_reply", "last_turn_prompt", "rank_candidates", "rank_last_turn"]


@dataclass(frozen=True)
class Ranking:
    """Candidates with their scores, best first, with and without memory."""

    with_memory: list[tuple[str, float]]
    without_memory: list[tuple[str, float]]

    @property
    def best_with_memory(self) -> str:
        return self.with_memory[0][0]

    @property
    def best_without_memory(self) -> str:
        return self.without_memory[0][0]


def rank_candidates(context: MemoryContext, prompt: Sequence[BaseMessage], candidates: Sequence[str],
                    state: MemoryState | None) -> Ranking:
    """Score each candidate as the assistant's reply to ``prompt``.

    Args:
        context: gives the model (backbone and adapter).
        prompt: the read pass's messages, ending with the question.
        candidates: the possible answers (at least two).
        state: the memory to read (None: an empty one).
    """
    if len(candidates) < 2:
        raise ValueError("rank at least two candidates")
    m = context.model
    backend = get_backend(m.backbone, m.adapter, m.device)
    messages = to_dicts(prompt)
    scores = {}
    for uses_memory in (True, False):
        _, mean = score_candidates(backend.dm, backend.tokenizer, ReadPrompt(messages, uses_memory),
                                   list(candidates), state)
        scores[uses_memory] = sorted(zip(candidates, mean.tolist(), strict=True), key=lambda c: -c[1])
    return Ranking(scores[True], scores[False])


def last_turn_prompt(context: MemoryContext, values: dict[str, Any]
                     ) -> tuple[list[BaseMessage], MemoryState | None]:
    """The read pass of the last user turn of a graph state, as that turn was answered: the
    window it showed and the memory checkpoint it read (``MemoryRef.read``; None: empty)."""
    agent = values["agent_id"]
    messages = list(values["messages"])
    if messages and isinstance(messages[-1], AIMessage):
        messages = messages[:-1]
    if context.specialists:
        messages = agent_view(messages, agent)
    prompt = visible_messages(messages, window=context.window, window_tokens=context.window_tokens,
                              system_prompt=context.system_prompt_for(agent))
    ref = values["memory"][agent]
    state = None if ref["read"] is None else context.repository.get(agent, ref["thread"],
                                                                     ref["read"]).state
    return prompt, state


def rank_last_turn(context: MemoryContext, values: dict[str, Any], candidates: Sequence[str]) -> Ranking:
    """Rank candidates for the last user turn of a graph state, as that turn was answered."""
    prompt, state = last_turn_prompt(context, values)
    return rank_candidates(context, prompt, candidates, state)


def frozen_reply(context: MemoryContext, values: dict[str, Any], max_new_tokens: int) -> str:
    """The frozen backbone's greedy reply to the last user turn's prompt (an empty memory), to
    set beside the reply the memory-reading model gave."""
    prompt, _ = last_turn_prompt(context, values)
    m = context.model
    backend = get_backend(m.backbone, m.adapter, m.device)
    ids = backend.render_prompt(to_dicts(prompt))
    tokens = [t[0] for t in backend.decoder([ids], [backend.new_state()],
                                             SamplingParams(max_new_tokens=max_new_tokens))]
    return backend.tokenizer.decode([t for t in tokens if t is not None],
                                    skip_special_tokens=True).strip()
