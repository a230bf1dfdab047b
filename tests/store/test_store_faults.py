"""Every database, file-system and connection failure is a typed StoreError; bad arguments are
ValueErrors; foreign tables are refused; dangling heads are reported and repaired; a put can be
retried with its checkpoint id without storing twice."""

from __future__ import annotations

import socket
import sqlite3
import threading
import time

import pytest
from sqlalchemy import text
from store_helpers import Target, bump, make_state, snapshot

from store import (
    CommitUnknownError,
    ConflictError,
    CorruptCheckpointError,
    CorruptStoreError,
    DanglingHeadError,
    ForeignSchemaError,
    InvalidIdError,
    MemoryRepository,
    NotADatabaseError,
    ReadOnlyStoreError,
    StoreError,
    StoreLockedError,
    StoreUnavailableError,
)


def chain(repo: MemoryRepository, n: int, agent: str = "a", thread: str = "t") -> list[str]:
    head = None
    for i in range(n):
        head = repo.put(agent, thread, make_state(i), parent=head).checkpoint_id
    return head


# -- bad arguments -------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    lambda r: r.update("a", "t", bump, retries=-1),
    lambda r: r.update("a", "t", bump, retries=True),
    lambda r: r.update("a", "t", bump, backoff_s=float("nan")),
    lambda r: r.history("a", "t", limit=10**30),
    lambda r: r.prune("a", "t", keep_last=10**30),
    lambda r: r.prune("a", "t", keep_last=0),
])
def test_bad_arguments_are_value_errors_and_write_nothing(repo: MemoryRepository, call) -> None:
    with pytest.raises(ValueError):
        call(repo)
    assert repo.latest("a", "t") is None


@pytest.mark.parametrize("kwargs", [{"lock_timeout_s": 0}, {"lock_timeout_s": -1},
                                    {"retry_s": float("inf")}, {"lock_timeout_s": "5"}])
def test_bad_timeouts_are_refused(tmp_path, kwargs) -> None:
    with pytest.raises(ValueError):
        MemoryRepository(str(tmp_path / "m.db"), **kwargs)


def test_a_checkpoint_id_is_idempotent(repo: MemoryRepository) -> None:
    cid = "0123456789abcdef0123456789abcdef"
    first = repo.put("a", "t", make_state(1), parent=None, checkpoint_id=cid)
    again = repo.put("a", "t", make_state(1), parent=None, checkpoint_id=cid)  # a blind retry
    assert first.checkpoint_id == again.checkpoint_id == cid
    assert [h.checkpoint_id for h in repo.history("a", "t")] == [cid]
    with pytest.raises(ConflictError, match="already used"):  # another state under that id
        repo.put("a", "t", make_state(2), parent=cid, checkpoint_id=cid)
    with pytest.raises(ConflictError, match="already used"):  # another thread
        repo.put("a", "u", make_state(1), parent=None, checkpoint_id=cid)
    with pytest.raises(InvalidIdError):
        repo.put("a", "t", make_state(1), parent=cid, checkpoint_id="not-hex")
    assert len(repo.history("a", "t")) == 1 and repo.latest("a", "u") is None


def test_a_retried_update_does_not_apply_twice(repo: MemoryRepository) -> None:
    cid = "f" * 32
    calls = []

    def fn(state):
        calls.append(1)
        return bump(state)

    repo.update("a", "t", fn, checkpoint_id=cid)
    repo.update("a", "t", fn, checkpoint_id=cid)  # the caller could not tell it committed
    assert len(calls) == 1 and len(repo.history("a", "t")) == 1


# -- locks ---------------------------------------------------------------------------------------

def test_a_sqlite_writer_waits_at_most_lock_timeout_s(tmp_path) -> None:
    path = tmp_path / "m.db"
    repo = MemoryRepository(str(path), lock_timeout_s=0.3)
    repo.setup()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another process's write transaction
    try:
        t0 = time.monotonic()
        with pytest.raises(StoreLockedError, match="lock_timeout_s") as e:
            repo.put("a", "t", make_state(), parent=None)
        assert 0.25 < time.monotonic() - t0 < 5 and isinstance(e.value.__cause__, Exception)
        assert repo.latest("a", "t") is None  # readers are not blocked (WAL)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    repo.put("a", "t", make_state(), parent=None)


def test_a_postgres_writer_waits_at_most_lock_timeout_s(target: Target, engine) -> None:
    if target.name != "postgresql":
        pytest.skip("PostgreSQL row and advisory locks")
    repo = MemoryRepository(engine, lock_timeout_s=0.3)
    head = repo.put("a", "t", make_state(), parent=None).checkpoint_id
    with engine.connect() as other, other.begin():  # holds the thread row
        other.execute(text("SELECT * FROM memory_threads FOR UPDATE"))
        t0 = time.monotonic()
        with pytest.raises(StoreLockedError):
            repo.put("a", "t", make_state(1), parent=head)
        assert time.monotonic() - t0 < 5
    with repo.lock("a", "t") as held:  # update() waits for the thread lock, also bounded
        assert held.head.checkpoint_id == head
        with pytest.raises(StoreLockedError):
            repo.update("a", "t", bump)
    assert repo.latest("a", "t").checkpoint_id == head


def test_lock_serialises_and_its_put_commits_at_the_end(repo: MemoryRepository) -> None:
    chain(repo, 1)
    with repo.lock("a", "t") as held:
        first = held.put(bump(held.head.state), metadata={"n": 1})
        second = held.put(make_state(9), metadata={"n": 2})
        assert second.parent_checkpoint_id == first.checkpoint_id
    assert repo.latest("a", "t").checkpoint_id == second.checkpoint_id
    with pytest.raises(RuntimeError), repo.lock("a", "t") as held:
        held.put(make_state(3))
        raise RuntimeError("the caller failed: nothing it put is kept")
    assert repo.latest("a", "t").checkpoint_id == second.checkpoint_id


def test_concurrent_updates_in_threads_all_land(repo: MemoryRepository) -> None:
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(10):
                repo.update("a", "t", bump, retries=0)  # no conflict may happen at all
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    head = repo.latest("a", "t")
    assert head.seq == 39 and int(head.state.tokens_written[0]) == 39


# -- the database cannot be reached, opened or written ------------------------------------------

def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_an_unreachable_postgres_is_typed_and_a_write_says_its_outcome_is_unknown() -> None:
    pytest.importorskip("psycopg")
    url = f"postgresql+psycopg://postgres@127.0.0.1:{_closed_port()}/test"
    repo = MemoryRepository(url, retry_s=0.2)
    with pytest.raises(StoreUnavailableError, match="cannot be reached") as e:
        repo.latest("a", "t")
    assert e.value.retryable and e.value.__cause__ is not None
    repo._ready = True  # as if set up before the server went away
    with pytest.raises(CommitUnknownError) as e:
        repo.put("a", "t", make_state(), parent=None, checkpoint_id="a" * 32)
    assert e.value.checkpoint_id == "a" * 32 and "checkpoint_id=" in str(e.value)


def test_paths_that_cannot_hold_a_database(tmp_path) -> None:
    with pytest.raises(NotADatabaseError, match="directory"):
        MemoryRepository(str(tmp_path))
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADatabaseError):  # its parent is a file
        MemoryRepository(str(tmp_path / "file" / "m.db"))
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"this is not a database, only text " * 200)
    with pytest.raises(NotADatabaseError, match="not a database"):
        MemoryRepository(str(junk)).latest("a", "t")
    assert junk.read_bytes().startswith(b"this is not")  # untouched


def test_a_read_only_sqlite_database_reads_and_refuses_writes_typed(tmp_path) -> None:
    path = tmp_path / "m.db"
    repo = MemoryRepository(str(path))
    head = chain(repo, 2)
    repo.close()
    ro = MemoryRepository(f"sqlite:///file:{path}?mode=ro&uri=true")
    assert ro.latest("a", "t").checkpoint_id == head
    with pytest.raises(ReadOnlyStoreError, match="cannot be written"):
        ro.put("a", "t", make_state(5), parent=head)
    with pytest.raises(ReadOnlyStoreError):
        ro.delete_agent("a")


def test_a_malformed_sqlite_file_is_a_corrupt_store(tmp_path) -> None:
    path = tmp_path / "m.db"
    repo = MemoryRepository(str(path))
    chain(repo, 30)
    repo.compact()
    repo.close()
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    for start in range(page, len(data), page):  # every b-tree page header after the first
        data[start:start + 12] = b"\xff" * 12
    path.write_bytes(bytes(data))
    with pytest.raises((CorruptStoreError, NotADatabaseError)):
        MemoryRepository(str(path)).latest("a", "t")


# -- tables that are not (or no longer) the store's ----------------------------------------------

def test_a_foreign_table_of_the_store_name_is_refused_and_left_alone(target: Target,
                                                                     engine) -> None:
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE memory_checkpoints (id INTEGER PRIMARY KEY, note TEXT)"))
        conn.execute(text("INSERT INTO memory_checkpoints (id, note) VALUES (1, 'theirs')"))
    with pytest.raises(ForeignSchemaError, match="did not create"):
        MemoryRepository(engine).setup()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT id, note FROM memory_checkpoints")).all() == [(1, "theirs")]
        cols = {r[0] for r in conn.execute(text(
            "SELECT name FROM pragma_table_info('memory_checkpoints')" if target.name == "sqlite"
            else "SELECT column_name FROM information_schema.columns WHERE table_name = "
                 "'memory_checkpoints' AND table_schema = current_schema()"))}
    assert cols == {"id", "note"}


def test_a_dropped_or_altered_table_is_a_foreign_schema(target: Target, engine) -> None:
    repo = MemoryRepository(engine)
    chain(repo, 1)
    with engine.begin() as conn:
        conn.execute(text("ALTER TABLE memory_checkpoints DROP COLUMN metadata"))
    with pytest.raises(ForeignSchemaError, match="lacks the store's column"):
        MemoryRepository(engine).setup()
    with pytest.raises(ForeignSchemaError):  # the running repository finds out at its next call
        repo.latest("a", "t")
    with engine.begin() as conn:
        conn.execute(text("DROP TABLE memory_checkpoints"))
    with pytest.raises(ForeignSchemaError, match="missing"):
        MemoryRepository(engine).setup()
    with pytest.raises(ForeignSchemaError):
        repo.put("a", "t", make_state(), parent=None)


def test_a_value_of_the_wrong_type_is_a_corrupt_checkpoint(target: Target, engine) -> None:
    repo = MemoryRepository(engine)
    chain(repo, 1)
    with engine.begin() as conn:
        if target.name == "postgresql":
            conn.execute(text("ALTER TABLE memory_checkpoints ALTER COLUMN shape TYPE text"))
        conn.execute(text("UPDATE memory_checkpoints SET shape = 'not json'"))
    with pytest.raises(CorruptCheckpointError):
        repo.latest("a", "t")
    if target.name == "sqlite":  # SQLite keeps whatever type it is given
        with engine.begin() as conn:
            conn.execute(text("UPDATE memory_checkpoints SET created_at = 'yesterday', "
                              "shape = '[30, 1, 8, 8]'"))
        with pytest.raises(CorruptCheckpointError, match="type"):
            repo.latest("a", "t")


def test_a_dangling_head_is_reported_then_repaired(repo: MemoryRepository, engine) -> None:
    ids = [repo.put("a", "t", make_state(0), parent=None).checkpoint_id]
    ids.append(repo.put("a", "t", make_state(1), parent=ids[0]).checkpoint_id)
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM memory_checkpoints WHERE checkpoint_id = :c"),
                     {"c": ids[1]})
    with pytest.raises(DanglingHeadError, match="repair_head"):
        repo.latest("a", "t")
    with pytest.raises(DanglingHeadError):
        repo.put("a", "t", make_state(2), parent=ids[1])
    assert isinstance(DanglingHeadError("x"), CorruptCheckpointError)
    assert repo.repair_head("a", "t") == ids[0]
    assert repo.latest("a", "t").checkpoint_id == ids[0]
    repo.put("a", "t", make_state(2), parent=ids[0])
    assert len(repo.history("a", "t")) == 2


def test_every_failure_class_is_a_store_error() -> None:
    from store import errors

    for name in errors.__all__:
        cls = getattr(errors, name)
        assert issubclass(cls, StoreError) or name == "StateMismatchError", name


def test_failures_leave_the_data_unchanged(repo: MemoryRepository, engine) -> None:
    chain(repo, 3)
    before = snapshot(engine)
    for call in (lambda: repo.update("a", "t", bump, retries=-1),
                 lambda: repo.put("a", "t", make_state(), parent="0" * 32),
                 lambda: repo.put("a", "t", make_state(), parent=None)):
        with pytest.raises((ValueError, ConflictError)):
            call()
    assert snapshot(engine) == before


def test_compact_runs_on_every_database(target: Target, repo: MemoryRepository) -> None:
    chain(repo, 40)
    chain(repo, 2, agent="keeper")
    repo.delete_agent("a")
    freed = repo.compact()
    assert isinstance(freed, int) and freed >= 0
    # How much PostgreSQL frees depends on the server's other sessions (VACUUM FULL keeps rows
    # that an older open snapshot may still see); test_store_pg_crash.py checks the bytes on a
    # private cluster.
    assert repo.latest("a", "t") is None and repo.latest("keeper", "t") is not None
