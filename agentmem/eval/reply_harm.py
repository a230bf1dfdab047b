"""Reply harm: what reading a memory does to the model's answers to requests it does not concern.

A case is an earlier conversation (written into memory, as served: one pass per turn) and an
ordinary request (:mod:`agentmem.data.ordinary`). With window W the prompt shows the last W
messages of that conversation and the request. Per case and window:

- the frozen model's greedy reply and the memory-reading model's greedy reply (both through
  `agentmem.model.decoding.greedy_replies`, the chat model's own decoding loop);
- ``delta_nats``: mean per-token NLL of the frozen reply under the memory-reading model minus
  under the frozen model (0 = unchanged), and ``kl``: mean per-token KL(frozen ‖ memory) over the
  same positions (the reply's tokens and its end-of-turn marker, unless the reply was cut by
  ``max_new_tokens``);
- ``collapsed``: the memory reply has ≤ 3 words while the frozen reply has > 8 (summaries give
  the share among the cases whose frozen reply has > 8 words);
- reply lengths in words (summaries give the ratio of the means, memory / frozen).
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from tqdm import tqdm

from agentmem.data.ordinary import prompts, small_talk
from agentmem.data.synthetic import generate as synthetic_episodes
from agentmem.eval.metrics import bootstrap_ci
from agentmem.model.attach import DeltaMemModel
from agentmem.model.decoding import greedy_replies
from agentmem.model.history import HistoryWriter
from agentmem.model.prompts import window_start
from agentmem.model.scoring import drop_cut_ends, kl_per_token, reply_batch, reply_logprobs
from agentmem.model.state import MemoryState

Message = dict[str, str]
COLLAPSED_WORDS, FULL_WORDS = 3, 8  # a reply of ≤ 3 words where the frozen one had > 8


@dataclass(frozen=True)
class HarmCase:
    """An earlier conversation held in memory and an unrelated request."""

    id: str
    history: list[Message]
    request: str
    kind: str  # the request's kind (`agentmem.data.ordinary.KINDS`)
    memory: str  # where the history comes from: "facts", "small talk", "babi"


@dataclass
class HarmRow:
    """One (case, window) outcome."""

    case: str
    window: int
    kind: str
    memory: str
    request: str
    frozen_reply: str
    memory_reply: str
    delta_nats: float
    kl: float
    frozen_words: int
    memory_words: int

    @property
    def collapsed(self) -> bool:
        return self.memory_words <= COLLAPSED_WORDS and self.frozen_words > FULL_WORDS


def harm_cases(split: str, n: int, seed: int = 0,
               stories: Sequence[list[Message]] = ()) -> list[HarmCase]:
    """``n`` cases of ``split``: requests from `agentmem.data.ordinary.prompts` paired in turn
    with synthetic-fact conversations, small talk and (when given) bAbI ``stories``, all of the
    same split, so no test request, topic, fact phrasing or chat line occurs in training.

    Raises:
        ValueError: For an unknown split or a negative ``n``.
    """
    requests = prompts(split, n, seed)
    per_source = -(-n // (3 if stories else 2))  # conversations each source needs
    facts = [e.history for e in synthetic_episodes(split, per_source, seed=seed, facts=(2, 4),
                                                   fillers=(0, 2), sessions=(1, 2))]
    chats = small_talk(split, per_source, seed)
    sources: list[tuple[str, Sequence[list[Message]]]] = [("facts", facts), ("small talk", chats)]
    if stories:
        sources.append(("babi", stories))
    cases = []
    for i, req in enumerate(requests):
        name, pool = sources[i % len(sources)]
        cases.append(HarmCase(f"harm-{split}-{seed}-{i:05d}", list(pool[(i // len(sources)) % len(pool)]),
                              req.text, req.kind, name))
    return cases


def babi_stories(episodes: Sequence[Any]) -> list[list[Message]]:
    """Distinct histories of bAbI episodes (questions of one story share prefixes: keep the
    longest of each story, i.e. drop a history that the next one extends)."""
    out: list[list[Message]] = []
    for e in episodes:
        h = list(e.history)
        if out and h[: len(out[-1])] == out[-1]:
            out[-1] = h
        elif h:
            out.append(h)
    return out


def visible(case: HarmCase, window: int) -> list[Message]:
    """The read prompt: the last ``window`` messages of the conversation and the request."""
    return case.history[window_start(len(case.history), window):] + \
        [{"role": "user", "content": case.request}]


def measure(dm: DeltaMemModel, tok: Any, cases: list[HarmCase], states: MemoryState, window: int,
            max_new_tokens: int = 48) -> list[HarmRow]:
    """Harm rows of a batch of cases with their written memories (``states``: one row per case)."""
    chats = [visible(c, window) for c in cases]
    B = len(cases)
    texts, cut = greedy_replies(dm, tok, chats + chats, _with_frozen_rows(dm, states), max_new_tokens)
    frozen, mem = texts[:B], texts[B:]
    ids, attn, tmask = reply_batch(tok, list(zip(chats, frozen, strict=True)))
    drop_cut_ends(tmask, cut[:B])
    with torch.no_grad():
        teacher = reply_logprobs(dm, ids, attn, tmask, None)
        student = reply_logprobs(dm, ids, attn, tmask, states)
    target = ids[tmask].to(teacher.device)
    nll_t = -teacher.gather(-1, target[:, None])[:, 0]
    nll_s = -student.gather(-1, target[:, None])[:, 0]
    kl = kl_per_token(teacher, student)
    row_of = torch.arange(B)[:, None].expand_as(tmask)[tmask].to(teacher.device)
    rows = []
    for b, c in enumerate(cases):
        sel = row_of == b
        rows.append(HarmRow(c.id, window, c.kind, c.memory, c.request, frozen[b], mem[b],
                            (nll_s[sel] - nll_t[sel]).mean().item(), kl[sel].mean().item(),
                            len(frozen[b].split()), len(mem[b].split())))
    return rows


def _with_frozen_rows(dm: DeltaMemModel, states: MemoryState) -> MemoryState:
    """2B rows: B zero states (the frozen model: a zero state reads nothing) then ``states``."""
    zero = dm.new_state(states.batch_size)
    return states.replace(tensors=torch.cat([zero.tensors.to(states.tensors), states.tensors]),
                          tokens_written=torch.cat([zero.tokens_written, states.tokens_written]))


def evaluate_harm(dm: DeltaMemModel, tok: Any, cases: list[HarmCase], windows: Sequence[int] = (0, 4),
                  *, batch_size: int = 8, max_new_tokens: int = 48, budget_tokens: int | None = 2048,
                  max_minutes: float | None = None, progress: bool = True) -> list[HarmRow]:
    """Harm rows of every case at every window (cases in batches; stops after ``max_minutes``,
    keeping whole batches)."""
    writer = HistoryWriter(dm, tok, budget_tokens)
    deadline = time.monotonic() + max_minutes * 60 if max_minutes is not None else None
    rows: list[HarmRow] = []
    for lo in tqdm(range(0, len(cases), batch_size), desc="reply harm", disable=not progress):
        if deadline is not None and time.monotonic() > deadline:
            break
        chunk = cases[lo:lo + batch_size]
        states = MemoryState.stack([writer(c.history) for c in chunk])
        for w in windows:
            rows.extend(measure(dm, tok, chunk, states, w, max_new_tokens))
    return rows


def _ci(values: list[float]) -> dict[str, float]:
    mean, lo, hi = bootstrap_ci(values, seed=0)
    return {"mean": mean, "lo": lo, "hi": hi}


def _group(rows: list[HarmRow]) -> dict[str, Any]:
    full = [r for r in rows if r.frozen_words > FULL_WORDS]
    frozen_words = sum(r.frozen_words for r in rows)
    return {"n": len(rows), "delta_nats": _ci([r.delta_nats for r in rows]),
            "kl": _ci([r.kl for r in rows]),
            "collapsed": sum(r.collapsed for r in full) / len(full) if full else 0.0,
            "n_full": len(full),
            "length_ratio": sum(r.memory_words for r in rows) / frozen_words if frozen_words else 1.0}


def summarize_harm(rows: list[HarmRow]) -> dict[str, Any]:
    """Per window: the figures of the module docstring over all its cases, by memory source and
    by request kind."""
    out: dict[str, Any] = {}
    by_window: dict[int, list[HarmRow]] = defaultdict(list)
    for r in rows:
        by_window[r.window].append(r)
    for w, rs in sorted(by_window.items()):
        summary = _group(rs)
        for field in ("memory", "kind"):
            parts: dict[str, list[HarmRow]] = defaultdict(list)
            for r in rs:
                parts[getattr(r, field)].append(r)
            summary[f"by_{field}"] = {k: _group(v) for k, v in sorted(parts.items())}
        out[f"window={w}"] = summary
    return out


def harm_table(summary: dict[str, Any]) -> str:
    """Markdown table of a `summarize_harm` result."""
    lines = ["| window | n | delta_nats [95 % CI] | KL | collapsed | length ratio |",
             "|---|---:|---|---:|---:|---:|"]
    for w, s in summary.items():
        d = s["delta_nats"]
        lines.append(f"| {w.split('=')[1]} | {s['n']} | {d['mean']:+.3f} [{d['lo']:+.3f}, "
                     f"{d['hi']:+.3f}] | {s['kl']['mean']:.3f} | {100 * s['collapsed']:.1f} % | "
                     f"{s['length_ratio']:.2f} |")
    return "\n".join(lines)


def side_by_side(rows: list[HarmRow], k: int = 6) -> str:
    """Markdown list of ``k`` requests with the frozen and the memory reply."""
    out = []
    for r in rows[:k]:
        out.append(f"- window {r.window}, memory of {r.memory}: **{r.request}**\n"
                   f"  - frozen: {r.frozen_reply[:200]!r}\n  - memory: {r.memory_reply[:200]!r}")
    return "\n".join(out)


def rows_as_dicts(rows: list[HarmRow]) -> list[dict[str, Any]]:
    return [{**asdict(r), "collapsed": r.collapsed} for r in rows]
