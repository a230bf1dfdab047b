"""Process entry points of the concurrency tests (a module, so forkserver children can import it)."""

from __future__ import annotations

import random
import warnings

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


def counting_updater(url: str, schema: str | None, worker: int, n: int, start, out) -> None:
    """Call ``update`` n times on thread "shared" with the default retries; report through ``out``
    (worker, errors of the calls that gave up): a give-up is counted, not fatal."""
    random.seed(worker)
    repo = _repo(url, schema)
    repo.setup()
    errors = []
    start.wait(timeout=120)
    for step in range(n):
        try:
            repo.update("agent", "shared", bump, metadata={"worker": worker, "step": step})
        except Exception as e:  # noqa: BLE001 - the test counts every kind of give-up
            errors.append(f"{type(e).__name__}: {e}")
    out.put((worker, errors))
    repo.close()


def chatter(url: str, schema: str | None, backbone: str, worker: int, n: int, start, out) -> None:
    """``n`` ``DeltaMemChatModel.invoke`` calls on thread "chat" through ``RepositoryMemoryStore``;
    reports (worker, each reply's ``response_metadata["memory"]``) through ``out``."""
    from agentmem.chat.chat_model import DeltaMemChatModel
    from store import RepositoryMemoryStore

    random.seed(worker)
    torch.manual_seed(worker)
    warnings.filterwarnings("ignore", "no δ-mem adapter ships")
    model = DeltaMemChatModel(backbone=backbone, max_tokens=4,
                              store=RepositoryMemoryStore(_repo(url, schema)))
    model.invoke("Hello.", config={"configurable": {"thread_id": f"warm-up-{worker}"}})
    start.wait(timeout=120)
    memory = [model.invoke(chat_turn(worker, step), config={
        "configurable": {"thread_id": "chat", "agent_id": "agent"}}).response_metadata["memory"]
        for step in range(n)]
    out.put((worker, memory))
    model.store.repository.close()


def chat_turn(worker: int, step: int) -> str:
    """The user message of a worker's turn (unique per turn)."""
    return f"Worker {worker}, turn {step}: remember {worker * 1000 + step}."
