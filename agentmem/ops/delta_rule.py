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
from collections.abc import Iterator
from contextlib import contextmanager

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
    for t in range(q.shape[1]):  # deliberately plain: this is the specification
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
    out = initial_state @ torch.stack((q, k), dim=-1)  # [B, N, r, 2]: S q and S k in one matmul
    write = (v - out[..., 1]).unsqueeze(-1) * k.unsqueeze(-2)  # (v - S k) kᵀ
    # (1 - β) S + β (v - S k) kᵀ is a lerp from S towards the write, row by row
    S = torch.lerp(initial_state, write, beta.unsqueeze(-1))
    return out[..., 0].unsqueeze(1), S


def delta_rule_read(q: Tensor, initial_state: Tensor) -> tuple[Tensor, Tensor]:
    """Writes off: every token reads the same state, which is returned unchanged."""
    return torch.einsum("bnij,btnj->btni", initial_state, q), initial_state


@contextmanager
def _one_thread() -> Iterator[None]:
    """Run a burst of tiny kernels on one intra-op thread.

    The recurrences issue hundreds of kernels on tensors just above PyTorch's parallel grain
    size; with 2 threads every one of them waits at an OpenMP barrier, and on a loaded machine
    the second thread is often descheduled, and one recurrence then takes many times longer.
    """
    prev = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(prev)


def _chunk_size(T: int) -> int:
    # Balance the two in-chunk passes (C steps each) against the carry across T / C chunks.
    return max(1, min(128, round(math.sqrt(T / 4))))


def _recur(S: Tensor, k: Tensor, v: Tensor, beta: Tensor, q: Tensor | None
           ) -> tuple[Tensor, list[Tensor]]:
    """The reference recurrence over dim 0 of k/v/beta/q ([C, batch..., r]), batched.

    S: [batch..., r, r]. Returns the final S and, when q is given, the reads before each write.
    Five kernels a step: one matmul gives S q and S k together.
    """
    keep = (1 - beta).unsqueeze(-1)  # [C, ..., r, 1]
    bk = beta.unsqueeze(-1) * k.unsqueeze(-2)  # [C, ..., r, r]: β_i k_j
    cols = torch.stack((k, q), dim=-1) if q is not None else k.unsqueeze(-1)  # [C, ..., r, 1|2]
    reads = []
    for j in range(k.shape[0]):
        out = S @ cols[j]  # [..., r, 1|2]: S k (and S q)
        if q is not None:
            reads.append(out[..., 1])
        err = (v[j].unsqueeze(-1) - out[..., :1])  # [..., r, 1]: v - S k
        S = torch.addcmul(S * keep[j], err, bk[j])
    return S, reads


def delta_rule_chunked(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Tensor,
                       chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Chunked form: same outputs, final state and gradients as the reference.

    The recurrence is affine in the state, so each chunk's map S_start -> S_end is found by
    running all chunks at once from r + 1 probe states; a short carry over the T / C chunks
    gives every chunk's true start state; a last pass over all chunks at once yields the reads.
    About 2·C + T / C batched steps instead of T (derivation in README.md).
    """
    _check(q, k, v, beta, initial_state)
    with _one_thread():
        return _chunked(q, k, v, beta, initial_state, chunk_size)


def _chunked(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, initial_state: Tensor,
             chunk_size: int | None) -> tuple[Tensor, Tensor]:
    B, T, N, r = q.shape
    C = chunk_size or _chunk_size(T)
    nc = -(-T // C)
    pad = nc * C - T

    def chunked(x: Tensor) -> Tensor:  # [B, T, N, r] -> [C, nc, B, N, r] (β = 0 pads)
        x = torch.nn.functional.pad(x, (0, 0, 0, 0, 0, pad)) if pad else x
        return x.reshape(B, nc, C, N, r).permute(2, 1, 0, 3, 4)

    qc, kc, vc, bc = chunked(q), chunked(k), chunked(v), chunked(beta)
    # Pass 1: probes. Probe 0 starts at S = 0; probe 1 + j has every row equal to e_j.
    eye = torch.eye(r, dtype=q.dtype, device=q.device)
    probes = torch.cat((eye.new_zeros(1, r, r), eye[:, None, :].expand(r, r, r)))  # [r+1, r, r]
    S = probes[:, None, None, None].expand(r + 1, nc, B, N, r, r)
    ends, _ = _recur(S, *(x.unsqueeze(1) for x in (kc, vc, bc)), None)  # [r+1, nc, B, N, r, r]
    offset = ends[0]  # [nc, B, N, r_row, r]: where a zero start state ends up
    trans = (ends[1:] - offset).permute(1, 2, 3, 4, 0, 5)  # [nc, B, N, r_row, r_in, r_out]
    # Pass 2: carry the true state across chunks (row i: s_end = s_start @ trans_i + offset_i).
    starts, S = [], initial_state
    for c in range(nc):
        starts.append(S)
        S = (S.unsqueeze(-2) @ trans[c]).squeeze(-2) + offset[c]
    # Pass 3: the reference recurrence inside every chunk at once, from the true starts.
    _, reads = _recur(torch.stack(starts), kc, vc, bc, qc)
    reads = torch.stack(reads).permute(2, 1, 0, 3, 4).reshape(B, nc * C, N, r)[:, :T]
    return reads, S


def delta_rule(q: Tensor, k: Tensor, v: Tensor, beta: Tensor,
               initial_state: Tensor) -> tuple[Tensor, Tensor]:
    """Pick the fastest exact form: the compiled loop for inference on CPU, otherwise the
    PyTorch forms (which autograd differentiates)."""
    from agentmem.ops import fused

    if fused.usable(q, k, v, beta, initial_state):
        return fused.recurrence(q, k, v, beta, initial_state)
    T = q.shape[1]
    if T == 1:
        return delta_rule_step(q, k, v, beta, initial_state)
    if T <= 4:
        return delta_rule_reference(q, k, v, beta, initial_state)
    return delta_rule_chunked(q, k, v, beta, initial_state)
