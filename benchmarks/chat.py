"""Benchmark of DeltaMemChatModel on the default backbone (SmolLM2-135M-Instruct, CPU by default).

Usage: ``python benchmarks/chat.py [--device cpu] [--new-tokens 64] [--repeats 3] [--threads N]``

- ``batch8_speedup``: generated tokens per second of ``batch`` over 8 threads (one batched read
  pass and one batched write pass) ÷ the same 8 calls made one after another. Every call is a
  full turn: load memory, read pass, write pass, save. Greedy; both runs produce the same answers.
- ``first_token_ms``: median time from ``stream(...)`` to the first text chunk when the visible
  window (history + new message, rendered) is about 200 tokens; each repeat uses a new thread.

Writes ``benchmarks/results/chat.{json,md}`` and prints one JSON line last.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from langchain_core.messages import AIMessage, HumanMessage  # noqa: E402

from agentmem.chat.chat_model import DeltaMemChatModel  # noqa: E402

RESULTS = Path(__file__).parent / "results"
QUESTIONS = ["Explain how rainbows form.", "Describe the water cycle.", "Why is the sky blue?",
             "How do bees make honey?", "Explain what a computer does.",
             "Describe a day at the beach.", "How does a bicycle work?",
             "Why do leaves change colour in autumn?"]  # answers of typical chat length
FILLER = [("I planted tomatoes and basil in the garden this spring.", "That sounds lovely."),
          ("My sister Lin moved to Porto last year for work.", "Porto is a beautiful city."),
          ("Our dog Biscuit is four years old and loves the beach.", "Biscuit sounds like fun."),
          ("I am learning to play the cello in the evenings.", "The cello has a warm sound."),
          ("Next week I travel to Lyon to visit a glassblower.", "Enjoy the trip to Lyon.")]


def config(thread: str) -> dict[str, Any]:
    return {"configurable": {"thread_id": thread}}


def one_round(args: argparse.Namespace, r: int) -> tuple[float, float, bool]:
    """Tokens/s of 8 sequential turns and of one batch of the same 8 turns (fresh stores)."""
    threads = [f"r{r}-t{i}" for i in range(8)]
    seq_model, batch_model = make_model(args), make_model(args)
    t0 = time.perf_counter()
    seq = [seq_model.invoke(q, config=config(t)) for q, t in zip(QUESTIONS, threads, strict=True)]
    t1 = time.perf_counter()
    bat = batch_model.batch(QUESTIONS, [config(t) for t in threads])
    t2 = time.perf_counter()
    n_seq = sum(m.usage_metadata["output_tokens"] for m in seq)
    n_batch = sum(m.usage_metadata["output_tokens"] for m in bat)
    same = [m.content for m in seq] == [m.content for m in bat]
    return n_seq / (t1 - t0), n_batch / (t2 - t1), same


def batch_speedup(args: argparse.Namespace) -> dict[str, float]:
    """Median over repeats of sequential vs batched turns over 8 threads."""
    rounds = [one_round(args, r) for r in range(args.repeats)]
    seq_med = statistics.median(r[0] for r in rounds)
    batch_med = statistics.median(r[1] for r in rounds)
    return {"sequential_tokens_per_s": seq_med, "batch8_tokens_per_s": batch_med,
            "batch8_speedup": batch_med / seq_med,
            "batch_answers_equal_sequential": all(r[2] for r in rounds)}


def window_messages(model: DeltaMemChatModel, target: int) -> tuple[list, int]:
    """History + a new question whose rendered prompt first reaches ``target`` tokens."""
    backend, messages = model._backend(), []
    for i in range(100):
        final = [*messages, HumanMessage(QUESTIONS[0])]
        dicts = [{"role": "user" if m.type == "human" else "assistant", "content": m.content}
                 for m in final]
        n = len(backend.render_prompt(dicts))
        if n >= target:
            return final, n
        user, ai = FILLER[i % len(FILLER)]
        messages += [HumanMessage(user), AIMessage(ai)]
    raise AssertionError("filler too short")


def first_token(args: argparse.Namespace) -> dict[str, float]:
    model = make_model(args)
    messages, n_prompt = window_messages(model, 200)
    times = []
    for r in range(args.repeats * 3):
        t0 = time.perf_counter()
        for chunk in model.stream(messages, config=config(f"ft-{r}")):
            if chunk.content:
                times.append((time.perf_counter() - t0) * 1000)
                break
    return {"first_token_ms": statistics.median(times), "first_token_prompt_tokens": n_prompt,
            "first_token_ms_min": min(times)}


def make_model(args: argparse.Namespace) -> DeltaMemChatModel:
    return DeltaMemChatModel(max_tokens=args.new_tokens, device=args.device)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1: steadier on a shared CPU)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="no δ-mem adapter ships")
    warm = make_model(args)
    warm.invoke("Hello")  # load the backbone once (shared by every instance below)
    warm.batch(["Hello", "Hi"])
    results = {**batch_speedup(args), **first_token(args)}
    meta = {"backbone": warm.backbone, "device": args.device, "torch_threads": torch.get_num_threads(),
            "new_tokens": args.new_tokens, "repeats": args.repeats, "platform": platform.platform()}
    payload = {**results, "meta": meta}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "chat.json").write_text(json.dumps(payload, indent=2) + "\n")
    rows = "\n".join(f"| {k} | {v:.3f} |" if isinstance(v, float) else f"| {k} | {v} |"
                     for k, v in results.items())
    (RESULTS / "chat.md").write_text(f"{json.dumps(meta)}\n\n| metric | value |\n|---|---:|\n{rows}\n")
    print(f"| metric | value |\n|---|---:|\n{rows}")
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
