"""Training: a step lowers the loss and touches only δ-mem; resume equals an uninterrupted run."""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file

from agentmem.cli import main
from agentmem.data.episodes import Episode, write_jsonl
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.config import DeltaMemConfig
from agentmem.model.history import write_histories_grad
from agentmem.model.prompts import read_prompt
from agentmem.model.scoring import answer_loss
from agentmem.train import TrainConfig, train
from agentmem.train.loop import GROUP_BATCHES, draw_batch, lr_at, train_step, turn_groups

NAMES = ["Marisol", "Rex", "Porto", "Tobias", "Ingrid", "Kenji"]


def episodes(n: int = 6) -> list[Episode]:
    out = []
    for i in range(n):
        name = NAMES[i % len(NAMES)]
        history = [{"role": "user", "content": f"My sister is called {name}."},
                   {"role": "assistant", "content": "Got it."},
                   {"role": "user", "content": "The weather is nice today."},
                   {"role": "assistant", "content": "Noted."}]
        out.append(Episode(id=f"e{i}", history=history, question="What is my sister's name?",
                           answer=name, candidates=NAMES, category="single"))
    return out


@pytest.mark.parametrize("write_mode", ["message", "token"])
def test_one_step_lowers_loss_and_changes_only_delta_mem(chat_backbone, write_mode):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    frozen = {n: p.detach().clone() for n, p in model.named_parameters()}
    dm = attach_delta_mem(model, DeltaMemConfig(write_mode=write_mode))
    before = {n: p.detach().clone() for n, p in dm.adapter_state_dict().items()}
    cfg = TrainConfig(data=[], out="", steps=10, batch_size=4, lr=1e-2, warmup=0.0,
                      context_views=0.0)
    eps = episodes()
    opt = torch.optim.AdamW(list(dm.parameters()), lr=cfg.lr, weight_decay=0.0)

    def fixed_batch_loss() -> float:  # the batch train_step(step=0) draws
        import random
        rng = random.Random(0)
        batch = [eps[rng.randrange(len(eps))] for _ in range(cfg.batch_size)]
        with torch.no_grad():
            state, _ = write_histories_grad(dm, tok, [e.history for e in batch])
            prompts = [read_prompt("memory-only", e.history, e.question) for e in batch]
            return answer_loss(dm, tok, prompts, [e.answer for e in batch], state).mean().item()

    loss0 = fixed_batch_loss()
    row = train_step(dm, tok, eps, 0, cfg, opt)
    assert abs(row["ce_memory_only"] - loss0) < 1e-4
    assert fixed_batch_loss() < loss0
    changed = [n for n, p in dm.adapter_state_dict().items() if not torch.equal(p, before[n])]
    assert len(changed) == len(before)  # every δ-mem tensor got a gradient step
    for name, p in model.named_parameters():
        if "delta_mem" not in name:
            assert torch.equal(p, frozen[name.replace(".base_layer", "")]), name


@pytest.mark.parametrize("bucket_turns", [False, True])
def test_resume_reproduces_uninterrupted_run(chat_backbone, tmp_path, bucket_turns):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    common = dict(data=[str(data)], backbone=str(chat_backbone), steps=4, batch_size=2, lr=5e-3,
                  save_every=2, context_views=0.5, probe_every=1,  # the probe must not perturb
                  bucket_turns=bucket_turns)
    whole = train(TrainConfig(out=str(tmp_path / "a"), **common))
    train(TrainConfig(out=str(tmp_path / "b"), stop_after=2, **common))  # first sitting
    resumed = train(TrainConfig(out=str(tmp_path / "b"), **common))  # resumes at step 2
    a = load_file(str(whole / "delta_mem_adapter.safetensors"))
    b = load_file(str(resumed / "delta_mem_adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    log = [json.loads(r) for r in (tmp_path / "b" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [1, 2, 3, 4]
    assert all(r["write_passes"] == 2 for r in log)  # every history: two turns
    assert (tmp_path / "b" / "loss.png").stat().st_size > 0
    card = (resumed / "README.md").read_text()
    assert "steps: 4" in card and "train.jsonl" in card


def test_schedule_warms_up_then_decays():
    cfg = TrainConfig(data=[], out="", steps=100, lr=1.0, warmup=0.1)
    lrs = [lr_at(s, cfg) for s in range(100)]
    assert lrs[0] == pytest.approx(0.1) and lrs[9] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False)) and lrs[-1] < 0.01


@pytest.fixture
def ten_seconds_per_step(monkeypatch):
    """A fake training clock: every step takes exactly 10 s."""
    import agentmem.train.loop as loop

    clock = {"t": 0.0}
    real_step = loop.train_step

    def slow_step(*args, **kwargs):
        clock["t"] += 10.0
        return real_step(*args, **kwargs)

    monkeypatch.setattr(loop.time, "perf_counter", lambda: clock["t"])
    monkeypatch.setattr(loop, "train_step", slow_step)


def test_max_minutes_fits_the_schedule_and_resume_keeps_the_plan(chat_backbone, tmp_path,
                                                                  ten_seconds_per_step):
    """A fake clock at 10 s per step: a 2-minute budget plans 10 steps (85 %) of the asked 100."""
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "run"), backbone=str(chat_backbone),
                      steps=100, batch_size=2, memory_only_steps=50, max_minutes=2.0, device="cpu")
    train(cfg)
    log = [json.loads(r) for r in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == list(range(1, 11))  # 85 % of 120 s at 10 s per step
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["plan"] == {"steps": 10, "memory_only_steps": 5}
    assert log[-1]["lr"] < 0.1 * log[5]["lr"]  # the cosine ends with the planned 10, not 100
    assert log[0]["lr"] == pytest.approx(cfg.lr / 10)  # warm-up of a short run (10 % of 100)
    again = TrainConfig(**{**cfg.__dict__, "max_minutes": None, "steps": 100})
    train(again)  # resuming a finished plan adds no steps
    assert len((tmp_path / "run" / "train_log.jsonl").read_text().splitlines()) == 10


def test_resolve_device():
    from agentmem.model.devices import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="expected auto"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA"):
            resolve_device("cuda")


def test_a_multi_process_eval_and_a_train_without_its_launcher_are_refused_before_writing(
        chat_backbone, tmp_path, monkeypatch, capsys):
    from agentmem.errors import UnsupportedLaunchError

    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    monkeypatch.setenv("WORLD_SIZE", "2")  # what `accelerate launch --num_processes 2` sets
    for var in ("MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "LOCAL_WORLD_SIZE"):
        monkeypatch.delenv(var, raising=False)  # ... but no launcher started the processes
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "o"), backbone=str(chat_backbone), steps=1,
                      batch_size=2, probe_every=0)
    with pytest.raises(UnsupportedLaunchError, match="torchrun --nproc_per_node N"):
        train(cfg)
    assert main(["eval", "--data", str(data), "--backbone", str(chat_backbone), "--adapter", "none",
                 "--regimes", "no-memory", "--out", str(tmp_path / "e")]) == 2
    assert "agentmem eval: error: WORLD_SIZE=2" in capsys.readouterr().err
    assert not (tmp_path / "o").exists() and not (tmp_path / "e").exists()
    monkeypatch.setenv("WORLD_SIZE", "1")  # a single-process launch is fine
    train(replace(cfg, out=str(tmp_path / "one")))


def test_runs_unchanged_under_a_single_process_accelerate_launch(chat_backbone, tmp_path):
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    args = ["train", "--data", str(data), "--backbone", str(chat_backbone), "--steps", "2",
            "--batch-size", "2", "--probe-every", "0", "--device", "cpu"]
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).resolve().parents[2]), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--cpu",
                           "--num_processes", "1", "--num_machines", "1", "--mixed_precision", "no",
                           "--dynamo_backend", "no", "-m", "agentmem.cli", *args,
                           "--out", str(tmp_path / "launched")],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert main([*args, "--out", str(tmp_path / "direct")]) == 0
    launched = load_file(str(tmp_path / "launched" / "adapter" / "delta_mem_adapter.safetensors"))
    direct = load_file(str(tmp_path / "direct" / "adapter" / "delta_mem_adapter.safetensors"))
    assert launched.keys() == direct.keys()
    assert all(torch.allclose(launched[k], direct[k], atol=1e-6) for k in direct)
    assert any(not torch.equal(launched[k], torch.zeros_like(launched[k])) for k in launched)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_training_step_matches_cpu(chat_backbone):
    """The same step on CUDA and on the CPU: same loss, same updated adapter (to float noise)."""
    rows, params = [], []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)
        model, tok = load_backbone(str(chat_backbone))
        dm = attach_delta_mem(model.to(device), DeltaMemConfig(write_mode="message"))
        cfg = TrainConfig(data=[], out="", steps=10, batch_size=4, lr=1e-2, warmup=0.0,
                          context_views=0.5)
        opt = torch.optim.AdamW(list(dm.parameters()), lr=cfg.lr, weight_decay=0.0)
        rows.append(train_step(dm, tok, episodes(), 0, cfg, opt))
        params.append({k: v.cpu() for k, v in dm.adapter_state_dict().items()})
    assert rows[0]["loss"] == pytest.approx(rows[1]["loss"], rel=1e-4)
    for k in params[0]:
        torch.testing.assert_close(params[1][k], params[0][k], rtol=1e-3, atol=1e-5)


def test_init_adapter_starts_from_its_weights(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    common = dict(data=[str(data)], backbone=str(chat_backbone), batch_size=2, lr=5e-3, device="cpu")
    first = train(TrainConfig(out=str(tmp_path / "a"), steps=2,
                              adapter={"write_mode": "message", "rank": 4}, **common))
    # no steps: the saved adapter is the one it started from, rank 4 although the default is 8
    again = train(TrainConfig(out=str(tmp_path / "b"), steps=0, init_adapter=str(first), **common))
    a = load_file(str(first / "delta_mem_adapter.safetensors"))
    b = load_file(str(again / "delta_mem_adapter.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((again / "delta_mem_config.json").read_text())["rank"] == 4
    # and what it started from is the trained adapter, not a fresh rank-4 initialisation
    fresh = train(TrainConfig(out=str(tmp_path / "c"), steps=0,
                              adapter={"write_mode": "message", "rank": 4}, **common))
    c = load_file(str(fresh / "delta_mem_adapter.safetensors"))
    assert c.keys() == a.keys() and any(not torch.equal(a[k], c[k]) for k in a)


def test_init_adapter_from_another_backbone_is_refused(chat_backbone, tmp_path):
    from agentmem.errors import AdapterError
    from tests.train.conftest import make_chat_backbone

    other = make_chat_backbone(tmp_path / "other", seed=1)
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    foreign = train(TrainConfig(data=[str(data)], out=str(tmp_path / "a"), backbone=str(other),
                                steps=1, batch_size=2, device="cpu"))
    with pytest.raises(AdapterError, match="trained for backbone"):
        train(TrainConfig(data=[str(data)], out=str(tmp_path / "b"), backbone=str(chat_backbone),
                          steps=1, batch_size=2, device="cpu", init_adapter=str(foreign)))


def test_max_minutes_with_huge_nominal_steps_still_warms_up_fast(chat_backbone, tmp_path,
                                                                  ten_seconds_per_step):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    cfg = TrainConfig(data=[str(data)], out=str(tmp_path / "run"), backbone=str(chat_backbone),
                      steps=100_000, batch_size=2, memory_only_steps=40_000, max_minutes=2.0,
                      warmup=0.05, device="cpu")
    train(cfg)
    log = [json.loads(r) for r in (tmp_path / "run" / "train_log.jsonl").read_text().splitlines()]
    state = json.loads((tmp_path / "run" / "checkpoint" / "trainer_state.json").read_text())
    assert state["plan"] == {"steps": 10, "memory_only_steps": 4}
    assert log[4]["lr"] == pytest.approx(cfg.lr)  # warm-up over 5 steps (5 % of 100), not 5,000


def _draw(eps: list[Episode], cfg: TrainConfig, step: int) -> list[Episode]:
    import random
    rng = random.Random(cfg.seed * 1_000_003 + step)  # the batch train_step(step) draws
    return [eps[rng.randrange(len(eps))] for _ in range(cfg.batch_size)]


def test_memory_probe_reads_the_neighbours_state(chat_backbone):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    dm = attach_delta_mem(model, DeltaMemConfig())
    cfg = TrainConfig(data=[], out="", steps=10, batch_size=4, lr=1e-2, warmup=0.0,
                      context_views=0.0, probe_every=3)
    # histories of different lengths: the tiny tokenizer may not tell the names apart
    eps = [replace(e, history=e.history[: 2 + 2 * (i % 2)] * (1 + i % 3))
           for i, e in enumerate(episodes())]
    opt = torch.optim.AdamW(list(dm.parameters()), lr=cfg.lr, weight_decay=0.0)
    logged = [train_step(dm, tok, eps, s, cfg, opt) for s in range(2)]
    assert not any("memory_gain" in r for r in logged)  # steps 1 and 2 of every 3: no probe
    batch = _draw(eps, cfg, 2)
    rows = [i for i in range(len(batch)) if batch[i - 1] is not batch[i]]
    assert rows, "the test needs a batch with two different neighbouring episodes"
    prompts = [read_prompt("memory-only", batch[i].history, batch[i].question) for i in rows]
    answers = [batch[i].answer for i in rows]
    with torch.no_grad():  # the parameters step 2 sees before its update
        state, _ = write_histories_grad(dm, tok, [e.history for e in batch])
        own = answer_loss(dm, tok, prompts, answers, state.rows(rows)).mean().item()
        other = answer_loss(dm, tok, prompts, answers,
                            state.rows([(i - 1) % len(batch) for i in rows])).mean().item()
    row = train_step(dm, tok, eps, 2, cfg, opt)
    assert row["ce_other_memory"] == pytest.approx(other, abs=1e-4)
    assert row["memory_gain"] == pytest.approx(other - own, abs=1e-4)
    assert abs(other - own) > 1e-4  # another episode's state reads differently from its own


def test_memory_probe_skips_context_views_and_single_rows(chat_backbone):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    dm = attach_delta_mem(model, DeltaMemConfig())
    eps = episodes()
    for kw in ({"batch_size": 4, "context_views": 1.0}, {"batch_size": 1, "context_views": 0.0},
               {"batch_size": 4, "context_views": 0.0, "probe_every": 0}):
        cfg = TrainConfig(data=[], out="", steps=10, lr=1e-3, warmup=0.0,
                          **{"probe_every": 1, **kw})
        opt = torch.optim.AdamW(list(dm.parameters()), lr=cfg.lr, weight_decay=0.0)
        assert "memory_gain" not in train_step(dm, tok, eps, 0, cfg, opt), kw


def varied(lengths: list[int]) -> list[Episode]:
    """Episodes whose histories have the given numbers of turns (a user message and a reply each)."""
    return [Episode(id=f"v{i}", history=[{"role": r, "content": f"{r} {k}"} for k in range(n)
                                         for r in ("user", "assistant")],
                    question="q?", answer="a") for i, n in enumerate(lengths)]


def test_turn_groups_partition_by_length():
    rng = random.Random(0)
    eps = varied([rng.choice([2, 2, 4, 10, 24]) for _ in range(100)])
    groups = turn_groups(eps, batch_size=2)
    assert sorted(i for g in groups for i in g) == list(range(100))  # every episode, once
    assert all(len(g) >= GROUP_BATCHES * 2 for g in groups) and len(groups) == 100 // 16
    turns = [[len(eps[i].history) // 2 for i in g] for g in groups]
    assert all(max(a) <= min(b) for a, b in zip(turns, turns[1:], strict=False))  # sorted by length
    assert turn_groups(eps[:5], batch_size=8) == [sorted(range(5), key=lambda i: len(eps[i].history))]


def test_bucketed_batches_cost_fewer_write_passes_and_keep_episodes_equally_likely():
    rng = random.Random(0)
    eps = varied([2] * 400 + [rng.randrange(2, 25) for _ in range(400)])
    groups, draws = turn_groups(eps, batch_size=8), Counter()
    passes = {False: [], True: []}
    for step in range(2000):
        for bucketed in (False, True):
            idx = draw_batch(random.Random(step), len(eps), 8, groups if bucketed else None)
            passes[bucketed].append(max(len(eps[i].history) for i in idx))
            if bucketed:
                assert len(set(idx)) == 8 and any(set(idx) <= set(g) for g in groups)
                draws.update(idx)
    mean = {k: sum(v) / len(v) for k, v in passes.items()}
    assert mean[True] < 0.5 * mean[False]  # one-fact batches no longer pay for a long neighbour
    # each episode drawn about 2000·8/800 = 20 times: no group is favoured
    per_group = [sum(draws[i] for i in g) / len(g) for g in groups]
    assert min(per_group) > 15 and max(per_group) < 25


def test_draw_batch_repeats_only_when_the_group_is_smaller_than_the_batch():
    idx = draw_batch(random.Random(1), 3, 5, [[0, 1, 2]])
    assert len(idx) == 5 and set(idx) <= {0, 1, 2}
    unbucketed = draw_batch(random.Random(1), 3, 5)
    assert len(unbucketed) == 5 and set(unbucketed) <= {0, 1, 2}


def test_train_draws_bucketed_batches_only_when_asked(chat_backbone, tmp_path):
    """`train` hands the length groups to every step: the logged write passes are those of the
    batches `draw_batch` gives with the groups (and without them when bucket_turns is off)."""
    eps = varied([1] * 16 + [3] * 16)  # two length groups at batch 2
    data = tmp_path / "train.jsonl"
    write_jsonl(data, eps)
    for bucket in (False, True):
        cfg = TrainConfig(data=[str(data)], out=str(tmp_path / str(bucket)), backbone=str(chat_backbone),
                          steps=8, batch_size=2, lr=1e-3, probe_every=0, bucket_turns=bucket)
        train(cfg)
        log = [json.loads(r) for r in (tmp_path / str(bucket) / "train_log.jsonl").read_text().splitlines()]
        groups = turn_groups(eps, 2) if bucket else None
        expected = [max(len(eps[i].history) // 2 for i in
                        draw_batch(random.Random(cfg.seed * 1_000_003 + s), len(eps), 2, groups))
                    for s in range(8)]
        assert [r["write_passes"] for r in log] == expected
    assert expected != [max(len(eps[i].history) // 2 for i in
                            draw_batch(random.Random(cfg.seed * 1_000_003 + s), len(eps), 2))
                        for s in range(8)]  # the two samplers differ on these steps


def test_cli_passes_bucket_turns(chat_backbone, tmp_path):
    data = tmp_path / "train.jsonl"
    write_jsonl(data, episodes())
    for flag, out in (([], "off"), (["--bucket-turns"], "on")):
        assert main(["train", "--data", str(data), "--out", str(tmp_path / out), "--backbone",
                     str(chat_backbone), "--steps", "1", "--batch-size", "2", "--device", "cpu",
                     "--probe-every", "0", *flag]) == 0
        card = (tmp_path / out / "adapter" / "README.md").read_text()
        assert f'"bucket_turns": {"true" if flag else "false"}' in card
