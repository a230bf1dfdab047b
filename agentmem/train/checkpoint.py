"""Training checkpoints without pickle: adapter + AdamW moments as safetensors, the rest JSON."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from agentmem.model.adapters import read_adapter, save_adapter
from agentmem.model.attach import DeltaMemModel

STATE_FILE = "trainer_state.json"
OPT_FILE = "optimizer.safetensors"


def save_checkpoint(folder: Path, dm: DeltaMemModel, opt: torch.optim.Optimizer,
                    trainer_state: dict[str, Any]) -> None:
    """Write atomically: a crash mid-save leaves the previous checkpoint intact."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".ckpt-", dir=folder.parent))
    try:
        save_adapter(dm, tmp)
        params = list(dm.parameters())
        tensors = {}
        for i, p in enumerate(params):
            for name, value in opt.state.get(p, {}).items():
                tensors[f"{i}.{name}"] = value.detach().cpu().contiguous()
        save_file(tensors, str(tmp / OPT_FILE))
        (tmp / STATE_FILE).write_text(json.dumps(trainer_state, indent=1, sort_keys=True))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def load_checkpoint(folder: Path, dm: DeltaMemModel, opt: torch.optim.Optimizer) -> dict[str, Any]:
    """Restore adapter weights and optimizer moments; returns the trainer state."""
    _, tensors, _ = read_adapter(folder)  # verifies the fingerprint
    dm.load_adapter_state_dict(tensors)
    saved = load_file(str(folder / OPT_FILE))
    for i, p in enumerate(dm.parameters()):
        state = {name.split(".", 1)[1]: v for name, v in saved.items()
                 if name.split(".", 1)[0] == str(i)}
        if state:
            opt.state[p] = {k: v.to(p.device) if k != "step" else v for k, v in state.items()}
    return json.loads((folder / STATE_FILE).read_text())
