"""scripts/set_protocol.py: the same weights under another write protocol, as an ordinary adapter."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from agentmem import DeltaMemConfig
from agentmem.model.adapters import read_adapter, save_adapter
from agentmem.model.attach import attach_delta_mem
from tests.conftest import tiny_model

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "set_protocol.py"
_spec = importlib.util.spec_from_file_location("set_protocol", _PATH)
set_protocol = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(set_protocol)


def saved(tmp_path, **config) -> Path:
    dm = attach_delta_mem(tiny_model("llama"), DeltaMemConfig(num_states=2, rank=4, **config))
    return save_adapter(dm, tmp_path / "src")


def test_copy_keeps_the_weights_and_changes_only_the_protocol(tmp_path):
    src = saved(tmp_path, write_mode="message")
    out = tmp_path / "out"
    assert set_protocol.main(["--adapter", str(src), "--out", str(out), "--write-policy", "user",
                              "--no-write-reads"]) == 0
    old_config, old_tensors, _ = read_adapter(src)
    new_config, new_tensors, _ = read_adapter(out)  # a valid, fingerprinted folder
    assert (new_config.write_policy, new_config.write_reads) == ("user", False)
    assert new_config.rank == old_config.rank and new_config.write_mode == "message"
    assert new_tensors.keys() == old_tensors.keys()
    assert all(torch.equal(new_tensors[k], old_tensors[k]) for k in old_tensors)


def test_refuses_a_token_adapter_and_a_non_empty_out(tmp_path, capsys):
    src = saved(tmp_path, write_mode="token")
    assert set_protocol.main(["--adapter", str(src), "--out", str(tmp_path / "o"),
                              "--no-write-reads"]) == 2
    assert "write_mode='message'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "x").write_text("keep")
    assert set_protocol.main(["--adapter", str(src), "--out", str(busy)]) == 2
    assert (busy / "x").read_text() == "keep"
