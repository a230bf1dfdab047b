"""Ordinary requests and small-talk chats: the train and test splits share no template, topic or
chat line; draws are seeded and prefix-stable; every kind is represented."""

from __future__ import annotations

import re

import pytest

from agentmem.data import ordinary
from agentmem.data.ordinary import KINDS, all_requests, prompts, small_talk


def _skeleton(text: str) -> str:
    return re.sub(r"\d+", "#", text)


def test_splits_share_no_request_template_or_topic():
    train, test = set(all_requests("train")), set(all_requests("test"))
    assert train and test and not train & test
    for kind in ordinary._TOPICAL.values():  # templates and topics, each disjoint
        (tr_t, tr_x), (te_t, te_x) = kind
        assert not set(tr_t) & set(te_t) and not set(tr_x) & set(te_x)
    tr_arith = {_skeleton(r.text) for r in prompts("train", 400) if r.kind == "arithmetic"}
    te_arith = {_skeleton(r.text) for r in prompts("test", 400) if r.kind == "arithmetic"}
    assert tr_arith and te_arith and not tr_arith & te_arith
    assert not set(ordinary._SMALL_TALK[0]) & set(ordinary._SMALL_TALK[1])


def test_prompts_cycle_through_every_kind_and_are_prefix_stable():
    reqs = prompts("test", 2 * len(KINDS), seed=3)
    assert [r.kind for r in reqs] == list(KINDS) * 2
    assert all(r.split == "test" and r.text for r in reqs)
    assert prompts("test", 5, seed=3) == reqs[:5]
    assert prompts("test", 5, seed=4) != reqs[:5]
    tests = {r.text for r in prompts("test", 300)}
    assert not tests & {r.text for r in prompts("train", 300)}


def test_small_talk_has_no_facts_and_its_lines_are_split():
    chats = small_talk("train", 5, seed=1, turns=(2, 3))
    assert len(chats) == 5 and all(4 <= len(c) <= 6 for c in chats)
    assert [m["role"] for m in chats[0]] == ["user", "assistant"] * (len(chats[0]) // 2)
    train_lines = {m["content"] for c in small_talk("train", 50) for m in c if m["role"] == "user"}
    test_lines = {m["content"] for c in small_talk("test", 50) for m in c if m["role"] == "user"}
    assert train_lines and test_lines and not train_lines & test_lines
    assert small_talk("train", 2, seed=1, turns=(2, 3)) == chats[:2]


@pytest.mark.parametrize("call", [lambda: prompts("dev", 1), lambda: prompts("train", -1),
                                  lambda: small_talk("valid", 1), lambda: small_talk("test", 1, turns=(3, 2)),
                                  lambda: all_requests("x")])
def test_bad_arguments_raise_value_errors(call):
    with pytest.raises(ValueError):
        call()
