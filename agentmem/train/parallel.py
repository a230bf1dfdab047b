"""Data-parallel training: the processes of a launch (``torchrun``, ``accelerate launch``) share
each step's batch.

Every process draws the same global batch (it depends only on the seed and the step) and keeps
the rows ``b`` with ``b % world == rank``. Each loss term is a mean over some units (rows, answer
tokens, gates), so a process adds up its own units' terms and divides by the count over the whole
batch; summing the processes' gradients then gives exactly the one-process gradient of the
whole batch, and every process takes the same optimizer step. The sparsity term is a function of
the batch's mean gate, so each process uses its linearisation at the global mean, whose gradients
also add up to the exact one (docs/training.md#several-processes; `agentmem.train.loop.train_step`).

`Replicas` wraps accelerate's process group (gloo on CPUs, NCCL on GPUs). With one process it does
no communication at all and imports nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor

from agentmem.errors import UnsupportedLaunchError, require
from agentmem.model.devices import resolve_device

# launch settings of `accelerate launch` that would shard what agentmem keeps whole
SHARDING_LAUNCHES = {"ACCELERATE_USE_DEEPSPEED": "DeepSpeed", "ACCELERATE_USE_FSDP": "FSDP"}


def launch_world_size() -> int:
    """How many processes the launcher started (``WORLD_SIZE``; 1 without a launcher)."""
    raw = os.environ.get("WORLD_SIZE", "1").strip() or "1"
    try:
        world = int(raw)
    except ValueError:
        raise UnsupportedLaunchError(f"WORLD_SIZE={raw!r} is not a process count") from None
    if world < 1:
        raise UnsupportedLaunchError(f"WORLD_SIZE={world} is not a process count")
    return world


class Replicas:
    """This process's place among the training processes, and the collectives training needs.

    Build with `Replicas.start`; ``Replicas()`` is the single process (rank 0 of 1).
    """

    def __init__(self, accelerator: Any = None, device: torch.device | None = None) -> None:
        self.accelerator = accelerator
        self.rank = accelerator.process_index if accelerator is not None else 0
        self.world = accelerator.num_processes if accelerator is not None else 1
        self.device = device if device is not None else (
            accelerator.device if accelerator is not None else torch.device("cpu"))

    @classmethod
    def start(cls, device: str = "auto") -> Replicas:
        """Join the launch's process group (several processes) or resolve ``device`` (one).

        With several processes each takes the device accelerate assigns it (its local GPU, or
        the CPU), so ``device`` may only say auto, cpu or cuda.

        Raises:
            UnsupportedLaunchError: a DeepSpeed or FSDP launch, or a bad ``WORLD_SIZE``.
            ValueError: an unknown device, CUDA asked for where there is none, or one numbered
                device for several processes.
        """
        for key, name in SHARDING_LAUNCHES.items():
            if os.environ.get(key, "").lower() in ("1", "true", "yes"):
                raise UnsupportedLaunchError(
                    f"a {name} launch: agentmem trains a frozen backbone and an adapter of about "
                    "a megabyte, which it keeps whole in every process (plain data parallelism); "
                    "launch without the DeepSpeed/FSDP config (`accelerate launch "
                    "--multi_gpu --num_processes N`)")
        if launch_world_size() == 1:
            return cls(device=resolve_device(device))
        if device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"device={device!r}: with several processes each process takes its "
                             "own device; pass --device auto, cpu or cuda")
        if device == "cuda" and not torch.cuda.is_available():
            raise ValueError("device='cuda' but this torch sees no CUDA device")
        accelerate = require("accelerate", "train")
        cpu = device == "cpu" or not torch.cuda.is_available()
        try:
            accelerator = accelerate.Accelerator(cpu=cpu)
        except (ValueError, RuntimeError) as e:  # e.g. WORLD_SIZE set by hand, no launcher
            raise UnsupportedLaunchError(
                f"WORLD_SIZE={launch_world_size()} but the processes could not join one group "
                f"({e}); start them with `torchrun --nproc_per_node N -m agentmem.cli train …` "
                "or `accelerate launch --num_processes N -m agentmem.cli train …`") from e
        return cls(accelerator)

    @property
    def is_main(self) -> bool:
        """The process that writes checkpoints, logs, plots and the adapter."""
        return self.rank == 0

    def rows(self, n: int) -> list[int]:
        """This process's rows of an ``n``-row batch: every ``world``-th, from ``rank``."""
        return list(range(self.rank, n, self.world))

    def total(self, values: Tensor) -> Tensor:
        """The sum of ``values`` over the processes (float64 on the CPU; no autograd)."""
        values = values.detach().to(torch.float64)
        if self.world == 1:
            return values
        summed = self.accelerator.reduce(values.to(self.device), reduction="sum")
        return summed.cpu()

    def sum_gradients(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Replace each parameter's gradient by its sum over the processes (one collective)."""
        if self.world == 1:
            return
        params = list(params)
        flat = torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                          for p in params])
        flat = self.accelerator.reduce(flat, reduction="sum")
        at = 0
        for p in params:
            n = p.numel()
            p.grad = flat[at:at + n].view_as(p).clone()
            at += n

    def same_parameters(self, params: Iterable[torch.nn.Parameter]) -> None:
        """Give every process the main process's parameter values (after init or a resume)."""
        if self.world == 1:
            return
        from accelerate.utils import broadcast

        with torch.no_grad():
            for p in params:
                p.copy_(broadcast(p.detach().clone(), from_process=0))

    def wait(self) -> None:
        """Block until every process gets here."""
        if self.world > 1:
            self.accelerator.wait_for_everyone()

    def end(self) -> None:
        """Leave the process group (several processes)."""
        if self.world > 1:
            self.accelerator.wait_for_everyone()
            self.accelerator.end_training()
