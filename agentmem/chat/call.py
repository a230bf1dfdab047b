"""What one chat call (or one batch wave) shares, and each row's finished reply.

Kept free of LangChain types: ``chat_model`` turns a `Reply` into chunks and messages.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from agentmem.chat.shared_backbone import ChatBackend
from agentmem.chat.tools import OPEN, parse_tool_calls
from agentmem.chat.turn_engine import Answer, Turn, TurnCancelled, TurnCheckpoint, TurnEngine
from agentmem.model.decoding import BatchDecoder, SamplingParams, TextStream


@dataclass
class Reply:
    """One row's answer plus what the response reports about it."""

    answer: Answer
    finish_reason: str  # "stop", "length" or "tool_calls"
    usage: dict[str, int]  # input_tokens, output_tokens, total_tokens
    model_name: str
    checkpoint: TurnCheckpoint | None = None

    @classmethod
    def parse(cls, model_name: str, raw: str, tools: bool, reason: str, n_in: int,
              n_out: int) -> Reply:
        """Split ``raw`` into content and tool calls (when tools are bound)."""
        parsed = parse_tool_calls(raw) if tools else None
        content = parsed.content if parsed else raw
        calls = [{"name": c.name, "args": c.args, "id": c.id} for c in parsed.calls] if parsed else []
        message = {"role": "assistant", "content": content, "tool_calls": calls}
        usage = {"input_tokens": n_in, "output_tokens": n_out, "total_tokens": n_in + n_out}
        return cls(Answer(raw, message), "tool_calls" if calls else reason, usage, model_name)

    @property
    def content(self) -> str:
        return self.answer.message["content"]

    @property
    def tool_calls(self) -> list[dict[str, Any]]:
        return self.answer.message["tool_calls"]

    @property
    def response_metadata(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "finish_reason": self.finish_reason,
                "memory": self.checkpoint.as_dict() if self.checkpoint else None}


@dataclass
class Call:
    """Backend, turn engine, sampling, stop strings and tools of one call."""

    model_name: str
    backend: ChatBackend
    engine: TurnEngine
    params: SamplingParams
    stop: list[str] = field(default_factory=list)
    tools: list[dict[str, Any]] | None = None
    prefill: str = ""  # forced start of the answer (tool_choice)

    def text_stream(self) -> TextStream:
        return TextStream(self.backend.tokenizer, self.stop, (OPEN,) if self.tools else (),
                          self.prefill)

    def decode(self, turns: list[Turn]) -> tuple[list[TextStream], BatchDecoder]:
        """Run the read pass of every turn to the end (the non-streaming batch path)."""
        decoder = self.backend.decoder([t.prompt for t in turns], [t.state for t in turns],
                                       self.params)
        texts = [self.text_stream() for _ in turns]
        for tokens in decoder:
            for b, token in enumerate(tokens):
                if token is not None:
                    texts[b].push(token)
                    if texts[b].stopped:
                        decoder.finish(b)
        return texts, decoder

    def finish(self, turns: list[Turn], texts: list[TextStream], decoder: BatchDecoder, *,
               cancel: threading.Event | None = None) -> list[Reply]:
        """Parse each row's answer, then write and save every keyed row's memory (unless the
        caller cancelled meanwhile: then nothing is written)."""
        replies = []
        for b, (turn, text) in enumerate(zip(turns, texts, strict=True)):
            text.flush()
            replies.append(Reply.parse(self.model_name, text.text.rstrip("\ufffd"), bool(self.tools),
                                       decoder.finish_reason[b], len(turn.prompt),
                                       decoder.generated[b]))
        if cancel is not None and cancel.is_set():
            raise TurnCancelled("the caller cancelled the turn; nothing was written")
        checkpoints = self.engine.commit(turns, [r.answer for r in replies])
        for reply, checkpoint in zip(replies, checkpoints, strict=True):
            reply.checkpoint = checkpoint
        return replies
