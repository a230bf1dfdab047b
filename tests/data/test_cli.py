"""``python -m agentmem.data``: build and stats."""

from __future__ import annotations

import json

import pytest

from agentmem.data.__main__ import main
from agentmem.data.episodes import read_jsonl
from agentmem.data.synthetic import generate


def test_build_synthetic_and_stats(tmp_path, capsys):
    out = tmp_path / "syn.jsonl"
    main(["build", "--kind", "synthetic", "--split", "test", "--n", "12", "--seed", "5", "--out", str(out),
          "--facts", "1-2", "--fillers", "0", "--update-prob", "0.5", "--distractors", "4"])
    eps = read_jsonl(out)
    assert eps == generate("test", 12, seed=5, facts=(1, 2), fillers=0, update_prob=0.5, distractors=4)
    stats = json.loads(capsys.readouterr().out)
    assert stats["episodes"] == 12 and stats["chance"] == pytest.approx(0.2)
    main(["stats", str(out)])
    assert json.loads(capsys.readouterr().out)["avg_turns"] == stats["avg_turns"]


def test_build_babi_and_locomo(tmp_path, capsys):
    (tmp_path / "qa1_a_train.txt").write_text("1 Mary moved to the hall.\n2 Where is Mary?\thall\t1\n"
                                               "1 John went to the attic.\n2 Where is John?\tattic\t1\n")
    out = tmp_path / "babi.jsonl"
    main(["build", "--kind", "babi", "--split", "train", "--src", str(tmp_path), "--out", str(out),
          "--n", "1"])
    (ep,) = read_jsonl(out)
    assert ep.answer == "hall" and ep.candidates == ["attic", "hall"]
    src = str(tmp_path / "qa1_a_train.txt")
    main(["build", "--kind", "babi", "--src", src, "--ack", "", "--out", str(out)])
    assert [len(e.history) for e in read_jsonl(out)] == [1, 1]
    main(["build", "--kind", "babi", "--src", src, "--max-messages", "1", "--out", str(out)])
    assert read_jsonl(out) == []  # with the "OK." acknowledgement each history has 2 messages
    turn = {"speaker": "A", "dia_id": "D1:1", "text": "hi"}
    conv = {"speaker_a": "A", "speaker_b": "B", "session_1": [turn]}
    qa = [{"question": "q?", "answer": "hi", "evidence": ["D1:1"], "category": 4}]
    (tmp_path / "l.json").write_text(json.dumps([{"sample_id": "s", "conversation": conv, "qa": qa}]))
    main(["build", "--kind", "locomo", "--src", str(tmp_path / "l.json"), "--out", str(out)])
    assert read_jsonl(out)[0].category == "single-hop"
    capsys.readouterr()
