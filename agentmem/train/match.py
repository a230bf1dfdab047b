"""An optional training signal for choosing the asked fact (`agentmem train --match-weight W`).

With message-level writes every message of the history is written under one key k_m (per layer
and state); the question reads S q with its memory query q, a linear read: roughly
Σ_m (k_m · q) v_m, each message's value in proportion to how well its key matches the query (the
decay and the delta rule's overwrites scale the terms). The read returns the asked fact's value
only if q matches that fact's key and is near orthogonal to the other messages' keys, which answer
cross-entropy alone does not necessarily teach on many-fact episodes (docs/results.md).
Episodes that record which message states the answer (``meta.fact_turn``, the synthetic
generator's) give a direct target for the match of q̄ (the mean memory query over the positions
that predict the answer, `reply_queries`) with each written key, per layer and state:
(1 − q̄ · k_fact)² + the mean over the other messages of (q̄ · k_m)². Other episodes add nothing.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from agentmem.model.attach import DeltaMemModel
from agentmem.model.scoring import reply_batch


def fact_message(episode: Any, written: int) -> int | None:
    """Index, among the ``written`` messages, of the one stating the answer; None when the episode
    does not record it or the token budget dropped it (the oldest messages go first)."""
    turn = episode.meta.get("fact_turn")
    if not isinstance(turn, int) or isinstance(turn, bool):
        return None
    index = turn - first_written(episode, written)
    return index if 0 <= index < written else None


def first_written(episode: Any, written: int) -> int:
    """History index of the first of the ``written`` messages: a token budget drops the oldest."""
    return len(episode.history) - written


def reply_queries(dm: DeltaMemModel, tokenizer: Any, questions: list[str], answers: list[str]
                  ) -> Tensor:
    """Mean memory query q over the positions that predict each answer's tokens (the memory-only
    read: the question, then the answer as the assistant's reply): [B, L, N, r], unit-norm q per
    token, then averaged. Those positions' reads are the ones that correct the answer's logits.
    The layer inputs come from the frozen backbone (an empty memory reads nothing); gradients
    reach W_q."""
    ids, attn, tmask = reply_batch(tokenizer, [([{"role": "user", "content": q}], a)
                                                for q, a in zip(questions, answers, strict=True)])
    predicts = torch.zeros(tmask.shape)
    predicts[:, :-1] = tmask[:, 1:].float()  # position t − 1 predicts target t
    weights = predicts / predicts.sum(1, keepdim=True)
    device = dm.model.device
    with torch.no_grad(), dm.memory(batch_size=ids.shape[0], record=True) as cache:
        dm.model.get_decoder()(input_ids=ids.to(device), attention_mask=attn.to(device),
                               use_cache=False)
    weights = weights.to(device)[:, :, None, None]
    return torch.stack([(weights * dm.layers[i].features(cache.record[i])[0]).sum(1)
                        for i in dm.layer_indices], dim=1)


def match_loss(queries: Tensor, keys: list[Tensor | None], facts: list[int | None]
               ) -> tuple[Tensor, float | None]:
    """(1 − q̄ · k_fact)² + mean over the other messages of (q̄ · k_m)², averaged over rows,
    layers and states; and the share of (row, layer, state) where the fact's key matches best.

    Args:
        queries: [B, L, N, r] from `reply_queries`.
        keys: per row, the written messages' keys [M_b, L, N, r] (`write_histories_grad`;
            None for a row that wrote nothing).
        facts: per row, the fact's message index (`fact_message`), or None to skip the row.

    Returns (0, None) when no row has a fact among two or more written messages.
    """
    losses, hits = match_terms(queries, keys, facts)
    if not losses.numel():
        return queries.new_zeros(()), None
    return losses.mean(), hits.mean().item()


def match_terms(queries: Tensor, keys: list[Tensor | None], facts: list[int | None]
                ) -> tuple[Tensor, Tensor]:
    """Per row with a fact among two or more written messages, in order: the match term (with
    autograd) and the share of (layer, state) where the fact's key matches best; [n] each
    (see `match_loss`)."""
    losses, hits = [], []
    for b, (k, fact) in enumerate(zip(keys, facts, strict=True)):
        if fact is None or k is None or k.shape[0] < 2:  # nothing to choose from
            continue
        match = (k * queries[b]).sum(-1)  # [M, L, N]: q̄ and k are unit vectors (|q̄| ≤ 1)
        others = torch.cat((match[:fact], match[fact + 1:]))
        losses.append(((1 - match[fact]) ** 2 + (others ** 2).mean(0)).mean())
        hits.append((match.argmax(0) == fact).float().mean())
    if not losses:
        return queries.new_zeros(0), queries.new_zeros(0)
    return torch.stack(losses), torch.stack(hits)
