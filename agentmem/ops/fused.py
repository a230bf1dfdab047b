"""Compiled CPU kernels for inference (no autograd): the decode step and the recurrence.

On a CPU, decoding one token through a layer's memory is ~25k multiply-adds spread over a dozen
PyTorch kernels, so launch overhead dominates. The decode kernel does it all in one call: W_in·x,
tanh, l2norm, the write gate, the read S q, the delta-rule write and the q correction. The
recurrence kernel is `delta_rule_reference` as one compiled loop, for write/read passes. Tests
compare both with the PyTorch ops; autograd, other devices and dtypes use the PyTorch ops. Set
AGENTMEM_FUSED=0 to disable them.
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
_ENABLED = njit is not None and os.environ.get("AGENTMEM_FUSED", "1") != "0"
_EMPTY_U = np.zeros((0, 1), np.float32)
_EMPTY_OUT = np.zeros((1, 0), np.float32)
_views: dict[int, tuple[Tensor, int, np.ndarray]] = {}


def available() -> bool:
    return _ENABLED


def _np(t: Tensor) -> np.ndarray:
    """A cached numpy view of a parameter (it shares memory, so in-place updates show)."""
    hit = _views.get(id(t))
    if hit is None or hit[0] is not t or hit[1] != t.data_ptr():
        hit = (t, t.data_ptr(), t.detach().numpy())
        _views[id(t)] = hit
    return hit[2]


def _kernel(x, w, b, S, u, scale, write, out, m_out, S_out):  # pragma: no cover - numba
    """One decode token through a layer's memory.

    x [B, d]; w [4·N·r, d] = W_in; b [N·r]; S [B, N, r, r]; u [o, N·r] = U_q (o = 0: no q
    correction); fills m_out [B, N·r] and S_out, and adds scale · U_q m to out [B, o] in place.
    """
    B, N, r = S.shape[0], S.shape[1], S.shape[2]
    nr = N * r
    z = np.empty(4 * nr, np.float32)
    q = np.empty(r, np.float32)
    k = np.empty(r, np.float32)
    for bi in range(B):
        for o in range(4 * nr):  # z = W_in x
            acc = np.float32(0.0)
            for j in range(x.shape[1]):
                acc += w[o, j] * x[bi, j]
            z[o] = acc
        for n in range(N):
            o = n * r
            qn = np.float32(0.0)
            kn = np.float32(0.0)
            for j in range(r):
                q[j] = math.tanh(z[o + j])
                k[j] = math.tanh(z[nr + o + j])
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
                beta = 1.0 / (1.0 + math.exp(-(z[3 * nr + o + i] + b[o + i]))) if write else 0.0
                err = z[2 * nr + o + i] - sk  # v - S k
                for j in range(r):
                    s = S[bi, n, i, j]
                    S_out[bi, n, i, j] = s + beta * (err * k[j] - s)
        for p in range(u.shape[0]):  # out += s · U_q m
            acc = np.float32(0.0)
            for j in range(nr):
                acc += u[p, j] * m_out[bi, j]
            out[bi, p] += scale * acc


def decode_step(x: Tensor, w_in: Tensor, b_beta: Tensor, S: Tensor, write: bool,
                u_q: Tensor | None = None, scale: float = 0.0, out: Tensor | None = None
                ) -> tuple[Tensor, Tensor]:
    """Reads [B, 1, N·r] and the new state for one token x [B, 1, d]; when ``u_q`` and ``out``
    ([B, 1, o], the frozen q_proj output) are given, adds scale · U_q m to ``out`` in place."""
    B = x.shape[0]
    m = np.empty((B, b_beta.shape[0]), np.float32)
    S_new = np.empty(tuple(S.shape), np.float32)
    u = _np(u_q) if u_q is not None else _EMPTY_U
    o = out.view(B, -1).numpy() if out is not None else _EMPTY_OUT
    _compiled(x.reshape(B, -1).numpy(), _np(w_in), _np(b_beta), S.numpy(), u, np.float32(scale),
              write, o, m, S_new)
    return torch.from_numpy(m).unsqueeze(1), torch.from_numpy(S_new)


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


_compiled = njit(cache=True, nogil=True, fastmath=True)(_kernel) if njit is not None else None
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
