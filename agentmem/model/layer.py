"""`DeltaMemLayer`: one decoder layer's δ-mem parameters, and the projection wrappers.

The layer owns no state: the active `MemoryCache` (see ``runtime``) carries S per layer index.
The wrapped q_proj sees x_t (the attention input) first in every attention call; it computes the
memory read for the pass (and the write, when writes are on) and stashes the read-out m for the
other corrected projections of the same call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from agentmem.model.config import DeltaMemConfig
from agentmem.ops import delta_rule, delta_rule_read, fused

if TYPE_CHECKING:
    from agentmem.model.pass_context import MemoryCache, PassContext

NUMERICS_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # DeltaMemConfig.numerics


class DeltaMemLayer(nn.Module):
    """δ-mem parameters of one layer (all named ``delta_mem_*``).

    Args:
        config: adapter config.
        hidden_size: d, width of x_t.
        out_dims: output width of each corrected projection, e.g. {"q": 576, "o": 576}.
    """

    def __init__(self, config: DeltaMemConfig, hidden_size: int, out_dims: dict[str, int]) -> None:
        super().__init__()
        N, r = config.num_states, config.rank
        self.num_states, self.rank, self.scale = N, r, config.scale
        self.write_reads = config.write_reads  # False: a write pass reads nothing (frozen pass)
        # dtype of the features, the read-out and the state between passes (DeltaMemConfig.numerics)
        self.compute_dtype = NUMERICS_DTYPES[config.numerics]
        # Rows: [W_q; W_k; W_v; W_β], each N·r × d (the N states own consecutive r-row slices).
        self.delta_mem_w_in = nn.Parameter(torch.empty(4 * N * r, hidden_size))
        self.delta_mem_b_beta = nn.Parameter(torch.full((N * r,), float(config.beta_bias)))
        self.delta_mem_u = nn.ParameterDict(
            {b: nn.Parameter(torch.zeros(out_dims[b], N * r)) for b in config.branches}
        )
        bound = hidden_size**-0.5  # nn.Linear's default init for W_q, W_k, W_v
        with torch.no_grad():
            self.delta_mem_w_in.uniform_(-bound, bound)
            self.delta_mem_w_in[3 * N * r :].zero_()  # W_β = 0: β starts at sigmoid(b_β)
        self._views: fused.DecodeViews | None = None  # the decode kernel's parameter views

    def init_from_base(self, base_weights: dict[str, Tensor], gain: float) -> None:
        """U columns = gain × column-normalised first N·r columns of the frozen projections."""
        with torch.no_grad():
            for branch, u in self.delta_mem_u.items():
                cols = base_weights[branch][:, : u.shape[1]].float()  # [out, N·r]
                u.copy_(gain * cols / cols.norm(dim=0, keepdim=True).clamp_min(1e-12))

    def features(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """q, k, v, β of docs/design.md#the-mechanism, each [B, T, N, r] fp32, from x [B, T, d].

        Computed in ``compute_dtype`` (bf16 numerics round them as the authors' release does)."""
        B, T, _ = x.shape
        dt = self.compute_dtype
        z = F.linear(x.to(dt), self.delta_mem_w_in.to(dt)).view(B, T, 4, self.num_states, self.rank)
        # tanh then l2norm for q and k together
        qk = F.normalize(torch.tanh(z[:, :, :2]), dim=-1)
        b_beta = self.delta_mem_b_beta.to(dt).view(self.num_states, self.rank)
        beta = torch.sigmoid(z[:, :, 3] + b_beta)
        return qk[:, :, 0].float(), qk[:, :, 1].float(), z[:, :, 2].float(), beta.float()

    def between_passes(self, S: Tensor) -> Tensor:
        """The state as it is kept after a pass: fp32, or rounded to bf16 (bf16 numerics)."""
        return S if self.compute_dtype == torch.float32 else S.to(self.compute_dtype).to(S.dtype)

    def step(self, x: Tensor, cache: MemoryCache, layer_idx: int) -> Tensor:
        """Read (and write, when the cache says so) for one pass; returns m [B, T, N·r]."""
        B, T, _ = x.shape
        S0 = cache.state_for(layer_idx, B)
        if cache.record is not None:  # training replays the writes from these inputs
            cache.record[layer_idx] = x.detach()
        q, k, v, beta = self.features(x)
        if cache.write == "token":
            mask = cache.token_write_mask(layer_idx, B, T)  # None: every token writes
            if mask is not None:
                beta = beta * mask[..., None, None]
            reads, S = delta_rule(q, k, v, beta, S0)
        else:
            if cache.write == "message" and not self.write_reads:
                reads, S = torch.zeros_like(q), S0
            else:
                reads, S = delta_rule_read(q, S0)
            if cache.write == "message":
                S, _, _ = self.write_only(x, S0, pool=cache.pool_spans_weights(x))
        cache.commit(layer_idx, self.between_passes(S), T)
        return reads.reshape(B, T, -1)

    def decode(self, x: Tensor, cache: MemoryCache, layer_idx: int, q_out: Tensor | None) -> bool:
        """`step` for one token in one compiled call, when that applies: one token, CPU fp32
        (fp32 numerics), no autograd, token writes or none, no padding mask for this position,
        nothing recorded. The q correction is added to ``q_out`` in place, and the k/v/o
        corrections are left in ``cache.reads`` for those projections (docs/design.md, "Decoding
        on a CPU"). Returns False, having done nothing, when it does not apply."""
        if not (x.shape[1] == 1 and cache.write != "message" and cache.record is None
                and not torch.is_grad_enabled() and x.dtype is torch.float32 and x.is_cpu
                and not x.requires_grad
                and self.compute_dtype is torch.float32 and fused.available()):
            return False
        mask = cache.write_mask
        if mask is not None and cache.positions[layer_idx] < mask.shape[1]:
            return False  # this position may be padding: the masked PyTorch path
        S0 = cache.states[layer_idx]
        if (S0.shape[0] != x.shape[0] or S0.requires_grad or S0.dtype is not torch.float32
                or not S0.is_cpu):
            return False  # (a batch mismatch is reported by `step`)
        views = self._views
        w_in = self._parameters["delta_mem_w_in"]
        if views is None or views.ptr != w_in.data_ptr():  # first call, or moved parameters
            views = self._views = fused.DecodeViews(w_in, self.delta_mem_b_beta,
                                                    dict(self.delta_mem_u.items()))
        _, S, cache.reads[layer_idx] = fused.decode_token(views, x, S0, cache.write == "token",
                                                          self.scale, q_out)
        cache.commit(layer_idx, S, 1)
        return True

    def write_only(self, x: Tensor, S0: Tensor, *, mask: Tensor | None = None,
                   pool: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The state after writing x [B, T, d] into S0, without reads; also returns β and the
        keys k ([B, T or M, N, r] each: per token, or per message with ``pool``).

        Args:
            mask: [B, T], 0 where a token must not write (TSW).
            pool: (weights [B, M, T], valid [B, M]) for SSW: one write per message, from the
                mean x of its tokens, in order; padding messages write nothing.
        """
        k, v, beta = self.write_features(x, mask=mask, pool=pool)
        return self.between_passes(delta_rule(k, k, v, beta, S0)[1]), beta, k

    def write_features(self, x: Tensor, *, mask: Tensor | None = None,
                       pool: tuple[Tensor, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
        """The keys, values and gates (masked: 0 where nothing is written) that `write_only`
        writes, [B, T or M, N, r] each; the gates alone are what training's sparsity term sums."""
        if pool is not None:
            weights, mask = pool
            x = weights @ x.float()  # [B, M, d]
        _, k, v, beta = self.features(x)
        if mask is not None:
            beta = beta * mask.to(beta.dtype)[..., None, None]
        return k, v, beta

    def correct(self, branch: str, out: Tensor, m: Tensor) -> Tensor:
        """out + s · U_branch m; out [B, T, o] from the frozen projection, m [B, T, N·r] fp32."""
        u = self.delta_mem_u[branch]
        dt = self.compute_dtype
        if dt != torch.float32:  # bf16 numerics: read-out, projection and scale in bf16
            delta = F.linear(m.to(dt), u.to(dt)) * self.scale
            return out + delta.to(out.dtype)
        if out.dtype == torch.float32:  # one fused kernel on the hot path
            flat = torch.addmm(out.reshape(-1, out.shape[-1]), m.reshape(-1, m.shape[-1]), u.t(),
                               alpha=self.scale)
            return flat.view(out.shape)
        return out + (self.scale * F.linear(m, u)).to(out.dtype)


class DeltaMemProjection(nn.Module):
    """Wraps a frozen projection: out = base_layer(x) + s · U m (the frozen path is untouched).

    The q wrapper (``computes=True``) runs the memory step from its input x_t; k, v and o wrappers
    reuse the read-out stashed for this layer.
    """

    def __init__(self, base_layer: nn.Module, branch: str | None, layer_idx: int,
                 runtime: PassContext, computes: bool) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.branch = branch  # None: the q wrapper that only feeds the memory
        self.layer_idx = layer_idx
        self.computes = computes
        object.__setattr__(self, "_runtime", runtime)  # not a submodule: no duplicate params
        # plain attributes for the per-token path (nn.Module's __getattr__ is a Python call)
        object.__setattr__(self, "_base", base_layer)
        object.__setattr__(self, "_active", runtime.active)

    def forward(self, x: Tensor) -> Tensor:
        out = self._base(x)
        cache = self._active()
        if cache is None:  # outside a memory context the backbone is exactly the frozen model
            return out
        idx = self.layer_idx
        if self.computes:
            mem = self._runtime.layers[idx]
            if mem.decode(x, cache, idx, out if self.branch == "q" else None):  # decode hot path
                return out  # the kernel added the q correction (if any) to out
            cache.reads[idx] = mem.step(x, cache, idx)
        if self.branch is None:
            return out
        reads = cache.reads[idx]
        if type(reads) is dict:  # from `decode`: this branch's s · U m, ready to add
            out += reads[self.branch]
            return out
        return self._runtime.layers[idx].correct(self.branch, out, reads)
