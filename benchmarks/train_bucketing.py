"""Training-step cost with and without `agentmem train --bucket-turns`, on the default backbone.

The write pass runs once per turn index for the whole batch, so a batch costs as many passes as
its longest history. On the mixture the GPU sitting of the curriculum candidate trained on (full
synthetic episodes, two-fact and one-fact ones: 24,000 / 8,000 / 8,000, built here by the
project's generator with the same knobs, fewer episodes), this times optimizer steps drawn both
ways, alternating step by step so both see the same machine load, and prints per-step seconds
(median and minimum), write passes per step, and as its last line JSON with ``speedup``
(unbucketed ÷ bucketed median seconds per step) and ``pass_ratio``.

Usage: python benchmarks/train_bucketing.py [--steps 8] [--batch-size 8] [--threads 1] [--device cpu]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from agentmem.data.synthetic import generate
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.train.loop import TrainConfig, train_step, turn_groups

MIXTURE = [  # (episodes, generator knobs): the curriculum candidate's data, a tenth of it
    (2400, dict(seed=21, facts=(1, 3), fillers=(0, 3), sessions=(1, 2), update_prob=0.25)),
    (800, dict(seed=13, facts=(1, 2), fillers=(0, 1), sessions=1, update_prob=0.1)),
    (800, dict(seed=12, facts=1, fillers=0, sessions=1, update_prob=0.0)),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=8, help="timed steps per arm (after one warm-up)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    episodes = [e for n, knobs in MIXTURE for e in generate("train", n, **knobs)]
    model, tok = load_backbone()
    dm = attach_delta_mem(model.to(args.device), DeltaMemConfig(write_mode="message", num_states=4))
    opt = torch.optim.AdamW(list(dm.parameters()), lr=0.0)  # lr 0: every step sees the same adapter
    cfg = TrainConfig(data=[], out="", batch_size=args.batch_size, memory_only_steps=10**9,
                      probe_every=0)
    arms = {"mixed": None, "bucketed": turn_groups(episodes, args.batch_size)}
    seconds: dict[str, list[float]] = {k: [] for k in arms}
    passes: dict[str, list[int]] = {k: [] for k in arms}
    for step in range(args.steps + 1):
        for name, groups in arms.items():
            t = time.perf_counter()
            row = train_step(dm, tok, episodes, step, cfg, opt, groups)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            if step:  # step 0 warms up
                seconds[name].append(time.perf_counter() - t)
                passes[name].append(row["write_passes"])
    print(f"{len(episodes)} episodes, batch {args.batch_size}, {args.steps} steps per arm, "
          f"{args.threads} thread(s), {args.device}")
    print("| arm | s/step median | s/step min | write passes/step |\n|---|---|---|---|")
    for name in arms:
        print(f"| {name} | {statistics.median(seconds[name]):.2f} | {min(seconds[name]):.2f} | "
              f"{statistics.mean(passes[name]):.1f} |")
    print(json.dumps({
        "speedup": round(statistics.median(seconds["mixed"]) / statistics.median(seconds["bucketed"]), 2),
        "pass_ratio": round(statistics.mean(passes["mixed"]) / statistics.mean(passes["bucketed"]), 2),
        "s_per_step": {k: round(statistics.median(v), 3) for k, v in seconds.items()},
    }))


if __name__ == "__main__":
    main()
