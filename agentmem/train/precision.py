"""Precision of the frozen backbone in training, and what a run will hold in memory.

``--precision bf16`` (or fp16) keeps the frozen backbone's weights and activations in half
precision: since its weights never change, no fp32 master copy is needed, which is what autocast
would keep (half the weight memory of autocast over fp32 weights). The δ-mem parameters, their
gradients and AdamW moments, the memory state and its recurrence stay fp32 (`DeltaMemLayer`
computes its features and corrections in fp32 and casts the correction to the backbone's dtype);
logits are upcast before the softmax. fp16 adds loss scaling (`torch.amp.GradScaler`): gradients
reach the δ-mem parameters through fp16 activations, which underflow without it.

`memory_estimate` is printed before training starts (docs/training.md#memory).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch

from agentmem.errors import UnsupportedLaunchError

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# what `accelerate launch --mixed_precision X` sets, as our names
ACCELERATE_PRECISION = {"no": "fp32", "bf16": "bf16", "fp16": "fp16"}


def precision_name(dtype: torch.dtype) -> str:
    """torch.bfloat16 → ``bf16`` (the `--precision` names)."""
    return next(name for name, d in PRECISIONS.items() if d == dtype)


def resolve_precision(spec: str) -> torch.dtype:
    """``fp32``, ``bf16``, ``fp16`` or ``auto`` (accelerate's ``--mixed_precision`` when launched
    through ``accelerate launch``, else fp32) → the backbone's dtype.

    Raises:
        ValueError: an unknown spec.
        UnsupportedLaunchError: ``accelerate launch --mixed_precision`` asked for what agentmem
            does not offer (fp8).
    """
    if spec == "auto":
        launched = os.environ.get("ACCELERATE_MIXED_PRECISION", "no").strip().lower() or "no"
        if launched not in ACCELERATE_PRECISION:
            raise UnsupportedLaunchError(
                f"accelerate launch --mixed_precision {launched}: agentmem trains with fp32, bf16 "
                "or fp16 backbones (--precision)")
        spec = ACCELERATE_PRECISION[launched]
    if spec not in PRECISIONS:
        raise ValueError(f"precision={spec!r}: expected auto, fp32, bf16 or fp16")
    return PRECISIONS[spec]


def grad_scaler(dtype: torch.dtype, device: torch.device) -> Any:
    """A loss scaler for an fp16 backbone; None otherwise."""
    if dtype != torch.float16:
        return None
    return torch.amp.GradScaler(device.type)


@dataclass(frozen=True)
class MemoryEstimate:
    """What one training process holds, in bytes (an estimate for the activations)."""

    backbone: int  # the frozen weights
    adapter: int  # δ-mem parameters, gradients and the two AdamW moments (fp32)
    activations: int  # the read pass kept for the backward pass, over this process's rows
    rows: int  # episodes per process and step
    tokens: int  # the longest read prompt assumed, in tokens
    dtype: str

    @property
    def total(self) -> int:
        return self.backbone + self.adapter + self.activations

    def summary(self) -> str:
        gib = lambda n: f"{n / 2**30:.2f} GiB"  # noqa: E731
        return (f"memory estimate per process: {gib(self.total)} = backbone {gib(self.backbone)} "
                f"({self.dtype}) + adapter and AdamW {gib(self.adapter)} + activations "
                f"~{gib(self.activations)} ({self.rows} rows × {self.tokens} tokens)")


# Values a decoder layer keeps for the backward pass, per token: about 16 per hidden unit
# (attention inputs and outputs, norms, residuals) and 4.5 per MLP unit (gate, up, activation,
# product), in the backbone's dtype; with SDPA no T × T scores are kept. Measured: one step of the
# default backbone on the CPU, 2 rows of 571 and of 1,083 history-visible tokens, grew the resident
# set by 2.0 and 3.3 GiB in fp32 and 1.4 GiB in bf16 (1,083); estimated 2.1, 4.0 and 2.0
# (docs/training.md#memory).
ACT_PER_HIDDEN, ACT_PER_MLP = 16, 4.5
SAMPLED = 64  # longest episodes (by characters) tokenized to find the longest read prompt


def read_tokens(tokenizer: Any, episodes: list[Any], cfg: Any) -> int:
    """The longest read prompt a step may build, in tokens: the whole history and the question
    when history-visible views are drawn, else the question (window views: the window), plus the
    answer."""
    from agentmem.model.chat_template import encode_chat
    from agentmem.model.prompts import read_prompt

    regime = ("memory+full-context" if cfg.context_views > 0 else
              "memory+window" if cfg.window_views > 0 else "memory-only")
    size = lambda e: sum(len(m["content"]) for m in e.history)  # noqa: E731
    longest = sorted(episodes, key=size, reverse=True)[:SAMPLED]
    tokens = [len(encode_chat(tokenizer, [*read_prompt(regime, e.history, e.question,
                                                       window=cfg.window).messages,
                                          {"role": "assistant", "content": e.answer}]).input_ids)
              for e in longest]
    return max(tokens, default=0)


def memory_estimate(dm: Any, cfg: Any, dtype: torch.dtype, world: int, tokens: int
                    ) -> MemoryEstimate:
    """Estimate one process's memory for ``cfg`` (a `TrainConfig`) on the attached model ``dm``
    when its read prompts are up to ``tokens`` long (`read_tokens`).

    The write pass runs without autograd and its replay keeps only the δ-mem states, both small
    beside the read pass; every row is counted at the longest prompt (padding).
    """
    frozen = sum(p.numel() * p.element_size() for n, p in dm.model.named_parameters()
                 if "delta_mem" not in n)
    trainable = sum(p.numel() for p in dm.parameters()) * 4 * 4  # param, grad, exp_avg, exp_avg_sq
    config = dm.model.config
    d, layers = config.hidden_size, config.num_hidden_layers
    mlp = getattr(config, "intermediate_size", None) or 4 * d
    rows = -(-cfg.batch_size // world)
    width = torch.empty((), dtype=dtype).element_size()
    per_token = (ACT_PER_HIDDEN * d + ACT_PER_MLP * mlp) * width
    logits = rows * 64 * config.vocab_size * 4 * 2  # fp32 logits and log-softmax of the answers
    return MemoryEstimate(frozen, trainable, int(layers * rows * tokens * per_token) + logits,
                          rows, tokens, precision_name(dtype))
