"""Writers contending for one memory thread, on an SQLite file and on PostgreSQL.

Usage: ``python benchmarks/contention.py [--quick] [--postgres-url URL | --no-postgres]
[--procs 4] [--updates 250] [--tasks 8] [--task-updates 50] [--turns 100]
[--backbone tiny|default] [--real-write]``

Three cases per database, each writing ONE thread of one agent from all its writers at once (they
start together at a barrier):

- ``update_procs``: ``--procs`` processes × ``--updates`` ``MemoryRepository.update`` calls;
- ``update_tasks``: ``--tasks`` asyncio tasks × ``--task-updates`` ``AsyncMemoryRepository.update``
  calls in one process;
- ``chat``: ``--procs`` processes × ``--turns`` ``DeltaMemChatModel.invoke`` calls through a
  ``store.RepositoryMemoryStore`` (the real turn engine: optimistic save, then the locked redo).
  The backbone is a 2-layer random Qwen2 built here (``--backbone default``: SmolLM2-135M, few
  turns). The write pass is a stub that adds 1 to every state entry and one token, so the head's
  counter counts the turns it holds; ``--real-write`` runs the backbone's write pass instead.

Per case: ``calls``, ``ok`` (calls that returned; chat: replies whose memory says saved),
``give_ups`` (calls that raised; chat: replies with ``saved=False``), ``errors`` (chat: invokes that
raised), ``rows`` (checkpoints the thread gained), ``lost`` (ok calls the thread does not hold),
``phantom`` (stored calls that were not reported ok), ``duplicates`` (one call stored twice),
``counter_ok`` (the head's counter equals the ok calls: every write saw the one before),
``per_s`` (ok calls per second from the first start to the last end), ``ms_p50``/``ms_p99`` (one
call's latency) and ``wall_s``. PostgreSQL runs in a throw-away schema of ``--postgres-url``
(default ``AGENTMEM_TEST_POSTGRES_URL`` or the local test server) and is skipped with a note when
the server cannot be reached. Prints a table, then one JSON line last.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import multiprocessing as mp
import os
import platform
import random
import statistics
import sys
import tempfile
import time
import uuid
import warnings
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

# benchmarks/store.py would shadow the ``store`` package: put the repository root first instead
# of this folder (hence E402 below).
# ruff: noqa: E402
_HERE = Path(__file__).resolve().parent
sys.path[:] = [str(_HERE.parent)] + [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import torch

from agentmem import DeltaMemConfig, MemoryState
from store import AsyncMemoryRepository, MemoryRepository, make_engine

AGENT, CHAT_AGENT, THREAD = "bench", "chat", "shared"
SHAPE = (1, 30, 1, 8, 8)  # [B, L, N, r, r] of the default backbone's state
LOCAL_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
# Imported once by the fork server. Not ``store``: the server's path starts at the working
# directory, where benchmarks/store.py may shadow it.
PRELOAD = ["torch", "sqlalchemy", "agentmem", "transformers", "langchain_core",
           "agentmem.chat.chat_model"]
# Byte-level ChatML; incremental (no default system message), as encode_chat needs.
CHATML = ("{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + "
          "'<|im_end|>\\n' }}{% endfor %}{% if add_generation_prompt %}"
          "{{ '<|im_start|>assistant\\n' }}{% endif %}")


# -- states and the tiny backbone ----------------------------------------------------------------

def zero_state() -> MemoryState:
    """An empty state of the default backbone's shape."""
    return MemoryState(torch.zeros(SHAPE), torch.tensor([0]), tuple(range(SHAPE[1])),
                       hashlib.sha256(b"adapter").hexdigest(), "llama-9f3a1c02b7e4d615",
                       DeltaMemConfig())


def bump(state: MemoryState | None) -> MemoryState:
    """The next state of a counter chain: every entry + 1, one more token (exact in fp32)."""
    s = zero_state() if state is None else state
    return MemoryState(s.tensors + 1, s.tokens_written + 1, s.layer_indices,
                       s.adapter_fingerprint, s.backbone_id, s.config)


def tiny_backbone(folder: Path, seed: int = 0) -> str:
    """A 2-layer random Qwen2 and a byte-level ChatML tokenizer saved in ``folder``."""
    import transformers as tf
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    tf.utils.logging.disable_progress_bar()
    special = ["<|pad|>", "<|im_start|>", "<|im_end|>"]  # ids 0, 1, 2 = pad, bos, eos
    vocab = {t: i for i, t in enumerate(special)}
    vocab.update({ch: len(special) + i for i, ch in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))})
    raw = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    raw.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    raw.decoder = decoders.ByteLevel()
    tok = tf.PreTrainedTokenizerFast(tokenizer_object=raw, pad_token=special[0],
                                     bos_token=special[1], eos_token=special[2])
    tok.chat_template = CHATML
    torch.manual_seed(seed)
    config = tf.Qwen2Config(vocab_size=len(tok), hidden_size=64, intermediate_size=96,
                            num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                            max_position_embeddings=4096, pad_token_id=0, bos_token_id=1,
                            eos_token_id=2)
    config._attn_implementation = "sdpa"
    model = tf.AutoModelForCausalLM.from_config(config).eval()
    model.generation_config.eos_token_id, model.generation_config.pad_token_id = 2, 0
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return str(folder)


def stub_write(backend: Any, chats: list[Any], states: list[MemoryState]) -> list[MemoryState]:
    """Stand-in for ``ChatBackend.write``: each row's state bumped once."""
    return [bump(s) for s in states]


# -- process workers (module level, so forkserver children import them) --------------------------

def _seed(worker: int) -> None:
    torch.set_num_threads(1)
    random.seed(worker)
    torch.manual_seed(worker)


def update_worker(url: str, schema: str | None, worker: int, n: int, start: Any, out: Any) -> None:
    """``n`` updates of the shared thread; reports the steps that returned and the errors."""
    _seed(worker)
    repo = MemoryRepository(make_engine(url, schema=schema))
    repo.setup()
    ok, errors, ms = [], [], []
    start.wait(timeout=300)
    t0 = time.monotonic()
    for step in range(n):
        t = time.monotonic()
        try:
            repo.update(AGENT, THREAD, bump, metadata={"worker": worker, "step": step})
            ok.append(step)
        except Exception as e:  # a give-up: counted, the worker goes on
            errors.append(f"{type(e).__name__}: {e}"[:300])
        ms.append((time.monotonic() - t) * 1e3)
    out.put({"worker": worker, "ok": ok, "errors": errors, "ms": ms, "t0": t0,
             "t1": time.monotonic()})
    repo.close()


def chat_worker(url: str, schema: str | None, backbone: str, real_write: bool, worker: int,
                n: int, max_tokens: int, start: Any, out: Any) -> None:
    """``n`` invokes on the shared thread; reports each reply's memory metadata."""
    from transformers.utils import logging as tf_logging

    from agentmem.chat.chat_model import DeltaMemChatModel
    from agentmem.chat.shared_backbone import ChatBackend
    from store import RepositoryMemoryStore

    _seed(worker)
    tf_logging.disable_progress_bar()
    warnings.filterwarnings("ignore", "no δ-mem adapter ships")
    if not real_write:
        ChatBackend.write = stub_write
    store = RepositoryMemoryStore(MemoryRepository(make_engine(url, schema=schema)))
    model = DeltaMemChatModel(backbone=backbone, max_tokens=max_tokens, store=store)
    model.invoke("warm-up", config={"configurable": {"thread_id": f"warm-up-{worker}",
                                                     "agent_id": CHAT_AGENT}})
    replies, errors, ms = [], [], []
    start.wait(timeout=600)
    t0 = time.monotonic()
    for step in range(n):
        t = time.monotonic()
        try:
            msg = model.invoke(turn_text(worker, step), config={"configurable": {
                "thread_id": THREAD, "agent_id": CHAT_AGENT}})
            replies.append({"step": step, **msg.response_metadata["memory"]})
        except Exception as e:
            errors.append(f"{type(e).__name__}: {e}"[:300])
        ms.append((time.monotonic() - t) * 1e3)
    out.put({"worker": worker, "replies": replies, "errors": errors, "ms": ms, "t0": t0,
             "t1": time.monotonic()})
    store.repository.close()


def turn_text(worker: int, step: int) -> str:
    return f"Worker {worker}, turn {step}: please remember the number {worker * 1000 + step}."


# -- cases ----------------------------------------------------------------------------------------

def run_procs(ctx: Any, target: Callable, args_of: Callable[[int], tuple], procs: int,
              timeout_s: float) -> tuple[list[dict], list[int | None]]:
    """Start ``procs`` workers behind one barrier; their reports and exit codes."""
    start, out = ctx.Barrier(procs), ctx.Queue()
    ps = [ctx.Process(target=target, args=(*args_of(w), start, out)) for w in range(procs)]
    for p in ps:
        p.start()
    reports, deadline = [], time.monotonic() + timeout_s
    while len(reports) < procs and time.monotonic() < deadline:
        try:
            reports.append(out.get(timeout=1.0))
        except Exception:  # queue.Empty: a crashed worker never reports
            if not any(p.is_alive() for p in ps) and out.empty():
                break
    for p in ps:
        p.join(timeout=30)
        if p.is_alive():
            p.kill()
    return reports, [p.exitcode for p in ps]


def tally(calls: int, ok: Iterable[Any], stored: list[Any], counter: int | None,
          t0: float, t1: float, ms: list[float], **extra: Any) -> dict[str, Any]:
    """The figures of one case from the calls reported ok and the calls the thread holds."""
    ok, seen = set(ok), Counter(stored)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else (ms or [0.0]) * 99
    return {"calls": calls, "ok": len(ok), "give_ups": calls - len(ok) - extra.get("errors", 0),
            **extra, "rows": len(stored), "lost": len(ok - set(seen)),
            "phantom": len(set(seen) - ok), "duplicates": sum(c - 1 for c in seen.values()),
            "counter_ok": None if counter is None else counter == len(ok),
            "per_s": round(len(ok) / max(t1 - t0, 1e-9), 1), "wall_s": round(t1 - t0, 2),
            "ms_p50": round(q[49], 1), "ms_p99": round(q[98], 1)}


def _timings(reports: list[dict]) -> tuple[float, float, list[float]]:
    """First start, last end and every call's milliseconds of the workers that reported."""
    return (min((r["t0"] for r in reports), default=0.0),
            max((r["t1"] for r in reports), default=0.0), [x for r in reports for x in r["ms"]])


def update_procs(ctx: Any, url: str, schema: str | None, procs: int, n: int) -> dict[str, Any]:
    repo = MemoryRepository(make_engine(url, schema=schema))
    repo.put(AGENT, THREAD, zero_state(), parent=None, metadata={"seed": True})
    reports, codes = run_procs(ctx, update_worker, lambda w: (url, schema, w, n), procs, 600)
    hist = [h for h in repo.history(AGENT, THREAD) if not h.metadata.get("seed")]
    head = repo.latest(AGENT, THREAD)
    repo.close()
    ok = [(r["worker"], s) for r in reports for s in r["ok"]]
    errors = [e for r in reports for e in r["errors"]]
    return {**tally(procs * n, ok, [(h.metadata["worker"], h.metadata["step"]) for h in hist],
                    int(head.tokens_written), *_timings(reports)),
            "exit_codes": codes, "first_errors": errors[:3]}


async def update_tasks(url: str, schema: str | None, tasks: int, n: int) -> dict[str, Any]:
    repo = AsyncMemoryRepository(MemoryRepository(make_engine(url, schema=schema)))
    await repo.setup()
    thread = THREAD + "-async"
    ok, errors, ms, start = [], [], [], asyncio.Barrier(tasks)

    async def task(worker: int) -> None:
        await start.wait()
        for step in range(n):
            t = time.monotonic()
            try:
                await repo.update(AGENT, thread, bump, metadata={"worker": worker, "step": step})
                ok.append((worker, step))
            except Exception as e:
                errors.append(f"{type(e).__name__}: {e}"[:300])
            ms.append((time.monotonic() - t) * 1e3)

    t0 = time.monotonic()
    await asyncio.gather(*(task(w) for w in range(tasks)))
    t1 = time.monotonic()
    hist = await repo.history(AGENT, thread)
    head = await repo.latest(AGENT, thread)
    await repo.close()
    stored = [(h.metadata["worker"], h.metadata["step"]) for h in hist]
    # The first update starts the thread from None: bump(None) holds 1, so rows == counter.
    return {**tally(tasks * n, ok, stored, None if head is None else int(head.tokens_written),
                    t0, t1, ms), "first_errors": errors[:3]}


def chat(ctx: Any, url: str, schema: str | None, args: argparse.Namespace) -> dict[str, Any]:
    from agentmem.chat.turn_plan import WrittenLog, fingerprint

    n, procs = args.turns, args.procs
    reports, codes = run_procs(
        ctx, chat_worker, lambda w: (url, schema, args.backbone_path, args.real_write, w, n,
                                     args.max_tokens), procs, 600)
    repo = MemoryRepository(make_engine(url, schema=schema))
    hist, head = repo.history(CHAT_AGENT, THREAD), repo.latest(CHAT_AGENT, THREAD)
    repo.close()
    turn_of = {fingerprint({"role": "user", "content": turn_text(w, s)}): (w, s)
               for w in range(procs) for s in range(n)}
    stored = [turn_of.get(fp) for h in hist
              for fp in WrittenLog.from_metadata(h.metadata).thread(THREAD).tail[-2:]
              if fp in turn_of]  # a row's newest log entries: its user message and answer
    replies = [(r["worker"], x) for r in reports for x in r["replies"]]
    ok = [(w, x["step"]) for w, x in replies if x["saved"]]
    cids = [x["checkpoint_id"] for _, x in replies if x["saved"]]
    counter = None if args.real_write or head is None else int(head.tokens_written)
    errors = [e for r in reports for e in r["errors"]]
    unsaved = [x["error"] for _, x in replies if not x["saved"]]
    return {**tally(procs * n, ok, stored, counter, *_timings(reports), errors=len(errors)),
            "replies": len(replies), "history": len(hist),
            "ids_distinct": len(set(cids)) == len(cids),
            "ids_stored": set(cids) == {h.checkpoint_id for h in hist},
            "exit_codes": codes, "first_errors": (errors + unsaved)[:3]}


# -- databases ------------------------------------------------------------------------------------

def run_database(ctx: Any, url: str, schema: str | None, args: argparse.Namespace) -> dict:
    engine = make_engine(url, schema=schema)
    MemoryRepository(engine).setup()  # once, before the writers race to create the tables
    engine.dispose()
    out: dict[str, Any] = {}
    out["update_procs"] = update_procs(ctx, url, schema, args.procs, args.updates)
    _show(url, "update_procs", out["update_procs"])
    out["update_tasks"] = asyncio.run(update_tasks(url, schema, args.tasks, args.task_updates))
    _show(url, "update_tasks", out["update_tasks"])
    if args.turns:
        out["chat"] = chat(ctx, url, schema, args)
        _show(url, "chat", out["chat"])
    return out


def run_sqlite(ctx: Any, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        return run_database(ctx, f"sqlite:///{Path(tmp) / 'contention.sqlite3'}", None, args)


def run_postgres(ctx: Any, url: str, args: argparse.Namespace) -> tuple[dict | None, str | None]:
    admin = make_engine(url)
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql("SELECT 1")
    except Exception as e:
        admin.dispose()
        return None, f"PostgreSQL skipped: {url} unreachable ({type(e).__name__})"
    schema = f"agentmem_bench_{uuid.uuid4().hex[:12]}"
    try:
        return run_database(ctx, url, schema, args), None
    finally:
        with admin.begin() as conn:
            conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        admin.dispose()


# -- output ---------------------------------------------------------------------------------------

COLUMNS = ["calls", "ok", "give_ups", "rows", "lost", "phantom", "duplicates", "counter_ok",
           "per_s", "ms_p50", "ms_p99", "wall_s"]


def _show(url: str, case: str, r: dict[str, Any]) -> None:
    db = "sqlite" if url.startswith("sqlite") else "postgresql"
    print(f"{db:10s} {case:12s} " + " ".join(f"{k}={r[k]}" for k in COLUMNS), flush=True)
    for e in r.get("first_errors", []):
        print(f"    error: {e}", flush=True)


def table(results: dict[str, dict | None]) -> str:
    """A Markdown table, one row per (database, case)."""
    lines = ["| database | case | " + " | ".join(COLUMNS) + " |",
             "|---|---|" + "---:|" * len(COLUMNS)]
    for db, cases in results.items():
        for case, r in (cases or {}).items():
            lines.append(f"| {db} | {case} | " + " | ".join(str(r[k]) for k in COLUMNS) + " |")
    return "\n".join(lines)


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--postgres-url", default=os.environ.get("AGENTMEM_TEST_POSTGRES_URL", LOCAL_PG))
    ap.add_argument("--no-postgres", action="store_true")
    ap.add_argument("--procs", type=int, default=4, help="writer processes (update and chat)")
    ap.add_argument("--updates", type=int, default=250, help="update() calls per process")
    ap.add_argument("--tasks", type=int, default=8, help="asyncio tasks")
    ap.add_argument("--task-updates", type=int, default=50, help="update() calls per task")
    ap.add_argument("--turns", type=int, default=None,
                    help="invokes per process (default 100; 5 on the default backbone; 0 skips)")
    ap.add_argument("--backbone", choices=["tiny", "default"], default="tiny")
    ap.add_argument("--real-write", action="store_true", help="the backbone's write pass, not the stub")
    ap.add_argument("--max-tokens", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="a quarter of every count")
    args = ap.parse_args()
    if args.turns is None:
        args.turns = 100 if args.backbone == "tiny" else 5
    if args.quick:
        args.updates, args.task_updates, args.turns = (max(1, x // 4) for x in (
            args.updates, args.task_updates, args.turns))
    return args


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    random.seed(0)
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    t = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        from agentmem.model.backbones.loader import DEFAULT_BACKBONE

        args.backbone_path = tiny_backbone(Path(tmp)) if args.backbone == "tiny" else DEFAULT_BACKBONE
        results: dict[str, dict | None] = {"sqlite": run_sqlite(ctx, args)}
        note = "PostgreSQL skipped: --no-postgres"
        if not args.no_postgres:
            results["postgresql"], note = run_postgres(ctx, args.postgres_url, args)
    if note:
        print(note)
    print(f"\n{args.procs} procs × {args.updates} updates, {args.tasks} tasks × "
          f"{args.task_updates} updates, {args.procs} procs × {args.turns} chat turns "
          f"({args.backbone} backbone, {'real' if args.real_write else 'stub'} write pass, "
          f"max_tokens {args.max_tokens}); {os.cpu_count()} CPUs, {platform.platform()}\n")
    print(table(results))
    config = {k: getattr(args, k) for k in ("procs", "updates", "tasks", "task_updates", "turns",
                                            "backbone", "real_write", "max_tokens", "quick")}
    print(json.dumps({"config": config, **results, "note": note,
                      "total_s": round(time.monotonic() - t, 1)}))


if __name__ == "__main__":
    main()
