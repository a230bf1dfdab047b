"""Where the backbone runs: ``auto`` picks CUDA when it is there, else the CPU.

`agentmem eval` is one process on one device: it runs unchanged under a single-process
``accelerate launch`` (or ``torchrun --nproc-per-node 1``). A multi-process launch is refused
here, since every process would run the whole evaluation and write the same files; `agentmem eval
--shard K/N` splits an evaluation across processes instead. `agentmem train` is data parallel
under a launcher (`agentmem.train.parallel`) and resolves its devices there.
"""

from __future__ import annotations

import os

import torch

from agentmem.errors import UnsupportedLaunchError


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` → a usable `torch.device`.

    Raises:
        ValueError: an unknown spec, or CUDA asked for where none is available.
        UnsupportedLaunchError: a launcher started several processes (``WORLD_SIZE`` > 1).
    """
    world = os.environ.get("WORLD_SIZE", "1").strip() or "1"
    if world != "1":
        raise UnsupportedLaunchError(
            f"WORLD_SIZE={world}: this command runs one process on one device (only `agentmem "
            "train` is data parallel); launch it with `accelerate launch --num_processes 1` (or "
            "without a launcher), and split an evaluation with `agentmem eval --shard K/N` instead")
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as e:
        raise ValueError(f"device={spec!r}: expected auto, cpu, cuda or cuda:N") from e
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={spec!r}: expected auto, cpu, cuda or cuda:N")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={spec!r} but this torch sees no CUDA device")
    return device
