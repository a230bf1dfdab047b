"""Deleting and pruning really free the bytes: no deleted byte is left in an SQLite store's files
when delete_agent returns (or a typed error says it is pending), pruning gives the space back to
the file system, and a full disk can be cleared through the API.

PostgreSQL's side (VACUUM FULL through compact(), checked by grepping a private cluster's files)
is in test_store_pg_crash.py."""

from __future__ import annotations

import shutil
import sqlite3
import subprocess
import uuid
from pathlib import Path

import pytest
from store_helpers import make_state

from store import ErasurePendingError, MemoryRepository, StoreFullError


def files_holding(folder: Path, marker: bytes) -> list[str]:
    """Names of the files under ``folder`` whose bytes contain ``marker``."""
    return sorted(p.name for p in folder.rglob("*") if p.is_file() and marker in p.read_bytes())


def write_agent(repo: MemoryRepository, agent: str, marker: str, n: int = 7) -> None:
    """Three threads of ``n`` checkpoints each; the marker is in thread ids and metadata."""
    for t in range(3):
        head = None
        for i in range(n):
            head = repo.put(agent, f"thread-{t}-{marker}", make_state(i), parent=head,
                            metadata={"secret": marker}).checkpoint_id


def test_delete_agent_leaves_no_byte_of_it_in_the_files(tmp_path) -> None:
    marker = f"ERASE-ME-{uuid.uuid4().hex}"
    repo = MemoryRepository(str(tmp_path / "m.db"))
    write_agent(repo, f"agent-{marker}", marker)
    write_agent(repo, "someone-else", "KEEP-ME")
    assert files_holding(tmp_path, marker.encode())  # the grep sees what is there
    repo.delete_agent(f"agent-{marker}")
    assert files_holding(tmp_path, marker.encode()) == []
    assert files_holding(tmp_path, b"KEEP-ME")
    assert repo.list_threads("someone-else")


def test_a_reader_that_pins_the_wal_makes_the_erasure_pending_not_silent(tmp_path) -> None:
    marker = f"ERASE-ME-{uuid.uuid4().hex}"
    path = tmp_path / "m.db"
    repo = MemoryRepository(str(path), lock_timeout_s=0.3)
    write_agent(repo, "a", marker)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM memory_checkpoints").fetchone()  # holds a snapshot
    try:
        with pytest.raises(ErasurePendingError, match="compact"):
            repo.delete_agent("a")
        assert repo.list_threads("a") == [] and repo.latest_for_agent("a") is None
    finally:
        reader.execute("COMMIT")
        reader.close()
    repo.compact()
    assert files_holding(tmp_path, marker.encode()) == []


def test_pruning_gives_the_space_back_at_once(tmp_path) -> None:
    path = tmp_path / "m.db"
    repo = MemoryRepository(str(path))
    head = None
    for i in range(400):
        head = repo.put("a", "t", make_state(i), parent=head).checkpoint_id
    full = path.stat().st_size + Path(f"{path}-wal").stat().st_size
    assert full > 400 * 8_000
    assert repo.prune("a", "t", keep_last=10) == 390
    wal = Path(f"{path}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    assert path.stat().st_size < full / 10
    assert len(repo.history("a", "t")) == 10


def test_a_file_made_before_the_store_is_converted_once(tmp_path) -> None:
    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:  # the application's own file and table
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.execute("INSERT INTO notes VALUES ('mine')")
    conn.close()
    repo = MemoryRepository(str(path))
    repo.setup()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 2  # INCREMENTAL
        assert conn.execute("SELECT body FROM notes").fetchall() == [("mine",)]
    conn.close()
    head = None
    for i in range(150):
        head = repo.put("a", "t", make_state(i), parent=head).checkpoint_id
    repo.compact()
    full = path.stat().st_size
    repo.prune("a", "t", keep_last=1)
    assert path.stat().st_size < full / 10


def test_compact_converts_an_older_store_file(tmp_path) -> None:
    path = tmp_path / "m.db"
    repo = MemoryRepository(str(path))
    repo.put("a", "t", make_state(), parent=None)
    repo.close()
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute("PRAGMA auto_vacuum = NONE")
    raw.execute("VACUUM")
    raw.close()
    repo = MemoryRepository(str(path))
    repo.compact()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA auto_vacuum").fetchone()[0] == 2
    raw.close()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB file system (tmpfs; needs root), unmounted afterwards."""
    mount = shutil.which("mount")
    disk = tmp_path / "disk"
    disk.mkdir()
    if mount is None or subprocess.run([mount, "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)],
                                       capture_output=True).returncode != 0:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_typed_and_can_be_cleared_through_the_api(small_disk) -> None:
    repo = MemoryRepository(str(small_disk / "m.db"))
    head, n = None, 0
    with pytest.raises(StoreFullError, match="full"):
        for i in range(10_000):
            head = repo.put("a", "t", make_state(i), parent=head).checkpoint_id
            n += 1
    filler = small_disk / "other-app.log"  # someone else takes what is left, too
    try:
        with filler.open("wb") as f:
            while True:
                f.write(b"\0" * 4096)
                f.flush()
    except OSError:
        pass
    assert repo.latest("a", "t").checkpoint_id == head  # reads still work
    assert repo.prune("a", "t", keep_last=2) == n - 2
    after = repo.put("a", "t", make_state(1), parent=head)  # there is room again
    assert repo.latest("a", "t").checkpoint_id == after.checkpoint_id
    assert repo.delete_agent("a") == 3
