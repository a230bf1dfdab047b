"""Training with a half-precision frozen backbone (fp32 δ-mem), gradient checkpointing of the
write replay, the memory estimate, and launches agentmem refuses."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from agentmem.cli import main
from agentmem.data.episodes import write_jsonl
from agentmem.data.synthetic import generate
from agentmem.errors import UnsupportedLaunchError
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.model.history import write_histories_grad
from agentmem.train import TrainConfig
from agentmem.train.parallel import Replicas
from agentmem.train.precision import memory_estimate, read_tokens, resolve_precision


def eps(n: int = 8):
    return generate("train", n, seed=3, facts=2, fillers=1, sessions=1, update_prob=0)


def run(tmp_path, backbone, precision: str) -> tuple[list[dict], dict[str, torch.Tensor]]:
    data = tmp_path / "train.jsonl"
    if not data.exists():
        write_jsonl(data, eps())
    out = tmp_path / precision
    assert main(["train", "--data", str(data), "--backbone", str(backbone), "--device", "cpu",
                 "--steps", "3", "--batch-size", "4", "--lr", "1e-2", "--warmup", "0",
                 "--context-views", "0.5", "--probe-every", "0", "--precision", precision,
                 "--out", str(out)]) == 0
    rows = [json.loads(r) for r in (out / "train_log.jsonl").read_text().splitlines()]
    return rows, load_file(str(out / "adapter" / "delta_mem_adapter.safetensors"))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_half_precision_backbone_trains_an_fp32_adapter_close_to_the_fp32_one(
        chat_backbone, tmp_path, precision):
    rows32, fp32 = run(tmp_path, chat_backbone, "fp32")
    rows, half = run(tmp_path, chat_backbone, precision)
    assert all(v.dtype == torch.float32 for v in half.values())
    for a, b in zip(rows32, rows, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=2e-2)
    for k in fp32:  # AdamW moves a near-zero gradient by ±lr whatever its size: compare norms
        assert (half[k] - fp32[k]).norm() <= 0.1 * fp32[k].norm() + 1e-3, k
    assert any(not torch.equal(half[k], fp32[k]) for k in fp32)  # it did run in half precision
    card = (tmp_path / precision / "adapter" / "README.md").read_text()
    assert f"- backbone precision: {precision}" in card


def test_the_frozen_weights_are_half_and_the_memory_parameters_fp32(chat_backbone):
    model, _ = load_backbone(str(chat_backbone), dtype=torch.bfloat16)
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode="message"))
    kinds = {n: p.dtype for n, p in model.named_parameters()}
    assert {d for n, d in kinds.items() if "delta_mem" in n} == {torch.float32}
    assert {d for n, d in kinds.items() if "delta_mem" not in n} == {torch.bfloat16}
    assert all(p.requires_grad for p in dm.parameters())


def test_auto_precision_follows_accelerate_launch_and_unknown_ones_are_refused(monkeypatch):
    monkeypatch.delenv("ACCELERATE_MIXED_PRECISION", raising=False)
    assert resolve_precision("auto") == torch.float32
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert resolve_precision("auto") == torch.bfloat16
    assert resolve_precision("fp16") == torch.float16  # the flag wins over the launcher
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "fp8")
    with pytest.raises(UnsupportedLaunchError, match="fp8"):
        resolve_precision("auto")
    with pytest.raises(ValueError, match="expected auto, fp32, bf16 or fp16"):
        resolve_precision("int8")


@pytest.mark.parametrize("key", ["ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"])
def test_sharding_launches_are_refused(monkeypatch, key):
    monkeypatch.setenv(key, "true")
    with pytest.raises(UnsupportedLaunchError, match="plain data parallelism"):
        Replicas.start("cpu")


@pytest.mark.parametrize("write_mode", ["message", "token"])
def test_checkpointed_write_replay_gives_the_same_state_and_gradients(chat_backbone, write_mode):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode=write_mode))
    histories = [e.history for e in eps(3)]
    calls = {"writes": 0}
    for layer in dm.layers.values():  # count the replayed writes, forward and recomputed
        def counted(*args, _write=layer.write_only, **kwargs):
            calls["writes"] += 1
            return _write(*args, **kwargs)
        layer.write_only = counted
    results, recomputed = [], []
    for checkpoint in (False, True):
        state, gates = write_histories_grad(dm, tok, histories, checkpoint=checkpoint)
        loss = state.tensors.square().sum() + gates.total.sum()
        before = calls["writes"]
        results.append((state.tensors.detach(), gates.count,
                        torch.autograd.grad(loss, list(dm.parameters()), allow_unused=True)))
        recomputed.append(calls["writes"] - before)
    assert recomputed[0] == 0 and recomputed[1] > 0  # the backward pass rewrote, once checkpointed
    (s0, c0, g0), (s1, c1, g1) = results
    torch.testing.assert_close(s1, s0)
    assert c0 == c1 > 0
    for a, b in zip(g0, g1, strict=True):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(b, a)
    assert any(g is not None and g.abs().sum() > 0 for g in g1)


def test_the_memory_estimate_counts_weights_exactly_and_scales_activations(chat_backbone):
    model, tok = load_backbone(str(chat_backbone))
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode="message"))
    cfg = TrainConfig(data=[], out="", batch_size=8, context_views=0.5)
    frozen = sum(p.numel() * 4 for n, p in model.named_parameters() if "delta_mem" not in n)
    one = memory_estimate(dm, cfg, torch.float32, 1, 500)
    assert one.backbone == frozen
    assert one.adapter == 16 * sum(p.numel() for p in dm.parameters())
    half = memory_estimate(dm, cfg, torch.bfloat16, 1, 500)
    assert half.backbone == frozen  # the estimate reads the loaded weights' own dtype
    assert memory_estimate(dm, cfg, torch.float32, 2, 500).rows == 4
    bigger = memory_estimate(dm, cfg, torch.float32, 1, 1000)
    assert one.activations < bigger.activations < 2 * one.activations + 1
    assert half.activations < one.activations
    assert "memory estimate per process" in one.summary() and "8 rows × 500 tokens" in one.summary()
    episodes = eps(4)
    full = read_tokens(tok, episodes, cfg)
    assert full > read_tokens(tok, episodes, TrainConfig(data=[], out="", context_views=0.0)) > 0
