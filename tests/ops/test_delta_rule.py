"""Fast forms against the reference recurrence, and the reference against float64 math."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from agentmem.ops import (
    delta_rule,
    delta_rule_chunked,
    delta_rule_read,
    delta_rule_reference,
    delta_rule_step,
)


def make_inputs(B, T, N, r, seed=0, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.tanh(torch.randn(B, T, N, r, generator=g)), dim=-1)
    k = F.normalize(torch.tanh(torch.randn(B, T, N, r, generator=g)), dim=-1)
    v = torch.randn(B, T, N, r, generator=g)
    beta = torch.sigmoid(torch.randn(B, T, N, r, generator=g) - 1.0)
    S0 = 0.3 * torch.randn(B, N, r, r, generator=g)
    return [x.to(dtype) for x in (q, k, v, beta, S0)]


def rel(a, b):
    return ((a - b).norm() / b.norm().clamp_min(1e-30)).item()


def grads(fn, inputs, seed=1):
    xs = [x.clone().requires_grad_(True) for x in inputs]
    reads, final = fn(*xs)
    g = torch.Generator().manual_seed(seed)
    loss = (reads * torch.randn(reads.shape, generator=g)).sum() + \
        (final * torch.randn(final.shape, generator=g)).sum()
    loss.backward()
    return [x.grad for x in xs]


SHAPES = [(1, 1, 1, 8), (2, 63, 1, 8), (1, 100, 4, 8), (3, 100, 1, 4), (2, 2000, 1, 8),
          (1, 257, 4, 16)]


@pytest.mark.parametrize("B,T,N,r", SHAPES)
def test_chunked_matches_reference_outputs_state_and_grads(B, T, N, r):
    x = make_inputs(B, T, N, r)
    ref_reads, ref_state = delta_rule_reference(*x)
    reads, state = delta_rule_chunked(*x)
    assert rel(reads, ref_reads) <= 1e-5
    assert rel(state, ref_state) <= 1e-5
    if T <= 257:  # the reference's backward at T=2000 is slow; 257 covers padding + carries
        for g_fast, g_ref in zip(grads(delta_rule_chunked, x), grads(delta_rule_reference, x),
                                 strict=True):
            assert rel(g_fast, g_ref) <= 1e-5


def test_chunked_grads_at_2000_tokens():
    x = make_inputs(1, 2000, 1, 8, seed=3)
    for g_fast, g_ref in zip(grads(delta_rule_chunked, x), grads(delta_rule_reference, x),
                             strict=True):
        assert rel(g_fast, g_ref) <= 1e-5


@pytest.mark.parametrize("chunk", [1, 2, 8, 64])
def test_chunk_size_does_not_change_results(chunk):
    x = make_inputs(2, 37, 2, 8, seed=4)
    ref = delta_rule_reference(*x)
    out = delta_rule_chunked(*x, chunk_size=chunk)
    assert rel(out[0], ref[0]) <= 1e-5 and rel(out[1], ref[1]) <= 1e-5


def test_step_matches_reference_and_grads():
    x = make_inputs(3, 1, 4, 8, seed=5)
    ref, out = delta_rule_reference(*x), delta_rule_step(*x)
    assert rel(out[0], ref[0]) <= 1e-6 and rel(out[1], ref[1]) <= 1e-6
    for a, b in zip(grads(delta_rule_step, x), grads(delta_rule_reference, x), strict=True):
        assert rel(a, b) <= 1e-5
    with pytest.raises(ValueError, match="T = 1"):
        delta_rule_step(*make_inputs(1, 2, 1, 8))


def test_dispatcher_and_read_only():
    x = make_inputs(2, 50, 1, 8, seed=6)
    assert rel(delta_rule(*x)[1], delta_rule_reference(*x)[1]) <= 1e-5
    reads, state = delta_rule_read(x[0], x[4])
    assert state is x[4]
    assert torch.allclose(reads[:, 7], torch.einsum("bnij,bnj->bni", x[4], x[0][:, 7]))


def test_zero_beta_is_identity_padding():
    q, k, v, beta, S0 = make_inputs(1, 20, 1, 8, seed=7)
    beta[:, 10:] = 0
    _, full = delta_rule_chunked(q, k, v, beta, S0)
    _, head = delta_rule_reference(q[:, :10], k[:, :10], v[:, :10], beta[:, :10], S0)
    assert torch.equal(full, head) or rel(full, head) <= 1e-6


def test_split_sequence_equals_one_pass():
    x = make_inputs(2, 90, 4, 8, seed=8)
    reads, final = delta_rule_chunked(*x)
    r1, s1 = delta_rule_chunked(*[t[:, :41] for t in x[:4]], x[4])
    r2, s2 = delta_rule_chunked(*[t[:, 41:] for t in x[:4]], s1)
    assert rel(torch.cat((r1, r2), 1), reads) <= 1e-5 and rel(s2, final) <= 1e-5


def design_formula_float64(q, k, v, beta, S0):
    """The delta rule of docs/design.md#the-mechanism with explicit matrices, in float64,
    independently of the ops."""
    q, k, v, beta, S = (t.double() for t in (q, k, v, beta, S0))
    B, T, N, r = q.shape
    reads = torch.zeros(B, T, N, r, dtype=torch.float64)
    S = S.clone()
    for b in range(B):
        for n in range(N):
            for t in range(T):
                reads[b, t, n] = S[b, n] @ q[b, t, n]
                lam = torch.diag(1 - beta[b, t, n])
                err = v[b, t, n] - S[b, n] @ k[b, t, n]
                S[b, n] = lam @ S[b, n] + torch.diag(beta[b, t, n]) @ torch.outer(err, k[b, t, n])
    return reads, S


@pytest.mark.parametrize("B,T,N,r", [(1, 1, 1, 8), (2, 17, 2, 8), (1, 63, 1, 4)])
def test_reference_matches_float64_design_formula(B, T, N, r):
    x = make_inputs(B, T, N, r, seed=9)
    reads, final = delta_rule_reference(*x)
    want_reads, want_final = design_formula_float64(*x)
    assert rel(reads.double(), want_reads) <= 1e-5
    assert rel(final.double(), want_final) <= 1e-5


def test_shape_errors():
    q, k, v, beta, S0 = make_inputs(1, 5, 1, 8)
    with pytest.raises(ValueError, match="initial_state"):
        delta_rule_chunked(q, k, v, beta, S0[:, :, :4])
    with pytest.raises(ValueError, match="share"):
        delta_rule_reference(q, k[:, :3], v, beta, S0)
