"""`agentmem eval`: every regime (docs/design.md#evaluation-regimes) side by side on episodes.

Candidate accuracy scores each candidate by its length-normalised log-likelihood (mean log-prob
per reply token, end-of-turn marker included) as the assistant's reply. Memory regimes also run
the swap test: the history is written with the answer's value replaced by another candidate
(the prompt of a context regime still shows the original history); ``swap_follow`` is how often
the prediction becomes the written value, ``swap_baseline`` how often the unswapped prediction
already was that value (what ignoring memory would give).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from tqdm import tqdm

from agentmem.eval.metrics import bootstrap_ci, exact_match, locomo_score, token_f1
from agentmem.model.attach import DeltaMemModel
from agentmem.model.decoding import greedy_replies
from agentmem.model.history import HistoryWriter
from agentmem.model.prompts import MEMORY_REGIMES, REGIMES, ReadPrompt, fit_prompt, read_prompt
from agentmem.model.scoring import score_candidates
from agentmem.model.state import MemoryState
from agentmem.options import at_least, non_negative_float, option


def generate_answer(dm: DeltaMemModel, tokenizer: Any, prompt: ReadPrompt,
                    state: MemoryState | None, max_new_tokens: int = 32) -> str:
    """Greedy reply to the read prompt (writes off), through the chat model's decoding loop."""
    texts, _ = greedy_replies(dm, tokenizer, [prompt.messages],
                              state if prompt.uses_memory else None, max_new_tokens)
    return texts[0]


def _regimes(text: str) -> list[str]:
    names = [r for r in text.split(",") if r]
    bad = [r for r in names if r not in REGIMES]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a comma-separated subset of "
                                         f"{','.join(REGIMES)}")
    return names


@dataclass
class EvalOptions:
    """How `agentmem eval` runs the regimes; every field is also a CLI flag."""

    regimes: list[str] = option(help="comma-separated regimes to run side by side",
                                parse=_regimes, default_factory=lambda: list(REGIMES))
    window: int = option(4, help="messages the window regimes show", parse=at_least(0))
    bm25_k: int = option(4, help="turns the bm25 regime shows", parse=at_least(1))
    budget_tokens: int | None = option(2048, help="written tokens per episode, oldest turns "
                                       "dropped first", parse=at_least(1))
    generate: bool = option(True, help="skip the generated answers (EM/F1)")
    max_new_tokens: int = option(32, help="generated tokens per answer (default 32; 48 with "
                                 "--suite reply-harm)", parse=at_least(1))
    swap: bool = option(True, help="skip the swap test")
    gen_limit: int | None = option(None, help="generate (EM/F1) for the first N episodes only",
                                   parse=at_least(0))
    prompt_tokens: int = option(3072, help="cut shown history from the front beyond this many "
                                "prompt tokens", parse=at_least(1))
    max_minutes: float | None = option(None, help="stop after this many minutes and report the "
                                       "episodes done so far", parse=non_negative_float)


@dataclass
class Row:
    """One (episode, regime) outcome."""

    regime: str
    category: str
    episode: str | None = None  # the episode's id, so regime groups of two runs can be joined
    correct: float | None = None
    chance: float | None = None
    em: float | None = None
    f1: float | None = None
    swap_follow: float | None = None
    swap_base: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def protocol_options(opts: EvalOptions) -> dict[str, Any]:
    """The options that change what a regime's rows are (recorded in the results' meta, so
    `eval-merge` only joins folders evaluated the same way)."""
    return {"window": opts.window, "bm25_k": opts.bm25_k, "budget_tokens": opts.budget_tokens,
            "prompt_tokens": opts.prompt_tokens, "max_new_tokens": opts.max_new_tokens}


def parse_shard(text: str) -> tuple[int, int]:
    """``"K/N"`` (1 ≤ K ≤ N) → (K, N)."""
    k, sep, n = text.partition("/")
    if not sep or not k.isdigit() or not n.isdigit() or not 1 <= int(k) <= int(n):
        raise ValueError(f"shard={text!r}; expected K/N with 1 <= K <= N, e.g. 2/4")
    return int(k), int(n)


def shard_bounds(total: int, k: int, n: int) -> tuple[int, int]:
    """[start, end) of shard K of N over ``total`` episodes: a contiguous block, so bAbI questions
    of one story (and LoCoMo questions of one conversation) mostly stay together and share the
    history writer's prefix cache."""
    return (k - 1) * total // n, k * total // n


def swapped_history(ep: Any) -> tuple[list[dict[str, str]], str] | None:
    """The history with the answer's value replaced by another candidate (meta.swap), and that
    value; None when the episode has no swap."""
    swap = (ep.meta or {}).get("swap")
    if not swap or not ep.candidates:
        return None
    history = [dict(m) for m in ep.history]
    history[swap["turn"]]["content"] = swap["content"]
    return history, swap["value"]


def _predict(dm: DeltaMemModel, tok: Any, prompt: Any, ep: Any, state: Any) -> str:
    _, mean = score_candidates(dm, tok, prompt, ep.candidates, state)
    return ep.candidates[int(torch.argmax(mean))]


def evaluate_episode(dm: DeltaMemModel, tok: Any, ep: Any, opts: EvalOptions,
                     writer: HistoryWriter, generate: bool = True) -> list[Row]:
    needs_memory = any(r in MEMORY_REGIMES for r in opts.regimes)
    state = writer(ep.history) if needs_memory else None
    swapped = swapped_history(ep) if opts.swap and needs_memory else None
    swap_state = writer(swapped[0]) if swapped else None
    rows = []
    for regime in opts.regimes:
        prompt = fit_prompt(tok, read_prompt(regime, ep.history, ep.question, window=opts.window,
                                             bm25_k=opts.bm25_k), opts.prompt_tokens)
        row = Row(regime, ep.category or "all", episode=ep.id)
        if ep.candidates:
            pred = _predict(dm, tok, prompt, ep, state)
            row.correct, row.chance = float(pred == ep.answer), 1 / len(ep.candidates)
            if swapped and regime in MEMORY_REGIMES:
                row.swap_follow = float(_predict(dm, tok, prompt, ep, swap_state) == swapped[1])
                row.swap_base = float(pred == swapped[1])
        if opts.generate and generate:
            text = generate_answer(dm, tok, prompt, state, opts.max_new_tokens)
            cat = (ep.meta or {}).get("locomo_category")
            row.em = float(exact_match(text, ep.answer))
            row.f1 = locomo_score(text, ep.answer, cat) if cat else token_f1(text, ep.answer)
            row.extra["generated"] = text
        rows.append(row)
    return rows


def _ci(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    mean, lo, hi = bootstrap_ci(values, seed=0)
    return {"mean": mean, "lo": lo, "hi": hi}


def measured(row: Row) -> bool:
    """Whether the row holds a measurement (a generation-only episode past --gen-limit has none)."""
    return row.correct is not None or row.f1 is not None


def summarize(rows: list[Row]) -> dict[str, Any]:
    """Per regime (and per category inside it): means with 95 % bootstrap intervals over the rows
    that hold a measurement."""
    rows = [r for r in rows if measured(r)]
    out: dict[str, Any] = {}
    by_regime: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        by_regime[r.regime].append(r)
    for regime, rs in by_regime.items():
        out[regime] = group_summary(rs)
        cats: dict[str, list[Row]] = defaultdict(list)
        for r in rs:
            cats[r.category].append(r)
        out[regime]["categories"] = {c: group_summary(v) for c, v in sorted(cats.items())}
    return out


def group_summary(rs: list[Row]) -> dict[str, Any]:
    """Means with 95 % bootstrap intervals of one group of rows (a regime, a category, ...)."""
    pick = lambda attr: [getattr(r, attr) for r in rs if getattr(r, attr) is not None]  # noqa: E731
    chance = pick("chance")
    return {"n": len(rs), "mc_acc": _ci(pick("correct")),
            "chance": sum(chance) / len(chance) if chance else None,
            "em": _ci(pick("em")), "f1": _ci(pick("f1")),
            "swap_follow": _ci(pick("swap_follow")), "swap_baseline": _ci(pick("swap_base")),
            "n_swap": len(pick("swap_follow"))}


def evaluate(dm: DeltaMemModel, tok: Any, episodes: list[Any], opts: EvalOptions,
             progress: bool = True) -> tuple[dict[str, Any], list[Row]]:
    rows: list[Row] = []
    writer = HistoryWriter(dm, tok, opts.budget_tokens)
    deadline = time.monotonic() + opts.max_minutes * 60 if opts.max_minutes is not None else None
    for i, ep in enumerate(tqdm(episodes, desc="eval", disable=not progress)):
        if deadline is not None and time.monotonic() > deadline:
            break
        gen = opts.gen_limit is None or i < opts.gen_limit
        if not ep.candidates and not (gen and opts.generate):
            continue  # nothing to measure: no candidates to score, no reply to generate
        rows.extend(evaluate_episode(dm, tok, ep, opts, writer, generate=gen))
    return summarize(rows), rows
