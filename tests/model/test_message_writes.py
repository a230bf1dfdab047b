"""SSW (one write per message) and MSW (several states per layer)."""

from __future__ import annotations

import pytest
import torch

from agentmem import DeltaMemConfig, MissingMessageSpansError
from agentmem.model.attach import attach_delta_mem
from agentmem.ops import delta_rule_reference
from tests.conftest import tiny_model

SPANS = [[(2, 7), (9, 15), (16, 18)], [(0, 4), (5, 20)]]


def capture_inputs(model):
    """Record x_t entering each layer's q projection."""
    seen = {}
    hooks = [layer.self_attn.q_proj.base_layer.register_forward_hook(
        lambda mod, args, out, i=i: seen.__setitem__(i, args[0].detach().float()))
        for i, layer in enumerate(model.model.layers)]
    return seen, hooks


@pytest.mark.parametrize("num_states", [1, 4])
def test_ssw_writes_mean_of_each_message_once(num_states):
    model = tiny_model("llama")
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode="message", num_states=num_states))
    x = torch.randint(0, 128, (2, 20), generator=torch.Generator().manual_seed(0))
    seen, hooks = capture_inputs(model)
    with torch.no_grad(), dm.memory(batch_size=2, write=True, spans=SPANS) as c:
        model(x)
    for h in hooks:
        h.remove()
    state = dm.to_state(c)
    assert state.tokens_written.tolist() == [5 + 6 + 2, 4 + 15]
    for j, i in enumerate(dm.layer_indices):
        for b, row in enumerate(SPANS):
            pooled = torch.stack([seen[i][b, s:e].mean(0) for s, e in row])[None]  # [1, M, d]
            _, k, v, beta = dm.layers[i].features(pooled)
            _, want = delta_rule_reference(k, k, v, beta, torch.zeros_like(state.tensors[b:b+1, j]))
            assert torch.allclose(state.tensors[b, j], want[0], atol=1e-6)


def test_ssw_pass_reads_the_state_as_it_was_when_the_pass_began():
    model = tiny_model("llama")
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode="message"))
    x = torch.randint(0, 128, (2, 20), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        with dm.memory(batch_size=2, write=True, spans=SPANS) as c:
            model(x)
        s1 = dm.to_state(c)
        with dm.memory(s1) as c:
            read_only = model(x).logits
        with dm.memory(s1, write=True, spans=SPANS) as c:
            writing = model(x).logits
    assert torch.equal(read_only, writing)
    assert not torch.equal(dm.to_state(c).tensors, s1.tensors)


def test_ssw_without_spans_fails_loudly():
    model = tiny_model("llama")
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode="message"))
    for spans in (None, [[], []]):
        with pytest.raises(MissingMessageSpansError):
            with dm.memory(batch_size=2, write=True, spans=spans):
                pass
    with dm.memory(batch_size=1, write=True, spans=[[(0, 40)]]), pytest.raises(ValueError,
                                                                               match="outside"):
        model(torch.zeros(1, 10, dtype=torch.long))


def test_ssw_takes_one_pass_per_block():
    model = tiny_model("llama")
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode="message"))
    with torch.no_grad(), dm.memory(write=True, spans=[[(0, 3)]]):
        model(torch.ones(1, 5, dtype=torch.long))
        with pytest.raises(Exception, match="one forward pass"):
            model(torch.ones(1, 1, dtype=torch.long))


def test_msw_states_are_independent_slices():
    """With N states, state n depends only on its own slice of W_q/W_k/W_v/W_β."""
    model = tiny_model("qwen3")
    dm = attach_delta_mem(model, DeltaMemConfig(num_states=4))
    x = torch.randint(0, 128, (1, 12), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        with dm.memory(write=True) as c:
            model(x)
        before = dm.to_state(c).tensors
        w = dm.layers[0].delta_mem_w_in  # rows [4 groups, N=4, r=8]
        w.view(4, 4, 8, -1)[:, 2] += 0.5  # change only state 2's slices in layer 0
        with dm.memory(write=True) as c:
            model(x)
        after = dm.to_state(c).tensors
    changed = (after[0, 0] - before[0, 0]).flatten(1).abs().amax(1)  # layer 0, per state
    assert changed[2] > 1e-4 and torch.all(changed[[0, 1, 3]] == 0)
    assert dm.layers[0].delta_mem_u["q"].shape[1] == 32  # U takes the N·r concatenated reads
