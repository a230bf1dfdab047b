"""Synthetic facts: split disjointness, determinism, updates, candidates and the swap test."""

from __future__ import annotations

import random

import pytest

from agentmem.data import facts
from agentmem.data.synthetic import generate, statement_turns
from agentmem.data.values import GENERATORS, sample_value, value_split


@pytest.fixture(scope="module")
def episodes() -> dict[str, list]:
    return {s: generate(s, 300, seed=7, facts=(2, 5), update_prob=0.5) for s in ("train", "test")}


def _values(eps: list) -> set[str]:
    return {c.casefold() for ep in eps for c in ep.candidates}


def _templates(split: str) -> set[str]:
    rendered = set()
    for a in facts.ATTRIBUTES[split]:
        rendered |= set(a.statements) | set(a.questions)
        for frames in (facts.STATEMENT_FRAMES, facts.QUESTION_FRAMES, facts.UPDATE_FRAMES):
            rendered |= {f.replace("{p}", a.phrase) for f in frames[split]}
    return rendered


def test_splits_are_disjoint_in_types_phrasings_and_values(episodes):
    train, test = facts.TRAIN_ATTRIBUTES, facts.TEST_ATTRIBUTES
    assert len(train) >= 16 and len(test) >= 8
    assert not {a.key for a in train} & {a.key for a in test}
    assert not {a.phrase for a in train} & {a.phrase for a in test}
    for frames in (facts.STATEMENT_FRAMES, facts.QUESTION_FRAMES, facts.UPDATE_FRAMES):
        assert not set(frames["train"]) & set(frames["test"])
    assert not _templates("train") & _templates("test")
    assert not _values(episodes["train"]) & _values(episodes["test"])
    assert {ep.meta["attribute"] for ep in episodes["test"]} <= {a.key for a in test}


def test_episodes_use_only_their_split(episodes):
    for split, eps in episodes.items():
        allowed = _templates(split)
        for ep in eps:
            assert all(value_split(c) == split for c in ep.candidates)
            assert ep.question in allowed
            fact = ep.history[ep.meta["fact_turn"]]["content"]
            assert fact.replace(ep.answer, "{v}", 1) in allowed


def test_value_pools_are_large_and_split():
    for kind in GENERATORS:
        rng = random.Random(kind)
        draws = {sample_value(kind, "test", rng) for _ in range(300)}
        assert len(draws) >= 200, f"{kind} pool looks small: {len(draws)} distinct of 300"
        assert all(value_split(v) == "test" for v in draws)


def test_deterministic_by_seed():
    a, b = generate("train", 20, seed=3), generate("train", 20, seed=3)
    assert a == b
    assert generate("train", 5, seed=3) == a[:5]
    assert generate("train", 20, seed=4) != a


def test_updates_answer_with_latest_value(episodes):
    updates = [ep for ep in episodes["train"] + episodes["test"] if ep.category == "update"]
    singles = [ep for ep in episodes["train"] + episodes["test"] if ep.category == "single"]
    assert len(updates) > 50 and len(singles) > 50
    for ep in updates:
        old = ep.meta["old_value"]
        contents = [m["content"] for m in ep.history]
        old_turn = next(i for i, c in enumerate(contents) if old in c)
        assert old_turn < ep.meta["fact_turn"]
        update = contents[ep.meta["fact_turn"]].replace(ep.answer, "{v}", 1)
        assert update in {f.replace("{p}", a.phrase) for f in facts.UPDATE_FRAMES[ep.meta["split"]]
                          for a in facts.ATTRIBUTES[ep.meta["split"]]}
        assert old in ep.candidates and old != ep.answer
    for ep in singles:
        assert "old_value" not in ep.meta


def test_candidates(episodes):
    for ep in episodes["train"] + episodes["test"]:
        assert ep.answer in ep.candidates and len(ep.candidates) == 10
        assert len(set(ep.candidates)) == 10
    positions = {ep.candidates.index(ep.answer) for ep in episodes["train"]}
    assert len(positions) == 10, "the answer must not sit at a fixed position"
    ep = generate("test", 1, seed=0, distractors=3)[0]
    assert len(ep.candidates) == 4


def test_answer_is_stated_only_in_its_fact_turn(episodes):
    for ep in episodes["train"] + episodes["test"]:
        hits = [i for i, m in enumerate(ep.history) if ep.answer.casefold() in m["content"].casefold()]
        assert hits == [ep.meta["fact_turn"]]
        assert ep.history[ep.meta["fact_turn"]]["role"] == "user"


def test_swap_differs_only_by_value(episodes):
    for ep in episodes["train"] + episodes["test"]:
        swap = ep.meta["swap"]
        original = ep.history[swap["turn"]]["content"]
        assert swap["turn"] == ep.meta["fact_turn"]
        assert swap["value"] in ep.candidates and swap["value"] != ep.answer
        assert swap["content"] != original
        assert swap["content"].replace(swap["value"], ep.answer) == original
        prefix, _, suffix = original.partition(ep.answer)
        assert swap["content"] == prefix + swap["value"] + suffix
        others = " ".join(m["content"] for m in ep.history)
        assert swap["value"] not in others, "the swap value should be new to the history"


def test_knobs_shape_the_episodes():
    eps = generate("train", 30, seed=1, facts=1, fillers=0, sessions=1, update_prob=0.0)
    for ep in eps:
        assert len(ep.history) == 2 and ep.category == "single"
    eps = generate("test", 30, seed=1, facts=3, fillers=2, sessions=3, update_prob=1.0, session_headers=True)
    for ep in eps:
        assert ep.category == "update"
        assert [m["content"] for m in ep.history if m["role"] == "system"] == ["Session 1.", "Session 2.",
                                                                                "Session 3."]
        assert [ep.history[i]["role"] for i in ep.meta["session_starts"]] == ["system"] * 3
        user = [m for m in ep.history if m["role"] == "user"]
        assert len(user) == 3 + 3 + 3 * 2  # facts + updates + fillers


@pytest.mark.parametrize("knobs, match", [
    (dict(facts=0), "facts must be >= 1"),
    (dict(fillers=(3, 1)), "low <= high"),
    (dict(update_prob=1.5), "update_prob"),
    (dict(distractors=0), "distractors"),
    (dict(facts=99), "exceeds"),
    (dict(colour="red"), "unknown knobs"),
])
def test_bad_knobs(knobs, match):
    with pytest.raises(ValueError, match=match):
        generate("train", 1, **knobs)
    with pytest.raises(ValueError, match="split"):
        generate("dev", 1)


@pytest.mark.parametrize("split", ["train", "test"])
def test_statement_turns_are_the_fact_and_update_turns(split):
    # no fillers (one session: an empty one gets a filler): every user turn states something
    for e in generate(split, 30, seed=3, facts=(2, 4), fillers=0, sessions=1,
                      update_prob=0.5):
        assert statement_turns(e.history) == [i for i, m in enumerate(e.history) if m["role"] == "user"]
    # one fact, no updates, fillers around it: the fact's turn alone
    for e in generate(split, 30, seed=4, facts=1, fillers=(1, 3), sessions=(1, 2), update_prob=0):
        assert statement_turns(e.history) == [e.meta["fact_turn"]]
    # every fact updated once: three facts make six statements, fillers none
    for e in generate(split, 30, seed=5, facts=3, fillers=(1, 2), update_prob=1.0):
        turns = statement_turns(e.history)
        assert len(turns) == 6 and e.meta["fact_turn"] in turns
        assert all(e.history[i]["role"] == "user" for i in turns)
