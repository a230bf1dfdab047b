"""The δ-mem delta rule: reference recurrence, chunked scan, and single-token step.

Every function shares one signature (see ``README.md`` beside this file for the math):

    q, k, v, beta: [B, T, N, r]   memory queries, keys, values and write gates (fp32)
    initial_state: [B, N, r, r]    S_0 of each of the N states
    returns (reads [B, T, N, r], final_state [B, N, r, r])

reads[:, t] = S_{t-1} q_t is taken *before* token t writes, and
S_t = diag(1 - β_t) S_{t-1} + diag(β_t) (v_t - S_{t-1} k_t) k_tᵀ.
A token whose β is exactly 0 leaves the state unchanged, which is how padding is expressed.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ["delta_rule", "delta_rule_chunked", "delta_rule_read", "delta_rule_reference",
           "delta_rule_step"]


def _check(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, state: Tensor) -> None:
    if not (q.shape == k.shape == v.shape == beta.shape) or q.dim() != 4:
        raise ValueError(f"q, k, v, beta must share a [B, T, N, r] shape; got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}, {tuple(beta.shape)}")
    b, _, n, r = q.shape
    if state.shape != (b, n, r, r):
        raise ValueError(f"initial_state must be {(b, n, r, r)}; got {tuple(state.shape)}")


def delta_rule_reference(q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
                         initial_state: Tensor) -> tuple[Tensor, Tensor]:
    """Per-token loop: the readable specification of the recurrence."""
    _check(q, k, v, beta, initial_state)
    S = initial_state  # [B, N, r, r]
    reads = []
    for t in range(q.shape[1]):
        q_t, k_t, v_t, b_t = q[:, t], k[:, t], v[:, t], beta[:, t]  # [B, N, r]
        reads.append(torch.einsum("bnij,bnj->bni", S, q_t))
        Sk = torch.einsum("bnij,bnj->bni", S, k_t)
        S = (1 - b_t).unsqueeze(-1) * S + (b_t * (v_t - Sk)).unsqueeze(-1) * k_t.unsqueeze(-2)
    return torch.stack(reads, dim=1), S


def delta_rule_step(q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
                    initial_state: Tensor) -> tuple[Tensor, Tensor]:
    """One token (T = 1), with as few kernels as possible: the decode path."""
    _check(q, k, v, beta, initial_state)
    if q.shape[1] != 1:
        raise ValueError(f"delta_rule_step takes T = 1; got T = {q.shape[1]}")
    q, k, v, beta = q[:, 0], k[:, 0], v[:, 0], beta[:, 0]  # [B, N, r]
    S = initial_state
    out = S @ torch.stack((q, k), dim=-1)  # [B, N, r, 2]: S q and S k in one matmul
    err = beta * (v - out[..., 1])  # [B, N, r]
    S = torch.addcmul(S * (1 - beta).unsqueeze(-1), err.unsqueeze(-1), k.unsqueeze(-2))
    return out[..., 0].unsqueeze(1), S


def delta_rule_read(q: Tensor, initial_state: Tensor) -> tuple[Tensor, Tensor]:
    """Writes off: every token reads the same state, which is returned unchanged."""
    return torch.einsum("bnij,btnj->btni", initial_state, q), initial_state


def _chunk_size(T: int) -> int:
    # Balance the in-chunk scan (log2 C levels over all T tokens) against the sequential
    # carry across T / C chunks: C ≈ sqrt(T), a power of two, at most 128.
    return min(128, 1 << max(0, math.ceil(math.log2(max(1.0, math.sqrt(T))))))


def _transitions(k: Tensor, v: Tensor, beta: Tensor) -> Tensor:
    """Augmented per-row transition matrices M_t = [[A_t, 0], [b_t, 1]].

    Row i of S evolves as s_t = s_{t-1} A_t + b_t with A_t = (1-β_i) I - β_i k kᵀ and
    b_t = β_i v_i kᵀ, so [s_t, 1] = [s_{t-1}, 1] M_t.

    Returns: [B, N, r_row, T, r+1, r+1]
    """
    B, T, N, r = k.shape
    k_ = k.permute(0, 2, 1, 3)  # [B, N, T, r]
    bt = beta.permute(0, 2, 3, 1)  # [B, N, r_row, T]
    vt = v.permute(0, 2, 3, 1)  # [B, N, r_row, T]
    kk = k_.unsqueeze(-1) * k_.unsqueeze(-2)  # [B, N, T, r, r]
    eye = torch.eye(r, dtype=k.dtype, device=k.device)
    A = (1 - bt)[..., None, None] * eye - bt[..., None, None] * kk.unsqueeze(2)  # [B,N,r,T,r,r]
    b = (bt * vt).unsqueeze(-1) * k_.unsqueeze(2)  # [B, N, r_row, T, r]
    zeros = A.new_zeros(A.shape[:-1] + (1,))
    ones = A.new_ones(b.shape[:-1] + (1,))
    top = torch.cat((A, zeros), dim=-1)  # [..., r, r+1]
    bottom = torch.cat((b, ones), dim=-1).unsqueeze(-2)  # [..., 1, r+1]
    return torch.cat((top, bottom), dim=-2)


def delta_rule_chunked(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Tensor,
                       chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Chunked associative scan: same outputs, final state and gradients as the reference.

    Inside each chunk an inclusive Hillis–Steele scan of the augmented transitions gives every
    prefix product in log2(C) batched matmuls; a short sequential carry crosses the chunks.
    """
    _check(q, k, v, beta, initial_state)
    B, T, N, r = q.shape
    C = chunk_size or _chunk_size(T)
    pad = (-T) % C
    M = _transitions(k, v, beta)  # [B, N, r, T, r+1, r+1]
    if pad:  # identity transitions leave the state unchanged
        eye = torch.eye(r + 1, dtype=M.dtype, device=M.device).expand(B, N, r, pad, r + 1, r + 1)
        M = torch.cat((M, eye), dim=3)
    P, nc = B * N * r, (T + pad) // C
    X = M.reshape(P, nc, C, r + 1, r + 1)
    d = 1
    while d < C:  # X[:, :, t] becomes M_{c·C+1} ··· M_t within each chunk
        X = torch.cat((X[:, :, :d], X[:, :, :-d] @ X[:, :, d:]), dim=2)
        d *= 2
    h = torch.cat((initial_state.reshape(P, r), initial_state.new_ones(P, 1)), dim=-1)  # [P, r+1]
    carries = []
    for c in range(nc):  # h = [s, 1] at the start of chunk c
        carries.append(h)
        h = (h.unsqueeze(1) @ X[:, c, C - 1]).squeeze(1)
    carry = torch.stack(carries, dim=1)  # [P, nc, r+1]
    s_incl = torch.einsum("pcx,pcjxy->pcjy", carry, X)[..., :r].reshape(P, nc * C, r)
    s_prev = torch.cat((initial_state.reshape(P, 1, r), s_incl[:, : T - 1]), dim=1)  # [P, T, r]
    s_prev = s_prev.reshape(B, N, r, T, r)
    reads = torch.einsum("bnitj,btnj->btni", s_prev, q)
    final = h[:, :r].reshape(B, N, r, r)
    return reads, final


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
               initial_state: Tensor) -> tuple[Tensor, Tensor]:
    """Pick the fastest exact form for the sequence length."""
    T = q.shape[1]
    if T == 1:
        return delta_rule_step(q, k, v, beta, initial_state)
    if T <= 4:
        return delta_rule_reference(q, k, v, beta, initial_state)
    return delta_rule_chunked(q, k, v, beta, initial_state)
