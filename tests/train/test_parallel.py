"""Data-parallel training: two processes (torchrun, gloo on the CPU) train the adapter one process
trains on the same global batches, write files from the main process only, and resume under any
number of processes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from agentmem.cli import main
from agentmem.data.episodes import write_jsonl
from agentmem.data.synthetic import generate

ROOT = Path(__file__).resolve().parents[2]
ADAPTER = "delta_mem_adapter.safetensors"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def torchrun(args: list[str], processes: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --nproc_per_node N -m agentmem.cli ARGS` (accelerate picks the group up)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("ACCELERATE_", "MASTER_")) and k not in ("WORLD_SIZE", "RANK")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    env["OMP_NUM_THREADS"] = "1"
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node",
                           str(processes), "--master_addr", "127.0.0.1", "--master_port",
                           str(free_port()), "-m", "agentmem.cli", *args],
                          env=env, capture_output=True, text=True, timeout=900)


def adapter(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "adapter" / ADAPTER))


def log_rows(run: Path) -> list[dict]:
    return [json.loads(r) for r in (run / "train_log.jsonl").read_text().splitlines() if r]


def assert_same_run(a: Path, b: Path) -> None:
    """Same adapter to float noise (sums over two processes add in another order), same logs."""
    wa, wb = adapter(a), adapter(b)
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], atol=2e-5, rtol=1e-4)
    ra, rb = log_rows(a), log_rows(b)
    assert [r["step"] for r in ra] == [r["step"] for r in rb]
    for x, y in zip(ra, rb, strict=True):
        for key in ("loss", "ce_memory_only", "ce_context", "beta_mean", "views_context",
                    "distill_kl", "match_loss", "gate_loss", "preserve_kl"):
            assert (key in x) == (key in y), key
            if key in x:
                assert x[key] == pytest.approx(y[key], rel=1e-4, abs=1e-6), key


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    """Synthetic episodes (their facts' turns and statements are known: every term applies)."""
    path = tmp_path_factory.mktemp("parallel") / "train.jsonl"
    write_jsonl(path, generate("train", 12, seed=3, facts=2, fillers=1, sessions=1, update_prob=0))
    return path


def base_args(data: Path, backbone: Path) -> list[str]:
    return ["train", "--data", str(data), "--backbone", str(backbone), "--device", "cpu",
            "--steps", "3", "--batch-size", "5", "--lr", "1e-2", "--warmup", "0", "--probe-every", "1",
            "--save-every", "1"]


@pytest.mark.slow
def test_two_processes_train_what_one_process_trains(chat_backbone, data, tmp_path):
    # an odd batch (3 + 2 rows), every loss term on, history-visible and window views, a write
    # budget that drops the oldest turns
    args = [*base_args(data, chat_backbone), "--context-views", "0.4", "--window-views", "0.5",
            "--budget-tokens", "120",
            "--match-weight", "0.5", "--gate-weight", "0.5", "--preserve-weight", "0.5",
            "--preserve-rows", "3", "--preserve-prompts", "4", "--distill-weight", "0.5"]
    done = torchrun([*args, "--out", str(tmp_path / "two")])
    assert done.returncode == 0, done.stderr[-3000:]
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert_same_run(tmp_path / "two", tmp_path / "one")
    # gradient accumulation: the same batch as three micro-batches of 2, 2 and 1 rows
    assert main([*args, "--grad-accum", "3", "--out", str(tmp_path / "accumulated")]) == 0
    assert_same_run(tmp_path / "accumulated", tmp_path / "one")
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in adapter(tmp_path / "two").values())
    # files come from the main process only: one log row per step, one card, one checkpoint
    assert [r["step"] for r in log_rows(tmp_path / "two")] == [1, 2, 3]
    card = (tmp_path / "two" / "adapter" / "README.md").read_text()
    assert "- processes: 2 (data parallel, batch 5 = 3 per process)" in card
    assert "- processes: 1\n" in (tmp_path / "one" / "adapter" / "README.md").read_text()
    state = json.loads((tmp_path / "two" / "checkpoint" / "trainer_state.json").read_text())
    assert state["processes"] == [2] and state["step"] == 3
    leftovers = [p.name for p in (tmp_path / "two").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert done.stderr.count("memory estimate per process") == 1


@pytest.mark.slow
def test_a_run_resumes_exactly_under_another_number_of_processes(chat_backbone, data, tmp_path):
    args = [*base_args(data, chat_backbone), "--steps", "4", "--context-views", "0.5"]
    # the first sitting: 2 processes, each running its rows as 2 micro-batches
    first = torchrun([*args, "--stop-after", "2", "--grad-accum", "2",
                      "--out", str(tmp_path / "resumed")])
    assert first.returncode == 0, first.stderr[-3000:]
    assert [r["step"] for r in log_rows(tmp_path / "resumed")] == [1, 2]
    assert main([*args, "--out", str(tmp_path / "resumed")]) == 0  # one process finishes it
    assert main([*args, "--out", str(tmp_path / "straight")]) == 0
    assert_same_run(tmp_path / "resumed", tmp_path / "straight")
    card = (tmp_path / "resumed" / "adapter" / "README.md").read_text()
    assert "- processes: 1; sittings: 2, 1" in card


@pytest.mark.slow
def test_a_batch_smaller_than_the_launch_is_refused_before_anything_is_written(
        chat_backbone, data, tmp_path):
    args = [*base_args(data, chat_backbone), "--batch-size", "1", "--out", str(tmp_path / "o")]
    done = torchrun(args)
    assert done.returncode != 0
    assert "agentmem train: error: batch_size 1 < 2 processes" in done.stderr
    assert not (tmp_path / "o").exists()
