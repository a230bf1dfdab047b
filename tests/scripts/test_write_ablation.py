"""scripts/write_ablation.py: the history versions it writes."""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path

import pytest

from agentmem.data.synthetic import generate

_PATH = Path(__file__).resolve().parents[2] / "scripts" / "write_ablation.py"
_spec = importlib.util.spec_from_file_location("write_ablation", _PATH)
write_ablation = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(write_ablation)


@pytest.fixture(scope="module")
def episodes():
    return generate("test", 40, seed=3, facts=(2, 4), fillers=(1, 3), sessions=(1, 2))


def test_versions_split_the_history_at_the_fact_turn(episodes) -> None:
    for e in episodes:
        turn = e.meta["fact_turn"]
        fact = write_ablation.cut(e, "fact")
        before = write_ablation.cut(e, "up-to-fact")
        after = write_ablation.cut(e, "from-fact")
        assert fact.history[0] == e.history[turn] and e.answer in fact.history[0]["content"]
        assert [m["role"] for m in fact.history] == ["user", "assistant"]
        assert before.history == e.history[: turn + 2]
        assert after.history == e.history[turn:]
        assert write_ablation.cut(e, "full").history == e.history
        # what is asked and scored stays; the turn indices that no longer hold are dropped
        assert (fact.question, fact.answer, fact.candidates) == (e.question, e.answer, e.candidates)
        assert "swap" not in fact.meta and "fact_turn" not in fact.meta
    # the generator's episodes do have writes on both sides of the fact turn
    assert any(len(write_ablation.cut(e, "up-to-fact").history) > 2 for e in episodes)
    assert any(len(write_ablation.cut(e, "from-fact").history) > 2 for e in episodes)


def test_gate_versions_drop_replies_and_small_talk(episodes) -> None:
    for e in episodes:
        users = write_ablation.cut(e, "user-turns").history
        said = write_ablation.cut(e, "statements").history
        assert users == [m for m in e.history if m["role"] == "user"]
        assert e.history[e.meta["fact_turn"]] in said
        assert said == [m for m in users if m in said] and len(said) < len(users)  # fillers gone
        assert not any(m["content"].startswith(("I watched", "The weather")) for m in said)
    assert any(write_ablation.cut(e, "statements").history != write_ablation.cut(e, "user-turns").history
               for e in episodes)


def test_an_episode_without_a_user_fact_turn_is_refused(episodes) -> None:
    e = episodes[0]
    for meta in ({}, {"fact_turn": e.meta["fact_turn"] + 1}):  # none; the reply, not the fact
        with pytest.raises(ValueError, match="fact turn"):
            write_ablation.cut(replace(e, meta=meta), "fact")
