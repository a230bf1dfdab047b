"""The compiled decode path of an attached model computes what the PyTorch path computes.

Prefill (PyTorch ops: the chunked/reference recurrence) then token-by-token decode through the
numba kernel, against the same steps with the kernel switched off; batch 1 and > 1, writes on
and off, the default branches and all four.
"""

from __future__ import annotations

import pytest
import torch

from agentmem import DeltaMemConfig
from agentmem.model.attach import attach_delta_mem
from agentmem.ops import fused
from tests.conftest import tiny_model

pytestmark = pytest.mark.skipif(not fused.available(), reason="numba kernel disabled")


def decode(dm, model, x, start, write, prefill):
    with torch.no_grad(), dm.memory(start, write=write) as c:
        out = model(x[:, :prefill], use_cache=True)
        logits, kv = [out.logits], out.past_key_values
        for t in range(prefill, x.shape[1]):
            out = model(x[:, t : t + 1], cache=kv, use_cache=True)
            logits.append(out.logits)
            kv = out.past_key_values
    return torch.cat(logits, 1), dm.to_state(c)


@pytest.mark.parametrize("B", [1, 3])
@pytest.mark.parametrize("write", [False, True])
@pytest.mark.parametrize("branches", [("q", "o"), ("q", "k", "v", "o")])
def test_fused_decode_equals_pytorch_decode(monkeypatch, B, write, branches):
    model = tiny_model("llama")
    dm = attach_delta_mem(model, DeltaMemConfig(branches=branches, num_states=2))
    with torch.no_grad():
        for layer in dm.layers.values():  # corrections large enough to move the logits
            for u in layer.delta_mem_u.values():
                u.normal_(0, 0.5)
    x = torch.randint(0, 128, (B, 14), generator=torch.Generator().manual_seed(B))
    with torch.no_grad(), dm.memory(batch_size=B, write=True) as c:
        model(x[:, :6])
    start = dm.to_state(c)
    calls = []
    real = fused.decode_token
    monkeypatch.setattr(fused, "decode_token", lambda *a: calls.append(1) or real(*a))
    got, got_state = decode(dm, model, x, start, write, prefill=6)
    assert len(calls) == 8 * len(dm.layers)  # every decode step of every layer took the kernel
    monkeypatch.setattr(fused, "_ENABLED", False)
    want, want_state = decode(dm, model, x, start, write, prefill=6)
    assert len(calls) == 8 * len(dm.layers)
    with torch.no_grad():
        frozen = model(x).logits  # outside a memory block: the frozen backbone
    assert (want - frozen).abs().max() > 1e-2  # the memory moves these logits
    assert (got - want).abs().max().item() <= 1e-4
    assert (got_state.tensors - want_state.tensors).abs().max().item() <= 1e-5
    assert got_state.tokens_written.tolist() == want_state.tokens_written.tolist()
    if write:
        assert (got_state.tensors - start.tensors).abs().max() > 1e-3
    else:
        assert torch.equal(got_state.tensors, start.tensors)
