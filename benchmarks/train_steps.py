"""Training steps per minute on the default backbone: the replayed write path beside read-free
writes and cached write features (`agentmem train --cache-writes`), side by side in one run.

Each mode runs the same batches (synthetic train-split episodes made in-process, memory-only
views, the shipped adapter's weights): ``replay`` writes every turn through the backbone with the
memory read while writing (the protocol of adapters so far), ``replay-read-free`` the same with
``write_reads=False``, ``cached`` replays only the δ-mem writes from write features computed once
(the first pass over the episodes is timed separately as ``cache_fill_s``). Steps are interleaved
across modes, and the figure is the median step time. Last line: JSON.

Usage: python benchmarks/train_steps.py [--steps 4] [--batch-size 8] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time

import torch

from agentmem.data.synthetic import generate
from agentmem.model.adapters import load_adapter, shipped_adapter
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import DEFAULT_BACKBONE, load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.model.history import message_features, write_from_features, write_histories_grad
from agentmem.model.prompts import read_prompt
from agentmem.model.scoring import answer_loss


def step(dm, tok, batch, feats=None) -> float:
    t = time.perf_counter()
    if feats is None:
        state, beta = write_histories_grad(dm, tok, [e.history for e in batch], budget_tokens=2048)
    else:
        state, beta = write_from_features(dm, feats)
    prompts = [read_prompt("memory-only", e.history, e.question) for e in batch]
    loss = answer_loss(dm, tok, prompts, [e.answer for e in batch], state).mean()
    (loss + 0.01 * ((beta.mean() - 0.05) ** 2).mean()).backward()
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model, tok = load_backbone(DEFAULT_BACKBONE)
    dm = load_adapter(model, shipped_adapter(DEFAULT_BACKBONE))
    weights = {k: v.clone() for k, v in dm.adapter_state_dict().items()}
    base = dm.config.to_dict()
    dm.detach()
    configs = {"replay": DeltaMemConfig.from_dict(base),
               "replay-read-free": DeltaMemConfig.from_dict({**base, "write_reads": False})}
    episodes = generate("train", args.batch_size * args.steps, seed=0)
    rng = random.Random(0)
    batches = [rng.sample(episodes, args.batch_size) for _ in range(args.steps)]
    times: dict[str, list[float]] = {"replay": [], "replay-read-free": [], "cached": []}
    feats: dict[str, object] = {}
    cache_fill = 0.0
    for i, batch in enumerate(batches):
        for mode in ("replay", "replay-read-free", "cached"):
            dm = attach_delta_mem(model, configs.get(mode, configs["replay-read-free"]))
            dm.load_adapter_state_dict(weights)
            if mode == "cached":
                t = time.perf_counter()
                for e in batch:
                    if e.id not in feats:
                        feats[e.id] = message_features(dm, tok, e.history, budget_tokens=2048)
                cache_fill += time.perf_counter() - t
                elapsed = step(dm, tok, batch, [feats[e.id] for e in batch])
            else:
                elapsed = step(dm, tok, batch)
            if i:  # the first round pays one-off costs
                times[mode].append(elapsed)
            dm.detach()
    result = {mode: {"median_step_s": round(statistics.median(t), 3),
                     "steps_per_min": round(60 / statistics.median(t), 2)}
              for mode, t in times.items()}
    result["cache_fill_s_per_episode"] = round(cache_fill / len(feats), 3)
    result["cached_vs_replay"] = round(result["replay"]["median_step_s"]
                                       / result["cached"]["median_step_s"], 2)
    result["batch_size"], result["timed_steps"] = args.batch_size, args.steps - 1
    for mode in times:
        print(f"{mode:18s} {result[mode]['median_step_s']:7.2f} s/step  "
              f"{result[mode]['steps_per_min']:6.2f} steps/min")
    print(f"cached write features: {result['cache_fill_s_per_episode']:.2f} s per episode, once")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
