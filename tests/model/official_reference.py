"""The δ-mem authors' release, rebuilt for tests: their adapter folders (config fields, tensor
names, a bf16 ``.pt``) and a float64 model of their attention module, written here from the
equations (docs/official_adapters.md), not from their code or ours.

Their module, per layer, for x the attention input [B, T, d]:

    q = l2norm(tanh(W_q x)), k = l2norm(tanh(W_k x)), v = W_v x, β = sigmoid(W_β x + b_β)  (per state)
    read m_t = S q_t before the write;  S ← (1 − β) S + β (v − S k) kᵀ   row-wise
    q_proj(x) + s·U_q m, k_proj(x) + s·U_k m, v_proj(x) + s·U_v m (before q/k norm and RoPE),
    o_proj(attn) + s·U_o m, with s = alpha / rank.

Message-level writes average x over each message id ≥ 0, and every token reads the state the
pass began with. ``rounding=torch.bfloat16`` stores what their bf16 module stores in bf16 (the
projections, gates, read-out, corrections, and the state between calls); the recurrence inside a
call stays exact, as in their GPU kernel.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

HEADS = ("q", "k", "v", "o")
# Their config dataclass's fields and defaults (HFDeltaMemConfig, declare-lab/delta-Mem).
OFFICIAL_DEFAULTS: dict[str, Any] = {
    "rank": 8, "alpha": 16.0, "beta_bias_init": -1.5, "normalize_qk": True, "couple_lambda": True,
    "state_update_mode": "standard", "rankwise_gates": True, "output_init": "zero",
    "base_slice_ref_width": 8, "online_gain": 0.05, "num_state_heads": 1,
    "num_memory_partitions": 1, "num_global_memory_partitions": 0,
    "memory_partition_routing": "soft", "memory_partition_basis": "shared",
    "tie_memory_partition_read_write": False, "memory_partition_read_mode": "softmax",
    "memory_partition_sigmoid_gate_bias_init": -2.0, "slot_read_top_k": 0,
    "global_memory_mode": "shared_rw", "global_memory_read_top_k": 0,
    "global_memory_merge_mode": "gated_residual", "global_memory_gate_bias_init": -2.0,
    "global_memory_read_logit_bias": 0.0, "memory_reader_layers": [],
    "memory_reader_hidden_size": 1024, "memory_reader_residual_scale": 0.1,
    "memory_reader_read_only": True, "memory_readout_mode": "delta",
    "memory_write_source": "learned_hidden", "memory_write_granularity": "token",
    "memory_write_proposals_per_message": 2, "synthetic_memory_slots": 1,
    "latent_memory_layers": [], "latent_memory_hidden_size": 1024,
    "latent_memory_residual_scale": 0.1, "latent_memory_slots": 4,
    "latent_memory_init_std": 0.002, "latent_gate_init": 0.01, "target_modules": ["self_attn"],
    "target_layers": [], "delta_heads": list(HEADS), "delta_o_rmsnorm": False,
    "delta_o_rmsnorm_eps": 1e-6, "trainable_delta_scale": False, "delta_scale_init": 1.0,
    "delta_scale_max": 2.0, "delta_scale_granularity": "layer",
    "delta_scale_parameterization": "alpha_over_rank",
}


def official_config(**overrides: Any) -> dict[str, Any]:
    unknown = set(overrides) - set(OFFICIAL_DEFAULTS)
    assert not unknown, unknown
    return {**OFFICIAL_DEFAULTS, **overrides}


def official_tensors(model: nn.Module, config: dict[str, Any], seed: int = 0) -> dict[str, Tensor]:
    """Random trained-looking bf16 tensors under their names; heads left out are zero."""
    g = torch.Generator().manual_seed(seed)
    nr = config["rank"] * config["num_state_heads"]
    heads = config["delta_heads"]
    out = {}
    for i, layer in enumerate(model.model.layers):
        attn = layer.self_attn
        d = attn.q_proj.in_features

        def randn(*shape: int, std: float) -> Tensor:
            return torch.randn(*shape, generator=g) * std

        t = {"memory_q_proj": randn(nr, d, std=d**-0.5), "memory_k_proj": randn(nr, d, std=d**-0.5),
             "memory_v_proj": randn(nr, d, std=d**-0.5), "beta_proj": randn(nr, d, std=0.5 * d**-0.5),
             "beta_bias": -1.0 + randn(nr, std=0.5)}
        for h in HEADS:
            rows = getattr(attn, f"{h}_proj").out_features
            t[f"delta_{h}_proj"] = randn(rows, nr, std=0.2) if h in heads else torch.zeros(rows, nr)
        out.update({f"model.layers.{i}.self_attn.{k}": v.to(torch.bfloat16) for k, v in t.items()})
    return out


def write_official_folder(folder: Path, config: dict[str, Any], tensors: dict[str, Any]) -> Path:
    """Their release layout: the config JSON and a torch.save'd state dict."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "delta_mem_config.json").write_text(json.dumps(config, indent=2))
    torch.save(tensors, folder / "delta_mem_adapter.pt")
    return folder


def message_ids(tokenizer: Any, messages: list[dict[str, str]]) -> tuple[list[int], list[int]]:
    """Their message-write segmentation: each message owns the tokens its render adds to the
    render of the messages before it (role header, content, end of turn); system messages and
    anything not owned are -1. Returns (input_ids, message id per token)."""
    ids: list[int] = []
    owner: list[int] = []
    n = 0
    for i, m in enumerate(messages):
        text = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        now = tokenizer(text, add_special_tokens=False)["input_ids"]
        keep = 0
        while keep < min(len(ids), len(now)) and ids[keep] == now[keep]:
            keep += 1
        assert len(ids) - keep <= 16, "not prefix-stable"
        ids, owner = now, owner[:keep] + [-1 if m["role"] == "system" else n] * (len(now) - keep)
        n += m["role"] != "system"
    return ids, owner


class Reference:
    """Their module on every attention layer of a float64 copy of a backbone.

    Each call is one sequence (positions from 0), the memory state carried between calls, as
    our write and read passes are.
    """

    def __init__(self, model64: nn.Module, tensors: dict[str, Tensor], config: dict[str, Any],
                 rounding: torch.dtype | None = None) -> None:
        self.model = model64
        self.N, self.r = config["num_state_heads"], config["rank"]
        self.scale = config["alpha"] / config["rank"]
        self.heads = tuple(config["delta_heads"])
        self.message_level = config["memory_write_granularity"] == "message_mean"
        self.rounding = rounding
        self.write = False
        self.ids: Tensor | None = None  # message id per token of the next call (message writes)
        self.layers = []
        for i, layer in enumerate(model64.model.layers):
            w = {k.rsplit(".", 1)[1]: v.double() for k, v in tensors.items()
                 if k.startswith(f"model.layers.{i}.self_attn.")}
            ref = _RefAttention(layer.self_attn, w, self)
            layer.self_attn = ref
            self.layers.append(ref)
        self.reset()

    def reset(self, batch: int = 1) -> None:
        for layer in self.layers:
            layer.S = torch.zeros(batch, self.N, self.r, self.r, dtype=torch.float64)

    def rnd(self, t: Tensor) -> Tensor:
        return t if self.rounding is None else t.to(self.rounding).double()

    @torch.no_grad()
    def __call__(self, input_ids: Tensor, *, write: bool, ids: list[int] | None = None) -> Tensor:
        """Logits [B, T, V] of one call; ``ids``: message id per token (message writes)."""
        self.write = write
        self.ids = torch.tensor([ids]) if ids is not None else None
        pos = torch.arange(input_ids.shape[1])[None].expand(input_ids.shape[0], -1)
        return self.model(input_ids=input_ids, position_ids=pos, use_cache=False).logits

    def states(self) -> Tensor:
        """[B, L, N, r, r] float64."""
        return torch.stack([layer.S for layer in self.layers], dim=1)


class _RefAttention(nn.Module):
    def __init__(self, base: nn.Module, w: dict[str, Tensor], ref: Reference) -> None:
        super().__init__()
        self.base, self.w = base, w
        object.__setattr__(self, "ref", ref)
        self.S: Tensor

    def features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        ref, w = self.ref, self.w
        shape = (*x.shape[:-1], ref.N, ref.r)
        x = ref.rnd(x)  # their module runs on the model dtype's hidden states

        def unit(z: Tensor) -> Tensor:
            z = ref.rnd(torch.tanh(ref.rnd(z)))
            return ref.rnd(z / ref.rnd(z.norm(dim=-1, keepdim=True)).clamp_min(1e-6))

        q = unit((x @ w["memory_q_proj"].T).view(shape))
        k = unit((x @ w["memory_k_proj"].T).view(shape))
        v = ref.rnd(x @ w["memory_v_proj"].T).view(shape)
        gate = ref.rnd(ref.rnd(x @ w["beta_proj"].T) + ref.rnd(w["beta_bias"]))
        return q, k, v, ref.rnd(torch.sigmoid(gate)).view(shape)

    def memory(self, x: Tensor) -> Tensor:
        """Reads [B, T, N·r] of this call, updating self.S when writing."""
        ref, S = self.ref, self.S
        q, k, v, beta = self.features(x)
        reads = torch.einsum("bnij,btnj->btni", S, q)
        if ref.write and ref.message_level:
            ids = ref.ids[0]
            means = torch.stack([x[:, ids == j].mean(dim=1) for j in sorted(set(ids.tolist()) - {-1})],
                                dim=1)  # [B, M, d]
            _, k, v, beta = self.features(ref.rnd(means))
        if ref.write:
            steps = []
            for t in range(k.shape[1]):  # read before write, row by row
                steps.append(torch.einsum("bnij,bnj->bni", S, q[:, t]))
                pred = torch.einsum("bnij,bnj->bni", S, k[:, t])
                b = beta[:, t].unsqueeze(-1)
                S = (1 - b) * S - b * pred.unsqueeze(-1) * k[:, t].unsqueeze(-2) \
                    + b * v[:, t].unsqueeze(-1) * k[:, t].unsqueeze(-2)
            if not ref.message_level:
                reads = torch.stack(steps, dim=1)
        self.S = ref.rnd(S)
        return ref.rnd(reads.reshape(*x.shape[:-1], -1))

    def delta(self, head: str, m: Tensor) -> Tensor | None:
        if head not in self.ref.heads:
            return None
        return self.ref.rnd(self.ref.rnd(m @ self.w[f"delta_{head}_proj"].T) * self.ref.scale)

    def forward(self, hidden_states: Tensor, position_embeddings: tuple[Tensor, Tensor],
                attention_mask: Tensor | None = None, **kwargs: Any) -> tuple[Tensor, None]:
        x, base = hidden_states, self.base
        B, T, _ = x.shape
        m = self.memory(x)
        proj = {h: getattr(base, f"{h}_proj")(x) for h in ("q", "k", "v")}
        for h in proj:
            if (d := self.delta(h, m)) is not None:
                proj[h] = proj[h] + d
        q, k, v = (proj[h].view(B, T, -1, base.head_dim) for h in ("q", "k", "v"))
        if hasattr(base, "q_norm"):
            q, k = base.q_norm(q), base.k_norm(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # [B, H, T, D]
        if getattr(base, "use_rope", True):
            cos, sin = (e.unsqueeze(1).double() for e in position_embeddings)
            q, k = q * cos + _rotate_half(q) * sin, k * cos + _rotate_half(k) * sin
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
        scores = (q @ k.transpose(-1, -2)) * base.scaling
        causal = torch.ones(T, T, dtype=torch.bool).tril()
        attn = scores.masked_fill(~causal, -math.inf).softmax(dim=-1) @ v  # [B, H, T, D]
        out = base.o_proj(attn.transpose(1, 2).reshape(B, T, -1))
        if (d := self.delta("o", m)) is not None:
            out = out + d
        return out, None


def _rotate_half(x: Tensor) -> Tensor:
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)
