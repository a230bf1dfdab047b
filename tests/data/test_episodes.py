"""The episode format: round trip through JSONL and loud validation."""

from __future__ import annotations

import json

import pytest

from agentmem.data.episodes import Episode, read_jsonl, summarize, write_jsonl

SWAP = {"turn": 0, "value": "Fido", "content": "My dog is Fido."}


def _ep(**over: object) -> Episode:
    base: dict = dict(id="e1", history=[{"role": "user", "content": "My dog is Rex."},
                                        {"role": "assistant", "content": "Noted."}],
                      question="What is my dog called?", answer="Rex", candidates=["Rex", "Fido"],
                      category="single",
                      meta={"fact_turn": 0, "swap": SWAP})
    base.update(over)
    return Episode(**base)


def test_jsonl_round_trip(tmp_path):
    eps = [_ep(), _ep(id="e2", candidates=None, category=None, meta={})]
    path = tmp_path / "sub" / "eps.jsonl"
    write_jsonl(path, eps)
    assert read_jsonl(path) == eps
    first = json.loads(path.read_text().splitlines()[0])
    assert list(first) == ["id", "history", "question", "answer", "candidates", "category", "meta"]


@pytest.mark.parametrize("over, match", [
    (dict(answer="Max"), "not one of the candidates"),
    (dict(history=[{"role": "tool", "content": "x"}]), "role 'tool'"),
    (dict(history=[{"role": "user"}]), "exactly 'role' and 'content'"),
    (dict(question="  "), "question must be a non-empty"),
    (dict(answer=""), "answer must be a non-empty"),
    (dict(candidates=["Rex", "Rex"]), "duplicate candidates"),
    (dict(id=""), "id must be"),
    (dict(meta={"fact_turn": 5}), "fact_turn"),
    (dict(meta={"swap": {"turn": 0, "value": "Rex", "content": "x"}}), "differ from the answer"),
    (dict(meta={"swap": {"turn": 0, "value": "Max", "content": "x"}}), "not a candidate"),
    (dict(meta={"swap": {"turn": 9, "value": "Fido", "content": "x"}}), "out of range"),
])
def test_validation_errors(over, match):
    with pytest.raises(ValueError, match=match):
        _ep(**over)


def test_read_jsonl_names_file_and_line(tmp_path):
    good = json.dumps(_ep().to_dict())
    bad = json.dumps({**_ep().to_dict(), "answer": "Max"})
    path = tmp_path / "eps.jsonl"
    path.write_text(good + "\n\n" + bad + "\n")
    with pytest.raises(ValueError, match=r"eps.jsonl:3: .*not one of the candidates"):
        read_jsonl(path)
    path.write_text(json.dumps({**_ep().to_dict(), "answr": "x"}) + "\n")
    with pytest.raises(ValueError, match="unknown episode keys"):
        read_jsonl(path)


def test_summarize():
    stats = summarize([_ep(), _ep(id="e2", candidates=None, history=[], meta={})])
    assert stats["episodes"] == 2 and stats["avg_turns"] == 1.0
    assert stats["avg_chars"] == len("My dog is Rex.Noted.") / 2
    assert stats["chance"] == 0.5 and stats["categories"] == {"single": 2}
