"""`TrainConfig`: every option of `agentmem train`, each defined once (the CLI flags are built
from these fields by `agentmem.options`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from agentmem.model.backbones import DEFAULT_BACKBONE
from agentmem.options import at_least, non_negative_float, option, unit_gate, windows

# The adapter's own options (fields of DeltaMemConfig) that `agentmem train` exposes, with the
# training default where it differs from DeltaMemConfig's.
ADAPTER_FLAGS = ("write_mode", "rank", "num_states", "beta_bias", "write_policy", "write_reads")
# protocol options that do not change the weights' shapes: with --init-adapter, a value other than
# DeltaMemConfig's default overrides the initial adapter's
PROTOCOL_FLAGS = ("write_policy", "write_reads")
ADAPTER_DEFAULTS = {"write_mode": "message"}


@dataclass
class TrainConfig:
    """What `agentmem train` needs; every field with help text is a CLI flag."""

    data: list[str] = option(help="episodes JSONL (repeatable)", action="append", parse=str)
    out: str = option(help="run folder: checkpoints, logs, the adapter in <out>/adapter")
    backbone: str = option(DEFAULT_BACKBONE, help="embedded name or local HF folder")
    steps: int = option(300, help="optimizer steps of the schedule", parse=at_least(1))
    batch_size: int = option(8, help="episodes per optimizer step, over all processes (each of N "
                             "processes writes and reads every N-th)", parse=at_least(1))
    grad_accum: int = option(
        1, help="run each process's rows of a batch as up to N micro-batches one after the "
        "other, accumulating gradients (less memory, the same step)", parse=at_least(1))
    lr: float = option(1e-3, help="peak learning rate (AdamW)", parse=non_negative_float)
    warmup: float = option(0.1, help="share of the steps spent warming up the learning rate",
                           parse=non_negative_float)
    memory_only_steps: int = option(0, help="phase 1: this many steps read memory-only views "
                                    "(train the memory path first)", parse=at_least(0))
    context_views: float = option(0.5, help="afterwards: the share of views that also show the "
                                  "history", parse=non_negative_float)
    budget_tokens: int = option(2048, help="written tokens per episode, oldest turns dropped first",
                                parse=at_least(1))
    sparsity: float = 0.01  # weight of the mean-gate term (not a flag)
    seed: int = option(0, help="seed of the batches and views")
    save_every: int = option(50, help="checkpoint every N steps", parse=at_least(1))
    limit: int | None = option(None, help="use only the first N episodes", parse=at_least(1))
    stop_after: int | None = option(None, help="end this sitting after N steps; rerun the same "
                                    "command to resume", parse=at_least(1))
    max_minutes: float | None = option(
        None, help="fit the run into this many minutes: a fresh run times its first steps and "
        "shortens --steps so the whole schedule fits; any sitting stops, checkpointed, when the "
        "time is spent", parse=non_negative_float)
    device: str = option("auto", help="auto (CUDA when available), cpu, cuda, cuda:N (several "
                         "processes: auto, cpu or cuda, each process on its own GPU)")
    precision: str = option(
        "auto", help="the frozen backbone's weights and activations: fp32, bf16 or fp16 (δ-mem "
        "parameters, state and optimizer stay fp32; fp16 adds loss scaling); auto: accelerate "
        "launch's --mixed_precision, else fp32", choices=("auto", "fp32", "bf16", "fp16"))
    checkpoint_writes: bool = option(
        False, help="gradient checkpointing of the write replay: keep each layer write's inputs "
        "and recompute it in the backward pass (less memory on long histories)")
    init_adapter: str | None = option(
        None, help="start from this adapter folder's weights with a fresh schedule; its config "
        "replaces --rank/--num-states/--write-mode/--beta-bias")
    probe_every: int = option(
        10, help="every N steps log memory_gain: the memory-only answer CE when a row reads "
        "another episode's state, minus its own (0: never)", parse=at_least(0))
    bucket_turns: bool = option(
        False, help="draw each batch from episodes with about as many history turns (one write "
        "pass per turn: mixed lengths make every row pay for the longest)")
    match_weight: float = option(
        0.0, help="add W × the query-key match term: on episodes that record the message stating "
        "the answer (meta.fact_turn), the memory query that reads the answer should match that "
        "message's key and no other (agentmem.train.match; message-level writes; 0: off)",
        parse=non_negative_float)
    gate_weight: float = option(
        0.0, help="add W × the write-gate term: on episodes whose statements are known "
        "(meta.statement_turns, recorded by the synthetic builder), each statement's write gates "
        "should be --gate-beta and every other message's 0 (agentmem.train.gate; message-level "
        "writes; 0: off)", parse=non_negative_float)
    gate_beta: float = option(0.5, help="the write-gate term's target gate for statements, in (0, 1]",
                              parse=unit_gate)
    preserve_weight: float = option(
        0.0, help="add W × the preservation term: with each episode's memory present, the read "
        "pass on ordinary requests matches the frozen model's next-token distribution along its "
        "own greedy replies (KL; agentmem.train.preserve; 0: off)", parse=non_negative_float)
    preserve_rows: int = option(8, help="ordinary-request views per step for the preservation term",
                                parse=at_least(1))
    preserve_prompts: int = option(
        200, help="distinct train-split requests whose frozen replies are generated once and "
        "cached in the run folder", parse=at_least(1))
    preserve_windows: tuple[int, ...] = option(
        (0, 4), help="history messages shown before a request, comma-separated (0: memory only); "
        "drawn uniformly per view", parse=windows)
    window_views: float = option(
        0.0, help="of the views that do not show the whole history, the share that shows the last "
        "--window messages beside the memory (memory+window) instead of none (memory-only)",
        parse=non_negative_float)
    window: int = option(4, help="messages a memory+window view shows", parse=at_least(0))
    distill_weight: float = option(
        0.0, help="add W × the context-distillation term: on memory-only and memory+window views, "
        "KL(frozen model seeing the whole history ‖ memory-reading model) along the answer "
        "(agentmem.train.distill; 0: off)", parse=non_negative_float)
    cache_writes: bool = option(
        False, help="compute each episode's write features once and replay only the δ-mem writes "
        "per step (needs --write-mode message --no-write-reads; agentmem.model.history)")
    # the adapter's architecture (DeltaMemConfig fields; flags: ADAPTER_FLAGS)
    adapter: dict[str, Any] = field(default_factory=lambda: dict(ADAPTER_DEFAULTS))
