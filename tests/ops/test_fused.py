"""The numba decode kernel computes what features + delta_rule_step compute."""

from __future__ import annotations

import pytest
import torch

from agentmem import DeltaMemConfig
from agentmem.model.layer import DeltaMemLayer
from agentmem.ops import delta_rule_step, fused

pytestmark = pytest.mark.skipif(not fused.available(), reason="numba kernel disabled")


@pytest.mark.parametrize("B,N", [(1, 1), (3, 4)])
@pytest.mark.parametrize("write", [True, False])
def test_fused_decode_matches_pytorch_ops(B, N, write):
    torch.manual_seed(0)
    layer = DeltaMemLayer(DeltaMemConfig(num_states=N), 48, {"q": 40, "o": 48})
    with torch.no_grad():
        layer.delta_mem_w_in.normal_(0, 0.3)  # non-zero W_β so β varies per row
        x = torch.randn(B, 1, 48)
        S = 0.3 * torch.randn(B, N, 8, 8)
        q, k, v, beta = layer.features(x)
        want_m, want_S = delta_rule_step(q, k, v, beta, S)
        base = torch.randn(B, 1, 40)
        want_out = layer.correct("q", base.clone(), want_m.reshape(B, 1, -1))
        out = base.clone()
        m, S_new = fused.decode_step(x, layer.delta_mem_w_in, layer.delta_mem_b_beta, S, write,
                                     layer.delta_mem_u["q"], layer.scale, out)
    assert torch.allclose(m, want_m.reshape(B, 1, -1), atol=1e-5)
    assert torch.allclose(S_new, want_S if write else S, atol=1e-5)
    assert torch.allclose(out, want_out, atol=1e-5)
    assert S_new.data_ptr() != S.data_ptr()  # the input state is never modified in place


def test_layer_uses_kernel_only_without_autograd(monkeypatch):
    calls = []
    real = fused.decode_step
    monkeypatch.setattr(fused, "decode_step", lambda *a: calls.append(1) or real(*a))
    from agentmem.model.pass_context import MemoryCache
    layer = DeltaMemLayer(DeltaMemConfig(), 48, {"q": 48, "o": 48})
    cache = MemoryCache({0: torch.zeros(1, 1, 8, 8)}, torch.zeros(1, dtype=torch.long), "token")
    x = torch.randn(1, 1, 48)
    assert not layer.can_fuse(x, cache, 0)  # grad enabled: PyTorch path
    layer.step(x, cache, 0)
    assert calls == [] and cache.states[0].requires_grad
    fresh = MemoryCache({0: torch.zeros(1, 1, 8, 8)}, torch.zeros(1, dtype=torch.long), "token")
    with torch.no_grad():
        assert layer.can_fuse(x, fresh, 0)
        layer.decode(x, fresh, 0, None)
    assert calls == [1]


@pytest.mark.parametrize("B,T,N", [(1, 1, 1), (2, 63, 4), (1, 2000, 1)])
def test_compiled_recurrence_matches_reference(B, T, N):
    from agentmem.ops import delta_rule, delta_rule_reference
    from tests.ops.test_delta_rule import make_inputs, rel

    x = make_inputs(B, T, N, 8, seed=T)
    x[3][:, T // 2 :: 3] = 0  # β = 0 (padding) must leave the state untouched
    want = delta_rule_reference(*x)
    got = fused.recurrence(*x)
    assert rel(got[0], want[0]) <= 1e-5 and rel(got[1], want[1]) <= 1e-5
    with torch.no_grad():  # the dispatcher takes it for inference...
        assert rel(delta_rule(*x)[1], want[1]) <= 1e-5
    assert not fused.usable(x[0].requires_grad_(True))  # ...never under autograd
