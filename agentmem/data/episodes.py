"""The episode format shared by every data builder, trainer and evaluator.

One JSON object per line::

    {"id": str, "history": [{"role": ..., "content": ...}, ...], "question": str, "answer": str,
     "candidates": [str, ...] | null, "category": str | null, "meta": {...}}

``history`` is what happened before the question (each regime decides whether it is written into
memory, shown in the prompt, both or neither). ``meta`` is free-form; the keys builders fill and
evaluators read are:

- ``fact_turn`` (int): index into ``history`` of the message that states the answer's fact.
- ``statement_turns`` ([int]): indices into ``history`` of every user turn that states a fact
  or an update (the synthetic builder's; the write-gate training term reads it).
- ``swap`` ({"turn": int, "value": str, "content": str}): ``history[turn]["content"]`` rewritten
  with ``value`` (another candidate) in place of the answer, for the swap test.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROLES = ("user", "assistant", "system")
_FIELDS = ("id", "history", "question", "answer", "candidates", "category", "meta")


@dataclass(frozen=True)
class Episode:
    """A history of chat messages, then one question with its answer.

    Attributes:
        id: Unique identifier (builders make it stable across runs).
        history: Chat messages ``{"role": "user"|"assistant"|"system", "content": str}``.
        question: The question asked after the history.
        answer: The reference answer (one of ``candidates`` when those are given).
        candidates: Answer choices for likelihood scoring, or None for generation-only data.
        category: Optional tag for per-category metrics (e.g. ``"update"``, ``"qa1"``).
        meta: Free-form extras (``fact_turn``, ``swap``, ...), see the module docstring.

    Raises:
        ValueError: On any malformed field (checked at construction).
    """

    id: str
    history: list[dict[str, str]]
    question: str
    answer: str
    candidates: list[str] | None = None
    category: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.id, str) or not self.id:
            raise ValueError(f"episode id must be a non-empty string, got {self.id!r}")
        _check_history(self.id, self.history)
        for name in ("question", "answer"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"episode {self.id}: {name} must be a non-empty string, got {value!r}")
        _check_candidates(self)
        if self.category is not None and not isinstance(self.category, str):
            raise ValueError(f"episode {self.id}: category must be a string or None, got {self.category!r}")
        if not isinstance(self.meta, dict):
            raise ValueError(f"episode {self.id}: meta must be a dict, got {type(self.meta).__name__}")
        _check_meta(self)

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready dict of this episode (keys in the documented order)."""
        return {name: getattr(self, name) for name in _FIELDS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Episode:
        """Build an episode from its JSON dict.

        Raises:
            ValueError: If a required key is missing, an unknown key is present, or a field is bad.
        """
        if not isinstance(data, dict):
            raise ValueError(f"an episode must be a JSON object, got {type(data).__name__}")
        unknown = sorted(set(data) - set(_FIELDS))
        if unknown:
            raise ValueError(f"unknown episode keys {unknown}; allowed: {list(_FIELDS)}")
        missing = [k for k in ("id", "history", "question", "answer") if k not in data]
        if missing:
            raise ValueError(f"episode {data.get('id', '?')}: missing keys {missing}")
        kwargs = {k: v for k, v in data.items() if not (k == "meta" and v is None)}
        return cls(**kwargs)


def _check_history(ep_id: str, history: Any) -> None:
    if not isinstance(history, list):
        raise ValueError(f"episode {ep_id}: history must be a list of messages")
    for i, msg in enumerate(history):
        if not isinstance(msg, dict) or set(msg) != {"role", "content"}:
            raise ValueError(f"episode {ep_id}: history[{i}] must be a dict with exactly 'role' and "
                             f"'content', got {msg!r}")
        if msg["role"] not in ROLES:
            raise ValueError(f"episode {ep_id}: history[{i}] has role {msg['role']!r}; allowed: {ROLES}")
        if not isinstance(msg["content"], str):
            raise ValueError(f"episode {ep_id}: history[{i}] content must be a string")


def _check_candidates(ep: Episode) -> None:
    if ep.candidates is None:
        return
    if not isinstance(ep.candidates, list) or not all(isinstance(c, str) and c for c in ep.candidates):
        raise ValueError(f"episode {ep.id}: candidates must be a list of non-empty strings or None")
    if len(set(ep.candidates)) != len(ep.candidates):
        raise ValueError(f"episode {ep.id}: duplicate candidates {ep.candidates}")
    if ep.answer not in ep.candidates:
        raise ValueError(f"episode {ep.id}: answer {ep.answer!r} is not one of the candidates "
                         f"{ep.candidates}")


def _check_meta(ep: Episode) -> None:
    turn = ep.meta.get("fact_turn")
    if turn is not None and not (isinstance(turn, int) and 0 <= turn < len(ep.history)):
        raise ValueError(f"episode {ep.id}: meta.fact_turn {turn!r} is not an index into the history "
                         f"({len(ep.history)} messages)")
    swap = ep.meta.get("swap")
    if swap is None:
        return
    if not isinstance(swap, dict) or set(swap) != {"turn", "value", "content"}:
        raise ValueError(f"episode {ep.id}: meta.swap must be {{'turn', 'value', 'content'}}, got {swap!r}")
    if not (isinstance(swap["turn"], int) and 0 <= swap["turn"] < len(ep.history)):
        raise ValueError(f"episode {ep.id}: meta.swap.turn {swap['turn']!r} is out of range")
    if swap["value"] == ep.answer:
        raise ValueError(f"episode {ep.id}: meta.swap.value must differ from the answer")
    if ep.candidates is not None and swap["value"] not in ep.candidates:
        raise ValueError(f"episode {ep.id}: meta.swap.value {swap['value']!r} is not a candidate")


def read_jsonl(path: str | Path) -> list[Episode]:
    """Read episodes, one JSON object per line (blank lines are skipped).

    Raises:
        ValueError: Naming the file and line of the first malformed episode.
    """
    episodes = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                episodes.append(Episode.from_dict(json.loads(line)))
            except (ValueError, TypeError) as e:  # JSONDecodeError is a ValueError
                raise ValueError(f"{path}:{lineno}: {e}") from e
    return episodes


def write_jsonl(path: str | Path, episodes: list[Episode]) -> None:
    """Write episodes as JSONL (UTF-8, one object per line), creating parent folders."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for ep in episodes:
            f.write(json.dumps(ep.to_dict(), ensure_ascii=False) + "\n")


def summarize(episodes: list[Episode]) -> dict[str, Any]:
    """Counts for a data card: episodes, mean history length in messages and characters, categories,
    and the chance level of candidate scoring (None when no episode has candidates)."""
    n = len(episodes)
    cats: dict[str, int] = {}
    for ep in episodes:
        cats[str(ep.category)] = cats.get(str(ep.category), 0) + 1
    with_cands = [ep for ep in episodes if ep.candidates]
    return {
        "episodes": n,
        "avg_turns": sum(len(ep.history) for ep in episodes) / n if n else 0.0,
        "avg_chars": sum(len(m["content"]) for ep in episodes for m in ep.history) / n if n else 0.0,
        "categories": dict(sorted(cats.items())),
        "chance": (sum(1 / len(ep.candidates) for ep in with_cands) / len(with_cands)  # type: ignore[arg-type]
                   if with_cands else None),
    }
