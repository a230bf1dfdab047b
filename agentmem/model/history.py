"""Writing a conversation history into memory turn by turn, as the chat model serves it: without
gradients (evaluation) or batched with gradients into the write parameters (training).

See docs/design.md#the-conversation-protocol.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import torch
from torch import Tensor

from agentmem.model.attach import DeltaMemModel
from agentmem.model.chat_template import EncodedChat, encode_chat
from agentmem.model.padding import pad_rows, pad_token_id
from agentmem.model.passes import write_tokens
from agentmem.model.state import MemoryState

Message = dict[str, str]


def turns_of(history: list[Message]) -> list[list[Message]]:
    """Group a history into turns: a user message with the replies that follow it."""
    turns: list[list[Message]] = []
    for m in history:
        if m["role"] == "user" or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    return turns


def encode_turns(tokenizer: Any, history: list[Message], budget_tokens: int | None = None
                 ) -> list[EncodedChat]:
    """Each turn rendered as the continuation of the ones before it; the oldest turns are
    dropped until the written tokens fit ``budget_tokens``."""
    encoded, prefix = [], []
    for turn in turns_of(history):
        encoded.append(encode_chat(tokenizer, turn, prefix=prefix))
        prefix = prefix + turn
    if budget_tokens is not None:
        while len(encoded) > 1 and sum(len(e.input_ids) for e in encoded) > budget_tokens:
            encoded.pop(0)
    return encoded


def write_history(dm: DeltaMemModel, tokenizer: Any, history: list[Message],
                  state: MemoryState | None = None, *, budget_tokens: int | None = None
                  ) -> MemoryState:
    """Write a history into memory, one pass per turn (as the chat model serves), no grad."""
    state = state or dm.new_state()
    for enc in encode_turns(tokenizer, history, budget_tokens):
        state = write_tokens(dm, torch.tensor([enc.input_ids]), state,
                             spans=[enc.written_spans(dm.config.write_policy)])
    return state


def write_histories_grad(dm: DeltaMemModel, tokenizer: Any, histories: list[list[Message]], *,
                         budget_tokens: int | None = None,
                         keys_out: list[Tensor | None] | None = None,
                         betas_out: list[Tensor | None] | None = None) -> tuple[MemoryState, Tensor]:
    """Write B histories into B memory rows, turn k of every history in one batched pass,
    with gradients into the δ-mem write parameters.

    Each pass runs the backbone without autograd (its values are exact: every row reads its own
    state so far); the writes are then replayed from the recorded layer inputs with autograd, so
    the gradient reaches W_k, W_v, W_β and earlier writes but not the backbone's hidden states.
    Returns the states and the mean write gate β per layer ([L], for the sparsity term).

    ``keys_out`` (message-level writes only): an empty list that receives, per row, the keys of
    its written messages in order ([M_b, L, N, r], with gradients into W_k; None for a row that
    wrote nothing), for `agentmem.train.match`. ``betas_out`` likewise receives each written
    message's write gates ([M_b, L, N, r], with gradients into W_β), for `agentmem.train.gate`.
    """
    if (keys_out is not None or betas_out is not None) and dm.config.write_mode != "message":
        raise ValueError("keys_out and betas_out need message-level writes: token writes have no "
                         "message keys or gates")
    per_row = [encode_turns(tokenizer, h, budget_tokens) for h in histories]
    B, n_turns = len(histories), max((len(t) for t in per_row), default=0)
    state, betas = dm.new_state(B), []
    collect = keys_out is not None or betas_out is not None
    row_writes: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(B)]
    for k in range(n_turns):
        turn = [rows[k] if k < len(rows) else None for rows in per_row]
        ids, attn, spans = _right_padded(tokenizer, turn, dm.config.write_policy)
        if not any(spans):
            continue
        state, beta = _replayed_write(dm, ids, attn, spans, state, row_writes if collect else None)
        betas.append(beta)
    for out, j in ((keys_out, 0), (betas_out, 1)):
        if out is not None:
            out.extend(torch.cat([w[j] for w in r]) if r else None for r in row_writes)
    beta_mean = (torch.stack(betas).mean(0) if betas
                 else torch.zeros(len(dm.layer_indices), device=dm.model.device))
    return state, beta_mean


def _right_padded(tokenizer: Any, turn: list[EncodedChat | None], policy: str
                  ) -> tuple[Tensor, Tensor, list[list[tuple[int, int]]]]:
    ids, attn = pad_rows([e.input_ids if e else [] for e in turn], pad_token_id(tokenizer))
    return ids, attn, [e.written_spans(policy) if e else [] for e in turn]


def _replayed_write(dm: DeltaMemModel, ids: Tensor, attn: Tensor,
                    spans: list[list[tuple[int, int]]], state: MemoryState,
                    row_writes: list[list[tuple[Tensor, Tensor]]] | None = None
                    ) -> tuple[MemoryState, Tensor]:
    device = dm.model.device
    ids, attn = ids.to(device), attn.to(device)
    with torch.no_grad(), dm.memory(state, write=True, batch_size=ids.shape[0],
                                    attention_mask=attn, spans=spans, record=True) as c:
        dm.model.get_decoder()(input_ids=ids, attention_mask=attn, use_cache=False)
    message = dm.config.write_mode == "message"
    pool = c.pool_spans_weights(ids) if message else None
    layers, betas, keys, gates = [], [], [], []
    for j, i in enumerate(dm.layer_indices):
        S, beta, k = dm.layers[i].write_only(c.record[i], state.tensors[:, j].to(device),
                                             pool=pool, mask=None if message else attn)
        layers.append(S)
        betas.append(beta.mean())
        keys.append(k)  # [B, M, N, r] with message-level writes
        gates.append(beta)
    if row_writes is not None:
        stacked_k, stacked_b = torch.stack(keys, dim=2), torch.stack(gates, dim=2)  # [B, M, L, N, r]
        for b, row in enumerate(spans):
            if row:
                row_writes[b].append((stacked_k[b, : len(row)], stacked_b[b, : len(row)]))
    new = state.replace(tensors=torch.stack(layers, dim=1), tokens_written=c.tokens_written.cpu())
    return new, torch.stack(betas)


class HistoryWriter:
    """`write_history` with a prefix cache: histories that extend an already written one (bAbI
    questions of one story) only write the new turns. A history over the token budget is cut
    from the front, so its prefixes are not reusable; it is written whole once and its state
    kept under the whole history's digest (LoCoMo questions of one conversation share it)."""

    def __init__(self, dm: DeltaMemModel, tokenizer: Any, budget_tokens: int | None = None,
                 max_entries: int = 20_000) -> None:
        self.dm, self.tokenizer, self.budget = dm, tokenizer, budget_tokens
        self.max_entries = max_entries
        self._cache: dict[str, MemoryState] = {}

    def __call__(self, history: list[Message]) -> MemoryState:
        encoded = encode_turns(self.tokenizer, history)
        keys, key = [], ""
        for turn in turns_of(history):
            key = hashlib.sha256((key + json.dumps(turn, sort_keys=True)).encode()).hexdigest()
            keys.append(key)
        if self.budget is not None and sum(len(e.input_ids) for e in encoded) > self.budget:
            whole = f"cut:{keys[-1]}"
            if whole not in self._cache:
                state = write_history(self.dm, self.tokenizer, history, budget_tokens=self.budget)
                if len(self._cache) >= self.max_entries:
                    return state
                self._cache[whole] = state
            return self._cache[whole]
        done = next((k for k in range(len(keys), 0, -1) if keys[k - 1] in self._cache), 0)
        state = self._cache[keys[done - 1]] if done else self.dm.new_state()
        for k in range(done, len(encoded)):
            ids = torch.tensor([encoded[k].input_ids])
            state = write_tokens(self.dm, ids, state,
                                 spans=[encoded[k].written_spans(self.dm.config.write_policy)])
            if len(self._cache) < self.max_entries:
                self._cache[keys[k]] = state
        return state
