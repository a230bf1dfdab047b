"""`DeltaMemChatModel`: a LangChain chat model whose long-term memory lives in δ-mem states.

The only agentmem module that imports ``langchain_core``: it converts messages, reads the memory
key from the RunnableConfig and shapes chunks; turns, decoding and storage live in ``turns``,
``generation`` and ``memory_store``.
"""

from __future__ import annotations

import asyncio
import difflib
import json
import math
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any, Literal

from langchain_core.callbacks import (
    AsyncCallbackManagerForLLMRun,
    CallbackManager,
    CallbackManagerForLLMRun,
)
from langchain_core.language_models import BaseChatModel, LangSmithParams, LanguageModelInput
from langchain_core.language_models.chat_models import generate_from_stream
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    ChatMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.messages.tool import tool_call_chunk
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult, LLMResult
from langchain_core.runnables import Runnable, RunnableConfig
from langchain_core.runnables.config import ensure_config, get_config_list, run_in_executor
from langchain_core.utils.function_calling import convert_to_openai_tool
from langchain_core.utils.utils import LC_ID_PREFIX
from pydantic import AliasChoices, ConfigDict, Field, model_validator

from agentmem.chat.call import Call, Reply
from agentmem.chat.memory_store import InProcessMemoryStore, MemoryKey, MemoryStore
from agentmem.chat.shared_backbone import ChatBackend, get_backend, get_tokenizer
from agentmem.chat.tools import forced_prefix, template_supports_tools
from agentmem.chat.turn_engine import (
    SAVE_TIMEOUT_S,
    Scope,
    TurnCancelled,
    TurnEngine,
    load_head,
    waves,
)
from agentmem.chat.turn_plan import ROLES, template_message
from agentmem.errors import (
    MissingMemoryKeyError,
    ToolCallingNotSupportedError,
    UnknownRoleError,
    UnsupportedContentError,
)
from agentmem.model.backbones import DEFAULT_BACKBONE
from agentmem.model.decoding import SamplingParams
from agentmem.model.state import MemoryState

_SKIPPED_BLOCKS = {"tool_use", "tool_call", "tool_call_chunk", "invalid_tool_call", "thinking",
                   "reasoning", "redacted_thinking", "server_tool_call", "server_tool_result"}
_SAMPLING_KEYS = ("temperature", "top_p", "top_k", "do_sample", "seed")
# Keywords a call may carry: sampling and length overrides, what bind_tools binds, and what
# LangChain itself passes down (``ls_structured_output_format``); ``memory`` and ``cancel`` are
# this class's own plumbing.
_CALL_KEYS = frozenset({*_SAMPLING_KEYS, "max_tokens", "max_new_tokens", "stop", "tools",
                        "tool_choice", "model", "ls_structured_output_format", "memory", "cancel"})


class DeltaMemChatModel(BaseChatModel):
    """A local HF backbone with δ-mem: each thread (or agent) keeps a memory inside the attention.

    A call reads the key's memory while answering (writes off), then writes the new messages and
    the answer into it once (docs/design.md#the-conversation-protocol); messages already written
    are recognised and skipped, whether the caller resends the whole history, a window of it or
    only the new message. The key comes from the RunnableConfig: ``config={"configurable":
    {"thread_id": ..., "agent_id": ...}}``. Each thread keeps its own chain of memory checkpoints;
    with ``memory_scope="agent"`` a thread that has none yet starts from the agent's latest state
    (docs/design.md#state-checkpoints-and-scopes). Without a thread_id (or, in agent scope, any id)
    a call uses an empty memory and saves nothing. Records live in ``store`` (in-process by
    default; any `MemoryStore`, e.g. ``store.RepositoryMemoryStore``).

    Construction is cheap; the backbone loads on first use, once per process per
    (backbone, adapter, device).
    """

    backbone: str = Field(default=DEFAULT_BACKBONE,
                          validation_alias=AliasChoices("backbone", "model", "model_name"))
    """Embedded backbone name or a local HF folder (``model=`` and ``model_name=`` also set it,
    as in other LangChain chat models)."""
    adapter: str | None = None
    """δ-mem adapter folder; None: the one shipped for the backbone, else a fresh one (warns)."""
    window: int | None = Field(default=None, ge=0)
    """Messages shown before the current turn; None: all given, 0: memory only."""
    max_tokens: int = Field(default=256, ge=1,
                            validation_alias=AliasChoices("max_tokens", "max_new_tokens"))
    """Tokens generated at most per answer (``max_new_tokens=`` also sets it)."""
    temperature: float = Field(default=0.0, ge=0.0)
    """0 decodes greedily."""
    top_p: float = Field(default=1.0, gt=0.0, le=1.0)
    top_k: int = Field(default=0, ge=0)
    do_sample: bool | None = None
    """None: sample iff temperature > 0."""
    seed: int | None = None
    stop: list[str] | None = None
    memory_scope: Literal["thread", "agent"] = "thread"
    """"thread": a new thread starts empty; "agent": from the agent's latest state."""
    device: str | None = None
    """torch device; None: CUDA when available, else CPU."""
    streaming: bool = False
    store: MemoryStore = Field(default_factory=InProcessMemoryStore, exclude=True)
    save_timeout_s: float = Field(default=SAVE_TIMEOUT_S, ge=0.0, allow_inf_nan=False)
    """How long saving a turn keeps retrying (another writer saved first, a busy or unreachable
    store) before giving up."""
    on_save_error: Literal["report", "raise"] = "report"
    """A turn that cannot be saved: "report" returns the reply anyway, with
    ``response_metadata["memory"]["saved"]`` False and the reason in ``["error"]`` (and a
    warning on the ``agentmem`` logger); "raise" raises the store's error instead of replying."""

    model_config = ConfigDict(populate_by_name=True, arbitrary_types_allowed=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _known_arguments(cls, values: Any) -> Any:
        """Refuse a constructor argument this model does not take, naming the nearest ones."""
        if not isinstance(values, dict):
            return values
        known = set(cls.model_fields)
        for field in cls.model_fields.values():
            alias = field.validation_alias
            known |= set(alias.choices) if isinstance(alias, AliasChoices) else {alias} - {None}
        unknown = sorted(k for k in values if k not in known)
        if unknown:
            hints = {k: difflib.get_close_matches(k, sorted(map(str, known)), n=1) for k in unknown}
            said = ", ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "")
                             for k, h in hints.items())
            raise ValueError(f"DeltaMemChatModel does not take {said}; see its fields: backbone "
                             "(model), adapter, window, max_tokens, temperature, top_p, top_k, "
                             "do_sample, seed, stop, memory_scope, device, streaming, store, "
                             "save_timeout_s, on_save_error")
        return values

    @property
    def max_new_tokens(self) -> int:
        """The same as ``max_tokens``."""
        return self.max_tokens

    # ----- identity ---------------------------------------------------------------------------
    @property
    def _llm_type(self) -> str:
        return "agentmem-delta-mem"

    @property
    def model_name(self) -> str:
        return self.backbone

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("backbone", "adapter", "window", "max_tokens",
                                              *_SAMPLING_KEYS, "stop", "memory_scope")}

    def _get_ls_params(self, stop: list[str] | None = None, **kwargs: Any) -> LangSmithParams:
        model = kwargs.get("model")
        params = LangSmithParams(ls_provider="agentmem", ls_model_type="chat",
                                 ls_model_name=model if isinstance(model, str) else self.model_name,
                                 ls_temperature=kwargs.get("temperature", self.temperature),
                                 ls_max_tokens=self._params(
                                     {k: v for k, v in kwargs.items() if k in _CALL_KEYS}
                                 ).max_new_tokens)
        if stop or self.stop:
            params["ls_stop"] = [*(self.stop or []), *(stop or [])]
        return params

    # ----- entry points: they carry the RunnableConfig's memory key down to _stream ----------------
    def invoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        config = ensure_config(config)
        return super().invoke(input, config, stop=stop, **self._keyed(config, kwargs))

    async def ainvoke(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AIMessage:
        config = ensure_config(config)
        return await super().ainvoke(input, config, stop=stop, **self._keyed(config, kwargs))

    def stream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
               stop: list[str] | None = None, **kwargs: Any) -> Iterator[AIMessageChunk]:
        config = ensure_config(config)
        yield from super().stream(input, config, stop=stop, **self._keyed(config, kwargs))

    async def astream(self, input: LanguageModelInput, config: RunnableConfig | None = None, *,
                      stop: list[str] | None = None, **kwargs: Any) -> AsyncIterator[AIMessageChunk]:
        config = ensure_config(config)
        async for chunk in super().astream(input, config, stop=stop, **self._keyed(config, kwargs)):
            yield chunk

    def batch(self, inputs: list[LanguageModelInput],
              config: RunnableConfig | list[RunnableConfig] | None = None, *,
              return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        """Answer several inputs as one batched forward; each row reads and writes its own memory.

        Inputs that share a memory key run in successive waves, so each sees the one before.
        """
        if not inputs:
            return []
        configs = get_config_list(config, len(inputs))
        stop = kwargs.pop("stop", None)
        kwargs.pop("memory", None)
        cancel = kwargs.pop("cancel", None)
        self._check_call(kwargs)
        results: list[Any] = [None] * len(inputs)
        messages: list[list[BaseMessage]] = [[] for _ in inputs]
        for i, x in enumerate(inputs):  # a row that cannot be read fails alone
            try:
                messages[i] = self._convert_input(x).to_messages()
            except Exception as e:
                if not return_exceptions:
                    raise
                results[i] = e
        rows = [i for i, r in enumerate(results) if r is None]
        runs: list[Any] = [None] * len(inputs)
        for i in rows:
            runs[i] = self._start_run(messages[i], configs[i], stop, kwargs, len(inputs))
        scopes = [self.scope(c) for c in configs]
        for wave in waves([scopes[i] for i in rows]):
            wave = [rows[j] for j in wave]
            if cancel is not None and cancel.is_set():
                break  # abatch was cancelled: nobody reads the results, nothing more is written
            self._run_wave(wave, messages, scopes, runs, results, stop, kwargs, cancel)
        if not return_exceptions:
            for r in results:
                if isinstance(r, Exception):
                    raise r
        return results

    async def abatch(self, inputs: list[LanguageModelInput],
                     config: RunnableConfig | list[RunnableConfig] | None = None, *,
                     return_exceptions: bool = False, **kwargs: Any) -> list[Any]:
        cancel = threading.Event()
        try:
            return await run_in_executor(None, self.batch, inputs, config,
                                         return_exceptions=return_exceptions, cancel=cancel,
                                         **kwargs)
        except asyncio.CancelledError:
            cancel.set()  # rows not yet saved write nothing (docs: cancellation)
            raise

    def _run_wave(self, rows: list[int], messages: list[list[BaseMessage]], scopes: list[Scope],
                  runs: list[CallbackManagerForLLMRun], results: list[Any], stop: list[str] | None,
                  kwargs: dict[str, Any], cancel: threading.Event | None = None) -> None:
        """One batched read pass and one batched write pass over ``rows`` (distinct keys)."""
        ok, turns = [], []
        try:
            call = self._call(stop, kwargs)
            for i in rows:
                try:
                    turns.append(call.engine.prepare(to_dicts(messages[i]), scopes[i],
                                                     tools=call.tools, prefill=call.prefill))
                    ok.append(i)
                except Exception as e:  # a bad row fails alone
                    results[i] = e
                    runs[i].on_llm_error(e)
            replies = call.finish(turns, *call.decode(turns), cancel=cancel) if turns else []
        except Exception as e:
            for i in rows if not ok else ok:
                results[i] = e
                runs[i].on_llm_error(e)
            return
        for i, reply in zip(ok, replies, strict=True):
            results[i] = _message(reply, self.output_version,
                                  f"{LC_ID_PREFIX}-{runs[i].run_id}-0")  # as invoke names it
            runs[i].on_llm_end(LLMResult(generations=[[ChatGeneration(message=results[i])]]))

    def _start_run(self, messages: list[BaseMessage], config: RunnableConfig, stop: list[str] | None,
                   kwargs: dict[str, Any], batch_size: int) -> CallbackManagerForLLMRun:
        """Callbacks and tracing for one batch row, as ``BaseChatModel.invoke`` sets them up."""
        params = self._get_invocation_params(stop=stop, **kwargs)
        manager = CallbackManager.configure(
            config.get("callbacks"), self.callbacks, self.verbose, config.get("tags"), self.tags,
            {**(config.get("metadata") or {}), **self._get_ls_params_with_defaults(stop=stop, **kwargs)},
            self.metadata)
        (run,) = manager.on_chat_model_start(self._serialized, [messages], invocation_params=params,
                                             options={"stop": stop, **kwargs},
                                             name=config.get("run_name"),
                                             run_id=config.pop("run_id", None), batch_size=batch_size)
        return run

    # ----- generation ------------------------------------------------------------------------------
    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None, **kwargs: Any) -> ChatResult:
        return generate_from_stream(self._stream(messages, stop, run_manager, **kwargs))

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                         run_manager: AsyncCallbackManagerForLLMRun | None = None,
                         **kwargs: Any) -> ChatResult:
        """``_generate`` in a worker thread; a cancelled task stops it and writes nothing."""
        cancel = threading.Event()
        try:
            return await run_in_executor(None, self._generate, messages, stop,
                                         run_manager.get_sync() if run_manager else None,
                                         cancel=cancel, **kwargs)
        except asyncio.CancelledError:
            cancel.set()
            raise

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """One turn. A caller that stops reading (breaks out of ``stream``) or cancels
        (``ainvoke``/``astream`` task) before the answer is complete writes nothing; once the
        save has begun it completes (docs/design.md#saving-under-contention-and-faults)."""
        cancel: threading.Event | None = kwargs.pop("cancel", None)
        call = self._call(stop, kwargs)
        scope = kwargs.get("memory") or self.scope(ensure_config())
        turn = call.engine.prepare(to_dicts(messages), scope, tools=call.tools, prefill=call.prefill)
        decoder = call.backend.decoder([turn.prompt], [turn.state], call.params)
        text = call.text_stream()
        for tokens in decoder:
            if cancel is not None and cancel.is_set():
                raise TurnCancelled("the caller cancelled the turn; nothing was written")
            delta = text.push(tokens[0])
            if text.stopped:
                decoder.finish(0)
            if delta:
                chunk = ChatGenerationChunk(message=AIMessageChunk(content=delta))
                if run_manager:
                    run_manager.on_llm_new_token(delta, chunk=chunk)
                yield chunk
        (reply,) = call.finish([turn], [text], decoder, cancel=cancel)
        yield ChatGenerationChunk(message=_final_chunk(reply, text.emitted))

    def _check_call(self, kwargs: dict[str, Any]) -> None:
        """Refuse keywords a call cannot take, and out-of-range sampling values."""
        unknown = sorted(k for k in kwargs if k not in _CALL_KEYS)
        if unknown:
            raise TypeError(f"DeltaMemChatModel calls do not take {', '.join(map(repr, unknown))};"
                            " per-call options: max_tokens, temperature, top_p, top_k, do_sample,"
                            " seed, stop (and tools / tool_choice through bind_tools)")
        self._params(kwargs)

    def _call(self, stop: list[str] | None, kwargs: dict[str, Any]) -> Call:
        self._check_call(kwargs)
        model = kwargs.get("model")
        if model is not None and model != self.backbone:
            raise ValueError(f"model={model!r}: a per-call backbone is not supported; build a "
                             "DeltaMemChatModel with backbone=... instead")
        backend = self._backend()
        tools = kwargs.get("tools") if kwargs.get("tool_choice") != "none" else None
        if tools and not backend.supports_tools:
            raise ToolCallingNotSupportedError(_NO_TOOLS.format(backbone=self.backbone))
        names = [t["function"]["name"] for t in tools or []]
        prefill = forced_prefix(kwargs.get("tool_choice"), names) if tools else ""
        params = self._params(kwargs)
        engine = TurnEngine(backend, self.store, self.window, params.max_new_tokens,
                            save_timeout_s=self.save_timeout_s, on_save_error=self.on_save_error)
        return Call(self.model_name, backend, engine, params, [*(self.stop or []), *(stop or [])],
                    tools, prefill)

    def _params(self, kwargs: dict[str, Any]) -> SamplingParams:
        """This call's sampling: the model's fields, overridden per call; checked like the fields.

        Raises:
            ValueError: a value the field would refuse (named as the caller spelled it).
        """
        values = {k: kwargs.get(k, getattr(self, k)) for k in _SAMPLING_KEYS}
        name = "max_new_tokens" if "max_new_tokens" in kwargs else "max_tokens"
        n = kwargs.get(name, self.max_tokens)
        checks = {name: _is_int(n) and n >= 1,
                  "temperature": _is_number(values["temperature"]) and values["temperature"] >= 0,
                  "top_p": _is_number(values["top_p"]) and 0 < values["top_p"] <= 1,
                  "top_k": _is_int(values["top_k"]) and values["top_k"] >= 0,
                  "do_sample": values["do_sample"] in (None, True, False),
                  "seed": values["seed"] is None or _is_int(values["seed"])}
        bad = [k for k, ok in checks.items() if not ok]
        if bad:
            k = bad[0]
            raise ValueError(f"{k}={kwargs.get(k, values.get(k, n))!r} is out of range "
                             f"({_RANGES[k.replace('max_new_tokens', 'max_tokens')]})")
        return SamplingParams(max_new_tokens=n, **values)

    def _get_invocation_params(self, stop: list[str] | None = None, **kwargs: Any
                               ) -> dict[str, Any]:
        """What callbacks see: the model's parameters and the memory key as plain ids."""
        scope = kwargs.pop("memory", None)
        kwargs.pop("cancel", None)
        params = super()._get_invocation_params(stop=stop, **kwargs)
        if isinstance(scope, Scope) and scope.key is not None:
            params.update(agent_id=scope.key.agent_id, thread_id=scope.key.thread_id,
                          memory_scope=scope.kind)
        return params

    # ----- token counting (trim_messages(token_counter=chat)) --------------------------------------
    def get_token_ids(self, text: str) -> list[int]:
        """Token ids of ``text`` by the backbone's own tokenizer (local; nothing is downloaded)."""
        return list(get_tokenizer(self.backbone).encode(text, add_special_tokens=False))

    def get_num_tokens_from_messages(self, messages: list[BaseMessage],
                                     tools: Sequence[Any] | None = None) -> int:
        """Tokens ``messages`` take in the backbone's chat template (without a generation prompt)."""
        if not messages:
            return 0
        tokenizer = get_tokenizer(self.backbone)
        kwargs = {"tools": [convert_to_openai_tool(t) for t in tools]} if tools else {}
        chat = [template_message(m) for m in to_dicts(messages)]
        text = tokenizer.apply_chat_template(chat, tokenize=False, **kwargs)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def _backend(self) -> ChatBackend:
        return get_backend(self.backbone, self.adapter, self.device)

    def _keyed(self, config: RunnableConfig, kwargs: dict[str, Any]) -> dict[str, Any]:
        return {**kwargs, "memory": self.scope(config)}

    # ----- tools -----------------------------------------------------------------------------------
    def bind_tools(self, tools: Sequence[dict[str, Any] | type | Callable | Any], *,
                   tool_choice: str | bool | None = None,
                   **kwargs: Any) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (any LangChain tool form) for templates with tool support.

        A backbone whose chat template takes no tools is refused here, at bind time (so
        ``with_structured_output`` and ``create_react_agent`` fail at once, not at the first call).

        Args:
            tool_choice: None/"auto" (the model decides), "none" (tools hidden), "any"/"required"/
                True (a call is forced) or a tool name (that tool is called).
        """
        if tool_choice != "none" and not template_supports_tools(get_tokenizer(self.backbone)):
            raise ToolCallingNotSupportedError(_NO_TOOLS.format(backbone=self.backbone))
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            forced_prefix(tool_choice, [t["function"]["name"] for t in formatted])  # validates
        return self.bind(tools=formatted, tool_choice=tool_choice, **kwargs)

    # ----- memory operations -----------------------------------------------------------------------
    def scope(self, config: RunnableConfig | None) -> Scope:
        """The memory a call with ``config`` uses (``Scope.key`` None: no memory).

        Thread scope needs ``thread_id``; agent scope needs ``agent_id`` or ``thread_id``. A missing
        ``agent_id`` or (agent scope) ``thread_id`` is "default".
        """
        conf = (config or {}).get("configurable") or {}
        thread, agent = conf.get("thread_id"), conf.get("agent_id")
        thread_id = "default" if thread is None else str(thread)
        key = MemoryKey("default" if agent is None else str(agent), thread_id)
        if thread is not None or (self.memory_scope == "agent" and agent is not None):
            return Scope(key, thread_id, self.memory_scope)
        return Scope(None, thread_id, self.memory_scope)

    def remember(self, messages: LanguageModelInput, config: RunnableConfig | None = None
                 ) -> dict[str, Any]:
        """Write ``messages`` into the key's memory without answering (e.g. ingest a document).

        Messages the key already holds are skipped. Returns the memory checkpoint. Writing is
        the whole point of this call, so a save that fails raises the store's error (after
        ``save_timeout_s`` of retries) whatever ``on_save_error`` says.
        """
        scope = self._required_scope(config)
        engine = TurnEngine(self._backend(), self.store, self.window, self.max_tokens,
                            save_timeout_s=self.save_timeout_s, on_save_error="raise")
        turn = engine.prepare(to_dicts(self._convert_input(messages).to_messages()), scope, read=False)
        (checkpoint,) = engine.commit([turn], [None])
        assert checkpoint is not None
        return checkpoint.as_dict()

    async def aremember(self, messages: LanguageModelInput, config: RunnableConfig | None = None
                        ) -> dict[str, Any]:
        return await run_in_executor(None, self.remember, messages, config)

    def forget(self, config: RunnableConfig | None = None) -> None:
        """Reset the memory (thread scope: that thread; agent scope: every thread of the agent)."""
        scope = self._required_scope(config)
        if scope.kind == "agent":
            self.store.delete_agent(scope.key.agent_id)
        else:
            self.store.delete(scope.key)

    def memory_state(self, config: RunnableConfig | None = None) -> MemoryState | None:
        """The memory the next call with ``config`` reads, or None when it starts empty."""
        source = load_head(self.store, self._required_scope(config)).source
        return None if source is None else source.state

    def _required_scope(self, config: RunnableConfig | None) -> Scope:
        scope = self.scope(ensure_config(config))
        if scope.key is None:
            need = "thread_id" if self.memory_scope == "thread" else "agent_id (or thread_id)"
            raise MissingMemoryKeyError(f"memory operations need config={{'configurable': "
                                        f"{{'{need.split()[0]}': ...}}}} ({need})")
        return scope


_NO_TOOLS = ("the chat template of backbone {backbone!r} has no tool support, so tools cannot be "
             "bound (bind_tools, with_structured_output, create_react_agent). Use a backbone "
             "whose template takes tools=, e.g. Qwen2.5-Instruct or Qwen3, from a local folder "
             "downloaded beforehand (agentmem never downloads): DeltaMemChatModel("
             "model='/path/to/Qwen2.5-1.5B-Instruct')")
_RANGES = {"max_tokens": "an integer >= 1", "temperature": "a number >= 0",
           "top_p": "a number in (0, 1]", "top_k": "an integer >= 0",
           "do_sample": "True, False or None", "seed": "an integer or None"}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def _final_chunk(reply: Reply, emitted: int) -> AIMessageChunk:
    """The last chunk: content not yet streamed, tool calls, usage and memory checkpoint."""
    chunks = [tool_call_chunk(name=c["name"], args=json.dumps(c["args"], ensure_ascii=False),
                              id=c["id"], index=i) for i, c in enumerate(reply.tool_calls)]
    return AIMessageChunk(content=reply.content[emitted:], tool_call_chunks=chunks,
                          usage_metadata=reply.usage, response_metadata=reply.response_metadata,
                          chunk_position="last")


def _message(reply: Reply, output_version: str | None, run_id: str) -> AIMessage:
    calls = [{**c, "type": "tool_call"} for c in reply.tool_calls]
    msg = AIMessage(content=reply.content, tool_calls=calls, usage_metadata=reply.usage,
                    response_metadata=reply.response_metadata, id=run_id)
    if output_version == "v1":
        msg = msg.model_copy(update={"content": msg.content_blocks, "response_metadata": {
            **reply.response_metadata, "output_version": "v1"}})
    return msg


def to_dicts(messages: Sequence[BaseMessage]) -> list[dict[str, Any]]:
    """LangChain messages as agentmem message dicts (see ``conversation``).

    Raises:
        UnknownRoleError: a role other than user/assistant/system/tool.
        UnsupportedContentError: image, audio or file content.
    """
    return [_to_dict(m) for m in messages]


def _to_dict(message: BaseMessage) -> dict[str, Any]:
    if isinstance(message, HumanMessage):
        role = "user"
    elif isinstance(message, AIMessage):
        role = "assistant"
    elif isinstance(message, SystemMessage):
        role = "system"
    elif isinstance(message, ToolMessage):
        role = "tool"
    elif isinstance(message, ChatMessage):
        role = {"human": "user", "ai": "assistant"}.get(message.role, message.role)
    else:
        role = message.type
    if role not in ROLES:
        raise UnknownRoleError(f"message role {role!r} is not supported; use one of {ROLES}")
    content = _text(message, role)
    try:
        content.encode("utf-8")
    except UnicodeEncodeError as e:
        raise UnsupportedContentError(f"a {role} message is not valid Unicode text ({e.reason} at "
                                      f"character {e.start}); nothing was read or written") from e
    out: dict[str, Any] = {"role": role, "content": content}
    if isinstance(message, AIMessage) and message.tool_calls:
        out["tool_calls"] = [{"name": c["name"], "args": c["args"], "id": c.get("id")}
                             for c in message.tool_calls]
    if isinstance(message, ToolMessage):
        out["tool_call_id"] = message.tool_call_id
    return out


def _text(message: BaseMessage, role: str) -> str:
    if isinstance(message.content, str):
        return message.content
    parts = []
    for block in message.content:
        if isinstance(block, str):
            parts.append(block)
        elif block.get("type") == "text":
            parts.append(block.get("text", ""))
        elif block.get("type") not in _SKIPPED_BLOCKS:
            raise UnsupportedContentError(f"a {role} message holds a {block.get('type')!r} block; "
                                          "δ-mem backbones read text only")
    return "".join(parts)
