"""The graph's nodes: small functions ``(state, runtime) -> update``.

One turn is ``check_turn`` (refuse an empty or oversized user turn) → [``route``: pick the
specialist] → ``recall`` (find, or fork, the memory branch this point of the conversation stands
on) → ``respond`` (the δ-mem chat model answers from the bounded window while reading that memory,
then writes the user turn and its answer into it and saves a new memory checkpoint; the update
records both checkpoint ids). Dependencies come from the runtime context (:class:`MemoryContext`);
the builders may bind a default one (the ``default`` keyword).

The nodes are synchronous; under ``ainvoke``/``astream`` LangGraph runs them in its executor, so
the event loop never blocks on the model or the database.
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, RemoveMessage
from langgraph.runtime import Runtime

from agentmem.errors import EmptyConversationError, InputTooLongError
from graphs.branches import Branch, resolve_branch
from graphs.context import MemoryContext
from graphs.errors import MissingContextError, TurnRejectedError
from graphs.state import AgentState, MemoryRef
from graphs.window import agent_view, visible_messages

__all__ = ["after_check", "after_respond", "check_turn", "context_of", "recall", "reject",
           "respond", "route"]

Update = dict[str, Any]


def context_of(runtime: Runtime[MemoryContext] | None, default: MemoryContext | None = None
               ) -> MemoryContext:
    """The run's context (``invoke(..., context=...)``), else the graph's default.

    Raises:
        MissingContextError: neither is a :class:`MemoryContext`.
    """
    ctx = getattr(runtime, "context", None)
    if isinstance(ctx, MemoryContext):
        return ctx
    if default is not None:
        return default
    raise MissingContextError("invoke the graph with context=MemoryContext(...) (or build it with "
                              f"context=...); got {type(ctx).__name__}")


def _thread_id(runtime: Runtime[MemoryContext]) -> str:
    info = runtime.execution_info
    thread = info.thread_id if info is not None else None
    return str(thread) if thread is not None else f"run-{uuid.uuid4().hex[:16]}"


def check_turn(state: AgentState, runtime: Runtime[MemoryContext], *,
               default: MemoryContext | None = None) -> Update:
    """Refuse a turn that is not a non-empty user message of at most ``max_turn_chars`` characters.

    A refused message is removed again, so the thread is left as it was; ``reject`` then raises.
    """
    ctx = context_of(runtime, default)
    messages = state.get("messages") or []
    last = messages[-1] if messages else None
    problem = _turn_problem(last, ctx.max_turn_chars)
    if problem is None:
        return {"rejected": None}
    return {"messages": [RemoveMessage(id=last.id)] if last is not None and last.id else [],
            "rejected": problem}


def _turn_problem(last: BaseMessage | None, max_chars: int) -> str | None:
    if not isinstance(last, HumanMessage):
        kind = "nothing" if last is None else f"a {last.type} message"
        return f"a turn must end with the user's message; got {kind}"
    text = last.text
    if not text.strip():
        return "the user turn is empty"
    if len(text) > max_chars:
        return f"the user turn has {len(text)} characters; at most {max_chars} are taken"
    return None


def after_check(state: AgentState) -> str:
    """Conditional edge out of ``check_turn``."""
    return "reject" if state.get("rejected") else "next"


def reject(state: AgentState, runtime: Runtime[MemoryContext]) -> NoReturn:
    """Raise :class:`TurnRejectedError` (the thread was already cleaned up by the step before)."""
    raise TurnRejectedError(state.get("rejected") or "the user turn was rejected")


def route(state: AgentState, runtime: Runtime[MemoryContext], *,
          default: MemoryContext | None = None) -> Update:
    """Pick the specialist that takes this turn (``MemoryContext.router``)."""
    ctx = context_of(runtime, default)
    if len(ctx.specialists) < 2:
        raise ValueError("a router graph needs MemoryContext.specialists (two or more)")
    agent = ctx.router(state["messages"][-1].text, ctx.specialists)
    if ctx.specialist(agent) is None:
        raise ValueError(f"the router chose {agent!r}, which is not one of {list(ctx.agent_ids)}")
    return {"agent_id": agent}


def _agent(state: AgentState, ctx: MemoryContext) -> str:
    """The agent of the turn: the router's pick; in single-agent graphs the state's (given with the
    first turn's input, or kept from it), else ``MemoryContext.agent_id``."""
    if ctx.specialists:
        return state["agent_id"]
    return state.get("agent_id") or ctx.agent_id


def recall(state: AgentState, runtime: Runtime[MemoryContext], *,
           default: MemoryContext | None = None) -> Update:
    """Find the memory this point of the conversation continues from (forking it if rewound)."""
    ctx = context_of(runtime, default)
    agent = _agent(state, ctx)
    ref = (state.get("memory") or {}).get(agent)
    branch = resolve_branch(ctx.repository, agent, _thread_id(runtime), ref, ctx.scope)
    read: MemoryRef = {"thread": branch.thread, "read": branch.head, "written": None,
                       "tokens": branch.tokens}
    return {"agent_id": agent, "memory": {agent: read}}


def respond(state: AgentState, runtime: Runtime[MemoryContext], *,
            default: MemoryContext | None = None) -> Update:
    """Answer from the window while reading the memory, write the turn, save a checkpoint."""
    ctx = context_of(runtime, default)
    agent = _agent(state, ctx)
    branch = resolve_branch(ctx.repository, agent, _thread_id(runtime),
                            (state.get("memory") or {}).get(agent), ctx.scope)
    messages = agent_view(state["messages"], agent) if ctx.specialists else state["messages"]
    whole = ctx.whole_conversation  # then the model's own window bounds what it shows
    prompt = visible_messages(messages, window=len(messages) if whole else ctx.window,
                              window_tokens=None if whole else ctx.window_tokens,
                              system_prompt=ctx.system_prompt_for(agent))
    try:
        reply = ctx.model.invoke(prompt, {"configurable": {"agent_id": agent,
                                                           "thread_id": branch.thread}})
    except (InputTooLongError, EmptyConversationError) as e:  # nothing was written
        last = state["messages"][-1]
        return {"messages": [RemoveMessage(id=last.id)], "rejected": f"{type(e).__name__}: {e}"}
    return {"messages": [reply.model_copy(update={"name": agent})],
            "memory": {agent: _written(branch, reply)}, "rejected": None}


def _written(branch: Branch, reply: AIMessage) -> MemoryRef:
    memory = reply.response_metadata["memory"]
    return {"thread": branch.thread, "read": memory["parent_checkpoint_id"],
            "written": memory["checkpoint_id"], "tokens": int(memory["tokens_written"])}


def after_respond(state: AgentState) -> str:
    """Conditional edge out of ``respond`` (the model refused the turn: reject it)."""
    return "reject" if state.get("rejected") else "done"
