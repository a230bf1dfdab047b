"""LoCoMo reader on a small fixture conversation written by the tests."""

from __future__ import annotations

import json

import pytest

from agentmem.data.locomo import ADVERSARIAL_ANSWER, read_locomo


def _sample(sample_id: str = "conv-1") -> dict:
    return {
        "sample_id": sample_id,
        "conversation": {
            "speaker_a": "Ann", "speaker_b": "Bob",
            "session_2_date_time": "2:00 pm on 9 May, 2023",
            "session_2": [{"speaker": "Bob", "dia_id": "D2:1", "text": "I adopted a cat."},
                          {"speaker": "Ann", "dia_id": "D2:2", "text": "Lovely!",
                           "blip_caption": "a photo of a cat"}],
            "session_1_date_time": "1:56 pm on 8 May, 2023",
            "session_1": [{"speaker": "Ann", "dia_id": "D1:1", "text": "I ran a race."},
                          {"speaker": "Bob", "dia_id": "D1:2", "text": "Well done."}],
            "session_3_date_time": "3:00 pm on 10 May, 2023",
            "session_3": [],
            "session_4_date_time": "4:00 pm on 11 May, 2023",
        },
        "qa": [
            {"question": "What did Bob adopt?", "answer": "a cat", "evidence": ["D2:1"], "category": 4},
            {"question": "When did Ann run?", "answer": 2023, "evidence": ["D1:1"], "category": 2},
            {"question": "What did Bob do?", "evidence": ["D2:1"], "category": 5,
             "adversarial_answer": "a dog"},
            {"question": "What happened?", "answer": "race, cat", "evidence": ["D1:1; D2:1", "D9:9"],
             "category": 1},
            {"question": "Would Ann run again?", "answer": "Likely yes; she enjoyed it", "evidence": [],
             "category": 3},
        ],
    }


def _write(tmp_path, data) -> str:
    path = tmp_path / "locomo.json"
    path.write_text(json.dumps(data))
    return str(path)


def test_history_from_sessions(tmp_path):
    eps = read_locomo(_write(tmp_path, [_sample()]))
    assert eps[0].history == [
        {"role": "system", "content": "Session 1. Date: 1:56 pm on 8 May, 2023."},
        {"role": "user", "content": "Ann: I ran a race."},
        {"role": "assistant", "content": "Bob: Well done."},
        {"role": "system", "content": "Session 2. Date: 2:00 pm on 9 May, 2023."},
        {"role": "assistant", "content": "Bob: I adopted a cat."},
        {"role": "user", "content": "Ann: Lovely! [shares a photo of a cat]"},
    ]  # numeric session order; empty and missing sessions skipped
    bare = read_locomo(_write(tmp_path, [_sample()]), captions=False, headers=False)[0]
    assert [m["content"] for m in bare.history] == ["Ann: I ran a race.", "Bob: Well done.",
                                                    "Bob: I adopted a cat.", "Ann: Lovely!"]


def test_questions_categories_and_evidence(tmp_path):
    eps = read_locomo(_write(tmp_path, _sample()))  # a single sample object works too
    assert [e.category for e in eps] == ["single-hop", "temporal", "multi-hop", "open-domain"]
    assert [e.meta["locomo_category"] for e in eps] == [4, 2, 1, 3]
    assert eps[1].answer == "2023" and eps[0].candidates is None
    assert eps[0].meta["fact_turn"] == 4 and eps[0].meta["evidence_turns"] == [4]
    assert eps[2].meta["evidence"] == ["D1:1", "D2:1", "D9:9"]
    assert eps[2].meta["evidence_turns"] == [1, 4] and eps[2].meta["evidence_missing"] == ["D9:9"]
    assert "fact_turn" not in eps[3].meta
    assert eps[0].id == "locomo-conv-1-000"


def test_adversarial_only_on_request(tmp_path):
    path = _write(tmp_path, [_sample("a"), _sample("b")])
    assert len(read_locomo(path)) == 8
    eps = read_locomo(path, categories=(5,))
    assert [e.answer for e in eps] == [ADVERSARIAL_ANSWER] * 2
    assert eps[0].meta["adversarial_answer"] == "a dog" and eps[0].category == "adversarial"
    with pytest.raises(ValueError, match="unknown LoCoMo categories"):
        read_locomo(path, categories=(6,))


def test_bad_speaker_and_missing_answer(tmp_path):
    sample = _sample()
    sample["conversation"]["session_1"][0]["speaker"] = "Eve"
    with pytest.raises(ValueError, match="Eve"):
        read_locomo(_write(tmp_path, [sample]))
    sample = _sample()
    del sample["qa"][0]["answer"]
    with pytest.raises(ValueError, match="without an answer"):
        read_locomo(_write(tmp_path, [sample]))
