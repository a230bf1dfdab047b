"""One-call CPU kernel for the decode hot path (T = 1, no autograd).

On a CPU, decoding one token through a layer's memory is ~600 multiply-adds spread over a dozen
PyTorch kernels, so launch overhead dominates. This numba kernel does everything after W_in·x
(tanh, l2norm, the write gate, the read S q and the delta-rule write) in one call. It computes
the same function as `features` + `delta_rule_step` (tests compare them); autograd, other devices
and longer passes use the PyTorch ops. Set AGENTMEM_FUSED=0 to disable it.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from torch import Tensor

try:  # numba is a pinned dependency; the guard keeps the PyTorch path usable without it
    from numba import njit
except ImportError:  # pragma: no cover
    njit = None

_EPS = 1e-12  # F.normalize's eps


def available() -> bool:
    return njit is not None and os.environ.get("AGENTMEM_FUSED", "1") != "0"


def _kernel(z, b, S, write, m_out, S_out):  # pragma: no cover - compiled by numba
    """z [B, 4·N·r] = W_in x; b [N·r]; S [B, N, r, r]; fills m_out [B, N·r] and S_out."""
    B, N, r = S.shape[0], S.shape[1], S.shape[2]
    nr = N * r
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
                m_out[bi, o + i] = sq
                if write:
                    beta = 1.0 / (1.0 + math.exp(-(z[bi, 3 * nr + o + i] + b[o + i])))
                    err = z[bi, 2 * nr + o + i] - sk  # v - S k
                    for j in range(r):
                        s = S[bi, n, i, j]
                        S_out[bi, n, i, j] = s + beta * (err * k[j] - s)
                else:
                    for j in range(r):
                        S_out[bi, n, i, j] = S[bi, n, i, j]


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


_compiled = njit(cache=True, nogil=True)(_kernel) if njit is not None else None
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


def decode_step(z: Tensor, b_beta: Tensor, S: Tensor, write: bool) -> tuple[Tensor, Tensor]:
    """Reads [B, 1, N·r] and the new state [B, N, r, r] from z = W_in x ([B, 1, 4·N·r])."""
    B = z.shape[0]
    zn = z.reshape(B, -1).numpy()
    Sn = S.numpy()
    m = np.empty((B, zn.shape[1] // 4), np.float32)
    S_new = np.empty_like(Sn)
    _compiled(zn, b_beta.numpy(), Sn, write, m, S_new)
    return torch.from_numpy(m).unsqueeze(1), torch.from_numpy(S_new)
