"""Compiled CPU kernels for inference (no autograd): the decode step and the recurrence.

On a CPU, decoding one token through a layer's memory is ~25k multiply-adds spread over a dozen
PyTorch kernels, so launch overhead dominates. The decode kernel does it all in one call: W_in·x,
tanh, l2norm, the write gate, the read S q, the delta-rule write, the q correction (added to the
frozen q_proj output in place) and the k, v and o corrections s·U m (returned for those
projections to add; they do not depend on the projection's input). The recurrence kernel is
`delta_rule_reference` as one compiled loop, for write/read passes. Tests compare both with the
PyTorch ops; autograd, other devices and dtypes use the PyTorch ops. Set AGENTMEM_FUSED=0 to
disable them. docs/design.md ("Decoding on a CPU") explains why the decode path is built this way.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping

import numpy as np
import torch
from torch import Tensor

try:  # numba is a pinned dependency; the guard keeps the PyTorch path usable without it
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None

_EPS = 1e-12  # F.normalize's eps
_ENABLED = njit is not None and os.environ.get("AGENTMEM_FUSED", "1") != "0"
_NO_U = np.zeros((0, 1), np.float32)  # a branch without a correction
_NO_OUT = np.zeros((1, 1, 0), np.float32)
CORRECTED_AFTER_Q = ("k", "v", "o")  # corrections the kernel returns, in this column order


def available() -> bool:
    return _ENABLED


def _add_correction(u, m, scale, dst, col):  # pragma: no cover - numba
    """dst[:, 0, col : col + o] += scale · U m for each batch row (U [o, N·r], m [B, N·r]).

    One row: a dot product of N·r per output. A batch: U is transposed first (U itself is read
    as it is stored, so in-place parameter updates always show), then each output row is a
    sum of N·r scaled rows of Uᵀ, contiguous and vectorised."""
    o, nr = u.shape
    B = m.shape[0]
    if B == 1:
        for p in range(o):
            a = np.float32(0.0)
            for j in range(nr):
                a += u[p, j] * m[0, j]
            dst[0, 0, col + p] += scale * a
        return
    uT = np.empty((nr, o), np.float32)
    for p in range(o):
        for j in range(nr):
            uT[j, p] = u[p, j]
    for bi in range(B):
        row = dst[bi, 0, col : col + o]
        for j in range(nr):
            c = np.float32(scale * m[bi, j])
            for p in range(o):
                row[p] += c * uT[j, p]


def _kernel(x, w, b, S, uq, uk, uv, uo, scale, write, q_out):  # pragma: no cover - numba
    """One decode token through a layer's memory (numba).

    x [B, 1, d]; w [4·N·r, d] = W_in; b [N·r]; S [B, N, r, r]; uq/uk/uv/uo [o_b, N·r] (0 rows:
    no such correction). Adds scale · U_q m to q_out [B, 1, o_q] in place and returns the reads
    m [B, N·r], the state after the write (new; S is left as it is) and scale · U_b m for
    b = k, v, o in that column order, [B, 1, o_k + o_v + o_o]. The outputs are allocated here:
    cheaper than allocating them in Python before the call.
    """
    B, N, r = S.shape[0], S.shape[1], S.shape[2]
    nr = N * r
    d = x.shape[2]
    m = np.empty((B, nr), np.float32)
    S_out = np.empty((B, N, r, r), np.float32)
    corr = np.zeros((B, 1, uk.shape[0] + uv.shape[0] + uo.shape[0]), np.float32)
    z = np.empty((B, 4 * nr), np.float32)
    for o in range(4 * nr):  # z = W_in x; each weight row is read once for the whole batch
        for bi in range(B):
            acc = np.float32(0.0)
            for j in range(d):
                acc += w[o, j] * x[bi, 0, j]
            z[bi, o] = acc
    q = np.empty(r, np.float32)
    k = np.empty(r, np.float32)
    for bi in range(B):
        for n in range(N):
            o = n * r
            qn = np.float32(0.0)
            kn = np.float32(0.0)
            for j in range(r):
                q[j] = math.tanh(z[bi, o + j])
                k[j] = math.tanh(z[bi, nr + o + j])
                qn += q[j] * q[j]
                kn += k[j] * k[j]
            qn = max(math.sqrt(qn), _EPS)
            kn = max(math.sqrt(kn), _EPS)
            for j in range(r):
                q[j] /= qn
                k[j] /= kn
            for i in range(r):
                sq = np.float32(0.0)
                sk = np.float32(0.0)
                for j in range(r):
                    sq += S[bi, n, i, j] * q[j]
                    sk += S[bi, n, i, j] * k[j]
                m[bi, o + i] = sq
                beta = (1.0 / (1.0 + math.exp(-(z[bi, 3 * nr + o + i] + b[o + i]))) if write
                        else 0.0)
                err = z[bi, 2 * nr + o + i] - sk  # v - S k
                for j in range(r):
                    s = S[bi, n, i, j]
                    S_out[bi, n, i, j] = s + beta * (err * k[j] - s)
    _add_correction_c(uq, m, scale, q_out, 0)
    _add_correction_c(uk, m, scale, corr, 0)
    _add_correction_c(uv, m, scale, corr, uk.shape[0])
    _add_correction_c(uo, m, scale, corr, uk.shape[0] + uv.shape[0])
    return m, S_out, corr


if njit is not None:
    _add_correction_c = njit(cache=True, nogil=True, fastmath=True, inline="always")(_add_correction)
    _compiled = njit(cache=True, nogil=True, fastmath=True)(_kernel)
else:  # pragma: no cover
    _add_correction_c = _compiled = None


class DecodeViews:
    """numpy views of one layer's parameters, as the decode kernel takes them.

    Views share memory with the parameters, so in-place updates (optimizer steps, ``copy_``,
    ``load_adapter_state_dict``) show at once. Moving or replacing the parameters
    (``Module.to``, ``load_state_dict(assign=True)``) gives W_in new storage: ``current`` then
    says the views are stale and the layer builds new ones.
    """

    __slots__ = ("ptr", "w", "b", "uq", "uk", "uv", "uo", "slices", "single")

    def __init__(self, w_in: Tensor, b_beta: Tensor, u: Mapping[str, Tensor]) -> None:
        self.ptr = w_in.data_ptr()
        self.w, self.b = w_in.detach().numpy(), b_beta.detach().numpy()
        self.uq, self.uk, self.uv, self.uo = (u[b].detach().numpy() if b in u else _NO_U
                                              for b in ("q", *CORRECTED_AFTER_Q))
        # where each of k, v, o finds its correction in the kernel's corr output
        self.slices: dict[str, tuple[int, int]] = {}
        col = 0
        for branch, arr in zip(CORRECTED_AFTER_Q, (self.uk, self.uv, self.uo), strict=True):
            if branch in u:
                self.slices[branch] = (col, col + arr.shape[0])
            col += arr.shape[0]
        # one corrected branch besides q: the whole corr output is its correction
        self.single = next(iter(self.slices)) if len(self.slices) == 1 else None


def decode_token(views: DecodeViews, x: Tensor, S: Tensor, write: bool, scale: float,
                 q_out: Tensor | None) -> tuple[np.ndarray, Tensor, dict[str, Tensor]]:
    """One token x [B, 1, d] through a layer's memory in one compiled call.

    Returns the reads m ([B, N·r] numpy), the new state (a new tensor; S is not modified) and
    the corrections s · U_b m [B, 1, o_b] of the k, v and o branches by name; adds s · U_q m to
    ``q_out`` ([B, 1, o_q], the frozen q_proj output) in place when it is given. This runs once
    per layer and token, so it does as little as it can besides the kernel.
    """
    m, S_new, corr = _compiled(x.numpy(), views.w, views.b, S.numpy(),
                               views.uq if q_out is not None else _NO_U, views.uk, views.uv,
                               views.uo, scale, write,
                               q_out.numpy() if q_out is not None else _NO_OUT)
    c = torch.from_numpy(corr)
    if views.single is not None:  # e.g. the default branches (q, o): no slicing
        return m, torch.from_numpy(S_new), {views.single: c}
    return m, torch.from_numpy(S_new), {br: c[:, :, a:e] for br, (a, e) in views.slices.items()}


def decode_step(x: Tensor, w_in: Tensor, b_beta: Tensor, S: Tensor, write: bool,
                u: Mapping[str, Tensor] | None = None, scale: float = 0.0,
                q_out: Tensor | None = None) -> tuple[Tensor, Tensor, dict[str, Tensor]]:
    """`decode_token` from the parameters themselves (builds the views on every call); the
    reads come back as a tensor [B, 1, N·r]."""
    m, S_new, corrections = decode_token(DecodeViews(w_in, b_beta, u or {}), x, S, write, scale,
                                         q_out)
    return torch.from_numpy(m).unsqueeze(1), S_new, corrections


def _recurrence_kernel(q, k, v, beta, S, reads, S_out):  # pragma: no cover - numba
    """The reference recurrence over T tokens: q, k, v, beta [B, T, N, r]; S [B, N, r, r]."""
    B, T, N, r = q.shape
    for bi in range(B):
        for n in range(N):
            s = S[bi, n].copy()
            for t in range(T):
                for i in range(r):
                    sq = np.float32(0.0)
                    sk = np.float32(0.0)
                    for j in range(r):
                        sq += s[i, j] * q[bi, t, n, j]
                        sk += s[i, j] * k[bi, t, n, j]
                    reads[bi, t, n, i] = sq
                    b = beta[bi, t, n, i]
                    if b != 0.0:
                        err = v[bi, t, n, i] - sk
                        for j in range(r):
                            s[i, j] += b * (err * k[bi, t, n, j] - s[i, j])
            S_out[bi, n] = s


_compiled_recurrence = (njit(cache=True, nogil=True)(_recurrence_kernel) if njit is not None
                        else None)


def usable(*tensors: Tensor) -> bool:
    """The kernels apply: enabled, no autograd, CPU float32."""
    return (available() and not torch.is_grad_enabled()
            and all(t.device.type == "cpu" and t.dtype == torch.float32 and not t.requires_grad
                    for t in tensors))


def recurrence(q: Tensor, k: Tensor, v: Tensor, beta: Tensor, S: Tensor) -> tuple[Tensor, Tensor]:
    """`delta_rule_reference` in one compiled call (inference only; see `usable`)."""
    arrays = [t.contiguous().numpy() for t in (q, k, v, beta, S)]
    reads = np.empty(arrays[0].shape, np.float32)
    S_new = np.empty(arrays[4].shape, np.float32)
    _compiled_recurrence(*arrays, reads, S_new)
    return torch.from_numpy(reads), torch.from_numpy(S_new)
