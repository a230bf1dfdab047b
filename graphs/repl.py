"""The ``agentmem chat`` REPL: one agent, persistent threads, memory shown after every turn.

Answers stream token by token. A turn either completes (the answer is shown, the user turn and the
answer are in memory and in the conversation) or leaves nothing: Ctrl-C during a turn cancels it
and the thread's graph state is rolled back to before the turn, so the abandoned message is never
written into memory by a later turn.

Importing this module is cheap (``agentmem chat --help`` shows :data:`HELP`); LangChain and
LangGraph load when a session runs.
"""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from agentmem.errors import AgentMemError

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph
    from langgraph.types import StateSnapshot

    from graphs.context import MemoryContext

__all__ = ["CANCELLED", "COMMANDS", "HELP", "ChatSession"]

COMMANDS = {
    "/threads": "this agent's memory threads (branches are <thread>~<id>)",
    "/thread NAME": "switch to (or start) thread NAME",
    "/fork NAME": "copy this conversation and its memory into thread NAME and switch to it",
    "/forget": "delete this thread's memory and conversation",
    "/help": "this text",
    "/quit": "leave (Ctrl-D, or Ctrl-C at the prompt, too)",
}
HELP = "commands:\n" + "\n".join(f"  {k:<16}  {v}" for k, v in COMMANDS.items()) + (
    "\nCtrl-C during an answer cancels the turn: nothing of it is kept.")
CANCELLED = "[cancelled] the turn was dropped; nothing of it was written to memory or the conversation"


def _stdout(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@dataclass
class ChatSession:
    """A REPL over a compiled memory-agent graph.

    Args:
        graph: from :func:`graphs.build_memory_agent`, compiled with a checkpointer.
        context: the graph's context (its repository lists the threads).
        thread: the LangGraph thread to start in.
        out: where lines are printed.
        write: where the pieces of a streamed answer are printed (no newline added).
    """

    graph: CompiledStateGraph
    context: MemoryContext
    thread: str = "main"
    out: Callable[[str], None] = print
    write: Callable[[str], None] = _stdout

    @property
    def agent(self) -> str:
        return self.context.agent_id

    def _config(self) -> dict:
        return {"configurable": {"thread_id": self.thread}}

    def handle(self, line: str) -> bool:
        """Run one input line (a user turn or a /command); False means quit.

        Raises:
            KeyboardInterrupt: the user cancelled; a turn was rolled back first.
        """
        text = line.strip()
        if text in ("/quit", "/exit"):
            return False
        parts = text.split(maxsplit=1)
        command = parts[0] if text.startswith("/") else ""
        name = parts[1].strip() if len(parts) > 1 else ""
        try:
            if not command:
                self.turn(line)
            elif command == "/threads":
                self.threads()
            elif command in ("/thread", "/fork") and not name:
                self.out(f"usage: {command} NAME")
            elif command == "/thread":
                self.thread = name
                self.out(f"thread {name!r}: {self._summary()}")
            elif command == "/fork":
                self.fork(name)
            elif command == "/forget":
                n = self._forget()
                self.out(f"forgot thread {self.thread!r}: {n} memory checkpoints and its messages deleted")
            elif command == "/help":
                self.out(HELP)
            else:
                self.out(f"unknown command {command}")
                self.out(HELP)
        except (AgentMemError, ValueError) as e:  # a bad turn, id or thread is reported, not fatal
            self.out(f"error: {type(e).__name__}: {e}")
        return True

    def turn(self, text: str) -> None:
        """One user turn, its answer streamed; on any error or Ctrl-C the thread is rolled back.

        Tokens come through a LangChain callback of the model call, with the graph run in this
        thread: ``stream_mode="messages"`` would run the node in a worker thread, which Ctrl-C
        cannot stop (the model would finish the answer and write it into memory).
        """
        from langchain_core.messages import HumanMessage

        from graphs.threads import memory_of

        config = self._config()
        before = self.graph.get_state(config)
        printer = _answer_printer(self.write, f"{self.agent}> ")
        try:
            out = self.graph.invoke({"messages": [HumanMessage(text)]},
                                    {**config, "callbacks": [printer]})
        except BaseException:
            with _sigint_deferred():
                printer.end()
                self._roll_back(before)
            raise
        printer.finish(out["messages"][-1].text)
        ref = out["memory"][self.agent]
        old = memory_of(before.values, self.agent)
        gained = ref["tokens"] - (old["tokens"] if old else 0)
        self.out(f"  [memory] checkpoint {ref['written']} (parent {ref['read']}) · tokens written "
                 f"{ref['tokens']} (+{gained}) · store thread {ref['thread']!r}")

    def _roll_back(self, before: StateSnapshot) -> None:
        """Make the thread's latest graph state the one ``before`` the turn again.

        LangGraph saves the input and each finished step, so an interrupted turn leaves the user
        message in the thread; the next turn would answer it and write it into memory. A thread
        that had a state gets a copy of it as its newest checkpoint (LangGraph's fork; the
        abandoned steps stay in its history); a new thread is deleted. Memory needs no rollback:
        the chat model writes only once an answer is complete, and a memory checkpoint the graph
        state does not record is never read (the next turn forks from the recorded one).
        """
        latest = self.graph.get_state(self._config()).config["configurable"].get("checkpoint_id")
        previous = before.config["configurable"].get("checkpoint_id")
        if latest == previous:
            return
        if previous is None:
            self.graph.checkpointer.delete_thread(self.thread)
        else:
            self.graph.update_state(before.config, None, as_node="__copy__")

    def _forget(self) -> int:
        from graphs.threads import forget_thread

        return forget_thread(self.graph, self.context, self.thread)

    def threads(self) -> None:
        rows = self.context.repository.list_threads(self.agent)
        if not rows:
            self.out("no memory threads yet")
        for t in rows:
            mark = "*" if t.thread_id == self.thread else " "
            self.out(f"{mark} {t.thread_id}  head {t.head_checkpoint_id[:12]}  "
                     f"{t.head_seq + 1} checkpoints  {t.head_created_at:%Y-%m-%d %H:%M:%S}")

    def fork(self, name: str) -> None:
        from graphs.threads import fork_thread

        fork_thread(self.graph, self.context, self._config(), name)
        self.out(f"forked {self.thread!r} into {name!r}; now in {name!r}")
        self.thread = name

    def _summary(self) -> str:
        from graphs.threads import memory_of

        values = self.graph.get_state(self._config()).values
        ref = memory_of(values, self.agent)
        n = len(values.get("messages", []))
        return f"{n} messages, " + ("empty memory" if ref is None else
                                     f"memory at {ref['written'] or ref['read']} ({ref['tokens']} tokens)")

    def loop(self, read: Callable[[str], str] | None = None) -> None:
        """Read lines (with ``read``, default ``input``) until /quit, end of input or Ctrl-C at the
        prompt; Ctrl-C during a turn cancels that turn only."""
        read = read or input
        self.out(f"thread {self.thread!r}: {self._summary()}. /help for commands.")
        while True:
            try:
                line = read("you> ")
            except (EOFError, KeyboardInterrupt):
                self.out("\nbye")
                return
            try:
                if line.strip() and not self.handle(line):
                    return
            except KeyboardInterrupt:
                self.out(CANCELLED)


def _answer_printer(write: Callable[[str], None], prefix: str) -> Any:
    """A LangChain callback handler that prints an answer's tokens as the model emits them."""
    from langchain_core.callbacks import BaseCallbackHandler

    class AnswerPrinter(BaseCallbackHandler):
        """Writes ``prefix``, then each new token; `finish`/`end` close the line."""

        def __init__(self) -> None:
            self.shown = ""
            self.started = False

        def on_llm_new_token(self, token: str, **kwargs: Any) -> None:
            if not self.started:
                self.started = True
                write(prefix)
            self.shown += token
            write(token)

        def finish(self, text: str) -> None:
            """The answer is complete: print what the stream did not carry, end the line."""
            rest = text[len(self.shown):] if text.startswith(self.shown) else ""
            write(("" if self.started else prefix) + rest + "\n")

        def end(self) -> None:
            """The turn failed: end a started line."""
            if self.started:
                write("\n")

    return AnswerPrinter()


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Ignore Ctrl-C while the rollback runs (main thread only; elsewhere a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
