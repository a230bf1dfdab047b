"""Convert an adapter released by the δ-mem authors (github.com/declare-lab/delta-Mem) into an
agentmem adapter folder (docs/official_adapters.md).

Their folder holds ``delta_mem_config.json`` (their config dataclass, ~50 options) and
``delta_mem_adapter.pt`` (``torch.save`` of ``model.layers.{i}.self_attn.{name}`` -> tensor,
bf16). The ``.pt`` is read with ``torch.load(weights_only=True)``: tensors and plain containers
only, so a file holding any other object is refused instead of being unpickled. Every option
whose value changes the computation must be at the value agentmem implements; the converted
folder is then checked by loading it into the backbone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import re
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from agentmem.errors import AgentMemError, OfficialAdapterError
from agentmem.errors import UnsupportedOfficialOptionError as Unsupported
from agentmem.model.adapters import load_adapter, write_adapter
from agentmem.model.backbones import backbone_id, decoder_layers, load_backbone, spec_for
from agentmem.model.config import BRANCHES, DeltaMemConfig

OFFICIAL_CONFIG = "delta_mem_config.json"
OFFICIAL_WEIGHTS = "delta_mem_adapter.pt"
SOURCE = "declare-lab/delta-Mem"
_KEY = re.compile(r"model\.layers\.(\d+)\.self_attn\.(\w+)")
# Per layer: their name -> where it goes ("w_in" rows are stacked W_q; W_k; W_v; W_β as ours).
_W_IN = ("memory_q_proj", "memory_k_proj", "memory_v_proj", "beta_proj")
_TENSORS = (*_W_IN, "beta_bias", "delta_q_proj", "delta_k_proj", "delta_v_proj", "delta_o_proj")

# Their options that change the computation, at the one value agentmem implements (their defaults).
REQUIRED: dict[str, Any] = {
    "normalize_qk": True, "couple_lambda": True, "state_update_mode": "standard",
    "rankwise_gates": True, "num_memory_partitions": 1, "num_global_memory_partitions": 0,
    "memory_partition_routing": "soft", "memory_partition_basis": "shared",
    "tie_memory_partition_read_write": False, "memory_partition_read_mode": "softmax",
    "slot_read_top_k": 0, "global_memory_mode": "shared_rw", "global_memory_read_top_k": 0,
    "global_memory_merge_mode": "gated_residual", "memory_reader_layers": [],
    "memory_readout_mode": "delta", "memory_write_source": "learned_hidden",
    "memory_write_proposals_per_message": 2, "synthetic_memory_slots": 1,
    "latent_memory_layers": [], "target_modules": ["self_attn"], "delta_o_rmsnorm": False,
    "trainable_delta_scale": False,
}
# Options that only set initial values, or configure a feature REQUIRED switches off: a trained
# adapter computes the same whatever they say.
INERT = frozenset({
    "output_init", "base_slice_ref_width", "online_gain", "memory_partition_sigmoid_gate_bias_init",
    "global_memory_gate_bias_init", "global_memory_read_logit_bias", "memory_reader_hidden_size",
    "memory_reader_residual_scale", "memory_reader_read_only", "latent_memory_hidden_size",
    "latent_memory_residual_scale", "latent_memory_slots", "latent_memory_init_std",
    "latent_gate_init", "delta_o_rmsnorm_eps", "delta_scale_init", "delta_scale_max",
    "delta_scale_granularity", "delta_scale_parameterization",
})
# Options translated into DeltaMemConfig, with their defaults (a missing option takes it, as in
# their loader).
TRANSLATED: dict[str, Any] = {
    "rank": 8, "alpha": 16.0, "beta_bias_init": -1.5, "num_state_heads": 1,
    "memory_write_granularity": "token", "target_layers": [], "delta_heads": list(BRANCHES),
}
WRITE_MODES = {"token": "token", "message_mean": "message"}  # their granularity -> write_mode
# Protocol options of a converted adapter (DeltaMemConfig fields; the CLI's defaults): the
# authors' evaluation protocol; generation_writes=True gives their chat session's read pass.
FAITHFUL = {"numerics": "bf16", "write_context": "history", "message_span": "template",
            "generation_writes": False}
LICENCE_NOTE = (f"Weights converted from an adapter released by the δ-mem authors ({SOURCE}). "
                "They stay under the licence of that release (see its model card); agentmem's "
                "licence covers the conversion code only.")


def convert_official(src: str | Path, out: str | Path, backbone: str | Path | nn.Module, *,
                     numerics: str = FAITHFUL["numerics"],
                     write_context: str = FAITHFUL["write_context"],
                     message_span: str = FAITHFUL["message_span"],
                     generation_writes: bool = FAITHFUL["generation_writes"]) -> Path:
    """Convert the authors' adapter folder ``src`` into an agentmem adapter folder ``out``.

    Args:
        src: folder with ``delta_mem_config.json`` and ``delta_mem_adapter.pt``.
        out: new folder (must not exist, or be empty).
        backbone: the backbone the adapter was trained for: a local HF folder (loaded on CPU in
            bf16) or a loaded model. Its content id goes into the adapter, and the converted
            folder is checked by loading it into it.
        numerics, write_context, message_span, generation_writes: protocol options of the
            converted config (DeltaMemConfig); the defaults reproduce the authors' evaluation
            protocol, ``generation_writes=True`` their chat session's read pass (token writes
            only). ``message_span`` applies to message-level (SSW) adapters only.

    Raises:
        UnsupportedOfficialOptionError: an option at a value agentmem does not implement.
        OfficialAdapterError: missing or unreadable files, an unsafe pickle, unexpected tensors
            or shapes, a switched-off correction that is not zero.
        AdapterError: the converted adapter does not fit ``backbone``.
        FileExistsError: ``out`` exists and is not empty.
    """
    src, out = Path(src), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty folder")
    official, text = read_official_config(src)
    tensors = read_official_weights(src / OFFICIAL_WEIGHTS)
    model = backbone if isinstance(backbone, nn.Module) else \
        load_backbone(str(backbone), dtype=torch.bfloat16)[0]
    spec_for(model)  # UnsupportedArchitectureError before any work
    layers = sorted(_layers_of(tensors))
    config = translate_config(official, layers, len(decoder_layers(model, spec_for(model))),
                              numerics=numerics, write_context=write_context,
                              message_span=message_span, generation_writes=generation_writes)
    ours = translate_tensors(tensors, official, config, layers)
    meta = {"source": SOURCE, "license_note": LICENCE_NOTE, "source_config": text,
            "source_sha256": json.dumps({OFFICIAL_CONFIG: _sha256(src / OFFICIAL_CONFIG),
                                         OFFICIAL_WEIGHTS: _sha256(src / OFFICIAL_WEIGHTS)})}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}-", dir=out.parent))
    try:
        write_adapter(tmp, config, ours, backbone_id(model), meta)
        load_adapter(model, tmp).detach()  # names, shapes and backbone must fit
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def read_official_config(src: Path) -> tuple[dict[str, Any], str]:
    """Their config as a dict (and its text), refusing unknown options."""
    try:
        text = (src / OFFICIAL_CONFIG).read_text()
        official = json.loads(text)
    except (OSError, ValueError) as e:
        raise OfficialAdapterError(f"cannot read {src / OFFICIAL_CONFIG}: {e}") from e
    if not isinstance(official, dict):
        raise OfficialAdapterError(f"{src / OFFICIAL_CONFIG} is not a JSON object")
    for name in sorted(official):
        if name not in REQUIRED and name not in INERT and name not in TRANSLATED:
            raise Unsupported(name, official[name], f"the options of {SOURCE}'s config it knows "
                              "(this one is new to it)")
    return official, json.dumps(official, sort_keys=True, separators=(",", ":"))


def read_official_weights(path: Path) -> dict[str, Tensor]:
    """Their tensors, loaded without unpickling anything but tensors and plain containers."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError, OSError,
            zipfile.BadZipFile) as e:
        raise OfficialAdapterError(f"{path} is not a plain state dict that loads with "
                                   f"torch.load(weights_only=True): {e}") from e
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, Tensor)
                                             for k, v in data.items()):
        raise OfficialAdapterError(f"{path} does not hold a dict of name -> tensor")
    bad = sorted(k for k, v in data.items() if not v.is_floating_point())
    if bad:
        raise OfficialAdapterError(f"{path}: tensors that are not floating point: {bad[:5]}")
    return data


def translate_config(official: dict[str, Any], layers: list[int], num_layers: int, *,
                     numerics: str, write_context: str, message_span: str,
                     generation_writes: bool = False) -> DeltaMemConfig:
    """Their config as a DeltaMemConfig for the layers the weights hold."""
    for name, want in REQUIRED.items():
        value = official.get(name, want)
        if _normalised(value) != _normalised(want):
            raise Unsupported(name, value, f"{name}={want!r} only")
    get = {name: official.get(name, default) for name, default in TRANSLATED.items()}
    granularity = _normalised(get["memory_write_granularity"])
    if granularity not in WRITE_MODES:
        raise Unsupported("memory_write_granularity", get["memory_write_granularity"],
                          f"one of {sorted(WRITE_MODES)}")
    heads = _heads(get["delta_heads"])
    try:
        wanted = sorted(int(i) for i in get["target_layers"] or [])
    except (TypeError, ValueError) as e:
        raise OfficialAdapterError(f"target_layers={get['target_layers']!r}: {e}") from e
    if wanted and wanted != layers:
        raise OfficialAdapterError(f"target_layers={wanted} but the weights hold layers {layers}")
    if not layers or layers[-1] >= num_layers:
        raise OfficialAdapterError(f"the weights hold layers {layers}; the backbone has "
                                   f"{num_layers}")
    write_mode = WRITE_MODES[granularity]
    try:
        return DeltaMemConfig(
            rank=get["rank"], num_states=get["num_state_heads"], write_mode=write_mode,
            branches=heads, target_layers=None if layers == list(range(num_layers)) else layers,
            alpha=float(get["alpha"]), beta_bias=float(get["beta_bias_init"]), init="zero",
            numerics=numerics, write_context=write_context,
            message_span=message_span if write_mode == "message" else "content",
            generation_writes=generation_writes)
    except ValueError as e:
        raise OfficialAdapterError(f"the authors' config does not translate: {e}") from e


def translate_tensors(tensors: dict[str, Tensor], official: dict[str, Any], config: DeltaMemConfig,
                      layers: list[int]) -> dict[str, Tensor]:
    """Their tensors under agentmem's names (``layers.{i}.delta_mem_*``), as fp32."""
    nr = config.num_states * config.rank
    out: dict[str, Tensor] = {}
    for i in layers:
        t = {name: tensors[f"model.layers.{i}.self_attn.{name}"].float() for name in _TENSORS}
        d = t["memory_q_proj"].shape[-1]
        for name in _W_IN:
            _check_shape(t, name, i, (nr, d))
        _check_shape(t, "beta_bias", i, (nr,))
        for b in BRANCHES:
            name = f"delta_{b}_proj"
            if t[name].dim() != 2 or t[name].shape[1] != nr:
                raise OfficialAdapterError(f"layer {i}: {name} has shape {tuple(t[name].shape)}, "
                                           f"expected [*, {nr}]")
            if b not in config.branches and bool(t[name].any()):
                raise OfficialAdapterError(f"layer {i}: {name} is not zero although "
                                           f"delta_heads={official.get('delta_heads')!r} leaves "
                                           f"{b!r} out; the file does not match its config")
        out[f"layers.{i}.delta_mem_w_in"] = torch.cat([t[name] for name in _W_IN])  # [4·N·r, d]
        out[f"layers.{i}.delta_mem_b_beta"] = t["beta_bias"]
        for b in config.branches:
            out[f"layers.{i}.delta_mem_u.{b}"] = t[f"delta_{b}_proj"]  # [out, N·r]
    return out


def _layers_of(tensors: dict[str, Tensor]) -> set[int]:
    """Layer indices of their tensors; every layer must hold exactly their nine tensors."""
    per_layer: dict[int, set[str]] = {}
    for key in tensors:
        m = _KEY.fullmatch(key)
        if m is None:
            raise OfficialAdapterError(f"unexpected tensor {key!r}: expected "
                                       "model.layers.{i}.self_attn.{name}")
        per_layer.setdefault(int(m[1]), set()).add(m[2])
    for i, names in sorted(per_layer.items()):
        if names != set(_TENSORS):
            raise OfficialAdapterError(f"layer {i}: missing {sorted(set(_TENSORS) - names)}, "
                                       f"unexpected {sorted(names - set(_TENSORS))} (an option "
                                       "this converter does not implement, e.g. lambda_proj)")
    return set(per_layer)


def _check_shape(t: dict[str, Tensor], name: str, layer: int, want: tuple[int, ...]) -> None:
    if tuple(t[name].shape) != want:
        raise OfficialAdapterError(f"layer {layer}: {name} has shape {tuple(t[name].shape)}, "
                                   f"expected {want} (num_state_heads × rank rows)")


def _heads(value: Any) -> tuple[str, ...]:
    items = value.split(",") if isinstance(value, str) else list(value)
    heads = [str(h).strip().lower() for h in items if str(h).strip()]
    if not heads or heads == ["none"]:
        raise Unsupported("delta_heads", value, "at least one corrected projection")
    bad = [h for h in heads if h not in BRANCHES]
    if bad:
        raise Unsupported("delta_heads", value, f"corrections of {BRANCHES}")
    return tuple(b for b in BRANCHES if b in heads)


def _normalised(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip().lower()
    if isinstance(value, (list, tuple)):
        return [_normalised(v) for v in value]
    return value


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def convert_official_options(p: argparse.ArgumentParser) -> None:
    """The flags of ``agentmem convert-official`` (its parser is made by ``agentmem.cli``)."""
    from agentmem.options import add_options

    p.add_argument("src", help=f"their adapter folder ({OFFICIAL_CONFIG} + {OFFICIAL_WEIGHTS})")
    p.add_argument("--backbone", required=True, help="local HF folder of the backbone it was "
                   "trained for (e.g. Qwen3-4B-Instruct-2507); nothing is downloaded")
    p.add_argument("--out", required=True, help="new adapter folder")
    add_options(p, DeltaMemConfig, only=tuple(FAITHFUL), defaults=FAITHFUL, helps={
        "numerics": "bf16 (default): as the authors' release (the backbone is served in bf16, the "
                    "state rounded to bf16 after every pass); fp32: agentmem's",
        "write_context": "history (default): the conversation is written as one sequence, as the "
                         "authors trained and evaluated; turn: a pass per turn",
        "message_span": "message-level adapters: template (default): a message's whole "
                        "chat-template span, as the authors; content: its content tokens",
        "generation_writes": "token-level adapters: write the conversation and each generated "
                             "token while answering, as the authors' chat session (the read "
                             "pass then shows the whole conversation)"})
    p.set_defaults(func=_convert)


def _convert(args: argparse.Namespace) -> int:
    try:
        folder = convert_official(args.src, args.out, args.backbone, numerics=args.numerics,
                                  write_context=args.write_context, message_span=args.message_span,
                                  generation_writes=args.generation_writes)
    except (AgentMemError, FileExistsError) as e:
        print(f"agentmem convert-official: {e}", file=sys.stderr)
        return 2
    print(f"converted {args.src} -> {folder}")
    return 0
