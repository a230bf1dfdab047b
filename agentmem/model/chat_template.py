"""Token ids and per-message content spans of a conversation, from the tokenizer's chat template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentmem.errors import AgentMemError


@dataclass(frozen=True)
class EncodedChat:
    """input_ids of a rendered conversation and each message's content-token span."""

    input_ids: list[int]
    spans: list[tuple[int, int]]  # [start, end) token indices, one per message, in order
    roles: tuple[str, ...] = ()  # each message's role, aligned with ``spans``

    def written_spans(self, policy: str = "all") -> list[tuple[int, int]]:
        """The spans a message-level write pass writes under a write policy (DeltaMemConfig):
        "all" messages, or "user" messages only."""
        if policy == "all":
            return list(self.spans)
        if policy == "user":
            if len(self.roles) != len(self.spans):
                raise ValueError("write_policy='user' needs each message's role")
            return [s for s, r in zip(self.spans, self.roles, strict=True) if r == "user"]
        raise ValueError(f"unknown write policy {policy!r}")


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], *,
                add_generation_prompt: bool = False, prefix: list[dict[str, str]] | None = None
                ) -> EncodedChat:
    """Render ``messages`` with the chat template and locate each message's content tokens.

    Args:
        tokenizer: a fast HF tokenizer with a chat template (offsets are needed).
        messages: chat messages ({"role", "content"}).
        add_generation_prompt: append the assistant header.
        prefix: messages already rendered before these (e.g. earlier turns); only the text the
            template adds for ``messages`` after them is encoded, so a turn can be written alone.
    """
    prefix = prefix or []
    full = tokenizer.apply_chat_template(prefix + messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)
    head = tokenizer.apply_chat_template(prefix, tokenize=False) if prefix else ""
    if not full.startswith(head):
        raise AgentMemError("the chat template does not render conversations incrementally")
    text = full[len(head):]
    char_spans, cursor = [], 0
    for m in messages:
        content = m["content"]
        start = text.find(content, cursor) if content else -1
        if start < 0:
            raise AgentMemError(f"message content of role {m.get('role')!r} not found in the "
                                "rendered chat template")
        char_spans.append((start, start + len(content)))
        cursor = start + len(content)
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    spans = []
    for cs, ce in char_spans:
        toks = [i for i, (a, b) in enumerate(offsets) if a < ce and b > cs]
        spans.append((toks[0], toks[-1] + 1))
    return EncodedChat(list(enc["input_ids"]), spans, tuple(m.get("role", "") for m in messages))
