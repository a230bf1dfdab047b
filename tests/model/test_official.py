"""Converting the δ-mem authors' released adapters: translation, metadata, and every refusal."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from safetensors.torch import load_file

from agentmem import AdapterError, DeltaMemConfig, OfficialAdapterError, UnsupportedOfficialOptionError
from agentmem.cli import main
from agentmem.model.adapters import WEIGHTS_FILE, read_adapter
from agentmem.model.official import FAITHFUL, INERT, LICENCE_NOTE, REQUIRED, convert_official
from tests.chat.tiny import tiny_backbone_dir
from tests.conftest import tiny_model
from tests.model.official_reference import (
    OFFICIAL_DEFAULTS,
    official_config,
    official_tensors,
    write_official_folder,
)


@pytest.fixture(scope="module")
def backbone():
    torch.manual_seed(0)
    return tiny_model("qwen3")


def folder(tmp_path, model, name="src", tensors=None, **options):
    config = official_config(**options)
    return write_official_folder(tmp_path / name, config,
                                 tensors if tensors is not None else official_tensors(model, config))


def test_every_option_of_their_config_is_classified():
    from agentmem.model.official import TRANSLATED

    known = set(REQUIRED) | INERT | set(TRANSLATED)
    assert known == set(OFFICIAL_DEFAULTS) and len(known) == 49
    assert not (set(REQUIRED) & INERT) and not (set(TRANSLATED) & (set(REQUIRED) | INERT))
    assert all(OFFICIAL_DEFAULTS[k] == v for k, v in REQUIRED.items())  # we implement their defaults


def test_conversion_translates_config_and_tensors(tmp_path, backbone):
    src = folder(tmp_path, backbone, num_state_heads=2, rank=4, delta_heads=["q", "o"], alpha=8.0)
    out = convert_official(src, tmp_path / "out", backbone)
    config, tensors, meta = read_adapter(out)  # fingerprint checked here
    assert config == DeltaMemConfig(rank=4, num_states=2, write_mode="token", branches=("q", "o"),
                                    alpha=8.0, init="zero", numerics="bf16", write_context="history")
    theirs = torch.load(src / "delta_mem_adapter.pt", weights_only=True)
    for i in range(2):
        p = f"model.layers.{i}.self_attn."
        w_in = torch.cat([theirs[p + n] for n in ("memory_q_proj", "memory_k_proj", "memory_v_proj",
                                                  "beta_proj")]).float()
        assert torch.equal(tensors[f"layers.{i}.delta_mem_w_in"], w_in)  # bf16 -> fp32 is exact
        assert torch.equal(tensors[f"layers.{i}.delta_mem_b_beta"], theirs[p + "beta_bias"].float())
        assert torch.equal(tensors[f"layers.{i}.delta_mem_u.q"], theirs[p + "delta_q_proj"].float())
        assert torch.equal(tensors[f"layers.{i}.delta_mem_u.o"], theirs[p + "delta_o_proj"].float())
    assert len(tensors) == 2 * 4 and all(t.dtype == torch.float32 for t in tensors.values())
    sha = {n: hashlib.sha256((src / n).read_bytes()).hexdigest()
           for n in ("delta_mem_config.json", "delta_mem_adapter.pt")}
    assert json.loads(meta["source_sha256"]) == sha
    assert meta["license_note"] == LICENCE_NOTE and meta["source"] == "declare-lab/delta-Mem"
    assert json.loads(meta["source_config"]) == json.loads((src / "delta_mem_config.json").read_text())


def test_message_writes_and_protocol_options(tmp_path, backbone):
    src = folder(tmp_path, backbone, memory_write_granularity="message_mean", delta_heads="q,k,v,o",
                 target_layers=[0, 1])
    config = read_adapter(convert_official(src, tmp_path / "a", backbone))[0]
    assert (config.write_mode, config.branches, config.target_layers) == \
        ("message", ("q", "k", "v", "o"), None)
    assert {k: getattr(config, k) for k in FAITHFUL} == FAITHFUL
    ours = read_adapter(convert_official(src, tmp_path / "b", backbone, numerics="fp32",
                                         write_context="turn", message_span="content"))[0]
    assert (ours.numerics, ours.write_context, ours.message_span) == ("fp32", "turn", "content")


def test_missing_options_take_their_defaults_and_inert_ones_are_ignored(tmp_path, backbone):
    src = folder(tmp_path, backbone, output_init="base_slice", online_gain=0.3, delta_scale_max=5.0)
    config = json.loads((src / "delta_mem_config.json").read_text())
    for name in ("rank", "normalize_qk", "delta_heads", "latent_gate_init"):
        del config[name]
    (src / "delta_mem_config.json").write_text(json.dumps(config))
    assert read_adapter(convert_official(src, tmp_path / "out", backbone))[0].branches == \
        ("q", "k", "v", "o")


NOT_OURS = {  # one value per option that changes the computation
    "normalize_qk": False, "couple_lambda": False, "state_update_mode": "lambda_outside",
    "rankwise_gates": False, "num_memory_partitions": 2, "num_global_memory_partitions": 1,
    "memory_partition_routing": "hard", "memory_partition_basis": "own",
    "tie_memory_partition_read_write": True, "memory_partition_read_mode": "sigmoid",
    "slot_read_top_k": 2, "global_memory_mode": "joint", "global_memory_read_top_k": 1,
    "global_memory_merge_mode": "joint_softmax", "memory_reader_layers": [1],
    "memory_readout_mode": "synthetic_kv", "memory_write_source": "hidden",
    "memory_write_proposals_per_message": 3, "synthetic_memory_slots": 2,
    "latent_memory_layers": [0], "target_modules": ["attn"], "delta_o_rmsnorm": True,
    "trainable_delta_scale": True,
}


@pytest.mark.parametrize("option", sorted(NOT_OURS))
def test_each_unsupported_option_is_refused_by_name(tmp_path, backbone, option):
    assert set(NOT_OURS) == set(REQUIRED)
    src = folder(tmp_path, backbone, **{option: NOT_OURS[option]})
    with pytest.raises(UnsupportedOfficialOptionError, match=option) as e:
        convert_official(src, tmp_path / "out", backbone)
    assert e.value.option == option and isinstance(e.value, AdapterError)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("options, option", [
    ({"memory_write_granularity": "sentence_mean"}, "memory_write_granularity"),
    ({"delta_heads": []}, "delta_heads"), ({"delta_heads": "none"}, "delta_heads"),
    ({"delta_heads": ["q", "x"]}, "delta_heads"),
])
def test_options_we_lack_are_refused(tmp_path, backbone, options, option):
    tensors = official_tensors(backbone, official_config())
    with pytest.raises(UnsupportedOfficialOptionError, match=option):
        convert_official(folder(tmp_path, backbone, tensors=tensors, **options), tmp_path / "o",
                         backbone)


def test_an_option_new_to_the_converter_is_refused(tmp_path, backbone):
    src = folder(tmp_path, backbone)
    config = json.loads((src / "delta_mem_config.json").read_text())
    (src / "delta_mem_config.json").write_text(json.dumps({**config, "memory_write_budget": 7}))
    with pytest.raises(UnsupportedOfficialOptionError, match="memory_write_budget"):
        convert_official(src, tmp_path / "out", backbone)


class Payload:
    """Unpickling this would create a file: weights_only loading must never run it."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_a_pickle_holding_an_object_is_refused_without_running_it(tmp_path, backbone):
    src = folder(tmp_path, backbone)
    marker = tmp_path / "pwned"
    torch.save({"model.layers.0.self_attn.beta_bias": Payload(str(marker))},
               src / "delta_mem_adapter.pt")
    with pytest.raises(OfficialAdapterError, match="weights_only"):
        convert_official(src, tmp_path / "out", backbone)
    assert not marker.exists()


@pytest.mark.parametrize("payload", [[torch.zeros(2)], {"x": 3}, {3: torch.zeros(1)}])
def test_a_pickle_that_is_not_a_state_dict_is_refused(tmp_path, backbone, payload):
    src = folder(tmp_path, backbone)
    torch.save(payload, src / "delta_mem_adapter.pt")
    with pytest.raises(OfficialAdapterError, match="dict of name -> tensor"):
        convert_official(src, tmp_path / "out", backbone)


def test_unreadable_files_are_refused(tmp_path, backbone):
    src = folder(tmp_path, backbone)
    (src / "delta_mem_adapter.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(OfficialAdapterError, match="weights_only"):
        convert_official(src, tmp_path / "out", backbone)
    (src / "delta_mem_config.json").unlink()
    with pytest.raises(OfficialAdapterError, match="delta_mem_config.json"):
        convert_official(src, tmp_path / "out", backbone)


def tensors_with(model, edit, **options):
    tensors = official_tensors(model, official_config(**options))
    edit(tensors)
    return tensors


@pytest.mark.parametrize("edit, match", [
    (lambda t: t.pop("model.layers.1.self_attn.beta_bias"), r"layer 1: missing \['beta_bias'\]"),
    (lambda t: t.update({"model.layers.0.self_attn.lambda_proj": torch.zeros(8, 64)}), "lambda_proj"),
    (lambda t: t.update({"lm_head.delta": torch.zeros(1)}), "unexpected tensor 'lm_head.delta'"),
    (lambda t: t.update({"model.layers.0.self_attn.beta_proj": torch.zeros(1, 64)}),
     r"beta_proj has shape \(1, 64\)"),
    (lambda t: t.update({"model.layers.0.self_attn.delta_k_proj": torch.ones(32, 8)}),
     "delta_k_proj is not zero"),
    (lambda t: t.update({"model.layers.1.self_attn.delta_v_proj": torch.zeros(32, 9)}),
     r"delta_v_proj has shape \(32, 9\)"),
    (lambda t: t.update({"model.layers.0.self_attn.beta_bias": torch.zeros(8, dtype=torch.int64)}),
     "not floating point"),
])
def test_tensors_that_do_not_match_their_config_are_refused(tmp_path, backbone, edit, match):
    tensors = tensors_with(backbone, edit, delta_heads=["q", "o"])
    with pytest.raises(OfficialAdapterError, match=match):
        convert_official(folder(tmp_path, backbone, tensors=tensors, delta_heads=["q", "o"]),
                         tmp_path / "out", backbone)


def test_layers_must_match_their_config_and_the_backbone(tmp_path, backbone):
    tensors = official_tensors(backbone, official_config())
    one = {k: v for k, v in tensors.items() if k.startswith("model.layers.1.")}
    with pytest.raises(OfficialAdapterError, match="target_layers"):
        convert_official(folder(tmp_path, backbone, "a", tensors=one, target_layers=[0]),
                         tmp_path / "a_out", backbone)
    config = read_adapter(convert_official(folder(tmp_path, backbone, "b", tensors=one,
                                                  target_layers=[1]), tmp_path / "b_out", backbone))[0]
    assert config.target_layers == (1,)
    three = {**tensors, **{k.replace("layers.1.", "layers.2."): v for k, v in one.items()}}
    with pytest.raises(OfficialAdapterError, match="backbone has 2"):
        convert_official(folder(tmp_path, backbone, "c", tensors=three), tmp_path / "c_out", backbone)


def test_another_backbone_is_refused_and_nothing_is_written(tmp_path, backbone):
    src = folder(tmp_path, backbone)
    other = tiny_model("qwen3", hidden_size=32, head_dim=8)
    with pytest.raises(AdapterError, match="shapes differ"):
        convert_official(src, tmp_path / "out", other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_an_existing_folder_is_not_overwritten(tmp_path, backbone):
    src = folder(tmp_path, backbone)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(FileExistsError):
        convert_official(src, tmp_path / "out", backbone)
    assert (tmp_path / "out" / "keep.txt").read_text() == "mine"


def test_cli_converts_from_a_backbone_folder_and_reports_refusals(tmp_path, capsys):
    backbone_dir = tiny_backbone_dir("qwen3")
    from agentmem.model.backbones import load_backbone

    model = load_backbone(backbone_dir)[0]
    src = folder(tmp_path, model)
    assert main(["convert-official", str(src), "--backbone", backbone_dir, "--out",
                 str(tmp_path / "out"), "--numerics", "fp32"]) == 0
    config, _, meta = read_adapter(tmp_path / "out")
    assert (config.numerics, config.write_context) == ("fp32", "history")
    assert load_file(str(tmp_path / "out" / WEIGHTS_FILE))
    bad = folder(tmp_path, model, "bad", couple_lambda=False)
    assert main(["convert-official", str(bad), "--backbone", backbone_dir, "--out",
                 str(tmp_path / "bad_out")]) == 2
    assert "couple_lambda=False" in capsys.readouterr().err


def test_eval_loads_the_backbone_in_the_adapters_dtype(tmp_path):
    from agentmem.cli import _load_model
    from agentmem.model.backbones import load_backbone

    backbone_dir = tiny_backbone_dir("qwen3")
    src = folder(tmp_path, load_backbone(backbone_dir)[0])
    bf16 = convert_official(src, tmp_path / "bf16", backbone_dir)
    fp32 = convert_official(src, tmp_path / "fp32", backbone_dir, numerics="fp32")
    assert _load_model(backbone_dir, str(bf16), "cpu")[0].model.dtype == torch.bfloat16
    assert _load_model(backbone_dir, str(fp32), "cpu")[0].model.dtype == torch.float32
