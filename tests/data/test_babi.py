"""bAbI reader on small fixture files written by the tests."""

from __future__ import annotations

import pytest

from agentmem.data.babi import read_babi, read_babi_dir

QA1 = """1 Mary moved to the bathroom.
2 John went to the hallway.
3 Where is Mary? \tbathroom\t1
4 Daniel went back to the garden.
5 Mary travelled to the office.
6 Where is Mary? |office|5
1 Sandra journeyed to the kitchen.
2 Where is Sandra? \tkitchen\t1
"""

QA5 = """1 Fred picked up the football there.
2 Fred gave the football to Jeff.
3 What did Fred give to Jeff? \tfootball\t2
4 Jeff grabbed the milk there.
5 Jeff gave the milk to Bill.
6 Who gave the milk to Bill? \tJeff\t5
7 Who received the milk? \tBill\t5
8 What did Jeff give to Bill? \tmilk\t5
"""

QA2 = """1 Mary got the milk there.
2 John moved to the bedroom.
3 Mary travelled to the hallway.
4 Where is the milk? \thallway\t1 3
"""


@pytest.fixture
def babi_dir(tmp_path):
    (tmp_path / "qa1_single-supporting-fact_test.txt").write_text(QA1)
    (tmp_path / "qa5_three-arg-relations_test.txt").write_text(QA5)
    (tmp_path / "qa2_two-supporting-facts_train.txt").write_text(QA2)
    return tmp_path


def test_questions_become_episodes(babi_dir):
    eps = read_babi(babi_dir / "qa1_single-supporting-fact_test.txt")
    assert [e.question for e in eps] == ["Where is Mary?", "Where is Mary?", "Where is Sandra?"]
    assert [e.answer for e in eps] == ["bathroom", "office", "kitchen"]  # tab and pipe formats
    second = eps[1]
    assert [m["content"] for m in second.history[::2]] == [
        "Mary moved to the bathroom.", "John went to the hallway.", "Daniel went back to the garden.",
        "Mary travelled to the office."]  # the earlier question is not part of the history
    assert {m["content"] for m in second.history[1::2]} == {"OK."}
    assert second.meta["fact_turn"] == 6 and second.history[6]["content"] == "Mary travelled to the office."
    assert eps[2].history == [{"role": "user", "content": "Sandra journeyed to the kitchen."},
                              {"role": "assistant", "content": "OK."}]  # a new story starts at id 1
    assert all(e.category == "qa1" and e.meta["task"] == "qa1_single-supporting-fact" for e in eps)
    assert len({e.id for e in eps}) == 3


def test_candidates_are_the_answers_of_the_same_question_word(babi_dir):
    qa1 = read_babi(babi_dir / "qa1_single-supporting-fact_test.txt")
    assert all(e.candidates == ["bathroom", "kitchen", "office"] for e in qa1)
    qa5 = read_babi(babi_dir / "qa5_three-arg-relations_test.txt")
    by_q = {e.question: e.candidates for e in qa5}
    assert by_q["What did Fred give to Jeff?"] == ["football", "milk"]
    assert by_q["Who gave the milk to Bill?"] == ["Bill", "Jeff"]


def test_fact_turn_is_the_supporting_line_naming_the_answer(babi_dir):
    ep = read_babi(babi_dir / "qa2_two-supporting-facts_train.txt")[0]
    assert ep.meta["support_turns"] == [0, 4]
    assert ep.meta["fact_turn"] == 4  # "Mary travelled to the hallway.", not "Mary got the milk there."


def test_swap_replaces_the_answer_in_the_fact_line(babi_dir):
    eps = [ep for name in ("qa1_single-supporting-fact_test.txt", "qa5_three-arg-relations_test.txt")
           for ep in read_babi(babi_dir / name)]
    swapped = [ep for ep in eps if "swap" in ep.meta]
    assert len(swapped) == len(eps) - 1
    for ep in swapped:
        swap = ep.meta["swap"]
        original = ep.history[swap["turn"]]["content"]
        assert swap["turn"] == ep.meta["fact_turn"]
        assert swap["value"] != ep.answer and swap["value"] in ep.candidates
        assert swap["value"] not in ep.question
        assert swap["content"] == original.replace(ep.answer, swap["value"]) != original
    ep = read_babi(babi_dir / "qa5_three-arg-relations_test.txt")[1]  # Who gave the milk to Bill? Jeff
    assert "swap" not in ep.meta  # the only other person, Bill, is in the question


def test_ack_none_and_folder_reader(babi_dir):
    eps = read_babi(babi_dir / "qa1_single-supporting-fact_test.txt", ack=None)
    assert all(m["role"] == "user" for e in eps for m in e.history)
    assert eps[1].meta["fact_turn"] == 3
    test = read_babi_dir(babi_dir, "test")
    assert [e.category for e in test] == ["qa1"] * 3 + ["qa5"] * 4
    assert [e.category for e in read_babi_dir(babi_dir, "test", tasks=["qa5"])] == ["qa5"] * 4
    with pytest.raises(ValueError, match="qa3"):
        read_babi_dir(babi_dir, "test", tasks=["qa3"])


def test_malformed_line_is_an_error(tmp_path):
    path = tmp_path / "qa1_x_test.txt"
    path.write_text("1 Mary moved.\nMary forgot the number.\n")
    with pytest.raises(ValueError, match=r"qa1_x_test.txt: line 2"):
        read_babi(path)
