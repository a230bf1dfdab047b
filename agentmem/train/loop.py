"""`agentmem train`: train a δ-mem adapter on episodes (JSONL), backbone frozen.

Per episode: the history is written into memory turn by turn (as served), gradients reach the
write parameters through replayed writes; then question + answer are read with writes off in
a memory-only view or a memory + history-visible view; loss = cross-entropy on the answer,
plus 0.01 · mean over layers of (mean β − 0.05)², plus optionally the query–key match term of
`agentmem.train.match` (``match_weight``) and the write-gate term of `agentmem.train.gate`
(``gate_weight``) and the preservation term of `agentmem.train.preserve`
(``preserve_weight``: with the episode's memory present, ordinary replies stay the frozen
model's). AdamW, warm-up then cosine decay.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from agentmem.errors import UnsupportedLaunchError
from agentmem.model.adapters import apply_adapter, read_adapter, save_adapter
from agentmem.model.attach import DeltaMemModel, attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.model.history import (
    WriteGates,
    check_cacheable,
    message_features,
    turns_of,
    write_from_features,
    write_histories_grad,
)
from agentmem.model.prompts import read_prompt
from agentmem.model.scoring import answer_logprobs, answer_loss, row_nll
from agentmem.model.state import MemoryState
from agentmem.train.checkpoint import load_checkpoint, save_checkpoint
from agentmem.train.config import PROTOCOL_FLAGS, TrainConfig
from agentmem.train.distill import distill_kl_positions, teacher_row
from agentmem.train.gate import gate_terms, statement_messages
from agentmem.train.match import fact_message, match_terms, reply_queries
from agentmem.train.parallel import Replicas
from agentmem.train.precision import (
    grad_scaler,
    memory_estimate,
    precision_name,
    read_tokens,
    resolve_precision,
)
from agentmem.train.preserve import (
    TeacherReply,
    preservation_kl_tokens,
    preservation_views,
    teacher_replies,
)
from agentmem.train.report import write_card, write_loss_plot


@dataclass
class StepCaches:
    """What a run computes once per episode and reuses across steps (episode index → value)."""

    writes: EpisodeCache | None = None  # write features (--cache-writes)
    teachers: EpisodeCache | None = None  # the distillation teacher's rows (--distill-weight)


class EpisodeCache:
    """Values computed on first use per episode index: ``compute(episode)``."""

    def __init__(self, compute: Any) -> None:
        self.compute, self.values = compute, {}

    def get(self, index: int, episode: Any) -> Any:
        if index not in self.values:
            self.values[index] = self.compute(episode)
        return self.values[index]


PROVISIONAL_STEPS = 100  # the schedule of --max-minutes' timed steps, before the plan exists
GROUP_BATCHES = 8  # a length group holds this many batches' worth of episodes


def lr_at(step: int, cfg: TrainConfig) -> float:
    warm = max(1, int(cfg.warmup * cfg.steps))
    if step < warm:
        return cfg.lr * (step + 1) / warm
    progress = (step - warm) / max(1, cfg.steps - warm)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * progress))


def load_episodes(paths: list[str], limit: int | None) -> list[Any]:
    from agentmem.data.episodes import read_jsonl

    episodes = [e for p in paths for e in read_jsonl(p)]
    return episodes[:limit] if limit else episodes


def turn_groups(episodes: list[Any], batch_size: int) -> list[list[int]]:
    """Episode indices sorted by history length in turns, cut into groups of
    ``GROUP_BATCHES × batch_size`` (a short last group joins the one before).

    The write pass runs once per turn index for the whole batch, so a batch costs as many passes
    as its longest history: one 24-turn episode among one-fact ones makes every row pay 24.
    Drawing a batch inside one group keeps that close to the batch's own lengths."""
    turns = [len(turns_of(e.history)) for e in episodes]
    order = sorted(range(len(episodes)), key=lambda i: (turns[i], i))
    size = max(1, GROUP_BATCHES * batch_size)
    groups = [order[i:i + size] for i in range(0, len(order), size)]
    if len(groups) > 1 and len(groups[-1]) < size:
        short = groups.pop()
        groups[-1] += short
    return groups


def draw_batch(rng: random.Random, n_episodes: int, batch_size: int,
               groups: list[list[int]] | None = None) -> list[int]:
    """Episode indices of one batch. Without ``groups``: ``batch_size`` uniform draws. With them:
    a group picked in proportion to its size, and the batch drawn from it without repeats (with
    repeats only if the group is smaller than the batch), so each episode stays equally likely to
    be in a batch."""
    if groups is None:
        return [rng.randrange(n_episodes) for _ in range(batch_size)]
    group = rng.choices(groups, weights=[len(g) for g in groups])[0]
    if len(group) >= batch_size:
        return rng.sample(group, batch_size)
    return [group[rng.randrange(len(group))] for _ in range(batch_size)]


# the optional loss terms, in the order their sums travel, and their names in the log
TERMS = ("distill", "match", "gate", "preserve")
LOGGED = {"distill": "distill_kl", "match": "match_loss", "gate": "gate_loss",
          "preserve": "preserve_kl"}


@dataclass
class StepDraw:
    """What a step draws, the same in every process: the batch (episode indices), its views and
    the preservation views (their state rows index the batch)."""

    drawn: list[int]
    ctx: list[bool]
    regimes: list[str]
    preserve: tuple[list[int], list[tuple[list[dict[str, str]], str]], list[bool]] | None


@dataclass
class Forward:
    """One forward pass over some rows of a batch: the per-row answer CE and each term's sum over
    the rows' units (with autograd), their write gates, and the detached sums the log needs."""

    ce: torch.Tensor
    parts: dict[str, tuple[torch.Tensor, int]]
    written: WriteGates
    sums: torch.Tensor  # float64; the layout of `_sums`


def draw_step(episodes: list[Any], step: int, cfg: TrainConfig, groups: list[list[int]] | None,
              replies: list[TeacherReply] | None) -> StepDraw:
    """The batch and views of ``step``: a function of (seed, step) only, so that resuming, and
    every process of a launch, draw the same."""
    rng = random.Random(cfg.seed * 1_000_003 + step)
    drawn = draw_batch(rng, len(episodes), cfg.batch_size, groups)
    ctx = [step >= cfg.memory_only_steps and rng.random() < cfg.context_views for _ in drawn]
    regimes = ["memory+full-context" if c else "memory-only" for c in ctx]
    if cfg.window_views:  # drawn only when asked for: older runs keep their random stream
        regimes = [r if c or rng.random() >= cfg.window_views else "memory+window"
                   for r, c in zip(regimes, ctx, strict=True)]
    preserve = preservation_views(rng, [episodes[i].history for i in drawn], replies,
                                  cfg.preserve_rows, tuple(cfg.preserve_windows)) if replies else None
    return StepDraw(drawn, ctx, regimes, preserve)


def forward_rows(dm: DeltaMemModel, tok: Any, episodes: list[Any], draw: StepDraw, rows: list[int],
                 cfg: TrainConfig, caches: StepCaches | None, probe: bool) -> Forward:
    """Write and read the batch rows ``rows`` (positions in ``draw.drawn``) as one batched pass
    per turn, and compute every loss term's parts on them."""
    index = [draw.drawn[b] for b in rows]
    batch, ctx = [episodes[i] for i in index], [draw.ctx[b] for b in rows]
    keys: list[torch.Tensor | None] | None = [] if cfg.match_weight else None
    gates: list[torch.Tensor | None] | None = [] if cfg.gate_weight else None
    if caches is not None and caches.writes is not None:
        state, written = write_from_features(dm, [caches.writes.get(i, episodes[i]) for i in index],
                                             keys_out=keys, betas_out=gates)
    else:
        state, written = write_histories_grad(dm, tok, [e.history for e in batch],
                                              budget_tokens=cfg.budget_tokens, keys_out=keys,
                                              betas_out=gates, checkpoint=cfg.checkpoint_writes)
    prompts = [read_prompt(draw.regimes[b], e.history, e.question, window=cfg.window)
               for b, e in zip(rows, batch, strict=True)]
    answers = [e.answer for e in batch]
    teachers = caches.teachers if caches is not None else None
    if teachers is None:
        ce = answer_loss(dm, tok, prompts, answers, state)  # [rows]
    else:  # one read pass gives both the answer CE and the student of the distillation term
        logp, targets, row_of = answer_logprobs(dm, tok, prompts, answers, state)
        ce = row_nll(logp, targets, row_of, len(batch))
    parts: dict[str, tuple[torch.Tensor, int]] = {}
    if teachers is not None:
        mem_rows = [b for b, c in enumerate(ctx) if not c]
        if mem_rows:
            keep = torch.tensor([not c for c in ctx])[row_of]
            kd = distill_kl_positions(logp[keep.to(logp.device)],
                                      [teachers.get(index[b], batch[b]) for b in mem_rows])
            parts["distill"] = (kd.sum(), kd.numel())
    hits = said = other = None
    if keys is not None:
        facts = [fact_message(e, 0 if k is None else k.shape[0])
                 for e, k in zip(batch, keys, strict=True)]
        queries = reply_queries(dm, tok, [e.question for e in batch], [e.answer for e in batch])
        terms, hits = match_terms(queries, keys, facts)
        parts["match"] = (terms.sum(), terms.numel())
    if gates is not None:
        labels = [statement_messages(e, 0 if g is None else g.shape[0])
                  for e, g in zip(batch, gates, strict=True)]
        terms, said, other = gate_terms(gates, labels, cfg.gate_beta)
        parts["gate"] = (terms.sum(), terms.numel())
    if draw.preserve is not None:
        rows_of_views, pairs, cut = draw.preserve
        local = {b: j for j, b in enumerate(rows)}
        views = [v for v, b in enumerate(rows_of_views) if b in local]
        if views:
            kl = preservation_kl_tokens(dm, tok, state, [local[rows_of_views[v]] for v in views],
                                        [pairs[v] for v in views], [cut[v] for v in views])
            parts["preserve"] = (kl.sum(), kl.numel())
    probed = memory_probe(dm, tok, batch, ctx, state, ce.detach().cpu()) if probe else {}
    return Forward(ce, parts, written, _sums(ce, ctx, written, parts, (hits, said, other), probed))


def _sums(ce: torch.Tensor, ctx: list[bool], written: WriteGates,
          parts: dict[str, tuple[torch.Tensor, int]], stats: tuple[Any, Any, Any],
          probed: dict[str, float]) -> torch.Tensor:
    """The detached sums a step adds over rows and processes, float64: the answer CE of
    memory-only and of history-visible rows; Σ β per layer and the gate count; per term in TERMS
    its sum and count; the match hits, statement gates and other gates (sum, count each); the
    probe's other-state CE, own CE and rows."""
    is_ctx, ce_rows = torch.tensor(ctx, dtype=torch.bool), ce.detach().cpu().double()
    out = [ce_rows[~is_ctx].sum(), ce_rows[is_ctx].sum(),
           *written.total.detach().cpu().double(), torch.tensor(written.count)]
    for name in TERMS:
        value, n = parts.get(name, (torch.zeros(()), 0))
        out += [value.detach().cpu().double(), torch.tensor(float(n))]
    for extra in stats:
        out += [torch.zeros(()), torch.tensor(0.0)] if extra is None else \
            [extra.detach().cpu().double().sum(), torch.tensor(float(extra.numel()))]
    out += [torch.tensor(probed.get(k, 0.0)) for k in ("other_sum", "own_sum", "rows")]
    return torch.stack([torch.as_tensor(v, dtype=torch.float64) for v in out])


def micro_batches(rows: list[int], k: int) -> list[list[int]]:
    """``rows`` cut into at most ``k`` contiguous, nearly equal parts (none empty)."""
    k = max(1, min(k, len(rows)))
    size, extra = divmod(len(rows), k)
    cuts = [0]
    for j in range(k):
        cuts.append(cuts[-1] + size + (j < extra))
    return [rows[a:b] for a, b in zip(cuts, cuts[1:], strict=False)]


def train_step(dm: DeltaMemModel, tok: Any, episodes: list[Any], step: int, cfg: TrainConfig,
               opt: torch.optim.Optimizer, groups: list[list[int]] | None = None,
               replies: list[TeacherReply] | None = None, caches: StepCaches | None = None,
               replicas: Replicas | None = None, scaler: Any = None) -> dict[str, float]:
    """One optimizer step over a batch written and read as one batched pass per turn.

    The batch and its views depend only on (seed, step) (and ``groups``, from ``turn_groups``
    when ``cfg.bucket_turns``), so resuming reproduces an uninterrupted run. Every loss term is
    a mean over some units (rows, tokens, gates), computed as a sum over units divided by the
    batch's count, so the batch can be split without changing the step:

    - over processes (``replicas``): every process draws the same batch and takes every N-th
      row; the gradients are summed over processes (`agentmem.train.parallel`);
    - within a process, into ``cfg.grad_accum`` micro-batches run one after the other: each
      term's gradient is accumulated apart (its count is known once all rows have run), and the
      sparsity term, a function of the batch's mean gate, is differentiated at the end from the
      writes' kept inputs (`WriteGates.recompute`).

    ``scaler``: a `torch.amp.GradScaler` (fp16 backbones)."""
    rep = replicas if replicas is not None else Replicas()
    draw = draw_step(episodes, step, cfg, groups, replies)
    B = len(draw.drawn)
    mine = rep.rows(B)  # this process's rows of the batch
    params = list(dm.parameters())
    probe = bool(cfg.probe_every) and (step + 1) % cfg.probe_every == 0  # before the update
    opt.zero_grad(set_to_none=True)
    chunks = micro_batches(mine, cfg.grad_accum)
    scale = scaler.scale if scaler is not None else (lambda t: t)
    if len(chunks) == 1:  # one pass: one backward through everything
        fwd = forward_rows(dm, tok, episodes, draw, mine, cfg, caches, probe)
        totals, writes = rep.total(fwd.sums), [fwd.written]
        loss, value, logged = _assemble(cfg, totals, B, fwd)
        scale(loss).backward()
    else:
        accumulated: dict[str, list[torch.Tensor | None]] = {}
        sums, writes = [], []
        for chunk in chunks:
            fwd = forward_rows(dm, tok, episodes, draw, chunk, cfg, caches, probe)
            pieces = [("ce", fwd.ce.sum())] + [(n, fwd.parts[n][0]) for n in TERMS if n in fwd.parts]
            pieces = [(n, t) for n, t in pieces if t.requires_grad]
            for j, (name, tensor) in enumerate(pieces):
                grads = torch.autograd.grad(scale(tensor), params, retain_graph=j < len(pieces) - 1,
                                            allow_unused=True)
                accumulated[name] = _add(accumulated.get(name), grads)
            sums.append(fwd.sums)
            writes.append(WriteGates(fwd.written.total.detach(), fwd.written.count,
                                     fwd.written.replays))
            del fwd, pieces
        totals = rep.total(torch.stack(sums).sum(0))
        _, value, logged = _assemble(cfg, totals, B, None, L=writes[0].total.shape[0])
        weights = _term_weights(cfg, totals, writes[0].total.shape[0], B)
        for p_index, p in enumerate(params):
            grad = None
            for name, grads in accumulated.items():
                g = grads[p_index]
                if g is not None and weights.get(name):
                    grad = g * weights[name] if grad is None else grad + g * weights[name]
            p.grad = grad
    # the sparsity term, differentiated at the batch's mean gate (micro-batches: from the kept
    # write inputs; one pass: it is already in the loss)
    if len(chunks) > 1:
        L = writes[0].total.shape[0]
        slope, count = _sparsity_slope(totals, L)
        for w in writes:
            if w.replays:
                term = cfg.sparsity * (slope.to(w.total) * w.recompute()).sum() / count
                if term.requires_grad:
                    scale(term).backward()
    rep.sum_gradients(params)
    for g in opt.param_groups:
        g["lr"] = lr_at(step, cfg)
    if scaler is not None:
        scaler.unscale_(opt)
    grad_norm = torch.nn.utils.clip_grad_norm_(params, 1.0).item()
    if scaler is not None:
        scaler.step(opt)
        scaler.update()
    else:
        opt.step()
    L = writes[0].total.shape[0]
    n_ctx = sum(draw.ctx)
    ce_memory, ce_context = totals[0].item(), totals[1].item()
    return {"step": step + 1, "loss": value, "lr": lr_at(step, cfg), "grad_norm": grad_norm,
            "ce_memory_only": ce_memory / (B - n_ctx) if B > n_ctx else 0.0,
            "ce_context": ce_context / n_ctx if n_ctx else 0.0,
            "views_window": draw.regimes.count("memory+window"),
            "views_context": n_ctx,
            "beta_mean": (totals[2:2 + L] / max(totals[2 + L].item(), 1.0)).mean().item(),
            # turns of the longest history, before --budget-tokens drops the oldest ones
            "write_passes": max(len(turns_of(episodes[i].history)) for i in draw.drawn), **logged}


def _add(acc: list[torch.Tensor | None] | None, grads: tuple[torch.Tensor | None, ...]
         ) -> list[torch.Tensor | None]:
    if acc is None:
        return list(grads)
    return [a if g is None else g if a is None else a + g for a, g in zip(acc, grads, strict=True)]


def _sparsity_slope(totals: torch.Tensor, L: int) -> tuple[torch.Tensor, float]:
    """d/dΣβ_l of mean_l (m_l − 0.05)², m the batch's mean gate per layer: (slope [L], count);
    the term's gradient is Σ_l slope_l · dΣβ_l / count."""
    count = max(totals[2 + L].item(), 1.0)
    mean = totals[2:2 + L] / count
    return (2 * (mean - 0.05) / L).float(), count


def _term_weights(cfg: TrainConfig, totals: torch.Tensor, L: int, B: int) -> dict[str, float]:
    """Each term's factor on its sum's gradient: its weight over its count in the whole batch."""
    weights = {"ce": 1.0 / B}
    factors = {"distill": cfg.distill_weight, "match": cfg.match_weight, "gate": cfg.gate_weight,
               "preserve": cfg.preserve_weight}
    at = 3 + L
    for name in TERMS:
        n = totals[at + 1].item()
        weights[name] = factors[name] / n if n else 0.0
        at += 2
    return weights


def _assemble(cfg: TrainConfig, totals: torch.Tensor, B: int, fwd: Forward | None, *,
              L: int | None = None) -> tuple[torch.Tensor | None, float, dict[str, float]]:
    """From the batch's totals: this process's loss from its forward pass ``fwd`` (None: no
    loss; its gradient summed over processes is the batch's), the batch's loss value, and the
    logged terms."""
    L = fwd.written.total.shape[0] if fwd is not None else L
    weights = _term_weights(cfg, totals, L, B)
    slope, count = _sparsity_slope(totals, L)
    mean = totals[2:2 + L] / count
    value = (totals[0].item() + totals[1].item()) / B
    value += cfg.sparsity * ((mean - 0.05) ** 2).mean().item()
    loss = None
    if fwd is not None:  # the sparsity term through its linearisation at the batch's mean gate
        gates = fwd.written.total
        loss = fwd.ce.sum() * weights["ce"] + cfg.sparsity * (slope.to(gates) * gates).sum() / count
    at, logged = 3 + L, {}
    for name in TERMS:
        total, n = totals[at].item(), totals[at + 1].item()
        at += 2
        if not n:
            continue
        if loss is not None and name in fwd.parts:
            loss = loss + weights[name] * fwd.parts[name][0]
        value += weights[name] * total
        logged[LOGGED[name]] = total / n
    (hit_sum, hit_n), (said_sum, said_n), (other_sum, other_n) = (
        (totals[at + 2 * j].item(), totals[at + 2 * j + 1].item()) for j in range(3))
    if "match_loss" in logged:
        logged["match_acc"] = hit_sum / hit_n
    if "gate_loss" in logged:
        logged.update({k: s / n for k, s, n in (("beta_statement", said_sum, said_n),
                                                ("beta_other", other_sum, other_n)) if n})
    probe_other, probe_own, probe_rows = totals[at + 6:at + 9].tolist()
    if probe_rows:
        logged.update(ce_other_memory=probe_other / probe_rows,
                      memory_gain=(probe_other - probe_own) / probe_rows)
    return loss, value, logged


def neighbour_ce(dm: DeltaMemModel, tok: Any, batch: list[Any], rows: list[int],
                 state: MemoryState) -> torch.Tensor:
    """Memory-only answer CE of ``rows`` ([len(rows)], no gradients) when row i reads the state
    row i − 1 wrote (cyclically): a memory that holds writes, but not the facts asked about."""
    other = state.rows([(i - 1) % len(batch) for i in rows])
    prompts = [read_prompt("memory-only", batch[i].history, batch[i].question) for i in rows]
    with torch.no_grad():  # no graph through the (differentiable) written state either
        return answer_loss(dm, tok, prompts, [batch[i].answer for i in rows], other).cpu()


def memory_probe(dm: DeltaMemModel, tok: Any, batch: list[Any], ctx: list[bool], state: MemoryState,
                 ce: torch.Tensor) -> dict[str, float]:
    """How much of the memory-only answer CE comes from *this* episode's history.

    Each memory-only row is read again from its neighbour's state (``neighbour_ce``; the row
    before it among this process's rows): what a learned prior or a constant bias carried by the
    state gives. Returns the sums over the rows of that CE (``other_sum``) and of the row's own CE
    (``own_sum``, from ``ce``, per row) and the number of rows; the log's ``memory_gain`` is
    (other − own) / rows, in nats per answer token: near 0 while the memory only carries a prior,
    positive once it carries the episode's contents. Rows whose neighbour is the same episode
    are skipped; {} when no row is left.
    """
    rows = [i for i, c in enumerate(ctx) if not c and batch[i - 1] is not batch[i]]
    if not rows:
        return {}
    other = neighbour_ce(dm, tok, batch, rows, state).double().sum().item()
    return {"other_sum": other, "own_sum": ce[rows].double().sum().item(), "rows": float(len(rows))}


def train(cfg: TrainConfig, command: str = "") -> Path:
    """Run (or resume) training; returns the adapter folder ``<out>/adapter``.

    With ``max_minutes`` a fresh run times its first steps and shrinks ``steps`` (and
    ``memory_only_steps`` in proportion) so the whole cosine schedule fits the budget; the plan
    is stored in the checkpoint, so a resumed run keeps it. Any sitting also ends, checkpointed,
    once the budget is spent.

    Under a launcher with several processes (``torchrun``, ``accelerate launch``) the processes
    split every batch (`agentmem.train.parallel`); only the main one writes files. A checkpoint
    resumes under any number of processes.
    """
    if not 0.0 < cfg.gate_beta <= 1.0:  # also refuses nan
        raise ValueError(f"gate_beta must be in (0, 1], got {cfg.gate_beta}")
    _check_preserve(cfg)
    precision = resolve_precision(cfg.precision)
    cfg.precision = precision_name(precision)  # as recorded: auto resolved
    rep = Replicas.start(cfg.device)
    if cfg.batch_size < rep.world:
        rep.end()
        raise UnsupportedLaunchError(f"batch_size {cfg.batch_size} < {rep.world} processes: every "
                                     "process needs at least one episode of each batch")
    try:
        return _train(cfg, command, rep, precision)
    finally:
        rep.end()


def _train(cfg: TrainConfig, command: str, rep: Replicas, precision: torch.dtype) -> Path:
    device = rep.device
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(cfg.seed)
    model, tok = load_backbone(cfg.backbone, dtype=precision)
    init = read_adapter(cfg.init_adapter) if cfg.init_adapter else None
    if init is not None:  # continue that adapter's architecture; protocol flags may change
        chosen = {k: cfg.adapter[k] for k in PROTOCOL_FLAGS
                  if k in cfg.adapter and cfg.adapter[k] != getattr(DeltaMemConfig(), k)}
        cfg.adapter = {**init[0].to_dict(), **chosen}
    dm = attach_delta_mem(model.to(device), DeltaMemConfig.from_dict(cfg.adapter))
    for flag, weight in (("--match-weight", cfg.match_weight), ("--gate-weight", cfg.gate_weight)):
        if weight and dm.config.write_mode != "message":
            raise ValueError(f"{flag} needs message-level writes (one key and gate per message); "
                             f"this adapter writes per {dm.config.write_mode}")
    if cfg.cache_writes:
        check_cacheable(dm)
    opt = torch.optim.AdamW(list(dm.parameters()), lr=cfg.lr, weight_decay=0.0)
    scaler = grad_scaler(precision, device)
    episodes = load_episodes(cfg.data, cfg.limit)
    caches = StepCaches(
        EpisodeCache(lambda e: message_features(dm, tok, e.history, cfg.budget_tokens))
        if cfg.cache_writes else None,
        EpisodeCache(lambda e: teacher_row(dm, tok, e)) if cfg.distill_weight else None)
    groups = turn_groups(episodes, cfg.batch_size) if cfg.bucket_turns else None
    ckpt, log_path = out / "checkpoint", out / "train_log.jsonl"
    replies = None
    if cfg.preserve_weight:  # the main process generates and caches them; the others read that
        for turn in ("main", "others"):
            if rep.is_main == (turn == "main"):
                replies = teacher_replies(dm, tok, cfg.preserve_prompts,
                                          out / "teacher_replies.jsonl", seed=cfg.seed)
            rep.wait()
    if init is not None and not (ckpt / "trainer_state.json").exists():
        apply_adapter(dm, cfg.init_adapter, init[1], init[2])
    start, elapsed, planned = 0, 0.0, False
    sittings: list[int] = []
    if (ckpt / "trainer_state.json").exists():
        state = load_checkpoint(ckpt, dm, opt)
        start, elapsed = state["step"], state["elapsed_s"]
        sittings = state.get("processes", [1])
        if "plan" in state:
            cfg.steps, cfg.memory_only_steps = state["plan"]["steps"], state["plan"]["memory_only_steps"]
            planned = True
        if rep.is_main:
            _truncate_log(log_path, start)
    rep.same_parameters(dm.parameters())
    sittings = [*sittings, rep.world]
    if rep.is_main:
        tokens = read_tokens(tok, episodes, cfg)
        print(memory_estimate(dm, cfg, precision, rep.world, tokens).summary(), file=sys.stderr)
    t0 = time.perf_counter() - elapsed
    sitting = time.perf_counter()
    budget = cfg.max_minutes * 60 if cfg.max_minutes else None
    nominal = (cfg.steps, cfg.memory_only_steps)
    timing = bool(budget) and start == 0 and not planned
    log = open(log_path, "a") if rep.is_main else None  # noqa: SIM115 (closed below)
    try:
        bar = tqdm(total=cfg.steps, initial=start, desc="train", disable=not rep.is_main)
        end = min(cfg.steps, start + cfg.stop_after) if cfg.stop_after else cfg.steps
        if timing:  # until the plan exists, warm up as a short run would, not as --steps would
            cfg.steps = min(cfg.steps, PROVISIONAL_STEPS)
        step = start
        while step < end:
            if step == start + 1:
                timed = time.perf_counter()  # the first step pays one-off costs: not timed
            row = train_step(dm, tok, episodes, step, cfg, opt, groups, replies, caches, rep, scaler)
            row["elapsed_s"] = round(time.perf_counter() - t0, 2)
            if device.type == "cuda":
                row["peak_memory_gb"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
            if log is not None:
                log.write(json.dumps(row) + "\n")
                log.flush()
            bar.set_postfix(loss=f"{row['loss']:.3f}", mem=f"{row['ce_memory_only']:.3f}")
            bar.update(1)
            step += 1
            if timing and step == 6:
                # the main process's clock decides, so that every process keeps the same plan
                per_step = rep.total(torch.tensor(
                    (time.perf_counter() - timed) / 5 if rep.is_main else 0.0)).item()
                # 15 % margin: the timed steps may be the cheaper memory-only views
                left = 0.85 * budget - (time.perf_counter() - sitting)
                fit = max(step, int(left / per_step) + step)
                cfg.steps, cfg.memory_only_steps = nominal
                if fit < nominal[0]:
                    cfg.memory_only_steps = round(nominal[1] * fit / nominal[0])
                    cfg.steps = fit
                    end = min(end, fit)
                    bar.total = fit
                planned, timing = True, False
            out_of_time = budget is not None and rep.total(torch.tensor(
                float(rep.is_main and time.perf_counter() - sitting > budget))).item() > 0
            if step % cfg.save_every == 0 or step == end or out_of_time:
                extra = {"plan": {"steps": cfg.steps, "memory_only_steps": cfg.memory_only_steps}} \
                    if planned else {}
                if rep.is_main:
                    save_checkpoint(ckpt, dm, opt, {"step": step, "elapsed_s": row["elapsed_s"],
                                                    "config": asdict(cfg), "processes": sittings,
                                                    **extra})
                rep.wait()
            if out_of_time:
                break
        bar.close()
    finally:
        if log is not None:
            log.close()
    adapter = out / "adapter"
    if rep.is_main:
        save_adapter(dm, adapter)
        write_loss_plot(log_path, out / "loss.png")
        write_card(adapter, cfg, command, log_path, len(episodes), processes=sittings)
    rep.wait()
    return adapter


def _check_preserve(cfg: TrainConfig) -> None:
    """Refuse bad preservation options before anything is loaded or written."""
    if not cfg.preserve_weight >= 0:  # also refuses nan
        raise ValueError(f"preserve_weight must be >= 0, got {cfg.preserve_weight}")
    if cfg.preserve_weight and (cfg.preserve_rows < 1 or cfg.preserve_prompts < 1):
        raise ValueError(f"preserve_rows and preserve_prompts must be >= 1, got "
                         f"{cfg.preserve_rows} and {cfg.preserve_prompts}")
    if not cfg.preserve_windows or any(w < 0 for w in cfg.preserve_windows):
        raise ValueError(f"preserve_windows must be window sizes >= 0, got {cfg.preserve_windows}")


def _truncate_log(path: Path, steps: int) -> None:
    """Drop log rows past the checkpoint (steps that will be redone after a resume)."""
    if path.exists():
        rows = [r for r in path.read_text().splitlines() if r and json.loads(r)["step"] <= steps]
        path.write_text("".join(r + "\n" for r in rows))
