"""The write-gate term (`agentmem train --gate-weight`): which written messages are statements,
the gates the writes hand out, what the term trains, and its wiring through `train` and the CLI."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from agentmem.cli import main
from agentmem.data.episodes import write_jsonl
from agentmem.data.synthetic import generate
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.model.history import write_histories_grad
from agentmem.train import TrainConfig, train
from agentmem.train.gate import gate_loss, statement_messages


def episodes(n: int = 4):
    """Generator episodes: two facts and one filler turn in one session (6 messages)."""
    return generate("train", n, seed=7, facts=2, fillers=1, sessions=1, update_prob=0)


@pytest.fixture
def dm_tok(chat_backbone):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    return attach_delta_mem(model, DeltaMemConfig(write_mode="message", num_states=2, rank=4)), tok


def gates_of(dm, tok, eps):
    gates: list = []
    write_histories_grad(dm, tok, [e.history for e in eps], betas_out=gates)
    return gates, [statement_messages(e, g.shape[0]) for e, g in zip(eps, gates, strict=True)]


def test_statement_messages_are_the_user_turns_stating_facts():
    e = episodes(1)[0]
    labels = statement_messages(e, 6)
    assert labels is not None and sum(labels) == 2  # two facts; the filler and replies are not
    assert labels[e.meta["fact_turn"]] and not any(labels[1::2])  # replies never state
    assert statement_messages(e, 4) == labels[2:]  # a budget dropped the first turn
    assert statement_messages(replace(e, meta={"fact_turn": 0}), 6) is None  # not the generator's


def test_betas_out_are_each_rows_written_message_gates(dm_tok):
    dm, tok = dm_tok
    eps = episodes(2)
    eps[1] = replace(eps[1], history=eps[1].history[:2], meta={})
    with torch.no_grad():
        gates, _ = gates_of(dm, tok, eps)
        alone, _ = gates_of(dm, tok, [eps[1]])
    L = len(dm.layer_indices)
    assert [g.shape for g in gates] == [(6, L, 2, 4), (2, L, 2, 4)]
    assert ((gates[0] > 0) & (gates[0] < 1)).all()
    assert torch.allclose(gates[1], alone[0], atol=1e-5)  # a row's gates do not depend on the batch


def test_gate_term_is_zero_at_its_targets_and_skips_rows_without_labels():
    beta = torch.tensor([0.5, 0.0, 0.0]).view(3, 1, 1, 1).expand(3, 2, 2, 4)
    loss, stats = gate_loss([beta], [[True, False, False]], 0.5)
    assert loss.item() == 0.0 and stats == {"beta_statement": 0.5, "beta_other": 0.0}
    loss, _ = gate_loss([beta, torch.full((2, 2, 2, 4), 0.3)], [[True, False, False], [False, True]], 0.5)
    assert loss.item() == pytest.approx((0.3**2 + 0.2**2) / 2 / 2)  # mean over messages, then rows
    loss, stats = gate_loss([beta, None], [None, None], 0.5)
    assert loss.item() == 0.0 and stats == {}


def test_gate_term_reaches_only_the_write_gate(dm_tok):
    dm, tok = dm_tok
    gates, labels = gates_of(dm, tok, episodes())
    gate_loss(gates, labels, 0.5)[0].backward()
    Nr = 2 * 4
    for layer in dm.layers.values():
        assert not layer.delta_mem_w_in.grad[: 3 * Nr].any()  # W_q, W_k, W_v: untouched
        assert layer.delta_mem_b_beta.grad.abs().sum() > 0
        assert all(u.grad is None or not u.grad.any() for u in layer.delta_mem_u.values())
    assert any(layer.delta_mem_w_in.grad[3 * Nr:].abs().sum() > 0 for layer in dm.layers.values())


def test_training_on_the_gate_term_writes_statements_and_skips_the_rest(dm_tok):
    dm, tok = dm_tok
    eps = episodes(6)
    unseen = generate("test", 6, seed=8, facts=2, fillers=1, sessions=1, update_prob=0)
    with torch.no_grad():
        _, before = gate_loss(*gates_of(dm, tok, unseen), 0.5)
    assert before["beta_statement"] == pytest.approx(before["beta_other"])  # W_β starts at 0
    opt = torch.optim.Adam(list(dm.parameters()), lr=3e-2)
    for _ in range(40):
        opt.zero_grad()
        gate_loss(*gates_of(dm, tok, eps), 0.5)[0].backward()
        opt.step()
    with torch.no_grad():
        _, fit = gate_loss(*gates_of(dm, tok, eps), 0.5)
        _, after = gate_loss(*gates_of(dm, tok, unseen), 0.5)
    assert fit["beta_statement"] > 0.4 and fit["beta_other"] < 0.08, fit
    # the test split's attributes and phrasings (the filler sentences are shared): even a tiny
    # random backbone's gate tells them apart
    assert after["beta_statement"] > 2 * after["beta_other"], after


def test_train_logs_the_gate_term_only_when_weighted(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    for weight in (0.0, 2.0):
        out = tmp_path / str(weight)
        train(TrainConfig(data=[str(data)], out=str(out), backbone=str(chat_backbone), steps=2,
                          batch_size=2, probe_every=0, gate_weight=weight))
        log = [json.loads(r) for r in (out / "train_log.jsonl").read_text().splitlines()]
        assert all(("gate_loss" in r) == bool(weight) for r in log)
        if weight:
            assert all(r["gate_loss"] > 0 and 0 < r["beta_other"] < 1 for r in log)


def test_train_refuses_the_gate_term_with_token_writes_and_a_bad_target(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "o"), backbone=str(chat_backbone),
                      steps=1, batch_size=2, gate_weight=1.0, adapter={"write_mode": "token"})
    with pytest.raises(ValueError, match="message-level"):
        train(cfg)
    for bad in (0.0, 1.5, float("nan")):
        with pytest.raises(ValueError, match="gate_beta"):
            train(replace(cfg, out=str(tmp_path / "bad"), gate_beta=bad))
    assert not (tmp_path / "bad").exists()


def test_cli_passes_the_gate_flags_and_refuses_bad_ones(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    args = ["train", "--data", str(data), "--backbone", str(chat_backbone), "--steps", "1",
            "--batch-size", "2", "--device", "cpu", "--probe-every", "0"]
    assert main([*args, "--out", str(tmp_path / "on"), "--gate-weight", "3", "--gate-beta", "0.4"]) == 0
    card = (tmp_path / "on" / "adapter" / "README.md").read_text()
    assert '"gate_weight": 3.0' in card and '"gate_beta": 0.4' in card
    assert "gate_loss" in (tmp_path / "on" / "train_log.jsonl").read_text()
    for flag, bad in (("--gate-weight", "-1"), ("--gate-weight", "nan"), ("--gate-beta", "0"),
                      ("--gate-beta", "1.2"), ("--gate-beta", "nan")):
        with pytest.raises(SystemExit):
            main([*args, "--out", str(tmp_path / "bad"), flag, bad])
    assert not (tmp_path / "bad").exists()

