"""One conversation turn over a stored memory: load → read pass → write pass → save
(docs/design.md#the-conversation-protocol).

`TurnEngine.prepare` loads the key's record and builds the read-pass prompt; the caller decodes
(see ``generation``); `TurnEngine.commit` writes the new messages and the answer in one batched
write pass and saves each row. Nothing is saved until a row's whole write pass has run, so an error
never leaves a half-written state. When the store reports that another writer saved first, the
row's write pass is redone on top of the newer head, under the key's lock when the store has one,
with jittered back-off until ``save_timeout_s``; every attempt saves under one checkpoint id, so a
retry never stores the turn twice. A save that finally fails never costs the caller the reply:
the turn's `TurnCheckpoint` says ``saved=False`` and why (or, with ``on_save_error="raise"``, the
store's error is raised). Docs: docs/design.md#saving-under-contention-and-faults.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

from agentmem.chat.memory_store import (
    LockingMemoryStore,
    MemoryKey,
    MemoryRecord,
    MemoryStore,
    takes_checkpoint_id,
)
from agentmem.chat.shared_backbone import ChatBackend
from agentmem.chat.turn_plan import (
    TurnPlan,
    WrittenLog,
    fingerprint,
    plan_turn,
    template_message,
    written_message,
)
from agentmem.errors import AgentMemError, IncompleteHistoryError, MemoryConflictError
from agentmem.model.chat_template import EncodedChat
from agentmem.model.state import MemoryState

log = logging.getLogger("agentmem")
SAVE_TIMEOUT_S = 60.0
SaveErrors = Literal["report", "raise"]


class TurnCancelled(Exception):  # noqa: N818 - a signal, not an error
    """The caller stopped waiting for the turn (a cancelled task); nothing is written."""


@dataclass(frozen=True)
class Scope:
    """Memory of a call: ``key`` (None = no memory: nothing loaded or saved) and whose log."""

    key: MemoryKey | None
    thread: str = "default"
    kind: str = "thread"  # "thread" or "agent" (docs/design.md#state-checkpoints-and-scopes)


@dataclass(frozen=True)
class Answer:
    """A generated answer: ``raw`` text (what is written) and the message the caller gets back."""

    raw: str
    message: dict[str, Any]


@dataclass(frozen=True)
class TurnCheckpoint:
    """Where a key's memory stands after a call (reported in ``response_metadata``)."""

    scope: Scope
    checkpoint_id: str | None
    parent_checkpoint_id: str | None
    tokens_written: int
    inherited_from: str | None = None  # agent scope: the checkpoint a new thread started from
    error: str | None = None  # why the turn could not be saved (then checkpoint_id is None)

    @property
    def saved(self) -> bool:
        return self.error is None

    def as_dict(self) -> dict[str, Any]:
        key = self.scope.key
        return {"scope": self.scope.kind, "agent_id": key.agent_id if key else None,
                "thread_id": self.scope.thread, "checkpoint_id": self.checkpoint_id,
                "parent_checkpoint_id": self.parent_checkpoint_id,
                "inherited_from": self.inherited_from, "tokens_written": self.tokens_written,
                "saved": self.saved, "error": self.error}


@dataclass(frozen=True)
class Head:
    """What a turn builds on: the key's own record (the save's parent) and the record its state
    and message log start from (the same one, or the agent's latest for a new agent-scope thread)."""

    record: MemoryRecord | None = None
    source: MemoryRecord | None = None


@dataclass
class Turn:
    """A prepared call: its memory record, plan and read-pass prompt."""

    scope: Scope
    messages: list[dict[str, Any]]
    head: Head
    state: MemoryState
    plan: TurnPlan
    prompt: list[int]


@dataclass(frozen=True)
class _Job:
    chat: EncodedChat | None  # None: nothing to write
    metadata: dict[str, Any]


class TurnEngine:
    """Runs turns of one backend against one store.

    Args:
        backend: the loaded backbone with δ-mem.
        store: where memory records live.
        window: non-system messages shown before the current turn (None: all).
        max_new_tokens: reserved in every length check.
        save_timeout_s: how long a save keeps retrying (conflicts, a busy or unreachable store).
        on_save_error: "report" (the reply is returned; its checkpoint says ``saved=False``) or
            "raise" (the store's error propagates and the reply is lost).
    """

    def __init__(self, backend: ChatBackend, store: MemoryStore, window: int | None,
                 max_new_tokens: int, *, save_timeout_s: float = SAVE_TIMEOUT_S,
                 on_save_error: SaveErrors = "report") -> None:
        self.backend, self.store = backend, store
        self.window, self.max_new_tokens = window, max_new_tokens
        self.save_timeout_s, self.on_save_error = save_timeout_s, on_save_error
        self.whole_history = backend.dm.config.write_context == "history"
        if backend.dm.config.generation_writes and window is not None:
            raise ValueError(f"window={window}: this adapter writes the whole conversation while "
                             "it answers (generation_writes), so its read pass shows all of it; "
                             "use window=None")

    def prepare(self, messages: list[dict[str, Any]], scope: Scope, *, tools: list[dict] | None = None,
                prefill: str = "", read: bool = True) -> Turn:
        """Load the key's memory and build the read pass; raises before anything is written."""
        head = load_head(self.store, scope)
        state = head.source.state if head.source else self.backend.new_state()
        self.backend.dm.check_state(state)
        log = WrittenLog.from_metadata(head.source.metadata if head.source else None)
        plan = plan_turn(messages, log.thread(scope.thread), self.window)
        prompt: list[int] = []
        if read:
            prompt = self.backend.render_prompt([template_message(m) for m in plan.visible],
                                                tools, prefill)
            self.backend.check_length(len(prompt) + self.max_new_tokens,
                                      "the read pass (visible messages + answer)")
        turn = Turn(scope, messages, head, state, plan, prompt)
        if scope.key:  # the write pass must fit too: check it before generating
            job = self._job(turn, None, head)
            if job.chat is not None:
                self.backend.check_length(len(job.chat.input_ids) + self.max_new_tokens * read,
                                          "the write pass (new messages + answer)")
        return turn

    def commit(self, turns: list[Turn], answers: list[Answer | None]) -> list[TurnCheckpoint | None]:
        """Write each keyed turn's new messages and answer (one batched pass), then save."""
        jobs = [self._job(t, a, t.head) if t.scope.key else None
                for t, a in zip(turns, answers, strict=True)]
        rows = [i for i, j in enumerate(jobs) if j is not None and j.chat is not None]
        written = self.backend.write([jobs[i].chat for i in rows],
                                     [self._base(turns[i].state) for i in rows]) if rows else []
        states = {i: s for i, s in zip(rows, written, strict=True)}
        out: list[TurnCheckpoint | None] = []
        for i, (turn, answer, job) in enumerate(zip(turns, answers, jobs, strict=True)):
            if job is None:
                out.append(None)
            elif job.chat is None and answer is None:  # remember() of what memory already holds
                out.append(self._unchanged(turn))
            else:
                out.append(self._save(turn, answer, job, states.get(i, turn.state), turn.head))
        return out

    def _unchanged(self, turn: Turn) -> TurnCheckpoint:
        """Nothing new to write: no checkpoint is added; the current head is reported."""
        record, source = turn.head.record, turn.head.source
        inherited = source.checkpoint_id if source is not record and source else None
        return TurnCheckpoint(turn.scope, record.checkpoint_id if record else None, None,
                              int(turn.state.tokens_written[0]), inherited)

    def _save(self, turn: Turn, answer: Answer | None, job: _Job, state: MemoryState,
              head: Head) -> TurnCheckpoint:
        """Save the row; on a conflict redo its write pass on the newer head (under the key's lock
        when the store has one); retry busy or unreachable stores until ``save_timeout_s``."""
        assert turn.scope.key is not None
        cid = uuid.uuid4().hex  # one id for every attempt: a retry never saves the turn twice
        deadline = time.monotonic() + self.save_timeout_s
        attempt = 0
        while True:
            try:
                if attempt == 0:  # the write pass already ran on the head read by prepare
                    return self._save_on(turn, head, job, state, cid)
                if isinstance(self.store, LockingMemoryStore):
                    return self._save_locked(turn, answer, cid)
                head = load_head(self.store, turn.scope)
                job, state = self._rewrite(turn, answer, head)
                return self._save_on(turn, head, job, state, cid)
            except AgentMemError as e:
                retry = isinstance(e, MemoryConflictError) or getattr(e, "retryable", False)
                if not retry or time.monotonic() >= deadline:
                    return self._unsaved(turn, head, state, e)
            time.sleep(random.uniform(0.0, min(1.0, 0.01 * 2 ** min(attempt, 10))))
            attempt += 1

    def _save_on(self, turn: Turn, head: Head, job: _Job, state: MemoryState,
                 cid: str) -> TurnCheckpoint:
        assert turn.scope.key is not None
        parent = head.record.checkpoint_id if head.record else None
        extra = {"checkpoint_id": cid} if takes_checkpoint_id(self.store) else {}
        saved = self.store.save(turn.scope.key, state, job.metadata, parent=parent, **extra)
        return self._checkpoint(turn, head, saved, parent, state)

    def _save_locked(self, turn: Turn, answer: Answer | None, cid: str) -> TurnCheckpoint:
        assert turn.scope.key is not None and isinstance(self.store, LockingMemoryStore)
        with self.store.locked(turn.scope.key) as held:
            record = held.record
            if record is not None and record.checkpoint_id == cid:  # an earlier attempt saved it
                head = Head(record, record)
                return self._checkpoint(turn, head, cid, None, record.state)
            if record is None and turn.scope.kind == "agent":
                head = Head(None, self.store.latest_for_agent(turn.scope.key.agent_id))
            else:
                head = Head(record, record)
            job, state = self._rewrite(turn, answer, head)
            saved = held.save(state, job.metadata, checkpoint_id=cid)
        return self._checkpoint(turn, head, saved, record.checkpoint_id if record else None, state)

    def _rewrite(self, turn: Turn, answer: Answer | None, head: Head) -> tuple[_Job, MemoryState]:
        """The row's write pass redone on top of ``head``."""
        base = self._base(head.source.state if head.source else self.backend.new_state())
        job = self._job(turn, answer, head)
        return job, self.backend.write([job.chat], [base])[0] if job.chat else base

    def _checkpoint(self, turn: Turn, head: Head, cid: str, parent: str | None,
                    state: MemoryState) -> TurnCheckpoint:
        inherited = head.source.checkpoint_id if head.source is not head.record and head.source \
            else None
        return TurnCheckpoint(turn.scope, cid, parent, int(state.tokens_written[0]), inherited)

    def _unsaved(self, turn: Turn, head: Head, state: MemoryState,
                 error: AgentMemError) -> TurnCheckpoint:
        if self.on_save_error == "raise":
            raise error
        why = f"{type(error).__name__}: {error}"
        log.warning("memory %s: the turn was answered but not saved (%s)", turn.scope.key, why)
        parent = head.record.checkpoint_id if head.record else None
        return TurnCheckpoint(turn.scope, None, parent, int(state.tokens_written[0]), None, why)

    def _job(self, turn: Turn, answer: Answer | None, head: Head) -> _Job:
        """What a turn writes on top of ``head``, and the updated message log."""
        log = WrittenLog.from_metadata(head.source.metadata if head.source else None)
        plan = turn.plan if head is turn.head else \
            plan_turn(turn.messages, log.thread(turn.scope.thread), self.window)
        new = [written_message(m) for m in plan.new if _writable(m)]
        reply = [{"role": "assistant", "content": answer.raw}] \
            if answer is not None and answer.raw.strip() else []
        chat = None
        if (new or reply) and self.whole_history:  # the conversation so far, as one sequence
            self._check_whole(turn, plan.start, log.thread(turn.scope.thread).count)
            everything = [written_message(m) for m in turn.messages if _writable(m)] + reply
            chat = self.backend.render_write(everything, [])
            self.backend.check_length(len(chat.input_ids), "the write pass (the conversation)")
        elif new or reply:
            chat = self.backend.render_write(new + reply, [written_message(m) for m in plan.prefix])
            self.backend.check_length(len(chat.input_ids), "the write pass (new messages + answer)")
        extra = [fingerprint(answer.message)] if answer is not None else []
        log.record(turn.scope.thread, plan.fingerprints, plan.start, extra)
        return _Job(chat, log.to_metadata())

    def _check_whole(self, turn: Turn, start: int, written: int) -> None:
        """A conversation written as one sequence needs every message of it in the call."""
        if turn.scope.kind == "agent":
            raise IncompleteHistoryError(
                "this adapter writes a thread's whole conversation as one sequence "
                "(write_context='history'): it cannot continue another thread's memory; use "
                "memory_scope='thread'")
        if start != written:
            raise IncompleteHistoryError(
                f"this adapter writes the whole conversation as one sequence (write_context="
                f"'history'): send all {written} messages already written in this thread, in "
                "order, with every call (not only a window of them)")

    def _base(self, state: MemoryState) -> MemoryState:
        """The state a write pass starts from: the head's, or an empty one when the whole
        conversation is rewritten."""
        return self.backend.new_state() if self.whole_history else state


def _writable(message: dict[str, Any]) -> bool:
    return bool(message["content"].strip() or message.get("tool_calls"))


def load_head(store: MemoryStore, scope: Scope) -> Head:
    """The key's record and where its memory starts (see `Head`)."""
    if scope.key is None:
        return Head()
    record = store.load(scope.key)
    if record is None and scope.kind == "agent":
        return Head(None, store.latest_for_agent(scope.key.agent_id))
    return Head(record, record)


def waves(scopes: list[Scope]) -> list[list[int]]:
    """Rows grouped so that no wave holds one memory key twice (later rows in later waves)."""
    groups: list[tuple[list[int], set[MemoryKey]]] = []
    for i, s in enumerate(scopes):
        group = next((g for g in groups if s.key is None or s.key not in g[1]), None)
        if group is None:
            group = ([], set())
            groups.append(group)
        group[0].append(i)
        if s.key is not None:
            group[1].add(s.key)
    return [rows for rows, _ in groups]
