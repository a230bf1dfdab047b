"""Latency per turn of one long conversation: δ-mem (window 4) vs the frozen backbone given the
whole history, on the default backbone (SmolLM2-135M-Instruct, fp32, CPU by default).

Usage: ``python benchmarks/turns.py [--turns 50] [--window 4] [--new-tokens 32] [--threads 2]``

- δ-mem: each turn is one ``invoke`` of the compiled memory-agent graph (SQLite store and
  SqliteSaver in a temporary folder): load the thread's memory, answer from the last ``window``
  messages while reading it, write the turn, save a memory checkpoint and a LangGraph checkpoint.
- frozen: the same backbone without δ-mem answers from the whole conversation so far (the prompt
  grows every turn; no cache is kept between turns, as with a stateless chat API).

Each user turn is 44-48 tokens (the issue asks for ≈40); answers are greedy, at most
``--new-tokens`` tokens. The two arms alternate turn by turn, so both see the same machine load.
Because one turn's latency on a shared machine is noisy, "turn k" below is the median of turns
k-4..k (k = 5: turns 3..7).
On a machine whose cores are shared with other work, pass ``--threads 1``: two OpenMP threads
that wait on a busy core can make a turn ten times slower. Writes
``benchmarks/results/turns.{json,md,png}`` and prints one JSON line last, with
``turn50_ratio`` (δ-mem ÷ frozen latency at the last turn; target ≤ 0.25) and ``flatness``
(δ-mem last turn ÷ turn 5; target ≤ 1.2).
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from langchain_core.messages import HumanMessage  # noqa: E402

from agentmem.model.backbones import DEFAULT_BACKBONE, load_backbone  # noqa: E402
from graphs import MemoryContext, build_memory_agent, sqlite_checkpointer  # noqa: E402

RESULTS = Path(__file__).parent / "results"
PEOPLE = ["my sister Lin", "my neighbour Tom", "my colleague Priya", "my uncle Bruno", "my friend Aiko"]
PLACES = ["Porto", "Lyon", "Oslo", "Kyoto", "Quito", "Tunis", "Perth", "Bergen"]
THINGS = ["a cello", "a red bicycle", "an old camera", "a sailing boat", "a tiny cactus", "a chess set"]


def user_turns(n: int, seed: int = 0) -> list[str]:
    """``n`` distinct user turns of about 40 tokens each (seeded)."""
    rng = random.Random(seed)
    return [f"Note {i + 1}: last week {rng.choice(PEOPLE)} travelled to {rng.choice(PLACES)} and "
            f"bought {rng.choice(THINGS)} for {rng.randint(10, 990)} euros. On the way back there was "
            f"a delay of {rng.randint(2, 59)} minutes, so please remember this for later."
            for i in range(n)]


class Frozen:
    """The frozen backbone answering from the whole conversation."""

    def __init__(self, new_tokens: int) -> None:
        self.model, self.tok = load_backbone(DEFAULT_BACKBONE)
        self.new_tokens, self.history = new_tokens, []

    @torch.no_grad()
    def turn(self, text: str) -> tuple[float, int, int]:
        """(seconds, prompt tokens, generated tokens) of one turn."""
        t = time.perf_counter()
        messages = [*self.history, {"role": "user", "content": text}]
        ids = self.tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt",
                                           return_dict=True)["input_ids"]
        out = self.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                  max_new_tokens=self.new_tokens, pad_token_id=self.tok.eos_token_id)
        answer = self.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
        seconds = time.perf_counter() - t
        self.history += [messages[-1], {"role": "assistant", "content": answer}]
        new = int((out[0, ids.shape[1]:] != self.tok.eos_token_id).sum())
        return seconds, ids.shape[1], new


class DeltaMem:
    """The memory-agent graph on the same backbone, persisted in a temporary SQLite file."""

    def __init__(self, folder: Path, window: int, new_tokens: int) -> None:
        db = folder / "turns.sqlite3"
        self.ctx = MemoryContext.open(str(db), window=window, max_new_tokens=new_tokens, device="cpu")
        self.ctx.repository.setup()
        self.saver = sqlite_checkpointer(db)
        self.graph = build_memory_agent(self.saver, context=self.ctx)
        self.config = {"configurable": {"thread_id": "bench"}}

    def turn(self, text: str) -> tuple[float, int, int]:
        t = time.perf_counter()
        out = self.graph.invoke({"messages": [HumanMessage(text)]}, self.config)
        seconds = time.perf_counter() - t
        usage = out["messages"][-1].usage_metadata
        return seconds, usage["input_tokens"], usage["output_tokens"]

    def close(self) -> None:
        self.saver.conn.close()
        self.ctx.repository.close()


def around(values: list[float], k: int) -> float:
    """Median of turns k-4..k (1-based; k = 5 uses turns 3..7, so the first turns are excluded)."""
    lo, hi = (2, 7) if k == 5 else (max(0, k - 5), k)
    return statistics.median(values[lo:hi])


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    texts = user_turns(args.turns)
    rows: dict[str, list[tuple[float, int, int]]] = {"delta_mem": [], "frozen": []}
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", "no δ-mem adapter ships")
        mem, frozen = DeltaMem(Path(tmp), args.window, args.new_tokens), Frozen(args.new_tokens)
        mem.turn("Hello!"), frozen.turn("Hello!")  # warm-up, not counted
        mem.graph.checkpointer.delete_thread("bench")
        mem.ctx.repository.delete_thread("assistant", "bench")
        frozen.history = []
        user_tokens = statistics.mean(len(frozen.tok(t)["input_ids"]) for t in texts)
        for i, text in enumerate(texts):
            rows["delta_mem"].append(mem.turn(text))
            rows["frozen"].append(frozen.turn(text))
            print(f"turn {i + 1:2d}: δ-mem {rows['delta_mem'][-1][0]:.2f} s "
                  f"({rows['delta_mem'][-1][1]} prompt tok), frozen {rows['frozen'][-1][0]:.2f} s "
                  f"({rows['frozen'][-1][1]} prompt tok)", flush=True)
        mem.close()
    return {**summarize(args, rows), "user_tokens_per_turn": round(user_tokens, 1)}


def summarize(args: argparse.Namespace, rows: dict[str, list[tuple[float, int, int]]]) -> dict[str, Any]:
    sec = {k: [r[0] for r in v] for k, v in rows.items()}
    last = args.turns
    return {
        "turn50_ratio": round(around(sec["delta_mem"], last) / around(sec["frozen"], last), 4),
        "flatness": round(around(sec["delta_mem"], last) / around(sec["delta_mem"], 5), 4),
        "turns": last, "window": args.window, "new_tokens": args.new_tokens,
        "delta_mem_turn5_s": round(around(sec["delta_mem"], 5), 4),
        "delta_mem_last_s": round(around(sec["delta_mem"], last), 4),
        "frozen_turn5_s": round(around(sec["frozen"], 5), 4),
        "frozen_last_s": round(around(sec["frozen"], last), 4),
        "mean_generated": {k: round(statistics.mean(r[2] for r in v), 1) for k, v in rows.items()},
        "prompt_tokens_last": {k: v[-1][1] for k, v in rows.items()},
        "seconds": {k: [round(s, 4) for s in v] for k, v in sec.items()},
        "threads": args.threads, "torch": torch.__version__, "machine": platform.processor() or
        platform.machine(), "backbone": DEFAULT_BACKBONE,
    }


def write_outputs(result: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "turns.json").write_text(json.dumps(result, indent=1, ensure_ascii=False) + "\n")
    turns = range(1, result["turns"] + 1)
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(turns, result["seconds"]["frozen"], label="frozen backbone, full history", color="tab:red")
    ax.plot(turns, result["seconds"]["delta_mem"], label=f"δ-mem, window {result['window']}",
            color="tab:blue")
    ax.set(xlabel="turn", ylabel="latency per turn (s)", ylim=(0, None),
           title=f"{result['backbone']}, CPU ({result['threads']} thread(s)), "
                 f"{result['new_tokens']} new tokens per answer")
    ax.legend()
    fig.tight_layout()
    fig.savefig(RESULTS / "turns.png", dpi=110)
    lines = ["| turn | δ-mem (s) | frozen, full history (s) |", "|---:|---:|---:|"]
    for k in [1, 5, 10, 20, 30, 40, 50]:
        if k <= result["turns"]:
            lines.append(f"| {k} | {result['seconds']['delta_mem'][k - 1]:.2f} | "
                         f"{result['seconds']['frozen'][k - 1]:.2f} |")
    lines.append(f"\nturn50_ratio {result['turn50_ratio']} (target ≤ 0.25), flatness "
                 f"{result['flatness']} (target ≤ 1.2); medians of 5 turns, see benchmarks/turns.py; "
                 f"CPU, {result['threads']} torch thread(s), torch {result['torch']}")
    (RESULTS / "turns.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--turns", type=int, default=50)
    p.add_argument("--window", type=int, default=4)
    p.add_argument("--new-tokens", type=int, default=32)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.turns < 7:
        p.error("--turns must be at least 7 (turn 5 is the median of turns 3..7)")
    result = run(args)
    write_outputs(result)
    keys = ("turn50_ratio", "flatness", "delta_mem_turn5_s", "delta_mem_last_s", "frozen_last_s",
            "mean_generated")
    print(json.dumps({k: result[k] for k in keys}, ensure_ascii=False))


if __name__ == "__main__":
    main()
