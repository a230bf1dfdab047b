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
@pytest.mark.parametrize("branches", [("q", "o"), ("q", "k", "v", "o"), ("k", "o"), ("v",)])
def test_fused_decode_matches_pytorch_ops(B, N, write, branches):
    torch.manual_seed(0)
    dims = {"q": 40, "k": 24, "v": 24, "o": 48}
    layer = DeltaMemLayer(DeltaMemConfig(num_states=N, branches=branches), 48, dims)
    with torch.no_grad():
        layer.delta_mem_w_in.normal_(0, 0.3)  # non-zero W_β so β varies per row
        for u in layer.delta_mem_u.values():
            u.normal_(0, 0.5)
        x = torch.randn(B, 1, 48)
        S = 0.3 * torch.randn(B, N, 8, 8)
        S_before = S.clone()
        q, k, v, beta = layer.features(x)
        want_m, want_S = delta_rule_step(q, k, v, beta, S)
        want_m = want_m.reshape(B, 1, -1)
        base = torch.randn(B, 1, 40)
        out = base.clone()
        m, S_new, corr = fused.decode_step(x, layer.delta_mem_w_in, layer.delta_mem_b_beta, S,
                                           write, dict(layer.delta_mem_u.items()), layer.scale,
                                           out)
    assert torch.allclose(m, want_m, atol=1e-5)
    assert torch.allclose(S_new, want_S if write else S, atol=1e-5)
    want_q = layer.correct("q", base, want_m) if "q" in branches else base
    assert torch.allclose(out, want_q, atol=1e-5)
    assert sorted(corr) == sorted(b for b in branches if b != "q")
    for b, c in corr.items():  # k, v, o: s · U m, for the projection to add to its output
        zero = torch.zeros(B, 1, dims[b])
        assert c.shape == zero.shape
        assert torch.allclose(c, layer.correct(b, zero, want_m), atol=1e-5)
        assert c.abs().max() > 1e-3  # a real correction, not zeros
    assert torch.equal(S, S_before)  # the input state is never modified in place
    assert S_new.data_ptr() != S.data_ptr()


def test_layer_uses_kernel_only_without_autograd(monkeypatch):
    calls = []
    real = fused.decode_token
    monkeypatch.setattr(fused, "decode_token", lambda *a: calls.append(1) or real(*a))
    from agentmem.model.pass_context import MemoryCache
    layer = DeltaMemLayer(DeltaMemConfig(), 48, {"q": 48, "o": 48})
    cache = MemoryCache({0: torch.zeros(1, 1, 8, 8)}, torch.zeros(1, dtype=torch.long), "token")
    x = torch.randn(1, 1, 48)
    assert not layer.decode(x, cache, 0, None)  # grad enabled: PyTorch path
    layer.step(x, cache, 0)
    assert calls == [] and cache.states[0].requires_grad
    fresh = MemoryCache({0: torch.zeros(1, 1, 8, 8)}, torch.zeros(1, dtype=torch.long), "token")
    with torch.no_grad():
        assert not layer.decode(torch.randn(1, 2, 48), fresh, 0, None)  # two tokens
        assert layer.decode(x, fresh, 0, None)
        assert fresh.positions[0] == 1 and fresh.tokens_written.tolist() == [1]
        assert sorted(fresh.reads[0]) == ["o"]
        masked = MemoryCache({0: torch.zeros(1, 1, 8, 8)}, torch.zeros(1, dtype=torch.long),
                             "token", write_mask=torch.ones(1, 1))
        assert not layer.decode(x, masked, 0, None)  # a padding mask covers this position
    assert calls == [1]


def test_views_follow_parameter_updates():
    """In-place updates show through the cached views; replaced parameters rebuild them."""
    from agentmem.model.pass_context import MemoryCache
    torch.manual_seed(1)
    layer = DeltaMemLayer(DeltaMemConfig(), 48, {"q": 48, "o": 48})
    x = torch.randn(1, 1, 48)

    def read_o():
        cache = MemoryCache({0: torch.randn(1, 1, 8, 8, generator=torch.Generator().manual_seed(0))},
                            torch.zeros(1, dtype=torch.long), "off")
        assert layer.decode(x, cache, 0, None)
        return cache.reads[0]["o"].clone()

    with torch.no_grad():
        first = read_o()
        layer.delta_mem_u["o"].mul_(2)  # in place: same storage
        assert torch.allclose(read_o(), 2 * first, atol=1e-6)
        w = layer.delta_mem_w_in.detach().clone()
        layer.load_state_dict({**layer.state_dict(), "delta_mem_w_in": w.neg(),
                               "delta_mem_u.o": layer.delta_mem_u["o"] * 3}, assign=True)
        got = read_o()
    want = 3 * 2 * first  # tanh is odd: W_in → -W_in flips q, so m and the correction flip...
    assert torch.allclose(got, -want, atol=1e-5)  # ...and the new U_o (×3) is used


