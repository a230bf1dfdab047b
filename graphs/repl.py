"""The ``agentmem chat`` REPL: one agent, persistent threads, memory shown after every turn."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from langchain_core.messages import HumanMessage
from langgraph.graph.state import CompiledStateGraph

from agentmem.errors import AgentMemError
from graphs.context import MemoryContext
from graphs.threads import forget_thread, fork_thread, memory_of

__all__ = ["HELP", "ChatSession"]

HELP = """commands:
  /threads          this agent's memory threads (branches are <thread>~<id>)
  /thread NAME      switch to (or start) thread NAME
  /fork NAME        copy this conversation and its memory into thread NAME and switch to it
  /forget           delete this thread's memory and conversation
  /help             this text
  /quit             leave (Ctrl-D too)"""


@dataclass
class ChatSession:
    """A REPL over a compiled memory-agent graph.

    Args:
        graph: from :func:`graphs.build_memory_agent`, compiled with a checkpointer.
        context: the graph's context (its repository lists the threads).
        thread: the LangGraph thread to start in.
        out: where lines are printed.
    """

    graph: CompiledStateGraph
    context: MemoryContext
    thread: str = "main"
    out: Callable[[str], None] = print

    @property
    def agent(self) -> str:
        return self.context.agent_id

    def _config(self) -> dict:
        return {"configurable": {"thread_id": self.thread}}

    def handle(self, line: str) -> bool:
        """Run one input line (a user turn or a /command); False means quit."""
        text = line.strip()
        if text in ("/quit", "/exit"):
            return False
        name = text.split(maxsplit=1)[1].strip() if len(text.split(maxsplit=1)) > 1 else ""
        command = text.split(maxsplit=1)[0] if text.startswith("/") else ""
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
                n = forget_thread(self.graph, self.context, self.thread)
                self.out(f"forgot thread {self.thread!r}: {n} memory checkpoints and its messages deleted")
            else:
                self.out(HELP)
        except (AgentMemError, ValueError) as e:  # a bad turn, id or thread is reported, not fatal
            self.out(f"error: {type(e).__name__}: {e}")
        return True

    def turn(self, text: str) -> None:
        before = memory_of(self.graph.get_state(self._config()).values, self.agent)
        out = self.graph.invoke({"messages": [HumanMessage(text)]}, self._config())
        self.out(f"{self.agent}> {out['messages'][-1].text}")
        ref = out["memory"][self.agent]
        gained = ref["tokens"] - (before["tokens"] if before else 0)
        self.out(f"  [memory] checkpoint {ref['written']} (parent {ref['read']}) · tokens written "
                 f"{ref['tokens']} (+{gained}) · store thread {ref['thread']!r}")

    def threads(self) -> None:
        rows = self.context.repository.list_threads(self.agent)
        if not rows:
            self.out("no memory threads yet")
        for t in rows:
            mark = "*" if t.thread_id == self.thread else " "
            self.out(f"{mark} {t.thread_id}  head {t.head_checkpoint_id[:12]}  "
                     f"{t.head_seq + 1} checkpoints  {t.head_created_at:%Y-%m-%d %H:%M:%S}")

    def fork(self, name: str) -> None:
        fork_thread(self.graph, self.context, self._config(), name)
        self.out(f"forked {self.thread!r} into {name!r}; now in {name!r}")
        self.thread = name

    def _summary(self) -> str:
        values = self.graph.get_state(self._config()).values
        ref = memory_of(values, self.agent)
        n = len(values.get("messages", []))
        return f"{n} messages, " + ("empty memory" if ref is None else
                                     f"memory at {ref['written'] or ref['read']} ({ref['tokens']} tokens)")

    def loop(self, read: Callable[[str], str] | None = None) -> None:
        """Read lines (with ``read``, default ``input``) until /quit or end of input."""
        read = read or input
        self.out(f"thread {self.thread!r}: {self._summary()}. /help for commands.")
        while True:
            try:
                line = read("you> ")
            except (EOFError, KeyboardInterrupt):
                self.out("")
                return
            if line.strip() and not self.handle(line):
                return
