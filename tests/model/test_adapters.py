from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file, save_file

from agentmem import AdapterError, DeltaMemConfig
from agentmem.model.adapters import CONFIG_FILE, WEIGHTS_FILE, load_adapter, read_adapter, save_adapter
from agentmem.model.attach import attach_delta_mem
from tests.conftest import tiny_model


def trained_adapter(tmp_path, config=None):
    model = tiny_model("qwen2")
    dm = attach_delta_mem(model, config or DeltaMemConfig(num_states=2, branches=("q", "v", "o")))
    with torch.no_grad():
        for p in dm.parameters():
            p.add_(0.01 * torch.randn_like(p))
    return dm, save_adapter(dm, tmp_path / "adapter")


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    dm, folder = trained_adapter(tmp_path)
    assert sorted(p.name for p in folder.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    assert all(k.startswith("layers.") for k in load_file(str(folder / WEIGHTS_FILE)))
    loaded = load_adapter(tiny_model("qwen2"), folder)
    assert loaded.config == dm.config and loaded.fingerprint() == dm.fingerprint()
    for name, t in dm.adapter_state_dict().items():
        assert torch.equal(loaded.adapter_state_dict()[name], t)
    x = torch.randint(0, 128, (1, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        with dm.memory(write=True) as c:
            a = dm.model(x).logits
        with loaded.memory(write=True) as c2:
            b = loaded.model(x).logits
    assert torch.equal(a, b) and torch.equal(dm.to_state(c).tensors, loaded.to_state(c2).tensors)


def test_fingerprint_tracks_config_and_weights(tmp_path):
    torch.manual_seed(0)
    dm, _ = trained_adapter(tmp_path)
    before = dm.fingerprint()
    with torch.no_grad():
        dm.layers[0].delta_mem_b_beta[0] += 1e-3
    assert dm.fingerprint() != before


def test_tampered_weights_fail_the_fingerprint(tmp_path):
    torch.manual_seed(0)
    _, folder = trained_adapter(tmp_path)
    tensors = load_file(str(folder / WEIGHTS_FILE))
    from safetensors import safe_open
    with safe_open(str(folder / WEIGHTS_FILE), "pt") as f:
        meta = f.metadata()
    name = sorted(tensors)[0]
    tensors[name] = tensors[name] + 1e-3
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata=meta)
    with pytest.raises(AdapterError, match="fingerprint"):
        read_adapter(folder)


def test_adapter_for_another_backbone_is_refused_and_model_left_clean(tmp_path):
    torch.manual_seed(0)
    _, folder = trained_adapter(tmp_path)
    other = tiny_model("qwen2", seed=5)
    with pytest.raises(AdapterError, match="backbone"):
        load_adapter(other, folder)
    assert not any("delta_mem" in n for n, _ in other.named_parameters())


def test_missing_or_garbage_folder(tmp_path):
    with pytest.raises(AdapterError):
        load_adapter(tiny_model("qwen2"), tmp_path / "nope")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / CONFIG_FILE).write_text('{"rank": 8}')
    (tmp_path / "bad" / WEIGHTS_FILE).write_bytes(b"not safetensors")
    with pytest.raises(AdapterError):
        read_adapter(tmp_path / "bad")


def test_shape_mismatch_is_reported():
    dm = attach_delta_mem(tiny_model("llama"))
    sd = dm.adapter_state_dict()
    sd["layers.0.delta_mem_b_beta"] = torch.zeros(3)
    with pytest.raises(AdapterError, match="shapes"):
        dm.load_adapter_state_dict(sd)
    del sd["layers.0.delta_mem_b_beta"]
    with pytest.raises(AdapterError, match="missing"):
        dm.load_adapter_state_dict(sd)


def test_the_default_backbone_ships_its_adapter():
    """The package finds the adapter it ships (a wrong path would silently serve a fresh one)."""
    from agentmem.model.adapters import SHIPPED, read_adapter, shipped_adapter
    from agentmem.model.backbones import DEFAULT_BACKBONE

    folder = shipped_adapter(DEFAULT_BACKBONE)
    assert folder is not None and folder.parent == SHIPPED
    config, tensors, _ = read_adapter(folder)  # checksum and fingerprint verified
    assert config.write_mode == "message" and tensors
    assert shipped_adapter("no-such-backbone") is None
