"""Writers contending for one thread with the library's defaults: processes calling ``update``,
asyncio tasks calling ``AsyncMemoryRepository.update``, and processes of
``DeltaMemChatModel.invoke`` through ``RepositoryMemoryStore`` (SQLite and PostgreSQL).
None may give up, lose a write or store one twice. benchmarks/contention.py measures the same."""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import queue
import random
import time
from collections import Counter

import pytest
import torch
from store_helpers import bump, make_state
from store_workers import chat_turn

from store import AsyncMemoryRepository, MemoryRepository, make_engine
from tests.chat.tiny import tiny_backbone_dir

PROCS, UPDATES = 4, 250  # ~5 s per database on 2 cores
TASKS, TASK_UPDATES = 8, 50
TURNS = 50  # chat turns per process: 200 saves on one thread (~4 s; starting the models ~12 s)


@pytest.fixture(scope="module")
def ctx():
    """Children fork from a server that has already imported torch, transformers, agentmem and
    store (the server ignores sys.path changes, so it preloads installed packages only)."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["torch", "transformers", "langchain_core", "agentmem",
                                    "agentmem.chat.chat_model", "store", "sqlalchemy"])
    return context


def test_processes_updating_one_thread_never_give_up(ctx, target) -> None:
    repo = MemoryRepository(make_engine(target.url, schema=target.schema))
    repo.put("agent", "shared", make_state(0, zeros=True, tokens=0), parent=None)
    reports = _run(ctx, "counting_updater", [(target.url, target.schema, w, UPDATES)
                                             for w in range(PROCS)])
    assert {w: errors for w, errors in reports} == {w: [] for w in range(PROCS)}

    hist = repo.history("agent", "shared")[:-1]  # without the first put
    assert len(hist) == PROCS * UPDATES
    steps = Counter((h.metadata["worker"], h.metadata["step"]) for h in hist)
    assert set(steps) == {(w, s) for w in range(PROCS) for s in range(UPDATES)}
    assert max(steps.values()) == 1
    head = repo.latest("agent", "shared")  # each update saw the one before: +1 each
    assert head.tokens_written == PROCS * UPDATES
    assert torch.equal(head.state.tensors, torch.full((1, 30, 1, 8, 8), float(PROCS * UPDATES)))
    repo.close()


async def abump(state):
    await asyncio.sleep(0)  # yields mid-update, so tasks interleave
    return bump(state)


@pytest.mark.parametrize("fn", [bump, abump], ids=["sync_fn", "async_fn"])
def test_asyncio_tasks_updating_one_thread_never_give_up(engine, fn) -> None:
    random.seed(0)

    async def main() -> list[str]:
        repo = AsyncMemoryRepository(engine)
        await repo.setup()
        errors: list[str] = []

        async def task(worker: int) -> None:
            for step in range(TASK_UPDATES):
                try:
                    await repo.update("a", "t", fn, metadata={"worker": worker, "step": step})
                except Exception as e:  # noqa: BLE001 - every kind of give-up is counted
                    errors.append(f"{type(e).__name__}: {e}")

        await asyncio.gather(*(task(w) for w in range(TASKS)))
        return errors

    assert asyncio.run(main()) == []
    repo = MemoryRepository(engine)
    hist = repo.history("a", "t")
    assert len(hist) == TASKS * TASK_UPDATES
    assert Counter((h.metadata["worker"], h.metadata["step"]) for h in hist) == Counter(
        {(w, s): 1 for w in range(TASKS) for s in range(TASK_UPDATES)})
    assert repo.latest("a", "t").tokens_written == TASKS * TASK_UPDATES - 1  # bump(None) holds 0


@pytest.mark.slow  # 12-22 s per database on 2 cores (most of it starting 4 models)
@pytest.mark.filterwarnings("ignore:no δ-mem adapter ships")
def test_chat_processes_on_one_thread_save_every_turn_once(ctx, target) -> None:
    from agentmem.chat.turn_plan import WrittenLog, fingerprint

    folder = tiny_backbone_dir("qwen2", "qwen")
    reports = _run(ctx, "chatter", [(target.url, target.schema, folder, w, TURNS)
                                    for w in range(PROCS)])
    memory = [m for _, ms in reports for m in ms]
    assert len(memory) == PROCS * TURNS  # every reply came back ...
    assert [m["error"] for m in memory if not m["saved"]] == []  # ... and was saved

    repo = MemoryRepository(make_engine(target.url, schema=target.schema))
    hist = repo.history("agent", "chat")
    repo.close()
    assert len(hist) == PROCS * TURNS
    ids = [m["checkpoint_id"] for m in memory]
    assert len(set(ids)) == len(ids) and set(ids) == {h.checkpoint_id for h in hist}
    assert [h.seq for h in hist] == list(range(PROCS * TURNS - 1, -1, -1))
    assert all(h.parent_checkpoint_id == older.checkpoint_id and h.tokens_written >
               older.tokens_written for h, older in zip(hist, hist[1:], strict=False))
    # Each row's newest log entries are its user message and answer: every turn once.
    turn_of = {fingerprint({"role": "user", "content": chat_turn(w, s)}): (w, s)
               for w in range(PROCS) for s in range(TURNS)}
    stored = Counter(turn_of[fp] for h in hist
                     for fp in WrittenLog.from_metadata(h.metadata).thread("chat").tail[-2:]
                     if fp in turn_of)
    assert stored == Counter(turn_of.values())


def _run(ctx, worker: str, args: list[tuple]) -> list:
    """Run one process per ``args`` behind a start barrier; their reports, in arrival order."""
    import store_workers

    start, out = ctx.Barrier(len(args)), ctx.Queue()
    procs = [ctx.Process(target=getattr(store_workers, worker), args=(*a, start, out))
             for a in args]
    for p in procs:
        p.start()
    reports, deadline = [], time.monotonic() + 300
    while len(reports) < len(procs) and time.monotonic() < deadline:
        try:
            reports.append(out.get(timeout=1))
        except queue.Empty:  # a crashed child never reports: stop waiting once all are gone
            if not any(p.is_alive() for p in procs) and out.empty():
                break
    for p in procs:
        p.join(timeout=60)
    assert [p.exitcode for p in procs] == [0] * len(procs)
    return reports
