"""The store against a PostgreSQL server that crashes: nothing acknowledged is lost, nothing is
written twice, every failure is typed, writers recover by themselves; and ``delete_agent`` +
``compact`` leave no byte of an agent in the server's table files.

Each test module gets a PRIVATE cluster (tests/store/pg_cluster.py: initdb into a temp folder, its
own port on 127.0.0.1, fsync on), which the tests kill with ``pg_ctl stop -m immediate`` — the
shared server is never touched. Skipped where PostgreSQL's binaries are not installed.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import socket
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
import torch
from pg_cluster import PgCluster, pg_cluster  # noqa: F401  (the fixture)
from sqlalchemy import text
from store_helpers import make_state, states_equal

from store import CheckpointNotFound, MemoryRepository, make_engine
from store.errors import CommitUnknownError, StoreUnavailableError
from store.models import CHECKPOINTS

RETRY_S = 1.0  # short, so writers see CommitUnknownError while the server is down
DOWN_S = (1.5, 3.0, 2.0)  # how long the server stays down in each crash round
UPDATERS, PUTTERS = 2, 1  # writer processes: `update` on one shared thread; `put` on their own
MIN_ACKS = 15  # writes each writer must have acknowledged before a crash / after the last restart


@pytest.fixture(scope="module")
def ctx():
    """Children fork from a server that has already imported torch, agentmem and store."""
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(["torch", "agentmem", "store", "sqlalchemy"])
    return context


def _count_rows(engine, cid: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {CHECKPOINTS} WHERE checkpoint_id = :c"),
                                {"c": cid}).scalar_one())


def _acks(path: Path) -> list[dict]:
    if not path.exists():
        return []
    lines = path.read_text().splitlines()
    return [json.loads(x) for x in lines if x.strip()]


def _wait_for(cond, timeout_s: float, what: str, procs=()) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        dead = [p for p in procs if not p.is_alive()]
        if dead:
            pytest.fail(f"writer process(es) died while waiting for {what}: "
                        f"{[(p.name, p.exitcode) for p in dead]}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(0.05)


def _entry(name: str):
    import pg_crash_workers

    return getattr(pg_crash_workers, name)


# -- a. crashes under concurrent writers --------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_writers_survive_server_crashes(ctx, pg_cluster: PgCluster, tmp_path) -> None:  # noqa: F811
    from pg_crash_workers import AGENT

    repo = MemoryRepository(make_engine(pg_cluster.url), retry_s=30.0)
    repo.setup()  # the schema exists before any writer starts
    writers = [("update", "shared", w) for w in range(UPDATERS)]
    writers += [("put", f"solo-{w}", w) for w in range(UPDATERS, UPDATERS + PUTTERS)]
    ack_files = {w: tmp_path / f"acks-{w}.jsonl" for _, _, w in writers}
    results = {w: tmp_path / f"result-{w}.json" for _, _, w in writers}
    stop = ctx.Event()
    procs = [ctx.Process(target=_entry("writer"), name=f"writer-{w}",
                         args=(pg_cluster.url, mode, thread, w, str(ack_files[w]),
                               str(results[w]), stop, RETRY_S))
             for mode, thread, w in writers]
    for p in procs:
        p.start()
    restarts: list[float] = []
    crashes: list[float] = []
    try:
        def acked(minimum: dict[int, int]):
            return lambda: all(len(_acks(ack_files[w])) >= minimum[w] for w in ack_files)

        _wait_for(acked(dict.fromkeys(ack_files, MIN_ACKS)), 120, "the first writes", procs)
        for down_s in DOWN_S:
            before = {w: len(_acks(f)) for w, f in ack_files.items()}
            _wait_for(acked({w: n + 5 for w, n in before.items()}), 60, "writes between crashes",
                      procs)
            crashes.append(time.time())
            pg_cluster.crash()  # mid-write: several transactions are in flight right now
            time.sleep(down_s)
            pg_cluster.start()  # crash recovery replays the WAL
            restarts.append(time.time())
        at_last_restart = {w: len(_acks(f)) for w, f in ack_files.items()}
        _wait_for(acked({w: n + MIN_ACKS for w, n in at_last_restart.items()}), 60,
                  "writes after the last restart (writers recover without a restart)", procs)
    finally:
        stop.set()
        for p in procs:
            p.join(timeout=60)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(timeout=10)
        if not pg_cluster.running():
            pg_cluster.start()
    assert [p.exitcode for p in procs] == [0] * len(procs), "a writer process did not exit cleanly"

    summaries = {w: json.loads(results[w].read_text()) for w in results}
    errors: Counter[str] = Counter()
    for s in summaries.values():
        errors.update(s["errors"])
    print(f"\nerrors seen by the writers over {len(DOWN_S)} crashes: {dict(errors)}; "
          f"per writer (mode, acks, errors): "
          f"{ {w: (s['mode'], s['acks'], s['errors']) for w, s in summaries.items()} }")
    unexpected = {w: s["unexpected"] for w, s in summaries.items() if s["unexpected"]}
    assert not unexpected, f"writers saw wrong results or untyped exceptions: {unexpected}"
    typed = {StoreUnavailableError.__name__, CommitUnknownError.__name__}
    assert set(errors) <= typed, f"errors other than unavailability while down: {dict(errors)}"
    assert errors[CommitUnknownError.__name__] > 0, "no write outlasted retry_s while down?"

    acks = {w: _acks(f) for w, f in ack_files.items()}
    assert sum(len(a) for a in acks.values()) == sum(s["acks"] for s in summaries.values())
    for w, a in acks.items():  # recovered by themselves: acknowledged writes after the last restart
        assert sum(x["t"] > restarts[-1] for x in a) >= MIN_ACKS, f"writer {w} did not recover"
        assert [x["step"] for x in a] == list(range(len(a))), f"writer {w} skipped a step"

    for thread in {t for _, t, _ in writers}:
        hist = repo.history(AGENT, thread)[::-1]  # oldest first
        mine = [x for a in acks.values() for x in a if x["thread"] == thread]
        # 0 duplicates: one row per (writer, step); the chain is seq 0..n-1, each on its parent.
        keys = [(h.metadata["writer"], h.metadata["step"]) for h in hist]
        dupes = [k for k, n in Counter(keys).items() if n > 1]
        assert not dupes, f"thread {thread}: steps written twice: {dupes[:10]}"
        assert [h.seq for h in hist] == list(range(len(hist)))
        assert all(h.parent_checkpoint_id == older.checkpoint_id
                   for h, older in zip(hist[1:], hist, strict=False))
        assert hist[0].parent_checkpoint_id is None
        # 0 acknowledged writes lost, and nothing unacknowledged but a writer's last pending step.
        stored = {h.checkpoint_id: h for h in hist}
        lost = [x["cid"] for x in mine if x["cid"] not in stored]
        assert not lost, f"thread {thread}: {len(lost)} acknowledged writes lost: {lost[:5]}"
        pending = {s["pending"] for s in summaries.values() if s["thread"] == thread}
        acked_ids = {x["cid"] for x in mine}
        extra = [c for c in stored if c not in acked_ids and c not in pending]
        assert not extra, f"thread {thread}: rows nobody wrote: {extra[:5]}"
        for x in mine:  # each acknowledged write reads back, verified, with what was written
            got = repo.get(AGENT, thread, x["cid"])
            assert got.seq == x["seq"] == stored[x["cid"]].seq
            assert got.metadata == {"writer": x["writer"], "step": x["step"]}
            if x["mode"] == "update":  # every update saw exactly the one before it: +1 each
                assert int(got.tokens_written) == got.seq
                assert torch.equal(got.state.tensors,
                                   torch.full((1, 30, 1, 8, 8), float(got.seq)))
            else:
                assert got.seq == x["step"]
                assert states_equal(got.state, make_state(x["step"], tokens=x["step"]))
    repo.engine.dispose()


# -- b. an ambiguous commit, retried -----------------------------------------------------------


class CutReplyProxy:
    """A TCP proxy in front of the server. Once armed, the next ``COMMIT`` reaches the server,
    the server's reply ("committed") is swallowed, ``on_cut`` runs (it crashes the server) and
    only then is the client's socket closed: the commit happened, the client never heard."""

    def __init__(self, target_port, on_cut) -> None:
        self._target_port, self._on_cut = target_port, on_cut
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.armed = threading.Event()
        self.cut = threading.Event()
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres?sslmode=disable"

    def close(self) -> None:
        self._closed = True
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self._target_port()), timeout=5)
                server.settimeout(None)
            except OSError:  # the server is down: so is this connection
                client.close()
                continue
            state = {"cut": False}
            threading.Thread(target=self._up, args=(client, server, state), daemon=True).start()
            threading.Thread(target=self._down, args=(server, client, state), daemon=True).start()

    def _up(self, client: socket.socket, server: socket.socket, state: dict) -> None:
        try:
            while data := client.recv(65536):
                if self.armed.is_set() and b"COMMIT" in data:
                    self.armed.clear()
                    state["cut"] = True
                server.sendall(data)
        except OSError:
            pass
        _close(server)

    def _down(self, server: socket.socket, client: socket.socket, state: dict) -> None:
        try:
            while data := server.recv(65536):
                if state["cut"]:  # the reply to COMMIT: the server has made it durable
                    self._on_cut()
                    self.cut.set()
                    break
                client.sendall(data)
        except OSError:
            pass
        _close(client)
        _close(server)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


def test_ambiguous_commit_is_stored_exactly_once(pg_cluster: PgCluster) -> None:  # noqa: F811
    direct = make_engine(pg_cluster.url)
    proxy = CutReplyProxy(lambda: pg_cluster.port, pg_cluster.crash)
    repo = MemoryRepository(make_engine(proxy.url()), retry_s=RETRY_S)
    agent, thread = "ambiguous", f"t-{uuid.uuid4().hex[:8]}"
    try:
        repo.setup()
        head = repo.put(agent, thread, make_state(0, tokens=0), parent=None).checkpoint_id

        # 1. The commit happened; its reply was lost and the server stayed down past retry_s.
        proxy.armed.set()
        with pytest.raises(CommitUnknownError) as info:
            repo.put(agent, thread, make_state(1, tokens=1), parent=head)
        assert proxy.cut.is_set(), "the proxy never saw the COMMIT"
        cid = info.value.checkpoint_id
        pg_cluster.start()
        assert repo.get(agent, thread, cid).seq == 1  # it did commit: the error was ambiguous
        again = repo.put(agent, thread, make_state(1, tokens=1), parent=head, checkpoint_id=cid)
        assert again.checkpoint_id == cid and again.seq == 1
        assert sum(h.checkpoint_id == cid for h in repo.history(agent, thread)) == 1
        assert _count_rows(direct, cid) == 1
        head = cid

        # 2. The server was down before the write: nothing committed; the retry writes it once.
        pg_cluster.crash()
        with pytest.raises(CommitUnknownError) as info:
            repo.put(agent, thread, make_state(2, tokens=2), parent=head)
        cid = info.value.checkpoint_id
        pg_cluster.start()
        with pytest.raises(CheckpointNotFound):
            repo.get(agent, thread, cid)
        for _ in range(2):  # and a retry of the retry changes nothing
            again = repo.put(agent, thread, make_state(2, tokens=2), parent=head,
                             checkpoint_id=cid)
            assert again.checkpoint_id == cid and again.seq == 2
        assert sum(h.checkpoint_id == cid for h in repo.history(agent, thread)) == 1
        assert _count_rows(direct, cid) == 1

        hist = repo.history(agent, thread)
        assert [h.seq for h in hist] == [2, 1, 0]
        assert states_equal(repo.latest(agent, thread).state, make_state(2, tokens=2))
    finally:
        proxy.close()
        repo.engine.dispose()
        direct.dispose()
        if not pg_cluster.running():
            pg_cluster.start()


# -- c. erasure down to the table files ----------------------------------------------------------


def _files_containing(cluster: PgCluster, needle: bytes) -> list[str]:
    """Files under the cluster's base/ (every database's table and index files; not pg_wal)
    that contain ``needle``."""
    hits = []
    for path in sorted(cluster.base_dir.rglob("*")):
        try:
            if path.is_file() and needle in path.read_bytes():
                hits.append(str(path.relative_to(cluster.datadir)))
        except FileNotFoundError:  # unlinked by the server meanwhile
            pass
    return hits


def _checkpoint(engine) -> None:
    """Write every dirty page to the data files (and unlink files dropped by VACUUM FULL)."""
    with engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("CHECKPOINT")


def _write_agent(repo: MemoryRepository, marker: str) -> str:
    agent = f"agent-{marker}"
    for thread in ("a", "b"):
        head = None
        for step in range(3):
            head = repo.put(agent, thread, make_state(step), parent=head,
                            metadata={"note": marker, "step": step}).checkpoint_id
    return agent


def test_delete_agent_and_compact_erase_the_bytes(pg_cluster: PgCluster) -> None:  # noqa: F811
    repo = MemoryRepository(make_engine(pg_cluster.url))
    repo.setup()
    keeper = repo.put("keeper", "t", make_state(7), parent=None, metadata={"keep": True})
    kept, erased = (f"ERASE-ME-{uuid.uuid4().hex}" for _ in range(2))

    # Control: without compact(), deleted rows stay in the table files — the grep sees them.
    agent = _write_agent(repo, kept)
    assert repo.delete_agent(agent) == 6
    assert repo.list_threads(agent) == []
    _checkpoint(repo.engine)
    assert _files_containing(pg_cluster, kept.encode()), "the grep cannot see deleted rows"

    # delete_agent + compact (VACUUM FULL) + CHECKPOINT: not one byte left in base/.
    agent = _write_agent(repo, erased)
    _checkpoint(repo.engine)
    assert _files_containing(pg_cluster, erased.encode())
    assert repo.delete_agent(agent) == 6
    repo.compact()
    _checkpoint(repo.engine)
    assert _files_containing(pg_cluster, erased.encode()) == []
    assert _files_containing(pg_cluster, kept.encode()) == []  # compact erased it too
    # NB: the server's write-ahead log (pg_wal/) and any backup or replica still hold copies
    # of the rows (inserts, full-page images) until the WAL segments are recycled and the
    # backups expire; erasure there is a matter of retention, not of the store.

    got = repo.get("keeper", "t", keeper.checkpoint_id)  # other agents' rows survive compact
    assert states_equal(got.state, make_state(7)) and got.metadata == {"keep": True}
    repo.engine.dispose()


def test_private_cluster_is_not_the_shared_server(pg_cluster: PgCluster) -> None:  # noqa: F811
    assert pg_cluster.port != 5432
    engine = make_engine(pg_cluster.url)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SHOW data_directory").scalar() == str(pg_cluster.datadir)
        assert conn.exec_driver_sql("SHOW fsync").scalar() == "on"
    engine.dispose()
