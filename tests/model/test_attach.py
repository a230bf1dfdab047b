"""Attachment on every architecture of the table: exactness, KV cache, training, detach."""

from __future__ import annotations

import pytest
import torch
import transformers as tf

from agentmem import DeltaMemConfig, UnsupportedArchitectureError
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import ARCHITECTURES
from agentmem.model.layer import DeltaMemProjection
from tests.conftest import tiny_model

ARCHS = sorted(ARCHITECTURES)


def ids(B=2, T=24, seed=0):
    return torch.randint(0, 128, (B, T), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_zero_state_equals_frozen_backbone(arch):
    model = tiny_model(arch)
    x = ids()
    with torch.no_grad():
        ref = model(x).logits
        dm = attach_delta_mem(model, DeltaMemConfig(branches=("q", "k", "v", "o")))
        with dm.memory(batch_size=2):
            out = model(x).logits
    assert (out - ref).abs().max().item() <= 1e-5
    # ...and a written state really changes what the model computes
    with torch.no_grad():
        with dm.memory(batch_size=2, write=True) as cache:
            model(x)
        with dm.memory(dm.to_state(cache)):
            assert (model(x).logits - ref).abs().max().item() > 1e-4


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("write", [False, True])
def test_prefill_then_decode_equals_full_pass(arch, write):
    model = tiny_model(arch)
    dm = attach_delta_mem(model)
    x = ids(T=20, seed=1)
    with torch.no_grad():
        with dm.memory(batch_size=2, write=True) as c:
            model(x[:, :8])
        start = dm.to_state(c)
        with dm.memory(start, write=write) as c:
            full = model(x).logits
        full_state = dm.to_state(c)
        with dm.memory(start, write=write) as c:
            out = model(x[:, :11], use_cache=True)
            logits, kv = [out.logits], out.past_key_values
            for t in range(11, 20):
                out = model(x[:, t : t + 1], cache=kv, use_cache=True)
                logits.append(out.logits)
                kv = out.past_key_values
        step_state = dm.to_state(c)
    assert (torch.cat(logits, 1) - full).abs().max().item() <= 1e-4
    assert (step_state.tensors - full_state.tensors).abs().max().item() <= 1e-5
    assert step_state.tokens_written.tolist() == full_state.tokens_written.tolist()


def test_generate_with_kv_cache_and_writes():
    model = tiny_model("llama")
    dm = attach_delta_mem(model)
    x = ids(B=1, T=10, seed=2)
    with torch.no_grad():
        with dm.memory(write=True) as c:
            gen = model.generate(x, max_new_tokens=6, do_sample=False, pad_token_id=0)
        written = dm.to_state(c)
        # replaying prompt + generated tokens but the last in one pass gives the same state
        with dm.memory(write=True) as c:
            model(gen[:, :-1])
    assert written.tokens_written.item() == 15
    assert torch.allclose(dm.to_state(c).tensors, written.tensors, atol=1e-5)


def test_only_delta_mem_parameters_train_and_backbone_is_unchanged():
    model = tiny_model("qwen3")
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    dm = attach_delta_mem(model, DeltaMemConfig(num_states=2))
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and all(n.split(".")[-1].startswith("delta_mem_") or ".delta_mem_u." in n
                             for n in trainable)
    opt = torch.optim.AdamW(dm.parameters(), lr=1e-2)
    x = ids(seed=3)
    with dm.memory(batch_size=2, write=True) as c:
        model(x[:, :12])
    with dm.memory(dm.to_state(c)):
        loss = model(x[:, 12:], labels=x[:, 12:]).loss
    loss.backward()
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None and p.grad.abs().sum() > 0, name
        else:
            assert p.grad is None, name
    opt.step()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            key = name.replace(".base_layer", "")
            assert torch.equal(p, frozen[key]), name


def test_detach_restores_modules_and_flags():
    model = tiny_model("mistral")
    model.lm_head.weight.requires_grad_(True)
    before = {n: p.requires_grad for n, p in model.named_parameters()}
    x = ids(seed=4)
    with torch.no_grad():
        ref = model(x).logits
    dm = attach_delta_mem(model)
    assert any(isinstance(m, DeltaMemProjection) for m in model.modules())
    with pytest.raises(Exception, match="already attached"):
        attach_delta_mem(model)
    dm.detach()
    assert not any(isinstance(m, DeltaMemProjection) for m in model.modules())
    assert not any("delta_mem" in n for n, _ in model.named_parameters())
    assert {n: p.requires_grad for n, p in model.named_parameters()} == before
    with torch.no_grad():
        assert torch.equal(model(x).logits, ref)


def test_unknown_architecture_names_supported_ones():
    torch.manual_seed(0)
    model = tf.AutoModelForCausalLM.from_config(tf.GPT2Config(n_layer=1, n_embd=32, n_head=2))
    with pytest.raises(UnsupportedArchitectureError, match="llama.*qwen3"):
        attach_delta_mem(model)


def test_target_layers_and_report():
    model = tiny_model("llama")
    dm = attach_delta_mem(model, DeltaMemConfig(target_layers=(1,)))
    assert dm.layer_indices == (1,)
    assert not hasattr(model.model.layers[0].self_attn, "delta_mem")
    report = dm.trainable_report()
    n = sum(p.numel() for p in dm.parameters())
    assert f"{n:,}" in report and "1 ×" in report


def test_base_slice_and_zero_init():
    model = tiny_model("llama")
    q_w = model.model.layers[0].self_attn.q_proj.weight.detach().clone()
    dm = attach_delta_mem(model)
    u_q = dm.layers[0].delta_mem_u["q"]
    assert torch.allclose(u_q.norm(dim=0), torch.full((8,), 0.05))
    assert torch.allclose(u_q / 0.05, q_w[:, :8] / q_w[:, :8].norm(dim=0))
    assert torch.all(dm.layers[0].delta_mem_w_in[24:] == 0)  # W_β = 0
    assert torch.all(dm.layers[0].delta_mem_b_beta == -1.5)
    dm.detach()
    dm = attach_delta_mem(model, DeltaMemConfig(init="zero"))
    assert torch.all(dm.layers[0].delta_mem_u["q"] == 0)


def test_batch_mismatch_is_an_error():
    model = tiny_model("llama")
    dm = attach_delta_mem(model)
    with dm.memory(batch_size=1), pytest.raises(ValueError, match="batch"):
        model(ids(B=2))
