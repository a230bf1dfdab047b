"""How each kind of message writes, how much of the asked fact's write is left, and whether the
question's read points at it.

    python scripts/write_gates.py --adapter DIR --data syn_test.jsonl --n 100

Writes each episode's history as the chat model does (one pass per turn, message-level writes)
and records the write gate β of every message (mean over layers, states and rows), grouped as
the turn stating the asked fact (``meta.fact_turn``), the other user turns, and the assistant's
replies. Since retention is tied to the gate (λ = 1 − β, docs/design.md#the-mechanism), every
later write scales the whole state down: ``kept`` is the mean over layers and rows of Π (1 − β)
over the messages written after the fact, i.e. the share of the fact's write that the decay alone
leaves at question time (the delta term's overwrites come on top). ``picked``: for each layer and
state, whether the mean memory query at the positions that predict the answer
(`agentmem.train.match`) has a larger dot product with the asked fact's key than with every other
message's key — the share of (layer, state) pairs where the read points at the asked fact, against
1 / messages if it pointed anywhere; and ``share``: |q̄ · k_fact| / Σ_m |q̄ · k_m|, the fact's part
of the key weights of the linear read (1 / messages when every key matches alike).
"""

from __future__ import annotations

import argparse
import statistics
import sys

import torch

from agentmem.data.episodes import read_jsonl
from agentmem.model.adapters import load_adapter
from agentmem.model.backbones import DEFAULT_BACKBONE, load_backbone
from agentmem.model.history import write_history
from agentmem.model.layer import DeltaMemLayer
from agentmem.train.match import reply_queries


def message_writes(dm, tok, episode) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # noqa: ANN001
    """β and k of every message of the history ([messages, layers, N, r] each) and the question's
    mean memory query per layer ([layers, N, r], as `agentmem train --match-weight` uses it)."""
    betas: list[torch.Tensor] = []
    keys: list[torch.Tensor] = []
    write_only = DeltaMemLayer.write_only

    def recording_write(self, x, S0, *, mask=None, pool=None):  # noqa: ANN001, ANN202
        S, beta, k = write_only(self, x, S0, mask=mask, pool=pool)
        betas.append(beta[0].detach().cpu())  # [messages of the turn, N, r]
        keys.append(k[0].detach().cpu())
        return S, beta, k

    DeltaMemLayer.write_only = recording_write
    try:
        with torch.no_grad():
            write_history(dm, tok, episode.history)
    finally:
        DeltaMemLayer.write_only = write_only
    with torch.no_grad():
        queries = reply_queries(dm, tok, [episode.question], [episode.answer])[0].cpu()
    L = len(dm.layer_indices)

    def per_message(seen: list[torch.Tensor]) -> torch.Tensor:  # turns in order, then messages
        return torch.cat([torch.stack(seen[i: i + L], dim=1) for i in range(0, len(seen), L)])

    gates, k = per_message(betas), per_message(keys)
    if gates.shape[0] != len(episode.history):
        raise RuntimeError(f"{gates.shape[0]} written messages for {len(episode.history)} "
                           "in the history")
    return gates, k, queries


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--adapter", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--backbone", default=DEFAULT_BACKBONE)
    ap.add_argument("--n", type=int, default=100, help="episodes (the first N)")
    args = ap.parse_args(argv)
    model, tok = load_backbone(args.backbone)
    dm = load_adapter(model, args.adapter)
    if dm.config.write_mode != "message":
        ap.error("the adapter writes per token; this script reads message-level gates")
    groups: dict[str, list[float]] = {"asked fact": [], "other user turns": [], "assistant": []}
    kept, later, picked, share, chance = [], [], [], [], []
    for e in read_jsonl(args.data)[: args.n]:
        turn = e.meta["fact_turn"]
        gates, k, q = message_writes(dm, tok, e)
        for i, m in enumerate(e.history):
            key = "asked fact" if i == turn else "other user turns" if m["role"] == "user" else "assistant"
            groups[key].append(gates[i].mean().item())
        kept.append((1 - gates[turn + 1:]).prod(dim=0).mean().item())
        later.append(len(e.history) - turn - 1)
        match = (k * q).sum(-1)  # [messages, layers, N]
        picked.append((match.argmax(0) == turn).float().mean().item())
        share.append((match[turn].abs() / match.abs().sum(0)).mean().item())
        chance.append(1 / len(e.history))
    print(f"{args.adapter}: {len(kept)} episodes\n")
    print("| messages | n | mean β |\n|---|---|---|")
    for key, values in groups.items():
        print(f"| {key} | {len(values)} | {statistics.fmean(values):.3f} |")
    print(f"\nmessages written after the asked fact: mean {statistics.fmean(later):.1f}; "
          f"share of its write the decay leaves at question time: mean {statistics.fmean(kept):.3f}, "
          f"median {statistics.median(kept):.3f}")
    print(f"the question's read points at the asked fact in {statistics.fmean(picked):.3f} of the "
          f"(layer, state) pairs; 1 / messages: {statistics.fmean(chance):.3f}")
    print(f"the asked fact's share of the read's key weights, |q̄ · k_fact| / Σ |q̄ · k_m|: "
          f"{statistics.fmean(share):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
