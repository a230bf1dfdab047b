"""Per-call memory context: which state each layer reads, whether and how it writes.

A `MemoryCache` lives for one `DeltaMemModel.memory(...)` block. Layers find it through the
attached model's `PassContext` (a ContextVar, so concurrent threads and async tasks each see their
own). Layer modules keep no state of their own.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING

import torch
from torch import Tensor

from agentmem.errors import AgentMemError, MissingMessageSpansError

if TYPE_CHECKING:
    from agentmem.model.layer import DeltaMemLayer

Spans = Sequence[Sequence[tuple[int, int]]]  # per batch row: (start, end) token ranges


class PassContext:
    """Links an attached model's layers to the cache active in the current context."""

    def __init__(self, layers: dict[int, DeltaMemLayer]) -> None:
        self.layers = layers
        self._active: ContextVar[MemoryCache | None] = ContextVar(f"agentmem_{id(self)}",
                                                                   default=None)

    def active(self) -> MemoryCache | None:
        return self._active.get()

    def set(self, cache: MemoryCache | None):  # noqa: ANN201 - returns a ContextVar token
        return self._active.set(cache)

    def reset(self, token) -> None:  # noqa: ANN001
        self._active.reset(token)


class MemoryCache:
    """States per layer index plus the write instructions of one memory block.

    Args:
        states: layer index -> S [B, N, r, r] at the start of the block.
        tokens_written: [B] int64 counts carried in from the loaded state.
        write: "off", "token" (TSW) or "message" (SSW).
        write_mask: [B, T0] for token writes; 0 marks tokens (padding) that must not write.
            Tokens past T0 (e.g. generated ones) write.
        spans: message token spans per row; required for "message".
    """

    def __init__(self, states: dict[int, Tensor], tokens_written: Tensor, write: str,
                 write_mask: Tensor | None = None, spans: Spans | None = None,
                 record: bool = False) -> None:
        if write not in ("off", "token", "message"):
            raise ValueError(f"write={write!r}; expected 'off', 'token' or 'message'")
        if write == "message" and (spans is None or not any(len(s) for s in spans)):
            raise MissingMessageSpansError(
                "message-level writes (SSW) need message token spans; none were given")
        self.states = dict(states)
        self.tokens_written = tokens_written.clone()
        self.write = write
        self.write_mask = write_mask
        self.spans = [list(s) for s in spans] if spans is not None else None
        self.reads: dict[int, Tensor] = {}
        self.record: dict[int, Tensor] | None = {} if record else None  # layer -> x (detached)
        self.positions = dict.fromkeys(states, 0)
        self.first_layer = min(states)
        self._pool: tuple[Tensor, Tensor] | None = None

    def state_for(self, layer_idx: int, batch: int) -> Tensor:
        S = self.states[layer_idx]
        if S.shape[0] != batch:
            raise ValueError(f"memory state has batch {S.shape[0]} but the input has {batch}")
        if self.write == "message" and self.positions[layer_idx] > 0:
            raise AgentMemError("message-level writes take exactly one forward pass; "
                                "decode with writes off")
        return S

    def token_write_mask(self, layer_idx: int, batch: int, T: int) -> Tensor | None:
        """[B, T] float, 1 where the token writes; None when every token of the pass writes."""
        pos = self.positions[layer_idx]
        if self.write_mask is None or pos >= self.write_mask.shape[1]:
            return None
        S = self.states[layer_idx]
        mask = torch.ones(batch, T, dtype=S.dtype, device=S.device)
        part = self.write_mask[:, pos : pos + T].to(mask)
        mask[:, : part.shape[1]] = part
        return mask

    def pool_spans_weights(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Averaging weights of the message spans: ([B, M, T] fp32, valid [B, M] bool)."""
        if self._pool is None:
            self._pool = self._span_weights(x.shape[0], x.shape[1], x.device)
        return self._pool

    def _span_weights(self, B: int, T: int, device: torch.device) -> tuple[Tensor, Tensor]:
        assert self.spans is not None
        if len(self.spans) != B:
            raise ValueError(f"got spans for {len(self.spans)} rows but the input has {B}")
        M = max(len(s) for s in self.spans)
        weights = torch.zeros(B, M, T, device=device)
        valid = torch.zeros(B, M, dtype=torch.bool, device=device)
        for b, row in enumerate(self.spans):
            for j, (s, e) in enumerate(row):
                if not (0 <= s < e <= T):
                    raise ValueError(f"message span ({s}, {e}) of row {b} is outside 0..{T}")
                weights[b, j, s:e] = 1.0 / (e - s)
                valid[b, j] = True
        return weights, valid

    def commit(self, layer_idx: int, S: Tensor, T: int) -> None:
        """Record the state after a pass; count written tokens once per pass."""
        if layer_idx == self.first_layer:
            self.tokens_written = self.tokens_written + self._written_this_pass(layer_idx, T)
        self.states[layer_idx] = S
        self.positions[layer_idx] += T

    def _written_this_pass(self, layer_idx: int, T: int) -> Tensor | int:
        if self.write == "token":
            mask = self.token_write_mask(layer_idx, self.tokens_written.shape[0], T)
            return T if mask is None else mask.sum(dim=1).round().to(torch.int64).cpu()
        if self.write == "message":
            return torch.tensor([sum(e - s for s, e in row) for row in self.spans or []],
                                dtype=torch.int64)
        return 0
