"""MemoryRepository behaviour on SQLite and PostgreSQL: round trip, chain, history, fork, prune,
deletes, agent scope, isolation between keys, optimistic concurrency and state specs."""

from __future__ import annotations

import pytest
import torch
from store_helpers import BB, FP, bump, make_state, snapshot, states_equal

from agentmem.errors import StateMismatchError
from store import (
    CheckpointNotFound,
    ConflictError,
    MemoryRepository,
    StateSpec,
)


def chain(repo: MemoryRepository, n: int, agent: str = "a", thread: str = "t") -> list[str]:
    """Write n checkpoints (state i has tokens i) and return their ids, oldest first."""
    ids: list[str] = []
    for i in range(n):
        info = repo.put(agent, thread, make_state(i, tokens=i), parent=ids[-1] if ids else None)
        ids.append(info.checkpoint_id)
    return ids


def test_round_trip_is_bit_exact(repo: MemoryRepository) -> None:
    state = make_state(7, tokens=123)
    state.tensors[0, 3, 0, 2, 5] = torch.finfo(torch.float32).tiny / 4  # a subnormal survives too
    info = repo.put("agent", "thread", state, parent=None, metadata={"turn": 1, "who": "ünï"})
    got = repo.latest("agent", "thread")
    assert got is not None and states_equal(got.state, state)
    assert got.checkpoint_id == info.checkpoint_id and got.parent_checkpoint_id is None
    assert got.metadata == {"turn": 1, "who": "ünï"} and got.tokens_written == 123
    assert (got.adapter_fingerprint, got.backbone_id, got.shape, got.dtype, got.codec) == (
        FP, BB, (30, 1, 8, 8), "float32", "safetensors")
    assert got.size_bytes == len(state.to_bytes()) == info.size_bytes
    assert got.created_at == info.created_at and got.created_at.tzinfo is not None
    assert states_equal(repo.get("agent", "thread", info.checkpoint_id).state, state)


def test_parent_chain_and_history_order(repo: MemoryRepository) -> None:
    ids = chain(repo, 6)
    hist = repo.history("a", "t")
    assert [h.checkpoint_id for h in hist] == ids[::-1]
    assert [h.seq for h in hist] == [5, 4, 3, 2, 1, 0]
    assert [h.tokens_written for h in hist] == [5, 4, 3, 2, 1, 0]
    assert [h.parent_checkpoint_id for h in hist] == [*ids[::-1][1:], None]
    assert [h.checkpoint_id for h in repo.history("a", "t", limit=2)] == ids[:-3:-1]
    assert [h.checkpoint_id for h in repo.history("a", "t", before=ids[3])] == ids[2::-1]
    assert [h.checkpoint_id for h in repo.history("a", "t", before=ids[3], limit=1)] == [ids[2]]
    assert repo.history("a", "t", limit=0) == [] and repo.history("a", "nope") == []
    for i, cid in enumerate(ids):
        assert states_equal(repo.get("a", "t", cid).state, make_state(i, tokens=i))


def test_stale_parent_conflicts_and_writes_nothing(repo: MemoryRepository, engine) -> None:
    ids = chain(repo, 2)
    before = snapshot(engine)
    with pytest.raises(ConflictError):
        repo.put("a", "t", make_state(9), parent=ids[0])  # a stale head
    with pytest.raises(ConflictError):
        repo.put("a", "t", make_state(9), parent=None)  # the thread already exists
    with pytest.raises(ConflictError):
        repo.put("a", "t", make_state(9), parent="not-an-id'; --")
    with pytest.raises(ConflictError):
        repo.put("a", "other", make_state(9), parent=ids[1])  # the head of another thread
    assert snapshot(engine) == before
    assert repo.latest("a", "t").checkpoint_id == ids[1]


def test_two_writers_from_one_head_exactly_one_wins(repo: MemoryRepository) -> None:
    head = chain(repo, 1)[0]
    first = repo.put("a", "t", make_state(1), parent=head)
    with pytest.raises(ConflictError):
        repo.put("a", "t", make_state(2), parent=head)
    assert [h.checkpoint_id for h in repo.history("a", "t")] == [first.checkpoint_id, head]


def test_update_reads_the_head_and_chains(repo: MemoryRepository) -> None:
    for _ in range(5):
        repo.update("a", "t", bump, metadata={"by": "update"})
    head = repo.latest("a", "t")
    assert head.tokens_written == 4 and torch.equal(head.state.tensors, torch.full_like(
        head.state.tensors, 4.0))
    assert [h.seq for h in repo.history("a", "t")] == [4, 3, 2, 1, 0]


def test_update_gives_up_after_its_retries(repo: MemoryRepository, target) -> None:
    if target.name == "sqlite":
        pytest.skip("on SQLite update holds the write lock: no plain put can race it")
    chain(repo, 1)
    calls = []

    def racing(state):  # another writer advances the head while we compute, every time
        calls.append(1)
        repo.put("a", "t", make_state(len(calls)), parent=repo.latest("a", "t").checkpoint_id)
        return bump(state)

    with pytest.raises(ConflictError, match="gave up after 3 attempts"):
        repo.update("a", "t", racing, retries=2, backoff_s=0.0)
    assert len(calls) == 3 and len(repo.history("a", "t")) == 4


def test_isolation_between_agents_and_threads(repo: MemoryRepository) -> None:
    mine = chain(repo, 2, "alice", "t1")
    theirs = chain(repo, 1, "bob", "t1")
    chain(repo, 1, "alice", "t2")
    for agent, thread, cid in [("bob", "t1", mine[0]), ("alice", "t2", mine[1]),
                               ("alice", "t1", theirs[0]), ("Alice", "t1", mine[0]),
                               ("alice", "t1 ", mine[0]), ("alicet", "1", mine[0])]:
        with pytest.raises(CheckpointNotFound):
            repo.get(agent, thread, cid)
    with pytest.raises(CheckpointNotFound):
        repo.history("bob", "t1", before=mine[1])
    assert repo.latest("alice", "t1").checkpoint_id == mine[1]
    assert repo.latest("bob", "t1").checkpoint_id == theirs[0]
    assert repo.latest("alicet", "1") is None and repo.latest("alice", "t3") is None


def test_fork_starts_a_new_thread_at_a_checkpoint(repo: MemoryRepository) -> None:
    ids = chain(repo, 4)
    info = repo.fork("a", "t", ids[1], "t-fork")
    head = repo.latest("a", "t-fork")
    assert head.checkpoint_id == info.checkpoint_id not in ids
    assert head.parent_checkpoint_id == ids[1] and head.seq == 0
    assert states_equal(head.state, make_state(1, tokens=1))
    assert repo.latest("a", "t").checkpoint_id == ids[3]  # the source is untouched
    nxt = repo.put("a", "t-fork", make_state(10), parent=info.checkpoint_id)
    assert [h.checkpoint_id for h in repo.history("a", "t-fork")] == [nxt.checkpoint_id,
                                                                        info.checkpoint_id]
    with pytest.raises(ConflictError):
        repo.fork("a", "t", ids[0], "t-fork")  # the target thread exists
    with pytest.raises(CheckpointNotFound):
        repo.fork("a", "t-fork", ids[0], "t-fork-2")  # ids[0] is not in t-fork
    repo.delete_thread("a", "t")
    assert states_equal(repo.latest("a", "t-fork").state, make_state(10))


def test_prune_keeps_the_newest(repo: MemoryRepository) -> None:
    ids = chain(repo, 10)
    other = chain(repo, 3, thread="other")
    assert repo.prune("a", "t", keep_last=3) == 7
    assert [h.checkpoint_id for h in repo.history("a", "t")] == ids[:-4:-1]
    assert repo.prune("a", "t", keep_last=3) == 0
    assert repo.prune("a", "missing", keep_last=1) == 0
    with pytest.raises(CheckpointNotFound):
        repo.get("a", "t", ids[6])
    assert [h.checkpoint_id for h in repo.history("a", "other")] == other[::-1]
    nxt = repo.put("a", "t", make_state(11), parent=ids[-1])  # the chain goes on
    assert repo.history("a", "t")[0].seq == 10 and nxt.parent_checkpoint_id == ids[-1]
    for bad in (0, -1, 1.5, True, None):
        with pytest.raises(ValueError):
            repo.prune("a", "t", keep_last=bad)


def test_delete_thread_and_agent(repo: MemoryRepository) -> None:
    chain(repo, 3, "alice", "t1")
    keep = chain(repo, 2, "alice", "t2")
    chain(repo, 2, "bob", "t1")
    assert repo.delete_thread("alice", "t1") == 3
    assert repo.latest("alice", "t1") is None and repo.history("alice", "t1") == []
    assert repo.latest("alice", "t2").checkpoint_id == keep[-1]
    repo.put("alice", "t1", make_state(0), parent=None)  # the id can be used again
    assert repo.delete_agent("alice") == 3
    assert repo.list_threads("alice") == [] and repo.latest_for_agent("alice") is None
    for thread in ("t1", "t2"):
        assert repo.latest("alice", thread) is None
    with pytest.raises(CheckpointNotFound):
        repo.get("alice", "t2", keep[0])
    assert len(repo.history("bob", "t1")) == 2 and repo.delete_agent("nobody") == 0


def test_delete_agent_leaves_no_bytes_in_the_sqlite_file(repo: MemoryRepository, target,
                                                         tmp_path) -> None:
    if target.name != "sqlite":
        pytest.skip("file-level check; PostgreSQL reclaims dead rows with VACUUM")
    heads: dict[str, str | None] = {"keep-me": None, "forget-me-SECRET-ID": None}
    for i in range(6):  # interleaved, so the two agents' rows share pages
        for agent, head in heads.items():
            seed = i + (100 if agent.startswith("forget") else 0)
            note = "SECRET-NOTE-42" if agent.startswith("forget") else "fine"
            heads[agent] = repo.put(agent, "t", make_state(seed), parent=head,
                                    metadata={"note": note}).checkpoint_id
    repo.delete_agent("forget-me-SECRET-ID")
    data = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"SECRET-ID" not in data and b"SECRET-NOTE-42" not in data
    for i in range(6):
        assert make_state(100 + i).tensors.numpy().tobytes()[:64] not in data
        assert make_state(i).tensors.numpy().tobytes()[:64] in data  # the check can see blobs


def test_agent_scope_and_thread_listing(repo: MemoryRepository) -> None:
    assert repo.latest_for_agent("a") is None and repo.list_threads("a") == []
    t1 = chain(repo, 2, thread="t1")
    t2 = chain(repo, 1, thread="t2")
    chain(repo, 1, "b", "t9")
    assert repo.latest_for_agent("a").checkpoint_id == t2[0]
    last = repo.put("a", "t1", make_state(5), parent=t1[-1])
    got = repo.latest_for_agent("a")
    assert got.checkpoint_id == last.checkpoint_id and states_equal(got.state, make_state(5))
    threads = repo.list_threads("a")
    assert [(t.thread_id, t.head_checkpoint_id, t.head_seq) for t in threads] == [
        ("t1", last.checkpoint_id, 2), ("t2", t2[0], 0)]


def test_spec_refuses_other_adapters_on_write_and_read(engine) -> None:
    plain = MemoryRepository(engine)
    head = plain.put("a", "t", make_state(0), parent=None).checkpoint_id
    other = plain.with_spec(StateSpec("e" * 64, BB))
    for repo_call in (lambda: other.latest("a", "t"), lambda: other.get("a", "t", head),
                      lambda: other.latest_for_agent("a")):
        with pytest.raises(StateMismatchError):
            repo_call()
    with pytest.raises(StateMismatchError):
        plain.with_spec(StateSpec(FP, BB, (12, 1, 8, 8))).latest("a", "t")
    with pytest.raises(StateMismatchError):
        plain.with_spec(StateSpec(FP, "qwen2-0000")).put("a", "t", make_state(1), parent=head)
    ok = plain.with_spec(StateSpec(FP, BB, (30, 1, 8, 8)))
    assert ok.latest("a", "t").checkpoint_id == head
    assert ok.put("a", "t", make_state(1), parent=head).seq == 1


def test_a_thread_never_mixes_adapters(repo: MemoryRepository, engine) -> None:
    head = chain(repo, 1)[0]
    before = snapshot(engine)
    for state in (make_state(1, fingerprint="e" * 64), make_state(1, backbone="qwen2-0"),
                  make_state(1, layers=12)):
        with pytest.raises(StateMismatchError):
            repo.put("a", "t", state, parent=head)
    assert snapshot(engine) == before


def test_pruning_shrinks_the_sqlite_file(repo: MemoryRepository, target, tmp_path) -> None:
    if target.name != "sqlite":
        pytest.skip("file-level check; PostgreSQL returns space through (auto)VACUUM")
    path = tmp_path / "memory.sqlite3"
    ids = chain(repo, 120)
    repo.compact()  # fold the WAL into the file so its size counts every row
    full = path.stat().st_size
    assert full > 120 * 8_000
    repo.prune("a", "t", keep_last=5)
    repo.compact()
    assert path.stat().st_size < full / 8
    assert [h.checkpoint_id for h in repo.history("a", "t")] == ids[:-6:-1]
