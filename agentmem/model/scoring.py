"""How likely replies are under a read pass: log-probabilities of reply tokens given a prompt
and a memory, candidate scoring, the answer cross-entropy and per-token KL.

A reply's targets are its tokens and its end-of-turn marker (the reply must stop there).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from agentmem.model.attach import DeltaMemModel
from agentmem.model.chat_template import encode_chat
from agentmem.model.padding import pad_rows, pad_token_id
from agentmem.model.prompts import ReadPrompt
from agentmem.model.state import MemoryState

Message = dict[str, str]


def reply_batch(tokenizer: Any, pairs: list[tuple[list[Message], str]]
                 ) -> tuple[Tensor, Tensor, Tensor]:
    """ids [B, T] (right-padded), attention mask, and a target mask over each reply's tokens
    plus the end-of-turn marker, for (prompt, reply) pairs."""
    rows, targets = [], []
    for prompt, reply in pairs:
        enc = encode_chat(tokenizer, prompt + [{"role": "assistant", "content": reply}])
        s, e = enc.spans[-1]
        rows.append(enc.input_ids)
        targets.append((s, min(e + 1, len(enc.input_ids))))  # the reply must stop here
    ids, attn = pad_rows(rows, pad_token_id(tokenizer))
    tmask = torch.zeros(ids.shape, dtype=torch.bool)
    for b, (s, e) in enumerate(targets):
        tmask[b, s:e] = True
    return ids, attn, tmask


def _rows(state: MemoryState | None, B: int) -> MemoryState | None:
    return MemoryState.stack([state] * B) if state is not None and state.batch_size != B else state


def _predicting(tmask: Tensor) -> Tensor:
    """[B, T] bool: the positions whose next-token distribution predicts a target of ``tmask``."""
    prev = torch.zeros_like(tmask)
    prev[:, :-1] = tmask[:, 1:]  # position t-1 predicts target t
    return prev


def _target_logprobs(dm: DeltaMemModel, hidden: Tensor, ids: Tensor, tmask: Tensor) -> Tensor:
    """log p of every target token, [B, T] (0 elsewhere); the LM head runs on targets only."""
    prev = _predicting(tmask)
    logits = dm.model.get_output_embeddings()(hidden[prev.to(hidden.device)]).float()
    picked = F.log_softmax(logits, -1).gather(-1, ids[tmask].to(logits.device)[:, None])[:, 0]
    out = torch.zeros(tmask.shape, dtype=picked.dtype, device=picked.device)
    out[tmask.to(picked.device)] = picked
    return out


def _read_hidden(dm: DeltaMemModel, ids: Tensor, attn: Tensor, state: MemoryState | None
                 ) -> Tensor:
    """Last hidden states [B, T, H] of a read pass (writes off) with ``state`` (None: frozen)."""
    device, B = dm.model.device, ids.shape[0]
    with dm.memory(_rows(state, B), batch_size=B):
        return dm.model.get_decoder()(input_ids=ids.to(device), attention_mask=attn.to(device),
                                      use_cache=False).last_hidden_state


def _token_logprobs(dm: DeltaMemModel, ids: Tensor, attn: Tensor, tmask: Tensor,
                    state: MemoryState | None) -> Tensor:
    """log p of the target tokens under a read pass (writes off), [B, T]."""
    return _target_logprobs(dm, _read_hidden(dm, ids, attn, state), ids, tmask)


def _shared_prefix_logprobs(dm: DeltaMemModel, ids: Tensor, attn: Tensor, tmask: Tensor,
                            state: MemoryState | None) -> Tensor:
    """`_token_logprobs` for rows sharing a long prompt: the prompt runs once, its KV cache is
    repeated for the rows' differing suffixes."""
    P = int(torch.nonzero((ids != ids[:1]).any(0) | (attn == 0).any(0))[0]) \
        if bool(((ids != ids[:1]) | (attn == 0)).any()) else ids.shape[1] - 1
    P = min(P, int(tmask.float().argmax(1).min()))  # every target stays in the suffix
    if P < 16:
        return _token_logprobs(dm, ids, attn, tmask, state)
    device, B = dm.model.device, ids.shape[0]
    decoder = dm.model.get_decoder()
    with dm.memory(_rows(state, 1)):
        head = decoder(input_ids=ids[:1, :P].to(device), use_cache=True)
    cache = head["cache"]  # transformers 5.2x: `past_key_values` is a deprecated alias
    cache.batch_repeat_interleave(B)
    with dm.memory(_rows(state, B), batch_size=B):
        tail = decoder(input_ids=ids[:, P:].to(device), attention_mask=attn.to(device),
                       cache=cache, use_cache=True).last_hidden_state
    hidden = torch.cat((head.last_hidden_state.expand(B, -1, -1), tail), dim=1)
    return _target_logprobs(dm, hidden, ids, tmask)


@torch.no_grad()
def score_candidates(dm: DeltaMemModel, tokenizer: Any, prompt: ReadPrompt, candidates: list[str],
                     state: MemoryState | None) -> tuple[Tensor, Tensor]:
    """Sum and per-token-mean log-likelihood of each candidate as the assistant's reply."""
    ids, attn, tmask = reply_batch(tokenizer, [(prompt.messages, c) for c in candidates])
    logp = _shared_prefix_logprobs(dm, ids, attn, tmask, state if prompt.uses_memory else None)
    total = (logp * tmask.to(logp)).sum(-1)
    return total, total / tmask.sum(-1).to(logp)


def answer_logprobs(dm: DeltaMemModel, tokenizer: Any, prompts: list[ReadPrompt], answers: list[str],
                    state: MemoryState | None) -> tuple[Tensor, Tensor, Tensor]:
    """The answers' log-distributions [N, V] at their N target positions (rows in order, with
    autograd), the target token ids [N] and each position's row [N]. Rows whose prompt does not
    use memory read an empty state (the frozen backbone)."""
    ids, attn, tmask = reply_batch(tokenizer, [(p.messages, a) for p, a in
                                                zip(prompts, answers, strict=True)])
    if state is not None:
        keep = torch.tensor([p.uses_memory for p in prompts], dtype=state.tensors.dtype,
                            device=state.tensors.device)
        state = state.replace(tensors=state.tensors * keep.view(-1, 1, 1, 1, 1))
    rows = torch.arange(len(prompts))[:, None].expand_as(tmask)[tmask]
    return reply_logprobs(dm, ids, attn, tmask, state), ids[tmask], rows


def row_nll(logp: Tensor, targets: Tensor, rows: Tensor, n_rows: int) -> Tensor:
    """Per-row mean negative log-likelihood [n_rows] of ``targets`` under ``logp`` [N, V]."""
    nll = -logp.gather(-1, targets.to(logp.device)[:, None])[:, 0]
    rows = rows.to(logp.device)
    total = torch.zeros(n_rows, dtype=nll.dtype, device=nll.device).index_add(0, rows, nll)
    count = torch.zeros(n_rows, dtype=nll.dtype, device=nll.device).index_add(
        0, rows, torch.ones_like(nll))
    return total / count


def answer_loss(dm: DeltaMemModel, tokenizer: Any, prompts: list[ReadPrompt], answers: list[str],
                state: MemoryState | None) -> Tensor:
    """Per-row cross-entropy on the answer tokens only ([B], with autograd).

    Rows whose prompt does not use memory read an empty state (the frozen backbone)."""
    logp, targets, rows = answer_logprobs(dm, tokenizer, prompts, answers, state)
    return row_nll(logp, targets, rows, len(prompts))


def reply_logprobs(dm: DeltaMemModel, ids: Tensor, attn: Tensor, tmask: Tensor,
                   state: MemoryState | None) -> Tensor:
    """Log-distributions [N, V] (float32) at the N positions that predict a target token of
    ``tmask`` (row-major order), under a read pass with ``state`` (None: the frozen model).
    Differentiable in the δ-mem parameters when called with autograd on."""
    hidden = _read_hidden(dm, ids, attn, state)
    logits = dm.model.get_output_embeddings()(hidden[_predicting(tmask).to(hidden.device)]).float()
    return F.log_softmax(logits, -1)


def drop_cut_ends(tmask: Tensor, cut: Sequence[bool]) -> None:
    """In place: a reply cut by the token limit never ended, so its end-of-turn marker (the last
    target of its row in ``tmask`` [B, T]) is no target; a row keeps at least one target."""
    for b, c in enumerate(cut):
        if c and int(tmask[b].sum()) > 1:
            tmask[b, int(tmask[b].nonzero()[-1])] = False


def kl_per_token(teacher: Tensor, student: Tensor) -> Tensor:
    """KL(teacher ‖ student) per position [N] from log-distributions [N, V]."""
    return (teacher.exp() * (teacher - student)).sum(-1)
