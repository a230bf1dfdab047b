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


# Activations a decoder layer keeps for its backward pass, per token: about 34·d + 5·heads·T
# 2-byte values for 16-bit training (Korthikanti et al., 2022, "Reducing Activation Recomputation
# in Large Transformer Models", §4.1) — weights frozen, the inputs' gradients still need them.
ACT_PER_HIDDEN, ACT_PER_SCORE = 34, 5


def memory_estimate(dm: Any, cfg: Any, dtype: torch.dtype, world: int) -> MemoryEstimate:
    """Estimate one process's memory for ``cfg`` (a `TrainConfig`) on the attached model ``dm``.

    The read prompt is taken as long as a history-visible view can be: the write budget
    (``budget_tokens``) plus 64 tokens of question and answer. The write pass runs without
    autograd and its replay keeps only the δ-mem states, both small beside the read pass.
    """
    frozen = sum(p.numel() * p.element_size() for n, p in dm.model.named_parameters()
                 if "delta_mem" not in n)
    trainable = sum(p.numel() for p in dm.parameters()) * 4 * 4  # param, grad, exp_avg, exp_avg_sq
    config = dm.model.config
    d, heads = config.hidden_size, config.num_attention_heads
    layers = config.num_hidden_layers
    rows = -(-cfg.batch_size // world)
    tokens = cfg.budget_tokens + 64 if cfg.context_views > 0 else 256
    width = torch.empty((), dtype=dtype).element_size()
    per_layer = rows * tokens * (ACT_PER_HIDDEN * d + ACT_PER_SCORE * heads * tokens) * width // 2
    vocab = rows * 64 * config.vocab_size * 4 * 2  # fp32 logits and log-softmax of the answers
    return MemoryEstimate(frozen, trainable, layers * per_layer + vocab, rows, tokens,
                          {v: k for k, v in PRECISIONS.items()}[dtype])
