"""The conversation protocol of DESIGN §2 for episodes: write a history turn by turn, build the
read prompt of each evaluation regime, score candidate answers, compute the training loss.

An episode is anything with ``history`` (chat messages), ``question`` and ``answer``.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from agentmem.chat_template import EncodedChat, encode_chat
from agentmem.engine import write_tokens
from agentmem.inject import DeltaMemModel
from agentmem.state import MemoryState

Message = dict[str, str]
REGIMES = ("no-memory", "window", "full-context", "memory-only", "memory+window",
           "memory+full-context", "bm25")
MEMORY_REGIMES = ("memory-only", "memory+window", "memory+full-context")


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
        state = write_tokens(dm, torch.tensor([enc.input_ids]), state, spans=[enc.spans])
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
        ids, attn, spans = _right_padded(tokenizer, turn)
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


def _right_padded(tokenizer: Any, turn: list[EncodedChat | None]
                  ) -> tuple[Tensor, Tensor, list[list[tuple[int, int]]]]:
    T = max(len(e.input_ids) if e else 1 for e in turn)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(turn), T), pad, dtype=torch.long)
    attn = torch.zeros(len(turn), T, dtype=torch.long)
    for b, e in enumerate(turn):
        if e is not None:
            ids[b, : len(e.input_ids)] = torch.tensor(e.input_ids)
            attn[b, : len(e.input_ids)] = 1
    return ids, attn, [list(e.spans) if e else [] for e in turn]


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
    new = MemoryState(torch.stack(layers, dim=1), c.tokens_written.cpu(), dm.layer_indices,
                      dm.fingerprint(), dm.backbone_id, dm.config)
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
            state = write_tokens(self.dm, ids, state, spans=[encoded[k].spans])
            if len(self._cache) < self.max_entries:
                self._cache[keys[k]] = state
        return state


@dataclass(frozen=True)
class ReadPrompt:
    messages: list[Message]
    uses_memory: bool


def window_start(n_messages: int, window: int) -> int:
    """Index of the first history message the window regimes show: the last ``window`` messages
    (none for ``window=0``)."""
    return max(0, n_messages - window) if window else n_messages


def read_prompt(regime: str, history: list[Message], question: str, *, window: int = 4,
                bm25_k: int = 4) -> ReadPrompt:
    """The messages the backbone sees in the read pass of ``regime`` (DESIGN §2)."""
    if regime not in REGIMES:
        raise ValueError(f"regime={regime!r}; expected one of {REGIMES}")
    ask = [{"role": "user", "content": question}]
    if regime in ("no-memory", "memory-only"):
        shown: list[Message] = []
    elif regime in ("window", "memory+window"):
        shown = history[window_start(len(history), window):]
    elif regime in ("full-context", "memory+full-context"):
        shown = list(history)
    else:
        shown = bm25_turns(history, question, bm25_k)
    return ReadPrompt(shown + ask, regime in MEMORY_REGIMES)


def fit_prompt(tokenizer: Any, prompt: ReadPrompt, max_tokens: int) -> ReadPrompt:
    """Drop the oldest shown messages until the rendered prompt fits ``max_tokens``."""
    messages = list(prompt.messages)
    while len(messages) > 1 and len(tokenizer.apply_chat_template(
            messages, tokenize=True, add_generation_prompt=True, return_dict=False)) > max_tokens:
        messages.pop(0)
    return ReadPrompt(messages, prompt.uses_memory)


def bm25_turns(history: list[Message], question: str, k: int) -> list[Message]:
    """The k past turns that best match the question (BM25), in their original order."""
    from rank_bm25 import BM25Okapi

    turns = turns_of(history)
    if not turns:
        return []
    docs = [" ".join(m["content"] for m in t).lower().split() for t in turns]
    scores = BM25Okapi(docs).get_scores(question.lower().split())
    best = sorted(sorted(range(len(turns)), key=lambda i: -scores[i])[:k])
    return [m for i in best for m in turns[i]]


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
    T = max(len(r) for r in rows)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(rows), T), pad, dtype=torch.long)
    attn = torch.zeros(len(rows), T, dtype=torch.long)
    tmask = torch.zeros(len(rows), T, dtype=torch.bool)
    for b, (row, (s, e)) in enumerate(zip(rows, targets, strict=True)):
        ids[b, : len(row)] = torch.tensor(row)
        attn[b, : len(row)] = 1
        tmask[b, s:e] = True
    return ids, attn, tmask


def _rows(state: MemoryState | None, B: int) -> MemoryState | None:
    return MemoryState.stack([state] * B) if state is not None and state.batch_size != B else state


def _target_logprobs(dm: DeltaMemModel, hidden: Tensor, ids: Tensor, tmask: Tensor) -> Tensor:
    """log p of every target token, [B, T] (0 elsewhere); the LM head runs on targets only."""
    prev = torch.zeros_like(tmask)
    prev[:, :-1] = tmask[:, 1:]  # position t-1 predicts target t
    logits = dm.model.get_output_embeddings()(hidden[prev.to(hidden.device)]).float()
    picked = F.log_softmax(logits, -1).gather(-1, ids[tmask].to(logits.device)[:, None])[:, 0]
    out = torch.zeros(tmask.shape, dtype=picked.dtype, device=picked.device)
    out[tmask.to(picked.device)] = picked
    return out


def _token_logprobs(dm: DeltaMemModel, ids: Tensor, attn: Tensor, tmask: Tensor,
                    state: MemoryState | None) -> Tensor:
    """log p of the target tokens under a read pass (writes off), [B, T]."""
    device, B = dm.model.device, ids.shape[0]
    with dm.memory(_rows(state, B), batch_size=B):
        hidden = dm.model.get_decoder()(input_ids=ids.to(device), attention_mask=attn.to(device),
                                        use_cache=False).last_hidden_state
    return _target_logprobs(dm, hidden, ids, tmask)


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


def answer_loss(dm: DeltaMemModel, tokenizer: Any, prompts: list[ReadPrompt], answers: list[str],
                state: MemoryState | None) -> Tensor:
    """Per-row cross-entropy on the answer tokens only ([B], with autograd).

    Rows whose prompt does not use memory read an empty state (the frozen backbone)."""
    ids, attn, tmask = reply_batch(tokenizer, [(p.messages, a) for p, a in
                                                zip(prompts, answers, strict=True)])
    if state is not None:
        keep = torch.tensor([p.uses_memory for p in prompts], dtype=state.tensors.dtype,
                            device=state.tensors.device)
        state = MemoryState(state.tensors * keep.view(-1, 1, 1, 1, 1), state.tokens_written,
                            state.layer_indices, state.adapter_fingerprint, state.backbone_id,
                            state.config)
    logp = _token_logprobs(dm, ids, attn, tmask, state)
    m = tmask.to(logp)
    return -(logp * m).sum(-1) / m.sum(-1)


@torch.no_grad()
def generate_answer(dm: DeltaMemModel, tokenizer: Any, prompt: ReadPrompt,
                    state: MemoryState | None, max_new_tokens: int = 32) -> str:
    """Greedy reply to the read prompt (writes off)."""
    enc = tokenizer.apply_chat_template(prompt.messages, add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)
    ids = enc["input_ids"].to(dm.model.device)
    with dm.memory(state if prompt.uses_memory else None):
        out = dm.model.generate(input_ids=ids, attention_mask=enc["attention_mask"].to(ids.device),
                                max_new_tokens=max_new_tokens, do_sample=False,
                                pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    return tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
