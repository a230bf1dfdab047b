"""Token-by-token generation of a batch of prompts, each row reading its own memory (read pass).

`BatchDecoder` is the one decoding loop: a single conversation is a batch of one. Every forward
runs in its own ``dm.memory(...)`` block with writes off, so the loop may be advanced from
different threads (LangChain's async streaming calls ``next`` in an executor) without a memory
context that outlives one call. `TextStream` turns one row's tokens into text that is safe to
emit: stop strings are cut, and text that might still become a stop string, a tool-call tag or
an incomplete UTF-8 character is held back.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import Tensor

from agentmem.model.attach import DeltaMemModel
from agentmem.model.padding import pad_rows, pad_token_id
from agentmem.model.state import MemoryState

Message = dict[str, str]


@dataclass(frozen=True)
class SamplingParams:
    """How the next token is chosen.

    Attributes:
        max_new_tokens: tokens generated at most per row.
        temperature: 0 means greedy.
        top_p: nucleus mass kept when sampling (1 keeps all).
        top_k: most likely tokens kept when sampling (0 keeps all).
        do_sample: None samples iff temperature > 0; False forces greedy; True samples
            (temperature 0 still means greedy).
        seed: seeds each row's sampler; None draws from torch's global RNG.
    """

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    top_k: int = 0
    do_sample: bool | None = None
    seed: int | None = None

    @property
    def sampling(self) -> bool:
        return self.temperature > 0 and self.do_sample is not False


def eos_ids(model: Any, tokenizer: Any) -> tuple[int, ...]:
    """Tokens that end an answer: the tokenizer's and the generation config's EOS."""
    ids = {tokenizer.eos_token_id}
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids |= set(gen) if isinstance(gen, (list, tuple)) else {gen}
    return tuple(sorted(i for i in ids if i is not None))


def pick_tokens(logits: Tensor, params: SamplingParams,
                generators: Sequence[torch.Generator | None]) -> Tensor:
    """Next token per row from logits [B, V]: argmax, or a temperature/top-k/top-p sample."""
    if not params.sampling:
        return logits.argmax(dim=-1)
    logits = logits.float() / params.temperature
    if params.top_k > 0:
        kth = torch.topk(logits, min(params.top_k, logits.shape[-1])).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if params.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        drop = probs.cumsum(dim=-1) - probs > params.top_p  # the most likely token always stays
        logits = logits.scatter(1, order, sorted_logits.masked_fill(drop, float("-inf")))
    probs = logits.softmax(dim=-1)
    return torch.stack([torch.multinomial(probs[b], 1, generator=g)[0]
                        for b, g in enumerate(generators)])


class BatchDecoder:
    """Generate for B prompts at once; row b reads ``state.row(b)`` and writes nothing (with
    ``write``: writes its prompt and then each generated token before the next one reads, as the
    method authors' chat session does; padding never writes).

    Iterating yields, per step, the new token of every row (None for rows that are done). A row is
    done after an end-of-sequence token (not yielded), ``max_new_tokens`` or `finish`; finished
    rows leave the batch (KV cache and memory rows are dropped), so they cost nothing more.

    Args:
        model: the backbone with δ-mem attached through ``dm``.
        prompts: token ids per row (left-padded into one batch).
        state: memory of the B rows.
        eos_ids: tokens that end a row.
    """

    def __init__(self, model: Any, dm: DeltaMemModel, prompts: list[list[int]], state: MemoryState,
                 params: SamplingParams, eos_ids: Sequence[int], pad_id: int, *,
                 write: bool = False) -> None:
        if state.batch_size != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but a memory of {state.batch_size} rows")
        self.model, self.dm, self.params, self.write = model, dm, params, write
        device = model.device
        self.state = state.replace(tensors=state.tensors.to(device))
        ids, mask = pad_rows(prompts, pad_id, left=True)  # every row's last token is at T-1
        self.ids, self.mask = ids.to(device), mask.to(device)
        self.eos = torch.tensor(sorted(set(eos_ids)), dtype=torch.long, device=device)
        self.done = [False] * len(prompts)
        self.finish_reason = ["length"] * len(prompts)
        self.generated = [0] * len(prompts)
        self.generators = [None if params.seed is None else
                           torch.Generator(device=device).manual_seed(params.seed)
                           for _ in prompts]

    def finish(self, row: int, reason: str = "stop") -> None:
        """Stop generating for ``row`` (e.g. a stop string appeared in its text)."""
        if not self.done[row]:
            self.done[row], self.finish_reason[row] = True, reason

    def __iter__(self) -> Iterator[list[int | None]]:
        B, active = len(self.done), list(range(len(self.done)))  # rows still in the batch
        positions = (self.mask.cumsum(dim=-1) - 1).clamp(min=0)  # [B, T]
        mask, state = self.mask, self.state
        logits, past, state = self._forward(self.ids, mask, positions, None, state)
        for step in range(self.params.max_new_tokens):
            tokens = pick_tokens(logits, self.params, [self.generators[r] for r in active])  # [b]
            is_eos = torch.isin(tokens, self.eos).tolist()
            out: list[int | None] = [None] * B
            for pos, (row, tok) in enumerate(zip(active, tokens.tolist(), strict=True)):
                if is_eos[pos]:
                    self.finish(row, "stop")
                if not self.done[row]:
                    out[row] = tok
                    self.generated[row] += 1
            if all(t is None for t in out):
                return
            yield out  # the caller may finish rows here (stop strings)
            if all(self.done) or step == self.params.max_new_tokens - 1:
                return
            keep = [pos for pos, row in enumerate(active) if not self.done[row]]
            if len(keep) < len(active) and hasattr(past, "batch_select_indices"):
                idx = torch.tensor(keep, device=tokens.device)  # drop finished rows
                past.batch_select_indices(idx)
                mask, tokens, state = mask[idx], tokens[idx], _select(state, idx)
                active = [active[p] for p in keep]
            mask = torch.cat([mask, mask.new_ones(mask.shape[0], 1)], dim=1)
            logits, past, state = self._forward(tokens[:, None], mask,
                                                mask.sum(-1, keepdim=True) - 1, past, state)

    @torch.no_grad()
    def _forward(self, ids: Tensor, mask: Tensor, positions: Tensor, past: Any,
                 state: MemoryState) -> tuple[Tensor, Any, MemoryState]:
        """One step: the last logits, the KV cache and the memory after it (written when
        ``write``; the prompt's padding is masked, every decoded token writes)."""
        write_mask = mask if self.write and past is None else None
        with self.dm.memory(state, write=self.write, batch_size=ids.shape[0],
                            attention_mask=write_mask) as cache:
            out = self.model(input_ids=ids, attention_mask=mask, position_ids=positions,
                             use_cache=True, logits_to_keep=1, **{self._cache_kw: past})
        if self.write:  # kept on the device between steps
            tensors = torch.stack([cache.states[i] for i in self.dm.layer_indices], dim=1)
            state = state.replace(tensors=tensors, tokens_written=cache.tokens_written.cpu())
        return out.logits[:, -1], getattr(out, self._cache_kw), state

    @cached_property
    def _cache_kw(self) -> str:
        """The KV-cache keyword: ``cache`` since transformers 5.2x, ``past_key_values`` before."""
        params = inspect.signature(self.model.forward).parameters
        return "cache" if "cache" in params else "past_key_values"


def _select(state: MemoryState, idx: Tensor) -> MemoryState:
    """Rows ``idx`` of a batched state."""
    return state.replace(tensors=state.tensors[idx.to(state.tensors.device)],
                         tokens_written=state.tokens_written[idx.cpu()])


@torch.no_grad()
def greedy_replies(dm: DeltaMemModel, tok: Any, chats: list[list[Message]],
                   state: MemoryState | None, max_new_tokens: int) -> tuple[list[str], list[bool]]:
    """Greedy replies of B chats through `BatchDecoder` (the chat model's own loop), row b
    reading ``state`` row b (None: an empty memory, i.e. the frozen model); and per row whether
    the token limit cut it."""
    rendered = [tok.apply_chat_template(c, add_generation_prompt=True, tokenize=True,
                                        return_dict=False) for c in chats]
    eos = eos_ids(dm.model, tok)
    state = state if state is not None else dm.new_state(len(chats))
    decoder = BatchDecoder(dm.model, dm, [list(r) for r in rendered], state,
                           SamplingParams(max_new_tokens=max_new_tokens), eos,
                           pad_token_id(tok, eos[0] if eos else 0))
    out: list[list[int]] = [[] for _ in chats]
    for step in decoder:
        for b, t in enumerate(step):
            if t is not None:
                out[b].append(t)
    texts = [tok.decode(o, skip_special_tokens=True).strip() for o in out]
    return texts, [r == "length" for r in decoder.finish_reason]


class TextStream:
    """Incremental text of one row: emits only characters that can no longer change or vanish.

    Args:
        tokenizer: decodes the row's tokens (special tokens skipped).
        stop: strings that end the text (cut before them, never emitted).
        hold: markers from which text is held back until the end (e.g. ``<tool_call>``).
        prefix: text that starts the answer before any generated token (forced tool call).
    """

    def __init__(self, tokenizer: Any, stop: Sequence[str] = (), hold: Sequence[str] = (),
                 prefix: str = "") -> None:
        self.tokenizer = tokenizer
        self.stop = [s for s in stop if s]
        self.hold = [h for h in hold if h]
        self.prefix = prefix
        self.ids: list[int] = []
        self.text = prefix
        self.emitted = 0
        self.stopped = False

    def push(self, token: int) -> str:
        """Add a token; returns the newly safe text (may be empty)."""
        self.ids.append(token)
        text = self.prefix + self.tokenizer.decode(self.ids, skip_special_tokens=True,
                                                   clean_up_tokenization_spaces=False)
        cuts = [i for s in self.stop if (i := text.find(s, len(self.prefix))) >= 0]
        if cuts:
            text, self.stopped = text[: min(cuts)], True
        self.text = text
        return self._emit(self._safe_end(text, final=self.stopped))

    def flush(self) -> str:
        """At the end: everything not yet emitted except held-back marked text."""
        return self._emit(self._safe_end(self.text, final=True))

    def _emit(self, end: int) -> str:
        if end <= self.emitted:
            return ""
        out, self.emitted = self.text[self.emitted : end], end
        return out

    def _safe_end(self, text: str, final: bool) -> int:
        end = len(text.rstrip("\ufffd"))  # an incomplete UTF-8 character decodes as U+FFFD
        for marker in self.hold:
            if (i := text.find(marker)) >= 0:
                end = min(end, i)
        if final:
            return end
        for s in self.stop + self.hold:  # a tail that may grow into a stop string or marker
            for k in range(min(len(s) - 1, end), 0, -1):
                if text[:end].endswith(s[:k]):
                    end -= k
                    break
        return end
