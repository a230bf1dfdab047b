"""Benchmark of the memory store on an SQLite file and on PostgreSQL.

Usage: ``python benchmarks/store.py [--postgres-url URL] [--puts N] [--reads N]``

Uses the default backbone's TSW state shape (SmolLM2-135M: L=30, N=1, r=8 → [1, 30, 1, 8, 8],
7,680 bytes of raw tensors). Prints a table, writes ``benchmarks/results/store.{json,md}``, and
prints one JSON line last: per database ``row_bytes`` (database growth per stored checkpoint:
SQLite pages, or PostgreSQL's table + TOAST + indexes), ``put_ms_median``, ``latest_ms_median``,
``latest_ms_p99`` and ``prune_10k_s`` (pruning a thread of 10,000 checkpoints to its last 10).
PostgreSQL runs when ``--postgres-url`` or ``AGENTMEM_TEST_POSTGRES_URL`` names a server; it uses
a throw-away schema.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# This script is named store.py like the package it measures: put the repository root, not this
# folder, first on the import path, so ``import store`` finds the package (hence E402 below).
# ruff: noqa: E402
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch
from sqlalchemy import Engine, text

from agentmem import DeltaMemConfig, MemoryState
from store import MemoryRepository, make_engine
from store import queries as q
from store.codec import encode_state

RESULTS = Path(__file__).parent / "results"
SHAPE = (1, 30, 1, 8, 8)  # [B, L, N, r, r] of SmolLM2-135M-Instruct with the default config
PRUNE_ROWS, PRUNE_KEEP = 10_000, 10


def default_state(seed: int, tokens: int) -> MemoryState:
    """A random state of the default backbone's shape, with realistic id strings."""
    g = torch.Generator().manual_seed(seed)
    fingerprint = hashlib.sha256(b"adapter").hexdigest()  # as agentmem.model.attach makes them
    return MemoryState(torch.randn(*SHAPE, generator=g), torch.tensor([tokens]),
                       tuple(range(SHAPE[1])), fingerprint, "llama-9f3a1c02b7e4d615",
                       DeltaMemConfig())


def timed(fn: Callable[[], Any], n: int) -> list[float]:
    """Wall time of n calls, in milliseconds."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append((time.perf_counter() - t) * 1e3)
    return out


def p99(xs: list[float]) -> float:
    return statistics.quantiles(xs, n=100, method="inclusive")[98]


def stored_bytes(engine: Engine) -> int:
    """Bytes the database holds for the store: the SQLite file, or the PostgreSQL relations."""
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
            return pages * conn.exec_driver_sql("PRAGMA page_size").scalar()
        return conn.execute(text("SELECT pg_total_relation_size('memory_checkpoints') + "
                                 "pg_total_relation_size('memory_threads')")).scalar()


def seed_thread(repo: MemoryRepository, agent: str, thread: str, n: int) -> None:
    """n checkpoints in one thread, as n puts would leave them, written in one transaction."""
    head = repo.put(agent, thread, default_state(0, 0), parent=None)
    enc = encode_state(default_state(0, 0))
    now = datetime.now(UTC)
    with repo.engine.begin() as conn:
        pk = conn.execute(q.THREAD_PK, q.thread_params(agent, thread)).scalar_one()
        rows, parent = [], head.checkpoint_id
        for seq in range(1, n):
            cid = uuid.uuid4().hex
            rows.append({"checkpoint_id": cid, "thread_pk": pk, "seq": seq, "agent_id": agent,
                         "thread_id": thread, "parent_checkpoint_id": parent, "created_at": now,
                         "metadata": "{}", **q.state_columns(enc)})
            parent = cid
        conn.execute(q.C.insert(), rows)
        last = conn.execute(q.BY_ID_SEQ.with_only_columns(q.C.c.id),
                            {**q.thread_params(agent, thread), "cid": parent}).scalar_one()
        conn.execute(q.T.update().where(q.T.c.thread_pk == pk).values(head_id=last))


def run(engine: Engine, puts: int, reads: int) -> dict[str, float]:
    """Measure one database; the engine's schema must be empty."""
    repo = MemoryRepository(engine)
    repo.setup()
    head = repo.put("agent-0", "thread-0", default_state(0, 0), parent=None).checkpoint_id
    for i in range(20):  # warm the pool and the statement cache
        head = repo.put("agent-0", "thread-0", default_state(i, i), parent=head).checkpoint_id
        repo.latest("agent-0", "thread-0")
    before = stored_bytes(engine)
    states = [default_state(i, i) for i in range(puts)]
    put_ms = []
    for state in states:
        t = time.perf_counter()
        head = repo.put("agent-0", "thread-0", state, parent=head).checkpoint_id
        put_ms.append((time.perf_counter() - t) * 1e3)
    row_bytes = (stored_bytes(engine) - before) / puts
    latest_ms = timed(lambda: repo.latest("agent-0", "thread-0"), reads)

    seed_thread(repo, "agent-1", "long", PRUNE_ROWS)
    assert len(repo.history("agent-1", "long")) == PRUNE_ROWS
    bytes_full = stored_bytes(engine)
    t = time.perf_counter()
    pruned = repo.prune("agent-1", "long", keep_last=PRUNE_KEEP)
    prune_s = time.perf_counter() - t
    assert pruned == PRUNE_ROWS - PRUNE_KEEP and repo.latest("agent-1", "long") is not None
    return {"row_bytes": round(row_bytes, 1), "put_ms_median": statistics.median(put_ms),
            "put_ms_p99": p99(put_ms), "latest_ms_median": statistics.median(latest_ms),
            "latest_ms_p99": p99(latest_ms), "prune_10k_s": prune_s,
            "db_mb_before_prune": bytes_full / 2**20,
            "db_mb_after_prune": stored_bytes(engine) / 2**20}


def run_sqlite(puts: int, reads: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(str(Path(tmp) / "bench.sqlite3"))
        try:
            return run(engine, puts, reads)
        finally:
            engine.dispose()


def run_postgres(url: str, puts: int, reads: int) -> dict[str, float]:
    schema = f"agentmem_bench_{uuid.uuid4().hex[:12]}"
    engine = make_engine(url, schema=schema)
    admin = make_engine(url)
    try:
        return run(engine, puts, reads)
    finally:
        engine.dispose()
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


KEYS = ["row_bytes", "put_ms_median", "put_ms_p99", "latest_ms_median", "latest_ms_p99",
        "prune_10k_s", "db_mb_before_prune", "db_mb_after_prune"]


def table(results: dict[str, dict[str, float] | None]) -> str:
    """A Markdown table, one column per database."""
    names = list(results)
    lines = ["| metric | " + " | ".join(names) + " |", "|---|" + "---:|" * len(names)]
    for key in KEYS:
        cells = ["n/a" if results[n] is None else f"{results[n][key]:.3f}" for n in names]
        lines.append(f"| {key} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=os.environ.get("AGENTMEM_TEST_POSTGRES_URL"))
    ap.add_argument("--puts", type=int, default=1000)
    ap.add_argument("--reads", type=int, default=2000)
    args = ap.parse_args()
    torch.manual_seed(0)
    results: dict[str, dict[str, float] | None] = {"sqlite": run_sqlite(args.puts, args.reads)}
    results["postgresql"] = (run_postgres(args.postgres_url, args.puts, args.reads)
                             if args.postgres_url else None)
    state_bytes = len(default_state(0, 0).to_bytes())
    md = (f"state shape {list(SHAPE)} fp32: {7680} tensor bytes, {state_bytes} safetensors "
          f"bytes; {args.puts} puts, {args.reads} reads; {platform.platform()}\n\n"
          + table(results))
    print(md)
    payload = {"state_shape": list(SHAPE), "state_bytes": state_bytes, **{
        name: None if r is None else {k: round(v, 4) for k, v in r.items()}
        for name, r in results.items()}}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "store.md").write_text(md + "\n")
    (RESULTS / "store.json").write_text(json.dumps(payload, indent=2) + "\n")
    print(json.dumps(payload))


if __name__ == "__main__":
    main()
