"""Token rows of different lengths as one batch: padded ids and the attention mask."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor


def pad_token_id(tokenizer: Any, fallback: int = 0) -> int:
    """The tokenizer's pad token, else ``fallback`` (what fills padding never reaches a target:
    the attention mask hides it)."""
    pad = getattr(tokenizer, "pad_token_id", None)
    return pad if pad is not None else fallback


def pad_rows(rows: Sequence[Sequence[int]], pad_id: int, *, left: bool = False,
             min_length: int = 1) -> tuple[Tensor, Tensor]:
    """ids [B, T] and attention mask [B, T] (long) of ``rows``, T the longest row (at least
    ``min_length``). Right padding keeps every row's positions 0..n-1 (write and scoring passes);
    left padding puts every row's last token at T-1 (decoding appends after it)."""
    T = max([len(r) for r in rows] + [min_length])
    ids = torch.full((len(rows), T), pad_id, dtype=torch.long)
    mask = torch.zeros(len(rows), T, dtype=torch.long)
    for b, row in enumerate(rows):
        if not len(row):
            continue
        cols = slice(T - len(row), T) if left else slice(0, len(row))
        ids[b, cols] = torch.as_tensor(list(row), dtype=torch.long)
        mask[b, cols] = 1
    return ids, mask
