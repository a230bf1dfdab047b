"""`MemoryState`: the per-layer δ-mem states of one or more conversations, as safetensors bytes."""

from __future__ import annotations

import json
from dataclasses import dataclass

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from torch import Tensor

from agentmem.errors import StateFormatError, StateMismatchError
from agentmem.model.config import DeltaMemConfig

FORMAT = "agentmem.model.state/1"


@dataclass(frozen=True)
class MemoryState:
    """Memory of B conversations.

    Attributes:
        tensors: [B, L, N, r, r] fp32, one N×r×r stack per target layer.
        tokens_written: [B] int64, how many tokens each row has written so far.
        layer_indices: the decoder layers the L entries belong to.
        adapter_fingerprint: fingerprint of the adapter that wrote it (see ``adapters``).
        backbone_id: content id of the backbone (see ``backbones.backbone_id``).
        config: the adapter's config.
    """

    tensors: Tensor
    tokens_written: Tensor
    layer_indices: tuple[int, ...]
    adapter_fingerprint: str
    backbone_id: str
    config: DeltaMemConfig

    def __repr__(self) -> str:
        """A one-line summary (the tensors are not printed)."""
        b, layers, n, r, _ = self.tensors.shape
        tokens = self.tokens_written.tolist()
        return (f"MemoryState(batch={b}, layers={layers}, states={n}, rank={r}, "
                f"tokens_written={tokens if b <= 8 else tokens[:8] + ['…']}, "
                f"adapter={self.adapter_fingerprint[:16]}, backbone={self.backbone_id!r})")

    def __post_init__(self) -> None:
        c = self.config
        if self.tensors.dtype != torch.float32:
            raise StateFormatError(f"state tensors must be float32; got {self.tensors.dtype}")
        B = self.tensors.shape[0] if self.tensors.dim() == 5 else -1
        want = (B, len(self.layer_indices), c.num_states, c.rank, c.rank)
        if self.tensors.dim() != 5 or tuple(self.tensors.shape) != want:
            raise StateFormatError(f"state tensors must be [B, L, N, r, r] = {want}; "
                                   f"got {tuple(self.tensors.shape)}")
        if self.tokens_written.shape != (B,) or self.tokens_written.dtype != torch.int64:
            raise StateFormatError(f"tokens_written must be int64 [{B}]; got "
                                   f"{self.tokens_written.dtype} {tuple(self.tokens_written.shape)}")

    @property
    def batch_size(self) -> int:
        return self.tensors.shape[0]

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of one row: (L, N, r, r)."""
        return tuple(self.tensors.shape[1:])

    def is_finite(self) -> bool:
        return bool(torch.isfinite(self.tensors).all())

    def row(self, i: int) -> MemoryState:
        """Row i as a batch of one."""
        return self.replace(tensors=self.tensors[i : i + 1], tokens_written=self.tokens_written[i : i + 1])

    def rows(self, indices: list[int]) -> MemoryState:
        """The given rows, in that order (repeats allowed), as a new batch."""
        return self.replace(tensors=self.tensors[indices], tokens_written=self.tokens_written[indices])

    @staticmethod
    def stack(states: list[MemoryState]) -> MemoryState:
        """Concatenate compatible states along the batch dimension."""
        if not states:
            raise ValueError("MemoryState.stack needs at least one state")
        first = states[0]
        for s in states[1:]:
            s.check_compatible(first.adapter_fingerprint, first.backbone_id, first.shape)
        return first.replace(tensors=torch.cat([s.tensors for s in states]),
                             tokens_written=torch.cat([s.tokens_written for s in states]))

    def check_compatible(self, adapter_fingerprint: str, backbone_id: str,
                         shape: tuple[int, ...] | None = None) -> None:
        """Raise `StateMismatchError` unless this state belongs to that adapter and backbone."""
        if self.backbone_id != backbone_id:
            raise StateMismatchError(f"state belongs to backbone {self.backbone_id!r}, "
                                     f"not {backbone_id!r}")
        if self.adapter_fingerprint != adapter_fingerprint:
            raise StateMismatchError(f"state was written by adapter {self.adapter_fingerprint[:16]}, "
                                     f"not {adapter_fingerprint[:16]}")
        if shape is not None and tuple(shape) != self.shape:
            raise StateMismatchError(f"state shape {self.shape} != expected {tuple(shape)}")

    def to_bytes(self) -> bytes:
        """safetensors bytes; tensors are made contiguous CPU copies."""
        meta = {
            "format": FORMAT,
            "adapter_fingerprint": self.adapter_fingerprint,
            "backbone_id": self.backbone_id,
            "config": self.config.to_json(),
            "layer_indices": json.dumps(list(self.layer_indices)),
        }
        tensors = {"state": self.tensors.detach().cpu().contiguous(),
                   "tokens_written": self.tokens_written.detach().cpu().contiguous()}
        return st_save(tensors, metadata=meta)

    @classmethod
    def from_bytes(cls, data: bytes) -> MemoryState:
        """Decode bytes made by `to_bytes`; anything else raises `StateFormatError`."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise StateFormatError(f"expected bytes; got {type(data).__name__}")
        data = bytes(data)
        try:
            tensors = st_load(data)
            meta = _metadata(data)
            config = DeltaMemConfig.from_json(meta["config"])
            layers = tuple(int(i) for i in json.loads(meta["layer_indices"]))
            if meta["format"] != FORMAT:
                raise StateFormatError(f"unknown state format {meta['format']!r}")
            if set(tensors) != {"state", "tokens_written"}:
                raise StateFormatError(f"unexpected tensors {sorted(tensors)}")
            return cls(tensors["state"], tensors["tokens_written"], layers,
                       meta["adapter_fingerprint"], meta["backbone_id"], config)
        except StateFormatError:
            raise
        except (SafetensorError, KeyError, ValueError, TypeError, json.JSONDecodeError) as e:
            raise StateFormatError(f"not a valid agentmem state: {e}") from e

    def replace(self, *, tensors: Tensor | None = None, tokens_written: Tensor | None = None
                ) -> MemoryState:
        """This memory with new tensors and/or token counts; the adapter, backbone, layers and
        config are kept (the one way to derive a state from another)."""
        return MemoryState(self.tensors if tensors is None else tensors,
                           self.tokens_written if tokens_written is None else tokens_written,
                           self.layer_indices, self.adapter_fingerprint, self.backbone_id,
                           self.config)


def _metadata(data: bytes) -> dict[str, str]:
    # safetensors layout: 8-byte little-endian header length, then a JSON header.
    n = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + n])
    meta = header.get("__metadata__")
    if not isinstance(meta, dict):
        raise StateFormatError("state bytes carry no metadata")
    return meta
