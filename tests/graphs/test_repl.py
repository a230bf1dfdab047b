"""The ``agentmem chat`` REPL: streamed answers, Ctrl-C during a turn and at the prompt, commands."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from agentmem.chat.shared_backbone import ChatBackend
from graphs import MemoryContext, build_memory_agent, sqlite_checkpointer
from graphs.repl import CANCELLED, COMMANDS, HELP, ChatSession
from tests.graphs.conftest import cfg, same_state, written_state


def _script(*lines: str, then: type[BaseException] = EOFError):
    """A ``read`` that returns ``lines`` in turn, then raises ``then``."""
    it = iter(lines)

    def read(prompt: str) -> str:
        try:
            return next(it)
        except StopIteration:
            raise then from None

    return read


class _Interrupting:
    """A decoder that raises KeyboardInterrupt (Ctrl-C) after ``after`` steps of the answer."""

    def __init__(self, inner: Any, after: int) -> None:
        self.inner, self.after = inner, after

    def __iter__(self) -> Iterator[Any]:
        for i, tokens in enumerate(self.inner):
            if i == self.after:
                raise KeyboardInterrupt
            yield tokens

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture
def ctrl_c_on(monkeypatch):
    """``ctrl_c_on(text)``: Ctrl-C arrives in the middle of the answer to the user turn ``text``."""
    real = ChatBackend.decoder
    targets: set[str] = set()

    def decoder(self, prompts, states, params):
        d = real(self, prompts, states, params)
        prompt = self.tokenizer.decode(prompts[0])
        return _Interrupting(d, after=2) if any(t in prompt for t in targets) else d

    monkeypatch.setattr(ChatBackend, "decoder", decoder)
    return targets.add


def _session(graph: Any, context: MemoryContext, lines: list[str],
             pieces: list[str] | None = None) -> ChatSession:
    """A session printing lines to ``lines`` and answers to ``pieces`` (None: stdout)."""
    if pieces is None:
        return ChatSession(graph, context, out=lines.append)
    return ChatSession(graph, context, out=lines.append, write=pieces.append)


def test_answers_stream_in_pieces(graph, context):
    lines, pieces = [], []
    _session(graph, context, lines, pieces).handle("My sister Lin lives in Porto.")
    answer = graph.get_state(cfg("main")).values["messages"][-1].text
    assert pieces[0] == "assistant> " and pieces[-1].endswith("\n")
    assert len(pieces) >= 4, pieces  # the prefix, several tokens, the line end
    assert "".join(pieces) == f"assistant> {answer}\n"
    assert lines[-1].startswith("  [memory] checkpoint ")


def _run(session: ChatSession, read) -> None:
    try:
        session.loop(read)
    except KeyboardInterrupt:  # pytest would stop the whole run
        pytest.fail("Ctrl-C during a turn escaped the REPL")


def test_ctrl_c_during_a_turn_keeps_nothing_of_it(graph, context, tiny_backbone, tmp_path, ctrl_c_on):
    ctrl_c_on("Forget me")
    lines: list[str] = []
    _run(_session(graph, context, lines),
         _script("My sister Lin lives in Porto.", "Forget me: 1234.", "Where does Lin live?", "/quit"))
    assert lines.count(CANCELLED) == 1 and len([x for x in lines if "[memory]" in x]) == 2
    values = graph.get_state(cfg("main")).values
    assert not any("Forget me" in m.text for m in values["messages"])
    history = context.repository.history("assistant", "main")
    assert len(history) == 2  # the two answered turns, one memory checkpoint each

    # the same conversation without the cancelled turn: the same messages and the same memory
    db = tmp_path / "control.sqlite3"
    control = MemoryContext.open(str(db), backbone=tiny_backbone, max_new_tokens=6, device="cpu", window=4)
    control.repository.setup()
    saver = sqlite_checkpointer(db)
    other = build_memory_agent(saver, context=control)
    _run(_session(other, control, []), _script("My sister Lin lives in Porto.", "Where does Lin live?"))
    expected = other.get_state(cfg("main")).values
    assert [m.text for m in values["messages"]] == [m.text for m in expected["messages"]]
    assert same_state(written_state(context, values), written_state(control, expected))
    saver.conn.close()
    control.repository.close()


def test_ctrl_c_during_the_first_turn_leaves_the_thread_empty(graph, context, ctrl_c_on, capsys):
    ctrl_c_on("Hello")
    lines: list[str] = []
    _run(_session(graph, context, lines), _script("Hello there."))
    assert CANCELLED in lines
    out = capsys.readouterr().out
    assert out.startswith("assistant> ") and out.endswith("\n")  # streamed, then the cut line ended
    assert graph.get_state(cfg("main")).values == {}
    assert context.repository.list_threads("assistant") == []


@pytest.mark.parametrize("end", [EOFError, KeyboardInterrupt])
def test_ctrl_d_or_ctrl_c_at_the_prompt_leaves_with_one_line(graph, context, end):
    lines: list[str] = []
    _session(graph, context, lines).loop(_script(then=end))
    assert lines[1:] == ["\nbye"]


def test_unknown_command_is_named_then_the_commands_listed(graph, context):
    lines: list[str] = []
    session = _session(graph, context, lines)
    assert session.handle("/foo bar")
    assert lines == ["unknown command /foo", HELP]
    lines.clear()
    session.handle("/help")
    assert lines == [HELP] and all(c.split()[0] in HELP for c in COMMANDS)
