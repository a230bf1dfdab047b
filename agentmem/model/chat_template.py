"""Token ids and per-message token spans of a conversation, from the tokenizer's chat template."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentmem.errors import AgentMemError

ROLES_NOT_WRITTEN = ("system",)  # instructions, shown on every read pass, never written
SPANS = ("content", "template")  # DeltaMemConfig.message_span


@dataclass(frozen=True)
class EncodedChat:
    """input_ids of a rendered conversation and each message's token span."""

    input_ids: list[int]
    spans: list[tuple[int, int]]  # [start, end) token indices, one per message, in order
    roles: tuple[str, ...] = ()  # each message's role, aligned with ``spans``

    def written_spans(self, policy: str = "all") -> list[tuple[int, int]]:
        """The spans a message-level write pass writes under a write policy (DeltaMemConfig):
        "all" messages, or "user" messages only. System messages are never written."""
        if policy not in ("all", "user"):
            raise ValueError(f"unknown write policy {policy!r}")
        if not self.roles:
            if policy == "user":
                raise ValueError("write_policy='user' needs each message's role")
            return list(self.spans)
        pairs = zip(self.spans, self.roles, strict=True)
        if policy == "user":
            return [s for s, r in pairs if r == "user"]
        return [s for s, r in pairs if r not in ROLES_NOT_WRITTEN]


def encode_chat(tokenizer: Any, messages: list[dict[str, str]], *,
                add_generation_prompt: bool = False, prefix: list[dict[str, str]] | None = None,
                span: str = "content") -> EncodedChat:
    """Render ``messages`` with the chat template and locate each message's tokens.

    Args:
        tokenizer: a fast HF tokenizer with a chat template (offsets are needed).
        messages: chat messages ({"role", "content"}).
        add_generation_prompt: append the assistant header.
        prefix: messages already rendered before these (e.g. earlier turns); only the text the
            template adds for ``messages`` after them is encoded, so a turn can be written alone.
        span: what a message's span covers: its "content" tokens, or the whole text the template
            adds for it ("template": role header, content, end of turn; the first message's span
            also holds whatever the template puts before it, e.g. a default system prompt).
    """
    if span not in SPANS:
        raise ValueError(f"span={span!r}; expected one of {SPANS}")
    prefix = prefix or []
    full = tokenizer.apply_chat_template(prefix + messages, tokenize=False,
                                         add_generation_prompt=add_generation_prompt)
    head = _render(tokenizer, prefix)
    if not full.startswith(head):
        raise AgentMemError("the chat template does not render conversations incrementally")
    text = full[len(head):]
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    offsets = enc["offset_mapping"]
    if span == "content":
        spans = [_tokens_overlapping(offsets, cs, ce) for cs, ce in _content_chars(text, messages)]
    else:
        spans = [_tokens_ending_in(offsets, cs, ce)
                 for cs, ce in _template_chars(tokenizer, prefix, messages, head)]
    return EncodedChat(list(enc["input_ids"]), spans, tuple(m.get("role", "") for m in messages))


def _render(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False) if messages else ""


def _content_chars(text: str, messages: list[dict[str, str]]) -> list[tuple[int, int]]:
    """[start, end) characters of each message's content in ``text``."""
    char_spans, cursor = [], 0
    for m in messages:
        content = m["content"]
        start = text.find(content, cursor) if content else -1
        if start < 0:
            raise AgentMemError(f"message content of role {m.get('role')!r} not found in the "
                                "rendered chat template")
        char_spans.append((start, start + len(content)))
        cursor = start + len(content)
    return char_spans


def _template_chars(tokenizer: Any, prefix: list[dict[str, str]], messages: list[dict[str, str]],
                    head: str) -> list[tuple[int, int]]:
    """[start, end) characters (after ``head``) that the template adds for each message: the
    difference between the renders of the conversation up to it and up to the one before."""
    char_spans, before = [], head
    for i in range(len(messages)):
        after = _render(tokenizer, prefix + messages[: i + 1])
        if not after.startswith(before):
            raise AgentMemError("the chat template does not render conversations incrementally")
        char_spans.append((len(before) - len(head), len(after) - len(head)))
        before = after
    return char_spans


def _tokens_overlapping(offsets: list[tuple[int, int]], cs: int, ce: int) -> tuple[int, int]:
    toks = [i for i, (a, b) in enumerate(offsets) if a < ce and b > cs]
    return toks[0], toks[-1] + 1


def _tokens_ending_in(offsets: list[tuple[int, int]], cs: int, ce: int) -> tuple[int, int]:
    """Tokens whose last character lies in [cs, ce): a token across the boundary belongs to the
    later message, as when the later render re-tokenises the earlier one's tail."""
    toks = [i for i, (_, b) in enumerate(offsets) if cs < b <= ce]
    if not toks:
        raise AgentMemError(f"no token ends in characters {cs}..{ce} of the rendered template")
    return toks[0], toks[-1] + 1
