"""The preservation term: with a memory present, ordinary replies stay the frozen model's.

Every training episode's written state doubles as an *unrelated* memory: beside its own question,
its read pass also answers ordinary requests (`agentmem.data.ordinary`, train split), shown as
served — after the last W messages of that episode's history (W drawn from ``windows``; 0 is
memory only). Along the frozen model's greedy reply to the request, the memory-reading model's
next-token distribution should be the frozen model's:

    preserve_loss = mean over reply tokens of KL(p_frozen ‖ p_memory)

The teacher distribution is the same backbone with the memory off (exactly the frozen model),
computed without gradients in the same context. The replies are generated once per run (greedy,
memory off, no history shown) and cached in the run folder; with a window the teacher is
evaluated along that reply in the window's context, so no reply has to be regenerated per view.
Gradients reach every δ-mem parameter (reads and, through the replayed writes, writes), never
the backbone.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from agentmem.data.ordinary import prompts
from agentmem.model.attach import DeltaMemModel
from agentmem.model.decoding import greedy_replies
from agentmem.model.prompts import window_start
from agentmem.model.scoring import drop_cut_ends, kl_per_token, reply_batch, reply_logprobs
from agentmem.model.state import MemoryState

Message = dict[str, str]


@dataclass(frozen=True)
class TeacherReply:
    """An ordinary request and the frozen model's greedy reply to it (``cut``: the reply hit
    the token limit, so its end-of-turn marker is not a target)."""

    request: str
    reply: str
    cut: bool


def teacher_replies(dm: DeltaMemModel, tok: Any, n: int, path: Path, *, seed: int = 0,
                    max_new_tokens: int = 48, batch_size: int = 16) -> list[TeacherReply]:
    """Frozen greedy replies to ``n`` distinct train-split requests, read from ``path`` when it
    holds them for the same (n, seed, max_new_tokens) and written there otherwise."""
    key = {"n": n, "seed": seed, "max_new_tokens": max_new_tokens}
    if path.exists():
        with open(path) as f:
            head = json.loads(f.readline())
            if head == key:
                return [TeacherReply(**json.loads(line)) for line in f]
    requests = list(dict.fromkeys(r.text for r in prompts("train", 4 * n, seed)))[:n]
    out: list[TeacherReply] = []
    for lo in range(0, len(requests), batch_size):
        chunk = requests[lo:lo + batch_size]
        chats = [[{"role": "user", "content": r}] for r in chunk]
        texts, cut = greedy_replies(dm, tok, chats, dm.new_state(len(chunk)), max_new_tokens)
        out += [TeacherReply(r, t, c) for r, t, c in zip(chunk, texts, cut, strict=True)]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as f:
        f.write(json.dumps(key) + "\n")
        for r in out:
            f.write(json.dumps(r.__dict__) + "\n")
    tmp.replace(path)
    return out


def preservation_views(rng: random.Random, histories: list[list[Message]], replies: list[TeacherReply],
                       rows: int, windows: tuple[int, ...]
                       ) -> tuple[list[int], list[tuple[list[Message], str]], list[bool]]:
    """``rows`` views: for view j, the state row (j mod B) it reads, (prompt messages, reply) and
    whether the reply was cut. The prompt is the last W messages of that row's history and a
    request drawn from ``replies``."""
    state_rows, pairs, cut = [], [], []
    for j in range(rows):
        b = j % len(histories)
        r = replies[rng.randrange(len(replies))]
        w = rng.choice(windows)
        h = histories[b]
        state_rows.append(b)
        pairs.append((h[window_start(len(h), w):] + [{"role": "user", "content": r.request}], r.reply))
        cut.append(r.cut)
    return state_rows, pairs, cut


def preservation_loss(dm: DeltaMemModel, tok: Any, state: MemoryState, state_rows: list[int],
                      pairs: list[tuple[list[Message], str]], cut: list[bool]) -> Tensor:
    """Mean per-token KL(frozen ‖ memory) over the replies of ``pairs`` (scalar, with autograd),
    view j reading ``state`` row ``state_rows[j]``."""
    return preservation_kl_tokens(dm, tok, state, state_rows, pairs, cut).mean()


def preservation_kl_tokens(dm: DeltaMemModel, tok: Any, state: MemoryState, state_rows: list[int],
                           pairs: list[tuple[list[Message], str]], cut: list[bool]) -> Tensor:
    """KL(frozen ‖ memory) per reply token, [n] (see `preservation_loss`)."""
    ids, attn, tmask = reply_batch(tok, pairs)
    drop_cut_ends(tmask, cut)
    with torch.no_grad():
        teacher = reply_logprobs(dm, ids, attn, tmask, None)
    student = reply_logprobs(dm, ids, attn, tmask, state.rows(state_rows))
    return kl_per_token(teacher, student)
