"""What the read pass shows the backbone in each evaluation regime: no history, a window of the
last messages, the whole history, or the BM25-best turns — with or without the memory.

See docs/design.md#evaluation-regimes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentmem.errors import require
from agentmem.model.history import turns_of

Message = dict[str, str]
REGIMES = ("no-memory", "window", "full-context", "memory-only", "memory+window",
           "memory+full-context", "bm25")
MEMORY_REGIMES = ("memory-only", "memory+window", "memory+full-context")


@dataclass(frozen=True)
class ReadPrompt:
    """The messages of a read pass and whether it reads the memory."""

    messages: list[Message]
    uses_memory: bool


def window_start(n_messages: int, window: int) -> int:
    """Index of the first history message the window regimes show: the last ``window`` messages
    (none for ``window=0``)."""
    return max(0, n_messages - window) if window else n_messages


def read_prompt(regime: str, history: list[Message], question: str, *, window: int = 4,
                bm25_k: int = 4) -> ReadPrompt:
    """The messages the backbone sees in the read pass of ``regime`` (docs/design.md#evaluation-regimes)."""
    if regime not in REGIMES:
        raise ValueError(f"regime={regime!r}; expected one of {REGIMES}")
    ask = [{"role": "user", "content": question}]
    if regime in ("no-memory", "memory-only"):
        shown: list[Message] = []
    elif regime in ("window", "memory+window"):
        shown = history[window_start(len(history), window):]
    elif regime in ("full-context", "memory+full-context"):
        shown = list(history)
    else:
        shown = bm25_turns(history, question, bm25_k)
    return ReadPrompt(shown + ask, regime in MEMORY_REGIMES)


def fit_prompt(tokenizer: Any, prompt: ReadPrompt, max_tokens: int) -> ReadPrompt:
    """Drop the oldest shown messages until the rendered prompt fits ``max_tokens``."""
    messages = list(prompt.messages)
    while len(messages) > 1 and len(tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, return_dict=False)) > max_tokens:
        messages.pop(0)
    return ReadPrompt(messages, prompt.uses_memory)


def bm25_turns(history: list[Message], question: str, k: int) -> list[Message]:
    """The k past turns that best match the question (BM25), in their original order."""
    BM25Okapi = require("rank_bm25", "train").BM25Okapi

    turns = turns_of(history)
    if not turns:
        return []
    docs = [" ".join(m["content"] for m in t).lower().split() for t in turns]
    scores = BM25Okapi(docs).get_scores(question.lower().split())
    best = sorted(sorted(range(len(turns)), key=lambda i: -scores[i])[:k])
    return [m for i in best for m in turns[i]]
