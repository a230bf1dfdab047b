"""Attach δ-mem to a frozen HF causal LM (and detach it again)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor, nn

from agentmem.errors import AdapterError, AgentMemError
from agentmem.model.backbones import backbone_id, decoder_layers, spec_for
from agentmem.model.config import DeltaMemConfig
from agentmem.model.layer import DeltaMemLayer, DeltaMemProjection
from agentmem.model.pass_context import MemoryCache, PassContext, Spans
from agentmem.model.state import MemoryState

PREFIX = "delta_mem_"


class DeltaMemModel:
    """Handle of a backbone with δ-mem attached: memory blocks, adapter weights, detach.

    Use `attach_delta_mem` to make one. The backbone itself is modified in place (its q/k/v/o
    projections are wrapped) and stays usable as a normal HF model: outside a ``memory(...)``
    block it computes exactly what the frozen backbone computes.
    """

    def __init__(self, model: nn.Module, config: DeltaMemConfig, runtime: PassContext,
                 restore: list[tuple[nn.Module, str, nn.Module]],
                 requires_grad: dict[str, bool]) -> None:
        self.model = model
        self.config = config
        self.runtime = runtime
        self.layers = runtime.layers
        self.layer_indices = tuple(sorted(self.layers))
        self.backbone_id = backbone_id(model)
        self._restore = restore
        self._requires_grad = requires_grad
        self._fingerprint: tuple[tuple[int, ...], str] | None = None

    # ----- memory blocks -------------------------------------------------------------------
    def new_state(self, batch_size: int = 1) -> MemoryState:
        """An empty memory (S = 0 everywhere) for ``batch_size`` conversations."""
        c = self.config
        shape = (batch_size, len(self.layer_indices), c.num_states, c.rank, c.rank)
        return MemoryState(torch.zeros(shape), torch.zeros(batch_size, dtype=torch.int64),
                           self.layer_indices, self.fingerprint(), self.backbone_id, c)

    @contextmanager
    def memory(self, state: MemoryState | None = None, *, write: bool = False,
               batch_size: int = 1, attention_mask: Tensor | None = None,
               spans: Spans | None = None, record: bool = False) -> Iterator[MemoryCache]:
        """Run the backbone inside this block to read (and optionally write) ``state``.

        Args:
            state: memory to read; None starts from an empty one of ``batch_size`` rows.
            write: writes on; the granularity is the config's ``write_mode``.
            attention_mask: [B, T] of the first pass; padding (0) never writes.
            spans: message token spans per row, required for message-level writes.
            record: keep each layer's input in ``cache.record`` (for training replays).

        Yields:
            The block's `MemoryCache`; ``cache_to_state(cache)`` gives the resulting state.
        """
        state = self.new_state(batch_size) if state is None else state
        self.check_state(state)
        device = self._device()
        tensors = state.tensors.to(device)
        cache = MemoryCache({i: tensors[:, j].contiguous() for j, i in enumerate(self.layer_indices)},
                            state.tokens_written, self.config.write_mode if write else "off",
                            write_mask=attention_mask, spans=spans, record=record)
        token = self.runtime.set(cache)
        try:
            yield cache
        finally:
            self.runtime.reset(token)

    def to_state(self, cache: MemoryCache) -> MemoryState:
        """The memory at the end of a block (tensors keep their autograd graph)."""
        tensors = torch.stack([cache.states[i] for i in self.layer_indices], dim=1)
        return MemoryState(tensors.float().cpu() if not tensors.requires_grad else tensors,
                           cache.tokens_written.cpu(), self.layer_indices, self.fingerprint(),
                           self.backbone_id, self.config)

    def check_state(self, state: MemoryState) -> None:
        """Raise `StateMismatchError` unless ``state`` was made by this adapter and backbone."""
        c = self.config
        state.check_compatible(self.fingerprint(), self.backbone_id,
                               (len(self.layer_indices), c.num_states, c.rank, c.rank))

    # ----- adapter weights -----------------------------------------------------------------
    def adapter_state_dict(self) -> dict[str, Tensor]:
        """Adapter tensors only, named ``layers.{i}.{param}`` (independent of module paths)."""
        return {f"layers.{i}.{name}": p.detach()
                for i, layer in self.layers.items() for name, p in layer.named_parameters()}

    def load_adapter_state_dict(self, tensors: dict[str, Tensor]) -> None:
        """Copy adapter tensors in; names and shapes must match exactly."""
        own = self.adapter_state_dict()
        missing, extra = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
        if missing or extra:
            raise AdapterError(f"adapter tensors do not fit: missing {missing[:5]}, "
                               f"unexpected {extra[:5]} ({len(missing)}/{len(extra)} in all)")
        bad = [n for n in own if tuple(own[n].shape) != tuple(tensors[n].shape)]
        if bad:
            raise AdapterError(f"adapter tensor shapes differ for {bad[:5]}: "
                               f"{[tuple(tensors[n].shape) for n in bad[:5]]}")
        with torch.no_grad():
            for name, value in tensors.items():
                own[name].copy_(value)

    def fingerprint(self) -> str:
        """sha256 of the config and every adapter tensor (recomputed only after an update)."""
        params = [p for layer in self.layers.values() for p in layer.parameters()]
        version = tuple(p._version for p in params)
        if self._fingerprint is None or self._fingerprint[0] != version:
            self._fingerprint = (version, adapter_fingerprint(self.config,
                                                              self.adapter_state_dict()))
        return self._fingerprint[1]

    def parameters(self) -> Iterator[nn.Parameter]:
        """The trainable δ-mem parameters."""
        for layer in self.layers.values():
            yield from layer.parameters()

    def trainable_report(self) -> str:
        """A short table: trainable δ-mem parameters vs the frozen backbone."""
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        per_layer = sum(p.numel() for p in next(iter(self.layers.values())).parameters())
        return (f"δ-mem layers: {len(self.layers)} × {per_layer:,} parameters\n"
                f"trainable: {trainable:,} / {total:,} ({100 * trainable / total:.3f} %)")

    def detach(self) -> nn.Module:
        """Remove δ-mem: original projections and requires_grad flags are restored."""
        for parent, name, original in self._restore:
            current = getattr(parent, name)
            if isinstance(current, DeltaMemLayer):
                delattr(parent, name)
            else:
                setattr(parent, name, original)
        for name, p in self.model.named_parameters():
            p.requires_grad_(self._requires_grad.get(name, p.requires_grad))
        self._restore = []
        return self.model

    def _device(self) -> torch.device:
        return next(iter(self.layers.values())).delta_mem_w_in.device


def adapter_fingerprint(config: DeltaMemConfig, tensors: dict[str, Tensor]) -> str:
    h = hashlib.sha256(config.to_json().encode())
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu", torch.float32).contiguous()
        h.update(f"{name}:{tuple(t.shape)};".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()


def attach_delta_mem(model: nn.Module, config: DeltaMemConfig | None = None) -> DeltaMemModel:
    """Wrap every target layer of ``model`` with δ-mem; only ``delta_mem_*`` params train.

    Raises:
        UnsupportedArchitectureError: the model type is not in the architecture table.
        AgentMemError: δ-mem is already attached.
    """
    config = config or DeltaMemConfig()
    spec = spec_for(model)
    if any(isinstance(m, DeltaMemProjection) for m in model.modules()):
        raise AgentMemError("δ-mem is already attached to this model; detach it first")
    layer_list = decoder_layers(model, spec)
    requires_grad = {n: p.requires_grad for n, p in model.named_parameters()}
    model.requires_grad_(False)
    runtime = PassContext({})
    restore: list[tuple[nn.Module, str, nn.Module]] = []
    for idx in config.layer_indices(len(layer_list)):
        attn = layer_list[idx].get_submodule(spec.attention)
        projs = {b: getattr(attn, spec.projection(b)) for b in ("q", "k", "v", "o")}
        _check_linear(projs, idx)
        mem = DeltaMemLayer(config, projs["q"].in_features,
                            {b: projs[b].out_features for b in config.branches})
        mem.to(device=projs["q"].weight.device)
        if config.init == "base_slice":
            mem.init_from_base({b: projs[b].weight for b in config.branches}, config.init_gain)
        attn.delta_mem = mem
        restore.append((attn, "delta_mem", mem))
        runtime.layers[idx] = mem
        for b in ("q", "k", "v", "o"):
            if b == "q" or b in config.branches:  # q always wraps: its input x_t feeds the memory
                name = spec.projection(b)
                restore.append((attn, name, projs[b]))
                setattr(attn, name, DeltaMemProjection(
                    projs[b], b if b in config.branches else None, idx, runtime, b == "q"))
    return DeltaMemModel(model, config, runtime, restore, requires_grad)


def _check_linear(projs: dict[str, nn.Module], idx: int) -> None:
    for b, p in projs.items():
        if not isinstance(p, nn.Linear):
            raise AgentMemError(f"layer {idx}: {b} projection is {type(p).__name__}, expected "
                                "nn.Linear (quantised or already-wrapped backbones are not supported)")
