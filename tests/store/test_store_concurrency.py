"""Many writer processes on one thread, and a writer killed mid-stream (SQLite and PostgreSQL)."""

from __future__ import annotations

import multiprocessing as mp
import os
import signal
import time

import pytest
import torch
from store_helpers import make_state, states_equal

from store import MemoryRepository, make_engine

WORKERS, CALLS = 8, 50


@pytest.fixture(scope="module")
def ctx():
    """Children fork from a server that has already imported torch, agentmem and store (the
    server ignores sys.path changes, so it preloads installed packages only)."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["torch", "agentmem", "store", "sqlalchemy"])
    return context


def test_parallel_updates_lose_nothing(ctx, target) -> None:
    repo = MemoryRepository(make_engine(target.url, schema=target.schema))
    first = repo.put("agent", "shared", make_state(0, zeros=True, tokens=0), parent=None)
    start = ctx.Barrier(WORKERS)
    procs = [ctx.Process(target=_entry("updater"),
                         args=(target.url, target.schema, w, CALLS, start, 10_000))
             for w in range(WORKERS)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert [p.exitcode for p in procs] == [0] * WORKERS

    hist = repo.history("agent", "shared")
    assert len(hist) == WORKERS * CALLS + 1
    assert [h.seq for h in hist] == list(range(WORKERS * CALLS, -1, -1))
    assert all(h.parent_checkpoint_id == older.checkpoint_id
               for h, older in zip(hist, hist[1:], strict=False))
    assert hist[-1].checkpoint_id == first.checkpoint_id
    counts = {w: sum(h.metadata.get("worker") == w for h in hist) for w in range(WORKERS)}
    assert counts == dict.fromkeys(range(WORKERS), CALLS)
    head = repo.latest("agent", "shared")  # every update saw the one before: +1 each, exactly
    assert head.tokens_written == WORKERS * CALLS
    assert torch.equal(head.state.tensors, torch.full((1, 30, 1, 8, 8), float(WORKERS * CALLS)))
    repo.close()


def test_a_killed_writer_leaves_a_consistent_database(ctx, target) -> None:
    engine = make_engine(target.url, schema=target.schema)
    repo = MemoryRepository(engine)
    head = repo.put("agent", "stream", make_state(0, tokens=0), parent=None).checkpoint_id
    done = ctx.Value("q", 0, lock=False)
    proc = ctx.Process(target=_entry("streamer"), args=(target.url, target.schema, head, done))
    proc.start()
    deadline = time.monotonic() + 120
    while done.value < 40 and time.monotonic() < deadline and proc.is_alive():
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.join(timeout=30)
    assert proc.exitcode == -signal.SIGKILL
    reported = done.value
    assert reported >= 40
    engine.dispose()

    repo = MemoryRepository(make_engine(target.url, schema=target.schema))  # open afresh
    if target.name == "sqlite":
        with repo.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA integrity_check").scalar() == "ok"
    head = repo.latest("agent", "stream")
    # The kill may land after a commit and before its report: at most one step more.
    assert head.tokens_written in (reported, reported + 1)
    hist = repo.history("agent", "stream")
    assert [h.seq for h in hist] == list(range(head.tokens_written, -1, -1))
    assert hist[0].checkpoint_id == head.checkpoint_id
    for h in hist:  # every row verifies and holds exactly what was written
        got = repo.get("agent", "stream", h.checkpoint_id)
        assert states_equal(got.state, make_state(h.seq, tokens=h.seq))
    nxt = repo.put("agent", "stream", make_state(0), parent=head.checkpoint_id)
    assert nxt.seq == head.tokens_written + 1
    repo.close()


def _entry(name: str):
    import store_workers

    return getattr(store_workers, name)
