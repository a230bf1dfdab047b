"""Adapter folders: ``delta_mem_config.json`` + ``delta_mem_adapter.safetensors`` (tensors only)."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from agentmem.errors import AdapterError
from agentmem.model.attach import DeltaMemModel, adapter_fingerprint, attach_delta_mem
from agentmem.model.config import DeltaMemConfig
from agentmem.model.layer import NUMERICS_DTYPES

CONFIG_FILE = "delta_mem_config.json"
WEIGHTS_FILE = "delta_mem_adapter.safetensors"
SHIPPED = Path(__file__).parents[1] / "adapters_shipped"  # agentmem/adapters_shipped


def save_adapter(dm: DeltaMemModel, folder: str | Path) -> Path:
    """Write the adapter of ``dm`` to ``folder``; returns the folder."""
    return write_adapter(folder, dm.config, dm.adapter_state_dict(), dm.backbone_id)


def write_adapter(folder: str | Path, config: DeltaMemConfig, tensors: dict[str, Tensor],
                  backbone_id: str, metadata: dict[str, str] | None = None) -> Path:
    """Write an adapter folder from its config and tensors (fingerprinted here); returns it.
    ``metadata`` adds text entries (e.g. where converted weights came from) to the file's header."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    meta = {**(metadata or {}), "format": "agentmem.adapter/1",
            "fingerprint": adapter_fingerprint(config, tensors), "backbone_id": backbone_id}
    save_file(tensors, str(folder / WEIGHTS_FILE), metadata=meta)
    (folder / CONFIG_FILE).write_text(config.to_json() + "\n")
    return folder


def adapter_config(folder: str | Path) -> DeltaMemConfig:
    """The config of an adapter folder, without reading its tensors (see `read_adapter`)."""
    try:
        return DeltaMemConfig.from_json((Path(folder) / CONFIG_FILE).read_text())
    except (OSError, ValueError) as e:
        raise AdapterError(f"cannot read adapter folder {folder}: {e}") from e


def backbone_dtype(folder: str | Path | None) -> torch.dtype:
    """The dtype to load a backbone in for the adapter in ``folder`` (None: no adapter): bf16
    for an adapter with bf16 numerics (the method authors' release), else fp32."""
    return NUMERICS_DTYPES[adapter_config(folder).numerics] if folder else torch.float32


def read_adapter(folder: str | Path) -> tuple[DeltaMemConfig, dict, dict[str, str]]:
    """(config, tensors, metadata) of an adapter folder, verified against its fingerprint."""
    folder = Path(folder)
    try:
        config = DeltaMemConfig.from_json((folder / CONFIG_FILE).read_text())
        tensors = load_file(str(folder / WEIGHTS_FILE))
        from safetensors import safe_open

        with safe_open(str(folder / WEIGHTS_FILE), "pt") as f:
            meta = f.metadata() or {}
    except (OSError, ValueError, SafetensorError) as e:
        raise AdapterError(f"cannot read adapter folder {folder}: {e}") from e
    if meta.get("format") != "agentmem.adapter/1":
        raise AdapterError(f"{folder / WEIGHTS_FILE} is not an agentmem adapter")
    if adapter_fingerprint(config, tensors) != meta.get("fingerprint"):
        raise AdapterError(f"adapter in {folder} fails its fingerprint check (corrupted or edited)")
    return config, tensors, meta


def load_adapter(model: nn.Module, folder: str | Path) -> DeltaMemModel:
    """Attach δ-mem to ``model`` with the adapter in ``folder``.

    Raises:
        AdapterError: unreadable folder, fingerprint failure, another backbone, or shapes that
            do not fit this model.
    """
    config, tensors, meta = read_adapter(folder)
    dm = attach_delta_mem(model, config)
    try:
        apply_adapter(dm, folder, tensors, meta)
    except AdapterError:
        dm.detach()
        raise
    return dm


def apply_adapter(dm: DeltaMemModel, folder: str | Path, tensors: dict, meta: dict[str, str]) -> None:
    """Copy an adapter's tensors (from `read_adapter`) into ``dm``, refusing another backbone's."""
    if meta.get("backbone_id") != dm.backbone_id:
        raise AdapterError(f"adapter {folder} was trained for backbone {meta.get('backbone_id')!r}"
                           f", this model is {dm.backbone_id!r}")
    dm.load_adapter_state_dict(tensors)


def shipped_adapter(backbone: str) -> Path | None:
    """Folder of the adapter shipped in the package for ``backbone``, if any."""
    folder = SHIPPED / backbone
    return folder if (folder / WEIGHTS_FILE).is_file() else None
