"""Cheaper training steps for read-free message writes (`agentmem train --cache-writes`).

With ``write_mode="message"`` and ``write_reads=False`` a write pass is the frozen backbone's:
nothing it computes depends on a trainable parameter. A message's write is then a function of one
vector per layer, the mean of its content tokens' inputs to that layer's q projection
(``DeltaMemLayer.write_only`` pools before the write projections). Those vectors are computed
once per episode (`message_features`, no gradients) and every step only replays the δ-mem writes
from them (`write_from_features`, with gradients into W_k, W_v, W_β): the backbone then runs only
the short read passes. Both functions give exactly the state `write_histories_grad` gives for the
same adapter (tested).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from agentmem.model.attach import DeltaMemModel
from agentmem.model.history import encode_turns
from agentmem.model.padding import pad_rows, pad_token_id
from agentmem.model.state import MemoryState

Message = dict[str, str]


@dataclass(frozen=True)
class WriteFeatures:
    """One history's written messages, in write order: pooled layer inputs [M, L, d] (fp32, CPU)
    and the content tokens they cover (the state's ``tokens_written``)."""

    x: Tensor
    tokens: int


def check_cacheable(dm: DeltaMemModel) -> None:
    """Raise ValueError unless the adapter's write passes are read-free message writes."""
    c = dm.config
    if c.write_mode != "message" or c.write_reads:
        raise ValueError("cached write features need write_mode='message' and write_reads=False "
                         f"(got write_mode={c.write_mode!r}, write_reads={c.write_reads}): a write "
                         "pass that reads the memory depends on the parameters being trained")


@torch.no_grad()
def message_features(dm: DeltaMemModel, tokenizer: Any, history: list[Message],
                     budget_tokens: int | None = None) -> WriteFeatures:
    """The write features of ``history``, written as served: one frozen pass per turn (oldest
    turns dropped to fit ``budget_tokens``), the messages the write policy writes."""
    check_cacheable(dm)
    device, layers = dm.model.device, dm.layer_indices
    turns = [(enc, enc.written_spans(dm.config.write_policy))
             for enc in encode_turns(tokenizer, history, budget_tokens)]
    turns = [(enc, spans) for enc, spans in turns if spans]
    if not turns:
        return WriteFeatures(torch.zeros(0, len(layers), dm.model.config.hidden_size), 0)
    # read-free passes do not depend on each other: every turn of the history in one batch
    ids, mask = pad_rows([enc.input_ids for enc, _ in turns], pad_token_id(tokenizer))
    ids, mask = ids.to(device), mask.to(device)
    spans = [s for _, s in turns]
    with dm.memory(dm.new_state(len(turns)), write=True, batch_size=len(turns),
                   attention_mask=mask, spans=spans, record=True) as c:
        dm.model.get_decoder()(input_ids=ids, attention_mask=mask, use_cache=False)
    weights, valid = c.pool_spans_weights(c.record[layers[0]])  # [n, M, T], [n, M]
    pooled = torch.stack([weights @ c.record[i].float() for i in layers], dim=2)  # [n, M, L, d]
    x = pooled[valid].cpu()  # the written messages, turn by turn, in order
    return WriteFeatures(x, sum(e - s for row in spans for s, e in row))


def write_from_features(dm: DeltaMemModel, feats: list[WriteFeatures], *,
                        keys_out: list[Tensor | None] | None = None,
                        betas_out: list[Tensor | None] | None = None) -> tuple[MemoryState, Tensor]:
    """B histories' states from their write features, with gradients into the write parameters;
    and the mean write gate per layer ([L], over the written messages). ``keys_out`` and
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
    state = dm.new_state(B)
    S0 = state.tensors.to(device)
    written, betas, keys, gates = [], [], [], []
    for j, i in enumerate(layers):
        S, beta, k = dm.layers[i].write_only(x[:, :, j], S0[:, j], mask=valid)
        written.append(S)
        n = valid.sum().clamp_min(1.0) * beta.shape[-1] * beta.shape[-2]
        betas.append((beta * valid[..., None, None]).sum() / n)
        keys.append(k)
        gates.append(beta)
    for out, per_layer in ((keys_out, keys), (betas_out, gates)):
        if out is not None:
            stacked = torch.stack(per_layer, dim=2)  # [B, M, L, N, r]
            out.extend(stacked[b, : f.x.shape[0]] if f.x.shape[0] else None
                       for b, f in enumerate(feats))
    tokens = torch.tensor([f.tokens for f in feats], dtype=torch.int64)
    return state.replace(tensors=torch.stack(written, dim=1), tokens_written=tokens), torch.stack(betas)
