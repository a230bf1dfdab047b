"""Reply harm (agentmem.eval.reply_harm, `agentmem eval --suite reply-harm`), hand-checked on a tiny
backbone: a zero memory leaves every figure at the frozen model's; a memory that forces one
token everywhere gives a large delta_nats and KL."""

from __future__ import annotations

import json

import pytest
import torch

from agentmem.cli import main
from agentmem.eval.reply_harm import (
    HarmRow,
    babi_stories,
    evaluate_harm,
    harm_cases,
    harm_table,
    measure,
    summarize_harm,
    visible,
)
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.model.state import MemoryState


@pytest.fixture
def dm_tok(chat_backbone):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    return attach_delta_mem(model, DeltaMemConfig(write_mode="message")), tok


def forcing_state(dm, B: int) -> MemoryState:
    """A memory whose read, in the last layer, adds a huge vector along one output embedding to
    the residual stream: every position then predicts the same token (or the one most opposed).

    The final norm caps the hidden state, so a random tiny backbone's logits span ~1 nat whatever
    is added; its output embeddings are scaled up to give it a real model's logit range."""
    last = dm.layer_indices[-1]
    layer = dm.layers[last]
    head = dm.model.get_output_embeddings().weight
    with torch.no_grad():
        head.mul_(40)
    unembed = head[dm.model.config.eos_token_id]  # [d]
    with torch.no_grad():
        layer.delta_mem_u["o"].copy_(1e3 * unembed[:, None].expand_as(layer.delta_mem_u["o"]))
    state = dm.new_state(B)
    tensors = state.tensors.clone()
    tensors[:, -1] = torch.eye(dm.config.rank)  # m = q: a unit vector, never zero
    return MemoryState(tensors, state.tokens_written, state.layer_indices, dm.fingerprint(),
                       dm.backbone_id, dm.config)


def test_cases_pair_requests_with_every_memory_source_of_their_split():
    story = [{"role": "user", "content": "Mary went to the kitchen."},
             {"role": "assistant", "content": "OK."}]
    cases = harm_cases("test", 6, seed=2, stories=[story])
    assert [c.memory for c in cases] == ["facts", "small talk", "babi"] * 2
    assert cases[2].history == story and all(c.history for c in cases)
    assert harm_cases("test", 3, seed=2, stories=[story]) == cases[:3]
    assert [c.memory for c in harm_cases("train", 4)] == ["facts", "small talk"] * 2
    assert visible(cases[0], 0) == [{"role": "user", "content": cases[0].request}]
    assert visible(cases[0], 2)[:-1] == cases[0].history[-2:]


def test_babi_stories_keeps_the_longest_history_of_each_story():
    class E:
        def __init__(self, n, tag="a"):
            self.history = [{"role": "user", "content": f"{tag}{i}"} for i in range(n)]

    assert [len(h) for h in babi_stories([E(2), E(4), E(6), E(2, "b"), E(3, "b")])] == [6, 3]


def test_zero_memory_changes_nothing(dm_tok):
    dm, tok = dm_tok
    cases = harm_cases("test", 3, seed=0)
    rows = measure(dm, tok, cases, dm.new_state(3), window=4, max_new_tokens=12)
    for r in rows:
        assert r.delta_nats == pytest.approx(0.0, abs=1e-5) and r.kl == pytest.approx(0.0, abs=1e-5)
        assert r.memory_reply == r.frozen_reply and not r.collapsed
    s = summarize_harm(rows)["window=4"]
    assert s["length_ratio"] == pytest.approx(1.0) and s["collapsed"] == 0.0


def test_a_memory_forcing_one_token_is_large_harm(dm_tok):
    dm, tok = dm_tok
    cases = harm_cases("test", 4, seed=0)
    rows = measure(dm, tok, cases, forcing_state(dm, 4), window=0, max_new_tokens=12)
    s = summarize_harm(rows)["window=0"]
    assert s["delta_nats"]["mean"] > 5 and s["kl"]["mean"] > 5, s
    # every memory reply is one token repeated (or empty, when the forced token ends the turn)
    assert all(len(set(tok.encode(r.memory_reply))) <= 1 for r in rows), [r.memory_reply for r in rows]


def test_collapse_and_summary_definitions():
    def row(frozen_words, memory_words, window=0, memory="facts"):
        return HarmRow("c", window, "poem", memory, "req", "f", "m", 0.5, 0.25, frozen_words,
                       memory_words)

    assert row(9, 3).collapsed and not row(8, 1).collapsed and not row(20, 4).collapsed
    rows = [row(20, 2), row(20, 20), row(5, 1), row(12, 12, memory="babi")]
    s = summarize_harm(rows)["window=0"]
    assert s["collapsed"] == pytest.approx(1 / 3) and s["n_full"] == 3  # among frozen > 8 words
    assert s["length_ratio"] == pytest.approx(35 / 57)
    assert s["by_memory"]["babi"]["n"] == 1 and s["delta_nats"]["mean"] == pytest.approx(0.5)
    assert "| 0 | 4 | +0.500" in harm_table(summarize_harm(rows))


def test_evaluate_harm_covers_every_window_and_stops_on_time(dm_tok):
    dm, tok = dm_tok
    cases = harm_cases("test", 3, seed=1)
    rows = evaluate_harm(dm, tok, cases, (0, 2), batch_size=2, max_new_tokens=6, progress=False)
    assert sorted((r.case, r.window) for r in rows) == sorted((c.id, w) for c in cases for w in (0, 2))
    assert evaluate_harm(dm, tok, cases, (0,), max_minutes=0, progress=False) == []


def test_eval_cli_reply_harm_suite(chat_backbone, tmp_path):
    out = tmp_path / "harm"
    assert main(["eval", "--suite", "reply-harm", "--backbone", str(chat_backbone), "--adapter", "none",
                 "--limit", "3", "--windows", "0,4", "--max-new-tokens", "6", "--device", "cpu",
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results["summary"]) == {"window=0", "window=4"}
    # a fresh adapter (U at 0.05 × the frozen projections) reads little: next to no harm
    assert abs(results["summary"]["window=0"]["delta_nats"]["mean"]) < 0.05
    assert results["meta"]["split"] == "test" and results["meta"]["cases"] == 3
    assert len((out / "rows.jsonl").read_text().splitlines()) == 6
    assert "delta_nats" in (out / "report.md").read_text()
    with pytest.raises(SystemExit):
        main(["eval", "--suite", "reply-harm", "--windows", "0,-1", "--out", str(tmp_path / "bad")])


def test_a_cut_reply_loses_only_its_end_marker_as_a_target():
    from agentmem.model.scoring import drop_cut_ends

    tmask = torch.tensor([[0, 1, 1, 1, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]], dtype=torch.bool)
    drop_cut_ends(tmask, [True, False, True])
    assert tmask.int().tolist() == [[0, 1, 1, 0, 0], [0, 1, 1, 1, 0], [0, 0, 1, 0, 0]]
