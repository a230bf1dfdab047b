"""Data-parallel training throughput: `agentmem train` on 1 process and on 2, side by side.

Both runs train the same global batches (synthetic train-split episodes made in-process,
memory-only views) from the same start, launched with ``torchrun --nproc_per_node N`` on the same
cores (each of N processes gets threads/N torch threads, so both use the whole machine). A run's
step time is read from its training log (the first step, which pays one-off costs, is left out);
runs are interleaved across repeats and the figure per process count is the fastest repeat (load
on a shared machine only ever adds time). Tokens per step are the written history tokens plus the
read pass's prompt and answer tokens of the batches the runs draw. Last line: JSON with
``steps_per_s_1``, ``steps_per_s_2``, ``tokens_per_s_1``, ``tokens_per_s_2`` and
``scaling_2_over_1`` (steps/s of 2 processes ÷ of 1; the ideal on a machine with a core or GPU per
process is 2).

Usage: python benchmarks/train_step.py [--steps 5] [--batch-size 4] [--repeats 2] [--threads 2]
       [--backbone NAME_OR_DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from agentmem.data.episodes import write_jsonl
from agentmem.data.synthetic import generate
from agentmem.model.backbones import DEFAULT_BACKBONE, load_backbone
from agentmem.model.chat_template import encode_chat
from agentmem.model.history import encode_turns
from agentmem.model.prompts import read_prompt
from agentmem.train.loop import draw_batch

ROOT = Path(__file__).resolve().parents[1]
SEED, BUDGET = 0, 2048


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(processes: int, threads: int, data: Path, out: Path, args: argparse.Namespace) -> list[float]:
    """Train ``args.steps`` steps on ``processes`` processes; the step times after the first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ACCELERATE_", "MASTER_"))}
    env["OMP_NUM_THREADS"] = str(max(1, threads // processes))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
           "--master_addr", "127.0.0.1", "--master_port", str(free_port()),
           "-m", "agentmem.cli", "train", "--data", str(data), "--out", str(out),
           "--backbone", args.backbone, "--device", "cpu", "--steps", str(args.steps),
           "--batch-size", str(args.batch_size), "--context-views", "0", "--probe-every", "0",
           "--save-every", str(args.steps), "--budget-tokens", str(BUDGET), "--seed", str(SEED)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{processes}-process run failed:\n{done.stderr[-3000:]}")
    rows = [json.loads(r) for r in (out / "train_log.jsonl").read_text().splitlines() if r]
    times = [b["elapsed_s"] - a["elapsed_s"] for a, b in zip(rows, rows[1:], strict=False)]
    return times


def tokens_per_step(episodes: list, tokenizer, steps: int, batch_size: int) -> float:
    """Mean written + read tokens of the batches steps 2..steps draw (as `train_step` does)."""
    total = 0
    for step in range(1, steps):
        drawn = draw_batch(random.Random(SEED * 1_000_003 + step), len(episodes), batch_size)
        for i in drawn:
            e = episodes[i]
            total += sum(len(t.input_ids) for t in encode_turns(tokenizer, e.history, BUDGET))
            prompt = read_prompt("memory-only", e.history, e.question).messages
            total += len(encode_chat(tokenizer, [*prompt, {"role": "assistant",
                                                           "content": e.answer}]).input_ids)
    return total / max(1, steps - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2, help="torch threads over all processes")
    ap.add_argument("--backbone", default=DEFAULT_BACKBONE)
    args = ap.parse_args()
    if args.steps < 2 or args.batch_size < 2:
        ap.error("--steps and --batch-size must be at least 2")
    episodes = generate("train", 64, seed=SEED)
    _, tokenizer = load_backbone(args.backbone)
    per_step = tokens_per_step(episodes, tokenizer, args.steps, args.batch_size)
    best: dict[int, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "train.jsonl"
        write_jsonl(data, episodes)
        for r in range(args.repeats):
            for n in (1, 2):
                times = run(n, args.threads, data, Path(tmp) / f"run-{n}-{r}", args)
                mean = sum(times) / len(times)
                best[n] = min(best.get(n, mean), mean)
                print(f"repeat {r + 1}, {n} process(es): {mean:.2f} s/step", file=sys.stderr)
    print(f"{'processes':>10} {'s/step':>8} {'steps/s':>8} {'tokens/s':>9}")
    for n in (1, 2):
        print(f"{n:>10} {best[n]:8.2f} {1 / best[n]:8.3f} {per_step / best[n]:9.0f}")
    print(f"batch {args.batch_size}, {per_step:.0f} tokens/step, {args.threads} threads in all; "
          f"scaling (steps/s, 2 ÷ 1): {best[1] / best[2]:.2f}")
    print(json.dumps({"steps_per_s_1": round(1 / best[1], 4), "steps_per_s_2": round(1 / best[2], 4),
                      "tokens_per_s_1": round(per_step / best[1], 1),
                      "tokens_per_s_2": round(per_step / best[2], 1),
                      "scaling_2_over_1": round(best[1] / best[2], 3),
                      "batch_size": args.batch_size, "steps": args.steps, "threads": args.threads,
                      "backbone": args.backbone}))


if __name__ == "__main__":
    main()
