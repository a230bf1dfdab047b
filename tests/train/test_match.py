"""The query–key match term (`agentmem train --match-weight`): the fact's message index, the keys
the writes hand out, what the term trains, and its wiring through `train` and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from agentmem.cli import main
from agentmem.data.episodes import Episode, write_jsonl
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.model.history import write_histories_grad
from agentmem.train import TrainConfig, train
from agentmem.train.match import fact_message, match_loss, reply_queries

NAMES = ["Marisol", "Tobias", "Ingrid", "Kenji"]
PLACES = ["Porto", "Lyon", "Oslo", "Quito"]


def episode(i: int, asked: str = "sister") -> Episode:
    """Two facts and a filler; the sister's name (message 0) or the home town (message 2) asked."""
    history = [{"role": "user", "content": f"My sister is called {NAMES[i % 4]}."},
               {"role": "assistant", "content": "Got it."},
               {"role": "user", "content": f"I live in {PLACES[i % 4]}."},
               {"role": "assistant", "content": "Noted."},
               {"role": "user", "content": "The weather is nice today."},
               {"role": "assistant", "content": "Indeed."}]
    turn, question, answer = ((0, "What is my sister's name?", NAMES[i % 4]) if asked == "sister"
                              else (2, "Where do I live?", PLACES[i % 4]))
    return Episode(id=f"e{i}{asked}", history=history, question=question, answer=answer,
                   candidates=NAMES + PLACES, category="single", meta={"fact_turn": turn})


def batch() -> list[Episode]:
    return [episode(i, asked) for i in range(3) for asked in ("sister", "home")]


@pytest.fixture
def dm_tok(chat_backbone):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    return attach_delta_mem(model, DeltaMemConfig(write_mode="message", num_states=2, rank=4)), tok


def test_fact_message_counts_the_messages_the_budget_dropped():
    e = episode(0, "home")  # the fact is message 2 of 6
    assert fact_message(e, 6) == 2
    assert fact_message(e, 4) == 0  # the first turn (2 messages) was dropped
    assert fact_message(e, 2) is None  # the fact's turn was dropped too
    assert fact_message(replace(e, meta={}), 6) is None  # bAbI, LoCoMo: nothing recorded


def test_keys_out_are_each_rows_written_message_keys(dm_tok):
    dm, tok = dm_tok
    eps = [episode(0), replace(episode(1), history=episode(1).history[:2], meta={})]
    keys: list = []
    with torch.no_grad():
        write_histories_grad(dm, tok, [e.history for e in eps], keys_out=keys)
        alone: list = []
        write_histories_grad(dm, tok, [eps[1].history], keys_out=alone)
    L, N, r = len(dm.layer_indices), 2, 4
    assert [k.shape for k in keys] == [(6, L, N, r), (2, L, N, r)]  # padding rows add none
    assert torch.allclose(keys[0].norm(dim=-1), torch.ones(6, L, N))  # l2-normalised keys
    assert torch.allclose(keys[1], alone[0], atol=1e-5)  # a row's keys do not depend on the batch
    assert not torch.allclose(keys[0][0], keys[0][2])  # different messages, different keys


def test_keys_out_refuses_token_writes(chat_backbone):
    model, tok = load_backbone(str(chat_backbone))
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode="token"))
    with pytest.raises(ValueError, match="message-level"):
        write_histories_grad(dm, tok, [episode(0).history], keys_out=[])


def match_of(dm, tok, eps: list[Episode]) -> tuple[torch.Tensor, float | None]:
    keys: list = []
    write_histories_grad(dm, tok, [e.history for e in eps], keys_out=keys)
    facts = [fact_message(e, k.shape[0]) for e, k in zip(eps, keys, strict=True)]
    queries = reply_queries(dm, tok, [e.question for e in eps], [e.answer for e in eps])
    return match_loss(queries, keys, facts)


def test_match_term_reaches_only_the_query_and_key_projections(dm_tok):
    dm, tok = dm_tok
    loss, _ = match_of(dm, tok, batch())
    loss.backward()
    Nr = 2 * 4
    w_in = next(layer.delta_mem_w_in for layer in dm.layers.values())
    assert w_in.grad[: 2 * Nr].abs().sum() > 0  # W_q and W_k
    for layer in dm.layers.values():
        assert not layer.delta_mem_w_in.grad[2 * Nr:].any()  # W_v, W_β: untouched
        assert layer.delta_mem_b_beta.grad is None or not layer.delta_mem_b_beta.grad.any()
        assert all(u.grad is None or not u.grad.any() for u in layer.delta_mem_u.values())


def test_training_on_the_match_term_points_the_question_at_its_fact(dm_tok):
    dm, tok = dm_tok
    eps = batch()
    with torch.no_grad():
        loss0, acc0 = match_of(dm, tok, eps)
    opt = torch.optim.Adam(list(dm.parameters()), lr=3e-2)
    for _ in range(30):
        opt.zero_grad()
        match_of(dm, tok, eps)[0].backward()
        opt.step()
    with torch.no_grad():
        loss1, acc1 = match_of(dm, tok, eps)
    assert loss1 < 0.5 * loss0, (loss0, loss1)
    assert acc1 > max(acc0, 0.9), (acc0, acc1)  # the sister's question picks message 0, home 2


def test_rows_without_a_fact_add_nothing(dm_tok):
    dm, tok = dm_tok
    eps = [replace(e, meta={}) for e in batch()]
    loss, acc = match_of(dm, tok, eps)
    assert acc is None and loss.item() == 0.0
    with torch.no_grad():
        mixed, _ = match_of(dm, tok, [episode(0), *eps])
        one, _ = match_of(dm, tok, [episode(0)])
    assert torch.allclose(mixed, one, atol=1e-6)  # the mean runs over the rows with a fact


def test_train_logs_the_match_term_only_when_weighted(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, batch())
    for weight in (0.0, 1.0):
        out = tmp_path / str(weight)
        train(TrainConfig(data=[str(data)], out=str(out), backbone=str(chat_backbone), steps=3,
                          batch_size=2, probe_every=0, match_weight=weight))
        log = [json.loads(r) for r in (out / "train_log.jsonl").read_text().splitlines()]
        assert all(("match_loss" in r) == bool(weight) for r in log)
        if weight:
            assert all(0.0 <= r["match_acc"] <= 1.0 and r["match_loss"] > 0 for r in log)


def test_train_refuses_the_match_term_with_token_writes(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, batch())
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "o"), backbone=str(chat_backbone),
                      steps=1, batch_size=2, match_weight=1.0, adapter={"write_mode": "token"})
    with pytest.raises(ValueError, match="message-level"):
        train(cfg)


def test_cli_passes_match_weight_and_refuses_a_negative_one(chat_backbone, tmp_path, capsys):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, batch())
    args = ["train", "--data", str(data), "--backbone", str(chat_backbone), "--steps", "1",
            "--batch-size", "2", "--device", "cpu", "--probe-every", "0"]
    assert main([*args, "--out", str(tmp_path / "on"), "--match-weight", "0.5"]) == 0
    assert '"match_weight": 0.5' in (tmp_path / "on" / "adapter" / "README.md").read_text()
    assert "match_loss" in (tmp_path / "on" / "train_log.jsonl").read_text()
    for bad in ("-1", "nan"):
        with pytest.raises(SystemExit):
            main([*args, "--out", str(tmp_path / "bad"), "--match-weight", bad])
    assert not (tmp_path / "bad").exists()


def test_loss_plot_draws_the_extra_terms_and_survives_an_empty_log(tmp_path, monkeypatch):
    import warnings

    import matplotlib.axes

    from agentmem.train.report import write_loss_plot

    log = tmp_path / "train_log.jsonl"
    rows = [{"step": s, "loss": 3.0 - s / 10, "ce_memory_only": 2.0, "ce_context": 0.0,
             "match_loss": 0.9 - s / 20} for s in range(1, 6)]
    rows[-1]["gate_loss"] = 0.05  # --gate-weight (agentmem.train.gate), logged where it applied
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    labels, plot = [], matplotlib.axes.Axes.plot

    def recording(self, *args, **kwargs):
        labels.append(kwargs.get("label"))
        return plot(self, *args, **kwargs)

    monkeypatch.setattr(matplotlib.axes.Axes, "plot", recording)
    write_loss_plot(log, tmp_path / "loss.png")
    assert "query–key match term" in labels and "write-gate term" in labels
    labels.clear()
    log.write_text("".join(json.dumps(r) + "\n" for r in rows[:-1]))
    write_loss_plot(log, tmp_path / "loss.png")
    assert "write-gate term" not in labels
    log.write_text("")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "no artists with labels" legend warning
        write_loss_plot(log, tmp_path / "empty.png")
    assert (tmp_path / "loss.png").stat().st_size > 0 and (tmp_path / "empty.png").stat().st_size > 0
