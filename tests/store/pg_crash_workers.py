"""Process entry points of tests/store/test_store_pg_crash.py (a module, so forkserver and spawn
children can import it).

A writer appends checkpoints to one thread until told to stop. Each step has ONE checkpoint id,
kept across every retry of that step (``put``/``update`` with ``checkpoint_id=``), so a commit
whose reply was lost is found again instead of being written twice. Every acknowledged write is
appended to the writer's ack file (one JSON line, flushed and fsynced before the next write
starts), so the test knows exactly which writes the store confirmed even if the writer dies.
Typed store errors are counted by class; anything else is recorded with its traceback.
"""

from __future__ import annotations

import json
import os
import time
import traceback
import uuid
from collections import Counter

import torch
from store_helpers import bump, make_state

from store import MemoryRepository, StoreError, make_engine
from store.errors import CommitUnknownError

AGENT = "crash-agent"


def writer(url: str, mode: str, thread: str, worker: int, ack_path: str, result_path: str,
           stop, retry_s: float) -> None:
    """Append to ``thread`` with ``update`` (mode "update": threads shared by writers, advisory
    lock) or ``put`` on the last acknowledged head (mode "put": a thread of this writer alone)
    until ``stop`` is set; then write a JSON summary to ``result_path``."""
    torch.set_num_threads(1)
    repo = MemoryRepository(make_engine(url), lock_timeout_s=10.0, retry_s=retry_s)
    errors: Counter[str] = Counter()
    unexpected: list[str] = []
    acks = 0
    head: str | None = None  # mode "put": the last acknowledged checkpoint of our thread
    step = 0
    pending: str | None = None  # the checkpoint id of the step being written (kept on retries)
    fd = os.open(ack_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        while not stop.is_set():
            if pending is None:
                pending = uuid.uuid4().hex
            meta = {"writer": worker, "step": step}
            try:
                if mode == "update":
                    info = repo.update(AGENT, thread, bump, metadata=meta, retries=50,
                                       checkpoint_id=pending)
                else:
                    if head is not None and step % 4 == 0:  # a read too: typed while down,
                        latest = repo.latest(AGENT, thread)  # and it sees every acked write
                        if latest is None or latest.checkpoint_id != head:
                            unexpected.append(f"latest() is {latest and latest.checkpoint_id}, "
                                              f"acknowledged head is {head}")
                    info = repo.put(AGENT, thread, make_state(step, tokens=step), parent=head,
                                    metadata=meta, checkpoint_id=pending)
            except StoreError as e:
                errors[type(e).__name__] += 1
                if isinstance(e, CommitUnknownError) and e.checkpoint_id != pending:
                    unexpected.append(f"CommitUnknownError names {e.checkpoint_id}, not {pending}")
                time.sleep(0.05)
                continue  # the same step again, with the same checkpoint id
            except Exception:  # not a typed store error: a library bug
                errors["UNTYPED:" + traceback.format_exc().strip().splitlines()[-1][:120]] += 1
                if len(unexpected) < 5:
                    unexpected.append(traceback.format_exc())
                time.sleep(0.05)
                continue
            if info.checkpoint_id != pending:
                unexpected.append(f"wrote {info.checkpoint_id}, asked for {pending}")
            line = json.dumps({"writer": worker, "mode": mode, "thread": thread, "step": step,
                               "cid": info.checkpoint_id, "seq": info.seq, "t": time.time()})
            os.write(fd, (line + "\n").encode())
            os.fsync(fd)
            acks += 1
            head, pending, step = info.checkpoint_id, None, step + 1
    finally:
        os.close(fd)
        summary = {"worker": worker, "mode": mode, "thread": thread, "acks": acks,
                   "errors": dict(errors), "unexpected": unexpected, "pending": pending}
        tmp = result_path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(summary, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, result_path)
        try:
            repo.engine.dispose()
        except Exception:
            pass
