"""The ``agentmem chat`` and ``agentmem demo`` subcommands.

``agentmem.cli`` never imports this package: it finds `add_chat` and `add_demo` through the
``agentmem.commands`` entry points this distribution declares (docs/design.md#architecture).
Registering them imports nothing heavy; the model, LangChain and LangGraph load when a command
runs, and the backbone and adapter load before anything else happens, so a bad one is one line.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

from agentmem.cli import DEFAULT_BACKBONE, HelpFormatter, adapter_arg, backbone_arg
from agentmem.options import at_least
from graphs.repl import HELP

__all__ = ["add_chat", "add_demo", "add_subcommands", "chat_main", "demo_main"]

CHAT_HELP = "talk to a δ-mem agent; conversations and memory persist"
CHAT_DESCRIPTION = f"""{CHAT_HELP}.

Answers stream as they are generated; Ctrl-C during an answer cancels that turn (nothing of it is
written), Ctrl-C or Ctrl-D at the prompt leaves. Each turn prints the memory checkpoint it wrote."""


def add_subcommands(sub: argparse._SubParsersAction) -> None:
    """Register ``chat`` and ``demo`` on the ``agentmem`` command's subparsers."""
    add_chat(sub)
    add_demo(sub)


def add_chat(sub: argparse._SubParsersAction) -> None:
    """Register ``agentmem chat``: the REPL over a persistent agent."""
    chat = sub.add_parser("chat", help=CHAT_HELP, description=CHAT_DESCRIPTION, add_help=False,
                          formatter_class=HelpFormatter)
    chat.add_argument("-h", "--help", action=_ChatHelp, help="show this help message and exit")
    _model_options(chat, max_new_tokens=64)
    chat.add_argument("--db", default=None, help="SQLite file for memory and conversations "
                      "(default: the store's file, named below)")
    chat.add_argument("--agent", default="assistant", help="the agent's id: its memory and answers")
    chat.add_argument("--thread", default="main", help="the conversation to start in")
    chat.add_argument("--scope", choices=["thread", "agent"], default="thread",
                      help="agent: a new thread starts from the agent's latest memory")
    chat.set_defaults(func=chat_main)


def add_demo(sub: argparse._SubParsersAction) -> None:
    """Register ``agentmem demo``: the main job, a multi-session conversation."""
    text = ("a multi-session conversation recalled through δ-mem memory: answers and candidate "
            "rankings with and without memory")
    demo = sub.add_parser("demo", help=text, description=text, formatter_class=HelpFormatter)
    _model_options(demo, max_new_tokens=24)
    demo.add_argument("--db", default=None, help="SQLite file to play into (default: a new temp file)")
    demo.set_defaults(func=demo_main)


def _model_options(p: argparse.ArgumentParser, max_new_tokens: int) -> None:
    p.add_argument("--backbone", type=backbone_arg, default=DEFAULT_BACKBONE,
                   help="embedded backbone name or local HF folder")
    p.add_argument("--adapter", type=adapter_arg, default=None,
                   help="δ-mem adapter folder (default: the one shipped for the backbone, else a "
                        "freshly initialised one)")
    p.add_argument("--window", type=at_least(0), default=4,
                   help="messages shown before each user turn (0: memory only)")
    p.add_argument("--max-tokens", "--max-new-tokens", dest="max_new_tokens", type=at_least(1),
                   default=max_new_tokens, help="longest answer, in tokens (max_tokens of the "
                   "chat model)")


class _ChatHelp(argparse.Action):
    """``chat --help``: the flags, the slash commands and the default database (finding it loads
    the store, so only when the help is shown)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: Any = argparse.SUPPRESS, help: str | None = None) -> None:
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: Any, option_string: str | None = None) -> None:
        from graphs.checkpointers import default_checkpoint_path

        parser.epilog = (f"{HELP}\n\ndatabase (without --db): {default_checkpoint_path()}\n"
                         "  ($AGENTMEM_STORE_URL or $XDG_DATA_HOME moves it)")
        parser.print_help()
        parser.exit()


def load_model(args: argparse.Namespace) -> str | None:
    """Load ``--backbone`` and ``--adapter`` into the process-wide backend the chat model uses.

    Prints one "loading" line instead of transformers' progress bars; warnings (e.g. no shipped
    adapter) print as one line each.

    Returns:
        None, or the error line naming the flag at fault.
    """
    from transformers.utils import logging as hf_logging

    from agentmem.chat.shared_backbone import get_backend
    from agentmem.errors import AdapterError, AgentMemError

    print(f"loading {args.backbone} …", flush=True)  # seconds; the first use converts the GGUF
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings(record=True) as caught:
            get_backend(args.backbone, args.adapter)  # the key DeltaMemChatModel's lazy load uses
    except AdapterError as e:
        return f"argument --adapter: {e}"
    except (AgentMemError, OSError, ValueError) as e:  # unreadable or unsupported backbone
        return f"argument --backbone: cannot load {args.backbone!r}: {e}"
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr)
    return None


def chat_main(args: argparse.Namespace) -> int:
    """``agentmem chat``: the REPL (see :mod:`graphs.repl`)."""
    error = load_model(args)  # before the database is opened and before the first prompt
    if error:
        print(f"agentmem chat: error: {error}", file=sys.stderr)
        return 2
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
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no δ-mem adapter ships")  # the demo says so itself
        error = load_model(args)
    if error:
        print(f"agentmem demo: error: {error}", file=sys.stderr)
        return 2
    from graphs.demo import run_demo

    db = Path(args.db) if args.db else Path(tempfile.mkdtemp(prefix="agentmem-demo-")) / "demo.sqlite3"
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no δ-mem adapter ships")
        run_demo(db, backbone=args.backbone, adapter=args.adapter, window=args.window,
                 max_new_tokens=args.max_new_tokens)
    print(f"\nexplore it: agentmem chat --db {db} --agent demo --thread session-3 --scope agent"
          + ("" if args.backbone == DEFAULT_BACKBONE else f" --backbone {args.backbone}"))
    return 0
