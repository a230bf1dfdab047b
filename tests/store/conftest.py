"""Fixtures of the store tests: every test runs on a fresh SQLite file and, when
``AGENTMEM_TEST_POSTGRES_URL`` is set, on a fresh private schema of that PostgreSQL database
(so parallel pytest workers never share tables)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from store_helpers import Target

from store import MemoryRepository, make_engine

PG_ENV = "AGENTMEM_TEST_POSTGRES_URL"


@pytest.fixture(scope="session")
def pg_admin() -> Iterator[Engine | None]:
    """An engine on the test PostgreSQL database, or None when no URL is given."""
    url = os.environ.get(PG_ENV)
    if not url:
        yield None
        return
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path, pg_admin) -> Iterator[Target]:
    """The database of one test: a temporary SQLite file or a throw-away PostgreSQL schema."""
    if request.param == "sqlite":
        yield Target("sqlite", f"sqlite:///{tmp_path / 'memory.sqlite3'}")
        return
    if pg_admin is None:
        pytest.skip(f"PostgreSQL cases need {PG_ENV} (e.g. "
                    "postgresql+psycopg://postgres@127.0.0.1:5432/test)")
    schema = f"agentmem_test_{uuid.uuid4().hex[:16]}"
    yield Target("postgresql", os.environ[PG_ENV], schema)
    with pg_admin.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture
def engine(target: Target) -> Iterator[Engine]:
    e = make_engine(target.url, schema=target.schema)
    yield e
    e.dispose()


@pytest.fixture
def repo(engine: Engine) -> MemoryRepository:
    r = MemoryRepository(engine)
    r.setup()
    return r
