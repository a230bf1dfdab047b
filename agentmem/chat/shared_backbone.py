"""A loaded backbone with δ-mem attached, shared per process by every chat model that names it.

`get_backend` loads lazily and once per (backbone, adapter, device): constructing a chat model
costs nothing, the first call pays the ~1.5 s load, and every later instance reuses the weights.
"""

from __future__ import annotations

import threading
import warnings
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import torch

from agentmem.chat.tools import template_supports_tools
from agentmem.errors import InputTooLongError
from agentmem.model.adapters import backbone_dtype, load_adapter, shipped_adapter
from agentmem.model.attach import DeltaMemModel, attach_delta_mem
from agentmem.model.backbones import load_backbone, resolve_backbone
from agentmem.model.chat_template import EncodedChat, encode_chat
from agentmem.model.config import DeltaMemConfig
from agentmem.model.decoding import BatchDecoder, SamplingParams, eos_ids
from agentmem.model.padding import pad_rows, pad_token_id
from agentmem.model.passes import write_tokens
from agentmem.model.state import MemoryState

FRESH_ADAPTER_SEED = 0  # a fresh adapter is the same in every process: states stay loadable
_BACKENDS: dict[tuple[str, str | None, str], ChatBackend] = {}
_LOCK = threading.Lock()


@dataclass
class ChatBackend:
    """Backbone, tokenizer and δ-mem handle, plus what calls need to know about them."""

    name: str
    model: Any
    tokenizer: Any
    dm: DeltaMemModel

    @cached_property
    def eos_ids(self) -> tuple[int, ...]:
        """Tokens that end an answer: the tokenizer's and the generation config's EOS."""
        return eos_ids(self.model, self.tokenizer)

    @cached_property
    def pad_id(self) -> int:
        return pad_token_id(self.tokenizer, self.eos_ids[0] if self.eos_ids else 0)

    @cached_property
    def context_length(self) -> int:
        """Tokens one pass may hold (the backbone's position limit)."""
        n = getattr(self.model.config, "max_position_embeddings", None)
        return int(n) if n else int(min(self.tokenizer.model_max_length, 1 << 20))

    @cached_property
    def supports_tools(self) -> bool:
        return template_supports_tools(self.tokenizer)

    def new_state(self) -> MemoryState:
        return self.dm.new_state(1)

    def render_prompt(self, messages: list[dict[str, Any]], tools: list[dict] | None = None,
                      prefill: str = "") -> list[int]:
        """Token ids of a read-pass prompt: the chat, the assistant header, then ``prefill``."""
        kwargs = {"tools": tools} if tools else {}
        text = self.tokenizer.apply_chat_template(messages, tokenize=False,
                                                  add_generation_prompt=True, **kwargs)
        return list(self.tokenizer(text + prefill, add_special_tokens=False)["input_ids"])

    def render_write(self, messages: list[dict[str, Any]], prefix: list[dict[str, Any]]) -> EncodedChat:
        """Token ids and spans of a write pass: ``messages`` rendered as they follow ``prefix``."""
        return encode_chat(self.tokenizer, messages, prefix=prefix,
                           span=self.dm.config.message_span)

    def check_length(self, n: int, what: str) -> None:
        """Raise `InputTooLongError` unless ``n`` tokens fit one pass."""
        if n > self.context_length:
            raise InputTooLongError(f"{what} needs {n} tokens but {self.name} holds "
                                    f"{self.context_length}; shorten the input, lower `window` or "
                                    "`max_new_tokens`")

    def decoder(self, prompts: list[list[int]], states: list[MemoryState],
                params: SamplingParams) -> BatchDecoder:
        """The read pass of each prompt over its memory. An adapter with ``generation_writes``
        (the authors' chat session) instead writes each prompt, the whole conversation, into an
        empty memory as it reads it, and then each generated token."""
        if self.dm.config.generation_writes:
            states = [self.new_state() for _ in prompts]
        return BatchDecoder(self.model, self.dm, prompts, MemoryState.stack(states), params,
                            self.eos_ids, self.pad_id, write=self.dm.config.generation_writes)

    def write(self, chats: list[EncodedChat], states: list[MemoryState]) -> list[MemoryState]:
        """One batched write pass: row b writes ``chats[b]`` into ``states[b]``.

        Rows are right-padded; padding never writes (token writes are masked, message writes
        only pool the given spans), so each row's state is what a pass of its own gives.
        """
        ids, mask = pad_rows([c.input_ids for c in chats], self.pad_id)
        new = write_tokens(self.dm, ids, MemoryState.stack(states), attention_mask=mask,
                           spans=[c.written_spans(self.dm.config.write_policy) for c in chats])
        return [new.row(b) for b in range(len(chats))]


_TOKENIZERS: dict[str, Any] = {}


def get_tokenizer(backbone: str) -> Any:
    """The backbone's tokenizer, without loading its weights (a loaded backend's when there is one).

    Raises:
        BackboneError: an unknown name or a folder without a config.json (nothing is downloaded).
    """
    with _LOCK:
        for (name, _adapter, _device), backend in _BACKENDS.items():
            if name == backbone:
                return backend.tokenizer
        if backbone not in _TOKENIZERS:
            from transformers import AutoTokenizer

            _TOKENIZERS[backbone] = AutoTokenizer.from_pretrained(resolve_backbone(backbone),
                                                                  local_files_only=True)
        return _TOKENIZERS[backbone]


def get_backend(backbone: str, adapter: str | None = None, device: str | None = None) -> ChatBackend:
    """The process-wide backend for (backbone, adapter, device), loading it on first use.

    Args:
        backbone: an embedded backbone name or a local HF folder.
        adapter: an adapter folder; None takes the one shipped for ``backbone`` or, when none
            ships, a freshly initialised one (seeded, with a warning: its memory is untrained).
        device: torch device; None picks CUDA when available, else CPU.
    """
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = (backbone, adapter, device)
    with _LOCK:
        if key not in _BACKENDS:
            _BACKENDS[key] = _load(backbone, adapter, device)
        return _BACKENDS[key]


def _load(backbone: str, adapter: str | None, device: str) -> ChatBackend:
    named = Path(backbone).name == backbone  # a name, not a folder path
    folder = adapter or (shipped_adapter(backbone) if named else None)
    # an adapter with bf16 numerics (the authors' release) runs on a bf16 backbone, as it was made
    model, tokenizer = load_backbone(backbone, dtype=backbone_dtype(folder))
    model.to(device)
    if folder:
        dm = load_adapter(model, folder)
    else:
        warnings.warn(f"no δ-mem adapter ships for backbone {backbone!r} yet: using a freshly "
                      f"initialised one (seed {FRESH_ADAPTER_SEED}); its memory is untrained",
                      UserWarning, stacklevel=3)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(FRESH_ADAPTER_SEED)
            dm = attach_delta_mem(model, DeltaMemConfig())
    return ChatBackend(backbone, model, tokenizer, dm)
