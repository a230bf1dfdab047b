"""The preservation term (`agentmem train --preserve-weight`): the teacher replies and their
cache, the views, what the term trains (it lowers KL(frozen ‖ memory) and touches only δ-mem
parameters), and its wiring through `train` and the CLI."""

from __future__ import annotations

import json
import random
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
from agentmem.train.preserve import (
    TeacherReply,
    preservation_loss,
    preservation_views,
    teacher_replies,
)


def episodes(n: int = 4):
    return generate("train", n, seed=3, facts=2, fillers=1, sessions=1, update_prob=0)


@pytest.fixture
def dm_tok(chat_backbone):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    # corrections 20× the default init: reading the memory visibly moves the distributions
    cfg = DeltaMemConfig(write_mode="message", init_gain=1.0)
    return attach_delta_mem(model, cfg), tok


def test_teacher_replies_are_the_frozen_greedy_replies_and_are_cached(dm_tok, tmp_path):
    dm, tok = dm_tok
    path = tmp_path / "replies.jsonl"
    replies = teacher_replies(dm, tok, 5, path, max_new_tokens=6, batch_size=2)
    assert len(replies) == 5 and len({r.request for r in replies}) == 5
    enc = tok.apply_chat_template([{"role": "user", "content": replies[0].request}],
                                  add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with dm.memory(None):  # the frozen model's own greedy reply
        out = dm.model.generate(**enc, max_new_tokens=6, do_sample=False,
                                pad_token_id=tok.pad_token_id)
    assert replies[0].reply == tok.decode(out[0, enc["input_ids"].shape[1]:],
                                          skip_special_tokens=True).strip()
    assert teacher_replies(dm, tok, 5, path, max_new_tokens=6) == replies  # read back
    path.write_text(path.read_text().replace(replies[0].reply, "EDITED", 1) if replies[0].reply
                    else path.read_text())
    assert teacher_replies(dm, tok, 4, path, max_new_tokens=6) == replies[:4]  # other n: regenerated


def test_views_read_their_rows_memory_behind_the_shown_window():
    histories = [[{"role": "user", "content": f"h{b}-{i}"} for i in range(6)] for b in range(2)]
    replies = [TeacherReply("Write a poem.", "Roses.", False), TeacherReply("Hi!", "Hello.", True)]
    rows, pairs, cut = preservation_views(random.Random(0), histories, replies, 5, (0, 4))
    assert rows == [0, 1, 0, 1, 0]
    for b, (prompt, reply) in zip(rows, pairs, strict=True):
        assert len(prompt) in (1, 5) and prompt[:-1] == histories[b][len(histories[b]) - len(prompt) + 1:]
        assert (prompt[-1]["content"], reply) in {(r.request, r.reply) for r in replies}
    assert cut == [dict((r.reply, r.cut) for r in replies)[p[1]] for p in pairs]


def _views(dm, tok, eps, replies, write=True):
    histories = [e.history for e in eps]
    state, _ = write_histories_grad(dm, tok, histories if write else [[] for _ in eps])
    rows, pairs, cut = preservation_views(random.Random(1), histories, replies, 4, (0, 4))
    return preservation_loss(dm, tok, state, rows, pairs, cut)


def test_the_term_lowers_the_kl_and_touches_only_delta_mem_parameters(dm_tok, tmp_path):
    dm, tok = dm_tok
    replies = teacher_replies(dm, tok, 6, tmp_path / "r.jsonl", max_new_tokens=8)
    eps = episodes(4)
    frozen = {k: v.clone() for k, v in dm.model.state_dict().items() if "delta_mem" not in k}
    with torch.no_grad():
        assert _views(dm, tok, eps, replies, write=False).item() == \
            pytest.approx(0.0, abs=1e-6)  # nothing written: the frozen model exactly
        before = _views(dm, tok, eps, replies).item()
    assert before > 1e-3
    opt = torch.optim.Adam(list(dm.parameters()), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        loss = _views(dm, tok, eps, replies)
        loss.backward()
        assert all(p.grad is None for n, p in dm.model.named_parameters() if "delta_mem" not in n)
        opt.step()
    with torch.no_grad():
        after = _views(dm, tok, eps, replies).item()
    assert after < 0.3 * before, (before, after)
    assert all(torch.equal(v, dm.model.state_dict()[k]) for k, v in frozen.items())


def test_train_logs_the_term_only_when_weighted_and_refuses_bad_options(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    base = TrainConfig(data=[str(data)], out="", backbone=str(chat_backbone), steps=2, batch_size=2,
                       probe_every=0, preserve_prompts=3, preserve_rows=3)
    for weight in (0.0, 1.5):
        out = tmp_path / str(weight)
        train(replace(base, out=str(out), preserve_weight=weight))
        log = [json.loads(r) for r in (out / "train_log.jsonl").read_text().splitlines()]
        assert all(("preserve_kl" in r) == bool(weight) for r in log)
        assert (out / "teacher_replies.jsonl").exists() == bool(weight)
        if weight:
            assert all(r["preserve_kl"] >= 0 for r in log)
    for bad in ({"preserve_weight": -1.0}, {"preserve_weight": float("nan")},
                {"preserve_weight": 1.0, "preserve_rows": 0}, {"preserve_windows": ()},
                {"preserve_windows": (0, -2)}):
        with pytest.raises(ValueError, match="preserve"):
            train(replace(base, out=str(tmp_path / "bad"), **bad))
    assert not (tmp_path / "bad").exists()


def test_cli_passes_the_preserve_flags_and_refuses_bad_ones(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    args = ["train", "--data", str(data), "--backbone", str(chat_backbone), "--steps", "1",
            "--batch-size", "2", "--device", "cpu", "--probe-every", "0"]
    assert main([*args, "--out", str(tmp_path / "on"), "--preserve-weight", "2", "--preserve-rows",
                 "2", "--preserve-prompts", "3", "--preserve-windows", "0,2"]) == 0
    card = (tmp_path / "on" / "adapter" / "README.md").read_text()
    assert '"preserve_weight": 2.0' in card and '"preserve_windows": [\n  0,\n  2\n ]' in card
    for flag, bad in (("--preserve-weight", "-1"), ("--preserve-rows", "0"),
                      ("--preserve-prompts", "-3"), ("--preserve-windows", "0,x"),
                      ("--preserve-windows", "-1")):
        with pytest.raises(SystemExit):
            main([*args, "--out", str(tmp_path / "bad"), flag, bad])
    assert not (tmp_path / "bad").exists()
