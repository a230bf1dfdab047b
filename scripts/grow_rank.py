"""Grow a trained adapter's state to a larger rank, keeping what it computes.

    python scripts/grow_rank.py --adapter DIR --rank 16 --out DIR2

Each of the N states goes from r×r to R×R. The old rows of W_q, W_k, W_v, W_β, b_β and the old
columns of U keep their values; the correction scale s = alpha / rank is kept (alpha grows with
the rank). The new dimensions start so that the grown adapter computes what the old one did:

- U's new columns are zero, so the new read-out dimensions change no output yet;
- W_v's new rows are drawn like a fresh adapter's, so U's new columns get a gradient;
- W_q's and W_k's new rows are ``--eps`` × a fresh draw: tiny, so queries and keys barely
  move, but not zero (at zero, the new query and key dimensions have no gradient: each one's
  gradient goes through the other);
- W_β's new rows are zero and their b_β is the mean of the state's old b_β.

Then continue training with ``agentmem train --init-adapter DIR2``: this is how a many-fact
adapter gets more key dimensions without learning again what it already knows.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import Tensor

from agentmem.model.adapters import read_adapter, write_adapter
from agentmem.model.config import DeltaMemConfig


def grow(config: DeltaMemConfig, tensors: dict[str, Tensor], rank: int, eps: float = 0.05,
         seed: int = 0) -> tuple[DeltaMemConfig, dict[str, Tensor]]:
    """The config and tensors of ``config``'s adapter grown to ``rank`` (see the module doc)."""
    N, r = config.num_states, config.rank
    if rank <= r:
        raise ValueError(f"--rank {rank} does not grow this adapter (its rank is {r})")
    if not eps >= 0:
        raise ValueError(f"eps={eps!r}; expected >= 0")
    gen = torch.Generator().manual_seed(seed)

    def draw(*shape: int, bound: float) -> Tensor:
        return torch.empty(*shape).uniform_(-bound, bound, generator=gen)

    out: dict[str, Tensor] = {}
    for name, t in tensors.items():  # the file's order: the draws are reproducible
        t = t.float()
        if name.endswith("delta_mem_w_in"):  # rows [W_q; W_k; W_v; W_β], each N·r
            d = t.shape[1]
            w = torch.zeros(4, N, rank, d)
            w[:, :, :r] = t.view(4, N, r, d)
            w[0:2, :, r:] = eps * draw(2, N, rank - r, d, bound=d**-0.5)
            w[2, :, r:] = draw(N, rank - r, d, bound=d**-0.5)
            out[name] = w.reshape(4 * N * rank, d)
        elif name.endswith("delta_mem_b_beta"):
            old = t.view(N, r)
            b = old.mean(dim=1, keepdim=True).repeat(1, rank)
            b[:, :r] = old
            out[name] = b.reshape(N * rank)
        elif ".delta_mem_u." in name:
            u = torch.zeros(t.shape[0], N, rank)
            u[:, :, :r] = t.view(t.shape[0], N, r)
            out[name] = u.reshape(t.shape[0], N * rank)
        else:
            raise ValueError(f"unknown adapter tensor {name!r}")
    grown = DeltaMemConfig.from_dict({**config.to_dict(), "rank": rank,
                                      "alpha": config.alpha * rank / r})
    return grown, {k: v.contiguous() for k, v in out.items()}


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", required=True, type=Path)
    ap.add_argument("--rank", required=True, type=int)
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--eps", type=float, default=0.05, help="scale of the new W_q, W_k rows")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.out.exists() and any(args.out.iterdir()):
        ap.error(f"--out {args.out} exists and is not empty")
    config, tensors, meta = read_adapter(args.adapter)
    try:
        grown, out = grow(config, tensors, args.rank, args.eps, args.seed)
    except ValueError as e:
        ap.error(str(e))
    write_adapter(args.out, grown, out, meta["backbone_id"])
    _, _, written = read_adapter(args.out)  # checks the folder it wrote
    print(f"{args.out}: rank {config.rank} -> {grown.rank}, {grown.num_states} states, "
          f"fingerprint {written['fingerprint'][:16]}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
