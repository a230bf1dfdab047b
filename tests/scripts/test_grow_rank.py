"""scripts/grow_rank.py: a grown adapter computes what the old one did, and its new dimensions learn."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from agentmem import DeltaMemConfig
from agentmem.model.adapters import load_adapter, read_adapter, save_adapter
from agentmem.model.attach import attach_delta_mem
from tests.conftest import tiny_model

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "grow_rank.py"
_spec = importlib.util.spec_from_file_location("grow_rank", _PATH)
grow_rank = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(grow_rank)

R_OLD, R_NEW, N = 4, 8, 2


@pytest.fixture
def adapter(tmp_path):
    dm = attach_delta_mem(tiny_model("llama"), DeltaMemConfig(num_states=N, rank=R_OLD,
                                                              branches=("q", "v", "o")))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():  # a "trained" adapter: every tensor non-trivial, U included
        for p in dm.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g))
    return save_adapter(dm, tmp_path / "old")


def grown(adapter, tmp_path, eps):
    out = tmp_path / f"grown-{eps}"
    assert grow_rank.main(["--adapter", str(adapter), "--rank", str(R_NEW), "--out", str(out),
                           "--eps", str(eps)]) == 0
    return out


def run(folder, grad=False):
    """Logits of a token-writing pass (later tokens read what earlier ones wrote), and the model."""
    dm = load_adapter(tiny_model("llama"), folder)  # the fingerprint is checked here
    x = torch.randint(3, 128, (1, 24), generator=torch.Generator().manual_seed(1))
    with torch.set_grad_enabled(grad), dm.memory(write=True):
        logits = dm.model(x).logits
    return logits, dm


def test_grown_adapter_computes_the_same_logits(adapter, tmp_path) -> None:
    before, _ = run(adapter)
    exact, dm = run(grown(adapter, tmp_path, eps=0.0))
    assert dm.config.rank == R_NEW and dm.config.scale == pytest.approx(16.0 / R_OLD)
    torch.testing.assert_close(exact, before, rtol=1e-4, atol=1e-4)
    near, _ = run(grown(adapter, tmp_path, eps=0.05))
    assert not torch.equal(near, before)  # tiny new query/key dimensions ...
    assert (near - before).abs().max() < 0.05 * before.abs().max()  # ... barely move the output


def test_old_weights_are_kept_in_place(adapter, tmp_path) -> None:
    _, old, _ = read_adapter(adapter)
    _, new, _ = read_adapter(grown(adapter, tmp_path, eps=0.05))
    for name, t in old.items():
        if name.endswith("w_in"):
            w = new[name].view(4, N, R_NEW, -1)
            assert torch.equal(w[:, :, :R_OLD].reshape(t.shape), t)
            assert torch.equal(w[3, :, R_OLD:], torch.zeros_like(w[3, :, R_OLD:]))  # W_β
        elif name.endswith("b_beta"):
            b = new[name].view(N, R_NEW)
            assert torch.equal(b[:, :R_OLD].reshape(-1), t)
            mean = t.view(N, R_OLD).mean(1, keepdim=True)
            assert torch.allclose(b[:, R_OLD:], mean.expand(N, R_NEW - R_OLD))
        else:
            u = new[name].view(t.shape[0], N, R_NEW)
            assert torch.equal(u[:, :, :R_OLD].reshape(t.shape), t)
            assert not u[:, :, R_OLD:].any()


@pytest.mark.parametrize("eps", [0.0, 0.05])
def test_new_query_and_key_dimensions_get_a_gradient_only_when_not_zero(adapter, tmp_path, eps) -> None:
    logits, dm = run(grown(adapter, tmp_path, eps=eps), grad=True)
    logits.logsumexp(-1).sum().backward()
    g = dm.layers[1].delta_mem_w_in.grad.view(4, N, R_NEW, -1)
    new_qk = g[0:2, :, R_OLD:].abs().sum().item()
    assert (new_qk > 0) == (eps > 0)  # at zero each one's gradient goes through the other
    # U's new columns learn first (the new values are read through the old query dimensions)
    assert dm.layers[1].delta_mem_u["o"].grad.view(-1, N, R_NEW)[:, :, R_OLD:].abs().sum() > 0


def test_refusals(adapter, tmp_path) -> None:
    config, tensors, _ = read_adapter(adapter)
    with pytest.raises(ValueError, match="does not grow"):
        grow_rank.grow(config, tensors, R_OLD)
    with pytest.raises(ValueError, match="eps"):
        grow_rank.grow(config, tensors, R_NEW, eps=float("nan"))
    with pytest.raises(ValueError, match="unknown adapter tensor"):
        grow_rank.grow(config, {**tensors, "layers.0.other": torch.zeros(1)}, R_NEW)
    out = grown(adapter, tmp_path, eps=0.05)
    with pytest.raises(SystemExit):  # never overwrites a folder
        grow_rank.main(["--adapter", str(adapter), "--rank", str(R_NEW), "--out", str(out)])
