"""``agentmem chat`` (the REPL), ``agentmem demo`` and the graph langgraph.json serves."""

from __future__ import annotations

import argparse
import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest

from agentmem.cli import main
from agentmem.model.backbones import DEFAULT_BACKBONE
from graphs.checkpointers import default_checkpoint_path
from graphs.cli import add_subcommands
from graphs.repl import COMMANDS, HELP, ChatSession
from store import MemoryRepository

ROOT = Path(__file__).resolve().parents[2]


def _parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="agentmem")
    add_subcommands(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_subcommands_register_chat_and_demo():
    args = _parse("chat", "--db", "x.db", "--agent", "a", "--thread", "t", "--window", "2",
                  "--scope", "agent")
    assert (args.command, args.db, args.agent, args.thread, args.window, args.scope) == \
        ("chat", "x.db", "a", "t", 2, "agent")
    args = _parse("demo")
    assert (args.db, args.backbone, args.window, args.max_new_tokens) == (None, DEFAULT_BACKBONE, 4, 24)


@pytest.mark.parametrize("argv, flag", [
    (["chat", "--window", "-1"], "--window"),
    (["chat", "--window", "two"], "--window"),
    (["chat", "--max-new-tokens", "0"], "--max-tokens/--max-new-tokens"),
    (["demo", "--max-tokens", "0"], "--max-tokens/--max-new-tokens"),
    (["chat", "--backbone", "/no/such/backbone"], "--backbone"),
    (["chat", "--backbone", "no-such-name"], "--backbone"),
    (["chat", "--adapter", "{tmp}"], "--adapter"),  # a folder without adapter files
])
def test_bad_options_exit_2_with_one_line_naming_the_flag(argv, flag, tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main([a.format(tmp=tmp_path) for a in argv])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.count("\n") == 1, err
    assert err.startswith(f"agentmem {argv[0]}: error: argument {flag}: ") and "max_tokens" not in err


def test_an_adapter_that_does_not_load_is_refused_before_the_database_opens(tiny_backbone, tmp_path,
                                                                             capsys, monkeypatch):
    folder = tmp_path / "adapter"
    folder.mkdir()
    (folder / "delta_mem_config.json").write_text("{}")
    (folder / "delta_mem_adapter.safetensors").write_bytes(b"not safetensors")
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("prompted"))
    db = tmp_path / "chat.sqlite3"
    assert main(["chat", "--backbone", tiny_backbone, "--adapter", str(folder), "--db", str(db)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("agentmem chat: error: argument --adapter: cannot read adapter folder")
    assert err.count("\n") == 1 and not db.exists()


def test_chat_help_lists_the_commands_and_the_default_database(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")  # one line per flag
    with pytest.raises(SystemExit) as e:
        main(["chat", "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and str(default_checkpoint_path()) in out
    assert all(command in out for command in COMMANDS) and "Ctrl-C" in out
    assert "(default: 4)" in out and "(default: 64)" in out and f"(default: {DEFAULT_BACKBONE})" in out


def test_chat_loads_the_model_before_the_first_prompt_without_progress_bars(tiny_backbone, tmp_path,
                                                                           monkeypatch, capsys):
    import agentmem.chat.shared_backbone as shared

    backbone = shutil.copytree(tiny_backbone, tmp_path / "backbone")  # not loaded yet in this process
    events: list[str] = []
    real = shared._load
    monkeypatch.setattr(shared, "_load", lambda *a: events.append("load") or real(*a))
    lines = iter(["Hi!"])

    def read(prompt: str) -> str:
        events.append("prompt")
        return next(lines, None) or _raise(EOFError)

    monkeypatch.setattr("builtins.input", read)
    assert main(["chat", "--db", str(tmp_path / "chat.sqlite3"), "--backbone", str(backbone),
                 "--max-new-tokens", "4"]) == 0
    captured = capsys.readouterr()
    assert events == ["load", "prompt", "prompt"]
    assert "Loading weights" not in captured.err + captured.out
    assert captured.out.rstrip().endswith("bye")  # Ctrl-D at the prompt: one line, no traceback


def _raise(error: type[BaseException]) -> str:
    raise error


def test_chat_repl_session(tiny_backbone, tmp_path, monkeypatch, capsys):
    lines = iter(["My sister Lin lives in Porto.", "/threads", "/fork copy", "Hello from the copy.",
                  "/thread main", "   ", "/forget", "/fork", "/bogus", "/threads", "/quit",
                  "never read"])
    monkeypatch.setattr("builtins.input", lambda prompt: next(lines))
    db = tmp_path / "chat.sqlite3"
    args = _parse("chat", "--db", str(db), "--backbone", tiny_backbone, "--max-new-tokens", "4")
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert len(re.findall(r"\[memory\] checkpoint [0-9a-f]{32} .*tokens written \d+ \(\+\d+\)", out)) == 2
    assert "forked 'main' into 'copy'; now in 'copy'" in out and "usage: /fork NAME" in out
    assert "forgot thread 'main': 1 memory checkpoints" in out and HELP in out
    assert re.search(r"\* main  head [0-9a-f]{12}  1 checkpoints", out)  # the first /threads
    assert re.search(r"\n  copy  head [0-9a-f]{12}  2 checkpoints", out)  # the last, from main
    assert next(lines) == "never read"  # /quit ended the loop
    repo = MemoryRepository(str(db))
    assert [t.thread_id for t in repo.list_threads("assistant")] == ["copy"]
    assert len(repo.history("assistant", "copy")) == 2  # the fork's copy + the turn in copy
    repo.close()


def test_repl_reports_bad_turns_and_names(graph, context):
    out: list[str] = []
    session = ChatSession(graph, context, out=out.append)
    assert session.handle("") and out[-1].startswith("error: TurnRejectedError: the user turn is empty")
    session.handle("hello")
    session.handle("/fork main")
    assert out[-1] == "error: ValueError: thread 'main' already exists"
    assert not session.handle("/quit")


def _rankings(out: str) -> list[str]:
    return [line for line in out.splitlines() if "memory:" in line or "ranked first" in line]


def test_demo_plays_sessions_and_ranks_with_and_without_memory(tiny_backbone, tmp_path, capsys):
    db = tmp_path / "demo.sqlite3"
    args = _parse("demo", "--db", str(db), "--backbone", tiny_backbone, "--max-new-tokens", "4")
    assert args.func(args) == 0
    first = capsys.readouterr().out
    assert len(re.findall(r"  with memory:    1\. .* 4\. ", first)) == 4
    assert len(re.findall(r"  without memory: 1\. .* 4\. ", first)) == 4
    assert "freshly initialised (untrained)" in first and "chance 1/4" in first
    assert first.count("  frozen backbone: ") == 6  # each first-session reply beside the frozen one
    assert "words reading the memory" in first
    args.func(args)  # a rerun on the same file starts clean and gives the same rankings
    assert _rankings(capsys.readouterr().out) == _rankings(first)
    repo = MemoryRepository(str(db))
    chains = {t.thread_id: len(repo.history("demo", t.thread_id)) for t in repo.list_threads("demo")}
    assert chains == {"session-1": 3, "session-2": 4, "session-3": 5}  # agent scope: a fork + turns
    repo.close()


@pytest.mark.slow
def test_demo_on_the_default_backbone(tmp_path, capsys):
    from graphs.demo import QUESTIONS, run_demo

    score = run_demo(tmp_path / "demo.sqlite3", backbone=DEFAULT_BACKBONE, adapter=None, max_new_tokens=8)
    out = capsys.readouterr().out
    assert score["questions"] == len(QUESTIONS) and len(_rankings(out)) == 2 * len(QUESTIONS) + 1
    assert 0 <= score["with_memory"] <= len(QUESTIONS)
    # the shipped adapter's memory does not speak over the model: the first sessions' replies are
    # about as long as the frozen backbone's on the same prompts (the adapter shipped before it
    # answered them with bare values: "garden" to a job announcement)
    assert score["reply_words"] >= 0.6 * score["frozen_reply_words"] > 0, score


def test_langgraph_json_serves_the_memory_agent(tiny_backbone, tmp_path, monkeypatch):
    spec = json.loads((ROOT / "langgraph.json").read_text())
    path, name = spec["graphs"]["memory_agent"].split(":")
    assert (ROOT / path).is_file() and spec["dependencies"] == ["."]
    monkeypatch.setenv("AGENTMEM_STORE_URL", str(tmp_path / "served.sqlite3"))
    monkeypatch.setenv("AGENTMEM_BACKBONE", tiny_backbone)
    monkeypatch.setenv("AGENTMEM_MAX_NEW_TOKENS", "4")
    module_spec = importlib.util.spec_from_file_location("served_graph", ROOT / path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    graph = getattr(module, name)
    assert graph.checkpointer is None  # the server brings its own
    out = graph.invoke({"messages": [("user", "hello")]})
    ref = out["memory"]["assistant"]
    repo = MemoryRepository(str(tmp_path / "served.sqlite3"))
    assert repo.latest("assistant", ref["thread"]).checkpoint_id == ref["written"]
    repo.close()
