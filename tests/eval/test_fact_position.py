"""The split of candidate accuracy by whether the fact has left the prompt window."""

from __future__ import annotations

import pytest

from agentmem.data.episodes import Episode
from agentmem.eval.regimes import Row
from agentmem.eval.report import fact_position_split, fact_position_table
from agentmem.model.prompts import read_prompt


def episode(i: int, fact_turn: int | None, n_messages: int = 8) -> Episode:
    history = [{"role": "user" if k % 2 == 0 else "assistant", "content": f"line {k}"}
               for k in range(n_messages)]
    return Episode(id=f"e{i}", history=history, question="Where?", answer="a",
                   candidates=["a", "b"], meta={} if fact_turn is None else {"fact_turn": fact_turn})


def test_rows_are_split_by_the_facts_distance_from_the_end():
    # 8 messages, window 4: turns 4-7 are shown, 0-3 have left the window.
    eps = [episode(0, 2), episode(1, 3), episode(2, 4), episode(3, 6), episode(4, None)]
    correct = {"e0": 0.0, "e1": 1.0, "e2": 1.0, "e3": 1.0, "e4": 1.0}
    rows = [Row(regime="window", category="x", episode=e, correct=c, chance=0.5)
            for e, c in correct.items()]
    rows.append(Row(regime="window", category="x", episode="e0", f1=0.3))  # generation only
    split = fact_position_split(rows, eps, window=4)
    assert split["window"]["outside"]["n"] == 2
    assert split["window"]["outside"]["mc_acc"]["mean"] == pytest.approx(0.5)
    assert split["window"]["inside"]["n"] == 2
    assert split["window"]["inside"]["mc_acc"]["mean"] == pytest.approx(1.0)
    table = fact_position_table(split)
    assert "| window | 50.0 [" in table and "(n=2)" in table
    # "inside" means exactly what the window regime shows
    for ep in eps[:4]:
        shown = read_prompt("window", ep.history, ep.question, window=4).messages
        assert (ep.history[ep.meta["fact_turn"]] in shown) == (ep.meta["fact_turn"] >= 4)


def test_window_zero_puts_every_fact_outside():
    split = fact_position_split([Row(regime="no-memory", category="x", episode="e0", correct=1.0)],
                                [episode(0, 7)], window=0)
    assert list(split["no-memory"]) == ["outside"]
    assert read_prompt("window", episode(0, 7).history, "Where?", window=0).messages == [
        {"role": "user", "content": "Where?"}]


def test_rows_of_another_file_and_negative_windows_are_refused():
    row = Row(regime="window", category="x", episode="elsewhere", correct=1.0)
    with pytest.raises(ValueError, match="no episode in the data"):
        fact_position_split([row], [episode(0, 1)], window=4)
    with pytest.raises(ValueError, match="window must be >= 0"):
        fact_position_split([], [], window=-1)
