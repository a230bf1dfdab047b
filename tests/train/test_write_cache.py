"""Read-free message writes, the write policy, cached write features and context distillation
(`agentmem train --cache-writes --distill-weight --window-views`), on a tiny random backbone."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
import torch

from agentmem.data.episodes import write_jsonl
from agentmem.data.synthetic import generate
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.model.history import message_features, write_from_features, write_histories_grad, write_history
from agentmem.model.prompts import read_prompt
from agentmem.model.scoring import answer_loss
from agentmem.train import TrainConfig, train
from agentmem.train.distill import distill_loss, teacher_row

READ_FREE = {"write_mode": "message", "write_reads": False}


def episodes(n: int = 3):
    return generate("train", n, seed=3, facts=2, fillers=1, sessions=2, update_prob=0)


def attached(backbone, seed: int = 0, **config):
    torch.manual_seed(seed)
    model, tok = load_backbone(str(backbone))
    dm = attach_delta_mem(model, DeltaMemConfig(num_states=2, rank=4, **config))
    with torch.no_grad():  # a trained-looking adapter: reads that matter
        for p in dm.parameters():
            p.add_(0.3 * torch.randn_like(p))
    return dm, tok


def test_cached_features_give_the_replayed_write_and_its_gradients(chat_backbone):
    dm, tok = attached(chat_backbone, **READ_FREE)
    eps = episodes()
    histories = [e.history for e in eps]
    prompts = [read_prompt("memory-only", e.history, e.question) for e in eps]
    answers = [e.answer for e in eps]
    keys_a, keys_b = [], []
    state_a, beta_a = write_histories_grad(dm, tok, histories, budget_tokens=60, keys_out=keys_a)
    loss_a = answer_loss(dm, tok, prompts, answers, state_a).sum()
    grads_a = torch.autograd.grad(loss_a, list(dm.parameters()))
    feats = [message_features(dm, tok, h, budget_tokens=60) for h in histories]
    state_b, beta_b = write_from_features(dm, feats, keys_out=keys_b)
    loss_b = answer_loss(dm, tok, prompts, answers, state_b).sum()
    grads_b = torch.autograd.grad(loss_b, list(dm.parameters()))
    torch.testing.assert_close(state_b.tensors, state_a.tensors, atol=1e-5, rtol=1e-4)
    assert state_b.tokens_written.tolist() == state_a.tokens_written.tolist()
    for a, b in zip(keys_a, keys_b, strict=True):
        torch.testing.assert_close(b, a, atol=1e-5, rtol=1e-4)
    for ga, gb in zip(grads_a, grads_b, strict=True):
        torch.testing.assert_close(gb, ga, atol=1e-5, rtol=1e-3)
    torch.testing.assert_close(beta_b.total, beta_a.total, atol=1e-4, rtol=1e-4)
    assert beta_b.count == beta_a.count > 0


def test_write_features_refuse_an_adapter_whose_writes_read(chat_backbone):
    dm, tok = attached(chat_backbone, write_mode="message")
    with pytest.raises(ValueError, match="write_reads=False"):
        message_features(dm, tok, episodes(1)[0].history)


def test_a_read_free_write_pass_is_the_frozen_backbone(chat_backbone):
    eps = episodes(2)
    reading, tok = attached(chat_backbone, write_mode="message")
    free, _ = attached(chat_backbone, **READ_FREE)  # the same weights (same seed)
    # the first turn's write starts from an empty memory: only later turns can differ
    assert not torch.equal(write_history(free, tok, eps[0].history).tensors,
                           write_history(reading, tok, eps[0].history).tensors)
    one_turn = eps[0].history[:2]
    torch.testing.assert_close(write_history(free, tok, one_turn).tensors,
                               write_history(reading, tok, one_turn).tensors)


def test_user_policy_writes_no_reply(chat_backbone):
    history = episodes(1)[0].history
    changed = [dict(m, content="Alright, thanks." if m["role"] == "assistant" else m["content"])
               for m in history]
    for reads in (True, False):
        user, tok = attached(chat_backbone, write_mode="message", write_policy="user",
                             write_reads=reads)
        everything, _ = attached(chat_backbone, write_mode="message", write_reads=reads)
        torch.testing.assert_close(write_history(user, tok, changed).tensors,
                                   write_history(user, tok, history).tensors)
        assert not torch.equal(write_history(everything, tok, changed).tensors,
                               write_history(everything, tok, history).tensors)
    user_tokens = int(write_history(user, tok, history).tokens_written[0])
    all_tokens = int(write_history(everything, tok, history).tokens_written[0])
    assert 0 < user_tokens < all_tokens


def test_policy_and_read_free_writes_are_message_level_and_keep_old_fingerprints():
    with pytest.raises(ValueError, match="write_mode='message'"):
        DeltaMemConfig(write_reads=False)
    with pytest.raises(ValueError, match="write_mode='message'"):
        DeltaMemConfig(write_policy="user")
    with pytest.raises(ValueError, match="write_policy"):
        DeltaMemConfig(write_mode="message", write_policy="replies")
    assert "write_reads" not in DeltaMemConfig(write_mode="message").to_json()
    c = DeltaMemConfig(write_mode="message", write_policy="user", write_reads=False)
    assert DeltaMemConfig.from_json(c.to_json()) == c


def test_distillation_is_zero_when_the_student_sees_what_the_teacher_sees(chat_backbone):
    dm, tok = attached(chat_backbone, **READ_FREE)
    ep = episodes(1)[0]
    vocab = dm.model.config.vocab_size
    row = teacher_row(dm, tok, ep, top_k=vocab)  # the whole distribution: exact KL
    full = read_prompt("full-context", ep.history, ep.question)
    empty = dm.new_state(1)
    assert distill_loss(dm, tok, [full], [ep.answer], [row], empty).abs().item() < 1e-5
    alone = read_prompt("memory-only", ep.history, ep.question)
    assert distill_loss(dm, tok, [alone], [ep.answer], [row], empty).item() > 1e-5  # > 0: a miss


def test_distillation_reaches_the_write_and_read_parameters(chat_backbone):
    dm, tok = attached(chat_backbone, **READ_FREE)
    eps = episodes(2)
    state, _ = write_from_features(dm, [message_features(dm, tok, e.history) for e in eps])
    loss = distill_loss(dm, tok, [read_prompt("memory-only", e.history, e.question) for e in eps],
                        [e.answer for e in eps], [teacher_row(dm, tok, e) for e in eps], state)
    loss.backward()
    params = list(dm.parameters())
    assert params and all(p.grad is not None and p.grad.abs().sum() > 0 for p in params)


def test_train_with_cached_writes_distillation_and_window_views(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes(4))
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "run"), backbone=str(chat_backbone),
                      steps=3, batch_size=2, probe_every=0, cache_writes=True, distill_weight=1.0,
                      context_views=0.0, window_views=1.0, window=2,
                      adapter={**READ_FREE, "write_policy": "user", "rank": 4})
    folder = train(cfg)
    log = [json.loads(r) for r in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert len(log) == 3 and all(r["distill_kl"] >= 0 and r["views_window"] == 2 for r in log)
    saved = json.loads((folder / "delta_mem_config.json").read_text())
    assert saved["write_reads"] is False and saved["write_policy"] == "user"
    with pytest.raises(ValueError, match="write_reads=False"):  # refused before writing
        train(replace(cfg, out=str(tmp_path / "bad"), adapter={"write_mode": "message"}))
    assert not (tmp_path / "bad" / "adapter").exists()


def test_batched_read_free_history_write_is_the_served_turn_by_turn_write(chat_backbone):
    """write_history and HistoryWriter batch a read-free history's passes; the chat model writes
    one turn per call with write_tokens: the states agree."""
    from agentmem.model.history import HistoryWriter, encode_turns
    from agentmem.model.passes import write_tokens

    dm, tok = attached(chat_backbone, write_policy="user", **READ_FREE)
    history = episodes(1)[0].history
    served = dm.new_state()
    for enc in encode_turns(tok, history):
        served = write_tokens(dm, torch.tensor([enc.input_ids]), served,
                              spans=[enc.written_spans("user")])
    batched = write_history(dm, tok, history)
    torch.testing.assert_close(batched.tensors, served.tensors, atol=1e-5, rtol=1e-4)
    assert batched.tokens_written.tolist() == served.tokens_written.tolist()
    writer = HistoryWriter(dm, tok)
    writer(history[:4])  # a cached prefix, then the rest
    torch.testing.assert_close(writer(history).tensors, served.tensors, atol=1e-5, rtol=1e-4)
