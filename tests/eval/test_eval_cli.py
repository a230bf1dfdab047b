"""`agentmem eval` end to end on a tiny backbone, every regime, plus scoring and prompts."""

from __future__ import annotations

import json

import pytest
import torch

from agentmem.cli import main
from agentmem.data.episodes import Episode, write_jsonl
from agentmem.model.attach import attach_delta_mem
from agentmem.model.backbones import load_backbone
from agentmem.model.history import HistoryWriter, write_history
from agentmem.model.prompts import REGIMES, ReadPrompt, read_prompt
from agentmem.model.scoring import score_candidates

NAMES = ["Marisol", "Rex", "Porto", "Tobias"]


def episode(i: int, name: str) -> Episode:
    other = NAMES[(NAMES.index(name) + 1) % len(NAMES)]
    history = [{"role": "user", "content": "The weather is nice today."},
               {"role": "assistant", "content": "Noted."},
               {"role": "user", "content": f"My sister is called {name}."},
               {"role": "assistant", "content": "Got it."}]
    return Episode(id=f"e{i}", history=history, question="What is my sister's name?", answer=name,
                   candidates=NAMES, category="single" if i % 2 else "update",
                   meta={"fact_turn": 2, "swap": {"turn": 2, "value": other,
                                                  "content": f"My sister is called {other}."}})


def test_eval_every_regime_end_to_end(chat_backbone, tmp_path, capsys):
    data = tmp_path / "eps.jsonl"
    write_jsonl(data, [episode(i, n) for i, n in enumerate(NAMES)])
    out = tmp_path / "out"
    assert main(["eval", "--data", str(data), "--backbone", str(chat_backbone), "--adapter", "none",
                 "--regimes", ",".join(REGIMES), "--out", str(out), "--max-new-tokens", "4",
                 "--window", "2"]) == 0
    last = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert set(last) == set(REGIMES) and all(v["n"] == 4 for v in last.values())
    assert all(0 <= v["mc_acc"] <= 1 and 0 <= v["f1"] <= 1 for v in last.values())
    results = json.loads((out / "results.json").read_text())
    mem = results["summary"]["memory-only"]
    assert mem["n_swap"] == 4 and mem["swap_follow"] is not None and mem["chance"] == 0.25
    assert set(mem["categories"]) == {"single", "update"}
    assert results["summary"]["window"]["swap_follow"] is None  # swap test: memory regimes only
    assert (out / "chart.png").stat().st_size > 0 and "| memory-only |" in (out / "results.md").read_text()


def test_candidate_scoring_prefers_the_copied_value(chat_backbone):
    """A likelihood we can compute by hand: scoring equals the summed token log-probs."""
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    dm = attach_delta_mem(model)
    prompt = ReadPrompt([{"role": "user", "content": "What is my sister's name?"}], False)
    total, mean = score_candidates(dm, tok, prompt, ["Marisol", "Rex"], None)
    for cand, t in zip(["Marisol", "Rex"], total.tolist(), strict=True):
        text = tok.apply_chat_template(prompt.messages + [{"role": "assistant", "content": cand}],
                                       tokenize=False)
        ids = tok(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
        head = tok(tok.apply_chat_template(prompt.messages, tokenize=False,
                                           add_generation_prompt=True),
                   add_special_tokens=False)["input_ids"]
        n = len(tok(cand, add_special_tokens=False)["input_ids"]) + 1  # + end-of-turn marker
        with torch.no_grad():
            logp = torch.log_softmax(model(ids).logits[0, :-1], -1)
        want = sum(logp[p - 1, ids[0, p]].item() for p in range(len(head), len(head) + n))
        assert t == pytest.approx(want, abs=1e-3)
    n_marisol = len(tok("Marisol", add_special_tokens=False)["input_ids"]) + 1
    assert mean[0] == pytest.approx(total[0] / n_marisol)


def test_regime_prompts():
    hist = [{"role": "user", "content": f"u{i}"} if i % 2 == 0 else
            {"role": "assistant", "content": f"a{i}"} for i in range(8)]
    assert read_prompt("no-memory", hist, "q?").messages == [{"role": "user", "content": "q?"}]
    assert read_prompt("memory+window", hist, "q?", window=2).messages[:-1] == hist[-2:]
    assert read_prompt("full-context", hist, "q?").messages[:-1] == hist
    assert read_prompt("memory-only", hist, "q?").uses_memory
    assert not read_prompt("bm25", hist, "q?").uses_memory
    assert read_prompt("bm25", hist, "u4 a5", bm25_k=1).messages[:-1] == hist[4:6]
    with pytest.raises(ValueError, match="regime"):
        read_prompt("telepathy", hist, "q?")


def test_history_writer_prefix_cache_equals_fresh_writes(chat_backbone):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    dm = attach_delta_mem(model)
    long = episode(0, "Rex").history + [{"role": "user", "content": "My dog is Rex."},
                                        {"role": "assistant", "content": "Nice."}]
    writer = HistoryWriter(dm, tok)
    first = writer(long[:4])
    assert len(writer._cache) == 2
    cached = writer(long)
    assert len(writer._cache) == 3  # only the new turn was written
    fresh = write_history(dm, tok, long)
    assert torch.allclose(cached.tensors, fresh.tensors, atol=1e-6)
    assert cached.tokens_written.item() == fresh.tokens_written.item() > first.tokens_written.item()


def test_history_writer_writes_an_over_budget_history_once(chat_backbone, monkeypatch):
    torch.manual_seed(0)
    model, tok = load_backbone(str(chat_backbone))
    dm = attach_delta_mem(model)
    hist = episode(0, "Rex").history * 3
    writer = HistoryWriter(dm, tok, budget_tokens=12)
    first = writer(hist)
    fresh = write_history(dm, tok, hist, budget_tokens=12)
    assert torch.allclose(first.tensors, fresh.tensors, atol=1e-6)
    calls = []
    monkeypatch.setattr("agentmem.model.history.write_history", lambda *a, **k: calls.append(a))
    assert writer(list(hist)) is first and not calls  # the same conversation: reused, not rewritten
    other = hist[:-1] + [{"role": "assistant", "content": "Something else entirely."}]
    writer(other)
    assert len(calls) == 1  # another history (same length, other last turn) is written anew


def test_eval_max_minutes_reports_what_was_done(chat_backbone, tmp_path, capsys):
    data = tmp_path / "eps.jsonl"
    write_jsonl(data, [episode(i, n) for i, n in enumerate(NAMES)])
    out = tmp_path / "out"
    assert main(["eval", "--data", str(data), "--backbone", str(chat_backbone), "--adapter", "none",
                 "--regimes", "no-memory,memory-only", "--out", str(out), "--no-generate",
                 "--max-minutes", "0", "--device", "cpu"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert results["meta"]["episodes"] == 0 and results["meta"]["episodes_requested"] == 4


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_eval_on_cuda_matches_cpu(chat_backbone, tmp_path, capsys):
    data = tmp_path / "eps.jsonl"
    write_jsonl(data, [episode(i, n) for i, n in enumerate(NAMES)])
    got = []
    for device in ("cpu", "cuda"):
        torch.manual_seed(0)  # the fresh adapter's init
        assert main(["eval", "--data", str(data), "--backbone", str(chat_backbone), "--adapter",
                     "none", "--regimes", ",".join(REGIMES), "--out", str(tmp_path / device),
                     "--max-new-tokens", "4", "--device", device]) == 0
        got.append(json.loads(capsys.readouterr().out.strip().splitlines()[-1]))
    for regime in REGIMES:
        assert got[0][regime]["mc_acc"] == got[1][regime]["mc_acc"], regime
        assert abs(got[0][regime]["f1"] - got[1][regime]["f1"]) <= 0.25, regime


def _eval_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


def test_shards_merge_to_the_unsharded_evaluation(chat_backbone, tmp_path, capsys):
    data = tmp_path / "eps.jsonl"
    write_jsonl(data, [episode(i, n) for i, n in enumerate(NAMES + NAMES[:1])])  # 5: uneven shards
    common = ["eval", "--data", str(data), "--backbone", str(chat_backbone), "--adapter", "none",
              "--regimes", "no-memory,memory-only,memory+window", "--max-new-tokens", "3",
              "--device", "cpu"]
    torch.manual_seed(0)  # the fresh adapter's init, the same in every run
    assert main(common + ["--out", str(tmp_path / "whole")]) == 0
    whole = _eval_json(capsys)
    for k in (1, 2):
        torch.manual_seed(0)
        assert main(common + ["--shard", f"{k}/2", "--out", str(tmp_path / f"s{k}")]) == 0
        assert sum(1 for _ in open(tmp_path / f"s{k}" / "rows.jsonl")) == 3 * (2 if k == 1 else 3)
    capsys.readouterr()
    assert main(["eval-merge", str(tmp_path / "s2"), str(tmp_path / "s1"),
                 "--out", str(tmp_path / "merged")]) == 0
    assert _eval_json(capsys) == whole
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    unsharded = json.loads((tmp_path / "whole" / "results.json").read_text())
    assert merged["summary"] == unsharded["summary"]
    assert merged["meta"]["shards"] == ["1/2", "2/2"] and merged["meta"]["episodes"] == 5


def test_merge_combines_baselines_of_any_adapter_with_memory_regimes(chat_backbone, tmp_path,
                                                                      capsys):
    """A new adapter needs only its memory regimes run: the adapter-free regimes of a run with
    another adapter join them, and the result equals one run of every regime."""
    data = tmp_path / "eps.jsonl"
    write_jsonl(data, [episode(i, n) for i, n in enumerate(NAMES + NAMES[:1])])

    def run(regimes: str, out: str, seed: int, *extra: str) -> dict:
        torch.manual_seed(seed)  # the fresh adapter's init: seed 1 is another adapter
        assert main(["eval", "--data", str(data), "--backbone", str(chat_backbone), "--adapter",
                     "none", "--regimes", regimes, "--max-new-tokens", "3", "--device", "cpu",
                     "--out", str(tmp_path / out), *extra]) == 0
        return json.loads((tmp_path / out / "results.json").read_text())

    whole = run("no-memory,window,memory-only,memory+window", "whole", 0)
    run("window,no-memory", "base", 1)
    run("memory-only,memory+window", "mem1", 0, "--shard", "1/2")
    run("memory-only,memory+window", "mem2", 0, "--shard", "2/2")
    capsys.readouterr()
    assert main(["eval-merge", *(str(tmp_path / f) for f in ("mem2", "base", "mem1")),
                 "--out", str(tmp_path / "merged")]) == 0
    merged = json.loads((tmp_path / "merged" / "results.json").read_text())
    assert merged["summary"] == whole["summary"]
    assert list(merged["summary"]) == ["no-memory", "window", "memory-only", "memory+window"]
    meta = merged["meta"]
    assert meta["adapter_fingerprint"] == whole["meta"]["adapter_fingerprint"]
    assert meta["baseline_adapter_fingerprints"] != [meta["adapter_fingerprint"]]
    assert meta["episodes"] == 5 and meta["data_sha256"] == whole["meta"]["data_sha256"]

    # the baselines' own parts (a run resumed with another adapter) join as well
    run("window,no-memory", "base_head", 2, "--limit", "2")
    run("window,no-memory", "base_tail", 3, "--offset", "2")
    capsys.readouterr()
    assert main(["eval-merge", *(str(tmp_path / f) for f in ("base_head", "mem1", "base_tail", "mem2")),
                 "--out", str(tmp_path / "parts")]) == 0
    parts = json.loads((tmp_path / "parts" / "results.json").read_text())
    assert parts["summary"] == whole["summary"]
    assert parts["meta"]["adapter_fingerprint"] == whole["meta"]["adapter_fingerprint"]

    # a run stopped early, resumed with --offset: the parts merge into the whole run
    run("memory-only,memory+window", "head", 0, "--limit", "3")
    run("memory-only,memory+window", "tail", 0, "--offset", "3")
    capsys.readouterr()
    assert main(["eval-merge", str(tmp_path / "tail"), str(tmp_path / "head"), str(tmp_path / "base"),
                 "--out", str(tmp_path / "resumed")]) == 0
    resumed = json.loads((tmp_path / "resumed" / "results.json").read_text())
    assert resumed["summary"] == whole["summary"]
    assert resumed["meta"]["episodes"] == resumed["meta"]["episodes_requested"] == 5
    run("memory-only,memory+window", "overlap", 0, "--offset", "2")
    capsys.readouterr()
    assert main(["eval-merge", str(tmp_path / "head"), str(tmp_path / "overlap"),
                 "--out", str(tmp_path / "bad")]) == 2
    assert "['e2'] of regimes" in capsys.readouterr().err and not (tmp_path / "bad").exists()

    run("no-memory", "base3", 1, "--limit", "3")  # a run stopped early covers fewer episodes
    capsys.readouterr()
    folders = [str(tmp_path / f) for f in ("mem1", "mem2", "base3")]
    assert main(["eval-merge", *folders, "--out", str(tmp_path / "m3")]) == 2
    assert "--common-episodes" in capsys.readouterr().err and not (tmp_path / "m3").exists()
    assert main(["eval-merge", *folders, "--common-episodes", "--out", str(tmp_path / "m3")]) == 0
    got = json.loads((tmp_path / "m3" / "results.json").read_text())
    assert got["meta"]["common_episodes"] == 3
    assert {s["n"] for s in got["summary"].values()} == {3}


def test_merge_refuses_mismatched_folders(chat_backbone, tmp_path, capsys):
    data = tmp_path / "eps.jsonl"
    write_jsonl(data, [episode(i, n) for i, n in enumerate(NAMES)])
    other = tmp_path / "other.jsonl"
    write_jsonl(other, [episode(i, n) for i, n in enumerate(reversed(NAMES))])

    def common(regimes: str = "no-memory", seed: int = 0, path=data) -> list[str]:
        torch.manual_seed(seed)  # the fresh adapter's init
        return ["eval", "--data", str(path), "--backbone", str(chat_backbone), "--adapter", "none",
                "--regimes", regimes, "--no-generate", "--device", "cpu"]

    assert main(common() + ["--shard", "1/2", "--out", str(tmp_path / "a")]) == 0
    assert main(common() + ["--shard", "1/2", "--limit", "2", "--out", str(tmp_path / "b")]) == 0
    assert main(common("window") + ["--shard", "2/2", "--out", str(tmp_path / "c")]) == 0
    assert main(common("memory-only") + ["--shard", "1/2", "--out", str(tmp_path / "f")]) == 0
    assert main(common("memory-only", seed=1) + ["--shard", "2/2", "--out", str(tmp_path / "g")]) == 0
    assert main(common("window,memory-only", seed=1) + ["--shard", "1/2",
                                                         "--out", str(tmp_path / "h")]) == 0
    assert main(common(path=other) + ["--shard", "2/2", "--out", str(tmp_path / "o")]) == 0
    assert main(common("window") + ["--shard", "1/2", "--window", "1", "--out", str(tmp_path / "w")]) == 0
    capsys.readouterr()
    for folders, message in ([["a", "b"], "in two folders"], [["a", "c"], "different episodes"],
                             [["f", "g"], "adapter_fingerprint"], [["f", "h"], "adapter_fingerprint"],
                             [["c", "h"], "regime window is in two groups"],
                             [["a", "o"], "data_sha256"], [["a", "w"], "options"],
                             [["a", "missing"], "not an eval folder"]):
        assert main(["eval-merge", *(str(tmp_path / f) for f in folders),
                     "--out", str(tmp_path / "m")]) == 2, folders
        assert message in capsys.readouterr().err, folders
    assert not (tmp_path / "m").exists()  # nothing half-written
    assert main(common() + ["--shard", "3/2", "--out", str(tmp_path / "d")]) == 2
    assert "K/N" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: exit status 2 with the reason
        main(common() + ["--offset", "-1", "--out", str(tmp_path / "d")])
    assert "--offset" in capsys.readouterr().err and not (tmp_path / "d").exists()


def test_generation_only_episodes_past_gen_limit_are_not_counted(chat_backbone, tmp_path, capsys):
    """LoCoMo-style episodes have no candidates: past --gen-limit nothing is measured, so they
    are neither evaluated nor counted in n."""
    eps = [Episode(id=f"g{i}", history=episode(i, n).history, question="What is my sister's name?",
                   answer=n) for i, n in enumerate(NAMES)]
    data = tmp_path / "gen.jsonl"
    write_jsonl(data, eps)
    torch.manual_seed(0)
    assert main(["eval", "--data", str(data), "--backbone", str(chat_backbone), "--adapter", "none",
                 "--regimes", "no-memory,memory-only", "--max-new-tokens", "2", "--gen-limit", "1",
                 "--device", "cpu", "--out", str(tmp_path / "out")]) == 0
    assert {v["n"] for v in _eval_json(capsys).values()} == {1}
    assert sum(1 for _ in open(tmp_path / "out" / "rows.jsonl")) == 2
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["meta"]["episodes"] == 1 and results["meta"]["episodes_requested"] == 4
