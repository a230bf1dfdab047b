"""Process entry points of the concurrency tests (a module, so forkserver children can import it)."""

from __future__ import annotations

import torch
from store_helpers import bump, make_state

from store import MemoryRepository, make_engine


def _repo(url: str, schema: str | None) -> MemoryRepository:
    torch.set_num_threads(1)
    return MemoryRepository(make_engine(url, schema=schema))


def updater(url: str, schema: str | None, worker: int, n: int, start, retries: int) -> None:
    """Call ``update`` n times on one shared thread, once every worker is ready."""
    repo = _repo(url, schema)
    repo.setup()
    start.wait(timeout=120)
    for _ in range(n):
        repo.update("agent", "shared", bump, retries=retries, backoff_s=0.001,
                    metadata={"worker": worker})
    repo.close()


def streamer(url: str, schema: str | None, head: str, done) -> None:
    """Advance a thread forever, reporting each committed step (its tokens) through ``done``."""
    repo = _repo(url, schema)
    step = 0
    while True:
        step += 1
        head = repo.put("agent", "stream", make_state(step, tokens=step), parent=head,
                        metadata={"step": step}).checkpoint_id
        done.value = step
