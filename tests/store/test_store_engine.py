"""make_engine: SQLite settings, URL handling, PostgreSQL schemas."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from store import MemoryRepository, default_url, make_engine


def test_sqlite_connections_are_configured(tmp_path) -> None:
    engine = make_engine(str(tmp_path / "sub" / "m.db"))  # a bare path; parents are created
    with engine.connect() as conn:
        pragma = {name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
                  for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous",
                               "secure_delete")}
    assert pragma == {"journal_mode": "wal", "busy_timeout": 30000, "foreign_keys": 1,
                      "synchronous": 2, "secure_delete": 1}
    assert (tmp_path / "sub" / "m.db").exists()
    engine.dispose()


def test_sqlite_write_transactions_take_the_write_lock_at_begin(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    repo = MemoryRepository(make_engine(url))
    repo.setup()
    other = make_engine(url, connect_args={"timeout": 0.05})
    with repo._write():  # holds BEGIN IMMEDIATE: a second writer cannot start...
        with pytest.raises(Exception, match="locked"), other.connect() as conn:
            conn.execution_options(agentmem_write=True)
            with conn.begin():
                pass
        with other.connect() as conn, conn.begin():  # ...while readers still can (WAL)
            assert conn.execute(text("SELECT 1")).scalar() == 1
    other.dispose()


def test_sqlite_refuses_what_cannot_work(tmp_path) -> None:
    for url in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(ValueError, match="in-memory"):
            make_engine(url)
    with pytest.raises(ValueError, match="PostgreSQL"):
        make_engine(str(tmp_path / "m.db"), schema="x")


def test_default_url(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("AGENTMEM_STORE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    assert default_url() == f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.delenv("AGENTMEM_STORE_URL")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_url() == f"sqlite:///{tmp_path / 'agentmem' / 'memory.sqlite3'}"
    repo = MemoryRepository()
    assert repo.latest("a", "t") is None and (tmp_path / "agentmem" / "memory.sqlite3").exists()
    repo.close()


@pytest.mark.parametrize("schema", ["Upper", "a-b", "x; DROP TABLE t", "1abc", "a" * 64, ""])
def test_schema_names_are_plain_identifiers(schema) -> None:
    with pytest.raises(ValueError, match="schema"):
        make_engine("postgresql+psycopg://postgres@127.0.0.1:5432/test", schema=schema)


def test_postgresql_schema_holds_the_tables(target, engine, pg_admin) -> None:
    if target.name != "postgresql":
        pytest.skip("PostgreSQL schemas")
    MemoryRepository(engine).setup()
    with pg_admin.connect() as conn:
        tables = conn.execute(text("SELECT table_name FROM information_schema.tables "
                                   "WHERE table_schema = :s ORDER BY 1"),
                              {"s": target.schema}).scalars().all()
    assert tables == ["memory_checkpoints", "memory_schema_versions", "memory_threads"]
