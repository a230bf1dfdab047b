"""Memory gain of an adapter on episodes: answer CE from the episode's own memory vs a neighbour's.

    python scripts/memory_gain.py --adapter runs/x/adapter --data syn_test.jsonl --n 64

Writes each batch's histories, reads every question memory-only from its own state and from the
previous row's state (another episode's history), and prints the mean answer CE of both and their
difference (``memory_gain``, nats per answer token; ``agentmem train`` logs the same probe):
near 0 when the memory only carries a prior, positive when it carries the episode's contents.
Episodes with a swap (``meta.swap``: the same history with the answer's value replaced) also
give ``swap_gain``: the answer's CE from the swapped history's state minus its own — the same
kind of value in the same words, so only a memory that carries the value itself shows a gain.
Works on training checkpoints too (a checkpoint folder is an adapter folder).
"""

from __future__ import annotations

import argparse
import json

import torch

from agentmem.data.episodes import read_jsonl
from agentmem.eval.regimes import swapped_history
from agentmem.model.adapters import load_adapter
from agentmem.model.backbones import DEFAULT_BACKBONE, load_backbone
from agentmem.model.history import write_histories_grad
from agentmem.model.prompts import read_prompt
from agentmem.model.scoring import answer_loss
from agentmem.train.loop import neighbour_ce


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--adapter", required=True)
    p.add_argument("--data", required=True)
    p.add_argument("--backbone", default=DEFAULT_BACKBONE)
    p.add_argument("--n", type=int, default=64, help="episodes (the first N)")
    p.add_argument("--batch-size", type=int, default=8)
    args = p.parse_args(argv)
    model, tok = load_backbone(args.backbone)
    dm = load_adapter(model, args.adapter)
    episodes = read_jsonl(args.data)[: args.n]
    own, other, n = 0.0, 0.0, 0
    swap_own, swap_other, n_swap = 0.0, 0.0, 0
    with torch.no_grad():
        for i in range(0, len(episodes), args.batch_size):
            batch = episodes[i: i + args.batch_size]
            state, _ = write_histories_grad(dm, tok, [e.history for e in batch])
            prompts = [read_prompt("memory-only", e.history, e.question) for e in batch]
            ce = answer_loss(dm, tok, prompts, [e.answer for e in batch], state).cpu()
            rows = [j for j in range(len(batch)) if batch[j - 1] is not batch[j]]
            if rows:  # a batch of one has no neighbour
                own += ce[rows].sum().item()
                other += neighbour_ce(dm, tok, batch, rows, state).sum().item()
                n += len(rows)
            swaps = [(j, swapped_history(e)) for j, e in enumerate(batch)]
            swaps = [(j, s[0]) for j, s in swaps if s is not None]
            if swaps:
                rows = [j for j, _ in swaps]
                swapped, _ = write_histories_grad(dm, tok, [h for _, h in swaps])
                ce_swap = answer_loss(dm, tok, [prompts[j] for j in rows],
                                      [batch[j].answer for j in rows], swapped).cpu()
                swap_own += ce[rows].sum().item()
                swap_other += ce_swap.sum().item()
                n_swap += len(rows)
    if not n:
        p.error("no batch had two different episodes")
    out = {"n": n, "ce_own_memory": round(own / n, 4), "ce_other_memory": round(other / n, 4),
           "memory_gain": round((other - own) / n, 4)}
    if n_swap:
        out.update({"n_swap": n_swap, "ce_swapped_memory": round(swap_other / n_swap, 4),
                    "swap_gain": round((swap_other - swap_own) / n_swap, 4)})
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
