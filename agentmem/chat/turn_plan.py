"""Which messages a turn shows the backbone and which it writes into memory
(docs/design.md#the-conversation-protocol).

Messages here are plain dicts: ``{"role": "user" | "assistant" | "system" | "tool",
"content": str}`` plus ``tool_calls`` (list of ``{"name", "args", "id"}``) on assistant messages
and ``tool_call_id`` on tool messages.

A memory record keeps a `WrittenLog` per thread: a fingerprint chain of the messages written so
far plus the last few fingerprints. A call's messages are matched against it, so whether the caller
sends the whole history, a window of it or only the new message, each message is written once.
System messages are never written: they are instructions, shown on every read pass.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from agentmem.chat.tools import render_tool_call
from agentmem.errors import EmptyConversationError

TAIL = 64  # fingerprints kept per thread for matching a caller that sends only a window
MAX_THREADS = 256  # threads whose logs an agent-scope record keeps (oldest dropped first)
ROLES = ("user", "assistant", "system", "tool")


def fingerprint(message: dict[str, Any]) -> str:
    """Content id of a message: role, stripped text and tool calls (not their ids)."""
    calls = [[c["name"], c["args"]] for c in message.get("tool_calls") or []]
    raw = json.dumps([message["role"], message["content"].strip(), calls], sort_keys=True,
                     ensure_ascii=False)
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def chain(fingerprints: list[str]) -> str:
    """Order-sensitive digest of a fingerprint sequence."""
    h = hashlib.sha256()
    for fp in fingerprints:
        h.update(fp.encode())
    return h.hexdigest()[:32]


@dataclass
class ThreadLog:
    """What one thread has written: message count, chain of all of them, last `TAIL` of them."""

    count: int = 0
    chain: str = ""
    tail: list[str] = field(default_factory=list)

    def unwritten_start(self, fps: list[str]) -> int:
        """Index of the first message of ``fps`` not yet written.

        ``fps`` extends the written history (prefix match), or starts with its last few messages
        (window overlap), or shares nothing with it (everything is new).
        """
        if self.count and len(fps) >= self.count and chain(fps[: self.count]) == self.chain:
            return self.count
        for k in range(min(len(self.tail), len(fps)), 0, -1):
            if self.tail[-k:] == fps[:k]:
                return k
        return 0

    def record(self, fps: list[str], start: int, extra: list[str]) -> None:
        """Note that ``fps[start:]`` and then ``extra`` (e.g. the answer) were written."""
        seen = fps + extra
        self.count, self.chain = len(seen), chain(seen)
        self.tail = (self.tail + fps[start:] + extra)[-TAIL:]


class WrittenLog:
    """Thread logs of one memory record, stored in the record's JSON metadata."""

    def __init__(self, threads: dict[str, ThreadLog] | None = None) -> None:
        self.threads = threads or {}

    @classmethod
    def from_metadata(cls, metadata: dict[str, Any] | None) -> WrittenLog:
        raw = (metadata or {}).get("written", {})
        return cls({t: ThreadLog(v["count"], v["chain"], list(v["tail"])) for t, v in raw.items()})

    def to_metadata(self) -> dict[str, Any]:
        return {"written": {t: {"count": g.count, "chain": g.chain, "tail": g.tail}
                            for t, g in self.threads.items()}}

    def thread(self, thread_id: str) -> ThreadLog:
        return self.threads.get(thread_id, ThreadLog())

    def record(self, thread_id: str, fps: list[str], start: int, extra: list[str]) -> None:
        log = self.threads.pop(thread_id, ThreadLog())
        log.record(fps, start, extra)
        self.threads[thread_id] = log  # most recent last
        while len(self.threads) > MAX_THREADS:
            self.threads.pop(next(iter(self.threads)))


def fork_metadata(metadata: dict[str, Any] | None, source_thread: str, target_thread: str
                  ) -> dict[str, Any]:
    """Metadata for a copy of a memory record that thread ``target_thread`` continues from
    ``source_thread`` (a fork, a rewind): the source thread's written-message log under the new
    thread id, so that the messages both share are recognised and not written twice; other
    threads' logs are left out. The log's format stays private to this module."""
    log = WrittenLog.from_metadata(metadata)
    return WrittenLog({target_thread: log.thread(source_thread)}).to_metadata()


@dataclass(frozen=True)
class TurnPlan:
    """A call's messages sorted for the two passes.

    Attributes:
        visible: what the read pass shows: system messages, the ``window`` messages before the
            current turn, and the current turn (from the last user message on).
        new: messages not yet written (never system ones), in order.
        prefix: the call's messages before the first new one (rendered before it, not written).
        fingerprints: fingerprints of the call's non-system messages.
        start: index into ``fingerprints`` of the first new message.
    """

    visible: list[dict[str, Any]]
    new: list[dict[str, Any]]
    prefix: list[dict[str, Any]]
    fingerprints: list[str]
    start: int


def plan_turn(messages: list[dict[str, Any]], log: ThreadLog, window: int | None) -> TurnPlan:
    """Split ``messages`` into the read-pass context and the messages to write.

    Args:
        messages: the call's messages, oldest first.
        log: what the thread has written so far.
        window: non-system messages shown before the current turn; None shows all, 0 none.

    Raises:
        EmptyConversationError: no messages.
    """
    if not messages:
        raise EmptyConversationError("DeltaMemChatModel needs at least one message")
    others = [i for i, m in enumerate(messages) if m["role"] != "system"]
    fps = [fingerprint(messages[i]) for i in others]
    start = log.unwritten_start(fps)
    cut = others[start] if start < len(others) else len(messages)
    return TurnPlan(_visible(messages, window), [messages[i] for i in others[start:]],
                    messages[:cut], fps, start)


def _visible(messages: list[dict[str, Any]], window: int | None) -> list[dict[str, Any]]:
    if window is None:
        return list(messages)
    users = [i for i, m in enumerate(messages) if m["role"] == "user"]
    current = users[-1] if users else len(messages) - 1
    before = [i for i in range(current) if messages[i]["role"] != "system"]
    keep = set(before[len(before) - window :] if window else [])
    keep |= {i for i in range(current) if messages[i]["role"] == "system"}
    return [m for i, m in enumerate(messages) if i in keep or i >= current]


def template_message(message: dict[str, Any]) -> dict[str, Any]:
    """The dict a HF chat template expects (OpenAI-style ``tool_calls``)."""
    out = {"role": message["role"], "content": message["content"]}
    if message.get("tool_calls"):
        out["tool_calls"] = [{"id": c.get("id"), "type": "function",
                              "function": {"name": c["name"], "arguments": c["args"]}}
                             for c in message["tool_calls"]]
    if message.get("tool_call_id"):
        out["tool_call_id"] = message["tool_call_id"]
    return out


def written_message(message: dict[str, Any]) -> dict[str, Any]:
    """The dict a write pass renders: tool calls inlined as the markup the model generates."""
    parts = [message["content"]] if message["content"] else []
    parts += [render_tool_call(c["name"], c["args"]) for c in message.get("tool_calls") or []]
    return {"role": message["role"], "content": "\n".join(parts)}
