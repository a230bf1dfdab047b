"""The ``agentmem chat`` and ``agentmem demo`` subcommands.

``agentmem.cli`` never imports this package: it finds `add_chat` and `add_demo` through the
``agentmem.commands`` entry points this distribution declares (docs/design.md#architecture).
"""

from __future__ import annotations

import argparse
import tempfile
import warnings
from pathlib import Path

from agentmem.model.backbones import DEFAULT_BACKBONE

__all__ = ["add_chat", "add_demo", "add_subcommands", "chat_main", "demo_main"]


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``chat`` and ``demo`` on the ``agentmem`` command's subparsers."""
    add_chat(sub)
    add_demo(sub)


def add_chat(sub: argparse._SubParsersAction) -> None:
    """Register ``agentmem chat``: the REPL over a persistent agent."""
    chat = sub.add_parser("chat", help="talk to a δ-mem agent; conversations and memory persist")
    _model_options(chat, max_new_tokens=64)
    chat.add_argument("--db", default=None,
                      help="SQLite file for memory and conversations (default: the store's file)")
    chat.add_argument("--agent", default="assistant")
    chat.add_argument("--thread", default="main")
    chat.add_argument("--scope", choices=["thread", "agent"], default="thread",
                      help="agent: a new thread starts from the agent's latest memory")
    chat.set_defaults(func=chat_main)


def add_demo(sub: argparse._SubParsersAction) -> None:
    """Register ``agentmem demo``: the main job, a multi-session conversation."""
    demo = sub.add_parser("demo", help="a multi-session conversation recalled through δ-mem memory: "
                          "answers and candidate rankings with and without memory")
    _model_options(demo, max_new_tokens=24)
    demo.add_argument("--db", default=None, help="SQLite file to play into (default: a new temp file)")
    demo.set_defaults(func=demo_main)


def _model_options(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--backbone", default=DEFAULT_BACKBONE, help="embedded name or local HF folder")
    p.add_argument("--adapter", default=None, help="adapter folder (default: the shipped one)")
    p.add_argument("--window", type=int, default=4, help="messages shown before each user turn")
    p.add_argument("--max-new-tokens", type=int, default=max_new_tokens)


def chat_main(args: argparse.Namespace) -> int:
    """``agentmem chat``: the REPL (see :mod:`graphs.repl`)."""
    from graphs.builders import build_memory_agent
    from graphs.checkpointers import default_checkpoint_path, sqlite_checkpointer
    from graphs.context import MemoryContext
    from graphs.repl import ChatSession

    db = Path(args.db) if args.db else default_checkpoint_path()
    ctx = MemoryContext.open(str(db), backbone=args.backbone, adapter=args.adapter,
                             max_new_tokens=args.max_new_tokens, window=args.window,
                             scope=args.scope, agent_id=args.agent)
    ctx.repository.setup()  # before the checkpointer: a new file gets the store's settings
    saver = sqlite_checkpointer(db)
    print(f"agentmem chat · agent {args.agent!r} · database {db} · window {args.window}")
    try:
        ChatSession(build_memory_agent(saver, context=ctx), ctx, thread=args.thread).loop()
    finally:
        saver.conn.close()
        ctx.repository.close()
    return 0


def demo_main(args: argparse.Namespace) -> int:
    """``agentmem demo``: see :mod:`graphs.demo`."""
    from graphs.demo import run_demo

    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="agentmem-demo-")) / "demo.sqlite3"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no δ-mem adapter ships")  # the demo says so itself
        run_demo(db, backbone=args.backbone, adapter=args.adapter, window=args.window,
                 max_new_tokens=args.max_new_tokens)
    print(f"\nexplore it: agentmem chat --db {db} --agent demo --thread session-3 --scope agent"
          + ("" if args.backbone == DEFAULT_BACKBONE else f" --backbone {args.backbone}"))
    return 0
