"""Loads a transcript (TOML, see README.md here) and plays it through the compiled graph.

Every step runs one action, then checks its ``expect`` table. Unknown keys are errors, so a typo
never turns an expectation into a silent no-op.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from graphs import memory_lineage, memory_of
from graphs.branches import is_branch_of
from graphs.ranking import rank_last_turn
from graphs.state import MemoryRef, ref_base
from tests.transcripts.harness import Harness

TOP_KEYS = {"description", "graph", "backbone", "modes", "databases", "requires", "context", "step"}
ACTIONS = {"user", "user_chars", "concurrent", "fork", "forget", "restart", "prune"}
STEP_KEYS = ACTIONS | {"thread", "from", "label", "repeat", "expect", "rank"}
EXPECT_KEYS = {"error", "error_match", "agent", "chain", "chains", "messages", "read", "read_state",
               "in_lineage", "not_in_lineage", "window_has", "window_lacks", "prompt_messages",
               "store_threads", "heads", "checkpoints", "chain_by_thread", "reply_words_min",
               "reply_lacks"}


@dataclass
class Transcript:
    """One parsed transcript file."""

    name: str
    description: str
    graph: str
    backbone: str
    modes: list[str]
    databases: list[str]
    context: dict[str, Any]
    steps: list[dict[str, Any]]
    requires: str | None = None

    @classmethod
    def load(cls, path: Path) -> Transcript:
        raw = tomllib.loads(path.read_text())
        _keys(raw, TOP_KEYS, path.name)
        steps = raw.get("step", [])
        for i, step in enumerate(steps):
            _keys(step, STEP_KEYS, f"{path.name} step {i}")
            _keys(step.get("expect", {}), EXPECT_KEYS, f"{path.name} step {i} expect")
            if len(ACTIONS & step.keys()) != 1:
                raise ValueError(f"{path.name} step {i}: exactly one of {sorted(ACTIONS)}")
        t = cls(path.stem, raw["description"], raw.get("graph", "agent"), raw.get("backbone", "tiny"),
                raw.get("modes", ["sync"]), raw.get("databases", ["sqlite"]), raw.get("context", {}),
                steps, raw.get("requires"))
        if t.requires not in (None, "trained-adapter"):
            raise ValueError(f"{path.name}: requires {t.requires!r}")
        if t.graph not in ("agent", "router") or t.backbone not in ("tiny", "default"):
            raise ValueError(f"{path.name}: graph {t.graph!r} / backbone {t.backbone!r}")
        return t


def _keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = set(table) - allowed
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")


@dataclass
class Label:
    """What a labelled step left: its thread, agent, memory ref and graph checkpoint config."""

    thread: str
    agent: str
    ref: MemoryRef | None
    config: dict[str, Any]


@dataclass
class Player:
    """Plays one transcript on a harness."""

    harness: Harness
    thread: str = "main"
    labels: dict[str, Label] = field(default_factory=dict)
    checked: int = 0  # expectations checked (a transcript must check something)

    def play(self, transcript: Transcript) -> None:
        for i, step in enumerate(transcript.steps):
            try:
                self.step(step)
            except AssertionError as e:
                raise AssertionError(f"{transcript.name} step {i} ({_show(step)}): {e}") from e
        assert self.checked, f"{transcript.name} checks nothing"

    def step(self, step: dict[str, Any]) -> None:
        self.thread = step.get("thread", self.thread)
        expect = dict(step.get("expect", {}))
        for n in range(step.get("repeat", 1)):
            error = self._act(step, n)
            self._check_error(error, expect)
        if error is None and "label" in step:
            self._label(step["label"])
        self._check(expect)
        if "rank" in step:
            self._rank(step["rank"])

    # -- actions -------------------------------------------------------------------------------

    def _act(self, step: dict[str, Any], n: int) -> BaseException | None:
        h = self.harness
        try:
            if "user" in step or "user_chars" in step:
                text = step["user"].format(i=n + 1) if "user" in step else "word " * (step["user_chars"] // 5)
                start = self.labels[step["from"]].config if "from" in step else None
                h.prompts.prompts.clear()
                h.turn(self.thread, text, start)
            elif "concurrent" in step:
                results = h.concurrent([(c["thread"], c["user"]) for c in step["concurrent"]])
                errors = [r for r in results if isinstance(r, BaseException)]
                assert not errors, f"concurrent turns failed: {errors!r}"
            elif "fork" in step:
                source = self.labels[step["from"]].config if "from" in step else \
                    {"configurable": {"thread_id": self.thread}}
                h.fork(source, step["fork"])
            elif "forget" in step:
                h.forget(self.thread)
            elif "restart" in step:
                h.restart()
            elif "prune" in step:
                ref = self._ref(self.thread, None)
                h.repo.prune(self._agent(None), ref["thread"], keep_last=step["prune"])
        except AssertionError:
            raise
        except Exception as e:  # noqa: BLE001 - checked against the step's `error`
            return e
        return None

    def _label(self, name: str) -> None:
        snap = self.harness.state(self.thread)
        agent = snap.values.get("agent_id") or self.harness.context.agent_id
        self.labels[name] = Label(self.thread, agent, memory_of(snap.values, agent), snap.config)

    # -- expectations --------------------------------------------------------------------------

    def _check_error(self, error: BaseException | None, expect: dict[str, Any]) -> None:
        want = expect.get("error")
        if want is None:
            assert error is None, f"unexpected {type(error).__name__}: {error}"
            return
        self.checked += 1
        assert error is not None, f"expected {want}, nothing was raised"
        assert type(error).__name__ == want, f"expected {want}, got {type(error).__name__}: {error}"
        assert expect.get("error_match", "") in str(error), f"{error} lacks {expect['error_match']!r}"

    def _agent(self, agent: str | None) -> str:
        if agent:
            return agent
        values = self.harness.state(self.thread).values
        return values.get("agent_id") or self.harness.context.agent_id

    def _ref(self, thread: str, agent: str | None) -> MemoryRef | None:
        values = self.harness.state(thread).values
        return memory_of(values, agent or values.get("agent_id") or self.harness.context.agent_id)

    def _lineage(self, thread: str, agent: str | None = None) -> list[str]:
        agent = self._agent(agent)
        ref = self._ref(thread, agent)
        return [i.checkpoint_id for i in memory_lineage(self.harness.repo, agent, ref_base(ref))]

    def _check(self, expect: dict[str, Any]) -> None:
        expect = {k: v for k, v in expect.items() if k not in ("error", "error_match")}
        for key, want in expect.items():
            getattr(self, f"_expect_{key}")(want)
            self.checked += 1

    def _expect_agent(self, want: str) -> None:
        got = self.harness.state(self.thread).values.get("agent_id")
        assert got == want, f"answered by {got!r}, expected {want!r}"

    def _expect_chain(self, want: int) -> None:
        got = len(self._lineage(self.thread))
        assert got == want, f"memory chain has {got} checkpoints, expected {want}"

    def _expect_chains(self, want: dict[str, int]) -> None:
        got = {a: len(self._lineage(self.thread, a)) for a in want}
        assert got == want, f"memory chains {got}, expected {want}"

    def _expect_chain_by_thread(self, want: dict[str, int]) -> None:
        got = {t: len(self._lineage(t)) for t in want}
        assert got == want, f"memory chains by thread {got}, expected {want}"

    def _expect_messages(self, want: int) -> None:
        got = len(self.harness.state(self.thread).values.get("messages", []))
        assert got == want, f"{got} messages in the thread, expected {want}"

    def _expect_read(self, want: str) -> None:
        ref = self._ref(self.thread, None)
        assert ref is not None, "no memory ref in the graph state"
        expected = None if want == "empty" else ref_base(self.labels[want].ref)
        assert ref["read"] == expected, f"the turn read {ref['read']}, expected {expected} ({want})"

    def _expect_read_state(self, want: str) -> None:
        ref, label = self._ref(self.thread, None), self.labels[want]
        repo = self.harness.repo
        got = repo.get(label.agent, ref["thread"], ref["read"]).state
        exp = repo.get(label.agent, label.ref["thread"], ref_base(label.ref)).state
        assert torch.equal(got.tensors, exp.tensors) and torch.equal(
            got.tokens_written, exp.tokens_written), f"the turn did not read the state of {want!r}"

    def _expect_in_lineage(self, want: list[str]) -> None:
        chain = self._lineage(self.thread)
        for name in want:
            assert ref_base(self.labels[name].ref) in chain, f"{name!r} is not in the memory chain"

    def _expect_not_in_lineage(self, want: list[str]) -> None:
        chain = self._lineage(self.thread)
        for name in want:
            assert ref_base(self.labels[name].ref) not in chain, f"{name!r} is in the memory chain"

    def _prompt_text(self) -> str:
        prompts = self.harness.prompts.prompts
        assert prompts, "no chat-model call was recorded"
        return "\n".join(m.text for m in prompts[-1])

    def _expect_window_has(self, want: list[str]) -> None:
        for s in want:
            assert s in self._prompt_text(), f"{s!r} is not in the prompt"

    def _expect_window_lacks(self, want: list[str]) -> None:
        for s in want:
            assert s not in self._prompt_text(), f"{s!r} is in the prompt"

    def _reply(self) -> str:
        messages = self.harness.state(self.thread).values.get("messages", [])
        assert messages and messages[-1].type == "ai", "the thread's last message is not a reply"
        return messages[-1].text

    def _expect_reply_words_min(self, want: int) -> None:
        got = self._reply()
        assert len(got.split()) >= want, f"the reply {got!r} has fewer than {want} words"

    def _expect_reply_lacks(self, want: list[str]) -> None:
        got = self._reply().lower()
        for s in want:
            assert s.lower() not in got, f"{s!r} is in the reply {got!r}"

    def _expect_prompt_messages(self, want: int) -> None:
        got = len(self.harness.prompts.prompts[-1])
        assert got == want, f"the prompt had {got} messages, expected {want}"

    def _expect_store_threads(self, want: int) -> None:
        agent = self._agent(None)
        got = [t.thread_id for t in self.harness.repo.list_threads(agent)
               if is_branch_of(t.thread_id, self.thread)]
        assert len(got) == want, f"store threads of {self.thread!r}: {got}, expected {want}"

    def _expect_heads(self, want: dict[str, str]) -> None:
        for thread, name in want.items():
            ref = self._ref(thread, self.labels[name].agent)
            assert ref_base(ref) == ref_base(self.labels[name].ref), f"{thread!r} moved off {name!r}"

    def _expect_checkpoints(self, want: dict[str, int]) -> None:
        repo = self.harness.repo
        got = {a: sum(len(repo.history(a, t.thread_id)) for t in repo.list_threads(a)) for a in want}
        assert got == want, f"stored checkpoints per agent {got}, expected {want}"

    def _rank(self, rank: dict[str, Any]) -> None:
        values = self.harness.state(self.thread).values
        ranking = rank_last_turn(self.harness.context, values, rank["candidates"])
        if "without_memory" in rank:
            assert ranking.best_without_memory == rank["without_memory"], ranking
            self.checked += 1
        if "with_memory" in rank:
            assert ranking.best_with_memory == rank["with_memory"], ranking
            self.checked += 1


def _show(step: dict[str, Any]) -> str:
    action = next(iter(ACTIONS & step.keys()))
    value = str(step[action])
    return f"{action}={value[:40]!r}" + ("…" if len(value) > 40 else "")
