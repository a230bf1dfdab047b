"""Writing a conversation history into memory as the chat model serves it (turn by turn, or as
one sequence for adapters with ``write_context="history"``): without gradients (evaluation) or
batched with gradients into the write parameters (training).

With read-free message writes (``write_reads=False``) a write pass is the frozen backbone's, so a
message's write is a function of one vector per layer: the mean of its content tokens' inputs to
that layer's q projection (``DeltaMemLayer.write_only`` pools before the write projections).
`turn_features` computes those vectors for many turns in one batched pass, and
`write_from_features` replays only the δ-mem writes from them; training caches them per episode
(``agentmem train --cache-writes``). The result is the state the turn-by-turn passes give.

See docs/design.md#the-conversation-protocol.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.utils.checkpoint
from torch import Tensor

from agentmem.model.attach import DeltaMemModel
from agentmem.model.chat_template import EncodedChat, encode_chat
from agentmem.model.config import DeltaMemConfig
from agentmem.model.padding import pad_rows, pad_token_id
from agentmem.model.passes import write_tokens
from agentmem.model.state import MemoryState

Message = dict[str, str]


@dataclass(frozen=True)
class WriteGates:
    """The write gates β of a batch's writes: per layer, their sum over every written unit
    (message or token) and its N·r gates, with autograd, and how many gates were summed.

    Sums rather than means so that the rows of a batch can be written in parts (one per training
    process) and still give the batch's mean (`agentmem.train.parallel`); padding counts nowhere.
    """

    total: Tensor  # [L]
    count: float
    # each recomputes a part of ``total`` from the writes' kept inputs, with a new graph
    replays: tuple[Callable[[], Tensor], ...] = ()

    def mean(self) -> Tensor:
        """The mean gate per layer, [L] (0 where nothing was written)."""
        return self.total / max(self.count, 1.0)

    def recompute(self) -> Tensor:
        """``total`` again from the written layer inputs, with a graph of its own into W_β and
        b_β (the gates read no state): its gradient without keeping the write's graph, which
        gradient accumulation frees after each micro-batch (`agentmem.train.loop`)."""
        return sum((replay() for replay in self.replays), torch.zeros_like(self.total))

    def __add__(self, other: WriteGates) -> WriteGates:
        return WriteGates(self.total + other.total, self.count + other.count,
                          self.replays + other.replays)


def _gate_totals(dm: DeltaMemModel, inputs: list[Tensor], pool: tuple[Tensor, Tensor] | None,
                 mask: Tensor | None) -> Tensor:
    """Σ β per layer, [L], of the writes of ``inputs`` (one per layer), as
    `DeltaMemLayer.write_only` gates them."""
    return torch.stack([dm.layers[i].write_features(x, mask=mask, pool=pool)[2].sum()
                        for x, i in zip(inputs, dm.layer_indices, strict=True)])


def turns_of(history: list[Message]) -> list[list[Message]]:
    """Group a history into turns: a user message with the replies that follow it."""
    turns: list[list[Message]] = []
    for m in history:
        if m["role"] == "user" or not turns:
            turns.append([m])
        else:
            turns[-1].append(m)
    return turns


def encode_turns(tokenizer: Any, history: list[Message], budget_tokens: int | None = None, *,
                 config: DeltaMemConfig | None = None) -> list[EncodedChat]:
    """The write passes of a history, as the adapter's ``config`` writes it (default: the
    default config): each turn rendered as the continuation of the ones before it
    (``write_context="turn"``), or the whole history as one sequence (``"history"``). The
    oldest turns are dropped until the written tokens fit ``budget_tokens``."""
    config = config or DeltaMemConfig()
    span = config.message_span
    if config.write_context == "history":
        turns = turns_of(history)
        while turns:
            enc = encode_chat(tokenizer, [m for t in turns for m in t], span=span)
            if len(turns) == 1 or budget_tokens is None or len(enc.input_ids) <= budget_tokens:
                return [enc]
            turns = turns[1:]
        return []
    encoded, prefix = [], []
    for turn in turns_of(history):
        encoded.append(encode_chat(tokenizer, turn, prefix=prefix, span=span))
        prefix = prefix + turn
    if budget_tokens is not None:
        while len(encoded) > 1 and sum(len(e.input_ids) for e in encoded) > budget_tokens:
            encoded.pop(0)
    return encoded


def write_history(dm: DeltaMemModel, tokenizer: Any, history: list[Message],
                  state: MemoryState | None = None, *, budget_tokens: int | None = None
                  ) -> MemoryState:
    """Write a history into memory, one pass per turn (as the chat model serves), no grad.
    Read-free writes run every turn's pass in one batch (the same state)."""
    state = state or dm.new_state()
    if _read_free(dm):
        with torch.no_grad():
            return write_from_features(dm, [message_features(dm, tokenizer, history, budget_tokens)],
                                       state=state)[0]
    for enc in encode_turns(tokenizer, history, budget_tokens, config=dm.config):
        state = write_tokens(dm, torch.tensor([enc.input_ids]), state,
                             spans=[enc.written_spans(dm.config.write_policy)])
    return state


def write_histories_grad(dm: DeltaMemModel, tokenizer: Any, histories: list[list[Message]], *,
                         budget_tokens: int | None = None,
                         keys_out: list[Tensor | None] | None = None,
                         betas_out: list[Tensor | None] | None = None,
                         checkpoint: bool = False) -> tuple[MemoryState, WriteGates]:
    """Write B histories into B memory rows, turn k of every history in one batched pass,
    with gradients into the δ-mem write parameters.

    Each pass runs the backbone without autograd (its values are exact: every row reads its own
    state so far); the writes are then replayed from the recorded layer inputs with autograd, so
    the gradient reaches W_k, W_v, W_β and earlier writes but not the backbone's hidden states.
    Returns the states and their write gates (`WriteGates`, for the sparsity term).
    ``checkpoint``: keep only each replayed layer write's inputs for the backward pass and
    recompute the write there (less memory for long histories, one more write per layer).

    ``keys_out`` (message-level writes only): an empty list that receives, per row, the keys of
    its written messages in order ([M_b, L, N, r], with gradients into W_k; None for a row that
    wrote nothing), for `agentmem.train.match`. ``betas_out`` likewise receives each written
    message's write gates ([M_b, L, N, r], with gradients into W_β), for `agentmem.train.gate`.
    """
    if (keys_out is not None or betas_out is not None) and dm.config.write_mode != "message":
        raise ValueError("keys_out and betas_out need message-level writes: token writes have no "
                         "message keys or gates")
    per_row = [encode_turns(tokenizer, h, budget_tokens, config=dm.config) for h in histories]
    B, n_turns = len(histories), max((len(t) for t in per_row), default=0)
    state = dm.new_state(B)
    gates = WriteGates(torch.zeros(len(dm.layer_indices), device=dm.model.device), 0.0)
    collect = keys_out is not None or betas_out is not None
    row_writes: list[list[tuple[Tensor, Tensor]]] = [[] for _ in range(B)]
    for k in range(n_turns):
        turn = [rows[k] if k < len(rows) else None for rows in per_row]
        ids, attn, spans = _right_padded(tokenizer, turn, dm.config.write_policy)
        if not any(spans):
            continue
        state, written = _replayed_write(dm, ids, attn, spans, state,
                                         row_writes if collect else None, checkpoint=checkpoint)
        gates = gates + written
    for out, j in ((keys_out, 0), (betas_out, 1)):
        if out is not None:
            out.extend(torch.cat([w[j] for w in r]) if r else None for r in row_writes)
    return state, gates


def _right_padded(tokenizer: Any, turn: list[EncodedChat | None], policy: str
                  ) -> tuple[Tensor, Tensor, list[list[tuple[int, int]]]]:
    ids, attn = pad_rows([e.input_ids if e else [] for e in turn], pad_token_id(tokenizer))
    return ids, attn, [e.written_spans(policy) if e else [] for e in turn]


def _replayed_write(dm: DeltaMemModel, ids: Tensor, attn: Tensor,
                    spans: list[list[tuple[int, int]]], state: MemoryState,
                    row_writes: list[list[tuple[Tensor, Tensor]]] | None = None, *,
                    checkpoint: bool = False) -> tuple[MemoryState, WriteGates]:
    device = dm.model.device
    ids, attn = ids.to(device), attn.to(device)
    with torch.no_grad(), dm.memory(state, write=True, batch_size=ids.shape[0],
                                    attention_mask=attn, spans=spans, record=True) as c:
        dm.model.get_decoder()(input_ids=ids, attention_mask=attn, use_cache=False)
    message = dm.config.write_mode == "message"
    pool = c.pool_spans_weights(ids) if message else None
    mask = None if message else attn
    layers, betas, keys, gates = [], [], [], []
    for j, i in enumerate(dm.layer_indices):
        args = (c.record[i], state.tensors[:, j].to(device))
        if checkpoint and torch.is_grad_enabled():
            S, beta, k = torch.utils.checkpoint.checkpoint(
                lambda x, s0, i=i: dm.layers[i].write_only(x, s0, pool=pool, mask=mask), *args,
                use_reentrant=False)
        else:
            S, beta, k = dm.layers[i].write_only(*args, pool=pool, mask=mask)
        layers.append(S)
        betas.append(beta.sum())  # padding wrote with β = 0
        keys.append(k)  # [B, M, N, r] with message-level writes
        gates.append(beta)
    if row_writes is not None:
        stacked_k, stacked_b = torch.stack(keys, dim=2), torch.stack(gates, dim=2)  # [B, M, L, N, r]
        for b, row in enumerate(spans):
            if row:
                row_writes[b].append((stacked_k[b, : len(row)], stacked_b[b, : len(row)]))
    new = state.replace(tensors=torch.stack(layers, dim=1), tokens_written=c.tokens_written.cpu())
    units = float(pool[1].sum()) if pool is not None else float(attn.sum())
    inputs = [c.record[i] for i in dm.layer_indices]
    return new, WriteGates(torch.stack(betas), units * gates[0].shape[-1] * gates[0].shape[-2],
                           (lambda: _gate_totals(dm, inputs, pool, mask),))


class HistoryWriter:
    """`write_history` with a prefix cache: histories that extend an already written one (bAbI
    questions of one story) only write the new turns. A history over the token budget is cut
    from the front, so its prefixes are not reusable; it is written whole once and its state
    kept under the whole history's digest (LoCoMo questions of one conversation share it). So is
    every history of an adapter that writes the whole history as one sequence
    (``write_context="history"``): a longer history is a new sequence, not an extension."""

    def __init__(self, dm: DeltaMemModel, tokenizer: Any, budget_tokens: int | None = None,
                 max_entries: int = 20_000) -> None:
        self.dm, self.tokenizer, self.budget = dm, tokenizer, budget_tokens
        self.max_entries = max_entries
        self._cache: dict[str, MemoryState] = {}

    def __call__(self, history: list[Message]) -> MemoryState:
        keys, key = [], ""
        for turn in turns_of(history):
            key = hashlib.sha256((key + json.dumps(turn, sort_keys=True)).encode()).hexdigest()
            keys.append(key)
        if not keys:
            return self.dm.new_state()
        encoded = encode_turns(self.tokenizer, history, config=self.dm.config)
        over = self.budget is not None and sum(len(e.input_ids) for e in encoded) > self.budget
        if over or self.dm.config.write_context == "history":
            return self._whole(history, f"whole:{keys[-1]}")
        done = next((k for k in range(len(keys), 0, -1) if keys[k - 1] in self._cache), 0)
        state = self._cache[keys[done - 1]] if done else self.dm.new_state()
        feats = turn_features(self.dm, self.tokenizer, encoded[done:]) if _read_free(self.dm) else None
        for k in range(done, len(encoded)):
            if feats is not None:
                with torch.no_grad():
                    state = write_from_features(self.dm, [feats[k - done]], state=state)[0]
            else:
                ids = torch.tensor([encoded[k].input_ids])
                state = write_tokens(self.dm, ids, state,
                                     spans=[encoded[k].written_spans(self.dm.config.write_policy)])
            if len(self._cache) < self.max_entries:
                self._cache[keys[k]] = state
        return state

    def _whole(self, history: list[Message], key: str) -> MemoryState:
        """The history written whole (`write_history`), cached under ``key``."""
        if key not in self._cache:
            state = write_history(self.dm, self.tokenizer, history, budget_tokens=self.budget)
            if len(self._cache) >= self.max_entries:
                return state
            self._cache[key] = state
        return self._cache[key]


def _read_free(dm: DeltaMemModel) -> bool:
    return dm.config.write_mode == "message" and not dm.config.write_reads


@dataclass(frozen=True)
class WriteFeatures:
    """One history's written messages, in write order: pooled layer inputs [M, L, d] (fp32, CPU)
    and the content tokens they cover (the state's ``tokens_written``)."""

    x: Tensor
    tokens: int


def check_cacheable(dm: DeltaMemModel) -> None:
    """Raise ValueError unless the adapter's write passes are read-free message writes."""
    c = dm.config
    if not _read_free(dm):
        raise ValueError("cached write features need write_mode='message' and write_reads=False "
                         f"(got write_mode={c.write_mode!r}, write_reads={c.write_reads}): a write "
                         "pass that reads the memory depends on the parameters being trained")


@torch.no_grad()
def turn_features(dm: DeltaMemModel, tokenizer: Any, encoded: list[EncodedChat]
                  ) -> list[WriteFeatures]:
    """The write features of each encoded turn (its written messages, [M_k, L, d]), from one
    batched frozen pass: read-free write passes do not depend on each other."""
    check_cacheable(dm)
    device, layers = dm.model.device, dm.layer_indices
    spans = [enc.written_spans(dm.config.write_policy) for enc in encoded]
    out = [WriteFeatures(torch.zeros(0, len(layers), dm.model.config.hidden_size), 0)
           for _ in encoded]
    rows = [k for k, s in enumerate(spans) if s]
    if not rows:
        return out
    ids, mask = pad_rows([encoded[k].input_ids for k in rows], pad_token_id(tokenizer))
    ids, mask = ids.to(device), mask.to(device)
    with dm.memory(dm.new_state(len(rows)), write=True, batch_size=len(rows),
                   attention_mask=mask, spans=[spans[k] for k in rows], record=True) as c:
        dm.model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False)
    weights, _ = c.pool_spans_weights(c.record[layers[0]])  # [n, M, T]
    pooled = torch.stack([weights @ c.record[i].float() for i in layers], dim=2)  # [n, M, L, d]
    for j, k in enumerate(rows):
        out[k] = WriteFeatures(pooled[j, : len(spans[k])].cpu(), sum(e - s for s, e in spans[k]))
    return out


def message_features(dm: DeltaMemModel, tokenizer: Any, history: list[Message],
                     budget_tokens: int | None = None) -> WriteFeatures:
    """The write features of ``history``, written as served: its turns (oldest dropped to fit
    ``budget_tokens``), the messages the write policy writes, in order."""
    turns = turn_features(dm, tokenizer, encode_turns(tokenizer, history, budget_tokens,
                                                      config=dm.config))
    if not turns:
        return WriteFeatures(torch.zeros(0, len(dm.layer_indices), dm.model.config.hidden_size), 0)
    return WriteFeatures(torch.cat([t.x for t in turns]), sum(t.tokens for t in turns))


def write_from_features(dm: DeltaMemModel, feats: list[WriteFeatures], *,
                        state: MemoryState | None = None,
                        keys_out: list[Tensor | None] | None = None,
                        betas_out: list[Tensor | None] | None = None) -> tuple[MemoryState, WriteGates]:
    """B histories' states from their write features, written into ``state`` (None: empty
    memories), with gradients into the write parameters when autograd is on; and their write
    gates (`WriteGates`, over the written messages). ``keys_out`` and
    ``betas_out`` receive each row's keys and gates ([M_b, L, N, r]; None for a row that wrote
    nothing), as from `agentmem.model.history.write_histories_grad`."""
    device, layers = dm.model.device, dm.layer_indices
    B, M = len(feats), max([f.x.shape[0] for f in feats] + [1])
    hidden = feats[0].x.shape[-1] if feats else dm.model.config.hidden_size
    x = torch.zeros(B, M, len(layers), hidden, device=device)
    valid = torch.zeros(B, M, device=device)
    for b, f in enumerate(feats):
        x[b, : f.x.shape[0]] = f.x.to(device)
        valid[b, : f.x.shape[0]] = 1.0
    state = dm.new_state(B) if state is None else state
    S0 = state.tensors.to(device)
    written, betas, keys, gates = [], [], [], []
    for j, i in enumerate(layers):
        S, beta, k = dm.layers[i].write_only(x[:, :, j], S0[:, j], mask=valid)
        written.append(S)
        betas.append((beta * valid[..., None, None]).sum())
        keys.append(k)
        gates.append(beta)
    for out, per_layer in ((keys_out, keys), (betas_out, gates)):
        if out is not None:
            stacked = torch.stack(per_layer, dim=2)  # [B, M, L, N, r]
            out.extend(stacked[b, : f.x.shape[0]] if f.x.shape[0] else None
                       for b, f in enumerate(feats))
    tokens = state.tokens_written + torch.tensor([f.tokens for f in feats], dtype=torch.int64)
    gates_per_unit = dm.config.num_states * dm.config.rank
    inputs = [x[:, :, j] for j in range(len(layers))]
    return (state.replace(tensors=torch.stack(written, dim=1), tokens_written=tokens),
            WriteGates(torch.stack(betas), float(valid.sum()) * gates_per_unit,
                       (lambda: _gate_totals(dm, inputs, None, valid),)))
