"""Schema versions: idempotent setup, ordered upgrades of an older database, refusing a newer one,
and migrations that end at exactly the schema the models describe."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import MetaData, Table, UniqueConstraint, insert, inspect, select
from store_helpers import make_state, states_equal

from store import LATEST_VERSION, MemoryRepository, SchemaVersionError, migrate
from store.codec import agent_key, encode_state, thread_key
from store.migrations import MIGRATIONS, schema_version
from store.models import CHECKPOINTS, THREADS, Base, SchemaVersion


def test_versions_are_ordered_and_contiguous() -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST_VERSION + 1))
    assert LATEST_VERSION >= 2


def test_setup_is_idempotent(engine) -> None:
    for _ in range(3):
        assert migrate(engine) == LATEST_VERSION
        assert MemoryRepository(engine).setup() == LATEST_VERSION
    with engine.connect() as conn:
        rows = conn.execute(select(SchemaVersion.version).order_by(SchemaVersion.version)).all()
    assert [r[0] for r in rows] == list(range(1, LATEST_VERSION + 1))


def test_a_repository_sets_itself_up_on_first_use(engine) -> None:
    repo = MemoryRepository(engine)
    assert repo.latest("a", "t") is None
    with engine.connect() as conn:
        assert schema_version(conn) == LATEST_VERSION


def _model_keys(table) -> tuple[set, set]:
    unique = {(c.name,) for c in table.columns if c.unique}
    unique |= {tuple(c.columns.keys()) for c in table.constraints
               if isinstance(c, UniqueConstraint)}
    plain = {tuple(i.columns.keys()) for i in table.indexes if not i.unique}
    return unique, plain


def _db_keys(insp, name: str) -> tuple[set, set]:
    unique = {tuple(u["column_names"]) for u in insp.get_unique_constraints(name)}
    indexes = insp.get_indexes(name)
    unique |= {tuple(i["column_names"]) for i in indexes if i["unique"]}
    plain = {tuple(i["column_names"]) for i in indexes if not i["unique"]}
    return unique, plain


def test_migrations_reach_exactly_the_models_schema(engine) -> None:
    migrate(engine)
    with engine.connect() as conn:
        insp = inspect(conn)
        assert set(insp.get_table_names()) == set(Base.metadata.tables)
        for table in Base.metadata.sorted_tables:
            got = {c["name"]: c["nullable"] for c in insp.get_columns(table.name)}
            assert got == {c.name: c.nullable for c in table.columns}, table.name
            assert _db_keys(insp, table.name) == _model_keys(table), table.name
            fks = {(tuple(f["constrained_columns"]), f["referred_table"])
                   for f in insp.get_foreign_keys(table.name)}
            assert fks == {((f.parent.name,), f.column.table.name) for f in table.foreign_keys}


def _write_v1_row(engine) -> str:
    """A thread with one checkpoint, written as release 1 (no metadata column) wrote it."""
    enc = encode_state(make_state(11, tokens=42))
    cid = "ab" * 16
    now = datetime.now(UTC)
    md = MetaData()
    with engine.begin() as conn:
        threads = Table(THREADS, md, autoload_with=conn)
        cps = Table(CHECKPOINTS, md, autoload_with=conn)
        assert "metadata" not in cps.c
        pk = conn.execute(insert(threads).values(
            thread_key=thread_key("a", "t"), agent_key=agent_key("a"), agent_id="a",
            thread_id="t", head_id=None, created_at=now).returning(threads.c.thread_pk)).scalar()
        row_id = conn.execute(insert(cps).values(
            checkpoint_id=cid, thread_pk=pk, seq=0, agent_id="a", thread_id="t",
            parent_checkpoint_id=None, created_at=now, adapter_fingerprint=enc.adapter_fingerprint,
            backbone_id=enc.backbone_id, shape=enc.shape, dtype=enc.dtype,
            tokens_written=enc.tokens_written, codec=enc.codec, checksum=enc.checksum,
            blob=enc.blob).returning(cps.c.id)).scalar()
        conn.execute(threads.update().values(head_id=row_id))
    return cid


def test_an_older_database_upgrades_and_keeps_its_rows(engine) -> None:
    assert migrate(engine, target=1) == 1
    cid = _write_v1_row(engine)
    assert migrate(engine) == LATEST_VERSION
    repo = MemoryRepository(engine)
    got = repo.latest("a", "t")
    assert got.checkpoint_id == cid and got.metadata == {} and got.tokens_written == 42
    assert states_equal(got.state, make_state(11, tokens=42))
    nxt = repo.put("a", "t", make_state(12), parent=cid, metadata={"after": "upgrade"})
    assert [h.metadata for h in repo.history("a", "t")] == [{"after": "upgrade"}, {}]
    assert nxt.seq == 1


def test_a_newer_database_is_refused(engine) -> None:
    migrate(engine)
    with engine.begin() as conn:
        conn.execute(insert(SchemaVersion).values(version=LATEST_VERSION + 1,
                                                  description="from the future",
                                                  applied_at=datetime.now(UTC)))
    with pytest.raises(SchemaVersionError, match=str(LATEST_VERSION + 1)):
        migrate(engine)
    with pytest.raises(SchemaVersionError):
        MemoryRepository(engine).latest("a", "t")


def test_bad_targets_are_refused(engine) -> None:
    for bad in (-1, LATEST_VERSION + 1):
        with pytest.raises(ValueError):
            migrate(engine, target=bad)
