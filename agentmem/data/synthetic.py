"""Synthetic multi-session personal facts: the episodes δ-mem is trained and first evaluated on.

An episode is a few sessions of a user telling an assistant facts about themselves (one fact per
user turn, acknowledged briefly), mixed with filler turns on unrelated topics; some facts are later
*updated* (the latest value is the answer). One attribute is then asked. Candidates are the answer
plus distractors of the same value kind: the superseded value first, then same-kind values stated
for other attributes in the episode, then fresh values from the split's pool.

The test split shares no attribute type, phrasing or value with the train split (see
:mod:`agentmem.data.facts` and :mod:`agentmem.data.values`), so it measures memory in general.

``meta`` of each episode: ``fact_turn`` (history index of the user turn stating the answer),
``attribute``, ``kind``, ``split``, ``old_value`` (updates only), ``session_starts`` (history index
where each session begins) and ``swap`` (``{"turn", "value", "content"}``: the fact turn rendered
with a fresh candidate instead of the answer; only that value differs).
`statement_turns` recovers which user turns state a fact (or an update) from the history alone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from agentmem.data.episodes import Episode
from agentmem.data.facts import (
    ATTRIBUTES,
    FACT_ACKS,
    FILLER_REPLIES,
    FILLERS,
    QUESTION_FRAMES,
    STATEMENT_FRAMES,
    UPDATE_FRAMES,
    Attribute,
)
from agentmem.data.values import SPLITS, sample_value

Range = tuple[int, int]


@dataclass(frozen=True)
class SyntheticConfig:
    """Difficulty knobs (inclusive ranges; each episode draws its own counts).

    Attributes:
        facts: Distinct attributes stated per episode (one of them is asked).
        fillers: Filler turns per session.
        sessions: Sessions per episode.
        update_prob: Probability that each stated fact is updated by a later turn.
        distractors: Wrong candidates per episode (chance = 1 / (distractors + 1)).
        session_headers: Begin each session with a system message "Session k." (off: sessions are
            only recorded in ``meta["session_starts"]``).
    """

    facts: Range = (2, 4)
    fillers: Range = (0, 3)
    sessions: Range = (1, 3)
    update_prob: float = 0.3
    distractors: int = 9
    session_headers: bool = False

    def __post_init__(self) -> None:
        for name, low in (("facts", 1), ("fillers", 0), ("sessions", 1)):
            lo, hi = _as_range(name, getattr(self, name))
            if lo < low:
                raise ValueError(f"{name} must be >= {low}, got {(lo, hi)}")
            object.__setattr__(self, name, (lo, hi))
        if not 0.0 <= self.update_prob <= 1.0:
            raise ValueError(f"update_prob must be in [0, 1], got {self.update_prob}")
        if self.distractors < 1:
            raise ValueError(f"distractors must be >= 1, got {self.distractors}")


def _as_range(name: str, value: int | Range) -> Range:
    if isinstance(value, int):
        return (value, value)
    if isinstance(value, tuple | list) and len(value) == 2 and all(isinstance(v, int) for v in value):
        if value[0] > value[1]:
            raise ValueError(f"{name} range must be (low, high) with low <= high, got {value}")
        return (value[0], value[1])
    raise ValueError(f"{name} must be an int or a (low, high) pair of ints, got {value!r}")


@dataclass
class _Event:
    """One user turn before rendering: a fact, an update, or a filler (attribute None)."""

    attr: Attribute | None
    value: str = ""
    template: str = ""  # with {v} still unfilled for facts and updates


def generate(split: str, n: int, seed: int = 0, **knobs: int | Range | float | bool) -> list[Episode]:
    """Generate ``n`` synthetic episodes of ``split``.

    Episode ``i`` depends only on ``(split, seed, i)`` and the knobs, so ``generate(s, 10, seed)`` is
    a prefix of ``generate(s, 100, seed)``.

    Args:
        split: ``"train"`` or ``"test"``.
        n: Number of episodes.
        seed: Random seed.
        **knobs: Fields of :class:`SyntheticConfig` (an int means a fixed count).

    Raises:
        ValueError: For an unknown split, a negative ``n``, an unknown knob or a bad knob value.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    unknown = sorted(set(knobs) - set(SyntheticConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown knobs {unknown}; known: {sorted(SyntheticConfig.__dataclass_fields__)}")
    cfg = SyntheticConfig(**knobs)  # type: ignore[arg-type]
    if cfg.facts[1] > len(ATTRIBUTES[split]):
        raise ValueError(f"facts {cfg.facts} exceeds the {len(ATTRIBUTES[split])} {split} attributes")
    return [_episode(split, cfg, random.Random(f"{split}:{seed}:{i}"), f"syn-{split}-{seed}-{i:06d}")
            for i in range(n)]


def _episode(split: str, cfg: SyntheticConfig, rng: random.Random, ep_id: str) -> Episode:
    attrs = rng.sample(ATTRIBUTES[split], rng.randint(*cfg.facts))
    used: list[str] = []
    events = []
    for attr in attrs:
        used.append(sample_value(attr.kind, split, rng, used))
        events.append(_Event(attr, used[-1], _statement(split, attr, rng)))
    rng.shuffle(events)
    for attr in attrs:
        if rng.random() < cfg.update_prob:
            used.append(sample_value(attr.kind, split, rng, used))
            first = next(i for i, e in enumerate(events) if e.attr is attr)
            update = _Event(attr, used[-1], rng.choice(UPDATE_FRAMES[split]).replace("{p}", attr.phrase))
            events.insert(rng.randint(first + 1, len(events)), update)
    sessions = _sessions(events, cfg, rng)
    history, turns, starts = _render(sessions, cfg, rng)
    asked = rng.choice(attrs)
    said = [i for i, e in enumerate(turns) if e.attr is asked]
    last = turns[said[-1]]
    olds = [turns[i].value for i in said[:-1]]
    candidates = _candidates(split, asked, last.value, olds, turns, used, cfg.distractors, rng)
    # prefer a value that occurs nowhere in the history, so the swapped history states it once
    fresh = [c for c in candidates if c not in used] or [c for c in candidates if c != last.value]
    swap_value = rng.choice(fresh)
    fact_turn = _user_index(history, said[-1])
    meta = {"fact_turn": fact_turn, "attribute": asked.key, "kind": asked.kind, "split": split,
            "session_starts": starts, "statement_turns": statement_turns(history),
            "swap": {"turn": fact_turn, "value": swap_value, "content": last.template.format(v=swap_value)}}
    if olds:
        meta["old_value"] = olds[-1]
    question = rng.choice(asked.questions + tuple(f.format(p=asked.phrase) for f in QUESTION_FRAMES[split]))
    return Episode(id=ep_id, history=history, question=question, answer=last.value, candidates=candidates,
                   category="update" if olds else "single", meta=meta)


FILLER_SENTENCES = frozenset(t.format(x=x) for t, slots in FILLERS for x in slots)


def statement_turns(history: list[dict[str, str]]) -> list[int]:
    """History indices of the user turns that state a fact or an update: every user turn that is
    not one of the generator's filler sentences (shared by both splits). Assistant replies are
    never statements."""
    return [i for i, m in enumerate(history)
            if m["role"] == "user" and m["content"] not in FILLER_SENTENCES]


def _statement(split: str, attr: Attribute, rng: random.Random) -> str:
    frames = attr.statements + tuple(f.replace("{p}", attr.phrase) for f in STATEMENT_FRAMES[split])
    return rng.choice(frames)


def _sessions(events: list[_Event], cfg: SyntheticConfig, rng: random.Random) -> list[list[_Event]]:
    """Cut the ordered facts into sessions, then sprinkle filler turns into each session."""
    k = rng.randint(*cfg.sessions)
    cuts = sorted(rng.randint(0, len(events)) for _ in range(k - 1))
    bounds = [0, *cuts, len(events)]
    sessions = [events[bounds[j]:bounds[j + 1]] for j in range(k)]
    for session in sessions:
        n_fill = rng.randint(*cfg.fillers)
        if not session and n_fill == 0:
            n_fill = 1  # a session always has at least one turn
        for _ in range(n_fill):
            session.insert(rng.randint(0, len(session)), _Event(None))
    return sessions


def _render(sessions: list[list[_Event]], cfg: SyntheticConfig,
            rng: random.Random) -> tuple[list[dict[str, str]], list[_Event], list[int]]:
    """Chat messages (user turn + assistant acknowledgement per event), events in order, session starts."""
    history: list[dict[str, str]] = []
    turns: list[_Event] = []
    starts = []
    for k, session in enumerate(sessions):
        starts.append(len(history))
        if cfg.session_headers:
            history.append({"role": "system", "content": f"Session {k + 1}."})
        for event in session:
            if event.attr is None:
                template, slots = rng.choice(FILLERS)
                user, reply = template.format(x=rng.choice(slots)), rng.choice(FILLER_REPLIES)
            else:
                user, reply = event.template.format(v=event.value), rng.choice(FACT_ACKS)
            history += [{"role": "user", "content": user}, {"role": "assistant", "content": reply}]
            turns.append(event)
    return history, turns, starts


def _user_index(history: list[dict[str, str]], event_index: int) -> int:
    """History index of the ``event_index``-th user turn."""
    user_turns = [i for i, m in enumerate(history) if m["role"] == "user"]
    return user_turns[event_index]


def _candidates(split: str, asked: Attribute, answer: str, olds: list[str], turns: list[_Event],
                used: list[str], k: int, rng: random.Random) -> list[str]:
    """Answer + k distractors: superseded values, same-kind values of the episode, then fresh ones."""
    same_kind = [e.value for e in turns if e.attr is not None and e.attr is not asked
                 and e.attr.kind == asked.kind]
    distractors = list(dict.fromkeys(olds[::-1] + same_kind))[:k]
    avoid = list(used)
    while len(distractors) < k:
        avoid.append(sample_value(asked.kind, split, rng, avoid))
        distractors.append(avoid[-1])
    candidates = [answer, *distractors]
    rng.shuffle(candidates)
    return candidates
